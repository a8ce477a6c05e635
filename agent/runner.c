/* runner: see runner.h.
 *
 * Entries (rentry_t) hold a runtask and what the I/O around it needs: the
 * runner (engine callbacks get the entry), the probe in flight. An entry is
 * freed only when its runtask says RT_FORGET with nothing in flight, or
 * when the runner closes (after the engine, so no callback can follow).
 */
#include "runner.h"
#include "engine_json.h"
#include "errors.h"
#include "log.h"
#include "pbutil.h"
#include "runtask.h"
#include "spec.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RUNNER_RESYNC_MS 30000
#define RUNNER_RELIST_RETRY_MS 1000

typedef struct rentry {
    runner_t *r;
    runtask_t *t;
    void *probe;          /* the probe in flight */
    int64_t cid_at;       /* monotonic ms the container id became known */
    TaskState logged;     /* the state last logged */
    Health logged_health;
    int files;            /* its secret and config files are written (this run) */
} rentry_t;

struct runner {
    uv_loop_t *loop;
    engine_t *engine;
    runner_config_t cfg;
    char node[ENGINE_LABEL_MAX];
    char advertise[64];
    char gateway[64];
    char cluster[ENGINE_LABEL_MAX];
    char label_cluster[ENGINE_LABEL_MAX + 32];
    char label_node[ENGINE_LABEL_MAX + 32];
    const runner_ops_t *ops;
    void *arg;

    rentry_t **entries;
    size_t n, cap;

    int started;
    int adopting;        /* the first listing is done, its inspects are not */
    int ready;           /* adoption is done: 1, and the owner was told: 2 */
    int set_seen;        /* a set has arrived */
    uint64_t version;
    int listing;         /* a list is in flight */
    int relist;          /* list again when it answers */
    int64_t list_sent;   /* monotonic ms of the list in flight */
    int events_up;
    int stepping;
    int restep;
    int closing;

    uv_timer_t timer;    /* the next due action */
    uv_timer_t resync;   /* periodic re-list, and list retries */
    int open_handles;
    void (*close_done)(void *arg);
    void *close_arg;
};

/* ------------------------------------------------------------ clocks */

static int64_t runner_mono(const runner_t *r)
{
    if (r->cfg.mono_ms)
        return r->cfg.mono_ms(r->cfg.clock_arg);
    return (int64_t)(uv_hrtime() / 1000000);
}

static int64_t runner_wall(const runner_t *r)
{
    struct timespec ts;

    if (r->cfg.wall_ms)
        return r->cfg.wall_ms(r->cfg.clock_arg);
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ entries */

static rentry_t *runner_find(const runner_t *r, const char *task_id)
{
    for (size_t i = 0; i < r->n; i++)
        if (!r->entries[i]->t->stray && strcmp(r->entries[i]->t->id, task_id) == 0)
            return r->entries[i];
    return NULL;
}

static rentry_t *runner_find_cid(const runner_t *r, const char *cid)
{
    if (!cid || !*cid)
        return NULL;
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->entries[i]->t->cid, cid) == 0)
            return r->entries[i];
    return NULL;
}

static rentry_t *runner_add(runner_t *r, const char *task_id)
{
    rentry_t *e;

    if (r->n >= RUNNER_MAX_TASKS)
        return NULL;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        rentry_t **grown = realloc(r->entries, cap * sizeof(*grown));
        if (!grown)
            return NULL;
        r->entries = grown;
        r->cap = cap;
    }
    e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->t = runtask_create(task_id);
    if (!e->t) {
        free(e);
        return NULL;
    }
    e->r = r;
    e->logged = e->t->state;
    r->entries[r->n++] = e;
    return e;
}

static void runner_probe_cancel(runner_t *r, rentry_t *e)
{
    if (!e->probe)
        return;
    if (r->cfg.probe_cancel)
        r->cfg.probe_cancel(r->cfg.probe_arg, e->probe);
    else
        health_http_cancel(r->cfg.http, e->probe);
    e->probe = NULL;
    e->t->probing = 0;
}

static void runner_entry_free(runner_t *r, rentry_t *e)
{
    runner_probe_cancel(r, e);
    runtask_free(e->t);
    free(e);
}

static void runner_remove_at(runner_t *r, size_t i)
{
    rentry_t *e = r->entries[i];

    if (!e->t->stray)
        secrets_remove_task(r->cfg.secrets, e->t->id);
    r->entries[i] = r->entries[--r->n];
    runner_entry_free(r, e);
}

