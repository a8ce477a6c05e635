/* Unit tests of agent/runtask, the runner's pure decisions about one task:
 * the way to running (image, pull, create, start), rejection, adoption,
 * removal of what is not assigned only after the first set, drain then
 * stop, the restart policy (delays doubling to the cap and reset after a
 * long run, max attempts within a window, conditions, give-up to failed or
 * complete), OOM kills and unhealthy containers as failures, and the races
 * between events and answers. Time is a number the tests move.
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

#include "errors.h"
#include "pbutil.h"
#include "runtask.h"
#include "spec.h"

#define CID "4f1d3c2b4f1d3c2b4f1d3c2b4f1d3c2b4f1d3c2b4f1d3c2b4f1d3c2b4f1d3c2b"
#define WALL0 1800000000000LL

static int64_t now; /* monotonic ms */

static int64_t wall(void)
{
    return WALL0 + now;
}

static Assignment *assignment(const char *task, DesiredState desired)
{
    Assignment *a = PB_NEW(Assignment);

    pb_set_str(&a->task_id, task);
    pb_set_str(&a->service_name, "web");
    a->slot = 1;
    a->spec_version = 1;
    a->desired_state = desired;
    a->spec = spec_new();
    pb_set_str(&a->spec->name, "web");
    pb_set_str(&a->spec->image, "skiff-test/web:v1");
    return a;
}

static engine_result_t ok(void)
{
    engine_result_t r = { 0 };
    r.message = "";
    return r;
}

static engine_result_t refused(int status, const char *msg)
{
    engine_result_t r = { 0 };
    r.status = status;
    r.message = msg;
    return r;
}

static engine_container_t container(engine_state_t state, int exit_code)
{
    engine_container_t c;

    memset(&c, 0, sizeof(c));
    strcpy(c.id, CID);
    c.state = state;
    c.exit_code = exit_code;
    if (state == ENGINE_STATE_RUNNING) {
        c.n_ports = 1;
        c.ports[0].target = 8080;
        c.ports[0].host_port = 32768;
        c.started_ms = wall();
    }
    return c;
}

static engine_event_t event(engine_event_kind_t kind, int exit_code)
{
    engine_event_t ev;

    memset(&ev, 0, sizeof(ev));
    ev.kind = kind;
    strcpy(ev.id, CID);
    ev.exit_code = exit_code;
    ev.time_ns = wall() * 1000000;
    return ev;
}

/* Asserts the next action is act and begins it. */
static runtask_action_t expect(runtask_t *t, runtask_act_t act, int set_seen)
{
    runtask_action_t a = runtask_next(t, now, set_seen);

    if (a.act != act)
        fail_msg("next action %d, wanted %d (state %s, message '%s')", a.act, act,
                 runtask_state_name(t->state), t->message);
    if (act != RT_NONE && act != RT_WAIT && act != RT_FORGET)
        runtask_begin(t, &a, now, wall());
    return a;
}

static void done(runtask_t *t, engine_result_t r)
{
    runtask_done(t, &r, now, wall());
}

static void done_inspect(runtask_t *t, engine_state_t state, int exit_code)
{
    engine_container_t c = container(state, exit_code);
    engine_result_t r = ok();

    r.container = &c;
    runtask_done(t, &r, now, wall());
}

/* A task from nothing to running. */
static runtask_t *running_task(Assignment *a)
{
    runtask_t *t = runtask_create(a->task_id);
    engine_result_t r = ok();

    runtask_assign(t, a, now, wall());
    expect(t, RT_IMAGE, 1);
    done(t, ok());
    expect(t, RT_CREATE, 1);
    assert_int_equal(t->state, TASK_STARTING);
    r.id = CID;
    done(t, r);
    expect(t, RT_START, 1);
    done(t, ok());
    expect(t, RT_INSPECT, 1);
    done_inspect(t, ENGINE_STATE_RUNNING, 0);
    assert_int_equal(t->state, TASK_RUNNING);
    expect(t, RT_NONE, 1);
    t->dirty = 0;
    return t;
}

static void die(runtask_t *t, int code)
{
    engine_event_t ev = event(ENGINE_EVENT_DIE, code);
    runtask_event(t, &ev, now, wall());
}

