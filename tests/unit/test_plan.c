/* Unit tests for the rolling-update planner (controller/plan.c).
 *
 * Two kinds: a table of single questions (these slots, this clock: which
 * steps, what outcome, when to look again), and whole updates run to the
 * end by a small simulation of the orchestrator, which applies the steps to
 * the slots, lets old tasks stop and new ones become ready as time passes,
 * and checks the serving capacity and that every slot is updated once.
 *
 * Slots are written one token each, slot numbers 1, 2, ... in order:
 *   O      the old task runs (todo)
 *   S      the old task is stopping
 *   N      a new task, not ready
 *   R@t    a new task, ready since t
 *   -      neither task
 * and combinations: "ON", "OR@t", "SR@t", "SN".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "plan.h"

#define MAX_SLOTS 32

enum { STOP_FIRST, START_FIRST };
enum { PAUSE = 1, CONTINUE, ROLLBACK };  /* 0: pause, the default */

/* The update config of a case, without protobuf-c's base. */
typedef struct cfg_def {
    uint32_t parallelism;
    int64_t delay, monitor;
    int order;
    int action;
    double ratio;
} cfg_def_t;

static UpdateConfig make_config(const cfg_def_t *d)
{
    UpdateConfig cfg = PB_UPDATE_CONFIG_INIT;

    cfg.parallelism = d->parallelism;
    cfg.delay_ms = d->delay;
    cfg.monitor_ms = d->monitor;
    cfg.order = d->order == START_FIRST ? ORDER_START_FIRST : ORDER_STOP_FIRST;
    cfg.failure_action = d->action == CONTINUE   ? FAILURE_CONTINUE
                         : d->action == ROLLBACK ? FAILURE_ROLLBACK
                                                 : FAILURE_PAUSE;
    cfg.max_failure_ratio = d->ratio;
    return cfg;
}

static size_t parse_slots(const char *text, plan_slot_t *slots)
{
    size_t n = 0;
    const char *p = text;

    while (*p) {
        plan_slot_t *s;

        while (*p == ' ')
            p++;
        if (!*p)
            break;
        assert_true(n < MAX_SLOTS);
        s = &slots[n];
        memset(s, 0, sizeof(*s));
        s->slot = (uint32_t)++n;
        for (; *p && *p != ' '; p++) {
            switch (*p) {
            case 'O': s->has_old = 1; break;
            case 'S': s->old_stopping = 1; break;
            case 'N': s->has_new = 1; break;
            case 'R': s->has_new = 1; s->new_ready = 1; break;
            case '-': break;
            case '@': s->new_ready_since_ms = strtoll(p + 1, (char **)&p, 10); p--; break;
            default: fail_msg("bad slot token in \"%s\"", text);
            }
        }
    }
    return n;
}

static void steps_text(const plan_result_t *r, char *buf, size_t len)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < r->n_steps && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s:%u", i ? " " : "",
                                 r->steps[i].action == PLAN_STOP_OLD ? "stop" : "start",
                                 r->steps[i].slot);
}

static const char *outcome_name(int o)
{
    return o == PLAN_DONE ? "done" : o == PLAN_FAILED ? "failed" : "in progress";
}

/* ------------------------------------------------------------ the table */

typedef struct plan_case {
    const char *name;
    cfg_def_t cfg;
    int64_t now, next_batch;
    uint32_t failures;
    uint32_t replicas;  /* 0: the number of slots */
    const char *slots;
    int outcome;
    const char *steps;
    int64_t want_next, want_wake;
} plan_case_t;

#define P1 { .parallelism = 1, .monitor = 5000 }

