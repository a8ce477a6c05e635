/* health: what the agent reports as a task's health, and skiff's HTTP probe.
 *
 * Two checks may watch a container. Docker's own (spec.health.test) runs in
 * the engine, which reports it in inspect and health_status events; the
 * agent only maps it. skiff's probe (spec.health.http_path) is the agent's:
 * a GET to the port the engine published for http_port (or the service's
 * first port) on the node's advertise address; 2xx and 3xx are healthy.
 * Its verdict is a pure state machine (health_probe_t): starting until the
 * first success, failures inside the start period not counted, unhealthy
 * after `retries` failures in a row. While a container has not passed yet,
 * it is probed often (every 250 ms, at most every interval) so that a new
 * task turns healthy quickly, but failures count only once per interval, so
 * that it is not declared unhealthy sooner than Docker would.
 *
 * health_http_probe() runs one probe on httpc; the rest is pure.
 */
#ifndef SKIFF_HEALTH_H
#define SKIFF_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "httpc.h"
#include "skiff_pb.h"

#define HEALTH_FAST_PROBE_MS 250

typedef struct health_probe {
    Health state;             /* HEALTH_STARTING until the first success */
    uint32_t failures;        /* consecutive failures that counted */
    int64_t started_ms;       /* when the container started (monotonic) */
    int64_t last_counted_ms;  /* when a failure last counted */
    int passed;               /* one success since the start */
    char last_error[128];     /* why the last probe failed */
} health_probe_t;

/* 1 when spec has skiff's HTTP probe; 1 when it has Docker's check. */
int health_has_probe(const ServiceSpec *spec);
int health_has_engine_check(const ServiceSpec *spec);

/* A container (re)started at now: starting again. */
void health_probe_reset(health_probe_t *p, int64_t now);

/* One probe's outcome at now; returns the new state. */
Health health_probe_result(health_probe_t *p, const HealthCheck *hc, int ok, const char *why,
                           int64_t now);

/* Milliseconds from one probe to the next in the probe's present state. */
int64_t health_probe_interval(const health_probe_t *p, const HealthCheck *hc);

/* The engine's view in skiff's terms. */
Health health_from_engine(engine_health_t h);

/* Both views in one: unhealthy if either is, else starting if either is,
 * else healthy if either is, else none. */
Health health_combine(Health a, Health b);

/* The probe's URL: http://<advertise>:<host port of the probed target><path>.
 * Returns 0, or SKIFF_ENOTFOUND (with err) when the target has no
 * published port yet. */
int health_probe_url(const ServiceSpec *spec, const char *advertise, const engine_port_t *ports,
                     size_t n_ports, char *url, size_t len, char *err, size_t errlen);

/* The probe's result: ok 1 for 2xx/3xx; why says what failed otherwise. */
typedef void (*health_probe_cb)(void *arg, int ok, const char *why);

typedef struct health_http health_http_t;

/* GETs url within timeout_ms on h. Returns 0 and sets *out (for
 * health_http_cancel), or a negative code (then cb is never called). */
int health_http_probe(httpc_t *h, const char *url, int64_t timeout_ms, health_probe_cb cb,
                      void *arg, health_http_t **out);
/* Cancels a probe in flight: cb is not called. */
void health_http_cancel(httpc_t *h, health_http_t *p);

#endif
