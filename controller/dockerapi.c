/* dockerapi: the Docker Engine API's Swarm endpoints (--docker-api-listen,
 * on net/httpd), so that the docker CLI and its tools drive skiff with
 * DOCKER_HOST=tcp://ADDR:PORT. Like httpapi.c it is a translator, not a
 * second controller: every request that acts becomes the Envelope the skiff
 * CLI would send, handled by api.c through an in-process peer (peer.local),
 * so it is validated and committed by the same code, and its answer leaves
 * after that commit. dockerjson.c turns Docker's JSON into skiff's messages
 * and back; what skiff does not do is refused with a 400 and Docker's error
 * shape {"message": "..."} naming the field.
 *
 * Paths are served versioned (/v1.24/ to /v1.50/) and unversioned. There is
 * no TLS yet, so the listener takes loopback addresses only (main.c refuses
 * others) and needs no token: whoever can connect to the loopback of the
 * controller's machine can act on the cluster, as with an unprotected
 * dockerd socket.
 */
#include "ctl.h"
#include "dockerjson.h"
#include "errors.h"
#include "httpd.h"
#include "log.h"
#include "pbutil.h"
#include "spec.h"
#include "wire.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <utlist.h>

#define DOCKERAPI_VERSION "1.41"    /* what /version and /_ping advertise */
#define DOCKERAPI_MIN_MINOR 24
#define DOCKERAPI_MAX_MINOR 50      /* the docker CLI 28's own */
#define DOCKERAPI_MAX_BODY (1u << 20)

typedef struct dcall dcall_t;
/* What to do with api.c's reply; it answers c->req (or asks again). */
typedef void (*dcall_fn)(dcall_t *c, const Envelope *env);

/* A request handed to api.c. The peer comes first: peer_unref frees it. */
struct dcall {
    peer_t peer;
    httpd_req_t *req;       /* NULL once answered or gone */
    dcall_fn answer;
    int msg_case;
    json_t *filters;        /* list filters, or NULL */
    TaskList tasks_req;     /* tasks: the request, asked again for each page */
    TaskListReply tasks;    /* tasks: the pages so far */
    int details;            /* logs: prefix the task's details (docker's details=true) */
    int timestamps;         /* logs: prefix the time */
    httpd_stream_t *stream; /* logs: open from the first LogsData on */
    int stream_over;
    int logs_ended;         /* logs: logs.c sent LogsClose and forgot the stream */
    SecretKind kind;        /* secrets and configs: which */
};

/* ------------------------------------------------------------ answers */

static void dapi_error(httpd_req_t *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Docker's error shape: {"message": "..."}. */
static void dapi_error(httpd_req_t *r, int status, const char *fmt, ...)
{
    char msg[1024];
    json_t *j;
    char *s;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    j = json_pack("{s:s}", "message", msg);
    s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) {
        httpd_respond(r, 500, "application/json", "{\"message\":\"out of memory\"}", 27);
        return;
    }
    httpd_respond(r, status, "application/json", s, strlen(s));
    free(s);
}

static void dapi_json(httpd_req_t *r, int status, json_t *j)
{
    char *s;

    if (!j) {
        dapi_error(r, 500, "out of memory");
        return;
    }
    s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (!s) {
        dapi_error(r, 500, "out of memory");
        return;
    }
    httpd_respond(r, status, "application/json", s, strlen(s));
    free(s);
}

static int dapi_status_of(ErrorCode code)
{
    switch (code) {
    case ERR_INVALID: return 400;
    case ERR_NOT_FOUND: return 404;
    case ERR_EXISTS: return 409;
    case ERR_CONFLICT: return 409; /* "update out of sequence" */
    case ERR_LIMIT: return 429;
    case ERR_UNAVAILABLE: return 503;
    default: return 500;
    }
}

