/* compose: stack files, which are Compose files as `docker stack deploy`
 * reads them, into the ServiceSpecs of a stack.
 *
 * Read with libyaml's document API; anchors, aliases and merge keys (<<)
 * work as in YAML. Values, not keys, go through Compose's variable
 * substitution first: ${VAR}, $VAR, ${VAR:-default}, ${VAR-default},
 * ${VAR:?error}, ${VAR?error}, ${VAR:+alt}, ${VAR+alt}, and $$ for a $.
 * A variable that is not set, without a default, becomes "" with a warning,
 * as in Compose.
 *
 * Keys (see cli/README.md for the full list): services.*.{image, command,
 * entrypoint, environment, ports, expose, healthcheck, deploy, labels, user,
 * volumes, stop_grace_period}, with deploy.{replicas, mode, update_config,
 * rollback_config, restart_policy, resources, placement, labels,
 * endpoint_mode}; top-level version (ignored), name (ignored), services and
 * volumes. Keys that start with x- are extensions and ignored, except
 * skiff's own: healthcheck.x-skiff-http (the agent's HTTP probe path),
 * healthcheck.x-skiff-http-port, and x-skiff-drain-delay on a service.
 * Anything else, or a value of the wrong type, is an error naming the file,
 * the line and the key's path:
 *   shop.yml:12: services.api.deploy.replicas: expected an integer
 * and no spec comes out. Every spec that comes out passed spec_validate().
 *
 * Names: service KEY of stack STACK is STACK_KEY, with spec.stack = STACK;
 * a named volume NAME is STACK_NAME unless it is external or has its own
 * name, as Docker names them.
 *
 * Secrets and configs: top-level secrets.KEY and configs.KEY take file
 * (relative to the file's directory), external: true (it must exist
 * already), name (the real name; default STACK_KEY, or KEY when external)
 * and labels; a service's secrets and configs name them by KEY, in short
 * (- KEY) or long syntax (source, target, uid, gid, mode: an octal number
 * such as 0400, or a string). A reference's name is the real name; its
 * default target is KEY (a config's: /KEY), as Docker mounts them.
 */
#ifndef SKIFF_CLI_COMPOSE_H
#define SKIFF_CLI_COMPOSE_H

#include <stddef.h>

#include "skiff_pb.h"

#define COMPOSE_MAX_FILE (1u << 20)
#define COMPOSE_MAX_SERVICES 256

/* Looks a variable up: its value, or NULL when it is not set. */
typedef const char *(*compose_env_fn)(void *arg, const char *name);

typedef struct compose_opts {
    const char *stack;     /* required */
    const char *base_dir;  /* where relative bind sources start; NULL: "." */
    compose_env_fn env;    /* NULL: getenv */
    void *env_arg;
} compose_opts_t;

/* A top-level secret or config of the file. */
typedef struct compose_secret {
    Secret *secret;  /* kind, name (the real one), labels, stack (STACK, or "" when
                      * external); data once compose_read_files() has read it */
    char *key;       /* as the file names it */
    char *file;      /* file:, an absolute path; NULL when external */
    int external;
} compose_secret_t;

typedef struct compose {
    ServiceSpec **services;  /* in the file's order */
    size_t n_services;
    compose_secret_t *secrets;  /* the top-level secrets, then the configs */
    size_t n_secrets;
    char **warnings;         /* one line each, for stderr */
    size_t n_warnings;
} compose_t;

/* Parses text (len bytes); file names it in messages. Returns 0 and *out
 * (compose_free), or SKIFF_EINVAL with one line in err, or -ENOMEM. */
int compose_parse(const char *file, const char *text, size_t len, const compose_opts_t *o,
                  compose_t **out, char *err, size_t errlen);

/* Reads the value of every secret and config with a file (in full; not
 * empty, within SPEC_SECRET_MAX_SIZE); file names the Compose file in
 * messages. Returns 0, SKIFF_EINVAL with one line in err, or -ENOMEM. */
int compose_read_files(compose_t *c, const char *file, char *err, size_t errlen);

/* Reads path ("-": standard input) and parses it, with base_dir the file's
 * directory unless o->base_dir is set, then reads the files of its
 * secrets and configs (compose_read_files). */
int compose_load(const char *path, const compose_opts_t *o, compose_t **out, char *err,
                 size_t errlen);

void compose_free(compose_t *c);

/* Substitutes variables in s. Returns 0 and *out (malloc'd); *missing gets
 * the first variable that was used unset without a default ("" if none).
 * SKIFF_EINVAL with why set for a malformed reference or a ${VAR?error};
 * -ENOMEM. */
int compose_interpolate(const char *s, compose_env_fn env, void *arg, char **out,
                        char *missing, size_t missinglen, char *why, size_t whylen);

#endif
