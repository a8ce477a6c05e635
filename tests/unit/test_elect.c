/* Unit tests of elect (controller/elect.c): the etcd store's decisions
 * without I/O, as tables of cases: who a campaign made leader, whether a
 * lease still holds, whether a prefix is this cluster's, how batches split.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "elect.h"

static void test_who(void **state)
{
    elect_who_t me = { "127.0.0.1:7400", "0123456789abcdef0123456789abcdef" }, back;
    char buf[256], tiny[16];
    size_t n = elect_who_encode(&me, "0.1.0", 1700000000000, buf, sizeof(buf));

    assert_true(n > 0);
    assert_int_equal(elect_who_decode((const uint8_t *)buf, n, &back), 0);
    assert_string_equal(back.address, me.address);
    assert_string_equal(back.instance, me.instance);
    assert_int_equal(elect_who_encode(&me, "0.1.0", 1, tiny, sizeof(tiny)), 0);
    assert_int_equal(elect_who_decode((const uint8_t *)"{}", 2, &back), -1);
    assert_int_equal(elect_who_decode((const uint8_t *)"x", 1, &back), -1);
    assert_int_equal(elect_who_decode(NULL, 0, &back), -1);
    assert_int_equal(elect_who_decode((const uint8_t *)"{\"address\":1,\"instance\":\"a\"}", 28,
                                      &back), -1);
}

/* A failed campaign's answer: the leader key as its range found it. */
static etcd_txn_res_t lost_to(const char *value, int64_t lease, int64_t create, etcd_kv_t *kv,
                              etcd_range_res_t *range)
{
    etcd_txn_res_t res = { .revision = 40, .succeeded = 0, .ranges = range, .n_ranges = 1 };

    memset(kv, 0, sizeof(*kv));
    kv->key = (char *)"/p/leader";
    kv->value = (uint8_t *)value;
    kv->len = value ? strlen(value) : 0;
    kv->lease = lease;
    kv->create_revision = create;
    *range = (etcd_range_res_t){ .revision = 40, .kvs = value ? kv : NULL, .n = value ? 1 : 0 };
    return res;
}

