/* runtask: see runtask.h.
 *
 * The life of a container, in the runtask's fields:
 *   no cid                  -> image check, pull, create
 *   cstate CREATED          -> start
 *   alive (running)         -> nothing, or stop (unhealthy, shutdown)
 *   its end (die event, or an inspect that finds it exited while alive)
 *                           -> rt_end: the restart policy decides, once
 *   restart_pending         -> start again at restart_at
 * "alive" makes the end of a run count once, whichever of the die event,
 * an inspect or a stop's answer tells of it first.
 */
#include "runtask.h"
#include "event.h"
#include "duration.h"
#include "errors.h"
#include "pbutil.h"
#include "spec.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ restarts */

static uint32_t restart_count_window(const restart_state_t *st, int64_t window, int64_t now)
{
    uint32_t n = 0;

    if (window <= 0)
        return st->restarts;
    for (size_t i = 0; i < st->n_history; i++)
        if (now - st->history[i] < window)
            n++;
    return n;
}

restart_decision_t restart_decide(const RestartPolicy *p, restart_state_t *st, int failed,
                                  int64_t ran_ms, int64_t now)
{
    restart_decision_t d = { 0, 0, 0 };
    RestartCondition cond = p ? p->condition : RESTART_ANY;
    int64_t base = p ? p->delay_ms : SPEC_DEFAULT_RESTART_DELAY_MS;
    int64_t cap, delay;

    if (ran_ms >= RUNTASK_RESET_AFTER_MS)
        st->consecutive = 0;
    if (cond == RESTART_NONE || (cond == RESTART_ON_FAILURE && !failed))
        return d;
    if (p && p->max_attempts > 0 &&
        restart_count_window(st, p->window_ms, now) >= p->max_attempts) {
        d.gave_up = 1;
        return d;
    }
    if (base < 0)
        base = 0;
    cap = base > SPEC_RESTART_DELAY_CAP_MS ? base : SPEC_RESTART_DELAY_CAP_MS;
    delay = base;
    for (uint32_t i = 0; i < st->consecutive && delay > 0 && delay < cap; i++)
        delay *= 2;
    if (delay > cap)
        delay = cap;
    if (st->consecutive < UINT32_MAX)
        st->consecutive++;
    if (st->restarts < UINT32_MAX)
        st->restarts++;
    st->history[st->head] = now;
    st->head = (st->head + 1) % RUNTASK_RESTART_HISTORY;
    if (st->n_history < RUNTASK_RESTART_HISTORY)
        st->n_history++;
    d.restart = 1;
    d.delay_ms = delay;
    return d;
}

/* ------------------------------------------------------------ helpers */

int runtask_id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;

    if (n == 0 || n > RUNTASK_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)id[i]) && id[i] != '-' && id[i] != '_')
            return 0;
    return 1;
}

runtask_t *runtask_create(const char *id)
{
    runtask_t *t;

    if (!runtask_id_valid(id))
        return NULL;
    t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    strcpy(t->id, id);
    t->state = TASK_ASSIGNED;
    t->grace_ms = RUNTASK_DEFAULT_GRACE_MS;
    return t;
}

void runtask_free(runtask_t *t)
{
    if (!t)
        return;
    pb_free(t->asg);
    free(t);
}

static DesiredState rt_desired(const runtask_t *t)
{
    return t->asg ? t->asg->desired_state : DESIRED_RUNNING;
}

static const ServiceSpec *rt_spec(const runtask_t *t)
{
    return t->asg ? t->asg->spec : NULL;
}

static int rt_running(const runtask_t *t)
{
    return t->alive || t->cstate == ENGINE_STATE_RUNNING || t->cstate == ENGINE_STATE_PAUSED ||
           t->cstate == ENGINE_STATE_RESTARTING;
}

