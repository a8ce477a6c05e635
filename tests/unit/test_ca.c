/* Unit tests of controller/ca: the cluster CA made, sealed into the
 * model's rows, committed to a real store (a temporary SQLite file) and
 * loaded back (also as a follower, from the roots alone); certificates issued,
 * checked, revoked, kept or replaced on renewal; the renewal rate; the
 * limit of client certificates; the records pruned after their expiry and
 * the controller's certificate renewed at half its life, the contexts
 * following; and a rotation, started, persisted half-way, and finished,
 * with the chains a peer of either CA verifies.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <uthash.h>
#include <openssl/ssl.h>

#include "ca.h"
#include "errors.h"
#include "log.h"
#include "model.h"
#include "pbutil.h"
#include "pki.h"
#include "store.h"
#include "tls.h"

#define CLUSTER "c1a55e00c1a55e00c1a55e00c1a55e00"
#define EXPIRY_MS (3600 * 1000)

typedef struct fx {
    char dir[64];
    char path[96];
    store_t *st;
    model_t m;      /* the model the CA seals its rows into */
} fx_t;

static int64_t now_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    char err[256];

    if (!fx)
        return -1;
    log_init("test", LOG_ERROR);
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/skiff-test-ca-XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    snprintf(fx->path, sizeof(fx->path), "%s/state.db", fx->dir);
    if (!(fx->st = store_sqlite_open(NULL, fx->path, err, sizeof(err))))
        return -1;
    model_init(&fx->m);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    char p[128];

    store_close(fx->st);
    model_free(&fx->m);
    unlink(fx->path);
    snprintf(p, sizeof(p), "%s-wal", fx->path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", fx->path);
    unlink(p);
    rmdir(fx->dir);
    free(fx);
    return 0;
}

/* Commits the model's marked rows, as ctl_seal does. */
static void commit_rows(fx_t *fx)
{
    store_batch_t *b = store_batch_new();
    char err[256];

    assert_non_null(b);
    for (model_row_t *r = model_rows_take_dirty(&fx->m), *next; r; r = next) {
        next = r->dirty_next;
        assert_int_equal(r->value ? store_put_row(b, r->table, r->key, r->value, r->len)
                                  : store_delete_row(b, r->table, r->key),
                         0);
        model_row_sealed(&fx->m, r);
    }
    if (store_sqlite_commit_now(fx->st, b, err, sizeof(err)))
        fail_msg("commit: %s", err);
    store_batch_free(b);
}

/* Writes what the CA marked. */
static void seal(fx_t *fx, ca_t *ca)
{
    assert_true(ca_dirty(ca));
    assert_int_equal(ca_seal(ca, &fx->m), 0);
    assert_false(ca_dirty(ca));
    commit_rows(fx);
}

/* A CA loaded from the store (made there, the first time), as a
 * controller that starts does it: the store into a model, the CA from its
 * rows. Returns the code of the load; *out the CA (NULL on failure). */
static int load_rc(fx_t *fx, ca_t **out, char *err, size_t len)
{
    ca_t *ca = ca_new(CLUSTER, EXPIRY_MS, "IP:10.0.0.1");
    model_t m;
    int rc;

    assert_non_null(ca);
    model_init(&m);
    rc = store_sqlite_load(fx->st, &m, err, len);
    if (!rc)
        rc = ca_reload(ca, CLUSTER, &m, NULL, 0, err, len);
    model_free(&m);
    if (rc) {
        ca_free(ca);
        ca = NULL;
    }
    *out = ca;
    return rc;
}

static ca_t *load(fx_t *fx)
{
    ca_t *ca;
    char err[256];

    if (load_rc(fx, &ca, err, sizeof(err)))
        fail_msg("load: %s", err);
    return ca;
}

/* Issues a certificate of role for id; returns it (parsed), its chain PEM
 * in *pem when pem is not NULL. */
