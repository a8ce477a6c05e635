/* secrets: see secrets.h.
 *
 * The values are a small array searched linearly: a node holds the few
 * secrets and configs its tasks use, and SECRETS_MAX_VALUES bounds it.
 */
#include "secrets.h"
#include "errors.h"
#include "log.h"

#include <openssl/crypto.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#define SECRETS_MAX_VALUES 10000
#define SECRETS_TARGET_MAX 1024
#define SECRETS_RUN_DIR "/run/secrets/"

typedef struct secret_value {
    SecretKind kind;
    char id[SECRETS_ID_MAX + 1];
    uint8_t *data;
    size_t len;
} secret_value_t;

struct secrets {
    char *dir;              /* where the tmpfs is; NULL: no files */
    secret_value_t *v;
    size_t n, cap;
    size_t bytes;
    int mounted;
};

/* ------------------------------------------------------------ values */

secrets_t *secrets_create(const char *dir)
{
    secrets_t *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    if (dir && !(s->dir = strdup(dir))) {
        free(s);
        return NULL;
    }
    return s;
}

static void secrets_value_clear(secret_value_t *v)
{
    if (v->data) {
        OPENSSL_cleanse(v->data, v->len);
        free(v->data);
    }
    memset(v, 0, sizeof(*v));
}

void secrets_free(secrets_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        secrets_value_clear(&s->v[i]);
    free(s->v);
    free(s->dir);
    free(s);
}

/* Ids (and task ids, which name dirs): [A-Za-z0-9._-], not starting with
 * a dot, so never a path of more than one component, nor "." or "..". */
static int secrets_id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;

    if (n == 0 || n > SECRETS_ID_MAX || id[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && !(c >= '0' && c <= '9') &&
            c != '.' && c != '-' && c != '_')
            return 0;
    }
    return 1;
}

static secret_value_t *secrets_find(const secrets_t *s, SecretKind kind, const char *id)
{
    if (!s)
        return NULL;
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].kind == kind && strcmp(s->v[i].id, id) == 0)
            return &s->v[i];
    return NULL;
}

static const char *secrets_kind_name(SecretKind kind)
{
    return kind == SECRET_KIND_CONFIG ? "config" : "secret";
}

int secrets_put(secrets_t *s, const SecretData *d)
{
    secret_value_t *v;
    size_t len = d->data.len, others;
    uint8_t *copy;

    if (!secrets_id_valid(d->id)) {
        log_warn("controller sent a secret value whose id is not one; ignored");
        return SKIFF_EINVAL;
    }
    if (d->kind != SECRET_KIND_SECRET && d->kind != SECRET_KIND_CONFIG) {
        log_warn("controller sent the value of %s, of unknown kind %d; ignored", d->id,
                 (int)d->kind);
        return SKIFF_EINVAL;
    }
    v = secrets_find(s, d->kind, d->id);
    others = s->bytes - (v ? v->len : 0);
    if (len > SECRETS_VALUE_MAX) {
        log_warn("controller sent %s %s of %zu bytes, over the %zu a value may have; ignored",
                 secrets_kind_name(d->kind), d->id, len, SECRETS_VALUE_MAX);
        return SKIFF_ELIMIT;
    }
    if (others + len > SECRETS_TOTAL_MAX || (!v && s->n >= SECRETS_MAX_VALUES)) {
        log_warn("controller sent %s %s, but the values kept would pass %zu bytes or %d "
                 "values; ignored",
                 secrets_kind_name(d->kind), d->id, SECRETS_TOTAL_MAX, SECRETS_MAX_VALUES);
        return SKIFF_ELIMIT;
    }
    copy = malloc(len ? len : 1);
    if (!copy) {
        log_warn("no memory for %s %s; ignored", secrets_kind_name(d->kind), d->id);
        return -ENOMEM;
    }
    if (len)
        memcpy(copy, d->data.data, len);
    if (!v) {
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 8;
            secret_value_t *grown = realloc(s->v, cap * sizeof(*grown));
            if (!grown) {
                free(copy);
                log_warn("no memory for %s %s; ignored", secrets_kind_name(d->kind), d->id);
                return -ENOMEM;
            }
            s->v = grown;
            s->cap = cap;
        }
        v = &s->v[s->n++];
        memset(v, 0, sizeof(*v));
        v->kind = d->kind;
        strcpy(v->id, d->id);
    } else {
        OPENSSL_cleanse(v->data, v->len);
        free(v->data);
    }
    v->data = copy;
    v->len = len;
    s->bytes = others + len;
    log_debug("received %s %s (%zu bytes)", secrets_kind_name(d->kind), d->id, len);
    return 0;
}

