/* Unit tests of proto/conn: framed connections on a real libuv loop over
 * 127.0.0.1 sockets.
 *
 * Each test gets a fresh loop with a listening server whose accepted conns
 * are recorded in fx->srv[]; clients are either conns (fx->cli[]) or raw
 * blocking sockets, which play the misbehaving peers (garbage, oversize
 * lengths, half frames, silence, not reading). The teardown closes what is
 * left, runs the loop dry, checks that on_close ran exactly once for every
 * conn, and that the loop closes with no handle left behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#include <uv.h>

#include "buf.h"
#include "conn.h"
#include "errors.h"
#include "wire.h"

#define MAX_PEERS 8
#define MAX_KEPT 64 /* messages kept per peer; later ones are only counted */
/* Frames of 50 kB queued by the close tests: 8 MB, more than the kernel's
 * socket buffers take (tcp_wmem allows 4 MB), so some stay in the queue. */
#define QUEUED_FRAMES 160

typedef struct fixture fx_t;

/* One side of a connection, as the callbacks see it (conn_data). */
typedef struct peer {
    fx_t *fx;
    conn_t *c;         /* NULL once on_close ran */
    int created;
    int nmsg;
    Envelope *msgs[MAX_KEPT];
    int connects, connect_status;
    int closes, close_err;
    /* what on_message does */
    int reply_hello;       /* answer a Hello with a HelloReply of the same id */
    int reply_error;       /* answer with conn_send_error, then conn_close(c, 0) */
    int close_in_message;  /* call conn_close(c, close_err_in_message) */
    int close_err_in_message;
    int fail_in_message;   /* return this */
    int send_on_connect;   /* send Hellos 1..send_on_connect when connected */
} peer_t;

struct fixture {
    uv_loop_t loop;
    uv_tcp_t server;
    uv_timer_t tick;
    int port;
    conn_limits_t srv_limits;
    int nsrv;
    peer_t srv[MAX_PEERS];
    peer_t cli[MAX_PEERS];
    int raw[MAX_PEERS];
};

/* ------------------------------------------------------------- helpers */

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* Runs the loop until cond holds; fails the test after ms. The tick timer
 * makes every UV_RUN_ONCE return within a few milliseconds. */
#define RUN_UNTIL(fx, cond, ms)                                                 \
    do {                                                                        \
        uint64_t deadline_ = now_ms() + (ms);                                   \
        while (!(cond)) {                                                       \
            if (now_ms() > deadline_)                                           \
                fail_msg("%s:%d: timed out waiting for %s", __FILE__, __LINE__, \
                         #cond);                                                \
            uv_run(&(fx)->loop, UV_RUN_ONCE);                                   \
        }                                                                       \
    } while (0)

static void run_for(fx_t *fx, uint64_t ms)
{
    uint64_t end = now_ms() + ms;

    while (now_ms() < end)
        uv_run(&fx->loop, UV_RUN_ONCE);
}

static void fill(uint8_t *data, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)(i * 31 + id);
}

static void make_hello(Envelope *env, Hello *hello, uint64_t id)
{
    *env = (Envelope)PB_ENVELOPE_INIT;
    *hello = (Hello)PB_HELLO_INIT;
    hello->role = ROLE_CLIENT;
    hello->token = (char *)"token";
    env->id = id;
    env->msg_case = MSG_HELLO;
    env->hello = hello;
}

/* A LogsData of n bytes; *data is malloc'd, the caller frees it. */
static void make_logs(Envelope *env, LogsData *ld, uint64_t id, size_t n, uint8_t **data)
{
    *data = malloc(n ? n : 1);
    assert_non_null(*data);
    fill(*data, n, id);
    *env = (Envelope)PB_ENVELOPE_INIT;
    *ld = (LogsData)PB_LOGS_DATA_INIT;
    ld->stream = id;
    ld->data.data = *data;
    ld->data.len = n;
    env->id = id;
    env->msg_case = MSG_LOGS_DATA;
    env->logs_data = ld;
}

static void check_logs(const Envelope *env, uint64_t id, size_t n)
{
    uint8_t *want;

    assert_non_null(env);
    assert_int_equal(env->msg_case, MSG_LOGS_DATA);
    assert_int_equal(env->id, id);
    assert_int_equal(env->logs_data->stream, id);
    assert_int_equal(env->logs_data->data.len, n);
    want = malloc(n ? n : 1);
    assert_non_null(want);
    fill(want, n, id);
    assert_memory_equal(env->logs_data->data.data, want, n);
    free(want);
}

/* The frame of env, malloc'd. */
static uint8_t *frame_of(const Envelope *env, size_t *len)
{
    uint8_t *f;

    *len = wire_frame_size(env);
    f = malloc(*len);
    assert_non_null(f);
    wire_pack(env, f);
    return f;
}

static uint8_t *hello_frame(uint64_t id, size_t *len)
{
    Envelope env;
    Hello hello;

    make_hello(&env, &hello, id);
    return frame_of(&env, len);
}

static uint8_t *logs_frame(uint64_t id, size_t n, size_t *len)
{
    Envelope env;
    LogsData ld;
    uint8_t *data, *f;

    make_logs(&env, &ld, id, n, &data);
    f = frame_of(&env, len);
    free(data);
    return f;
}

/* The frame size of make_logs(id, n): it grows with the id's varint. */
static size_t logs_size(uint64_t id, size_t n)
{
    Envelope env;
    LogsData ld;
    uint8_t *data;
    size_t size;

    make_logs(&env, &ld, id, n, &data);
    size = wire_frame_size(&env);
    free(data);
    return size;
}

static int send_logs(conn_t *c, uint64_t id, size_t n)
{
    Envelope env;
    LogsData ld;
    uint8_t *data;
    int rc;

    make_logs(&env, &ld, id, n, &data);
    rc = conn_send(c, &env);
    free(data);
    return rc;
}

/* ----------------------------------------------------------- callbacks */

