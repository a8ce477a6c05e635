/* agent: skiff-agent's life, wired together.
 *
 * It reaches the engine (ping, /info, the bridge gateway; retried until the
 * engine answers), connects to the controller over TLS, and, the first time
 * (no node certificate in its state dir yet), joins: it checks that the
 * controller's chain ends at the CA whose digest the join token carries,
 * sends NodeJoin (the token's secret, a certificate request for a new key,
 * its name), keeps the node certificate it gets (state.h) and connects
 * again with it. With its certificate it says Hello as ROLE_AGENT and,
 * once it knows the cluster id and has listed the engine's containers of
 * this cluster and node, registers (NodeRegister with resources, labels,
 * gateway, versions and the adopted tasks' statuses). Then: SecretData to
 * the secrets store (secrets.h; each comes before the Assignments that use
 * it), Assignments to the runner, Endpoints to the load balancer,
 * LogsOpen/LogsClose to the log streams; StatusReport{full} every heartbeat and StatusReport{changes} as
 * soon as a task's status changes. When the controller goes away it
 * reconnects with backoff (100 ms doubling to 2 s) and changes nothing
 * meanwhile. With several controllers (one leading, on etcd) it tries them
 * in turn, the backoff once per round, and goes straight to the leader a
 * follower names (Redirect); a leader that pings and then falls silent for
 * 4 s (stopped, cut off) is left for the others. Closing the agent never
 * stops a task.
 *
 * The certificate renews itself over the live connection (CertRenew, for a
 * new key) at a random point between half and 70% of its remaining life;
 * the connection, and every task, stay. During a CA rotation the
 * controller pushes CaUpdate: the roots to trust, and a request to renew.
 */
#ifndef SKIFF_AGENT_H
#define SKIFF_AGENT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "state.h"

typedef struct agent agent_t;

typedef struct agent_config {
    const char *controller;     /* "HOST:PORT[,HOST:PORT...]": the controllers, tried in
                                 * turn; a follower's Redirect names the leader */
    const char *name;           /* node name */
    const char *advertise;      /* an IP address */
    const char *token;          /* the join token (SKIFF-1-...), to join; NULL or "": none */
    const char *token_file;     /* where it came from, read again before every join
                                 * (a rotated token); NULL: from the environment */
    const char *state_dir;      /* key, node certificate, CA roots (state.h) */
    const agent_state_t *state; /* what state_load read from it; NULL: join first */
    const char *docker_socket;  /* the engine's unix socket path */
    const char *const *labels;  /* "KEY=VALUE" */
    size_t n_labels;
    uint64_t heartbeat_ms;
    const char *metrics_listen; /* "ADDR:PORT" of /metrics; NULL or "": none */
    unsigned lb_threads;        /* the balancer's threads; 0 or 1: on the loop */
    struct ssl_ctx_st *http_tls; /* HTTPS for /metrics (a reference is taken); NULL: HTTP */
} agent_config_t;

/* 1 when t is a join token (token.h: SKIFF-1-<digest>-<secret>). */
int agent_token_valid(const char *t);

/* Reads a join token file into out (len > TOKEN_LEN), white space
 * dropped. Returns 0, or a negative code with err saying why ("PATH: No
 * such file or directory", "PATH: not a skiff token (...)", or for a token
 * of the old format where the new one is). */
int agent_read_token(const char *path, char *out, size_t len, char *err, size_t errlen);

/* A new agent on loop; the config is copied. NULL with err set when the
 * state does not hold a usable key and certificate, or out of memory. */
agent_t *agent_create(uv_loop_t *loop, const agent_config_t *cfg, char *err, size_t errlen);

/* Starts reaching the engine and the controller. Returns 0 or a negative
 * code. */
int agent_start(agent_t *a);

/* Closes everything (containers keep running) and frees the agent;
 * done(arg) is called from the loop when it is gone. */
void agent_close(agent_t *a, void (*done)(void *arg), void *arg);

#endif
