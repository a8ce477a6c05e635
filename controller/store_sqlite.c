/* store_sqlite: the SQLite backend of the store (store.h), the default.
 *
 * One database, <data-dir>/state.db: WAL mode, synchronous=FULL; the
 * schema is versioned with PRAGMA user_version and grows by migrations.
 * Each row is its protobuf message plus the columns worth querying by hand
 * (sqlite3 state.db 'select ...'); the named tables of store.h share one
 * table, rows (tbl, key, value).
 *
 * store_sqlite_load() reads everything into the model before the loop
 * runs. After that the controller writes only: a batch is written in one
 * transaction on a thread of the loop's pool, and its callback runs on the
 * loop once it committed. A batch is all or nothing; kill -9 at any moment
 * leaves the last committed state. One controller, always the one acting:
 * this store elects nobody.
 */
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


/* Migration i brings the schema from user_version i to i + 1. Append only. */
static const char *const store_migrations[] = {
    ("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
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
    "  kind TEXT, object TEXT, message TEXT);"),
    /* 2: events carry the whole Event (proto/skiff.proto); seq is its seq */
    "ALTER TABLE events ADD COLUMN data BLOB;",
    /* 3: the rows of named tables (store.h) */
    ("CREATE TABLE rows (tbl TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,"
     "  PRIMARY KEY (tbl, key));"),
};

#define STORE_SCHEMA_VERSION (int)(sizeof(store_migrations) / sizeof(store_migrations[0]))

enum store_stmt {
    SQL_PUT_META, SQL_PUT_NODE, SQL_PUT_SERVICE, SQL_PUT_SPEC, SQL_PUT_TASK, SQL_ADD_EVENT,
    SQL_PUT_ROW, SQL_DEL_NODE, SQL_DEL_SERVICE, SQL_DEL_SPEC, SQL_DEL_TASK, SQL_DEL_ROW,
    SQL_PRUNE_EVENTS, SQL_BEGIN, SQL_COMMIT, SQL_ROLLBACK, SQL_COUNT
};

/* Parameter ?N of every statement takes the row's field N: ?1 key, ?2 text,
 * ?3 a, ?4 b, ?5 c, ?6 data (blob, or else value), ?7 text2, ?8 id,
 * ?9 the table's name (store_row_t). */
static const char *const store_sql[SQL_COUNT] = {
    [SQL_PUT_META] = "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
    [SQL_PUT_NODE] = "INSERT OR REPLACE INTO nodes (id, name, state, availability, data)"
                     " VALUES (?1, ?2, ?3, ?4, ?6)",
    [SQL_PUT_SERVICE] = "INSERT OR REPLACE INTO services (id, name, version, update_state,"
                        " removed, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [SQL_PUT_SPEC] = "INSERT OR REPLACE INTO specs (service_id, version, data) VALUES (?8, ?3, ?6)",
    [SQL_PUT_TASK] = "INSERT OR REPLACE INTO tasks (id, service_id, slot, node_id, desired,"
                     " state, data) VALUES (?1, ?2, ?3, ?7, ?4, ?5, ?6)",
    [SQL_ADD_EVENT] = "INSERT OR REPLACE INTO events (seq, time_ms, kind, object, message, data)"
                      " VALUES (?4, ?3, ?8, ?2, ?7, ?6)",
    [SQL_PUT_ROW] = "INSERT OR REPLACE INTO rows (tbl, key, value) VALUES (?9, ?1, ?6)",
    [SQL_DEL_NODE] = "DELETE FROM nodes WHERE id = ?1",
    [SQL_DEL_SERVICE] = "DELETE FROM services WHERE id = ?1",
    [SQL_DEL_SPEC] = "DELETE FROM specs WHERE service_id = ?8 AND version = ?3",
    [SQL_DEL_TASK] = "DELETE FROM tasks WHERE id = ?1",
    [SQL_DEL_ROW] = "DELETE FROM rows WHERE tbl = ?9 AND key = ?1",
    [SQL_PRUNE_EVENTS] = "DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - ?1",
    [SQL_BEGIN] = "BEGIN IMMEDIATE",
    [SQL_COMMIT] = "COMMIT",
    [SQL_ROLLBACK] = "ROLLBACK",
};

