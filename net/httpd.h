/* httpd: the HTTP server behind every HTTP listener of skiff: the daemons'
 * /metrics, the controller's HTTP API and dashboard, and its Docker Engine
 * API. It is libh2o (HTTP/1.1, and HTTP/2 over TLS) driven by the process's
 * own libuv loop, so a request is handled on the loop's thread like any
 * other message and never blocks it. It knows no paths: every request goes
 * to the one handler its listener was started with.
 *
 * A handler answers at once or later, exactly once per request, with
 * httpd_respond(), or opens a stream (Server-Sent Events, followed logs)
 * that it writes to as data comes. A stream's unsent output is bounded: a
 * write that would pass the bound is refused and the caller decides what to
 * drop. Request bodies over max_body are refused with 413 before the
 * handler sees them; connections over max_connections are closed at accept.
 *
 * Ownership: a request (and its strings) is valid from the handler's call
 * until its response is complete or its stream's on_close has run.
 */
#ifndef SKIFF_HTTPD_H
#define SKIFF_HTTPD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct httpd httpd_t;
typedef struct st_h2o_req_t httpd_req_t;
typedef struct httpd_stream httpd_stream_t;
typedef struct ssl_ctx_st httpd_ssl_ctx_t; /* OpenSSL's SSL_CTX */

/* Called on the loop for every request. */
typedef void (*httpd_handler_fn)(void *arg, httpd_req_t *req);

typedef struct httpd_config {
    const char *listen;        /* "ADDR:PORT" */
    const char *name;          /* for logs: "metrics", "api", ... */
    size_t max_body;           /* 0: 1 MiB */
    unsigned max_connections;  /* 0: 1024 */
    uint64_t request_timeout_ms; /* for a request to arrive whole; 0: 10 s */
    httpd_ssl_ctx_t *ssl_ctx;  /* NULL: plain HTTP; else HTTPS with it (a
                                * reference is taken) */
} httpd_config_t;

/* Starts listening. Returns the server, or NULL with the reason in err
 * (a bad address, a port in use, out of memory). */
httpd_t *httpd_start(uv_loop_t *loop, const httpd_config_t *cfg, httpd_handler_fn handler,
                     void *arg, char *err, size_t errlen);

/* Stops listening, ends every stream (their on_close runs), lets answers
 * in progress finish, and calls done(arg) from the loop once every
 * connection is closed and the server is freed. */
void httpd_close(httpd_t *h, void (*done)(void *arg), void *arg);

/* The port it listens on (useful with port 0). */
int httpd_port(const httpd_t *h);

/* ---- requests */

/* "GET", "POST", ... */
const char *httpd_method(httpd_req_t *r);
/* The path without the query, percent-decoded and normalized ("/a/b"). */
const char *httpd_path(httpd_req_t *r);
/* The value of query parameter name, percent-decoded, or NULL when absent.
 * "?a" gives "" for a. */
const char *httpd_query(httpd_req_t *r, const char *name);
/* A request header (case-insensitive name), or NULL. */
const char *httpd_header(httpd_req_t *r, const char *name);
/* The body (may hold NULs); "" with *len 0 when none. */
const char *httpd_body(httpd_req_t *r, size_t *len);
/* "ADDRESS" of the peer, without the port. */
const char *httpd_peer(httpd_req_t *r);
/* 1 when the request came over TLS. */
int httpd_is_tls(httpd_req_t *r);

/* Calls done(arg) once, from the loop, when the request is over and its
 * strings are freed: answered, or gone with its client before the answer.
 * For handlers that answer later (after a commit): once done has run, the
 * request must not be used. Returns 0, or -ENOMEM (then done never runs). */
int httpd_on_done(httpd_req_t *r, void (*done)(void *arg), void *arg);

/* ---- responses: exactly one per request */

/* Adds a response header; call before httpd_respond or httpd_stream_open. */
void httpd_add_header(httpd_req_t *r, const char *name, const char *value);
/* Answers with status and body (copied). content_type NULL: none. */
void httpd_respond(httpd_req_t *r, int status, const char *content_type, const char *body,
                   size_t len);
/* Answers {"error": "<message>"} as application/json. */
void httpd_respond_error(httpd_req_t *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- streams */

/* Starts an answer whose body follows in pieces. on_close(arg) runs once,
 * from the loop, when the stream is over: ended by httpd_stream_end, gone
 * with its client, or closed with the server; after it the stream must not
 * be used. max_pending bounds the bytes written but not yet sent (0: 1 MiB).
 * Returns NULL when out of memory (then a 500 has been sent and on_close is
 * never called). */
httpd_stream_t *httpd_stream_open(httpd_req_t *r, int status, const char *content_type,
                                  size_t max_pending, void (*on_close)(void *arg), void *arg);
/* Queues len bytes. Returns 0; SKIFF_ELIMIT when they would pass
 * max_pending (nothing queued); SKIFF_ECLOSED when the stream is over. */
int httpd_stream_write(httpd_stream_t *s, const void *data, size_t len);
/* Bytes written and not yet sent. */
size_t httpd_stream_pending(const httpd_stream_t *s);
/* Ends the body once what is queued is sent; on_close follows. */
void httpd_stream_end(httpd_stream_t *s);

#endif
