/* docker: the container engine (engine.h) over the Docker Engine API.
 *
 * HTTP/1.1 on the engine's unix socket, through httpc (libcurl's multi
 * interface on the agent's loop): nothing here blocks. The API version is
 * negotiated by ping (the engine's, at most 1.41, the version skiff is
 * tested with). Answers are read with engine_json; bodies are collected up
 * to a bound, and streams (events, logs, stats, pull progress) are parsed as they
 * arrive. The event stream is re-established with backoff (100 ms doubling
 * to 2 s) whenever it drops, as when the engine restarts.
 */
#ifndef SKIFF_DOCKER_H
#define SKIFF_DOCKER_H

#include <stddef.h>
#include <uv.h>

#include "engine.h"
#include "httpc.h"

/* The engine on socket_path, with its transfers on http (which must
 * outlive it). NULL when out of memory or when the path is too long. */
engine_t *docker_create(uv_loop_t *loop, httpc_t *http, const char *socket_path);

/* Calls fn for every kind of request made (op: "create", "start", ...) and
 * HTTP status answered (0: no answer), with how many: the figures of
 * skiff_engine_requests_total. */
void docker_requests_each(engine_t *e, void (*fn)(void *arg, const char *op, int code,
                                                  uint64_t n), void *arg);

/* "unix:///var/run/docker.sock" to its path. Returns 0, or SKIFF_EINVAL
 * with a one-line reason in err (only unix:// is supported). */
int docker_host_parse(const char *host, char *path, size_t len, char *err, size_t errlen);

#endif
