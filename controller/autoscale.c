/* autoscale: see autoscale.h. */
#include "autoscale.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ceil(total / target), at least 1 when there is any load. */
static uint32_t autoscale_need(double total, double target)
{
    double n = ceil(total / target - 1e-9);

    if (n < 0)
        n = 0;
    if (n > 4e9)
        n = 4e9;
    return (uint32_t)n;
}

void autoscale_decide(const autoscale_input_t *in, autoscale_state_t *st,
                      autoscale_decision_t *out)
{
    const Autoscale *p = in->policy;
    const load_figures_t *l = &in->load;
    uint32_t cur = in->current, rec = 0;
    int have = 0;
    size_t n = 0;

    memset(out, 0, sizeof(*out));
    out->desired = cur;
    /* the figures, and what each target asks for */
    if (p->target_cpu > 0 && l->with_stats) {
        uint32_t need = autoscale_need(l->cpu_percent * l->with_stats, p->target_cpu);
        n += (size_t)snprintf(out->reason + n, sizeof(out->reason) - n,
                              "cpu %.1f%% (target %.0f%%) needs %u; ", l->cpu_percent,
                              p->target_cpu, need);
        if (need > rec)
            rec = need;
        have = 1;
    }
    if (p->target_rps > 0 && n < sizeof(out->reason)) {
        uint32_t need = autoscale_need(l->connections_per_second, p->target_rps);
        n += (size_t)snprintf(out->reason + n, sizeof(out->reason) - n,
                              "%.1f conn/s (target %.0f each) needs %u; ",
                              l->connections_per_second, p->target_rps, need);
        if (need > rec)
            rec = need;
        have = 1;
    }
    if (p->target_connections > 0 && n < sizeof(out->reason)) {
        uint32_t need = autoscale_need((double)l->active, p->target_connections);
        n += (size_t)snprintf(out->reason + n, sizeof(out->reason) - n,
                              "%llu open (target %.0f each) needs %u; ",
                              (unsigned long long)l->active, p->target_connections, need);
        if (need > rec)
            rec = need;
        have = 1;
    }
    out->partial = l->nodes_reporting < l->nodes_ready ||
                   (p->target_cpu > 0 && l->with_stats < l->running) || !have;
    if (rec < p->min)
        rec = p->min;
    if (rec > p->max)
        rec = p->max;
    out->recommended = rec;
    if (n >= 2 && n < sizeof(out->reason))
        out->reason[n - 2] = '\0';

    /* inside the tolerance: as it is (the window is not broken either) */
    if (cur >= p->min && cur <= p->max && rec != cur &&
        fabs((double)rec - (double)cur) <= AUTOSCALE_TOLERANCE * cur) {
        st->below_since_ms = 0;
        return;
    }
    if (cur < p->min || rec > cur) {
        st->below_since_ms = 0;
        if (cur < p->min || !st->last_up_ms ||
            in->now_ms - st->last_up_ms >= p->cooldown_up_ms) {
            out->desired = rec > p->min ? rec : p->min;
            st->last_up_ms = in->now_ms;
        }
        return;
    }
    if (cur > p->max) {
        out->desired = p->max;
        st->last_down_ms = in->now_ms;
        st->below_since_ms = 0;
        return;
    }
    if (rec == cur || out->partial || in->updating) {
        st->below_since_ms = 0;
        return;
    }
    /* below: wait until the whole window was */
    if (!st->below_since_ms) {
        st->below_since_ms = in->now_ms;
        st->below_max = rec;
    } else if (rec > st->below_max) {
        st->below_max = rec;
    }
    if (in->now_ms - st->below_since_ms >= p->cooldown_down_ms &&
        (!st->last_up_ms || in->now_ms - st->last_up_ms >= p->cooldown_down_ms)) {
        out->desired = st->below_max;
        st->last_down_ms = in->now_ms;
        st->below_since_ms = 0;
    }
}
