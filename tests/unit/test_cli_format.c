/* Unit tests of what the CLI prints: the aligned tables of service ls, ps,
 * node ls and stack ls (from messages built here), Docker's ages, the
 * descriptor-driven protobuf-to-JSON converter, and the convergence follower
 * (progress_eval and its rendering) on polls made up here.
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

#include "format.h"
#include "pbjson.h"
#include "pbutil.h"
#include "progress.h"
#include "spec.h"
#include "table.h"
#include "wire.h"

#define NOW 1800000000000LL /* ms */

/* ------------------------------------------------------------- helpers */

typedef struct capture {
    char *buf;
    size_t len;
    FILE *f;
} capture_t;

static void capture_start(capture_t *c)
{
    c->buf = NULL;
    c->len = 0;
    c->f = open_memstream(&c->buf, &c->len);
    assert_non_null(c->f);
}

/* Ends the capture and compares; the caller frees nothing. */
static void capture_expect(capture_t *c, const char *want)
{
    fclose(c->f);
    if (strcmp(c->buf, want) != 0)
        fail_msg("output:\n%s\nwanted:\n%s", c->buf, want);
    free(c->buf);
}

static void set(char **field, const char *s)
{
    assert_int_equal(pb_set_str(field, s), 0);
}

static Service *service(const char *id, const char *name, const char *image, uint32_t running,
                        uint32_t replicas)
{
    Service *s = PB_NEW(Service);

    assert_non_null(s);
    assert_non_null(s->spec = spec_new());
    assert_non_null(s->update_status = PB_NEW(UpdateStatus));
    set(&s->id, id);
    set(&s->spec->name, name);
    set(&s->spec->image, image);
    s->spec->replicas = replicas;
    s->running_tasks = running;
    s->desired_tasks = replicas;
    s->version = 1;
    return s;
}

static void add_port(Service *s, uint32_t published, uint32_t target)
{
    PortConfig *p = PB_NEW(PortConfig);

    assert_non_null(p);
    p->published = published;
    p->target = target;
    set(&p->protocol, "tcp");
    assert_int_equal(pb_push_msg(&s->spec->n_ports, (void ***)&s->spec->ports, p), 0);
}

static Task *task(const char *id, const char *service, uint32_t slot, TaskState state,
                  DesiredState desired, int64_t since_ms)
{
    Task *t = PB_NEW(Task);

    assert_non_null(t);
    set(&t->id, id);
    set(&t->service_name, service);
    set(&t->image, "skiff-test/web:v1");
    set(&t->node_name, "n1");
    t->slot = slot;
    t->state = state;
    t->desired_state = desired;
    t->state_since_ms = since_ms;
    t->created_ms = since_ms;
    t->spec_version = 1;
    return t;
}

static void free_all(void **msgs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        pb_free(msgs[i]);
}

/* ------------------------------------------------------------- tables */

static void test_table(void **state)
{
    static const char *const h[] = { "A", "LONGER HEADER", "LAST" };
    static const char *const r1[] = { "x\xC3\xA9", "b", "c" }; /* two characters */
    static const char *const r2[] = { "a-very-long-cell", NULL, "" };
    table_t *t = table_create(3, h);
    capture_t c;

    assert_non_null(t);
    assert_int_equal(table_add(t, r1), 0);
    assert_int_equal(table_add(t, r2), 0);
    capture_start(&c);
    table_print(t, c.f);
    table_free(t);
    /* min width 10, padding 3; the last column is not padded */
    capture_expect(&c, "A                  LONGER HEADER   LAST\n"
                       "x\xC3\xA9                 b               c\n"
                       "a-very-long-cell                   \n");
}

static void test_service_ls(void **state)
{
    Service *s[3];
    fmt_opts_t o = { .now_ms = NOW };
    capture_t c;

    s[0] = service("zx9abcdefghijklmnopqrstuv", "web", "skiff-test/web:v1", 2, 3);
    add_port(s[0], 8080, 80);
    add_port(s[0], 8443, 443);
    s[1] = service("a1b2c3d4e5f6g7h8", "api", "node:20", 1, 1);
    s[2] = service("short", "db", "postgres:16", 0, 0);
    capture_start(&c);
    assert_int_equal(fmt_services(c.f, s, 3, &o), 0);
    /* sorted by name, ids cut to 12 characters */
    capture_expect(&c,
        "ID             NAME      MODE         REPLICAS   IMAGE               PORTS\n"
        "a1b2c3d4e5f6   api       replicated   1/1        node:20             \n"
        "short          db        replicated   0/0        postgres:16         \n"
        "zx9abcdefghi   web       replicated   2/3        skiff-test/web:v1   "
        "*:8080->80/tcp, *:8443->443/tcp\n");

    o.quiet = 1;
    o.no_trunc = 1;
    capture_start(&c);
    assert_int_equal(fmt_services(c.f, s, 3, &o), 0);
    capture_expect(&c, "a1b2c3d4e5f6g7h8\nshort\nzx9abcdefghijklmnopqrstuv\n");
    free_all((void **)s, 3);
}

