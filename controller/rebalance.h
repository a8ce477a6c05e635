/* rebalance: which task to move where, to restore a service's spread when
 * nodes join or come back (they stay empty otherwise, as in Swarm:
 * moby/moby#24103). A pure function over counts; the controller moves the
 * task through its start-first machinery (controller/capacity.c).
 *
 * Only stateless services move: no volume or bind mount (their data is on
 * a node), no placement pinned to one node (node.name== or node.id==), and
 * not turned off with --no-rebalance.
 */
#ifndef SKIFF_REBALANCE_H
#define SKIFF_REBALANCE_H

#include <stddef.h>
#include <stdint.h>

#include "skiff_pb.h"

typedef struct rebalance_node {
    uint32_t tasks;      /* the service's running tasks on the node */
    int target_ok;       /* may take one more: ready for the delay, active, constraints and
                          * reservations fit */
} rebalance_node_t;

/* A move from the node with the most tasks to the eligible node with the
 * fewest, when they differ by 2 or more (so the move makes the spread
 * better, never just different). Ties go to the lower index. Returns 1 and
 * sets *from and *to, or 0 when the spread is as good as it gets. */
int rebalance_pick(const rebalance_node_t *nodes, size_t n, size_t *from, size_t *to);

/* 1 when the service's tasks may be moved. */
int rebalance_service_ok(const ServiceSpec *spec);

#endif
