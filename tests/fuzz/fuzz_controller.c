/* fuzz_controller: the controller's message handling, end to end, in
 * process: a ctl_t started as skiff-controller starts it (a temporary data
 * dir with its tokens and CA, a SQLite store, a listener on 127.0.0.1), and
 * fake peers that connect to it over loopback TCP and send what the input
 * says. Nothing in controller/ is changed or bypassed for this: the bytes
 * go through conn.c, TLS 1.3 (tls.c), wire.c, the handshake, certs.c,
 * agents.c, api.c, logs.c, the orchestrator and the commit pipeline, as
 * they would from the network.
 *
 * The peers speak TLS as the real ones do, with proto/tls.h's memory-BIO
 * sessions over non-blocking sends and reads of their sockets (the
 * controller's loop runs between the steps of a handshake): the client and the raw TLS peer trust
 * the controller by the CA digest of the tokens (pinned) and show no
 * certificate; agents A and B show their node certificates. A and B join
 * once per process, at start (NodeJoin with the join token's secret, a
 * real P-256 certificate request and the names "n1" and "n2", the names
 * the seed corpus registers with); the database after those joins (the
 * CA's root and its two certificate records, the nodes n1 and n2, down)
 * is the template every input starts from, and the CA is reloaded from it
 * each time (ca_reload), so that a certificate revoked by one input (a
 * node removed) is good again in the next. Joining once keeps the target
 * fast: an input costs a handshake per connection it opens, and no key
 * generation or join of its own.
 *
 * The input is a list of records: one byte op, a 2-byte little-endian
 * length, then that many bytes.
 *   op & 3 == 0  an Envelope from the client (said hello with the admin
 *                token's secret)
 *   op & 3 == 1  an Envelope from agent A (said hello with its certificate,
 *                node n1)
 *   op & 3 == 2  an Envelope from agent B (the same, node n2; it may
 *                register with n1's name, which is refused)
 *   op & 3 == 3  raw bytes on a connection that said nothing yet: inside
 *                TLS after a handshake without a certificate (frames,
 *                hellos and joins before any credential); with op & 0x40,
 *                in plaintext on a connection of its own (the refusal of
 *                a peer that does not speak TLS)
 *   op & 0x80    then let the controller settle: run until its commit is
 *                done and its replies and pushes are out
 * A record of length 0 closes that connection (close_notify first); the
 * next record for it connects again (an agent that comes back, a second
 * client).
 * An Envelope that does not unpack is skipped (fuzz_frame and the raw
 * connections cover broken frames). A task_id "#N" in a TaskStatus becomes
 * the id of the controller's Nth task, since task ids are random.
 *
 * At the end the client asks for the node list and waits for the answer
 * (so every reply before it has left), every connection is reset, and the
 * controller runs until it is idle with no peers. Checked: nothing
 * crashes, exits (a failed commit stops a controller: that would be a
 * peer stopping it), hangs or trips a sanitizer; every frame the controller
 * sent decodes (after TLS) and fits its maximum; the store then loads back
 * into a fresh model. Then the controller's state is wiped (a fresh model
 * and store from the template, the CA reloaded from it; the same listener,
 * tokens and cluster id), so each input starts from the same cluster and
 * leaks show up per input.
 *
 * A custom mutator (at the end) mutates the records, not the raw bytes, so
 * that most inputs stay a session of whole messages. The limits are
 * skiff-controller's defaults but for max_replicas (16, to keep each run
 * short).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "ca.h"
#include "ctl.h"
#include "errors.h"
#include "log.h"
#include "pbutil.h"
#include "pki.h"
#include "spec.h"
#include "store.h"
#include "tls.h"
#include "wire.h"

#define FZ_CLIENT 0
#define FZ_AGENT_A 1
#define FZ_AGENT_B 2
#define FZ_RAW 3           /* raw bytes inside TLS */
#define FZ_PLAIN 4         /* raw bytes in plaintext (op & FZ_OP_PLAIN) */
#define FZ_CONNS 5
#define FZ_OP_PLAIN 0x40
#define FZ_JOIN_ID 0x4a4f494eULL
#define FZ_SYNC_ID 0x5359e4cULL
#define FZ_MAX_TURNS 200000     /* loop turns before a run counts as hung */
#define FZ_MAX_IN ((size_t)64 << 20)

