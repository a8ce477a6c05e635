/* tokens: the data dir, the join and admin tokens, the cluster id, and the
 * CA's files.
 *
 * On first start the controller makes its data dir (0700), the cluster CA
 * (ca.h; kept in the store, and written as ca.pem and ca-key.pem), two
 * tokens SKIFF-1-<CA digest>-<secret of 32 random bytes in hex> (join-token
 * for agents, admin-token for clients) and the cluster id (kept in SQLite,
 * and in the file cluster-id for tools), all 0600. At every start it checks
 * those modes and tightens them, with a warning. The files are small and
 * read once, by start-up code before the loop runs; after a rotation
 * tokens_reload reads them again, and tokens_publish writes them, in the
 * thread pool.
 */
#include "ctl.h"
#include "errors.h"
#include "log.h"
#include "pbutil.h"
#include "token.h"

#include <openssl/crypto.h>

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

void tokens_new(char out[CTL_TOKEN_LEN + 1])
{
    token_secret_new(out);
}

/* Writes value and a newline to dir/name atomically (a temporary file, then
 * rename), mode 0600. */
int tokens_write_file(const char *dir, const char *name, const char *value, char *err,
                      size_t len)
{
    char path[PATH_MAX + 32], tmp[PATH_MAX + 32];
    FILE *f;
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    /* Of this process: a controller and `--rotate-token` may write the
     * same file at once (on etcd, the controller hears of the new token). */
    snprintf(tmp, sizeof(tmp), "%s/.%s.%ld.tmp", dir, name, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || !(f = fdopen(fd, "w"))) {
        snprintf(err, len, "%s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -errno;
    }
    fprintf(f, "%s\n", value);
    if (fflush(f) || fsync(fileno(f)) || fclose(f) || rename(tmp, path)) {
        snprintf(err, len, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return -errno;
    }
    return 0;
}

/* Reads the first line of dir/name into out (want + 1 bytes, want at most
 * CTL_TOKEN_LEN): exactly want lowercase hex digits, or an error. */
static int tokens_read_hex(const char *dir, const char *name, char *out, size_t want,
                           char *err, size_t len)
{
    char path[PATH_MAX + 32], line[CTL_TOKEN_LEN + 8];
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (!(f = fopen(path, "re"))) {
        snprintf(err, len, "%s: %s", path, strerror(errno));
        return -errno;
    }
    n = fread(line, 1, sizeof(line) - 1, f);
    fclose(f);
    line[n] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    if (strlen(line) != want || strspn(line, "0123456789abcdef") != want) {
        snprintf(err, len, "%s: not a token (%zu hex characters)", path, want);
        return SKIFF_EINVAL;
    }
    memcpy(out, line, want + 1);
    return 0;
}

/* Reads the token in dir/name: its secret into out, its digest into digest
 * (may be NULL). Returns 0; SKIFF_EEXISTS for a token of the old format
 * (bare hex, from before TLS); or another negative code with err set. */
static int tokens_read(const char *dir, const char *name, char out[CTL_TOKEN_LEN + 1],
                       char *digest, char *err, size_t len)
{
    char path[PATH_MAX + 32], line[TOKEN_LEN + 16], why[256];
    token_t t;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (!(f = fopen(path, "re"))) {
        snprintf(err, len, "%s: %s", path, strerror(errno));
        return -errno;
    }
    n = fread(line, 1, sizeof(line) - 1, f);
    fclose(f);
    line[n] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    if (strlen(line) == CTL_TOKEN_LEN && strspn(line, "0123456789abcdef") == CTL_TOKEN_LEN) {
        snprintf(err, len, "%s holds a token of the old format", path);
        return SKIFF_EEXISTS;
    }
    if (token_parse(line, &t, why, sizeof(why))) {
        snprintf(err, len, "%s: %s", path, why);
        return SKIFF_EINVAL;
    }
    memcpy(out, t.secret, sizeof(t.secret));
    if (digest)
        memcpy(digest, t.digest, sizeof(t.digest));
    memset(&t, 0, sizeof(t));
    return 0;
}

/* Makes sure path has at most mode (e.g. 0700): tighter is fine, looser is
 * tightened with a warning; another owner is refused. */
static int tokens_check_mode(const char *path, mode_t mode, char *err, size_t len)
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

/* The secret of the token in dir/name: read, or new when the file is
 * missing or of the old format (whose token crossed the network in clear). */
static int tokens_ensure(const char *dir, const char *name, char out[CTL_TOKEN_LEN + 1],
                         char *err, size_t len)
{
    char path[PATH_MAX + 32];
    int rc;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (access(path, F_OK) != 0) {
        tokens_new(out); /* written with the CA's digest by tokens_ca */
        return 0;
    }
    rc = tokens_check_mode(path, 0600, err, len);
    if (!rc)
        rc = tokens_read(dir, name, out, NULL, err, len);
    if (rc == SKIFF_EEXISTS) {
        log_warn("%s holds a token of the old format, from before TLS (it was sent in "
                 "clear): a new token replaces it; give it to whoever used the old one", path);
        tokens_new(out);
        rc = 0;
    }
    return rc;
}

int tokens_prepare_dir(const char *dir, char *err, size_t len)
{
    if (mkdir(dir, 0700) && errno != EEXIST) {
        snprintf(err, len, "--data-dir %s: %s", dir, strerror(errno));
        return -errno;
    }
    return tokens_check_mode(dir, 0700, err, len);
}

int tokens_prepare(ctl_t *ctl, char *err, size_t len)
{
    const char *dir = ctl->cfg.data_dir;
    char path[PATH_MAX + 32];
    int rc;

    rc = tokens_prepare_dir(dir, err, len);
    snprintf(path, sizeof(path), "%s/ca-key.pem", dir);
    if (!rc && access(path, F_OK) == 0)
        rc = tokens_check_mode(path, 0600, err, len);
    if (!rc)
        rc = tokens_ensure(dir, "join-token", ctl->join_token, err, len);
    if (!rc)
        rc = tokens_ensure(dir, "admin-token", ctl->admin_token, err, len);
    return rc;
}

void tokens_format(const ctl_t *ctl, const char *which, char out[TOKEN_LEN + 1])
{
    token_t t;

    snprintf(t.digest, sizeof(t.digest), "%s", ca_digest(ctl->ca));
    memcpy(t.secret, strcmp(which, "join") == 0 ? ctl->join_token : ctl->admin_token,
           sizeof(t.secret));
    token_format(&t, out);
    memset(&t, 0, sizeof(t));
}

/* Writes what publish holds: the CA's files, then the tokens. */
static int tokens_publish_files(const char *dir, tokens_publish_t *p)
{
    int rc = tokens_write_file(dir, "ca.pem", p->ca_pem, p->err, sizeof(p->err));

    if (!rc)
        rc = tokens_write_file(dir, "ca-key.pem", p->key_pem, p->err, sizeof(p->err));
    if (!rc)
        rc = tokens_write_file(dir, "join-token", p->join, p->err, sizeof(p->err));
    if (!rc)
        rc = tokens_write_file(dir, "admin-token", p->admin, p->err, sizeof(p->err));
    return rc;
}

/* Fills publish from the CA and the secrets. */
static int tokens_publish_fill(ctl_t *ctl, tokens_publish_t *p)
{
    char *cert = NULL, *key = NULL, *nl;

    if (ca_active_pem(ctl->ca, &cert, &key))
        return -ENOMEM;
    /* tokens_write adds the newline */
    if ((nl = strrchr(cert, '\n')) && nl[1] == '\0')
        *nl = '\0';
    if ((nl = strrchr(key, '\n')) && nl[1] == '\0')
        *nl = '\0';
    p->ca_pem = cert;
    p->key_pem = key;
    tokens_format(ctl, "join", p->join);
    tokens_format(ctl, "admin", p->admin);
    return 0;
}

static void tokens_publish_clear(tokens_publish_t *p)
{
    if (p->key_pem)
        OPENSSL_cleanse(p->key_pem, strlen(p->key_pem));
    free(p->key_pem);
    free(p->ca_pem);
    p->key_pem = p->ca_pem = NULL;
    memset(p->join, 0, sizeof(p->join));
    memset(p->admin, 0, sizeof(p->admin));
}

/* A CA made or changed before the loop runs goes into the store at once,
 * before anything uses it (SQLite only: a shared store's rows go with the
 * leader's next commit, before any reply that depends on them). */
static int tokens_ca_commit_now(ctl_t *ctl, char *err, size_t len)
{
    store_batch_t *b = store_batch_new();
    int rc = b ? ca_seal(ctl->ca, &ctl->model) : -ENOMEM;

    for (model_row_t *r = rc ? NULL : model_rows_take_dirty(&ctl->model), *next; r; r = next) {
        next = r->dirty_next;
        rc |= r->value ? store_put_row(b, r->table, r->key, r->value, r->len)
                       : store_delete_row(b, r->table, r->key);
        model_row_sealed(&ctl->model, r);
    }
    if (rc) {
        snprintf(err, len, "out of memory");
        rc = -ENOMEM;
    } else {
        rc = store_sqlite_commit_now(ctl->store, b, err, len);
    }
    store_batch_free(b);
    return rc;
}

/* The CA object and the listener's context, made once. */
static int tokens_ca_object(ctl_t *ctl, char *err, size_t len)
{
    if (!ctl->ca &&
        !(ctl->ca = ca_new(ctl->model.cluster_id, ctl->cfg.cert_expiry_ms, ctl->cfg.server_names))) {
        snprintf(err, len, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

static int tokens_ca_context(ctl_t *ctl, char *err, size_t len)
{
    if (!ctl->tls && !(ctl->tls = ca_server_ctx(ctl->ca, err, len)))
        return SKIFF_EINVAL;
    return 0;
}

int tokens_ca(ctl_t *ctl, char *err, size_t len)
{
    tokens_publish_t p = { 0 };
    int rc;

    if ((rc = tokens_ca_object(ctl, err, len)) ||
        (rc = ca_reload(ctl->ca, ctl->model.cluster_id, &ctl->model, NULL, 0, err, len)))
        return rc;
    if (store_shared(ctl->store)) {
        if ((rc = tokens_ca_context(ctl, err, len)))
            return rc;
        tokens_write_files(ctl);
        return 0;
    }
    if (ca_dirty(ctl->ca) && (rc = tokens_ca_commit_now(ctl, err, len)))
        return rc;
    if ((rc = tokens_ca_context(ctl, err, len)))
        return rc;
    if (tokens_publish_fill(ctl, &p)) {
        snprintf(err, len, "out of memory");
        return -ENOMEM;
    }
    rc = tokens_publish_files(ctl->cfg.data_dir, &p);
    if (rc)
        snprintf(err, len, "%s", p.err);
    tokens_publish_clear(&p);
    return rc;
}

int tokens_ca_roots(ctl_t *ctl, const store_blob_t *roots, size_t n, char *err, size_t len)
{
    int rc;

    if ((rc = tokens_ca_object(ctl, err, len)) ||
        (rc = ca_reload(ctl->ca, ctl->model.cluster_id, NULL, roots, n, err, len)))
        return rc;
    return tokens_ca_context(ctl, err, len);
}

static void tokens_publish_work(uv_work_t *w)
{
    ctl_t *ctl = w->data;

    ctl->publish.rc = tokens_publish_files(ctl->cfg.data_dir, &ctl->publish);
}

static void tokens_publish_done(uv_work_t *w, int status)
{
    ctl_t *ctl = w->data;
    tokens_publish_t *p = &ctl->publish;

    p->busy = 0;
    if (status)
        log_error("the CA's files and the tokens were not written: %s", uv_strerror(status));
    else if (p->rc)
        log_error("the CA's files and the tokens were not written: %s", p->err);
    else
        log_info("wrote %s/ca.pem, ca-key.pem and the tokens, for CA sha256 %s",
                 ctl->cfg.data_dir, ca_digest(ctl->ca));
    tokens_publish_clear(p);
    if (p->again && !ctl->stopping) {
        p->again = 0;
        tokens_publish(ctl);
    }
}

void tokens_publish(ctl_t *ctl)
{
    tokens_publish_t *p = &ctl->publish;
    int rc;

    if (store_shared(ctl->store)) {
        tokens_write_files(ctl); /* the CA's key stays in the store */
        return;
    }
    if (p->busy) {
        p->again = 1;
        return;
    }
    if (tokens_publish_fill(ctl, p)) {
        log_error("the CA's files and the tokens were not written: out of memory");
        return;
    }
    p->work.data = ctl;
    if ((rc = uv_queue_work(ctl->loop, &p->work, tokens_publish_work, tokens_publish_done))) {
        log_error("the CA's files and the tokens were not written: %s", uv_strerror(rc));
        tokens_publish_clear(p);
        return;
    }
    p->busy = 1;
}

/* The cluster id a crash may have left in the file before the store had it:
 * agents may have seen it, so it stays. Returns 1 when one was read. */
static int tokens_cluster_id_file(ctl_t *ctl)
{
    char err[PATH_MAX + 128];

    return tokens_read_hex(ctl->cfg.data_dir, "cluster-id", ctl->model.cluster_id,
                           sizeof(ctl->model.cluster_id) - 1, err, sizeof(err)) == 0;
}

int tokens_cluster_id(ctl_t *ctl, char *err, size_t len)
{
    if (!ctl->model.cluster_id[0]) {
        if (!tokens_cluster_id_file(ctl)) {
            char fresh[CTL_TOKEN_LEN + 1];
            tokens_new(fresh);
            snprintf(ctl->model.cluster_id, sizeof(ctl->model.cluster_id), "%.*s",
                     MODEL_ID_LEN * 2, fresh);
        }
        ctl->model.meta_dirty = 1;
    }
    return tokens_write_file(ctl->cfg.data_dir, "cluster-id", ctl->model.cluster_id, err, len);
}

/* In the pool: the reads only; ctl is not touched. */
static void tokens_reread_work(uv_work_t *w)
{
    ctl_t *ctl = w->data;
    tokens_reread_t *r = &ctl->reread;

    r->rc = tokens_read(ctl->cfg.data_dir, "join-token", r->join, NULL, r->err, sizeof(r->err));
    if (r->rc == 0)
        r->rc = tokens_read(ctl->cfg.data_dir, "admin-token", r->admin, NULL, r->err,
                            sizeof(r->err));
}

/* On the loop: the new tokens apply; a change meanwhile is read again. */
static void tokens_reread_done(uv_work_t *w, int status)
{
    ctl_t *ctl = w->data;
    tokens_reread_t *r = &ctl->reread;

    r->busy = 0;
    if (status != 0) {
        log_warn("tokens not reread: %s", uv_strerror(status));
    } else if (r->rc) {
        log_warn("tokens not reread: %s", r->err);
    } else {
        if (strcmp(r->join, ctl->join_token) || strcmp(r->admin, ctl->admin_token))
            log_info("tokens reread: %s%s changed",
                     strcmp(r->join, ctl->join_token) ? "join " : "",
                     strcmp(r->admin, ctl->admin_token) ? "admin " : "");
        memcpy(ctl->join_token, r->join, sizeof(r->join));
        memcpy(ctl->admin_token, r->admin, sizeof(r->admin));
    }
    if (r->again && !ctl->stopping) {
        r->again = 0;
        tokens_reload(ctl);
    }
}

void tokens_reload(ctl_t *ctl)
{
    tokens_reread_t *r = &ctl->reread;
    int rc;

    if (r->busy) {
        r->again = 1;
        return;
    }
    r->work.data = ctl;
    if ((rc = uv_queue_work(ctl->loop, &r->work, tokens_reread_work, tokens_reread_done))) {
        log_warn("tokens not reread: %s", uv_strerror(rc));
        return;
    }
    r->busy = 1;
}

/* The digest of dir/ca.pem, the CA the tokens name. */
int tokens_ca_digest(const char *dir, char digest[PKI_DIGEST_HEX + 1], char *err,
                            size_t len)
{
    char path[PATH_MAX + 32], why[256];
    char *pem = malloc(PKI_MAX_PEM + 1);
    STACK_OF(X509) *chain = NULL;
    FILE *f;
    size_t n;
    int rc = SKIFF_EINVAL;

    snprintf(path, sizeof(path), "%s/ca.pem", dir);
    if (!pem) {
        snprintf(err, len, "out of memory");
        return -ENOMEM;
    }
    if (!(f = fopen(path, "re"))) {
        snprintf(err, len, "%s: %s (start the controller once first)", path, strerror(errno));
        free(pem);
        return -ENOENT;
    }
    n = fread(pem, 1, PKI_MAX_PEM, f);
    fclose(f);
    if (!(chain = pki_chain_parse(pem, n, why, sizeof(why))))
        snprintf(err, len, "%s: %s", path, why);
    else if (pki_digest(sk_X509_value(chain, 0), digest) == 0)
        rc = 0;
    sk_X509_pop_free(chain, X509_free);
    free(pem);
    return rc;
}

int tokens_rotate(const char *data_dir, const char *which, char *err, size_t len)
{
    char name[32], out[TOKEN_LEN + 1];
    token_t t;
    int rc;

    if (strcmp(which, "join") != 0 && strcmp(which, "admin") != 0) {
        snprintf(err, len, "--rotate-token %s: must be join or admin", which);
        return SKIFF_EINVAL;
    }
    snprintf(name, sizeof(name), "%s-token", which);
    if ((rc = tokens_ca_digest(data_dir, t.digest, err, len)))
        return rc;
    tokens_new(t.secret);
    token_format(&t, out);
    rc = tokens_write_file(data_dir, name, out, err, len);
    memset(&t, 0, sizeof(t));
    memset(out, 0, sizeof(out));
    return rc;
}

void tokens_read_existing(const char *dir, char cluster_id[MODEL_ID_LEN * 2 + 1],
                          char join[CTL_TOKEN_LEN + 1], char admin[CTL_TOKEN_LEN + 1])
{
    char err[PATH_MAX + 64];

    if (tokens_read_hex(dir, "cluster-id", cluster_id, MODEL_ID_LEN * 2, err, sizeof(err)))
        cluster_id[0] = '\0';
    if (tokens_read(dir, "join-token", join, NULL, err, sizeof(err)))
        join[0] = '\0';
    if (tokens_read(dir, "admin-token", admin, NULL, err, sizeof(err)))
        admin[0] = '\0';
}

/* In the pool: the writes only; ctl is not touched. */
static void tokens_files_work(uv_work_t *w)
{
    tokens_files_t *f = w->data;

    f->rc = tokens_write_file(f->dir, "cluster-id", f->cluster_id, f->err, sizeof(f->err));
    if (f->rc == 0 && f->ca_pem)
        f->rc = tokens_write_file(f->dir, "ca.pem", f->ca_pem, f->err, sizeof(f->err));
    if (f->rc == 0 && f->ca_pem)
        f->rc = tokens_write_file(f->dir, "join-token", f->join, f->err, sizeof(f->err));
    if (f->rc == 0 && f->ca_pem)
        f->rc = tokens_write_file(f->dir, "admin-token", f->admin, f->err, sizeof(f->err));
}

static void tokens_files_done(uv_work_t *w, int status)
{
    tokens_files_t *f = w->data;
    ctl_t *ctl = (ctl_t *)((char *)f - offsetof(ctl_t, token_files));

    f->busy = 0;
    free(f->ca_pem);
    f->ca_pem = NULL;
    memset(f->join, 0, sizeof(f->join));
    memset(f->admin, 0, sizeof(f->admin));
    if (status)
        log_warn("the tokens are not written into the data dir: %s", uv_strerror(status));
    else if (f->rc)
        log_warn("the tokens are not written into the data dir: %s", f->err);
    if (f->again && !ctl->stopping) {
        f->again = 0;
        tokens_write_files(ctl);
    }
}

void tokens_write_files(ctl_t *ctl)
{
    tokens_files_t *f = &ctl->token_files;
    int rc;

    if (f->busy) {
        f->again = 1;
        return;
    }
    snprintf(f->dir, sizeof(f->dir), "%s", ctl->cfg.data_dir);
    memcpy(f->cluster_id, ctl->model.cluster_id, sizeof(f->cluster_id));
    f->ca_pem = NULL;
    if (ctl->ca && *ca_digest(ctl->ca)) {
        /* The tokens name the CA: written with it, never without. The
         * CA's key stays in the store. */
        char *key = NULL, *nl;
        if (ca_active_pem(ctl->ca, &f->ca_pem, &key) == 0) {
            if ((nl = strrchr(f->ca_pem, '\n')) && nl[1] == '\0')
                *nl = '\0';
            tokens_format(ctl, "join", f->join);
            tokens_format(ctl, "admin", f->admin);
        }
        if (key)
            OPENSSL_cleanse(key, strlen(key));
        free(key);
    }
    f->work.data = f;
    if ((rc = uv_queue_work(ctl->loop, &f->work, tokens_files_work, tokens_files_done))) {
        log_warn("the tokens are not written into the data dir: %s", uv_strerror(rc));
        free(f->ca_pem);
        f->ca_pem = NULL;
        return;
    }
    f->busy = 1;
}

int tokens_admin_ok(const ctl_t *ctl, const char *presented)
{
    token_t t;
    char why[200];
    int ok;

    if (!ctl->ca || token_parse(presented, &t, why, sizeof(why)))
        return 0;
    ok = tokens_match(ctl->admin_token, t.secret) &&
         (strcmp(t.digest, ca_digest(ctl->ca)) == 0 ||
          (*ca_next_digest(ctl->ca) && strcmp(t.digest, ca_next_digest(ctl->ca)) == 0));
    memset(&t, 0, sizeof(t));
    return ok;
}

int tokens_match(const char *expected, const char *presented)
{
    return token_secret_match(expected, presented);
}
