/* tls: TLS 1.3 for every skiff connection and listener, on OpenSSL 3.
 *
 * Two parts. Contexts: an SSL_CTX with skiff's rules (TLS 1.3 only, no
 * compression, renegotiation, session tickets or resumption) and a policy
 * for the peer's certificate: which CAs it must chain to (a set of roots,
 * or one root named by its digest, as the tokens do), which role its
 * subject must carry (pki.h), and a check of the caller's (revocation).
 * Sessions: one TLS session per connection on memory BIOs, with no I/O:
 * proto/conn.c feeds it what the socket read and writes out what it made,
 * so that TLS runs on the libuv loop without blocking and every limit of
 * conn.h still applies to the frames inside.
 *
 * Contexts for other listeners (HTTP with libh2o, which takes an SSL_CTX):
 *   tls_server_ctx_files(cert, key)   HTTPS with the files the user gives
 *                                     (--http-tls-cert/--http-tls-key);
 *                                     no client certificate asked.
 *   ca_client_auth_ctx() (controller/ca.h)
 *                                     HTTPS that requires a client
 *                                     certificate issued by the cluster CA
 *                                     (skiff cluster client-cert), for the
 *                                     Docker API listener.
 * A context is reference-counted (SSL_CTX_up_ref / SSL_CTX_free).
 */
#ifndef SKIFF_TLS_H
#define SKIFF_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "pki.h"

#define TLS_REASON_MAX 200

/* The peer's certificate: not asked for, may be absent, or required. */
enum tls_peer_cert { TLS_PEER_NONE, TLS_PEER_OPTIONAL, TLS_PEER_REQUIRED };

/* After the chain verified: 0 to accept leaf, or nonzero with why set
 * (one line) to refuse it. Called on the thread of the handshake. */
typedef int (*tls_check_fn)(void *arg, X509 *leaf, char *why, size_t len);

typedef struct tls_policy {
    int server;                  /* the context accepts (1) or connects (0) */
    enum tls_peer_cert peer_cert;
    /* Trust: roots (the context keeps a reference; see tls_ctx_set_roots),
     * or, without roots, pin: the digest (pki_digest) of the root the
     * peer's chain must present and end at. One of them is needed
     * whenever a peer certificate may come. */
    STACK_OF(X509) *roots;
    char pin[PKI_DIGEST_HEX + 1];
    const char *peer_role;       /* its subject's OU must be this; NULL: any */
    const char *peer_cluster;    /* its subject's O must be this; NULL: any */
    tls_check_fn check;          /* NULL: none */
    void *check_arg;
} tls_policy_t;

/* Our own certificate: the key, the certificate, and the chain sent after
 * it (intermediates and roots; may be NULL). References are taken. */
typedef struct tls_creds {
    EVP_PKEY *key;
    X509 *cert;
    STACK_OF(X509) *chain;
} tls_creds_t;

/* A context with skiff's rules and policy (copied). creds: NULL for a
 * client without a certificate; a server needs them. NULL with err set. */
SSL_CTX *tls_ctx_new(const tls_policy_t *policy, const tls_creds_t *creds, char *err,
                     size_t errlen);

/* The certificate a context presents to its next handshakes (the ones
 * under way keep theirs). Returns 0, or SKIFF_EINVAL with err set (key
 * and certificate do not match). Call on the thread that makes the
 * sessions. */
int tls_ctx_set_creds(SSL_CTX *ctx, const tls_creds_t *creds, char *err, size_t errlen);

/* The roots a context trusts from its next verification on. */
int tls_ctx_set_roots(SSL_CTX *ctx, STACK_OF(X509) *roots);

/* HTTPS with a certificate chain and key from PEM files (read now): TLS
 * 1.3, no client certificate. NULL with err naming the file and why. */
SSL_CTX *tls_server_ctx_files(const char *cert_file, const char *key_file, char *err,
                              size_t errlen);

/* ---------------------------------------------------------- sessions */

typedef struct tls tls_t;

/* A session on ctx (accepting or connecting, as its policy says). NULL when
 * out of memory. */
tls_t *tls_new(SSL_CTX *ctx);
void tls_free(tls_t *t);

/* Takes bytes read from the peer. Returns 0, -ENOMEM, or SKIFF_ETLS when a
 * server's first byte is not a TLS handshake record (a plaintext peer). */
int tls_feed(tls_t *t, const void *data, size_t len);

/* Moves the handshake on with what was fed. Returns 1 once it is done (the
 * peer verified), 0 while it needs more from the peer, or SKIFF_ETLS with
 * tls_reason() saying why it failed. */
int tls_handshake(tls_t *t);

/* Reads plaintext into buf, after the handshake. Returns the bytes read,
 * 0 when all that was fed is read, SKIFF_ECLOSED when the peer ended the
 * session, or SKIFF_ETLS (tls_reason()). */
long tls_read(tls_t *t, void *buf, size_t len);

/* Encrypts len bytes of plaintext, after the handshake. Returns 0, or
 * SKIFF_ETLS. */
int tls_write(tls_t *t, const void *data, size_t len);

/* Ends the session (close_notify) after what was written. */
void tls_shutdown(tls_t *t);

/* Bytes the session made for the peer (handshake, records, alerts), and
 * takes up to len of them into buf (returns how many). */
size_t tls_out_pending(const tls_t *t);
size_t tls_out_take(tls_t *t, void *buf, size_t len);

/* Bytes allocated in the session's two memory BIOs: 0 once what was fed
 * is read and what was made is taken (an idle session keeps no buffer;
 * for tests and measurements). */
size_t tls_buffered(const tls_t *t);

/* 1 while part of a record from the peer waits for the rest. */
int tls_in_partial(const tls_t *t);

int tls_done(const tls_t *t);

/* Why the session failed, one line ("the peer's certificate is revoked",
 * "not TLS: a plaintext peer"), or "" */
const char *tls_reason(const tls_t *t);

/* The peer's verified certificate (the session keeps it), or NULL. */
X509 *tls_peer_cert(const tls_t *t);

#endif