static X509 *issue(ca_t *ca, const char *id, const char *role, const char *keep,
                   EVP_PKEY **key, char **pem)
{
    char *csr_pem = NULL, *cert = NULL, *roots = NULL, err[256];
    STACK_OF(X509) *chain;
    X509_REQ *csr;
    X509 *x;
    size_t n = 0;

    *key = pki_key_new();
    assert_int_equal(pki_csr_new(*key, "whoever", &csr_pem, &n), 0);
    csr = pki_csr_parse(csr_pem, n, err, sizeof(err));
    assert_non_null(csr);
    if (ca_issue(ca, csr, id, role, keep, &cert, &roots, err, sizeof(err)))
        fail_msg("ca_issue: %s", err);
    chain = pki_chain_parse(cert, strlen(cert), err, sizeof(err));
    assert_non_null(chain);
    x = sk_X509_shift(chain);
    sk_X509_pop_free(chain, X509_free);
    assert_non_null(strstr(roots, "BEGIN CERTIFICATE"));
    if (pem)
        *pem = cert;
    else
        free(cert);
    free(roots);
    free(csr_pem);
    X509_REQ_free(csr);
    return x;
}

static int check(ca_t *ca, X509 *x, char *why, size_t len)
{
    why[0] = '\0';
    return ca_check(ca, x, why, len);
}

static void serial_of(X509 *x, char out[PKI_SERIAL_HEX + 1])
{
    assert_int_equal(pki_serial(x, out), 0);
}

static void test_made_sealed_loaded(void **state)
{
    fx_t *fx = *state;
    ca_t *ca = load(fx), *again;
    char digest[PKI_DIGEST_HEX + 1], *cert_pem, *key_pem, *roots;
    EVP_PKEY *k;
    X509 *x;

    /* The first start: a root, marked to write. */
    assert_int_equal(strlen(ca_digest(ca)), PKI_DIGEST_HEX);
    assert_string_equal(ca_next_digest(ca), "");
    assert_false(ca_rotating(ca));
    snprintf(digest, sizeof(digest), "%s", ca_digest(ca));
    x = issue(ca, "n1", PKI_ROLE_NODE, NULL, &k, NULL);
    seal(fx, ca);
    /* The files the data dir gets. */
    assert_int_equal(ca_active_pem(ca, &cert_pem, &key_pem), 0);
    assert_non_null(strstr(cert_pem, "BEGIN CERTIFICATE"));
    assert_non_null(strstr(key_pem, "BEGIN PRIVATE KEY"));
    roots = ca_roots_pem(ca);
    assert_string_equal(roots, cert_pem);
    free(roots);
    free(cert_pem);
    free(key_pem);
    ca_free(ca);

    /* Loaded back: the same CA, the record there, nothing to write. */
    again = load(fx);
    assert_string_equal(ca_digest(again), digest);
    assert_false(ca_dirty(again));
    {
        char why[256];
        assert_int_equal(check(again, x, why, sizeof(why)), 0);
    }
    ca_free(again);
    X509_free(x);
    EVP_PKEY_free(k);
}

