/* Unit tests of proto/buf: init, append, consume, compact, reserve, growth
 * bounded by the owner's limit, and reuse of a drained buffer. A random
 * sequence of appends and consumes is checked against a plain array model.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"

static void test_init_and_free(void **state)
{
    buf_t b;

    assert_int_equal(buf_init(&b, 64), 0);
    assert_non_null(b.start);
    assert_int_equal(buf_cap(&b), 64);
    assert_int_equal(buf_len(&b), 0);
    assert_int_equal(buf_room(&b), 64);
    assert_ptr_equal(b.pos, b.start);
    assert_ptr_equal(b.last, b.start);
    buf_free(&b);
    assert_null(b.start);
    assert_null(b.end);
    assert_null(b.pos);
    assert_null(b.last);
    buf_free(&b); /* a freed buffer frees again harmlessly */
}

static void test_init_zero_allocates_nothing(void **state)
{
    buf_t b;

    assert_int_equal(buf_init(&b, 0), 0);
    assert_null(b.start);
    assert_int_equal(buf_cap(&b), 0);
    assert_int_equal(buf_len(&b), 0);
    assert_int_equal(buf_room(&b), 0);
    assert_int_equal(buf_append(&b, "abc", 3, 1024), 0);
    assert_int_equal(buf_len(&b), 3);
    assert_memory_equal(b.pos, "abc", 3);
    buf_free(&b);
}

static void test_static_init_grows_on_append(void **state)
{
    buf_t b = BUF_INIT;

    assert_int_equal(buf_len(&b), 0);
    assert_int_equal(buf_cap(&b), 0);
    assert_int_equal(buf_append(&b, "hello", 5, 1 << 20), 0);
    assert_int_equal(buf_len(&b), 5);
    assert_true(buf_cap(&b) >= 5);
    assert_memory_equal(b.pos, "hello", 5);
    buf_free(&b);
}

static void test_append_zero_bytes(void **state)
{
    buf_t b;

    assert_int_equal(buf_init(&b, 8), 0);
    assert_int_equal(buf_append(&b, NULL, 0, 8), 0);
    assert_int_equal(buf_len(&b), 0);
    assert_int_equal(buf_append(&b, "12345678", 8, 8), 0);
    assert_int_equal(buf_append(&b, NULL, 0, 8), 0); /* full, but 0 bytes fit */
    assert_int_equal(buf_len(&b), 8);
    buf_free(&b);
}

static void test_append_and_consume(void **state)
{
    buf_t b;

    assert_int_equal(buf_init(&b, 32), 0);
    assert_int_equal(buf_append(&b, "hello", 5, 32), 0);
    assert_int_equal(buf_append(&b, " world", 6, 32), 0);
    assert_int_equal(buf_len(&b), 11);
    assert_memory_equal(b.pos, "hello world", 11);

    buf_consume(&b, 2);
    assert_int_equal(buf_len(&b), 9);
    assert_memory_equal(b.pos, "llo world", 9);
    assert_ptr_equal(b.pos, b.start + 2);

    buf_consume(&b, 0);
    assert_int_equal(buf_len(&b), 9);

    buf_consume(&b, 9);
    assert_int_equal(buf_len(&b), 0);
    /* Drained: back to the start of the allocation. */
    assert_ptr_equal(b.pos, b.start);
    assert_ptr_equal(b.last, b.start);
    assert_int_equal(buf_room(&b), 32);
    buf_free(&b);
}

static void test_reuse_after_drain(void **state)
{
    buf_t b;
    char *start;

    assert_int_equal(buf_init(&b, 16), 0);
    start = b.start;
    for (int round = 0; round < 100; round++) {
        char chunk[16];
        memset(chunk, 'a' + round % 26, sizeof(chunk));
        /* The whole allocation is usable every round without growing. */
        assert_int_equal(buf_append(&b, chunk, sizeof(chunk), 16), 0);
        assert_ptr_equal(b.start, start);
        assert_int_equal(buf_cap(&b), 16);
        assert_memory_equal(b.pos, chunk, sizeof(chunk));
        buf_consume(&b, 5);
        buf_consume(&b, 11);
        assert_int_equal(buf_len(&b), 0);
        assert_ptr_equal(b.pos, b.start);
    }
    buf_free(&b);
}

static void test_compact(void **state)
{
    buf_t b;

    assert_int_equal(buf_init(&b, 16), 0);
    buf_compact(&b); /* empty, at start: nothing to do */
    assert_ptr_equal(b.pos, b.start);

    assert_int_equal(buf_append(&b, "0123456789", 10, 16), 0);
    buf_compact(&b); /* already at start */
    assert_memory_equal(b.pos, "0123456789", 10);

    buf_consume(&b, 7);
    assert_int_equal(buf_room(&b), 6);
    buf_compact(&b);
    assert_ptr_equal(b.pos, b.start);
    assert_int_equal(buf_len(&b), 3);
    assert_memory_equal(b.pos, "789", 3);
    assert_int_equal(buf_room(&b), 13);
    buf_free(&b);
}

