/* spec: ServiceSpec defaults, validation and comparison, shared by the CLI
 * (which fills defaults and checks before it sends) and the controller
 * (which checks again, at the edge, before it stores anything).
 *
 * Defaults follow Docker Swarm's except where skiff heals faster: a restart
 * waits 100ms, not 5s (doubling per restart up to SPEC_RESTART_DELAY_CAP_MS),
 * and a health check runs every 5s, not 30s.
 */
#ifndef SKIFF_SPEC_H
#define SKIFF_SPEC_H

#include <stddef.h>
#include <stdint.h>

#include "skiff_pb.h"

#define SPEC_DEFAULT_REPLICAS 1
#define SPEC_DEFAULT_STOP_GRACE_MS 10000
#define SPEC_DEFAULT_DRAIN_DELAY_MS 1000
#define SPEC_DEFAULT_RESTART_DELAY_MS 100
#define SPEC_RESTART_DELAY_CAP_MS 10000
#define SPEC_DEFAULT_UPDATE_MONITOR_MS 5000
#define SPEC_DEFAULT_HEALTH_INTERVAL_MS 5000
#define SPEC_DEFAULT_HEALTH_TIMEOUT_MS 3000
#define SPEC_DEFAULT_HEALTH_RETRIES 3
#define SPEC_MIN_MEMORY_LIMIT (6 << 20) /* the engine refuses less */
#define SPEC_DEFAULT_COOLDOWN_UP_MS 10000
#define SPEC_DEFAULT_COOLDOWN_DOWN_MS 60000

/* Sizes inside a spec; a spec past one is refused with a message naming it. */
typedef struct spec_limits {
    uint32_t max_replicas;
    size_t max_string;      /* any one string: image, env entry, label, path */
    size_t max_list;        /* entries of any one list: env, labels, command */
    size_t max_ports;       /* published plus exposed */
    size_t max_mounts;
    size_t max_constraints;
} spec_limits_t;

extern const spec_limits_t spec_limits_default;

/* A new spec, wholly malloc'd (free with pb_free), with every submessage
 * present and skiff's defaults set. NULL when out of memory. */
ServiceSpec *spec_new(void);

/* A new autoscaling policy with the default cooldowns and no range or
 * target yet. NULL when out of memory. */
Autoscale *spec_autoscale_new(void);

/* Gives every missing submessage of spec a default one, and fills the
 * fields that must not stay zero (protocol "tcp"). Returns 0 or -ENOMEM. */
int spec_complete(ServiceSpec *spec);

/* Labels that say what Docker's service spec has no field for, so that a
 * Compose file the docker CLI also reads, or an Engine API client, can say
 * it (the skiff. prefix is reserved, so no user label is taken for one):
 *   skiff.health.http=/path        skiff's HTTP probe (health.http_path)
 *   skiff.health.http-port=PORT    the probe's port (health.http_port)
 *   skiff.expose=PORT[,PORT...]    ports reached by the service's name
 * spec_take_labels moves them out of spec's labels into its fields (expose
 * replaced, not added to); another skiff. label is refused. Returns 0,
 * SKIFF_EINVAL with one line in err naming the label, or -ENOMEM. */
#define SPEC_LABEL_PREFIX "skiff." /* reserved: no user label starts with it */
#define SPEC_LABEL_HEALTH_HTTP "skiff.health.http"
#define SPEC_LABEL_HEALTH_HTTP_PORT "skiff.health.http-port"
#define SPEC_LABEL_EXPOSE "skiff.expose"
int spec_take_labels(ServiceSpec *spec, char *err, size_t len);

/* Checks one user label, a service's or a node's: a key that is not empty
 * and not in the reserved skiff. prefix, key and value not too long, without
 * control characters, valid UTF-8. field names it in the message ("labels",
 * "label_add"). Returns 0 or SKIFF_EINVAL with one line in err. limits NULL:
 * spec_limits_default. */
