/* agents: what agents send (registration, status reports, log data), and
 * node membership: a node is ready while its agent reports, down after the
 * heartbeat timeout, ready again when it returns.
 *
 * Everything an agent sends is checked here, at the edge; past this file
 * the model trusts its contents.
 */
#include "ctl.h"
#include "event.h"
#include "load.h"
#include "wire.h"
#include "errors.h"
#include "log.h"
#include "pbutil.h"

#include <ctype.h>
#include <string.h>
#include <utlist.h>

#define AGENTS_MAX_LABELS 64
#define AGENTS_MAX_STRING 256
#define AGENTS_MAX_LB_STATS 4096
#define AGENTS_MAX_TASK_STATS 4096
#define AGENTS_SUSPECT_MS 3000 /* connect failures make a node suspect this long */
/* After a takeover or a restart, nodes not back yet are not down for their
 * silence while others still come back (one did within the heartbeat
 * timeout), up to this long: 5,000 agents reconnecting each cost a TLS
 * handshake on the loop, 10-25 s for all of them on two loaded cores,
 * far past the heartbeat timeout plus the agents' backoff. */
#define AGENTS_RETURN_MAX_MS 60000

/* Node names are host names: letters, digits, '.', '-', '_'. */
int agents_name_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 253 || !isalnum((unsigned char)s[0]))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr(".-_", s[i]))
            return 0;
    return 1;
}

static int agents_ip_valid(const char *s)
{
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;

    return uv_ip4_addr(s, 0, &a4) == 0 || uv_ip6_addr(s, 0, &a6) == 0;
}

static const char *agents_check_register(const NodeRegister *r)
{
    if (!agents_name_valid(r->name))
        return "name: must be 1 to 253 letters, digits, '.', '-' or '_'";
    if (!agents_ip_valid(r->address))
        return "address: not an IP address";
    if (*r->gateway && !agents_ip_valid(r->gateway))
        return "gateway: not an IP address";
    if (r->n_labels > AGENTS_MAX_LABELS)
        return "labels: too many";
    for (size_t i = 0; i < r->n_labels; i++)
        if (!r->labels[i] || !*r->labels[i]->key || strlen(r->labels[i]->key) > AGENTS_MAX_STRING ||
            strlen(r->labels[i]->value) > AGENTS_MAX_STRING)
            return "labels: an empty or too long key or value";
    if (strlen(r->engine_version) > AGENTS_MAX_STRING ||
        strlen(r->agent_version) > AGENTS_MAX_STRING)
        return "version: too long";
    return NULL;
}

static int agents_status_valid(const TaskStatus *s)
{
    return s && s->state >= TASK_NEW && s->state <= TASK_REMOVED && s->health >= HEALTH_NONE &&
           s->health <= HEALTH_UNHEALTHY && strlen(s->message) <= 4096 &&
           strlen(s->container_id) <= 128 && s->n_ports <= 128;
}

static int agents_ports_equal(const Task *t, const TaskStatus *s)
{
    if (t->n_ports != s->n_ports)
        return 0;
    for (size_t i = 0; i < s->n_ports; i++)
        if (!s->ports[i] || t->ports[i]->target != s->ports[i]->target ||
            t->ports[i]->host_port != s->ports[i]->host_port)
            return 0;
    return 1;
}

static void agents_copy_ports(Task *t, const TaskStatus *s)
{
    for (size_t i = 0; i < t->n_ports; i++)
        pb_free(t->ports[i]);
    free(t->ports);
    t->ports = NULL;
    t->n_ports = 0;
    for (size_t i = 0; i < s->n_ports; i++) {
        PortMapping *pm = s->ports[i] ? pb_dup(s->ports[i]) : NULL;
        if (pm && pb_push_msg(&t->n_ports, (void ***)&t->ports, pm))
            pb_free(pm);
    }
}

/* Applies one reported status. */
/* The task a status names. *hint is where the node's list is expected to go
 * on (agents report in the order of their assignments, which is the list's):
 * with 100,000 tasks a second reported, the lookups in the table of all
 * tasks were a fifth of the controller's steady time, mostly cache misses.
 * The id is compared in full either way. */
