/* Unit tests of net/httpd (and net/prom): a real server on a libuv loop on
 * 127.0.0.1, asked by libcurl through net/httpc on the same loop, and by raw
 * blocking sockets playing the peers that misbehave (garbage, never reading,
 * holding connections).
 *
 * The handler answers by the path: /echo tells what the request looked
 * like, /stream opens a stream the test writes to, /prom serves a page of
 * metrics. The teardown closes the server and checks that the loop closes
 * with no handle left behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <uv.h>

#include "errors.h"
#include "httpc.h"
#include "httpd.h"
#include "prom.h"

typedef struct fixture {
    uv_loop_t loop;
    uv_timer_t tick;
    httpd_t *httpd;
    httpc_t *httpc;
    int port;
    int closed;               /* httpd_close's done ran */
    /* the stream the handler opened, while open */
    httpd_stream_t *stream;
    int stream_closes;
    size_t stream_max;
    int requests;
    httpd_req_t *later;       /* /later: answered by the test */
    int dones;                /* httpd_on_done callbacks */
} fx_t;

typedef struct answer {
    int done;
    long status;
    CURLcode result;
    char body[65536];
    size_t len;
    char headers[4096];
    size_t hlen;
} answer_t;

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

#define RUN_UNTIL(fx, cond, ms)                                                    \
    do {                                                                           \
        uint64_t deadline_ = now_ms() + (ms);                                      \
        while (!(cond)) {                                                          \
            if (now_ms() > deadline_)                                              \
                fail_msg("timed out waiting for %s", #cond);                       \
            uv_run(&(fx)->loop, UV_RUN_ONCE);                                      \
        }                                                                          \
    } while (0)

static void run_for(fx_t *fx, uint64_t ms)
{
    uint64_t deadline = now_ms() + ms;

    while (now_ms() < deadline)
        uv_run(&fx->loop, UV_RUN_ONCE);
}

/* ------------------------------------------------------------ the handler */

static void on_stream_close(void *arg)
{
    fx_t *fx = arg;

    fx->stream = NULL;
    fx->stream_closes++;
}

static void on_req_done(void *arg)
{
    fx_t *fx = arg;

    fx->dones++;
}

static void handler(void *arg, httpd_req_t *r)
{
    fx_t *fx = arg;
    const char *path = httpd_path(r);
    char out[4096];
    size_t len;

    fx->requests++;
    if (strcmp(path, "/echo") == 0 || strcmp(path, "/a b/c") == 0) {
        const char *x = httpd_query(r, "x"), *y = httpd_query(r, "y");
        const char *z = httpd_query(r, "z"), *hdr = httpd_header(r, "X-Test");
        const char *body = httpd_body(r, &len);
        int n = snprintf(out, sizeof(out), "%s %s x=%s y=%s z=%s hdr=%s body=%zu:%.*s peer=%s tls=%d",
                         httpd_method(r), path, x ? x : "(null)", y ? y : "(null)",
                         z ? z : "(null)", hdr ? hdr : "(null)", len, (int)len, body,
                         httpd_peer(r), httpd_is_tls(r));
        httpd_add_header(r, "X-Answer", "yes");
        httpd_respond(r, 200, "text/plain", out, (size_t)n);
    } else if (strcmp(path, "/stream") == 0) {
        fx->stream = httpd_stream_open(r, 200, "text/event-stream", fx->stream_max,
                                       on_stream_close, fx);
        assert_non_null(fx->stream);
        assert_int_equal(httpd_stream_write(fx->stream, "first\n", 6), 0);
    } else if (strcmp(path, "/later") == 0) {
        assert_int_equal(httpd_on_done(r, on_req_done, fx), 0);
        fx->later = r;
    } else if (strcmp(path, "/error") == 0) {
        httpd_respond_error(r, 404, "no such \"thing\": %s", "x\ny");
    } else if (strcmp(path, "/prom") == 0) {
        prom_t p;
        const char *text;
        prom_init(&p, 0);
        prom_family(&p, "skiff_test_total", "counter", "A test counter.");
        prom_sample(&p, "skiff_test_total", 3, "service", "we\"b\\\n", NULL);
        text = prom_text(&p, &len);
        httpd_respond(r, 200, PROM_CONTENT_TYPE, text, len);
        prom_free(&p);
    } else {
        httpd_respond_error(r, 404, "not found");
    }
}

/* ------------------------------------------------------------ the client */

static int on_header(void *arg, const char *line, size_t len)
{
    answer_t *a = arg;

    if (a->hlen + len < sizeof(a->headers)) {
        memcpy(a->headers + a->hlen, line, len);
        a->hlen += len;
        a->headers[a->hlen] = '\0';
    }
    return 0;
}

static int on_body(void *arg, const char *data, size_t len)
{
    answer_t *a = arg;

    if (a->len + len < sizeof(a->body)) {
        memcpy(a->body + a->len, data, len);
        a->len += len;
        a->body[a->len] = '\0';
    }
    return 0;
}

static void on_done(void *arg, CURLcode result, long status, const char *err)
{
    answer_t *a = arg;

    a->done = 1;
    a->result = result;
    a->status = status;
}

static const httpc_ops_t client_ops = { on_header, on_body, on_done };

static httpc_xfer_t *start_request(fx_t *fx, answer_t *a, const char *method, const char *path,
                                   const char *body, size_t body_len, const char *header)
{
    CURL *easy = curl_easy_init();
    struct curl_slist *headers = NULL;
    httpc_xfer_t *x = NULL;
    char url[512];

    memset(a, 0, sizeof(*a));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", fx->port, path);
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long)body_len);
        curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, body);
    }
    if (header)
        headers = curl_slist_append(headers, header);
    headers = curl_slist_append(headers, "Expect:");
    assert_int_equal(httpc_add(fx->httpc, easy, headers, &client_ops, a, &x), 0);
    return x;
}

