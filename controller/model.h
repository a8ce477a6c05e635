/* model: the controller's state in memory: nodes, services, tasks, and
 * their indexes.
 *
 * Each object wraps its protobuf message (the fields users see and the store
 * keeps) with the links the controller needs. The store is the model's
 * journal, not its home: every change marks the object dirty, and the
 * controller commits the dirty objects in one transaction before anything
 * that depends on them leaves the process (ctl.c). The model does no
 * I/O.
 *
 * Ownership: the model owns every object and every message in it.
 */
#ifndef SKIFF_MODEL_H
#define SKIFF_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <uthash.h>

#include "skiff_pb.h"

#define MODEL_ID_LEN 16 /* hex characters of an id */

typedef struct task task_t;
typedef struct service service_t;
typedef struct node node_t;
struct peer;

/* What a row needs in the next commit. */
enum model_dirty { MODEL_CLEAN = 0, MODEL_PUT = 1 };

struct task {
    Task *pb;         /* owned: id, slot, states, node name, ports, ... */
    service_t *svc;
    node_t *node;     /* NULL while unplaced */
    task_t *svc_prev, *svc_next;   /* svc->tasks, oldest first */
    task_t *node_prev, *node_next; /* node->tasks */
    task_t *dirty_next;
    int dirty;
    unsigned report_gen; /* scratch: seen in the agent's report being read */
    TaskStats *stats;    /* the engine's last figures, while running (load.h) */
    int evt_state;       /* the state and health its last event told; -1: none yet */
    int evt_health;
    uint32_t evt_restarts;
    UT_hash_handle hh; /* model->tasks, by id */
};

/* Why a slot got a new task in place of one that ran: the label values of
 * skiff_task_replacements_total. */
#define MODEL_REPLACE_REASONS(X) \
    X(FAILED, "failed") X(REJECTED, "rejected") X(COMPLETED, "completed") \
    X(NODE_DOWN, "node_down") X(DRAIN, "drain") X(CONSTRAINT, "constraint") X(UPDATE, "update") X(ROLLBACK, "rollback") \
    X(REBALANCE, "rebalance") X(OTHER, "other")
enum model_replace {
#define MODEL_REPLACE_ENUM(name, text) MODEL_REPLACE_##name,
    MODEL_REPLACE_REASONS(MODEL_REPLACE_ENUM)
#undef MODEL_REPLACE_ENUM
    MODEL_REPLACE_COUNT
};
extern const char *const model_replace_names[MODEL_REPLACE_COUNT];

/* How updates ended: the label values of skiff_updates_total. */
enum model_update_result { MODEL_UPDATE_COMPLETED, MODEL_UPDATE_PAUSED, MODEL_UPDATE_ROLLED_BACK,
                           MODEL_UPDATE_ROLLBACK_PAUSED, MODEL_UPDATE_RESULTS };
extern const char *const model_update_result_names[MODEL_UPDATE_RESULTS];

typedef struct service_counters {
    uint64_t restarts;                       /* containers restarted by agents */
    uint64_t replaced[MODEL_REPLACE_COUNT];
    uint64_t updates[MODEL_UPDATE_RESULTS];
} service_counters_t;

typedef struct spec_version {
    uint64_t version;
    ServiceSpec *spec; /* owned */
} spec_version_t;

struct service {
    Service *pb;             /* owned: id, spec, version, previous spec, update status */
    spec_version_t *specs;   /* every version some task uses, and the current one */
    size_t n_specs;
    task_t *tasks;           /* every task of the service, history included */
    char name[64];           /* the key in services_by_name: a copy, since pb->spec is
                                replaced (and freed) by updates; names are <= 63 */
    int removed;             /* `service rm`: hidden, deleted once its tasks are gone */
    int reconcile;           /* look at it in the next flush */
    int64_t wake_ms;         /* look at it again at this time (uv_now); 0: no need */
    service_counters_t counters; /* since the controller started, for /metrics */
    char move_task[MODEL_ID_LEN + 1]; /* the new task of a rebalancing move in flight */
    int64_t move_blocked_until;  /* uv_now: no move before (one did not make it) */
    struct autoscale_state *autoscale; /* the autoscaler's memory (capacity.c), or NULL */
    service_t *dirty_next;
    int dirty;
    UT_hash_handle hh;       /* model->services, by id */
    UT_hash_handle hh_name;  /* model->services_by_name, live services only */
};

struct node {
    Node *pb;                /* owned */
    task_t *tasks;           /* tasks placed here, any desired state */
    struct peer *peer;       /* the agent's connection, while registered */
    int64_t last_seen_ms;    /* uv_now() of its last report */
    int64_t ready_since_ms;  /* uv_now() when it last became ready; 0: not ready */
    int64_t gone_ms;         /* uv_now() when its agent's connection closed; 0: open */
    int64_t suspect_ms;      /* uv_now() when other balancers last failed to reach it */
    int64_t back_ms;         /* uv_now() when its agent registered since this
                              * controller took the lead; 0: not yet */
    int assign_dirty;        /* its set changed: push Assignments */
    int sched_index;         /* scratch for the scheduler's view */
    LbStats **lb_stats;      /* the agent's last counters (owned) */
    size_t n_lb_stats;
    struct load_lb *load;    /* its balancers' rates, by service (load.h) */
    unsigned load_gen;
    int64_t load_ms;         /* Unix ms of the last report of them */
    node_t *dirty_next;
    int dirty;
    UT_hash_handle hh;       /* model->nodes, by id */
    UT_hash_handle hh_name;  /* model->nodes_by_name */
};

