/* fuzz_seeds: writes the seeds of the targets that read protobuf, made by
 * packing real messages, as skiff's binaries build them:
 *
 *   fuzz_seeds DIR   writes DIR/fuzz_frame/, DIR/fuzz_spec/, DIR/fuzz_controller/
 *
 * tests/fuzz/make_corpus.sh runs it and adds the seeds that are plain files
 * (Compose files, recorded engine answers, durations, command lines). The
 * corpus it makes is committed; run it again after a change of the schema.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "buf.h"
#include "pbutil.h"
#include "spec.h"
#include "wire.h"

static const char *out_dir;
static int failed;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_seeds: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void seed_write(const char *target, const char *name, const void *data, size_t len)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", out_dir, target);
    if (mkdir(path, 0755) && errno != EEXIST)
        die(path);
    snprintf(path, sizeof(path), "%s/%s/%s", out_dir, target, name);
    if (!(f = fopen(path, "wb")) || fwrite(data, 1, len, f) != len || fclose(f))
        die(path);
}

/* ------------------------------------------------------------ messages */

static ServiceSpec *web_spec(const char *name, const char *image, uint32_t replicas)
{
    ServiceSpec *s = spec_new();
    PortConfig *p = PB_NEW(PortConfig);
    Label *l = PB_NEW(Label);

    pb_set_str(&s->name, name);
    pb_set_str(&s->image, image);
    s->replicas = replicas;
    s->update->monitor_ms = 0;
    s->rollback->monitor_ms = 0;
    s->stop_grace_period_ms = 0;
    s->drain_delay_ms = 0;
    p->published = 8080;
    p->target = 8080;
    pb_set_str(&p->protocol, "tcp");
    pb_push_msg(&s->n_ports, (void ***)&s->ports, p);
    pb_push_str(&s->n_env, &s->env, "MODE=production");
    pb_set_str(&l->key, "team");
    pb_set_str(&l->value, "payments");
    pb_push_msg(&s->n_labels, (void ***)&s->labels, l);
    return s;
}

static ServiceSpec *full_spec(void)
{
    ServiceSpec *s = web_spec("shop_api", "registry:5000/shop/api:2.1", 3);
    Mount *m = PB_NEW(Mount);

    pb_set_str(&s->stack, "shop");
    pb_push_str(&s->n_command, &s->command, "serve");
    pb_push_str(&s->n_command, &s->command, "--port=8080");
    pb_push_str(&s->n_entrypoint, &s->entrypoint, "/bin/sh");
    s->expose = malloc(sizeof(*s->expose));
    s->expose[0] = 9090;
    s->n_expose = 1;
    pb_set_str(&s->health->http_path, "/health");
    s->health->http_port = 8080;
    s->health->interval_ms = 500;
    pb_push_str(&s->n_constraints, &s->constraints, "node.labels.zone==eu-1");
    pb_push_str(&s->n_constraints, &s->constraints, "node.name!=n3");
    s->reservations->memory_bytes = 32 << 20;
    s->limits->memory_bytes = 64 << 20;
    s->limits->nano_cpus = 500000000;
    m->type = MOUNT_VOLUME;
    pb_set_str(&m->source, "shop_data");
    pb_set_str(&m->target, "/data");
    pb_push_msg(&s->n_mounts, (void ***)&s->mounts, m);
    pb_set_str(&s->user, "1000:1000");
    s->update->parallelism = 2;
    s->update->order = ORDER_START_FIRST;
    s->update->failure_action = FAILURE_ROLLBACK;
    s->update->max_failure_ratio = 0.25;
    s->restart->condition = RESTART_ON_FAILURE;
    s->restart->max_attempts = 3;
    s->restart->window_ms = 60000;
    return s;
}

static TaskStatus *status(const char *task, TaskState state, Health health)
{
    TaskStatus *st = PB_NEW(TaskStatus);
    PortMapping *pm = PB_NEW(PortMapping);

    pb_set_str(&st->task_id, task);
    st->state = state;
    st->health = health;
    if (state >= TASK_STARTING) {
        char ctr[80];
        snprintf(ctr, sizeof(ctr), "ctr%s", task + (*task == '#'));
        pb_set_str(&st->container_id, ctr);
    }
    pm->target = 8080;
    pm->host_port = 32768;
    pb_push_msg(&st->n_ports, (void ***)&st->ports, pm);
    if (state == TASK_FAILED) {
        st->exit_code = 1;
        pb_set_str(&st->message, "exited with code 1");
    }
    return st;
}

