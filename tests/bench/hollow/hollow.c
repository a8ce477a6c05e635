/* skiff-bench-hollow: hollow nodes for benchmarks. NOT an agent.
 *
 * One process, one libuv loop, N simulated agents. Each one speaks the real
 * wire protocol to the controller (docs/protocol.md) over its own
 * connection, with the real handshake: Hello{ROLE_AGENT, join token},
 * NodeRegister (name PREFIX-i, an address, resources, labels), then a full
 * StatusReport every heartbeat interval, staggered across the nodes. It
 * "runs" the tasks it is assigned without any container: a new
 * desired-running task is reported TASK_STARTING at once and TASK_RUNNING
 * (or, for a fraction of them, TASK_FAILED) after --start-delay; a task told
 * to stop is reported TASK_SHUTDOWN (TASK_REMOVED) after --stop-delay; a
 * task that leaves the set is forgotten. Like a real agent it reconnects
 * with backoff when the controller goes away, and registers again with the
 * tasks it still "runs".
 *
 * It exists to measure the controller alone, as kubemark's hollow nodes and
 * nomad-nodesim do (tests/bench/scale). It is never used in place of
 * skiff-agent in the e2e tests: it has no engine, no load balancer, no
 * health checks, no restart policy and no logs.
 *
 * Memory is bounded: tasks per node (--max-tasks), frames and queued output
 * per connection (conn.h). Nothing blocks the loop.
 */
#include "conn.h"
#include "duration.h"
#include "errors.h"
#include "log.h"
#include "wire.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uthash.h>
#include <uv.h>

#define HOLLOW_ID_MAX 64          /* longest task id accepted from a set */
#define HOLLOW_MAX_LABELS 16
#define HOLLOW_BACKOFF_MIN_MS 100 /* as the real agent: 100 ms doubling to 2 s */
#define HOLLOW_BACKOFF_MAX_MS 2000
#define HOLLOW_HANDSHAKE_MS 10000 /* no HelloReply / NodeRegistered: reconnect */
#define HOLLOW_FAIL_MESSAGE "hollow: simulated start failure"

static const char usage[] =
    "Usage: skiff-bench-hollow [OPTIONS]\n"
    "\n"
    "A BENCHMARK TOOL, not an agent: simulates N skiff agents (hollow nodes) in\n"
    "one process, over the real protocol and token handshake, to load a\n"
    "controller (tests/bench/scale). No containers are run: assigned tasks are\n"
    "reported starting, then running after --start-delay; stopped tasks are\n"
    "reported shut down after --stop-delay.\n"
    "\n"
    "Options:\n"
    "  --controller ADDR:PORT       the controller (default 127.0.0.1:7400)\n"
    "  --join-token-file FILE       the join token (or SKIFF_JOIN_TOKEN)\n"
    "  --nodes N                    hollow nodes to run (default 100)\n"
    "  --prefix PREFIX              node names are PREFIX-1 .. PREFIX-N (default hollow)\n"
    "  --address ADDR               every node's advertise address (default: node i\n"
    "                               gets 127.0.x.y, spread over 127.0.1.1 ..)\n"
    "  --cpus N                     CPUs each node reports (default 8)\n"
    "  --memory BYTES               memory each node reports (default 34359738368)\n"
    "  --label KEY=VALUE            a label on every node (repeatable)\n"
    "  --zones N                    also label node i zone=zI%N (default 0: none)\n"
    "  --heartbeat-interval DUR     full status report period (default 1s)\n"
    "  --start-delay DUR            starting -> running (default 100ms)\n"
    "  --stop-delay DUR             told to stop -> shutdown (default 100ms)\n"
    "  --fail-ratio R               fraction of starts that fail (default 0)\n"
    "  --max-tasks N                tasks kept per node; more are ignored (default 10000)\n"
    "  --max-connecting N           TCP connects in flight at once, to stay within the\n"
    "                               controller's listen backlog (default 256)\n"
    "  --die-at DUR                 every node dies at this time after start: all\n"
    "                               connections close, nothing is reported (also SIGUSR1)\n"
    "  --revive-after DUR           dead nodes come back after this long (also SIGUSR2;\n"
    "                               default: never); they register with their tasks\n"
    "  --duration DUR               exit after this long (default: until SIGINT/SIGTERM)\n"
    "  --stats-interval DUR         a stats line on stderr this often (default 10s; 0: off)\n"
    "  --seed N                     seed for --fail-ratio and jitter (default: time)\n"
    "  --log-level LEVEL            debug, info, warn or error (default info)\n"
    "  -h, --help                   print this help and exit\n";

typedef struct hollow hollow_t;
typedef struct hnode hnode_t;

typedef struct htask {
    char id[HOLLOW_ID_MAX + 1];
    hnode_t *node;         /* NULL once dropped from the set (freed when unqueued) */
    TaskState state;
    DesiredState desired;
    int32_t exit_code;
    int64_t since_ms;      /* wall clock, when the state began */
    uint32_t gen;          /* bumped when a queued transition no longer applies */
    unsigned queued;       /* entries of the delay queues that point here */
    unsigned seen;         /* scratch: in the set being applied */
    int changed;           /* on its node's change list */
    struct htask *change_next;
    UT_hash_handle hh;     /* node->tasks, by id */
} htask_t;

enum hnode_phase { HN_IDLE, HN_WAITING, HN_CONNECTING, HN_HELLO, HN_REGISTERING, HN_READY };