static task_t *agents_find(ctl_t *ctl, task_t **hint, const char *id)
{
    task_t *t = *hint;

    if (!t || strcmp(t->pb->id, id) != 0)
        t = model_task_by_id(&ctl->model, id);
    *hint = t ? t->node_next : NULL;
    return t;
}

static void agents_apply(ctl_t *ctl, node_t *node, const TaskStatus *s, unsigned gen,
                         task_t **hint)
{
    task_t *t = agents_find(ctl, hint, s->task_id);
    Task *pb;
    int was_ready, was_terminal;

    if (!t || t->node != node) {
        log_debug("node %s reports task %.32s, not one of its tasks", node->pb->name, s->task_id);
        return;
    }
    t->report_gen = gen;
    pb = t->pb;
    if (pb->state == TASK_ORPHANED && pb->desired_state != DESIRED_RUNNING &&
        !model_state_terminal(s->state))
        return; /* replaced while its node was down: it stays out of the node's set, and
                   the agent removes its container */
    if (pb->state == s->state && pb->health == s->health && pb->exit_code == s->exit_code &&
        pb->restarts == s->restarts && strcmp(pb->container_id, s->container_id) == 0 &&
        strcmp(pb->message, s->message) == 0 && agents_ports_equal(pb, s))
        return;
    was_ready = model_task_ready(t);
    was_terminal = model_state_terminal(pb->state);
    if (pb->state != s->state)
        pb->state_since_ms = model_wall_ms();
    pb->state = s->state;
    pb->health = s->health;
    pb->exit_code = s->exit_code;
    pb->restarts = s->restarts;
    pb_set_str(&pb->container_id, s->container_id);
    pb_set_str(&pb->message, s->message);
    if (!agents_ports_equal(pb, s))
        agents_copy_ports(pb, s);
    if (model_task_ready(t)) {
        if (!pb->ready_since_ms)
            pb->ready_since_ms = model_wall_ms();
    } else {
        pb->ready_since_ms = 0;
    }
    model_touch_task(&ctl->model, t);
    if (was_ready != model_task_ready(t) || was_terminal != model_state_terminal(pb->state) ||
        pb->desired_state != DESIRED_RUNNING || pb->restarts || pb->health == HEALTH_UNHEALTHY) {
        orch_mark(t->svc);
        ctl->endpoints_check = 1;
    }
    if (model_state_terminal(pb->state) && !was_terminal) {
        ctl->sched_needed = 1; /* its reservation is free */
        if (pb->desired_state != DESIRED_RUNNING)
            node->assign_dirty = 1; /* it leaves the node's set */
    }
}

/* After a full report: tasks told to stop that the agent no longer has are
 * gone. */
static void agents_missing(ctl_t *ctl, node_t *node, unsigned gen)
{
    task_t *t;

    DL_FOREACH2(node->tasks, t, node_next) {
        if (t->report_gen == gen || t->pb->desired_state == DESIRED_RUNNING ||
            model_state_terminal(t->pb->state) || t->pb->state == TASK_NEW ||
            t->pb->state == TASK_PENDING)
            continue;
        orch_set_state(ctl, t, TASK_SHUTDOWN, "container gone");
        orch_mark(t->svc);
        ctl->sched_needed = 1;
    }
}

static void agents_node_ready(ctl_t *ctl, node_t *node, const char *action, const char *how)
{
    if (node->pb->state == NODE_READY)
        return;
    node->pb->state = NODE_READY;
    node->ready_since_ms = ctl_now(ctl);
    model_touch_node(&ctl->model, node);
    {
        Event *e = ctl_event_node(ctl, action, node);
        if (e)
            event_attr(e, "address", "%s", node->pb->address);
        ctl_emit(ctl, e, "%s", how);
    }
    orch_mark_node(node);
    ctl->sched_needed = 1;
    ctl->endpoints_check = 1;
}

/* Other nodes' balancers failed to connect to backends on this address:
 * the node behind it is suspect. */
