/* certs: the certificates of nodes and clients, and the CA rotation, as the
 * controller's peers ask for them. The CA itself (signing, records,
 * revocation) is ca.c's; this file is the protocol around it:
 *
 * - NodeJoin, from a peer without a certificate: the join token's secret,
 *   a certificate request and the node's name. A name that an existing
 *   node holds with a certificate of its own is refused (that node's agent
 *   joins with its certificate; `skiff node rm` frees the name). The node
 *   is made, its certificate issued, and both committed before the reply.
 * - CertRenew, from a registered agent, for a new key: the same node.
 * - CaRotate: a new CA, and every agent asked to trust both and to renew;
 *   certs_tick() ends the rotation once every ready node has renewed.
 */
#include "ctl.h"
#include "errors.h"
#include "event.h"
#include "log.h"
#include "pbutil.h"
#include "pki.h"
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#include <openssl/rand.h>

/* Refuses a join: the peer gets the error, the connection closes. */
/* An event of the cluster's CA ("cluster" events: ca_rotate, ca_rotated,
 * client_cert). */
static Event *certs_event(ctl_t *ctl, const char *action)
{
    return event_new("cluster", action, ctl->model.cluster_id, "ca", model_wall_ms());
}

static int certs_refuse(peer_t *p, uint64_t id, ErrorCode code, const char *why, const char *log)
{
    log_warn("%s: join refused: %s", conn_peer(p->conn), log ? log : why);
    conn_send_error(p->conn, id, code, "%s", why);
    conn_close(p->conn, 0);
    return 0;
}

/* The node of a join: a new one, or one of the name that holds no
 * certificate (joined before certificates existed). NULL and *why set when
 * the name is another node's. */
static node_t *certs_join_node(ctl_t *ctl, const char *name, const char **why)
{
    node_t *node = model_node_by_name(&ctl->model, name);
    char nid[MODEL_ID_LEN + 1];
    Node *pb;

    if (node) {
        if (ca_has_live(ctl->ca, node->pb->id)) {
            *why = "exists";
            return NULL;
        }
        log_warn("node %s holds no certificate (it joined before TLS): it is bound to the "
                 "certificate of this join", name);
        return node;
    }
    if (!(pb = PB_NEW(Node)))
        return NULL;
    model_new_id(nid);
    if (pb_set_str(&pb->id, nid) || pb_set_str(&pb->name, name) ||
        !(node = model_node_add(&ctl->model, pb))) {
        pb_free(pb);
        return NULL;
    }
    pb->created_ms = model_wall_ms();
    pb->state = NODE_DOWN; /* ready when its agent registers */
    model_touch_node(&ctl->model, node);
    return node;
}

int certs_join(ctl_t *ctl, peer_t *p, Envelope *env)
{
    const NodeJoin *j = env->node_join;
    Envelope out = PB_ENVELOPE_INIT;
    NodeJoinReply reply = PB_NODE_JOIN_REPLY_INIT;
    char err[256], why[1024], *cert = NULL, *roots = NULL;
    const char *taken = NULL;
    X509_REQ *csr;
    node_t *node;
    int rc;

    if (!tokens_match(ctl->join_token, j->token))
        return certs_refuse(p, env->id, ERR_AUTH, *j->token ? "wrong token" : "no token", NULL);
    if (!agents_name_valid(j->name))
        return certs_refuse(p, env->id, ERR_INVALID,
                            "name: must be 1 to 253 letters, digits, '.', '-' or '_'", NULL);
    if (!(csr = pki_csr_parse(j->csr.data, j->csr.len, err, sizeof(err)))) {
        snprintf(why, sizeof(why), "csr: %s", err);
        return certs_refuse(p, env->id, ERR_INVALID, why, NULL);
    }
    if (!(node = certs_join_node(ctl, j->name, &taken))) {
        X509_REQ_free(csr);
        if (!taken)
            return -ENOMEM;
        snprintf(why, sizeof(why), "node %.253s exists: its agent joins with its own "
                 "certificate; to join again under this name, remove it first "
                 "(skiff node rm %.253s)", j->name, j->name);
        snprintf(err, sizeof(err), "node %.200s exists, with another certificate", j->name);
        return certs_refuse(p, env->id, ERR_EXISTS, why, err);
    }
    rc = ca_issue(ctl->ca, csr, node->pb->id, PKI_ROLE_NODE, NULL, &cert, &roots, err,
                  sizeof(err));
    X509_REQ_free(csr);
    if (rc) {
        log_error("%s: join of %s: %s", conn_peer(p->conn), j->name, err);
        ctl_send_error(ctl, p, env->id, ERR_INTERNAL, "%s", err);
        return 0;
    }
    ctl_ca_changed(ctl);
    p->joined = 1;
    reply.node_id = node->pb->id;
    reply.cluster_id = ctl->model.cluster_id;
    reply.certificate.data = (uint8_t *)cert;
    reply.certificate.len = strlen(cert);
    reply.ca.data = (uint8_t *)roots;
    reply.ca.len = strlen(roots);
    out.id = env->id;
    out.msg_case = MSG_NODE_JOIN_REPLY;
    out.node_join_reply = &reply;
    ctl_send(ctl, p, &out); /* after the commit of the node and its certificate */
    ctl_emit(ctl, ctl_event_node(ctl, "certificate", node), "certificate issued (join from %s)",
             p->addr);
    free(cert);
    free(roots);
    return 0;
}

