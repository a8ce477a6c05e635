/* stats: see stats.h. The followed tasks are a hash table by task id. */
#include "stats.h"
#include "log.h"
#include "pbutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uthash.h>

typedef struct stask {
    char id[64];
    char service[64];
    uint32_t slot;
    char cid[ENGINE_ID_MAX];
    engine_logs_t *stream;   /* NULL: none open */
    int64_t retry_at;        /* Unix ms: not reopened before */
    engine_stats_t last;
    int have;
    int64_t at_ms;
    unsigned gen;
    stats_t *s;
    UT_hash_handle hh;
} stask_t;

struct stats {
    engine_t *engine;
    int64_t (*now_ms)(void);
    stask_t *tasks;
    size_t n_streams;
    unsigned gen;
    int warned_full;
};

static int64_t stats_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

stats_t *stats_create(engine_t *engine, int64_t (*now_ms)(void))
{
    stats_t *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->engine = engine;
    s->now_ms = now_ms ? now_ms : stats_wall_ms;
    return s;
}

static void stats_stop(stask_t *t)
{
    if (!t->stream)
        return;
    t->s->engine->ops->stats_close(t->s->engine, t->stream);
    t->stream = NULL;
    t->s->n_streams--;
}

static void stats_drop(stats_t *s, stask_t *t)
{
    stats_stop(t);
    HASH_DEL(s->tasks, t);
    free(t);
}

void stats_free(stats_t *s)
{
    stask_t *t, *tmp;

    if (!s)
        return;
    HASH_ITER(hh, s->tasks, t, tmp)
        stats_drop(s, t);
    free(s);
}

static void stats_on_sample(void *arg, const engine_stats_t *sample)
{
    stask_t *t = arg;

    t->last = *sample;
    t->have = 1;
    t->at_ms = t->s->now_ms();
}

static void stats_on_end(void *arg, int status, const char *message)
{
    stask_t *t = arg;

    t->stream = NULL; /* the engine freed it */
    t->s->n_streams--;
    t->retry_at = t->s->now_ms() + STATS_RETRY_MS;
    if (status)
        log_debug("stats of task %s: %s", t->id, message);
}

static const engine_stats_ops_t stats_ops = {
    .on_stats = stats_on_sample,
    .on_end = stats_on_end,
};

static void stats_open(stats_t *s, stask_t *t)
{
    int rc;

    if (t->stream || !s->engine->ops->stats_open || s->now_ms() < t->retry_at)
        return;
    if (s->n_streams >= STATS_MAX_STREAMS) {
        if (!s->warned_full++)
            log_warn("stats: %d containers followed already; more have no figures",
                     STATS_MAX_STREAMS);
        return;
    }
    rc = s->engine->ops->stats_open(s->engine, t->cid, &stats_ops, t, &t->stream);
    if (rc) {
        t->stream = NULL;
        t->retry_at = s->now_ms() + STATS_RETRY_MS;
        log_debug("stats of task %s: %d", t->id, rc);
        return;
    }
    s->n_streams++;
}

static void stats_seen(void *arg, const char *task_id, const char *service, uint32_t slot,
                       const char *container)
{
    stats_t *s = arg;
    stask_t *t;

    HASH_FIND_STR(s->tasks, task_id, t);
    if (t && strcmp(t->cid, container) != 0) {
        stats_drop(s, t); /* a new container: new figures */
        t = NULL;
    }
    if (!t) {
        if (strlen(task_id) >= sizeof(t->id) || !(t = calloc(1, sizeof(*t))))
            return;
        snprintf(t->id, sizeof(t->id), "%s", task_id);
        snprintf(t->cid, sizeof(t->cid), "%s", container);
        t->s = s;
        HASH_ADD_STR(s->tasks, id, t);
    }
    snprintf(t->service, sizeof(t->service), "%s", service);
    t->slot = slot;
    t->gen = s->gen;
    stats_open(s, t);
}

void stats_sync(stats_t *s, const runner_t *runner)
{
    stask_t *t, *tmp;

    s->gen++;
    runner_each_running(runner, stats_seen, s);
    HASH_ITER(hh, s->tasks, t, tmp)
        if (t->gen != s->gen)
            stats_drop(s, t);
}

void stats_report_free(TaskStats **arr, size_t n)
{
    for (size_t i = 0; i < n; i++)
        pb_free(arr[i]);
    free(arr);
}

int stats_report(stats_t *s, TaskStats ***out, size_t *n)
{
    size_t count = 0, i = 0;
    TaskStats **arr;
    stask_t *t, *tmp;

    *out = NULL;
    *n = 0;
    HASH_ITER(hh, s->tasks, t, tmp)
        count += t->have;
    if (!count)
        return 0;
    if (!(arr = calloc(count, sizeof(*arr))))
        return -ENOMEM;
    HASH_ITER(hh, s->tasks, t, tmp) {
        TaskStats *ts;
        if (!t->have)
            continue;
        if (!(ts = PB_NEW(TaskStats)) || pb_set_str(&ts->task_id, t->id)) {
            pb_free(ts);
            stats_report_free(arr, i);
            return -ENOMEM;
        }
        ts->cpu_percent = t->last.cpu_percent;
        ts->cpu_nanos = t->last.cpu_total_ns;
        ts->memory_bytes = t->last.memory_usage;
        ts->memory_limit = t->last.memory_limit;
        ts->net_rx_bytes = t->last.net_rx;
        ts->net_tx_bytes = t->last.net_tx;
        ts->time_ms = t->at_ms;
        arr[i++] = ts;
    }
    *out = arr;
    *n = i;
    return 0;
}

void stats_each(stats_t *s, void (*fn)(void *arg, const stats_task_t *t), void *arg)
{
    stask_t *t, *tmp;

    HASH_ITER(hh, s->tasks, t, tmp) {
        stats_task_t v = { t->id, t->service, t->slot, t->have ? &t->last : NULL, t->at_ms };
        fn(arg, &v);
    }
}

size_t stats_streams(const stats_t *s)
{
    return s->n_streams;
}
