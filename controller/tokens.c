/* tokens: the data dir, the join and admin tokens, the cluster id.
 *
 * On first start the controller makes its data dir (0700), two tokens of 32
 * random bytes in hex (join-token for agents, admin-token for clients, 0600)
 * and the cluster id (kept in SQLite, and in the file cluster-id for tools).
 * At every start it checks those modes and tightens them, with a warning.
 * The files are small and read once, by start-up code before the loop
 * runs; after a rotation tokens_reload reads them again in the thread pool.
 */
#include "ctl.h"
#include "errors.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

void tokens_new(char out[CTL_TOKEN_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[CTL_TOKEN_LEN / 2];
    size_t got = 0;

    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n > 0)
            got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof(raw); i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[CTL_TOKEN_LEN] = '\0';
}

/* Writes value and a newline to dir/name atomically (a temporary file, then
 * rename), mode 0600. */
int tokens_write_file(const char *dir, const char *name, const char *value, char *err,
                      size_t len)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    FILE *f;
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
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
    char path[PATH_MAX], line[CTL_TOKEN_LEN + 8];
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

/* Reads a 64-hex-character token from dir/name into out. */
static int tokens_read(const char *dir, const char *name, char out[CTL_TOKEN_LEN + 1],
                       char *err, size_t len)
{
    return tokens_read_hex(dir, name, out, CTL_TOKEN_LEN, err, len);
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

static int tokens_ensure(const char *dir, const char *name, char out[CTL_TOKEN_LEN + 1],
                         char *err, size_t len)
{
    char path[PATH_MAX];
    int rc;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (access(path, F_OK) != 0) {
        tokens_new(out);
        rc = tokens_write_file(dir, name, out, err, len);
        if (rc == 0)
            log_info("created %s", path);
        return rc;
    }
    rc = tokens_check_mode(path, 0600, err, len);
    return rc ? rc : tokens_read(dir, name, out, err, len);
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
    int rc;

    rc = tokens_prepare_dir(dir, err, len);
    if (!rc)
        rc = tokens_ensure(dir, "join-token", ctl->join_token, err, len);
    if (!rc)
        rc = tokens_ensure(dir, "admin-token", ctl->admin_token, err, len);
    return rc;
}

/* The cluster id a crash may have left in the file before the store had it:
 * agents may have seen it, so it stays. Returns 1 when one was read. */
static int tokens_cluster_id_file(ctl_t *ctl)
{
    char err[PATH_MAX + 64];

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

    r->rc = tokens_read(ctl->cfg.data_dir, "join-token", r->join, r->err, sizeof(r->err));
    if (r->rc == 0)
        r->rc = tokens_read(ctl->cfg.data_dir, "admin-token", r->admin, r->err, sizeof(r->err));
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

int tokens_rotate(const char *data_dir, const char *which, char *err, size_t len)
{
    char token[CTL_TOKEN_LEN + 1], name[32];

    if (strcmp(which, "join") != 0 && strcmp(which, "admin") != 0) {
        snprintf(err, len, "--rotate-token %s: must be join or admin", which);
        return SKIFF_EINVAL;
    }
    snprintf(name, sizeof(name), "%s-token", which);
    tokens_new(token);
    return tokens_write_file(data_dir, name, token, err, len);
}

void tokens_read_existing(const char *dir, char cluster_id[MODEL_ID_LEN * 2 + 1],
                          char join[CTL_TOKEN_LEN + 1], char admin[CTL_TOKEN_LEN + 1])
{
    char err[PATH_MAX + 64];

    if (tokens_read_hex(dir, "cluster-id", cluster_id, MODEL_ID_LEN * 2, err, sizeof(err)))
        cluster_id[0] = '\0';
    if (tokens_read(dir, "join-token", join, err, sizeof(err)))
        join[0] = '\0';
    if (tokens_read(dir, "admin-token", admin, err, sizeof(err)))
        admin[0] = '\0';
}

/* In the pool: the writes only; ctl is not touched. */
static void tokens_files_work(uv_work_t *w)
{
    tokens_files_t *f = w->data;

    f->rc = tokens_write_file(f->dir, "cluster-id", f->cluster_id, f->err, sizeof(f->err));
    if (f->rc == 0)
        f->rc = tokens_write_file(f->dir, "join-token", f->join, f->err, sizeof(f->err));
    if (f->rc == 0)
        f->rc = tokens_write_file(f->dir, "admin-token", f->admin, f->err, sizeof(f->err));
}

static void tokens_files_done(uv_work_t *w, int status)
{
    tokens_files_t *f = w->data;
    ctl_t *ctl = (ctl_t *)((char *)f - offsetof(ctl_t, token_files));

    f->busy = 0;
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
    memcpy(f->join, ctl->join_token, sizeof(f->join));
    memcpy(f->admin, ctl->admin_token, sizeof(f->admin));
    f->work.data = f;
    if ((rc = uv_queue_work(ctl->loop, &f->work, tokens_files_work, tokens_files_done))) {
        log_warn("the tokens are not written into the data dir: %s", uv_strerror(rc));
        return;
    }
    f->busy = 1;
}

int tokens_match(const char *expected, const char *presented)
{
    size_t n = strlen(presented);
    unsigned char diff = n != CTL_TOKEN_LEN;

    /* Always CTL_TOKEN_LEN steps, whatever was presented. Hex in either
     * case: 'A'-'F' read as 'a'-'f' (expected is lowercase). */
    for (size_t i = 0; i < CTL_TOKEN_LEN; i++) {
        unsigned char c = (unsigned char)(i < n ? presented[i] : 0);
        c |= (unsigned char)((c >= 'A' && c <= 'F') << 5);
        diff |= (unsigned char)expected[i] ^ c;
    }
    return diff == 0;
}
