/* etcd_json: see etcd_json.h. */
#include "etcd_json.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- base64 */

static const char etcd_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t etcd_b64_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

void etcd_b64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t i = 0;

    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *out++ = etcd_b64[v >> 18];
        *out++ = etcd_b64[(v >> 12) & 63];
        *out++ = etcd_b64[(v >> 6) & 63];
        *out++ = etcd_b64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *out++ = etcd_b64[v >> 18];
        *out++ = etcd_b64[(v >> 12) & 63];
        *out++ = '=';
        *out++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *out++ = etcd_b64[v >> 18];
        *out++ = etcd_b64[(v >> 12) & 63];
        *out++ = etcd_b64[(v >> 6) & 63];
        *out++ = '=';
    }
    *out = '\0';
}

static int etcd_b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int etcd_b64_decode(const char *in, size_t n, uint8_t *out, size_t *outlen)
{
    size_t o = 0;

    if (n % 4)
        return -1;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            if (in[i + k] == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad || (v[k] = etcd_b64_value(in[i + k])) < 0)
                return -1; /* a character after '=', or not base64 */
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                     (uint32_t)v[3];
        out[o++] = (uint8_t)(w >> 16);
        if (pad < 2)
            out[o++] = (uint8_t)(w >> 8);
        if (pad < 1)
            out[o++] = (uint8_t)w;
    }
    *outlen = o;
    return 0;
}

char *etcd_prefix_end(const char *prefix)
{
    size_t n = strlen(prefix);
    char *end = strdup(prefix);

    if (!end)
        return NULL;
    while (n > 0) {
        unsigned char c = (unsigned char)end[n - 1];
        if (c < 0xff) {
            end[n - 1] = (char)(c + 1);
            end[n] = '\0';
            return end;
        }
        n--;
    }
    /* Every byte was 0xff: the range goes to the end of the key space,
     * which the gateway spells as the key "\0" (base64 "AA=="). */
    end[0] = '\0';
    return end;
}

/* -------------------------------------------------------------- requests */

/* Sets obj[name] to the base64 of data; 0 or -1 out of memory. A key of
 * "\0" alone (etcd's "every key") is written as one zero byte. */
static int etcd_set_b64(json_t *obj, const char *name, const uint8_t *data, size_t n)
{
    char *b = malloc(etcd_b64_len(n) + 1);
    int rc;

    if (!b)
        return -1;
    etcd_b64_encode(data, n, b);
    rc = json_object_set_new(obj, name, json_string(b));
    free(b);
    return rc;
}

static int etcd_set_key(json_t *obj, const char *name, const char *key)
{
    if (!key)
        return 0;
    if (!*key) /* the end of the key space */
        return etcd_set_b64(obj, name, (const uint8_t *)"", 1);
    return etcd_set_b64(obj, name, (const uint8_t *)key, strlen(key));
}

static int etcd_set_int(json_t *obj, const char *name, int64_t v)
{
    char num[32];

    snprintf(num, sizeof(num), "%" PRId64, v);
    return json_object_set_new(obj, name, json_string(num));
}

static char *etcd_dump(json_t *obj)
{
    char *s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;

    json_decref(obj);
    return s;
}

