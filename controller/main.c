/* skiff-controller: flags, start-up, the loop. See ctl.h for the rest. */
#include "ctl.h"
#include "duration.h"
#include "etcd.h"
#include "migrate.h"
#include "unlock.h"
#include "errors.h"
#include "log.h"
#include "pbutil.h"
#include "tls.h"
#include "wire.h"

#include <openssl/crypto.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
    "Usage: skiff-controller [OPTIONS]\n"
    "       skiff-controller migrate --from sqlite:DIR --to etcd://HOST:PORT[,...] [OPTIONS]\n"
    "       skiff-controller unlock [--host ADDR:PORT] [--data-dir DIR] < KEY\n"
    "\n"
    "Keeps the desired state of a skiff cluster in SQLite, or in etcd shared by\n"
    "several controllers of which one leads, and schedules its tasks onto the\n"
    "agents that join it.\n"
    "\n"
    "Options:\n"
    "  --listen ADDR:PORT              where agents and clients connect (default 127.0.0.1:7400)\n"
    "  --advertise ADDR:PORT           where the other controllers send agents and clients when\n"
    "                                  this one leads (default: the --listen address)\n"
    "  --data-dir DIR                  state, tokens and cluster id (default /var/lib/skiff);\n"
    "                                  with etcd, copies of the cluster id and tokens\n"
    "  --store sqlite|etcd://HOST:PORT[,HOST:PORT...]\n"
    "                                  where the state lives (default sqlite: DIR/state.db)\n"
    "  --store-prefix PREFIX           etcd: the cluster's keys (default /skiff/default/)\n"
    "  --store-ca FILE, --store-cert FILE, --store-key FILE\n"
    "                                  etcd: TLS to its client port (https; a client certificate)\n"
    "  --leader-lease DURATION         etcd: the leader's lease; a dead leader is replaced after\n"
    "                                  about this long (default 3s)\n"
    "  --heartbeat-timeout DURATION    a node is down after this long without a report (default 3s)\n"
    "  --disconnect-grace DURATION     a node whose agent's connection closed is down after\n"
    "                                  this, unless it reconnects (default 1s)\n"
    "  --handshake-timeout DURATION    a connection must say hello within this, and end every\n"
    "                                  frame it begins within it (default 5s)\n"
    "  --max-frame BYTES               largest message accepted (default 4194304)\n"
    "  --max-pending BYTES             output queued per connection before it is cut (default 8388608)\n"
    "  --max-connections N             connections in all (default 4096)\n"
    "  --max-connections-per-address N connections from one address (default 1024)\n"
    "  --max-replicas N                largest replica count of a service (default 100000)\n"
    "  --metrics-listen ADDR:PORT      serve Prometheus metrics at http://ADDR:PORT/metrics\n"
    "                                  (off when not given)\n"
    "  --http-listen ADDR:PORT         serve the HTTP API (/api/v1/) and the dashboard (/)\n"
    "                                  (off when not given)\n"
    "  --docker-api-listen ADDR:PORT   serve the Docker Engine API's Swarm endpoints, for the\n"
    "                                  docker CLI (DOCKER_HOST=tcp://ADDR:PORT); loopback only\n"
    "                                  unless --docker-api-tls (off when not given)\n"
    "  --docker-api-tls                the Docker API over TLS, a client certificate of the\n"
    "                                  cluster CA required (skiff cluster client-cert DIR)\n"
    "  --autolock                      wrap the secrets' data key in an unlock key, printed once;\n"
    "                                  after a restart nothing that needs a secret is served\n"
    "                                  until skiff-controller unlock is given it\n"
    "  --rebalance on|off              move tasks of stateless services onto nodes that join or\n"
    "                                  come back, one at a time (default on)\n"
    "  --rebalance-delay DURATION      how long a node must be ready first (default 30s)\n"
    "  --event-buffer N                events kept for `skiff events --since` (default 50000)\n"
    "  --http-tls-cert FILE            serve the HTTP listeners (metrics, API) over HTTPS with\n"
    "  --http-tls-key FILE             this certificate chain and key (PEM; both, or neither)\n"
    "  --cert-expiry DURATION          lifetime of the node certificates it issues; agents\n"
    "                                  renew theirs well before (default 2160h: 90 days)\n"
    "  --rotate-token join|admin       write a new token into the data dir (with etcd: into the\n"
    "                                  store) and exit; the running controllers take it, connected\n"
    "                                  peers stay connected\n"
    "  --log-level LEVEL               debug, info, warn or error (default info)\n"
    "  --version                       print the version and exit\n"
    "  -h, --help                      print this help and exit\n";

