/* store_etcd: the etcd backend of the store (store.h), for several
 * controllers on one etcd cluster, one of them leading.
 *
 * Keys: <prefix><table>/<key> for the rows (store.h), and two of the
 * election's own: <prefix>leader (the leader's address and instance,
 * attached to its lease) and <prefix>controllers/<instance> (each
 * controller's registration, attached to its lease, for `skiff controller
 * ls`). Values are the rows' generic values.
 *
 * A controller's life on it, all on the loop (etcd.h):
 *   identity  one txn: an empty prefix is made this cluster's (cluster id,
 *             store version, tokens); otherwise what it holds is read and
 *             judged (elect.h): another cluster's state is refused.
 *   load      the whole prefix, page by page at one revision, into a warm
 *             copy (a hash of key -> value), then a watch from the next
 *             revision keeps that copy current, leader or not.
 *   elect     a lease, kept alive every third of its TTL; a campaign txn
 *             (elect.h) that also registers this controller. A follower
 *             campaigns again whenever the leader key goes.
 *   lead      once the watch has brought the copy up to the revision at
 *             which this controller won, the model is built from the copy
 *             (on_lead). Every commit is one txn, or several in order at
 *             etcd's limits, each guarded by the leader key's create
 *             revision: fenced, a write of a leader that lost its key fails
 *             whole, and it steps down.
 * A leader whose keepalives go unanswered for its TTL, or whose commit
 * fails or is refused, stops acting at once (on_lost), gives its lease up
 * (so that its key goes and another can lead), and campaigns again with a
 * new lease. Every call to etcd retries over the endpoints (etcd.h); what
 * still fails is retried here with a backoff, never a crash.
 */
#include "store.h"
#include "elect.h"
#include "errors.h"
#include "etcd.h"
#include "log.h"
#include "model.h"
#include "pbutil.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <uthash.h>

#define SE_PAGE 500                 /* keys per page of the load */
#define SE_BACKOFF_MIN_MS 250
#define SE_BACKOFF_MAX_MS 5000
#define SE_CALL_MS 5000             /* deadline of load and campaign calls */
#define SE_IDENTITY_MS 2000
#define SE_REVOKE_MS 1000
#define SE_MAX_VALUE ((size_t)768 << 10)

/* One key of the warm copy (relative to the prefix). */
typedef struct se_kv {
    char *key;
    uint8_t *value;
    size_t len;
    int64_t create_rev, mod_rev, lease;
    UT_hash_handle hh;
} se_kv_t;

enum se_state { SE_IDENTITY, SE_LOADING, SE_RUNNING, SE_STOPPING, SE_STOPPED };

/* A row of a commit, made into an operation. */
typedef struct se_op {
    char *key;          /* full key (owned) */
    const store_row_t *row;
} se_op_t;

typedef struct store_etcd {
    store_t base;
    uv_loop_t *loop;
    etcd_t *etcd;
    char *prefix, *prefix_end;
    char *address, *data_cluster, *data_join, *data_admin;
    int data_fresh;             /* data_cluster was made here, not read from the data dir */
    char describe[512];
    int64_t lease_ms;
    char instance[ELECT_ID_LEN + 1];
    model_t *model;
    const store_events_t *ev;
    void *ev_arg;
    enum se_state state;
    uv_timer_t timer;           /* retries with backoff */
    uint64_t backoff_ms;
    unsigned failures;          /* in a row, of the step in progress */
    etcd_req_t *req;            /* the identity, load, grant or campaign call */
    char health[160];
    /* identity */
    char cluster_id[MODEL_ID_LEN * 2 + 1];
    char join[72], admin[72];
    /* the warm copy */
    se_kv_t *kvs;
    int64_t rev;                /* every event up to it is in the copy */
    int64_t load_rev;
    char *load_from;
    etcd_watch_t *watch;
    int64_t event_seq;          /* the next event's number */
    /* the lease */
    int64_t lease_id;
    int64_t ttl_ms;
    uint64_t lease_ok_ms;       /* uv_hrtime, ms: sent time of the last keepalive answered */
    uint64_t ka_sent_ms;
    etcd_req_t *ka_req;
    uv_timer_t lease_timer;
    /* leadership */
    int leading;
    int won;                    /* won, waiting for the copy to reach term */
    int64_t term;               /* the leader key's create revision */
    elect_who_t leader;         /* who leads, as the copy says ("" none) */
    char followed[128];         /* the address last told on_follow */
    /* the commit in flight */
    store_batch_t *batch;
    se_op_t *ops;
    size_t n_ops;
    size_t *ends;
    size_t n_parts, part;
    int64_t prune_below;        /* events under this number go, in the last part */
    etcd_req_t *commit_req;
    store_done_fn cb;
    void *cb_arg;
    /* stopping */
    int handles;
    void (*stop_done)(void *arg);
    void *stop_arg;
} store_etcd_t;

static const store_ops_t store_etcd_ops;

static void se_identity(store_etcd_t *s);
static void se_load_page(store_etcd_t *s);
static void se_grant(store_etcd_t *s);
static void se_campaign(store_etcd_t *s);
static void se_maybe_lead(store_etcd_t *s);
static void se_lose(store_etcd_t *s, const char *why);
static void se_elect_next(store_etcd_t *s);
static void se_stop_continue(store_etcd_t *s);

#define CTL_HEX_TOKEN 64

