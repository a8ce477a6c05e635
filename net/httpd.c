/* httpd: see httpd.h. The listener is ours (a uv_tcp_t, so that the
 * connection limit and the close are in our hands); each accepted socket is
 * handed to h2o, which parses and answers on the same loop. */
#define H2O_USE_LIBUV 1
#include "httpd.h"
#include "buf.h"
#include "conn.h"
#include "errors.h"
#include "log.h"

#include <errno.h>
#include <h2o.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <utlist.h>

#define HTTPD_MAX_BODY_DEFAULT (1u << 20)
#define HTTPD_MAX_CONNS_DEFAULT 1024
#define HTTPD_REQ_TIMEOUT_DEFAULT 10000
#define HTTPD_STREAM_PENDING_DEFAULT (1u << 20)
/* A stream's socket send buffer: small, so that what a client does not take
 * waits in the stream's own bounded buffer, where the writer sees it,
 * rather than in megabytes of kernel memory. */
#define HTTPD_STREAM_SNDBUF (64 << 10)

typedef struct httpd_handler {
    h2o_handler_t super;
    httpd_t *h;
} httpd_handler_t;

struct httpd {
    uv_loop_t *loop;
    uv_tcp_t listener;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    httpd_handler_fn handler;
    void *arg;
    char name[32];
    unsigned max_conns, n_conns;
    int port;
    httpd_stream_t *streams; /* open ones */
    int closing;
    int listener_open;
    void (*done)(void *arg);
    void *done_arg;
    uv_timer_t reaper;       /* disposes of h2o once every socket is closed */
    SSL_CTX *ssl;
};

/* An accepted connection's handle; h2o owns it until its close callback. */
typedef struct httpd_sock {
    uv_tcp_t tcp;
    httpd_t *h;
} httpd_sock_t;

struct httpd_stream {
    h2o_generator_t gen;     /* first: h2o calls us with its address */
    h2o_req_t *req;
    httpd_t *h;
    buf_t pending;           /* written, not yet handed to h2o */
    buf_t inflight;          /* handed to h2o: valid until proceed */
    size_t max_pending;
    int sending;             /* h2o_send called; waiting for proceed */
    int ending;              /* httpd_stream_end called */
    int over;                /* final sent, stopped, or disposed */
    void (*on_close)(void *arg);
    void *arg;
    httpd_stream_t *prev, *next;
};

static httpd_t *httpd_of(h2o_req_t *r)
{
    return (httpd_t *)((char *)r->conn->ctx - offsetof(httpd_t, ctx));
}

/* ------------------------------------------------------------ requests */

static const char *httpd_dup(h2o_req_t *r, const char *s, size_t len)
{
    return h2o_strdup(&r->pool, s, len).base;
}

const char *httpd_method(httpd_req_t *r)
{
    return httpd_dup(r, r->method.base, r->method.len);
}

const char *httpd_path(httpd_req_t *r)
{
    return httpd_dup(r, r->path_normalized.base, r->path_normalized.len);
}

static int httpd_hex(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes [s, s + len) into out (len + 1 bytes); '+' is a space. */
static void httpd_unescape(const char *s, size_t len, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < len && (hi = httpd_hex((unsigned char)s[i + 1])) >= 0 &&
            (lo = httpd_hex((unsigned char)s[i + 2])) >= 0) {
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = s[i] == '+' ? ' ' : s[i];
        }
    }
    out[o] = '\0';
}

const char *httpd_query(httpd_req_t *r, const char *name)
{
    const char *q, *end;
    size_t nlen = strlen(name);

    if (r->query_at == SIZE_MAX || r->query_at >= r->path.len)
        return NULL;
    q = r->path.base + r->query_at + 1;
    end = r->path.base + r->path.len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pend = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pend - q));
        const char *kend = eq ? eq : pend;
        size_t klen = (size_t)(kend - q);
        char *key = h2o_mem_alloc_pool(&r->pool, klen + 1);
        httpd_unescape(q, klen, key);
        if (strlen(key) == nlen && memcmp(key, name, nlen) == 0) {
            const char *v = eq ? eq + 1 : pend;
            size_t vlen = (size_t)(pend - v);
            char *val = h2o_mem_alloc_pool(&r->pool, vlen + 1);
            httpd_unescape(v, vlen, val);
            return val;
        }
        q = pend + 1;
    }
    return NULL;
}