/* After a death: a restart is due after exactly delay ms. */
static void expect_restart_after(runtask_t *t, int64_t delay)
{
    runtask_action_t a = runtask_next(t, now, 1);

    assert_int_equal(t->state, TASK_STARTING);
    if (delay == 0) {
        assert_int_equal(a.act, RT_START);
    } else {
        assert_int_equal(a.act, RT_WAIT);
        assert_int_equal(a.at - now, delay);
    }
    now += delay;
    expect(t, RT_START, 1);
    done(t, ok());
    expect(t, RT_INSPECT, 1);
    done_inspect(t, ENGINE_STATE_RUNNING, 0);
    assert_int_equal(t->state, TASK_RUNNING);
}

static int setup(void **state)
{
    now = 1000;
    return 0;
}

/* ------------------------------------------------------------ to running */

static void test_fresh_task_runs(void **state)
{
    runtask_t *t = running_task(assignment("t1", DESIRED_RUNNING));
    TaskStatus st;
    PortMapping ports[ENGINE_MAX_PORTS], *pp[ENGINE_MAX_PORTS];

    assert_string_equal(t->cid, CID);
    assert_int_equal(t->health, HEALTH_NONE);
    runtask_status(t, &st, ports, pp);
    assert_string_equal(st.task_id, "t1");
    assert_int_equal(st.state, TASK_RUNNING);
    assert_string_equal(st.container_id, CID);
    assert_int_equal(st.n_ports, 1);
    assert_int_equal(st.ports[0]->target, 8080);
    assert_int_equal(st.ports[0]->host_port, 32768);
    assert_int_equal(st.restarts, 0);
    assert_int_equal(st.since_ms, wall());
    runtask_free(t);
}

static void test_pull_when_missing_and_reject(void **state)
{
    runtask_t *t = runtask_create("t1");

    runtask_assign(t, assignment("t1", DESIRED_RUNNING), now, wall());
    expect(t, RT_IMAGE, 1);
    done(t, refused(SKIFF_ENOTFOUND, "no such image"));
    expect(t, RT_PULL, 1);
    assert_int_equal(t->state, TASK_PULLING);
    done(t, refused(SKIFF_EENGINE, "manifest for x:v1 not found: manifest unknown"));
    assert_int_equal(t->state, TASK_REJECTED);
    assert_string_equal(t->message, "manifest for x:v1 not found: manifest unknown");
    /* Never retried. */
    expect(t, RT_NONE, 1);
    runtask_free(t);

    /* A pull that works goes on to create. */
    t = runtask_create("t2");
    runtask_assign(t, assignment("t2", DESIRED_RUNNING), now, wall());
    expect(t, RT_IMAGE, 1);
    done(t, refused(SKIFF_ENOTFOUND, "no such image"));
    expect(t, RT_PULL, 1);
    done(t, ok());
    expect(t, RT_CREATE, 1);
    runtask_free(t);
}

static void test_create_refused_or_unreachable(void **state)
{
    runtask_t *t = runtask_create("t1");
    runtask_action_t a;

    runtask_assign(t, assignment("t1", DESIRED_RUNNING), now, wall());
    expect(t, RT_IMAGE, 1);
    done(t, ok());
    expect(t, RT_CREATE, 1);
    /* The engine is away: retried a second later, nothing reported. */
    done(t, refused(SKIFF_EUNAVAILABLE, "engine: Couldn't connect to server"));
    assert_int_equal(t->state, TASK_STARTING);
    a = runtask_next(t, now, 1);
    assert_int_equal(a.act, RT_WAIT);
    assert_int_equal(a.at, now + RUNTASK_RETRY_MS);
    now += RUNTASK_RETRY_MS;
    expect(t, RT_CREATE, 1);
    done(t, refused(SKIFF_EENGINE, "Minimum memory limit allowed is 6MB"));
    assert_int_equal(t->state, TASK_REJECTED);
    assert_string_equal(t->message, "Minimum memory limit allowed is 6MB");
    expect(t, RT_NONE, 1);
    runtask_free(t);
}

static void test_name_taken_finds_the_container(void **state)
{
    runtask_t *t = runtask_create("t1");

    runtask_assign(t, assignment("t1", DESIRED_RUNNING), now, wall());
    expect(t, RT_IMAGE, 1);
    done(t, ok());
    expect(t, RT_CREATE, 1);
    done(t, refused(SKIFF_EEXISTS, "Conflict. The container name is already in use"));
    expect(t, RT_INSPECT, 1);
    assert_true(t->lookup);
    done_inspect(t, ENGINE_STATE_CREATED, 0);
    assert_string_equal(t->cid, CID);
    expect(t, RT_START, 1);
    runtask_free(t);
}

