/* spec: see spec.h. */
#include "spec.h"
#include "errors.h"
#include "pbutil.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const spec_limits_t spec_limits_default = {
    .max_replicas = 100000,
    .max_string = 4096,
    .max_list = 256,
    .max_ports = 64,
    .max_mounts = 32,
    .max_constraints = 32,
};

static void spec_update_defaults(UpdateConfig *u)
{
    u->parallelism = 1;
    u->delay_ms = 0;
    u->failure_action = FAILURE_PAUSE;
    u->monitor_ms = SPEC_DEFAULT_UPDATE_MONITOR_MS;
    u->max_failure_ratio = 0;
    u->order = ORDER_STOP_FIRST;
}

static void spec_health_defaults(HealthCheck *h)
{
    h->interval_ms = SPEC_DEFAULT_HEALTH_INTERVAL_MS;
    h->timeout_ms = SPEC_DEFAULT_HEALTH_TIMEOUT_MS;
    h->retries = SPEC_DEFAULT_HEALTH_RETRIES;
    h->start_period_ms = 0;
}

static void spec_restart_defaults(RestartPolicy *r)
{
    r->condition = RESTART_ANY;
    r->delay_ms = SPEC_DEFAULT_RESTART_DELAY_MS;
    r->max_attempts = 0;
    r->window_ms = 0;
}

int spec_complete(ServiceSpec *s)
{
    if (!s->health) {
        if (!(s->health = PB_NEW(HealthCheck)))
            return -ENOMEM;
        spec_health_defaults(s->health);
    }
    if (!s->restart) {
        if (!(s->restart = PB_NEW(RestartPolicy)))
            return -ENOMEM;
        spec_restart_defaults(s->restart);
    }
    if (!s->update) {
        if (!(s->update = PB_NEW(UpdateConfig)))
            return -ENOMEM;
        spec_update_defaults(s->update);
    }
    if (!s->rollback) {
        if (!(s->rollback = PB_NEW(UpdateConfig)))
            return -ENOMEM;
        spec_update_defaults(s->rollback);
    }
    if (!s->reservations && !(s->reservations = PB_NEW(Resources)))
        return -ENOMEM;
    if (!s->limits && !(s->limits = PB_NEW(Resources)))
        return -ENOMEM;
    for (size_t i = 0; i < s->n_ports; i++) {
        if (s->ports[i] && !*s->ports[i]->protocol &&
            pb_set_str(&s->ports[i]->protocol, "tcp"))
            return -ENOMEM;
    }
    return 0;
}

Autoscale *spec_autoscale_new(void)
{
    Autoscale *a = PB_NEW(Autoscale);

    if (a) {
        a->cooldown_up_ms = SPEC_DEFAULT_COOLDOWN_UP_MS;
        a->cooldown_down_ms = SPEC_DEFAULT_COOLDOWN_DOWN_MS;
    }
    return a;
}

ServiceSpec *spec_new(void)
{
    ServiceSpec *s = PB_NEW(ServiceSpec);

    if (!s)
        return NULL;
    s->replicas = SPEC_DEFAULT_REPLICAS;
    s->stop_grace_period_ms = SPEC_DEFAULT_STOP_GRACE_MS;
    s->drain_delay_ms = SPEC_DEFAULT_DRAIN_DELAY_MS;
    if (spec_complete(s)) {
        pb_free(s);
        return NULL;
    }
    return s;
}

/* ---------------------------------------------------------- validation */

static int spec_fail(char *err, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int spec_fail(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
    /* One line, as spec.h promises, even when it quotes a bad value. */
    for (; len && *err; err++)
        if ((unsigned char)*err < 0x20 || *err == 0x7f)
            *err = '?';
    return SKIFF_EINVAL;
}

int spec_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;

    if (n == 0 || n > 63 || !isalnum((unsigned char)name[0]))
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!isalnum(c) && c != '-' && c != '_')
            return 0;
    }
    return 1;
}

/* 1 when s is valid UTF-8 (no overlong forms, surrogates or code points
 * past U+10FFFF): proto3 strings must be, and the engine's JSON can't carry
 * anything else. */
static int spec_utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p) {
        uint32_t cp;
        int n;

        if (*p < 0x80) {
            p++;
            continue;
        }
        if (*p >= 0xc2 && *p <= 0xdf)
            n = 1, cp = *p & 0x1f;
        else if (*p >= 0xe0 && *p <= 0xef)
            n = 2, cp = *p & 0x0f;
        else if (*p >= 0xf0 && *p <= 0xf4)
            n = 3, cp = *p & 0x07;
        else
            return 0;
        for (int i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        p += n + 1;
    }
    return 1;
}