static int runner_uses_files(const runtask_t *t)
{
    return !t->stray && t->asg && t->asg->spec && secrets_n_refs(t->asg->spec) > 0;
}

/* Writes the task's secret and config files (again). Returns 0 or a
 * negative code with why. */
static int runner_write_files(runner_t *r, rentry_t *e, engine_file_t **files, size_t *n,
                              char *why, size_t len)
{
    int rc;

    if (files) {
        *files = NULL;
        *n = 0;
    }
    if (!runner_uses_files(e->t))
        return 0;
    if (!r->cfg.secrets) {
        (void)secrets_missing(NULL, e->t->asg->spec, why, len);
        return SKIFF_ENOTFOUND;
    }
    rc = secrets_write_task(r->cfg.secrets, e->t->id, e->t->asg->spec, files, n, why, len);
    e->files = rc == 0;
    /* Out of memory is tried again; anything else is for good (and not
     * SKIFF_ENOTFOUND, which runtask reads as a missing image or
     * container). */
    return rc == 0 || rc == -ENOMEM ? rc : SKIFF_EINVAL;
}

/* A display name for logs: the container's name when the task has one. */
static const char *runner_name(const rentry_t *e, char *buf, size_t len)
{
    const runtask_t *t = e->t;

    if (t->asg && engine_container_name(t->asg, buf, len) == 0)
        return buf;
    snprintf(buf, len, "%s%s", t->stray ? "stray " : "task ", t->id);
    return buf;
}

static void runner_log_changes(runner_t *r, rentry_t *e)
{
    runtask_t *t = e->t;
    char name[300];

    if (t->state == e->logged && t->health == e->logged_health)
        return;
    if (t->state == TASK_FAILED || t->state == TASK_REJECTED)
        log_warn("%s: %s%s%s", runner_name(e, name, sizeof(name)), runtask_state_name(t->state),
                 t->message[0] ? ": " : "", t->message);
    else
        log_info("%s: %s%s%s%s", runner_name(e, name, sizeof(name)),
                 runtask_state_name(t->state),
                 t->health == HEALTH_HEALTHY     ? " (healthy)"
                 : t->health == HEALTH_UNHEALTHY ? " (unhealthy)"
                 : t->health == HEALTH_STARTING  ? " (health: starting)"
                                                 : "",
                 t->message[0] ? ": " : "", t->message);
    e->logged = t->state;
    e->logged_health = t->health;
}

/* ------------------------------------------------------------ engine calls */

static void runner_on_op(void *arg, const engine_result_t *res);

static const char *runner_act_name(runtask_act_t act)
{
    static const char *const names[] = { "none", "wait", "image inspect", "pull", "create",
                                         "start", "inspect", "stop", "remove", "forget" };

    return (unsigned)act < sizeof(names) / sizeof(names[0]) ? names[act] : "?";
}

/* Issues the action's engine call. Returns 0, or a negative code (the
 * callback will not come) with why, or why "" for skiff_strerror's. */
static int runner_issue(runner_t *r, rentry_t *e, const runtask_action_t *a, char *why,
                        size_t whylen)
{
    runtask_t *t = e->t;
    engine_t *en = r->engine;
    const ServiceSpec *s = t->asg ? t->asg->spec : NULL;
    char name[256];

    log_debug("%s: %s", runner_name(e, name, sizeof(name)), runner_act_name(a->act));

    switch (a->act) {
    case RT_IMAGE:
        return s ? en->ops->image_inspect(en, s->image, runner_on_op, e) : SKIFF_EINVAL;
    case RT_PULL:
        log_info("pulling %s", s ? s->image : "?");
        return s ? en->ops->image_pull(en, s->image, runner_on_op, e) : SKIFF_EINVAL;
    case RT_CREATE: {
        engine_create_t req = {
            .assignment = t->asg, .name = name, .cluster = r->cluster, .node = r->node,
            .advertise = r->advertise, .gateway = r->gateway,
        };
        engine_file_t *files;
        size_t n_files;
        int rc;
        if (!t->asg || engine_container_name(t->asg, name, sizeof(name)))
            return SKIFF_EINVAL;
        /* Never a container without its files. */
        rc = runner_write_files(r, e, &files, &n_files, why, whylen);
        if (rc)
            return rc;
        req.files = files;
        req.n_files = n_files;
        rc = en->ops->create(en, &req, runner_on_op, e);
        secrets_files_free(files, n_files);
        return rc;
    }
    case RT_START:
        /* A container of an earlier run of the agent (adopted), whose
         * files may be gone (a reboot empties the tmpfs). */
        if (!e->files) {
            int rc = runner_write_files(r, e, NULL, NULL, why, whylen);
            if (rc)
                return rc;
        }
        return en->ops->start(en, t->cid, runner_on_op, e);
    case RT_INSPECT:
        if (t->cid[0])
            return en->ops->inspect(en, t->cid, runner_on_op, e);
        if (!t->asg || engine_container_name(t->asg, name, sizeof(name)))
            return SKIFF_EINVAL;
        return en->ops->inspect(en, name, runner_on_op, e);
    case RT_STOP:
        return en->ops->stop(en, t->cid, a->grace_ms, runner_on_op, e);
    case RT_REMOVE:
        return en->ops->remove(en, t->cid, runner_on_op, e);
    default:
        return SKIFF_EINVAL;
    }
}

