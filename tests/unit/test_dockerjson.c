/* Tests of dockerjson: Docker's Swarm JSON to and from skiff's messages,
 * over bodies recorded from the docker CLI 28.2 (data/docker/: `docker
 * service create ...` pointed at a listener that logged what it got). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "ctl.h"
#include "dockerjson.h"
#include "errors.h"
#include "pbutil.h"
#include "spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DATA "data/docker/"

static json_t *load(const char *name)
{
    json_error_t jerr;
    json_t *j = json_load_file(name, 0, &jerr);

    if (!j)
        fail_msg("%s: %s", name, jerr.text);
    return j;
}

static ServiceSpec *parse(const char *text, const ServiceSpec *base, char *err, size_t len)
{
    json_t *j = json_loads(text, 0, NULL);
    ServiceSpec *s;

    assert_non_null(j);
    s = dockerjson_spec_from(j, base, err, len);
    json_decref(j);
    return s;
}

/* docker service create -d --name web --replicas 2 -p 8080:80 --env A=b
 *   --label x=y --health-cmd true --health-interval 5s
 *   --constraint node.labels.db==true --limit-memory 64m --reserve-cpu 0.5
 *   --update-parallelism 1 --update-order start-first
 *   --restart-condition on-failure skiff-test/web:v1 sh -c echo */
static void test_create_recorded(void **state)
{
    json_t *j = load(DATA "service_create.json");
    char err[256] = "";
    ServiceSpec *s = dockerjson_spec_from(j, NULL, err, sizeof(err));

    (void)state;
    json_decref(j);
    assert_non_null(s);
    assert_string_equal(s->name, "web");
    assert_string_equal(s->image, "skiff-test/web:v1");
    assert_int_equal(s->replicas, 2);
    assert_int_equal(s->n_command, 3);
    assert_string_equal(s->command[0], "sh");
    assert_int_equal(s->n_entrypoint, 0);
    assert_int_equal(s->n_env, 1);
    assert_string_equal(s->env[0], "A=b");
    assert_int_equal(s->n_labels, 1);
    assert_string_equal(s->labels[0]->key, "x");
    assert_string_equal(s->labels[0]->value, "y");
    assert_int_equal(s->health->n_test, 2);
    assert_string_equal(s->health->test[0], "CMD-SHELL");
    assert_int_equal(s->health->interval_ms, 5000);
    assert_int_equal(s->limits->memory_bytes, 64 << 20);
    assert_int_equal(s->reservations->nano_cpus, 500000000);
    assert_int_equal(s->restart->condition, RESTART_ON_FAILURE);
    assert_int_equal(s->restart->delay_ms, 5000);
    assert_int_equal(s->n_constraints, 1);
    assert_string_equal(s->constraints[0], "node.labels.db==true");
    assert_int_equal(s->update->parallelism, 1);
    assert_int_equal(s->update->order, ORDER_START_FIRST);
    assert_int_equal(s->update->monitor_ms, 5000);
    assert_int_equal(s->n_ports, 1);
    assert_int_equal(s->ports[0]->published, 8080);
    assert_int_equal(s->ports[0]->target, 80);
    assert_string_equal(s->ports[0]->protocol, "tcp");
    assert_int_equal(spec_validate(s, NULL, err, sizeof(err)), 0);
    pb_free(s);
}

/* What skiff answers in inspect comes back whole in an update: the same spec. */
static void test_roundtrip(void **state)
{
    json_t *j = load(DATA "service_create.json"), *out;
    char err[256] = "";
    ServiceSpec *a = dockerjson_spec_from(j, NULL, err, sizeof(err)), *b;

    (void)state;
    json_decref(j);
    assert_non_null(a);
    out = dockerjson_spec(a);
    assert_non_null(out);
    b = dockerjson_spec_from(out, a, err, sizeof(err));
    if (!b)
        fail_msg("%s", err);
    assert_true(pb_equal(a, b));
    json_decref(out);
    pb_free(b);
    pb_free(a);
}

