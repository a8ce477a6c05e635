/* conn: see conn.h.
 *
 * A conn owns two handles (the TCP stream and the frame timer) and, while it
 * resolves a name, one getaddrinfo request. refs counts those; the conn is
 * freed when the last one has called back after conn_close.
 *
 * With TLS, the socket's bytes go through a tls_t: what is read is fed to
 * it (through one scratch buffer per thread, since libuv reads into it and
 * calls back at once), the plaintext it gives goes into the input buffer
 * where frames are decoded as without TLS; a frame sent is encrypted at
 * once and the records are queued as one write, so that pending counts
 * what the socket still has to take.
 */
#include "conn.h"
#include "buf.h"
#include "errors.h"
#include "tls.h"
#include "wire.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>

#define CONN_READ_CHUNK 4096
#define CONN_FLUSH_TIMEOUT_MS 5000
#define CONN_TLS_CHUNK 65536   /* ciphertext read at once */

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    uv_connect_t connect_req;
    uv_shutdown_t shutdown_req;
    uv_loop_t *loop;
    const conn_ops_t *ops;
    conn_limits_t limits;
    void *data;
    buf_t in;
    size_t pending;
    int refs;
    int closing;
    int close_err;
    int connected;
    int started;      /* accept or connect was called */
    int accepted;
    SSL_CTX *tls_ctx; /* a reference, with TLS */
    tls_t *tls;       /* the session, once the socket is there */
    int tls_ready;    /* its handshake is done */
    int port; /* for conn_connect */
    char peer[64];
    char local[48];
};

struct conn_write {
    uv_write_t req;
    conn_t *conn;
    size_t len;
    uint8_t data[];
};

static void conn_unref(conn_t *c)
{
    if (--c->refs > 0)
        return;
    if (c->ops->on_close)
        c->ops->on_close(c, c->close_err);
    buf_free(&c->in);
    tls_free(c->tls);
    SSL_CTX_free(c->tls_ctx);
    free(c);
}

static void conn_on_handle_closed(uv_handle_t *h)
{
    conn_unref(h->data);
}

conn_t *conn_create(uv_loop_t *loop, const conn_ops_t *ops,
                    const conn_limits_t *limits, void *data)
{
    conn_t *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->loop = loop;
    c->ops = ops;
    if (limits)
        c->limits = *limits;
    if (!c->limits.max_frame)
        c->limits.max_frame = WIRE_MAX_FRAME_DEFAULT;
    if (!c->limits.max_pending)
        c->limits.max_pending = 4 * c->limits.max_frame;
    c->data = data;
    strcpy(c->peer, "?");
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->refs = 2;
    return c;
}

static void conn_close_handles(conn_t *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->timer))
        uv_close((uv_handle_t *)&c->timer, conn_on_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, conn_on_handle_closed);
}

/* A peer that reads nothing can't hold a closing conn forever. */
static void conn_on_flush_timeout(uv_timer_t *t)
{
    conn_close_handles(t->data);
}

static void conn_on_shutdown(uv_shutdown_t *req, int status)
{
    conn_t *c = req->data;

    conn_close_handles(c);
}

static int conn_tls_flush(conn_t *c);

/* Closes c; flush: send what is queued first (a plain close, or the alert
 * of a failed handshake). */
static void conn_close_how(conn_t *c, int err, int flush)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->close_err = err;
    uv_timer_stop(&c->timer);
    if (c->connected)
        uv_read_stop((uv_stream_t *)&c->tcp);
    if (c->refs > 2) /* a name lookup is under way: its callback ends it */
        uv_cancel((uv_req_t *)&c->gai);
    if (flush && c->connected && c->tls) {
        if (err == 0)
            tls_shutdown(c->tls);  /* close_notify */
        conn_tls_flush(c);
    }
    /* A plain close flushes queued output first. */
    if (flush && c->connected && c->pending > 0) {
        c->shutdown_req.data = c;
        if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, conn_on_shutdown) == 0) {
            uv_timer_start(&c->timer, conn_on_flush_timeout, CONN_FLUSH_TIMEOUT_MS, 0);
            return;
        }
    }
    conn_close_handles(c);
}

void conn_close(conn_t *c, int err)
{
    conn_close_how(c, err, err == 0);
}

static void conn_on_timeout(uv_timer_t *t)
{
    conn_close(t->data, SKIFF_ETIMEDOUT);
}

/* With no frame timeout, the partial timeout runs from the first byte of a
 * frame to its end: more bytes of the same frame do not rearm it (a trickle
 * is a stall), a new frame begun does. */
