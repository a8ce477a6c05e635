/* Unit tests of proto/pki, proto/token, proto/tls and TLS under proto/conn.
 *
 * Certificates come from controller/ca.c's pure signing functions (a root,
 * leaves of each role). Sessions are first tested in memory, two tls_t
 * pumped into each other: the handshake, what each side verifies (the
 * pinned digest, the roots, the role, the cluster, expiry, the check hook)
 * and the alert the other side then reads. Then conns over 127.0.0.1 with
 * TLS: frames both ways, large frames, and the limits of conn.h inside TLS
 * (frame size, pending output, the handshake and partial timeouts), a
 * plaintext peer, and the peer's certificate on the accepting side.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "ca.h"
#include "conn.h"
#include "errors.h"
#include "pki.h"
#include "tls.h"
#include "token.h"
#include "wire.h"

#define CLUSTER "c0ffee00c0ffee00c0ffee00c0ffee00"
#define HOUR_MS 3600000

/* ------------------------------------------------------------ a small CA */

typedef struct pki_fx {
    EVP_PKEY *root_key;
    X509 *root;
    char digest[PKI_DIGEST_HEX + 1];
    STACK_OF(X509) *roots;
} pki_fx_t;

static void fx_ca(pki_fx_t *p)
{
    p->root_key = pki_key_new();
    assert_non_null(p->root_key);
    p->root = ca_root_new(p->root_key, CLUSTER);
    assert_non_null(p->root);
    assert_int_equal(pki_digest(p->root, p->digest), 0);
    p->roots = sk_X509_new_null();
    assert_non_null(p->roots);
    X509_up_ref(p->root);
    sk_X509_push(p->roots, p->root);
}

static void fx_ca_free(pki_fx_t *p)
{
    sk_X509_pop_free(p->roots, X509_free);
    X509_free(p->root);
    EVP_PKEY_free(p->root_key);
}

/* A key and a certificate of role for id, signed by (ca, key). */
static X509 *leaf(X509 *ca, EVP_PKEY *ca_key, const char *id, const char *role,
                  const char *cluster, int64_t lifetime_ms, EVP_PKEY **key)
{
    pki_name_t name;
    X509 *x;

    *key = pki_key_new();
    assert_non_null(*key);
    snprintf(name.id, sizeof(name.id), "%s", id);
    snprintf(name.cluster, sizeof(name.cluster), "%s", cluster);
    snprintf(name.role, sizeof(name.role), "%s", role);
    x = ca_sign(ca, ca_key, *key, &name, lifetime_ms, "IP:127.0.0.1");
    assert_non_null(x);
    return x;
}

/* A server context: a controller certificate of (ca, ca_key), chain, and a
 * client certificate optional (role node). */
static SSL_CTX *server_ctx(X509 *ca, EVP_PKEY *ca_key, STACK_OF(X509) *chain,
                           STACK_OF(X509) *roots, enum tls_peer_cert peer, tls_check_fn check,
                           void *arg)
{
    tls_policy_t policy = { .server = 1, .peer_cert = peer, .roots = roots,
                            .peer_role = PKI_ROLE_NODE, .peer_cluster = CLUSTER,
                            .check = check, .check_arg = arg };
    tls_creds_t creds = { 0 };
    SSL_CTX *ctx;
    char err[256];

    creds.cert = leaf(ca, ca_key, "controller", PKI_ROLE_CONTROLLER, CLUSTER, HOUR_MS,
                      &creds.key);
    creds.chain = chain;
    ctx = tls_ctx_new(&policy, &creds, err, sizeof(err));
    if (!ctx)
        fail_msg("tls_ctx_new: %s", err);
    X509_free(creds.cert);
    EVP_PKEY_free(creds.key);
    return ctx;
}

/* A client context pinning digest (or trusting roots), with creds or none. */
static SSL_CTX *client_ctx(const char *pin, STACK_OF(X509) *roots, const tls_creds_t *creds)
{
    tls_policy_t policy = { .server = 0, .peer_cert = TLS_PEER_REQUIRED, .roots = roots,
                            .peer_role = PKI_ROLE_CONTROLLER };
    SSL_CTX *ctx;
    char err[256];

    if (pin)
        snprintf(policy.pin, sizeof(policy.pin), "%s", pin);
    ctx = tls_ctx_new(&policy, creds, err, sizeof(err));
    if (!ctx)
        fail_msg("tls_ctx_new: %s", err);
    return ctx;
}

static STACK_OF(X509) *chain_of(X509 *a, X509 *b)
{
    STACK_OF(X509) *s = sk_X509_new_null();

    assert_non_null(s);
    if (a) {
        X509_up_ref(a);
        sk_X509_push(s, a);
    }
    if (b) {
        X509_up_ref(b);
        sk_X509_push(s, b);
    }
    return s;
}

/* Moves what one session made into the other. */
static void move_bytes(tls_t *from, tls_t *to)
{
    char buf[65536];
    size_t n;

    while ((n = tls_out_take(from, buf, sizeof(buf))) > 0)
        assert_int_equal(tls_feed(to, buf, n), 0);
}

/* Runs both handshakes to their end; returns the client's and server's
 * results (1 done, or SKIFF_ETLS). A TLS 1.3 client is done before the
 * server has checked its certificate: the server's verdict (an alert)
 * comes with the client's first read. */
static void handshake(tls_t *c, tls_t *s, int *crc, int *src)
{
    char buf[64];

    *crc = *src = 0;
    for (int i = 0; i < 20 && (*crc == 0 || *src == 0); i++) {
        if (*crc == 0)
            *crc = tls_handshake(c);
        move_bytes(c, s);
        if (*src == 0)
            *src = tls_handshake(s);
        move_bytes(s, c);
    }
    if (*crc == 1 && *src < 0) {
        long r = tls_read(c, buf, sizeof(buf));
        assert_true(r < 0);
        *crc = (int)r;
    }
}

static void session_pair(SSL_CTX *cctx, SSL_CTX *sctx, int *crc, int *src, tls_t **c,
                         tls_t **s)
{
    *c = tls_new(cctx);
    *s = tls_new(sctx);
    assert_non_null(*c);
    assert_non_null(*s);
    handshake(*c, *s, crc, src);
}

