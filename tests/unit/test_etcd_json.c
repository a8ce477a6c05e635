/* Unit tests of etcd_json (controller/etcd_json.c): base64, the request
 * bodies, and the answers of etcd 3.4's v3 JSON gateway, recorded from a
 * real etcd (etcd-server 3.4.23) with curl.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "etcd_json.h"

/* ---------------------------------------------------------------- base64 */

static void check_b64(const char *plain, const char *coded)
{
    char out[128];
    uint8_t back[128];
    size_t n;

    assert_int_equal(etcd_b64_len(strlen(plain)), strlen(coded));
    etcd_b64_encode((const uint8_t *)plain, strlen(plain), out);
    assert_string_equal(out, coded);
    assert_int_equal(etcd_b64_decode(coded, strlen(coded), back, &n), 0);
    assert_int_equal(n, strlen(plain));
    assert_memory_equal(back, plain, n);
}

static void test_b64_rfc4648(void **state)
{
    check_b64("", "");
    check_b64("f", "Zg==");
    check_b64("fo", "Zm8=");
    check_b64("foo", "Zm9v");
    check_b64("foob", "Zm9vYg==");
    check_b64("fooba", "Zm9vYmE=");
    check_b64("foobar", "Zm9vYmFy");
    check_b64("/skiff/default/leader", "L3NraWZmL2RlZmF1bHQvbGVhZGVy");
}

static void test_b64_binary(void **state)
{
    uint8_t all[256], back[256];
    char coded[400];
    size_t n;

    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    for (size_t len = 0; len <= 256; len += 37) {
        etcd_b64_encode(all, len, coded);
        assert_int_equal(strlen(coded), etcd_b64_len(len));
        assert_int_equal(etcd_b64_decode(coded, strlen(coded), back, &n), 0);
        assert_int_equal(n, len);
        assert_memory_equal(back, all, len);
    }
    etcd_b64_encode(all + 250, 6, coded);
    assert_string_equal(coded, "+vv8/f7/");
}

static void test_b64_refused(void **state)
{
    static const char *const bad[] = { "Zg=", "Zg", "Z===", "Zg=a", "Zm9v!A==", "Zm=vYg==",
                                       "Zg==Zg==", "Zm9v\n" };
    uint8_t out[64];
    size_t n;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(etcd_b64_decode(bad[i], strlen(bad[i]), out, &n), -1);
}

static void test_prefix_end(void **state)
{
    char *e = etcd_prefix_end("/skiff/");

    assert_string_equal(e, "/skiff0");
    free(e);
    e = etcd_prefix_end("a\xff");
    assert_string_equal(e, "b");
    free(e);
    e = etcd_prefix_end("\xff\xff");
    assert_string_equal(e, "");
    free(e);
}

/* -------------------------------------------------------------- requests */

static json_t *load(const char *body)
{
    json_error_t je;
    json_t *j = json_loads(body, 0, &je);

    if (!j)
        fail_msg("not JSON: %s: %s", je.text, body);
    return j;
}

static const char *field(json_t *o, const char *path)
{
    /* "a.b.0.c": objects by name, arrays by index */
    char buf[256], *save = NULL, *part;

    snprintf(buf, sizeof(buf), "%s", path);
    for (part = strtok_r(buf, ".", &save); part && o; part = strtok_r(NULL, ".", &save))
        o = json_is_array(o) ? json_array_get(o, (size_t)atoi(part)) : json_object_get(o, part);
    if (json_is_string(o))
        return json_string_value(o);
    if (json_is_true(o))
        return "true";
    return o ? "?" : NULL;
}

static void test_range_body(void **state)
{
    etcd_op_t op = { .kind = ETCD_OP_RANGE, .key = "/skiff/", .range_end = "/skiff0",
                     .limit = 500, .revision = 42, .keys_only = 1, .descend = 1 };
    char *body = etcd_json_range(&op);
    json_t *j = load(body);

    assert_string_equal(field(j, "key"), "L3NraWZmLw==");
    assert_string_equal(field(j, "range_end"), "L3NraWZmMA==");
    assert_string_equal(field(j, "limit"), "500");
    assert_string_equal(field(j, "revision"), "42");
    assert_string_equal(field(j, "keys_only"), "true");
    assert_string_equal(field(j, "sort_order"), "DESCEND");
    assert_null(field(j, "count_only"));
    json_decref(j);
    free(body);

    /* The end of the key space is the key "\0". */
    op = (etcd_op_t){ .kind = ETCD_OP_RANGE, .key = "a", .range_end = "" };
    body = etcd_json_range(&op);
    j = load(body);
    assert_string_equal(field(j, "range_end"), "AA==");
    json_decref(j);
    free(body);
}

