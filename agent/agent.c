/* agent: see agent.h.
 *
 * Three things move independently and meet in agent_try_register(): the
 * engine (ready once ping, /info and the gateway answered), the controller
 * connection (Hello answered with the cluster id), and the runner (its
 * first listing for that cluster done). Registration goes when all three
 * are there, on every (re)connection.
 *
 * The identity (key, certificate chain, roots, and the TLS context made of
 * them) is replaced whole by agent_install(): after the join, a renewal,
 * or a CaUpdate. Connections under way keep theirs. What changed is saved
 * to the state dir in the thread pool, one save at a time.
 */
#include "agent.h"
#include "conn.h"
#include "docker.h"
#include "engine.h"
#include "errors.h"
#include "httpc.h"
#include "httpd.h"
#include "lb.h"
#include "log.h"
#include "logstream.h"
#include "metrics.h"
#include "pbutil.h"
#include "prom.h"
#include "runner.h"
#include "secrets.h"
#include "stats.h"
#include "tls.h"
#include "token.h"
#include "wire.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/time.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AGENT_BACKOFF_MIN_MS 100
#define AGENT_BACKOFF_MAX_MS 2000
#define AGENT_ENGINE_BACKOFF_MIN_MS 250
#define AGENT_ENGINE_BACKOFF_MAX_MS 5000
#define AGENT_HELLO_TIMEOUT_MS 10000
#define AGENT_MAX_PENDING ((size_t)16 << 20)
#define AGENT_LOGS_BUDGET ((size_t)4 << 20)  /* log data waits behind no more than this */
#define AGENT_MAX_SERVICES 100000
#define AGENT_MAX_CONTROLLERS 16
/* A leader on a shared store pings every second: this long without a
 * frame, it stalled (stopped, cut off), and another may lead. */
#define AGENT_LEADER_SILENCE_MS 4000
#define AGENT_RENEW_RETRY_MS 60000       /* a refused renewal is tried again after this */

enum { ENGINE_PING, ENGINE_INFO, ENGINE_GATEWAY, ENGINE_READY };

struct agent {
    uv_loop_t *loop;
    char *name, *advertise, *token, *socket;
    /* the controllers (--controller A,B,C): tried in turn; a Redirect names
     * the leader, tried first next */
    char controllers[AGENT_MAX_CONTROLLERS][WIRE_HOSTPORT_MAX];
    size_t n_controllers;
    size_t current;             /* the one in the list tried last */
    size_t tried;               /* in this round, without a registration */
    char redirect[WIRE_HOSTPORT_MAX];  /* the leader a follower named, "" none */
    char controller[WIRE_HOSTPORT_MAX]; /* the one connected or connecting to */
    int redirected;             /* the connection ends on a Redirect */
    int pinged;                 /* the controller pings: its silence is watched */
    size_t redirects;           /* followed in a row, without a registration */
    char *token_file;           /* NULL: the token came from the environment */
    Label **labels;             /* from --label, sent at registration */
    size_t n_labels;
    uint64_t heartbeat_ms;
    unsigned lb_threads;        /* lb_config_t.threads */
    char *metrics_listen;       /* NULL: no /metrics */

    httpc_t *http;
    httpd_t *metrics;
    stats_t *stats;
    engine_t *engine;
    runner_t *runner;
    secrets_t *secrets;         /* values of secrets and configs, for the runner */
    lb_t *lb;
    logstreams_t *logs;
    Endpoints *endpoints;       /* the last set pushed, for a balancer made later */
    uint64_t endpoints_version;

    int engine_state;           /* ENGINE_PING .. ENGINE_READY */
    int engine_failures;
    uint64_t engine_backoff_ms;
    engine_info_t info;
    char api[16];
    char gateway[64];
    uv_timer_t engine_timer;

    /* identity (agent_install) */
    char *state_dir;
    EVP_PKEY *key;
    STACK_OF(X509) *chain;      /* the node certificate first */
    char cert_id[PKI_NAME_MAX + 1], cert_cluster[PKI_NAME_MAX + 1];
    int64_t cert_not_after_ms;
    SSL_CTX *tls;               /* for the next connections; NULL: join first */
    SSL_CTX *join_tls;          /* pinned on the join token's digest */
    SSL_CTX *http_tls;          /* HTTPS for /metrics, or NULL */
    char join_pin[PKI_DIGEST_HEX + 1];
    int joining;                /* this connection joins */
    int joined_now;             /* reconnect at once, with the certificate */
    uint64_t join_id;
    EVP_PKEY *join_key;
    uv_timer_t renew_timer;
    EVP_PKEY *renew_key;        /* a renewal under way */
    uint64_t renew_id;
    int renew_due;              /* renew once registered */
    /* saving to the state dir */
    uv_work_t save_work;
    int save_busy;
    agent_state_t save, save_next;
    int save_rc;
    char save_err[256];

    conn_t *conn;
    int hello_done;
    int register_sent;
    int registered;
    uint64_t register_id;
    uint64_t next_id;
    char cluster[128];
    char node_id[128];
    uint64_t backoff_ms;
    int failures;               /* connection attempts since the last registration */
    uv_timer_t reconnect_timer;
    uv_timer_t heartbeat_timer;
    uv_timer_t flush_timer;

    int started;
    int closing;
    int pending;                /* closes not yet called back */
    void (*close_done)(void *arg);
    void *close_arg;
};

static void agent_connect(agent_t *a);
static void agent_engine_next(agent_t *a);
static void agent_renew(agent_t *a);
static void agent_maybe_done(agent_t *a);

static int64_t agent_wall_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* ------------------------------------------------------------ sending */

static int agent_send(agent_t *a, const Envelope *env)
{
    int rc;

    if (!a->conn)
        return SKIFF_ECLOSED;
    rc = conn_send(a->conn, env);
    if (rc == SKIFF_ELIMIT)
        log_warn("controller connection: the send queue is full; a %s was dropped",
                 wire_msg_name(env->msg_case));
    return rc;
}

static int agent_send_logs(void *arg, const Envelope *env)
{
    agent_t *a = arg;

    if (!a->conn || !a->registered)
        return SKIFF_ECLOSED;
    if (conn_pending(a->conn) > AGENT_LOGS_BUDGET)
        return SKIFF_ELIMIT;
    return conn_send(a->conn, env);
}

static const char *agent_container_of(void *arg, const char *task_id)
{
    agent_t *a = arg;

    return runner_container(a->runner, task_id);
}

