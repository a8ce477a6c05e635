/* Unit tests of agent/runner with a fake engine (engine_ops whose calls the
 * test answers, with answers recorded from the real engine in
 * data/engine/) and a fake clock: adoption at start by labels, registration
 * only after the first listing, nothing removed before the first set,
 * containers of other clusters and nodes never touched, creation with the
 * right request, a die event restarting after the policy's delay, a second
 * container of one task removed, invalid assignments rejected, resync when
 * the event stream returns, HTTP probes, and reports (changes and
 * heartbeats). Secrets: a task whose value has not come is rejected; the
 * create request binds the files (on a real tmpfs: root) and holds no
 * value; the files of an adopted task are written; removal takes its dir.
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

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine_json.h"
#include "errors.h"
#include "pbutil.h"
#include "runner.h"
#include "secrets.h"
#include "spec.h"

/* ------------------------------------------------------------ fake engine */

#define MAX_CALLS 64

typedef struct call {
    const char *op;      /* "image_inspect", "create", ... */
    char target[256];    /* id, name or image */
    int64_t grace_ms;
    engine_cb cb;
    void *arg;
    engine_create_t create;
    char *create_body;
} call_t;

static struct fake {
    engine_t base;
    call_t calls[MAX_CALLS];
    int n;
    const engine_events_ops_t *ev_ops;
    void *ev_arg;
    char ev_labels[2][256];
    int events_started;
} fake;

static int64_t clock_now = 1000;
static int changes, readies;
static runner_t *runner;
static secrets_t *store;  /* the runner's secrets, in the tests that have them */
static char tmp[256], secrets_dir[300];

static int64_t fake_mono(void *arg) { return clock_now; }
static int64_t fake_wall(void *arg) { return 1800000000000LL + clock_now; }

static int fake_push(const char *op, const char *target, engine_cb cb, void *arg)
{
    call_t *c;

    assert_true(fake.n < MAX_CALLS);
    c = &fake.calls[fake.n++];
    memset(c, 0, sizeof(*c));
    c->op = op;
    snprintf(c->target, sizeof(c->target), "%s", target ? target : "");
    c->cb = cb;
    c->arg = arg;
    return 0;
}

static int f_ping(engine_t *e, engine_cb cb, void *arg) { return fake_push("ping", "", cb, arg); }
static int f_info(engine_t *e, engine_cb cb, void *arg) { return fake_push("info", "", cb, arg); }
static int f_gateway(engine_t *e, engine_cb cb, void *arg)
{
    return fake_push("gateway", "", cb, arg);
}
static int f_image_inspect(engine_t *e, const char *image, engine_cb cb, void *arg)
{
    return fake_push("image_inspect", image, cb, arg);
}
static int f_image_pull(engine_t *e, const char *image, engine_cb cb, void *arg)
{
    return fake_push("image_pull", image, cb, arg);
}
static int f_create(engine_t *e, const engine_create_t *req, engine_cb cb, void *arg)
{
    fake_push("create", req->name, cb, arg);
    fake.calls[fake.n - 1].create_body = engine_json_create_body(req);
    assert_non_null(fake.calls[fake.n - 1].create_body);
    return 0;
}
static int f_start(engine_t *e, const char *id, engine_cb cb, void *arg)
{
    return fake_push("start", id, cb, arg);
}
static int f_stop(engine_t *e, const char *id, int64_t grace_ms, engine_cb cb, void *arg)
{
    fake_push("stop", id, cb, arg);
    fake.calls[fake.n - 1].grace_ms = grace_ms;
    return 0;
}
static int f_kill(engine_t *e, const char *id, const char *sig, engine_cb cb, void *arg)
{
    return fake_push("kill", id, cb, arg);
}
static int f_remove(engine_t *e, const char *id, engine_cb cb, void *arg)
{
    return fake_push("remove", id, cb, arg);
}
static int f_inspect(engine_t *e, const char *id, engine_cb cb, void *arg)
{
    return fake_push("inspect", id, cb, arg);
}
static int f_list(engine_t *e, const char *const *labels, size_t n, engine_cb cb, void *arg)
{
    assert_int_equal(n, 2);
    assert_string_equal(labels[0], "skiff.cluster=rec");
    assert_string_equal(labels[1], "skiff.node=n1");
    return fake_push("list", "", cb, arg);
}
static int f_events_start(engine_t *e, const char *const *labels, size_t n,
                          const engine_events_ops_t *ops, void *arg)
{
    assert_int_equal(n, 2);
    snprintf(fake.ev_labels[0], sizeof(fake.ev_labels[0]), "%s", labels[0]);
    snprintf(fake.ev_labels[1], sizeof(fake.ev_labels[1]), "%s", labels[1]);
    fake.ev_ops = ops;
    fake.ev_arg = arg;
    fake.events_started = 1;
    return 0;
}
static void f_events_stop(engine_t *e) { fake.events_started = 0; }
static int f_logs_open(engine_t *e, const char *id, int follow, uint32_t tail, int64_t since,
                       const engine_logs_ops_t *ops, void *arg, engine_logs_t **out)
{
    return SKIFF_EINVAL;
}
static void f_logs_close(engine_t *e, engine_logs_t *l) {}
static void f_close(engine_t *e, void (*done)(void *), void *arg)
{
    if (done)
        done(arg);
}

