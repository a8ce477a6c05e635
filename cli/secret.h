/* secret: skiff secret create | ls | inspect | rm and skiff config ...
 * (secret.c), and what they share with stack deploy: reading a value from
 * a file, within Swarm's limit, and the SecretCreate of one.
 *
 * Secrets and configs are immutable, as in Swarm: a new value is a new
 * name (and a service update to use it). The controller never sends a
 * secret's value back; a config's it does.
 */
#ifndef SKIFF_CLI_SECRET_H
#define SKIFF_CLI_SECRET_H

#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "skiff_pb.h"

/* Reads path ("-": standard input) in full as the value of secret or
 * config name. Returns 0 and *data (malloc'd, *len bytes); SKIFF_EINVAL
 * with one line in err when it cannot be read, is empty or is more than
 * SPEC_SECRET_MAX_SIZE ("secret db_pass: 614400 bytes is more than the
 * limit of 512000"); -ENOMEM. */
int secret_read_file(SecretKind kind, const char *name, const char *path, uint8_t **data,
                     size_t *len, char *err, size_t errlen);

/* The one-line error for a name that is not a valid secret or config
 * name, or 0 (err untouched) when it is. */
int secret_check_name(SecretKind kind, const char *name, char *err, size_t errlen);

/* Gets a secret or config by name, id or id prefix. Returns 0 and *reply
 * (a SecretReply; wire_free it), or the code of client_call with err set
 * (SKIFF_ENOTFOUND when there is none). */
int secret_get(client_t *c, SecretKind kind, const char *ref, Envelope **reply, char *err,
               size_t errlen);

#endif
