/* runtask: one task on this node, as the runner sees it, and the decisions
 * about it. Pure: no I/O, no clock, no libuv.
 *
 * A runtask holds the task's assignment (if it is in the controller's set),
 * what the engine last said of its container, the restart policy's
 * bookkeeping, the health probe's state, and the status the agent reports.
 * runtask_next() says what to do now (one engine call at a time per task),
 * or when to look again; the runner performs it, and feeds the outcome back
 * with runtask_done(). Engine events and inspect answers come in through
 * runtask_event() and runtask_observe(). Every function takes the time
 * (monotonic ms for delays, Unix ms for reports) from its caller, which is
 * how the unit tests run a task's life without an engine or a clock.
 *
 * A container that ended is restarted as it is (docker start: fast, and
 * what Docker's own restart policy does); one that was unhealthy is
 * replaced by a new container of the same task, since what made it
 * unhealthy may be in its file system.
 *
 * The restart policy (restart_decide) is here too: condition, a delay
 * doubling per consecutive restart up to SPEC_RESTART_DELAY_CAP_MS and
 * reset after 10 s of running, and at most max_attempts restarts within the
 * window.
 */
#ifndef SKIFF_RUNTASK_H
#define SKIFF_RUNTASK_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "health.h"
#include "skiff_pb.h"

#define RUNTASK_ID_MAX 64           /* task ids: letters, digits, '-', '_' */
#define RUNTASK_RESET_AFTER_MS 10000 /* a run this long resets the backoff */
#define RUNTASK_RETRY_MS 1000       /* after the engine could not be reached */
#define RUNTASK_RESTART_HISTORY 128 /* restart times kept for the window */
#define RUNTASK_DEFAULT_GRACE_MS 10000

/* ------------------------------------------------------------ restarts */

typedef struct restart_state {
    uint32_t consecutive;  /* restarts since the last run of 10 s */
    uint32_t restarts;     /* every restart of the task */
    int64_t history[RUNTASK_RESTART_HISTORY]; /* when the last ones were (ring) */
    size_t n_history;
    size_t head;
} restart_state_t;

typedef struct restart_decision {
    int restart;       /* 1: restart after delay_ms */
    int64_t delay_ms;
    int gave_up;       /* 0 and no restart: the condition says no */
} restart_decision_t;

/* Decides about a container that ended after running ran_ms, at now
 * (monotonic ms). failed: a non-zero exit, an OOM kill, or unhealthy.
 * When it restarts, st counts the restart. */
restart_decision_t restart_decide(const RestartPolicy *p, restart_state_t *st, int failed,
                                  int64_t ran_ms, int64_t now);

/* ------------------------------------------------------------ tasks */

typedef enum runtask_act {
    RT_NONE,     /* nothing to do, nothing scheduled */
    RT_WAIT,     /* nothing now; look again at `at` */
    RT_IMAGE,    /* inspect the image */
    RT_PULL,
    RT_CREATE,
    RT_START,
    RT_INSPECT,  /* by container id, or by name when the task has none */
    RT_STOP,     /* with grace_ms */
    RT_REMOVE,
    RT_FORGET,   /* the runner drops the task: nothing of it is left */
} runtask_act_t;

typedef struct runtask_action {
    runtask_act_t act;
    int64_t at;        /* RT_WAIT: monotonic ms */
    int64_t grace_ms;  /* RT_STOP */
} runtask_action_t;

enum runtask_image { IMAGE_UNKNOWN, IMAGE_PRESENT, IMAGE_MISSING };

enum runtask_stop { STOP_NONE, STOP_SHUTDOWN, STOP_UNHEALTHY, STOP_UNASSIGNED };

