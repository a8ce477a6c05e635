/* engine_json: see engine_json.h. */
#include "engine_json.h"
#include "errors.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *engine_state_name(engine_state_t s)
{
    switch (s) {
    case ENGINE_STATE_CREATED: return "created";
    case ENGINE_STATE_RUNNING: return "running";
    case ENGINE_STATE_PAUSED: return "paused";
    case ENGINE_STATE_RESTARTING: return "restarting";
    case ENGINE_STATE_REMOVING: return "removing";
    case ENGINE_STATE_EXITED: return "exited";
    case ENGINE_STATE_DEAD: return "dead";
    default: return "unknown";
    }
}

static engine_state_t engine_state_parse(const char *s)
{
    static const struct { const char *name; engine_state_t state; } states[] = {
        { "created", ENGINE_STATE_CREATED },       { "running", ENGINE_STATE_RUNNING },
        { "paused", ENGINE_STATE_PAUSED },         { "restarting", ENGINE_STATE_RESTARTING },
        { "removing", ENGINE_STATE_REMOVING },     { "exited", ENGINE_STATE_EXITED },
        { "dead", ENGINE_STATE_DEAD },
    };

    for (size_t i = 0; s && i < sizeof(states) / sizeof(states[0]); i++)
        if (strcmp(s, states[i].name) == 0)
            return states[i].state;
    return ENGINE_STATE_UNKNOWN;
}

static engine_health_t engine_health_parse(const char *s)
{
    if (!s)
        return ENGINE_HEALTH_NONE;
    if (strcmp(s, "starting") == 0)
        return ENGINE_HEALTH_STARTING;
    if (strcmp(s, "healthy") == 0)
        return ENGINE_HEALTH_HEALTHY;
    if (strcmp(s, "unhealthy") == 0)
        return ENGINE_HEALTH_UNHEALTHY;
    return ENGINE_HEALTH_NONE;
}

