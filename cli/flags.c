/* flags: see flags.h.
 *
 * Each table entry says where its value goes (a part of the spec and the
 * offset of the field in it) and how to read it (its kind), so that the six
 * --update-* flags and the six --rollback-* flags are twelve lines, not
 * twelve functions.
 */
#include "flags.h"
#include "duration.h"
#include "edit.h"
#include "errors.h"
#include "parse.h"
#include "pbutil.h"
#include "spec.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum svc_kind {
    K_STR,          /* char * */
    K_UINT32,       /* uint32_t */
    K_DURATION,     /* int64_t milliseconds */
    K_RATIO,        /* double between 0 and 1 */
    K_CPUS,         /* int64_t nano-CPUs */
    K_MEMORY,       /* int64_t bytes */
    K_RESTART,      /* RestartCondition */
    K_ACTION,       /* FailureAction */
    K_ORDER,        /* UpdateOrder */
    K_ENV,
    K_LABEL,
    K_CONSTRAINT,
    K_MOUNT,
    K_PUBLISH,
    K_EXPOSE,
    K_HEALTH_CMD,
    K_HEALTH_HTTP,
    K_HEALTH_PORT,
    K_NO_HEALTH,
    K_ENTRYPOINT,
    K_ARGS,
    K_NUMBER,       /* double, above 0 */
    K_NO_AUTOSCALE,
    K_REBALANCE,    /* no_rebalance: 1 for --no-rebalance, 0 for --rebalance */
    K_SECRET,       /* a SecretRef in secrets */
    K_CONFIG,       /* a SecretRef in configs */
};

enum svc_sub { SUB_SPEC, SUB_HEALTH, SUB_RESTART, SUB_UPDATE, SUB_ROLLBACK, SUB_RESERVE,
               SUB_LIMIT, SUB_AUTOSCALE };

enum svc_op { OP_SET, OP_ADD, OP_RM };

#define C SVC_CREATE
#define U SVC_UPDATE
#define CU (SVC_CREATE | SVC_UPDATE)

#define F(n, s, mv, m, k, sb, type, field, h) \
    { .name = n, .shortc = s, .metavar = mv, .modes = m, .help = h, .kind = k, .sub = sb, \
      .off = offsetof(type, field) }
#define L(n, s, mv, m, hid, k, o, h) \
    { .name = n, .shortc = s, .metavar = mv, .modes = m, .hidden = hid, .help = h, \
      .kind = k, .op = o }
#define UPDATE_FLAGS(pfx, sb, what, actions)                                               \
    F(pfx "-parallelism", 0, "N", CU, K_UINT32, sb, UpdateConfig, parallelism,            \
      "Tasks per " what " batch (0: all at once)"),                                                 \
    F(pfx "-delay", 0, "DURATION", CU, K_DURATION, sb, UpdateConfig, delay_ms,            \
      "Delay between " what " batches"),                                                  \
    F(pfx "-order", 0, "ORDER", CU, K_ORDER, sb, UpdateConfig, order,                     \
      "Order of the " what ": stop-first or start-first"),                                    \
    F(pfx "-failure-action", 0, "ACTION", CU, K_ACTION, sb, UpdateConfig, failure_action, \
      "Action on " what " failure: " actions),                                           \
    F(pfx "-monitor", 0, "DURATION", CU, K_DURATION, sb, UpdateConfig, monitor_ms,        \
      "Time to watch each new task for failure"),                              \
    F(pfx "-max-failure-ratio", 0, "RATIO", CU, K_RATIO, sb, UpdateConfig,                \
      max_failure_ratio, "Failure rate to tolerate during the " what " (0 to 1)")