typedef struct store_sqlite {
    store_t base;
    uv_loop_t *loop;
    sqlite3 *db;
    sqlite3_stmt *stmt[SQL_COUNT];
    char describe[64 + 4096];
    /* the commit in the pool */
    uv_work_t work;
    store_batch_t *batch;
    store_done_fn cb;
    void *arg;
    int rc;
    char err[256];
} store_sqlite_t;

static const store_ops_t store_sqlite_ops;

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

static void store_sqlite_free(store_t *base)
{
    store_sqlite_t *st = (store_sqlite_t *)base;

    for (int i = 0; i < SQL_COUNT; i++)
        sqlite3_finalize(st->stmt[i]);
    sqlite3_close(st->db);
    store_batch_free(st->batch);
    free(st);
}

store_t *store_sqlite_open(uv_loop_t *loop, const char *path, char *err, size_t len)
{
    store_sqlite_t *st = calloc(1, sizeof(*st));

    if (!st) {
        store_fail(err, len, NULL, "open");
        return NULL;
    }
    st->base.ops = &store_sqlite_ops;
    st->base.events_kept = STORE_EVENTS_KEPT;
    st->loop = loop;
    snprintf(st->describe, sizeof(st->describe), "sqlite %s", path);
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
    return &st->base;

out_close:
    store_sqlite_free(&st->base);
    return NULL;
}

int store_sqlite_get_meta(store_t *base, const char *key, char *out, size_t len)
{
    store_sqlite_t *st = (store_sqlite_t *)base;
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

typedef int (*store_row_fn)(sqlite3_stmt *s, void *arg, char *err, size_t len);

static int store_each(store_sqlite_t *st, const char *sql, store_row_fn fn, void *arg,
                      char *err, size_t len)
{
    sqlite3_stmt *s;
    int rc = 0, step = SQLITE_DONE;

    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return store_fail(err, len, st->db, "load");
    while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW)
        rc = fn(s, arg, err, len);
    if (rc == 0 && step != SQLITE_DONE)
        rc = store_fail(err, len, st->db, "load");
    sqlite3_finalize(s);
    return rc;
}

static const uint8_t *store_col_blob(sqlite3_stmt *s, int col, size_t *len)
{
    const uint8_t *b = sqlite3_column_blob(s, col);

    *len = (size_t)sqlite3_column_bytes(s, col);
    return b ? b : (const uint8_t *)"";
}

static const char *store_col_text(sqlite3_stmt *s, int col)
{
    const char *t = (const char *)sqlite3_column_text(s, col);

    return t ? t : "";
}

static int store_load_meta(sqlite3_stmt *s, void *arg, char *err, size_t len)
{
    const char *value = store_col_text(s, 1);

    return store_load_row(arg, STORE_META, "meta", store_col_text(s, 0),
                          (const uint8_t *)value, strlen(value), err, len);
}

static int store_load_node(sqlite3_stmt *s, void *arg, char *err, size_t len)
{
    size_t n;
    const uint8_t *b = store_col_blob(s, 0, &n);
    Node *pb = (Node *)protobuf_c_message_unpack(&PB_DESC_Node, NULL, n, b);

    if (!pb || !*pb->id || !*pb->name) {
        pb_free(pb);
        snprintf(err, len, "load: a node row does not decode");
        return SKIFF_ESTORE;
    }
    if (!model_node_add(arg, pb)) {
        pb_free(pb);
        return store_fail(err, len, NULL, "load");
    }
    return 0;
}