typedef struct fz_conn {
    int fd;          /* -1: not connected */
    int eof;         /* the controller closed it (or the TLS session failed) */
    tls_t *tls;      /* NULL: plaintext (FZ_PLAIN) */
    buf_t in;        /* what the controller sent (decrypted) */
} fz_conn_t;

static struct {
    uv_loop_t loop;
    uv_timer_t wake;    /* so that a blocking turn never waits long */
    ctl_t *ctl;
    char dir[128];
    char db[192];
    char cluster_id[MODEL_ID_LEN * 2 + 1];
    struct sockaddr_in addr;
    fz_conn_t conns[FZ_CONNS];
    SSL_CTX *pin_tls;      /* no certificate; the controller pinned by the CA digest */
    SSL_CTX *agent_tls[2]; /* A's and B's node certificates, from their joins */
} F;

static void fz_fail(const char *what)
{
    fprintf(stderr, "fuzz_controller: %s\n", what);
    abort();
}

/* ------------------------------------------------------------ set-up */

static void fz_rm_dir(void)
{
    DIR *d = opendir(F.dir);
    struct dirent *e;
    char path[512];

    if (!d)
        return;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", F.dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(F.dir);
}

static int fz_free_port(void)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* The database each run starts from: first that of an empty controller,
 * schema made; after the joins at start, that with the CA and the nodes
 * of agents A and B. A copy is much faster than making it again. */
static uint8_t *fz_template;
static size_t fz_template_len;

/* Takes the database file (its store closed) as the template. */
static void fz_take_template(void)
{
    FILE *f = fopen(F.db, "rb");
    long len = 0;

    free(fz_template);
    fz_template = NULL;
    if (!f || fseek(f, 0, SEEK_END) || (len = ftell(f)) <= 0 || fseek(f, 0, SEEK_SET) ||
        !(fz_template = malloc((size_t)len)) ||
        fread(fz_template, 1, (size_t)len, f) != (size_t)len)
        fz_fail("cannot read the database back");
    fz_template_len = (size_t)len;
    fclose(f);
}

static void fz_unlink_db(void)
{
    char p[256];

    unlink(F.db);
    snprintf(p, sizeof(p), "%s-wal", F.db);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", F.db);
    unlink(p);
}

static void fz_open_store(void)
{
    char err[512];
    FILE *f;

    fz_unlink_db();
    if (fz_template) {
        if (!(f = fopen(F.db, "wb")) || fwrite(fz_template, 1, fz_template_len, f) !=
            fz_template_len || fclose(f))
            fz_fail("cannot write the database");
    } else {
        /* The first time: make the schema, and keep the file. */
        if (!(F.ctl->store = store_sqlite_open(&F.loop, F.db, err, sizeof(err))))
            fz_fail(err);
        store_close(F.ctl->store); /* checkpoints the WAL into the file */
        fz_take_template();
    }
    F.ctl->store = store_sqlite_open(&F.loop, F.db, err, sizeof(err));
    if (!F.ctl->store || store_sqlite_load(F.ctl->store, &F.ctl->model, err, sizeof(err)))
        fz_fail(err);
}

