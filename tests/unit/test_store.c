/* Unit tests of the controller's store (controller/store.c) and of the model
 * helpers it loads into (controller/model.c).
 *
 * Each test gets a temporary directory with a fresh state.db path. Batches
 * are built from a model the way the controller's commit does (every
 * object put, plus deletions), committed, and store_sqlite_load() reads them into
 * a second model, which must equal the first: the same messages, the same
 * links between tasks, services and nodes, the same removed services and
 * meta values. The SQLite file is also read directly where the schema
 * itself is the point (user_version, WAL, events).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <uv.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <utlist.h>

#include "errors.h"
#include "event.h"
#include "model.h"
#include "pbutil.h"
#include "spec.h"
#include "etcd.h"
#include "log.h"
#include "store.h"

typedef struct fixture {
    char dir[PATH_MAX];
    char path[PATH_MAX + 16];
} fx_t;

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));

    if (!fx)
        return -1;
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/skiff-test-store-XXXXXX");
    if (!mkdtemp(fx->dir)) {
        free(fx);
        return -1;
    }
    snprintf(fx->path, sizeof(fx->path), "%s/state.db", fx->dir);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    char p[PATH_MAX + 32];

    unlink(fx->path);
    snprintf(p, sizeof(p), "%s-wal", fx->path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", fx->path);
    unlink(p);
    rmdir(fx->dir);
    free(fx);
    return 0;
}

/* ------------------------------------------------------------- helpers */

/* Runs one SQL statement on the file directly and returns the first column
 * of its first row as an integer (or -1 without a row). */
static long long sql_int(const char *path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    long long v = -1;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void sql_exec(const char *path, const char *sql)
{
    sqlite3 *db;
    char *err = NULL;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s: %s", sql, err);
    sqlite3_close(db);
}

/* Opens the store with stderr captured into out (the log lines it wrote). */
static store_t *open_captured(const char *path, char *out, size_t len, char *err, size_t errlen)
{
    char tmpl[] = "/tmp/skiff-test-store-log-XXXXXX";
    int fd = mkstemp(tmpl), saved;
    store_t *st;
    ssize_t n;

    assert_true(fd >= 0);
    unlink(tmpl);
    fflush(stderr);
    saved = dup(2);
    dup2(fd, 2);
    st = store_sqlite_open(NULL, path, err, errlen);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    n = pread(fd, out, len - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    close(fd);
    return st;
}

static void fixed_id(char *out, const char *prefix, int n)
{
    snprintf(out, MODEL_ID_LEN + 1, "%s%0*d", prefix, (int)(MODEL_ID_LEN - strlen(prefix)), n);
}

static node_t *add_node(model_t *m, const char *id, const char *name, const char *zone)
{
    Node *pb = PB_NEW(Node);
    node_t *n;

    assert_non_null(pb);
    pb_set_str(&pb->id, id);
    pb_set_str(&pb->name, name);
    pb_set_str(&pb->address, "127.0.0.9");
    pb->state = NODE_READY;
    pb->availability = AVAILABILITY_ACTIVE;
    pb->created_ms = 1700000000000;
    pb->resources = PB_NEW(Resources);
    pb->resources->nano_cpus = 4000000000;
    pb->resources->memory_bytes = 8ll << 30;
    if (zone) {
        Label *l = PB_NEW(Label);
        pb_set_str(&l->key, "zone");
        pb_set_str(&l->value, zone);
        assert_int_equal(pb_push_msg(&pb->n_labels, (void ***)&pb->labels, l), 0);
        /* and one set on the controller: the store keeps it (pb_equal) */
        l = PB_NEW(Label);
        pb_set_str(&l->key, "tier");
        pb_set_str(&l->value, zone);
        assert_int_equal(pb_push_msg(&pb->n_spec_labels, (void ***)&pb->spec_labels, l), 0);
    }
    n = model_node_add(m, pb);
    assert_non_null(n);
    return n;
}

/* A service at version 1, kept as the controller keeps it; constraint may
 * be NULL. */
static service_t *add_service_c(model_t *m, const char *id, const char *name, const char *image,
                                uint32_t replicas, const char *constraint)
{
    Service *pb = PB_NEW(Service);
    service_t *s;

    assert_non_null(pb);
    pb_set_str(&pb->id, id);
    pb->spec = spec_new();
    assert_non_null(pb->spec);
    pb_set_str(&pb->spec->name, name);
    pb_set_str(&pb->spec->image, image);
    pb->spec->replicas = replicas;
    if (constraint)
        assert_int_equal(pb_push_str(&pb->spec->n_constraints, &pb->spec->constraints,
                                     constraint), 0);
    pb->update_status = PB_NEW(UpdateStatus);
    pb->version = 1;
    pb->created_ms = pb->updated_ms = 1700000000001;
    s = model_service_add(m, pb);
    assert_non_null(s);
    assert_int_equal(model_service_keep_spec(m, s), 0);
    return s;
}

static service_t *add_service(model_t *m, const char *id, const char *name, const char *image,
                              uint32_t replicas)
{
    return add_service_c(m, id, name, image, replicas, NULL);
}

/* A new spec version: the image changes, the old spec becomes previous. */
static void bump_image(model_t *m, service_t *s, const char *image)
{
    ServiceSpec *spec = pb_dup(s->pb->spec);

    assert_non_null(spec);
    pb_set_str(&spec->image, image);
    pb_free(s->pb->previous_spec);
    s->pb->previous_spec = s->pb->spec;
    s->pb->spec = spec;
    s->pb->version++;
    s->pb->update_status->state = UPDATE_UPDATING;
    pb_set_str(&s->pb->update_status->message, "update in progress");
    assert_int_equal(model_service_keep_spec(m, s), 0);
}

static task_t *add_task(model_t *m, const char *id, service_t *s, node_t *n, uint32_t slot,
                        uint64_t version, DesiredState desired, TaskState state)
{
    Task *pb = PB_NEW(Task);
    task_t *t;

    assert_non_null(pb);
    pb_set_str(&pb->id, id);
    pb_set_str(&pb->service_id, s->pb->id);
    pb_set_str(&pb->service_name, s->pb->spec->name);
    pb_set_str(&pb->image, s->pb->spec->image);
    pb->slot = slot;
    pb->spec_version = version;
    pb->desired_state = desired;
    pb->state = state;
    pb->created_ms = 1700000000100 + slot;
    if (state == TASK_RUNNING) {
        PortMapping *pm = PB_NEW(PortMapping);
        pm->target = 80;
        pm->host_port = 30000 + slot;
        assert_int_equal(pb_push_msg(&pb->n_ports, (void ***)&pb->ports, pm), 0);
        pb_set_str(&pb->container_id, "c0ffee");
    }
    t = model_task_add(m, s, n, pb);
    assert_non_null(t);
    model_touch_task(m, t);
    return t;
}

/* Everything in the model, in one batch, as the controller's commit builds
 * it: nodes, services, spec versions, tasks, meta; then the deletions. */
static store_batch_t *batch_of_model(model_t *m)
{
    store_batch_t *b = store_batch_new();
    char num[32];

    assert_non_null(b);
    for (node_t *n = m->nodes; n; n = n->hh.next)
        assert_int_equal(store_put_node(b, n->pb), 0);
    for (service_t *s = m->services; s; s = s->hh.next) {
        assert_int_equal(store_put_service(b, s->pb, s->removed), 0);
        for (size_t i = 0; i < s->n_specs; i++)
            assert_int_equal(store_put_spec(b, s->pb->id, s->specs[i].version,
                                            s->specs[i].spec), 0);
    }
    for (task_t *t = m->tasks; t; t = t->hh.next)
        assert_int_equal(store_put_task(b, t->pb), 0);
    assert_int_equal(store_put_meta(b, "cluster_id", m->cluster_id), 0);
    snprintf(num, sizeof(num), "%llu", (unsigned long long)m->assignments_version);
    assert_int_equal(store_put_meta(b, "assignments_version", num), 0);
    snprintf(num, sizeof(num), "%llu", (unsigned long long)m->endpoints_version);
    assert_int_equal(store_put_meta(b, "endpoints_version", num), 0);
    for (model_deletion_t *d = m->deletions; d; d = d->next)
        assert_int_equal(store_delete(b, d->table, d->id, d->version), 0);
    return b;
}

static void commit_ok(store_t *st, store_batch_t *b)
{
    char err[256] = "";

    if (store_sqlite_commit_now(st, b, err, sizeof(err)) != 0)
        fail_msg("commit: %s", err);
    store_batch_free(b);
}

static void load_ok(store_t *st, model_t *m)
{
    char err[256] = "";

    model_init(m);
    if (store_sqlite_load(st, m, err, sizeof(err)) != 0)
        fail_msg("load: %s", err);
}

static size_t count_svc_tasks(const service_t *s)
{
    size_t n = 0;
    task_t *t;

    DL_FOREACH2(s->tasks, t, svc_next)
        n++;
    return n;
}

static size_t count_node_tasks(const node_t *node)
{
    size_t n = 0;
    task_t *t;

    DL_FOREACH2(node->tasks, t, node_next)
        n++;
    return n;
}

/* a and b hold the same nodes, services (removed or not), spec versions,
 * tasks and links, and the same meta values. */
static void assert_models_equal(model_t *a, model_t *b)
{
    assert_string_equal(a->cluster_id, b->cluster_id);
    assert_int_equal(a->assignments_version, b->assignments_version);
    assert_int_equal(a->endpoints_version, b->endpoints_version);
    assert_int_equal(HASH_COUNT(a->nodes), HASH_COUNT(b->nodes));
    assert_int_equal(HASH_CNT(hh_name, a->nodes_by_name), HASH_CNT(hh_name, b->nodes_by_name));
    assert_int_equal(HASH_COUNT(a->services), HASH_COUNT(b->services));
    assert_int_equal(HASH_CNT(hh_name, a->services_by_name),
                     HASH_CNT(hh_name, b->services_by_name));
    assert_int_equal(HASH_COUNT(a->tasks), HASH_COUNT(b->tasks));
    for (node_t *n = a->nodes; n; n = n->hh.next) {
        node_t *o = model_node_by_id(b, n->pb->id);
        assert_non_null(o);
        assert_ptr_equal(model_node_by_name(b, n->pb->name), o);
        assert_true(pb_equal(n->pb, o->pb));
        assert_int_equal(count_node_tasks(n), count_node_tasks(o));
    }
    for (service_t *s = a->services; s; s = s->hh.next) {
        service_t *o = model_service_by_id(b, s->pb->id);
        assert_non_null(o);
        assert_true(pb_equal(s->pb, o->pb));
        assert_int_equal(s->removed, o->removed);
        assert_ptr_equal(model_service_by_name(b, s->pb->spec->name), s->removed ? NULL : o);
        assert_int_equal(s->n_specs, o->n_specs);
        for (size_t i = 0; i < s->n_specs; i++) {
            const ServiceSpec *spec = NULL;
            for (size_t k = 0; k < o->n_specs; k++)
                if (o->specs[k].version == s->specs[i].version)
                    spec = o->specs[k].spec;
            assert_non_null(spec);
            assert_true(pb_equal(spec, s->specs[i].spec));
        }
        /* The current version's row is the current spec. */
        assert_true(pb_equal(model_service_spec(o, o->pb->version), s->pb->spec));
        assert_int_equal(count_svc_tasks(s), count_svc_tasks(o));
    }
    for (task_t *t = a->tasks; t; t = t->hh.next) {
        task_t *o = model_task_by_id(b, t->pb->id);
        assert_non_null(o);
        assert_true(pb_equal(t->pb, o->pb));
        assert_string_equal(o->svc->pb->id, t->svc->pb->id);
        if (t->node)
            assert_string_equal(o->node ? o->node->pb->id : "(none)", t->node->pb->id);
        else
            assert_null(o->node);
        assert_non_null(model_service_spec(o->svc, o->pb->spec_version));
    }
}

/* A small cluster: 3 nodes, a service with an update in flight (two spec
 * versions in use), one with a pending task, one removed with a task still
 * stopping, meta values. */
static void build_cluster(model_t *m)
{
    char id[MODEL_ID_LEN + 1];
    node_t *n[3];
    service_t *web, *db, *old;

    model_init(m);
    snprintf(m->cluster_id, sizeof(m->cluster_id), "0123456789abcdef0123456789abcdef");
    m->assignments_version = 41;
    m->endpoints_version = 17;
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof(name), "node-%d", i + 1);
        fixed_id(id, "a0", i + 1);
        n[i] = add_node(m, id, name, i == 2 ? "eu" : "us");
    }
    n[2]->pb->availability = AVAILABILITY_DRAIN;
    n[1]->pb->state = NODE_DOWN;
    fixed_id(id, "b0", 1);
    web = add_service(m, id, "web", "web:v1", 3);
    bump_image(m, web, "web:v2");
    fixed_id(id, "b0", 2);
    db = add_service_c(m, id, "db", "postgres:16", 1, "node.labels.zone==asia");
    fixed_id(id, "b0", 3);
    old = add_service(m, id, "old", "old:1", 1);
    model_service_mark_removed(m, old);
    for (uint32_t slot = 1; slot <= 3; slot++) {
        fixed_id(id, "c1", (int)slot);
        add_task(m, id, web, n[slot - 1], slot, 1, slot == 1 ? DESIRED_SHUTDOWN : DESIRED_RUNNING,
                 slot == 1 ? TASK_SHUTDOWN : TASK_RUNNING);
    }
    fixed_id(id, "c2", 1);
    add_task(m, id, web, n[0], 1, 2, DESIRED_RUNNING, TASK_STARTING);
    fixed_id(id, "c3", 1);
    add_task(m, id, db, NULL, 1, 1, DESIRED_RUNNING, TASK_PENDING);
    fixed_id(id, "c4", 1);
    add_task(m, id, old, n[2], 1, 1, DESIRED_SHUTDOWN, TASK_RUNNING);
}