/* A container found by name must be this task's, of this cluster and node. */
static int runner_owns(const runner_t *r, const runtask_t *t, const engine_container_t *c)
{
    return c->labels.ok && strcmp(c->labels.cluster, r->cluster) == 0 &&
           strcmp(c->labels.node, r->node) == 0 && strcmp(c->labels.task, t->id) == 0;
}

static void runner_on_op(void *arg, const engine_result_t *res)
{
    rentry_t *e = arg;
    runner_t *r = e->r;
    runtask_t *t = e->t;
    engine_result_t fixed = *res;
    runtask_act_t op = t->op;
    char name[300], msg[300];
    int had_cid = t->cid[0] != '\0';

    if (op == RT_INSPECT && t->lookup && res->status == 0 && res->container &&
        !runner_owns(r, t, res->container)) {
        snprintf(msg, sizeof(msg), "the container name is taken by a container of another owner");
        fixed.status = SKIFF_EEXISTS;
        fixed.message = msg;
        fixed.container = NULL;
    }
    if (res->status)
        log_debug("%s: %s: %s", runner_name(e, name, sizeof(name)), runner_act_name(op),
                  res->message && *res->message ? res->message : skiff_strerror(res->status));
    else
        log_debug("%s: %s done", runner_name(e, name, sizeof(name)), runner_act_name(op));
    runtask_done(t, &fixed, runner_mono(r), runner_wall(r));
    if (!had_cid && t->cid[0])
        e->cid_at = runner_mono(r);
    if (op == RT_REMOVE && !t->cid[0]) {
        log_info("%s: container removed", runner_name(e, name, sizeof(name)));
        if (!t->stray)
            secrets_remove_task(r->cfg.secrets, t->id);
        e->files = 0;
    }
    runner_step(r);
}

/* ------------------------------------------------------------ probes */

static void runner_on_probe(void *arg, int ok, const char *why)
{
    rentry_t *e = arg;
    runner_t *r = e->r;

    e->probe = NULL;
    /* While the engine is away, a failed probe says more about the engine
     * (it stops containers when it goes down) than about the task. */
    if (!ok && !r->events_up)
        runtask_probe_skip(e->t, runner_mono(r));
    else
        runtask_probe_done(e->t, ok, why, runner_mono(r), runner_wall(r));
    runner_step(r);
}

static void runner_probe(runner_t *r, rentry_t *e)
{
    runtask_t *t = e->t;
    const ServiceSpec *s = t->asg->spec;
    char url[512], err[128];
    int rc;

    runtask_probe_begin(t);
    if (health_probe_url(s, r->advertise, t->ports, t->n_ports, url, sizeof(url), err,
                         sizeof(err)) != 0) {
        runtask_probe_done(t, 0, err, runner_mono(r), runner_wall(r));
        return;
    }
    if (r->cfg.probe)
        rc = r->cfg.probe(r->cfg.probe_arg, url, s->health->timeout_ms, runner_on_probe, e,
                          &e->probe);
    else
        rc = health_http_probe(r->cfg.http, url, s->health->timeout_ms, runner_on_probe, e,
                               (health_http_t **)&e->probe);
    if (rc) {
        e->probe = NULL;
        runtask_probe_done(t, 0, skiff_strerror(rc), runner_mono(r), runner_wall(r));
    }
}

