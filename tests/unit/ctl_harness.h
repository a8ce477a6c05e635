/* ctl_harness: a skiff controller in the test process, and fake peers that
 * talk to it over real TCP (Nomad's Harness, with the wire in the loop).
 *
 * The harness owns one libuv loop. On it run a ctl_t, started as main.c
 * starts it (tokens, store, cluster id, listener on a free 127.0.0.1 port),
 * fake agents and one fake client, all proto/conn.h connections.
 *
 * Every connection is TLS, as in the binaries. A fake agent does what
 * skiff-agent does, without an engine: the first time it joins (NodeJoin
 * with the join token's secret and a request for a new key, the controller
 * checked against the CA digest of the token) and keeps the node
 * certificate; then it connects with it, says hello, registers (with the status
 * of every task it still has), and answers each Assignments set at once
 * with a StatusReport of the tasks whose status changed: a task to run is
 * reported TASK_RUNNING with a host port per target port (and
 * HEALTH_HEALTHY when its spec has a check, HEALTH_NONE otherwise), or
 * whatever the test's policy says; a task told to stop is reported
 * TASK_SHUTDOWN (TASK_REMOVED for DESIRED_REMOVE); a task no longer in the
 * set is forgotten, as its container would be removed. Every beat_ms it
 * sends a full StatusReport, unless it is silent. A manual agent answers
 * nothing by itself; the test reports for it.
 *
 * Everything an agent received is kept: its latest set and endpoints, and
 * every task id it was ever assigned (h->seen), so that tests can check
 * that no slot was updated twice. Two checks run on every push, and a
 * breach is counted in h->violations: every task in an Assignments set is
 * already committed to state.db (read through a connection of its own),
 * with that desired state or a later one; and a task told to stop leaves
 * the endpoints in the same push as its new desired state (the next
 * frame) or before. A third: every secret and config a set uses came
 * (SecretData) before the set, on the same connection.
 *
 * The fake client sends requests and pumps the loop until the reply with
 * the same id arrives (h_call). The controller can be stopped cleanly
 * (SIGTERM, as skiff-controller is) or killed (its handles closed and its
 * memory dropped, whatever is not committed lost, as with kill -9), and a
 * new one started on the same data dir. A commit already handed to the
 * worker thread cannot be stopped: it completes, as it would if the kill
 * came a moment later.
 */
#ifndef SKIFF_CTL_HARNESS_H
#define SKIFF_CTL_HARNESS_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "conn.h"
#include "ctl.h"

#define H_MAX_AGENTS 6
#define H_MAX_TASKS 96     /* tasks a fake agent keeps */
#define H_MAX_SEEN 512     /* distinct task ids assigned, harness-wide */
#define H_MAX_INBOX 512    /* messages the client keeps */
#define H_MAX_LABELS 4
#define H_MAX_PORTS 8
#define H_MAX_VALUES 8     /* secret and config values a fake agent keeps */

typedef struct harness harness_t;
typedef struct h_agent h_agent_t;

/* A task as the fake agent knows it (its "container"). */
typedef struct h_task {
    char id[MODEL_ID_LEN + 1];
    char service[64];
    char image[128];
    uint32_t slot;
    uint64_t spec_version;
    DesiredState desired;
    TaskState state;
    Health health;
    uint32_t restarts;
    int32_t exit_code;
    size_t n_ports;
    uint32_t targets[H_MAX_PORTS];
    uint32_t host_ports[H_MAX_PORTS];
} h_task_t;

/* Sets what a fake agent reports for a task it starts (t has state
 * TASK_RUNNING and the default health already). */
typedef void (*h_policy_fn)(harness_t *h, h_agent_t *a, const Assignment *as, h_task_t *t);

/* Called on every push a fake agent receives, after the harness took it in. */
typedef void (*h_push_fn)(harness_t *h, h_agent_t *a, const Envelope *env);

struct h_agent {
    harness_t *h;
    int index;
    conn_t *conn;              /* NULL while disconnected */
    char name[32];
    char address[32];
    char labels[H_MAX_LABELS][2][32];
    size_t n_labels;
    int hello_ok, registered;
    SSL_CTX *tls;              /* with its node certificate, once joined */
    int joining;               /* this connection joins */
    int joined;                /* the join was answered (a->tls set) */
    uint64_t join_id;
    EVP_PKEY *join_key;
    char hello_token[CTL_TOKEN_LEN + 8]; /* what it says hello with */
    int hello_role;
    int no_hello;              /* sends a ServiceGet first instead */
    int no_register;           /* does not register after the hello */
    char node_id[MODEL_ID_LEN + 1];
    int silent;                /* sends no heartbeat */
    int manual;                /* answers no assignment by itself */
    int deaf;                  /* drops the pushes it gets (a cut network) */
    int last_error;            /* code of the last Error received, 0: none */
    char last_error_msg[256];
    int closed;                /* times its connection closed */
    h_task_t tasks[H_MAX_TASKS];
    size_t n_tasks;
    Assignments *set;          /* the latest set (owned) */
    Endpoints *eps;            /* the latest endpoints (owned) */
    unsigned n_sets, n_eps;
    /* the values of secrets and configs its connection carried (SecretData);
     * like skiff-agent it keeps those of its latest set only */
    struct h_value {
        char id[MODEL_ID_LEN + 1];
        char data[128];
        size_t len;
    } values[H_MAX_VALUES];
    size_t n_values;
    unsigned n_values_received;
    /* logs */
    LogsOpen *logs_open[8];    /* owned */
    size_t n_logs_open;
    unsigned n_logs_close;
};