static void request(fx_t *fx, answer_t *a, const char *method, const char *path,
                    const char *body, size_t body_len, const char *header)
{
    start_request(fx, a, method, path, body, body_len, header);
    RUN_UNTIL(fx, a->done, 5000);
}

/* A blocking socket connected to the server. */
static int raw_connect(fx_t *fx)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)fx->port) };
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Reads what the server sent within ms (the loop runs meanwhile); returns
 * the byte count, and sets *eof when the server closed. */
static size_t raw_read(fx_t *fx, int fd, char *out, size_t cap, uint64_t ms, int *eof)
{
    uint64_t deadline = now_ms() + ms;
    size_t got = 0;

    *eof = 0;
    while (now_ms() < deadline && got + 1 < cap) {
        ssize_t n = recv(fd, out + got, cap - 1 - got, MSG_DONTWAIT);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            *eof = 1;
            break;
        }
        uv_run(&fx->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    out[got] = '\0';
    return got;
}

/* ------------------------------------------------------------ fixtures */

static void on_tick(uv_timer_t *t)
{
}

static void on_httpd_closed(void *arg)
{
    ((fx_t *)arg)->closed = 1;
}

/* A port nothing listens on now (the kernel's pick for a socket that is
 * closed again). */
static int free_port(void)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static int fx_start(fx_t *fx, unsigned max_conns, size_t max_body)
{
    char listen[64];
    httpd_config_t cfg = { .listen = listen, .name = "test",
                           .max_connections = max_conns, .max_body = max_body,
                           .request_timeout_ms = 2000 };
    char err[256];

    snprintf(listen, sizeof(listen), "127.0.0.1:%d", free_port());
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    uv_timer_init(&fx->loop, &fx->tick);
    uv_timer_start(&fx->tick, on_tick, 5, 5);
    fx->httpd = httpd_start(&fx->loop, &cfg, handler, fx, err, sizeof(err));
    if (!fx->httpd)
        fail_msg("httpd_start: %s", err);
    fx->port = httpd_port(fx->httpd);
    assert_true(fx->port > 0);
    fx->httpc = httpc_create(&fx->loop);
    assert_non_null(fx->httpc);
    return 0;
}

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));

    fx_start(fx, 0, 0);
    *state = fx;
    return 0;
}

static int setup_small(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));

    fx_start(fx, 2, 1024);
    *state = fx;
    return 0;
}