static void agent_send_report(agent_t *a, int full)
{
    Envelope env = PB_ENVELOPE_INIT;
    StatusReport sr = PB_STATUS_REPORT_INIT;
    runner_report_t rep;
    LbStats **stats = NULL;
    TaskStats **tstats = NULL;
    size_t n_stats = 0, n_tstats = 0;

    if (!a->registered || runner_report(a->runner, !full, &rep) != 0)
        return;
    if (!full && rep.n == 0)
        return;
    if (full && a->lb && lb_stats(a->lb, &stats, &n_stats) != 0) {
        stats = NULL;
        n_stats = 0;
    }
    if (full && a->stats) {
        stats_sync(a->stats, a->runner);
        if (stats_report(a->stats, &tstats, &n_tstats) != 0)
            n_tstats = 0;
    }
    sr.full = full;
    sr.tasks = rep.tasks;
    sr.n_tasks = rep.n;
    sr.assignments_version = runner_version(a->runner);
    sr.endpoints_version = a->endpoints_version;
    sr.lb_stats = stats;
    sr.n_lb_stats = n_stats;
    sr.stats = tstats;
    sr.n_stats = n_tstats;
    env.msg_case = MSG_STATUS;
    env.status = &sr;
    agent_send(a, &env);
    if (stats)
        lb_stats_free(stats, n_stats);
    if (tstats)
        stats_report_free(tstats, n_tstats);
    runner_report_free(&rep);
}

static void agent_on_flush(uv_timer_t *t)
{
    agent_send_report(t->data, 0);
}

static void agent_on_heartbeat(uv_timer_t *t)
{
    agent_send_report(t->data, 1);
}

/* ------------------------------------------------------------ registration */

static void agent_maybe_start_runner(agent_t *a)
{
    int rc;

    if (a->engine_state != ENGINE_READY || !a->cluster[0] || runner_cluster(a->runner))
        return;
    rc = runner_start(a->runner, a->cluster);
    if (rc)
        log_error("cannot start the task runner: %s", skiff_strerror(rc));
}

static void agent_try_register(agent_t *a)
{
    Envelope env = PB_ENVELOPE_INIT;
    NodeRegister nr = PB_NODE_REGISTER_INIT;
    Resources res = PB_RESOURCES_INIT;
    runner_report_t rep;
    int rc;

    if (!a->conn || !a->hello_done || a->register_sent || a->engine_state != ENGINE_READY ||
        !runner_ready(a->runner))
        return;
    if (runner_report(a->runner, 0, &rep) != 0)
        return;
    res.nano_cpus = a->info.ncpu * 1000000000LL;
    res.memory_bytes = a->info.mem_total;
    nr.name = a->name;
    nr.address = a->advertise;
    nr.gateway = a->gateway;
    nr.labels = a->labels;
    nr.n_labels = a->n_labels;
    nr.resources = &res;
    nr.engine_version = a->info.server_version;
    nr.agent_version = SKIFF_VERSION;
    nr.tasks = rep.tasks;
    nr.n_tasks = rep.n;
    a->register_id = ++a->next_id;
    env.id = a->register_id;
    env.msg_case = MSG_NODE_REGISTER;
    env.node_register = &nr;
    rc = agent_send(a, &env);
    runner_report_free(&rep);
    if (rc) {
        log_warn("cannot send the registration: %s", skiff_strerror(rc));
        conn_close(a->conn, rc);
        return;
    }
    a->register_sent = 1;
    log_debug("registering as %s with %zu task%s", a->name, nr.n_tasks,
              nr.n_tasks == 1 ? "" : "s");
}

/* ------------------------------------------------------------ the runner */

static void agent_on_runner_change(void *arg)
{
    agent_t *a = arg;

    if (a->registered && !a->closing)
        uv_timer_start(&a->flush_timer, agent_on_flush, 0, 0);
}

static void agent_on_runner_ready(void *arg)
{
    agent_try_register(arg);
}

static const runner_ops_t agent_runner_ops = {
    .on_change = agent_on_runner_change,
    .on_ready = agent_on_runner_ready,
};

/* ------------------------------------------------------------ the engine */

static void agent_on_engine_timer(uv_timer_t *t)
{
    agent_engine_next(t->data);
}

static void agent_engine_retry(agent_t *a, const char *what, const engine_result_t *res)
{
    uint64_t wait = a->engine_backoff_ms;

    if (a->engine_failures++ == 0)
        log_warn("the engine does not answer (%s: %s); retrying", what,
                 res && res->message && *res->message ? res->message : "failed");
    else
        log_debug("engine: %s: %s", what, res && res->message ? res->message : "failed");
    a->engine_backoff_ms = wait * 2 > AGENT_ENGINE_BACKOFF_MAX_MS ? AGENT_ENGINE_BACKOFF_MAX_MS
                                                                  : wait * 2;
    uv_timer_start(&a->engine_timer, agent_on_engine_timer, wait, 0);
}

static void agent_engine_ready(agent_t *a)
{
    lb_config_t lbc = { 0 };

    a->engine_state = ENGINE_READY;
    log_info("engine %s (API %s): %" PRId64 " CPUs, %" PRId64 " MiB; bridge gateway %s",
             a->info.server_version, a->api, a->info.ncpu, a->info.mem_total >> 20, a->gateway);
    runner_set_gateway(a->runner, a->gateway);
    lbc.advertise = a->advertise;
    lbc.gateway = a->gateway;
    lbc.threads = a->lb_threads;
    a->lb = lb_create(a->loop, &lbc);
    if (!a->lb)
        log_error("cannot create the load balancer (advertise %s, gateway %s)", a->advertise,
                  a->gateway);
    else if (a->endpoints && lb_apply(a->lb, a->endpoints) != 0)
        log_warn("load balancer: cannot apply the endpoints: out of memory");
    agent_maybe_start_runner(a);
    agent_try_register(a);
}

static void agent_on_engine(void *arg, const engine_result_t *res)
{
    agent_t *a = arg;
    static const char *const what[] = { "ping", "info", "networks/bridge" };

    if (a->closing)
        return;
    if (res->status) {
        agent_engine_retry(a, what[a->engine_state], res);
        return;
    }
    switch (a->engine_state) {
    case ENGINE_PING:
        snprintf(a->api, sizeof(a->api), "%s", res->text ? res->text : "?");
        a->engine_state = ENGINE_INFO;
        break;
    case ENGINE_INFO:
        a->info = *res->info;
        a->engine_state = ENGINE_GATEWAY;
        break;
    case ENGINE_GATEWAY:
        snprintf(a->gateway, sizeof(a->gateway), "%s", res->text ? res->text : "");
        if (a->engine_failures)
            log_info("the engine answers again");
        agent_engine_ready(a);
        return;
    default:
        return;
    }
    agent_engine_next(a);
}

static void agent_engine_next(agent_t *a)
{
    engine_t *e = a->engine;
    int rc;

    switch (a->engine_state) {
    case ENGINE_PING:
        rc = e->ops->ping(e, agent_on_engine, a);
        break;
    case ENGINE_INFO:
        rc = e->ops->info(e, agent_on_engine, a);
        break;
    case ENGINE_GATEWAY:
        rc = e->ops->gateway(e, agent_on_engine, a);
        break;
    default:
        return;
    }
    if (rc) {
        engine_result_t res = { 0 };
        res.status = rc;
        res.message = skiff_strerror(rc);
        agent_engine_retry(a, "request", &res);
    }
}

/* ------------------------------------------------------------ identity */

static void agent_save_work(uv_work_t *w)
{
    agent_t *a = w->data;

    a->save_rc = state_save(a->state_dir, &a->save, a->save_err, sizeof(a->save_err));
}

static void agent_save_kick(agent_t *a);

