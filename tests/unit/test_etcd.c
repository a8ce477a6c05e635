/* Unit tests of the etcd client (controller/etcd.c) against fake gateways:
 * small HTTP servers on the test's loop that answer each request with the
 * next answer of a script (answers recorded from etcd 3.4), or refuse,
 * hang, or stream watch lines in pieces. What is checked: the failover
 * over endpoints, which errors are tried again and which are not, the
 * deadline, cancelling, the bounded answer, and a watch that picks up
 * after a broken stream from the revision after the last one it delivered.
 */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "errors.h"
#include "etcd.h"
#include "log.h"

#define FAKE_MAX 16

enum fake_kind { FAKE_ANSWER, FAKE_HANG, FAKE_STREAM };

typedef struct fake_answer {
    enum fake_kind kind;
    int status;
    const char *body;           /* FAKE_ANSWER */
    const char *pieces[6];      /* FAKE_STREAM: written one by one, then closed */
    int keep_open;              /* FAKE_STREAM: not closed after the pieces */
} fake_answer_t;

typedef struct fake {
    uv_tcp_t server;
    int port;
    fake_answer_t script[FAKE_MAX];
    size_t n_script, next;
    char paths[FAKE_MAX][64];
    char bodies[FAKE_MAX][2048];
    size_t n_requests;
} fake_t;

typedef struct fake_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;      /* writes a stream's pieces apart */
    int handles;
    fake_t *fake;
    const fake_answer_t *stream;
    int piece;
    char buf[8192];
    size_t len;
} fake_conn_t;

static uv_loop_t loop;

static void on_conn_closed(uv_handle_t *h)
{
    fake_conn_t *c = h->data;

    if (--c->handles == 0)
        free(c);
}

static void fake_write(fake_conn_t *c, const char *data)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)strlen(data));

    uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
}

static void fake_close(fake_conn_t *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        uv_close((uv_handle_t *)&c->timer, on_conn_closed);
    }
}

static void fake_next_piece(uv_timer_t *t)
{
    fake_conn_t *c = t->data;
    const fake_answer_t *a = c->stream;

    if (c->piece < 6 && a->pieces[c->piece]) {
        fake_write(c, a->pieces[c->piece++]);
        uv_timer_start(&c->timer, fake_next_piece, 30, 0);
        return;
    }
    if (!a->keep_open)
        fake_close(c);
}

/* A whole request: record it, answer it. */
static void fake_request(fake_conn_t *c, const char *path, const char *body)
{
    fake_t *f = c->fake;
    const fake_answer_t *a;
    char head[512];

    if (f->n_requests < FAKE_MAX) {
        snprintf(f->paths[f->n_requests], sizeof(f->paths[0]), "%s", path);
        snprintf(f->bodies[f->n_requests], sizeof(f->bodies[0]), "%s", body);
    }
    f->n_requests++;
    if (f->next >= f->n_script) {
        fake_close(c);
        return;
    }
    a = &f->script[f->next++];
    switch (a->kind) {
    case FAKE_HANG:
        return;
    case FAKE_ANSWER:
        snprintf(head, sizeof(head), "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\n\r\n", a->status, strlen(a->body));
        fake_write(c, head);
        fake_write(c, a->body);
        return;
    case FAKE_STREAM:
        fake_write(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      "Connection: close\r\n\r\n");
        /* apart: the client sees them in separate reads */
        c->stream = a;
        c->piece = 0;
        uv_timer_start(&c->timer, fake_next_piece, 10, 0);
        return;
    }
}

static void fake_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    fake_conn_t *c = h->data;

    *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - 1 - c->len));
}

static void fake_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    fake_conn_t *c = s->data;
    char *end, *cl, path[64] = "";
    size_t want;

    if (n < 0) {
        fake_close(c);
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    while ((end = strstr(c->buf, "\r\n\r\n"))) {
        cl = strcasestr(c->buf, "Content-Length:");
        want = cl && cl < end ? strtoul(cl + 15, NULL, 10) : 0;
        if ((size_t)(end + 4 - c->buf) + want > c->len)
            return;
        sscanf(c->buf, "POST %63s", path);
        {
            char body[2048];
            size_t off = (size_t)(end + 4 - c->buf);
            snprintf(body, sizeof(body), "%.*s", (int)want, end + 4);
            memmove(c->buf, c->buf + off + want, c->len - off - want + 1);
            c->len -= off + want;
            fake_request(c, path, body);
        }
        if (uv_is_closing((uv_handle_t *)&c->tcp))
            return;
    }
}

