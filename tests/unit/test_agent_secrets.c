/* Unit tests of agent/secrets: the store's bounds (a value, the total, bad
 * ids and kinds ignored), values dropped when no assignment uses them, the
 * refs' checks, the "not received" message, and the files on a real tmpfs
 * (mounted by the store under a temporary dir, reused when found there,
 * never replaced by a dir on disk): contents, mode, uid and gid, the bind
 * mounts' paths, rewriting in place, removal and pruning. The tmpfs tests
 * need root (CI runs them as root) and are skipped otherwise.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "errors.h"
#include "pbutil.h"
#include "secrets.h"
#include "spec.h"

static int put(secrets_t *s, SecretKind kind, const char *id, const char *data, size_t len)
{
    SecretData d = PB_SECRET_DATA_INIT;

    d.id = (char *)id;
    d.kind = kind;
    d.data.data = (uint8_t *)data;
    d.data.len = len;
    return secrets_put(s, &d);
}

static SecretRef *ref(const char *name, const char *id, const char *target)
{
    SecretRef *r = PB_NEW(SecretRef);

    assert_non_null(r);
    pb_set_str(&r->name, name);
    pb_set_str(&r->id, id);
    pb_set_str(&r->target, target);
    return r;
}

static ServiceSpec *spec_with(SecretRef *secret, SecretRef *config)
{
    ServiceSpec *s = spec_new();

    assert_non_null(s);
    if (secret)
        pb_push_msg(&s->n_secrets, (void ***)&s->secrets, secret);
    if (config)
        pb_push_msg(&s->n_configs, (void ***)&s->configs, config);
    return s;
}

/* ------------------------------------------------------------ the store */

static void test_put_bounds(void **state)
{
    secrets_t *s = secrets_create(NULL);
    char *big = calloc(1, SECRETS_VALUE_MAX + 1);
    size_t n = 0;

    assert_non_null(s);
    assert_non_null(big);
    assert_int_equal(put(s, SECRET_KIND_SECRET, "s1", "hunter2", 7), 0);
    assert_true(secrets_has(s, SECRET_KIND_SECRET, "s1"));
    assert_false(secrets_has(s, SECRET_KIND_CONFIG, "s1")); /* kinds apart */
    assert_int_equal(secrets_bytes(s), 7);
    /* One value: at most SECRETS_VALUE_MAX. */
    assert_int_equal(put(s, SECRET_KIND_SECRET, "big", big, SECRETS_VALUE_MAX + 1), SKIFF_ELIMIT);
    assert_false(secrets_has(s, SECRET_KIND_SECRET, "big"));
    assert_int_equal(put(s, SECRET_KIND_SECRET, "max", big, SECRETS_VALUE_MAX), 0);
    /* Bad frames are ignored, never kept. */
    assert_int_equal(put(s, SECRET_KIND_SECRET, "", "x", 1), SKIFF_EINVAL);
    assert_int_equal(put(s, SECRET_KIND_SECRET, "../etc", "x", 1), SKIFF_EINVAL);
    assert_int_equal(put(s, SECRET_KIND_SECRET, "a/b", "x", 1), SKIFF_EINVAL);
    assert_int_equal(put(s, (SecretKind)7, "s2", "x", 1), SKIFF_EINVAL);
    assert_int_equal(secrets_count(s), 2);
    /* The same id again replaces the value. */
    assert_int_equal(put(s, SECRET_KIND_SECRET, "s1", "hunter22", 8), 0);
    assert_int_equal(secrets_count(s), 2);
    assert_int_equal(secrets_bytes(s), 8 + SECRETS_VALUE_MAX);
    /* The total is bounded too. */
    for (;;) {
        char id[32];
        int rc;
        snprintf(id, sizeof(id), "v%zu", n++);
        rc = put(s, SECRET_KIND_CONFIG, id, big, SECRETS_VALUE_MAX);
        if (rc) {
            assert_int_equal(rc, SKIFF_ELIMIT);
            break;
        }
        assert_true(n < 1000);
    }
    assert_true(secrets_bytes(s) <= SECRETS_TOTAL_MAX);
    assert_true(secrets_bytes(s) + SECRETS_VALUE_MAX > SECRETS_TOTAL_MAX);
    /* A smaller one still fits when there is room. */
    if (secrets_bytes(s) + 8 <= SECRETS_TOTAL_MAX)
        assert_int_equal(put(s, SECRET_KIND_CONFIG, "small", "12345678", 8), 0);
    free(big);
    secrets_free(s);
}