static void agent_save_done(uv_work_t *w, int status)
{
    agent_t *a = w->data;

    a->save_busy = 0;
    if (status || a->save_rc)
        log_error("cannot save to --state-dir %s: %s", a->state_dir,
                  status ? uv_strerror(status) : a->save_err);
    state_clear(&a->save);
    if (a->closing) {
        if (a->save_next.ca_pem || a->save_next.cert_pem) {
            /* Written at once, from the loop: an agent that closes must not lose its
             * new certificate, and nothing else runs now. */
            char err[256];
            if (state_save(a->state_dir, &a->save_next, err, sizeof(err)))
                log_error("cannot save to --state-dir %s: %s", a->state_dir, err);
            state_clear(&a->save_next);
        }
        a->pending--;
        agent_maybe_done(a);
        return;
    }
    agent_save_kick(a);
}

static void agent_save_kick(agent_t *a)
{
    int rc;

    if (a->save_busy || (!a->save_next.ca_pem && !a->save_next.cert_pem))
        return;
    a->save = a->save_next;
    memset(&a->save_next, 0, sizeof(a->save_next));
    a->save_work.data = a;
    if ((rc = uv_queue_work(a->loop, &a->save_work, agent_save_work, agent_save_done))) {
        log_error("cannot save to --state-dir %s: %s", a->state_dir, uv_strerror(rc));
        state_clear(&a->save);
        return;
    }
    a->save_busy = 1;
}

/* Queues what changed for the state dir (the PEM strings are adopted;
 * NULL: unchanged). */
static void agent_save(agent_t *a, char *key_pem, char *cert_pem, char *ca_pem)
{
    if (key_pem && cert_pem) {
        agent_state_t old = { a->save_next.key_pem, a->save_next.cert_pem, NULL };
        state_clear(&old);
        a->save_next.key_pem = key_pem;
        a->save_next.cert_pem = cert_pem;
    }
    if (ca_pem) {
        free(a->save_next.ca_pem);
        a->save_next.ca_pem = ca_pem;
    }
    agent_save_kick(a);
}

static void agent_on_renew_timer(uv_timer_t *t)
{
    agent_t *a = t->data;

    if (a->registered)
        agent_renew(a);
    else
        a->renew_due = 1;
}

/* The renewal: at a random point between 50% and 70% of what is left. */
static void agent_schedule_renew(agent_t *a)
{
    int64_t left = a->cert_not_after_ms - agent_wall_ms();
    unsigned char r = 0;
    uint64_t wait;

    if (left <= 0) {
        log_error("the node certificate in %s expired: the controller refuses it; remove the "
                  "node (skiff node rm %s) and empty %s to join again with a join token",
                  a->state_dir, a->name, a->state_dir);
        return;
    }
    RAND_bytes(&r, 1);
    wait = (uint64_t)(left / 100 * (50 + r % 21));
    uv_timer_start(&a->renew_timer, agent_on_renew_timer, wait > 1000 ? wait : 1000, 0);
}

/* A client context with key and chain, trusting roots, for cluster. */
static SSL_CTX *agent_ctx(EVP_PKEY *key, STACK_OF(X509) *chain, STACK_OF(X509) *roots,
                          const char *cluster, char *err, size_t len)
{
    tls_policy_t policy = { .server = 0, .peer_cert = TLS_PEER_REQUIRED, .roots = roots,
                            .peer_role = PKI_ROLE_CONTROLLER, .peer_cluster = cluster };
    tls_creds_t creds = { .key = key, .cert = sk_X509_value(chain, 0) };
    SSL_CTX *ctx;

    if (!(creds.chain = sk_X509_new_null())) {
        snprintf(err, len, "out of memory");
        return NULL;
    }
    for (int i = 1; i < sk_X509_num(chain); i++)
        if (!sk_X509_push(creds.chain, sk_X509_value(chain, i))) {
            sk_X509_free(creds.chain);
            snprintf(err, len, "out of memory");
            return NULL;
        }
    ctx = tls_ctx_new(&policy, &creds, err, len);
    sk_X509_free(creds.chain);
    return ctx;
}

/* Checks a node certificate (cert_pem: it and its chain) for key, naming
 * want_id of want_cluster (NULL: any), that chains to the roots in ca_pem;
 * pin: a digest that must be among the roots (NULL: none). Installs it all
 * as the agent's identity (taking key) and returns 0, or returns a
 * negative code with err set, changing nothing. */
