/* secrets: the cluster's secrets and configs, their requests, and their
 * way to the nodes (docs/secrets.md).
 *
 * Each is a row of the store's table "secrets" or "configs" (key: its id),
 * a SecretRecord: its metadata, and its value, sealed for a secret
 * (seal.h, the secret's id as additional data) or as it is for a config.
 * The data key is held here, read from <data-dir>/secret-key (SQLite) or
 * the store's row keys/secret (a shared store), and is locked while it is
 * wrapped by an unlock key nobody gave yet (--autolock).
 *
 * To the nodes: before the Assignments of a node leave, every value that
 * its set uses and its connection has not carried yet goes first, as
 * SecretData on the same connection (so in order, after the same commit).
 * What a connection carried is remembered as the ids of the last set: the
 * agent keeps the values of its last set only, and so does this record.
 * While locked, a node whose set uses a secret gets no Assignments: its
 * agent keeps running what it runs.
 */
#include "ctl.h"
#include "errors.h"
#include "event.h"
#include "log.h"
#include "pbutil.h"
#include "seal.h"
#include "secrets.h"
#include "spec.h"
#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <utlist.h>

#define SECRETS_KEY_FILE "secret-key"
#define SECRETS_KEY_TABLE "keys"
#define SECRETS_KEY_ROW "secret"
#define SECRETS_MAX_LABELS 64
#define SECRETS_LOCKED_MSG "secrets are locked: this controller was started with --autolock; " \
                           "run skiff-controller unlock"

static const char *secrets_table(SecretKind kind)
{
    return kind == SECRET_KIND_CONFIG ? SECRETS_TABLE_CONFIGS : SECRETS_TABLE_SECRETS;
}

/* ------------------------------------------------------------- the key */

/* Makes a data key; with autolock, wraps it in a new unlock key, which is
 * printed once, on standard output (as `docker swarm init --autolock`). */
static int secrets_key_make(ctl_t *ctl, const uint8_t *existing, char line[SEAL_KEY_TEXT_MAX])
{
    uint8_t unlock[SEAL_KEY_LEN];
    char text[SEAL_UNLOCK_TEXT_LEN + 1];
    int rc = -1;

    if (existing)
        memcpy(ctl->secret_key, existing, SEAL_KEY_LEN);
    else if (seal_new_key(ctl->secret_key))
        return -1;
    if (!ctl->cfg.autolock)
        return seal_key_format(ctl->secret_key, NULL, line);
    if (seal_new_key(unlock) == 0 && seal_key_format(ctl->secret_key, unlock, line) == 0) {
        seal_unlock_format(unlock, text);
        printf("secrets are locked with autolock; the unlock key, needed after every restart "
               "(skiff-controller unlock), is shown only now:\n%s\n", text);
        fflush(stdout);
        OPENSSL_cleanse(text, sizeof(text));
        rc = 0;
    }
    OPENSSL_cleanse(unlock, sizeof(unlock));
    return rc;
}

/* Takes a key line (read, or NULL: none yet). *changed: write line back. */
static int secrets_key_take(ctl_t *ctl, const char *have, char line[SEAL_KEY_TEXT_MAX],
                            int *changed, char *err, size_t len)
{
    uint8_t key[SEAL_KEY_LEN];
    int wrapped = 0;

    *changed = 0;
    if (!have) {
        *changed = 1;
        if (secrets_key_make(ctl, NULL, line))
            goto out_crypto;
        ctl->secret_key_state = SECRETS_KEY_READY;
        return 0;
    }
    if (seal_key_parse(have, NULL, &wrapped, key)) {
        snprintf(err, len, "%s: not a secret key line (skiff-secret-key 1 ...)", SECRETS_KEY_FILE);
        return SKIFF_EINVAL;
    }
    if (wrapped) {
        /* A controller that was unlocked keeps its key when it leads again. */
        if (ctl->secret_key_state != SECRETS_KEY_READY) {
            ctl->secret_key_state = SECRETS_KEY_LOCKED;
            log_warn("%s", SECRETS_LOCKED_MSG);
        }
        snprintf(ctl->secret_key_line, sizeof(ctl->secret_key_line), "%s", have);
        return 0;
    }
    if (ctl->cfg.autolock) {
        /* --autolock on a cluster without it: the key gets wrapped now. */
        *changed = 1;
        if (secrets_key_make(ctl, key, line))
            goto out_crypto;
    } else {
        memcpy(ctl->secret_key, key, SEAL_KEY_LEN);
    }
    OPENSSL_cleanse(key, sizeof(key));
    ctl->secret_key_state = SECRETS_KEY_READY;
    return 0;

out_crypto:
    snprintf(err, len, "could not make the secrets' data key (OpenSSL)");
    return -1;
}

