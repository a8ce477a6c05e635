/* rebalance: see rebalance.h. */
#include "rebalance.h"
#include "spec.h"

#include <string.h>

int rebalance_pick(const rebalance_node_t *nodes, size_t n, size_t *from, size_t *to)
{
    size_t most = n, fewest = n;

    for (size_t i = 0; i < n; i++) {
        if (nodes[i].tasks && (most == n || nodes[i].tasks > nodes[most].tasks))
            most = i;
        if (nodes[i].target_ok && (fewest == n || nodes[i].tasks < nodes[fewest].tasks))
            fewest = i;
    }
    if (most == n || fewest == n || most == fewest ||
        nodes[most].tasks < nodes[fewest].tasks + 2)
        return 0;
    *from = most;
    *to = fewest;
    return 1;
}

int rebalance_service_ok(const ServiceSpec *spec)
{
    constraint_t c;

    if (spec->no_rebalance || spec->n_mounts)
        return 0;
    for (size_t i = 0; i < spec->n_constraints; i++)
        if (constraint_parse(spec->constraints[i], &c) == 0 && c.equal &&
            (c.kind == CONSTRAINT_NODE_NAME || c.kind == CONSTRAINT_NODE_ID))
            return 0;
    return 1;
}