static int conn_in_frame(const conn_t *c)
{
    return buf_len(&c->in) > 0 || (c->tls && c->tls_ready && tls_in_partial(c->tls));
}

static void conn_watch_partial(conn_t *c, int decoded)
{
    if (!conn_in_frame(c))
        uv_timer_stop(&c->timer);
    else if (decoded || !uv_is_active((uv_handle_t *)&c->timer))
        uv_timer_start(&c->timer, conn_on_timeout, c->limits.partial_timeout_ms, 0);
}

void conn_set_frame_timeout(conn_t *c, uint64_t ms)
{
    c->limits.frame_timeout_ms = ms;
    if (c->closing)
        return;
    if (ms) {
        uv_timer_start(&c->timer, conn_on_timeout, ms, 0);
    } else {
        uv_timer_stop(&c->timer);
        if (c->limits.partial_timeout_ms)
            conn_watch_partial(c, 1);
    }
}

static size_t conn_in_max(const conn_t *c)
{
    return c->limits.max_frame + WIRE_HEADER_SIZE + CONN_READ_CHUNK;
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    static _Thread_local char scratch[CONN_TLS_CHUNK];
    conn_t *c = h->data;

    out->base = NULL;
    out->len = 0;
    if (c->closing)
        return;
    if (c->tls) {
        /* libuv reads into it and calls conn_on_read at once, which feeds
         * it all to the session: one buffer per thread does. */
        out->base = scratch;
        out->len = sizeof(scratch);
        return;
    }
    if (buf_reserve(&c->in, CONN_READ_CHUNK, conn_in_max(c)) != 0)
        return; /* the read callback sees UV_ENOBUFS */
    out->base = c->in.last;
    out->len = buf_room(&c->in);
}

/* Hands every whole frame in the input buffer to on_message. Returns 1 when
 * one was decoded. */
static int conn_decode(conn_t *c)
{
    Envelope *env;
    int decoded = 0;
    int rc;

    while (!c->closing) {
        rc = wire_decode(&c->in, c->limits.max_frame, &env);
        if (rc == 0)
            break;
        if (rc < 0) {
            conn_close(c, rc);
            break;
        }
        decoded = 1;
        if (c->limits.frame_timeout_ms)
            uv_timer_start(&c->timer, conn_on_timeout, c->limits.frame_timeout_ms, 0);
        rc = c->ops->on_message(c, env);
        if (rc < 0)
            conn_close(c, rc);
    }
    return decoded;
}

static void conn_after_read(conn_t *c, int decoded)
{
    if (!c->closing && !c->limits.frame_timeout_ms && c->limits.partial_timeout_ms)
        conn_watch_partial(c, decoded);
    /* An idle connection keeps no input buffer (with 5,000 nodes, the
     * 4 KiB or more each kept was 20 MB); the next read allocates one. */
    if (buf_len(&c->in) == 0 && buf_cap(&c->in) > 0)
        buf_free(&c->in);
}

/* A failed handshake or session: the alert goes out, then the conn closes. */
static void conn_tls_failed(conn_t *c, int rc)
{
    if (!c->accepted && !c->tls_ready && c->ops->on_connect) {
        c->tls_ready = -1; /* on_connect is called once */
        c->ops->on_connect(c, rc);
    }
    conn_close_how(c, rc, rc == SKIFF_ETLS);
}

/* Ciphertext from the socket: the handshake, then plaintext into the
 * input buffer, frame by frame. */
static void conn_tls_input(conn_t *c, const char *data, size_t n)
{
    int decoded = 0;
    long got;
    int rc;

    if ((rc = tls_feed(c->tls, data, n))) {
        conn_tls_failed(c, rc);
        return;
    }
    if (!c->tls_ready) {
        rc = tls_handshake(c->tls);
        if (conn_tls_flush(c) && rc >= 0)
            rc = SKIFF_ECLOSED;
        if (rc < 0) {
            conn_tls_failed(c, rc);
            return;
        }
        if (rc == 0)
            return;
        c->tls_ready = 1;
        if (!c->accepted && c->ops->on_connect)
            c->ops->on_connect(c, 0);
    }
    while (!c->closing) {
        if (buf_reserve(&c->in, CONN_READ_CHUNK, conn_in_max(c)) != 0) {
            conn_close(c, -ENOBUFS);
            return;
        }
        got = tls_read(c->tls, c->in.last, buf_room(&c->in));
        if (got < 0) {
            conn_tls_failed(c, (int)got);
            return;
        }
        if (got == 0)
            break;
        c->in.last += got;
        decoded |= conn_decode(c);
    }
    if (!c->closing && conn_tls_flush(c))
        conn_close(c, SKIFF_ECLOSED);
    conn_after_read(c, decoded);
}

