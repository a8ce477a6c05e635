/* api: the requests of clients (the skiff CLI), one handler each, found in
 * one table. A request that is wrong in any way gets one Error naming what
 * is wrong, and changes nothing; one that is right changes the model, and
 * its reply leaves once the change is committed (ctl_send).
 */
#include "ctl.h"
#include "wire.h"
#include "errors.h"
#include "log.h"
#include "pbutil.h"
#include "spec.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

typedef int (*api_fn)(ctl_t *ctl, peer_t *p, uint64_t id, const Envelope *env);

/* What a service's row holds besides its two specs. */
#define API_ROW_HEADROOM 8192

/* ---------------------------------------------------------------- helpers */

static void api_reply_service(ctl_t *ctl, peer_t *p, uint64_t id, service_t *svc)
{
    Envelope env = PB_ENVELOPE_INIT;
    ServiceReply reply = PB_SERVICE_REPLY_INIT;

    reply.service = orch_service_view(ctl, svc);
    if (!reply.service) {
        ctl_send_error(ctl, p, id, ERR_INTERNAL, "out of memory");
        return;
    }
    env.id = id;
    env.msg_case = MSG_SERVICE_REPLY;
    env.service_reply = &reply;
    ctl_send(ctl, p, &env);
    orch_service_view_free(reply.service);
}

/* Finds a live service, or replies the error and returns NULL. */
static service_t *api_service(ctl_t *ctl, peer_t *p, uint64_t id, const char *ref)
{
    int ambiguous;
    service_t *svc = model_service_find(&ctl->model, ref, &ambiguous);

    if (!svc)
        ctl_send_error(ctl, p, id, ERR_NOT_FOUND,
                       ambiguous ? "service %.100s is ambiguous: give more of its id"
                                 : "no such service: %.100s", ref);
    return svc;
}

static node_t *api_node(ctl_t *ctl, peer_t *p, uint64_t id, const char *ref)
{
    int ambiguous;
    node_t *node = model_node_find(&ctl->model, ref, &ambiguous);

    if (!node)
        ctl_send_error(ctl, p, id, ERR_NOT_FOUND,
                       ambiguous ? "node %.100s is ambiguous: give more of its id"
                                 : "no such node: %.100s", ref);
    return node;
}

/* Checks a spec from a client; replies the error and returns nonzero when
 * it is not acceptable. Published and exposed ports are one namespace on
 * every node (the balancers listen there), so they must be free. */
static int api_check_spec(ctl_t *ctl, peer_t *p, uint64_t id, ServiceSpec *spec,
                          const service_t *self)
{
    char err[512];
    service_t *o, *tmp;

    if (!spec) {
        ctl_send_error(ctl, p, id, ERR_INVALID, "spec: missing");
        return 1;
    }
    if (spec_complete(spec)) {
        ctl_send_error(ctl, p, id, ERR_INTERNAL, "out of memory");
        return 1;
    }
    if (spec_validate(spec, &ctl->cfg.spec_limits, err, sizeof(err))) {
        ctl_send_error(ctl, p, id, ERR_INVALID, "%s", err);
        return 1;
    }
    {
        ErrorCode code;
        if (secrets_resolve(ctl, spec, &code, err, sizeof(err))) {
            ctl_send_error(ctl, p, id, code, "%s", err);
            return 1;
        }
    }
    /* A service's row holds its spec and the previous one. */
    if (protobuf_c_message_get_packed_size(&spec->base) >
        (ctl->store->ops->max_value - API_ROW_HEADROOM) / 2) {
        ctl_send_error(ctl, p, id, ERR_INVALID, "spec: %zu bytes, more than the %s store takes "
                       "(%zu)", protobuf_c_message_get_packed_size(&spec->base),
                       ctl->store->ops->kind, (ctl->store->ops->max_value - API_ROW_HEADROOM) / 2);
        return 1;
    }
    HASH_ITER(hh_name, ctl->model.services_by_name, o, tmp) {
        const ServiceSpec *os = o->pb->spec;
        if (o == self)
            continue;
        for (size_t i = 0; i < spec->n_ports + spec->n_expose; i++) {
            uint32_t port = i < spec->n_ports ? spec->ports[i]->published
                                              : spec->expose[i - spec->n_ports];
            for (size_t k = 0; k < os->n_ports + os->n_expose; k++) {
                uint32_t used = k < os->n_ports ? os->ports[k]->published
                                                : os->expose[k - os->n_ports];
                if (port == used) {
                    ctl_send_error(ctl, p, id, ERR_INVALID,
                                   "%s[%zu]: port %u is already used by service %s",
                                   i < spec->n_ports ? "ports" : "expose",
                                   i < spec->n_ports ? i : i - spec->n_ports, port, os->name);
                    return 1;
                }
            }
        }
    }
    return 0;
}

