/* lb: see lb.h.
 *
 * Shape. A route is one listening port: the service's current backend set
 * (with its round-robin cursor), and up to two listeners (advertise,
 * gateway). A set is a refcounted array of targets that lb_apply swaps
 * whole; a target is one backend ADDRESS:PORT of one service and carries
 * its counters. Sets and
 * connections hold references to targets, so an apply can drop a backend
 * while its connections go on, and an apply that keeps a backend keeps its
 * counters.
 *
 * I/O. The balancer's sockets (listeners, clients, backends) are not libuv
 * handles: they sit in an epoll instance of the balancer's own, registered
 * once each and edge-triggered, and that epoll's descriptor is one uv_poll_t
 * on the agent's loop. On this kind of machine a system call costs a few
 * microseconds, and libuv's streams spend about five more per proxied
 * connection than the work needs (an epoll_ctl to remove each socket before
 * its close, one to change interest after the connect, a getsockopt for the
 * connect's outcome, retries of EPOLL_CTL_ADD); here a connection costs
 * accept, socket, setsockopt, connect, two epoll_ctl, its reads and sends,
 * and two close. Each socket keeps what its last event said (readable,
 * writable, the peer's FIN arrived), and a read shorter than the buffer means
 * the socket is drained until its next event. EPOLLOUT is asked for only
 * while a connect or a short send waits for it.
 *
 * New connections. What a client sent before it was accepted (a request,
 * usually) is read at once and sent right after connect(2): on one host the
 * connect is often complete by then, and a send that goes through says so,
 * without waiting for the connect's event. Until the backend's first byte
 * the client's bytes are kept (up to buffer_size), so that a backend that
 * ends or fails before answering can be skipped like one that refused.
 *
 * Proxying. A connection reads into the balancer's one shared read buffer
 * and sends at once; only what the peer does not take is copied into a
 * per-direction buffer (from a small pool), and that direction reads no more
 * until the buffer is flushed. So each direction holds at most buffer_size
 * bytes, and an idle connection holds none. The end of a direction is passed
 * on after the batch of events that saw it: when the other direction has
 * ended too (a reply and its FIN, then the client's close), the connection
 * is just closed, without a shutdown(2) of each side.
 *
 * Threads. The I/O above is a worker's: its epoll, connections, buffers,
 * timers. With one worker it runs on the agent's loop and the routes own its
 * listeners, as they always did. With N, each worker has a thread and loop
 * of its own, and every route/side has N listeners (SO_REUSEPORT, made and
 * closed by the loop's thread). lb_apply builds the routes, then an
 * immutable table (per listener: its worker, its set), swaps it into
 * lb->table and wakes every worker (uv_async); a worker takes the newest
 * table at the wakeup and before each batch of events, stores its
 * generation in w->acked and wakes the loop, which frees a retired table
 * or listener once every worker's acked has passed it (lb_collect). Targets
 * are freed on the loop's thread only (lb_reap) once no set or connection
 * refers to them. What workers share: sets and targets (refcounts, live,
 * down_until, fail_seq are atomics; counters are per worker, a cache line
 * each, summed by lb_stats), the round-robin cursor of a set, fail_seq and
 * nconns (atomics). A target removed by lb_apply is not live before the
 * table without it is published, and conn_next_target skips it.
 *
 * Timeouts. The connect timeout and the idle timeout are the same for every
 * connection, so connections sit in two lists ordered by deadline
 * (connecting, by start; established, by last activity) under one libuv
 * timer armed for the earliest head, instead of a timer per connection.
 */
#include "lb.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "errors.h"
#include "log.h"

#define LB_CONNECT_TIMEOUT_MS 2000
#define LB_IDLE_TIMEOUT_MS (5 * 60 * 1000)
#define LB_BUFFER_SIZE (16 * 1024)
#define LB_MAX_CONNECTIONS 10000
#define LB_RETRY_MS 2000
#define LB_DOWN_MS 1000   /* a backend that failed a connect is tried last this long */
#define LB_POOL_MAX 64    /* idle direction buffers kept for reuse */
#define LB_BACKLOG 511
#define LB_EVENTS 256     /* events taken from the epoll per wakeup */
#define LB_ACCEPTS 64     /* clients accepted per listener event */
#define LB_MAX_THREADS 64

#define lb_container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* An intrusive doubly linked list; a head is a link to itself when empty. */
typedef struct lb_link {
    struct lb_link *prev, *next;
} lb_link_t;

static void link_init(lb_link_t *l) { l->prev = l->next = l; }
static bool link_empty(const lb_link_t *h) { return h->next == h; }

static void link_remove(lb_link_t *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = l;
}

static void link_push(lb_link_t *h, lb_link_t *l)
{
    l->prev = h->prev;
    l->next = h;
    h->prev->next = l;
    h->prev = l;
}

/* A worker's counters of one target: written by that worker only (relaxed
 * atomic stores), read by lb_stats on the loop's thread, and on a cache line
 * of their own so that workers do not share one. */
typedef struct lb_count {
    uint64_t connections, active, bytes_in, bytes_out, connect_failures;
} __attribute__((aligned(64))) lb_count_t;

/* A counter written by one thread and read by others. */
#define CNT_ADD(x, n) \
    __atomic_store_n(&(x), __atomic_load_n(&(x), __ATOMIC_RELAXED) + (n), __ATOMIC_RELAXED)
#define CNT_GET(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

/* One backend ADDRESS:PORT of one service, with its counters. Made, found
 * and freed on the loop's thread only; refs, live, down_until and fail_seq
 * are atomic because workers read and change them too. */
typedef struct lb_target {
    lb_link_t link;   /* lb->targets */
    _Atomic int refs; /* sets and connections */
    _Atomic bool live; /* in a current set: cleared before a set without it is published */
    bool eager;        /* one worker: freed by the last target_unref */
    char *service_key;
    char *service_name;
    char name[INET6_ADDRSTRLEN + 8];
    struct sockaddr_storage addr;
    _Atomic uint64_t down_until; /* loop ms: tried after the others until then */
    _Atomic uint64_t fail_seq;   /* lb->fail_seq at its last connect failure */
    lb_count_t count[];          /* one per worker */
} lb_target_t;

/* A service port's backends, swapped whole by lb_apply. Immutable once
 * built; refs is atomic as connections of every worker hold it. */
typedef struct lb_set {
    _Atomic int refs;
    _Atomic uint32_t rr; /* the round-robin cursor, one for every worker */
    char *service_name;
    uint16_t port;
    size_t n;
    lb_target_t *t[];
} lb_set_t;

enum { LB_ADVERTISE, LB_GATEWAY, LB_SIDES };
enum { LB_SOCK_LISTENER, LB_SOCK_CLIENT, LB_SOCK_BACKEND };

/* A socket in a worker's epoll, and what its events have said. */
typedef struct lb_sock {
    int fd;        /* -1 once closed */
    uint8_t kind;  /* LB_SOCK_*: which struct holds it */
    bool readable; /* data or an end may be waiting */
    bool writable; /* not known to be full */
    bool rdhup;    /* the peer's FIN has arrived */
    bool out;      /* EPOLLOUT is in its interest set */
} lb_sock_t;

struct lb_route;
typedef struct lb_worker lb_worker_t;

/* A listening socket in one worker's epoll. With one worker it belongs to a
 * route (route set while open). With threads, the loop's thread makes it and
 * closes its descriptor, and its worker takes it into its epoll and reads
 * only set, rr, port and service_name, copied from the table it runs. */
typedef struct lb_listener {
    lb_sock_t sock;
    lb_worker_t *w;
    lb_link_t dead;         /* w->dead_listeners, once closed during a batch */
    struct lb_route *route; /* one worker: NULL once closed */
    bool paused;            /* out of descriptors: resumed by the retry timer */
    /* Threads: the worker's view, from the table it runs. */
    lb_link_t wlink;        /* w->listeners, while in its epoll */
    lb_set_t *set;          /* NULL: not in the table the worker runs */
    bool seen;              /* found in the table being taken */
    /* The loop's thread: retired in a table's generation, freed when every
     * worker runs that one or a later one. */
    lb_link_t retired;
    uint64_t retire_gen;
} lb_listener_t;

/* One listening port of one service. With threads, ls[side] is the first of
 * nworkers listeners (one per worker, SO_REUSEPORT). */
typedef struct lb_route {
    struct lb_route *next;
    uint16_t port;
    uint16_t target;
    bool internal;
    char *service_name;
    lb_set_t *set;
    lb_listener_t *ls[LB_SIDES];
    lb_listener_t **tls[LB_SIDES]; /* threads: one listener per worker, or NULL */
    int err[LB_SIDES]; /* the last listen error, logged when it changes */
} lb_route_t;