/* --mount, --publish mode=host, --stop-grace-period, --no-healthcheck,
 * --entrypoint, --rollback-parallelism: all but the host port are taken. */
static void test_create_mount_hostport(void **state)
{
    json_t *j = load(DATA "create_mount_hostport.json");
    char err[256] = "";
    ServiceSpec *s = dockerjson_spec_from(j, NULL, err, sizeof(err));

    (void)state;
    assert_null(s);
    assert_string_equal(err, "Spec.EndpointSpec.Ports[0]: PublishMode: skiff publishes on every "
                             "node (\"ingress\"); \"host\" is not supported");
    /* without the host port */
    json_object_del(json_object_get(json_object_get(j, "EndpointSpec"), "Ports") ? 
                    json_array_get(json_object_get(json_object_get(j, "EndpointSpec"), "Ports"), 0)
                    : NULL, "PublishMode");
    s = dockerjson_spec_from(j, NULL, err, sizeof(err));
    json_decref(j);
    if (!s)
        fail_msg("%s", err);
    assert_int_equal(s->n_mounts, 1);
    assert_int_equal(s->mounts[0]->type, MOUNT_VOLUME);
    assert_string_equal(s->mounts[0]->source, "data");
    assert_string_equal(s->mounts[0]->target, "/data");
    assert_int_equal(s->stop_grace_period_ms, 3000);
    assert_int_equal(s->health->n_test, 0); /* ["NONE"] */
    assert_int_equal(s->n_entrypoint, 1);
    assert_string_equal(s->entrypoint[0], "/bin/sh");
    assert_int_equal(s->rollback->parallelism, 2);
    assert_int_equal(s->replicas, 1); /* Replicated {} */
    pb_free(s);
}

static void test_refused(void **state)
{
    static const struct {
        const char *file, *body, *err;
    } cases[] = {
        { DATA "create_global.json", NULL,
          "Spec.Mode: Global: not supported by skiff (replicated only)" },
        { DATA "create_hostname.json", NULL,
          "Spec.TaskTemplate.ContainerSpec: Hostname: not supported by skiff" },
        { NULL, "{\"Name\":\"a\",\"TaskTemplate\":{\"ContainerSpec\":{\"Image\":\"x\"},"
                "\"Networks\":[{\"Target\":\"n\"}]}}",
          "Spec.TaskTemplate: Networks: not supported by skiff (a stack's services reach each "
          "other by name; there are no other networks)" },
        { NULL, "{\"Name\":\"a\",\"TaskTemplate\":{\"ContainerSpec\":{\"Image\":\"x\"}},"
                "\"EndpointSpec\":{\"Mode\":\"dnsrr\"}}",
          "Spec.EndpointSpec: Mode: skiff balances every service (\"vip\"); \"dnsrr\" is not "
          "supported" },
        { NULL, "{\"Name\":\"a\",\"TaskTemplate\":{\"ContainerSpec\":{\"Image\":\"x\"}},"
                "\"EndpointSpec\":{\"Ports\":[{\"Protocol\":\"udp\",\"TargetPort\":53,"
                "\"PublishedPort\":53}]}}",
          "Spec.EndpointSpec.Ports[0]: Protocol: skiff balances tcp only" },
        { NULL, "{\"Name\":\"a\",\"TaskTemplate\":{\"ContainerSpec\":{\"Image\":\"x\"}},"
                "\"EndpointSpec\":{\"Ports\":[{\"TargetPort\":80}]}}",
          "Spec.EndpointSpec.Ports[0]: PublishedPort: skiff assigns no port: give one (-p P:T)" },
        { NULL, "{\"Name\":\"a\",\"TaskTemplate\":{\"ContainerSpec\":{\"Image\":\"x\"},"
                "\"Placement\":{\"Preferences\":[{\"Spread\":{\"SpreadDescriptor\":\"n\"}}]}}}",
          "Spec.TaskTemplate.Placement: Preferences: not supported by skiff" },
        { NULL, "{\"Name\":\"a\",\"TaskTemplate\":{\"ContainerSpec\":{\"Image\":\"x\"},"
                "\"Resources\":{\"Limits\":{\"Pids\":10}}}}",
          "Spec.TaskTemplate.Resources.Limits: Pids: not supported by skiff" },
        { NULL, "{\"Name\":\"a\",\"TaskTemplate\":{\"ContainerSpec\":{\"Image\":\"x\","
                "\"StopGracePeriod\":1500}}}",
          "Spec.TaskTemplate.ContainerSpec: StopGracePeriod: skiff counts durations in whole "
          "milliseconds" },
        { NULL, "{\"Name\":\"a\",\"TaskTemplate\":{\"ContainerSpec\":{\"Image\":\"x\"}},"
                "\"Mode\":{\"Replicated\":{\"Replicas\":-1}}}",
          "Spec.Mode.Replicated: Replicas: must be a whole number from 0 to 4294967295" },
        { NULL, "{\"Name\":\"a\",\"TaskTemplate\":{\"ContainerSpec\":{\"Image\":\"x\"},"
                "\"RestartPolicy\":{\"Condition\":\"sometimes\"}}}",
          "Spec.TaskTemplate.RestartPolicy: Condition: must be \"none\", \"on-failure\" or "
          "\"any\"" },
        { NULL, "{\"Name\":\"a\"}", "Spec: TaskTemplate: missing" },
        { NULL, "[1]", "Spec: must be an object" },
        { NULL, "{\"Name\":\"a\",\"TaskTemplate\":{\"ContainerSpec\":{\"Image\":\"x\","
                "\"Env\":[1]}}}",
          "Spec.TaskTemplate.ContainerSpec: Env[0]: must be a string" },
    };
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *j = cases[i].file ? load(cases[i].file) : json_loads(cases[i].body, 0, NULL);
        ServiceSpec *s;
        assert_non_null(j);
        err[0] = '\0';
        s = dockerjson_spec_from(j, NULL, err, sizeof(err));
        json_decref(j);
        if (s)
            fail_msg("case %zu accepted", i);
        assert_string_equal(err, cases[i].err);
    }
}