static void rt_set(runtask_t *t, TaskState state, const char *msg, int64_t wall)
{
    if (!msg)
        msg = "";
    if (t->state != state) {
        t->state = state;
        t->since_ms = wall;
        t->dirty = 1;
    }
    if (strncmp(t->message, msg, sizeof(t->message) - 1) != 0) {
        snprintf(t->message, sizeof(t->message), "%s", msg);
        t->dirty = 1;
    }
}

static Health rt_health_now(const runtask_t *t)
{
    const ServiceSpec *s = rt_spec(t);
    int probe = health_has_probe(s);
    int engine = health_has_engine_check(s) || t->ehealth != ENGINE_HEALTH_NONE;
    Health e, p;

    if (!probe && !engine)
        return HEALTH_NONE;
    if (!t->alive || t->cstate != ENGINE_STATE_RUNNING) {
        /* Not running: starting while it is on its way (again), else none,
         * but for a task that failed for being unhealthy. */
        if (t->terminal && t->end_reason == STOP_UNHEALTHY)
            return HEALTH_UNHEALTHY;
        if (t->terminal || rt_desired(t) != DESIRED_RUNNING)
            return HEALTH_NONE;
        return HEALTH_STARTING;
    }
    e = engine ? (t->ehealth == ENGINE_HEALTH_NONE ? HEALTH_STARTING
                                                   : health_from_engine(t->ehealth))
               : HEALTH_NONE;
    p = probe ? t->probe.state : HEALTH_NONE;
    return health_combine(e, p);
}

static void rt_health(runtask_t *t)
{
    Health h = rt_health_now(t);

    if (h != t->health) {
        t->health = h;
        t->dirty = 1;
    }
    /* An unhealthy container is stopped and then handled like a failed
     * one: the restart policy decides. */
    if (h == HEALTH_UNHEALTHY && t->asg && rt_desired(t) == DESIRED_RUNNING && t->alive &&
        t->stop_reason == STOP_NONE && !t->terminal)
        t->stop_reason = STOP_UNHEALTHY;
}

static void rt_reject(runtask_t *t, const char *msg, int64_t wall)
{
    t->terminal = 1;
    t->restart_pending = 0;
    rt_set(t, TASK_REJECTED, msg && *msg ? msg : "the engine refused the task", wall);
}

/* A run began (our start, or found running). */
static void rt_begin_run(runtask_t *t, int64_t since_mono, int64_t mono)
{
    t->alive = 1;
    t->cstate = ENGINE_STATE_RUNNING;
    t->run_since = since_mono;
    t->oom = 0;
    t->ehealth = ENGINE_HEALTH_NONE;
    t->end_reason = STOP_NONE;
    health_probe_reset(&t->probe, mono);
    t->probe_at = mono + HEALTH_FAST_PROBE_MS;
}

/* The restart policy's verdict on the run that just ended (the end's facts
 * are in exit_code, end_oom, end_reason, end_why). */
static void rt_decide(runtask_t *t, int64_t ran_ms, int64_t mono, int64_t wall)
{
    const ServiceSpec *s = rt_spec(t);
    restart_decision_t d;
    char why[200], msg[256], delay[32];
    int failed = t->exit_code != 0 || t->end_oom || t->end_reason == STOP_UNHEALTHY ||
                 t->end_why[0];

    if (t->end_why[0])
        snprintf(why, sizeof(why), "%s", t->end_why);
    else if (t->end_reason == STOP_UNHEALTHY)
        snprintf(why, sizeof(why), "unhealthy%s%s", t->probe.last_error[0] ? ": " : "",
                 t->probe.last_error);
    else if (t->end_oom)
        snprintf(why, sizeof(why), "OOM killed (exit code %d)", t->exit_code);
    else
        snprintf(why, sizeof(why), "exited with code %d", t->exit_code);

    d = restart_decide(s ? s->restart : NULL, &t->rs, failed, ran_ms, mono);
    if (d.restart) {
        t->restart_pending = 1;
        t->restart_at = mono + d.delay_ms;
        /* A new container after an unhealthy run (what made it unhealthy
         * may be in its file system) and after a start the engine refused
         * (its state for that container may be stale: after a dockerd
         * restart containerd can keep answering "task ... already
         * exists" for it, forever). */
        t->recreate = t->end_reason == STOP_UNHEALTHY || t->end_why[0];
        snprintf(msg, sizeof(msg), "%s; restart %u in %s", why, t->rs.restarts,
                 duration_format(d.delay_ms, delay, sizeof(delay)));
        rt_set(t, TASK_STARTING, msg, wall);
    } else {
        t->terminal = 1;
        t->restart_pending = 0;
        if (d.gave_up)
            snprintf(msg, sizeof(msg), "%s; gave up after %u restarts", why, t->rs.restarts);
        else
            snprintf(msg, sizeof(msg), "%s", why);
        rt_set(t, failed ? TASK_FAILED : TASK_COMPLETE, msg, wall);
    }
    rt_health(t);
}

