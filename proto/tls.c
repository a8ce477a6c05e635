/* tls: see tls.h.
 *
 * A context carries its policy in its ex_data; OpenSSL's verification of
 * the peer's chain is replaced by tls_verify() (SSL_CTX_set_cert_verify_
 * callback), which builds the trust (the roots, or the pinned root found in
 * the chain the peer presented), verifies the chain for the right purpose,
 * then checks the subject's role and cluster and calls the policy's check.
 * A failure sets the X509 error that picks the alert the peer gets
 * (certificate_expired, certificate_revoked, unknown_ca, ...) and keeps a
 * one-line reason in the session for the log.
 *
 * Memory: an idle session holds no I/O buffer. OpenSSL's record buffers go
 * with SSL_MODE_RELEASE_BUFFERS; the memory BIOs keep the largest buffer
 * they ever held (BIO_s_mem never shrinks), so each is given an empty one
 * once drained (tls_bio_release). With thousands of node connections that
 * was 5-6 KB a connection of the 22 KB OpenSSL holds for one.
 */
#include "tls.h"
#include "errors.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#define TLS_RECORD_HANDSHAKE 0x16

typedef struct tls_pol {
    int server;
    enum tls_peer_cert peer_cert;
    X509_STORE *store;           /* the roots, or NULL */
    char pin[PKI_DIGEST_HEX + 1];
    char role[PKI_NAME_MAX + 1];
    char cluster[PKI_NAME_MAX + 1];
    tls_check_fn check;
    void *check_arg;
} tls_pol_t;

struct tls {
    SSL *ssl;
    BIO *rbio, *wbio;  /* owned by ssl */
    int server;
    int done;
    int fed;           /* a byte came from the peer */
    char reason[TLS_REASON_MAX];
};

static int tls_ctx_idx = -1, tls_ssl_idx = -1;
static CRYPTO_ONCE tls_once = CRYPTO_ONCE_STATIC_INIT;

static void tls_pol_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                         void *argp)
{
    tls_pol_t *p = ptr;

    if (!p)
        return;
    X509_STORE_free(p->store);
    free(p);
}

static void tls_init_once(void)
{
    tls_ctx_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, tls_pol_free);
    tls_ssl_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static int tls_init(void)
{
    return CRYPTO_THREAD_run_once(&tls_once, tls_init_once) && tls_ctx_idx >= 0 &&
           tls_ssl_idx >= 0;
}

static tls_pol_t *tls_pol(SSL_CTX *ctx)
{
    return SSL_CTX_get_ex_data(ctx, tls_ctx_idx);
}

