/* Unit tests of agent/lb.c on a real libuv loop with real sockets on
 * 127.0.0.0/8, no docker.
 *
 * The loop (balancer and backends) runs in its own thread; the test thread is
 * the client, with plain blocking sockets, and runs anything that touches the
 * balancer on the loop's thread with on_loop(). Backends are tiny libuv
 * servers: "echo" writes a banner "B<id>\n" on accept and echoes what it gets
 * (shutting down after the client's EOF); "big" sends a fixed number of bytes
 * and then shuts down; "silent" accepts nothing, with a backlog that is full;
 * "stall" accepts and never reads; "slam" accepts and closes at once (as
 * docker-proxy does for a container that died).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "lb.h"
#include "log.h"

#define MAX_BACKENDS 4
#define BIG_CHUNK (64 * 1024)

enum { KIND_STATIC, KIND_HEAP };
enum { BE_ECHO, BE_BIG, BE_SILENT, BE_STALL, BE_SLAM };

typedef struct backend {
    int kind; /* KIND_STATIC: first member, see close_any() */
    uv_tcp_t server;
    int id;
    int type;
    int port;
    int accepted;     /* read from the test thread after on_loop() */
    size_t big_bytes; /* BE_BIG: how much each connection sends */
} backend_t;

typedef struct bconn {
    int kind; /* KIND_HEAP */
    uv_tcp_t tcp;
    backend_t *be;
    size_t sent;
    bool shut;
} bconn_t;

typedef struct wreq {
    uv_write_t req;
    char data[];
} wreq_t;

static struct {
    uv_loop_t loop;
    uv_async_t async;
    uv_thread_t thread;
    uv_mutex_t mu;
    uv_cond_t cv;
    void (*fn)(void *);
    void *arg;
    bool done;
    lb_t *lb;
    backend_t be[MAX_BACKENDS];
    int nbe;
    int static_kind;
    int open_lbs;
} fx;

static char big_chunk[BIG_CHUNK];

/* The loop thread. */

static void on_async(uv_async_t *a)
{
    void (*fn)(void *);
    void *arg;

    uv_mutex_lock(&fx.mu);
    fn = fx.fn;
    arg = fx.arg;
    uv_mutex_unlock(&fx.mu);
    if (fn)
        fn(arg);
    uv_mutex_lock(&fx.mu);
    fx.fn = NULL;
    fx.done = true;
    uv_cond_signal(&fx.cv);
    uv_mutex_unlock(&fx.mu);
}

/* Runs fn(arg) on the loop's thread and waits for it. */
static void on_loop(void (*fn)(void *), void *arg)
{
    uv_mutex_lock(&fx.mu);
    fx.fn = fn;
    fx.arg = arg;
    fx.done = false;
    uv_mutex_unlock(&fx.mu);
    uv_async_send(&fx.async);
    uv_mutex_lock(&fx.mu);
    while (!fx.done)
        uv_cond_wait(&fx.cv, &fx.mu);
    uv_mutex_unlock(&fx.mu);
}

static void loop_main(void *arg)
{
    uv_run(&fx.loop, UV_RUN_DEFAULT);
}

/* Backends. */

static void on_bconn_closed(uv_handle_t *h)
{
    free(h->data);
}

static void bconn_close(bconn_t *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_bconn_closed);
}

static void on_balloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    static char rbuf[64 * 1024];

    b->base = rbuf;
    b->len = sizeof(rbuf);
}

static void on_bshutdown(uv_shutdown_t *req, int status)
{
    bconn_t *c = req->data;

    free(req);
    bconn_close(c);
}

static void bconn_shutdown(bconn_t *c)
{
    uv_shutdown_t *req = malloc(sizeof(*req));

    if (c->shut || uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    c->shut = true;
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_bshutdown)) {
        free(req);
        bconn_close(c);
    }
}

static void on_bwrite(uv_write_t *req, int status)
{
    free(req);
}

static void bconn_write(bconn_t *c, const char *data, size_t n)
{
    wreq_t *w = malloc(sizeof(*w) + n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);

    memcpy(w->data, data, n);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_bwrite))
        free(w);
}

static void big_next(bconn_t *c);

static void on_big_write(uv_write_t *req, int status)
{
    bconn_t *c = req->data;

    free(req);
    if (status < 0) {
        if (status != UV_ECANCELED)
            bconn_close(c);
        return;
    }
    big_next(c);
}

static void big_next(bconn_t *c)
{
    size_t n = c->be->big_bytes - c->sent;
    uv_write_t *req;
    uv_buf_t b;

    if (n == 0) {
        bconn_shutdown(c);
        return;
    }
    if (n > BIG_CHUNK)
        n = BIG_CHUNK;
    req = malloc(sizeof(*req));
    req->data = c;
    b = uv_buf_init(big_chunk, (unsigned)n);
    c->sent += n;
    if (uv_write(req, (uv_stream_t *)&c->tcp, &b, 1, on_big_write)) {
        free(req);
        bconn_close(c);
    }
}

static void on_bread(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    bconn_t *c = s->data;

    if (nread > 0 && c->be->type == BE_ECHO)
        bconn_write(c, b->base, (size_t)nread);
    else if (nread == UV_EOF && c->be->type == BE_ECHO)
        bconn_shutdown(c);
    else if (nread < 0 && nread != UV_EOF)
        bconn_close(c);
}

static void on_bconnection(uv_stream_t *server, int status)
{
    backend_t *be = server->data;
    bconn_t *c = calloc(1, sizeof(*c));
    char banner[16];

    c->kind = KIND_HEAP;
    c->be = be;
    uv_tcp_init(&fx.loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp)) {
        bconn_close(c);
        return;
    }
    be->accepted++;
    if (be->type == BE_STALL)
        return;
    if (be->type == BE_SLAM) {
        bconn_close(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_balloc, on_bread);
    if (be->type == BE_ECHO) {
        snprintf(banner, sizeof(banner), "B%d\n", be->id);
        bconn_write(c, banner, strlen(banner));
    } else {
        big_next(c);
    }
}