/* Threads: what the workers run, built by lb_apply and never changed: per
 * listener of each worker, its set and port. Freed (with a reference on each
 * set dropped) once every worker runs a later table. */
typedef struct lb_table_entry {
    lb_listener_t *l;
    lb_set_t *set; /* a reference */
} lb_table_entry_t;

typedef struct lb_table {
    uint64_t gen;
    uint64_t retire_gen;         /* the generation that replaced it */
    struct lb_table *next_retired;
    size_t n, cap;
    lb_table_entry_t e[];
} lb_table_t;

typedef struct lb_conn lb_conn_t;

/* One direction of a connection. */
typedef struct lb_pipe {
    lb_sock_t *from, *to;
    buf_t buf;       /* what `to` has not taken yet; allocated only then */
    uint64_t *bytes; /* the target's counter for this direction */
    bool blocked;    /* buf holds data: read no more until it is sent */
    bool eof;        /* from has ended */
    bool shut;       /* the end is passed on */
} lb_pipe_t;

struct lb_conn {
    lb_sock_t client;
    lb_sock_t backend;
    lb_worker_t *w;
    lb_link_t link;  /* w->connecting or w->established; w->dead_conns once closed */
    lb_link_t ended; /* w->ended: a direction ended, to settle after the batch */
    uint64_t stamp;  /* loop ms: connect start, or last activity */
    lb_set_t *set;   /* while connecting: the backends to try */
    uint64_t seq0;   /* lb->fail_seq when the client came */
    size_t first, next;
    int pass;
    lb_target_t *target; /* being tried, or connected */
    size_t early;        /* bytes read from the client before a backend took it */
    lb_pipe_t up;        /* client to backend */
    lb_pipe_t down;      /* backend to client */
    /* Until the backend's first byte: a copy of everything the client sent
     * (while it fits in buffer_size), to send again to the next backend if
     * this one ends or fails without a byte. set is kept as long. */
    buf_t replay;
    bool replay_on;
    bool retry;          /* in w->ended: connect to the next backend */
    bool connected, closed;
};

/* One event loop's share of the balancer: its epoll, its connections, its
 * buffers and timers. With one worker it runs on the agent's loop; with
 * threads each has a thread and a loop of its own. */
struct lb_worker {
    lb_t *lb;
    unsigned idx;       /* its slot in the targets' counters */
    uv_loop_t *loop;
    lb_config_t cfg;    /* lb's, copied */
    int epfd;
    uv_poll_t poll;     /* epfd on the loop */
    bool dispatching;   /* inside a batch of events: frees wait for its end */
    lb_link_t connecting, established;
    lb_link_t ended;    /* connections to settle after the batch */
    lb_link_t dead_conns, dead_listeners; /* closed during the batch, freed after it */
    uv_timer_t timer;   /* connect and idle timeouts */
    uint64_t timer_due; /* loop ms; 0: not armed */
    char *rbuf;         /* the shared read buffer, buffer_size bytes */
    buf_t pool[LB_POOL_MAX];
    size_t npool;
    bool closing;
    /* Threads only. */
    uv_loop_t own_loop;
    uv_thread_t thread;
    uv_async_t wake;            /* a new table, or stop */
    uv_timer_t resume;          /* paused listeners */
    lb_link_t listeners;        /* in its epoll */
    const lb_table_t *table;    /* the one it runs */
    _Atomic uint64_t acked;     /* that table's generation */
    uint64_t accepted;          /* client connections accepted (CNT_ADD) */
    bool started;
};

struct lb {
    uv_loop_t *loop;
    lb_config_t cfg;
    char *advertise, *gateway;
    struct sockaddr_storage side_addr[LB_SIDES];
    bool side_on[LB_SIDES];
    lb_route_t *routes;
    lb_link_t targets;
    uv_timer_t retry;   /* listeners that could not bind, or are paused */
    _Atomic uint64_t fail_seq;
    _Atomic size_t nconns;
    unsigned nworkers;
    lb_worker_t *w;     /* nworkers */
    bool threaded;      /* nworkers > 1: workers on threads of their own */
    /* Threads: the table the workers are to run, those retired and not yet
     * freed, and the listeners retired. */
    _Atomic(lb_table_t *) table;
    uint64_t gen;
    lb_table_t *retired_tables;
    lb_link_t retired_listeners;
    uv_async_t acked;   /* a worker took a table */
    _Atomic bool stop;
    int handles; /* libuv handles not yet closed */
    bool closing;
    void (*done)(void *);
    void *done_arg;
};

static const char *const side_names[LB_SIDES] = { "advertise", "gateway" };

static void conn_close(lb_conn_t *c);
static void conn_connect_next(lb_conn_t *c);
static void conn_backend_lost(lb_conn_t *c);
static void lb_maybe_free(lb_t *lb);

/* Targets and sets. */

static void target_free(lb_target_t *t)
{
    link_remove(&t->link);
    free(t->service_key);
    free(t->service_name);
    free(t);
}

/* Drops a reference. With one worker the last one frees t at once; with
 * threads it may be dropped on a worker's thread, and lb_reap frees t later
 * on the loop's. */
static void target_unref(lb_target_t *t)
{
    if (--t->refs > 0 || !t->eager)
        return;
    target_free(t);
}

/* Threads: frees the targets no set or connection holds any more. On the
 * loop's thread; a target without references gets one again only from
 * target_get, on this thread too. */
static void lb_reap(lb_t *lb)
{
    lb_link_t *l = lb->targets.next;

    while (l != &lb->targets) {
        lb_target_t *t = lb_container_of(l, lb_target_t, link);

        l = l->next;
        if (t->refs == 0 && !t->live)
            target_free(t);
    }
}

static void set_unref(lb_set_t *s)
{
    if (!s || --s->refs > 0)
        return;
    for (size_t i = 0; i < s->n; i++)
        target_unref(s->t[i]);
    free(s->service_name);
    free(s);
}

static int addr_parse(const char *ip, uint16_t port, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    if (uv_ip4_addr(ip, port, (struct sockaddr_in *)out) == 0)
        return 0;
    if (uv_ip6_addr(ip, port, (struct sockaddr_in6 *)out) == 0)
        return 0;
    return SKIFF_EINVAL;
}

/* The target of service key for ip:port, found or made, with a reference for
 * the caller. Returns NULL with *err set to SKIFF_EINVAL (not an IP address)
 * or -ENOMEM. */
static lb_target_t *target_get(lb_t *lb, const ServiceEndpoints *s, const char *ip,
                               uint16_t port, int *err)
{
    const char *key = s->service_id && *s->service_id ? s->service_id : s->service_name;
    char name[sizeof(((lb_target_t *)0)->name)];
    struct sockaddr_storage sa;
    lb_target_t *t;

    if (!ip || strlen(ip) >= INET6_ADDRSTRLEN || addr_parse(ip, port, &sa)) {
        *err = SKIFF_EINVAL;
        return NULL;
    }
    snprintf(name, sizeof(name), sa.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, port);
    for (lb_link_t *l = lb->targets.next; l != &lb->targets; l = l->next) {
        t = lb_container_of(l, lb_target_t, link);
        if (strcmp(t->name, name) == 0 && strcmp(t->service_key, key) == 0) {
            t->refs++;
            return t;
        }
    }
    /* Whole cache lines: the counters are aligned to them. */
    t = aligned_alloc(64, sizeof(*t) + lb->nworkers * sizeof(t->count[0]));
    if (!t)
        goto out_nomem;
    memset(t, 0, sizeof(*t) + lb->nworkers * sizeof(t->count[0]));
    t->eager = !lb->threaded;
    t->service_key = strdup(key ? key : "");
    t->service_name = strdup(s->service_name ? s->service_name : "");
    if (!t->service_key || !t->service_name)
        goto out_free_target;
    memcpy(t->name, name, sizeof(name));
    t->addr = sa;
    t->refs = 1;
    link_push(&lb->targets, &t->link);
    return t;

out_free_target:
    free(t->service_key);
    free(t->service_name);
    free(t);
out_nomem:
    *err = -ENOMEM;
    return NULL;
}

