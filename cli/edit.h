/* edit: small edits of a ServiceSpec's lists, shared by the service flags
 * (create, and update's --*-add/--*-rm) and the Compose reader.
 *
 * Set semantics where Docker has them: an env entry or label replaces the one
 * with the same key, a mount replaces the one at the same target, a port the
 * one with the same published port. Removing what isn't there is not an
 * error. Every function returns 0 or -ENOMEM and leaves the spec whole.
 */
#ifndef SKIFF_CLI_EDIT_H
#define SKIFF_CLI_EDIT_H

#include <stddef.h>
#include <stdint.h>

#include "skiff_pb.h"

/* "KEY=VALUE" (or "KEY": the empty value) replaces KEY's entry or is
 * appended. */
int edit_env_set(ServiceSpec *s, const char *kv);
void edit_env_unset(ServiceSpec *s, const char *key);

int edit_label_set(ServiceSpec *s, const char *key, const char *value);
void edit_label_unset(ServiceSpec *s, const char *key);

/* Constraints compare parsed (spaces around == do not matter). */
int edit_constraint_add(ServiceSpec *s, const char *expr);
void edit_constraint_rm(ServiceSpec *s, const char *expr);

/* Takes ownership of m (also on error). */
int edit_mount_add(ServiceSpec *s, Mount *m);
void edit_mount_rm(ServiceSpec *s, const char *target);

/* Takes ownership of p (also on error). */
int edit_port_add(ServiceSpec *s, PortConfig *p);
/* Removes ports with this target port, or exactly published:target when
 * published is not 0 (Docker's --publish-rm). */
void edit_port_rm(ServiceSpec *s, uint32_t published, uint32_t target);

int edit_expose_add(ServiceSpec *s, uint32_t port);
void edit_expose_rm(ServiceSpec *s, uint32_t port);

/* Secret and config references (refs, n: the spec's secrets or configs).
 * add takes ownership of r (also on error) and replaces the ref with the
 * same target. rm removes the refs to the secret named name (or, as a
 * convenience, mounted at target name) and returns how many it removed:
 * the caller says so when that is none. */
int edit_secret_add(size_t *n, SecretRef ***refs, SecretRef *r);
size_t edit_secret_rm(size_t *n, SecretRef ***refs, const char *name);

/* Replaces a string list (command, entrypoint, health test) with a copy of
 * words[0..n). */
int edit_strv_set(size_t *n, char ***arr, char *const *words, size_t nwords);

#endif