/* ------------------------------------------------------------ restarts */

static void test_kill_restarts_after_the_delay(void **state)
{
    runtask_t *t = running_task(assignment("t1", DESIRED_RUNNING));
    TaskStatus st;
    PortMapping ports[ENGINE_MAX_PORTS], *pp[ENGINE_MAX_PORTS];

    now += 3000;
    die(t, 137);
    assert_true(t->dirty);
    assert_int_equal(t->state, TASK_STARTING);
    assert_int_equal(t->exit_code, 137);
    assert_int_equal(t->rs.restarts, 1);
    assert_non_null(strstr(t->message, "exited with code 137"));
    assert_non_null(strstr(t->message, "100ms"));
    runtask_status(t, &st, ports, pp);
    assert_int_equal(st.n_ports, 0);
    assert_int_equal(st.restarts, 1);
    expect_restart_after(t, SPEC_DEFAULT_RESTART_DELAY_MS);
    assert_string_equal(t->message, "");
    runtask_free(t);
}

static void test_backoff_doubles_to_cap_and_resets(void **state)
{
    runtask_t *t = running_task(assignment("t1", DESIRED_RUNNING));
    int64_t want = 100;

    for (int i = 0; i < 10; i++) {
        now += 50; /* short runs */
        die(t, 1);
        expect_restart_after(t, want);
        want = want * 2 > SPEC_RESTART_DELAY_CAP_MS ? SPEC_RESTART_DELAY_CAP_MS : want * 2;
    }
    assert_int_equal(t->rs.restarts, 10);
    /* A run of 10 s resets the delay. */
    now += RUNTASK_RESET_AFTER_MS;
    die(t, 1);
    expect_restart_after(t, 100);
    now += 10;
    die(t, 1);
    expect_restart_after(t, 200);
    runtask_free(t);
}

static void test_max_attempts_then_failed(void **state)
{
    Assignment *a = assignment("t1", DESIRED_RUNNING);
    runtask_t *t;

    a->spec->restart->max_attempts = 2;
    t = running_task(a);
    die(t, 1);
    expect_restart_after(t, 100);
    die(t, 1);
    expect_restart_after(t, 200);
    die(t, 3);
    assert_int_equal(t->state, TASK_FAILED);
    assert_int_equal(t->exit_code, 3);
    assert_string_equal(t->message, "exited with code 3; gave up after 2 restarts");
    assert_true(t->terminal);
    expect(t, RT_NONE, 1);
    /* Later events change nothing. */
    die(t, 3);
    assert_int_equal(t->state, TASK_FAILED);
    runtask_free(t);
}

static void test_max_attempts_within_window(void **state)
{
    Assignment *a = assignment("t1", DESIRED_RUNNING);
    runtask_t *t;

    a->spec->restart->max_attempts = 2;
    a->spec->restart->window_ms = 5000;
    t = running_task(a);
    die(t, 1);
    expect_restart_after(t, 100);
    die(t, 1);
    expect_restart_after(t, 200);
    /* Both restarts fall out of the window: two more are allowed. */
    now += 6000;
    die(t, 1);
    expect_restart_after(t, 400); /* a run of 6 s does not reset the delay */
    assert_int_equal(t->rs.restarts, 3);
    die(t, 1);
    assert_int_equal(t->state, TASK_STARTING);
    now += 800;
    expect(t, RT_START, 1);
    done(t, ok());
    die(t, 1);
    assert_int_equal(t->state, TASK_FAILED);
    runtask_free(t);
}

static void test_conditions(void **state)
{
    Assignment *a = assignment("t1", DESIRED_RUNNING);
    runtask_t *t;

    /* on-failure: exit 0 completes, non-zero restarts. */
    a->spec->restart->condition = RESTART_ON_FAILURE;
    t = running_task(a);
    die(t, 2);
    expect_restart_after(t, 100);
    die(t, 0);
    assert_int_equal(t->state, TASK_COMPLETE);
    assert_string_equal(t->message, "exited with code 0");
    runtask_free(t);

    /* none: whatever the exit, it stays down. */
    a = assignment("t2", DESIRED_RUNNING);
    a->spec->restart->condition = RESTART_NONE;
    t = running_task(a);
    die(t, 1);
    assert_int_equal(t->state, TASK_FAILED);
    runtask_free(t);

    /* any: exit 0 restarts too. */
    t = running_task(assignment("t3", DESIRED_RUNNING));
    die(t, 0);
    expect_restart_after(t, 100);
    runtask_free(t);

    /* A zero delay restarts at once. */
    a = assignment("t4", DESIRED_RUNNING);
    a->spec->restart->delay_ms = 0;
    t = running_task(a);
    die(t, 1);
    expect_restart_after(t, 0);
    die(t, 1);
    expect_restart_after(t, 0);
    runtask_free(t);
}

