/* orch: the orchestrator. It turns what changed into decisions on the model:
 * tasks to create for empty slots, dead tasks to replace (with backoff),
 * slots past the replica count to stop, tasks of lost or drained nodes to
 * move, the next steps of a rolling update (plan.h), and a node for every
 * unplaced task (scheduler.h). Then it queues the Assignments and Endpoints that
 * the decisions imply; ctl.c sends them once the decisions are committed.
 *
 * It decides from the model alone; the pure parts (placement, update
 * planning) are separate modules with their own tests.
 */
#include "ctl.h"
#include "errors.h"
#include "log.h"
#include "pbutil.h"
#include "plan.h"
#include "rebalance.h"
#include "scheduler.h"
#include "spec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#define ORCH_HISTORY 5            /* finished tasks kept per slot, as Swarm's default */
#define ORCH_BACKOFF_BASE_MS 1000 /* replacing a failed task: 1s, 2s, 4s ... */
#define ORCH_BACKOFF_CAP_MS 60000
#define ORCH_SLOT_TASKS 8         /* desired-running tasks tracked per slot */
#define ORCH_MOVE_BACKOFF_MS 60000 /* after a rebalancing move that did not make it */

void orch_mark(service_t *svc)
{
    svc->reconcile = 1;
}

void orch_mark_node(node_t *node)
{
    task_t *t;

    DL_FOREACH2(node->tasks, t, node_next)
        orch_mark(t->svc);
}

void orch_stack_changed(ctl_t *ctl, const char *stack)
{
    service_t *svc, *tmp;
    task_t *t;

    HASH_ITER(hh, ctl->model.services, svc, tmp) {
        if (strcmp(svc->pb->spec->stack, stack) != 0)
            continue;
        DL_FOREACH2(svc->tasks, t, svc_next)
            if (t->node)
                t->node->assign_dirty = 1;
    }
}

/* ------------------------------------------------------------ task edits */

static void orch_set_desired(ctl_t *ctl, task_t *t, DesiredState d)
{
    if (t->pb->desired_state == d)
        return;
    t->pb->desired_state = d;
    if (t->node)
        t->node->assign_dirty = 1;
    model_touch_task(&ctl->model, t);
}

void orch_set_state(ctl_t *ctl, task_t *t, TaskState s, const char *message)
{
    if (t->pb->state != s) {
        t->pb->state = s;
        t->pb->state_since_ms = model_wall_ms();
    }
    pb_set_str(&t->pb->message, message);
    if (!model_task_ready(t))
        t->pb->ready_since_ms = 0;
    if (t->node && model_state_terminal(s))
        t->node->assign_dirty = 1;
    model_touch_task(&ctl->model, t);
}

/* A new task for the slot; replacing: why it takes the place of one that
 * ran (counted), or -1 when it does not. */
static task_t *orch_new_task(ctl_t *ctl, service_t *svc, uint32_t slot, int replacing)
{
    Task *pb = PB_NEW(Task);
    char id[MODEL_ID_LEN + 1];
    task_t *t;

    if (!pb || model_service_keep_spec(&ctl->model, svc))
        goto out_nomem;
    model_new_id(id);
    if (pb_set_str(&pb->id, id) || pb_set_str(&pb->service_id, svc->pb->id) ||
        pb_set_str(&pb->service_name, svc->pb->spec->name) ||
        pb_set_str(&pb->image, svc->pb->spec->image))
        goto out_nomem;
    pb->slot = slot;
    pb->spec_version = svc->pb->version;
    pb->desired_state = DESIRED_RUNNING;
    pb->state = TASK_NEW;
    pb->created_ms = pb->state_since_ms = model_wall_ms();
    if (!(t = model_task_add(&ctl->model, svc, NULL, pb)))
        goto out_nomem;
    t->evt_state = -1; /* its first state is news */
    model_touch_task(&ctl->model, t);
    ctl->sched_needed = 1;
    if (replacing >= 0 && replacing < MODEL_REPLACE_COUNT)
        svc->counters.replaced[replacing]++;
    return t;

out_nomem:
    pb_free(pb);
    log_error("out of memory creating a task of %s", svc->pb->spec->name);
    return NULL;
}

/* --------------------------------------------------------------- slots */

typedef struct slot_view {
    task_t *run[ORCH_SLOT_TASKS]; /* desired running */
    size_t n_run;
    int stopping;      /* a task told to stop that has not stopped yet */
    int old_stopping;  /* ... with a spec unlike the target */
    task_t *latest;    /* the newest task of the slot */
    unsigned failures; /* failed tasks in a row at the end of the slot's history */
    unsigned finished; /* tasks not desired running, for the history bound */
} slot_view_t;

/* A small cache: does spec version v have the target's content? */
typedef struct orch_match {
    uint64_t versions[16];
    int same[16];
    size_t n;
} orch_match_t;

static int orch_matches(const service_t *svc, orch_match_t *c, uint64_t v)
{
    const ServiceSpec *spec;
    int same;

    if (v == svc->pb->version)
        return 1;
    for (size_t i = 0; i < c->n; i++)
        if (c->versions[i] == v)
            return c->same[i];
    spec = model_service_spec(svc, v);
    same = spec && spec_same_but_replicas(spec, svc->pb->spec);
    if (c->n < 16) {
        c->versions[c->n] = v;
        c->same[c->n++] = same;
    }
    return same;
}

static int orch_node_up(const node_t *n)
{
    return n && n->pb->state == NODE_READY;
}

static int orch_node_usable(const node_t *n)
{
    return orch_node_up(n) && n->pb->availability == AVAILABILITY_ACTIVE;
}

/* Fills out[0..n) with the keys and values of labels; returns n. */
static size_t orch_labels(sched_label_t *out, Label *const *labels, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        out[i].key = labels[i]->key;
        out[i].value = labels[i]->value;
    }
    return n;
}

/* Labels of a node as orch_task_fits looks at them; a node with more (none
 * has: the agent's and the controller's are both held to 64) is not
 * checked. */
#define ORCH_NODE_LABELS 64

/* 0 when the node the task is on no longer satisfies the constraints of the
 * task's spec: a label changed on the controller (node update --label-add,
 * --label-rm). Such a task moves as from a drained node, the way Swarm's
 * constraint enforcer moves it: a replacement is placed where the
 * constraints hold, and the task stops once that one is ready, or at once
 * when it fits nowhere. */