/* Copies s into out, cut to fit, on one line. */
static void engine_copy_line(char *out, size_t len, const char *s, size_t slen)
{
    size_t n = 0;

    if (len == 0)
        return;
    for (size_t i = 0; i < slen && n + 1 < len; i++) {
        char c = s[i];
        if (c == '\0')
            break;
        out[n++] = (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

/* Copies s into out when it fits. Returns 0, or -1 when it does not. */
static int engine_copy(char *out, size_t len, const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n >= len)
        return -1;
    memcpy(out, s ? s : "", n);
    out[n] = '\0';
    return 0;
}

static const char *json_str(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);

    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int engine_u32(const char *s, uint32_t *out)
{
    char *end;
    unsigned long long v;

    if (!s || !isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int engine_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (!s || !isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

/* Reads the skiff labels out of an object of strings (Labels, or an
 * event's Actor.Attributes). */
static void engine_labels_parse(const json_t *obj, engine_labels_t *l)
{
    int ok = 1;

    memset(l, 0, sizeof(*l));
    if (!json_is_object(obj))
        return;
    ok &= engine_copy(l->cluster, sizeof(l->cluster), json_str(obj, ENGINE_LABEL_CLUSTER)) == 0;
    ok &= engine_copy(l->node, sizeof(l->node), json_str(obj, ENGINE_LABEL_NODE)) == 0;
    ok &= engine_copy(l->task, sizeof(l->task), json_str(obj, ENGINE_LABEL_TASK)) == 0;
    if (engine_copy(l->service, sizeof(l->service), json_str(obj, ENGINE_LABEL_SERVICE)))
        l->service[0] = '\0';
    if (engine_u32(json_str(obj, ENGINE_LABEL_SLOT), &l->slot))
        l->slot = 0;
    if (engine_u64(json_str(obj, ENGINE_LABEL_VERSION), &l->version))
        l->version = 0;
    l->ok = ok && l->cluster[0] && l->node[0] && l->task[0];
}

/* "8080/tcp" to 8080; 0 for anything else (udp, sctp, junk). */
static uint32_t engine_port_key(const char *key)
{
    uint32_t port;
    char num[8];
    const char *slash = strchr(key, '/');
    size_t n = slash ? (size_t)(slash - key) : strlen(key);

    if (n == 0 || n >= sizeof(num) || (slash && strcmp(slash, "/tcp") != 0))
        return 0;
    memcpy(num, key, n);
    num[n] = '\0';
    if (engine_u32(num, &port) || port == 0 || port > 65535)
        return 0;
    return port;
}

int64_t engine_time_ms(const char *s)
{
    struct tm tm;
    int y, mo, d, h, mi, sec, n = 0;
    int64_t ms = 0, scale = 100;
    time_t t;

    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6)
        return 0;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return 0;
    s += n;
    if (*s == '.') {
        for (s++; isdigit((unsigned char)*s); s++) {
            ms += (*s - '0') * scale;
            scale /= 10;
        }
    }
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    t = timegm(&tm);
    if (t == (time_t)-1)
        return 0;
    return (int64_t)t * 1000 + ms;
}

/* ------------------------------------------------------------ requests */

static int engine_name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-';
}

int engine_container_name(const Assignment *a, char *out, size_t len)
{
    int n = snprintf(out, len, "%s.%u.%s", a->service_name, a->slot, a->task_id);

    if (n < 0 || (size_t)n >= len || !isalnum((unsigned char)out[0]))
        return SKIFF_EINVAL;
    for (const char *p = out; *p; p++)
        if (!engine_name_char(*p))
            return SKIFF_EINVAL;
    return 0;
}

/* Adds key: value to obj, taking value; records failure in *ok. */
static void jset(json_t *obj, const char *key, json_t *value, int *ok)
{
    if (!value || json_object_set_new(obj, key, value) != 0)
        *ok = 0;
}

static void jpush(json_t *arr, json_t *value, int *ok)
{
    if (!value || json_array_append_new(arr, value) != 0)
        *ok = 0;
}

static json_t *jstrings(char *const *v, size_t n, int *ok)
{
    json_t *arr = json_array();

    if (!arr) {
        *ok = 0;
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        jpush(arr, json_string(v[i]), ok);
    return arr;
}

static json_t *engine_labels_json(const engine_create_t *req, int *ok)
{
    const Assignment *a = req->assignment;
    const ServiceSpec *s = a->spec;
    json_t *labels = json_object();
    char num[32];

    if (!labels) {
        *ok = 0;
        return NULL;
    }
    for (size_t i = 0; i < s->n_labels; i++) {
        const Label *l = s->labels[i];
        if (!l || strncmp(l->key, "skiff.", 6) == 0)
            continue;
        jset(labels, l->key, json_string(l->value), ok);
    }
    jset(labels, ENGINE_LABEL_CLUSTER, json_string(req->cluster), ok);
    jset(labels, ENGINE_LABEL_NODE, json_string(req->node), ok);
    jset(labels, ENGINE_LABEL_SERVICE, json_string(a->service_name), ok);
    jset(labels, ENGINE_LABEL_TASK, json_string(a->task_id), ok);
    snprintf(num, sizeof(num), "%u", a->slot);
    jset(labels, ENGINE_LABEL_SLOT, json_string(num), ok);
    snprintf(num, sizeof(num), "%" PRIu64, a->spec_version);
    jset(labels, ENGINE_LABEL_VERSION, json_string(num), ok);
    return labels;
}

/* Every target port of the spec, published on the advertise address with
 * a host port the engine picks. */
static void engine_ports_json(const engine_create_t *req, json_t *exposed, json_t *bindings,
                              int *ok)
{
    const ServiceSpec *s = req->assignment->spec;
    size_t n = s->n_ports + s->n_expose;

    for (size_t i = 0; i < n; i++) {
        uint32_t target = i < s->n_ports ? s->ports[i]->target : s->expose[i - s->n_ports];
        char key[16];
        json_t *list, *binding;

        if (target == 0 || target > 65535)
            continue;
        snprintf(key, sizeof(key), "%u/tcp", target);
        if (json_object_get(exposed, key))
            continue;
        jset(exposed, key, json_object(), ok);
        binding = json_pack("{s:s, s:s}", "HostIp", req->advertise ? req->advertise : "",
                            "HostPort", "");
        list = json_array();
        if (list)
            jpush(list, binding, ok);
        else
            json_decref(binding);
        jset(bindings, key, list, ok);
    }
}

static json_t *engine_health_json(const HealthCheck *h, int *ok)
{
    json_t *hc;

    if (!h || h->n_test == 0)
        return NULL;
    hc = json_object();
    if (!hc) {
        *ok = 0;
        return NULL;
    }
    jset(hc, "Test", jstrings(h->test, h->n_test, ok), ok);
    if (strcmp(h->test[0], "NONE") == 0)
        return hc;
    /* The engine counts in nanoseconds; 0 would mean "the image's". */
    if (h->interval_ms > 0)
        jset(hc, "Interval", json_integer(h->interval_ms * 1000000), ok);
    if (h->timeout_ms > 0)
        jset(hc, "Timeout", json_integer(h->timeout_ms * 1000000), ok);
    if (h->start_period_ms > 0)
        jset(hc, "StartPeriod", json_integer(h->start_period_ms * 1000000), ok);
    if (h->retries > 0)
        jset(hc, "Retries", json_integer(h->retries), ok);
    return hc;
}

static json_t *engine_mounts_json(const engine_create_t *req, int *ok)
{
    const ServiceSpec *s = req->assignment->spec;
    json_t *mounts = json_array();

    if (!mounts) {
        *ok = 0;
        return NULL;
    }
    for (size_t i = 0; i < s->n_mounts; i++) {
        const Mount *m = s->mounts[i];
        json_t *o;

        if (!m)
            continue;
        o = json_pack("{s:s, s:s, s:b}", "Type", m->type == MOUNT_BIND ? "bind" : "volume",
                      "Target", m->target, "ReadOnly", m->readonly ? 1 : 0);
        if (o && *m->source)
            jset(o, "Source", json_string(m->source), ok);
        jpush(mounts, o, ok);
    }
    /* Secrets and configs: their files on the agent's tmpfs, read-only. */
    for (size_t i = 0; i < req->n_files; i++)
        jpush(mounts,
              json_pack("{s:s, s:s, s:s, s:b}", "Type", "bind", "Source", req->files[i].source,
                        "Target", req->files[i].target, "ReadOnly", 1),
              ok);
    return mounts;
}

char *engine_json_create_body(const engine_create_t *req)
{
    const Assignment *a = req->assignment;
    const ServiceSpec *s = a->spec;
    json_t *body = json_object(), *host = json_object();
    json_t *exposed = json_object(), *bindings = json_object(), *hc;
    char *out = NULL;
    int ok = body && host && exposed && bindings;

    if (!ok) {
        json_decref(body);
        json_decref(host);
        json_decref(exposed);
        json_decref(bindings);
        return NULL;
    }
    jset(body, "Image", json_string(s->image), &ok);
    if (s->n_command)
        jset(body, "Cmd", jstrings(s->command, s->n_command, &ok), &ok);
    if (s->n_entrypoint)
        jset(body, "Entrypoint", jstrings(s->entrypoint, s->n_entrypoint, &ok), &ok);
    jset(body, "Env", jstrings(s->env, s->n_env, &ok), &ok);
    if (*s->user)
        jset(body, "User", json_string(s->user), &ok);
    jset(body, "Labels", engine_labels_json(req, &ok), &ok);
    jset(body, "Tty", json_false(), &ok);
    jset(body, "OpenStdin", json_false(), &ok);
    if (s->stop_grace_period_ms > 0)
        jset(body, "StopTimeout", json_integer((s->stop_grace_period_ms + 999) / 1000), &ok);
    engine_ports_json(req, exposed, bindings, &ok);
    jset(body, "ExposedPorts", exposed, &ok);
    hc = engine_health_json(s->health, &ok);
    if (hc)
        jset(body, "Healthcheck", hc, &ok);

    jset(host, "PortBindings", bindings, &ok);
    jset(host, "Mounts", engine_mounts_json(req, &ok), &ok);
    if (s->limits && s->limits->memory_bytes > 0)
        jset(host, "Memory", json_integer(s->limits->memory_bytes), &ok);
    if (s->limits && s->limits->nano_cpus > 0)
        jset(host, "NanoCpus", json_integer(s->limits->nano_cpus), &ok);
    if (s->reservations && s->reservations->memory_bytes > 0 &&
        (!s->limits || !s->limits->memory_bytes ||
         s->reservations->memory_bytes <= s->limits->memory_bytes))
        jset(host, "MemoryReservation", json_integer(s->reservations->memory_bytes), &ok);
    if (req->gateway && *req->gateway && a->n_hosts) {
        json_t *hosts = json_array();
        if (!hosts)
            ok = 0;
        for (size_t i = 0; hosts && i < a->n_hosts; i++) {
            char entry[512];
            int n = snprintf(entry, sizeof(entry), "%s:%s", a->hosts[i], req->gateway);
            if (n > 0 && (size_t)n < sizeof(entry))
                jpush(hosts, json_string(entry), &ok);
        }
        jset(host, "ExtraHosts", hosts, &ok);
    }
    /* The agent restarts containers itself; the engine must not. */
    jset(host, "RestartPolicy", json_pack("{s:s}", "Name", "no"), &ok);
    jset(host, "Privileged", json_false(), &ok);
    jset(host, "NetworkMode", json_string("bridge"), &ok);
    jset(host, "PidMode", json_string(""), &ok);
    jset(host, "IpcMode", json_string("private"), &ok);
    jset(body, "HostConfig", host, &ok);
    if (ok)
        out = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    return out;
}

char *engine_json_filters(const char *const *labels, size_t n_labels,
                          const char *const *events, size_t n_events)
{
    json_t *f = json_object(), *l = json_array();
    char *out = NULL;
    int ok = f && l;

    for (size_t i = 0; l && i < n_labels; i++)
        jpush(l, json_string(labels[i]), &ok);
    if (f)
        jset(f, "label", l, &ok);
    else
        json_decref(l);
    if (f && events) {
        json_t *e = json_array(), *t = json_array();
        for (size_t i = 0; e && i < n_events; i++)
            jpush(e, json_string(events[i]), &ok);
        if (t)
            jpush(t, json_string("container"), &ok);
        jset(f, "event", e, &ok);
        jset(f, "type", t, &ok);
    }
    if (ok)
        out = json_dumps(f, JSON_COMPACT);
    json_decref(f);
    return out;
}

/* ------------------------------------------------------------ answers */

static json_t *engine_load(const char *json, size_t len)
{
    return json_loadb(json, len, 0, NULL);
}

static void engine_ports_inspect(const json_t *ports, engine_container_t *c)
{
    const char *key;
    json_t *bindings;

    if (!json_is_object(ports))
        return;
    json_object_foreach((json_t *)ports, key, bindings) {
        uint32_t target = engine_port_key(key), host = 0;
        size_t i;
        json_t *b;

        if (!target || c->n_ports >= ENGINE_MAX_PORTS)
            continue;
        if (json_is_array(bindings)) {
            json_array_foreach(bindings, i, b) {
                if (engine_u32(json_str(b, "HostPort"), &host) == 0 && host > 0 && host <= 65535)
                    break;
                host = 0;
            }
        }
        c->ports[c->n_ports].target = target;
        c->ports[c->n_ports].host_port = host;
        c->n_ports++;
    }
}

static void engine_name_set(engine_container_t *c, const char *name)
{
    if (!name)
        return;
    if (*name == '/')
        name++;
    engine_copy_line(c->name, sizeof(c->name), name, strlen(name));
}

int engine_json_parse_inspect(const char *json, size_t len, engine_container_t *out)
{
    json_t *root = engine_load(json, len), *state, *config, *health, *net;
    const char *id;
    int rc = SKIFF_EINVAL;

    memset(out, 0, sizeof(*out));
    if (!json_is_object(root))
        goto out_free;
    id = json_str(root, "Id");
    state = json_object_get(root, "State");
    if (!id || engine_copy(out->id, sizeof(out->id), id) || !*id || !json_is_object(state))
        goto out_free;
    engine_name_set(out, json_str(root, "Name"));
    config = json_object_get(root, "Config");
    if (json_is_object(config))
        engine_labels_parse(json_object_get(config, "Labels"), &out->labels);
    out->state = engine_state_parse(json_str(state, "Status"));
    if (json_is_integer(json_object_get(state, "ExitCode")))
        out->exit_code = (int)json_integer_value(json_object_get(state, "ExitCode"));
    out->oom_killed = json_is_true(json_object_get(state, "OOMKilled"));
    out->started_ms = engine_time_ms(json_str(state, "StartedAt"));
    out->finished_ms = engine_time_ms(json_str(state, "FinishedAt"));
    if (json_str(state, "Error"))
        engine_copy_line(out->error, sizeof(out->error), json_str(state, "Error"),
                         strlen(json_str(state, "Error")));
    health = json_object_get(state, "Health");
    if (json_is_object(health))
        out->health = engine_health_parse(json_str(health, "Status"));
    net = json_object_get(root, "NetworkSettings");
    if (json_is_object(net))
        engine_ports_inspect(json_object_get(net, "Ports"), out);
    rc = 0;
out_free:
    json_decref(root);
    return rc;
}

static void engine_ports_list(const json_t *ports, engine_container_t *c)
{
    size_t i;
    json_t *p;

    if (!json_is_array(ports))
        return;
    json_array_foreach(ports, i, p) {
        json_int_t priv = json_integer_value(json_object_get(p, "PrivatePort"));
        json_int_t pub = json_integer_value(json_object_get(p, "PublicPort"));
        const char *type = json_str(p, "Type");
        size_t j;

        if (priv <= 0 || priv > 65535 || (type && strcmp(type, "tcp") != 0))
            continue;
        for (j = 0; j < c->n_ports; j++)
            if (c->ports[j].target == (uint32_t)priv)
                break;
        if (j == c->n_ports) {
            if (c->n_ports >= ENGINE_MAX_PORTS)
                continue;
            c->ports[c->n_ports].target = (uint32_t)priv;
            c->ports[c->n_ports].host_port = 0;
            c->n_ports++;
        }
        if (!c->ports[j].host_port && pub > 0 && pub <= 65535)
            c->ports[j].host_port = (uint32_t)pub;
    }
}

int engine_json_parse_list(const char *json, size_t len, engine_container_t **out, size_t *n)
{
    json_t *root = engine_load(json, len), *item;
    engine_container_t *v = NULL;
    size_t i, count = 0;
    int rc = SKIFF_EINVAL;

    *out = NULL;
    *n = 0;
    if (!json_is_array(root))
        goto out_free;
    if (json_array_size(root) > 0) {
        v = calloc(json_array_size(root), sizeof(*v));
        if (!v) {
            rc = -ENOMEM;
            goto out_free;
        }
    }
    json_array_foreach(root, i, item) {
        engine_container_t *c = &v[count];
        const char *id = json_str(item, "Id");
        json_t *names = json_object_get(item, "Names");

        if (!json_is_object(item) || !id || !*id || engine_copy(c->id, sizeof(c->id), id))
            continue; /* not a container we could act on */
        if (json_is_array(names) && json_array_size(names) > 0)
            engine_name_set(c, json_string_value(json_array_get(names, 0)));
        engine_labels_parse(json_object_get(item, "Labels"), &c->labels);
        c->state = engine_state_parse(json_str(item, "State"));
        engine_ports_list(json_object_get(item, "Ports"), c);
        count++;
    }
    *out = count ? v : NULL;
    if (!count)
        free(v);
    *n = count;
    rc = 0;
out_free:
    json_decref(root);
    return rc;
}

int engine_json_parse_event(const char *json, size_t len, engine_event_t *out)
{
    json_t *root = engine_load(json, len), *actor, *attrs;
    const char *type, *action, *id, *code;
    int rc = SKIFF_EINVAL;

    memset(out, 0, sizeof(*out));
    if (!json_is_object(root))
        goto out_free;
    type = json_str(root, "Type");
    action = json_str(root, "Action");
    if (!action)
        action = json_str(root, "status");
    actor = json_object_get(root, "Actor");
    attrs = json_is_object(actor) ? json_object_get(actor, "Attributes") : NULL;
    id = json_is_object(actor) ? json_str(actor, "ID") : NULL;
    if (!id)
        id = json_str(root, "id");
    if (!action || !id || engine_copy(out->id, sizeof(out->id), id))
        goto out_free;
    if (type && strcmp(type, "container") != 0)
        out->kind = ENGINE_EVENT_OTHER;
    else if (strcmp(action, "start") == 0)
        out->kind = ENGINE_EVENT_START;
    else if (strcmp(action, "die") == 0)
        out->kind = ENGINE_EVENT_DIE;
    else if (strcmp(action, "oom") == 0)
        out->kind = ENGINE_EVENT_OOM;
    else if (strcmp(action, "destroy") == 0)
        out->kind = ENGINE_EVENT_DESTROY;
    else if (strncmp(action, "health_status", 13) == 0) {
        const char *st = action + 13;
        out->kind = ENGINE_EVENT_HEALTH;
        while (*st == ':' || *st == ' ')
            st++;
        out->health = engine_health_parse(st);
    } else
        out->kind = ENGINE_EVENT_OTHER;
    engine_labels_parse(attrs, &out->labels);
    code = attrs ? json_str(attrs, "exitCode") : NULL;
    if (code) {
        uint32_t c;
        out->exit_code = engine_u32(code, &c) == 0 && c <= 255 ? (int)c : -1;
    }
    if (json_is_integer(json_object_get(root, "timeNano")))
        out->time_ns = (int64_t)json_integer_value(json_object_get(root, "timeNano"));
    rc = 0;
out_free:
    json_decref(root);
    return rc;
}

int engine_json_parse_created(const char *json, size_t len, char *id, size_t idlen)
{
    json_t *root = engine_load(json, len);
    const char *s = json_is_object(root) ? json_str(root, "Id") : NULL;
    int rc = SKIFF_EINVAL;

    if (s && *s && engine_copy(id, idlen, s) == 0)
        rc = 0;
    json_decref(root);
    return rc;
}

int engine_json_parse_info(const char *json, size_t len, engine_info_t *out)
{
    json_t *root = engine_load(json, len);
    int rc = SKIFF_EINVAL;
    const char *s;

    memset(out, 0, sizeof(*out));
    if (!json_is_object(root))
        goto out_free;
    if (!json_is_integer(json_object_get(root, "NCPU")) ||
        !json_is_integer(json_object_get(root, "MemTotal")))
        goto out_free;
    out->ncpu = json_integer_value(json_object_get(root, "NCPU"));
    out->mem_total = json_integer_value(json_object_get(root, "MemTotal"));
    if (out->ncpu < 0 || out->mem_total < 0)
        goto out_free;
    if ((s = json_str(root, "ServerVersion")))
        engine_copy_line(out->server_version, sizeof(out->server_version), s, strlen(s));
    if ((s = json_str(root, "OperatingSystem")))
        engine_copy_line(out->os, sizeof(out->os), s, strlen(s));
    rc = 0;
out_free:
    json_decref(root);
    return rc;
}

int engine_json_parse_network(const char *json, size_t len, char *gw, size_t gwlen,
                              char *bridge_if, size_t iflen, char *subnet, size_t subnetlen)
{
    json_t *root = engine_load(json, len), *ipam, *config, *opts, *c;
    int rc = SKIFF_EINVAL;
    size_t i;

    gw[0] = bridge_if[0] = subnet[0] = '\0';
    if (!json_is_object(root))
        goto out_free;
    ipam = json_object_get(root, "IPAM");
    config = json_is_object(ipam) ? json_object_get(ipam, "Config") : NULL;
    if (json_is_array(config)) {
        json_array_foreach(config, i, c) {
            const char *g = json_str(c, "Gateway"), *s = json_str(c, "Subnet");
            if (s && !subnet[0] && !strchr(s, ':'))
                engine_copy(subnet, subnetlen, s);
            if (g && *g && !strchr(g, ':') && engine_copy(gw, gwlen, g) == 0)
                break;
        }
    }
    opts = json_object_get(root, "Options");
    if (json_is_object(opts) && json_str(opts, "com.docker.network.bridge.name"))
        engine_copy(bridge_if, iflen, json_str(opts, "com.docker.network.bridge.name"));
    rc = 0;
out_free:
    json_decref(root);
    return rc;
}

void engine_json_error_message(const char *body, size_t len, int http_status, char *msg,
                               size_t msglen)
{
    json_t *root = len ? engine_load(body, len) : NULL;
    const char *m = json_is_object(root) ? json_str(root, "message") : NULL;

    if (m && *m) {
        engine_copy_line(msg, msglen, m, strlen(m));
    } else if (len) {
        const char *nl = memchr(body, '\n', len);
        engine_copy_line(msg, msglen, body, nl ? (size_t)(nl - body) : len);
    } else {
        msg[0] = '\0';
    }
    if (!msg[0])
        snprintf(msg, msglen, "HTTP %d", http_status);
    json_decref(root);
}

int engine_json_progress_error(const char *json, size_t len, char *err, size_t errlen)
{
    json_t *root = engine_load(json, len), *detail;
    const char *m = NULL;
    int rc = 0;

    if (!json_is_object(root)) {
        rc = SKIFF_EINVAL;
        goto out_free;
    }
    detail = json_object_get(root, "errorDetail");
    if (json_is_object(detail))
        m = json_str(detail, "message");
    if (!m || !*m)
        m = json_str(root, "error");
    if (m && *m) {
        engine_copy_line(err, errlen, m, strlen(m));
        rc = 1;
    } else if (json_object_get(root, "errorDetail") || json_object_get(root, "error")) {
        snprintf(err, errlen, "the engine reported an error while pulling");
        rc = 1;
    }
out_free:
    json_decref(root);
    return rc;
}

int engine_image_ref_split(const char *ref, char *name, size_t namelen, char *tag,
                           size_t taglen)
{
    const char *at = strchr(ref, '@'), *slash = strrchr(ref, '/'), *colon, *split;
    const char *t = "latest";
    size_t n;

    for (const char *p = ref; *p; p++)
        if (isspace((unsigned char)*p) || (unsigned char)*p < 0x20)
            return SKIFF_EINVAL;
    if (at) {
        split = at;
        t = at + 1;
    } else {
        colon = strrchr(ref, ':');
        split = colon && (!slash || colon > slash) ? colon : NULL;
        if (split)
            t = split + 1;
    }
    n = split ? (size_t)(split - ref) : strlen(ref);
    if (n == 0 || n >= namelen || !*t || strlen(t) >= taglen)
        return SKIFF_EINVAL;
    memcpy(name, ref, n);
    name[n] = '\0';
    strcpy(tag, t);
    return 0;
}

/* ------------------------------------------------------------ streams */

void engine_lines_init(engine_lines_t *l, size_t max)
{
    memset(l, 0, sizeof(*l));
    l->max = max;
}

void engine_lines_free(engine_lines_t *l)
{
    buf_free(&l->buf);
}

static void engine_line_emit(const char *p, size_t n, engine_line_cb on_line, void *arg)
{
    if (n > 0 && p[n - 1] == '\r')
        n--;
    on_line(arg, p, n);
}

int engine_lines_feed(engine_lines_t *l, const char *data, size_t len, engine_line_cb on_line,
                      void *arg)
{
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t chunk = nl ? (size_t)(nl - data) : len;

        if (l->skipping) {
            if (!nl)
                return 0;
            l->skipping = 0;
        } else if (buf_len(&l->buf) + chunk > l->max) {
            l->dropped++;
            buf_consume(&l->buf, buf_len(&l->buf));
            if (!nl) {
                l->skipping = 1;
                return 0;
            }
        } else if (nl && buf_len(&l->buf) == 0) {
            engine_line_emit(data, chunk, on_line, arg);
        } else {
            int rc = buf_append(&l->buf, data, chunk, l->max);
            if (rc)
                return rc;
            if (nl) {
                engine_line_emit(l->buf.pos, buf_len(&l->buf), on_line, arg);
                buf_consume(&l->buf, buf_len(&l->buf));
            }
        }
        if (!nl)
            return 0;
        len -= chunk + 1;
        data += chunk + 1;
    }
    return 0;
}

void engine_demux_init(engine_demux_t *d)
{
    memset(d, 0, sizeof(*d));
}

int engine_demux_feed(engine_demux_t *d, const char *data, size_t len, engine_demux_cb on_data,
                      void *arg)
{
    while (len > 0) {
        if (d->left == 0) {
            size_t take = sizeof(d->header) - d->have;
            if (take > len)
                take = len;
            memcpy(d->header + d->have, data, take);
            d->have += take;
            data += take;
            len -= take;
            if (d->have < sizeof(d->header))
                return 0;
            d->have = 0;
            if (d->header[0] > 2 || d->header[1] || d->header[2] || d->header[3])
                return SKIFF_EINVAL;
            d->stream = d->header[0];
            d->left = (uint32_t)d->header[4] << 24 | (uint32_t)d->header[5] << 16 |
                      (uint32_t)d->header[6] << 8 | (uint32_t)d->header[7];
            continue;
        }
        {
            size_t take = d->left < len ? d->left : len;
            on_data(arg, d->stream == 2, data, take);
            d->left -= (uint32_t)take;
            data += take;
            len -= take;
        }
    }
    return 0;
}

/* ---- stats */

/* A non-negative integer at obj.key (a path of object keys), else 0. */
static uint64_t json_u64_at(const json_t *obj, const char *const *path, size_t n)
{
    const json_t *v = obj;

    for (size_t i = 0; i < n && v; i++)
        v = json_is_object(v) ? json_object_get(v, path[i]) : NULL;
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

#define U64_AT(obj, ...) \
    json_u64_at((obj), (const char *const[]){ __VA_ARGS__ }, \
                sizeof((const char *const[]){ __VA_ARGS__ }) / sizeof(const char *))

int engine_json_parse_stats(const char *json, size_t len, engine_stats_t *out)
{
    json_t *root = engine_load(json, len), *nets;
    uint64_t cpu, precpu, sys, presys, cache;
    uint32_t cpus;
    int rc = SKIFF_EINVAL;

    memset(out, 0, sizeof(*out));
    if (!json_is_object(root) || !json_is_object(json_object_get(root, "cpu_stats")))
        goto out_free;
    cpu = U64_AT(root, "cpu_stats", "cpu_usage", "total_usage");
    precpu = U64_AT(root, "precpu_stats", "cpu_usage", "total_usage");
    sys = U64_AT(root, "cpu_stats", "system_cpu_usage");
    presys = U64_AT(root, "precpu_stats", "system_cpu_usage");
    cpus = (uint32_t)U64_AT(root, "cpu_stats", "online_cpus");
    if (!cpus) {
        json_t *per = json_object_get(json_object_get(json_object_get(root, "cpu_stats"),
                                                      "cpu_usage"), "percpu_usage");
        cpus = json_is_array(per) ? (uint32_t)json_array_size(per) : 1;
    }
    out->cpu_total_ns = cpu;
    /* as the docker CLI computes it: the container's share of the host's
     * CPU time between the two samples, times the CPUs */
    if (presys && sys > presys && cpu >= precpu)
        out->cpu_percent = (double)(cpu - precpu) / (double)(sys - presys) * cpus * 100.0;
    /* memory as `docker stats` shows it: without the inactive page cache
     * (cgroup v2: inactive_file; v1: total_inactive_file) */
    out->memory_usage = U64_AT(root, "memory_stats", "usage");
    cache = U64_AT(root, "memory_stats", "stats", "inactive_file");
    if (!cache)
        cache = U64_AT(root, "memory_stats", "stats", "total_inactive_file");
    if (cache < out->memory_usage)
        out->memory_usage -= cache;
    out->memory_limit = U64_AT(root, "memory_stats", "limit");
    nets = json_object_get(root, "networks");
    if (json_is_object(nets)) {
        const char *key;
        json_t *iface;
        json_object_foreach(nets, key, iface) {
            out->net_rx += U64_AT(iface, "rx_bytes");
            out->net_tx += U64_AT(iface, "tx_bytes");
        }
    }
    rc = presys ? 0 : 1;

out_free:
    json_decref(root);
    return rc;
}