static void test_oom_is_a_failure(void **state)
{
    Assignment *a = assignment("t1", DESIRED_RUNNING);
    runtask_t *t;
    engine_event_t ev = event(ENGINE_EVENT_OOM, 0);

    a->spec->restart->condition = RESTART_ON_FAILURE;
    a->spec->restart->max_attempts = 1;
    t = running_task(a);
    runtask_event(t, &ev, now, wall());
    die(t, 137);
    assert_non_null(strstr(t->message, "OOM killed"));
    expect_restart_after(t, 100);
    runtask_event(t, &ev, now, wall());
    die(t, 137);
    assert_int_equal(t->state, TASK_FAILED);
    assert_string_equal(t->message, "OOM killed (exit code 137); gave up after 1 restarts");
    runtask_free(t);
}

static void test_start_refused_is_a_failed_run(void **state)
{
    Assignment *a = assignment("t1", DESIRED_RUNNING);
    runtask_t *t = runtask_create("t1");
    engine_result_t r = ok();

    a->spec->restart->max_attempts = 1;
    runtask_assign(t, a, now, wall());
    expect(t, RT_IMAGE, 1);
    done(t, ok());
    expect(t, RT_CREATE, 1);
    r.id = CID;
    done(t, r);
    expect(t, RT_START, 1);
    done(t, refused(SKIFF_EENGINE, "exec: \"/nope\": no such file or directory"));
    assert_int_equal(t->state, TASK_STARTING);
    assert_int_equal(t->rs.restarts, 1);
    /* The refused container goes; a new one is made after the delay. */
    expect(t, RT_REMOVE, 1);
    done(t, ok());
    assert_string_equal(t->cid, "");
    expect(t, RT_WAIT, 1);
    now += 100;
    expect(t, RT_CREATE, 1);
    r.id = CID;
    done(t, r);
    expect(t, RT_START, 1);
    done(t, refused(SKIFF_EENGINE, "exec: \"/nope\": no such file or directory"));
    assert_int_equal(t->state, TASK_FAILED);
    assert_non_null(strstr(t->message, "no such file"));
    runtask_free(t);
}

static void test_engine_away_is_not_an_attempt(void **state)
{
    runtask_t *t = running_task(assignment("t1", DESIRED_RUNNING));

    die(t, 143);
    now += 100;
    expect(t, RT_START, 1);
    done(t, refused(SKIFF_EUNAVAILABLE, "engine: Couldn't connect to server"));
    assert_int_equal(t->rs.restarts, 1);
    expect(t, RT_WAIT, 1);
    now += RUNTASK_RETRY_MS;
    expect(t, RT_START, 1);
    done(t, ok());
    assert_int_equal(t->rs.restarts, 1);
    runtask_free(t);
}

static void test_one_end_counted_once(void **state)
{
    runtask_t *t = running_task(assignment("t1", DESIRED_RUNNING));
    engine_container_t stale;
    engine_result_t r = ok();

    /* The die event, then an inspect that says the same: one restart. */
    now += 500;
    die(t, 1);
    expect(t, RT_WAIT, 1);
    done_inspect(t, ENGINE_STATE_EXITED, 1);
    assert_int_equal(t->rs.restarts, 1);

    /* A container that dies right after start: the inspect after the start
     * sees it first, the die event later adds nothing. */
    now += 100;
    expect(t, RT_START, 1);
    done(t, ok());
    expect(t, RT_INSPECT, 1);
    done_inspect(t, ENGINE_STATE_EXITED, 1);
    assert_int_equal(t->rs.restarts, 2);
    die(t, 1);
    assert_int_equal(t->rs.restarts, 2);

    /* An answer from before a death we handled does not revive it. */
    now += 200;
    expect(t, RT_START, 1);
    done(t, ok());
    expect(t, RT_INSPECT, 1);
    stale = container(ENGINE_STATE_RUNNING, 0);
    now += 20;
    die(t, 1);
    assert_int_equal(t->rs.restarts, 3);
    r.container = &stale;
    runtask_done(t, &r, now, wall());
    assert_false(t->alive);
    assert_int_equal(t->state, TASK_STARTING);
    expect(t, RT_WAIT, 1);
    runtask_free(t);
}

