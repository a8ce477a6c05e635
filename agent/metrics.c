/* metrics: see metrics.h. */
#include "metrics.h"
#include "docker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void metrics_lb(prom_t *p, lb_t *lb)
{
    LbStats **st = NULL;
    size_t n = 0;

    if (lb && lb_stats(lb, &st, &n) != 0)
        n = 0;
    prom_family(p, "skiff_lb_connections_total", "counter",
                "Client connections the balancer sent to a backend.");
    for (size_t i = 0; i < n; i++)
        prom_sample(p, "skiff_lb_connections_total", (double)st[i]->connections, "service",
                    st[i]->service_name, "backend", st[i]->backend, NULL);
    prom_family(p, "skiff_lb_active_connections", "gauge",
                "Client connections open through the balancer, by backend.");
    for (size_t i = 0; i < n; i++)
        prom_sample(p, "skiff_lb_active_connections", (double)st[i]->active, "service",
                    st[i]->service_name, "backend", st[i]->backend, NULL);
    prom_family(p, "skiff_lb_connect_failures_total", "counter",
                "Connects to a backend that failed (the next backend was tried).");
    for (size_t i = 0; i < n; i++)
        prom_sample(p, "skiff_lb_connect_failures_total", (double)st[i]->connect_failures,
                    "service", st[i]->service_name, "backend", st[i]->backend, NULL);
    prom_family(p, "skiff_lb_bytes_total", "counter",
                "Bytes through the balancer: in from clients, out from backends.");
    for (size_t i = 0; i < n; i++) {
        uint64_t in = 0, out = 0;
        int first = 1;
        for (size_t k = 0; k < i && first; k++)
            first = strcmp(st[k]->service_name, st[i]->service_name) != 0;
        if (!first)
            continue; /* one sample pair per service, summed over its backends */
        for (size_t k = i; k < n; k++) {
            if (strcmp(st[k]->service_name, st[i]->service_name) != 0)
                continue;
            in += st[k]->bytes_in;
            out += st[k]->bytes_out;
        }
        prom_sample(p, "skiff_lb_bytes_total", (double)in, "service", st[i]->service_name,
                    "direction", "in", NULL);
        prom_sample(p, "skiff_lb_bytes_total", (double)out, "service", st[i]->service_name,
                    "direction", "out", NULL);
    }
    if (st)
        lb_stats_free(st, n);
    prom_family(p, "skiff_lb_thread_connections_total", "counter",
                "Client connections each balancer thread accepted.");
    for (size_t i = 0; lb && i < lb_threads(lb); i++) {
        char thread[24];

        snprintf(thread, sizeof(thread), "%zu", i);
        prom_sample(p, "skiff_lb_thread_connections_total", (double)lb_thread_connections(lb, i),
                    "thread", thread, NULL);
    }
}

typedef struct metrics_walk {
    prom_t *p;
    int pass;
} metrics_walk_t;

static void metrics_task(void *arg, const stats_task_t *t)
{
    metrics_walk_t *w = arg;
    static const char *const names[] = {
        "skiff_container_cpu_seconds_total", "skiff_container_memory_bytes",
        "skiff_container_memory_limit_bytes", "skiff_container_network_receive_bytes_total",
        "skiff_container_network_transmit_bytes_total",
    };
    char name[96];
    double v;

    if (!t->last)
        return;
    switch (w->pass) {
    case 0: v = (double)t->last->cpu_total_ns / 1e9; break;
    case 1: v = (double)t->last->memory_usage; break;
    case 2: v = (double)t->last->memory_limit; break;
    case 3: v = (double)t->last->net_rx; break;
    default: v = (double)t->last->net_tx; break;
    }
    snprintf(name, sizeof(name), "%s.%u", t->service, t->slot);
    prom_sample(w->p, names[w->pass], v, "service", t->service, "task", t->task_id, "name", name,
                NULL);
}

static void metrics_containers(prom_t *p, stats_t *stats)
{
    static const char *const families[][3] = {
        { "skiff_container_cpu_seconds_total", "counter", "CPU time used by a task's container." },
        { "skiff_container_memory_bytes", "gauge",
          "Memory a task's container uses, the inactive page cache left out." },
        { "skiff_container_memory_limit_bytes", "gauge",
          "The memory limit of a task's container (the node's memory when none is set)." },
        { "skiff_container_network_receive_bytes_total", "counter",
          "Bytes a task's container received." },
        { "skiff_container_network_transmit_bytes_total", "counter",
          "Bytes a task's container sent." },
    };
    metrics_walk_t w = { p, 0 };

    for (w.pass = 0; w.pass < 5; w.pass++) {
        prom_family(p, families[w.pass][0], families[w.pass][1], families[w.pass][2]);
        if (stats)
            stats_each(stats, metrics_task, &w);
    }
}

static void metrics_engine_answer(void *arg, const char *op, int code, uint64_t n)
{
    char c[16];

    snprintf(c, sizeof(c), "%d", code);
    prom_sample(arg, "skiff_engine_requests_total", (double)n, "op", op, "code",
                code ? c : "none", NULL);
}

void agent_metrics_page(prom_t *p, const agent_metrics_src_t *src)
{
    metrics_lb(p, src->lb);
    metrics_containers(p, src->stats);
    prom_family(p, "skiff_engine_requests_total", "counter",
                "Docker Engine API requests, by operation and HTTP status (none: no answer).");
    if (src->engine)
        docker_requests_each(src->engine, metrics_engine_answer, p);
    prom_family(p, "skiff_stats_streams", "gauge",
                "Containers whose stats the agent follows.");
    prom_sample(p, "skiff_stats_streams", src->stats ? (double)stats_streams(src->stats) : 0,
                NULL);
    prom_family(p, "skiff_build_info", "gauge", "The skiff version, as a label.");
    prom_sample(p, "skiff_build_info", 1, "version", SKIFF_VERSION, "role", "agent", "node",
                src->node, NULL);
    prom_process(p);
}