static int spec_has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 && *s != '\t')
            return 1;
    return 0;
}

/* Strings: not too long, no control characters. */
static int spec_check_str(const char *field, const char *s, const spec_limits_t *lim,
                          char *err, size_t len)
{
    if (strlen(s) > lim->max_string)
        return spec_fail(err, len, "%s: longer than %zu bytes", field, lim->max_string);
    if (spec_has_ctl(s))
        return spec_fail(err, len, "%s: contains control characters", field);
    if (!spec_utf8_valid(s))
        return spec_fail(err, len, "%s: not valid UTF-8", field);
    return 0;
}

static int spec_check_list(const char *field, size_t n, char **v, const spec_limits_t *lim,
                           char *err, size_t len)
{
    char name[64];

    if (n > lim->max_list)
        return spec_fail(err, len, "%s: more than %zu entries", field, lim->max_list);
    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "%s[%zu]", field, i);
        if (spec_check_str(name, v[i], lim, err, len))
            return SKIFF_EINVAL;
    }
    return 0;
}

static int spec_check_update(const char *field, const UpdateConfig *u, int is_rollback,
                             char *err, size_t len)
{
    if (!u)
        return spec_fail(err, len, "%s: missing", field);
    if (u->delay_ms < 0)
        return spec_fail(err, len, "%s.delay: must not be negative", field);
    if (u->monitor_ms < 0)
        return spec_fail(err, len, "%s.monitor: must not be negative", field);
    if (!(u->max_failure_ratio >= 0 && u->max_failure_ratio <= 1))
        return spec_fail(err, len, "%s.max_failure_ratio: must be between 0 and 1", field);
    if (u->failure_action < FAILURE_PAUSE || u->failure_action > FAILURE_ROLLBACK)
        return spec_fail(err, len, "%s.failure_action: must be pause, continue or rollback",
                         field);
    if (is_rollback && u->failure_action == FAILURE_ROLLBACK)
        return spec_fail(err, len, "%s.failure_action: must be pause or continue", field);
    if (u->order != ORDER_STOP_FIRST && u->order != ORDER_START_FIRST)
        return spec_fail(err, len, "%s.order: must be stop-first or start-first", field);
    return 0;
}

static int spec_has_target(const ServiceSpec *s, uint32_t target)
{
    for (size_t i = 0; i < s->n_ports; i++)
        if (s->ports[i]->target == target)
            return 1;
    for (size_t i = 0; i < s->n_expose; i++)
        if (s->expose[i] == target)
            return 1;
    return 0;
}

static int spec_check_ports(const ServiceSpec *s, const spec_limits_t *lim, char *err, size_t len)
{
    if (s->n_ports + s->n_expose > lim->max_ports)
        return spec_fail(err, len, "ports: more than %zu ports", lim->max_ports);
    for (size_t i = 0; i < s->n_ports; i++) {
        const PortConfig *p = s->ports[i];
        if (!p)
            return spec_fail(err, len, "ports[%zu]: missing", i);
        if (p->published < 1 || p->published > 65535)
            return spec_fail(err, len, "ports[%zu]: published port %u is not between 1 and 65535",
                             i, p->published);
        if (p->target < 1 || p->target > 65535)
            return spec_fail(err, len, "ports[%zu]: target port %u is not between 1 and 65535",
                             i, p->target);
        if (*p->protocol && strcmp(p->protocol, "tcp") != 0)
            return spec_fail(err, len, "ports[%zu]: protocol must be tcp", i);
        for (size_t j = 0; j < i; j++)
            if (s->ports[j]->published == p->published)
                return spec_fail(err, len, "ports[%zu]: port %u is published twice", i,
                                 p->published);
    }
    for (size_t i = 0; i < s->n_expose; i++) {
        uint32_t e = s->expose[i];
        if (e < 1 || e > 65535)
            return spec_fail(err, len, "expose[%zu]: port %u is not between 1 and 65535", i, e);
        for (size_t j = 0; j < s->n_ports; j++)
            if (s->ports[j]->published == e)
                return spec_fail(err, len, "expose[%zu]: port %u is also published", i, e);
        for (size_t j = 0; j < i; j++)
            if (s->expose[j] == e)
                return spec_fail(err, len, "expose[%zu]: port %u is exposed twice", i, e);
    }
    return 0;
}

