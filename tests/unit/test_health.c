/* Unit tests of agent/health: skiff's HTTP probe state machine (starting
 * until the first success, the start period, retries in a row, recovery,
 * fast probes before the first success that count once per interval), how
 * the engine's and the probe's views combine, and the probe's URL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "errors.h"
#include "health.h"
#include "pbutil.h"
#include "spec.h"

static HealthCheck hc(int64_t interval, uint32_t retries, int64_t start_period)
{
    HealthCheck h = PB_HEALTH_CHECK_INIT;

    h.interval_ms = interval;
    h.timeout_ms = 1000;
    h.retries = retries;
    h.start_period_ms = start_period;
    return h;
}

static void test_starting_until_first_success(void **state)
{
    HealthCheck h = hc(1000, 3, 0);
    health_probe_t p;

    health_probe_reset(&p, 0);
    assert_int_equal(p.state, HEALTH_STARTING);
    /* Fast probes while starting. */
    assert_int_equal(health_probe_interval(&p, &h), HEALTH_FAST_PROBE_MS);
    assert_int_equal(health_probe_result(&p, &h, 0, "refused", 250), HEALTH_STARTING);
    assert_int_equal(health_probe_result(&p, &h, 0, "refused", 500), HEALTH_STARTING);
    assert_string_equal(p.last_error, "refused");
    assert_int_equal(health_probe_result(&p, &h, 1, NULL, 750), HEALTH_HEALTHY);
    assert_int_equal(p.failures, 0);
    /* Then every interval. */
    assert_int_equal(health_probe_interval(&p, &h), 1000);
}

static void test_fast_failures_count_once_per_interval(void **state)
{
    HealthCheck h = hc(1000, 3, 0);
    health_probe_t p;
    int64_t t;

    health_probe_reset(&p, 0);
    /* Failing every 250 ms: unhealthy only after 3 intervals, as Docker. */
    for (t = 250; t < 3000; t += 250)
        assert_int_equal(health_probe_result(&p, &h, 0, "refused", t), HEALTH_STARTING);
    assert_int_equal(health_probe_result(&p, &h, 0, "refused", 3000), HEALTH_UNHEALTHY);
    assert_int_equal(p.failures, 3);
}

static void test_start_period(void **state)
{
    HealthCheck h = hc(1000, 1, 5000);
    health_probe_t p;

    health_probe_reset(&p, 10000);
    /* Failures inside the start period do not count. */
    assert_int_equal(health_probe_result(&p, &h, 0, "x", 11000), HEALTH_STARTING);
    assert_int_equal(health_probe_result(&p, &h, 0, "x", 14999), HEALTH_STARTING);
    assert_int_equal(p.failures, 0);
    assert_int_equal(health_probe_result(&p, &h, 0, "x", 15000), HEALTH_UNHEALTHY);

    /* A success inside the start period: from then on failures count. */
    health_probe_reset(&p, 0);
    assert_int_equal(health_probe_result(&p, &h, 1, NULL, 100), HEALTH_HEALTHY);
    assert_int_equal(health_probe_result(&p, &h, 0, "x", 1100), HEALTH_UNHEALTHY);
}

static void test_retries_in_a_row_and_recovery(void **state)
{
    HealthCheck h = hc(1000, 3, 0);
    health_probe_t p;

    health_probe_reset(&p, 0);
    assert_int_equal(health_probe_result(&p, &h, 1, NULL, 250), HEALTH_HEALTHY);
    assert_int_equal(health_probe_result(&p, &h, 0, "HTTP 404", 1250), HEALTH_HEALTHY);
    assert_int_equal(health_probe_result(&p, &h, 0, "HTTP 404", 2250), HEALTH_HEALTHY);
    /* A success in between starts the count again. */
    assert_int_equal(health_probe_result(&p, &h, 1, NULL, 3250), HEALTH_HEALTHY);
    assert_int_equal(health_probe_result(&p, &h, 0, "HTTP 404", 4250), HEALTH_HEALTHY);
    assert_int_equal(health_probe_result(&p, &h, 0, "HTTP 404", 5250), HEALTH_HEALTHY);
    assert_int_equal(health_probe_result(&p, &h, 0, "HTTP 404", 6250), HEALTH_UNHEALTHY);
    assert_string_equal(p.last_error, "HTTP 404");
    /* Unhealthy recovers on a success. */
    assert_int_equal(health_probe_result(&p, &h, 1, NULL, 7250), HEALTH_HEALTHY);
    assert_string_equal(p.last_error, "");
}

