/* capacity: the autoscaler wired to the model. Each second every service
 * with an autoscaling policy gets its load figures (load.h) and a decision
 * (autoscale.h, pure); a change of the replica count is a scale like
 * `service scale`, recorded in the service (AutoscaleStatus) and told as an
 * event with the figures behind it. The decision is in the model before the
 * flush that acts on it, so it reaches SQLite in the same commit as the
 * tasks it makes, before any of them is sent to an agent.
 */
#include "autoscale.h"
#include "ctl.h"
#include "load.h"
#include "log.h"
#include "pbutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int capacity_set_replicas(ctl_t *ctl, service_t *svc, uint32_t replicas)
{
    if (replicas == svc->pb->spec->replicas)
        return 0;
    svc->pb->spec->replicas = replicas;
    svc->pb->version++;
    svc->pb->updated_ms = model_wall_ms();
    if (model_service_keep_spec(&ctl->model, svc))
        return -ENOMEM;
    model_touch_service(&ctl->model, svc);
    orch_mark(svc);
    return 0;
}

/* The autoscaler's memory, from the last decision kept in the service
 * (after a restart: no scale-up or -down sooner than its cooldown). */
static autoscale_state_t *capacity_state(service_t *svc)
{
    const AutoscaleStatus *as = svc->pb->autoscale_status;

    if (svc->autoscale)
        return svc->autoscale;
    if (!(svc->autoscale = calloc(1, sizeof(*svc->autoscale))))
        return NULL;
    if (as && as->time_ms) {
        if (as->to > as->from)
            svc->autoscale->last_up_ms = as->time_ms;
        else
            svc->autoscale->last_down_ms = as->time_ms;
    }
    return svc->autoscale;
}

static int capacity_updating(const service_t *svc)
{
    UpdateState s = svc->pb->update_status ? svc->pb->update_status->state : UPDATE_NONE;

    return s == UPDATE_UPDATING || s == UPDATE_ROLLBACK_STARTED;
}

/* Keeps the decision in the service; returns the status, or NULL. */
static AutoscaleStatus *capacity_status(service_t *svc)
{
    if (!svc->pb->autoscale_status)
        svc->pb->autoscale_status = PB_NEW(AutoscaleStatus);
    return svc->pb->autoscale_status;
}

static void capacity_decide(ctl_t *ctl, service_t *svc, int64_t now)
{
    autoscale_input_t in = { 0 };
    autoscale_decision_t d;
    autoscale_state_t *st = capacity_state(svc);
    AutoscaleStatus *as = capacity_status(svc);
    uint32_t from = svc->pb->spec->replicas;
    Event *e;

    if (!st || !as)
        return;
    in.policy = svc->pb->spec->autoscale;
    in.current = from;
    in.updating = capacity_updating(svc);
    in.now_ms = now;
    load_service(svc, ctl->model.nodes, now, &in.load);
    autoscale_decide(&in, st, &d);
    /* what it sees, for inspect (kept with the next commit of the service) */
    as->evaluated_ms = now;
    as->recommended = d.recommended;
    if (d.desired == from)
        return;
    as->time_ms = now;
    as->from = from;
    as->to = d.desired;
    as->cpu_percent = in.load.cpu_percent;
    as->connections_per_second = in.load.connections_per_second;
    as->active_connections = in.load.active;
    as->running = in.load.running;
    pb_set_str(&as->reason, d.reason);
    if (capacity_set_replicas(ctl, svc, d.desired)) {
        log_error("out of memory autoscaling %s", svc->pb->spec->name);
        return;
    }
    e = ctl_event_service(ctl, "autoscale", svc);
    if (e && (event_attr(e, "from", "%u", from) || event_attr(e, "to", "%u", d.desired) ||
              event_attr(e, "cpu_percent", "%.1f", in.load.cpu_percent) ||
              event_attr(e, "connections_per_second", "%.1f",
                         in.load.connections_per_second) ||
              event_attr(e, "active_connections", "%llu",
                         (unsigned long long)in.load.active) ||
              event_attr(e, "running", "%u", in.load.running)))
        e = (pb_free(e), NULL);
    ctl_emit(ctl, e, "scaled from %u to %u: %s", from, d.desired, d.reason);
}

void capacity_autoscale(ctl_t *ctl)
{
    int64_t now = model_wall_ms();
    service_t *svc, *tmp;

    HASH_ITER(hh, ctl->model.services, svc, tmp) {
        if (svc->removed || !svc->pb->spec->autoscale) {
            free(svc->autoscale); /* a policy removed: forget its state */
            svc->autoscale = NULL;
            continue;
        }
        capacity_decide(ctl, svc, now);
    }
}
