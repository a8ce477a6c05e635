/* ctl: see ctl.h. The listener, the handshake, the outbox and the commit
 * pipeline live here; what a message means lives in agents.c and api.c. */
#include "ctl.h"
#include "errors.h"
#include "event.h"
#include "log.h"
#include "pbutil.h"
#include "wire.h"

#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#define CTL_TICK_MS 100
#define CTL_CAPACITY_MS 1000   /* the autoscaler and the rebalancer look this often */
/* Free heap goes back to the kernel this often: glibc keeps the free chunks
 * a burst (a create, a restart, thousands of handshakes) left inside the
 * heap; malloc_trim returned 7 of 87 MB with 1,000 nodes and 20,000 tasks. */
#define CTL_TRIM_MS 10000

static const conn_ops_t ctl_conn_ops;

int64_t ctl_now(const ctl_t *ctl)
{
    return (int64_t)uv_now(ctl->loop);
}

void ctl_ca_changed(ctl_t *ctl)
{
    ctl->model.meta_dirty = 1; /* makes the next flush commit, the CA's rows with it */
}

/* ---------------------------------------------------------------- peers */

void peer_unref(peer_t *p)
{
    if (--p->refs == 0) {
        secrets_peer_free(p);
        free(p);
    }
}

static unsigned ctl_conns_from(const ctl_t *ctl, const char *addr)
{
    unsigned n = 0;

    for (const peer_t *p = ctl->peers; p; p = p->next)
        n += strcmp(p->addr, addr) == 0;
    return n;
}

static void ctl_on_connection(uv_stream_t *server, int status)
{
    ctl_t *ctl = server->data;
    conn_limits_t limits = {
        .max_frame = ctl->cfg.max_frame,
        .max_pending = ctl->cfg.max_pending,
        .frame_timeout_ms = (uint64_t)ctl->cfg.handshake_timeout_ms,
        /* After the hello a client may stay silent (logs -f), never stall
         * inside a frame. */
        .partial_timeout_ms = (uint64_t)ctl->cfg.handshake_timeout_ms,
    };
    peer_t *p;
    char *colon;
    int tls_rc;

    if (status < 0) {
        log_warn("accept: %s", uv_strerror(status));
        return;
    }
    p = calloc(1, sizeof(*p));
    if (!p || !(p->conn = conn_create(ctl->loop, &ctl_conn_ops, &limits, p))) {
        uv_tcp_t *sink = malloc(sizeof(*sink)); /* accept and drop, or the listener spins */
        free(p);
        if (sink && uv_tcp_init(ctl->loop, sink) == 0) {
            uv_accept(server, (uv_stream_t *)sink);
            uv_close((uv_handle_t *)sink, (uv_close_cb)free);
        } else {
            free(sink);
        }
        return;
    }
    p->ctl = ctl;
    p->refs = 1;
    DL_APPEND(ctl->peers, p);
    ctl->n_peers++;
    /* No context yet: a shared store has not told the CA's roots. */
    tls_rc = ctl->tls ? conn_use_tls(p->conn, ctl->tls) : SKIFF_EUNAVAILABLE;
    if (conn_accept(p->conn, server) < 0)
        return; /* closing; on_close unlists it */
    if (tls_rc) {
        conn_close(p->conn, tls_rc == SKIFF_EUNAVAILABLE ? tls_rc : SKIFF_ETLS); /* never plaintext */
        return;
    }
    snprintf(p->addr, sizeof(p->addr), "%s", conn_peer(p->conn));
    if ((colon = strrchr(p->addr, ':')))
        *colon = '\0';
    if (ctl->n_peers > ctl->cfg.max_conns ||
        ctl_conns_from(ctl, p->addr) > ctl->cfg.max_conns_per_addr) {
        /* Closed before its TLS handshake: a flood costs no cryptography. */
        log_warn("refusing a connection from %s: too many connections (%u in all)",
                 conn_peer(p->conn), ctl->n_peers - 1);
        conn_close(p->conn, SKIFF_ELIMIT);
    }
}