static void fake_on_connection(uv_stream_t *server, int status)
{
    fake_conn_t *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    c->fake = server->data;
    uv_tcp_init(&loop, &c->tcp);
    uv_timer_init(&loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    assert_int_equal(uv_accept(server, (uv_stream_t *)&c->tcp), 0);
    uv_read_start((uv_stream_t *)&c->tcp, fake_alloc, fake_read);
}

static void fake_start(fake_t *f)
{
    struct sockaddr_in sa;
    int len = sizeof(sa);

    memset(f, 0, sizeof(*f));
    uv_tcp_init(&loop, &f->server);
    f->server.data = f;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(uv_tcp_bind(&f->server, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&f->server, 16, fake_on_connection), 0);
    uv_tcp_getsockname(&f->server, (struct sockaddr *)&sa, &len);
    f->port = ntohs(sa.sin_port);
}

static void fake_stop(fake_t *f)
{
    uv_close((uv_handle_t *)&f->server, NULL);
}

static int closed_port(void)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* ---------------------------------------------------------------- calls */

typedef struct result {
    int done, rc, grpc;
    char err[512];
    size_t n_kvs;
    char key[64], value[64];
    int64_t revision, ttl;
} result_t;

static void on_answer(void *arg, int rc, const char *err, etcd_answer_t *a)
{
    result_t *r = arg;

    r->done++;
    r->rc = rc;
    r->grpc = a->grpc_code;
    snprintf(r->err, sizeof(r->err), "%s", err);
    r->revision = a->revision;
    r->ttl = a->ttl;
    r->n_kvs = a->range.n;
    if (a->range.n) {
        snprintf(r->key, sizeof(r->key), "%s", a->range.kvs[0].key);
        snprintf(r->value, sizeof(r->value), "%.*s", (int)a->range.kvs[0].len,
                 (const char *)a->range.kvs[0].value);
    }
}

static void run_until(int *flag, int ms)
{
    uint64_t end = uv_hrtime() / 1000000 + (uint64_t)ms;

    while (!*flag) {
        if (uv_hrtime() / 1000000 > end)
            fail_msg("timed out after %d ms", ms);
        uv_run(&loop, UV_RUN_ONCE);
    }
}

static etcd_t *client(int port1, int port2, int64_t attempt_ms, size_t max_answer)
{
    static char eps[2][32];
    etcd_config_t cfg = { .attempt_timeout_ms = attempt_ms, .max_answer = max_answer };

    snprintf(eps[0], sizeof(eps[0]), "127.0.0.1:%d", port1);
    cfg.endpoints[cfg.n_endpoints++] = eps[0];
    if (port2) {
        snprintf(eps[1], sizeof(eps[1]), "127.0.0.1:%d", port2);
        cfg.endpoints[cfg.n_endpoints++] = eps[1];
    }
    return etcd_create(&loop, &cfg);
}

static void closed(void *arg)
{
    *(int *)arg = 1;
}

static void client_close(etcd_t *e)
{
    int done = 0;

    etcd_close(e, closed, &done);
    run_until(&done, 5000);
}

static const char range_answer[] =
    "{\"header\":{\"cluster_id\":\"324952591200643719\",\"member_id\":\"3319814642761637952\","
    "\"revision\":\"2\",\"raft_term\":\"2\"},\"kvs\":[{\"key\":\"Zm9v\",\"create_revision\":\"2\","
    "\"mod_revision\":\"2\",\"version\":\"1\",\"value\":\"YmFy\"}],\"count\":\"1\"}";
static const char no_leader[] =
    "{\"error\":\"etcdserver: no leader\",\"message\":\"etcdserver: no leader\",\"code\":14}";
static const char lease_not_found[] = "{\"error\":\"etcdserver: requested lease not found\","
    "\"message\":\"etcdserver: requested lease not found\",\"code\":5}";

static void test_failover_to_the_next_endpoint(void **state)
{
    fake_t f;
    result_t r = { 0 };
    etcd_op_t op = { .kind = ETCD_OP_RANGE, .key = "foo" };
    etcd_t *e;
    char want[32];

    fake_start(&f);
    f.script[f.n_script++] = (fake_answer_t){ FAKE_ANSWER, 200, range_answer };
    e = client(closed_port(), f.port, 0, 0);
    assert_non_null(etcd_range(e, &op, 3000, on_answer, &r));
    run_until(&r.done, 5000);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.n_kvs, 1);
    assert_string_equal(r.key, "foo");
    assert_string_equal(r.value, "bar");
    assert_int_equal(r.revision, 2);
    assert_int_equal(f.n_requests, 1);
    assert_string_equal(f.paths[0], "/v3/kv/range");
    assert_non_null(strstr(f.bodies[0], "\"key\":\"Zm9v\""));
    /* It stays with the one that answered. */
    snprintf(want, sizeof(want), "127.0.0.1:%d", f.port);
    assert_string_equal(etcd_endpoint(e), want);
    client_close(e);
    fake_stop(&f);
}

