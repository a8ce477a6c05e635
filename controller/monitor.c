/* monitor: what the controller tells about itself and its cluster: the
 * Prometheus page at /metrics (--metrics-listen, on net/httpd), the readers
 * of `skiff events` over the wire (on controller/events), and the replies
 * to `service stats` (from controller/load). It changes nothing in the
 * model.
 *
 * An events reader over the wire takes events while what its client has
 * not taken (the connection's queue and the kernel's) is under
 * MONITOR_EVENTS_BUDGET: a client that reads slowly
 * lags behind the ring instead of growing the queue, and is told how many
 * events it lost (EventsDropped) when it catches up.
 */
#include "ctl.h"
#include "errors.h"
#include "httpd.h"
#include "load.h"
#include "log.h"
#include "pbutil.h"
#include "wire.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#define MONITOR_EVENTS_BUDGET (64u << 10)
#define MONITOR_READERS_PER_PEER 16
#define MONITOR_MAX_STATS 20000

typedef struct wire_reader {
    ctl_t *ctl;
    peer_t *peer;          /* a reference */
    uint64_t id;           /* the request's */
    events_reader_t *reader;
    struct wire_reader *prev, *next;
} wire_reader_t;

struct monitor {
    httpd_t *metrics;
    wire_reader_t *readers;
};

/* ------------------------------------------------------ events readers */

static void monitor_reader_free(ctl_t *ctl, wire_reader_t *w)
{
    DL_DELETE(ctl->monitor->readers, w);
    peer_unref(w->peer);
    free(w);
}

/* Sends env to the reader's client if its queue has room. */
static int monitor_reader_send(wire_reader_t *w, const Envelope *env)
{
    conn_t *c = w->peer->conn;

    if (!c || conn_is_closing(c) || conn_unsent(c) > MONITOR_EVENTS_BUDGET)
        return SKIFF_ELIMIT; /* a closed one is gone at monitor_peer_gone */
    return conn_send(c, env) ? SKIFF_ELIMIT : 0;
}

static int monitor_on_event(void *arg, const Event *e)
{
    wire_reader_t *w = arg;
    Envelope env = PB_ENVELOPE_INIT;

    env.id = w->id;
    env.msg_case = MSG_EVENT;
    env.event = (Event *)e;
    return monitor_reader_send(w, &env);
}

static int monitor_on_dropped(void *arg, uint64_t count)
{
    wire_reader_t *w = arg;
    Envelope env = PB_ENVELOPE_INIT;
    EventsDropped d = PB_EVENTS_DROPPED_INIT;

    d.count = count;
    env.id = w->id;
    env.msg_case = MSG_EVENTS_DROPPED;
    env.events_dropped = &d;
    return monitor_reader_send(w, &env);
}

static void monitor_on_end(void *arg)
{
    wire_reader_t *w = arg;
    Envelope env = PB_ENVELOPE_INIT;
    Ok ok = PB_OK_INIT;

    env.id = w->id;
    env.msg_case = MSG_OK;
    env.ok = &ok;
    if (w->peer->conn && !conn_is_closing(w->peer->conn) && conn_send(w->peer->conn, &env))
        conn_close(w->peer->conn, SKIFF_ELIMIT);
    monitor_reader_free(w->ctl, w); /* the ring frees its reader */
}

static const events_reader_ops_t monitor_reader_ops = {
    .send = monitor_on_event,
    .dropped = monitor_on_dropped,
    .end = monitor_on_end,
};