const svc_flag_t svc_flags[] = {
    F("name", 0, "NAME", C, K_STR, SUB_SPEC, ServiceSpec, name,
      "Service name (default: from the image)"),
    F("image", 0, "IMAGE", U, K_STR, SUB_SPEC, ServiceSpec, image, "Service image"),
    F("replicas", 0, "N", CU, K_UINT32, SUB_SPEC, ServiceSpec, replicas, "Number of tasks"),
    L("publish", 'p', "PUBLISHED:TARGET", C, 0, K_PUBLISH, OP_ADD,
      "Publish a port on every node: 8080:80, or published=8080,target=80"),
    L("publish", 'p', "PUBLISHED:TARGET", U, 1, K_PUBLISH, OP_ADD, "Same as --publish-add"),
    L("publish-add", 0, "PUBLISHED:TARGET", U, 0, K_PUBLISH, OP_ADD,
      "Add or change a published port"),
    L("publish-rm", 0, "TARGET", U, 0, K_PUBLISH, OP_RM,
      "Remove a published port by its target port (or PUBLISHED:TARGET)"),
    L("expose", 0, "PORT", C, 0, K_EXPOSE, OP_ADD,
      "Balance a port for the stack's services only, not on the nodes' addresses"),
    L("expose", 0, "PORT", U, 1, K_EXPOSE, OP_ADD, "Same as --expose-add"),
    L("expose-add", 0, "PORT", U, 0, K_EXPOSE, OP_ADD, "Add an internal port"),
    L("expose-rm", 0, "PORT", U, 0, K_EXPOSE, OP_RM, "Remove an internal port"),
    L("env", 'e', "KEY=VALUE", C, 0, K_ENV, OP_ADD, "Set an environment variable"),
    L("env", 'e', "KEY=VALUE", U, 1, K_ENV, OP_ADD, "Same as --env-add"),
    L("env-add", 0, "KEY=VALUE", U, 0, K_ENV, OP_ADD, "Add or change an environment variable"),
    L("env-rm", 0, "KEY", U, 0, K_ENV, OP_RM, "Remove an environment variable"),
    L("label", 'l', "KEY=VALUE", C, 0, K_LABEL, OP_ADD, "Set a label (service and containers)"),
    L("label", 'l', "KEY=VALUE", U, 1, K_LABEL, OP_ADD, "Same as --label-add"),
    L("label-add", 0, "KEY=VALUE", U, 0, K_LABEL, OP_ADD, "Add or change a label"),
    L("label-rm", 0, "KEY", U, 0, K_LABEL, OP_RM, "Remove a label"),
    L("constraint", 0, "EXPR", C, 0, K_CONSTRAINT, OP_ADD,
      "Placement constraint: node.labels.KEY==VALUE, node.name!=NAME"),
    L("constraint", 0, "EXPR", U, 1, K_CONSTRAINT, OP_ADD, "Same as --constraint-add"),
    L("constraint-add", 0, "EXPR", U, 0, K_CONSTRAINT, OP_ADD, "Add a placement constraint"),
    L("constraint-rm", 0, "EXPR", U, 0, K_CONSTRAINT, OP_RM, "Remove a placement constraint"),
    L("mount", 0, "MOUNT", C, 0, K_MOUNT, OP_ADD,
      "Attach a volume or bind mount: type=volume|bind,source=S,target=T[,readonly]"),
    L("mount", 0, "MOUNT", U, 1, K_MOUNT, OP_ADD, "Same as --mount-add"),
    L("mount-add", 0, "MOUNT", U, 0, K_MOUNT, OP_ADD, "Add or change a mount"),
    L("mount-rm", 0, "TARGET", U, 0, K_MOUNT, OP_RM, "Remove the mount at a target path"),
    L("secret", 0, "SPEC", C, 0, K_SECRET, OP_ADD,
      "Give the tasks a secret: NAME, or source=NAME,target=FILE,uid=U,gid=G,mode=0400"),
    L("secret", 0, "SPEC", U, 1, K_SECRET, OP_ADD, "Same as --secret-add"),
    L("secret-add", 0, "SPEC", U, 0, K_SECRET, OP_ADD, "Add or change a secret"),
    L("secret-rm", 0, "NAME", U, 0, K_SECRET, OP_RM, "Remove a secret"),
    L("config", 0, "SPEC", C, 0, K_CONFIG, OP_ADD,
      "Give the tasks a config: NAME, or source=NAME,target=/PATH,uid=U,gid=G,mode=0444"),
    L("config", 0, "SPEC", U, 1, K_CONFIG, OP_ADD, "Same as --config-add"),
    L("config-add", 0, "SPEC", U, 0, K_CONFIG, OP_ADD, "Add or change a config"),
    L("config-rm", 0, "NAME", U, 0, K_CONFIG, OP_RM, "Remove a config"),
    L("health-cmd", 0, "CMD", CU, 0, K_HEALTH_CMD, OP_SET,
      "Command the engine runs to check health (\"\": none)"),
    L("health-http", 0, "PATH", CU, 0, K_HEALTH_HTTP, OP_SET,
      "HTTP path the agent probes on the service's port (\"\": none)"),
    L("health-http-port", 0, "PORT", CU, 0, K_HEALTH_PORT, OP_SET,
      "Target port for --health-http (default: the first port)"),
    F("health-interval", 0, "DURATION", CU, K_DURATION, SUB_HEALTH, HealthCheck, interval_ms,
      "Time between health checks"),
    F("health-timeout", 0, "DURATION", CU, K_DURATION, SUB_HEALTH, HealthCheck, timeout_ms,
      "Maximum time a check may take"),
    F("health-retries", 0, "N", CU, K_UINT32, SUB_HEALTH, HealthCheck, retries,
      "Consecutive failures that make a task unhealthy"),
    F("health-start-period", 0, "DURATION", CU, K_DURATION, SUB_HEALTH, HealthCheck,
      start_period_ms, "Time to start before failed checks count"),
    L("no-healthcheck", 0, NULL, CU, 0, K_NO_HEALTH, OP_SET,
      "Disable any health check, the image's too"),
    F("restart-condition", 0, "CONDITION", CU, K_RESTART, SUB_RESTART, RestartPolicy,
      condition, "Restart when: any, on-failure or none"),
    F("restart-delay", 0, "DURATION", CU, K_DURATION, SUB_RESTART, RestartPolicy, delay_ms,
      "First delay between restarts (it doubles, up to 10s)"),
    F("restart-max-attempts", 0, "N", CU, K_UINT32, SUB_RESTART, RestartPolicy, max_attempts,
      "Give up after N restarts in the window (0: never)"),
    F("restart-window", 0, "DURATION", CU, K_DURATION, SUB_RESTART, RestartPolicy, window_ms,
      "Window in which restarts are counted"),
    UPDATE_FLAGS("update", SUB_UPDATE, "update", "pause, continue or rollback"),
    UPDATE_FLAGS("rollback", SUB_ROLLBACK, "rollback", "pause or continue"),
    F("reserve-cpu", 0, "CPUS", CU, K_CPUS, SUB_RESERVE, Resources, nano_cpus,
      "CPUs to reserve per task (0.5)"),
    F("reserve-memory", 0, "BYTES", CU, K_MEMORY, SUB_RESERVE, Resources, memory_bytes,
      "Memory to reserve per task (512m, 1g)"),
    F("limit-cpu", 0, "CPUS", CU, K_CPUS, SUB_LIMIT, Resources, nano_cpus, "CPU limit per task"),
    F("limit-memory", 0, "BYTES", CU, K_MEMORY, SUB_LIMIT, Resources, memory_bytes,
      "Memory limit per task"),
    F("user", 'u', "USER", CU, K_STR, SUB_SPEC, ServiceSpec, user,
      "User to run as: NAME or UID[:GID]"),
    F("stop-grace-period", 0, "DURATION", CU, K_DURATION, SUB_SPEC, ServiceSpec,
      stop_grace_period_ms, "Time to wait before killing a stopping container"),
    F("drain-delay", 0, "DURATION", CU, K_DURATION, SUB_SPEC, ServiceSpec, drain_delay_ms,
      "Time a leaving task keeps running after it left the balancers"),
    L("entrypoint", 0, "CMD", CU, 0, K_ENTRYPOINT, OP_SET,
      "Override the image's entrypoint (\"\": the image's)"),
    L("args", 0, "COMMAND", U, 0, K_ARGS, OP_SET, "Replace the service's command"),
    F("autoscale-min", 0, "N", CU, K_UINT32, SUB_AUTOSCALE, Autoscale, min,
      "Autoscale: fewest replicas"),
    F("autoscale-max", 0, "N", CU, K_UINT32, SUB_AUTOSCALE, Autoscale, max,
      "Autoscale: most replicas"),
    F("autoscale-target-cpu", 0, "PERCENT", CU, K_NUMBER, SUB_AUTOSCALE, Autoscale, target_cpu,
      "Autoscale to this mean CPU per replica (% of one CPU, or of its limit)"),
    F("autoscale-target-rps", 0, "N", CU, K_NUMBER, SUB_AUTOSCALE, Autoscale, target_rps,
      "Autoscale to this many new connections per second per replica"),
    F("autoscale-target-connections", 0, "N", CU, K_NUMBER, SUB_AUTOSCALE, Autoscale,
      target_connections, "Autoscale to this many open connections per replica"),
    F("autoscale-cooldown-up", 0, "DURATION", CU, K_DURATION, SUB_AUTOSCALE, Autoscale,
      cooldown_up_ms, "Time between two scale-ups (default 10s)"),
    F("autoscale-cooldown-down", 0, "DURATION", CU, K_DURATION, SUB_AUTOSCALE, Autoscale,
      cooldown_down_ms, "Time the load must stay lower before a scale-down (default 60s)"),
    L("no-autoscale", 0, NULL, U, 0, K_NO_AUTOSCALE, OP_SET, "Remove the autoscaling policy"),
    L("no-rebalance", 0, NULL, CU, 0, K_REBALANCE, OP_SET,
      "Keep the tasks where they are when nodes join or come back"),
    L("rebalance", 0, NULL, U, 0, K_REBALANCE, OP_SET, "Undo --no-rebalance"),
};