static Envelope *env_new(uint64_t id)
{
    Envelope *e = PB_NEW(Envelope);

    e->id = id;
    return e;
}

static Envelope *m_hello(int role, const char *token)
{
    Envelope *e = env_new(1);

    e->msg_case = MSG_HELLO;
    e->hello = PB_NEW(Hello);
    e->hello->role = role;
    pb_set_str(&e->hello->token, token);
    pb_set_str(&e->hello->version, SKIFF_VERSION);
    return e;
}

static Envelope *m_register(const char *name, const char *address)
{
    Envelope *e = env_new(7);
    NodeRegister *r = PB_NEW(NodeRegister);
    Label *l = PB_NEW(Label);

    pb_set_str(&r->name, name);
    pb_set_str(&r->address, address);
    pb_set_str(&r->gateway, "172.17.0.1");
    pb_set_str(&l->key, "zone");
    pb_set_str(&l->value, "eu-1");
    pb_push_msg(&r->n_labels, (void ***)&r->labels, l);
    r->resources = PB_NEW(Resources);
    r->resources->nano_cpus = 2000000000;
    r->resources->memory_bytes = (int64_t)4 << 30;
    pb_set_str(&r->engine_version, "20.10.24");
    pb_set_str(&r->agent_version, SKIFF_VERSION);
    e->msg_case = MSG_NODE_REGISTER;
    e->node_register = r;
    return e;
}

/* A StatusReport of "#0".."#n-1" (fuzz_controller's task placeholders). */
static Envelope *m_status(int full, unsigned n, TaskState state, Health health)
{
    Envelope *e = env_new(0);
    StatusReport *r = PB_NEW(StatusReport);
    char id[16];

    r->full = full;
    for (unsigned i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "#%u", i);
        pb_push_msg(&r->n_tasks, (void ***)&r->tasks, status(id, state, health));
    }
    r->assignments_version = 1;
    r->endpoints_version = 1;
    if (full) {
        LbStats *s = PB_NEW(LbStats);
        pb_set_str(&s->service_name, "web");
        pb_set_str(&s->backend, "127.0.0.2:32768");
        s->connections = 10;
        pb_push_msg(&r->n_lb_stats, (void ***)&r->lb_stats, s);
    }
    e->msg_case = MSG_STATUS;
    e->status = r;
    return e;
}

static Envelope *m_create(uint64_t id, ServiceSpec *spec)
{
    Envelope *e = env_new(id);

    e->msg_case = MSG_SERVICE_CREATE;
    e->service_create = PB_NEW(ServiceCreate);
    e->service_create->spec = spec;
    return e;
}

static Envelope *m_update(uint64_t id, const char *svc, ServiceSpec *spec)
{
    Envelope *e = env_new(id);

    e->msg_case = MSG_SERVICE_UPDATE;
    e->service_update = PB_NEW(ServiceUpdate);
    pb_set_str(&e->service_update->service, svc);
    e->service_update->spec = spec;
    return e;
}

static Envelope *m_ref(uint64_t id, int msg_case, const char *ref)
{
    Envelope *e = env_new(id);

    e->msg_case = msg_case;
    switch (msg_case) {
    case MSG_SERVICE_GET:
        e->service_get = PB_NEW(ServiceGet);
        pb_set_str(&e->service_get->service, ref);
        break;
    case MSG_SERVICE_REMOVE:
        e->service_remove = PB_NEW(ServiceRemove);
        pb_set_str(&e->service_remove->service, ref);
        break;
    case MSG_SERVICE_ROLLBACK:
        e->service_rollback = PB_NEW(ServiceRollback);
        pb_set_str(&e->service_rollback->service, ref);
        break;
    case MSG_SERVICE_LIST:
        e->service_list = PB_NEW(ServiceList);
        pb_set_str(&e->service_list->stack, ref);
        break;
    case MSG_TASK_LIST:
        e->task_list = PB_NEW(TaskList);
        pb_set_str(&e->task_list->service, ref);
        e->task_list->all = 1;
        break;
    case MSG_NODE_LIST:
        e->node_list = PB_NEW(NodeList);
        break;
    case MSG_NODE_GET:
        e->node_get = PB_NEW(NodeGet);
        pb_set_str(&e->node_get->node, ref);
        break;
    case MSG_NODE_UPDATE:
        e->node_update = PB_NEW(NodeUpdate);
        pb_set_str(&e->node_update->node, ref);
        e->node_update->availability = AVAILABILITY_DRAIN;
        break;
    case MSG_NODE_REMOVE:
        e->node_remove = PB_NEW(NodeRemove);
        pb_set_str(&e->node_remove->node, ref);
        e->node_remove->force = 1;
        break;
    case MSG_LOGS_REQUEST:
        e->logs_request = PB_NEW(LogsRequest);
        pb_set_str(&e->logs_request->service, ref);
        e->logs_request->tail = 10;
        break;
    }
    return e;
}