static int store_load_service(sqlite3_stmt *s, void *arg, char *err, size_t len)
{
    model_t *m = arg;
    size_t n;
    const uint8_t *b = store_col_blob(s, 0, &n);
    Service *pb = (Service *)protobuf_c_message_unpack(&PB_DESC_Service, NULL, n, b);
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

static int store_load_spec(sqlite3_stmt *s, void *arg, char *err, size_t len)
{
    service_t *svc = model_service_by_id(arg, store_col_text(s, 0));
    size_t n;
    const uint8_t *b = store_col_blob(s, 2, &n);
    ServiceSpec *spec = (ServiceSpec *)protobuf_c_message_unpack(&PB_DESC_ServiceSpec, NULL, n, b);

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

static int store_load_task(sqlite3_stmt *s, void *arg, char *err, size_t len)
{
    model_t *m = arg;
    size_t n;
    const uint8_t *b = store_col_blob(s, 0, &n);
    Task *pb = (Task *)protobuf_c_message_unpack(&PB_DESC_Task, NULL, n, b);
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

static int store_load_named(sqlite3_stmt *s, void *arg, char *err, size_t len)
{
    size_t n;
    const uint8_t *b = store_col_blob(s, 2, &n);

    return store_load_row(arg, STORE_ROWS, store_col_text(s, 0), store_col_text(s, 1), b, n,
                          err, len);
}

int store_sqlite_load(store_t *base, model_t *m, char *err, size_t len)
{
    store_sqlite_t *st = (store_sqlite_t *)base;
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
    if (!rc)
        rc = store_each(st, "SELECT tbl, key, value FROM rows", store_load_named, m, err, len);
    /* Loading is not a change: nothing here needs writing back. */
    store_load_done(m);
    return rc;
}

/* ------------------------------------------------------------------ scan */

typedef struct store_scan {
    store_scan_fn fn;
    void *arg;
    const char *table;
} store_scan_t;

static int store_scan_blob(sqlite3_stmt *s, void *arg, char *err, size_t len)
{
    store_scan_t *sc = arg;
    size_t n;
    const uint8_t *b = store_col_blob(s, 1, &n);

    return sc->fn(sc->arg, sc->table, store_col_text(s, 0), b, n) ? SKIFF_ESTORE : 0;
}

static int store_scan_meta(sqlite3_stmt *s, void *arg, char *err, size_t len)
{
    store_scan_t *sc = arg;
    const char *v = store_col_text(s, 1);

    return sc->fn(sc->arg, "meta", store_col_text(s, 0), (const uint8_t *)v, strlen(v))
               ? SKIFF_ESTORE : 0;
}

static int store_scan_service(sqlite3_stmt *s, void *arg, char *err, size_t len)
{
    store_scan_t *sc = arg;
    size_t n, packed;
    const uint8_t *b = store_col_blob(s, 1, &n);
    ServiceRecord rec = PB_SERVICE_RECORD_INIT;
    uint8_t *buf;
    int rc;

    rec.service = (Service *)protobuf_c_message_unpack(&PB_DESC_Service, NULL, n, b);
    rec.removed = sqlite3_column_int(s, 2) != 0;
    if (!rec.service) {
        snprintf(err, len, "scan: service %.64s does not decode", store_col_text(s, 0));
        return SKIFF_ESTORE;
    }
    packed = protobuf_c_message_get_packed_size(&rec.base);
    if (!(buf = malloc(packed ? packed : 1))) {
        pb_free(rec.service);
        return store_fail(err, len, NULL, "scan");
    }
    protobuf_c_message_pack(&rec.base, buf);
    rc = sc->fn(sc->arg, "services", store_col_text(s, 0), buf, packed) ? SKIFF_ESTORE : 0;
    free(buf);
    pb_free(rec.service);
    return rc;
}

static int store_scan_spec(sqlite3_stmt *s, void *arg, char *err, size_t len)
{
    store_scan_t *sc = arg;
    char key[160];
    size_t n;
    const uint8_t *b = store_col_blob(s, 2, &n);

    snprintf(key, sizeof(key), "%.100s/%020llu", store_col_text(s, 0),
             (unsigned long long)sqlite3_column_int64(s, 1));
    return sc->fn(sc->arg, "specs", key, b, n) ? SKIFF_ESTORE : 0;
}

static int store_scan_named(sqlite3_stmt *s, void *arg, char *err, size_t len)
{
    store_scan_t *sc = arg;
    size_t n;
    const uint8_t *b = store_col_blob(s, 2, &n);

    return sc->fn(sc->arg, store_col_text(s, 0), store_col_text(s, 1), b, n) ? SKIFF_ESTORE
                                                                              : 0;
}

static int store_sqlite_scan(store_t *base, store_scan_fn fn, void *arg, char *err, size_t len)
{
    store_sqlite_t *st = (store_sqlite_t *)base;
    store_scan_t sc = { fn, arg, NULL };
    int rc;

    rc = store_each(st, "SELECT key, value FROM meta", store_scan_meta, &sc, err, len);
    sc.table = "nodes";
    if (!rc)
        rc = store_each(st, "SELECT id, data FROM nodes", store_scan_blob, &sc, err, len);
    if (!rc)
        rc = store_each(st, "SELECT id, data, removed FROM services", store_scan_service, &sc,
                        err, len);
    if (!rc)
        rc = store_each(st, "SELECT service_id, version, data FROM specs", store_scan_spec, &sc,
                        err, len);
    sc.table = "tasks";
    if (!rc)
        rc = store_each(st, "SELECT id, data FROM tasks", store_scan_blob, &sc, err, len);
    if (!rc)
        rc = store_each(st, "SELECT tbl, key, value FROM rows", store_scan_named, &sc, err, len);
    if (rc && !*err)
        snprintf(err, len, "scan: stopped");
    return rc;
}

/* ---------------------------------------------------------------- commit */

static int store_exec(store_sqlite_t *st, enum store_stmt which)
{
    sqlite3_stmt *s = st->stmt[which];
    int rc = sqlite3_step(s);

    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : rc;
}

static enum store_stmt store_stmt_of(const store_row_t *r)
{
    static const enum store_stmt puts[] = {
        [STORE_META] = SQL_PUT_META, [STORE_NODES] = SQL_PUT_NODE,
        [STORE_SERVICES] = SQL_PUT_SERVICE, [STORE_SPECS] = SQL_PUT_SPEC,
        [STORE_TASKS] = SQL_PUT_TASK, [STORE_EVENTS] = SQL_ADD_EVENT, [STORE_ROWS] = SQL_PUT_ROW,
    };
    static const enum store_stmt dels[] = {
        [STORE_META] = SQL_COUNT, [STORE_NODES] = SQL_DEL_NODE,
        [STORE_SERVICES] = SQL_DEL_SERVICE, [STORE_SPECS] = SQL_DEL_SPEC,
        [STORE_TASKS] = SQL_DEL_TASK, [STORE_EVENTS] = SQL_COUNT, [STORE_ROWS] = SQL_DEL_ROW,
    };

    return r->op == STORE_OP_DELETE ? dels[r->table] : puts[r->table];
}

static int store_run_row(store_sqlite_t *st, const store_row_t *r)
{
    enum store_stmt which = store_stmt_of(r);
    sqlite3_stmt *s;
    int count, rc;

    if (which == SQL_COUNT)
        return SQLITE_MISUSE;
    s = st->stmt[which];
    count = sqlite3_bind_parameter_count(s);
    for (int i = 1; i <= count; i++) {
        switch (i) {
        case 1: sqlite3_bind_text(s, i, r->key, -1, SQLITE_STATIC); break;
        case 2: sqlite3_bind_text(s, i, r->text, -1, SQLITE_STATIC); break;
        case 3: sqlite3_bind_int64(s, i, r->a); break;
        case 4: sqlite3_bind_int64(s, i, r->b); break;
        case 5: sqlite3_bind_int64(s, i, r->c); break;
        case 6:
            if (r->blob)
                sqlite3_bind_blob(s, i, r->blob, (int)r->blob_len, SQLITE_STATIC);
            else
                sqlite3_bind_blob(s, i, r->value ? (const void *)r->value : "", (int)r->len,
                                  SQLITE_STATIC);
            break;
        case 7: sqlite3_bind_text(s, i, r->text2, -1, SQLITE_STATIC); break;
        case 8: sqlite3_bind_text(s, i, r->id, -1, SQLITE_STATIC); break;
        case 9: sqlite3_bind_text(s, i, r->name, -1, SQLITE_STATIC); break;
        default: sqlite3_bind_null(s, i); break;
        }
    }
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE ? 0 : rc;
}

int store_sqlite_commit_now(store_t *base, store_batch_t *b, char *err, size_t len)
{
    store_sqlite_t *st = (store_sqlite_t *)base;
    const store_row_t *rows;
    size_t n = store_batch_rows(b, &rows);
    int events = 0;

    if (store_exec(st, SQL_BEGIN))
        return store_fail(err, len, st->db, "begin");
    for (size_t i = 0; i < n; i++) {
        events |= rows[i].op == STORE_OP_EVENT;
        if (store_run_row(st, &rows[i]))
            goto out_rollback;
    }
    if (events) {
        sqlite3_bind_int64(st->stmt[SQL_PRUNE_EVENTS], 1, (int64_t)st->base.events_kept);
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

static void store_sqlite_work(uv_work_t *w)
{
    store_sqlite_t *st = w->data;

    st->rc = store_sqlite_commit_now(&st->base, st->batch, st->err, sizeof(st->err));
}

static void store_sqlite_work_done(uv_work_t *w, int status)
{
    store_sqlite_t *st = w->data;
    store_done_fn cb = st->cb;
    void *arg = st->arg;

    store_batch_free(st->batch);
    st->batch = NULL;
    st->cb = NULL;
    if (status) {
        snprintf(st->err, sizeof(st->err), "commit: %s", uv_strerror(status));
        st->rc = SKIFF_ESTORE;
    }
    cb(arg, st->rc, st->rc ? st->err : "");
}

static int store_sqlite_commit(store_t *base, store_batch_t *b, store_done_fn cb, void *arg)
{
    store_sqlite_t *st = (store_sqlite_t *)base;
    int rc;

    if (st->batch) {
        store_batch_free(b);
        return SKIFF_EINVAL; /* one at a time */
    }
    st->batch = b;
    st->cb = cb;
    st->arg = arg;
    st->rc = 0;
    st->err[0] = '\0';
    st->work.data = st;
    if ((rc = uv_queue_work(st->loop, &st->work, store_sqlite_work, store_sqlite_work_done))) {
        st->batch = NULL;
        st->cb = NULL;
        store_batch_free(b);
        return rc;
    }
    return 0;
}

static int store_sqlite_leading(const store_t *st)
{
    return 1;
}

static void store_sqlite_stop(store_t *base, void (*done)(void *arg), void *arg)
{
    /* A commit in flight completes before the loop ends (uv_run waits for
     * queued work); nothing else runs on the loop. */
    if (done)
        done(arg);
}

static const char *store_sqlite_describe(const store_t *base)
{
    return ((const store_sqlite_t *)base)->describe;
}

static int store_sqlite_load_events(store_t *base, size_t max, void (*fn)(void *arg, Event *e),
                                    void *arg, uint64_t *last_seq)
{
    store_sqlite_t *st = (store_sqlite_t *)base;
    sqlite3_stmt *s;
    int rc = 0, step;

    if (sqlite3_prepare_v2(st->db, "SELECT MAX(seq) FROM events", -1, &s, NULL))
        return SKIFF_ESTORE;
    if (sqlite3_step(s) == SQLITE_ROW)
        *last_seq = (uint64_t)sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    if (sqlite3_prepare_v2(st->db, "SELECT data FROM (SELECT seq, data FROM events WHERE data"
                           " IS NOT NULL ORDER BY seq DESC LIMIT ?1) ORDER BY seq", -1, &s, NULL))
        return SKIFF_ESTORE;
    sqlite3_bind_int64(s, 1, (int64_t)max);
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        Event *e = (Event *)protobuf_c_message_unpack(&PB_DESC_Event, NULL,
                                                      (size_t)sqlite3_column_bytes(s, 0),
                                                      sqlite3_column_blob(s, 0));
        if (e)
            fn(arg, e); /* a row that does not decode is skipped, not fatal */
    }
    if (step != SQLITE_DONE)
        rc = SKIFF_ESTORE;
    sqlite3_finalize(s);
    return rc;
}

static const store_ops_t store_sqlite_ops = {
    .kind = "sqlite",
    .shared = 0,
    .max_value = (size_t)1 << 30,
    .commit = store_sqlite_commit,
    .leading = store_sqlite_leading,
    .scan = store_sqlite_scan,
    .stop = store_sqlite_stop,
    .free = store_sqlite_free,
    .describe = store_sqlite_describe,
    .load_events = store_sqlite_load_events,
};