struct hnode {
    hollow_t *h;
    unsigned index;        /* 0 .. N-1 */
    char name[96];
    char address[48];
    char zone[32];
    enum hnode_phase phase;
    conn_t *conn;          /* NULL while idle */
    uv_timer_t timer;      /* heartbeats while ready; reconnection while idle */
    int64_t backoff_ms;
    htask_t *tasks;
    size_t n_tasks;
    uint64_t assignments_version, endpoints_version;
    unsigned set_gen;
    htask_t *changes;      /* tasks whose status changed, to report at once */
    hnode_t *wait_next;    /* the queue of nodes waiting to connect */
    hnode_t *dirty_next;   /* nodes with changes, in a delay queue's pass */
    int dirty;
};

/* A transition due at a time. Delays are constant per queue, so each queue
 * is in due order: a ring, drained from the head by one timer. */
typedef struct hdelay {
    int64_t due;           /* uv_now */
    htask_t *task;
    uint32_t gen;
} hdelay_t;

typedef struct hqueue {
    hollow_t *h;
    uv_timer_t timer;
    hdelay_t *ring;
    size_t cap, head, n;
    int64_t delay_ms;
    int stopping;          /* 1: the stop queue, 0: the start queue */
} hqueue_t;

typedef struct hollow_config {
    char controller[128];
    char token[256];
    unsigned nodes;
    char prefix[64];
    char address[48];
    int64_t nano_cpus, memory;
    const char *labels[HOLLOW_MAX_LABELS];
    size_t n_labels;
    unsigned zones;
    int64_t heartbeat_ms, start_delay_ms, stop_delay_ms;
    double fail_ratio;
    size_t max_tasks;
    unsigned max_connecting;
    int64_t die_at_ms, revive_after_ms, duration_ms, stats_ms;
    unsigned seed;
} hollow_config_t;

struct hollow {
    uv_loop_t *loop;
    hollow_config_t cfg;
    hnode_t *nodes;
    hnode_t *wait_head, *wait_tail;
    unsigned connecting;
    int dead, stopping;
    hqueue_t startq, stopq;
    uv_timer_t die_timer, revive_timer, end_timer, stats_timer;
    uv_signal_t sigint, sigterm, sigusr1, sigusr2;
    Label *labels;         /* the nodes' labels, shared by every NodeRegister */
    Label **label_ptrs;
    size_t n_labels;
    /* scratch for reports, as large as the largest node's task table */
    TaskStatus *st;
    TaskStatus **st_ptrs;
    size_t st_cap;
    /* counters, for the stats line */
    uint64_t registrations, reconnects, reports, changes, sets, failures, send_errors;
};

static uint64_t hollow_rand_state;

/* xorshift64*: a fast PRNG that's good enough for jitter and failures. */
static uint64_t hollow_rand(void)
{
    hollow_rand_state ^= hollow_rand_state >> 12;
    hollow_rand_state ^= hollow_rand_state << 25;
    hollow_rand_state ^= hollow_rand_state >> 27;
    return hollow_rand_state * 2685821657736338717ULL;
}

static double hollow_rand01(void)
{
    return (double)(hollow_rand() >> 11) / (double)(1ULL << 53);
}

static int64_t hollow_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t hollow_now(const hollow_t *h)
{
    return (int64_t)uv_now(h->loop);
}

/* ---------------------------------------------------------------- tasks */

static void hollow_task_release(htask_t *t)
{
    if (!t->node && t->queued == 0)
        free(t);
}

/* Drops a task from its node (it left the set). */
static void hollow_task_drop(hnode_t *n, htask_t *t)
{
    HASH_DEL(n->tasks, t);
    n->n_tasks--;
    if (t->changed) {
        htask_t **pp = &n->changes;
        while (*pp && *pp != t)
            pp = &(*pp)->change_next;
        if (*pp)
            *pp = t->change_next;
        t->changed = 0;
    }
    t->node = NULL;
    t->gen++;
    hollow_task_release(t);
}

static void hollow_drop_all(hnode_t *n)
{
    htask_t *t, *tmp;

    HASH_ITER(hh, n->tasks, t, tmp)
        hollow_task_drop(n, t);
}

static void hollow_task_set(htask_t *t, TaskState s, int32_t exit_code)
{
    hnode_t *n = t->node;

    if (t->state != s)
        t->since_ms = hollow_wall_ms();
    t->state = s;
    t->exit_code = exit_code;
    if (!t->changed) {
        t->changed = 1;
        t->change_next = n->changes;
        n->changes = t;
    }
}

static int hollow_state_stopped(TaskState s)
{
    return s == TASK_COMPLETE || s == TASK_FAILED || s == TASK_SHUTDOWN ||
           s == TASK_REJECTED || s == TASK_REMOVED;
}

/* --------------------------------------------------------------- queues */

static void hollow_queue_fire(uv_timer_t *timer);

static void hollow_queue_rearm(hqueue_t *q)
{
    int64_t wait;

    if (q->n == 0 || q->h->stopping)
        return;
    wait = q->ring[q->head].due - hollow_now(q->h);
    uv_timer_start(&q->timer, hollow_queue_fire, wait > 0 ? (uint64_t)wait : 0, 0);
}

/* Queues t's next transition. Returns 0 or -ENOMEM. */
static int hollow_queue_push(hqueue_t *q, htask_t *t)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 1024;
        hdelay_t *ring = malloc(cap * sizeof(*ring));
        if (!ring)
            return -ENOMEM;
        for (size_t i = 0; i < q->n; i++)
            ring[i] = q->ring[(q->head + i) % q->cap];
        free(q->ring);
        q->ring = ring;
        q->cap = cap;
        q->head = 0;
    }
    q->ring[(q->head + q->n) % q->cap] = (hdelay_t){
        .due = hollow_now(q->h) + q->delay_ms, .task = t, .gen = t->gen,
    };
    t->queued++;
    if (q->n++ == 0)
        hollow_queue_rearm(q);
    return 0;
}

static void hollow_send_changes(hnode_t *n);