static int on_message(conn_t *c, Envelope *env)
{
    peer_t *p = conn_data(c);

    assert_non_null(p);
    assert_ptr_equal(p->c, c);
    assert_int_equal(p->closes, 0);
    if (p->reply_hello && env->msg_case == MSG_HELLO) {
        Envelope r = PB_ENVELOPE_INIT;
        HelloReply hr = PB_HELLO_REPLY_INIT;
        hr.cluster_id = (char *)"cluster-1";
        r.id = env->id;
        r.msg_case = MSG_HELLO_REPLY;
        r.hello_reply = &hr;
        assert_int_equal(conn_send(c, &r), 0);
    }
    if (p->reply_error) {
        assert_int_equal(conn_send_error(c, env->id, ERR_AUTH, "bad token %s (%d)", "x", 7), 0);
        conn_close(c, 0);
    }
    if (p->nmsg < MAX_KEPT)
        p->msgs[p->nmsg] = env;
    else
        wire_free(env);
    p->nmsg++;
    if (p->close_in_message) {
        conn_close(c, p->close_err_in_message);
        assert_true(conn_is_closing(c));
        conn_close(c, SKIFF_EPROTO); /* a second close changes nothing */
    }
    return p->fail_in_message;
}

static void on_connect(conn_t *c, int status)
{
    peer_t *p = conn_data(c);

    p->connects++;
    p->connect_status = status;
    for (int i = 1; status == 0 && i <= p->send_on_connect; i++) {
        Envelope env;
        Hello hello;
        make_hello(&env, &hello, (uint64_t)i);
        assert_int_equal(conn_send(c, &env), 0);
    }
}

static void on_close(conn_t *c, int err)
{
    peer_t *p = conn_data(c);

    p->closes++;
    p->close_err = err;
    p->c = NULL;
}

static const conn_ops_t ops = {
    .on_message = on_message,
    .on_connect = on_connect,
    .on_close = on_close,
};

static void on_connection(uv_stream_t *server, int status)
{
    fx_t *fx = server->data;
    peer_t *p;

    assert_int_equal(status, 0);
    assert_true(fx->nsrv < MAX_PEERS);
    p = &fx->srv[fx->nsrv++];
    p->fx = fx;
    p->created = 1;
    p->c = conn_create(&fx->loop, &ops, &fx->srv_limits, p);
    assert_non_null(p->c);
    assert_int_equal(conn_accept(p->c, server), 0);
}

static void on_tick(uv_timer_t *t)
{
}

/* A client conn connecting to the server. */
static conn_t *client_connect(fx_t *fx, peer_t *p, const conn_limits_t *limits)
{
    char hostport[32];

    p->fx = fx;
    p->created = 1;
    p->c = conn_create(&fx->loop, &ops, limits, p);
    assert_non_null(p->c);
    snprintf(hostport, sizeof(hostport), "127.0.0.1:%d", fx->port);
    assert_int_equal(conn_connect(p->c, hostport), 0);
    return p->c;
}

/* A raw blocking socket connected to the server, with TCP_NODELAY; rcvbuf,
 * when not 0, is set before connecting (so the window stays small). */
static int raw_connect(fx_t *fx, int rcvbuf)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int slot;

    assert_true(fd >= 0);
    for (slot = 0; slot < MAX_PEERS && fx->raw[slot] >= 0; slot++)
        ;
    assert_true(slot < MAX_PEERS);
    fx->raw[slot] = fd;
    if (rcvbuf)
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    sa.sin_port = htons((uint16_t)fx->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
    return fd;
}

static void raw_close(fx_t *fx, int fd)
{
    for (int i = 0; i < MAX_PEERS; i++)
        if (fx->raw[i] == fd)
            fx->raw[i] = -1;
    close(fd);
}

static void raw_send(int fd, const void *data, size_t n)
{
    const char *p = data;

    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        assert_true(w > 0);
        p += w;
        n -= (size_t)w;
    }
}

/* Reads what is there without blocking. Returns the bytes read, 0 at EOF,
 * -1 when nothing is there yet, -2 on a reset. */
static ssize_t raw_recv_some(int fd, buf_t *into)
{
    char tmp[65536];
    ssize_t r = recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT);

    if (r > 0) {
        assert_int_equal(buf_append(into, tmp, (size_t)r, (size_t)256 << 20), 0);
        return r;
    }
    if (r == 0)
        return 0;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return -1;
    return -2;
}

/* Reads until EOF (or a reset), running the loop meanwhile. Returns 0 at
 * EOF, -2 on a reset. */
static int raw_read_to_eof(fx_t *fx, int fd, buf_t *into, uint64_t ms)
{
    uint64_t deadline = now_ms() + ms;

    for (;;) {
        ssize_t r = raw_recv_some(fd, into);
        if (r == 0 || r == -2)
            return (int)r;
        if (r == -1) {
            if (now_ms() > deadline)
                fail_msg("no EOF after %llu ms", (unsigned long long)ms);
            uv_run(&fx->loop, UV_RUN_ONCE);
        }
    }
}

/* Decodes every frame in b into LogsData checks: ids first_id, first_id+1,
 * ... each of n bytes. Returns how many. */
