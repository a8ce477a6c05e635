/* health: see health.h. */
#include "health.h"
#include "errors.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int health_has_probe(const ServiceSpec *spec)
{
    return spec && spec->health && spec->health->http_path && *spec->health->http_path;
}

int health_has_engine_check(const ServiceSpec *spec)
{
    return spec && spec->health && spec->health->n_test > 0 &&
           strcmp(spec->health->test[0], "NONE") != 0;
}

void health_probe_reset(health_probe_t *p, int64_t now)
{
    memset(p, 0, sizeof(*p));
    p->state = HEALTH_STARTING;
    p->started_ms = now;
    p->last_counted_ms = now;
}

static int64_t health_interval(const HealthCheck *hc)
{
    return hc && hc->interval_ms > 0 ? hc->interval_ms : 5000;
}

Health health_probe_result(health_probe_t *p, const HealthCheck *hc, int ok, const char *why,
                           int64_t now)
{
    uint32_t retries = hc && hc->retries > 0 ? hc->retries : 1;
    int64_t start_period = hc && hc->start_period_ms > 0 ? hc->start_period_ms : 0;

    if (ok) {
        p->passed = 1;
        p->failures = 0;
        p->last_error[0] = '\0';
        p->state = HEALTH_HEALTHY;
        p->last_counted_ms = now;
        return p->state;
    }
    snprintf(p->last_error, sizeof(p->last_error), "%s", why ? why : "probe failed");
    if (!p->passed) {
        /* Before the first success: nothing counts inside the start
         * period, and the fast probes count once per interval. */
        if (now < p->started_ms + start_period)
            return p->state;
        if (now - p->last_counted_ms < health_interval(hc))
            return p->state;
    }
    p->last_counted_ms = now;
    if (p->failures < UINT32_MAX)
        p->failures++;
    if (p->failures >= retries)
        p->state = HEALTH_UNHEALTHY;
    return p->state;
}

int64_t health_probe_interval(const health_probe_t *p, const HealthCheck *hc)
{
    int64_t interval = health_interval(hc);

    if (!p->passed && interval > HEALTH_FAST_PROBE_MS)
        return HEALTH_FAST_PROBE_MS;
    return interval;
}

Health health_from_engine(engine_health_t h)
{
    switch (h) {
    case ENGINE_HEALTH_STARTING: return HEALTH_STARTING;
    case ENGINE_HEALTH_HEALTHY: return HEALTH_HEALTHY;
    case ENGINE_HEALTH_UNHEALTHY: return HEALTH_UNHEALTHY;
    default: return HEALTH_NONE;
    }
}

Health health_combine(Health a, Health b)
{
    if (a == HEALTH_UNHEALTHY || b == HEALTH_UNHEALTHY)
        return HEALTH_UNHEALTHY;
    if (a == HEALTH_STARTING || b == HEALTH_STARTING)
        return HEALTH_STARTING;
    if (a == HEALTH_HEALTHY || b == HEALTH_HEALTHY)
        return HEALTH_HEALTHY;
    return HEALTH_NONE;
}

int health_probe_url(const ServiceSpec *spec, const char *advertise, const engine_port_t *ports,
                     size_t n_ports, char *url, size_t len, char *err, size_t errlen)
{
    uint32_t target = spec->health->http_port;
    int n;

    if (!target && spec->n_ports > 0)
        target = spec->ports[0]->target;
    if (!target && spec->n_expose > 0)
        target = spec->expose[0];
    for (size_t i = 0; i < n_ports; i++) {
        if (ports[i].target != target || !ports[i].host_port)
            continue;
        n = snprintf(url, len, "http://%s:%u%s", advertise, ports[i].host_port,
                     spec->health->http_path);
        if (n < 0 || (size_t)n >= len) {
            snprintf(err, errlen, "the probe's URL is too long");
            return SKIFF_EINVAL;
        }
        return 0;
    }
    snprintf(err, errlen, "port %u is not published", target);
    return SKIFF_ENOTFOUND;
}

/* ------------------------------------------------------------ the probe */

struct health_http {
    httpc_xfer_t *xfer;
    health_probe_cb cb;
    void *arg;
};

static void health_on_done(void *arg, CURLcode result, long status, const char *err)
{
    health_http_t *p = arg;
    char why[128];
    int ok = 0;

    if (result != CURLE_OK)
        snprintf(why, sizeof(why), "%s", err);
    else if (status >= 200 && status < 400)
        ok = 1, why[0] = '\0';
    else
        snprintf(why, sizeof(why), "HTTP %ld", status);
    p->cb(p->arg, ok, why);
    free(p);
}

static const httpc_ops_t health_http_ops = {
    .on_done = health_on_done,
};

int health_http_probe(httpc_t *h, const char *url, int64_t timeout_ms, health_probe_cb cb,
                      void *arg, health_http_t **out)
{
    health_http_t *p = calloc(1, sizeof(*p));
    CURL *easy;
    int rc;

    *out = NULL;
    if (!p)
        return -ENOMEM;
    easy = curl_easy_init();
    if (!easy) {
        free(p);
        return -ENOMEM;
    }
    p->cb = cb;
    p->arg = arg;
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? (long)timeout_ms : 1000L);
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(easy, CURLOPT_USERAGENT, "skiff-agent/" SKIFF_VERSION);
    /* A probe does not reuse connections: each one says whether the
     * container accepts one now. */
    curl_easy_setopt(easy, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(easy, CURLOPT_FRESH_CONNECT, 1L);
    rc = httpc_add(h, easy, NULL, &health_http_ops, p, &p->xfer);
    if (rc) {
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void health_http_cancel(httpc_t *h, health_http_t *p)
{
    if (!p)
        return;
    httpc_cancel(h, p->xfer);
    free(p);
}
