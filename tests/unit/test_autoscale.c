/* Unit tests of controller/autoscale: the decision over recorded load
 * series, one evaluation a second, the replica count following what was
 * decided (as the controller does): a step, a spike shorter than the
 * cooldown, an oscillating load (no flapping), reports missing from a node
 * (no scale-down on missing data), several targets, the tolerance, bounds,
 * and a rolling update (no scale-down). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "autoscale.h"

typedef struct run {
    Autoscale policy;
    autoscale_state_t st;
    uint32_t replicas;
    int changes;
    int64_t now_ms;
} run_t;

static void run_init(run_t *r, uint32_t min, uint32_t max, double rps, uint32_t start)
{
    Autoscale a = SKIFF__V1__AUTOSCALE__INIT;

    memset(r, 0, sizeof(*r));
    a.min = min;
    a.max = max;
    a.target_rps = rps;
    a.cooldown_up_ms = 10000;
    a.cooldown_down_ms = 60000;
    r->policy = a;
    r->replicas = start;
    r->now_ms = 1000000;
}

/* One evaluation with this total load (connections per second). */
static void step(run_t *r, double cps, int nodes_reporting, int updating)
{
    autoscale_input_t in = { 0 };
    autoscale_decision_t d;

    in.policy = &r->policy;
    in.current = r->replicas;
    in.load.running = r->replicas;
    in.load.connections_per_second = cps;
    in.load.nodes_ready = 3;
    in.load.nodes_reporting = (uint32_t)nodes_reporting;
    in.updating = updating;
    in.now_ms = r->now_ms;
    autoscale_decide(&in, &r->st, &d);
    assert_true(d.desired >= r->policy.min && d.desired <= r->policy.max);
    if (d.desired != r->replicas)
        r->changes++;
    r->replicas = d.desired;
    r->now_ms += 1000;
}

static void steps(run_t *r, int seconds, double cps)
{
    for (int i = 0; i < seconds; i++)
        step(r, cps, 3, 0);
}

static void test_step(void **state)
{
    run_t r;

    run_init(&r, 1, 8, 50, 1);
    steps(&r, 5, 10);
    assert_int_equal(r.replicas, 1);
    /* a step to 300/s: up at once, to what it needs */
    step(&r, 300, 3, 0);
    assert_int_equal(r.replicas, 6);
    /* the load rises on: the next scale-up waits for the cooldown */
    step(&r, 400, 3, 0);
    assert_int_equal(r.replicas, 6);
    steps(&r, 9, 400);
    assert_int_equal(r.replicas, 8); /* 10 s later; capped at max */
    /* the load goes away: down only after 60 s of lower recommendations */
    steps(&r, 59, 0);
    assert_int_equal(r.replicas, 8);
    steps(&r, 2, 0);
    assert_int_equal(r.replicas, 1); /* min */
    assert_int_equal(r.changes, 3);
    (void)state;
}

static void test_spike_shorter_than_cooldown(void **state)
{
    run_t r;

    run_init(&r, 2, 10, 100, 2);
    steps(&r, 70, 150);
    assert_int_equal(r.replicas, 2);
    /* a 3 s spike: scaled up (fast), then held for the down cooldown */
    steps(&r, 3, 700);
    assert_int_equal(r.replicas, 7);
    steps(&r, 30, 150);
    assert_int_equal(r.replicas, 7);
    steps(&r, 31, 150);
    assert_int_equal(r.replicas, 2);
    assert_int_equal(r.changes, 2);
    (void)state;
}

static void test_oscillation_does_not_flap(void **state)
{
    run_t r;

    run_init(&r, 1, 10, 50, 1);
    /* 10 s busy, 10 s quiet, for 5 minutes */
    for (int i = 0; i < 15; i++) {
        steps(&r, 10, 400);
        steps(&r, 10, 20);
    }
    assert_int_equal(r.replicas, 8); /* the peak's capacity is kept */
    assert_int_equal(r.changes, 1);
    /* quiet for good: one step down */
    steps(&r, 61, 20);
    assert_int_equal(r.replicas, 1);
    assert_int_equal(r.changes, 2);
    (void)state;
}

static void test_missing_reports_never_scale_down(void **state)
{
    run_t r;

    run_init(&r, 1, 10, 50, 6);
    /* a node's balancer silent: the total may be short; no way down */
    for (int i = 0; i < 120; i++)
        step(&r, 0, 2, 0);
    assert_int_equal(r.replicas, 6);
    /* but up still works on what is known */
    step(&r, 500, 2, 0);
    assert_int_equal(r.replicas, 10);
    /* reports complete again: down after the window */
    for (int i = 0; i < 61; i++)
        step(&r, 0, 3, 0);
    assert_int_equal(r.replicas, 1);
    (void)state;
}

static void test_no_scale_down_during_update(void **state)
{
    run_t r;

    run_init(&r, 1, 10, 50, 5);
    for (int i = 0; i < 120; i++)
        step(&r, 10, 3, 1);
    assert_int_equal(r.replicas, 5);
    step(&r, 1000, 3, 1); /* up is fine: new slots take the new spec */
    assert_int_equal(r.replicas, 10);
    (void)state;
}

static void test_tolerance_and_targets(void **state)
{
    autoscale_input_t in = { 0 };
    autoscale_state_t st = { 0 };
    autoscale_decision_t d;
    Autoscale a = SKIFF__V1__AUTOSCALE__INIT;

    a.min = 1;
    a.max = 100;
    a.target_cpu = 50;
    a.target_connections = 10;
    a.cooldown_up_ms = 10000;
    a.cooldown_down_ms = 60000;
    in.policy = &a;
    in.now_ms = 5000;
    in.load.nodes_ready = in.load.nodes_reporting = 2;
    /* 20 replicas at 52% mean: needs 21, within 10%: no change */
    in.current = 20;
    in.load.running = in.load.with_stats = 20;
    in.load.cpu_percent = 52;
    autoscale_decide(&in, &st, &d);
    assert_int_equal(d.recommended, 21);
    assert_int_equal(d.desired, 20);
    /* the largest of the targets wins: 300 open connections need 30 */
    in.load.active = 300;
    autoscale_decide(&in, &st, &d);
    assert_int_equal(d.desired, 30);
    assert_non_null(strstr(d.reason, "cpu 52.0% (target 50%) needs 21"));
    assert_non_null(strstr(d.reason, "300 open (target 10 each) needs 30"));
    /* CPU figures missing for a replica: partial, no way down */
    in.current = 30;
    in.load.running = 30;
    in.load.with_stats = 29;
    in.load.cpu_percent = 1;
    in.load.active = 0;
    for (int i = 0; i < 100; i++) {
        in.now_ms += 1000;
        autoscale_decide(&in, &st, &d);
        assert_true(d.partial);
        assert_int_equal(d.desired, 30);
    }
    /* a count outside the range comes back into it at once */
    in.current = 200;
    in.load.with_stats = 200;
    in.load.running = 200;
    autoscale_decide(&in, &st, &d);
    assert_int_equal(d.desired, 100);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step),
        cmocka_unit_test(test_spike_shorter_than_cooldown),
        cmocka_unit_test(test_oscillation_does_not_flap),
        cmocka_unit_test(test_missing_reports_never_scale_down),
        cmocka_unit_test(test_no_scale_down_during_update),
        cmocka_unit_test(test_tolerance_and_targets),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