static const engine_ops_t fake_ops = {
    .ping = f_ping, .info = f_info, .gateway = f_gateway, .image_inspect = f_image_inspect,
    .image_pull = f_image_pull, .create = f_create, .start = f_start, .stop = f_stop,
    .kill = f_kill, .remove = f_remove, .inspect = f_inspect, .list = f_list,
    .events_start = f_events_start, .events_stop = f_events_stop, .logs_open = f_logs_open,
    .logs_close = f_logs_close, .close = f_close,
};

/* Takes the oldest pending call, which must be op on target ("" any). */
static call_t take(const char *op, const char *target)
{
    call_t c;

    if (fake.n == 0)
        fail_msg("no pending engine call; wanted %s %s", op, target);
    c = fake.calls[0];
    memmove(&fake.calls[0], &fake.calls[1], (size_t)(fake.n - 1) * sizeof(call_t));
    fake.n--;
    if (strcmp(c.op, op) != 0 || (*target && strcmp(c.target, target) != 0))
        fail_msg("engine call %s %s, wanted %s %s", c.op, c.target, op, target);
    return c;
}

static void answer(call_t *c, int status, const char *message)
{
    engine_result_t r = { 0 };

    r.status = status;
    r.message = message ? message : "";
    c->cb(c->arg, &r);
    free(c->create_body);
}

static void answer_id(call_t *c, const char *id)
{
    engine_result_t r = { 0 };

    r.message = "";
    r.id = id;
    c->cb(c->arg, &r);
    free(c->create_body);
}

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
    assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
    data[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return data;
}

/* A recorded inspect answer, with its id and task label set. */
static void answer_inspect_file(call_t *c, const char *file, const char *id, const char *task)
{
    size_t len;
    char *data = slurp(file, &len);
    engine_container_t ct;
    engine_result_t r = { 0 };

    assert_int_equal(engine_json_parse_inspect(data, len, &ct), 0);
    free(data);
    if (id)
        snprintf(ct.id, sizeof(ct.id), "%s", id);
    if (task)
        snprintf(ct.labels.task, sizeof(ct.labels.task), "%s", task);
    if (ct.state == ENGINE_STATE_RUNNING)
        ct.started_ms = fake_wall(NULL) - 5000;
    r.message = "";
    r.container = &ct;
    c->cb(c->arg, &r);
}

static void answer_list(call_t *c, engine_container_t *v, size_t n)
{
    engine_result_t r = { 0 };

    r.message = "";
    r.containers = v;
    r.n_containers = n;
    c->cb(c->arg, &r);
}

static engine_container_t listed(const char *id, const char *cluster, const char *node,
                                 const char *task, engine_state_t state)
{
    engine_container_t c;

    memset(&c, 0, sizeof(c));
    snprintf(c.id, sizeof(c.id), "%s", id);
    snprintf(c.labels.cluster, sizeof(c.labels.cluster), "%s", cluster);
    snprintf(c.labels.node, sizeof(c.labels.node), "%s", node);
    snprintf(c.labels.task, sizeof(c.labels.task), "%s", task);
    c.labels.ok = 1;
    c.state = state;
    return c;
}

static void emit(engine_event_kind_t kind, const char *id, const char *task, int exit_code)
{
    engine_event_t ev;

    memset(&ev, 0, sizeof(ev));
    ev.kind = kind;
    snprintf(ev.id, sizeof(ev.id), "%s", id);
    strcpy(ev.labels.cluster, "rec");
    strcpy(ev.labels.node, "n1");
    snprintf(ev.labels.task, sizeof(ev.labels.task), "%s", task);
    ev.labels.ok = 1;
    ev.exit_code = exit_code;
    ev.time_ns = fake_wall(NULL) * 1000000;
    fake.ev_ops->on_event(fake.ev_arg, &ev);
}

/* ------------------------------------------------------------ the runner */

static void on_change(void *arg) { changes++; }
static void on_ready(void *arg) { readies++; }
static const runner_ops_t test_ops = { on_change, on_ready };

#define ID1 "94cd07424ebd23b49c19c2f0a595434fa62447cac1911c2fe0997ac0cfb1d259"
#define ID2 "aaaa07424ebd23b49c19c2f0a595434fa62447cac1911c2fe0997ac0cfb1d259"
#define ID3 "bbbb07424ebd23b49c19c2f0a595434fa62447cac1911c2fe0997ac0cfb1d259"
#define ID9 "ffff07424ebd23b49c19c2f0a595434fa62447cac1911c2fe0997ac0cfb1d259"