/* --------------------------------------------------------------- services */

static int api_service_create(ctl_t *ctl, peer_t *p, uint64_t id, const Envelope *env)
{
    ServiceSpec *spec = env->service_create->spec;
    char sid[MODEL_ID_LEN + 1];
    Service *pb = NULL;
    service_t *svc;

    if (api_check_spec(ctl, p, id, spec, NULL))
        return 0;
    if (model_service_by_name(&ctl->model, spec->name)) {
        ctl_send_error(ctl, p, id, ERR_EXISTS, "service %s already exists", spec->name);
        return 0;
    }
    model_new_id(sid);
    pb = PB_NEW(Service);
    if (!pb || pb_set_str(&pb->id, sid) || !(pb->spec = pb_dup(spec)) ||
        !(pb->update_status = PB_NEW(UpdateStatus)))
        goto out_nomem;
    pb->version = 1;
    pb->created_ms = pb->updated_ms = model_wall_ms();
    if (!(svc = model_service_add(&ctl->model, pb)))
        goto out_nomem;
    if (model_service_keep_spec(&ctl->model, svc)) {
        model_service_delete(&ctl->model, svc);
        goto out_nomem_sent;
    }
    model_touch_service(&ctl->model, svc);
    orch_mark(svc);
    orch_stack_changed(ctl, spec->stack);
    {
        Event *e = ctl_event_service(ctl, "create", svc);
        if (e && (event_attr(e, "image", "%s", spec->image) ||
                  event_attr(e, "replicas", "%u", spec->replicas)))
            e = (pb_free(e), NULL);
        ctl_emit(ctl, e, "created (%u replicas of %s)", spec->replicas, spec->image);
    }
    api_reply_service(ctl, p, id, svc);
    return 0;

out_nomem:
    pb_free(pb);
out_nomem_sent:
    ctl_send_error(ctl, p, id, ERR_INTERNAL, "out of memory");
    return 0;
}