static int agent_install(agent_t *a, EVP_PKEY *key, const char *cert_pem, size_t cert_len,
                         const char *ca_pem, size_t ca_len, const char *want_id,
                         const char *want_cluster, const char *pin, char *err, size_t len)
{
    STACK_OF(X509) *chain = NULL, *roots = NULL;
    X509_STORE *store = NULL;
    X509_STORE_CTX *v = NULL;
    pki_name_t name;
    char why[256], d[PKI_DIGEST_HEX + 1];
    SSL_CTX *ctx = NULL;
    int rc = SKIFF_EINVAL, pinned = !pin;

    if (!(chain = pki_chain_parse(cert_pem, cert_len, why, sizeof(why)))) {
        snprintf(err, len, "the node certificate: %.200s", why);
        goto out_free;
    }
    if (!(roots = pki_chain_parse(ca_pem, ca_len, why, sizeof(why)))) {
        snprintf(err, len, "the CA roots: %.200s", why);
        goto out_free;
    }
    if (!pki_key_matches(sk_X509_value(chain, 0), key)) {
        snprintf(err, len, "the node certificate is not for this agent's key");
        goto out_free;
    }
    if (pki_name(sk_X509_value(chain, 0), &name) || strcmp(name.role, PKI_ROLE_NODE) != 0 ||
        (want_id && strcmp(name.id, want_id) != 0) ||
        (want_cluster && strcmp(name.cluster, want_cluster) != 0)) {
        snprintf(err, len, "the certificate does not name this node (%s of cluster %s)",
                 want_id ? want_id : "?", want_cluster ? want_cluster : "?");
        goto out_free;
    }
    for (int i = 0; i < sk_X509_num(roots); i++) {
        if (!pki_is_root(sk_X509_value(roots, i))) {
            snprintf(err, len, "the CA roots hold a certificate that is not a CA's");
            goto out_free;
        }
        if (pin && pki_digest(sk_X509_value(roots, i), d) == 0 && strcmp(d, pin) == 0)
            pinned = 1;
    }
    if (!pinned) {
        snprintf(err, len, "the CA roots do not hold the CA of the join token");
        goto out_free;
    }
    /* It must verify as the controller will verify it. */
    if (!(store = X509_STORE_new()) || !(v = X509_STORE_CTX_new())) {
        rc = -ENOMEM;
        snprintf(err, len, "out of memory");
        goto out_free;
    }
    for (int i = 0; i < sk_X509_num(roots); i++)
        X509_STORE_add_cert(store, sk_X509_value(roots, i));
    if (X509_STORE_CTX_init(v, store, sk_X509_value(chain, 0), chain) != 1 ||
        X509_STORE_CTX_set_purpose(v, X509_PURPOSE_SSL_CLIENT) != 1 || X509_verify_cert(v) != 1) {
        if (X509_STORE_CTX_get_error(v) == X509_V_ERR_CERT_HAS_EXPIRED)
            snprintf(err, len, "the node certificate expired: the controller refuses it; remove "
                     "the node (skiff node rm %s) and empty the state dir to join again with a "
                     "join token", a->name);
        else
            snprintf(err, len, "the node certificate does not verify with the CA roots (%s)",
                     X509_verify_cert_error_string(X509_STORE_CTX_get_error(v)));
        goto out_free;
    }
    if (!(ctx = agent_ctx(key, chain, roots, name.cluster, err, len)))
        goto out_free;
    SSL_CTX_free(a->tls);
    a->tls = ctx;
    EVP_PKEY_free(a->key);
    a->key = key;
    sk_X509_pop_free(a->chain, X509_free);
    a->chain = chain;
    chain = NULL;
    snprintf(a->cert_id, sizeof(a->cert_id), "%s", name.id);
    snprintf(a->cert_cluster, sizeof(a->cert_cluster), "%s", name.cluster);
    a->cert_not_after_ms = pki_not_after_ms(sk_X509_value(a->chain, 0));
    if (a->started)
        agent_schedule_renew(a);
    rc = 0;
out_free:
    X509_STORE_CTX_free(v);
    X509_STORE_free(store);
    sk_X509_pop_free(roots, X509_free);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

/* Installs a new certificate for key (adopted on success) and saves it. */
static int agent_take_cert(agent_t *a, EVP_PKEY *key, const ProtobufCBinaryData *cert,
                           const ProtobufCBinaryData *ca, const char *want_id,
                           const char *want_cluster, const char *pin, char *err, size_t len)
{
    char *key_pem = NULL, *cert_pem = NULL, *ca_pem = NULL;
    int rc;

    if (!cert->len || !ca->len || cert->len > PKI_MAX_PEM || ca->len > PKI_MAX_PEM) {
        snprintf(err, len, "no certificate, or no CA, or too large");
        return SKIFF_EINVAL;
    }
    if (pki_key_pem(key, &key_pem, NULL) || !(cert_pem = strndup((char *)cert->data, cert->len)) ||
        !(ca_pem = strndup((char *)ca->data, ca->len))) {
        rc = -ENOMEM;
        snprintf(err, len, "out of memory");
        goto out_free;
    }
    rc = agent_install(a, key, cert_pem, strlen(cert_pem), ca_pem, strlen(ca_pem), want_id,
                       want_cluster, pin, err, len);
    if (rc)
        goto out_free;
    agent_save(a, key_pem, cert_pem, ca_pem);
    return 0;
out_free:
    if (key_pem)
        OPENSSL_cleanse(key_pem, strlen(key_pem));
    free(key_pem);
    free(cert_pem);
    free(ca_pem);
    return rc;
}

static void agent_renew(agent_t *a)
{
    Envelope env = PB_ENVELOPE_INIT;
    CertRenew cr = PB_CERT_RENEW_INIT;
    char *csr = NULL;
    size_t n = 0;

    a->renew_due = 0;
    if (a->renew_key || !a->conn || !a->registered)
        return;
    if (!(a->renew_key = pki_key_new()) || pki_csr_new(a->renew_key, a->name, &csr, &n)) {
        log_error("cannot renew the node certificate: out of memory");
        EVP_PKEY_free(a->renew_key);
        a->renew_key = NULL;
        uv_timer_start(&a->renew_timer, agent_on_renew_timer, AGENT_RENEW_RETRY_MS, 0);
        return;
    }
    cr.csr.data = (uint8_t *)csr;
    cr.csr.len = n;
    a->renew_id = ++a->next_id;
    env.id = a->renew_id;
    env.msg_case = MSG_CERT_RENEW;
    env.cert_renew = &cr;
    if (agent_send(a, &env)) {
        EVP_PKEY_free(a->renew_key);
        a->renew_key = NULL;
        a->renew_due = 1;
    } else {
        log_info("renewing the node certificate (it expires in %lld s)",
                 (long long)((a->cert_not_after_ms - agent_wall_ms()) / 1000));
    }
    free(csr);
}

static void agent_renew_failed(agent_t *a, const char *why)
{
    int64_t left = a->cert_not_after_ms - agent_wall_ms();
    uint64_t wait = left / 10 < AGENT_RENEW_RETRY_MS ? (uint64_t)(left > 10000 ? left / 10 : 1000)
                                                     : AGENT_RENEW_RETRY_MS;

    log_warn("the node certificate was not renewed: %s; trying again in %llu ms", why,
             (unsigned long long)wait);
    EVP_PKEY_free(a->renew_key);
    a->renew_key = NULL;
    uv_timer_start(&a->renew_timer, agent_on_renew_timer, wait, 0);
}

static int agent_on_cert_issued(agent_t *a, uint64_t id, const CertIssued *ci)
{
    char err[256];

    if (!a->renew_key || id != a->renew_id)
        return 0;
    if (agent_take_cert(a, a->renew_key, &ci->certificate, &ci->ca, a->cert_id, a->cert_cluster,
                        NULL, err, sizeof(err))) {
        agent_renew_failed(a, err);
        return 0;
    }
    a->renew_key = NULL; /* the identity's now */
    log_info("node certificate renewed; it expires in %lld s",
             (long long)((a->cert_not_after_ms - agent_wall_ms()) / 1000));
    return 0;
}

/* CaUpdate: the roots to trust from now on, and maybe a renewal. */
static int agent_on_ca_update(agent_t *a, const CaUpdate *up)
{
    STACK_OF(X509) *roots;
    char err[256], *pem;
    SSL_CTX *ctx;

    if (!a->tls || !a->key)
        return 0;
    if (!(roots = pki_chain_parse(up->ca.data, up->ca.len, err, sizeof(err)))) {
        log_warn("controller %s: CA update: %s; ignored", a->controller, err);
        return 0;
    }
    for (int i = 0; i < sk_X509_num(roots); i++) {
        if (!pki_is_root(sk_X509_value(roots, i))) {
            log_warn("controller %s: CA update: not a CA; ignored", a->controller);
            sk_X509_pop_free(roots, X509_free);
            return 0;
        }
    }
    ctx = agent_ctx(a->key, a->chain, roots, a->cert_cluster, err, sizeof(err));
    sk_X509_pop_free(roots, X509_free);
    if (!ctx || !(pem = strndup((char *)up->ca.data, up->ca.len))) {
        SSL_CTX_free(ctx);
        log_error("CA update: %s", ctx ? "out of memory" : err);
        return 0;
    }
    SSL_CTX_free(a->tls);
    a->tls = ctx;
    agent_save(a, NULL, NULL, pem);
    log_info("controller %s: the CA roots changed%s", a->controller,
             up->renew ? "; renewing the node certificate" : "");
    if (up->renew) {
        uv_timer_stop(&a->renew_timer);
        agent_renew(a);
    }
    return 0;
}

/* NodeJoinReply: the node certificate. */
static int agent_on_joined(agent_t *a, uint64_t id, const NodeJoinReply *r)
{
    char err[256];

    if (!a->joining || !a->join_key || id != a->join_id)
        return SKIFF_EPROTO;
    if (agent_take_cert(a, a->join_key, &r->certificate, &r->ca, r->node_id, r->cluster_id,
                        a->join_pin, err, sizeof(err))) {
        log_error("controller %s: the join gave a certificate this agent can't use: %s",
                  a->controller, err);
        return SKIFF_EPROTO;
    }
    a->join_key = NULL;
    a->joined_now = 1;
    log_info("joined cluster %s as node %s (%s); its certificate is in %s, the join token is "
             "not needed any more", a->cert_cluster, a->name, a->cert_id, a->state_dir);
    conn_close(a->conn, 0);
    return 0;
}

/* ------------------------------------------------------------ the controller */

static int agent_cluster_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 100)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
            return 0;
    return 1;
}