/* Checks an events request's filters; replies the error and returns -1. */
static int monitor_check_filters(ctl_t *ctl, peer_t *p, uint64_t id, const EventsRequest *req)
{
    static const char *const types[] = { "service", "task", "node", "secret", "config" };

    for (size_t i = 0; i < req->n_types; i++) {
        int known = 0;
        for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++)
            known |= strcmp(req->types[i], types[k]) == 0;
        if (!known) {
            ctl_send_error(ctl, p, id, ERR_INVALID,
                           "type: unknown event type \"%.64s\" (service, task, node, "
                           "secret or config)",
                           req->types[i]);
            return -1;
        }
    }
    if (req->since_ms < 0 || req->until_ms < 0 ||
        (req->until_ms && req->since_ms && req->until_ms < req->since_ms)) {
        ctl_send_error(ctl, p, id, ERR_INVALID, "until: before since");
        return -1;
    }
    if (req->n_types > 8 || req->n_services > 64 || req->n_nodes > 64) {
        ctl_send_error(ctl, p, id, ERR_INVALID, "filters: too many (8 types, 64 services, "
                       "64 nodes at most)");
        return -1;
    }
    return 0;
}

int monitor_events_request(ctl_t *ctl, peer_t *p, uint64_t id, const EventsRequest *req)
{
    wire_reader_t *w;
    unsigned mine = 0;

    if (monitor_check_filters(ctl, p, id, req))
        return 0;
    DL_FOREACH(ctl->monitor->readers, w)
        mine += w->peer == p;
    if (mine >= MONITOR_READERS_PER_PEER) {
        ctl_send_error(ctl, p, id, ERR_LIMIT, "too many event streams on one connection (%u)",
                       MONITOR_READERS_PER_PEER);
        return 0;
    }
    if (!(w = calloc(1, sizeof(*w)))) {
        ctl_send_error(ctl, p, id, ERR_INTERNAL, "out of memory");
        return 0;
    }
    w->ctl = ctl;
    w->peer = p;
    w->id = id;
    p->refs++;
    DL_APPEND(ctl->monitor->readers, w);
    w->reader = events_follow(ctl->events, req, &monitor_reader_ops, w);
    if (!w->reader) {
        monitor_reader_free(ctl, w);
        ctl_send_error(ctl, p, id, ERR_INTERNAL, "out of memory");
        return 0;
    }
    /* the past ones at once, when nothing waits to be committed */
    if (!ctl->committing)
        events_pump(ctl->events, model_wall_ms());
    return 0;
}

void monitor_peer_gone(ctl_t *ctl, peer_t *p)
{
    wire_reader_t *w, *tmp;

    if (!ctl->monitor)
        return;
    DL_FOREACH_SAFE(ctl->monitor->readers, w, tmp) {
        if (w->peer != p)
            continue;
        events_reader_close(w->reader);
        monitor_reader_free(ctl, w);
    }
}

/* ------------------------------------------------------- service stats */

static int monitor_stats_of(ctl_t *ctl, service_t *svc, ServiceStatsReply *reply)
{
    int64_t now = model_wall_ms();
    task_t *t;

    DL_FOREACH2(svc->tasks, t, svc_next) {
        TaskStats *v;
        if (t->pb->desired_state != DESIRED_RUNNING || t->pb->state != TASK_RUNNING)
            continue;
        if (reply->n_tasks >= MONITOR_MAX_STATS)
            return 0;
        if (!(v = load_task_view(svc, t, ctl->model.nodes, now)) ||
            pb_push_msg(&reply->n_tasks, (void ***)&reply->tasks, v)) {
            pb_free(v);
            return -1;
        }
    }
    return 0;
}

static int monitor_by_slot(const void *a, const void *b)
{
    const TaskStats *x = *(TaskStats *const *)a, *y = *(TaskStats *const *)b;
    int c = strcmp(x->service_name, y->service_name);
    const char *dx = strrchr(x->task_name, '.'), *dy = strrchr(y->task_name, '.');

    if (c)
        return c;
    return (dx ? atoi(dx + 1) : 0) - (dy ? atoi(dy + 1) : 0);
}