static void on_httpc_closed(void *arg)
{
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    uint64_t deadline = now_ms() + 5000;

    if (fx->httpd)
        httpd_close(fx->httpd, on_httpd_closed, fx);
    httpc_close(fx->httpc, on_httpc_closed, NULL);
    RUN_UNTIL(fx, !fx->httpd || fx->closed, 5000);
    uv_close((uv_handle_t *)&fx->tick, NULL);
    while (uv_run(&fx->loop, UV_RUN_NOWAIT) && now_ms() < deadline)
        ;
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    free(fx);
    return 0;
}

/* ------------------------------------------------------------ the tests */

static void test_request_fields(void **state)
{
    fx_t *fx = *state;
    answer_t a;

    request(fx, &a, "GET", "/echo?x=1&y=hello%20world+again&z", NULL, 0, "X-Test: yes it is");
    assert_int_equal(a.status, 200);
    assert_string_equal(a.body, "GET /echo x=1 y=hello world again z= hdr=yes it is body=0: "
                                "peer=127.0.0.1 tls=0");
    assert_non_null(strstr(a.headers, "x-answer: yes"));
    assert_non_null(strstr(a.headers, "content-type: text/plain"));

    /* the path is decoded and normalized; bad escapes are kept as they are */
    request(fx, &a, "GET", "/x/../a%20b/./c?x=%zz&y=%4", NULL, 0, NULL);
    assert_int_equal(a.status, 200);
    assert_string_equal(a.body, "GET /a b/c x=%zz y=%4 z=(null) hdr=(null) body=0: "
                                "peer=127.0.0.1 tls=0");
}

static void test_body_and_keepalive(void **state)
{
    fx_t *fx = *state;
    answer_t a;
    char body[100];

    memset(body, 'b', sizeof(body));
    body[10] = '\0'; /* bodies may hold NULs */
    request(fx, &a, "POST", "/echo", body, sizeof(body), NULL);
    assert_int_equal(a.status, 200);
    assert_non_null(strstr(a.body, "POST /echo"));
    assert_non_null(strstr(a.body, "body=100:bbbbbbbbbb"));
    for (int i = 0; i < 20; i++) {
        request(fx, &a, "GET", "/echo", NULL, 0, NULL);
        assert_int_equal(a.status, 200);
    }
    assert_int_equal(fx->requests, 21);
}

/* An answer given later, from the loop; on_done runs once it is over. */
static void test_answer_later(void **state)
{
    fx_t *fx = *state;
    answer_t a;

    start_request(fx, &a, "GET", "/later", NULL, 0, NULL);
    RUN_UNTIL(fx, fx->later, 3000);
    run_for(fx, 50);
    assert_int_equal(fx->dones, 0);
    assert_int_equal(a.done, 0);
    httpd_respond(fx->later, 200, "text/plain", "late", 4);
    fx->later = NULL;
    RUN_UNTIL(fx, a.done, 3000);
    assert_int_equal(a.status, 200);
    assert_string_equal(a.body, "late");
    RUN_UNTIL(fx, fx->dones == 1, 3000);
}

static void test_error_json(void **state)
{
    fx_t *fx = *state;
    answer_t a;

    request(fx, &a, "GET", "/error", NULL, 0, NULL);
    assert_int_equal(a.status, 404);
    assert_string_equal(a.body, "{\"error\":\"no such \\\"thing\\\": x\\u000ay\"}\n");
    assert_non_null(strstr(a.headers, "application/json"));
}

static void test_body_too_large(void **state)
{
    fx_t *fx = *state;
    answer_t a;
    char *big = malloc(4096);

    memset(big, 'x', 4096);
    request(fx, &a, "POST", "/echo", big, 4096, NULL);
    assert_int_equal(a.status, 413);
    assert_int_equal(fx->requests, 0); /* the handler never saw it */
    free(big);
    request(fx, &a, "POST", "/echo", "small", 5, NULL);
    assert_int_equal(a.status, 200);
}