static int spec_check_health(const ServiceSpec *s, const spec_limits_t *lim, char *err,
                             size_t len)
{
    const HealthCheck *h = s->health;

    if (!h)
        return spec_fail(err, len, "health: missing");
    if (h->n_test > 0) {
        const char *kind = h->test[0];
        if (strcmp(kind, "NONE") != 0 && strcmp(kind, "CMD") != 0 &&
            strcmp(kind, "CMD-SHELL") != 0)
            return spec_fail(err, len, "health.test: must start with CMD, CMD-SHELL or NONE");
        if (strcmp(kind, "NONE") != 0 && h->n_test < 2)
            return spec_fail(err, len, "health.test: %s needs a command", kind);
        if (spec_check_list("health.test", h->n_test, h->test, lim, err, len))
            return SKIFF_EINVAL;
    }
    if (*h->http_path) {
        if (h->http_path[0] != '/')
            return spec_fail(err, len, "health.http_path: must start with /");
        if (spec_check_str("health.http_path", h->http_path, lim, err, len))
            return SKIFF_EINVAL;
        for (const char *p = h->http_path; *p; p++)
            if (isspace((unsigned char)*p))
                return spec_fail(err, len, "health.http_path: must not contain spaces");
        if (s->n_ports == 0 && s->n_expose == 0)
            return spec_fail(err, len, "health.http_path: the service has no port to probe");
    }
    if (h->http_port && !spec_has_target(s, h->http_port))
        return spec_fail(err, len, "health.http_port: %u is not a port of the service",
                         h->http_port);
    if (h->interval_ms < 1)
        return spec_fail(err, len, "health.interval: must be at least 1ms");
    if (h->timeout_ms < 1)
        return spec_fail(err, len, "health.timeout: must be at least 1ms");
    if (h->start_period_ms < 0)
        return spec_fail(err, len, "health.start_period: must not be negative");
    if (h->retries < 1 || h->retries > 1000)
        return spec_fail(err, len, "health.retries: must be between 1 and 1000");
    return 0;
}

static int spec_check_resources(const ServiceSpec *s, char *err, size_t len)
{
    const Resources *r = s->reservations, *l = s->limits;

    if (!r)
        return spec_fail(err, len, "reservations: missing");
    if (!l)
        return spec_fail(err, len, "limits: missing");
    if (r->nano_cpus < 0)
        return spec_fail(err, len, "reservations.cpu: must not be negative");
    if (r->memory_bytes < 0)
        return spec_fail(err, len, "reservations.memory: must not be negative");
    if (l->nano_cpus < 0)
        return spec_fail(err, len, "limits.cpu: must not be negative");
    if (l->memory_bytes < 0)
        return spec_fail(err, len, "limits.memory: must not be negative");
    if (l->memory_bytes && l->memory_bytes < SPEC_MIN_MEMORY_LIMIT)
        return spec_fail(err, len, "limits.memory: must be at least 6MiB");
    if (l->nano_cpus && r->nano_cpus > l->nano_cpus)
        return spec_fail(err, len, "reservations.cpu: more than limits.cpu");
    if (l->memory_bytes && r->memory_bytes > l->memory_bytes)
        return spec_fail(err, len, "reservations.memory: more than limits.memory");
    return 0;
}

static int spec_check_mounts(const ServiceSpec *s, const spec_limits_t *lim, char *err,
                             size_t len)
{
    if (s->n_mounts > lim->max_mounts)
        return spec_fail(err, len, "mounts: more than %zu mounts", lim->max_mounts);
    for (size_t i = 0; i < s->n_mounts; i++) {
        const Mount *m = s->mounts[i];
        if (!m)
            return spec_fail(err, len, "mounts[%zu]: missing", i);
        if (m->type != MOUNT_VOLUME && m->type != MOUNT_BIND)
            return spec_fail(err, len, "mounts[%zu].type: must be volume or bind", i);
        if (m->target[0] != '/')
            return spec_fail(err, len, "mounts[%zu].target: must be an absolute path", i);
        if (m->type == MOUNT_BIND && m->source[0] != '/')
            return spec_fail(err, len, "mounts[%zu].source: a bind source must be an absolute path",
                             i);
        if (m->type == MOUNT_VOLUME && *m->source && !spec_name_valid(m->source))
            return spec_fail(err, len, "mounts[%zu].source: %s is not a valid volume name", i,
                             m->source);
        if (spec_check_str("mounts.source", m->source, lim, err, len) ||
            spec_check_str("mounts.target", m->target, lim, err, len))
            return SKIFF_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(s->mounts[j]->target, m->target) == 0)
                return spec_fail(err, len, "mounts[%zu].target: %s is mounted twice", i,
                                 m->target);
    }
    return 0;
}