static void agents_suspect(ctl_t *ctl, const node_t *reporter, const char *address)
{
    for (node_t *n = ctl->model.nodes; n; n = n->hh.next)
        if (n != reporter && strcmp(n->pb->address, address) == 0)
            n->suspect_ms = ctl_now(ctl);
}

static void agents_keep_stats(ctl_t *ctl, node_t *node, const StatusReport *r)
{
    size_t n = r->n_lb_stats < AGENTS_MAX_LB_STATS ? r->n_lb_stats : AGENTS_MAX_LB_STATS;

    for (size_t i = 0; i < node->n_lb_stats; i++)
        pb_free(node->lb_stats[i]);
    free(node->lb_stats);
    node->lb_stats = NULL;
    node->n_lb_stats = 0;
    for (size_t i = 0; i < n; i++) {
        LbStats *s = r->lb_stats[i] ? pb_dup(r->lb_stats[i]) : NULL;
        if (s && pb_push_msg(&node->n_lb_stats, (void ***)&node->lb_stats, s))
            pb_free(s);
    }
    if (load_node_report(node, r->lb_stats, n, model_wall_ms()))
        log_warn("node %s: out of memory keeping its balancers' figures", node->pb->name);
    for (load_lb_t *lb = node->load; lb; lb = lb->hh.next)
        for (size_t i = 0; i < lb->n; i++)
            if (lb->backends[i].failed_now) {
                char addr[128];
                snprintf(addr, sizeof(addr), "%s", lb->backends[i].backend);
                if (strrchr(addr, ':'))
                    *strrchr(addr, ':') = '\0';
                agents_suspect(ctl, node, addr);
            }
    /* the engine's figures of its running tasks (only its own) */
    for (size_t i = 0; i < r->n_stats && i < AGENTS_MAX_TASK_STATS; i++) {
        task_t *t = model_task_by_id(&ctl->model, r->stats[i]->task_id);
        if (t && t->node == node && load_task_report(t, r->stats[i]))
            log_warn("node %s: out of memory keeping a task's figures", node->pb->name);
    }
}

/* A registering agent can't know yet the health its HTTP probes will find
 * (the probe comes with the assignment set, after the registration): for a
 * container the controller already knows, its last health stands until the
 * agent's probes say otherwise, so a returning agent doesn't drop healthy
 * backends from every balancer for a moment. */
static void agents_keep_health(ctl_t *ctl, TaskStatus *s)
{
    const task_t *t = model_task_by_id(&ctl->model, s->task_id);

    if (t && s->health == HEALTH_NONE && s->state == TASK_RUNNING &&
        t->pb->state == TASK_RUNNING && *s->container_id &&
        strcmp(s->container_id, t->pb->container_id) == 0 &&
        model_spec_has_check(model_service_spec(t->svc, t->pb->spec_version)))
        s->health = t->pb->health;
}

static void agents_report(ctl_t *ctl, node_t *node, TaskStatus **tasks, size_t n, int full,
                          int registering)
{
    static unsigned gen;
    task_t *hint;

    gen++;
    node->last_seen_ms = ctl_now(ctl);
    if (registering)
        node->back_ms = ctl->node_back_ms = ctl_now(ctl);
    node->pb->last_heartbeat_ms = model_wall_ms(); /* shown, not stored each beat */
    agents_node_ready(ctl, node, "up", "ready again");
    hint = node->tasks;
    for (size_t i = 0; i < n; i++) {
        if (!agents_status_valid(tasks[i]))
            continue;
        if (registering)
            agents_keep_health(ctl, tasks[i]);
        agents_apply(ctl, node, tasks[i], gen, &hint);
    }
    if (full)
        agents_missing(ctl, node, gen);
}