static void test_retain_drops_unused(void **state)
{
    secrets_t *s = secrets_create(NULL);
    Assignment *a = PB_NEW(Assignment), *b = PB_NEW(Assignment);
    Assignment *tasks[3];
    Assignments set = PB_ASSIGNMENTS_INIT;

    assert_int_equal(put(s, SECRET_KIND_SECRET, "s1", "one", 3), 0);
    assert_int_equal(put(s, SECRET_KIND_SECRET, "s2", "two", 3), 0);
    assert_int_equal(put(s, SECRET_KIND_CONFIG, "c1", "conf", 4), 0);
    assert_int_equal(put(s, SECRET_KIND_CONFIG, "s2", "conf", 4), 0);
    a->spec = spec_with(ref("db", "s1", "db"), NULL);
    b->spec = spec_with(NULL, ref("nginx", "c1", "/etc/nginx.conf"));
    tasks[0] = a;
    tasks[1] = NULL; /* a peer's hole: harmless */
    tasks[2] = b;
    set.tasks = tasks;
    set.n_tasks = 3;
    secrets_retain(s, &set);
    assert_int_equal(secrets_count(s), 2);
    assert_true(secrets_has(s, SECRET_KIND_SECRET, "s1"));
    assert_true(secrets_has(s, SECRET_KIND_CONFIG, "c1"));
    assert_false(secrets_has(s, SECRET_KIND_SECRET, "s2"));
    assert_false(secrets_has(s, SECRET_KIND_CONFIG, "s2"));
    assert_int_equal(secrets_bytes(s), 7);
    /* An empty set drops everything. */
    set.n_tasks = 0;
    secrets_retain(s, &set);
    assert_int_equal(secrets_count(s), 0);
    assert_int_equal(secrets_bytes(s), 0);
    pb_free(a);
    pb_free(b);
    secrets_free(s);
}

static void test_check_refs(void **state)
{
    static const struct {
        const char *secret_target, *config_target;
        uint32_t mode;
        int ok;
    } cases[] = {
        { "db", "/etc/app.conf", 0, 1 },
        { "", "", 0400, 1 },           /* defaults: the names */
        { "a/b", "/x", 0, 0 },          /* a secret's target is a file name */
        { "..", "/x", 0, 0 },
        { "db", "etc/app.conf", 0, 0 }, /* a config's is an absolute path */
        { "db", "/etc/../shadow", 0, 0 },
        { "db", "/", 0, 0 },
        { "db", "/etc//x", 0, 0 },
        { "db", "/etc/x/", 0, 0 },
        { "d\nb", "/x", 0, 0 },
        { "db", "/x", 04755, 0 },       /* permission bits only */
    };
    char why[256];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        SecretRef *sr = ref("db_password", "s1", cases[i].secret_target);
        ServiceSpec *s;
        sr->mode = cases[i].mode;
        s = spec_with(sr, ref("app.conf", "c1", cases[i].config_target));
        why[0] = '\0';
        if (cases[i].ok)
            assert_int_equal(secrets_check_refs(s, why, sizeof(why)), 0);
        else
            assert_int_equal(secrets_check_refs(s, why, sizeof(why)), SKIFF_EINVAL);
        assert_true(cases[i].ok || strstr(why, "invalid spec: "));
        pb_free(s);
    }
    /* An id is required (the controller fills it). */
    {
        ServiceSpec *s = spec_with(ref("db", "", "db"), NULL);
        assert_int_equal(secrets_check_refs(s, why, sizeof(why)), SKIFF_EINVAL);
        assert_string_equal(why, "invalid spec: secret 'db' has no valid id");
        pb_free(s);
    }
}

static void test_missing(void **state)
{
    secrets_t *s = secrets_create(NULL);
    ServiceSpec *spec = spec_with(ref("db_password", "s1", "db"), ref("nginx", "c1", "/n"));
    char why[256];

    assert_int_equal(secrets_missing(s, spec, why, sizeof(why)), 1);
    assert_string_equal(why, "secret db_password not received from the controller");
    assert_int_equal(secrets_missing(NULL, spec, why, sizeof(why)), 1);
    assert_int_equal(put(s, SECRET_KIND_SECRET, "s1", "x", 1), 0);
    assert_int_equal(secrets_missing(s, spec, why, sizeof(why)), 1);
    assert_string_equal(why, "config nginx not received from the controller");
    assert_int_equal(put(s, SECRET_KIND_CONFIG, "c1", "y", 1), 0);
    assert_int_equal(secrets_missing(s, spec, why, sizeof(why)), 0);
    pb_free(spec);
    secrets_free(s);
}