/* Takes nothing: libuv then stops accepting, and the backlog fills. */
static void on_silent_connection(uv_stream_t *server, int status)
{
}

typedef struct backend_args {
    int type;
    size_t big_bytes;
    backend_t *out;
    int rc;
} backend_args_t;

static void backend_start_cb(void *arg)
{
    backend_args_t *a = arg;
    backend_t *be = &fx.be[fx.nbe];
    struct sockaddr_in sa;
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    be->kind = KIND_STATIC;
    be->id = fx.nbe++;
    be->type = a->type;
    be->big_bytes = a->big_bytes;
    uv_tcp_init(&fx.loop, &be->server);
    be->server.data = be;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    /* A silent backend never accepts: its backlog fills and connects hang.
     * (No cmocka assertions on the loop's thread: the test thread checks rc.) */
    a->rc = uv_tcp_bind(&be->server, (struct sockaddr *)&sa, 0);
    if (a->rc == 0)
        a->rc = uv_listen((uv_stream_t *)&be->server, a->type == BE_SILENT ? 0 : 128,
                          a->type == BE_SILENT ? on_silent_connection : on_bconnection);
    uv_tcp_getsockname(&be->server, (struct sockaddr *)&ss, &len);
    be->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    a->out = be;
}

static backend_t *backend_start(int type, size_t big_bytes)
{
    backend_args_t a = { type, big_bytes, NULL, 0 };

    assert_true(fx.nbe < MAX_BACKENDS);
    on_loop(backend_start_cb, &a);
    assert_int_equal(a.rc, 0);
    return a.out;
}

/* The balancer, on the loop. */

static void lb_create_cb(void *arg)
{
    fx.lb = lb_create(&fx.loop, arg);
}

static lb_t *lb_start(const lb_config_t *cfg)
{
    on_loop(lb_create_cb, (void *)cfg);
    assert_non_null(fx.lb);
    return fx.lb;
}

/* A service for apply(): one port, backends all on 127.0.0.1. */
typedef struct svc {
    const char *name;
    uint32_t port;
    bool internal;
    int nb;
    int bports[MAX_BACKENDS];
} svc_t;

typedef struct apply_args {
    lb_t *lb;
    const Endpoints *eps;
    int rc;
} apply_args_t;

static void apply_cb(void *arg)
{
    apply_args_t *a = arg;

    a->rc = lb_apply(a->lb, a->eps);
}

/* Applies the services to lb (the complete set, as the controller sends). */
static int apply_to(lb_t *lb, const svc_t *svcs, int n)
{
    ServiceEndpoints se[4], *sep[4];
    ServicePort sp[4], *spp[4];
    Backend b[4][MAX_BACKENDS], *bp[4][MAX_BACKENDS];
    PortMapping pm[4][MAX_BACKENDS], *pmp[4][MAX_BACKENDS];
    Endpoints eps = SKIFF__V1__ENDPOINTS__INIT;
    char ids[4][MAX_BACKENDS][16];
    apply_args_t a = { lb, &eps, 0 };

    assert_true(n <= 4);
    for (int i = 0; i < n; i++) {
        se[i] = (ServiceEndpoints)SKIFF__V1__SERVICE_ENDPOINTS__INIT;
        sp[i] = (ServicePort)SKIFF__V1__SERVICE_PORT__INIT;
        se[i].service_id = (char *)svcs[i].name;
        se[i].service_name = (char *)svcs[i].name;
        sp[i].port = svcs[i].port;
        sp[i].target = 80;
        sp[i].internal = svcs[i].internal;
        spp[i] = &sp[i];
        se[i].n_ports = 1;
        se[i].ports = &spp[i];
        for (int j = 0; j < svcs[i].nb; j++) {
            b[i][j] = (Backend)SKIFF__V1__BACKEND__INIT;
            pm[i][j] = (PortMapping)SKIFF__V1__PORT_MAPPING__INIT;
            pm[i][j].target = 80;
            pm[i][j].host_port = (uint32_t)svcs[i].bports[j];
            pmp[i][j] = &pm[i][j];
            snprintf(ids[i][j], sizeof(ids[i][j]), "task%d", j);
            b[i][j].task_id = ids[i][j];
            b[i][j].address = "127.0.0.1";
            b[i][j].n_ports = 1;
            b[i][j].ports = &pmp[i][j];
            bp[i][j] = &b[i][j];
        }
        se[i].n_backends = (size_t)svcs[i].nb;
        se[i].backends = bp[i];
        sep[i] = &se[i];
    }
    eps.n_services = (size_t)n;
    eps.services = sep;
    on_loop(apply_cb, &a);
    return a.rc;
}

static int apply(const svc_t *svcs, int n)
{
    return apply_to(fx.lb, svcs, n);
}

typedef struct stat_args {
    lb_t *lb;
    char backend[64];
    bool found;
    LbStats s;
    size_t rows;
    size_t conns;
} stat_args_t;

static void stat_cb(void *arg)
{
    stat_args_t *a = arg;
    LbStats **st;
    size_t n;

    if (lb_stats(a->lb, &st, &n))
        return;
    a->rows = n;
    a->conns = lb_connections(a->lb);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(st[i]->backend, a->backend) == 0) {
            a->found = true;
            a->s = *st[i];
            a->s.service_name = a->s.backend = NULL;
        }
    }
    lb_stats_free(st, n);
}

/* The stats row of backend 127.0.0.1:port; found is false without one. */
static stat_args_t stats_of(int port)
{
    stat_args_t a = { .lb = fx.lb };

    snprintf(a.backend, sizeof(a.backend), "127.0.0.1:%d", port);
    on_loop(stat_cb, &a);
    return a;
}

