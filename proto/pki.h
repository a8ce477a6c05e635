/* pki: the keys, certificates and certificate requests of a skiff cluster,
 * on OpenSSL 3.
 *
 * Every key is ECDSA P-256. A skiff certificate names its holder in its
 * subject: CN = the holder's id (a node id for a node), O = the cluster id,
 * OU = its role (skiff-node, skiff-controller, skiff-client); a CA is
 * named by digest, the sha256 of its certificate (DER), in hex, which is
 * what the tokens carry. Certificates and requests cross the wire and sit
 * in files as PEM. The parsers here take input from peers and from disk:
 * they bound what they read, check what they parse (a request's signature,
 * its key's type) and fail with one line saying why, never crash. Nothing
 * here signs with a CA: that is the controller's (controller/ca.h). No
 * I/O but on memory.
 */
#ifndef SKIFF_PKI_H
#define SKIFF_PKI_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#define PKI_DIGEST_HEX 64        /* hex characters of a sha256 */
#define PKI_NAME_MAX 64          /* longest id, cluster id or role in a subject */
#define PKI_SERIAL_HEX 40        /* hex characters of a serial, at most */
#define PKI_MAX_PEM ((size_t)64 << 10)  /* the most PEM any parser reads */
#define PKI_MAX_CHAIN 8          /* certificates in a chain, at most */

#define PKI_ROLE_NODE "skiff-node"
#define PKI_ROLE_CONTROLLER "skiff-controller"
#define PKI_ROLE_CLIENT "skiff-client"

/* Who a certificate names. */
typedef struct pki_name {
    char id[PKI_NAME_MAX + 1];       /* CN */
    char cluster[PKI_NAME_MAX + 1];  /* O */
    char role[PKI_NAME_MAX + 1];     /* OU */
} pki_name_t;

/* A new P-256 key, or NULL (out of memory). */
EVP_PKEY *pki_key_new(void);

/* The key as PEM (PKCS#8), malloc'd and NUL-terminated, in *pem (its
 * length in *len when len is not NULL). The caller wipes and frees it.
 * Returns 0 or -ENOMEM. */
int pki_key_pem(EVP_PKEY *key, char **pem, size_t *len);

/* A private key from PEM: a P-256 key, or NULL with err saying why. */
EVP_PKEY *pki_key_parse(const void *pem, size_t len, char *err, size_t errlen);

/* A certificate request for key, its subject CN = cn (informational: the
 * CA names the holder itself), signed by key, as PEM in *pem. Returns 0,
 * or -ENOMEM. */
int pki_csr_new(EVP_PKEY *key, const char *cn, char **pem, size_t *len);

/* A certificate request from a peer: exactly one PEM request of at most
 * PKI_MAX_PEM bytes, whose signature verifies with its own key (the peer
 * holds that key), and whose key is P-256. NULL with err saying why. */
X509_REQ *pki_csr_parse(const void *pem, size_t len, char *err, size_t errlen);

/* The certificates of a PEM chain (one or more, at most PKI_MAX_CHAIN, at
 * most PKI_MAX_PEM bytes), in order. NULL with err saying why. Free with
 * sk_X509_pop_free(chain, X509_free). */
STACK_OF(X509) *pki_chain_parse(const void *pem, size_t len, char *err, size_t errlen);

/* PEM of one certificate, or of several, appended to *pem (malloc'd, grown;
 * *pem may be NULL to start). Returns 0 or -ENOMEM. */
int pki_cert_pem(X509 *cert, char **pem, size_t *len);

/* The sha256 of the certificate (DER), lowercase hex. */
int pki_digest(X509 *cert, char out[PKI_DIGEST_HEX + 1]);

/* The serial number, lowercase hex. */
int pki_serial(X509 *cert, char out[PKI_SERIAL_HEX + 1]);

/* Who the certificate names (CN, O, OU): each at most PKI_NAME_MAX bytes of
 * [A-Za-z0-9._-]. Returns 0, or SKIFF_EINVAL when it is not a skiff
 * subject. */
int pki_name(X509 *cert, pki_name_t *out);

/* Its validity, in ms since the epoch. */
int64_t pki_not_before_ms(X509 *cert);
int64_t pki_not_after_ms(X509 *cert);

/* 1 when cert is a CA that signed itself. */
int pki_is_root(X509 *cert);

/* 1 when the certificate's public key is key's. */
int pki_key_matches(X509 *cert, EVP_PKEY *key);

/* The reason OpenSSL gave for its last failure on this thread, or
 * fallback; the error queue is cleared. */
const char *pki_openssl_error(const char *fallback, char *buf, size_t len);

#endif
