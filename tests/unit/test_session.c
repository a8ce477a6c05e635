/* Unit tests of controller/session: the dashboard's bounded table of login
 * sessions (random ids and CSRF tokens, expiry, eviction at the bound) and
 * the reading of the session cookie out of a Cookie header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "errors.h"
#include "session.h"

static sessions_t *table(void)
{
    sessions_t *t = calloc(1, sizeof(*t));

    assert_non_null(t);
    return t;
}

static void test_create_find(void **state)
{
    sessions_t *t = table();
    const session_t *s = session_create(t, 1000);
    char id[SESSION_HEX + 1], csrf[SESSION_HEX + 1];

    (void)state;
    assert_non_null(s);
    assert_int_equal(strlen(s->id), SESSION_HEX);
    assert_int_equal(strlen(s->csrf), SESSION_HEX);
    assert_int_equal(strspn(s->id, "0123456789abcdef"), SESSION_HEX);
    assert_string_not_equal(s->id, s->csrf);
    assert_true(s->expires_ms == 1000 + SESSION_TTL_MS);
    snprintf(id, sizeof(id), "%s", s->id);
    snprintf(csrf, sizeof(csrf), "%s", s->csrf);
    assert_ptr_equal(session_find(t, id, 2000), s);
    assert_true(session_csrf_ok(s, csrf));
    assert_false(session_csrf_ok(s, NULL));
    assert_false(session_csrf_ok(s, ""));
    assert_false(session_csrf_ok(s, id));
    csrf[0] = csrf[0] == 'a' ? 'b' : 'a';
    assert_false(session_csrf_ok(s, csrf));
    /* an id that differs in one digit, a short one, an uppercase one */
    id[63] = id[63] == '0' ? '1' : '0';
    assert_null(session_find(t, id, 2000));
    assert_null(session_find(t, "abc", 2000));
    assert_null(session_find(t, NULL, 2000));
    assert_null(session_find(t, "", 2000));
    assert_int_equal(session_count(t, 2000), 1);
    free(t);
}

static void test_expiry(void **state)
{
    sessions_t *t = table();
    const session_t *s = session_create(t, 0);
    char id[SESSION_HEX + 1];

    (void)state;
    assert_non_null(s);
    snprintf(id, sizeof(id), "%s", s->id);
    assert_non_null(session_find(t, id, SESSION_TTL_MS - 1));
    assert_null(session_find(t, id, SESSION_TTL_MS));
    assert_null(session_find(t, id, 0)); /* freed once seen expired */
    assert_int_equal(session_count(t, 0), 0);
    free(t);
}

static void test_drop_and_clear(void **state)
{
    sessions_t *t = table();
    char a[SESSION_HEX + 1], b[SESSION_HEX + 1];

    (void)state;
    snprintf(a, sizeof(a), "%s", session_create(t, 0)->id);
    snprintf(b, sizeof(b), "%s", session_create(t, 0)->id);
    assert_string_not_equal(a, b);
    assert_int_equal(session_drop(t, a), 0);
    assert_int_equal(session_drop(t, a), SKIFF_ENOTFOUND);
    assert_int_equal(session_drop(t, NULL), SKIFF_ENOTFOUND);
    assert_null(session_find(t, a, 1));
    assert_non_null(session_find(t, b, 1));
    session_clear(t);
    assert_null(session_find(t, b, 1));
    assert_int_equal(session_count(t, 1), 0);
    free(t);
}

/* Past SESSION_MAX, a login ends the session closest to its end; the
 * table never grows. */
static void test_bound(void **state)
{
    sessions_t *t = table();
    char first[SESSION_HEX + 1], second[SESSION_HEX + 1];

    (void)state;
    snprintf(first, sizeof(first), "%s", session_create(t, 0)->id);
    snprintf(second, sizeof(second), "%s", session_create(t, 1)->id);
    for (int i = 2; i < SESSION_MAX; i++)
        assert_non_null(session_create(t, i));
    assert_int_equal(session_count(t, 100), SESSION_MAX);
    assert_non_null(session_create(t, 100));
    assert_int_equal(session_count(t, 100), SESSION_MAX);
    assert_null(session_find(t, first, 100));
    assert_non_null(session_find(t, second, 100));
    /* an expired slot is taken before a live one is ended */
    assert_non_null(session_create(t, 1 + SESSION_TTL_MS));
    assert_null(session_find(t, second, 1 + SESSION_TTL_MS));
    free(t);
}

static void test_cookie(void **state)
{
    const char *id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char h[256], out[SESSION_HEX + 1];

    (void)state;
    snprintf(h, sizeof(h), "skiff_session=%s", id);
    assert_int_equal(session_cookie_id(h, out), 0);
    assert_string_equal(out, id);
    snprintf(h, sizeof(h), "a=1; other_skiff_session=x;skiff_session=%s; b=2", id);
    assert_int_equal(session_cookie_id(h, out), 0);
    assert_string_equal(out, id);
    /* a bad value first, a good one after: the good one */
    snprintf(h, sizeof(h), "skiff_session=zz; skiff_session=%s", id);
    assert_int_equal(session_cookie_id(h, out), 0);
    assert_string_equal(out, id);
    assert_int_equal(session_cookie_id(NULL, out), SKIFF_ENOTFOUND);
    assert_int_equal(session_cookie_id("", out), SKIFF_ENOTFOUND);
    assert_int_equal(session_cookie_id("skiff_session=", out), SKIFF_ENOTFOUND);
    assert_int_equal(session_cookie_id("skiff_session=abc", out), SKIFF_ENOTFOUND);
    snprintf(h, sizeof(h), "skiff_session=%sX", id);
    assert_int_equal(session_cookie_id(h, out), SKIFF_ENOTFOUND);
    snprintf(h, sizeof(h), "skiff_session=%.63sG", id);
    assert_int_equal(session_cookie_id(h, out), SKIFF_ENOTFOUND);
    snprintf(h, sizeof(h), "xskiff_session=%s", id);
    assert_int_equal(session_cookie_id(h, out), SKIFF_ENOTFOUND);
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_find),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_drop_and_clear),
        cmocka_unit_test(test_bound),
        cmocka_unit_test(test_cookie),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
