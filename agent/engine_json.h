/* engine_json: the Docker Engine API's JSON, and its streams, without I/O.
 *
 * Builds the request bodies the agent sends (container create, list and
 * events filters) from skiff's messages, and reads the engine's answers
 * (inspect, list, events, info, networks, error bodies, pull progress) into
 * engine.h's structs. Also the two stream formats: newline-separated JSON
 * (events, pull progress) and the multiplexed log stream (an 8-byte header
 * per frame). Everything here is pure and bounded, so the unit tests feed it
 * recorded answers, and anything the engine sends is at worst an error.
 */
#ifndef SKIFF_ENGINE_JSON_H
#define SKIFF_ENGINE_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "engine.h"

/* The container of a task: "<service>.<slot>.<task id>". Returns 0, or
 * SKIFF_EINVAL when it does not fit in len or is not a valid container
 * name. */
int engine_container_name(const Assignment *a, char *out, size_t len);

/* The body of POST /containers/create. A malloc'd string, or NULL when out
 * of memory. Never privileged, never the host's network or PID namespace.
 * Secrets and configs are req->files, read-only bind mounts: only their
 * host paths are in the body, never a value. */
char *engine_json_create_body(const engine_create_t *req);

/* The "filters" query value (JSON, not yet URL-encoded): every label of
 * labels ("KEY=VALUE"), and, when events is not NULL, type container and
 * those events. A malloc'd string or NULL. */
char *engine_json_filters(const char *const *labels, size_t n_labels,
                          const char *const *events, size_t n_events);

/* Parsers. Each returns 0, or SKIFF_EINVAL when the text is not what the
 * engine sends (out is then undefined), or -ENOMEM. */
int engine_json_parse_inspect(const char *json, size_t len, engine_container_t *out);
/* *out: a malloc'd array of *n containers (free()), NULL when n is 0. */
int engine_json_parse_list(const char *json, size_t len, engine_container_t **out, size_t *n);
int engine_json_parse_event(const char *json, size_t len, engine_event_t *out);
/* {"Id": "...", "Warnings": [...]}: the new container's id. */
int engine_json_parse_created(const char *json, size_t len, char *id, size_t idlen);
int engine_json_parse_info(const char *json, size_t len, engine_info_t *out);
/* GET /networks/bridge: IPAM.Config[].Gateway into gw, or "" when the
 * engine does not say (then bridge_if gets the bridge's interface name,
 * com.docker.network.bridge.name, and subnet the first subnet, for the
 * caller's fallbacks). */
int engine_json_parse_network(const char *json, size_t len, char *gw, size_t gwlen,
                              char *bridge_if, size_t iflen, char *subnet, size_t subnetlen);
/* An error body {"message": "..."}: the message, on one line. When the
 * body is not that, msg gets the body's first line (or "HTTP <status>"
 * when empty). Never fails. */
void engine_json_error_message(const char *body, size_t len, int http_status, char *msg,
                               size_t msglen);
/* One line of pull progress. Returns 1 and fills err when the line reports
 * an error ("error" or "errorDetail.message"), 0 when it is progress,
 * SKIFF_EINVAL when it is not JSON. */
int engine_json_progress_error(const char *json, size_t len, char *err, size_t errlen);

/* "repo/name:tag", "host:5000/name", "name@sha256:..." into the name and
 * the tag or digest (default "latest") for POST /images/create. Returns 0
 * or SKIFF_EINVAL. */
int engine_image_ref_split(const char *ref, char *name, size_t namelen, char *tag,
                           size_t taglen);

/* "2026-11-27T22:08:06.15289277Z" to Unix ms; Docker's zero time
 * ("0001-01-01T00:00:00Z") and anything unreadable are 0. */
int64_t engine_time_ms(const char *s);

/* ---------------------------------------------------------------- streams */

/* Splits a byte stream into lines ('\n', a trailing '\r' dropped). A line
 * longer than max is dropped whole (and counted), so memory stays bounded. */
/* One object of a stats stream. Returns 0; SKIFF_EINVAL when it is not
 * one; 1 when it is the first of its stream (no earlier sample, so no CPU
 * percentage yet: cpu_percent is 0). */
int engine_json_parse_stats(const char *json, size_t len, engine_stats_t *out);

typedef struct engine_lines {
    buf_t buf;
    size_t max;
    int skipping;         /* inside a line that was too long */
    uint64_t dropped;     /* lines dropped for their length */
} engine_lines_t;

typedef void (*engine_line_cb)(void *arg, const char *line, size_t len);

void engine_lines_init(engine_lines_t *l, size_t max);
void engine_lines_free(engine_lines_t *l);
/* Calls on_line for every whole line in data (and what came before).
 * Returns 0 or -ENOMEM. on_line may not free l. */
int engine_lines_feed(engine_lines_t *l, const char *data, size_t len, engine_line_cb on_line,
                      void *arg);

/* The multiplexed log stream of a container without a TTY: frames of an
 * 8-byte header (stream 1 stdout, 2 stderr; 3 bytes zero; 4-byte big-endian
 * length) and that many bytes. */
typedef struct engine_demux {
    uint8_t header[8];
    size_t have;       /* header bytes so far */
    uint32_t left;     /* payload bytes still to come in this frame */
    int stream;
} engine_demux_t;

typedef void (*engine_demux_cb)(void *arg, int is_stderr, const char *data, size_t len);

void engine_demux_init(engine_demux_t *d);
/* Calls on_data with the payload bytes in data, in pieces. Returns 0, or
 * SKIFF_EINVAL when a header is not a log frame's (the stream is lost). */
int engine_demux_feed(engine_demux_t *d, const char *data, size_t len, engine_demux_cb on_data,
                      void *arg);

#endif
