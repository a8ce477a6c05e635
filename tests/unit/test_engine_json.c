/* Unit tests of agent/engine_json: the container create body built from an
 * Assignment (labels, ports, limits, health, mounts, extra hosts, never
 * privileged), and the parsing of answers recorded from the real engine
 * (Docker 20.10, API 1.41) in data/engine/: inspect, list, events, info,
 * networks, errors, pull progress and the multiplexed log stream; then
 * garbage, which must give errors and never crash.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "engine_json.h"
#include "errors.h"
#include "pbutil.h"
#include "spec.h"

/* ------------------------------------------------------------ helpers */

static char *slurp(const char *name, size_t *len)
{
    char path[512];
    FILE *f;
    char *data;
    long n;

    snprintf(path, sizeof(path), "data/engine/%s", name);
    f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s (run from tests/unit)", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    data = malloc((size_t)n + 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
    data[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return data;
}

static Assignment *web_assignment(void)
{
    Assignment *a = PB_NEW(Assignment);
    ServiceSpec *s;
    PortConfig *p;
    Label *l;
    Mount *m;

    assert_non_null(a);
    assert_int_equal(pb_set_str(&a->task_id, "k3j2h1"), 0);
    assert_int_equal(pb_set_str(&a->service_id, "svc1"), 0);
    assert_int_equal(pb_set_str(&a->service_name, "shop_api"), 0);
    a->slot = 2;
    a->spec_version = 7;
    a->spec = s = spec_new();
    assert_non_null(s);
    pb_set_str(&s->name, "shop_api");
    pb_set_str(&s->stack, "shop");
    pb_set_str(&s->image, "skiff-test/web:v1");
    pb_push_str(&s->n_command, &s->command, "/web.sh");
    pb_push_str(&s->n_command, &s->command, "--fast");
    pb_push_str(&s->n_entrypoint, &s->entrypoint, "/bin/sh");
    pb_push_str(&s->n_env, &s->env, "PORT=8080");
    pb_push_str(&s->n_env, &s->env, "MODE=prod");
    l = PB_NEW(Label);
    pb_set_str(&l->key, "team");
    pb_set_str(&l->value, "payments");
    pb_push_msg(&s->n_labels, (void ***)&s->labels, l);
    l = PB_NEW(Label); /* never on a container: the prefix is skiff's */
    pb_set_str(&l->key, "skiff.task");
    pb_set_str(&l->value, "forged");
    pb_push_msg(&s->n_labels, (void ***)&s->labels, l);
    p = PB_NEW(PortConfig);
    p->published = 80;
    p->target = 8080;
    pb_set_str(&p->protocol, "tcp");
    pb_push_msg(&s->n_ports, (void ***)&s->ports, p);
    s->expose = malloc(2 * sizeof(*s->expose));
    s->expose[0] = 9090;
    s->expose[1] = 8080; /* the same target twice is bound once */
    s->n_expose = 2;
    s->limits->memory_bytes = 64 << 20;
    s->limits->nano_cpus = 500000000;
    s->reservations->memory_bytes = 32 << 20;
    pb_push_str(&s->health->n_test, &s->health->test, "CMD-SHELL");
    pb_push_str(&s->health->n_test, &s->health->test, "wget -q -O /dev/null http://127.0.0.1:8080/health");
    s->health->interval_ms = 500;
    s->health->timeout_ms = 2000;
    s->health->retries = 4;
    s->health->start_period_ms = 1500;
    m = PB_NEW(Mount);
    m->type = MOUNT_VOLUME;
    pb_set_str(&m->source, "shopdata");
    pb_set_str(&m->target, "/data");
    m->readonly = 1;
    pb_push_msg(&s->n_mounts, (void ***)&s->mounts, m);
    m = PB_NEW(Mount);
    m->type = MOUNT_BIND;
    pb_set_str(&m->source, "/srv/conf");
    pb_set_str(&m->target, "/conf");
    pb_push_msg(&s->n_mounts, (void ***)&s->mounts, m);
    pb_set_str(&s->user, "nobody");
    s->stop_grace_period_ms = 2500;
    pb_push_str(&a->n_hosts, &a->hosts, "db");
    pb_push_str(&a->n_hosts, &a->hosts, "shop_db");
    return a;
}

static json_t *create_body(const Assignment *a, const char *gateway)
{
    engine_create_t req = {
        .assignment = a, .name = "shop_api.2.k3j2h1", .cluster = "c0ffee", .node = "n1",
        .advertise = "127.0.0.2", .gateway = gateway,
    };
    char *body = engine_json_create_body(&req);
    json_t *j;

    assert_non_null(body);
    j = json_loads(body, 0, NULL);
    assert_non_null(j);
    free(body);
    return j;
}

static const char *jstr(json_t *o, const char *path)
{
    /* "A.B.C" */
    char buf[256], *save, *tok;
    json_t *cur = o;

    snprintf(buf, sizeof(buf), "%s", path);
    for (tok = strtok_r(buf, ".", &save); tok && cur; tok = strtok_r(NULL, ".", &save))
        cur = json_object_get(cur, tok);
    return json_is_string(cur) ? json_string_value(cur) : NULL;
}

/* ------------------------------------------------------------ requests */

/* Secrets and configs come as read-only bind mounts of their files, after
 * the spec's own mounts; their values are not in the request at all. */
static void test_create_body_secret_files(void **state)
{
    Assignment *a = web_assignment();
    engine_file_t files[2] = {
        { "/var/lib/skiff/secrets/k3j2h1/secret-0", "/run/secrets/db_password" },
        { "/var/lib/skiff/secrets/k3j2h1/config-0", "/etc/nginx/nginx.conf" },
    };
    engine_create_t req = {
        .assignment = a, .name = "shop_api.2.k3j2h1", .cluster = "c0ffee", .node = "n1",
        .advertise = "127.0.0.2", .gateway = "", .files = files, .n_files = 2,
    };
    SecretRef *ref = PB_NEW(SecretRef);
    char *body;
    json_t *j, *mounts, *m;

    pb_set_str(&ref->name, "db_password");
    pb_set_str(&ref->id, "s1");
    pb_push_msg(&a->spec->n_secrets, (void ***)&a->spec->secrets, ref);
    body = engine_json_create_body(&req);
    assert_non_null(body);
    j = json_loads(body, 0, NULL);
    assert_non_null(j);
    mounts = json_object_get(json_object_get(j, "HostConfig"), "Mounts");
    assert_int_equal(json_array_size(mounts), 4);
    m = json_array_get(mounts, 2);
    assert_string_equal(jstr(m, "Type"), "bind");
    assert_string_equal(jstr(m, "Source"), "/var/lib/skiff/secrets/k3j2h1/secret-0");
    assert_string_equal(jstr(m, "Target"), "/run/secrets/db_password");
    assert_true(json_is_true(json_object_get(m, "ReadOnly")));
    m = json_array_get(mounts, 3);
    assert_string_equal(jstr(m, "Source"), "/var/lib/skiff/secrets/k3j2h1/config-0");
    assert_string_equal(jstr(m, "Target"), "/etc/nginx/nginx.conf");
    assert_true(json_is_true(json_object_get(m, "ReadOnly")));
    /* The env is the spec's own: nothing of the secret in it. */
    assert_int_equal(json_array_size(json_object_get(j, "Env")), 2);
    json_decref(j);
    free(body);
    pb_free(a);
}

static void test_create_body_labels(void **state)
{
    Assignment *a = web_assignment();
    json_t *j = create_body(a, "172.17.0.1"), *labels = json_object_get(j, "Labels");

    assert_string_equal(jstr(labels, "team"), "payments");
    assert_string_equal(json_string_value(json_object_get(labels, "skiff.cluster")), "c0ffee");
    assert_string_equal(json_string_value(json_object_get(labels, "skiff.node")), "n1");
    assert_string_equal(json_string_value(json_object_get(labels, "skiff.service")), "shop_api");
    assert_string_equal(json_string_value(json_object_get(labels, "skiff.task")), "k3j2h1");
    assert_string_equal(json_string_value(json_object_get(labels, "skiff.slot")), "2");
    assert_string_equal(json_string_value(json_object_get(labels, "skiff.version")), "7");
    assert_int_equal(json_object_size(labels), 7);
    assert_string_equal(jstr(j, "Image"), "skiff-test/web:v1");
    assert_string_equal(jstr(j, "User"), "nobody");
    assert_int_equal(json_array_size(json_object_get(j, "Cmd")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "Cmd"), 1)), "--fast");
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "Entrypoint"), 0)),
                        "/bin/sh");
    assert_int_equal(json_array_size(json_object_get(j, "Env")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "StopTimeout")), 3);
    json_decref(j);
    pb_free(a);
}

