/* httpapi: the controller's HTTP JSON API under /api/v1/ and the dashboard
 * at / (--http-listen, on net/httpd). It is a translator, not a second
 * controller: every request that reads or acts becomes the Envelope the
 * CLI would send, handled by api.c through an in-process peer (peer.local),
 * so that an action is validated and committed to the store by the same
 * code as over the wire, and its answer leaves only after that commit. The
 * answer is turned into JSON by pbjson, the same JSON as the CLI's
 * `--format json`.
 *
 * /api/v1/services/{id}/logs is `service logs` as Server-Sent Events, with
 * logs.c's bound. /api/v1/events is Server-Sent Events following the events ring with the
 * same bound as a `skiff events` reader: a client that does not read lags
 * behind the ring (its unsent output stays under HTTPAPI_SSE_BUDGET) and is
 * told how many events it lost (an "event: dropped" message).
 *
 * Every /api/ request needs the admin token as "Authorization: Bearer"
 * (curl, scripts) or a dashboard session's cookie (session.c): the page's
 * login form POSTs the token to /api/v1/login once, which answers with an
 * HttpOnly, SameSite=Strict cookie and a CSRF token that the page sends as
 * X-CSRF-Token with every action (every method but GET and HEAD); an
 * action with the cookie and without that token is refused (403) before it
 * is looked at. The dashboard's static files load without either.
 */
#include "ctl.h"
#include "dash.h"
#include "duration.h"
#include "errors.h"
#include "httpd.h"
#include "load.h"
#include "log.h"
#include "pbjson.h"
#include "pbutil.h"
#include "session.h"
#include "wire.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#define HTTPAPI_SSE_BUDGET (64u << 10)
#define HTTPAPI_SSE_MAX_PENDING (HTTPAPI_SSE_BUDGET + (256u << 10)) /* one event over */
#define HTTPAPI_MAX_SSE 256
#define HTTPAPI_MAX_BODY (1u << 20)
/* A service's figures for the dashboard's charts: one sample every
 * HTTPAPI_SAMPLE_MS, the last 15 minutes of them. */
#define HTTPAPI_SAMPLE_MS 5000
#define HTTPAPI_SAMPLES (15 * 60 * 1000 / HTTPAPI_SAMPLE_MS)

typedef struct sample {
    int64_t time_ms;
    double connections_per_second;
    double cpu_percent;           /* the mean of the running tasks */
    uint64_t active_connections;
    uint64_t memory_bytes;        /* the sum of the running tasks */
    uint32_t running;
} sample_t;

/* A ring of samples of one service, by its id. */
typedef struct series {
    char id[MODEL_ID_LEN + 1];
    sample_t ring[HTTPAPI_SAMPLES];
    size_t next, n;
    unsigned gen;
    UT_hash_handle hh;
} series_t;

typedef struct sse {
    ctl_t *ctl;
    httpd_stream_t *stream;  /* NULL once over */
    events_reader_t *reader; /* NULL once the ring ended it */
    int busy, gone;
    struct sse *prev, *next;
} sse_t;

typedef struct httpapi {
    httpd_t *http;
    sse_t *sses;
    unsigned n_sse;
    series_t *series;
    unsigned gen;
    uv_timer_t sampler;
    sessions_t sessions;
    char sessions_token[CTL_TOKEN_LEN + 1]; /* the admin token they were opened with */
} httpapi_t;

/* A request handed to api.c. The peer comes first: peer_unref frees it. */
typedef struct hcall {
    peer_t peer;
    httpd_req_t *req;  /* NULL once answered or gone */
    int msg_case;      /* what was asked */
    httpd_stream_t *stream; /* logs: open from the first LogsData on */
    int stream_over;
    int logs_ended;         /* logs: logs.c sent LogsClose and forgets the stream */
} hcall_t;

/* ------------------------------------------------------------ answers */

static void httpapi_json(httpd_req_t *r, int status, json_t *j)
{
    char *s;

    if (!j) {
        httpd_respond_error(r, 500, "out of memory");
        return;
    }
    s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (!s) {
        httpd_respond_error(r, 500, "out of memory");
        return;
    }
    httpd_respond(r, status, "application/json", s, strlen(s));
    free(s);
}