/* n random hex characters and a NUL. */
static void se_hex(char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[64];
    size_t got = 0;

    while (got < (n + 1) / 2) {
        ssize_t r = getrandom(raw + got, (n + 1) / 2 - got, 0);
        if (r > 0)
            got += (size_t)r;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = hex[(raw[i / 2] >> (i % 2 ? 0 : 4)) & 15];
    out[n] = '\0';
}

static uint64_t se_mono_ms(void)
{
    return uv_hrtime() / 1000000;
}

static void se_health(store_etcd_t *s, int rc, const char *err)
{
    if (rc == 0)
        snprintf(s->health, sizeof(s->health), "healthy");
    else
        snprintf(s->health, sizeof(s->health), "unreachable (%.140s)", err);
}

/* prefix + rel, malloc'd. */
static char *se_key(const store_etcd_t *s, const char *rel)
{
    size_t n = strlen(s->prefix) + strlen(rel) + 1;
    char *k = malloc(n);

    if (k)
        snprintf(k, n, "%s%s", s->prefix, rel);
    return k;
}

static char *se_key2(const store_etcd_t *s, const char *table, const char *key)
{
    size_t n = strlen(s->prefix) + strlen(table) + strlen(key) + 2;
    char *k = malloc(n);

    if (k)
        snprintf(k, n, "%s%s/%s", s->prefix, table, key);
    return k;
}

/* Runs fn after the backoff, which then grows. */
static void se_retry(store_etcd_t *s, uv_timer_cb fn, const char *what, const char *err)
{
    uint64_t wait = s->backoff_ms ? s->backoff_ms : SE_BACKOFF_MIN_MS;

    if (s->state >= SE_STOPPING)
        return;
    if (s->failures++ % 20 == 0)
        log_warn("etcd: %s: %s; retrying in %" PRIu64 " ms", what, err, wait);
    else
        log_debug("etcd: %s: %s; retrying in %" PRIu64 " ms", what, err, wait);
    s->backoff_ms = wait * 2 > SE_BACKOFF_MAX_MS ? SE_BACKOFF_MAX_MS : wait * 2;
    uv_timer_start(&s->timer, fn, wait, 0);
}

static void se_succeeded(store_etcd_t *s)
{
    if (s->failures > 0)
        log_info("etcd answers again (%s)", etcd_endpoint(s->etcd));
    s->failures = 0;
    s->backoff_ms = 0;
}

/* ------------------------------------------------------------ warm copy */

static se_kv_t *se_get(store_etcd_t *s, const char *rel)
{
    se_kv_t *kv = NULL;

    HASH_FIND_STR(s->kvs, rel, kv);
    return kv;
}

static void se_kv_free(se_kv_t *kv)
{
    free(kv->key);
    free(kv->value);
    free(kv);
}

static void se_copy_clear(store_etcd_t *s)
{
    se_kv_t *kv, *tmp;

    HASH_ITER(hh, s->kvs, kv, tmp) {
        HASH_DEL(s->kvs, kv);
        se_kv_free(kv);
    }
}

static int se_is_event(const char *rel)
{
    return strncmp(rel, "events/", 7) == 0;
}

static void se_saw_event(store_etcd_t *s, const char *rel)
{
    int64_t seq = strtoll(rel + 7, NULL, 10);

    if (seq >= s->event_seq)
        s->event_seq = seq + 1;
}

/* Puts a key of the store into the copy (events are only counted).
 * Returns 0 or -ENOMEM. */
static int se_copy_put(store_etcd_t *s, const etcd_kv_t *e)
{
    const char *rel = e->key + strlen(s->prefix);
    se_kv_t *kv;
    uint8_t *value;

    if (strncmp(e->key, s->prefix, strlen(s->prefix)) != 0)
        return 0;
    if (se_is_event(rel)) {
        se_saw_event(s, rel);
        return 0;
    }
    value = malloc(e->len ? e->len : 1);
    if (!value)
        return -ENOMEM;
    if (e->len)
        memcpy(value, e->value, e->len);
    if (!(kv = se_get(s, rel))) {
        if (!(kv = calloc(1, sizeof(*kv))) || !(kv->key = strdup(rel))) {
            free(kv);
            free(value);
            return -ENOMEM;
        }
        HASH_ADD_KEYPTR(hh, s->kvs, kv->key, strlen(kv->key), kv);
    }
    free(kv->value);
    kv->value = value;
    kv->len = e->len;
    kv->create_rev = e->create_revision;
    kv->mod_rev = e->mod_revision;
    kv->lease = e->lease;
    return 0;
}

static void se_copy_delete(store_etcd_t *s, const char *key)
{
    se_kv_t *kv;

    if (strncmp(key, s->prefix, strlen(s->prefix)) != 0)
        return;
    if ((kv = se_get(s, key + strlen(s->prefix)))) {
        HASH_DEL(s->kvs, kv);
        se_kv_free(kv);
    }
}

/* Who the copy says leads. */
static void se_read_leader(store_etcd_t *s)
{
    se_kv_t *kv = se_get(s, "leader");

    if (!kv || elect_who_decode(kv->value, kv->len, &s->leader))
        memset(&s->leader, 0, sizeof(s->leader));
}

/* Tells the controller whom it follows, when that changed. */
static void se_tell_follow(store_etcd_t *s)
{
    const char *addr = s->leader.address;

    if (s->leading || s->won || s->state != SE_RUNNING)
        return;
    if (strcmp(s->leader.instance, s->instance) == 0)
        addr = ""; /* our own old key, not expired yet: nobody to send peers to */
    if (strcmp(addr, s->followed) == 0 && *s->followed)
        return;
    snprintf(s->followed, sizeof(s->followed), "%s", addr);
    s->ev->on_follow(s->ev_arg, addr);
}

static void se_tokens_from_copy(store_etcd_t *s, char *join, size_t jl, char *admin, size_t al)
{
    se_kv_t *j = se_get(s, "tokens/join"), *a = se_get(s, "tokens/admin");

    snprintf(join, jl, "%.*s", j ? (int)(j->len < jl ? j->len : jl - 1) : 0,
             j ? (const char *)j->value : "");
    snprintf(admin, al, "%.*s", a ? (int)(a->len < al ? a->len : al - 1) : 0,
             a ? (const char *)a->value : "");
}

/* A token changed in the store (a rotation): the controller hears of it. */
static void se_check_tokens(store_etcd_t *s)
{
    char join[72], admin[72];

    se_tokens_from_copy(s, join, sizeof(join), admin, sizeof(admin));
    if (!*join || !*admin || (strcmp(join, s->join) == 0 && strcmp(admin, s->admin) == 0))
        return;
    snprintf(s->join, sizeof(s->join), "%s", join);
    snprintf(s->admin, sizeof(s->admin), "%s", admin);
    s->ev->on_identity(s->ev_arg, s->cluster_id, s->join, s->admin);
}

/* ------------------------------------------------------------------ watch */

static void se_on_watch_events(void *arg, const etcd_watch_res_t *res)
{
    store_etcd_t *s = arg;
    int leader_changed = 0, tokens_changed = 0;

    if (s->state >= SE_STOPPING)
        return; /* its own leader key going, as it gives the lease up */

    for (size_t i = 0; i < res->n; i++) {
        const etcd_event_t *e = &res->events[i];
        const char *rel = e->kv.key + strlen(s->prefix);

        if (strncmp(e->kv.key, s->prefix, strlen(s->prefix)) != 0)
            continue;
        if (e->deleted)
            se_copy_delete(s, e->kv.key);
        else if (se_copy_put(s, &e->kv))
            log_error("etcd: out of memory keeping the warm copy");
        if (e->kv.mod_revision > s->rev)
            s->rev = e->kv.mod_revision;
        leader_changed |= strcmp(rel, "leader") == 0;
        tokens_changed |= strncmp(rel, "tokens/", 7) == 0;
    }
    if (tokens_changed)
        se_check_tokens(s);
    if (leader_changed) {
        se_kv_t *lk = se_get(s, "leader");
        int ours = lk && lk->create_rev == s->term && s->term > 0;

        se_read_leader(s);
        if ((s->leading || (s->won && s->rev >= s->term)) && !ours) {
            se_lose(s, "the leader key is gone: another controller may lead");
            return;
        }
        se_tell_follow(s);
    }
    se_maybe_lead(s);
    se_elect_next(s);
}

static void se_reload(uv_timer_t *t);

static void se_on_watch_end(void *arg, int rc, const char *err, int64_t compact_revision)
{
    store_etcd_t *s = arg;

    s->watch = NULL;
    if (s->state >= SE_STOPPING)
        return;
    /* The events the copy needs are gone: read it all again. */
    log_warn("etcd watch: %s; reading the store again", err);
    if (s->leading)
        se_lose(s, "the watch of the store broke off");
    s->state = SE_LOADING;
    uv_timer_start(&s->timer, se_reload, 0, 0);
}

static const etcd_watch_ops_t se_watch_ops = {
    .on_events = se_on_watch_events,
    .on_end = se_on_watch_end,
};

/* ------------------------------------------------------------ identity */

static void se_on_identity_timer(uv_timer_t *t)
{
    se_identity(t->data);
}

static void se_copy_str(char *out, size_t len, const etcd_range_res_t *r)
{
    if (r->n > 0 && r->kvs[0].value)
        snprintf(out, len, "%.*s", (int)(r->kvs[0].len < len ? r->kvs[0].len : len - 1),
                 (const char *)r->kvs[0].value);
    else
        out[0] = '\0';
}

static void se_on_identity(void *arg, int rc, const char *err, etcd_answer_t *a)
{
    store_etcd_t *s = arg;
    elect_found_t f = { 0 };
    char why[512], version[32] = "";

    s->req = NULL;
    se_health(s, rc, err);
    if (rc) {
        se_retry(s, se_on_identity_timer, "reading the cluster's identity", err);
        return;
    }
    se_succeeded(s);
    if (a->txn.succeeded) {
        log_info("etcd: the empty prefix %s is now cluster %s's", s->prefix, s->data_cluster);
        snprintf(s->cluster_id, sizeof(s->cluster_id), "%s", s->data_cluster);
        s->data_fresh = 0;
        snprintf(s->join, sizeof(s->join), "%s", s->data_join);
        snprintf(s->admin, sizeof(s->admin), "%s", s->data_admin);
    } else {
        if (a->txn.n_ranges < 6) {
            se_retry(s, se_on_identity_timer, "reading the cluster's identity",
                     "an answer without its ranges");
            return;
        }
        f.has_cluster = a->txn.ranges[0].n > 0;
        se_copy_str(f.cluster_id, sizeof(f.cluster_id), &a->txn.ranges[0]);
        se_copy_str(version, sizeof(version), &a->txn.ranges[1]);
        f.store_version = strtoll(version, NULL, 10);
        f.migrating = a->txn.ranges[2].n > 0;
        se_copy_str(s->join, sizeof(s->join), &a->txn.ranges[3]);
        se_copy_str(s->admin, sizeof(s->admin), &a->txn.ranges[4]);
        f.has_tokens = *s->join && *s->admin;
        f.keys = a->txn.ranges[5].count;
        switch (elect_judge(&f, s->data_fresh ? "" : s->data_cluster, s->prefix, why,
                            sizeof(why))) {
        case ELECT_REFUSE:
            s->ev->on_fatal(s->ev_arg, why);
            return;
        case ELECT_WAIT:
            se_retry(s, se_on_identity_timer, "waiting", why);
            return;
        case ELECT_OURS:
            break;
        }
        snprintf(s->cluster_id, sizeof(s->cluster_id), "%.*s", (int)sizeof(s->cluster_id) - 1,
                 f.cluster_id);
    }
    /* What the data dir had, or made for a store that had nothing. */
    s->ev->on_identity(s->ev_arg, s->cluster_id, s->join, s->admin);
    s->state = SE_LOADING;
    se_load_page(s);
}

static void se_identity(store_etcd_t *s)
{
    char *k[6] = { se_key(s, "meta/cluster_id"), se_key(s, "meta/store_version"),
                   se_key(s, "meta/migrating"), se_key(s, "tokens/join"),
                   se_key(s, "tokens/admin"), NULL };
    char version[16];
    etcd_cmp_t cmp = { .key = s->prefix, .range_end = s->prefix_end, .target = ETCD_CMP_CREATE,
                       .result = ETCD_EQUAL, .number = 0 };
    etcd_op_t put[4], get[6];
    etcd_txn_t txn = { &cmp, 1, put, 4, get, 6 };
    int ok = k[0] && k[1] && k[2] && k[3] && k[4];

    if (ok) {
        snprintf(version, sizeof(version), "%d", ELECT_STORE_VERSION);
        put[0] = (etcd_op_t){ .kind = ETCD_OP_PUT, .key = k[0],
                              .value = (const uint8_t *)s->data_cluster,
                              .len = strlen(s->data_cluster) };
        put[1] = (etcd_op_t){ .kind = ETCD_OP_PUT, .key = k[1], .value = (const uint8_t *)version,
                              .len = strlen(version) };
        put[2] = (etcd_op_t){ .kind = ETCD_OP_PUT, .key = k[3],
                              .value = (const uint8_t *)s->data_join, .len = strlen(s->data_join) };
        put[3] = (etcd_op_t){ .kind = ETCD_OP_PUT, .key = k[4],
                              .value = (const uint8_t *)s->data_admin,
                              .len = strlen(s->data_admin) };
        for (int i = 0; i < 5; i++)
            get[i] = (etcd_op_t){ .kind = ETCD_OP_RANGE, .key = k[i] };
        get[5] = (etcd_op_t){ .kind = ETCD_OP_RANGE, .key = s->prefix, .range_end = s->prefix_end,
                              .count_only = 1 };
        /* Short: an etcd that does not answer at start is said at once. */
        s->req = etcd_txn(s->etcd, &txn, SE_IDENTITY_MS, se_on_identity, s);
    }
    for (int i = 0; i < 5; i++)
        free(k[i]);
    if (!s->req)
        se_retry(s, se_on_identity_timer, "reading the cluster's identity", "out of memory");
}

/* ------------------------------------------------------------------ load */

static void se_on_load_timer(uv_timer_t *t)
{
    se_load_page(t->data);
}

static void se_reload(uv_timer_t *t)
{
    store_etcd_t *s = t->data;

    se_copy_clear(s);
    s->load_rev = 0;
    free(s->load_from);
    s->load_from = NULL;
    se_load_page(s);
}

static void se_on_load(void *arg, int rc, const char *err, etcd_answer_t *a)
{
    store_etcd_t *s = arg;
    const etcd_range_res_t *r = &a->range;
    size_t first = 0;

    s->req = NULL;
    se_health(s, rc, err);
    if (rc) {
        if (a->grpc_code == ETCD_GRPC_OUT_OF_RANGE) {
            /* The revision of the pages before was compacted: all again. */
            se_copy_clear(s);
            s->load_rev = 0;
            free(s->load_from);
            s->load_from = NULL;
        }
        se_retry(s, se_on_load_timer, "reading the state", err);
        return;
    }
    se_succeeded(s);
    if (!s->load_rev)
        s->load_rev = r->revision;
    /* A page after the first starts at the last key of the one before. */
    if (s->load_from && r->n > 0 && strcmp(r->kvs[0].key, s->load_from) == 0)
        first = 1;
    for (size_t i = first; i < r->n; i++) {
        if (se_copy_put(s, &r->kvs[i])) {
            se_retry(s, se_on_load_timer, "reading the state", "out of memory");
            return;
        }
    }
    if (r->more && r->n > 0) {
        char *from = strdup(r->kvs[r->n - 1].key);
        if (!from) {
            se_retry(s, se_on_load_timer, "reading the state", "out of memory");
            return;
        }
        free(s->load_from);
        s->load_from = from;
        se_load_page(s);
        return;
    }
    free(s->load_from);
    s->load_from = NULL;
    s->rev = s->load_rev;
    log_info("etcd: read %u keys at revision %" PRId64, HASH_COUNT(s->kvs), s->rev);
    se_read_leader(s);
    if (!(s->watch = etcd_watch(s->etcd, s->prefix, s->prefix_end, s->rev + 1, &se_watch_ops,
                                s))) {
        se_retry(s, se_reload, "watching the state", "out of memory");
        return;
    }
    s->state = SE_RUNNING;
    se_check_tokens(s);
    se_tell_follow(s);
    se_elect_next(s);
}

static void se_load_page(store_etcd_t *s)
{
    etcd_op_t op = { .kind = ETCD_OP_RANGE, .key = s->load_from ? s->load_from : s->prefix,
                     .range_end = s->prefix_end, .limit = SE_PAGE, .revision = s->load_rev };

    if (s->state >= SE_STOPPING)
        return;
    if (!(s->req = etcd_range(s->etcd, &op, SE_CALL_MS, se_on_load, s)))
        se_retry(s, se_on_load_timer, "reading the state", "out of memory");
}

/* --------------------------------------------------------------- the lease */

static void se_on_grant_timer(uv_timer_t *t)
{
    se_grant(t->data);
}

static void se_on_keepalive(void *arg, int rc, const char *err, etcd_answer_t *a)
{
    store_etcd_t *s = arg;

    s->ka_req = NULL;
    if (s->state >= SE_STOPPING)
        return;
    se_health(s, rc, err);
    if (rc == 0 && a->ttl > 0) {
        s->lease_ok_ms = s->ka_sent_ms;
        return;
    }
    if (rc == 0 || a->grpc_code == ETCD_GRPC_NOT_FOUND) {
        /* The lease is gone: so are the leader key and the registration. */
        log_warn("etcd: lease %" PRIx64 " expired", (uint64_t)s->lease_id);
        s->lease_id = 0;
        if (s->leading || s->won)
            se_lose(s, "the leader lease expired");
        else
            se_elect_next(s);
        return;
    }
    log_debug("etcd: keepalive: %s", err);
}

static void se_on_lease_timer(uv_timer_t *t)
{
    store_etcd_t *s = t->data;
    uint64_t now = se_mono_ms();

    if (s->state >= SE_STOPPING || !s->lease_id)
        return;
    if ((s->leading || s->won) && !elect_lease_holds(now, s->lease_ok_ms, s->ttl_ms)) {
        se_lose(s, "no keepalive of the leader lease was answered within its TTL");
        return;
    }
    if (s->ka_req && now - s->ka_sent_ms >= (uint64_t)s->ttl_ms / 3) {
        /* Stuck on a member that lost its leader: a fresh one, which may go
         * to a member that has one again. */
        etcd_cancel(s->etcd, s->ka_req);
        s->ka_req = NULL;
    }
    if (!s->ka_req) {
        s->ka_sent_ms = now;
        s->ka_req = etcd_lease_keepalive(s->etcd, s->lease_id, s->ttl_ms / 3, se_on_keepalive, s);
    }
}

static void se_on_grant(void *arg, int rc, const char *err, etcd_answer_t *a)
{
    store_etcd_t *s = arg;
    uint64_t period;

    s->req = NULL;
    se_health(s, rc, err);
    if (rc || a->lease_id == 0 || a->ttl <= 0) {
        se_retry(s, se_on_grant_timer, "granting a lease", rc ? err : "no lease in the answer");
        return;
    }
    se_succeeded(s);
    s->lease_id = a->lease_id;
    s->ttl_ms = a->ttl * 1000;
    s->lease_ok_ms = s->ka_sent_ms;
    /* A keepalive every sixth of the TTL, each given a third: an etcd that
     * elects a new leader (a second or two) costs this lease nothing. */
    period = (uint64_t)s->ttl_ms / 6;
    uv_timer_start(&s->lease_timer, se_on_lease_timer, period, period);
    log_debug("etcd: lease %" PRIx64 ", TTL %" PRId64 " s", (uint64_t)s->lease_id, a->ttl);
    se_campaign(s);
}

static void se_grant(store_etcd_t *s)
{
    if (s->state != SE_RUNNING || s->req)
        return;
    s->ka_sent_ms = se_mono_ms();
    if (!(s->req = etcd_lease_grant(s->etcd, elect_ttl_s(s->lease_ms), SE_CALL_MS, se_on_grant,
                                    s)))
        se_retry(s, se_on_grant_timer, "granting a lease", "out of memory");
}

static void se_on_revoked(void *arg, int rc, const char *err, etcd_answer_t *a)
{
    store_etcd_t *s = arg;

    if (rc)
        log_debug("etcd: revoking the lease: %s (it runs out on its own)", err);
    if (s->state == SE_STOPPING)
        se_stop_continue(s);
}

/* Gives the lease up: its keys (leader, registration) go with it. Returns
 * 1 when the revoke is on its way (se_on_revoked follows). */
static int se_drop_lease(store_etcd_t *s)
{
    int64_t id = s->lease_id;

    if (!id)
        return 0;
    uv_timer_stop(&s->lease_timer);
    if (s->ka_req) {
        etcd_cancel(s->etcd, s->ka_req);
        s->ka_req = NULL;
    }
    s->lease_id = 0;
    s->lease_ok_ms = 0;
    return etcd_lease_revoke(s->etcd, id, SE_REVOKE_MS, se_on_revoked, s) != NULL;
}

/* ------------------------------------------------------------ the election */

static void se_on_campaign_timer(uv_timer_t *t)
{
    store_etcd_t *s = t->data;

    if (!s->lease_id)
        se_grant(s);
    else if (!s->leading && !s->won)
        se_campaign(s);
}

static void se_on_campaign(void *arg, int rc, const char *err, etcd_answer_t *a)
{
    store_etcd_t *s = arg;
    elect_who_t who;
    int64_t term;

    s->req = NULL;
    se_health(s, rc, err);
    if (rc) {
        se_retry(s, se_on_campaign_timer, "campaigning", err);
        return;
    }
    se_succeeded(s);
    switch (elect_campaign_outcome(&a->txn, s->instance, s->lease_id, &term, &who)) {
    case ELECT_WON:
        s->won = 1;
        s->term = term;
        log_info("elected leader at revision %" PRId64 "; catching up with the store", term);
        se_maybe_lead(s);
        return;
    case ELECT_AGAIN:
        se_elect_next(s);
        return;
    case ELECT_FOLLOW:
        break;
    }
    if (s->rev < a->revision)
        s->leader = who; /* the copy may not have it yet */
    se_tell_follow(s);
    se_elect_next(s);
}

/* The next step of the election, when none is in flight: a lease, then a
 * campaign while nobody leads. */
static void se_elect_next(store_etcd_t *s)
{
    if (s->state != SE_RUNNING || s->req || uv_is_active((uv_handle_t *)&s->timer))
        return;
    if (!s->lease_id)
        se_grant(s);
    else if (!s->leading && !s->won && !*s->leader.instance)
        se_campaign(s);
}

static void se_campaign(store_etcd_t *s)
{
    char *lk = se_key(s, "leader"), *rk = se_key2(s, "controllers", s->instance);
    char value[512];
    size_t len;
    elect_who_t me = { 0 };
    etcd_cmp_t cmp = { .key = lk, .target = ETCD_CMP_CREATE, .result = ETCD_EQUAL };
    etcd_op_t success[2], failure[2];
    etcd_txn_t txn = { &cmp, 1, success, 2, failure, 2 };

    if (s->state != SE_RUNNING || s->req || s->leading || s->won || !s->lease_id)
        goto out_free;
    snprintf(me.address, sizeof(me.address), "%s", s->address);
    snprintf(me.instance, sizeof(me.instance), "%s", s->instance);
    len = elect_who_encode(&me, SKIFF_VERSION, model_wall_ms(), value, sizeof(value));
    if (!lk || !rk || !len) {
        se_retry(s, se_on_campaign_timer, "campaigning", "out of memory");
        goto out_free;
    }
    success[0] = (etcd_op_t){ .kind = ETCD_OP_PUT, .key = lk, .value = (uint8_t *)value,
                              .len = len, .lease = s->lease_id };
    success[1] = (etcd_op_t){ .kind = ETCD_OP_PUT, .key = rk, .value = (uint8_t *)value,
                              .len = len, .lease = s->lease_id };
    failure[0] = (etcd_op_t){ .kind = ETCD_OP_RANGE, .key = lk };
    failure[1] = success[1];
    if (!(s->req = etcd_txn(s->etcd, &txn, SE_CALL_MS, se_on_campaign, s)))
        se_retry(s, se_on_campaign_timer, "campaigning", "out of memory");
out_free:
    free(lk);
    free(rk);
}

/* ------------------------------------------------------------- the model */

static int se_by_key(const void *a, const void *b)
{
    return strcmp((*(se_kv_t *const *)a)->key, (*(se_kv_t *const *)b)->key);
}

/* Builds the model from the copy, table by table. */
static int se_build_model(store_etcd_t *s, char *err, size_t len)
{
    size_t n = HASH_COUNT(s->kvs), k = 0;
    se_kv_t **all = calloc(n ? n : 1, sizeof(*all)), *kv, *tmp;
    store_task_loader_t *tasks = store_task_loader_new();
    int rc = 0;

    if (!all || !tasks) {
        free(all);
        store_task_loader_free(tasks);
        snprintf(err, len, "load: out of memory");
        return SKIFF_ESTORE;
    }
    HASH_ITER(hh, s->kvs, kv, tmp)
        all[k++] = kv;
    qsort(all, n, sizeof(*all), se_by_key);
    snprintf(s->model->cluster_id, sizeof(s->model->cluster_id), "%s", s->cluster_id);
    for (int t = STORE_META; t <= STORE_ROWS && rc == 0; t++) {
        for (size_t i = 0; i < n && rc == 0; i++) {
            const char *slash = strchr(all[i]->key, '/');
            char name[40];
            int table = STORE_ROWS;

            if (!slash || slash == all[i]->key || (size_t)(slash - all[i]->key) >= sizeof(name))
                continue; /* "leader" */
            memcpy(name, all[i]->key, (size_t)(slash - all[i]->key));
            name[slash - all[i]->key] = '\0';
            if (strcmp(name, "controllers") == 0)
                continue; /* the election's own */
            for (int c = 0; c < STORE_ROWS; c++)
                if (strcmp(name, store_table_names[c]) == 0)
                    table = c;
            if (table != t)
                continue;
            if (t == STORE_TASKS)
                rc = store_task_loader_add(tasks, all[i]->value, all[i]->len, err, len);
            else if (!(t == STORE_META && strcmp(slash + 1, "cluster_id") == 0))
                rc = store_load_row(s->model, (enum store_table)t, name, slash + 1,
                                    all[i]->value, all[i]->len, err, len);
        }
        if (t == STORE_TASKS && rc == 0)
            rc = store_task_loader_finish(tasks, s->model, err, len);
    }
    store_task_loader_free(tasks);
    free(all);
    store_load_done(s->model);
    return rc;
}

static void se_maybe_lead(store_etcd_t *s)
{
    char err[256];

    if (!s->won || s->leading || s->rev < s->term || s->state != SE_RUNNING)
        return;
    /* Every write of every leader before this one is in the copy: they all
     * came before the leader key this controller made. */
    if (se_build_model(s, err, sizeof(err))) {
        model_free(s->model);
        model_init(s->model);
        s->ev->on_fatal(s->ev_arg, err);
        return;
    }
    s->won = 0;
    s->leading = 1;
    snprintf(s->followed, sizeof(s->followed), "%s", "");
    log_info("leading (term %" PRId64 ")", s->term);
    s->ev->on_lead(s->ev_arg);
}

/* Stops leading (or waiting to), gives the lease up, campaigns again. */
static void se_lose(store_etcd_t *s, const char *why)
{
    int was = s->leading;

    s->leading = 0;
    s->won = 0;
    s->term = 0;
    s->followed[0] = '\0';
    se_drop_lease(s);
    if (was)
        s->ev->on_lost(s->ev_arg, why);
    else
        log_warn("etcd: %s", why);
    if (s->state < SE_STOPPING) {
        se_read_leader(s);
        se_tell_follow(s);
        /* A new lease after a moment (the old one is being revoked). */
        uv_timer_start(&s->timer, se_on_campaign_timer, SE_BACKOFF_MIN_MS, 0);
    }
}

/* ----------------------------------------------------------------- commit */

static void se_commit_free(store_etcd_t *s)
{
    for (size_t i = 0; i < s->n_ops; i++)
        free(s->ops[i].key);
    free(s->ops);
    free(s->ends);
    store_batch_free(s->batch);
    s->ops = NULL;
    s->ends = NULL;
    s->batch = NULL;
    s->n_ops = s->n_parts = s->part = 0;
}

static void se_commit_finish(store_etcd_t *s, int rc, const char *err)
{
    store_done_fn cb = s->cb;
    void *arg = s->cb_arg;

    se_commit_free(s);
    s->cb = NULL;
    s->commit_req = NULL;
    cb(arg, rc, err);
    if (rc && s->leading)
        se_lose(s, err);
    if (s->state == SE_STOPPING)
        se_stop_continue(s);
}

static void se_commit_part(store_etcd_t *s);

static void se_on_commit(void *arg, int rc, const char *err, etcd_answer_t *a)
{
    store_etcd_t *s = arg;

    s->commit_req = NULL;
    se_health(s, rc, err);
    if (rc) {
        se_commit_finish(s, SKIFF_ESTORE, err);
        return;
    }
    if (!a->txn.succeeded) {
        se_commit_finish(s, SKIFF_ESTORE, "fenced: the store refused the write of a leader that "
                         "no longer leads");
        return;
    }
    if (++s->part < s->n_parts) {
        se_commit_part(s);
        return;
    }
    se_commit_finish(s, 0, "");
}

static void se_commit_part(store_etcd_t *s)
{
    size_t from = s->part ? s->ends[s->part - 1] : 0, to = s->ends[s->part];
    int last = s->part + 1 == s->n_parts;
    char *lk = se_key(s, "leader"), *pk = NULL, *pe = NULL;
    etcd_cmp_t guard = { .key = lk, .target = ETCD_CMP_CREATE, .result = ETCD_EQUAL,
                         .number = s->term };
    etcd_op_t *ops = calloc(to - from + 1, sizeof(*ops));
    etcd_txn_t txn = { &guard, 1, ops, 0, NULL, 0 };
    char below[32];

    if (!s->leading || !elect_lease_holds(se_mono_ms(), s->lease_ok_ms, s->ttl_ms)) {
        free(lk);
        free(ops);
        se_commit_finish(s, SKIFF_ESTORE, "this controller no longer leads: nothing written");
        return;
    }
    if (!lk || !ops)
        goto out_nomem;
    for (size_t i = from; i < to; i++) {
        const store_row_t *r = s->ops[i].row;
        etcd_op_t *op = &ops[txn.n_success++];
        op->key = s->ops[i].key;
        if (r->op == STORE_OP_DELETE) {
            op->kind = ETCD_OP_DELETE;
        } else {
            op->kind = ETCD_OP_PUT;
            op->value = r->value;
            op->len = r->len;
        }
    }
    if (last && s->prune_below > 0) {
        snprintf(below, sizeof(below), "events/%020" PRId64, s->prune_below);
        pk = se_key(s, "events/");
        pe = se_key(s, below);
        if (!pk || !pe)
            goto out_nomem;
        ops[txn.n_success++] = (etcd_op_t){ .kind = ETCD_OP_DELETE, .key = pk, .range_end = pe };
    }
    /* A leader holds a lease of its TTL: a commit that takes longer may be
     * some other leader's time. */
    s->commit_req = etcd_txn(s->etcd, &txn, s->ttl_ms, se_on_commit, s);
    free(lk);
    free(pk);
    free(pe);
    free(ops);
    if (!s->commit_req)
        se_commit_finish(s, SKIFF_ESTORE, "cannot send a commit: out of memory");
    return;

out_nomem:
    free(lk);
    free(pk);
    free(pe);
    free(ops);
    se_commit_finish(s, SKIFF_ESTORE, "cannot send a commit: out of memory");
}

static int se_commit(store_t *base, store_batch_t *b, store_done_fn cb, void *arg)
{
    store_etcd_t *s = (store_etcd_t *)base;
    const store_row_t *rows;
    size_t n = store_batch_rows(b, &rows), *sizes = NULL;
    int events = 0;

    if (s->batch || !s->leading || s->state != SE_RUNNING) {
        store_batch_free(b);
        return SKIFF_ECONFLICT;
    }
    s->ops = calloc(n ? n : 1, sizeof(*s->ops));
    s->ends = calloc(n ? n : 1, sizeof(*s->ends));
    sizes = calloc(n ? n : 1, sizeof(*sizes));
    if (!s->ops || !s->ends || !sizes)
        goto out_nomem;
    s->batch = b;
    for (size_t i = 0; i < n; i++) {
        const store_row_t *r = &rows[i];
        etcd_op_t op = { .kind = r->op == STORE_OP_DELETE ? ETCD_OP_DELETE : ETCD_OP_PUT,
                         .len = r->len };

        if (r->op == STORE_OP_EVENT) {
            if (r->b >= s->event_seq)
                s->event_seq = r->b + 1;
            s->ops[i].key = se_key2(s, "events", r->key);
            events = 1;
        } else {
            s->ops[i].key = se_key2(s, r->name, r->key);
        }
        if (!s->ops[i].key)
            goto out_nomem;
        s->ops[i].row = r;
        s->n_ops++;
        op.key = s->ops[i].key;
        sizes[i] = etcd_op_size(&op);
    }
    /* One operation is kept free in every part for the events' prune. */
    s->n_parts = elect_split(sizes, n, ELECT_TXN_OPS - 1, ELECT_TXN_BYTES, s->ends);
    if (s->n_parts == 0)
        s->ends[s->n_parts++] = 0;
    s->prune_below = events && s->event_seq > (int64_t)s->base.events_kept
                         ? s->event_seq - (int64_t)s->base.events_kept : 0;
    free(sizes);
    s->cb = cb;
    s->cb_arg = arg;
    s->part = 0;
    se_commit_part(s);
    return 0;

out_nomem:
    free(sizes);
    if (!s->batch)
        store_batch_free(b);
    se_commit_free(s);
    return -ENOMEM;
}

static int se_leading(const store_t *base)
{
    const store_etcd_t *s = (const store_etcd_t *)base;

    return s->leading && elect_lease_holds(se_mono_ms(), s->lease_ok_ms, s->ttl_ms);
}

/* ------------------------------------------------------- the controller list */

static int se_controllers(store_t *base, store_controllers_fn cb, void *arg)
{
    store_etcd_t *s = (store_etcd_t *)base;
    size_t n = 0, cap = HASH_COUNT(s->kvs) + 1;
    store_controller_t *list = calloc(cap, sizeof(*list));
    se_kv_t *kv, *tmp;
    int self = 0;

    if (!list)
        return -ENOMEM;
    HASH_ITER(hh, s->kvs, kv, tmp) {
        elect_who_t who;
        int me;

        if (strncmp(kv->key, "controllers/", 12) != 0 ||
            elect_who_decode(kv->value, kv->len, &who))
            continue;
        me = strcmp(who.instance, s->instance) == 0;
        self |= me;
        snprintf(list[n].address, sizeof(list[n].address), "%s", who.address);
        snprintf(list[n].role, sizeof(list[n].role), "%s",
                 (me ? s->leading : strcmp(who.instance, s->leader.instance) == 0) ? "leader"
                                                                                  : "follower");
        snprintf(list[n].store, sizeof(list[n].store), "etcd: %s",
                 me ? s->health
                    : strcmp(s->health, "healthy") == 0 ? "healthy"
                                                        : "unknown (this controller cannot reach etcd)");
        n++;
    }
    if (!self && n < cap) {
        /* Not registered (etcd unreachable, or between two leases). */
        snprintf(list[n].address, sizeof(list[n].address), "%s", s->address);
        snprintf(list[n].role, sizeof(list[n].role), "%s", s->leading ? "leader" : "follower");
        snprintf(list[n].store, sizeof(list[n].store), "etcd: %s", s->health);
        n++;
    }
    for (size_t i = 1; i < n; i++) /* by address */
        for (size_t j = i; j > 0 && strcmp(list[j - 1].address, list[j].address) > 0; j--) {
            store_controller_t t = list[j];
            list[j] = list[j - 1];
            list[j - 1] = t;
        }
    cb(arg, 0, "", list, n);
    free(list);
    return 0;
}

/* ------------------------------------------------------------------- life */

static int se_start(store_t *base, model_t *m, const store_events_t *ev, void *arg)
{
    store_etcd_t *s = (store_etcd_t *)base;

    s->model = m;
    s->ev = ev;
    s->ev_arg = arg;
    s->state = SE_IDENTITY;
    log_info("etcd: %s, prefix %s, instance %s", etcd_endpoint(s->etcd), s->prefix, s->instance);
    se_identity(s);
    return 0;
}

static void se_on_handle_closed(uv_handle_t *h)
{
    store_etcd_t *s = h->data;

    if (--s->handles == 0 && s->stop_done) {
        void (*done)(void *) = s->stop_done;
        s->stop_done = NULL;
        done(s->stop_arg);
    }
}

static void se_on_etcd_closed(void *arg)
{
    store_etcd_t *s = arg;

    s->etcd = NULL;
    se_on_handle_closed((uv_handle_t *)&s->timer);
}

static void se_stop_continue(store_etcd_t *s)
{
    if (s->state != SE_STOPPING || s->batch)
        return; /* the commit in flight ends first */
    if (s->lease_id && se_drop_lease(s))
        return; /* the revoke's answer brings us back here */
    s->state = SE_STOPPED;
    s->leading = 0;
    if (s->watch)
        etcd_watch_cancel(s->etcd, s->watch);
    s->watch = NULL;
    if (s->req)
        etcd_cancel(s->etcd, s->req);
    s->req = NULL;
    s->handles = 3;
    uv_close((uv_handle_t *)&s->timer, se_on_handle_closed);
    uv_close((uv_handle_t *)&s->lease_timer, se_on_handle_closed);
    etcd_close(s->etcd, se_on_etcd_closed, s);
}

static void se_stop(store_t *base, void (*done)(void *arg), void *arg)
{
    store_etcd_t *s = (store_etcd_t *)base;

    if (s->state >= SE_STOPPING)
        return;
    s->stop_done = done ? done : NULL;
    s->stop_arg = arg;
    if (!done)
        s->stop_done = NULL;
    uv_timer_stop(&s->timer);
    s->state = SE_STOPPING;
    if (s->leading)
        log_info("etcd: giving up the leadership");
    se_stop_continue(s);
}

static void se_free(store_t *base)
{
    store_etcd_t *s = (store_etcd_t *)base;

    se_copy_clear(s);
    se_commit_free(s);
    free(s->load_from);
    free(s->prefix);
    free(s->prefix_end);
    free(s->address);
    free(s->data_cluster);
    free(s->data_join);
    free(s->data_admin);
    free(s);
}

static const char *se_describe(const store_t *base)
{
    return ((const store_etcd_t *)base)->describe;
}

/* The copy counts the events but does not keep them (a leader's ring holds
 * what it emits): after a takeover `skiff events --since` starts there. */
static int se_load_events(store_t *base, size_t max, void (*fn)(void *arg, Event *e), void *arg,
                          uint64_t *last_seq)
{
    store_etcd_t *s = (store_etcd_t *)base;

    (void)max, (void)fn, (void)arg;
    *last_seq = s->event_seq > 0 ? (uint64_t)s->event_seq - 1 : 0;
    return 0;
}

static const store_ops_t store_etcd_ops = {
    .kind = "etcd",
    .shared = 1,
    .max_value = SE_MAX_VALUE,
    .start = se_start,
    .commit = se_commit,
    .leading = se_leading,
    .controllers = se_controllers,
    .stop = se_stop,
    .free = se_free,
    .describe = se_describe,
    .load_events = se_load_events,
};

static int se_prefix_valid(const char *p)
{
    size_t n = strlen(p);

    if (n < 2 || n > 200 || p[0] != '/' || p[n - 1] != '/')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] <= ' ' || p[i] > '~')
            return 0;
    return 1;
}