/* --------------------------------------------------------------- schema */

/* Adds an event row (seq, time, type, name, message) to a batch. */
static int add_event(store_batch_t *b, uint64_t seq, int64_t time_ms, const char *type,
                     const char *name, const char *message)
{
    Event *e = event_new(type, "test", "id", name, time_ms);
    int rc;

    assert_non_null(e);
    e->seq = seq;
    pb_set_str(&e->message, message);
    rc = store_add_event(b, e);
    pb_free(e);
    return rc;
}

static void test_open_creates_schema(void **state)
{
    fx_t *fx = *state;
    char log[4096], err[256] = "";
    store_t *st;
    model_t m;

    st = open_captured(fx->path, log, sizeof(log), err, sizeof(err));
    if (!st)
        fail_msg("store_open: %s", err);
    assert_non_null(strstr(log, "migrated to version 1"));
    assert_non_null(strstr(log, "migrated to version 2"));
    assert_non_null(strstr(log, "migrated to version 3"));
    store_close(st);

    assert_int_equal(sql_int(fx->path, "PRAGMA user_version"), 3);
    assert_int_equal(sql_int(fx->path, "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                             " AND name IN ('meta', 'nodes', 'services', 'specs', 'tasks',"
                             " 'events')"), 6);
    {
        sqlite3 *db;
        sqlite3_stmt *s;
        assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(s), SQLITE_ROW);
        assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
        sqlite3_finalize(s);
        sqlite3_close(db);
    }
    sql_exec(fx->path, "INSERT INTO meta (key, value) VALUES ('cluster_id', 'kept')");

    /* Again: no migration runs, and what was there stays. */
    st = open_captured(fx->path, log, sizeof(log), err, sizeof(err));
    if (!st)
        fail_msg("store_open again: %s", err);
    assert_null(strstr(log, "migrated"));
    load_ok(st, &m);
    assert_string_equal(m.cluster_id, "kept");
    {
        char v[64];
        assert_int_equal(store_sqlite_get_meta(st, "cluster_id", v, sizeof(v)), 1);
        assert_string_equal(v, "kept");
        assert_int_equal(store_sqlite_get_meta(st, "nothing", v, sizeof(v)), 0);
    }
    model_free(&m);
    store_close(st);
    assert_int_equal(sql_int(fx->path, "PRAGMA user_version"), 3);
}