/* The set of s's backends for port sp. Returns NULL when out of memory. */
static lb_set_t *set_build(lb_t *lb, const ServiceEndpoints *s, const ServicePort *sp)
{
    lb_set_t *set = malloc(sizeof(*set) + s->n_backends * sizeof(set->t[0]));
    int err = 0;

    if (!set)
        return NULL;
    set->refs = 1;
    set->rr = 0;
    set->n = 0;
    set->port = (uint16_t)sp->port;
    set->service_name = strdup(s->service_name ? s->service_name : "");
    if (!set->service_name)
        goto out_free_set;
    for (size_t i = 0; i < s->n_backends; i++) {
        const Backend *b = s->backends[i];
        const PortMapping *m = NULL;
        lb_target_t *t;
        bool dup = false;

        for (size_t j = 0; j < b->n_ports && !m; j++) {
            if (b->ports[j]->target == sp->target && b->ports[j]->host_port > 0 &&
                b->ports[j]->host_port <= 65535)
                m = b->ports[j];
        }
        if (!m) {
            log_debug("lb: %s: backend %s publishes no port for %u", s->service_name,
                      b->task_id, sp->target);
            continue;
        }
        t = target_get(lb, s, b->address, (uint16_t)m->host_port, &err);
        if (!t) {
            if (err == -ENOMEM)
                goto out_free_set;
            log_warn("lb: %s: backend %s: bad address '%s'", s->service_name, b->task_id,
                     b->address);
            continue;
        }
        for (size_t j = 0; j < set->n && !dup; j++)
            dup = set->t[j] == t;
        if (dup)
            target_unref(t);
        else
            set->t[set->n++] = t;
    }
    return set;

out_free_set:
    set_unref(set);
    return NULL;
}

/* The shared timer for connect and idle timeouts. */

static void on_timer(uv_timer_t *timer);

/* Arms the timer for the earliest deadline, unless it is armed for an
 * earlier one already (it re-arms when it fires). */
static void timer_arm(lb_worker_t *w)
{
    uint64_t due = UINT64_MAX;
    uint64_t now = uv_now(w->loop);
    lb_conn_t *c;

    if (w->closing)
        return;
    if (!link_empty(&w->connecting)) {
        c = lb_container_of(w->connecting.next, lb_conn_t, link);
        due = c->stamp + w->cfg.connect_timeout_ms;
    }
    if (!link_empty(&w->established)) {
        c = lb_container_of(w->established.next, lb_conn_t, link);
        if (c->stamp + w->cfg.idle_timeout_ms < due)
            due = c->stamp + w->cfg.idle_timeout_ms;
    }
    if (due == UINT64_MAX || (w->timer_due && w->timer_due <= due))
        return;
    uv_timer_start(&w->timer, on_timer, due > now ? due - now : 0, 0);
    w->timer_due = due;
}

/* Appends c to list h (connecting or established) stamped now. */
static void conn_queue(lb_conn_t *c, lb_link_t *h)
{
    bool was_empty = link_empty(h);

    c->stamp = uv_now(c->w->loop);
    link_push(h, &c->link);
    if (was_empty)
        timer_arm(c->w);
}

/* Buffers: the pool of per-direction buffers. */

static int pool_get(lb_worker_t *w, buf_t *b)
{
    if (w->npool) {
        *b = w->pool[--w->npool];
        return 0;
    }
    return buf_init(b, w->cfg.buffer_size);
}

static void pool_put(lb_worker_t *w, buf_t *b)
{
    if (!b->start)
        return;
    if (w->npool < LB_POOL_MAX && !w->closing) {
        b->pos = b->last = b->start;
        w->pool[w->npool++] = *b;
        *b = (buf_t)BUF_INIT;
    } else {
        buf_free(b);
    }
}

/* Sockets. */

static int sock_add(lb_worker_t *w, lb_sock_t *s, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = s };

    return epoll_ctl(w->epfd, EPOLL_CTL_ADD, s->fd, &ev) ? -errno : 0;
}

static void sock_close(lb_sock_t *s)
{
    if (s->fd >= 0)
        close(s->fd); /* which also takes it out of the epoll */
    s->fd = -1;
    s->readable = s->writable = s->rdhup = s->out = false;
}

/* s did not take all that was sent: wait for its room. EPOLLOUT joins a
 * socket's interest set only then (a client's socket starts without it):
 * edge-triggered, a writable socket would otherwise report an event at every
 * change of its state (added, FIN sent, FIN acknowledged), a poll round each
 * for nothing. Returns 0 or a negative errno. */
static int sock_full(lb_worker_t *w, lb_sock_t *s)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                              .data.ptr = s };

    s->writable = false;
    if (s->out)
        return 0;
    if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, s->fd, &ev))
        return -errno;
    s->out = true;
    return 0;
}

/* Connections. */

static void conn_free(lb_conn_t *c)
{
    set_unref(c->set);
    if (c->target)
        target_unref(c->target);
    pool_put(c->w, &c->up.buf);
    pool_put(c->w, &c->down.buf);
    buf_free(&c->replay);
    free(c);
}

/* Closes both sides at once. The struct is freed now, or after the batch of
 * events being dispatched (which may still name its sockets). */
static void conn_close(lb_conn_t *c)
{
    lb_worker_t *w = c->w;

    if (c->closed)
        return;
    c->closed = true;
    link_remove(&c->link);
    link_remove(&c->ended);
    w->lb->nconns--;
    if (c->connected)
        CNT_ADD(c->target->count[w->idx].active, (uint64_t)-1);
    sock_close(&c->client);
    sock_close(&c->backend);
    if (w->dispatching)
        link_push(&w->dead_conns, &c->link);
    else
        conn_free(c);
}

static bool pipe_done(const lb_pipe_t *p)
{
    return p->eof && !p->blocked;
}

/* Passes on the end of a direction whose source has ended and whose data is
 * all sent: when both have ended, closes the connection (close sends the FIN
 * of both sides); otherwise shuts down the writing side of the ended
 * direction's destination and lets the other direction go on. */
static void conn_settle(lb_conn_t *c)
{
    lb_pipe_t *ps[2] = { &c->up, &c->down };

    if (pipe_done(&c->up) && pipe_done(&c->down)) {
        conn_close(c);
        return;
    }
    for (int i = 0; i < 2; i++) {
        lb_pipe_t *p = ps[i];

        if (!pipe_done(p) || p->shut)
            continue;
        p->shut = true;
        if (shutdown(p->to->fd, SHUT_WR)) {
            conn_close(c);
            return;
        }
    }
}

/* A direction of c has ended: settled after the batch, so that an end of the
 * other direction in the same batch makes it one close. */
static void conn_ended(lb_conn_t *c)
{
    if (!c->w->dispatching) {
        conn_settle(c);
        return;
    }
    if (link_empty(&c->ended))
        link_push(&c->w->ended, &c->ended);
}

/* Activity: moves an established connection to the tail of the idle order. */
static inline void conn_touch(lb_conn_t *c)
{
    uint64_t now = uv_now(c->w->loop);

    if (c->stamp == now)
        return;
    link_remove(&c->link);
    conn_queue(c, &c->w->established);
}

/* Replay. A backend that ends or fails before its first byte, while the
 * balancer still holds all that the client sent and the client has not ended
 * its side, counts as a failed connect: the next backend gets the same
 * bytes. That is how a dead container looks behind a proxy that accepts for
 * it (the engine's docker-proxy accepts on the published port, then closes
 * when the container does not answer), and how a backend killed before it
 * answered looks. A request that a backend took and died on without a word
 * may so be done twice, as HTTP proxies do with requests that got no answer;
 * a client that sent everything and ended (a push protocol) is never
 * replayed. */

/* The backend answered, or the client sent more than one buffer: no other
 * backend will be tried. */
static void replay_end(lb_conn_t *c)
{
    c->replay_on = false;
    buf_free(&c->replay);
    if (c->connected) {
        set_unref(c->set);
        c->set = NULL;
    }
}

/* Keeps a copy of n more bytes the client sent (a request is usually one
 * small allocation; never more than buffer_size in all). */
static void replay_add(lb_conn_t *c, const char *data, size_t n)
{
    if (buf_append(&c->replay, data, n, c->w->cfg.buffer_size))
        replay_end(c);
}

/* The backend of c may be given up for the next one (conn_backend_lost). */
static bool conn_can_replay(const lb_conn_t *c)
{
    return c->replay_on && !c->up.eof && c->connected && c->w->dispatching;
}

/* A socket of c failed: the next backend is tried when it is the backend
 * and that is possible, else c closes. */
static void conn_fail(lb_conn_t *c, const lb_sock_t *sock)
{
    if (sock == &c->backend && conn_can_replay(c))
        conn_backend_lost(c);
    else
        conn_close(c);
}

/* Sends what p holds; true when it is all sent (or p held nothing). */
static bool pipe_flush(lb_conn_t *c, lb_pipe_t *p)
{
    while (buf_len(&p->buf)) {
        ssize_t w;

        if (!p->to->writable)
            return false;
        w = send(p->to->fd, p->buf.pos, buf_len(&p->buf), MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                conn_fail(c, p->to);
                return false;
            }
            if (sock_full(c->w, p->to))
                conn_close(c);
            return false;
        }
        buf_consume(&p->buf, (size_t)w);
        /* A short send: the peer's window is full. */
        if (buf_len(&p->buf) && sock_full(c->w, p->to)) {
            conn_close(c);
            return false;
        }
    }
    p->blocked = false;
    pool_put(c->w, &p->buf);
    return true;
}

