/* flags: the flags of `skiff service create` and `skiff service update`, as
 * one table, and how each one changes a ServiceSpec.
 *
 * The command parser (cli.c) matches the table's flags and collects them in
 * order as svc_opts_t; svc_opts_apply() then applies them to a spec: the
 * defaults of spec_new() for create, the spec read from the controller for
 * update. Removals (--env-rm, --mount-rm, ...) are applied before
 * everything else, as Docker does, so `--env-rm A --env-add A=1` sets A.
 * Applying checks every value; the first bad one gives
 *   invalid value for --update-order: "sideways" (stop-first or start-first)
 * and the caller exits with a usage error, having sent nothing.
 */
#ifndef SKIFF_CLI_FLAGS_H
#define SKIFF_CLI_FLAGS_H

#include <stddef.h>

#include "skiff_pb.h"

/* Which command a flag belongs to. */
#define SVC_CREATE 1u
#define SVC_UPDATE 2u

typedef struct svc_flag {
    const char *name;     /* long name, without "--" */
    char shortc;          /* short name, or 0 */
    const char *metavar;  /* the value's name in help, or NULL: takes none */
    unsigned modes;       /* SVC_CREATE and/or SVC_UPDATE */
    int hidden;           /* accepted, but not listed in help */
    const char *help;
    int kind;             /* how it applies (flags.c) */
    int sub;              /* which part of the spec */
    size_t off;           /* offsetof the field in that part */
    int op;               /* for lists: add or remove */
} svc_flag_t;

extern const svc_flag_t svc_flags[];
extern const size_t svc_flags_n;

typedef struct svc_opt {
    const svc_flag_t *flag;
    const char *value;  /* argv's string, not a copy; NULL for switches */
} svc_opt_t;

/* The service flags of one command line, in their order. */
typedef struct svc_opts {
    svc_opt_t *v;
    size_t n;
    size_t cap;
} svc_opts_t;

/* Appends one flag. Returns 0 or -ENOMEM. */
int svc_opts_push(svc_opts_t *o, const svc_flag_t *flag, const char *value);
void svc_opts_free(svc_opts_t *o);

/* 1 when a flag named name (without "--") is among opts. */
int svc_opts_has(const svc_opts_t *o, const char *name);

/* Applies opts to spec. Returns 0; SKIFF_EINVAL with one line in err
 * (spec may then be half changed: throw it away); -ENOMEM. */
int svc_opts_apply(const svc_opts_t *o, ServiceSpec *spec, char *err, size_t errlen);

/* Checks every value of opts on an empty spec, before the current spec is
 * read (update): what depends on it, such as --secret-rm of a secret the
 * service does not use, is left to svc_opts_apply. Returns as it does. */
int svc_opts_check(const svc_opts_t *o, char *err, size_t errlen);

/* A service name from an image reference, for create without --name:
 * "registry:5000/team/web:v1" gives "web". Writes "" when none fits. */
void svc_name_from_image(const char *image, char *out, size_t len);

#endif