static void test_issue_check_revoke(void **state)
{
    fx_t *fx = *state;
    ca_t *ca = load(fx);
    EVP_PKEY *k1, *k2, *k3, *kc, *stray_key;
    X509 *a, *b, *c, *cl, *stray;
    char why[256], sa[PKI_SERIAL_HEX + 1], sb[PKI_SERIAL_HEX + 1];
    pki_name_t name;

    a = issue(ca, "n1", PKI_ROLE_NODE, NULL, &k1, NULL);
    assert_int_equal(pki_name(a, &name), 0);
    assert_string_equal(name.id, "n1");
    assert_string_equal(name.cluster, CLUSTER);
    assert_string_equal(name.role, PKI_ROLE_NODE);
    assert_true(pki_not_after_ms(a) - now_ms() <= EXPIRY_MS + 1000);
    assert_true(pki_not_after_ms(a) - now_ms() >= EXPIRY_MS - 5000);
    assert_int_equal(check(ca, a, why, sizeof(why)), 0);
    assert_true(ca_has_live(ca, "n1"));
    assert_true(ca_has_current(ca, "n1"));
    assert_false(ca_has_live(ca, "n2"));
    /* A renewal keeps the one held; the next one revokes it. */
    serial_of(a, sa);
    b = issue(ca, "n1", PKI_ROLE_NODE, sa, &k2, NULL);
    assert_int_equal(check(ca, a, why, sizeof(why)), 0);
    assert_int_equal(check(ca, b, why, sizeof(why)), 0);
    serial_of(b, sb);
    c = issue(ca, "n1", PKI_ROLE_NODE, sb, &k3, NULL);
    assert_int_equal(check(ca, a, why, sizeof(why)), 1);
    assert_string_equal(why, "the certificate of node n1 is revoked");
    assert_int_equal(check(ca, b, why, sizeof(why)), 0);
    assert_int_equal(check(ca, c, why, sizeof(why)), 0);
    /* Removed: every certificate of the node. */
    assert_int_equal(ca_revoke(ca, "n1"), 2);
    assert_int_equal(check(ca, b, why, sizeof(why)), 1);
    assert_int_equal(check(ca, c, why, sizeof(why)), 1);
    assert_false(ca_has_live(ca, "n1"));
    assert_int_equal(ca_revoke(ca, "n1"), 0);
    /* A client's: its own role. */
    cl = issue(ca, "client-1", PKI_ROLE_CLIENT, NULL, &kc, NULL);
    assert_int_equal(check(ca, cl, why, sizeof(why)), 0);
    assert_int_equal(pki_name(cl, &name), 0);
    assert_string_equal(name.role, PKI_ROLE_CLIENT);
    /* A certificate of the CA's key that it has no record of. */
    {
        pki_name_t n = { .id = "n9", .cluster = CLUSTER, .role = PKI_ROLE_NODE };
        STACK_OF(X509) *roots;
        char *pem = ca_roots_pem(ca), *key_pem, *cert_pem;
        EVP_PKEY *root_key;
        assert_int_equal(ca_active_pem(ca, &cert_pem, &key_pem), 0);
        root_key = pki_key_parse(key_pem, strlen(key_pem), why, sizeof(why));
        roots = pki_chain_parse(pem, strlen(pem), why, sizeof(why));
        stray_key = pki_key_new();
        stray = ca_sign(sk_X509_value(roots, 0), root_key, stray_key, &n, EXPIRY_MS, NULL);
        assert_non_null(stray);
        assert_int_equal(check(ca, stray, why, sizeof(why)), 1);
        assert_non_null(strstr(why, "unknown to this cluster"));
        sk_X509_pop_free(roots, X509_free);
        EVP_PKEY_free(root_key);
        free(pem);
        free(cert_pem);
        free(key_pem);
    }
    /* The revocations survive a restart. */
    seal(fx, ca);
    ca_free(ca);
    ca = load(fx);
    assert_int_equal(check(ca, a, why, sizeof(why)), 1);
    assert_int_equal(check(ca, c, why, sizeof(why)), 1);
    assert_int_equal(check(ca, cl, why, sizeof(why)), 0);
    ca_free(ca);
    X509_free(a);
    X509_free(b);
    X509_free(c);
    X509_free(cl);
    X509_free(stray);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
    EVP_PKEY_free(k3);
    EVP_PKEY_free(kc);
    EVP_PKEY_free(stray_key);
}