static int agents_register(ctl_t *ctl, peer_t *p, uint64_t id, const NodeRegister *r)
{
    Envelope env = PB_ENVELOPE_INIT;
    NodeRegistered reply = PB_NODE_REGISTERED_INIT;
    const char *bad = agents_check_register(r);
    node_t *node;
    Node *pb;
    int fresh;

    if (bad) {
        log_warn("%s: registration refused: %s", conn_peer(p->conn), bad);
        ctl_send_error(ctl, p, id, ERR_INVALID, "%s", bad);
        return 0;
    }
    if (p->node) {
        ctl_send_error(ctl, p, id, ERR_PROTOCOL, "already registered as %s", p->node->pb->name);
        return 0;
    }
    /* The node is the one its certificate names, never the one it says. */
    node = model_node_by_id(&ctl->model, p->node_id);
    if (!node) {
        log_warn("%s: registration refused: node %s is not in the cluster (removed?)",
                 conn_peer(p->conn), p->node_id);
        conn_send_error(p->conn, id, ERR_NOT_FOUND, "node %s is not in the cluster: join again",
                        p->node_id);
        conn_close(p->conn, 0);
        return 0;
    }
    if (strcmp(node->pb->name, r->name) != 0) {
        /* Its reply goes at once, and the connection with it: an error
         * depends on no change to commit. */
        log_warn("%s: registration refused: the certificate of node %s (%s) claims the name %s",
                 conn_peer(p->conn), node->pb->name, node->pb->id, r->name);
        conn_send_error(p->conn, id, ERR_AUTH, "this certificate is node %s's, not %s's",
                        node->pb->name, r->name);
        conn_close(p->conn, 0);
        return 0;
    }
    fresh = !*node->pb->address; /* joined, never registered */
    if (node->peer && node->peer != p) {
        /* The same agent, with its certificate: its old connection goes. */
        peer_t *old = node->peer;
        log_warn("node %s registers again from %s; closing its old connection from %s",
                 r->name, conn_peer(p->conn), old->conn ? conn_peer(old->conn) : "?");
        old->node = NULL;
        if (old->conn)
            conn_close(old->conn, 0);
    }
    pb = node->pb;
    pb_set_str(&pb->address, r->address);
    pb_set_str(&pb->gateway, r->gateway);
    pb_set_str(&pb->engine_version, r->engine_version);
    pb_set_str(&pb->agent_version, r->agent_version);
    for (size_t i = 0; i < pb->n_labels; i++)
        pb_free(pb->labels[i]);
    free(pb->labels);
    pb->labels = NULL;
    pb->n_labels = 0;
    for (size_t i = 0; i < r->n_labels; i++) {
        Label *l = pb_dup(r->labels[i]);
        if (!l || pb_push_msg(&pb->n_labels, (void ***)&pb->labels, l))
            pb_free(l);
    }
    pb_free(pb->resources);
    pb->resources = r->resources ? pb_dup(r->resources) : PB_NEW(Resources);
    model_touch_node(&ctl->model, node);
    node->peer = p;
    node->gone_ms = 0;
    node->suspect_ms = 0;
    p->node = node;
    node->assign_dirty = 1;
    p->wants_endpoints = 1;
    ctl->endpoints_wanted = 1;
    ctl->sched_needed = 1;
    agents_node_ready(ctl, node, fresh ? "join" : "up", fresh ? "joined" : "registered again");
    reply.node_id = pb->id;
    reply.cluster_id = ctl->model.cluster_id;
    env.id = id;
    env.msg_case = MSG_NODE_REGISTERED;
    env.node_registered = &reply;
    ctl_send(ctl, p, &env);
    agents_report(ctl, node, r->tasks, r->n_tasks, 1, 1);
    orch_mark_node(node);
    certs_registered(ctl, p);
    return 0;
}

int agents_handle(ctl_t *ctl, peer_t *p, Envelope *env)
{
    switch (env->msg_case) {
    case MSG_NODE_REGISTER:
        return agents_register(ctl, p, env->id, env->node_register);
    case MSG_STATUS:
        if (!p->node) {
            log_warn("%s: status before registration; closing", conn_peer(p->conn));
            return SKIFF_EPROTO;
        }
        agents_report(ctl, p->node, env->status->tasks, env->status->n_tasks,
                      env->status->full, 0);
        if (env->status->full)
            agents_keep_stats(ctl, p->node, env->status);
        return 0;
    case MSG_LOGS_DATA:
    case MSG_LOGS_CLOSE:
        logs_from_agent(ctl, p, env);
        return 0;
    case MSG_CERT_RENEW:
        return certs_renew(ctl, p, env->id, env->cert_renew);
    default:
        log_warn("%s: agent sent %s; closing", conn_peer(p->conn), wire_msg_name(env->msg_case));
        return SKIFF_EPROTO;
    }
}