store_t *store_etcd_open(uv_loop_t *loop, const store_etcd_config_t *cfg, char *err,
                         size_t errlen)
{
    store_etcd_t *s;
    etcd_config_t ec = { 0 };
    char buf[2048], fresh[3][CTL_HEX_TOKEN + 1];
    const char *cluster = cfg->cluster_id ? cfg->cluster_id : "";
    const char *join = cfg->join_token ? cfg->join_token : "";
    const char *admin = cfg->admin_token ? cfg->admin_token : "";

    if (etcd_parse_endpoints(cfg->endpoints, &ec, buf, sizeof(buf), err, errlen))
        return NULL;
    if (!se_prefix_valid(cfg->prefix)) {
        snprintf(err, errlen, "--store-prefix \"%.100s\": must start and end with '/', "
                 "printable, no spaces, at most 200 characters", cfg->prefix);
        return NULL;
    }
    ec.cacert = cfg->cacert;
    ec.cert = cfg->cert;
    ec.key = cfg->key;
    if (!(s = calloc(1, sizeof(*s)))) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    /* For a store that has nothing yet, what the data dir has, or fresh
     * values; a store that has its own keeps them. */
    se_hex(fresh[0], MODEL_ID_LEN * 2);
    se_hex(fresh[1], CTL_HEX_TOKEN);
    se_hex(fresh[2], CTL_HEX_TOKEN);
    s->data_fresh = !*cluster;
    s->base.ops = &store_etcd_ops;
    s->base.events_kept = STORE_EVENTS_KEPT;
    s->loop = loop;
    s->lease_ms = cfg->lease_ms;
    s->prefix = strdup(cfg->prefix);
    s->prefix_end = etcd_prefix_end(cfg->prefix);
    s->address = strdup(cfg->address ? cfg->address : "");
    s->data_cluster = strdup(*cluster ? cluster : fresh[0]);
    s->data_join = strdup(*join ? join : fresh[1]);
    s->data_admin = strdup(*admin ? admin : fresh[2]);
    if (!s->prefix || !s->prefix_end || !s->address || !s->data_cluster || !s->data_join ||
        !s->data_admin || !(s->etcd = etcd_create(loop, &ec))) {
        snprintf(err, errlen, "out of memory");
        se_free(&s->base);
        return NULL;
    }
    se_hex(s->instance, ELECT_ID_LEN);
    snprintf(s->describe, sizeof(s->describe), "etcd://%s prefix %s", cfg->endpoints,
             cfg->prefix);
    snprintf(s->health, sizeof(s->health), "not reached yet");
    uv_timer_init(loop, &s->timer);
    uv_timer_init(loop, &s->lease_timer);
    s->timer.data = s->lease_timer.data = s;
    return &s->base;
}