static json_t *etcd_range_obj(const etcd_op_t *op)
{
    json_t *o = json_object();
    int rc;

    if (!o)
        return NULL;
    rc = etcd_set_key(o, "key", op->key) | etcd_set_key(o, "range_end", op->range_end);
    if (op->limit)
        rc |= etcd_set_int(o, "limit", op->limit);
    if (op->revision)
        rc |= etcd_set_int(o, "revision", op->revision);
    if (op->keys_only)
        rc |= json_object_set_new(o, "keys_only", json_true());
    if (op->count_only)
        rc |= json_object_set_new(o, "count_only", json_true());
    if (op->descend) {
        rc |= json_object_set_new(o, "sort_order", json_string("DESCEND"));
        rc |= json_object_set_new(o, "sort_target", json_string("KEY"));
    }
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

char *etcd_json_range(const etcd_op_t *op)
{
    return etcd_dump(etcd_range_obj(op));
}

static json_t *etcd_op_obj(const etcd_op_t *op)
{
    json_t *o = NULL, *wrap = json_object();
    const char *name = NULL;
    int rc = 0;

    if (!wrap)
        return NULL;
    switch (op->kind) {
    case ETCD_OP_RANGE:
        o = etcd_range_obj(op);
        name = "request_range";
        break;
    case ETCD_OP_PUT:
        if ((o = json_object())) {
            rc |= etcd_set_key(o, "key", op->key);
            rc |= etcd_set_b64(o, "value", op->value ? op->value : (const uint8_t *)"", op->len);
            if (op->lease)
                rc |= etcd_set_int(o, "lease", op->lease);
        }
        name = "request_put";
        break;
    case ETCD_OP_DELETE:
        if ((o = json_object()))
            rc |= etcd_set_key(o, "key", op->key) | etcd_set_key(o, "range_end", op->range_end);
        name = "request_delete_range";
        break;
    }
    if (!o || rc || json_object_set_new(wrap, name, o)) {
        if (o && rc)
            json_decref(o);
        json_decref(wrap);
        return NULL;
    }
    return wrap;
}

static json_t *etcd_cmp_obj(const etcd_cmp_t *c)
{
    static const char *const targets[] = { "VERSION", "CREATE", "MOD", "VALUE", "LEASE" };
    static const char *const results[] = { "EQUAL", "GREATER", "LESS", "NOT_EQUAL" };
    static const char *const fields[] = { "version", "create_revision", "mod_revision",
                                          "value", "lease" };
    json_t *o = json_object();
    int rc;

    if (!o)
        return NULL;
    rc = etcd_set_key(o, "key", c->key) | etcd_set_key(o, "range_end", c->range_end);
    rc |= json_object_set_new(o, "target", json_string(targets[c->target]));
    rc |= json_object_set_new(o, "result", json_string(results[c->result]));
    if (c->target == ETCD_CMP_VALUE)
        rc |= etcd_set_b64(o, "value", c->value ? c->value : (const uint8_t *)"", c->len);
    else
        rc |= etcd_set_int(o, fields[c->target], c->number);
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *etcd_ops_array(const etcd_op_t *ops, size_t n)
{
    json_t *a = json_array();

    if (!a)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (json_array_append_new(a, etcd_op_obj(&ops[i]))) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

char *etcd_json_txn(const etcd_txn_t *txn)
{
    json_t *o = json_object(), *cmp = json_array();
    int rc = !o || !cmp;

    for (size_t i = 0; !rc && i < txn->n_cmp; i++)
        rc = json_array_append_new(cmp, etcd_cmp_obj(&txn->cmp[i]));
    if (!rc)
        rc = json_object_set_new(o, "compare", cmp);
    else
        json_decref(cmp);
    if (!rc)
        rc = json_object_set_new(o, "success", etcd_ops_array(txn->success, txn->n_success));
    if (!rc)
        rc = json_object_set_new(o, "failure", etcd_ops_array(txn->failure, txn->n_failure));
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return etcd_dump(o);
}

char *etcd_json_lease_grant(int64_t ttl_s)
{
    json_t *o = json_object();

    if (!o || etcd_set_int(o, "TTL", ttl_s)) {
        json_decref(o);
        return NULL;
    }
    return etcd_dump(o);
}

char *etcd_json_lease_id(int64_t id)
{
    json_t *o = json_object();

    if (!o || etcd_set_int(o, "ID", id)) {
        json_decref(o);
        return NULL;
    }
    return etcd_dump(o);
}

char *etcd_json_watch(const char *key, const char *range_end, int64_t start_revision)
{
    json_t *o = json_object(), *c = json_object();
    int rc = !o || !c;

    if (!rc)
        rc = etcd_set_key(c, "key", key) | etcd_set_key(c, "range_end", range_end);
    if (!rc && start_revision)
        rc = etcd_set_int(c, "start_revision", start_revision);
    if (!rc)
        rc = json_object_set_new(o, "create_request", c);
    else
        json_decref(c);
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return etcd_dump(o);
}

size_t etcd_op_size(const etcd_op_t *op)
{
    size_t n = 96; /* the JSON around one operation, generously */

    if (op->key)
        n += etcd_b64_len(strlen(op->key));
    if (op->range_end)
        n += etcd_b64_len(strlen(op->range_end) + 1);
    if (op->kind == ETCD_OP_PUT)
        n += etcd_b64_len(op->len) + 24;
    return n;
}

/* --------------------------------------------------------------- answers */

static int etcd_fail(char *err, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int etcd_fail(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (err && len) {
        va_start(ap, fmt);
        vsnprintf(err, len, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* An int64 field, as a string (proto3 JSON) or a number; absent: 0. */
static int etcd_get_int(const json_t *obj, const char *name, int64_t *out)
{
    const json_t *v = json_object_get(obj, name);
    const char *s;
    char *end;

    *out = 0;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v))
        return -1;
    s = json_string_value(v);
    errno = 0;
    *out = strtoll(s, &end, 10);
    return errno || end == s || *end ? -1 : 0;
}

static int etcd_get_bool(const json_t *obj, const char *name)
{
    return json_is_true(json_object_get(obj, name));
}

/* Decodes obj[name] (base64) into a malloc'd buffer with a NUL after it.
 * Absent or empty: *out NULL, *n 0. */
static int etcd_get_b64(const json_t *obj, const char *name, uint8_t **out, size_t *n)
{
    const json_t *v = json_object_get(obj, name);
    const char *s;
    size_t len;

    *out = NULL;
    *n = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return -1;
    s = json_string_value(v);
    len = json_string_length(v);
    if (len == 0)
        return 0;
    if (!(*out = malloc(len / 4 * 3 + 1)))
        return -ENOMEM;
    if (etcd_b64_decode(s, len, *out, n)) {
        free(*out);
        *out = NULL;
        return -1;
    }
    (*out)[*n] = '\0';
    return 0;
}

static int etcd_parse_kv(const json_t *o, etcd_kv_t *kv)
{
    size_t klen;
    int rc;

    memset(kv, 0, sizeof(*kv));
    if (!json_is_object(o))
        return -1;
    rc = etcd_get_b64(o, "key", (uint8_t **)&kv->key, &klen);
    if (rc || !kv->key || memchr(kv->key, '\0', klen))
        goto out_bad;
    if (etcd_get_b64(o, "value", &kv->value, &kv->len) ||
        etcd_get_int(o, "create_revision", &kv->create_revision) ||
        etcd_get_int(o, "mod_revision", &kv->mod_revision) ||
        etcd_get_int(o, "version", &kv->version) || etcd_get_int(o, "lease", &kv->lease))
        goto out_bad;
    return 0;

out_bad:
    etcd_kv_free(kv);
    return -1;
}

static int etcd_header_revision(const json_t *root, int64_t *rev)
{
    const json_t *h = json_object_get(root, "header");

    *rev = 0;
    return json_is_object(h) ? etcd_get_int(h, "revision", rev) : 0;
}

static json_t *etcd_load(const char *body, size_t n, char *err, size_t len)
{
    json_error_t je;
    json_t *root = json_loadb(body, n, JSON_REJECT_DUPLICATES, &je);

    if (!root) {
        etcd_fail(err, len, "not JSON: %s", je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        etcd_fail(err, len, "not a JSON object");
        return NULL;
    }
    if (json_object_get(root, "error")) {
        etcd_status_t st;
        etcd_parse_error(body, n, &st);
        json_decref(root);
        etcd_fail(err, len, "%s", st.message);
        return NULL;
    }
    return root;
}

int etcd_parse_error(const char *body, size_t n, etcd_status_t *st)
{
    json_t *root = json_loadb(body, n, 0, NULL);
    const json_t *e, *m;
    int64_t code = 0;

    memset(st, 0, sizeof(*st));
    if (!json_is_object(root)) {
        json_decref(root);
        snprintf(st->message, sizeof(st->message), "an answer that is not JSON");
        return -1;
    }
    e = json_object_get(root, "error");
    if (json_is_object(e)) { /* in a stream: {"error": {"grpc_code", "message", ...}} */
        etcd_get_int(e, "grpc_code", &code);
        m = json_object_get(e, "message");
    } else {
        etcd_get_int(root, "code", &code);
        m = json_object_get(root, "message");
        if (!json_is_string(m))
            m = e;
    }
    st->code = (int)code;
    snprintf(st->message, sizeof(st->message), "%s",
             json_is_string(m) ? json_string_value(m) : "an error without a message");
    json_decref(root);
    return e ? 0 : -1;
}

static int etcd_parse_range_obj(const json_t *o, etcd_range_res_t *out)
{
    const json_t *kvs = json_object_get(o, "kvs");
    size_t i;

    memset(out, 0, sizeof(*out));
    if (etcd_header_revision(o, &out->revision) || etcd_get_int(o, "count", &out->count))
        return -1;
    out->more = etcd_get_bool(o, "more");
    if (!kvs || json_is_null(kvs))
        return 0;
    if (!json_is_array(kvs))
        return -1;
    if (json_array_size(kvs) && !(out->kvs = calloc(json_array_size(kvs), sizeof(*out->kvs))))
        return -ENOMEM;
    for (i = 0; i < json_array_size(kvs); i++) {
        if (etcd_parse_kv(json_array_get(kvs, i), &out->kvs[i])) {
            etcd_range_res_free(out);
            return -1;
        }
        out->n++;
    }
    return 0;
}

int etcd_parse_range(const char *body, size_t n, etcd_range_res_t *out, char *err, size_t len)
{
    json_t *root = etcd_load(body, n, err, len);
    int rc;

    memset(out, 0, sizeof(*out));
    if (!root)
        return -1;
    rc = etcd_parse_range_obj(root, out);
    json_decref(root);
    return rc ? etcd_fail(err, len, "a range answer that does not parse") : 0;
}

int etcd_parse_txn(const char *body, size_t n, etcd_txn_res_t *out, char *err, size_t len)
{
    json_t *root = etcd_load(body, n, err, len);
    const json_t *resp;
    size_t i;

    memset(out, 0, sizeof(*out));
    if (!root)
        return -1;
    if (etcd_header_revision(root, &out->revision))
        goto out_bad;
    out->succeeded = etcd_get_bool(root, "succeeded");
    resp = json_object_get(root, "responses");
    if (resp && !json_is_null(resp)) {
        if (!json_is_array(resp))
            goto out_bad;
        if (json_array_size(resp) &&
            !(out->ranges = calloc(json_array_size(resp), sizeof(*out->ranges))))
            goto out_bad;
        for (i = 0; i < json_array_size(resp); i++) {
            const json_t *r = json_object_get(json_array_get(resp, i), "response_range");
            if (r && etcd_parse_range_obj(r, &out->ranges[i]))
                goto out_bad;
            out->n_ranges++;
        }
    }
    json_decref(root);
    return 0;

out_bad:
    json_decref(root);
    etcd_txn_res_free(out);
    return etcd_fail(err, len, "a txn answer that does not parse");
}

int etcd_parse_lease(const char *body, size_t n, int64_t *id, int64_t *ttl, char *err,
                     size_t len)
{
    json_t *root = etcd_load(body, n, err, len);
    const json_t *o;
    int rc;

    *id = *ttl = 0;
    if (!root)
        return -1;
    o = json_object_get(root, "result");
    if (!json_is_object(o))
        o = root;
    if (json_object_get(o, "error")) {
        json_decref(root);
        return etcd_fail(err, len, "the lease call failed");
    }
    rc = etcd_get_int(o, "ID", id) | etcd_get_int(o, "TTL", ttl);
    json_decref(root);
    return rc ? etcd_fail(err, len, "a lease answer that does not parse") : 0;
}

int etcd_parse_watch(const char *line, size_t n, etcd_watch_res_t *out, etcd_status_t *st,
                     char *err, size_t len)
{
    json_error_t je;
    json_t *root = json_loadb(line, n, 0, &je);
    const json_t *r, *evs;
    size_t i;

    memset(out, 0, sizeof(*out));
    memset(st, 0, sizeof(*st));
    if (!json_is_object(root)) {
        json_decref(root);
        return etcd_fail(err, len, "a watch line that is not a JSON object");
    }
    if (json_object_get(root, "error")) {
        json_decref(root);
        etcd_parse_error(line, n, st);
        return etcd_fail(err, len, "%s", st->message);
    }
    r = json_object_get(root, "result");
    if (!json_is_object(r))
        goto out_bad;
    if (etcd_header_revision(r, &out->revision) ||
        etcd_get_int(r, "compact_revision", &out->compact_revision))
        goto out_bad;
    out->created = etcd_get_bool(r, "created");
    out->canceled = etcd_get_bool(r, "canceled");
    evs = json_object_get(r, "events");
    if (evs && !json_is_null(evs)) {
        if (!json_is_array(evs))
            goto out_bad;
        if (json_array_size(evs) &&
            !(out->events = calloc(json_array_size(evs), sizeof(*out->events))))
            goto out_bad;
        for (i = 0; i < json_array_size(evs); i++) {
            const json_t *e = json_array_get(evs, i), *type = json_object_get(e, "type");
            etcd_event_t *ev = &out->events[i];
            if (!json_is_object(e) || etcd_parse_kv(json_object_get(e, "kv"), &ev->kv))
                goto out_bad;
            out->n++;
            if (type && !json_is_string(type))
                goto out_bad;
            ev->deleted = type && strcmp(json_string_value(type), "DELETE") == 0;
        }
    }
    json_decref(root);
    return 0;

out_bad:
    json_decref(root);
    etcd_watch_res_free(out);
    return etcd_fail(err, len, "a watch answer that does not parse");
}

void etcd_kv_free(etcd_kv_t *kv)
{
    free(kv->key);
    free(kv->value);
    memset(kv, 0, sizeof(*kv));
}

void etcd_range_res_free(etcd_range_res_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        etcd_kv_free(&r->kvs[i]);
    free(r->kvs);
    memset(r, 0, sizeof(*r));
}

void etcd_txn_res_free(etcd_txn_res_t *t)
{
    for (size_t i = 0; i < t->n_ranges; i++)
        etcd_range_res_free(&t->ranges[i]);
    free(t->ranges);
    memset(t, 0, sizeof(*t));
}

void etcd_watch_res_free(etcd_watch_res_t *w)
{
    for (size_t i = 0; i < w->n; i++)
        etcd_kv_free(&w->events[i].kv);
    free(w->events);
    memset(w, 0, sizeof(*w));
}
