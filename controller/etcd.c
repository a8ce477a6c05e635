/* etcd: see etcd.h.
 *
 * A call is a request struct with its body built once; each attempt is one
 * httpc transfer to one endpoint, and a pause between attempts is the
 * request's own timer (so a request is freed from that timer's close
 * callback). A watch is the same with a stream: its answer's lines are cut
 * at '\n' as they arrive, each one JSON object.
 */
#include "etcd.h"
#include "errors.h"
#include "httpc.h"
#include "log.h"
#include "wire.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ETCD_ATTEMPT_TIMEOUT_MS 2000
#define ETCD_CONNECT_TIMEOUT_MS 1000
#define ETCD_PAUSE_MIN_MS 50
#define ETCD_PAUSE_MAX_MS 1000
#define ETCD_MAX_ANSWER ((size_t)64 << 20)

enum etcd_kind { ETCD_K_RANGE, ETCD_K_TXN, ETCD_K_GRANT, ETCD_K_KEEPALIVE, ETCD_K_REVOKE };

static const char *const etcd_paths[] = {
    [ETCD_K_RANGE] = "/v3/kv/range", [ETCD_K_TXN] = "/v3/kv/txn",
    [ETCD_K_GRANT] = "/v3/lease/grant", [ETCD_K_KEEPALIVE] = "/v3/lease/keepalive",
    [ETCD_K_REVOKE] = "/v3/lease/revoke",
};

struct etcd {
    uv_loop_t *loop;
    httpc_t *http;
    char *endpoints[ETCD_MAX_ENDPOINTS];
    size_t n_endpoints;
    size_t current;
    char *cacert, *cert, *key;
    int64_t attempt_timeout_ms;
    size_t max_answer;
    etcd_req_t *reqs;
    etcd_watch_t *watches;
    int closing;
    int handles;  /* timers not closed yet, and the httpc */
    void (*close_done)(void *arg);
    void *close_arg;
};

/* An answer's bytes, bounded by max_answer. */
typedef struct etcd_body {
    char *data;
    size_t len, cap, max;
    int too_big;
} etcd_body_t;

struct etcd_req {
    etcd_t *e;
    enum etcd_kind kind;
    char *body;
    uint64_t deadline;      /* uv_now */
    size_t endpoint;        /* of the attempt in flight */
    unsigned attempts;
    httpc_xfer_t *xfer;
    uv_timer_t timer;
    etcd_body_t answer;
    char err[256];          /* why the last attempt failed */
    etcd_cb cb;
    void *arg;
    int dead;
    etcd_req_t *prev, *next;
};

struct etcd_watch {
    etcd_t *e;
    char *key, *range_end;
    int64_t next_rev;       /* where the next stream starts */
    size_t endpoint;
    unsigned failures;      /* streams that broke in a row */
    httpc_xfer_t *xfer;
    uv_timer_t timer;
    etcd_body_t line;       /* the part of a line not ended yet */
    int ended;              /* on_end was called or is due: no new stream */
    int64_t compact_rev;
    int stream_rc;
    char err[256];
    const etcd_watch_ops_t *ops;
    void *arg;
    int dead;
    etcd_watch_t *prev, *next;
};

static void etcd_attempt(etcd_req_t *r);
static void etcd_watch_start(etcd_watch_t *w);

/* ---------------------------------------------------------------- helpers */

static void etcd_maybe_done(etcd_t *e)
{
    void (*done)(void *) = e->close_done;
    void *arg = e->close_arg;

    if (!e->closing || e->handles > 0)
        return;
    for (size_t i = 0; i < e->n_endpoints; i++)
        free(e->endpoints[i]);
    free(e->cacert);
    free(e->cert);
    free(e->key);
    free(e);
    if (done)
        done(arg);
}