static void hollow_queue_fire(uv_timer_t *timer)
{
    hqueue_t *q = timer->data;
    hollow_t *h = q->h;
    int64_t now = hollow_now(h);
    hnode_t *dirty = NULL;

    while (q->n > 0 && q->ring[q->head].due <= now) {
        hdelay_t d = q->ring[q->head];
        htask_t *t = d.task;

        q->head = (q->head + 1) % q->cap;
        q->n--;
        t->queued--;
        /* A dead node's tasks go on "running": only their reports stop. */
        if (!t->node || t->gen != d.gen) {
            hollow_task_release(t);
            continue;
        }
        if (q->stopping) {
            hollow_task_set(t, t->desired == DESIRED_REMOVE ? TASK_REMOVED : TASK_SHUTDOWN, 0);
        } else if (h->cfg.fail_ratio > 0 && hollow_rand01() < h->cfg.fail_ratio) {
            hollow_task_set(t, TASK_FAILED, 1);
            h->failures++;
        } else {
            hollow_task_set(t, TASK_RUNNING, 0);
        }
        if (!t->node->dirty) {
            t->node->dirty = 1;
            t->node->dirty_next = dirty;
            dirty = t->node;
        }
    }
    while (dirty) {
        hnode_t *n = dirty;
        dirty = n->dirty_next;
        n->dirty = 0;
        hollow_send_changes(n);
    }
    hollow_queue_rearm(q);
}

/* -------------------------------------------------------------- reports */

static int hollow_scratch(hollow_t *h, size_t n)
{
    TaskStatus *st;
    TaskStatus **ptrs;

    if (n <= h->st_cap)
        return 0;
    st = realloc(h->st, n * sizeof(*st));
    if (!st)
        return -ENOMEM;
    h->st = st;
    ptrs = realloc(h->st_ptrs, n * sizeof(*ptrs));
    if (!ptrs)
        return -ENOMEM;
    h->st_ptrs = ptrs;
    h->st_cap = n;
    return 0;
}

static void hollow_status_fill(TaskStatus *s, const htask_t *t)
{
    skiff__v1__task_status__init(s);
    s->task_id = (char *)t->id;
    s->state = t->state;
    s->health = HEALTH_NONE;
    s->container_id = (char *)t->id; /* a container id of its own would do no better */
    s->exit_code = t->exit_code;
    s->message = t->state == TASK_FAILED ? (char *)HOLLOW_FAIL_MESSAGE : (char *)"";
    s->since_ms = t->since_ms;
}

static void hollow_close(hnode_t *n, int err);

static void hollow_send(hnode_t *n, const Envelope *env)
{
    int rc = conn_send(n->conn, env);

    if (rc) {
        n->h->send_errors++;
        log_warn("%s: cannot send %s (%s); reconnecting", n->name,
                 wire_msg_name(env->msg_case), skiff_strerror(rc));
        hollow_close(n, rc);
    }
}

/* Sends a StatusReport: every task (full), or the changed ones. */
static void hollow_report(hnode_t *n, int full)
{
    hollow_t *h = n->h;
    Envelope env = PB_ENVELOPE_INIT;
    StatusReport r = PB_STATUS_REPORT_INIT;
    size_t k = 0;
    htask_t *t;

    if (hollow_scratch(h, full ? n->n_tasks : n->n_tasks + 1)) {
        log_error("%s: out of memory building a report", n->name);
        return;
    }
    if (full) {
        for (t = n->tasks; t; t = t->hh.next) {
            hollow_status_fill(&h->st[k], t);
            h->st_ptrs[k] = &h->st[k];
            k++;
        }
    } else {
        for (t = n->changes; t && k < h->st_cap; t = t->change_next) {
            hollow_status_fill(&h->st[k], t);
            h->st_ptrs[k] = &h->st[k];
            k++;
        }
    }
    r.full = full;
    r.tasks = h->st_ptrs;
    r.n_tasks = k;
    r.assignments_version = n->assignments_version;
    r.endpoints_version = n->endpoints_version;
    env.msg_case = MSG_STATUS;
    env.status = &r;
    if (full)
        h->reports++;
    else
        h->changes++;
    hollow_send(n, &env);
}

/* Reports the changed tasks at once (when connected), and clears the list. */
static void hollow_send_changes(hnode_t *n)
{
    if (n->changes && n->phase == HN_READY && !n->h->dead)
        hollow_report(n, 0);
    while (n->changes) {
        htask_t *t = n->changes;
        n->changes = t->change_next;
        t->changed = 0;
    }
}

static void hollow_on_heartbeat(uv_timer_t *timer)
{
    hnode_t *n = timer->data;

    if (n->phase == HN_READY && !n->h->dead)
        hollow_report(n, 1);
}

/* ---------------------------------------------------------- assignments */