static void test_newer_schema_refused(void **state)
{
    fx_t *fx = *state;
    char err[256] = "";
    store_t *st;

    sql_exec(fx->path, "CREATE TABLE future (x); PRAGMA user_version = 7;");
    st = store_sqlite_open(NULL, fx->path, err, sizeof(err));
    assert_null(st);
    assert_non_null(strstr(err, "schema version 7"));
    assert_non_null(strstr(err, "up to 3"));
    /* Left as it was. */
    assert_int_equal(sql_int(fx->path, "PRAGMA user_version"), 7);
    assert_int_equal(sql_int(fx->path, "SELECT count(*) FROM sqlite_master WHERE name = 'nodes'"),
                     0);
}

static void test_open_fails_cleanly(void **state)
{
    fx_t *fx = *state;
    char err[256] = "", path[PATH_MAX + 32];

    snprintf(path, sizeof(path), "%s/no/such/dir/state.db", fx->dir);
    assert_null(store_sqlite_open(NULL, path, err, sizeof(err)));
    assert_true(strlen(err) > 0);
}

/* ------------------------------------------------------------ round trip */

static void test_roundtrip(void **state)
{
    fx_t *fx = *state;
    char err[256] = "";
    store_t *st = store_sqlite_open(NULL, fx->path, err, sizeof(err));
    model_t a, b;
    store_batch_t *batch;

    if (!st)
        fail_msg("store_open: %s", err);
    build_cluster(&a);
    batch = batch_of_model(&a);
    assert_true(store_batch_size(batch) > 10);
    assert_int_equal(add_event(batch, 1, 1700000000000, "service", "web", "created"), 0);
    commit_ok(st, batch);
    store_close(st);

    /* A fresh process: open, load. */
    st = store_sqlite_open(NULL, fx->path, err, sizeof(err));
    assert_non_null(st);
    load_ok(st, &b);
    assert_models_equal(&a, &b);

    /* The links, one by one. */
    {
        service_t *web = model_service_by_name(&b, "web");
        service_t *db = model_service_by_name(&b, "db");
        node_t *n1 = model_node_by_name(&b, "node-1");
        char id[MODEL_ID_LEN + 1];
        task_t *t;

        assert_non_null(web);
        assert_non_null(db);
        assert_non_null(n1);
        assert_int_equal(web->pb->version, 2);
        assert_string_equal(web->pb->spec->image, "web:v2");
        assert_string_equal(web->pb->previous_spec->image, "web:v1");
        assert_int_equal(web->pb->update_status->state, UPDATE_UPDATING);
        assert_string_equal(model_service_spec(web, 1)->image, "web:v1");
        assert_string_equal(model_service_spec(web, 2)->image, "web:v2");
        assert_int_equal(count_svc_tasks(web), 4);
        assert_int_equal(count_node_tasks(n1), 2);
        DL_FOREACH2(n1->tasks, t, node_next)
            assert_ptr_equal(t->svc, web);
        fixed_id(id, "c3", 1);
        t = model_task_by_id(&b, id);
        assert_non_null(t);
        assert_ptr_equal(t->svc, db);
        assert_null(t->node);
        assert_int_equal(t->pb->state, TASK_PENDING);
        assert_string_equal(db->pb->spec->constraints[0], "node.labels.zone==asia");
        /* The removed service is there, by id only, with its stopping task. */
        fixed_id(id, "b0", 3);
        assert_non_null(model_service_by_id(&b, id));
        assert_true(model_service_by_id(&b, id)->removed);
        assert_null(model_service_by_name(&b, "old"));
        assert_int_equal(count_svc_tasks(model_service_by_id(&b, id)), 1);
        assert_int_equal(model_node_by_name(&b, "node-3")->pb->availability, AVAILABILITY_DRAIN);
        assert_int_equal(model_node_by_name(&b, "node-2")->pb->state, NODE_DOWN);
    }
    /* Loading is no change; every node will get its set when it registers. */
    assert_false(model_has_changes(&b));
    for (node_t *n = b.nodes; n; n = n->hh.next)
        assert_true(n->assign_dirty);
    assert_int_equal(sql_int(fx->path, "SELECT count(*) FROM events"), 1);

    model_free(&a);
    model_free(&b);
    store_close(st);
}

/* Rows put again replace the old ones; deletions remove them, by id and,
 * for specs, by (service, version). */
static void test_updates_and_deletions(void **state)
{
    fx_t *fx = *state;
    char err[256] = "", id[MODEL_ID_LEN + 1];
    store_t *st = store_sqlite_open(NULL, fx->path, err, sizeof(err));
    model_t a, b, c;
    service_t *web, *old;
    task_t *t;
    store_batch_t *batch;

    assert_non_null(st);
    build_cluster(&a);
    commit_ok(st, batch_of_model(&a));
    load_ok(st, &b);

    /* On b, as the controller would: slot 1's old task leaves the history,
     * v1 is no longer used there... */
    web = model_service_by_name(&b, "web");
    fixed_id(id, "c1", 1);
    model_task_delete(&b, model_task_by_id(&b, id));
    /* ... a task changes state ... */
    fixed_id(id, "c2", 1);
    t = model_task_by_id(&b, id);
    t->pb->state = TASK_RUNNING;
    model_touch_task(&b, t);
    /* ... the removed service goes with its task and specs ... */
    fixed_id(id, "b0", 3);
    old = model_service_by_id(&b, id);
    model_service_delete(&b, old);
    /* ... node-2 is removed; its task loses its node. */
    model_node_remove(&b, model_node_by_name(&b, "node-2"));
    fixed_id(id, "c1", 2);
    assert_null(model_task_by_id(&b, id)->node);
    b.assignments_version = 99;
    model_service_prune_specs(&b, web); /* v1 still used by slots 2 and 3 */
    assert_non_null(model_service_spec(web, 1));

    batch = batch_of_model(&b);
    commit_ok(st, batch);
    while (b.deletions) {
        model_deletion_t *d = b.deletions;
        b.deletions = d->next;
        free(d);
    }
    b.dirty_tasks = NULL;
    for (task_t *x = b.tasks; x; x = x->hh.next)
        x->dirty = MODEL_CLEAN;

    load_ok(st, &c);
    assert_models_equal(&b, &c);
    assert_int_equal(HASH_COUNT(c.services), 2);
    assert_int_equal(HASH_COUNT(c.nodes), 2);
    assert_int_equal(HASH_COUNT(c.tasks), 4);
    assert_int_equal(c.assignments_version, 99);
    fixed_id(id, "c2", 1);
    assert_int_equal(model_task_by_id(&c, id)->pb->state, TASK_RUNNING);
    assert_int_equal(sql_int(fx->path, "SELECT count(*) FROM specs"), 3); /* web 1, 2; db 1 */
    assert_int_equal(sql_int(fx->path, "SELECT count(*) FROM tasks WHERE node_id IS NULL"), 1);

    /* A spec version deleted by (service, version) only. */
    batch = store_batch_new();
    assert_int_equal(store_delete(batch, STORE_SPECS, web->pb->id, 1), 0);
    assert_int_equal(store_delete(batch, STORE_META, "cluster_id", 0), SKIFF_EINVAL);
    assert_int_equal(store_delete(batch, STORE_EVENTS, "1", 0), SKIFF_EINVAL);
    commit_ok(st, batch);
    assert_int_equal(sql_int(fx->path, "SELECT count(*) FROM specs"), 2);
    assert_int_equal(sql_int(fx->path, "SELECT version FROM specs WHERE service_id = '"
                             "b000000000000001'"), 2);

    model_free(&a);
    model_free(&b);
    model_free(&c);
    store_close(st);
}