static void test_unavailable_is_tried_elsewhere(void **state)
{
    fake_t a, b;
    result_t r = { 0 };
    etcd_t *e;

    fake_start(&a);
    fake_start(&b);
    a.script[a.n_script++] = (fake_answer_t){ FAKE_ANSWER, 503, no_leader };
    b.script[b.n_script++] = (fake_answer_t){ FAKE_ANSWER, 200,
        "{\"header\":{\"revision\":\"9\"},\"ID\":\"77\",\"TTL\":\"3\"}" };
    e = client(a.port, b.port, 0, 0);
    assert_non_null(etcd_lease_grant(e, 3, 3000, on_answer, &r));
    run_until(&r.done, 5000);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.ttl, 3);
    assert_int_equal(a.n_requests, 1);
    assert_int_equal(b.n_requests, 1);
    assert_string_equal(b.paths[0], "/v3/lease/grant");
    assert_non_null(strstr(b.bodies[0], "\"TTL\":\"3\""));
    client_close(e);
    fake_stop(&a);
    fake_stop(&b);
}

static void test_refusals_are_not_tried_again(void **state)
{
    fake_t a, b;
    result_t r = { 0 };
    etcd_t *e;

    fake_start(&a);
    fake_start(&b);
    a.script[a.n_script++] = (fake_answer_t){ FAKE_ANSWER, 404, lease_not_found };
    e = client(a.port, b.port, 0, 0);
    assert_non_null(etcd_lease_keepalive(e, 77, 3000, on_answer, &r));
    run_until(&r.done, 5000);
    assert_int_equal(r.rc, SKIFF_ESTORE);
    assert_int_equal(r.grpc, ETCD_GRPC_NOT_FOUND);
    assert_non_null(strstr(r.err, "requested lease not found"));
    assert_int_equal(a.n_requests, 1);
    assert_int_equal(b.n_requests, 0);

    /* An answer that is not etcd's: refused as it is, not retried. */
    memset(&r, 0, sizeof(r));
    a.script[a.n_script++] = (fake_answer_t){ FAKE_ANSWER, 200, "{\"kvs\":{}}" };
    assert_non_null(etcd_range(e, &(etcd_op_t){ .kind = ETCD_OP_RANGE, .key = "x" }, 3000,
                               on_answer, &r));
    run_until(&r.done, 5000);
    assert_int_equal(r.rc, SKIFF_ESTORE);
    assert_non_null(strstr(r.err, "does not parse"));
    assert_int_equal(b.n_requests, 0);
    client_close(e);
    fake_stop(&a);
    fake_stop(&b);
}

