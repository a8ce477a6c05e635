/* Unit tests of proto/duration: Docker-style durations ("500ms", "1m30s")
 * parsed into milliseconds and formatted back.
 *
 * Contract points that duration.h leaves to the code, decided here: a number
 * may have a fraction on either side of the point (".5s" and "1.s" are
 * accepted, as Go's time.ParseDuration, which Docker uses, accepts them);
 * digits past the ninth after the point are dropped; a whole minute formats
 * as "1m" (the shortest form), a whole hour as "1h0m0s".
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "duration.h"
#include "errors.h"

#define H 3600000LL
#define M 60000LL
#define S 1000LL

/* The largest duration that fits: INT64_MAX nanoseconds, in whole ms. */
#define MAX_MS (INT64_MAX / 1000000)

static void test_parse_valid(void **state)
{
    static const struct {
        const char *in;
        int64_t ms;
    } cases[] = {
        { "0", 0 },
        { "0s", 0 },
        { "0ms", 0 },
        { "0h0m0s", 0 },
        { "1ms", 1 },
        { "500ms", 500 },
        { "3s", 3 * S },
        { "1m30s", M + 30 * S },
        { "1h", H },
        { "1.5s", 1500 },
        { "2h45m", 2 * H + 45 * M },
        { "1h2m3.5s", H + 2 * M + 3500 },
        { "90m", 90 * M },
        { "1.5h", H + 30 * M },
        { "0.5m", 30 * S },
        { "1.001s", 1001 },
        { "10s500ms", 10500 },
        { "1s1s", 2 * S },           /* pairs add up */
        { "1000000us", 1000 },
        { "1000000000ns", 1000 },
        { "2000000ns", 2 },
        { "007s", 7 * S },
        { ".5s", 500 },              /* a fraction without a whole part */
        { "1.s", 1000 },             /* a point without a fraction */
        { "1.000000000s", 1000 },
        { "1.0000000009s", 1000 },   /* past 1e-9 of a unit is dropped */
        { "24h", 24 * H },
        { "2562047h", 2562047 * H }, /* the most whole hours that fit */
        { "9223372036854775807ns", MAX_MS + 1 }, /* rounds up to whole ms */
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t ms = -1;
        int rc = duration_parse(cases[i].in, &ms);
        if (rc != 0 || ms != cases[i].ms)
            fail_msg("duration_parse(\"%s\") = %d, %lld; want 0, %lld", cases[i].in, rc,
                     (long long)ms, (long long)cases[i].ms);
    }
}

static void test_parse_rounds_sub_millisecond_up(void **state)
{
    static const struct {
        const char *in;
        int64_t ms;
    } cases[] = {
        { "100us", 1 },
        { "1ns", 1 },
        { "999us", 1 },
        { "1000us", 1 },
        { "1001us", 2 },
        { "1.1ms", 2 },
        { "0.0001ms", 1 },
        { "1s1ns", 1001 },
        { "0.0001s", 1 },
        { "0us", 0 },                /* zero stays zero */
        { "0.0s", 0 },
        { "0.0000000001s", 0 },      /* finer than 1ns of a second: nothing */
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t ms = -1;
        int rc = duration_parse(cases[i].in, &ms);
        if (rc != 0 || ms != cases[i].ms)
            fail_msg("duration_parse(\"%s\") = %d, %lld; want 0, %lld", cases[i].in, rc,
                     (long long)ms, (long long)cases[i].ms);
    }
}

static void test_parse_invalid(void **state)
{
    static const char *const cases[] = {
        "",
        "5",               /* a bare number */
        "00",
        "1.5",
        "-1s",             /* no sign */
        "+1s",
        "1x",              /* unknown unit */
        "1sec",
        "1S",
        "1H",
        "1mss",
        "1d",
        "s",               /* a unit without a number */
        "ms",
        ".s",
        ".",
        "1..5s",
        "1.5.5s",
        "1m 30s",          /* no spaces */
        " 1s",
        "1s ",
        "1 s",
        "1s\n",
        "1m30",            /* a trailing bare number */
        "1s-1s",
        "9999999999999h",  /* overflow: past ~292 years */
        "2562048h",
        "2562047.9h",      /* the fraction is what overflows */
        "2562047h47m17s",
        "9223372036854775808ns",
        "99999999999999999999999s",
        "106751d",
        "1h9223372036854775807ns",
        "5000000000000000000ns5000000000000000000ns", /* the sum overflows */
        "0x10s",
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t ms = 12345;
        int rc = duration_parse(cases[i], &ms);
        if (rc != SKIFF_EINVAL || ms != 12345)
            fail_msg("duration_parse(\"%s\") = %d, %lld; want SKIFF_EINVAL, untouched",
                     cases[i], rc, (long long)ms);
    }
    {
        int64_t ms = 12345;
        assert_int_equal(duration_parse(NULL, &ms), SKIFF_EINVAL);
        assert_int_equal(ms, 12345);
    }
}