enum { OPT_LISTEN = 256, OPT_DATA_DIR, OPT_HB, OPT_HS, OPT_MAX_FRAME, OPT_MAX_PENDING,
       OPT_MAX_CONNS, OPT_MAX_CONNS_ADDR, OPT_MAX_REPLICAS, OPT_ROTATE, OPT_LOG, OPT_VERSION,
       OPT_METRICS, OPT_EVENT_BUFFER, OPT_REBALANCE, OPT_REBALANCE_DELAY, OPT_DISCONNECT,
       OPT_ADVERTISE, OPT_STORE, OPT_STORE_PREFIX, OPT_STORE_CA, OPT_STORE_CERT, OPT_STORE_KEY,
       OPT_LEADER_LEASE, OPT_HTTP, OPT_CERT_EXPIRY, OPT_HTTP_TLS_CERT, OPT_HTTP_TLS_KEY,
       OPT_DOCKER, OPT_DOCKER_TLS, OPT_AUTOLOCK };

/* In the order of the OPT_ values: an option's name is options[opt - 256]. */
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
    { "metrics-listen", required_argument, NULL, OPT_METRICS },
    { "event-buffer", required_argument, NULL, OPT_EVENT_BUFFER },
    { "rebalance", required_argument, NULL, OPT_REBALANCE },
    { "rebalance-delay", required_argument, NULL, OPT_REBALANCE_DELAY },
    { "disconnect-grace", required_argument, NULL, OPT_DISCONNECT },
    { "advertise", required_argument, NULL, OPT_ADVERTISE },
    { "store", required_argument, NULL, OPT_STORE },
    { "store-prefix", required_argument, NULL, OPT_STORE_PREFIX },
    { "store-ca", required_argument, NULL, OPT_STORE_CA },
    { "store-cert", required_argument, NULL, OPT_STORE_CERT },
    { "store-key", required_argument, NULL, OPT_STORE_KEY },
    { "leader-lease", required_argument, NULL, OPT_LEADER_LEASE },
    { "http-listen", required_argument, NULL, OPT_HTTP },
    { "cert-expiry", required_argument, NULL, OPT_CERT_EXPIRY },
    { "http-tls-cert", required_argument, NULL, OPT_HTTP_TLS_CERT },
    { "http-tls-key", required_argument, NULL, OPT_HTTP_TLS_KEY },
    { "docker-api-listen", required_argument, NULL, OPT_DOCKER },
    { "docker-api-tls", no_argument, NULL, OPT_DOCKER_TLS },
    { "autolock", no_argument, NULL, OPT_AUTOLOCK },
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

/* The store flags, checked with the others. */
typedef struct main_store {
    const char *endpoints;  /* NULL: sqlite */
    const char *prefix;
    const char *ca, *cert, *key;
    int64_t lease_ms;
} main_store_t;

static int check_file(const char *flag, const char *path)
{
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "skiff-controller: invalid value for --%s: \"%s\" (%s)\n", flag, path,
                strerror(errno));
        return 2;
    }
    return 0;
}