int certs_renew(ctl_t *ctl, peer_t *p, uint64_t id, const CertRenew *req)
{
    Envelope out = PB_ENVELOPE_INIT;
    CertIssued reply = PB_CERT_ISSUED_INIT;
    char err[256], *cert = NULL, *roots = NULL;
    STACK_OF(X509) *chain;
    X509_REQ *csr;
    int rc;

    if (!p->node) {
        ctl_send_error(ctl, p, id, ERR_PROTOCOL, "renew after the registration");
        return 0;
    }
    if (!ca_may_renew(ctl->ca, p->node_id, model_wall_ms())) {
        ctl_send_error(ctl, p, id, ERR_LIMIT, "the certificate was renewed less than a quarter "
                       "of its lifetime ago");
        return 0;
    }
    if (!(csr = pki_csr_parse(req->csr.data, req->csr.len, err, sizeof(err)))) {
        log_warn("node %s: renewal refused: csr: %s", p->node->pb->name, err);
        ctl_send_error(ctl, p, id, ERR_INVALID, "csr: %s", err);
        return 0;
    }
    rc = ca_issue(ctl->ca, csr, p->node_id, PKI_ROLE_NODE, p->cert_serial, &cert, &roots, err,
                  sizeof(err));
    X509_REQ_free(csr);
    if (rc) {
        ctl_send_error(ctl, p, id, ERR_INTERNAL, "%s", err);
        return 0;
    }
    /* The connection now counts as held by the new certificate (the agent
     * proved it holds its key: the request is signed with it). */
    if ((chain = pki_chain_parse(cert, strlen(cert), err, sizeof(err)))) {
        X509 *leaf = sk_X509_value(chain, 0);
        pki_serial(leaf, p->cert_serial);
        p->cert_not_after_ms = pki_not_after_ms(leaf);
        sk_X509_pop_free(chain, X509_free);
    }
    ctl_ca_changed(ctl);
    reply.certificate.data = (uint8_t *)cert;
    reply.certificate.len = strlen(cert);
    reply.ca.data = (uint8_t *)roots;
    reply.ca.len = strlen(roots);
    out.id = id;
    out.msg_case = MSG_CERT_ISSUED;
    out.cert_issued = &reply;
    ctl_send(ctl, p, &out);
    log_info("node %s: certificate renewed, serial %.16s...", p->node->pb->name, p->cert_serial);
    free(cert);
    free(roots);
    return 0;
}

/* Pushes the roots to trust to an agent; renew: and asks it to renew. */
static void certs_push(ctl_t *ctl, peer_t *p, int renew)
{
    Envelope out = PB_ENVELOPE_INIT;
    CaUpdate up = PB_CA_UPDATE_INIT;
    char *roots = ca_roots_pem(ctl->ca);

    if (!roots) {
        log_error("node %s: cannot send it the CA: out of memory", p->node->pb->name);
        return;
    }
    up.ca.data = (uint8_t *)roots;
    up.ca.len = strlen(roots);
    up.renew = renew;
    out.msg_case = MSG_CA_UPDATE;
    out.ca_update = &up;
    ctl_send(ctl, p, &out);
    free(roots);
}

void certs_registered(ctl_t *ctl, peer_t *p)
{
    if (ca_rotating(ctl->ca) && !ca_has_current(ctl->ca, p->node_id))
        certs_push(ctl, p, 1);
}

/* The ready nodes without a certificate of the signing root. */
static unsigned certs_waiting(ctl_t *ctl, CaReply *into)
{
    unsigned n = 0;

    for (node_t *node = ctl->model.nodes; node; node = node->hh.next) {
        if (node->pb->state != NODE_READY || ca_has_current(ctl->ca, node->pb->id))
            continue;
        if (into && into->n_waiting < 64)
            pb_push_str(&into->n_waiting, &into->waiting, node->pb->name);
        n++;
    }
    return n;
}

static void certs_rotation_done(ctl_t *ctl)
{
    char err[256];

    if (ca_rotate_finish(ctl->ca, err, sizeof(err))) {
        log_error("CA rotation: %s", err);
        return;
    }
    ctl_ca_changed(ctl);
    for (peer_t *p = ctl->peers; p; p = p->next)
        if (p->node && p->conn)
            certs_push(ctl, p, 0);
    tokens_publish(ctl);
    ctl_emit(ctl, certs_event(ctl, "ca_rotated"), "rotated: the CA is sha256 %s",
             ca_digest(ctl->ca));
}

