/* load: what the agents measure, as the controller keeps it between their
 * reports: each node's balancer counters turned into connection rates, and
 * each running task's engine stats (CPU, memory, network). `service
 * stats`, /metrics and the autoscaler read it here.
 *
 * A rate is smoothed over about LOAD_TAU_MS (an exponentially weighted
 * average of the rates between reports), so that one quiet or busy second
 * does not swing it. Nothing here is stored: after a restart the figures
 * come back with the next reports. No I/O.
 */
#ifndef SKIFF_LOAD_H
#define SKIFF_LOAD_H

#include <stddef.h>
#include <stdint.h>
#include <uthash.h>

#include "skiff_pb.h"

#define LOAD_TAU_MS 3000
/* A task's stats older than this are not trusted (its node stopped
 * reporting them). */
#define LOAD_STALE_MS 5000

struct node;
struct task;
struct service;

typedef struct load_backend {
    char *backend;          /* ADDRESS:PORT */
    uint64_t connections;   /* the counter at the last report */
    uint64_t active;
    uint64_t connect_failures;
    int failed_now;         /* connect failures grew in the last report */
    double rate;            /* new connections per second, smoothed */
    int64_t at_ms;          /* the last report's time */
    unsigned gen;
} load_backend_t;

/* One service's backends, as one node's balancer counts them. */
typedef struct load_lb {
    char *service;          /* the key */
    load_backend_t *backends;
    size_t n;
    unsigned gen;
    UT_hash_handle hh;
} load_lb_t;

/* A service's load over its running tasks, for the autoscaler. */
typedef struct load_figures {
    uint32_t running;        /* running tasks */
    uint32_t with_stats;     /* of them, with fresh engine stats */
    double cpu_percent;      /* their mean CPU, of one CPU or of their limit */
    double connections_per_second; /* in all, through every balancer */
    uint64_t active;         /* open connections through the balancers */
    uint32_t nodes_reporting; /* ready nodes whose balancers reported lately */
    uint32_t nodes_ready;
} load_figures_t;

/* A full report's counters of a node (at now_ms, Unix ms). Returns 0 or
 * -ENOMEM (the node's figures are then dropped, to come back). */
int load_node_report(struct node *n, LbStats *const *stats, size_t n_stats, int64_t now_ms);
/* Frees a node's figures. */
void load_node_free(struct node *n);

/* A task's engine stats (copied). Returns 0 or -ENOMEM. */
int load_task_report(struct task *t, const TaskStats *s);
void load_task_free(struct task *t);

/* The balancers' figures for one task: the sum over every node of its
 * backends' rates and open connections. */
void load_task_lb(struct service *svc, const struct task *t, struct node *nodes,
                  double *rate, uint64_t *active);

/* A TaskStats of a running task for replies: engine stats and balancer
 * figures, with its names. NULL when out of memory. */
TaskStats *load_task_view(struct service *svc, const struct task *t, struct node *nodes,
                          int64_t now_ms);

/* The service's figures over its running tasks, at now_ms. */
void load_service(struct service *svc, struct node *nodes, int64_t now_ms, load_figures_t *out);

#endif