static int orch_task_fits(const task_t *t)
{
    const ServiceSpec *spec = model_service_spec(t->svc, t->pb->spec_version);
    sched_label_t labels[ORCH_NODE_LABELS], spec_labels[ORCH_NODE_LABELS];
    const Node *pb = t->node ? t->node->pb : NULL;
    sched_node_t sn = { 0 };
    constraint_t c;

    if (!pb || !spec || !spec->n_constraints || pb->n_labels > ORCH_NODE_LABELS ||
        pb->n_spec_labels > ORCH_NODE_LABELS)
        return 1;
    sn.id = pb->id;
    sn.name = pb->name;
    sn.labels = labels;
    sn.n_labels = orch_labels(labels, pb->labels, pb->n_labels);
    sn.spec_labels = spec_labels;
    sn.n_spec_labels = orch_labels(spec_labels, pb->spec_labels, pb->n_spec_labels);
    for (size_t i = 0; i < spec->n_constraints; i++)
        if (constraint_parse(spec->constraints[i], &c) == 0 && !sched_constraint_ok(&sn, &c))
            return 0;
    return 1;
}

/* The task's node is up, active, and satisfies the task's constraints. */
static int orch_task_usable(const task_t *t)
{
    return orch_node_usable(t->node) && orch_task_fits(t);
}

/* A task that still has a container running somewhere reachable: told to
 * stop, not stopped yet, on a node that is up. */
static int orch_still_stopping(const task_t *t)
{
    return t->pb->desired_state != DESIRED_RUNNING && !model_state_terminal(t->pb->state) &&
           t->pb->state != TASK_NEW && t->pb->state != TASK_PENDING && orch_node_up(t->node);
}

static slot_view_t *orch_slots(service_t *svc, orch_match_t *match, uint32_t *n_slots)
{
    uint32_t max = svc->removed ? 0 : svc->pb->spec->replicas;
    slot_view_t *slots;
    task_t *t;

    DL_FOREACH2(svc->tasks, t, svc_next)
        if (t->pb->slot > max)
            max = t->pb->slot;
    slots = calloc((size_t)max + 1, sizeof(*slots));
    if (!slots)
        return NULL;
    DL_FOREACH2(svc->tasks, t, svc_next) {
        slot_view_t *s = &slots[t->pb->slot];
        TaskState st = t->pb->state;

        if (t->pb->slot == 0)
            continue;
        s->latest = t; /* tasks are kept oldest first */
        if (t->pb->desired_state == DESIRED_RUNNING) {
            if (s->n_run < ORCH_SLOT_TASKS)
                s->run[s->n_run++] = t;
        } else {
            s->finished++;
            if (orch_still_stopping(t)) {
                s->stopping = 1;
                if (!orch_matches(svc, match, t->pb->spec_version))
                    s->old_stopping = 1;
            }
        }
        if (st == TASK_FAILED || st == TASK_REJECTED)
            s->failures++;
        else if (st == TASK_RUNNING || st == TASK_COMPLETE)
            s->failures = 0;
    }
    *n_slots = max;
    return slots;
}

static void orch_slot_drop(slot_view_t *s, size_t i)
{
    s->run[i] = s->run[--s->n_run];
}

/* ------------------------------------------------------- reconciliation */

/* 1 when the restart policy wants no replacement for this ended task. */
static int orch_no_replacement(const service_t *svc, const task_t *t)
{
    const ServiceSpec *spec = model_service_spec(svc, t->pb->spec_version);
    RestartCondition c = spec && spec->restart ? spec->restart->condition : RESTART_ANY;

    if (t->pb->state == TASK_COMPLETE)
        return c != RESTART_ANY;
    if (t->pb->state == TASK_FAILED)
        return c == RESTART_NONE;
    return 0;
}

static int64_t orch_backoff_ms(unsigned failures)
{
    int64_t d = ORCH_BACKOFF_BASE_MS;

    while (failures-- > 1 && d < ORCH_BACKOFF_CAP_MS)
        d *= 2;
    return d < ORCH_BACKOFF_CAP_MS ? d : ORCH_BACKOFF_CAP_MS;
}

static void orch_wake(ctl_t *ctl, service_t *svc, int64_t delay_ms)
{
    int64_t at = ctl_now(ctl) + (delay_ms > 0 ? delay_ms : 1);

    if (!svc->wake_ms || at < svc->wake_ms)
        svc->wake_ms = at;
}

/* How long the slot must still wait before its next task when its last
 * tasks failed in a row (ms; 0 or less: no wait). */
static int64_t orch_slot_backoff(const slot_view_t *s)
{
    const task_t *last = s->latest;

    if (!last || s->failures == 0)
        return 0;
    /* the backoff, less the time since the last task's state changed */
    return orch_backoff_ms(s->failures) - (model_wall_ms() - last->pb->state_since_ms);
}

/* Dead tasks that should run are told to stop (their slot then gets a
 * replacement); tasks past the replica count stop. */
static void orch_reap(ctl_t *ctl, service_t *svc, slot_view_t *s, uint32_t slot)
{
    for (size_t i = 0; i < s->n_run;) {
        task_t *t = s->run[i];
        if (model_state_terminal(t->pb->state) || slot > svc->pb->spec->replicas ||
            svc->removed) {
            orch_set_desired(ctl, t, DESIRED_SHUTDOWN);
            orch_slot_drop(s, i);
            continue;
        }
        i++;
    }
}

static int orch_slot_index(const slot_view_t *s, const task_t *t)
{
    for (size_t i = 0; i < s->n_run; i++)
        if (s->run[i] == t)
            return (int)i;
    return -1;
}

/* A rebalancing move in the slot (a task that replaces another one of it):
 * the old one stops once the new one is ready; a new one whose node is no
 * longer usable is given up. Returns 1 while the move is in flight (both
 * stay, nothing else to settle), 0 otherwise. */