static void hollow_apply(hnode_t *n, const Assignments *set)
{
    hollow_t *h = n->h;
    htask_t *t, *tmp;
    size_t ignored = 0;

    h->sets++;
    n->assignments_version = set->version;
    n->set_gen++;
    for (size_t i = 0; i < set->n_tasks; i++) {
        const Assignment *a = set->tasks[i];
        size_t len;

        if (!a || !(len = strlen(a->task_id)) || len > HOLLOW_ID_MAX)
            continue;
        HASH_FIND(hh, n->tasks, a->task_id, len, t);
        if (!t) {
            if (n->n_tasks >= h->cfg.max_tasks) {
                ignored++;
                continue;
            }
            if (!(t = calloc(1, sizeof(*t)))) {
                log_error("%s: out of memory for a task", n->name);
                break;
            }
            memcpy(t->id, a->task_id, len + 1);
            t->node = n;
            t->desired = a->desired_state;
            HASH_ADD(hh, n->tasks, id, len, t);
            n->n_tasks++;
            if (a->desired_state == DESIRED_RUNNING) {
                hollow_task_set(t, TASK_STARTING, 0);
                if (hollow_queue_push(&h->startq, t))
                    log_error("%s: out of memory queueing a start", n->name);
            } else {
                /* Told to stop a task it never had: nothing runs. */
                hollow_task_set(t, a->desired_state == DESIRED_REMOVE ? TASK_REMOVED
                                                                       : TASK_SHUTDOWN, 0);
            }
        } else if (a->desired_state != DESIRED_RUNNING && t->desired == DESIRED_RUNNING) {
            t->desired = a->desired_state;
            t->gen++; /* a start still queued no longer applies */
            if (!hollow_state_stopped(t->state) && hollow_queue_push(&h->stopq, t))
                log_error("%s: out of memory queueing a stop", n->name);
        } else if (a->desired_state == DESIRED_REMOVE && t->state == TASK_SHUTDOWN) {
            t->desired = DESIRED_REMOVE;
            hollow_task_set(t, TASK_REMOVED, 0);
        }
        t->seen = n->set_gen;
    }
    HASH_ITER(hh, n->tasks, t, tmp)
        if (t->seen != n->set_gen)
            hollow_task_drop(n, t);
    if (ignored)
        log_warn("%s: %zu tasks over --max-tasks %zu ignored", n->name, ignored,
                 h->cfg.max_tasks);
    hollow_send_changes(n);
}

/* ----------------------------------------------------------- connection */

static void hollow_connect_next(hollow_t *h);
static void hollow_on_reconnect(uv_timer_t *timer);

static void hollow_on_close(conn_t *c, int err)
{
    hnode_t *n = conn_data(c);
    hollow_t *h = n->h;
    int64_t delay;

    if (n->conn != c)
        return;
    if (n->phase == HN_CONNECTING)
        h->connecting--;
    n->conn = NULL;
    n->phase = HN_IDLE;
    uv_timer_stop(&n->timer);
    if (!h->dead && !h->stopping) {
        if (err && err != SKIFF_ECLOSED)
            log_debug("%s: connection closed: %s", n->name, skiff_strerror(err));
        /* Backoff with jitter, in [backoff/2, backoff]. */
        delay = n->backoff_ms / 2 + (int64_t)(hollow_rand() % (uint64_t)(n->backoff_ms / 2 + 1));
        n->backoff_ms = n->backoff_ms * 2 < HOLLOW_BACKOFF_MAX_MS ? n->backoff_ms * 2
                                                                   : HOLLOW_BACKOFF_MAX_MS;
        h->reconnects++;
        uv_timer_start(&n->timer, hollow_on_reconnect, (uint64_t)delay, 0);
    }
    hollow_connect_next(h);
}

static void hollow_close(hnode_t *n, int err)
{
    if (n->conn)
        conn_close(n->conn, err);
}

static void hollow_on_connect(conn_t *c, int status)
{
    hnode_t *n = conn_data(c);
    Envelope env = PB_ENVELOPE_INIT;
    Hello hello = PB_HELLO_INIT;

    if (status)
        return; /* on_close follows, and retries */
    n->phase = HN_HELLO;
    n->h->connecting--;
    hollow_connect_next(n->h);
    hello.role = ROLE_AGENT;
    hello.token = n->h->cfg.token;
    hello.version = "skiff-bench-hollow " SKIFF_VERSION;
    env.id = 1;
    env.msg_case = MSG_HELLO;
    env.hello = &hello;
    hollow_send(n, &env);
}

static void hollow_register(hnode_t *n)
{
    hollow_t *h = n->h;
    Envelope env = PB_ENVELOPE_INIT;
    NodeRegister reg = PB_NODE_REGISTER_INIT;
    Resources res = PB_RESOURCES_INIT;
    Label zone = PB_LABEL_INIT;
    Label *labels[HOLLOW_MAX_LABELS + 1];
    size_t k = 0;
    htask_t *t;

    if (hollow_scratch(h, n->n_tasks)) {
        log_error("%s: out of memory building a registration", n->name);
        hollow_close(n, -ENOMEM);
        return;
    }
    for (t = n->tasks; t; t = t->hh.next) {
        hollow_status_fill(&h->st[k], t);
        h->st_ptrs[k] = &h->st[k];
        k++;
    }
    for (size_t i = 0; i < h->n_labels; i++)
        labels[i] = h->label_ptrs[i];
    reg.n_labels = h->n_labels;
    if (*n->zone) {
        zone.key = "zone";
        zone.value = n->zone;
        labels[reg.n_labels++] = &zone;
    }
    reg.labels = labels;
    reg.name = n->name;
    reg.address = n->address;
    res.nano_cpus = h->cfg.nano_cpus;
    res.memory_bytes = h->cfg.memory;
    reg.resources = &res;
    reg.engine_version = "hollow";
    reg.agent_version = "skiff-bench-hollow " SKIFF_VERSION;
    reg.tasks = h->st_ptrs;
    reg.n_tasks = k;
    env.id = 2;
    env.msg_case = MSG_NODE_REGISTER;
    env.node_register = &reg;
    n->phase = HN_REGISTERING;
    hollow_send(n, &env);
}

static void hollow_ready(hnode_t *n)
{
    hollow_t *h = n->h;
    uint64_t first;

    n->phase = HN_READY;
    n->backoff_ms = HOLLOW_BACKOFF_MIN_MS;
    h->registrations++;
    conn_set_frame_timeout(n->conn, 0); /* pushes come only on change */
    /* Staggered: node i beats at i/N of the interval. */
    first = (uint64_t)(h->cfg.heartbeat_ms * n->index / h->cfg.nodes) + 1;
    uv_timer_start(&n->timer, hollow_on_heartbeat, first, (uint64_t)h->cfg.heartbeat_ms);
    log_debug("%s: registered", n->name);
}

