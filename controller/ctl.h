/* ctl: the controller process: its loop, its peers, its commit pipeline.
 *
 * One libuv loop does everything. Requests and reports change the model
 * (model.h) and mark what they touched; before the loop waits again,
 * ctl_flush() lets the orchestrator act on what changed (orch.h), then
 * commits every change to the store (store.h) in one batch, whose
 * acknowledgement comes back on the loop. Messages to peers wait in an
 * outbox until the commit that covers the state they show is acknowledged:
 * nothing leaves the controller that a kill -9 could take back. Reads that
 * change nothing are answered at once when no change is waiting.
 *
 * Only the controller that leads acts. On SQLite that is always this one;
 * on a shared store (etcd) the store elects one, and the others follow:
 * they answer agents and clients with the leader's address (Redirect) and
 * the controller list, nothing else (leader.c). A leader that loses its
 * lease, or whose commit the store refuses, steps down at once: its model,
 * outbox and connections go, and it follows until it is elected again.
 */
#ifndef SKIFF_CTL_H
#define SKIFF_CTL_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ca.h"
#include "conn.h"
#include "events.h"
#include "model.h"
#include "seal.h"
#include "secrets.h"
#include "prom.h"
#include "spec.h"
#include "store.h"
#include "token.h"

#define CTL_TOKEN_LEN TOKEN_SECRET_HEX   /* the secret of a token */

typedef struct ctl ctl_t;

typedef struct ctl_config {
    char listen[128];
    char advertise[128];           /* the address others are sent to (Redirect) */
    char data_dir[PATH_MAX];
    int64_t heartbeat_timeout_ms;
    int64_t disconnect_grace_ms;   /* a node whose agent's connection closed is down after it */
    int64_t handshake_timeout_ms;  /* Hello must arrive within this */
    int64_t agent_timeout_ms;      /* an agent silent this long is cut off */
    size_t max_frame;
    size_t max_pending;            /* queued output per connection */
    unsigned max_conns;
    unsigned max_conns_per_addr;
    int64_t cert_expiry_ms;        /* lifetime of the certificates it issues */
    char server_names[256];        /* more names for its certificate ("IP:10.0.0.1") */
    spec_limits_t spec_limits;
    char metrics_listen[128];      /* "" : no /metrics listener */
    const char *http_tls_cert;     /* --http-tls-cert/-key: HTTPS for the HTTP listeners */
    const char *http_tls_key;
    char http_listen[128];         /* "" : no HTTP API and dashboard */
    char docker_listen[128];       /* "" : no Docker Engine API */
    int docker_tls;                /* --docker-api-tls: TLS, client certificates of the CA;
                                    * without it the Docker API is loopback only */
    size_t event_buffer;           /* events kept for --since */
    int rebalance;                 /* --rebalance on|off */
    int64_t rebalance_delay_ms;    /* a node must be ready this long to take moved tasks */
    int autolock;                  /* --autolock: the secrets' data key wrapped (secrets.h) */
} ctl_config_t;

/* What the controller counts about itself, for /metrics (monitor.c). */
#define CTL_RPC_MSGS 128  /* Envelope field numbers below this are counted */
#define CTL_RPC_CODES 16  /* ErrorCode values; 0: answered without an error */
typedef struct ctl_counters {
    uint64_t rpc[CTL_RPC_MSGS][CTL_RPC_CODES];
    int rpc_code;                /* the error code of the request being handled */
    prom_histogram_t commit_seconds;
    uint64_t commit_started_ns;  /* of the commit in flight */
    uint64_t events_lost;        /* events that could not be recorded */
} ctl_counters_t;

typedef struct monitor monitor_t;

/* A connection to the controller. Outbox entries hold a reference, so a
 * peer outlives its connection until they are gone. */