static void test_renew_rate_and_client_limit(void **state)
{
    fx_t *fx = *state;
    ca_t *ca = load(fx);
    EVP_PKEY *k;
    X509 *x;
    char *csr_pem = NULL, *cert = NULL, *roots = NULL, err[256];
    X509_REQ *csr;
    size_t n = 0;
    int rc = 0, issued = 0;

    assert_true(ca_may_renew(ca, "n1", now_ms())); /* none yet */
    x = issue(ca, "n1", PKI_ROLE_NODE, NULL, &k, NULL);
    assert_false(ca_may_renew(ca, "n1", now_ms()));
    assert_false(ca_may_renew(ca, "n1", now_ms() + EXPIRY_MS / 4 - 10000));
    assert_true(ca_may_renew(ca, "n1", now_ms() + EXPIRY_MS / 4 + 1000));
    X509_free(x);
    EVP_PKEY_free(k);
    /* Client certificates are bounded. */
    k = pki_key_new();
    assert_int_equal(pki_csr_new(k, "c", &csr_pem, &n), 0);
    csr = pki_csr_parse(csr_pem, n, err, sizeof(err));
    while (rc == 0 && issued <= CA_MAX_CLIENT_CERTS) {
        char id[32];
        snprintf(id, sizeof(id), "client-%d", issued);
        rc = ca_issue(ca, csr, id, PKI_ROLE_CLIENT, NULL, &cert, &roots, err, sizeof(err));
        if (rc == 0)
            issued++;
        free(cert);
        free(roots);
    }
    assert_int_equal(rc, SKIFF_ELIMIT);
    assert_int_equal(issued, CA_MAX_CLIENT_CERTS);
    assert_non_null(strstr(err, "client certificates live already"));
    /* A name too long for a certificate. */
    assert_int_equal(ca_issue(ca, csr, "0123456789012345678901234567890123456789012345678901234567890123456789",
                              PKI_ROLE_NODE, NULL, &cert, &roots, err, sizeof(err)),
                     SKIFF_EINVAL);
    X509_REQ_free(csr);
    free(csr_pem);
    EVP_PKEY_free(k);
    ca_free(ca);
}

static void test_tick_prunes_and_renews(void **state)
{
    fx_t *fx = *state;
    ca_t *ca = load(fx);
    SSL_CTX *ctx;
    X509 *before, *x;
    EVP_PKEY *k;
    char why[256], err[256];

    ctx = ca_server_ctx(ca, err, sizeof(err));
    assert_non_null(ctx);
    before = SSL_CTX_get0_certificate(ctx);
    assert_non_null(before);
    X509_up_ref(before);
    x = issue(ca, "n1", PKI_ROLE_NODE, NULL, &k, NULL);
    seal(fx, ca);
    /* Nothing to do now. */
    assert_int_equal(ca_tick(ca, now_ms()), 0);
    assert_false(ca_dirty(ca));
    /* Past half the controller's lifetime: its certificate is new, and the
     * context presents it. */
    assert_int_equal(ca_tick(ca, now_ms() + EXPIRY_MS / 2 + 1000), 1);
    assert_int_equal(X509_cmp(before, SSL_CTX_get0_certificate(ctx)) != 0, 1);
    /* Past the records' expiry: they go (and a certificate of theirs with them). */
    ca_tick(ca, now_ms() + EXPIRY_MS + 120000);
    assert_true(ca_dirty(ca));
    assert_int_equal(check(ca, x, why, sizeof(why)), 1);
    seal(fx, ca);
    ca_free(ca);
    ca = load(fx);
    assert_int_equal(check(ca, x, why, sizeof(why)), 1);
    ca_free(ca);
    SSL_CTX_free(ctx);
    X509_free(before);
    X509_free(x);
    EVP_PKEY_free(k);
}

/* A handshake of a client (no certificate) pinning pin, or trusting roots
 * (PEM), with the server context; 1 when it verifies. */
static int verifies(SSL_CTX *sctx, const char *pin, const char *roots_pem)
{
    tls_policy_t policy = { .server = 0, .peer_cert = TLS_PEER_REQUIRED,
                            .peer_role = PKI_ROLE_CONTROLLER };
    SSL_CTX *cctx;
    tls_t *c, *s;
    char err[256], buf[65536];
    int crc = 0, src = 0;
    size_t n;

    if (pin)
        snprintf(policy.pin, sizeof(policy.pin), "%s", pin);
    else
        policy.roots = pki_chain_parse(roots_pem, strlen(roots_pem), err, sizeof(err));
    cctx = tls_ctx_new(&policy, NULL, err, sizeof(err));
    assert_non_null(cctx);
    sk_X509_pop_free(policy.roots, X509_free);
    c = tls_new(cctx);
    s = tls_new(sctx);
    for (int i = 0; i < 10 && (crc == 0 || src == 0); i++) {
        if (crc == 0)
            crc = tls_handshake(c);
        while ((n = tls_out_take(c, buf, sizeof(buf))) > 0)
            tls_feed(s, buf, n);
        if (src == 0)
            src = tls_handshake(s);
        while ((n = tls_out_take(s, buf, sizeof(buf))) > 0)
            tls_feed(c, buf, n);
    }
    tls_free(c);
    tls_free(s);
    SSL_CTX_free(cctx);
    return crc == 1;
}