static void hollow_logs_refuse(hnode_t *n, const LogsOpen *open)
{
    Envelope env = PB_ENVELOPE_INIT;
    LogsClose lc = PB_LOGS_CLOSE_INIT;

    lc.stream = open->stream;
    lc.message = "hollow node: no logs";
    env.msg_case = MSG_LOGS_CLOSE;
    env.logs_close = &lc;
    hollow_send(n, &env);
}

static int hollow_on_message(conn_t *c, Envelope *env)
{
    hnode_t *n = conn_data(c);
    int rc = 0;

    if (n->conn != c || n->h->dead) {
        wire_free(env);
        return 0;
    }
    switch (env->msg_case) {
    case MSG_HELLO_REPLY:
        if (n->phase == HN_HELLO)
            hollow_register(n);
        else
            rc = SKIFF_EPROTO;
        break;
    case MSG_NODE_REGISTERED:
        if (n->phase == HN_REGISTERING)
            hollow_ready(n);
        else
            rc = SKIFF_EPROTO;
        break;
    case MSG_ASSIGNMENTS:
        hollow_apply(n, env->assignments);
        break;
    case MSG_ENDPOINTS:
        n->endpoints_version = env->endpoints->version;
        break;
    case MSG_LOGS_OPEN:
        hollow_logs_refuse(n, env->logs_open);
        break;
    case MSG_LOGS_CLOSE:
    case MSG_OK: /* a leader's ping, on a shared store */
        break;
    case MSG_ERROR:
        log_warn("%s: controller says: %s", n->name, env->error->message);
        rc = SKIFF_EPROTO;
        break;
    default:
        log_warn("%s: unexpected %s", n->name, wire_msg_name(env->msg_case));
        rc = SKIFF_EPROTO;
        break;
    }
    wire_free(env);
    return rc;
}

static const conn_ops_t hollow_conn_ops = {
    .on_message = hollow_on_message,
    .on_connect = hollow_on_connect,
    .on_close = hollow_on_close,
};

static void hollow_start_connect(hnode_t *n)
{
    hollow_t *h = n->h;
    conn_limits_t limits = {
        .max_frame = WIRE_MAX_FRAME_DEFAULT,
        .max_pending = 2 * WIRE_MAX_FRAME_DEFAULT,
        .frame_timeout_ms = HOLLOW_HANDSHAKE_MS,
    };
    conn_t *c = conn_create(h->loop, &hollow_conn_ops, &limits, n);
    int rc;

    if (!c) {
        log_error("%s: out of memory for a connection", n->name);
        n->phase = HN_IDLE;
        uv_timer_start(&n->timer, hollow_on_reconnect, HOLLOW_BACKOFF_MAX_MS, 0);
        return;
    }
    n->conn = c;
    n->phase = HN_CONNECTING;
    h->connecting++;
    rc = conn_connect(c, h->cfg.controller);
    if (rc) {
        log_warn("%s: connect %s: %s", n->name, h->cfg.controller, skiff_strerror(rc));
        conn_close(c, rc); /* on_close retries */
    }
}

/* Starts the waiting nodes' connections, up to --max-connecting at once. */
static void hollow_connect_next(hollow_t *h)
{
    while (h->wait_head && h->connecting < h->cfg.max_connecting && !h->dead && !h->stopping) {
        hnode_t *n = h->wait_head;
        h->wait_head = n->wait_next;
        if (!h->wait_head)
            h->wait_tail = NULL;
        n->wait_next = NULL;
        if (n->phase == HN_WAITING)
            hollow_start_connect(n);
    }
}

static void hollow_want_connect(hnode_t *n)
{
    hollow_t *h = n->h;

    if (n->phase != HN_IDLE || h->dead || h->stopping)
        return;
    n->phase = HN_WAITING;
    if (h->wait_tail)
        h->wait_tail->wait_next = n;
    else
        h->wait_head = n;
    h->wait_tail = n;
    hollow_connect_next(h);
}

static void hollow_on_reconnect(uv_timer_t *timer)
{
    hollow_want_connect(timer->data);
}

/* ------------------------------------------------------ die and revive */

static void hollow_die(hollow_t *h, const char *why)
{
    if (h->dead || h->stopping)
        return;
    log_info("every node dies (%s)", why);
    h->dead = 1;
    h->wait_head = h->wait_tail = NULL;
    for (unsigned i = 0; i < h->cfg.nodes; i++) {
        hnode_t *n = &h->nodes[i];
        uv_timer_stop(&n->timer);
        n->wait_next = NULL;
        if (n->phase == HN_WAITING)
            n->phase = HN_IDLE;
        hollow_close(n, SKIFF_ECLOSED);
    }
}

static void hollow_revive(hollow_t *h, const char *why)
{
    if (!h->dead || h->stopping)
        return;
    log_info("every node comes back (%s)", why);
    h->dead = 0;
    for (unsigned i = 0; i < h->cfg.nodes; i++) {
        h->nodes[i].backoff_ms = HOLLOW_BACKOFF_MIN_MS;
        hollow_want_connect(&h->nodes[i]);
    }
}

static void hollow_on_revive_timer(uv_timer_t *t)
{
    hollow_revive(t->data, "--revive-after");
}

static void hollow_schedule_revive(hollow_t *h)
{
    if (h->cfg.revive_after_ms > 0 && h->dead)
        uv_timer_start(&h->revive_timer, hollow_on_revive_timer, (uint64_t)h->cfg.revive_after_ms, 0);
}

