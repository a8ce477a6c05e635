/* plan: the rolling-update planner; see plan.h.
 *
 * Every slot is in one of three states, read from its flags:
 *   todo       the old task runs and nothing has been done to it yet
 *              (has_old, no new task, old not stopping);
 *   done       only the new task is left, and it has been ready for
 *              `monitor` (no old task, old not stopping, new ready);
 *   in flight  anything between: the old one stopping, the new one not
 *              ready or not monitored long enough, old and new side by side
 *              (start-first), or neither task (the replacement is coming).
 * A batch is started only when no slot is in flight, so batches never
 * overlap, and the next one waits for `delay` after the one before is done.
 * The function keeps no state: next_batch_ms goes in and comes out.
 */
#include "plan.h"

#include <stdlib.h>

enum plan_slot_state { PLAN_SLOT_TODO, PLAN_SLOT_DONE, PLAN_SLOT_IN_FLIGHT };

static enum plan_slot_state plan_slot_state(const plan_slot_t *s, int64_t now, int64_t monitor)
{
    if (s->has_old && !s->has_new && !s->old_stopping)
        return PLAN_SLOT_TODO;
    if (!s->has_old && !s->old_stopping && s->has_new && s->new_ready &&
        now - s->new_ready_since_ms >= monitor)
        return PLAN_SLOT_DONE;
    return PLAN_SLOT_IN_FLIGHT;
}

static int plan_step_cmp(const void *a, const void *b)
{
    const plan_step_t *x = a, *y = b;

    return (x->slot > y->slot) - (x->slot < y->slot);
}

/* Steps in increasing slot order, as plan.h promises. */
static void plan_sort(plan_result_t *result)
{
    if (result->n_steps > 1)
        qsort(result->steps, result->n_steps, sizeof(*result->steps), plan_step_cmp);
}

/* wake = the earlier of wake and t, where 0 means none. */
static int64_t plan_earliest(int64_t wake, int64_t t)
{
    return !wake || t < wake ? t : wake;
}

void plan_update(const plan_input_t *in, plan_result_t *result)
{
    const UpdateConfig *cfg = in->config;
    int64_t now = in->now_ms;
    int64_t monitor = cfg->monitor_ms > 0 ? cfg->monitor_ms : 0;
    size_t todo = 0, done = 0, in_flight = 0, n_batch;

    result->outcome = PLAN_IN_PROGRESS;
    result->n_steps = 0;
    result->next_batch_ms = in->next_batch_ms;
    result->wake_ms = 0;

    if (cfg->failure_action != FAILURE_CONTINUE &&
        (double)in->failures > cfg->max_failure_ratio * (double)in->replicas) {
        result->outcome = PLAN_FAILED;
        return;
    }

    /* Classify. In-flight slots may need their old task stopped now (the
     * new one beside it is ready) or a look when their monitor ends. */
    for (size_t i = 0; i < in->n_slots; i++) {
        const plan_slot_t *s = &in->slots[i];

        switch (plan_slot_state(s, now, monitor)) {
        case PLAN_SLOT_TODO:
            todo++;
            break;
        case PLAN_SLOT_DONE:
            done++;
            break;
        case PLAN_SLOT_IN_FLIGHT:
            in_flight++;
            if (s->has_old && s->has_new && s->new_ready)
                result->steps[result->n_steps++] =
                    (plan_step_t){ .slot = s->slot, .action = PLAN_STOP_OLD };
            else if (!s->has_old && !s->old_stopping && s->has_new && s->new_ready)
                result->wake_ms = plan_earliest(result->wake_ms,
                                                s->new_ready_since_ms + monitor);
            break;
        }
    }

    if (!todo && !in_flight) {
        result->outcome = PLAN_DONE;
        result->next_batch_ms = 0;
        return;
    }
    if (in_flight) {
        plan_sort(result);
        return;
    }

    /* Nothing in flight, slots to do: the next batch, after the delay. The
     * first batch of an update (nothing done, nothing in flight) starts at
     * once. */
    if (cfg->delay_ms > 0 && !in->next_batch_ms && done) {
        result->next_batch_ms = now + cfg->delay_ms;
        result->wake_ms = result->next_batch_ms;
        return;
    }
    if (in->next_batch_ms && now < in->next_batch_ms) {
        result->wake_ms = in->next_batch_ms;
        return;
    }
    n_batch = cfg->parallelism ? cfg->parallelism : todo;
    for (size_t i = 0; i < in->n_slots; i++)
        if (plan_slot_state(&in->slots[i], now, monitor) == PLAN_SLOT_TODO)
            result->steps[result->n_steps++] = (plan_step_t){
                .slot = in->slots[i].slot,
                .action = cfg->order == ORDER_START_FIRST ? PLAN_START_NEW : PLAN_STOP_OLD,
            };
    /* The lowest-numbered n_batch of them, whatever the order of the input. */
    plan_sort(result);
    if (result->n_steps > n_batch)
        result->n_steps = n_batch;
    result->next_batch_ms = 0;
    result->wake_ms = 0;
}