/* Moves what p->from has to p->to, as far as both allow. Returns false when
 * the connection was closed. */
static bool pipe_pump(lb_conn_t *c, lb_pipe_t *p)
{
    lb_worker_t *w = c->w;
    size_t size = w->cfg.buffer_size;

    if (p->blocked) {
        if (!pipe_flush(c, p))
            return !c->closed && c->connected;
        conn_touch(c);
    }
    if (p->eof) {
        if (!p->shut)
            conn_ended(c); /* also an end read before the connect */
        return true;
    }
    while (p->from->readable && !p->eof) {
        ssize_t n = recv(p->from->fd, w->rbuf, size, 0);
        ssize_t sent;

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                p->from->readable = false;
                return true;
            }
            conn_fail(c, p->from);
            return false;
        }
        if (n == 0 && p == &c->down && conn_can_replay(c)) {
            conn_backend_lost(c); /* ended without a byte */
            return false;
        }
        if (n == 0 || ((size_t)n < size && p->from->rdhup)) {
            /* The end, or the last data before it: a short read after the
             * FIN arrived has taken everything that came before it. */
            p->eof = true;
            p->from->readable = false;
        } else if ((size_t)n < size) {
            p->from->readable = false; /* drained until the next event */
        }
        if (n == 0) {
            conn_ended(c);
            return true;
        }
        CNT_ADD(*p->bytes, (uint64_t)n);
        conn_touch(c);
        if (c->replay_on) {
            if (p == &c->up)
                replay_add(c, w->rbuf, (size_t)n);
            else
                replay_end(c);
        }
        do
            sent = p->to->writable ? send(p->to->fd, w->rbuf, (size_t)n, MSG_NOSIGNAL) : 0;
        while (sent < 0 && errno == EINTR);
        if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            conn_fail(c, p->to);
            return false;
        }
        if (sent == n) {
            if (p->eof)
                conn_ended(c);
            continue;
        }
        if (sent < 0)
            sent = 0;
        if (sock_full(w, p->to) || pool_get(w, &p->buf)) {
            conn_close(c);
            return false;
        }
        memcpy(p->buf.last, w->rbuf + sent, (size_t)(n - sent));
        p->buf.last += n - sent;
        p->blocked = true;
        return true;
    }
    return true;
}

static void conn_pump(lb_conn_t *c)
{
    if (pipe_pump(c, &c->up))
        pipe_pump(c, &c->down);
}

/* The backend being tried failed (refused, timed out, unreachable). */
static void conn_target_failed(lb_conn_t *c, int err)
{
    lb_worker_t *w = c->w;
    lb_target_t *t = c->target;
    uint64_t now = uv_now(w->loop);

    sock_close(&c->backend);
    CNT_ADD(t->count[w->idx].connect_failures, 1);
    t->fail_seq = ++w->lb->fail_seq;
    if (t->down_until <= now)
        log_warn("lb: %s: backend %s: connect: %s", t->service_name, t->name,
                 skiff_strerror(err));
    t->down_until = now + LB_DOWN_MS;
    target_unref(t);
    c->target = NULL;
}

/* The backend of c, connected, ended or failed before its first byte, and
 * the balancer holds all the client sent: it counts as a failed connect, and
 * the client's bytes go again to the next backend, connected to after the
 * batch of events (which may still hold events of the closed socket).
 * Called while dispatching only. */
static void conn_backend_lost(lb_conn_t *c)
{
    lb_worker_t *w = c->w;

    link_remove(&c->link);
    c->connected = false;
    CNT_ADD(c->target->count[w->idx].active, (uint64_t)-1);
    conn_target_failed(c, -ECONNRESET);
    pool_put(w, &c->up.buf);
    pool_put(w, &c->down.buf);
    c->up.blocked = false;
    c->down.blocked = c->down.eof = c->down.shut = false;
    c->early = buf_len(&c->replay);
    if (c->early) {
        if (pool_get(w, &c->up.buf)) {
            conn_close(c);
            return;
        }
        memcpy(c->up.buf.last, c->replay.pos, c->early);
        c->up.buf.last += c->early;
        c->up.blocked = true;
    }
    c->retry = true;
    link_remove(&c->ended);
    link_push(&w->ended, &c->ended);
}

/* The next backend to try: round-robin from c->first, first those that have
 * not failed lately, then those that had already failed when the client came
 * (the others this connection has tried itself). Each at most once. */
static lb_target_t *conn_next_target(lb_conn_t *c)
{
    uint64_t now = uv_now(c->w->loop);
    lb_set_t *s = c->set;

    for (; c->pass < 2; c->pass++, c->next = 0) {
        while (c->next < s->n) {
            lb_target_t *t = s->t[(c->first + c->next++) % s->n];

            if (!t->live)
                continue;
            if (c->pass == 0 ? t->down_until <= now : t->fail_seq <= c->seq0)
                return t;
        }
    }
    return NULL;
}

/* Starts a non-blocking connect to t on c->backend. Returns 0 or a negative
 * errno (then nothing is open). */
static int conn_connect(lb_conn_t *c, lb_target_t *t)
{
    int one = 1;
    int fd, rc;

    fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    c->backend.fd = fd;
    c->backend.writable = true; /* until a send says otherwise */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) ||
        (connect(fd, (const struct sockaddr *)&t->addr,
                 t->addr.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                               : sizeof(struct sockaddr_in)) &&
         errno != EINPROGRESS)) {
        rc = -errno;
        goto out_close;
    }
    /* Writable (or an error) reports the connect's outcome. */
    rc = sock_add(c->w, &c->backend, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
    if (rc)
        goto out_close;
    c->backend.out = true;
    return 0;

out_close:
    sock_close(&c->backend);
    return rc;
}

static void conn_connected(lb_conn_t *c)
{
    lb_target_t *t = c->target;
    lb_count_t *k = &t->count[c->w->idx];

    link_remove(&c->link);
    c->connected = true;
    CNT_ADD(k->connections, 1);
    CNT_ADD(k->active, 1);
    if (!c->replay_on) {
        set_unref(c->set);
        c->set = NULL;
    }
    c->up.bytes = &k->bytes_in;
    c->down.bytes = &k->bytes_out;
    CNT_ADD(k->bytes_in, c->early);
    conn_queue(c, &c->w->established);
}

/* Sends what the client sent early to the backend being connected, without
 * waiting for the connect to be reported: on the same host it is often done
 * by the time connect(2) returns, and a send that goes through says so.
 * Returns 0 (connected, or not yet known: the connect's event will tell) or
 * a negative errno (the connect failed). */
static int conn_speculate(lb_conn_t *c)
{
    lb_pipe_t *p = &c->up;
    ssize_t w;

    if (!buf_len(&p->buf))
        return 0;
    do
        w = send(c->backend.fd, p->buf.pos, buf_len(&p->buf), MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
    buf_consume(&p->buf, (size_t)w);
    if (buf_len(&p->buf))
        c->backend.writable = false; /* EPOLLOUT is armed from the connect */
    conn_connected(c);
    return 0;
}

/* Connects to the next backend that takes a connect, or closes the client
 * when none is left. The caller must not use c after this (it may be freed). */
static void conn_connect_next(lb_conn_t *c)
{
    lb_target_t *t;
    int rc;

    while ((t = conn_next_target(c))) {
        t->refs++;
        c->target = t;
        rc = conn_connect(c, t);
        if (rc == 0) {
            link_remove(&c->link);
            conn_queue(c, &c->w->connecting);
            rc = conn_speculate(c);
        }
        if (rc == 0) {
            if (c->connected)
                conn_pump(c);
            return;
        }
        link_remove(&c->link);
        conn_target_failed(c, rc);
    }
    log_debug("lb: no backend took a connection (%zu tried)", c->set->n);
    conn_close(c);
}

/* An event on one of c's sockets. */
static void conn_event(lb_conn_t *c, lb_sock_t *s, uint32_t ev)
{
    if (s == &c->backend && !c->connected) {
        if (ev & (EPOLLERR | EPOLLHUP)) {
            int err = 0;
            socklen_t len = sizeof(err);

            if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) || !err)
                err = ECONNREFUSED;
            link_remove(&c->link);
            conn_target_failed(c, -err);
            conn_connect_next(c);
            return;
        }
        if (!(ev & EPOLLOUT))
            return;
        conn_connected(c);
    }
    if (ev & EPOLLERR) {
        conn_fail(c, s);
        return;
    }
    if (ev & (EPOLLIN | EPOLLHUP))
        s->readable = true;
    if (ev & (EPOLLRDHUP | EPOLLHUP))
        s->rdhup = true;
    if (ev & EPOLLOUT)
        s->writable = true;
    if (c->connected)
        conn_pump(c);
}

/* Listeners. */

static void listener_free(lb_listener_t *l)
{
    free(l);
}