static int agent_on_hello_reply(agent_t *a, const HelloReply *hr)
{
    const char *running = runner_cluster(a->runner);

    if (a->hello_done)
        return SKIFF_EPROTO;
    if (!agent_cluster_valid(hr->cluster_id)) {
        log_error("controller %s: a cluster id that is not one; closing", a->controller);
        return SKIFF_EPROTO;
    }
    if ((running && strcmp(running, hr->cluster_id) != 0) ||
        (a->cluster[0] && strcmp(a->cluster, hr->cluster_id) != 0) ||
        (a->cert_cluster[0] && strcmp(a->cert_cluster, hr->cluster_id) != 0)) {
        /* This agent's containers belong to its first cluster: it never
         * touches them for another. */
        log_error("controller %s is of cluster %s, but this agent serves cluster %s; "
                  "restart the agent to join another cluster",
                  a->controller, hr->cluster_id, a->cluster);
        return SKIFF_EAUTH;
    }
    if (!a->cluster[0])
        snprintf(a->cluster, sizeof(a->cluster), "%s", hr->cluster_id);
    a->hello_done = 1;
    /* The handshake is done; registration may wait for the engine. */
    conn_set_frame_timeout(a->conn, 0);
    log_info("connected to controller %s over TLS (cluster %s, controller %s)", a->controller,
             a->cluster, *hr->version ? hr->version : "?");
    agent_maybe_start_runner(a);
    agent_try_register(a);
    return 0;
}

static int agent_on_registered(agent_t *a, uint64_t id, const NodeRegistered *nr)
{
    if (!a->register_sent || id != a->register_id)
        return 0;
    snprintf(a->node_id, sizeof(a->node_id), "%s", nr->node_id);
    a->registered = 1;
    a->failures = 0;
    a->backoff_ms = AGENT_BACKOFF_MIN_MS;
    log_info("registered as node %s (%s)", a->name, a->node_id);
    uv_timer_start(&a->heartbeat_timer, agent_on_heartbeat, a->heartbeat_ms, a->heartbeat_ms);
    if (a->renew_due)
        agent_renew(a);
    return 0;
}

static int agent_on_endpoints(agent_t *a, Envelope *env)
{
    Endpoints *eps = env->endpoints;

    if (eps->n_services > AGENT_MAX_SERVICES) {
        log_warn("endpoints version %" PRIu64 ": too many services; ignored", eps->version);
        return 0;
    }
    /* Keep it (taken from the envelope) for a balancer made later. */
    env->endpoints = NULL;
    env->msg_case = MSG_NOT_SET;
    pb_free(a->endpoints);
    a->endpoints = eps;
    a->endpoints_version = eps->version;
    if (a->lb && lb_apply(a->lb, eps) != 0)
        log_warn("load balancer: cannot apply endpoints version %" PRIu64 ": out of memory",
                 eps->version);
    return 0;
}

/* A controller that does not lead names the one that does: go there. */
static int agent_on_redirect(agent_t *a, const Redirect *r)
{
    char host[WIRE_HOSTPORT_MAX];
    int port;

    if (*r->leader && (strlen(r->leader) >= sizeof(a->redirect) ||
                       wire_parse_hostport(r->leader, host, sizeof(host), &port))) {
        log_warn("controller %s: a redirect to '%.100s', which is not ADDR:PORT; ignored",
                 a->controller, r->leader);
        return SKIFF_EPROTO;
    }
    if (*r->leader && strcmp(r->leader, a->controller) != 0) {
        log_info("controller %s does not lead; the leader is %s", a->controller, r->leader);
        snprintf(a->redirect, sizeof(a->redirect), "%s", r->leader);
    } else {
        log_info("controller %s: no controller leads now; trying the others", a->controller);
        a->redirect[0] = '\0';
    }
    a->redirected = 1;
    return SKIFF_ECLOSED;
}

static int agent_on_message(conn_t *c, Envelope *env)
{
    agent_t *a = conn_data(c);
    int rc = 0;

    if (a->closing)
        goto out_free;
    if (!a->hello_done && env->msg_case != MSG_HELLO_REPLY && env->msg_case != MSG_ERROR &&
        env->msg_case != MSG_REDIRECT && !(a->joining && env->msg_case == MSG_NODE_JOIN_REPLY)) {
        log_warn("controller %s: %s before the handshake; closing", a->controller,
                 wire_msg_name(env->msg_case));
        rc = SKIFF_EPROTO;
        goto out_free;
    }
    switch (env->msg_case) {
    case MSG_HELLO_REPLY:
        rc = agent_on_hello_reply(a, env->hello_reply);
        break;
    case MSG_NODE_JOIN_REPLY:
        rc = agent_on_joined(a, env->id, env->node_join_reply);
        break;
    case MSG_CERT_ISSUED:
        rc = agent_on_cert_issued(a, env->id, env->cert_issued);
        break;
    case MSG_CA_UPDATE:
        rc = agent_on_ca_update(a, env->ca_update);
        break;
    case MSG_ERROR:
        if (a->renew_key && env->id == a->renew_id) {
            agent_renew_failed(a, env->error->message);
            break;
        }
        log_error("controller %s: %s%s", a->controller, a->joining ? "join refused: " : "",
                  env->error->message);
        if (!a->registered)
            rc = env->error->code == ERR_AUTH ? SKIFF_EAUTH : SKIFF_EPROTO;
        break;
    case MSG_NODE_REGISTERED:
        rc = agent_on_registered(a, env->id, env->node_registered);
        break;
    case MSG_ASSIGNMENTS:
        if (env->assignments->n_tasks > RUNNER_MAX_TASKS) {
            log_warn("assignment set version %" PRIu64 ": too many tasks; ignored",
                     env->assignments->version);
            break;
        }
        if (runner_apply(a->runner, env->assignments) != 0)
            log_error("cannot apply assignment set version %" PRIu64 ": out of memory",
                      env->assignments->version);
        break;
    case MSG_ENDPOINTS:
        rc = agent_on_endpoints(a, env);
        break;
    case MSG_SECRET_DATA:
        /* Kept for the next Assignments; a bad one is logged and ignored. */
        (void)secrets_put(a->secrets, env->secret_data);
        break;
    case MSG_LOGS_OPEN:
        logstreams_open(a->logs, env->logs_open);
        break;
    case MSG_LOGS_CLOSE:
        logstreams_close(a->logs, env->logs_close->stream);
        break;
    case MSG_REDIRECT:
        rc = agent_on_redirect(a, env->redirect);
        break;
    case MSG_OK:
        /* A leader's ping (id 0): from now on, its silence is watched. */
        if (env->id == 0 && !a->pinged && a->registered) {
            a->pinged = 1;
            conn_set_frame_timeout(a->conn, AGENT_LEADER_SILENCE_MS);
        }
        break;
    default:
        log_warn("controller %s sent %s, which an agent does not take; ignored",
                 a->controller, wire_msg_name(env->msg_case));
        break;
    }
out_free:
    wire_free(env);
    return rc;
}