static void test_zero_retries_is_one(void **state)
{
    HealthCheck h = hc(1000, 0, 0);
    health_probe_t p;

    health_probe_reset(&p, 0);
    assert_int_equal(health_probe_result(&p, &h, 1, NULL, 10), HEALTH_HEALTHY);
    assert_int_equal(health_probe_result(&p, &h, 0, "x", 1010), HEALTH_UNHEALTHY);
}

static void test_reset(void **state)
{
    HealthCheck h = hc(1000, 1, 0);
    health_probe_t p;

    health_probe_reset(&p, 0);
    health_probe_result(&p, &h, 1, NULL, 10);
    health_probe_result(&p, &h, 0, "x", 1010);
    assert_int_equal(p.state, HEALTH_UNHEALTHY);
    health_probe_reset(&p, 2000);
    assert_int_equal(p.state, HEALTH_STARTING);
    assert_int_equal(p.failures, 0);
    assert_false(p.passed);
}

static void test_combine_and_engine(void **state)
{
    assert_int_equal(health_combine(HEALTH_NONE, HEALTH_NONE), HEALTH_NONE);
    assert_int_equal(health_combine(HEALTH_HEALTHY, HEALTH_NONE), HEALTH_HEALTHY);
    assert_int_equal(health_combine(HEALTH_HEALTHY, HEALTH_STARTING), HEALTH_STARTING);
    assert_int_equal(health_combine(HEALTH_UNHEALTHY, HEALTH_HEALTHY), HEALTH_UNHEALTHY);
    assert_int_equal(health_combine(HEALTH_STARTING, HEALTH_UNHEALTHY), HEALTH_UNHEALTHY);
    assert_int_equal(health_from_engine(ENGINE_HEALTH_NONE), HEALTH_NONE);
    assert_int_equal(health_from_engine(ENGINE_HEALTH_STARTING), HEALTH_STARTING);
    assert_int_equal(health_from_engine(ENGINE_HEALTH_HEALTHY), HEALTH_HEALTHY);
    assert_int_equal(health_from_engine(ENGINE_HEALTH_UNHEALTHY), HEALTH_UNHEALTHY);
}

static void test_which_checks(void **state)
{
    ServiceSpec *s = spec_new();

    assert_false(health_has_probe(s));
    assert_false(health_has_engine_check(s));
    pb_set_str(&s->health->http_path, "/health");
    assert_true(health_has_probe(s));
    pb_push_str(&s->health->n_test, &s->health->test, "NONE");
    assert_false(health_has_engine_check(s));
    free(s->health->test[0]);
    s->health->test[0] = strdup("CMD");
    pb_push_str(&s->health->n_test, &s->health->test, "true");
    assert_true(health_has_engine_check(s));
    assert_false(health_has_probe(NULL));
    pb_free(s);
}

static void test_url(void **state)
{
    ServiceSpec *s = spec_new();
    PortConfig *p = PB_NEW(PortConfig);
    engine_port_t ports[2] = { { 9090, 40001 }, { 8080, 40002 } };
    char url[128], err[128];

    p->published = 80;
    p->target = 8080;
    pb_push_msg(&s->n_ports, (void ***)&s->ports, p);
    pb_set_str(&s->health->http_path, "/health");
    /* The service's first port by default... */
    assert_int_equal(health_probe_url(s, "127.0.0.2", ports, 2, url, sizeof(url), err,
                                      sizeof(err)), 0);
    assert_string_equal(url, "http://127.0.0.2:40002/health");
    /* ...or http_port. */
    s->health->http_port = 9090;
    assert_int_equal(health_probe_url(s, "127.0.0.2", ports, 2, url, sizeof(url), err,
                                      sizeof(err)), 0);
    assert_string_equal(url, "http://127.0.0.2:40001/health");
    /* Not published (yet). */
    ports[0].host_port = 0;
    assert_int_equal(health_probe_url(s, "127.0.0.2", ports, 2, url, sizeof(url), err,
                                      sizeof(err)), SKIFF_ENOTFOUND);
    assert_string_equal(err, "port 9090 is not published");
    assert_int_equal(health_probe_url(s, "127.0.0.2", ports, 2, url, 10, err, sizeof(err)),
                     SKIFF_ENOTFOUND);
    s->health->http_port = 0;
    assert_int_equal(health_probe_url(s, "127.0.0.2", ports, 2, url, 10, err, sizeof(err)),
                     SKIFF_EINVAL);
    pb_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_starting_until_first_success),
        cmocka_unit_test(test_fast_failures_count_once_per_interval),
        cmocka_unit_test(test_start_period),
        cmocka_unit_test(test_retries_in_a_row_and_recovery),
        cmocka_unit_test(test_zero_retries_is_one),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_combine_and_engine),
        cmocka_unit_test(test_which_checks),
        cmocka_unit_test(test_url),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
