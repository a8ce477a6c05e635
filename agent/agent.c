/* agent: see agent.h.
 *
 * Three things move independently and meet in agent_try_register(): the
 * engine (ready once ping, /info and the gateway answered), the controller
 * connection (Hello answered with the cluster id), and the runner (its
 * first listing for that cluster done). Registration goes when all three
 * are there, on every (re)connection.
 */
#include "agent.h"
#include "conn.h"
#include "docker.h"
#include "engine.h"
#include "errors.h"
#include "httpc.h"
#include "httpd.h"
#include "lb.h"
#include "log.h"
#include "logstream.h"
#include "metrics.h"
#include "pbutil.h"
#include "prom.h"
#include "runner.h"
#include "stats.h"
#include "wire.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AGENT_BACKOFF_MIN_MS 100
#define AGENT_BACKOFF_MAX_MS 2000
#define AGENT_ENGINE_BACKOFF_MIN_MS 250
#define AGENT_ENGINE_BACKOFF_MAX_MS 5000
#define AGENT_HELLO_TIMEOUT_MS 10000
#define AGENT_MAX_PENDING ((size_t)16 << 20)
#define AGENT_LOGS_BUDGET ((size_t)4 << 20)  /* log data waits behind no more than this */
#define AGENT_MAX_SERVICES 100000
#define AGENT_MAX_CONTROLLERS 16
/* A leader on a shared store pings every second: this long without a
 * frame, it stalled (stopped, cut off), and another may lead. */
#define AGENT_LEADER_SILENCE_MS 4000

enum { ENGINE_PING, ENGINE_INFO, ENGINE_GATEWAY, ENGINE_READY };

struct agent {
    uv_loop_t *loop;
    char *name, *advertise, *token, *socket;
    /* the controllers (--controller A,B,C): tried in turn; a Redirect names
     * the leader, tried first next */
    char controllers[AGENT_MAX_CONTROLLERS][WIRE_HOSTPORT_MAX];
    size_t n_controllers;
    size_t current;             /* the one in the list tried last */
    size_t tried;               /* in this round, without a registration */
    char redirect[WIRE_HOSTPORT_MAX];  /* the leader a follower named, "" none */
    char controller[WIRE_HOSTPORT_MAX]; /* the one connected or connecting to */
    int redirected;             /* the connection ends on a Redirect */
    int pinged;                 /* the controller pings: its silence is watched */
    size_t redirects;           /* followed in a row, without a registration */
    char *token_file;           /* NULL: the token came from the environment */
    Label **labels;             /* from --label, sent at registration */
    size_t n_labels;
    uint64_t heartbeat_ms;
    char *metrics_listen;       /* NULL: no /metrics */

    httpc_t *http;
    httpd_t *metrics;
    stats_t *stats;
    engine_t *engine;
    runner_t *runner;
    lb_t *lb;
    logstreams_t *logs;
    Endpoints *endpoints;       /* the last set pushed, for a balancer made later */
    uint64_t endpoints_version;

    int engine_state;           /* ENGINE_PING .. ENGINE_READY */
    int engine_failures;
    uint64_t engine_backoff_ms;
    engine_info_t info;
    char api[16];
    char gateway[64];
    uv_timer_t engine_timer;

    conn_t *conn;
    int hello_done;
    int register_sent;
    int registered;
    uint64_t register_id;
    uint64_t next_id;
    char cluster[128];
    char node_id[128];
    uint64_t backoff_ms;
    int failures;               /* connection attempts since the last registration */
    uv_timer_t reconnect_timer;
    uv_timer_t heartbeat_timer;
    uv_timer_t flush_timer;

    int closing;
    int pending;                /* closes not yet called back */
    void (*close_done)(void *arg);
    void *close_arg;
};

static void agent_connect(agent_t *a);
static void agent_engine_next(agent_t *a);

/* ------------------------------------------------------------ sending */