/* A batch that fails in the middle writes nothing, and the store goes on. */
static void test_failed_batch_commits_nothing(void **state)
{
    fx_t *fx = *state;
    char err[256] = "", id[MODEL_ID_LEN + 1];
    store_t *st = store_sqlite_open(NULL, fx->path, err, sizeof(err));
    model_t a, b, empty;
    store_batch_t *batch;
    task_t *boom;
    int rc;

    assert_non_null(st);
    sql_exec(fx->path, "CREATE TRIGGER boom BEFORE INSERT ON tasks WHEN NEW.id = 'c500000000000001'"
                       " BEGIN SELECT RAISE(ABORT, 'forced failure'); END;");
    build_cluster(&a);
    fixed_id(id, "c5", 1);
    boom = add_task(&a, id, model_service_by_name(&a, "web"), NULL, 3, 2, DESIRED_RUNNING,
                    TASK_NEW);
    (void)boom;
    /* Nodes and services come before tasks in the batch, the meta after:
     * rows on both sides of the failing one. */
    batch = batch_of_model(&a);
    assert_int_equal(add_event(batch, 1, 1, "node", "node-1", "joined"), 0);
    rc = store_sqlite_commit_now(st, batch, err, sizeof(err));
    store_batch_free(batch);
    assert_int_equal(rc, SKIFF_ESTORE);
    assert_non_null(strstr(err, "forced failure"));
    load_ok(st, &empty);
    assert_int_equal(HASH_COUNT(empty.nodes), 0);
    assert_int_equal(HASH_COUNT(empty.services), 0);
    assert_int_equal(HASH_COUNT(empty.tasks), 0);
    assert_string_equal(empty.cluster_id, "");
    model_free(&empty);
    assert_int_equal(sql_int(fx->path, "SELECT count(*) FROM events"), 0);

    /* The same store takes the next batch. */
    sql_exec(fx->path, "DROP TRIGGER boom");
    commit_ok(st, batch_of_model(&a));
    load_ok(st, &b);
    assert_models_equal(&a, &b);
    model_free(&a);
    model_free(&b);
    store_close(st);
}

static void test_events_pruned(void **state)
{
    fx_t *fx = *state;
    char err[256] = "", msg[64];
    store_t *st = store_sqlite_open(NULL, fx->path, err, sizeof(err));
    store_batch_t *batch = store_batch_new();
    const int kept = 10000, extra = 25;

    assert_non_null(st);
    for (int i = 0; i < kept + extra; i++) {
        snprintf(msg, sizeof(msg), "event %d", i);
        assert_int_equal(add_event(batch, (uint64_t)i + 1, 1700000000000 + i, "node", "n1", msg), 0);
    }
    commit_ok(st, batch);
    assert_int_equal(sql_int(fx->path, "SELECT count(*) FROM events"), kept);
    /* The oldest went; the newest stay. */
    assert_int_equal(sql_int(fx->path, "SELECT count(*) FROM events WHERE message = 'event 24'"),
                     0);
    assert_int_equal(sql_int(fx->path, "SELECT count(*) FROM events WHERE message = 'event 25'"),
                     1);
    assert_int_equal(sql_int(fx->path, "SELECT min(time_ms) FROM events"), 1700000000000 + extra);
    assert_int_equal(sql_int(fx->path, "SELECT count(*) FROM events WHERE kind = 'node' AND "
                             "object = 'n1'"), kept);

    batch = store_batch_new();
    for (int i = 0; i < 3; i++)
        assert_int_equal(add_event(batch, (uint64_t)(kept + extra + i + 1), 1800000000000 + i, "service", "web", "x"), 0);
    commit_ok(st, batch);
    assert_int_equal(sql_int(fx->path, "SELECT count(*) FROM events"), kept);
    assert_int_equal(sql_int(fx->path, "SELECT count(*) FROM events WHERE kind = 'service'"), 3);
    store_close(st);
}

typedef struct loaded {
    uint64_t seqs[16];
    int n;
} loaded_t;

static void on_loaded(void *arg, Event *e)
{
    loaded_t *l = arg;

    if (l->n < 16)
        l->seqs[l->n] = e->seq;
    l->n++;
    pb_free(e);
}

static void test_events_loaded(void **state)
{
    fx_t *fx = *state;
    char err[256] = "";
    store_t *st = store_sqlite_open(NULL, fx->path, err, sizeof(err));
    store_batch_t *batch = store_batch_new();
    loaded_t l = { { 0 }, 0 };
    uint64_t last;

    assert_non_null(st);
    store_set_events_kept(st, 8);
    for (int i = 1; i <= 12; i++)
        assert_int_equal(add_event(batch, (uint64_t)i, 1000 + i, "node", "n1", "x"), 0);
    commit_ok(st, batch);
    assert_int_equal(sql_int(fx->path, "SELECT count(*) FROM events"), 8);
    /* a row of the first schema (no data) counts for the seq only */
    sql_exec(fx->path, "INSERT INTO events (seq, time_ms, kind, object, message) VALUES"
                       " (20, 5, 'node', 'n1', 'old')");
    assert_int_equal(store_load_events(st, 5, on_loaded, &l, &last), 0);
    assert_int_equal(last, 20);
    assert_int_equal(l.n, 5);
    assert_int_equal(l.seqs[0], 8); /* the newest five, oldest first */
    assert_int_equal(l.seqs[4], 12);
    store_close(st);
}

/* ---------------------------------------------------------- model helpers */

static void test_model_find(void **state)
{
    model_t m;
    int amb = -1;
    service_t *s1, *s2, *s3, *gone;

    (void)state;
    model_init(&m);
    add_node(&m, "abcd000000000001", "n1", NULL);
    add_node(&m, "abcd000000000002", "n2", NULL);
    add_node(&m, "ffff000000000003", "abcd", NULL); /* a name that is a prefix of ids */

    assert_string_equal(model_node_find(&m, "n1", &amb)->pb->id, "abcd000000000001");
    assert_int_equal(amb, 0);
    assert_string_equal(model_node_find(&m, "abcd000000000002", &amb)->pb->name, "n2");
    assert_null(model_node_find(&m, "abcd0000000000", &amb));
    assert_int_equal(amb, 1);
    assert_null(model_node_find(&m, "abcd00000000000", &amb));
    assert_int_equal(amb, 1);
    /* A name wins over an id prefix. */
    assert_string_equal(model_node_find(&m, "abcd", &amb)->pb->name, "abcd");
    assert_int_equal(amb, 0);
    assert_string_equal(model_node_find(&m, "ff", &amb)->pb->name, "abcd");
    assert_null(model_node_find(&m, "zz", &amb));
    assert_int_equal(amb, 0);
    assert_null(model_node_find(&m, "", &amb));
    assert_int_equal(amb, 0);

    s1 = add_service(&m, "5e00000000000001", "web", "web:1", 1);
    s2 = add_service(&m, "5e00000000000002", "api", "api:1", 1);
    s3 = add_service(&m, "7700000000000003", "db", "db:1", 1);
    gone = add_service(&m, "7700000000000004", "old", "old:1", 1);
    model_service_mark_removed(&m, gone);
    assert_ptr_equal(model_service_find(&m, "web", &amb), s1);
    assert_ptr_equal(model_service_find(&m, "5e00000000000002", &amb), s2);
    assert_ptr_equal(model_service_find(&m, "5e000000000000", &amb), NULL);
    assert_int_equal(amb, 1);
    assert_ptr_equal(model_service_find(&m, "5e000000000000020", &amb), NULL);
    assert_int_equal(amb, 0);
    /* The removed service is found by nothing and makes no prefix ambiguous. */
    assert_ptr_equal(model_service_find(&m, "77", &amb), s3);
    assert_int_equal(amb, 0);
    assert_null(model_service_find(&m, "old", &amb));
    assert_null(model_service_find(&m, "7700000000000004", &amb));
    assert_ptr_equal(model_service_find(&m, "770000000000000", &amb), s3); /* gone's too */
    assert_int_equal(amb, 0);
    assert_ptr_equal(model_service_find(&m, "7700000000000003", &amb), s3);
    assert_ptr_equal(model_service_by_id(&m, "7700000000000004"), gone);
    /* Updates replace (and free) a service's spec: it is still found by
     * its name. */
    {
        ServiceSpec *spec = pb_dup(s1->pb->spec);
        assert_non_null(spec);
        pb_set_str(&spec->image, "web:2");
        pb_free(s1->pb->spec);
        s1->pb->spec = spec;
        assert_ptr_equal(model_service_find(&m, "web", &amb), s1);
        assert_ptr_equal(model_service_by_name(&m, "web"), s1);
    }
    /* Its name is free for a new service. */
    assert_non_null(add_service(&m, "7700000000000005", "old", "old:2", 1));
    assert_string_equal(model_service_find(&m, "old", &amb)->pb->spec->image, "old:2");
    model_free(&m);
}

