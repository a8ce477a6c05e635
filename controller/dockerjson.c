/* dockerjson: see dockerjson.h. */
#include "dockerjson.h"
#include "errors.h"
#include "pbutil.h"
#include "spec.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>

#define NS_PER_MS 1000000LL

/* ------------------------------------------------------------ parsing */

typedef struct dj {
    char *err;
    size_t errlen;
} dj_t;

static int dj_fail(dj_t *d, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int dj_fail(dj_t *d, const char *path, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(d->err, d->errlen, "%s: ", path);

    if (n < 0 || (size_t)n >= d->errlen)
        return -1;
    va_start(ap, fmt);
    vsnprintf(d->err + n, d->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static int dj_nomem(dj_t *d)
{
    snprintf(d->err, d->errlen, "out of memory");
    return -1;
}

/* 1 when v is what the docker CLI sends for something not asked for. */
static int dj_zero(const json_t *v)
{
    const char *k;
    json_t *x;

    switch (json_typeof(v)) {
    case JSON_NULL: case JSON_FALSE: return 1;
    case JSON_INTEGER: return json_integer_value(v) == 0;
    case JSON_REAL: return json_real_value(v) == 0;
    case JSON_STRING: return json_string_length(v) == 0;
    case JSON_ARRAY: return json_array_size(v) == 0;
    case JSON_OBJECT:
        json_object_foreach((json_t *)v, k, x)
            if (!dj_zero(x))
                return 0;
        return 1;
    default: return 0;
    }
}

/* Every key of obj must be known, or hold its zero value. */
static int dj_keys(dj_t *d, const json_t *obj, const char *path, const char *const *known)
{
    const char *k;
    json_t *v;

    if (!json_is_object(obj))
        return dj_fail(d, path, "must be an object");
    json_object_foreach((json_t *)obj, k, v) {
        int ok = 0;
        for (size_t i = 0; known[i] && !ok; i++)
            ok = strcmp(k, known[i]) == 0;
        if (!ok && !dj_zero(v))
            return dj_fail(d, path, "%s: not supported by skiff", k);
    }
    return 0;
}

/* obj.key as an object, or NULL when absent or null; *bad on a non-object. */
static const json_t *dj_obj(dj_t *d, const json_t *obj, const char *key, const char *path,
                            int *bad)
{
    json_t *v = json_object_get(obj, key);

    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_object(v)) {
        *bad = dj_fail(d, path, "%s: must be an object", key);
        return NULL;
    }
    return v;
}

/* An unsigned number; absent or null leaves *out. */
static int dj_uint(dj_t *d, const json_t *obj, const char *key, const char *path, uint64_t max,
                   uint64_t *out)
{
    json_t *v = json_object_get(obj, key);

    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        (uint64_t)json_integer_value(v) > max)
        return dj_fail(d, path, "%s: must be a whole number from 0 to %" PRIu64, key, max);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int dj_u32(dj_t *d, const json_t *obj, const char *key, const char *path, uint32_t *out)
{
    uint64_t v = *out;

    if (dj_uint(d, obj, key, path, UINT32_MAX, &v))
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int dj_i64(dj_t *d, const json_t *obj, const char *key, const char *path, int64_t *out)
{
    uint64_t v = (uint64_t)*out;

    if (dj_uint(d, obj, key, path, INT64_MAX, &v))
        return -1;
    *out = (int64_t)v;
    return 0;
}

/* A duration in nanoseconds, into ms; a part of a millisecond is refused. */
static int dj_dur(dj_t *d, const json_t *obj, const char *key, const char *path, int64_t *ms)
{
    json_t *v = json_object_get(obj, key);
    int64_t ns;

    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return dj_fail(d, path, "%s: must be a duration in nanoseconds, 0 or more", key);
    ns = json_integer_value(v);
    if (ns % NS_PER_MS)
        return dj_fail(d, path, "%s: skiff counts durations in whole milliseconds", key);
    *ms = ns / NS_PER_MS;
    return 0;
}

static int dj_str(dj_t *d, const json_t *obj, const char *key, const char *path, char **field)
{
    json_t *v = json_object_get(obj, key);

    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return dj_fail(d, path, "%s: must be a string", key);
    if (strlen(json_string_value(v)) != json_string_length(v))
        return dj_fail(d, path, "%s: holds a NUL", key);
    return pb_set_str(field, json_string_value(v)) ? dj_nomem(d) : 0;
}

/* A list of strings, replacing *arr. */
static int dj_strs(dj_t *d, const json_t *obj, const char *key, const char *path, size_t *n,
                   char ***arr)
{
    json_t *v = json_object_get(obj, key), *x;
    size_t i;

    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return dj_fail(d, path, "%s: must be a list of strings", key);
    for (i = 0; i < *n; i++)
        if ((*arr)[i] != protobuf_c_empty_string)
            free((*arr)[i]);
    free(*arr);
    *arr = NULL;
    *n = 0;
    json_array_foreach(v, i, x) {
        if (!json_is_string(x) || strlen(json_string_value(x)) != json_string_length(x))
            return dj_fail(d, path, "%s[%zu]: must be a string", key, i);
        if (pb_push_str(n, arr, json_string_value(x)))
            return dj_nomem(d);
    }
    return 0;
}

/* A map of string labels, replacing *arr. */
static int dj_labels(dj_t *d, const json_t *obj, const char *key, const char *path, size_t *n,
                     Label ***arr)
{
    json_t *v = json_object_get(obj, key), *x;
    const char *k;

    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return dj_fail(d, path, "%s: must be an object of strings", key);
    for (size_t i = 0; i < *n; i++)
        pb_free((*arr)[i]);
    free(*arr);
    *arr = NULL;
    *n = 0;
    json_object_foreach(v, k, x) {
        Label *l;
        if (!json_is_string(x))
            return dj_fail(d, path, "%s.%s: must be a string", key, k);
        if (!(l = PB_NEW(Label)))
            return dj_nomem(d);
        if (pb_set_str(&l->key, k) || pb_set_str(&l->value, json_string_value(x)) ||
            pb_push_msg(n, (void ***)arr, l)) {
            pb_free(l);
            return dj_nomem(d);
        }
    }
    return 0;
}

static int dj_healthcheck(dj_t *d, const json_t *h, HealthCheck *hc)
{
    static const char *const known[] = { "Test", "Interval", "Timeout", "Retries", "StartPeriod",
                                         NULL };
    const char *path = "Spec.TaskTemplate.ContainerSpec.Healthcheck";

    if (dj_keys(d, h, path, known) || dj_strs(d, h, "Test", path, &hc->n_test, &hc->test) ||
        dj_dur(d, h, "Interval", path, &hc->interval_ms) ||
        dj_dur(d, h, "Timeout", path, &hc->timeout_ms) ||
        dj_u32(d, h, "Retries", path, &hc->retries) ||
        dj_dur(d, h, "StartPeriod", path, &hc->start_period_ms))
        return -1;
    if (hc->n_test == 1 && strcmp(hc->test[0], "NONE") == 0) { /* --no-healthcheck */
        free(hc->test[0]);
        free(hc->test);
        hc->test = NULL;
        hc->n_test = 0;
    }
    if (hc->n_test && strcmp(hc->test[0], "CMD") && strcmp(hc->test[0], "CMD-SHELL"))
        return dj_fail(d, path, "Test: must start with CMD or CMD-SHELL (or be [\"NONE\"])");
    /* a zero means the engine's default, as in Docker */
    if (!hc->interval_ms)
        hc->interval_ms = SPEC_DEFAULT_HEALTH_INTERVAL_MS;
    if (!hc->timeout_ms)
        hc->timeout_ms = SPEC_DEFAULT_HEALTH_TIMEOUT_MS;
    if (!hc->retries)
        hc->retries = SPEC_DEFAULT_HEALTH_RETRIES;
    return 0;
}

/* A volume's VolumeOptions: only the stack's label, which `docker stack
 * deploy` puts on the volumes it names (skiff's volumes are the engine's
 * local ones, made on first use). */
static int dj_volume_options(dj_t *d, const json_t *m, const char *mpath)
{
    static const char *const known[] = { "Labels", NULL };
    const json_t *o, *labels;
    char path[128];
    const char *k;
    json_t *v;
    int bad = 0;

    snprintf(path, sizeof(path), "%s.VolumeOptions", mpath);
    if (!(o = dj_obj(d, m, "VolumeOptions", mpath, &bad)))
        return bad;
    if (dj_keys(d, o, path, known))
        return -1;
    if (!(labels = dj_obj(d, o, "Labels", path, &bad)))
        return bad;
    json_object_foreach((json_t *)labels, k, v)
        if (strcmp(k, DOCKERJSON_STACK_LABEL) != 0)
            return dj_fail(d, path, "Labels: %s: not supported by skiff (only a stack's %s)", k,
                           DOCKERJSON_STACK_LABEL);
    return 0;
}

static int dj_mounts(dj_t *d, const json_t *c, ServiceSpec *s)
{
    static const char *const known[] = { "Type", "Source", "Target", "ReadOnly", "VolumeOptions",
                                         NULL };
    json_t *v = json_object_get(c, "Mounts"), *m;
    char path[96];
    size_t i;

    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return dj_fail(d, "Spec.TaskTemplate.ContainerSpec", "Mounts: must be a list");
    json_array_foreach(v, i, m) {
        const char *type;
        Mount *mt;
        snprintf(path, sizeof(path), "Spec.TaskTemplate.ContainerSpec.Mounts[%zu]", i);
        if (dj_keys(d, m, path, known))
            return -1;
        type = json_string_value(json_object_get(m, "Type"));
        if (!type || (strcmp(type, "volume") && strcmp(type, "bind")))
            return dj_fail(d, path, "Type: skiff mounts \"volume\" or \"bind\"");
        if (dj_volume_options(d, m, path))
            return -1;
        if (!(mt = PB_NEW(Mount)))
            return dj_nomem(d);
        if (pb_push_msg(&s->n_mounts, (void ***)&s->mounts, mt)) {
            pb_free(mt);
            return dj_nomem(d);
        }
        mt->type = strcmp(type, "bind") == 0 ? MOUNT_BIND : MOUNT_VOLUME;
        mt->readonly = json_is_true(json_object_get(m, "ReadOnly"));
        if (dj_str(d, m, "Source", path, &mt->source) || dj_str(d, m, "Target", path, &mt->target))
            return -1;
    }
    return 0;
}

/* Secrets and Configs: [{"File": {"Name", "UID", "GID", "Mode"}, "SecretID",
 * "SecretName"}] (ConfigID, ConfigName). The name is what counts: the
 * controller finds the id from it, as for a spec from the skiff CLI. */
static int dj_file_refs(dj_t *d, const json_t *c, SecretKind kind, ServiceSpec *s)
{
    static const char *const known_s[] = { "File", "SecretID", "SecretName", NULL };
    static const char *const known_c[] = { "File", "ConfigID", "ConfigName", NULL };
    static const char *const file_keys[] = { "Name", "UID", "GID", "Mode", NULL };
    int config = kind == SECRET_KIND_CONFIG;
    const char *key = config ? "Configs" : "Secrets";
    json_t *v = json_object_get(c, key), *x;
    char path[96], fpath[112];
    size_t i;

    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return dj_fail(d, "Spec.TaskTemplate.ContainerSpec", "%s: must be a list", key);
    json_array_foreach(v, i, x) {
        const json_t *f;
        SecretRef *r;
        int bad = 0;
        snprintf(path, sizeof(path), "Spec.TaskTemplate.ContainerSpec.%s[%zu]", key, i);
        snprintf(fpath, sizeof(fpath), "%s.File", path);
        if (dj_keys(d, x, path, config ? known_c : known_s))
            return -1;
        if (!(r = PB_NEW(SecretRef)))
            return dj_nomem(d);
        if (pb_push_msg(config ? &s->n_configs : &s->n_secrets,
                        (void ***)(config ? &s->configs : &s->secrets), r)) {
            pb_free(r);
            return dj_nomem(d);
        }
        if (dj_str(d, x, config ? "ConfigName" : "SecretName", path, &r->name) ||
            dj_str(d, x, config ? "ConfigID" : "SecretID", path, &r->id))
            return -1;
        f = dj_obj(d, x, "File", path, &bad);
        if (bad)
            return -1;
        if (!f)
            return dj_fail(d, path, "File: needed (skiff puts every %s in a file)",
                           spec_secret_kind_name(kind));
        if (dj_keys(d, f, fpath, file_keys) || dj_str(d, f, "Name", fpath, &r->target) ||
            dj_u32(d, f, "Mode", fpath, &r->mode))
            return -1;
        for (int k = 0; k < 2; k++) {
            json_t *id = json_object_get(f, k ? "GID" : "UID");
            const char *t = json_string_value(id);
            char *end;
            unsigned long n;
            if (!id || json_is_null(id))
                continue;
            n = t ? strtoul(t, &end, 10) : 0;
            if (!t || !*t || *end || n > UINT32_MAX - 1)
                return dj_fail(d, fpath, "%s: must be a number as a string", k ? "GID" : "UID");
            *(k ? &r->gid : &r->uid) = (uint32_t)n;
        }
        if (spec_secret_ref_complete(r, kind))
            return dj_nomem(d);
    }
    return 0;
}

static int dj_container(dj_t *d, const json_t *c, ServiceSpec *s)
{
    static const char *const known[] = { "Image", "Command", "Args", "Env", "User", "Healthcheck",
                                         "Mounts", "StopGracePeriod", "Labels", "Secrets",
                                         "Configs", NULL };
    const char *path = "Spec.TaskTemplate.ContainerSpec";
    const json_t *h;
    int bad = 0;

    if (dj_keys(d, c, path, known) || dj_str(d, c, "Image", path, &s->image) ||
        dj_strs(d, c, "Command", path, &s->n_entrypoint, &s->entrypoint) ||
        dj_strs(d, c, "Args", path, &s->n_command, &s->command) ||
        dj_strs(d, c, "Env", path, &s->n_env, &s->env) || dj_str(d, c, "User", path, &s->user) ||
        dj_dur(d, c, "StopGracePeriod", path, &s->stop_grace_period_ms) || dj_mounts(d, c, s) ||
        dj_file_refs(d, c, SECRET_KIND_SECRET, s) || dj_file_refs(d, c, SECRET_KIND_CONFIG, s))
        return -1;
    h = dj_obj(d, c, "Healthcheck", path, &bad);
    if (bad || (h && dj_healthcheck(d, h, s->health)))
        return -1;
    return 0;
}

static int dj_resources(dj_t *d, const json_t *r, ServiceSpec *s)
{
    static const char *const known[] = { "Limits", "Reservations", NULL };
    static const char *const lim[] = { "NanoCPUs", "MemoryBytes", NULL };
    const char *names[2] = { "Limits", "Reservations" };
    Resources *to[2] = { s->limits, s->reservations };
    char path[64];

    if (dj_keys(d, r, "Spec.TaskTemplate.Resources", known))
        return -1;
    for (int i = 0; i < 2; i++) {
        int bad = 0;
        const json_t *x = dj_obj(d, r, names[i], "Spec.TaskTemplate.Resources", &bad);
        if (bad)
            return -1;
        if (!x)
            continue;
        snprintf(path, sizeof(path), "Spec.TaskTemplate.Resources.%s", names[i]);
        if (dj_keys(d, x, path, lim) || dj_i64(d, x, "NanoCPUs", path, &to[i]->nano_cpus) ||
            dj_i64(d, x, "MemoryBytes", path, &to[i]->memory_bytes))
            return -1;
    }
    return 0;
}

static int dj_restart(dj_t *d, const json_t *r, RestartPolicy *rp)
{
    static const char *const known[] = { "Condition", "Delay", "MaxAttempts", "Window", NULL };
    const char *path = "Spec.TaskTemplate.RestartPolicy";
    json_t *c = json_object_get(r, "Condition");

    if (dj_keys(d, r, path, known) || dj_dur(d, r, "Delay", path, &rp->delay_ms) ||
        dj_u32(d, r, "MaxAttempts", path, &rp->max_attempts) ||
        dj_dur(d, r, "Window", path, &rp->window_ms))
        return -1;
    if (c && !json_is_null(c)) {
        const char *v = json_string_value(c);
        if (!v || spec_restart_condition_parse(v, &rp->condition))
            return dj_fail(d, path, "Condition: must be \"none\", \"on-failure\" or \"any\"");
    }
    return 0;
}

static int dj_update(dj_t *d, const json_t *u, const char *path, UpdateConfig *uc)
{
    static const char *const known[] = { "Parallelism", "Delay", "FailureAction", "Monitor",
                                         "MaxFailureRatio", "Order", NULL };
    json_t *v;

    if (dj_keys(d, u, path, known) || dj_u32(d, u, "Parallelism", path, &uc->parallelism) ||
        dj_dur(d, u, "Delay", path, &uc->delay_ms) ||
        dj_dur(d, u, "Monitor", path, &uc->monitor_ms))
        return -1;
    if (!uc->monitor_ms)
        uc->monitor_ms = SPEC_DEFAULT_UPDATE_MONITOR_MS;
    if ((v = json_object_get(u, "FailureAction")) && !json_is_null(v) &&
        (!json_is_string(v) || spec_failure_action_parse(json_string_value(v),
                                                         &uc->failure_action)))
        return dj_fail(d, path, "FailureAction: must be \"pause\", \"continue\" or \"rollback\"");
    if ((v = json_object_get(u, "Order")) && !json_is_null(v) &&
        (!json_is_string(v) || spec_update_order_parse(json_string_value(v), &uc->order)))
        return dj_fail(d, path, "Order: must be \"stop-first\" or \"start-first\"");
    if ((v = json_object_get(u, "MaxFailureRatio")) && !json_is_null(v)) {
        if (!json_is_number(v))
            return dj_fail(d, path, "MaxFailureRatio: must be a number");
        uc->max_failure_ratio = json_number_value(v);
    }
    return 0;
}

static int dj_task_template(dj_t *d, const json_t *t, ServiceSpec *s)
{
    static const char *const known[] = { "ContainerSpec", "Resources", "RestartPolicy",
                                         "Placement", "ForceUpdate", "Runtime", "Networks", NULL };
    static const char *const placement[] = { "Constraints", NULL };
    const char *path = "Spec.TaskTemplate";
    const json_t *x;
    json_t *rt = json_object_get(t, "Runtime");
    int bad = 0;

    if (dj_keys(d, t, path, known) || dj_uint(d, t, "ForceUpdate", path, UINT32_MAX,
                                               &s->force_update))
        return -1;
    if (rt && !json_is_null(rt) && (!json_is_string(rt) ||
                                    (*json_string_value(rt) &&
                                     strcmp(json_string_value(rt), "container"))))
        return dj_fail(d, path, "Runtime: skiff runs containers only");
    if (!(x = dj_obj(d, t, "ContainerSpec", path, &bad)))
        return bad ? -1 : dj_fail(d, path, "ContainerSpec: missing");
    if (dj_container(d, x, s))
        return -1;
    if ((x = dj_obj(d, t, "Resources", path, &bad)) && dj_resources(d, x, s))
        return -1;
    if (!bad && (x = dj_obj(d, t, "RestartPolicy", path, &bad)) && dj_restart(d, x, s->restart))
        return -1;
    if (!bad && (x = dj_obj(d, t, "Placement", path, &bad)) &&
        (dj_keys(d, x, "Spec.TaskTemplate.Placement", placement) ||
         dj_strs(d, x, "Constraints", "Spec.TaskTemplate.Placement", &s->n_constraints,
                 &s->constraints)))
        return -1;
    return bad ? -1 : 0;
}

static int dj_endpoint(dj_t *d, const json_t *e, ServiceSpec *s)
{
    static const char *const known[] = { "Mode", "Ports", NULL };
    static const char *const pknown[] = { "Protocol", "TargetPort", "PublishedPort",
                                          "PublishMode", NULL };
    const char *path = "Spec.EndpointSpec";
    json_t *m = json_object_get(e, "Mode"), *ports = json_object_get(e, "Ports"), *p;
    char ppath[64];
    size_t i;

    if (dj_keys(d, e, path, known))
        return -1;
    if (m && !json_is_null(m) && (!json_is_string(m) || (*json_string_value(m) &&
                                                         strcmp(json_string_value(m), "vip"))))
        return dj_fail(d, path, "Mode: skiff balances every service (\"vip\"); \"dnsrr\" is "
                       "not supported");
    if (!ports || json_is_null(ports))
        return 0;
    if (!json_is_array(ports))
        return dj_fail(d, path, "Ports: must be a list");
    json_array_foreach(ports, i, p) {
        json_t *proto = json_object_get(p, "Protocol"), *mode = json_object_get(p, "PublishMode");
        PortConfig *pc;
        snprintf(ppath, sizeof(ppath), "Spec.EndpointSpec.Ports[%zu]", i);
        if (dj_keys(d, p, ppath, pknown))
            return -1;
        if (proto && !json_is_null(proto) &&
            (!json_is_string(proto) || (*json_string_value(proto) &&
                                        strcmp(json_string_value(proto), "tcp"))))
            return dj_fail(d, ppath, "Protocol: skiff balances tcp only");
        if (mode && !json_is_null(mode) &&
            (!json_is_string(mode) || (*json_string_value(mode) &&
                                       strcmp(json_string_value(mode), "ingress"))))
            return dj_fail(d, ppath, "PublishMode: skiff publishes on every node (\"ingress\"); "
                           "\"host\" is not supported");
        if (!(pc = PB_NEW(PortConfig)))
            return dj_nomem(d);
        if (pb_push_msg(&s->n_ports, (void ***)&s->ports, pc) || pb_set_str(&pc->protocol, "tcp")) {
            if (s->n_ports && s->ports[s->n_ports - 1] == pc)
                s->n_ports--;
            pb_free(pc);
            return dj_nomem(d);
        }
        if (dj_u32(d, p, "TargetPort", ppath, &pc->target) ||
            dj_u32(d, p, "PublishedPort", ppath, &pc->published))
            return -1;
        if (!pc->published)
            return dj_fail(d, ppath, "PublishedPort: skiff assigns no port: give one (-p P:T)");
    }
    return 0;
}

static int dj_spec(dj_t *d, const json_t *j, ServiceSpec *s)
{
    static const char *const known[] = { "Name", "Labels", "TaskTemplate", "Mode",
                                         "UpdateConfig", "RollbackConfig", "EndpointSpec", NULL };
    static const char *const mode[] = { "Replicated", NULL };
    static const char *const repl[] = { "Replicas", NULL };
    const json_t *x, *r;
    int bad = 0;

    if (dj_keys(d, j, "Spec", known) || dj_str(d, j, "Name", "Spec", &s->name) ||
        dj_labels(d, j, "Labels", "Spec", &s->n_labels, &s->labels))
        return -1;
    if (!(x = dj_obj(d, j, "TaskTemplate", "Spec", &bad)))
        return bad ? -1 : dj_fail(d, "Spec", "TaskTemplate: missing");
    if (dj_task_template(d, x, s))
        return -1;
    if ((x = dj_obj(d, j, "Mode", "Spec", &bad))) {
        if (json_object_get(x, "Global") && !json_is_null(json_object_get(x, "Global")))
            return dj_fail(d, "Spec.Mode", "Global: not supported by skiff (replicated only)");
        if (dj_keys(d, x, "Spec.Mode", mode))
            return -1;
        if ((r = dj_obj(d, x, "Replicated", "Spec.Mode", &bad)) &&
            (dj_keys(d, r, "Spec.Mode.Replicated", repl) ||
             dj_u32(d, r, "Replicas", "Spec.Mode.Replicated", &s->replicas)))
            return -1;
    }
    if (bad)
        return -1;
    if ((x = dj_obj(d, j, "UpdateConfig", "Spec", &bad)) &&
        dj_update(d, x, "Spec.UpdateConfig", s->update))
        return -1;
    if (!bad && (x = dj_obj(d, j, "RollbackConfig", "Spec", &bad)) &&
        dj_update(d, x, "Spec.RollbackConfig", s->rollback))
        return -1;
    if (!bad && (x = dj_obj(d, j, "EndpointSpec", "Spec", &bad)) && dj_endpoint(d, x, s))
        return -1;
    return bad ? -1 : 0;
}

/* What `docker stack deploy` adds to a stack's service: the stack's label
 * on its containers, and the stack's default network with the service's
 * short name as alias. skiff does both already (its containers carry the
 * stack, and a stack's services reach each other by name through the
 * balancers), so these are taken when they say just that. */
static int dj_stack_parts(dj_t *d, const json_t *tt, const ServiceSpec *s)
{
    const json_t *c = json_object_get(tt, "ContainerSpec");
    json_t *labels = json_object_get(c, "Labels"), *nets = json_object_get(tt, "Networks"), *x;
    const char *k, *shortname = *s->stack ? s->name + strlen(s->stack) + 1 : s->name;
    char want[160];
    size_t i;

    json_object_foreach(labels, k, x) {
        if (strcmp(k, DOCKERJSON_STACK_LABEL) || !*s->stack ||
            !json_is_string(x) || strcmp(json_string_value(x), s->stack))
            return dj_fail(d, "Spec.TaskTemplate.ContainerSpec", "Labels: not supported by skiff "
                           "(a service's Labels are set on its containers too)");
    }
    if (!nets || dj_zero(nets))
        return 0;
    snprintf(want, sizeof(want), "%s_default", s->stack);
    if (!json_is_array(nets))
        return dj_fail(d, "Spec.TaskTemplate", "Networks: must be a list");
    json_array_foreach(nets, i, x) {
        json_t *aliases = json_object_get(x, "Aliases"), *a;
        const char *target = json_string_value(json_object_get(x, "Target"));
        size_t k2;
        if (!*s->stack || !target || strcmp(target, want))
            return dj_fail(d, "Spec.TaskTemplate", "Networks: not supported by skiff (a stack's "
                           "services reach each other by name; there are no other networks)");
        json_array_foreach(aliases, k2, a)
            if (!json_is_string(a) || strcmp(json_string_value(a), shortname))
                return dj_fail(d, "Spec.TaskTemplate", "Networks[%zu].Aliases: only the "
                               "service's own name is supported", i);
    }
    return 0;
}

/* dockerjson_spec shows a stack's service with the stack's label, which a
 * service made by `skiff stack deploy` does not have: coming back in an
 * update, it is not a new label. */
static void dj_drop_shown_stack_label(ServiceSpec *s, const ServiceSpec *base)
{
    for (size_t i = 0; i < base->n_labels; i++)
        if (strcmp(base->labels[i]->key, DOCKERJSON_STACK_LABEL) == 0)
            return; /* a real label */
    for (size_t i = 0; i < s->n_labels; i++) {
        if (strcmp(s->labels[i]->key, DOCKERJSON_STACK_LABEL) == 0 &&
            strcmp(s->labels[i]->value, base->stack) == 0) {
            pb_free(s->labels[i]);
            memmove(s->labels + i, s->labels + i + 1, (s->n_labels - i - 1) * sizeof(*s->labels));
            s->n_labels--;
            return;
        }
    }
}

ServiceSpec *dockerjson_spec_from(const json_t *j, const ServiceSpec *base, char *err,
                                  size_t errlen)
{
    dj_t d = { err, errlen };
    ServiceSpec *s = spec_new();

    if (!s) {
        dj_nomem(&d);
        return NULL;
    }
    if (!json_is_object(j)) {
        dj_fail(&d, "Spec", "must be an object");
        goto out_free;
    }
    if (base) { /* what Docker's spec has no field for stays as it was */
        HealthCheck *h = s->health;
        if (pb_set_str(&s->stack, base->stack) || pb_set_str(&h->http_path,
                                                             base->health->http_path))
            goto out_nomem;
        h->http_port = base->health->http_port;
        s->drain_delay_ms = base->drain_delay_ms;
        s->no_rebalance = base->no_rebalance;
        for (size_t i = 0; i < base->n_expose; i++) {
            uint32_t *v = realloc(s->expose, (s->n_expose + 1) * sizeof(*v));
            if (!v)
                goto out_nomem;
            s->expose = v;
            s->expose[s->n_expose++] = base->expose[i];
        }
        if (base->autoscale && !(s->autoscale = pb_dup(base->autoscale)))
            goto out_nomem;
    }
    if (dj_spec(&d, j, s))
        goto out_free;
    switch (spec_take_labels(s, d.err, d.errlen)) {
    case 0:
        break;
    case -ENOMEM:
        goto out_nomem;
    default:
        goto out_free;
    }
    /* a stack's service, as `docker stack deploy` names it */
    for (size_t i = 0; i < s->n_labels; i++) {
        const char *ns = s->labels[i]->value;
        size_t n = strlen(ns);
        if (strcmp(s->labels[i]->key, DOCKERJSON_STACK_LABEL) == 0 && n &&
            strncmp(s->name, ns, n) == 0 && s->name[n] == '_' && pb_set_str(&s->stack, ns))
            goto out_nomem;
    }
    if (dj_stack_parts(&d, json_object_get(j, "TaskTemplate"), s))
        goto out_free;
    if (base && *base->stack)
        dj_drop_shown_stack_label(s, base);
    return s;

out_nomem:
    dj_nomem(&d);
out_free:
    pb_free(s);
    return NULL;
}

/* ------------------------------------------------------------- output */

void dockerjson_time(int64_t ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char out[96]; /* room for any year gmtime_r gives */
    size_t n;

    if (len == 0)
        return;
    if (ms <= 0 || !gmtime_r(&t, &tm)) {
        snprintf(buf, len, "0001-01-01T00:00:00Z");
        return;
    }
    snprintf(out, sizeof(out), "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (long long)(ms % 1000) * NS_PER_MS);
    n = strlen(out) < len ? strlen(out) : len - 1;
    memcpy(buf, out, n);
    buf[n] = '\0';
}

static int dj_set(json_t *o, const char *key, json_t *v)
{
    return v ? json_object_set_new(o, key, v) : -1;
}

static int dj_set_time(json_t *o, const char *key, int64_t ms)
{
    char buf[40];

    dockerjson_time(ms, buf, sizeof(buf));
    return dj_set(o, key, json_string(buf));
}

static json_t *dj_str_array(char *const *v, size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_string(v[i]))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *dj_label_map(Label *const *l, size_t n)
{
    json_t *o = json_object();

    for (size_t i = 0; o && i < n; i++)
        if (dj_set(o, l[i]->key, json_string(l[i]->value))) {
            json_decref(o);
            return NULL;
        }
    return o;
}

static json_t *dj_update_json(const UpdateConfig *u)
{
    return json_pack("{s:I, s:I, s:s, s:I, s:f, s:s}", "Parallelism", (json_int_t)u->parallelism,
                     "Delay", (json_int_t)(u->delay_ms * NS_PER_MS), "FailureAction",
                     spec_failure_action_name(u->failure_action), "Monitor",
                     (json_int_t)(u->monitor_ms * NS_PER_MS), "MaxFailureRatio",
                     u->max_failure_ratio, "Order", spec_update_order_name(u->order));
}

static json_t *dj_ports(const ServiceSpec *s)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < s->n_ports; i++)
        if (json_array_append_new(a, json_pack("{s:s, s:I, s:I, s:s}", "Protocol", "tcp",
                                               "TargetPort", (json_int_t)s->ports[i]->target,
                                               "PublishedPort",
                                               (json_int_t)s->ports[i]->published,
                                               "PublishMode", "ingress"))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

/* What Docker's spec has no field for, as the labels spec_take_labels reads
 * back: an update the docker CLI sends keeps it, and inspect shows it. */
static int dj_extension_labels(json_t *labels, const ServiceSpec *s)
{
    const HealthCheck *h = s->health;
    char *ports = NULL, *p;
    int rc = 0;

    if (h && *h->http_path) {
        rc = dj_set(labels, SPEC_LABEL_HEALTH_HTTP, json_string(h->http_path));
        if (!rc && h->http_port)
            rc = dj_set(labels, SPEC_LABEL_HEALTH_HTTP_PORT,
                        json_sprintf("%u", (unsigned)h->http_port));
    }
    if (!rc && s->n_expose) {
        if (!(p = ports = malloc(s->n_expose * 11 + 1)))
            return -1;
        for (size_t i = 0; i < s->n_expose; i++)
            p += sprintf(p, "%s%u", i ? "," : "", (unsigned)s->expose[i]);
        rc = dj_set(labels, SPEC_LABEL_EXPOSE, json_string(ports));
        free(ports);
    }
    return rc;
}

/* Secrets or Configs as Docker shows them in a ContainerSpec. */
static json_t *dj_file_refs_json(SecretRef *const *refs, size_t n, int config)
{
    json_t *arr = json_array();

    for (size_t i = 0; arr && i < n; i++) {
        const SecretRef *r = refs[i];
        char uid[16], gid[16];
        snprintf(uid, sizeof(uid), "%u", r->uid);
        snprintf(gid, sizeof(gid), "%u", r->gid);
        if (json_array_append_new(arr, json_pack("{s:{s:s, s:s, s:s, s:i}, s:s, s:s}", "File",
                                                 "Name", r->target, "UID", uid, "GID", gid,
                                                 "Mode", (int)r->mode,
                                                 config ? "ConfigID" : "SecretID", r->id,
                                                 config ? "ConfigName" : "SecretName",
                                                 r->name))) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

json_t *dockerjson_spec(const ServiceSpec *s)
{
    json_t *j = json_object(), *tt = json_object(), *c = json_object(), *mounts = json_array();
    const HealthCheck *h = s->health;
    int rc = !j || !tt || !c || !mounts;

    rc = rc || dj_set(j, "Name", json_string(s->name)) ||
         dj_set(j, "Labels", dj_label_map(s->labels, s->n_labels)) ||
         (*s->stack && !json_object_get(json_object_get(j, "Labels"), DOCKERJSON_STACK_LABEL) &&
          dj_set(json_object_get(j, "Labels"), DOCKERJSON_STACK_LABEL,
                 json_string(s->stack))) || /* `docker stack ls` finds skiff's stacks */
         dj_set(c, "Image", json_string(s->image)) ||
         dj_extension_labels(json_object_get(j, "Labels"), s);
    if (!rc && s->n_entrypoint)
        rc = dj_set(c, "Command", dj_str_array(s->entrypoint, s->n_entrypoint));
    if (!rc && s->n_command)
        rc = dj_set(c, "Args", dj_str_array(s->command, s->n_command));
    if (!rc && s->n_env)
        rc = dj_set(c, "Env", dj_str_array(s->env, s->n_env));
    if (!rc && *s->user)
        rc = dj_set(c, "User", json_string(s->user));
    if (!rc && h && h->n_test)
        rc = dj_set(c, "Healthcheck",
                    json_pack("{s:o, s:I, s:I, s:I, s:I}", "Test",
                              dj_str_array(h->test, h->n_test), "Interval",
                              (json_int_t)(h->interval_ms * NS_PER_MS), "Timeout",
                              (json_int_t)(h->timeout_ms * NS_PER_MS), "Retries",
                              (json_int_t)h->retries, "StartPeriod",
                              (json_int_t)(h->start_period_ms * NS_PER_MS)));
    for (size_t i = 0; !rc && i < s->n_mounts; i++)
        rc = json_array_append_new(mounts, json_pack("{s:s, s:s, s:s, s:b}", "Type",
                                                     s->mounts[i]->type == MOUNT_BIND ? "bind"
                                                                                      : "volume",
                                                     "Source", s->mounts[i]->source, "Target",
                                                     s->mounts[i]->target, "ReadOnly",
                                                     s->mounts[i]->readonly));
    if (!rc && s->n_mounts)
        rc = json_object_set(c, "Mounts", mounts);
    if (!rc && s->n_secrets)
        rc = dj_set(c, "Secrets", dj_file_refs_json(s->secrets, s->n_secrets, 0));
    if (!rc && s->n_configs)
        rc = dj_set(c, "Configs", dj_file_refs_json(s->configs, s->n_configs, 1));
    rc = rc || dj_set(c, "StopGracePeriod", json_integer(s->stop_grace_period_ms * NS_PER_MS)) ||
         json_object_set(tt, "ContainerSpec", c) ||
         dj_set(tt, "Resources",
                json_pack("{s:{s:I, s:I}, s:{s:I, s:I}}", "Limits", "NanoCPUs",
                          (json_int_t)s->limits->nano_cpus, "MemoryBytes",
                          (json_int_t)s->limits->memory_bytes, "Reservations", "NanoCPUs",
                          (json_int_t)s->reservations->nano_cpus, "MemoryBytes",
                          (json_int_t)s->reservations->memory_bytes)) ||
         dj_set(tt, "RestartPolicy",
                json_pack("{s:s, s:I, s:I, s:I}", "Condition",
                          spec_restart_condition_name(s->restart->condition), "Delay",
                          (json_int_t)(s->restart->delay_ms * NS_PER_MS), "MaxAttempts",
                          (json_int_t)s->restart->max_attempts, "Window",
                          (json_int_t)(s->restart->window_ms * NS_PER_MS))) ||
         dj_set(tt, "Placement", json_pack("{s:o}", "Constraints",
                                           dj_str_array(s->constraints, s->n_constraints))) ||
         dj_set(tt, "ForceUpdate", json_integer((json_int_t)s->force_update)) ||
         dj_set(tt, "Runtime", json_string("container")) || json_object_set(j, "TaskTemplate", tt) ||
         dj_set(j, "Mode", json_pack("{s:{s:I}}", "Replicated", "Replicas",
                                     (json_int_t)s->replicas)) ||
         dj_set(j, "UpdateConfig", dj_update_json(s->update)) ||
         dj_set(j, "RollbackConfig", dj_update_json(s->rollback)) ||
         dj_set(j, "EndpointSpec", json_pack("{s:s, s:o}", "Mode", "vip", "Ports", dj_ports(s)));
    json_decref(tt);
    json_decref(c);
    json_decref(mounts);
    if (rc) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static const char *dj_update_state(UpdateState s)
{
    switch (s) {
    case UPDATE_UPDATING: return "updating";
    case UPDATE_PAUSED: return "paused";
    case UPDATE_COMPLETED: return "completed";
    case UPDATE_ROLLBACK_STARTED: return "rollback_started";
    case UPDATE_ROLLBACK_PAUSED: return "rollback_paused";
    case UPDATE_ROLLBACK_COMPLETED: return "rollback_completed";
    default: return "";
    }
}

json_t *dockerjson_service(const Service *svc)
{
    json_t *j = json_object();
    int rc = !j;

    rc = rc || dj_set(j, "ID", json_string(svc->id)) ||
         dj_set(j, "Version", json_pack("{s:I}", "Index", (json_int_t)svc->version)) ||
         dj_set_time(j, "CreatedAt", svc->created_ms) ||
         dj_set_time(j, "UpdatedAt", svc->updated_ms) ||
         dj_set(j, "Spec", dockerjson_spec(svc->spec));
    if (!rc && svc->previous_spec)
        rc = dj_set(j, "PreviousSpec", dockerjson_spec(svc->previous_spec));
    rc = rc || dj_set(j, "Endpoint",
                      json_pack("{s:{s:s, s:o}, s:o}", "Spec", "Mode", "vip", "Ports",
                                dj_ports(svc->spec), "Ports", dj_ports(svc->spec)));
    if (!rc && svc->update_status && svc->update_status->state != UPDATE_NONE) {
        json_t *u = json_pack("{s:s, s:s}", "State", dj_update_state(svc->update_status->state),
                              "Message", svc->update_status->message);
        rc = !u || dj_set_time(u, "StartedAt", svc->update_status->started_ms);
        if (!rc && svc->update_status->completed_ms)
            rc = dj_set_time(u, "CompletedAt", svc->update_status->completed_ms);
        rc = rc || json_object_set(j, "UpdateStatus", u);
        json_decref(u);
    }
    rc = rc || dj_set(j, "ServiceStatus",
                      json_pack("{s:I, s:I, s:I}", "RunningTasks",
                                (json_int_t)svc->running_tasks, "DesiredTasks",
                                (json_int_t)svc->desired_tasks, "CompletedTasks", (json_int_t)0));
    if (rc) {
        json_decref(j);
        return NULL;
    }
    return j;
}

const char *dockerjson_task_state(TaskState s)
{
    switch (s) {
    case TASK_NEW: return "new";
    case TASK_PENDING: return "pending";
    case TASK_ASSIGNED: return "assigned";
    case TASK_PULLING: return "preparing";
    case TASK_STARTING: return "starting";
    case TASK_RUNNING: return "running";
    case TASK_COMPLETE: return "complete";
    case TASK_FAILED: return "failed";
    case TASK_SHUTDOWN: return "shutdown";
    case TASK_REJECTED: return "rejected";
    case TASK_ORPHANED: return "orphaned";
    case TASK_REMOVED: return "remove";
    default: return "new";
    }
}

const char *dockerjson_desired_state(DesiredState s)
{
    switch (s) {
    case DESIRED_RUNNING: return "running";
    case DESIRED_SHUTDOWN: return "shutdown";
    default: return "remove";
    }
}

json_t *dockerjson_task(const Task *t)
{
    json_t *j = json_object(), *st = json_object(), *ports = json_array();
    int failed = t->state == TASK_FAILED || t->state == TASK_REJECTED;
    int rc = !j || !st || !ports;

    for (size_t i = 0; !rc && i < t->n_ports; i++)
        rc = json_array_append_new(ports, json_pack("{s:s, s:I, s:I, s:s}", "Protocol", "tcp",
                                                     "TargetPort",
                                                     (json_int_t)t->ports[i]->target,
                                                     "PublishedPort",
                                                     (json_int_t)t->ports[i]->host_port,
                                                     "PublishMode", "host"));
    rc = rc || dj_set_time(st, "Timestamp", t->state_since_ms ? t->state_since_ms
                                                              : t->created_ms) ||
         dj_set(st, "State", json_string(dockerjson_task_state(t->state))) ||
         dj_set(st, "Message", json_string(*t->message && !failed ? t->message
                                           : dockerjson_task_state(t->state)));
    if (!rc && failed && *t->message)
        rc = dj_set(st, "Err", json_string(t->message));
    rc = rc || dj_set(st, "ContainerStatus",
                      json_pack("{s:s, s:i}", "ContainerID", t->container_id, "ExitCode",
                                (int)t->exit_code)) ||
         dj_set(st, "PortStatus", json_pack("{s:O}", "Ports", ports)) ||
         dj_set(j, "ID", json_string(t->id)) ||
         dj_set(j, "Version", json_pack("{s:I}", "Index", (json_int_t)t->spec_version)) ||
         dj_set_time(j, "CreatedAt", t->created_ms) ||
         dj_set_time(j, "UpdatedAt", t->state_since_ms ? t->state_since_ms : t->created_ms) ||
         dj_set(j, "Labels", json_object()) ||
         dj_set(j, "Spec", json_pack("{s:{s:s}}", "ContainerSpec", "Image", t->image)) ||
         dj_set(j, "ServiceID", json_string(t->service_id)) ||
         dj_set(j, "Slot", json_integer(t->slot)) || dj_set(j, "NodeID", json_string(t->node_id)) ||
         json_object_set(j, "Status", st) ||
         dj_set(j, "DesiredState", json_string(dockerjson_desired_state(t->desired_state)));
    json_decref(st);
    json_decref(ports);
    if (rc) {
        json_decref(j);
        return NULL;
    }
    return j;
}

uint64_t dockerjson_node_version(const Node *n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    const unsigned char *p;

    h = (h ^ (unsigned)n->availability) * 1099511628211ULL;
    for (size_t i = 0; i < n->n_spec_labels; i++) {
        for (p = (const unsigned char *)n->spec_labels[i]->key; *p; p++)
            h = (h ^ *p) * 1099511628211ULL;
        h = (h ^ '=') * 1099511628211ULL;
        for (p = (const unsigned char *)n->spec_labels[i]->value; *p; p++)
            h = (h ^ *p) * 1099511628211ULL;
        h = (h ^ ',') * 1099511628211ULL;
    }
    return (h & 0x7fffffff) + 1; /* within what every JSON reader takes as an integer */
}

json_t *dockerjson_node(const Node *n)
{
    const char *state = n->state == NODE_READY ? "ready" : n->state == NODE_DOWN ? "down"
                                                                                 : "unknown";
    json_t *j = json_object();
    int rc = !j;

    rc = rc || dj_set(j, "ID", json_string(n->id)) ||
         dj_set(j, "Version", json_pack("{s:I}", "Index",
                                        (json_int_t)dockerjson_node_version(n))) ||
         dj_set_time(j, "CreatedAt", n->created_ms) ||
         dj_set_time(j, "UpdatedAt", n->last_heartbeat_ms) ||
         dj_set(j, "Spec", json_pack("{s:o, s:s, s:s}", "Labels",
                                     dj_label_map(n->spec_labels, n->n_spec_labels), "Role",
                                     "worker", "Availability",
                                     n->availability == AVAILABILITY_DRAIN ? "drain" : "active")) ||
         dj_set(j, "Description",
                json_pack("{s:s, s:{s:s, s:s}, s:{s:I, s:I}, s:{s:s, s:o}}", "Hostname", n->name,
                          "Platform", "Architecture", "x86_64", "OS", "linux", "Resources",
                          "NanoCPUs", (json_int_t)(n->resources ? n->resources->nano_cpus : 0),
                          "MemoryBytes",
                          (json_int_t)(n->resources ? n->resources->memory_bytes : 0), "Engine",
                          "EngineVersion", n->engine_version, "Labels",
                          dj_label_map(n->labels, n->n_labels))) ||
         dj_set(j, "Status", json_pack("{s:s, s:s}", "State", state, "Addr", n->address));
    if (rc) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static const char *dj_find_label(Label *const *l, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(l[i]->key, key) == 0)
            return l[i]->value;
    return NULL;
}

int dockerjson_node_labels(const json_t *labels, const Node *n, NodeUpdate *up, char *err,
                           size_t errlen)
{
    const char *k, *have;
    json_t *v;

    if (!labels || json_is_null(labels))
        return 0;
    if (!json_is_object(labels)) {
        snprintf(err, errlen, "Spec.Labels: not an object");
        return SKIFF_EINVAL;
    }
    json_object_foreach((json_t *)labels, k, v) {
        Label *l;
        if (!json_is_string(v)) {
            snprintf(err, errlen, "Spec.Labels.%.100s: not a string", k);
            return SKIFF_EINVAL;
        }
        have = dj_find_label(n->spec_labels, n->n_spec_labels, k);
        if (have && strcmp(have, json_string_value(v)) == 0)
            continue;
        if (!(l = PB_NEW(Label)))
            return -ENOMEM;
        if (pb_set_str(&l->key, k) || pb_set_str(&l->value, json_string_value(v)) ||
            pb_push_msg(&up->n_label_add, (void ***)&up->label_add, l)) {
            pb_free(l);
            return -ENOMEM;
        }
    }
    for (size_t i = 0; i < n->n_spec_labels; i++)
        if (!json_object_get(labels, n->spec_labels[i]->key) &&
            pb_push_str(&up->n_label_rm, &up->label_rm, n->spec_labels[i]->key))
            return -ENOMEM;
    return 0;
}

void dockerjson_node_labels_free(NodeUpdate *up)
{
    for (size_t i = 0; i < up->n_label_add; i++)
        pb_free(up->label_add[i]);
    free(up->label_add);
    for (size_t i = 0; i < up->n_label_rm; i++)
        free(up->label_rm[i]);
    free(up->label_rm);
    up->label_add = NULL;
    up->label_rm = NULL;
    up->n_label_add = up->n_label_rm = 0;
}

/* ------------------------------------------------------------ filters */

int dockerjson_filters(const char *s, json_t **out, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *j, *v, *norm;
    const char *k;

    *out = NULL;
    if (!s || !*s)
        return 0;
    if (!(j = json_loads(s, 0, &jerr)) || !json_is_object(j)) {
        json_decref(j);
        snprintf(err, errlen, "filters: not a JSON object");
        return -1;
    }
    if (!(norm = json_object())) {
        json_decref(j);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    json_object_foreach(j, k, v) {
        json_t *vals = json_array(), *x;
        const char *vk;
        size_t i;
        int bad = !vals;
        if (json_is_object(v)) {
            json_object_foreach(v, vk, x)
                bad = bad || (json_is_true(x) && json_array_append_new(vals, json_string(vk)));
        } else if (json_is_array(v)) {
            json_array_foreach(v, i, x)
                bad = bad || !json_is_string(x) || json_array_append(vals, x);
        } else {
            bad = 1;
        }
        if (bad || json_object_set_new(norm, k, vals)) {
            snprintf(err, errlen, bad ? "filters: %.64s: must be an object of values or a list"
                                      : "out of memory%.0s", k); /* before k is freed */
            if (!bad)
                vals = NULL; /* json_object_set_new took it */
            json_decref(vals);
            json_decref(norm);
            json_decref(j);
            return -1;
        }
    }
    json_decref(j);
    *out = norm;
    return 0;
}

int dockerjson_filter_match(const json_t *filters, const char *key, const char *value,
                            int prefix)
{
    json_t *vals = json_object_get(filters, key), *x;
    size_t i;

    if (!vals || json_array_size(vals) == 0)
        return 1;
    json_array_foreach(vals, i, x) {
        const char *v = json_string_value(x);
        if (strcmp(v, value) == 0 || (prefix && strncmp(value, v, strlen(v)) == 0))
            return 1;
    }
    return 0;
}

int dockerjson_filters_allowed(const json_t *filters, const char *const *allowed, char *err,
                               size_t errlen)
{
    const char *k;
    json_t *v;

    json_object_foreach((json_t *)filters, k, v) {
        int ok = 0;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = strcmp(k, allowed[i]) == 0;
        if (!ok) {
            snprintf(err, errlen, "filters: %.64s: not supported by skiff", k);
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------- secrets and configs */

json_t *dockerjson_secret(const Secret *s)
{
    json_t *j = json_object(), *spec = json_object(), *labels = dj_label_map(s->labels,
                                                                              s->n_labels);
    int rc = !j || !spec || !labels;

    if (!rc && *s->stack && !json_object_get(labels, DOCKERJSON_STACK_LABEL))
        rc = dj_set(labels, DOCKERJSON_STACK_LABEL, json_string(s->stack));
    rc = rc || dj_set(spec, "Name", json_string(s->name)) ||
         json_object_set(spec, "Labels", labels);
    if (!rc && s->kind == SECRET_KIND_CONFIG) {
        size_t len = 4 * ((s->data.len + 2) / 3) + 1;
        char *b64 = malloc(len);
        rc = !b64;
        if (b64) {
            EVP_EncodeBlock((unsigned char *)b64, s->data.data, (int)s->data.len);
            rc = dj_set(spec, "Data", json_string(b64));
            free(b64);
        }
    }
    rc = rc || dj_set(j, "ID", json_string(s->id)) ||
         dj_set(j, "Version", json_pack("{s:I}", "Index", (json_int_t)s->version)) ||
         dj_set_time(j, "CreatedAt", s->created_ms) ||
         dj_set_time(j, "UpdatedAt", s->updated_ms) || json_object_set(j, "Spec", spec);
    json_decref(spec);
    json_decref(labels);
    if (rc) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* Base64 as Docker sends []byte, padding and all, into a new buffer. */
static int dj_base64(dj_t *d, const char *path, const char *in, uint8_t **out, size_t *len)
{
    size_t n = strlen(in), pad = 0;
    int got;

    if (n % 4 || n > 4 * ((SPEC_SECRET_MAX_SIZE + 2) / 3) + 4)
        return dj_fail(d, path, "Data: not base64, or more than %d bytes", SPEC_SECRET_MAX_SIZE);
    if (!(*out = malloc(n / 4 * 3 + 1)))
        return dj_nomem(d);
    got = EVP_DecodeBlock(*out, (const unsigned char *)in, (int)n);
    if (got < 0) {
        free(*out);
        *out = NULL;
        return dj_fail(d, path, "Data: not base64");
    }
    pad = n && in[n - 1] == '=' ? 1 + (n > 1 && in[n - 2] == '=') : 0;
    *len = (size_t)got - pad;
    return 0;
}

int dockerjson_secret_from(const json_t *j, Secret *out, char *err, size_t errlen)
{
    static const char *const known[] = { "Name", "Labels", "Data", NULL };
    dj_t d = { err, errlen };
    const char *path = out->kind == SECRET_KIND_CONFIG ? "ConfigSpec" : "SecretSpec";
    json_t *data = json_object_get(j, "Data");

    if (dj_keys(&d, j, path, known) || dj_str(&d, j, "Name", path, &out->name) ||
        dj_labels(&d, j, "Labels", path, &out->n_labels, &out->labels))
        return -1;
    if (data && !json_is_null(data)) {
        if (!json_is_string(data))
            return dj_fail(&d, path, "Data: must be a base64 string");
        if (dj_base64(&d, path, json_string_value(data), &out->data.data, &out->data.len))
            return -1;
    }
    /* `docker stack deploy` names a stack's secrets with this label. */
    for (size_t i = 0; i < out->n_labels; i++)
        if (strcmp(out->labels[i]->key, DOCKERJSON_STACK_LABEL) == 0 &&
            pb_set_str(&out->stack, out->labels[i]->value))
            return dj_nomem(&d);
    return 0;
}