int secrets_key_init(ctl_t *ctl, char *err, size_t len)
{
    char path[PATH_MAX + 16], have[SEAL_KEY_TEXT_MAX], line[SEAL_KEY_TEXT_MAX];
    FILE *f;
    int changed, rc;

    snprintf(path, sizeof(path), "%s/%s", ctl->cfg.data_dir, SECRETS_KEY_FILE);
    f = fopen(path, "re");
    if (!f && errno != ENOENT) {
        snprintf(err, len, "%s: %s", path, strerror(errno));
        return -errno;
    }
    if (f && !fgets(have, sizeof(have), f))
        have[0] = '\0';
    if (f)
        fclose(f);
    rc = secrets_key_take(ctl, f ? have : NULL, line, &changed, err, len);
    if (!rc && changed) {
        line[strcspn(line, "\n")] = '\0';
        rc = tokens_write_file(ctl->cfg.data_dir, SECRETS_KEY_FILE, line, err, len);
    }
    OPENSSL_cleanse(have, sizeof(have));
    OPENSSL_cleanse(line, sizeof(line));
    return rc;
}

void secrets_lead(ctl_t *ctl)
{
    model_row_t *r = model_row_get(&ctl->model, SECRETS_KEY_TABLE, SECRETS_KEY_ROW);
    char have[SEAL_KEY_TEXT_MAX], line[SEAL_KEY_TEXT_MAX], err[256];
    int changed;

    have[0] = '\0';
    if (r && r->value && r->len < sizeof(have)) {
        memcpy(have, r->value, r->len);
        have[r->len] = '\0';
    }
    if (secrets_key_take(ctl, *have ? have : NULL, line, &changed, err, sizeof(err)))
        log_error("%s: secrets can't be used", err);
    else if (changed &&
             model_row_set(&ctl->model, SECRETS_KEY_TABLE, SECRETS_KEY_ROW,
                           (const uint8_t *)line, strlen(line)))
        log_error("out of memory storing the secrets' data key");
    OPENSSL_cleanse(have, sizeof(have));
    OPENSSL_cleanse(line, sizeof(line));
}

static int secrets_unlock(ctl_t *ctl, peer_t *p, uint64_t id, const ControllerUnlock *req)
{
    uint8_t unlock[SEAL_KEY_LEN];
    int wrapped, rc;
    node_t *n, *tmp;

    if (ctl->secret_key_state != SECRETS_KEY_LOCKED) {
        ctl_send_error(ctl, p, id, ERR_INVALID, "this controller is not locked");
        return 0;
    }
    if (seal_unlock_parse(req->key, unlock)) {
        ctl_send_error(ctl, p, id, ERR_INVALID, "not an unlock key (SKIFF-UNLOCK-<64 hex>)");
        return 0;
    }
    rc = seal_key_parse(ctl->secret_key_line, unlock, &wrapped, ctl->secret_key);
    OPENSSL_cleanse(unlock, sizeof(unlock));
    if (rc) {
        log_warn("%s: a wrong unlock key", conn_peer(p->conn));
        ctl_send_error(ctl, p, id, ERR_AUTH, "wrong unlock key");
        return 0;
    }
    ctl->secret_key_state = SECRETS_KEY_READY;
    log_info("unlocked: secrets can be used again");
    /* The sets held back go now. */
    HASH_ITER(hh, ctl->model.nodes, n, tmp)
        n->assign_dirty = 1;
    ctl_send_ok(ctl, p, id);
    return 0;
}