static void test_service_ps(void **state)
{
    Task *t[6];
    fmt_opts_t o = { .now_ms = NOW };
    capture_t c;

    t[0] = task("t2aaaaaaaaaaaaaaaaaaa", "web", 1, TASK_RUNNING, DESIRED_RUNNING,
                NOW - 125000);
    t[0]->health = HEALTH_HEALTHY;
    t[1] = task("t1bbbbbbbbbbbbbbbbbbb", "web", 1, TASK_FAILED, DESIRED_SHUTDOWN,
                NOW - 3600000);
    t[1]->exit_code = 2;
    t[2] = task("t3ccc", "web", 2, TASK_PENDING, DESIRED_RUNNING, NOW - 500);
    set(&t[2]->message, "no suitable node (1 node not ready, 2 nodes lack memory)");
    set(&t[2]->node_name, "");
    t[3] = task("t4ddd", "web", 2, TASK_REJECTED, DESIRED_SHUTDOWN, NOW - 90000);
    set(&t[3]->message, "No such image: skiff-test/nope:v1");
    t[4] = task("t5eee", "web", 3, TASK_STARTING, DESIRED_RUNNING, NOW - 1000);
    t[4]->health = HEALTH_STARTING;
    t[5] = task("t0fff", "api", 1, TASK_SHUTDOWN, DESIRED_SHUTDOWN, NOW - 3 * 86400000LL);
    /* a newer task of the same slot comes first: history, newest first */
    t[1]->created_ms = NOW - 7200000;
    capture_start(&c);
    assert_int_equal(fmt_tasks(c.f, t, 6, &o), 0);
    capture_expect(&c,
        "ID             NAME        IMAGE               NODE      DESIRED STATE   "
        "CURRENT STATE                              ERROR\n"
        "t0fff          api.1       skiff-test/web:v1   n1        Shutdown        "
        "Shutdown 3 days ago                        \n"
        "t2aaaaaaaaaa   web.1       skiff-test/web:v1   n1        Running         "
        "Running (healthy) 2 minutes ago            \n"
        "t1bbbbbbbbbb    \\_ web.1   skiff-test/web:v1   n1        Shutdown        "
        "Failed about an hour ago                   \"task: non-zero exit (2)\"\n"
        "t3ccc          web.2       skiff-test/web:v1             Running         "
        "Pending less than a second ago             "
        "\"no suitable node (1 node not ready, 2 n\xE2\x80\xA6\"\n"
        "t4ddd           \\_ web.2   skiff-test/web:v1   n1        Shutdown        "
        "Rejected about a minute ago                \"No such image: skiff-test/nope:v1\"\n"
        "t5eee          web.3       skiff-test/web:v1   n1        Running         "
        "Starting (health: starting) 1 second ago   \n");

    o.no_trunc = 1;
    o.quiet = 1;
    capture_start(&c);
    assert_int_equal(fmt_tasks(c.f, t, 2, &o), 0);
    capture_expect(&c, "t2aaaaaaaaaaaaaaaaaaa\nt1bbbbbbbbbbbbbbbbbbb\n");
    free_all((void **)t, 6);
}