static int spec_check_env(const ServiceSpec *s, const spec_limits_t *lim, char *err, size_t len)
{
    if (spec_check_list("env", s->n_env, s->env, lim, err, len))
        return SKIFF_EINVAL;
    for (size_t i = 0; i < s->n_env; i++) {
        const char *eq = strchr(s->env[i], '=');
        if (!eq || eq == s->env[i])
            return spec_fail(err, len, "env[%zu]: %s is not KEY=VALUE", i, s->env[i]);
    }
    return 0;
}

static int spec_check_labels(const ServiceSpec *s, const spec_limits_t *lim, char *err,
                             size_t len)
{
    if (s->n_labels > lim->max_list)
        return spec_fail(err, len, "labels: more than %zu entries", lim->max_list);
    for (size_t i = 0; i < s->n_labels; i++) {
        const Label *l = s->labels[i];
        if (!l || !*l->key)
            return spec_fail(err, len, "labels[%zu]: empty key", i);
        if (spec_label_check("labels", l->key, l->value, lim, err, len))
            return SKIFF_EINVAL;
    }
    return 0;
}

int spec_label_check(const char *field, const char *key, const char *value,
                     const spec_limits_t *lim, char *err, size_t len)
{
    if (!lim)
        lim = &spec_limits_default;
    if (!*key)
        return spec_fail(err, len, "%s: empty key", field);
    if (strncmp(key, SPEC_LABEL_PREFIX, strlen(SPEC_LABEL_PREFIX)) == 0)
        return spec_fail(err, len, "%s: %.100s: the skiff. prefix is reserved", field, key);
    if (spec_check_str(field, key, lim, err, len) || spec_check_str(field, value, lim, err, len))
        return SKIFF_EINVAL;
    return 0;
}

int spec_http_path_ok(const char *path)
{
    return path[0] == '/' && !strpbrk(path, " \t\r\n");
}

/* A port of a skiff. label: 1-65535, digits only. */
static int spec_label_port(const char *key, const char *v, uint32_t *out, char *err, size_t len)
{
    unsigned long n = 0;
    size_t i;

    for (i = 0; isdigit((unsigned char)v[i]) && i < 6; i++)
        n = n * 10 + (unsigned long)(v[i] - '0');
    if (i == 0 || v[i] || n < 1 || n > 65535)
        return spec_fail(err, len, "labels: %s: \"%.40s\" is not a port (1-65535)", key, v);
    *out = (uint32_t)n;
    return 0;
}

static int spec_label_expose(ServiceSpec *s, const char *key, const char *v, char *err,
                             size_t len)
{
    size_t max = 1, n = 0;
    uint32_t *ports;
    char one[16];

    for (const char *c = v; *c; c++)
        max += *c == ',';
    if (!(ports = malloc(max * sizeof(*ports))))
        return -ENOMEM;
    while (*v) {
        size_t w = strcspn(v, ",");
        if (w == 0 || w >= sizeof(one))
            break;
        memcpy(one, v, w);
        one[w] = '\0';
        if (spec_label_port(key, one, &ports[n++], err, len)) {
            free(ports);
            return SKIFF_EINVAL;
        }
        v += w;
        if (*v == ',' && !*++v) {
            n = 0; /* a trailing comma */
            break;
        }
    }
    if (n == 0 || *v) {
        free(ports);
        return spec_fail(err, len, "labels: %s: expected PORT[,PORT...]", key);
    }
    free(s->expose);
    s->expose = ports;
    s->n_expose = n;
    return 0;
}

int spec_take_labels(ServiceSpec *s, char *err, size_t len)
{
    int rc = 0;
    size_t kept = 0;

    for (size_t i = 0; i < s->n_labels; i++) {
        Label *l = s->labels[i];
        int taken = 1;

        if (rc || !l || strncmp(l->key, SPEC_LABEL_PREFIX, strlen(SPEC_LABEL_PREFIX)) != 0)
            taken = 0;
        else if (strcmp(l->key, SPEC_LABEL_HEALTH_HTTP) == 0)
            rc = spec_http_path_ok(l->value)
                     ? pb_set_str(&s->health->http_path, l->value)
                     : spec_fail(err, len, "labels: %s: expected a path like /health", l->key);
        else if (strcmp(l->key, SPEC_LABEL_HEALTH_HTTP_PORT) == 0)
            rc = spec_label_port(l->key, l->value, &s->health->http_port, err, len);
        else if (strcmp(l->key, SPEC_LABEL_EXPOSE) == 0)
            rc = spec_label_expose(s, l->key, l->value, err, len);
        else
            rc = spec_fail(err, len, "labels: %s: not a label skiff knows (the skiff. prefix is "
                           "reserved)", l->key);
        if (taken && rc == 0)
            pb_free(l);
        else
            s->labels[kept++] = l;
    }
    s->n_labels = kept; /* those taken before a refusal are freed: the rest stay */
    return rc;
}

