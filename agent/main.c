/* skiff-agent: the node agent. Reads its flags, then runs agent.c on one
 * libuv loop until SIGTERM or SIGINT, which close it cleanly: the node's
 * containers keep running (stopping the agent never stops a task).
 */
#include "agent.h"
#include "conn.h"
#include "docker.h"
#include "duration.h"
#include "errors.h"
#include "log.h"
#include "state.h"
#include "tls.h"
#include "token.h"
#include "wire.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#define MAIN_MAX_LABELS 64
#define MAIN_MAX_LABEL_LEN 256
#define MAIN_NAME_MAX 127      /* it is a container label value */
#define MAIN_TOKEN_FILE_MAX 4096
#define MAIN_STATE_DIR "/var/lib/skiff-agent"

static const char usage[] =
    "Usage: skiff-agent [OPTIONS]\n"
    "\n"
    "Runs a node's tasks through the Docker engine for a skiff controller.\n"
    "\n"
    "Options:\n"
    "  --controller ADDR:PORT[,ADDR:PORT...]\n"
    "                               the controller, or the controllers of a cluster on etcd\n"
    "                               (tried in turn; default 127.0.0.1:7400)\n"
    "  --name NODE                  this node's name (default: the host name)\n"
    "  --advertise ADDR             this node's address: published ports and load\n"
    "                               balancers bind to it (default 127.0.0.1)\n"
    "  --join-token-file FILE       the cluster's join token (or SKIFF_JOIN_TOKEN\n"
    "                               holding the token itself); needed only to join\n"
    "  --state-dir DIR              this node's key, certificate and CA, and the\n"
    "                               tmpfs of its tasks' secrets, DIR/secrets (default\n"
    "                               " MAIN_STATE_DIR "; one per agent)\n"
    "  --docker-host unix:///PATH   the engine (or DOCKER_HOST; default\n"
    "                               unix:///var/run/docker.sock)\n"
    "  --label KEY=VALUE            a node label, for placement constraints\n"
    "                               (repeatable)\n"
    "  --heartbeat-interval DURATION  how often to report (default 1s)\n"
    "  --lb-threads N               load balancer threads, 1 to 64 (default: the number\n"
    "                               of online CPUs; 1: on the agent's own loop)\n"
    "  --metrics-listen ADDR:PORT   serve Prometheus metrics at http://ADDR:PORT/metrics\n"
    "                               (off when not given)\n"
    "  --http-tls-cert FILE         serve /metrics over HTTPS with this certificate chain\n"
    "  --http-tls-key FILE          and key (PEM; both, or neither)\n"
    "  --log-level LEVEL            debug, info, warn or error (default info)\n"
    "  -h, --help                   this help\n"
    "  --version                    the version\n";

static int main_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int main_fail(const char *fmt, ...)
{
    va_list ap;

    fputs("skiff-agent: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 2;
}

/* Node names are host names: letters, digits, '.', '-', '_'. */
static int main_name_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > MAIN_NAME_MAX || !isalnum((unsigned char)s[0]))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr(".-_", s[i]))
            return 0;
    return 1;
}

static int main_ip_valid(const char *s)
{
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;

    return uv_ip4_addr(s, 0, &a4) == 0 || uv_ip6_addr(s, 0, &a6) == 0;
}

static int main_label_valid(const char *s)
{
    const char *eq = strchr(s, '=');

    if (!eq || eq == s || (size_t)(eq - s) > MAIN_MAX_LABEL_LEN ||
        strlen(eq + 1) > MAIN_MAX_LABEL_LEN)
        return 0;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20)
            return 0;
    return 1;
}

/* ------------------------------------------------------------ running */

static uv_signal_t sig_term, sig_int;
static agent_t *the_agent;

static void main_on_agent_closed(void *arg)
{
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
}