typedef struct peer {
    ctl_t *ctl;
    conn_t *conn;          /* NULL once closed */
    int role;              /* 0 until Hello; then ROLE_AGENT or ROLE_CLIENT */
    node_t *node;          /* an agent's node, once registered */
    /* An agent's certificate: who it is (never what it says) */
    char node_id[PKI_NAME_MAX + 1];
    char cert_serial[PKI_SERIAL_HEX + 1];  /* the one it holds now */
    int64_t cert_not_after_ms;             /* cut off then, unless renewed */
    int joined;            /* got its certificate (NodeJoin): nothing more */
    int wants_endpoints;   /* send it the Endpoints in the next flush */
    int refs;
    char addr[64];         /* peer address without the port */
    struct peer *prev, *next;
    /* An in-process client (the HTTP API, httpapi.c) has no conn: what is
     * sent to it is handed to local() (a whole frame) when it would have
     * been written to a connection. */
    void (*local)(struct peer *p, const uint8_t *frame, size_t len);
    /* An agent's: the secrets and configs its connection carried (secrets.c). */
    struct secrets_sent *secrets_sent;
    /* ... and what it has not sent on yet (SIZE_MAX: it is gone). */
    size_t (*local_pending)(const struct peer *p);
} peer_t;

/* A frame waiting for the commit that covers it. */
typedef struct outmsg {
    peer_t *peer;
    struct outmsg *next;
    int msg_case;  /* for logs */
    size_t len;
    uint8_t frame[];
} outmsg_t;

typedef struct logstream logstream_t;

/* A reread of the token files, done in the thread pool (tokens.c). */
typedef struct tokens_reread {
    uv_work_t work;
    int busy;   /* in the pool */
    int again;  /* the files changed again meanwhile: reread once more */
    int rc;
    char join[CTL_TOKEN_LEN + 1], admin[CTL_TOKEN_LEN + 1], err[256];
} tokens_reread_t;

/* The data dir's copies of a shared store's identity, written in the pool. */
typedef struct tokens_files {
    uv_work_t work;
    int busy;
    int again;  /* changed meanwhile: write once more */
    int rc;
    char dir[PATH_MAX];
    char cluster_id[MODEL_ID_LEN * 2 + 1], join[TOKEN_LEN + 1], admin[TOKEN_LEN + 1];
    char *ca_pem;  /* the CA certificate (the key stays in the store) */
    char err[PATH_MAX + 64];
} tokens_files_t;
/* The CA's files and the tokens written anew (after a CA rotation), in the
 * thread pool (tokens.c). */
typedef struct tokens_publish {
    uv_work_t work;
    int busy;
    int again;
    int rc;
    char *ca_pem, *key_pem;
    char join[TOKEN_LEN + 1], admin[TOKEN_LEN + 1], err[256];
} tokens_publish_t;

struct ctl {
    uv_loop_t *loop;
    ctl_config_t cfg;
    model_t model;
    store_t *store;
    uv_tcp_t listener;
    uv_timer_t tick;
    uv_prepare_t flush;      /* before the loop waits: act, then commit */
    uv_signal_t sigterm, sigint;
    uv_fs_event_t token_watch;
    tokens_reread_t reread;
    tokens_publish_t publish;
    peer_t *peers;
    unsigned n_peers;
    char join_token[CTL_TOKEN_LEN + 1];   /* the secrets; the tokens add the CA digest */
    char admin_token[CTL_TOKEN_LEN + 1];
    ca_t *ca;                /* the cluster CA (ca.h) */
    SSL_CTX *tls;            /* the listener's TLS context */
    SSL_CTX *http_tls;       /* the HTTP listeners' (--http-tls-cert), or NULL: plain HTTP */
    int64_t certs_checked_ms;
    /* the commit pipeline */
    int committing;           /* a batch is with the store */
    outmsg_t *out_head, **out_tail;  /* for the next commit */
    outmsg_t *inflight;              /* for the commit in flight */
    store_batch_t *events_batch;     /* events for the next commit */
    /* what the next orch_run must look at, besides marked services */
    int sched_needed;       /* unplaced tasks, or room for them, may exist */
    int endpoints_check;    /* endpoints may have changed: rebuild and compare */
    int endpoints_wanted;   /* some agent waits for the endpoints */
    int64_t heartbeats_checked_ms; /* when the node monitor last looked */
    int64_t lead_ms;        /* uv_now() when this controller took the lead */
    int64_t node_back_ms;   /* uv_now() when a node last registered since then */
    int64_t trimmed_ms;     /* when free heap was last given back (malloc_trim) */
    int64_t capacity_checked_ms;   /* when the autoscaler and rebalancer last looked */
    uint8_t *endpoints_packed;  /* the services part of the last Endpoints sent */
    size_t endpoints_len;
    /* logs relayed from agents to clients */
    logstream_t *logstreams;
    uint64_t next_stream;
    /* monitoring */
    events_t *events;
    uint64_t events_sealed;   /* the last event in the commit in flight */
    ctl_counters_t counters;
    monitor_t *monitor;
    struct httpapi *httpapi;
    struct httpd *dockerapi;  /* the Docker Engine API's listener, or NULL */
    int stopping;
    /* leadership (leader.c) */
    int leading;            /* this controller acts */
    uint64_t term;          /* +1 at every start and end of leading */
    uint64_t commit_term;   /* the term of the commit in flight */
    int identity_known;     /* cluster id and tokens are known (from the store) */
    char leader[128];       /* while following: the leader's address, "" unknown */
    int64_t pinged_ms;      /* when the agents were last pinged */
    tokens_files_t token_files;
    /* secrets (secrets.c) */
    int secret_key_state;                 /* enum secrets_key_state */
    uint8_t secret_key[SEAL_KEY_LEN];     /* the data key, when ready */
    char secret_key_line[SEAL_KEY_TEXT_MAX]; /* locked: the wrapped key */
};