static int orch_settle_move(ctl_t *ctl, slot_view_t *s)
{
    task_t *mover = NULL, *moved = NULL;

    for (size_t i = 0; i < s->n_run && !moved; i++) {
        if (!*s->run[i]->pb->replaces)
            continue;
        for (size_t k = 0; k < s->n_run; k++)
            if (k != i && strcmp(s->run[k]->pb->id, s->run[i]->pb->replaces) == 0) {
                mover = s->run[i];
                moved = s->run[k];
            }
    }
    if (!mover)
        return 0;
    if (!mover->node || !orch_node_usable(mover->node)) {
        if (!mover->node)
            orch_set_state(ctl, mover, TASK_SHUTDOWN, "move given up: its node left");
        orch_set_desired(ctl, mover, DESIRED_SHUTDOWN);
        orch_slot_drop(s, (size_t)orch_slot_index(s, mover));
        return 0;
    }
    if (model_task_ready(mover)) {
        /* handed over: the old one leaves every balancer, then stops; the
         * new one is a task like any other from now on */
        orch_set_desired(ctl, moved, DESIRED_SHUTDOWN);
        pb_set_str(&mover->pb->replaces, "");
        model_touch_task(&ctl->model, mover);
        orch_slot_drop(s, (size_t)orch_slot_index(s, moved));
        return 0;
    }
    /* in flight while the old one's node is fine; a lost old one makes the
     * mover its replacement, as any other */
    return moved->node && orch_node_usable(moved->node);
}

/* Lost nodes, drained nodes, and more tasks than the slot needs. */
static void orch_settle(ctl_t *ctl, service_t *svc, slot_view_t *s, uint32_t slot,
                        orch_match_t *match, int updating)
{
    task_t *good = NULL, *ready = NULL;
    int has_away = 0, has_down = 0, has_drained = 0;
    int64_t wait;

    if (orch_settle_move(ctl, s))
        return;

    for (size_t i = 0; i < s->n_run; i++) {
        task_t *t = s->run[i];
        if (!t->node || orch_task_usable(t)) {
            if (!good || (t->node && !good->node) || (model_task_ready(t) && !model_task_ready(good)))
                good = t;
            if (t->node && model_task_ready(t))
                ready = t;
        } else {
            has_away = 1;
            has_down |= !orch_node_up(t->node);
            has_drained |= !orch_node_usable(t->node);
        }
    }
    if (has_away && !good) {
        /* Every task of the slot is on a node that is down or drained: start
         * a replacement (after the slot's backoff, when replacements keep
         * failing); the old ones stop once it is ready (below, in a later
         * pass). */
        if ((wait = orch_slot_backoff(s)) > 0)
            orch_wake(ctl, svc, wait);
        else
            orch_new_task(ctl, svc, slot, has_down ? MODEL_REPLACE_NODE_DOWN
                                          : has_drained ? MODEL_REPLACE_DRAIN
                                                        : MODEL_REPLACE_CONSTRAINT);
        return;
    }
    for (size_t i = 0; i < s->n_run;) {
        task_t *t = s->run[i];
        int stop = 0;

        if (t->node && !orch_node_up(t->node)) {
            /* Lost: stop it (off its node's set) once a replacement is ready;
             * until then a returning agent keeps it running, and the
             * replacement, not running yet, is the one that stops. */
            stop = ready != NULL;
            if (stop)
                orch_set_state(ctl, t, TASK_ORPHANED, "node down; replaced");
        } else if (t->node && (t->node->pb->availability != AVAILABILITY_ACTIVE ||
                               !orch_task_fits(t))) {
            /* Drained, or its node no longer satisfies its constraints: stop
             * once the replacement is ready, or when none can be placed
             * (drain wins). */
            stop = (good && model_task_ready(good)) || (good && !good->node);
        } else if (t != good && !(updating && s->n_run == 2 &&
                                  orch_matches(svc, match, t->pb->spec_version) !=
                                  orch_matches(svc, match, good->pb->spec_version))) {
            /* A second task in the slot (a lost one came back, a pair left by
             * an update that ended): keep the best one. */
            if (!t->node)
                orch_set_state(ctl, t, TASK_SHUTDOWN, "not needed any more");
            stop = 1;
        }
        if (stop) {
            orch_set_desired(ctl, t, DESIRED_SHUTDOWN);
            orch_slot_drop(s, i);
            continue;
        }
        i++;
    }
}

/* Why a new task in a slot whose newest task was last replaces it; -1 when
 * it does not (a new slot, or one scaled away that comes back). */
static int orch_replace_reason(const service_t *svc, const task_t *last)
{
    UpdateState u = svc->pb->update_status->state;

    if (!last)
        return -1;
    switch (last->pb->state) {
    case TASK_FAILED: return MODEL_REPLACE_FAILED;
    case TASK_REJECTED: return MODEL_REPLACE_REJECTED;
    case TASK_COMPLETE: return MODEL_REPLACE_COMPLETED;
    case TASK_ORPHANED: return MODEL_REPLACE_NODE_DOWN;
    default: break;
    }
    if (u == UPDATE_UPDATING)
        return MODEL_REPLACE_UPDATE;
    if (u == UPDATE_ROLLBACK_STARTED)
        return MODEL_REPLACE_ROLLBACK;
    return last->pb->desired_state == DESIRED_RUNNING ? MODEL_REPLACE_OTHER : -1;
}

/* An empty slot that should run gets a new task, after the old one stopped,
 * and after a backoff when tasks of the slot keep failing. */
static void orch_fill(ctl_t *ctl, service_t *svc, slot_view_t *s, uint32_t slot)
{
    const task_t *last = s->latest;
    int64_t wait;

    if (s->n_run > 0 || slot > svc->pb->spec->replicas || svc->removed || s->stopping)
        return;
    if (last && model_state_terminal(last->pb->state) && orch_no_replacement(svc, last))
        return;
    if ((wait = orch_slot_backoff(s)) > 0) {
        orch_wake(ctl, svc, wait);
        return;
    }
    orch_new_task(ctl, svc, slot, orch_replace_reason(svc, last));
}

/* Keeps the newest ORCH_HISTORY finished tasks of a slot. */
static void orch_prune(ctl_t *ctl, service_t *svc, slot_view_t *slots, uint32_t n_slots)
{
    task_t *t, *tmp;

    DL_FOREACH_SAFE2(svc->tasks, t, tmp, svc_next) {
        slot_view_t *s;
        if (t->pb->slot > n_slots)
            continue;
        s = &slots[t->pb->slot];
        if (s->finished <= ORCH_HISTORY)
            continue;
        if (t->pb->desired_state == DESIRED_RUNNING || orch_still_stopping(t))
            continue;
        s->finished--;
        model_task_delete(&ctl->model, t);
    }
}

/* ------------------------------------------------------- rolling update */

