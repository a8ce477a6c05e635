/* compose: see compose.h.
 *
 * The walk: compose_parse() loads the document, reads the top-level volumes,
 * then each service into a spec_new() spec through tables of keys (one
 * table per mapping: service, healthcheck, deploy, ...). An entry either
 * names a handler or says how to read a scalar (duration, integer, ...) and
 * where it goes (an offset into the target message), the way flags.c does
 * for the command line. Paths for messages are built on the stack as the
 * walk descends.
 */
#include "compose.h"
#include "duration.h"
#include "edit.h"
#include "errors.h"
#include "parse.h"
#include "pbutil.h"
#include "secret.h"
#include "spec.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#define CZ_PATH 256
#define CZ_MAX_VISITS 2000000
#define CZ_MAX_VALUE 65536
#define CZ_MAX_DEPTH 8
#define CZ_MAX_KEYS 1024 /* in one mapping; keys are checked for duplicates */

typedef struct cz_volume {
    char *key;   /* as the file names it */
    char *name;  /* as the engine will */
} cz_volume_t;

typedef struct cz {
    const char *file;
    yaml_document_t *doc;
    const compose_opts_t *o;
    char *err;
    size_t errlen;
    size_t visits;
    compose_t *out;
    cz_volume_t *volumes;
    size_t n_volumes;
} cz_t;

static const compose_secret_t *cz_find_secret(const cz_t *cz, SecretKind kind,
                                              const char *key);

typedef struct cz_pair {
    const char *key;
    yaml_node_t *knode;
    yaml_node_t *value;
} cz_pair_t;

typedef struct cz_key cz_key_t;
typedef int (*cz_fn)(cz_t *cz, yaml_node_t *v, const char *path, void *target);

enum cz_kind { CZ_FN, CZ_DURATION, CZ_UINT32, CZ_RATIO, CZ_CPUS, CZ_MEMORY, CZ_RESTART,
               CZ_ACTION, CZ_ROLLBACK_ACTION, CZ_ORDER, CZ_STRING, CZ_NUMBER };

struct cz_key {
    const char *key;
    enum cz_kind kind;
    size_t off;
    cz_fn fn;
};

/* The keys of one kind of mapping: the ones skiff reads, and the Compose
 * keys it knows but does not support (named as such in the error). */
typedef struct cz_map_def {
    const cz_key_t *keys;
    size_t n_keys;
    const char *const *unsupported;
} cz_map_def_t;

static const char *cz_env_default(void *arg, const char *name)
{
    return getenv(name);
}

/* ------------------------------------------------------------- messages */

