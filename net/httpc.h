/* httpc: libcurl's multi interface driven by a libuv loop.
 *
 * One httpc runs every HTTP transfer of a daemon: the agent's Engine API calls on
 * the engine's unix socket (docker.c) and the HTTP health probes (runner.c).
 * Sockets are watched with uv_poll and curl's timeout with a uv_timer, the
 * way libcurl's multi-uv example does it, so no transfer ever blocks the
 * loop. It knows nothing of Docker or of health: callers configure an easy
 * handle (URL, method, body, unix socket, timeouts) and hand it over; httpc
 * delivers the answer's header lines and body bytes as they arrive and says
 * when the transfer is done.
 *
 * Callbacks run on the loop's thread. on_done is called exactly once per
 * transfer, unless the transfer is cancelled first or the httpc is closed:
 * then no callback of that transfer is called again.
 */
#ifndef SKIFF_HTTPC_H
#define SKIFF_HTTPC_H

#include <curl/curl.h>
#include <uv.h>

typedef struct httpc httpc_t;
typedef struct httpc_xfer httpc_xfer_t;

typedef struct httpc_ops {
    /* One header line as curl gives it (status line first, CRLF included,
     * an empty line after the last). Return 0, or non-zero to abort the
     * transfer (on_done then sees a curl error). NULL: ignored. */
    int (*on_header)(void *arg, const char *line, size_t len);
    /* Body bytes, in order. Return as on_header. NULL: discarded. */
    int (*on_body)(void *arg, const char *data, size_t len);
    /* The transfer ended. result is curl's code (CURLE_OK: a whole answer
     * arrived, whatever its status); http_status the answer's status, 0 if
     * none arrived; err curl's message, "" with CURLE_OK. */
    void (*on_done)(void *arg, CURLcode result, long http_status, const char *err);
} httpc_ops_t;

/* A new httpc on loop. NULL when out of memory or when curl fails. */
httpc_t *httpc_create(uv_loop_t *loop);

/* Starts a transfer. httpc takes easy and headers (may be NULL) in every
 * case, sets the easy's write, header, error-buffer and private options,
 * and frees both when the transfer ends. Request bodies must be copied into
 * the easy (CURLOPT_COPYPOSTFIELDS). ops must outlive the transfer.
 * Returns 0 and sets *out (may be NULL) to the transfer, or -ENOMEM /
 * SKIFF_ECLOSED; then no callback is ever called. */
int httpc_add(httpc_t *h, CURL *easy, struct curl_slist *headers, const httpc_ops_t *ops,
              void *arg, httpc_xfer_t **out);

/* Cancels a transfer that has not called on_done: none of its callbacks is
 * called again, so the caller may free arg at once. Safe from inside any
 * callback of any transfer, its own included. */
void httpc_cancel(httpc_t *h, httpc_xfer_t *x);

/* Transfers in progress. */
int httpc_active(const httpc_t *h);

/* Cancels every transfer, closes the handles, and calls done(arg) from the
 * loop once the httpc is freed. Not from inside on_header or on_body. */
void httpc_close(httpc_t *h, void (*done)(void *arg), void *arg);

#endif
