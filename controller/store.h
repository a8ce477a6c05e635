/* store: where the controller's state lives, behind a table of functions.
 *
 * Two backends: SQLite (store_sqlite.c, the default: one controller, its
 * data dir) and etcd (store_etcd.c: several controllers share one etcd
 * cluster, one of them leads). The controller sees only this interface:
 * it builds a batch of rows on the loop thread and commits it
 * asynchronously, one batch per turn of its loop, and acts on nothing in
 * the batch before the commit is acknowledged. A shared store also elects
 * the controller that may act and tells it when to start and stop.
 *
 * The rows: each table holds rows named by a key, and each row's value is
 * a protobuf message, the wire schema being the storage schema:
 *   meta      key -> text (cluster_id, assignments_version, endpoints_version)
 *   nodes     node id -> Node
 *   services  service id -> ServiceRecord (the Service and its removed mark)
 *   specs     "<service id>/<version>" -> ServiceSpec
 *   tasks     task id -> Task
 *   events    the event's seq (20 digits) -> Event (its seq numbers it)
 *   any other name ("tokens", the CA's tables): key -> bytes, kept in the
 *             model's generic rows (model_row_*)
 * That (table, key, value) view is the same on both backends, which is how
 * `skiff-controller migrate` copies every table without knowing it
 * (store_scan, store_put_row). SQLite also keeps the columns worth
 * querying by hand; etcd keeps <prefix><table>/<key>.
 *
 * At start the SQLite backend is loaded before the loop runs
 * (store_sqlite_load); the etcd backend loads on the loop, when it is
 * elected. A batch is all or nothing on SQLite; on etcd it is one txn, or
 * several in order when it passes etcd's limits (128 operations, 1.5 MiB
 * per request), and a controller killed between two of them leaves a state
 * that its successor reconciles like any other.
 */
#ifndef SKIFF_STORE_H
#define SKIFF_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "skiff_pb.h"

struct model;

enum store_table { STORE_META, STORE_NODES, STORE_SERVICES, STORE_SPECS, STORE_TASKS,
                   STORE_EVENTS, STORE_ROWS /* a named table of generic rows */ };

/* The names of the tables before STORE_ROWS, as in etcd's keys and SQLite. */
extern const char *const store_table_names[STORE_ROWS];

typedef struct store store_t;
typedef struct store_batch store_batch_t;

/* ------------------------------------------------------------- batches */

store_batch_t *store_batch_new(void);
void store_batch_free(store_batch_t *b);
size_t store_batch_size(const store_batch_t *b);

/* Adds a row to write. Each returns 0 or -ENOMEM. */
int store_put_node(store_batch_t *b, const Node *n);
int store_put_service(store_batch_t *b, const Service *s, int removed);
int store_put_spec(store_batch_t *b, const char *service_id, uint64_t version,
                   const ServiceSpec *spec);
int store_put_task(store_batch_t *b, const Task *t);
int store_put_meta(store_batch_t *b, const char *key, const char *value);
int store_add_event(store_batch_t *b, const Event *e);
/* Deletes a row: by id, or for STORE_SPECS by (service id, version). */
int store_delete(store_batch_t *b, enum store_table table, const char *id, uint64_t version);

/* A row of any table by name, in its generic form (the value as the table
 * above says). The classic tables' values are checked (decoded): returns
 * SKIFF_EINVAL when one does not decode, or names a table that is not one
 * (a name: 1 to 32 of a-z, 0-9, '_'). */
int store_put_row(store_batch_t *b, const char *table, const char *key, const uint8_t *value,
                  size_t len);
int store_delete_row(store_batch_t *b, const char *table, const char *key);

/* A row of a batch, as the backends read it. */
enum store_op { STORE_OP_PUT, STORE_OP_DELETE, STORE_OP_EVENT };

typedef struct store_row {
    enum store_op op;
    enum store_table table;
    const char *name;       /* the table's name (store_table_names, or STORE_ROWS' own) */
    char *key;              /* for an event, its seq in 20 digits */
    uint8_t *value;         /* PUT, EVENT: the generic value */
    size_t len;
    /* For SQLite's columns: nodes (a state, b availability), services
     * (text name, a version, b update state, c removed), specs (a version,
     * key the service id), tasks (text service id, text2 node id, a slot,
     * b desired, c state), events (key kind, text object, text2 message,
     * a time), meta (text the value). */
    char *id, *text, *text2;
    int64_t a, b, c;
    uint8_t *blob;          /* the column "data" where it differs from value */
    size_t blob_len;
} store_row_t;

size_t store_batch_rows(const store_batch_t *b, const store_row_t **rows);

/* --------------------------------------------------------------- loading */

/* Loads one row in generic form into the model (for a backend that reads
 * rows, and for migrate's checks). Rows must come table by table in the
 * order of enum store_table (meta, nodes, services, specs, tasks; events
 * are not loaded), named tables anywhere. Returns 0, or SKIFF_ESTORE with
 * why in err for a row that does not decode. Tasks are best added through
 * store_load_tasks, which orders them. */
int store_load_row(struct model *m, enum store_table table, const char *name, const char *key,
                   const uint8_t *value, size_t len, char *err, size_t errlen);

/* The tasks of a load: every Task decoded first, then added oldest first
 * per slot (by created_ms), the order the model keeps. */
typedef struct store_task_loader store_task_loader_t;
store_task_loader_t *store_task_loader_new(void);
int store_task_loader_add(store_task_loader_t *l, const uint8_t *value, size_t len, char *err,
                          size_t errlen);
int store_task_loader_finish(store_task_loader_t *l, struct model *m, char *err,
                             size_t errlen);
void store_task_loader_free(store_task_loader_t *l);

/* After a load: nothing loaded needs writing back. */
void store_load_done(struct model *m);

