/* store: see store.h. */
#include "store.h"
#include "errors.h"
#include "log.h"
#include "model.h"
#include "pbutil.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Events kept in the events table; older ones are pruned at each commit. */
#define STORE_EVENTS_KEPT 10000

/* Migration i brings the schema from user_version i to i + 1. Append only. */
static const char *const store_migrations[] = {
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE nodes (id TEXT PRIMARY KEY, name TEXT NOT NULL, state INTEGER,"
    "  availability INTEGER, data BLOB NOT NULL);"
    "CREATE TABLE services (id TEXT PRIMARY KEY, name TEXT NOT NULL, version INTEGER,"
    "  update_state INTEGER, removed INTEGER NOT NULL DEFAULT 0, data BLOB NOT NULL);"
    "CREATE TABLE specs (service_id TEXT NOT NULL, version INTEGER NOT NULL,"
    "  data BLOB NOT NULL, PRIMARY KEY (service_id, version));"
    "CREATE TABLE tasks (id TEXT PRIMARY KEY, service_id TEXT NOT NULL, slot INTEGER,"
    "  node_id TEXT, desired INTEGER, state INTEGER, data BLOB NOT NULL);"
    "CREATE INDEX tasks_service ON tasks (service_id, slot);"
    "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER,"
    "  kind TEXT, object TEXT, message TEXT);",
    /* 2: the cluster CA (controller/ca.h): its roots, with their keys, and
     * the record of every certificate it issued (the revocations too). */
    "CREATE TABLE ca_roots (id TEXT PRIMARY KEY, state INTEGER, data BLOB NOT NULL);"
    "CREATE TABLE certs (serial TEXT PRIMARY KEY, node_id TEXT, role TEXT,"
    "  not_after_ms INTEGER, revoked INTEGER, data BLOB NOT NULL);"
    "CREATE INDEX certs_node ON certs (node_id);",
};

#define STORE_SCHEMA_VERSION (int)(sizeof(store_migrations) / sizeof(store_migrations[0]))

enum store_stmt {
    SQL_PUT_META, SQL_PUT_NODE, SQL_PUT_SERVICE, SQL_PUT_SPEC, SQL_PUT_TASK, SQL_ADD_EVENT,
    SQL_DEL_NODE, SQL_DEL_SERVICE, SQL_DEL_SPEC, SQL_DEL_TASK, SQL_PRUNE_EVENTS,
    SQL_PUT_CA_ROOT, SQL_PUT_CERT, SQL_DEL_CA_ROOT, SQL_DEL_CERT,
    SQL_BEGIN, SQL_COMMIT, SQL_ROLLBACK, SQL_COUNT
};

static const char *const store_sql[SQL_COUNT] = {
    [SQL_PUT_META] = "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
    [SQL_PUT_NODE] = "INSERT OR REPLACE INTO nodes (id, name, state, availability, data)"
                     " VALUES (?1, ?2, ?3, ?4, ?6)",
    [SQL_PUT_SERVICE] = "INSERT OR REPLACE INTO services (id, name, version, update_state,"
                        " removed, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [SQL_PUT_SPEC] = "INSERT OR REPLACE INTO specs (service_id, version, data) VALUES (?1, ?3, ?6)",
    [SQL_PUT_TASK] = "INSERT OR REPLACE INTO tasks (id, service_id, slot, node_id, desired,"
                     " state, data) VALUES (?1, ?2, ?3, ?7, ?4, ?5, ?6)",
    [SQL_ADD_EVENT] = "INSERT INTO events (time_ms, kind, object, message) VALUES (?3, ?1, ?2, ?7)",
    [SQL_DEL_NODE] = "DELETE FROM nodes WHERE id = ?1",
    [SQL_DEL_SERVICE] = "DELETE FROM services WHERE id = ?1",
    [SQL_DEL_SPEC] = "DELETE FROM specs WHERE service_id = ?1 AND version = ?3",
    [SQL_DEL_TASK] = "DELETE FROM tasks WHERE id = ?1",
    [SQL_PRUNE_EVENTS] = "DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - ?1",
    [SQL_PUT_CA_ROOT] = "INSERT OR REPLACE INTO ca_roots (id, state, data) VALUES (?1, ?3, ?6)",
    [SQL_PUT_CERT] = "INSERT OR REPLACE INTO certs (serial, node_id, role, not_after_ms, revoked,"
                     " data) VALUES (?1, ?2, ?7, ?3, ?4, ?6)",
    [SQL_DEL_CA_ROOT] = "DELETE FROM ca_roots WHERE id = ?1",
    [SQL_DEL_CERT] = "DELETE FROM certs WHERE serial = ?1",
    [SQL_BEGIN] = "BEGIN IMMEDIATE",
    [SQL_COMMIT] = "COMMIT",
    [SQL_ROLLBACK] = "ROLLBACK",
};

struct store {
    sqlite3 *db;
    sqlite3_stmt *stmt[SQL_COUNT];
};

/* One row of a batch. The statement's parameters: ?1 id, ?2 text, ?3 a,
 * ?4 b, ?5 c, ?6 blob, ?7 text2. */
typedef struct store_row {
    enum store_stmt stmt;
    char *id;
    char *text;
    char *text2;
    int64_t a, b, c;
    uint8_t *blob;
    size_t len;
} store_row_t;

struct store_batch {
    store_row_t *rows;
    size_t n, cap;
};

static int store_fail(char *err, size_t len, sqlite3 *db, const char *what)
{
    snprintf(err, len, "%s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
    return SKIFF_ESTORE;
}

static int store_migrate(sqlite3 *db, char *err, size_t len)
{
    sqlite3_stmt *st;
    char sql[64];
    int version = 0;

    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return store_fail(err, len, db, "read schema version");
    if (sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version > STORE_SCHEMA_VERSION) {
        snprintf(err, len, "the database has schema version %d; this skiff-controller knows "
                 "up to %d (downgrade?)", version, STORE_SCHEMA_VERSION);
        return SKIFF_ESTORE;
    }
    for (; version < STORE_SCHEMA_VERSION; version++) {
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", version + 1);
        if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(db, store_migrations[version], NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
            store_fail(err, len, db, "migrate the schema");
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return SKIFF_ESTORE;
        }
        log_info("store: schema migrated to version %d", version + 1);
    }
    return 0;
}

store_t *store_open(const char *path, char *err, size_t len)
{
    store_t *st = calloc(1, sizeof(*st));

    if (!st) {
        store_fail(err, len, NULL, "open");
        return NULL;
    }
    if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                        SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
        store_fail(err, len, st->db, path);
        goto out_close;
    }
    sqlite3_busy_timeout(st->db, 5000);
    if (sqlite3_exec(st->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                     "PRAGMA foreign_keys=OFF;", NULL, NULL, NULL) != SQLITE_OK) {
        store_fail(err, len, st->db, "set WAL mode");
        goto out_close;
    }
    if (store_migrate(st->db, err, len))
        goto out_close;
    for (int i = 0; i < SQL_COUNT; i++) {
        if (sqlite3_prepare_v3(st->db, store_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &st->stmt[i], NULL) != SQLITE_OK) {
            store_fail(err, len, st->db, "prepare");
            goto out_close;
        }
    }
    return st;

out_close:
    store_close(st);
    return NULL;
}

void store_close(store_t *st)
{
    if (!st)
        return;
    for (int i = 0; i < SQL_COUNT; i++)
        sqlite3_finalize(st->stmt[i]);
    sqlite3_close(st->db);
    free(st);
}

int store_get_meta(store_t *st, const char *key, char *out, size_t len)
{
    sqlite3_stmt *s;
    int found = 0;

    if (sqlite3_prepare_v2(st->db, "SELECT value FROM meta WHERE key = ?1", -1, &s, NULL))
        return 0;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW) {
        snprintf(out, len, "%s", (const char *)sqlite3_column_text(s, 0));
        found = 1;
    }
    sqlite3_finalize(s);
    return found;
}