/* ------------------------------------------------------------ the step */

static void runner_on_timer(uv_timer_t *h)
{
    runner_step(h->data);
}

static void runner_step_once(runner_t *r, int64_t *wake)
{
    for (size_t i = 0; i < r->n;) {
        rentry_t *e = r->entries[i];
        runtask_t *t = e->t;
        int64_t now = runner_mono(r), at;
        runtask_action_t a = runtask_next(t, now, r->set_seen);

        switch (a.act) {
        case RT_NONE:
            break;
        case RT_WAIT:
            if (a.at < *wake)
                *wake = a.at;
            break;
        case RT_FORGET:
            if (!e->probe) {
                runner_remove_at(r, i);
                continue; /* the last entry moved to i */
            }
            break;
        default: {
            int rc;
            char why[256] = "";
            runtask_begin(t, &a, now, runner_wall(r));
            rc = runner_issue(r, e, &a, why, sizeof(why));
            if (rc) {
                /* It failed at once: the callback will not come. */
                engine_result_t res = { 0 };
                char msg[300];
                if (why[0])
                    snprintf(msg, sizeof(msg), "%s", why);
                else if (rc == SKIFF_EINVAL && a.act == RT_CREATE)
                    snprintf(msg, sizeof(msg),
                             "the container's configuration cannot be sent to the engine "
                             "(strings must be UTF-8)");
                else
                    snprintf(msg, sizeof(msg), "%s", skiff_strerror(rc));
                res.status = rc;
                res.message = msg;
                runtask_done(t, &res, runner_mono(r), runner_wall(r));
                r->restep = 1;
            }
            break;
        }
        }
        if (runtask_probe_due(t, &at) && !e->probe) {
            if (at <= now && !r->events_up)
                runtask_probe_skip(t, now); /* not while the engine is away */
            else if (at <= now)
                runner_probe(r, e);
            else if (at < *wake)
                *wake = at;
        }
        runner_log_changes(r, e);
        i++;
    }
}

static void runner_check_adopted(runner_t *r);

void runner_step(runner_t *r)
{
    int64_t wake, now;
    int changed = 0;

    if (r->closing || !r->started)
        return;
    if (r->stepping) {
        r->restep = 1;
        return;
    }
    r->stepping = 1;
    do {
        r->restep = 0;
        wake = INT64_MAX;
        runner_step_once(r, &wake);
    } while (r->restep && !r->closing);
    r->stepping = 0;
    if (r->closing)
        return;

    now = runner_mono(r);
    if (wake != INT64_MAX)
        uv_timer_start(&r->timer, runner_on_timer, wake > now ? (uint64_t)(wake - now) : 0, 0);
    else
        uv_timer_stop(&r->timer);
    for (size_t i = 0; i < r->n; i++)
        if (r->entries[i]->t->dirty && runtask_reported(r->entries[i]->t, r->set_seen))
            changed = 1;
    if (changed && r->ops->on_change)
        r->ops->on_change(r->arg);
    runner_check_adopted(r);
}

/* ------------------------------------------------------------ listing */

static void runner_on_list(void *arg, const engine_result_t *res);
static void runner_on_resync_timer(uv_timer_t *h);

static void runner_list(runner_t *r)
{
    const char *labels[2] = { r->label_cluster, r->label_node };
    int rc;

    if (r->closing)
        return;
    if (r->listing) {
        r->relist = 1;
        return;
    }
    rc = r->engine->ops->list(r->engine, labels, 2, runner_on_list, r);
    if (rc) {
        log_warn("cannot list the engine's containers: %s", skiff_strerror(rc));
        uv_timer_start(&r->resync, runner_on_resync_timer, RUNNER_RELIST_RETRY_MS, 0);
        return;
    }
    r->listing = 1;
    r->list_sent = runner_mono(r);
}

static void runner_on_resync_timer(uv_timer_t *h)
{
    runner_t *r = h->data;

    uv_timer_start(&r->resync, runner_on_resync_timer,
                   r->cfg.resync_ms ? r->cfg.resync_ms : RUNNER_RESYNC_MS, 0);
    runner_list(r); /* a failure re-arms it sooner */
}

void runner_resync(runner_t *r)
{
    runner_list(r);
}

