/* model: see model.h. */
#include "model.h"
#include "load.h"
#include "pbutil.h"
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <utlist.h>


const char *const model_replace_names[MODEL_REPLACE_COUNT] = {
#define MODEL_REPLACE_NAME(name, text) text,
    MODEL_REPLACE_REASONS(MODEL_REPLACE_NAME)
#undef MODEL_REPLACE_NAME
};

const char *const model_update_result_names[MODEL_UPDATE_RESULTS] = {
    "completed", "paused", "rolled_back", "rollback_paused",
};

void model_init(model_t *m)
{
    memset(m, 0, sizeof(*m));
}

static void model_free_node(node_t *n)
{
    for (size_t i = 0; i < n->n_lb_stats; i++)
        pb_free(n->lb_stats[i]);
    free(n->lb_stats);
    load_node_free(n);
    pb_free(n->pb);
    free(n);
}

static void model_free_service(service_t *s)
{
    free(s->autoscale);
    for (size_t i = 0; i < s->n_specs; i++)
        pb_free(s->specs[i].spec);
    free(s->specs);
    pb_free(s->pb);
    free(s);
}

void model_free(model_t *m)
{
    task_t *t, *tt;
    service_t *s, *st;
    node_t *n, *nt;
    model_deletion_t *d;
    struct model_spec_put *p;

    HASH_ITER(hh, m->tasks, t, tt) {
        HASH_DELETE(hh, m->tasks, t);
        load_task_free(t);
        pb_free(t->pb);
        free(t);
    }
    HASH_CLEAR(hh_name, m->services_by_name);
    HASH_ITER(hh, m->services, s, st) {
        HASH_DELETE(hh, m->services, s);
        model_free_service(s);
    }
    HASH_CLEAR(hh_name, m->nodes_by_name);
    HASH_ITER(hh, m->nodes, n, nt) {
        HASH_DELETE(hh, m->nodes, n);
        model_free_node(n);
    }
    model_row_t *r, *rt;

    HASH_ITER(hh, m->rows, r, rt) {
        HASH_DELETE(hh, m->rows, r);
        free(r->table);
        free(r->key);
        free(r->value);
        free(r->hkey);
        free(r);
    }
    while ((d = m->deletions)) {
        m->deletions = d->next;
        free(d);
    }
    while ((p = m->spec_puts)) {
        m->spec_puts = p->next;
        free(p);
    }
}