static Envelope *m_scale(uint64_t id, const char *svc, uint32_t n)
{
    Envelope *e = env_new(id);

    e->msg_case = MSG_SERVICE_SCALE;
    e->service_scale = PB_NEW(ServiceScale);
    pb_set_str(&e->service_scale->service, svc);
    e->service_scale->replicas = n;
    return e;
}

static Envelope *m_logs_data(uint64_t stream, const char *task_name, const char *text)
{
    Envelope *e = env_new(0);

    e->msg_case = MSG_LOGS_DATA;
    e->logs_data = PB_NEW(LogsData);
    e->logs_data->stream = stream;
    pb_set_str(&e->logs_data->task_name, task_name);
    e->logs_data->data.len = strlen(text);
    e->logs_data->data.data = (uint8_t *)strdup(text);
    return e;
}

static Envelope *m_logs_close(uint64_t stream)
{
    Envelope *e = env_new(0);

    e->msg_case = MSG_LOGS_CLOSE;
    e->logs_close = PB_NEW(LogsClose);
    e->logs_close->stream = stream;
    return e;
}

static Envelope *m_assignments(void)
{
    Envelope *e = env_new(0);
    Assignments *s = PB_NEW(Assignments);
    Assignment *a = PB_NEW(Assignment);

    s->version = 3;
    pb_set_str(&a->task_id, "0123456789abcdef");
    pb_set_str(&a->service_id, "fedcba9876543210");
    pb_set_str(&a->service_name, "shop_api");
    a->slot = 2;
    a->spec_version = 4;
    a->spec = full_spec();
    pb_push_str(&a->n_hosts, &a->hosts, "db");
    pb_push_str(&a->n_hosts, &a->hosts, "shop_db");
    pb_push_msg(&s->n_tasks, (void ***)&s->tasks, a);
    e->msg_case = MSG_ASSIGNMENTS;
    e->assignments = s;
    return e;
}

static Envelope *m_endpoints(void)
{
    Envelope *e = env_new(0);
    Endpoints *eps = PB_NEW(Endpoints);
    ServiceEndpoints *se = PB_NEW(ServiceEndpoints);
    ServicePort *sp = PB_NEW(ServicePort);
    Backend *b = PB_NEW(Backend);
    PortMapping *pm = PB_NEW(PortMapping);

    eps->version = 5;
    pb_set_str(&se->service_id, "fedcba9876543210");
    pb_set_str(&se->service_name, "web");
    sp->port = 8080;
    sp->target = 8080;
    pb_push_msg(&se->n_ports, (void ***)&se->ports, sp);
    pb_set_str(&b->task_id, "0123456789abcdef");
    pb_set_str(&b->node_id, "aaaabbbbccccdddd");
    pb_set_str(&b->address, "127.0.0.2");
    pm->target = 8080;
    pm->host_port = 32768;
    pb_push_msg(&b->n_ports, (void ***)&b->ports, pm);
    pb_push_msg(&se->n_backends, (void ***)&se->backends, b);
    pb_push_msg(&eps->n_services, (void ***)&eps->services, se);
    e->msg_case = MSG_ENDPOINTS;
    e->endpoints = eps;
    return e;
}

static Envelope *m_error(uint64_t id)
{
    Envelope *e = env_new(id);

    e->msg_case = MSG_ERROR;
    e->error = PB_NEW(Error);
    e->error->code = ERR_INVALID;
    pb_set_str(&e->error->message, "replicas: 100001 is more than the limit of 100000");
    return e;
}