typedef struct runtask {
    char id[RUNTASK_ID_MAX + 1];
    Assignment *asg;   /* owned; NULL: not in the set (adopted, or left it) */
    int stray;         /* a second container of a task: always removed */

    /* The container, as last seen. */
    char cid[ENGINE_ID_MAX];  /* "": none known */
    engine_state_t cstate;
    int alive;                /* runs, and its end has not been handled */
    int64_t run_since;        /* monotonic ms of its start */
    int64_t death_wall;       /* Unix ms of the last end handled */
    engine_health_t ehealth;
    int oom;                  /* an oom event in this run */
    int need_inspect;
    int lookup;               /* the name is taken: find that container */
    size_t n_ports;
    engine_port_t ports[ENGINE_MAX_PORTS];

    int image;                /* enum runtask_image */
    health_probe_t probe;
    int64_t probe_at;         /* monotonic ms of the next probe; 0 none */
    int probing;

    restart_state_t rs;
    int restart_pending;      /* a restart is due at restart_at */
    int recreate;             /* restart in a new container (after unhealthy) */
    int64_t restart_at;       /* monotonic ms */
    int pending_exit;         /* ended before the set said what to do */
    int end_oom;              /* how the last run ended */
    int end_reason;           /* the stop_reason it ended with */
    char end_why[160];        /* or why else it ended ("" for an exit) */
    int64_t retry_at;         /* the engine failed us: not before this */
    int64_t drain_until;      /* shutting down: stop at this time; 0 not yet */
    int64_t grace_ms;         /* the last spec's stop grace period */
    int stop_reason;          /* enum runtask_stop, while a stop is due */
    int terminal;             /* rejected, failed or complete: hands off */

    runtask_act_t op;         /* the engine call in flight */

    /* What is reported. */
    TaskState state;
    Health health;
    int exit_code;
    char message[256];
    int64_t since_ms;
    int dirty;                /* changed since the last report */
} runtask_t;

/* A task known by id (RUNTASK_ID_MAX at most, [A-Za-z0-9_-]). NULL when
 * out of memory or the id is not one. */
runtask_t *runtask_create(const char *id);
void runtask_free(runtask_t *t);

/* 1 when id is a valid task id. */
int runtask_id_valid(const char *id);

/* The controller's assignment for the task (taken: freed with the task or
 * replaced by the next). mono, wall: the time now. */
void runtask_assign(runtask_t *t, Assignment *a, int64_t mono, int64_t wall);
/* The task is not in the set any more. */
void runtask_unassign(runtask_t *t);

/* The engine's view of the container (inspect; or list, which has no exit
 * code or health: full 0). */
void runtask_observe(runtask_t *t, const engine_container_t *c, int full, int64_t mono,
                     int64_t wall);
/* The container is gone (not found). */
void runtask_gone(runtask_t *t, int64_t mono, int64_t wall);
void runtask_event(runtask_t *t, const engine_event_t *ev, int64_t mono, int64_t wall);

/* What to do now. set_seen: an assignment set has arrived since the agent
 * started (before that, nothing is removed). */
runtask_action_t runtask_next(const runtask_t *t, int64_t mono, int set_seen);
/* The runner starts act (op in flight). */
void runtask_begin(runtask_t *t, const runtask_action_t *a, int64_t mono, int64_t wall);
/* The outcome of the op in flight (res->id for create, res->container for
 * inspect). A call that failed at once is fed here too, as a result. */
void runtask_done(runtask_t *t, const engine_result_t *res, int64_t mono, int64_t wall);

/* 1 when an HTTP probe is due (and sets *at to when, maybe in the past). */
int runtask_probe_due(const runtask_t *t, int64_t *at);
void runtask_probe_begin(runtask_t *t);
/* A probe that does not count (the engine is away, so the container's end
 * may be on its way, unseen): look again a little later. */
void runtask_probe_skip(runtask_t *t, int64_t mono);
/* A probe's outcome; one that could not run (no published port yet) is a
 * failure too. */
void runtask_probe_done(runtask_t *t, int ok, const char *why, int64_t mono, int64_t wall);

/* 1 when the task's status belongs in a report. */
int runtask_reported(const runtask_t *t, int set_seen);

/* Fills st (and ports, which st points into; at most ENGINE_MAX_PORTS)
 * with pointers into t, for one send. */
void runtask_status(const runtask_t *t, TaskStatus *st, PortMapping *ports,
                    PortMapping **port_ptrs);

/* The text of a task state ("running"), for logs. */
const char *runtask_state_name(TaskState s);

#endif