static const plan_case_t cases[] = {
    /* First batches. */
    { "stop-first, parallelism 1: the lowest slot first", P1,
      .now = 100, .slots = "O O O", .steps = "stop:1" },
    { "start-first, parallelism 1: start the new task beside the old",
      { .parallelism = 1, .monitor = 5000, .order = START_FIRST },
      .now = 100, .slots = "O O O", .steps = "start:1" },
    { "parallelism 2", { .parallelism = 2, .monitor = 5000 },
      .now = 100, .slots = "O O O", .steps = "stop:1 stop:2" },
    { "parallelism 0: all at once", { .parallelism = 0, .monitor = 5000 },
      .now = 100, .slots = "O O O", .steps = "stop:1 stop:2 stop:3" },
    { "parallelism 0, start-first", { .parallelism = 0, .order = START_FIRST },
      .now = 100, .slots = "O O", .steps = "start:1 start:2" },
    { "parallelism above the slots left", { .parallelism = 5, .monitor = 5000 },
      .now = 5000, .slots = "R@0 O O", .steps = "stop:2 stop:3" },
    { "the first batch does not wait for the delay",
      { .parallelism = 1, .delay = 2000, .monitor = 5000 },
      .now = 100, .slots = "O O O", .steps = "stop:1" },

    /* In flight: nothing new starts. */
    { "old task stopping: in flight", P1,
      .now = 100, .slots = "S O O", .steps = "" },
    { "neither task (replacement coming): in flight", P1,
      .now = 100, .slots = "- O O", .steps = "" },
    { "new task not ready: in flight", P1,
      .now = 100, .slots = "N O O", .steps = "" },
    { "monitor not yet passed: in flight, wake when it ends", P1,
      .now = 1000, .slots = "R@0 O O", .steps = "", .want_wake = 5000 },
    { "monitor passed: the next batch", P1,
      .now = 5000, .slots = "R@0 O O", .steps = "stop:2" },
    { "wake at the earliest monitor end", { .parallelism = 0, .monitor = 5000 },
      .now = 1000, .slots = "R@300 R@100 R@200 N", .steps = "", .want_wake = 5100 },
    { "monitor 0: done as soon as ready", { .parallelism = 1 },
      .now = 100, .slots = "R@100 O", .steps = "stop:2" },
    { "ready but the old task still stopping: no wake by time",
      { .parallelism = 1, .monitor = 5000, .order = START_FIRST },
      .now = 200, .slots = "SR@100 O", .steps = "" },

    /* Start-first: the old task goes once the new one is ready. */
    { "start-first, new not ready: both run, in flight",
      { .parallelism = 1, .monitor = 5000, .order = START_FIRST },
      .now = 200, .slots = "ON O O", .steps = "" },
    { "start-first, new ready: stop the old one now",
      { .parallelism = 1, .monitor = 5000, .order = START_FIRST },
      .now = 200, .slots = "OR@150 O O", .steps = "stop:1" },
    { "start-first, old stopped: monitor goes on",
      { .parallelism = 1, .monitor = 5000, .order = START_FIRST },
      .now = 300, .slots = "R@150 O O", .steps = "", .want_wake = 5150 },
    { "start-first, parallelism 2: each old one stops when its new one is ready",
      { .parallelism = 2, .monitor = 5000, .order = START_FIRST },
      .now = 300, .slots = "ON OR@250 O", .steps = "stop:2" },

    /* Delay between batches. */
    { "batch done, delay: set next_batch_ms and wait",
      { .parallelism = 1, .delay = 2000, .monitor = 5000 },
      .now = 5000, .slots = "R@0 O O", .steps = "", .want_next = 7000, .want_wake = 7000 },
    { "delay not yet passed: wait",
      { .parallelism = 1, .delay = 2000, .monitor = 5000 },
      .now = 6000, .next_batch = 7000, .slots = "R@0 O O", .steps = "",
      .want_next = 7000, .want_wake = 7000 },
    { "delay passed: the next batch, next_batch_ms cleared",
      { .parallelism = 1, .delay = 2000, .monitor = 5000 },
      .now = 7000, .next_batch = 7000, .slots = "R@0 O O", .steps = "stop:2" },
    { "delay long passed (a restart): the next batch at once",
      { .parallelism = 1, .delay = 2000, .monitor = 5000 },
      .now = 90000, .next_batch = 7000, .slots = "R@0 O O", .steps = "stop:2" },
    { "no delay: a stale next_batch_ms in the future still waits",
      { .parallelism = 1, .monitor = 5000 },
      .now = 6000, .next_batch = 7000, .slots = "R@0 O O", .steps = "",
      .want_next = 7000, .want_wake = 7000 },
    { "in flight: next_batch_ms passes through",
      { .parallelism = 1, .delay = 2000, .monitor = 5000 },
      .now = 6000, .next_batch = 7000, .slots = "N O", .steps = "", .want_next = 7000 },
    { "some slots already at the target: the delay applies",
      { .parallelism = 1, .delay = 2000, .monitor = 5000 },
      .now = 9000, .slots = "R@0 O", .steps = "", .want_next = 11000, .want_wake = 11000 },

    /* Done. */
    { "every slot done", P1,
      .now = 5000, .slots = "R@0 R@0 R@0", .outcome = PLAN_DONE, .steps = "" },
    { "done clears next_batch_ms", { .parallelism = 1, .delay = 2000, .monitor = 5000 },
      .now = 9000, .next_batch = 7000, .slots = "R@0 R@0", .outcome = PLAN_DONE, .steps = "" },
    { "one monitor still running: not done yet", P1,
      .now = 5000, .slots = "R@0 R@1 R@0", .steps = "", .want_wake = 5001 },
    { "no slots: done", P1, .now = 5000, .slots = "", .outcome = PLAN_DONE, .steps = "" },
    { "slots already at the target spec are left alone", P1,
      .now = 100000, .slots = "R@0 O R@0 O", .steps = "stop:2" },

    /* Failures. */
    { "ratio 0, no failure: go on", P1,
      .now = 100, .slots = "O O O", .steps = "stop:1" },
    { "ratio 0, one failure, pause: failed", P1,
      .now = 100, .failures = 1, .slots = "N O O", .outcome = PLAN_FAILED, .steps = "" },
    { "ratio 0, one failure, rollback: failed",
      { .parallelism = 1, .monitor = 5000, .action = ROLLBACK },
      .now = 100, .failures = 1, .slots = "N O O", .outcome = PLAN_FAILED, .steps = "" },
    { "ratio 0, failures, continue: never fails",
      { .parallelism = 1, .monitor = 5000, .action = CONTINUE },
      .now = 5000, .failures = 3, .slots = "R@0 O O", .steps = "stop:2" },
    { "continue: done even with failures",
      { .parallelism = 1, .monitor = 5000, .action = CONTINUE },
      .now = 5000, .failures = 9, .slots = "R@0 R@0", .outcome = PLAN_DONE, .steps = "" },
    { "ratio 0.5 of 3: one failure is allowed",
      { .parallelism = 1, .monitor = 5000, .ratio = 0.5 },
      .now = 5000, .failures = 1, .slots = "R@0 O O", .steps = "stop:2" },
    { "ratio 0.5 of 3: two failures fail",
      { .parallelism = 1, .monitor = 5000, .ratio = 0.5 },
      .now = 5000, .failures = 2, .slots = "R@0 O O", .outcome = PLAN_FAILED, .steps = "" },
    { "ratio 0.5 of 4: two failures are allowed (not above)",
      { .parallelism = 1, .monitor = 5000, .ratio = 0.5, .action = ROLLBACK },
      .now = 5000, .failures = 2, .slots = "R@0 O O O", .steps = "stop:2" },
    { "ratio 1: fails only past every replica",
      { .parallelism = 1, .monitor = 5000, .ratio = 1 },
      .now = 5000, .failures = 4, .slots = "R@0 O O", .outcome = PLAN_FAILED, .steps = "" },
    { "failed: no step, not even a start-first stop",
      { .parallelism = 1, .monitor = 5000, .order = START_FIRST },
      .now = 5000, .failures = 1, .slots = "OR@0 O", .outcome = PLAN_FAILED, .steps = "" },
    { "failed: next_batch_ms kept for the caller",
      { .parallelism = 1, .delay = 2000, .monitor = 5000 },
      .now = 6000, .next_batch = 7000, .failures = 1, .slots = "R@0 O",
      .outcome = PLAN_FAILED, .steps = "", .want_next = 7000 },
};