/* ------------------------------------------------------------ pki */

static void test_key_pem_round_trip(void **state)
{
    EVP_PKEY *k = pki_key_new(), *back, *rsa;
    char *pem = NULL, err[256];
    size_t n = 0;

    (void)state;
    assert_non_null(k);
    assert_int_equal(pki_key_pem(k, &pem, &n), 0);
    assert_int_equal(strlen(pem), n);
    assert_non_null(strstr(pem, "BEGIN PRIVATE KEY"));
    back = pki_key_parse(pem, n, err, sizeof(err));
    assert_non_null(back);
    assert_int_equal(EVP_PKEY_eq(k, back), 1);
    EVP_PKEY_free(back);
    assert_null(pki_key_parse("junk", 4, err, sizeof(err)));
    assert_non_null(strstr(err, "not a PEM private key"));
    assert_null(pki_key_parse(pem, 0, err, sizeof(err)));
    /* Only P-256 */
    rsa = EVP_RSA_gen(1024);
    assert_non_null(rsa);
    free(pem);
    pem = NULL;
    assert_int_equal(pki_key_pem(rsa, &pem, &n), 0);
    assert_null(pki_key_parse(pem, n, err, sizeof(err)));
    assert_string_equal(err, "not an ECDSA P-256 key");
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(k);
    free(pem);
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_csr(void **state)
{
    EVP_PKEY *k = pki_key_new(), *other = pki_key_new();
    char *pem = NULL, *two, err[256], *big;
    size_t n = 0;
    X509_REQ *req;
    BIO *b;

    (void)state;
    assert_int_equal(pki_csr_new(k, "n1", &pem, &n), 0);
    req = pki_csr_parse(pem, n, err, sizeof(err));
    assert_non_null(req);
    assert_int_equal(EVP_PKEY_eq(X509_REQ_get0_pubkey(req), k), 1);
    /* Another key put in after the signature: it does not verify. */
    assert_int_equal(X509_REQ_set_pubkey(req, other), 1);
    b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_X509_REQ(b, req), 1);
    X509_REQ_free(req);
    {
        char *data;
        long len = BIO_get_mem_data(b, &data);
        assert_null(pki_csr_parse(data, (size_t)len, err, sizeof(err)));
        assert_string_equal(err, "its signature does not verify");
    }
    BIO_free(b);
    /* Two requests in one. */
    two = malloc(2 * n + 1);
    memcpy(two, pem, n);
    memcpy(two + n, pem, n + 1);
    assert_null(pki_csr_parse(two, 2 * n, err, sizeof(err)));
    assert_string_equal(err, "more than one certificate request");
    free(two);
    /* Garbage, empty, too large. */
    assert_null(pki_csr_parse("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", 40, err,
                              sizeof(err)));
    assert_non_null(strstr(err, "not a PEM certificate request"));
    assert_null(pki_csr_parse(NULL, 0, err, sizeof(err)));
    assert_string_equal(err, "empty");
    big = calloc(1, PKI_MAX_PEM + 2);
    memset(big, 'A', PKI_MAX_PEM + 1);
    assert_null(pki_csr_parse(big, PKI_MAX_PEM + 1, err, sizeof(err)));
    assert_non_null(strstr(err, "too large"));
    free(big);
    free(pem);
    EVP_PKEY_free(k);
    EVP_PKEY_free(other);
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_chain_and_names(void **state)
{
    pki_fx_t p;
    EVP_PKEY *k;
    X509 *x;
    char *pem = NULL, err[256], d1[PKI_DIGEST_HEX + 1], d2[PKI_DIGEST_HEX + 1];
    char serial[PKI_SERIAL_HEX + 1];
    STACK_OF(X509) *chain;
    pki_name_t name;
    size_t n = 0;

    (void)state;
    fx_ca(&p);
    x = leaf(p.root, p.root_key, "n0de1d", PKI_ROLE_NODE, CLUSTER, HOUR_MS, &k);
    assert_int_equal(pki_name(x, &name), 0);
    assert_string_equal(name.id, "n0de1d");
    assert_string_equal(name.cluster, CLUSTER);
    assert_string_equal(name.role, PKI_ROLE_NODE);
    assert_true(pki_key_matches(x, k));
    assert_false(pki_key_matches(x, p.root_key));
    assert_true(pki_is_root(p.root));
    assert_false(pki_is_root(x));
    assert_int_equal(pki_serial(x, serial), 0);
    assert_true(strlen(serial) >= 30);
    assert_true(pki_not_after_ms(x) - pki_not_before_ms(x) >= HOUR_MS);
    /* The root's subject names it a CA of the cluster. */
    assert_int_equal(pki_name(p.root, &name), 0);
    assert_string_equal(name.role, "skiff-ca");
    assert_int_equal(strncmp(name.id, "skiff-ca-", 9), 0);
    /* A chain: leaf and root, in order; the digest is the DER's. */
    assert_int_equal(pki_cert_pem(x, &pem, &n), 0);
    assert_int_equal(pki_cert_pem(p.root, &pem, &n), 0);
    assert_int_equal(strlen(pem), n);
    chain = pki_chain_parse(pem, n, err, sizeof(err));
    assert_non_null(chain);
    assert_int_equal(sk_X509_num(chain), 2);
    assert_int_equal(pki_digest(sk_X509_value(chain, 1), d1), 0);
    assert_string_equal(d1, p.digest);
    assert_int_equal(pki_digest(x, d2), 0);
    assert_string_not_equal(d1, d2);
    assert_int_equal(strlen(d1), PKI_DIGEST_HEX);
    assert_int_equal(strspn(d1, "0123456789abcdef"), PKI_DIGEST_HEX);
    sk_X509_pop_free(chain, X509_free);
    /* More than PKI_MAX_CHAIN, none, a broken one. */
    for (int i = 0; i < PKI_MAX_CHAIN; i++)
        assert_int_equal(pki_cert_pem(p.root, &pem, &n), 0);
    assert_null(pki_chain_parse(pem, n, err, sizeof(err)));
    assert_string_equal(err, "more than 8 certificates");
    assert_null(pki_chain_parse("hello", 5, err, sizeof(err)));
    assert_string_equal(err, "no PEM certificate in it");
    memcpy(pem + 100, "!!!!", 4);
    assert_null(pki_chain_parse(pem, n, err, sizeof(err)));
    assert_non_null(strstr(err, "not PEM certificates"));
    free(pem);
    X509_free(x);
    EVP_PKEY_free(k);
    fx_ca_free(&p);
    assert_int_equal(ERR_peek_error(), 0);
}

/* ------------------------------------------------------------ tokens */

static void test_tokens(void **state)
{
    char d[65], sec[65], s[300], out[TOKEN_LEN + 1], err[256];
    token_t t;

    (void)state;
    memset(d, 'a', 64);
    d[64] = '\0';
    token_secret_new(sec);
    assert_int_equal(strlen(sec), 64);
    snprintf(s, sizeof(s), "  SKIFF-1-%s-%s\n", d, sec);
    assert_int_equal(token_parse(s, &t, err, sizeof(err)), 0);
    assert_string_equal(t.digest, d);
    assert_string_equal(t.secret, sec);
    token_format(&t, out);
    assert_int_equal(strlen(out), TOKEN_LEN);
    assert_int_equal(strncmp(out, "SKIFF-1-", 8), 0);
    /* Upper case hex is read as lower case. */
    snprintf(s, sizeof(s), "SKIFF-1-%s-%s", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
             sec);
    assert_int_equal(token_parse(s, &t, err, sizeof(err)), 0);
    assert_string_equal(t.digest, d);
    /* The old bare token: refused, saying where the new one is. */
    assert_int_equal(token_parse(sec, &t, err, sizeof(err)), SKIFF_EINVAL);
    assert_non_null(strstr(err, "old token"));
    assert_non_null(strstr(err, "join-token"));
    /* Broken ones. */
    assert_int_equal(token_parse("", &t, err, sizeof(err)), SKIFF_EINVAL);
    snprintf(s, sizeof(s), "SKIFF-2-%s-%s", d, sec);
    assert_int_equal(token_parse(s, &t, err, sizeof(err)), SKIFF_EINVAL);
    snprintf(s, sizeof(s), "SKIFF-1-%s_%s", d, sec);
    assert_int_equal(token_parse(s, &t, err, sizeof(err)), SKIFF_EINVAL);
    snprintf(s, sizeof(s), "SKIFF-1-%s-%.63sg", d, sec);
    assert_int_equal(token_parse(s, &t, err, sizeof(err)), SKIFF_EINVAL);
    assert_non_null(strstr(err, "not a skiff token"));
    /* Secrets, in constant time. */
    assert_true(token_secret_match(sec, sec));
    {
        char up[65];
        for (int i = 0; i < 65; i++)
            up[i] = (char)(sec[i] >= 'a' && sec[i] <= 'f' ? sec[i] - 32 : sec[i]);
        assert_true(token_secret_match(sec, up));
        up[10] = up[10] == '0' ? '1' : '0';
        assert_false(token_secret_match(sec, up));
    }
    assert_false(token_secret_match(sec, ""));
    assert_false(token_secret_match(sec, "abc"));
    snprintf(s, sizeof(s), "%sX", sec);
    assert_false(token_secret_match(sec, s));
}

/* ------------------------------------------------------------ sessions */

static int refuse_all(void *arg, X509 *leaf_cert, char *why, size_t len)
{
    int *calls = arg;

    (void)leaf_cert;
    (*calls)++;
    snprintf(why, len, "the certificate of node x is revoked");
    return 1;
}

static void test_handshake_pinned_and_mutual(void **state)
{
    pki_fx_t p;
    STACK_OF(X509) *chain;
    SSL_CTX *sctx, *cctx;
    tls_creds_t creds = { 0 };
    tls_t *c, *s;
    pki_name_t name;
    char buf[32];
    int crc, src;

    (void)state;
    fx_ca(&p);
    chain = chain_of(p.root, NULL);
    sctx = server_ctx(p.root, p.root_key, chain, p.roots, TLS_PEER_OPTIONAL, NULL, NULL);
    /* No client certificate, the server pinned by the digest. */
    cctx = client_ctx(p.digest, NULL, NULL);
    session_pair(cctx, sctx, &crc, &src, &c, &s);
    assert_int_equal(crc, 1);
    assert_int_equal(src, 1);
    assert_null(tls_peer_cert(s));
    assert_non_null(tls_peer_cert(c));
    assert_int_equal(pki_name(tls_peer_cert(c), &name), 0);
    assert_string_equal(name.role, PKI_ROLE_CONTROLLER);
    /* Bytes both ways. */
    assert_int_equal(tls_write(c, "ping", 4), 0);
    move_bytes(c, s);
    assert_int_equal(tls_read(s, buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "ping", 4);
    assert_int_equal(tls_read(s, buf, sizeof(buf)), 0);
    assert_int_equal(tls_write(s, "pong!", 5), 0);
    move_bytes(s, c);
    assert_int_equal(tls_read(c, buf, sizeof(buf)), 5);
    /* Half a record waits for the rest. */
    assert_int_equal(tls_write(c, "partial", 7), 0);
    {
        char rec[256];
        size_t n = tls_out_take(c, rec, sizeof(rec));
        assert_true(n > 10);
        assert_int_equal(tls_feed(s, rec, 6), 0);
        assert_int_equal(tls_read(s, buf, sizeof(buf)), 0);
        assert_true(tls_in_partial(s));
        assert_int_equal(tls_feed(s, rec + 6, n - 6), 0);
        assert_int_equal(tls_read(s, buf, sizeof(buf)), 7);
        assert_false(tls_in_partial(s));
    }
    /* The end of a session. */
    tls_shutdown(c);
    move_bytes(c, s);
    assert_int_equal(tls_read(s, buf, sizeof(buf)), SKIFF_ECLOSED);
    tls_free(c);
    tls_free(s);
    SSL_CTX_free(cctx);

    /* With a node certificate, trusting the roots: the server sees it. */
    creds.cert = leaf(p.root, p.root_key, "n1", PKI_ROLE_NODE, CLUSTER, HOUR_MS, &creds.key);
    cctx = client_ctx(NULL, p.roots, &creds);
    session_pair(cctx, sctx, &crc, &src, &c, &s);
    assert_int_equal(crc, 1);
    assert_int_equal(src, 1);
    assert_non_null(tls_peer_cert(s));
    assert_int_equal(pki_name(tls_peer_cert(s), &name), 0);
    assert_string_equal(name.id, "n1");
    /* Idle sessions keep no buffer, after a message of several records
     * too (the memory BIOs give theirs back once drained). */
    assert_int_equal(tls_buffered(c), 0);
    assert_int_equal(tls_buffered(s), 0);
    {
        static char big[40000], got[sizeof(big) + 64];
        size_t have = 0;
        long r;

        memset(big, 'x', sizeof(big));
        assert_int_equal(tls_write(s, big, sizeof(big)), 0);
        assert_true(tls_buffered(s) >= sizeof(big));
        move_bytes(s, c);
        assert_int_equal(tls_buffered(s), 0);
        while ((r = tls_read(c, got + have, sizeof(got) - have)) > 0)
            have += (size_t)r;
        assert_int_equal(r, 0);
        assert_int_equal(have, sizeof(big));
        assert_memory_equal(got, big, sizeof(big));
        assert_int_equal(tls_buffered(c), 0);
        /* And it still works after: a reply. */
        assert_int_equal(tls_write(c, "ok", 2), 0);
        move_bytes(c, s);
        assert_int_equal(tls_read(s, got, sizeof(got)), 2);
        assert_int_equal(tls_buffered(s), 0);
    }
    tls_free(c);
    tls_free(s);
    SSL_CTX_free(cctx);
    X509_free(creds.cert);
    EVP_PKEY_free(creds.key);
    SSL_CTX_free(sctx);
    sk_X509_pop_free(chain, X509_free);
    fx_ca_free(&p);
}

static void test_handshake_refusals(void **state)
{
    pki_fx_t p, other;
    STACK_OF(X509) *chain;
    SSL_CTX *sctx, *cctx;
    tls_creds_t creds = { 0 };
    tls_t *c, *s;
    int crc, src, calls = 0;

    (void)state;
    fx_ca(&p);
    fx_ca(&other);
    chain = chain_of(p.root, NULL);
    sctx = server_ctx(p.root, p.root_key, chain, p.roots, TLS_PEER_OPTIONAL, NULL, NULL);

    /* A man in the middle: another CA than the token's. */
    cctx = client_ctx(other.digest, NULL, NULL);
    session_pair(cctx, sctx, &crc, &src, &c, &s);
    assert_int_equal(crc, SKIFF_ETLS);
    assert_non_null(strstr(tls_reason(c), "does not end at the CA of the token"));
    assert_int_equal(src, SKIFF_ETLS);
    assert_non_null(strstr(tls_reason(s), "refused by the peer"));
    tls_free(c);
    tls_free(s);
    SSL_CTX_free(cctx);
    /* The same CA named by roots instead: not the server's either. */
    cctx = client_ctx(NULL, other.roots, NULL);
    session_pair(cctx, sctx, &crc, &src, &c, &s);
    assert_int_equal(crc, SKIFF_ETLS);
    assert_non_null(strstr(tls_reason(c), "not from this cluster's CA"));
    tls_free(c);
    tls_free(s);
    SSL_CTX_free(cctx);

    /* A node's certificate presented as a controller's. */
    {
        tls_policy_t policy = { .server = 1, .peer_cert = TLS_PEER_NONE };
        tls_creds_t node = { 0 };
        SSL_CTX *fake;
        char err[256];
        node.cert = leaf(p.root, p.root_key, "n1", PKI_ROLE_NODE, CLUSTER, HOUR_MS, &node.key);
        node.chain = chain;
        fake = tls_ctx_new(&policy, &node, err, sizeof(err));
        assert_non_null(fake);
        cctx = client_ctx(p.digest, NULL, NULL);
        session_pair(cctx, fake, &crc, &src, &c, &s);
        assert_int_equal(crc, SKIFF_ETLS);
        /* OpenSSL's purpose check (clientAuth only) or skiff's role check */
        assert_true(strstr(tls_reason(c), "skiff-controller") ||
                    strstr(tls_reason(c), "unsupported certificate purpose"));
        tls_free(c);
        tls_free(s);
        SSL_CTX_free(cctx);
        SSL_CTX_free(fake);
        X509_free(node.cert);
        EVP_PKEY_free(node.key);
    }

    /* A client certificate of another cluster, of another role, expired,
     * refused by the check: the server refuses, the client reads why. */
    {
        static const struct {
            const char *role, *cluster, *text, *alert;
            int64_t lifetime_ms;
        } cases[] = {
            { PKI_ROLE_NODE, "0ther", "not a skiff-node's of cluster", "refused by the peer" },
            { PKI_ROLE_CLIENT, CLUSTER, "not a skiff-node's", "refused by the peer" },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            creds.cert = leaf(p.root, p.root_key, "n1", cases[i].role, cases[i].cluster,
                              HOUR_MS, &creds.key);
            cctx = client_ctx(p.digest, NULL, &creds);
            session_pair(cctx, sctx, &crc, &src, &c, &s);
            assert_int_equal(src, SKIFF_ETLS);
            assert_non_null(strstr(tls_reason(s), cases[i].text));
            assert_int_equal(crc, SKIFF_ETLS);
            assert_non_null(strstr(tls_reason(c), cases[i].alert));
            tls_free(c);
            tls_free(s);
            SSL_CTX_free(cctx);
            X509_free(creds.cert);
            EVP_PKEY_free(creds.key);
        }
    }
    {
        /* Expired: signed with a lifetime already over (back-dated). */
        pki_name_t name = { .id = "n1", .cluster = CLUSTER, .role = PKI_ROLE_NODE };
        X509 *x;
        creds.key = pki_key_new();
        x = ca_sign(p.root, p.root_key, creds.key, &name, 1000, NULL);
        assert_non_null(x);
        assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -7200));
        assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), -3600));
        assert_true(X509_sign(x, p.root_key, EVP_sha256()) > 0);
        creds.cert = x;
        cctx = client_ctx(p.digest, NULL, &creds);
        session_pair(cctx, sctx, &crc, &src, &c, &s);
        assert_int_equal(src, SKIFF_ETLS);
        assert_string_equal(tls_reason(s), "the skiff-node's certificate has expired");
        assert_int_equal(crc, SKIFF_ETLS);
        assert_string_equal(tls_reason(c), "refused by the peer: certificate expired");
        tls_free(c);
        tls_free(s);
        SSL_CTX_free(cctx);
        X509_free(creds.cert);
        EVP_PKEY_free(creds.key);
    }
    {
        /* The check (revocation) refuses it. */
        SSL_CTX *checking = server_ctx(p.root, p.root_key, chain, p.roots, TLS_PEER_OPTIONAL,
                                       refuse_all, &calls);
        creds.cert = leaf(p.root, p.root_key, "n1", PKI_ROLE_NODE, CLUSTER, HOUR_MS, &creds.key);
        cctx = client_ctx(p.digest, NULL, &creds);
        session_pair(cctx, checking, &crc, &src, &c, &s);
        assert_int_equal(calls, 1);
        assert_int_equal(src, SKIFF_ETLS);
        assert_string_equal(tls_reason(s), "the certificate of node x is revoked");
        assert_string_equal(tls_reason(c), "refused by the peer: certificate revoked");
        tls_free(c);
        tls_free(s);
        SSL_CTX_free(cctx);
        /* Without a certificate, the check is not called. */
        cctx = client_ctx(p.digest, NULL, NULL);
        session_pair(cctx, checking, &crc, &src, &c, &s);
        assert_int_equal(src, 1);
        assert_int_equal(calls, 1);
        tls_free(c);
        tls_free(s);
        SSL_CTX_free(cctx);
        SSL_CTX_free(checking);
        X509_free(creds.cert);
        EVP_PKEY_free(creds.key);
    }
    {
        /* A certificate required, none sent. */
        SSL_CTX *strict = server_ctx(p.root, p.root_key, chain, p.roots, TLS_PEER_REQUIRED,
                                     NULL, NULL);
        cctx = client_ctx(p.digest, NULL, NULL);
        session_pair(cctx, strict, &crc, &src, &c, &s);
        assert_int_equal(src, SKIFF_ETLS);
        assert_string_equal(tls_reason(s), "the peer sent no certificate");
        assert_int_equal(crc, SKIFF_ETLS);
        tls_free(c);
        tls_free(s);
        SSL_CTX_free(cctx);
        SSL_CTX_free(strict);
    }

    /* A plaintext peer: the first byte is no TLS record. */
    s = tls_new(sctx);
    assert_int_equal(tls_feed(s, "\0\0\0\x05hello", 9), SKIFF_ETLS);
    assert_non_null(strstr(tls_reason(s), "not TLS"));
    tls_free(s);
    /* TLS 1.2 only: no downgrade. */
    {
        SSL_CTX *old = SSL_CTX_new(TLS_client_method());
        SSL *ssl;
        BIO *r = BIO_new(BIO_s_mem()), *w = BIO_new(BIO_s_mem());
        char buf[4096];
        int n;
        SSL_CTX_set_max_proto_version(old, TLS1_2_VERSION);
        ssl = SSL_new(old);
        SSL_set_bio(ssl, r, w);
        SSL_set_connect_state(ssl);
        assert_true(SSL_do_handshake(ssl) <= 0);
        s = tls_new(sctx);
        n = BIO_read(w, buf, sizeof(buf));
        assert_true(n > 0);
        assert_int_equal(tls_feed(s, buf, (size_t)n), 0);
        assert_int_equal(tls_handshake(s), SKIFF_ETLS);
        assert_string_equal(tls_reason(s), "the peer does not speak TLS 1.3");
        tls_free(s);
        SSL_free(ssl);
        SSL_CTX_free(old);
        ERR_clear_error();
    }
    SSL_CTX_free(sctx);
    sk_X509_pop_free(chain, X509_free);
    fx_ca_free(&p);
    fx_ca_free(&other);
}