static int orch_task_failed_update(const task_t *t)
{
    return t->pb->state == TASK_FAILED || t->pb->state == TASK_REJECTED ||
           t->pb->restarts > 0 || t->pb->health == HEALTH_UNHEALTHY;
}

static void orch_update_status(ctl_t *ctl, service_t *svc, UpdateState state, const char *msg)
{
    UpdateStatus *u = svc->pb->update_status;
    const char *action;
    int result = -1;
    Event *e;

    u->state = state;
    pb_set_str(&u->message, msg);
    if (state == UPDATE_COMPLETED || state == UPDATE_ROLLBACK_COMPLETED ||
        state == UPDATE_PAUSED || state == UPDATE_ROLLBACK_PAUSED)
        u->completed_ms = model_wall_ms();
    model_touch_service(&ctl->model, svc);
    switch (state) {
    case UPDATE_COMPLETED: action = "update_completed"; result = MODEL_UPDATE_COMPLETED; break;
    case UPDATE_PAUSED: action = "update_paused"; result = MODEL_UPDATE_PAUSED; break;
    case UPDATE_ROLLBACK_STARTED: action = "rollback_started"; break;
    case UPDATE_ROLLBACK_COMPLETED:
        action = "rollback_completed";
        result = MODEL_UPDATE_ROLLED_BACK;
        break;
    case UPDATE_ROLLBACK_PAUSED:
        action = "rollback_paused";
        result = MODEL_UPDATE_ROLLBACK_PAUSED;
        break;
    default: action = "update"; break;
    }
    if (result >= 0)
        svc->counters.updates[result]++;
    e = ctl_event_service(ctl, action, svc);
    if (e && event_attr(e, "version", "%llu", (unsigned long long)svc->pb->version))
        e = (pb_free(e), NULL);
    ctl_emit(ctl, e, "%s", msg);
}

/* Starts a rollback: the previous spec comes back as a new version, rolled
 * out with the rollback config. The replica count stays as it is. */
int orch_start_rollback(ctl_t *ctl, service_t *svc, const char *why)
{
    ServiceSpec *back, *failed = svc->pb->spec;
    UpdateStatus *u = svc->pb->update_status;

    if (!svc->pb->previous_spec)
        return SKIFF_ENOTFOUND;
    back = svc->pb->previous_spec;
    back->replicas = failed->replicas;
    svc->pb->spec = back;
    svc->pb->previous_spec = failed;
    svc->pb->version++;
    svc->pb->updated_ms = model_wall_ms();
    u->started_ms = model_wall_ms();
    u->completed_ms = 0;
    u->next_batch_ms = 0;
    if (model_service_keep_spec(&ctl->model, svc))
        return -ENOMEM;
    orch_update_status(ctl, svc, UPDATE_ROLLBACK_STARTED, why);
    orch_mark(svc);
    return 0;
}

static void orch_update(ctl_t *ctl, service_t *svc, slot_view_t *slots, uint32_t n_slots,
                        orch_match_t *match)
{
    UpdateStatus *u = svc->pb->update_status;
    int rollback = u->state == UPDATE_ROLLBACK_STARTED;
    uint32_t replicas = svc->pb->spec->replicas;
    plan_slot_t *ps;
    plan_step_t *steps;
    plan_input_t in = { 0 };
    plan_result_t res = { 0 };
    char msg[256];
    task_t *t;

    ps = calloc((size_t)replicas + 1, sizeof(*ps));
    steps = calloc((size_t)replicas + 1, sizeof(*steps));
    if (!ps || !steps)
        goto out_free;
    for (uint32_t i = 1; i <= replicas && i <= n_slots; i++) {
        slot_view_t *s = &slots[i];
        plan_slot_t *p = &ps[i - 1];
        p->slot = i;
        p->old_stopping = s->old_stopping;
        for (size_t k = 0; k < s->n_run; k++) {
            t = s->run[k];
            if (!orch_matches(svc, match, t->pb->spec_version)) {
                p->has_old = 1;
            } else {
                p->has_new = 1;
                if (model_task_ready(t) && t->pb->ready_since_ms) {
                    p->new_ready = 1;
                    p->new_ready_since_ms = t->pb->ready_since_ms;
                }
            }
        }
    }
    DL_FOREACH2(svc->tasks, t, svc_next)
        if (t->pb->created_ms >= u->started_ms && orch_matches(svc, match, t->pb->spec_version) &&
            orch_task_failed_update(t))
            in.failures++;
    in.config = rollback ? svc->pb->spec->rollback : svc->pb->spec->update;
    in.now_ms = model_wall_ms();
    in.next_batch_ms = u->next_batch_ms;
    in.replicas = replicas;
    in.slots = ps;
    in.n_slots = replicas < n_slots ? replicas : n_slots;
    res.steps = steps;
    plan_update(&in, &res);
    if (res.next_batch_ms != u->next_batch_ms) {
        u->next_batch_ms = res.next_batch_ms;
        model_touch_service(&ctl->model, svc);
    }
    if (res.wake_ms)
        orch_wake(ctl, svc, res.wake_ms - in.now_ms);
    switch (res.outcome) {
    case PLAN_DONE:
        orch_update_status(ctl, svc, rollback ? UPDATE_ROLLBACK_COMPLETED : UPDATE_COMPLETED,
                           rollback ? "rollback completed" : "update completed");
        break;
    case PLAN_FAILED:
        snprintf(msg, sizeof(msg), "%u task%s failed during the %s", in.failures,
                 in.failures == 1 ? "" : "s", rollback ? "rollback" : "update");
        if (!rollback && in.config->failure_action == FAILURE_ROLLBACK) {
            char why[300];
            snprintf(why, sizeof(why), "rollback started: %s", msg);
            orch_start_rollback(ctl, svc, why);
        } else {
            char why[300];
            snprintf(why, sizeof(why), "%s paused: %s", rollback ? "rollback" : "update", msg);
            orch_update_status(ctl, svc, rollback ? UPDATE_ROLLBACK_PAUSED : UPDATE_PAUSED, why);
        }
        break;
    case PLAN_IN_PROGRESS:
        for (size_t i = 0; i < res.n_steps; i++) {
            slot_view_t *s = &slots[res.steps[i].slot];
            if (res.steps[i].action == PLAN_START_NEW) {
                orch_new_task(ctl, svc, res.steps[i].slot,
                              rollback ? MODEL_REPLACE_ROLLBACK : MODEL_REPLACE_UPDATE);
                continue;
            }
            for (size_t k = 0; k < s->n_run;) {
                if (!orch_matches(svc, match, s->run[k]->pb->spec_version)) {
                    orch_set_desired(ctl, s->run[k], DESIRED_SHUTDOWN);
                    s->stopping = s->old_stopping = orch_still_stopping(s->run[k]);
                    orch_slot_drop(s, k);
                    continue;
                }
                k++;
            }
        }
        break;
    }

out_free:
    free(ps);
    free(steps);
}

