/* leader: leading and following, as the controller sees them.
 *
 * The store decides who leads (store.h; on SQLite this controller, always);
 * here the controller acts on it. Leading starts from a model the store
 * filled: every node gets a grace period to come back, every service is
 * reconciled, as after a restart, so that a takeover restarts no task that
 * still runs. Stepping down drops everything that only the leader may
 * hold: its model, its outbox, the batch it was making, and every
 * connection (agents and clients reconnect and are sent to the leader).
 * A follower answers the controller list, and Redirect to anything else.
 */
#include "ctl.h"
#include "errors.h"
#include "log.h"
#include "pbutil.h"
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A node is given, after a takeover or a restart, the heartbeat timeout
 * plus the time an agent may wait before it tries again (its backoff
 * reaches 2s) to come back. */
#define LEADER_GRACE_MS 2000

void leader_lead(ctl_t *ctl)
{
    ctl->leading = 1;
    ctl->term++;
    ctl->leader[0] = '\0';
    /* Counted from now: the loop's clock still shows the time before the
     * store was loaded. */
    uv_update_time(ctl->loop);
    ctl->lead_ms = ctl_now(ctl);
    ctl->node_back_ms = 0;
    for (node_t *n = ctl->model.nodes; n; n = n->hh.next) {
        n->back_ms = 0;
        n->last_seen_ms = ctl_now(ctl) + LEADER_GRACE_MS;
        n->ready_since_ms = n->pb->state == NODE_READY ? ctl_now(ctl) : 0;
    }
    if (store_shared(ctl->store)) {
        char err[256];
        ctl_follow_stored_events(ctl);
        /* The CA with its records, from the store's rows: now this
         * controller issues and checks the certificates. */
        if (tokens_ca(ctl, err, sizeof(err)))
            log_error("CA: %s; certificates cannot be issued or checked", err);
        secrets_lead(ctl);
    }
    for (service_t *s = ctl->model.services; s; s = s->hh.next)
        orch_mark(s);
    ctl->sched_needed = 1;
    ctl->endpoints_check = 1;
    ctl->heartbeats_checked_ms = 0;
    if (store_shared(ctl->store))
        log_info("leading: %u nodes, %u services, %u tasks from the store",
                 HASH_COUNT(ctl->model.nodes), HASH_COUNT(ctl->model.services),
                 HASH_COUNT(ctl->model.tasks));
}

void leader_step_down(ctl_t *ctl, const char *why)
{
    char cluster_id[sizeof(ctl->model.cluster_id)];

    if (!ctl->leading)
        return;
    log_warn("stepping down: %s", why);
    ctl->leading = 0;
    ctl->term++;
    for (peer_t *p = ctl->peers; p; p = p->next) {
        p->node = NULL;
        p->wants_endpoints = 0;
        if (p->conn)
            conn_close(p->conn, 0);
    }
    ctl_drop_outbox(ctl->out_head);
    ctl->out_head = NULL;
    ctl->out_tail = &ctl->out_head;
    /* The commit in flight, if any, finds another term and drops its own. */
    store_batch_free(ctl->events_batch);
    ctl->events_batch = NULL;
    memcpy(cluster_id, ctl->model.cluster_id, sizeof(cluster_id));
    model_free(&ctl->model);
    model_init(&ctl->model);
    memcpy(ctl->model.cluster_id, cluster_id, sizeof(cluster_id));
    free(ctl->endpoints_packed);
    ctl->endpoints_packed = NULL;
    ctl->endpoints_len = 0;
    ctl->sched_needed = ctl->endpoints_check = ctl->endpoints_wanted = 0;
    if (ctl->ca)
        ca_follow(ctl->ca);
}

/* ------------------------------------------------------- the store's events */

static void leader_on_identity(void *arg, const char *cluster_id, const char *join,
                               const char *admin, const store_blob_t *ca_roots, size_t n)
{
    ctl_t *ctl = arg;
    char err[256];

    if (ctl->identity_known && (strcmp(join, ctl->join_token) || strcmp(admin, ctl->admin_token)))
        log_info("tokens changed in the store: %s%s", strcmp(join, ctl->join_token) ? "join " : "",
                 strcmp(admin, ctl->admin_token) ? "admin" : "");
    snprintf(ctl->model.cluster_id, sizeof(ctl->model.cluster_id), "%s", cluster_id);
    snprintf(ctl->join_token, sizeof(ctl->join_token), "%s", join);
    snprintf(ctl->admin_token, sizeof(ctl->admin_token), "%s", admin);
    if (!ctl->identity_known)
        log_info("cluster %s, from the store", cluster_id);
    ctl->identity_known = 1;
    /* A follower's CA: the roots, enough to serve TLS and redirect. The
     * leader's comes from the model (tokens_ca), and changes there. */
    if (!ctl->leading) {
        if (tokens_ca_roots(ctl, ca_roots, n, err, sizeof(err)))
            log_warn("CA: %s; not taking connections yet", err);
        else
            log_info("CA sha256 %s, from the store", ca_digest(ctl->ca));
        if (ctl->ca && ctl->cfg.docker_tls && dockerapi_start(ctl))
            log_error("the Docker API does not listen");
    }
    tokens_write_files(ctl);
}

static void leader_on_lead(void *arg)
{
    ctl_t *ctl = arg;

    if (ctl->stopping)
        return;
    leader_lead(ctl);
}