static void fz_join_all(void);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *level = getenv("SKIFF_FUZZ_LOG"), *tmp;
    enum log_level lvl = LOG_ERROR;
    ctl_t *ctl;
    char err[512];
    int rc = -1;

    (void)argc;
    (void)argv;
    if (level)
        log_level_parse(level, &lvl);
    log_init("controller", lvl);
    signal(SIGPIPE, SIG_IGN);
    umask(077);
    tmp = getenv("SKIFF_FUZZ_TMP"); /* run.sh's scratch dir */
    if (!tmp || !*tmp)
        tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(F.dir, sizeof(F.dir), "%.100s/skiff-fuzz-ctl-XXXXXX", tmp);
    if (!mkdtemp(F.dir))
        fz_fail("mkdtemp");
    atexit(fz_rm_dir); /* libFuzzer ends with exit() */
    snprintf(F.db, sizeof(F.db), "%s/state.db", F.dir);
    if (uv_loop_init(&F.loop))
        fz_fail("uv_loop_init");
    uv_timer_init(&F.loop, &F.wake);
    F.ctl = ctl = calloc(1, sizeof(*ctl));
    if (!ctl)
        fz_fail("out of memory");
    ctl->cfg = (ctl_config_t){
        .heartbeat_timeout_ms = 3000,
        .disconnect_grace_ms = 1000,
        .handshake_timeout_ms = 5000,
        .agent_timeout_ms = 30000,
        .max_frame = 4 << 20,
        .max_pending = 8 << 20,
        .max_conns = 4096,
        .max_conns_per_addr = 1024,
        .cert_expiry_ms = 2160LL * 3600000,
        .spec_limits = spec_limits_default,
        .event_buffer = 50000,
        .rebalance = 1,
        .rebalance_delay_ms = 30000,
    };
    ctl->cfg.spec_limits.max_replicas = 16;
    snprintf(ctl->cfg.data_dir, sizeof(ctl->cfg.data_dir), "%s", F.dir);
    model_init(&ctl->model);
    if (tokens_prepare(ctl, err, sizeof(err)))
        fz_fail(err);
    fz_open_store();
    if (tokens_cluster_id(ctl, err, sizeof(err)) || tokens_ca(ctl, err, sizeof(err)) ||
        ctl_load_events(ctl))
        fz_fail(err);
    memcpy(F.cluster_id, ctl->model.cluster_id, sizeof(F.cluster_id));
    for (int attempt = 0; attempt < 20 && rc; attempt++) {
        int port = fz_free_port();
        snprintf(ctl->cfg.listen, sizeof(ctl->cfg.listen), "127.0.0.1:%d", port);
        F.addr.sin_family = AF_INET;
        F.addr.sin_port = htons((uint16_t)port);
        F.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        rc = ctl_start(ctl, &F.loop);
        if (rc)
            uv_run(&F.loop, UV_RUN_NOWAIT); /* the failed listener's close */
    }
    if (rc)
        fz_fail("ctl_start");
    /* The controller's own signal handlers would stop it on ^C; the fuzzer
     * handles those. */
    uv_signal_stop(&ctl->sigterm);
    uv_signal_stop(&ctl->sigint);
    for (int i = 0; i < FZ_CONNS; i++)
        F.conns[i].fd = -1;
    {
        tls_policy_t policy = { .server = 0, .peer_cert = TLS_PEER_REQUIRED,
                                .peer_role = PKI_ROLE_CONTROLLER };
        snprintf(policy.pin, sizeof(policy.pin), "%s", ca_digest(ctl->ca));
        if (!(F.pin_tls = tls_ctx_new(&policy, NULL, err, sizeof(err))))
            fz_fail(err);
    }
    fz_join_all();
    return 0;
}

/* Wipes the controller's state between inputs: a fresh model and store
 * from the template (or, retemplate, the state now becomes the template),
 * the CA reloaded from it; the listener, tokens and cluster id stay. Only
 * when it is idle. */
static void fz_wipe(int retemplate)
{
    ctl_t *ctl = F.ctl;
    model_t fresh;
    char err[512];

    if (ctl->n_peers || ctl->peers)
        fz_fail("a peer is left after every connection closed");
    if (ctl->committing || ctl->out_head || ctl->inflight)
        fz_fail("the controller is not idle");
    if (ctl->logstreams)
        fz_fail("a log stream is left after every connection closed");
    /* The store must load back what was committed. */
    model_init(&fresh);
    if (store_sqlite_load(ctl->store, &fresh, err, sizeof(err)))
        fz_fail(err);
    if (HASH_COUNT(fresh.nodes) != HASH_COUNT(ctl->model.nodes) ||
        HASH_COUNT(fresh.services) != HASH_COUNT(ctl->model.services) ||
        HASH_COUNT(fresh.tasks) != HASH_COUNT(ctl->model.tasks))
        fz_fail("the store does not hold what the model holds");
    model_free(&fresh);

    store_close(ctl->store);
    ctl->store = NULL;
    if (retemplate)
        fz_take_template();
    store_batch_free(ctl->events_batch);
    ctl->events_batch = NULL;
    model_free(&ctl->model);
    model_init(&ctl->model);
    free(ctl->endpoints_packed);
    ctl->endpoints_packed = NULL;
    ctl->endpoints_len = 0;
    ctl->sched_needed = ctl->endpoints_check = ctl->endpoints_wanted = 0;
    ctl->next_stream = 0;
    fz_open_store();
    memcpy(ctl->model.cluster_id, F.cluster_id, sizeof(F.cluster_id));
    ctl->model.meta_dirty = 1;
    /* The roots and records of the template: what an input revoked or
     * issued is forgotten with the rest. */
    if (ca_reload(ctl->ca, F.cluster_id, &ctl->model, NULL, 0, err, sizeof(err)))
        fz_fail(err);
    if (ca_dirty(ctl->ca))
        fz_fail("the CA of the template is not the one in the store");
}