static void main_on_signal(uv_signal_t *s, int signum)
{
    if (!the_agent) {
        /* A second signal while closing: go now. */
        log_warn("%s again: exiting at once", signum == SIGTERM ? "SIGTERM" : "SIGINT");
        _exit(1);
    }
    log_info("%s: closing", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    agent_close(the_agent, main_on_agent_closed, NULL);
    the_agent = NULL;
}

int main(int argc, char **argv)
{
    enum { OPT_CONTROLLER = 256, OPT_NAME, OPT_ADVERTISE, OPT_TOKEN_FILE, OPT_DOCKER_HOST,
           OPT_LABEL, OPT_HEARTBEAT, OPT_LOG_LEVEL, OPT_VERSION, OPT_METRICS, OPT_STATE_DIR,
           OPT_HTTP_TLS_CERT, OPT_HTTP_TLS_KEY, OPT_LB_THREADS };
    static const struct option options[] = {
        { "controller", required_argument, NULL, OPT_CONTROLLER },
        { "name", required_argument, NULL, OPT_NAME },
        { "advertise", required_argument, NULL, OPT_ADVERTISE },
        { "join-token-file", required_argument, NULL, OPT_TOKEN_FILE },
        { "state-dir", required_argument, NULL, OPT_STATE_DIR },
        { "docker-host", required_argument, NULL, OPT_DOCKER_HOST },
        { "label", required_argument, NULL, OPT_LABEL },
        { "heartbeat-interval", required_argument, NULL, OPT_HEARTBEAT },
        { "log-level", required_argument, NULL, OPT_LOG_LEVEL },
        { "metrics-listen", required_argument, NULL, OPT_METRICS },
        { "lb-threads", required_argument, NULL, OPT_LB_THREADS },
        { "http-tls-cert", required_argument, NULL, OPT_HTTP_TLS_CERT },
        { "http-tls-key", required_argument, NULL, OPT_HTTP_TLS_KEY },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, OPT_VERSION },
        { NULL, 0, NULL, 0 },
    };
    const char *controller = "127.0.0.1:7400", *name = NULL, *advertise = "127.0.0.1";
    const char *token_file = NULL, *docker_host = NULL, *state_dir = MAIN_STATE_DIR;
    agent_state_t state = { 0 };
    int have_state = 0, rc;
    const char *labels[MAIN_MAX_LABELS];
    size_t n_labels = 0;
    int64_t heartbeat_ms = 1000;
    const char *metrics_listen = NULL, *http_cert = NULL, *http_key = NULL;
    unsigned lb_threads = 0; /* 0: the online CPUs */
    enum log_level level = LOG_INFO;
    char hostname[256], token[MAIN_TOKEN_FILE_MAX] = "", socket_path[256], err[512], host[256];
    char token_err[600] = "";
    agent_config_t cfg = { 0 };
    uv_loop_t *loop;
    int opt;

    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        switch (opt) {
        case OPT_CONTROLLER:
            controller = optarg;
            break;
        case OPT_NAME:
            name = optarg;
            break;
        case OPT_ADVERTISE:
            advertise = optarg;
            break;
        case OPT_TOKEN_FILE:
            token_file = optarg;
            break;
        case OPT_STATE_DIR:
            if (!*optarg || strlen(optarg) > 4000)
                return main_fail("--state-dir: '%.100s' is not a directory", optarg);
            state_dir = optarg;
            break;
        case OPT_DOCKER_HOST:
            docker_host = optarg;
            break;
        case OPT_LABEL:
            if (n_labels == MAIN_MAX_LABELS)
                return main_fail("--label: more than %d labels", MAIN_MAX_LABELS);
            if (!main_label_valid(optarg))
                return main_fail("--label: '%.100s' is not KEY=VALUE (at most %d bytes each)",
                                 optarg, MAIN_MAX_LABEL_LEN);
            labels[n_labels++] = optarg;
            break;
        case OPT_HEARTBEAT:
            if (duration_parse(optarg, &heartbeat_ms) != 0 || heartbeat_ms < 10 ||
                heartbeat_ms > 60000)
                return main_fail("--heartbeat-interval: '%.100s' is not a duration between "
                                 "10ms and 1m (like 1s or 500ms)", optarg);
            break;
        case OPT_LB_THREADS: {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (!*optarg || *end || v < 1 || v > 64)
                return main_fail("--lb-threads: '%.100s' is not a number from 1 to 64", optarg);
            lb_threads = (unsigned)v;
            break;
        }
        case OPT_METRICS: {
            struct sockaddr_storage ss;
            if (conn_parse_addr(optarg, &ss) != 0)
                return main_fail("--metrics-listen: '%.100s' is not an IP address and port "
                                 "(like 127.0.0.2:9401)", optarg);
            metrics_listen = optarg;
            break;
        }
        case OPT_HTTP_TLS_CERT:
        case OPT_HTTP_TLS_KEY:
            if (!*optarg)
                return main_fail("--%s: a PEM file, not \"\"",
                                 opt == OPT_HTTP_TLS_CERT ? "http-tls-cert" : "http-tls-key");
            *(opt == OPT_HTTP_TLS_CERT ? &http_cert : &http_key) = optarg;
            break;
        case OPT_LOG_LEVEL:
            if (log_level_parse(optarg, &level) != 0)
                return main_fail("--log-level: '%.100s' is not debug, info, warn or error",
                                 optarg);
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        case OPT_VERSION:
            printf("skiff-agent %s\n", SKIFF_VERSION);
            return 0;
        case ':':
            return main_fail("%s needs a value (see --help)", argv[optind - 1]);
        default:
            return main_fail("unknown option '%s' (see --help)", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return main_fail("unexpected argument '%.100s' (see --help)", argv[optind]);

    {
        static char list[16][WIRE_HOSTPORT_MAX];
        size_t n;
        if (wire_parse_hostlist(controller, 0, list, 16, &n))
            return main_fail("--controller: '%.100s' is not ADDR:PORT[,ADDR:PORT...] (at most 16)",
                             controller);
    }
    if (!main_ip_valid(advertise))
        return main_fail("--advertise: '%.100s' is not an IP address", advertise);
    if (!name) {
        if (gethostname(hostname, sizeof(hostname)) != 0)
            return main_fail("cannot read the host name (%s): give --name", strerror(errno));
        hostname[sizeof(hostname) - 1] = '\0';
        name = hostname;
        if (!main_name_valid(name))
            return main_fail("the host name '%.100s' is not a valid node name: give --name",
                             name);
    } else if (!main_name_valid(name)) {
        return main_fail("--name: '%.100s' must be 1 to %d letters, digits, '.', '-' or '_', "
                         "starting with a letter or digit", name, MAIN_NAME_MAX);
    }
    if (!docker_host)
        docker_host = getenv("DOCKER_HOST") && *getenv("DOCKER_HOST") ? getenv("DOCKER_HOST")
                                                                      : "unix:///var/run/docker.sock";
    if (docker_host_parse(docker_host, socket_path, sizeof(socket_path), err, sizeof(err)) != 0)
        return main_fail("--docker-host: %s", err);

    if ((http_cert != NULL) != (http_key != NULL))
        return main_fail("--http-tls-cert and --http-tls-key go together");
    /* The token: needed only to join, without a node certificate. */
    if (token_file) {
        if (agent_read_token(token_file, token, sizeof(token), err, sizeof(err))) {
            snprintf(token_err, sizeof(token_err), "--join-token-file: %s", err);
            token[0] = '\0';
        }
    } else if (getenv("SKIFF_JOIN_TOKEN") && *getenv("SKIFF_JOIN_TOKEN")) {
        token_t tok;
        char why[256];
        snprintf(token, sizeof(token), "%s", getenv("SKIFF_JOIN_TOKEN"));
        if (token_parse(token, &tok, why, sizeof(why))) {
            snprintf(token_err, sizeof(token_err), "SKIFF_JOIN_TOKEN: %s", why);
            token[0] = '\0';
        }
        memset(&tok, 0, sizeof(tok));
    }
    snprintf(host, sizeof(host), "%.200s/cert.pem", state_dir);
    if (!token[0] && access(host, F_OK) != 0) {
        if (token_err[0])
            return main_fail("%s", token_err);
        return main_fail("no node certificate in %s yet: a join token is needed to join "
                         "(--join-token-file FILE, or SKIFF_JOIN_TOKEN)", state_dir);
    }

    log_init("agent", level);
    if (state_prepare(state_dir, err, sizeof(err)))
        return main_fail("--state-dir: %s", err);
    rc = state_load(state_dir, &state, err, sizeof(err));
    if (rc && (rc != SKIFF_ENOTFOUND || !token[0]))
        return main_fail("--state-dir: %s", err);
    have_state = rc == 0;
    if (have_state && token_err[0])
        log_warn("%s (not needed: the node certificate is in %s)", token_err, state_dir);
    signal(SIGPIPE, SIG_IGN);
    loop = uv_default_loop();
    cfg.controller = controller;
    cfg.name = name;
    cfg.advertise = advertise;
    cfg.token = token;
    cfg.token_file = token_file; /* read again before every join */
    cfg.state_dir = state_dir;
    cfg.state = have_state ? &state : NULL;
    cfg.docker_socket = socket_path;
    cfg.labels = labels;
    cfg.n_labels = n_labels;
    cfg.heartbeat_ms = (uint64_t)heartbeat_ms;
    cfg.metrics_listen = metrics_listen;
    if (!lb_threads) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        lb_threads = ncpu < 1 ? 1 : ncpu > 64 ? 64 : (unsigned)ncpu;
    }
    cfg.lb_threads = lb_threads;
    if (http_cert && !(cfg.http_tls = tls_server_ctx_files(http_cert, http_key, err, sizeof(err))))
        return main_fail("%s", err);
    the_agent = agent_create(loop, &cfg, err, sizeof(err));
    SSL_CTX_free(cfg.http_tls); /* the agent keeps its own reference */
    memset(token, 0, sizeof(token));
    state_clear(&state);
    if (!the_agent) {
        fprintf(stderr, "skiff-agent: %s\n", err);
        return 1;
    }
    uv_signal_init(loop, &sig_term);
    uv_signal_init(loop, &sig_int);
    uv_signal_start(&sig_term, main_on_signal, SIGTERM);
    uv_signal_start(&sig_int, main_on_signal, SIGINT);
    if (agent_start(the_agent) != 0) {
        fprintf(stderr, "skiff-agent: cannot start\n");
        return 1;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    log_info("closed");
    return 0;
}