static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    conn_t *c = s->data;

    if (nread < 0) {
        if (c->tls && !c->tls_ready && nread == UV_EOF)
            conn_tls_failed(c, SKIFF_ECLOSED); /* closed during the handshake */
        else
            conn_close(c, nread == UV_EOF ? SKIFF_ECLOSED : (int)nread);
        return;
    }
    if (c->tls) {
        if (nread > 0)
            conn_tls_input(c, b->base, (size_t)nread);
        return;
    }
    c->in.last += nread;
    conn_after_read(c, conn_decode(c));
}

static void conn_name(const struct sockaddr_storage *ss, char *out, size_t len, int with_port)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;

    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        uv_ip4_name(a, ip, sizeof(ip));
        port = ntohs(a->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(a, ip, sizeof(ip));
        port = ntohs(a->sin6_port);
    }
    if (with_port)
        snprintf(out, len, ss->ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip, port);
    else
        snprintf(out, len, "%s", ip);
}

static int conn_start(conn_t *c)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    if (c->tls_ctx && !(c->tls = tls_new(c->tls_ctx)))
        return -ENOMEM;
    c->connected = 1;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
        conn_name(&ss, c->peer, sizeof(c->peer), 1);
    len = sizeof(ss);
    if (uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
        conn_name(&ss, c->local, sizeof(c->local), 0);
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, 30);
    if (c->limits.frame_timeout_ms)
        uv_timer_start(&c->timer, conn_on_timeout, c->limits.frame_timeout_ms, 0);
    else if (c->tls && c->limits.partial_timeout_ms)
        uv_timer_start(&c->timer, conn_on_timeout, c->limits.partial_timeout_ms, 0);
    if (c->tls && !c->accepted) {
        /* The client speaks first: its ClientHello. */
        int rc = tls_handshake(c->tls);
        if (rc < 0)
            return rc;
        if ((rc = conn_tls_flush(c)))
            return rc;
    }
    return uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_on_read);
}

int conn_use_tls(conn_t *c, SSL_CTX *ctx)
{
    if (c->started || !ctx)
        return SKIFF_EINVAL;
    SSL_CTX_up_ref(ctx);
    SSL_CTX_free(c->tls_ctx);
    c->tls_ctx = ctx;
    return 0;
}

int conn_accept(conn_t *c, uv_stream_t *server)
{
    int rc;

    c->started = c->accepted = 1;
    rc = uv_accept(server, (uv_stream_t *)&c->tcp);

    if (rc == 0)
        rc = conn_start(c);
    if (rc)
        conn_close(c, rc);
    return rc;
}

static void conn_on_connect(uv_connect_t *req, int status)
{
    conn_t *c = req->data;

    if (c->closing)
        return; /* cancelled by conn_close; the handle's close frees c */
    if (status == 0)
        status = conn_start(c);
    if (c->tls && status == 0)
        return; /* on_connect once the handshake is done */
    if (c->ops->on_connect)
        c->ops->on_connect(c, status);
    if (status)
        conn_close(c, status);
}

static void conn_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    conn_t *c = req->data;
    struct sockaddr_storage ss;

    if (c->closing || status) {
        if (!c->closing) {
            if (c->ops->on_connect)
                c->ops->on_connect(c, status);
            conn_close(c, status);
        }
        uv_freeaddrinfo(res);
        conn_unref(c);
        return;
    }
    memcpy(&ss, res->ai_addr, res->ai_addrlen);
    uv_freeaddrinfo(res);
    c->refs--; /* the handles still hold the conn */
    c->connect_req.data = c;
    status = uv_tcp_connect(&c->connect_req, &c->tcp, (struct sockaddr *)&ss, conn_on_connect);
    if (status) {
        if (c->ops->on_connect)
            c->ops->on_connect(c, status);
        conn_close(c, status);
    }
}

int conn_connect(conn_t *c, const char *hostport)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV };
    char host[256], port[8];
    int p, rc;

    rc = wire_parse_hostport(hostport, host, sizeof(host), &p);
    if (rc)
        return rc;
    c->started = 1;
    snprintf(port, sizeof(port), "%d", p);
    snprintf(c->peer, sizeof(c->peer), "%s", hostport);
    c->gai.data = c;
    rc = uv_getaddrinfo(c->loop, &c->gai, conn_on_resolved, host, port, &hints);
    if (rc == 0)
        c->refs++;
    return rc;
}

static void conn_on_written(uv_write_t *req, int status)
{
    struct conn_write *w = (struct conn_write *)req;
    conn_t *c = w->conn;

    c->pending -= w->len;
    free(w);
    if (status && status != UV_ECANCELED)
        conn_close(c, status);
}

