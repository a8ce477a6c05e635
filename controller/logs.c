/* logs: `skiff service logs`, relayed. The controller asks each agent that
 * runs a task of the service for its containers' logs (LogsOpen), passes
 * what comes back to the client with the client's request id, and ends the
 * stream (LogsClose) when every agent has ended its part, or at once for
 * all when the client goes away. Nothing here is stored.
 *
 * A client that reads slower than the agents send loses data rather than
 * growing the controller's memory: past half its output bound, data is
 * dropped and counted, and the client is told how much.
 */
#include "ctl.h"
#include "errors.h"
#include "log.h"
#include "pbutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#define LOGS_MAX_AGENTS 1024

struct logstream {
    uint64_t stream;      /* the id the agents see */
    peer_t *client;
    uint64_t request_id;  /* the id the client sees */
    size_t n_agents;
    peer_t **agents;      /* NULL once that agent ended its part */
    uint64_t dropped;
    logstream_t *next;
};

static void logs_send_close(ctl_t *ctl, peer_t *to, uint64_t id, uint64_t stream, const char *why)
{
    Envelope env = PB_ENVELOPE_INIT;
    LogsClose lc = PB_LOGS_CLOSE_INIT;

    lc.stream = stream;
    lc.message = (char *)(why ? why : "");
    env.id = id;
    env.msg_case = MSG_LOGS_CLOSE;
    env.logs_close = &lc;
    ctl_send(ctl, to, &env);
}

static void logs_free(ctl_t *ctl, logstream_t *ls)
{
    LL_DELETE(ctl->logstreams, ls);
    for (size_t i = 0; i < ls->n_agents; i++)
        if (ls->agents[i])
            peer_unref(ls->agents[i]);
    peer_unref(ls->client);
    free(ls->agents);
    free(ls);
}

/* Ends the stream for the client when no agent part is left. */
static void logs_maybe_done(ctl_t *ctl, logstream_t *ls)
{
    char why[128] = "";

    for (size_t i = 0; i < ls->n_agents; i++)
        if (ls->agents[i])
            return;
    if (ls->dropped)
        snprintf(why, sizeof(why), "%llu bytes of logs dropped: the client read too slowly",
                 (unsigned long long)ls->dropped);
    logs_send_close(ctl, ls->client, ls->request_id, ls->request_id, why);
    logs_free(ctl, ls);
}

int logs_request(ctl_t *ctl, peer_t *client, uint64_t id, const LogsRequest *req)
{
    Envelope env = PB_ENVELOPE_INIT;
    LogsOpen open = PB_LOGS_OPEN_INIT;
    int ambiguous;
    service_t *svc = model_service_find(&ctl->model, req->service, &ambiguous);
    logstream_t *ls;
    node_t *node, *tmp;
    task_t *t;

    if (!svc) {
        ctl_send_error(ctl, client, id, ERR_NOT_FOUND, ambiguous ? "service %.100s is ambiguous"
                       : "no such service: %.100s", req->service);
        return 0;
    }
    ls = calloc(1, sizeof(*ls));
    if (!ls || !(ls->agents = calloc(LOGS_MAX_AGENTS, sizeof(*ls->agents)))) {
        free(ls);
        ctl_send_error(ctl, client, id, ERR_INTERNAL, "out of memory");
        return 0;
    }
    ls->stream = ++ctl->next_stream;
    ls->client = client;
    ls->request_id = id;
    client->refs++;
    LL_PREPEND(ctl->logstreams, ls);
    HASH_ITER(hh, ctl->model.nodes, node, tmp) {
        LogsTask *items, **ptrs;
        size_t n = 0, count = 0;
        char (*names)[160];

        if (!node->peer || ls->n_agents == LOGS_MAX_AGENTS)
            continue;
        DL_FOREACH2(node->tasks, t, node_next)
            count += t->svc == svc && *t->pb->container_id;
        if (!count)
            continue;
        items = calloc(count, sizeof(*items));
        ptrs = calloc(count, sizeof(*ptrs));
        names = calloc(count, sizeof(*names));
        if (items && ptrs && names) {
            DL_FOREACH2(node->tasks, t, node_next) {
                if (t->svc != svc || !*t->pb->container_id)
                    continue;
                skiff__v1__logs_task__init(&items[n]);
                snprintf(names[n], sizeof(names[n]), "%s.%u.%s", t->pb->service_name,
                         t->pb->slot, t->pb->id);
                items[n].task_id = t->pb->id;
                items[n].name = names[n];
                ptrs[n] = &items[n];
                n++;
            }
            open.stream = ls->stream;
            open.n_tasks = n;
            open.tasks = ptrs;
            open.follow = req->follow;
            open.tail = req->tail;
            env.msg_case = MSG_LOGS_OPEN;
            env.logs_open = &open;
            ctl_send(ctl, node->peer, &env);
            ls->agents[ls->n_agents++] = node->peer;
            node->peer->refs++;
        }
        free(items);
        free(ptrs);
        free(names);
    }
    logs_maybe_done(ctl, ls);
    return 0;
}

static logstream_t *logs_find(ctl_t *ctl, uint64_t stream, peer_t *agent, size_t *slot)
{
    for (logstream_t *ls = ctl->logstreams; ls; ls = ls->next) {
        if (ls->stream != stream)
            continue;
        for (size_t i = 0; i < ls->n_agents; i++) {
            if (ls->agents[i] == agent) {
                *slot = i;
                return ls;
            }
        }
    }
    return NULL;
}

void logs_from_agent(ctl_t *ctl, peer_t *agent, Envelope *env)
{
    uint64_t stream = env->msg_case == MSG_LOGS_DATA ? env->logs_data->stream
                                                     : env->logs_close->stream;
    size_t slot;
    logstream_t *ls = logs_find(ctl, stream, agent, &slot);

    if (!ls) {
        /* The client left: tell the agent to stop, once. */
        if (env->msg_case == MSG_LOGS_DATA)
            logs_send_close(ctl, agent, 0, stream, "no reader");
        return;
    }
    if (env->msg_case == MSG_LOGS_CLOSE) {
        ls->agents[slot] = NULL;
        peer_unref(agent);
        logs_maybe_done(ctl, ls);
        return;
    }
    if (ls->client->local ? ls->client->local_pending(ls->client) > ctl->cfg.max_pending / 2
                          : !ls->client->conn ||
                                conn_pending(ls->client->conn) > ctl->cfg.max_pending / 2) {
        ls->dropped += env->logs_data->data.len;
        return;
    }
    env->id = ls->request_id;
    env->logs_data->stream = ls->request_id;
    ctl_send(ctl, ls->client, env);
}

void logs_peer_gone(ctl_t *ctl, peer_t *p)
{
    logstream_t *ls, *tmp;

    LL_FOREACH_SAFE(ctl->logstreams, ls, tmp) {
        if (ls->client == p) {
            for (size_t i = 0; i < ls->n_agents; i++)
                if (ls->agents[i] && ls->agents[i]->conn)
                    logs_send_close(ctl, ls->agents[i], 0, ls->stream, "client gone");
            logs_free(ctl, ls);
            continue;
        }
        for (size_t i = 0; i < ls->n_agents; i++) {
            if (ls->agents[i] == p) {
                ls->agents[i] = NULL;
                peer_unref(p);
            }
        }
        logs_maybe_done(ctl, ls);
    }
}