const size_t svc_flags_n = sizeof(svc_flags) / sizeof(svc_flags[0]);

int svc_opts_push(svc_opts_t *o, const svc_flag_t *flag, const char *value)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 16;
        svc_opt_t *grown = realloc(o->v, cap * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        o->v = grown;
        o->cap = cap;
    }
    o->v[o->n].flag = flag;
    o->v[o->n].value = value;
    o->n++;
    return 0;
}

void svc_opts_free(svc_opts_t *o)
{
    free(o->v);
    o->v = NULL;
    o->n = o->cap = 0;
}

int svc_opts_has(const svc_opts_t *o, const char *name)
{
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->v[i].flag->name, name) == 0)
            return 1;
    return 0;
}

/* ------------------------------------------------------------- applying */

static int svc_bad(char *err, size_t len, const svc_flag_t *f, const char *value,
                   const char *hint)
{
    snprintf(err, len, "invalid value for --%s: \"%.200s\" (%s)", f->name, value ? value : "",
             hint);
    parse_one_line(err);
    return SKIFF_EINVAL;
}

static void *svc_field(ServiceSpec *s, const svc_flag_t *f)
{
    char *base;

    switch (f->sub) {
    case SUB_HEALTH: base = (char *)s->health; break;
    case SUB_RESTART: base = (char *)s->restart; break;
    case SUB_UPDATE: base = (char *)s->update; break;
    case SUB_ROLLBACK: base = (char *)s->rollback; break;
    case SUB_RESERVE: base = (char *)s->reservations; break;
    case SUB_LIMIT: base = (char *)s->limits; break;
    case SUB_AUTOSCALE: base = (char *)s->autoscale; break;
    default: base = (char *)s; break;
    }
    return base + f->off;
}