static Envelope *m_task_list_reply(uint64_t id)
{
    Envelope *e = env_new(id);
    Task *t = PB_NEW(Task);

    pb_set_str(&t->id, "0123456789abcdef");
    pb_set_str(&t->service_name, "web");
    t->slot = 1;
    t->state = TASK_RUNNING;
    t->health = HEALTH_HEALTHY;
    e->msg_case = MSG_TASK_LIST_REPLY;
    e->task_list_reply = PB_NEW(TaskListReply);
    pb_push_msg(&e->task_list_reply->n_tasks, (void ***)&e->task_list_reply->tasks, t);
    return e;
}

/* ------------------------------------------------------------ writers */

/* fuzz_frame: one parameter byte, then frames. */
static void frame_seed(const char *name, uint8_t param, Envelope **envs, size_t n)
{
    buf_t b = BUF_INIT;

    buf_append(&b, &param, 1, SIZE_MAX);
    for (size_t i = 0; i < n; i++)
        if (wire_encode(envs[i], &b, WIRE_MAX_FRAME_DEFAULT))
            failed = 1;
    seed_write("fuzz_frame", name, b.pos, buf_len(&b));
    buf_free(&b);
}

/* fuzz_controller: records of op, length, bytes. */
typedef struct script {
    buf_t b;
} script_t;

static void rec(script_t *s, unsigned op, Envelope *env)
{
    size_t len = skiff__v1__envelope__get_packed_size(env);
    uint8_t head[3] = { (uint8_t)op, (uint8_t)len, (uint8_t)(len >> 8) };
    uint8_t *p = malloc(len ? len : 1);

    if (len > 0xffff)
        failed = 1;
    skiff__v1__envelope__pack(env, p);
    buf_append(&s->b, head, 3, SIZE_MAX);
    buf_append(&s->b, p, len, SIZE_MAX);
    free(p);
    pb_free(env);
}

static void rec_raw(script_t *s, unsigned op, const void *data, size_t len)
{
    uint8_t head[3] = { (uint8_t)op, (uint8_t)len, (uint8_t)(len >> 8) };

    buf_append(&s->b, head, 3, SIZE_MAX);
    buf_append(&s->b, data, len, SIZE_MAX);
}

static void script_write(script_t *s, const char *name)
{
    seed_write("fuzz_controller", name, s->b.pos, buf_len(&s->b));
    buf_free(&s->b);
}

#define CLIENT 0
#define AGENT_A 1
#define AGENT_B 2
#define RAW 3
#define PLAIN 0x40 /* raw bytes without TLS */
#define SETTLE 0x80

