/* A randomized test of agent/runner at its edges: assignment sets that are
 * valid sets with bytes flipped (as a broken or hostile controller could
 * send them), engine answers and events in any order with any status,
 * and a clock that jumps; secret and config values pushed with bytes
 * flipped too (their files on a tmpfs under a temporary dir when run as
 * root). Nothing may crash or leak (run under ASan), every
 * report must be well formed, and no container of another cluster or node
 * may ever be touched.
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

#include "engine_json.h"
#include "errors.h"
#include "log.h"
#include "pbutil.h"
#include "runner.h"
#include "secrets.h"
#include "spec.h"

#include <sys/mount.h>
#include <unistd.h>

#define MAX_CALLS 256
#define FOREIGN_ID "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0"

typedef struct call {
    engine_cb cb;
    void *arg;
    char op[16];
} call_t;

static struct {
    engine_t base;
    call_t calls[MAX_CALLS];
    int n;
    const engine_events_ops_t *ev;
    void *ev_arg;
    int touched_foreign;
} fk;

static int64_t clock_ms = 1000;
static unsigned seed = 7;

static int64_t f_mono(void *a) { return clock_ms; }
static int64_t f_wall(void *a) { return 1800000000000LL + clock_ms; }

static int push(const char *op, const char *target, engine_cb cb, void *arg)
{
    if (target && strcmp(target, FOREIGN_ID) == 0)
        fk.touched_foreign = 1;
    if (fk.n == MAX_CALLS)
        return -ENOMEM; /* fails at once, as a real engine call may */
    fk.calls[fk.n].cb = cb;
    fk.calls[fk.n].arg = arg;
    snprintf(fk.calls[fk.n].op, sizeof(fk.calls[fk.n].op), "%s", op);
    fk.n++;
    return 0;
}

static int f_ping(engine_t *e, engine_cb cb, void *arg) { return push("ping", NULL, cb, arg); }
static int f_info(engine_t *e, engine_cb cb, void *arg) { return push("info", NULL, cb, arg); }
static int f_gw(engine_t *e, engine_cb cb, void *arg) { return push("gw", NULL, cb, arg); }
static int f_img(engine_t *e, const char *i, engine_cb cb, void *arg)
{
    return push("image", NULL, cb, arg);
}
static int f_pull(engine_t *e, const char *i, engine_cb cb, void *arg)
{
    return push("pull", NULL, cb, arg);
}
static int f_create(engine_t *e, const engine_create_t *req, engine_cb cb, void *arg)
{
    char *body = engine_json_create_body(req);

    if (!body)
        return SKIFF_EINVAL;
    free(body);
    return push("create", NULL, cb, arg);
}
static int f_start(engine_t *e, const char *id, engine_cb cb, void *arg)
{
    return push("start", id, cb, arg);
}
static int f_stop(engine_t *e, const char *id, int64_t g, engine_cb cb, void *arg)
{
    return push("stop", id, cb, arg);
}
static int f_kill(engine_t *e, const char *id, const char *s, engine_cb cb, void *arg)
{
    return push("kill", id, cb, arg);
}
static int f_remove(engine_t *e, const char *id, engine_cb cb, void *arg)
{
    return push("remove", id, cb, arg);
}
static int f_inspect(engine_t *e, const char *id, engine_cb cb, void *arg)
{
    return push("inspect", id, cb, arg);
}
static int f_list(engine_t *e, const char *const *l, size_t n, engine_cb cb, void *arg)
{
    return push("list", NULL, cb, arg);
}
static int f_events(engine_t *e, const char *const *l, size_t n, const engine_events_ops_t *ops,
                    void *arg)
{
    fk.ev = ops;
    fk.ev_arg = arg;
    return 0;
}
static void f_events_stop(engine_t *e) {}
static int f_logs(engine_t *e, const char *id, int f, uint32_t t, int64_t since,
                  const engine_logs_ops_t *o, void *arg, engine_logs_t **out)
{
    return SKIFF_EINVAL;
}
static void f_logs_close(engine_t *e, engine_logs_t *l) {}
static void f_close(engine_t *e, void (*done)(void *), void *arg) {}

static const engine_ops_t fops = {
    f_ping, f_info, f_gw, f_img, f_pull, f_create, f_start, f_stop, f_kill, f_remove,
    f_inspect, f_list, f_events, f_events_stop, f_logs, f_logs_close, f_close,
};

static const char *const ids[] = {
    "1111111111111111111111111111111111111111111111111111111111111111",
    "2222222222222222222222222222222222222222222222222222222222222222",
    "3333333333333333333333333333333333333333333333333333333333333333",
};
static const char *const tasks[] = { "ta", "tb", "tc", "td", "te", "tf", "tg", "th" };