/* Queues w (len bytes of frame in w->data). */
static int conn_queue(conn_t *c, struct conn_write *w)
{
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, conn_on_written);

    if (rc) {
        free(w);
        return rc;
    }
    c->pending += w->len;
    return 0;
}

static struct conn_write *conn_write_new(conn_t *c, size_t size, int *rc)
{
    struct conn_write *w;

    *rc = 0;
    if (c->closing || !c->connected || (c->tls && c->tls_ready != 1)) {
        *rc = SKIFF_ECLOSED;
        return NULL;
    }
    if (size - WIRE_HEADER_SIZE > c->limits.max_frame ||
        c->pending + size > c->limits.max_pending) {
        *rc = SKIFF_ELIMIT;
        return NULL;
    }
    w = malloc(sizeof(*w) + size);
    if (!w) {
        *rc = -ENOMEM;
        return NULL;
    }
    w->conn = c;
    w->len = size;
    return w;
}

/* Queues what the TLS session made for the peer, as one write. Returns 0
 * or a negative code. */
static int conn_tls_flush(conn_t *c)
{
    size_t n = c->tls ? tls_out_pending(c->tls) : 0;
    struct conn_write *w;

    if (n == 0 || !c->connected)
        return 0;
    if (!(w = malloc(sizeof(*w) + n)))
        return -ENOMEM;
    w->conn = c;
    w->len = tls_out_take(c->tls, w->data, n);
    if (w->len == 0) {
        free(w);
        return 0;
    }
    return conn_queue(c, w);
}

/* Encrypts a frame (the plaintext w, which is freed) and queues its
 * records. */
static int conn_tls_send(conn_t *c, struct conn_write *w)
{
    int rc = tls_write(c->tls, w->data, w->len);

    free(w);
    if (rc == 0)
        rc = conn_tls_flush(c);
    if (rc == SKIFF_ETLS)
        conn_close(c, rc);
    return rc;
}

int conn_send(conn_t *c, const Envelope *env)
{
    size_t size = wire_frame_size(env);
    struct conn_write *w;
    int rc;

    if (!(w = conn_write_new(c, size, &rc)))
        return rc;
    wire_pack(env, w->data);
    return c->tls ? conn_tls_send(c, w) : conn_queue(c, w);
}

int conn_send_frame(conn_t *c, const uint8_t *frame, size_t len)
{
    struct conn_write *w;
    int rc;

    if (len < WIRE_HEADER_SIZE)
        return SKIFF_EINVAL;
    if (!(w = conn_write_new(c, len, &rc)))
        return rc;
    memcpy(w->data, frame, len);
    return c->tls ? conn_tls_send(c, w) : conn_queue(c, w);
}

int conn_send_error(conn_t *c, uint64_t id, ErrorCode code, const char *fmt, ...)
{
    Envelope env = PB_ENVELOPE_INIT;
    Error err = PB_ERROR_INIT;
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    err.code = code;
    err.message = msg;
    env.id = id;
    env.msg_case = MSG_ERROR;
    env.error = &err;
    return conn_send(c, &env);
}

void *conn_data(const conn_t *c) { return c->data; }
void conn_set_data(conn_t *c, void *data) { c->data = data; }
const char *conn_peer(const conn_t *c) { return c->peer; }
const char *conn_local_addr(const conn_t *c) { return c->local; }
size_t conn_pending(const conn_t *c) { return c->pending; }

size_t conn_unsent(const conn_t *c)
{
    uv_os_fd_t fd;
    int outq = 0;

    if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) != 0 || ioctl(fd, SIOCOUTQ, &outq) != 0 ||
        outq < 0)
        outq = 0;
    return c->pending + (size_t)outq;
}

X509 *conn_peer_cert(const conn_t *c)
{
    return c->tls && c->tls_ready == 1 ? tls_peer_cert(c->tls) : NULL;
}

const char *conn_strerror(const conn_t *c, int err)
{
    if (err == SKIFF_ETLS && c->tls && *tls_reason(c->tls))
        return tls_reason(c->tls);
    return skiff_strerror(err);
}
int conn_is_closing(const conn_t *c) { return c->closing; }

int conn_parse_addr(const char *hostport, struct sockaddr_storage *out)
{
    char host[128];
    int port;

    memset(out, 0, sizeof(*out));
    if (wire_parse_hostport(hostport, host, sizeof(host), &port))
        return SKIFF_EINVAL;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)out) &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)out))
        return SKIFF_EINVAL;
    return 0;
}