static int parse_flags(int argc, char **argv, ctl_config_t *cfg, enum log_level *level,
                       const char **rotate, main_store_t *st)
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
        case OPT_METRICS: {
            struct sockaddr_storage ss;
            if (strlen(optarg) >= sizeof(cfg->metrics_listen) || conn_parse_addr(optarg, &ss))
                return bad_value(name, optarg, "an IP address and port, like 127.0.0.1:9400");
            snprintf(cfg->metrics_listen, sizeof(cfg->metrics_listen), "%s", optarg);
            break;
        }
        case OPT_HTTP: {
            struct sockaddr_storage ss;
            if (strlen(optarg) >= sizeof(cfg->http_listen) || conn_parse_addr(optarg, &ss))
                return bad_value(name, optarg, "an IP address and port, like 127.0.0.1:8400");
            snprintf(cfg->http_listen, sizeof(cfg->http_listen), "%s", optarg);
            break;
        }
        case OPT_DOCKER: {
            struct sockaddr_storage ss;
            if (strlen(optarg) >= sizeof(cfg->docker_listen) || conn_parse_addr(optarg, &ss))
                return bad_value(name, optarg, "an IP address and port, like 127.0.0.1:2375");
            snprintf(cfg->docker_listen, sizeof(cfg->docker_listen), "%s", optarg);
            break;
        }
        case OPT_DOCKER_TLS:
            cfg->docker_tls = 1;
            break;
        case OPT_AUTOLOCK:
            cfg->autolock = 1;
            break;
        case OPT_EVENT_BUFFER:
            if (parse_count(optarg, 16, 10000000, &n))
                return bad_value(name, optarg, "a number from 16 to 10000000");
            cfg->event_buffer = (size_t)n;
            break;
        case OPT_DISCONNECT:
            if (duration_parse(optarg, &ms) || ms < 0 || ms > 3600000)
                return bad_value(name, optarg, "a duration from 0s to 1h, like 1s");
            cfg->disconnect_grace_ms = ms;
            break;
        case OPT_REBALANCE:
            if (strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0)
                return bad_value(name, optarg, "on or off");
            cfg->rebalance = strcmp(optarg, "on") == 0;
            break;
        case OPT_REBALANCE_DELAY:
            if (duration_parse(optarg, &ms) || ms < 0 || ms > 86400000)
                return bad_value(name, optarg, "a duration from 0s to 24h, like 30s");
            cfg->rebalance_delay_ms = ms;
            break;
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
        case OPT_HTTP_TLS_CERT:
        case OPT_HTTP_TLS_KEY:
            if (!*optarg)
                return bad_value(name, optarg, "a PEM file");
            *(opt == OPT_HTTP_TLS_CERT ? &cfg->http_tls_cert : &cfg->http_tls_key) = optarg;
            break;
        case OPT_LOG:
            if (log_level_parse(optarg, level))
                return bad_value(name, optarg, "debug, info, warn or error");
            break;
        case OPT_ADVERTISE: {
            struct sockaddr_storage ss;
            if (strlen(optarg) >= sizeof(cfg->advertise) || conn_parse_addr(optarg, &ss))
                return bad_value(name, optarg, "an IP address and port, like 10.0.0.1:7400");
            snprintf(cfg->advertise, sizeof(cfg->advertise), "%s", optarg);
            break;
        }
        case OPT_STORE: {
            etcd_config_t ec;
            char buf[2048], why[256];
            if (strcmp(optarg, "sqlite") == 0) {
                st->endpoints = NULL;
                break;
            }
            if (strncmp(optarg, "etcd://", 7) != 0)
                return bad_value(name, optarg, "sqlite, or etcd://HOST:PORT[,HOST:PORT...]");
            if (etcd_parse_endpoints(optarg + 7, &ec, buf, sizeof(buf), why, sizeof(why))) {
                fprintf(stderr, "skiff-controller: invalid value for --store: \"%s\" (%s)\n",
                        optarg, why);
                return 2;
            }
            st->endpoints = optarg + 7;
            break;
        }
        case OPT_STORE_PREFIX: {
            size_t plen = strlen(optarg);
            if (plen < 2 || plen > 200 || optarg[0] != '/' || optarg[plen - 1] != '/' ||
                strpbrk(optarg, " \t\r\n"))
                return bad_value(name, optarg, "a key prefix that starts and ends with '/', like "
                                 "/skiff/prod/");
            st->prefix = optarg;
            break;
        }
        case OPT_STORE_CA:
        case OPT_STORE_CERT:
        case OPT_STORE_KEY:
            if (check_file(name, optarg))
                return 2;
            *(opt == OPT_STORE_CA ? &st->ca : opt == OPT_STORE_CERT ? &st->cert : &st->key) = optarg;
            break;
        case OPT_LEADER_LEASE:
            if (duration_parse(optarg, &st->lease_ms) || st->lease_ms < 1000 ||
                st->lease_ms > 60000)
                return bad_value(name, optarg, "a duration from 1s to 1m, like 3s");
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
    if (!st->endpoints && (st->ca || st->cert || st->key || st->prefix)) {
        fprintf(stderr, "skiff-controller: --store-prefix and --store-ca/-cert/-key need "
                "--store etcd://...\n");
        return 2;
    }
    if (*cfg->docker_listen && !cfg->docker_tls && !dockerapi_loopback(cfg->docker_listen)) {
        fprintf(stderr, "skiff-controller: invalid value for --docker-api-listen: \"%s\" (a "
                "loopback address: without --docker-api-tls the Docker API listens on loopback "
                "only)\n", cfg->docker_listen);
        return 2;
    }
    if (cfg->docker_tls && !*cfg->docker_listen) {
        fprintf(stderr, "skiff-controller: --docker-api-tls needs --docker-api-listen\n");
        return 2;
    }
    if ((cfg->http_tls_cert != NULL) != (cfg->http_tls_key != NULL)) {
        fprintf(stderr, "skiff-controller: --http-tls-cert and --http-tls-key go together\n");
        return 2;
    }
    if ((st->cert != NULL) != (st->key != NULL) || (st->cert && !st->ca)) {
        fprintf(stderr, "skiff-controller: --store-cert and --store-key go together, with "
                "--store-ca\n");
        return 2;
    }
    if (!cfg->advertise[0]) {
        if (st->endpoints && (strncmp(cfg->listen, "0.0.0.0:", 8) == 0 ||
                              strncmp(cfg->listen, "[::]:", 5) == 0)) {
            fprintf(stderr, "skiff-controller: --listen %s is every address: give --advertise "
                    "ADDR:PORT, where the others send agents and clients\n", cfg->listen);
            return 2;
        }
        snprintf(cfg->advertise, sizeof(cfg->advertise), "%s", cfg->listen);
    }
    return 0;
}