static void test_node_and_stack_ls(void **state)
{
    Node *n[2];
    Service *s[4];
    fmt_opts_t o = { .now_ms = NOW };
    capture_t c;

    for (int i = 0; i < 2; i++) {
        assert_non_null(n[i] = PB_NEW(Node));
        set(&n[i]->id, i ? "nodeid2xxxxxxxxxxxxx" : "nodeid1xxxxxxxxxxxxx");
        set(&n[i]->name, i ? "alpha" : "beta");
        set(&n[i]->address, i ? "127.0.0.2" : "127.0.0.3");
        n[i]->tasks = (uint32_t)(i + 4);
    }
    n[0]->state = NODE_READY;
    n[1]->state = NODE_DOWN;
    n[1]->availability = AVAILABILITY_DRAIN;
    capture_start(&c);
    assert_int_equal(fmt_nodes(c.f, n, 2, &o), 0);
    capture_expect(&c, "ID             HOSTNAME   STATUS    AVAILABILITY   ADDRESS     TASKS\n"
                       "nodeid2xxxxx   alpha      Down      Drain          127.0.0.2   5\n"
                       "nodeid1xxxxx   beta       Ready     Active         127.0.0.3   4\n");
    free_all((void **)n, 2);

    s[0] = service("1", "shop_api", "i", 0, 1);
    s[1] = service("2", "lone", "i", 0, 1);
    s[2] = service("3", "shop_db", "i", 0, 1);
    s[3] = service("4", "blog_web", "i", 0, 1);
    set(&s[0]->spec->stack, "shop");
    set(&s[2]->spec->stack, "shop");
    set(&s[3]->spec->stack, "blog");
    capture_start(&c);
    assert_int_equal(fmt_stacks(c.f, s, 4, &o), 0);
    capture_expect(&c, "NAME      SERVICES\nblog      1\nshop      2\n");
    o.json = 1;
    capture_start(&c);
    assert_int_equal(fmt_stacks(c.f, s, 4, &o), 0);
    capture_expect(&c, "[\n    {\n        \"name\": \"blog\",\n        \"services\": 1\n    },\n"
                       "    {\n        \"name\": \"shop\",\n        \"services\": 2\n    }\n]\n");
    free_all((void **)s, 4);
}

static void test_age(void **state)
{
    static const struct {
        int64_t ago_ms;
        const char *text;
    } cases[] = {
        { -5000, "less than a second ago" },  /* a controller clock ahead of ours */
        { 999, "less than a second ago" },
        { 1000, "1 second ago" },
        { 59999, "59 seconds ago" },
        { 60000, "about a minute ago" },
        { 119999, "about a minute ago" },
        { 120000, "2 minutes ago" },
        { 3599999, "59 minutes ago" },
        { 3600000, "about an hour ago" },
        { 5400000, "2 hours ago" },
        { 47 * 3600000LL, "47 hours ago" },
        { 48 * 3600000LL, "2 days ago" },
        { 14 * 86400000LL, "2 weeks ago" },
        { 60 * 86400000LL, "2 months ago" },
        { 800 * 86400000LL, "2 years ago" },
    };
    char out[64];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(fmt_age(NOW - cases[i].ago_ms, NOW, out, sizeof(out)),
                            cases[i].text);
}

/* ---------------------------------------------------------------- JSON */

static void test_json_spec(void **state)
{
    ServiceSpec *s = spec_new();
    json_t *j, *v;

    assert_non_null(s);
    set(&s->name, "web");
    s->restart->condition = RESTART_ON_FAILURE;
    s->update->order = ORDER_START_FIRST;
    s->update->delay_ms = 90000;
    s->update->max_failure_ratio = 0.5;
    assert_int_equal(pb_push_str(&s->n_env, &s->env, "A=1"), 0);
    j = pbjson_from_message(&s->base);
    assert_non_null(j);
    /* every field, in field order, under its proto name */
    assert_string_equal(json_string_value(json_object_get(j, "name")), "web");
    assert_string_equal(json_string_value(json_object_get(j, "image")), "");
    assert_int_equal(json_array_size(json_object_get(j, "command")), 0);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "env"), 0)), "A=1");
    assert_int_equal(json_integer_value(json_object_get(j, "replicas")), 1);
    v = json_object_get(j, "restart");
    assert_string_equal(json_string_value(json_object_get(v, "condition")), "on-failure");
    assert_int_equal(json_integer_value(json_object_get(v, "delay_ms")), 100);
    assert_string_equal(json_string_value(json_object_get(v, "delay")), "100ms");
    v = json_object_get(j, "update");
    assert_string_equal(json_string_value(json_object_get(v, "order")), "start-first");
    assert_string_equal(json_string_value(json_object_get(v, "failure_action")), "pause");
    assert_string_equal(json_string_value(json_object_get(v, "delay")), "1m30s");
    assert_true(json_real_value(json_object_get(v, "max_failure_ratio")) == 0.5);
    assert_string_equal(json_string_value(json_object_get(j, "stop_grace_period")), "10s");
    assert_int_equal(json_integer_value(json_object_get(j, "force_update")), 0);
    json_decref(j);
    pb_free(s);
}

