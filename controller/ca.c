/* ca: see ca.h. */
#include "ca.h"
#include "model.h"
#include "errors.h"
#include "log.h"
#include "pbutil.h"
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
#include <uthash.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#define CA_MAX_ROOTS 2
#define CA_ROOT_ROLE "skiff-ca"
#define CA_CONTROLLER_ID "controller"
#define CA_PRUNE_AFTER_MS 60000  /* a record stays this long past its expiry */

typedef struct ca_root {
    CaRoot *pb;
    X509 *cert;
    EVP_PKEY *key;
    X509 *cross;   /* CA_NEXT: its key certified by the CA_OLD root */
    int dirty;
} ca_root_t;

typedef struct ca_rec {
    CertRecord *pb;
    int dirty;
    UT_hash_handle hh; /* by serial */
} ca_rec_t;

struct ca {
    char cluster[PKI_NAME_MAX + 1];
    int64_t expiry_ms;
    char *sans;
    ca_root_t roots[CA_MAX_ROOTS];
    size_t n_roots;
    char **dropped_roots;   /* ids of root rows to delete */
    size_t n_dropped_roots;
    ca_rec_t *recs;
    char **dropped;         /* serials of record rows to delete */
    size_t n_dropped, cap_dropped;
    int dirty;
    int chain_only;         /* a follower's: no records to check */
    /* the controller's own certificate */
    tls_creds_t own;
    int64_t own_renew_ms;
    SSL_CTX **ctxs;         /* handed out: kept current */
    size_t n_ctxs;
};

static int64_t ca_wall_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* ------------------------------------------------------------ signing */

static int ca_serial(X509 *x)
{
    unsigned char raw[16];
    BIGNUM *bn;
    int ok;

    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return 0;
    raw[0] = (unsigned char)((raw[0] & 0x7f) | 0x40); /* positive, 16 bytes */
    bn = BN_bin2bn(raw, sizeof(raw), NULL);
    ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok;
}

static X509_NAME *ca_subject(const char *cn, const char *o, const char *ou)
{
    X509_NAME *n = X509_NAME_new();

    if (n && X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
                                        -1, 0) == 1 &&
        X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)o, -1, -1,
                                   0) == 1 &&
        X509_NAME_add_entry_by_txt(n, "OU", MBSTRING_UTF8, (const unsigned char *)ou, -1, -1,
                                   0) == 1)
        return n;
    X509_NAME_free(n);
    return NULL;
}

/* Adds the extension nid = value, with issuer for the key identifiers. */
static int ca_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *e;
    int ok;

    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    if (!(e = X509V3_EXT_nconf_nid(NULL, &v3, nid, value)))
        return 0;
    ok = X509_add_ext(x, e, -1) == 1;
    X509_EXTENSION_free(e);
    return ok;
}

static int ca_ca_exts(X509 *x, X509 *issuer)
{
    return ca_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") &&
           ca_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") &&
           ca_ext(x, x, NID_subject_key_identifier, "hash") &&
           ca_ext(x, issuer, NID_authority_key_identifier, "keyid:always");
}

X509 *ca_root_new(EVP_PKEY *key, const char *cluster_id)
{
    X509 *x = X509_new();
    X509_NAME *name = NULL;
    unsigned char r[4];
    char cn[32];

    if (!x || RAND_bytes(r, sizeof(r)) != 1)
        goto out_free;
    /* A name of its own for each root, so that two roots (a rotation) are
     * never mistaken for each other when chains are built. */
    snprintf(cn, sizeof(cn), "skiff-ca-%02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
    if (!(name = ca_subject(cn, cluster_id, CA_ROOT_ROLE)) ||
        X509_set_version(x, X509_VERSION_3) != 1 || !ca_serial(x) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -60) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), (long)CA_ROOT_DAYS * 86400) ||
        X509_set_subject_name(x, name) != 1 || X509_set_issuer_name(x, name) != 1 ||
        X509_set_pubkey(x, key) != 1 || !ca_ca_exts(x, x) || X509_sign(x, key, EVP_sha256()) <= 0)
        goto out_free;
    X509_NAME_free(name);
    return x;

out_free:
    X509_NAME_free(name);
    X509_free(x);
    ERR_clear_error();
    return NULL;
}

X509 *ca_cross_sign(X509 *next, X509 *cert, EVP_PKEY *key)
{
    X509 *x = X509_new();

    if (!x || X509_set_version(x, X509_VERSION_3) != 1 || !ca_serial(x) ||
        X509_set1_notBefore(x, X509_get0_notBefore(next)) != 1 ||
        X509_set1_notAfter(x, X509_get0_notAfter(next)) != 1 ||
        X509_set_subject_name(x, X509_get_subject_name(next)) != 1 ||
        X509_set_issuer_name(x, X509_get_subject_name(cert)) != 1 ||
        X509_set_pubkey(x, X509_get0_pubkey(next)) != 1 || !ca_ca_exts(x, cert) ||
        X509_sign(x, key, EVP_sha256()) <= 0) {
        X509_free(x);
        ERR_clear_error();
        return NULL;
    }
    return x;
}