static int orch_updating(const service_t *svc)
{
    UpdateState s = svc->pb->update_status->state;

    return !svc->removed && (s == UPDATE_UPDATING || s == UPDATE_ROLLBACK_STARTED);
}

/* Deletes a removed service once none of its tasks can still run. */
static int orch_gc_removed(ctl_t *ctl, service_t *svc)
{
    task_t *t;

    DL_FOREACH2(svc->tasks, t, svc_next)
        if (t->pb->desired_state == DESIRED_RUNNING || orch_still_stopping(t))
            return 0;
    log_info("service %s: every task stopped; deleting it", svc->pb->spec->name);
    model_service_delete(&ctl->model, svc);
    return 1;
}

static void orch_reconcile(ctl_t *ctl, service_t *svc)
{
    orch_match_t match = { 0 };
    int updating = orch_updating(svc);
    slot_view_t *slots;
    uint32_t n_slots;

    slots = orch_slots(svc, &match, &n_slots);
    if (!slots) {
        log_error("out of memory reconciling %s", svc->pb->spec->name);
        orch_wake(ctl, svc, 1000);
        return;
    }
    for (uint32_t i = 1; i <= n_slots; i++) {
        orch_reap(ctl, svc, &slots[i], i);
        orch_settle(ctl, svc, &slots[i], i, &match, updating);
    }
    if (updating)
        orch_update(ctl, svc, slots, n_slots, &match);
    for (uint32_t i = 1; i <= n_slots; i++)
        orch_fill(ctl, svc, &slots[i], i);
    orch_prune(ctl, svc, slots, n_slots);
    free(slots);
    model_service_prune_specs(&ctl->model, svc);
    if (svc->removed)
        orch_gc_removed(ctl, svc);
}

/* ------------------------------------------------------------ placement */

typedef struct orch_sched {
    sched_node_t *nodes;
    node_t **owners;
    sched_label_t *labels;
    size_t n;
} orch_sched_t;

static int orch_sched_view(ctl_t *ctl, orch_sched_t *v)
{
    size_t n = HASH_COUNT(ctl->model.nodes), n_labels = 0, i = 0, li = 0;
    node_t *node, *tmp;

    HASH_ITER(hh, ctl->model.nodes, node, tmp)
        n_labels += node->pb->n_labels + node->pb->n_spec_labels;
    v->nodes = calloc(n ? n : 1, sizeof(*v->nodes));
    v->owners = calloc(n ? n : 1, sizeof(*v->owners));
    v->labels = calloc(n_labels ? n_labels : 1, sizeof(*v->labels));
    v->n = n;
    if (!v->nodes || !v->owners || !v->labels)
        return -ENOMEM;
    HASH_ITER(hh, ctl->model.nodes, node, tmp) {
        sched_node_t *sn = &v->nodes[i];
        task_t *t;

        v->owners[i] = node;
        sn->id = node->pb->id;
        sn->name = node->pb->name;
        sn->labels = &v->labels[li];
        sn->n_labels = orch_labels(&v->labels[li], node->pb->labels, node->pb->n_labels);
        li += sn->n_labels;
        sn->spec_labels = &v->labels[li];
        sn->n_spec_labels = orch_labels(&v->labels[li], node->pb->spec_labels,
                                        node->pb->n_spec_labels);
        li += sn->n_spec_labels;
        sn->ready = node->pb->state == NODE_READY && node->peer != NULL;
        sn->active = node->pb->availability == AVAILABILITY_ACTIVE;
        if (node->pb->resources) {
            sn->cpu_total = node->pb->resources->nano_cpus;
            sn->mem_total = node->pb->resources->memory_bytes;
        }
        DL_FOREACH2(node->tasks, t, node_next) {
            const ServiceSpec *spec;
            if (t->pb->desired_state != DESIRED_RUNNING && !orch_still_stopping(t))
                continue;
            if (t->pb->desired_state == DESIRED_RUNNING)
                sn->tasks++;
            spec = model_service_spec(t->svc, t->pb->spec_version);
            if (spec && spec->reservations) {
                sn->cpu_reserved += spec->reservations->nano_cpus;
                sn->mem_reserved += spec->reservations->memory_bytes;
            }
        }
        i++;
    }
    return 0;
}

static void orch_sched_free(orch_sched_t *v)
{
    free(v->nodes);
    free(v->owners);
    free(v->labels);
}

/* Places the unplaced tasks of one service that share a spec version. */
static void orch_place(ctl_t *ctl, orch_sched_t *v, service_t *svc, task_t **tasks, size_t n)
{
    const ServiceSpec *spec = model_service_spec(svc, tasks[0]->pb->spec_version);
    constraint_t *cons = NULL;
    sched_request_t req = { 0 };
    char reason[512] = "";
    int *out = NULL;
    int placed;
    task_t *t;

    if (!spec)
        return;
    cons = calloc(spec->n_constraints ? spec->n_constraints : 1, sizeof(*cons));
    out = calloc(n, sizeof(*out));
    if (!cons || !out)
        goto out_free;
    for (size_t i = 0; i < spec->n_constraints; i++)
        constraint_parse(spec->constraints[i], &cons[i]); /* validated on the way in */
    for (size_t i = 0; i < v->n; i++) {
        v->nodes[i].service_tasks = 0;
        v->owners[i]->sched_index = (int)i;
    }
    DL_FOREACH2(svc->tasks, t, svc_next)
        if (t->node && t->pb->desired_state == DESIRED_RUNNING)
            v->nodes[t->node->sched_index].service_tasks++;
    req.constraints = cons;
    req.n_constraints = spec->n_constraints;
    req.cpu = spec->reservations ? spec->reservations->nano_cpus : 0;
    req.mem = spec->reservations ? spec->reservations->memory_bytes : 0;
    req.count = n;
    placed = sched_place(v->nodes, v->n, &req, out, reason, sizeof(reason));
    if (placed < 0)
        goto out_free;
    for (size_t i = 0; i < n; i++) {
        t = tasks[i];
        if (out[i] >= 0) {
            model_task_set_node(&ctl->model, t, v->owners[out[i]]);
            orch_set_state(ctl, t, TASK_ASSIGNED, "");
            orch_mark(svc); /* a replacement got a node: the task it replaces may stop */
        } else if (t->pb->state != TASK_PENDING || strcmp(t->pb->message, reason) != 0) {
            orch_set_state(ctl, t, TASK_PENDING, reason);
            orch_mark(svc); /* a drained task whose replacement fits nowhere may stop */
        }
    }

out_free:
    free(cons);
    free(out);
}