static void test_removed_behind_our_back(void **state)
{
    runtask_t *t = running_task(assignment("t1", DESIRED_RUNNING));
    engine_event_t ev = event(ENGINE_EVENT_DESTROY, 0);

    die(t, 137);
    runtask_event(t, &ev, now, wall());
    assert_string_equal(t->cid, "");
    assert_int_equal(t->rs.restarts, 1);
    now += 100;
    expect(t, RT_CREATE, 1); /* the image is known to be here */
    runtask_free(t);

    /* Removed while running: that is the end of the run. */
    t = running_task(assignment("t2", DESIRED_RUNNING));
    runtask_event(t, &ev, now, wall());
    assert_int_equal(t->rs.restarts, 1);
    assert_non_null(strstr(t->message, "the container was removed"));
    runtask_free(t);
}

/* ------------------------------------------------------------ health */

static void test_engine_unhealthy_restarts(void **state)
{
    Assignment *a = assignment("t1", DESIRED_RUNNING);
    runtask_t *t;
    engine_event_t ev = event(ENGINE_EVENT_HEALTH, 0);
    runtask_action_t act;

    pb_push_str(&a->spec->health->n_test, &a->spec->health->test, "CMD-SHELL");
    pb_push_str(&a->spec->health->n_test, &a->spec->health->test, "true");
    a->spec->stop_grace_period_ms = 3000;
    t = running_task(a);
    assert_int_equal(t->health, HEALTH_STARTING);
    ev.health = ENGINE_HEALTH_HEALTHY;
    runtask_event(t, &ev, now, wall());
    assert_int_equal(t->health, HEALTH_HEALTHY);
    ev.health = ENGINE_HEALTH_UNHEALTHY;
    runtask_event(t, &ev, now, wall());
    assert_int_equal(t->health, HEALTH_UNHEALTHY);
    act = expect(t, RT_STOP, 1);
    assert_int_equal(act.grace_ms, 3000);
    /* The web image exits 0 on TERM: still a failure, for being unhealthy. */
    die(t, 0);
    assert_int_equal(t->state, TASK_STARTING);
    assert_int_equal(t->rs.restarts, 1);
    assert_non_null(strstr(t->message, "unhealthy"));
    done(t, ok()); /* the stop's answer */
    expect(t, RT_INSPECT, 1);
    done_inspect(t, ENGINE_STATE_EXITED, 0);
    assert_int_equal(t->rs.restarts, 1);
    /* Replaced by a new container: what made it unhealthy may be in its
     * file system. The old one goes at once, the new one after the delay. */
    expect(t, RT_REMOVE, 1);
    done(t, ok());
    assert_string_equal(t->cid, "");
    assert_int_equal(t->state, TASK_STARTING);
    act = expect(t, RT_WAIT, 1);
    assert_int_equal(act.at - now, 100);
    now += 100;
    expect(t, RT_CREATE, 1);
    {
        engine_result_t r = ok();
        r.id = CID;
        done(t, r);
    }
    expect(t, RT_START, 1);
    done(t, ok());
    expect(t, RT_INSPECT, 1);
    done_inspect(t, ENGINE_STATE_RUNNING, 0);
    assert_int_equal(t->state, TASK_RUNNING);
    assert_int_equal(t->health, HEALTH_STARTING);
    assert_int_equal(t->rs.restarts, 1);
    runtask_free(t);
}

static void test_unhealthy_with_no_restart_fails(void **state)
{
    Assignment *a = assignment("t1", DESIRED_RUNNING);
    runtask_t *t;
    engine_event_t ev = event(ENGINE_EVENT_HEALTH, 0);

    pb_push_str(&a->spec->health->n_test, &a->spec->health->test, "CMD");
    pb_push_str(&a->spec->health->n_test, &a->spec->health->test, "false");
    a->spec->restart->condition = RESTART_NONE;
    t = running_task(a);
    ev.health = ENGINE_HEALTH_UNHEALTHY;
    runtask_event(t, &ev, now, wall());
    expect(t, RT_STOP, 1);
    die(t, 143);
    assert_int_equal(t->state, TASK_FAILED);
    assert_int_equal(t->health, HEALTH_UNHEALTHY);
    assert_string_equal(t->message, "unhealthy");
    runtask_free(t);
}