X509 *ca_sign(X509 *cert, EVP_PKEY *key, EVP_PKEY *pub, const pki_name_t *name,
              int64_t lifetime_ms, const char *sans)
{
    int64_t back_ms = lifetime_ms / 4 < 60000 ? lifetime_ms / 4 : 60000;
    const char *eku = strcmp(name->role, PKI_ROLE_CONTROLLER) == 0 ? "serverAuth,clientAuth"
                                                                   : "clientAuth";
    X509_NAME *subject = ca_subject(name->id, name->cluster, name->role);
    X509 *x = X509_new();

    if (!x || !subject || X509_set_version(x, X509_VERSION_3) != 1 || !ca_serial(x) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -(long)(back_ms / 1000)) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), (long)(lifetime_ms / 1000)) ||
        X509_set_subject_name(x, subject) != 1 ||
        X509_set_issuer_name(x, X509_get_subject_name(cert)) != 1 ||
        X509_set_pubkey(x, pub) != 1 ||
        !ca_ext(x, cert, NID_basic_constraints, "critical,CA:FALSE") ||
        !ca_ext(x, cert, NID_key_usage, "critical,digitalSignature") ||
        !ca_ext(x, cert, NID_ext_key_usage, eku) ||
        !ca_ext(x, cert, NID_subject_key_identifier, "hash") ||
        !ca_ext(x, cert, NID_authority_key_identifier, "keyid:always") ||
        (sans && *sans && !ca_ext(x, cert, NID_subject_alt_name, sans)) ||
        X509_sign(x, key, EVP_sha256()) <= 0) {
        X509_NAME_free(subject);
        X509_free(x);
        ERR_clear_error();
        return NULL;
    }
    X509_NAME_free(subject);
    return x;
}

/* ------------------------------------------------------------ state */

ca_t *ca_new(const char *cluster_id, int64_t cert_expiry_ms, const char *server_names)
{
    ca_t *ca = calloc(1, sizeof(*ca));
    char host[256], sans[1024];

    if (!ca)
        return NULL;
    snprintf(ca->cluster, sizeof(ca->cluster), "%s", cluster_id);
    ca->expiry_ms = cert_expiry_ms;
    snprintf(sans, sizeof(sans), "DNS:localhost,IP:127.0.0.1,IP:::1");
    if (gethostname(host, sizeof(host)) == 0 && (host[sizeof(host) - 1] = '\0', *host) &&
        strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") ==
            strlen(host) && strcmp(host, "localhost") != 0)
        snprintf(sans + strlen(sans), sizeof(sans) - strlen(sans), ",DNS:%s", host);
    if (server_names && *server_names)
        snprintf(sans + strlen(sans), sizeof(sans) - strlen(sans), ",%s", server_names);
    if (!(ca->sans = strdup(sans))) {
        free(ca);
        return NULL;
    }
    return ca;
}

static void ca_root_clear(ca_root_t *r)
{
    pb_free(r->pb);
    X509_free(r->cert);
    X509_free(r->cross);
    EVP_PKEY_free(r->key);
    memset(r, 0, sizeof(*r));
}

static void ca_own_clear(tls_creds_t *c)
{
    EVP_PKEY_free(c->key);
    X509_free(c->cert);
    sk_X509_pop_free(c->chain, X509_free);
    memset(c, 0, sizeof(*c));
}

void ca_free(ca_t *ca)
{
    ca_rec_t *r, *tmp;

    if (!ca)
        return;
    for (size_t i = 0; i < ca->n_roots; i++)
        ca_root_clear(&ca->roots[i]);
    for (size_t i = 0; i < ca->n_dropped_roots; i++)
        free(ca->dropped_roots[i]);
    free(ca->dropped_roots);
    HASH_ITER(hh, ca->recs, r, tmp) {
        HASH_DEL(ca->recs, r);
        pb_free(r->pb);
        free(r);
    }
    for (size_t i = 0; i < ca->n_dropped; i++)
        free(ca->dropped[i]);
    free(ca->dropped);
    ca_own_clear(&ca->own);
    for (size_t i = 0; i < ca->n_ctxs; i++)
        SSL_CTX_free(ca->ctxs[i]);
    free(ca->ctxs);
    free(ca->sans);
    free(ca);
}

/* Drops the roots and records, keeping the contexts handed out. */
static void ca_clear_rows(ca_t *ca)
{
    ca_rec_t *r, *tmp;

    for (size_t i = 0; i < ca->n_roots; i++)
        ca_root_clear(&ca->roots[i]);
    ca->n_roots = 0;
    for (size_t i = 0; i < ca->n_dropped_roots; i++)
        free(ca->dropped_roots[i]);
    ca->n_dropped_roots = 0;
    HASH_ITER(hh, ca->recs, r, tmp) {
        HASH_DEL(ca->recs, r);
        pb_free(r->pb);
        free(r);
    }
    for (size_t i = 0; i < ca->n_dropped; i++)
        free(ca->dropped[i]);
    ca->n_dropped = 0;
    ca->dirty = 0;
}