static int count_logs_frames(buf_t *b, uint64_t first_id, size_t n)
{
    Envelope *env;
    int count = 0, rc;

    while ((rc = wire_decode(b, WIRE_MAX_FRAME_DEFAULT, &env)) == 1) {
        check_logs(env, first_id + (uint64_t)count, n);
        wire_free(env);
        count++;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(buf_len(b), 0);
    return count;
}

/* ------------------------------------------------------- setup, teardown */

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    struct sockaddr_in sa;
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    if (!fx)
        return -1;
    for (int i = 0; i < MAX_PEERS; i++)
        fx->raw[i] = -1;
    if (uv_loop_init(&fx->loop) != 0)
        return -1;
    uv_tcp_init(&fx->loop, &fx->server);
    fx->server.data = fx;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    if (uv_tcp_bind(&fx->server, (struct sockaddr *)&sa, 0) != 0 ||
        uv_listen((uv_stream_t *)&fx->server, 64, on_connection) != 0 ||
        uv_tcp_getsockname(&fx->server, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    fx->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    uv_timer_init(&fx->loop, &fx->tick);
    uv_timer_start(&fx->tick, on_tick, 5, 5);
    *state = fx;
    return 0;
}

static void free_msgs(peer_t *p)
{
    for (int i = 0; i < p->nmsg && i < MAX_KEPT; i++)
        wire_free(p->msgs[i]);
    p->nmsg = 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    uint64_t deadline;
    int ok = 1;

    for (int i = 0; i < MAX_PEERS; i++)
        if (fx->raw[i] >= 0)
            raw_close(fx, fx->raw[i]);
    for (int i = 0; i < MAX_PEERS; i++) {
        if (fx->srv[i].c && fx->srv[i].closes == 0)
            conn_close(fx->srv[i].c, SKIFF_ECLOSED);
        if (fx->cli[i].c && fx->cli[i].closes == 0)
            conn_close(fx->cli[i].c, SKIFF_ECLOSED);
    }
    uv_close((uv_handle_t *)&fx->tick, NULL);
    uv_close((uv_handle_t *)&fx->server, NULL);
    deadline = now_ms() + 10000;
    while (uv_run(&fx->loop, UV_RUN_NOWAIT) != 0 && now_ms() < deadline)
        usleep(1000);
    for (int i = 0; i < MAX_PEERS; i++) {
        peer_t *ps[2] = { &fx->srv[i], &fx->cli[i] };
        for (int k = 0; k < 2; k++) {
            if (ps[k]->created && ps[k]->closes != 1) {
                fprintf(stderr, "%s[%d]: on_close ran %d times\n", k ? "cli" : "srv", i,
                        ps[k]->closes);
                ok = 0;
            }
            free_msgs(ps[k]);
        }
    }
    if (uv_loop_close(&fx->loop) != 0) {
        fprintf(stderr, "the loop still has handles\n");
        ok = 0;
    }
    free(fx);
    return ok ? 0 : -1;
}

/* ---------------------------------------------------------------- tests */

static void test_exchange(void **state)
{
    fx_t *fx = *state;
    peer_t *cli = &fx->cli[0], *srv = &fx->srv[0];
    char want[32];
    conn_t *c;

    srv->reply_hello = 1;
    cli->send_on_connect = 3;
    c = conn_create(&fx->loop, &ops, NULL, cli);
    assert_non_null(c);
    cli->fx = fx;
    cli->created = 1;
    cli->c = c;
    /* Before it connects, a conn has no addresses and sends nothing. */
    assert_string_equal(conn_peer(c), "?");
    assert_string_equal(conn_local_addr(c), "");
    assert_ptr_equal(conn_data(c), cli);
    assert_int_equal(conn_send_error(c, 1, ERR_AUTH, "no"), SKIFF_ECLOSED);
    assert_false(conn_is_closing(c));
    snprintf(want, sizeof(want), "127.0.0.1:%d", fx->port);
    assert_int_equal(conn_connect(c, want), 0);

    RUN_UNTIL(fx, cli->nmsg == 3, 5000);
    assert_int_equal(cli->connects, 1);
    assert_int_equal(cli->connect_status, 0);
    assert_int_equal(fx->nsrv, 1);
    assert_int_equal(srv->nmsg, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(srv->msgs[i]->msg_case, MSG_HELLO);
        assert_int_equal(srv->msgs[i]->id, i + 1);
        assert_int_equal(srv->msgs[i]->hello->role, ROLE_CLIENT);
        assert_string_equal(srv->msgs[i]->hello->token, "token");
        assert_int_equal(cli->msgs[i]->msg_case, MSG_HELLO_REPLY);
        assert_int_equal(cli->msgs[i]->id, i + 1);
        assert_string_equal(cli->msgs[i]->hello_reply->cluster_id, "cluster-1");
    }
    assert_string_equal(conn_peer(c), want);
    assert_string_equal(conn_local_addr(c), "127.0.0.1");
    assert_string_equal(conn_local_addr(srv->c), "127.0.0.1");
    assert_memory_equal(conn_peer(srv->c), "127.0.0.1:", 10);
    RUN_UNTIL(fx, conn_pending(c) == 0 && conn_pending(srv->c) == 0, 5000);

    /* conn_set_data replaces the caller's pointer. */
    conn_set_data(c, NULL);
    assert_null(conn_data(c));
    conn_set_data(c, cli);

    conn_close(c, 0);
    assert_true(conn_is_closing(c));
    assert_int_equal(send_logs(c, 9, 10), SKIFF_ECLOSED); /* refused after close */
    RUN_UNTIL(fx, cli->closes == 1 && srv->closes == 1, 5000);
    assert_int_equal(cli->close_err, 0);
    assert_int_equal(srv->close_err, SKIFF_ECLOSED); /* the peer went away */
    assert_int_equal(cli->nmsg, 3);
}

static void test_send_frame(void **state)
{
    fx_t *fx = *state;
    peer_t *cli = &fx->cli[0], *srv = &fx->srv[0];
    conn_limits_t lim = { .max_frame = 1024, .max_pending = 3000 };
    int rc, queued = 0;
    size_t len;
    uint8_t *f;

    cli->fx = fx;
    cli->created = 1;
    cli->c = conn_create(&fx->loop, &ops, &lim, cli);
    assert_non_null(cli->c);
    f = hello_frame(1, &len);
    assert_int_equal(conn_send_frame(cli->c, f, len), SKIFF_ECLOSED); /* not connected */
    {
        char hostport[32];
        snprintf(hostport, sizeof(hostport), "127.0.0.1:%d", fx->port);
        assert_int_equal(conn_connect(cli->c, hostport), 0);
    }
    RUN_UNTIL(fx, cli->connects == 1 && fx->nsrv == 1, 5000);
    assert_int_equal(cli->connect_status, 0);

    /* Shorter than a header: not a frame. */
    assert_int_equal(conn_send_frame(cli->c, f, WIRE_HEADER_SIZE - 1), SKIFF_EINVAL);
    assert_int_equal(conn_pending(cli->c), 0);

    /* The bytes are copied: the caller's frame can go at once. */
    assert_int_equal(conn_send_frame(cli->c, f, len), 0);
    assert_int_equal(conn_pending(cli->c), len);
    memset(f, 0xff, len);
    free(f);
    f = logs_frame(2, 900, &len);
    assert_int_equal(conn_send_frame(cli->c, f, len), 0);
    free(f);

    /* Past max_frame, and past max_pending: refused, nothing queued. */
    f = logs_frame(3, 1100, &len);
    assert_int_equal(conn_send_frame(cli->c, f, len), SKIFF_ELIMIT);
    free(f);
    f = logs_frame(3, 1000, &len);
    while ((rc = conn_send_frame(cli->c, f, len)) == 0)
        queued++;
    assert_int_equal(rc, SKIFF_ELIMIT);
    assert_int_equal(queued, 2); /* about 1 kB each, after 0.9 kB: a third passes 3000 */
    assert_true(conn_pending(cli->c) + len > lim.max_pending);
    free(f);

    RUN_UNTIL(fx, srv->nmsg == 4, 5000);
    assert_int_equal(srv->msgs[0]->msg_case, MSG_HELLO);
    assert_int_equal(srv->msgs[0]->id, 1);
    check_logs(srv->msgs[1], 2, 900);
    check_logs(srv->msgs[2], 3, 1000);
    check_logs(srv->msgs[3], 3, 1000);
    RUN_UNTIL(fx, conn_pending(cli->c) == 0, 5000);

    conn_close(cli->c, 0);
    f = hello_frame(5, &len);
    assert_int_equal(conn_send_frame(cli->c, f, len), SKIFF_ECLOSED);
    free(f);
    RUN_UNTIL(fx, cli->closes == 1 && srv->closes == 1, 5000);
}

static void test_many_clients(void **state)
{
    fx_t *fx = *state;
    enum { CLIENTS = 4, EACH = 20 };

    for (int i = 0; i < CLIENTS; i++) {
        fx->srv[i].reply_hello = 1;
        fx->cli[i].send_on_connect = EACH;
        client_connect(fx, &fx->cli[i], NULL);
    }
    RUN_UNTIL(fx, fx->cli[0].nmsg == EACH && fx->cli[1].nmsg == EACH &&
                      fx->cli[2].nmsg == EACH && fx->cli[3].nmsg == EACH, 5000);
    for (int i = 0; i < CLIENTS; i++) {
        assert_int_equal(fx->srv[i].nmsg, EACH);
        for (int k = 0; k < EACH; k++)
            assert_int_equal(fx->cli[i].msgs[k]->id, k + 1);
        conn_close(fx->cli[i].c, 0);
    }
    RUN_UNTIL(fx, fx->srv[0].closes + fx->srv[1].closes + fx->srv[2].closes +
                          fx->srv[3].closes == CLIENTS, 5000);
}

static void test_large_frames(void **state)
{
    fx_t *fx = *state;
    peer_t *cli = &fx->cli[0], *srv = &fx->srv[0];
    const size_t n = 1500000;

    client_connect(fx, cli, NULL);
    RUN_UNTIL(fx, cli->connects == 1, 5000);
    assert_int_equal(cli->connect_status, 0);
    for (uint64_t id = 1; id <= 3; id++)
        assert_int_equal(send_logs(cli->c, id, n), 0);
    assert_true(conn_pending(cli->c) > 0);
    RUN_UNTIL(fx, srv->nmsg == 3, 10000);
    for (uint64_t id = 1; id <= 3; id++)
        check_logs(srv->msgs[id - 1], id, n);
    RUN_UNTIL(fx, conn_pending(cli->c) == 0, 5000);
    /* and small ones after, on the same (shrunk) input buffer */
    assert_int_equal(send_logs(cli->c, 4, 10), 0);
    RUN_UNTIL(fx, srv->nmsg == 4, 5000);
    check_logs(srv->msgs[3], 4, 10);
}

static void test_several_frames_in_one_write(void **state)
{
    fx_t *fx = *state;
    peer_t *srv = &fx->srv[0];
    uint8_t stream[4096];
    size_t total = 0;
    int fd = raw_connect(fx, 0);

    for (uint64_t id = 1; id <= 6; id++) {
        size_t len;
        uint8_t *f = id % 2 ? hello_frame(id, &len) : logs_frame(id, 300, &len);
        assert_true(total + len <= sizeof(stream));
        memcpy(stream + total, f, len);
        total += len;
        free(f);
    }
    raw_send(fd, stream, total);
    RUN_UNTIL(fx, srv->nmsg == 6, 5000);
    for (uint64_t id = 1; id <= 6; id++) {
        assert_int_equal(srv->msgs[id - 1]->id, id);
        if (id % 2 == 0)
            check_logs(srv->msgs[id - 1], id, 300);
        else
            assert_int_equal(srv->msgs[id - 1]->msg_case, MSG_HELLO);
    }
    run_for(fx, 20);
    assert_int_equal(srv->nmsg, 6);
    assert_int_equal(srv->closes, 0);
}

static void test_frame_one_byte_at_a_time(void **state)
{
    fx_t *fx = *state;
    peer_t *srv = &fx->srv[0];
    size_t len;
    uint8_t *f = logs_frame(5, 300, &len);
    int fd = raw_connect(fx, 0);

    RUN_UNTIL(fx, fx->nsrv == 1, 5000);
    for (size_t i = 0; i < len; i++) {
        raw_send(fd, f + i, 1);
        usleep(100);
        uv_run(&fx->loop, UV_RUN_NOWAIT);
        uv_run(&fx->loop, UV_RUN_NOWAIT);
        if (i + 1 < len && srv->nmsg != 0)
            fail_msg("a message after %zu of %zu bytes", i + 1, len);
    }
    RUN_UNTIL(fx, srv->nmsg == 1, 5000);
    check_logs(srv->msgs[0], 5, 300);
    assert_int_equal(srv->closes, 0);
    free(f);
}

/* A raw peer sends these bytes; the server conn closes with want. */
static void expect_close_after(fx_t *fx, const void *bytes, size_t n, int want, int want_msgs)
{
    peer_t *srv = &fx->srv[0];
    buf_t got = BUF_INIT;
    int fd = raw_connect(fx, 0);

    raw_send(fd, bytes, n);
    RUN_UNTIL(fx, srv->closes == 1, 5000);
    assert_int_equal(srv->close_err, want);
    assert_int_equal(srv->nmsg, want_msgs);
    /* The raw peer sees the connection end. */
    raw_read_to_eof(fx, fd, &got, 5000);
    assert_int_equal(buf_len(&got), 0);
    buf_free(&got);
}

static void test_garbage_closes(void **state)
{
    static const uint8_t garbage[] = { 0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff,
                                       0xff, 0xff, 0xff, 0xff };

    expect_close_after(*state, garbage, sizeof(garbage), SKIFF_EFRAME, 0);
}

static void test_no_message_set_closes(void **state)
{
    static const uint8_t only_id[] = { 0, 0, 0, 2, 0x08, 0x05 }; /* Envelope{id: 5} */

    expect_close_after(*state, only_id, sizeof(only_id), SKIFF_EFRAME, 0);
}

static void test_zero_length_closes(void **state)
{
    static const uint8_t zero[] = { 0, 0, 0, 0 };

    expect_close_after(*state, zero, sizeof(zero), SKIFF_EFRAME, 0);
}

static void test_good_frames_then_garbage(void **state)
{
    fx_t *fx = *state;
    uint8_t stream[256];
    size_t len, total = 0;
    uint8_t *f;

    for (uint64_t id = 1; id <= 2; id++) {
        f = hello_frame(id, &len);
        memcpy(stream + total, f, len);
        total += len;
        free(f);
    }
    memcpy(stream + total, "\0\0\0\3abc", 7);
    total += 7;
    expect_close_after(fx, stream, total, SKIFF_EFRAME, 2);
    assert_int_equal(fx->srv[0].msgs[1]->id, 2);
}

static void test_oversize_closes_before_body(void **state)
{
    fx_t *fx = *state;
    uint8_t stream[256];
    size_t len;
    uint8_t *f = hello_frame(1, &len);

    fx->srv_limits.max_frame = 1024;
    /* a good frame, then a header announcing 1025 bytes that never come */
    memcpy(stream, f, len);
    memcpy(stream + len, "\0\0\x04\x01", 4);
    expect_close_after(fx, stream, len + 4, SKIFF_ETOOBIG, 1);
    free(f);
}

static void test_oversize_huge_length(void **state)
{
    static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, 'x' };

    expect_close_after(*state, huge, sizeof(huge), SKIFF_ETOOBIG, 0);
}

static void test_oversize_between_conns(void **state)
{
    fx_t *fx = *state;
    peer_t *cli = &fx->cli[0], *srv = &fx->srv[0];
    conn_limits_t small = { .max_frame = 1024 };

    /* The server may send 4 MB frames; this client takes 1 KB at most. */
    client_connect(fx, cli, &small);
    RUN_UNTIL(fx, fx->nsrv == 1 && cli->connects == 1, 5000);
    /* the client refuses to send such a frame itself */
    assert_int_equal(send_logs(cli->c, 1, 2000), SKIFF_ELIMIT);
    assert_int_equal(conn_pending(cli->c), 0);
    assert_int_equal(send_logs(srv->c, 1, 100), 0);
    assert_int_equal(send_logs(srv->c, 2, 2000), 0);
    RUN_UNTIL(fx, cli->closes == 1, 5000);
    assert_int_equal(cli->close_err, SKIFF_ETOOBIG);
    assert_int_equal(cli->nmsg, 1);
    check_logs(cli->msgs[0], 1, 100);
    RUN_UNTIL(fx, srv->closes == 1, 5000);
}

static void test_peer_reset(void **state)
{
    fx_t *fx = *state;
    peer_t *srv = &fx->srv[0];
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    int fd = raw_connect(fx, 0);

    RUN_UNTIL(fx, fx->nsrv == 1, 5000);
    raw_send(fd, "\0\0", 2);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    raw_close(fx, fd); /* RST */
    RUN_UNTIL(fx, srv->closes == 1, 5000);
    assert_true(srv->close_err == UV_ECONNRESET || srv->close_err == SKIFF_ECLOSED);
    assert_int_equal(srv->nmsg, 0);
}

static void test_frame_timeout_silent_peer(void **state)
{
    fx_t *fx = *state;
    peer_t *srv = &fx->srv[0];
    uint64_t t0;

    fx->srv_limits.frame_timeout_ms = 100;
    raw_connect(fx, 0);
    RUN_UNTIL(fx, fx->nsrv == 1, 5000);
    t0 = now_ms();
    RUN_UNTIL(fx, srv->closes == 1, 5000);
    assert_int_equal(srv->close_err, SKIFF_ETIMEDOUT);
    assert_true(now_ms() - t0 >= 80);
}

static void test_frame_timeout_half_frame(void **state)
{
    fx_t *fx = *state;
    peer_t *srv = &fx->srv[0];
    size_t len;
    uint8_t *f = logs_frame(1, 500, &len);
    int fd;

    fx->srv_limits.frame_timeout_ms = 150;
    fd = raw_connect(fx, 0);
    raw_send(fd, f, len / 2); /* and then nothing */
    RUN_UNTIL(fx, srv->closes == 1, 5000);
    assert_int_equal(srv->close_err, SKIFF_ETIMEDOUT);
    assert_int_equal(srv->nmsg, 0);
    free(f);
}

/* Sends all but the last byte of frame f, one every 20 ms: the server must
 * cut the connection off for a timeout, well before the frame could end. */
static void expect_trickle_cut_off(fx_t *fx, int fd, const uint8_t *f, size_t len)
{
    peer_t *srv = &fx->srv[0];
    uint64_t t0 = now_ms();

    for (size_t i = 0; i < len - 1 && srv->closes == 0; i++) {
        raw_send(fd, f + i, 1);
        run_for(fx, 20);
    }
    assert_int_equal(srv->closes, 1);
    assert_int_equal(srv->close_err, SKIFF_ETIMEDOUT);
    assert_true(now_ms() - t0 < 2000);
}

static void test_frame_timeout_trickle(void **state)
{
    fx_t *fx = *state;
    size_t len;
    uint8_t *f = logs_frame(1, 500, &len);
    int fd;

    /* Bytes that never make a whole frame do not keep a conn open. */
    fx->srv_limits.frame_timeout_ms = 200;
    fd = raw_connect(fx, 0);
    RUN_UNTIL(fx, fx->nsrv == 1, 5000);
    expect_trickle_cut_off(fx, fd, f, len);
    free(f);
}

static void test_frame_timeout_rearmed_by_frames(void **state)
{
    fx_t *fx = *state;
    peer_t *srv = &fx->srv[0];
    int fd;

    fx->srv_limits.frame_timeout_ms = 300;
    fd = raw_connect(fx, 0);
    /* 8 frames 100 ms apart: longer than the timeout in all, never idle
     * for as long as the timeout. */
    for (uint64_t id = 1; id <= 8; id++) {
        size_t len;
        uint8_t *f = hello_frame(id, &len);
        raw_send(fd, f, len);
        free(f);
        run_for(fx, 100);
        assert_int_equal(srv->closes, 0);
    }
    assert_int_equal(srv->nmsg, 8);
    RUN_UNTIL(fx, srv->closes == 1, 5000);
    assert_int_equal(srv->close_err, SKIFF_ETIMEDOUT);
}

static void test_set_frame_timeout(void **state)
{
    fx_t *fx = *state;
    peer_t *srv = &fx->srv[0];

    fx->srv_limits.frame_timeout_ms = 100;
    raw_connect(fx, 0);
    RUN_UNTIL(fx, fx->nsrv == 1, 5000);
    conn_set_frame_timeout(srv->c, 0); /* off */
    run_for(fx, 300);
    assert_int_equal(srv->closes, 0);
    conn_set_frame_timeout(srv->c, 50); /* on again */
    RUN_UNTIL(fx, srv->closes == 1, 5000);
    assert_int_equal(srv->close_err, SKIFF_ETIMEDOUT);
}

static void test_partial_timeout_without_frame_timeout(void **state)
{
    fx_t *fx = *state;
    peer_t *srv = &fx->srv[0];
    size_t hlen, len;
    uint8_t *h = hello_frame(1, &hlen);
    uint8_t *f = logs_frame(2, 500, &len);
    int fd;

    /* Silence is allowed (a client waiting on `logs -f`); a frame begun and
     * never ended is not, even when it trickles. */
    fx->srv_limits.partial_timeout_ms = 200;
    fd = raw_connect(fx, 0);
    RUN_UNTIL(fx, fx->nsrv == 1, 5000);
    run_for(fx, 400);
    assert_int_equal(srv->closes, 0);
    raw_send(fd, h, hlen);
    RUN_UNTIL(fx, srv->nmsg == 1, 5000);
    run_for(fx, 400);
    assert_int_equal(srv->closes, 0);
    expect_trickle_cut_off(fx, fd, f, len);
    assert_int_equal(srv->nmsg, 1);
    free(h);
    free(f);
}

static void test_partial_timeout_once_frame_timeout_is_off(void **state)
{
    fx_t *fx = *state;
    peer_t *srv = &fx->srv[0];
    size_t len;
    uint8_t *f = logs_frame(1, 500, &len);
    int fd;

    fx->srv_limits.frame_timeout_ms = 60000;
    fx->srv_limits.partial_timeout_ms = 150;
    fd = raw_connect(fx, 0);
    RUN_UNTIL(fx, fx->nsrv == 1, 5000);
    raw_send(fd, f, len / 2);
    run_for(fx, 50);
    conn_set_frame_timeout(srv->c, 0); /* as after a client's hello */
    RUN_UNTIL(fx, srv->closes == 1, 5000);
    assert_int_equal(srv->close_err, SKIFF_ETIMEDOUT);
    free(f);
}

static void test_send_refuses_past_max_pending(void **state)
{
    fx_t *fx = *state;
    peer_t *srv = &fx->srv[0];
    const size_t max_pending = 64 * 1024, n = 8000;
    size_t fsize = logs_size(1, n), before, total = 0;
    uint64_t next_id = 1, deadline;
    int sent = 0, rc, stuck = 0, rounds;
    buf_t got = BUF_INIT;
    int fd;

    fx->srv_limits.max_pending = max_pending;
    fd = raw_connect(fx, 4096); /* a peer that reads nothing, with a small window */
    RUN_UNTIL(fx, fx->nsrv == 1, 5000);

    /* Without the loop running, nothing is written: the queue fills. */
    while ((rc = send_logs(srv->c, next_id, n)) == 0) {
        total += logs_size(next_id, n);
        next_id++;
        sent++;
    }
    assert_int_equal(rc, SKIFF_ELIMIT);
    assert_int_equal(sent, (int)(max_pending / fsize));
    assert_int_equal(conn_pending(srv->c), (size_t)sent * fsize);
    assert_true(conn_pending(srv->c) + fsize > max_pending);
    /* A refused send queues nothing. */
    before = conn_pending(srv->c);
    assert_int_equal(send_logs(srv->c, next_id, n), SKIFF_ELIMIT);
    assert_int_equal(conn_pending(srv->c), before);

    /* With the loop running, the kernel takes some, then its buffers fill
     * too; from then on the queue stays full and sends are refused. */
    for (rounds = 0; rounds < 1000 && stuck < 5; rounds++) {
        int took = 0;
        run_for(fx, 10);
        while (send_logs(srv->c, next_id, n) == 0) {
            total += logs_size(next_id, n);
            next_id++;
            sent++;
            took = 1;
        }
        assert_true(conn_pending(srv->c) <= max_pending);
        stuck = took ? 0 : stuck + 1;
    }
    assert_int_equal(stuck, 5);
    assert_int_equal(send_logs(srv->c, next_id, n), SKIFF_ELIMIT);
    assert_int_equal(srv->closes, 0);

    /* The peer reads everything: the queue drains, every frame intact. */
    deadline = now_ms() + 20000;
    while (conn_pending(srv->c) > 0 || buf_len(&got) < total) {
        ssize_t r = raw_recv_some(fd, &got);
        assert_true(r != 0 && r != -2);
        assert_true(now_ms() < deadline);
        if (r == -1)
            uv_run(&fx->loop, UV_RUN_ONCE);
    }
    assert_int_equal(buf_len(&got), total);
    assert_int_equal(count_logs_frames(&got, 1, n), sent);
    /* and there is room again */
    assert_int_equal(send_logs(srv->c, next_id, n), 0);
    buf_free(&got);
}

static void test_close_flushes_queued_output(void **state)
{
    fx_t *fx = *state;
    peer_t *srv = &fx->srv[0];
    const size_t n = 50000;
    buf_t got = BUF_INIT;
    int fd = raw_connect(fx, 4096);

    RUN_UNTIL(fx, fx->nsrv == 1, 5000);
    for (uint64_t id = 1; id <= QUEUED_FRAMES; id++)
        assert_int_equal(send_logs(srv->c, id, n), 0);
    run_for(fx, 20);
    assert_true(conn_pending(srv->c) > 0); /* the peer has not read yet */
    conn_close(srv->c, 0);
    assert_int_equal(send_logs(srv->c, 99, 10), SKIFF_ECLOSED);
    assert_int_equal(raw_read_to_eof(fx, fd, &got, 10000), 0);
    assert_int_equal(count_logs_frames(&got, 1, n), QUEUED_FRAMES);
    RUN_UNTIL(fx, srv->closes == 1, 5000);
    assert_int_equal(srv->close_err, 0);
    buf_free(&got);
}

static void test_close_with_error_does_not_wait(void **state)
{
    fx_t *fx = *state;
    peer_t *srv = &fx->srv[0];
    uint64_t t0;

    raw_connect(fx, 4096); /* never reads */
    RUN_UNTIL(fx, fx->nsrv == 1, 5000);
    for (uint64_t id = 1; id <= QUEUED_FRAMES; id++)
        assert_int_equal(send_logs(srv->c, id, 50000), 0);
    run_for(fx, 20);
    assert_true(conn_pending(srv->c) > 0);
    t0 = now_ms();
    conn_close(srv->c, SKIFF_EPROTO);
    RUN_UNTIL(fx, srv->closes == 1, 5000);
    assert_int_equal(srv->close_err, SKIFF_EPROTO);
    assert_true(now_ms() - t0 < 1000);
}

static void test_close_flush_gives_up_on_a_peer_that_never_reads(void **state)
{
    fx_t *fx = *state;
    peer_t *srv = &fx->srv[0];
    uint64_t t0;

    raw_connect(fx, 4096); /* never reads */
    RUN_UNTIL(fx, fx->nsrv == 1, 5000);
    for (uint64_t id = 1; id <= QUEUED_FRAMES; id++)
        assert_int_equal(send_logs(srv->c, id, 50000), 0);
    run_for(fx, 20);
    assert_true(conn_pending(srv->c) > 0);
    t0 = now_ms();
    conn_close(srv->c, 0);
    RUN_UNTIL(fx, srv->closes == 1, 15000);
    assert_int_equal(srv->close_err, 0);
    assert_true(now_ms() - t0 >= 1000); /* it did wait for the peer a while */
}

static void test_connect_refused(void **state)
{
    fx_t *fx = *state;
    peer_t *cli = &fx->cli[0];
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t salen = sizeof(sa);
    char hostport[32];
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    /* A port that was free a moment ago and that nobody listens on. */
    assert_true(fd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &salen), 0);
    close(fd);

    cli->fx = fx;
    cli->created = 1;
    cli->send_on_connect = 1;
    cli->c = conn_create(&fx->loop, &ops, NULL, cli);
    assert_non_null(cli->c);
    snprintf(hostport, sizeof(hostport), "127.0.0.1:%d", ntohs(sa.sin_port));
    assert_int_equal(conn_connect(cli->c, hostport), 0);
    RUN_UNTIL(fx, cli->closes == 1, 5000);
    assert_int_equal(cli->connects, 1);
    assert_int_equal(cli->connect_status, UV_ECONNREFUSED);
    assert_int_equal(cli->close_err, UV_ECONNREFUSED);
    run_for(fx, 50);
    assert_int_equal(cli->closes, 1);
    assert_int_equal(cli->connects, 1);
}

