/* skiff-bench-scale: the client half of the controller's scale benchmark
 * (run.sh). It talks to skiff-controller as the CLI does (TLS, the
 * controller checked against the CA digest of the admin token, then
 * Hello{ROLE_CLIENT} with the token's secret, then requests and ServiceGet
 * / TaskList / NodeList polling) and times one step per invocation:
 *
 *   nodes    --count N [--since-ms MS]     N nodes ready (reported since MS)
 *   create   --service S --replicas N --image I     until all N run
 *   update   --service S --image I [--parallelism P --monitor D --delay D
 *            --order stop-first|start-first]        until the update completed
 *   scale    --service S --replicas N      until N run (N = 0: until none runs)
 *   tasks    --service S --out FILE        the running tasks' ids, to FILE
 *   recover  --service S --count N --since-ms MS --before FILE [--settle D]
 *            every node back and reporting, the same tasks running as in
 *            FILE, none created since MS
 *
 * Common options: --controller ADDR:PORT (default 127.0.0.1:7400),
 * --token-file FILE (the admin token), --timeout D (default 120s),
 * --poll D (the polling period, default 50ms).
 *
 * It prints its figures as KEY=VALUE lines on stdout, progress on stderr,
 * and exits 0 when the step converged, 1 when it did not (timeout, a paused
 * update, ids that changed). Nothing is judged on a timing.
 *
 * Blocking sockets are fine here: it is a client with one request in flight
 * (TLS runs on them through a memory-BIO session, proto/tls.h).
 */
#include "buf.h"
#include "duration.h"
#include "errors.h"
#include "pbutil.h"
#include "spec.h"
#include "tls.h"
#include "token.h"
#include "wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BENCH_MAX_FRAME ((size_t)16 << 20) /* TaskList pages fit 4 MiB; room to spare */

typedef struct opts {
    char controller[128];
    char token[256];
    char service[128];
    char image[256];
    char out[512], before[512];
    long long count, replicas, parallelism;
    long long since_ms;
    int64_t monitor_ms, delay_ms, timeout_ms, poll_ms, settle_ms;
    int order; /* -1: unchanged */
} opts_t;

static int fd = -1;
static tls_t *tls;
static SSL_CTX *tls_ctx;
static buf_t inbuf = BUF_INIT;
static uint64_t next_id = 1;
static opts_t o;

static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "skiff-bench-scale: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* --------------------------------------------------------------- wire */

