/* store: what both backends share (see store.h): batches of rows in their
 * generic form with SQLite's columns beside, the check of rows that come
 * in by name (migrate), and the load of generic rows into the model.
 */
#include "store.h"
#include "errors.h"
#include "log.h"
#include "model.h"
#include "pbutil.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const store_table_names[STORE_ROWS] = {
    [STORE_META] = "meta", [STORE_NODES] = "nodes", [STORE_SERVICES] = "services",
    [STORE_SPECS] = "specs", [STORE_TASKS] = "tasks", [STORE_EVENTS] = "events",
};

struct store_batch {
    store_row_t *rows;
    size_t n, cap;
};

/* ----------------------------------------------------------------- batch */

store_batch_t *store_batch_new(void)
{
    return calloc(1, sizeof(store_batch_t));
}

static void store_row_free(store_row_t *r)
{
    if (r->table == STORE_ROWS)
        free((char *)r->name);
    free(r->key);
    free(r->value);
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

size_t store_batch_rows(const store_batch_t *b, const store_row_t **rows)
{
    *rows = b->rows;
    return b->n;
}

static store_row_t *store_row_new(store_batch_t *b, enum store_op op, enum store_table table)
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
    r->op = op;
    r->table = table;
    r->name = table < STORE_ROWS ? store_table_names[table] : NULL;
    return r;
}

static int store_dup(char **out, const char *s)
{
    *out = s ? strdup(s) : NULL;
    return s && !*out;
}

static uint8_t *store_pack(const ProtobufCMessage *msg, size_t *len)
{
    uint8_t *buf;

    *len = protobuf_c_message_get_packed_size(msg);
    buf = malloc(*len ? *len : 1);
    if (buf)
        protobuf_c_message_pack(msg, buf);
    return buf;
}

/* The row counts once all of it is there; else it is undone. */
static int store_row_done(store_batch_t *b, store_row_t *r, int failed)
{
    if (failed) {
        store_row_free(r);
        return -ENOMEM;
    }
    b->n++;
    return 0;
}

int store_put_node(store_batch_t *b, const Node *n)
{
    store_row_t *r = store_row_new(b, STORE_OP_PUT, STORE_NODES);

    if (!r)
        return -ENOMEM;
    r->a = n->state;
    r->b = n->availability;
    r->value = store_pack(&n->base, &r->len);
    return store_row_done(b, r, store_dup(&r->key, n->id) | store_dup(&r->text, n->name) |
                                    (r->value == NULL));
}

int store_put_service(store_batch_t *b, const Service *s, int removed)
{
    store_row_t *r = store_row_new(b, STORE_OP_PUT, STORE_SERVICES);
    ServiceRecord rec = PB_SERVICE_RECORD_INIT;

    if (!r)
        return -ENOMEM;
    r->a = (int64_t)s->version;
    r->b = s->update_status ? s->update_status->state : 0;
    r->c = removed;
    rec.service = (Service *)s;
    rec.removed = removed != 0;
    r->value = store_pack(&rec.base, &r->len);
    r->blob = store_pack(&s->base, &r->blob_len);
    return store_row_done(b, r, store_dup(&r->key, s->id) |
                                    store_dup(&r->text, s->spec->name) | (r->value == NULL) | (r->blob == NULL));
}

/* "<service id>/<version>", the version in 20 digits so that keys sort. */
static char *store_spec_key(const char *service_id, uint64_t version)
{
    size_t n = strlen(service_id) + 24;
    char *key = malloc(n);

    if (key)
        snprintf(key, n, "%s/%020" PRIu64, service_id, version);
    return key;
}

int store_put_spec(store_batch_t *b, const char *service_id, uint64_t version,
                   const ServiceSpec *spec)
{
    store_row_t *r = store_row_new(b, STORE_OP_PUT, STORE_SPECS);

    if (!r)
        return -ENOMEM;
    r->a = (int64_t)version;
    r->key = store_spec_key(service_id, version);
    r->value = store_pack(&spec->base, &r->len);
    return store_row_done(b, r, (r->key == NULL) | store_dup(&r->id, service_id) | (r->value == NULL));
}