static json_t *httpapi_array(void *const *msgs, size_t n)
{
    json_t *arr = json_array();

    for (size_t i = 0; arr && i < n; i++) {
        if (json_array_append_new(arr, pbjson_from_message(msgs[i]))) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static int httpapi_status_of(ErrorCode code)
{
    switch (code) {
    case ERR_INVALID: return 400;
    case ERR_NOT_FOUND: return 404;
    case ERR_EXISTS: return 409;
    case ERR_CONFLICT: return 409;
    case ERR_AUTH: return 401;
    case ERR_LIMIT: return 429;
    case ERR_UNAVAILABLE: return 503;
    default: return 500;
    }
}

/* The reply of api.c to an HTTP request, as JSON. */
static void httpapi_answer(httpd_req_t *r, const Envelope *env)
{
    char num[32];

    switch (env->msg_case) {
    case MSG_ERROR:
        httpd_respond_error(r, httpapi_status_of(env->error->code), "%s", env->error->message);
        return;
    case MSG_SERVICE_REPLY:
        httpapi_json(r, 200, pbjson_from_message(&env->service_reply->service->base));
        return;
    case MSG_SERVICE_LIST_REPLY:
        httpapi_json(r, 200, httpapi_array((void *const *)env->service_list_reply->services,
                                           env->service_list_reply->n_services));
        return;
    case MSG_NODE_REPLY:
        httpapi_json(r, 200, pbjson_from_message(&env->node_reply->node->base));
        return;
    case MSG_NODE_LIST_REPLY:
        httpapi_json(r, 200, httpapi_array((void *const *)env->node_list_reply->nodes,
                                           env->node_list_reply->n_nodes));
        return;
    case MSG_TASK_LIST_REPLY:
        /* one page, as over the wire; the next one at ?offset= */
        snprintf(num, sizeof(num), "%u", env->task_list_reply->total);
        httpd_add_header(r, "X-Total-Count", num);
        if (env->task_list_reply->next_offset) {
            snprintf(num, sizeof(num), "%u", env->task_list_reply->next_offset);
            httpd_add_header(r, "X-Next-Offset", num);
        }
        httpapi_json(r, 200, httpapi_array((void *const *)env->task_list_reply->tasks,
                                           env->task_list_reply->n_tasks));
        return;
    case MSG_SERVICE_STATS_REPLY:
        httpapi_json(r, 200, httpapi_array((void *const *)env->service_stats_reply->tasks,
                                           env->service_stats_reply->n_tasks));
        return;
    case MSG_OK:
        httpapi_json(r, 200, json_pack("{s:b}", "ok", 1));
        return;
    default:
        httpd_respond_error(r, 500, "unexpected %s", wire_msg_name(env->msg_case));
        return;
    }
}

static void hcall_stream_closed(void *arg)
{
    hcall_t *c = arg;

    c->stream = NULL;
    c->stream_over = 1;
    if (!c->logs_ended) /* the client went first: the agents stop sending */
        logs_peer_gone(c->peer.ctl, &c->peer);
    peer_unref(&c->peer);
}

/* `service logs` as Server-Sent Events: "event: log" with the LogsData's
 * JSON for each piece, "event: end" with why it ended, if it did early. */
static void hcall_logs(hcall_t *c, const Envelope *env)
{
    char *data, *msg;
    json_t *j;
    size_t len;

    if (env->msg_case == MSG_LOGS_CLOSE)
        c->logs_ended = 1; /* logs.c frees its stream after this call */
    if (!c->stream && !c->stream_over) {
        if (env->msg_case == MSG_ERROR) {
            httpapi_answer(c->req, env);
            c->req = NULL;
            return;
        }
        c->peer.refs++; /* the stream's, dropped at hcall_stream_closed */
        c->stream = httpd_stream_open(c->req, 200, "text/event-stream",
                                      c->peer.ctl->cfg.max_pending, hcall_stream_closed, c);
        if (!c->stream) {
            c->peer.refs--;
            c->req = NULL;
            return;
        }
    }
    if (!c->stream)
        return;
    if (env->msg_case == MSG_LOGS_DATA)
        j = pbjson_from_message(&env->logs_data->base);
    else if (env->msg_case == MSG_LOGS_CLOSE)
        j = json_pack("{s:s}", "message", env->logs_close->message);
    else
        return;
    data = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    len = data ? strlen(data) + 32 : 0;
    msg = data ? malloc(len) : NULL;
    if (msg) {
        len = (size_t)snprintf(msg, len, "event: %s\ndata: %s\n\n",
                               env->msg_case == MSG_LOGS_DATA ? "log" : "end", data);
        httpd_stream_write(c->stream, msg, len); /* over the bound: dropped (logs.c counts) */
    }
    free(msg);
    free(data);
    if (env->msg_case == MSG_LOGS_CLOSE && c->stream)
        httpd_stream_end(c->stream);
}

static size_t hcall_pending(const peer_t *p)
{
    const hcall_t *c = (const hcall_t *)p;

    if (c->stream)
        return httpd_stream_pending(c->stream);
    return c->req ? 0 : SIZE_MAX;
}

/* peer.local: a frame for this request. */
static void hcall_on_frame(peer_t *p, const uint8_t *frame, size_t len)
{
    hcall_t *c = (hcall_t *)p;
    Envelope *env;

    if ((!c->req && !c->stream) || len < 4)
        return;
    env = skiff__v1__envelope__unpack(NULL, len - 4, frame + 4);
    if (env && c->msg_case == MSG_LOGS_REQUEST) {
        hcall_logs(c, env);
        wire_free(env);
        return;
    }
    if (!env) {
        httpd_respond_error(c->req, 500, "out of memory");
    } else {
        httpapi_answer(c->req, env);
        wire_free(env);
    }
    c->req = NULL; /* one answer */
}

static void hcall_on_done(void *arg)
{
    hcall_t *c = arg;

    c->req = NULL;
    if (c->msg_case == MSG_LOGS_REQUEST && !c->stream && !c->stream_over && !c->logs_ended)
        logs_peer_gone(c->peer.ctl, &c->peer); /* gone before the stream opened */
    peer_unref(&c->peer);
}

/* Hands env to api.c for r, as a client's request; the answer follows. */
static void httpapi_call(ctl_t *ctl, httpd_req_t *r, Envelope *env)
{
    hcall_t *c = calloc(1, sizeof(*c));

    if (!c) {
        httpd_respond_error(r, 500, "out of memory");
        return;
    }
    c->peer.ctl = ctl;
    c->peer.role = ROLE_CLIENT;
    c->peer.refs = 1; /* the request's, dropped at hcall_on_done */
    c->peer.local = hcall_on_frame;
    c->peer.local_pending = hcall_pending;
    snprintf(c->peer.addr, sizeof(c->peer.addr), "%s", httpd_peer(r));
    c->req = r;
    c->msg_case = (int)env->msg_case;
    if (httpd_on_done(r, hcall_on_done, c)) {
        free(c);
        httpd_respond_error(r, 500, "out of memory");
        return;
    }
    env->id = 1;
    ctl->counters.rpc_code = 0;
    api_handle(ctl, &c->peer, env);
}

/* ------------------------------------------------------------- bodies */

/* The request's body as a JSON object; answers 400 and returns NULL when it
 * is not one, or has a field not in allowed (NULL-terminated). */
static json_t *httpapi_body(httpd_req_t *r, const char *const *allowed)
{
    size_t len;
    const char *body = httpd_body(r, &len);
    json_error_t jerr;
    json_t *j, *v;
    const char *key;

    j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j) {
        httpd_respond_error(r, 400, "body: not valid JSON: %s (line %d, column %d)", jerr.text,
                            jerr.line, jerr.column);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        httpd_respond_error(r, 400, "body: a JSON object is expected");
        return NULL;
    }
    json_object_foreach(j, key, v) {
        int known = 0;
        for (size_t i = 0; allowed[i]; i++)
            known |= strcmp(key, allowed[i]) == 0;
        if (!known) {
            httpd_respond_error(r, 400, "%.100s: unknown field", key);
            json_decref(j);
            return NULL;
        }
    }
    return j;
}

/* ------------------------------------------------------------- routes */

static void route_nodes(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    Envelope env = PB_ENVELOPE_INIT;
    NodeList req = PB_NODE_LIST_INIT;

    env.msg_case = MSG_NODE_LIST;
    env.node_list = &req;
    httpapi_call(ctl, r, &env);
}

static void route_node(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    Envelope env = PB_ENVELOPE_INIT;
    NodeGet req = PB_NODE_GET_INIT;

    req.node = (char *)arg;
    env.msg_case = MSG_NODE_GET;
    env.node_get = &req;
    httpapi_call(ctl, r, &env);
}

static void route_node_availability(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    static const char *const allowed[] = { "availability", NULL };
    Envelope env = PB_ENVELOPE_INIT;
    NodeUpdate req = PB_NODE_UPDATE_INIT;
    json_t *j = httpapi_body(r, allowed);
    const char *a;

    if (!j)
        return;
    a = json_string_value(json_object_get(j, "availability"));
    if (!a || (strcmp(a, "drain") != 0 && strcmp(a, "active") != 0)) {
        json_decref(j);
        httpd_respond_error(r, 400, "availability: must be \"active\" or \"drain\"");
        return;
    }
    req.node = (char *)arg;
    req.availability = strcmp(a, "drain") == 0 ? AVAILABILITY_DRAIN : AVAILABILITY_ACTIVE;
    json_decref(j);
    env.msg_case = MSG_NODE_UPDATE;
    env.node_update = &req;
    httpapi_call(ctl, r, &env);
}

/* {"add": {"K": "V", ...}, "rm": ["K", ...]}: the node's labels set on the
 * controller (skiff node update --label-add/--label-rm); its availability
 * stays. */
static void route_node_labels(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    static const char *const allowed[] = { "add", "rm", NULL };
    Envelope env = PB_ENVELOPE_INIT;
    NodeUpdate req = PB_NODE_UPDATE_INIT;
    json_t *j = httpapi_body(r, allowed), *add, *rm, *v;
    const char *k;
    size_t i;

    if (!j)
        return;
    add = json_object_get(j, "add");
    rm = json_object_get(j, "rm");
    if (add && !json_is_object(add)) {
        httpd_respond_error(r, 400, "add: must be an object of labels (\"KEY\": \"VALUE\")");
        goto out_free;
    }
    if (rm && !json_is_array(rm)) {
        httpd_respond_error(r, 400, "rm: must be an array of label keys");
        goto out_free;
    }
    json_object_foreach(add, k, v) {
        Label *l;
        if (!json_is_string(v)) {
            httpd_respond_error(r, 400, "add.%.100s: must be a string", k);
            goto out_free;
        }
        if (!(l = PB_NEW(Label)) || pb_set_str(&l->key, k) ||
            pb_set_str(&l->value, json_string_value(v)) ||
            pb_push_msg(&req.n_label_add, (void ***)&req.label_add, l)) {
            pb_free(l);
            httpd_respond_error(r, 500, "out of memory");
            goto out_free;
        }
    }
    json_array_foreach(rm, i, v) {
        if (!json_is_string(v)) {
            httpd_respond_error(r, 400, "rm[%zu]: must be a string", i);
            goto out_free;
        }
        if (pb_push_str(&req.n_label_rm, &req.label_rm, json_string_value(v))) {
            httpd_respond_error(r, 500, "out of memory");
            goto out_free;
        }
    }
    req.node = (char *)arg;
    req.keep_availability = 1;
    env.msg_case = MSG_NODE_UPDATE;
    env.node_update = &req;
    httpapi_call(ctl, r, &env);

out_free:
    for (i = 0; i < req.n_label_add; i++)
        pb_free(req.label_add[i]);
    free(req.label_add);
    for (i = 0; i < req.n_label_rm; i++)
        free(req.label_rm[i]);
    free(req.label_rm);
    json_decref(j);
}

static void route_services(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    Envelope env = PB_ENVELOPE_INIT;
    ServiceList req = PB_SERVICE_LIST_INIT;
    const char *stack = httpd_query(r, "stack");

    req.stack = (char *)(stack ? stack : "");
    env.msg_case = MSG_SERVICE_LIST;
    env.service_list = &req;
    httpapi_call(ctl, r, &env);
}

static void route_service(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    Envelope env = PB_ENVELOPE_INIT;
    ServiceGet req = PB_SERVICE_GET_INIT;

    req.service = (char *)arg;
    env.msg_case = MSG_SERVICE_GET;
    env.service_get = &req;
    httpapi_call(ctl, r, &env);
}

/* ?offset=N; answers 400 and returns -1 when it is not a number. */
static int httpapi_offset(httpd_req_t *r, uint32_t *out)
{
    const char *s = httpd_query(r, "offset");
    char *end;
    unsigned long v;

    *out = 0;
    if (!s)
        return 0;
    v = strtoul(s, &end, 10);
    if (!*s || *end || *s == '-' || v > UINT32_MAX) {
        httpd_respond_error(r, 400, "offset: not a whole number: %.64s", s);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static void httpapi_tasks(ctl_t *ctl, httpd_req_t *r, const char *service)
{
    Envelope env = PB_ENVELOPE_INIT;
    TaskList req = PB_TASK_LIST_INIT;
    const char *node = httpd_query(r, "node"), *all = httpd_query(r, "all");

    if (httpapi_offset(r, &req.offset))
        return;
    req.service = (char *)service;
    req.node = (char *)(node ? node : "");
    req.all = all && strcmp(all, "0") != 0 && strcmp(all, "false") != 0;
    env.msg_case = MSG_TASK_LIST;
    env.task_list = &req;
    httpapi_call(ctl, r, &env);
}

static void route_service_tasks(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    httpapi_tasks(ctl, r, arg);
}

static void route_tasks(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    httpapi_tasks(ctl, r, "");
}

/* A task by its id: a read of the model, as no request of the wire asks
 * for one task. */
static void route_task(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    task_t *t = model_task_by_id(&ctl->model, arg);

    if (!t || t->svc->removed) {
        httpd_respond_error(r, 404, "no such task: %.100s", arg);
        return;
    }
    httpapi_json(r, 200, pbjson_from_message(&t->pb->base));
}

static void route_service_stats(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    Envelope env = PB_ENVELOPE_INIT;
    ServiceStats req = PB_SERVICE_STATS_INIT;
    char *names[1] = { (char *)arg };

    req.n_services = 1;
    req.services = names;
    env.msg_case = MSG_SERVICE_STATS;
    env.service_stats = &req;
    httpapi_call(ctl, r, &env);
}

static void route_service_scale(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    static const char *const allowed[] = { "replicas", NULL };
    Envelope env = PB_ENVELOPE_INIT;
    ServiceScale req = PB_SERVICE_SCALE_INIT;
    json_t *j = httpapi_body(r, allowed), *v;

    if (!j)
        return;
    v = json_object_get(j, "replicas");
    if (!v || !json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > UINT32_MAX) {
        json_decref(j);
        httpd_respond_error(r, 400, "replicas: %s", v ? "must be a whole number, 0 or more"
                                                      : "missing");
        return;
    }
    req.service = (char *)arg;
    req.replicas = (uint32_t)json_integer_value(v);
    json_decref(j);
    env.msg_case = MSG_SERVICE_SCALE;
    env.service_scale = &req;
    httpapi_call(ctl, r, &env);
}

static void route_service_rollback(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    Envelope env = PB_ENVELOPE_INIT;
    ServiceRollback req = PB_SERVICE_ROLLBACK_INIT;

    req.service = (char *)arg;
    env.msg_case = MSG_SERVICE_ROLLBACK;
    env.service_rollback = &req;
    httpapi_call(ctl, r, &env);
}

static void route_service_logs(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    Envelope env = PB_ENVELOPE_INIT;
    LogsRequest req = PB_LOGS_REQUEST_INIT;
    const char *tail = httpd_query(r, "tail"), *follow = httpd_query(r, "follow");
    char *end;

    if (tail) {
        unsigned long v = strtoul(tail, &end, 10);
        if (!*tail || *end || *tail == '-' || v > UINT32_MAX) {
            httpd_respond_error(r, 400, "tail: not a whole number: %.64s", tail);
            return;
        }
        req.tail = (uint32_t)v;
    }
    req.follow = follow && strcmp(follow, "0") != 0 && strcmp(follow, "false") != 0;
    req.service = (char *)arg;
    env.msg_case = MSG_LOGS_REQUEST;
    env.logs_request = &req;
    httpapi_call(ctl, r, &env);
}

/* ------------------------------------------------------------ samples */

static void httpapi_sample(uv_timer_t *timer)
{
    ctl_t *ctl = timer->data;
    httpapi_t *a = ctl->httpapi;
    int64_t now = model_wall_ms();
    service_t *svc, *stmp;
    series_t *se, *tmp;

    a->gen++;
    HASH_ITER(hh, ctl->model.services, svc, stmp) {
        load_figures_t f;
        sample_t *x;
        task_t *t;
        if (svc->removed)
            continue;
        HASH_FIND_STR(a->series, svc->pb->id, se);
        if (!se) {
            if (!(se = calloc(1, sizeof(*se))))
                continue; /* no sample this time */
            snprintf(se->id, sizeof(se->id), "%s", svc->pb->id);
            HASH_ADD_STR(a->series, id, se);
        }
        se->gen = a->gen;
        load_service(svc, ctl->model.nodes, now, &f);
        x = &se->ring[se->next];
        memset(x, 0, sizeof(*x));
        x->time_ms = now;
        x->connections_per_second = f.connections_per_second;
        x->cpu_percent = f.cpu_percent;
        x->active_connections = f.active;
        x->running = f.running;
        DL_FOREACH2(svc->tasks, t, svc_next)
            if (t->pb->desired_state == DESIRED_RUNNING && t->pb->state == TASK_RUNNING &&
                t->stats && now - t->stats->time_ms <= LOAD_STALE_MS)
                x->memory_bytes += t->stats->memory_bytes;
        se->next = (se->next + 1) % HTTPAPI_SAMPLES;
        if (se->n < HTTPAPI_SAMPLES)
            se->n++;
    }
    HASH_ITER(hh, a->series, se, tmp) {
        if (se->gen != a->gen) { /* its service is gone */
            HASH_DEL(a->series, se);
            free(se);
        }
    }
}

/* The last 15 minutes of a service's figures, oldest first. */
static void route_service_metrics(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    int ambiguous;
    service_t *svc = model_service_find(&ctl->model, arg, &ambiguous);
    json_t *j, *arr;
    series_t *se;

    if (!svc) {
        httpd_respond_error(r, 404, ambiguous ? "service %.100s is ambiguous: give more of its id"
                                              : "no such service: %.100s", arg);
        return;
    }
    HASH_FIND_STR(ctl->httpapi->series, svc->pb->id, se);
    j = json_pack("{s:s, s:s, s:i, s:[]}", "service", svc->pb->spec->name, "id", svc->pb->id,
                  "interval_ms", HTTPAPI_SAMPLE_MS, "samples");
    arr = j ? json_object_get(j, "samples") : NULL;
    for (size_t i = 0; arr && se && i < se->n; i++) {
        const sample_t *x = &se->ring[(se->next + HTTPAPI_SAMPLES - se->n + i) % HTTPAPI_SAMPLES];
        if (json_array_append_new(arr, json_pack("{s:I, s:f, s:I, s:f, s:I, s:i}", "time_ms",
                                                 (json_int_t)x->time_ms, "connections_per_second",
                                                 x->connections_per_second, "active_connections",
                                                 (json_int_t)x->active_connections, "cpu_percent",
                                                 x->cpu_percent, "memory_bytes",
                                                 (json_int_t)x->memory_bytes, "running",
                                                 (int)x->running))) {
            json_decref(j);
            j = NULL;
            break;
        }
    }
    httpapi_json(r, 200, j);
}

/* ------------------------------------------------------ events stream */

static void sse_free(sse_t *s)
{
    httpapi_t *a = s->ctl->httpapi;

    if (s->reader)
        events_reader_close(s->reader);
    DL_DELETE(a->sses, s);
    a->n_sse--;
    free(s);
}

static void sse_on_close(void *arg)
{
    sse_t *s = arg;

    s->stream = NULL;
    if (s->busy)
        s->gone = 1; /* sse_write frees it */
    else
        sse_free(s);
}

/* Writes one message. SKIFF_ELIMIT when over the budget (offered again at
 * the next pump); SKIFF_ECLOSED when the stream is over (s is freed). */
static int sse_write(sse_t *s, const char *text, size_t len, int budgeted)
{
    int rc;

    if (!s->stream)
        return SKIFF_ECLOSED;
    if (budgeted && httpd_stream_pending(s->stream) > HTTPAPI_SSE_BUDGET)
        return SKIFF_ELIMIT;
    s->busy = 1;
    rc = httpd_stream_write(s->stream, text, len);
    s->busy = 0;
    if (s->gone) {
        sse_free(s);
        return SKIFF_ECLOSED;
    }
    return rc;
}

/* "event: NAME\ndata: JSON\n\n", and "id: SEQ" before when seq. */
static int sse_send_json(sse_t *s, const char *name, uint64_t seq, json_t *j)
{
    char *data = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    char *msg;
    size_t len;
    int rc;

    json_decref(j);
    if (!data)
        return SKIFF_ELIMIT; /* out of memory: again later */
    len = strlen(data) + strlen(name) + 64;
    if (!(msg = malloc(len))) {
        free(data);
        return SKIFF_ELIMIT;
    }
    if (seq)
        len = (size_t)snprintf(msg, len, "id: %llu\nevent: %s\ndata: %s\n\n",
                               (unsigned long long)seq, name, data);
    else
        len = (size_t)snprintf(msg, len, "event: %s\ndata: %s\n\n", name, data);
    free(data);
    rc = sse_write(s, msg, len, 1);
    free(msg);
    return rc;
}

static int sse_on_event(void *arg, const Event *e)
{
    sse_t *s = arg;
    int rc;

    if (s->stream && httpd_stream_pending(s->stream) > HTTPAPI_SSE_BUDGET)
        return SKIFF_ELIMIT;
    rc = sse_send_json(s, "event", e->seq, pbjson_from_message(&e->base));
    if (rc == SKIFF_ECLOSED)
        return rc; /* s is gone; the ring closes the reader */
    return rc;
}

static int sse_on_dropped(void *arg, uint64_t count)
{
    return sse_send_json(arg, "dropped", 0, json_pack("{s:I}", "count", (json_int_t)count));
}

static void sse_on_end(void *arg)
{
    sse_t *s = arg;

    s->reader = NULL; /* the ring frees it */
    if (s->stream) {
        httpd_stream_t *st = s->stream;
        sse_write(s, "event: end\ndata: {}\n\n", 21, 0);
        if (s->stream == st)
            httpd_stream_end(st); /* on_close frees s */
    }
}

static const events_reader_ops_t sse_ops = {
    .send = sse_on_event,
    .dropped = sse_on_dropped,
    .end = sse_on_end,
};

/* ?since= and ?until=: a duration ago ("10m") or Unix ms. */
static int httpapi_time(httpd_req_t *r, const char *name, int64_t *out)
{
    const char *s = httpd_query(r, name);
    int64_t ms;
    char *end;

    *out = 0;
    if (!s)
        return 0;
    if (duration_parse(s, &ms) == 0) {
        *out = model_wall_ms() - ms;
        return 0;
    }
    ms = strtoll(s, &end, 10);
    if (*s && !*end && ms > 0) {
        *out = ms;
        return 0;
    }
    httpd_respond_error(r, 400, "%s: not a duration (10m) nor Unix ms: %.64s", name, s);
    return -1;
}

static void route_events(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    httpapi_t *a = ctl->httpapi;
    EventsRequest req = PB_EVENTS_REQUEST_INIT;
    const char *type = httpd_query(r, "type"), *service = httpd_query(r, "service");
    const char *node = httpd_query(r, "node");
    char *types[1], *services[1], *nodes[1];
    sse_t *s;

    if (httpapi_time(r, "since", &req.since_ms) || httpapi_time(r, "until", &req.until_ms))
        return;
    if (req.until_ms && req.since_ms && req.until_ms < req.since_ms) {
        httpd_respond_error(r, 400, "until: before since");
        return;
    }
    if (type && strcmp(type, "service") && strcmp(type, "task") && strcmp(type, "node") &&
        strcmp(type, "secret") && strcmp(type, "config")) {
        httpd_respond_error(r, 400, "type: unknown event type \"%.64s\" (service, task, node, "
                            "secret or config)", type);
        return;
    }
    if (a->n_sse >= HTTPAPI_MAX_SSE) {
        httpd_respond_error(r, 429, "too many event streams (%u)", HTTPAPI_MAX_SSE);
        return;
    }
    if (type && *type) {
        types[0] = (char *)type;
        req.types = types;
        req.n_types = 1;
    }
    if (service && *service) {
        services[0] = (char *)service;
        req.services = services;
        req.n_services = 1;
    }
    if (node && *node) {
        nodes[0] = (char *)node;
        req.nodes = nodes;
        req.n_nodes = 1;
    }
    if (!(s = calloc(1, sizeof(*s)))) {
        httpd_respond_error(r, 500, "out of memory");
        return;
    }
    s->ctl = ctl;
    DL_APPEND(a->sses, s);
    a->n_sse++;
    s->stream = httpd_stream_open(r, 200, "text/event-stream", HTTPAPI_SSE_MAX_PENDING,
                                  sse_on_close, s);
    if (!s->stream) {
        DL_DELETE(a->sses, s);
        a->n_sse--;
        free(s);
        return;
    }
    /* an SSE comment first: the client knows it is connected */
    if (sse_write(s, ": skiff events\n\n", 16, 0) == SKIFF_ECLOSED)
        return;
    s->reader = events_follow(ctl->events, &req, &sse_ops, s);
    if (!s->reader) {
        sse_write(s, "event: error\ndata: {\"error\":\"out of memory\"}\n\n", 46, 0);
        if (s->stream)
            httpd_stream_end(s->stream);
        return;
    }
    if (!ctl->committing)
        events_pump(ctl->events, model_wall_ms());
}

/* ------------------------------------------------------------- static */

static void httpapi_static(ctl_t *ctl, httpd_req_t *r, const char *path)
{
    const char *name = strcmp(path, "/") == 0 ? "index.html" : path + 1;

    for (size_t i = 0; i < dash_n_assets; i++) {
        if (strcmp(dash_assets[i].name, name) != 0)
            continue;
        httpd_add_header(r, "Cache-Control", "no-cache");
        httpd_add_header(r, "X-Content-Type-Options", "nosniff");
        httpd_add_header(r, "X-Frame-Options", "DENY");
        httpd_add_header(r, "Content-Security-Policy",
                         "default-src 'self'; img-src 'self' data:; style-src 'self'");
        httpd_respond(r, 200, dash_assets[i].type, (const char *)dash_assets[i].data,
                      dash_assets[i].len);
        return;
    }
    httpd_respond_error(r, 404, "not found: %.200s", path);
}

/* ------------------------------------------------------------- router */

typedef void (*route_fn)(ctl_t *ctl, httpd_req_t *r, const char *arg);

/* Paths under /api/v1; '*' is one segment, handed to the route. */
static const struct {
    const char *method;
    const char *path;
    route_fn fn;
} httpapi_routes[] = {
    { "GET", "/nodes", route_nodes },
    { "GET", "/nodes/*", route_node },
    { "POST", "/nodes/*/availability", route_node_availability },
    { "POST", "/nodes/*/labels", route_node_labels },
    { "GET", "/services", route_services },
    { "GET", "/services/*", route_service },
    { "GET", "/services/*/tasks", route_service_tasks },
    { "GET", "/services/*/stats", route_service_stats },
    { "GET", "/services/*/logs", route_service_logs },
    { "GET", "/services/*/metrics", route_service_metrics },
    { "POST", "/services/*/scale", route_service_scale },
    { "POST", "/services/*/rollback", route_service_rollback },
    { "GET", "/tasks", route_tasks },
    { "GET", "/tasks/*", route_task },
    { "GET", "/events", route_events },
};

/* 1 when path matches pattern; the '*' segment goes to arg (len bytes). */
static int httpapi_match(const char *pattern, const char *path, char *arg, size_t len)
{
    *arg = '\0';
    while (*pattern && *path) {
        if (*pattern == '*') {
            size_t n = strcspn(path, "/");
            if (n == 0 || n >= len)
                return 0;
            memcpy(arg, path, n);
            arg[n] = '\0';
            path += n;
            pattern++;
        } else if (*pattern++ != *path++) {
            return 0;
        }
    }
    return !*pattern && !*path;
}

/* The dashboard's sessions, at the loop's (monotonic) time. They were
 * opened with the admin token of the moment: when it has changed (its file
 * was rewritten), every one of them ends. */
static sessions_t *httpapi_sessions(ctl_t *ctl, int64_t *now)
{
    httpapi_t *a = ctl->httpapi;

    if (strcmp(a->sessions_token, ctl->admin_token) != 0) {
        session_clear(&a->sessions);
        snprintf(a->sessions_token, sizeof(a->sessions_token), "%s", ctl->admin_token);
    }
    *now = (int64_t)uv_now(ctl->loop);
    return &a->sessions;
}

static void httpapi_refuse(httpd_req_t *r, int status, const char *why, const char *message)
{
    log_warn("http: %s: refused %s %s: %s", httpd_peer(r), httpd_method(r), httpd_path(r), why);
    if (status == 401)
        httpd_add_header(r, "WWW-Authenticate", "Bearer realm=\"skiff\"");
    httpd_respond_error(r, status, "%s", message);
}

/* Who asks: the admin token as "Authorization: Bearer", or a live session's
 * cookie, which for every method but GET and HEAD also needs the session's
 * CSRF token in X-CSRF-Token. Answers 401 (or 403: a session without its
 * CSRF token) and returns -1 otherwise. *s: the session, or NULL. */
static int httpapi_auth(ctl_t *ctl, httpd_req_t *r, const session_t **s)
{
    const char *h = httpd_header(r, "Authorization"), *cookie = httpd_header(r, "Cookie");
    const char *method = httpd_method(r), *csrf;
    char id[SESSION_HEX + 1];
    sessions_t *table;
    int64_t now;

    *s = NULL;
    if (h) {
        if (strncmp(h, "Bearer ", 7) == 0 && tokens_admin_ok(ctl, h + 7))
            return 0;
        httpapi_refuse(r, 401, "wrong token", "authorization: wrong token");
        return -1;
    }
    table = httpapi_sessions(ctl, &now);
    if (session_cookie_id(cookie, id) != 0) {
        httpapi_refuse(r, 401, "no token",
                       "authorization: the admin token is required (Authorization: Bearer TOKEN, "
                       "or log in at POST /api/v1/login)");
        return -1;
    }
    if (!(*s = session_find(table, id, now))) {
        httpapi_refuse(r, 401, "unknown or expired session",
                       "session: unknown or expired (log in again)");
        return -1;
    }
    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
        return 0;
    csrf = httpd_header(r, "X-CSRF-Token");
    if (session_csrf_ok(*s, csrf))
        return 0;
    httpapi_refuse(r, 403, csrf ? "wrong CSRF token" : "no CSRF token",
                   csrf ? "csrf: X-CSRF-Token is not this session's"
                        : "csrf: an action with the session cookie needs its X-CSRF-Token header");
    return -1;
}

/* POST /api/v1/login {"token": ADMIN_TOKEN}: a session for the dashboard.
 * The cookie carries its id (the page's script cannot read it), the answer
 * its CSRF token. A wrong token: 401, and a warning naming the peer. */
static void httpapi_login(ctl_t *ctl, httpd_req_t *r)
{
    static const char *const allowed[] = { "token", NULL };
    json_t *j = httpapi_body(r, allowed);
    const session_t *s;
    sessions_t *table;
    const char *tok;
    char cookie[160];
    int64_t now;
    int ok;

    if (!j)
        return;
    tok = json_string_value(json_object_get(j, "token"));
    if (!tok || !*tok) {
        json_decref(j);
        httpd_respond_error(r, 400, "token: missing (the admin token, as a string)");
        return;
    }
    ok = tokens_admin_ok(ctl, tok);
    json_decref(j);
    if (!ok) {
        httpapi_refuse(r, 401, "wrong token",
                       "token: wrong admin token (it is in <data-dir>/admin-token on the "
                       "controller's host)");
        return;
    }
    table = httpapi_sessions(ctl, &now);
    if (!(s = session_create(table, now))) {
        httpd_respond_error(r, 503, "session: no random bytes for its id, try again");
        return;
    }
    snprintf(cookie, sizeof(cookie), "%s=%s; HttpOnly; SameSite=Strict; Path=/; Max-Age=%lld%s",
             SESSION_COOKIE, s->id, SESSION_TTL_MS / 1000, httpd_is_tls(r) ? "; Secure" : "");
    httpd_add_header(r, "Set-Cookie", cookie);
    httpd_add_header(r, "Cache-Control", "no-store");
    log_info("http: %s: logged in to the dashboard (%u sessions)", httpd_peer(r),
             session_count(table, now));
    httpapi_json(r, 200, json_pack("{s:s, s:I}", "csrf_token", s->csrf, "expires_in_s",
                                   (json_int_t)(SESSION_TTL_MS / 1000)));
}

/* POST /api/v1/logout: ends the session of the cookie (authenticated as any
 * action is) and clears the cookie. */
static void httpapi_logout(ctl_t *ctl, httpd_req_t *r, const session_t *s)
{
    char id[SESSION_HEX + 1];

    if (s) {
        snprintf(id, sizeof(id), "%s", s->id);
        session_drop(&ctl->httpapi->sessions, id);
    }
    httpd_add_header(r, "Set-Cookie",
                     SESSION_COOKIE "=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    httpapi_json(r, 200, json_pack("{s:b}", "ok", 1));
}

static void httpapi_on_request(void *arg, httpd_req_t *r)
{
    ctl_t *ctl = arg;
    const char *path = httpd_path(r), *method = httpd_method(r);
    const session_t *session;
    char seg[256];
    int path_known = 0;

    if (strncmp(path, "/api/", 5) != 0) {
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
            httpd_add_header(r, "Allow", "GET, HEAD");
            httpd_respond_error(r, 405, "method %s not allowed", method);
            return;
        }
        httpapi_static(ctl, r, path);
        return;
    }
    if ((strcmp(path, "/api/v1/login") == 0 || strcmp(path, "/api/v1/logout") == 0) &&
        strcmp(method, "POST") != 0) {
        httpd_add_header(r, "Allow", "POST");
        httpd_respond_error(r, 405, "method %s not allowed on %.200s", method, path);
        return;
    }
    if (strcmp(path, "/api/v1/login") == 0) { /* the one path without a token */
        httpapi_login(ctl, r);
        return;
    }
    if (httpapi_auth(ctl, r, &session))
        return;
    if (strcmp(path, "/api/v1/logout") == 0) {
        httpapi_logout(ctl, r, session);
        return;
    }
    if (strncmp(path, "/api/v1/", 8) != 0) {
        httpd_respond_error(r, 404, "not found: %.200s (the API is under /api/v1/)", path);
        return;
    }
    for (size_t i = 0; i < sizeof(httpapi_routes) / sizeof(httpapi_routes[0]); i++) {
        if (!httpapi_match(httpapi_routes[i].path, path + 7, seg, sizeof(seg)))
            continue;
        path_known = 1;
        if (strcmp(httpapi_routes[i].method, method) == 0) {
            httpapi_routes[i].fn(ctl, r, seg);
            return;
        }
    }
    if (path_known) {
        httpd_respond_error(r, 405, "method %s not allowed on %.200s", method, path);
        return;
    }
    httpd_respond_error(r, 404, "not found: %.200s", path);
}

/* ------------------------------------------------------------- start */

int httpapi_start(ctl_t *ctl)
{
    httpd_config_t hc = { .listen = ctl->cfg.http_listen, .name = "http",
                          .max_body = HTTPAPI_MAX_BODY, .max_connections = 512,
                          .ssl_ctx = ctl->http_tls };
    char err[256];

    if (!*ctl->cfg.http_listen)
        return 0;
    if (!(ctl->httpapi = calloc(1, sizeof(*ctl->httpapi))))
        return -ENOMEM;
    ctl->httpapi->http = httpd_start(ctl->loop, &hc, httpapi_on_request, ctl, err, sizeof(err));
    if (!ctl->httpapi->http) {
        log_error("--http-listen %s", err);
        free(ctl->httpapi);
        ctl->httpapi = NULL;
        return SKIFF_EINVAL;
    }
    uv_timer_init(ctl->loop, &ctl->httpapi->sampler);
    ctl->httpapi->sampler.data = ctl;
    uv_timer_start(&ctl->httpapi->sampler, httpapi_sample, 0, HTTPAPI_SAMPLE_MS);
    return 0;
}

void httpapi_stop(ctl_t *ctl)
{
    if (!ctl->httpapi || !ctl->httpapi->http)
        return;
    httpd_close(ctl->httpapi->http, NULL, NULL); /* ends the streams: sse_on_close */
    ctl->httpapi->http = NULL;
    uv_timer_stop(&ctl->httpapi->sampler);
    uv_close((uv_handle_t *)&ctl->httpapi->sampler, NULL); /* the series go with the process */
}

void httpapi_metrics(ctl_t *ctl, prom_t *p)
{
    size_t streams = 0, unsent = 0;

    if (ctl->httpapi) {
        for (sse_t *s = ctl->httpapi->sses; s; s = s->next) {
            streams++;
            if (s->stream && httpd_stream_pending(s->stream) > unsent)
                unsent = httpd_stream_pending(s->stream);
        }
    }
    prom_family(p, "skiff_http_event_streams", "gauge", "Open /api/v1/events streams.");
    prom_sample(p, "skiff_http_event_streams", (double)streams, NULL);
    prom_family(p, "skiff_http_event_stream_unsent_bytes", "gauge",
                "The most output any /api/v1/events client has not taken yet.");
    prom_sample(p, "skiff_http_event_stream_unsent_bytes", (double)unsent, NULL);
}