/* An update keeps what Docker's spec has no field for. */
static void test_update_keeps_skiff_fields(void **state)
{
    ServiceSpec *base = spec_new(), *s;
    char err[256];
    uint32_t expose[1] = { 6379 };

    (void)state;
    assert_non_null(base);
    assert_int_equal(pb_set_str(&base->name, "shop_api"), 0);
    assert_int_equal(pb_set_str(&base->stack, "shop"), 0);
    assert_int_equal(pb_set_str(&base->health->http_path, "/health"), 0);
    base->drain_delay_ms = 2500;
    base->expose = malloc(sizeof(expose));
    assert_non_null(base->expose);
    memcpy(base->expose, expose, sizeof(expose));
    base->n_expose = 1;
    {
        /* the stack shows as Docker's label, which does not come back as a new one */
        json_t *shown = dockerjson_spec(base);
        assert_non_null(shown);
        assert_string_equal(json_string_value(json_object_get(json_object_get(shown, "Labels"),
                                                              DOCKERJSON_STACK_LABEL)), "shop");
        /* what Docker has no field for shows as skiff's labels */
        assert_string_equal(json_string_value(json_object_get(json_object_get(shown, "Labels"),
                                                              SPEC_LABEL_HEALTH_HTTP)), "/health");
        assert_string_equal(json_string_value(json_object_get(json_object_get(shown, "Labels"),
                                                              SPEC_LABEL_EXPOSE)), "6379");
        s = dockerjson_spec_from(shown, base, err, sizeof(err));
        json_decref(shown);
        if (!s)
            fail_msg("%s", err);
        assert_int_equal(s->n_labels, 0);
        assert_true(pb_equal(s, base));
        pb_free(s);
    }
    s = parse("{\"Name\":\"shop_api\",\"TaskTemplate\":{\"ContainerSpec\":{\"Image\":\"y:2\"}}}",
              base, err, sizeof(err));
    assert_non_null(s);
    assert_string_equal(s->image, "y:2");
    assert_string_equal(s->stack, "shop");
    assert_string_equal(s->health->http_path, "/health");
    assert_int_equal(s->drain_delay_ms, 2500);
    assert_int_equal(s->n_expose, 1);
    assert_int_equal(s->expose[0], 6379);
    pb_free(s);
    pb_free(base);
}