static int etcd_body_add(etcd_body_t *b, const char *data, size_t n)
{
    if (b->len + n + 1 > b->max) {
        b->too_big = 1;
        return -1;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *grown;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > b->max)
            cap = b->max;
        if (!(grown = realloc(b->data, cap)))
            return -1;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static void etcd_body_reset(etcd_body_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->too_big = 0;
}

/* An easy handle for a POST of body to endpoint i's path. NULL: out of memory. */
static CURL *etcd_easy(etcd_t *e, size_t i, const char *path, const char *body,
                       int64_t timeout_ms, struct curl_slist **headers)
{
    CURL *easy = curl_easy_init();
    char url[512];

    *headers = NULL;
    if (!easy)
        return NULL;
    snprintf(url, sizeof(url), "%s://%s%s", e->cacert ? "https" : "http", e->endpoints[i], path);
    *headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (!*headers) {
        curl_easy_cleanup(easy);
        return NULL;
    }
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, body);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)ETCD_CONNECT_TIMEOUT_MS);
    if (timeout_ms > 0)
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_NOPROXY, "*");
    if (e->cacert) {
        curl_easy_setopt(easy, CURLOPT_CAINFO, e->cacert);
        if (e->cert)
            curl_easy_setopt(easy, CURLOPT_SSLCERT, e->cert);
        if (e->key)
            curl_easy_setopt(easy, CURLOPT_SSLKEY, e->key);
    }
    return easy;
}

/* The endpoint after i becomes current, unless another call moved it already. */
static void etcd_next_endpoint(etcd_t *e, size_t i)
{
    if (e->current == i)
        e->current = (i + 1) % e->n_endpoints;
}

static uint64_t etcd_pause(unsigned failures, size_t n_endpoints)
{
    uint64_t ms = ETCD_PAUSE_MIN_MS;

    /* The other endpoints at once; then a pause that grows, per round. */
    if (failures < n_endpoints)
        return 0;
    for (unsigned k = (unsigned)(failures / n_endpoints); k > 1 && ms < ETCD_PAUSE_MAX_MS; k--)
        ms *= 2;
    return ms < ETCD_PAUSE_MAX_MS ? ms : ETCD_PAUSE_MAX_MS;
}

/* -------------------------------------------------------------- endpoints */