static ca_root_t *ca_root_in(ca_t *ca, CaState state)
{
    for (size_t i = 0; i < ca->n_roots; i++)
        if (ca->roots[i].pb->state == state)
            return &ca->roots[i];
    return NULL;
}

/* The root that signs: the new one during a rotation. */
static ca_root_t *ca_signer(ca_t *ca)
{
    ca_root_t *r = ca_root_in(ca, CA_NEXT);

    return r ? r : ca_root_in(ca, CA_ACTIVE);
}

/* The root the tokens carry. */
static const ca_root_t *ca_token_root(const ca_t *ca)
{
    for (size_t i = 0; i < ca->n_roots; i++)
        if (ca->roots[i].pb->state == CA_ACTIVE || ca->roots[i].pb->state == CA_OLD)
            return &ca->roots[i];
    return NULL;
}

/* Fills r's OpenSSL objects from its row. */
static int ca_root_parse(ca_root_t *r, char *err, size_t len)
{
    STACK_OF(X509) *chain;
    char why[256], digest[PKI_DIGEST_HEX + 1];

    chain = pki_chain_parse(r->pb->cert_pem.data, r->pb->cert_pem.len, why, sizeof(why));
    if (!chain) {
        snprintf(err, len, "CA %.12s: its certificate: %s", r->pb->id, why);
        return SKIFF_ESTORE;
    }
    r->cert = sk_X509_shift(chain);
    sk_X509_pop_free(chain, X509_free);
    if (!(r->key = pki_key_parse(r->pb->key_pem.data, r->pb->key_pem.len, why, sizeof(why)))) {
        snprintf(err, len, "CA %.12s: its key: %s", r->pb->id, why);
        return SKIFF_ESTORE;
    }
    if (!pki_key_matches(r->cert, r->key) || !pki_is_root(r->cert) ||
        pki_digest(r->cert, digest) || strcmp(digest, r->pb->id) != 0) {
        snprintf(err, len, "CA %.12s: its certificate, key and id do not go together",
                 r->pb->id);
        return SKIFF_ESTORE;
    }
    if (r->pb->cross_pem.len) {
        chain = pki_chain_parse(r->pb->cross_pem.data, r->pb->cross_pem.len, why, sizeof(why));
        if (!chain) {
            snprintf(err, len, "CA %.12s: its cross-signed certificate: %s", r->pb->id, why);
            return SKIFF_ESTORE;
        }
        r->cross = sk_X509_shift(chain);
        sk_X509_pop_free(chain, X509_free);
    }
    return 0;
}

int ca_load_root(ca_t *ca, CaRoot *pb, char *err, size_t errlen)
{
    ca_root_t *r;
    int rc;

    if (ca->n_roots == CA_MAX_ROOTS) {
        pb_free(pb);
        snprintf(err, errlen, "the store holds more than %d CA roots", CA_MAX_ROOTS);
        return SKIFF_ESTORE;
    }
    r = &ca->roots[ca->n_roots];
    memset(r, 0, sizeof(*r));
    r->pb = pb;
    if ((rc = ca_root_parse(r, err, errlen))) {
        ca_root_clear(r);
        return rc;
    }
    ca->n_roots++;
    return 0;
}

int ca_load_cert(ca_t *ca, CertRecord *pb)
{
    ca_rec_t *r, *old;

    if (!*pb->serial) {
        pb_free(pb);
        return 0;
    }
    if (!(r = calloc(1, sizeof(*r)))) {
        pb_free(pb);
        return -ENOMEM;
    }
    r->pb = pb;
    HASH_FIND_STR(ca->recs, pb->serial, old);
    if (old) {
        HASH_DEL(ca->recs, old);
        pb_free(old->pb);
        free(old);
    }
    HASH_ADD_KEYPTR(hh, ca->recs, pb->serial, strlen(pb->serial), r);
    return 0;
}

/* Makes a root in state, marked to write. */
static int ca_root_make(ca_t *ca, CaState state, char *err, size_t len)
{
    ca_root_t *r = &ca->roots[ca->n_roots];
    char *key_pem = NULL, *cert_pem = NULL;
    size_t key_len = 0, cert_len = 0;
    char digest[PKI_DIGEST_HEX + 1];

    if (ca->n_roots == CA_MAX_ROOTS) {
        snprintf(err, len, "too many CA roots");
        return SKIFF_ECONFLICT;
    }
    memset(r, 0, sizeof(*r));
    if (!(r->key = pki_key_new()) || !(r->cert = ca_root_new(r->key, ca->cluster)) ||
        pki_digest(r->cert, digest) || pki_key_pem(r->key, &key_pem, &key_len) ||
        pki_cert_pem(r->cert, &cert_pem, &cert_len) || !(r->pb = PB_NEW(CaRoot)) ||
        pb_set_str(&r->pb->id, digest))
        goto out_nomem;
    r->pb->state = state;
    r->pb->created_ms = ca_wall_ms();
    r->pb->cert_pem.data = (uint8_t *)cert_pem;
    r->pb->cert_pem.len = cert_len;
    r->pb->key_pem.data = (uint8_t *)key_pem;
    r->pb->key_pem.len = key_len;
    r->dirty = 1;
    ca->dirty = 1;
    ca->n_roots++;
    return 0;

out_nomem:
    if (key_pem)
        OPENSSL_cleanse(key_pem, key_len);
    free(key_pem);
    free(cert_pem);
    ca_root_clear(r);
    snprintf(err, len, "out of memory making a CA");
    return -ENOMEM;
}