static void test_compact_overlapping(void **state)
{
    buf_t b;
    char data[100];

    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (char)i;
    assert_int_equal(buf_init(&b, sizeof(data)), 0);
    assert_int_equal(buf_append(&b, data, sizeof(data), sizeof(data)), 0);
    buf_consume(&b, 10); /* 90 bytes move 10 to the left: they overlap */
    buf_compact(&b);
    assert_int_equal(buf_len(&b), 90);
    assert_memory_equal(b.pos, data + 10, 90);
    buf_free(&b);
}

static void test_reserve_enough_room_is_a_no_op(void **state)
{
    buf_t b;
    char *start;

    assert_int_equal(buf_init(&b, 32), 0);
    start = b.start;
    assert_int_equal(buf_append(&b, "abcdef", 6, 32), 0);
    buf_consume(&b, 2);
    assert_int_equal(buf_reserve(&b, 26, 32), 0);
    assert_ptr_equal(b.start, start);
    assert_ptr_equal(b.pos, start + 2); /* no compaction was needed */
    assert_memory_equal(b.pos, "cdef", 4);
    buf_free(&b);
}

static void test_reserve_compacts_before_growing(void **state)
{
    buf_t b;

    assert_int_equal(buf_init(&b, 16), 0);
    assert_int_equal(buf_append(&b, "0123456789AB", 12, 1024), 0);
    buf_consume(&b, 10);
    /* 4 bytes of room at the end, 14 once compacted: enough for 10. */
    assert_int_equal(buf_reserve(&b, 10, 1024), 0);
    assert_int_equal(buf_cap(&b), 16);
    assert_ptr_equal(b.pos, b.start);
    assert_int_equal(buf_len(&b), 2);
    assert_memory_equal(b.pos, "AB", 2);
    assert_true(buf_room(&b) >= 10);
    buf_free(&b);
}

static void test_reserve_grows_by_doubling(void **state)
{
    buf_t b;

    assert_int_equal(buf_init(&b, 16), 0);
    assert_int_equal(buf_append(&b, "0123456789abcdef", 16, 1 << 20), 0);
    assert_int_equal(buf_reserve(&b, 1, 1 << 20), 0);
    assert_int_equal(buf_cap(&b), 32);
    assert_int_equal(buf_len(&b), 16);
    assert_memory_equal(b.pos, "0123456789abcdef", 16);
    /* Several doublings at once when a lot is asked for. */
    assert_int_equal(buf_reserve(&b, 100, 1 << 20), 0);
    assert_int_equal(buf_cap(&b), 128);
    assert_true(buf_room(&b) >= 100);
    buf_free(&b);
}

static void test_growth_clamped_to_max(void **state)
{
    buf_t b;
    char data[700];

    memset(data, 'x', sizeof(data));
    assert_int_equal(buf_init(&b, 600), 0);
    assert_int_equal(buf_append(&b, data, 600, 1000), 0);
    /* Doubling 600 would pass 1000: the allocation stops at max. */
    assert_int_equal(buf_reserve(&b, 400, 1000), 0);
    assert_int_equal(buf_cap(&b), 1000);
    assert_int_equal(buf_append(&b, data, 400, 1000), 0);
    assert_int_equal(buf_len(&b), 1000);
    buf_free(&b);
}

static void test_growth_from_empty_never_passes_small_max(void **state)
{
    buf_t b = BUF_INIT;

    /* A limit below the first allocation's usual size: still never more. */
    assert_int_equal(buf_append(&b, "abc", 3, 100), 0);
    assert_true(buf_cap(&b) <= 100);
    assert_int_equal(buf_reserve(&b, 97, 100), 0);
    assert_true(buf_cap(&b) <= 100);
    assert_int_equal(buf_reserve(&b, 98, 100), -ENOBUFS);
    buf_free(&b);
}

static void test_growth_bounded_by_max(void **state)
{
    buf_t b = BUF_INIT;
    const size_t max = 1000;
    char byte = 'z';
    size_t total = 0;

    /* Fill exactly to max, one odd-sized piece at a time. */
    while (total + 7 <= max) {
        assert_int_equal(buf_append(&b, "1234567", 7, max), 0);
        total += 7;
        assert_true(buf_cap(&b) <= max);
    }
    while (total < max) {
        assert_int_equal(buf_append(&b, &byte, 1, max), 0);
        total++;
    }
    assert_int_equal(buf_len(&b), max);
    assert_true(buf_cap(&b) <= max);

    /* One more byte is refused and nothing changes. */
    assert_int_equal(buf_append(&b, &byte, 1, max), -ENOBUFS);
    assert_int_equal(buf_reserve(&b, 1, max), -ENOBUFS);
    assert_int_equal(buf_len(&b), max);
    assert_memory_equal(b.pos, "1234567", 7);

    /* After a consume there is room again (by compaction, not growth). */
    buf_consume(&b, 10);
    assert_int_equal(buf_append(&b, "0123456789", 10, max), 0);
    assert_int_equal(buf_append(&b, &byte, 1, max), -ENOBUFS);
    assert_true(buf_cap(&b) <= max);
    buf_free(&b);
}