static void listener_close(lb_listener_t *l)
{
    lb_worker_t *w = l->w;

    l->route = NULL;
    sock_close(&l->sock);
    if (w->dispatching)
        link_push(&w->dead_listeners, &l->dead);
    else
        listener_free(l);
}

static void lb_arm_retry(lb_t *lb);

/* Reads what a new client has sent already (a request, usually) into the
 * up buffer, to go with the connect. Returns 0 or a negative errno. */
static int conn_read_early(lb_conn_t *c)
{
    lb_pipe_t *p = &c->up;
    ssize_t n;

    if (pool_get(c->w, &p->buf))
        return -ENOMEM;
    do
        n = recv(c->client.fd, p->buf.last, buf_room(&p->buf), 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        return -errno;
    if (n <= 0) {
        pool_put(c->w, &p->buf);
        p->eof = n == 0;
        return 0;
    }
    p->buf.last += n;
    p->blocked = true;
    c->early = (size_t)n;
    replay_add(c, p->buf.pos, (size_t)n);
    return 0;
}

static void worker_arm_resume(lb_worker_t *w);
static void worker_take_table(lb_worker_t *w);

/* Accepts the clients waiting on l (a batch at most: the listener is level-
 * triggered, the rest come with the next event). */
static void listener_accept(lb_listener_t *l)
{
    lb_worker_t *w = l->w;
    lb_t *lb = w->lb;

    for (int i = 0; i < LB_ACCEPTS && (l->route || l->set); i++) {
        /* One worker: the route's set; threads: the worker's table's. */
        lb_set_t *set = l->route ? l->route->set : l->set;
        const char *service = set->service_name;
        unsigned port = set->port;
        lb_conn_t *c;
        int fd = accept4(l->sock.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            /* Out of descriptors or memory: pause this listener (its clients
             * wait in the backlog) rather than spin on it. */
            log_warn("lb: %s: accept on port %u: %s; pausing it", service, port,
                     strerror(errno));
            struct epoll_event ev = { .events = 0, .data.ptr = &l->sock };

            epoll_ctl(w->epfd, EPOLL_CTL_MOD, l->sock.fd, &ev);
            l->paused = true;
            if (lb->threaded)
                worker_arm_resume(w);
            else
                lb_arm_retry(lb);
            return;
        }
        CNT_ADD(w->accepted, 1);
        /* One counter for all workers: taken first, given back if refused. */
        if (!set->n || lb->nconns++ >= w->cfg.max_connections) {
            if (set->n) {
                lb->nconns--;
                log_debug("lb: %s: %zu connections, refusing more", service,
                          (size_t)lb->nconns);
            }
            close(fd);
            continue;
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
            lb->nconns--;
            close(fd);
            continue;
        }
        c->w = w;
        link_init(&c->link);
        link_init(&c->ended);
        c->client = (lb_sock_t){ .fd = fd, .kind = LB_SOCK_CLIENT, .writable = true };
        c->backend = (lb_sock_t){ .fd = -1, .kind = LB_SOCK_BACKEND, .writable = true };
        c->up = (lb_pipe_t){ .from = &c->client, .to = &c->backend };
        c->down = (lb_pipe_t){ .from = &c->backend, .to = &c->client };
        c->replay_on = true;
        /* TCP_NODELAY is inherited from the listening socket. What the
         * client sent already is read before its socket joins the epoll
         * (which then reports only what comes later). */
        if (conn_read_early(c) ||
            sock_add(w, &c->client, EPOLLIN | EPOLLRDHUP | EPOLLET)) {
            conn_close(c);
            continue;
        }
        c->set = set;
        c->set->refs++;
        /* One cursor for all workers (an atomic add): the order stays
         * strict round-robin over the connections of every thread. */
        c->first = set->rr++ % c->set->n;
        c->seq0 = lb->fail_seq;
        conn_connect_next(c);
    }
}

/* The batch of events. */

static void on_events(uv_poll_t *poll, int status, int events)
{
    lb_worker_t *w = poll->data;
    struct epoll_event ev[LB_EVENTS];
    int n;

    /* Threads: a table published since the last batch counts for this one
     * (an atomic load when there is none). */
    if (w->lb->threaded)
        worker_take_table(w);
    do
        n = epoll_wait(w->epfd, ev, LB_EVENTS, 0);
    while (n < 0 && errno == EINTR);
    w->dispatching = true;
    for (int i = 0; i < n; i++) {
        lb_sock_t *s = ev[i].data.ptr;

        if (s->fd < 0)
            continue; /* closed earlier in this batch */
        switch (s->kind) {
        case LB_SOCK_LISTENER:
            listener_accept(lb_container_of(s, lb_listener_t, sock));
            break;
        case LB_SOCK_CLIENT:
            conn_event(lb_container_of(s, lb_conn_t, client), s, ev[i].events);
            break;
        default:
            conn_event(lb_container_of(s, lb_conn_t, backend), s, ev[i].events);
            break;
        }
    }
    w->dispatching = false;
    while (!link_empty(&w->ended)) {
        lb_conn_t *c = lb_container_of(w->ended.next, lb_conn_t, ended);

        link_remove(&c->ended);
        if (c->retry) {
            c->retry = false;
            conn_connect_next(c);
        } else {
            conn_settle(c);
        }
    }
    while (!link_empty(&w->dead_conns)) {
        lb_link_t *l = w->dead_conns.next;

        link_remove(l);
        conn_free(lb_container_of(l, lb_conn_t, link));
    }
    while (!link_empty(&w->dead_listeners)) {
        lb_link_t *l = w->dead_listeners.next;

        link_remove(l);
        listener_free(lb_container_of(l, lb_listener_t, dead));
    }
}

static const char *side_addr(const lb_t *lb, int side)
{
    return side == LB_GATEWAY ? lb->gateway : lb->advertise;
}

static bool route_wants(const lb_t *lb, const lb_route_t *r, int side)
{
    return lb->side_on[side] && (side == LB_GATEWAY || !r->internal);
}

/* A socket bound to the side's address and port, listening unless probe.
 * TCP_NODELAY on it passes to the accepted sockets. Returns it, or a
 * negative errno. */
static int listen_fd(lb_t *lb, int side, uint16_t port, bool reuseport, bool probe)
{
    struct sockaddr_storage sa = lb->side_addr[side];
    int one = 1;
    int fd, rc;

    if (sa.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&sa)->sin6_port = htons(port);
    else
        ((struct sockaddr_in *)&sa)->sin_port = htons(port);
    fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one))) ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) ||
        bind(fd, (struct sockaddr *)&sa,
             sa.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                      : sizeof(struct sockaddr_in)) ||
        (!probe && listen(fd, LB_BACKLOG))) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

static lb_listener_t *listener_new(lb_worker_t *w, int fd)
{
    lb_listener_t *l = calloc(1, sizeof(*l));

    if (!l)
        return NULL;
    l->sock = (lb_sock_t){ .fd = fd, .kind = LB_SOCK_LISTENER };
    l->w = w;
    link_init(&l->dead);
    link_init(&l->wlink);
    link_init(&l->retired);
    return l;
}

/* One worker: a listener of r's port on the side, into r->ls[side] and the
 * worker's epoll. The gateway socket takes SO_REUSEPORT so that agents
 * sharing one engine can all listen there. Returns 0 or a negative errno. */
static int listener_open(lb_t *lb, lb_route_t *r, int side)
{
    lb_worker_t *w = &lb->w[0];
    lb_listener_t *l;
    int fd, rc;

    fd = listen_fd(lb, side, r->port, side == LB_GATEWAY, false);
    if (fd < 0)
        return fd;
    l = listener_new(w, fd);
    if (!l) {
        close(fd);
        return -ENOMEM;
    }
    l->route = r;
    rc = sock_add(w, &l->sock, EPOLLIN); /* level-triggered */
    if (rc) {
        close(fd);
        free(l);
        return rc;
    }
    r->ls[side] = l;
    return 0;
}

/* Threads: frees listeners made by listeners_open, closing their sockets. */
static void listeners_free(lb_listener_t **ls, unsigned n)
{
    for (unsigned i = 0; ls && i < n; i++) {
        if (ls[i]) {
            sock_close(&ls[i]->sock);
            free(ls[i]);
        }
    }
    free(ls);
}

/* Threads: one listener per worker of r's port on the side, all with
 * SO_REUSEPORT, the kernel spreading new connections over them, into
 * r->tls[side]; the workers take them with the next table. On the advertise
 * address, a probe bound without SO_REUSEPORT first makes sure that no
 * other process listens there (an old agent still alive would otherwise
 * share the port and take part of the connections). Returns 0 or a negative
 * errno (then nothing is open). */
