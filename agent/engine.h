/* engine: the container engine, behind a table of functions.
 *
 * The runner drives containers only through engine_ops_t. docker.c is the
 * real implementation (the Docker Engine API on its unix socket); the unit
 * tests put a fake with recorded answers in its place. Every call is
 * asynchronous: it returns 0 and calls its callback later, from the loop,
 * exactly once; or it returns a negative code and never calls it (libuv's
 * rule). After close, no callback is called at all.
 *
 * What crosses this interface is plain C: containers and events with the
 * skiff labels already picked out, ports as numbers, errors as a code and
 * the engine's own one-line message. How those are read from and written
 * to JSON is engine_json.h's business.
 */
#ifndef SKIFF_ENGINE_H
#define SKIFF_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "skiff_pb.h"

#define ENGINE_ID_MAX 65      /* a container id (64 hex digits) and its NUL */
#define ENGINE_LABEL_MAX 128  /* a skiff label value we keep, NUL included */
#define ENGINE_MAX_PORTS 64
#define ENGINE_MESSAGE_MAX 512

/* The skiff labels (engine_json.h names them). */
#define ENGINE_LABEL_CLUSTER "skiff.cluster"
#define ENGINE_LABEL_NODE "skiff.node"
#define ENGINE_LABEL_SERVICE "skiff.service"
#define ENGINE_LABEL_TASK "skiff.task"
#define ENGINE_LABEL_SLOT "skiff.slot"
#define ENGINE_LABEL_VERSION "skiff.version"

typedef enum engine_state {
    ENGINE_STATE_UNKNOWN,
    ENGINE_STATE_CREATED,
    ENGINE_STATE_RUNNING,
    ENGINE_STATE_PAUSED,
    ENGINE_STATE_RESTARTING,
    ENGINE_STATE_REMOVING,
    ENGINE_STATE_EXITED,
    ENGINE_STATE_DEAD,
} engine_state_t;

typedef enum engine_health {
    ENGINE_HEALTH_NONE,  /* the container has no health check */
    ENGINE_HEALTH_STARTING,
    ENGINE_HEALTH_HEALTHY,
    ENGINE_HEALTH_UNHEALTHY,
} engine_health_t;

/* The skiff labels of a container. ok is 1 when cluster, node and task are
 * all present and none was too long to keep: only then is the container
 * skiff's at all. */
typedef struct engine_labels {
    char cluster[ENGINE_LABEL_MAX];
    char node[ENGINE_LABEL_MAX];
    char service[ENGINE_LABEL_MAX];
    char task[ENGINE_LABEL_MAX];
    uint32_t slot;
    uint64_t version;
    int ok;
} engine_labels_t;

typedef struct engine_port {
    uint32_t target;     /* the container's port (tcp) */
    uint32_t host_port;  /* where the engine published it; 0: not published */
} engine_port_t;

typedef struct engine_container {
    char id[ENGINE_ID_MAX];
    char name[256];  /* without Docker's leading '/' */
    engine_labels_t labels;
    engine_state_t state;
    int exit_code;
    int oom_killed;
    engine_health_t health;
    int64_t started_ms;   /* Unix ms; 0 when never */
    int64_t finished_ms;
    char error[256];      /* State.Error */
    size_t n_ports;
    engine_port_t ports[ENGINE_MAX_PORTS];
} engine_container_t;

typedef struct engine_info {
    int64_t ncpu;
    int64_t mem_total;       /* bytes */
    char server_version[64];
    char os[128];
} engine_info_t;

typedef enum engine_event_kind {
    ENGINE_EVENT_OTHER,
    ENGINE_EVENT_START,
    ENGINE_EVENT_DIE,
    ENGINE_EVENT_OOM,
    ENGINE_EVENT_HEALTH,
    ENGINE_EVENT_DESTROY,
} engine_event_kind_t;

typedef struct engine_event {
    engine_event_kind_t kind;
    char id[ENGINE_ID_MAX];
    engine_labels_t labels;
    int exit_code;           /* die */
    engine_health_t health;  /* health_status */
    int64_t time_ns;
} engine_event_t;

/* A file of the host bind-mounted read-only into the container: a secret's
 * or config's (secrets.h). Only the host path crosses here, never a value. */
typedef struct engine_file {
    char *source;  /* on the host */
    char *target;  /* in the container */
} engine_file_t;

/* What a container is created from. */
typedef struct engine_create {
    const Assignment *assignment;  /* the task, its spec and hosts */
    const char *name;              /* <service>.<slot>.<task id> */
    const char *cluster;
    const char *node;
    const char *advertise;         /* host ip of the port bindings */
    const char *gateway;           /* where Assignment.hosts point; "" none */
    const engine_file_t *files;    /* read-only bind mounts of secrets and configs */
    size_t n_files;
} engine_create_t;

/* The outcome of a call. status is 0, or:
 *   SKIFF_ENOTFOUND    no such container or image
 *   SKIFF_EEXISTS      the name is taken (create)
 *   SKIFF_EENGINE      the engine refused; message is its own words
 *   SKIFF_EUNAVAILABLE the engine could not be reached or did not answer
 *   SKIFF_ETIMEDOUT, -ENOMEM, -ENOBUFS (an answer too large)
 * Pointers are valid during the callback only. */