/* skiff's labels say what Docker's spec cannot (`docker service create
 * --label skiff.health.http=/health`); an unknown skiff. label is refused. */
static void test_skiff_labels(void **state)
{
    char err[256];
    ServiceSpec *s;

    (void)state;
    s = parse("{\"Name\":\"api\",\"Labels\":{\"skiff.health.http\":\"/health\","
              "\"skiff.health.http-port\":\"3000\",\"skiff.expose\":\"3000\",\"team\":\"a\"},"
              "\"TaskTemplate\":{\"ContainerSpec\":{\"Image\":\"x\",\"Healthcheck\":"
              "{\"Interval\":2000000000}}}}",
              NULL, err, sizeof(err));
    if (!s)
        fail_msg("%s", err);
    assert_string_equal(s->health->http_path, "/health");
    assert_int_equal(s->health->http_port, 3000);
    assert_int_equal(s->health->interval_ms, 2000);
    assert_int_equal(s->n_expose, 1);
    assert_int_equal(s->n_labels, 1);
    assert_string_equal(s->labels[0]->key, "team");
    pb_free(s);
    s = parse("{\"Name\":\"api\",\"Labels\":{\"skiff.cluster\":\"c\"},"
              "\"TaskTemplate\":{\"ContainerSpec\":{\"Image\":\"x\"}}}",
              NULL, err, sizeof(err));
    assert_null(s);
    assert_string_equal(err, "labels: skiff.cluster: not a label skiff knows (the skiff. prefix is "
                             "reserved)");
}

/* What `docker stack deploy` sends: the stack's label on the service and its
 * containers, and the stack's default network with the short name as alias. */
static void test_stack_label(void **state)
{
    char err[256];
    ServiceSpec *s = parse("{\"Name\":\"shop_db\",\"Labels\":{\"com.docker.stack.namespace\":"
                           "\"shop\"},\"TaskTemplate\":{\"ContainerSpec\":{\"Image\":\"x\","
                           "\"Labels\":{\"com.docker.stack.namespace\":\"shop\"}},\"Networks\":"
                           "[{\"Target\":\"shop_default\",\"Aliases\":[\"db\"]}]}}",
                           NULL, err, sizeof(err));

    (void)state;
    if (!s)
        fail_msg("%s", err);
    assert_string_equal(s->stack, "shop");
    pb_free(s);
    s = parse("{\"Name\":\"shop_db\",\"Labels\":{\"com.docker.stack.namespace\":\"shop\"},"
              "\"TaskTemplate\":{\"ContainerSpec\":{\"Image\":\"x\"},\"Networks\":"
              "[{\"Target\":\"shop_backend\"}]}}", NULL, err, sizeof(err));
    assert_null(s);
    assert_string_equal(err, "Spec.TaskTemplate: Networks: not supported by skiff (a stack's "
                             "services reach each other by name; there are no other networks)");
    s = parse("{\"Name\":\"db\",\"TaskTemplate\":{\"ContainerSpec\":{\"Image\":\"x\","
              "\"Labels\":{\"a\":\"b\"}}}}", NULL, err, sizeof(err));
    assert_null(s);
    assert_string_equal(err, "Spec.TaskTemplate.ContainerSpec: Labels: not supported by skiff (a "
                             "service's Labels are set on its containers too)");
}