/* A row of a table the model does not otherwise know (store.h's named
 * tables: a shared store's tokens, the cluster CA's rows): its bytes, kept
 * as they are and written back when set. */
typedef struct model_row {
    char *table;
    char *key;
    uint8_t *value;          /* NULL: deleted in the next commit */
    size_t len;
    int dirty;
    struct model_row *dirty_next;
    char *hkey;              /* "table/key", the hash key */
    UT_hash_handle hh;       /* model->rows */
} model_row_t;

/* A row to delete in the next commit. */
typedef struct model_deletion {
    int table; /* enum store_table */
    char id[MODEL_ID_LEN + 1];
    uint64_t version; /* for spec rows */
    struct model_deletion *next;
} model_deletion_t;

typedef struct model {
    node_t *nodes, *nodes_by_name;
    service_t *services, *services_by_name;
    task_t *tasks;
    char cluster_id[MODEL_ID_LEN * 2 + 1];
    uint64_t assignments_version; /* last Assignments version sent, any node */
    uint64_t endpoints_version;
    int meta_dirty;
    int endpoints_dirty;          /* push Endpoints to every agent */
    task_t *dirty_tasks;
    service_t *dirty_services;
    node_t *dirty_nodes;
    model_deletion_t *deletions;
    model_row_t *rows;            /* named tables' rows, by "table/key" */
    model_row_t *dirty_rows;
    /* spec versions to write: (service, version) pairs */
    struct model_spec_put {
        service_t *svc;
        uint64_t version;
        struct model_spec_put *next;
    } *spec_puts;
} model_t;

void model_init(model_t *m);
void model_free(model_t *m);

/* Fills out with a fresh random id (hex, MODEL_ID_LEN characters). */
void model_new_id(char out[MODEL_ID_LEN + 1]);
int64_t model_wall_ms(void);

/* 1 when anything waits to be committed. */
int model_has_changes(const model_t *m);

/* Marks an object for the next commit. */
void model_touch_task(model_t *m, task_t *t);
void model_touch_service(model_t *m, service_t *s);
void model_touch_node(model_t *m, node_t *n);

/* ---- nodes */
node_t *model_node_by_id(model_t *m, const char *id);
node_t *model_node_by_name(model_t *m, const char *name);
/* By name, id, or unique id prefix. Returns NULL and sets *ambiguous when
 * a prefix matches several. */
node_t *model_node_find(model_t *m, const char *ref, int *ambiguous);
/* Adopts pb (a wholly malloc'd Node with id and name set). NULL: -ENOMEM. */
node_t *model_node_add(model_t *m, Node *pb);
/* Removes the node from the model and the store; its tasks lose their node. */
void model_node_remove(model_t *m, node_t *n);

/* ---- services */
service_t *model_service_by_id(model_t *m, const char *id);
service_t *model_service_by_name(model_t *m, const char *name);
/* A live service by name, id or unique id prefix. */
service_t *model_service_find(model_t *m, const char *ref, int *ambiguous);
/* Adopts pb (wholly malloc'd, id, spec and version set). */
service_t *model_service_add(model_t *m, Service *pb);
/* Hides a service from lookups by name (it lingers until its tasks are gone). */
void model_service_mark_removed(model_t *m, service_t *s);
/* Deletes a removed service, its tasks and spec versions. */
void model_service_delete(model_t *m, service_t *s);
/* The spec of version v (the current one, or one some task still uses). */
const ServiceSpec *model_service_spec(const service_t *s, uint64_t v);
/* Records a copy of the service's current spec as version pb->version.
 * Returns 0 or -ENOMEM. */
int model_service_keep_spec(model_t *m, service_t *s);
/* Adopts spec (owned) as version v, as the store loads it. */
int model_service_load_spec(service_t *s, uint64_t v, ServiceSpec *spec);
/* Drops the spec versions no task uses any more, but the current one. */
void model_service_prune_specs(model_t *m, service_t *s);

/* ---- rows of named tables */
model_row_t *model_row_get(model_t *m, const char *table, const char *key);
/* Sets a row (a copy of value) for the next commit. 0 or -ENOMEM. */
int model_row_set(model_t *m, const char *table, const char *key, const uint8_t *value,
                  size_t len);
/* Deletes a row in the next commit (nothing when there is none). */
void model_row_delete(model_t *m, const char *table, const char *key);
/* Adopts a copy of a row as the store loads it (not for the next commit). */
int model_row_load(model_t *m, const char *table, const char *key, const uint8_t *value,
                   size_t len);
/* Takes the rows to commit off the model: the caller writes them, then
 * calls model_row_sealed for each (which frees a deleted one). */
model_row_t *model_rows_take_dirty(model_t *m);
void model_row_sealed(model_t *m, model_row_t *r);

/* ---- tasks */
task_t *model_task_by_id(model_t *m, const char *id);
/* Adopts pb (wholly malloc'd, id set) as a task of svc, on node (or NULL). */
task_t *model_task_add(model_t *m, service_t *svc, node_t *node, Task *pb);
void model_task_set_node(model_t *m, task_t *t, node_t *node);
void model_task_delete(model_t *m, task_t *t);

/* Task states that mean the task's container no longer runs and won't be
 * started again by the agent. */
int model_state_terminal(TaskState s);
/* 1 when the spec has a health check (engine or HTTP). */
int model_spec_has_check(const ServiceSpec *spec);
/* 1 when the task may take connections: running, healthy where checked. */
int model_task_ready(const task_t *t);

#endif