/* ---- ctl.c */

/* Sets up the listener, timers and signals on loop. Returns 0, or a
 * negative code with the reason logged. */
int ctl_start(ctl_t *ctl, uv_loop_t *loop);

/* Makes the events ring and fills it with the stored events (after the
 * store is open). Returns 0 or -ENOMEM. */
int ctl_load_events(ctl_t *ctl);
/* On taking the lead of a shared store: events are numbered on from the
 * highest the store has seen. */
void ctl_follow_stored_events(ctl_t *ctl);

/* Drops a reference to a peer; the last one frees it. */
void peer_unref(peer_t *p);

/* Sends env to peer: at once when no change waits to be committed, else
 * after the commit that covers it. On failure (a slow peer whose queue is
 * full) the peer is closed. */
void ctl_send(ctl_t *ctl, peer_t *peer, const Envelope *env);

/* Frees outbox messages that must never leave. */
void ctl_drop_outbox(outmsg_t *m);

/* Replies Ok to request id (through the outbox, as ctl_send). */
void ctl_send_ok(ctl_t *ctl, peer_t *peer, uint64_t id);

/* Replies Error{code, message} to request id. */
void ctl_send_error(ctl_t *ctl, peer_t *peer, uint64_t id, ErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Events (proto/event.h for their attributes): a new event about a
 * service, a node or a task, with its names filled in; NULL when out of
 * memory, which ctl_emit accepts. */
Event *ctl_event_service(ctl_t *ctl, const char *action, const service_t *svc);
Event *ctl_event_node(ctl_t *ctl, const char *action, const node_t *node);
Event *ctl_event_task(ctl_t *ctl, const char *action, const task_t *t);
/* Takes e: sets its message (printf-style), logs it, and records it in the
 * ring and the next commit; readers see it once that commit is done. */
void ctl_emit(ctl_t *ctl, Event *e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* uv_now of the loop, in ms. */
int64_t ctl_now(const ctl_t *ctl);

/* ---- leader.c: leading, following, and what a follower answers */

/* The store's events (store_events_t) for a shared store. */
extern const store_events_t leader_store_events;
/* Starts acting: the model holds the store's state. */
void leader_lead(ctl_t *ctl);
/* Stops acting at once (idempotent): connections closed, the model, the
 * outbox and the batch being made dropped. */
void leader_step_down(ctl_t *ctl, const char *why);
/* A message from a peer while this controller does not lead. */
int leader_follower_message(ctl_t *ctl, peer_t *peer, Envelope *env);
/* Replies Redirect{leader} to request id. */
void leader_redirect(ctl_t *ctl, peer_t *peer, uint64_t id);
/* `skiff controller ls`, answered by any controller. */
int leader_controller_list(ctl_t *ctl, peer_t *peer, uint64_t id);
/* Every second while leading on a shared store: an Ok push to each agent,
 * whose silence tells it that its leader stalled. */
void leader_ping_agents(ctl_t *ctl);
/* The CA changed (a certificate issued or revoked, a rotation): its rows go
 * in the next commit, before anything sent after this. */
void ctl_ca_changed(ctl_t *ctl);

/* ---- tokens.c */

/* Creates the data dir (0700) on first start, fixes loose permissions with
 * a warning, and reads the secrets of the tokens (new ones when there are
 * none, or only tokens of the old format, from before TLS). Writes nothing
 * else: tokens_write_files() does, once the CA is known. Returns 0, or a
 * negative code with the reason in err. */
int tokens_prepare(ctl_t *ctl, char *err, size_t len);
/* Makes the cluster id if the store had none, and writes it to
 * <data-dir>/cluster-id. */
int tokens_cluster_id(ctl_t *ctl, char *err, size_t len);
/* Creates the data dir (0700) and checks its mode, making no token: a
 * shared store holds them. */
int tokens_prepare_dir(const char *dir, char *err, size_t len);
/* Reads the data dir's cluster id and tokens where there are, for a
 * shared store that has none yet; "" each where there is none. */
void tokens_read_existing(const char *dir, char cluster_id[MODEL_ID_LEN * 2 + 1],
                          char join[CTL_TOKEN_LEN + 1], char admin[CTL_TOKEN_LEN + 1]);
/* A shared store's identity arrived (or a token or the CA changed): writes
 * the cluster id, the tokens and ca.pem into the data dir, in the thread
 * pool, for the tools and agents on this machine. */
void tokens_write_files(ctl_t *ctl);
/* Writes value and a newline to dir/name atomically, mode 0600. */
int tokens_write_file(const char *dir, const char *name, const char *value, char *err,
                      size_t len);
/* A fresh token secret (64 hex characters). */
void tokens_new(char out[CTL_TOKEN_LEN + 1]);
/* The token which ("join" or "admin"): the CA's digest and the secret. */
void tokens_format(const ctl_t *ctl, const char *which, char out[TOKEN_LEN + 1]);
/* Builds the CA from the model's rows (making it on first start: with
 * SQLite committed at once, before the loop runs), makes the listener's
 * TLS context, and with SQLite writes ca.pem, ca-key.pem and the tokens
 * (0600). On a shared store, when this controller starts to lead. */
int tokens_ca(ctl_t *ctl, char *err, size_t len);
/* A follower's CA: the roots the shared store's identity carries (packed
 * CaRoot values), enough for the listener's TLS context. */
int tokens_ca_roots(ctl_t *ctl, const store_blob_t *roots, size_t n, char *err, size_t len);
/* Writes the CA's files and the tokens again (after a CA rotation) in the
 * thread pool. */
void tokens_publish(ctl_t *ctl);
/* Rereads the token files (after a rotation) in the thread pool; the new
 * tokens apply when the reads are done. */
void tokens_reload(ctl_t *ctl);
/* Writes a new join or admin token into data_dir, printing nothing. */
int tokens_rotate(const char *data_dir, const char *which, char *err, size_t len);
/* A token as SKIFF-1-<CA digest>-<secret>, for which "join" or "admin". */
void tokens_format(const ctl_t *ctl, const char *which, char out[TOKEN_LEN + 1]);
/* The digest of <dir>/ca.pem (the CA the tokens name). Returns 0, or a
 * negative code with err set (no ca.pem: start a controller first). */
int tokens_ca_digest(const char *dir, char digest[PKI_DIGEST_HEX + 1], char *err, size_t len);
/* 1 when presented is the admin token, whole (SKIFF-1-<CA digest>-<secret>,
 * the CA's digest or, during a rotation, the new one's): the HTTP API's
 * credential. */
int tokens_admin_ok(const ctl_t *ctl, const char *presented);
/* Constant-time comparison of a presented secret with the expected one. */
int tokens_match(const char *expected, const char *presented);

/* ---- certs.c: certificates of the nodes and clients, CA rotation */

/* NodeJoin from a peer without a certificate. */
int certs_join(ctl_t *ctl, peer_t *peer, Envelope *env);
/* CertRenew from a registered agent. */
int certs_renew(ctl_t *ctl, peer_t *peer, uint64_t id, const CertRenew *req);
/* The agent of node registered: during a rotation it is asked to renew. */
void certs_registered(ctl_t *ctl, peer_t *peer);
/* Every second: peers whose certificate expired are cut off, the CA's
 * records pruned and the controller's certificate renewed, and a rotation
 * finished once every ready node holds a certificate of the new CA. */
void certs_tick(ctl_t *ctl);
/* Client requests: CaRotate, CaGet, ClientCert. */
int certs_api(ctl_t *ctl, peer_t *peer, uint64_t id, const Envelope *env);

/* ---- agents.c: messages from agents */
/* 1 when s is a node name: 1 to 253 letters, digits, '.', '-', '_'. */
int agents_name_valid(const char *s);
int agents_handle(ctl_t *ctl, peer_t *peer, Envelope *env);
/* The agent's connection closed. */
void agents_gone(ctl_t *ctl, peer_t *peer);
/* Marks nodes down whose agents missed the heartbeat timeout. */
void agents_check_heartbeats(ctl_t *ctl);

/* ---- api.c: requests from clients */
int api_handle(ctl_t *ctl, peer_t *peer, Envelope *env);

/* ---- logs.c: `service logs`, relayed from agents */
int logs_request(ctl_t *ctl, peer_t *client, uint64_t id, const LogsRequest *req);
void logs_from_agent(ctl_t *ctl, peer_t *agent, Envelope *env);
void logs_peer_gone(ctl_t *ctl, peer_t *peer);

/* ---- monitor.c: /metrics, `skiff events` readers, `service stats` */
int monitor_start(ctl_t *ctl);
void monitor_stop(ctl_t *ctl);
int monitor_events_request(ctl_t *ctl, peer_t *peer, uint64_t id, const EventsRequest *req);
int monitor_service_stats(ctl_t *ctl, peer_t *peer, uint64_t id, const ServiceStats *req);
void monitor_peer_gone(ctl_t *ctl, peer_t *peer);
/* The whole /metrics page, into p. */
void monitor_metrics_page(ctl_t *ctl, prom_t *p);

/* ---- httpapi.c: the HTTP API and the dashboard (--http-listen) */
int httpapi_start(ctl_t *ctl);
void httpapi_stop(ctl_t *ctl);
/* Its event streams, for /metrics. */
void httpapi_metrics(ctl_t *ctl, prom_t *p);

/* ---- dockerapi.c: the Docker Engine API's Swarm endpoints (--docker-api-listen) */
int dockerapi_start(ctl_t *ctl);
void dockerapi_stop(ctl_t *ctl);
/* 1 when listen ("ADDR:PORT") is a loopback address. */
int dockerapi_loopback(const char *listen);

/* ---- orch.c: the orchestrator */

/* Acts on what changed: reconciles marked services, places pending tasks,
 * and queues Assignments and Endpoints for the agents that need them. */
void orch_run(ctl_t *ctl);
/* Moves one task of a stateless service onto a node that joined or came
 * back, when the spread is off by 2 or more (rebalance.h), one move at a
 * time in the cluster. Called every second. */
void orch_rebalance(ctl_t *ctl);

/* ---- capacity.c: the autoscaler, wired to the model */

/* Evaluates every autoscaled service (each second) and changes its replica
 * count when autoscale.h decides so, with an event and the decision kept in
 * the service. */
void capacity_autoscale(ctl_t *ctl);
/* Sets a service's replica count (a scale: version + 1, no rolling update)
 * and marks it. Returns 0 or -ENOMEM. */
int capacity_set_replicas(ctl_t *ctl, service_t *svc, uint32_t replicas);

/* Marks a service for the next orch_run. */
void orch_mark(service_t *svc);
/* Marks every service with a task on the node. */
void orch_mark_node(node_t *node);
/* A service joined the stack (stack "" too: the services outside one): the
 * nodes with its peers' tasks get their sets again, whose host names (the
 * stack's services) changed. */
void orch_stack_changed(ctl_t *ctl, const char *stack);
/* Sets a task's observed state as the controller decides it (never-placed
 * tasks, orphans), with a message. */
void orch_set_state(ctl_t *ctl, task_t *t, TaskState s, const char *message);
/* Starts a rollback to the previous spec (why: the update status message).
 * Returns 0, SKIFF_ENOTFOUND without a previous spec, or -ENOMEM. */
int orch_start_rollback(ctl_t *ctl, service_t *svc, const char *why);
/* Builds the reply view of a service (counts, lb stats); free with
 * orch_service_view_free. */
Service *orch_service_view(ctl_t *ctl, service_t *svc);
void orch_service_view_free(Service *view);

#endif