static void ctl_conn_closed(conn_t *c, int err)
{
    peer_t *p = conn_data(c);
    ctl_t *ctl = p->ctl;

    if (err == SKIFF_ETLS)
        log_warn("%s: refused: %s", conn_peer(c), conn_strerror(c, err));
    else if (err && err != SKIFF_ECLOSED && err != SKIFF_ELIMIT)
        log_info("connection from %s closed: %s", conn_peer(c), conn_strerror(c, err));
    DL_DELETE(ctl->peers, p);
    ctl->n_peers--;
    p->conn = NULL;
    logs_peer_gone(ctl, p);
    monitor_peer_gone(ctl, p);
    if (p->role == ROLE_AGENT)
        agents_gone(ctl, p);
    peer_unref(p);
}

static void ctl_refuse(peer_t *p, uint64_t id, const char *why)
{
    log_warn("%s: refused: %s", conn_peer(p->conn), why);
    conn_send_error(p->conn, id, ERR_AUTH, "%s", why);
    conn_close(p->conn, 0);
}

/* The identity of an agent, from its certificate (the TLS handshake
 * verified it: chain, expiry, role, cluster, record, not revoked). */
static int ctl_hello_agent(ctl_t *ctl, peer_t *p, uint64_t id, X509 *cert)
{
    pki_name_t name;

    if (pki_name(cert, &name) || pki_serial(cert, p->cert_serial)) {
        ctl_refuse(p, id, "a certificate that names no node");
        return SKIFF_EAUTH;
    }
    snprintf(p->node_id, sizeof(p->node_id), "%s", name.id);
    p->cert_not_after_ms = pki_not_after_ms(cert);
    return 0;
}

static int ctl_hello(ctl_t *ctl, peer_t *p, Envelope *env)
{
    Envelope reply = PB_ENVELOPE_INIT;
    HelloReply hr = PB_HELLO_REPLY_INIT;
    const Hello *h = env->hello;
    X509 *cert = conn_peer_cert(p->conn);

    if (p->joined) {
        log_warn("%s: %s after its join; closing", conn_peer(p->conn),
                 wire_msg_name(env->msg_case));
        return SKIFF_EPROTO;
    }
    if (!ctl->identity_known) {
        /* A shared store that has not answered yet: no token to check. */
        conn_send_error(p->conn, env->id, ERR_UNAVAILABLE,
                        "this controller has not reached its store yet; try again shortly");
        conn_close(p->conn, 0);
        return 0;
    }
    if (env->msg_case == MSG_NODE_JOIN && !cert) {
        if (!ctl->leading) {
            /* The leader issues certificates: a join goes there. */
            leader_redirect(ctl, p, env->id);
            conn_close(p->conn, 0);
            return 0;
        }
        return certs_join(ctl, p, env);
    }
    if (env->msg_case != MSG_HELLO) {
        log_warn("%s: refused: %s before hello", conn_peer(p->conn),
                 wire_msg_name(env->msg_case));
        conn_send_error(p->conn, env->id, ERR_AUTH, "say hello first");
        conn_close(p->conn, 0);
        return 0;
    }
    if (cert) {
        /* A node's certificate is an agent's credential, never a client's. */
        if (h->role != ROLE_AGENT) {
            ctl_refuse(p, env->id, "a node's certificate is not an admin's credential");
            return 0;
        }
        if (ctl_hello_agent(ctl, p, env->id, cert))
            return 0;
    } else if (h->role == ROLE_AGENT) {
        ctl_refuse(p, env->id, "an agent needs its node certificate (join with the join "
                   "token first)");
        return 0;
    } else if (h->role != ROLE_CLIENT || !tokens_match(ctl->admin_token, h->token)) {
        ctl_refuse(p, env->id, h->role != ROLE_CLIENT ? "unknown role"
                               : *h->token ? "wrong token" : "no token");
        return 0;
    }
    p->role = h->role;
    if (!ctl->leading && p->role == ROLE_AGENT) {
        /* An agent has nothing to do with a follower: to the leader. */
        leader_redirect(ctl, p, env->id);
        conn_close(p->conn, 0);
        return 0;
    }
    conn_set_frame_timeout(p->conn, p->role == ROLE_AGENT ? (uint64_t)ctl->cfg.agent_timeout_ms : 0);
    hr.cluster_id = ctl->model.cluster_id;
    hr.version = SKIFF_VERSION;
    reply.id = env->id;
    reply.msg_case = MSG_HELLO_REPLY;
    reply.hello_reply = &hr;
    /* Depends on nothing but the cluster id, which is on disk from the
     * start (tokens_cluster_id): no need to wait for a commit. */
    if (conn_send(p->conn, &reply))
        conn_close(p->conn, SKIFF_ELIMIT);
    log_debug("%s: hello as %s%s", conn_peer(p->conn),
              p->role == ROLE_AGENT ? "the agent of node " : "a client", p->node_id);
    return 0;
}