struct probe_call {
    char url[256];
    health_probe_cb cb;
    void *arg;
    int live;
} probe_call;

static int fake_probe(void *arg, const char *url, int64_t timeout_ms, health_probe_cb cb,
                      void *cb_arg, void **handle)
{
    snprintf(probe_call.url, sizeof(probe_call.url), "%s", url);
    probe_call.cb = cb;
    probe_call.arg = cb_arg;
    probe_call.live = 1;
    *handle = &probe_call;
    return 0;
}

static void fake_probe_cancel(void *arg, void *handle)
{
    probe_call.live = 0;
}

static int setup(void **state)
{
    runner_config_t cfg = {
        .node = "n1", .advertise = "127.0.0.1", .gateway = "172.17.0.1",
        .mono_ms = fake_mono, .wall_ms = fake_wall,
        .probe = fake_probe, .probe_cancel = fake_probe_cancel, .secrets = store,
    };

    memset(&fake, 0, sizeof(fake));
    fake.base.ops = &fake_ops;
    clock_now = 1000;
    changes = readies = 0;
    memset(&probe_call, 0, sizeof(probe_call));
    runner = runner_create(uv_default_loop(), &fake.base, &cfg, &test_ops, NULL);
    assert_non_null(runner);
    return 0;
}

static int teardown(void **state)
{
    for (int i = 0; i < fake.n; i++)
        free(fake.calls[i].create_body);
    runner_close(runner, NULL, NULL);
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    return 0;
}

/* A runner with a secrets store on a tmpfs under a temporary dir (the
 * store mounts it). */
static int setup_secrets(void **state)
{
    snprintf(tmp, sizeof(tmp), "/tmp/skiff-runner-XXXXXX");
    assert_non_null(mkdtemp(tmp));
    snprintf(secrets_dir, sizeof(secrets_dir), "%s/secrets", tmp);
    store = secrets_create(secrets_dir);
    assert_non_null(store);
    return setup(state);
}

static int teardown_secrets(void **state)
{
    teardown(state);
    secrets_free(store);
    store = NULL;
    (void)umount2(secrets_dir, MNT_DETACH);
    rmdir(secrets_dir);
    assert_int_equal(rmdir(tmp), 0);
    return 0;
}

static Assignment *assignment(const char *task, DesiredState desired)
{
    Assignment *a = PB_NEW(Assignment);
    PortConfig *p = PB_NEW(PortConfig);

    pb_set_str(&a->task_id, task);
    pb_set_str(&a->service_name, "web");
    a->slot = 1;
    a->spec_version = 1;
    a->desired_state = desired;
    a->spec = spec_new();
    pb_set_str(&a->spec->name, "web");
    pb_set_str(&a->spec->image, "skiff-test/web:v1");
    p->published = 8080;
    p->target = 8080;
    pb_set_str(&p->protocol, "tcp");
    pb_push_msg(&a->spec->n_ports, (void ***)&a->spec->ports, p);
    pb_push_str(&a->n_hosts, &a->hosts, "db");
    return a;
}

/* Applies a set of these assignments (taken). */
static void apply(uint64_t version, Assignment **tasks, size_t n)
{
    Assignments set = PB_ASSIGNMENTS_INIT;

    set.version = version;
    set.tasks = tasks;
    set.n_tasks = n;
    assert_int_equal(runner_apply(runner, &set), 0);
    for (size_t i = 0; i < n; i++)
        pb_free(tasks[i]);
}

static const TaskStatus *status_of(runner_report_t *rep, const char *task)
{
    for (size_t i = 0; i < rep->n; i++)
        if (strcmp(rep->tasks[i]->task_id, task) == 0)
            return rep->tasks[i];
    return NULL;
}

/* Starts the runner and answers its first listing with these containers
 * (inspecting the ones of this node with the recorded healthy answer). */
static void start_with(engine_container_t *v, size_t n)
{
    call_t c;

    assert_int_equal(runner_start(runner, "rec"), 0);
    assert_true(fake.events_started);
    assert_string_equal(fake.ev_labels[0], "skiff.cluster=rec");
    assert_string_equal(fake.ev_labels[1], "skiff.node=n1");
    assert_int_equal(fake.n, 0); /* nothing before the stream is up */
    fake.ev_ops->on_state(fake.ev_arg, 1, "");
    c = take("list", "");
    answer_list(&c, v, n);
    /* Ready (registration may go) once what was found is inspected. */
    assert_int_equal(readies, n == 0 ? 1 : 0);
}

/* ------------------------------------------------------------ tests */