static void tls_set_reason(tls_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void tls_set_reason(tls_t *t, const char *fmt, ...)
{
    va_list ap;

    if (!t || t->reason[0])
        return; /* the first reason is the one */
    va_start(ap, fmt);
    vsnprintf(t->reason, sizeof(t->reason), fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ verifying */

static X509_STORE *tls_store_of(STACK_OF(X509) *roots)
{
    X509_STORE *s = X509_STORE_new();

    if (!s)
        return NULL;
    for (int i = 0; i < sk_X509_num(roots); i++) {
        if (X509_STORE_add_cert(s, sk_X509_value(roots, i)) != 1) {
            X509_STORE_free(s);
            ERR_clear_error();
            return NULL;
        }
    }
    return s;
}

/* The root with the pinned digest among what the peer presented. */
static X509 *tls_find_pin(STACK_OF(X509) *chain, const char *pin)
{
    char d[PKI_DIGEST_HEX + 1];

    for (int i = 0; i < sk_X509_num(chain); i++) {
        X509 *c = sk_X509_value(chain, i);
        if (pki_digest(c, d) == 0 && strcmp(d, pin) == 0 && pki_is_root(c))
            return c;
    }
    return NULL;
}

static const char *tls_peer_word(const tls_pol_t *p)
{
    return p->role[0] ? p->role : "peer";
}

static int tls_verify(X509_STORE_CTX *xctx, void *arg)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(xctx, SSL_get_ex_data_X509_STORE_CTX_idx());
    tls_t *t = ssl ? SSL_get_ex_data(ssl, tls_ssl_idx) : NULL;
    tls_pol_t *p = ssl ? tls_pol(SSL_get_SSL_CTX(ssl)) : NULL;
    X509 *leaf = X509_STORE_CTX_get0_cert(xctx);
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_untrusted(xctx);
    X509_STORE *store = NULL;
    X509_STORE_CTX *v = NULL;
    pki_name_t name;
    char why[160];
    int ok = 0, xerr;

    if (!p || !leaf) {
        X509_STORE_CTX_set_error(xctx, X509_V_ERR_UNSPECIFIED);
        return 0;
    }
    if (p->store) {
        store = p->store;
        X509_STORE_up_ref(store);
    } else if (p->pin[0]) {
        X509 *root = tls_find_pin(chain, p->pin);
        if (!root) {
            tls_set_reason(t, "the %s's chain does not end at the CA of the token (sha256 %.12s...)",
                           tls_peer_word(p), p->pin);
            X509_STORE_CTX_set_error(xctx, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
            return 0;
        }
        if ((store = X509_STORE_new()) && X509_STORE_add_cert(store, root) != 1) {
            X509_STORE_free(store);
            store = NULL;
        }
    }
    if (!store) {
        tls_set_reason(t, "no CA to verify the %s's certificate with", tls_peer_word(p));
        X509_STORE_CTX_set_error(xctx, X509_V_ERR_UNSPECIFIED);
        goto out_free;
    }
    if (!(v = X509_STORE_CTX_new()) || X509_STORE_CTX_init(v, store, leaf, chain) != 1) {
        tls_set_reason(t, "out of memory");
        X509_STORE_CTX_set_error(xctx, X509_V_ERR_OUT_OF_MEM);
        goto out_free;
    }
    X509_STORE_CTX_set_purpose(v, p->server ? X509_PURPOSE_SSL_CLIENT : X509_PURPOSE_SSL_SERVER);
    if (X509_verify_cert(v) != 1) {
        xerr = X509_STORE_CTX_get_error(v);
        if (xerr == X509_V_ERR_CERT_HAS_EXPIRED)
            tls_set_reason(t, "the %s's certificate has expired", tls_peer_word(p));
        else if (xerr == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                 xerr == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
                 xerr == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
                 xerr == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT)
            tls_set_reason(t, "the %s's certificate is not from this cluster's CA (%s)",
                           tls_peer_word(p), X509_verify_cert_error_string(xerr));
        else
            tls_set_reason(t, "the %s's certificate does not verify: %s", tls_peer_word(p),
                           X509_verify_cert_error_string(xerr));
        X509_STORE_CTX_set_error(xctx, xerr);
        goto out_free;
    }
    if (pki_name(leaf, &name) || (p->role[0] && strcmp(name.role, p->role) != 0) ||
        (p->cluster[0] && strcmp(name.cluster, p->cluster) != 0)) {
        tls_set_reason(t, "the certificate is not a %s's%s%s", tls_peer_word(p),
                       p->cluster[0] ? " of cluster " : "", p->cluster);
        X509_STORE_CTX_set_error(xctx, X509_V_ERR_APPLICATION_VERIFICATION);
        goto out_free;
    }
    why[0] = '\0';
    if (p->check && p->check(p->check_arg, leaf, why, sizeof(why))) {
        tls_set_reason(t, "%s", why[0] ? why : "the certificate is refused");
        X509_STORE_CTX_set_error(xctx, strstr(why, "revoked") ? X509_V_ERR_CERT_REVOKED
                                                              : X509_V_ERR_APPLICATION_VERIFICATION);
        goto out_free;
    }
    ok = 1;
out_free:
    X509_STORE_CTX_free(v);
    X509_STORE_free(store);
    ERR_clear_error();
    return ok;
}

/* ------------------------------------------------------------ contexts */

static SSL_CTX *tls_ctx_base(int server)
{
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());

    if (!ctx)
        return NULL;
    /* TLS 1.3 and nothing older: no downgrade to negotiate. */
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                             SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (server)
        SSL_CTX_set_num_tickets(ctx, 0);
    return ctx;
}

int tls_ctx_set_creds(SSL_CTX *ctx, const tls_creds_t *creds, char *err, size_t errlen)
{
    char why[160];

    if (!creds || !creds->key || !creds->cert) {
        snprintf(err, errlen, "no key and certificate");
        return SKIFF_EINVAL;
    }
    if (SSL_CTX_use_certificate(ctx, creds->cert) != 1 ||
        SSL_CTX_clear_chain_certs(ctx) != 1 ||
        (creds->chain && SSL_CTX_set1_chain(ctx, creds->chain) != 1) ||
        SSL_CTX_use_PrivateKey(ctx, creds->key) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "the key and certificate do not go together (%s)",
                 pki_openssl_error("?", why, sizeof(why)));
        return SKIFF_EINVAL;
    }
    return 0;
}

int tls_ctx_set_roots(SSL_CTX *ctx, STACK_OF(X509) *roots)
{
    tls_pol_t *p = tls_pol(ctx);
    X509_STORE *s;

    if (!p)
        return SKIFF_EINVAL;
    if (!(s = tls_store_of(roots)))
        return -ENOMEM;
    X509_STORE_free(p->store);
    p->store = s;
    return 0;
}

SSL_CTX *tls_ctx_new(const tls_policy_t *policy, const tls_creds_t *creds, char *err,
                     size_t errlen)
{
    SSL_CTX *ctx;
    tls_pol_t *p;
    int mode;

    if (!tls_init()) {
        snprintf(err, errlen, "OpenSSL does not start");
        return NULL;
    }
    if (policy->server && !creds) {
        snprintf(err, errlen, "a TLS server needs a certificate");
        return NULL;
    }
    if (policy->peer_cert != TLS_PEER_NONE && !policy->roots && !policy->pin[0]) {
        snprintf(err, errlen, "no CA to verify peers with");
        return NULL;
    }
    if (!(ctx = tls_ctx_base(policy->server)) || !(p = calloc(1, sizeof(*p)))) {
        SSL_CTX_free(ctx);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->server = policy->server;
    p->peer_cert = policy->peer_cert;
    snprintf(p->pin, sizeof(p->pin), "%s", policy->pin);
    snprintf(p->role, sizeof(p->role), "%s", policy->peer_role ? policy->peer_role : "");
    snprintf(p->cluster, sizeof(p->cluster), "%s", policy->peer_cluster ? policy->peer_cluster : "");
    p->check = policy->check;
    p->check_arg = policy->check_arg;
    if (policy->roots && !(p->store = tls_store_of(policy->roots))) {
        free(p);
        SSL_CTX_free(ctx);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (SSL_CTX_set_ex_data(ctx, tls_ctx_idx, p) != 1) {
        tls_pol_free(NULL, p, NULL, 0, 0, NULL);
        SSL_CTX_free(ctx);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    /* A client always verifies its server. */
    mode = SSL_VERIFY_NONE;
    if (!policy->server || policy->peer_cert != TLS_PEER_NONE)
        mode = SSL_VERIFY_PEER;
    if (policy->server && policy->peer_cert == TLS_PEER_REQUIRED)
        mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx, mode, NULL);
    SSL_CTX_set_cert_verify_callback(ctx, tls_verify, NULL);
    if (creds && tls_ctx_set_creds(ctx, creds, err, errlen)) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

SSL_CTX *tls_server_ctx_files(const char *cert_file, const char *key_file, char *err,
                              size_t errlen)
{
    tls_policy_t policy = { .server = 1, .peer_cert = TLS_PEER_NONE };
    SSL_CTX *ctx;
    tls_pol_t *p;
    char why[160];

    if (!tls_init() || !(ctx = tls_ctx_base(1))) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!(p = calloc(1, sizeof(*p))) || SSL_CTX_set_ex_data(ctx, tls_ctx_idx, p) != 1) {
        free(p);
        SSL_CTX_free(ctx);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->server = policy.server;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        snprintf(err, errlen, "%s: not a PEM certificate chain (%s)", cert_file,
                 pki_openssl_error("?", why, sizeof(why)));
        goto out_free;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        snprintf(err, errlen, "%s: not a PEM private key (%s)", key_file,
                 pki_openssl_error("?", why, sizeof(why)));
        goto out_free;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "%s is not the key of %s", key_file, cert_file);
        goto out_free;
    }
    ERR_clear_error();
    return ctx;

out_free:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

/* ------------------------------------------------------------ sessions */

/* A drained memory BIO gives its buffer back: the next write starts a new
 * one of the size it needs. */
static void tls_bio_release(BIO *b)
{
    BUF_MEM *bm = NULL, *empty;

    if (BIO_ctrl_pending(b) > 0 || BIO_get_mem_ptr(b, &bm) != 1 || !bm || bm->max == 0)
        return;
    if (!(empty = BUF_MEM_new()))
        return; /* keep the old one */
    BIO_set_mem_buf(b, empty, BIO_CLOSE);
}

size_t tls_buffered(const tls_t *t)
{
    BUF_MEM *r = NULL, *w = NULL;

    BIO_get_mem_ptr(t->rbio, &r);
    BIO_get_mem_ptr(t->wbio, &w);
    return (r ? r->max : 0) + (w ? w->max : 0);
}

tls_t *tls_new(SSL_CTX *ctx)
{
    tls_pol_t *p = tls_pol(ctx);
    tls_t *t = calloc(1, sizeof(*t));

    if (!t || !p)
        goto out_free;
    t->server = p->server;
    if (!(t->ssl = SSL_new(ctx)))
        goto out_free;
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->rbio || !t->wbio) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        goto out_free;
    }
    BIO_set_mem_eof_return(t->rbio, -1); /* empty means "more later", not EOF */
    BIO_set_mem_eof_return(t->wbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_ex_data(t->ssl, tls_ssl_idx, t);
    if (t->server)
        SSL_set_accept_state(t->ssl);
    else
        SSL_set_connect_state(t->ssl);
    return t;

out_free:
    if (t)
        SSL_free(t->ssl);
    free(t);
    ERR_clear_error();
    return NULL;
}

void tls_free(tls_t *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    free(t);
}

int tls_feed(tls_t *t, const void *data, size_t len)
{
    const unsigned char *p = data;

    if (len == 0)
        return 0;
    if (t->server && !t->fed && p[0] != TLS_RECORD_HANDSHAKE) {
        tls_set_reason(t, "not TLS: a plaintext peer (an older skiff, or not skiff)");
        return SKIFF_ETLS;
    }
    t->fed = 1;
    while (len > 0) {
        int n = BIO_write(t->rbio, p, len > INT_MAX ? INT_MAX : (int)len);
        if (n <= 0) {
            ERR_clear_error();
            return -ENOMEM;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The reason of a failure the error queue tells, when no reason was set
 * by the verification. */
static void tls_failed(tls_t *t, int sslerr)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    static const char *const alerts[] = { "sslv3 alert ", "tlsv1 alert ", "tlsv13 alert " };
    int reason = e ? ERR_GET_REASON(e) : 0;

    if (t->reason[0]) {
        ERR_clear_error();
        return;
    }
    for (size_t i = 0; r && i < sizeof(alerts) / sizeof(alerts[0]); i++) {
        if (strncmp(r, alerts[i], strlen(alerts[i])) == 0) {
            tls_set_reason(t, "refused by the peer: %s", r + strlen(alerts[i]));
            ERR_clear_error();
            return;
        }
    }
    if (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
        reason == SSL_R_HTTP_REQUEST || reason == SSL_R_RECORD_LENGTH_MISMATCH)
        tls_set_reason(t, "not TLS: the peer speaks plaintext (an older skiff?)");
    else if (reason == SSL_R_UNSUPPORTED_PROTOCOL || reason == SSL_R_NO_PROTOCOLS_AVAILABLE ||
             reason == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION)
        tls_set_reason(t, "the peer does not speak TLS 1.3");
    else if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
        tls_set_reason(t, "the peer sent no certificate");
    else if (r)
        tls_set_reason(t, "TLS: %s", r);
    else if (sslerr == SSL_ERROR_SYSCALL || sslerr == SSL_ERROR_ZERO_RETURN)
        tls_set_reason(t, "the peer ended the TLS session");
    else
        tls_set_reason(t, "TLS failed");
    ERR_clear_error();
}

int tls_handshake(tls_t *t)
{
    int r, e;

    if (t->done)
        return 1;
    ERR_clear_error();
    r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->done = 1;
        tls_bio_release(t->rbio);
        return 1;
    }
    e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        tls_bio_release(t->rbio);
        return 0;
    }
    tls_failed(t, e);
    return SKIFF_ETLS;
}

long tls_read(tls_t *t, void *buf, size_t len)
{
    int r, e;

    if (len == 0)
        return 0;
    ERR_clear_error();
    r = SSL_read(t->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (r > 0) {
        tls_bio_release(t->rbio); /* when the records fed are all read */
        return r;
    }
    e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        tls_bio_release(t->rbio); /* all that was fed is read */
        return 0;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        return SKIFF_ECLOSED;
    }
    tls_failed(t, e);
    return SKIFF_ETLS;
}

int tls_write(tls_t *t, const void *data, size_t len)
{
    const unsigned char *p = data;

    ERR_clear_error();
    while (len > 0) {
        int r = SSL_write(t->ssl, p, len > INT_MAX ? INT_MAX : (int)len);
        if (r <= 0) {
            tls_failed(t, SSL_get_error(t->ssl, r));
            return SKIFF_ETLS;
        }
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

void tls_shutdown(tls_t *t)
{
    if (t->done)
        SSL_shutdown(t->ssl);
    ERR_clear_error();
}

size_t tls_out_pending(const tls_t *t)
{
    return BIO_ctrl_pending(t->wbio);
}

size_t tls_out_take(tls_t *t, void *buf, size_t len)
{
    int n = BIO_read(t->wbio, buf, len > INT_MAX ? INT_MAX : (int)len);

    ERR_clear_error();
    tls_bio_release(t->wbio);
    return n > 0 ? (size_t)n : 0;
}

int tls_in_partial(const tls_t *t)
{
    return BIO_ctrl_pending(t->rbio) > 0 || SSL_has_pending(t->ssl);
}

int tls_done(const tls_t *t)
{
    return t->done;
}

const char *tls_reason(const tls_t *t)
{
    return t->reason;
}

X509 *tls_peer_cert(const tls_t *t)
{
    return t->done ? SSL_get0_peer_certificate(t->ssl) : NULL;
}