static void test_txn_body(void **state)
{
    const uint8_t value[] = { 0, 1, 2, 0xff };
    etcd_cmp_t cmp[2] = {
        { .key = "/p/leader", .target = ETCD_CMP_CREATE, .result = ETCD_EQUAL, .number = 17 },
        { .key = "/p/meta/migrating", .target = ETCD_CMP_VALUE, .result = ETCD_NOT_EQUAL,
          .value = (const uint8_t *)"x", .len = 1 },
    };
    etcd_op_t success[2] = {
        { .kind = ETCD_OP_PUT, .key = "/p/tasks/a", .value = value, .len = sizeof(value),
          .lease = 7587 },
        { .kind = ETCD_OP_DELETE, .key = "/p/events/", .range_end = "/p/events/0005" },
    };
    etcd_op_t failure[1] = { { .kind = ETCD_OP_RANGE, .key = "/p/leader" } };
    etcd_txn_t txn = { cmp, 2, success, 2, failure, 1 };
    char *body = etcd_json_txn(&txn);
    json_t *j = load(body);

    assert_string_equal(field(j, "compare.0.target"), "CREATE");
    assert_string_equal(field(j, "compare.0.result"), "EQUAL");
    assert_string_equal(field(j, "compare.0.create_revision"), "17");
    assert_string_equal(field(j, "compare.0.key"), "L3AvbGVhZGVy");
    assert_string_equal(field(j, "compare.1.target"), "VALUE");
    assert_string_equal(field(j, "compare.1.result"), "NOT_EQUAL");
    assert_string_equal(field(j, "compare.1.value"), "eA==");
    assert_string_equal(field(j, "success.0.request_put.value"), "AAEC/w==");
    assert_string_equal(field(j, "success.0.request_put.lease"), "7587");
    assert_non_null(field(j, "success.1.request_delete_range.range_end"));
    assert_string_equal(field(j, "failure.0.request_range.key"), "L3AvbGVhZGVy");
    /* The size estimate is an upper bound of each operation's JSON. */
    for (int i = 0; i < 2; i++) {
        char *one = json_dumps(json_array_get(json_object_get(j, "success"), (size_t)i),
                               JSON_COMPACT);
        assert_true(strlen(one) <= etcd_op_size(&success[i]));
        free(one);
    }
    json_decref(j);
    free(body);
}

static void test_lease_and_watch_bodies(void **state)
{
    char *b = etcd_json_lease_grant(3);
    json_t *j = load(b);

    assert_string_equal(field(j, "TTL"), "3");
    json_decref(j);
    free(b);
    b = etcd_json_lease_id(2324035853623550471);
    j = load(b);
    assert_string_equal(field(j, "ID"), "2324035853623550471");
    json_decref(j);
    free(b);
    b = etcd_json_watch("/p/", "/p0", 19);
    j = load(b);
    assert_string_equal(field(j, "create_request.key"), "L3Av");
    assert_string_equal(field(j, "create_request.start_revision"), "19");
    json_decref(j);
    free(b);
}

/* ---------------------------------------------------- answers (recorded) */

static const char range_answer[] =
    "{\"header\":{\"cluster_id\":\"324952591200643719\",\"member_id\":\"3319814642761637952\","
    "\"revision\":\"2\",\"raft_term\":\"2\"},\"kvs\":[{\"key\":\"Zm9v\",\"create_revision\":\"2\","
    "\"mod_revision\":\"2\",\"version\":\"1\",\"value\":\"YmFy\"}],\"count\":\"1\"}";