/* ------------------------------------------------------------- records */

static SecretRecord *secrets_decode(const model_row_t *r)
{
    SecretRecord *rec;

    if (!r || !r->value)
        return NULL;
    rec = (SecretRecord *)protobuf_c_message_unpack(&PB_DESC_SecretRecord, NULL, r->len,
                                                     r->value);
    if (rec && !rec->secret) {
        pb_free(rec);
        rec = NULL;
    }
    return rec;
}

/* Finds a secret or config by name, id, or unique id prefix; the record
 * (pb_free it) or NULL, with *ambiguous set when a prefix matches several. */
static SecretRecord *secrets_find(ctl_t *ctl, SecretKind kind, const char *ref, int *ambiguous)
{
    const char *table = secrets_table(kind);
    size_t n = strlen(ref);
    model_row_t *r, *tmp, *by_prefix = NULL;
    int prefixes = 0;

    *ambiguous = 0;
    if (!n)
        return NULL;
    if ((r = model_row_get(&ctl->model, table, ref)) && r->value)
        return secrets_decode(r);
    HASH_ITER(hh, ctl->model.rows, r, tmp) {
        SecretRecord *rec;
        if (!r->value || strcmp(r->table, table) != 0)
            continue;
        if (strncmp(r->key, ref, n) == 0) {
            by_prefix = r;
            prefixes++;
        }
        if (!(rec = secrets_decode(r)))
            continue;
        if (strcmp(rec->secret->name, ref) == 0)
            return rec;
        pb_free(rec);
    }
    if (prefixes == 1)
        return secrets_decode(by_prefix);
    *ambiguous = prefixes > 1;
    return NULL;
}

static int secrets_uses(const ServiceSpec *spec, SecretKind kind, const char *id)
{
    size_t n = kind == SECRET_KIND_CONFIG ? spec->n_configs : spec->n_secrets;
    SecretRef *const *refs = kind == SECRET_KIND_CONFIG ? spec->configs : spec->secrets;

    for (size_t i = 0; i < n; i++)
        if (strcmp(refs[i]->id, id) == 0)
            return 1;
    return 0;
}

/* The services whose spec, or the spec of a task that may still run, uses
 * it (the history of tasks that ended does not count). */
static int secrets_users(ctl_t *ctl, Secret *s)
{
    service_t *svc, *tmp;
    task_t *t;

    HASH_ITER(hh_name, ctl->model.services_by_name, svc, tmp) {
        int used = secrets_uses(svc->pb->spec, s->kind, s->id);
        DL_FOREACH2(svc->tasks, t, svc_next) {
            const ServiceSpec *spec;
            if (used)
                break;
            if (t->pb->desired_state != DESIRED_RUNNING && model_state_terminal(t->pb->state))
                continue;
            if ((spec = model_service_spec(svc, t->pb->spec_version)))
                used = secrets_uses(spec, s->kind, s->id);
        }
        if (used && pb_push_str(&s->n_services, &s->services, svc->pb->spec->name))
            return -ENOMEM;
    }
    return 0;
}

static void secrets_reply(ctl_t *ctl, peer_t *p, uint64_t id, Secret *s)
{
    Envelope env = PB_ENVELOPE_INIT;
    SecretReply reply = PB_SECRET_REPLY_INIT;

    reply.secret = s;
    env.id = id;
    env.msg_case = MSG_SECRET_REPLY;
    env.secret_reply = &reply;
    ctl_send(ctl, p, &env);
}