static void test_json_messages(void **state)
{
    Task *t = task("tid", "web", 1, TASK_RUNNING, DESIRED_RUNNING, 1700000000123LL);
    Envelope env = PB_ENVELOPE_INIT;
    LogsData d = PB_LOGS_DATA_INIT;
    uint8_t bin[] = { 0xff, 0x00, 0x01 };
    Node *n = PB_NEW(Node);
    json_t *j;
    char name[32];

    t->health = HEALTH_UNHEALTHY;
    t->ready_since_ms = 0;
    j = pbjson_from_message(&t->base);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "running");
    assert_string_equal(json_string_value(json_object_get(j, "desired_state")), "running");
    assert_string_equal(json_string_value(json_object_get(j, "health")), "unhealthy");
    /* times are times, in UTC; a zero time gets no readable twin */
    assert_string_equal(json_string_value(json_object_get(j, "state_since")),
                        "2023-11-14T22:13:20.123Z");
    assert_int_equal(json_integer_value(json_object_get(j, "state_since_ms")), 1700000000123LL);
    assert_null(json_object_get(j, "ready_since"));
    assert_non_null(json_object_get(j, "ready_since_ms"));
    json_decref(j);

    /* a oneof shows only the member that is set; bytes that are not UTF-8
     * are base64 */
    d.task_name = "web.1.x";
    d.data.data = bin;
    d.data.len = sizeof(bin);
    env.id = 7;
    env.msg_case = MSG_LOGS_DATA;
    env.logs_data = &d;
    j = pbjson_from_message(&env.base);
    assert_int_equal(json_object_size(j), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "id")), 7);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "logs_data"),
                                                          "data")), "/wAB");
    json_decref(j);

    /* an absent submessage is null; enums without a shared prefix */
    assert_non_null(n);
    n->availability = AVAILABILITY_DRAIN;
    n->state = NODE_DOWN;
    j = pbjson_from_message(&n->base);
    assert_true(json_is_null(json_object_get(j, "resources")));
    assert_string_equal(json_string_value(json_object_get(j, "availability")), "drain");
    assert_string_equal(json_string_value(json_object_get(j, "state")), "down");
    json_decref(j);

    assert_string_equal(pbjson_enum_name(&skiff__v1__update_state__descriptor,
                                         UPDATE_ROLLBACK_STARTED, name, sizeof(name)),
                        "rollback_started");
    assert_string_equal(pbjson_enum_name(&skiff__v1__mount_type__descriptor, MOUNT_BIND, name,
                                         sizeof(name)), "bind");
    assert_null(pbjson_enum_name(&skiff__v1__mount_type__descriptor, 42, name, sizeof(name)));
    assert_true(json_is_null(pbjson_from_message(NULL)));
    assert_true(pbjson_is_time_field("created_ms"));
    assert_false(pbjson_is_time_field("interval_ms"));
    pb_free(t);
    pb_free(n);
}

static void test_json_array(void **state)
{
    Service *s = service("sid", "web", "img", 1, 1);
    json_error_t e;
    json_t *j;
    capture_t c;

    capture_start(&c);
    assert_int_equal(fmt_json(c.f, (void *const *)&s, 1), 0);
    fclose(c.f);
    j = json_loads(c.buf, 0, &e);
    assert_non_null(j);
    assert_true(json_is_array(j));
    assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "id")), "sid");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(j, 0), "update_status"), "state")),
                        "none");
    json_decref(j);
    free(c.buf);

    capture_start(&c);
    assert_int_equal(fmt_json(c.f, NULL, 0), 0);
    capture_expect(&c, "[]\n");
    pb_free(s);
}

/* ------------------------------------------------------------ progress */

typedef struct poll {
    Service *svc;
    Task *tasks[16];
    size_t n;
    int64_t now;  /* when the poll is made */
} poll_t;

static poll_t *poll_new(uint32_t replicas, UpdateState st, const char *msg)
{
    poll_t *p = calloc(1, sizeof(*p));

    assert_non_null(p);
    p->svc = service("sid", "web", "img", 0, replicas);
    p->svc->spec->update->monitor_ms = 0; /* no stability window, but in test_progress_stable */
    p->now = NOW;
    p->svc->update_status->state = st;
    set(&p->svc->update_status->message, msg);
    return p;
}

