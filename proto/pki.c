/* pki: see pki.h. */
#include "pki.h"
#include "errors.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

static int pki_fail(char *err, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int pki_fail(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
    ERR_clear_error();
    return SKIFF_EINVAL;
}

const char *pki_openssl_error(const char *fallback, char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;

    snprintf(buf, len, "%s", r ? r : fallback);
    ERR_clear_error();
    return buf;
}

EVP_PKEY *pki_key_new(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

    ERR_clear_error();
    return k;
}

/* The bytes of a memory BIO as a malloc'd string. */
static int pki_bio_take(BIO *b, char **out, size_t *outlen)
{
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s;

    if (n < 0 || !(s = malloc((size_t)n + 1)))
        return -ENOMEM;
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    *out = s;
    if (outlen)
        *outlen = (size_t)n;
    return 0;
}

int pki_key_pem(EVP_PKEY *key, char **pem, size_t *len)
{
    BIO *b = BIO_new(BIO_s_secmem());
    int rc = -ENOMEM;

    if (!b)
        b = BIO_new(BIO_s_mem());
    if (b && PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) == 1)
        rc = pki_bio_take(b, pem, len);
    BIO_free(b);
    ERR_clear_error();
    return rc;
}

/* A read-only BIO on at most PKI_MAX_PEM bytes of pem. */
static BIO *pki_bio_in(const void *pem, size_t len, char *err, size_t errlen)
{
    BIO *b;

    if (!pem || len == 0) {
        pki_fail(err, errlen, "empty");
        return NULL;
    }
    if (len > PKI_MAX_PEM) {
        pki_fail(err, errlen, "too large (%zu bytes; at most %zu)", len, PKI_MAX_PEM);
        return NULL;
    }
    b = BIO_new_mem_buf(pem, (int)len);
    if (!b)
        pki_fail(err, errlen, "out of memory");
    return b;
}

/* 1 when key is an EC key on P-256. */
static int pki_key_is_p256(EVP_PKEY *key)
{
    char group[64] = "";
    size_t n = 0;

    if (!key || !EVP_PKEY_is_a(key, "EC"))
        return 0;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                       &n) != 1) {
        ERR_clear_error();
        return 0;
    }
    return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0;
}

EVP_PKEY *pki_key_parse(const void *pem, size_t len, char *err, size_t errlen)
{
    BIO *b = pki_bio_in(pem, len, err, errlen);
    char why[160];
    EVP_PKEY *k;

    if (!b)
        return NULL;
    k = PEM_read_bio_PrivateKey(b, NULL, NULL, (void *)"");
    BIO_free(b);
    if (!k) {
        pki_fail(err, errlen, "not a PEM private key (%s)", pki_openssl_error("?", why, sizeof(why)));
        return NULL;
    }
    if (!pki_key_is_p256(k)) {
        EVP_PKEY_free(k);
        pki_fail(err, errlen, "not an ECDSA P-256 key");
        return NULL;
    }
    ERR_clear_error();
    return k;
}

int pki_csr_new(EVP_PKEY *key, const char *cn, char **pem, size_t *len)
{
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_NAME_new();
    BIO *b = BIO_new(BIO_s_mem());
    int rc = -ENOMEM;

    if (!req || !name || !b)
        goto out_free;
    if (X509_REQ_set_version(req, X509_REQ_VERSION_1) != 1 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
                                   -1, 0) != 1 ||
        X509_REQ_set_subject_name(req, name) != 1 || X509_REQ_set_pubkey(req, key) != 1 ||
        X509_REQ_sign(req, key, EVP_sha256()) <= 0 || PEM_write_bio_X509_REQ(b, req) != 1)
        goto out_free;
    rc = pki_bio_take(b, pem, len);
out_free:
    BIO_free(b);
    X509_NAME_free(name);
    X509_REQ_free(req);
    ERR_clear_error();
    return rc;
}

X509_REQ *pki_csr_parse(const void *pem, size_t len, char *err, size_t errlen)
{
    BIO *b = pki_bio_in(pem, len, err, errlen);
    X509_REQ *req, *extra;
    EVP_PKEY *key;
    char why[160];

    if (!b)
        return NULL;
    req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
    if (!req) {
        BIO_free(b);
        pki_fail(err, errlen, "not a PEM certificate request (%s)",
                 pki_openssl_error("?", why, sizeof(why)));
        return NULL;
    }
    extra = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
    BIO_free(b);
    ERR_clear_error();
    if (extra) {
        X509_REQ_free(extra);
        X509_REQ_free(req);
        pki_fail(err, errlen, "more than one certificate request");
        return NULL;
    }
    key = X509_REQ_get0_pubkey(req);
    if (!pki_key_is_p256(key)) {
        X509_REQ_free(req);
        pki_fail(err, errlen, "its key is not ECDSA P-256");
        return NULL;
    }
    if (X509_REQ_verify(req, key) != 1) {
        X509_REQ_free(req);
        pki_fail(err, errlen, "its signature does not verify");
        return NULL;
    }
    ERR_clear_error();
    return req;
}