/* ------------------------------------------------------------------ load */

typedef int (*store_row_fn)(sqlite3_stmt *s, model_t *m, char *err, size_t len);

static int store_each(store_t *st, const char *sql, store_row_fn fn, model_t *m,
                      char *err, size_t len)
{
    sqlite3_stmt *s;
    int rc = 0, step;

    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return store_fail(err, len, st->db, "load");
    while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW)
        rc = fn(s, m, err, len);
    if (rc == 0 && step != SQLITE_DONE)
        rc = store_fail(err, len, st->db, "load");
    sqlite3_finalize(s);
    return rc;
}

static void *store_unpack(const ProtobufCMessageDescriptor *d, sqlite3_stmt *s, int col)
{
    return protobuf_c_message_unpack(d, NULL, (size_t)sqlite3_column_bytes(s, col),
                                     sqlite3_column_blob(s, col));
}

static int store_load_meta(sqlite3_stmt *s, model_t *m, char *err, size_t len)
{
    const char *key = (const char *)sqlite3_column_text(s, 0);
    const char *value = (const char *)sqlite3_column_text(s, 1);

    if (strcmp(key, "cluster_id") == 0)
        snprintf(m->cluster_id, sizeof(m->cluster_id), "%s", value);
    else if (strcmp(key, "assignments_version") == 0)
        m->assignments_version = strtoull(value, NULL, 10);
    else if (strcmp(key, "endpoints_version") == 0)
        m->endpoints_version = strtoull(value, NULL, 10);
    return 0;
}