static void test_service_task_node(void **state)
{
    Service *svc = PB_NEW(Service);
    Task *t = PB_NEW(Task);
    Node *n = PB_NEW(Node);
    json_t *j;
    char *text;

    (void)state;
    assert_non_null(svc);
    assert_non_null(t);
    assert_non_null(n);
    svc->spec = spec_new();
    svc->update_status = PB_NEW(UpdateStatus);
    assert_non_null(svc->spec);
    assert_non_null(svc->update_status);
    assert_int_equal(pb_set_str(&svc->id, "s1"), 0);
    assert_int_equal(pb_set_str(&svc->spec->name, "web"), 0);
    assert_int_equal(pb_set_str(&svc->spec->image, "img"), 0);
    svc->version = 7;
    svc->running_tasks = 2;
    svc->desired_tasks = 3;
    svc->created_ms = 1700000000123;
    svc->update_status->state = UPDATE_UPDATING;
    j = dockerjson_service(svc);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "ID")), "s1");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "Version"), "Index")),
                     7);
    assert_string_equal(json_string_value(json_object_get(j, "CreatedAt")),
                        "2023-11-14T22:13:20.123000000Z");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "UpdateStatus"),
                                                          "State")), "updating");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "ServiceStatus"),
                                                        "RunningTasks")), 2);
    json_decref(j);

    assert_int_equal(pb_set_str(&t->id, "t1"), 0);
    assert_int_equal(pb_set_str(&t->image, "img"), 0);
    t->state = TASK_PULLING;
    t->desired_state = DESIRED_SHUTDOWN;
    t->slot = 2;
    j = dockerjson_task(t);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "Status"), "State")),
                        "preparing");
    assert_string_equal(json_string_value(json_object_get(j, "DesiredState")), "shutdown");
    assert_int_equal(json_integer_value(json_object_get(j, "Slot")), 2);
    json_decref(j);
    t->state = TASK_FAILED;
    assert_int_equal(pb_set_str(&t->message, "exit 1"), 0);
    j = dockerjson_task(t);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "Status"), "Err")),
                        "exit 1");
    json_decref(j);

    assert_int_equal(pb_set_str(&n->id, "n1"), 0);
    assert_int_equal(pb_set_str(&n->name, "node-1"), 0);
    assert_int_equal(pb_set_str(&n->address, "127.0.0.2"), 0);
    n->state = NODE_READY;
    n->availability = AVAILABILITY_DRAIN;
    j = dockerjson_node(n);
    assert_non_null(j);
    text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(strstr(text, "\"Availability\":\"drain\""));
    assert_non_null(strstr(text, "\"Hostname\":\"node-1\""));
    assert_non_null(strstr(text, "\"Addr\":\"127.0.0.2\""));
    assert_non_null(strstr(text, "\"State\":\"ready\""));
    free(text);
    json_decref(j);
    {
        uint64_t v = dockerjson_node_version(n);
        n->availability = AVAILABILITY_ACTIVE;
        assert_true(v != dockerjson_node_version(n));
    }
    pb_free(svc);
    pb_free(t);
    pb_free(n);
}

static void push_label(size_t *n, Label ***labels, const char *key, const char *value)
{
    Label *l = PB_NEW(Label);

    assert_non_null(l);
    assert_int_equal(pb_set_str(&l->key, key), 0);
    assert_int_equal(pb_set_str(&l->value, value), 0);
    assert_int_equal(pb_push_msg(n, (void ***)labels, l), 0);
}

/* Spec.Labels are the labels set on the controller, Description.Engine.
 * Labels the agent's; the version follows what Spec shows. */