static void test_case(void **state)
{
    const plan_case_t *tc = *state;
    UpdateConfig cfg = make_config(&tc->cfg);
    plan_slot_t slots[MAX_SLOTS];
    plan_step_t steps[MAX_SLOTS];
    plan_result_t r = { .steps = steps, .n_steps = 99, .wake_ms = -1, .next_batch_ms = -1 };
    plan_input_t in = { .config = &cfg, .now_ms = tc->now, .next_batch_ms = tc->next_batch,
                        .failures = tc->failures };
    char got[256];

    in.n_slots = parse_slots(tc->slots, slots);
    in.slots = slots;
    in.replicas = tc->replicas ? tc->replicas : (uint32_t)in.n_slots;
    plan_update(&in, &r);
    steps_text(&r, got, sizeof(got));
    if ((int)r.outcome != tc->outcome || strcmp(got, tc->steps) != 0 ||
        r.next_batch_ms != tc->want_next || r.wake_ms != tc->want_wake)
        fail_msg("%s:\n  got  %s, steps \"%s\", next_batch %lld, wake %lld\n"
                 "  want %s, steps \"%s\", next_batch %lld, wake %lld",
                 tc->name, outcome_name(r.outcome), got, (long long)r.next_batch_ms,
                 (long long)r.wake_ms, outcome_name(tc->outcome), tc->steps,
                 (long long)tc->want_next, (long long)tc->want_wake);
}