static int cz_fail(cz_t *cz, const yaml_node_t *node, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int cz_fail(cz_t *cz, const yaml_node_t *node, const char *path, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (node)
        snprintf(cz->err, cz->errlen, "%s:%zu: %s%s%s", cz->file, node->start_mark.line + 1,
                 path ? path : "", path && *path ? ": " : "", msg);
    else
        snprintf(cz->err, cz->errlen, "%s: %s%s%s", cz->file, path ? path : "",
                 path && *path ? ": " : "", msg);
    parse_one_line(cz->err);
    return SKIFF_EINVAL;
}

static int cz_nomem(cz_t *cz)
{
    snprintf(cz->err, cz->errlen, "out of memory");
    return -ENOMEM;
}

static int cz_warn(cz_t *cz, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int cz_warn(cz_t *cz, const char *fmt, ...)
{
    compose_t *c = cz->out;
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    parse_one_line(msg);
    for (size_t i = 0; i < c->n_warnings; i++)
        if (strcmp(c->warnings[i], msg) == 0)
            return 0;
    if (c->n_warnings >= 64)
        return 0;
    return pb_push_str(&c->n_warnings, &c->warnings, msg) ? cz_nomem(cz) : 0;
}

static void cz_child(char *out, const char *path, const char *key)
{
    snprintf(out, CZ_PATH, "%s%s%s", path, *path ? "." : "", key);
}

static void cz_elem(char *out, const char *path, size_t i)
{
    snprintf(out, CZ_PATH, "%s[%zu]", path, i);
}

/* -------------------------------------------------------- interpolation */

typedef struct cz_sbuf {
    char *s;
    size_t len, cap;
} cz_sbuf_t;

static int cz_sbuf_add(cz_sbuf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > CZ_MAX_VALUE)
        return -ENOBUFS;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *grown = realloc(b->s, cap);
        if (!grown)
            return -ENOMEM;
        b->s = grown;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
    return 0;
}

typedef struct cz_interp {
    compose_env_fn env;
    void *arg;
    char *missing;
    size_t missinglen;
    char *why;
    size_t whylen;
} cz_interp_t;

static int cz_interp_fail(cz_interp_t *in, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int cz_interp_fail(cz_interp_t *in, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(in->why, in->whylen, fmt, ap);
    va_end(ap);
    parse_one_line(in->why);
    return SKIFF_EINVAL;
}

static int cz_is_name_start(char c)
{
    return isalpha((unsigned char)c) || c == '_';
}

static int cz_is_name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

static int cz_interp_run(cz_interp_t *in, const char *s, size_t n, cz_sbuf_t *out, int depth);

/* ${...}: body is what is between the braces. */
static int cz_interp_braced(cz_interp_t *in, const char *body, size_t n, cz_sbuf_t *out,
                            int depth)
{
    char name[128], op[3] = "";
    const char *value, *rest;
    size_t nlen = 0, restlen;
    int set, nonempty;

    while (nlen < n && cz_is_name_char(body[nlen]))
        nlen++;
    if (nlen == 0 || !cz_is_name_start(body[0]) || nlen >= sizeof(name))
        return cz_interp_fail(in, "invalid variable reference ${%.*s}", (int)(n > 60 ? 60 : n),
                              body);
    memcpy(name, body, nlen);
    name[nlen] = '\0';
    rest = body + nlen;
    restlen = n - nlen;
    if (restlen) {
        size_t oplen = rest[0] == ':' ? 2 : 1;
        if (restlen < oplen || !strchr("-?+", rest[oplen - 1]))
            return cz_interp_fail(in, "invalid variable reference ${%.*s}",
                                  (int)(n > 60 ? 60 : n), body);
        memcpy(op, rest, oplen);
        op[oplen] = '\0';
        rest += oplen;
        restlen -= oplen;
    }
    value = in->env(in->arg, name);
    set = value != NULL;
    nonempty = set && *value;
    if (!*op) {
        if (!set && in->missing && !*in->missing)
            snprintf(in->missing, in->missinglen, "%s", name);
        return set ? cz_sbuf_add(out, value, strlen(value)) : 0;
    }
    int use_value = op[0] == ':' ? nonempty : set;
    switch (op[strlen(op) - 1]) {
    case '-':
        if (use_value)
            return cz_sbuf_add(out, value, strlen(value));
        return cz_interp_run(in, rest, restlen, out, depth + 1);
    case '?':
        if (use_value)
            return cz_sbuf_add(out, value, strlen(value));
        if (restlen)
            return cz_interp_fail(in, "%s: %.*s", name, (int)(restlen > 200 ? 200 : restlen),
                                  rest);
        return cz_interp_fail(in, "required variable %s is missing a value", name);
    default: /* '+' */
        if (use_value)
            return cz_interp_run(in, rest, restlen, out, depth + 1);
        return 0;
    }
}

static int cz_interp_run(cz_interp_t *in, const char *s, size_t n, cz_sbuf_t *out, int depth)
{
    size_t i = 0, start;
    int rc;

    if (depth > CZ_MAX_DEPTH)
        return cz_interp_fail(in, "variable references nest too deep");
    while (i < n) {
        start = i;
        while (i < n && s[i] != '$')
            i++;
        if ((rc = cz_sbuf_add(out, s + start, i - start)))
            return rc;
        if (i == n)
            break;
        i++; /* the '$' */
        if (i < n && s[i] == '$') {
            if ((rc = cz_sbuf_add(out, "$", 1)))
                return rc;
            i++;
        } else if (i < n && s[i] == '{') {
            size_t body = ++i;
            int level = 1;
            while (i < n && level) {
                if (s[i] == '{')
                    level++;
                else if (s[i] == '}')
                    level--;
                i++;
            }
            if (level)
                return cz_interp_fail(in, "unterminated ${ in variable reference");
            if ((rc = cz_interp_braced(in, s + body, i - 1 - body, out, depth)))
                return rc;
        } else if (i < n && cz_is_name_start(s[i])) {
            size_t name = i;
            while (i < n && cz_is_name_char(s[i]))
                i++;
            if ((rc = cz_interp_braced(in, s + name, i - name, out, depth)))
                return rc;
        } else {
            return cz_interp_fail(in, "invalid variable reference: a lone $ (write $$ for a "
                                      "dollar sign)");
        }
    }
    return 0;
}

int compose_interpolate(const char *s, compose_env_fn env, void *arg, char **out,
                        char *missing, size_t missinglen, char *why, size_t whylen)
{
    cz_interp_t in = { env ? env : cz_env_default, arg, missing, missinglen, why, whylen };
    cz_sbuf_t b = { 0 };
    int rc;

    if (missing && missinglen)
        missing[0] = '\0';
    rc = cz_sbuf_add(&b, "", 0);
    if (rc == 0)
        rc = cz_interp_run(&in, s, strlen(s), &b, 0);
    if (rc == -ENOBUFS)
        rc = cz_interp_fail(&in, "value longer than %d bytes", CZ_MAX_VALUE);
    if (rc) {
        free(b.s);
        return rc;
    }
    *out = b.s;
    return 0;
}

/* ---------------------------------------------------------------- nodes */

static yaml_node_t *cz_node(cz_t *cz, yaml_node_item_t i)
{
    return yaml_document_get_node(cz->doc, i);
}

static int cz_visit(cz_t *cz, yaml_node_t *node, const char *path)
{
    if (++cz->visits > CZ_MAX_VISITS)
        return cz_fail(cz, node, path, "the file is too complex (aliases expand too much)");
    return 0;
}

static int cz_is_null(const yaml_node_t *n)
{
    const char *v;

    if (!n || n->type != YAML_SCALAR_NODE)
        return n == NULL;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    v = (const char *)n->data.scalar.value;
    return !*v || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

static const char *cz_type_name(const yaml_node_t *n)
{
    if (cz_is_null(n))
        return "nothing";
    switch (n->type) {
    case YAML_MAPPING_NODE: return "a mapping";
    case YAML_SEQUENCE_NODE: return "a list";
    default: return "a scalar";
    }
}

/* A scalar value, variables substituted; malloc'd into *out. */
static int cz_scalar(cz_t *cz, yaml_node_t *n, const char *path, const char *expected,
                     char **out)
{
    char missing[128], why[256];
    int rc;

    if (!n || n->type != YAML_SCALAR_NODE || cz_is_null(n))
        return cz_fail(cz, n, path, "expected %s, not %s", expected, cz_type_name(n));
    rc = compose_interpolate((const char *)n->data.scalar.value, cz->o->env, cz->o->env_arg,
                             out, missing, sizeof(missing), why, sizeof(why));
    if (rc == -ENOMEM)
        return cz_nomem(cz);
    if (rc)
        return cz_fail(cz, n, path, "%s", why);
    if (*missing &&
        (rc = cz_warn(cz, "The %s variable is not set. Defaulting to a blank string.", missing)))
        free(*out);
    return rc;
}

/* A scalar read into a fixed buffer (numbers, names, durations). */
static int cz_scalar_buf(cz_t *cz, yaml_node_t *n, const char *path, const char *expected,
                         char *out, size_t len)
{
    char *s;
    int rc = cz_scalar(cz, n, path, expected, &s);

    if (rc)
        return rc;
    if (strlen(s) >= len) {
        free(s);
        return cz_fail(cz, n, path, "expected %s: value too long", expected);
    }
    strcpy(out, s);
    free(s);
    return 0;
}

static int cz_uint(cz_t *cz, yaml_node_t *n, const char *path, uint64_t max, uint64_t *out)
{
    char s[64];
    int rc = cz_scalar_buf(cz, n, path, "an integer", s, sizeof(s));

    if (rc)
        return rc;
    if (parse_uint(s, UINT64_MAX, out))
        return cz_fail(cz, n, path, "expected an integer, not \"%s\"", s);
    if (*out > max)
        return cz_fail(cz, n, path, "%s is more than %llu", s, (unsigned long long)max);
    return 0;
}

static int cz_bool(cz_t *cz, yaml_node_t *n, const char *path, int *out)
{
    char s[16];
    int rc = cz_scalar_buf(cz, n, path, "true or false", s, sizeof(s));

    if (rc)
        return rc;
    if (parse_bool(s, out))
        return cz_fail(cz, n, path, "expected true or false, not \"%s\"", s);
    return 0;
}

static int cz_duration(cz_t *cz, yaml_node_t *n, const char *path, int64_t *ms)
{
    char s[64];
    int rc = cz_scalar_buf(cz, n, path, "a duration", s, sizeof(s));

    if (rc)
        return rc;
    if (duration_parse(s, ms))
        return cz_fail(cz, n, path, "expected a duration like 10s or 1m30s, not \"%s\"", s);
    return 0;
}

static int cz_port(cz_t *cz, yaml_node_t *n, const char *path, uint32_t *port)
{
    char s[32], why[96];
    int rc = cz_scalar_buf(cz, n, path, "a port", s, sizeof(s));

    if (rc)
        return rc;
    if (parse_port(s, port, why, sizeof(why)))
        return cz_fail(cz, n, path, "\"%s\": %s", s, why);
    return 0;
}

static int cz_expect(cz_t *cz, yaml_node_t *n, const char *path, yaml_node_type_t type)
{
    if (n && n->type == type && !cz_is_null(n))
        return 0;
    return cz_fail(cz, n, path, "expected %s, not %s",
                   type == YAML_MAPPING_NODE ? "a mapping" : "a list", cz_type_name(n));
}

/* The items of a sequence, bounded. */
static int cz_items(cz_t *cz, yaml_node_t *n, const char *path, yaml_node_item_t **start,
                    size_t *count)
{
    int rc = cz_expect(cz, n, path, YAML_SEQUENCE_NODE);

    if (rc)
        return rc;
    *start = n->data.sequence.items.start;
    *count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (*count > spec_limits_default.max_list)
        return cz_fail(cz, n, path, "more than %zu entries", spec_limits_default.max_list);
    cz->visits += *count;
    return cz_visit(cz, n, path);
}

static int cz_pairs_add(cz_t *cz, cz_pair_t **pairs, size_t *n, size_t *cap,
                        yaml_node_t *mapping, const char *path, int depth);

/* Merges a "<<" value (a mapping or a list of them): keys not set yet.
 * depth bounds merges of merges (an anchor may even merge itself). */
static int cz_pairs_merge(cz_t *cz, cz_pair_t **pairs, size_t *n, size_t *cap, yaml_node_t *v,
                          const char *path, int depth)
{
    if (depth > CZ_MAX_DEPTH)
        return cz_fail(cz, v, path, "<<: merges nest too deep");
    if (v && v->type == YAML_MAPPING_NODE)
        return cz_pairs_add(cz, pairs, n, cap, v, path, depth);
    if (v && v->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *it = v->data.sequence.items.start;
             it < v->data.sequence.items.top; it++) {
            yaml_node_t *m = cz_node(cz, *it);
            if (!m || m->type != YAML_MAPPING_NODE)
                return cz_fail(cz, m, path, "<<: expected a mapping to merge");
            int rc = cz_pairs_add(cz, pairs, n, cap, m, path, depth);
            if (rc)
                return rc;
        }
        return 0;
    }
    return cz_fail(cz, v, path, "<<: expected a mapping or a list of mappings to merge");
}

/* Adds the pairs of mapping; depth 0 is the mapping itself, more is a
 * mapping merged into it. */
static int cz_pairs_add(cz_t *cz, cz_pair_t **pairs, size_t *n, size_t *cap,
                        yaml_node_t *mapping, const char *path, int depth)
{
    yaml_node_pair_t *p;
    yaml_node_t *merge = NULL;
    size_t first = *n;
    int rc;

    if ((rc = cz_visit(cz, mapping, path)))
        return rc;
    if (mapping->data.mapping.pairs.top - mapping->data.mapping.pairs.start > CZ_MAX_KEYS)
        return cz_fail(cz, mapping, path, "more than %d keys", CZ_MAX_KEYS);
    for (p = mapping->data.mapping.pairs.start; p < mapping->data.mapping.pairs.top; p++) {
        yaml_node_t *k = cz_node(cz, p->key), *v = cz_node(cz, p->value);
        const char *key;
        int dup = 0;

        if (!k || k->type != YAML_SCALAR_NODE)
            return cz_fail(cz, k, path, "keys must be strings");
        key = (const char *)k->data.scalar.value;
        if (strcmp(key, "<<") == 0 && k->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
            merge = v;
            continue;
        }
        for (size_t i = 0; i < *n; i++) {
            if (strcmp((*pairs)[i].key, key) == 0) {
                if (depth == 0 && i >= first)
                    return cz_fail(cz, k, path, "duplicate key %s", key);
                dup = 1;
            }
        }
        if (dup)
            continue; /* set before (explicitly, or by an earlier merge) */
        if (*n >= CZ_MAX_KEYS)
            return cz_fail(cz, mapping, path, "more than %d keys", CZ_MAX_KEYS);
        if (*n == *cap) {
            size_t ncap = *cap ? 2 * *cap : 16;
            cz_pair_t *grown = realloc(*pairs, ncap * sizeof(*grown));
            if (!grown)
                return cz_nomem(cz);
            *pairs = grown;
            *cap = ncap;
        }
        (*pairs)[(*n)++] = (cz_pair_t){ key, k, v };
    }
    return merge ? cz_pairs_merge(cz, pairs, n, cap, merge, path, depth + 1) : 0;
}

/* The pairs of a mapping, merge keys applied (explicit keys win). */
static int cz_pairs(cz_t *cz, yaml_node_t *n, const char *path, cz_pair_t **pairs,
                    size_t *count)
{
    size_t cap = 0;
    int rc = cz_expect(cz, n, path, YAML_MAPPING_NODE);

    *pairs = NULL;
    *count = 0;
    if (rc == 0)
        rc = cz_pairs_add(cz, pairs, count, &cap, n, path, 0);
    if (rc) {
        free(*pairs);
        *pairs = NULL;
    }
    return rc;
}

/* A string or a list of strings as words; a string is split as a shell
 * would (Compose's command and entrypoint). */
static int cz_words(cz_t *cz, yaml_node_t *n, const char *path, size_t *count, char ***words)
{
    yaml_node_item_t *it;
    char elem[CZ_PATH], why[96], *s;
    size_t items;
    int rc;

    if (n && n->type == YAML_SCALAR_NODE && !cz_is_null(n)) {
        if ((rc = cz_scalar(cz, n, path, "a string", &s)))
            return rc;
        rc = parse_words(s, count, words, why, sizeof(why));
        free(s);
        if (rc == -ENOMEM)
            return cz_nomem(cz);
        return rc ? cz_fail(cz, n, path, "%s", why) : 0;
    }
    if (!n || n->type != YAML_SEQUENCE_NODE)
        return cz_fail(cz, n, path, "expected a string or a list of strings, not %s",
                       cz_type_name(n));
    if ((rc = cz_items(cz, n, path, &it, &items)))
        return rc;
    for (size_t i = 0; i < items; i++) {
        cz_elem(elem, path, i);
        if ((rc = cz_scalar(cz, cz_node(cz, it[i]), elem, "a string", &s)))
            return rc;
        rc = pb_push_str(count, words, s);
        free(s);
        if (rc)
            return cz_nomem(cz);
    }
    return 0;
}

static void cz_free_words(size_t n, char **words)
{
    for (size_t i = 0; i < n; i++)
        free(words[i]);
    free(words);
}

/* Replaces a spec list (command, entrypoint) with the node's words. */
static int cz_set_words(cz_t *cz, yaml_node_t *n, const char *path, size_t *count, char ***arr)
{
    size_t nw = 0;
    char **words = NULL;
    int rc = cz_words(cz, n, path, &nw, &words);

    if (rc == 0 && edit_strv_set(count, arr, words, nw))
        rc = cz_nomem(cz);
    cz_free_words(nw, words);
    return rc;
}

/* ------------------------------------------------------- table-driven maps */

static int cz_apply_scalar(cz_t *cz, const cz_key_t *k, yaml_node_t *v, const char *path,
                           void *target)
{
    void *field = (char *)target + k->off;
    char s[128];
    uint64_t u;
    int64_t i64;
    double d;
    int rc;

    switch (k->kind) {
    case CZ_DURATION:
        return cz_duration(cz, v, path, field);
    case CZ_UINT32:
        if ((rc = cz_uint(cz, v, path, UINT32_MAX, &u)))
            return rc;
        *(uint32_t *)field = (uint32_t)u;
        return 0;
    case CZ_STRING: {
        char *str;
        if ((rc = cz_scalar(cz, v, path, "a string", &str)))
            return rc;
        rc = pb_set_str(field, str);
        free(str);
        return rc ? cz_nomem(cz) : 0;
    }
    default:
        break;
    }
    if ((rc = cz_scalar_buf(cz, v, path, "a value", s, sizeof(s))))
        return rc;
    switch (k->kind) {
    case CZ_RATIO:
        if (parse_ratio(s, &d))
            return cz_fail(cz, v, path, "expected a number between 0 and 1, not \"%s\"", s);
        *(double *)field = d;
        return 0;
    case CZ_CPUS:
        if (parse_cpus(s, &i64))
            return cz_fail(cz, v, path, "expected a number of CPUs like 0.5, not \"%s\"", s);
        *(int64_t *)field = i64;
        return 0;
    case CZ_MEMORY:
        if (parse_memory(s, &i64))
            return cz_fail(cz, v, path, "expected a size like 512M or 1G, not \"%s\"", s);
        *(int64_t *)field = i64;
        return 0;
    case CZ_RESTART:
        if (spec_restart_condition_parse(s, field))
            return cz_fail(cz, v, path, "expected none, on-failure or any, not \"%s\"", s);
        return 0;
    case CZ_ACTION:
    case CZ_ROLLBACK_ACTION: {
        FailureAction a;
        if (spec_failure_action_parse(s, &a) ||
            (k->kind == CZ_ROLLBACK_ACTION && a == FAILURE_ROLLBACK))
            return cz_fail(cz, v, path, "expected %s, not \"%s\"",
                           k->kind == CZ_ACTION ? "pause, continue or rollback"
                                                : "pause or continue", s);
        *(FailureAction *)field = a;
        return 0;
    }
    case CZ_ORDER:
        if (spec_update_order_parse(s, field))
            return cz_fail(cz, v, path, "expected stop-first or start-first, not \"%s\"", s);
        return 0;
    case CZ_NUMBER: {
        char *end;
        d = strtod(s, &end);
        if (!*s || *end || !(d > 0 && d <= 1e9))
            return cz_fail(cz, v, path, "expected a number above 0, not \"%s\"", s);
        *(double *)field = d;
        return 0;
    }
    default:
        return cz_fail(cz, v, path, "internal error: unknown kind");
    }
}

static const char *const cz_no_unsupported[] = { NULL };

/* skiff's own extension keys are checked; other x- keys are ignored. */
static int cz_map(cz_t *cz, yaml_node_t *n, const char *path, const cz_map_def_t *def,
                  void *target)
{
    cz_pair_t *pairs;
    size_t count;
    char child[CZ_PATH];
    int rc = cz_pairs(cz, n, path, &pairs, &count);

    if (rc)
        return rc;
    for (size_t i = 0; i < count && rc == 0; i++) {
        const cz_pair_t *p = &pairs[i];
        const cz_key_t *k = NULL;

        cz_child(child, path, p->key);
        for (size_t j = 0; j < def->n_keys; j++)
            if (strcmp(def->keys[j].key, p->key) == 0)
                k = &def->keys[j];
        if (k) {
            if (k->kind == CZ_FN && !k->fn)
                continue; /* known, read by the caller */
            rc = k->kind == CZ_FN ? k->fn(cz, p->value, child, target)
                                  : cz_apply_scalar(cz, k, p->value, child, target);
            continue;
        }
        if (strncmp(p->key, "x-", 2) == 0 && strncmp(p->key, "x-skiff-", 8) != 0)
            continue;
        for (const char *const *u = def->unsupported; *u; u++)
            if (strcmp(*u, p->key) == 0)
                rc = cz_fail(cz, p->knode, child, "not supported by skiff");
        if (rc == 0)
            rc = cz_fail(cz, p->knode, child, "unknown key");
    }
    free(pairs);
    return rc;
}

#define CZ_KEYS(arr, unsup) { arr, sizeof(arr) / sizeof(arr[0]), unsup }

/* ------------------------------------------------------------- services */

static int cz_image(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    ServiceSpec *s = target;
    char *str;
    int rc = cz_scalar(cz, v, path, "a string", &str);

    if (rc)
        return rc;
    rc = pb_set_str(&s->image, str);
    free(str);
    return rc ? cz_nomem(cz) : 0;
}

static int cz_command(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    ServiceSpec *s = target;

    return cz_set_words(cz, v, path, &s->n_command, &s->command);
}

static int cz_entrypoint(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    ServiceSpec *s = target;

    return cz_set_words(cz, v, path, &s->n_entrypoint, &s->entrypoint);
}

/* environment: a mapping (a null value: from skiff's environment, or unset)
 * or a list of KEY=VALUE (a bare KEY: the same). */
static int cz_env_entry(cz_t *cz, ServiceSpec *s, const char *key, const char *value)
{
    const char *from;
    char *kv;
    int rc;

    if (!*key || strchr(key, '='))
        return SKIFF_EINVAL;
    if (!value) {
        from = cz->o->env(cz->o->env_arg, key);
        if (!from)
            return 0;
        value = from;
    }
    kv = malloc(strlen(key) + strlen(value) + 2);
    if (!kv)
        return cz_nomem(cz);
    sprintf(kv, "%s=%s", key, value);
    rc = edit_env_set(s, kv);
    free(kv);
    return rc ? cz_nomem(cz) : 0;
}

static int cz_environment(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    ServiceSpec *s = target;
    char child[CZ_PATH], *str;
    int rc = 0;

    if (v && v->type == YAML_MAPPING_NODE) {
        cz_pair_t *pairs;
        size_t count;
        if ((rc = cz_pairs(cz, v, path, &pairs, &count)))
            return rc;
        for (size_t i = 0; i < count && rc == 0; i++) {
            cz_child(child, path, pairs[i].key);
            str = NULL;
            if (!cz_is_null(pairs[i].value) &&
                (rc = cz_scalar(cz, pairs[i].value, child, "a string", &str)))
                break;
            rc = cz_env_entry(cz, s, pairs[i].key, str);
            if (rc == SKIFF_EINVAL)
                rc = cz_fail(cz, pairs[i].knode, child, "not a variable name");
            free(str);
        }
        free(pairs);
        return rc;
    }
    if (v && v->type == YAML_SEQUENCE_NODE) {
        yaml_node_item_t *it;
        size_t items;
        if ((rc = cz_items(cz, v, path, &it, &items)))
            return rc;
        for (size_t i = 0; i < items && rc == 0; i++) {
            yaml_node_t *e = cz_node(cz, it[i]);
            char *eq;
            cz_elem(child, path, i);
            if ((rc = cz_scalar(cz, e, child, "KEY=VALUE", &str)))
                break;
            eq = strchr(str, '=');
            if (eq)
                *eq = '\0';
            rc = cz_env_entry(cz, s, str, eq ? eq + 1 : NULL);
            if (rc == SKIFF_EINVAL)
                rc = cz_fail(cz, e, child, "expected KEY=VALUE");
            free(str);
        }
        return rc;
    }
    return cz_fail(cz, v, path, "expected a mapping or a list, not %s", cz_type_name(v));
}

/* labels (and deploy.labels): a mapping or a list of KEY=VALUE. */
static int cz_labels(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    ServiceSpec *s = target;
    char child[CZ_PATH], *str;
    int rc = 0;

    if (v && v->type == YAML_MAPPING_NODE) {
        cz_pair_t *pairs;
        size_t count;
        if ((rc = cz_pairs(cz, v, path, &pairs, &count)))
            return rc;
        for (size_t i = 0; i < count && rc == 0; i++) {
            cz_child(child, path, pairs[i].key);
            str = NULL;
            if (!cz_is_null(pairs[i].value) &&
                (rc = cz_scalar(cz, pairs[i].value, child, "a string", &str)))
                break;
            if (!*pairs[i].key)
                rc = cz_fail(cz, pairs[i].knode, child, "empty label key");
            else if (edit_label_set(s, pairs[i].key, str ? str : ""))
                rc = cz_nomem(cz);
            free(str);
        }
        free(pairs);
        return rc;
    }
    if (v && v->type == YAML_SEQUENCE_NODE) {
        yaml_node_item_t *it;
        size_t items;
        if ((rc = cz_items(cz, v, path, &it, &items)))
            return rc;
        for (size_t i = 0; i < items && rc == 0; i++) {
            yaml_node_t *e = cz_node(cz, it[i]);
            char *eq;
            cz_elem(child, path, i);
            if ((rc = cz_scalar(cz, e, child, "KEY=VALUE", &str)))
                break;
            eq = strchr(str, '=');
            if (eq)
                *eq = '\0';
            if (!*str)
                rc = cz_fail(cz, e, child, "expected KEY=VALUE");
            else if (edit_label_set(s, str, eq ? eq + 1 : ""))
                rc = cz_nomem(cz);
            free(str);
        }
        return rc;
    }
    return cz_fail(cz, v, path, "expected a mapping or a list, not %s", cz_type_name(v));
}

static const char *const cz_port_unsupported[] = { "host_ip", "name", "app_protocol", NULL };

static int cz_port_published(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    return cz_port(cz, v, path, &((PortConfig *)target)->published);
}

static int cz_port_target(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    return cz_port(cz, v, path, &((PortConfig *)target)->target);
}

static int cz_port_protocol(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    char s[16];
    int rc = cz_scalar_buf(cz, v, path, "a protocol", s, sizeof(s));

    if (rc == 0 && strcmp(s, "tcp") != 0)
        rc = cz_fail(cz, v, path, "\"%s\": only tcp is supported", s);
    return rc;
}

static int cz_port_mode(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    char s[16];
    int rc = cz_scalar_buf(cz, v, path, "a mode", s, sizeof(s));

    if (rc == 0 && strcmp(s, "ingress") != 0)
        rc = cz_fail(cz, v, path, "\"%s\" is not supported (ingress only)", s);
    return rc;
}

static const cz_key_t cz_port_keys[] = {
    { "published", CZ_FN, 0, cz_port_published },
    { "target", CZ_FN, 0, cz_port_target },
    { "protocol", CZ_FN, 0, cz_port_protocol },
    { "mode", CZ_FN, 0, cz_port_mode },
};
static const cz_map_def_t cz_port_def = CZ_KEYS(cz_port_keys, cz_port_unsupported);

static int cz_ports(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    ServiceSpec *s = target;
    yaml_node_item_t *it;
    char child[CZ_PATH], str[128], why[128];
    size_t items;
    int rc = cz_items(cz, v, path, &it, &items);

    for (size_t i = 0; i < items && rc == 0; i++) {
        yaml_node_t *e = cz_node(cz, it[i]);
        PortConfig *p;
        cz_elem(child, path, i);
        if (e && e->type == YAML_MAPPING_NODE) {
            if (!(p = PB_NEW(PortConfig)) || pb_set_str(&p->protocol, "tcp")) {
                pb_free(p);
                return cz_nomem(cz);
            }
            rc = cz_map(cz, e, child, &cz_port_def, p);
            if (rc == 0 && !p->target)
                rc = cz_fail(cz, e, child, "target: required");
            if (rc == 0 && !p->published)
                rc = cz_fail(cz, e, child, "published: required (skiff publishes a port on "
                                           "every node; use expose for internal ports)");
        } else {
            if ((rc = cz_scalar_buf(cz, e, child, "a port mapping", str, sizeof(str))))
                break;
            p = NULL;
            if (strchr(str, '='))
                rc = cz_fail(cz, e, child, "\"%s\": expected PUBLISHED:TARGET", str);
            else if (!strchr(str, ':'))
                rc = cz_fail(cz, e, child, "\"%s\": give PUBLISHED:TARGET (use expose for "
                                           "internal ports)", str);
            else if (!(p = parse_publish(str, why, sizeof(why))))
                rc = cz_fail(cz, e, child, "\"%s\": %s", str, why);
        }
        if (rc) {
            pb_free(p);
            break;
        }
        if (edit_port_add(s, p))
            return cz_nomem(cz);
    }
    return rc;
}

static int cz_expose(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    ServiceSpec *s = target;
    yaml_node_item_t *it;
    char child[CZ_PATH];
    size_t items;
    uint32_t port;
    int rc = cz_items(cz, v, path, &it, &items);

    for (size_t i = 0; i < items && rc == 0; i++) {
        cz_elem(child, path, i);
        if ((rc = cz_port(cz, cz_node(cz, it[i]), child, &port)))
            break;
        if (edit_expose_add(s, port))
            return cz_nomem(cz);
    }
    return rc;
}

static int cz_user(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    ServiceSpec *s = target;
    char *str;
    int rc = cz_scalar(cz, v, path, "a user name or UID[:GID]", &str);

    if (rc)
        return rc;
    rc = pb_set_str(&s->user, str);
    free(str);
    return rc ? cz_nomem(cz) : 0;
}

/* ------------------------------------------------------------ healthcheck */

static int cz_health_test(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    HealthCheck *h = target;
    size_t nw = 0;
    char **words = NULL, *str;
    int rc;

    if (v && v->type == YAML_SCALAR_NODE && !cz_is_null(v)) {
        if ((rc = cz_scalar(cz, v, path, "a string", &str)))
            return rc;
        char *const shell[] = { "CMD-SHELL", str };
        rc = edit_strv_set(&h->n_test, &h->test, shell, 2) ? cz_nomem(cz) : 0;
        free(str);
        return rc;
    }
    if (!v || v->type != YAML_SEQUENCE_NODE)
        return cz_fail(cz, v, path, "expected a string or a list, not %s", cz_type_name(v));
    if ((rc = cz_words(cz, v, path, &nw, &words)))
        goto out_free_words;
    if (nw == 0 || (strcmp(words[0], "CMD") != 0 && strcmp(words[0], "CMD-SHELL") != 0 &&
                    strcmp(words[0], "NONE") != 0)) {
        rc = cz_fail(cz, v, path, "the list must start with CMD, CMD-SHELL or NONE");
        goto out_free_words;
    }
    if (strcmp(words[0], "NONE") != 0 && nw < 2) {
        rc = cz_fail(cz, v, path, "%s needs a command", words[0]);
        goto out_free_words;
    }
    if (edit_strv_set(&h->n_test, &h->test, words, nw))
        rc = cz_nomem(cz);
out_free_words:
    cz_free_words(nw, words);
    return rc;
}

static int cz_health_disable(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    HealthCheck *h = target;
    char *const none[] = { "NONE" };
    int off, rc = cz_bool(cz, v, path, &off);

    if (rc || !off)
        return rc;
    h->http_port = 0;
    if (pb_set_str(&h->http_path, "") || edit_strv_set(&h->n_test, &h->test, none, 1))
        return cz_nomem(cz);
    return 0;
}

static int cz_health_http(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    HealthCheck *h = target;
    char *str;
    int rc = cz_scalar(cz, v, path, "a path like /health", &str);

    if (rc)
        return rc;
    if (!spec_http_path_ok(str))
        rc = cz_fail(cz, v, path, "expected a path like /health, not \"%.100s\"", str);
    else if (pb_set_str(&h->http_path, str))
        rc = cz_nomem(cz);
    free(str);
    return rc;
}

static int cz_health_port(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    return cz_port(cz, v, path, &((HealthCheck *)target)->http_port);
}


static const cz_key_t cz_health_keys[] = {
    { "test", CZ_FN, 0, cz_health_test },
    { "interval", CZ_DURATION, offsetof(HealthCheck, interval_ms), NULL },
    { "timeout", CZ_DURATION, offsetof(HealthCheck, timeout_ms), NULL },
    { "retries", CZ_UINT32, offsetof(HealthCheck, retries), NULL },
    { "start_period", CZ_DURATION, offsetof(HealthCheck, start_period_ms), NULL },
    { "x-skiff-http", CZ_FN, 0, cz_health_http },
    { "x-skiff-http-port", CZ_FN, 0, cz_health_port },
    { "disable", CZ_FN, 0, NULL }, /* read last, by cz_healthcheck */
};
static const char *const cz_health_unsupported[] = { "start_interval", NULL };
static const cz_map_def_t cz_health_def = CZ_KEYS(cz_health_keys, cz_health_unsupported);

static int cz_healthcheck(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    ServiceSpec *s = target;
    char child[CZ_PATH];
    cz_pair_t *pairs;
    size_t count;
    int rc = cz_map(cz, v, path, &cz_health_def, s->health);

    if (rc)
        return rc;
    /* disable: true wins over the other keys, wherever it stands */
    if ((rc = cz_pairs(cz, v, path, &pairs, &count)))
        return rc;
    for (size_t i = 0; i < count && rc == 0; i++) {
        if (strcmp(pairs[i].key, "disable") != 0)
            continue;
        cz_child(child, path, "disable");
        rc = cz_health_disable(cz, pairs[i].value, child, s->health);
    }
    free(pairs);
    return rc;
}

/* ----------------------------------------------------------------- deploy */

static const cz_key_t cz_update_keys[] = {
    { "parallelism", CZ_UINT32, offsetof(UpdateConfig, parallelism), NULL },
    { "delay", CZ_DURATION, offsetof(UpdateConfig, delay_ms), NULL },
    { "failure_action", CZ_ACTION, offsetof(UpdateConfig, failure_action), NULL },
    { "monitor", CZ_DURATION, offsetof(UpdateConfig, monitor_ms), NULL },
    { "max_failure_ratio", CZ_RATIO, offsetof(UpdateConfig, max_failure_ratio), NULL },
    { "order", CZ_ORDER, offsetof(UpdateConfig, order), NULL },
};
static const cz_map_def_t cz_update_def = CZ_KEYS(cz_update_keys, cz_no_unsupported);

static const cz_key_t cz_rollback_keys[] = {
    { "parallelism", CZ_UINT32, offsetof(UpdateConfig, parallelism), NULL },
    { "delay", CZ_DURATION, offsetof(UpdateConfig, delay_ms), NULL },
    { "failure_action", CZ_ROLLBACK_ACTION, offsetof(UpdateConfig, failure_action), NULL },
    { "monitor", CZ_DURATION, offsetof(UpdateConfig, monitor_ms), NULL },
    { "max_failure_ratio", CZ_RATIO, offsetof(UpdateConfig, max_failure_ratio), NULL },
    { "order", CZ_ORDER, offsetof(UpdateConfig, order), NULL },
};
static const cz_map_def_t cz_rollback_def = CZ_KEYS(cz_rollback_keys, cz_no_unsupported);

static const cz_key_t cz_restart_keys[] = {
    { "condition", CZ_RESTART, offsetof(RestartPolicy, condition), NULL },
    { "delay", CZ_DURATION, offsetof(RestartPolicy, delay_ms), NULL },
    { "max_attempts", CZ_UINT32, offsetof(RestartPolicy, max_attempts), NULL },
    { "window", CZ_DURATION, offsetof(RestartPolicy, window_ms), NULL },
};
static const cz_map_def_t cz_restart_def = CZ_KEYS(cz_restart_keys, cz_no_unsupported);

static const cz_key_t cz_limit_keys[] = {
    { "cpus", CZ_CPUS, offsetof(Resources, nano_cpus), NULL },
    { "memory", CZ_MEMORY, offsetof(Resources, memory_bytes), NULL },
};
static const char *const cz_limit_unsupported[] = { "pids", NULL };
static const cz_map_def_t cz_limit_def = CZ_KEYS(cz_limit_keys, cz_limit_unsupported);
static const char *const cz_reserve_unsupported[] = { "devices", "generic_resources", NULL };
static const cz_map_def_t cz_reserve_def = CZ_KEYS(cz_limit_keys, cz_reserve_unsupported);

static int cz_update_config(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    return cz_map(cz, v, path, &cz_update_def, ((ServiceSpec *)target)->update);
}

static int cz_rollback_config(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    return cz_map(cz, v, path, &cz_rollback_def, ((ServiceSpec *)target)->rollback);
}

static int cz_restart_policy(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    return cz_map(cz, v, path, &cz_restart_def, ((ServiceSpec *)target)->restart);
}

static int cz_limits(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    return cz_map(cz, v, path, &cz_limit_def, ((ServiceSpec *)target)->limits);
}

static int cz_reservations(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    return cz_map(cz, v, path, &cz_reserve_def, ((ServiceSpec *)target)->reservations);
}

static const cz_key_t cz_resources_keys[] = {
    { "limits", CZ_FN, 0, cz_limits },
    { "reservations", CZ_FN, 0, cz_reservations },
};
static const cz_map_def_t cz_resources_def = CZ_KEYS(cz_resources_keys, cz_no_unsupported);

static int cz_resources(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    return cz_map(cz, v, path, &cz_resources_def, target);
}

static int cz_constraints(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    ServiceSpec *s = target;
    yaml_node_item_t *it;
    char child[CZ_PATH], *str;
    constraint_t c;
    size_t items;
    int rc = cz_items(cz, v, path, &it, &items);

    for (size_t i = 0; i < items && rc == 0; i++) {
        yaml_node_t *e = cz_node(cz, it[i]);
        cz_elem(child, path, i);
        if ((rc = cz_scalar(cz, e, child, "a constraint", &str)))
            break;
        if (constraint_parse(str, &c))
            rc = cz_fail(cz, e, child, "\"%.100s\": expected node.labels.KEY==VALUE, "
                                       "node.name!=NAME or node.id==ID", str);
        else if (edit_constraint_add(s, str))
            rc = cz_nomem(cz);
        free(str);
    }
    return rc;
}

static const cz_key_t cz_placement_keys[] = {
    { "constraints", CZ_FN, 0, cz_constraints },
};
static const char *const cz_placement_unsupported[] = { "preferences", "max_replicas_per_node",
                                                        NULL };
static const cz_map_def_t cz_placement_def = CZ_KEYS(cz_placement_keys,
                                                     cz_placement_unsupported);

static int cz_placement(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    return cz_map(cz, v, path, &cz_placement_def, target);
}

static int cz_mode(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    char s[32];
    int rc = cz_scalar_buf(cz, v, path, "a mode", s, sizeof(s));

    if (rc)
        return rc;
    if (strcmp(s, "global") == 0)
        return cz_fail(cz, v, path, "global is not supported");
    if (strcmp(s, "replicated") != 0)
        return cz_fail(cz, v, path, "\"%s\" is not supported (replicated only)", s);
    return 0;
}

static int cz_endpoint_mode(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    char s[32];
    int rc = cz_scalar_buf(cz, v, path, "an endpoint mode", s, sizeof(s));

    if (rc == 0 && strcmp(s, "vip") != 0)
        rc = cz_fail(cz, v, path, "\"%s\" is not supported (vip only)", s);
    return rc;
}

static const cz_key_t cz_autoscale_keys[] = {
    { "min", CZ_UINT32, offsetof(Autoscale, min), NULL },
    { "max", CZ_UINT32, offsetof(Autoscale, max), NULL },
    { "target_cpu", CZ_NUMBER, offsetof(Autoscale, target_cpu), NULL },
    { "target_rps", CZ_NUMBER, offsetof(Autoscale, target_rps), NULL },
    { "target_connections", CZ_NUMBER, offsetof(Autoscale, target_connections), NULL },
    { "cooldown_up", CZ_DURATION, offsetof(Autoscale, cooldown_up_ms), NULL },
    { "cooldown_down", CZ_DURATION, offsetof(Autoscale, cooldown_down_ms), NULL },
};
static const cz_map_def_t cz_autoscale_def = CZ_KEYS(cz_autoscale_keys, cz_no_unsupported);

/* deploy.x-skiff-autoscale: the policy; replicas (when given) is the count
 * to start with, kept within the range. */
static int cz_autoscale(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    ServiceSpec *s = target;
    int rc;

    if (!s->autoscale && !(s->autoscale = spec_autoscale_new()))
        return cz_nomem(cz);
    if ((rc = cz_map(cz, v, path, &cz_autoscale_def, s->autoscale)))
        return rc;
    if (!s->autoscale->min || !s->autoscale->max)
        return cz_fail(cz, v, path, "min and max are both needed");
    if (s->autoscale->min > s->autoscale->max)
        return cz_fail(cz, v, path, "min (%u) is more than max (%u)", s->autoscale->min,
                       s->autoscale->max);
    if (!(s->autoscale->target_cpu > 0) && !(s->autoscale->target_rps > 0) &&
        !(s->autoscale->target_connections > 0))
        return cz_fail(cz, v, path, "a target is needed: target_cpu, target_rps or "
                                    "target_connections");
    return 0;
}

static int cz_rebalance(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    ServiceSpec *s = target;
    char str[16];
    int b, rc = cz_scalar_buf(cz, v, path, "true or false", str, sizeof(str));

    if (rc)
        return rc;
    if (parse_bool(str, &b))
        return cz_fail(cz, v, path, "expected true or false, not \"%s\"", str);
    s->no_rebalance = !b;
    return 0;
}

static const cz_key_t cz_deploy_keys[] = {
    { "replicas", CZ_UINT32, offsetof(ServiceSpec, replicas), NULL },
    { "x-skiff-autoscale", CZ_FN, 0, cz_autoscale },
    { "x-skiff-rebalance", CZ_FN, 0, cz_rebalance },
    { "mode", CZ_FN, 0, cz_mode },
    { "update_config", CZ_FN, 0, cz_update_config },
    { "rollback_config", CZ_FN, 0, cz_rollback_config },
    { "restart_policy", CZ_FN, 0, cz_restart_policy },
    { "resources", CZ_FN, 0, cz_resources },
    { "placement", CZ_FN, 0, cz_placement },
    { "labels", CZ_FN, 0, cz_labels },
    { "endpoint_mode", CZ_FN, 0, cz_endpoint_mode },
};
static const cz_map_def_t cz_deploy_def = CZ_KEYS(cz_deploy_keys, cz_no_unsupported);

static int cz_deploy(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    ServiceSpec *s = target;
    int rc = cz_map(cz, v, path, &cz_deploy_def, target);

    if (rc == 0 && s->autoscale) {
        if (s->replicas < s->autoscale->min)
            s->replicas = s->autoscale->min;
        if (s->replicas > s->autoscale->max)
            s->replicas = s->autoscale->max;
    }
    return rc;
}

/* ---------------------------------------------------------------- volumes */

/* src as an absolute, lexically clean path: ~ is $HOME, a relative path
 * starts at base_dir. */
static int cz_host_path(cz_t *cz, const char *src, char *out, size_t len)
{
    char joined[PATH_MAX * 2];
    const char *home;
    size_t n = 0;

    if (src[0] == '~' && (src[1] == '/' || !src[1])) {
        home = cz->o->env(cz->o->env_arg, "HOME");
        if (!home || home[0] != '/')
            return SKIFF_EINVAL;
        snprintf(joined, sizeof(joined), "%s%s", home, src + 1);
    } else if (src[0] == '/') {
        snprintf(joined, sizeof(joined), "%s", src);
    } else {
        snprintf(joined, sizeof(joined), "%s/%s", cz->o->base_dir, src);
    }
    /* drop "." and "" components, resolve ".." */
    out[0] = '\0';
    for (char *save = NULL, *c = strtok_r(joined, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0)
            continue;
        if (strcmp(c, "..") == 0) {
            while (n > 0 && out[n - 1] != '/')
                n--;
            if (n > 0)
                n--;
            out[n] = '\0';
            continue;
        }
        if (n + strlen(c) + 2 > len)
            return SKIFF_EINVAL;
        out[n++] = '/';
        strcpy(out + n, c);
        n += strlen(c);
    }
    if (n == 0)
        snprintf(out, len, "/");
    return 0;
}

static const cz_volume_t *cz_find_volume(const cz_t *cz, const char *key)
{
    for (size_t i = 0; i < cz->n_volumes; i++)
        if (strcmp(cz->volumes[i].key, key) == 0)
            return &cz->volumes[i];
    return NULL;
}

/* Fills m's source from what the file wrote: a host path for a bind, a
 * declared volume for a volume. */
static int cz_mount_source(cz_t *cz, yaml_node_t *n, const char *path, Mount *m,
                           const char *src)
{
    char abs[PATH_MAX];
    const cz_volume_t *vol;

    if (m->type == MOUNT_BIND) {
        if (cz_host_path(cz, src, abs, sizeof(abs)))
            return cz_fail(cz, n, path, "\"%.100s\": not a usable host path", src);
        return pb_set_str(&m->source, abs) ? cz_nomem(cz) : 0;
    }
    if (!*src)
        return 0; /* an anonymous volume */
    vol = cz_find_volume(cz, src);
    if (!vol)
        return cz_fail(cz, n, path, "volume %s is not declared in the top-level volumes", src);
    return pb_set_str(&m->source, vol->name) ? cz_nomem(cz) : 0;
}

static int cz_is_host_path(const char *s)
{
    return s[0] == '/' || s[0] == '.' || s[0] == '~';
}

/* "TARGET", "SOURCE:TARGET" or "SOURCE:TARGET:MODE" (ro or rw). */
static int cz_volume_short(cz_t *cz, yaml_node_t *e, const char *path, const char *str,
                           Mount *m)
{
    char copy[PATH_MAX], *parts[4];
    size_t n = 0;
    int rc;

    if (strlen(str) >= sizeof(copy))
        return cz_fail(cz, e, path, "too long");
    strcpy(copy, str);
    for (char *save = NULL, *p = strtok_r(copy, ":", &save); p; p = strtok_r(NULL, ":", &save)) {
        if (n == 3)
            return cz_fail(cz, e, path, "\"%.100s\": expected [SOURCE:]TARGET[:MODE]", str);
        parts[n++] = p;
    }
    if (n == 0)
        return cz_fail(cz, e, path, "empty volume");
    if (n == 3) {
        if (strcmp(parts[2], "ro") == 0)
            m->readonly = 1;
        else if (strcmp(parts[2], "rw") != 0)
            return cz_fail(cz, e, path, "mode %s is not supported (ro or rw)", parts[2]);
    }
    if (n == 1) {
        parts[1] = parts[0];
        parts[0] = "";
    }
    if (parts[1][0] != '/')
        return cz_fail(cz, e, path, "\"%.100s\": the target must be an absolute path", str);
    m->type = *parts[0] && cz_is_host_path(parts[0]) ? MOUNT_BIND : MOUNT_VOLUME;
    if (pb_set_str(&m->target, parts[1]))
        return cz_nomem(cz);
    rc = cz_mount_source(cz, e, path, m, parts[0]);
    return rc;
}

/* The long form, read into this before it becomes a Mount. */
typedef struct cz_mount_long {
    char type[16];
    char *source;
    char *target;
    int read_only;
} cz_mount_long_t;

static int cz_ml_type(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    cz_mount_long_t *ml = target;
    int rc = cz_scalar_buf(cz, v, path, "volume or bind", ml->type, sizeof(ml->type));

    if (rc == 0 && strcmp(ml->type, "volume") != 0 && strcmp(ml->type, "bind") != 0)
        rc = cz_fail(cz, v, path, "\"%s\" is not supported (volume or bind)", ml->type);
    return rc;
}

static int cz_ml_source(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    cz_mount_long_t *ml = target;

    free(ml->source);
    ml->source = NULL;
    return cz_scalar(cz, v, path, "a string", &ml->source);
}

static int cz_ml_target(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    cz_mount_long_t *ml = target;

    free(ml->target);
    ml->target = NULL;
    return cz_scalar(cz, v, path, "a string", &ml->target);
}

static int cz_ml_read_only(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    return cz_bool(cz, v, path, &((cz_mount_long_t *)target)->read_only);
}

static const cz_key_t cz_ml_keys[] = {
    { "type", CZ_FN, 0, cz_ml_type },
    { "source", CZ_FN, 0, cz_ml_source },
    { "target", CZ_FN, 0, cz_ml_target },
    { "read_only", CZ_FN, 0, cz_ml_read_only },
};
static const char *const cz_ml_unsupported[] = { "volume", "bind", "tmpfs", "consistency",
                                                 "image", NULL };
static const cz_map_def_t cz_ml_def = CZ_KEYS(cz_ml_keys, cz_ml_unsupported);

static int cz_volume_long(cz_t *cz, yaml_node_t *e, const char *path, Mount *m)
{
    cz_mount_long_t ml = { .type = "" };
    int rc = cz_map(cz, e, path, &cz_ml_def, &ml);

    if (rc)
        goto out_free;
    if (!*ml.type) {
        rc = cz_fail(cz, e, path, "type: required (volume or bind)");
        goto out_free;
    }
    if (!ml.target || ml.target[0] != '/') {
        rc = cz_fail(cz, e, path, "target: required, an absolute path");
        goto out_free;
    }
    m->type = strcmp(ml.type, "bind") == 0 ? MOUNT_BIND : MOUNT_VOLUME;
    m->readonly = ml.read_only;
    if (m->type == MOUNT_BIND && (!ml.source || !*ml.source)) {
        rc = cz_fail(cz, e, path, "source: required for a bind mount");
        goto out_free;
    }
    if (pb_set_str(&m->target, ml.target)) {
        rc = cz_nomem(cz);
        goto out_free;
    }
    rc = cz_mount_source(cz, e, path, m, ml.source ? ml.source : "");
out_free:
    free(ml.source);
    free(ml.target);
    return rc;
}

static int cz_volumes(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    ServiceSpec *s = target;
    yaml_node_item_t *it;
    char child[CZ_PATH], *str;
    size_t items;
    int rc = cz_items(cz, v, path, &it, &items);

    for (size_t i = 0; i < items && rc == 0; i++) {
        yaml_node_t *e = cz_node(cz, it[i]);
        Mount *m = PB_NEW(Mount);
        if (!m)
            return cz_nomem(cz);
        cz_elem(child, path, i);
        if (e && e->type == YAML_MAPPING_NODE) {
            rc = cz_volume_long(cz, e, child, m);
        } else if ((rc = cz_scalar(cz, e, child, "a volume", &str)) == 0) {
            rc = cz_volume_short(cz, e, child, str, m);
            free(str);
        }
        if (rc) {
            pb_free(m);
            break;
        }
        if (edit_mount_add(s, m))
            return cz_nomem(cz);
    }
    return rc;
}

/* ------------------------------------------------- secrets and configs */

/* A reference's long syntax, read into this first. */
typedef struct cz_ref_long {
    SecretRef *ref;
    int has_source;
} cz_ref_long_t;

static int cz_rl_source(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    cz_ref_long_t *rl = target;
    char *str;
    int rc = cz_scalar(cz, v, path, "a name", &str);

    if (rc)
        return rc;
    rc = pb_set_str(&rl->ref->name, str);
    free(str);
    rl->has_source = 1;
    return rc ? cz_nomem(cz) : 0;
}

static int cz_rl_target(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    cz_ref_long_t *rl = target;
    char *str;
    int rc = cz_scalar(cz, v, path, "a path", &str);

    if (rc)
        return rc;
    rc = pb_set_str(&rl->ref->target, str);
    free(str);
    return rc ? cz_nomem(cz) : 0;
}

static int cz_rl_id(cz_t *cz, yaml_node_t *v, const char *path, uint32_t *out)
{
    uint64_t u;
    int rc = cz_uint(cz, v, path, UINT32_MAX - 1, &u);

    if (rc == 0)
        *out = (uint32_t)u;
    return rc;
}

static int cz_rl_uid(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    return cz_rl_id(cz, v, path, &((cz_ref_long_t *)target)->ref->uid);
}

static int cz_rl_gid(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    return cz_rl_id(cz, v, path, &((cz_ref_long_t *)target)->ref->gid);
}

/* mode: as Docker's compose reads it, a YAML integer (0400 is octal, 292
 * decimal) or a string of octal digits ("0400"). */
static int cz_rl_mode(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    cz_ref_long_t *rl = target;
    char s[32], *digits = s, *end;
    unsigned long n;
    int rc = cz_scalar_buf(cz, v, path, "a mode", s, sizeof(s)), base = 8;

    if (rc)
        return rc;
    if (strncmp(s, "0o", 2) == 0)
        digits = s + 2;
    else if (v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && s[0] != '0')
        base = 10;
    errno = 0;
    n = strtoul(digits, &end, base);
    if (!*digits || *end || errno || !isdigit((unsigned char)*digits) || n > 0777)
        return cz_fail(cz, v, path, "expected a mode like 0400, not \"%s\"", s);
    rl->ref->mode = (uint32_t)n;
    return 0;
}

static const cz_key_t cz_rl_keys[] = {
    { "source", CZ_FN, 0, cz_rl_source },
    { "target", CZ_FN, 0, cz_rl_target },
    { "uid", CZ_FN, 0, cz_rl_uid },
    { "gid", CZ_FN, 0, cz_rl_gid },
    { "mode", CZ_FN, 0, cz_rl_mode },
};
static const cz_map_def_t cz_rl_def = CZ_KEYS(cz_rl_keys, cz_no_unsupported);

/* services.*.secrets and .configs: the keys of top-level entries, in
 * short or long syntax, into references by their real names. */
static int cz_refs(cz_t *cz, yaml_node_t *v, const char *path, ServiceSpec *s, SecretKind kind)
{
    const char *what = spec_secret_kind_name(kind);
    size_t *n = kind == SECRET_KIND_CONFIG ? &s->n_configs : &s->n_secrets;
    SecretRef ***refs = kind == SECRET_KIND_CONFIG ? &s->configs : &s->secrets;
    const compose_secret_t *def;
    yaml_node_item_t *it;
    char child[CZ_PATH], target[80];
    size_t items;
    int rc;

    if ((rc = cz_items(cz, v, path, &it, &items)))
        return rc;
    for (size_t i = 0; i < items && rc == 0; i++) {
        yaml_node_t *e = cz_node(cz, it[i]);
        cz_ref_long_t rl = { .ref = PB_NEW(SecretRef) };
        char *key = NULL;

        cz_elem(child, path, i);
        if (!rl.ref)
            return cz_nomem(cz);
        if (e && e->type == YAML_MAPPING_NODE) {
            rc = cz_map(cz, e, child, &cz_rl_def, &rl);
            if (rc == 0 && !rl.has_source)
                rc = cz_fail(cz, e, child, "source: required");
        } else {
            rc = cz_scalar(cz, e, child, "a name or a mapping", &key);
            if (rc == 0 && pb_set_str(&rl.ref->name, key))
                rc = cz_nomem(cz);
            free(key);
        }
        if (rc == 0 && !(def = cz_find_secret(cz, kind, rl.ref->name)))
            rc = cz_fail(cz, e, child, "%s %s is not declared in the top-level %ss", what,
                         rl.ref->name, what);
        /* the default target is the file's key; the name, the real one */
        if (rc == 0 && !*rl.ref->target) {
            snprintf(target, sizeof(target), "%s%s", kind == SECRET_KIND_CONFIG ? "/" : "",
                     def->key);
            if (pb_set_str(&rl.ref->target, target))
                rc = cz_nomem(cz);
        }
        if (rc == 0 && (pb_set_str(&rl.ref->name, def->secret->name) ||
                        spec_secret_ref_complete(rl.ref, kind)))
            rc = cz_nomem(cz);
        if (rc == 0) {
            for (size_t j = 0; j < *n && rc == 0; j++)
                if (strcmp((*refs)[j]->target, rl.ref->target) == 0)
                    rc = cz_fail(cz, e, child, "target %s is used twice", rl.ref->target);
        }
        if (rc == 0 && pb_push_msg(n, (void ***)refs, rl.ref))
            rc = cz_nomem(cz);
        else if (rc == 0)
            continue;
        pb_free(rl.ref);
    }
    return rc;
}

static int cz_secrets(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    return cz_refs(cz, v, path, target, SECRET_KIND_SECRET);
}

static int cz_configs(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    return cz_refs(cz, v, path, target, SECRET_KIND_CONFIG);
}

/* ------------------------------------------------------------- a service */

static const cz_key_t cz_service_keys[] = {
    { "image", CZ_FN, 0, cz_image },
    { "command", CZ_FN, 0, cz_command },
    { "entrypoint", CZ_FN, 0, cz_entrypoint },
    { "environment", CZ_FN, 0, cz_environment },
    { "ports", CZ_FN, 0, cz_ports },
    { "expose", CZ_FN, 0, cz_expose },
    { "healthcheck", CZ_FN, 0, cz_healthcheck },
    { "deploy", CZ_FN, 0, cz_deploy },
    { "labels", CZ_FN, 0, cz_labels },
    { "user", CZ_FN, 0, cz_user },
    { "volumes", CZ_FN, 0, cz_volumes },
    { "secrets", CZ_FN, 0, cz_secrets },
    { "configs", CZ_FN, 0, cz_configs },
    { "stop_grace_period", CZ_DURATION, offsetof(ServiceSpec, stop_grace_period_ms), NULL },
    { "x-skiff-drain-delay", CZ_DURATION, offsetof(ServiceSpec, drain_delay_ms), NULL },
};

/* Compose's other service keys: known, not supported. */
static const char *const cz_service_unsupported[] = {
    "annotations", "attach", "build", "blkio_config", "cap_add", "cap_drop", "cgroup",
    "cgroup_parent", "container_name", "cpu_count", "cpu_percent", "cpu_period",
    "cpu_quota", "cpu_rt_period", "cpu_rt_runtime", "cpu_shares", "cpus", "cpuset",
    "credential_spec", "depends_on", "develop", "device_cgroup_rules", "devices", "dns",
    "dns_opt", "dns_search", "domainname", "env_file", "extends", "external_links",
    "extra_hosts", "gpus", "group_add", "hostname", "init", "ipc", "isolation", "links",
    "logging", "mac_address", "mem_limit", "mem_reservation", "mem_swappiness",
    "memswap_limit", "network_mode", "networks", "oom_kill_disable", "oom_score_adj", "pid",
    "pids_limit", "platform", "post_start", "pre_stop", "privileged", "profiles",
    "pull_policy", "read_only", "restart", "runtime", "scale", "security_opt",
    "shm_size", "stdin_open", "stop_signal", "storage_opt", "sysctls", "tmpfs", "tty",
    "ulimits", "userns_mode", "uts", "volumes_from", "working_dir", NULL,
};
static const cz_map_def_t cz_service_def = CZ_KEYS(cz_service_keys, cz_service_unsupported);

static int cz_service(cz_t *cz, const cz_pair_t *p)
{
    char path[CZ_PATH], name[128], why[256];
    ServiceSpec *s;
    int rc;

    cz_child(path, "services", p->key);
    if ((size_t)snprintf(name, sizeof(name), "%s_%s", cz->o->stack, p->key) >= sizeof(name))
        return cz_fail(cz, p->knode, path, "the service name is too long");
    if (!(s = spec_new()))
        return cz_nomem(cz);
    if (pb_set_str(&s->name, name) || pb_set_str(&s->stack, cz->o->stack)) {
        rc = cz_nomem(cz);
        goto out_free_spec;
    }
    if ((rc = cz_map(cz, p->value, path, &cz_service_def, s)))
        goto out_free_spec;
    if ((rc = spec_take_labels(s, why, sizeof(why)))) {
        rc = rc == -ENOMEM ? cz_nomem(cz) : cz_fail(cz, p->knode, path, "%s", why);
        goto out_free_spec;
    }
    if (!*s->image) {
        rc = cz_fail(cz, p->knode, path, "image: required");
        goto out_free_spec;
    }
    if ((rc = spec_complete(s))) {
        rc = cz_nomem(cz);
        goto out_free_spec;
    }
    if (spec_validate(s, NULL, why, sizeof(why))) {
        rc = cz_fail(cz, p->knode, path, "%s", why);
        goto out_free_spec;
    }
    if (pb_push_msg(&cz->out->n_services, (void ***)&cz->out->services, s)) {
        rc = cz_nomem(cz);
        goto out_free_spec;
    }
    return 0;

out_free_spec:
    pb_free(s);
    return rc;
}

/* ---------------------------------------------------------- the top level */

/* A top-level volume: null, or {external, name, driver: local}. */
typedef struct cz_vol_def {
    int external;
    char *name;
} cz_vol_def_t;

static int cz_vd_external(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    return cz_bool(cz, v, path, &((cz_vol_def_t *)target)->external);
}

static int cz_vd_name(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    cz_vol_def_t *d = target;

    free(d->name);
    d->name = NULL;
    return cz_scalar(cz, v, path, "a volume name", &d->name);
}

static int cz_vd_driver(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    char s[64];
    int rc = cz_scalar_buf(cz, v, path, "a driver", s, sizeof(s));

    if (rc == 0 && strcmp(s, "local") != 0)
        rc = cz_fail(cz, v, path, "\"%s\" is not supported (local only)", s);
    return rc;
}

static const cz_key_t cz_vd_keys[] = {
    { "external", CZ_FN, 0, cz_vd_external },
    { "name", CZ_FN, 0, cz_vd_name },
    { "driver", CZ_FN, 0, cz_vd_driver },
};
static const char *const cz_vd_unsupported[] = { "driver_opts", "labels", NULL };
static const cz_map_def_t cz_vd_def = CZ_KEYS(cz_vd_keys, cz_vd_unsupported);

static int cz_top_volumes(cz_t *cz, yaml_node_t *v, const char *path)
{
    char child[CZ_PATH], full[128];
    cz_pair_t *pairs;
    size_t count;
    int rc = cz_pairs(cz, v, path, &pairs, &count);

    if (rc)
        return rc;
    cz->volumes = calloc(count ? count : 1, sizeof(*cz->volumes));
    if (!cz->volumes) {
        free(pairs);
        return cz_nomem(cz);
    }
    for (size_t i = 0; i < count && rc == 0; i++) {
        cz_vol_def_t d = { 0 };
        const char *name;
        cz_child(child, path, pairs[i].key);
        if (!cz_is_null(pairs[i].value))
            rc = cz_map(cz, pairs[i].value, child, &cz_vd_def, &d);
        if (rc == 0) {
            snprintf(full, sizeof(full), "%s_%s", cz->o->stack, pairs[i].key);
            name = d.name ? d.name : d.external ? pairs[i].key : full;
            if (!spec_name_valid(name))
                rc = cz_fail(cz, pairs[i].knode, child, "%s is not a valid volume name", name);
        }
        if (rc == 0) {
            cz_volume_t *vol = &cz->volumes[cz->n_volumes];
            vol->key = strdup(pairs[i].key);
            vol->name = strdup(name);
            cz->n_volumes++;
            if (!vol->key || !vol->name)
                rc = cz_nomem(cz);
        }
        free(d.name);
    }
    free(pairs);
    return rc;
}

/* A top-level secret or config: {file | external, name, labels}. */
typedef struct cz_sec_def {
    char *file;
    int external;
    int has_external;
    char *name;
    ServiceSpec *labels;  /* cz_labels' target; its labels move to the Secret */
} cz_sec_def_t;

static int cz_sd_file(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    cz_sec_def_t *d = target;
    char abs[PATH_MAX], *str;
    int rc = cz_scalar(cz, v, path, "a file name", &str);

    if (rc)
        return rc;
    if (cz_host_path(cz, str, abs, sizeof(abs)))
        rc = cz_fail(cz, v, path, "\"%.100s\": not a usable path", str);
    free(str);
    if (rc == 0 && !(d->file = strdup(abs)))
        rc = cz_nomem(cz);
    return rc;
}

static int cz_sd_external(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    cz_sec_def_t *d = target;

    d->has_external = 1;
    return cz_bool(cz, v, path, &d->external);
}

static int cz_sd_name(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    cz_sec_def_t *d = target;

    free(d->name);
    d->name = NULL;
    return cz_scalar(cz, v, path, "a name", &d->name);
}

static int cz_sd_labels(cz_t *cz, yaml_node_t *v, const char *path, void *target)
{
    return cz_labels(cz, v, path, ((cz_sec_def_t *)target)->labels);
}

static const cz_key_t cz_sd_keys[] = {
    { "file", CZ_FN, 0, cz_sd_file },
    { "external", CZ_FN, 0, cz_sd_external },
    { "name", CZ_FN, 0, cz_sd_name },
    { "labels", CZ_FN, 0, cz_sd_labels },
};
static const char *const cz_sd_unsupported[] = { "environment", "content", "driver",
                                                 "driver_opts", "template_driver", NULL };
static const cz_map_def_t cz_sd_def = CZ_KEYS(cz_sd_keys, cz_sd_unsupported);

static const compose_secret_t *cz_find_secret(const cz_t *cz, SecretKind kind, const char *key)
{
    for (size_t i = 0; i < cz->out->n_secrets; i++)
        if (cz->out->secrets[i].secret->kind == kind &&
            strcmp(cz->out->secrets[i].key, key) == 0)
            return &cz->out->secrets[i];
    return NULL;
}

static int cz_top_secret(cz_t *cz, const cz_pair_t *p, const char *path, SecretKind kind)
{
    const char *what = spec_secret_kind_name(kind);
    cz_sec_def_t d = { .labels = spec_new() };
    compose_secret_t *cs;
    char full[160];
    const char *name;
    Secret *sec = NULL;
    int rc;

    if (!d.labels)
        return cz_nomem(cz);
    rc = cz_is_null(p->value) ? cz_fail(cz, p->knode, path, "file or external: true is "
                                        "required")
                              : cz_map(cz, p->value, path, &cz_sd_def, &d);
    if (rc)
        goto out_free;
    if (d.external && d.file) {
        rc = cz_fail(cz, p->knode, path, "file and external: true exclude each other");
        goto out_free;
    }
    if (!d.external && !d.file) {
        rc = cz_fail(cz, p->knode, path, "file or external: true is required");
        goto out_free;
    }
    snprintf(full, sizeof(full), "%s_%s", cz->o->stack, p->key);
    name = d.name ? d.name : d.external ? p->key : full;
    if (!spec_secret_name_valid(name)) {
        rc = cz_fail(cz, p->knode, path, "%.100s is not a valid %s name", name, what);
        goto out_free;
    }
    for (size_t i = 0; i < cz->out->n_secrets; i++) {
        if (cz->out->secrets[i].secret->kind == kind &&
            strcmp(cz->out->secrets[i].secret->name, name) == 0) {
            rc = cz_fail(cz, p->knode, path, "%s %s is also %ss.%s", what, name, what,
                         cz->out->secrets[i].key);
            goto out_free;
        }
    }
    if (!(sec = PB_NEW(Secret)) || pb_set_str(&sec->name, name) ||
        (!d.external && pb_set_str(&sec->stack, cz->o->stack))) {
        rc = cz_nomem(cz);
        goto out_free;
    }
    sec->kind = kind;
    sec->labels = d.labels->labels;
    sec->n_labels = d.labels->n_labels;
    d.labels->labels = NULL;
    d.labels->n_labels = 0;
    cs = &cz->out->secrets[cz->out->n_secrets];
    *cs = (compose_secret_t){ .secret = sec, .key = strdup(p->key), .file = d.file,
                              .external = d.external };
    cz->out->n_secrets++;
    d.file = NULL;
    sec = NULL;
    if (!cs->key)
        rc = cz_nomem(cz);
out_free:
    pb_free(sec);
    pb_free(d.labels);
    free(d.file);
    free(d.name);
    return rc;
}

static int cz_top_secrets(cz_t *cz, yaml_node_t *v, const char *path, SecretKind kind)
{
    char child[CZ_PATH];
    cz_pair_t *pairs;
    size_t count;
    compose_secret_t *grown;
    int rc = cz_pairs(cz, v, path, &pairs, &count);

    if (rc)
        return rc;
    if (count > spec_limits_default.max_list) {
        free(pairs);
        return cz_fail(cz, v, path, "more than %zu entries", spec_limits_default.max_list);
    }
    grown = realloc(cz->out->secrets, (cz->out->n_secrets + count + 1) * sizeof(*grown));
    if (!grown) {
        free(pairs);
        return cz_nomem(cz);
    }
    cz->out->secrets = grown;
    for (size_t i = 0; i < count && rc == 0; i++) {
        cz_child(child, path, pairs[i].key);
        rc = cz_top_secret(cz, &pairs[i], child, kind);
    }
    free(pairs);
    return rc;
}

static int cz_top(cz_t *cz, yaml_node_t *root)
{
    static const char *const unsupported[] = { "networks", "include", NULL };
    yaml_node_t *services = NULL, *volumes = NULL, *secrets = NULL, *configs = NULL;
    cz_pair_t *pairs = NULL, *svc = NULL;
    size_t count, nsvc;
    int rc;

    if (!root || root->type != YAML_MAPPING_NODE)
        return cz_fail(cz, root, "", "expected a mapping with services at the top");
    if ((rc = cz_pairs(cz, root, "", &pairs, &count)))
        return rc;
    for (size_t i = 0; i < count && rc == 0; i++) {
        const char *k = pairs[i].key;
        if (strcmp(k, "services") == 0)
            services = pairs[i].value;
        else if (strcmp(k, "volumes") == 0)
            volumes = pairs[i].value;
        else if (strcmp(k, "secrets") == 0)
            secrets = pairs[i].value;
        else if (strcmp(k, "configs") == 0)
            configs = pairs[i].value;
        else if (strcmp(k, "version") == 0 || strcmp(k, "name") == 0)
            ; /* Compose ignores version; the stack's name is the command's */
        else if (strncmp(k, "x-", 2) == 0)
            ;
        else {
            rc = cz_fail(cz, pairs[i].knode, k, "unknown key");
            for (const char *const *u = unsupported; *u; u++)
                if (strcmp(*u, k) == 0)
                    rc = cz_fail(cz, pairs[i].knode, k, "not supported by skiff");
        }
    }
    if (rc)
        goto out_free;
    if (volumes && !cz_is_null(volumes) && (rc = cz_top_volumes(cz, volumes, "volumes")))
        goto out_free;
    if (secrets && !cz_is_null(secrets) &&
        (rc = cz_top_secrets(cz, secrets, "secrets", SECRET_KIND_SECRET)))
        goto out_free;
    if (configs && !cz_is_null(configs) &&
        (rc = cz_top_secrets(cz, configs, "configs", SECRET_KIND_CONFIG)))
        goto out_free;
    if (!services) {
        rc = cz_fail(cz, root, "services", "required");
        goto out_free;
    }
    if ((rc = cz_pairs(cz, services, "services", &svc, &nsvc)))
        goto out_free;
    if (nsvc == 0) {
        rc = cz_fail(cz, services, "services", "no services");
        goto out_free;
    }
    if (nsvc > COMPOSE_MAX_SERVICES) {
        rc = cz_fail(cz, services, "services", "more than %d services", COMPOSE_MAX_SERVICES);
        goto out_free;
    }
    for (size_t i = 0; i < nsvc && rc == 0; i++)
        rc = cz_service(cz, &svc[i]);
out_free:
    free(svc);
    free(pairs);
    return rc;
}

int compose_parse(const char *file, const char *text, size_t len, const compose_opts_t *o,
                  compose_t **out, char *err, size_t errlen)
{
    compose_opts_t opts = *o;
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    char cwd[PATH_MAX];
    cz_t cz = { .file = file, .doc = &doc, .o = &opts, .err = err, .errlen = errlen };
    int rc;

    *out = NULL;
    if (!opts.env)
        opts.env = cz_env_default;
    if (!opts.base_dir)
        opts.base_dir = getcwd(cwd, sizeof(cwd)) ? cwd : "/";
    if (!opts.stack || !spec_name_valid(opts.stack)) {
        snprintf(err, errlen, "%.100s is not a valid stack name", opts.stack ? opts.stack : "");
        parse_one_line(err);
        return SKIFF_EINVAL;
    }
    if (len > COMPOSE_MAX_FILE)
        return cz_fail(&cz, NULL, NULL, "larger than %u bytes", COMPOSE_MAX_FILE);
    if (!(cz.out = calloc(1, sizeof(*cz.out))))
        return cz_nomem(&cz);
    if (!yaml_parser_initialize(&parser)) {
        rc = cz_nomem(&cz);
        goto out_free_result;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, errlen, "%s:%zu: YAML: %s%s%s", file, parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "malformed",
                 parser.context ? " " : "", parser.context ? parser.context : "");
        parse_one_line(err);
        rc = SKIFF_EINVAL;
        goto out_delete_parser;
    }
    if (!yaml_document_get_root_node(&doc)) {
        rc = cz_fail(&cz, NULL, NULL, "empty file");
        goto out_delete_doc;
    }
    if (!yaml_parser_load(&parser, &extra)) {
        snprintf(err, errlen, "%s:%zu: YAML: %s", file, parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "malformed");
        parse_one_line(err);
        rc = SKIFF_EINVAL;
        goto out_delete_doc;
    }
    if (yaml_document_get_root_node(&extra)) {
        rc = cz_fail(&cz, yaml_document_get_root_node(&extra), NULL,
                     "more than one YAML document");
        yaml_document_delete(&extra);
        goto out_delete_doc;
    }
    yaml_document_delete(&extra);
    rc = cz_top(&cz, yaml_document_get_root_node(&doc));
out_delete_doc:
    yaml_document_delete(&doc);
out_delete_parser:
    yaml_parser_delete(&parser);
    for (size_t i = 0; i < cz.n_volumes; i++) {
        free(cz.volumes[i].key);
        free(cz.volumes[i].name);
    }
    free(cz.volumes);
out_free_result:
    if (rc) {
        compose_free(cz.out);
        return rc;
    }
    *out = cz.out;
    return 0;
}

int compose_load(const char *path, const compose_opts_t *o, compose_t **out, char *err,
                 size_t errlen)
{
    compose_opts_t opts = *o;
    int is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    char *text, dir[PATH_MAX], *slash;
    size_t len;
    int rc;

    *out = NULL;
    if (!f) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return SKIFF_EINVAL;
    }
    text = malloc(COMPOSE_MAX_FILE + 1);
    if (!text) {
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out_close;
    }
    len = fread(text, 1, COMPOSE_MAX_FILE + 1, f);
    if (ferror(f)) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        rc = SKIFF_EINVAL;
        goto out_free_text;
    }
    if (len > COMPOSE_MAX_FILE) {
        snprintf(err, errlen, "%s: larger than %u bytes", path, COMPOSE_MAX_FILE);
        rc = SKIFF_EINVAL;
        goto out_free_text;
    }
    if (!opts.base_dir && !is_stdin && realpath(path, dir)) {
        slash = strrchr(dir, '/');
        if (slash == dir)
            slash[1] = '\0';
        else if (slash)
            *slash = '\0';
        opts.base_dir = dir;
    }
    rc = compose_parse(is_stdin ? "<stdin>" : path, text, len, &opts, out, err, errlen);
    if (rc == 0 && (rc = compose_read_files(*out, is_stdin ? "<stdin>" : path, err, errlen))) {
        compose_free(*out);
        *out = NULL;
    }
