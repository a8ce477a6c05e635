/* Unit tests of agent/docker (and httpc) against the real engine on
 * /var/run/docker.sock: ping, info, gateway, images, a container's life
 * (create with labels, start, inspect, logs, kill, remove) as calls and as
 * events, a follow log closed while it streams, and errors with the
 * engine's own messages. Skipped when there is no engine or no
 * skiff-test/web:v1 image (tests/images/build.sh makes it). Everything runs
 * on one libuv loop, as in the agent; a watchdog fails a test that hangs.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "docker.h"
#include "engine_json.h"
#include "errors.h"
#include "pbutil.h"
#include "spec.h"

#define SOCK "/var/run/docker.sock"
#define IMAGE "skiff-test/web:v1"

static uv_loop_t *loop;
static httpc_t *http;
static engine_t *engine;
static uv_timer_t watchdog;
static char cluster[32];

/* The last answer of a call, copied out of the callback. */
static struct answer {
    int done;
    int status;
    char message[512];
    char text[128];
    char id[ENGINE_ID_MAX];
    engine_info_t info;
    engine_container_t container;
    size_t n_containers;
    char first_id[ENGINE_ID_MAX];
} ans;

/* Every callback stops the loop, so that run_until looks again. */
static void on_answer(void *arg, const engine_result_t *r)
{
    uv_stop(loop);
    memset(&ans, 0, sizeof(ans));
    ans.done = 1;
    ans.status = r->status;
    snprintf(ans.message, sizeof(ans.message), "%s", r->message ? r->message : "");
    if (r->text)
        snprintf(ans.text, sizeof(ans.text), "%s", r->text);
    if (r->id)
        snprintf(ans.id, sizeof(ans.id), "%s", r->id);
    if (r->info)
        ans.info = *r->info;
    if (r->container)
        ans.container = *r->container;
    ans.n_containers = r->n_containers;
    if (r->n_containers)
        snprintf(ans.first_id, sizeof(ans.first_id), "%s", r->containers[0].id);
}

static void on_watchdog(uv_timer_t *t)
{
    fail_msg("the engine did not answer within 60 s");
}

/* Runs the loop until cond() holds. */
static void run_until(int (*cond)(void))
{
    uv_timer_start(&watchdog, on_watchdog, 60000, 0);
    while (!cond())
        uv_run(loop, UV_RUN_ONCE);
    uv_timer_stop(&watchdog);
}

static int answered(void) { return ans.done; }

/* A call was made (rc is what it returned): waits for its answer. */
static void call_done(int rc)
{
    ans.done = 0;
    assert_int_equal(rc, 0);
    run_until(answered);
}

/* ------------------------------------------------------------ events and logs */

static struct seen {
    int up;
    int start, die, destroy;
    int die_code;
    char logs[4096];
    size_t n_logs;
    int logs_ended, logs_status;
} seen;

static void on_event(void *arg, const engine_event_t *ev)
{
    uv_stop(loop);
    assert_true(ev->labels.ok);
    assert_string_equal(ev->labels.cluster, cluster);
    if (ev->kind == ENGINE_EVENT_START)
        seen.start++;
    if (ev->kind == ENGINE_EVENT_DIE) {
        seen.die++;
        seen.die_code = ev->exit_code;
    }
    if (ev->kind == ENGINE_EVENT_DESTROY)
        seen.destroy++;
}

static void on_state(void *arg, int up, const char *why)
{
    uv_stop(loop);
    seen.up = up;
}

static const engine_events_ops_t ev_ops = { on_event, on_state };

static void on_log(void *arg, int is_stderr, const char *data, size_t len)
{
    uv_stop(loop);
    size_t room = sizeof(seen.logs) - 1 - seen.n_logs;

    if (len > room)
        len = room;
    memcpy(seen.logs + seen.n_logs, data, len);
    seen.n_logs += len;
    seen.logs[seen.n_logs] = '\0';
}

static void on_log_end(void *arg, int status, const char *message)
{
    uv_stop(loop);
    seen.logs_ended = 1;
    seen.logs_status = status;
}

static const engine_logs_ops_t log_ops = { on_log, on_log_end };