/* The roots of a context change under it: the next handshakes use them. */
static void test_roots_change(void **state)
{
    pki_fx_t p, next;
    STACK_OF(X509) *chain;
    SSL_CTX *sctx, *cctx;
    tls_creds_t creds = { 0 };
    tls_t *c, *s;
    int crc, src;

    (void)state;
    fx_ca(&p);
    fx_ca(&next);
    chain = chain_of(p.root, NULL);
    sctx = server_ctx(p.root, p.root_key, chain, p.roots, TLS_PEER_OPTIONAL, NULL, NULL);
    creds.cert = leaf(next.root, next.root_key, "n1", PKI_ROLE_NODE, CLUSTER, HOUR_MS,
                      &creds.key);
    cctx = client_ctx(p.digest, NULL, &creds);
    session_pair(cctx, sctx, &crc, &src, &c, &s);
    assert_int_equal(src, SKIFF_ETLS);
    tls_free(c);
    tls_free(s);
    assert_int_equal(tls_ctx_set_roots(sctx, next.roots), 0);
    session_pair(cctx, sctx, &crc, &src, &c, &s);
    assert_int_equal(src, 1);
    assert_int_equal(crc, 1);
    tls_free(c);
    tls_free(s);
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
    X509_free(creds.cert);
    EVP_PKEY_free(creds.key);
    sk_X509_pop_free(chain, X509_free);
    fx_ca_free(&p);
    fx_ca_free(&next);
}