static int listeners_open(lb_t *lb, lb_route_t *r, int side)
{
    lb_listener_t **ls = calloc(lb->nworkers, sizeof(*ls));
    int fd, rc = 0;

    if (!ls)
        return -ENOMEM;
    if (side == LB_ADVERTISE) {
        fd = listen_fd(lb, side, r->port, false, true);
        if (fd < 0) {
            rc = fd;
            goto out_free;
        }
        close(fd);
    }
    for (unsigned i = 0; i < lb->nworkers; i++) {
        fd = listen_fd(lb, side, r->port, true, false);
        if (fd < 0) {
            rc = fd;
            goto out_free;
        }
        ls[i] = listener_new(&lb->w[i], fd);
        if (!ls[i]) {
            close(fd);
            rc = -ENOMEM;
            goto out_free;
        }
    }
    r->tls[side] = ls;
    return 0;

out_free:
    listeners_free(ls, lb->nworkers);
    return rc;
}

/* Threads: the listeners of r's side leave with the next table; their
 * sockets close once every worker runs it. */
static void listeners_retire(lb_t *lb, lb_route_t *r, int side)
{
    lb_listener_t **ls = r->tls[side];

    r->tls[side] = NULL;
    for (unsigned i = 0; ls && i < lb->nworkers; i++) {
        if (lb->closing) {
            sock_close(&ls[i]->sock);
            free(ls[i]);
            continue;
        }
        ls[i]->retire_gen = lb->gen + 1;
        link_push(&lb->retired_listeners, &ls[i]->retired);
    }
    free(ls);
}

static void on_retry(uv_timer_t *timer);

static void lb_arm_retry(lb_t *lb)
{
    if (!lb->closing && !uv_is_active((uv_handle_t *)&lb->retry))
        uv_timer_start(&lb->retry, on_retry, lb->cfg.retry_ms, lb->cfg.retry_ms);
}

/* Opens every listener that is wanted and not open, and (one worker)
 * resumes paused ones; keeps the retry timer armed while any is missing or
 * paused. Returns the number opened. */
static int lb_listen_all(lb_t *lb)
{
    bool missing = false;
    int opened = 0;

    for (lb_route_t *r = lb->routes; r; r = r->next) {
        for (int side = 0; side < LB_SIDES; side++) {
            lb_listener_t *l = r->ls[side];
            bool open = lb->threaded ? r->tls[side] != NULL : l != NULL;
            int rc;

            if (l && l->paused) {
                struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &l->sock };

                l->paused = epoll_ctl(lb->w[0].epfd, EPOLL_CTL_MOD, l->sock.fd, &ev) != 0;
                missing |= l->paused;
            }
            if (!route_wants(lb, r, side) || open)
                continue;
            rc = lb->threaded ? listeners_open(lb, r, side) : listener_open(lb, r, side);
            if (rc == 0) {
                log_info("lb: %s: listening on %s:%u (%s%s)", r->service_name,
                         side_addr(lb, side), r->port, side_names[side],
                         r->err[side] ? ", after retries" : "");
                r->err[side] = 0;
                opened++;
                continue;
            }
            missing = true;
            if (rc != r->err[side])
                log_warn("lb: %s: cannot listen on %s:%u: %s (retrying every %llums)",
                         r->service_name, side_addr(lb, side), r->port, skiff_strerror(rc),
                         (unsigned long long)lb->cfg.retry_ms);
            r->err[side] = rc;
        }
    }
    if (missing)
        lb_arm_retry(lb);
    else
        uv_timer_stop(&lb->retry);
    return opened;
}

/* Threads: the table swap. */

static void table_free(lb_table_t *t)
{
    for (size_t i = 0; t && i < t->n; i++)
        set_unref(t->e[i].set);
    free(t);
}

/* A table big enough for the listeners of routes (all sides, all workers).
 * NULL when out of memory. */
static lb_table_t *table_alloc(lb_t *lb, const lb_route_t *routes)
{
    size_t cap = 0;
    lb_table_t *t;

    for (const lb_route_t *r = routes; r; r = r->next)
        cap += LB_SIDES * lb->nworkers;
    t = malloc(sizeof(*t) + cap * sizeof(t->e[0]));
    if (!t)
        return NULL;
    t->n = 0;
    t->cap = cap;
    t->next_retired = NULL;
    return t;
}

/* Fills t (from table_alloc over lb->routes) and makes it the workers'
 * table; the one it replaces is retired, freed once every worker has taken
 * t or a later one (lb_collect). Never fails. */
static void lb_publish(lb_t *lb, lb_table_t *t)
{
    lb_table_t *old;

    for (lb_route_t *r = lb->routes; r; r = r->next) {
        for (int side = 0; side < LB_SIDES; side++) {
            for (unsigned i = 0; r->tls[side] && i < lb->nworkers && t->n < t->cap; i++) {
                t->e[t->n].l = r->tls[side][i];
                t->e[t->n].set = r->set;
                r->set->refs++;
                t->n++;
            }
        }
    }
    t->gen = ++lb->gen;
    old = atomic_exchange(&lb->table, t);
    if (old) {
        old->retire_gen = t->gen;
        old->next_retired = lb->retired_tables;
        lb->retired_tables = old;
    }
    for (unsigned i = 0; i < lb->nworkers; i++)
        uv_async_send(&lb->w[i].wake);
}

/* Frees what every worker has left behind: retired tables and listeners,
 * targets without references. On the loop's thread. */
static void lb_collect(lb_t *lb)
{
    uint64_t min = UINT64_MAX;
    lb_table_t **tp = &lb->retired_tables;
    lb_link_t *l;

    for (unsigned i = 0; i < lb->nworkers; i++) {
        uint64_t a = lb->w[i].acked;

        if (a < min)
            min = a;
    }
    while (*tp) {
        lb_table_t *t = *tp;

        if (t->retire_gen <= min) {
            *tp = t->next_retired;
            table_free(t);
        } else {
            tp = &t->next_retired;
        }
    }
    l = lb->retired_listeners.next;
    while (l != &lb->retired_listeners) {
        lb_listener_t *ls = lb_container_of(l, lb_listener_t, retired);

        l = l->next;
        if (ls->retire_gen <= min) {
            link_remove(&ls->retired);
            sock_close(&ls->sock);
            free(ls);
        }
    }
    lb_reap(lb);
}

static void on_acked(uv_async_t *a)
{
    lb_collect(a->data);
}

/* Threads, on the loop's thread: opens missing listeners and, when some
 * opened, publishes a table with them. The table is allocated first: a
 * listener open and in no table would get connections nobody accepts. */
static void lb_listen_publish(lb_t *lb)
{
    lb_table_t *t = table_alloc(lb, lb->routes);

    if (!t) {
        lb_arm_retry(lb);
        return;
    }
    if (lb_listen_all(lb) > 0)
        lb_publish(lb, t);
    else
        free(t);
}

static void on_retry(uv_timer_t *timer)
{
    lb_t *lb = timer->data;

    if (lb->threaded)
        lb_listen_publish(lb);
    else
        lb_listen_all(lb);
}

/* Threads, on a worker's thread: takes the table lb_publish made last. */
static void worker_take_table(lb_worker_t *w)
{
    lb_table_t *t = atomic_load(&w->lb->table);
    lb_link_t *l;

    if (!t || t == w->table)
        return;
    for (l = w->listeners.next; l != &w->listeners; l = l->next)
        lb_container_of(l, lb_listener_t, wlink)->seen = false;
    for (size_t i = 0; i < t->n; i++) {
        lb_listener_t *ls = t->e[i].l;

        if (ls->w != w)
            continue;
        ls->set = t->e[i].set;
        ls->seen = true;
        if (!link_empty(&ls->wlink))
            continue;
        link_push(&w->listeners, &ls->wlink);
        if (sock_add(w, &ls->sock, EPOLLIN)) /* level-triggered */
            log_warn("lb: %s: port %u: cannot poll a listener: %s", ls->set->service_name,
                     ls->set->port, strerror(errno));
    }
    l = w->listeners.next;
    while (l != &w->listeners) {
        lb_listener_t *ls = lb_container_of(l, lb_listener_t, wlink);

        l = l->next;
        if (ls->seen)
            continue;
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, ls->sock.fd, NULL);
        link_remove(&ls->wlink);
        ls->set = NULL;
        ls->paused = false;
    }
    w->table = t;
    w->acked = t->gen;
    uv_async_send(&w->lb->acked);
}

static void on_resume(uv_timer_t *timer)
{
    lb_worker_t *w = timer->data;
    bool paused = false;

    for (lb_link_t *l = w->listeners.next; l != &w->listeners; l = l->next) {
        lb_listener_t *ls = lb_container_of(l, lb_listener_t, wlink);
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &ls->sock };

        if (ls->paused)
            ls->paused = epoll_ctl(w->epfd, EPOLL_CTL_MOD, ls->sock.fd, &ev) != 0;
        paused |= ls->paused;
    }
    if (!paused)
        uv_timer_stop(&w->resume);
}