static int spec_check_user(const char *user, char *err, size_t len)
{
    if (strlen(user) > 64)
        return spec_fail(err, len, "user: longer than 64 characters");
    for (const char *p = user; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("_.:-", *p))
            return spec_fail(err, len, "user: %s is not a user name or UID[:GID]", user);
    return 0;
}

static int spec_check_autoscale(const ServiceSpec *s, const spec_limits_t *lim, char *err,
                                size_t len);

static int spec_check_secret_refs(const ServiceSpec *s, const spec_limits_t *lim, char *err,
                                  size_t len);

int spec_validate(const ServiceSpec *s, const spec_limits_t *lim, char *err, size_t len)
{
    const RestartPolicy *r = s->restart;
    constraint_t c;

    if (!lim)
        lim = &spec_limits_default;
    if (!*s->name)
        return spec_fail(err, len, "name: required");
    if (!spec_name_valid(s->name))
        return spec_fail(err, len,
                         "name: %.80s: must be 1 to 63 letters, digits, '-' or '_', "
                         "starting with a letter or digit", s->name);
    if (*s->stack) {
        size_t n = strlen(s->stack);
        if (!spec_name_valid(s->stack))
            return spec_fail(err, len, "stack: %.80s is not a valid stack name", s->stack);
        if (strncmp(s->name, s->stack, n) != 0 || s->name[n] != '_' || !s->name[n + 1])
            return spec_fail(err, len, "name: a service of stack %s must be named %s_NAME",
                             s->stack, s->stack);
    }
    if (!*s->image)
        return spec_fail(err, len, "image: required");
    if (strlen(s->image) > 255)
        return spec_fail(err, len, "image: longer than 255 characters");
    for (const char *p = s->image; *p; p++)
        if (isspace((unsigned char)*p) || (unsigned char)*p < 0x20)
            return spec_fail(err, len, "image: %.80s must not contain spaces", s->image);
    if (!spec_utf8_valid(s->image))
        return spec_fail(err, len, "image: not valid UTF-8");
    if (spec_check_list("command", s->n_command, s->command, lim, err, len) ||
        spec_check_list("entrypoint", s->n_entrypoint, s->entrypoint, lim, err, len) ||
        spec_check_env(s, lim, err, len) || spec_check_labels(s, lim, err, len))
        return SKIFF_EINVAL;
    if (s->replicas > lim->max_replicas)
        return spec_fail(err, len, "replicas: %u is more than the limit of %u", s->replicas,
                         lim->max_replicas);
    if (spec_check_ports(s, lim, err, len) || spec_check_health(s, lim, err, len) ||
        spec_check_autoscale(s, lim, err, len))
        return SKIFF_EINVAL;
    if (!r)
        return spec_fail(err, len, "restart: missing");
    if (r->condition < RESTART_ANY || r->condition > RESTART_NONE)
        return spec_fail(err, len, "restart.condition: must be any, on-failure or none");
    if (r->delay_ms < 0)
        return spec_fail(err, len, "restart.delay: must not be negative");
    if (r->window_ms < 0)
        return spec_fail(err, len, "restart.window: must not be negative");
    if (spec_check_update("update", s->update, 0, err, len) ||
        spec_check_update("rollback", s->rollback, 1, err, len) ||
        spec_check_resources(s, err, len) || spec_check_mounts(s, lim, err, len))
        return SKIFF_EINVAL;
    if (s->n_constraints > lim->max_constraints)
        return spec_fail(err, len, "constraints: more than %zu", lim->max_constraints);
    for (size_t i = 0; i < s->n_constraints; i++)
        if (constraint_parse(s->constraints[i], &c) || !spec_utf8_valid(s->constraints[i]))
            return spec_fail(err, len,
                             "constraints[%zu]: %.100s: expected node.name, node.id or "
                             "node.labels.KEY or engine.labels.KEY, then == or !=, then a value", i,
                             s->constraints[i]);
    if (spec_check_user(s->user, err, len) || spec_check_secret_refs(s, lim, err, len))
        return SKIFF_EINVAL;
    if (s->stop_grace_period_ms < 0 || s->stop_grace_period_ms > 3600000)
        return spec_fail(err, len, "stop_grace_period: must be between 0s and 1h");
    if (s->drain_delay_ms < 0 || s->drain_delay_ms > 600000)
        return spec_fail(err, len, "drain_delay: must be between 0s and 10m");
    return 0;
}