const char *httpd_header(httpd_req_t *r, const char *name)
{
    char lower[128];
    size_t len = strlen(name);
    ssize_t i;

    if (len >= sizeof(lower))
        return NULL;
    for (size_t k = 0; k < len; k++)
        lower[k] = (char)((name[k] >= 'A' && name[k] <= 'Z') ? name[k] | 0x20 : name[k]);
    i = h2o_find_header_by_str(&r->headers, lower, len, -1);
    if (i < 0)
        return NULL;
    return httpd_dup(r, r->headers.entries[i].value.base, r->headers.entries[i].value.len);
}

const char *httpd_body(httpd_req_t *r, size_t *len)
{
    *len = r->entity.base ? r->entity.len : 0;
    return r->entity.base ? r->entity.base : "";
}

const char *httpd_peer(httpd_req_t *r)
{
    struct sockaddr_storage ss;
    char *out = h2o_mem_alloc_pool(&r->pool, INET6_ADDRSTRLEN);
    socklen_t n = r->conn->callbacks->get_peername(r->conn, (struct sockaddr *)&ss);

    strcpy(out, "?");
    if (n && ss.ss_family == AF_INET)
        uv_ip4_name((struct sockaddr_in *)&ss, out, INET6_ADDRSTRLEN);
    else if (n && ss.ss_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)&ss, out, INET6_ADDRSTRLEN);
    return out;
}

int httpd_is_tls(httpd_req_t *r)
{
    return r->scheme == &H2O_URL_SCHEME_HTTPS;
}

typedef struct httpd_done {
    void (*done)(void *arg);
    void *arg;
} httpd_done_t;

static void httpd_done_dispose(void *p)
{
    httpd_done_t *d = p;

    d->done(d->arg);
}

int httpd_on_done(httpd_req_t *r, void (*done)(void *arg), void *arg)
{
    /* h2o_mem_alloc_shared aborts rather than return NULL, as every h2o
     * allocation does; the code is kept for the contract. */
    httpd_done_t *d = h2o_mem_alloc_shared(&r->pool, sizeof(*d), httpd_done_dispose);

    if (!d)
        return -ENOMEM;
    d->done = done;
    d->arg = arg;
    return 0;
}

/* ------------------------------------------------------------ responses */

static const char *httpd_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return status < 400 ? "OK" : "Error";
    }
}

void httpd_add_header(httpd_req_t *r, const char *name, const char *value)
{
    size_t nlen = strlen(name);
    char *lower = h2o_mem_alloc_pool(&r->pool, nlen + 1);

    for (size_t k = 0; k <= nlen; k++)
        lower[k] = (char)((name[k] >= 'A' && name[k] <= 'Z') ? name[k] | 0x20 : name[k]);
    h2o_add_header_by_str(&r->pool, &r->res.headers, lower, nlen, 1, NULL,
                          httpd_dup(r, value, strlen(value)), strlen(value));
}

static void httpd_set_status(h2o_req_t *r, int status, const char *content_type)
{
    r->res.status = status;
    r->res.reason = httpd_reason(status);
    if (content_type)
        h2o_add_header(&r->pool, &r->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       httpd_dup(r, content_type, strlen(content_type)), strlen(content_type));
}

void httpd_respond(httpd_req_t *r, int status, const char *content_type, const char *body,
                   size_t len)
{
    httpd_set_status(r, status, content_type);
    h2o_send_inline(r, body ? body : "", body ? len : 0);
}

