/* etcd_json: the request bodies and answers of etcd's v3 JSON gateway
 * (grpc-gateway over etcdserverpb: /v3/kv/range, /v3/kv/txn,
 * /v3/lease/grant, /v3/lease/keepalive, /v3/lease/revoke, /v3/watch).
 *
 * Pure: no I/O, unit-tested on answers recorded from etcd 3.4. The gateway
 * writes bytes fields (keys, values) in base64 and 64-bit integers as
 * strings; both are undone here, so that callers see C strings for keys,
 * byte arrays for values and int64_t for revisions. Keys are text here:
 * skiff's keys never hold a NUL.
 *
 * Ownership: builders return a malloc'd NUL-terminated body, or NULL when
 * out of memory. Parsers fill a caller's struct, which owns what they
 * allocated until its *_free function.
 */
#ifndef SKIFF_ETCD_JSON_H
#define SKIFF_ETCD_JSON_H

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- base64 */

/* Characters of the base64 (RFC 4648, padded) of n bytes. */
size_t etcd_b64_len(size_t n);
/* Writes the base64 of in[0..n) to out (etcd_b64_len(n) + 1 bytes, NUL
 * included). */
void etcd_b64_encode(const uint8_t *in, size_t n, char *out);
/* Decodes in[0..n) into out (room for n / 4 * 3 bytes) and sets *outlen.
 * Returns 0, or -1 when in is not padded base64. */
int etcd_b64_decode(const char *in, size_t n, uint8_t *out, size_t *outlen);

/* The end of the range of keys that start with prefix (prefix with its last
 * byte + 1; "\0" when every byte is 0xff), malloc'd; NULL out of memory. */
char *etcd_prefix_end(const char *prefix);

/* -------------------------------------------------------------- requests */

enum etcd_op_kind { ETCD_OP_RANGE, ETCD_OP_PUT, ETCD_OP_DELETE };

/* One operation: a range (a read), a put, or a delete of a key or a range. */
typedef struct etcd_op {
    enum etcd_op_kind kind;
    const char *key;
    const char *range_end;  /* RANGE, DELETE: NULL for the key alone */
    const uint8_t *value;   /* PUT */
    size_t len;
    int64_t lease;          /* PUT: 0 for none */
    int64_t limit;          /* RANGE: 0 for no limit */
    int64_t revision;       /* RANGE: 0 for the newest */
    int keys_only;          /* RANGE */
    int count_only;         /* RANGE */
    int descend;            /* RANGE: by key, descending */
} etcd_op_t;

enum etcd_cmp_target { ETCD_CMP_VERSION, ETCD_CMP_CREATE, ETCD_CMP_MOD, ETCD_CMP_VALUE,
                       ETCD_CMP_LEASE };
enum etcd_cmp_result { ETCD_EQUAL, ETCD_GREATER, ETCD_LESS, ETCD_NOT_EQUAL };

/* A compare of a txn: target(key) result number (or value). */
typedef struct etcd_cmp {
    const char *key;
    const char *range_end;  /* NULL: the key alone; else every key of the range */
    enum etcd_cmp_target target;
    enum etcd_cmp_result result;
    int64_t number;         /* VERSION, CREATE, MOD, LEASE */
    const uint8_t *value;   /* VALUE */
    size_t len;
} etcd_cmp_t;

typedef struct etcd_txn {
    const etcd_cmp_t *cmp;
    size_t n_cmp;
    const etcd_op_t *success;
    size_t n_success;
    const etcd_op_t *failure;
    size_t n_failure;
} etcd_txn_t;

/* Bodies for /v3/kv/range (op->kind must be RANGE), /v3/kv/txn,
 * /v3/lease/grant, /v3/lease/keepalive and /v3/lease/revoke (by id), and
 * /v3/watch (keys in [key, range_end) from start_revision on). */
char *etcd_json_range(const etcd_op_t *op);
char *etcd_json_txn(const etcd_txn_t *txn);
char *etcd_json_lease_grant(int64_t ttl_s);
char *etcd_json_lease_id(int64_t id);
char *etcd_json_watch(const char *key, const char *range_end, int64_t start_revision);

/* The bytes a txn's body takes at most, for splitting at etcd's request
 * limit before building it: its keys and values in base64, plus a margin
 * per operation. */
size_t etcd_op_size(const etcd_op_t *op);

/* --------------------------------------------------------------- answers */

typedef struct etcd_kv {
    char *key;
    uint8_t *value;         /* NULL when empty */
    size_t len;
    int64_t create_revision, mod_revision, version, lease;
} etcd_kv_t;

typedef struct etcd_range_res {
    int64_t revision;       /* the store's revision when it was read */
    etcd_kv_t *kvs;
    size_t n;
    int more;               /* a limit left keys out */
    int64_t count;          /* keys in the range, limit or not */
} etcd_range_res_t;

typedef struct etcd_txn_res {
    int64_t revision;
    int succeeded;          /* the compares held: the success ops ran */
    etcd_range_res_t *ranges;  /* one per op that ran, in order; empty unless a range */
    size_t n_ranges;
} etcd_txn_res_t;

typedef struct etcd_event {
    int deleted;            /* else a put */
    etcd_kv_t kv;           /* a delete has its key and mod_revision only */
} etcd_event_t;

typedef struct etcd_watch_res {
    int64_t revision;
    int created;
    int canceled;
    int64_t compact_revision;  /* canceled because this revision was compacted */
    etcd_event_t *events;
    size_t n;
} etcd_watch_res_t;

/* An error answer: gRPC code (14 unavailable, 3 invalid argument, 5 not
 * found, 9 failed precondition, ...) and message. */
typedef struct etcd_status {
    int code;
    char message[256];
} etcd_status_t;

/* gRPC codes the client acts on. */
#define ETCD_GRPC_INVALID 3
#define ETCD_GRPC_DEADLINE 4
#define ETCD_GRPC_NOT_FOUND 5
#define ETCD_GRPC_FAILED_PRECONDITION 9
#define ETCD_GRPC_OUT_OF_RANGE 11
#define ETCD_GRPC_UNAVAILABLE 14

/* Each parser returns 0, or -1 with why in err (len bytes) when the body is
 * not the answer it expects. A body that is an error answer is -1 too, and
 * etcd_parse_error then reads it. */
int etcd_parse_error(const char *body, size_t n, etcd_status_t *st);
int etcd_parse_range(const char *body, size_t n, etcd_range_res_t *out, char *err, size_t len);
int etcd_parse_txn(const char *body, size_t n, etcd_txn_res_t *out, char *err, size_t len);
/* lease/grant: ID and TTL; lease/keepalive: the "result" object's ID and
 * TTL (TTL 0 or absent: the lease is gone). */
int etcd_parse_lease(const char *body, size_t n, int64_t *id, int64_t *ttl, char *err,
                     size_t len);
/* One line of the watch stream. A line that carries an error is -1 with the
 * error in st (st->code 0 when it was not an error). */
int etcd_parse_watch(const char *line, size_t n, etcd_watch_res_t *out, etcd_status_t *st,
                     char *err, size_t len);

void etcd_kv_free(etcd_kv_t *kv);
void etcd_range_res_free(etcd_range_res_t *r);
void etcd_txn_res_free(etcd_txn_res_t *t);
void etcd_watch_res_free(etcd_watch_res_t *w);

#endif
