/* skiff-lb-bench: one skiff load balancer on its own loop, in front of a
 * static set of backends, for tests/bench/lb/run.sh.
 *
 *   skiff-lb-bench [--buffer BYTES] [--threads N] [--log-level L] LISTEN_ADDR:PORT BACKEND_ADDR:PORT...
 *
 * --threads N: the balancer's workers (lb_config_t.threads), by default one
 * per online CPU as skiff-agent's --lb-threads; 1 runs it on the loop.
 *
 * It applies one Endpoints message (service "bench", port PORT, target 80,
 * one backend per argument) and serves until SIGINT or SIGTERM, then prints
 * the balancer's stats on stderr. It is not the agent: no controller, no
 * engine, nothing but lb.c and a loop.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "lb.h"
#include "log.h"

#define MAX_BACKENDS 64

static lb_t *lb;
static uv_signal_t sigint, sigterm;

/* Splits "ADDR:PORT" in place; returns the port, or 0 when malformed. */
static unsigned split_hostport(char *s, char **addr)
{
    char *colon = strrchr(s, ':');
    char *end;
    unsigned long port;

    if (!colon)
        return 0;
    *colon = '\0';
    port = strtoul(colon + 1, &end, 10);
    if (*end || port == 0 || port > 65535)
        return 0;
    *addr = s;
    return (unsigned)port;
}

static void on_closed(void *arg)
{
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
    LbStats **st;
    size_t n;

    if (lb_stats(lb, &st, &n) == 0) {
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, "%s %s connections=%llu failures=%llu in=%llu out=%llu\n",
                    st[i]->service_name, st[i]->backend,
                    (unsigned long long)st[i]->connections,
                    (unsigned long long)st[i]->connect_failures,
                    (unsigned long long)st[i]->bytes_in, (unsigned long long)st[i]->bytes_out);
        lb_stats_free(st, n);
    }
    uv_signal_stop(&sigint);
    uv_signal_stop(&sigterm);
    lb_close(lb, on_closed, NULL);
}

static int usage(void)
{
    fprintf(stderr, "usage: skiff-lb-bench [--buffer BYTES] [--threads N] [--log-level L] "
                    "LISTEN_ADDR:PORT BACKEND_ADDR:PORT...\n");
    return 2;
}

int main(int argc, char **argv)
{
    Backend b[MAX_BACKENDS], *bp[MAX_BACKENDS];
    PortMapping pm[MAX_BACKENDS], *pmp[MAX_BACKENDS];
    ServicePort sp = SKIFF__V1__SERVICE_PORT__INIT, *spp = &sp;
    ServiceEndpoints se = SKIFF__V1__SERVICE_ENDPOINTS__INIT, *sep = &se;
    Endpoints eps = SKIFF__V1__ENDPOINTS__INIT;
    lb_config_t cfg = { 0 };
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    enum log_level level = LOG_WARN;
    char *listen_addr;
    unsigned port;
    int i = 1, nb = 0;

    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (i + 1 >= argc)
            return usage();
        if (strcmp(argv[i], "--buffer") == 0)
            cfg.buffer_size = strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--threads") == 0)
            cfg.threads = (unsigned)strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--log-level") == 0 && log_level_parse(argv[i + 1], &level) == 0)
            ;
        else
            return usage();
    }
    if (argc - i < 2 || argc - i - 1 > MAX_BACKENDS)
        return usage();
    log_init("skiff-lb-bench", level);
    port = split_hostport(argv[i++], &listen_addr);
    if (!port)
        return usage();
    for (; i < argc; i++, nb++) {
        char *addr;
        unsigned p = split_hostport(argv[i], &addr);

        if (!p)
            return usage();
        b[nb] = (Backend)SKIFF__V1__BACKEND__INIT;
        pm[nb] = (PortMapping)SKIFF__V1__PORT_MAPPING__INIT;
        pm[nb].target = 80;
        pm[nb].host_port = p;
        pmp[nb] = &pm[nb];
        b[nb].task_id = argv[i];
        b[nb].address = addr;
        b[nb].n_ports = 1;
        b[nb].ports = &pmp[nb];
        bp[nb] = &b[nb];
    }
    sp.port = port;
    sp.target = 80;
    se.service_id = se.service_name = "bench";
    se.n_ports = 1;
    se.ports = &spp;
    se.n_backends = (size_t)nb;
    se.backends = bp;
    eps.n_services = 1;
    eps.services = &sep;

    signal(SIGPIPE, SIG_IGN);
    if (!cfg.threads) /* as skiff-agent: one per online CPU */
        cfg.threads = ncpu < 1 ? 1 : ncpu > 64 ? 64 : (unsigned)ncpu;
    cfg.advertise = listen_addr;
    lb = lb_create(uv_default_loop(), &cfg);
    if (!lb || lb_apply(lb, &eps)) {
        fprintf(stderr, "skiff-lb-bench: cannot start the balancer\n");
        return 1;
    }
    uv_signal_init(uv_default_loop(), &sigint);
    uv_signal_init(uv_default_loop(), &sigterm);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    uv_loop_close(uv_default_loop());
    return 0;
}