/* Writes what the TLS session made to the socket. */
static int flush_tls(void)
{
    char buf[65536];
    size_t len;

    while ((len = tls_out_take(tls, buf, sizeof(buf))) > 0) {
        size_t off = 0;
        while (off < len) {
            ssize_t n = write(fd, buf + off, len - off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return -errno;
            off += (size_t)n;
        }
    }
    return 0;
}

/* Reads once from the socket into the session. */
static void read_tls(void)
{
    char buf[65536];
    ssize_t n;

    do
        n = read(fd, buf, sizeof(buf));
    while (n < 0 && errno == EINTR);
    if (n == 0)
        die("%s", "the controller closed the connection");
    if (n < 0)
        die("read: %s", strerror(errno));
    if (tls_feed(tls, buf, (size_t)n))
        die("TLS: %s", tls_reason(tls));
}

static int send_env(const Envelope *env)
{
    size_t len = wire_frame_size(env);
    uint8_t *frame = malloc(len);
    int rc;

    if (!frame)
        return -ENOMEM;
    wire_pack(env, frame);
    rc = tls_write(tls, frame, len);
    free(frame);
    return rc ? rc : flush_tls();
}

static Envelope *recv_env(void)
{
    Envelope *env = NULL;
    int rc;

    for (;;) {
        rc = wire_decode(&inbuf, BENCH_MAX_FRAME, &env);
        if (rc == 1)
            return env;
        if (rc < 0)
            die("bad frame from the controller: %s", skiff_strerror(rc));
        if (buf_reserve(&inbuf, 1 << 20, BENCH_MAX_FRAME + (2u << 20)))
            die("%s", "out of memory");
        long n = tls_read(tls, inbuf.last, buf_room(&inbuf));
        if (n < 0)
            die("TLS: %s", n == SKIFF_ECLOSED ? "the controller ended the session" : tls_reason(tls));
        if (n == 0) {
            read_tls();
            continue;
        }
        inbuf.last += n;
    }
}

/* The TLS handshake on the connected socket. */
static void handshake(void)
{
    int rc;

    tls_free(tls);
    if (!(tls = tls_new(tls_ctx)))
        die("%s", "out of memory");
    while ((rc = tls_handshake(tls)) == 0) {
        if (flush_tls())
            die("write: %s", strerror(errno));
        read_tls();
    }
    if (rc < 0)
        die("TLS: %s", tls_reason(tls));
    if (flush_tls())
        die("write: %s", strerror(errno));
}

/* Sends env as a request and returns its reply (caller frees with
 * wire_free). An Error reply is returned as is. */
static Envelope *call(Envelope *env)
{
    Envelope *r;
    int rc;

    env->id = next_id++;
    if ((rc = send_env(env)))
        die("send: %s", skiff_strerror(rc));
    for (;;) {
        r = recv_env();
        if (r->id == env->id)
            return r;
        wire_free(r);
    }
}

static int try_connect(void)
{
    char host[128];
    int port, one = 1;
    struct sockaddr_in sa = { .sin_family = AF_INET };
    struct timeval tv = { 60, 0 };

    if (wire_parse_hostport(o.controller, host, sizeof(host), &port) ||
        inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        die("--controller %s: want IPv4:PORT", o.controller);
    sa.sin_port = htons((uint16_t)port);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
        close(fd);
        fd = -1;
        return -1;
    }
    return 0;
}

static void hello(void)
{
    int64_t deadline = mono_ms() + o.timeout_ms;
    Envelope env = PB_ENVELOPE_INIT, *r;
    Hello h = PB_HELLO_INIT;
    token_t tok;
    char err[256];

    if (token_parse(o.token, &tok, err, sizeof(err)))
        die("the admin token: %s", err);
    if (!tls_ctx) {
        tls_policy_t policy = { .server = 0, .peer_cert = TLS_PEER_REQUIRED,
                                .peer_role = PKI_ROLE_CONTROLLER };
        memcpy(policy.pin, tok.digest, sizeof(policy.pin));
        if (!(tls_ctx = tls_ctx_new(&policy, NULL, err, sizeof(err))))
            die("TLS: %s", err);
    }
    while (try_connect()) {
        if (mono_ms() > deadline)
            die("cannot connect to %s", o.controller);
        sleep_ms(50);
    }
    handshake();
    h.role = ROLE_CLIENT;
    h.token = tok.secret;
    h.version = "skiff-bench-scale";
    env.msg_case = MSG_HELLO;
    env.hello = &h;
    r = call(&env);
    if (r->msg_case != MSG_HELLO_REPLY)
        die("hello refused: %s", r->msg_case == MSG_ERROR ? r->error->message : "?");
    wire_free(r);
}

static void check_error(const Envelope *r, const char *what)
{
    if (r->msg_case == MSG_ERROR) {
        fprintf(stderr, "skiff-bench-scale: %s: %s\n", what, r->error->message);
        exit(1);
    }
}

static Envelope *service_get(void)
{
    Envelope env = PB_ENVELOPE_INIT, *r;
    ServiceGet g = PB_SERVICE_GET_INIT;

    g.service = o.service;
    env.msg_case = MSG_SERVICE_GET;
    env.service_get = &g;
    r = call(&env);
    check_error(r, "service get");
    return r;
}

/* Every page of the TaskList, as one reply. */
static Envelope *task_list(int all)
{
    Envelope env = PB_ENVELOPE_INIT, *r = NULL, *page;
    TaskList tl = PB_TASK_LIST_INIT;

    tl.service = o.service;
    tl.all = all;
    env.msg_case = MSG_TASK_LIST;
    env.task_list = &tl;
    do {
        page = call(&env);
        check_error(page, "task list");
        tl.offset = page->task_list_reply->next_offset;
        if (!r) {
            r = page;
        } else {
            if (pb_tasks_append(r->task_list_reply, page->task_list_reply))
                die("out of memory");
            wire_free(page);
        }
    } while (tl.offset);
    return r;
}

static Envelope *node_list(void)
{
    Envelope env = PB_ENVELOPE_INIT, *r;
    NodeList nl = PB_NODE_LIST_INIT;

    env.msg_case = MSG_NODE_LIST;
    env.node_list = &nl;
    r = call(&env);
    check_error(r, "node list");
    return r;
}

static size_t nodes_back(const NodeListReply *nl, int64_t since)
{
    size_t n = 0;

    for (size_t i = 0; i < nl->n_nodes; i++)
        n += nl->nodes[i]->state == NODE_READY && nl->nodes[i]->last_heartbeat_ms >= since;
    return n;
}

/* ----------------------------------------------------------- commands */

static int cmd_nodes(void)
{
    int64_t t0 = o.since_ms ? o.since_ms : wall_ms(), deadline = mono_ms() + o.timeout_ms;
    int64_t last_log = 0;

    hello();
    for (;;) {
        Envelope *r = node_list();
        size_t back = nodes_back(r->node_list_reply, o.since_ms);
        size_t all = r->node_list_reply->n_nodes;

        wire_free(r);
        if ((long long)back >= o.count) {
            printf("nodes=%zu\nnodes_ready_ms=%lld\n", back, (long long)(wall_ms() - t0));
            return 0;
        }
        if (mono_ms() > deadline) {
            printf("nodes=%zu\nnodes_ready_ms=timeout\n", back);
            return 1;
        }
        if (mono_ms() - last_log >= 1000) {
            fprintf(stderr, "  nodes: %zu/%lld ready (%zu known)\n", back, o.count, all);
            last_log = mono_ms();
        }
        sleep_ms(o.poll_ms);
    }
}

/* Polls ServiceGet until running_tasks == want (and the update, if any,
 * completed when want_update). Returns the wall time it happened, or -1. */
static int64_t wait_running(uint32_t want, int want_update, int64_t t0, const char *what)
{
    int64_t deadline = mono_ms() + o.timeout_ms, last_log = 0;

    for (;;) {
        Envelope *r = service_get();
        const Service *s = r->service_reply->service;
        UpdateState st = s->update_status ? s->update_status->state : UPDATE_NONE;
        uint32_t running = s->running_tasks;
        int done = running == want && s->desired_tasks == want &&
                   (!want_update || st == UPDATE_COMPLETED);

        if (st == UPDATE_PAUSED || st == UPDATE_ROLLBACK_STARTED ||
            st == UPDATE_ROLLBACK_PAUSED || st == UPDATE_ROLLBACK_COMPLETED) {
            fprintf(stderr, "skiff-bench-scale: %s: update state %d: %s\n", what, st,
                    s->update_status->message);
            wire_free(r);
            return -1;
        }
        wire_free(r);
        if (done)
            return wall_ms();
        if (mono_ms() > deadline)
            return -1;
        if (mono_ms() - last_log >= 1000) {
            fprintf(stderr, "  %s: %u/%u running after %.1f s\n", what, running, want,
                    (double)(wall_ms() - t0) / 1000);
            last_log = mono_ms();
        }
        sleep_ms(o.poll_ms);
    }
}

static int cmd_create(void)
{
    Envelope env = PB_ENVELOPE_INIT, *r;
    ServiceCreate sc = PB_SERVICE_CREATE_INIT;
    ServiceSpec *spec = spec_new();
    int64_t t0, t_reply, t_done;

    if (!spec)
        die("%s", "out of memory");
    pb_set_str(&spec->name, o.service);
    pb_set_str(&spec->image, o.image);
    spec->replicas = (uint32_t)o.replicas;
    hello();
    sc.spec = spec;
    env.msg_case = MSG_SERVICE_CREATE;
    env.service_create = &sc;
    t0 = wall_ms();
    r = call(&env);
    t_reply = wall_ms();
    check_error(r, "service create");
    wire_free(r);
    pb_free(spec);
    t_done = wait_running((uint32_t)o.replicas, 0, t0, "create");
    printf("create_reply_ms=%lld\n", (long long)(t_reply - t0));
    if (t_done < 0) {
        printf("create_running_ms=timeout\n");
        return 1;
    }
    printf("create_running_ms=%lld\n", (long long)(t_done - t0));
    return 0;
}

static int cmd_update(void)
{
    Envelope env = PB_ENVELOPE_INIT, *r, *got;
    ServiceUpdate su = PB_SERVICE_UPDATE_INIT;
    ServiceSpec *spec;
    uint64_t version;
    int64_t t0, t_done;

    hello();
    got = service_get();
    spec = pb_dup(got->service_reply->service->spec);
    version = got->service_reply->service->version;
    wire_free(got);
    if (!spec)
        die("%s", "out of memory");
    if (*o.image)
        pb_set_str(&spec->image, o.image);
    if (o.parallelism >= 0)
        spec->update->parallelism = (uint32_t)o.parallelism;
    if (o.monitor_ms >= 0)
        spec->update->monitor_ms = o.monitor_ms;
    if (o.delay_ms >= 0)
        spec->update->delay_ms = o.delay_ms;
    if (o.order >= 0)
        spec->update->order = (UpdateOrder)o.order;
    su.service = o.service;
    su.spec = spec;
    su.version = version;
    env.msg_case = MSG_SERVICE_UPDATE;
    env.service_update = &su;
    t0 = wall_ms();
    r = call(&env);
    check_error(r, "service update");
    wire_free(r);
    t_done = wait_running(spec->replicas, 1, t0, "update");
    pb_free(spec);
    if (t_done < 0) {
        printf("update_ms=timeout\n");
        return 1;
    }
    printf("update_ms=%lld\n", (long long)(t_done - t0));
    return 0;
}

static size_t count_running(const TaskListReply *tl)
{
    size_t n = 0;

    for (size_t i = 0; i < tl->n_tasks; i++)
        n += tl->tasks[i]->state == TASK_RUNNING || tl->tasks[i]->state == TASK_STARTING;
    return n;
}

static int cmd_scale(void)
{
    Envelope env = PB_ENVELOPE_INIT, *r;
    ServiceScale ss = PB_SERVICE_SCALE_INIT;
    int64_t t0, deadline, last_log = 0;

    hello();
    ss.service = o.service;
    ss.replicas = (uint32_t)o.replicas;
    env.msg_case = MSG_SERVICE_SCALE;
    env.service_scale = &ss;
    t0 = wall_ms();
    r = call(&env);
    check_error(r, "service scale");
    wire_free(r);
    if (o.replicas > 0) {
        int64_t t = wait_running((uint32_t)o.replicas, 0, t0, "scale");
        if (t < 0)
            printf("scale_ms=timeout\n");
        else
            printf("scale_ms=%lld\n", (long long)(t - t0));
        return t < 0;
    }
    /* Down to 0: until no task of the service is starting or running, on
     * any node, history included. */
    deadline = mono_ms() + o.timeout_ms;
    for (;;) {
        size_t running, n;
        r = task_list(1);
        running = count_running(r->task_list_reply);
        n = r->task_list_reply->n_tasks;
        wire_free(r);
        if (running == 0) {
            printf("scale_down_ms=%lld\nscale_down_tasks=%zu\n", (long long)(wall_ms() - t0), n);
            return 0;
        }
        if (mono_ms() > deadline) {
            printf("scale_down_ms=timeout\n");
            return 1;
        }
        if (mono_ms() - last_log >= 1000) {
            fprintf(stderr, "  scale: %zu still running after %.1f s\n", running,
                    (double)(wall_ms() - t0) / 1000);
            last_log = mono_ms();
        }
        sleep_ms(o.poll_ms);
    }
}

static int by_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmd_tasks(void)
{
    Envelope *r;
    const TaskListReply *tl;
    FILE *f;
    size_t running = 0;

    hello();
    r = task_list(0);
    tl = r->task_list_reply;
    if (!(f = fopen(o.out, "w")))
        die("%s: cannot write", o.out);
    for (size_t i = 0; i < tl->n_tasks; i++) {
        if (tl->tasks[i]->state != TASK_RUNNING)
            continue;
        fprintf(f, "%s\n", tl->tasks[i]->id);
        running++;
    }
    fclose(f);
    printf("tasks=%zu\ntasks_running=%zu\n", tl->n_tasks, running);
    wire_free(r);
    return 0;
}

/* The ids in FILE, sorted. */
static char **read_ids(const char *path, size_t *n)
{
    FILE *f = fopen(path, "r");
    char line[128], **ids = NULL;
    size_t cap = 0;

    *n = 0;
    if (!f)
        die("%s: cannot read", path);
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!*line)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 1024;
            if (!(ids = realloc(ids, cap * sizeof(*ids))))
                die("%s", "out of memory");
        }
        if (!(ids[(*n)++] = strdup(line)))
            die("%s", "out of memory");
    }
    fclose(f);
    qsort(ids, *n, sizeof(*ids), by_str);
    return ids;
}