static void worker_arm_resume(lb_worker_t *w)
{
    if (!w->closing && !uv_is_active((uv_handle_t *)&w->resume))
        uv_timer_start(&w->resume, on_resume, w->cfg.retry_ms, w->cfg.retry_ms);
}

/* Routes. */

static void route_free(lb_t *lb, lb_route_t *r)
{
    for (int side = 0; side < LB_SIDES; side++) {
        if (r->ls[side])
            listener_close(r->ls[side]);
        if (r->tls[side])
            listeners_retire(lb, r, side);
    }
    set_unref(r->set);
    free(r->service_name);
    free(r);
}

static lb_route_t *route_find(lb_route_t *list, uint32_t port)
{
    for (; list; list = list->next) {
        if (list->port == port)
            return list;
    }
    return NULL;
}

static lb_route_t *route_new(lb_t *lb, const ServiceEndpoints *s, const ServicePort *sp)
{
    lb_route_t *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    r->port = (uint16_t)sp->port;
    r->target = (uint16_t)sp->target;
    r->internal = sp->internal;
    r->service_name = strdup(s->service_name ? s->service_name : "");
    r->set = set_build(lb, s, sp);
    if (!r->service_name || !r->set) {
        route_free(lb, r);
        return NULL;
    }
    return r;
}

int lb_apply(lb_t *lb, const Endpoints *eps)
{
    lb_route_t *fresh = NULL, **tail = &fresh;
    lb_route_t *r, *old;
    lb_table_t *table = NULL;

    if (lb->closing)
        return SKIFF_ECLOSED;
    for (size_t i = 0; i < eps->n_services; i++) {
        const ServiceEndpoints *s = eps->services[i];

        for (size_t j = 0; j < s->n_ports; j++) {
            const ServicePort *sp = s->ports[j];

            if (sp->port == 0 || sp->port > 65535 || sp->target == 0 || sp->target > 65535) {
                log_warn("lb: %s: bad port %u:%u, skipped", s->service_name, sp->port,
                         sp->target);
                continue;
            }
            r = route_find(fresh, sp->port);
            if (r) {
                log_warn("lb: %s: port %u is balanced for %s already, skipped",
                         s->service_name, sp->port, r->service_name);
                continue;
            }
            r = route_new(lb, s, sp);
            if (!r)
                goto out_free_fresh;
            *tail = r;
            tail = &r->next;
        }
    }
    if (lb->threaded && !(table = table_alloc(lb, fresh)))
        goto out_free_fresh;

    /* Commit: nothing fails from here on. Listeners move to the new route of
     * their port; those of ports gone close. */
    for (r = fresh; r; r = r->next) {
        if (!route_find(lb->routes, r->port))
            log_info("lb: %s: balancing port %u over %zu backends", r->service_name, r->port,
                     r->set->n);
    }
    while ((old = lb->routes)) {
        lb->routes = old->next;
        r = route_find(fresh, old->port);
        for (int side = 0; r && side < LB_SIDES; side++) {
            r->err[side] = old->err[side];
            if (old->ls[side] && route_wants(lb, r, side)) {
                r->ls[side] = old->ls[side];
                r->ls[side]->route = r;
                old->ls[side] = NULL;
            }
            if (old->tls[side] && route_wants(lb, r, side)) {
                r->tls[side] = old->tls[side];
                old->tls[side] = NULL;
            }
        }
        if (r) {
            r->set->rr = (uint32_t)old->set->rr;
            if (r->set->n != old->set->n)
                log_info("lb: %s: port %u: %zu backends", r->service_name, r->port, r->set->n);
        } else {
            log_info("lb: %s: port %u no longer balanced", old->service_name, old->port);
        }
        route_free(lb, old);
    }
    /* Removed backends stop being live before the workers see the new table:
     * no worker connects to one after this returns (conn_next_target). */
    for (lb_link_t *l = lb->targets.next; l != &lb->targets; l = l->next)
        lb_container_of(l, lb_target_t, link)->live = false;
    for (r = fresh; r; r = r->next) {
        for (size_t i = 0; i < r->set->n; i++)
            r->set->t[i]->live = true;
    }
    lb->routes = fresh;
    lb_listen_all(lb);
    if (table) {
        lb_publish(lb, table);
        lb_collect(lb);
    }
    return 0;

out_free_fresh:
    while ((r = fresh)) {
        fresh = r->next;
        route_free(lb, r);
    }
    return -ENOMEM;
}

/* Stats. */

void lb_stats_free(LbStats **stats, size_t n)
{
    if (!stats)
        return;
    for (size_t i = 0; i < n; i++) {
        if (stats[i])
            protobuf_c_message_free_unpacked(&stats[i]->base, NULL);
    }
    free(stats);
}

/* t's counters, summed over the workers. */
static lb_count_t target_count(const lb_t *lb, lb_target_t *t)
{
    lb_count_t sum = { 0 };

    for (unsigned i = 0; i < lb->nworkers; i++) {
        lb_count_t *k = &t->count[i];

        sum.connections += CNT_GET(k->connections);
        sum.active += CNT_GET(k->active);
        sum.bytes_in += CNT_GET(k->bytes_in);
        sum.bytes_out += CNT_GET(k->bytes_out);
        sum.connect_failures += CNT_GET(k->connect_failures);
    }
    return sum;
}

int lb_stats(lb_t *lb, LbStats ***out, size_t *n)
{
    LbStats **arr;
    size_t count = 0, i = 0;

    *out = NULL;
    *n = 0;
    if (lb->threaded)
        lb_reap(lb);
    for (lb_link_t *l = lb->targets.next; l != &lb->targets; l = l->next) {
        lb_target_t *t = lb_container_of(l, lb_target_t, link);

        count += t->live || target_count(lb, t).active;
    }
    arr = calloc(count ? count : 1, sizeof(*arr));
    if (!arr)
        return -ENOMEM;
    for (lb_link_t *l = lb->targets.next; l != &lb->targets && i < count; l = l->next) {
        lb_target_t *t = lb_container_of(l, lb_target_t, link);
        lb_count_t k = target_count(lb, t);
        LbStats *m;

        if (!t->live && !k.active)
            continue;
        m = malloc(sizeof(*m));
        if (!m)
            goto out_free;
        skiff__v1__lb_stats__init(m);
        arr[i++] = m;
        m->service_name = strdup(t->service_name);
        m->backend = strdup(t->name);
        if (!m->service_name || !m->backend)
            goto out_free;
        m->connections = k.connections;
        m->active = k.active;
        m->bytes_in = k.bytes_in;
        m->bytes_out = k.bytes_out;
        m->connect_failures = k.connect_failures;
    }
    /* With threads a connection may have closed between the two walks. */
    *out = arr;
    *n = i;
    return 0;

out_free:
    for (size_t j = 0; j < i; j++) {
        /* Unset strings point at protobuf-c's empty string, which it skips. */
        if (!arr[j]->service_name)
            arr[j]->service_name = (char *)protobuf_c_empty_string;
        if (!arr[j]->backend)
            arr[j]->backend = (char *)protobuf_c_empty_string;
    }
    lb_stats_free(arr, i);
    return -ENOMEM;
}

size_t lb_connections(const lb_t *lb)
{
    return lb->nconns;
}

size_t lb_threads(const lb_t *lb)
{
    return lb->nworkers;
}

uint64_t lb_thread_connections(const lb_t *lb, size_t i)
{
    return i < lb->nworkers ? CNT_GET(lb->w[i].accepted) : 0;
}

/* Life cycle. */

static void on_timer(uv_timer_t *timer)
{
    lb_worker_t *w = timer->data;
    uint64_t now = uv_now(w->loop);

    w->timer_due = 0;
    while (!link_empty(&w->connecting)) {
        lb_conn_t *c = lb_container_of(w->connecting.next, lb_conn_t, link);

        if (c->stamp + w->cfg.connect_timeout_ms > now)
            break;
        link_remove(&c->link);
        conn_target_failed(c, -ETIMEDOUT);
        conn_connect_next(c);
    }
    while (!link_empty(&w->established)) {
        lb_conn_t *c = lb_container_of(w->established.next, lb_conn_t, link);

        if (c->stamp + w->cfg.idle_timeout_ms > now)
            break;
        log_debug("lb: connection to %s idle, closed", c->target->name);
        conn_close(c);
    }
    timer_arm(w);
}

/* Closes every connection of w. */
static void worker_close_conns(lb_worker_t *w)
{
    w->closing = true;
    while (!link_empty(&w->connecting))
        conn_close(lb_container_of(w->connecting.next, lb_conn_t, link));
    while (!link_empty(&w->established))
        conn_close(lb_container_of(w->established.next, lb_conn_t, link));
}