int etcd_parse_endpoints(const char *list, etcd_config_t *cfg, char *buf, size_t len,
                         char *err, size_t errlen)
{
    size_t used = 0;
    const char *p = list;

    cfg->n_endpoints = 0;
    if (!*list) {
        snprintf(err, errlen, "no etcd endpoint given (HOST:PORT[,HOST:PORT...])");
        return SKIFF_EINVAL;
    }
    while (*p) {
        size_t n = strcspn(p, ",");
        char host[256];
        int port;

        if (n == 0 || n >= sizeof(host) || used + n + 1 > len) {
            snprintf(err, errlen, "\"%.100s\": an empty or too long endpoint", list);
            return SKIFF_EINVAL;
        }
        memcpy(buf + used, p, n);
        buf[used + n] = '\0';
        if (wire_parse_hostport(buf + used, host, sizeof(host), &port) || port < 1 ||
            port > 65535 || !*host) {
            snprintf(err, errlen, "\"%.100s\": not HOST:PORT", buf + used);
            return SKIFF_EINVAL;
        }
        if (cfg->n_endpoints == ETCD_MAX_ENDPOINTS) {
            snprintf(err, errlen, "more than %d etcd endpoints", ETCD_MAX_ENDPOINTS);
            return SKIFF_EINVAL;
        }
        cfg->endpoints[cfg->n_endpoints++] = buf + used;
        used += n + 1;
        p += n;
        if (*p == ',') {
            p++;
            if (!*p) {
                snprintf(err, errlen, "\"%.100s\": an empty endpoint at the end", list);
                return SKIFF_EINVAL;
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------- life */

etcd_t *etcd_create(uv_loop_t *loop, const etcd_config_t *cfg)
{
    etcd_t *e = calloc(1, sizeof(*e));

    if (!e || cfg->n_endpoints == 0 || cfg->n_endpoints > ETCD_MAX_ENDPOINTS)
        goto out_free;
    e->loop = loop;
    for (size_t i = 0; i < cfg->n_endpoints; i++) {
        if (!(e->endpoints[i] = strdup(cfg->endpoints[i])))
            goto out_free;
        e->n_endpoints++;
    }
    if ((cfg->cacert && !(e->cacert = strdup(cfg->cacert))) ||
        (cfg->cert && !(e->cert = strdup(cfg->cert))) ||
        (cfg->key && !(e->key = strdup(cfg->key))))
        goto out_free;
    e->attempt_timeout_ms = cfg->attempt_timeout_ms > 0 ? cfg->attempt_timeout_ms
                                                        : ETCD_ATTEMPT_TIMEOUT_MS;
    e->max_answer = cfg->max_answer ? cfg->max_answer : ETCD_MAX_ANSWER;
    if (!(e->http = httpc_create(loop)))
        goto out_free;
    return e;

out_free:
    if (e) {
        for (size_t i = 0; i < e->n_endpoints; i++)
            free(e->endpoints[i]);
        free(e->cacert);
        free(e->cert);
        free(e->key);
        free(e);
    }
    return NULL;
}

const char *etcd_endpoint(const etcd_t *e)
{
    return e->endpoints[e->current];
}

static void etcd_on_http_closed(void *arg)
{
    etcd_t *e = arg;

    e->handles--;
    etcd_maybe_done(e);
}

void etcd_close(etcd_t *e, void (*done)(void *arg), void *arg)
{
    if (e->closing)
        return;
    e->closing = 1;
    e->close_done = done;
    e->close_arg = arg;
    while (e->reqs)
        etcd_cancel(e, e->reqs);
    while (e->watches)
        etcd_watch_cancel(e, e->watches);
    e->handles++;
    httpc_close(e->http, etcd_on_http_closed, e);
    e->http = NULL;
}

/* ------------------------------------------------------------------ calls */

static void etcd_on_req_timer_closed(uv_handle_t *h)
{
    etcd_req_t *r = h->data;
    etcd_t *e = r->e;

    etcd_body_reset(&r->answer);
    free(r->body);
    free(r);
    e->handles--;
    etcd_maybe_done(e);
}

/* Unlists r and frees it once its timer is closed. */
static void etcd_req_free(etcd_req_t *r)
{
    etcd_t *e = r->e;

    r->dead = 1;
    if (r->prev)
        r->prev->next = r->next;
    else
        e->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    if (r->xfer && e->http)
        httpc_cancel(e->http, r->xfer);
    r->xfer = NULL;
    uv_close((uv_handle_t *)&r->timer, etcd_on_req_timer_closed);
}

void etcd_cancel(etcd_t *e, etcd_req_t *r)
{
    if (r && !r->dead)
        etcd_req_free(r);
}

static void etcd_finish(etcd_req_t *r, int rc, const char *err, etcd_answer_t *a)
{
    etcd_cb cb = r->cb;
    void *arg = r->arg;

    r->xfer = NULL;
    etcd_req_free(r); /* the answer's bytes stay until the timer's close */
    cb(arg, rc, err, a);
}

static void etcd_on_req_timer(uv_timer_t *t)
{
    etcd_attempt(t->data);
}

/* The attempt failed in a way another endpoint may not: try again. */
static void etcd_retry(etcd_req_t *r)
{
    etcd_t *e = r->e;
    uint64_t now = uv_now(e->loop), pause;

    etcd_next_endpoint(e, r->endpoint);
    r->attempts++;
    pause = etcd_pause(r->attempts, e->n_endpoints);
    if (now + pause >= r->deadline) {
        etcd_answer_t a = { 0 };
        char err[320];
        snprintf(err, sizeof(err), "etcd: %s", r->err);
        etcd_finish(r, SKIFF_EUNAVAILABLE, err, &a);
        return;
    }
    log_debug("etcd %s: %s; again on %s in %" PRIu64 " ms", etcd_paths[r->kind], r->err,
              e->endpoints[e->current], pause);
    uv_timer_start(&r->timer, etcd_on_req_timer, pause, 0);
}

static int etcd_on_req_body(void *arg, const char *data, size_t len)
{
    etcd_req_t *r = arg;

    return etcd_body_add(&r->answer, data, len);
}

static void etcd_answered(etcd_req_t *r)
{
    etcd_answer_t a = { 0 };
    char err[256] = "";
    const char *body = r->answer.data ? r->answer.data : "";
    size_t n = r->answer.len;
    int rc = 0;

    switch (r->kind) {
    case ETCD_K_RANGE:
        rc = etcd_parse_range(body, n, &a.range, err, sizeof(err));
        a.revision = a.range.revision;
        break;
    case ETCD_K_TXN:
        rc = etcd_parse_txn(body, n, &a.txn, err, sizeof(err));
        a.revision = a.txn.revision;
        break;
    case ETCD_K_GRANT:
    case ETCD_K_KEEPALIVE:
    case ETCD_K_REVOKE:
        rc = etcd_parse_lease(body, n, &a.lease_id, &a.ttl, err, sizeof(err));
        break;
    }
    if (rc) {
        char msg[320];
        snprintf(msg, sizeof(msg), "etcd %s: %.250s", etcd_paths[r->kind], err);
        etcd_finish(r, SKIFF_ESTORE, msg, &a);
    } else {
        etcd_finish(r, 0, "", &a);
    }
    etcd_range_res_free(&a.range);
    etcd_txn_res_free(&a.txn);
}

static void etcd_on_req_done(void *arg, CURLcode result, long status, const char *cerr)
{
    etcd_req_t *r = arg;
    etcd_t *e = r->e;
    etcd_status_t st;

    r->xfer = NULL;
    if (result != CURLE_OK) {
        snprintf(r->err, sizeof(r->err), "%.64s: %.180s", e->endpoints[r->endpoint],
                 r->answer.too_big ? "the answer is too large" : cerr);
        if (r->answer.too_big) {
            etcd_answer_t a = { 0 };
            char msg[320];
            snprintf(msg, sizeof(msg), "etcd: %s", r->err);
            etcd_finish(r, SKIFF_ESTORE, msg, &a);
            return;
        }
        etcd_retry(r);
        return;
    }
    e->current = r->endpoint; /* it answers: stay with it */
    if (status == 200) {
        etcd_answered(r);
        return;
    }
    etcd_parse_error(r->answer.data ? r->answer.data : "", r->answer.len, &st);
    snprintf(r->err, sizeof(r->err), "%.64s: %.160s (HTTP %ld)", e->endpoints[r->endpoint],
             st.message, status);
    if (st.code == ETCD_GRPC_UNAVAILABLE || st.code == ETCD_GRPC_DEADLINE || status == 502 ||
        status == 503 || status == 504 || (st.code == 0 && status >= 500)) {
        etcd_next_endpoint(e, r->endpoint);
        etcd_retry(r);
        return;
    }
    {
        etcd_answer_t a = { .grpc_code = st.code };
        char msg[320];
        snprintf(msg, sizeof(msg), "etcd %s: %.250s", etcd_paths[r->kind], st.message);
        etcd_finish(r, SKIFF_ESTORE, msg, &a);
    }
}

static const httpc_ops_t etcd_req_ops = {
    .on_body = etcd_on_req_body,
    .on_done = etcd_on_req_done,
};

static void etcd_attempt(etcd_req_t *r)
{
    etcd_t *e = r->e;
    uint64_t now = uv_now(e->loop);
    int64_t left = (int64_t)(r->deadline - now), timeout;
    struct curl_slist *headers;
    CURL *easy;

    if (now >= r->deadline)
        left = 1;
    timeout = left < e->attempt_timeout_ms ? left : e->attempt_timeout_ms;
    if (timeout < 100)
        timeout = 100;
    r->endpoint = e->current;
    etcd_body_reset(&r->answer);
    r->answer.max = e->max_answer;
    easy = etcd_easy(e, r->endpoint, etcd_paths[r->kind], r->body, timeout, &headers);
    if (!easy || httpc_add(e->http, easy, headers, &etcd_req_ops, r, &r->xfer)) {
        if (easy == NULL) {
            curl_slist_free_all(headers);
        }
        snprintf(r->err, sizeof(r->err), "out of memory");
        r->xfer = NULL;
        etcd_retry(r);
    }
}

static etcd_req_t *etcd_call(etcd_t *e, enum etcd_kind kind, char *body, int64_t deadline_ms,
                             etcd_cb cb, void *arg)
{
    etcd_req_t *r;

    if (!body || e->closing) {
        free(body);
        return NULL;
    }
    if (!(r = calloc(1, sizeof(*r)))) {
        free(body);
        return NULL;
    }
    r->e = e;
    r->kind = kind;
    r->body = body;
    r->cb = cb;
    r->arg = arg;
    r->deadline = uv_now(e->loop) + (uint64_t)(deadline_ms > 0 ? deadline_ms : 1);
    uv_timer_init(e->loop, &r->timer);
    r->timer.data = r;
    e->handles++;
    r->next = e->reqs;
    if (e->reqs)
        e->reqs->prev = r;
    e->reqs = r;
    /* Started from a zero timer, so that a failure to start is a callback
     * later, never inside this call. */
    uv_timer_start(&r->timer, etcd_on_req_timer, 0, 0);
    return r;
}

etcd_req_t *etcd_range(etcd_t *e, const etcd_op_t *range, int64_t deadline_ms, etcd_cb cb,
                       void *arg)
{
    return etcd_call(e, ETCD_K_RANGE, etcd_json_range(range), deadline_ms, cb, arg);
}

etcd_req_t *etcd_txn(etcd_t *e, const etcd_txn_t *txn, int64_t deadline_ms, etcd_cb cb,
                     void *arg)
{
    return etcd_call(e, ETCD_K_TXN, etcd_json_txn(txn), deadline_ms, cb, arg);
}

etcd_req_t *etcd_lease_grant(etcd_t *e, int64_t ttl_s, int64_t deadline_ms, etcd_cb cb,
                             void *arg)
{
    return etcd_call(e, ETCD_K_GRANT, etcd_json_lease_grant(ttl_s), deadline_ms, cb, arg);
}

etcd_req_t *etcd_lease_keepalive(etcd_t *e, int64_t id, int64_t deadline_ms, etcd_cb cb,
                                 void *arg)
{
    return etcd_call(e, ETCD_K_KEEPALIVE, etcd_json_lease_id(id), deadline_ms, cb, arg);
}

etcd_req_t *etcd_lease_revoke(etcd_t *e, int64_t id, int64_t deadline_ms, etcd_cb cb,
                              void *arg)
{
    return etcd_call(e, ETCD_K_REVOKE, etcd_json_lease_id(id), deadline_ms, cb, arg);
}

/* ---------------------------------------------------------------- watches */

static void etcd_on_watch_timer_closed(uv_handle_t *h)
{
    etcd_watch_t *w = h->data;
    etcd_t *e = w->e;

    etcd_body_reset(&w->line);
    free(w->key);
    free(w->range_end);
    free(w);
    e->handles--;
    etcd_maybe_done(e);
}

void etcd_watch_cancel(etcd_t *e, etcd_watch_t *w)
{
    if (!w || w->dead)
        return;
    w->dead = 1;
    if (w->prev)
        w->prev->next = w->next;
    else
        e->watches = w->next;
    if (w->next)
        w->next->prev = w->prev;
    if (w->xfer && e->http)
        httpc_cancel(e->http, w->xfer);
    w->xfer = NULL;
    uv_close((uv_handle_t *)&w->timer, etcd_on_watch_timer_closed);
}

int64_t etcd_watch_revision(const etcd_watch_t *w)
{
    return w->next_rev;
}

/* Handles one whole line of the stream. Returns 0, or -1 to end the stream
 * (w->ended, w->stream_rc and w->err say how). */
static int etcd_watch_line(etcd_watch_t *w, const char *line, size_t n)
{
    etcd_watch_res_t res;
    etcd_status_t st;
    char err[256];

    if (n == 0)
        return 0;
    if (etcd_parse_watch(line, n, &res, &st, err, sizeof(err))) {
        snprintf(w->err, sizeof(w->err), "%.64s: %.180s", w->e->endpoints[w->endpoint], err);
        w->stream_rc = SKIFF_ESTORE;
        return -1;
    }
    if (res.canceled) {
        if (res.compact_revision > 0) {
            w->ended = 1;
            w->compact_rev = res.compact_revision;
            snprintf(w->err, sizeof(w->err), "revision %" PRId64 " was compacted (now %" PRId64
                     ")", w->next_rev, res.compact_revision);
        } else {
            snprintf(w->err, sizeof(w->err), "%s: the watch was cancelled",
                     w->e->endpoints[w->endpoint]);
        }
        etcd_watch_res_free(&res);
        w->stream_rc = SKIFF_ESTORE;
        return -1;
    }
    w->failures = 0;
    if (res.n > 0 && res.events[res.n - 1].kv.mod_revision >= w->next_rev)
        w->next_rev = res.events[res.n - 1].kv.mod_revision + 1;
    w->ops->on_events(w->arg, &res);
    etcd_watch_res_free(&res);
    return w->dead ? -1 : 0;
}

static int etcd_on_watch_body(void *arg, const char *data, size_t len)
{
    etcd_watch_t *w = arg;

    while (len > 0 && !w->dead) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) : len;

        if (etcd_body_add(&w->line, data, take)) {
            snprintf(w->err, sizeof(w->err), "%s: a watch answer larger than %zu bytes",
                     w->e->endpoints[w->endpoint], w->line.max);
            w->stream_rc = SKIFF_ESTORE;
            return -1;
        }
        if (!nl)
            break;
        if (etcd_watch_line(w, w->line.data ? w->line.data : "", w->line.len))
            return -1;
        w->line.len = 0;
        data += take + 1;
        len -= take + 1;
    }
    return w->dead ? -1 : 0;
}

static void etcd_on_watch_timer(uv_timer_t *t)
{
    etcd_watch_start(t->data);
}

static void etcd_on_watch_done(void *arg, CURLcode result, long status, const char *cerr)
{
    etcd_watch_t *w = arg;
    etcd_t *e = w->e;
    uint64_t pause;

    w->xfer = NULL;
    if (w->dead)
        return;
    if (w->ended) {
        const etcd_watch_ops_t *ops = w->ops;
        void *warg = w->arg;
        int64_t compact = w->compact_rev;
        char err[256];
        snprintf(err, sizeof(err), "%s", w->err);
        etcd_watch_cancel(e, w);
        ops->on_end(warg, SKIFF_ESTORE, err, compact);
        return;
    }
    if (!w->stream_rc) {
        if (result != CURLE_OK)
            snprintf(w->err, sizeof(w->err), "%.64s: %.180s", e->endpoints[w->endpoint], cerr);
        else
            snprintf(w->err, sizeof(w->err), "%s: the watch stream ended (HTTP %ld)",
                     e->endpoints[w->endpoint], status);
    }
    etcd_next_endpoint(e, w->endpoint);
    w->failures++;
    pause = etcd_pause(w->failures, e->n_endpoints);
    if (pause < ETCD_PAUSE_MIN_MS)
        pause = ETCD_PAUSE_MIN_MS;
    if (w->failures == 1 || w->failures % 20 == 0)
        log_info("etcd watch: %s; watching again from revision %" PRId64 " on %s", w->err,
                 w->next_rev, e->endpoints[e->current]);
    uv_timer_start(&w->timer, etcd_on_watch_timer, pause, 0);
}

static const httpc_ops_t etcd_watch_http_ops = {
    .on_body = etcd_on_watch_body,
    .on_done = etcd_on_watch_done,
};

static void etcd_watch_start(etcd_watch_t *w)
{
    etcd_t *e = w->e;
    struct curl_slist *headers;
    char *body = etcd_json_watch(w->key, w->range_end, w->next_rev);
    CURL *easy = NULL;

    w->endpoint = e->current;
    w->line.len = 0;
    w->stream_rc = 0;
    w->err[0] = '\0';
    if (body)
        easy = etcd_easy(e, w->endpoint, "/v3/watch", body, 0, &headers);
    free(body);
    if (easy && httpc_add(e->http, easy, headers, &etcd_watch_http_ops, w, &w->xfer) == 0)
        return;
    w->xfer = NULL;
    log_warn("etcd watch: out of memory; trying again");
    uv_timer_start(&w->timer, etcd_on_watch_timer, ETCD_PAUSE_MAX_MS, 0);
}

etcd_watch_t *etcd_watch(etcd_t *e, const char *key, const char *range_end,
                         int64_t start_revision, const etcd_watch_ops_t *ops, void *arg)
{
    etcd_watch_t *w;

    if (e->closing || !(w = calloc(1, sizeof(*w))))
        return NULL;
    w->key = strdup(key);
    w->range_end = range_end ? strdup(range_end) : NULL;
    if (!w->key || (range_end && !w->range_end)) {
        free(w->key);
        free(w->range_end);
        free(w);
        return NULL;
    }
    w->e = e;
    w->next_rev = start_revision;
    w->ops = ops;
    w->arg = arg;
    w->line.max = e->max_answer;
    uv_timer_init(e->loop, &w->timer);
    w->timer.data = w;
    e->handles++;
    w->next = e->watches;
    if (e->watches)
        e->watches->prev = w;
    e->watches = w;
    uv_timer_start(&w->timer, etcd_on_watch_timer, 0, 0);
    return w;
}