/* The input's slots in any order; the steps come in slot order. */
static void test_slot_order(void **state)
{
    UpdateConfig cfg = make_config(&(cfg_def_t){ .parallelism = 2, .monitor = 10 });
    plan_slot_t slots[] = {
        { .slot = 7, .has_old = 1 },
        { .slot = 3, .has_old = 1 },
        { .slot = 9, .has_new = 1, .new_ready = 1 },
        { .slot = 5, .has_old = 1 },
    };
    plan_step_t steps[4];
    plan_result_t r = { .steps = steps };
    plan_input_t in = { .config = &cfg, .now_ms = 100, .replicas = 4, .slots = slots,
                        .n_slots = 4 };
    char got[64];

    (void)state;
    plan_update(&in, &r);
    steps_text(&r, got, sizeof(got));
    assert_string_equal(got, "stop:3 stop:5");

    cfg = make_config(&(cfg_def_t){ .parallelism = 0, .order = START_FIRST });
    slots[0] = (plan_slot_t){ .slot = 7, .has_old = 1, .has_new = 1, .new_ready = 1 };
    slots[1] = (plan_slot_t){ .slot = 3, .has_old = 1, .has_new = 1, .new_ready = 1 };
    slots[3] = (plan_slot_t){ .slot = 5, .has_old = 1, .has_new = 1 };
    plan_update(&in, &r);
    steps_text(&r, got, sizeof(got));
    assert_string_equal(got, "stop:3 stop:7");
}

/* ---------------------------------------------------------- simulation */

/* The world as the orchestrator would see it, one slot at a time. */
typedef struct sim_slot {
    int old_running;      /* the old task runs and serves */
    int old_stopping;
    int64_t old_stop_at;  /* when the stopping old task is gone */
    int has_new;
    int new_ready;
    int64_t new_ready_at; /* when the new task becomes ready (if not yet) */
    int64_t new_ready_since;
    int fail_first;       /* the first new task of this slot fails */
    int planned_stops;    /* STOP_OLD steps received */
    int planned_starts;   /* START_NEW steps received, plus stop-first replacements */
    int64_t done_at;      /* when it became done, for the delay check */
} sim_slot_t;

typedef struct sim_opts {
    cfg_def_t cfg;
    size_t slots;
    const char *already;   /* per slot '1' when it already runs the target spec */
    const char *fail;      /* per slot '1' when its first new task fails */
    int64_t stop_ms;       /* how long an old task takes to stop */
    int64_t start_ms;      /* how long a new task takes to be ready */
    int expect;            /* the outcome that ends it */
    int verbose;
} sim_opts_t;

typedef struct sim_report {
    int outcome;
    int64_t end_ms;
    int plans;
    int batches;
    uint32_t failures;
    int min_serving;
} sim_report_t;