static int ctl_on_message(conn_t *c, Envelope *env)
{
    peer_t *p = conn_data(c);
    ctl_t *ctl = p->ctl;
    int rc;

    ctl->counters.rpc_code = 0;
    if (p->role == 0)
        rc = ctl_hello(ctl, p, env);
    else if (!ctl->leading || !ctl->store->ops->leading(ctl->store))
        rc = leader_follower_message(ctl, p, env);
    else if (p->role == ROLE_AGENT)
        rc = agents_handle(ctl, p, env);
    else
        rc = api_handle(ctl, p, env);
    if ((unsigned)env->msg_case < CTL_RPC_MSGS)
        ctl->counters.rpc[env->msg_case][(unsigned)ctl->counters.rpc_code < CTL_RPC_CODES
                                             ? ctl->counters.rpc_code : ERR_INTERNAL]++;
    wire_free(env);
    return rc;
}

static const conn_ops_t ctl_conn_ops = {
    .on_message = ctl_on_message,
    .on_close = ctl_conn_closed,
};

/* --------------------------------------------------------------- outbox */

static void ctl_deliver(ctl_t *ctl, peer_t *p, const uint8_t *frame, size_t len, int msg_case)
{
    int rc;

    if (p->local) {
        p->local(p, frame, len);
        return;
    }
    if (!p->conn || conn_is_closing(p->conn))
        return;
    rc = conn_send_frame(p->conn, frame, len);
    if (rc) {
        log_warn("%s: cannot send %s (%s); closing", conn_peer(p->conn), wire_msg_name(msg_case),
                 skiff_strerror(rc));
        conn_close(p->conn, rc);
    }
}

void ctl_send(ctl_t *ctl, peer_t *p, const Envelope *env)
{
    size_t len = wire_frame_size(env);
    outmsg_t *m;

    if (!p->local && (!p->conn || conn_is_closing(p->conn)))
        return;
    if (!ctl->committing && !model_has_changes(&ctl->model) && !ctl->out_head) {
        uint8_t stackbuf[4096], *frame = len <= sizeof(stackbuf) ? stackbuf : malloc(len);
        if (!frame) {
            if (p->conn)
                conn_close(p->conn, -ENOMEM);
            return;
        }
        wire_pack(env, frame);
        ctl_deliver(ctl, p, frame, len, env->msg_case);
        if (frame != stackbuf)
            free(frame);
        return;
    }
    m = malloc(sizeof(*m) + len);
    if (!m) {
        if (p->conn)
            conn_close(p->conn, -ENOMEM);
        return;
    }
    wire_pack(env, m->frame);
    m->len = len;
    m->msg_case = env->msg_case;
    m->peer = p;
    m->next = NULL;
    p->refs++;
    *ctl->out_tail = m;
    ctl->out_tail = &m->next;
}

void ctl_send_ok(ctl_t *ctl, peer_t *peer, uint64_t id)
{
    Envelope env = PB_ENVELOPE_INIT;
    Ok ok = PB_OK_INIT;

    env.id = id;
    env.msg_case = MSG_OK;
    env.ok = &ok;
    ctl_send(ctl, peer, &env);
}

void ctl_send_error(ctl_t *ctl, peer_t *p, uint64_t id, ErrorCode code, const char *fmt, ...)
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
    ctl->counters.rpc_code = (int)code;
    env.id = id;
    env.msg_case = MSG_ERROR;
    env.error = &err;
    ctl_send(ctl, p, &env);
}

Event *ctl_event_service(ctl_t *ctl, const char *action, const service_t *svc)
{
    Event *e = event_new("service", action, svc->pb->id, svc->pb->spec->name, model_wall_ms());

    if (e && event_set_service(e, svc->pb->spec->name)) {
        pb_free(e);
        return NULL;
    }
    return e;
}

Event *ctl_event_node(ctl_t *ctl, const char *action, const node_t *node)
{
    Event *e = event_new("node", action, node->pb->id, node->pb->name, model_wall_ms());

    if (e && event_set_node(e, node->pb->name)) {
        pb_free(e);
        return NULL;
    }
    return e;
}