static int svc_apply_scalar(const svc_flag_t *f, const char *v, ServiceSpec *s, char *err,
                            size_t len)
{
    void *field;
    char *end;

    if (f->sub == SUB_AUTOSCALE && !s->autoscale && !(s->autoscale = spec_autoscale_new()))
        return -ENOMEM;
    field = svc_field(s, f);
    uint64_t u;
    int64_t i64;
    double d;

    switch (f->kind) {
    case K_STR:
        if (pb_set_str(field, v))
            return -ENOMEM;
        return 0;
    case K_UINT32:
        if (parse_uint(v, UINT32_MAX, &u))
            return svc_bad(err, len, f, v, "a whole number");
        *(uint32_t *)field = (uint32_t)u;
        return 0;
    case K_DURATION:
        if (duration_parse(v, &i64))
            return svc_bad(err, len, f, v, "a duration like 10s or 1m30s");
        *(int64_t *)field = i64;
        return 0;
    case K_RATIO:
        if (parse_ratio(v, &d))
            return svc_bad(err, len, f, v, "a number between 0 and 1");
        *(double *)field = d;
        return 0;
    case K_CPUS:
        if (parse_cpus(v, &i64))
            return svc_bad(err, len, f, v, "a number of CPUs like 0.5 or 2");
        *(int64_t *)field = i64;
        return 0;
    case K_MEMORY:
        if (parse_memory(v, &i64))
            return svc_bad(err, len, f, v, "a size like 512m or 1g");
        *(int64_t *)field = i64;
        return 0;
    case K_RESTART:
        if (spec_restart_condition_parse(v, field))
            return svc_bad(err, len, f, v, "any, on-failure or none");
        return 0;
    case K_ACTION: {
        FailureAction a;
        if (spec_failure_action_parse(v, &a) ||
            (f->sub == SUB_ROLLBACK && a == FAILURE_ROLLBACK))
            return svc_bad(err, len, f, v,
                           f->sub == SUB_ROLLBACK ? "pause or continue"
                                                  : "pause, continue or rollback");
        *(FailureAction *)field = a;
        return 0;
    }
    case K_ORDER:
        if (spec_update_order_parse(v, field))
            return svc_bad(err, len, f, v, "stop-first or start-first");
        return 0;
    case K_NUMBER:
        d = strtod(v, &end);
        if (!*v || *end || !(d > 0 && d <= 1e9))
            return svc_bad(err, len, f, v, "a number above 0");
        *(double *)field = d;
        return 0;
    }
    return SKIFF_EINVAL;
}