int spec_same_but_replicas(const ServiceSpec *a, const ServiceSpec *b)
{
    ServiceSpec ca = *a, cb = *b;

    /* what the controller alone acts on: no container changes for it */
    ca.replicas = cb.replicas = 0;
    ca.autoscale = cb.autoscale = NULL;
    ca.no_rebalance = cb.no_rebalance = 0;
    return pb_equal(&ca, &cb);
}

static int spec_check_autoscale(const ServiceSpec *s, const spec_limits_t *lim, char *err,
                                size_t len)
{
    const Autoscale *a = s->autoscale;

    if (!a)
        return 0;
    if (a->max < 1)
        return spec_fail(err, len, "autoscale.max: must be at least 1");
    if (a->min < 1)
        return spec_fail(err, len, "autoscale.min: must be at least 1");
    if (a->min > a->max)
        return spec_fail(err, len, "autoscale.min: %u is more than autoscale.max (%u)", a->min,
                         a->max);
    if (a->max > lim->max_replicas)
        return spec_fail(err, len, "autoscale.max: %u is more than the limit of %u", a->max,
                         lim->max_replicas);
    if (!(a->target_cpu >= 0 && a->target_cpu <= 100000))
        return spec_fail(err, len, "autoscale.target_cpu: must be a percentage above 0");
    if (!(a->target_rps >= 0 && a->target_rps <= 1e9))
        return spec_fail(err, len, "autoscale.target_rps: must be above 0");
    if (!(a->target_connections >= 0 && a->target_connections <= 1e9))
        return spec_fail(err, len, "autoscale.target_connections: must be above 0");
    if (a->target_cpu == 0 && a->target_rps == 0 && a->target_connections == 0)
        return spec_fail(err, len, "autoscale: needs a target (cpu, rps or connections)");
    if (a->cooldown_up_ms < 0 || a->cooldown_up_ms > 3600000)
        return spec_fail(err, len, "autoscale.cooldown_up: must be between 0s and 1h");
    if (a->cooldown_down_ms < 0 || a->cooldown_down_ms > 3600000)
        return spec_fail(err, len, "autoscale.cooldown_down: must be between 0s and 1h");
    if (s->replicas < a->min || s->replicas > a->max)
        return spec_fail(err, len, "replicas: %u is outside the autoscale range %u-%u",
                         s->replicas, a->min, a->max);
    return 0;
}

/* --------------------------------------------------------- constraints */

static void spec_trim_copy(char *out, size_t outlen, const char *s, size_t n)
{
    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, s, n);
    out[n] = '\0';
}

int constraint_parse(const char *s, constraint_t *out)
{
    const char *op = strstr(s, "=="), *ne = strstr(s, "!=");
    char lhs[160];
    size_t keylen;

    memset(out, 0, sizeof(*out));
    out->equal = 1;
    if (ne && (!op || ne < op)) { /* the first operator, so a key never holds one */
        op = ne;
        out->equal = 0;
    }
    if (!op || strlen(op + 2) >= sizeof(out->value) || (size_t)(op - s) >= sizeof(lhs))
        return SKIFF_EINVAL;
    spec_trim_copy(lhs, sizeof(lhs), s, (size_t)(op - s));
    spec_trim_copy(out->value, sizeof(out->value), op + 2, strlen(op + 2));
    if (!*out->value || strstr(out->value, "==") || strstr(out->value, "!="))
        return SKIFF_EINVAL;
    if (strcmp(lhs, "node.name") == 0 || strcmp(lhs, "node.hostname") == 0) {
        out->kind = CONSTRAINT_NODE_NAME;
    } else if (strcmp(lhs, "node.id") == 0) {
        out->kind = CONSTRAINT_NODE_ID;
    } else if ((strncmp(lhs, "node.labels.", 12) == 0 && lhs[12]) ||
               (strncmp(lhs, "engine.labels.", 14) == 0 && lhs[14])) {
        const char *key = lhs[0] == 'n' ? lhs + 12 : lhs + 14;
        keylen = strlen(key);
        if (keylen >= sizeof(out->key))
            return SKIFF_EINVAL;
        out->kind = lhs[0] == 'n' ? CONSTRAINT_NODE_LABEL : CONSTRAINT_ENGINE_LABEL;
        memcpy(out->key, key, keylen + 1);
    } else {
        return SKIFF_EINVAL;
    }
    return 0;
}