static void secrets_event(ctl_t *ctl, const char *action, const Secret *s)
{
    Event *e = event_new(spec_secret_kind_name(s->kind), action, s->id, s->name,
                         model_wall_ms());

    ctl_emit(ctl, e, "%s %s %s", spec_secret_kind_name(s->kind), s->name,
             strcmp(action, "create") == 0 ? "created" : "removed");
}

/* ------------------------------------------------------------ requests */

static int secrets_check_create(ctl_t *ctl, peer_t *p, uint64_t id, const Secret *in)
{
    const char *what = in ? spec_secret_kind_name(in->kind) : "secret";

    if (!in) {
        ctl_send_error(ctl, p, id, ERR_INVALID, "secret: missing");
        return 1;
    }
    if (in->kind != SECRET_KIND_SECRET && in->kind != SECRET_KIND_CONFIG) {
        ctl_send_error(ctl, p, id, ERR_INVALID, "kind: must be secret or config");
        return 1;
    }
    if (!spec_secret_name_valid(in->name)) {
        ctl_send_error(ctl, p, id, ERR_INVALID, "name: %.80s is not a valid %s name (1 to 64 "
                       "letters, digits, '-', '_' or '.', starting and ending with a letter or "
                       "digit)", in->name, what);
        return 1;
    }
    if (!in->data.len) {
        ctl_send_error(ctl, p, id, ERR_INVALID, "%s %s: the value is empty", what, in->name);
        return 1;
    }
    if (in->data.len > SPEC_SECRET_MAX_SIZE) {
        ctl_send_error(ctl, p, id, ERR_INVALID, "%s %s: %zu bytes is more than the limit of %d",
                       what, in->name, in->data.len, SPEC_SECRET_MAX_SIZE);
        return 1;
    }
    if (*in->stack && !spec_name_valid(in->stack)) {
        ctl_send_error(ctl, p, id, ERR_INVALID, "stack: %.80s is not a valid stack name",
                       in->stack);
        return 1;
    }
    if (in->n_labels > SECRETS_MAX_LABELS) {
        ctl_send_error(ctl, p, id, ERR_INVALID, "labels: more than %d", SECRETS_MAX_LABELS);
        return 1;
    }
    for (size_t i = 0; i < in->n_labels; i++)
        if (!in->labels[i] || !*in->labels[i]->key || strlen(in->labels[i]->key) > 256 ||
            strlen(in->labels[i]->value) > 4096) {
            ctl_send_error(ctl, p, id, ERR_INVALID, "labels[%zu]: an empty or too long key or "
                           "value", i);
            return 1;
        }
    if (in->kind == SECRET_KIND_SECRET && ctl->secret_key_state != SECRETS_KEY_READY) {
        ctl_send_error(ctl, p, id, ERR_UNAVAILABLE, "%s", SECRETS_LOCKED_MSG);
        return 1;
    }
    return 0;
}