static int orch_by_slot(const void *a, const void *b)
{
    const task_t *x = *(task_t *const *)a, *y = *(task_t *const *)b;

    if (x->pb->spec_version != y->pb->spec_version)
        return x->pb->spec_version < y->pb->spec_version ? -1 : 1;
    return x->pb->slot < y->pb->slot ? -1 : x->pb->slot > y->pb->slot;
}

static void orch_schedule(ctl_t *ctl)
{
    orch_sched_t v = { 0 };
    service_t *svc, *tmp;
    task_t **batch = NULL, *t;
    size_t cap = 0;

    HASH_ITER(hh, ctl->model.services, svc, tmp) {
        size_t n = 0, start = 0;

        DL_FOREACH2(svc->tasks, t, svc_next) {
            if (t->node || t->pb->desired_state != DESIRED_RUNNING)
                continue;
            if (n == cap) {
                size_t grown_cap = cap ? cap * 2 : 64;
                task_t **grown = realloc(batch, grown_cap * sizeof(*grown));
                if (!grown)
                    goto out_free;
                batch = grown;
                cap = grown_cap;
            }
            batch[n++] = t;
        }
        if (n == 0)
            continue;
        if (!v.nodes && orch_sched_view(ctl, &v))
            goto out_free;
        qsort(batch, n, sizeof(*batch), orch_by_slot);
        for (size_t i = 1; i <= n; i++) {
            if (i == n || batch[i]->pb->spec_version != batch[start]->pb->spec_version) {
                orch_place(ctl, &v, svc, batch + start, i - start);
                start = i;
            }
        }
    }

out_free:
    free(batch);
    orch_sched_free(&v);
}

/* ---------------------------------------------------------------- pushes */

/* The names a task's container resolves to the node's balancer: the
 * services of its stack (short and full names), or, outside a stack, every
 * service outside a stack. */
static size_t orch_hosts(ctl_t *ctl, const ServiceSpec *spec, char ***out)
{
    service_t *s, *tmp;
    char **names = NULL;
    size_t n = 0;

    HASH_ITER(hh_name, ctl->model.services_by_name, s, tmp) {
        const ServiceSpec *o = s->pb->spec;
        if (strcmp(o->stack, spec->stack) != 0)
            continue;
        if (pb_push_str(&n, &names, o->name))
            break;
        if (*o->stack && strlen(o->name) > strlen(o->stack) + 1 &&
            pb_push_str(&n, &names, o->name + strlen(o->stack) + 1))
            break;
    }
    *out = names;
    return n;
}

/* In the node's set: tasks that should run, and tasks told to stop whose
 * container may still run there. */
static int orch_in_set(const task_t *t)
{
    if (t->pb->desired_state == DESIRED_RUNNING)
        return 1;
    return !model_state_terminal(t->pb->state) && t->pb->state != TASK_ORPHANED &&
           t->pb->state != TASK_NEW && t->pb->state != TASK_PENDING;
}

static void orch_push_assignments(ctl_t *ctl, node_t *node)
{
    Envelope env = PB_ENVELOPE_INIT;
    Assignments set = PB_ASSIGNMENTS_INIT;
    Assignment *items = NULL, **ptrs = NULL;
    size_t n = 0, count = 0;
    task_t *t;

    DL_FOREACH2(node->tasks, t, node_next)
        count += orch_in_set(t);
    items = calloc(count ? count : 1, sizeof(*items));
    ptrs = calloc(count ? count : 1, sizeof(*ptrs));
    if (!items || !ptrs)
        goto out_free;
    DL_FOREACH2(node->tasks, t, node_next) {
        Assignment *a = &items[n];
        if (!orch_in_set(t))
            continue;
        skiff__v1__assignment__init(a);
        a->task_id = t->pb->id;
        a->service_id = t->pb->service_id;
        a->service_name = t->pb->service_name;
        a->slot = t->pb->slot;
        a->spec_version = t->pb->spec_version;
        a->desired_state = t->pb->desired_state;
        a->spec = (ServiceSpec *)model_service_spec(t->svc, t->pb->spec_version);
        if (!a->spec)
            continue; /* cannot happen: versions in use are kept */
        a->n_hosts = orch_hosts(ctl, a->spec, &a->hosts);
        ptrs[n++] = a;
    }
    /* The values it uses go first; while locked, a set that needs a
     * secret waits (its agent keeps what it runs). */
    if (secrets_push(ctl, node->peer, ptrs, n))
        goto out_free;
    set.version = ++ctl->model.assignments_version;
    set.n_tasks = n;
    set.tasks = ptrs;
    ctl->model.meta_dirty = 1;
    env.msg_case = MSG_ASSIGNMENTS;
    env.assignments = &set;
    ctl_send(ctl, node->peer, &env);
    node->assign_dirty = 0;

out_free:
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < items[i].n_hosts; k++)
            free(items[i].hosts[k]);
        free(items[i].hosts);
    }
    free(items);
    free(ptrs);
}