/* --------------------------------------------------------- enum names */

static const char *const restart_names[] = { "any", "on-failure", "none" };
static const char *const action_names[] = { "pause", "continue", "rollback" };
static const char *const order_names[] = { "stop-first", "start-first" };

#define SPEC_NAME(table, v) \
    ((unsigned)(v) < sizeof(table) / sizeof(table[0]) ? table[v] : "unknown")

static int spec_enum_parse(const char *const *table, int n, const char *s, int *out)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(table[i], s) == 0) {
            *out = i;
            return 0;
        }
    }
    return SKIFF_EINVAL;
}

const char *spec_restart_condition_name(RestartCondition c) { return SPEC_NAME(restart_names, c); }
const char *spec_failure_action_name(FailureAction a) { return SPEC_NAME(action_names, a); }
const char *spec_update_order_name(UpdateOrder o) { return SPEC_NAME(order_names, o); }

int spec_restart_condition_parse(const char *s, RestartCondition *out)
{
    int v, rc = spec_enum_parse(restart_names, 3, s, &v);

    if (rc == 0)
        *out = (RestartCondition)v;
    return rc;
}

int spec_failure_action_parse(const char *s, FailureAction *out)
{
    int v, rc = spec_enum_parse(action_names, 3, s, &v);

    if (rc == 0)
        *out = (FailureAction)v;
    return rc;
}

int spec_update_order_parse(const char *s, UpdateOrder *out)
{
    int v, rc = spec_enum_parse(order_names, 2, s, &v);

    if (rc == 0)
        *out = (UpdateOrder)v;
    return rc;
}

/* ------------------------------------------------- secrets and configs */

int spec_secret_name_valid(const char *name)
{
    size_t n = strlen(name);

    if (n < 1 || n > 64 || !isalnum((unsigned char)name[0]) ||
        !isalnum((unsigned char)name[n - 1]))
        return 0;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("-_.", *p))
            return 0;
    return 1;
}

const char *spec_secret_kind_name(SecretKind kind)
{
    return kind == SECRET_KIND_CONFIG ? "config" : "secret";
}

int spec_secret_ref_complete(SecretRef *r, SecretKind kind)
{
    char path[80];

    if (!*r->target) {
        snprintf(path, sizeof path, "%s%s", kind == SECRET_KIND_CONFIG ? "/" : "", r->name);
        if (pb_set_str(&r->target, path))
            return -ENOMEM;
    }
    if (!r->mode)
        r->mode = SPEC_SECRET_MODE_DEFAULT;
    return 0;
}

void spec_secret_ref_path(const SecretRef *r, SecretKind kind, char *out, size_t len)
{
    snprintf(out, len, "%s%s", kind == SECRET_KIND_CONFIG ? "" : "/run/secrets/", r->target);
}

/* A number of a --secret option: decimal, or octal for mode. */
static int spec_ref_number(const char *key, const char *v, int base, uint32_t max,
                           uint32_t *out, char *err, size_t len)
{
    char *end;
    unsigned long n;

    errno = 0;
    n = strtoul(v, &end, base);
    if (!*v || *end || errno || n > max || *v == '-' || *v == '+')
        return spec_fail(err, len, "%s: \"%.40s\" is not %s", key, v,
                         base == 8 ? "an octal mode like 0400" : "a number");
    *out = (uint32_t)n;
    return 0;
}

static int spec_ref_option(SecretRef *r, const char *kind, char *opt, char *err, size_t len)
{
    char *v = strchr(opt, '=');

    if (!v)
        return spec_fail(err, len, "--%s: %.60s: expected KEY=VALUE (source, target, uid, gid, "
                         "mode)", kind, opt);
    *v++ = '\0';
    if (!strcmp(opt, "source") || !strcmp(opt, "src"))
        return pb_set_str(&r->name, v);
    if (!strcmp(opt, "target") || !strcmp(opt, "dst") || !strcmp(opt, "destination"))
        return pb_set_str(&r->target, v);
    if (!strcmp(opt, "uid"))
        return spec_ref_number("uid", v, 10, UINT32_MAX - 1, &r->uid, err, len);
    if (!strcmp(opt, "gid"))
        return spec_ref_number("gid", v, 10, UINT32_MAX - 1, &r->gid, err, len);
    if (!strcmp(opt, "mode"))
        return spec_ref_number("mode", v, 8, 0777, &r->mode, err, len);
    return spec_fail(err, len, "--%s: %.40s: not an option skiff knows (source, target, uid, "
                     "gid, mode)", kind, opt);
}

