/* logstream: the agent's side of `skiff service logs`.
 *
 * For LogsOpen{stream, tasks, follow, tail} from the controller, it streams
 * each task's container log from the engine and sends it back as LogsData
 * frames of whole lines (stdout and stderr apart), then LogsClose{stream}
 * once every task's log has ended. With follow it never ends by itself: a
 * task's log goes on across restarts of its container (the engine ends a
 * followed log when the container stops; it is reopened from that moment
 * when the task runs again), until the controller sends LogsClose or the
 * connection drops. Memory stays bounded: a line
 * longer than 16 KiB is cut, and when the controller connection's queue is
 * full, data is dropped and counted, and the next frame that goes through
 * says how much was lost, rather than the queue growing.
 */
#ifndef SKIFF_LOGSTREAM_H
#define SKIFF_LOGSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "engine.h"
#include "skiff_pb.h"

#define LOGSTREAM_LINE_MAX ((size_t)16 << 10)
#define LOGSTREAM_MAX_STREAMS 64
#define LOGSTREAM_MAX_TASKS 1024

typedef struct logstreams logstreams_t;

/* How frames leave: conn_send's contract (0, SKIFF_ELIMIT when the queue
 * is full, SKIFF_ECLOSED). */
typedef int (*logstream_send_fn)(void *arg, const Envelope *env);
/* Which container runs a task, or NULL. */
typedef const char *(*logstream_container_fn)(void *arg, const char *task_id);

logstreams_t *logstreams_create(uv_loop_t *loop, engine_t *engine,
                                logstream_container_fn container, logstream_send_fn send,
                                void *arg);

/* Opens (or reopens) req->stream. Returns 0 or a negative code; an open
 * that cannot be served is answered with LogsClose and a message. */
int logstreams_open(logstreams_t *ls, const LogsOpen *req);

/* The controller ended stream: stop it, send nothing more. */
void logstreams_close(logstreams_t *ls, uint64_t stream);

/* The connection dropped: stop every stream. */
void logstreams_close_all(logstreams_t *ls);

size_t logstreams_count(const logstreams_t *ls);

/* Stops every stream and frees ls. */
void logstreams_free(logstreams_t *ls);

#endif