/* The chain the controller presents after its certificate. */
static STACK_OF(X509) *ca_own_chain(ca_t *ca)
{
    STACK_OF(X509) *chain = sk_X509_new_null();
    ca_root_t *next = ca_root_in(ca, CA_NEXT), *old = ca_root_in(ca, CA_OLD);
    ca_root_t *active = ca_root_in(ca, CA_ACTIVE);
    X509 *add[3] = { NULL };
    size_t n = 0;

    if (!chain)
        return NULL;
    if (next && old) {
        /* The cross-signed one first: a peer that trusts (or pins) the old
         * root finds it before the new root of the same name. */
        add[n++] = next->cross;
        add[n++] = old->cert;
        add[n++] = next->cert;
    } else if (active) {
        add[n++] = active->cert;
    }
    for (size_t i = 0; i < n; i++) {
        if (!add[i])
            continue;
        if (!sk_X509_push(chain, add[i])) {
            sk_X509_pop_free(chain, X509_free);
            return NULL;
        }
        X509_up_ref(add[i]);
    }
    return chain;
}

static STACK_OF(X509) *ca_trusted(const ca_t *ca)
{
    STACK_OF(X509) *s = sk_X509_new_null();

    for (size_t i = 0; s && i < ca->n_roots; i++) {
        if (!sk_X509_push(s, ca->roots[i].cert)) {
            sk_X509_pop_free(s, X509_free);
            return NULL;
        }
        X509_up_ref(ca->roots[i].cert);
    }
    return s;
}

/* The controller's certificate, anew, and every context made here follows. */
static int ca_own_renew(ca_t *ca, char *err, size_t len)
{
    ca_root_t *signer = ca_signer(ca);
    pki_name_t name = { .id = CA_CONTROLLER_ID, .role = PKI_ROLE_CONTROLLER };
    tls_creds_t fresh = { 0 };
    STACK_OF(X509) *roots;

    snprintf(name.cluster, sizeof(name.cluster), "%s", ca->cluster);
    if (!signer || !(fresh.key = pki_key_new()) ||
        !(fresh.cert = ca_sign(signer->cert, signer->key, fresh.key, &name, ca->expiry_ms,
                               ca->sans)) ||
        !(fresh.chain = ca_own_chain(ca))) {
        ca_own_clear(&fresh);
        snprintf(err, len, "cannot make the controller's certificate");
        return -ENOMEM;
    }
    ca_own_clear(&ca->own);
    ca->own = fresh;
    ca->own_renew_ms = ca_wall_ms() + ca->expiry_ms / 2;
    roots = ca_trusted(ca);
    for (size_t i = 0; i < ca->n_ctxs; i++) {
        if (tls_ctx_set_creds(ca->ctxs[i], &ca->own, err, len))
            log_error("TLS context: %s", err);
        if (roots && tls_ctx_set_roots(ca->ctxs[i], roots))
            log_error("TLS context: cannot set its roots: out of memory");
    }
    sk_X509_pop_free(roots, X509_free);
    return 0;
}

int ca_ready(ca_t *ca, char *err, size_t errlen)
{
    int active = 0, next = 0, old = 0, rc;

    for (size_t i = 0; i < ca->n_roots; i++) {
        active += ca->roots[i].pb->state == CA_ACTIVE;
        next += ca->roots[i].pb->state == CA_NEXT;
        old += ca->roots[i].pb->state == CA_OLD;
    }
    if (ca->n_roots == 0) {
        if ((rc = ca_root_make(ca, CA_ACTIVE, err, errlen)))
            return rc;
        log_info("made the cluster CA, sha256 %s", ca->roots[0].pb->id);
    } else if (!(active == 1 && ca->n_roots == 1) &&
               !(next == 1 && old == 1 && ca->n_roots == 2)) {
        snprintf(err, errlen, "the store's CA roots are not one active one, nor an old "
                 "and a new one (%d active, %d old, %d new)", active, old, next);
        return SKIFF_ESTORE;
    } else if (next && !ca_root_in(ca, CA_NEXT)->cross) {
        snprintf(err, errlen, "the store's new CA root has no cross-signed certificate");
        return SKIFF_ESTORE;
    }
    return ca_own_renew(ca, err, errlen);
}