/* Builds the Endpoints message (version 0) into out, packed. */
static int orch_build_endpoints(ctl_t *ctl, uint8_t **out, size_t *len, Endpoints **msg)
{
    Endpoints *eps = PB_NEW(Endpoints);
    service_t *svc, *tmp;
    task_t *t;

    if (!eps)
        return -ENOMEM;
    HASH_ITER(hh_name, ctl->model.services_by_name, svc, tmp) {
        const ServiceSpec *spec = svc->pb->spec;
        ServiceEndpoints *se;

        if (spec->n_ports == 0 && spec->n_expose == 0)
            continue;
        if (!(se = PB_NEW(ServiceEndpoints)) || pb_push_msg(&eps->n_services, (void ***)&eps->services, se)) {
            pb_free(se);
            goto out_nomem;
        }
        if (pb_set_str(&se->service_id, svc->pb->id) || pb_set_str(&se->service_name, spec->name))
            goto out_nomem;
        for (size_t i = 0; i < spec->n_ports + spec->n_expose; i++) {
            ServicePort *sp = PB_NEW(ServicePort);
            if (!sp || pb_push_msg(&se->n_ports, (void ***)&se->ports, sp)) {
                pb_free(sp);
                goto out_nomem;
            }
            if (i < spec->n_ports) {
                sp->port = spec->ports[i]->published;
                sp->target = spec->ports[i]->target;
            } else {
                sp->port = sp->target = spec->expose[i - spec->n_ports];
                sp->internal = 1;
            }
        }
        DL_FOREACH2(svc->tasks, t, svc_next) {
            Backend *b;
            if (t->pb->desired_state != DESIRED_RUNNING || !orch_node_up(t->node) ||
                !model_task_ready(t) || t->pb->n_ports == 0)
                continue;
            if (!(b = PB_NEW(Backend)) || pb_push_msg(&se->n_backends, (void ***)&se->backends, b)) {
                pb_free(b);
                goto out_nomem;
            }
            if (pb_set_str(&b->task_id, t->pb->id) || pb_set_str(&b->node_id, t->node->pb->id) ||
                pb_set_str(&b->address, t->node->pb->address))
                goto out_nomem;
            for (size_t i = 0; i < t->pb->n_ports; i++) {
                PortMapping *pm = pb_dup(t->pb->ports[i]);
                if (!pm || pb_push_msg(&b->n_ports, (void ***)&b->ports, pm)) {
                    pb_free(pm);
                    goto out_nomem;
                }
            }
        }
    }
    *len = protobuf_c_message_get_packed_size(&eps->base);
    *out = malloc(*len ? *len : 1);
    if (!*out)
        goto out_nomem;
    protobuf_c_message_pack(&eps->base, *out);
    *msg = eps;
    return 0;

out_nomem:
    pb_free(eps);
    return -ENOMEM;
}

static void orch_push_endpoints(ctl_t *ctl)
{
    Envelope env = PB_ENVELOPE_INIT;
    Endpoints *eps = NULL;
    uint8_t *packed = NULL;
    size_t len = 0;
    int changed;
    peer_t *p;

    if (orch_build_endpoints(ctl, &packed, &len, &eps)) {
        log_error("out of memory building endpoints");
        return;
    }
    changed = len != ctl->endpoints_len ||
              (len && memcmp(packed, ctl->endpoints_packed, len) != 0);
    if (changed) {
        free(ctl->endpoints_packed);
        ctl->endpoints_packed = packed;
        ctl->endpoints_len = len;
        packed = NULL;
        ctl->model.endpoints_version++;
        ctl->model.meta_dirty = 1;
    }
    eps->version = ctl->model.endpoints_version;
    env.msg_case = MSG_ENDPOINTS;
    env.endpoints = eps;
    for (p = ctl->peers; p; p = p->next) {
        if (p->role != ROLE_AGENT || !p->node || (!changed && !p->wants_endpoints))
            continue;
        p->wants_endpoints = 0;
        ctl_send(ctl, p, &env);
    }
    free(packed);
    pb_free(eps);
}

/* ----------------------------------------------------------------- views */

Service *orch_service_view(ctl_t *ctl, service_t *svc)
{
    Service *view = pb_dup(svc->pb);
    node_t *n, *tmp;
    task_t *t;

    if (!view)
        return NULL;
    view->desired_tasks = svc->removed ? 0 : svc->pb->spec->replicas;
    view->running_tasks = 0;
    DL_FOREACH2(svc->tasks, t, svc_next)
        view->running_tasks += t->pb->desired_state == DESIRED_RUNNING &&
                               t->pb->state == TASK_RUNNING;
    HASH_ITER(hh, ctl->model.nodes, n, tmp) {
        for (size_t i = 0; i < n->n_lb_stats; i++) {
            const LbStats *s = n->lb_stats[i];
            LbStats *sum = NULL;
            if (strcmp(s->service_name, svc->pb->spec->name) != 0)
                continue;
            for (size_t k = 0; k < view->n_lb_stats; k++)
                if (strcmp(view->lb_stats[k]->backend, s->backend) == 0)
                    sum = view->lb_stats[k];
            if (!sum) {
                if (!(sum = pb_dup(s)) ||
                    pb_push_msg(&view->n_lb_stats, (void ***)&view->lb_stats, sum)) {
                    pb_free(sum);
                    break;
                }
                continue;
            }
            sum->connections += s->connections;
            sum->active += s->active;
            sum->bytes_in += s->bytes_in;
            sum->bytes_out += s->bytes_out;
            sum->connect_failures += s->connect_failures;
        }
    }
    return view;
}

void orch_service_view_free(Service *view)
{
    pb_free(view);
}

/* ------------------------------------------------------------------- run */

static int orch_reconcile_marked(ctl_t *ctl)
{
    service_t *svc, *tmp;
    int any = 0;

    HASH_ITER(hh, ctl->model.services, svc, tmp) {
        if (!svc->reconcile)
            continue;
        svc->reconcile = 0;
        any = 1;
        orch_reconcile(ctl, svc); /* may delete svc */
    }
    return any;
}

static int orch_any_marked(const ctl_t *ctl)
{
    for (const service_t *svc = ctl->model.services; svc; svc = svc->hh.next)
        if (svc->reconcile)
            return 1;
    return 0;
}

void orch_run(ctl_t *ctl)
{
    node_t *node, *tmp;

    /* Reconcile, place, and reconcile again what placement changed (a
     * replacement that got a node lets the task it replaces stop). */
    for (int pass = 0; pass < 3; pass++) {
        if (orch_reconcile_marked(ctl))
            ctl->endpoints_check = 1;
        if (ctl->sched_needed) {
            ctl->sched_needed = 0;
            orch_schedule(ctl);
        }
        if (!orch_any_marked(ctl))
            break;
    }
    /* Endpoints first: a task told to stop has left every balancer before
     * its agent hears that it should stop. */
    if (ctl->endpoints_check || ctl->endpoints_wanted) {
        ctl->endpoints_check = 0;
        ctl->endpoints_wanted = 0;
        orch_push_endpoints(ctl);
    }
    HASH_ITER(hh, ctl->model.nodes, node, tmp)
        if (node->assign_dirty && node->peer)
            orch_push_assignments(ctl, node);
}