static void test_adopt_at_start(void **state)
{
    engine_container_t v[3] = {
        listed(ID1, "rec", "n1", "t1", ENGINE_STATE_RUNNING),
        listed(ID2, "other", "n1", "t2", ENGINE_STATE_RUNNING),  /* another cluster */
        listed(ID3, "rec", "n2", "t3", ENGINE_STATE_RUNNING),    /* another node */
    };
    runner_report_t rep;
    const TaskStatus *st;
    call_t c;

    start_with(v, 3);
    assert_false(runner_ready(runner));
    /* Only ours is looked at. */
    c = take("inspect", ID1);
    assert_int_equal(fake.n, 0);
    answer_inspect_file(&c, "inspect_healthy.json", ID1, "t1");
    assert_true(runner_ready(runner));
    assert_int_equal(readies, 1);
    assert_int_equal(runner_report(runner, 0, &rep), 0);
    assert_int_equal(rep.n, 1);
    st = status_of(&rep, "t1");
    assert_non_null(st);
    assert_int_equal(st->state, TASK_RUNNING);
    assert_int_equal(st->health, HEALTH_HEALTHY);
    assert_string_equal(st->container_id, ID1);
    assert_int_equal(st->n_ports, 1);
    assert_int_equal(st->ports[0]->target, 8080);
    runner_report_free(&rep);
    assert_string_equal(runner_container(runner, "t1"), ID1);
    /* No set yet: nothing is stopped or removed, however long we wait. */
    clock_now += 60000;
    runner_step(runner);
    assert_int_equal(fake.n, 0);
}

static void test_first_set_converges(void **state)
{
    engine_container_t v[2] = {
        listed(ID1, "rec", "n1", "t1", ENGINE_STATE_RUNNING),
        listed(ID2, "other", "n1", "t1", ENGINE_STATE_RUNNING),
    };
    Assignment *set[1];
    runner_report_t rep;
    call_t c, inspect;

    start_with(v, 2);
    inspect = take("inspect", ID1);
    answer_inspect_file(&inspect, "inspect_healthy.json", ID1, "t1");

    /* The set has t2, not t1: t2 is created, t1 stopped and removed, and
     * the other cluster's container is never touched. */
    set[0] = assignment("t2", DESIRED_RUNNING);
    set[0]->spec->stop_grace_period_ms = 3000;
    apply(5, set, 1);
    assert_int_equal(runner_version(runner), 5);
    c = take("stop", ID1);
    assert_int_equal(c.grace_ms, 10000); /* a container we never had a spec for */
    {
        call_t img = take("image_inspect", "skiff-test/web:v1");
        answer(&c, 0, NULL);
        emit(ENGINE_EVENT_DIE, ID1, "t1", 0);
        c = take("inspect", ID1);
        answer_inspect_file(&c, "inspect_killed.json", ID1, "t1");
        c = take("remove", ID1);
        answer(&c, 0, NULL);
        assert_null(runner_container(runner, "t1"));
        answer(&img, 0, NULL);
    }
    c = take("create", "web.1.t2");
    assert_non_null(strstr(c.create_body, "\"skiff.cluster\":\"rec\""));
    assert_non_null(strstr(c.create_body, "\"skiff.node\":\"n1\""));
    assert_non_null(strstr(c.create_body, "\"skiff.task\":\"t2\""));
    assert_non_null(strstr(c.create_body, "\"HostIp\":\"127.0.0.1\""));
    assert_non_null(strstr(c.create_body, "\"db:172.17.0.1\""));
    answer_id(&c, ID3);
    c = take("start", ID3);
    answer(&c, 0, NULL);
    c = take("inspect", ID3);
    answer_inspect_file(&c, "inspect_starting.json", ID3, "t2");
    assert_int_equal(fake.n, 0);

    assert_int_equal(runner_report(runner, 0, &rep), 0);
    assert_int_equal(rep.n, 1); /* t1 is gone, not reported */
    assert_int_equal(status_of(&rep, "t2")->state, TASK_RUNNING);
    runner_report_free(&rep);
    /* Nothing changed since that report. */
    assert_int_equal(runner_report(runner, 1, &rep), 0);
    assert_int_equal(rep.n, 0);
    runner_report_free(&rep);
}