static void test_connect_bad_address(void **state)
{
    fx_t *fx = *state;
    peer_t *cli = &fx->cli[0];
    conn_t *c;

    cli->fx = fx;
    cli->created = 1;
    c = cli->c = conn_create(&fx->loop, &ops, NULL, cli);
    assert_non_null(c);
    /* Nothing is started: no callback until the caller closes it. */
    assert_int_equal(conn_connect(c, "no-port-here"), SKIFF_EINVAL);
    assert_int_equal(conn_connect(c, "127.0.0.1:0"), SKIFF_EINVAL);
    run_for(fx, 20);
    assert_int_equal(cli->connects, 0);
    assert_int_equal(cli->closes, 0);
    conn_close(c, 0);
    RUN_UNTIL(fx, cli->closes == 1, 5000);
    assert_int_equal(cli->close_err, 0);
    assert_int_equal(cli->connects, 0);
}

static void test_close_while_resolving(void **state)
{
    fx_t *fx = *state;
    peer_t *cli = &fx->cli[0], *cli2 = &fx->cli[1];

    /* closed at once, while its name is being resolved */
    client_connect(fx, cli, NULL);
    conn_close(cli->c, 0);
    /* closed from the loop a moment later, wherever it is by then */
    client_connect(fx, cli2, NULL);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    if (cli2->c)
        conn_close(cli2->c, SKIFF_EPROTO);
    RUN_UNTIL(fx, cli->closes == 1 && cli2->closes == 1, 5000);
    assert_int_equal(cli->close_err, 0);
    assert_int_equal(cli->connects, 0); /* no outcome after conn_close */
    assert_int_equal(cli2->close_err, SKIFF_EPROTO);
    run_for(fx, 50);
    assert_int_equal(cli->closes, 1);
    assert_int_equal(cli2->closes, 1);
}