static int events_up(void) { return seen.up; }
static int saw_start(void) { return seen.start > 0; }
static int saw_die(void) { return seen.die > 0; }
static int saw_destroy(void) { return seen.destroy > 0; }
static int logs_ended(void) { return seen.logs_ended; }
static int logs_listening(void) { return strstr(seen.logs, "listening") != NULL; }

/* ------------------------------------------------------------ setup */

static void on_closed(void *arg)
{
    uv_stop(loop);
    (*(int *)arg)--;
}

static int setup(void **state)
{
    loop = uv_default_loop();
    uv_timer_init(loop, &watchdog);
    http = httpc_create(loop);
    engine = docker_create(loop, http, SOCK);
    assert_non_null(engine);
    memset(&seen, 0, sizeof(seen));
    snprintf(cluster, sizeof(cluster), "unit%ld", (long)getpid());
    return 0;
}

static int teardown(void **state)
{
    int open = 2;

    engine->ops->close(engine, on_closed, &open);
    httpc_close(http, on_closed, &open);
    uv_close((uv_handle_t *)&watchdog, NULL);
    while (open > 0)
        uv_run(loop, UV_RUN_ONCE);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}

static int engine_usable(void)
{
    char cmd[128];

    if (access(SOCK, W_OK) != 0)
        return 0;
    snprintf(cmd, sizeof(cmd), "docker image inspect %s >/dev/null 2>&1", IMAGE);
    return system(cmd) == 0;
}

/* ------------------------------------------------------------ tests */

static void test_ping_info_gateway_images(void **state)
{
    call_done(engine->ops->ping(engine, on_answer, NULL));
    assert_int_equal(ans.status, 0);
    assert_string_equal(ans.text, "1.41");
    call_done(engine->ops->info(engine, on_answer, NULL));
    assert_int_equal(ans.status, 0);
    assert_true(ans.info.ncpu >= 1);
    assert_true(ans.info.server_version[0]);
    call_done(engine->ops->gateway(engine, on_answer, NULL));
    assert_int_equal(ans.status, 0);
    assert_true(strchr(ans.text, '.') != NULL);
    call_done(engine->ops->image_inspect(engine, IMAGE, on_answer, NULL));
    assert_int_equal(ans.status, 0);
    call_done(engine->ops->image_inspect(engine, "skiff-test/no-such-image:v9", on_answer, NULL));
    assert_int_equal(ans.status, SKIFF_ENOTFOUND);
    /* A pull from a registry that is not there: the engine's message. */
    call_done(engine->ops->image_pull(engine, "127.0.0.1:1/nope:v1", on_answer, NULL));
    assert_int_equal(ans.status, SKIFF_EENGINE);
    assert_non_null(strstr(ans.message, "127.0.0.1:1"));
    assert_int_equal(engine->ops->image_pull(engine, "bad image", on_answer, NULL),
                     SKIFF_EINVAL);
}

