/* migrate: see migrate.h. One call to etcd at a time, each waited for by
 * running this command's own loop until it answers: a one-shot command,
 * not a daemon, so nothing else waits on the loop meanwhile.
 */
#include "migrate.h"
#include "ctl.h"
#include "elect.h"
#include "errors.h"
#include "etcd.h"
#include "log.h"
#include "store.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <openssl/crypto.h>

#define MIG_CALL_MS 10000
#define MIG_MAX_TABLES 64

typedef struct mig_row {
    char *key;          /* full key */
    uint8_t *value;
    size_t len;
} mig_row_t;

typedef struct mig_table {
    char name[40];
    int64_t rows;       /* keys written under <prefix><name>/ */
} mig_table_t;

typedef struct mig {
    uv_loop_t loop;
    etcd_t *etcd;
    const char *prefix;
    mig_row_t *rows;
    size_t n, cap;
    mig_table_t tables[MIG_MAX_TABLES];
    size_t n_tables;
    char cluster_id[MODEL_ID_LEN * 2 + 1];
    /* the call being waited for */
    int done, rc;
    char err[512];
    etcd_txn_res_t res;
} mig_t;

static int mig_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int mig_fail(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "skiff-controller migrate: %s\n", msg);
    return 1;
}

/* ------------------------------------------------------------ etcd calls */

static void mig_on_txn(void *arg, int rc, const char *err, etcd_answer_t *a)
{
    mig_t *m = arg;

    m->done = 1;
    m->rc = rc;
    snprintf(m->err, sizeof(m->err), "%s", err);
    if (rc == 0) {
        m->res = a->txn; /* taken: the client frees what is left, nothing */
        memset(&a->txn, 0, sizeof(a->txn));
    }
}

/* Runs one txn to its answer (in m->res, freed by the next call). */
static int mig_txn(mig_t *m, const etcd_txn_t *txn)
{
    etcd_txn_res_free(&m->res);
    m->done = 0;
    if (!etcd_txn(m->etcd, txn, MIG_CALL_MS, mig_on_txn, m)) {
        snprintf(m->err, sizeof(m->err), "out of memory");
        return -ENOMEM;
    }
    while (!m->done)
        uv_run(&m->loop, UV_RUN_ONCE);
    return m->rc;
}

static int mig_open(mig_t *m, const migrate_store_t *to, char *err, size_t len)
{
    etcd_config_t ec = { 0 };
    char buf[2048];

    if (etcd_parse_endpoints(to->endpoints, &ec, buf, sizeof(buf), err, len))
        return SKIFF_EINVAL;
    ec.cacert = to->ca;
    ec.cert = to->cert;
    ec.key = to->key;
    if (uv_loop_init(&m->loop)) {
        snprintf(err, len, "cannot make an event loop");
        return -ENOMEM;
    }
    if (!(m->etcd = etcd_create(&m->loop, &ec))) {
        uv_loop_close(&m->loop);
        snprintf(err, len, "out of memory");
        return -ENOMEM;
    }
    m->prefix = to->prefix;
    return 0;
}

static void mig_close(mig_t *m)
{
    etcd_txn_res_free(&m->res);
    if (m->etcd) {
        etcd_close(m->etcd, NULL, NULL);
        uv_run(&m->loop, UV_RUN_DEFAULT);
        uv_loop_close(&m->loop);
    }
    for (size_t i = 0; i < m->n; i++) {
        free(m->rows[i].key);
        free(m->rows[i].value);
    }
    free(m->rows);
}

static char *mig_key(const mig_t *m, const char *table, const char *key)
{
    size_t n = strlen(m->prefix) + strlen(table) + strlen(key) + 2;
    char *k = malloc(n);

    if (k)
        snprintf(k, n, "%s%s/%s", m->prefix, table, key);
    return k;
}

/* ------------------------------------------------------------- the rows */

static mig_table_t *mig_table(mig_t *m, const char *name)
{
    for (size_t i = 0; i < m->n_tables; i++)
        if (strcmp(m->tables[i].name, name) == 0)
            return &m->tables[i];
    if (m->n_tables == MIG_MAX_TABLES || strlen(name) >= sizeof(m->tables[0].name))
        return NULL;
    snprintf(m->tables[m->n_tables].name, sizeof(m->tables[0].name), "%s", name);
    return &m->tables[m->n_tables++];
}