int store_put_task(store_batch_t *b, const Task *t)
{
    store_row_t *r = store_row_new(b, STORE_OP_PUT, STORE_TASKS);

    if (!r)
        return -ENOMEM;
    r->a = t->slot;
    r->b = t->desired_state;
    r->c = t->state;
    r->value = store_pack(&t->base, &r->len);
    return store_row_done(b, r, store_dup(&r->key, t->id) | store_dup(&r->text, t->service_id) |
                                    store_dup(&r->text2, *t->node_id ? t->node_id : NULL) |
                                    (r->value == NULL));
}

int store_put_meta(store_batch_t *b, const char *key, const char *value)
{
    store_row_t *r = store_row_new(b, STORE_OP_PUT, STORE_META);

    if (!r)
        return -ENOMEM;
    r->len = strlen(value);
    r->value = (uint8_t *)strdup(value);
    return store_row_done(b, r, store_dup(&r->key, key) | store_dup(&r->text, value) |
                                    (r->value == NULL));
}

int store_add_event(store_batch_t *b, const Event *e)
{
    store_row_t *r = store_row_new(b, STORE_OP_EVENT, STORE_EVENTS);
    char seq[24];

    if (!r)
        return -ENOMEM;
    snprintf(seq, sizeof(seq), "%020llu", (unsigned long long)e->seq);
    r->a = e->time_ms;
    r->b = (int64_t)e->seq;
    r->value = store_pack(&e->base, &r->len);
    return store_row_done(b, r, store_dup(&r->key, seq) | store_dup(&r->id, e->type) |
                                    store_dup(&r->text, e->name) |
                                    store_dup(&r->text2, e->message) | (r->value == NULL));
}

int store_delete(store_batch_t *b, enum store_table table, const char *id, uint64_t version)
{
    store_row_t *r;

    if (table == STORE_META || table == STORE_EVENTS || table >= STORE_ROWS)
        return SKIFF_EINVAL;
    if (!(r = store_row_new(b, STORE_OP_DELETE, table)))
        return -ENOMEM;
    r->a = (int64_t)version;
    r->key = table == STORE_SPECS ? store_spec_key(id, version) : strdup(id);
    return store_row_done(b, r, (r->key == NULL) | store_dup(&r->id, id));
}

/* --------------------------------------------------------- rows by name */