static int store_load_node(sqlite3_stmt *s, model_t *m, char *err, size_t len)
{
    Node *pb = store_unpack(&PB_DESC_Node, s, 0);

    if (!pb || !*pb->id || !*pb->name) {
        pb_free(pb);
        snprintf(err, len, "load: a node row does not decode");
        return SKIFF_ESTORE;
    }
    if (!model_node_add(m, pb)) {
        pb_free(pb);
        return store_fail(err, len, NULL, "load");
    }
    return 0;
}

static int store_load_service(sqlite3_stmt *s, model_t *m, char *err, size_t len)
{
    Service *pb = store_unpack(&PB_DESC_Service, s, 0);
    service_t *svc;

    if (!pb || !*pb->id || !pb->spec || !pb->update_status) {
        pb_free(pb);
        snprintf(err, len, "load: a service row does not decode");
        return SKIFF_ESTORE;
    }
    if (!(svc = model_service_add(m, pb))) {
        pb_free(pb);
        return store_fail(err, len, NULL, "load");
    }
    if (sqlite3_column_int(s, 1))
        model_service_mark_removed(m, svc);
    return 0;
}

static int store_load_spec(sqlite3_stmt *s, model_t *m, char *err, size_t len)
{
    service_t *svc = model_service_by_id(m, (const char *)sqlite3_column_text(s, 0));
    ServiceSpec *spec = store_unpack(&PB_DESC_ServiceSpec, s, 2);

    if (!svc || !spec) {
        pb_free(spec);
        log_warn("store: dropping a spec row of an unknown service");
        return 0;
    }
    if (model_service_load_spec(svc, (uint64_t)sqlite3_column_int64(s, 1), spec)) {
        pb_free(spec);
        return store_fail(err, len, NULL, "load");
    }
    return 0;
}

static int store_load_task(sqlite3_stmt *s, model_t *m, char *err, size_t len)
{
    Task *pb = store_unpack(&PB_DESC_Task, s, 0);
    service_t *svc = pb ? model_service_by_id(m, pb->service_id) : NULL;
    node_t *node = pb && *pb->node_id ? model_node_by_id(m, pb->node_id) : NULL;

    if (!pb || !*pb->id || !svc) {
        pb_free(pb);
        log_warn("store: dropping a task row without its service");
        return 0;
    }
    if (!model_task_add(m, svc, node, pb)) {
        pb_free(pb);
        return store_fail(err, len, NULL, "load");
    }
    return 0;
}

int store_load(store_t *st, model_t *m, char *err, size_t len)
{
    int rc;

    rc = store_each(st, "SELECT key, value FROM meta", store_load_meta, m, err, len);
    if (!rc)
        rc = store_each(st, "SELECT data FROM nodes", store_load_node, m, err, len);
    if (!rc)
        rc = store_each(st, "SELECT data, removed FROM services", store_load_service, m, err,
                        len);
    if (!rc)
        rc = store_each(st, "SELECT service_id, version, data FROM specs", store_load_spec, m,
                        err, len);
    if (!rc)
        rc = store_each(st, "SELECT data FROM tasks ORDER BY service_id, slot, rowid",
                        store_load_task, m, err, len);
    /* Loading is not a change: nothing here needs writing back. */
    for (task_t *t = m->dirty_tasks; t; t = t->dirty_next)
        t->dirty = MODEL_CLEAN;
    for (service_t *svc = m->dirty_services; svc; svc = svc->dirty_next)
        svc->dirty = MODEL_CLEAN;
    for (node_t *n = m->dirty_nodes; n; n = n->dirty_next)
        n->dirty = MODEL_CLEAN;
    m->dirty_tasks = NULL;
    m->dirty_services = NULL;
    m->dirty_nodes = NULL;
    for (node_t *n = m->nodes; n; n = n->hh.next)
        n->assign_dirty = 1; /* every agent gets its set when it registers */
    return rc;
}