out_free_text:
    free(text);
out_close:
    if (!is_stdin)
        fclose(f);
    return rc;
}

int compose_read_files(compose_t *c, const char *file, char *err, size_t errlen)
{
    char why[512];

    for (size_t i = 0; i < c->n_secrets; i++) {
        compose_secret_t *cs = &c->secrets[i];
        Secret *sec = cs->secret;
        uint8_t *data;
        size_t len;
        int rc;
        if (!cs->file)
            continue;
        rc = secret_read_file(sec->kind, sec->name, cs->file, &data, &len, why, sizeof(why));
        if (rc) {
            snprintf(err, errlen, "%s: %ss.%s: %s", file, spec_secret_kind_name(sec->kind),
                     cs->key, why);
            parse_one_line(err);
            return rc;
        }
        free(sec->data.data);
        sec->data.data = data;
        sec->data.len = len;
    }
    return 0;
}

void compose_free(compose_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_secrets; i++) {
        Secret *sec = c->secrets[i].secret;
        if (sec && sec->data.data)
            memset(sec->data.data, 0, sec->data.len);
        pb_free(sec);
        free(c->secrets[i].key);
        free(c->secrets[i].file);
    }
    free(c->secrets);
    for (size_t i = 0; i < c->n_services; i++)
        pb_free(c->services[i]);
    free(c->services);
    for (size_t i = 0; i < c->n_warnings; i++)
        free(c->warnings[i]);
    free(c->warnings);
    free(c);
}
