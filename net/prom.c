/* prom: see prom.h. */
#include "prom.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define PROM_MAX_DEFAULT (64u << 20)
#define PROM_MAX_LABELS 8

void prom_init(prom_t *p, size_t max)
{
    buf_t empty = BUF_INIT;

    p->out = empty;
    p->max = max ? max : PROM_MAX_DEFAULT;
    p->failed = 0;
}

void prom_free(prom_t *p)
{
    buf_free(&p->out);
}

int prom_ok(const prom_t *p)
{
    return !p->failed;
}

const char *prom_text(prom_t *p, size_t *len)
{
    *len = buf_len(&p->out);
    if (!p->out.pos || buf_reserve(&p->out, 1, p->max + 1))
        return *len ? p->out.pos : "";
    *p->out.last = '\0'; /* after the text, not in it */
    return p->out.pos;
}

static void prom_put(prom_t *p, const char *s, size_t n)
{
    if (!p->failed && buf_append(&p->out, s, n, p->max))
        p->failed = 1;
}

static void prom_puts(prom_t *p, const char *s)
{
    prom_put(p, s, strlen(s));
}

/* HELP text escapes backslash and newline; label values also '"'. */
static void prom_escaped(prom_t *p, const char *s, int quote)
{
    const char *run = s;

    for (; *s; s++) {
        const char *esc = *s == '\\' ? "\\\\" : *s == '\n' ? "\\n"
                        : (quote && *s == '"') ? "\\\"" : NULL;
        if (!esc)
            continue;
        prom_put(p, run, (size_t)(s - run));
        prom_puts(p, esc);
        run = s + 1;
    }
    prom_put(p, run, (size_t)(s - run));
}

static void prom_value(prom_t *p, double v)
{
    char num[40];

    if (isnan(v))
        snprintf(num, sizeof(num), "NaN");
    else if (isinf(v))
        snprintf(num, sizeof(num), "%cInf", v > 0 ? '+' : '-');
    else if (v == (double)(int64_t)v && fabs(v) < 9007199254740992.0)
        snprintf(num, sizeof(num), "%lld", (long long)v);
    else {
        /* the shortest of 15 or 17 digits that reads back as v */
        snprintf(num, sizeof(num), "%.15g", v);
        if (strtod(num, NULL) != v)
            snprintf(num, sizeof(num), "%.17g", v);
    }
    prom_puts(p, num);
}

void prom_family(prom_t *p, const char *name, const char *type, const char *help)
{
    prom_puts(p, "# HELP ");
    prom_puts(p, name);
    prom_puts(p, " ");
    prom_escaped(p, help, 0);
    prom_puts(p, "\n# TYPE ");
    prom_puts(p, name);
    prom_puts(p, " ");
    prom_puts(p, type);
    prom_puts(p, "\n");
}

void prom_sample_labels(prom_t *p, const char *name, const char *const *labels, size_t n_labels,
                        double value)
{
    prom_puts(p, name);
    for (size_t i = 0; i < n_labels; i++) {
        prom_puts(p, i ? "," : "{");
        prom_puts(p, labels[2 * i]);
        prom_puts(p, "=\"");
        prom_escaped(p, labels[2 * i + 1] ? labels[2 * i + 1] : "", 1);
        prom_puts(p, "\"");
    }
    prom_puts(p, n_labels ? "} " : " ");
    prom_value(p, value);
    prom_puts(p, "\n");
}

void prom_sample(prom_t *p, const char *name, double value, ...)
{
    const char *labels[2 * PROM_MAX_LABELS];
    size_t n = 0;
    const char *k;
    va_list ap;

    va_start(ap, value);
    while ((k = va_arg(ap, const char *)) && n < PROM_MAX_LABELS) {
        labels[2 * n] = k;
        labels[2 * n + 1] = va_arg(ap, const char *);
        n++;
    }
    va_end(ap);
    prom_sample_labels(p, name, labels, n, value);
}

/* ------------------------------------------------------------ histograms */

