/* metrics: the agent's /metrics page (Prometheus text, net/prom): its
 * balancers' counters by service and backend, its containers' CPU, memory
 * and network from the engine's stats streams, its Engine API requests, and
 * the process metrics. It reads what the other parts keep; it keeps
 * nothing itself.
 */
#ifndef SKIFF_AGENT_METRICS_H
#define SKIFF_AGENT_METRICS_H

#include "engine.h"
#include "lb.h"
#include "prom.h"
#include "stats.h"

typedef struct agent_metrics_src {
    const char *node;
    lb_t *lb;           /* NULL: no balancer yet */
    stats_t *stats;     /* NULL: no stats yet */
    engine_t *engine;   /* the Docker engine (docker.h), for its request counts */
} agent_metrics_src_t;

/* Writes the whole page into p. */
void agent_metrics_page(prom_t *p, const agent_metrics_src_t *src);

#endif
