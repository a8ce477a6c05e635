/* state: see state.h. */
#include "state.h"
#include "errors.h"
#include "log.h"
#include "pki.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>

#define STATE_PATH (PATH_MAX + 32)

static void state_path(char *out, const char *dir, const char *name)
{
    snprintf(out, STATE_PATH, "%s/%s", dir, name);
}

/* mode at most (tightened with a warning); owned by this user. */
static int state_check_mode(const char *path, mode_t mode, char *err, size_t len)
{
    struct stat st;

    if (stat(path, &st)) {
        snprintf(err, len, "%s: %s", path, strerror(errno));
        return -errno;
    }
    if (st.st_uid != geteuid()) {
        snprintf(err, len, "%s: owned by uid %u, not by this user (uid %u)", path,
                 (unsigned)st.st_uid, (unsigned)geteuid());
        return SKIFF_EAUTH;
    }
    if ((st.st_mode & 0777 & ~mode) != 0) {
        log_warn("%s had mode %04o; setting %04o", path, (unsigned)(st.st_mode & 0777),
                 (unsigned)mode);
        if (chmod(path, mode)) {
            snprintf(err, len, "%s: chmod: %s", path, strerror(errno));
            return -errno;
        }
    }
    return 0;
}

/* The whole file (at most PKI_MAX_PEM bytes), or NULL with *rc set
 * (-ENOENT when it is missing). */
static char *state_read(const char *dir, const char *name, int *rc, char *err, size_t len)
{
    char path[STATE_PATH], *buf;
    FILE *f;
    size_t n;

    state_path(path, dir, name);
    if (!(f = fopen(path, "re"))) {
        *rc = -errno;
        snprintf(err, len, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (!(buf = malloc(PKI_MAX_PEM + 1))) {
        fclose(f);
        *rc = -ENOMEM;
        snprintf(err, len, "out of memory");
        return NULL;
    }
    n = fread(buf, 1, PKI_MAX_PEM + 1, f);
    fclose(f);
    if (n == 0 || n > PKI_MAX_PEM) {
        OPENSSL_cleanse(buf, PKI_MAX_PEM + 1);
        free(buf);
        *rc = SKIFF_EINVAL;
        snprintf(err, len, "%s: %s", path, n ? "too large" : "empty");
        return NULL;
    }
    buf[n] = '\0';
    *rc = 0;
    return buf;
}

/* Writes data to dir/name through dir/.name.tmp, 0600, synced. */
static int state_write(const char *dir, const char *name, const char *data, char *err,
                       size_t len)
{
    char path[STATE_PATH], tmp[STATE_PATH];
    size_t n = strlen(data), off = 0;
    int fd, rc = 0;

    state_path(path, dir, name);
    snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, len, "%s: %s", tmp, strerror(errno));
        return -errno;
    }
    while (off < n) {
        ssize_t w = write(fd, data + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = -errno;
            break;
        }
        off += (size_t)w;
    }
    if (rc == 0 && fsync(fd))
        rc = -errno;
    if (close(fd) && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path))
        rc = -errno;
    if (rc) {
        snprintf(err, len, "%s: %s", path, strerror(-rc));
        unlink(tmp);
    }
    return rc;
}

/* 1 when the key in key_pem is the certificate's in cert_pem. */
static int state_pair(const char *key_pem, const char *cert_pem)
{
    char err[256];
    EVP_PKEY *key = pki_key_parse(key_pem, strlen(key_pem), err, sizeof(err));
    STACK_OF(X509) *chain = key ? pki_chain_parse(cert_pem, strlen(cert_pem), err, sizeof(err))
                                : NULL;
    int ok = chain && pki_key_matches(sk_X509_value(chain, 0), key);

    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    return ok;
}