static void test_parse_near_the_limit(void **state)
{
    char s[64];
    int64_t ms;

    /* INT64_MAX ns = 2562047h47m16.854775807s */
    assert_int_equal(duration_parse("2562047h47m16.854775807s", &ms), 0);
    assert_int_equal(ms, MAX_MS + 1);
    assert_int_equal(duration_parse("2562047h47m16.854775808s", &ms), SKIFF_EINVAL);
    assert_int_equal(duration_parse("2562047h47m16.854s", &ms), 0);
    assert_int_equal(ms, MAX_MS);
    snprintf(s, sizeof(s), "%lldms", (long long)MAX_MS);
    assert_int_equal(duration_parse(s, &ms), 0);
    assert_int_equal(ms, MAX_MS);
    snprintf(s, sizeof(s), "%lldms", (long long)MAX_MS + 1);
    assert_int_equal(duration_parse(s, &ms), SKIFF_EINVAL);
}

static void test_format(void **state)
{
    static const struct {
        int64_t ms;
        const char *out;
    } cases[] = {
        { 0, "0s" },
        { 1, "1ms" },
        { 500, "500ms" },
        { 999, "999ms" },
        { 1000, "1s" },
        { 3000, "3s" },
        { 1500, "1.5s" },
        { 1001, "1.001s" },
        { 1010, "1.01s" },
        { 59999, "59.999s" },
        { 60000, "1m" },
        { 90000, "1m30s" },
        { 61500, "1m1.5s" },
        { 60001, "1m0.001s" },
        { 3599000, "59m59s" },
        { 3600000, "1h0m0s" },
        { 3605000, "1h0m5s" },
        { 7205000, "2h0m5s" },
        { 3600500, "1h0m0.5s" },
        { 9900000, "2h45m0s" },
        { 3723500, "1h2m3.5s" },
        { 100 * H, "100h0m0s" },
        { -5, "0s" },                 /* negative: nothing to wait */
        { INT64_MAX, "2562047788015h12m55.807s" },
    };
    char out[32];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(out, 'x', sizeof(out));
        assert_ptr_equal(duration_format(cases[i].ms, out, sizeof(out)), out);
        if (strcmp(out, cases[i].out) != 0)
            fail_msg("duration_format(%lld) = \"%s\", want \"%s\"", (long long)cases[i].ms,
                     out, cases[i].out);
    }
}

static void test_format_truncates_to_len(void **state)
{
    char out[4];

    duration_format(90000, out, sizeof(out));
    assert_string_equal(out, "1m3");
    duration_format(3723500, out, 1);
    assert_string_equal(out, "");
}

static void check_round_trip(int64_t ms)
{
    char out[32];
    int64_t back = -1;

    duration_format(ms, out, sizeof(out));
    if (duration_parse(out, &back) != 0 || back != ms)
        fail_msg("%lld formats as \"%s\", which parses as %lld", (long long)ms, out,
                 (long long)back);
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void test_format_parse_round_trip(void **state)
{
    static const int64_t fixed[] = {
        0, 1, 9, 10, 99, 100, 999, 1000, 1001, 1500, 59999, 60000, 60001, 90000,
        3599999, 3600000, 3600001, 86400000, 86399999, 2562047 * H, MAX_MS,
    };
    uint64_t seed = 88172645463325252ULL;

    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        check_round_trip(fixed[i]);
    for (int64_t ms = 0; ms < 5000; ms++)
        check_round_trip(ms);
    for (int i = 0; i < 20000; i++) {
        uint64_t r = rng_next(&seed);
        /* spread over the orders of magnitude, up to the limit */
        int64_t ms = (int64_t)(r % (uint64_t)MAX_MS) >> (rng_next(&seed) % 44);
        check_round_trip(ms);
    }
}

static void test_parse_format_round_trip(void **state)
{
    /* What a user writes comes back in Docker's form, same value. */
    static const struct {
        const char *in, *out;
    } cases[] = {
        { "90s", "1m30s" },
        { "1.5s", "1.5s" },
        { "1500ms", "1.5s" },
        { "60m", "1h0m0s" },
        { "100us", "1ms" },
        { "0", "0s" },
        { "2h45m", "2h45m0s" },
    };
    char out[32];
    int64_t ms;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(duration_parse(cases[i].in, &ms), 0);
        assert_string_equal(duration_format(ms, out, sizeof(out)), cases[i].out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_rounds_sub_millisecond_up),
        cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_parse_near_the_limit),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_truncates_to_len),
        cmocka_unit_test(test_format_parse_round_trip),
        cmocka_unit_test(test_parse_format_round_trip),
    };

    return cmocka_run_group_tests_name("duration", tests, NULL, NULL);
}