static int agent_send(agent_t *a, const Envelope *env)
{
    int rc;

    if (!a->conn)
        return SKIFF_ECLOSED;
    rc = conn_send(a->conn, env);
    if (rc == SKIFF_ELIMIT)
        log_warn("controller connection: the send queue is full; a %s was dropped",
                 wire_msg_name(env->msg_case));
    return rc;
}

static int agent_send_logs(void *arg, const Envelope *env)
{
    agent_t *a = arg;

    if (!a->conn || !a->registered)
        return SKIFF_ECLOSED;
    if (conn_pending(a->conn) > AGENT_LOGS_BUDGET)
        return SKIFF_ELIMIT;
    return conn_send(a->conn, env);
}

static const char *agent_container_of(void *arg, const char *task_id)
{
    agent_t *a = arg;

    return runner_container(a->runner, task_id);
}

static void agent_send_report(agent_t *a, int full)
{
    Envelope env = PB_ENVELOPE_INIT;
    StatusReport sr = PB_STATUS_REPORT_INIT;
    runner_report_t rep;
    LbStats **stats = NULL;
    TaskStats **tstats = NULL;
    size_t n_stats = 0, n_tstats = 0;

    if (!a->registered || runner_report(a->runner, !full, &rep) != 0)
        return;
    if (!full && rep.n == 0)
        return;
    if (full && a->lb && lb_stats(a->lb, &stats, &n_stats) != 0) {
        stats = NULL;
        n_stats = 0;
    }
    if (full && a->stats) {
        stats_sync(a->stats, a->runner);
        if (stats_report(a->stats, &tstats, &n_tstats) != 0)
            n_tstats = 0;
    }
    sr.full = full;
    sr.tasks = rep.tasks;
    sr.n_tasks = rep.n;
    sr.assignments_version = runner_version(a->runner);
    sr.endpoints_version = a->endpoints_version;
    sr.lb_stats = stats;
    sr.n_lb_stats = n_stats;
    sr.stats = tstats;
    sr.n_stats = n_tstats;
    env.msg_case = MSG_STATUS;
    env.status = &sr;
    agent_send(a, &env);
    if (stats)
        lb_stats_free(stats, n_stats);
    if (tstats)
        stats_report_free(tstats, n_tstats);
    runner_report_free(&rep);
}

static void agent_on_flush(uv_timer_t *t)
{
    agent_send_report(t->data, 0);
}

static void agent_on_heartbeat(uv_timer_t *t)
{
    agent_send_report(t->data, 1);
}

/* ------------------------------------------------------------ registration */

static void agent_maybe_start_runner(agent_t *a)
{
    int rc;

    if (a->engine_state != ENGINE_READY || !a->cluster[0] || runner_cluster(a->runner))
        return;
    rc = runner_start(a->runner, a->cluster);
    if (rc)
        log_error("cannot start the task runner: %s", skiff_strerror(rc));
}

static void agent_try_register(agent_t *a)
{
    Envelope env = PB_ENVELOPE_INIT;
    NodeRegister nr = PB_NODE_REGISTER_INIT;
    Resources res = PB_RESOURCES_INIT;
    runner_report_t rep;
    int rc;

    if (!a->conn || !a->hello_done || a->register_sent || a->engine_state != ENGINE_READY ||
        !runner_ready(a->runner))
        return;
    if (runner_report(a->runner, 0, &rep) != 0)
        return;
    res.nano_cpus = a->info.ncpu * 1000000000LL;
    res.memory_bytes = a->info.mem_total;
    nr.name = a->name;
    nr.address = a->advertise;
    nr.gateway = a->gateway;
    nr.labels = a->labels;
    nr.n_labels = a->n_labels;
    nr.resources = &res;
    nr.engine_version = a->info.server_version;
    nr.agent_version = SKIFF_VERSION;
    nr.tasks = rep.tasks;
    nr.n_tasks = rep.n;
    a->register_id = ++a->next_id;
    env.id = a->register_id;
    env.msg_case = MSG_NODE_REGISTER;
    env.node_register = &nr;
    rc = agent_send(a, &env);
    runner_report_free(&rep);
    if (rc) {
        log_warn("cannot send the registration: %s", skiff_strerror(rc));
        conn_close(a->conn, rc);
        return;
    }
    a->register_sent = 1;
    log_debug("registering as %s with %zu task%s", a->name, nr.n_tasks,
              nr.n_tasks == 1 ? "" : "s");
}