static void test_create_body_ports(void **state)
{
    Assignment *a = web_assignment();
    json_t *j = create_body(a, "172.17.0.1");
    json_t *exposed = json_object_get(j, "ExposedPorts");
    json_t *bindings = json_object_get(json_object_get(j, "HostConfig"), "PortBindings");
    json_t *b;

    assert_int_equal(json_object_size(exposed), 2);
    assert_non_null(json_object_get(exposed, "8080/tcp"));
    assert_non_null(json_object_get(exposed, "9090/tcp"));
    assert_int_equal(json_object_size(bindings), 2);
    b = json_array_get(json_object_get(bindings, "8080/tcp"), 0);
    assert_string_equal(jstr(b, "HostIp"), "127.0.0.2");
    assert_string_equal(jstr(b, "HostPort"), ""); /* the engine picks */
    assert_int_equal(json_array_size(json_object_get(bindings, "8080/tcp")), 1);
    b = json_array_get(json_object_get(bindings, "9090/tcp"), 0);
    assert_string_equal(jstr(b, "HostIp"), "127.0.0.2");
    json_decref(j);
    pb_free(a);
}

static void test_create_body_limits_health_mounts_hosts(void **state)
{
    Assignment *a = web_assignment();
    json_t *j = create_body(a, "172.17.0.1");
    json_t *host = json_object_get(j, "HostConfig"), *hc = json_object_get(j, "Healthcheck");
    json_t *mounts = json_object_get(host, "Mounts"), *hosts = json_object_get(host, "ExtraHosts");
    json_t *m;

    assert_int_equal(json_integer_value(json_object_get(host, "Memory")), 64 << 20);
    assert_int_equal(json_integer_value(json_object_get(host, "NanoCpus")), 500000000);
    assert_int_equal(json_integer_value(json_object_get(host, "MemoryReservation")), 32 << 20);
    assert_string_equal(jstr(host, "RestartPolicy.Name"), "no");

    assert_string_equal(json_string_value(json_array_get(json_object_get(hc, "Test"), 0)),
                        "CMD-SHELL");
    assert_int_equal(json_array_size(json_object_get(hc, "Test")), 2);
    assert_int_equal(json_integer_value(json_object_get(hc, "Interval")), 500000000LL);
    assert_int_equal(json_integer_value(json_object_get(hc, "Timeout")), 2000000000LL);
    assert_int_equal(json_integer_value(json_object_get(hc, "StartPeriod")), 1500000000LL);
    assert_int_equal(json_integer_value(json_object_get(hc, "Retries")), 4);

    assert_int_equal(json_array_size(mounts), 2);
    m = json_array_get(mounts, 0);
    assert_string_equal(jstr(m, "Type"), "volume");
    assert_string_equal(jstr(m, "Source"), "shopdata");
    assert_string_equal(jstr(m, "Target"), "/data");
    assert_true(json_is_true(json_object_get(m, "ReadOnly")));
    m = json_array_get(mounts, 1);
    assert_string_equal(jstr(m, "Type"), "bind");
    assert_string_equal(jstr(m, "Source"), "/srv/conf");
    assert_true(json_is_false(json_object_get(m, "ReadOnly")));

    assert_int_equal(json_array_size(hosts), 2);
    assert_string_equal(json_string_value(json_array_get(hosts, 0)), "db:172.17.0.1");
    assert_string_equal(json_string_value(json_array_get(hosts, 1)), "shop_db:172.17.0.1");
    json_decref(j);
    pb_free(a);
}