static void test_connection_limit(void **state)
{
    fx_t *fx = *state;
    int a = raw_connect(fx), b = raw_connect(fx), c, eof;
    char buf[1024];

    run_for(fx, 50);
    c = raw_connect(fx);
    raw_read(fx, c, buf, sizeof(buf), 500, &eof);
    assert_true(eof); /* the third is closed at once */
    close(c);
    close(a);
    close(b);
    run_for(fx, 50);
    /* room again */
    {
        answer_t ans;
        request(fx, &ans, "GET", "/echo", NULL, 0, NULL);
        assert_int_equal(ans.status, 200);
    }
}

static void test_garbage(void **state)
{
    fx_t *fx = *state;
    int fd = raw_connect(fx), eof;
    char buf[4096];
    static const char junk[] = "\x01\x02 NOT HTTP AT ALL\r\n\r\n";

    assert_int_equal(send(fd, junk, sizeof(junk) - 1, 0), (ssize_t)sizeof(junk) - 1);
    raw_read(fx, fd, buf, sizeof(buf), 1000, &eof);
    assert_non_null(strstr(buf, "400"));
    close(fd);
    assert_int_equal(fx->requests, 0);
    /* a request that never ends its headers is cut off by the timeout */
    fd = raw_connect(fx);
    assert_int_equal(send(fd, "GET / HTTP/1.1\r\nHost: x\r\n", 25, 0), 25);
    raw_read(fx, fd, buf, sizeof(buf), 4000, &eof);
    assert_true(eof);
    close(fd);
}

static void test_stream(void **state)
{
    fx_t *fx = *state;
    answer_t a;

    start_request(fx, &a, "GET", "/stream", NULL, 0, NULL);
    RUN_UNTIL(fx, fx->stream && a.len >= 6, 3000);
    assert_string_equal(a.body, "first\n");
    assert_non_null(strstr(a.headers, "text/event-stream"));
    assert_int_equal(httpd_stream_write(fx->stream, "second\n", 7), 0);
    assert_int_equal(httpd_stream_write(fx->stream, "third\n", 6), 0);
    RUN_UNTIL(fx, a.len >= 19, 3000);
    httpd_stream_end(fx->stream);
    RUN_UNTIL(fx, a.done, 3000);
    assert_int_equal(a.status, 200);
    assert_string_equal(a.body, "first\nsecond\nthird\n");
    assert_int_equal(fx->stream_closes, 1);
    assert_null(fx->stream);
}

static void test_stream_bounded(void **state)
{
    fx_t *fx = *state;
    int fd, eof, refused = 0;
    char buf[256], chunk[4096];
    static const char req[] = "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n";

    fx->stream_max = 64 * 1024;
    fd = raw_connect(fx);
    assert_int_equal(send(fd, req, sizeof(req) - 1, 0), (ssize_t)sizeof(req) - 1);
    RUN_UNTIL(fx, fx->stream, 3000);
    memset(chunk, 'z', sizeof(chunk));
    /* the client never reads: the kernel's buffers fill, then the bound */
    for (int i = 0; i < 100000 && !refused; i++) {
        int rc = httpd_stream_write(fx->stream, chunk, sizeof(chunk));
        if (rc == SKIFF_ELIMIT)
            refused = 1;
        else
            assert_int_equal(rc, 0);
        uv_run(&fx->loop, UV_RUN_NOWAIT);
    }
    assert_true(refused);
    assert_true(httpd_stream_pending(fx->stream) <= fx->stream_max);
    /* the client goes away: on_close runs once */
    close(fd);
    RUN_UNTIL(fx, fx->stream_closes == 1, 3000);
    run_for(fx, 50);
    assert_int_equal(fx->stream_closes, 1);
    (void)buf;
    (void)eof;
}

static void test_stream_client_gone(void **state)
{
    fx_t *fx = *state;
    answer_t a;
    httpc_xfer_t *x = start_request(fx, &a, "GET", "/stream", NULL, 0, NULL);

    RUN_UNTIL(fx, fx->stream && a.len >= 6, 3000);
    httpc_cancel(fx->httpc, x);
    /* noticed at the next write at the latest */
    for (int i = 0; i < 200 && fx->stream; i++) {
        httpd_stream_write(fx->stream, "tick\n", 5);
        run_for(fx, 10);
    }
    assert_null(fx->stream);
    assert_int_equal(fx->stream_closes, 1);
}

