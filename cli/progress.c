/* progress: see progress.h. */
#include "progress.h"
#include "duration.h"
#include "errors.h"
#include "format.h"
#include "parse.h"
#include "pbjson.h"
#include "pbutil.h"
#include "wire.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define PROGRESS_TEXT 256

typedef struct progress_row {
    char label[32];          /* "1/3", "overall progress", "update" */
    char state[32];          /* "running"; for other rows the whole text */
    char detail[PROGRESS_TEXT];
    int stage;               /* 0..PROGRESS_STAGES for a bar, -1: no bar */
} progress_row_t;

/* A task seen since the wait began. */
typedef struct progress_seen {
    char id[64];
    uint32_t base_restarts;  /* its restarts when first seen */
    int base_failed;         /* it had already ended when the wait began */
    int base_ready;          /* it was ready when the wait began: stable */
    int64_t ready_at;        /* our clock when we saw it ready; 0: not ready */
    uint32_t ready_restarts; /* its restarts then */
} progress_seen_t;

struct progress {
    enum progress_op op;
    int rolling;
    int polled;              /* the baseline is taken */
    progress_seen_t *seen;
    size_t n_seen, cap_seen;
    progress_row_t *rows;
    size_t n_rows, cap_rows;
    progress_row_t *printed; /* what render printed last (plain lines) */
    size_t n_printed;
    size_t drawn;            /* lines drawn on the terminal */
    char message[512];
    char reason[256];        /* why a rollback started, as last seen */
};

progress_t *progress_create(enum progress_op op, int rolling)
{
    progress_t *p = calloc(1, sizeof(*p));

    if (!p)
        return NULL;
    p->op = op;
    p->rolling = rolling;
    return p;
}

void progress_free(progress_t *p)
{
    if (!p)
        return;
    free(p->seen);
    free(p->rows);
    free(p->printed);
    free(p);
}

const char *progress_message(const progress_t *p)
{
    return p->message;
}

static progress_seen_t *progress_find(progress_t *p, const char *id)
{
    for (size_t i = 0; i < p->n_seen; i++)
        if (strcmp(p->seen[i].id, id) == 0)
            return &p->seen[i];
    return NULL;
}

static int progress_ended(TaskState s)
{
    return s == TASK_FAILED || s == TASK_REJECTED || s == TASK_COMPLETE;
}

/* Running, and healthy where checked. */
static int progress_ready(const Task *t)
{
    return t->state == TASK_RUNNING &&
           (t->health == HEALTH_NONE || t->health == HEALTH_HEALTHY);
}

/* Records the tasks not seen before; the first poll is the baseline. */
static int progress_note(progress_t *p, Task *const *tasks, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (progress_find(p, tasks[i]->id))
            continue;
        if (p->n_seen == p->cap_seen) {
            size_t cap = p->cap_seen ? 2 * p->cap_seen : 32;
            progress_seen_t *grown = realloc(p->seen, cap * sizeof(*grown));
            if (!grown)
                return -ENOMEM;
            p->seen = grown;
            p->cap_seen = cap;
        }
        progress_seen_t *s = &p->seen[p->n_seen++];
        memset(s, 0, sizeof(*s));
        snprintf(s->id, sizeof(s->id), "%s", tasks[i]->id);
        s->base_restarts = p->polled ? 0 : tasks[i]->restarts;
        s->base_failed = p->polled ? 0 : progress_ended(tasks[i]->state);
        s->base_ready = p->polled ? 0 : progress_ready(tasks[i]);
    }
    p->polled = 1;
    return 0;
}

static progress_row_t *progress_row(progress_t *p)
{
    if (p->n_rows == p->cap_rows) {
        size_t cap = p->cap_rows ? 2 * p->cap_rows : 16;
        progress_row_t *grown = realloc(p->rows, cap * sizeof(*grown));
        if (!grown)
            return NULL;
        p->rows = grown;
        p->cap_rows = cap;
    }
    progress_row_t *r = &p->rows[p->n_rows++];
    memset(r, 0, sizeof(*r));
    r->stage = -1;
    return r;
}