static void test_parse_range(void **state)
{
    etcd_range_res_t r;
    char err[256];

    assert_int_equal(etcd_parse_range(range_answer, strlen(range_answer), &r, err, sizeof(err)), 0);
    assert_int_equal(r.revision, 2);
    assert_int_equal(r.count, 1);
    assert_int_equal(r.n, 1);
    assert_false(r.more);
    assert_string_equal(r.kvs[0].key, "foo");
    assert_int_equal(r.kvs[0].len, 3);
    assert_memory_equal(r.kvs[0].value, "bar", 3);
    assert_int_equal(r.kvs[0].create_revision, 2);
    assert_int_equal(r.kvs[0].mod_revision, 2);
    assert_int_equal(r.kvs[0].version, 1);
    etcd_range_res_free(&r);

    /* Nothing there: no kvs at all; a page: more; a key with a lease. */
    static const char empty[] = "{\"header\":{\"revision\":\"4\"}}";
    assert_int_equal(etcd_parse_range(empty, strlen(empty), &r, err, sizeof(err)), 0);
    assert_int_equal(r.n, 0);
    assert_int_equal(r.revision, 4);
    etcd_range_res_free(&r);
    static const char page[] = "{\"header\":{\"revision\":\"9\"},\"kvs\":[{\"key\":\"YQ==\","
        "\"create_revision\":\"5\",\"mod_revision\":\"8\",\"version\":\"2\",\"lease\":"
        "\"2324035853623550471\"}],\"more\":true,\"count\":\"3\"}";
    assert_int_equal(etcd_parse_range(page, strlen(page), &r, err, sizeof(err)), 0);
    assert_true(r.more);
    assert_int_equal(r.count, 3);
    assert_null(r.kvs[0].value); /* an empty value */
    assert_int_equal(r.kvs[0].lease, 2324035853623550471);
    etcd_range_res_free(&r);
}

static void test_parse_txn(void **state)
{
    static const char won[] = "{\"header\":{\"cluster_id\":\"324952591200643719\",\"member_id\":"
        "\"3319814642761637952\",\"revision\":\"5\",\"raft_term\":\"2\"},\"succeeded\":true,"
        "\"responses\":[{\"response_put\":{\"header\":{\"revision\":\"5\"}}}]}";
    static const char lost[] = "{\"header\":{\"cluster_id\":\"324952591200643719\",\"member_id\":"
        "\"3319814642761637952\",\"revision\":\"5\",\"raft_term\":\"2\"},\"responses\":[{"
        "\"response_range\":{\"header\":{\"revision\":\"5\"},\"count\":\"1\"}},{\"response_range\":"
        "{\"header\":{\"revision\":\"5\"},\"kvs\":[{\"key\":\"Zm9v\",\"create_revision\":\"2\","
        "\"mod_revision\":\"2\",\"version\":\"1\",\"value\":\"YmFy\"}],\"count\":\"1\"}}]}";
    etcd_txn_res_t t;
    char err[256];

    assert_int_equal(etcd_parse_txn(won, strlen(won), &t, err, sizeof(err)), 0);
    assert_true(t.succeeded);
    assert_int_equal(t.revision, 5);
    assert_int_equal(t.n_ranges, 1);
    assert_int_equal(t.ranges[0].n, 0);
    etcd_txn_res_free(&t);
    /* proto3 JSON leaves succeeded=false out */
    assert_int_equal(etcd_parse_txn(lost, strlen(lost), &t, err, sizeof(err)), 0);
    assert_false(t.succeeded);
    assert_int_equal(t.n_ranges, 2);
    assert_int_equal(t.ranges[0].count, 1);
    assert_int_equal(t.ranges[0].n, 0);
    assert_string_equal(t.ranges[1].kvs[0].key, "foo");
    etcd_txn_res_free(&t);
}

static void test_parse_lease(void **state)
{
    static const char grant[] = "{\"header\":{\"cluster_id\":\"324952591200643719\",\"revision\":"
        "\"2\",\"raft_term\":\"2\"},\"ID\":\"2324035853623550471\",\"TTL\":\"3\"}";
    static const char alive[] = "{\"result\":{\"header\":{\"revision\":\"4\"},\"ID\":"
        "\"2324035853623550477\",\"TTL\":\"3\"}}";
    static const char gone[] = "{\"result\":{\"header\":{\"revision\":\"4\"},\"ID\":"
        "\"2324035853623550477\"}}";
    int64_t id, ttl;
    char err[256];

    assert_int_equal(etcd_parse_lease(grant, strlen(grant), &id, &ttl, err, sizeof(err)), 0);
    assert_int_equal(id, 2324035853623550471);
    assert_int_equal(ttl, 3);
    assert_int_equal(etcd_parse_lease(alive, strlen(alive), &id, &ttl, err, sizeof(err)), 0);
    assert_int_equal(ttl, 3);
    assert_int_equal(etcd_parse_lease(gone, strlen(gone), &id, &ttl, err, sizeof(err)), 0);
    assert_int_equal(id, 2324035853623550477);
    assert_int_equal(ttl, 0);
}