int agent_token_valid(const char *t)
{
    token_t tok;
    char err[256];
    int ok = token_parse(t, &tok, err, sizeof(err)) == 0;

    memset(&tok, 0, sizeof(tok));
    return ok;
}

int agent_read_token(const char *path, char *out, size_t len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    size_t n;
    int rc = 0;

    if (!f) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return rc;
    }
    n = fread(out, 1, len - 1, f);
    if (ferror(f)) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
    }
    fclose(f);
    out[n] = '\0';
    while (n > 0 && isspace((unsigned char)out[n - 1]))
        out[--n] = '\0';
    if (rc == 0) {
        token_t tok;
        char why[256];
        if (token_parse(out, &tok, why, sizeof(why))) {
            rc = SKIFF_EINVAL;
            snprintf(err, errlen, "%s: %s", path, why);
        }
        memset(&tok, 0, sizeof(tok));
    }
    return rc;
}

/* Reads the join token file again, before each join: after a rotation
 * (skiff-controller --rotate-token join, and the new token copied into the
 * file) an agent that has not joined yet tries the new token instead of
 * being refused for ever. A file that can't be read, or holds no token,
 * leaves the token in use. */
static void agent_reread_token(agent_t *a)
{
    char buf[TOKEN_LEN + 64], err[512];

    if (!a->token_file)
        return;
    if (agent_read_token(a->token_file, buf, sizeof(buf), err, sizeof(err))) {
        log_warn("--join-token-file: %s; the token in use stays", err);
    } else if (strcmp(buf, a->token) != 0) {
        char *fresh = strdup(buf);
        if (fresh) {
            free(a->token);
            a->token = fresh;
            log_info("join token read again from %s: it changed", a->token_file);
        }
    }
    memset(buf, 0, sizeof(buf));
}

/* The first frame of a join: the token's secret, a request for a new key,
 * the name. The controller was verified by the token's digest already. */
static void agent_send_join(agent_t *a, conn_t *c)
{
    Envelope env = PB_ENVELOPE_INIT;
    NodeJoin join = PB_NODE_JOIN_INIT;
    token_t tok;
    char err[256], *csr = NULL;
    size_t n = 0;

    EVP_PKEY_free(a->join_key);
    if (token_parse(a->token, &tok, err, sizeof(err)) || !(a->join_key = pki_key_new()) ||
        pki_csr_new(a->join_key, a->name, &csr, &n)) {
        log_error("cannot join: %s", a->join_key ? "out of memory" : err);
        conn_close(c, SKIFF_EINVAL);
        goto out_free;
    }
    join.token = tok.secret;
    join.csr.data = (uint8_t *)csr;
    join.csr.len = n;
    join.name = a->name;
    a->join_id = ++a->next_id;
    env.id = a->join_id;
    env.msg_case = MSG_NODE_JOIN;
    env.node_join = &join;
    if (conn_send(c, &env) != 0)
        conn_close(c, SKIFF_ECLOSED);
    else
        log_info("joining the cluster of controller %s as node %s (its CA checked: sha256 "
                 "%.12s...)", a->controller, a->name, tok.digest);
out_free:
    memset(&tok, 0, sizeof(tok));
    free(csr);
}

static void agent_on_connect(conn_t *c, int status)
{
    agent_t *a = conn_data(c);
    Envelope env = PB_ENVELOPE_INIT;
    Hello hello = PB_HELLO_INIT;

    if (status)
        return; /* on_close follows */
    if (a->joining) {
        agent_send_join(a, c);
        return;
    }
    hello.role = ROLE_AGENT;
    hello.token = "";
    hello.version = SKIFF_VERSION;
    env.id = ++a->next_id;
    env.msg_case = MSG_HELLO;
    env.hello = &hello;
    if (conn_send(c, &env) != 0)
        conn_close(c, SKIFF_ECLOSED);
}

static void agent_on_reconnect_timer(uv_timer_t *t)
{
    agent_connect(t->data);
}

static void agent_on_conn_close(conn_t *c, int err)
{
    agent_t *a = conn_data(c);
    int was_registered = a->registered, redirected = a->redirected;
    const char *why = err ? conn_strerror(c, err) : "closed";
    uint64_t wait;

    a->conn = NULL;
    a->hello_done = a->register_sent = a->registered = 0;
    a->redirected = a->pinged = 0;
    a->joining = 0;
    EVP_PKEY_free(a->join_key);
    a->join_key = NULL;
    if (a->renew_key) { /* its answer is lost: renew on the next connection */
        EVP_PKEY_free(a->renew_key);
        a->renew_key = NULL;
        a->renew_due = 1;
    }
    if (a->closing) {
        a->pending--;
        agent_maybe_done(a);
        return;
    }
    uv_timer_stop(&a->heartbeat_timer);
    uv_timer_stop(&a->flush_timer);
    logstreams_close_all(a->logs);
    if (a->joined_now) {
        /* Joined: the same controller again at once, with the certificate. */
        a->joined_now = 0;
        a->backoff_ms = AGENT_BACKOFF_MIN_MS;
        uv_timer_start(&a->reconnect_timer, agent_on_reconnect_timer, 0, 0);
        return;
    }
    if (was_registered) {
        a->tried = 0;
        a->redirects = 0;
    }
    if (redirected && a->redirect[0] && ++a->redirects <= a->n_controllers + 1) {
        /* Straight to the leader it named (a few times in a row at most:
         * two followers may each name the other for a moment). */
        uv_timer_start(&a->reconnect_timer, agent_on_reconnect_timer, 0, 0);
        return;
    }
    if (a->redirects > a->n_controllers + 1) {
        a->redirects = 0;
        a->redirect[0] = '\0';
    }
    if (was_registered)
        log_warn("lost the controller %s: %s; reconnecting (tasks keep running)", a->controller,
                 err && err != SKIFF_ECLOSED ? why : "closed");
    if (a->n_controllers > 1 && ++a->tried < a->n_controllers) {
        /* The next one in the list at once; the backoff is per round. */
        a->current = (a->current + 1) % a->n_controllers;
        log_debug("controller %s: %s; trying %s", a->controller, why,
                  a->controllers[a->current]);
        uv_timer_start(&a->reconnect_timer, agent_on_reconnect_timer, 0, 0);
        return;
    }
    a->tried = 0;
    a->current = (a->current + 1) % a->n_controllers;
    wait = a->backoff_ms;
    a->backoff_ms = wait * 2 > AGENT_BACKOFF_MAX_MS ? AGENT_BACKOFF_MAX_MS : wait * 2;
    if (!was_registered && (a->failures++ == 0 || err == SKIFF_EAUTH || err == SKIFF_ETLS))
        log_warn("cannot reach the controller %s: %s; retrying", a->controller, why);
    else if (!was_registered)
        log_debug("controller %s: %s; retrying in %" PRIu64 " ms", a->controller, why, wait);
    uv_timer_start(&a->reconnect_timer, agent_on_reconnect_timer, wait, 0);
}