void certs_tick(ctl_t *ctl)
{
    int64_t now = model_wall_ms();

    for (peer_t *p = ctl->peers; p; p = p->next) {
        if (!p->conn || conn_is_closing(p->conn) || !p->cert_not_after_ms ||
            now < p->cert_not_after_ms)
            continue;
        log_warn("%s: the certificate of node %s expired; closing", conn_peer(p->conn),
                 p->node ? p->node->pb->name : p->node_id);
        conn_close(p->conn, 0);
    }
    ca_tick(ctl->ca, now);
    if (ca_dirty(ctl->ca))
        ctl_ca_changed(ctl);
    if (ca_rotating(ctl->ca) && certs_waiting(ctl, NULL) == 0)
        certs_rotation_done(ctl);
}

/* ------------------------------------------------------------ requests */

static void certs_reply_ca(ctl_t *ctl, peer_t *p, uint64_t id)
{
    Envelope out = PB_ENVELOPE_INIT;
    CaReply reply = PB_CA_REPLY_INIT;
    char join[TOKEN_LEN + 1], admin[TOKEN_LEN + 1];

    reply.digest = (char *)ca_digest(ctl->ca);
    reply.next_digest = (char *)ca_next_digest(ctl->ca);
    if (ca_rotating(ctl->ca)) {
        unsigned ready = 0;
        for (node_t *node = ctl->model.nodes; node; node = node->hh.next)
            ready += node->pb->state == NODE_READY;
        reply.nodes_done = ready - certs_waiting(ctl, &reply);
        reply.nodes = ready;
    }
    tokens_format(ctl, "join", join);
    tokens_format(ctl, "admin", admin);
    reply.join_token = join;
    reply.admin_token = admin;
    reply.cert_expiry_ms = ca_cert_expiry_ms(ctl->ca);
    out.id = id;
    out.msg_case = MSG_CA_REPLY;
    out.ca_reply = &reply;
    ctl_send(ctl, p, &out);
    for (size_t i = 0; i < reply.n_waiting; i++)
        free(reply.waiting[i]);
    free(reply.waiting);
    memset(join, 0, sizeof(join));
    memset(admin, 0, sizeof(admin));
}

static int certs_rotate(ctl_t *ctl, peer_t *p, uint64_t id)
{
    char err[256];
    int rc = ca_rotate_start(ctl->ca, err, sizeof(err));

    if (rc) {
        ctl_send_error(ctl, p, id, rc == SKIFF_ECONFLICT ? ERR_CONFLICT : ERR_INTERNAL, "%s",
                       err);
        return 0;
    }
    ctl_ca_changed(ctl);
    ctl_emit(ctl, certs_event(ctl, "ca_rotate"), "rotation to sha256 %s started",
             ca_next_digest(ctl->ca));
    for (peer_t *q = ctl->peers; q; q = q->next)
        if (q->node && q->conn)
            certs_push(ctl, q, 1);
    certs_reply_ca(ctl, p, id);
    return 0;
}

static int certs_client(ctl_t *ctl, peer_t *p, uint64_t id, const ClientCert *req)
{
    Envelope out = PB_ENVELOPE_INIT;
    CertIssued reply = PB_CERT_ISSUED_INIT;
    char err[256], who[32], *cert = NULL, *roots = NULL;
    unsigned char r[4];
    X509_REQ *csr;
    int rc;

    if (!(csr = pki_csr_parse(req->csr.data, req->csr.len, err, sizeof(err)))) {
        ctl_send_error(ctl, p, id, ERR_INVALID, "csr: %s", err);
        return 0;
    }
    if (RAND_bytes(r, sizeof(r)) != 1)
        memset(r, 0, sizeof(r));
    snprintf(who, sizeof(who), "client-%02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
    rc = ca_issue(ctl->ca, csr, who, PKI_ROLE_CLIENT, NULL, &cert, &roots, err, sizeof(err));
    X509_REQ_free(csr);
    if (rc) {
        ctl_send_error(ctl, p, id, rc == SKIFF_ELIMIT ? ERR_LIMIT : ERR_INTERNAL, "%s", err);
        return 0;
    }
    ctl_ca_changed(ctl);
    ctl_emit(ctl, certs_event(ctl, "client_cert"), "client certificate %s issued to %s", who,
             p->addr);
    reply.certificate.data = (uint8_t *)cert;
    reply.certificate.len = strlen(cert);
    reply.ca.data = (uint8_t *)roots;
    reply.ca.len = strlen(roots);
    out.id = id;
    out.msg_case = MSG_CERT_ISSUED;
    out.cert_issued = &reply;
    ctl_send(ctl, p, &out);
    free(cert);
    free(roots);
    return 0;
}

int certs_api(ctl_t *ctl, peer_t *p, uint64_t id, const Envelope *env)
{
    switch (env->msg_case) {
    case MSG_CA_GET:
        certs_reply_ca(ctl, p, id);
        return 0;
    case MSG_CA_ROTATE:
        return certs_rotate(ctl, p, id);
    case MSG_CLIENT_CERT:
        return certs_client(ctl, p, id, env->client_cert);
    default:
        ctl_send_error(ctl, p, id, ERR_PROTOCOL, "unexpected %s", wire_msg_name(env->msg_case));
        return 0;
    }
}
