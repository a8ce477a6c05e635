/* autoscale: the autoscaler's decision, a pure function (figures in, count
 * out), after Kubernetes' HPA but reacting in seconds.
 *
 * Target tracking: for each target the policy sets, the replicas the load
 * needs are ceil(total / target) (the total CPU of the running replicas,
 * their new connections per second through every balancer, or their open
 * connections); the recommendation is the largest of them, within [min,
 * max]. Within a tolerance of 10% of the current count nothing changes.
 * Up: at once, when cooldown_up has passed since the last scale-up. Down:
 * only when every recommendation for cooldown_down has been below the
 * current count, to the highest of them (stabilisation: a load that
 * oscillates keeps its peak capacity, no flapping), and never while a
 * rolling update runs (a slot is not taken away mid-update).
 *
 * Missing data never scales down: if some ready node's balancer has not
 * reported lately, or some running replica has no CPU figures, the totals
 * may be short, so only a scale-up may come of them.
 *
 * The decision state (stabilisation window, last scale times) is the
 * caller's, passed in and out. No I/O, no clock.
 */
#ifndef SKIFF_AUTOSCALE_H
#define SKIFF_AUTOSCALE_H

#include <stddef.h>
#include <stdint.h>

#include "load.h"
#include "skiff_pb.h"

#define AUTOSCALE_TOLERANCE 0.1

/* What the autoscaler remembers between evaluations. */
typedef struct autoscale_state {
    int64_t last_up_ms;     /* the last scale-up; 0: none */
    int64_t last_down_ms;
    int64_t below_since_ms; /* every recommendation since was below the count; 0: not */
    uint32_t below_max;     /* the highest of those recommendations */
} autoscale_state_t;

typedef struct autoscale_input {
    const Autoscale *policy;
    uint32_t current;          /* the replica count now */
    load_figures_t load;       /* load_service()'s */
    int updating;              /* a rolling update (or rollback) runs */
    int64_t now_ms;
} autoscale_input_t;

typedef struct autoscale_decision {
    uint32_t recommended;      /* what the load asks for, within [min, max] */
    uint32_t desired;          /* what to set now; == current: no change */
    int partial;               /* figures missing: no scale-down considered */
    char reason[256];          /* the figures and the rule that decided */
} autoscale_decision_t;

/* Decides, and updates st for the decision taken. */
void autoscale_decide(const autoscale_input_t *in, autoscale_state_t *st,
                      autoscale_decision_t *out);

#endif