static void test_accept_failure(void **state)
{
    fx_t *fx = *state;
    peer_t *p = &fx->cli[0];
    int rc;

    /* Nothing waits on the server: the accept fails, and the conn closes
     * with the reason (the caller does not close it). */
    p->fx = fx;
    p->created = 1;
    p->c = conn_create(&fx->loop, &ops, NULL, p);
    assert_non_null(p->c);
    rc = conn_accept(p->c, (uv_stream_t *)&fx->server);
    assert_true(rc < 0);
    assert_true(conn_is_closing(p->c));
    RUN_UNTIL(fx, p->closes == 1, 5000);
    assert_int_equal(p->close_err, rc);
}

static void test_close_unused_conn(void **state)
{
    fx_t *fx = *state;
    peer_t *cli = &fx->cli[0];

    cli->fx = fx;
    cli->created = 1;
    cli->c = conn_create(&fx->loop, &ops, NULL, cli);
    assert_non_null(cli->c);
    conn_close(cli->c, SKIFF_EAUTH);
    conn_close(cli->c, 0); /* the first reason stays */
    assert_int_equal(cli->closes, 0); /* from the loop, not from conn_close */
    RUN_UNTIL(fx, cli->closes == 1, 5000);
    assert_int_equal(cli->close_err, SKIFF_EAUTH);
}