typedef struct h_seen {
    char id[MODEL_ID_LEN + 1];
    char service[64];
    uint32_t slot;
    uint64_t spec_version;
    int agent;                 /* the first agent it was assigned to */
    int told_stop;             /* it came in a set with a desired state not running */
} h_seen_t;

struct harness {
    uv_loop_t loop;
    char dir[PATH_MAX];
    char hostport[128];
    char join_token[CTL_TOKEN_LEN + 1];   /* the secrets of the tokens */
    char admin_token[CTL_TOKEN_LEN + 1];
    char ca_digest[PKI_DIGEST_HEX + 1];    /* the digest the tokens carry */
    SSL_CTX *pin_tls;          /* no certificate, the controller pinned by the digest */
    ctl_t *ctl;                /* NULL while no controller runs */
    struct sqlite3 *db;        /* the controller's state.db, read only */
    unsigned committed_checks; /* pushed tasks found committed */
    int64_t heartbeat_timeout_ms;
    uv_timer_t beat;
    int64_t beat_ms;
    h_agent_t agents[H_MAX_AGENTS];
    size_t n_agents;
    uint32_t next_host_port;
    h_policy_fn policy;
    h_push_fn on_push;
    void *test_data;
    h_seen_t seen[H_MAX_SEEN];
    size_t n_seen;
    unsigned leave_checks;     /* tasks seen leaving the endpoints in time */
    unsigned violations;
    char violation[256];       /* the first one */
    /* the client */
    conn_t *client;
    int client_hello;
    int client_closed;
    uint64_t next_id;
    Envelope *inbox[H_MAX_INBOX];  /* replies not taken yet (owned) */
    size_t n_inbox;
};

/* ---- life */

/* Creates the loop, a temporary data dir and starts a controller with this
 * heartbeat timeout; beat_ms is the agents' heartbeat interval. */
harness_t *h_new(int64_t heartbeat_timeout_ms, int64_t beat_ms);
/* Stops everything, checks that the loop closes clean, removes the dir. */
void h_free(harness_t *h);

/* Starts a controller on h->dir (on a new port); returns 0 or fails. */
void h_ctl_start(harness_t *h);
/* skiff-controller's own stop: SIGTERM, then the loop runs until its
 * handles are closed; then its memory is freed. */
void h_ctl_stop(harness_t *h);
/* kill -9: every handle closed at once, nothing more committed; whatever
 * was not committed is lost with the memory. */
void h_ctl_kill(harness_t *h);

/* ---- the loop */