/* A rotation's chain, [cross-signed new root, old root, new root]: a peer
 * that trusts or pins either root verifies a certificate of the new one. */
static void test_cross_signed_chain(void **state)
{
    pki_fx_t old, next;
    X509 *cross;
    STACK_OF(X509) *chain;
    SSL_CTX *sctx, *cctx;
    tls_t *c, *s;
    int crc, src;

    (void)state;
    fx_ca(&old);
    fx_ca(&next);
    cross = ca_cross_sign(next.root, old.root, old.root_key);
    assert_non_null(cross);
    assert_false(pki_is_root(cross));
    chain = chain_of(cross, old.root);
    X509_up_ref(next.root);
    sk_X509_push(chain, next.root);
    sctx = server_ctx(next.root, next.root_key, chain, next.roots, TLS_PEER_NONE, NULL, NULL);
    {
        const char *pins[] = { old.digest, next.digest };
        STACK_OF(X509) *roots[] = { old.roots, next.roots };
        for (int i = 0; i < 4; i++) {
            cctx = i < 2 ? client_ctx(pins[i], NULL, NULL) : client_ctx(NULL, roots[i - 2], NULL);
            session_pair(cctx, sctx, &crc, &src, &c, &s);
            if (crc != 1)
                fail_msg("case %d: %s", i, tls_reason(c));
            assert_int_equal(src, 1);
            tls_free(c);
            tls_free(s);
            SSL_CTX_free(cctx);
        }
    }
    SSL_CTX_free(sctx);
    sk_X509_pop_free(chain, X509_free);
    X509_free(cross);
    fx_ca_free(&old);
    fx_ca_free(&next);
}