static int secrets_create(ctl_t *ctl, peer_t *p, uint64_t id, const SecretCreate *req)
{
    const Secret *in = req->secret;
    Secret meta = PB_SECRET_INIT;
    SecretRecord rec = PB_SECRET_RECORD_INIT;
    char sid[MODEL_ID_LEN + 1];
    uint8_t *sealed = NULL, *packed = NULL;
    size_t sealed_len = 0, len;
    SecretRecord *old;
    int ambiguous;

    if (secrets_check_create(ctl, p, id, in))
        return 0;
    if ((old = secrets_find(ctl, in->kind, in->name, &ambiguous)) &&
        strcmp(old->secret->name, in->name) == 0) {
        ctl_send_error(ctl, p, id, ERR_EXISTS, "%s %s already exists",
                       spec_secret_kind_name(in->kind), in->name);
        pb_free(old);
        return 0;
    }
    pb_free(old);
    model_new_id(sid);
    meta.id = sid;
    meta.name = in->name;
    meta.kind = in->kind;
    meta.n_labels = in->n_labels;
    meta.labels = in->labels;
    meta.stack = in->stack;
    meta.created_ms = meta.updated_ms = model_wall_ms();
    meta.version = 1;
    meta.size = (uint32_t)in->data.len;
    rec.secret = &meta;
    if (in->kind == SECRET_KIND_SECRET) {
        if (seal_encrypt(ctl->secret_key, sid, in->data.data, in->data.len, &sealed,
                         &sealed_len)) {
            ctl_send_error(ctl, p, id, ERR_INTERNAL, "could not seal the secret");
            return 0;
        }
        rec.sealed.data = sealed;
        rec.sealed.len = sealed_len;
    } else {
        rec.data = in->data;
    }
    len = protobuf_c_message_get_packed_size(&rec.base);
    if (!(packed = malloc(len)) ||
        (protobuf_c_message_pack(&rec.base, packed),
         model_row_set(&ctl->model, secrets_table(in->kind), sid, packed, len))) {
        ctl_send_error(ctl, p, id, ERR_INTERNAL, "out of memory");
        goto out;
    }
    secrets_event(ctl, "create", &meta);
    secrets_reply(ctl, p, id, &meta);
out:
    free(packed);
    free(sealed);
    return 0;
}

static int secrets_by_name(const void *a, const void *b)
{
    return strcmp((*(Secret *const *)a)->name, (*(Secret *const *)b)->name);
}

static int secrets_list(ctl_t *ctl, peer_t *p, uint64_t id, const SecretList *req)
{
    const char *table = secrets_table(req->kind);
    Envelope env = PB_ENVELOPE_INIT;
    SecretListReply reply = PB_SECRET_LIST_REPLY_INIT;
    model_row_t *r, *tmp;
    int rc = 0;

    HASH_ITER(hh, ctl->model.rows, r, tmp) {
        SecretRecord *rec;
        Secret *s;
        if (!r->value || strcmp(r->table, table) != 0 || !(rec = secrets_decode(r)))
            continue;
        s = rec->secret;
        rec->secret = NULL;
        pb_free(rec);
        if ((*req->stack && strcmp(s->stack, req->stack) != 0)) {
            pb_free(s);
            continue;
        }
        if ((rc = secrets_users(ctl, s)) ||
            (rc = pb_push_msg(&reply.n_secrets, (void ***)&reply.secrets, s))) {
            pb_free(s);
            break;
        }
    }
    if (rc) {
        ctl_send_error(ctl, p, id, ERR_INTERNAL, "out of memory");
    } else {
        if (reply.n_secrets)
            qsort(reply.secrets, reply.n_secrets, sizeof(*reply.secrets), secrets_by_name);
        env.id = id;
        env.msg_case = MSG_SECRET_LIST_REPLY;
        env.secret_list_reply = &reply;
        ctl_send(ctl, p, &env);
    }
    for (size_t i = 0; i < reply.n_secrets; i++)
        pb_free(reply.secrets[i]);
    free(reply.secrets);
    return 0;
}

/* Finds what a request names, or replies the error and returns NULL. */
static SecretRecord *secrets_named(ctl_t *ctl, peer_t *p, uint64_t id, SecretKind kind,
                                   const char *ref)
{
    int ambiguous;
    SecretRecord *rec = secrets_find(ctl, kind, ref, &ambiguous);

    if (!rec)
        ctl_send_error(ctl, p, id, ERR_NOT_FOUND,
                       ambiguous ? "%s %.100s is ambiguous: give more of its id"
                                 : "no such %s: %.100s", spec_secret_kind_name(kind), ref);
    return rec;
}

static int secrets_get(ctl_t *ctl, peer_t *p, uint64_t id, const SecretGet *req)
{
    SecretRecord *rec = secrets_named(ctl, p, id, req->kind, req->ref);

    if (!rec)
        return 0;
    if (req->kind == SECRET_KIND_CONFIG) { /* a config's value is no secret */
        rec->secret->data = rec->data;
        rec->data.data = NULL;
        rec->data.len = 0;
    }
    if (secrets_users(ctl, rec->secret))
        ctl_send_error(ctl, p, id, ERR_INTERNAL, "out of memory");
    else
        secrets_reply(ctl, p, id, rec->secret);
    pb_free(rec);
    return 0;
}

