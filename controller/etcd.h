/* etcd: a client of an etcd cluster's v3 JSON gateway, on the libuv loop.
 *
 * Every call is one HTTP POST through httpc (libcurl multi on the loop):
 * nothing blocks, no thread is made. A call goes to the endpoint that
 * answered last; when that one cannot be reached (refused, reset, timed
 * out, or etcd says it is unavailable: no leader, no quorum yet) the call
 * is made again on the next endpoint, with a short growing pause, until its
 * deadline. Retrying is safe for skiff's calls: reads, lease calls, and
 * txns of puts and deletes of whole values of which the caller has one in
 * flight at a time (a txn that did apply, made again, changes nothing, or
 * fails its compare).
 *
 * A watch streams the events of a key range as they happen. When its
 * stream breaks it is made again, on the next endpoint, from the revision
 * after the last one it delivered, so that no event is lost or repeated; it
 * ends only when the revisions it needs were compacted away (on_end), or
 * when cancelled.
 *
 * Callbacks run on the loop. A call that returns NULL (out of memory, or
 * the client closing) never calls back; etcd_cancel and etcd_watch_cancel
 * stop every later callback of what they cancel.
 */
#ifndef SKIFF_ETCD_H
#define SKIFF_ETCD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "etcd_json.h"

typedef struct etcd etcd_t;
typedef struct etcd_req etcd_req_t;
typedef struct etcd_watch etcd_watch_t;

#define ETCD_MAX_ENDPOINTS 16

typedef struct etcd_config {
    const char *endpoints[ETCD_MAX_ENDPOINTS];  /* "HOST:PORT" */
    size_t n_endpoints;
    /* TLS on etcd's client port: https when cacert is set; cert and key
     * for client certificate authentication. NULL: plain http. */
    const char *cacert, *cert, *key;
    int64_t attempt_timeout_ms;  /* one attempt of one call; 0: 2000 */
    size_t max_answer;           /* bytes of one answer or watch line; 0: 64 MiB */
} etcd_config_t;

/* What a call brought back; the client owns it, valid during the callback. */
typedef struct etcd_answer {
    int64_t revision;        /* the store's revision the answer is of */
    etcd_range_res_t range;  /* etcd_range */
    etcd_txn_res_t txn;      /* etcd_txn */
    int64_t lease_id, ttl;   /* lease calls (ttl 0 after keepalive: the lease is gone) */
    int grpc_code;           /* with rc != 0: etcd's own code, 0 when it did not answer */
} etcd_answer_t;

/* rc 0: answer is filled; otherwise a negative code (SKIFF_EUNAVAILABLE: no
 * endpoint answered before the deadline; SKIFF_ESTORE: etcd refused, with
 * answer->grpc_code) and one line in err. */
typedef void (*etcd_cb)(void *arg, int rc, const char *err, etcd_answer_t *answer);

/* Parses "HOST:PORT[,HOST:PORT...]" into cfg's endpoints (copies are
 * written into buf, len bytes). Returns 0, or SKIFF_EINVAL with why in err. */
int etcd_parse_endpoints(const char *list, etcd_config_t *cfg, char *buf, size_t len,
                         char *err, size_t errlen);

/* A client on loop; cfg is copied. NULL when out of memory. */
etcd_t *etcd_create(uv_loop_t *loop, const etcd_config_t *cfg);
/* Cancels everything and frees the client; done(arg) from the loop after. */
void etcd_close(etcd_t *e, void (*done)(void *arg), void *arg);

/* The endpoint calls go to now. */
const char *etcd_endpoint(const etcd_t *e);

/* The calls. deadline_ms: how long, retries included, before the call
 * fails with SKIFF_EUNAVAILABLE. */
etcd_req_t *etcd_range(etcd_t *e, const etcd_op_t *range, int64_t deadline_ms, etcd_cb cb,
                       void *arg);
etcd_req_t *etcd_txn(etcd_t *e, const etcd_txn_t *txn, int64_t deadline_ms, etcd_cb cb,
                     void *arg);
etcd_req_t *etcd_lease_grant(etcd_t *e, int64_t ttl_s, int64_t deadline_ms, etcd_cb cb,
                             void *arg);
etcd_req_t *etcd_lease_keepalive(etcd_t *e, int64_t id, int64_t deadline_ms, etcd_cb cb,
                                 void *arg);
etcd_req_t *etcd_lease_revoke(etcd_t *e, int64_t id, int64_t deadline_ms, etcd_cb cb,
                              void *arg);
void etcd_cancel(etcd_t *e, etcd_req_t *r);

typedef struct etcd_watch_ops {
    /* Events of one or more revisions, in order (res->events may be empty,
     * as in the first answer, created). */
    void (*on_events)(void *arg, const etcd_watch_res_t *res);
    /* The watch ended: compact_revision > 0 when the revisions it needed are
     * gone (read the range again, then watch from after it). */
    void (*on_end)(void *arg, int rc, const char *err, int64_t compact_revision);
} etcd_watch_ops_t;

/* Watches [key, range_end) from start_revision. NULL out of memory. */
etcd_watch_t *etcd_watch(etcd_t *e, const char *key, const char *range_end,
                         int64_t start_revision, const etcd_watch_ops_t *ops, void *arg);
/* The revision after which the watch would start again. */
int64_t etcd_watch_revision(const etcd_watch_t *w);
void etcd_watch_cancel(etcd_t *e, etcd_watch_t *w);

#endif