/* ------------------------------------------------------------ the store */

int ca_dirty(const ca_t *ca)
{
    return ca->dirty;
}

/* Sets the row table/key to msg, packed, in the model's next commit. */
static int ca_row_set(model_t *m, const char *table, const char *key,
                      const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len ? len : 1);
    int rc;

    if (!buf)
        return -ENOMEM;
    protobuf_c_message_pack(msg, buf);
    rc = model_row_set(m, table, key, buf, len);
    OPENSSL_cleanse(buf, len); /* a root's row holds its key */
    free(buf);
    return rc;
}

int ca_seal(ca_t *ca, model_t *m)
{
    ca_rec_t *r, *tmp;
    int rc = 0;

    if (!ca->dirty)
        return 0;
    for (size_t i = 0; i < ca->n_dropped_roots; i++) {
        model_row_delete(m, CA_TABLE_ROOTS, ca->dropped_roots[i]);
        free(ca->dropped_roots[i]);
    }
    ca->n_dropped_roots = 0;
    for (size_t i = 0; i < ca->n_roots; i++) {
        if (ca->roots[i].dirty)
            rc |= ca_row_set(m, CA_TABLE_ROOTS, ca->roots[i].pb->id, &ca->roots[i].pb->base);
        ca->roots[i].dirty = 0;
    }
    for (size_t i = 0; i < ca->n_dropped; i++) {
        model_row_delete(m, CA_TABLE_CERTS, ca->dropped[i]);
        free(ca->dropped[i]);
    }
    ca->n_dropped = 0;
    HASH_ITER(hh, ca->recs, r, tmp) {
        if (r->dirty)
            rc |= ca_row_set(m, CA_TABLE_CERTS, r->pb->serial, &r->pb->base);
        r->dirty = 0;
    }
    ca->dirty = 0;
    return rc ? -ENOMEM : 0;
}

void ca_follow(ca_t *ca)
{
    ca->chain_only = 1;
}

int ca_reload(ca_t *ca, const char *cluster_id, const model_t *m, const store_blob_t *roots,
              size_t n, char *err, size_t errlen)
{
    int rc = 0;

    ca_clear_rows(ca);
    snprintf(ca->cluster, sizeof(ca->cluster), "%s", cluster_id);
    ca->chain_only = m == NULL;
    if (m)
        return (rc = ca_load_model(ca, m, err, errlen)) ? rc : ca_ready(ca, err, errlen);
    for (size_t i = 0; i < n && rc == 0; i++) {
        CaRoot *pb = (CaRoot *)protobuf_c_message_unpack(&PB_DESC_CaRoot, NULL, roots[i].len,
                                                         roots[i].value);
        if (!pb) {
            snprintf(err, errlen, "a CA root of the store does not decode");
            rc = SKIFF_ESTORE;
        } else {
            rc = ca_load_root(ca, pb, err, errlen);
        }
    }
    if (rc == 0 && ca->n_roots == 0) {
        snprintf(err, errlen, "the store holds no CA root yet (the leader makes it)");
        rc = SKIFF_ENOTFOUND;
    }
    return rc ? rc : ca_ready(ca, err, errlen);
}

int ca_root_candidate(const char *cluster_id, uint8_t **packed, size_t *len,
                      char id[PKI_DIGEST_HEX + 1], char *err, size_t errlen)
{
    ca_t *ca = ca_new(cluster_id, 0, NULL);
    int rc = -ENOMEM;

    *packed = NULL;
    *len = 0;
    if (!ca) {
        snprintf(err, errlen, "out of memory making a CA");
        return rc;
    }
    if ((rc = ca_root_make(ca, CA_ACTIVE, err, errlen)) == 0) {
        *len = protobuf_c_message_get_packed_size(&ca->roots[0].pb->base);
        if ((*packed = malloc(*len ? *len : 1))) {
            protobuf_c_message_pack(&ca->roots[0].pb->base, *packed);
            snprintf(id, PKI_DIGEST_HEX + 1, "%s", ca->roots[0].pb->id);
        } else {
            snprintf(err, errlen, "out of memory making a CA");
            rc = -ENOMEM;
        }
    }
    ca_free(ca);
    return rc;
}

int ca_load_model(ca_t *ca, const model_t *m, char *err, size_t errlen)
{
    model_row_t *row, *tmp;
    int rc = 0;

    /* Roots first, then the records. */
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        HASH_ITER(hh, m->rows, row, tmp) {
            const char *want = pass == 0 ? CA_TABLE_ROOTS : CA_TABLE_CERTS;
            void *pb;
            if (!row->value || strcmp(row->table, want) != 0)
                continue;
            pb = protobuf_c_message_unpack(pass == 0 ? &PB_DESC_CaRoot : &PB_DESC_CertRecord,
                                           NULL, row->len, row->value);
            if (!pb) {
                snprintf(err, errlen, "the store's %s row %.64s does not decode", want,
                         row->key);
                rc = SKIFF_ESTORE;
            } else if (pass == 0) {
                rc = ca_load_root(ca, pb, err, errlen);
            } else if ((rc = ca_load_cert(ca, pb))) {
                snprintf(err, errlen, "out of memory");
            }
            if (rc)
                break;
        }
    }
    return rc;
}

