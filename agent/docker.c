/* docker: see docker.h.
 *
 * Every call is one request (dreq_t) on httpc. A request collects its body
 * into a bounded buffer, or, for the streaming endpoints (events, logs, stats, pull
 * progress), parses it as it comes; its callback runs once the transfer is
 * done, and the request is freed after it. A request that a caller may end
 * (logs) or that the engine ends (events) can be released from inside its
 * own callbacks: release only marks it then, and the body handler frees it
 * on the way out.
 */
#include "docker.h"
#include "engine_json.h"
#include "errors.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#define DOCKER_API_MAX_MAJOR 1
#define DOCKER_API_MAX_MINOR 41
#define DOCKER_API_MIN_MINOR 25    /* Mounts, NanoCpus, health start period */
#define DOCKER_BODY_MAX ((size_t)16 << 20)
#define DOCKER_ERROR_BODY_MAX ((size_t)64 << 10)
#define DOCKER_EVENT_LINE_MAX ((size_t)1 << 20)
#define DOCKER_PROGRESS_LINE_MAX ((size_t)64 << 10)
#define DOCKER_TIMEOUT_MS 60000L
#define DOCKER_CONNECT_TIMEOUT_MS 5000L
#define DOCKER_EVENTS_BACKOFF_MIN_MS 100
#define DOCKER_EVENTS_BACKOFF_MAX_MS 2000

typedef enum dkind {
    D_PING, D_INFO, D_GATEWAY, D_IMAGE_INSPECT, D_PULL, D_CREATE, D_START, D_STOP, D_KILL,
    D_REMOVE, D_INSPECT, D_LIST, D_EVENTS, D_LOGS, D_STATS, D_KINDS
} dkind_t;

/* The op label of skiff_engine_requests_total, by kind. */
static const char *const docker_kind_names[D_KINDS] = {
    "ping", "info", "gateway", "image_inspect", "image_pull", "create", "start", "stop",
    "kill", "remove", "inspect", "list", "events", "logs", "stats",
};

#define DOCKER_CODES 12  /* distinct answer codes counted per kind */

typedef struct docker docker_t;

/* A request; for logs it is also the caller's engine_logs_t. */
typedef struct engine_logs dreq_t;

struct engine_logs {
    docker_t *d;
    dkind_t kind;
    httpc_xfer_t *xfer;
    engine_cb cb;
    void *arg;
    const engine_logs_ops_t *logs_ops;
    const engine_stats_ops_t *stats_ops;
    long http_status;       /* from the last status line */
    buf_t body;             /* the answer, or an error answer of a stream */
    size_t body_max;
    int overflow;           /* the body passed body_max: the transfer was aborted */
    engine_lines_t lines;   /* events, pull progress */
    engine_demux_t demux;   /* logs */
    char stream_err[ENGINE_MESSAGE_MAX]; /* pull: the first error in the progress */
    char api_version[16];   /* ping: the Api-Version header */
    int busy;               /* inside a caller's callback from the body handler */
    int released;           /* released while busy: free on the way out */
    dreq_t *prev, *next;
};

struct docker {
    engine_t base;
    uv_loop_t *loop;
    httpc_t *http;
    char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char api[16];
    dreq_t *reqs;
    struct { int code; uint64_t n; } answers[D_KINDS][DOCKER_CODES];
    int closing;
    void (*close_done)(void *arg);
    void *close_arg;
    struct {
        int active;
        int up;
        char *filters;      /* URL-encoded */
        const engine_events_ops_t *ops;
        void *arg;
        dreq_t *req;
        uv_timer_t timer;
        uint64_t backoff_ms;
    } ev;
};

static const httpc_ops_t docker_http_ops;

/* ------------------------------------------------------------ requests */

static void dreq_free(dreq_t *r)
{
    buf_free(&r->body);
    engine_lines_free(&r->lines);
    free(r);
}

