/* logstream: see logstream.h.
 *
 * A stream has one part per task; a part has the engine's log handle and a
 * line buffer per output (stdout, stderr). Whole lines are sent as they
 * complete, several in one frame when they came together.
 *
 * With follow, a part outlives its container's run: the engine ends a
 * followed log when the container stops, so the part waits, and a timer
 * reopens it (from the time it ended) once the task runs again, or when a
 * task that had no container gets one.
 */
#include "logstream.h"
#include "buf.h"
#include "errors.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOGSTREAM_REOPEN_MS 500

typedef struct lstream lstream_t;

typedef struct lpart {
    lstream_t *s;
    char task_id[128];
    char name[256];
    engine_logs_t *h;   /* the engine's log, while open */
    int waiting;        /* follow: to be (re)opened when the task runs */
    int64_t since_ms;   /* reopen from here; 0: the request's tail */
    buf_t line[2];      /* what came after the last newline, per output */
} lpart_t;

struct lstream {
    logstreams_t *ls;
    uint64_t id;
    int follow;
    uint32_t tail;
    size_t n_parts;
    size_t open_parts;  /* not ended (open, or waiting to reopen) */
    lpart_t *parts;
    uint64_t dropped;   /* bytes dropped since the last frame that went */
    lstream_t *next;
};

struct logstreams {
    engine_t *engine;
    logstream_container_fn container;
    logstream_send_fn send;
    void *arg;
    uv_timer_t *timer;  /* allocated apart: freed in its close callback */
    lstream_t *streams;
    size_t n_streams;
};

static int64_t lwall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void logstreams_on_timer(uv_timer_t *t);

logstreams_t *logstreams_create(uv_loop_t *loop, engine_t *engine,
                                logstream_container_fn container, logstream_send_fn send,
                                void *arg)
{
    logstreams_t *ls = calloc(1, sizeof(*ls));

    if (!ls)
        return NULL;
    ls->timer = malloc(sizeof(*ls->timer));
    if (!ls->timer) {
        free(ls);
        return NULL;
    }
    uv_timer_init(loop, ls->timer);
    ls->timer->data = ls;
    ls->engine = engine;
    ls->container = container;
    ls->send = send;
    ls->arg = arg;
    return ls;
}

static int lsend_close(logstreams_t *ls, uint64_t stream, const char *msg)
{
    Envelope env = PB_ENVELOPE_INIT;
    LogsClose lc = PB_LOGS_CLOSE_INIT;

    lc.stream = stream;
    lc.message = (char *)(msg ? msg : "");
    env.msg_case = MSG_LOGS_CLOSE;
    env.logs_close = &lc;
    return ls->send(ls->arg, &env);
}

static int lsend_data(lstream_t *s, const char *name, int is_stderr, const char *data,
                      size_t len)
{
    Envelope env = PB_ENVELOPE_INIT;
    LogsData d = PB_LOGS_DATA_INIT;
    int rc;

    if (s->dropped) {
        char note[160];
        int n = snprintf(note, sizeof(note),
                         "[skiff: %llu bytes of logs dropped: the connection to the "
                         "controller was busy]\n",
                         (unsigned long long)s->dropped);
        d.stream = s->id;
        d.task_name = (char *)name;
        d.data.data = (uint8_t *)note;
        d.data.len = (size_t)n;
        d.stderr = 1;
        env.msg_case = MSG_LOGS_DATA;
        env.logs_data = &d;
        if (s->ls->send(s->ls->arg, &env) != 0) {
            s->dropped += len;
            return SKIFF_ELIMIT;
        }
        s->dropped = 0;
    }
    d.stream = s->id;
    d.task_name = (char *)name;
    d.data.data = (uint8_t *)data;
    d.data.len = len;
    d.stderr = is_stderr;
    env.msg_case = MSG_LOGS_DATA;
    env.logs_data = &d;
    rc = s->ls->send(s->ls->arg, &env);
    if (rc)
        s->dropped += len;
    return rc;
}