static void test_http_probe(void **state)
{
    Assignment *a = assignment("t1", DESIRED_RUNNING);
    runtask_t *t;
    int64_t at;

    pb_set_str(&a->spec->health->http_path, "/health");
    a->spec->health->interval_ms = 1000;
    a->spec->health->retries = 2;
    t = running_task(a);
    assert_int_equal(t->health, HEALTH_STARTING);
    assert_true(runtask_probe_due(t, &at));
    assert_int_equal(at, now + HEALTH_FAST_PROBE_MS);
    now = at;
    runtask_probe_begin(t);
    assert_false(runtask_probe_due(t, &at)); /* one at a time */
    runtask_probe_done(t, 0, "Connection refused", now, wall());
    assert_int_equal(t->health, HEALTH_STARTING);
    assert_true(runtask_probe_due(t, &at));
    assert_int_equal(at, now + HEALTH_FAST_PROBE_MS);
    now = at;
    runtask_probe_begin(t);
    runtask_probe_done(t, 1, "", now, wall());
    assert_int_equal(t->health, HEALTH_HEALTHY);
    assert_true(t->dirty);
    assert_true(runtask_probe_due(t, &at));
    assert_int_equal(at, now + 1000);
    for (int i = 0; i < 2; i++) {
        now = at;
        runtask_probe_begin(t);
        runtask_probe_done(t, 0, "HTTP 404", now, wall());
        runtask_probe_due(t, &at);
    }
    assert_int_equal(t->health, HEALTH_UNHEALTHY);
    assert_string_equal(t->message, "unhealthy: HTTP 404");
    assert_false(runtask_probe_due(t, &at)); /* it is being replaced */
    expect(t, RT_STOP, 1);
    die(t, 0);
    assert_non_null(strstr(t->message, "unhealthy: HTTP 404; restart 1"));
    runtask_free(t);
}

/* ------------------------------------------------------------ shutdown */

static void test_drain_then_stop(void **state)
{
    runtask_t *t = running_task(assignment("t1", DESIRED_RUNNING));
    Assignment *a = assignment("t1", DESIRED_SHUTDOWN);
    runtask_action_t act;

    a->spec->drain_delay_ms = 1500;
    a->spec->stop_grace_period_ms = 4000;
    runtask_assign(t, a, now, wall());
    assert_int_equal(t->state, TASK_RUNNING); /* still running while it drains */
    act = expect(t, RT_WAIT, 1);
    assert_int_equal(act.at, now + 1500);
    now += 1500;
    act = expect(t, RT_STOP, 1);
    assert_int_equal(act.grace_ms, 4000);
    die(t, 0);
    assert_int_equal(t->state, TASK_SHUTDOWN);
    assert_int_equal(t->rs.restarts, 0);
    done(t, ok());
    expect(t, RT_INSPECT, 1);
    done_inspect(t, ENGINE_STATE_EXITED, 0);
    expect(t, RT_NONE, 1); /* SHUTDOWN keeps the container */
    assert_int_equal(t->state, TASK_SHUTDOWN);

    /* Then REMOVE: removed, reported removed. */
    runtask_assign(t, assignment("t1", DESIRED_REMOVE), now, wall());
    expect(t, RT_REMOVE, 1);
    done(t, ok());
    assert_int_equal(t->state, TASK_REMOVED);
    assert_string_equal(t->cid, "");
    expect(t, RT_NONE, 1);
    /* And when the set drops it, it is forgotten. */
    runtask_unassign(t);
    expect(t, RT_FORGET, 1);
    runtask_free(t);
}

static void test_shutdown_cancels_a_pending_restart(void **state)
{
    runtask_t *t = running_task(assignment("t1", DESIRED_RUNNING));

    die(t, 1);
    runtask_assign(t, assignment("t1", DESIRED_SHUTDOWN), now, wall());
    assert_int_equal(t->state, TASK_SHUTDOWN);
    now += 1000;
    expect(t, RT_NONE, 1);
    runtask_free(t);

    /* A task that never got a container. */
    t = runtask_create("t2");
    runtask_assign(t, assignment("t2", DESIRED_REMOVE), now, wall());
    assert_int_equal(t->state, TASK_REMOVED);
    expect(t, RT_NONE, 1);
    runtask_free(t);
}

