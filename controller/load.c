/* load: see load.h. */
#include "load.h"
#include "model.h"
#include "pbutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

static void load_lb_free(load_lb_t *lb)
{
    for (size_t i = 0; i < lb->n; i++)
        free(lb->backends[i].backend);
    free(lb->backends);
    free(lb->service);
    free(lb);
}

void load_node_free(node_t *n)
{
    load_lb_t *lb, *tmp;

    HASH_ITER(hh, n->load, lb, tmp) {
        HASH_DEL(n->load, lb);
        load_lb_free(lb);
    }
}

static load_backend_t *load_find_backend(load_lb_t *lb, const char *backend)
{
    for (size_t i = 0; i < lb->n; i++)
        if (strcmp(lb->backends[i].backend, backend) == 0)
            return &lb->backends[i];
    return NULL;
}

/* The rate between two counters dt_ms apart, folded into the average. */
static double load_smooth(double avg, uint64_t before, uint64_t now, int64_t dt_ms)
{
    double inst, alpha;

    if (dt_ms <= 0)
        return avg;
    inst = now >= before ? (double)(now - before) * 1000.0 / (double)dt_ms : 0; /* reset: 0 */
    alpha = 1.0 - exp(-(double)dt_ms / LOAD_TAU_MS);
    return avg + alpha * (inst - avg);
}

int load_node_report(node_t *n, LbStats *const *stats, size_t n_stats, int64_t now_ms)
{
    unsigned gen = ++n->load_gen;
    load_lb_t *lb, *tmp;

    for (size_t i = 0; i < n_stats; i++) {
        const LbStats *s = stats[i];
        load_backend_t *b;

        HASH_FIND_STR(n->load, s->service_name, lb);
        if (!lb) {
            if (!(lb = calloc(1, sizeof(*lb))) || !(lb->service = strdup(s->service_name))) {
                free(lb);
                goto out_nomem;
            }
            HASH_ADD_KEYPTR(hh, n->load, lb->service, strlen(lb->service), lb);
        }
        lb->gen = gen; /* in this report; its backends not in it go below */
        if ((b = load_find_backend(lb, s->backend))) {
            b->rate = load_smooth(b->rate, b->connections, s->connections, now_ms - b->at_ms);
        } else {
            load_backend_t *grown = realloc(lb->backends, (lb->n + 1) * sizeof(*grown));
            if (!grown)
                goto out_nomem;
            lb->backends = grown;
            b = &lb->backends[lb->n];
            memset(b, 0, sizeof(*b));
            if (!(b->backend = strdup(s->backend)))
                goto out_nomem;
            lb->n++;
        }
        b->failed_now = s->connect_failures > b->connect_failures && b->at_ms;
        b->connections = s->connections;
        b->active = s->active;
        b->connect_failures = s->connect_failures;
        b->at_ms = now_ms;
        b->gen = gen;
    }
    /* what this report no longer has is gone */
    HASH_ITER(hh, n->load, lb, tmp) {
        size_t k = 0;
        if (lb->gen != gen) {
            HASH_DEL(n->load, lb);
            load_lb_free(lb);
            continue;
        }
        for (size_t i = 0; i < lb->n; i++) {
            if (lb->backends[i].gen == gen)
                lb->backends[k++] = lb->backends[i];
            else
                free(lb->backends[i].backend);
        }
        lb->n = k;
    }
    n->load_ms = now_ms;
    return 0;

out_nomem:
    load_node_free(n);
    return -ENOMEM;
}

int load_task_report(task_t *t, const TaskStats *s)
{
    TaskStats *copy = pb_dup(s);

    if (!copy)
        return -ENOMEM;
    pb_free(t->stats);
    t->stats = copy;
    return 0;
}

void load_task_free(task_t *t)
{
    pb_free(t->stats);
    t->stats = NULL;
}

void load_task_lb(service_t *svc, const task_t *t, node_t *nodes, double *rate, uint64_t *active)
{
    const char *name = svc->pb->spec->name;
    char backend[128];

    *rate = 0;
    *active = 0;
    if (!t->node)
        return;
    for (node_t *n = nodes; n; n = n->hh.next) {
        load_lb_t *lb;
        HASH_FIND_STR(n->load, name, lb);
        if (!lb)
            continue;
        for (size_t p = 0; p < t->pb->n_ports; p++) {
            load_backend_t *b;
            snprintf(backend, sizeof(backend), "%s:%u", t->node->pb->address,
                     t->pb->ports[p]->host_port);
            if ((b = load_find_backend(lb, backend))) {
                *rate += b->rate;
                *active += b->active;
            }
        }
    }
}

static int load_fresh(const task_t *t, int64_t now_ms)
{
    return t->stats && now_ms - t->stats->time_ms <= LOAD_STALE_MS;
}

TaskStats *load_task_view(service_t *svc, const task_t *t, node_t *nodes, int64_t now_ms)
{
    TaskStats *v = load_fresh(t, now_ms) ? pb_dup(t->stats) : PB_NEW(TaskStats);
    char name[96];

    if (!v)
        return NULL;
    snprintf(name, sizeof(name), "%s.%u", svc->pb->spec->name, t->pb->slot);
    if (pb_set_str(&v->task_id, t->pb->id) || pb_set_str(&v->task_name, name) ||
        pb_set_str(&v->service_name, svc->pb->spec->name) ||
        pb_set_str(&v->node_name, t->pb->node_name)) {
        pb_free(v);
        return NULL;
    }
    load_task_lb(svc, t, nodes, &v->connections_per_second, &v->active_connections);
    return v;
}

void load_service(service_t *svc, node_t *nodes, int64_t now_ms, load_figures_t *out)
{
    const ServiceSpec *spec = svc->pb->spec;
    double cpus = spec->limits && spec->limits->nano_cpus ? spec->limits->nano_cpus / 1e9 : 1.0;
    double cpu_sum = 0;
    task_t *t;

    memset(out, 0, sizeof(*out));
    DL_FOREACH2(svc->tasks, t, svc_next) {
        if (t->pb->desired_state != DESIRED_RUNNING || t->pb->state != TASK_RUNNING)
            continue;
        out->running++;
        if (load_fresh(t, now_ms)) {
            out->with_stats++;
            cpu_sum += t->stats->cpu_percent / cpus;
        }
    }
    if (out->with_stats)
        out->cpu_percent = cpu_sum / out->with_stats;
    for (node_t *n = nodes; n; n = n->hh.next) {
        load_lb_t *lb;
        if (n->pb->state != NODE_READY)
            continue;
        out->nodes_ready++;
        if (now_ms - n->load_ms > LOAD_STALE_MS)
            continue;
        out->nodes_reporting++;
        HASH_FIND_STR(n->load, spec->name, lb);
        for (size_t i = 0; lb && i < lb->n; i++) {
            out->connections_per_second += lb->backends[i].rate;
            out->active += lb->backends[i].active;
        }
    }
}