/* ------------------------------------------------------------ the runner */

static void agent_on_runner_change(void *arg)
{
    agent_t *a = arg;

    if (a->registered && !a->closing)
        uv_timer_start(&a->flush_timer, agent_on_flush, 0, 0);
}

static void agent_on_runner_ready(void *arg)
{
    agent_try_register(arg);
}

static const runner_ops_t agent_runner_ops = {
    .on_change = agent_on_runner_change,
    .on_ready = agent_on_runner_ready,
};

/* ------------------------------------------------------------ the engine */

static void agent_on_engine_timer(uv_timer_t *t)
{
    agent_engine_next(t->data);
}

static void agent_engine_retry(agent_t *a, const char *what, const engine_result_t *res)
{
    uint64_t wait = a->engine_backoff_ms;

    if (a->engine_failures++ == 0)
        log_warn("the engine does not answer (%s: %s); retrying", what,
                 res && res->message && *res->message ? res->message : "failed");
    else
        log_debug("engine: %s: %s", what, res && res->message ? res->message : "failed");
    a->engine_backoff_ms = wait * 2 > AGENT_ENGINE_BACKOFF_MAX_MS ? AGENT_ENGINE_BACKOFF_MAX_MS
                                                                  : wait * 2;
    uv_timer_start(&a->engine_timer, agent_on_engine_timer, wait, 0);
}

static void agent_engine_ready(agent_t *a)
{
    lb_config_t lbc = { 0 };

    a->engine_state = ENGINE_READY;
    log_info("engine %s (API %s): %" PRId64 " CPUs, %" PRId64 " MiB; bridge gateway %s",
             a->info.server_version, a->api, a->info.ncpu, a->info.mem_total >> 20, a->gateway);
    runner_set_gateway(a->runner, a->gateway);
    lbc.advertise = a->advertise;
    lbc.gateway = a->gateway;
    a->lb = lb_create(a->loop, &lbc);
    if (!a->lb)
        log_error("cannot create the load balancer (advertise %s, gateway %s)", a->advertise,
                  a->gateway);
    else if (a->endpoints && lb_apply(a->lb, a->endpoints) != 0)
        log_warn("load balancer: cannot apply the endpoints: out of memory");
    agent_maybe_start_runner(a);
    agent_try_register(a);
}

static void agent_on_engine(void *arg, const engine_result_t *res)
{
    agent_t *a = arg;
    static const char *const what[] = { "ping", "info", "networks/bridge" };

    if (a->closing)
        return;
    if (res->status) {
        agent_engine_retry(a, what[a->engine_state], res);
        return;
    }
    switch (a->engine_state) {
    case ENGINE_PING:
        snprintf(a->api, sizeof(a->api), "%s", res->text ? res->text : "?");
        a->engine_state = ENGINE_INFO;
        break;
    case ENGINE_INFO:
        a->info = *res->info;
        a->engine_state = ENGINE_GATEWAY;
        break;
    case ENGINE_GATEWAY:
        snprintf(a->gateway, sizeof(a->gateway), "%s", res->text ? res->text : "");
        if (a->engine_failures)
            log_info("the engine answers again");
        agent_engine_ready(a);
        return;
    default:
        return;
    }
    agent_engine_next(a);
}

static void agent_engine_next(agent_t *a)
{
    engine_t *e = a->engine;
    int rc;

    switch (a->engine_state) {
    case ENGINE_PING:
        rc = e->ops->ping(e, agent_on_engine, a);
        break;
    case ENGINE_INFO:
        rc = e->ops->info(e, agent_on_engine, a);
        break;
    case ENGINE_GATEWAY:
        rc = e->ops->gateway(e, agent_on_engine, a);
        break;
    default:
        return;
    }
    if (rc) {
        engine_result_t res = { 0 };
        res.status = rc;
        res.message = skiff_strerror(rc);
        agent_engine_retry(a, "request", &res);
    }
}