/* Adopts a container found by listing; NULL when it is left alone. */
static rentry_t *runner_adopt(runner_t *r, const engine_container_t *c)
{
    rentry_t *e = runner_find(r, c->labels.task);
    char stray[RUNTASK_ID_MAX + 1];

    if (!runtask_id_valid(c->labels.task)) {
        e = NULL;
    } else if (e && !e->t->cid[0]) {
        if (e->t->op == RT_CREATE || e->t->lookup)
            return NULL; /* ours, being created: its answer will tell */
        snprintf(e->t->cid, sizeof(e->t->cid), "%s", c->id);
        e->cid_at = runner_mono(r);
        e->t->need_inspect = 1;
        return e;
    } else if (!e) {
        e = runner_add(r, c->labels.task);
        if (!e)
            return NULL;
        snprintf(e->t->cid, sizeof(e->t->cid), "%s", c->id);
        e->cid_at = runner_mono(r);
        e->t->need_inspect = 1;
        return e;
    }
    /* A second container for one task, or a task id we cannot use: it
     * goes, once a set has come. */
    snprintf(stray, sizeof(stray), "stray-%.12s", c->id);
    e = runner_add(r, stray);
    if (!e)
        return NULL;
    e->t->stray = 1;
    snprintf(e->t->cid, sizeof(e->t->cid), "%s", c->id);
    e->cid_at = runner_mono(r);
    e->t->need_inspect = 1;
    log_warn("container %.12s (%s) is a second one of task %s: it will be removed", c->id,
             c->name, c->labels.task);
    return e;
}

static void runner_on_list(void *arg, const engine_result_t *res)
{
    runner_t *r = arg;
    int64_t now = runner_mono(r), wall = runner_wall(r);
    unsigned char *seen;

    r->listing = 0;
    if (res->status) {
        /* While the event stream is down the engine is known to be away:
         * no need to say so every second. */
        if (r->events_up)
            log_warn("cannot list the engine's containers: %s", res->message);
        else
            log_debug("cannot list the engine's containers: %s", res->message);
        uv_timer_start(&r->resync, runner_on_resync_timer, RUNNER_RELIST_RETRY_MS, 0);
        return;
    }
    seen = calloc(r->n + res->n_containers + 1, 1);
    if (!seen) {
        uv_timer_start(&r->resync, runner_on_resync_timer, RUNNER_RELIST_RETRY_MS, 0);
        return;
    }
    for (size_t i = 0; i < res->n_containers; i++) {
        const engine_container_t *c = &res->containers[i];
        rentry_t *e;

        /* The engine filtered by label; check again, and never touch a
         * container that is not this cluster's and this node's. */
        if (!c->labels.ok || strcmp(c->labels.cluster, r->cluster) != 0 ||
            strcmp(c->labels.node, r->node) != 0)
            continue;
        e = runner_find_cid(r, c->id);
        if (!e)
            e = runner_adopt(r, c);
        if (!e)
            continue;
        for (size_t j = 0; j < r->n; j++)
            if (r->entries[j] == e)
                seen[j] = 1;
        if (e->t->op == RT_NONE) {
            runtask_observe(e->t, c, 0, now, wall);
            if (c->state != ENGINE_STATE_RUNNING || !e->t->alive || e->t->n_ports == 0)
                e->t->need_inspect = 1;
        }
    }
    /* Containers we knew that are gone (while the event stream was down). */
    for (size_t j = 0; j < r->n; j++) {
        rentry_t *e = r->entries[j];
        if (seen[j] || !e->t->cid[0] || e->t->op != RT_NONE || e->cid_at >= r->list_sent)
            continue;
        runtask_gone(e->t, now, wall);
    }
    free(seen);
    if (!r->ready && !r->adopting) {
        r->adopting = 1;
        log_info("found %zu container%s of this node", res->n_containers,
                 res->n_containers == 1 ? "" : "s");
    }
    if (r->relist) {
        r->relist = 0;
        runner_list(r);
    }
    runner_step(r);
}

/* Adoption is done when every container found has been inspected: then
 * the statuses the node registers with are the engine's, health included. */
static void runner_check_adopted(runner_t *r)
{
    if (!r->adopting)
        return;
    for (size_t i = 0; i < r->n; i++) {
        const runtask_t *t = r->entries[i]->t;
        if (t->cid[0] && (t->need_inspect || t->op == RT_INSPECT))
            return;
    }
    r->adopting = 0;
    r->ready = 1;
    if (r->ops->on_ready)
        r->ops->on_ready(r->arg);
}

/* ------------------------------------------------------------ events */