static int secrets_remove(ctl_t *ctl, peer_t *p, uint64_t id, const SecretRemove *req)
{
    SecretRecord *rec = secrets_named(ctl, p, id, req->kind, req->ref);
    Secret *s;
    char users[512] = "";

    if (!rec)
        return 0;
    s = rec->secret;
    if (secrets_users(ctl, s)) {
        ctl_send_error(ctl, p, id, ERR_INTERNAL, "out of memory");
        goto out;
    }
    if (s->n_services) {
        for (size_t i = 0; i < s->n_services; i++)
            snprintf(users + strlen(users), sizeof(users) - strlen(users), "%s%s",
                     i ? ", " : "", s->services[i]);
        ctl_send_error(ctl, p, id, ERR_CONFLICT, "%s %s is in use by service%s %s",
                       spec_secret_kind_name(s->kind), s->name, s->n_services > 1 ? "s" : "",
                       users);
        goto out;
    }
    model_row_delete(&ctl->model, secrets_table(s->kind), s->id);
    secrets_event(ctl, "remove", s);
    ctl_send_ok(ctl, p, id);
out:
    pb_free(rec);
    return 0;
}

int secrets_api(ctl_t *ctl, peer_t *p, uint64_t id, const Envelope *env)
{
    switch (env->msg_case) {
    case MSG_SECRET_CREATE: return secrets_create(ctl, p, id, env->secret_create);
    case MSG_SECRET_LIST: return secrets_list(ctl, p, id, env->secret_list);
    case MSG_SECRET_GET: return secrets_get(ctl, p, id, env->secret_get);
    case MSG_SECRET_REMOVE: return secrets_remove(ctl, p, id, env->secret_remove);
    case MSG_CONTROLLER_UNLOCK: return secrets_unlock(ctl, p, id, env->controller_unlock);
    default:
        ctl_send_error(ctl, p, id, ERR_PROTOCOL, "unexpected %s", wire_msg_name(env->msg_case));
        return 0;
    }
}

/* ------------------------------------------------------------ services */

static int secrets_resolve_refs(ctl_t *ctl, SecretKind kind, SecretRef **refs, size_t n,
                                char *err, size_t len)
{
    const char *what = spec_secret_kind_name(kind);
    int ambiguous;

    for (size_t i = 0; i < n; i++) {
        SecretRecord *rec = secrets_find(ctl, kind, refs[i]->name, &ambiguous);
        int rc = 0;
        if (!rec || strcmp(rec->secret->name, refs[i]->name) != 0) {
            snprintf(err, len, "%ss[%zu]: no such %s: %.80s", what, i, what, refs[i]->name);
            rc = SKIFF_ENOTFOUND;
        } else if (pb_set_str(&refs[i]->id, rec->secret->id)) {
            rc = -ENOMEM;
        }
        pb_free(rec);
        if (rc)
            return rc;
    }
    return 0;
}

int secrets_resolve(ctl_t *ctl, ServiceSpec *spec, ErrorCode *code, char *err, size_t len)
{
    int rc;

    *code = ERR_INVALID;
    if (spec->n_secrets && ctl->secret_key_state != SECRETS_KEY_READY) {
        *code = ERR_UNAVAILABLE;
        snprintf(err, len, "%s", SECRETS_LOCKED_MSG);
        return SKIFF_EUNAVAILABLE;
    }
    rc = secrets_resolve_refs(ctl, SECRET_KIND_SECRET, spec->secrets, spec->n_secrets, err, len);
    if (!rc)
        rc = secrets_resolve_refs(ctl, SECRET_KIND_CONFIG, spec->configs, spec->n_configs, err,
                                  len);
    if (rc == -ENOMEM) {
        *code = ERR_INTERNAL;
        snprintf(err, len, "out of memory");
    }
    return rc;
}

