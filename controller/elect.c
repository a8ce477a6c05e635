/* elect: see elect.h. */
#include "elect.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t elect_who_encode(const elect_who_t *who, const char *version, int64_t started_ms,
                        char *out, size_t len)
{
    json_t *o = json_pack("{sssssssI}", "address", who->address, "instance", who->instance,
                          "version", version ? version : "", "started_ms",
                          (json_int_t)started_ms);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    size_t n = s ? strlen(s) : 0;

    json_decref(o);
    if (!s || n + 1 > len) {
        free(s);
        return 0;
    }
    memcpy(out, s, n + 1);
    free(s);
    return n;
}

int elect_who_decode(const uint8_t *value, size_t len, elect_who_t *who)
{
    json_t *o = value ? json_loadb((const char *)value, len, 0, NULL) : NULL;
    const char *addr = json_string_value(json_object_get(o, "address"));
    const char *inst = json_string_value(json_object_get(o, "instance"));
    int rc = -1;

    memset(who, 0, sizeof(*who));
    if (addr && inst && strlen(addr) < sizeof(who->address) &&
        strlen(inst) < sizeof(who->instance)) {
        snprintf(who->address, sizeof(who->address), "%s", addr);
        snprintf(who->instance, sizeof(who->instance), "%s", inst);
        rc = 0;
    }
    json_decref(o);
    return rc;
}

enum elect_outcome elect_campaign_outcome(const etcd_txn_res_t *res, const char *instance,
                                          int64_t lease, int64_t *term, elect_who_t *leader)
{
    const etcd_kv_t *kv;

    memset(leader, 0, sizeof(*leader));
    *term = 0;
    if (res->succeeded) {
        /* The put is the txn's one write: its revision is the key's
         * create revision. */
        *term = res->revision;
        return ELECT_WON;
    }
    if (res->n_ranges < 1 || res->ranges[0].n < 1)
        return ELECT_AGAIN;
    kv = &res->ranges[0].kvs[0];
    if (elect_who_decode(kv->value, kv->len, leader)) {
        /* Not a leader key skiff wrote: nobody can be followed there. */
        memset(leader, 0, sizeof(*leader));
        return ELECT_FOLLOW;
    }
    if (strcmp(leader->instance, instance) == 0 && lease && kv->lease == lease) {
        *term = kv->create_revision;
        return ELECT_WON;
    }
    return ELECT_FOLLOW;
}

int elect_lease_holds(uint64_t now_ms, uint64_t ok_ms, int64_t ttl_ms)
{
    return ok_ms > 0 && ttl_ms > 0 && now_ms < ok_ms + (uint64_t)ttl_ms;
}

int64_t elect_ttl_s(int64_t lease_ms)
{
    int64_t s = (lease_ms + 999) / 1000;

    return s < 2 ? 2 : s;
}

enum elect_verdict elect_judge(const elect_found_t *f, const char *data_cluster,
                               const char *prefix, char *why, size_t len)
{
    if (!f->has_cluster) {
        snprintf(why, len, "--store-prefix %s holds %" PRId64 " key%s that are not a skiff "
                 "cluster's; give a prefix of its own", prefix, f->keys, f->keys == 1 ? "" : "s");
        return ELECT_REFUSE;
    }
    if (f->store_version > ELECT_STORE_VERSION) {
        snprintf(why, len, "--store-prefix %s has store version %" PRId64 "; this "
                 "skiff-controller knows up to %d (downgrade?)", prefix, f->store_version,
                 ELECT_STORE_VERSION);
        return ELECT_REFUSE;
    }
    if (*data_cluster && strcmp(data_cluster, f->cluster_id) != 0) {
        snprintf(why, len, "--store-prefix %s holds cluster %s, but this data dir belongs to "
                 "cluster %s: another cluster's state (give another --store-prefix, or another "
                 "--data-dir)", prefix, f->cluster_id, data_cluster);
        return ELECT_REFUSE;
    }
    if (f->migrating) {
        snprintf(why, len, "a migration into --store-prefix %s is under way", prefix);
        return ELECT_WAIT;
    }
    if (!f->has_tokens) {
        snprintf(why, len, "--store-prefix %s holds cluster %s without its tokens", prefix,
                 f->cluster_id);
        return ELECT_REFUSE;
    }
    why[0] = '\0';
    return ELECT_OURS;
}

size_t elect_split(const size_t *sizes, size_t n, size_t max_ops, size_t max_bytes,
                   size_t *ends)
{
    size_t parts = 0, ops = 0, bytes = 0;

    for (size_t i = 0; i < n; i++) {
        if (ops > 0 && (ops + 1 > max_ops || bytes + sizes[i] > max_bytes)) {
            ends[parts++] = i;
            ops = bytes = 0;
        }
        ops++;
        bytes += sizes[i];
    }
    if (ops > 0)
        ends[parts++] = n;
    return parts;
}