static int store_name_valid(const char *name)
{
    size_t n = strlen(name);

    return n >= 1 && n <= 32 && strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

static int store_table_of(const char *name)
{
    for (int t = 0; t < STORE_ROWS; t++)
        if (strcmp(name, store_table_names[t]) == 0)
            return t;
    return store_name_valid(name) ? STORE_ROWS : -1;
}

/* Splits a spec key "<id>/<version>". */
static int store_spec_key_parse(const char *key, char *id, size_t len, uint64_t *version)
{
    const char *slash = strrchr(key, '/');
    char *end;

    if (!slash || slash == key || (size_t)(slash - key) >= len || !slash[1])
        return -1;
    memcpy(id, key, (size_t)(slash - key));
    id[slash - key] = '\0';
    *version = strtoull(slash + 1, &end, 10);
    return *end ? -1 : 0;
}

int store_put_row(store_batch_t *b, const char *table, const char *key, const uint8_t *value,
                  size_t len)
{
    int t = store_table_of(table), rc = SKIFF_EINVAL;
    store_row_t *r;

    if (t < 0 || !*key)
        return SKIFF_EINVAL;
    switch (t) {
    case STORE_META: {
        char *text = strndup((const char *)value, len);
        if (!text)
            return -ENOMEM;
        rc = strlen(text) == len ? store_put_meta(b, key, text) : SKIFF_EINVAL;
        free(text);
        return rc;
    }
    case STORE_NODES: {
        Node *n = (Node *)protobuf_c_message_unpack(&PB_DESC_Node, NULL, len, value);
        if (n && *n->id && strcmp(n->id, key) == 0)
            rc = store_put_node(b, n);
        pb_free(n);
        return rc;
    }
    case STORE_SERVICES: {
        ServiceRecord *s = (ServiceRecord *)protobuf_c_message_unpack(&PB_DESC_ServiceRecord, NULL, len, value);
        if (s && s->service && s->service->spec && strcmp(s->service->id, key) == 0)
            rc = store_put_service(b, s->service, s->removed);
        pb_free(s);
        return rc;
    }
    case STORE_SPECS: {
        ServiceSpec *spec = (ServiceSpec *)protobuf_c_message_unpack(&PB_DESC_ServiceSpec, NULL, len, value);
        char id[128];
        uint64_t version;
        if (spec && store_spec_key_parse(key, id, sizeof(id), &version) == 0)
            rc = store_put_spec(b, id, version, spec);
        pb_free(spec);
        return rc;
    }
    case STORE_TASKS: {
        Task *task = (Task *)protobuf_c_message_unpack(&PB_DESC_Task, NULL, len, value);
        if (task && strcmp(task->id, key) == 0)
            rc = store_put_task(b, task);
        pb_free(task);
        return rc;
    }
    case STORE_EVENTS:
        return SKIFF_EINVAL; /* numbered by the backend: store_add_event */
    default:
        break;
    }
    if (!(r = store_row_new(b, STORE_OP_PUT, STORE_ROWS)))
        return -ENOMEM;
    r->len = len;
    r->value = malloc(len ? len : 1);
    if (r->value)
        memcpy(r->value, value, len);
    return store_row_done(b, r, store_dup((char **)&r->name, table) | store_dup(&r->key, key) |
                                    (r->value == NULL));
}

int store_delete_row(store_batch_t *b, const char *table, const char *key)
{
    int t = store_table_of(table);
    store_row_t *r;

    if (t < 0 || !*key)
        return SKIFF_EINVAL;
    if (t == STORE_SPECS) {
        char id[128];
        uint64_t version;
        if (store_spec_key_parse(key, id, sizeof(id), &version))
            return SKIFF_EINVAL;
        return store_delete(b, STORE_SPECS, id, version);
    }
    if (t != STORE_ROWS)
        return store_delete(b, (enum store_table)t, key, 0);
    if (!(r = store_row_new(b, STORE_OP_DELETE, STORE_ROWS)))
        return -ENOMEM;
    return store_row_done(b, r, store_dup((char **)&r->name, table) | store_dup(&r->key, key));
}

/* --------------------------------------------------------------- loading */

static int store_bad(char *err, size_t len, const char *what, const char *key)
{
    snprintf(err, len, "load: %s row %.100s does not decode", what, key);
    return SKIFF_ESTORE;
}

static int store_nomem(char *err, size_t len)
{
    snprintf(err, len, "load: out of memory");
    return SKIFF_ESTORE;
}

static int store_load_meta(model_t *m, const char *key, const uint8_t *value, size_t len)
{
    char text[sizeof(m->cluster_id)];

    snprintf(text, sizeof(text), "%.*s", (int)(len < sizeof(text) ? len : sizeof(text) - 1),
             (const char *)value);
    if (strcmp(key, "cluster_id") == 0)
        memcpy(m->cluster_id, text, sizeof(text));
    else if (strcmp(key, "assignments_version") == 0)
        m->assignments_version = strtoull(text, NULL, 10);
    else if (strcmp(key, "endpoints_version") == 0)
        m->endpoints_version = strtoull(text, NULL, 10);
    return 0;
}

int store_load_row(model_t *m, enum store_table table, const char *name, const char *key,
                   const uint8_t *value, size_t len, char *err, size_t errlen)
{
    switch (table) {
    case STORE_META:
        return store_load_meta(m, key, value, len);
    case STORE_NODES: {
        Node *pb = (Node *)protobuf_c_message_unpack(&PB_DESC_Node, NULL, len, value);
        if (!pb || !*pb->id || !*pb->name || model_node_by_id(m, pb->id) ||
            model_node_by_name(m, pb->name)) {
            pb_free(pb);
            return store_bad(err, errlen, "a node", key);
        }
        if (!model_node_add(m, pb)) {
            pb_free(pb);
            return store_nomem(err, errlen);
        }
        return 0;
    }
    case STORE_SERVICES: {
        ServiceRecord *rec = (ServiceRecord *)protobuf_c_message_unpack(&PB_DESC_ServiceRecord, NULL, len, value);
        Service *pb = rec ? rec->service : NULL;
        service_t *svc;
        if (!pb || !*pb->id || !pb->spec || !pb->update_status || model_service_by_id(m, pb->id) ||
            (!rec->removed && model_service_by_name(m, pb->spec->name))) {
            pb_free(rec);
            return store_bad(err, errlen, "a service", key);
        }
        rec->service = NULL;
        if (!(svc = model_service_add(m, pb))) {
            pb_free(pb);
            pb_free(rec);
            return store_nomem(err, errlen);
        }
        if (rec->removed)
            model_service_mark_removed(m, svc); /* out of the lookups by name */
        pb_free(rec);
        return 0;
    }
    case STORE_SPECS: {
        char id[128];
        uint64_t version;
        service_t *svc;
        ServiceSpec *spec;
        if (store_spec_key_parse(key, id, sizeof(id), &version))
            return store_bad(err, errlen, "a spec", key);
        if (!(svc = model_service_by_id(m, id))) {
            log_warn("store: dropping a spec row of an unknown service");
            return 0;
        }
        if (!(spec = (ServiceSpec *)protobuf_c_message_unpack(&PB_DESC_ServiceSpec, NULL, len, value)))
            return store_bad(err, errlen, "a spec", key);
        if (model_service_load_spec(svc, version, spec)) {
            pb_free(spec);
            return store_nomem(err, errlen);
        }
        return 0;
    }
    case STORE_TASKS: {
        store_task_loader_t *l = store_task_loader_new();
        int rc = l ? store_task_loader_add(l, value, len, err, errlen) : store_nomem(err, errlen);
        if (l && !rc)
            rc = store_task_loader_finish(l, m, err, errlen);
        store_task_loader_free(l);
        return rc;
    }
    case STORE_EVENTS:
        return 0;
    case STORE_ROWS:
        if (model_row_load(m, name, key, value, len))
            return store_nomem(err, errlen);
        return 0;
    }
    return 0;
}

struct store_task_loader {
    Task **tasks;
    size_t n, cap;
};

store_task_loader_t *store_task_loader_new(void)
{
    return calloc(1, sizeof(store_task_loader_t));
}

void store_task_loader_free(store_task_loader_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        pb_free(l->tasks[i]);
    free(l->tasks);
    free(l);
}

int store_task_loader_add(store_task_loader_t *l, const uint8_t *value, size_t len, char *err,
                          size_t errlen)
{
    Task *pb = (Task *)protobuf_c_message_unpack(&PB_DESC_Task, NULL, len, value);

    if (!pb || !*pb->id) {
        pb_free(pb);
        return store_bad(err, errlen, "a task", "?");
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        Task **grown = realloc(l->tasks, cap * sizeof(*grown));
        if (!grown) {
            pb_free(pb);
            return store_nomem(err, errlen);
        }
        l->tasks = grown;
        l->cap = cap;
    }
    l->tasks[l->n++] = pb;
    return 0;
}

static int store_task_order(const void *pa, const void *pb)
{
    const Task *a = *(Task *const *)pa, *b = *(Task *const *)pb;
    int c = strcmp(a->service_id, b->service_id);

    if (c)
        return c;
    if (a->slot != b->slot)
        return a->slot < b->slot ? -1 : 1;
    if (a->created_ms != b->created_ms)
        return a->created_ms < b->created_ms ? -1 : 1;
    return strcmp(a->id, b->id);
}

int store_task_loader_finish(store_task_loader_t *l, model_t *m, char *err, size_t errlen)
{
    if (l->n > 1)
        qsort(l->tasks, l->n, sizeof(*l->tasks), store_task_order);
    for (size_t i = 0; i < l->n; i++) {
        Task *pb = l->tasks[i];
        service_t *svc = model_service_by_id(m, pb->service_id);
        node_t *node = *pb->node_id ? model_node_by_id(m, pb->node_id) : NULL;

        if (!svc || model_task_by_id(m, pb->id)) {
            log_warn("store: dropping a task row without its service, or twice");
            continue;
        }
        if (!model_task_add(m, svc, node, pb))
            return store_nomem(err, errlen);
        l->tasks[i] = NULL;
    }
    return 0;
}

void store_load_done(model_t *m)
{
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
}

/* ----------------------------------------------------------- the table */

int store_commit(store_t *st, store_batch_t *b, store_done_fn cb, void *arg)
{
    return st->ops->commit(st, b, cb, arg);
}

void store_stop(store_t *st, void (*done)(void *arg), void *arg)
{
    st->ops->stop(st, done, arg);
}

void store_set_events_kept(store_t *st, size_t n)
{
    st->events_kept = n ? n : STORE_EVENTS_KEPT;
}

int store_load_events(store_t *st, size_t max, void (*fn)(void *arg, Event *e), void *arg,
                      uint64_t *last_seq)
{
    *last_seq = 0;
    return st->ops->load_events(st, max, fn, arg, last_seq);
}

void store_close(store_t *st)
{
    if (st)
        st->ops->free(st);
}