static Task *poll_task(poll_t *p, const char *id, uint32_t slot, TaskState state)
{
    Task *t = task(id, "web", slot, state, DESIRED_RUNNING, NOW);

    p->tasks[p->n++] = t;
    if (state == TASK_RUNNING)
        p->svc->running_tasks++;
    t->spec_version = p->svc->version;
    return t;
}

static void poll_free(poll_t *p)
{
    free_all((void **)p->tasks, p->n);
    pb_free(p->svc);
    free(p);
}

static enum progress_verdict eval(progress_t *pr, poll_t *p)
{
    return progress_eval(pr, p->svc, p->tasks, p->n, p->now);
}

static void expect_line(progress_t *pr, size_t i, const char *want)
{
    char line[512];

    progress_line(pr, i, 0, line, sizeof(line));
    assert_string_equal(line, want);
}

static void test_progress_create(void **state)
{
    progress_t *pr = progress_create(PROGRESS_CREATE, 0);
    poll_t *p = poll_new(3, UPDATE_NONE, "");
    capture_t c;
    char line[512];

    poll_task(p, "a", 1, TASK_RUNNING);
    poll_task(p, "b", 2, TASK_STARTING);
    Task *pend = poll_task(p, "c", 3, TASK_PENDING);
    set(&pend->message, "no suitable node (3 nodes lack memory)");
    assert_int_equal(eval(pr, p), PROGRESS_WAITING);
    assert_int_equal(progress_lines(pr), 4);
    expect_line(pr, 0, "overall progress: 1 out of 3 tasks");
    expect_line(pr, 1, "1/3: running");
    expect_line(pr, 2, "2/3: starting");
    expect_line(pr, 3, "3/3: pending (no suitable node (3 nodes lack memory))");
    progress_line(pr, 1, 1, line, sizeof(line));
    assert_string_equal(line, "1/3: running   [==================================================>]");
    progress_line(pr, 2, 1, line, sizeof(line));
    assert_string_equal(line, "2/3: starting  [=================================>                 ]");

    /* plain rendering: everything first, then only what changed */
    capture_start(&c);
    progress_render(pr, c.f, 0, 80);
    p->tasks[1]->state = TASK_RUNNING;
    p->svc->running_tasks++;
    assert_int_equal(eval(pr, p), PROGRESS_WAITING);
    progress_render(pr, c.f, 0, 80);
    assert_int_equal(eval(pr, p), PROGRESS_WAITING);
    progress_render(pr, c.f, 0, 80);
    capture_expect(&c, "overall progress: 1 out of 3 tasks\n1/3: running\n2/3: starting\n"
                       "3/3: pending (no suitable node (3 nodes lack memory))\n"
                       "overall progress: 2 out of 3 tasks\n2/3: running\n");

    /* still pending after a long while is no failure: it waits */
    for (int i = 0; i < 10; i++)
        assert_int_equal(eval(pr, p), PROGRESS_WAITING);
    p->tasks[2]->state = TASK_RUNNING;
    p->svc->running_tasks++;
    assert_int_equal(eval(pr, p), PROGRESS_CONVERGED);

    /* on a terminal: redrawn in place, cut to the width */
    capture_start(&c);
    progress_render(pr, c.f, 1, 20);
    progress_render(pr, c.f, 1, 20);
    fclose(c.f);
    assert_non_null(strstr(c.buf, "\033[4A"));
    assert_non_null(strstr(c.buf, "\roverall progress: 3\033[K\n"));
    free(c.buf);
    progress_free(pr);
    poll_free(p);
}

static void test_progress_health_and_scale(void **state)
{
    progress_t *pr = progress_create(PROGRESS_SCALE, 0);
    poll_t *p = poll_new(2, UPDATE_COMPLETED, "update completed");

    poll_task(p, "a", 1, TASK_RUNNING)->health = HEALTH_STARTING;
    poll_task(p, "b", 2, TASK_RUNNING)->health = HEALTH_HEALTHY;
    /* an old task of a slot no longer wanted, still running */
    Task *extra = poll_task(p, "c", 3, TASK_RUNNING);
    extra->desired_state = DESIRED_SHUTDOWN;
    p->svc->running_tasks--;
    /* a scale bumps the service's version, not the tasks' */
    p->svc->version = 5;
    assert_int_equal(eval(pr, p), PROGRESS_WAITING);
    expect_line(pr, 1, "1/2: running (health: starting)");
    p->tasks[0]->health = HEALTH_HEALTHY;
    assert_int_equal(eval(pr, p), PROGRESS_CONVERGED);
    /* the controller counts one too many: not yet */
    p->svc->running_tasks = 3;
    assert_int_equal(eval(pr, p), PROGRESS_WAITING);
    progress_free(pr);
    poll_free(p);

    /* scaled to zero */
    pr = progress_create(PROGRESS_SCALE, 0);
    p = poll_new(0, UPDATE_NONE, "");
    assert_int_equal(eval(pr, p), PROGRESS_CONVERGED);
    expect_line(pr, 0, "overall progress: 0 out of 0 tasks");
    progress_free(pr);
    poll_free(p);
}