static int sim_serving(const sim_slot_t *s, size_t n)
{
    int serving = 0;

    for (size_t i = 0; i < n; i++)
        serving += s[i].old_running || (s[i].has_new && s[i].new_ready);
    return serving;
}

static void sim_check_capacity(const sim_opts_t *o, const sim_slot_t *s, int64_t now,
                               sim_report_t *rep)
{
    int serving = sim_serving(s, o->slots);
    int floor;

    if (serving < rep->min_serving)
        rep->min_serving = serving;
    if (o->cfg.order == START_FIRST)
        floor = (int)o->slots;
    else if (o->cfg.parallelism == 0 || o->cfg.parallelism >= o->slots)
        floor = 0;
    else
        floor = (int)(o->slots - o->cfg.parallelism);
    /* A failing new task takes a serving slot down with it in stop-first
     * only; start-first keeps the old one until the new one is ready. */
    if (serving < floor)
        fail_msg("t=%lld: %d slots serving, below %d", (long long)now, serving, floor);
}

/* Runs one update to the end. Between two looks by the planner, time jumps
 * to the next event: an old task gone, a new one ready (or failed), or the
 * planner's wake time. */
static sim_report_t sim_run(const sim_opts_t *o)
{
    UpdateConfig cfg = make_config(&o->cfg);
    sim_slot_t s[MAX_SLOTS];
    plan_slot_t view[MAX_SLOTS];
    plan_step_t steps[MAX_SLOTS];
    sim_report_t rep = { .min_serving = (int)o->slots };
    int64_t now = 1000, next_batch = 0, last_done = 0;
    size_t n = o->slots;

    assert_true(n <= MAX_SLOTS);
    memset(s, 0, sizeof(s));
    for (size_t i = 0; i < n; i++) {
        if (o->already && o->already[i] == '1') {
            /* Long past its monitor: done from the start. */
            s[i].has_new = s[i].new_ready = 1;
            s[i].new_ready_since = -1000000;
            s[i].done_at = -1;
        } else {
            s[i].old_running = 1;
        }
        s[i].fail_first = o->fail && o->fail[i] == '1';
    }

    for (;;) {
        plan_result_t r = { .steps = steps };
        plan_input_t in = { .config = &cfg, .now_ms = now, .next_batch_ms = next_batch,
                            .replicas = (uint32_t)n, .failures = rep.failures,
                            .slots = view, .n_slots = n };
        int64_t next_event = 0;
        int started_batch = 0;

        assert_true(++rep.plans < 10000);
        for (size_t i = 0; i < n; i++)
            view[i] = (plan_slot_t){
                .slot = (uint32_t)i + 1,
                .has_old = s[i].old_running,
                .old_stopping = s[i].old_stopping,
                .has_new = s[i].has_new,
                .new_ready = s[i].new_ready,
                .new_ready_since_ms = s[i].new_ready_since,
            };
        plan_update(&in, &r);
        next_batch = r.next_batch_ms;
        if (o->verbose)
            print_message("t=%lld %s steps=%zu wake=%lld next=%lld\n", (long long)now,
                          outcome_name(r.outcome), r.n_steps, (long long)r.wake_ms,
                          (long long)r.next_batch_ms);
        if (r.wake_ms)
            assert_true(r.wake_ms > now);

        if (r.outcome != PLAN_IN_PROGRESS) {
            assert_int_equal(r.n_steps, 0);
            rep.outcome = r.outcome;
            rep.end_ms = now;
            break;
        }

        /* Apply the steps, as the orchestrator does. */
        for (size_t k = 0; k < r.n_steps; k++) {
            sim_slot_t *x = &s[r.steps[k].slot - 1];

            assert_true(r.steps[k].slot >= 1 && r.steps[k].slot <= n);
            if (k)
                assert_true(r.steps[k].slot > r.steps[k - 1].slot);
            if (r.steps[k].action == PLAN_STOP_OLD) {
                assert_true(x->old_running);
                x->old_running = 0;
                x->old_stopping = 1;
                x->old_stop_at = now + o->stop_ms;
                x->planned_stops++;
                if (o->cfg.order == START_FIRST) {
                    assert_true(x->has_new && x->new_ready);
                } else {
                    assert_false(x->has_new);
                    started_batch = 1;
                }
            } else {
                assert_int_equal(o->cfg.order, START_FIRST);
                assert_true(x->old_running);
                assert_false(x->has_new);
                x->has_new = 1;
                x->new_ready_at = now + o->start_ms;
                x->planned_starts++;
                started_batch = 1;
            }
        }
        if (started_batch) {
            /* A new batch: never beside an unfinished slot, never before
             * the delay after the last slot of the batch before. */
            size_t in_batch = 0;

            rep.batches++;
            for (size_t i = 0; i < n; i++)
                in_batch += (s[i].old_stopping && !s[i].has_new) ||
                            (s[i].has_new && !s[i].new_ready && s[i].planned_starts);
            if (o->cfg.parallelism)
                assert_true(in_batch <= o->cfg.parallelism);
            if (rep.batches > 1)
                assert_true(now >= last_done + o->cfg.delay);
        }
        sim_check_capacity(o, s, now, &rep);

        /* The next event, and time jumps to it. */
        for (size_t i = 0; i < n; i++) {
            if (s[i].old_stopping)
                next_event = !next_event || s[i].old_stop_at < next_event ? s[i].old_stop_at
                                                                          : next_event;
            if (s[i].has_new && !s[i].new_ready)
                next_event = !next_event || s[i].new_ready_at < next_event ? s[i].new_ready_at
                                                                           : next_event;
        }
        if (r.wake_ms && (!next_event || r.wake_ms < next_event))
            next_event = r.wake_ms;
        if (!next_event)
            fail_msg("t=%lld: the update is stuck (no step, no event, no wake)",
                     (long long)now);
        now = next_event;

        /* What happens at that time. */
        for (size_t i = 0; i < n; i++) {
            sim_slot_t *x = &s[i];

            if (x->old_stopping && x->old_stop_at <= now) {
                x->old_stopping = 0;
                if (!x->has_new) {
                    /* Stop-first: the replacement follows the old task. */
                    x->has_new = 1;
                    x->new_ready_at = now + o->start_ms;
                    x->planned_starts++;
                }
            }
            if (x->has_new && !x->new_ready && x->new_ready_at <= now) {
                if (x->fail_first) {
                    /* It fails; the orchestrator puts a new one in its place. */
                    x->fail_first = 0;
                    rep.failures++;
                    x->new_ready_at = now + o->start_ms;
                } else {
                    x->new_ready = 1;
                    x->new_ready_since = now;
                }
            }
            if (!x->done_at && !x->old_running && !x->old_stopping && x->new_ready &&
                now - x->new_ready_since >= o->cfg.monitor) {
                x->done_at = now;
                if (now > last_done)
                    last_done = now;
            }
        }
        sim_check_capacity(o, s, now, &rep);
    }

    if (rep.outcome == PLAN_DONE) {
        for (size_t i = 0; i < n; i++) {
            int was_old = !(o->already && o->already[i] == '1');

            if (s[i].planned_stops != was_old || s[i].planned_starts != was_old)
                fail_msg("slot %zu: %d stops, %d starts, want %d each", i + 1,
                         s[i].planned_stops, s[i].planned_starts, was_old);
            assert_true(s[i].has_new && s[i].new_ready && !s[i].old_running);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            assert_true(s[i].planned_stops <= 1);
            assert_true(s[i].planned_starts <= 1);
        }
    }
    assert_int_equal(rep.outcome, o->expect);
    return rep;
}