static int mig_add(mig_t *m, const char *table, const char *key, const uint8_t *value,
                   size_t len)
{
    mig_table_t *t = mig_table(m, table);
    mig_row_t *r;

    if (!t)
        return -1;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        mig_row_t *grown = realloc(m->rows, cap * sizeof(*grown));
        if (!grown)
            return -1;
        m->rows = grown;
        m->cap = cap;
    }
    r = &m->rows[m->n];
    r->key = mig_key(m, table, key);
    r->value = malloc(len ? len : 1);
    if (!r->key || !r->value) {
        free(r->key);
        free(r->value);
        return -1;
    }
    memcpy(r->value, value, len);
    r->len = len;
    m->n++;
    t->rows++;
    return 0;
}

/* store_scan's callback: every row goes, checked on the way (a row that
 * would not load is refused here, not by the controller after). */
static int mig_on_row(void *arg, const char *table, const char *key, const uint8_t *value,
                      size_t len)
{
    mig_t *m = arg;
    store_batch_t *check = store_batch_new();
    int rc = check ? store_put_row(check, table, key, value, len) : -ENOMEM;

    store_batch_free(check);
    if (rc) {
        fprintf(stderr, "skiff-controller migrate: row %s/%s does not decode\n", table, key);
        return -1;
    }
    if (strcmp(table, "meta") == 0 && strcmp(key, "cluster_id") == 0)
        snprintf(m->cluster_id, sizeof(m->cluster_id), "%.*s",
                 (int)(len < sizeof(m->cluster_id) ? len : sizeof(m->cluster_id) - 1),
                 (const char *)value);
    if (strcmp(table, "tokens") == 0)
        return 0; /* the data dir's files are the SQLite cluster's tokens */
    return mig_add(m, table, key, value, len);
}

/* --------------------------------------------------------------- migrate */

/* Claims the empty prefix: the mark, the cluster id, the store version and
 * the tokens in one txn. */
static int mig_claim(mig_t *m, const char *mark, const char *join, const char *admin)
{
    char *end = etcd_prefix_end(m->prefix), *k[5];
    char version[16];
    etcd_cmp_t cmp = { .key = m->prefix, .range_end = end, .target = ETCD_CMP_CREATE,
                       .result = ETCD_EQUAL, .number = 0 };
    etcd_op_t put[5], count = { .kind = ETCD_OP_RANGE, .key = m->prefix, .range_end = end,
                                .count_only = 1 };
    etcd_txn_t txn = { &cmp, 1, put, 5, &count, 1 };
    int rc = -ENOMEM;

    snprintf(version, sizeof(version), "%d", ELECT_STORE_VERSION);
    k[0] = mig_key(m, "meta", "migrating");
    k[1] = mig_key(m, "meta", "cluster_id");
    k[2] = mig_key(m, "meta", "store_version");
    k[3] = mig_key(m, "tokens", "join");
    k[4] = mig_key(m, "tokens", "admin");
    if (end && k[0] && k[1] && k[2] && k[3] && k[4]) {
        const char *v[5] = { mark, m->cluster_id, version, join, admin };
        for (int i = 0; i < 5; i++)
            put[i] = (etcd_op_t){ .kind = ETCD_OP_PUT, .key = k[i], .value = (const uint8_t *)v[i],
                                  .len = strlen(v[i]) };
        rc = mig_txn(m, &txn);
    }
    for (int i = 0; i < 5; i++)
        free(k[i]);
    free(end);
    if (rc)
        return mig_fail("etcd: %s", m->err);
    if (!m->res.succeeded)
        return mig_fail("--store-prefix %s is not empty (%" PRId64 " keys): migrate into an "
                        "empty prefix, or remove its keys first (etcdctl del --prefix %s)",
                        m->prefix, m->res.n_ranges ? m->res.ranges[0].count : 0, m->prefix);
    return 0;
}