static int progress_fail(progress_t *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int progress_fail(progress_t *p, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(p->message, sizeof(p->message), fmt, ap);
    va_end(ap);
    parse_one_line(p->message);
    return PROGRESS_FAILED;
}

/* The task that stands for a slot: the newest that should run. */
static const Task *progress_slot_task(Task *const *tasks, size_t n, uint32_t slot)
{
    const Task *best = NULL;

    for (size_t i = 0; i < n; i++) {
        const Task *t = tasks[i];
        if (t->slot != slot || t->desired_state != DESIRED_RUNNING)
            continue;
        if (!best || t->spec_version > best->spec_version ||
            (t->spec_version == best->spec_version && t->created_ms > best->created_ms))
            best = t;
    }
    return best;
}

/* Whether a ready task is stable: ready since the wait began, or ready
 * without a restart for the window (a task that crashes at once is running
 * for an instant now and then). Keeps the bookkeeping in s. */
static int progress_stable(progress_seen_t *s, const Task *t, int64_t now_ms, int64_t window)
{
    if (!s)
        return 0;
    if (s->base_ready && t->restarts == s->base_restarts)
        return 1;
    if (!s->ready_at || s->ready_restarts != t->restarts) {
        s->ready_at = now_ms ? now_ms : 1;
        s->ready_restarts = t->restarts;
    }
    return now_ms - s->ready_at >= window;
}

enum { SLOT_WAITING, SLOT_VERIFYING, SLOT_DONE };

/* Fills a slot's row; returns SLOT_DONE when the slot's task is ready and
 * stable, SLOT_VERIFYING when it is ready but not yet stable. versioned: an
 * update is under way, and a task older than the service's version is still
 * to be replaced (a scale bumps the version too, and keeps the tasks: so
 * only then). */
static int progress_slot_row(progress_t *p, int versioned, const Service *svc, const Task *t,
                             int64_t now_ms, int64_t window, progress_row_t *r)
{
    static const int stages[] = {
        [TASK_NEW] = 1, [TASK_PENDING] = 1, [TASK_ASSIGNED] = 2, [TASK_PULLING] = 3,
        [TASK_STARTING] = 4, [TASK_RUNNING] = 5,
    };
    int healthy, current;
    progress_seen_t *s;

    if (!t) {
        snprintf(r->state, sizeof(r->state), "new");
        r->stage = 0;
        return 0;
    }
    snprintf(r->state, sizeof(r->state), "%s", fmt_task_state(t->state));
    r->state[0] = (char)(r->state[0] - 'A' + 'a');
    r->stage = (unsigned)t->state < sizeof(stages) / sizeof(stages[0]) ? stages[t->state] : 0;
    healthy = t->health == HEALTH_NONE || t->health == HEALTH_HEALTHY;
    current = !versioned || t->spec_version >= svc->version;
    if (!current) {
        snprintf(r->detail, sizeof(r->detail), "not updated yet");
        r->stage = 0;
        return 0;
    }
    s = progress_find(p, t->id);
    if (s && !progress_ready(t))
        s->ready_at = 0;
    if (t->state == TASK_RUNNING && healthy) {
        r->stage = PROGRESS_STAGES;
        return progress_stable(s, t, now_ms, window) ? SLOT_DONE : SLOT_VERIFYING;
    }
    if (t->state == TASK_RUNNING || t->state == TASK_STARTING) {
        if (t->health == HEALTH_STARTING)
            snprintf(r->detail, sizeof(r->detail), "health: starting");
        else if (t->health == HEALTH_UNHEALTHY)
            snprintf(r->detail, sizeof(r->detail), "unhealthy");
    }
    if (*t->message) {
        size_t n = strlen(r->detail);
        snprintf(r->detail + n, sizeof(r->detail) - n, "%s%s", n ? ": " : "", t->message);
    }
    return SLOT_WAITING;
}

/* The failures of a slot since the wait began: tasks that ended, and
 * restarts of the slot's task. Sets *rejected for an engine refusal. */
static uint32_t progress_strikes(progress_t *p, Task *const *tasks, size_t n, uint32_t slot,
                                 const Task *cur, const Task **last, int *rejected)
{
    uint32_t strikes = 0;

    *rejected = 0;
    for (size_t i = 0; i < n; i++) {
        const Task *t = tasks[i];
        const progress_seen_t *s;
        if (t->slot != slot || !progress_ended(t->state))
            continue;
        s = progress_find(p, t->id);
        if (!s || s->base_failed)
            continue;
        strikes++;
        if (t->state == TASK_REJECTED)
            *rejected = 1;
        if (!*last || t->created_ms > (*last)->created_ms)
            *last = t;
    }
    if (cur) {
        const progress_seen_t *s = progress_find(p, cur->id);
        if (s && cur->restarts > s->base_restarts) {
            strikes += cur->restarts - s->base_restarts;
            *last = cur;
        }
    }
    return strikes;
}

static void progress_task_error(const Task *t, char *out, size_t len)
{
    if (*t->message)
        snprintf(out, len, "%s", t->message);
    else if (t->exit_code)
        snprintf(out, len, "exit code %d", t->exit_code);
    else
        snprintf(out, len, "%s", fmt_task_state(t->state));
}

/* Fails with "prefix: msg", unless the controller's msg begins so. */
static int progress_fail_as(progress_t *p, const char *prefix, const char *msg)
{
    if (strncmp(msg, prefix, strlen(prefix)) == 0)
        return progress_fail(p, "%s", msg);
    return progress_fail(p, "%s: %s", prefix, *msg ? msg : "no reason given");
}

enum progress_verdict progress_eval(progress_t *p, const Service *svc, Task *const *tasks,
                                    size_t n, int64_t now_ms)
{
    const ServiceSpec *spec = svc->spec;
    int64_t window = spec && spec->update ? spec->update->monitor_ms : 0;
    const UpdateStatus *us = svc->update_status;
    UpdateState st = us ? us->state : UPDATE_NONE;
    const char *umsg = us ? us->message : "";
    uint32_t replicas = spec ? spec->replicas : 0, done = 0, ready = 0;
    char dur[32];
    enum progress_verdict verdict = PROGRESS_WAITING;
    int versioned = p->rolling && (st == UPDATE_UPDATING || st == UPDATE_ROLLBACK_STARTED);
    progress_row_t *overall, *r;
    char name[32];

    p->n_rows = 0;
    p->message[0] = '\0';
    if (st == UPDATE_ROLLBACK_STARTED && *umsg) {
        const char *why = umsg;
        if (strncmp(why, "rollback started: ", 18) == 0)
            why += 18;
        snprintf(p->reason, sizeof(p->reason), "%s", why);
    }
    if (progress_note(p, tasks, n) || !(overall = progress_row(p)))
        return progress_fail(p, "out of memory");
    if (p->rolling) {
        if (!(r = progress_row(p)))
            return progress_fail(p, "out of memory");
        snprintf(r->label, sizeof(r->label), "%s",
                 st >= UPDATE_ROLLBACK_STARTED ? "rollback" : "update");
        pbjson_enum_name(&skiff__v1__update_state__descriptor, st, name, sizeof(name));
        snprintf(r->detail, sizeof(r->detail), "%s%s%s", name, *umsg ? ": " : "", umsg);
    }
    for (uint32_t slot = 1; slot <= replicas; slot++) {
        const Task *cur = progress_slot_task(tasks, n, slot), *last = NULL;
        progress_row_t row = { .stage = -1 };
        int rejected;
        uint32_t strikes;

        snprintf(row.label, sizeof(row.label), "%u/%u", slot, replicas);
        switch (progress_slot_row(p, versioned, svc, cur, now_ms, window, &row)) {
        case SLOT_DONE: done++; ready++; break;
        case SLOT_VERIFYING: ready++; break;
        default: break;
        }
        if (slot <= PROGRESS_MAX_SLOT_LINES) {
            if (!(r = progress_row(p)))
                return progress_fail(p, "out of memory");
            *r = row;
        }
        if (p->rolling || verdict != PROGRESS_WAITING)
            continue; /* during an update, the controller's failure action decides */
        strikes = progress_strikes(p, tasks, n, slot, cur, &last, &rejected);
        if (last && (rejected || strikes >= PROGRESS_MAX_STRIKES)) {
            char why[300];
            progress_task_error(last, why, sizeof(why));
            verdict = progress_fail(p, "task %s.%u %s: %s (the controller keeps trying; see "
                                    "skiff service ps %s)", last->service_name, slot,
                                    rejected ? "was rejected" : "keeps failing", why,
                                    spec->name);
        }
    }
    snprintf(overall->label, sizeof(overall->label), "overall progress");
    snprintf(overall->detail, sizeof(overall->detail), "%u out of %u tasks", ready, replicas);
    if (replicas > PROGRESS_MAX_SLOT_LINES) {
        if (!(r = progress_row(p)))
            return progress_fail(p, "out of memory");
        snprintf(r->detail, sizeof(r->detail), "(%u more slots not shown)",
                 replicas - PROGRESS_MAX_SLOT_LINES);
    }
    if (ready == replicas && done < replicas) {
        if (!(r = progress_row(p)))
            return progress_fail(p, "out of memory");
        snprintf(r->detail, sizeof(r->detail), "verify: Waiting %s to verify that tasks are "
                 "stable...", duration_format(window, dur, sizeof(dur)));
    }
    if (verdict != PROGRESS_WAITING)
        return verdict;
    if (p->rolling) {
        if (st == UPDATE_PAUSED)
            return progress_fail_as(p, "update paused", umsg);
        if (st == UPDATE_ROLLBACK_PAUSED)
            return progress_fail_as(p, "rollback paused", umsg);
        if (st == UPDATE_ROLLBACK_COMPLETED && p->op != PROGRESS_ROLLBACK)
            return progress_fail(p, "update rolled back: %s",
                                 *p->reason ? p->reason : *umsg ? umsg : "no reason given");
        if (st == UPDATE_UPDATING || st == UPDATE_ROLLBACK_STARTED)
            return PROGRESS_WAITING;
    }
    if (done == replicas && svc->running_tasks == svc->desired_tasks &&
        svc->desired_tasks == replicas)
        return PROGRESS_CONVERGED;
    return PROGRESS_WAITING;
}

size_t progress_lines(const progress_t *p)
{
    return p->n_rows;
}

static void progress_format(const progress_row_t *r, int with_bar, char *out, size_t len)
{
    char bar[PROGRESS_STAGES * 10 + 4];
    int n = 0;

    if (!*r->label) {
        snprintf(out, len, "%s", r->detail);
        return;
    }
    if (!*r->state) {
        snprintf(out, len, "%s: %s", r->label, r->detail);
        return;
    }
    if (!with_bar || r->stage < 0) {
        if (*r->detail)
            snprintf(out, len, "%s: %s (%s)", r->label, r->state, r->detail);
        else
            snprintf(out, len, "%s: %s", r->label, r->state);
        return;
    }
    /* Docker's bar: 50 wide, '=' up to the stage, then '>' */
    int fill = r->stage * 50 / PROGRESS_STAGES;
    bar[n++] = '[';
    for (int i = 0; i < fill; i++)
        bar[n++] = '=';
    bar[n++] = '>';
    for (int i = fill; i < 50; i++)
        bar[n++] = ' ';
    bar[n++] = ']';
    bar[n] = '\0';
    snprintf(out, len, "%s: %-9s %s%s%s", r->label, r->state, bar, *r->detail ? " " : "",
             r->detail);
}

void progress_line(const progress_t *p, size_t i, int with_bar, char *out, size_t len)
{
    if (i >= p->n_rows) {
        out[0] = '\0';
        return;
    }
    progress_format(&p->rows[i], with_bar, out, len);
    parse_one_line(out);
}

/* Cuts s to width characters (UTF-8). */
static void progress_cut(char *s, int width)
{
    int chars = 0;

    if (width <= 0)
        return;
    for (char *q = s; *q; q++) {
        if (((unsigned char)*q & 0xC0) == 0x80)
            continue;
        if (chars++ == width) {
            *q = '\0';
            return;
        }
    }
}

void progress_render(progress_t *p, FILE *out, int tty, int width)
{
    char line[PROGRESS_TEXT + 200], before[PROGRESS_TEXT + 200];

    if (tty) {
        if (p->drawn)
            fprintf(out, "\033[%zuA", p->drawn);
        for (size_t i = 0; i < p->n_rows; i++) {
            progress_format(&p->rows[i], 1, line, sizeof(line));
            parse_one_line(line);
            progress_cut(line, width - 1);
            fprintf(out, "\r%s\033[K\n", line);
        }
        fputs("\033[J", out);
        p->drawn = p->n_rows;
        fflush(out);
        return;
    }
    for (size_t i = 0; i < p->n_rows; i++) {
        progress_format(&p->rows[i], 0, line, sizeof(line));
        parse_one_line(line);
        if (i < p->n_printed) {
            progress_format(&p->printed[i], 0, before, sizeof(before));
            if (strcmp(line, before) == 0)
                continue;
        }
        fprintf(out, "%s\n", line);
    }
    if (p->n_rows > p->n_printed) {
        progress_row_t *grown = realloc(p->printed, p->n_rows * sizeof(*grown));
        if (!grown)
            return; /* next time everything prints again: harmless */
        p->printed = grown;
    }
    if (p->n_rows)
        memcpy(p->printed, p->rows, p->n_rows * sizeof(*p->rows));
    p->n_printed = p->n_rows;
    fflush(out);
}

/* --------------------------------------------------------------- follow */

static int progress_poll(client_t *c, const char *service, Envelope **svc_env,
                         Envelope **tasks_env, char *err, size_t len)
{
    Envelope req = PB_ENVELOPE_INIT;
    ServiceGet get = PB_SERVICE_GET_INIT;
    TaskList list = PB_TASK_LIST_INIT;
    int rc;

    get.service = (char *)service;
    req.msg_case = MSG_SERVICE_GET;
    req.service_get = &get;
    rc = client_call(c, &req, MSG_SERVICE_REPLY, svc_env, err, len);
    if (rc)
        return rc;
    if (!(*svc_env)->service_reply->service || !(*svc_env)->service_reply->service->spec) {
        snprintf(err, len, "the controller sent a service without a spec");
        return SKIFF_EPROTO;
    }
    list.service = (*svc_env)->service_reply->service->id;
    list.all = 1;
    return client_task_list(c, &list, tasks_env, err, len);
}

int progress_follow(client_t *c, const char *service, enum progress_op op, int rolling,
                    int quiet, char *err, size_t errlen)
{
    progress_t *p = progress_create(op, rolling);
    int tty = isatty(STDOUT_FILENO), width = 80, rc;
    struct winsize ws;
    char name[128];

    if (!p) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        width = ws.ws_col;
    snprintf(name, sizeof(name), "%s", service);
    for (;;) {
        Envelope *se = NULL, *te = NULL;
        enum progress_verdict v;

        rc = progress_poll(c, service, &se, &te, err, errlen);
        if (rc) {
            if (rc == SKIFF_ENOTFOUND)
                snprintf(err, errlen, "service %s was removed while skiff waited for it", name);
            wire_free(se);
            wire_free(te);
            break;
        }
        snprintf(name, sizeof(name), "%s", se->service_reply->service->spec->name);
        v = progress_eval(p, se->service_reply->service, te->task_list_reply->tasks,
                          te->task_list_reply->n_tasks, fmt_now_ms());
        wire_free(se);
        wire_free(te);
        if (!quiet)
            progress_render(p, stdout, tty, width);
        if (v == PROGRESS_CONVERGED) {
            if (!quiet)
                printf("verify: Service converged\n");
            rc = 0;
            break;
        }
        if (v == PROGRESS_FAILED) {
            snprintf(err, errlen, "%s", progress_message(p));
            rc = SKIFF_EUNAVAILABLE;
            break;
        }
        rc = client_sleep(c, PROGRESS_POLL_MS, err, errlen);
        if (rc)
            break;
    }
    if (rc == -EINTR) {
        fflush(stdout);
        fprintf(stderr, "skiff: stopped waiting; the operation goes on in the background "
                        "(see skiff service ps %s)\n", name);
    }
    progress_free(p);
    return rc;
}