static void hollow_on_die_timer(uv_timer_t *t)
{
    hollow_die(t->data, "--die-at");
    hollow_schedule_revive(t->data);
}

/* ---------------------------------------------------------------- stats */

static void hollow_on_stats(uv_timer_t *timer)
{
    hollow_t *h = timer->data;
    unsigned ready = 0;
    size_t tasks = 0, running = 0, starting = 0, stopped = 0;

    for (unsigned i = 0; i < h->cfg.nodes; i++) {
        hnode_t *n = &h->nodes[i];
        ready += n->phase == HN_READY;
        tasks += n->n_tasks;
        for (htask_t *t = n->tasks; t; t = t->hh.next) {
            running += t->state == TASK_RUNNING;
            starting += t->state == TASK_STARTING;
            stopped += hollow_state_stopped(t->state);
        }
    }
    log_info("%u/%u nodes ready%s; %zu tasks: %zu running, %zu starting, %zu stopped; "
             "%" PRIu64 " registrations, %" PRIu64 " reconnections, %" PRIu64 " sets, "
             "%" PRIu64 " heartbeats, %" PRIu64 " change reports, %" PRIu64 " failed starts",
             ready, h->cfg.nodes, h->dead ? " (dead)" : "", tasks, running, starting, stopped,
             h->registrations, h->reconnects, h->sets, h->reports, h->changes, h->failures);
}

/* ----------------------------------------------------------------- stop */

static void hollow_stop(hollow_t *h, const char *why)
{
    if (h->stopping++)
        return;
    log_info("stopping (%s)", why);
    for (unsigned i = 0; i < h->cfg.nodes; i++) {
        hollow_close(&h->nodes[i], SKIFF_ECLOSED);
        uv_close((uv_handle_t *)&h->nodes[i].timer, NULL);
    }
    uv_close((uv_handle_t *)&h->startq.timer, NULL);
    uv_close((uv_handle_t *)&h->stopq.timer, NULL);
    uv_close((uv_handle_t *)&h->die_timer, NULL);
    uv_close((uv_handle_t *)&h->revive_timer, NULL);
    uv_close((uv_handle_t *)&h->end_timer, NULL);
    uv_close((uv_handle_t *)&h->stats_timer, NULL);
    uv_close((uv_handle_t *)&h->sigint, NULL);
    uv_close((uv_handle_t *)&h->sigterm, NULL);
    uv_close((uv_handle_t *)&h->sigusr1, NULL);
    uv_close((uv_handle_t *)&h->sigusr2, NULL);
}

static void hollow_on_end(uv_timer_t *t)
{
    hollow_stop(t->data, "--duration");
}

static void hollow_on_signal(uv_signal_t *s, int signum)
{
    hollow_t *h = s->data;

    if (signum == SIGUSR1) {
        hollow_die(h, "SIGUSR1");
        hollow_schedule_revive(h);
    } else if (signum == SIGUSR2) {
        hollow_revive(h, "SIGUSR2");
    } else {
        hollow_stop(h, signum == SIGINT ? "SIGINT" : "SIGTERM");
    }
}

/* ---------------------------------------------------------------- flags */

enum { OPT_CONTROLLER = 256, OPT_TOKEN_FILE, OPT_NODES, OPT_PREFIX, OPT_ADDRESS, OPT_CPUS,
       OPT_MEMORY, OPT_LABEL, OPT_ZONES, OPT_HB, OPT_START, OPT_STOP, OPT_FAIL, OPT_MAX_TASKS,
       OPT_MAX_CONNECTING, OPT_DIE_AT, OPT_REVIVE, OPT_DURATION, OPT_STATS, OPT_SEED, OPT_LOG };