/* Runs the loop once (at most a beat). */
void h_run_once(harness_t *h);
/* Runs the loop for ms. */
void h_run_for(harness_t *h, int64_t ms);
/* Runs the loop until cond holds; fails the test after ms. */
#define H_RUN_UNTIL(h, cond, ms)                                                 \
    do {                                                                         \
        uint64_t deadline_ = uv_hrtime() / 1000000 + (uint64_t)(ms);             \
        while (!(cond)) {                                                        \
            if (uv_hrtime() / 1000000 > deadline_)                               \
                fail_msg("%s:%d: timed out after %d ms waiting for %s", __FILE__, \
                         __LINE__, (int)(ms), #cond);                            \
            h_run_once(h);                                                       \
        }                                                                        \
    } while (0)

/* ---- fake agents */

/* Adds an agent (not connected yet); label is "k=v" or NULL. */
h_agent_t *h_agent_add(harness_t *h, const char *name, const char *address, const char *label);
/* Connects, says hello and registers; runs the loop until registered. */
void h_agent_connect(harness_t *h, h_agent_t *a);
/* Connects with its certificate (joining first when it has none); returns
 * 1 when it registered, 0 when the controller refused it (it closed). */
int h_agent_connect_try(harness_t *h, h_agent_t *a);
/* Forgets its certificate (an emptied state dir): the next connect joins. */
void h_agent_forget(h_agent_t *a);
/* Joins with this name and join secret; returns 0 when a certificate came,
 * else the ErrorCode of the refusal. */
int h_agent_join(harness_t *h, h_agent_t *a, const char *secret);
/* Connects without a certificate, with this hello token and role (token
 * NULL: sends a ServiceGet instead of a hello), without registering; the
 * loop runs until the controller answered or closed. */
void h_agent_connect_raw(harness_t *h, h_agent_t *a, const char *token, int role);
/* Closes its connection (an agent that died, or a cut network). */
void h_agent_disconnect(harness_t *h, h_agent_t *a);
/* Disconnects and frees the last agent added (an intruder a test made):
 * it is no agent of the cluster any more. */
void h_agent_drop_last(harness_t *h);
/* Sends a StatusReport; full: every task, else only t. */
void h_agent_report(harness_t *h, h_agent_t *a, const h_task_t *t, int full);
/* The agent's task by id, or NULL. */
h_task_t *h_agent_task(h_agent_t *a, const char *id);
/* Tasks of service in the agent's latest set with this desired state. */
size_t h_agent_count(const h_agent_t *a, const char *service, DesiredState desired);
/* Tasks of service the agent runs: in its set, desired running, reported
 * running. */
size_t h_agent_running(const h_agent_t *a, const char *service);
/* 1 when the task is in the agent's latest set. */
int h_agent_has(const h_agent_t *a, const char *task_id);
/* Backends of service in the agent's latest endpoints; -1 when the service
 * is not there. */
int h_agent_backends(const h_agent_t *a, const char *service);
/* 1 when task_id is a backend of service in the agent's latest endpoints. */
int h_agent_backend(const h_agent_t *a, const char *service, const char *task_id);

/* ---- the client */

/* Connects the client (hello with the admin token). */
void h_client_connect(harness_t *h);
/* Sends req (its id is set) and runs the loop until the reply; the caller
 * frees it with wire_free. Fails the test after 5s. */
Envelope *h_call(harness_t *h, Envelope *req);
/* Takes the next message of request id from the inbox, or NULL. */
Envelope *h_take(harness_t *h, uint64_t id);

/* A complete spec (spec_new) with name, image and replicas, an update and
 * rollback monitor of 50ms, stop grace and drain delay of 0. */
ServiceSpec *h_spec(const char *name, const char *image, uint32_t replicas);
/* Adds published:target to spec. */
void h_spec_port(ServiceSpec *spec, uint32_t published, uint32_t target);

Envelope *h_service_create(harness_t *h, const ServiceSpec *spec);
Envelope *h_service_update(harness_t *h, const char *service, const ServiceSpec *spec,
                           uint64_t version);
Envelope *h_service_scale(harness_t *h, const char *service, uint32_t replicas);
Envelope *h_service_remove(harness_t *h, const char *service);
Envelope *h_service_rollback(harness_t *h, const char *service);
Envelope *h_service_get(harness_t *h, const char *service);
Envelope *h_service_list(harness_t *h);
Envelope *h_task_list(harness_t *h, const char *service, const char *node, int all);
Envelope *h_node_list(harness_t *h);
Envelope *h_node_update(harness_t *h, const char *node, NodeAvailability availability);
/* Changes the node's spec labels alone (keep_availability): add is
 * "k=v,k2=v2", rm "k,k2"; either may be NULL. */
Envelope *h_node_labels(harness_t *h, const char *node, const char *add, const char *rm);
Envelope *h_node_remove(harness_t *h, const char *node, int force);

/* Fails unless env is an Error with this code whose message contains text. */
void h_expect_error(Envelope *env, ErrorCode code, const char *text);
/* Fails unless env is of this case; returns it. */
Envelope *h_expect(Envelope *env, int msg_case);

/* ---- the controller's model, read in process */

service_t *h_service(harness_t *h, const char *name);
/* Tasks of the service desired running (any state). */
size_t h_desired_running(harness_t *h, const char *name);
/* Tasks of the service desired running, running and ready, on the
 * current spec version's content. */
size_t h_ready(harness_t *h, const char *name);
/* The largest number of desired-running tasks in one slot of the service. */
size_t h_max_per_slot(harness_t *h, const char *name);
/* 1 when every desired-running task of the service runs its current spec,
 * is ready and the count is the replica count, and no update is going. */
int h_converged(harness_t *h, const char *name);
/* A copy of the controller's services and tasks, to compare after a restart. */
typedef struct h_snapshot {
    Service **services;
    size_t n_services;
    Task **tasks;
    size_t n_tasks;
} h_snapshot_t;

void h_snapshot_take(harness_t *h, h_snapshot_t *s);
/* Fails unless the controller holds the same services and tasks. */
void h_snapshot_check(harness_t *h, const h_snapshot_t *s);
void h_snapshot_free(h_snapshot_t *s);

/* Distinct task ids of service ever assigned for (slot, spec_version). */
size_t h_seen_count(const harness_t *h, const char *service, uint32_t slot, uint64_t version);

#endif
