/* ca: the cluster's certificate authority, in the controller.
 *
 * It holds the CA roots (normally one; two during a rotation), the record
 * of every certificate it issued (serial, holder, role, expiry, revoked)
 * and the controller's own TLS certificate, which it makes at every start
 * and renews at half its life. Its persistence goes through the
 * controller's store like everything else, as the model's rows of two
 * named tables (ca_roots: root id -> CaRoot, certs: serial -> CertRecord):
 * ca_load_model takes them at start (or when a controller starts to lead),
 * the functions that change something mark the rows, and ca_seal() puts
 * the marked rows into the model's next commit, so that several
 * controllers sharing one store share one CA. A follower knows the roots
 * only (they come with the store's identity): ca_reload. Nothing here does I/O; the
 * files of the data dir (ca.pem, ca-key.pem, the tokens) are tokens.c's.
 *
 * A certificate is good when it chains to a trusted root, has not expired,
 * its serial has a record (so that a removed node's revocation can't be
 * skipped) and that record is not revoked: ca_check(), the check of every
 * TLS context made here.
 *
 * Rotation (skiff cluster ca --rotate): a new root is made (CA_NEXT) and
 * cross-signed by the current one (which becomes CA_OLD). Both are trusted,
 * the new one signs, and the controller presents [its certificate, the
 * cross-signed one, the old root, the new root], which verifies for a peer
 * that trusts either root (or pins either digest). Agents are asked to
 * trust both and to renew; when every ready node holds a certificate of
 * the new root, ca_rotate_finish() drops the old one: the tokens then carry
 * the new digest.
 */
#ifndef SKIFF_CA_H
#define SKIFF_CA_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "pki.h"
#include "skiff_pb.h"
#include "store.h"

struct model;

#define CA_ROOT_DAYS 3650
#define CA_TABLE_ROOTS "ca_roots"   /* the store's named tables (store.h) */
#define CA_TABLE_CERTS "certs"
#define CA_MAX_CLIENT_CERTS 1000    /* live client certificates, at most */

typedef struct ca ca_t;

/* ---------------------------------------------------- signing, pure */

/* A self-signed CA certificate for key, for cluster_id, valid from now for
 * CA_ROOT_DAYS. NULL when out of memory. */
X509 *ca_root_new(EVP_PKEY *key, const char *cluster_id);

/* A certificate of next's key and name, signed by (cert, key): the
 * cross-signed root of a rotation. */
X509 *ca_cross_sign(X509 *next, X509 *cert, EVP_PKEY *key);

/* A certificate for pub naming name (pki.h), valid from now (backdated by a
 * quarter of its life, at most a minute, for clocks that differ) for
 * lifetime_ms, with a random serial, signed by (cert, key). sans: extra
 * subject alternative names ("IP:127.0.0.1,DNS:localhost"), or NULL. */
X509 *ca_sign(X509 *cert, EVP_PKEY *key, EVP_PKEY *pub, const pki_name_t *name,
              int64_t lifetime_ms, const char *sans);

/* ---------------------------------------------------- the authority */

/* A CA for cluster_id, empty until the rows are loaded and ca_ready().
 * server_names: the controller certificate's alternative names (NULL: the
 * defaults, localhost and the loopback addresses). */
ca_t *ca_new(const char *cluster_id, int64_t cert_expiry_ms, const char *server_names);
void ca_free(ca_t *ca);

/* Rows from the store: pb is adopted (freed on failure too). */
int ca_load_root(ca_t *ca, CaRoot *pb, char *err, size_t errlen);
int ca_load_cert(ca_t *ca, CertRecord *pb);

/* After loading: makes the first root when the store had none (its row
 * marked), checks the roots, and makes the controller's certificate.
 * Returns 0, or a negative code with err set. */
int ca_ready(ca_t *ca, char *err, size_t errlen);

/* The roots and records among the model's rows (CA_TABLE_ROOTS,
 * CA_TABLE_CERTS). Returns 0, or SKIFF_ESTORE / -ENOMEM with err set. */
int ca_load_model(ca_t *ca, const struct model *m, char *err, size_t errlen);

/* 1 when rows wait to be written; ca_seal() sets them in the model's next
 * commit and clears the marks. Returns 0 or -ENOMEM. */
int ca_dirty(const ca_t *ca);
int ca_seal(ca_t *ca, struct model *m);

