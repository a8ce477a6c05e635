/* cluster: skiff cluster ca [--rotate] | client-cert DIR.
 *
 * `ca` shows the cluster CA (its digest, a rotation under way); with
 * --rotate it starts a rotation and, unless -d, follows it until every
 * ready node holds a certificate of the new CA and the controller switched
 * over, then prints the new tokens (they carry the new CA's digest).
 * `client-cert` writes a key, a client certificate of the cluster CA and
 * the CA into DIR, as Docker's clients read them (ca.pem, cert.pem,
 * key.pem), for the controller's Docker API listener.
 */
#include "cli.h"
#include "duration.h"
#include "errors.h"
#include "pbutil.h"
#include "pki.h"
#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#define CLUSTER_POLL_MS 500

static int cluster_get(client_t *c, Envelope **reply)
{
    Envelope req = PB_ENVELOPE_INIT;
    CaGet get = PB_CA_GET_INIT;

    req.msg_case = MSG_CA_GET;
    req.ca_get = &get;
    return cli_request(c, &req, MSG_CA_REPLY, reply);
}

static void cluster_print(const CaReply *r)
{
    char d[32];

    printf("CA:           sha256 %s\n", r->digest);
    if (*r->next_digest) {
        printf("Rotation:     to sha256 %s, %u of %u ready nodes renewed", r->next_digest,
               r->nodes_done, r->nodes);
        for (size_t i = 0; i < r->n_waiting; i++)
            printf("%s%s", i ? " " : "; waiting for: ", r->waiting[i]);
        printf("\n");
    } else {
        printf("Rotation:     none\n");
    }
    printf("Cert expiry:  %s\n", duration_format(r->cert_expiry_ms, d, sizeof(d)));
}

static void cluster_tokens(const CaReply *r)
{
    printf("Join token:   %s\nAdmin token:  %s\n", r->join_token, r->admin_token);
}

int cluster_ca(cli_args_t *a)
{
    Envelope req = PB_ENVELOPE_INIT, *reply = NULL;
    CaRotate rot = PB_CA_ROTATE_INIT;
    client_t *c = cli_connect(a);
    char err[512], want[PKI_DIGEST_HEX + 1];
    unsigned last = (unsigned)-1;
    int status, rc;

    if (!c)
        return CLI_ERROR;
    if (!a->rotate) {
        if ((status = cluster_get(c, &reply)) == 0)
            cluster_print(reply->ca_reply);
        goto out_close;
    }
    req.msg_case = MSG_CA_ROTATE;
    req.ca_rotate = &rot;
    if ((status = cli_request(c, &req, MSG_CA_REPLY, &reply)))
        goto out_close;
    snprintf(want, sizeof(want), "%s", reply->ca_reply->next_digest);
    if (!a->quiet)
        fprintf(stderr, "rotating the CA: sha256 %s -> %s\n", reply->ca_reply->digest, want);
    if (a->detach) {
        cluster_print(reply->ca_reply);
        goto out_close;
    }
    /* The connection made before the rotation stays good after it. */
    for (;;) {
        const CaReply *r = reply->ca_reply;
        if (!*r->next_digest && strcmp(r->digest, want) == 0)
            break;
        if (*r->next_digest && strcmp(r->next_digest, want) != 0) {
            status = cli_error(CLI_ERROR, "another CA rotation (to sha256 %.12s...) replaced "
                               "this one", r->next_digest);
            goto out_close;
        }
        if (!*r->next_digest) {
            status = cli_error(CLI_ERROR, "the rotation ended without the CA sha256 %.12s...",
                               want);
            goto out_close;
        }
        if (!a->quiet && r->nodes_done != last) {
            fprintf(stderr, "%u of %u ready nodes have a certificate of the new CA\n",
                    r->nodes_done, r->nodes);
            last = r->nodes_done;
        }
        if ((rc = client_sleep(c, CLUSTER_POLL_MS, err, sizeof(err)))) {
            status = cli_error(cli_status(rc), "%s%s", err,
                               rc == -EINTR ? " (the rotation goes on in the controller)" : "");
            goto out_close;
        }
        wire_free(reply);
        reply = NULL;
        if ((status = cluster_get(c, &reply)))
            goto out_close;
    }
    printf("CA rotated:   sha256 %s\n", reply->ca_reply->digest);
    cluster_tokens(reply->ca_reply);
out_close:
    wire_free(reply);
    client_close(c);
    return status;
}

/* Writes data to dir/name, mode, refusing to replace a file. */
static int cluster_write(const char *dir, const char *name, const void *data, size_t n,
                         mode_t mode)
{
    char path[PATH_MAX + 32];
    size_t off = 0;
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return cli_error(CLI_ERROR, "cannot write %s: %s", path, strerror(errno));
    while (off < n) {
        ssize_t w = write(fd, (const char *)data + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            cli_error(CLI_ERROR, "cannot write %s: %s", path, strerror(errno));
            close(fd);
            unlink(path);
            return CLI_ERROR;
        }
        off += (size_t)w;
    }
    if (fsync(fd) || close(fd))
        return cli_error(CLI_ERROR, "cannot write %s: %s", path, strerror(errno));
    return 0;
}

int cluster_client_cert(cli_args_t *a)
{
    const char *dir = a->argv[0];
    static const char *const names[] = { "ca.pem", "cert.pem", "key.pem" };
    Envelope req = PB_ENVELOPE_INIT, *reply = NULL;
    ClientCert cc = PB_CLIENT_CERT_INIT;
    char path[PATH_MAX + 32], *csr = NULL, *key_pem = NULL;
    size_t csr_len = 0, key_len = 0;
    EVP_PKEY *key = NULL;
    client_t *c = NULL;
    int status = CLI_OK;

    /* Nothing is asked of the controller when the files can't be written. */
    if (mkdir(dir, 0700) && errno != EEXIST)
        return cli_error(CLI_ERROR, "cannot make %s: %s", dir, strerror(errno));
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (access(path, F_OK) == 0)
            return cli_error(CLI_ERROR, "%s exists: give an empty directory", path);
    }
    if (!(key = pki_key_new()) || pki_csr_new(key, "skiff-client", &csr, &csr_len) ||
        pki_key_pem(key, &key_pem, &key_len)) {
        status = cli_error(CLI_ERROR, "out of memory");
        goto out_free;
    }
    if (!(c = cli_connect(a))) {
        status = CLI_ERROR;
        goto out_free;
    }
    cc.csr.data = (uint8_t *)csr;
    cc.csr.len = csr_len;
    req.msg_case = MSG_CLIENT_CERT;
    req.client_cert = &cc;
    if ((status = cli_request(c, &req, MSG_CERT_ISSUED, &reply)))
        goto out_free;
    if ((status = cluster_write(dir, "key.pem", key_pem, key_len, 0600)) ||
        (status = cluster_write(dir, "cert.pem", reply->cert_issued->certificate.data,
                                reply->cert_issued->certificate.len, 0644)) ||
        (status = cluster_write(dir, "ca.pem", reply->cert_issued->ca.data,
                                reply->cert_issued->ca.len, 0644)))
        goto out_free;
    printf("%s: ca.pem, cert.pem, key.pem\n", dir);
out_free:
    if (key_pem)
        OPENSSL_cleanse(key_pem, key_len);
    free(key_pem);
    free(csr);
    EVP_PKEY_free(key);
    wire_free(reply);
    client_close(c);
    return status;
}