static void test_failed_task_told_to_shut_down_stays_failed(void **state)
{
    Assignment *a = assignment("t1", DESIRED_RUNNING);
    runtask_t *t;

    a->spec->restart->condition = RESTART_NONE;
    t = running_task(a);
    die(t, 1);
    assert_int_equal(t->state, TASK_FAILED);
    runtask_assign(t, assignment("t1", DESIRED_SHUTDOWN), now, wall());
    assert_int_equal(t->state, TASK_FAILED);
    expect(t, RT_NONE, 1);
    runtask_free(t);
}

/* ------------------------------------------------------------ adoption */

static void test_adopted_running_before_the_set(void **state)
{
    runtask_t *t = runtask_create("t1");
    engine_container_t c = container(ENGINE_STATE_RUNNING, 0);

    strcpy(t->cid, CID);
    c.started_ms = wall() - 60000;
    runtask_observe(t, &c, 1, now, wall());
    assert_int_equal(t->state, TASK_RUNNING);
    assert_true(t->alive);
    assert_true(runtask_reported(t, 0));
    /* Before the first set: hands off. */
    expect(t, RT_NONE, 0);
    /* In the set: kept as it is. */
    runtask_assign(t, assignment("t1", DESIRED_RUNNING), now, wall());
    expect(t, RT_NONE, 1);
    assert_int_equal(t->state, TASK_RUNNING);
    assert_true(runtask_reported(t, 1));
    /* It ran a minute: its first restart waits the first delay. */
    die(t, 1);
    expect(t, RT_WAIT, 1);
    runtask_free(t);
}

static void test_unassigned_removed_only_after_the_set(void **state)
{
    runtask_t *t = runtask_create("t9");
    engine_container_t c = container(ENGINE_STATE_RUNNING, 0);

    strcpy(t->cid, CID);
    runtask_observe(t, &c, 1, now, wall());
    expect(t, RT_NONE, 0);
    expect(t, RT_NONE, 0);
    /* The set has come, and t9 is not in it. */
    assert_false(runtask_reported(t, 1));
    expect(t, RT_STOP, 1);
    assert_int_equal(t->stop_reason, STOP_UNASSIGNED);
    die(t, 0);
    done(t, ok());
    expect(t, RT_INSPECT, 1);
    done_inspect(t, ENGINE_STATE_EXITED, 0);
    expect(t, RT_REMOVE, 1);
    done(t, ok());
    expect(t, RT_FORGET, 1);
    runtask_free(t);
}

static void test_adopted_exited_restarts_by_policy(void **state)
{
    runtask_t *t = runtask_create("t1");
    engine_container_t c = container(ENGINE_STATE_EXITED, 143);

    strcpy(t->cid, CID);
    runtask_observe(t, &c, 1, now, wall());
    assert_int_equal(t->state, TASK_STARTING);
    assert_non_null(strstr(t->message, "waiting for the assignments"));
    expect(t, RT_NONE, 0);
    runtask_assign(t, assignment("t1", DESIRED_RUNNING), now, wall());
    assert_int_equal(t->rs.restarts, 1);
    expect_restart_after(t, 100);
    runtask_free(t);

    /* With on-failure and exit 0, it is complete. */
    t = runtask_create("t2");
    c = container(ENGINE_STATE_EXITED, 0);
    strcpy(t->cid, CID);
    runtask_observe(t, &c, 1, now, wall());
    {
        Assignment *a = assignment("t2", DESIRED_RUNNING);
        a->spec->restart->condition = RESTART_ON_FAILURE;
        runtask_assign(t, a, now, wall());
    }
    assert_int_equal(t->state, TASK_COMPLETE);
    runtask_free(t);
}

static void test_stray_never_reported(void **state)
{
    runtask_t *t = runtask_create("stray-1");
    engine_container_t c = container(ENGINE_STATE_RUNNING, 0);

    t->stray = 1;
    strcpy(t->cid, CID);
    runtask_observe(t, &c, 1, now, wall());
    assert_false(runtask_reported(t, 0));
    expect(t, RT_NONE, 0);
    expect(t, RT_STOP, 1);
    runtask_free(t);
}