typedef struct engine_result {
    int status;
    int http_status;
    const char *message;  /* one line; "" on success */
    const char *id;       /* create: the new container's id */
    const char *text;     /* ping: the API version used; gateway: the address */
    const engine_info_t *info;
    const engine_container_t *container;   /* inspect */
    const engine_container_t *containers;  /* list */
    size_t n_containers;
} engine_result_t;

typedef void (*engine_cb)(void *arg, const engine_result_t *res);

typedef struct engine_events_ops {
    void (*on_event)(void *arg, const engine_event_t *ev);
    /* up 1: the stream is (again) established; events may have been
     * missed before, so the caller lists and reconciles. up 0: it dropped
     * (why says how); the engine retries with backoff by itself. */
    void (*on_state)(void *arg, int up, const char *why);
} engine_events_ops_t;

typedef struct engine_logs engine_logs_t;

typedef struct engine_logs_ops {
    /* Bytes of one stream, as they come (not split into lines). */
    void (*on_data)(void *arg, int is_stderr, const char *data, size_t len);
    /* The log ended (status 0) or failed. Not called after logs_close. */
    void (*on_end)(void *arg, int status, const char *message);
} engine_logs_ops_t;

/* One sample of a container's stats stream (GET /containers/{id}/stats). */
typedef struct engine_stats {
    double cpu_percent;        /* of one CPU, since the sample before (docker stats' way) */
    uint64_t cpu_total_ns;     /* CPU time used by the container */
    uint64_t memory_usage;     /* bytes, the inactive page cache left out */
    uint64_t memory_limit;
    uint64_t net_rx, net_tx;   /* bytes, over every interface */
} engine_stats_t;

typedef struct engine_stats_ops {
    void (*on_stats)(void *arg, const engine_stats_t *s);
    /* The stream ended (the container stopped) or failed. Not called after
     * stats_close. */
    void (*on_end)(void *arg, int status, const char *message);
} engine_stats_ops_t;

typedef struct engine engine_t;

typedef struct engine_ops {
    /* Negotiates the API version (res.text). */
    int (*ping)(engine_t *e, engine_cb cb, void *arg);
    /* res.info: CPUs, memory, server version. */
    int (*info)(engine_t *e, engine_cb cb, void *arg);
    /* res.text: the bridge network's gateway, the host's address on it. */
    int (*gateway)(engine_t *e, engine_cb cb, void *arg);
    /* status 0: the image is here; SKIFF_ENOTFOUND: it is not. */
    int (*image_inspect)(engine_t *e, const char *image, engine_cb cb, void *arg);
    /* Pulls image, reading the progress to its end; an error in the
     * progress is SKIFF_EENGINE with the engine's message. */
    int (*image_pull)(engine_t *e, const char *image, engine_cb cb, void *arg);
    /* res.id: the new container. */
    int (*create)(engine_t *e, const engine_create_t *req, engine_cb cb, void *arg);
    /* Starting a running container, or stopping a stopped one, is success. */
    int (*start)(engine_t *e, const char *id, engine_cb cb, void *arg);
    int (*stop)(engine_t *e, const char *id, int64_t grace_ms, engine_cb cb, void *arg);
    int (*kill)(engine_t *e, const char *id, const char *signal, engine_cb cb, void *arg);
    /* Forced: a running container is killed first. */
    int (*remove)(engine_t *e, const char *id, engine_cb cb, void *arg);
    /* res.container. id may also be a name. */
    int (*inspect)(engine_t *e, const char *id, engine_cb cb, void *arg);
    /* Every container (running or not) carrying all these "KEY=VALUE"
     * labels: res.containers (state, labels, name; no exit code, health or
     * ports: inspect for those). */
    int (*list)(engine_t *e, const char *const *labels, size_t n_labels, engine_cb cb,
                void *arg);
    /* Follows container events (start, die, oom, health_status, destroy)
     * of containers carrying all these labels until events_stop or close,
     * re-establishing the stream with backoff whenever it drops. */
    int (*events_start)(engine_t *e, const char *const *labels, size_t n_labels,
                        const engine_events_ops_t *ops, void *arg);
    void (*events_stop)(engine_t *e);
    /* Streams a container's log: its last tail lines (0: all), or what
     * came since since_ms (Unix ms; 0: from the start); with follow, on
     * until the container stops. *out identifies it for logs_close, after
     * which no callback of it is called. */
    int (*logs_open)(engine_t *e, const char *id, int follow, uint32_t tail, int64_t since_ms,
                     const engine_logs_ops_t *ops, void *arg, engine_logs_t **out);
    void (*logs_close)(engine_t *e, engine_logs_t *logs);
    /* Drops every call in progress (no callbacks), and calls done(arg)
     * from the loop once the engine is freed. */
    void (*close)(engine_t *e, void (*done)(void *arg), void *arg);
    /* Streams a running container's stats, a sample a second, until it
     * stops or stats_close (NULL in fakes without stats); *out identifies it (an engine_logs_t, as a log
     * stream is: both are streams of the engine). */
    int (*stats_open)(engine_t *e, const char *id, const engine_stats_ops_t *ops, void *arg,
                      engine_logs_t **out);
    void (*stats_close)(engine_t *e, engine_logs_t *stream);
} engine_ops_t;

/* Implementations start with this. */
struct engine {
    const engine_ops_t *ops;
};

/* The text of an engine_state ("running"), for logs and messages. */
const char *engine_state_name(engine_state_t s);

#endif