static void count_cb(void *arg)
{
    backend_t *be = arg;

    (void)be; /* a barrier: be->accepted is read after the loop ran this */
}

static int accepted(backend_t *be)
{
    on_loop(count_cb, be);
    return be->accepted;
}

/* Setup and teardown. */

static void close_any(uv_handle_t *h, void *arg)
{
    int *kind = h->data;

    if (uv_is_closing(h))
        return;
    uv_close(h, kind && *kind == KIND_HEAP ? on_bconn_closed : NULL);
}

/* Once every balancer has closed, closes what is left (backends, async). */
static void on_lb_closed(void *arg)
{
    if (--fx.open_lbs == 0)
        uv_walk(&fx.loop, close_any, NULL);
}

static void teardown_cb(void *arg)
{
    lb_t *second = arg;

    fx.open_lbs = 1 + (fx.lb != NULL) + (second != NULL);
    if (second)
        lb_close(second, on_lb_closed, NULL);
    if (fx.lb)
        lb_close(fx.lb, on_lb_closed, NULL);
    on_lb_closed(NULL);
}

static int setup(void **state)
{
    memset(&fx, 0, sizeof(fx));
    assert_int_equal(uv_loop_init(&fx.loop), 0);
    uv_mutex_init(&fx.mu);
    uv_cond_init(&fx.cv);
    uv_async_init(&fx.loop, &fx.async, on_async);
    fx.static_kind = KIND_STATIC;
    fx.async.data = &fx.static_kind;
    assert_int_equal(uv_thread_create(&fx.thread, loop_main, NULL), 0);
    *state = NULL;
    return 0;
}

static int teardown(void **state)
{
    on_loop(teardown_cb, *state);
    uv_thread_join(&fx.thread);
    assert_int_equal(uv_loop_close(&fx.loop), 0);
    uv_mutex_destroy(&fx.mu);
    uv_cond_destroy(&fx.cv);
    return 0;
}

/* Clients, on the test thread. */

static int free_port(const char *ip)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port;

    inet_pton(AF_INET, ip, &sa.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* A connected client, or -1 with errno. rcvbuf: 0 for the default. */
static int client_rcvbuf(const char *ip, int port, int rcvbuf)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    struct timeval tv = { 5, 0 };
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    inet_pton(AF_INET, ip, &sa.sin_addr);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (rcvbuf)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
        int err = errno;

        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

static int client(const char *ip, int port)
{
    return client_rcvbuf(ip, port, 0);
}

/* Reads a banner line; returns the backend's id, or -1 on EOF or error. */
static int read_banner(int fd)
{
    char line[16];
    size_t n = 0;

    while (n < sizeof(line) - 1) {
        ssize_t r = read(fd, line + n, 1);

        if (r <= 0)
            return -1;
        if (line[n++] == '\n')
            break;
    }
    line[n] = '\0';
    return line[0] == 'B' ? atoi(line + 1) : -1;
}

/* Reads until EOF into out (up to cap); returns the bytes read, or -1 on
 * error or timeout. */
static ssize_t read_all(int fd, char *out, size_t cap)
{
    char scratch[65536];
    size_t total = 0;

    for (;;) {
        char *dst = out ? out + total : scratch;
        size_t room = out ? cap - total : sizeof(scratch);
        ssize_t r = read(fd, dst, room ? room : 1);

        if (r == 0)
            return (ssize_t)total;
        if (r < 0)
            return -1;
        total += (size_t)r;
    }
}

static void write_all(int fd, const char *data, size_t n)
{
    while (n) {
        ssize_t w = write(fd, data, n);

        assert_true(w > 0);
        data += w;
        n -= (size_t)w;
    }
}

/* True when the peer closed fd within ms (EOF or reset). */
static bool closed_within(int fd, int ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    char c;

    if (poll(&p, 1, ms) != 1)
        return false;
    return read(fd, &c, 1) <= 0;
}

static const lb_config_t base_cfg = { .advertise = "127.0.0.1" };

/* n connections through the balancer on port, each one's backend (of 3,
 * by its banner) counted in hits. */
static void count_banners(int port, int n, int hits[3])
{
    for (int i = 0; i < n; i++) {
        int fd = client("127.0.0.1", port);
        int id;

        assert_true(fd >= 0);
        id = read_banner(fd);
        assert_true(id >= 0 && id < 3);
        hits[id]++;
        close(fd);
    }
}

/* Tests. */

static void test_round_robin(void **state)
{
    backend_t *be[3];
    int port = free_port("127.0.0.1");
    int hits[3] = { 0 };
    int n = 30;

    for (int i = 0; i < 3; i++)
        be[i] = backend_start(BE_ECHO, 0);
    lb_start(&base_cfg);
    svc_t s = { "web", (uint32_t)port, false, 3, { be[0]->port, be[1]->port, be[2]->port } };
    assert_int_equal(apply(&s, 1), 0);
    count_banners(port, n, hits);
    for (int i = 0; i < 3; i++) {
        assert_in_range(hits[i], n / 3 - 1, n / 3 + 1);
        assert_int_equal(stats_of(be[i]->port).s.connections, (uint64_t)hits[i]);
    }
}

static void test_refused_backend_skipped(void **state)
{
    backend_t *a = backend_start(BE_ECHO, 0);
    backend_t *b = backend_start(BE_ECHO, 0);
    int dead = free_port("127.0.0.1");
    int port = free_port("127.0.0.1");
    int failures = 0;
    stat_args_t st;

    lb_start(&base_cfg);
    svc_t s = { "web", (uint32_t)port, false, 3, { a->port, dead, b->port } };
    assert_int_equal(apply(&s, 1), 0);
    for (int i = 0; i < 30; i++) {
        int fd = client("127.0.0.1", port);

        if (fd < 0 || read_banner(fd) < 0)
            failures++;
        if (fd >= 0)
            close(fd);
    }
    assert_int_equal(failures, 0);
    st = stats_of(dead);
    assert_true(st.found);
    assert_true(st.s.connect_failures >= 1);
    assert_int_equal(st.s.connections, 0);
    assert_int_equal(stats_of(a->port).s.connections + stats_of(b->port).s.connections, 30);
}

/* A backend that accepts and closes before a byte, with the client's request
 * unanswered, is skipped like a refusing one: the request goes to the next
 * backend, and no client sees the close. Found by e2e/lb.bats (a docker kill
 * behind docker-proxy). */
static void test_closing_backend_skipped(void **state)
{
    backend_t *a = backend_start(BE_ECHO, 0);
    backend_t *slam = backend_start(BE_SLAM, 0);
    backend_t *b = backend_start(BE_ECHO, 0);
    int port = free_port("127.0.0.1");
    int failures = 0;
    stat_args_t st;

    lb_start(&base_cfg);
    svc_t s = { "web", (uint32_t)port, false, 3, { a->port, slam->port, b->port } };
    assert_int_equal(apply(&s, 1), 0);
    for (int i = 0; i < 30; i++) {
        int fd = client("127.0.0.1", port);

        if (fd < 0 || send(fd, "GET\n", 4, MSG_NOSIGNAL) != 4 || read_banner(fd) < 0)
            failures++;
        if (fd >= 0)
            close(fd);
    }
    assert_int_equal(failures, 0);
    st = stats_of(slam->port);
    assert_true(st.found);
    assert_true(st.s.connect_failures >= 1);
    assert_true(slam->accepted >= 1);
}

static void test_connect_timeout_skipped(void **state)
{
    backend_t *silent = backend_start(BE_SILENT, 0);
    backend_t *good = backend_start(BE_ECHO, 0);
    int port = free_port("127.0.0.1");
    lb_config_t cfg = base_cfg;
    int fill[3];
    int fd;

    /* Fill the silent backend's backlog, so that further connects hang. */
    for (int i = 0; i < 3; i++) {
        struct sockaddr_in sa = { .sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)silent->port) };

        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&sa, sizeof(sa));
        usleep(50 * 1000); /* libuv takes the first off the queue */
    }
    cfg.connect_timeout_ms = 300;
    lb_start(&cfg);
    svc_t s = { "web", (uint32_t)port, false, 2, { silent->port, good->port } };
    assert_int_equal(apply(&s, 1), 0);
    fd = client("127.0.0.1", port);
    assert_true(fd >= 0);
    assert_int_equal(read_banner(fd), good->id);
    close(fd);
    assert_true(stats_of(silent->port).s.connect_failures >= 1);
    for (int i = 0; i < 3; i++)
        close(fill[i]);
}