/* Stop-first, parallelism 1, three slots, step by step as the orchestrator
 * sees it. */
static void test_walk_stop_first(void **state)
{
    UpdateConfig cfg = make_config(&(cfg_def_t){ .parallelism = 1, .delay = 1000,
                                                 .monitor = 5000 });
    plan_slot_t sl[3];
    plan_step_t steps[3];
    plan_result_t r = { .steps = steps };
    plan_input_t in = { .config = &cfg, .replicas = 3, .slots = sl, .n_slots = 3 };
    char got[64];

#define PLAN(t)                                                                   \
    do {                                                                          \
        in.now_ms = (t);                                                          \
        plan_update(&in, &r);                                                     \
        steps_text(&r, got, sizeof(got));                                         \
        in.next_batch_ms = r.next_batch_ms;                                       \
    } while (0)

    (void)state;
    parse_slots("O O O", sl);
    PLAN(0);
    assert_int_equal(r.outcome, PLAN_IN_PROGRESS);
    assert_string_equal(got, "stop:1");
    assert_int_equal(r.wake_ms, 0);

    parse_slots("S O O", sl);         /* told to stop */
    PLAN(10);
    assert_string_equal(got, "");
    assert_int_equal(r.wake_ms, 0);
    parse_slots("- O O", sl);         /* stopped; replacement not yet there */
    PLAN(500);
    assert_string_equal(got, "");
    parse_slots("N O O", sl);         /* replacement starting */
    PLAN(600);
    assert_string_equal(got, "");
    parse_slots("R@1000 O O", sl);    /* ready: monitor runs */
    PLAN(1000);
    assert_string_equal(got, "");
    assert_int_equal(r.wake_ms, 6000);
    PLAN(5999);
    assert_int_equal(r.wake_ms, 6000);
    PLAN(6000);                       /* batch done: the delay starts */
    assert_string_equal(got, "");
    assert_int_equal(r.next_batch_ms, 7000);
    assert_int_equal(r.wake_ms, 7000);
    PLAN(6500);
    assert_string_equal(got, "");
    assert_int_equal(r.wake_ms, 7000);
    PLAN(7000);
    assert_string_equal(got, "stop:2");
    assert_int_equal(r.next_batch_ms, 0);

    parse_slots("R@1000 R@8000 O", sl);
    PLAN(13000);                      /* slot 2 done; delay again */
    assert_int_equal(r.next_batch_ms, 14000);
    PLAN(14000);
    assert_string_equal(got, "stop:3");
    parse_slots("R@1000 R@8000 R@15000", sl);
    PLAN(19999);
    assert_int_equal(r.outcome, PLAN_IN_PROGRESS);
    assert_int_equal(r.wake_ms, 20000);
    PLAN(20000);
    assert_int_equal(r.outcome, PLAN_DONE);
    assert_int_equal(r.wake_ms, 0);
#undef PLAN
}