/* An Error from api.c in Docker's shape; 1 when env was one. */
static int dapi_failed(dcall_t *c, const Envelope *env)
{
    if (env->msg_case == MSG_ERROR) {
        if (env->error->code == ERR_CONFLICT)
            dapi_error(c->req, 409, "update out of sequence: %s", env->error->message);
        else
            dapi_error(c->req, dapi_status_of(env->error->code), "%s", env->error->message);
        return 1;
    }
    if (env->msg_case == MSG_REDIRECT) {
        dapi_error(c->req, 503, "this controller does not lead: the leader is %s",
                   *env->redirect->leader ? env->redirect->leader : "not known yet");
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------- local calls */

static void dcall_stream_closed(void *arg)
{
    dcall_t *c = arg;

    c->stream = NULL;
    c->stream_over = 1;
    if (!c->logs_ended) /* the client went first: the agents stop sending */
        logs_peer_gone(c->peer.ctl, &c->peer);
    peer_unref(&c->peer);
}

static size_t dcall_pending(const peer_t *p)
{
    const dcall_t *c = (const dcall_t *)p;

    if (c->stream)
        return httpd_stream_pending(c->stream);
    return c->req ? 0 : SIZE_MAX;
}

static void dcall_on_frame(peer_t *p, const uint8_t *frame, size_t len)
{
    dcall_t *c = (dcall_t *)p;
    Envelope *env;

    if ((!c->req && !c->stream) || len < 4)
        return;
    env = skiff__v1__envelope__unpack(NULL, len - 4, frame + 4);
    if (!env) {
        if (c->req)
            dapi_error(c->req, 500, "out of memory");
        c->req = NULL;
        return;
    }
    c->answer(c, env); /* answers, or asks again */
    wire_free(env);
}

/* The request is over: what the call owns besides its peer goes, and the
 * request's reference (the last one, but a log stream's). */
static void dcall_on_done(void *arg)
{
    dcall_t *c = arg;

    c->req = NULL;
    json_decref(c->filters);
    c->filters = NULL;
    for (size_t i = 0; i < c->tasks.n_tasks; i++)
        pb_free(c->tasks.tasks[i]);
    free(c->tasks.tasks);
    c->tasks.tasks = NULL;
    c->tasks.n_tasks = 0;
    if (c->msg_case == MSG_LOGS_REQUEST && !c->stream && !c->stream_over && !c->logs_ended)
        logs_peer_gone(c->peer.ctl, &c->peer); /* gone before the stream opened */
    peer_unref(&c->peer);
}

/* A new call for r whose reply goes to answer; NULL (answered 500) when out
 * of memory. filters: taken. */
static dcall_t *dcall_new(ctl_t *ctl, httpd_req_t *r, dcall_fn answer, json_t *filters)
{
    dcall_t *c = calloc(1, sizeof(*c));

    if (!c) {
        json_decref(filters);
        dapi_error(r, 500, "out of memory");
        return NULL;
    }
    c->peer.ctl = ctl;
    c->peer.role = ROLE_CLIENT;
    c->peer.refs = 1; /* the request's, dropped at dcall_on_done */
    c->peer.local = dcall_on_frame;
    c->peer.local_pending = dcall_pending;
    snprintf(c->peer.addr, sizeof(c->peer.addr), "%s", httpd_peer(r));
    c->req = r;
    c->answer = answer;
    c->filters = filters;
    if (httpd_on_done(r, dcall_on_done, c)) {
        json_decref(filters);
        free(c);
        dapi_error(r, 500, "out of memory");
        return NULL;
    }
    return c;
}

/* Hands env to api.c; the reply goes to c->answer. */
static void dcall_send(dcall_t *c, Envelope *env)
{
    c->msg_case = (int)env->msg_case;
    env->id = 1;
    c->peer.ctl->counters.rpc_code = 0;
    api_handle(c->peer.ctl, &c->peer, env);
}

/* ------------------------------------------------------------ helpers */

/* The body as JSON; answers 400 and returns NULL when it is not an object. */
static json_t *dapi_body(httpd_req_t *r)
{
    size_t len;
    const char *body = httpd_body(r, &len);
    json_error_t jerr;
    json_t *j = json_loadb(body, len, 0, &jerr);

    if (!j || !json_is_object(j)) {
        json_decref(j);
        dapi_error(r, 400, "body: not a JSON object%s%s", j ? "" : ": ", j ? "" : jerr.text);
        return NULL;
    }
    return j;
}

/* ?filters=, with only the keys in allowed; answers 400 and returns -1. */
static int dapi_filters(httpd_req_t *r, const char *const *allowed, json_t **out)
{
    char err[256];

    if (dockerjson_filters(httpd_query(r, "filters"), out, err, sizeof(err)) ||
        (*out && dockerjson_filters_allowed(*out, allowed, err, sizeof(err)))) {
        json_decref(*out);
        *out = NULL;
        dapi_error(r, 400, "%s", err);
        return -1;
    }
    return 0;
}

/* ?version=N of an update; answers 400 and returns -1 when it is missing or
 * not a number. */
static int dapi_version(httpd_req_t *r, uint64_t *out)
{
    const char *s = httpd_query(r, "version");
    char *end;

    if (!s || !*s) {
        dapi_error(r, 400, "version: missing (the Version.Index the update is based on)");
        return -1;
    }
    *out = strtoull(s, &end, 10);
    if (*end || *s == '-' || *out == 0) {
        dapi_error(r, 400, "version: not a version: %.64s", s);
        return -1;
    }
    return 0;
}

static int dapi_true(httpd_req_t *r, const char *name)
{
    const char *v = httpd_query(r, name);

    return v && strcmp(v, "0") && strcmp(v, "false") && strcmp(v, "");
}

/* --------------------------------------------------------- meta routes */

typedef void (*route_fn)(ctl_t *ctl, httpd_req_t *r, const char *arg);

static void route_ping(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    (void)ctl;
    (void)arg;
    httpd_add_header(r, "Api-Version", DOCKERAPI_VERSION);
    httpd_add_header(r, "Docker-Experimental", "false");
    httpd_add_header(r, "Swarm", "active/manager");
    httpd_add_header(r, "Cache-Control", "no-cache, no-store, must-revalidate");
    httpd_respond(r, 200, "text/plain; charset=utf-8", "OK", 2);
}

/* What /version and /info tell of this machine, read once at start (not on
 * the loop for every request). */
static struct {
    char kernel[128];
    char host[256];
    long ncpu;
} dapi_host;

static void dapi_host_read(void)
{
    FILE *f = fopen("/proc/sys/kernel/osrelease", "r");

    snprintf(dapi_host.kernel, sizeof(dapi_host.kernel), "unknown");
    if (f) {
        if (fgets(dapi_host.kernel, (int)sizeof(dapi_host.kernel), f))
            dapi_host.kernel[strcspn(dapi_host.kernel, "\n")] = '\0';
        fclose(f);
    }
    if (gethostname(dapi_host.host, sizeof(dapi_host.host) - 1))
        snprintf(dapi_host.host, sizeof(dapi_host.host), "skiff");
    dapi_host.ncpu = sysconf(_SC_NPROCESSORS_ONLN);
}

static void route_version(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    (void)ctl;
    (void)arg;
    dapi_json(r, 200, json_pack("{s:[{s:s, s:s}], s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
                                "Components", "Name", "skiff-controller", "Version",
                                SKIFF_VERSION, "Version", "skiff-" SKIFF_VERSION, "ApiVersion",
                                DOCKERAPI_VERSION, "MinAPIVersion", "1.24", "GitCommit", "skiff",
                                "GoVersion", "none (C)", "Os", "linux", "Arch", "amd64",
                                "KernelVersion", dapi_host.kernel));
}

static json_t *dapi_cluster(ctl_t *ctl)
{
    json_t *j = json_pack("{s:s, s:{s:i}, s:{s:s}}", "ID", ctl->model.cluster_id, "Version",
                          "Index", 1, "Spec", "Name", "default");
    char buf[40];

    dockerjson_time(0, buf, sizeof(buf));
    if (j && (json_object_set_new(j, "CreatedAt", json_string(buf)) ||
              json_object_set_new(j, "UpdatedAt", json_string(buf)))) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* The controller's node id in Docker's eyes: it is the one manager, and no
 * skiff node. */
static void dapi_self_id(ctl_t *ctl, char *out, size_t len)
{
    snprintf(out, len, "controller-%.14s", ctl->model.cluster_id);
}

static void route_info(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    char self[64];
    unsigned nodes = HASH_COUNT(ctl->model.nodes);

    (void)arg;
    dapi_self_id(ctl, self, sizeof(self));
    dapi_json(r, 200,
              json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:{s:s, s:s, "
                        "s:s, s:b, s:s, s:[{s:s, s:s}], s:i, s:i, s:o*}}",
                        "ID", ctl->model.cluster_id, "Name", dapi_host.host, "ServerVersion",
                        "skiff-" SKIFF_VERSION, "OperatingSystem", "skiff", "OSType", "linux",
                        "Architecture", "x86_64", "KernelVersion", dapi_host.kernel, "NCPU",
                        (int)dapi_host.ncpu,
                        "Containers", 0, "Images", 0, "MemTotal", 0, "Swarm", "NodeID", self,
                        "NodeAddr", ctl->cfg.advertise, "LocalNodeState", "active",
                        "ControlAvailable", 1, "Error", "", "RemoteManagers", "NodeID", self,
                        "Addr", ctl->cfg.advertise, "Nodes", (int)nodes, "Managers", 1,
                        "Cluster", dapi_cluster(ctl)));
}

static void route_swarm(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    json_t *j = dapi_cluster(ctl);

    (void)arg;
    /* the join token is skiff's, for skiff agents: not handed out here */
    if (j && json_object_set_new(j, "JoinTokens", json_pack("{s:s, s:s}", "Worker", "",
                                                            "Manager", ""))) {
        json_decref(j);
        j = NULL;
    }
    dapi_json(r, 200, j);
}

static void route_networks(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    (void)ctl;
    dapi_error(r, 404, "network %.100s not found: skiff has no overlay networks (services reach "
               "each other through the balancers)", arg);
}

static void route_networks_list(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    (void)ctl;
    (void)arg;
    dapi_json(r, 200, json_array());
}

/* POST /networks/create: `docker stack deploy` makes its stack's default
 * network, which skiff has already (a stack's services reach each other by
 * name); any other network is refused. Nothing is stored. */
static void route_network_create(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    json_t *j = dapi_body(r);
    const char *name, *ns;
    char want[160];

    (void)ctl;
    (void)arg;
    if (!j)
        return;
    name = json_string_value(json_object_get(j, "Name"));
    ns = json_string_value(json_object_get(json_object_get(j, "Labels"), DOCKERJSON_STACK_LABEL));
    snprintf(want, sizeof(want), "%s_default", ns ? ns : "");
    if (!name || !ns || !*ns || strcmp(name, want)) {
        json_decref(j);
        dapi_error(r, 400, "skiff has no networks: a stack's services reach each other by name "
                   "(only a stack's default network is taken, as a no-op)");
        return;
    }
    dapi_json(r, 201, json_pack("{s:s, s:s}", "Id", name, "Warning", "skiff: no network made; "
                                "the stack's services reach each other by name"));
    json_decref(j);
}

static void route_distribution(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    (void)ctl;
    (void)arg;
    dapi_error(r, 404, "skiff does not resolve image digests: each node pulls the image");
}

/* --------------------------------------------------------------- nodes */

static void nodes_answer(dcall_t *c, const Envelope *env)
{
    json_t *arr;

    if (dapi_failed(c, env))
        goto out;
    if (env->msg_case == MSG_NODE_REPLY) {
        dapi_json(c->req, 200, dockerjson_node(env->node_reply->node));
        goto out;
    }
    if (env->msg_case != MSG_NODE_LIST_REPLY) {
        dapi_error(c->req, 500, "unexpected %s", wire_msg_name(env->msg_case));
        goto out;
    }
    arr = json_array();
    for (size_t i = 0; arr && i < env->node_list_reply->n_nodes; i++) {
        const Node *n = env->node_list_reply->nodes[i];
        const char *state = n->state == NODE_DOWN ? "down" : "ready";
        if (!dockerjson_filter_match(c->filters, "id", n->id, 1) ||
            !dockerjson_filter_match(c->filters, "name", n->name, 1) ||
            !dockerjson_filter_match(c->filters, "role", "worker", 0) ||
            !dockerjson_filter_match(c->filters, "membership", "accepted", 0) ||
            !dockerjson_filter_match(c->filters, "node.state", state, 0))
            continue;
        if (json_array_append_new(arr, dockerjson_node(n))) {
            json_decref(arr);
            arr = NULL;
        }
    }
    dapi_json(c->req, 200, arr);
out:
    c->req = NULL;
}

static void route_nodes(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    static const char *const allowed[] = { "id", "name", "role", "membership", "node.state",
                                           NULL };
    Envelope env = PB_ENVELOPE_INIT;
    NodeList req = PB_NODE_LIST_INIT;
    json_t *f;
    dcall_t *c;

    (void)arg;
    if (dapi_filters(r, allowed, &f) || !(c = dcall_new(ctl, r, nodes_answer, f)))
        return;
    env.msg_case = MSG_NODE_LIST;
    env.node_list = &req;
    dcall_send(c, &env);
}

static void route_node(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    Envelope env = PB_ENVELOPE_INIT;
    NodeGet req = PB_NODE_GET_INIT;
    dcall_t *c = dcall_new(ctl, r, nodes_answer, NULL);

    if (!c)
        return;
    req.node = (char *)arg;
    env.msg_case = MSG_NODE_GET;
    env.node_get = &req;
    dcall_send(c, &env);
}

static void ok_answer(dcall_t *c, const Envelope *env)
{
    if (!dapi_failed(c, env))
        httpd_respond(c->req, 200, "application/json", "{}", 2);
    c->req = NULL;
}

/* POST /nodes/{id}/update?version=N with a NodeSpec: availability, and
 * Labels, the node's spec labels, which the docker CLI sends whole: the
 * difference with the current ones becomes label_add and label_rm. The role
 * can't change. */
static void route_node_update(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    Envelope env = PB_ENVELOPE_INIT;
    NodeUpdate req = PB_NODE_UPDATE_INIT;
    json_t *j, *labels, *v;
    const char *k, *avail, *role;
    char err[256];
    node_t *node;
    uint64_t version;
    int ambiguous, rc;
    dcall_t *c;

    if (dapi_version(r, &version) || !(j = dapi_body(r)))
        return;
    if (!(node = model_node_find(&ctl->model, arg, &ambiguous))) {
        json_decref(j);
        dapi_error(r, 404, ambiguous ? "node %.100s is ambiguous: give more of its id"
                                     : "node %.100s not found", arg);
        return;
    }
    if (version != dockerjson_node_version(node->pb)) {
        json_decref(j);
        dapi_error(r, 409, "update out of sequence: node %s changed since version %llu was read",
                   node->pb->name, (unsigned long long)version);
        return;
    }
    json_object_foreach(j, k, v) {
        if (strcmp(k, "Labels") && strcmp(k, "Role") && strcmp(k, "Availability") &&
            strcmp(k, "Name")) {
            dapi_error(r, 400, "Spec: %.64s: not supported by skiff", k);
            json_decref(j); /* after: k is j's */
            return;
        }
    }
    role = json_string_value(json_object_get(j, "Role"));
    if (role && *role && strcmp(role, "worker")) {
        json_decref(j);
        dapi_error(r, 400, "Spec.Role: skiff nodes are workers (the controller is the manager)");
        return;
    }
    labels = json_object_get(j, "Labels");
    if ((rc = dockerjson_node_labels(labels, node->pb, &req, err, sizeof(err)))) {
        json_decref(j);
        dockerjson_node_labels_free(&req);
        if (rc == -ENOMEM)
            dapi_error(r, 500, "out of memory");
        else
            dapi_error(r, 400, "%s", err);
        return;
    }
    avail = json_string_value(json_object_get(j, "Availability"));
    if (avail && strcmp(avail, "active") && strcmp(avail, "drain")) {
        dapi_error(r, 400, "Spec.Availability: skiff takes \"active\" or \"drain\", not "
                   "\"%.32s\"", avail);
        json_decref(j); /* after: avail is j's */
        dockerjson_node_labels_free(&req);
        return;
    }
    req.node = node->pb->id;
    req.keep_availability = !avail;
    req.availability = avail && strcmp(avail, "drain") == 0 ? AVAILABILITY_DRAIN
                                                            : AVAILABILITY_ACTIVE;
    json_decref(j);
    if ((c = dcall_new(ctl, r, ok_answer, NULL))) {
        env.msg_case = MSG_NODE_UPDATE;
        env.node_update = &req;
        dcall_send(c, &env);
    }
    dockerjson_node_labels_free(&req);
}

static void route_node_delete(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    Envelope env = PB_ENVELOPE_INIT;
    NodeRemove req = PB_NODE_REMOVE_INIT;
    dcall_t *c = dcall_new(ctl, r, ok_answer, NULL);

    if (!c)
        return;
    req.node = (char *)arg;
    req.force = dapi_true(r, "force");
    env.msg_case = MSG_NODE_REMOVE;
    env.node_remove = &req;
    dcall_send(c, &env);
}

/* ------------------------------------------------------------ services */

/* label=K or K=V, every one of them: the service's labels, and
 * com.docker.stack.namespace its stack (as dockerjson shows it). */
static int dapi_labels_match(const json_t *f, const ServiceSpec *s)
{
    json_t *labels = json_object_get(f, "label"), *x;
    size_t i;

    json_array_foreach(labels, i, x) {
        const char *want = json_string_value(x), *eq = strchr(want, '=');
        size_t klen = eq ? (size_t)(eq - want) : strlen(want);
        int found = *s->stack && strlen(DOCKERJSON_STACK_LABEL) == klen &&
                    strncmp(want, DOCKERJSON_STACK_LABEL, klen) == 0 &&
                    (!eq || strcmp(eq + 1, s->stack) == 0);
        for (size_t k = 0; k < s->n_labels && !found; k++)
            found = strlen(s->labels[k]->key) == klen &&
                    strncmp(s->labels[k]->key, want, klen) == 0 &&
                    (!eq || strcmp(s->labels[k]->value, eq + 1) == 0);
        if (!found)
            return 0;
    }
    return 1;
}

static int dapi_service_match(const json_t *f, const Service *s)
{
    const char *mode = json_object_get(f, "mode") ? "replicated" : NULL;

    if (!dockerjson_filter_match(f, "id", s->id, 1) ||
        !dockerjson_filter_match(f, "name", s->spec->name, 1) ||
        (mode && !dockerjson_filter_match(f, "mode", mode, 0)))
        return 0;
    return dapi_labels_match(f, s->spec);
}

static void services_answer(dcall_t *c, const Envelope *env)
{
    json_t *arr;

    if (dapi_failed(c, env))
        goto out;
    if (env->msg_case == MSG_SERVICE_REPLY) {
        dapi_json(c->req, 200, dockerjson_service(env->service_reply->service));
        goto out;
    }
    if (env->msg_case != MSG_SERVICE_LIST_REPLY) {
        dapi_error(c->req, 500, "unexpected %s", wire_msg_name(env->msg_case));
        goto out;
    }
    arr = json_array();
    for (size_t i = 0; arr && i < env->service_list_reply->n_services; i++) {
        const Service *s = env->service_list_reply->services[i];
        if (!dapi_service_match(c->filters, s))
            continue;
        if (json_array_append_new(arr, dockerjson_service(s))) {
            json_decref(arr);
            arr = NULL;
        }
    }
    dapi_json(c->req, 200, arr);
out:
    c->req = NULL;
}

static void route_services(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    static const char *const allowed[] = { "id", "name", "label", "mode", NULL };
    Envelope env = PB_ENVELOPE_INIT;
    ServiceList req = PB_SERVICE_LIST_INIT;
    json_t *f;
    dcall_t *c;

    (void)arg;
    if (dapi_filters(r, allowed, &f) || !(c = dcall_new(ctl, r, services_answer, f)))
        return;
    env.msg_case = MSG_SERVICE_LIST;
    env.service_list = &req;
    dcall_send(c, &env);
}

static void route_service(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    Envelope env = PB_ENVELOPE_INIT;
    ServiceGet req = PB_SERVICE_GET_INIT;
    dcall_t *c = dcall_new(ctl, r, services_answer, NULL);

    if (!c)
        return;
    req.service = (char *)arg;
    env.msg_case = MSG_SERVICE_GET;
    env.service_get = &req;
    dcall_send(c, &env);
}

static void create_answer(dcall_t *c, const Envelope *env)
{
    if (!dapi_failed(c, env)) {
        if (env->msg_case == MSG_SERVICE_REPLY)
            dapi_json(c->req, 201, json_pack("{s:s, s:[]}", "ID", env->service_reply->service->id,
                                             "Warnings"));
        else
            dapi_error(c->req, 500, "unexpected %s", wire_msg_name(env->msg_case));
    }
    c->req = NULL;
}

static void update_answer(dcall_t *c, const Envelope *env)
{
    if (!dapi_failed(c, env))
        dapi_json(c->req, 200, json_pack("{s:[]}", "Warnings"));
    c->req = NULL;
}

static void route_service_create(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    Envelope env = PB_ENVELOPE_INIT;
    ServiceCreate req = PB_SERVICE_CREATE_INIT;
    json_t *j = dapi_body(r);
    char err[512];
    dcall_t *c;

    (void)arg;
    if (!j)
        return;
    req.spec = dockerjson_spec_from(j, NULL, err, sizeof(err));
    json_decref(j);
    if (!req.spec) {
        dapi_error(r, strcmp(err, "out of memory") ? 400 : 500, "%s", err);
        return;
    }
    if ((c = dcall_new(ctl, r, create_answer, NULL))) {
        env.msg_case = MSG_SERVICE_CREATE;
        env.service_create = &req;
        dcall_send(c, &env);
    }
    pb_free(req.spec);
}

/* POST /services/{id}/update?version=N: the whole new spec, or with
 * rollback=previous the previous one back. */
static void route_service_update(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    Envelope env = PB_ENVELOPE_INIT;
    ServiceUpdate req = PB_SERVICE_UPDATE_INIT;
    const char *rollback = httpd_query(r, "rollback");
    service_t *svc;
    char err[512];
    int ambiguous;
    json_t *j;
    dcall_t *c;

    if (dapi_version(r, &req.version))
        return;
    if (!(svc = model_service_find(&ctl->model, arg, &ambiguous))) {
        dapi_error(r, 404, ambiguous ? "service %.100s is ambiguous: give more of its id"
                                     : "service %.100s not found", arg);
        return;
    }
    if (rollback && *rollback) {
        ServiceRollback rb = PB_SERVICE_ROLLBACK_INIT;
        if (strcmp(rollback, "previous")) {
            dapi_error(r, 400, "rollback: \"previous\" is the one value, not \"%.32s\"",
                       rollback);
            return;
        }
        if (req.version != svc->pb->version) {
            dapi_error(r, 409, "update out of sequence: service %s changed since version %llu "
                       "was read", svc->pb->spec->name, (unsigned long long)req.version);
            return;
        }
        if (!(c = dcall_new(ctl, r, update_answer, NULL)))
            return;
        rb.service = svc->pb->id;
        env.msg_case = MSG_SERVICE_ROLLBACK;
        env.service_rollback = &rb;
        dcall_send(c, &env);
        return;
    }
    if (!(j = dapi_body(r)))
        return;
    req.spec = dockerjson_spec_from(j, svc->pb->spec, err, sizeof(err));
    json_decref(j);
    if (!req.spec) {
        dapi_error(r, strcmp(err, "out of memory") ? 400 : 500, "%s", err);
        return;
    }
    req.service = svc->pb->id;
    if (req.spec->replicas != svc->pb->spec->replicas &&
        spec_same_but_replicas(req.spec, svc->pb->spec)) {
        /* `docker service scale`: skiff's scale (its event, the autoscale range) */
        ServiceScale sc = PB_SERVICE_SCALE_INIT;
        if (req.version != svc->pb->version) {
            dapi_error(r, 409, "update out of sequence: service %s changed since version %llu "
                       "was read", svc->pb->spec->name, (unsigned long long)req.version);
        } else if ((c = dcall_new(ctl, r, update_answer, NULL))) {
            sc.service = svc->pb->id;
            sc.replicas = req.spec->replicas;
            env.msg_case = MSG_SERVICE_SCALE;
            env.service_scale = &sc;
            dcall_send(c, &env);
        }
        pb_free(req.spec);
        return;
    }
    if ((c = dcall_new(ctl, r, update_answer, NULL))) {
        env.msg_case = MSG_SERVICE_UPDATE;
        env.service_update = &req;
        dcall_send(c, &env);
    }
    pb_free(req.spec);
}

static void route_service_delete(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    Envelope env = PB_ENVELOPE_INIT;
    ServiceRemove req = PB_SERVICE_REMOVE_INIT;
    dcall_t *c = dcall_new(ctl, r, ok_answer, NULL);

    if (!c)
        return;
    req.service = (char *)arg;
    env.msg_case = MSG_SERVICE_REMOVE;
    env.service_remove = &req;
    dcall_send(c, &env);
}

/* ---------------------------------------------------------------- logs */

/* One line as a frame of Docker's multiplexed stream: 8 bytes (the stream,
 * 1 stdout or 2 stderr; three zeros; the length, big-endian), then the
 * details and the line. */
static void logs_line(dcall_t *c, int err, const char *prefix, const char *line, size_t len)
{
    size_t plen = strlen(prefix), n = 8 + plen + len;
    uint8_t *buf = malloc(n);

    if (!buf)
        return; /* dropped, as over the bound */
    memset(buf, 0, 8);
    buf[0] = err ? 2 : 1;
    buf[4] = (uint8_t)((plen + len) >> 24);
    buf[5] = (uint8_t)((plen + len) >> 16);
    buf[6] = (uint8_t)((plen + len) >> 8);
    buf[7] = (uint8_t)(plen + len);
    memcpy(buf + 8, prefix, plen);
    memcpy(buf + 8 + plen, line, len);
    httpd_stream_write(c->stream, buf, n); /* over the bound: dropped (logs.c counts) */
    free(buf);
}

static void logs_answer(dcall_t *c, const Envelope *env)
{
    char prefix[512] = "", when[40];
    const LogsData *d;
    const char *tid;
    task_t *t;

    if (env->msg_case == MSG_LOGS_CLOSE)
        c->logs_ended = 1; /* logs.c frees its stream after this call */
    if (!c->stream && !c->stream_over) {
        if (env->msg_case != MSG_LOGS_DATA && env->msg_case != MSG_LOGS_CLOSE) {
            if (!dapi_failed(c, env))
                dapi_error(c->req, 500, "unexpected %s", wire_msg_name(env->msg_case));
            c->req = NULL;
            return;
        }
        c->peer.refs++; /* the stream's, dropped at dcall_stream_closed */
        c->stream = httpd_stream_open(c->req, 200, "application/vnd.docker.multiplexed-stream",
                                      c->peer.ctl->cfg.max_pending, dcall_stream_closed, c);
        if (!c->stream) {
            c->peer.refs--;
            c->req = NULL;
            return;
        }
    }
    if (!c->stream)
        return;
    if (env->msg_case == MSG_LOGS_CLOSE) {
        if (*env->logs_close->message) {
            snprintf(prefix, sizeof(prefix), "skiff: %s\n", env->logs_close->message);
            logs_line(c, 1, "", prefix, strlen(prefix));
        }
        httpd_stream_end(c->stream);
        return;
    }
    if (env->msg_case != MSG_LOGS_DATA)
        return;
    d = env->logs_data;
    /* the task's id is the last part of SERVICE.SLOT.TASKID */
    tid = strrchr(d->task_name, '.');
    t = tid ? model_task_by_id(&c->peer.ctl->model, tid + 1) : NULL;
    if (c->timestamps) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        dockerjson_time((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, when, sizeof(when));
    }
    if (c->details && t)
        snprintf(prefix, sizeof(prefix), "%s%scom.docker.swarm.node.id=%s,"
                 "com.docker.swarm.service.id=%s,com.docker.swarm.task.id=%s ",
                 c->timestamps ? when : "", c->timestamps ? " " : "", t->pb->node_id,
                 t->pb->service_id, t->pb->id);
    else if (c->timestamps)
        snprintf(prefix, sizeof(prefix), "%s ", when);
    for (size_t off = 0; off < d->data.len;) {
        const uint8_t *nl = memchr(d->data.data + off, '\n', d->data.len - off);
        size_t end = nl ? (size_t)(nl - d->data.data) + 1 : d->data.len;
        logs_line(c, d->stderr, prefix, (const char *)d->data.data + off, end - off);
        off = end;
    }
}

static void route_service_logs(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    Envelope env = PB_ENVELOPE_INIT;
    LogsRequest req = PB_LOGS_REQUEST_INIT;
    const char *tail = httpd_query(r, "tail");
    dcall_t *c;
    char *end;

    if (httpd_query(r, "since") && *httpd_query(r, "since")) {
        dapi_error(r, 400, "since: not supported by skiff (use tail)");
        return;
    }
    if (tail && *tail && strcmp(tail, "all")) {
        unsigned long v = strtoul(tail, &end, 10);
        if (*end || *tail == '-' || v > UINT32_MAX) {
            dapi_error(r, 400, "tail: not a whole number: %.64s", tail);
            return;
        }
        req.tail = (uint32_t)v;
    }
    if (!(c = dcall_new(ctl, r, logs_answer, NULL)))
        return;
    c->details = dapi_true(r, "details");
    c->timestamps = dapi_true(r, "timestamps");
    req.follow = dapi_true(r, "follow");
    req.service = (char *)arg;
    env.msg_case = MSG_LOGS_REQUEST;
    env.logs_request = &req;
    dcall_send(c, &env);
}

/* --------------------------------------------------------------- tasks */

/* _up-to-date (what the docker CLI's progress display asks): the task runs
 * the service's current spec, a scale aside. */
static int dapi_task_current(ctl_t *ctl, const Task *t)
{
    task_t *mt = model_task_by_id(&ctl->model, t->id);
    const ServiceSpec *spec;

    if (!mt || mt->svc->removed)
        return 0;
    spec = model_service_spec(mt->svc, t->spec_version);
    return t->spec_version == mt->svc->pb->version ||
           (spec && spec_same_but_replicas(spec, mt->svc->pb->spec));
}

/* label=K or K=V: a task's labels are its service's (on its containers),
 * and com.docker.stack.namespace its stack, as `docker stack ps` asks. */
static int dapi_task_labels(ctl_t *ctl, const json_t *f, const Task *t)
{
    task_t *mt;

    if (!json_array_size(json_object_get(f, "label")))
        return 1;
    if (!(mt = model_task_by_id(&ctl->model, t->id)))
        return 0;
    return dapi_labels_match(f, mt->svc->pb->spec);
}

static int dapi_task_match(ctl_t *ctl, const json_t *f, const Task *t)
{
    char name[96];

    snprintf(name, sizeof(name), "%s.%u", t->service_name, t->slot);
    if (!dockerjson_filter_match(f, "id", t->id, 1) ||
        !dockerjson_filter_match(f, "name", name, 1) ||
        (!dockerjson_filter_match(f, "service", t->service_id, 1) &&
         !dockerjson_filter_match(f, "service", t->service_name, 0)) ||
        (!dockerjson_filter_match(f, "node", t->node_id, 1) &&
         !dockerjson_filter_match(f, "node", t->node_name, 0)) ||
        !dockerjson_filter_match(f, "desired-state", dockerjson_desired_state(t->desired_state),
                                 0))
        return 0;
    if (json_object_get(f, "_up-to-date") && !dapi_task_current(ctl, t))
        return 0;
    return dapi_task_labels(ctl, f, t);
}

static void tasks_answer(dcall_t *c, const Envelope *env)
{
    ctl_t *ctl = c->peer.ctl;
    json_t *arr;

    if (dapi_failed(c, env))
        goto out;
    if (env->msg_case != MSG_TASK_LIST_REPLY) {
        dapi_error(c->req, 500, "unexpected %s", wire_msg_name(env->msg_case));
        goto out;
    }
    if (pb_tasks_append(&c->tasks, env->task_list_reply)) {
        dapi_error(c->req, 500, "out of memory");
        goto out;
    }
    if (env->task_list_reply->next_offset) { /* the next page */
        Envelope next = PB_ENVELOPE_INIT;
        c->tasks_req.offset = env->task_list_reply->next_offset;
        next.msg_case = MSG_TASK_LIST;
        next.task_list = &c->tasks_req;
        dcall_send(c, &next);
        return;
    }
    arr = json_array();
    for (size_t i = 0; arr && i < c->tasks.n_tasks; i++) {
        if (!dapi_task_match(ctl, c->filters, c->tasks.tasks[i]))
            continue;
        if (json_array_append_new(arr, dockerjson_task(c->tasks.tasks[i]))) {
            json_decref(arr);
            arr = NULL;
        }
    }
    dapi_json(c->req, 200, arr);
out:
    c->req = NULL;
}

static void route_tasks(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    static const char *const allowed[] = { "id", "name", "service", "node", "desired-state",
                                           "_up-to-date", "label", NULL };
    Envelope env = PB_ENVELOPE_INIT;
    json_t *f, *ds;
    dcall_t *c;
    size_t i;

    (void)arg;
    if (dapi_filters(r, allowed, &f))
        return;
    json_array_foreach(json_object_get(f, "desired-state"), i, ds) {
        const char *v = json_string_value(ds);
        if (strcmp(v, "running") && strcmp(v, "shutdown") && strcmp(v, "remove") &&
            strcmp(v, "accepted")) {
            dapi_error(r, 400, "filters: desired-state: \"%.32s\" is not one of running, "
                       "shutdown, accepted", v);
            json_decref(f); /* after: v is f's */
            return;
        }
    }
    if (!(c = dcall_new(ctl, r, tasks_answer, f)))
        return;
    c->tasks_req = (TaskList)PB_TASK_LIST_INIT;
    c->tasks_req.all = 1; /* the history too, as docker service ps shows it */
    env.msg_case = MSG_TASK_LIST;
    env.task_list = &c->tasks_req;
    dcall_send(c, &env);
}

/* A task by its id: a read of the model, as no request of the wire asks
 * for one task (as httpapi.c's). */
static void route_task(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    task_t *t = model_task_by_id(&ctl->model, arg);

    if (!t || t->svc->removed) {
        dapi_error(r, 404, "task %.100s not found", arg);
        return;
    }
    dapi_json(r, 200, dockerjson_task(t->pb));
}

/* -------------------------------------------------------------- events */

#define DAPI_EVENTS_BUDGET (64u << 10)  /* unsent output a reader may have */
#define DAPI_EVENTS_MAX_PENDING (DAPI_EVENTS_BUDGET + (256u << 10))

/* A /events reader: skiff's events ring (the one of `skiff events`) as
 * Docker's stream of JSON messages, one a line. A client that does not read
 * lags behind the ring with at most DAPI_EVENTS_BUDGET unsent, and loses
 * what leaves the ring meanwhile. */
typedef struct devents {
    httpd_stream_t *stream;  /* NULL once over */
    events_reader_t *reader; /* NULL once the ring ended it */
    json_t *actions;         /* filters' "event" values, or NULL */
    int busy, gone;
} devents_t;

static void devents_free(devents_t *d)
{
    if (d->reader)
        events_reader_close(d->reader);
    json_decref(d->actions);
    free(d);
}

static void devents_on_close(void *arg)
{
    devents_t *d = arg;

    d->stream = NULL;
    if (d->busy)
        d->gone = 1;
    else
        devents_free(d);
}

/* SKIFF_ECLOSED once the stream is over (then d is freed). */
static int devents_write(devents_t *d, const char *text, size_t len)
{
    int rc;

    if (!d->stream)
        return SKIFF_ECLOSED;
    d->busy = 1;
    rc = httpd_stream_write(d->stream, text, len);
    d->busy = 0;
    if (d->gone) {
        d->reader = NULL; /* the ring closes it on the error returned */
        devents_free(d);
        return SKIFF_ECLOSED;
    }
    return rc;
}

static int devents_send(void *arg, const Event *e)
{
    devents_t *d = arg;
    json_t *attrs, *j;
    char *text;
    int rc;

    if (!d->stream)
        return SKIFF_ECLOSED;
    if (httpd_stream_pending(d->stream) > DAPI_EVENTS_BUDGET)
        return SKIFF_ELIMIT;
    if (d->actions && json_array_size(d->actions)) {
        json_t *wrap = json_pack("{s:O}", "event", d->actions);
        int match = wrap && dockerjson_filter_match(wrap, "event", e->action, 0);
        json_decref(wrap);
        if (!match)
            return 0;
    }
    attrs = json_pack("{s:s}", "name", e->name);
    for (size_t i = 0; attrs && i < e->n_attributes; i++)
        if (json_object_set_new(attrs, e->attributes[i]->key,
                                json_string(e->attributes[i]->value))) {
            json_decref(attrs);
            attrs = NULL;
        }
    if (attrs && *e->service)
        json_object_set_new(attrs, "service", json_string(e->service));
    if (attrs && *e->node)
        json_object_set_new(attrs, "node", json_string(e->node));
    j = attrs ? json_pack("{s:s, s:s, s:{s:s, s:o}, s:s, s:I, s:I}", "Type", e->type, "Action",
                          e->action, "Actor", "ID", e->id, "Attributes", attrs, "scope", "swarm",
                          "time", (json_int_t)(e->time_ms / 1000), "timeNano",
                          (json_int_t)e->time_ms * 1000000)
              : NULL;
    text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (!text)
        return SKIFF_ELIMIT; /* out of memory: again at the next pump */
    {
        size_t n = strlen(text);
        char *line = realloc(text, n + 2);
        if (!line) {
            free(text);
            return SKIFF_ELIMIT;
        }
        line[n] = '\n';
        line[n + 1] = '\0';
        rc = devents_write(d, line, n + 1);
        free(line);
    }
    return rc == SKIFF_ECLOSED ? rc : 0;
}

static int devents_dropped(void *arg, uint64_t count)
{
    (void)arg;
    (void)count; /* Docker's stream has no word for it: the reader just lags */
    return 0;
}

static void devents_end(void *arg)
{
    devents_t *d = arg;

    d->reader = NULL; /* the ring frees it */
    if (d->stream)
        httpd_stream_end(d->stream); /* on_close frees d */
}

static const events_reader_ops_t devents_ops = {
    .send = devents_send,
    .dropped = devents_dropped,
    .end = devents_end,
};

/* ?since= and ?until=: Unix seconds, with a fraction or not (the docker CLI
 * turns "10m" and dates into those). */
static int dapi_event_time(httpd_req_t *r, const char *name, int64_t *ms)
{
    const char *s = httpd_query(r, name);
    char *end;
    double v;

    *ms = 0;
    if (!s || !*s)
        return 0;
    v = strtod(s, &end);
    if (*end || v < 0 || v > 1e11) {
        dapi_error(r, 400, "%s: not Unix seconds: %.64s", name, s);
        return -1;
    }
    *ms = (int64_t)(v * 1000);
    return 0;
}

/* Copies a filter's values into a list of strings for EventsRequest. */
static int dapi_event_list(const json_t *f, const char *key, char ***out, size_t *n)
{
    json_t *vals = json_object_get(f, key), *x;
    size_t i;

    *out = NULL;
    *n = 0;
    if (!json_array_size(vals))
        return 0;
    if (!(*out = calloc(json_array_size(vals), sizeof(**out))))
        return -ENOMEM;
    json_array_foreach(vals, i, x)
        (*out)[(*n)++] = (char *)json_string_value(x);
    return 0;
}

static void route_events(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    static const char *const allowed[] = { "type", "event", "service", "node", NULL };
    EventsRequest req = PB_EVENTS_REQUEST_INIT;
    json_t *f, *x;
    devents_t *d;
    size_t i;

    (void)arg;
    if (dapi_filters(r, allowed, &f))
        return;
    json_array_foreach(json_object_get(f, "type"), i, x) {
        const char *t = json_string_value(x);
        if (strcmp(t, "service") && strcmp(t, "node") && strcmp(t, "task")) {
            dapi_error(r, 400, "filters: type: skiff's events are of service, node and task, "
                       "not \"%.32s\"", t);
            json_decref(f); /* after: t is f's */
            return;
        }
    }
    if (dapi_event_time(r, "since", &req.since_ms) || dapi_event_time(r, "until", &req.until_ms)) {
        json_decref(f);
        return;
    }
    if (dapi_event_list(f, "type", &req.types, &req.n_types) ||
        dapi_event_list(f, "service", &req.services, &req.n_services) ||
        dapi_event_list(f, "node", &req.nodes, &req.n_nodes) ||
        !(d = calloc(1, sizeof(*d)))) {
        free(req.types);
        free(req.services);
        free(req.nodes);
        json_decref(f);
        dapi_error(r, 500, "out of memory");
        return;
    }
    d->actions = json_incref(json_object_get(f, "event"));
    d->stream = httpd_stream_open(r, 200, "application/json", DAPI_EVENTS_MAX_PENDING,
                                  devents_on_close, d);
    if (!d->stream) {
        devents_free(d);
    } else if (!(d->reader = events_follow(ctl->events, &req, &devents_ops, d))) {
        httpd_stream_end(d->stream); /* out of memory: an empty stream */
    } else if (!ctl->committing) {
        events_pump(ctl->events, model_wall_ms());
    }
    free(req.types);
    free(req.services);
    free(req.nodes);
    json_decref(f);
}

/* ------------------------------------------------- secrets and configs */

static int dapi_secret_match(const json_t *f, const Secret *s)
{
    json_t *names = json_object_get(f, "names");
    ServiceSpec fake = PB_SERVICE_SPEC_INIT; /* the label filter reads a spec's labels */

    if (!dockerjson_filter_match(f, "id", s->id, 1) ||
        !dockerjson_filter_match(f, "name", s->name, 1) ||
        (names && !dockerjson_filter_match(f, "names", s->name, 0)))
        return 0;
    fake.stack = s->stack;
    fake.n_labels = s->n_labels;
    fake.labels = s->labels;
    return dapi_labels_match(f, &fake);
}

static void secrets_answer(dcall_t *c, const Envelope *env)
{
    json_t *arr;

    if (dapi_failed(c, env))
        goto out;
    if (env->msg_case == MSG_SECRET_REPLY) {
        dapi_json(c->req, 200, dockerjson_secret(env->secret_reply->secret));
        goto out;
    }
    if (env->msg_case != MSG_SECRET_LIST_REPLY) {
        dapi_error(c->req, 500, "unexpected %s", wire_msg_name(env->msg_case));
        goto out;
    }
    arr = json_array();
    for (size_t i = 0; arr && i < env->secret_list_reply->n_secrets; i++) {
        const Secret *s = env->secret_list_reply->secrets[i];
        if (c->filters && !dapi_secret_match(c->filters, s))
            continue;
        if (json_array_append_new(arr, dockerjson_secret(s))) {
            json_decref(arr);
            arr = NULL;
        }
    }
    dapi_json(c->req, 200, arr);
out:
    c->req = NULL;
}

static void dapi_secrets_list(ctl_t *ctl, httpd_req_t *r, SecretKind kind)
{
    static const char *const allowed[] = { "id", "name", "names", "label", NULL };
    Envelope env = PB_ENVELOPE_INIT;
    SecretList req = PB_SECRET_LIST_INIT;
    json_t *f;
    dcall_t *c;

    if (dapi_filters(r, allowed, &f) || !(c = dcall_new(ctl, r, secrets_answer, f)))
        return;
    req.kind = kind;
    env.msg_case = MSG_SECRET_LIST;
    env.secret_list = &req;
    dcall_send(c, &env);
}

static void dapi_secret_get(ctl_t *ctl, httpd_req_t *r, SecretKind kind, const char *ref)
{
    Envelope env = PB_ENVELOPE_INIT;
    SecretGet req = PB_SECRET_GET_INIT;
    dcall_t *c = dcall_new(ctl, r, secrets_answer, NULL);

    if (!c)
        return;
    req.kind = kind;
    req.ref = (char *)ref;
    env.msg_case = MSG_SECRET_GET;
    env.secret_get = &req;
    dcall_send(c, &env);
}

static void secret_created(dcall_t *c, const Envelope *env)
{
    if (!dapi_failed(c, env)) {
        if (env->msg_case == MSG_SECRET_REPLY)
            dapi_json(c->req, 201, json_pack("{s:s}", "ID", env->secret_reply->secret->id));
        else
            dapi_error(c->req, 500, "unexpected %s", wire_msg_name(env->msg_case));
    }
    c->req = NULL;
}

static void dapi_secret_create(ctl_t *ctl, httpd_req_t *r, SecretKind kind)
{
    Envelope env = PB_ENVELOPE_INIT;
    SecretCreate req = PB_SECRET_CREATE_INIT;
    Secret *s = PB_NEW(Secret);
    json_t *j = dapi_body(r);
    char err[512];
    dcall_t *c;

    if (!j || !s) {
        if (!s)
            dapi_error(r, 500, "out of memory");
        goto out;
    }
    s->kind = kind;
    if (dockerjson_secret_from(j, s, err, sizeof(err))) {
        dapi_error(r, 400, "%s", err);
        goto out;
    }
    if (!(c = dcall_new(ctl, r, secret_created, NULL)))
        goto out;
    req.secret = s;
    env.msg_case = MSG_SECRET_CREATE;
    env.secret_create = &req;
    dcall_send(c, &env);
out:
    if (s && s->data.data)
        OPENSSL_cleanse(s->data.data, s->data.len);
    pb_free(s);
    json_decref(j);
}

static void secret_removed(dcall_t *c, const Envelope *env)
{
    if (!dapi_failed(c, env))
        httpd_respond(c->req, 204, "application/json", "", 0);
    c->req = NULL;
}

static void dapi_secret_delete(ctl_t *ctl, httpd_req_t *r, SecretKind kind, const char *ref)
{
    Envelope env = PB_ENVELOPE_INIT;
    SecretRemove req = PB_SECRET_REMOVE_INIT;
    dcall_t *c = dcall_new(ctl, r, secret_removed, NULL);

    if (!c)
        return;
    req.kind = kind;
    req.ref = (char *)ref;
    env.msg_case = MSG_SECRET_REMOVE;
    env.secret_remove = &req;
    dcall_send(c, &env);
}

static void route_secrets(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    (void)arg;
    dapi_secrets_list(ctl, r, SECRET_KIND_SECRET);
}

static void route_configs(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    (void)arg;
    dapi_secrets_list(ctl, r, SECRET_KIND_CONFIG);
}

static void route_secret(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    dapi_secret_get(ctl, r, SECRET_KIND_SECRET, arg);
}

static void route_config(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    dapi_secret_get(ctl, r, SECRET_KIND_CONFIG, arg);
}

static void route_secret_create(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    (void)arg;
    dapi_secret_create(ctl, r, SECRET_KIND_SECRET);
}

static void route_config_create(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    (void)arg;
    dapi_secret_create(ctl, r, SECRET_KIND_CONFIG);
}

static void route_secret_delete(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    dapi_secret_delete(ctl, r, SECRET_KIND_SECRET, arg);
}

static void route_config_delete(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    dapi_secret_delete(ctl, r, SECRET_KIND_CONFIG, arg);
}

/* Docker lets only the labels of a secret change; skiff's are immutable. */
static void route_secret_update(ctl_t *ctl, httpd_req_t *r, const char *arg)
{
    (void)ctl;
    dapi_error(r, 400, "%s: secrets and configs are immutable in skiff: make a new one and "
               "update the services that use it", arg);
}

/* -------------------------------------------------------------- router */

/* '*' is one segment, handed to the route. */
static const struct {
    const char *method;
    const char *path;
    route_fn fn;
} dapi_routes[] = {
    { "GET", "/_ping", route_ping },
    { "HEAD", "/_ping", route_ping },
    { "GET", "/version", route_version },
    { "GET", "/info", route_info },
    { "GET", "/swarm", route_swarm },
    { "GET", "/nodes", route_nodes },
    { "GET", "/nodes/*", route_node },
    { "POST", "/nodes/*/update", route_node_update },
    { "DELETE", "/nodes/*", route_node_delete },
    { "GET", "/services", route_services },
    { "POST", "/services/create", route_service_create },
    { "GET", "/services/*", route_service },
    { "POST", "/services/*/update", route_service_update },
    { "DELETE", "/services/*", route_service_delete },
    { "GET", "/services/*/logs", route_service_logs },
    { "GET", "/tasks", route_tasks },
    { "GET", "/tasks/*", route_task },
    { "GET", "/events", route_events },
    { "GET", "/networks", route_networks_list },
    { "GET", "/networks/*", route_networks },
    { "POST", "/networks/create", route_network_create },
    { "GET", "/secrets", route_secrets },
    { "POST", "/secrets/create", route_secret_create },
    { "GET", "/secrets/*", route_secret },
    { "DELETE", "/secrets/*", route_secret_delete },
    { "POST", "/secrets/*/update", route_secret_update },
    { "GET", "/configs", route_configs },
    { "POST", "/configs/create", route_config_create },
    { "GET", "/configs/*", route_config },
    { "DELETE", "/configs/*", route_config_delete },
    { "POST", "/configs/*/update", route_secret_update },
};

static int dapi_match(const char *pattern, const char *path, char *arg, size_t len)
{
    *arg = '\0';
    while (*pattern && *path) {
        if (*pattern == '*') {
            size_t n = strcspn(path, "/");
            if (n == 0 || n >= len)
                return 0;
            memcpy(arg, path, n);
            arg[n] = '\0';
            path += n;
            pattern++;
        } else if (*pattern++ != *path++) {
            return 0;
        }
    }
    return !*pattern && !*path;
}

static void dapi_on_request(void *arg, httpd_req_t *r)
{
    ctl_t *ctl = arg;
    const char *path = httpd_path(r), *method = httpd_method(r);
    char seg[256];
    int known = 0;

    /* /v1.NN/...: the versions the docker CLI may ask for */
    if (path[0] == '/' && path[1] == 'v' && path[2] >= '0' && path[2] <= '9') {
        char *end;
        unsigned long major = strtoul(path + 2, &end, 10), minor = 0;
        if (*end == '.')
            minor = strtoul(end + 1, &end, 10);
        if (*end != '/' && *end) {
            dapi_error(r, 404, "page not found");
            return;
        }
        if (major != 1 || minor < DOCKERAPI_MIN_MINOR) {
            dapi_error(r, 400, "client version %lu.%lu is too old. Minimum supported API version "
                       "is 1.%d, please upgrade your client to a newer version", major, minor,
                       DOCKERAPI_MIN_MINOR);
            return;
        }
        if (minor > DOCKERAPI_MAX_MINOR) {
            dapi_error(r, 400, "client version 1.%lu is too new. Maximum supported API version "
                       "is 1.%d", minor, DOCKERAPI_MAX_MINOR);
            return;
        }
        path = *end ? end : "/";
    }
    if (strncmp(path, "/distribution/", 14) == 0 && strcmp(method, "GET") == 0) {
        route_distribution(ctl, r, path);
        return;
    }
    if (!ctl->leading && strcmp(path, "/_ping") && strcmp(path, "/version")) {
        dapi_error(r, 503, "this controller does not lead: the leader is %s",
                   *ctl->leader ? ctl->leader : "not known yet");
        return;
    }
    for (size_t i = 0; i < sizeof(dapi_routes) / sizeof(dapi_routes[0]); i++) {
        if (!dapi_match(dapi_routes[i].path, path, seg, sizeof(seg)))
            continue;
        known = 1;
        if (strcmp(dapi_routes[i].method, method) == 0) {
            dapi_routes[i].fn(ctl, r, seg);
            return;
        }
    }
    if (known) {
        dapi_error(r, 405, "method %s not allowed on %.200s", method, path);
        return;
    }
    dapi_error(r, 404, "%.200s: not supported by skiff", path);
}

/* -------------------------------------------------------------- start */

int dockerapi_loopback(const char *listen)
{
    struct sockaddr_storage ss;

    if (conn_parse_addr(listen, &ss))
        return 0;
    if (ss.ss_family == AF_INET)
        return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
    if (ss.ss_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr);
    return 0;
}

int dockerapi_start(ctl_t *ctl)
{
    httpd_config_t hc = { .listen = ctl->cfg.docker_listen, .name = "docker-api",
                          .max_body = DOCKERAPI_MAX_BODY, .max_connections = 256 };
    char err[256];

    if (!*ctl->cfg.docker_listen || ctl->dockerapi)
        return 0;
    if (ctl->cfg.docker_tls) {
        /* A shared store's CA comes with its identity: started then. */
        if (!ctl->ca || !*ca_digest(ctl->ca))
            return 0;
        if (!(hc.ssl_ctx = ca_client_auth_ctx(ctl->ca, err, sizeof(err)))) {
            log_error("--docker-api-tls: %s", err);
            return SKIFF_EINVAL;
        }
    } else if (!dockerapi_loopback(ctl->cfg.docker_listen)) {
        log_error("--docker-api-listen %s: not a loopback address (without TLS the Docker API "
                  "listens on loopback only)", ctl->cfg.docker_listen);
        return SKIFF_EINVAL;
    }
    dapi_host_read();
    ctl->dockerapi = httpd_start(ctl->loop, &hc, dapi_on_request, ctl, err, sizeof(err));
    SSL_CTX_free(hc.ssl_ctx); /* the listener keeps its own reference */
    if (!ctl->dockerapi) {
        log_error("--docker-api-listen %s", err);
        return SKIFF_EINVAL;
    }
    if (ctl->cfg.docker_tls)
        log_info("docker api: listening on %s over TLS, a client certificate of the cluster CA "
                 "required (skiff cluster client-cert DIR): DOCKER_HOST=tcp://%s "
                 "DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=DIR", ctl->cfg.docker_listen,
                 ctl->cfg.docker_listen);
    else
        log_info("docker api: listening on %s, loopback only (no TLS): DOCKER_HOST=tcp://%s",
                 ctl->cfg.docker_listen, ctl->cfg.docker_listen);
    return 0;
}

void dockerapi_stop(ctl_t *ctl)
{
    if (!ctl->dockerapi)
        return;
    httpd_close(ctl->dockerapi, NULL, NULL);
    ctl->dockerapi = NULL;
}