static void dreq_unlink(dreq_t *r)
{
    docker_t *d = r->d;

    if (r->prev)
        r->prev->next = r->next;
    else if (d->reqs == r)
        d->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

/* Ends r now: cancels its transfer and frees it (later, when it is inside
 * its own body handler). No callback of r is called again. */
static void dreq_release(dreq_t *r)
{
    if (r->released)
        return;
    r->released = 1;
    if (r->xfer)
        httpc_cancel(r->d->http, r->xfer);
    r->xfer = NULL;
    dreq_unlink(r);
    if (!r->busy)
        dreq_free(r);
}

/* Appends s to the URL in out, escaping what is not safe in a path or query
 * value, but for the characters in keep (may be NULL). Returns 0 or -1 when
 * out is too small. */
static int docker_url_escape(char *out, size_t len, const char *s, const char *keep)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(out);

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        int safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_' || c == '.' || c == '~' || (c && keep && strchr(keep, c));
        if (safe) {
            if (n + 1 >= len)
                return -1;
            out[n++] = (char)c;
        } else {
            if (n + 3 >= len)
                return -1;
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    out[n] = '\0';
    return 0;
}

static int docker_url_add(char *out, size_t len, const char *s)
{
    size_t n = strlen(out), m = strlen(s);

    if (n + m >= len)
        return -1;
    memcpy(out + n, s, m + 1);
    return 0;
}

/* Starts a request on path (already escaped, versioned by the caller when
 * it should be). method: "GET", "POST", "DELETE". body: JSON or NULL. */
static int docker_request(docker_t *d, dkind_t kind, const char *method, const char *path,
                          const char *body, long timeout_ms, engine_cb cb, void *arg,
                          dreq_t **out)
{
    char url[4096];
    struct curl_slist *headers = NULL, *h;
    CURL *easy;
    dreq_t *r;
    int rc;

    if (out)
        *out = NULL;
    if (d->closing)
        return SKIFF_ECLOSED;
    if (snprintf(url, sizeof(url), "http://docker%s", path) >= (int)sizeof(url))
        return SKIFF_EINVAL;
    r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->d = d;
    r->kind = kind;
    r->cb = cb;
    r->arg = arg;
    r->body_max = DOCKER_BODY_MAX;
    engine_lines_init(&r->lines, kind == D_EVENTS ? DOCKER_EVENT_LINE_MAX
                                                  : DOCKER_PROGRESS_LINE_MAX);
    engine_demux_init(&r->demux);
    easy = curl_easy_init();
    if (!easy) {
        dreq_free(r);
        return -ENOMEM;
    }
    curl_easy_setopt(easy, CURLOPT_UNIX_SOCKET_PATH, d->socket_path);
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, DOCKER_CONNECT_TIMEOUT_MS);
    if (timeout_ms > 0)
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    if (kind == D_PULL) {
        /* A pull may take long, but not in silence: the engine sends
         * progress every few seconds. */
        curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, 600L);
    }
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(easy, CURLOPT_POST, 1L);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, body ? (long)strlen(body) : 0L);
        curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, body ? body : "");
        h = curl_slist_append(headers, "Content-Type: application/json");
        if (!h)
            goto out_nomem;
        headers = h;
        /* No "Expect: 100-continue" round trip. */
        h = curl_slist_append(headers, "Expect:");
        if (!h)
            goto out_nomem;
        headers = h;
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
    }
    rc = httpc_add(d->http, easy, headers, &docker_http_ops, r, &r->xfer);
    if (rc) {
        dreq_free(r);
        return rc;
    }
    r->next = d->reqs;
    if (d->reqs)
        d->reqs->prev = r;
    d->reqs = r;
    if (out)
        *out = r;
    return 0;
out_nomem:
    curl_slist_free_all(headers);
    curl_easy_cleanup(easy);
    dreq_free(r);
    return -ENOMEM;
}