static void test_no_backends_closes_client(void **state)
{
    int port = free_port("127.0.0.1");
    int fd;

    lb_start(&base_cfg);
    svc_t s = { "web", (uint32_t)port, false, 0, { 0 } };
    assert_int_equal(apply(&s, 1), 0);
    fd = client("127.0.0.1", port);
    assert_true(fd >= 0);
    assert_true(closed_within(fd, 2000));
    close(fd);
}

static void test_apply_adds_and_removes_listeners(void **state)
{
    backend_t *be = backend_start(BE_ECHO, 0);
    int p1 = free_port("127.0.0.1");
    int p2 = free_port("127.0.0.1");
    int fd;

    lb_start(&base_cfg);
    svc_t one[] = { { "web", (uint32_t)p1, false, 1, { be->port } } };
    svc_t two[] = { { "web", (uint32_t)p1, false, 1, { be->port } },
                    { "api", (uint32_t)p2, false, 1, { be->port } } };
    assert_int_equal(apply(one, 1), 0);
    fd = client("127.0.0.1", p1);
    assert_true(fd >= 0);
    assert_int_equal(read_banner(fd), be->id);
    close(fd);
    assert_true(client("127.0.0.1", p2) < 0 && errno == ECONNREFUSED);

    assert_int_equal(apply(two, 2), 0);
    fd = client("127.0.0.1", p2);
    assert_true(fd >= 0);
    assert_int_equal(read_banner(fd), be->id);
    close(fd);

    assert_int_equal(apply(NULL, 0), 0);
    usleep(50 * 1000); /* listeners close on the loop */
    assert_true(client("127.0.0.1", p1) < 0 && errno == ECONNREFUSED);
    assert_true(client("127.0.0.1", p2) < 0 && errno == ECONNREFUSED);
    assert_int_equal(stats_of(be->port).rows, 0);

    assert_int_equal(apply(one, 1), 0);
    fd = client("127.0.0.1", p1);
    assert_true(fd >= 0);
    assert_int_equal(read_banner(fd), be->id);
    close(fd);
}

static void test_apply_keeps_open_connections(void **state)
{
    backend_t *a = backend_start(BE_ECHO, 0);
    backend_t *b = backend_start(BE_ECHO, 0);
    int port = free_port("127.0.0.1");
    char buf[8];
    stat_args_t st;
    int fd, fd2;

    lb_start(&base_cfg);
    svc_t sa = { "web", (uint32_t)port, false, 1, { a->port } };
    svc_t sb = { "web", (uint32_t)port, false, 1, { b->port } };
    assert_int_equal(apply(&sa, 1), 0);
    fd = client("127.0.0.1", port);
    assert_true(fd >= 0);
    assert_int_equal(read_banner(fd), a->id);

    /* a leaves the set: new connections go to b, the open one goes on. */
    assert_int_equal(apply(&sb, 1), 0);
    fd2 = client("127.0.0.1", port);
    assert_int_equal(read_banner(fd2), b->id);
    close(fd2);
    write_all(fd, "ping", 4);
    assert_int_equal(read(fd, buf, 4), 4);
    assert_memory_equal(buf, "ping", 4);
    st = stats_of(a->port);
    assert_true(st.found);
    assert_int_equal(st.s.active, 1);

    /* Closed, a's row goes: it is in no set and carries nothing. */
    close(fd);
    for (int i = 0; i < 100 && stats_of(a->port).found; i++)
        usleep(10 * 1000);
    assert_false(stats_of(a->port).found);
    assert_true(stats_of(b->port).found);
}