/* Threads, on the worker's thread: a new table, or the balancer closes. */
static void on_wake(uv_async_t *a)
{
    lb_worker_t *w = a->data;

    if (!w->lb->stop) {
        worker_take_table(w);
        return;
    }
    worker_close_conns(w);
    uv_close((uv_handle_t *)&w->poll, NULL);
    uv_close((uv_handle_t *)&w->timer, NULL);
    uv_close((uv_handle_t *)&w->resume, NULL);
    uv_close((uv_handle_t *)&w->wake, NULL);
}

static void worker_main(void *arg)
{
    lb_worker_t *w = arg;

    uv_run(w->loop, UV_RUN_DEFAULT);
}

/* w's memory, once its handles are closed (and its thread joined). */
static void worker_free(lb_worker_t *w)
{
    if (w->epfd >= 0)
        close(w->epfd);
    while (w->npool)
        buf_free(&w->pool[--w->npool]);
    free(w->rbuf);
}

/* Sets up w on loop (the agent's, or with threads its own, already
 * initialised). Returns 0 or -1 (then w holds no handle and worker_free
 * frees the rest). */
static int worker_init(lb_t *lb, lb_worker_t *w, unsigned idx, uv_loop_t *loop)
{
    w->lb = lb;
    w->idx = idx;
    w->loop = loop;
    w->cfg = lb->cfg;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->rbuf = malloc(lb->cfg.buffer_size);
    link_init(&w->connecting);
    link_init(&w->established);
    link_init(&w->ended);
    link_init(&w->dead_conns);
    link_init(&w->dead_listeners);
    link_init(&w->listeners);
    if (w->epfd < 0 || !w->rbuf || uv_poll_init(loop, &w->poll, w->epfd))
        return -1;
    uv_timer_init(loop, &w->timer);
    w->poll.data = w->timer.data = w;
    uv_poll_start(&w->poll, UV_READABLE, on_events);
    return 0;
}

/* Threads: w with its own loop and thread. Returns 0 or -1 (then nothing of
 * it runs; worker_free frees the rest). */
static int worker_start(lb_t *lb, lb_worker_t *w, unsigned idx)
{
    if (uv_loop_init(&w->own_loop))
        return -1;
    if (worker_init(lb, w, idx, &w->own_loop))
        goto out_close_loop;
    uv_timer_init(w->loop, &w->resume);
    uv_async_init(w->loop, &w->wake, on_wake);
    w->resume.data = w->wake.data = w;
    if (uv_thread_create(&w->thread, worker_main, w))
        goto out_close_handles;
    w->started = true;
    return 0;

out_close_handles:
    uv_close((uv_handle_t *)&w->poll, NULL);
    uv_close((uv_handle_t *)&w->timer, NULL);
    uv_close((uv_handle_t *)&w->resume, NULL);
    uv_close((uv_handle_t *)&w->wake, NULL);
    uv_run(w->loop, UV_RUN_DEFAULT);
out_close_loop:
    uv_loop_close(&w->own_loop);
    return -1;
}

/* Threads: asks every started worker to stop and waits for their threads,
 * which close their connections and exit at once. */
static void lb_stop_workers(lb_t *lb)
{
    lb->stop = true;
    for (unsigned i = 0; i < lb->nworkers; i++) {
        if (lb->w[i].started)
            uv_async_send(&lb->w[i].wake);
    }
    for (unsigned i = 0; i < lb->nworkers; i++) {
        if (!lb->w[i].started)
            continue;
        uv_thread_join(&lb->w[i].thread);
        uv_loop_close(&lb->w[i].own_loop);
        lb->w[i].started = false;
    }
}

lb_t *lb_create(uv_loop_t *loop, const lb_config_t *cfg)
{
    lb_t *lb = calloc(1, sizeof(*lb));
    unsigned n;

    if (!lb)
        return NULL;
    lb->loop = loop;
    lb->cfg = *cfg;
    if (!lb->cfg.connect_timeout_ms)
        lb->cfg.connect_timeout_ms = LB_CONNECT_TIMEOUT_MS;
    if (!lb->cfg.idle_timeout_ms)
        lb->cfg.idle_timeout_ms = LB_IDLE_TIMEOUT_MS;
    if (!lb->cfg.buffer_size)
        lb->cfg.buffer_size = LB_BUFFER_SIZE;
    if (lb->cfg.buffer_size > INT32_MAX / 2)
        lb->cfg.buffer_size = INT32_MAX / 2;
    if (!lb->cfg.max_connections)
        lb->cfg.max_connections = LB_MAX_CONNECTIONS;
    if (!lb->cfg.retry_ms)
        lb->cfg.retry_ms = LB_RETRY_MS;
    n = cfg->threads ? cfg->threads : 1;
    if (n > LB_MAX_THREADS)
        n = LB_MAX_THREADS;
    lb->cfg.threads = n;
    lb->nworkers = n;
    lb->threaded = n > 1;
    link_init(&lb->targets);
    link_init(&lb->retired_listeners);
    lb->advertise = strdup(cfg->advertise ? cfg->advertise : "");
    lb->gateway = strdup(cfg->gateway ? cfg->gateway : "");
    lb->w = calloc(n, sizeof(*lb->w));
    if (!lb->advertise || !lb->gateway || !lb->w)
        goto out_free;
    for (unsigned i = 0; i < n; i++)
        lb->w[i].epfd = -1;
    lb->cfg.advertise = lb->advertise;
    lb->cfg.gateway = lb->gateway;
    for (int side = 0; side < LB_SIDES; side++) {
        const char *a = side_addr(lb, side);

        lb->side_on[side] = *a != '\0';
        if (lb->side_on[side] && addr_parse(a, 0, &lb->side_addr[side])) {
            log_error("lb: %s address '%s' is not an IP address", side_names[side], a);
            goto out_free;
        }
    }
    if (!lb->threaded) {
        if (worker_init(lb, &lb->w[0], 0, loop))
            goto out_free;
        lb->handles = 3; /* the worker's poll and timer, and retry */
    } else {
        for (unsigned i = 0; i < n; i++) {
            if (worker_start(lb, &lb->w[i], i))
                goto out_stop_workers;
        }
        /* Only workers that took a table send it, and none has one yet. */
        if (uv_async_init(loop, &lb->acked, on_acked))
            goto out_stop_workers;
        lb->acked.data = lb;
        lb->handles = 2; /* acked and retry */
    }
    uv_timer_init(loop, &lb->retry);
    lb->retry.data = lb;
    return lb;

out_stop_workers:
    lb_stop_workers(lb);
out_free:
    for (unsigned i = 0; lb->w && i < n; i++)
        worker_free(&lb->w[i]);
    free(lb->w);
    free(lb->advertise);
    free(lb->gateway);
    free(lb);
    return NULL;
}

static void on_own_handle_closed(uv_handle_t *h)
{
    lb_t *lb = h->data;

    lb->handles--;
    lb_maybe_free(lb);
}

static void on_worker_handle_closed(uv_handle_t *h)
{
    lb_worker_t *w = h->data;

    w->lb->handles--;
    lb_maybe_free(w->lb);
}

static void lb_maybe_free(lb_t *lb)
{
    if (!lb->closing || lb->handles > 0)
        return;
    /* Only now: libuv must not poll a closed descriptor. */
    for (unsigned i = 0; i < lb->nworkers; i++)
        worker_free(&lb->w[i]);
    free(lb->w);
    free(lb->advertise);
    free(lb->gateway);
    if (lb->done)
        lb->done(lb->done_arg);
    free(lb);
}

void lb_close(lb_t *lb, void (*done)(void *arg), void *arg)
{
    lb_route_t *r;

    if (lb->closing)
        return;
    if (lb->threaded)
        lb_stop_workers(lb); /* then every connection is closed */
    lb->closing = true;
    lb->done = done;
    lb->done_arg = arg;
    while ((r = lb->routes)) {
        lb->routes = r->next;
        route_free(lb, r);
    }
    if (lb->threaded) {
        for (unsigned i = 0; i < lb->nworkers; i++)
            lb->w[i].acked = UINT64_MAX; /* gone: everything retired can go */
        table_free(atomic_exchange(&lb->table, NULL));
        for (lb_link_t *l = lb->targets.next; l != &lb->targets; l = l->next)
            lb_container_of(l, lb_target_t, link)->live = false;
        lb_collect(lb);
        uv_close((uv_handle_t *)&lb->acked, on_own_handle_closed);
    } else {
        worker_close_conns(&lb->w[0]);
        uv_close((uv_handle_t *)&lb->w[0].poll, on_worker_handle_closed);
        uv_close((uv_handle_t *)&lb->w[0].timer, on_worker_handle_closed);
    }
    uv_close((uv_handle_t *)&lb->retry, on_own_handle_closed);
}