static const conn_ops_t agent_conn_ops = {
    .on_message = agent_on_message,
    .on_connect = agent_on_connect,
    .on_close = agent_on_conn_close,
};

/* The context of a join: no certificate, the controller checked against
 * the join token's digest. */
static SSL_CTX *agent_join_ctx(agent_t *a)
{
    tls_policy_t policy = { .server = 0, .peer_cert = TLS_PEER_REQUIRED,
                            .peer_role = PKI_ROLE_CONTROLLER };
    token_t tok;
    char err[256];

    agent_reread_token(a);
    if (token_parse(a->token, &tok, err, sizeof(err))) {
        log_error("cannot join: the join token: %s", err);
        return NULL;
    }
    if (a->join_tls && strcmp(a->join_pin, tok.digest) == 0) {
        memset(&tok, 0, sizeof(tok));
        return a->join_tls;
    }
    memcpy(policy.pin, tok.digest, sizeof(policy.pin));
    memcpy(a->join_pin, tok.digest, sizeof(a->join_pin));
    memset(&tok, 0, sizeof(tok));
    SSL_CTX_free(a->join_tls);
    SSL_CTX_free(a->http_tls);
    if (!(a->join_tls = tls_ctx_new(&policy, NULL, err, sizeof(err))))
        log_error("cannot join: %s", err);
    return a->join_tls;
}

static void agent_connect(agent_t *a)
{
    conn_limits_t limits = { .max_pending = AGENT_MAX_PENDING,
                             .frame_timeout_ms = AGENT_HELLO_TIMEOUT_MS };
    SSL_CTX *ctx = a->tls;
    int rc;

    if (a->closing || a->conn)
        return;
    /* The leader a follower named, once; else the list's turn. */
    snprintf(a->controller, sizeof(a->controller), "%s",
             a->redirect[0] ? a->redirect : a->controllers[a->current]);
    a->redirect[0] = '\0';
    a->joining = !ctx;
    if (!ctx && !(ctx = agent_join_ctx(a))) {
        uv_timer_start(&a->reconnect_timer, agent_on_reconnect_timer, AGENT_BACKOFF_MAX_MS, 0);
        return;
    }
    a->conn = conn_create(a->loop, &agent_conn_ops, &limits, a);
    if (!a->conn) {
        log_error("out of memory");
        uv_timer_start(&a->reconnect_timer, agent_on_reconnect_timer, AGENT_BACKOFF_MAX_MS, 0);
        return;
    }
    conn_use_tls(a->conn, ctx);
    rc = conn_connect(a->conn, a->controller);
    if (rc) {
        /* conn_close calls on_close, which schedules the next attempt. */
        log_debug("connect %s: %s", a->controller, skiff_strerror(rc));
        conn_close(a->conn, rc);
    }
}

/* ------------------------------------------------------------ life */

static char *agent_strdup(const char *s)
{
    return strdup(s ? s : "");
}

static void agent_free(agent_t *a)
{
    for (size_t i = 0; i < a->n_labels; i++)
        pb_free(a->labels[i]);
    free(a->labels);
    free(a->name);
    free(a->advertise);
    free(a->token);
    free(a->token_file);
    free(a->socket);
    free(a->metrics_listen);
    free(a->state_dir);
    /* The values go; the tmpfs and its files stay (secrets.h): running
     * containers keep their bind mounts, and the next agent reuses it. */
    secrets_free(a->secrets);
    pb_free(a->endpoints);
    EVP_PKEY_free(a->key);
    EVP_PKEY_free(a->join_key);
    EVP_PKEY_free(a->renew_key);
    sk_X509_pop_free(a->chain, X509_free);
    SSL_CTX_free(a->tls);
    SSL_CTX_free(a->join_tls);
    state_clear(&a->save);
    state_clear(&a->save_next);
    free(a);
}

agent_t *agent_create(uv_loop_t *loop, const agent_config_t *cfg, char *err, size_t errlen)
{
    agent_t *a = calloc(1, sizeof(*a));
    runner_config_t rc = { 0 };

    snprintf(err, errlen, "out of memory");
    if (!a)
        return NULL;
    a->loop = loop;
    if (wire_parse_hostlist(cfg->controller ? cfg->controller : "127.0.0.1:7400", 0,
                            a->controllers, AGENT_MAX_CONTROLLERS, &a->n_controllers)) {
        free(a);
        return NULL;
    }
    snprintf(a->controller, sizeof(a->controller), "%s", a->controllers[0]);
    a->name = agent_strdup(cfg->name);
    a->advertise = agent_strdup(cfg->advertise);
    a->token = agent_strdup(cfg->token);
    a->token_file = cfg->token_file ? agent_strdup(cfg->token_file) : NULL;
    a->socket = agent_strdup(cfg->docker_socket);
    a->state_dir = agent_strdup(cfg->state_dir);
    a->heartbeat_ms = cfg->heartbeat_ms ? cfg->heartbeat_ms : 1000;
    a->lb_threads = cfg->lb_threads;
    a->backoff_ms = AGENT_BACKOFF_MIN_MS;
    a->engine_backoff_ms = AGENT_ENGINE_BACKOFF_MIN_MS;
    if (!a->name || !a->advertise || !a->token || !a->socket || !a->state_dir ||
        (cfg->token_file && !a->token_file))
        goto out_free;
    if (cfg->state) {
        /* The node certificate from the state dir: the identity from now on. */
        const agent_state_t *st = cfg->state;
        char why[256];
        EVP_PKEY *key = pki_key_parse(st->key_pem, strlen(st->key_pem), why, sizeof(why));
        if (!key || agent_install(a, key, st->cert_pem, strlen(st->cert_pem), st->ca_pem,
                                  strlen(st->ca_pem), NULL, NULL, NULL, why, sizeof(why))) {
            EVP_PKEY_free(key);
            snprintf(err, errlen, "--state-dir %s: %s", a->state_dir, why);
            goto out_free;
        }
    }
    if (cfg->n_labels) {
        a->labels = calloc(cfg->n_labels, sizeof(*a->labels));
        if (!a->labels)
            goto out_free;
        for (size_t i = 0; i < cfg->n_labels; i++) {
            const char *eq = strchr(cfg->labels[i], '=');
            Label *l = PB_NEW(Label);
            char *key = eq ? strndup(cfg->labels[i], (size_t)(eq - cfg->labels[i])) : NULL;
            int bad = !l || !key || pb_set_str(&l->key, key) || pb_set_str(&l->value, eq + 1);
            free(key);
            if (l)
                a->labels[a->n_labels++] = l;
            if (bad)
                goto out_free;
        }
    }
    a->http = httpc_create(loop);
    if (!a->http)
        goto out_free;
    a->engine = docker_create(loop, a->http, a->socket);
    if (!a->engine)
        goto out_close_http;
    rc.node = a->name;
    rc.advertise = a->advertise;
    rc.gateway = "";
    rc.http = a->http;
    {
        /* <state-dir>/secrets: the tmpfs of the tasks' secret and config files. */
        char dir[4096];
        int n = snprintf(dir, sizeof(dir), "%s/secrets", a->state_dir);
        a->secrets = secrets_create(*a->state_dir && n > 0 && (size_t)n < sizeof(dir) ? dir : NULL);
        if (!a->secrets)
            goto out_close_engine;
    }
    rc.secrets = a->secrets;
    a->runner = runner_create(loop, a->engine, &rc, &agent_runner_ops, a);
    if (!a->runner)
        goto out_close_engine;
    a->logs = logstreams_create(loop, a->engine, agent_container_of, agent_send_logs, a);
    if (!a->logs)
        goto out_close_runner;
    a->stats = stats_create(a->engine, NULL);
    if (!a->stats)
        goto out_close_runner;
    if (cfg->metrics_listen && *cfg->metrics_listen &&
        !(a->metrics_listen = strdup(cfg->metrics_listen)))
        goto out_close_runner;
    if (cfg->http_tls && SSL_CTX_up_ref(cfg->http_tls) == 1)
        a->http_tls = cfg->http_tls;
    uv_timer_init(loop, &a->engine_timer);
    uv_timer_init(loop, &a->reconnect_timer);
    uv_timer_init(loop, &a->heartbeat_timer);
    uv_timer_init(loop, &a->flush_timer);
    uv_timer_init(loop, &a->renew_timer);
    a->engine_timer.data = a->reconnect_timer.data = a->heartbeat_timer.data =
        a->flush_timer.data = a->renew_timer.data = a;
    return a;

out_close_runner:
    stats_free(a->stats);
    a->stats = NULL;
    logstreams_free(a->logs);
    a->logs = NULL;
    runner_close(a->runner, NULL, NULL);
out_close_engine:
    a->engine->ops->close(a->engine, NULL, NULL);
out_close_http:
    httpc_close(a->http, NULL, NULL);
out_free:
    agent_free(a);
    return NULL;
}