/* The rows, in txns at etcd's limits, each guarded by the mark. */
static int mig_copy(mig_t *m, const char *mark)
{
    char *mk = mig_key(m, "meta", "migrating");
    size_t *sizes = calloc(m->n ? m->n : 1, sizeof(*sizes));
    size_t *ends = calloc(m->n ? m->n : 1, sizeof(*ends));
    etcd_op_t *ops = calloc(m->n ? m->n : 1, sizeof(*ops));
    etcd_cmp_t guard = { .key = mk, .target = ETCD_CMP_VALUE, .result = ETCD_EQUAL,
                         .value = (const uint8_t *)mark, .len = strlen(mark) };
    size_t parts, from = 0;
    int rc = 0;

    if (!mk || !sizes || !ends || !ops) {
        rc = mig_fail("out of memory");
        goto out_free;
    }
    for (size_t i = 0; i < m->n; i++) {
        ops[i] = (etcd_op_t){ .kind = ETCD_OP_PUT, .key = m->rows[i].key,
                              .value = m->rows[i].value, .len = m->rows[i].len };
        sizes[i] = etcd_op_size(&ops[i]);
    }
    parts = elect_split(sizes, m->n, ELECT_TXN_OPS, ELECT_TXN_BYTES, ends);
    for (size_t p = 0; p < parts; p++) {
        etcd_txn_t txn = { &guard, 1, ops + from, ends[p] - from, NULL, 0 };
        if (mig_txn(m, &txn)) {
            rc = mig_fail("etcd: %s (part %zu of %zu; the prefix keeps the mark meta/migrating: "
                          "remove the prefix and migrate again)", m->err, p + 1, parts);
            goto out_free;
        }
        if (!m->res.succeeded) {
            rc = mig_fail("the mark meta/migrating of %s changed: another migration runs there",
                          m->prefix);
            goto out_free;
        }
        from = ends[p];
    }
out_free:
    free(mk);
    free(sizes);
    free(ends);
    free(ops);
    return rc;
}

/* Counts the keys of every table in etcd; ends the migration when each is
 * what was written. */
static int mig_check(mig_t *m, const char *mark)
{
    etcd_op_t counts[MIG_MAX_TABLES];
    char *keys[MIG_MAX_TABLES] = { 0 }, *ends[MIG_MAX_TABLES] = { 0 };
    char *mk = mig_key(m, "meta", "migrating");
    etcd_cmp_t guard = { .key = mk, .target = ETCD_CMP_VALUE, .result = ETCD_EQUAL,
                         .value = (const uint8_t *)mark, .len = strlen(mark) };
    etcd_op_t del = { .kind = ETCD_OP_DELETE, .key = mk };
    etcd_txn_t txn = { &guard, 1, counts, m->n_tables, NULL, 0 };
    int rc = 0;

    for (size_t i = 0; i < m->n_tables; i++) {
        keys[i] = mig_key(m, m->tables[i].name, "");
        ends[i] = keys[i] ? etcd_prefix_end(keys[i]) : NULL;
        if (!keys[i] || !ends[i]) {
            rc = mig_fail("out of memory");
            goto out_free;
        }
        counts[i] = (etcd_op_t){ .kind = ETCD_OP_RANGE, .key = keys[i], .range_end = ends[i],
                                 .count_only = 1 };
    }
    if (!mk || mig_txn(m, &txn) || !m->res.succeeded || m->res.n_ranges != m->n_tables) {
        rc = mig_fail("counting the keys in etcd: %s", m->rc ? m->err : "the mark changed");
        goto out_free;
    }
    for (size_t i = 0; i < m->n_tables; i++) {
        /* meta also holds the mark, until the end */
        int64_t want = m->tables[i].rows + (strcmp(m->tables[i].name, "meta") == 0);
        if (m->res.ranges[i].count != want) {
            rc = mig_fail("the counts do not match: table %s has %" PRId64 " keys in etcd, %"
                          PRId64 " were copied (the prefix keeps the mark meta/migrating)",
                          m->tables[i].name, m->res.ranges[i].count, want);
            goto out_free;
        }
    }
    txn = (etcd_txn_t){ &guard, 1, &del, 1, NULL, 0 };
    if (mig_txn(m, &txn) || !m->res.succeeded)
        rc = mig_fail("ending the migration: %s", m->rc ? m->err : "the mark changed");
out_free:
    for (size_t i = 0; i < m->n_tables; i++) {
        free(keys[i]);
        free(ends[i]);
    }
    free(mk);
    return rc;
}

static const char migrate_usage[] =
    "Usage: skiff-controller migrate --from sqlite:DIR --to etcd://HOST:PORT[,HOST:PORT...]\n"
    "                                [--store-prefix PREFIX] [--store-ca FILE\n"
    "                                [--store-cert FILE --store-key FILE]]\n"
    "\n"
    "Copies a cluster's state (services, tasks, nodes, tokens, and every other table; the\n"
    "events excepted) from the SQLite data dir DIR into an empty etcd prefix, and checks\n"
    "that the counts match. Stop the SQLite controller first; then start the controllers\n"
    "with --store etcd://... --store-prefix PREFIX (and --data-dir DIR on this machine).\n";