static void test_kill_restarts(void **state)
{
    engine_container_t v[1] = { listed(ID1, "rec", "n1", "t1", ENGINE_STATE_RUNNING) };
    Assignment *set[1];
    runner_report_t rep;
    call_t c;
    int before;

    start_with(v, 1);
    c = take("inspect", ID1);
    answer_inspect_file(&c, "inspect_healthy.json", ID1, "t1");
    set[0] = assignment("t1", DESIRED_RUNNING);
    apply(1, set, 1);
    assert_int_equal(fake.n, 0);
    (void)runner_report(runner, 0, &rep);
    runner_report_free(&rep);

    before = changes;
    emit(ENGINE_EVENT_DIE, ID1, "t1", 137);
    assert_true(changes > before); /* reported at once */
    assert_int_equal(runner_report(runner, 1, &rep), 0);
    assert_int_equal(rep.n, 1);
    assert_int_equal(rep.tasks[0]->state, TASK_STARTING);
    assert_int_equal(rep.tasks[0]->restarts, 1);
    assert_int_equal(rep.tasks[0]->exit_code, 137);
    runner_report_free(&rep);
    /* Not before the delay. */
    clock_now += 99;
    runner_step(runner);
    assert_int_equal(fake.n, 0);
    clock_now += 1;
    runner_step(runner);
    c = take("start", ID1);
    answer(&c, 0, NULL);
    c = take("inspect", ID1);
    answer_inspect_file(&c, "inspect_starting.json", ID1, "t1");
    assert_int_equal(runner_report(runner, 1, &rep), 0);
    assert_int_equal(rep.tasks[0]->state, TASK_RUNNING);
    runner_report_free(&rep);
}

static void test_second_container_removed(void **state)
{
    engine_container_t v[2] = {
        listed(ID1, "rec", "n1", "t1", ENGINE_STATE_RUNNING),
        listed(ID2, "rec", "n1", "t1", ENGINE_STATE_RUNNING),
    };
    Assignment *set[1];
    runner_report_t rep;
    call_t c;

    start_with(v, 2);
    c = take("inspect", ID1);
    answer_inspect_file(&c, "inspect_healthy.json", ID1, "t1");
    c = take("inspect", ID2);
    answer_inspect_file(&c, "inspect_healthy.json", ID2, "t1");
    assert_int_equal(fake.n, 0);
    assert_int_equal(runner_report(runner, 0, &rep), 0);
    assert_int_equal(rep.n, 1); /* the stray is not a task */
    runner_report_free(&rep);
    set[0] = assignment("t1", DESIRED_RUNNING);
    apply(1, set, 1);
    c = take("stop", ID2);
    answer(&c, 0, NULL);
    c = take("inspect", ID2);
    answer_inspect_file(&c, "inspect_killed.json", ID2, "t1");
    c = take("remove", ID2);
    answer(&c, 0, NULL);
    assert_int_equal(fake.n, 0);
    assert_string_equal(runner_container(runner, "t1"), ID1);
}

static void test_invalid_assignment_rejected(void **state)
{
    Assignment *set[2];
    runner_report_t rep;
    const TaskStatus *st;

    start_with(NULL, 0);
    set[0] = assignment("t1", DESIRED_RUNNING);
    pb_set_str(&set[0]->spec->image, "");
    set[1] = assignment("t2", DESIRED_RUNNING);
    pb_set_str(&set[1]->hosts[0], "bad host");
    apply(1, set, 2);
    assert_int_equal(fake.n, 0);
    assert_int_equal(runner_report(runner, 0, &rep), 0);
    assert_int_equal(rep.n, 2);
    st = status_of(&rep, "t1");
    assert_int_equal(st->state, TASK_REJECTED);
    assert_string_equal(st->message, "invalid spec: image: required");
    st = status_of(&rep, "t2");
    assert_int_equal(st->state, TASK_REJECTED);
    assert_non_null(strstr(st->message, "host name"));
    runner_report_free(&rep);
}

static void test_pull_refused_rejected(void **state)
{
    Assignment *set[1];
    runner_report_t rep;
    call_t c;

    start_with(NULL, 0);
    set[0] = assignment("t1", DESIRED_RUNNING);
    apply(1, set, 1);
    c = take("image_inspect", "skiff-test/web:v1");
    answer(&c, SKIFF_ENOTFOUND, "no such image");
    c = take("image_pull", "skiff-test/web:v1");
    assert_int_equal(runner_report(runner, 1, &rep), 0);
    assert_int_equal(rep.tasks[0]->state, TASK_PULLING);
    runner_report_free(&rep);
    answer(&c, SKIFF_EENGINE, "filesystem layer verification failed for digest sha256:4a27");
    assert_int_equal(runner_report(runner, 1, &rep), 0);
    assert_int_equal(rep.tasks[0]->state, TASK_REJECTED);
    assert_string_equal(rep.tasks[0]->message,
                        "filesystem layer verification failed for digest sha256:4a27");
    runner_report_free(&rep);
    clock_now += 10000;
    runner_step(runner);
    assert_int_equal(fake.n, 0);
}