int monitor_service_stats(ctl_t *ctl, peer_t *p, uint64_t id, const ServiceStats *req)
{
    Envelope env = PB_ENVELOPE_INIT;
    ServiceStatsReply *reply = PB_NEW(ServiceStatsReply);
    service_t *svc, *tmp;
    int rc = 0;

    if (!reply)
        goto out_nomem;
    for (size_t i = 0; i < req->n_services; i++) {
        int ambiguous;
        if (!model_service_find(&ctl->model, req->services[i], &ambiguous)) {
            ctl_send_error(ctl, p, id, ERR_NOT_FOUND,
                           ambiguous ? "service %.100s is ambiguous: give more of its id"
                                     : "no such service: %.100s", req->services[i]);
            pb_free(reply);
            return 0;
        }
    }
    if (req->n_services) {
        for (size_t i = 0; i < req->n_services && !rc; i++) {
            int ambiguous;
            svc = model_service_find(&ctl->model, req->services[i], &ambiguous);
            rc = monitor_stats_of(ctl, svc, reply);
        }
    } else {
        HASH_ITER(hh, ctl->model.services, svc, tmp)
            if (!svc->removed && !rc)
                rc = monitor_stats_of(ctl, svc, reply);
    }
    if (rc)
        goto out_nomem;
    qsort(reply->tasks, reply->n_tasks, sizeof(*reply->tasks), monitor_by_slot);
    env.id = id;
    env.msg_case = MSG_SERVICE_STATS_REPLY;
    env.service_stats_reply = reply;
    ctl_send(ctl, p, &env);
    pb_free(reply);
    return 0;

out_nomem:
    pb_free(reply);
    ctl_send_error(ctl, p, id, ERR_INTERNAL, "out of memory");
    return 0;
}

/* ------------------------------------------------------------- /metrics */

/* The `skiff events` readers, and the most any of them has not taken:
 * at most MONITOR_EVENTS_BUDGET and one event, however slowly it reads. */
static void monitor_readers_metrics(ctl_t *ctl, prom_t *p)
{
    size_t readers = 0, unsent = 0;
    wire_reader_t *w;

    DL_FOREACH(ctl->monitor->readers, w) {
        readers++;
        if (w->peer->conn && conn_unsent(w->peer->conn) > unsent)
            unsent = conn_unsent(w->peer->conn);
    }
    prom_family(p, "skiff_events_readers", "gauge", "Open `skiff events` streams.");
    prom_sample(p, "skiff_events_readers", (double)readers, NULL);
    prom_family(p, "skiff_events_reader_unsent_bytes", "gauge",
                "The most output any events stream's client has not taken yet.");
    prom_sample(p, "skiff_events_reader_unsent_bytes", (double)unsent, NULL);
}