int migrate_main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "from", required_argument, NULL, 'f' }, { "to", required_argument, NULL, 't' },
        { "store-prefix", required_argument, NULL, 'p' },
        { "store-ca", required_argument, NULL, 'a' }, { "store-cert", required_argument, NULL, 'c' },
        { "store-key", required_argument, NULL, 'k' }, { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    migrate_store_t to = { .prefix = "/skiff/default/" };
    const char *from = NULL;
    char dir_cluster[MODEL_ID_LEN * 2 + 1], join[CTL_TOKEN_LEN + 1], admin[CTL_TOKEN_LEN + 1];
    char path[PATH_MAX + 16], err[512], mark[ELECT_ID_LEN + 1];
    unsigned char raw[ELECT_ID_LEN / 2];
    mig_t m = { 0 };
    store_t *src;
    int opt, rc;
    size_t n;

    log_init("migrate", LOG_WARN);
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'f':
            if (strncmp(optarg, "sqlite:", 7) != 0 || !optarg[7])
                return mig_fail("--from \"%s\": want sqlite:DIR", optarg), 2;
            from = optarg + 7;
            break;
        case 't':
            if (strncmp(optarg, "etcd://", 7) != 0 || !optarg[7])
                return mig_fail("--to \"%s\": want etcd://HOST:PORT[,HOST:PORT...]", optarg), 2;
            to.endpoints = optarg + 7;
            break;
        case 'p':
            n = strlen(optarg);
            if (n < 2 || n > 200 || optarg[0] != '/' || optarg[n - 1] != '/' ||
                strpbrk(optarg, " \t\r\n"))
                return mig_fail("--store-prefix \"%s\": must start and end with '/'", optarg), 2;
            to.prefix = optarg;
            break;
        case 'a':
        case 'c':
        case 'k':
            if (access(optarg, R_OK))
                return mig_fail("--%s \"%s\": %s", opt == 'a' ? "store-ca" : opt == 'c'
                                ? "store-cert" : "store-key", optarg, strerror(errno)), 2;
            *(opt == 'a' ? &to.ca : opt == 'c' ? &to.cert : &to.key) = optarg;
            break;
        case 'h':
            fputs(migrate_usage, stdout);
            return 0;
        default:
            fprintf(stderr, "Run 'skiff-controller migrate --help' for the options.\n");
            return 2;
        }
    }
    if (optind < argc)
        return mig_fail("unexpected argument \"%s\"", argv[optind]), 2;
    if (!from || !to.endpoints)
        return mig_fail("give --from sqlite:DIR and --to etcd://HOST:PORT[,...]"), 2;
    {
        etcd_config_t ec;
        char buf[2048];
        if (etcd_parse_endpoints(to.endpoints, &ec, buf, sizeof(buf), err, sizeof(err)))
            return mig_fail("--to: %s", err), 2;
    }
    snprintf(path, sizeof(path), "%s/state.db", from);
    if (access(path, R_OK))
        return mig_fail("%s: %s (is %s a controller's data dir?)", path, strerror(errno), from);
    tokens_read_existing(from, dir_cluster, join, admin);
    if (!*join || !*admin)
        return mig_fail("%s has no join-token and admin-token: not a controller's data dir", from);
    if (mig_open(&m, &to, err, sizeof(err)))
        return mig_fail("%s", err);
    if (!(src = store_sqlite_open(&m.loop, path, err, sizeof(err)))) {
        rc = mig_fail("%s", err);
        goto out_close;
    }
    rc = src->ops->scan(src, mig_on_row, &m, err, sizeof(err));
    store_close(src);
    if (rc) {
        rc = mig_fail("reading %s: %s", path, err);
        goto out_close;
    }
    if (!*m.cluster_id) {
        rc = mig_fail("%s has no cluster id: was its controller ever started?", path);
        goto out_close;
    }
    /* The secrets' data key, a file beside state.db: on etcd, a row
     * (secrets.c), as it is (wrapped, with --autolock). */
    {
        char kpath[PATH_MAX + 16], line[SEAL_KEY_TEXT_MAX] = "";
        FILE *f;
        snprintf(kpath, sizeof(kpath), "%s/secret-key", from);
        if ((f = fopen(kpath, "re"))) {
            if (!fgets(line, sizeof(line), f))
                line[0] = '\0';
            fclose(f);
            line[strcspn(line, "\n")] = '\0';
            rc = *line ? mig_add(&m, "keys", "secret", (const uint8_t *)line, strlen(line)) : 0;
            OPENSSL_cleanse(line, sizeof(line));
            if (rc) {
                rc = mig_fail("%s: out of memory", kpath);
                goto out_close;
            }
        }
    }
    /* The claim writes these; the check counts them. */
    if (!mig_table(&m, "meta") || !mig_table(&m, "tokens")) {
        rc = mig_fail("too many tables");
        goto out_close;
    }
    mig_table(&m, "meta")->rows += 1; /* store_version (cluster_id is a row of the scan) */
    mig_table(&m, "tokens")->rows += 2;
    while (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        ;
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(mark + 2 * i, 3, "%02x", raw[i]);
    /* meta/cluster_id is the claim's: not copied twice. */
    for (size_t i = 0; i < m.n; i++) {
        char *k = mig_key(&m, "meta", "cluster_id");
        int same = k && strcmp(k, m.rows[i].key) == 0;
        free(k);
        if (same) {
            free(m.rows[i].key);
            free(m.rows[i].value);
            m.rows[i] = m.rows[--m.n];
            break;
        }
    }
    if ((rc = mig_claim(&m, mark, join, admin)) || (rc = mig_copy(&m, mark)) ||
        (rc = mig_check(&m, mark)))
        goto out_close;
    printf("migrated cluster %s from %s to etcd://%s prefix %s:", m.cluster_id, from,
           to.endpoints, to.prefix);
    for (size_t i = 0; i < m.n_tables; i++)
        printf(" %s %" PRId64 "%s", m.tables[i].name, m.tables[i].rows,
               i + 1 < m.n_tables ? "," : "");
    printf(" (the counts match)\n");
    rc = 0;

out_close:
    memset(join, 0, sizeof(join));
    memset(admin, 0, sizeof(admin));
    mig_close(&m);
    return rc;
}

