/* stats: the engine's stats stream of every running task's container, each
 * kept as its last sample, for the agent's reports (TaskStats, which the
 * controller's `service stats` and autoscaler read) and its /metrics.
 *
 * stats_sync() is given the running tasks (at every heartbeat) and opens a
 * stream for each new one, closes those of tasks gone; a stream that ends
 * while its task still runs is opened again after STATS_RETRY_MS. At most
 * STATS_MAX_STREAMS streams are open: past that, tasks have no figures.
 * One sample a second per container comes through the agent's loop; no
 * call waits for one.
 */
#ifndef SKIFF_STATS_H
#define SKIFF_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "runner.h"
#include "skiff_pb.h"

#define STATS_MAX_STREAMS 1024
#define STATS_RETRY_MS 5000

typedef struct stats stats_t;

/* Figures of one task, as stats_each gives them. */
typedef struct stats_task {
    const char *task_id;
    const char *service;
    uint32_t slot;
    const engine_stats_t *last;   /* NULL: no sample yet */
    int64_t at_ms;                /* Unix ms of the last sample */
} stats_task_t;

/* A stats keeper on the engine. now_ms: a Unix ms clock (NULL: the
 * system's). NULL when out of memory. */
stats_t *stats_create(engine_t *engine, int64_t (*now_ms)(void));
/* Closes every stream and frees s. */
void stats_free(stats_t *s);

/* Follows the containers of the runner's running tasks. */
void stats_sync(stats_t *s, const runner_t *runner);

/* TaskStats of every task with a sample, for a report: *out is a malloc'd
 * array of wholly malloc'd messages (free with stats_report_free). Returns
 * 0 or -ENOMEM (then nothing). */
int stats_report(stats_t *s, TaskStats ***out, size_t *n);
void stats_report_free(TaskStats **arr, size_t n);

/* Calls fn for every followed task. */
void stats_each(stats_t *s, void (*fn)(void *arg, const stats_task_t *t), void *arg);

/* Streams open now. */
size_t stats_streams(const stats_t *s);

#endif