static int store_load_ca_rows(store_t *st, const char *sql, const ProtobufCMessageDescriptor *d,
                              const store_ca_loader_t *l, char *err, size_t len)
{
    sqlite3_stmt *s;
    int rc = 0, step;

    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return store_fail(err, len, st->db, "load");
    while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW) {
        void *pb = store_unpack(d, s, 0);
        if (!pb) {
            snprintf(err, len, "load: a %s row does not decode", d->short_name);
            rc = SKIFF_ESTORE;
        } else if (d == &PB_DESC_CaRoot) {
            rc = l->root(l->arg, pb, err, len);
        } else if ((rc = l->cert(l->arg, pb))) {
            snprintf(err, len, "load: out of memory");
        }
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = store_fail(err, len, st->db, "load");
    sqlite3_finalize(s);
    return rc;
}

int store_load_ca(store_t *st, const store_ca_loader_t *l, char *err, size_t len)
{
    int rc = store_load_ca_rows(st, "SELECT data FROM ca_roots ORDER BY rowid", &PB_DESC_CaRoot,
                                l, err, len);

    if (!rc)
        rc = store_load_ca_rows(st, "SELECT data FROM certs", &PB_DESC_CertRecord, l, err, len);
    return rc;
}

/* ----------------------------------------------------------------- batch */

store_batch_t *store_batch_new(void)
{
    return calloc(1, sizeof(store_batch_t));
}

static void store_row_free(store_row_t *r)
{
    free(r->id);
    free(r->text);
    free(r->text2);
    free(r->blob);
}

void store_batch_free(store_batch_t *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++)
        store_row_free(&b->rows[i]);
    free(b->rows);
    free(b);
}

size_t store_batch_size(const store_batch_t *b)
{
    return b->n;
}

static store_row_t *store_row_new(store_batch_t *b, enum store_stmt stmt)
{
    store_row_t *r;

    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        store_row_t *grown = realloc(b->rows, cap * sizeof(*grown));
        if (!grown)
            return NULL;
        b->rows = grown;
        b->cap = cap;
    }
    r = &b->rows[b->n];
    memset(r, 0, sizeof(*r));
    r->stmt = stmt;
    return r;
}

/* Fills the row's strings and blob; the row counts only once all is there. */
static int store_row_fill(store_batch_t *b, store_row_t *r, const char *id, const char *text,
                          const char *text2, const ProtobufCMessage *msg)
{
    r->id = id ? strdup(id) : NULL;
    r->text = text ? strdup(text) : NULL;
    r->text2 = text2 ? strdup(text2) : NULL;
    if (msg) {
        r->len = protobuf_c_message_get_packed_size(msg);
        r->blob = malloc(r->len ? r->len : 1);
        if (r->blob)
            protobuf_c_message_pack(msg, r->blob);
    }
    if ((id && !r->id) || (text && !r->text) || (text2 && !r->text2) || (msg && !r->blob)) {
        store_row_free(r);
        return -ENOMEM;
    }
    b->n++;
    return 0;
}

int store_put_node(store_batch_t *b, const Node *n)
{
    store_row_t *r = store_row_new(b, SQL_PUT_NODE);

    if (!r)
        return -ENOMEM;
    r->a = n->state;
    r->b = n->availability;
    return store_row_fill(b, r, n->id, n->name, NULL, &n->base);
}

int store_put_service(store_batch_t *b, const Service *s, int removed)
{
    store_row_t *r = store_row_new(b, SQL_PUT_SERVICE);

    if (!r)
        return -ENOMEM;
    r->a = (int64_t)s->version;
    r->b = s->update_status ? s->update_status->state : 0;
    r->c = removed;
    return store_row_fill(b, r, s->id, s->spec->name, NULL, &s->base);
}

int store_put_spec(store_batch_t *b, const char *service_id, uint64_t version,
                   const ServiceSpec *spec)
{
    store_row_t *r = store_row_new(b, SQL_PUT_SPEC);

    if (!r)
        return -ENOMEM;
    r->a = (int64_t)version;
    return store_row_fill(b, r, service_id, NULL, NULL, &spec->base);
}

int store_put_task(store_batch_t *b, const Task *t)
{
    store_row_t *r = store_row_new(b, SQL_PUT_TASK);

    if (!r)
        return -ENOMEM;
    r->a = t->slot;
    r->b = t->desired_state;
    r->c = t->state;
    return store_row_fill(b, r, t->id, t->service_id, *t->node_id ? t->node_id : NULL,
                          &t->base);
}