/* The etcd store, opened with the data dir's identity where it has one. */
static store_t *open_etcd(uv_loop_t *loop, ctl_t *ctl, const main_store_t *ms, char *err,
                          size_t len)
{
    char cluster[MODEL_ID_LEN * 2 + 1], join[CTL_TOKEN_LEN + 1], admin[CTL_TOKEN_LEN + 1];
    char fresh[CTL_TOKEN_LEN + 1], root_id[PKI_DIGEST_HEX + 1];
    uint8_t *root = NULL;
    size_t root_len = 0;
    store_etcd_config_t sc = {
        .endpoints = ms->endpoints, .prefix = ms->prefix ? ms->prefix : "/skiff/default/",
        .cacert = ms->ca, .cert = ms->cert, .key = ms->key, .lease_ms = ms->lease_ms,
        .address = ctl->cfg.advertise,
    };
    store_t *st;

    if (tokens_prepare_dir(ctl->cfg.data_dir, err, len))
        return NULL;
    tokens_read_existing(ctl->cfg.data_dir, cluster, join, admin);
    /* A CA root for a store that has nothing yet, of the cluster id it
     * would get (a store that has a CA keeps it). */
    tokens_new(fresh);
    fresh[MODEL_ID_LEN * 2] = '\0';
    if (ca_root_candidate(*cluster ? cluster : fresh, &root, &root_len, root_id, err, len))
        return NULL;
    sc.cluster_id = cluster;
    sc.fresh_cluster_id = fresh;
    sc.join_token = join;
    sc.admin_token = admin;
    sc.ca_root = root;
    sc.ca_root_len = root_len;
    sc.ca_root_id = root_id;
    st = store_etcd_open(loop, &sc, err, len);
    memset(join, 0, sizeof(join));
    memset(admin, 0, sizeof(admin));
    OPENSSL_cleanse(root, root_len);
    free(root);
    return st;
}

/* The listen and advertise addresses are names of its certificate (the
 * loopback ones always are). */
static void add_server_name(ctl_config_t *cfg, const char *hostport)
{
    char host[128], name[140];
    size_t used = strlen(cfg->server_names);
    int port;

    if (!hostport || !*hostport || wire_parse_hostport(hostport, host, sizeof(host), &port) ||
        strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0 ||
        strcmp(host, "127.0.0.1") == 0 || strcmp(host, "::1") == 0)
        return;
    snprintf(name, sizeof(name), "IP:%s", host);
    if (strstr(cfg->server_names, name))
        return;
    snprintf(cfg->server_names + used, sizeof(cfg->server_names) - used, "%s%s",
             used ? "," : "", name);
}