/* ------------------------------------------------------------ the controller */

static int agent_cluster_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 100)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
            return 0;
    return 1;
}

static int agent_on_hello_reply(agent_t *a, const HelloReply *hr)
{
    const char *running = runner_cluster(a->runner);

    if (a->hello_done)
        return SKIFF_EPROTO;
    if (!agent_cluster_valid(hr->cluster_id)) {
        log_error("controller %s: a cluster id that is not one; closing", a->controller);
        return SKIFF_EPROTO;
    }
    if ((running && strcmp(running, hr->cluster_id) != 0) ||
        (a->cluster[0] && strcmp(a->cluster, hr->cluster_id) != 0)) {
        /* This agent's containers belong to its first cluster: it never
         * touches them for another. */
        log_error("controller %s is of cluster %s, but this agent serves cluster %s; "
                  "restart the agent to join another cluster",
                  a->controller, hr->cluster_id, a->cluster);
        return SKIFF_EAUTH;
    }
    if (!a->cluster[0])
        snprintf(a->cluster, sizeof(a->cluster), "%s", hr->cluster_id);
    a->hello_done = 1;
    /* The handshake is done; registration may wait for the engine. */
    conn_set_frame_timeout(a->conn, 0);
    log_info("connected to controller %s (cluster %s, controller %s)", a->controller,
             a->cluster, *hr->version ? hr->version : "?");
    agent_maybe_start_runner(a);
    agent_try_register(a);
    return 0;
}

static int agent_on_registered(agent_t *a, uint64_t id, const NodeRegistered *nr)
{
    if (!a->register_sent || id != a->register_id)
        return 0;
    snprintf(a->node_id, sizeof(a->node_id), "%s", nr->node_id);
    a->registered = 1;
    a->failures = 0;
    a->backoff_ms = AGENT_BACKOFF_MIN_MS;
    log_info("registered as node %s (%s)", a->name, a->node_id);
    uv_timer_start(&a->heartbeat_timer, agent_on_heartbeat, a->heartbeat_ms, a->heartbeat_ms);
    return 0;
}

static int agent_on_endpoints(agent_t *a, Envelope *env)
{
    Endpoints *eps = env->endpoints;

    if (eps->n_services > AGENT_MAX_SERVICES) {
        log_warn("endpoints version %" PRIu64 ": too many services; ignored", eps->version);
        return 0;
    }
    /* Keep it (taken from the envelope) for a balancer made later. */
    env->endpoints = NULL;
    env->msg_case = MSG_NOT_SET;
    pb_free(a->endpoints);
    a->endpoints = eps;
    a->endpoints_version = eps->version;
    if (a->lb && lb_apply(a->lb, eps) != 0)
        log_warn("load balancer: cannot apply endpoints version %" PRIu64 ": out of memory",
                 eps->version);
    return 0;
}

/* A controller that does not lead names the one that does: go there. */
static int agent_on_redirect(agent_t *a, const Redirect *r)
{
    char host[WIRE_HOSTPORT_MAX];
    int port;

    if (*r->leader && (strlen(r->leader) >= sizeof(a->redirect) ||
                       wire_parse_hostport(r->leader, host, sizeof(host), &port))) {
        log_warn("controller %s: a redirect to '%.100s', which is not ADDR:PORT; ignored",
                 a->controller, r->leader);
        return SKIFF_EPROTO;
    }
    if (*r->leader && strcmp(r->leader, a->controller) != 0) {
        log_info("controller %s does not lead; the leader is %s", a->controller, r->leader);
        snprintf(a->redirect, sizeof(a->redirect), "%s", r->leader);
    } else {
        log_info("controller %s: no controller leads now; trying the others", a->controller);
        a->redirect[0] = '\0';
    }
    a->redirected = 1;
    return SKIFF_ECLOSED;
}

