/* skiff-bench-sched: how long sched_place() takes to place 10,000 tasks of
 * one service on 1,000 nodes, the size DESIGN.md's users will not outgrow.
 *
 * Three scenarios, each run several times on a fresh copy of the cluster;
 * only the sched_place() call is timed. It prints the median and the
 * maximum in milliseconds next to the target (<= 100 ms). It never fails on
 * a timing (tests/bench/README.md); it exits non-zero only when the
 * placement itself is wrong.
 *
 *   skiff-bench-sched [RUNS]     (default 21)
 */
#include "scheduler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NODES 1000
#define TASKS 10000
#define TARGET_MS 100.0
#define CPU 1000000000LL
#define MB (1024LL * 1024)

static const sched_label_t zone_labels[][2] = {
    { { "zone", "eu" }, { "disk", "ssd" } },
    { { "zone", "us" }, { "disk", "ssd" } },
    { { "zone", "asia" }, { "disk", "hdd" } },
};

typedef struct scenario {
    const char *name;
    int constrained;   /* labels, constraints, some nodes down or drained */
    int64_t cpu, mem;  /* reservation per task */
    int64_t node_mem;  /* memory of every node */
} scenario_t;

static char names[NODES][16], ids[NODES][16];

static void cluster_fill(sched_node_t *nodes, const scenario_t *sc)
{
    for (size_t i = 0; i < NODES; i++) {
        sched_node_t *n = &nodes[i];

        *n = (sched_node_t){
            .id = ids[i],
            .name = names[i],
            .ready = 1,
            .active = 1,
            .cpu_total = 16 * CPU,
            .mem_total = sc->node_mem,
            /* Other services already there, unevenly. */
            .tasks = (uint32_t)((i * 7919) % 13),
            .cpu_reserved = (int64_t)((i * 7919) % 13) * CPU / 10,
            .mem_reserved = (int64_t)((i * 7919) % 13) * 64 * MB,
        };
        if (sc->constrained) {
            n->labels = zone_labels[i % 3];
            n->n_labels = 2;
            n->ready = i % 50 != 7;
            n->active = i % 40 != 3;
        }
    }
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    static const scenario_t scenarios[] = {
        { "one service, no constraint", 0, 0, 0, 64 * 1024 * MB },
        { "constraints + cpu/mem reservations", 1, CPU / 10, 128 * MB, 64 * 1024 * MB },
        { "as above, capacity runs out", 1, CPU / 10, 128 * MB, 2048 * MB },
    };
    int runs = argc > 1 ? atoi(argv[1]) : 21;
    sched_node_t *nodes = calloc(NODES, sizeof(*nodes));
    int *out = calloc(TASKS, sizeof(*out));
    double *ms = calloc(runs > 0 ? (size_t)runs : 1, sizeof(*ms));
    constraint_t cons[3];
    int status = 0;

    if (runs <= 0) {
        fprintf(stderr, "usage: skiff-bench-sched [RUNS]\n");
        return 2;
    }
    if (!nodes || !out || !ms) {
        fprintf(stderr, "skiff-bench-sched: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < NODES; i++) {
        snprintf(names[i], sizeof(names[i]), "node-%04zu", i);
        snprintf(ids[i], sizeof(ids[i]), "id-%04zu", i);
    }
    if (constraint_parse("node.labels.zone!=asia", &cons[0]) ||
        constraint_parse("node.labels.disk==ssd", &cons[1]) ||
        constraint_parse("node.name!=node-0001", &cons[2])) {
        fprintf(stderr, "skiff-bench-sched: constraint_parse failed\n");
        return 1;
    }

    printf("skiff-bench-sched: %d tasks of one service on %d nodes, %d runs each "
           "(target: <= %.0f ms)\n", TASKS, NODES, runs, TARGET_MS);
    for (size_t s = 0; s < sizeof(scenarios) / sizeof(scenarios[0]); s++) {
        const scenario_t *sc = &scenarios[s];
        sched_request_t req = {
            .constraints = sc->constrained ? cons : NULL,
            .n_constraints = sc->constrained ? 3 : 0,
            .cpu = sc->cpu,
            .mem = sc->mem,
            .count = TASKS,
        };
        char reason[256] = "";
        int placed = 0;

        for (int r = 0; r < runs; r++) {
            double t0;

            cluster_fill(nodes, sc);
            t0 = now_ms();
            placed = sched_place(nodes, NODES, &req, out, reason, sizeof(reason));
            ms[r] = now_ms() - t0;
            if (placed < 0) {
                fprintf(stderr, "skiff-bench-sched: sched_place: %d\n", placed);
                return 1;
            }
        }
        /* The last run's placement must respect the filter. */
        for (int t = 0; t < placed; t++) {
            const sched_node_t *n = &nodes[out[t]];

            for (size_t c = 0; c < req.n_constraints; c++)
                if (!sched_constraint_ok(n, &cons[c]) || !n->ready || !n->active)
                    status = 1;
            if (n->mem_total && n->mem_reserved > n->mem_total)
                status = 1;
        }
        qsort(ms, (size_t)runs, sizeof(*ms), cmp_double);
        printf("  %-36s median %7.3f ms  max %7.3f ms  %s  placed %d%s%s\n", sc->name,
               ms[runs / 2], ms[runs - 1], ms[runs - 1] <= TARGET_MS ? "ok  " : "SLOW",
               placed, *reason ? "\n    " : "", reason);
    }
    if (status)
        fprintf(stderr, "skiff-bench-sched: a placement broke the filter\n");
    free(ms);
    free(out);
    free(nodes);
    return status;
}