static void test_node_labels_json(void **state)
{
    Node *n = PB_NEW(Node);
    json_t *j, *spec, *engine;
    uint64_t v;

    (void)state;
    assert_non_null(n);
    assert_int_equal(pb_set_str(&n->id, "n1"), 0);
    assert_int_equal(pb_set_str(&n->name, "node-1"), 0);
    push_label(&n->n_labels, &n->labels, "zone", "core");
    push_label(&n->n_labels, &n->labels, "disk", "ssd");
    push_label(&n->n_spec_labels, &n->spec_labels, "zone", "edge");
    j = dockerjson_node(n);
    assert_non_null(j);
    spec = json_object_get(json_object_get(j, "Spec"), "Labels");
    engine = json_object_get(json_object_get(json_object_get(j, "Description"), "Engine"),
                             "Labels");
    assert_int_equal(json_object_size(spec), 1);
    assert_string_equal(json_string_value(json_object_get(spec, "zone")), "edge");
    assert_int_equal(json_object_size(engine), 2);
    assert_string_equal(json_string_value(json_object_get(engine, "zone")), "core");
    assert_string_equal(json_string_value(json_object_get(engine, "disk")), "ssd");
    json_decref(j);

    v = dockerjson_node_version(n);
    push_label(&n->n_labels, &n->labels, "rack", "1"); /* not in Spec */
    assert_true(v == dockerjson_node_version(n));
    assert_int_equal(pb_set_str(&n->spec_labels[0]->value, "core"), 0);
    assert_true(v != dockerjson_node_version(n));
    pb_free(n);
}

/* The whole Labels of a NodeSpec against the node's spec labels: what is new
 * or changed is added, what is gone removed, the agent's labels untouched. */
static void test_node_labels_diff(void **state)
{
    static const struct {
        const char *labels; /* the body's Spec.Labels */
        const char *add;    /* "k=v,k=v" */
        const char *rm;     /* "k,k" */
        const char *err;
    } cases[] = {
        { "{\"zone\": \"edge\", \"tier\": \"1\"}", "", "" },
        { "{\"zone\": \"edge\", \"tier\": \"2\"}", "tier=2", "" },
        { "{\"zone\": \"edge\", \"tier\": \"1\", \"rack\": \"\"}", "rack=", "" },
        { "{\"zone\": \"edge\"}", "", "tier" },
        { "{}", "", "zone,tier" },
        { "{\"disk\": \"ssd\"}", "disk=ssd", "zone,tier" }, /* the agent's key: added */
        { "null", "", "" },
        { NULL, "", "" },
        { "[]", "", "", "Spec.Labels: not an object" },
        { "{\"zone\": 1}", "", "", "Spec.Labels.zone: not a string" },
    };
    Node *n = PB_NEW(Node);

    (void)state;
    assert_non_null(n);
    push_label(&n->n_labels, &n->labels, "disk", "hdd");
    push_label(&n->n_spec_labels, &n->spec_labels, "zone", "edge");
    push_label(&n->n_spec_labels, &n->spec_labels, "tier", "1");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        NodeUpdate up = PB_NODE_UPDATE_INIT;
        json_t *labels = cases[i].labels ? json_loads(cases[i].labels, JSON_DECODE_ANY, NULL)
                                         : NULL;
        char err[128] = "", add[128] = "", rm[128] = "";
        size_t used = 0;
        int rc;

        assert_true(!cases[i].labels || labels);
        rc = dockerjson_node_labels(labels, n, &up, err, sizeof(err));
        if (cases[i].err) {
            assert_int_equal(rc, SKIFF_EINVAL);
            assert_string_equal(err, cases[i].err);
        } else {
            assert_int_equal(rc, 0);
        }
        for (size_t k = 0; k < up.n_label_add; k++)
            used += (size_t)snprintf(add + used, sizeof(add) - used, "%s%s=%s", k ? "," : "",
                                     up.label_add[k]->key, up.label_add[k]->value);
        used = 0;
        for (size_t k = 0; k < up.n_label_rm; k++)
            used += (size_t)snprintf(rm + used, sizeof(rm) - used, "%s%s", k ? "," : "",
                                     up.label_rm[k]);
        if (!cases[i].err && (strcmp(add, cases[i].add) || strcmp(rm, cases[i].rm)))
            fail_msg("%s: add \"%s\" rm \"%s\", want add \"%s\" rm \"%s\"",
                     cases[i].labels ? cases[i].labels : "(none)", add, rm, cases[i].add,
                     cases[i].rm);
        dockerjson_node_labels_free(&up);
        assert_int_equal(up.n_label_add + up.n_label_rm, 0);
        json_decref(labels);
    }
    pb_free(n);
}