static void test_stream_back_resyncs(void **state)
{
    engine_container_t v[1] = { listed(ID1, "rec", "n1", "t1", ENGINE_STATE_RUNNING) };
    Assignment *set[1];
    runner_report_t rep;
    call_t c;

    start_with(v, 1);
    c = take("inspect", ID1);
    answer_inspect_file(&c, "inspect_healthy.json", ID1, "t1");
    set[0] = assignment("t1", DESIRED_RUNNING);
    apply(1, set, 1);
    /* The engine restarts; its containers all stopped meanwhile. */
    fake.ev_ops->on_state(fake.ev_arg, 0, "engine: Connection refused");
    fake.ev_ops->on_state(fake.ev_arg, 1, "");
    c = take("list", "");
    v[0].state = ENGINE_STATE_EXITED;
    answer_list(&c, v, 1);
    c = take("inspect", ID1);
    answer_inspect_file(&c, "inspect_killed.json", ID1, "t1");
    assert_int_equal(runner_report(runner, 1, &rep), 0);
    assert_int_equal(rep.tasks[0]->state, TASK_STARTING);
    assert_int_equal(rep.tasks[0]->restarts, 1);
    runner_report_free(&rep);
    clock_now += 100;
    runner_step(runner);
    c = take("start", ID1);
    answer(&c, 0, NULL);
    c = take("inspect", ID1);
    answer_inspect_file(&c, "inspect_starting.json", ID1, "t1");

    /* A container removed while the stream was down is recreated. */
    fake.ev_ops->on_state(fake.ev_arg, 0, "down");
    fake.ev_ops->on_state(fake.ev_arg, 1, "");
    clock_now += 1;
    c = take("list", "");
    answer_list(&c, NULL, 0);
    assert_int_equal(runner_report(runner, 1, &rep), 0);
    assert_int_equal(rep.tasks[0]->state, TASK_STARTING);
    assert_string_equal(rep.tasks[0]->container_id, "");
    runner_report_free(&rep);
    clock_now += 1000;
    runner_step(runner);
    c = take("image_inspect", "skiff-test/web:v1"); /* adopted: never looked at */
    answer(&c, 0, NULL);
    c = take("create", "web.1.t1");
    answer_id(&c, ID2);
    c = take("start", ID2);
    answer(&c, 0, NULL);
}

static void test_name_taken_adopts_own(void **state)
{
    Assignment *set[1];
    call_t c;

    start_with(NULL, 0);
    set[0] = assignment("t1", DESIRED_RUNNING);
    apply(1, set, 1);
    c = take("image_inspect", "");
    answer(&c, 0, NULL);
    c = take("create", "web.1.t1");
    answer(&c, SKIFF_EEXISTS, "Conflict. The container name \"/web.1.t1\" is already in use");
    c = take("inspect", "web.1.t1");
    answer_inspect_file(&c, "inspect_healthy.json", ID1, "t1");
    assert_string_equal(runner_container(runner, "t1"), ID1);
    assert_int_equal(fake.n, 0);
}

static void test_name_taken_by_foreign(void **state)
{
    Assignment *set[1];
    runner_report_t rep;
    call_t c;

    start_with(NULL, 0);
    set[0] = assignment("t1", DESIRED_RUNNING);
    apply(1, set, 1);
    c = take("image_inspect", "");
    answer(&c, 0, NULL);
    c = take("create", "web.1.t1");
    answer(&c, SKIFF_EEXISTS, "Conflict.");
    c = take("inspect", "web.1.t1");
    /* The recorded container says task t1 of cluster rec, node n1; make it
     * another task's: it must not be touched. */
    answer_inspect_file(&c, "inspect_healthy.json", ID1, "zz");
    assert_int_equal(fake.n, 0);
    assert_null(runner_container(runner, "t1"));
    assert_int_equal(runner_report(runner, 1, &rep), 0);
    assert_int_equal(rep.tasks[0]->state, TASK_REJECTED);
    runner_report_free(&rep);
}