static int agent_on_message(conn_t *c, Envelope *env)
{
    agent_t *a = conn_data(c);
    int rc = 0;

    if (a->closing)
        goto out_free;
    if (!a->hello_done && env->msg_case != MSG_HELLO_REPLY && env->msg_case != MSG_ERROR &&
        env->msg_case != MSG_REDIRECT) {
        log_warn("controller %s: %s before the handshake; closing", a->controller,
                 wire_msg_name(env->msg_case));
        rc = SKIFF_EPROTO;
        goto out_free;
    }
    switch (env->msg_case) {
    case MSG_HELLO_REPLY:
        rc = agent_on_hello_reply(a, env->hello_reply);
        break;
    case MSG_ERROR:
        log_error("controller %s: %s", a->controller, env->error->message);
        if (!a->registered)
            rc = env->error->code == ERR_AUTH ? SKIFF_EAUTH : SKIFF_EPROTO;
        break;
    case MSG_NODE_REGISTERED:
        rc = agent_on_registered(a, env->id, env->node_registered);
        break;
    case MSG_ASSIGNMENTS:
        if (env->assignments->n_tasks > RUNNER_MAX_TASKS) {
            log_warn("assignment set version %" PRIu64 ": too many tasks; ignored",
                     env->assignments->version);
            break;
        }
        if (runner_apply(a->runner, env->assignments) != 0)
            log_error("cannot apply assignment set version %" PRIu64 ": out of memory",
                      env->assignments->version);
        break;
    case MSG_ENDPOINTS:
        rc = agent_on_endpoints(a, env);
        break;
    case MSG_LOGS_OPEN:
        logstreams_open(a->logs, env->logs_open);
        break;
    case MSG_LOGS_CLOSE:
        logstreams_close(a->logs, env->logs_close->stream);
        break;
    case MSG_REDIRECT:
        rc = agent_on_redirect(a, env->redirect);
        break;
    case MSG_OK:
        /* A leader's ping (id 0): from now on, its silence is watched. */
        if (env->id == 0 && !a->pinged && a->registered) {
            a->pinged = 1;
            conn_set_frame_timeout(a->conn, AGENT_LEADER_SILENCE_MS);
        }
        break;
    default:
        log_warn("controller %s sent %s, which an agent does not take; ignored",
                 a->controller, wire_msg_name(env->msg_case));
        break;
    }
out_free:
    wire_free(env);
    return rc;
}

int agent_token_valid(const char *t)
{
    return strlen(t) == 64 && strspn(t, "0123456789abcdefABCDEF") == 64;
}

int agent_read_token(const char *path, char *out, size_t len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    size_t n;
    int rc = 0;

    if (!f) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return rc;
    }
    n = fread(out, 1, len - 1, f);
    if (ferror(f)) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
    }
    fclose(f);
    out[n] = '\0';
    while (n > 0 && isspace((unsigned char)out[n - 1]))
        out[--n] = '\0';
    if (rc == 0 && !agent_token_valid(out)) {
        rc = SKIFF_EINVAL;
        snprintf(err, errlen, "%s does not hold a join token (64 hex digits)", path);
    }
    return rc;
}

/* Reads the join token file again, before each hello: after a rotation
 * (skiff-controller --rotate-token join, and the new token copied into the
 * file) an agent that reconnects, for instance to a restarted controller,
 * says hello with the new token instead of being refused for ever. A file
 * that can't be read, or holds no token, leaves the token in use. */
static void agent_reread_token(agent_t *a)
{
    char buf[128], err[512];

    if (!a->token_file)
        return;
    if (agent_read_token(a->token_file, buf, sizeof(buf), err, sizeof(err))) {
        log_warn("--join-token-file: %s; the token in use stays", err);
    } else if (strcmp(buf, a->token) != 0) {
        char *fresh = strdup(buf);
        if (fresh) {
            free(a->token);
            a->token = fresh;
            log_info("join token read again from %s: it changed", a->token_file);
        }
    }
    memset(buf, 0, sizeof(buf));
}