static void test_filters(void **state)
{
    static const char *const allowed[] = { "name", "id", NULL };
    json_t *f;
    char err[128];

    (void)state;
    assert_int_equal(dockerjson_filters("{\"name\":{\"web\":true}}", &f, err, sizeof(err)), 0);
    assert_true(dockerjson_filter_match(f, "name", "web", 0));
    assert_false(dockerjson_filter_match(f, "name", "api", 0));
    assert_true(dockerjson_filter_match(f, "id", "anything", 0));
    assert_int_equal(dockerjson_filters_allowed(f, allowed, err, sizeof(err)), 0);
    json_decref(f);
    assert_int_equal(dockerjson_filters("{\"id\":[\"ab\"]}", &f, err, sizeof(err)), 0);
    assert_true(dockerjson_filter_match(f, "id", "abcdef", 1));
    assert_false(dockerjson_filter_match(f, "id", "abcdef", 0));
    json_decref(f);
    assert_int_equal(dockerjson_filters("{\"mode\":{\"global\":true}}", &f, err, sizeof(err)), 0);
    assert_int_equal(dockerjson_filters_allowed(f, allowed, err, sizeof(err)), -1);
    assert_string_equal(err, "filters: mode: not supported by skiff");
    json_decref(f);
    assert_int_equal(dockerjson_filters("nope", &f, err, sizeof(err)), -1);
    assert_int_equal(dockerjson_filters("{\"a\":3}", &f, err, sizeof(err)), -1);
    assert_int_equal(dockerjson_filters(NULL, &f, err, sizeof(err)), 0);
    assert_null(f);
}

/* --docker-api-listen takes loopback addresses only (no TLS yet). */
static void test_loopback(void **state)
{
    (void)state;
    assert_true(dockerapi_loopback("127.0.0.1:2375"));
    assert_true(dockerapi_loopback("127.9.8.7:1"));
    assert_true(dockerapi_loopback("[::1]:2375"));
    assert_false(dockerapi_loopback("0.0.0.0:2375"));
    assert_false(dockerapi_loopback("10.0.0.1:2375"));
    assert_false(dockerapi_loopback("[::]:2375"));
    assert_false(dockerapi_loopback("128.0.0.1:2375"));
    assert_false(dockerapi_loopback("nonsense"));
}

/* ContainerSpec.Secrets and Configs, in Docker's shape, both ways. */
static void test_secret_refs(void **state)
{
    const char *body =
        "{\"Name\": \"api\", \"TaskTemplate\": {\"ContainerSpec\": {\"Image\": \"x\","
        " \"Secrets\": [{\"File\": {\"Name\": \"pw\", \"UID\": \"70\", \"GID\": \"71\","
        " \"Mode\": 256}, \"SecretID\": \"abc\", \"SecretName\": \"db_pass\"}],"
        " \"Configs\": [{\"File\": {\"Name\": \"/etc/api.json\", \"UID\": \"0\", \"GID\": \"0\","
        " \"Mode\": 292}, \"ConfigID\": \"def\", \"ConfigName\": \"api\"}]}},"
        " \"Mode\": {\"Replicated\": {\"Replicas\": 1}}}";
    char err[256] = "";
    ServiceSpec *s = parse(body, NULL, err, sizeof(err));
    json_t *j, *c;

    (void)state;
    if (!s)
        fail_msg("%s", err);
    assert_int_equal(s->n_secrets, 1);
    assert_string_equal(s->secrets[0]->name, "db_pass");
    assert_string_equal(s->secrets[0]->target, "pw");
    assert_int_equal(s->secrets[0]->uid, 70);
    assert_int_equal(s->secrets[0]->gid, 71);
    assert_int_equal(s->secrets[0]->mode, 0400);
    assert_int_equal(s->n_configs, 1);
    assert_string_equal(s->configs[0]->target, "/etc/api.json");
    assert_int_equal(s->configs[0]->mode, 0444);
    j = dockerjson_spec(s);
    c = json_object_get(json_object_get(json_object_get(j, "TaskTemplate"), "ContainerSpec"),
                        "Secrets");
    assert_int_equal(json_array_size(c), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(c, 0), "SecretName")),
                        "db_pass");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(c, 0), "File"), "UID")), "70");
    json_decref(j);
    pb_free(s);

    /* Refused, naming the field. */
    s = parse("{\"Name\": \"api\", \"TaskTemplate\": {\"ContainerSpec\": {\"Image\": \"x\","
              " \"Secrets\": [{\"SecretName\": \"a\"}]}}}", NULL, err, sizeof(err));
    assert_null(s);
    assert_string_equal(err, "Spec.TaskTemplate.ContainerSpec.Secrets[0]: File: needed (skiff "
                             "puts every secret in a file)");
    s = parse("{\"Name\": \"api\", \"TaskTemplate\": {\"ContainerSpec\": {\"Image\": \"x\","
              " \"Configs\": [{\"File\": {\"Name\": \"/x\"}, \"ConfigName\": \"a\","
              " \"Runtime\": {\"x\": 1}}]}}}", NULL, err, sizeof(err));
    assert_null(s);
    assert_string_equal(err, "Spec.TaskTemplate.ContainerSpec.Configs[0]: Runtime: not "
                             "supported by skiff");
}