static void test_create_body_never_privileged(void **state)
{
    Assignment *a = web_assignment();
    json_t *j = create_body(a, "172.17.0.1"), *host = json_object_get(j, "HostConfig");

    assert_true(json_is_false(json_object_get(host, "Privileged")));
    assert_string_equal(jstr(host, "NetworkMode"), "bridge");
    assert_string_equal(jstr(host, "PidMode"), "");
    assert_null(json_object_get(host, "CapAdd"));
    assert_null(json_object_get(host, "Devices"));
    assert_null(json_object_get(host, "Binds"));
    json_decref(j);
    pb_free(a);
}

static void test_create_body_minimal(void **state)
{
    Assignment *a = web_assignment();
    ServiceSpec *s = a->spec;
    json_t *j, *host;

    /* No check, no limits, no hosts without a gateway, no command. */
    for (size_t i = 0; i < s->health->n_test; i++)
        free(s->health->test[i]);
    s->health->n_test = 0;
    for (size_t i = 0; i < s->n_command; i++)
        free(s->command[i]);
    s->n_command = 0;
    s->limits->memory_bytes = 0;
    s->limits->nano_cpus = 0;
    j = create_body(a, "");
    host = json_object_get(j, "HostConfig");
    assert_null(json_object_get(j, "Healthcheck"));
    assert_null(json_object_get(j, "Cmd"));
    assert_null(json_object_get(host, "Memory"));
    assert_null(json_object_get(host, "NanoCpus"));
    assert_null(json_object_get(host, "ExtraHosts"));
    json_decref(j);

    /* NONE turns the image's check off and carries nothing else. */
    pb_push_str(&s->health->n_test, &s->health->test, "NONE");
    j = create_body(a, "");
    assert_int_equal(json_object_size(json_object_get(j, "Healthcheck")), 1);
    json_decref(j);
    pb_free(a);
}