static void agent_on_connect(conn_t *c, int status)
{
    agent_t *a = conn_data(c);
    Envelope env = PB_ENVELOPE_INIT;
    Hello hello = PB_HELLO_INIT;

    if (status)
        return; /* on_close follows */
    agent_reread_token(a);
    hello.role = ROLE_AGENT;
    hello.token = a->token;
    hello.version = SKIFF_VERSION;
    env.id = ++a->next_id;
    env.msg_case = MSG_HELLO;
    env.hello = &hello;
    if (conn_send(c, &env) != 0)
        conn_close(c, SKIFF_ECLOSED);
}

static void agent_on_reconnect_timer(uv_timer_t *t)
{
    agent_connect(t->data);
}

static void agent_maybe_done(agent_t *a);

static void agent_on_conn_close(conn_t *c, int err)
{
    agent_t *a = conn_data(c);
    int was_registered = a->registered, redirected = a->redirected;
    uint64_t wait;

    a->conn = NULL;
    a->hello_done = a->register_sent = a->registered = 0;
    a->redirected = a->pinged = 0;
    if (a->closing) {
        a->pending--;
        agent_maybe_done(a);
        return;
    }
    uv_timer_stop(&a->heartbeat_timer);
    uv_timer_stop(&a->flush_timer);
    logstreams_close_all(a->logs);
    if (was_registered)
        a->tried = 0;
    if (was_registered)
        a->redirects = 0;
    if (redirected && a->redirect[0] && ++a->redirects <= a->n_controllers + 1) {
        /* Straight to the leader it named (a few times in a row at most:
         * two followers may each name the other for a moment). */
        uv_timer_start(&a->reconnect_timer, agent_on_reconnect_timer, 0, 0);
        return;
    }
    if (a->redirects > a->n_controllers + 1) {
        a->redirects = 0;
        a->redirect[0] = '\0';
    }
    if (was_registered)
        log_warn("lost the controller %s: %s; reconnecting (tasks keep running)", a->controller,
                 err && err != SKIFF_ECLOSED ? skiff_strerror(err) : "closed");
    if (a->n_controllers > 1 && ++a->tried < a->n_controllers) {
        /* The next one in the list at once; the backoff is per round. */
        a->current = (a->current + 1) % a->n_controllers;
        log_debug("controller %s: %s; trying %s", a->controller,
                  err ? skiff_strerror(err) : "closed", a->controllers[a->current]);
        uv_timer_start(&a->reconnect_timer, agent_on_reconnect_timer, 0, 0);
        return;
    }
    a->tried = 0;
    a->current = (a->current + 1) % a->n_controllers;
    wait = a->backoff_ms;
    a->backoff_ms = wait * 2 > AGENT_BACKOFF_MAX_MS ? AGENT_BACKOFF_MAX_MS : wait * 2;
    if (!was_registered && (a->failures++ == 0 || err == SKIFF_EAUTH))
        log_warn("cannot reach the controller %s: %s; retrying", a->controller,
                 err ? skiff_strerror(err) : "closed");
    else if (!was_registered)
        log_debug("controller %s: %s; retrying in %" PRIu64 " ms", a->controller,
                  err ? skiff_strerror(err) : "closed", wait);
    uv_timer_start(&a->reconnect_timer, agent_on_reconnect_timer, wait, 0);
}

static const conn_ops_t agent_conn_ops = {
    .on_message = agent_on_message,
    .on_connect = agent_on_connect,
    .on_close = agent_on_conn_close,
};

static void agent_connect(agent_t *a)
{
    conn_limits_t limits = { .max_pending = AGENT_MAX_PENDING,
                             .frame_timeout_ms = AGENT_HELLO_TIMEOUT_MS };
    int rc;

    if (a->closing || a->conn)
        return;
    /* The leader a follower named, once; else the list's turn. */
    snprintf(a->controller, sizeof(a->controller), "%s",
             a->redirect[0] ? a->redirect : a->controllers[a->current]);
    a->redirect[0] = '\0';
    a->conn = conn_create(a->loop, &agent_conn_ops, &limits, a);
    if (!a->conn) {
        log_error("out of memory");
        uv_timer_start(&a->reconnect_timer, agent_on_reconnect_timer, AGENT_BACKOFF_MAX_MS, 0);
        return;
    }
    rc = conn_connect(a->conn, a->controller);
    if (rc) {
        /* conn_close calls on_close, which schedules the next attempt. */
        log_debug("connect %s: %s", a->controller, skiff_strerror(rc));
        conn_close(a->conn, rc);
    }
}