static void test_close_inside_on_message(void **state)
{
    fx_t *fx = *state;
    peer_t *srv = &fx->srv[0];
    uint8_t stream[256];
    size_t len, total = 0;
    int fd;

    srv->close_in_message = 1;
    srv->close_err_in_message = 0;
    for (uint64_t id = 1; id <= 3; id++) {
        uint8_t *f = hello_frame(id, &len);
        memcpy(stream + total, f, len);
        total += len;
        free(f);
    }
    fd = raw_connect(fx, 0);
    raw_send(fd, stream, total);
    RUN_UNTIL(fx, srv->closes == 1, 5000);
    /* The frames after the close are not delivered. */
    assert_int_equal(srv->nmsg, 1);
    assert_int_equal(srv->msgs[0]->id, 1);
    assert_int_equal(srv->close_err, 0);
    (void)fd;
}

static void test_close_with_error_inside_on_message(void **state)
{
    fx_t *fx = *state;
    peer_t *srv = &fx->srv[0];
    size_t len;
    uint8_t *f = hello_frame(1, &len);
    int fd;

    srv->close_in_message = 1;
    srv->close_err_in_message = SKIFF_EAUTH;
    fd = raw_connect(fx, 0);
    raw_send(fd, f, len);
    raw_send(fd, f, len);
    RUN_UNTIL(fx, srv->closes == 1, 5000);
    assert_int_equal(srv->nmsg, 1);
    assert_int_equal(srv->close_err, SKIFF_EAUTH);
    free(f);
}