static void test_parse_errors(void **state)
{
    static const char notfound[] = "{\"error\":\"etcdserver: requested lease not found\","
        "\"message\":\"etcdserver: requested lease not found\",\"code\":5}";
    static const char stream[] = "{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":"
        "\"etcdserver: no leader\",\"http_status\":\"Service Unavailable\"}}";
    etcd_status_t st;
    etcd_range_res_t r;
    int64_t id, ttl;
    char err[256];

    assert_int_equal(etcd_parse_error(notfound, strlen(notfound), &st), 0);
    assert_int_equal(st.code, ETCD_GRPC_NOT_FOUND);
    assert_string_equal(st.message, "etcdserver: requested lease not found");
    assert_int_equal(etcd_parse_error(stream, strlen(stream), &st), 0);
    assert_int_equal(st.code, ETCD_GRPC_UNAVAILABLE);
    assert_string_equal(st.message, "etcdserver: no leader");
    assert_int_equal(etcd_parse_error("<html>", 6, &st), -1);
    /* An error body is no answer. */
    assert_int_equal(etcd_parse_lease(notfound, strlen(notfound), &id, &ttl, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "lease not found"));
    /* Malformed answers are refused, never trusted. */
    static const char *const bad[] = {
        "", "[]", "{\"kvs\":{}}", "{\"kvs\":[{\"key\":\"!!\"}]}", "{\"kvs\":[{}]}",
        "{\"header\":{\"revision\":\"x\"}}", "{\"kvs\":[{\"key\":\"YQ==\",\"value\":3}]}",
        "{\"kvs\":[{\"key\":\"YQBi\"}]}", /* a NUL in a key */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(etcd_parse_range(bad[i], strlen(bad[i]), &r, err, sizeof(err)), -1);
}

static void test_parse_watch(void **state)
{
    static const char created[] = "{\"result\":{\"header\":{\"cluster_id\":\"324952591200643719\","
        "\"member_id\":\"3319814642761637952\",\"revision\":\"2\",\"raft_term\":\"2\"},"
        "\"created\":true}}";
    static const char events[] = "{\"result\":{\"header\":{\"revision\":\"4\"},\"events\":[{\"kv\":"
        "{\"key\":\"Zm9v\",\"create_revision\":\"2\",\"mod_revision\":\"3\",\"version\":\"2\","
        "\"value\":\"YmF6\"}},{\"type\":\"DELETE\",\"kv\":{\"key\":\"Zm9v\",\"mod_revision\":\"4\"}}]}}";
    static const char compacted[] = "{\"result\":{\"header\":{\"revision\":\"90\"},\"canceled\":"
        "true,\"compact_revision\":\"57\"}}";
    static const char error[] = "{\"error\":{\"grpc_code\":14,\"message\":\"etcdserver: no leader\"}}";
    etcd_watch_res_t w;
    etcd_status_t st;
    char err[256];

    assert_int_equal(etcd_parse_watch(created, strlen(created), &w, &st, err, sizeof(err)), 0);
    assert_true(w.created);
    assert_int_equal(w.n, 0);
    etcd_watch_res_free(&w);
    assert_int_equal(etcd_parse_watch(events, strlen(events), &w, &st, err, sizeof(err)), 0);
    assert_int_equal(w.n, 2);
    assert_false(w.events[0].deleted);
    assert_memory_equal(w.events[0].kv.value, "baz", 3);
    assert_int_equal(w.events[0].kv.mod_revision, 3);
    assert_true(w.events[1].deleted);
    assert_int_equal(w.events[1].kv.mod_revision, 4);
    assert_null(w.events[1].kv.value);
    etcd_watch_res_free(&w);
    assert_int_equal(etcd_parse_watch(compacted, strlen(compacted), &w, &st, err, sizeof(err)), 0);
    assert_true(w.canceled);
    assert_int_equal(w.compact_revision, 57);
    etcd_watch_res_free(&w);
    assert_int_equal(etcd_parse_watch(error, strlen(error), &w, &st, err, sizeof(err)), -1);
    assert_int_equal(st.code, ETCD_GRPC_UNAVAILABLE);
    assert_int_equal(etcd_parse_watch("{\"result\":[]}", 13, &w, &st, err, sizeof(err)), -1);
    assert_int_equal(st.code, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64_rfc4648),
        cmocka_unit_test(test_b64_binary),
        cmocka_unit_test(test_b64_refused),
        cmocka_unit_test(test_prefix_end),
        cmocka_unit_test(test_range_body),
        cmocka_unit_test(test_txn_body),
        cmocka_unit_test(test_lease_and_watch_bodies),
        cmocka_unit_test(test_parse_range),
        cmocka_unit_test(test_parse_txn),
        cmocka_unit_test(test_parse_lease),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_watch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