static void test_deadline(void **state)
{
    result_t r = { 0 };
    fake_t hang;
    uint64_t t0;
    etcd_t *e = client(closed_port(), closed_port(), 0, 0);

    t0 = uv_hrtime() / 1000000;
    assert_non_null(etcd_range(e, &(etcd_op_t){ .kind = ETCD_OP_RANGE, .key = "x" }, 400,
                               on_answer, &r));
    run_until(&r.done, 5000);
    assert_int_equal(r.rc, SKIFF_EUNAVAILABLE);
    assert_non_null(strstr(r.err, "127.0.0.1:"));
    assert_true(uv_hrtime() / 1000000 - t0 < 2000);
    client_close(e);

    /* A member that takes the request and says nothing: each attempt times
     * out, and so does the call. */
    fake_start(&hang);
    for (int i = 0; i < 4; i++)
        hang.script[hang.n_script++] = (fake_answer_t){ FAKE_HANG };
    e = client(hang.port, 0, 150, 0);
    memset(&r, 0, sizeof(r));
    t0 = uv_hrtime() / 1000000;
    assert_non_null(etcd_range(e, &(etcd_op_t){ .kind = ETCD_OP_RANGE, .key = "x" }, 500,
                               on_answer, &r));
    run_until(&r.done, 5000);
    assert_int_equal(r.rc, SKIFF_EUNAVAILABLE);
    assert_true(hang.n_requests >= 2);
    assert_true(uv_hrtime() / 1000000 - t0 < 2500);
    client_close(e);
    fake_stop(&hang);
}