static void test_half_close(void **state)
{
    backend_t *be = backend_start(BE_ECHO, 0);
    int port = free_port("127.0.0.1");
    size_t n = 200 * 1000;
    char *out = malloc(n);
    char *in = malloc(n + 16);
    ssize_t got;
    int fd;

    for (size_t i = 0; i < n; i++)
        out[i] = (char)('a' + i % 26);
    lb_start(&base_cfg);
    svc_t s = { "web", (uint32_t)port, false, 1, { be->port } };
    assert_int_equal(apply(&s, 1), 0);
    fd = client("127.0.0.1", port);
    assert_true(fd >= 0);
    write_all(fd, out, n);
    shutdown(fd, SHUT_WR);
    got = read_all(fd, in, n + 16);
    assert_int_equal(got, (ssize_t)(3 + n));
    assert_memory_equal(in, "B0\n", 3);
    assert_memory_equal(in + 3, out, n);
    close(fd);
    free(out);
    free(in);
}

/* Both directions at once, with more than the buffers hold: every byte
 * comes back, in order. */
/* A client that ends its side before sending anything (and before the
 * balancer accepts it) still gets the backend's whole reply and its end. */
static void test_half_close_at_once(void **state)
{
    backend_t *be = backend_start(BE_ECHO, 0);
    int port = free_port("127.0.0.1");
    char buf[16];
    int fd;

    lb_start(&base_cfg);
    svc_t s = { "web", (uint32_t)port, false, 1, { be->port } };
    assert_int_equal(apply(&s, 1), 0);
    for (int i = 0; i < 5; i++) {
        fd = client("127.0.0.1", port);
        assert_true(fd >= 0);
        shutdown(fd, SHUT_WR);
        assert_int_equal(read_all(fd, buf, sizeof(buf)), 3);
        assert_memory_equal(buf, "B0\n", 3);
        close(fd);
    }
}

static void test_bulk_echo(void **state)
{
    backend_t *be = backend_start(BE_ECHO, 0);
    int port = free_port("127.0.0.1");
    size_t total = 16u << 20, sent = 0, got = 0, banner = 0;
    static char out[65536], in[65536];
    int fd;

    for (size_t i = 0; i < sizeof(out); i++)
        out[i] = (char)(i * 7 + i / 251);
    lb_start(&base_cfg);
    svc_t s = { "echo", (uint32_t)port, false, 1, { be->port } };
    assert_int_equal(apply(&s, 1), 0);
    fd = client("127.0.0.1", port);
    assert_true(fd >= 0);
    while (got < total) {
        struct pollfd p = { .fd = fd, .events = POLLIN | (sent < total ? POLLOUT : 0) };

        assert_int_equal(poll(&p, 1, 5000), 1);
        if ((p.revents & POLLOUT) && sent < total) {
            size_t off = sent % sizeof(out);
            size_t n = sizeof(out) - off < total - sent ? sizeof(out) - off : total - sent;
            ssize_t w = send(fd, out + off, n, MSG_DONTWAIT);

            assert_true(w > 0 || errno == EAGAIN);
            if (w > 0)
                sent += (size_t)w;
            if (sent == total)
                shutdown(fd, SHUT_WR);
        }
        if (p.revents & (POLLIN | POLLHUP)) {
            ssize_t r = recv(fd, in, sizeof(in), MSG_DONTWAIT);
            size_t i = 0;

            assert_true(r > 0 || (r < 0 && errno == EAGAIN));
            for (; r > 0 && banner < 3; banner++, i++, r--)
                ;
            for (; r > 0; i++, r--, got++)
                assert_int_equal(in[i], out[got % sizeof(out)]);
        }
    }
    assert_true(closed_within(fd, 2000));
    close(fd);
    assert_int_equal(stats_of(be->port).s.bytes_in, total);
    assert_int_equal(stats_of(be->port).s.bytes_out, total + 3);
}

static void test_backpressure(void **state)
{
    size_t total = 64u << 20;
    backend_t *be = backend_start(BE_BIG, total);
    int port = free_port("127.0.0.1");
    long wmem_max = 4 << 20;
    uint64_t bound, last = 0, now;
    FILE *f = fopen("/proc/sys/net/ipv4/tcp_wmem", "r");
    int fd;

    if (f) {
        long lo, def;

        if (fscanf(f, "%ld %ld %ld", &lo, &def, &wmem_max) != 3)
            wmem_max = 4 << 20;
        fclose(f);
    }
    /* What the balancer may have read and not delivered: its buffer, and what
     * the kernel holds between it and the client (its send buffer, the
     * client's receive buffer). */
    bound = (uint64_t)wmem_max + (1u << 20) + 16 * 1024;
    lb_start(&base_cfg);
    svc_t s = { "bulk", (uint32_t)port, false, 1, { be->port } };
    assert_int_equal(apply(&s, 1), 0);
    fd = client_rcvbuf("127.0.0.1", port, 64 * 1024);
    assert_true(fd >= 0);
    /* Not reading: what the balancer read from the backend levels off. */
    for (int i = 0; i < 50; i++) {
        usleep(20 * 1000);
        now = stats_of(be->port).s.bytes_out;
        if (i > 10 && now == last)
            break;
        last = now;
    }
    assert_true(last > 0);
    assert_true(last < bound);
    assert_true(last < total);
    /* Reading, everything arrives. */
    assert_int_equal(read_all(fd, NULL, 0), (ssize_t)total);
    close(fd);
    assert_int_equal(stats_of(be->port).s.bytes_out, total);
}