int secrets_has(const secrets_t *s, SecretKind kind, const char *id)
{
    return secrets_find(s, kind, id) != NULL;
}

size_t secrets_count(const secrets_t *s)
{
    return s->n;
}

size_t secrets_bytes(const secrets_t *s)
{
    return s->bytes;
}

static int secrets_spec_uses(const ServiceSpec *spec, SecretKind kind, const char *id)
{
    SecretRef *const *refs = kind == SECRET_KIND_CONFIG ? spec->configs : spec->secrets;
    size_t n = kind == SECRET_KIND_CONFIG ? spec->n_configs : spec->n_secrets;

    for (size_t i = 0; i < n; i++)
        if (refs[i] && refs[i]->id && strcmp(refs[i]->id, id) == 0)
            return 1;
    return 0;
}

void secrets_retain(secrets_t *s, const Assignments *set)
{
    for (size_t i = 0; i < s->n;) {
        secret_value_t *v = &s->v[i];
        int used = 0;

        for (size_t j = 0; j < set->n_tasks && !used; j++) {
            const Assignment *a = set->tasks[j];
            used = a && a->spec && secrets_spec_uses(a->spec, v->kind, v->id);
        }
        if (used) {
            i++;
            continue;
        }
        log_debug("dropping %s %s: no task of the set uses it", secrets_kind_name(v->kind),
                  v->id);
        s->bytes -= v->len;
        secrets_value_clear(v);
        s->v[i] = s->v[--s->n];
    }
}

/* ------------------------------------------------------------ refs */

static int secrets_printable(const char *t)
{
    for (; *t; t++)
        if ((unsigned char)*t < 0x20 || *t == 0x7f)
            return 0;
    return 1;
}

/* A file name: no '/', not "." or "..". */
static int secrets_file_name_valid(const char *t)
{
    size_t n = strlen(t);

    return n > 0 && n <= 255 && !strchr(t, '/') && strcmp(t, ".") != 0 &&
           strcmp(t, "..") != 0 && secrets_printable(t);
}

/* An absolute path with no empty, "." or ".." component, and not "/". */
static int secrets_path_valid(const char *t)
{
    const char *p = t;

    if (t[0] != '/' || strlen(t) > SECRETS_TARGET_MAX || !secrets_printable(t))
        return 0;
    while (*p == '/') {
        const char *c = p + 1, *end = strchrnul(c, '/');
        size_t n = (size_t)(end - c);
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return 0;
        p = end;
    }
    return 1;
}

/* Where the ref's file is in the container. Returns 0, or SKIFF_EINVAL
 * when the target is not one. */
static int secrets_target(const SecretRef *r, int config, char *out, size_t len)
{
    const char *t = r->target && *r->target ? r->target : NULL;
    int n;

    if (config)
        n = t ? snprintf(out, len, "%s", t) : snprintf(out, len, "/%s", r->name ? r->name : "");
    else if (t ? !secrets_file_name_valid(t) : !secrets_file_name_valid(r->name ? r->name : ""))
        return SKIFF_EINVAL;
    else
        n = snprintf(out, len, SECRETS_RUN_DIR "%s", t ? t : r->name);
    if (n < 0 || (size_t)n >= len || !secrets_path_valid(out))
        return SKIFF_EINVAL;
    return 0;
}

static int secrets_check_list(SecretRef *const *refs, size_t n, int config, char *why,
                              size_t len)
{
    const char *kind = config ? "config" : "secret";
    char target[SECRETS_TARGET_MAX + 32];

    if (n > SECRETS_MAX_REFS) {
        snprintf(why, len, "invalid spec: more than %d %ss", SECRETS_MAX_REFS, kind);
        return SKIFF_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        const SecretRef *r = refs[i];
        const char *name = r && r->name ? r->name : "";

        if (!r || !secrets_id_valid(r->id)) {
            snprintf(why, len, "invalid spec: %s '%.64s' has no valid id", kind, name);
            return SKIFF_EINVAL;
        }
        if (secrets_target(r, config, target, sizeof(target))) {
            snprintf(why, len, "invalid spec: %s '%.64s': target '%.100s' is not %s", kind,
                     name, r->target ? r->target : "",
                     config ? "an absolute path" : "a file name");
            return SKIFF_EINVAL;
        }
        if (r->mode > 0777) {
            snprintf(why, len, "invalid spec: %s '%.64s': mode %o is not permission bits",
                     kind, name, r->mode);
            return SKIFF_EINVAL;
        }
    }
    return 0;
}

