/* lb: the agent's TCP load balancer, on the agent's libuv loop.
 *
 * For every port of every service in the Endpoints the controller pushes, it
 * listens on <advertise>:<port> (unless the port is internal) and, when a
 * bridge gateway address is set, on <gateway>:<port> (SO_REUSEPORT, so that
 * agents sharing one engine can all listen there). Each accepted connection
 * goes round-robin to the service's backends; a backend that refuses or
 * times out a connect is skipped and the next one tried, each at most once,
 * so no client fails while any backend is up (and for a second after such a
 * failure, new connections try that backend after the others). So is a
 * backend that ends or fails before its first byte while the balancer still
 * holds all the client sent (up to buffer_size) and the client has not ended
 * its side; the next backend then gets those bytes again. A dead container
 * behind the engine's docker-proxy, which accepts for it, looks like that.
 * Bytes are proxied both ways with bounded buffers (buffer_size per
 * direction, held only while a peer is slower than the other), half-close
 * and an idle timeout. It knows nothing of tasks, health or the controller:
 * what it is given is what it balances.
 *
 * With one thread (cfg.threads 0 or 1) everything runs on the loop's thread;
 * nothing blocks. The balancer's sockets sit in an epoll of its own, which
 * is one uv_poll_t on the loop (Linux only, as skiff is). With N threads,
 * each worker thread has its own loop, epoll, connections and listener per
 * port (SO_REUSEPORT); the functions below are still called on the loop's
 * thread only, and none waits for a worker (lb_close joins threads that
 * exit at once).
 */
#ifndef SKIFF_LB_H
#define SKIFF_LB_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "skiff_pb.h"

typedef struct lb lb_t;

typedef struct lb_config {
    const char *advertise;       /* "127.0.0.2"; NULL or "": no such listeners */
    const char *gateway;         /* "172.17.0.1"; NULL or "": none */
    uint64_t connect_timeout_ms; /* 0: 2 s */
    uint64_t idle_timeout_ms;    /* 0: 5 min */
    size_t buffer_size;          /* per direction and connection; 0: 16 KiB */
    size_t max_connections;      /* client connections at once; 0: 10000 */
    uint64_t retry_ms;           /* how often to retry a failed listen; 0: 2 s */
    unsigned threads;            /* workers; 0 or 1: on the loop's thread (at most 64) */
} lb_config_t;

/* A balancer with no listeners. The config's strings are copied. Returns NULL
 * when out of memory or when cfg's addresses are not IP addresses. */
lb_t *lb_create(uv_loop_t *loop, const lb_config_t *cfg);

/* Makes eps, the complete new set, what the balancer serves: opens listeners
 * for new ports, closes those of ports gone, and swaps backend lists. Open
 * connections are never cut. A listener that cannot bind is logged and
 * retried (at every apply and every retry_ms); it does not fail the apply.
 * Returns 0, or -ENOMEM with the previous set still in force. */
int lb_apply(lb_t *lb, const Endpoints *eps);

/* One LbStats per backend (ADDRESS:PORT) of every service: those of the
 * current set, and removed ones that still carry connections. *out is a
 * malloc'd array of wholly malloc'd messages (pbutil.h's rule), the caller's:
 * free it with lb_stats_free(), or move the messages into a message that is
 * freed with pb_free() (StatusReport.lb_stats) and free() the array.
 * Returns 0 or -ENOMEM (then *out is NULL and *n 0). */
int lb_stats(lb_t *lb, LbStats ***out, size_t *n);
void lb_stats_free(LbStats **stats, size_t n);

/* Client connections open now. */
size_t lb_connections(const lb_t *lb);

/* The number of workers, and the client connections worker i has accepted
 * (0 when there is no worker i). */
size_t lb_threads(const lb_t *lb);
uint64_t lb_thread_connections(const lb_t *lb, size_t i);

/* Closes every listener and connection; done(arg) is called from the loop
 * once all handles are closed, after which lb is freed. */
void lb_close(lb_t *lb, void (*done)(void *arg), void *arg);

#endif