static engine_container_t random_container(void)
{
    engine_container_t c;

    memset(&c, 0, sizeof(c));
    strcpy(c.id, ids[rand_r(&seed) % 3]);
    strcpy(c.labels.cluster, "c1");
    strcpy(c.labels.node, "n1");
    strcpy(c.labels.task, tasks[rand_r(&seed) % 8]);
    c.labels.ok = 1;
    c.state = (engine_state_t)(rand_r(&seed) % 8);
    c.exit_code = rand_r(&seed) % 3 ? 0 : 137;
    c.health = (engine_health_t)(rand_r(&seed) % 4);
    c.started_ms = f_wall(NULL) - rand_r(&seed) % 20000;
    c.n_ports = rand_r(&seed) % 2;
    c.ports[0].target = 8080;
    c.ports[0].host_port = 30000 + rand_r(&seed) % 100;
    return c;
}

/* Answers one pending call, at random, with a random outcome. */
static void answer_one(void)
{
    static const int statuses[] = { 0, 0, 0, SKIFF_ENOTFOUND, SKIFF_EENGINE, SKIFF_EUNAVAILABLE,
                                    SKIFF_EEXISTS, SKIFF_ETIMEDOUT };
    int i = rand_r(&seed) % fk.n;
    call_t c = fk.calls[i];
    engine_result_t r = { 0 };
    engine_container_t ct = random_container(), list[3];

    fk.calls[i] = fk.calls[--fk.n];
    r.status = statuses[rand_r(&seed) % 8];
    r.message = r.status ? "the engine says no" : "";
    if (strcmp(c.op, "create") == 0 && r.status == 0)
        r.id = ids[rand_r(&seed) % 3];
    if (strcmp(c.op, "inspect") == 0 && r.status == 0)
        r.container = &ct;
    if (strcmp(c.op, "list") == 0 && r.status == 0) {
        size_t n = (size_t)(rand_r(&seed) % 4);
        for (size_t k = 0; k < n && k < 3; k++)
            list[k] = random_container();
        if (n == 3) {
            /* Another cluster's container, on this node. */
            strcpy(list[2].id, FOREIGN_ID);
            strcpy(list[2].labels.cluster, "c2");
        }
        r.containers = list;
        r.n_containers = n;
    }
    c.cb(c.arg, &r);
}

static void random_event(runner_t *r)
{
    engine_event_t ev;

    memset(&ev, 0, sizeof(ev));
    ev.kind = (engine_event_kind_t)(rand_r(&seed) % 6);
    strcpy(ev.id, rand_r(&seed) % 8 ? ids[rand_r(&seed) % 3] : FOREIGN_ID);
    strcpy(ev.labels.cluster, strcmp(ev.id, FOREIGN_ID) ? "c1" : "c2");
    strcpy(ev.labels.node, "n1");
    strcpy(ev.labels.task, tasks[rand_r(&seed) % 8]);
    ev.labels.ok = 1;
    ev.exit_code = rand_r(&seed) % 2 ? 0 : 1;
    ev.health = (engine_health_t)(rand_r(&seed) % 4);
    runner_on_event(r, &ev);
}

/* A value, packed. */
static uint8_t *valid_value(SecretKind kind, const char *id, size_t *len)
{
    SecretData d = PB_SECRET_DATA_INIT;
    uint8_t *buf;

    d.id = (char *)id;
    d.kind = kind;
    d.data.data = (uint8_t *)"hunter2-value";
    d.data.len = 13;
    *len = protobuf_c_message_get_packed_size(&d.base);
    buf = malloc(*len);
    protobuf_c_message_pack(&d.base, buf);
    return buf;
}

/* Pushes one of the values, maybe with bytes flipped. */
static void push_value(secrets_t *store, uint8_t *const packed[2], const size_t lens[2])
{
    int which = rand_r(&seed) % 2;
    uint8_t buf[64];
    SecretData *d;

    memcpy(buf, packed[which], lens[which]);
    for (int k = rand_r(&seed) % 3; k > 0; k--)
        buf[(size_t)rand_r(&seed) % lens[which]] = (uint8_t)rand_r(&seed);
    d = (SecretData *)protobuf_c_message_unpack(&PB_DESC_SecretData, NULL, lens[which], buf);
    if (d) {
        (void)secrets_put(store, d);
        pb_free(d);
    }
}

