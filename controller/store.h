/* store: the controller's SQLite database, the journal of its model.
 *
 * WAL mode, synchronous=FULL; the schema is versioned with PRAGMA
 * user_version and grows by migrations. Each row is its protobuf message
 * (the wire schema is the storage schema, as in Swarm's store) plus the
 * columns worth querying by hand (sqlite3 state.db 'select ...').
 *
 * At start store_load() reads everything into the model. After that the
 * controller writes only: it collects rows into a batch on the loop thread,
 * and store_commit() writes the batch in one transaction, on a worker
 * thread. A batch is all or nothing; kill -9 at any moment leaves the last
 * committed state.
 */
#ifndef SKIFF_STORE_H
#define SKIFF_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "skiff_pb.h"

struct model;

enum store_table { STORE_META, STORE_NODES, STORE_SERVICES, STORE_SPECS, STORE_TASKS, STORE_EVENTS,
                   STORE_CA_ROOTS, STORE_CERTS };

typedef struct store store_t;
typedef struct store_batch store_batch_t;

/* Opens (creating) the database at path and brings its schema up to date.
 * NULL on failure, with the reason in err. */
store_t *store_open(const char *path, char *err, size_t errlen);
void store_close(store_t *st);

/* Reads every row into the (empty) model. Returns 0, or SKIFF_ESTORE with
 * the reason in err. */
int store_load(store_t *st, struct model *m, char *err, size_t errlen);

/* The CA's rows (controller/ca.h): each root and each certificate record
 * is handed to its callback, which adopts it; a callback's error stops the
 * load. Returns 0, SKIFF_ESTORE with the reason in err, or the callback's
 * code. */
typedef struct store_ca_loader {
    int (*root)(void *arg, CaRoot *pb, char *err, size_t errlen);
    int (*cert)(void *arg, CertRecord *pb);
    void *arg;
} store_ca_loader_t;
int store_load_ca(store_t *st, const store_ca_loader_t *loader, char *err, size_t errlen);

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
int store_add_event(store_batch_t *b, int64_t time_ms, const char *kind, const char *object,
                    const char *message);
/* The CA's rows: a root (key: its id), a certificate record (key: its
 * serial). */
int store_put_ca_root(store_batch_t *b, const CaRoot *root);
int store_put_cert(store_batch_t *b, const CertRecord *rec);
/* Deletes a row: by id (a root's id, a record's serial), or for STORE_SPECS
 * by (service id, version). */
int store_delete(store_batch_t *b, enum store_table table, const char *id, uint64_t version);

/* Writes the batch in one transaction. Call from one thread at a time.
 * Returns 0, or SKIFF_ESTORE with the reason in err (nothing written). */
int store_commit(store_t *st, store_batch_t *b, char *err, size_t errlen);

/* Reads one meta value into out. Returns 1 when found, 0 when not. */
int store_get_meta(store_t *st, const char *key, char *out, size_t len);

#endif