static void test_server_ctx_files(void **state)
{
    pki_fx_t p;
    EVP_PKEY *k;
    X509 *x;
    char dir[] = "/tmp/skiff-test-tls-XXXXXX", cert[64], key[64], err[512], *pem = NULL;
    SSL_CTX *ctx, *cctx;
    FILE *f;
    tls_t *c, *s;
    int crc, src;

    (void)state;
    assert_non_null(mkdtemp(dir));
    fx_ca(&p);
    x = leaf(p.root, p.root_key, "controller", PKI_ROLE_CONTROLLER, CLUSTER, HOUR_MS, &k);
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    assert_int_equal(pki_cert_pem(x, &pem, NULL), 0);
    assert_int_equal(pki_cert_pem(p.root, &pem, NULL), 0);
    f = fopen(cert, "w");
    fputs(pem, f);
    fclose(f);
    free(pem);
    pem = NULL;
    assert_int_equal(pki_key_pem(k, &pem, NULL), 0);
    f = fopen(key, "w");
    fputs(pem, f);
    fclose(f);
    free(pem);
    ctx = tls_server_ctx_files(cert, key, err, sizeof(err));
    if (!ctx)
        fail_msg("%s", err);
    /* A TLS 1.3 client verifies it as the controller. */
    cctx = client_ctx(p.digest, NULL, NULL);
    session_pair(cctx, ctx, &crc, &src, &c, &s);
    assert_int_equal(crc, 1);
    assert_int_equal(src, 1);
    tls_free(c);
    tls_free(s);
    SSL_CTX_free(cctx);
    SSL_CTX_free(ctx);
    /* The wrong files, named. */
    assert_null(tls_server_ctx_files(key, key, err, sizeof(err)));
    assert_non_null(strstr(err, "key.pem: not a PEM certificate chain"));
    assert_null(tls_server_ctx_files(cert, cert, err, sizeof(err)));
    assert_non_null(strstr(err, "cert.pem: not a PEM private key"));
    assert_null(tls_server_ctx_files("/nonexistent/c.pem", key, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/c.pem"));
    unlink(cert);
    unlink(key);
    rmdir(dir);
    X509_free(x);
    EVP_PKEY_free(k);
    fx_ca_free(&p);
}

/* ------------------------------------------------------------ conns */

typedef struct cpeer {
    conn_t *c;
    int nmsg, connects, connect_status, closes, close_err;
    char reason[TLS_REASON_MAX];
    char peer_id[PKI_NAME_MAX + 1];
    size_t last_len;
} cpeer_t;

typedef struct cfx {
    uv_loop_t loop;
    uv_tcp_t server;
    uv_timer_t tick;
    int port;
    SSL_CTX *sctx;
    conn_limits_t srv_limits;
    cpeer_t srv[4];
    int nsrv;
    cpeer_t cli[4];
    pki_fx_t p;
    STACK_OF(X509) *chain;
} cfx_t;

#define RUN_UNTIL(fx, cond, ms)                                                          \
    do {                                                                                 \
        uint64_t deadline_ = uv_hrtime() / 1000000 + (ms);                              \
        while (!(cond)) {                                                                \
            if (uv_hrtime() / 1000000 > deadline_)                                       \
                fail_msg("%s:%d: timed out waiting for %s", __FILE__, __LINE__, #cond); \
            uv_run(&(fx)->loop, UV_RUN_ONCE);                                            \
        }                                                                                \
    } while (0)

static int c_on_message(conn_t *c, Envelope *env)
{
    cpeer_t *p = conn_data(c);
    X509 *cert = conn_peer_cert(c);
    pki_name_t name;

    p->nmsg++;
    p->last_len = env->msg_case == MSG_LOGS_DATA ? env->logs_data->data.len : 0;
    if (cert && pki_name(cert, &name) == 0)
        snprintf(p->peer_id, sizeof(p->peer_id), "%s", name.id);
    wire_free(env);
    return 0;
}

static void c_on_connect(conn_t *c, int status)
{
    cpeer_t *p = conn_data(c);

    p->connects++;
    p->connect_status = status;
    if (status)
        snprintf(p->reason, sizeof(p->reason), "%s", conn_strerror(c, status));
}

static void c_on_close(conn_t *c, int err)
{
    cpeer_t *p = conn_data(c);

    p->closes++;
    p->close_err = err;
    snprintf(p->reason, sizeof(p->reason), "%s", conn_strerror(c, err));
    p->c = NULL;
}

static const conn_ops_t c_ops = { c_on_message, c_on_connect, c_on_close };

static void c_on_connection(uv_stream_t *server, int status)
{
    cfx_t *fx = server->data;
    cpeer_t *p = &fx->srv[fx->nsrv++];

    assert_int_equal(status, 0);
    p->c = conn_create(&fx->loop, &c_ops, &fx->srv_limits, p);
    assert_non_null(p->c);
    assert_int_equal(conn_use_tls(p->c, fx->sctx), 0);
    assert_int_equal(conn_accept(p->c, server), 0);
}

static void c_on_tick(uv_timer_t *t)
{
    (void)t;
}

static int c_setup(void **state)
{
    cfx_t *fx = calloc(1, sizeof(*fx));
    struct sockaddr_in sa;
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    if (!fx || uv_loop_init(&fx->loop))
        return -1;
    fx_ca(&fx->p);
    fx->chain = chain_of(fx->p.root, NULL);
    fx->sctx = server_ctx(fx->p.root, fx->p.root_key, fx->chain, fx->p.roots, TLS_PEER_OPTIONAL,
                          NULL, NULL);
    fx->srv_limits.frame_timeout_ms = 2000;
    uv_tcp_init(&fx->loop, &fx->server);
    fx->server.data = fx;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    if (uv_tcp_bind(&fx->server, (struct sockaddr *)&sa, 0) ||
        uv_listen((uv_stream_t *)&fx->server, 16, c_on_connection) ||
        uv_tcp_getsockname(&fx->server, (struct sockaddr *)&ss, &len))
        return -1;
    fx->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    uv_timer_init(&fx->loop, &fx->tick);
    uv_timer_start(&fx->tick, c_on_tick, 5, 5);
    *state = fx;
    return 0;
}

static int c_teardown(void **state)
{
    cfx_t *fx = *state;
    int ok = 1;

    for (int i = 0; i < 4; i++) {
        if (fx->srv[i].c)
            conn_close(fx->srv[i].c, SKIFF_ECLOSED);
        if (fx->cli[i].c)
            conn_close(fx->cli[i].c, SKIFF_ECLOSED);
    }
    uv_close((uv_handle_t *)&fx->tick, NULL);
    uv_close((uv_handle_t *)&fx->server, NULL);
    for (int i = 0; i < 1000 && uv_run(&fx->loop, UV_RUN_NOWAIT); i++)
        usleep(1000);
    if (uv_loop_close(&fx->loop)) {
        fprintf(stderr, "the loop still has handles\n");
        ok = 0;
    }
    SSL_CTX_free(fx->sctx);
    sk_X509_pop_free(fx->chain, X509_free);
    fx_ca_free(&fx->p);
    free(fx);
    return ok ? 0 : -1;
}

static conn_t *c_connect(cfx_t *fx, cpeer_t *p, SSL_CTX *ctx, const conn_limits_t *limits)
{
    char hostport[32];

    p->c = conn_create(&fx->loop, &c_ops, limits, p);
    assert_non_null(p->c);
    assert_int_equal(conn_use_tls(p->c, ctx), 0);
    snprintf(hostport, sizeof(hostport), "127.0.0.1:%d", fx->port);
    assert_int_equal(conn_connect(p->c, hostport), 0);
    return p->c;
}

static int send_logs(conn_t *c, uint64_t id, size_t n)
{
    Envelope env = PB_ENVELOPE_INIT;
    LogsData ld = PB_LOGS_DATA_INIT;
    uint8_t *data = calloc(1, n ? n : 1);
    int rc;

    ld.data.data = data;
    ld.data.len = n;
    env.id = id;
    env.msg_case = MSG_LOGS_DATA;
    env.logs_data = &ld;
    rc = conn_send(c, &env);
    free(data);
    return rc;
}

static int raw_connect(int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    assert_true(fd >= 0);
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void test_conn_tls_frames(void **state)
{
    cfx_t *fx = *state;
    tls_creds_t creds = { 0 };
    SSL_CTX *cctx;
    conn_t *c;

    creds.cert = leaf(fx->p.root, fx->p.root_key, "n7", PKI_ROLE_NODE, CLUSTER, HOUR_MS,
                      &creds.key);
    cctx = client_ctx(fx->p.digest, NULL, &creds);
    c = c_connect(fx, &fx->cli[0], cctx, NULL);
    /* Nothing may be sent before the handshake is done. */
    assert_int_equal(send_logs(c, 1, 10), SKIFF_ECLOSED);
    RUN_UNTIL(fx, fx->cli[0].connects == 1, 5000);
    assert_int_equal(fx->cli[0].connect_status, 0);
    /* Small and large frames, both ways; the server sees who it is. */
    assert_int_equal(send_logs(c, 2, 10), 0);
    assert_int_equal(send_logs(c, 3, 3 << 20), 0);
    assert_int_equal(send_logs(c, 4, 0), 0);
    RUN_UNTIL(fx, fx->srv[0].nmsg == 3, 10000);
    assert_string_equal(fx->srv[0].peer_id, "n7");
    assert_int_equal(send_logs(fx->srv[0].c, 5, 1 << 20), 0);
    RUN_UNTIL(fx, fx->cli[0].nmsg == 1, 10000);
    assert_int_equal(fx->cli[0].last_len, 1 << 20);
    /* A frame past the limit is refused by the sender. */
    assert_int_equal(send_logs(c, 6, WIRE_MAX_FRAME_DEFAULT + 1), SKIFF_ELIMIT);
    /* A plain close: close_notify, the server sees the end. */
    conn_close(c, 0);
    RUN_UNTIL(fx, fx->srv[0].closes == 1, 5000);
    assert_int_equal(fx->srv[0].close_err, SKIFF_ECLOSED);
    SSL_CTX_free(cctx);
    X509_free(creds.cert);
    EVP_PKEY_free(creds.key);
}

static void test_conn_tls_limits(void **state)
{
    cfx_t *fx = *state;
    conn_limits_t big = { .max_frame = 1 << 20 }, small_pending = { .max_pending = 65536 };
    SSL_CTX *cctx = client_ctx(fx->p.digest, NULL, NULL);
    conn_t *c;

    /* The server takes at most 64 KiB frames: a larger one inside TLS is
     * refused from its header. */
    fx->srv_limits.max_frame = 65536;
    c = c_connect(fx, &fx->cli[0], cctx, &big);
    RUN_UNTIL(fx, fx->cli[0].connects == 1, 5000);
    assert_int_equal(send_logs(c, 1, 100000), 0);
    RUN_UNTIL(fx, fx->srv[0].closes == 1, 5000);
    assert_int_equal(fx->srv[0].close_err, SKIFF_ETOOBIG);
    assert_int_equal(fx->srv[0].nmsg, 0);
    RUN_UNTIL(fx, fx->cli[0].closes == 1, 5000);
    /* Pending output is bounded as without TLS. */
    fx->srv_limits.max_frame = 0;
    c = c_connect(fx, &fx->cli[1], cctx, &small_pending);
    RUN_UNTIL(fx, fx->cli[1].connects == 1, 5000);
    {
        int rc = 0, sent = 0;
        while ((rc = send_logs(c, (uint64_t)sent, 16000)) == 0)
            sent++;
        assert_int_equal(rc, SKIFF_ELIMIT);
        assert_true(sent >= 3 && sent <= 5);
        assert_true(conn_pending(c) <= 65536);
    }
    SSL_CTX_free(cctx);
}

static void test_conn_tls_timeouts_and_plaintext(void **state)
{
    cfx_t *fx = *state;
    char buf[256];
    int fd;

    /* Silent: no TLS handshake within the frame timeout. */
    fx->srv_limits.frame_timeout_ms = 200;
    fd = raw_connect(fx->port);
    RUN_UNTIL(fx, fx->srv[0].closes == 1, 5000);
    assert_int_equal(fx->srv[0].close_err, SKIFF_ETIMEDOUT);
    close(fd);
    /* Half a ClientHello: the same. */
    fd = raw_connect(fx->port);
    assert_int_equal(send(fd, "\x16\x03\x01\x00\xff\x01", 6, 0), 6);
    RUN_UNTIL(fx, fx->srv[1].closes == 1, 5000);
    assert_int_equal(fx->srv[1].close_err, SKIFF_ETIMEDOUT);
    close(fd);
    /* A plaintext frame: refused at once, with the reason. */
    fd = raw_connect(fx->port);
    assert_int_equal(send(fd, "\0\0\0\x04\x08\x01\x52\x00", 8, 0), 8);
    RUN_UNTIL(fx, fx->srv[2].closes == 1, 5000);
    assert_int_equal(fx->srv[2].close_err, SKIFF_ETLS);
    assert_non_null(strstr(fx->srv[2].reason, "not TLS"));
    /* ... and the socket is closed: no TLS bytes came back. */
    for (int i = 0; i < 100; i++)
        uv_run(&fx->loop, UV_RUN_NOWAIT);
    assert_int_equal(recv(fd, buf, sizeof(buf), 0), 0);
    close(fd);
}

/* A peer past its hello may be silent, but may not stall inside a frame,
 * nor inside a TLS record. */
static void test_conn_tls_partial_timeout(void **state)
{
    cfx_t *fx = *state;
    SSL_CTX *cctx = client_ctx(fx->p.digest, NULL, NULL);
    tls_t *t;
    char buf[65536];
    size_t n;
    int fd, crc = 0;

    fx->srv_limits.frame_timeout_ms = 0;
    fx->srv_limits.partial_timeout_ms = 300;
    for (int round = 0; round < 2; round++) {
        fd = raw_connect(fx->port);
        t = tls_new(cctx);
        /* The handshake by hand, over the socket. */
        for (int i = 0; i < 200 && crc != 1; i++) {
            ssize_t r;
            crc = tls_handshake(t);
            assert_true(crc >= 0);
            if ((n = tls_out_take(t, buf, sizeof(buf))) > 0)
                assert_int_equal(send(fd, buf, n, 0), (ssize_t)n);
            uv_run(&fx->loop, UV_RUN_NOWAIT);
            r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (r > 0)
                assert_int_equal(tls_feed(t, buf, (size_t)r), 0);
            usleep(1000);
        }
        assert_int_equal(crc, 1);
        /* Silent for longer than the partial timeout: kept. */
        for (int i = 0; i < 50; i++) {
            uv_run(&fx->loop, UV_RUN_NOWAIT);
            usleep(10000);
        }
        assert_int_equal(fx->srv[round].closes, 0);
        /* round 0: half a frame's header, in a whole record; round 1: a
         * whole frame's header, in half a record. */
        assert_int_equal(tls_write(t, "\0\0\0\x40", round == 0 ? 2 : 4), 0);
        n = tls_out_take(t, buf, sizeof(buf));
        if (round == 1)
            n -= 3;
        assert_int_equal(send(fd, buf, n, 0), (ssize_t)n);
        RUN_UNTIL(fx, fx->srv[round].closes == 1, 5000);
        assert_int_equal(fx->srv[round].close_err, SKIFF_ETIMEDOUT);
        tls_free(t);
        close(fd);
        crc = 0;
    }
    SSL_CTX_free(cctx);
}

/* The client refuses a server of another CA: on_connect says so. */
static void test_conn_tls_verify_failure(void **state)
{
    cfx_t *fx = *state;
    pki_fx_t other;
    SSL_CTX *cctx;

    fx_ca(&other);
    cctx = client_ctx(other.digest, NULL, NULL);
    c_connect(fx, &fx->cli[0], cctx, NULL);
    RUN_UNTIL(fx, fx->cli[0].closes == 1, 5000);
    assert_int_equal(fx->cli[0].connects, 1);
    assert_int_equal(fx->cli[0].connect_status, SKIFF_ETLS);
    assert_non_null(strstr(fx->cli[0].reason, "does not end at the CA of the token"));
    RUN_UNTIL(fx, fx->srv[0].closes == 1, 5000);
    assert_int_equal(fx->srv[0].close_err, SKIFF_ETLS);
    assert_non_null(strstr(fx->srv[0].reason, "refused by the peer"));
    assert_int_equal(fx->srv[0].nmsg, 0);
    SSL_CTX_free(cctx);
    fx_ca_free(&other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_pem_round_trip),
        cmocka_unit_test(test_csr),
        cmocka_unit_test(test_chain_and_names),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_handshake_pinned_and_mutual),
        cmocka_unit_test(test_handshake_refusals),
        cmocka_unit_test(test_roots_change),
        cmocka_unit_test(test_cross_signed_chain),
        cmocka_unit_test(test_server_ctx_files),
        cmocka_unit_test_setup_teardown(test_conn_tls_frames, c_setup, c_teardown),
        cmocka_unit_test_setup_teardown(test_conn_tls_limits, c_setup, c_teardown),
        cmocka_unit_test_setup_teardown(test_conn_tls_timeouts_and_plaintext, c_setup,
                                        c_teardown),
        cmocka_unit_test_setup_teardown(test_conn_tls_partial_timeout, c_setup, c_teardown),
        cmocka_unit_test_setup_teardown(test_conn_tls_verify_failure, c_setup, c_teardown),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