static void test_campaign_outcome(void **state)
{
    const char *me = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    char other[256], mine[256];
    elect_who_t who = { "127.0.0.1:7402", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" }, mewho = { "127.0.0.1:7401", "" },
                leader;
    etcd_range_res_t range;
    etcd_kv_t kv;
    etcd_txn_res_t res;
    int64_t term;

    snprintf(mewho.instance, sizeof(mewho.instance), "%s", me);
    assert_true(elect_who_encode(&who, "", 0, other, sizeof(other)) > 0);
    assert_true(elect_who_encode(&mewho, "", 0, mine, sizeof(mine)) > 0);

    /* Won: the key's create revision is the txn's. */
    res = (etcd_txn_res_t){ .revision = 77, .succeeded = 1 };
    assert_int_equal(elect_campaign_outcome(&res, me, 5, &term, &leader), ELECT_WON);
    assert_int_equal(term, 77);

    /* Another leads: follow it. */
    res = lost_to(other, 9, 30, &kv, &range);
    assert_int_equal(elect_campaign_outcome(&res, me, 5, &term, &leader), ELECT_FOLLOW);
    assert_string_equal(leader.address, "127.0.0.1:7402");

    /* The key this controller made with this lease (an attempt whose answer
     * was lost, made again): won, at the key's creation. */
    res = lost_to(mine, 5, 33, &kv, &range);
    assert_int_equal(elect_campaign_outcome(&res, me, 5, &term, &leader), ELECT_WON);
    assert_int_equal(term, 33);

    /* Its key of an older lease: not its term any more; it follows (and
     * the key expires). */
    res = lost_to(mine, 4, 33, &kv, &range);
    assert_int_equal(elect_campaign_outcome(&res, me, 5, &term, &leader), ELECT_FOLLOW);
    assert_int_equal(elect_campaign_outcome(&res, me, 0, &term, &leader), ELECT_FOLLOW);

    /* Gone between the compare and the read: again. */
    res = lost_to(NULL, 0, 0, &kv, &range);
    assert_int_equal(elect_campaign_outcome(&res, me, 5, &term, &leader), ELECT_AGAIN);
    res.n_ranges = 0;
    assert_int_equal(elect_campaign_outcome(&res, me, 5, &term, &leader), ELECT_AGAIN);

    /* A key skiff did not write: nobody to follow, and not ours. */
    res = lost_to("garbage", 5, 3, &kv, &range);
    assert_int_equal(elect_campaign_outcome(&res, me, 5, &term, &leader), ELECT_FOLLOW);
    assert_string_equal(leader.address, "");
}

static void test_lease_holds(void **state)
{
    static const struct {
        uint64_t now, ok;
        int64_t ttl;
        int holds;
    } cases[] = {
        { 1000, 1000, 3000, 1 }, { 3999, 1000, 3000, 1 }, { 4000, 1000, 3000, 0 },
        { 9000, 1000, 3000, 0 }, { 1000, 0, 3000, 0 } /* never answered */,
        { 1000, 900, 0, 0 },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(elect_lease_holds(cases[i].now, cases[i].ok, cases[i].ttl),
                         cases[i].holds);
    assert_int_equal(elect_ttl_s(3000), 3);
    assert_int_equal(elect_ttl_s(3001), 4);
    assert_int_equal(elect_ttl_s(1000), 2);
}

static void test_judge(void **state)
{
    char why[512];
    elect_found_t ours = { .has_cluster = 1, .cluster_id = "c1", .store_version = 1,
                           .has_tokens = 1, .keys = 9 };
    elect_found_t f;

    assert_int_equal(elect_judge(&ours, "", "/skiff/a/", why, sizeof(why)), ELECT_OURS);
    assert_int_equal(elect_judge(&ours, "c1", "/skiff/a/", why, sizeof(why)), ELECT_OURS);
    /* The data dir of another cluster. */
    assert_int_equal(elect_judge(&ours, "c2", "/skiff/a/", why, sizeof(why)), ELECT_REFUSE);
    assert_non_null(strstr(why, "holds cluster c1, but this data dir belongs to cluster c2"));
    /* Keys that are not a skiff cluster's. */
    f = (elect_found_t){ .keys = 3 };
    assert_int_equal(elect_judge(&f, "", "/x/", why, sizeof(why)), ELECT_REFUSE);
    assert_non_null(strstr(why, "--store-prefix /x/ holds 3 keys that are not a skiff cluster's"));
    /* A newer store. */
    f = ours;
    f.store_version = 2;
    assert_int_equal(elect_judge(&f, "", "/x/", why, sizeof(why)), ELECT_REFUSE);
    assert_non_null(strstr(why, "store version 2"));
    /* A migration under way: wait. */
    f = ours;
    f.migrating = 1;
    assert_int_equal(elect_judge(&f, "", "/x/", why, sizeof(why)), ELECT_WAIT);
    /* No tokens. */
    f = ours;
    f.has_tokens = 0;
    assert_int_equal(elect_judge(&f, "", "/x/", why, sizeof(why)), ELECT_REFUSE);
}

static void test_split(void **state)
{
    size_t sizes[300], ends[300];

    for (size_t i = 0; i < 300; i++)
        sizes[i] = 100;
    /* By operations: 127 + 127 + 46. */
    assert_int_equal(elect_split(sizes, 300, 127, 1 << 20, ends), 3);
    assert_int_equal(ends[0], 127);
    assert_int_equal(ends[1], 254);
    assert_int_equal(ends[2], 300);
    /* By bytes: 10 per part. */
    assert_int_equal(elect_split(sizes, 300, 127, 1000, ends), 30);
    assert_int_equal(ends[0], 10);
    assert_int_equal(ends[29], 300);
    /* One operation larger than a part: a part of its own. */
    sizes[5] = 5000;
    assert_int_equal(elect_split(sizes, 8, 127, 1000, ends), 3);
    assert_int_equal(ends[0], 5);
    assert_int_equal(ends[1], 6);
    assert_int_equal(ends[2], 8);
    /* Nothing: no part. */
    assert_int_equal(elect_split(sizes, 0, 127, 1000, ends), 0);
    /* The defaults leave room under etcd's 128 operations. */
    assert_true(ELECT_TXN_OPS <= 128);
    assert_true(ELECT_TXN_BYTES < ((size_t)3 << 19));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_who),
        cmocka_unit_test(test_campaign_outcome),
        cmocka_unit_test(test_lease_holds),
        cmocka_unit_test(test_judge),
        cmocka_unit_test(test_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