/* ------------------------------------------------------------ reading */

const char *ca_digest(const ca_t *ca)
{
    const ca_root_t *r = ca_token_root(ca);

    return r ? r->pb->id : "";
}

const char *ca_next_digest(const ca_t *ca)
{
    for (size_t i = 0; i < ca->n_roots; i++)
        if (ca->roots[i].pb->state == CA_NEXT)
            return ca->roots[i].pb->id;
    return "";
}

int64_t ca_cert_expiry_ms(const ca_t *ca)
{
    return ca->expiry_ms;
}

char *ca_roots_pem(const ca_t *ca)
{
    char *pem = NULL;

    for (size_t i = 0; i < ca->n_roots; i++) {
        if (pki_cert_pem(ca->roots[i].cert, &pem, NULL)) {
            free(pem);
            return NULL;
        }
    }
    return pem;
}

int ca_active_pem(const ca_t *ca, char **cert_pem, char **key_pem)
{
    const ca_root_t *r = ca_token_root(ca);

    *cert_pem = *key_pem = NULL;
    if (!r)
        return SKIFF_EINVAL;
    if (pki_cert_pem(r->cert, cert_pem, NULL) || pki_key_pem(r->key, key_pem, NULL)) {
        free(*cert_pem);
        free(*key_pem);
        *cert_pem = *key_pem = NULL;
        return -ENOMEM;
    }
    return 0;
}

/* ------------------------------------------------------------ records */

static int ca_drop_serial(ca_t *ca, const char *serial)
{
    char *s = strdup(serial);

    if (!s)
        return -ENOMEM;
    if (ca->n_dropped == ca->cap_dropped) {
        size_t cap = ca->cap_dropped ? ca->cap_dropped * 2 : 16;
        char **grown = realloc(ca->dropped, cap * sizeof(*grown));
        if (!grown) {
            free(s);
            return -ENOMEM;
        }
        ca->dropped = grown;
        ca->cap_dropped = cap;
    }
    ca->dropped[ca->n_dropped++] = s;
    ca->dirty = 1;
    return 0;
}

static void ca_rec_drop(ca_t *ca, ca_rec_t *r)
{
    if (ca_drop_serial(ca, r->pb->serial))
        log_error("CA: out of memory: the record of %s stays in the store", r->pb->serial);
    HASH_DEL(ca->recs, r);
    pb_free(r->pb);
    free(r);
}

static void ca_rec_revoke(ca_t *ca, ca_rec_t *r, int64_t now)
{
    if (r->pb->revoked)
        return;
    r->pb->revoked = 1;
    r->pb->revoked_ms = now;
    r->dirty = 1;
    ca->dirty = 1;
}

int ca_issue(ca_t *ca, X509_REQ *csr, const char *id, const char *role, const char *keep,
             char **cert_pem, char **roots_pem, char *err, size_t errlen)
{
    ca_root_t *signer = ca_signer(ca), *next = ca_root_in(ca, CA_NEXT);
    pki_name_t name;
    X509 *x = NULL;
    ca_rec_t *r = NULL, *it, *tmp;
    char serial[PKI_SERIAL_HEX + 1];
    int64_t now = ca_wall_ms();
    unsigned clients = 0;

    *cert_pem = *roots_pem = NULL;
    if (!signer) {
        snprintf(err, errlen, "the CA is not ready");
        return SKIFF_EINVAL;
    }
    if (strlen(id) > PKI_NAME_MAX || strlen(role) > PKI_NAME_MAX) {
        snprintf(err, errlen, "an id or role too long for a certificate");
        return SKIFF_EINVAL;
    }
    if (strcmp(role, PKI_ROLE_CLIENT) == 0) {
        HASH_ITER(hh, ca->recs, it, tmp)
            clients += strcmp(it->pb->role, PKI_ROLE_CLIENT) == 0 && !it->pb->revoked;
        if (clients >= CA_MAX_CLIENT_CERTS) {
            snprintf(err, errlen, "%u client certificates live already (the most there may be)",
                     clients);
            return SKIFF_ELIMIT;
        }
    }
    snprintf(name.id, sizeof(name.id), "%s", id);
    snprintf(name.cluster, sizeof(name.cluster), "%s", ca->cluster);
    snprintf(name.role, sizeof(name.role), "%s", role);
    if (!(x = ca_sign(signer->cert, signer->key, X509_REQ_get0_pubkey(csr), &name,
                      ca->expiry_ms, NULL)) ||
        pki_serial(x, serial) || !(r = calloc(1, sizeof(*r))) || !(r->pb = PB_NEW(CertRecord)) ||
        pb_set_str(&r->pb->serial, serial) || pb_set_str(&r->pb->node_id, id) ||
        pb_set_str(&r->pb->role, role) || pb_set_str(&r->pb->issuer, signer->pb->id) ||
        pki_cert_pem(x, cert_pem, NULL) ||
        (next && next->cross && pki_cert_pem(next->cross, cert_pem, NULL)) ||
        !(*roots_pem = ca_roots_pem(ca)))
        goto out_nomem;
    r->pb->issued_ms = now;
    r->pb->not_after_ms = pki_not_after_ms(x);
    r->dirty = 1;
    /* The holder's older certificates go: only the one it holds now (keep)
     * and the new one stay good. */
    if (strcmp(role, PKI_ROLE_NODE) == 0) {
        HASH_ITER(hh, ca->recs, it, tmp)
            if (strcmp(it->pb->node_id, id) == 0 && strcmp(it->pb->role, role) == 0 &&
                (!keep || strcmp(it->pb->serial, keep) != 0))
                ca_rec_revoke(ca, it, now);
    }
    HASH_ADD_KEYPTR(hh, ca->recs, r->pb->serial, strlen(r->pb->serial), r);
    ca->dirty = 1;
    X509_free(x);
    return 0;

out_nomem:
    X509_free(x);
    if (r)
        pb_free(r->pb);
    free(r);
    free(*cert_pem);
    free(*roots_pem);
    *cert_pem = *roots_pem = NULL;
    snprintf(err, errlen, "cannot issue a certificate: out of memory");
    return -ENOMEM;
}