/* ------------------------------------------------------------ life */

static char *agent_strdup(const char *s)
{
    return strdup(s ? s : "");
}

static void agent_free(agent_t *a)
{
    for (size_t i = 0; i < a->n_labels; i++)
        pb_free(a->labels[i]);
    free(a->labels);
    free(a->name);
    free(a->advertise);
    free(a->token);
    free(a->token_file);
    free(a->socket);
    free(a->metrics_listen);
    pb_free(a->endpoints);
    free(a);
}

agent_t *agent_create(uv_loop_t *loop, const agent_config_t *cfg)
{
    agent_t *a = calloc(1, sizeof(*a));
    runner_config_t rc = { 0 };

    if (!a)
        return NULL;
    a->loop = loop;
    if (wire_parse_hostlist(cfg->controller ? cfg->controller : "127.0.0.1:7400", 0,
                            a->controllers, AGENT_MAX_CONTROLLERS, &a->n_controllers)) {
        free(a);
        return NULL;
    }
    snprintf(a->controller, sizeof(a->controller), "%s", a->controllers[0]);
    a->name = agent_strdup(cfg->name);
    a->advertise = agent_strdup(cfg->advertise);
    a->token = agent_strdup(cfg->token);
    a->token_file = cfg->token_file ? agent_strdup(cfg->token_file) : NULL;
    a->socket = agent_strdup(cfg->docker_socket);
    a->heartbeat_ms = cfg->heartbeat_ms ? cfg->heartbeat_ms : 1000;
    a->backoff_ms = AGENT_BACKOFF_MIN_MS;
    a->engine_backoff_ms = AGENT_ENGINE_BACKOFF_MIN_MS;
    if (!a->name || !a->advertise || !a->token || !a->socket ||
        (cfg->token_file && !a->token_file))
        goto out_free;
    if (cfg->n_labels) {
        a->labels = calloc(cfg->n_labels, sizeof(*a->labels));
        if (!a->labels)
            goto out_free;
        for (size_t i = 0; i < cfg->n_labels; i++) {
            const char *eq = strchr(cfg->labels[i], '=');
            Label *l = PB_NEW(Label);
            char *key = eq ? strndup(cfg->labels[i], (size_t)(eq - cfg->labels[i])) : NULL;
            int bad = !l || !key || pb_set_str(&l->key, key) || pb_set_str(&l->value, eq + 1);
            free(key);
            if (l)
                a->labels[a->n_labels++] = l;
            if (bad)
                goto out_free;
        }
    }
    a->http = httpc_create(loop);
    if (!a->http)
        goto out_free;
    a->engine = docker_create(loop, a->http, a->socket);
    if (!a->engine)
        goto out_close_http;
    rc.node = a->name;
    rc.advertise = a->advertise;
    rc.gateway = "";
    rc.http = a->http;
    a->runner = runner_create(loop, a->engine, &rc, &agent_runner_ops, a);
    if (!a->runner)
        goto out_close_engine;
    a->logs = logstreams_create(loop, a->engine, agent_container_of, agent_send_logs, a);
    if (!a->logs)
        goto out_close_runner;
    a->stats = stats_create(a->engine, NULL);
    if (!a->stats)
        goto out_close_runner;
    if (cfg->metrics_listen && *cfg->metrics_listen &&
        !(a->metrics_listen = strdup(cfg->metrics_listen)))
        goto out_close_runner;
    uv_timer_init(loop, &a->engine_timer);
    uv_timer_init(loop, &a->reconnect_timer);
    uv_timer_init(loop, &a->heartbeat_timer);
    uv_timer_init(loop, &a->flush_timer);
    a->engine_timer.data = a->reconnect_timer.data = a->heartbeat_timer.data =
        a->flush_timer.data = a;
    return a;

out_close_runner:
    stats_free(a->stats);
    a->stats = NULL;
    logstreams_free(a->logs);
    a->logs = NULL;
    runner_close(a->runner, NULL, NULL);
out_close_engine:
    a->engine->ops->close(a->engine, NULL, NULL);
out_close_http:
    httpc_close(a->http, NULL, NULL);
out_free:
    agent_free(a);
    return NULL;
}