static void test_http_probe(void **state)
{
    Assignment *set[1];
    runner_report_t rep;
    call_t c;

    start_with(NULL, 0);
    set[0] = assignment("t1", DESIRED_RUNNING);
    pb_set_str(&set[0]->spec->health->http_path, "/health");
    apply(1, set, 1);
    c = take("image_inspect", "");
    answer(&c, 0, NULL);
    c = take("create", "");
    answer_id(&c, ID1);
    c = take("start", ID1);
    answer(&c, 0, NULL);
    c = take("inspect", ID1);
    answer_inspect_file(&c, "inspect_exited_1.json", ID1, "t1"); /* it died at once */
    assert_false(probe_call.live);
    clock_now += 100;
    runner_step(runner);
    c = take("start", ID1);
    answer(&c, 0, NULL);
    c = take("inspect", ID1);
    answer_inspect_file(&c, "inspect_healthy.json", ID1, "t1");
    assert_int_equal(runner_report(runner, 1, &rep), 0);
    assert_int_equal(rep.tasks[0]->state, TASK_RUNNING);
    assert_int_equal(rep.tasks[0]->health, HEALTH_STARTING);
    runner_report_free(&rep);
    clock_now += HEALTH_FAST_PROBE_MS;
    runner_step(runner);
    assert_true(probe_call.live);
    assert_string_equal(probe_call.url, "http://127.0.0.1:32840/health");
    probe_call.live = 0;
    probe_call.cb(probe_call.arg, 1, "");
    assert_int_equal(runner_report(runner, 1, &rep), 0);
    assert_int_equal(rep.tasks[0]->health, HEALTH_HEALTHY);
    runner_report_free(&rep);

    /* The engine goes away (it stops its containers as it goes): probes
     * that fail then do not count, and none start until it is back. */
    clock_now += 5000;
    runner_step(runner);
    assert_true(probe_call.live);
    fake.ev_ops->on_state(fake.ev_arg, 0, "engine: Connection refused");
    probe_call.live = 0;
    probe_call.cb(probe_call.arg, 0, "Connection refused");
    for (int i = 0; i < 10; i++) {
        clock_now += 5000;
        runner_step(runner);
        assert_false(probe_call.live);
    }
    assert_int_equal(runner_report(runner, 1, &rep), 0);
    assert_int_equal(rep.n, 0); /* still healthy, as far as anyone knows */
    runner_report_free(&rep);
    fake.ev_ops->on_state(fake.ev_arg, 1, "");
    c = take("list", "");
    {
        engine_container_t v[1] = { listed(ID1, "rec", "n1", "t1", ENGINE_STATE_RUNNING) };
        v[0].n_ports = 1;
        v[0].ports[0].target = 8080;
        v[0].ports[0].host_port = 32840;
        answer_list(&c, v, 1);
    }
    clock_now += HEALTH_FAST_PROBE_MS;
    runner_step(runner);
    assert_true(probe_call.live); /* probing again */
}


/* ------------------------------------------------------------ secrets */

static void put_value(SecretKind kind, const char *id, const char *value)
{
    SecretData d = PB_SECRET_DATA_INIT;

    d.id = (char *)id;
    d.kind = kind;
    d.data.data = (uint8_t *)value;
    d.data.len = strlen(value);
    assert_int_equal(secrets_put(store, &d), 0);
}

static Assignment *with_secret(Assignment *a, const char *name, const char *id)
{
    SecretRef *r = PB_NEW(SecretRef);

    pb_set_str(&r->name, name);
    pb_set_str(&r->id, id);
    pb_set_str(&r->target, name);
    pb_push_msg(&a->spec->n_secrets, (void ***)&a->spec->secrets, r);
    return a;
}