static void test_backpressure_upstream(void **state)
{
    backend_t *be = backend_start(BE_STALL, 0);
    int port = free_port("127.0.0.1");
    long rmem_max = 6 << 20;
    static char chunk[65536];
    uint64_t bound, last = 0, now;
    FILE *f = fopen("/proc/sys/net/ipv4/tcp_rmem", "r");
    size_t sent = 0;
    int fd, sndbuf = 64 * 1024;

    if (f) {
        long lo, def;

        if (fscanf(f, "%ld %ld %ld", &lo, &def, &rmem_max) != 3)
            rmem_max = 6 << 20;
        fclose(f);
    }
    /* The balancer's buffer, its send buffer to the backend and the
     * backend's receive buffer (which can grow to tcp_rmem's maximum). */
    bound = (uint64_t)rmem_max + (4u << 20) + 16 * 1024;
    lb_start(&base_cfg);
    svc_t s = { "sink", (uint32_t)port, false, 1, { be->port } };
    assert_int_equal(apply(&s, 1), 0);
    fd = client("127.0.0.1", port);
    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    /* The backend never reads: the client can write only so much, and what
     * the balancer read from it levels off. */
    for (int i = 0; i < 100; i++) {
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        ssize_t w;

        while (poll(&p, 1, 20) == 1 && (w = send(fd, chunk, sizeof(chunk), MSG_DONTWAIT)) > 0)
            sent += (size_t)w;
        now = stats_of(be->port).s.bytes_in;
        if (i > 10 && now == last)
            break;
        last = now;
    }
    assert_true(last > 0);
    assert_true(last <= sent);
    assert_true(last < bound);
    assert_true(sent < bound + (8u << 20));
    close(fd);
}

/* Backends the balancer cannot use are skipped; the others serve. */
static void test_bad_backends_skipped(void **state)
{
    backend_t *be = backend_start(BE_ECHO, 0);
    int port = free_port("127.0.0.1");
    PortMapping good = SKIFF__V1__PORT_MAPPING__INIT, other = SKIFF__V1__PORT_MAPPING__INIT;
    PortMapping zero = SKIFF__V1__PORT_MAPPING__INIT;
    PortMapping *pgood = &good, *pother = &other, *pzero = &zero;
    Backend b[4] = { SKIFF__V1__BACKEND__INIT, SKIFF__V1__BACKEND__INIT,
                     SKIFF__V1__BACKEND__INIT, SKIFF__V1__BACKEND__INIT };
    Backend *bp[4] = { &b[0], &b[1], &b[2], &b[3] };
    ServicePort sp = SKIFF__V1__SERVICE_PORT__INIT, bad = SKIFF__V1__SERVICE_PORT__INIT;
    ServicePort *spp[2] = { &bad, &sp };
    ServiceEndpoints se = SKIFF__V1__SERVICE_ENDPOINTS__INIT, *sep = &se;
    Endpoints eps = SKIFF__V1__ENDPOINTS__INIT;
    apply_args_t a;
    int fd;

    good.target = 80;
    good.host_port = (uint32_t)be->port;
    other.target = 81; /* not the port's target */
    other.host_port = (uint32_t)be->port;
    zero.target = 80;
    b[0].address = "not-an-address";
    b[0].n_ports = 1;
    b[0].ports = &pgood;
    b[1].address = "127.0.0.1";
    b[1].n_ports = 1;
    b[1].ports = &pother;
    b[2].address = "127.0.0.1";
    b[2].n_ports = 1;
    b[2].ports = &pzero;
    b[3].address = "127.0.0.1";
    b[3].n_ports = 1;
    b[3].ports = &pgood;
    bad.port = 70000;
    bad.target = 80;
    sp.port = (uint32_t)port;
    sp.target = 80;
    se.service_id = se.service_name = "web";
    se.n_ports = 2;
    se.ports = spp;
    se.n_backends = 4;
    se.backends = bp;
    eps.n_services = 1;
    eps.services = &sep;
    lb_start(&base_cfg);
    a = (apply_args_t){ fx.lb, &eps, -1 };
    on_loop(apply_cb, &a);
    assert_int_equal(a.rc, 0);
    for (int i = 0; i < 3; i++) {
        fd = client("127.0.0.1", port);
        assert_int_equal(read_banner(fd), be->id);
        close(fd);
    }
    assert_int_equal(stats_of(be->port).rows, 1);
    assert_int_equal(stats_of(be->port).s.connections, 3);
}

static void test_idle_timeout(void **state)
{
    backend_t *be = backend_start(BE_ECHO, 0);
    int port = free_port("127.0.0.1");
    lb_config_t cfg = base_cfg;
    char buf[8];
    int fd;

    cfg.idle_timeout_ms = 300;
    lb_start(&cfg);
    svc_t s = { "web", (uint32_t)port, false, 1, { be->port } };
    assert_int_equal(apply(&s, 1), 0);
    fd = client("127.0.0.1", port);
    assert_int_equal(read_banner(fd), be->id);
    /* Activity keeps it open past the timeout. */
    for (int i = 0; i < 4; i++) {
        usleep(150 * 1000);
        write_all(fd, "x", 1);
        assert_int_equal(read(fd, buf, 1), 1);
    }
    assert_true(closed_within(fd, 2000));
    close(fd);
    assert_int_equal(stats_of(be->port).s.active, 0);
    assert_int_equal(stats_of(be->port).conns, 0);
}

