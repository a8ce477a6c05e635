/* runner: converges the engine to the controller's assignment set.
 *
 * The runner keeps one runtask per task it knows: those of the last
 * assignment set, and the containers it found with this agent's cluster and
 * node labels. It follows the engine's event stream (a die is handled at
 * once, which is how a killed container runs again within a few hundred
 * milliseconds), re-lists whenever the stream comes back and every 30 s,
 * asks each runtask what to do next and does it through engine_ops, runs
 * the HTTP health probes, and tells its owner when statuses changed. It
 * touches only containers that carry this agent's cluster and node labels,
 * and removes none before the first set has arrived.
 *
 * Secrets and configs (secrets.h): a task whose values have not come with
 * its set is rejected; its files are written just before its container is
 * created (and before an adopted container is started again, or as soon
 * as the set names an adopted one), and its dir goes when its container is
 * removed. After each set the values no task uses are dropped.
 *
 * The decisions are runtask's; this file is the I/O around them. Clocks and
 * probes are seams, so that the unit tests drive a runner with a fake
 * engine and a fake clock, calling runner_step() themselves.
 */
#ifndef SKIFF_RUNNER_H
#define SKIFF_RUNNER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "engine.h"
#include "health.h"
#include "httpc.h"
#include "secrets.h"
#include "skiff_pb.h"

typedef struct runner runner_t;

#define RUNNER_MAX_TASKS 10000  /* tasks and containers one runner keeps */

typedef struct runner_config {
    const char *node;       /* this node's name: the skiff.node label */
    const char *advertise;  /* ports are published, and probed, here */
    const char *gateway;    /* extra hosts point here; "" none */
    uint64_t resync_ms;     /* re-list this often; 0: 30 s */
    /* Clocks: monotonic and Unix ms. NULL: the system's. */
    int64_t (*mono_ms)(void *arg);
    int64_t (*wall_ms)(void *arg);
    void *clock_arg;
    /* HTTP probes: on http, unless probe is set (tests). */
    httpc_t *http;
    int (*probe)(void *arg, const char *url, int64_t timeout_ms, health_probe_cb cb,
                 void *cb_arg, void **handle);
    void (*probe_cancel)(void *arg, void *handle);
    void *probe_arg;
    /* The values of secrets and configs, and their files (not owned).
     * NULL: none, so a task that uses one is rejected. */
    secrets_t *secrets;
} runner_config_t;

typedef struct runner_ops {
    /* Statuses changed: send runner_report(r, 1, ...) now. */
    void (*on_change)(void *arg);
    /* The first listing for the cluster is done: what was found is
     * adopted, and the node may register with its statuses. */
    void (*on_ready)(void *arg);
} runner_ops_t;

/* A runner with no cluster yet. The config's strings are copied. NULL when
 * out of memory. */
runner_t *runner_create(uv_loop_t *loop, engine_t *engine, const runner_config_t *cfg,
                        const runner_ops_t *ops, void *arg);

/* Starts work for cluster: follows the events of this cluster and node,
 * lists and adopts. Once only. Returns 0 or a negative code. */
int runner_start(runner_t *r, const char *cluster);
const char *runner_cluster(const runner_t *r);
int runner_ready(const runner_t *r);

/* Updates the gateway that new containers' extra hosts point at. */
void runner_set_gateway(runner_t *r, const char *gateway);

/* Makes set the node's desired set. Assignments that are not valid (bad
 * task id, spec that does not validate) are reported rejected, with why.
 * Returns 0 or -ENOMEM. */
int runner_apply(runner_t *r, const Assignments *set);
uint64_t runner_version(const runner_t *r);

/* The statuses to report: every reportable task (only_changed 0, a
 * heartbeat), or those that changed since the last report. The messages
 * point into the runner: send them before anything else runs. */
typedef struct runner_report {
    TaskStatus **tasks;
    size_t n;
    TaskStatus *storage;
    PortMapping *ports;
    PortMapping **port_ptrs;
} runner_report_t;

int runner_report(runner_t *r, int only_changed, runner_report_t *out);
void runner_report_free(runner_report_t *rep);

/* Calls fn for every task whose container runs, with its service's name
 * ("" when not known yet) and slot. */
void runner_each_running(const runner_t *r,
                         void (*fn)(void *arg, const char *task_id, const char *service,
                                    uint32_t slot, const char *container),
                         void *arg);

/* The container of a task, or NULL. */
const char *runner_container(const runner_t *r, const char *task_id);

/* Looks at every task now: starts what is due, arms the timer for what is
 * not. Called by the runner itself after every input; tests call it after
 * moving their clock. */
void runner_step(runner_t *r);

/* Lists the engine's containers again (as when the event stream returns). */
void runner_resync(runner_t *r);

/* Event-stream callbacks, public for tests that feed events directly. */
void runner_on_event(runner_t *r, const engine_event_t *ev);

/* Stops timers and probes and frees the runner once its handles are
 * closed; done(arg) then. Close the engine first: no engine callback may
 * come after this. */
void runner_close(runner_t *r, void (*done)(void *arg), void *arg);

#endif