static int api_service_update(ctl_t *ctl, peer_t *p, uint64_t id, const Envelope *env)
{
    const ServiceUpdate *req = env->service_update;
    service_t *svc = api_service(ctl, p, id, req->service);
    Service *pb;
    ServiceSpec *spec;
    UpdateStatus *u;

    if (!svc || api_check_spec(ctl, p, id, req->spec, svc))
        return 0;
    pb = svc->pb;
    u = pb->update_status;
    if (req->version && req->version != pb->version) {
        ctl_send_error(ctl, p, id, ERR_CONFLICT,
                       "service %s changed since it was read (version %llu, now %llu); try again",
                       pb->spec->name, (unsigned long long)req->version,
                       (unsigned long long)pb->version);
        return 0;
    }
    if (strcmp(req->spec->name, pb->spec->name) != 0 || strcmp(req->spec->stack, pb->spec->stack)) {
        ctl_send_error(ctl, p, id, ERR_INVALID, "name: a service can't be renamed or moved to "
                       "another stack");
        return 0;
    }
    if (pb_equal(req->spec, pb->spec)) {
        /* Nothing new: resumes a paused update, changes nothing else. */
        if (u->state == UPDATE_PAUSED || u->state == UPDATE_ROLLBACK_PAUSED) {
            u->state = u->state == UPDATE_PAUSED ? UPDATE_UPDATING : UPDATE_ROLLBACK_STARTED;
            u->started_ms = model_wall_ms();
            u->next_batch_ms = 0;
            pb_set_str(&u->message, "update resumed");
            model_touch_service(&ctl->model, svc);
            orch_mark(svc);
            ctl_emit(ctl, ctl_event_service(ctl, "update_resumed", svc), "update resumed");
        }
        api_reply_service(ctl, p, id, svc);
        return 0;
    }
    if (!(spec = pb_dup(req->spec))) {
        ctl_send_error(ctl, p, id, ERR_INTERNAL, "out of memory");
        return 0;
    }
    if (spec_same_but_replicas(spec, pb->spec)) {
        pb_free(pb->spec); /* a scale: no rolling update */
        pb->spec = spec;
    } else {
        pb_free(pb->previous_spec);
        pb->previous_spec = pb->spec;
        pb->spec = spec;
        u->state = UPDATE_UPDATING;
        u->started_ms = model_wall_ms();
        u->completed_ms = 0;
        u->next_batch_ms = 0;
        pb_set_str(&u->message, "update in progress");
        {
            Event *e = ctl_event_service(ctl, "update_started", svc);
            if (e && (event_attr(e, "version", "%llu", (unsigned long long)pb->version + 1) ||
                      event_attr(e, "image", "%s", spec->image)))
                e = (pb_free(e), NULL);
            ctl_emit(ctl, e, "update to version %llu started",
                     (unsigned long long)pb->version + 1);
        }
    }
    pb->version++;
    pb->updated_ms = model_wall_ms();
    if (model_service_keep_spec(&ctl->model, svc))
        log_error("out of memory keeping a spec of %s", pb->spec->name);
    model_touch_service(&ctl->model, svc);
    orch_mark(svc);
    api_reply_service(ctl, p, id, svc);
    return 0;
}

static int api_service_scale(ctl_t *ctl, peer_t *p, uint64_t id, const Envelope *env)
{
    const ServiceScale *req = env->service_scale;
    service_t *svc = api_service(ctl, p, id, req->service);
    const Autoscale *as;

    if (!svc)
        return 0;
    as = svc->pb->spec->autoscale;
    if (req->replicas > ctl->cfg.spec_limits.max_replicas) {
        ctl_send_error(ctl, p, id, ERR_INVALID, "replicas: %u is more than the limit of %u",
                       req->replicas, ctl->cfg.spec_limits.max_replicas);
        return 0;
    }
    if (as && (req->replicas < as->min || req->replicas > as->max)) {
        ctl_send_error(ctl, p, id, ERR_INVALID,
                       "replicas: %u is outside the autoscale range %u-%u of %s (change the "
                       "range with service update --autoscale-min/--autoscale-max)",
                       req->replicas, as->min, as->max, svc->pb->spec->name);
        return 0;
    }
    if (req->replicas != svc->pb->spec->replicas) {
        Event *e = ctl_event_service(ctl, "scale", svc);
        if (e && (event_attr(e, "from", "%u", svc->pb->spec->replicas) ||
                  event_attr(e, "to", "%u", req->replicas)))
            e = (pb_free(e), NULL);
        ctl_emit(ctl, e, "scaled from %u to %u", svc->pb->spec->replicas, req->replicas);
        if (capacity_set_replicas(ctl, svc, req->replicas))
            log_error("out of memory keeping a spec of %s", svc->pb->spec->name);
    }
    api_reply_service(ctl, p, id, svc);
    return 0;
}

static int api_service_remove(ctl_t *ctl, peer_t *p, uint64_t id, const Envelope *env)
{
    service_t *svc = api_service(ctl, p, id, env->service_remove->service);

    if (!svc)
        return 0;
    ctl_emit(ctl, ctl_event_service(ctl, "remove", svc), "removed");
    model_service_mark_removed(&ctl->model, svc);
    orch_mark(svc);
    ctl->endpoints_check = 1;
    ctl_send_ok(ctl, p, id);
    return 0;
}