/* The run ended. why: a reason other than the exit itself (a start the
 * engine refused, the container removed behind our back). */
static void rt_end(runtask_t *t, int exit_code, int oom, const char *why, int64_t death_wall,
                   int64_t mono, int64_t wall)
{
    int64_t ran = t->alive && t->run_since ? mono - t->run_since : 0;

    t->alive = 0;
    if (t->cstate == ENGINE_STATE_RUNNING || t->cstate == ENGINE_STATE_PAUSED ||
        t->cstate == ENGINE_STATE_RESTARTING)
        t->cstate = ENGINE_STATE_EXITED;
    t->exit_code = exit_code;
    t->end_oom = oom;
    t->end_reason = t->stop_reason;
    snprintf(t->end_why, sizeof(t->end_why), "%s", why ? why : "");
    t->stop_reason = STOP_NONE;
    t->death_wall = death_wall;
    t->n_ports = 0;
    t->probe_at = 0;
    t->ehealth = ENGINE_HEALTH_NONE; /* the run's; the next one starts over */

    if (!t->asg) {
        if (t->end_reason != STOP_UNASSIGNED) {
            /* Adopted, and the set has not said what it should do yet. */
            char msg[256];
            t->pending_exit = 1;
            snprintf(msg, sizeof(msg), "exited with code %d; waiting for the assignments",
                     exit_code);
            rt_set(t, TASK_STARTING, msg, wall);
        }
        return;
    }
    if (rt_desired(t) != DESIRED_RUNNING || t->end_reason == STOP_SHUTDOWN) {
        if (!t->terminal)
            rt_set(t, TASK_SHUTDOWN, "", wall);
        rt_health(t);
        return;
    }
    if (t->terminal) {
        rt_health(t);
        return;
    }
    rt_decide(t, ran, mono, wall);
}

/* ------------------------------------------------------------ inputs */

void runtask_assign(runtask_t *t, Assignment *a, int64_t mono, int64_t wall)
{
    int first = t->asg == NULL;
    const ServiceSpec *s;

    pb_free(t->asg);
    t->asg = a;
    t->stray = 0;
    s = a->spec;
    if (s && s->stop_grace_period_ms >= 0)
        t->grace_ms = s->stop_grace_period_ms;

    if (a->desired_state == DESIRED_RUNNING) {
        if (first && t->pending_exit && !t->terminal) {
            /* Adopted after it ended: the policy decides now. */
            t->pending_exit = 0;
            rt_decide(t, 0, mono, wall);
        } else if (first && t->alive) {
            /* Adopted running: the probe starts now that the spec is known. */
            health_probe_reset(&t->probe, mono);
            t->probe_at = mono;
        }
    } else {
        t->restart_pending = 0;
        t->pending_exit = 0;
        if (t->stop_reason == STOP_UNHEALTHY)
            t->stop_reason = STOP_NONE;
        if (rt_running(t)) {
            if (!t->drain_until)
                t->drain_until = mono + (s && s->drain_delay_ms > 0 ? s->drain_delay_ms : 0);
        } else if (!t->terminal) {
            rt_set(t, !t->cid[0] && a->desired_state == DESIRED_REMOVE ? TASK_REMOVED
                                                                         : TASK_SHUTDOWN,
                   "", wall);
        }
    }
    rt_health(t);
}