static void test_reserve_refuses_past_max(void **state)
{
    buf_t b;

    assert_int_equal(buf_init(&b, 8), 0);
    assert_int_equal(buf_reserve(&b, 101, 100), -ENOBUFS);
    assert_int_equal(buf_reserve(&b, SIZE_MAX, 100), -ENOBUFS);
    assert_int_equal(buf_reserve(&b, SIZE_MAX, SIZE_MAX - 1), -ENOBUFS);
    assert_int_equal(buf_append(&b, "12345", 5, 100), 0);
    /* unread data plus n would pass max */
    assert_int_equal(buf_reserve(&b, 96, 100), -ENOBUFS);
    assert_int_equal(buf_reserve(&b, SIZE_MAX - 2, SIZE_MAX - 1), -ENOBUFS);
    assert_int_equal(buf_reserve(&b, 95, 100), 0);
    assert_int_equal(buf_len(&b), 5);
    assert_memory_equal(b.pos, "12345", 5);
    assert_int_equal(buf_cap(&b), 100);
    buf_free(&b);
}

static void test_failed_append_leaves_buffer_intact(void **state)
{
    buf_t b;

    assert_int_equal(buf_init(&b, 4), 0);
    assert_int_equal(buf_append(&b, "abcd", 4, 6), 0);
    buf_consume(&b, 1);
    assert_int_equal(buf_append(&b, "efgh", 4, 6), -ENOBUFS);
    assert_int_equal(buf_len(&b), 3);
    assert_memory_equal(b.pos, "bcd", 3);
    assert_int_equal(buf_append(&b, "efg", 3, 6), 0);
    assert_memory_equal(b.pos, "bcdefg", 6);
    buf_free(&b);
}

/* A deterministic generator, so that a failure reproduces. */
static uint32_t rng_next(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void test_random_against_model(void **state)
{
    enum { MAX = 5000 };
    static char model[1 << 20];
    size_t mpos = 0, mlast = 0;
    uint32_t seed = 12345;
    unsigned char chunk[700];
    buf_t b = BUF_INIT;
    unsigned char next = 0;

    for (int i = 0; i < 20000; i++) {
        uint32_t r = rng_next(&seed);
        size_t len = buf_len(&b);

        assert_int_equal(len, mlast - mpos);
        if (r % 3 != 0) {
            size_t n = rng_next(&seed) % sizeof(chunk);
            int rc;
            for (size_t k = 0; k < n; k++)
                chunk[k] = next++;
            rc = buf_append(&b, chunk, n, MAX);
            if (len + n > MAX) {
                assert_int_equal(rc, -ENOBUFS);
                next = (unsigned char)(next - n);
            } else {
                assert_int_equal(rc, 0);
                if (mlast + n > sizeof(model)) { /* keep the model in bounds */
                    memmove(model, model + mpos, mlast - mpos);
                    mlast -= mpos;
                    mpos = 0;
                }
                memcpy(model + mlast, chunk, n);
                mlast += n;
            }
        } else if (len) {
            size_t n = rng_next(&seed) % (len + 1);
            buf_consume(&b, n);
            mpos += n;
        }
        assert_true(buf_cap(&b) <= MAX);
        assert_int_equal(buf_len(&b), mlast - mpos);
        if (buf_len(&b))
            assert_memory_equal(b.pos, model + mpos, buf_len(&b));
        else
            assert_ptr_equal(b.pos, b.start);
    }
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_and_free),
        cmocka_unit_test(test_init_zero_allocates_nothing),
        cmocka_unit_test(test_static_init_grows_on_append),
        cmocka_unit_test(test_append_zero_bytes),
        cmocka_unit_test(test_append_and_consume),
        cmocka_unit_test(test_reuse_after_drain),
        cmocka_unit_test(test_compact),
        cmocka_unit_test(test_compact_overlapping),
        cmocka_unit_test(test_reserve_enough_room_is_a_no_op),
        cmocka_unit_test(test_reserve_compacts_before_growing),
        cmocka_unit_test(test_reserve_grows_by_doubling),
        cmocka_unit_test(test_growth_clamped_to_max),
        cmocka_unit_test(test_growth_from_empty_never_passes_small_max),
        cmocka_unit_test(test_growth_bounded_by_max),
        cmocka_unit_test(test_reserve_refuses_past_max),
        cmocka_unit_test(test_failed_append_leaves_buffer_intact),
        cmocka_unit_test(test_random_against_model),
    };

    return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
