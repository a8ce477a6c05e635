/* plan: the rolling-update planner, a pure function.
 *
 * A rolling update replaces the task of every slot whose spec differs from
 * the target spec, in batches of `parallelism` slots (0: all at once), with
 * `delay` between batches, in the order stop-first (stop the old task, then
 * start the new one) or start-first (start the new one, stop the old one
 * once the new one is ready). A new task is done when it has been ready
 * (running, and healthy where a check exists) for `monitor`. The next batch
 * starts when every slot of the one before is done and the delay passed.
 * When failures pass max_failure_ratio of the replicas, the update has
 * failed, and the caller applies the failure action (pause or rollback; with
 * continue, the planner goes on as if nothing failed).
 *
 * The planner sees each slot as flags the orchestrator derives from the
 * tasks; it returns which slots to act on now and what became of the
 * update. It does no I/O and keeps no state: what must survive a restart
 * (next_batch_ms) goes in and comes out, and the caller stores it.
 */
#ifndef SKIFF_PLAN_H
#define SKIFF_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "skiff_pb.h"

typedef struct plan_slot {
    uint32_t slot;
    int has_old;        /* a task that should run, with a spec unlike the target */
    int old_stopping;   /* an old task told to stop that has not stopped yet */
    int has_new;        /* a task that should run, with the target spec */
    int new_ready;      /* that new task is running, and healthy where checked */
    int64_t new_ready_since_ms;
} plan_slot_t;

typedef struct plan_input {
    const UpdateConfig *config;
    int64_t now_ms;
    int64_t next_batch_ms;  /* from UpdateStatus; 0: none set */
    uint32_t replicas;
    uint32_t failures;      /* new tasks that failed since the update began */
    const plan_slot_t *slots;
    size_t n_slots;
} plan_input_t;

enum plan_outcome {
    PLAN_IN_PROGRESS,  /* act on the slots below, look again by wake_ms */
    PLAN_DONE,         /* every slot runs the target spec and is done */
    PLAN_FAILED,       /* failures passed the ratio: apply the failure action */
};

enum plan_action {
    PLAN_STOP_OLD,   /* stop the old task (stop-first: its replacement follows
                        once it stopped; start-first: the new one is ready) */
    PLAN_START_NEW,  /* start-first: start the new task beside the old one */
};

typedef struct plan_step {
    uint32_t slot;
    enum plan_action action;
} plan_step_t;

typedef struct plan_result {
    enum plan_outcome outcome;
    plan_step_t *steps;      /* caller's array of at least n_slots entries */
    size_t n_steps;
    int64_t next_batch_ms;   /* store it back into UpdateStatus */
    int64_t wake_ms;         /* look again no later than this; 0: on change only */
} plan_result_t;

/* Plans the next steps. result->steps must point at room for n_slots steps.
 * Slots are taken in increasing slot order. With max_failure_ratio r,
 * the update fails when failures > r * replicas (so with r = 0, at the
 * first failure), unless the failure action is continue. */
void plan_update(const plan_input_t *in, plan_result_t *result);

#endif