static int has_deletion(const model_t *m, int table, const char *id, uint64_t version)
{
    for (const model_deletion_t *d = m->deletions; d; d = d->next)
        if (d->table == table && strcmp(d->id, id) == 0 && d->version == version)
            return 1;
    return 0;
}

static int has_spec_put(const model_t *m, const service_t *s, uint64_t version)
{
    for (const struct model_spec_put *p = m->spec_puts; p; p = p->next)
        if (p->svc == s && p->version == version)
            return 1;
    return 0;
}

static void test_model_specs(void **state)
{
    model_t m;
    service_t *s;
    task_t *t;

    (void)state;
    model_init(&m);
    s = add_service(&m, "5e00000000000001", "web", "web:1", 2);
    assert_int_equal(s->n_specs, 1);
    assert_true(has_spec_put(&m, s, 1));
    assert_int_equal(model_service_keep_spec(&m, s), 0); /* kept once */
    assert_int_equal(s->n_specs, 1);
    t = add_task(&m, "7a00000000000001", s, NULL, 1, 1, DESIRED_RUNNING, TASK_RUNNING);

    bump_image(&m, s, "web:2");
    assert_int_equal(s->n_specs, 2);
    assert_true(has_spec_put(&m, s, 2));
    /* The kept copy is a copy: changing the current spec leaves it. */
    s->pb->spec->replicas = 5;
    assert_ptr_equal(model_service_spec(s, 2), s->pb->spec); /* the current one */
    assert_int_equal(s->specs[1].spec->replicas, 2);
    assert_string_equal(model_service_spec(s, 1)->image, "web:1");
    assert_null(model_service_spec(s, 7));

    model_service_prune_specs(&m, s); /* v1 is used by t */
    assert_int_equal(s->n_specs, 2);
    assert_null(m.deletions);

    t->pb->spec_version = 2;
    model_service_prune_specs(&m, s);
    assert_int_equal(s->n_specs, 1);
    assert_int_equal(s->specs[0].version, 2);
    assert_null(model_service_spec(s, 1));
    assert_true(has_deletion(&m, STORE_SPECS, s->pb->id, 1));
    assert_false(has_spec_put(&m, s, 1)); /* never written now */
    assert_true(has_spec_put(&m, s, 2));
    /* The current version stays even when no task uses it. */
    model_task_delete(&m, t);
    model_service_prune_specs(&m, s);
    assert_int_equal(s->n_specs, 1);
    assert_non_null(model_service_spec(s, 2));
    model_free(&m);
}

static void test_model_task_delete(void **state)
{
    model_t m;
    node_t *n;
    service_t *s;
    task_t *t1, *t2, *t3;

    (void)state;
    model_init(&m);
    n = add_node(&m, "a000000000000001", "n1", NULL);
    s = add_service(&m, "5e00000000000001", "web", "web:1", 3);
    t1 = add_task(&m, "7a00000000000001", s, n, 1, 1, DESIRED_RUNNING, TASK_RUNNING);
    t2 = add_task(&m, "7a00000000000002", s, n, 2, 1, DESIRED_RUNNING, TASK_RUNNING);
    t3 = add_task(&m, "7a00000000000003", s, NULL, 3, 1, DESIRED_RUNNING, TASK_PENDING);
    assert_int_equal(count_node_tasks(n), 2);
    assert_int_equal(count_svc_tasks(s), 3);
    assert_ptr_equal(m.dirty_tasks, t3); /* newest first */
    n->assign_dirty = 0;

    model_task_delete(&m, t2);
    assert_null(model_task_by_id(&m, "7a00000000000002"));
    assert_int_equal(count_node_tasks(n), 1);
    assert_ptr_equal(n->tasks, t1);
    assert_int_equal(count_svc_tasks(s), 2);
    assert_ptr_equal(s->tasks, t1);
    assert_ptr_equal(s->tasks->svc_next, t3);
    assert_true(n->assign_dirty);
    for (task_t *t = m.dirty_tasks; t; t = t->dirty_next)
        assert_true(t == t1 || t == t3);
    assert_true(has_deletion(&m, STORE_TASKS, "7a00000000000002", 0));

    /* Moving a task between nodes relinks it and marks both sets. */
    {
        node_t *n2 = add_node(&m, "a000000000000002", "n2", NULL);
        n->assign_dirty = 0;
        model_task_set_node(&m, t1, n2);
        assert_null(n->tasks);
        assert_ptr_equal(n2->tasks, t1);
        assert_true(n->assign_dirty && n2->assign_dirty);
        assert_string_equal(t1->pb->node_name, "n2");
        model_task_set_node(&m, t3, n2);
        assert_int_equal(count_node_tasks(n2), 2);
        /* Removing the node leaves its tasks without one. */
        model_node_remove(&m, n2);
        assert_null(t1->node);
        assert_null(t3->node);
        assert_null(model_node_by_name(&m, "n2"));
        assert_true(has_deletion(&m, STORE_NODES, "a000000000000002", 0));
    }
    /* Deleting the service deletes its tasks and spec rows. */
    model_service_mark_removed(&m, s);
    model_service_delete(&m, s);
    assert_null(model_service_by_id(&m, "5e00000000000001"));
    assert_int_equal(HASH_COUNT(m.tasks), 0);
    assert_null(m.dirty_tasks);
    assert_null(m.dirty_services);
    assert_null(m.spec_puts);
    assert_true(has_deletion(&m, STORE_TASKS, "7a00000000000001", 0));
    assert_true(has_deletion(&m, STORE_TASKS, "7a00000000000003", 0));
    assert_true(has_deletion(&m, STORE_SPECS, "5e00000000000001", 1));
    assert_true(has_deletion(&m, STORE_SERVICES, "5e00000000000001", 0));
    model_free(&m);
}