static void test_rotation(void **state)
{
    fx_t *fx = *state;
    ca_t *ca = load(fx);
    char old[PKI_DIGEST_HEX + 1], next[PKI_DIGEST_HEX + 1], why[256], err[256], *old_pem;
    char *n2_pem, *roots;
    EVP_PKEY *k1, *k2;
    X509 *n1, *n2;
    SSL_CTX *ctx;
    STACK_OF(X509) *chain;

    snprintf(old, sizeof(old), "%s", ca_digest(ca));
    old_pem = ca_roots_pem(ca);
    ctx = ca_server_ctx(ca, err, sizeof(err));
    n1 = issue(ca, "n1", PKI_ROLE_NODE, NULL, &k1, NULL);
    seal(fx, ca);
    assert_true(verifies(ctx, old, NULL));

    assert_int_equal(ca_rotate_start(ca, err, sizeof(err)), 0);
    assert_true(ca_rotating(ca));
    assert_int_equal(ca_rotate_start(ca, err, sizeof(err)), SKIFF_ECONFLICT);
    snprintf(next, sizeof(next), "%s", ca_next_digest(ca));
    assert_string_not_equal(next, old);
    assert_string_equal(ca_digest(ca), old); /* the tokens' until it is done */
    roots = ca_roots_pem(ca);
    chain = pki_chain_parse(roots, strlen(roots), why, sizeof(why));
    assert_int_equal(sk_X509_num(chain), 2);
    sk_X509_pop_free(chain, X509_free);
    free(roots);
    /* The controller verifies for a peer of either CA, pinned or not. */
    assert_true(verifies(ctx, old, NULL));
    assert_true(verifies(ctx, next, NULL));
    assert_true(verifies(ctx, NULL, old_pem));
    /* n1 holds an old certificate: still good, but not current. */
    assert_int_equal(check(ca, n1, why, sizeof(why)), 0);
    assert_false(ca_has_current(ca, "n1"));
    assert_true(ca_may_renew(ca, "n1", now_ms()));
    n2 = issue(ca, "n1", PKI_ROLE_NODE, NULL, &k2, &n2_pem);
    assert_true(ca_has_current(ca, "n1"));
    /* Its chain carries the cross-signed root: a peer of the old CA takes it. */
    chain = pki_chain_parse(n2_pem, strlen(n2_pem), why, sizeof(why));
    assert_int_equal(sk_X509_num(chain), 2);
    sk_X509_pop_free(chain, X509_free);
    free(n2_pem);

    /* Half-way, persisted and loaded again: still rotating. */
    seal(fx, ca);
    SSL_CTX_free(ctx);
    ca_free(ca);
    ca = load(fx);
    ctx = ca_server_ctx(ca, err, sizeof(err));
    assert_true(ca_rotating(ca));
    assert_string_equal(ca_next_digest(ca), next);
    assert_true(verifies(ctx, old, NULL));
    assert_true(verifies(ctx, next, NULL));

    assert_int_equal(ca_rotate_finish(ca, err, sizeof(err)), 0);
    assert_false(ca_rotating(ca));
    assert_string_equal(ca_digest(ca), next);
    assert_string_equal(ca_next_digest(ca), "");
    assert_false(verifies(ctx, old, NULL));
    assert_true(verifies(ctx, next, NULL));
    assert_false(verifies(ctx, NULL, old_pem));
    /* The old CA's certificates are nothing now; the new ones stay. */
    assert_int_equal(check(ca, n1, why, sizeof(why)), 1);
    assert_int_equal(check(ca, n2, why, sizeof(why)), 0);
    assert_int_equal(ca_rotate_finish(ca, err, sizeof(err)), SKIFF_EINVAL);
    seal(fx, ca);
    SSL_CTX_free(ctx);
    ca_free(ca);
    ca = load(fx);
    assert_false(ca_rotating(ca));
    assert_string_equal(ca_digest(ca), next);
    assert_int_equal(check(ca, n2, why, sizeof(why)), 0);
    ca_free(ca);
    free(old_pem);
    X509_free(n1);
    X509_free(n2);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
}