void runtask_unassign(runtask_t *t)
{
    pb_free(t->asg);
    t->asg = NULL;
    t->restart_pending = 0;
    t->pending_exit = 0;
    t->probe_at = 0;
    if (t->stop_reason == STOP_UNHEALTHY)
        t->stop_reason = STOP_NONE;
}

void runtask_observe(runtask_t *t, const engine_container_t *c, int full, int64_t mono,
                     int64_t wall)
{
    if (c->state == ENGINE_STATE_RUNNING) {
        /* An answer older than an end we handled says nothing new. */
        if (c->started_ms && t->death_wall && c->started_ms <= t->death_wall && !t->alive)
            return;
        if (!t->alive) {
            int64_t age = c->started_ms && wall > c->started_ms ? wall - c->started_ms : 0;
            rt_begin_run(t, mono - age, mono);
            t->restart_pending = 0;
        }
        t->cstate = ENGINE_STATE_RUNNING;
        if (full || c->n_ports) {
            t->n_ports = c->n_ports;
            memcpy(t->ports, c->ports, c->n_ports * sizeof(c->ports[0]));
        }
        if (full)
            t->ehealth = c->health;
        if (!t->terminal || !t->asg)
            rt_set(t, TASK_RUNNING, t->stop_reason == STOP_UNHEALTHY ? t->message : "", wall);
        rt_health(t);
        return;
    }
    if (c->state == ENGINE_STATE_EXITED || c->state == ENGINE_STATE_DEAD) {
        t->n_ports = 0;
        if (t->alive) {
            if (!full) {
                t->need_inspect = 1; /* the list has no exit code */
                return;
            }
            rt_end(t, c->exit_code, c->oom_killed || t->oom, NULL,
                   c->finished_ms ? c->finished_ms : wall, mono, wall);
            t->cstate = c->state;
            return;
        }
        t->cstate = c->state;
        if (full)
            t->exit_code = c->exit_code;
        if (t->state == TASK_ASSIGNED && !t->asg) {
            /* Adopted, ended while no agent watched. */
            char msg[256];
            t->pending_exit = 1;
            t->end_oom = full && c->oom_killed;
            t->end_reason = STOP_NONE;
            t->end_why[0] = '\0';
            snprintf(msg, sizeof(msg), "exited with code %d; waiting for the assignments",
                     t->exit_code);
            rt_set(t, TASK_STARTING, msg, wall);
        }
        rt_health(t);
        return;
    }
    if (t->alive && c->state == ENGINE_STATE_CREATED) {
        /* Cannot be: it ran. Look again. */
        t->need_inspect = 1;
        return;
    }
    t->cstate = c->state;
    if (t->state == TASK_ASSIGNED && c->state == ENGINE_STATE_CREATED)
        rt_set(t, TASK_STARTING, "", wall);
}

void runtask_gone(runtask_t *t, int64_t mono, int64_t wall)
{
    int alive = t->alive;

    t->cid[0] = '\0';
    t->n_ports = 0;
    t->need_inspect = 0;
    if (alive) {
        rt_end(t, -1, t->oom, "the container was removed", wall, mono, wall);
    }
    t->cstate = ENGINE_STATE_UNKNOWN;
    t->alive = 0;
    if (t->asg && rt_desired(t) != DESIRED_RUNNING && !t->terminal)
        rt_set(t, rt_desired(t) == DESIRED_REMOVE ? TASK_REMOVED : TASK_SHUTDOWN, "", wall);
}