/* ----------------------------------------------------- the backend's table */

typedef void (*store_done_fn)(void *arg, int rc, const char *err);

/* What a shared store tells the controller, on the loop. */
typedef struct store_events {
    /* The cluster's identity, from the store: known once the store answered
     * (and again whenever a token changes). */
    void (*on_identity)(void *arg, const char *cluster_id, const char *join_token,
                        const char *admin_token);
    /* This controller leads: the model holds the store's state. */
    void (*on_lead)(void *arg);
    /* Another controller leads (its address), or none that is known (""). */
    void (*on_follow)(void *arg, const char *leader);
    /* This controller may no longer act (its lease ended, a commit was
     * refused): drop the model, send nothing more. on_follow follows. */
    void (*on_lost)(void *arg, const char *why);
    /* The store can never be this controller's (another cluster's state, a
     * newer version): why, in one line; the controller exits. */
    void (*on_fatal)(void *arg, const char *why);
} store_events_t;

typedef struct store_controller {
    char address[128];
    char role[16];          /* "leader" or "follower" */
    char store[192];        /* its store and how it is: "etcd: healthy" */
} store_controller_t;

typedef void (*store_controllers_fn)(void *arg, int rc, const char *err,
                                     const store_controller_t *list, size_t n);

/* Called for every row by store_scan (events excepted). Return 0 to go on. */
typedef int (*store_scan_fn)(void *arg, const char *table, const char *key,
                             const uint8_t *value, size_t len);

typedef struct store_ops {
    const char *kind;       /* "sqlite", "etcd" */
    int shared;             /* several controllers, one elected */
    size_t max_value;       /* the largest row value it takes */
    /* Starts a shared store: identity, load, election, on the loop. The
     * events come to ev with arg; m is the model on_lead fills. */
    int (*start)(store_t *st, struct model *m, const store_events_t *ev, void *arg);
    /* Writes the batch (taken: the store frees it). cb(arg, rc, err) on the
     * loop once it is durable, or failed; rc 0 or SKIFF_ESTORE (nothing, or
     * on etcd a part, was written). */
    int (*commit)(store_t *st, store_batch_t *b, store_done_fn cb, void *arg);
    /* 1 while this controller may act. */
    int (*leading)(const store_t *st);
    /* The controllers that share the store; NULL for a store of one. */
    int (*controllers)(store_t *st, store_controllers_fn cb, void *arg);
    /* Every row, synchronously (migrate, before any loop runs). */
    int (*scan)(store_t *st, store_scan_fn fn, void *arg, char *err, size_t len);
    /* Stops on the loop: waits for a commit in flight, gives up leadership,
     * closes its handles; done(arg) after. */
    void (*stop)(store_t *st, void (*done)(void *arg), void *arg);
    /* Frees it, once its loop ran out. */
    void (*free)(store_t *st);
    /* How it reads in logs: "sqlite /var/lib/skiff/state.db". */
    const char *(*describe)(const store_t *st);
    /* Hands the newest max stored events it holds to fn, oldest first (fn
     * owns each), and sets *last_seq to the highest seq it has seen. */
    int (*load_events)(store_t *st, size_t max, void (*fn)(void *arg, Event *e), void *arg,
                       uint64_t *last_seq);
} store_ops_t;

/* Every backend's struct starts with this. */
struct store {
    const store_ops_t *ops;
    size_t events_kept;     /* the newest events kept; older ones pruned */
};

#define STORE_EVENTS_KEPT 10000

/* Events kept in the store (the newest n; 0: the default, STORE_EVENTS_KEPT). */
void store_set_events_kept(store_t *st, size_t n);
/* Returns 0 or SKIFF_ESTORE (see store_ops_t.load_events). */
int store_load_events(store_t *st, size_t max, void (*fn)(void *arg, Event *e), void *arg,
                      uint64_t *last_seq);

static inline int store_shared(const store_t *st)
{
    return st->ops->shared;
}

int store_commit(store_t *st, store_batch_t *b, store_done_fn cb, void *arg);
void store_stop(store_t *st, void (*done)(void *arg), void *arg);
void store_close(store_t *st);  /* frees; NULL is fine */

/* ------------------------------------------------------------- backends */

/* SQLite: opens (creating) the database at path and migrates its schema;
 * commits run in loop's thread pool. NULL on failure, with why in err. */
store_t *store_sqlite_open(uv_loop_t *loop, const char *path, char *err, size_t errlen);
/* Reads every row into the (empty) model. */
int store_sqlite_load(store_t *st, struct model *m, char *err, size_t errlen);
/* Reads one meta value into out. Returns 1 when found, 0 when not. */
int store_sqlite_get_meta(store_t *st, const char *key, char *out, size_t len);
/* Writes a batch at once, on this thread (tests, migrate). */
int store_sqlite_commit_now(store_t *st, store_batch_t *b, char *err, size_t errlen);

typedef struct store_etcd_config {
    const char *endpoints;   /* "HOST:PORT[,HOST:PORT...]" */
    const char *prefix;      /* "/skiff/<cluster>/": ends with '/' */
    const char *cacert, *cert, *key;  /* TLS to etcd's client port, or NULL */
    int64_t lease_ms;        /* the leader lease */
    const char *address;     /* this controller's address for agents and clients */
    /* The identity the data dir already has, for a store that has none yet
     * (and checked against one that has): "" each when none. */
    const char *cluster_id, *join_token, *admin_token;
} store_etcd_config_t;

/* etcd: checks the configuration (not the cluster: that is start's, on the
 * loop). NULL with why in err. */
store_t *store_etcd_open(uv_loop_t *loop, const store_etcd_config_t *cfg, char *err,
                         size_t errlen);

#endif