/* The newest live record of id in role. */
static const ca_rec_t *ca_latest(const ca_t *ca, const char *id, const char *role)
{
    const ca_rec_t *r, *best = NULL;

    for (r = ca->recs; r; r = r->hh.next)
        if (!r->pb->revoked && strcmp(r->pb->node_id, id) == 0 &&
            strcmp(r->pb->role, role) == 0 && (!best || r->pb->issued_ms > best->pb->issued_ms))
            best = r;
    return best;
}

int ca_has_current(const ca_t *ca, const char *id)
{
    const ca_root_t *signer = ca_signer((ca_t *)ca);
    const ca_rec_t *r;

    for (r = ca->recs; signer && r; r = r->hh.next)
        if (!r->pb->revoked && strcmp(r->pb->node_id, id) == 0 &&
            strcmp(r->pb->role, PKI_ROLE_NODE) == 0 && strcmp(r->pb->issuer, signer->pb->id) == 0)
            return 1;
    return 0;
}

int ca_has_live(const ca_t *ca, const char *id)
{
    return ca_latest(ca, id, PKI_ROLE_NODE) != NULL;
}

int ca_may_renew(const ca_t *ca, const char *id, int64_t now_ms)
{
    const ca_rec_t *r = ca_latest(ca, id, PKI_ROLE_NODE);

    if (!r || !ca_has_current(ca, id))
        return 1;
    return now_ms - r->pb->issued_ms >= ca->expiry_ms / 4;
}

int ca_revoke(ca_t *ca, const char *id)
{
    ca_rec_t *r, *tmp;
    int64_t now = ca_wall_ms();
    int n = 0;

    HASH_ITER(hh, ca->recs, r, tmp) {
        if (strcmp(r->pb->node_id, id) == 0 && !r->pb->revoked) {
            ca_rec_revoke(ca, r, now);
            n++;
        }
    }
    return n;
}

int ca_check(void *arg, X509 *leaf, char *why, size_t len)
{
    ca_t *ca = arg;
    char serial[PKI_SERIAL_HEX + 1];
    pki_name_t name;
    ca_rec_t *r = NULL;

    if (pki_serial(leaf, serial) || pki_name(leaf, &name)) {
        snprintf(why, len, "the certificate is not one of skiff's");
        return 1;
    }
    if (ca->chain_only)
        return 0;
    HASH_FIND_STR(ca->recs, serial, r);
    if (!r) {
        snprintf(why, len, "the certificate (serial %.16s...) is unknown to this cluster", serial);
        return 1;
    }
    if (r->pb->revoked) {
        snprintf(why, len, "the certificate of %s %s is revoked",
                 strcmp(name.role, PKI_ROLE_NODE) == 0 ? "node" : name.role, name.id);
        return 1;
    }
    if (strcmp(r->pb->node_id, name.id) != 0 || strcmp(r->pb->role, name.role) != 0) {
        snprintf(why, len, "the certificate (serial %.16s...) does not name what was issued",
                 serial);
        return 1;
    }
    return 0;
}

int ca_tick(ca_t *ca, int64_t now_ms)
{
    ca_rec_t *r, *tmp;
    char err[256];

    HASH_ITER(hh, ca->recs, r, tmp)
        if (r->pb->not_after_ms && r->pb->not_after_ms + CA_PRUNE_AFTER_MS < now_ms)
            ca_rec_drop(ca, r);
    if (now_ms < ca->own_renew_ms)
        return 0;
    if (ca_own_renew(ca, err, sizeof(err))) {
        log_error("CA: %s; trying again in a minute", err);
        ca->own_renew_ms = now_ms + 60000;
        return 0;
    }
    log_info("the controller's certificate was renewed");
    return 1;
}