/* A valid set, packed. */
static uint8_t *valid_set(size_t *len)
{
    Assignments *set = PB_NEW(Assignments);
    uint8_t *buf;

    set->version = 3;
    for (int i = 0; i < 3; i++) {
        Assignment *a = PB_NEW(Assignment);
        PortConfig *p = PB_NEW(PortConfig);
        pb_set_str(&a->task_id, tasks[i]);
        pb_set_str(&a->service_name, "web");
        a->slot = (uint32_t)i + 1;
        a->desired_state = i == 2 ? DESIRED_SHUTDOWN : DESIRED_RUNNING;
        a->spec = spec_new();
        pb_set_str(&a->spec->name, "web");
        pb_set_str(&a->spec->image, "skiff-test/web:v1");
        p->published = 80;
        p->target = 8080;
        pb_set_str(&p->protocol, "tcp");
        pb_push_msg(&a->spec->n_ports, (void ***)&a->spec->ports, p);
        pb_set_str(&a->spec->health->http_path, "/health");
        pb_push_str(&a->n_hosts, &a->hosts, "db");
        if (i < 2) {
            SecretRef *sr = PB_NEW(SecretRef), *cr = PB_NEW(SecretRef);
            pb_set_str(&sr->name, "db_password");
            pb_set_str(&sr->id, "s1");
            pb_set_str(&sr->target, "db_password");
            sr->uid = 1000;
            sr->mode = 0400;
            pb_push_msg(&a->spec->n_secrets, (void ***)&a->spec->secrets, sr);
            pb_set_str(&cr->name, "app.conf");
            pb_set_str(&cr->id, "c1");
            pb_set_str(&cr->target, "/etc/app.conf");
            pb_push_msg(&a->spec->n_configs, (void ***)&a->spec->configs, cr);
        }
        pb_push_msg(&set->n_tasks, (void ***)&set->tasks, a);
    }
    *len = protobuf_c_message_get_packed_size(&set->base);
    buf = malloc(*len);
    protobuf_c_message_pack(&set->base, buf);
    pb_free(set);
    return buf;
}

static int probe(void *arg, const char *url, int64_t t, health_probe_cb cb, void *cb_arg,
                 void **h)
{
    return -ENOMEM; /* a probe that cannot start: a failure, at once */
}

static void test_random_life(void **state)
{
    runner_config_t cfg = { .node = "n1", .advertise = "127.0.0.1", .gateway = "172.17.0.1",
                            .mono_ms = f_mono, .wall_ms = f_wall, .probe = probe };
    static const runner_ops_t ops = { NULL, NULL };
    size_t len, value_lens[2];
    uint8_t *packed = valid_set(&len), *mutated = malloc(len), *values[2];
    char tmp[64] = "/tmp/skiff-fuzz-XXXXXX", dir[96];
    secrets_t *store;
    runner_t *r;

    values[0] = valid_value(SECRET_KIND_SECRET, "s1", &value_lens[0]);
    values[1] = valid_value(SECRET_KIND_CONFIG, "c1", &value_lens[1]);
    assert_true(value_lens[0] <= 64 && value_lens[1] <= 64);
    assert_non_null(mkdtemp(tmp));
    snprintf(dir, sizeof(dir), "%s/secrets", tmp);
    store = secrets_create(dir);
    assert_non_null(store);
    cfg.secrets = store;
    memset(&fk, 0, sizeof(fk));
    fk.base.ops = &fops;
    r = runner_create(uv_default_loop(), &fk.base, &cfg, &ops, NULL);
    assert_non_null(r);
    assert_int_equal(runner_start(r, "c1"), 0);
    fk.ev->on_state(fk.ev_arg, 1, "");

    for (int round = 0; round < 20000; round++) {
        int what = rand_r(&seed) % 11;
        if (what == 10) {
            push_value(store, values, value_lens);
        } else if (what == 0) {
            Assignments *set;
            memcpy(mutated, packed, len);
            for (int k = rand_r(&seed) % 4; k > 0; k--)
                mutated[(size_t)rand_r(&seed) % len] = (uint8_t)rand_r(&seed);
            set = (Assignments *)protobuf_c_message_unpack(&PB_DESC_Assignments, NULL,
                                                          rand_r(&seed) % 5 ? len : len / 2,
                                                          mutated);
            if (set) {
                /* Tasks come and go between sets. */
                for (size_t i = 0; i < set->n_tasks; i++)
                    if (rand_r(&seed) % 3 == 0)
                        pb_set_str(&set->tasks[i]->task_id, tasks[rand_r(&seed) % 8]);
                runner_apply(r, set);
                pb_free(set);
            }
        } else if (what <= 5 && fk.n > 0) {
            answer_one();
        } else if (what == 6) {
            random_event(r);
        } else if (what == 7) {
            clock_ms += rand_r(&seed) % 3000;
            runner_step(r);
        } else if (what == 8) {
            runner_report_t rep;
            if (runner_report(r, rand_r(&seed) % 2, &rep) == 0) {
                for (size_t i = 0; i < rep.n; i++) {
                    assert_non_null(rep.tasks[i]->task_id);
                    assert_true(rep.tasks[i]->state <= TASK_REMOVED);
                    assert_true(strlen(rep.tasks[i]->message) < 256);
                }
                runner_report_free(&rep);
            }
        } else if (what == 9 && rand_r(&seed) % 50 == 0) {
            fk.ev->on_state(fk.ev_arg, 0, "dropped");
            fk.ev->on_state(fk.ev_arg, 1, "");
        }
        assert_false(fk.touched_foreign);
    }
    runner_close(r, NULL, NULL);
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    free(packed);
    free(mutated);
    free(values[0]);
    free(values[1]);
    secrets_free(store);
    (void)umount2(dir, MNT_DETACH);
    rmdir(dir);
    assert_int_equal(rmdir(tmp), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_life),
    };
    int rc;

    log_init("test", LOG_ERROR); /* the runner logs every turn of a task's life */
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    uv_loop_close(uv_default_loop());
    return rc;
}
