/* scheduler: see scheduler.h.
 *
 * Two passes. The filter looks at every node once and keeps those that could
 * take one more task of the request; they go into a binary min-heap ordered
 * by (service_tasks, tasks, index). Each task then takes the heap's root,
 * the root's counters grow, and it sinks back into place, or leaves the heap
 * when its reservation is full. When the heap runs dry before the request is
 * met, every node fails some filter, and the reason line counts the nodes
 * per first failing cause, in filter order.
 *
 * Pure code: no I/O, and the only allocations are the heap and the cause
 * counters, made before anything changes and freed before returning.
 */
#include "scheduler.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Why a node can't take a task, in the order the filter checks. A
 * constraint's cause is SCHED_CAUSE_CONSTRAINT + its index. */
enum {
    SCHED_FITS = -1,
    SCHED_CAUSE_NOT_READY = 0,
    SCHED_CAUSE_DRAINED,
    SCHED_CAUSE_CPU,
    SCHED_CAUSE_MEMORY,
    SCHED_CAUSE_CONSTRAINT,
};

static const char *sched_str(const char *s)
{
    return s ? s : "";
}

static const char *sched_find_label(const sched_label_t *labels, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (labels[i].key && strcmp(labels[i].key, key) == 0)
            return sched_str(labels[i].value);
    return NULL;
}

const char *sched_node_label(const sched_node_t *node, const char *key)
{
    const char *v = sched_find_label(node->spec_labels, node->n_spec_labels, key);

    return v ? v : sched_find_label(node->labels, node->n_labels, key);
}

int sched_constraint_ok(const sched_node_t *node, const constraint_t *c)
{
    const char *have = NULL;

    switch (c->kind) {
    case CONSTRAINT_NODE_NAME:
        have = sched_str(node->name);
        break;
    case CONSTRAINT_NODE_ID:
        have = sched_str(node->id);
        break;
    case CONSTRAINT_NODE_LABEL:
    case CONSTRAINT_ENGINE_LABEL:
        have = c->kind == CONSTRAINT_NODE_LABEL
                   ? sched_node_label(node, c->key)
                   : sched_find_label(node->labels, node->n_labels, c->key);
        /* Like Swarm: a node without the label fails ==, satisfies !=. */
        if (!have)
            return !c->equal;
        break;
    default:
        return 0;
    }
    return (strcmp(have, c->value) == 0) == !!c->equal;
}

/* 1 when `request` more fits on a resource with `reserved` of `total`. A
 * request of 0 always fits; a total of 0 (unknown) fits no request. */
static int sched_resource_fits(int64_t total, int64_t reserved, int64_t request)
{
    if (request <= 0)
        return 1;
    if (total <= 0)
        return 0;
    return reserved <= total && request <= total - reserved;
}

/* The node's first failing cause for one more task of req, or SCHED_FITS. */
static int sched_node_cause(const sched_node_t *node, const sched_request_t *req)
{
    if (!node->ready)
        return SCHED_CAUSE_NOT_READY;
    if (!node->active)
        return SCHED_CAUSE_DRAINED;
    for (size_t i = 0; i < req->n_constraints; i++)
        if (!sched_constraint_ok(node, &req->constraints[i]))
            return SCHED_CAUSE_CONSTRAINT + (int)i;
    if (!sched_resource_fits(node->cpu_total, node->cpu_reserved, req->cpu))
        return SCHED_CAUSE_CPU;
    if (!sched_resource_fits(node->mem_total, node->mem_reserved, req->mem))
        return SCHED_CAUSE_MEMORY;
    return SCHED_FITS;
}

/* ------------------------------------------------------------------ heap */

/* 1 when node a should take the next task before node b. */
static int sched_before(const sched_node_t *nodes, size_t a, size_t b)
{
    if (nodes[a].service_tasks != nodes[b].service_tasks)
        return nodes[a].service_tasks < nodes[b].service_tasks;
    if (nodes[a].tasks != nodes[b].tasks)
        return nodes[a].tasks < nodes[b].tasks;
    return a < b;
}

static void sched_sift_down(const sched_node_t *nodes, size_t *heap, size_t len, size_t i)
{
    size_t top = heap[i];

    for (;;) {
        size_t child = 2 * i + 1;

        if (child >= len)
            break;
        if (child + 1 < len && sched_before(nodes, heap[child + 1], heap[child]))
            child++;
        if (!sched_before(nodes, heap[child], top))
            break;
        heap[i] = heap[child];
        i = child;
    }
    heap[i] = top;
}

/* ---------------------------------------------------------------- reason */

typedef struct sched_text {
    char *buf;
    size_t len;
    size_t used;
} sched_text_t;