static int api_service_rollback(ctl_t *ctl, peer_t *p, uint64_t id, const Envelope *env)
{
    service_t *svc = api_service(ctl, p, id, env->service_rollback->service);
    int rc;

    if (!svc)
        return 0;
    rc = orch_start_rollback(ctl, svc, "rollback started: requested");
    if (rc == SKIFF_ENOTFOUND) {
        ctl_send_error(ctl, p, id, ERR_INVALID, "service %s has no previous spec to roll back to",
                       svc->pb->spec->name);
        return 0;
    }
    if (rc) {
        ctl_send_error(ctl, p, id, ERR_INTERNAL, "out of memory");
        return 0;
    }
    api_reply_service(ctl, p, id, svc);
    return 0;
}

static int api_service_get(ctl_t *ctl, peer_t *p, uint64_t id, const Envelope *env)
{
    service_t *svc = api_service(ctl, p, id, env->service_get->service);

    if (svc)
        api_reply_service(ctl, p, id, svc);
    return 0;
}

static int api_by_service_name(const void *a, const void *b)
{
    const Service *x = *(Service *const *)a, *y = *(Service *const *)b;

    return strcmp(x->spec->name, y->spec->name);
}

static int api_service_list(ctl_t *ctl, peer_t *p, uint64_t id, const Envelope *env)
{
    const char *stack = env->service_list->stack;
    Envelope out = PB_ENVELOPE_INIT;
    ServiceListReply reply = PB_SERVICE_LIST_REPLY_INIT;
    service_t *svc, *tmp;
    size_t n = 0;

    reply.services = calloc(HASH_CNT(hh_name, ctl->model.services_by_name) + 1,
                            sizeof(*reply.services));
    if (!reply.services) {
        ctl_send_error(ctl, p, id, ERR_INTERNAL, "out of memory");
        return 0;
    }
    HASH_ITER(hh_name, ctl->model.services_by_name, svc, tmp) {
        if (*stack && strcmp(stack, svc->pb->spec->stack) != 0)
            continue;
        if ((reply.services[n] = orch_service_view(ctl, svc)))
            n++;
    }
    qsort(reply.services, n, sizeof(*reply.services), api_by_service_name);
    reply.n_services = n;
    out.id = id;
    out.msg_case = MSG_SERVICE_LIST_REPLY;
    out.service_list_reply = &reply;
    ctl_send(ctl, p, &out);
    for (size_t i = 0; i < n; i++)
        orch_service_view_free(reply.services[i]);
    free(reply.services);
    return 0;
}

static int api_by_task(const void *a, const void *b)
{
    const Task *x = *(Task *const *)a, *y = *(Task *const *)b;
    int c = strcmp(x->service_name, y->service_name);

    if (c)
        return c;
    if (x->slot != y->slot)
        return x->slot < y->slot ? -1 : 1;
    return x->created_ms > y->created_ms ? -1 : x->created_ms < y->created_ms; /* newest first */
}

/* Room in a reply's frame for what is not its tasks (envelope, counts). */
#define API_PAGE_HEADROOM 1024

/* The end of the page of tasks[first..n) that fits a frame of the default
 * size (a client's limit, whatever ours is), at least one task. */
static size_t api_page_end(const ctl_t *ctl, Task *const *tasks, size_t first, size_t n)
{
    size_t limit = ctl->cfg.max_frame < WIRE_MAX_FRAME_DEFAULT ? ctl->cfg.max_frame
                                                              : WIRE_MAX_FRAME_DEFAULT;
    size_t budget = limit / 2 > API_PAGE_HEADROOM ? limit - API_PAGE_HEADROOM : limit / 2;
    size_t used = 0, i;

    for (i = first; i < n; i++) {
        /* a tag and a length of up to 5 bytes before each */
        size_t size = protobuf_c_message_get_packed_size(&tasks[i]->base) + 6;
        if (i > first && used + size > budget)
            break;
        used += size;
    }
    return i;
}

