/* skiff-controller: flags, start-up, the loop. See ctl.h for the rest. */
#include "ctl.h"
#include "duration.h"
#include "errors.h"
#include "log.h"
#include "pbutil.h"
#include "wire.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
    "Usage: skiff-controller [OPTIONS]\n"
    "\n"
    "Keeps the desired state of a skiff cluster in SQLite and schedules its\n"
    "tasks onto the agents that join it.\n"
    "\n"
    "Options:\n"
    "  --listen ADDR:PORT              where agents and clients connect (default 127.0.0.1:7400)\n"
    "  --data-dir DIR                  state, tokens and cluster id (default /var/lib/skiff)\n"
    "  --heartbeat-timeout DURATION    a node is down after this long without a report (default 3s)\n"
    "  --handshake-timeout DURATION    a connection must say hello within this, and end every\n"
    "                                  frame it begins within it (default 5s)\n"
    "  --max-frame BYTES               largest message accepted (default 4194304)\n"
    "  --max-pending BYTES             output queued per connection before it is cut (default 8388608)\n"
    "  --max-connections N             connections in all (default 4096)\n"
    "  --max-connections-per-address N connections from one address (default 1024)\n"
    "  --max-replicas N                largest replica count of a service (default 100000)\n"
    "  --cert-expiry DURATION          lifetime of the node certificates it issues; agents\n"
    "                                  renew theirs well before (default 2160h: 90 days)\n"
    "  --rotate-token join|admin       write a new token into the data dir and exit; the running\n"
    "                                  controller rereads it, connected peers stay connected\n"
    "  --log-level LEVEL               debug, info, warn or error (default info)\n"
    "  --version                       print the version and exit\n"
    "  -h, --help                      print this help and exit\n";

enum { OPT_LISTEN = 256, OPT_DATA_DIR, OPT_HB, OPT_HS, OPT_MAX_FRAME, OPT_MAX_PENDING,
       OPT_MAX_CONNS, OPT_MAX_CONNS_ADDR, OPT_MAX_REPLICAS, OPT_ROTATE, OPT_LOG, OPT_VERSION,
       OPT_CERT_EXPIRY };