static void leader_on_follow(void *arg, const char *leader)
{
    ctl_t *ctl = arg;

    leader_step_down(ctl, "another controller leads");
    if (strcmp(ctl->leader, leader) != 0)
        log_info("following: %s", *leader ? leader : "no controller leads now");
    snprintf(ctl->leader, sizeof(ctl->leader), "%s", leader);
}

static void leader_on_lost(void *arg, const char *why)
{
    leader_step_down(arg, why);
}

static void leader_on_fatal(void *arg, const char *why)
{
    log_error("%s", why);
    exit(1);
}

const store_events_t leader_store_events = {
    .on_fatal = leader_on_fatal,
    .on_identity = leader_on_identity,
    .on_lead = leader_on_lead,
    .on_follow = leader_on_follow,
    .on_lost = leader_on_lost,
};

/* ------------------------------------------------------------- followers */

void leader_redirect(ctl_t *ctl, peer_t *p, uint64_t id)
{
    Envelope env = PB_ENVELOPE_INIT;
    Redirect r = PB_REDIRECT_INIT;

    /* This controller's own address is no answer (it stepped down and its
     * old leader key has not expired yet): none is known. */
    r.leader = strcmp(ctl->leader, ctl->cfg.advertise) == 0 ? "" : ctl->leader;
    r.message = *r.leader ? "this controller does not lead" : "no controller leads now";
    env.id = id;
    env.msg_case = MSG_REDIRECT;
    env.redirect = &r;
    if (p->conn && conn_send(p->conn, &env))
        conn_close(p->conn, SKIFF_ELIMIT);
}

int leader_follower_message(ctl_t *ctl, peer_t *p, Envelope *env)
{
    if (ctl->leading)
        leader_step_down(ctl, "the store no longer says this controller leads");
    if (p->role == ROLE_CLIENT && env->msg_case == MSG_CONTROLLER_LIST)
        return leader_controller_list(ctl, p, env->id);
    leader_redirect(ctl, p, env->id);
    if (p->role == ROLE_AGENT && p->conn)
        conn_close(p->conn, 0);
    return 0;
}

/* ------------------------------------------------------ the controller list */

typedef struct leader_list_req {
    ctl_t *ctl;
    peer_t *peer;
    uint64_t id;
} leader_list_req_t;

static void leader_send_list(ctl_t *ctl, peer_t *p, uint64_t id, const store_controller_t *list,
                             size_t n)
{
    Envelope env = PB_ENVELOPE_INIT;
    ControllerListReply reply = PB_CONTROLLER_LIST_REPLY_INIT;
    ControllerInfo *infos = calloc(n ? n : 1, sizeof(*infos));
    ControllerInfo **ptrs = calloc(n ? n : 1, sizeof(*ptrs));

    if (!infos || !ptrs) {
        free(infos);
        free(ptrs);
        ctl_send_error(ctl, p, id, ERR_INTERNAL, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        ControllerInfo init = PB_CONTROLLER_INFO_INIT;
        infos[i] = init;
        infos[i].address = (char *)list[i].address;
        infos[i].role = (char *)list[i].role;
        infos[i].store = (char *)list[i].store;
        ptrs[i] = &infos[i];
    }
    reply.controllers = ptrs;
    reply.n_controllers = n;
    env.id = id;
    env.msg_case = MSG_CONTROLLER_LIST_REPLY;
    env.controller_list_reply = &reply;
    ctl_send(ctl, p, &env);
    free(ptrs);
    free(infos);
}

static void leader_on_list(void *arg, int rc, const char *err, const store_controller_t *list,
                           size_t n)
{
    leader_list_req_t *r = arg;

    if (r->peer->conn) {
        if (rc)
            ctl_send_error(r->ctl, r->peer, r->id, ERR_UNAVAILABLE, "%s", err);
        else
            leader_send_list(r->ctl, r->peer, r->id, list, n);
    }
    peer_unref(r->peer);
    free(r);
}

int leader_controller_list(ctl_t *ctl, peer_t *p, uint64_t id)
{
    store_controller_t self;
    leader_list_req_t *r;

    if (!ctl->store->ops->controllers) {
        /* A store of one: this controller, which leads. */
        memset(&self, 0, sizeof(self));
        snprintf(self.address, sizeof(self.address), "%s", ctl->cfg.advertise);
        snprintf(self.role, sizeof(self.role), "leader");
        snprintf(self.store, sizeof(self.store), "%s: healthy", ctl->store->ops->kind);
        leader_send_list(ctl, p, id, &self, 1);
        return 0;
    }
    if (!(r = calloc(1, sizeof(*r)))) {
        ctl_send_error(ctl, p, id, ERR_INTERNAL, "out of memory");
        return 0;
    }
    r->ctl = ctl;
    r->peer = p;
    r->id = id;
    p->refs++;
    if (ctl->store->ops->controllers(ctl->store, leader_on_list, r)) {
        peer_unref(p);
        free(r);
        ctl_send_error(ctl, p, id, ERR_INTERNAL, "out of memory");
    }
    return 0;
}

/* ------------------------------------------------------------------ pings */

void leader_ping_agents(ctl_t *ctl)
{
    Envelope env = PB_ENVELOPE_INIT;
    Ok ok = PB_OK_INIT;

    env.msg_case = MSG_OK;
    env.ok = &ok;
    for (peer_t *p = ctl->peers; p; p = p->next) {
        /* Says nothing of the state: straight out, not through the outbox. */
        if (p->node && p->conn && !conn_is_closing(p->conn) && conn_send(p->conn, &env))
            conn_close(p->conn, SKIFF_ELIMIT);
    }
}