/* ------------------------------------------------------------ files */

static char tmp[256], dir[300];

static int setup_tmp(void **state)
{
    if (geteuid() != 0)
        return 0;
    snprintf(tmp, sizeof(tmp), "/tmp/skiff-secrets-XXXXXX");
    assert_non_null(mkdtemp(tmp));
    snprintf(dir, sizeof(dir), "%s/secrets", tmp);
    return 0;
}

static int teardown_tmp(void **state)
{
    if (geteuid() != 0)
        return 0;
    while (umount2(dir, MNT_DETACH) == 0)
        ; /* ours, and any a test mounted itself */
    rmdir(dir);
    assert_int_equal(rmdir(tmp), 0);
    return 0;
}

static int is_tmpfs(const char *path)
{
    struct statfs fs;

    return statfs(path, &fs) == 0 && fs.f_type == TMPFS_MAGIC;
}

static void slurp_eq(const char *path, const char *want)
{
    char buf[256] = "";
    FILE *f = fopen(path, "r");
    size_t n;

    assert_non_null(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

static void test_files_on_tmpfs(void **state)
{
    secrets_t *s;
    SecretRef *sr = ref("db_password", "s1", ""), *cr = ref("nginx", "c1", "/etc/nginx.conf");
    ServiceSpec *spec;
    engine_file_t *files;
    size_t n;
    char why[256], path[400];
    struct stat st;
    ino_t ino;

    if (geteuid() != 0)
        skip();
    s = secrets_create(dir);
    sr->uid = 1000;
    sr->gid = 1001;
    sr->mode = 0400;
    spec = spec_with(sr, cr);
    assert_int_equal(put(s, SECRET_KIND_SECRET, "s1", "hunter2", 7), 0);
    assert_int_equal(put(s, SECRET_KIND_CONFIG, "c1", "worker_processes 1;", 19), 0);
    assert_false(secrets_mounted(s)); /* lazily: not before a file is needed */
    assert_int_equal(secrets_write_task(s, "t1", spec, &files, &n, why, sizeof(why)), 0);
    assert_true(secrets_mounted(s));
    assert_true(is_tmpfs(dir));

    assert_int_equal(n, 2);
    snprintf(path, sizeof(path), "%s/t1/secret-0", dir);
    assert_string_equal(files[0].source, path);
    assert_string_equal(files[0].target, "/run/secrets/db_password");
    slurp_eq(path, "hunter2");
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0400);
    assert_int_equal(st.st_uid, 1000);
    assert_int_equal(st.st_gid, 1001);
    ino = st.st_ino;
    snprintf(path, sizeof(path), "%s/t1/config-0", dir);
    assert_string_equal(files[1].source, path);
    assert_string_equal(files[1].target, "/etc/nginx.conf");
    slurp_eq(path, "worker_processes 1;");
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0444); /* the default */
    assert_int_equal(st.st_uid, 0);
    secrets_files_free(files, n);

    /* Written again in place: the same inode (a container's bind mount
     * holds it), the right contents. */
    assert_int_equal(put(s, SECRET_KIND_SECRET, "s1", "new", 3), 0);
    assert_int_equal(secrets_write_task(s, "t1", spec, NULL, NULL, why, sizeof(why)), 0);
    snprintf(path, sizeof(path), "%s/t1/secret-0", dir);
    slurp_eq(path, "new");
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_ino, ino);
    assert_int_equal(st.st_mode & 07777, 0400);

    /* A second store (a restarted agent) reuses the tmpfs it finds. */
    {
        secrets_t *again = secrets_create(dir);
        assert_int_equal(put(again, SECRET_KIND_SECRET, "s1", "hunter2", 7), 0);
        assert_int_equal(put(again, SECRET_KIND_CONFIG, "c1", "c", 1), 0);
        assert_int_equal(secrets_write_task(again, "t2", spec, NULL, NULL, why, sizeof(why)),
                         0);
        assert_true(secrets_mounted(again));
        secrets_free(again);
        assert_int_equal(umount2(dir, 0), 0); /* one mount only: the first */
        assert_false(is_tmpfs(dir));
        assert_int_equal(mount("tmpfs", dir, "tmpfs", 0, "mode=0700"), 0);
    }

    /* Removal takes the task's dir. */
    assert_int_equal(secrets_write_task(s, "t1", spec, NULL, NULL, why, sizeof(why)), 0);
    assert_int_equal(secrets_write_task(s, "t3", spec, NULL, NULL, why, sizeof(why)), 0);
    secrets_remove_task(s, "t1");
    snprintf(path, sizeof(path), "%s/t1", dir);
    assert_int_equal(stat(path, &st), -1);
    secrets_remove_task(s, "t1"); /* twice: harmless */
    secrets_remove_task(s, "..");  /* never outside */
    assert_int_equal(stat(tmp, &st), 0);
    snprintf(path, sizeof(path), "%s/t3/secret-0", dir);
    assert_int_equal(stat(path, &st), 0);

    pb_free(spec);
    secrets_free(s);
}