int main(int argc, char **argv)
{
    static ctl_t ctl;
    enum log_level level = LOG_INFO;
    const char *rotate = NULL;
    main_store_t ms = { .lease_ms = 3000 };
    char err[512], path[PATH_MAX + 16];
    uv_loop_t *loop = uv_default_loop();
    int rc;

    ctl.cfg = (ctl_config_t){
        .listen = "127.0.0.1:7400",
        .data_dir = "/var/lib/skiff",
        .heartbeat_timeout_ms = 3000,
        .disconnect_grace_ms = 1000,
        .handshake_timeout_ms = 5000,
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
    if (argc > 1 && strcmp(argv[1], "migrate") == 0)
        return migrate_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "unlock") == 0)
        return unlock_main(argc - 1, argv + 1);
    if ((rc = parse_flags(argc, argv, &ctl.cfg, &level, &rotate, &ms)))
        return rc;
    /* An agent silent for this long is cut off; it reconnects. */
    ctl.cfg.agent_timeout_ms = ctl.cfg.heartbeat_timeout_ms * 10;
    add_server_name(&ctl.cfg, ctl.cfg.listen);
    add_server_name(&ctl.cfg, ctl.cfg.advertise);
    add_server_name(&ctl.cfg, ctl.cfg.http_listen);
    add_server_name(&ctl.cfg, ctl.cfg.docker_listen);
    log_init("controller", level);
    signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an error code, not death */
    umask(077); /* the database and tokens are for the controller's user only */
    if (rotate) {
        if (ms.endpoints) {
            migrate_store_t target = { .endpoints = ms.endpoints,
                                       .prefix = ms.prefix ? ms.prefix : "/skiff/default/",
                                       .ca = ms.ca, .cert = ms.cert, .key = ms.key };
            return migrate_rotate_token(&target, ctl.cfg.data_dir, rotate);
        }
        if (tokens_rotate(ctl.cfg.data_dir, rotate, err, sizeof(err))) {
            fprintf(stderr, "skiff-controller: %s\n", err);
            return 1;
        }
        printf("new %s token written to %s/%s-token\n", rotate, ctl.cfg.data_dir, rotate);
        return 0;
    }
    if (ctl.cfg.http_tls_cert &&
        !(ctl.http_tls = tls_server_ctx_files(ctl.cfg.http_tls_cert, ctl.cfg.http_tls_key, err,
                                              sizeof(err)))) {
        fprintf(stderr, "skiff-controller: %s\n", err);
        return 1;
    }
    model_init(&ctl.model);
    if (ms.endpoints) {
        if (!(ctl.store = open_etcd(loop, &ctl, &ms, err, sizeof(err)))) {
            log_error("%s", err);
            return 1;
        }
    } else {
        if (tokens_prepare(&ctl, err, sizeof(err))) {
            log_error("%s", err);
            return 1;
        }
        snprintf(path, sizeof(path), "%s/state.db", ctl.cfg.data_dir);
        if (!(ctl.store = store_sqlite_open(loop, path, err, sizeof(err))) ||
            store_sqlite_load(ctl.store, &ctl.model, err, sizeof(err)) ||
            tokens_cluster_id(&ctl, err, sizeof(err)) || tokens_ca(&ctl, err, sizeof(err)) ||
            secrets_key_init(&ctl, err, sizeof(err))) {
            log_error("%s", err);
            rc = 1;
            goto out_close;
        }
        log_info("state loaded: %u nodes, %u services, %u tasks; CA sha256 %s",
                 HASH_COUNT(ctl.model.nodes), HASH_COUNT(ctl.model.services),
                 HASH_COUNT(ctl.model.tasks), ca_digest(ctl.ca));
    }
    if (ctl_load_events(&ctl)) {
        log_error("out of memory");
        rc = 1;
        goto out_close;
    }
    if ((rc = ctl_start(&ctl, loop))) {
        /* The store's handles close on the loop. */
        store_stop(ctl.store, NULL, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
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
    events_free(ctl.events);
    free(ctl.monitor);
    free(ctl.endpoints_packed);
    SSL_CTX_free(ctl.tls);
    SSL_CTX_free(ctl.http_tls);
    ca_free(ctl.ca);
    OPENSSL_cleanse(ctl.secret_key, sizeof(ctl.secret_key));
    return rc;
}