static const struct option options[] = {
    { "listen", required_argument, NULL, OPT_LISTEN },
    { "data-dir", required_argument, NULL, OPT_DATA_DIR },
    { "heartbeat-timeout", required_argument, NULL, OPT_HB },
    { "handshake-timeout", required_argument, NULL, OPT_HS },
    { "max-frame", required_argument, NULL, OPT_MAX_FRAME },
    { "max-pending", required_argument, NULL, OPT_MAX_PENDING },
    { "max-connections", required_argument, NULL, OPT_MAX_CONNS },
    { "max-connections-per-address", required_argument, NULL, OPT_MAX_CONNS_ADDR },
    { "max-replicas", required_argument, NULL, OPT_MAX_REPLICAS },
    { "rotate-token", required_argument, NULL, OPT_ROTATE },
    { "log-level", required_argument, NULL, OPT_LOG },
    { "version", no_argument, NULL, OPT_VERSION },
    { "cert-expiry", required_argument, NULL, OPT_CERT_EXPIRY },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

static int bad_value(const char *flag, const char *value, const char *want)
{
    fprintf(stderr, "skiff-controller: invalid value for --%s: \"%s\" (%s)\n", flag, value, want);
    return 2;
}

static int parse_count(const char *s, unsigned long long min, unsigned long long max,
                       unsigned long long *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    if (!*s || *s == '-')
        return SKIFF_EINVAL;
    v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return SKIFF_EINVAL;
    *out = v;
    return 0;
}

static int parse_flags(int argc, char **argv, ctl_config_t *cfg, enum log_level *level,
                       const char **rotate)
{
    unsigned long long n;
    int64_t ms;
    int opt;

    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        const char *name = opt >= 256 ? options[opt - 256].name : "";
        switch (opt) {
        case OPT_LISTEN: {
            struct sockaddr_storage ss;
            if (strlen(optarg) >= sizeof(cfg->listen) || conn_parse_addr(optarg, &ss))
                return bad_value(name, optarg, "an IP address and port, like 127.0.0.1:7400");
            snprintf(cfg->listen, sizeof(cfg->listen), "%s", optarg);
            break;
        }
        case OPT_DATA_DIR:
            if (!*optarg || strlen(optarg) >= sizeof(cfg->data_dir) - 32)
                return bad_value(name, optarg, "a directory");
            snprintf(cfg->data_dir, sizeof(cfg->data_dir), "%s", optarg);
            break;
        case OPT_HB:
        case OPT_HS:
            if (duration_parse(optarg, &ms) || ms < 100 || ms > 3600000)
                return bad_value(name, optarg, "a duration from 100ms to 1h, like 3s");
            if (opt == OPT_HB)
                cfg->heartbeat_timeout_ms = ms;
            else
                cfg->handshake_timeout_ms = ms;
            break;
        case OPT_MAX_FRAME:
            if (parse_count(optarg, 1024, 256ull << 20, &n))
                return bad_value(name, optarg, "bytes, from 1024 to 268435456");
            cfg->max_frame = (size_t)n;
            break;
        case OPT_MAX_PENDING:
            if (parse_count(optarg, 4096, 1ull << 32, &n))
                return bad_value(name, optarg, "bytes, from 4096 to 4294967296");
            cfg->max_pending = (size_t)n;
            break;
        case OPT_MAX_CONNS:
        case OPT_MAX_CONNS_ADDR:
            if (parse_count(optarg, 1, 1000000, &n))
                return bad_value(name, optarg, "a number from 1 to 1000000");
            if (opt == OPT_MAX_CONNS)
                cfg->max_conns = (unsigned)n;
            else
                cfg->max_conns_per_addr = (unsigned)n;
            break;
        case OPT_MAX_REPLICAS:
            if (parse_count(optarg, 1, 10000000, &n))
                return bad_value(name, optarg, "a number from 1 to 10000000");
            cfg->spec_limits.max_replicas = (uint32_t)n;
            break;
        case OPT_ROTATE:
            if (strcmp(optarg, "join") != 0 && strcmp(optarg, "admin") != 0)
                return bad_value(name, optarg, "join or admin");
            *rotate = optarg;
            break;
        case OPT_CERT_EXPIRY:
            if (duration_parse(optarg, &ms) || ms < 10000 || ms > 87600LL * 3600000)
                return bad_value(name, optarg, "a duration from 10s to 87600h, like 2160h");
            cfg->cert_expiry_ms = ms;
            break;
        case OPT_LOG:
            if (log_level_parse(optarg, level))
                return bad_value(name, optarg, "debug, info, warn or error");
            break;
        case OPT_VERSION:
            printf("skiff-controller %s\n", SKIFF_VERSION);
            exit(0);
        case 'h':
            fputs(usage, stdout);
            exit(0);
        default:
            fprintf(stderr, "Run 'skiff-controller --help' for the options.\n");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "skiff-controller: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (cfg->max_pending < cfg->max_frame + 4)
        cfg->max_pending = cfg->max_frame + 4;
    return 0;
}

int main(int argc, char **argv)
{
    static ctl_t ctl;
    enum log_level level = LOG_INFO;
    const char *rotate = NULL;
    char err[512], path[PATH_MAX + 16];
    uv_loop_t *loop = uv_default_loop();
    int rc;

    ctl.cfg = (ctl_config_t){
        .listen = "127.0.0.1:7400",
        .data_dir = "/var/lib/skiff",
        .heartbeat_timeout_ms = 3000,
        .handshake_timeout_ms = 5000,
        .max_frame = 4 << 20,
        .max_pending = 8 << 20,
        .max_conns = 4096,
        .max_conns_per_addr = 1024,
        .cert_expiry_ms = 2160LL * 3600000,
        .spec_limits = spec_limits_default,
    };
    if ((rc = parse_flags(argc, argv, &ctl.cfg, &level, &rotate)))
        return rc;
    /* An agent silent for this long is cut off; it reconnects. */
    ctl.cfg.agent_timeout_ms = ctl.cfg.heartbeat_timeout_ms * 10;
    {
        /* The listen address is one of the names of its certificate. */
        char host[128];
        int port;
        if (wire_parse_hostport(ctl.cfg.listen, host, sizeof(host), &port) == 0 &&
            strcmp(host, "0.0.0.0") != 0 && strcmp(host, "::") != 0 &&
            strcmp(host, "127.0.0.1") != 0 && strcmp(host, "::1") != 0)
            snprintf(ctl.cfg.server_names, sizeof(ctl.cfg.server_names), "IP:%s", host);
    }
    log_init("controller", level);
    umask(077); /* the database and tokens are for the controller's user only */
    if (rotate) {
        if (tokens_rotate(ctl.cfg.data_dir, rotate, err, sizeof(err))) {
            fprintf(stderr, "skiff-controller: %s\n", err);
            return 1;
        }
        printf("new %s token written to %s/%s-token\n", rotate, ctl.cfg.data_dir, rotate);
        return 0;
    }
    model_init(&ctl.model);
    if (tokens_prepare(&ctl, err, sizeof(err))) {
        log_error("%s", err);
        return 1;
    }
    snprintf(path, sizeof(path), "%s/state.db", ctl.cfg.data_dir);
    if (!(ctl.store = store_open(path, err, sizeof(err))) ||
        store_load(ctl.store, &ctl.model, err, sizeof(err)) ||
        tokens_cluster_id(&ctl, err, sizeof(err)) || tokens_ca(&ctl, err, sizeof(err))) {
        log_error("%s", err);
        rc = 1;
        goto out_close;
    }
    log_info("state loaded: %u nodes, %u services, %u tasks; CA sha256 %s",
             HASH_COUNT(ctl.model.nodes), HASH_COUNT(ctl.model.services),
             HASH_COUNT(ctl.model.tasks), ca_digest(ctl.ca));
    if ((rc = ctl_start(&ctl, loop))) {
        rc = 1;
        goto out_close;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    log_info("stopped");
    rc = 0;

out_close:
    uv_loop_close(loop);
    store_close(ctl.store);
    model_free(&ctl.model);
    free(ctl.endpoints_packed);
    SSL_CTX_free(ctl.tls);
    ca_free(ctl.ca);
    return rc;
}