void runner_on_event(runner_t *r, const engine_event_t *ev)
{
    rentry_t *e;

    if (!ev->labels.ok || strcmp(ev->labels.cluster, r->cluster) != 0 ||
        strcmp(ev->labels.node, r->node) != 0)
        return;
    e = runner_find_cid(r, ev->id);
    if (!e) {
        /* Ours but unknown: a container whose create answer is on its way,
         * or one made behind our back. The next listing sorts it out. */
        if (ev->kind == ENGINE_EVENT_START) {
            rentry_t *owner = runner_find(r, ev->labels.task);
            if (!owner || (owner->t->op != RT_CREATE && !owner->t->lookup))
                runner_list(r);
        }
        return;
    }
    if (ev->kind == ENGINE_EVENT_DIE)
        log_debug("task %s: container died (exit code %d)", e->t->id, ev->exit_code);
    runtask_event(e->t, ev, runner_mono(r), runner_wall(r));
    runner_step(r);
}

static void runner_on_engine_event(void *arg, const engine_event_t *ev)
{
    runner_on_event(arg, ev);
}

static void runner_on_engine_state(void *arg, int up, const char *why)
{
    runner_t *r = arg;

    r->events_up = up;
    if (up) {
        log_info("following the engine's events");
        runner_list(r);
    } else {
        log_warn("the engine's event stream dropped: %s; reconnecting", why);
    }
}

static const engine_events_ops_t runner_events_ops = {
    .on_event = runner_on_engine_event,
    .on_state = runner_on_engine_state,
};

/* ------------------------------------------------------------ sets */

static int runner_host_valid(const char *h)
{
    size_t n = strlen(h);

    if (n == 0 || n > 253 || !isalnum((unsigned char)h[0]))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)h[i]) && !strchr("-_.", h[i]))
            return 0;
    return 1;
}

/* Checks an assignment at the edge. Returns 0, or SKIFF_EINVAL with why. */
static int runner_check(Assignment *a, char *why, size_t len)
{
    char name[256], err[200];

    if (!a->spec) {
        snprintf(why, len, "invalid assignment: no spec");
        return SKIFF_EINVAL;
    }
    if (spec_complete(a->spec) != 0) {
        snprintf(why, len, "out of memory");
        return -ENOMEM;
    }
    if (spec_validate(a->spec, NULL, err, sizeof(err)) != 0) {
        snprintf(why, len, "invalid spec: %s", err);
        return SKIFF_EINVAL;
    }
    if (a->desired_state != DESIRED_RUNNING && a->desired_state != DESIRED_SHUTDOWN &&
        a->desired_state != DESIRED_REMOVE) {
        snprintf(why, len, "invalid assignment: desired state %d", a->desired_state);
        return SKIFF_EINVAL;
    }
    if (!spec_name_valid(a->service_name) ||
        engine_container_name(a, name, sizeof(name)) != 0) {
        snprintf(why, len, "invalid assignment: service name '%.64s'", a->service_name);
        return SKIFF_EINVAL;
    }
    for (size_t i = 0; i < a->n_hosts; i++) {
        if (!runner_host_valid(a->hosts[i])) {
            snprintf(why, len, "invalid assignment: host name '%.64s'", a->hosts[i]);
            return SKIFF_EINVAL;
        }
    }
    return secrets_check_refs(a->spec, why, len);
}

static int runner_keep_files(void *arg, const char *task_id)
{
    return runner_find(arg, task_id) != NULL;
}

/* After a set: the values no task uses go; the files of containers made
 * before this run of the agent (adopted) are written again now that their
 * values are here; and, after the first set, the dirs of tasks that are
 * gone. */
static void runner_apply_files(runner_t *r, const Assignments *set, int first)
{
    for (size_t i = 0; i < r->n; i++) {
        rentry_t *e = r->entries[i];
        char why[256];
        if (e->files || !e->t->cid[0] || e->t->terminal || !runner_uses_files(e->t))
            continue;
        if (runner_write_files(r, e, NULL, NULL, why, sizeof(why)))
            log_warn("task %s: its secret and config files cannot be written: %s", e->t->id,
                     why);
    }
    if (r->cfg.secrets) {
        secrets_retain(r->cfg.secrets, set);
        if (first)
            secrets_prune(r->cfg.secrets, runner_keep_files, r);
    }
}