void runtask_event(runtask_t *t, const engine_event_t *ev, int64_t mono, int64_t wall)
{
    int64_t when = ev->time_ns > 0 ? ev->time_ns / 1000000 : wall;

    switch (ev->kind) {
    case ENGINE_EVENT_DIE:
        if (t->alive)
            rt_end(t, ev->exit_code, t->oom, NULL, when, mono, wall);
        break;
    case ENGINE_EVENT_OOM:
        t->oom = 1;
        break;
    case ENGINE_EVENT_HEALTH:
        if (t->alive) {
            t->ehealth = ev->health;
            rt_health(t);
        }
        break;
    case ENGINE_EVENT_START:
        /* Started by someone else: see what it is. */
        if (!t->alive && t->op != RT_START)
            t->need_inspect = 1;
        break;
    case ENGINE_EVENT_DESTROY:
        if (t->op != RT_REMOVE)
            runtask_gone(t, mono, wall);
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------ decisions */

static runtask_action_t rt_act(runtask_act_t act)
{
    runtask_action_t a = { act, 0, 0 };
    return a;
}

static runtask_action_t rt_wait(int64_t at)
{
    runtask_action_t a = { RT_WAIT, at, 0 };
    return a;
}

static runtask_action_t rt_stop(const runtask_t *t)
{
    runtask_action_t a = { RT_STOP, 0, t->grace_ms };
    return a;
}

runtask_action_t runtask_next(const runtask_t *t, int64_t mono, int set_seen)
{
    if (t->op != RT_NONE)
        return rt_act(RT_NONE);
    if (t->retry_at > mono)
        return rt_wait(t->retry_at);
    if (t->lookup)
        return rt_act(RT_INSPECT);
    if (t->need_inspect && t->cid[0])
        return rt_act(RT_INSPECT);

    if (!t->asg) {
        /* Not in the set: removed, but only once a set has arrived. */
        if (!set_seen)
            return rt_act(RT_NONE);
        if (!t->cid[0])
            return rt_act(RT_FORGET);
        if (rt_running(t))
            return rt_stop(t);
        return rt_act(RT_REMOVE);
    }

    if (rt_desired(t) != DESIRED_RUNNING) {
        if (rt_running(t)) {
            if (t->drain_until > mono)
                return rt_wait(t->drain_until);
            return rt_stop(t);
        }
        if (t->cid[0] && rt_desired(t) == DESIRED_REMOVE)
            return rt_act(RT_REMOVE);
        return rt_act(RT_NONE);
    }

    if (t->terminal)
        return rt_act(RT_NONE);
    if (t->stop_reason == STOP_UNHEALTHY && rt_running(t))
        return rt_stop(t);
    if (t->restart_pending && t->recreate && t->cid[0] && !rt_running(t))
        return rt_act(RT_REMOVE); /* a new container, after the delay */
    if (t->restart_pending && t->restart_at > mono)
        return rt_wait(t->restart_at);
    if (!t->cid[0]) {
        if (t->image == IMAGE_UNKNOWN)
            return rt_act(RT_IMAGE);
        if (t->image == IMAGE_MISSING)
            return rt_act(RT_PULL);
        return rt_act(RT_CREATE);
    }
    switch (t->cstate) {
    case ENGINE_STATE_CREATED:
        return rt_act(RT_START);
    case ENGINE_STATE_EXITED:
    case ENGINE_STATE_DEAD:
        if (t->alive)
            return rt_act(RT_INSPECT);
        if (t->restart_pending)
            return rt_act(RT_START);
        return rt_act(RT_NONE);
    case ENGINE_STATE_RUNNING:
        return rt_act(RT_NONE);
    default:
        /* paused, restarting, removing, unknown: look again */
        return rt_act(RT_INSPECT);
    }
}

void runtask_begin(runtask_t *t, const runtask_action_t *a, int64_t mono, int64_t wall)
{
    t->op = a->act;
    switch (a->act) {
    case RT_PULL:
        rt_set(t, TASK_PULLING, "", wall);
        break;
    case RT_CREATE:
        t->recreate = 0; /* this is the new container */
        if (t->state != TASK_STARTING)
            rt_set(t, TASK_STARTING, "", wall);
        break;
    case RT_START:
        t->restart_pending = 0;
        t->recreate = 0;
        if (t->state != TASK_STARTING)
            rt_set(t, TASK_STARTING, "", wall);
        break;
    case RT_INSPECT:
        t->need_inspect = 0;
        break;
    case RT_STOP:
        if (!t->asg)
            t->stop_reason = STOP_UNASSIGNED;
        else if (rt_desired(t) != DESIRED_RUNNING)
            t->stop_reason = STOP_SHUTDOWN;
        break;
    default:
        break;
    }
}

static int rt_transient(int status)
{
    return status == SKIFF_EUNAVAILABLE || status == SKIFF_ETIMEDOUT || status == -ENOMEM ||
           status == -ENOBUFS || status == SKIFF_ECLOSED;
}

static void rt_retry(runtask_t *t, int64_t mono)
{
    t->retry_at = mono + RUNTASK_RETRY_MS;
}

void runtask_done(runtask_t *t, const engine_result_t *res, int64_t mono, int64_t wall)
{
    runtask_act_t op = t->op;
    int st = res->status;

    t->op = RT_NONE;
    switch (op) {
    case RT_IMAGE:
        if (st == 0)
            t->image = IMAGE_PRESENT;
        else if (st == SKIFF_ENOTFOUND)
            t->image = IMAGE_MISSING;
        else
            rt_retry(t, mono);
        break;
    case RT_PULL:
        if (st == 0)
            t->image = IMAGE_PRESENT;
        else if (rt_transient(st))
            rt_retry(t, mono);
        else
            rt_reject(t, res->message, wall);
        break;
    case RT_CREATE:
        if (st == 0 && res->id && *res->id && strlen(res->id) < sizeof(t->cid)) {
            strcpy(t->cid, res->id);
            t->cstate = ENGINE_STATE_CREATED;
        } else if (st == SKIFF_EEXISTS) {
            t->lookup = 1;
        } else if (st == SKIFF_ENOTFOUND) {
            t->image = IMAGE_MISSING; /* gone since we looked */
        } else if (rt_transient(st) || st == 0) {
            rt_retry(t, mono);
        } else {
            rt_reject(t, res->message, wall);
        }
        break;
    case RT_START:
        if (st == 0) {
            rt_begin_run(t, mono, mono);
            t->need_inspect = 1;
            rt_health(t);
        } else if (st == SKIFF_ENOTFOUND) {
            runtask_gone(t, mono, wall);
        } else if (rt_transient(st)) {
            t->restart_pending = 1;
            t->restart_at = mono;
            rt_retry(t, mono);
        } else {
            /* The engine would not start it: a failed run. */
            char why[160];
            snprintf(why, sizeof(why), "%s", res->message && *res->message
                                                 ? res->message
                                                 : "the engine would not start it");
            t->alive = 1;
            t->run_since = mono;
            rt_end(t, -1, 0, why, wall, mono, wall);
        }
        break;
    case RT_INSPECT:
        if (st == 0 && res->container) {
            if (t->lookup) {
                t->lookup = 0;
                snprintf(t->cid, sizeof(t->cid), "%s", res->container->id);
            }
            runtask_observe(t, res->container, 1, mono, wall);
            if (t->cstate != ENGINE_STATE_RUNNING && t->cstate != ENGINE_STATE_EXITED &&
                t->cstate != ENGINE_STATE_DEAD && t->cstate != ENGINE_STATE_CREATED) {
                t->need_inspect = 1;
                rt_retry(t, mono);
            }
        } else if (st == SKIFF_ENOTFOUND) {
            if (t->lookup)
                t->lookup = 0; /* the name is free again: create */
            else
                runtask_gone(t, mono, wall);
        } else if (t->lookup && !rt_transient(st)) {
            t->lookup = 0;
            rt_reject(t, res->message, wall);
        } else {
            t->need_inspect = 1;
            rt_retry(t, mono);
        }
        break;
    case RT_STOP:
        if (st == 0)
            t->need_inspect = 1;
        else if (st == SKIFF_ENOTFOUND)
            runtask_gone(t, mono, wall);
        else
            rt_retry(t, mono);
        break;
    case RT_REMOVE:
        if (st == 0 || st == SKIFF_ENOTFOUND) {
            t->cid[0] = '\0';
            t->recreate = 0;
            t->cstate = ENGINE_STATE_UNKNOWN;
            t->alive = 0;
            t->n_ports = 0;
            t->need_inspect = 0;
            if (t->asg && rt_desired(t) == DESIRED_REMOVE)
                rt_set(t, TASK_REMOVED, t->terminal ? t->message : "", wall);
        } else {
            rt_retry(t, mono);
        }
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------ probes */

int runtask_probe_due(const runtask_t *t, int64_t *at)
{
    if (!t->asg || rt_desired(t) != DESIRED_RUNNING || !t->alive ||
        t->cstate != ENGINE_STATE_RUNNING || t->probing || t->terminal ||
        t->stop_reason != STOP_NONE || !health_has_probe(t->asg->spec) || !t->probe_at)
        return 0;
    *at = t->probe_at;
    return 1;
}

void runtask_probe_begin(runtask_t *t)
{
    t->probing = 1;
}

void runtask_probe_skip(runtask_t *t, int64_t mono)
{
    t->probing = 0;
    if (t->probe_at)
        t->probe_at = mono + HEALTH_FAST_PROBE_MS;
}

void runtask_probe_done(runtask_t *t, int ok, const char *why, int64_t mono, int64_t wall)
{
    const HealthCheck *hc = t->asg && t->asg->spec ? t->asg->spec->health : NULL;

    t->probing = 0;
    if (!t->alive || !hc)
        return;
    health_probe_result(&t->probe, hc, ok, why, mono);
    t->probe_at = mono + health_probe_interval(&t->probe, hc);
    rt_health(t);
    if (t->stop_reason == STOP_UNHEALTHY) {
        char msg[200];
        snprintf(msg, sizeof(msg), "unhealthy: %s", t->probe.last_error);
        rt_set(t, t->state, msg, wall);
    }
}

/* ------------------------------------------------------------ reports */

int runtask_reported(const runtask_t *t, int set_seen)
{
    if (t->asg)
        return 1;
    return !set_seen && !t->stray && t->cid[0];
}

void runtask_status(const runtask_t *t, TaskStatus *st, PortMapping *ports,
                    PortMapping **port_ptrs)
{
    TaskStatus init = PB_TASK_STATUS_INIT;
    size_t n = 0;

    *st = init;
    st->task_id = (char *)t->id;
    st->state = t->state;
    st->health = t->health;
    st->container_id = (char *)t->cid;
    st->exit_code = t->exit_code;
    st->message = (char *)t->message;
    st->restarts = t->rs.restarts;
    st->since_ms = t->since_ms;
    if (t->alive && t->cstate == ENGINE_STATE_RUNNING) {
        for (size_t i = 0; i < t->n_ports && n < ENGINE_MAX_PORTS; i++) {
            PortMapping pm = PB_PORT_MAPPING_INIT;
            if (!t->ports[i].host_port)
                continue;
            ports[n] = pm;
            ports[n].target = t->ports[i].target;
            ports[n].host_port = t->ports[i].host_port;
            port_ptrs[n] = &ports[n];
            n++;
        }
    }
    st->n_ports = n;
    st->ports = n ? port_ptrs : NULL;
}

const char *runtask_state_name(TaskState s)
{
    return task_state_name(s);
}