static void test_stats_counters(void **state)
{
    backend_t *be = backend_start(BE_ECHO, 0);
    int port = free_port("127.0.0.1");
    char buf[128];
    stat_args_t st;
    int fd;

    lb_start(&base_cfg);
    svc_t s = { "web", (uint32_t)port, false, 1, { be->port } };
    assert_int_equal(apply(&s, 1), 0);
    st = stats_of(be->port);
    assert_true(st.found);
    assert_int_equal(st.rows, 1);
    assert_int_equal(st.s.connections, 0);

    fd = client("127.0.0.1", port);
    assert_int_equal(read_banner(fd), be->id);
    write_all(fd, "hello world", 11);
    assert_int_equal(read(fd, buf, 11), 11);
    st = stats_of(be->port);
    assert_int_equal(st.s.connections, 1);
    assert_int_equal(st.s.active, 1);
    assert_int_equal(st.s.bytes_in, 11);
    assert_int_equal(st.s.bytes_out, 3 + 11);
    assert_int_equal(st.s.connect_failures, 0);
    assert_int_equal(st.conns, 1);
    shutdown(fd, SHUT_WR);
    assert_int_equal(read_all(fd, buf, sizeof(buf)), 0);
    close(fd);
    for (int i = 0; i < 100 && stats_of(be->port).s.active; i++)
        usleep(10 * 1000);
    st = stats_of(be->port);
    assert_int_equal(st.s.active, 0);
    assert_int_equal(st.s.connections, 1);
    assert_int_equal(st.conns, 0);
}

static void test_gateway_and_internal(void **state)
{
    backend_t *be = backend_start(BE_ECHO, 0);
    int pub = free_port("127.0.0.1");
    int internal = free_port("127.0.0.1");
    lb_config_t cfg = base_cfg, cfg2;
    lb_t *other;
    int fd;

    /* 127.0.0.3 plays the bridge gateway; two balancers share it. */
    cfg.gateway = "127.0.0.3";
    cfg2 = cfg;
    cfg2.advertise = "127.0.0.2";
    on_loop(lb_create_cb, &cfg2);
    other = fx.lb;
    assert_non_null(other);
    *state = other;
    fx.lb = NULL;
    lb_start(&cfg);
    svc_t s[] = { { "web", (uint32_t)pub, false, 1, { be->port } },
                  { "db", (uint32_t)internal, true, 1, { be->port } } };
    assert_int_equal(apply(s, 2), 0);
    assert_int_equal(apply_to(other, s, 2), 0);

    fd = client("127.0.0.1", pub);
    assert_int_equal(read_banner(fd), be->id);
    close(fd);
    fd = client("127.0.0.3", pub);
    assert_int_equal(read_banner(fd), be->id);
    close(fd);
    fd = client("127.0.0.2", pub);
    assert_int_equal(read_banner(fd), be->id);
    close(fd);
    fd = client("127.0.0.3", internal);
    assert_int_equal(read_banner(fd), be->id);
    close(fd);
    assert_true(client("127.0.0.1", internal) < 0 && errno == ECONNREFUSED);
    assert_true(client("127.0.0.2", internal) < 0 && errno == ECONNREFUSED);
}

static void test_port_taken_retried(void **state)
{
    backend_t *be = backend_start(BE_ECHO, 0);
    int taken = free_port("127.0.0.1");
    int other = free_port("127.0.0.1");
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)taken) };
    lb_config_t cfg = base_cfg;
    int squatter = socket(AF_INET, SOCK_STREAM, 0);
    int fd = -1;

    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(bind(squatter, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(squatter, 8), 0);
    cfg.retry_ms = 100;
    lb_start(&cfg);
    svc_t s[] = { { "web", (uint32_t)taken, false, 1, { be->port } },
                  { "api", (uint32_t)other, false, 1, { be->port } } };
    assert_int_equal(apply(s, 2), 0);
    /* The other listener works. */
    fd = client("127.0.0.1", other);
    assert_int_equal(read_banner(fd), be->id);
    close(fd);
    /* Once the port is free, the retry timer takes it. */
    close(squatter);
    for (int i = 0; i < 100; i++) {
        fd = client("127.0.0.1", taken);
        if (fd >= 0)
            break;
        usleep(20 * 1000);
    }
    assert_true(fd >= 0);
    assert_int_equal(read_banner(fd), be->id);
    close(fd);
}

static void test_max_connections(void **state)
{
    backend_t *be = backend_start(BE_ECHO, 0);
    int port = free_port("127.0.0.1");
    lb_config_t cfg = base_cfg;
    int fd[3];

    cfg.max_connections = 2;
    lb_start(&cfg);
    svc_t s = { "web", (uint32_t)port, false, 1, { be->port } };
    assert_int_equal(apply(&s, 1), 0);
    for (int i = 0; i < 2; i++) {
        fd[i] = client("127.0.0.1", port);
        assert_int_equal(read_banner(fd[i]), be->id);
    }
    fd[2] = client("127.0.0.1", port);
    assert_true(fd[2] >= 0);
    assert_true(closed_within(fd[2], 2000));
    close(fd[2]);
    close(fd[0]);
    for (int i = 0; i < 100 && stats_of(be->port).conns > 1; i++)
        usleep(10 * 1000);
    fd[2] = client("127.0.0.1", port);
    assert_int_equal(read_banner(fd[2]), be->id);
    close(fd[1]);
    close(fd[2]);
    assert_true(accepted(be) == 3);
}

/* Threads (lb_config_t.threads > 1): every worker has its own listener
 * (SO_REUSEPORT); they share the round-robin cursor; every connection must
 * be served, by every worker. */

typedef struct thread_args {
    lb_t *lb;
    size_t n;
    uint64_t per[8];
    uint64_t total;
} thread_args_t;

static void threads_cb(void *arg)
{
    thread_args_t *a = arg;

    a->n = lb_threads(a->lb);
    a->total = 0;
    for (size_t i = 0; i < a->n && i < 8; i++) {
        a->per[i] = lb_thread_connections(a->lb, i);
        a->total += a->per[i];
    }
}

static thread_args_t thread_counts(void)
{
    thread_args_t a = { .lb = fx.lb };

    on_loop(threads_cb, &a);
    return a;
}

static const lb_config_t threads_cfg = { .advertise = "127.0.0.1", .threads = 2 };

