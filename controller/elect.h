/* elect: the decisions of the etcd store (store_etcd.c) that need no I/O:
 * the leader key's value and who a campaign made leader, whether a lease
 * still holds, whether a prefix is this cluster's, and how a batch splits
 * into txns at etcd's limits. Pure, and unit-tested as tables of cases.
 *
 * The election: every controller holds a lease (TTL --leader-lease) that
 * it keeps alive. A campaign is one txn: if <prefix>leader does not exist,
 * create it, attached to the lease, with this controller's address and
 * instance id; else read it. The one that created it leads until the key
 * goes (its lease ran out, or it resigned). Its create revision names its
 * term: every write of the leader compares it, so that a write of an old
 * leader, however late it arrives, fails.
 */
#ifndef SKIFF_ELECT_H
#define SKIFF_ELECT_H

#include <stddef.h>
#include <stdint.h>

#include "etcd_json.h"

#define ELECT_ID_LEN 32  /* hex characters of an instance id */

/* The leader key's value (and a controller's registration): JSON. */
typedef struct elect_who {
    char address[128];
    char instance[ELECT_ID_LEN + 1];
} elect_who_t;

/* Writes who as JSON into out (len bytes). Returns its length, or 0 when it
 * does not fit. */
size_t elect_who_encode(const elect_who_t *who, const char *version, int64_t started_ms,
                        char *out, size_t len);
/* Reads a value written by elect_who_encode. Returns 0 or -1. */
int elect_who_decode(const uint8_t *value, size_t len, elect_who_t *who);

enum elect_outcome {
    ELECT_WON,      /* this controller leads from *term on */
    ELECT_FOLLOW,   /* another leads: its address in *leader */
    ELECT_AGAIN,    /* the key went between the compare and the read: again */
};

/* What a campaign txn's answer means. instance and lease are this
 * controller's: a key they made is this controller's (the answer to an
 * attempt that applied but whose answer was lost, made again). */
enum elect_outcome elect_campaign_outcome(const etcd_txn_res_t *res, const char *instance,
                                          int64_t lease, int64_t *term, elect_who_t *leader);

/* 1 while a lease of ttl_ms whose last keepalive that etcd answered was
 * sent at ok_ms certainly holds at now_ms (all on one monotonic clock). */
int elect_lease_holds(uint64_t now_ms, uint64_t ok_ms, int64_t ttl_ms);

/* The TTL to ask for, in seconds: the lease rounded up, at least 2 (etcd
 * raises less anyway). */
int64_t elect_ttl_s(int64_t lease_ms);

/* ---- identity */

typedef struct elect_found {
    int has_cluster;          /* meta/cluster_id exists */
    char cluster_id[64];
    int64_t store_version;    /* meta/store_version, 0 when absent */
    int migrating;            /* meta/migrating exists */
    int has_tokens;           /* both tokens/join and tokens/admin */
    int64_t keys;             /* keys under the prefix */
} elect_found_t;

enum elect_verdict {
    ELECT_OURS,       /* this cluster's: go on */
    ELECT_WAIT,       /* a migration into it is under way: try again later */
    ELECT_REFUSE,     /* another cluster's, or not skiff's: stop, with why */
};

#define ELECT_STORE_VERSION 1

/* Judges what an identity txn found under the prefix (it was not empty).
 * data_cluster: the data dir's cluster id, "" when none. */
enum elect_verdict elect_judge(const elect_found_t *f, const char *data_cluster,
                               const char *prefix, char *why, size_t len);

/* ---- splitting a batch */

#define ELECT_TXN_OPS 128                   /* etcd's --max-txn-ops default */
#define ELECT_TXN_BYTES ((size_t)1280 << 10) /* of JSON: under 1.5 MiB of protobuf */

/* Splits n operations of these JSON sizes into parts of at most max_ops
 * operations and max_bytes each (one operation alone may pass max_bytes:
 * it is a part by itself). ends[k] is the index after part k. Returns the
 * number of parts. ends has room for n entries. */
size_t elect_split(const size_t *sizes, size_t n, size_t max_ops, size_t max_bytes,
                   size_t *ends);

#endif