static int api_task_list(ctl_t *ctl, peer_t *p, uint64_t id, const Envelope *env)
{
    const TaskList *req = env->task_list;
    Envelope out = PB_ENVELOPE_INIT;
    TaskListReply reply = PB_TASK_LIST_REPLY_INIT;
    service_t *only = NULL;
    node_t *node = NULL;
    task_t *t, *tmp;
    Task **all;
    size_t n = 0, first, end;

    if (*req->service && !(only = api_service(ctl, p, id, req->service)))
        return 0;
    if (*req->node && !(node = api_node(ctl, p, id, req->node)))
        return 0;
    reply.tasks = calloc(HASH_COUNT(ctl->model.tasks) + 1, sizeof(*reply.tasks));
    if (!reply.tasks) {
        ctl_send_error(ctl, p, id, ERR_INTERNAL, "out of memory");
        return 0;
    }
    HASH_ITER(hh, ctl->model.tasks, t, tmp) {
        if (t->svc->removed || (only && t->svc != only) || (node && t->node != node) ||
            (*req->stack && strcmp(req->stack, t->svc->pb->spec->stack) != 0) ||
            (!req->all && t->pb->desired_state != DESIRED_RUNNING))
            continue;
        reply.tasks[n++] = t->pb; /* borrowed: packed before this returns */
    }
    qsort(reply.tasks, n, sizeof(*reply.tasks), api_by_task);
    all = reply.tasks;
    first = req->offset < n ? req->offset : n;
    end = api_page_end(ctl, all, first, n);
    reply.tasks = all + first;
    reply.n_tasks = end - first;
    reply.next_offset = end < n ? (uint32_t)end : 0;
    reply.total = (uint32_t)n;
    out.id = id;
    out.msg_case = MSG_TASK_LIST_REPLY;
    out.task_list_reply = &reply;
    ctl_send(ctl, p, &out);
    free(all);
    return 0;
}

/* ------------------------------------------------------------------ nodes */

/* A copy of the node with its task count, for replies. */
static Node *api_node_view(node_t *node)
{
    Node *view = pb_dup(node->pb);
    task_t *t;

    if (!view)
        return NULL;
    view->tasks = 0;
    if (!view->reserved)
        view->reserved = PB_NEW(Resources);
    DL_FOREACH2(node->tasks, t, node_next) {
        const ServiceSpec *spec;
        if (t->pb->desired_state != DESIRED_RUNNING)
            continue;
        view->tasks++;
        spec = model_service_spec(t->svc, t->pb->spec_version);
        if (view->reserved && spec && spec->reservations) {
            view->reserved->nano_cpus += spec->reservations->nano_cpus;
            view->reserved->memory_bytes += spec->reservations->memory_bytes;
        }
    }
    return view;
}

static void api_reply_node(ctl_t *ctl, peer_t *p, uint64_t id, node_t *node)
{
    Envelope env = PB_ENVELOPE_INIT;
    NodeReply reply = PB_NODE_REPLY_INIT;

    if (!(reply.node = api_node_view(node))) {
        ctl_send_error(ctl, p, id, ERR_INTERNAL, "out of memory");
        return;
    }
    env.id = id;
    env.msg_case = MSG_NODE_REPLY;
    env.node_reply = &reply;
    ctl_send(ctl, p, &env);
    pb_free(reply.node);
}

static int api_by_node_name(const void *a, const void *b)
{
    return strcmp((*(Node *const *)a)->name, (*(Node *const *)b)->name);
}