int state_prepare(const char *dir, char *err, size_t len)
{
    static const char *const files[] = { "key.pem", "cert.pem", "ca.pem", "key.pem.new",
                                         "cert.pem.new" };
    char path[STATE_PATH], newer[STATE_PATH], tmp[STATE_PATH];
    char *key, *cert;
    int rc;

    if (mkdir(dir, 0700) && errno != EEXIST) {
        snprintf(err, len, "--state-dir %s: %s", dir, strerror(errno));
        return -errno;
    }
    if ((rc = state_check_mode(dir, 0700, err, len)))
        return rc;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        state_path(path, dir, files[i]);
        if (access(path, F_OK) == 0 && (rc = state_check_mode(path, 0600, err, len)))
            return rc;
    }
    /* key.pem.new without cert.pem.new: the crash came before the first
     * rename; the old pair stands. */
    state_path(path, dir, "key.pem.new");
    state_path(newer, dir, "cert.pem.new");
    if (access(path, F_OK) == 0 && access(newer, F_OK) != 0)
        unlink(path);
    if (access(path, F_OK) == 0 && access(newer, F_OK) == 0) {
        /* Both new files: rename them in order. */
        state_path(tmp, dir, "key.pem");
        if (rename(path, tmp)) {
            snprintf(err, len, "%s: %s", path, strerror(errno));
            return -errno;
        }
    }
    if (access(newer, F_OK) == 0) {
        /* The new key is in key.pem: its certificate follows it, unless it
         * is not that key's (then the crash came before the key's rename). */
        key = state_read(dir, "key.pem", &rc, err, len);
        cert = key ? state_read(dir, "cert.pem.new", &rc, err, len) : NULL;
        if (key && cert && state_pair(key, cert)) {
            state_path(tmp, dir, "cert.pem");
            if (rename(newer, tmp)) {
                rc = -errno;
                snprintf(err, len, "%s: %s", newer, strerror(errno));
            } else {
                log_info("%s: finished a certificate renewal that was cut short", dir);
            }
        } else {
            unlink(newer);
            rc = 0;
        }
        if (key)
            OPENSSL_cleanse(key, strlen(key));
        free(key);
        free(cert);
        if (rc)
            return rc;
    }
    return 0;
}

int state_load(const char *dir, agent_state_t *s, char *err, size_t len)
{
    char path[STATE_PATH];
    int rc;

    memset(s, 0, sizeof(*s));
    state_path(path, dir, "cert.pem");
    if (access(path, F_OK) != 0) {
        snprintf(err, len, "no node certificate in %s", dir);
        return SKIFF_ENOTFOUND;
    }
    if (!(s->cert_pem = state_read(dir, "cert.pem", &rc, err, len)) ||
        !(s->key_pem = state_read(dir, "key.pem", &rc, err, len)) ||
        !(s->ca_pem = state_read(dir, "ca.pem", &rc, err, len))) {
        state_clear(s);
        return rc ? rc : SKIFF_EINVAL;
    }
    if (!state_pair(s->key_pem, s->cert_pem)) {
        state_clear(s);
        snprintf(err, len, "%s: key.pem is not the key of cert.pem", dir);
        return SKIFF_EINVAL;
    }
    return 0;
}

int state_save(const char *dir, const agent_state_t *s, char *err, size_t len)
{
    char from[STATE_PATH], to[STATE_PATH];
    int rc = 0;

    if (s->ca_pem && (rc = state_write(dir, "ca.pem", s->ca_pem, err, len)))
        return rc;
    if (!s->key_pem || !s->cert_pem)
        return 0;
    if ((rc = state_write(dir, "key.pem.new", s->key_pem, err, len)) ||
        (rc = state_write(dir, "cert.pem.new", s->cert_pem, err, len)))
        return rc;
    state_path(from, dir, "key.pem.new");
    state_path(to, dir, "key.pem");
    if (rename(from, to)) {
        snprintf(err, len, "%s: %s", to, strerror(errno));
        return -errno;
    }
    state_path(from, dir, "cert.pem.new");
    state_path(to, dir, "cert.pem");
    if (rename(from, to)) {
        snprintf(err, len, "%s: %s", to, strerror(errno));
        return -errno;
    }
    return 0;
}

void state_clear(agent_state_t *s)
{
    if (s->key_pem)
        OPENSSL_cleanse(s->key_pem, strlen(s->key_pem));
    free(s->key_pem);
    free(s->cert_pem);
    free(s->ca_pem);
    memset(s, 0, sizeof(*s));
}