static const struct option options[] = {
    { "controller", required_argument, NULL, OPT_CONTROLLER },
    { "join-token-file", required_argument, NULL, OPT_TOKEN_FILE },
    { "nodes", required_argument, NULL, OPT_NODES },
    { "prefix", required_argument, NULL, OPT_PREFIX },
    { "address", required_argument, NULL, OPT_ADDRESS },
    { "cpus", required_argument, NULL, OPT_CPUS },
    { "memory", required_argument, NULL, OPT_MEMORY },
    { "label", required_argument, NULL, OPT_LABEL },
    { "zones", required_argument, NULL, OPT_ZONES },
    { "heartbeat-interval", required_argument, NULL, OPT_HB },
    { "start-delay", required_argument, NULL, OPT_START },
    { "stop-delay", required_argument, NULL, OPT_STOP },
    { "fail-ratio", required_argument, NULL, OPT_FAIL },
    { "max-tasks", required_argument, NULL, OPT_MAX_TASKS },
    { "max-connecting", required_argument, NULL, OPT_MAX_CONNECTING },
    { "die-at", required_argument, NULL, OPT_DIE_AT },
    { "revive-after", required_argument, NULL, OPT_REVIVE },
    { "duration", required_argument, NULL, OPT_DURATION },
    { "stats-interval", required_argument, NULL, OPT_STATS },
    { "seed", required_argument, NULL, OPT_SEED },
    { "log-level", required_argument, NULL, OPT_LOG },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

static int hollow_bad(const char *flag, const char *value, const char *want)
{
    fprintf(stderr, "skiff-bench-hollow: invalid value for --%s: \"%s\" (%s)\n", flag, value,
            want);
    return 2;
}

static int hollow_count(const char *s, unsigned long long min, unsigned long long max,
                        unsigned long long *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    if (!*s || *s == '-')
        return SKIFF_EINVAL;
    v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return SKIFF_EINVAL;
    *out = v;
    return 0;
}

static int hollow_read_token(const char *path, char *out, size_t len)
{
    FILE *f = fopen(path, "r");
    size_t n;

    if (!f) {
        fprintf(stderr, "skiff-bench-hollow: %s: %s\n", path, strerror(errno));
        return 2;
    }
    n = fread(out, 1, len - 1, f);
    fclose(f);
    out[n] = '\0';
    out[strcspn(out, " \t\r\n")] = '\0';
    if (!*out) {
        fprintf(stderr, "skiff-bench-hollow: %s: empty\n", path);
        return 2;
    }
    return 0;
}

static int hollow_flags(int argc, char **argv, hollow_config_t *cfg, enum log_level *level)
{
    unsigned long long v;
    int64_t ms;
    double d;
    char *end;
    const char *env;
    int opt, rc;

    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        const char *name = opt >= 256 ? options[opt - 256].name : "";
        int64_t *dur = NULL;
        int64_t min_ms = 0;

        switch (opt) {
        case OPT_CONTROLLER:
            snprintf(cfg->controller, sizeof(cfg->controller), "%s", optarg);
            break;
        case OPT_TOKEN_FILE:
            if ((rc = hollow_read_token(optarg, cfg->token, sizeof(cfg->token))))
                return rc;
            break;
        case OPT_NODES:
            if (hollow_count(optarg, 1, 100000, &v))
                return hollow_bad(name, optarg, "1 to 100000");
            cfg->nodes = (unsigned)v;
            break;
        case OPT_PREFIX:
            if (!*optarg || strlen(optarg) >= sizeof(cfg->prefix))
                return hollow_bad(name, optarg, "1 to 63 characters");
            snprintf(cfg->prefix, sizeof(cfg->prefix), "%s", optarg);
            break;
        case OPT_ADDRESS:
            if (strlen(optarg) >= sizeof(cfg->address))
                return hollow_bad(name, optarg, "an IP address");
            snprintf(cfg->address, sizeof(cfg->address), "%s", optarg);
            break;
        case OPT_CPUS:
            if (hollow_count(optarg, 1, 4096, &v))
                return hollow_bad(name, optarg, "1 to 4096");
            cfg->nano_cpus = (int64_t)v * 1000000000LL;
            break;
        case OPT_MEMORY:
            if (hollow_count(optarg, 1, 1ULL << 50, &v))
                return hollow_bad(name, optarg, "bytes");
            cfg->memory = (int64_t)v;
            break;
        case OPT_LABEL:
            if (cfg->n_labels == HOLLOW_MAX_LABELS || !strchr(optarg, '=') || *optarg == '=')
                return hollow_bad(name, optarg, "KEY=VALUE, at most 16");
            cfg->labels[cfg->n_labels++] = optarg;
            break;
        case OPT_ZONES:
            if (hollow_count(optarg, 0, 1000, &v))
                return hollow_bad(name, optarg, "0 to 1000");
            cfg->zones = (unsigned)v;
            break;
        case OPT_MAX_TASKS:
            if (hollow_count(optarg, 1, 1000000, &v))
                return hollow_bad(name, optarg, "1 to 1000000");
            cfg->max_tasks = (size_t)v;
            break;
        case OPT_MAX_CONNECTING:
            if (hollow_count(optarg, 1, 100000, &v))
                return hollow_bad(name, optarg, "1 to 100000");
            cfg->max_connecting = (unsigned)v;
            break;
        case OPT_SEED:
            if (hollow_count(optarg, 0, UINT32_MAX, &v))
                return hollow_bad(name, optarg, "a number");
            cfg->seed = (unsigned)v;
            break;
        case OPT_FAIL:
            errno = 0;
            d = strtod(optarg, &end);
            if (errno || *end || end == optarg || !(d >= 0 && d <= 1))
                return hollow_bad(name, optarg, "a ratio from 0 to 1");
            cfg->fail_ratio = d;
            break;
        case OPT_LOG:
            if (log_level_parse(optarg, level))
                return hollow_bad(name, optarg, "debug, info, warn or error");
            break;
        case OPT_HB: dur = &cfg->heartbeat_ms; min_ms = 10; break;
        case OPT_START: dur = &cfg->start_delay_ms; break;
        case OPT_STOP: dur = &cfg->stop_delay_ms; break;
        case OPT_DIE_AT: dur = &cfg->die_at_ms; break;
        case OPT_REVIVE: dur = &cfg->revive_after_ms; break;
        case OPT_DURATION: dur = &cfg->duration_ms; break;
        case OPT_STATS: dur = &cfg->stats_ms; break;
        case 'h':
            fputs(usage, stdout);
            exit(0);
        default:
            fprintf(stderr, "Run 'skiff-bench-hollow --help' for the options.\n");
            return 2;
        }
        if (dur) {
            if (duration_parse(optarg, &ms) || ms < min_ms)
                return hollow_bad(name, optarg, "a duration, like 1s or 100ms");
            *dur = ms;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "skiff-bench-hollow: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (!*cfg->token && (env = getenv("SKIFF_JOIN_TOKEN")))
        snprintf(cfg->token, sizeof(cfg->token), "%s", env);
    if (!*cfg->token) {
        fprintf(stderr, "skiff-bench-hollow: no join token: give --join-token-file FILE "
                        "(<data-dir>/join-token) or SKIFF_JOIN_TOKEN\n");
        return 2;
    }
    return 0;
}

/* ----------------------------------------------------------------- main */

static int hollow_setup_nodes(hollow_t *h)
{
    hollow_config_t *cfg = &h->cfg;

    h->nodes = calloc(cfg->nodes, sizeof(*h->nodes));
    h->labels = calloc(cfg->n_labels + 1, sizeof(*h->labels));
    h->label_ptrs = calloc(cfg->n_labels + 1, sizeof(*h->label_ptrs));
    if (!h->nodes || !h->labels || !h->label_ptrs)
        return -ENOMEM;
    for (size_t i = 0; i < cfg->n_labels; i++) {
        char *kv = (char *)cfg->labels[i], *eq = strchr(kv, '=');
        skiff__v1__label__init(&h->labels[i]);
        *eq = '\0';
        h->labels[i].key = kv;
        h->labels[i].value = eq + 1;
        h->label_ptrs[i] = &h->labels[i];
    }
    h->n_labels = cfg->n_labels;
    for (unsigned i = 0; i < cfg->nodes; i++) {
        hnode_t *n = &h->nodes[i];
        n->h = h;
        n->index = i;
        n->backoff_ms = HOLLOW_BACKOFF_MIN_MS;
        snprintf(n->name, sizeof(n->name), "%s-%u", cfg->prefix, i + 1);
        if (*cfg->address)
            snprintf(n->address, sizeof(n->address), "%s", cfg->address);
        else
            snprintf(n->address, sizeof(n->address), "127.0.%u.%u", 1 + i / 250, 1 + i % 250);
        if (cfg->zones)
            snprintf(n->zone, sizeof(n->zone), "z%u", i % cfg->zones);
        uv_timer_init(h->loop, &n->timer);
        n->timer.data = n;
    }
    return 0;
}

static void hollow_queue_init(hollow_t *h, hqueue_t *q, int64_t delay_ms, int stopping)
{
    q->h = h;
    q->delay_ms = delay_ms;
    q->stopping = stopping;
    uv_timer_init(h->loop, &q->timer);
    q->timer.data = q;
}

static void hollow_free(hollow_t *h)
{
    for (unsigned i = 0; h->nodes && i < h->cfg.nodes; i++)
        hollow_drop_all(&h->nodes[i]);
    /* Tasks still referenced by the queues are theirs to free. */
    for (hqueue_t *q = &h->startq; q; q = q == &h->startq ? &h->stopq : NULL) {
        for (size_t i = 0; i < q->n; i++) {
            htask_t *t = q->ring[(q->head + i) % q->cap].task;
            t->queued--;
            hollow_task_release(t);
        }
        free(q->ring);
    }
    free(h->nodes);
    free(h->labels);
    free(h->label_ptrs);
    free(h->st);
    free(h->st_ptrs);
}

int main(int argc, char **argv)
{
    static hollow_t hollow;
    hollow_t *h = &hollow;
    enum log_level level = LOG_INFO;
    int rc;

    h->cfg = (hollow_config_t){
        .controller = "127.0.0.1:7400",
        .nodes = 100,
        .prefix = "hollow",
        .nano_cpus = 8 * 1000000000LL,
        .memory = 32LL << 30,
        .heartbeat_ms = 1000,
        .start_delay_ms = 100,
        .stop_delay_ms = 100,
        .max_tasks = 10000,
        .max_connecting = 256,
        .stats_ms = 10000,
        .seed = (unsigned)time(NULL),
    };
    if ((rc = hollow_flags(argc, argv, &h->cfg, &level)))
        return rc;
    log_init("hollow", level);
    hollow_rand_state = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)h->cfg.seed << 1 | 1);
    h->loop = uv_default_loop();
    if (hollow_setup_nodes(h)) {
        log_error("out of memory for %u nodes", h->cfg.nodes);
        return 1;
    }
    hollow_queue_init(h, &h->startq, h->cfg.start_delay_ms, 0);
    hollow_queue_init(h, &h->stopq, h->cfg.stop_delay_ms, 1);
    uv_timer_init(h->loop, &h->die_timer);
    uv_timer_init(h->loop, &h->revive_timer);
    uv_timer_init(h->loop, &h->end_timer);
    uv_timer_init(h->loop, &h->stats_timer);
    h->die_timer.data = h->revive_timer.data = h->end_timer.data = h->stats_timer.data = h;
    if (h->cfg.die_at_ms > 0)
        uv_timer_start(&h->die_timer, hollow_on_die_timer, (uint64_t)h->cfg.die_at_ms, 0);
    if (h->cfg.duration_ms > 0)
        uv_timer_start(&h->end_timer, hollow_on_end, (uint64_t)h->cfg.duration_ms, 0);
    if (h->cfg.stats_ms > 0)
        uv_timer_start(&h->stats_timer, hollow_on_stats, (uint64_t)h->cfg.stats_ms,
                       (uint64_t)h->cfg.stats_ms);
    uv_signal_init(h->loop, &h->sigint);
    uv_signal_init(h->loop, &h->sigterm);
    uv_signal_init(h->loop, &h->sigusr1);
    uv_signal_init(h->loop, &h->sigusr2);
    h->sigint.data = h->sigterm.data = h->sigusr1.data = h->sigusr2.data = h;
    uv_signal_start(&h->sigint, hollow_on_signal, SIGINT);
    uv_signal_start(&h->sigterm, hollow_on_signal, SIGTERM);
    uv_signal_start(&h->sigusr1, hollow_on_signal, SIGUSR1);
    uv_signal_start(&h->sigusr2, hollow_on_signal, SIGUSR2);
    log_info("%u hollow nodes (%s-1 ..) for %s: heartbeat %lld ms, start %lld ms, stop %lld ms, "
             "fail ratio %g", h->cfg.nodes, h->cfg.prefix, h->cfg.controller,
             (long long)h->cfg.heartbeat_ms, (long long)h->cfg.start_delay_ms,
             (long long)h->cfg.stop_delay_ms, h->cfg.fail_ratio);
    for (unsigned i = 0; i < h->cfg.nodes; i++)
        hollow_want_connect(&h->nodes[i]);
    uv_run(h->loop, UV_RUN_DEFAULT);
    uv_loop_close(h->loop);
    hollow_free(h);
    return 0;
}