static void test_model_states(void **state)
{
    model_t m;
    service_t *s;
    task_t *t;

    (void)state;
    model_init(&m);
    s = add_service(&m, "5e00000000000001", "web", "web:1", 1);
    t = add_task(&m, "7a00000000000001", s, NULL, 1, 1, DESIRED_RUNNING, TASK_RUNNING);
    assert_true(model_task_ready(t));
    t->pb->health = HEALTH_STARTING;
    assert_false(model_task_ready(t));
    pb_push_str(&s->pb->spec->health->n_test, &s->pb->spec->health->test, "CMD");
    pb_push_str(&s->pb->spec->health->n_test, &s->pb->spec->health->test, "true");
    assert_true(model_spec_has_check(s->pb->spec));
    t->pb->health = HEALTH_NONE;
    assert_false(model_task_ready(t)); /* checked: healthy only */
    t->pb->health = HEALTH_HEALTHY;
    assert_true(model_task_ready(t));
    t->pb->state = TASK_STARTING;
    assert_false(model_task_ready(t));
    assert_false(model_spec_has_check(NULL));
    pb_set_str(&s->pb->spec->health->test[0], "NONE");
    assert_false(model_spec_has_check(s->pb->spec));
    pb_set_str(&s->pb->spec->health->http_path, "/health");
    assert_true(model_spec_has_check(s->pb->spec));
    for (int st = TASK_NEW; st <= TASK_REMOVED; st++)
        assert_int_equal(model_state_terminal((TaskState)st),
                         st == TASK_COMPLETE || st == TASK_FAILED || st == TASK_SHUTDOWN ||
                         st == TASK_REJECTED || st == TASK_REMOVED);
    {
        char a[MODEL_ID_LEN + 1], b[MODEL_ID_LEN + 1];
        model_new_id(a);
        model_new_id(b);
        assert_int_equal(strlen(a), MODEL_ID_LEN);
        assert_int_equal(strspn(a, "0123456789abcdef"), MODEL_ID_LEN);
        assert_string_not_equal(a, b);
    }
    model_free(&m);
}

/* --------------------------------------------- every table, generically */

typedef struct scan_copy {
    store_batch_t *b;
    size_t rows;
    int named;
} scan_copy_t;

static int copy_row(void *arg, const char *table, const char *key, const uint8_t *value,
                    size_t len)
{
    scan_copy_t *c = arg;

    c->rows++;
    c->named += strcmp(table, "ca") == 0;
    assert_int_equal(store_put_row(c->b, table, key, value, len), 0);
    return 0;
}

/* What migrate does: every row of one store, scanned, put by name into
 * another; the copy loads as the same model, named tables included. */
static void test_scan_copies_every_table(void **state)
{
    fx_t *fx = *state;
    char err[256] = "", path2[PATH_MAX + 32];
    store_t *st = store_sqlite_open(NULL, fx->path, err, sizeof(err)), *st2;
    scan_copy_t copy = { 0 };
    store_batch_t *b;
    model_t a, c;
    model_row_t *row;

    assert_non_null(st);
    build_cluster(&a);
    b = batch_of_model(&a);
    assert_int_equal(store_put_row(b, "ca", "cert", (const uint8_t *)"PEM\0bytes", 9), 0);
    assert_int_equal(add_event(b, 1, 1, "node", "n", "gone"), 0);
    commit_ok(st, b);
    /* Bad rows by name are refused. */
    b = store_batch_new();
    assert_int_equal(store_put_row(b, "Bad-Name", "k", (const uint8_t *)"v", 1), SKIFF_EINVAL);
    assert_int_equal(store_put_row(b, "nodes", "k", (const uint8_t *)"\xff\xff", 2), SKIFF_EINVAL);
    assert_int_equal(store_put_row(b, "events", "1", (const uint8_t *)"{}", 2), SKIFF_EINVAL);
    assert_int_equal(store_put_row(b, "specs", "noversion", (const uint8_t *)"", 0), SKIFF_EINVAL);
    assert_int_equal(store_batch_size(b), 0);
    store_batch_free(b);

    snprintf(path2, sizeof(path2), "%s/copy.db", fx->dir);
    st2 = store_sqlite_open(NULL, path2, err, sizeof(err));
    assert_non_null(st2);
    copy.b = store_batch_new();
    assert_int_equal(st->ops->scan(st, copy_row, &copy, err, sizeof(err)), 0);
    assert_int_equal(copy.named, 1);
    assert_int_equal(copy.rows, store_batch_size(copy.b));
    commit_ok(st2, copy.b);
    load_ok(st2, &c);
    row = model_row_get(&c, "ca", "cert");
    assert_non_null(row);
    assert_int_equal(row->len, 9);
    assert_memory_equal(row->value, "PEM\0bytes", 9);
    assert_models_equal(&a, &c);
    /* The events are not copied. */
    assert_int_equal(sql_int(path2, "SELECT count(*) FROM events"), 0);
    model_free(&a);
    model_free(&c);
    store_close(st);
    store_close(st2);
    unlink(path2);
}

/* ------------------------------------------------------ the etcd backend */

/* A real etcd (one member, etcd-server 3.4) for the group, on free ports in
 * its own directory. */
static struct {
    pid_t pid;
    char dir[PATH_MAX];
    char endpoint[64];
    int started;
} etcd;

static uv_loop_t eloop;

typedef struct sh {
    store_t *st;
    uv_loop_t *loop;
    model_t m;
    int identities, leads, lost, fatal, follows;
    char why[512], following[128], join[72];
    char candidate[64];     /* the CA root it offers an empty prefix */
    char root[64];          /* the first CA root its last identity carried */
    size_t n_roots;
} sh_t;

static void sh_identity(void *arg, const char *cluster, const char *join, const char *admin,
                        const store_blob_t *roots, size_t n_roots)
{
    sh_t *h = arg;

    h->identities++;
    h->n_roots = n_roots;
    snprintf(h->root, sizeof(h->root), "%.*s", n_roots ? (int)roots[0].len : 0,
             n_roots ? (const char *)roots[0].value : "");
    snprintf(h->join, sizeof(h->join), "%s", join);
    snprintf(h->m.cluster_id, sizeof(h->m.cluster_id), "%s", cluster);
}

static void sh_lead(void *arg)
{
    ((sh_t *)arg)->leads++;
}

static void sh_follow(void *arg, const char *leader)
{
    sh_t *h = arg;

    h->follows++;
    snprintf(h->following, sizeof(h->following), "%s", leader);
}

static void sh_lost(void *arg, const char *why)
{
    sh_t *h = arg;

    h->lost++;
    snprintf(h->why, sizeof(h->why), "%s", why);
}

static void sh_fatal(void *arg, const char *why)
{
    sh_t *h = arg;

    h->fatal++;
    snprintf(h->why, sizeof(h->why), "%s", why);
}

static const store_events_t sh_events = { sh_identity, sh_lead, sh_follow, sh_lost, sh_fatal };