int spec_secret_ref_parse(const char *text, SecretKind kind, SecretRef **out, char *err,
                          size_t len)
{
    const char *what = spec_secret_kind_name(kind);
    SecretRef *r = PB_NEW(SecretRef);
    char *copy = strdup(text), *save = NULL;
    int rc = 0;

    if (!r || !copy) {
        rc = -ENOMEM;
        goto out;
    }
    if (!strchr(text, '=')) {
        rc = pb_set_str(&r->name, text);
    } else {
        for (char *opt = strtok_r(copy, ",", &save); opt && !rc; opt = strtok_r(NULL, ",", &save))
            rc = spec_ref_option(r, what, opt, err, len);
    }
    if (!rc && !*r->name)
        rc = spec_fail(err, len, "--%s: %.60s: the %s's name (source=) is missing", what, text,
                       what);
    if (!rc && !spec_secret_name_valid(r->name))
        rc = spec_fail(err, len, "--%s: %.70s is not a valid %s name", what, r->name, what);
    if (!rc)
        rc = spec_secret_ref_complete(r, kind);
out:
    free(copy);
    if (rc) {
        pb_free(r);
        r = NULL;
    }
    *out = r;
    return rc;
}

/* A secret's target is a file name under /run/secrets; a config's, an
 * absolute path. Neither has a "." or ".." component. */
static int spec_target_ok(const char *t, SecretKind kind)
{
    size_t n = strlen(t);

    if (n < 1 || n > 255 || !spec_utf8_valid(t))
        return 0;
    if (kind == SECRET_KIND_SECRET ? strchr(t, '/') != NULL : (t[0] != '/' || n < 2))
        return 0;
    for (const char *p = t; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == ':' || *p == ',')
            return 0;
    for (const char *c = t; c; c = strchr(c + 1, '/')) {
        const char *part = *c == '/' ? c + 1 : c;
        size_t m = strcspn(part, "/");
        if ((m == 1 && part[0] == '.') || (m == 2 && part[0] == '.' && part[1] == '.') ||
            (m == 0 && kind == SECRET_KIND_CONFIG))
            return 0;
    }
    return 1;
}

static int spec_check_refs(const char *field, SecretRef *const *refs, size_t n,
                           SecretKind kind, const spec_limits_t *lim, char *err, size_t len)
{
    if (n > lim->max_list)
        return spec_fail(err, len, "%s: more than %zu entries", field, lim->max_list);
    for (size_t i = 0; i < n; i++) {
        const SecretRef *r = refs[i];
        if (!r)
            return spec_fail(err, len, "%s[%zu]: missing", field, i);
        if (!spec_secret_name_valid(r->name))
            return spec_fail(err, len, "%s[%zu]: %.70s is not a valid %s name", field, i,
                             r->name, spec_secret_kind_name(kind));
        if (!spec_target_ok(r->target, kind))
            return spec_fail(err, len, "%s[%zu].target: %.80s must be %s", field, i, r->target,
                             kind == SECRET_KIND_SECRET
                                 ? "a file name (it is put in /run/secrets)"
                                 : "an absolute path without . or .. in it");
        if (r->mode > 0777)
            return spec_fail(err, len, "%s[%zu].mode: %o is more than 0777", field, i, r->mode);
        for (size_t j = 0; j < i; j++)
            if (strcmp(refs[j]->target, r->target) == 0)
                return spec_fail(err, len, "%s: target %s is used twice (%s and %s)", field,
                                 r->target, refs[j]->name, r->name);
    }
    return 0;
}

static int spec_check_secret_refs(const ServiceSpec *s, const spec_limits_t *lim, char *err,
                                  size_t len)
{
    char path[300];

    if (spec_check_refs("secrets", s->secrets, s->n_secrets, SECRET_KIND_SECRET, lim, err,
                        len) ||
        spec_check_refs("configs", s->configs, s->n_configs, SECRET_KIND_CONFIG, lim, err, len))
        return SKIFF_EINVAL;
    for (size_t i = 0; i < s->n_secrets; i++) {
        spec_secret_ref_path(s->secrets[i], SECRET_KIND_SECRET, path, sizeof path);
        for (size_t j = 0; j < s->n_configs; j++)
            if (strcmp(s->configs[j]->target, path) == 0)
                return spec_fail(err, len, "configs: target %s is secret %s's", path,
                                 s->secrets[i]->name);
        for (size_t j = 0; j < s->n_mounts; j++)
            if (s->mounts[j] && strcmp(s->mounts[j]->target, path) == 0)
                return spec_fail(err, len, "secrets: target %s is a mount's", path);
    }
    return 0;
}