void httpd_respond_error(httpd_req_t *r, int status, const char *fmt, ...)
{
    char msg[512], *body;
    size_t len = 0;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* {"error": "..."} with the message escaped as a JSON string */
    body = h2o_mem_alloc_pool(&r->pool, sizeof(msg) * 6 + 16);
    len += (size_t)sprintf(body, "{\"error\":\"");
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (*p == '"' || *p == '\\')
            len += (size_t)sprintf(body + len, "\\%c", *p);
        else if (*p < 0x20)
            len += (size_t)sprintf(body + len, "\\u%04x", *p);
        else
            body[len++] = (char)*p;
    }
    len += (size_t)sprintf(body + len, "\"}\n");
    httpd_respond(r, status, "application/json", body, len);
}

/* -------------------------------------------------------------- streams */

static void httpd_stream_over(httpd_stream_t *s)
{
    if (s->over)
        return;
    s->over = 1;
    DL_DELETE(s->h->streams, s);
    if (s->on_close)
        s->on_close(s->arg);
}

/* Hands what is pending to h2o, or the end when nothing is and the end
 * was asked for. */
static void httpd_stream_push(httpd_stream_t *s)
{
    h2o_iovec_t vec;
    buf_t tmp;

    if (s->sending || s->over)
        return;
    if (buf_len(&s->pending) == 0) {
        if (!s->ending)
            return;
        s->sending = 1;
        httpd_stream_over(s);
        h2o_send(s->req, NULL, 0, H2O_SEND_STATE_FINAL);
        return;
    }
    /* swap: what was in flight is done; pending goes out */
    tmp = s->inflight;
    s->inflight = s->pending;
    s->pending = tmp;
    s->pending.pos = s->pending.last = s->pending.start;
    vec = h2o_iovec_init(s->inflight.pos, buf_len(&s->inflight));
    s->sending = 1;
    h2o_send(s->req, &vec, 1, H2O_SEND_STATE_IN_PROGRESS);
}

static void httpd_stream_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    httpd_stream_t *s = (httpd_stream_t *)g;

    s->sending = 0;
    s->inflight.pos = s->inflight.last = s->inflight.start;
    httpd_stream_push(s);
}

static void httpd_stream_stop(h2o_generator_t *g, h2o_req_t *req)
{
    httpd_stream_over((httpd_stream_t *)g);
}

/* The request's pool is being freed: the stream goes with it. */
static void httpd_stream_dispose(void *p)
{
    httpd_stream_t *s = p;

    httpd_stream_over(s);
    buf_free(&s->pending);
    buf_free(&s->inflight);
}

httpd_stream_t *httpd_stream_open(httpd_req_t *r, int status, const char *content_type,
                                  size_t max_pending, void (*on_close)(void *arg), void *arg)
{
    httpd_t *h = httpd_of(r);
    httpd_stream_t *s = h2o_mem_alloc_shared(&r->pool, sizeof(*s), httpd_stream_dispose);

    memset(s, 0, sizeof(*s));
    s->req = r;
    s->h = h;
    s->max_pending = max_pending ? max_pending : HTTPD_STREAM_PENDING_DEFAULT;
    s->gen.proceed = httpd_stream_proceed;
    s->gen.stop = httpd_stream_stop;
    s->on_close = on_close;
    s->arg = arg;
    DL_APPEND(h->streams, s);
    httpd_set_status(r, status, content_type);
    /* No buffering by proxies (nginx honours it), no caching. */
    httpd_add_header(r, "Cache-Control", "no-cache");
    httpd_add_header(r, "X-Accel-Buffering", "no");
    h2o_start_response(r, &s->gen);
    if (r->conn->callbacks->get_socket) {
        h2o_socket_t *sock = r->conn->callbacks->get_socket(r->conn);
        int fd = sock ? h2o_socket_get_fd(sock) : -1, size = HTTPD_STREAM_SNDBUF;
        if (fd >= 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)); /* best effort */
    }
    /* Sends the headers now: an empty first chunk. */
    s->sending = 1;
    h2o_send(r, NULL, 0, H2O_SEND_STATE_IN_PROGRESS);
    return s;
}