void agents_gone(ctl_t *ctl, peer_t *p)
{
    if (p->node && p->node->peer == p) {
        log_info("node %s: agent disconnected", p->node->pb->name);
        p->node->peer = NULL;
        p->node->gone_ms = ctl_now(ctl); /* down after the grace, unless it is back */
        ctl->sched_needed = 1;
    }
    p->node = NULL;
}

/* 1 while the agents still come back after a takeover (AGENTS_RETURN_MAX_MS). */
static int agents_returning(const ctl_t *ctl, int64_t now)
{
    return ctl->node_back_ms && now - ctl->node_back_ms <= ctl->cfg.heartbeat_timeout_ms &&
           now - ctl->lead_ms < AGENTS_RETURN_MAX_MS;
}

/* Why a ready node is down now, or NULL while it is not. Besides a
 * heartbeat timeout, what the controller learns at once: its agent's
 * connection closed (an agent killed, its machine's kernel resetting the
 * connection) and it did not come back within the grace; or the other
 * nodes' balancers fail to connect to its containers while it is silent (a
 * machine gone with nothing to close the connection). A paused agent whose
 * containers still serve meets neither and keeps its tasks until the
 * heartbeat timeout. */
static const char *agents_down_why(const ctl_t *ctl, const node_t *node, int64_t now)
{
    int64_t silent = now - node->last_seen_ms;

    if (!node->back_ms && agents_returning(ctl, now))
        return NULL;
    if (silent > ctl->cfg.heartbeat_timeout_ms)
        return "no heartbeat";
    if (!node->peer && node->gone_ms && now - node->gone_ms >= ctl->cfg.disconnect_grace_ms)
        return "its agent's connection closed";
    if (node->suspect_ms && now - node->suspect_ms <= AGENTS_SUSPECT_MS &&
        silent > ctl->cfg.disconnect_grace_ms)
        return "silent, and other nodes cannot reach its containers";
    return NULL;
}

void agents_check_heartbeats(ctl_t *ctl)
{
    int64_t now = ctl_now(ctl);
    int64_t last = ctl->heartbeats_checked_ms;
    node_t *node, *tmp;
    task_t *t;

    ctl->heartbeats_checked_ms = now;
    /* A loop that stalled (a long commit, a huge request) has not read the
     * reports waiting in its sockets yet: check again once it has. */
    if (last && now - last > ctl->cfg.heartbeat_timeout_ms / 2)
        return;
    HASH_ITER(hh, ctl->model.nodes, node, tmp) {
        const char *why = agents_down_why(ctl, node, now);
        if (node->pb->state != NODE_READY || !why)
            continue;
        node->pb->state = NODE_DOWN;
        node->ready_since_ms = 0;
        model_touch_node(&ctl->model, node);
        {
            Event *e = ctl_event_node(ctl, "down", node);
            if (e && (event_attr(e, "silent_ms", "%lld", (long long)(now - node->last_seen_ms)) ||
                      event_attr(e, "why", "%s", why)))
                e = (pb_free(e), NULL);
            ctl_emit(ctl, e, "%s (silent for %lld ms)", why,
                     (long long)(now - node->last_seen_ms));
        }
        DL_FOREACH2(node->tasks, t, node_next)
            if (t->pb->desired_state == DESIRED_RUNNING && !model_state_terminal(t->pb->state))
                orch_set_state(ctl, t, TASK_ORPHANED, "node down");
        orch_mark_node(node);
        ctl->sched_needed = 1;
        ctl->endpoints_check = 1;
    }
}