/* Loads the CA again (the contexts handed out follow it): from the model's
 * rows (m: a controller that starts to lead; the first root is made when
 * there is none), or, m NULL, from the roots alone (roots: packed CaRoot
 * values, as a shared store's identity carries them) for a follower, which
 * has no records: then a certificate that chains to a root passes
 * ca_check (a follower only redirects). Returns 0, SKIFF_ENOTFOUND (no
 * root yet), or another negative code, with err set. */
int ca_reload(ca_t *ca, const char *cluster_id, const struct model *m,
              const store_blob_t *roots, size_t n, char *err, size_t errlen);

/* A leader that steps down: its records go stale, it checks chains only
 * (as after ca_reload without a model), until it leads again. */
void ca_follow(ca_t *ca);

/* A new CA root for cluster_id, packed as a CaRoot (malloc'd; it holds the
 * key: cleanse before freeing), and its id: what a controller offers a
 * shared store that has none. Returns 0 or a negative code with err set. */
int ca_root_candidate(const char *cluster_id, uint8_t **packed, size_t *len,
                      char id[PKI_DIGEST_HEX + 1], char *err, size_t errlen);

/* The digest of the root the tokens carry (the active one; during a
 * rotation still the old one), and during a rotation the new one's ("" when
 * none). */
const char *ca_digest(const ca_t *ca);
const char *ca_next_digest(const ca_t *ca);
int64_t ca_cert_expiry_ms(const ca_t *ca);

/* PEM of the roots a peer must trust now (both during a rotation), and of
 * the active root with its key (for the data dir), malloc'd. */
char *ca_roots_pem(const ca_t *ca);
int ca_active_pem(const ca_t *ca, char **cert_pem, char **key_pem);

/* Issues a certificate for the key of csr (already checked by
 * pki_csr_parse), naming id in role; a node's other certificates but keep
 * (its current one, or NULL) are revoked. *cert_pem is the certificate
 * with its chain, *roots_pem what to trust (ca_roots_pem); both malloc'd.
 * Returns 0, SKIFF_ELIMIT (too many client certificates), or -ENOMEM. */
int ca_issue(ca_t *ca, X509_REQ *csr, const char *id, const char *role, const char *keep,
             char **cert_pem, char **roots_pem, char *err, size_t errlen);

/* 1 when a node may renew now: its last certificate is at least a quarter
 * of a lifetime old, or not of the signing root (a rotation). */
int ca_may_renew(const ca_t *ca, const char *id, int64_t now_ms);

/* 1 when id holds a live certificate of the signing root. */
int ca_has_current(const ca_t *ca, const char *id);

/* 1 when node id holds any live (unrevoked) certificate. */
int ca_has_live(const ca_t *ca, const char *id);

/* Revokes every certificate of id. Returns how many. */
int ca_revoke(ca_t *ca, const char *id);

/* The check of the contexts (tls_check_fn): the serial has a record, not
 * revoked, for the subject the certificate names. */
int ca_check(void *arg, X509 *leaf, char *why, size_t len);

/* Drops records past their expiry and renews the controller's certificate
 * at half its life. Returns 1 when the controller's certificate changed. */
int ca_tick(ca_t *ca, int64_t now_ms);

/* The RPC listener's context: the controller's certificate, a client
 * certificate optional (clients say hello with the admin token), and when
 * one comes it must be a node's of this cluster, good by ca_check. The
 * context follows renewals and rotations; the caller owns a reference. */
SSL_CTX *ca_server_ctx(ca_t *ca, char *err, size_t errlen);

/* For the Docker API listener: the controller's certificate, and a client
 * certificate required, a client's (skiff cluster client-cert) of this
 * cluster, good by ca_check. Follows renewals and rotations; the caller
 * owns a reference. */
SSL_CTX *ca_client_auth_ctx(ca_t *ca, char *err, size_t errlen);

/* ---------------------------------------------------- rotation */

int ca_rotating(const ca_t *ca);
/* Makes the new root, cross-signed; returns 0, SKIFF_ECONFLICT when a
 * rotation is under way, or -ENOMEM. */
int ca_rotate_start(ca_t *ca, char *err, size_t errlen);
/* Drops the old root: the new one is the active root. */
int ca_rotate_finish(ca_t *ca, char *err, size_t errlen);

#endif
