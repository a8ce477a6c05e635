/* scheduler (sched_*): the scheduler, a pure function (Nomad's scheduler, Swarm's filters).
 *
 * Given a view of the nodes and a request for some tasks of one service, it
 * picks a node for each task, or says why none fits. Filter: the node is
 * ready, active, satisfies every constraint, and has the reservation free.
 * Score: fewest tasks of the same service (spread), then fewest tasks in
 * all, then the node's position (stable). It does no I/O and includes no
 * libuv, curl or SQLite header; the controller builds the view from its
 * model and commits the result.
 *
 * Cost: O(nodes) to filter, then O(log nodes) per task (a heap).
 */
#ifndef SKIFF_SCHED_H
#define SKIFF_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "spec.h"

typedef struct sched_label {
    const char *key;
    const char *value;
} sched_label_t;

/* One node as the scheduler sees it. The counters are in/out: sched_place()
 * adds what it places, so that calls for several services in a row see
 * each other's placements.
 *
 * A node has two sets of labels: those of its agent (--label) and those set
 * on the controller (node update --label-add). Its effective labels, which
 * node.labels.K constraints match, are both, the controller's winning for a
 * key in both; engine.labels.K constraints match the agent's alone. */
typedef struct sched_node {
    const char *id;
    const char *name;
    const sched_label_t *labels;       /* the agent's */
    size_t n_labels;
    const sched_label_t *spec_labels;  /* the controller's */
    size_t n_spec_labels;
    int ready;               /* NODE_READY */
    int active;              /* AVAILABILITY_ACTIVE */
    int64_t cpu_total;       /* nano-CPUs; 0: unknown, no CPU reservation fits */
    int64_t mem_total;       /* bytes; 0: unknown, no memory reservation fits */
    int64_t cpu_reserved;
    int64_t mem_reserved;
    uint32_t tasks;          /* tasks that should run on the node */
    uint32_t service_tasks;  /* of them, tasks of the service being placed */
} sched_node_t;

typedef struct sched_request {
    const constraint_t *constraints;
    size_t n_constraints;
    int64_t cpu;   /* reservation per task, nano-CPUs */
    int64_t mem;   /* reservation per task, bytes */
    size_t count;  /* tasks to place */
} sched_request_t;

/* Places req->count tasks on nodes[0..n). Before the call, service_tasks of
 * every node must hold the service's tasks already there.
 *
 * out[i] is the index of the node for task i, or -1 when it fits nowhere;
 * tasks are placed in order, so the ones that don't fit are at the end.
 * When any doesn't fit, reason gets one line in Swarm's manner: "no
 * suitable node (1 node not ready, 2 nodes drained, 1 node fails
 * node.labels.zone==eu, 2 nodes lack memory)". Returns how many were placed,
 * or -ENOMEM. */
int sched_place(sched_node_t *nodes, size_t n, const sched_request_t *req,
                int *out, char *reason, size_t reasonlen);

/* The value of the node's effective label key (see sched_node_t), or NULL
 * when it has none. */
const char *sched_node_label(const sched_node_t *node, const char *key);

/* 1 when the node satisfies the constraint. */
int sched_constraint_ok(const sched_node_t *node, const constraint_t *c);

#endif