static void test_cancel_and_limits(void **state)
{
    fake_t f;
    result_t r = { 0 };
    etcd_req_t *req;
    etcd_t *e;
    char big[8192];

    fake_start(&f);
    f.script[f.n_script++] = (fake_answer_t){ FAKE_HANG };
    e = client(f.port, 0, 0, 1024);
    req = etcd_range(e, &(etcd_op_t){ .kind = ETCD_OP_RANGE, .key = "x" }, 3000, on_answer, &r);
    assert_non_null(req);
    while (f.n_requests == 0)
        uv_run(&loop, UV_RUN_ONCE);
    etcd_cancel(e, req);
    for (int i = 0; i < 20; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(r.done, 0);

    /* An answer past max_answer: refused, not kept. */
    memset(big, ' ', sizeof(big) - 3);
    big[0] = '{';
    big[sizeof(big) - 3] = '}';
    big[sizeof(big) - 2] = '\0';
    f.script[f.n_script++] = (fake_answer_t){ FAKE_ANSWER, 200, big };
    assert_non_null(etcd_range(e, &(etcd_op_t){ .kind = ETCD_OP_RANGE, .key = "x" }, 3000,
                               on_answer, &r));
    run_until(&r.done, 5000);
    assert_int_equal(r.rc, SKIFF_ESTORE);
    assert_non_null(strstr(r.err, "too large"));
    /* Closing with a call in flight calls nobody back. */
    memset(&r, 0, sizeof(r));
    f.script[f.n_script++] = (fake_answer_t){ FAKE_HANG };
    assert_non_null(etcd_range(e, &(etcd_op_t){ .kind = ETCD_OP_RANGE, .key = "x" }, 3000,
                               on_answer, &r));
    client_close(e);
    assert_int_equal(r.done, 0);
    fake_stop(&f);
}

/* ---------------------------------------------------------------- watch */

typedef struct watched {
    int answers, events, ended;
    int64_t last_rev, compact;
    char keys[8][32];
    int deleted[8];
} watched_t;

static void on_events(void *arg, const etcd_watch_res_t *res)
{
    watched_t *w = arg;

    w->answers++;
    for (size_t i = 0; i < res->n && w->events < 8; i++, w->events++) {
        snprintf(w->keys[w->events], sizeof(w->keys[0]), "%s", res->events[i].kv.key);
        w->deleted[w->events] = res->events[i].deleted;
        w->last_rev = res->events[i].kv.mod_revision;
    }
}

static void on_end(void *arg, int rc, const char *err, int64_t compact)
{
    watched_t *w = arg;

    w->ended = 1;
    w->compact = compact;
}

static const etcd_watch_ops_t watch_ops = { on_events, on_end };

static void test_watch_picks_up_after_a_break(void **state)
{
    fake_t f;
    watched_t w = { 0 };
    etcd_watch_t *watch;
    etcd_t *e;

    fake_start(&f);
    /* A stream cut in the middle of a line, then broken off. */
    f.script[f.n_script++] = (fake_answer_t){ FAKE_STREAM, 200, NULL, {
        "{\"result\":{\"header\":{\"revision\":\"2\"},\"created\":true}}\n{\"result\":{\"header\":"
        "{\"revision\":\"3\"},\"events\":[{\"kv\":{\"key\":\"L3AvYQ==\",\"create_revision\":\"3\","
        "\"mod_revision\":\"3\",\"ver",
        "sion\":\"1\",\"value\":\"eA==\"}}]}}\n", NULL } };
    /* The next one: from revision 4; a delete; then the revisions it needs
     * are compacted. */
    f.script[f.n_script++] = (fake_answer_t){ FAKE_STREAM, 200, NULL, {
        "{\"result\":{\"header\":{\"revision\":\"5\"},\"created\":true}}\n",
        "{\"result\":{\"header\":{\"revision\":\"5\"},\"events\":[{\"type\":\"DELETE\",\"kv\":"
        "{\"key\":\"L3AvYQ==\",\"mod_revision\":\"5\"}}]}}\n",
        "{\"result\":{\"header\":{\"revision\":\"90\"},\"canceled\":true,\"compact_revision\":"
        "\"57\"}}\n", NULL }, 1 };
    e = client(f.port, 0, 0, 0);
    watch = etcd_watch(e, "/p/", "/p0", 1, &watch_ops, &w);
    assert_non_null(watch);
    run_until(&w.ended, 10000);
    assert_int_equal(w.events, 2);
    assert_string_equal(w.keys[0], "/p/a");
    assert_false(w.deleted[0]);
    assert_string_equal(w.keys[1], "/p/a");
    assert_true(w.deleted[1]);
    assert_int_equal(w.compact, 57);
    assert_int_equal(f.n_requests, 2);
    assert_string_equal(f.paths[0], "/v3/watch");
    assert_non_null(strstr(f.bodies[0], "\"start_revision\":\"1\""));
    assert_non_null(strstr(f.bodies[1], "\"start_revision\":\"4\""));
    client_close(e);
    fake_stop(&f);
}

static void test_watch_cancel(void **state)
{
    fake_t f;
    watched_t w = { 0 };
    etcd_watch_t *watch;
    etcd_t *e;

    fake_start(&f);
    f.script[f.n_script++] = (fake_answer_t){ FAKE_STREAM, 200, NULL, {
        "{\"result\":{\"header\":{\"revision\":\"2\"},\"created\":true}}\n", NULL }, 1 };
    e = client(f.port, 0, 0, 0);
    watch = etcd_watch(e, "/p/", "/p0", 3, &watch_ops, &w);
    while (w.answers == 0)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(etcd_watch_revision(watch), 3);
    etcd_watch_cancel(e, watch);
    for (int i = 0; i < 20; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(w.ended, 0);
    client_close(e);
    fake_stop(&f);
}

static void test_endpoints(void **state)
{
    etcd_config_t cfg;
    char buf[256], err[256];

    assert_int_equal(etcd_parse_endpoints("127.0.0.1:2379,127.0.0.2:2379,[::1]:2379", &cfg, buf,
                                          sizeof(buf), err, sizeof(err)), 0);
    assert_int_equal(cfg.n_endpoints, 3);
    assert_string_equal(cfg.endpoints[2], "[::1]:2379");
    assert_int_equal(etcd_parse_endpoints("", &cfg, buf, sizeof(buf), err, sizeof(err)),
                     SKIFF_EINVAL);
    assert_int_equal(etcd_parse_endpoints("a:1,", &cfg, buf, sizeof(buf), err, sizeof(err)),
                     SKIFF_EINVAL);
    assert_int_equal(etcd_parse_endpoints("a:1,,b:2", &cfg, buf, sizeof(buf), err, sizeof(err)),
                     SKIFF_EINVAL);
    assert_int_equal(etcd_parse_endpoints("nohost", &cfg, buf, sizeof(buf), err, sizeof(err)),
                     SKIFF_EINVAL);
    assert_non_null(strstr(err, "not HOST:PORT"));
    assert_int_equal(etcd_parse_endpoints("a:0", &cfg, buf, sizeof(buf), err, sizeof(err)),
                     SKIFF_EINVAL);
}

static int setup(void **state)
{
    return uv_loop_init(&loop);
}

static int teardown(void **state)
{
    for (int i = 0; i < 50 && uv_loop_alive(&loop); i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&loop), 0);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints),
        cmocka_unit_test_setup_teardown(test_failover_to_the_next_endpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unavailable_is_tried_elsewhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals_are_not_tried_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_and_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_picks_up_after_a_break, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_cancel, setup, teardown),
    };

    log_init("test", getenv("SKIFF_TEST_LOG") ? LOG_DEBUG : LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