void prom_histogram_init(prom_histogram_t *h, const double *bounds, size_t n_bounds)
{
    memset(h, 0, sizeof(*h));
    h->n_bounds = n_bounds < PROM_MAX_BUCKETS ? n_bounds : PROM_MAX_BUCKETS;
    memcpy(h->bounds, bounds, h->n_bounds * sizeof(*bounds));
}

void prom_histogram_observe(prom_histogram_t *h, double v)
{
    size_t i = 0;

    while (i < h->n_bounds && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += v;
}

void prom_histogram_write(prom_t *p, const char *name, const char *help,
                          const prom_histogram_t *h)
{
    char sample[128], le[40];
    uint64_t cumulative = 0;

    prom_family(p, name, "histogram", help);
    snprintf(sample, sizeof(sample), "%s_bucket", name);
    for (size_t i = 0; i <= h->n_bounds; i++) {
        cumulative += h->counts[i];
        if (i < h->n_bounds)
            snprintf(le, sizeof(le), "%g", h->bounds[i]);
        else
            snprintf(le, sizeof(le), "+Inf");
        prom_sample(p, sample, (double)cumulative, "le", le, NULL);
    }
    snprintf(sample, sizeof(sample), "%s_sum", name);
    prom_sample(p, sample, h->sum, NULL);
    snprintf(sample, sizeof(sample), "%s_count", name);
    prom_sample(p, sample, (double)h->count, NULL);
}

/* ------------------------------------------------------- process metrics */

/* Fields of /proc/self/stat after the command name: utime is field 14,
 * stime 15, starttime 22, vsize 23, rss 24 (man 5 proc). */
static int prom_read_stat(unsigned long long *utime, unsigned long long *stime,
                          unsigned long long *start, unsigned long long *vsize, long long *rss)
{
    char line[1024], *p;
    FILE *f = fopen("/proc/self/stat", "r");
    int n = 0;

    if (!f)
        return -errno;
    p = fgets(line, sizeof(line), f);
    fclose(f);
    if (!p || !(p = strrchr(line, ')')))
        return -EINVAL;
    /* after ") " comes field 3 (state) */
    n = sscanf(p + 2,
               "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d "
               "%llu %llu %lld",
               utime, stime, start, vsize, rss);
    return n == 5 ? 0 : -EINVAL;
}

static double prom_boot_time(void)
{
    char line[256];
    FILE *f = fopen("/proc/stat", "r");
    double btime = 0;

    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "btime %lf", &btime) == 1)
            break;
    fclose(f);
    return btime;
}

static long prom_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    long n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

void prom_process(prom_t *p)
{
    unsigned long long utime, stime, start, vsize;
    long long rss;
    double tick = (double)sysconf(_SC_CLK_TCK);
    struct rlimit rl;
    long fds = prom_open_fds();

    if (prom_read_stat(&utime, &stime, &start, &vsize, &rss) == 0 && tick > 0) {
        prom_family(p, "process_cpu_seconds_total", "counter",
                    "Total user and system CPU time spent in seconds.");
        prom_sample(p, "process_cpu_seconds_total", (double)(utime + stime) / tick, NULL);
        prom_family(p, "process_resident_memory_bytes", "gauge",
                    "Resident memory size in bytes.");
        prom_sample(p, "process_resident_memory_bytes",
                    (double)rss * (double)sysconf(_SC_PAGESIZE), NULL);
        prom_family(p, "process_virtual_memory_bytes", "gauge",
                    "Virtual memory size in bytes.");
        prom_sample(p, "process_virtual_memory_bytes", (double)vsize, NULL);
        prom_family(p, "process_start_time_seconds", "gauge",
                    "Start time of the process since unix epoch in seconds.");
        prom_sample(p, "process_start_time_seconds", prom_boot_time() + (double)start / tick,
                    NULL);
    }
    if (fds >= 0) {
        prom_family(p, "process_open_fds", "gauge", "Number of open file descriptors.");
        prom_sample(p, "process_open_fds", (double)fds, NULL);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        prom_family(p, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
        prom_sample(p, "process_max_fds",
                    rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur, NULL);
    }
}