static void test_container_name(void **state)
{
    Assignment *a = web_assignment();
    char name[64];

    assert_int_equal(engine_container_name(a, name, sizeof(name)), 0);
    assert_string_equal(name, "shop_api.2.k3j2h1");
    assert_int_equal(engine_container_name(a, name, 8), SKIFF_EINVAL);
    pb_set_str(&a->task_id, "a/b");
    assert_int_equal(engine_container_name(a, name, sizeof(name)), SKIFF_EINVAL);
    pb_set_str(&a->task_id, "x");
    pb_set_str(&a->service_name, "");
    assert_int_equal(engine_container_name(a, name, sizeof(name)), SKIFF_EINVAL);
    pb_free(a);
}

static void test_filters(void **state)
{
    const char *labels[] = { "skiff.cluster=c1", "skiff.node=n1" };
    const char *events[] = { "die", "health_status" };
    char *f = engine_json_filters(labels, 2, NULL, 0);
    json_t *j = json_loads(f, 0, NULL);

    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "label")), 2);
    assert_null(json_object_get(j, "event"));
    json_decref(j);
    free(f);
    f = engine_json_filters(labels, 2, events, 2);
    j = json_loads(f, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(j, "event")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "type"), 0)),
                        "container");
    json_decref(j);
    free(f);
}

/* ------------------------------------------------------------ answers */

static void inspect_file(const char *name, engine_container_t *c)
{
    size_t len;
    char *data = slurp(name, &len);

    assert_int_equal(engine_json_parse_inspect(data, len, c), 0);
    free(data);
}

static void test_inspect_running(void **state)
{
    engine_container_t c;

    inspect_file("inspect_starting.json", &c);
    assert_int_equal(strlen(c.id), 64);
    assert_string_equal(c.name, "web.1.t1");
    assert_int_equal(c.state, ENGINE_STATE_RUNNING);
    assert_int_equal(c.health, ENGINE_HEALTH_STARTING);
    assert_true(c.labels.ok);
    assert_string_equal(c.labels.cluster, "rec");
    assert_string_equal(c.labels.node, "n1");
    assert_string_equal(c.labels.service, "web");
    assert_string_equal(c.labels.task, "t1");
    assert_int_equal(c.labels.slot, 1);
    assert_int_equal(c.labels.version, 1);
    assert_int_equal(c.n_ports, 1);
    assert_int_equal(c.ports[0].target, 8080);
    assert_true(c.ports[0].host_port > 1024);
    assert_true(c.started_ms > 1700000000000LL);
    assert_int_equal(c.finished_ms, 0);

    inspect_file("inspect_healthy.json", &c);
    assert_int_equal(c.health, ENGINE_HEALTH_HEALTHY);
    inspect_file("inspect_unhealthy.json", &c);
    assert_int_equal(c.state, ENGINE_STATE_RUNNING);
    assert_int_equal(c.health, ENGINE_HEALTH_UNHEALTHY);
}

static void test_inspect_exited(void **state)
{
    engine_container_t c;

    inspect_file("inspect_killed.json", &c);
    assert_int_equal(c.state, ENGINE_STATE_EXITED);
    assert_int_equal(c.exit_code, 137);
    assert_false(c.oom_killed);
    assert_int_equal(c.n_ports, 0); /* nothing is published while stopped */
    assert_true(c.finished_ms >= c.started_ms);

    inspect_file("inspect_exited_1.json", &c);
    assert_int_equal(c.state, ENGINE_STATE_EXITED);
    assert_int_equal(c.exit_code, 1);
    assert_int_equal(c.health, ENGINE_HEALTH_NONE);
    assert_string_equal(c.labels.task, "t2");

    inspect_file("inspect_oom.json", &c);
    assert_int_equal(c.exit_code, 137);
    assert_true(c.oom_killed);
}