int migrate_rotate_token(const migrate_store_t *to, const char *data_dir, const char *which)
{
    mig_t m = { 0 };
    char token[CTL_TOKEN_LEN + 1], err[PATH_MAX + 64], name[32], *ck = NULL, *tk = NULL;
    char full[TOKEN_LEN + 1] = "";
    token_t whole;
    etcd_cmp_t cmp = { .target = ETCD_CMP_CREATE, .result = ETCD_GREATER, .number = 0 };
    etcd_op_t put = { .kind = ETCD_OP_PUT };
    etcd_txn_t txn = { &cmp, 1, &put, 1, NULL, 0 };
    int rc;

    log_init("controller", LOG_WARN);
    if (mig_open(&m, to, err, sizeof(err)))
        return mig_fail("%s", err);
    tokens_new(token);
    ck = mig_key(&m, "meta", "cluster_id");
    tk = mig_key(&m, "tokens", which);
    if (!ck || !tk) {
        rc = mig_fail("out of memory");
        goto out_close;
    }
    cmp.key = ck;
    put.key = tk;
    put.value = (const uint8_t *)token;
    put.len = strlen(token);
    if (mig_txn(&m, &txn)) {
        rc = mig_fail("etcd: %s", m.err);
        goto out_close;
    }
    if (!m.res.succeeded) {
        rc = mig_fail("--store-prefix %s holds no skiff cluster", to->prefix);
        goto out_close;
    }
    snprintf(name, sizeof(name), "%s-token", which);
    /* The file holds the whole token: the CA's digest (from the ca.pem
     * that the data dir's controller wrote) and the new secret. */
    if (tokens_ca_digest(data_dir, whole.digest, err, sizeof(err)) == 0) {
        memcpy(whole.secret, token, sizeof(whole.secret));
        token_format(&whole, full);
    }
    if (!*full) {
        rc = mig_fail("the new token is in the store, but not in %s: %s", data_dir, err);
        goto out_close;
    }
    if (tokens_write_file(data_dir, name, full, err, sizeof(err))) {
        rc = mig_fail("the new token is in the store, but not in %s: %s", data_dir, err);
        goto out_close;
    }
    printf("new %s token written to the store (prefix %s) and to %s/%s\n", which, to->prefix,
           data_dir, name);
    rc = 0;
out_close:
    memset(token, 0, sizeof(token));
    memset(full, 0, sizeof(full));
    memset(&whole, 0, sizeof(whole));
    free(ck);
    free(tk);
    mig_close(&m);
    return rc;
}