void model_new_id(char out[MODEL_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[MODEL_ID_LEN / 2];

    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
        /* getrandom on Linux >= 3.17 does not fail for 8 bytes; be safe. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        for (size_t i = 0; i < sizeof(raw); i++)
            raw[i] = (unsigned char)((ts.tv_nsec >> (i * 3)) ^ rand());
    }
    for (size_t i = 0; i < sizeof(raw); i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[MODEL_ID_LEN] = '\0';
}

int64_t model_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int model_has_changes(const model_t *m)
{
    return m->dirty_tasks || m->dirty_services || m->dirty_nodes || m->deletions ||
           m->spec_puts || m->meta_dirty || m->dirty_rows;
}

void model_touch_task(model_t *m, task_t *t)
{
    if (t->dirty)
        return;
    t->dirty = MODEL_PUT;
    t->dirty_next = m->dirty_tasks;
    m->dirty_tasks = t;
}

void model_touch_service(model_t *m, service_t *s)
{
    if (s->dirty)
        return;
    s->dirty = MODEL_PUT;
    s->dirty_next = m->dirty_services;
    m->dirty_services = s;
}

void model_touch_node(model_t *m, node_t *n)
{
    if (n->dirty)
        return;
    n->dirty = MODEL_PUT;
    n->dirty_next = m->dirty_nodes;
    m->dirty_nodes = n;
}

/* A deleted object may still be on a dirty list: take it off. */
#define MODEL_UNLIST(head, obj, type)                                          \
    do {                                                                       \
        type **pp_ = &(head);                                                  \
        while (*pp_ && *pp_ != (obj))                                          \
            pp_ = &(*pp_)->dirty_next;                                         \
        if (*pp_)                                                              \
            *pp_ = (obj)->dirty_next;                                          \
    } while (0)

static void model_delete_row(model_t *m, int table, const char *id, uint64_t version)
{
    model_deletion_t *d = calloc(1, sizeof(*d));

    if (!d)
        abort(); /* a lost deletion would corrupt the store: fail stop */
    d->table = table;
    snprintf(d->id, sizeof(d->id), "%s", id);
    d->version = version;
    d->next = m->deletions;
    m->deletions = d;
}

/* ---------------------------------------------------------------- nodes */

node_t *model_node_by_id(model_t *m, const char *id)
{
    node_t *n = NULL;

    HASH_FIND(hh, m->nodes, id, strlen(id), n);
    return n;
}

node_t *model_node_by_name(model_t *m, const char *name)
{
    node_t *n = NULL;

    HASH_FIND(hh_name, m->nodes_by_name, name, strlen(name), n);
    return n;
}

node_t *model_node_find(model_t *m, const char *ref, int *ambiguous)
{
    node_t *n, *tmp, *found = NULL;
    size_t len = strlen(ref);

    *ambiguous = 0;
    if (!len)
        return NULL;
    if ((n = model_node_by_name(m, ref)) || (n = model_node_by_id(m, ref)))
        return n;
    HASH_ITER(hh, m->nodes, n, tmp) {
        if (strncmp(n->pb->id, ref, len) == 0) {
            if (found) {
                *ambiguous = 1;
                return NULL;
            }
            found = n;
        }
    }
    return found;
}

node_t *model_node_add(model_t *m, Node *pb)
{
    node_t *n = calloc(1, sizeof(*n));

    if (!n)
        return NULL;
    n->pb = pb;
    HASH_ADD_KEYPTR(hh, m->nodes, pb->id, strlen(pb->id), n);
    HASH_ADD_KEYPTR(hh_name, m->nodes_by_name, pb->name, strlen(pb->name), n);
    return n;
}

void model_node_remove(model_t *m, node_t *n)
{
    task_t *t, *tmp;

    DL_FOREACH_SAFE2(n->tasks, t, tmp, node_next) {
        DL_DELETE2(n->tasks, t, node_prev, node_next);
        t->node = NULL;
        model_touch_task(m, t);
    }
    MODEL_UNLIST(m->dirty_nodes, n, node_t);
    model_delete_row(m, STORE_NODES, n->pb->id, 0);
    HASH_DELETE(hh, m->nodes, n);
    HASH_DELETE(hh_name, m->nodes_by_name, n);
    model_free_node(n);
}

/* ------------------------------------------------------------- services */

service_t *model_service_by_id(model_t *m, const char *id)
{
    service_t *s = NULL;

    HASH_FIND(hh, m->services, id, strlen(id), s);
    return s;
}

service_t *model_service_by_name(model_t *m, const char *name)
{
    service_t *s = NULL;

    HASH_FIND(hh_name, m->services_by_name, name, strlen(name), s);
    return s;
}

service_t *model_service_find(model_t *m, const char *ref, int *ambiguous)
{
    service_t *s, *tmp, *found = NULL;
    size_t len = strlen(ref);

    *ambiguous = 0;
    if (!len)
        return NULL;
    if ((s = model_service_by_name(m, ref)))
        return s;
    if ((s = model_service_by_id(m, ref)) && !s->removed)
        return s;
    HASH_ITER(hh, m->services, s, tmp) {
        if (!s->removed && strncmp(s->pb->id, ref, len) == 0) {
            if (found) {
                *ambiguous = 1;
                return NULL;
            }
            found = s;
        }
    }
    return found;
}

service_t *model_service_add(model_t *m, Service *pb)
{
    service_t *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->pb = pb;
    snprintf(s->name, sizeof(s->name), "%s", pb->spec->name);
    HASH_ADD_KEYPTR(hh, m->services, pb->id, strlen(pb->id), s);
    HASH_ADD_KEYPTR(hh_name, m->services_by_name, s->name, strlen(s->name), s);
    return s;
}

void model_service_mark_removed(model_t *m, service_t *s)
{
    if (s->removed)
        return;
    s->removed = 1;
    HASH_DELETE(hh_name, m->services_by_name, s);
    model_touch_service(m, s);
}

void model_service_delete(model_t *m, service_t *s)
{
    task_t *t, *tmp;

    DL_FOREACH_SAFE2(s->tasks, t, tmp, svc_next)
        model_task_delete(m, t);
    for (size_t i = 0; i < s->n_specs; i++)
        model_delete_row(m, STORE_SPECS, s->pb->id, s->specs[i].version);
    MODEL_UNLIST(m->dirty_services, s, service_t);
    for (struct model_spec_put **pp = &m->spec_puts; *pp;) {
        if ((*pp)->svc == s) {
            struct model_spec_put *dead = *pp;
            *pp = dead->next;
            free(dead);
        } else {
            pp = &(*pp)->next;
        }
    }
    model_delete_row(m, STORE_SERVICES, s->pb->id, 0);
    if (!s->removed)
        HASH_DELETE(hh_name, m->services_by_name, s);
    HASH_DELETE(hh, m->services, s);
    model_free_service(s);
}

const ServiceSpec *model_service_spec(const service_t *s, uint64_t v)
{
    if (v == s->pb->version)
        return s->pb->spec;
    for (size_t i = 0; i < s->n_specs; i++)
        if (s->specs[i].version == v)
            return s->specs[i].spec;
    return NULL;
}

int model_service_load_spec(service_t *s, uint64_t v, ServiceSpec *spec)
{
    spec_version_t *grown = realloc(s->specs, (s->n_specs + 1) * sizeof(*grown));

    if (!grown)
        return -ENOMEM;
    s->specs = grown;
    s->specs[s->n_specs].version = v;
    s->specs[s->n_specs].spec = spec;
    s->n_specs++;
    return 0;
}

int model_service_keep_spec(model_t *m, service_t *s)
{
    struct model_spec_put *p;
    ServiceSpec *copy;

    for (size_t i = 0; i < s->n_specs; i++)
        if (s->specs[i].version == s->pb->version)
            return 0;
    copy = pb_dup(s->pb->spec);
    p = malloc(sizeof(*p));
    if (!copy || !p || model_service_load_spec(s, s->pb->version, copy)) {
        pb_free(copy);
        free(p);
        return -ENOMEM;
    }
    p->svc = s;
    p->version = s->pb->version;
    p->next = m->spec_puts;
    m->spec_puts = p;
    return 0;
}

void model_service_prune_specs(model_t *m, service_t *s)
{
    task_t *t;
    size_t keep = 0;

    for (size_t i = 0; i < s->n_specs; i++) {
        uint64_t v = s->specs[i].version;
        int used = v == s->pb->version;

        DL_FOREACH2(s->tasks, t, svc_next) {
            if (used)
                break;
            used = t->pb->spec_version == v;
        }
        if (used) {
            s->specs[keep++] = s->specs[i];
            continue;
        }
        for (struct model_spec_put **pp = &m->spec_puts; *pp; pp = &(*pp)->next) {
            if ((*pp)->svc == s && (*pp)->version == v) {
                struct model_spec_put *dead = *pp;
                *pp = dead->next;
                free(dead);
                break;
            }
        }
        model_delete_row(m, STORE_SPECS, s->pb->id, v);
        pb_free(s->specs[i].spec);
    }
    s->n_specs = keep;
}

/* ------------------------------------------------------- rows by name */

model_row_t *model_row_get(model_t *m, const char *table, const char *key)
{
    model_row_t *r = NULL;
    size_t tl = strlen(table), kl = strlen(key);
    char *hkey = malloc(tl + kl + 2);

    if (!hkey)
        return NULL;
    memcpy(hkey, table, tl);
    hkey[tl] = '/';
    memcpy(hkey + tl + 1, key, kl + 1);
    HASH_FIND(hh, m->rows, hkey, tl + kl + 1, r);
    free(hkey);
    return r;
}

/* The row (table, key), made when there is none; NULL out of memory. */
static model_row_t *model_row_make(model_t *m, const char *table, const char *key)
{
    model_row_t *r = model_row_get(m, table, key);
    size_t tl = strlen(table), kl = strlen(key);

    if (r)
        return r;
    if (!(r = calloc(1, sizeof(*r))))
        return NULL;
    r->table = strdup(table);
    r->key = strdup(key);
    r->hkey = malloc(tl + kl + 2);
    if (!r->table || !r->key || !r->hkey) {
        free(r->table);
        free(r->key);
        free(r->hkey);
        free(r);
        return NULL;
    }
    memcpy(r->hkey, table, tl);
    r->hkey[tl] = '/';
    memcpy(r->hkey + tl + 1, key, kl + 1);
    HASH_ADD_KEYPTR(hh, m->rows, r->hkey, tl + kl + 1, r);
    return r;
}

static int model_row_fill(model_row_t *r, const uint8_t *value, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);

    if (!copy)
        return -ENOMEM;
    memcpy(copy, value, len);
    free(r->value);
    r->value = copy;
    r->len = len;
    return 0;
}

static void model_row_touch(model_t *m, model_row_t *r)
{
    if (r->dirty)
        return;
    r->dirty = MODEL_PUT;
    r->dirty_next = m->dirty_rows;
    m->dirty_rows = r;
}

int model_row_set(model_t *m, const char *table, const char *key, const uint8_t *value,
                  size_t len)
{
    model_row_t *r = model_row_make(m, table, key);

    if (!r || model_row_fill(r, value, len))
        return -ENOMEM;
    model_row_touch(m, r);
    return 0;
}

void model_row_delete(model_t *m, const char *table, const char *key)
{
    model_row_t *r = model_row_get(m, table, key);

    if (!r || !r->value)
        return;
    free(r->value);
    r->value = NULL;
    r->len = 0;
    model_row_touch(m, r);
}

int model_row_load(model_t *m, const char *table, const char *key, const uint8_t *value,
                   size_t len)
{
    model_row_t *r = model_row_make(m, table, key);

    return r ? model_row_fill(r, value, len) : -ENOMEM;
}

model_row_t *model_rows_take_dirty(model_t *m)
{
    model_row_t *list = m->dirty_rows;

    m->dirty_rows = NULL;
    return list;
}

void model_row_sealed(model_t *m, model_row_t *r)
{
    r->dirty = MODEL_CLEAN;
    if (r->value)
        return;
    HASH_DELETE(hh, m->rows, r);
    free(r->table);
    free(r->key);
    free(r->hkey);
    free(r);
}

/* ---------------------------------------------------------------- tasks */

task_t *model_task_by_id(model_t *m, const char *id)
{
    task_t *t = NULL;

    HASH_FIND(hh, m->tasks, id, strlen(id), t);
    return t;
}

task_t *model_task_add(model_t *m, service_t *svc, node_t *node, Task *pb)
{
    task_t *t = calloc(1, sizeof(*t));

    if (!t)
        return NULL;
    t->pb = pb;
    t->svc = svc;
    t->evt_state = pb->state; /* what it is now needs no event */
    t->evt_health = pb->health;
    t->evt_restarts = pb->restarts;
    DL_APPEND2(svc->tasks, t, svc_prev, svc_next);
    HASH_ADD_KEYPTR(hh, m->tasks, pb->id, strlen(pb->id), t);
    if (node)
        model_task_set_node(m, t, node);
    return t;
}

void model_task_set_node(model_t *m, task_t *t, node_t *node)
{
    if (t->node == node)
        return;
    if (t->node) {
        DL_DELETE2(t->node->tasks, t, node_prev, node_next);
        t->node->assign_dirty = 1;
    }
    t->node = node;
    if (node) {
        DL_APPEND2(node->tasks, t, node_prev, node_next);
        node->assign_dirty = 1;
        pb_set_str(&t->pb->node_id, node->pb->id);
        pb_set_str(&t->pb->node_name, node->pb->name);
    }
    model_touch_task(m, t);
}

void model_task_delete(model_t *m, task_t *t)
{
    if (t->node) {
        DL_DELETE2(t->node->tasks, t, node_prev, node_next);
        t->node->assign_dirty = 1;
    }
    DL_DELETE2(t->svc->tasks, t, svc_prev, svc_next);
    MODEL_UNLIST(m->dirty_tasks, t, task_t);
    model_delete_row(m, STORE_TASKS, t->pb->id, 0);
    HASH_DELETE(hh, m->tasks, t);
    load_task_free(t);
    pb_free(t->pb);
    free(t);
}

int model_state_terminal(TaskState s)
{
    return s == TASK_COMPLETE || s == TASK_FAILED || s == TASK_SHUTDOWN ||
           s == TASK_REJECTED || s == TASK_REMOVED;
}

int model_spec_has_check(const ServiceSpec *spec)
{
    const HealthCheck *h = spec ? spec->health : NULL;

    if (!h)
        return 0;
    if (*h->http_path)
        return 1;
    return h->n_test > 0 && strcmp(h->test[0], "NONE") != 0;
}

int model_task_ready(const task_t *t)
{
    const ServiceSpec *spec = model_service_spec(t->svc, t->pb->spec_version);

    if (t->pb->state != TASK_RUNNING)
        return 0;
    if (model_spec_has_check(spec))
        return t->pb->health == HEALTH_HEALTHY;
    return t->pb->health == HEALTH_NONE || t->pb->health == HEALTH_HEALTHY;
}
