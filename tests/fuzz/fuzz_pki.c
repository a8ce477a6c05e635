/* fuzz_pki: what a peer or a file gives the certificate code: requests
 * (NodeJoin, CertRenew, ClientCert carry one), chains (NodeJoinReply,
 * CertIssued, CaUpdate, a state dir, --tls-ca), private keys (a state dir)
 * and tokens (files, the environment).
 *
 * The first byte picks the parser, the rest is its input:
 *   0  pki_csr_parse; what parses has a P-256 key that verifies its own
 *      signature (checked again here) and gets a certificate request name;
 *   1  pki_chain_parse; each certificate of what parses goes through
 *      pki_digest, pki_serial, pki_name, the validity and pki_is_root, and
 *      the chain's PEM parses back to as many certificates;
 *   2  pki_key_parse; what parses is a P-256 key whose PEM parses back;
 *   3  token_parse; what parses formats to a token that parses back to
 *      the same digest and secret.
 * Checked: no crash, leak or read past the input (ASan, UBSan); a failure
 * always says why; the round trips above hold.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "pki.h"
#include "token.h"

static void fz_need_reason(const char *err)
{
    if (!*err)
        abort();
}

static void fz_csr(const uint8_t *d, size_t n)
{
    char err[256] = "";
    X509_REQ *req = pki_csr_parse(d, n, err, sizeof(err));
    EVP_PKEY *pub;

    if (!req) {
        fz_need_reason(err);
        return;
    }
    pub = X509_REQ_get0_pubkey(req);
    if (!pub || !EVP_PKEY_is_a(pub, "EC") || X509_REQ_verify(req, pub) != 1)
        abort();
    X509_REQ_free(req);
}

static void fz_chain(const uint8_t *d, size_t n)
{
    char err[256] = "", digest[PKI_DIGEST_HEX + 1], serial[PKI_SERIAL_HEX + 1];
    STACK_OF(X509) *chain = pki_chain_parse(d, n, err, sizeof(err)), *again;
    char *pem = NULL;
    size_t len = 0;
    pki_name_t name;

    if (!chain) {
        fz_need_reason(err);
        return;
    }
    if (sk_X509_num(chain) < 1 || sk_X509_num(chain) > PKI_MAX_CHAIN)
        abort();
    for (int i = 0; i < sk_X509_num(chain); i++) {
        X509 *x = sk_X509_value(chain, i);
        if (pki_digest(x, digest) == 0 && strlen(digest) != PKI_DIGEST_HEX)
            abort();
        if (pki_serial(x, serial) == 0 && strlen(serial) > PKI_SERIAL_HEX)
            abort();
        if (pki_name(x, &name) == 0 && (strlen(name.id) > PKI_NAME_MAX ||
                                       strlen(name.cluster) > PKI_NAME_MAX ||
                                       strlen(name.role) > PKI_NAME_MAX))
            abort();
        (void)pki_not_before_ms(x);
        (void)pki_not_after_ms(x);
        (void)pki_is_root(x);
        if (pki_cert_pem(x, &pem, &len))
            abort();
    }
    if (len <= PKI_MAX_PEM) {
        again = pki_chain_parse(pem, len, err, sizeof(err));
        if (!again || sk_X509_num(again) != sk_X509_num(chain))
            abort();
        sk_X509_pop_free(again, X509_free);
    }
    free(pem);
    sk_X509_pop_free(chain, X509_free);
}

static void fz_key(const uint8_t *d, size_t n)
{
    char err[256] = "", *pem = NULL;
    EVP_PKEY *key = pki_key_parse(d, n, err, sizeof(err)), *again;
    size_t len = 0;

    if (!key) {
        fz_need_reason(err);
        return;
    }
    if (!EVP_PKEY_is_a(key, "EC") || pki_key_pem(key, &pem, &len))
        abort();
    again = pki_key_parse(pem, len, err, sizeof(err));
    if (!again || EVP_PKEY_eq(key, again) != 1)
        abort();
    EVP_PKEY_free(again);
    EVP_PKEY_free(key);
    free(pem);
}

static void fz_token(const uint8_t *d, size_t n)
{
    char *s = malloc(n + 1), err[256] = "", out[TOKEN_LEN + 1];
    token_t t, back;

    if (!s)
        return;
    memcpy(s, d, n);
    s[n] = '\0';
    if (token_parse(s, &t, err, sizeof(err))) {
        fz_need_reason(err);
    } else {
        token_format(&t, out);
        if (strlen(out) != TOKEN_LEN || token_parse(out, &back, err, sizeof(err)) ||
            strcmp(t.digest, back.digest) || strcmp(t.secret, back.secret))
            abort();
    }
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] & 3) {
    case 0: fz_csr(data + 1, size - 1); break;
    case 1: fz_chain(data + 1, size - 1); break;
    case 2: fz_key(data + 1, size - 1); break;
    default: fz_token(data + 1, size - 1); break;
    }
    ERR_clear_error();
    return 0;
}