typedef struct recover_view {
    size_t nodes;          /* ready, and reported since the restart */
    size_t running_before; /* tasks of FILE running again */
    size_t new_ids;        /* desired-running tasks not in FILE */
} recover_view_t;

/* Looks at the nodes and at the desired-running tasks (the history of a
 * large service is too big to fetch at every poll; a task created twice is
 * a desired-running task with a new id). */
static void recover_look(char **before, size_t n_before, recover_view_t *v)
{
    Envelope *r = node_list();
    const TaskListReply *tl;

    memset(v, 0, sizeof(*v));
    v->nodes = nodes_back(r->node_list_reply, o.since_ms);
    wire_free(r);
    r = task_list(0);
    tl = r->task_list_reply;
    for (size_t i = 0; i < tl->n_tasks; i++) {
        const Task *t = tl->tasks[i];
        const char *key = t->id;

        if (!bsearch(&key, before, n_before, sizeof(*before), by_str))
            v->new_ids++;
        else if (t->state == TASK_RUNNING)
            v->running_before++;
    }
    wire_free(r);
}

/* Tasks of the service, history included, created since the restart. */
static size_t recover_created_after(void)
{
    Envelope *r = task_list(1);
    const TaskListReply *tl = r->task_list_reply;
    size_t n = 0;

    for (size_t i = 0; i < tl->n_tasks; i++)
        n += tl->tasks[i]->created_ms >= o.since_ms;
    wire_free(r);
    return n;
}