static void sched_text_add(sched_text_t *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sched_text_add(sched_text_t *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!t->len || t->used >= t->len - 1)
        return;
    va_start(ap, fmt);
    n = vsnprintf(t->buf + t->used, t->len - t->used, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    t->used += (size_t)n;
    if (t->used >= t->len)
        t->used = t->len - 1;
}

/* "1 node lacks memory" / "2 nodes lack memory": singular and plural verb. */
static void sched_text_count(sched_text_t *t, int *first, size_t count,
                             const char *one, const char *many, const char *what)
{
    sched_text_add(t, "%s%zu %s%s%s", *first ? "" : ", ", count,
                   count == 1 ? "node" : "nodes", count == 1 ? one : many, what);
    *first = 0;
}

static void sched_reason(const sched_node_t *nodes, size_t n, const sched_request_t *req,
                         size_t *counts, char *reason, size_t reasonlen)
{
    static const char *const kinds[] = {
        [CONSTRAINT_NODE_NAME] = "node.name",
        [CONSTRAINT_NODE_ID] = "node.id",
        [CONSTRAINT_NODE_LABEL] = "node.labels.",
        [CONSTRAINT_ENGINE_LABEL] = "engine.labels.",
    };
    sched_text_t t = { reason, reasonlen, 0 };
    int first = 1;

    if (!reasonlen)
        return;
    reason[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int cause = sched_node_cause(&nodes[i], req);

        if (cause != SCHED_FITS)
            counts[cause]++;
    }
    sched_text_add(&t, "no suitable node (");
    if (!n)
        sched_text_add(&t, "no nodes in the cluster");
    if (counts[SCHED_CAUSE_NOT_READY])
        sched_text_count(&t, &first, counts[SCHED_CAUSE_NOT_READY], "", "", " not ready");
    if (counts[SCHED_CAUSE_DRAINED])
        sched_text_count(&t, &first, counts[SCHED_CAUSE_DRAINED], "", "", " drained");
    for (size_t i = 0; i < req->n_constraints; i++) {
        const constraint_t *c = &req->constraints[i];
        size_t count = counts[SCHED_CAUSE_CONSTRAINT + i];

        if (!count)
            continue;
        sched_text_count(&t, &first, count, " fails", " fail", " ");
        sched_text_add(&t, "%s%s%s%s",
                       (unsigned)c->kind < sizeof(kinds) / sizeof(kinds[0])
                           ? kinds[c->kind] : "node.?",
                       c->kind == CONSTRAINT_NODE_LABEL || c->kind == CONSTRAINT_ENGINE_LABEL
                           ? c->key : "",
                       c->equal ? "==" : "!=", c->value);
    }
    if (counts[SCHED_CAUSE_CPU])
        sched_text_count(&t, &first, counts[SCHED_CAUSE_CPU], " lacks", " lack", " CPU");
    if (counts[SCHED_CAUSE_MEMORY])
        sched_text_count(&t, &first, counts[SCHED_CAUSE_MEMORY], " lacks", " lack", " memory");
    sched_text_add(&t, ")");
}

/* ----------------------------------------------------------------- place */

int sched_place(sched_node_t *nodes, size_t n, const sched_request_t *req,
                int *out, char *reason, size_t reasonlen)
{
    size_t *heap = NULL, *counts = NULL, len = 0, placed = 0;

    if (reason && reasonlen)
        reason[0] = '\0';
    if (!req->count)
        return 0;
    /* Everything is allocated before anything changes: on -ENOMEM the
     * nodes are as they were. */
    if (n && !(heap = malloc(n * sizeof(*heap))))
        return -ENOMEM;
    if (!(counts = calloc(SCHED_CAUSE_CONSTRAINT + req->n_constraints, sizeof(*counts)))) {
        free(heap);
        return -ENOMEM;
    }

    for (size_t i = 0; i < n; i++)
        if (sched_node_cause(&nodes[i], req) == SCHED_FITS)
            heap[len++] = i;
    for (size_t i = len / 2; i-- > 0;)
        sched_sift_down(nodes, heap, len, i);

    for (; placed < req->count && len; placed++) {
        size_t best = heap[0];
        sched_node_t *node = &nodes[best];

        out[placed] = (int)best;
        node->tasks++;
        node->service_tasks++;
        if (req->cpu > 0)
            node->cpu_reserved += req->cpu;
        if (req->mem > 0)
            node->mem_reserved += req->mem;
        if (!sched_resource_fits(node->cpu_total, node->cpu_reserved, req->cpu) ||
            !sched_resource_fits(node->mem_total, node->mem_reserved, req->mem))
            heap[0] = heap[--len];  /* full: it leaves the heap */
        if (len)
            sched_sift_down(nodes, heap, len, 0);
    }
    for (size_t i = placed; i < req->count; i++)
        out[i] = -1;
    if (placed < req->count && reason)
        sched_reason(nodes, n, req, counts, reason, reasonlen);

    free(counts);
    free(heap);
    return (int)placed;
}