static int api_node_list(ctl_t *ctl, peer_t *p, uint64_t id, const Envelope *env)
{
    Envelope out = PB_ENVELOPE_INIT;
    NodeListReply reply = PB_NODE_LIST_REPLY_INIT;
    node_t *node, *tmp;
    size_t n = 0;

    reply.nodes = calloc(HASH_COUNT(ctl->model.nodes) + 1, sizeof(*reply.nodes));
    if (!reply.nodes) {
        ctl_send_error(ctl, p, id, ERR_INTERNAL, "out of memory");
        return 0;
    }
    HASH_ITER(hh, ctl->model.nodes, node, tmp)
        if ((reply.nodes[n] = api_node_view(node)))
            n++;
    qsort(reply.nodes, n, sizeof(*reply.nodes), api_by_node_name);
    reply.n_nodes = n;
    out.id = id;
    out.msg_case = MSG_NODE_LIST_REPLY;
    out.node_list_reply = &reply;
    ctl_send(ctl, p, &out);
    for (size_t i = 0; i < n; i++)
        pb_free(reply.nodes[i]);
    free(reply.nodes);
    return 0;
}

static int api_node_get(ctl_t *ctl, peer_t *p, uint64_t id, const Envelope *env)
{
    node_t *node = api_node(ctl, p, id, env->node_get->node);

    if (node)
        api_reply_node(ctl, p, id, node);
    return 0;
}

/* Spec labels a node may have; as many as an agent may give. */
#define API_NODE_MAX_LABELS 64

static int api_label_index(Label *const *labels, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(labels[i]->key, key) == 0)
            return (int)i;
    return -1;
}

/* Checks a node update's label changes against the node; replies the error
 * and returns nonzero when one is not acceptable: a bad label, a key both
 * added and removed, a key to remove that the node's spec labels lack (with
 * a word when it is its agent's), too many labels after the change. */
static int api_check_node_labels(ctl_t *ctl, peer_t *p, uint64_t id, const NodeUpdate *req,
                                 const Node *pb)
{
    size_t after = pb->n_spec_labels;
    char err[256];

    for (size_t i = 0; i < req->n_label_add; i++) {
        const Label *l = req->label_add[i];
        if (!l) {
            ctl_send_error(ctl, p, id, ERR_INVALID, "label_add: empty key");
            return -1;
        }
        if (spec_label_check("label_add", l->key, l->value, NULL, err, sizeof(err))) {
            ctl_send_error(ctl, p, id, ERR_INVALID, "%s", err);
            return -1;
        }
        for (size_t k = 0; k < req->n_label_rm; k++)
            if (strcmp(req->label_rm[k], l->key) == 0) {
                ctl_send_error(ctl, p, id, ERR_INVALID,
                               "label %.100s: both added and removed", l->key);
                return -1;
            }
        if (api_label_index(pb->spec_labels, pb->n_spec_labels, l->key) < 0 &&
            api_label_index((Label *const *)req->label_add, i, l->key) < 0)
            after++;
    }
    for (size_t i = 0; i < req->n_label_rm; i++) {
        const char *key = req->label_rm[i];
        if (spec_label_check("label_rm", key, "", NULL, err, sizeof(err))) {
            ctl_send_error(ctl, p, id, ERR_INVALID, "%s", err);
            return -1;
        }
        if (api_label_index(pb->spec_labels, pb->n_spec_labels, key) >= 0)
            continue;
        if (api_label_index(pb->labels, pb->n_labels, key) >= 0)
            ctl_send_error(ctl, p, id, ERR_NOT_FOUND,
                           "label %.100s comes from the agent's --label on %s", key, pb->name);
        else
            ctl_send_error(ctl, p, id, ERR_NOT_FOUND, "node %s has no label %.100s", pb->name,
                           key);
        return -1;
    }
    if (after > API_NODE_MAX_LABELS) {
        ctl_send_error(ctl, p, id, ERR_INVALID, "label_add: more than %d labels on node %s",
                       API_NODE_MAX_LABELS, pb->name);
        return -1;
    }
    return 0;
}