int httpd_stream_write(httpd_stream_t *s, const void *data, size_t len)
{
    int rc;

    if (s->over || s->ending)
        return SKIFF_ECLOSED;
    if (buf_len(&s->pending) + buf_len(&s->inflight) + len > s->max_pending)
        return SKIFF_ELIMIT;
    rc = buf_append(&s->pending, data, len, s->max_pending);
    if (rc)
        return rc == -ENOBUFS ? SKIFF_ELIMIT : rc;
    httpd_stream_push(s);
    return 0;
}

size_t httpd_stream_pending(const httpd_stream_t *s)
{
    return buf_len(&s->pending) + buf_len(&s->inflight);
}

void httpd_stream_end(httpd_stream_t *s)
{
    if (s->over || s->ending)
        return;
    s->ending = 1;
    httpd_stream_push(s);
}

/* -------------------------------------------------------------- serving */

static int httpd_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    httpd_t *h = ((httpd_handler_t *)self)->h;

    h->handler(h->arg, req);
    return 0;
}

static void httpd_maybe_done(httpd_t *h);

static void httpd_on_sock_closed(uv_handle_t *handle)
{
    httpd_sock_t *s = (httpd_sock_t *)handle;
    httpd_t *h = s->h;

    h->n_conns--;
    free(s);
    if (h->closing)
        httpd_maybe_done(h);
}

static void httpd_on_accept(uv_stream_t *listener, int status)
{
    httpd_t *h = listener->data;
    httpd_sock_t *s;
    h2o_socket_t *sock;

    if (status < 0) {
        log_warn("%s: accept: %s", h->name, uv_strerror(status));
        return;
    }
    if (!(s = malloc(sizeof(*s)))) {
        log_warn("%s: out of memory accepting a connection", h->name);
        return; /* it waits in the backlog */
    }
    s->h = h;
    uv_tcp_init(h->loop, &s->tcp);
    if (uv_accept(listener, (uv_stream_t *)&s->tcp) != 0) {
        uv_close((uv_handle_t *)&s->tcp, (uv_close_cb)free);
        return;
    }
    if (h->n_conns >= h->max_conns || h->closing) {
        if (!h->closing)
            log_warn("%s: refusing a connection: %u open", h->name, h->n_conns);
        uv_close((uv_handle_t *)&s->tcp, (uv_close_cb)free);
        return;
    }
    h->n_conns++;
    sock = h2o_uv_socket_create((uv_stream_t *)&s->tcp, httpd_on_sock_closed);
    if (!sock) {
        h->n_conns--;
        uv_close((uv_handle_t *)&s->tcp, (uv_close_cb)free);
        return;
    }
    h2o_accept(&h->accept_ctx, sock);
}

static void httpd_on_failed_listener_closed(uv_handle_t *handle)
{
    free(handle->data);
}