static int svc_apply_env(const svc_flag_t *f, const char *v, ServiceSpec *s, char *err,
                         size_t len)
{
    const char *eq = strchr(v, '='), *from_env;
    char kv[4200];

    if (f->op == OP_RM) {
        if (!*v || eq)
            return svc_bad(err, len, f, v, "a variable name");
        edit_env_unset(s, v);
        return 0;
    }
    if (!*v || eq == v)
        return svc_bad(err, len, f, v, "KEY=VALUE");
    if (eq)
        return edit_env_set(s, v);
    /* -e KEY: the value from skiff's own environment, as Docker does */
    from_env = getenv(v);
    if (!from_env)
        return 0;
    if ((size_t)snprintf(kv, sizeof(kv), "%s=%s", v, from_env) >= sizeof(kv))
        return svc_bad(err, len, f, v, "the value in the environment is too long");
    return edit_env_set(s, kv);
}

static int svc_apply_label(const svc_flag_t *f, const char *v, ServiceSpec *s, char *err,
                           size_t len)
{
    const char *eq = strchr(v, '=');
    char key[512];
    size_t klen = eq ? (size_t)(eq - v) : strlen(v);

    if (klen == 0 || klen >= sizeof(key))
        return svc_bad(err, len, f, v, f->op == OP_RM ? "a label key" : "KEY=VALUE");
    memcpy(key, v, klen);
    key[klen] = '\0';
    if (strncmp(key, "skiff.", 6) == 0)
        return svc_bad(err, len, f, v, "the skiff. prefix is reserved");
    if (f->op == OP_RM) {
        if (eq)
            return svc_bad(err, len, f, v, "a label key");
        edit_label_unset(s, key);
        return 0;
    }
    return edit_label_set(s, key, eq ? eq + 1 : "");
}

static int svc_apply_list(const svc_flag_t *f, const char *v, ServiceSpec *s, char *err,
                          size_t len)
{
    char why[160];
    constraint_t c;
    uint32_t port;
    PortConfig *p;
    Mount *m;

    switch (f->kind) {
    case K_ENV:
        return svc_apply_env(f, v, s, err, len);
    case K_LABEL:
        return svc_apply_label(f, v, s, err, len);
    case K_CONSTRAINT:
        if (constraint_parse(v, &c))
            return svc_bad(err, len, f, v,
                           "node.labels.KEY==VALUE, node.name!=NAME or node.id==ID");
        if (f->op == OP_RM) {
            edit_constraint_rm(s, v);
            return 0;
        }
        return edit_constraint_add(s, v);
    case K_MOUNT:
        if (f->op == OP_RM) {
            if (v[0] != '/')
                return svc_bad(err, len, f, v, "the mount's target, an absolute path");
            edit_mount_rm(s, v);
            return 0;
        }
        if (!(m = parse_mount(v, why, sizeof(why))))
            return svc_bad(err, len, f, v, why);
        return edit_mount_add(s, m);
    case K_PUBLISH:
        if (f->op == OP_RM) {
            if (strchr(v, ':') || strchr(v, '=')) {
                if (!(p = parse_publish(v, why, sizeof(why))))
                    return svc_bad(err, len, f, v, why);
                edit_port_rm(s, p->published, p->target);
                pb_free(p);
                return 0;
            }
            if (parse_port(v, &port, why, sizeof(why)))
                return svc_bad(err, len, f, v, why);
            edit_port_rm(s, 0, port);
            return 0;
        }
        if (!(p = parse_publish(v, why, sizeof(why))))
            return svc_bad(err, len, f, v, why);
        return edit_port_add(s, p);
    case K_EXPOSE:
        if (parse_port(v, &port, why, sizeof(why)))
            return svc_bad(err, len, f, v, why);
        if (f->op == OP_RM) {
            edit_expose_rm(s, port);
            return 0;
        }
        return edit_expose_add(s, port);
    }
    return SKIFF_EINVAL;
}