int spec_label_check(const char *field, const char *key, const char *value,
                     const spec_limits_t *limits, char *err, size_t errlen);

/* 1 when path can be an HTTP probe's path: it starts with / and holds no
 * space, tab or line break (what --health-http, x-skiff-http and the label
 * take). */
int spec_http_path_ok(const char *path);

/* Checks spec. Returns 0, or SKIFF_EINVAL with one line in err that names
 * the field and what is wrong ("update.max_failure_ratio: must be between 0
 * and 1"). limits NULL: spec_limits_default. */
int spec_validate(const ServiceSpec *spec, const spec_limits_t *limits,
                  char *err, size_t errlen);

/* 1 when a and b are the same spec but for replicas (a scale, not an update). */
int spec_same_but_replicas(const ServiceSpec *a, const ServiceSpec *b);

/* A placement constraint, parsed. */
/* CONSTRAINT_NODE_LABEL matches a node's effective labels (those set on the
 * controller, then the agent's --label); CONSTRAINT_ENGINE_LABEL, Docker's
 * engine.labels.K, only the agent's. */
enum constraint_kind {
    CONSTRAINT_NODE_NAME,
    CONSTRAINT_NODE_ID,
    CONSTRAINT_NODE_LABEL,
    CONSTRAINT_ENGINE_LABEL,
};

typedef struct constraint {
    enum constraint_kind kind;
    int equal;       /* == (1) or != (0) */
    char key[128];   /* the label key, for CONSTRAINT_NODE_LABEL and _ENGINE_LABEL */
    char value[256];
} constraint_t;

/* Parses "node.name==N", "node.id!=I", "node.labels.K==V",
 * "engine.labels.K==V" (spaces around the operator allowed). Returns 0 or
 * SKIFF_EINVAL. */
int constraint_parse(const char *s, constraint_t *out);

/* 1 when the name is a valid service, stack, node or volume name: 1 to 63
 * letters, digits, '-' or '_', starting with a letter or digit. */
int spec_name_valid(const char *name);

/* ------------------------------------------------- secrets and configs */

#define SPEC_SECRET_MAX_SIZE (500 * 1024) /* a value's limit, Swarm's */
#define SPEC_SECRET_MODE_DEFAULT 0444

/* 1 when name can name a secret or config (Docker's rules): 1 to 64
 * letters, digits, '-', '_' or '.', starting and ending with a letter or
 * digit. */
int spec_secret_name_valid(const char *name);

/* "secret" or "config", for messages. */
const char *spec_secret_kind_name(SecretKind kind);

/* Parses a --secret or --config value, Docker's syntax: "NAME", or
 * "source=NAME[,target=T][,uid=U][,gid=G][,mode=0400]" (src=, dst= too),
 * into a new SecretRef (free with pb_free) with its defaults set (see
 * spec_secret_ref_complete). Returns 0, SKIFF_EINVAL with one line in err
 * naming what is wrong, or -ENOMEM. */
int spec_secret_ref_parse(const char *text, SecretKind kind, SecretRef **out, char *err,
                          size_t len);

/* Fills what the user may leave out: the target (a secret's: its name; a
 * config's: /NAME) and the mode (0444). Returns 0 or -ENOMEM. */
int spec_secret_ref_complete(SecretRef *ref, SecretKind kind);

/* The path where a task sees ref: /run/secrets/TARGET or TARGET. */
void spec_secret_ref_path(const SecretRef *ref, SecretKind kind, char *out, size_t len);

/* The text of enum values, as the CLI prints and parses them. */
const char *spec_restart_condition_name(RestartCondition c);  /* "any" */
const char *spec_failure_action_name(FailureAction a);        /* "pause" */
const char *spec_update_order_name(UpdateOrder o);            /* "stop-first" */
int spec_restart_condition_parse(const char *s, RestartCondition *out);
int spec_failure_action_parse(const char *s, FailureAction *out);
int spec_update_order_parse(const char *s, UpdateOrder *out);

#endif