/* ------------------------------------------------------------ to nodes */

typedef struct secrets_sent {
    size_t n;
    struct secrets_sent_id {
        char id[MODEL_ID_LEN + 1];
        SecretKind kind;
    } ids[];
} secrets_sent_t;

static int secrets_sent_has(const secrets_sent_t *s, const char *id)
{
    for (size_t i = 0; s && i < s->n; i++)
        if (strcmp(s->ids[i].id, id) == 0)
            return 1;
    return 0;
}

/* Adds the refs' ids that are not in set yet. */
static void secrets_collect(secrets_sent_t *set, size_t cap, SecretKind kind,
                            SecretRef *const *refs, size_t n)
{
    for (size_t i = 0; i < n && set->n < cap; i++)
        if (strlen(refs[i]->id) == MODEL_ID_LEN && !secrets_sent_has(set, refs[i]->id)) {
            memcpy(set->ids[set->n].id, refs[i]->id, MODEL_ID_LEN + 1);
            set->ids[set->n++].kind = kind;
        }
}

/* Sends one value to the agent. */
static void secrets_send_value(ctl_t *ctl, peer_t *peer, SecretKind kind, const char *id)
{
    SecretRecord *rec = secrets_decode(model_row_get(&ctl->model, secrets_table(kind), id));
    Envelope env = PB_ENVELOPE_INIT;
    SecretData data = PB_SECRET_DATA_INIT;
    uint8_t *plain = NULL;
    size_t len = 0;

    if (!rec) {
        log_warn("%s %s is used by a task but gone from the store", spec_secret_kind_name(kind),
                 id);
        return;
    }
    if (kind == SECRET_KIND_SECRET) {
        if (seal_decrypt(ctl->secret_key, id, rec->sealed.data, rec->sealed.len, &plain, &len)) {
            log_error("secret %s (%s) does not open with the data key", rec->secret->name, id);
            goto out;
        }
        data.data.data = plain;
        data.data.len = len;
    } else {
        data.data = rec->data;
    }
    data.id = (char *)id;
    data.kind = kind;
    env.msg_case = MSG_SECRET_DATA;
    env.secret_data = &data;
    ctl_send(ctl, peer, &env);
out:
    if (plain) {
        OPENSSL_cleanse(plain, len);
        free(plain);
    }
    pb_free(rec);
}

int secrets_push(ctl_t *ctl, peer_t *peer, Assignment *const *set, size_t n)
{
    size_t cap = 0;
    secrets_sent_t *now;

    for (size_t i = 0; i < n; i++)
        cap += set[i]->spec->n_secrets + set[i]->spec->n_configs;
    if (!cap && !peer->secrets_sent)
        return 0;
    if (!(now = calloc(1, sizeof(*now) + cap * sizeof(now->ids[0]))))
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        secrets_collect(now, cap, SECRET_KIND_SECRET, set[i]->spec->secrets,
                        set[i]->spec->n_secrets);
        secrets_collect(now, cap, SECRET_KIND_CONFIG, set[i]->spec->configs,
                        set[i]->spec->n_configs);
    }
    if (ctl->secret_key_state != SECRETS_KEY_READY)
        for (size_t i = 0; i < now->n; i++)
            if (now->ids[i].kind == SECRET_KIND_SECRET) {
                free(now);
                return 1; /* held until unlocked */
            }
    for (size_t i = 0; i < now->n; i++)
        if (!secrets_sent_has(peer->secrets_sent, now->ids[i].id))
            secrets_send_value(ctl, peer, now->ids[i].kind, now->ids[i].id);
    free(peer->secrets_sent);
    peer->secrets_sent = now;
    return 0;
}

void secrets_peer_free(peer_t *p)
{
    free(p->secrets_sent);
    p->secrets_sent = NULL;
}