/* --secret, --secret-add, --secret-rm and the same for configs. */
static int svc_apply_secret(const svc_flag_t *f, const char *v, ServiceSpec *s, int check_only,
                            char *err, size_t len)
{
    SecretKind kind = f->kind == K_CONFIG ? SECRET_KIND_CONFIG : SECRET_KIND_SECRET;
    const char *what = spec_secret_kind_name(kind);
    size_t *n = kind == SECRET_KIND_CONFIG ? &s->n_configs : &s->n_secrets;
    SecretRef ***refs = kind == SECRET_KIND_CONFIG ? &s->configs : &s->secrets;
    char why[200];
    SecretRef *r;
    int rc;

    if (f->op == OP_RM) {
        if (!*v)
            return svc_bad(err, len, f, v, kind == SECRET_KIND_CONFIG ? "a config's name"
                                                                      : "a secret's name");
        if (edit_secret_rm(n, refs, v) == 0 && !check_only) {
            snprintf(why, sizeof(why), "the service uses no %s %.80s", what, v);
            return svc_bad(err, len, f, v, why);
        }
        return 0;
    }
    rc = spec_secret_ref_parse(v, kind, &r, why, sizeof(why));
    if (rc == SKIFF_EINVAL) {
        snprintf(err, len, "%s", why);
        parse_one_line(err);
    }
    if (rc)
        return rc;
    if (f->modes == SVC_CREATE) { /* two at one target: spec_validate says so */
        if (pb_push_msg(n, (void ***)refs, r)) {
            pb_free(r);
            return -ENOMEM;
        }
        return 0;
    }
    return edit_secret_add(n, refs, r); /* an update's replaces the one at its target */
}

static int svc_apply_words(const svc_flag_t *f, const char *v, size_t *n, char ***arr,
                           char *err, size_t len)
{
    size_t nw = 0;
    char **words = NULL, why[96];
    int rc = parse_words(v, &nw, &words, why, sizeof(why));

    if (rc == SKIFF_EINVAL)
        rc = svc_bad(err, len, f, v, why);
    if (rc == 0)
        rc = edit_strv_set(n, arr, words, nw);
    for (size_t i = 0; i < nw; i++)
        free(words[i]);
    free(words);
    return rc;
}

static int svc_apply_one(const svc_flag_t *f, const char *v, ServiceSpec *s, int check_only,
                         char *err, size_t len)
{
    HealthCheck *h = s->health;
    char *const shell[] = { "CMD-SHELL", (char *)v };
    char *const none[] = { "NONE" };
    uint32_t port;
    char why[96];

    switch (f->kind) {
    case K_ENV: case K_LABEL: case K_CONSTRAINT: case K_MOUNT: case K_PUBLISH: case K_EXPOSE:
        return svc_apply_list(f, v, s, err, len);
    case K_HEALTH_CMD:
        return edit_strv_set(&h->n_test, &h->test, shell, *v ? 2 : 0);
    case K_HEALTH_HTTP:
        if (*v && !spec_http_path_ok(v))
            return svc_bad(err, len, f, v, "a path like /health");
        return pb_set_str(&h->http_path, v);
    case K_HEALTH_PORT:
        if (parse_port(v, &port, why, sizeof(why)))
            return svc_bad(err, len, f, v, why);
        h->http_port = port;
        return 0;
    case K_NO_HEALTH:
        h->http_port = 0;
        if (pb_set_str(&h->http_path, ""))
            return -ENOMEM;
        return edit_strv_set(&h->n_test, &h->test, none, 1);
    case K_SECRET:
    case K_CONFIG:
        return svc_apply_secret(f, v, s, check_only, err, len);
    case K_ENTRYPOINT:
        return svc_apply_words(f, v, &s->n_entrypoint, &s->entrypoint, err, len);
    case K_ARGS:
        return svc_apply_words(f, v, &s->n_command, &s->command, err, len);
    case K_NO_AUTOSCALE:
        pb_free(s->autoscale);
        s->autoscale = NULL;
        return 0;
    case K_REBALANCE:
        s->no_rebalance = strcmp(f->name, "no-rebalance") == 0;
        return 0;
    default:
        return svc_apply_scalar(f, v, s, err, len);
    }
}