/* ------------------------------------------------------------ contexts */

static SSL_CTX *ca_ctx(ca_t *ca, enum tls_peer_cert peer_cert, const char *role, char *err,
                       size_t errlen)
{
    tls_policy_t policy = {
        .server = 1,
        .peer_cert = peer_cert,
        .peer_role = role,
        .peer_cluster = ca->cluster,
        .check = ca_check,
        .check_arg = ca,
    };
    SSL_CTX **grown, *ctx;

    if (!(policy.roots = ca_trusted(ca))) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ctx = tls_ctx_new(&policy, &ca->own, err, errlen);
    sk_X509_pop_free(policy.roots, X509_free);
    if (!ctx)
        return NULL;
    if (!(grown = realloc(ca->ctxs, (ca->n_ctxs + 1) * sizeof(*grown)))) {
        SSL_CTX_free(ctx);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ca->ctxs = grown;
    ca->ctxs[ca->n_ctxs++] = ctx;
    SSL_CTX_up_ref(ctx); /* one for the caller, one kept */
    return ctx;
}

SSL_CTX *ca_server_ctx(ca_t *ca, char *err, size_t errlen)
{
    return ca_ctx(ca, TLS_PEER_OPTIONAL, PKI_ROLE_NODE, err, errlen);
}

SSL_CTX *ca_client_auth_ctx(ca_t *ca, char *err, size_t errlen)
{
    return ca_ctx(ca, TLS_PEER_REQUIRED, PKI_ROLE_CLIENT, err, errlen);
}

/* ------------------------------------------------------------ rotation */

int ca_rotating(const ca_t *ca)
{
    return ca->n_roots == 2;
}

int ca_rotate_start(ca_t *ca, char *err, size_t errlen)
{
    ca_root_t *active = ca_root_in(ca, CA_ACTIVE), *next;
    char *cross_pem = NULL;
    size_t cross_len = 0;
    int rc;

    if (ca_rotating(ca) || !active) {
        snprintf(err, errlen, "a CA rotation is under way already (to sha256 %.12s...)",
                 ca_next_digest(ca));
        return SKIFF_ECONFLICT;
    }
    if ((rc = ca_root_make(ca, CA_NEXT, err, errlen)))
        return rc;
    active = ca_root_in(ca, CA_ACTIVE);
    next = ca_root_in(ca, CA_NEXT);
    if (!(next->cross = ca_cross_sign(next->cert, active->cert, active->key)) ||
        pki_cert_pem(next->cross, &cross_pem, &cross_len)) {
        ca->n_roots--;
        ca_root_clear(next);
        snprintf(err, errlen, "cannot cross-sign the new CA: out of memory");
        return -ENOMEM;
    }
    next->pb->cross_pem.data = (uint8_t *)cross_pem;
    next->pb->cross_pem.len = cross_len;
    active->pb->state = CA_OLD;
    active->dirty = 1;
    ca->dirty = 1;
    log_info("CA rotation: new CA sha256 %s, cross-signed by %s", next->pb->id,
             active->pb->id);
    return ca_own_renew(ca, err, errlen);
}

int ca_rotate_finish(ca_t *ca, char *err, size_t errlen)
{
    ca_root_t *old = ca_root_in(ca, CA_OLD), *next = ca_root_in(ca, CA_NEXT);
    char **grown, *id;
    ca_rec_t *r, *tmp;

    if (!old || !next) {
        snprintf(err, errlen, "no CA rotation is under way");
        return SKIFF_EINVAL;
    }
    if (!(id = strdup(old->pb->id)) ||
        !(grown = realloc(ca->dropped_roots, (ca->n_dropped_roots + 1) * sizeof(*grown)))) {
        free(id);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    ca->dropped_roots = grown;
    ca->dropped_roots[ca->n_dropped_roots++] = id;
    /* Certificates of the old root are worth nothing from here on. */
    HASH_ITER(hh, ca->recs, r, tmp)
        if (strcmp(r->pb->issuer, id) == 0)
            ca_rec_drop(ca, r);
    next->pb->state = CA_ACTIVE;
    free(next->pb->cross_pem.data);
    next->pb->cross_pem.data = NULL;
    next->pb->cross_pem.len = 0;
    X509_free(next->cross);
    next->cross = NULL;
    next->dirty = 1;
    ca_root_clear(old);
    if (old == &ca->roots[0])
        ca->roots[0] = ca->roots[1];
    memset(&ca->roots[1], 0, sizeof(ca->roots[1]));
    ca->n_roots = 1;
    ca->dirty = 1;
    log_info("CA rotation done: the CA is sha256 %s", ca->roots[0].pb->id);
    return ca_own_renew(ca, err, errlen);
}