static void file_eq(const char *path, const char *want)
{
    char buf[256] = "";
    FILE *f = fopen(path, "r");
    size_t n;

    assert_non_null(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

static void test_secret_missing_rejected(void **state)
{
    Assignment *set[1];
    runner_report_t rep;

    start_with(NULL, 0);
    set[0] = with_secret(assignment("t1", DESIRED_RUNNING), "db_password", "s1");
    apply(1, set, 1);
    assert_int_equal(fake.n, 0); /* not even the image is looked at */
    assert_int_equal(runner_report(runner, 0, &rep), 0);
    assert_int_equal(rep.n, 1);
    assert_int_equal(rep.tasks[0]->state, TASK_REJECTED);
    assert_string_equal(rep.tasks[0]->message,
                        "secret db_password not received from the controller");
    runner_report_free(&rep);
    /* A ref that is not one is rejected at the edge too. */
    set[0] = with_secret(assignment("t2", DESIRED_RUNNING), "../x", "s1");
    apply(2, set, 1);
    assert_int_equal(fake.n, 0);
    assert_int_equal(runner_report(runner, 1, &rep), 0);
    assert_int_equal(rep.tasks[0]->state, TASK_REJECTED);
    assert_non_null(strstr(rep.tasks[0]->message, "invalid spec: secrets[0]: ../x is not a valid"));
    runner_report_free(&rep);
}

static void test_secret_files_bound_and_removed(void **state)
{
    Assignment *set[1];
    char path[400], want[500];
    struct stat st;
    call_t c;

    if (geteuid() != 0)
        skip();
    start_with(NULL, 0);
    put_value(SECRET_KIND_SECRET, "s1", "hunter2-value");
    put_value(SECRET_KIND_SECRET, "s9", "unused-value");
    set[0] = with_secret(assignment("t1", DESIRED_RUNNING), "db_password", "s1");
    apply(1, set, 1);
    /* What no task uses is dropped once the set is applied. */
    assert_int_equal(secrets_count(store), 1);
    assert_true(secrets_has(store, SECRET_KIND_SECRET, "s1"));
    c = take("image_inspect", "skiff-test/web:v1");
    answer(&c, 0, NULL);
    c = take("create", "web.1.t1");
    snprintf(want, sizeof(want),
             "{\"Type\":\"bind\",\"Source\":\"%s/t1/secret-0\","
             "\"Target\":\"/run/secrets/db_password\",\"ReadOnly\":true}",
             secrets_dir);
    assert_non_null(strstr(c.create_body, want));
    assert_null(strstr(c.create_body, "hunter2"));
    snprintf(path, sizeof(path), "%s/t1/secret-0", secrets_dir);
    file_eq(path, "hunter2-value");
    answer_id(&c, ID3);
    c = take("start", ID3);
    answer(&c, 0, NULL);
    c = take("inspect", ID3);
    answer_inspect_file(&c, "inspect_starting.json", ID3, "t1");
    assert_int_equal(fake.n, 0);

    /* Out of the set: stopped, removed, and its dir goes with it. */
    apply(2, NULL, 0);
    assert_int_equal(secrets_count(store), 0);
    c = take("stop", ID3);
    answer(&c, 0, NULL);
    emit(ENGINE_EVENT_DIE, ID3, "t1", 0);
    c = take("inspect", ID3);
    answer_inspect_file(&c, "inspect_killed.json", ID3, "t1");
    assert_int_equal(stat(path, &st), 0); /* not before the container is gone */
    c = take("remove", ID3);
    answer(&c, 0, NULL);
    snprintf(path, sizeof(path), "%s/t1", secrets_dir);
    assert_int_equal(stat(path, &st), -1);
    assert_int_equal(errno, ENOENT);
}

/* A store whose dir cannot be made. */
static int setup_unwritable(void **state)
{
    snprintf(tmp, sizeof(tmp), "/tmp/skiff-runner-XXXXXX");
    assert_non_null(mkdtemp(tmp));
    snprintf(secrets_dir, sizeof(secrets_dir), "%s/missing/secrets", tmp);
    store = secrets_create(secrets_dir);
    assert_non_null(store);
    return setup(state);
}

/* Files that cannot be written (here: the dir cannot be made; as root a
 * tmpfs that cannot be mounted is the same path): the task is rejected at
 * create, with the dir and the error, and no container is made. */
static void test_secret_files_unwritable_rejected(void **state)
{
    Assignment *set[1];
    runner_report_t rep;
    char want[400];
    call_t c;

    start_with(NULL, 0);
    put_value(SECRET_KIND_SECRET, "s1", "hunter2-value");
    set[0] = with_secret(assignment("t1", DESIRED_RUNNING), "db_password", "s1");
    apply(1, set, 1);
    c = take("image_inspect", "skiff-test/web:v1");
    answer(&c, 0, NULL);
    assert_int_equal(fake.n, 0); /* no create */
    assert_int_equal(runner_report(runner, 1, &rep), 0);
    assert_int_equal(rep.n, 1);
    assert_int_equal(rep.tasks[0]->state, TASK_REJECTED);
    snprintf(want, sizeof(want), "cannot make %s: No such file or directory", secrets_dir);
    assert_string_equal(rep.tasks[0]->message, want);
    runner_report_free(&rep);
}

/* An agent restarted: the container runs, the values come again before
 * the set, and the files are written again, the container left alone. */
static void test_secret_adopted_rewritten(void **state)
{
    engine_container_t v[1] = { listed(ID1, "rec", "n1", "t1", ENGINE_STATE_RUNNING) };
    Assignment *set[1];
    char path[400];
    call_t c;

    if (geteuid() != 0)
        skip();
    start_with(v, 1);
    c = take("inspect", ID1);
    answer_inspect_file(&c, "inspect_healthy.json", ID1, "t1");
    /* A dir of a task that is gone, left by the last run. */
    assert_int_equal(mkdir(secrets_dir, 0700), 0);
    assert_int_equal(mount("tmpfs", secrets_dir, "tmpfs", 0, "mode=0700"), 0);
    snprintf(path, sizeof(path), "%s/old", secrets_dir);
    assert_int_equal(mkdir(path, 0700), 0);
    put_value(SECRET_KIND_SECRET, "s1", "hunter2-value");
    set[0] = with_secret(assignment("t1", DESIRED_RUNNING), "db_password", "s1");
    apply(1, set, 1);
    assert_int_equal(fake.n, 0);
    assert_true(secrets_mounted(store)); /* the one found there */
    snprintf(path, sizeof(path), "%s/t1/secret-0", secrets_dir);
    file_eq(path, "hunter2-value");
    snprintf(path, sizeof(path), "%s/old", secrets_dir);
    assert_int_equal(access(path, F_OK), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_adopt_at_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_set_converges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_restarts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_container_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_assignment_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pull_refused_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_back_resyncs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_taken_adopts_own, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_taken_by_foreign, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_probe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_missing_rejected, setup_secrets,
                                        teardown_secrets),
        cmocka_unit_test_setup_teardown(test_secret_files_bound_and_removed, setup_secrets,
                                        teardown_secrets),
        cmocka_unit_test_setup_teardown(test_secret_adopted_rewritten, setup_secrets,
                                        teardown_secrets),
        cmocka_unit_test_setup_teardown(test_secret_files_unwritable_rejected,
                                        setup_unwritable, teardown_secrets),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);

    uv_loop_close(uv_default_loop());
    return rc;
}