/* The autoscaling flags as a whole: a range with a target, the replica
 * count within the range. */
static int svc_autoscale_check(const svc_opts_t *o, ServiceSpec *spec, char *err, size_t len)
{
    Autoscale *a = spec->autoscale;
    int given = 0;

    for (size_t i = 0; i < o->n; i++)
        given |= o->v[i].flag->sub == SUB_AUTOSCALE && o->v[i].flag->kind != K_NO_AUTOSCALE;
    if (given && svc_opts_has(o, "no-autoscale")) {
        snprintf(err, len, "--no-autoscale conflicts with the other --autoscale flags");
        return SKIFF_EINVAL;
    }
    if (!a)
        return 0;
    if (!a->min || !a->max) {
        snprintf(err, len, "--autoscale-min and --autoscale-max are both needed for "
                 "autoscaling");
        return SKIFF_EINVAL;
    }
    if (a->min > a->max) {
        snprintf(err, len, "invalid value for --autoscale-min: \"%u\" (more than "
                 "--autoscale-max %u)", a->min, a->max);
        return SKIFF_EINVAL;
    }
    if (!(a->target_cpu > 0) && !(a->target_rps > 0) && !(a->target_connections > 0)) {
        snprintf(err, len, "autoscaling needs a target: --autoscale-target-cpu, "
                 "--autoscale-target-rps or --autoscale-target-connections");
        return SKIFF_EINVAL;
    }
    if (svc_opts_has(o, "replicas") && (spec->replicas < a->min || spec->replicas > a->max)) {
        snprintf(err, len, "invalid value for --replicas: \"%u\" (outside the autoscale range "
                 "%u-%u)", spec->replicas, a->min, a->max);
        return SKIFF_EINVAL;
    }
    /* no --replicas: start at the range's edge nearest to the count now */
    if (spec->replicas < a->min)
        spec->replicas = a->min;
    if (spec->replicas > a->max)
        spec->replicas = a->max;
    return 0;
}

static int svc_opts_run(const svc_opts_t *o, ServiceSpec *spec, int check_only, char *err,
                        size_t errlen)
{
    int rc;

    if (svc_opts_has(o, "no-healthcheck")) {
        for (size_t i = 0; i < o->n; i++) {
            if (strncmp(o->v[i].flag->name, "health-", 7) == 0) {
                snprintf(err, errlen, "--no-healthcheck conflicts with --%s",
                         o->v[i].flag->name);
                return SKIFF_EINVAL;
            }
        }
    }
    if ((rc = spec_complete(spec)))
        return rc;
    /* removals first, then the rest in command-line order */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < o->n; i++) {
            const svc_flag_t *f = o->v[i].flag;
            if ((f->op == OP_RM) != (pass == 0))
                continue;
            rc = svc_apply_one(f, o->v[i].value ? o->v[i].value : "", spec, check_only, err,
                               errlen);
            if (rc == -ENOMEM)
                snprintf(err, errlen, "out of memory");
            if (rc)
                return rc;
        }
    }
    return svc_autoscale_check(o, spec, err, errlen);
}

int svc_opts_apply(const svc_opts_t *o, ServiceSpec *spec, char *err, size_t errlen)
{
    return svc_opts_run(o, spec, 0, err, errlen);
}

int svc_opts_check(const svc_opts_t *o, char *err, size_t errlen)
{
    ServiceSpec *scratch = spec_new();
    int rc;

    if (!scratch) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    rc = svc_opts_run(o, scratch, 1, err, errlen);
    pb_free(scratch);
    return rc;
}

void svc_name_from_image(const char *image, char *out, size_t len)
{
    const char *start = strrchr(image, '/');
    size_t n = 0;

    start = start ? start + 1 : image;
    for (const char *p = start; *p && *p != ':' && *p != '@' && n + 1 < len && n < 63; p++) {
        unsigned char c = (unsigned char)*p;
        if (n == 0 && !isalnum(c))
            continue;
        out[n++] = isalnum(c) || c == '-' || c == '_' ? (char)c : '-';
    }
    if (len)
        out[n < len ? n : len - 1] = '\0';
}