Event *ctl_event_task(ctl_t *ctl, const char *action, const task_t *t)
{
    char name[96];
    Event *e;

    snprintf(name, sizeof(name), "%s.%u", t->svc->pb->spec->name, t->pb->slot);
    e = event_new("task", action, t->pb->id, name, model_wall_ms());
    if (e && (event_set_service(e, t->svc->pb->spec->name) ||
              (t->node && event_set_node(e, t->node->pb->name)))) {
        pb_free(e);
        return NULL;
    }
    return e;
}

void ctl_emit(ctl_t *ctl, Event *e, const char *fmt, ...)
{
    char msg[512], line[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (!e || pb_set_str(&e->message, msg)) {
        ctl->counters.events_lost++;
        log_error("event lost (out of memory): %s", msg);
        pb_free(e);
        return;
    }
    event_format_line(e, line, sizeof(line));
    /* the log line has its own time; task events are many (10,000 replicas
     * make 30,000 of them): at debug level */
    if (strcmp(e->type, "task") == 0)
        log_debug("event: %s", line + 25);
    else
        log_info("event: %s", line + 25);
    if (events_add(ctl->events, e))
        log_error("event not kept for readers (out of memory): %s", line);
    if (!ctl->events_batch)
        ctl->events_batch = store_batch_new();
    if (!ctl->events_batch || store_add_event(ctl->events_batch, e)) {
        ctl->counters.events_lost++;
        log_error("event not stored (out of memory): %s", line);
    }
    pb_free(e);
    ctl->model.meta_dirty = 1; /* makes the next flush commit */
}

/* Task events: the state (and health, and restarts) each dirty task has
 * now against what its last event told. Called as the commit is sealed, so
 * that every change of a turn of the loop gives one event, whatever path
 * made it. */
static void ctl_task_events(ctl_t *ctl, task_t *t)
{
    Task *pb = t->pb;
    Event *e;

    if (pb->restarts > t->evt_restarts)
        t->svc->counters.restarts += pb->restarts - t->evt_restarts;
    if ((int)pb->state != t->evt_state) {
        const char *state = task_state_name(pb->state);
        e = ctl_event_task(ctl, state, t);
        if (e && t->evt_state >= 0)
            event_attr(e, "from", "%s", task_state_name((TaskState)t->evt_state));
        if (e && pb->desired_state != DESIRED_RUNNING)
            event_attr(e, "desired", "%s", pb->desired_state == DESIRED_SHUTDOWN ? "shutdown"
                                                                                 : "remove");
        if (e && (pb->state == TASK_FAILED || pb->state == TASK_COMPLETE))
            event_attr(e, "exit_code", "%d", pb->exit_code);
        if (e && pb->restarts)
            event_attr(e, "restarts", "%u", pb->restarts);
        if (e && *pb->container_id)
            event_attr(e, "container", "%.12s", pb->container_id);
        ctl_emit(ctl, e, "%s", pb->message);
    } else if ((int)pb->health != t->evt_health && pb->health != HEALTH_NONE) {
        e = ctl_event_task(ctl, "health_status", t);
        if (e)
            event_attr(e, "health", "%s", task_health_name(pb->health));
        ctl_emit(ctl, e, "%s", pb->message);
    } else if (pb->restarts > t->evt_restarts) {
        e = ctl_event_task(ctl, "restart", t);
        if (e)
            event_attr(e, "restarts", "%u", pb->restarts);
        ctl_emit(ctl, e, "%s", pb->message);
    }
    t->evt_state = (int)pb->state;
    t->evt_health = (int)pb->health;
    t->evt_restarts = pb->restarts;
}

static void ctl_on_loaded_event(void *arg, Event *e)
{
    events_load(arg, e);
    pb_free(e);
}

int ctl_load_events(ctl_t *ctl)
{
    uint64_t last_seq = 0;

    if (!(ctl->events = events_create(ctl->cfg.event_buffer ? ctl->cfg.event_buffer : 50000)))
        return -ENOMEM;
    store_set_events_kept(ctl->store, ctl->cfg.event_buffer);
    if (store_load_events(ctl->store, ctl->cfg.event_buffer ? ctl->cfg.event_buffer : 50000,
                          ctl_on_loaded_event, ctl->events, &last_seq))
        log_warn("store: the events could not be read; starting with none");
    events_set_next_seq(ctl->events, last_seq + 1);
    return 0;
}

void ctl_follow_stored_events(ctl_t *ctl)
{
    uint64_t last_seq = 0;

    if (ctl->events && store_load_events(ctl->store, 0, ctl_on_loaded_event, ctl->events,
                                         &last_seq) == 0)
        events_set_next_seq(ctl->events, last_seq + 1);
}

/* ---------------------------------------------------------------- commit */

/* Moves every change of the model into a batch. Returns it, or NULL when
 * out of memory (fatal: the caller stops the controller). */
static store_batch_t *ctl_seal(ctl_t *ctl)
{
    model_t *m = &ctl->model;
    store_batch_t *b;
    char num[32];
    int rc = 0;

    for (task_t *t = m->dirty_tasks; t; t = t->dirty_next)
        ctl_task_events(ctl, t);
    b = ctl->events_batch ? ctl->events_batch : store_batch_new();
    ctl->events_batch = NULL;
    if (!b)
        return NULL;
    ctl->events_sealed = events_last_seq(ctl->events);
    for (node_t *n = m->dirty_nodes; n; n = n->dirty_next) {
        rc |= store_put_node(b, n->pb);
        n->dirty = MODEL_CLEAN;
    }
    for (service_t *s = m->dirty_services; s; s = s->dirty_next) {
        rc |= store_put_service(b, s->pb, s->removed);
        s->dirty = MODEL_CLEAN;
    }
    for (struct model_spec_put *p = m->spec_puts; p; p = p->next) {
        const ServiceSpec *spec = model_service_spec(p->svc, p->version);
        if (spec)
            rc |= store_put_spec(b, p->svc->pb->id, p->version, spec);
    }
    for (task_t *t = m->dirty_tasks; t; t = t->dirty_next) {
        rc |= store_put_task(b, t->pb);
        t->dirty = MODEL_CLEAN;
    }
    for (model_deletion_t *d = m->deletions; d; d = d->next)
        rc |= store_delete(b, d->table, d->id, d->version);
    /* The CA's rows first: the model's named rows carry them. */
    if (ctl->ca && ca_dirty(ctl->ca))
        rc |= ca_seal(ctl->ca, m);
    for (model_row_t *r = model_rows_take_dirty(m), *next; r; r = next) {
        next = r->dirty_next;
        rc |= r->value ? store_put_row(b, r->table, r->key, r->value, r->len)
                       : store_delete_row(b, r->table, r->key);
        model_row_sealed(m, r);
    }
    if (m->meta_dirty) {
        rc |= store_put_meta(b, "cluster_id", m->cluster_id);
        snprintf(num, sizeof(num), "%llu", (unsigned long long)m->assignments_version);
        rc |= store_put_meta(b, "assignments_version", num);
        snprintf(num, sizeof(num), "%llu", (unsigned long long)m->endpoints_version);
        rc |= store_put_meta(b, "endpoints_version", num);
    }
    m->dirty_nodes = NULL;
    m->dirty_services = NULL;
    m->dirty_tasks = NULL;
    m->meta_dirty = 0;
    while (m->spec_puts) {
        struct model_spec_put *p = m->spec_puts;
        m->spec_puts = p->next;
        free(p);
    }
    while (m->deletions) {
        model_deletion_t *d = m->deletions;
        m->deletions = d->next;
        free(d);
    }
    if (rc) {
        store_batch_free(b);
        return NULL;
    }
    return b;
}

static void ctl_flush_outbox(ctl_t *ctl, outmsg_t *m)
{
    while (m) {
        outmsg_t *next = m->next;
        ctl_deliver(ctl, m->peer, m->frame, m->len, m->msg_case);
        peer_unref(m->peer);
        free(m);
        m = next;
    }
}

/* Frees messages that must never leave (their commit failed, or this
 * controller stepped down before it was acknowledged). */
void ctl_drop_outbox(outmsg_t *m)
{
    while (m) {
        outmsg_t *next = m->next;
        peer_unref(m->peer);
        free(m);
        m = next;
    }
}

static void ctl_commit_done(void *arg, int rc, const char *err)
{
    ctl_t *ctl = arg;
    outmsg_t *m = ctl->inflight;

    ctl->inflight = NULL;
    ctl->committing = 0;
    if (ctl->commit_term != ctl->term) {
        /* This controller stepped down meanwhile: what the commit covered
         * is its successor's to say, from the store. */
        ctl_drop_outbox(m);
        return;
    }
    if (rc) {
        ctl_drop_outbox(m);
        if (!store_shared(ctl->store)) {
            /* The model is ahead of the disk and nothing of it has left:
             * stop here, and the restart resumes from the last commit. */
            log_error("store: %s; stopping (the state on disk is whole; restart to resume)", err);
            exit(1);
        }
        /* Nothing of it has left either; the store may hold part of it,
         * which whoever leads next reads and reconciles. */
        leader_step_down(ctl, err);
        return;
    }
    prom_histogram_observe(&ctl->counters.commit_seconds,
                           (double)(uv_hrtime() - ctl->counters.commit_started_ns) / 1e9);
    ctl_flush_outbox(ctl, m);
    events_publish(ctl->events, ctl->events_sealed);
    events_pump(ctl->events, model_wall_ms());
    /* Whatever piled up meanwhile goes in the next flush, before the loop
     * waits again. */
}

static void ctl_flush(uv_prepare_t *h)
{
    ctl_t *ctl = h->data;
    store_batch_t *batch;
    int rc;

    if (ctl->committing)
        return;
    if (ctl->leading && !ctl->store->ops->leading(ctl->store))
        leader_step_down(ctl, "the store no longer says this controller leads");
    if (ctl->leading)
        orch_run(ctl);
    if (!ctl->leading || !model_has_changes(&ctl->model)) {
        /* Nothing to write: whatever waits in the outbox can go. */
        outmsg_t *m = ctl->out_head;
        ctl->out_head = NULL;
        ctl->out_tail = &ctl->out_head;
        ctl_flush_outbox(ctl, m);
        return;
    }
    batch = ctl_seal(ctl);
    if (!batch) {
        log_error("store: out of memory sealing a commit; stopping");
        exit(1);
    }
    ctl->inflight = ctl->out_head;
    ctl->out_head = NULL;
    ctl->out_tail = &ctl->out_head;
    ctl->committing = 1;
    ctl->commit_term = ctl->term;
    ctl->counters.commit_started_ns = uv_hrtime();
    if ((rc = store_commit(ctl->store, batch, ctl_commit_done, ctl))) {
        ctl->committing = 0;
        ctl_drop_outbox(ctl->inflight);
        ctl->inflight = NULL;
        if (!store_shared(ctl->store)) {
            log_error("store: cannot queue a commit (%s); stopping", skiff_strerror(rc));
            exit(1);
        }
        leader_step_down(ctl, "cannot start a commit");
    }
}

/* ----------------------------------------------------------------- timers */

static void ctl_on_tick(uv_timer_t *t)
{
    ctl_t *ctl = t->data;
    int64_t now = ctl_now(ctl);
    service_t *s, *tmp;

    if (now - ctl->trimmed_ms >= CTL_TRIM_MS) {
        ctl->trimmed_ms = now;
        malloc_trim(0);
    }
    if (!ctl->leading)
        return;
    agents_check_heartbeats(ctl);
    events_pump(ctl->events, model_wall_ms()); /* slow readers, until times */
    if (now - ctl->capacity_checked_ms >= CTL_CAPACITY_MS) {
        ctl->capacity_checked_ms = now;
        capacity_autoscale(ctl);
        orch_rebalance(ctl);
    }
    if (store_shared(ctl->store) && now - ctl->pinged_ms >= 1000) {
        ctl->pinged_ms = now;
        leader_ping_agents(ctl);
    }
    if (now - ctl->certs_checked_ms >= 1000) {
        ctl->certs_checked_ms = now;
        certs_tick(ctl);
    }
    HASH_ITER(hh, ctl->model.services, s, tmp) {
        if (s->wake_ms && s->wake_ms <= now) {
            s->wake_ms = 0;
            orch_mark(s);
        }
    }
}

static void ctl_on_listener_closed(uv_handle_t *h)
{
}

static void ctl_on_signal(uv_signal_t *sig, int signum)
{
    ctl_t *ctl = sig->data;

    if (ctl->stopping++)
        return;
    log_info("signal %d: stopping", signum);
    uv_close((uv_handle_t *)&ctl->listener, ctl_on_listener_closed);
    uv_timer_stop(&ctl->tick);
    for (peer_t *p = ctl->peers; p; p = p->next)
        if (p->conn)
            conn_close(p->conn, 0);
    uv_signal_stop(&ctl->sigterm);
    uv_signal_stop(&ctl->sigint);
    uv_close((uv_handle_t *)&ctl->tick, NULL);
    uv_close((uv_handle_t *)&ctl->sigterm, NULL);
    uv_close((uv_handle_t *)&ctl->sigint, NULL);
    uv_close((uv_handle_t *)&ctl->token_watch, NULL);
    /* A commit in flight completes before the loop ends (uv_run waits for
     * queued work); changes not yet committed are dropped, as after kill -9,
     * and nothing that depended on them was sent. */
    uv_prepare_stop(&ctl->flush);
    uv_close((uv_handle_t *)&ctl->flush, NULL);
    monitor_stop(ctl);
    httpapi_stop(ctl);
    dockerapi_stop(ctl);
    /* A shared store gives up the leadership at once, for a successor not
     * to wait for the lease to run out. */
    store_stop(ctl->store, NULL, NULL);
}

static void ctl_on_token_change(uv_fs_event_t *h, const char *file, int events, int status)
{
    ctl_t *ctl = h->data;

    if (status == 0 && file && strstr(file, "-token") && !ctl->stopping)
        tokens_reload(ctl);
}

int ctl_start(ctl_t *ctl, uv_loop_t *loop)
{
    struct sockaddr_storage ss;
    int rc;

    ctl->loop = loop;
    ctl->out_tail = &ctl->out_head;
    if (!ctl->cfg.advertise[0])
        memcpy(ctl->cfg.advertise, ctl->cfg.listen, sizeof(ctl->cfg.advertise));
    if (conn_parse_addr(ctl->cfg.listen, &ss)) {
        log_error("--listen %s: not an IP address and port", ctl->cfg.listen);
        return SKIFF_EINVAL;
    }
    uv_tcp_init(loop, &ctl->listener);
    ctl->listener.data = ctl;
    rc = uv_tcp_bind(&ctl->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&ctl->listener, 511, ctl_on_connection);
    if (rc) {
        log_error("--listen %s: %s", ctl->cfg.listen, uv_strerror(rc));
        uv_close((uv_handle_t *)&ctl->listener, NULL);
        return rc;
    }
    if ((rc = monitor_start(ctl)) || (rc = httpapi_start(ctl)) || (rc = dockerapi_start(ctl))) {
        uv_close((uv_handle_t *)&ctl->listener, NULL);
        return rc;
    }
    uv_timer_init(loop, &ctl->tick);
    ctl->tick.data = ctl;
    uv_timer_start(&ctl->tick, ctl_on_tick, CTL_TICK_MS, CTL_TICK_MS);
    uv_prepare_init(loop, &ctl->flush);
    ctl->flush.data = ctl;
    uv_prepare_start(&ctl->flush, ctl_flush);
    uv_signal_init(loop, &ctl->sigterm);
    uv_signal_init(loop, &ctl->sigint);
    ctl->sigterm.data = ctl->sigint.data = ctl;
    uv_signal_start(&ctl->sigterm, ctl_on_signal, SIGTERM);
    uv_signal_start(&ctl->sigint, ctl_on_signal, SIGINT);
    uv_fs_event_init(loop, &ctl->token_watch);
    ctl->token_watch.data = ctl;
    if (!store_shared(ctl->store)) {
        /* A shared store holds the tokens: the files are its copies. */
        if (uv_fs_event_start(&ctl->token_watch, ctl_on_token_change, ctl->cfg.data_dir, 0))
            log_warn("cannot watch %s for token rotation", ctl->cfg.data_dir);
        ctl->identity_known = 1;
        log_info("listening on %s, cluster %s", ctl->cfg.listen, ctl->model.cluster_id);
        leader_lead(ctl);
        return 0;
    }
    log_info("listening on %s; store %s", ctl->cfg.listen,
             ctl->store->ops->describe(ctl->store));
    if ((rc = ctl->store->ops->start(ctl->store, &ctl->model, &leader_store_events, ctl))) {
        log_error("store %s: cannot start: %s", ctl->store->ops->describe(ctl->store),
                  skiff_strerror(rc));
        return rc;
    }
    return 0;
}