static void fz_reset(void)
{
    fz_wipe(0);
}

/* -------------------------------------------------------- fake peers */

/* Keeps plaintext the controller sent (after TLS, or as it came). */
static void fz_keep(fz_conn_t *c, const void *p, size_t n)
{
    if (buf_append(&c->in, p, n, FZ_MAX_IN) != 0)
        fz_fail("the controller sent more than 64 MiB to one peer");
}

/* What the session decrypted so far, once its handshake is done; the end
 * of the session (close_notify, an alert) is the end of the connection. */
static void fz_drain(fz_conn_t *c)
{
    char tmp[16384];
    long n;

    if (!c->tls || !tls_done(c->tls))
        return;
    while ((n = tls_read(c->tls, tmp, sizeof(tmp))) > 0)
        fz_keep(c, tmp, (size_t)n);
    if (n < 0)
        c->eof = 1;
}

/* Reads what the controller sent on c, until it would block. */
static void fz_read(fz_conn_t *c)
{
    char tmp[65536];
    ssize_t n;

    while (c->fd >= 0 && !c->eof) {
        n = recv(c->fd, tmp, sizeof(tmp), MSG_DONTWAIT);
        if (n > 0) {
            if (!c->tls)
                fz_keep(c, tmp, (size_t)n);
            else if (tls_feed(c->tls, tmp, (size_t)n) != 0)
                c->eof = 1;
            else
                fz_drain(c);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        c->eof = 1; /* closed (0), or reset */
    }
}

static void fz_read_all(void)
{
    for (int i = 0; i < FZ_CONNS; i++)
        fz_read(&F.conns[i]);
}

static void fz_on_wake(uv_timer_t *t)
{
    (void)t;
}

static void fz_turn(uv_run_mode mode)
{
    if (mode == UV_RUN_ONCE)
        uv_timer_start(&F.wake, fz_on_wake, 2, 0);
    uv_run(&F.loop, mode);
    fz_read_all();
}

/* Writes bytes to the socket, the loop running while it is full. */
static void fz_write(fz_conn_t *c, const uint8_t *p, size_t len)
{
    int turns = 0;

    while (len > 0 && c->fd >= 0 && !c->eof) {
        ssize_t n = send(c->fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (++turns > FZ_MAX_TURNS)
                fz_fail("the controller stopped reading");
            fz_turn(UV_RUN_ONCE);
        } else {
            c->eof = 1; /* the controller closed it */
        }
    }
}

/* Sends what the session made for the controller. Never called from
 * fz_read, so that a full socket (fz_write turns the loop, which reads)
 * does not recurse. */
static void fz_flush(fz_conn_t *c)
{
    uint8_t tmp[16384];
    size_t n;

    while (c->tls && c->fd >= 0 && !c->eof && (n = tls_out_take(c->tls, tmp, sizeof(tmp))) > 0)
        fz_write(c, tmp, n);
}

/* Application bytes: encrypted, or as they are on a plaintext one. */
static void fz_write_app(fz_conn_t *c, const uint8_t *p, size_t len)
{
    if (!c->tls) {
        fz_write(c, p, len);
        return;
    }
    if (c->fd < 0 || c->eof || !tls_done(c->tls))
        return;
    if (tls_write(c->tls, p, len) != 0)
        c->eof = 1;
    fz_flush(c);
}

static void fz_send(fz_conn_t *c, const Envelope *env)
{
    size_t len = wire_frame_size(env);
    uint8_t *frame = malloc(len);

    if (!frame)
        return;
    wire_pack(env, frame);
    fz_write_app(c, frame, len);
    free(frame);
}

static void fz_hello(fz_conn_t *c, int role, const char *token)
{
    Envelope env = PB_ENVELOPE_INIT;
    Hello h = PB_HELLO_INIT;

    h.role = role;
    h.token = (char *)token;
    h.version = (char *)"fuzz";
    env.id = 1;
    env.msg_case = MSG_HELLO;
    env.hello = &h;
    fz_send(c, &env);
}

/* Every frame the controller sent decodes and fits its maximum. */
static void fz_check_output(fz_conn_t *c)
{
    Envelope *env;
    int rc;

    while ((rc = wire_decode(&c->in, F.ctl->cfg.max_frame, &env)) == 1)
        wire_free(env);
    if (rc < 0)
        fz_fail("the controller sent a frame that does not decode");
    /* What is left is a frame cut short by a reset connection. */
}

/* Reads what is left, checks it, and closes: abort, with a reset, which
 * leaves no TIME_WAIT behind (a fuzzing run makes many connections, and
 * the machine's ephemeral ports are shared with other tests); else with
 * close_notify first, on TLS. */
static void fz_close_how(fz_conn_t *c, int abort)
{
    struct linger lg = { 1, 0 };

    if (c->fd < 0)
        return;
    fz_read(c);
    fz_check_output(c);
    if (abort) {
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    } else if (c->tls && !c->eof && tls_done(c->tls)) {
        tls_shutdown(c->tls);
        fz_flush(c);
    }
    close(c->fd);
    c->fd = -1;
    c->eof = 0;
    tls_free(c->tls);
    c->tls = NULL;
    buf_free(&c->in);
}

static void fz_close(fz_conn_t *c)
{
    fz_close_how(c, 0);
}

/* A socket connected to the controller. */
static void fz_connect(fz_conn_t *c)
{
    int one = 1;

    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        fz_fail("socket");
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* EADDRNOTAVAIL: this machine ran out of ephemeral ports for a moment
     * (other tests share them); not the controller's doing. */
    for (int tries = 0; connect(c->fd, (struct sockaddr *)&F.addr, sizeof(F.addr)) != 0;) {
        char why[128];
        if ((errno == EADDRNOTAVAIL || errno == EINTR) && ++tries < 100) {
            usleep(50000);
            continue;
        }
        snprintf(why, sizeof(why), "connect to the controller: %s", strerror(errno));
        fz_fail(why);
    }
    c->eof = 0;
}

/* The TLS handshake on c, with ctx, the loop running between its steps.
 * Returns 0 when it is done (our side: the controller may still refuse
 * our certificate, which then ends the connection), -1 when it failed. */
static int fz_handshake(fz_conn_t *c, SSL_CTX *ctx)
{
    int turns = 0, rc;

    if (!(c->tls = tls_new(ctx)))
        fz_fail("out of memory");
    for (;;) {
        rc = tls_handshake(c->tls);
        fz_flush(c);
        if (rc == 1) {
            fz_drain(c);
            return 0;
        }
        if (rc < 0 || c->eof) {
            c->eof = 1;
            return -1;
        }
        if (++turns > FZ_MAX_TURNS)
            fz_fail("the controller does not finish a TLS handshake");
        fz_turn(UV_RUN_ONCE);
    }
}

/* The connection for which, connected (again, when the controller closed
 * it: an agent that comes back registers again), its handshake done and
 * its hello said. */
static fz_conn_t *fz_conn(int which)
{
    fz_conn_t *c = &F.conns[which];

    if (c->fd >= 0 && c->eof)
        fz_close(c);
    if (c->fd >= 0)
        return c;
    fz_connect(c);
    if (which == FZ_PLAIN)
        return c;
    if (fz_handshake(c, which == FZ_AGENT_A   ? F.agent_tls[0]
                        : which == FZ_AGENT_B ? F.agent_tls[1]
                                              : F.pin_tls))
        return c; /* eof: what it sends is dropped */
    if (which == FZ_CLIENT)
        fz_hello(c, ROLE_CLIENT, F.ctl->admin_token);
    else if (which != FZ_RAW)
        fz_hello(c, ROLE_AGENT, "");
    return c;
}

/* ---------------------------------------------------------- the joins */

static void fz_idle(int peers);

/* The reply to request id on c, once it came (owned), or NULL when the
 * controller closed first. */
static Envelope *fz_wait_reply(fz_conn_t *c, uint64_t id)
{
    int turns = 0;

    for (;;) {
        Envelope *env;
        int rc;
        while ((rc = wire_decode(&c->in, F.ctl->cfg.max_frame, &env)) == 1) {
            if (env->id == id)
                return env;
            wire_free(env);
        }
        if (rc < 0)
            fz_fail("the controller sent a frame that does not decode");
        if (c->eof)
            return NULL;
        if (++turns > FZ_MAX_TURNS)
            fz_fail("no reply from the controller");
        fz_turn(UV_RUN_ONCE);
    }
}

/* Agent A or B (i 0 or 1) joins as skiff-agent does: a new key, NodeJoin
 * with the join token's secret on a pinned connection, and the node
 * certificate of the reply in its context from now on. */
static void fz_join(int i, const char *name)
{
    fz_conn_t *c = &F.conns[FZ_RAW];
    Envelope env = PB_ENVELOPE_INIT, *reply;
    NodeJoin j = PB_NODE_JOIN_INIT;
    tls_policy_t policy = { .server = 0, .peer_cert = TLS_PEER_REQUIRED,
                            .peer_role = PKI_ROLE_CONTROLLER };
    tls_creds_t creds = { 0 };
    STACK_OF(X509) *chain;
    char err[256], *csr = NULL;
    size_t n = 0;

    if (!(creds.key = pki_key_new()) || pki_csr_new(creds.key, name, &csr, &n))
        fz_fail("out of memory");
    fz_connect(c);
    if (fz_handshake(c, F.pin_tls)) {
        snprintf(err, sizeof(err), "the join's TLS handshake failed: %s", tls_reason(c->tls));
        fz_fail(err);
    }
    j.token = F.ctl->join_token;
    j.csr.data = (uint8_t *)csr;
    j.csr.len = n;
    j.name = (char *)name;
    env.id = FZ_JOIN_ID;
    env.msg_case = MSG_NODE_JOIN;
    env.node_join = &j;
    fz_send(c, &env);
    free(csr);
    if (!(reply = fz_wait_reply(c, FZ_JOIN_ID)) || reply->msg_case != MSG_NODE_JOIN_REPLY)
        fz_fail("the join was not answered with a certificate");
    chain = pki_chain_parse(reply->node_join_reply->certificate.data,
                            reply->node_join_reply->certificate.len, err, sizeof(err));
    policy.roots = pki_chain_parse(reply->node_join_reply->ca.data,
                                   reply->node_join_reply->ca.len, err, sizeof(err));
    if (!chain || !policy.roots)
        fz_fail(err);
    creds.cert = sk_X509_shift(chain);
    creds.chain = chain;
    if (!(F.agent_tls[i] = tls_ctx_new(&policy, &creds, err, sizeof(err))))
        fz_fail(err);
    X509_free(creds.cert);
    EVP_PKEY_free(creds.key);
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(policy.roots, X509_free);
    wire_free(reply);
    fz_close_how(c, 1);
}

/* At start: A and B join, and the state with their nodes and certificates
 * is every input's starting point. */
static void fz_join_all(void)
{
    fz_join(0, "n1");
    fz_join(1, "n2");
    fz_idle(1);
    fz_wipe(1);
    if (HASH_COUNT(F.ctl->model.nodes) != 2)
        fz_fail("the template does not hold the two joined nodes");
}

/* ---------------------------------------------------------- the input */

/* "#N": the id of the controller's Nth task (in its table's order). */
static void fz_task_ref(char **id)
{
    task_t *t, *tmp;
    unsigned n, count = HASH_COUNT(F.ctl->model.tasks), i = 0;

    if (!*id || (*id)[0] != '#' || count == 0)
        return;
    n = (unsigned)strtoul(*id + 1, NULL, 10) % count;
    HASH_ITER(hh, F.ctl->model.tasks, t, tmp) {
        if (i++ == n) {
            pb_set_str(id, t->pb->id);
            return;
        }
    }
}

static void fz_rewrite(Envelope *env)
{
    if (env->msg_case == MSG_STATUS) {
        for (size_t i = 0; i < env->status->n_tasks; i++)
            fz_task_ref(&env->status->tasks[i]->task_id);
    } else if (env->msg_case == MSG_NODE_REGISTER) {
        for (size_t i = 0; i < env->node_register->n_tasks; i++)
            fz_task_ref(&env->node_register->tasks[i]->task_id);
    }
}

/* 1 while the controller has something to do. */
static int fz_busy(void)
{
    ctl_t *ctl = F.ctl;

    return ctl->committing || ctl->out_head || ctl->inflight || model_has_changes(&ctl->model);
}

/* Runs the loop until the controller is idle: nothing to commit, nothing
 * in flight, and a turn of the loop (its flush: the orchestrator) finds
 * nothing more to do. With peers (peers != 0), until they are all gone. */
static void fz_idle(int peers)
{
    int turns = 0;

    for (;;) {
        fz_turn(UV_RUN_NOWAIT);
        if (!fz_busy() && (!peers || F.ctl->n_peers == 0))
            break;
        if (++turns > FZ_MAX_TURNS)
            fz_fail(peers ? "the controller does not let go of its peers"
                          : "the controller does not settle");
        fz_turn(UV_RUN_ONCE);
    }
}

static void fz_settle(void)
{
    fz_idle(0);
}

/* 1 when the client got the reply to the sync request. */
static int fz_synced(fz_conn_t *c)
{
    buf_t view = c->in; /* decode a copy of the pointers: keep the bytes */
    Envelope *env;
    int rc, found = 0;

    while (!found && (rc = wire_decode(&view, F.ctl->cfg.max_frame, &env)) == 1) {
        found = env->id == FZ_SYNC_ID;
        wire_free(env);
    }
    return found;
}

static void fz_finish(void)
{
    fz_conn_t *client = &F.conns[FZ_CLIENT];
    int turns = 0;

    if (client->fd >= 0 && !client->eof) {
        Envelope env = PB_ENVELOPE_INIT;
        NodeList nl = PB_NODE_LIST_INIT;
        env.id = FZ_SYNC_ID;
        env.msg_case = MSG_NODE_LIST;
        env.node_list = &nl;
        fz_send(client, &env);
        while (!client->eof && !fz_synced(client)) {
            if (++turns > FZ_MAX_TURNS)
                fz_fail("no reply to the client's request");
            fz_turn(UV_RUN_ONCE);
        }
    }
    for (int i = 0; i < FZ_CONNS; i++)
        fz_close_how(&F.conns[i], 1);
    fz_idle(1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;

    while (off + 3 <= size) {
        unsigned op = data[off];
        size_t len = (size_t)data[off + 1] | (size_t)data[off + 2] << 8;
        int which = (int)(op & 3);
        fz_conn_t *c;

        if (which == FZ_RAW && (op & FZ_OP_PLAIN))
            which = FZ_PLAIN;
        off += 3;
        if (len > size - off)
            len = size - off;
        if (len == 0) { /* the peer goes away */
            fz_close(&F.conns[which]);
            fz_turn(UV_RUN_NOWAIT);
            continue;
        }
        c = fz_conn(which);
        if (which == FZ_RAW || which == FZ_PLAIN) {
            fz_write_app(c, data + off, len);
        } else {
            Envelope *env = skiff__v1__envelope__unpack(NULL, len, data + off);
            if (env) {
                fz_rewrite(env);
                fz_send(c, env);
                wire_free(env);
            }
        }
        off += len;
        fz_turn(UV_RUN_NOWAIT);
        if (op & 0x80)
            fz_settle();
    }
    fz_finish();
    fz_reset();
    return 0;
}

/* ------------------------------------------------------- the mutator */

/* libFuzzer's own mutations would break the records (their lengths) at
 * once; this one keeps them whole: it mutates the bytes of one record
 * (with libFuzzer's mutations, its length fixed after), turns a record
 * to another peer or adds or drops the settle bit (for raw bytes, or the
 * plaintext bit), duplicates a record,
 * drops one, or swaps two. */
#define FZ_MAX_RECORDS 128

typedef struct fz_record {
    uint8_t op;
    const uint8_t *p;
    size_t len;
} fz_record_t;

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max);

static size_t fz_records(const uint8_t *data, size_t size, fz_record_t *r)
{
    size_t n = 0, off = 0;

    while (off + 3 <= size && n < FZ_MAX_RECORDS) {
        size_t len = (size_t)data[off + 1] | (size_t)data[off + 2] << 8;
        r[n].op = data[off];
        off += 3;
        if (len > size - off)
            len = size - off;
        r[n].p = data + off;
        r[n].len = len;
        off += len;
        n++;
    }
    return n;
}

/* Writes the records into out (max bytes); returns the size. */
static size_t fz_serialize(const fz_record_t *r, size_t n, uint8_t *out, size_t max)
{
    size_t off = 0;

    for (size_t i = 0; i < n; i++) {
        size_t len = r[i].len > 0xffff ? 0xffff : r[i].len;
        if (off + 3 + len > max)
            break;
        out[off] = r[i].op;
        out[off + 1] = (uint8_t)len;
        out[off + 2] = (uint8_t)(len >> 8);
        memmove(out + off + 3, r[i].p, len);
        off += 3 + len;
    }
    return off;
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max, unsigned seed)
{
    fz_record_t r[FZ_MAX_RECORDS + 1];
    uint8_t *copy, *grown = NULL;
    size_t n, k, out;

    if (max < 3)
        return LLVMFuzzerMutate(data, size, max);
    copy = malloc(size ? size : 1);
    if (!copy)
        return LLVMFuzzerMutate(data, size, max);
    memcpy(copy, data, size);
    n = fz_records(copy, size, r);
    srand(seed);
    if (n == 0) { /* start a record: a node list from the client */
        static const uint8_t nl[] = { 0x80, 0x05, 0x00, 0x08, 0x02, 0x82, 0x03, 0x00 };
        free(copy);
        memcpy(data, nl, sizeof(nl) < max ? sizeof(nl) : max);
        return sizeof(nl) < max ? sizeof(nl) : max;
    }
    k = (size_t)rand() % n;
    switch (rand() % 10) {
    default: { /* 0-4: the bytes of one record */
        size_t room = max > size ? max - size + r[k].len : r[k].len;
        grown = malloc(room ? room : 1);
        if (!grown)
            break;
        memcpy(grown, r[k].p, r[k].len);
        r[k].len = LLVMFuzzerMutate(grown, r[k].len, room);
        r[k].p = grown;
        break;
    }
    case 5: /* another peer */
        r[k].op = (uint8_t)((r[k].op & ~3u) | ((r[k].op + 1 + (unsigned)rand() % 3) & 3));
        break;
    case 6: /* settle, or not; raw bytes: in TLS, or not */
        r[k].op ^= (r[k].op & 3) == FZ_RAW && rand() % 2 ? FZ_OP_PLAIN : 0x80;
        break;
    case 7: /* a record twice */
        if (n < FZ_MAX_RECORDS) {
            size_t at = (size_t)rand() % (n + 1);
            memmove(&r[at + 1], &r[at], (n - at) * sizeof(r[0]));
            r[at] = r[k + (k >= at)];
            n++;
        }
        break;
    case 8: /* one less */
        if (n > 1) {
            memmove(&r[k], &r[k + 1], (n - k - 1) * sizeof(r[0]));
            n--;
        }
        break;
    case 9: { /* two swapped */
        size_t j = (size_t)rand() % n;
        fz_record_t t = r[k];
        r[k] = r[j];
        r[j] = t;
        break;
    }
    }
    out = fz_serialize(r, n, data, max);
    free(grown);
    free(copy);
    return out;
}

size_t LLVMFuzzerCustomCrossOver(const uint8_t *d1, size_t s1, const uint8_t *d2, size_t s2,
                                 uint8_t *out, size_t max, unsigned seed)
{
    fz_record_t a[FZ_MAX_RECORDS], b[FZ_MAX_RECORDS], r[2 * FZ_MAX_RECORDS];
    size_t na = fz_records(d1, s1, a), nb = fz_records(d2, s2, b), ka, kb, n = 0;

    srand(seed);
    ka = na ? (size_t)rand() % (na + 1) : 0;
    kb = nb ? (size_t)rand() % (nb + 1) : 0;
    for (size_t i = 0; i < ka; i++)   /* the head of one, the tail of the other */
        r[n++] = a[i];
    for (size_t i = kb; i < nb; i++)
        r[n++] = b[i];
    return fz_serialize(r, n, out, max);
}