static void test_progress_failures(void **state)
{
    progress_t *pr = progress_create(PROGRESS_CREATE, 0);
    poll_t *p = poll_new(1, UPDATE_NONE, "");
    Task *t = poll_task(p, "a", 1, TASK_STARTING);

    /* restarts since the wait began count: three make a failure */
    t->restarts = 1; /* before the wait: the baseline */
    assert_int_equal(eval(pr, p), PROGRESS_WAITING);
    t->restarts = 3;
    set(&t->message, "exited with code 1");
    assert_int_equal(eval(pr, p), PROGRESS_WAITING);
    t->restarts = 4;
    assert_int_equal(eval(pr, p), PROGRESS_FAILED);
    assert_string_equal(progress_message(pr), "task web.1 keeps failing: exited with code 1 "
                                              "(the controller keeps trying; see skiff service "
                                              "ps web)");
    progress_free(pr);
    poll_free(p);

    /* failed tasks replaced in the slot count too; older ones do not */
    pr = progress_create(PROGRESS_CREATE, 0);
    p = poll_new(1, UPDATE_NONE, "");
    poll_task(p, "old", 1, TASK_FAILED)->desired_state = DESIRED_SHUTDOWN;
    assert_int_equal(eval(pr, p), PROGRESS_WAITING);
    for (int i = 0; i < 3; i++) {
        char id[8];
        snprintf(id, sizeof(id), "f%d", i);
        t = poll_task(p, id, 1, TASK_FAILED);
        t->desired_state = DESIRED_SHUTDOWN;
        t->exit_code = 3;
        t->created_ms = NOW + i;
        assert_int_equal(eval(pr, p), i < 2 ? PROGRESS_WAITING : PROGRESS_FAILED);
    }
    assert_string_equal(progress_message(pr), "task web.1 keeps failing: exit code 3 (the "
                                              "controller keeps trying; see skiff service ps web)");
    progress_free(pr);
    poll_free(p);

    /* a task the engine rejected fails the wait at once */
    pr = progress_create(PROGRESS_CREATE, 0);
    p = poll_new(2, UPDATE_NONE, "");
    poll_task(p, "a", 1, TASK_ASSIGNED);
    assert_int_equal(eval(pr, p), PROGRESS_WAITING);
    t = poll_task(p, "r", 2, TASK_REJECTED);
    set(&t->message, "No such image: nope:v1");
    assert_int_equal(eval(pr, p), PROGRESS_FAILED);
    assert_string_equal(progress_message(pr), "task web.2 was rejected: No such image: nope:v1 "
                                              "(the controller keeps trying; see skiff service "
                                              "ps web)");
    progress_free(pr);
    poll_free(p);
}

/* A task that became ready during the wait counts once it stayed ready,
 * without a restart, for the update monitor; one that was ready when the
 * wait began counts at once. */
