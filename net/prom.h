/* prom: metrics in the Prometheus text exposition format (version 0.0.4).
 *
 * A scrape builds its page into a prom_t: a family (HELP and TYPE lines)
 * then its samples, label values escaped as the format wants. Histograms
 * are kept by their owner in a prom_histogram_t and written whole. What to
 * export is the caller's business; prom_process() adds the process metrics
 * every daemon has (memory, CPU, file descriptors, start time), read from
 * /proc/self (small reads of the kernel's own memory, which never block).
 *
 * The page is bounded: past max bytes the rest is dropped and prom_ok()
 * turns 0, so that the caller answers 500 rather than half a page.
 */
#ifndef SKIFF_PROM_H
#define SKIFF_PROM_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef struct prom {
    buf_t out;
    size_t max;
    int failed;
} prom_t;

/* max: the largest page (0: 64 MiB). */
void prom_init(prom_t *p, size_t max);
void prom_free(prom_t *p);
/* 1 while every write fitted. */
int prom_ok(const prom_t *p);
/* The page so far, NUL-terminated when memory allows. */
const char *prom_text(prom_t *p, size_t *len);

/* "# HELP name help" and "# TYPE name type" (counter, gauge, histogram). */
void prom_family(prom_t *p, const char *name, const char *type, const char *help);

/* One sample: name{k1="v1",k2="v2"} value. The labels are key/value
 * pairs ending with NULL. */
void prom_sample(prom_t *p, const char *name, double value, ...) __attribute__((sentinel));
/* The same with n_labels pairs in labels[2 * n_labels]. */
void prom_sample_labels(prom_t *p, const char *name, const char *const *labels, size_t n_labels,
                        double value);

/* A histogram with fixed upper bounds (ascending, +Inf implied). */
#define PROM_MAX_BUCKETS 24
typedef struct prom_histogram {
    size_t n_bounds;
    double bounds[PROM_MAX_BUCKETS];
    uint64_t counts[PROM_MAX_BUCKETS + 1]; /* per bucket, not cumulative */
    uint64_t count;
    double sum;
} prom_histogram_t;

void prom_histogram_init(prom_histogram_t *h, const double *bounds, size_t n_bounds);
void prom_histogram_observe(prom_histogram_t *h, double v);
/* The family and its _bucket, _sum and _count samples. */
void prom_histogram_write(prom_t *p, const char *name, const char *help,
                          const prom_histogram_t *h);

/* process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_cpu_seconds_total, process_open_fds, process_max_fds,
 * process_start_time_seconds. */
void prom_process(prom_t *p);

#endif