int store_put_meta(store_batch_t *b, const char *key, const char *value)
{
    store_row_t *r = store_row_new(b, SQL_PUT_META);

    if (!r)
        return -ENOMEM;
    return store_row_fill(b, r, key, value, NULL, NULL);
}

int store_add_event(store_batch_t *b, int64_t time_ms, const char *kind, const char *object,
                    const char *message)
{
    store_row_t *r = store_row_new(b, SQL_ADD_EVENT);

    if (!r)
        return -ENOMEM;
    r->a = time_ms;
    return store_row_fill(b, r, kind, object, message, NULL);
}

int store_put_ca_root(store_batch_t *b, const CaRoot *root)
{
    store_row_t *r = store_row_new(b, SQL_PUT_CA_ROOT);

    if (!r)
        return -ENOMEM;
    r->a = root->state;
    return store_row_fill(b, r, root->id, NULL, NULL, &root->base);
}

int store_put_cert(store_batch_t *b, const CertRecord *rec)
{
    store_row_t *r = store_row_new(b, SQL_PUT_CERT);

    if (!r)
        return -ENOMEM;
    r->a = rec->not_after_ms;
    r->b = rec->revoked;
    return store_row_fill(b, r, rec->serial, rec->node_id, rec->role, &rec->base);
}

int store_delete(store_batch_t *b, enum store_table table, const char *id, uint64_t version)
{
    static const enum store_stmt stmts[] = {
        [STORE_NODES] = SQL_DEL_NODE, [STORE_SERVICES] = SQL_DEL_SERVICE,
        [STORE_SPECS] = SQL_DEL_SPEC, [STORE_TASKS] = SQL_DEL_TASK,
        [STORE_CA_ROOTS] = SQL_DEL_CA_ROOT, [STORE_CERTS] = SQL_DEL_CERT,
    };
    store_row_t *r;

    if (table == STORE_META || table == STORE_EVENTS)
        return SKIFF_EINVAL;
    if (!(r = store_row_new(b, stmts[table])))
        return -ENOMEM;
    r->a = (int64_t)version;
    return store_row_fill(b, r, id, NULL, NULL, NULL);
}

/* ---------------------------------------------------------------- commit */

static int store_exec(store_t *st, enum store_stmt which)
{
    sqlite3_stmt *s = st->stmt[which];
    int rc = sqlite3_step(s);

    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : rc;
}

/* Binds a row to its statement: parameter ?N of every statement takes the
 * row's field N (see store_row_t); a statement names only those it uses. */
static int store_run_row(store_t *st, const store_row_t *r)
{
    sqlite3_stmt *s = st->stmt[r->stmt];
    int count = sqlite3_bind_parameter_count(s);
    int rc;

    for (int i = 1; i <= count; i++) {
        switch (i) {
        case 1: sqlite3_bind_text(s, i, r->id, -1, SQLITE_STATIC); break;
        case 2: sqlite3_bind_text(s, i, r->text, -1, SQLITE_STATIC); break;
        case 3: sqlite3_bind_int64(s, i, r->a); break;
        case 4: sqlite3_bind_int64(s, i, r->b); break;
        case 5: sqlite3_bind_int64(s, i, r->c); break;
        case 6: sqlite3_bind_blob(s, i, r->blob, (int)r->len, SQLITE_STATIC); break;
        case 7: sqlite3_bind_text(s, i, r->text2, -1, SQLITE_STATIC); break;
        default: sqlite3_bind_null(s, i); break;
        }
    }
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE ? 0 : rc;
}

int store_commit(store_t *st, store_batch_t *b, char *err, size_t len)
{
    int events = 0;

    if (store_exec(st, SQL_BEGIN))
        return store_fail(err, len, st->db, "begin");
    for (size_t i = 0; i < b->n; i++) {
        events |= b->rows[i].stmt == SQL_ADD_EVENT;
        if (store_run_row(st, &b->rows[i]))
            goto out_rollback;
    }
    if (events) {
        sqlite3_bind_int64(st->stmt[SQL_PRUNE_EVENTS], 1, STORE_EVENTS_KEPT);
        if (store_exec(st, SQL_PRUNE_EVENTS))
            goto out_rollback;
    }
    if (store_exec(st, SQL_COMMIT))
        goto out_rollback;
    return 0;

out_rollback:
    store_fail(err, len, st->db, "commit");
    store_exec(st, SQL_ROLLBACK);
    return SKIFF_ESTORE;
}