static int cmd_recover(void)
{
    size_t n_before;
    char **before = read_ids(o.before, &n_before);
    int64_t deadline = mono_ms() + o.timeout_ms, last_log = 0;
    int64_t t_nodes = -1, t_done = -1, settle_end = 0;
    recover_view_t v;
    size_t max_new = 0, max_after;
    int ok = 1;

    hello();
    for (;;) {
        recover_look(before, n_before, &v);
        if (v.new_ids > max_new)
            max_new = v.new_ids;
        if (t_nodes < 0 && (long long)v.nodes >= o.count)
            t_nodes = wall_ms();
        if (t_done < 0 && (long long)v.nodes >= o.count && v.running_before == n_before &&
            v.new_ids == 0) {
            t_done = wall_ms();
            settle_end = mono_ms() + o.settle_ms;
        }
        if (t_done >= 0 && mono_ms() >= settle_end)
            break;
        if (mono_ms() > deadline) {
            ok = 0;
            break;
        }
        if (mono_ms() - last_log >= 1000) {
            fprintf(stderr, "  recover: %zu/%lld nodes back, %zu/%zu tasks running, %zu new "
                    "after %.1f s\n", v.nodes, o.count, v.running_before, n_before, v.new_ids,
                    (double)(wall_ms() - o.since_ms) / 1000);
            last_log = mono_ms();
        }
        sleep_ms(o.poll_ms);
    }
    /* Still whole after the settle time? */
    if (ok && ((long long)v.nodes < o.count || v.running_before != n_before || v.new_ids))
        ok = 0;
    max_after = recover_created_after();
    if (t_nodes < 0)
        printf("recover_nodes_ms=timeout\n");
    else
        printf("recover_nodes_ms=%lld\n", (long long)(t_nodes - o.since_ms));
    if (t_done < 0)
        printf("recover_ms=timeout\n");
    else
        printf("recover_ms=%lld\n", (long long)(t_done - o.since_ms));
    printf("recover_tasks_before=%zu\nrecover_running_again=%zu\n", n_before, v.running_before);
    printf("recover_new_ids=%zu\nrecover_created_after=%zu\nrecover_same_ids=%s\n", max_new,
           max_after, ok && max_new == 0 && max_after == 0 ? "yes" : "no");
    for (size_t i = 0; i < n_before; i++)
        free(before[i]);
    free(before);
    return ok && max_new == 0 && max_after == 0 ? 0 : 1;
}