static void test_close_with_stream(void **state)
{
    fx_t *fx = *state;
    answer_t a;

    start_request(fx, &a, "GET", "/stream", NULL, 0, NULL);
    RUN_UNTIL(fx, fx->stream && a.len >= 6, 3000);
    httpd_close(fx->httpd, on_httpd_closed, fx);
    RUN_UNTIL(fx, fx->closed && a.done, 5000);
    assert_int_equal(fx->stream_closes, 1);
    assert_int_equal(a.status, 200);
    assert_string_equal(a.body, "first\n");
    fx->httpd = NULL;
}

static void test_bad_listen(void **state)
{
    fx_t *fx = *state;
    char err[256], addr[64];
    httpd_config_t cfg = { .listen = "nope", .name = "test" };

    assert_null(httpd_start(&fx->loop, &cfg, handler, fx, err, sizeof(err)));
    assert_non_null(strstr(err, "nope: not an IP address and port"));
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", fx->port);
    cfg.listen = addr;
    assert_null(httpd_start(&fx->loop, &cfg, handler, fx, err, sizeof(err)));
    assert_non_null(strstr(err, "address already in use"));
}

/* ---- prom */

static void test_prom_format(void **state)
{
    fx_t *fx = *state;
    answer_t a;

    request(fx, &a, "GET", "/prom", NULL, 0, NULL);
    assert_int_equal(a.status, 200);
    assert_string_equal(a.body, "# HELP skiff_test_total A test counter.\n"
                                "# TYPE skiff_test_total counter\n"
                                "skiff_test_total{service=\"we\\\"b\\\\\\n\"} 3\n");
    assert_non_null(strstr(a.headers, "text/plain; version=0.0.4"));
}

static void test_prom_histogram_and_values(void **state)
{
    static const double bounds[] = { 0.001, 0.01, 0.1 };
    prom_histogram_t h;
    prom_t p;
    size_t len;

    prom_histogram_init(&h, bounds, 3);
    prom_histogram_observe(&h, 0.0005);
    prom_histogram_observe(&h, 0.005);
    prom_histogram_observe(&h, 0.005);
    prom_histogram_observe(&h, 5);
    prom_init(&p, 0);
    prom_histogram_write(&p, "skiff_x_seconds", "X.", &h);
    prom_sample(&p, "v", 0.25, NULL);
    prom_sample(&p, "big", 1e20, "a", "1", "b", "2", NULL);
    assert_true(prom_ok(&p));
    assert_string_equal(prom_text(&p, &len),
                        "# HELP skiff_x_seconds X.\n"
                        "# TYPE skiff_x_seconds histogram\n"
                        "skiff_x_seconds_bucket{le=\"0.001\"} 1\n"
                        "skiff_x_seconds_bucket{le=\"0.01\"} 3\n"
                        "skiff_x_seconds_bucket{le=\"0.1\"} 3\n"
                        "skiff_x_seconds_bucket{le=\"+Inf\"} 4\n"
                        "skiff_x_seconds_sum 5.0105\n"
                        "skiff_x_seconds_count 4\n"
                        "v 0.25\n"
                        "big{a=\"1\",b=\"2\"} 1e+20\n");
    prom_free(&p);

    /* a page past its bound fails whole */
    prom_init(&p, 64);
    for (int i = 0; i < 10; i++)
        prom_sample(&p, "some_metric_name", i, NULL);
    assert_false(prom_ok(&p));
    prom_free(&p);

    prom_init(&p, 0);
    prom_process(&p);
    assert_non_null(strstr(prom_text(&p, &len), "process_resident_memory_bytes "));
    assert_non_null(strstr(prom_text(&p, &len), "process_open_fds "));
    assert_non_null(strstr(prom_text(&p, &len), "process_cpu_seconds_total "));
    prom_free(&p);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_request_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_and_keepalive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_later, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_too_large, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_connection_limit, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_client_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_with_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_listen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prom_format, setup, teardown),
        cmocka_unit_test(test_prom_histogram_and_values),
    };

    signal(SIGPIPE, SIG_IGN); /* as the daemons do */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