static void test_container_life(void **state)
{
    Assignment *a = PB_NEW(Assignment);
    PortConfig *p = PB_NEW(PortConfig);
    char label_c[64], id[ENGINE_ID_MAX], name[64];
    const char *labels[2] = { label_c, "skiff.node=n1" };
    engine_create_t req;
    engine_logs_t *logs;

    snprintf(label_c, sizeof(label_c), "skiff.cluster=%s", cluster);
    pb_set_str(&a->task_id, cluster);
    pb_set_str(&a->service_name, "unitweb");
    a->slot = 1;
    a->spec = spec_new();
    pb_set_str(&a->spec->name, "unitweb");
    pb_set_str(&a->spec->image, IMAGE);
    p->published = 8080;
    p->target = 8080;
    pb_push_msg(&a->spec->n_ports, (void ***)&a->spec->ports, p);
    assert_int_equal(engine_container_name(a, name, sizeof(name)), 0);
    req = (engine_create_t){ a, name, cluster, "n1", "127.0.0.1", "172.17.0.1" };

    assert_int_equal(engine->ops->events_start(engine, labels, 2, &ev_ops, NULL), 0);
    run_until(events_up);

    call_done(engine->ops->create(engine, &req, on_answer, NULL));
    assert_int_equal(ans.status, 0);
    snprintf(id, sizeof(id), "%s", ans.id);
    /* The name is taken now. */
    call_done(engine->ops->create(engine, &req, on_answer, NULL));
    assert_int_equal(ans.status, SKIFF_EEXISTS);
    assert_non_null(strstr(ans.message, "already in use"));

    call_done(engine->ops->start(engine, id, on_answer, NULL));
    assert_int_equal(ans.status, 0);
    run_until(saw_start);
    call_done(engine->ops->start(engine, id, on_answer, NULL)); /* running: fine */
    assert_int_equal(ans.status, 0);
    call_done(engine->ops->inspect(engine, id, on_answer, NULL));
    assert_int_equal(ans.status, 0);
    assert_int_equal(ans.container.state, ENGINE_STATE_RUNNING);
    assert_string_equal(ans.container.labels.task, cluster);
    assert_int_equal(ans.container.n_ports, 1);
    assert_true(ans.container.ports[0].host_port > 0);

    call_done(engine->ops->list(engine, labels, 2, on_answer, NULL));
    assert_int_equal(ans.status, 0);
    assert_int_equal(ans.n_containers, 1);
    assert_string_equal(ans.first_id, id);

    /* Follow the log until the server says it listens, then close it
     * while it streams. */
    assert_int_equal(engine->ops->logs_open(engine, id, 1, 0, 0, &log_ops, NULL, &logs), 0);
    run_until(logs_listening);
    engine->ops->logs_close(engine, logs);
    assert_false(seen.logs_ended);
    /* The whole log, not followed, ends by itself. */
    seen.n_logs = 0;
    seen.logs[0] = '\0';
    assert_int_equal(engine->ops->logs_open(engine, id, 0, 10, 0, &log_ops, NULL, &logs), 0);
    run_until(logs_ended);
    assert_int_equal(seen.logs_status, 0);
    assert_non_null(strstr(seen.logs, "web v1 listening on :8080"));

    call_done(engine->ops->kill(engine, id, "KILL", on_answer, NULL));
    assert_int_equal(ans.status, 0);
    run_until(saw_die);
    assert_int_equal(seen.die_code, 137);
    call_done(engine->ops->stop(engine, id, 1000, on_answer, NULL)); /* stopped: fine */
    assert_int_equal(ans.status, 0);
    call_done(engine->ops->inspect(engine, id, on_answer, NULL));
    assert_int_equal(ans.container.state, ENGINE_STATE_EXITED);
    assert_int_equal(ans.container.exit_code, 137);

    call_done(engine->ops->remove(engine, id, on_answer, NULL));
    assert_int_equal(ans.status, 0);
    run_until(saw_destroy);
    call_done(engine->ops->inspect(engine, id, on_answer, NULL));
    assert_int_equal(ans.status, SKIFF_ENOTFOUND);
    assert_non_null(strstr(ans.message, "No such container"));
    call_done(engine->ops->remove(engine, id, on_answer, NULL));
    assert_int_equal(ans.status, SKIFF_ENOTFOUND);
    engine->ops->events_stop(engine);
    pb_free(a);
}

static void test_unreachable_engine(void **state)
{
    int open = 2;
    engine_t *e = docker_create(loop, http, "/nonexistent/docker.sock");

    assert_non_null(e);
    memset(&ans, 0, sizeof(ans));
    assert_int_equal(e->ops->ping(e, on_answer, NULL), 0);
    run_until(answered);
    assert_int_equal(ans.status, SKIFF_EUNAVAILABLE);
    assert_true(ans.message[0]);
    open = 1;
    e->ops->close(e, on_closed, &open);
    while (open > 0)
        uv_run(loop, UV_RUN_ONCE);
    /* A closed engine's calls in flight never call back. */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ping_info_gateway_images, setup, teardown),
        cmocka_unit_test_setup_teardown(test_container_life, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_engine, setup, teardown),
    };
    int rc;

    if (!engine_usable()) {
        printf("test_engine_docker: no engine at %s or no %s image; skipped\n", SOCK, IMAGE);
        return 0;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    uv_loop_close(uv_default_loop());
    return rc;
}