static void test_on_message_error_closes(void **state)
{
    fx_t *fx = *state;
    peer_t *srv = &fx->srv[0];
    uint8_t stream[128];
    size_t len;
    uint8_t *f = hello_frame(1, &len);
    int fd;

    srv->fail_in_message = SKIFF_EPROTO;
    memcpy(stream, f, len);
    memcpy(stream + len, f, len);
    fd = raw_connect(fx, 0);
    raw_send(fd, stream, 2 * len);
    RUN_UNTIL(fx, srv->closes == 1, 5000);
    assert_int_equal(srv->nmsg, 1);
    assert_int_equal(srv->close_err, SKIFF_EPROTO);
    free(f);
}

static void test_error_reply_then_close(void **state)
{
    fx_t *fx = *state;
    peer_t *cli = &fx->cli[0], *srv = &fx->srv[0];

    /* The handshake's refusal: an Error with the request's id, then EOF. */
    srv->reply_error = 1;
    cli->send_on_connect = 1;
    client_connect(fx, cli, NULL);
    RUN_UNTIL(fx, cli->closes == 1 && srv->closes == 1, 5000);
    assert_int_equal(cli->nmsg, 1);
    assert_int_equal(cli->msgs[0]->msg_case, MSG_ERROR);
    assert_int_equal(cli->msgs[0]->id, 1);
    assert_int_equal(cli->msgs[0]->error->code, ERR_AUTH);
    assert_string_equal(cli->msgs[0]->error->message, "bad token x (7)");
    assert_int_equal(cli->close_err, SKIFF_ECLOSED);
    assert_int_equal(srv->close_err, 0);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_exchange),
        T(test_send_frame),
        T(test_many_clients),
        T(test_large_frames),
        T(test_several_frames_in_one_write),
        T(test_frame_one_byte_at_a_time),
        T(test_garbage_closes),
        T(test_no_message_set_closes),
        T(test_zero_length_closes),
        T(test_good_frames_then_garbage),
        T(test_oversize_closes_before_body),
        T(test_oversize_huge_length),
        T(test_oversize_between_conns),
        T(test_peer_reset),
        T(test_frame_timeout_silent_peer),
        T(test_frame_timeout_half_frame),
        T(test_frame_timeout_trickle),
        T(test_frame_timeout_rearmed_by_frames),
        T(test_set_frame_timeout),
        T(test_partial_timeout_without_frame_timeout),
        T(test_partial_timeout_once_frame_timeout_is_off),
        T(test_send_refuses_past_max_pending),
        T(test_close_flushes_queued_output),
        T(test_close_with_error_does_not_wait),
        T(test_close_flush_gives_up_on_a_peer_that_never_reads),
        T(test_connect_refused),
        T(test_connect_bad_address),
        T(test_close_while_resolving),
        T(test_accept_failure),
        T(test_close_unused_conn),
        T(test_close_inside_on_message),
        T(test_close_with_error_inside_on_message),
        T(test_on_message_error_closes),
        T(test_error_reply_then_close),
    };
#undef T

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests_name("conn", tests, NULL, NULL);
}