static int keep_t4(void *arg, const char *task_id)
{
    return strcmp(task_id, "t4") == 0;
}

static void test_prune(void **state)
{
    secrets_t *s;
    ServiceSpec *spec = spec_with(ref("db", "s1", "db"), NULL);
    char why[256], path[400];
    struct stat st;

    if (geteuid() != 0)
        skip();
    s = secrets_create(dir);
    assert_int_equal(put(s, SECRET_KIND_SECRET, "s1", "x", 1), 0);
    assert_int_equal(secrets_write_task(s, "t4", spec, NULL, NULL, why, sizeof(why)), 0);
    assert_int_equal(secrets_write_task(s, "t5", spec, NULL, NULL, why, sizeof(why)), 0);
    secrets_prune(s, keep_t4, NULL);
    snprintf(path, sizeof(path), "%s/t4/secret-0", dir);
    assert_int_equal(stat(path, &st), 0);
    snprintf(path, sizeof(path), "%s/t5", dir);
    assert_int_equal(stat(path, &st), -1);
    pb_free(spec);
    secrets_free(s);
}

/* A missing value: no file, no dir, no mount. */
static void test_write_missing(void **state)
{
    secrets_t *s;
    ServiceSpec *spec = spec_with(ref("db", "s1", "db"), NULL);
    char why[256];

    if (geteuid() != 0)
        skip();
    s = secrets_create(dir);
    assert_int_equal(secrets_write_task(s, "t1", spec, NULL, NULL, why, sizeof(why)),
                     SKIFF_ENOTFOUND);
    assert_string_equal(why, "secret db not received from the controller");
    assert_false(secrets_mounted(s));
    assert_false(is_tmpfs(dir));
    pb_free(spec);
    secrets_free(s);
}

/* Without the right to mount (not root), nothing is written on disk: the
 * write fails naming the dir and the error. */
static void test_mount_refused(void **state)
{
    int pipefd[2], status;
    pid_t pid;
    char why[256] = "", path[400];
    struct stat st;
    ssize_t got;

    if (geteuid() != 0)
        skip();
    assert_int_equal(chmod(tmp, 0755), 0);
    assert_int_equal(mkdir(dir, 0777), 0);
    assert_int_equal(chmod(dir, 0777), 0);
    assert_int_equal(pipe(pipefd), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        secrets_t *s;
        ServiceSpec *spec;
        char msg[256] = "";
        int rc;
        close(pipefd[0]);
        if (setgid(65534) != 0 || setuid(65534) != 0)
            _exit(2);
        s = secrets_create(dir);
        spec = spec_with(ref("db", "s1", "db"), NULL);
        put(s, SECRET_KIND_SECRET, "s1", "x", 1);
        rc = secrets_write_task(s, "t1", spec, NULL, NULL, msg, sizeof(msg));
        if (write(pipefd[1], msg, strlen(msg)) < 0)
            _exit(3);
        _exit(rc == 0 ? 1 : 0);
    }
    close(pipefd[1]);
    got = read(pipefd[0], why, sizeof(why) - 1);
    close(pipefd[0]);
    assert_true(got > 0);
    why[got] = '\0';
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    snprintf(path, sizeof(path), "cannot mount a tmpfs on %s: Operation not permitted", dir);
    assert_string_equal(why, path);
    snprintf(path, sizeof(path), "%s/t1", dir);
    assert_int_equal(stat(path, &st), -1);
    assert_false(is_tmpfs(dir));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_bounds),
        cmocka_unit_test(test_retain_drops_unused),
        cmocka_unit_test(test_check_refs),
        cmocka_unit_test(test_missing),
        cmocka_unit_test_setup_teardown(test_files_on_tmpfs, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_prune, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_write_missing, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_mount_refused, setup_tmp, teardown_tmp),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