#define RUN_UNTIL(loop, cond, ms)                                                    \
    do {                                                                             \
        uint64_t end_ = uv_hrtime() / 1000000 + (ms);                                \
        while (!(cond)) {                                                            \
            if (uv_hrtime() / 1000000 > end_)                                        \
                fail_msg("%d: timed out waiting for %s", __LINE__, #cond);          \
            uv_run((loop), UV_RUN_ONCE);                                             \
        }                                                                            \
    } while (0)

static int free_port(void)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static void sh_open(sh_t *h, uv_loop_t *loop, const char *prefix, const char *cluster,
                    const char *address)
{
    store_etcd_config_t cfg = { .endpoints = etcd.endpoint, .prefix = prefix, .lease_ms = 3000,
                                .address = address, .cluster_id = cluster };
    char err[256];

    memset(h, 0, sizeof(*h));
    /* The store keeps the root's bytes as they are: any value will do. */
    snprintf(h->candidate, sizeof(h->candidate), "root of %s", address);
    cfg.ca_root = (const uint8_t *)h->candidate;
    cfg.ca_root_len = strlen(h->candidate);
    cfg.ca_root_id = address;
    h->loop = loop;
    model_init(&h->m);
    if (!(h->st = store_etcd_open(loop, &cfg, err, sizeof(err))))
        fail_msg("store_etcd_open: %s", err);
    assert_int_equal(h->st->ops->start(h->st, &h->m, &sh_events, h), 0);
}

static void sh_done(void *arg)
{
    *(int *)arg = 1;
}

static void sh_close(sh_t *h)
{
    int done = 0;

    store_stop(h->st, sh_done, &done);
    RUN_UNTIL(h->loop, done, 5000);
    store_close(h->st);
    model_free(&h->m);
}

typedef struct committed {
    int done, rc;
    char err[256];
} committed_t;

static void on_committed(void *arg, int rc, const char *err)
{
    committed_t *c = arg;

    c->done = 1;
    c->rc = rc;
    snprintf(c->err, sizeof(c->err), "%s", err);
}

static int sh_commit(sh_t *h, store_batch_t *b, char *err, size_t len)
{
    committed_t c = { 0 };
    int rc = store_commit(h->st, b, on_committed, &c);

    if (rc) {
        snprintf(err, len, "commit refused at once: %d", rc);
        return rc;
    }
    RUN_UNTIL(h->loop, c.done, 10000);
    snprintf(err, len, "%s", c.err);
    return c.rc;
}

/* A call of its own to etcd: a txn, run on loop until it answers. */
typedef struct answered {
    int done, rc, succeeded;
    int64_t count;
} answered_t;

static void on_admin(void *arg, int rc, const char *err, etcd_answer_t *a)
{
    answered_t *r = arg;

    r->done = 1;
    r->rc = rc;
    r->succeeded = a->txn.succeeded;
    r->count = a->txn.n_ranges ? a->txn.ranges[0].count : 0;
}

static answered_t admin_txn(uv_loop_t *loop, const etcd_txn_t *txn)
{
    etcd_config_t cfg = { .endpoints = { etcd.endpoint }, .n_endpoints = 1 };
    etcd_t *e = etcd_create(loop, &cfg);
    answered_t r = { 0 };
    int closed = 0;

    assert_non_null(e);
    assert_non_null(etcd_txn(e, txn, 5000, on_admin, &r));
    RUN_UNTIL(loop, r.done, 6000);
    etcd_close(e, sh_done, &closed);
    RUN_UNTIL(loop, closed, 5000);
    assert_int_equal(r.rc, 0);
    return r;
}

/* Keys under prefix, as etcd counts them. */
static int64_t count_keys(uv_loop_t *loop, const char *prefix)
{
    char *end = etcd_prefix_end(prefix);
    etcd_op_t op = { .kind = ETCD_OP_RANGE, .key = prefix, .range_end = end, .count_only = 1 };
    etcd_txn_t txn = { NULL, 0, &op, 1, NULL, 0 };
    answered_t r = admin_txn(loop, &txn);

    free(end);
    return r.count;
}

static void admin_put(uv_loop_t *loop, const char *key, const char *value)
{
    etcd_op_t op = { .kind = ETCD_OP_PUT, .key = key, .value = (const uint8_t *)value,
                     .len = strlen(value) };
    etcd_txn_t txn = { NULL, 0, &op, 1, NULL, 0 };

    admin_txn(loop, &txn);
}

static void admin_delete(uv_loop_t *loop, const char *key)
{
    etcd_op_t op = { .kind = ETCD_OP_DELETE, .key = key };
    etcd_txn_t txn = { NULL, 0, &op, 1, NULL, 0 };

    admin_txn(loop, &txn);
}

static int etcd_group_setup(void **state)
{
    char client[128], peer[128], cluster[160], data[PATH_MAX + 16], logf[PATH_MAX + 16];
    int cport = free_port(), pport = free_port();

    if (access("/usr/bin/etcd", X_OK) != 0 && system("command -v etcd >/dev/null") != 0)
        return 0; /* the tests skip (tests/run.sh installs etcd-server) */
    snprintf(etcd.dir, sizeof(etcd.dir), "/tmp/skiff-test-etcd-XXXXXX");
    if (!mkdtemp(etcd.dir))
        return -1;
    snprintf(client, sizeof(client), "http://127.0.0.1:%d", cport);
    snprintf(peer, sizeof(peer), "http://127.0.0.1:%d", pport);
    snprintf(cluster, sizeof(cluster), "t=%s", peer);
    snprintf(data, sizeof(data), "%s/data", etcd.dir);
    snprintf(logf, sizeof(logf), "%s/etcd.log", etcd.dir);
    snprintf(etcd.endpoint, sizeof(etcd.endpoint), "127.0.0.1:%d", cport);
    etcd.pid = fork();
    if (etcd.pid == 0) {
        int fd = open(logf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        execlp("etcd", "etcd", "--name", "t", "--data-dir", data, "--listen-client-urls", client,
               "--advertise-client-urls", client, "--listen-peer-urls", peer,
               "--initial-advertise-peer-urls", peer, "--initial-cluster", cluster,
               (char *)NULL);
        _exit(127);
    }
    if (etcd.pid < 0 || uv_loop_init(&eloop))
        return -1;
    etcd.started = 1;
    /* Up when it answers. */
    for (int i = 0; i < 100; i++) {
        etcd_config_t cfg = { .endpoints = { etcd.endpoint }, .n_endpoints = 1 };
        etcd_t *e = etcd_create(&eloop, &cfg);
        answered_t r = { 0 };
        int closed = 0;
        etcd_op_t op = { .kind = ETCD_OP_RANGE, .key = "x" };
        etcd_txn_t txn = { NULL, 0, &op, 1, NULL, 0 };

        etcd_txn(e, &txn, 500, on_admin, &r);
        while (!r.done)
            uv_run(&eloop, UV_RUN_ONCE);
        etcd_close(e, sh_done, &closed);
        while (!closed)
            uv_run(&eloop, UV_RUN_ONCE);
        if (r.rc == 0)
            return 0;
        usleep(100000);
    }
    fprintf(stderr, "etcd did not answer; see %s\n", logf);
    return -1;
}

static int etcd_group_teardown(void **state)
{
    char cmd[PATH_MAX + 16];

    if (!etcd.started)
        return 0;
    kill(etcd.pid, SIGTERM);
    waitpid(etcd.pid, NULL, 0);
    uv_run(&eloop, UV_RUN_NOWAIT);
    uv_loop_close(&eloop);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", etcd.dir);
    return system(cmd) == 0 ? 0 : -1;
}

#define NEED_ETCD()                                                    \
    do {                                                               \
        if (!etcd.started)                                             \
            skip(); /* no etcd on this machine */                      \
    } while (0)

/* The same batches on etcd: written, read back by another controller when
 * it leads, equal; a batch past etcd's limits is split and whole. */
static void test_etcd_roundtrip(void **state)
{
    sh_t a, b;
    model_t src;
    store_batch_t *batch;
    char err[256], id[MODEL_ID_LEN + 1];
    service_t *web;

    NEED_ETCD();
    build_cluster(&src);
    sh_open(&a, &eloop, "/t/round/", src.cluster_id, "127.0.0.1:7401");
    RUN_UNTIL(&eloop, a.leads == 1, 10000);
    assert_int_equal(a.identities, 1);
    assert_string_equal(a.m.cluster_id, src.cluster_id);
    assert_int_equal(strlen(a.join), 64);
    assert_int_equal(HASH_COUNT(a.m.nodes), 0);
    assert_true(a.st->ops->leading(a.st));
    batch = batch_of_model(&src);
    assert_int_equal(add_event(batch, 1, 1, "service", "web", "created"), 0);
    assert_int_equal(store_put_row(batch, "ca", "cert", (const uint8_t *)"PEM", 3), 0);
    if (sh_commit(&a, batch, err, sizeof(err)))
        fail_msg("commit: %s", err);
    /* 600 tasks more, in one batch: five txns at 127 operations. */
    web = model_service_by_name(&src, "web");
    batch = store_batch_new();
    for (int i = 0; i < 600; i++) {
        task_t *t;
        fixed_id(id, "d", i);
        t = add_task(&src, id, web, NULL, (uint32_t)(10 + i), 2, DESIRED_SHUTDOWN, TASK_SHUTDOWN);
        assert_int_equal(store_put_task(batch, t->pb), 0);
    }
    if (sh_commit(&a, batch, err, sizeof(err)))
        fail_msg("commit of 600 tasks: %s", err);
    assert_int_equal(count_keys(&eloop, "/t/round/tasks/"), HASH_COUNT(src.tasks));
    assert_int_equal(count_keys(&eloop, "/t/round/events/"), 1);
    sh_close(&a); /* gives the leadership up */

    /* Another controller, with no data dir of its own: the cluster's. */
    sh_open(&b, &eloop, "/t/round/", "", "127.0.0.1:7402");
    RUN_UNTIL(&eloop, b.leads == 1, 10000);
    assert_string_equal(b.m.cluster_id, src.cluster_id);
    assert_models_equal(&src, &b.m);
    assert_non_null(model_row_get(&b.m, "ca", "cert"));
    assert_false(model_has_changes(&b.m));
    sh_close(&b);
    model_free(&src);
}

/* Two controllers: one leads, the other follows and names it; the leader
 * key gone (as when the leader's lease runs out), the follower leads, and
 * a commit of the old leader, sent before it heard, is refused by etcd. */
static void test_etcd_election_and_fencing(void **state)
{
    uv_loop_t aloop;
    sh_t a, b;
    store_batch_t *batch;
    char err[256];
    model_t src;
    Node *n;

    NEED_ETCD();
    assert_int_equal(uv_loop_init(&aloop), 0);
    sh_open(&a, &aloop, "/t/fence/", "", "127.0.0.1:7401");
    RUN_UNTIL(&aloop, a.leads == 1, 10000);
    sh_open(&b, &eloop, "/t/fence/", "", "127.0.0.1:7402");
    RUN_UNTIL(&eloop, b.follows > 0 && strcmp(b.following, "127.0.0.1:7401") == 0, 10000);
    assert_int_equal(b.leads, 0);
    assert_false(b.st->ops->leading(b.st));
    /* The CA root: the first controller's, made the empty prefix's; the
     * second one's candidate is not used. A new root is told. */
    assert_int_equal(a.n_roots, 1);
    assert_string_equal(a.root, "root of 127.0.0.1:7401");
    assert_int_equal(b.n_roots, 1);
    assert_string_equal(b.root, "root of 127.0.0.1:7401");
    admin_put(&eloop, "/t/fence/ca_roots/zz", "a second root");
    RUN_UNTIL(&eloop, b.n_roots == 2, 10000);

    /* a is stopped (its loop does not run); its key goes. */
    admin_delete(&eloop, "/t/fence/leader");
    RUN_UNTIL(&eloop, b.leads == 1, 10000);

    /* a wakes up with a commit to make: etcd refuses it whole. */
    build_cluster(&src);
    batch = store_batch_new();
    n = src.nodes->pb;
    assert_int_equal(store_put_node(batch, n), 0);
    assert_int_equal(store_put_meta(batch, "endpoints_version", "999"), 0);
    assert_int_equal(sh_commit(&a, batch, err, sizeof(err)), SKIFF_ESTORE);
    assert_non_null(strstr(err, "fenced"));
    assert_int_equal(count_keys(&eloop, "/t/fence/nodes/"), 0);
    RUN_UNTIL(&aloop, a.lost == 1, 5000);
    assert_false(a.st->ops->leading(a.st));
    RUN_UNTIL(&aloop, strcmp(a.following, "127.0.0.1:7402") == 0, 10000);
    /* The new leader writes. */
    batch = store_batch_new();
    assert_int_equal(store_put_node(batch, n), 0);
    if (sh_commit(&b, batch, err, sizeof(err)))
        fail_msg("commit of the new leader: %s", err);
    assert_int_equal(count_keys(&eloop, "/t/fence/nodes/"), 1);
    /* A token rotated in the store reaches every controller. */
    admin_put(&eloop, "/t/fence/tokens/join",
              "00000000000000000000000000000000000000000000000000000000000000aa");
    RUN_UNTIL(&eloop, strncmp(b.join, "00000000", 8) == 0, 5000);
    RUN_UNTIL(&aloop, strncmp(a.join, "00000000", 8) == 0, 5000);
    sh_close(&a);
    sh_close(&b);
    model_free(&src);
    uv_run(&aloop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&aloop), 0);
}

static void count_controllers(void *arg, int rc, const char *err,
                              const store_controller_t *list, size_t n)
{
    int *counts = arg;

    assert_int_equal(rc, 0);
    counts[0] = (int)n;
    for (size_t i = 0; i < n; i++) {
        counts[1] += strcmp(list[i].role, "leader") == 0;
        assert_string_equal(list[i].store, "etcd: healthy");
    }
}

static void test_etcd_controller_list(void **state)
{
    sh_t a, b;
    int counts[2] = { 0, 0 };

    NEED_ETCD();
    sh_open(&a, &eloop, "/t/list/", "", "127.0.0.1:7401");
    RUN_UNTIL(&eloop, a.leads == 1, 10000);
    sh_open(&b, &eloop, "/t/list/", "", "127.0.0.1:7402");
    RUN_UNTIL(&eloop, b.follows > 0 && *b.following, 10000);
    /* b's registration reaches a's copy */
    for (int i = 0; i < 50 && counts[0] < 2; i++) {
        counts[0] = counts[1] = 0;
        assert_int_equal(a.st->ops->controllers(a.st, count_controllers, counts), 0);
        uv_run(&eloop, UV_RUN_NOWAIT);
        usleep(20000);
    }
    assert_int_equal(counts[0], 2);
    assert_int_equal(counts[1], 1);
    sh_close(&b);
    sh_close(&a);
}

/* Another cluster's state, or what is not skiff's: refused, and said why. */
static void test_etcd_refuses_other_state(void **state)
{
    sh_t a, c;

    NEED_ETCD();
    sh_open(&a, &eloop, "/t/other/", "", "127.0.0.1:7401");
    RUN_UNTIL(&eloop, a.leads == 1, 10000);
    sh_close(&a);
    sh_open(&c, &eloop, "/t/other/", "ffffffffffffffffffffffffffffffff", "127.0.0.1:7403");
    RUN_UNTIL(&eloop, c.fatal == 1, 10000);
    assert_non_null(strstr(c.why, "but this data dir belongs to cluster ffff"));
    assert_int_equal(c.leads, 0);
    sh_close(&c);

    admin_put(&eloop, "/t/junk/x", "y");
    sh_open(&c, &eloop, "/t/junk/", "", "127.0.0.1:7403");
    RUN_UNTIL(&eloop, c.fatal == 1, 10000);
    assert_non_null(strstr(c.why, "holds 1 key that are not a skiff cluster's"));
    sh_close(&c);
    /* Nothing was written there. */
    assert_int_equal(count_keys(&eloop, "/t/junk/"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_fails_cleanly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_updates_and_deletions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_batch_commits_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_pruned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_loaded, setup, teardown),
        cmocka_unit_test(test_model_find),
        cmocka_unit_test(test_model_specs),
        cmocka_unit_test(test_model_task_delete),
        cmocka_unit_test(test_model_states),
        cmocka_unit_test_setup_teardown(test_scan_copies_every_table, setup, teardown),
    };
    const struct CMUnitTest etcd_tests[] = {
        cmocka_unit_test(test_etcd_roundtrip),
        cmocka_unit_test(test_etcd_election_and_fencing),
        cmocka_unit_test(test_etcd_controller_list),
        cmocka_unit_test(test_etcd_refuses_other_state),
    };
    int failed;

    if (getenv("SKIFF_TEST_LOG"))
        log_init("store", LOG_DEBUG);
    failed = cmocka_run_group_tests_name("store", tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("store on etcd", etcd_tests, etcd_group_setup,
                                          etcd_group_teardown);
    return failed;
}