static void test_list(void **state)
{
    size_t len, n;
    char *data = slurp("list.json", &len);
    engine_container_t *c;

    assert_int_equal(engine_json_parse_list(data, len, &c, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(c[0].name, "web.1.t1");
    assert_int_equal(c[0].state, ENGINE_STATE_RUNNING);
    assert_true(c[0].labels.ok);
    assert_string_equal(c[0].labels.task, "t1");
    assert_int_equal(c[0].n_ports, 1);
    assert_int_equal(c[0].ports[0].target, 8080);
    assert_true(c[0].ports[0].host_port > 0);
    free(c);
    free(data);

    assert_int_equal(engine_json_parse_list("[]", 2, &c, &n), 0);
    assert_int_equal(n, 0);
    assert_null(c);
    /* Entries that are not containers are skipped, labels too long make a
     * container foreign. */
    {
        char big[400];
        char json[1024];
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        snprintf(json, sizeof(json),
                 "[1, {\"Names\":[]}, {\"Id\":\"abc\",\"State\":\"exited\",\"Labels\":"
                 "{\"skiff.cluster\":\"%s\",\"skiff.node\":\"n\",\"skiff.task\":\"t\"}}]", big);
        assert_int_equal(engine_json_parse_list(json, strlen(json), &c, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(c[0].id, "abc");
        assert_int_equal(c[0].state, ENGINE_STATE_EXITED);
        assert_false(c[0].labels.ok);
        free(c);
    }
}

struct events_seen {
    engine_event_t ev[32];
    int n;
};

static void on_event_line(void *arg, const char *line, size_t len)
{
    struct events_seen *s = arg;

    assert_true(s->n < 32);
    assert_int_equal(engine_json_parse_event(line, len, &s->ev[s->n]), 0);
    s->n++;
}

static void test_events(void **state)
{
    size_t len;
    char *data = slurp("events.jsonl", &len);
    struct events_seen seen = { .n = 0 };
    engine_lines_t lines;

    /* Fed a few bytes at a time, as a stream arrives. */
    engine_lines_init(&lines, 1 << 20);
    for (size_t i = 0; i < len; i += 7)
        assert_int_equal(engine_lines_feed(&lines, data + i, len - i < 7 ? len - i : 7,
                                           on_event_line, &seen), 0);
    engine_lines_free(&lines);
    assert_int_equal(seen.n, 12);
    assert_int_equal(seen.ev[0].kind, ENGINE_EVENT_START);
    assert_string_equal(seen.ev[0].labels.task, "t1");
    assert_true(seen.ev[0].labels.ok);
    assert_int_equal(strlen(seen.ev[0].id), 64);
    assert_true(seen.ev[0].time_ns > 0);
    assert_int_equal(seen.ev[1].kind, ENGINE_EVENT_HEALTH);
    assert_int_equal(seen.ev[1].health, ENGINE_HEALTH_HEALTHY);
    assert_int_equal(seen.ev[2].kind, ENGINE_EVENT_HEALTH);
    assert_int_equal(seen.ev[2].health, ENGINE_HEALTH_UNHEALTHY);
    assert_int_equal(seen.ev[3].kind, ENGINE_EVENT_DIE);
    assert_int_equal(seen.ev[3].exit_code, 137);
    assert_int_equal(seen.ev[4].kind, ENGINE_EVENT_DESTROY);
    assert_int_equal(seen.ev[6].kind, ENGINE_EVENT_DIE);
    assert_int_equal(seen.ev[6].exit_code, 1);
    assert_string_equal(seen.ev[6].labels.task, "t2");
    assert_int_equal(seen.ev[9].kind, ENGINE_EVENT_OOM);
    assert_string_equal(seen.ev[9].labels.task, "t3");
    assert_int_equal(seen.ev[10].kind, ENGINE_EVENT_DIE);
    free(data);
}

static void test_info_and_network(void **state)
{
    size_t len;
    char *data = slurp("info.json", &len);
    engine_info_t info;
    char gw[64], bridge[64], subnet[64];

    assert_int_equal(engine_json_parse_info(data, len, &info), 0);
    assert_true(info.ncpu >= 1);
    assert_true(info.mem_total > (64 << 20));
    assert_string_equal(info.server_version, "20.10.24+dfsg1");
    free(data);

    data = slurp("network_bridge.json", &len);
    assert_int_equal(engine_json_parse_network(data, len, gw, sizeof(gw), bridge, sizeof(bridge),
                                               subnet, sizeof(subnet)), 0);
    /* This engine leaves the gateway out: the caller falls back on the
     * bridge's interface. */
    assert_string_equal(gw, "");
    assert_string_equal(bridge, "docker0");
    assert_string_equal(subnet, "172.17.0.0/16");
    free(data);

    {
        const char *j = "{\"IPAM\":{\"Config\":[{\"Subnet\":\"fd00::/64\",\"Gateway\":\"fd00::1\"},"
                        "{\"Subnet\":\"10.9.0.0/16\",\"Gateway\":\"10.9.0.1\"}]}}";
        assert_int_equal(engine_json_parse_network(j, strlen(j), gw, sizeof(gw), bridge,
                                                   sizeof(bridge), subnet, sizeof(subnet)), 0);
        assert_string_equal(gw, "10.9.0.1");
    }
}

static void test_created(void **state)
{
    size_t len;
    char *data = slurp("create_answer.json", &len);
    char id[ENGINE_ID_MAX];

    assert_int_equal(engine_json_parse_created(data, len, id, sizeof(id)), 0);
    assert_int_equal(strlen(id), 64);
    free(data);
    assert_int_equal(engine_json_parse_created("{}", 2, id, sizeof(id)), SKIFF_EINVAL);
    assert_int_equal(engine_json_parse_created("{\"Id\":7}", 8, id, sizeof(id)), SKIFF_EINVAL);
}

static void test_error_messages(void **state)
{
    static const struct { const char *file; int status; const char *want; } cases[] = {
        { "error_404_container.json", 404, "No such container: nosuch" },
        { "error_404_image.json", 404,
          "no such image: skiff-test/nope:v1: No such image: skiff-test/nope:v1" },
        { "error_400_memory.json", 400, "Minimum memory limit allowed is 6MB" },
        { "error_404_pull.json", 404,
          "manifest for 127.0.0.1:5999/nope:v1 not found: manifest unknown: manifest unknown" },
    };
    char msg[512];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len;
        char *data = slurp(cases[i].file, &len);
        engine_json_error_message(data, len, cases[i].status, msg, sizeof(msg));
        assert_string_equal(msg, cases[i].want);
        free(data);
    }
    {
        size_t len;
        char *data = slurp("error_409_name.json", &len);
        engine_json_error_message(data, len, 409, msg, sizeof(msg));
        assert_non_null(strstr(msg, "is already in use"));
        free(data);
    }
    engine_json_error_message("", 0, 502, msg, sizeof(msg));
    assert_string_equal(msg, "HTTP 502");
    engine_json_error_message("plain\ntext", 10, 500, msg, sizeof(msg));
    assert_string_equal(msg, "plain");
    engine_json_error_message("{\"message\":\"two\\nlines\"}", 24, 500, msg, sizeof(msg));
    assert_string_equal(msg, "two lines");
    engine_json_error_message("{\"message\":\"long message\"}", 26, 500, msg, 5);
    assert_string_equal(msg, "long");
}

static int progress_errors(const char *file, char *err, size_t errlen)
{
    size_t len;
    char *data = slurp(file, &len), *line, *save;
    int found = 0;

    for (line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int rc = engine_json_progress_error(line, strlen(line), err, errlen);
        assert_true(rc == 0 || rc == 1);
        found += rc;
    }
    free(data);
    return found;
}

static void test_pull_progress(void **state)
{
    char err[512];

    assert_int_equal(progress_errors("pull_ok.jsonl", err, sizeof(err)), 0);
    assert_int_equal(progress_errors("pull_error.jsonl", err, sizeof(err)), 1);
    assert_non_null(strstr(err, "filesystem layer verification failed"));
    assert_int_equal(engine_json_progress_error("nope", 4, err, sizeof(err)), SKIFF_EINVAL);
    assert_int_equal(engine_json_progress_error("{\"error\":\"x\"}", 13, err, sizeof(err)), 1);
    assert_string_equal(err, "x");
}

static void test_image_ref(void **state)
{
    static const struct { const char *ref, *name, *tag; } ok[] = {
        { "busybox", "busybox", "latest" },
        { "skiff-test/web:v1", "skiff-test/web", "v1" },
        { "127.0.0.1:5000/web", "127.0.0.1:5000/web", "latest" },
        { "127.0.0.1:5000/web:v2", "127.0.0.1:5000/web", "v2" },
        { "web@sha256:abcd", "web", "sha256:abcd" },
    };
    char name[128], tag[128];

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(engine_image_ref_split(ok[i].ref, name, sizeof(name), tag, sizeof(tag)), 0);
        assert_string_equal(name, ok[i].name);
        assert_string_equal(tag, ok[i].tag);
    }
    assert_int_equal(engine_image_ref_split("", name, sizeof(name), tag, sizeof(tag)), SKIFF_EINVAL);
    assert_int_equal(engine_image_ref_split("web:", name, sizeof(name), tag, sizeof(tag)),
                     SKIFF_EINVAL);
    assert_int_equal(engine_image_ref_split("a b", name, sizeof(name), tag, sizeof(tag)),
                     SKIFF_EINVAL);
    assert_int_equal(engine_image_ref_split("web:v1", name, 3, tag, sizeof(tag)), SKIFF_EINVAL);
}

static void test_time(void **state)
{
    assert_int_equal(engine_time_ms("1970-01-01T00:00:01.5Z"), 1500);
    assert_int_equal(engine_time_ms("2026-11-27T22:08:06.15289277Z"), 1795817286152LL);
    assert_int_equal(engine_time_ms("0001-01-01T00:00:00Z"), 0);
    assert_int_equal(engine_time_ms("garbage"), 0);
    assert_int_equal(engine_time_ms(NULL), 0);
}

/* ------------------------------------------------------------ streams */

struct demuxed {
    char out[2][256];
    size_t n[2];
};

static void on_demux(void *arg, int is_stderr, const char *data, size_t len)
{
    struct demuxed *d = arg;

    assert_true(d->n[is_stderr] + len < sizeof(d->out[0]));
    memcpy(d->out[is_stderr] + d->n[is_stderr], data, len);
    d->n[is_stderr] += len;
}

static void test_demux(void **state)
{
    size_t len;
    char *data = slurp("logs_web.bin", &len);

    for (size_t step = 1; step <= len; step++) {
        struct demuxed d = { .n = { 0, 0 } };
        engine_demux_t dm;
        engine_demux_init(&dm);
        for (size_t i = 0; i < len; i += step)
            assert_int_equal(engine_demux_feed(&dm, data + i, len - i < step ? len - i : step,
                                               on_demux, &d), 0);
        assert_int_equal(d.n[1], 0);
        d.out[0][d.n[0]] = '\0';
        assert_non_null(strstr(d.out[0], "web v1 listening on :8080"));
        assert_int_equal(d.out[0][d.n[0] - 1], '\n');
    }
    free(data);
    {
        const char frames[] = "\x02\0\0\0\0\0\0\x04oops\x01\0\0\0\0\0\0\x02ok";
        struct demuxed d = { .n = { 0, 0 } };
        engine_demux_t dm;
        engine_demux_init(&dm);
        assert_int_equal(engine_demux_feed(&dm, frames, sizeof(frames) - 1, on_demux, &d), 0);
        assert_int_equal(d.n[1], 4);
        assert_memory_equal(d.out[1], "oops", 4);
        assert_int_equal(d.n[0], 2);
        engine_demux_init(&dm);
        assert_int_equal(engine_demux_feed(&dm, "plain text here", 15, on_demux, &d),
                         SKIFF_EINVAL);
    }
}

struct lines_seen {
    char lines[8][64];
    int n;
};

static void on_line(void *arg, const char *line, size_t len)
{
    struct lines_seen *s = arg;

    assert_true(s->n < 8 && len < 64);
    memcpy(s->lines[s->n], line, len);
    s->lines[s->n][len] = '\0';
    s->n++;
}

static void test_lines_bounded(void **state)
{
    struct lines_seen s = { .n = 0 };
    engine_lines_t l;
    const char *in = "short\r\n0123456789abcdef0123456789\nafter\npart";

    engine_lines_init(&l, 16);
    assert_int_equal(engine_lines_feed(&l, in, 20, on_line, &s), 0);
    assert_int_equal(engine_lines_feed(&l, in + 20, strlen(in) - 20, on_line, &s), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.lines[0], "short");
    assert_string_equal(s.lines[1], "after");
    assert_int_equal(l.dropped, 1);
    assert_int_equal(engine_lines_feed(&l, "ial\n", 4, on_line, &s), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.lines[2], "partial");
    /* A long line split across feeds is dropped whole. */
    assert_int_equal(engine_lines_feed(&l, "0123456789abcdef01", 18, on_line, &s), 0);
    assert_int_equal(engine_lines_feed(&l, "23456789\nok\n", 12, on_line, &s), 0);
    assert_int_equal(s.n, 4);
    assert_string_equal(s.lines[3], "ok");
    assert_int_equal(l.dropped, 2);
    engine_lines_free(&l);
}

/* ------------------------------------------------------------ garbage */

static void test_garbage(void **state)
{
    static const char *inputs[] = {
        "", "{", "null", "[]", "{}", "\"x\"", "{\"Id\":5}", "{\"Id\":\"\",\"State\":{}}",
        "{\"Id\":\"a\",\"State\":[]}", "[{\"Id\":[]}]", "{\"Actor\":7,\"Action\":\"die\"}",
        "{\"NCPU\":\"2\",\"MemTotal\":1}", "{\"NCPU\":-1,\"MemTotal\":1}",
        "{\"IPAM\":{\"Config\":{}}}", "\xff\xfe",
    };
    engine_container_t c, *list;
    engine_event_t ev;
    engine_info_t info;
    char gw[32], br[32], sn[32], msg[64];
    size_t n;
    unsigned seed = 42;

    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        const char *s = inputs[i];
        size_t len = strlen(s);
        engine_json_parse_inspect(s, len, &c);
        if (engine_json_parse_list(s, len, &list, &n) == 0)
            free(list);
        engine_json_parse_event(s, len, &ev);
        engine_json_parse_info(s, len, &info);
        engine_json_parse_network(s, len, gw, sizeof(gw), br, sizeof(br), sn, sizeof(sn));
        engine_json_error_message(s, len, 500, msg, sizeof(msg));
        engine_json_progress_error(s, len, msg, sizeof(msg));
    }
    assert_int_equal(engine_json_parse_inspect("{", 1, &c), SKIFF_EINVAL);
    assert_int_equal(engine_json_parse_event("{\"Actor\":7,\"Action\":\"die\"}", 27, &ev),
                     SKIFF_EINVAL);
    assert_int_equal(engine_json_parse_info("{\"NCPU\":\"2\",\"MemTotal\":1}", 25, &info),
                     SKIFF_EINVAL);

    /* Every recorded answer, cut short and with bytes flipped. */
    {
        static const char *files[] = { "inspect_healthy.json", "list.json", "info.json",
                                       "events.jsonl" };
        for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
            size_t len;
            char *data = slurp(files[f], &len);
            for (size_t cut = 0; cut < len; cut += 97) {
                engine_json_parse_inspect(data, cut, &c);
                if (engine_json_parse_list(data, cut, &list, &n) == 0)
                    free(list);
                engine_json_parse_info(data, cut, &info);
            }
            for (int k = 0; k < 200; k++) {
                size_t at = (size_t)rand_r(&seed) % len;
                char old = data[at];
                data[at] = (char)rand_r(&seed);
                engine_json_parse_inspect(data, len, &c);
                if (engine_json_parse_list(data, len, &list, &n) == 0)
                    free(list);
                engine_json_parse_event(data, len, &ev);
                engine_json_parse_info(data, len, &info);
                data[at] = old;
            }
            free(data);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_body_labels),
        cmocka_unit_test(test_create_body_secret_files),
        cmocka_unit_test(test_create_body_ports),
        cmocka_unit_test(test_create_body_limits_health_mounts_hosts),
        cmocka_unit_test(test_create_body_never_privileged),
        cmocka_unit_test(test_create_body_minimal),
        cmocka_unit_test(test_container_name),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_inspect_running),
        cmocka_unit_test(test_inspect_exited),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_events),
        cmocka_unit_test(test_info_and_network),
        cmocka_unit_test(test_created),
        cmocka_unit_test(test_error_messages),
        cmocka_unit_test(test_pull_progress),
        cmocka_unit_test(test_image_ref),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_demux),
        cmocka_unit_test(test_lines_bounded),
        cmocka_unit_test(test_garbage),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
