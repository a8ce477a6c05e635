/* ctl_harness: see ctl_harness.h. Test code: a failed expectation fails the
 * running cmocka test (fail_msg), which is why this file includes cmocka. */
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <utlist.h>

#include "ctl_harness.h"
#include "errors.h"
#include "log.h"
#include "pbutil.h"
#include "pki.h"
#include "spec.h"
#include "tls.h"
#include "token.h"
#include "wire.h"

#define H_CALL_TIMEOUT_MS 5000

static const conn_ops_t h_agent_ops;
static const conn_ops_t h_client_ops;

static void h_send_hello(harness_t *h, conn_t *c, const char *token, int role);
static void h_agent_on_joined(harness_t *h, h_agent_t *a, const Envelope *env);

/* ------------------------------------------------------------- helpers */

static void h_violation(harness_t *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void h_violation(harness_t *h, const char *fmt, ...)
{
    va_list ap;

    if (h->violations++ == 0) {
        va_start(ap, fmt);
        vsnprintf(h->violation, sizeof(h->violation), fmt, ap);
        va_end(ap);
    }
}

static int h_free_port(void)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    assert_true(fd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* The secret of a token file, and its digest. */
static void h_read_token(const char *dir, const char *name, char out[CTL_TOKEN_LEN + 1],
                         char digest[PKI_DIGEST_HEX + 1])
{
    char path[PATH_MAX + 32], line[TOKEN_LEN + 8] = "", err[256];
    token_t t;
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    if (token_parse(line, &t, err, sizeof(err)))
        fail_msg("%s: %s", path, err);
    memcpy(out, t.secret, CTL_TOKEN_LEN + 1);
    memcpy(digest, t.digest, PKI_DIGEST_HEX + 1);
}

static int h_spec_has_check(const ServiceSpec *spec)
{
    const HealthCheck *hc = spec ? spec->health : NULL;

    if (!hc)
        return 0;
    return *hc->http_path || (hc->n_test > 0 && strcmp(hc->test[0], "NONE") != 0);
}

static int h_terminal(TaskState s)
{
    return s == TASK_COMPLETE || s == TASK_FAILED || s == TASK_SHUTDOWN || s == TASK_REJECTED ||
           s == TASK_REMOVED;
}

/* ----------------------------------------------------------------- life */

static void h_beat(uv_timer_t *timer)
{
    harness_t *h = timer->data;

    for (size_t i = 0; i < h->n_agents; i++) {
        h_agent_t *a = &h->agents[i];
        if (a->registered && !a->silent && a->conn)
            h_agent_report(h, a, NULL, 1);
    }
}

harness_t *h_new(int64_t heartbeat_timeout_ms, int64_t beat_ms)
{
    harness_t *h = calloc(1, sizeof(*h));
    const char *level = getenv("SKIFF_TEST_LOG");
    enum log_level lvl = LOG_ERROR;

    assert_non_null(h);
    if (level)
        log_level_parse(level, &lvl);
    log_init("controller", lvl);
    assert_int_equal(uv_loop_init(&h->loop), 0);
    snprintf(h->dir, sizeof(h->dir), "%s/skiff-test-orch-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    assert_non_null(mkdtemp(h->dir));
    h->heartbeat_timeout_ms = heartbeat_timeout_ms;
    h->beat_ms = beat_ms;
    h->next_host_port = 32768;
    uv_timer_init(&h->loop, &h->beat);
    h->beat.data = h;
    uv_timer_start(&h->beat, h_beat, (uint64_t)beat_ms, (uint64_t)beat_ms);
    h_ctl_start(h);
    h_read_token(h->dir, "join-token", h->join_token, h->ca_digest);
    h_read_token(h->dir, "admin-token", h->admin_token, h->ca_digest);
    {
        tls_policy_t policy = { .server = 0, .peer_cert = TLS_PEER_REQUIRED,
                                .peer_role = PKI_ROLE_CONTROLLER };
        char err[256];
        memcpy(policy.pin, h->ca_digest, sizeof(policy.pin));
        if (!(h->pin_tls = tls_ctx_new(&policy, NULL, err, sizeof(err))))
            fail_msg("tls_ctx_new: %s", err);
    }
    return h;
}

void h_ctl_start(harness_t *h)
{
    ctl_t *ctl = calloc(1, sizeof(*ctl));
    char err[512] = "", path[PATH_MAX + 16];
    int rc = -1;

    assert_non_null(ctl);
    assert_null(h->ctl);
    ctl->cfg = (ctl_config_t){
        .heartbeat_timeout_ms = h->heartbeat_timeout_ms,
        .disconnect_grace_ms = h->heartbeat_timeout_ms, /* as before the grace existed */
        .handshake_timeout_ms = 5000,
        .agent_timeout_ms = h->heartbeat_timeout_ms * 10,
        .max_frame = 4 << 20,
        .max_pending = 8 << 20,
        .max_conns = 4096,
        .max_conns_per_addr = 1024,
        .spec_limits = spec_limits_default,
    };
    ctl->cfg.spec_limits.max_replicas = 1000;
    snprintf(ctl->cfg.data_dir, sizeof(ctl->cfg.data_dir), "%s", h->dir);
    model_init(&ctl->model);
    ctl->cfg.cert_expiry_ms = 3600000;
    if (tokens_prepare(ctl, err, sizeof(err)))
        fail_msg("tokens_prepare: %s", err);
    snprintf(path, sizeof(path), "%s/state.db", h->dir);
    if (!(ctl->store = store_sqlite_open(&h->loop, path, err, sizeof(err))) ||
        store_sqlite_load(ctl->store, &ctl->model, err, sizeof(err)) ||
        tokens_cluster_id(ctl, err, sizeof(err)) || tokens_ca(ctl, err, sizeof(err)) ||
        secrets_key_init(ctl, err, sizeof(err)) || ctl_load_events(ctl))
        fail_msg("controller start: %s", err);
    for (int attempt = 0; attempt < 10 && rc; attempt++) {
        snprintf(ctl->cfg.listen, sizeof(ctl->cfg.listen), "127.0.0.1:%d", h_free_port());
        ctl->cfg.advertise[0] = '\0'; /* the --listen address */
        rc = ctl_start(ctl, &h->loop);
        if (rc)
            uv_run(&h->loop, UV_RUN_NOWAIT); /* the listener's close */
    }
    assert_int_equal(rc, 0);
    snprintf(h->hostport, sizeof(h->hostport), "%s", ctl->cfg.listen);
    h->ctl = ctl;
    assert_int_equal(sqlite3_open_v2(path, &h->db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(h->db, 2000);
}

/* 1 while a handle of the controller (not of its connections) is open. */
static void h_walk_ctl(uv_handle_t *handle, void *arg)
{
    void **p = arg;

    if (handle->data == p[0])
        p[1] = handle;
}

static int h_ctl_handles_open(harness_t *h)
{
    void *p[2] = { h->ctl, NULL };

    uv_walk(&h->loop, h_walk_ctl, p);
    return p[1] != NULL;
}

/* After its handles are closed: frees what a controller holds. */
static void h_ctl_free(harness_t *h)
{
    ctl_t *ctl = h->ctl;
    outmsg_t *m;

    while ((m = ctl->out_head)) {
        ctl->out_head = m->next;
        peer_unref(m->peer);
        free(m);
    }
    assert_null(ctl->inflight);
    assert_null(ctl->peers);
    assert_null(ctl->logstreams);
    store_batch_free(ctl->events_batch);
    events_free(ctl->events);
    free(ctl->monitor);
    store_close(ctl->store);
    model_free(&ctl->model);
    free(ctl->endpoints_packed);
    SSL_CTX_free(ctl->tls);
    ca_free(ctl->ca);
    free(ctl);
    h->ctl = NULL;
    sqlite3_close(h->db);
    h->db = NULL;
}

static void h_ctl_wait_closed(harness_t *h)
{
    uint64_t deadline = uv_hrtime() / 1000000 + 5000;

    while (h_ctl_handles_open(h) || h->ctl->n_peers || h->ctl->committing) {
        if (uv_hrtime() / 1000000 > deadline)
            fail_msg("the controller did not close within 5s");
        uv_run(&h->loop, UV_RUN_ONCE);
    }
    /* The agents and the client see their connections closed. */
    for (int i = 0; i < 5; i++)
        uv_run(&h->loop, UV_RUN_NOWAIT);
}

void h_ctl_stop(harness_t *h)
{
    assert_non_null(h->ctl);
    assert_int_equal(uv_kill(getpid(), SIGTERM), 0);
    H_RUN_UNTIL(h, h->ctl->stopping, 2000);
    h_ctl_wait_closed(h);
    h_ctl_free(h);
}

void h_ctl_kill(harness_t *h)
{
    ctl_t *ctl = h->ctl;

    assert_non_null(ctl);
    /* Nothing is committed or sent from here on. */
    uv_prepare_stop(&ctl->flush);
    uv_close((uv_handle_t *)&ctl->flush, NULL);
    uv_close((uv_handle_t *)&ctl->listener, NULL);
    uv_timer_stop(&ctl->tick);
    uv_close((uv_handle_t *)&ctl->tick, NULL);
    uv_close((uv_handle_t *)&ctl->sigterm, NULL);
    uv_close((uv_handle_t *)&ctl->sigint, NULL);
    uv_close((uv_handle_t *)&ctl->token_watch, NULL);
    for (peer_t *p = ctl->peers; p; p = p->next)
        if (p->conn)
            conn_close(p->conn, SKIFF_ECLOSED); /* at once: queued output is lost */
    ctl->stopping = 1;
    h_ctl_wait_closed(h);
    h_ctl_free(h);
}

static void h_rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[PATH_MAX + 300];

    if (!d)
        return;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static void h_agent_clear(h_agent_t *a)
{
    pb_free(a->set);
    pb_free(a->eps);
    a->set = NULL;
    a->eps = NULL;
    for (size_t i = 0; i < a->n_logs_open; i++)
        pb_free(a->logs_open[i]);
    a->n_logs_open = 0;
}

void h_free(harness_t *h)
{
    uint64_t deadline;

    if (h->ctl)
        h_ctl_stop(h);
    for (size_t i = 0; i < h->n_agents; i++)
        if (h->agents[i].conn)
            conn_close(h->agents[i].conn, 0);
    if (h->client)
        conn_close(h->client, 0);
    uv_timer_stop(&h->beat);
    uv_close((uv_handle_t *)&h->beat, NULL);
    deadline = uv_hrtime() / 1000000 + 5000;
    while (uv_loop_alive(&h->loop)) {
        if (uv_hrtime() / 1000000 > deadline)
            fail_msg("the loop did not end within 5s");
        uv_run(&h->loop, UV_RUN_ONCE);
    }
    assert_int_equal(uv_loop_close(&h->loop), 0);
    for (size_t i = 0; i < h->n_agents; i++) {
        h_agent_clear(&h->agents[i]);
        h_agent_forget(&h->agents[i]);
    }
    for (size_t i = 0; i < h->n_inbox; i++)
        wire_free(h->inbox[i]);
    SSL_CTX_free(h->pin_tls);
    h_rm_dir(h->dir);
    free(h);
}

/* ------------------------------------------------------------- the loop */

void h_run_once(harness_t *h)
{
    uv_run(&h->loop, UV_RUN_ONCE);
}

void h_run_for(harness_t *h, int64_t ms)
{
    uint64_t end = uv_hrtime() / 1000000 + (uint64_t)ms;

    while (uv_hrtime() / 1000000 < end)
        uv_run(&h->loop, UV_RUN_ONCE);
}

/* ---------------------------------------------------------- fake agents */

h_agent_t *h_agent_add(harness_t *h, const char *name, const char *address, const char *label)
{
    h_agent_t *a;

    assert_true(h->n_agents < H_MAX_AGENTS);
    a = &h->agents[h->n_agents];
    memset(a, 0, sizeof(*a));
    a->h = h;
    a->index = (int)h->n_agents++;
    snprintf(a->name, sizeof(a->name), "%s", name);
    snprintf(a->address, sizeof(a->address), "%s", address);
    if (label) {
        const char *eq = strchr(label, '=');
        assert_non_null(eq);
        snprintf(a->labels[0][0], sizeof(a->labels[0][0]), "%.*s", (int)(eq - label), label);
        snprintf(a->labels[0][1], sizeof(a->labels[0][1]), "%s", eq + 1);
        a->n_labels = 1;
    }
    return a;
}

h_task_t *h_agent_task(h_agent_t *a, const char *id)
{
    for (size_t i = 0; i < a->n_tasks; i++)
        if (strcmp(a->tasks[i].id, id) == 0)
            return &a->tasks[i];
    return NULL;
}

/* Fills s from t; ports point into pms, which must hold H_MAX_PORTS. */
static void h_status_of(const h_task_t *t, TaskStatus *s, PortMapping *pms, PortMapping **pp,
                        char *container)
{
    *s = (TaskStatus)PB_TASK_STATUS_INIT;
    s->task_id = (char *)t->id;
    s->state = t->state;
    s->health = t->health;
    s->restarts = t->restarts;
    s->exit_code = t->exit_code;
    snprintf(container, 32, "ctr-%s", t->id);
    s->container_id = t->state >= TASK_STARTING ? container : (char *)"";
    for (size_t i = 0; i < t->n_ports; i++) {
        pms[i] = (PortMapping)PB_PORT_MAPPING_INIT;
        pms[i].target = t->targets[i];
        pms[i].host_port = t->host_ports[i];
        pp[i] = &pms[i];
    }
    s->n_ports = t->n_ports;
    s->ports = pp;
    if (t->state == TASK_FAILED)
        s->message = (char *)"exited with code 1";
}

/* Sends a StatusReport of the listed tasks (or every task, when full). */
static void h_agent_send_report(harness_t *h, h_agent_t *a, const h_task_t **list, size_t n,
                                int full)
{
    Envelope env = PB_ENVELOPE_INIT;
    StatusReport r = PB_STATUS_REPORT_INIT;
    static TaskStatus st[H_MAX_TASKS];
    static TaskStatus *stp[H_MAX_TASKS];
    static PortMapping pms[H_MAX_TASKS][H_MAX_PORTS];
    static PortMapping *pp[H_MAX_TASKS][H_MAX_PORTS];
    static char containers[H_MAX_TASKS][32];

    (void)h;
    if (!a->conn || !a->registered)
        return;
    for (size_t i = 0; i < n; i++) {
        h_status_of(list[i], &st[i], pms[i], pp[i], containers[i]);
        stp[i] = &st[i];
    }
    r.full = full;
    r.n_tasks = n;
    r.tasks = stp;
    r.assignments_version = a->set ? a->set->version : 0;
    r.endpoints_version = a->eps ? a->eps->version : 0;
    env.msg_case = MSG_STATUS;
    env.status = &r;
    assert_int_equal(conn_send(a->conn, &env), 0);
}

void h_agent_report(harness_t *h, h_agent_t *a, const h_task_t *t, int full)
{
    const h_task_t *list[H_MAX_TASKS];
    size_t n = 0;

    if (full) {
        for (size_t i = 0; i < a->n_tasks; i++)
            list[n++] = &a->tasks[i];
    } else if (t) {
        list[n++] = t;
    }
    h_agent_send_report(h, a, list, n, full);
}

static void h_agent_register(harness_t *h, h_agent_t *a)
{
    Envelope env = PB_ENVELOPE_INIT;
    NodeRegister r = PB_NODE_REGISTER_INIT;
    Resources res = PB_RESOURCES_INIT;
    Label lbl[H_MAX_LABELS], *lp[H_MAX_LABELS];
    static TaskStatus st[H_MAX_TASKS];
    static TaskStatus *stp[H_MAX_TASKS];
    static PortMapping pms[H_MAX_TASKS][H_MAX_PORTS];
    static PortMapping *pp[H_MAX_TASKS][H_MAX_PORTS];
    static char containers[H_MAX_TASKS][32];

    (void)h;
    for (size_t i = 0; i < a->n_labels; i++) {
        lbl[i] = (Label)PB_LABEL_INIT;
        lbl[i].key = a->labels[i][0];
        lbl[i].value = a->labels[i][1];
        lp[i] = &lbl[i];
    }
    for (size_t i = 0; i < a->n_tasks; i++) {
        h_status_of(&a->tasks[i], &st[i], pms[i], pp[i], containers[i]);
        stp[i] = &st[i];
    }
    res.nano_cpus = 4000000000;
    res.memory_bytes = 8ll << 30;
    r.name = a->name;
    r.address = a->address;
    r.gateway = (char *)"172.17.0.1";
    r.n_labels = a->n_labels;
    r.labels = lp;
    r.resources = &res;
    r.engine_version = (char *)"fake";
    r.agent_version = (char *)"test";
    r.n_tasks = a->n_tasks;
    r.tasks = stp;
    env.id = 1;
    env.msg_case = MSG_NODE_REGISTER;
    env.node_register = &r;
    assert_int_equal(conn_send(a->conn, &env), 0);
}

static void h_seen_add(harness_t *h, h_agent_t *a, const Assignment *as)
{
    for (size_t i = 0; i < h->n_seen; i++) {
        if (strcmp(h->seen[i].id, as->task_id) == 0) {
            h->seen[i].told_stop |= as->desired_state != DESIRED_RUNNING;
            return;
        }
    }
    assert_true(h->n_seen < H_MAX_SEEN);
    snprintf(h->seen[h->n_seen].id, sizeof(h->seen[0].id), "%s", as->task_id);
    snprintf(h->seen[h->n_seen].service, sizeof(h->seen[0].service), "%s", as->service_name);
    h->seen[h->n_seen].slot = as->slot;
    h->seen[h->n_seen].spec_version = as->spec_version;
    h->seen[h->n_seen].agent = a->index;
    h->seen[h->n_seen].told_stop = as->desired_state != DESIRED_RUNNING;
    h->n_seen++;
}

static const Assignment *h_set_find(const Assignments *set, const char *id)
{
    for (size_t i = 0; set && i < set->n_tasks; i++)
        if (strcmp(set->tasks[i]->task_id, id) == 0)
            return set->tasks[i];
    return NULL;
}

static int h_eps_has(const Endpoints *eps, const char *task_id)
{
    for (size_t i = 0; eps && i < eps->n_services; i++)
        for (size_t k = 0; k < eps->services[i]->n_backends; k++)
            if (strcmp(eps->services[i]->backends[k]->task_id, task_id) == 0)
                return 1;
    return 0;
}

/* The pushed assignment is committed: its task's row is in state.db with
 * this desired state, or a later one (desired states only move away from
 * running). */
static void h_check_committed(harness_t *h, h_agent_t *a, const Assignment *as)
{
    sqlite3_stmt *st;
    int rc, desired = -1;

    if (!h->db)
        return;
    if (sqlite3_prepare_v2(h->db, "SELECT desired FROM tasks WHERE id = ?1", -1, &st, NULL) !=
        SQLITE_OK) {
        h_violation(h, "state.db: %s", sqlite3_errmsg(h->db));
        return;
    }
    sqlite3_bind_text(st, 1, as->task_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        desired = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (desired < 0)
        h_violation(h, "%s: task %s (%s.%u) pushed before it was committed", a->name,
                    as->task_id, as->service_name, as->slot);
    else if (as->desired_state != DESIRED_RUNNING && desired == DESIRED_RUNNING)
        h_violation(h, "%s: task %s pushed with desired state %d, committed as running",
                    a->name, as->task_id, as->desired_state);
    else
        h->committed_checks++;
}

static struct h_value *h_agent_value(h_agent_t *a, const char *id)
{
    for (size_t i = 0; i < a->n_values; i++)
        if (strcmp(a->values[i].id, id) == 0)
            return &a->values[i];
    return NULL;
}

static void h_agent_on_value(harness_t *h, h_agent_t *a, const SecretData *d)
{
    struct h_value *v = h_agent_value(a, d->id);

    a->n_values_received++;
    if (!v && a->n_values == H_MAX_VALUES) {
        h_violation(h, "%s: more than %d values", a->name, H_MAX_VALUES);
        return;
    }
    if (!v)
        v = &a->values[a->n_values++];
    snprintf(v->id, sizeof(v->id), "%s", d->id);
    v->len = d->data.len < sizeof(v->data) ? d->data.len : sizeof(v->data) - 1;
    memcpy(v->data, d->data.data, v->len);
    v->data[v->len] = '\0';
}

/* Every secret and config of the set came before it; then those that no
 * assignment uses are dropped, as skiff-agent drops them. */
static void h_agent_check_values(harness_t *h, h_agent_t *a, const Assignments *set)
{
    size_t kept = 0;

    for (size_t i = 0; i < set->n_tasks; i++) {
        const ServiceSpec *sp = set->tasks[i]->spec;
        for (size_t k = 0; k < sp->n_secrets + sp->n_configs; k++) {
            const SecretRef *r = k < sp->n_secrets ? sp->secrets[k]
                                                   : sp->configs[k - sp->n_secrets];
            if (!h_agent_value(a, r->id))
                h_violation(h, "%s: %s (%s) used by task %s before its value came", a->name,
                            r->name, r->id, set->tasks[i]->task_id);
        }
    }
    for (size_t v = 0; v < a->n_values; v++) {
        int used = 0;
        for (size_t i = 0; i < set->n_tasks && !used; i++) {
            const ServiceSpec *sp = set->tasks[i]->spec;
            for (size_t k = 0; k < sp->n_secrets + sp->n_configs && !used; k++)
                used = strcmp(k < sp->n_secrets ? sp->secrets[k]->id
                                                : sp->configs[k - sp->n_secrets]->id,
                              a->values[v].id) == 0;
        }
        if (used)
            a->values[kept++] = a->values[v];
    }
    a->n_values = kept;
}

static void h_agent_on_assignments(harness_t *h, h_agent_t *a, const Assignments *set)
{
    const h_task_t *changed[H_MAX_TASKS];
    size_t n_changed = 0, keep = 0;

    for (size_t i = 0; i < set->n_tasks; i++)
        h_check_committed(h, a, set->tasks[i]);
    h_agent_check_values(h, a, set);

    if (a->set && set->version <= a->set->version)
        h_violation(h, "%s: assignments version %llu after %llu", a->name,
                    (unsigned long long)set->version, (unsigned long long)a->set->version);
    /* A task told to stop has left the endpoints already: the controller
     * pushes Endpoints before Assignments. */
    for (size_t i = 0; i < set->n_tasks; i++) {
        const Assignment *as = set->tasks[i];
        const Assignment *before = h_set_find(a->set, as->task_id);
        if (as->desired_state == DESIRED_RUNNING ||
            (before && before->desired_state != DESIRED_RUNNING))
            continue;
        if (h_eps_has(a->eps, as->task_id))
            h_violation(h, "%s: task %s told to stop while still a backend", a->name,
                        as->task_id);
        else
            h->leave_checks++;
    }
    pb_free(a->set);
    a->set = pb_dup(set);
    assert_non_null(a->set);
    a->n_sets++;
    for (size_t i = 0; i < set->n_tasks; i++) {
        const Assignment *as = set->tasks[i];
        h_task_t *t = h_agent_task(a, as->task_id);

        h_seen_add(h, a, as);
        if (!t) {
            if (as->desired_state != DESIRED_RUNNING)
                continue; /* nothing of it here: nothing to stop */
            assert_true(a->n_tasks < H_MAX_TASKS);
            t = &a->tasks[a->n_tasks++];
            memset(t, 0, sizeof(*t));
            snprintf(t->id, sizeof(t->id), "%s", as->task_id);
            snprintf(t->service, sizeof(t->service), "%s", as->service_name);
            snprintf(t->image, sizeof(t->image), "%s", as->spec->image);
            t->slot = as->slot;
            t->spec_version = as->spec_version;
            t->desired = as->desired_state;
            t->state = TASK_ASSIGNED;
            for (size_t p = 0; p < as->spec->n_ports + as->spec->n_expose && p < H_MAX_PORTS; p++) {
                t->targets[p] = p < as->spec->n_ports ? as->spec->ports[p]->target
                                                      : as->spec->expose[p - as->spec->n_ports];
                t->host_ports[p] = h->next_host_port++;
                t->n_ports++;
            }
            if (a->manual)
                continue;
            t->state = TASK_RUNNING;
            t->health = h_spec_has_check(as->spec) ? HEALTH_HEALTHY : HEALTH_NONE;
            if (h->policy)
                h->policy(h, a, as, t);
            changed[n_changed++] = t;
            continue;
        }
        t->desired = as->desired_state;
        if (a->manual || as->desired_state == DESIRED_RUNNING || h_terminal(t->state))
            continue;
        t->state = as->desired_state == DESIRED_REMOVE ? TASK_REMOVED : TASK_SHUTDOWN;
        t->health = HEALTH_NONE;
        changed[n_changed++] = t;
    }
    if (n_changed)
        h_agent_send_report(h, a, changed, n_changed, 0);
    /* Containers of tasks that left the set are removed. */
    for (size_t i = 0; i < a->n_tasks; i++)
        if (h_set_find(set, a->tasks[i].id))
            a->tasks[keep++] = a->tasks[i];
    a->n_tasks = keep;
}

static void h_agent_on_endpoints(harness_t *h, h_agent_t *a, const Endpoints *eps)
{
    if (a->eps && eps->version < a->eps->version)
        h_violation(h, "%s: endpoints version %llu after %llu", a->name,
                    (unsigned long long)eps->version, (unsigned long long)a->eps->version);
    pb_free(a->eps);
    a->eps = pb_dup(eps);
    assert_non_null(a->eps);
    a->n_eps++;
}

static int h_agent_on_message(conn_t *c, Envelope *env)
{
    h_agent_t *a = conn_data(c);
    harness_t *h = a->h;

    if (a->deaf && (env->msg_case == MSG_ASSIGNMENTS || env->msg_case == MSG_ENDPOINTS)) {
        wire_free(env);
        return 0;
    }
    switch (env->msg_case) {
    case MSG_NODE_JOIN_REPLY:
        h_agent_on_joined(h, a, env);
        break;
    case MSG_CERT_ISSUED:
    case MSG_CA_UPDATE:
        break;
    case MSG_HELLO_REPLY:
        a->hello_ok = 1;
        if (!a->no_register)
            h_agent_register(h, a);
        break;
    case MSG_NODE_REGISTERED:
        a->registered = 1;
        snprintf(a->node_id, sizeof(a->node_id), "%s", env->node_registered->node_id);
        break;
    case MSG_ERROR:
        a->last_error = env->error->code;
        snprintf(a->last_error_msg, sizeof(a->last_error_msg), "%s", env->error->message);
        break;
    case MSG_ASSIGNMENTS:
        h_agent_on_assignments(h, a, env->assignments);
        break;
    case MSG_ENDPOINTS:
        h_agent_on_endpoints(h, a, env->endpoints);
        break;
    case MSG_LOGS_OPEN:
        if (a->n_logs_open < sizeof(a->logs_open) / sizeof(a->logs_open[0]))
            a->logs_open[a->n_logs_open++] = pb_dup(env->logs_open);
        break;
    case MSG_LOGS_CLOSE:
        a->n_logs_close++;
        break;
    case MSG_SECRET_DATA:
        h_agent_on_value(h, a, env->secret_data);
        break;
    default:
        h_violation(h, "%s: unexpected %s", a->name, wire_msg_name(env->msg_case));
        break;
    }
    if (h->on_push)
        h->on_push(h, a, env);
    wire_free(env);
    return 0;
}

/* The node certificate of a join: the agent's context from now on. */
static void h_agent_on_joined(harness_t *h, h_agent_t *a, const Envelope *env)
{
    const NodeJoinReply *r = env->node_join_reply;
    tls_policy_t policy = { .server = 0, .peer_cert = TLS_PEER_REQUIRED,
                            .peer_role = PKI_ROLE_CONTROLLER };
    tls_creds_t creds = { .key = a->join_key };
    STACK_OF(X509) *chain;
    char err[256];

    (void)h;
    if (!a->joining || env->id != a->join_id) {
        h_violation(h, "%s: an unasked node_join_reply", a->name);
        return;
    }
    chain = pki_chain_parse(r->certificate.data, r->certificate.len, err, sizeof(err));
    policy.roots = pki_chain_parse(r->ca.data, r->ca.len, err, sizeof(err));
    if (!chain || !policy.roots)
        fail_msg("%s: the join reply: %s", a->name, err);
    creds.cert = sk_X509_shift(chain);
    creds.chain = chain;
    SSL_CTX_free(a->tls);
    if (!(a->tls = tls_ctx_new(&policy, &creds, err, sizeof(err))))
        fail_msg("%s: the node certificate: %s", a->name, err);
    X509_free(creds.cert);
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(policy.roots, X509_free);
    snprintf(a->node_id, sizeof(a->node_id), "%s", r->node_id);
    a->joined = 1;
    conn_close(a->conn, 0);
}

static void h_agent_send_join(h_agent_t *a, conn_t *c)
{
    Envelope env = PB_ENVELOPE_INIT;
    NodeJoin j = PB_NODE_JOIN_INIT;
    char *csr = NULL;
    size_t n = 0;

    EVP_PKEY_free(a->join_key);
    a->join_key = pki_key_new();
    assert_non_null(a->join_key);
    assert_int_equal(pki_csr_new(a->join_key, a->name, &csr, &n), 0);
    j.token = a->hello_token;
    j.csr.data = (uint8_t *)csr;
    j.csr.len = n;
    j.name = a->name;
    a->join_id = 77;
    env.id = a->join_id;
    env.msg_case = MSG_NODE_JOIN;
    env.node_join = &j;
    assert_int_equal(conn_send(c, &env), 0);
    free(csr);
}

static void h_agent_on_connect(conn_t *c, int status)
{
    h_agent_t *a = conn_data(c);

    if (status)
        return; /* on_close follows */
    if (a->joining) {
        h_agent_send_join(a, c);
        return;
    }
    if (a->no_hello) {
        Envelope env = PB_ENVELOPE_INIT;
        ServiceGet get = PB_SERVICE_GET_INIT;
        get.service = (char *)"web";
        env.id = 1;
        env.msg_case = MSG_SERVICE_GET;
        env.service_get = &get;
        assert_int_equal(conn_send(c, &env), 0);
        return;
    }
    h_send_hello(a->h, c, a->hello_token, a->hello_role);
}

static void h_client_on_connect(conn_t *c, int status)
{
    harness_t *h = conn_data(c);

    if (status == 0)
        h_send_hello(h, c, h->admin_token, ROLE_CLIENT);
}

static void h_agent_on_close(conn_t *c, int err)
{
    h_agent_t *a = conn_data(c);

    (void)err;
    if (a->conn == c) {
        a->conn = NULL;
        a->registered = 0;
        a->hello_ok = 0;
        a->joining = 0;
        a->n_values = 0; /* a new connection carries them again */
    }
    a->closed++;
}

static const conn_ops_t h_agent_ops = {
    .on_message = h_agent_on_message,
    .on_connect = h_agent_on_connect,
    .on_close = h_agent_on_close,
};

/* Opens a's connection: with its certificate, or (joining, raw) none. */
static void h_open(harness_t *h, h_agent_t *a, const conn_ops_t *ops)
{
    assert_null(a->conn);
    a->conn = conn_create(&h->loop, ops, NULL, a);
    assert_non_null(a->conn);
    assert_int_equal(conn_use_tls(a->conn, a->tls && !a->joining && !a->no_register
                                               ? a->tls : h->pin_tls), 0);
    assert_int_equal(conn_connect(a->conn, h->hostport), 0);
}

static void h_send_hello(harness_t *h, conn_t *c, const char *token, int role)
{
    Envelope env = PB_ENVELOPE_INIT;
    Hello hello = PB_HELLO_INIT;

    (void)h;
    hello.role = role;
    hello.token = (char *)token;
    hello.version = (char *)"test";
    env.id = 1;
    env.msg_case = MSG_HELLO;
    env.hello = &hello;
    assert_int_equal(conn_send(c, &env), 0);
}

int h_agent_join(harness_t *h, h_agent_t *a, const char *secret)
{
    int closed = a->closed;

    snprintf(a->hello_token, sizeof(a->hello_token), "%s", secret);
    a->joining = 1;
    a->joined = 0;
    a->last_error = 0;
    a->no_hello = a->no_register = 0;
    h_open(h, a, &h_agent_ops);
    H_RUN_UNTIL(h, a->closed != closed, 3000);
    a->joining = 0;
    return a->joined ? 0 : a->last_error ? a->last_error : ERR_UNSPECIFIED;
}

int h_agent_connect_try(harness_t *h, h_agent_t *a)
{
    int closed;

    if (!a->tls && h_agent_join(h, a, h->join_token) != 0)
        return 0;
    a->hello_role = ROLE_AGENT;
    a->hello_token[0] = '\0';
    a->no_hello = a->no_register = 0;
    closed = a->closed;
    h_open(h, a, &h_agent_ops);
    H_RUN_UNTIL(h, a->registered || a->closed != closed, 3000);
    return a->registered;
}

void h_agent_connect(harness_t *h, h_agent_t *a)
{
    assert_true(h_agent_connect_try(h, a));
}

void h_agent_forget(h_agent_t *a)
{
    SSL_CTX_free(a->tls);
    a->tls = NULL;
    EVP_PKEY_free(a->join_key);
    a->join_key = NULL;
    a->joined = 0;
}

void h_agent_connect_raw(harness_t *h, h_agent_t *a, const char *token, int role)
{
    int closed = a->closed;

    snprintf(a->hello_token, sizeof(a->hello_token), "%s", token ? token : "");
    a->hello_role = role;
    a->no_hello = token == NULL;
    a->no_register = 1;
    a->joining = 0;
    a->last_error = 0;
    h_open(h, a, &h_agent_ops);
    H_RUN_UNTIL(h, a->hello_ok || a->last_error || a->closed != closed, 3000);
}

void h_agent_disconnect(harness_t *h, h_agent_t *a)
{
    if (!a->conn)
        return;
    conn_close(a->conn, 0);
    H_RUN_UNTIL(h, !a->conn, 3000);
}

void h_agent_drop_last(harness_t *h)
{
    h_agent_t *a;

    assert_true(h->n_agents > 0);
    a = &h->agents[h->n_agents - 1];
    h_agent_disconnect(h, a);
    h_agent_clear(a);
    h_agent_forget(a);
    h->n_agents--;
}

size_t h_agent_count(const h_agent_t *a, const char *service, DesiredState desired)
{
    size_t n = 0;

    for (size_t i = 0; a->set && i < a->set->n_tasks; i++)
        n += strcmp(a->set->tasks[i]->service_name, service) == 0 &&
             a->set->tasks[i]->desired_state == desired;
    return n;
}

size_t h_agent_running(const h_agent_t *a, const char *service)
{
    size_t n = 0;

    for (size_t i = 0; a->set && i < a->set->n_tasks; i++) {
        const Assignment *as = a->set->tasks[i];
        const h_task_t *t = h_agent_task((h_agent_t *)a, as->task_id);
        n += strcmp(as->service_name, service) == 0 && as->desired_state == DESIRED_RUNNING &&
             t && t->state == TASK_RUNNING;
    }
    return n;
}

int h_agent_has(const h_agent_t *a, const char *task_id)
{
    return h_set_find(a->set, task_id) != NULL;
}

static const ServiceEndpoints *h_eps_service(const Endpoints *eps, const char *service)
{
    for (size_t i = 0; eps && i < eps->n_services; i++)
        if (strcmp(eps->services[i]->service_name, service) == 0)
            return eps->services[i];
    return NULL;
}

int h_agent_backends(const h_agent_t *a, const char *service)
{
    const ServiceEndpoints *se = h_eps_service(a->eps, service);

    return se ? (int)se->n_backends : -1;
}

int h_agent_backend(const h_agent_t *a, const char *service, const char *task_id)
{
    const ServiceEndpoints *se = h_eps_service(a->eps, service);

    for (size_t k = 0; se && k < se->n_backends; k++)
        if (strcmp(se->backends[k]->task_id, task_id) == 0)
            return 1;
    return 0;
}

/* ------------------------------------------------------------ the client */

static int h_client_on_message(conn_t *c, Envelope *env)
{
    harness_t *h = conn_data(c);

    if (env->msg_case == MSG_HELLO_REPLY && env->id == 1 && !h->client_hello) {
        h->client_hello = 1;
        wire_free(env);
        return 0;
    }
    if (h->n_inbox == H_MAX_INBOX) {
        h_violation(h, "client inbox full");
        wire_free(env);
        return 0;
    }
    h->inbox[h->n_inbox++] = env;
    return 0;
}

static void h_client_on_close(conn_t *c, int err)
{
    harness_t *h = conn_data(c);

    (void)err;
    if (h->client == c) {
        h->client = NULL;
        h->client_hello = 0;
    }
    h->client_closed++;
}

static const conn_ops_t h_client_ops = {
    .on_message = h_client_on_message,
    .on_connect = h_client_on_connect,
    .on_close = h_client_on_close,
};

void h_client_connect(harness_t *h)
{
    assert_null(h->client);
    h->client = conn_create(&h->loop, &h_client_ops, NULL, h);
    assert_non_null(h->client);
    assert_int_equal(conn_use_tls(h->client, h->pin_tls), 0);
    assert_int_equal(conn_connect(h->client, h->hostport), 0);
    if (h->next_id < 1)
        h->next_id = 1;
    H_RUN_UNTIL(h, h->client_hello || !h->client, 3000);
    assert_true(h->client_hello);
}

Envelope *h_take(harness_t *h, uint64_t id)
{
    for (size_t i = 0; i < h->n_inbox; i++) {
        if (h->inbox[i]->id == id) {
            Envelope *env = h->inbox[i];
            memmove(&h->inbox[i], &h->inbox[i + 1], (h->n_inbox - i - 1) * sizeof(h->inbox[0]));
            h->n_inbox--;
            return env;
        }
    }
    return NULL;
}

Envelope *h_call(harness_t *h, Envelope *req)
{
    uint64_t deadline = uv_hrtime() / 1000000 + H_CALL_TIMEOUT_MS;
    Envelope *reply;

    if (!h->client)
        h_client_connect(h);
    req->id = ++h->next_id;
    assert_int_equal(conn_send(h->client, req), 0);
    while (!(reply = h_take(h, req->id))) {
        if (uv_hrtime() / 1000000 > deadline)
            fail_msg("no reply to %s within %d ms", wire_msg_name(req->msg_case),
                     H_CALL_TIMEOUT_MS);
        if (!h->client)
            fail_msg("the client's connection closed waiting for a reply to %s",
                     wire_msg_name(req->msg_case));
        h_run_once(h);
    }
    return reply;
}

ServiceSpec *h_spec(const char *name, const char *image, uint32_t replicas)
{
    ServiceSpec *spec = spec_new();

    assert_non_null(spec);
    pb_set_str(&spec->name, name);
    pb_set_str(&spec->image, image);
    spec->replicas = replicas;
    spec->update->monitor_ms = 50;
    spec->rollback->monitor_ms = 50;
    spec->stop_grace_period_ms = 0;
    spec->drain_delay_ms = 0;
    return spec;
}

void h_spec_port(ServiceSpec *spec, uint32_t published, uint32_t target)
{
    PortConfig *pc = PB_NEW(PortConfig);

    assert_non_null(pc);
    pc->published = published;
    pc->target = target;
    pb_set_str(&pc->protocol, "tcp");
    assert_int_equal(pb_push_msg(&spec->n_ports, (void ***)&spec->ports, pc), 0);
}

#define H_REQUEST(field, CASE, msg)                                            \
    do {                                                                       \
        Envelope env_ = PB_ENVELOPE_INIT;                                      \
        env_.msg_case = CASE;                                                  \
        env_.field = &(msg);                                                   \
        return h_call(h, &env_);                                               \
    } while (0)

Envelope *h_service_create(harness_t *h, const ServiceSpec *spec)
{
    ServiceCreate m = PB_SERVICE_CREATE_INIT;

    m.spec = (ServiceSpec *)spec;
    H_REQUEST(service_create, MSG_SERVICE_CREATE, m);
}

Envelope *h_service_update(harness_t *h, const char *service, const ServiceSpec *spec,
                           uint64_t version)
{
    ServiceUpdate m = PB_SERVICE_UPDATE_INIT;

    m.service = (char *)service;
    m.spec = (ServiceSpec *)spec;
    m.version = version;
    H_REQUEST(service_update, MSG_SERVICE_UPDATE, m);
}

Envelope *h_service_scale(harness_t *h, const char *service, uint32_t replicas)
{
    ServiceScale m = PB_SERVICE_SCALE_INIT;

    m.service = (char *)service;
    m.replicas = replicas;
    H_REQUEST(service_scale, MSG_SERVICE_SCALE, m);
}

Envelope *h_service_remove(harness_t *h, const char *service)
{
    ServiceRemove m = PB_SERVICE_REMOVE_INIT;

    m.service = (char *)service;
    H_REQUEST(service_remove, MSG_SERVICE_REMOVE, m);
}

Envelope *h_service_rollback(harness_t *h, const char *service)
{
    ServiceRollback m = PB_SERVICE_ROLLBACK_INIT;

    m.service = (char *)service;
    H_REQUEST(service_rollback, MSG_SERVICE_ROLLBACK, m);
}

Envelope *h_service_get(harness_t *h, const char *service)
{
    ServiceGet m = PB_SERVICE_GET_INIT;

    m.service = (char *)service;
    H_REQUEST(service_get, MSG_SERVICE_GET, m);
}

Envelope *h_service_list(harness_t *h)
{
    ServiceList m = PB_SERVICE_LIST_INIT;

    H_REQUEST(service_list, MSG_SERVICE_LIST, m);
}

Envelope *h_task_list(harness_t *h, const char *service, const char *node, int all)
{
    TaskList m = PB_TASK_LIST_INIT;

    m.service = (char *)(service ? service : "");
    m.node = (char *)(node ? node : "");
    m.all = all;
    H_REQUEST(task_list, MSG_TASK_LIST, m);
}

Envelope *h_node_list(harness_t *h)
{
    NodeList m = PB_NODE_LIST_INIT;

    H_REQUEST(node_list, MSG_NODE_LIST, m);
}

Envelope *h_node_update(harness_t *h, const char *node, NodeAvailability availability)
{
    NodeUpdate m = PB_NODE_UPDATE_INIT;

    m.node = (char *)node;
    m.availability = availability;
    H_REQUEST(node_update, MSG_NODE_UPDATE, m);
}

Envelope *h_node_labels(harness_t *h, const char *node, const char *add, const char *rm)
{
    NodeUpdate m = PB_NODE_UPDATE_INIT;
    char addbuf[256], rmbuf[256], *save = NULL, *tok;
    Envelope *r;

    m.node = (char *)node;
    m.keep_availability = 1;
    snprintf(addbuf, sizeof(addbuf), "%s", add ? add : "");
    snprintf(rmbuf, sizeof(rmbuf), "%s", rm ? rm : "");
    for (tok = strtok_r(addbuf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        Label *l = PB_NEW(Label);
        assert_non_null(l);
        if (eq)
            *eq = '\0';
        assert_int_equal(pb_set_str(&l->key, tok), 0);
        assert_int_equal(pb_set_str(&l->value, eq ? eq + 1 : ""), 0);
        assert_int_equal(pb_push_msg(&m.n_label_add, (void ***)&m.label_add, l), 0);
    }
    save = NULL;
    for (tok = strtok_r(rmbuf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        assert_int_equal(pb_push_str(&m.n_label_rm, &m.label_rm, tok), 0);
    {
        Envelope env = PB_ENVELOPE_INIT;
        env.msg_case = MSG_NODE_UPDATE;
        env.node_update = &m;
        r = h_call(h, &env);
    }
    for (size_t i = 0; i < m.n_label_add; i++)
        pb_free(m.label_add[i]);
    free(m.label_add);
    for (size_t i = 0; i < m.n_label_rm; i++)
        free(m.label_rm[i]);
    free(m.label_rm);
    return r;
}

Envelope *h_node_remove(harness_t *h, const char *node, int force)
{
    NodeRemove m = PB_NODE_REMOVE_INIT;

    m.node = (char *)node;
    m.force = force;
    H_REQUEST(node_remove, MSG_NODE_REMOVE, m);
}

void h_expect_error(Envelope *env, ErrorCode code, const char *text)
{
    if (env->msg_case != MSG_ERROR)
        fail_msg("expected an error (%d, \"%s\"), got %s", code, text,
                 wire_msg_name(env->msg_case));
    if (env->error->code != code || !strstr(env->error->message, text))
        fail_msg("expected error %d with \"%s\", got %d: \"%s\"", code, text, env->error->code,
                 env->error->message);
    wire_free(env);
}

Envelope *h_expect(Envelope *env, int msg_case)
{
    if (env->msg_case != (unsigned)msg_case)
        fail_msg("expected %s, got %s%s%s", wire_msg_name(msg_case), wire_msg_name(env->msg_case),
                 env->msg_case == MSG_ERROR ? ": " : "",
                 env->msg_case == MSG_ERROR ? env->error->message : "");
    return env;
}

/* ---------------------------------------------------------------- model */

service_t *h_service(harness_t *h, const char *name)
{
    return h->ctl ? model_service_by_name(&h->ctl->model, name) : NULL;
}

size_t h_desired_running(harness_t *h, const char *name)
{
    service_t *svc = h_service(h, name);
    size_t n = 0;
    task_t *t;

    if (!svc)
        return 0;
    DL_FOREACH2(svc->tasks, t, svc_next)
        n += t->pb->desired_state == DESIRED_RUNNING;
    return n;
}

static int h_task_current(const service_t *svc, const task_t *t)
{
    const ServiceSpec *spec = model_service_spec(svc, t->pb->spec_version);

    return spec && spec_same_but_replicas(spec, svc->pb->spec);
}

size_t h_ready(harness_t *h, const char *name)
{
    service_t *svc = h_service(h, name);
    size_t n = 0;
    task_t *t;

    if (!svc)
        return 0;
    DL_FOREACH2(svc->tasks, t, svc_next)
        n += t->pb->desired_state == DESIRED_RUNNING && model_task_ready(t) &&
             h_task_current(svc, t) && t->node && t->node->pb->state == NODE_READY;
    return n;
}

size_t h_max_per_slot(harness_t *h, const char *name)
{
    service_t *svc = h_service(h, name);
    size_t counts[1024] = { 0 }, max = 0;
    task_t *t;

    if (!svc)
        return 0;
    DL_FOREACH2(svc->tasks, t, svc_next) {
        if (t->pb->desired_state != DESIRED_RUNNING || t->pb->slot >= 1024)
            continue;
        if (++counts[t->pb->slot] > max)
            max = counts[t->pb->slot];
    }
    return max;
}

int h_converged(harness_t *h, const char *name)
{
    service_t *svc = h_service(h, name);
    UpdateState u;

    if (!svc)
        return 0;
    u = svc->pb->update_status->state;
    if (u == UPDATE_UPDATING || u == UPDATE_ROLLBACK_STARTED)
        return 0;
    return h_desired_running(h, name) == svc->pb->spec->replicas &&
           h_ready(h, name) == svc->pb->spec->replicas;
}

size_t h_seen_count(const harness_t *h, const char *service, uint32_t slot, uint64_t version)
{
    size_t n = 0;

    for (size_t i = 0; i < h->n_seen; i++)
        n += strcmp(h->seen[i].service, service) == 0 && h->seen[i].slot == slot &&
             h->seen[i].spec_version == version;
    return n;
}

/* ------------------------------------------------------------ snapshots */

void h_snapshot_take(harness_t *h, h_snapshot_t *s)
{
    size_t i = 0;

    memset(s, 0, sizeof(*s));
    s->n_services = HASH_COUNT(h->ctl->model.services);
    s->n_tasks = HASH_COUNT(h->ctl->model.tasks);
    s->services = calloc(s->n_services + 1, sizeof(*s->services));
    s->tasks = calloc(s->n_tasks + 1, sizeof(*s->tasks));
    assert_non_null(s->services);
    assert_non_null(s->tasks);
    for (service_t *svc = h->ctl->model.services; svc; svc = svc->hh.next)
        s->services[i++] = pb_dup(svc->pb);
    i = 0;
    for (task_t *t = h->ctl->model.tasks; t; t = t->hh.next)
        s->tasks[i++] = pb_dup(t->pb);
}

void h_snapshot_check(harness_t *h, const h_snapshot_t *s)
{
    model_t *m = &h->ctl->model;

    assert_int_equal(HASH_COUNT(m->services), s->n_services);
    assert_int_equal(HASH_COUNT(m->tasks), s->n_tasks);
    for (size_t i = 0; i < s->n_services; i++) {
        service_t *svc = model_service_by_id(m, s->services[i]->id);
        if (!svc)
            fail_msg("service %s is gone", s->services[i]->spec->name);
        if (!pb_equal(svc->pb, s->services[i]))
            fail_msg("service %s differs", s->services[i]->spec->name);
    }
    for (size_t i = 0; i < s->n_tasks; i++) {
        task_t *t = model_task_by_id(m, s->tasks[i]->id);
        if (!t)
            fail_msg("task %s (%s.%u) is gone", s->tasks[i]->id, s->tasks[i]->service_name,
                     s->tasks[i]->slot);
        if (!pb_equal(t->pb, s->tasks[i]))
            fail_msg("task %s (%s.%u) differs", s->tasks[i]->id, s->tasks[i]->service_name,
                     s->tasks[i]->slot);
        assert_string_equal(t->svc->pb->id, s->tasks[i]->service_id);
        /* Linked to its node; unlinked only from a node that is gone (its
         * history keeps the name). */
        if (t->node)
            assert_string_equal(t->node->pb->id, s->tasks[i]->node_id);
        else if (*s->tasks[i]->node_id)
            assert_null(model_node_by_id(m, s->tasks[i]->node_id));
    }
}

void h_snapshot_free(h_snapshot_t *s)
{
    for (size_t i = 0; i < s->n_services; i++)
        pb_free(s->services[i]);
    for (size_t i = 0; i < s->n_tasks; i++)
        pb_free(s->tasks[i]);
    free(s->services);
    free(s->tasks);
}