int secrets_check_refs(const ServiceSpec *spec, char *why, size_t len)
{
    int rc = secrets_check_list(spec->secrets, spec->n_secrets, 0, why, len);

    return rc ? rc : secrets_check_list(spec->configs, spec->n_configs, 1, why, len);
}

size_t secrets_n_refs(const ServiceSpec *spec)
{
    return spec->n_secrets + spec->n_configs;
}

int secrets_missing(const secrets_t *s, const ServiceSpec *spec, char *why, size_t len)
{
    for (int config = 0; config < 2; config++) {
        SecretRef *const *refs = config ? spec->configs : spec->secrets;
        size_t n = config ? spec->n_configs : spec->n_secrets;
        SecretKind kind = config ? SECRET_KIND_CONFIG : SECRET_KIND_SECRET;

        for (size_t i = 0; i < n; i++) {
            if (!refs[i] || !secrets_find(s, kind, refs[i]->id)) {
                snprintf(why, len, "%s %.64s not received from the controller",
                         secrets_kind_name(kind), refs[i] ? refs[i]->name : "?");
                return 1;
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------ files */

/* A tmpfs mounted on dir itself (not a dir of a tmpfs mounted above). */
static int secrets_is_tmpfs(const char *dir)
{
    struct statfs fs;
    struct stat st, up;
    char parent[4096];

    if (statfs(dir, &fs) != 0 || fs.f_type != TMPFS_MAGIC)
        return 0;
    snprintf(parent, sizeof(parent), "%s/..", dir);
    if (stat(dir, &st) != 0 || stat(parent, &up) != 0)
        return 0;
    return st.st_dev != up.st_dev;
}

/* Mounts the tmpfs at the store's dir, or finds it there. */
static int secrets_mount(secrets_t *s, char *why, size_t len)
{
    int rc;

    if (!s || !s->dir) {
        snprintf(why, len, "secrets and configs cannot be written: no state dir");
        return SKIFF_EINVAL;
    }
    /* Someone may have unmounted it behind our back: look every time. */
    if (s->mounted && secrets_is_tmpfs(s->dir))
        return 0;
    s->mounted = 0;
    if (mkdir(s->dir, 0700) != 0 && errno != EEXIST) {
        rc = -errno;
        snprintf(why, len, "cannot make %s: %s", s->dir, strerror(errno));
        return rc;
    }
    if (secrets_is_tmpfs(s->dir)) {
        log_info("secrets and configs: using the tmpfs already mounted on %s", s->dir);
        s->mounted = 1;
        return 0;
    }
    if (mount("tmpfs", s->dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "mode=0700,size=" SECRETS_TMPFS_SIZE) != 0) {
        rc = -errno;
        snprintf(why, len, "cannot mount a tmpfs on %s: %s", s->dir, strerror(errno));
        return rc;
    }
    log_info("secrets and configs: mounted a tmpfs on %s", s->dir);
    s->mounted = 1;
    return 0;
}

int secrets_mounted(const secrets_t *s)
{
    return s && s->mounted;
}

static int secrets_write_file(int dirfd, const char *name, const secret_value_t *v,
                              const SecretRef *r)
{
    mode_t mode = r->mode ? (mode_t)r->mode : SECRETS_DEFAULT_MODE;
    size_t done = 0;
    int fd, rc = 0;

    /* In place (O_TRUNC, not a rename): a running container's bind mount
     * holds this inode. */
    fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    while (done < v->len) {
        ssize_t w = write(fd, v->data + done, v->len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = w < 0 ? -errno : -EIO;
            break;
        }
        done += (size_t)w;
    }
    /* chown before chmod: chown may clear mode bits. */
    if (rc == 0 && fchown(fd, (uid_t)r->uid, (gid_t)r->gid) != 0)
        rc = -errno;
    if (rc == 0 && fchmod(fd, mode) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

void secrets_files_free(engine_file_t *files, size_t n)
{
    for (size_t i = 0; files && i < n; i++) {
        free(files[i].source);
        free(files[i].target);
    }
    free(files);
}

int secrets_write_task(secrets_t *s, const char *task_id, const ServiceSpec *spec,
                       engine_file_t **files, size_t *n, char *why, size_t len)
{
    size_t total = secrets_n_refs(spec), k = 0;
    engine_file_t *out = NULL;
    int rootfd = -1, dirfd = -1, rc;

    if (files) {
        *files = NULL;
        *n = 0;
    }
    if (total == 0)
        return 0;
    if (!secrets_id_valid(task_id)) {
        snprintf(why, len, "invalid task id for secrets");
        return SKIFF_EINVAL;
    }
    if (secrets_missing(s, spec, why, len))
        return SKIFF_ENOTFOUND;
    rc = secrets_mount(s, why, len);
    if (rc)
        return rc;
    if (files && !(out = calloc(total, sizeof(*out)))) {
        snprintf(why, len, "out of memory");
        return -ENOMEM;
    }
    rootfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0 || (mkdirat(rootfd, task_id, 0700) != 0 && errno != EEXIST) ||
        (dirfd = openat(rootfd, task_id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
        rc = -errno;
        snprintf(why, len, "cannot make %s/%s: %s", s->dir, task_id, strerror(errno));
        goto out_close;
    }
    for (int config = 0; config < 2; config++) {
        SecretRef *const *refs = config ? spec->configs : spec->secrets;
        size_t nrefs = config ? spec->n_configs : spec->n_secrets;
        SecretKind kind = config ? SECRET_KIND_CONFIG : SECRET_KIND_SECRET;

        for (size_t i = 0; i < nrefs; i++) {
            const secret_value_t *v = secrets_find(s, kind, refs[i]->id);
            char name[32], target[SECRETS_TARGET_MAX + 32];

            snprintf(name, sizeof(name), "%s-%zu", secrets_kind_name(kind), i);
            rc = secrets_write_file(dirfd, name, v, refs[i]);
            if (rc) {
                snprintf(why, len, "cannot write %s %.64s to %s/%s/%s: %s",
                         secrets_kind_name(kind), refs[i]->name, s->dir, task_id, name,
                         strerror(-rc));
                goto out_close;
            }
            if (!out)
                continue;
            if (secrets_target(refs[i], config, target, sizeof(target)) != 0) {
                snprintf(why, len, "%s %.64s: invalid target", secrets_kind_name(kind),
                         refs[i]->name);
                rc = SKIFF_EINVAL;
                goto out_close;
            }
            if (asprintf(&out[k].source, "%s/%s/%s", s->dir, task_id, name) < 0) {
                out[k].source = NULL;
                rc = -ENOMEM;
            } else if (!(out[k].target = strdup(target))) {
                rc = -ENOMEM;
            }
            k++;
            if (rc) {
                snprintf(why, len, "out of memory");
                goto out_close;
            }
        }
    }
out_close:
    if (dirfd >= 0)
        close(dirfd);
    if (rootfd >= 0)
        close(rootfd);
    if (rc) {
        secrets_files_free(out, k);
        return rc;
    }
    if (files) {
        *files = out;
        *n = k;
    }
    return 0;
}

void secrets_remove_task(secrets_t *s, const char *task_id)
{
    int rootfd, dirfd;
    DIR *d;
    struct dirent *de;

    if (!s || !s->dir || !secrets_id_valid(task_id))
        return;
    rootfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return;
    dirfd = openat(rootfd, task_id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dirfd < 0) {
        close(rootfd);
        return;
    }
    d = fdopendir(dirfd);
    if (!d) {
        close(dirfd);
        close(rootfd);
        return;
    }
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            (void)unlinkat(dirfd, de->d_name, 0);
    closedir(d);
    if (unlinkat(rootfd, task_id, AT_REMOVEDIR) != 0)
        log_warn("cannot remove %s/%s: %s", s->dir, task_id, strerror(errno));
    else
        log_debug("removed the secrets and configs of task %s", task_id);
    close(rootfd);
}

void secrets_prune(secrets_t *s, int (*keep)(void *arg, const char *task_id), void *arg)
{
    DIR *d;
    struct dirent *de;
    char (*names)[SECRETS_ID_MAX + 1] = NULL;
    size_t n = 0, cap = 0;

    if (!s || !s->dir || !secrets_is_tmpfs(s->dir))
        return;
    d = opendir(s->dir);
    if (!d)
        return;
    /* Collect first: removing while reading a dir may skip entries. */
    while ((de = readdir(d)) != NULL) {
        if (!secrets_id_valid(de->d_name) || keep(arg, de->d_name))
            continue;
        if (n == cap) {
            size_t c = cap ? cap * 2 : 16;
            void *grown = realloc(names, c * sizeof(*names));
            if (!grown)
                break;
            names = grown;
            cap = c;
        }
        strcpy(names[n++], de->d_name);
    }
    closedir(d);
    for (size_t i = 0; i < n; i++)
        secrets_remove_task(s, names[i]);
    free(names);
}