static void controller_seeds(void)
{
    script_t s = { BUF_INIT };
    uint8_t frame[512];
    Envelope *e;
    size_t len;

    /* A service placed on a node, reported running, read back. */
    rec(&s, AGENT_A | SETTLE, m_register("n1", "127.0.0.2"));
    rec(&s, CLIENT | SETTLE, m_create(2, web_spec("web", "skiff-test/web:v1", 2)));
    rec(&s, AGENT_A | SETTLE, m_status(0, 2, TASK_RUNNING, HEALTH_NONE));
    rec(&s, AGENT_A | SETTLE, m_status(1, 2, TASK_RUNNING, HEALTH_NONE));
    rec(&s, CLIENT, m_ref(3, MSG_SERVICE_GET, "web"));
    rec(&s, CLIENT, m_ref(4, MSG_TASK_LIST, "web"));
    rec(&s, CLIENT, m_ref(5, MSG_NODE_LIST, ""));
    rec(&s, CLIENT, m_ref(6, MSG_SERVICE_LIST, ""));
    script_write(&s, "place_and_run");

    /* A rolling update, a failure, a rollback, a scale, a removal. */
    rec(&s, AGENT_A | SETTLE, m_register("n1", "127.0.0.2"));
    rec(&s, AGENT_B | SETTLE, m_register("n2", "127.0.0.3"));
    rec(&s, CLIENT | SETTLE, m_create(2, full_spec()));
    rec(&s, AGENT_A | SETTLE, m_status(1, 3, TASK_RUNNING, HEALTH_HEALTHY));
    {
        ServiceSpec *v2 = full_spec();
        pb_set_str(&v2->image, "registry:5000/shop/api:2.2");
        rec(&s, CLIENT | SETTLE, m_update(3, "shop_api", v2));
    }
    rec(&s, AGENT_A | SETTLE, m_status(0, 4, TASK_FAILED, HEALTH_UNHEALTHY));
    rec(&s, AGENT_A | SETTLE, m_status(1, 4, TASK_SHUTDOWN, HEALTH_NONE));
    rec(&s, CLIENT | SETTLE, m_ref(4, MSG_SERVICE_ROLLBACK, "shop_api"));
    rec(&s, CLIENT | SETTLE, m_scale(5, "shop_api", 5));
    rec(&s, AGENT_B | SETTLE, m_status(1, 6, TASK_RUNNING, HEALTH_HEALTHY));
    rec(&s, CLIENT | SETTLE, m_ref(6, MSG_SERVICE_REMOVE, "shop_api"));
    rec(&s, AGENT_B | SETTLE, m_status(1, 6, TASK_REMOVED, HEALTH_NONE));
    rec(&s, CLIENT, m_ref(7, MSG_TASK_LIST, ""));
    script_write(&s, "update_rollback_remove");

    /* Logs relayed from an agent to the client. */
    rec(&s, AGENT_A | SETTLE, m_register("n1", "127.0.0.2"));
    rec(&s, CLIENT | SETTLE, m_create(2, web_spec("web", "skiff-test/web:v1", 1)));
    rec(&s, AGENT_A | SETTLE, m_status(1, 1, TASK_RUNNING, HEALTH_NONE));
    rec(&s, CLIENT | SETTLE, m_ref(3, MSG_LOGS_REQUEST, "web"));
    rec(&s, AGENT_A, m_logs_data(1, "web.1.x", "GET / 200\n"));
    rec(&s, AGENT_A | SETTLE, m_logs_close(1));
    rec(&s, AGENT_A, m_logs_data(9, "web.1.x", "late\n"));
    script_write(&s, "logs");

    /* Nodes: a second agent takes the first one's name, drain, removal. */
    rec(&s, AGENT_A | SETTLE, m_register("n1", "127.0.0.2"));
    rec(&s, CLIENT | SETTLE, m_create(2, web_spec("web", "skiff-test/web:v1", 3)));
    rec(&s, AGENT_B | SETTLE, m_register("n1", "127.0.0.3"));
    rec(&s, CLIENT | SETTLE, m_ref(3, MSG_NODE_UPDATE, "n1"));
    rec(&s, CLIENT, m_ref(4, MSG_NODE_GET, "n1"));
    rec_raw(&s, AGENT_B, NULL, 0); /* the agent goes away */
    rec(&s, CLIENT | SETTLE, m_ref(5, MSG_NODE_REMOVE, "n1"));
    rec(&s, AGENT_B | SETTLE, m_register("n1", "127.0.0.3"));
    script_write(&s, "nodes");

    /* Raw connections (inside TLS, and one in plaintext): a wrong token,
     * garbage, a message before hello. */
    e = m_hello(ROLE_CLIENT, "0000000000000000000000000000000000000000000000000000000000000000");
    len = wire_frame_size(e);
    wire_pack(e, frame);
    pb_free(e);
    rec_raw(&s, RAW, frame, len);
    rec_raw(&s, RAW, NULL, 0);
    rec_raw(&s, RAW, "\x00\x00\x00\x05garbage", 11);
    rec_raw(&s, RAW, NULL, 0);
    rec_raw(&s, RAW, "\xff\xff\xff\xff", 4);
    rec_raw(&s, RAW, NULL, 0);
    e = m_ref(1, MSG_NODE_LIST, "");
    len = wire_frame_size(e);
    wire_pack(e, frame);
    pb_free(e);
    rec_raw(&s, RAW, frame, len);
    rec_raw(&s, RAW | PLAIN, frame, len); /* the same in plaintext: refused */
    rec(&s, CLIENT, m_ref(2, MSG_NODE_LIST, ""));
    script_write(&s, "raw");

    /* Agents and clients sending each other's messages. */
    rec(&s, AGENT_A, m_status(1, 1, TASK_RUNNING, HEALTH_NONE));
    rec(&s, AGENT_B, m_register("n2", "127.0.0.3"));
    rec(&s, AGENT_B, m_ref(3, MSG_NODE_LIST, ""));
    rec(&s, CLIENT, m_register("n3", "127.0.0.4"));
    rec(&s, CLIENT, m_status(1, 1, TASK_RUNNING, HEALTH_NONE));
    rec(&s, CLIENT, m_assignments());
    rec(&s, CLIENT, m_error(9));
    script_write(&s, "wrong_roles");
}