/* Appends to the change's description for its event; a full buffer cuts it. */
static void api_what(char *what, size_t len, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void api_what(char *what, size_t len, size_t *used, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (*used >= len)
        return;
    va_start(ap, fmt);
    n = vsnprintf(what + *used, len - *used, fmt, ap);
    va_end(ap);
    if (n > 0)
        *used += (size_t)n;
}

/* Applies checked label changes to pb's spec labels; returns how many
 * changed (a label added with the value it has is no change), or -ENOMEM
 * (the labels that were changed stay changed: the caller commits them). */
static int api_apply_node_labels(const NodeUpdate *req, Node *pb, char *what, size_t len)
{
    size_t used = 0;
    int changed = 0;

    what[0] = '\0';
    for (size_t i = 0; i < req->n_label_rm; i++) {
        int k = api_label_index(pb->spec_labels, pb->n_spec_labels, req->label_rm[i]);
        if (k < 0)
            continue; /* named twice */
        api_what(what, len, &used, "%slabel %s removed", changed ? ", " : "", req->label_rm[i]);
        pb_free(pb->spec_labels[k]);
        memmove(pb->spec_labels + k, pb->spec_labels + k + 1,
                (pb->n_spec_labels - (size_t)k - 1) * sizeof(*pb->spec_labels));
        pb->n_spec_labels--;
        changed++;
    }
    for (size_t i = 0; i < req->n_label_add; i++) {
        const Label *l = req->label_add[i];
        int k = api_label_index(pb->spec_labels, pb->n_spec_labels, l->key);
        Label *copy;
        if (k >= 0) {
            if (strcmp(pb->spec_labels[k]->value, l->value) == 0)
                continue;
            if (pb_set_str(&pb->spec_labels[k]->value, l->value))
                return -ENOMEM;
        } else if (!(copy = pb_dup(l)) ||
                   pb_push_msg(&pb->n_spec_labels, (void ***)&pb->spec_labels, copy)) {
            pb_free(copy);
            return -ENOMEM;
        }
        api_what(what, len, &used, "%slabel %s=%s", changed ? ", " : "", l->key, l->value);
        changed++;
    }
    return changed;
}

/* Availability (unless keep_availability) and the node's spec labels, in one
 * change. A change of either reschedules: tasks waiting for a label may fit
 * now, and running tasks whose constraints the node no longer satisfies
 * move (orch_task_fits). */
static int api_node_update(ctl_t *ctl, peer_t *p, uint64_t id, const Envelope *env)
{
    const NodeUpdate *req = env->node_update;
    node_t *node = api_node(ctl, p, id, req->node);
    char what[512];
    int changed;

    if (!node)
        return 0;
    if (!req->keep_availability && req->availability != AVAILABILITY_ACTIVE &&
        req->availability != AVAILABILITY_DRAIN) {
        ctl_send_error(ctl, p, id, ERR_INVALID, "availability: must be active or drain");
        return 0;
    }
    if (api_check_node_labels(ctl, p, id, req, node->pb))
        return 0;
    if (!req->keep_availability && node->pb->availability != req->availability) {
        node->pb->availability = req->availability;
        model_touch_node(&ctl->model, node);
        orch_mark_node(node);
        ctl->sched_needed = 1;
        ctl_emit(ctl, ctl_event_node(ctl, req->availability == AVAILABILITY_DRAIN ? "drain"
                                                                                   : "active",
                                     node),
                 "availability %s", req->availability == AVAILABILITY_DRAIN ? "drain" : "active");
    }
    changed = api_apply_node_labels(req, node->pb, what, sizeof(what));
    if (changed) {
        model_touch_node(&ctl->model, node);
        orch_mark_node(node);
        ctl->sched_needed = 1;
        if (changed > 0)
            ctl_emit(ctl, ctl_event_node(ctl, "update", node), "%s", what);
    }
    if (changed < 0) {
        ctl_send_error(ctl, p, id, ERR_INTERNAL, "out of memory");
        return 0;
    }
    api_reply_node(ctl, p, id, node);
    return 0;
}

static int api_node_remove(ctl_t *ctl, peer_t *p, uint64_t id, const Envelope *env)
{
    const NodeRemove *req = env->node_remove;
    node_t *node = api_node(ctl, p, id, req->node);
    task_t *t;

    if (!node)
        return 0;
    if (node->pb->state == NODE_READY && node->pb->availability != AVAILABILITY_DRAIN &&
        !req->force) {
        ctl_send_error(ctl, p, id, ERR_INVALID,
                       "node %s is ready: drain it or stop its agent first, or remove it "
                       "with --force", node->pb->name);
        return 0;
    }
    DL_FOREACH2(node->tasks, t, node_next) {
        if (t->pb->desired_state == DESIRED_RUNNING) {
            t->pb->desired_state = DESIRED_SHUTDOWN;
            orch_set_state(ctl, t, TASK_ORPHANED, "node removed");
        }
        orch_mark(t->svc);
    }
    if (node->peer) {
        node->peer->node = NULL;
        if (node->peer->conn)
            conn_close(node->peer->conn, 0);
        node->peer = NULL;
    }
    /* Its certificate is refused at the handshake from now on. */
    if (ca_revoke(ctl->ca, node->pb->id) > 0)
        ctl_ca_changed(ctl);
    ctl_emit(ctl, ctl_event_node(ctl, "remove", node), "removed; its certificate revoked");
    model_node_remove(&ctl->model, node);
    ctl->sched_needed = 1;
    ctl->endpoints_check = 1;
    ctl_send_ok(ctl, p, id);
    return 0;
}

static int api_logs(ctl_t *ctl, peer_t *p, uint64_t id, const Envelope *env)
{
    return logs_request(ctl, p, id, env->logs_request);
}

static int api_events(ctl_t *ctl, peer_t *p, uint64_t id, const Envelope *env)
{
    return monitor_events_request(ctl, p, id, env->events_request);
}

static int api_service_stats(ctl_t *ctl, peer_t *p, uint64_t id, const Envelope *env)
{
    return monitor_service_stats(ctl, p, id, env->service_stats);
}

static int api_controller_list(ctl_t *ctl, peer_t *p, uint64_t id, const Envelope *env)
{
    return leader_controller_list(ctl, p, id);
}

/* ------------------------------------------------------------------ table */

static const struct {
    int msg;
    api_fn fn;
} api_table[] = {
    { MSG_SERVICE_CREATE, api_service_create },
    { MSG_SERVICE_UPDATE, api_service_update },
    { MSG_SERVICE_SCALE, api_service_scale },
    { MSG_SERVICE_REMOVE, api_service_remove },
    { MSG_SERVICE_ROLLBACK, api_service_rollback },
    { MSG_SERVICE_GET, api_service_get },
    { MSG_SERVICE_LIST, api_service_list },
    { MSG_TASK_LIST, api_task_list },
    { MSG_NODE_LIST, api_node_list },
    { MSG_NODE_GET, api_node_get },
    { MSG_NODE_UPDATE, api_node_update },
    { MSG_NODE_REMOVE, api_node_remove },
    { MSG_LOGS_REQUEST, api_logs },
    { MSG_EVENTS_REQUEST, api_events },
    { MSG_SERVICE_STATS, api_service_stats },
    { MSG_CONTROLLER_LIST, api_controller_list },
    { MSG_CA_GET, certs_api },
    { MSG_CA_ROTATE, certs_api },
    { MSG_CLIENT_CERT, certs_api },
    { MSG_SECRET_CREATE, secrets_api },
    { MSG_SECRET_LIST, secrets_api },
    { MSG_SECRET_GET, secrets_api },
    { MSG_SECRET_REMOVE, secrets_api },
    { MSG_CONTROLLER_UNLOCK, secrets_api },
};

int api_handle(ctl_t *ctl, peer_t *p, Envelope *env)
{
    for (size_t i = 0; i < sizeof(api_table) / sizeof(api_table[0]); i++)
        if (api_table[i].msg == (int)env->msg_case)
            return api_table[i].fn(ctl, p, env->id, env);
    ctl_send_error(ctl, p, env->id, ERR_PROTOCOL, "unexpected %s from a client",
                   wire_msg_name(env->msg_case));
    return 0;
}