static void test_progress_stable(void **state)
{
    progress_t *pr = progress_create(PROGRESS_SCALE, 0);
    poll_t *p = poll_new(2, UPDATE_NONE, "");
    Task *t;

    p->svc->spec->update->monitor_ms = 1000;
    poll_task(p, "old", 1, TASK_RUNNING);
    t = poll_task(p, "new", 2, TASK_STARTING);
    assert_int_equal(eval(pr, p), PROGRESS_WAITING);
    t->state = TASK_RUNNING;
    p->svc->running_tasks++;
    p->now += 250;
    assert_int_equal(eval(pr, p), PROGRESS_WAITING);
    expect_line(pr, 0, "overall progress: 2 out of 2 tasks");
    expect_line(pr, 3, "verify: Waiting 1s to verify that tasks are stable...");
    /* it crashed and came back: the window starts again */
    p->now += 900;
    t->restarts = 1;
    assert_int_equal(eval(pr, p), PROGRESS_WAITING);
    p->now += 900;
    assert_int_equal(eval(pr, p), PROGRESS_WAITING);
    /* seen not running in between: again */
    t->state = TASK_STARTING;
    p->now += 250;
    assert_int_equal(eval(pr, p), PROGRESS_WAITING);
    expect_line(pr, 0, "overall progress: 1 out of 2 tasks");
    t->state = TASK_RUNNING;
    p->now += 250;
    assert_int_equal(eval(pr, p), PROGRESS_WAITING);
    p->now += 999;
    assert_int_equal(eval(pr, p), PROGRESS_WAITING);
    p->now += 1;
    assert_int_equal(eval(pr, p), PROGRESS_CONVERGED);
    progress_free(pr);
    poll_free(p);
}

static void test_progress_update(void **state)
{
    progress_t *pr = progress_create(PROGRESS_UPDATE, 1);
    poll_t *p = poll_new(2, UPDATE_UPDATING, "update in progress");

    p->svc->version = 2;
    poll_task(p, "new1", 1, TASK_RUNNING);
    Task *old = poll_task(p, "old2", 2, TASK_RUNNING);
    old->spec_version = 1;
    assert_int_equal(eval(pr, p), PROGRESS_WAITING);
    expect_line(pr, 0, "overall progress: 1 out of 2 tasks");
    expect_line(pr, 1, "update: updating: update in progress");
    expect_line(pr, 3, "2/2: running (not updated yet)");
    /* restarts during an update are the controller's to judge */
    p->tasks[0]->restarts = 9;
    assert_int_equal(eval(pr, p), PROGRESS_WAITING);
    old->spec_version = 2;
    assert_int_equal(eval(pr, p), PROGRESS_WAITING); /* still updating */
    p->svc->update_status->state = UPDATE_COMPLETED;
    assert_int_equal(eval(pr, p), PROGRESS_CONVERGED);
    progress_free(pr);

    /* paused */
    pr = progress_create(PROGRESS_UPDATE, 1);
    p->svc->update_status->state = UPDATE_PAUSED;
    set(&p->svc->update_status->message, "update paused: 1 task failed during the update");
    assert_int_equal(eval(pr, p), PROGRESS_FAILED);
    assert_string_equal(progress_message(pr), "update paused: 1 task failed during the update");
    progress_free(pr);

    /* rolled back: the reason is the one given when the rollback started */
    pr = progress_create(PROGRESS_UPDATE, 1);
    p->svc->update_status->state = UPDATE_ROLLBACK_STARTED;
    set(&p->svc->update_status->message, "rollback started: 1 task failed during the update");
    assert_int_equal(eval(pr, p), PROGRESS_WAITING);
    expect_line(pr, 1, "rollback: rollback_started: rollback started: 1 task failed during the "
                       "update");
    p->svc->update_status->state = UPDATE_ROLLBACK_COMPLETED;
    set(&p->svc->update_status->message, "rollback completed");
    assert_int_equal(eval(pr, p), PROGRESS_FAILED);
    assert_string_equal(progress_message(pr), "update rolled back: 1 task failed during the "
                                              "update");
    progress_free(pr);

    /* for `service rollback`, a completed rollback is success */
    pr = progress_create(PROGRESS_ROLLBACK, 1);
    assert_int_equal(eval(pr, p), PROGRESS_CONVERGED);
    progress_free(pr);

    /* a stale state of an earlier update does not matter to a scale */
    pr = progress_create(PROGRESS_SCALE, 0);
    p->svc->update_status->state = UPDATE_PAUSED;
    assert_int_equal(eval(pr, p), PROGRESS_CONVERGED);
    progress_free(pr);
    poll_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_service_ls),
        cmocka_unit_test(test_service_ps),
        cmocka_unit_test(test_node_and_stack_ls),
        cmocka_unit_test(test_age),
        cmocka_unit_test(test_json_spec),
        cmocka_unit_test(test_json_messages),
        cmocka_unit_test(test_json_array),
        cmocka_unit_test(test_progress_create),
        cmocka_unit_test(test_progress_health_and_scale),
        cmocka_unit_test(test_progress_failures),
        cmocka_unit_test(test_progress_stable),
        cmocka_unit_test(test_progress_update),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