static void lpart_release(lpart_t *p)
{
    if (p->h)
        p->s->ls->engine->ops->logs_close(p->s->ls->engine, p->h);
    p->h = NULL;
    buf_free(&p->line[0]);
    buf_free(&p->line[1]);
}

static void lstream_free(lstream_t *s)
{
    logstreams_t *ls = s->ls;
    lstream_t **pp;

    for (pp = &ls->streams; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    ls->n_streams--;
    for (size_t i = 0; i < s->n_parts; i++)
        lpart_release(&s->parts[i]);
    free(s->parts);
    free(s);
}

static lstream_t *lstream_find(logstreams_t *ls, uint64_t id)
{
    for (lstream_t *s = ls->streams; s; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

/* Sends the whole lines in b (and, with all, the rest as a line). */
static void lpart_flush(lpart_t *p, int is_stderr, int all)
{
    buf_t *b = &p->line[is_stderr];
    const char *last_nl;
    size_t n;

    if (buf_len(b) == 0)
        return;
    last_nl = memrchr(b->pos, '\n', buf_len(b));
    n = last_nl ? (size_t)(last_nl - b->pos) + 1 : 0;
    if (n) {
        lsend_data(p->s, p->name, is_stderr, b->pos, n);
        buf_consume(b, n);
    }
    if (all && buf_len(b)) {
        /* The log ended without a newline: end the line ourselves. */
        if (buf_append(b, "\n", 1, LOGSTREAM_LINE_MAX + 1) == 0)
            lsend_data(p->s, p->name, is_stderr, b->pos, buf_len(b));
        buf_consume(b, buf_len(b));
    }
}

static void lpart_on_data(void *arg, int is_stderr, const char *data, size_t len)
{
    lpart_t *p = arg;
    int out = is_stderr ? 1 : 0;
    buf_t *b = &p->line[out];

    while (len > 0) {
        size_t room = LOGSTREAM_LINE_MAX - buf_len(b);
        size_t take = len < room ? len : room;

        if (take && buf_append(b, data, take, LOGSTREAM_LINE_MAX) != 0) {
            p->s->dropped += len;
            return;
        }
        data += take;
        len -= take;
        lpart_flush(p, out, 0);
        if (buf_len(b) >= LOGSTREAM_LINE_MAX)
            lpart_flush(p, out, 1); /* a line too long for us: cut it here */
    }
}

static void lpart_on_end(void *arg, int status, const char *message)
{
    lpart_t *p = arg;
    lstream_t *s = p->s;

    p->h = NULL; /* the engine is done with it */
    lpart_flush(p, 0, 1);
    lpart_flush(p, 1, 1);
    if (s->follow) {
        /* The container stopped (or the engine went away): wait for the
         * task to run again, and go on from here. */
        p->waiting = 1;
        p->since_ms = lwall_ms();
        if (!uv_is_active((uv_handle_t *)s->ls->timer))
            uv_timer_start(s->ls->timer, logstreams_on_timer, LOGSTREAM_REOPEN_MS,
                           LOGSTREAM_REOPEN_MS);
        return;
    }
    if (status && message && *message) {
        char note[400];
        int n = snprintf(note, sizeof(note), "[skiff: the log ended early: %s]\n", message);
        lsend_data(s, p->name, 1, note, (size_t)n < sizeof(note) ? (size_t)n : sizeof(note) - 1);
    }
    buf_free(&p->line[0]);
    buf_free(&p->line[1]);
    if (--s->open_parts == 0) {
        lsend_close(s->ls, s->id, s->dropped ? "some log data was dropped" : "");
        lstream_free(s);
    }
}

static const engine_logs_ops_t lpart_ops = {
    .on_data = lpart_on_data,
    .on_end = lpart_on_end,
};

/* Opens p's log if its task has a container. Returns 1 when it is open. */
static int lpart_open(lpart_t *p)
{
    logstreams_t *ls = p->s->ls;
    const char *cid = ls->container(ls->arg, p->task_id);
    int rc;

    if (!cid)
        return 0;
    rc = ls->engine->ops->logs_open(ls->engine, cid, p->s->follow, p->since_ms ? 0 : p->s->tail,
                                    p->since_ms, &lpart_ops, p, &p->h);
    if (rc) {
        log_warn("logs of %s: %s", p->name, skiff_strerror(rc));
        p->h = NULL;
        return 0;
    }
    p->waiting = 0;
    return 1;
}

static void logstreams_on_timer(uv_timer_t *t)
{
    logstreams_t *ls = t->data;
    int waiting = 0;

    for (lstream_t *s = ls->streams; s; s = s->next) {
        for (size_t i = 0; i < s->n_parts; i++) {
            lpart_t *p = &s->parts[i];
            if (p->waiting && !lpart_open(p))
                waiting = 1;
        }
    }
    if (!waiting)
        uv_timer_stop(t);
}

int logstreams_open(logstreams_t *ls, const LogsOpen *req)
{
    lstream_t *s;
    int waiting = 0;

    logstreams_close(ls, req->stream);
    if (ls->n_streams >= LOGSTREAM_MAX_STREAMS) {
        lsend_close(ls, req->stream, "too many log streams on this node");
        return SKIFF_ELIMIT;
    }
    if (req->n_tasks > LOGSTREAM_MAX_TASKS) {
        lsend_close(ls, req->stream, "too many tasks in one log request");
        return SKIFF_ELIMIT;
    }
    s = calloc(1, sizeof(*s));
    if (!s || (req->n_tasks && !(s->parts = calloc(req->n_tasks, sizeof(*s->parts))))) {
        free(s);
        lsend_close(ls, req->stream, "out of memory");
        return -ENOMEM;
    }
    s->ls = ls;
    s->id = req->stream;
    s->follow = req->follow;
    s->tail = req->tail;
    s->next = ls->streams;
    ls->streams = s;
    ls->n_streams++;
    for (size_t i = 0; i < req->n_tasks; i++) {
        const LogsTask *lt = req->tasks[i];
        lpart_t *p = &s->parts[s->n_parts];

        if (!lt || !*lt->task_id || strlen(lt->task_id) >= sizeof(p->task_id))
            continue;
        p->s = s;
        snprintf(p->task_id, sizeof(p->task_id), "%s", lt->task_id);
        snprintf(p->name, sizeof(p->name), "%s", *lt->name ? lt->name : lt->task_id);
        if (!lpart_open(p)) {
            if (!s->follow)
                continue; /* nothing of it here (any more) */
            p->waiting = 1;
            waiting = 1;
        }
        s->n_parts++;
        s->open_parts++;
    }
    if (s->open_parts == 0) {
        lsend_close(ls, s->id, "");
        lstream_free(s);
        return 0;
    }
    if (waiting && !uv_is_active((uv_handle_t *)ls->timer))
        uv_timer_start(ls->timer, logstreams_on_timer, LOGSTREAM_REOPEN_MS, LOGSTREAM_REOPEN_MS);
    return 0;
}

void logstreams_close(logstreams_t *ls, uint64_t stream)
{
    lstream_t *s = lstream_find(ls, stream);

    if (s)
        lstream_free(s);
}

void logstreams_close_all(logstreams_t *ls)
{
    while (ls->streams)
        lstream_free(ls->streams);
    uv_timer_stop(ls->timer);
}

size_t logstreams_count(const logstreams_t *ls)
{
    return ls->n_streams;
}

static void logstreams_on_timer_closed(uv_handle_t *h)
{
    free(h);
}

void logstreams_free(logstreams_t *ls)
{
    if (!ls)
        return;
    logstreams_close_all(ls);
    uv_close((uv_handle_t *)ls->timer, logstreams_on_timer_closed);
    free(ls);
}