httpd_t *httpd_start(uv_loop_t *loop, const httpd_config_t *cfg, httpd_handler_fn handler,
                     void *arg, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    h2o_hostconf_t *host;
    h2o_pathconf_t *path;
    httpd_handler_t *hh;
    httpd_t *h;
    int rc, namelen = (int)sizeof(ss);

    if (conn_parse_addr(cfg->listen, &ss)) {
        snprintf(err, errlen, "%s: not an IP address and port", cfg->listen);
        return NULL;
    }
    if (!(h = calloc(1, sizeof(*h)))) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->loop = loop;
    h->handler = handler;
    h->arg = arg;
    h->max_conns = cfg->max_connections ? cfg->max_connections : HTTPD_MAX_CONNS_DEFAULT;
    snprintf(h->name, sizeof(h->name), "%s", cfg->name ? cfg->name : "http");
    uv_tcp_init(loop, &h->listener);
    h->listener.data = h;
    h->listener_open = 1;
    rc = uv_tcp_bind(&h->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&h->listener, 128, httpd_on_accept);
    if (rc) {
        snprintf(err, errlen, "%s: %s", cfg->listen, uv_strerror(rc));
        uv_close((uv_handle_t *)&h->listener, httpd_on_failed_listener_closed);
        return NULL;
    }
    if (uv_tcp_getsockname(&h->listener, (struct sockaddr *)&ss, &namelen) == 0)
        h->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);

    h2o_config_init(&h->config);
    h->config.max_request_entity_size = cfg->max_body ? cfg->max_body : HTTPD_MAX_BODY_DEFAULT;
    h->config.http1.req_timeout =
        cfg->request_timeout_ms ? cfg->request_timeout_ms : HTTPD_REQ_TIMEOUT_DEFAULT;
    h->config.server_name = h2o_iovec_init(H2O_STRLIT("skiff"));
    host = h2o_config_register_host(&h->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    path = h2o_config_register_path(host, "/", 0);
    hh = (httpd_handler_t *)h2o_create_handler(path, sizeof(*hh));
    hh->super.on_req = httpd_on_req;
    hh->h = h;
    h2o_context_init(&h->ctx, loop, &h->config);
    h->accept_ctx.ctx = &h->ctx;
    h->accept_ctx.hosts = h->config.hosts;
    if (cfg->ssl_ctx) {
        SSL_CTX_up_ref(cfg->ssl_ctx);
        h->ssl = cfg->ssl_ctx;
        h->accept_ctx.ssl_ctx = cfg->ssl_ctx;
    }
    log_info("%s: listening on %s%s", h->name, cfg->listen, h->ssl ? " (https)" : "");
    return h;
}

int httpd_port(const httpd_t *h)
{
    return h->port;
}

static void httpd_on_reaper_closed(uv_handle_t *handle)
{
    httpd_t *h = handle->data;
    void (*done)(void *arg) = h->done;
    void *arg = h->done_arg;

    free(h);
    if (done)
        done(arg);
}

/* 1 while h2o has timers pending (deferred callbacks of connections just
 * closed, the shutdown's own); its context may be disposed only without. */
static int httpd_timers_pending(httpd_t *h)
{
    h2o_timeout_t *all[] = { &h->ctx.zero_timeout, &h->ctx.one_sec_timeout,
                             &h->ctx.hundred_ms_timeout, &h->ctx.handshake_timeout,
                             &h->ctx.http1.req_timeout, &h->ctx.http2.idle_timeout,
                             &h->ctx.http2.graceful_shutdown_timeout };

    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (!h2o_linklist_is_empty(&all[i]->_entries))
            return 1;
    return 0;
}

static void httpd_on_reaper(uv_timer_t *timer)
{
    httpd_t *h = timer->data;

    if (h->n_conns || h->listener_open || httpd_timers_pending(h))
        return;
    uv_timer_stop(timer);
    h2o_context_dispose(&h->ctx);
    h2o_config_dispose(&h->config);
    if (h->ssl)
        SSL_CTX_free(h->ssl);
    uv_close((uv_handle_t *)timer, httpd_on_reaper_closed);
}

static void httpd_maybe_done(httpd_t *h)
{
    if (h->n_conns == 0 && !h->listener_open && !uv_is_active((uv_handle_t *)&h->reaper) &&
        !uv_is_closing((uv_handle_t *)&h->reaper))
        uv_timer_start(&h->reaper, httpd_on_reaper, 0, 20);
}

static void httpd_on_listener_closed(uv_handle_t *handle)
{
    httpd_t *h = handle->data;

    h->listener_open = 0;
    httpd_maybe_done(h);
}

void httpd_close(httpd_t *h, void (*done)(void *arg), void *arg)
{
    if (h->closing)
        return;
    h->closing = 1;
    h->done = done;
    h->done_arg = arg;
    uv_timer_init(h->loop, &h->reaper);
    h->reaper.data = h;
    uv_close((uv_handle_t *)&h->listener, httpd_on_listener_closed);
    for (httpd_stream_t *s = h->streams, *next; s; s = next) {
        next = s->next;
        httpd_stream_end(s);
    }
    h2o_context_request_shutdown(&h->ctx);
}