static void test_threads_spread(void **state)
{
    backend_t *be[3];
    int port = free_port("127.0.0.1");
    int hits[3] = { 0 };
    int n = 200;
    uint64_t conns = 0;
    thread_args_t t;

    for (int i = 0; i < 3; i++)
        be[i] = backend_start(BE_ECHO, 0);
    lb_start(&threads_cfg);
    svc_t s = { "web", (uint32_t)port, false, 3, { be[0]->port, be[1]->port, be[2]->port } };
    assert_int_equal(apply(&s, 1), 0);
    count_banners(port, n, hits);
    t = thread_counts();
    assert_int_equal(t.n, 2);
    assert_int_equal(t.total, (uint64_t)n);
    /* The kernel hashes each connection to one listener: about half each. */
    for (size_t i = 0; i < t.n; i++)
        assert_true(t.per[i] >= (uint64_t)n / 4);
    /* One cursor for both workers: strict round-robin still. */
    for (int i = 0; i < 3; i++) {
        assert_in_range(hits[i], n / 3 - 1, n / 3 + 1);
        conns += stats_of(be[i]->port).s.connections;
    }
    assert_int_equal(conns, (uint64_t)n);
}

static void test_threads_drain(void **state)
{
    backend_t *a = backend_start(BE_ECHO, 0);
    backend_t *b = backend_start(BE_ECHO, 0);
    int port = free_port("127.0.0.1");
    int open_fd;

    lb_start(&threads_cfg);
    svc_t s2 = { "web", (uint32_t)port, false, 2, { a->port, b->port } };
    assert_int_equal(apply(&s2, 1), 0);
    /* A connection to a, kept open across the drain. */
    do {
        open_fd = client("127.0.0.1", port);
        assert_true(open_fd >= 0);
        if (read_banner(open_fd) == a->id)
            break;
        close(open_fd);
        open_fd = -1;
    } while (open_fd < 0);
    svc_t s1 = { "web", (uint32_t)port, false, 1, { b->port } };
    assert_int_equal(apply(&s1, 1), 0);
    int before = accepted(a);
    for (int i = 0; i < 100; i++) {
        int fd = client("127.0.0.1", port);

        assert_true(fd >= 0);
        assert_int_equal(read_banner(fd), b->id);
        close(fd);
    }
    thread_args_t t = thread_counts();
    for (size_t i = 0; i < t.n; i++)
        assert_true(t.per[i] > 0); /* every worker saw the drain */
    assert_int_equal(accepted(a), before);
    /* The open connection goes on. */
    write_all(open_fd, "ping", 4);
    char buf[4];
    assert_int_equal(read(open_fd, buf, 4), 4);
    assert_memory_equal(buf, "ping", 4);
    close(open_fd);
}

static void close_flag_cb(void *arg)
{
    *(bool *)arg = true;
}

static void lb_close_cb(void *arg)
{
    lb_close(fx.lb, close_flag_cb, arg);
    fx.lb = NULL;
}

static void flag_cb(void *arg)
{
    bool *src = ((bool **)arg)[0], *dst = ((bool **)arg)[1];

    *dst = *src;
}

static void test_threads_close_with_open_connections(void **state)
{
    backend_t *be = backend_start(BE_ECHO, 0);
    int port = free_port("127.0.0.1");
    int fd[10];
    bool closed = false, seen = false;
    bool *pair[2] = { &closed, &seen };

    lb_start(&threads_cfg);
    svc_t s = { "web", (uint32_t)port, false, 1, { be->port } };
    assert_int_equal(apply(&s, 1), 0);
    for (int i = 0; i < 10; i++) {
        fd[i] = client("127.0.0.1", port);
        assert_int_equal(read_banner(fd[i]), be->id);
    }
    on_loop(lb_close_cb, &closed);
    for (int i = 0; i < 200 && !seen; i++) {
        on_loop(flag_cb, pair);
        if (!seen)
            usleep(5 * 1000);
    }
    assert_true(seen);
    for (int i = 0; i < 10; i++) {
        assert_true(closed_within(fd[i], 2000));
        close(fd[i]);
    }
    assert_true(client("127.0.0.1", port) < 0); /* no listener left */
}

/* With threads the advertise listeners take SO_REUSEPORT; a port another
 * process listens on (an old agent still alive) must not be shared. */
static void test_threads_port_held_not_shared(void **state)
{
    backend_t *be = backend_start(BE_ECHO, 0);
    int port = free_port("127.0.0.1");
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    int one = 1;
    int held = socket(AF_INET, SOCK_STREAM, 0);

    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    setsockopt(held, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    assert_int_equal(bind(held, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(held, 16), 0);
    lb_start(&threads_cfg);
    svc_t s = { "web", (uint32_t)port, false, 1, { be->port } };
    assert_int_equal(apply(&s, 1), 0);
    for (int i = 0; i < 20; i++) {
        int fd = client("127.0.0.1", port);
        int c;

        assert_true(fd >= 0);
        c = accept(held, NULL, NULL); /* every one came to the holder */
        assert_true(c >= 0);
        close(c);
        close(fd);
    }
    assert_int_equal(thread_counts().total, 0);
    close(held);
}

static void test_create_rejects_bad_address(void **state)
{
    lb_config_t cfg = { .advertise = "not-an-address" };

    on_loop(lb_create_cb, &cfg);
    assert_null(fx.lb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_robin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_backend_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closing_backend_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_backends_closes_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_adds_and_removes_listeners, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_keeps_open_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure_upstream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_backends_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_counters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gateway_and_internal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_port_taken_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_rejects_bad_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_spread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_close_with_open_connections, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_threads_port_held_not_shared, setup, teardown),
    };

    signal(SIGPIPE, SIG_IGN);
    log_init("test_lb", getenv("LB_DEBUG") ? LOG_DEBUG : LOG_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