static void frame_seeds(void)
{
    Envelope *all[16];
    size_t n = 0;
    buf_t b = BUF_INIT;
    uint8_t param;

    all[n++] = m_hello(ROLE_AGENT, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    all[n++] = m_register("n1", "127.0.0.2");
    all[n++] = m_status(1, 3, TASK_RUNNING, HEALTH_HEALTHY);
    all[n++] = m_assignments();
    all[n++] = m_endpoints();
    all[n++] = m_create(2, full_spec());
    all[n++] = m_update(3, "shop_api", full_spec());
    all[n++] = m_task_list_reply(4);
    all[n++] = m_error(5);
    all[n++] = m_logs_data(1, "web.1.x", "line one\nline two\n");
    all[n++] = m_ref(6, MSG_NODE_LIST, "");
    for (size_t i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof(name), "one_%s", wire_msg_name(all[i]->msg_case));
        frame_seed(name, 3, &all[i], 1);                     /* 4 MiB, one read */
        snprintf(name, sizeof(name), "split_%s", wire_msg_name(all[i]->msg_case));
        frame_seed(name, 3 | (1 << 2), &all[i], 1);          /* byte by byte */
    }
    frame_seed("joined", 3 | (7 << 2), all, n);
    frame_seed("joined_small_max", 2 | (13 << 2), all, n);   /* 4 KiB: some too big */
    /* Broken: zero length, oversize, not an Envelope, a partial frame. */
    param = 3;
    buf_append(&b, &param, 1, SIZE_MAX);
    buf_append(&b, "\x00\x00\x00\x00", 4, SIZE_MAX);
    seed_write("fuzz_frame", "zero_length", b.pos, buf_len(&b));
    buf_free(&b);
    buf_append(&b, &param, 1, SIZE_MAX);
    buf_append(&b, "\x7f\xff\xff\xff", 4, SIZE_MAX);
    seed_write("fuzz_frame", "oversize", b.pos, buf_len(&b));
    buf_free(&b);
    buf_append(&b, &param, 1, SIZE_MAX);
    buf_append(&b, "\x00\x00\x00\x06\xff\xff\xff\xff\xff\xff", 10, SIZE_MAX);
    seed_write("fuzz_frame", "not_an_envelope", b.pos, buf_len(&b));
    buf_free(&b);
    buf_append(&b, &param, 1, SIZE_MAX);
    buf_append(&b, "\x00\x00\x01\x00\x08\x01", 6, SIZE_MAX);
    seed_write("fuzz_frame", "partial", b.pos, buf_len(&b));
    buf_free(&b);
    for (size_t i = 0; i < n; i++)
        pb_free(all[i]);
}

static void spec_seed(const char *name, ServiceSpec *s)
{
    size_t len = skiff__v1__service_spec__get_packed_size(s);
    uint8_t *p = malloc(len ? len : 1);

    skiff__v1__service_spec__pack(s, p);
    seed_write("fuzz_spec", name, p, len);
    free(p);
    pb_free(s);
}

static void spec_seeds(void)
{
    ServiceSpec *s;
    Label *l;

    spec_seed("web", web_spec("web", "skiff-test/web:v1", 3));
    spec_seed("full", full_spec());
    s = spec_new();
    pb_set_str(&s->name, "minimal");
    pb_set_str(&s->image, "busybox");
    spec_seed("minimal", s);
    s = web_spec("forged", "skiff-test/web:v1", 1);
    l = PB_NEW(Label);
    pb_set_str(&l->key, "skiff.cluster");
    pb_set_str(&l->value, "someone-else");
    pb_push_msg(&s->n_labels, (void ***)&s->labels, l);
    spec_seed("forged_label", s);
    s = web_spec("cmd", "skiff-test/web:v1", 1);
    pb_push_str(&s->health->n_test, &s->health->test, "CMD-SHELL");
    pb_push_str(&s->health->n_test, &s->health->test, "wget -q -O- http://127.0.0.1:8080/");
    pb_set_str(&s->user, "nobody");
    spec_seed("health_cmd_user", s);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_seeds DIR\n");
        return 2;
    }
    out_dir = argv[1];
    if (mkdir(out_dir, 0755) && errno != EEXIST)
        die(out_dir);
    frame_seeds();
    spec_seeds();
    controller_seeds();
    if (failed)
        fprintf(stderr, "fuzz_seeds: some seeds did not encode\n");
    return failed;
}