/* Start-first: START_NEW, then STOP_OLD once ready. */
static void test_walk_start_first(void **state)
{
    UpdateConfig cfg = make_config(&(cfg_def_t){ .parallelism = 1, .monitor = 1000,
                                                 .order = START_FIRST });
    plan_slot_t sl[2];
    plan_step_t steps[2];
    plan_result_t r = { .steps = steps };
    plan_input_t in = { .config = &cfg, .replicas = 2, .slots = sl, .n_slots = 2 };
    char got[64];

    (void)state;
    parse_slots("O O", sl);
    in.now_ms = 0;
    plan_update(&in, &r);
    steps_text(&r, got, sizeof(got));
    assert_string_equal(got, "start:1");

    parse_slots("ON O", sl);
    in.now_ms = 100;
    plan_update(&in, &r);
    assert_int_equal(r.n_steps, 0);
    assert_int_equal(r.wake_ms, 0);

    parse_slots("OR@200 O", sl);
    in.now_ms = 200;
    plan_update(&in, &r);
    steps_text(&r, got, sizeof(got));
    assert_string_equal(got, "stop:1");

    parse_slots("SR@200 O", sl);
    in.now_ms = 250;
    plan_update(&in, &r);
    assert_int_equal(r.n_steps, 0);

    parse_slots("R@200 O", sl);
    in.now_ms = 400;
    plan_update(&in, &r);
    assert_int_equal(r.n_steps, 0);
    assert_int_equal(r.wake_ms, 1200);

    in.now_ms = 1200;
    plan_update(&in, &r);
    steps_text(&r, got, sizeof(got));
    assert_string_equal(got, "start:2");
}