int runner_apply(runner_t *r, const Assignments *set)
{
    int64_t now = runner_mono(r), wall = runner_wall(r);
    unsigned char *in_set;

    if (set->version < r->version)
        log_warn("assignment set version %" PRIu64 " after %" PRIu64, set->version, r->version);
    in_set = calloc(r->n + set->n_tasks + 1, 1);
    if (!in_set)
        return -ENOMEM;
    for (size_t i = 0; i < set->n_tasks; i++) {
        const Assignment *src = set->tasks[i];
        Assignment *a;
        rentry_t *e;
        char why[256];
        int rc;

        if (!src || !runtask_id_valid(src->task_id)) {
            log_warn("assignment set %" PRIu64 ": a task id that is not one was ignored",
                     set->version);
            continue;
        }
        e = runner_find(r, src->task_id);
        if (e) {
            size_t j;
            for (j = 0; j < r->n && r->entries[j] != e; j++)
                ;
            if (j < r->n && in_set[j]) {
                log_warn("assignment set %" PRIu64 ": task %s twice; the second was ignored",
                         set->version, src->task_id);
                continue;
            }
        }
        a = pb_dup(src);
        if (!a) {
            free(in_set);
            return -ENOMEM;
        }
        rc = runner_check(a, why, sizeof(why));
        if (rc == -ENOMEM) {
            pb_free(a);
            free(in_set);
            return rc;
        }
        if (!e) {
            e = runner_add(r, a->task_id);
            if (!e) {
                pb_free(a);
                free(in_set);
                return -ENOMEM;
            }
            /* in_set has room: it was sized for every new entry. */
        }
        /* The values come before the set that uses them: one that has not
         * come will not. A task whose container runs already keeps it. */
        if (rc == 0 && a->desired_state == DESIRED_RUNNING && !e->t->cid[0] &&
            !e->t->terminal && secrets_missing(r->cfg.secrets, a->spec, why, sizeof(why)))
            rc = SKIFF_ENOTFOUND;
        if (rc) {
            /* Reported as rejected, never run. */
            log_warn("task %s: %s", a->task_id, why);
            runtask_assign(e->t, a, now, wall);
            if (!e->t->terminal) {
                e->t->terminal = 1;
                e->t->state = TASK_REJECTED;
                e->t->since_ms = wall;
                snprintf(e->t->message, sizeof(e->t->message), "%s", why);
                e->t->dirty = 1;
            }
        } else {
            runtask_assign(e->t, a, now, wall);
        }
        for (size_t j = 0; j < r->n; j++)
            if (r->entries[j] == e)
                in_set[j] = 1;
    }
    for (size_t j = 0; j < r->n; j++)
        if (!in_set[j] && r->entries[j]->t->asg)
            runtask_unassign(r->entries[j]->t);
    free(in_set);
    if (!r->set_seen)
        log_info("first assignment set (version %" PRIu64 ", %zu task%s)", set->version,
                 set->n_tasks, set->n_tasks == 1 ? "" : "s");
    runner_apply_files(r, set, !r->set_seen);
    r->set_seen = 1;
    r->version = set->version;
    runner_step(r);
    return 0;
}

uint64_t runner_version(const runner_t *r)
{
    return r->version;
}

/* ------------------------------------------------------------ reports */

int runner_report(runner_t *r, int only_changed, runner_report_t *out)
{
    size_t n = 0, k = 0;

    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < r->n; i++) {
        runtask_t *t = r->entries[i]->t;
        if (runtask_reported(t, r->set_seen) && (!only_changed || t->dirty))
            n++;
    }
    if (n == 0)
        return 0;
    out->tasks = calloc(n, sizeof(*out->tasks));
    out->storage = calloc(n, sizeof(*out->storage));
    out->ports = calloc(n * ENGINE_MAX_PORTS, sizeof(*out->ports));
    out->port_ptrs = calloc(n * ENGINE_MAX_PORTS, sizeof(*out->port_ptrs));
    if (!out->tasks || !out->storage || !out->ports || !out->port_ptrs) {
        runner_report_free(out);
        return -ENOMEM;
    }
    for (size_t i = 0; i < r->n && k < n; i++) {
        runtask_t *t = r->entries[i]->t;
        if (!runtask_reported(t, r->set_seen) || (only_changed && !t->dirty))
            continue;
        runtask_status(t, &out->storage[k], &out->ports[k * ENGINE_MAX_PORTS],
                       &out->port_ptrs[k * ENGINE_MAX_PORTS]);
        out->tasks[k] = &out->storage[k];
        t->dirty = 0;
        k++;
    }
    out->n = k;
    return 0;
}