STACK_OF(X509) *pki_chain_parse(const void *pem, size_t len, char *err, size_t errlen)
{
    BIO *b = pki_bio_in(pem, len, err, errlen);
    STACK_OF(X509) *chain;
    unsigned long e;
    char why[160];
    X509 *c;

    if (!b)
        return NULL;
    if (!(chain = sk_X509_new_null())) {
        BIO_free(b);
        pki_fail(err, errlen, "out of memory");
        return NULL;
    }
    while ((c = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        if (sk_X509_num(chain) >= PKI_MAX_CHAIN || !sk_X509_push(chain, c)) {
            X509_free(c);
            BIO_free(b);
            sk_X509_pop_free(chain, X509_free);
            pki_fail(err, errlen, "more than %d certificates", PKI_MAX_CHAIN);
            return NULL;
        }
    }
    BIO_free(b);
    /* The loop ends on "no start line" at the end; anything else is wrong. */
    e = ERR_peek_last_error();
    if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        sk_X509_pop_free(chain, X509_free);
        pki_fail(err, errlen, "not PEM certificates (%s)",
                 pki_openssl_error("?", why, sizeof(why)));
        return NULL;
    }
    if (sk_X509_num(chain) == 0) {
        sk_X509_pop_free(chain, X509_free);
        pki_fail(err, errlen, "no PEM certificate in it");
        return NULL;
    }
    ERR_clear_error();
    return chain;
}

int pki_cert_pem(X509 *cert, char **pem, size_t *len)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *add, *grown;
    size_t n, old = *pem ? strlen(*pem) : 0;
    int rc = -ENOMEM;

    if (!b || PEM_write_bio_X509(b, cert) != 1 || pki_bio_take(b, &add, &n))
        goto out_free;
    grown = realloc(*pem, old + n + 1);
    if (!grown) {
        free(add);
        goto out_free;
    }
    memcpy(grown + old, add, n + 1);
    free(add);
    *pem = grown;
    if (len)
        *len = old + n;
    rc = 0;
out_free:
    BIO_free(b);
    ERR_clear_error();
    return rc;
}

static void pki_hex(const unsigned char *p, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[p[i] >> 4];
        out[2 * i + 1] = hex[p[i] & 15];
    }
    out[2 * n] = '\0';
}

int pki_digest(X509 *cert, char out[PKI_DIGEST_HEX + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    out[0] = '\0';
    if (X509_digest(cert, EVP_sha256(), md, &n) != 1 || n != PKI_DIGEST_HEX / 2) {
        ERR_clear_error();
        return -ENOMEM;
    }
    pki_hex(md, n, out);
    return 0;
}

int pki_serial(X509 *cert, char out[PKI_SERIAL_HEX + 1])
{
    const ASN1_INTEGER *a = X509_get0_serialNumber(cert);
    BIGNUM *bn = a ? ASN1_INTEGER_to_BN(a, NULL) : NULL;
    unsigned char raw[PKI_SERIAL_HEX / 2];
    int n;

    out[0] = '\0';
    if (!bn || BN_is_negative(bn) || (n = BN_num_bytes(bn)) > (int)sizeof(raw)) {
        BN_free(bn);
        ERR_clear_error();
        return SKIFF_EINVAL;
    }
    BN_bn2bin(bn, raw);
    BN_free(bn);
    pki_hex(raw, (size_t)n, out);
    if (n == 0)
        strcpy(out, "00");
    return 0;
}

/* The one entry nid of the subject, checked, into out. */
static int pki_name_entry(X509_NAME *name, int nid, char *out)
{
    int i = X509_NAME_get_index_by_NID(name, nid, -1);
    const ASN1_STRING *s;
    const unsigned char *p;
    int n;

    if (i < 0 || X509_NAME_get_index_by_NID(name, nid, i) >= 0)
        return SKIFF_EINVAL; /* none, or more than one */
    s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    n = s ? ASN1_STRING_length(s) : 0;
    p = s ? ASN1_STRING_get0_data(s) : NULL;
    if (!p || n <= 0 || n > PKI_NAME_MAX)
        return SKIFF_EINVAL;
    for (int k = 0; k < n; k++)
        if (!(p[k] >= 'a' && p[k] <= 'z') && !(p[k] >= 'A' && p[k] <= 'Z') &&
            !(p[k] >= '0' && p[k] <= '9') && !strchr("._-", p[k]))
            return SKIFF_EINVAL;
    memcpy(out, p, (size_t)n);
    out[n] = '\0';
    return 0;
}

int pki_name(X509 *cert, pki_name_t *out)
{
    X509_NAME *name = X509_get_subject_name(cert);

    memset(out, 0, sizeof(*out));
    if (!name || pki_name_entry(name, NID_commonName, out->id) ||
        pki_name_entry(name, NID_organizationName, out->cluster) ||
        pki_name_entry(name, NID_organizationalUnitName, out->role))
        return SKIFF_EINVAL;
    return 0;
}

static int64_t pki_time_ms(const ASN1_TIME *t)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1) {
        ERR_clear_error();
        return 0;
    }
    return (int64_t)timegm(&tm) * 1000;
}

int64_t pki_not_before_ms(X509 *cert)
{
    return pki_time_ms(X509_get0_notBefore(cert));
}

int64_t pki_not_after_ms(X509 *cert)
{
    return pki_time_ms(X509_get0_notAfter(cert));
}

int pki_is_root(X509 *cert)
{
    int r = X509_check_issued(cert, cert) == X509_V_OK && X509_check_ca(cert) > 0;

    ERR_clear_error();
    return r;
}

int pki_key_matches(X509 *cert, EVP_PKEY *key)
{
    EVP_PKEY *pub = X509_get0_pubkey(cert);
    int r = pub && key && EVP_PKEY_eq(pub, key) == 1;

    ERR_clear_error();
    return r;
}