static void test_simulations(void **state)
{
    static const uint32_t parallelisms[] = { 1, 2, 3, 0 };
    static const int64_t delays[] = { 0, 700 };
    static const size_t sizes[] = { 1, 3, 5, 8 };
    static const char *const already[] = { NULL, "01001000" };
    int runs = 0;

    (void)state;
    for (int order = STOP_FIRST; order <= START_FIRST; order++)
        for (size_t p = 0; p < sizeof(parallelisms) / sizeof(*parallelisms); p++)
            for (size_t d = 0; d < sizeof(delays) / sizeof(*delays); d++)
                for (size_t z = 0; z < sizeof(sizes) / sizeof(*sizes); z++)
                    for (size_t a = 0; a < 2; a++)
                        for (int64_t mon = 0; mon <= 3000; mon += 3000) {
                            sim_opts_t o = {
                                .cfg = { .parallelism = parallelisms[p], .delay = delays[d],
                                         .monitor = mon, .order = order },
                                .slots = sizes[z],
                                .already = already[a],
                                .stop_ms = 300,
                                .start_ms = 500,
                                .expect = PLAN_DONE,
                            };
                            sim_report_t rep = sim_run(&o);
                            size_t todo = sizes[z], batch;

                            if (already[a])
                                for (size_t i = 0; i < sizes[z]; i++)
                                    todo -= already[a][i] == '1';
                            batch = parallelisms[p] ? parallelisms[p] : todo;
                            if (todo)
                                assert_int_equal(rep.batches, (int)((todo + batch - 1) / batch));
                            if (order == START_FIRST)
                                assert_int_equal(rep.min_serving, (int)sizes[z]);
                            runs++;
                        }
    assert_true(runs > 100);
}

/* Failures inside a whole update: continue goes to the end; pause and
 * rollback stop at the first failure with ratio 0, and with ratio 0.5 of 4
 * at the third. */
static void test_simulated_failures(void **state)
{
    static const struct {
        int order, action;
        double ratio;
        const char *fail;
        int expect;
        uint32_t failures;
    } rows[] = {
        { STOP_FIRST, CONTINUE, 0, "1111", PLAN_DONE, 4 },
        { START_FIRST, CONTINUE, 0, "1010", PLAN_DONE, 2 },
        { STOP_FIRST, PAUSE, 0, "0100", PLAN_FAILED, 1 },
        { START_FIRST, ROLLBACK, 0, "0100", PLAN_FAILED, 1 },
        { STOP_FIRST, PAUSE, 0.5, "0110", PLAN_DONE, 2 },
        { STOP_FIRST, ROLLBACK, 0.5, "0111", PLAN_FAILED, 3 },
        { START_FIRST, PAUSE, 0.5, "1101", PLAN_FAILED, 3 },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(*rows); i++) {
        sim_opts_t o = {
            .cfg = { .parallelism = 1, .monitor = 2000, .order = rows[i].order,
                     .action = rows[i].action, .ratio = rows[i].ratio },
            .slots = 4,
            .fail = rows[i].fail,
            .stop_ms = 100,
            .start_ms = 400,
            .expect = rows[i].expect,
        };
        sim_report_t rep = sim_run(&o);

        assert_int_equal(rep.failures, rows[i].failures);
    }
}

int main(void)
{
    const size_t n_cases = sizeof(cases) / sizeof(cases[0]);
    const struct CMUnitTest others[] = {
        cmocka_unit_test(test_slot_order),
        cmocka_unit_test(test_walk_stop_first),
        cmocka_unit_test(test_walk_start_first),
        cmocka_unit_test(test_simulations),
        cmocka_unit_test(test_simulated_failures),
    };
    struct CMUnitTest *tests = calloc(n_cases, sizeof(*tests));
    int failed;

    if (!tests)
        return 1;
    for (size_t i = 0; i < n_cases; i++)
        tests[i] = (struct CMUnitTest){ .name = cases[i].name, .test_func = test_case,
                                        .initial_state = (void *)&cases[i] };
    failed = _cmocka_run_group_tests("plan_cases", tests, n_cases, NULL, NULL);
    failed += cmocka_run_group_tests_name("plan", others, NULL, NULL);
    free(tests);
    return failed;
}