void runner_report_free(runner_report_t *rep)
{
    free(rep->tasks);
    free(rep->storage);
    free(rep->ports);
    free(rep->port_ptrs);
    memset(rep, 0, sizeof(*rep));
}

void runner_each_running(const runner_t *r,
                         void (*fn)(void *arg, const char *task_id, const char *service,
                                    uint32_t slot, const char *container),
                         void *arg)
{
    for (size_t i = 0; i < r->n; i++) {
        const runtask_t *t = r->entries[i]->t;
        if (t->alive && t->cid[0] && t->state == TASK_RUNNING)
            fn(arg, t->id, t->asg ? t->asg->service_name : "", t->asg ? t->asg->slot : 0,
               t->cid);
    }
}

const char *runner_container(const runner_t *r, const char *task_id)
{
    rentry_t *e = runner_find(r, task_id);

    return e && e->t->cid[0] ? e->t->cid : NULL;
}

/* ------------------------------------------------------------ life */

runner_t *runner_create(uv_loop_t *loop, engine_t *engine, const runner_config_t *cfg,
                        const runner_ops_t *ops, void *arg)
{
    runner_t *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    r->loop = loop;
    r->engine = engine;
    r->cfg = *cfg;
    r->ops = ops;
    r->arg = arg;
    snprintf(r->node, sizeof(r->node), "%s", cfg->node ? cfg->node : "");
    snprintf(r->advertise, sizeof(r->advertise), "%s", cfg->advertise ? cfg->advertise : "");
    snprintf(r->gateway, sizeof(r->gateway), "%s", cfg->gateway ? cfg->gateway : "");
    r->cfg.node = r->node;
    r->cfg.advertise = r->advertise;
    r->cfg.gateway = r->gateway;
    uv_timer_init(loop, &r->timer);
    uv_timer_init(loop, &r->resync);
    r->timer.data = r;
    r->resync.data = r;
    r->open_handles = 2;
    return r;
}

int runner_start(runner_t *r, const char *cluster)
{
    const char *labels[2];
    int rc;

    if (r->started)
        return SKIFF_EINVAL;
    if (!cluster || !*cluster || strlen(cluster) >= sizeof(r->cluster))
        return SKIFF_EINVAL;
    strcpy(r->cluster, cluster);
    snprintf(r->label_cluster, sizeof(r->label_cluster), "%s=%s", ENGINE_LABEL_CLUSTER, cluster);
    snprintf(r->label_node, sizeof(r->label_node), "%s=%s", ENGINE_LABEL_NODE, r->node);
    labels[0] = r->label_cluster;
    labels[1] = r->label_node;
    rc = r->engine->ops->events_start(r->engine, labels, 2, &runner_events_ops, r);
    if (rc)
        return rc;
    r->started = 1;
    uv_timer_start(&r->resync, runner_on_resync_timer,
                   r->cfg.resync_ms ? r->cfg.resync_ms : RUNNER_RESYNC_MS, 0);
    return 0;
}

const char *runner_cluster(const runner_t *r)
{
    return r->started ? r->cluster : NULL;
}

int runner_ready(const runner_t *r)
{
    return r->ready != 0;
}

void runner_set_gateway(runner_t *r, const char *gateway)
{
    snprintf(r->gateway, sizeof(r->gateway), "%s", gateway ? gateway : "");
}

static void runner_on_closed(uv_handle_t *h)
{
    runner_t *r = h->data;
    void (*done)(void *);
    void *arg;

    if (--r->open_handles > 0)
        return;
    done = r->close_done;
    arg = r->close_arg;
    for (size_t i = 0; i < r->n; i++)
        runner_entry_free(r, r->entries[i]);
    free(r->entries);
    free(r);
    if (done)
        done(arg);
}

void runner_close(runner_t *r, void (*done)(void *arg), void *arg)
{
    if (r->closing)
        return;
    r->closing = 1;
    r->close_done = done;
    r->close_arg = arg;
    for (size_t i = 0; i < r->n; i++)
        runner_probe_cancel(r, r->entries[i]);
    uv_close((uv_handle_t *)&r->timer, runner_on_closed);
    uv_close((uv_handle_t *)&r->resync, runner_on_closed);
}