static void test_ids(void **state)
{
    char long_id[RUNTASK_ID_MAX + 2];

    assert_true(runtask_id_valid("k3j2h1"));
    assert_true(runtask_id_valid("a-b_c"));
    assert_false(runtask_id_valid(""));
    assert_false(runtask_id_valid("a/b"));
    assert_false(runtask_id_valid("a.b"));
    assert_false(runtask_id_valid(NULL));
    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    assert_false(runtask_id_valid(long_id));
    assert_null(runtask_create("bad id"));
}

/* ------------------------------------------------------------ the policy alone */

static void test_restart_decide_table(void **state)
{
    RestartPolicy p = PB_RESTART_POLICY_INIT;
    restart_state_t st;
    restart_decision_t d;

    memset(&st, 0, sizeof(st));
    p.condition = RESTART_ANY;
    p.delay_ms = 3000;
    d = restart_decide(&p, &st, 1, 0, 0);
    assert_true(d.restart);
    assert_int_equal(d.delay_ms, 3000);
    d = restart_decide(&p, &st, 1, 0, 0);
    assert_int_equal(d.delay_ms, 6000);
    d = restart_decide(&p, &st, 1, 0, 0);
    assert_int_equal(d.delay_ms, 10000);
    d = restart_decide(&p, &st, 1, 0, 0);
    assert_int_equal(d.delay_ms, 10000);
    /* A first delay above the cap is kept as it is. */
    memset(&st, 0, sizeof(st));
    p.delay_ms = 30000;
    d = restart_decide(&p, &st, 1, 0, 0);
    assert_int_equal(d.delay_ms, 30000);
    d = restart_decide(&p, &st, 1, 0, 0);
    assert_int_equal(d.delay_ms, 30000);
    /* Many restarts never overflow. */
    memset(&st, 0, sizeof(st));
    p.delay_ms = 1;
    for (int i = 0; i < 200; i++)
        d = restart_decide(&p, &st, 1, 0, i);
    assert_int_equal(d.delay_ms, SPEC_RESTART_DELAY_CAP_MS);
    assert_int_equal(st.restarts, 200);
    /* NULL policy: the defaults. */
    memset(&st, 0, sizeof(st));
    d = restart_decide(NULL, &st, 0, 0, 0);
    assert_true(d.restart);
    assert_int_equal(d.delay_ms, SPEC_DEFAULT_RESTART_DELAY_MS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_fresh_task_runs, setup),
        cmocka_unit_test_setup(test_pull_when_missing_and_reject, setup),
        cmocka_unit_test_setup(test_create_refused_or_unreachable, setup),
        cmocka_unit_test_setup(test_name_taken_finds_the_container, setup),
        cmocka_unit_test_setup(test_kill_restarts_after_the_delay, setup),
        cmocka_unit_test_setup(test_backoff_doubles_to_cap_and_resets, setup),
        cmocka_unit_test_setup(test_max_attempts_then_failed, setup),
        cmocka_unit_test_setup(test_max_attempts_within_window, setup),
        cmocka_unit_test_setup(test_conditions, setup),
        cmocka_unit_test_setup(test_oom_is_a_failure, setup),
        cmocka_unit_test_setup(test_start_refused_is_a_failed_run, setup),
        cmocka_unit_test_setup(test_engine_away_is_not_an_attempt, setup),
        cmocka_unit_test_setup(test_one_end_counted_once, setup),
        cmocka_unit_test_setup(test_removed_behind_our_back, setup),
        cmocka_unit_test_setup(test_engine_unhealthy_restarts, setup),
        cmocka_unit_test_setup(test_unhealthy_with_no_restart_fails, setup),
        cmocka_unit_test_setup(test_http_probe, setup),
        cmocka_unit_test_setup(test_drain_then_stop, setup),
        cmocka_unit_test_setup(test_shutdown_cancels_a_pending_restart, setup),
        cmocka_unit_test_setup(test_failed_task_told_to_shut_down_stays_failed, setup),
        cmocka_unit_test_setup(test_adopted_running_before_the_set, setup),
        cmocka_unit_test_setup(test_unassigned_removed_only_after_the_set, setup),
        cmocka_unit_test_setup(test_adopted_exited_restarts_by_policy, setup),
        cmocka_unit_test_setup(test_stray_never_reported, setup),
        cmocka_unit_test_setup(test_ids, setup),
        cmocka_unit_test_setup(test_restart_decide_table, setup),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