/* "not_found" for ERR_NOT_FOUND; "ok" for 0. */
static const char *monitor_code_name(int code, char *out, size_t len)
{
    const ProtobufCEnumValue *v;

    if (code == 0)
        return "ok";
    v = protobuf_c_enum_descriptor_get_value(&skiff__v1__error_code__descriptor, code);
    if (!v) {
        snprintf(out, len, "%d", code);
        return out;
    }
    snprintf(out, len, "%s", strncmp(v->name, "ERR_", 4) == 0 ? v->name + 4 : v->name);
    for (char *c = out; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    return out;
}

static void monitor_nodes(ctl_t *ctl, prom_t *p)
{
    unsigned counts[2][2] = { { 0 } }; /* [ready][drain] */
    node_t *n, *tmp;

    HASH_ITER(hh, ctl->model.nodes, n, tmp)
        counts[n->pb->state == NODE_READY][n->pb->availability == AVAILABILITY_DRAIN]++;
    prom_family(p, "skiff_nodes", "gauge", "Nodes by state and availability.");
    for (int r = 1; r >= 0; r--)
        for (int d = 0; d < 2; d++)
            prom_sample(p, "skiff_nodes", counts[r][d], "state", r ? "ready" : "down",
                        "availability", d ? "drain" : "active", NULL);
}

static void monitor_services(ctl_t *ctl, prom_t *p)
{
    service_t *s, *tmp;
    unsigned live = 0;

    HASH_ITER(hh, ctl->model.services, s, tmp)
        live += !s->removed;
    prom_family(p, "skiff_services", "gauge", "Services (removed ones not counted).");
    prom_sample(p, "skiff_services", live, NULL);

    prom_family(p, "skiff_tasks", "gauge",
                "Tasks desired running, by service and observed state.");
    HASH_ITER(hh, ctl->model.services, s, tmp) {
        unsigned by_state[TASK_REMOVED + 1] = { 0 };
        task_t *t;
        if (s->removed)
            continue;
        DL_FOREACH2(s->tasks, t, svc_next)
            if (t->pb->desired_state == DESIRED_RUNNING && (unsigned)t->pb->state <= TASK_REMOVED)
                by_state[t->pb->state]++;
        for (int st = 0; st <= TASK_REMOVED; st++)
            if (by_state[st] || st == TASK_RUNNING)
                prom_sample(p, "skiff_tasks", by_state[st], "service", s->pb->spec->name,
                            "state", task_state_name((TaskState)st), NULL);
    }
    prom_family(p, "skiff_service_replicas_desired", "gauge", "Replicas a service should run.");
    HASH_ITER(hh, ctl->model.services, s, tmp)
        if (!s->removed)
            prom_sample(p, "skiff_service_replicas_desired", s->pb->spec->replicas, "service",
                        s->pb->spec->name, NULL);
    prom_family(p, "skiff_service_replicas_running", "gauge",
                "Tasks of a service desired and observed running.");
    HASH_ITER(hh, ctl->model.services, s, tmp) {
        unsigned running = 0;
        task_t *t;
        if (s->removed)
            continue;
        DL_FOREACH2(s->tasks, t, svc_next)
            running += t->pb->desired_state == DESIRED_RUNNING && t->pb->state == TASK_RUNNING;
        prom_sample(p, "skiff_service_replicas_running", running, "service", s->pb->spec->name,
                    NULL);
    }
    prom_family(p, "skiff_task_restarts_total", "counter",
                "Containers restarted in place by their agents' restart policy.");
    HASH_ITER(hh, ctl->model.services, s, tmp)
        if (!s->removed)
            prom_sample(p, "skiff_task_restarts_total", (double)s->counters.restarts, "service",
                        s->pb->spec->name, NULL);
    prom_family(p, "skiff_task_replacements_total", "counter",
                "New tasks in the place of ones that ran, by reason.");
    HASH_ITER(hh, ctl->model.services, s, tmp) {
        if (s->removed)
            continue;
        for (int r = 0; r < MODEL_REPLACE_COUNT; r++)
            prom_sample(p, "skiff_task_replacements_total", (double)s->counters.replaced[r],
                        "service", s->pb->spec->name, "reason", model_replace_names[r], NULL);
    }
    prom_family(p, "skiff_updates_total", "counter", "Rolling updates ended, by result.");
    HASH_ITER(hh, ctl->model.services, s, tmp) {
        if (s->removed)
            continue;
        for (int r = 0; r < MODEL_UPDATE_RESULTS; r++)
            prom_sample(p, "skiff_updates_total", (double)s->counters.updates[r], "service",
                        s->pb->spec->name, "result", model_update_result_names[r], NULL);
    }
}

static void monitor_self(ctl_t *ctl, prom_t *p)
{
    unsigned kinds[3] = { 0 }; /* handshake, agent, client */
    char code[32];

    prom_histogram_write(p, "skiff_store_commit_seconds",
                         "Time to write one batch of changes to the store.",
                         &ctl->counters.commit_seconds);
    prom_family(p, "skiff_rpc_requests_total", "counter",
                "Messages from agents and clients, by message and outcome.");
    for (int m = 0; m < CTL_RPC_MSGS; m++)
        for (int c = 0; c < CTL_RPC_CODES; c++)
            if (ctl->counters.rpc[m][c])
                prom_sample(p, "skiff_rpc_requests_total", (double)ctl->counters.rpc[m][c],
                            "method", wire_msg_name(m), "code",
                            monitor_code_name(c, code, sizeof(code)), NULL);
    for (peer_t *q = ctl->peers; q; q = q->next)
        kinds[q->role == ROLE_AGENT ? 1 : q->role == ROLE_CLIENT ? 2 : 0]++;
    prom_family(p, "skiff_connections", "gauge", "Open connections, by kind of peer.");
    prom_sample(p, "skiff_connections", kinds[1], "kind", "agent", NULL);
    prom_sample(p, "skiff_connections", kinds[2], "kind", "client", NULL);
    prom_sample(p, "skiff_connections", kinds[0], "kind", "handshake", NULL);
    prom_family(p, "skiff_events_buffered", "gauge", "Events kept in the ring for --since.");
    prom_sample(p, "skiff_events_buffered", (double)events_count(ctl->events), NULL);
    monitor_readers_metrics(ctl, p);
    httpapi_metrics(ctl, p);
    prom_family(p, "skiff_events_lost_total", "counter",
                "Events that could not be recorded (out of memory).");
    prom_sample(p, "skiff_events_lost_total", (double)ctl->counters.events_lost, NULL);
    prom_family(p, "skiff_build_info", "gauge", "The skiff version, as a label.");
    prom_sample(p, "skiff_build_info", 1, "version", SKIFF_VERSION, "role", "controller", NULL);
    prom_process(p);
}

/* Builds the whole page into p. */
void monitor_metrics_page(ctl_t *ctl, prom_t *p)
{
    monitor_nodes(ctl, p);
    monitor_services(ctl, p);
    monitor_self(ctl, p);
}

static void monitor_on_http(void *arg, httpd_req_t *r)
{
    ctl_t *ctl = arg;
    const char *method = httpd_method(r);
    const char *text;
    size_t len;
    prom_t p;

    if (strcmp(httpd_path(r), "/metrics") != 0) {
        httpd_respond_error(r, 404, "not found: the metrics are at /metrics");
        return;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        httpd_add_header(r, "Allow", "GET, HEAD");
        httpd_respond_error(r, 405, "method %s not allowed", method);
        return;
    }
    prom_init(&p, 0);
    monitor_metrics_page(ctl, &p);
    text = prom_text(&p, &len);
    if (prom_ok(&p))
        httpd_respond(r, 200, PROM_CONTENT_TYPE, text, len);
    else
        httpd_respond_error(r, 500, "the metrics page did not fit in memory");
    prom_free(&p);
}

/* ------------------------------------------------------------- start */

int monitor_start(ctl_t *ctl)
{
    static const double commit_bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                            0.05, 0.1, 0.25, 0.5, 1, 2.5, 5 };
    char err[256];

    if (!(ctl->monitor = calloc(1, sizeof(*ctl->monitor))))
        return -ENOMEM;
    prom_histogram_init(&ctl->counters.commit_seconds, commit_bounds,
                        sizeof(commit_bounds) / sizeof(commit_bounds[0]));
    if (*ctl->cfg.metrics_listen) {
        httpd_config_t hc = { .listen = ctl->cfg.metrics_listen, .name = "metrics",
                              .max_body = 4096, .max_connections = 64,
                              .ssl_ctx = ctl->http_tls };
        ctl->monitor->metrics = httpd_start(ctl->loop, &hc, monitor_on_http, ctl, err,
                                            sizeof(err));
        if (!ctl->monitor->metrics) {
            log_error("--metrics-listen %s", err);
            return SKIFF_EINVAL;
        }
    }
    return 0;
}

void monitor_stop(ctl_t *ctl)
{
    if (!ctl->monitor)
        return;
    if (ctl->monitor->metrics)
        httpd_close(ctl->monitor->metrics, NULL, NULL);
    ctl->monitor->metrics = NULL;
}