/* A root row that does not parse stops the start, naming it. */
static void test_bad_roots_refused(void **state)
{
    fx_t *fx = *state;
    ca_t *ca = load(fx), *again;
    CaRoot *copy;
    uint8_t *buf;
    size_t len;
    char err[256];

    seal(fx, ca);
    ca_free(ca);
    /* Write a root row with a broken certificate. */
    copy = PB_NEW(CaRoot);
    pb_set_str(&copy->id, "abcd");
    copy->cert_pem.data = (uint8_t *)strdup("junk");
    copy->cert_pem.len = 4;
    len = protobuf_c_message_get_packed_size(&copy->base);
    buf = malloc(len);
    protobuf_c_message_pack(&copy->base, buf);
    assert_int_equal(model_row_set(&fx->m, CA_TABLE_ROOTS, "abcd", buf, len), 0);
    commit_rows(fx);
    free(buf);
    pb_free(copy);
    assert_int_equal(load_rc(fx, &again, err, sizeof(err)), SKIFF_ESTORE);
    assert_null(again);
    assert_non_null(strstr(err, "CA abcd"));
}

/* A follower's CA, from the roots alone (what a shared store's identity
 * carries): it serves the same CA, and checks chains only, since it has no
 * records. With no root at all it says so. A root candidate is a root. */
static void test_follower_from_roots(void **state)
{
    fx_t *fx = *state;
    ca_t *leader = load(fx), *follower = ca_new(CLUSTER, EXPIRY_MS, NULL);
    model_row_t *row, *tmp;
    store_blob_t roots[4];
    size_t n = 0, len;
    EVP_PKEY *key = NULL;
    X509 *x;
    uint8_t *packed;
    char err[256], why[256], id[PKI_DIGEST_HEX + 1];

    assert_non_null(follower);
    seal(fx, leader);
    HASH_ITER(hh, fx->m.rows, row, tmp)
        if (strcmp(row->table, CA_TABLE_ROOTS) == 0 && n < 4)
            roots[n++] = (store_blob_t){ row->value, row->len };
    assert_int_equal(n, 1);
    if (ca_reload(follower, CLUSTER, NULL, roots, n, err, sizeof(err)))
        fail_msg("follower: %s", err);
    assert_string_equal(ca_digest(follower), ca_digest(leader));
    /* A node certificate the leader issued after the follower loaded. */
    x = issue(leader, "node-f", PKI_ROLE_NODE, NULL, &key, NULL);
    assert_int_equal(ca_check(leader, x, why, sizeof(why)), 0);
    assert_int_equal(ca_check(follower, x, why, sizeof(why)), 0);
    /* A leader that steps down checks chains only, too. */
    assert_int_equal(ca_revoke(leader, "node-f"), 1);
    assert_int_not_equal(ca_check(leader, x, why, sizeof(why)), 0);
    ca_follow(leader);
    assert_int_equal(ca_check(leader, x, why, sizeof(why)), 0);
    assert_int_equal(ca_reload(follower, CLUSTER, NULL, NULL, 0, err, sizeof(err)),
                     SKIFF_ENOTFOUND);
    assert_non_null(strstr(err, "no CA root"));
    assert_int_equal(ca_root_candidate(CLUSTER, &packed, &len, id, err, sizeof(err)), 0);
    roots[0] = (store_blob_t){ packed, len };
    assert_int_equal(ca_reload(follower, CLUSTER, NULL, roots, 1, err, sizeof(err)), 0);
    assert_string_equal(ca_digest(follower), id);
    free(packed);
    X509_free(x);
    EVP_PKEY_free(key);
    ca_free(follower);
    ca_free(leader);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_made_sealed_loaded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_issue_check_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renew_rate_and_client_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tick_prunes_and_renews, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_roots_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_follower_from_roots, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