/* A secret's and a config's objects, and the create body. */
static void test_secret_objects(void **state)
{
    Secret s = PB_SECRET_INIT, *in;
    Label l = PB_LABEL_INIT, *lp = &l;
    json_t *j, *body;
    char err[256] = "";

    (void)state;
    s.id = "0123456789abcdef";
    s.name = "app";
    s.kind = SECRET_KIND_CONFIG;
    s.stack = "shop";
    s.version = 1;
    s.data.data = (uint8_t *)"hello";
    s.data.len = 5;
    l.key = "tier";
    l.value = "front";
    s.labels = &lp;
    s.n_labels = 1;
    j = dockerjson_secret(&s);
    assert_string_equal(json_string_value(json_object_get(j, "ID")), "0123456789abcdef");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "Spec"), "Data")),
                        "aGVsbG8=");
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(
                            j, "Spec"), "Labels"), "com.docker.stack.namespace")), "shop");
    json_decref(j);
    s.kind = SECRET_KIND_SECRET; /* a secret's data never shows */
    j = dockerjson_secret(&s);
    assert_null(json_object_get(json_object_get(j, "Spec"), "Data"));
    json_decref(j);

    body = json_loads("{\"Name\": \"shop_db\", \"Labels\": {\"com.docker.stack.namespace\":"
                      " \"shop\"}, \"Data\": \"czNjcmV0\"}", 0, NULL);
    in = PB_NEW(Secret);
    assert_int_equal(dockerjson_secret_from(body, in, err, sizeof(err)), 0);
    assert_string_equal(in->name, "shop_db");
    assert_string_equal(in->stack, "shop");
    assert_int_equal(in->data.len, 6);
    assert_memory_equal(in->data.data, "s3cret", 6);
    pb_free(in);
    json_decref(body);
    body = json_loads("{\"Name\": \"x\", \"Data\": \"not base64!\"}", 0, NULL);
    in = PB_NEW(Secret);
    assert_int_equal(dockerjson_secret_from(body, in, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "Data: not base64"));
    pb_free(in);
    json_decref(body);
    body = json_loads("{\"Name\": \"x\", \"Driver\": {\"Name\": \"vault\"}}", 0, NULL);
    in = PB_NEW(Secret);
    assert_int_equal(dockerjson_secret_from(body, in, err, sizeof(err)), -1);
    assert_string_equal(err, "SecretSpec: Driver: not supported by skiff");
    pb_free(in);
    json_decref(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_recorded),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_create_mount_hostport),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_update_keeps_skiff_fields),
        cmocka_unit_test(test_skiff_labels),
        cmocka_unit_test(test_stack_label),
        cmocka_unit_test(test_service_task_node),
        cmocka_unit_test(test_node_labels_json),
        cmocka_unit_test(test_node_labels_diff),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_secret_refs),
        cmocka_unit_test(test_secret_objects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