/* A versioned path: "/v1.41" + rest. */
static int docker_path(docker_t *d, char *out, size_t len, const char *rest)
{
    int n = snprintf(out, len, "/v%s%s", d->api, rest);

    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* ------------------------------------------------------------ answers */

static int dreq_streaming(const dreq_t *r)
{
    return (r->kind == D_EVENTS || r->kind == D_LOGS || r->kind == D_PULL ||
            r->kind == D_STATS) &&
           r->http_status >= 200 && r->http_status < 300;
}

static int docker_on_header(void *arg, const char *line, size_t len)
{
    dreq_t *r = arg;

    if (len > 5 && strncmp(line, "HTTP/", 5) == 0) {
        const char *sp = memchr(line, ' ', len);
        if (sp && (size_t)(sp - line) + 4 <= len)
            r->http_status = strtol(sp + 1, NULL, 10);
        return 0;
    }
    if (len > 12 && strncasecmp(line, "Api-Version:", 12) == 0) {
        size_t i = 12, n = 0;
        while (i < len && line[i] == ' ')
            i++;
        while (i < len && n + 1 < sizeof(r->api_version) &&
               ((line[i] >= '0' && line[i] <= '9') || line[i] == '.'))
            r->api_version[n++] = line[i++];
        r->api_version[n] = '\0';
        return 0;
    }
    /* The end of the headers: an event stream is up. */
    if ((len == 2 && line[0] == '\r') || (len == 1 && line[0] == '\n')) {
        docker_t *d = r->d;
        if (r->kind == D_EVENTS && r->http_status == 200 && !d->ev.up) {
            d->ev.up = 1;
            d->ev.backoff_ms = DOCKER_EVENTS_BACKOFF_MIN_MS;
            log_debug("engine: event stream established");
            r->busy++;
            if (d->ev.ops->on_state)
                d->ev.ops->on_state(d->ev.arg, 1, "");
            r->busy--;
            if (r->released) {
                dreq_free(r);
                return -1;
            }
        }
    }
    return 0;
}

static void docker_on_event_line(void *arg, const char *line, size_t len)
{
    dreq_t *r = arg;
    docker_t *d = r->d;
    engine_event_t ev;

    if (r->released || len == 0)
        return;
    if (engine_json_parse_event(line, len, &ev) != 0) {
        log_warn("engine: an event that is not JSON was ignored");
        return;
    }
    if (ev.kind == ENGINE_EVENT_OTHER)
        return;
    if (d->ev.ops->on_event)
        d->ev.ops->on_event(d->ev.arg, &ev);
}

static void docker_on_progress_line(void *arg, const char *line, size_t len)
{
    dreq_t *r = arg;
    char err[ENGINE_MESSAGE_MAX];

    if (len == 0 || r->stream_err[0])
        return;
    if (engine_json_progress_error(line, len, err, sizeof(err)) == 1)
        snprintf(r->stream_err, sizeof(r->stream_err), "%s", err);
}

static void docker_on_stats_line(void *arg, const char *line, size_t len)
{
    dreq_t *r = arg;
    engine_stats_t s;

    if (r->released || len == 0)
        return;
    if (engine_json_parse_stats(line, len, &s) < 0) {
        log_debug("engine: a stats sample that is not what it should be was ignored");
        return;
    }
    if (r->stats_ops->on_stats)
        r->stats_ops->on_stats(r->arg, &s);
}

static void docker_on_log_data(void *arg, int is_stderr, const char *data, size_t len)
{
    dreq_t *r = arg;

    if (r->released || len == 0)
        return;
    if (r->logs_ops->on_data)
        r->logs_ops->on_data(r->arg, is_stderr, data, len);
}

static int docker_on_body(void *arg, const char *data, size_t len)
{
    dreq_t *r = arg;
    int rc = 0;

    if (!dreq_streaming(r)) {
        size_t max = r->http_status >= 300 ? DOCKER_ERROR_BODY_MAX : r->body_max;
        if (buf_append(&r->body, data, len, max) != 0) {
            r->overflow = 1;
            return -1;
        }
        return 0;
    }
    r->busy++;
    switch (r->kind) {
    case D_EVENTS:
        rc = engine_lines_feed(&r->lines, data, len, docker_on_event_line, r);
        break;
    case D_PULL:
        rc = engine_lines_feed(&r->lines, data, len, docker_on_progress_line, r);
        break;
    case D_STATS:
        rc = engine_lines_feed(&r->lines, data, len, docker_on_stats_line, r);
        break;
    case D_LOGS:
        rc = engine_demux_feed(&r->demux, data, len, docker_on_log_data, r);
        if (rc)
            snprintf(r->stream_err, sizeof(r->stream_err), "the log stream is not multiplexed");
        break;
    default:
        break;
    }
    r->busy--;
    if (r->released) {
        dreq_free(r);
        return -1;
    }
    return rc ? -1 : 0;
}

static int docker_status_of(int http_status, dkind_t kind)
{
    if (http_status == 404)
        return SKIFF_ENOTFOUND;
    if (http_status == 409 && kind == D_CREATE)
        return SKIFF_EEXISTS;
    return SKIFF_EENGINE;
}

/* The parsed answer of a finished, successful request. */
static void docker_finish_ok(dreq_t *r, engine_result_t *res)
{
    docker_t *d = r->d;
    const char *body = r->body.pos;
    size_t len = buf_len(&r->body);
    engine_info_t info;
    engine_container_t *c = NULL;
    char gw[64], bridge_if[64], subnet[64], id[ENGINE_ID_MAX];
    int rc;

    switch (r->kind) {
    case D_PING: {
        int major = 0, minor = 0;
        if (sscanf(r->api_version, "%d.%d", &major, &minor) != 2) {
            major = DOCKER_API_MAX_MAJOR;
            minor = DOCKER_API_MAX_MINOR;
        }
        if (major != 1 || minor < DOCKER_API_MIN_MINOR) {
            res->status = SKIFF_EENGINE;
            snprintf(r->stream_err, sizeof(r->stream_err),
                     "the engine speaks API %s; skiff needs 1.%d or later", r->api_version,
                     DOCKER_API_MIN_MINOR);
            res->message = r->stream_err;
            break;
        }
        if (minor > DOCKER_API_MAX_MINOR)
            minor = DOCKER_API_MAX_MINOR;
        snprintf(d->api, sizeof(d->api), "%d.%d", major, minor);
        res->text = d->api;
        r->cb(r->arg, res);
        return;
    }
    case D_INFO:
        if (engine_json_parse_info(body, len, &info) != 0) {
            res->status = SKIFF_EENGINE;
            res->message = "the engine's /info answer is not what it should be";
            break;
        }
        res->info = &info;
        r->cb(r->arg, res);
        return;
    case D_GATEWAY:
        if (engine_json_parse_network(body, len, gw, sizeof(gw), bridge_if, sizeof(bridge_if),
                                      subnet, sizeof(subnet)) != 0) {
            res->status = SKIFF_EENGINE;
            res->message = "the engine's bridge network answer is not what it should be";
            break;
        }
        if (!gw[0] && bridge_if[0]) {
            /* The engine leaves the gateway out of the default bridge's
             * IPAM config; the host's address on the bridge is it. */
            uv_interface_address_t *ifs;
            int n;
            if (uv_interface_addresses(&ifs, &n) == 0) {
                for (int i = 0; i < n; i++) {
                    if (strcmp(ifs[i].name, bridge_if) == 0 &&
                        ifs[i].address.address4.sin_family == AF_INET) {
                        uv_ip4_name(&ifs[i].address.address4, gw, sizeof(gw));
                        break;
                    }
                }
                uv_free_interface_addresses(ifs, n);
            }
        }
        if (!gw[0] && subnet[0]) {
            /* Last resort: the first address of the subnet, as the engine
             * gives it by default. */
            unsigned a, b, c4, d4;
            if (sscanf(subnet, "%u.%u.%u.%u", &a, &b, &c4, &d4) == 4 && a < 256 && b < 256 &&
                c4 < 256 && d4 < 255)
                snprintf(gw, sizeof(gw), "%u.%u.%u.%u", a, b, c4, d4 + 1);
        }
        if (!gw[0]) {
            res->status = SKIFF_EENGINE;
            res->message = "the engine's bridge network has no gateway address";
            break;
        }
        res->text = gw;
        r->cb(r->arg, res);
        return;
    case D_PULL:
        if (r->stream_err[0]) {
            res->status = SKIFF_EENGINE;
            res->message = r->stream_err;
        }
        break;
    case D_CREATE:
        if (engine_json_parse_created(body, len, id, sizeof(id)) != 0) {
            res->status = SKIFF_EENGINE;
            res->message = "the engine's create answer has no container id";
            break;
        }
        res->id = id;
        r->cb(r->arg, res);
        return;
    case D_INSPECT:
        c = malloc(sizeof(*c));
        if (!c) {
            res->status = -ENOMEM;
            res->message = "out of memory";
            break;
        }
        if (engine_json_parse_inspect(body, len, c) != 0) {
            res->status = SKIFF_EENGINE;
            res->message = "the engine's inspect answer is not what it should be";
            break;
        }
        res->container = c;
        r->cb(r->arg, res);
        free(c);
        return;
    case D_LIST: {
        size_t n = 0;
        rc = engine_json_parse_list(body, len, &c, &n);
        if (rc) {
            res->status = rc == -ENOMEM ? rc : SKIFF_EENGINE;
            res->message = rc == -ENOMEM ? "out of memory"
                                         : "the engine's container list is not what it should be";
            break;
        }
        res->containers = c;
        res->n_containers = n;
        r->cb(r->arg, res);
        free(c);
        return;
    }
    default:
        break;
    }
    free(c);
    r->cb(r->arg, res);
}

static void docker_events_schedule(docker_t *d);

/* Counts an answer (code 0: none came). */
static void docker_count(docker_t *d, dkind_t kind, int code)
{
    for (int i = 0; i < DOCKER_CODES; i++) {
        if (d->answers[kind][i].n == 0)
            d->answers[kind][i].code = code;
        if (d->answers[kind][i].code == code) {
            d->answers[kind][i].n++;
            return;
        }
    }
    /* more distinct codes than kept: the last slot takes the rest */
    d->answers[kind][DOCKER_CODES - 1].n++;
}

void docker_requests_each(engine_t *e, void (*fn)(void *arg, const char *op, int code,
                                                  uint64_t n), void *arg)
{
    docker_t *d = (docker_t *)e;

    for (int k = 0; k < D_KINDS; k++)
        for (int i = 0; i < DOCKER_CODES && d->answers[k][i].n; i++)
            fn(arg, docker_kind_names[k], d->answers[k][i].code, d->answers[k][i].n);
}

static void docker_on_done(void *arg, CURLcode result, long http_status, const char *err)
{
    dreq_t *r = arg;
    docker_t *d = r->d;
    engine_result_t res = { 0 };
    char msg[ENGINE_MESSAGE_MAX];

    r->xfer = NULL; /* httpc has let go of it */
    dreq_unlink(r);
    docker_count(d, r->kind, result == CURLE_OK ? (int)http_status : 0);
    res.http_status = (int)http_status;
    res.message = "";
    if (result != CURLE_OK) {
        if (r->overflow) {
            res.status = -ENOBUFS;
            snprintf(msg, sizeof(msg), "the engine's answer is larger than %zu bytes",
                     r->body_max);
        } else if (r->kind == D_LOGS && r->stream_err[0]) {
            res.status = SKIFF_EENGINE;
            snprintf(msg, sizeof(msg), "%s", r->stream_err);
        } else {
            res.status = result == CURLE_OPERATION_TIMEDOUT ? SKIFF_ETIMEDOUT : SKIFF_EUNAVAILABLE;
            snprintf(msg, sizeof(msg), "engine: %s", err);
        }
        res.message = msg;
    } else if (http_status >= 400 || http_status < 200) {
        res.status = docker_status_of((int)http_status, r->kind);
        engine_json_error_message(r->body.pos, buf_len(&r->body), (int)http_status, msg,
                                  sizeof(msg));
        res.message = msg;
    }

    switch (r->kind) {
    case D_EVENTS: {
        int was_up = d->ev.up;
        d->ev.up = 0;
        d->ev.req = NULL;
        if (result == CURLE_OK && res.status == 0)
            snprintf(msg, sizeof(msg), "the engine ended the event stream");
        else if (!res.message[0])
            snprintf(msg, sizeof(msg), "HTTP %ld", http_status);
        else if (res.message != msg)
            snprintf(msg, sizeof(msg), "%s", res.message);
        if (was_up && d->ev.ops->on_state)
            d->ev.ops->on_state(d->ev.arg, 0, msg);
        else if (!was_up)
            log_debug("engine: event stream: %s", msg);
        dreq_free(r);
        if (!d->closing && d->ev.active)
            docker_events_schedule(d);
        return;
    }
    case D_LOGS:
        r->released = 1; /* a logs_close from on_end is a no-op */
        if (r->logs_ops->on_end)
            r->logs_ops->on_end(r->arg, res.status, res.message);
        dreq_free(r);
        return;
    case D_STATS:
        r->released = 1;
        if (r->stats_ops->on_end)
            r->stats_ops->on_end(r->arg, res.status, res.message);
        dreq_free(r);
        return;
    default:
        break;
    }
    /* Starting a running container or stopping a stopped one. */
    if (res.status == SKIFF_EENGINE && http_status == 304)
        res.status = 0, res.message = "";
    if (res.status == 0 && (http_status == 304 || (http_status >= 200 && http_status < 300)))
        docker_finish_ok(r, &res);
    else
        r->cb(r->arg, &res);
    dreq_free(r);
}

static const httpc_ops_t docker_http_ops = {
    .on_header = docker_on_header,
    .on_body = docker_on_body,
    .on_done = docker_on_done,
};

/* ------------------------------------------------------------ engine_ops */

static int docker_ping(engine_t *e, engine_cb cb, void *arg)
{
    return docker_request((docker_t *)e, D_PING, "GET", "/_ping", NULL, DOCKER_TIMEOUT_MS, cb,
                          arg, NULL);
}

static int docker_simple(engine_t *e, dkind_t kind, const char *method, const char *rest,
                         const char *body, long timeout_ms, engine_cb cb, void *arg)
{
    docker_t *d = (docker_t *)e;
    char path[4096];

    if (docker_path(d, path, sizeof(path), rest))
        return SKIFF_EINVAL;
    return docker_request(d, kind, method, path, body, timeout_ms, cb, arg, NULL);
}

static int docker_info(engine_t *e, engine_cb cb, void *arg)
{
    return docker_simple(e, D_INFO, "GET", "/info", NULL, DOCKER_TIMEOUT_MS, cb, arg);
}

static int docker_gateway(engine_t *e, engine_cb cb, void *arg)
{
    return docker_simple(e, D_GATEWAY, "GET", "/networks/bridge", NULL, DOCKER_TIMEOUT_MS, cb,
                         arg);
}

/* "/containers/<id><suffix>" with id escaped. */
static int docker_container_path(char *out, size_t len, const char *id, const char *suffix)
{
    out[0] = '\0';
    if (!id || !*id || docker_url_add(out, len, "/containers/") ||
        docker_url_escape(out, len, id, NULL) || docker_url_add(out, len, suffix))
        return SKIFF_EINVAL;
    return 0;
}

static int docker_image_inspect(engine_t *e, const char *image, engine_cb cb, void *arg)
{
    char rest[1024] = "/images/";

    /* '/', and ':' of a tag or a registry port, '@' of a digest: the engine
     * takes them as they are in the image's name. */
    if (!image || !*image || docker_url_escape(rest, sizeof(rest), image, "/:@") ||
        docker_url_add(rest, sizeof(rest), "/json"))
        return SKIFF_EINVAL;
    return docker_simple(e, D_IMAGE_INSPECT, "GET", rest, NULL, DOCKER_TIMEOUT_MS, cb, arg);
}

static int docker_image_pull(engine_t *e, const char *image, engine_cb cb, void *arg)
{
    char name[512], tag[256], rest[2048] = "/images/create?fromImage=";

    if (!image || engine_image_ref_split(image, name, sizeof(name), tag, sizeof(tag)))
        return SKIFF_EINVAL;
    if (docker_url_escape(rest, sizeof(rest), name, NULL) ||
        docker_url_add(rest, sizeof(rest), "&tag=") ||
        docker_url_escape(rest, sizeof(rest), tag, NULL))
        return SKIFF_EINVAL;
    return docker_simple(e, D_PULL, "POST", rest, NULL, 0, cb, arg);
}

static int docker_create_container(engine_t *e, const engine_create_t *req, engine_cb cb,
                                   void *arg)
{
    char rest[1024] = "/containers/create?name=";
    char *body;
    int rc;

    if (!req->name || !*req->name || docker_url_escape(rest, sizeof(rest), req->name, NULL))
        return SKIFF_EINVAL;
    body = engine_json_create_body(req);
    if (!body)
        return SKIFF_EINVAL;
    rc = docker_simple(e, D_CREATE, "POST", rest, body, DOCKER_TIMEOUT_MS, cb, arg);
    free(body);
    return rc;
}

static int docker_start(engine_t *e, const char *id, engine_cb cb, void *arg)
{
    char rest[512];

    if (docker_container_path(rest, sizeof(rest), id, "/start"))
        return SKIFF_EINVAL;
    return docker_simple(e, D_START, "POST", rest, NULL, DOCKER_TIMEOUT_MS, cb, arg);
}

static int docker_stop(engine_t *e, const char *id, int64_t grace_ms, engine_cb cb, void *arg)
{
    char rest[512], suffix[64];
    int64_t secs = grace_ms > 0 ? (grace_ms + 999) / 1000 : 0;

    if (secs > 24 * 3600)
        secs = 24 * 3600;
    snprintf(suffix, sizeof(suffix), "/stop?t=%lld", (long long)secs);
    if (docker_container_path(rest, sizeof(rest), id, suffix))
        return SKIFF_EINVAL;
    return docker_simple(e, D_STOP, "POST", rest, NULL, DOCKER_TIMEOUT_MS + (long)secs * 1000,
                         cb, arg);
}

static int docker_kill(engine_t *e, const char *id, const char *signal, engine_cb cb, void *arg)
{
    char rest[512], suffix[64] = "/kill?signal=";

    if (!signal || docker_url_escape(suffix, sizeof(suffix), signal, NULL) ||
        docker_container_path(rest, sizeof(rest), id, suffix))
        return SKIFF_EINVAL;
    return docker_simple(e, D_KILL, "POST", rest, NULL, DOCKER_TIMEOUT_MS, cb, arg);
}

static int docker_remove(engine_t *e, const char *id, engine_cb cb, void *arg)
{
    char rest[512];

    if (docker_container_path(rest, sizeof(rest), id, "?force=1&v=1"))
        return SKIFF_EINVAL;
    return docker_simple(e, D_REMOVE, "DELETE", rest, NULL, DOCKER_TIMEOUT_MS, cb, arg);
}

static int docker_inspect(engine_t *e, const char *id, engine_cb cb, void *arg)
{
    char rest[512];

    if (docker_container_path(rest, sizeof(rest), id, "/json"))
        return SKIFF_EINVAL;
    return docker_simple(e, D_INSPECT, "GET", rest, NULL, DOCKER_TIMEOUT_MS, cb, arg);
}

static char *docker_filters(const char *const *labels, size_t n, int events)
{
    static const char *const kinds[] = { "start", "die", "oom", "health_status", "destroy" };
    char *json = engine_json_filters(labels, n, events ? kinds : NULL,
                                     events ? sizeof(kinds) / sizeof(kinds[0]) : 0);
    char *out;
    size_t len;

    if (!json)
        return NULL;
    len = strlen(json) * 3 + 1;
    out = malloc(len);
    if (out) {
        out[0] = '\0';
        docker_url_escape(out, len, json, NULL);
    }
    free(json);
    return out;
}

static int docker_list(engine_t *e, const char *const *labels, size_t n, engine_cb cb, void *arg)
{
    char *filters = docker_filters(labels, n, 0);
    char *rest;
    int rc;

    if (!filters)
        return -ENOMEM;
    rest = malloc(strlen(filters) + 64);
    if (!rest) {
        free(filters);
        return -ENOMEM;
    }
    sprintf(rest, "/containers/json?all=1&filters=%s", filters);
    rc = docker_simple(e, D_LIST, "GET", rest, NULL, DOCKER_TIMEOUT_MS, cb, arg);
    free(rest);
    free(filters);
    return rc;
}

/* ------------------------------------------------------------ events */

static void docker_events_connect(docker_t *d)
{
    char path[4096];
    int rc;

    if (!d->ev.active || d->closing || d->ev.req)
        return;
    if (snprintf(path, sizeof(path), "/v%s/events?filters=%s", d->api, d->ev.filters) >=
        (int)sizeof(path)) {
        log_error("engine: the event filters are too long");
        return;
    }
    rc = docker_request(d, D_EVENTS, "GET", path, NULL, 0, NULL, NULL, &d->ev.req);
    if (rc) {
        log_warn("engine: cannot start the event stream: %s", skiff_strerror(rc));
        docker_events_schedule(d);
    }
}

static void docker_on_events_timer(uv_timer_t *t)
{
    docker_events_connect(t->data);
}

static void docker_events_schedule(docker_t *d)
{
    uint64_t wait = d->ev.backoff_ms;

    d->ev.backoff_ms = wait * 2 > DOCKER_EVENTS_BACKOFF_MAX_MS ? DOCKER_EVENTS_BACKOFF_MAX_MS
                                                               : wait * 2;
    uv_timer_start(&d->ev.timer, docker_on_events_timer, wait, 0);
}

static void docker_events_stop(engine_t *e)
{
    docker_t *d = (docker_t *)e;

    d->ev.active = 0;
    d->ev.up = 0;
    uv_timer_stop(&d->ev.timer);
    if (d->ev.req)
        dreq_release(d->ev.req);
    d->ev.req = NULL;
    free(d->ev.filters);
    d->ev.filters = NULL;
}

static int docker_events_start(engine_t *e, const char *const *labels, size_t n,
                               const engine_events_ops_t *ops, void *arg)
{
    docker_t *d = (docker_t *)e;
    char *filters;

    if (d->closing)
        return SKIFF_ECLOSED;
    filters = docker_filters(labels, n, 1);
    if (!filters)
        return -ENOMEM;
    docker_events_stop(e);
    d->ev.filters = filters;
    d->ev.ops = ops;
    d->ev.arg = arg;
    d->ev.active = 1;
    d->ev.backoff_ms = DOCKER_EVENTS_BACKOFF_MIN_MS;
    docker_events_connect(d);
    return 0;
}

/* ------------------------------------------------------------ logs */

static int docker_logs_open(engine_t *e, const char *id, int follow, uint32_t tail,
                            int64_t since_ms, const engine_logs_ops_t *ops, void *arg,
                            engine_logs_t **out)
{
    docker_t *d = (docker_t *)e;
    char rest[512], suffix[160], path[640], since[48] = "", count[32] = "all";
    dreq_t *r;
    int rc;

    *out = NULL;
    if (tail)
        snprintf(count, sizeof(count), "%u", tail);
    if (since_ms > 0)
        snprintf(since, sizeof(since), "&since=%lld.%03lld", (long long)(since_ms / 1000),
                 (long long)(since_ms % 1000));
    snprintf(suffix, sizeof(suffix), "/logs?stdout=1&stderr=1&follow=%d&tail=%s%s",
             follow ? 1 : 0, count, since);
    if (docker_container_path(rest, sizeof(rest), id, suffix) ||
        docker_path(d, path, sizeof(path), rest))
        return SKIFF_EINVAL;
    rc = docker_request(d, D_LOGS, "GET", path, NULL, 0, NULL, arg, &r);
    if (rc)
        return rc;
    r->logs_ops = ops;
    *out = r;
    return 0;
}

static void docker_logs_close(engine_t *e, engine_logs_t *logs)
{
    if (logs)
        dreq_release(logs);
}

/* ------------------------------------------------------------ stats */

static int docker_stats_open(engine_t *e, const char *id, const engine_stats_ops_t *ops,
                             void *arg, engine_logs_t **out)
{
    docker_t *d = (docker_t *)e;
    char rest[512], path[640];
    dreq_t *r;
    int rc;

    *out = NULL;
    if (docker_container_path(rest, sizeof(rest), id, "/stats?stream=1") ||
        docker_path(d, path, sizeof(path), rest))
        return SKIFF_EINVAL;
    rc = docker_request(d, D_STATS, "GET", path, NULL, 0, NULL, arg, &r);
    if (rc)
        return rc;
    r->stats_ops = ops;
    *out = r;
    return 0;
}

/* ------------------------------------------------------------ close */

static void docker_on_closed(uv_handle_t *h)
{
    docker_t *d = h->data;
    void (*done)(void *) = d->close_done;
    void *arg = d->close_arg;

    free(d);
    if (done)
        done(arg);
}

static void docker_close(engine_t *e, void (*done)(void *arg), void *arg)
{
    docker_t *d = (docker_t *)e;

    if (d->closing)
        return;
    docker_events_stop(e);
    d->closing = 1;
    d->close_done = done;
    d->close_arg = arg;
    while (d->reqs)
        dreq_release(d->reqs);
    uv_close((uv_handle_t *)&d->ev.timer, docker_on_closed);
}

static const engine_ops_t docker_ops = {
    .ping = docker_ping,
    .info = docker_info,
    .gateway = docker_gateway,
    .image_inspect = docker_image_inspect,
    .image_pull = docker_image_pull,
    .create = docker_create_container,
    .start = docker_start,
    .stop = docker_stop,
    .kill = docker_kill,
    .remove = docker_remove,
    .inspect = docker_inspect,
    .list = docker_list,
    .events_start = docker_events_start,
    .events_stop = docker_events_stop,
    .logs_open = docker_logs_open,
    .logs_close = docker_logs_close,
    .stats_open = docker_stats_open,
    .stats_close = docker_logs_close, /* a stream, ended the same way */
    .close = docker_close,
};

engine_t *docker_create(uv_loop_t *loop, httpc_t *http, const char *socket_path)
{
    docker_t *d;

    if (!socket_path || strlen(socket_path) >= sizeof(d->socket_path))
        return NULL;
    d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->base.ops = &docker_ops;
    d->loop = loop;
    d->http = http;
    strcpy(d->socket_path, socket_path);
    snprintf(d->api, sizeof(d->api), "%d.%d", DOCKER_API_MAX_MAJOR, DOCKER_API_MAX_MINOR);
    uv_timer_init(loop, &d->ev.timer);
    d->ev.timer.data = d;
    return &d->base;
}

int docker_host_parse(const char *host, char *path, size_t len, char *err, size_t errlen)
{
    const char *p;

    if (!host || strncmp(host, "unix://", 7) != 0) {
        snprintf(err, errlen, "%s: only unix:///PATH is supported", host ? host : "(none)");
        return SKIFF_EINVAL;
    }
    p = host + 7;
    if (*p != '/') {
        snprintf(err, errlen, "%s: the socket path must be absolute", host);
        return SKIFF_EINVAL;
    }
    if (strlen(p) >= len || strlen(p) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        snprintf(err, errlen, "%s: the socket path is too long", host);
        return SKIFF_EINVAL;
    }
    strcpy(path, p);
    return 0;
}