static void agent_on_metrics(void *arg, httpd_req_t *r)
{
    agent_t *a = arg;
    agent_metrics_src_t src = { a->name, a->lb, a->stats, a->engine };
    const char *method = httpd_method(r), *text;
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
    agent_metrics_page(&p, &src);
    text = prom_text(&p, &len);
    if (prom_ok(&p))
        httpd_respond(r, 200, PROM_CONTENT_TYPE, text, len);
    else
        httpd_respond_error(r, 500, "the metrics page did not fit in memory");
    prom_free(&p);
}

int agent_start(agent_t *a)
{
    if (a->metrics_listen) {
        httpd_config_t hc = { .listen = a->metrics_listen, .name = "metrics",
                              .max_body = 4096, .max_connections = 64 };
        char err[256];
        if (!(a->metrics = httpd_start(a->loop, &hc, agent_on_metrics, a, err, sizeof(err)))) {
            log_error("--metrics-listen %s", err);
            return SKIFF_EINVAL;
        }
    }
    log_info("skiff-agent %s: node %s, advertise %s, controller%s %s%s, engine unix://%s",
             SKIFF_VERSION, a->name, a->advertise, a->n_controllers > 1 ? "s" : "",
             a->controllers[0], a->n_controllers > 1 ? " and others" : "", a->socket);
    agent_engine_next(a);
    agent_connect(a);
    return 0;
}

static void agent_maybe_done(agent_t *a)
{
    void (*done)(void *) = a->close_done;
    void *arg = a->close_arg;

    if (a->pending > 0)
        return;
    agent_free(a);
    if (done)
        done(arg);
}

static void agent_on_part_closed(void *arg)
{
    agent_t *a = arg;

    a->pending--;
    agent_maybe_done(a);
}

static void agent_on_timer_closed(uv_handle_t *h)
{
    agent_on_part_closed(h->data);
}

void agent_close(agent_t *a, void (*done)(void *arg), void *arg)
{
    if (a->closing)
        return;
    a->closing = 1;
    a->close_done = done;
    a->close_arg = arg;
    log_info("closing (the tasks keep running)");
    a->pending = 1; /* held until every part has been asked to close */
    logstreams_free(a->logs);
    a->logs = NULL;
    stats_free(a->stats); /* its streams close on the engine, which is still up */
    a->stats = NULL;
    if (a->metrics) {
        a->pending++;
        httpd_close(a->metrics, agent_on_part_closed, a);
        a->metrics = NULL;
    }
    /* The engine first: no engine callback may reach the runner after. */
    a->pending++;
    a->engine->ops->close(a->engine, agent_on_part_closed, a);
    a->pending++;
    runner_close(a->runner, agent_on_part_closed, a);
    if (a->lb) {
        a->pending++;
        lb_close(a->lb, agent_on_part_closed, a);
        a->lb = NULL;
    }
    a->pending++;
    httpc_close(a->http, agent_on_part_closed, a);
    if (a->conn) {
        a->pending++;
        conn_close(a->conn, 0);
    }
    a->pending += 4;
    uv_close((uv_handle_t *)&a->engine_timer, agent_on_timer_closed);
    uv_close((uv_handle_t *)&a->reconnect_timer, agent_on_timer_closed);
    uv_close((uv_handle_t *)&a->heartbeat_timer, agent_on_timer_closed);
    uv_close((uv_handle_t *)&a->flush_timer, agent_on_timer_closed);
    a->pending--;
    agent_maybe_done(a);
}