/* ----------------------------------------------------------- rebalance */

/* 1 when the service is as it should be: not updating, every slot with one
 * task, running and ready, nothing else on its way out. */
static int orch_steady(const service_t *svc)
{
    uint32_t ready = 0;
    task_t *t;

    if (svc->removed || orch_updating(svc))
        return 0;
    DL_FOREACH2(svc->tasks, t, svc_next) {
        if (t->pb->desired_state == DESIRED_RUNNING) {
            if (!model_task_ready(t) || !t->node || *t->pb->replaces)
                return 0;
            ready++;
        } else if (orch_still_stopping(t)) {
            return 0;
        }
    }
    return ready == svc->pb->spec->replicas;
}

/* The service's counts per node (index of v) and which may take one more. */
static int orch_rebalance_view(ctl_t *ctl, orch_sched_t *v, service_t *svc,
                               rebalance_node_t *rn)
{
    const ServiceSpec *spec = svc->pb->spec;
    constraint_t cons[32];
    size_t n_cons = spec->n_constraints < 32 ? spec->n_constraints : 32;
    int64_t cpu = spec->reservations ? spec->reservations->nano_cpus : 0;
    int64_t mem = spec->reservations ? spec->reservations->memory_bytes : 0;
    int64_t now = ctl_now(ctl);
    task_t *t;

    for (size_t i = 0; i < n_cons; i++)
        constraint_parse(spec->constraints[i], &cons[i]);
    for (size_t i = 0; i < v->n; i++) {
        const sched_node_t *sn = &v->nodes[i];
        const node_t *node = v->owners[i];
        int ok = sn->ready && sn->active && node->ready_since_ms &&
                 now - node->ready_since_ms >= ctl->cfg.rebalance_delay_ms;
        for (size_t c = 0; c < n_cons && ok; c++)
            ok = sched_constraint_ok(sn, &cons[c]);
        if (ok && cpu)
            ok = sn->cpu_total && sn->cpu_total - sn->cpu_reserved >= cpu;
        if (ok && mem)
            ok = sn->mem_total && sn->mem_total - sn->mem_reserved >= mem;
        rn[i].target_ok = ok;
        rn[i].tasks = 0;
        v->owners[i]->sched_index = (int)i;
    }
    DL_FOREACH2(svc->tasks, t, svc_next)
        if (t->node && t->pb->desired_state == DESIRED_RUNNING)
            rn[t->node->sched_index].tasks++;
    return 0;
}

/* Starts one move: a new task in the slot of one of the service's tasks on
 * node from, placed on node to; the old one stops once it is ready. */
static void orch_move(ctl_t *ctl, service_t *svc, node_t *from, node_t *to)
{
    task_t *old = NULL, *t, *mover;
    Event *e;

    DL_FOREACH2(svc->tasks, t, svc_next)
        if (t->node == from && t->pb->desired_state == DESIRED_RUNNING &&
            (!old || t->pb->slot > old->pb->slot))
            old = t;
    if (!old || !(mover = orch_new_task(ctl, svc, old->pb->slot, MODEL_REPLACE_REBALANCE)))
        return;
    if (pb_set_str(&mover->pb->replaces, old->pb->id)) {
        model_task_delete(&ctl->model, mover);
        return;
    }
    model_task_set_node(&ctl->model, mover, to);
    orch_set_state(ctl, mover, TASK_ASSIGNED, "");
    snprintf(svc->move_task, sizeof(svc->move_task), "%s", mover->pb->id);
    e = ctl_event_task(ctl, "move", old);
    if (e && (event_attr(e, "from", "%s", from->pb->name) ||
              event_attr(e, "to", "%s", to->pb->name) ||
              event_attr(e, "task", "%s", mover->pb->id)))
        e = (pb_free(e), NULL);
    ctl_emit(ctl, e, "moved to %s to spread the service (rebalancing)", to->pb->name);
    orch_mark(svc);
}

/* Is the service's last move over? A move whose new task did not make it
 * keeps the service from moving again for a while. */
static int orch_move_busy(ctl_t *ctl, service_t *svc)
{
    task_t *t;

    if (!svc->move_task[0])
        return ctl_now(ctl) < svc->move_blocked_until;
    t = model_task_by_id(&ctl->model, svc->move_task);
    if (t && t->pb->desired_state == DESIRED_RUNNING && !model_task_ready(t))
        return 1; /* still starting */
    if (!t || t->pb->desired_state != DESIRED_RUNNING) {
        log_info("service %s: a rebalancing move did not make it; no move for %d s",
                 svc->pb->spec->name, ORCH_MOVE_BACKOFF_MS / 1000);
        svc->move_blocked_until = ctl_now(ctl) + ORCH_MOVE_BACKOFF_MS;
    }
    svc->move_task[0] = '\0';
    return 1; /* the next one at the next look */
}

void orch_rebalance(ctl_t *ctl)
{
    orch_sched_t v = { 0 };
    rebalance_node_t *rn = NULL;
    service_t *svc, *tmp;
    int busy = 0;

    if (!ctl->cfg.rebalance)
        return;
    /* one move at a time in the whole cluster */
    HASH_ITER(hh, ctl->model.services, svc, tmp)
        if (svc->move_task[0] || svc->move_blocked_until)
            busy |= orch_move_busy(ctl, svc) && svc->move_task[0];
    if (busy)
        return;
    HASH_ITER(hh, ctl->model.services, svc, tmp) {
        size_t from, to;
        if (svc->move_blocked_until > ctl_now(ctl) || svc->pb->spec->replicas < 2 ||
            !rebalance_service_ok(svc->pb->spec) || !orch_steady(svc))
            continue;
        if (!v.nodes) {
            if (orch_sched_view(ctl, &v) || !(rn = calloc(v.n ? v.n : 1, sizeof(*rn))))
                break;
        }
        orch_rebalance_view(ctl, &v, svc, rn);
        if (rebalance_pick(rn, v.n, &from, &to)) {
            orch_move(ctl, svc, v.owners[from], v.owners[to]);
            break;
        }
    }
    free(rn);
    orch_sched_free(&v);
}