static void agent_on_metrics(void *arg, httpd_req_t *r)
{
    agent_t *a = arg;
    agent_metrics_src_t src = { a->name, a->lb, a->stats, a->engine };
    const char *method = httpd_method(r), *text;
    size_t len;
    prom_t p;

    if (strcmp(httpd_path(r), "/metrics") != 0) {
        httpd_respond_error(r, 404, "not found: the metrics are at /metrics");
        return;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        httpd_add_header(r, "Allow", "GET, HEAD");
        httpd_respond_error(r, 405, "method %s not allowed", method);
        return;
    }
    prom_init(&p, 0);
    agent_metrics_page(&p, &src);
    text = prom_text(&p, &len);
    if (prom_ok(&p))
        httpd_respond(r, 200, PROM_CONTENT_TYPE, text, len);
    else
        httpd_respond_error(r, 500, "the metrics page did not fit in memory");
    prom_free(&p);
}

int agent_start(agent_t *a)
{
    if (a->metrics_listen) {
        httpd_config_t hc = { .listen = a->metrics_listen, .name = "metrics",
                              .max_body = 4096, .max_connections = 64, .ssl_ctx = a->http_tls };
        char err[256];
        if (!(a->metrics = httpd_start(a->loop, &hc, agent_on_metrics, a, err, sizeof(err)))) {
            log_error("--metrics-listen %s", err);
            return SKIFF_EINVAL;
        }
    }
    log_info("skiff-agent %s: node %s, advertise %s, controller%s %s%s, engine unix://%s",
             SKIFF_VERSION, a->name, a->advertise, a->n_controllers > 1 ? "s" : "",
             a->controllers[0], a->n_controllers > 1 ? " and others" : "", a->socket);
    if (a->tls)
        log_info("node certificate from %s: node %s of cluster %s, expires in %lld s",
                 a->state_dir, a->cert_id, a->cert_cluster,
                 (long long)((a->cert_not_after_ms - agent_wall_ms()) / 1000));
    else
        log_info("no node certificate in %s yet: joining with the join token", a->state_dir);
    a->started = 1;
    if (a->tls)
        agent_schedule_renew(a);
    agent_engine_next(a);
    agent_connect(a);
    return 0;
}

static void agent_maybe_done(agent_t *a)
{
    void (*done)(void *) = a->close_done;
    void *arg = a->close_arg;

    if (a->pending > 0)
        return;
    agent_free(a);
    if (done)
        done(arg);
}

static void agent_on_part_closed(void *arg)
{
    agent_t *a = arg;

    a->pending--;
    agent_maybe_done(a);
}

static void agent_on_timer_closed(uv_handle_t *h)
{
    agent_on_part_closed(h->data);
}

void agent_close(agent_t *a, void (*done)(void *arg), void *arg)
{
    if (a->closing)
        return;
    a->closing = 1;
    a->close_done = done;
    a->close_arg = arg;
    log_info("closing (the tasks keep running)");
    a->pending = 1; /* held until every part has been asked to close */
    logstreams_free(a->logs);
    a->logs = NULL;
    stats_free(a->stats); /* its streams close on the engine, which is still up */
    a->stats = NULL;
    if (a->metrics) {
        a->pending++;
        httpd_close(a->metrics, agent_on_part_closed, a);
        a->metrics = NULL;
    }
    /* The engine first: no engine callback may reach the runner after. */
    a->pending++;
    a->engine->ops->close(a->engine, agent_on_part_closed, a);
    a->pending++;
    runner_close(a->runner, agent_on_part_closed, a);
    if (a->lb) {
        a->pending++;
        lb_close(a->lb, agent_on_part_closed, a);
        a->lb = NULL;
    }
    a->pending++;
    httpc_close(a->http, agent_on_part_closed, a);
    if (a->conn) {
        a->pending++;
        conn_close(a->conn, 0);
    }
    if (a->save_busy)
        a->pending++; /* the save in the pool ends first */
    else if (a->save_next.ca_pem || a->save_next.cert_pem) {
        char err[256];
        if (state_save(a->state_dir, &a->save_next, err, sizeof(err)))
            log_error("cannot save to --state-dir %s: %s", a->state_dir, err);
        state_clear(&a->save_next);
    }
    a->pending += 5;
    uv_close((uv_handle_t *)&a->engine_timer, agent_on_timer_closed);
    uv_close((uv_handle_t *)&a->reconnect_timer, agent_on_timer_closed);
    uv_close((uv_handle_t *)&a->heartbeat_timer, agent_on_timer_closed);
    uv_close((uv_handle_t *)&a->flush_timer, agent_on_timer_closed);
    uv_close((uv_handle_t *)&a->renew_timer, agent_on_timer_closed);
    a->pending--;
    agent_maybe_done(a);
}