/* -------------------------------------------------------------- flags */

static const char usage[] =
    "Usage: skiff-bench-scale COMMAND [OPTIONS]   (see the top of bench_scale.c)\n"
    "Commands: nodes, create, update, scale, tasks, recover.\n"
    "Options: --controller ADDR:PORT --token-file FILE --service S --image I\n"
    "  --replicas N --count N --since-ms MS --parallelism P --monitor D --delay D\n"
    "  --order stop-first|start-first --out FILE --before FILE --settle D\n"
    "  --timeout D (120s) --poll D (50ms)\n"
    "It is the client half of tests/bench/scale/run.sh, a benchmark.\n";

static void read_token(const char *path)
{
    FILE *f = fopen(path, "r");
    size_t n;

    if (!f)
        die("%s: cannot read", path);
    n = fread(o.token, 1, sizeof(o.token) - 1, f);
    fclose(f);
    o.token[n] = '\0';
    o.token[strcspn(o.token, " \t\r\n")] = '\0';
}

static int64_t dur(const char *s)
{
    int64_t ms;

    if (duration_parse(s, &ms))
        die("not a duration: %s", s);
    return ms;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "controller", 1, NULL, 'c' }, { "token-file", 1, NULL, 't' },
        { "service", 1, NULL, 's' },    { "image", 1, NULL, 'i' },
        { "replicas", 1, NULL, 'r' },   { "count", 1, NULL, 'n' },
        { "since-ms", 1, NULL, 'S' },   { "parallelism", 1, NULL, 'p' },
        { "monitor", 1, NULL, 'm' },    { "delay", 1, NULL, 'd' },
        { "order", 1, NULL, 'o' },      { "out", 1, NULL, 'O' },
        { "before", 1, NULL, 'B' },     { "settle", 1, NULL, 'E' },
        { "timeout", 1, NULL, 'T' },    { "poll", 1, NULL, 'P' },
        { "help", 0, NULL, 'h' },       { NULL, 0, NULL, 0 },
    };
    const char *cmd;
    int opt;

    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    cmd = argv[1];
    snprintf(o.controller, sizeof(o.controller), "127.0.0.1:7400");
    snprintf(o.service, sizeof(o.service), "scale");
    o.parallelism = -1;
    o.monitor_ms = o.delay_ms = -1;
    o.order = -1;
    o.timeout_ms = 120000;
    o.poll_ms = 50;
    o.settle_ms = 5000;
    optind = 2;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': snprintf(o.controller, sizeof(o.controller), "%s", optarg); break;
        case 't': read_token(optarg); break;
        case 's': snprintf(o.service, sizeof(o.service), "%s", optarg); break;
        case 'i': snprintf(o.image, sizeof(o.image), "%s", optarg); break;
        case 'r': o.replicas = atoll(optarg); break;
        case 'n': o.count = atoll(optarg); break;
        case 'S': o.since_ms = atoll(optarg); break;
        case 'p': o.parallelism = atoll(optarg); break;
        case 'm': o.monitor_ms = dur(optarg); break;
        case 'd': o.delay_ms = dur(optarg); break;
        case 'o':
            if (spec_update_order_parse(optarg, (UpdateOrder *)&o.order))
                die("--order %s: stop-first or start-first", optarg);
            break;
        case 'O': snprintf(o.out, sizeof(o.out), "%s", optarg); break;
        case 'B': snprintf(o.before, sizeof(o.before), "%s", optarg); break;
        case 'E': o.settle_ms = dur(optarg); break;
        case 'T': o.timeout_ms = dur(optarg); break;
        case 'P': o.poll_ms = dur(optarg); break;
        case 'h': fputs(usage, stdout); return 0;
        default: return 2;
        }
    }
    if (!*o.token && getenv("SKIFF_TOKEN"))
        snprintf(o.token, sizeof(o.token), "%s", getenv("SKIFF_TOKEN"));
    if (strcmp(cmd, "nodes") == 0)
        return cmd_nodes();
    if (strcmp(cmd, "create") == 0)
        return cmd_create();
    if (strcmp(cmd, "update") == 0)
        return cmd_update();
    if (strcmp(cmd, "scale") == 0)
        return cmd_scale();
    if (strcmp(cmd, "tasks") == 0 && *o.out)
        return cmd_tasks();
    if (strcmp(cmd, "recover") == 0 && *o.before && o.since_ms)
        return cmd_recover();
    fputs(usage, stderr);
    return 2;
}
