/* pbjson: see pbjson.h. */
#include "pbjson.h"
#include "duration.h"

#include <ctype.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Fields whose *_ms holds a time, not a duration. */
static const char *const pbjson_time_fields[] = {
    "created_ms", "updated_ms", "since_ms", "state_since_ms", "ready_since_ms",
    "last_heartbeat_ms", "started_ms", "completed_ms", "next_batch_ms", "time_ms",
};

/* Enums whose values the CLI reads as flag values, spelled with '-'. */
static const char *const pbjson_dashed_enums[] = {
    "RestartCondition", "UpdateOrder", "FailureAction",
};

int pbjson_is_time_field(const char *name)
{
    for (size_t i = 0; i < sizeof(pbjson_time_fields) / sizeof(pbjson_time_fields[0]); i++)
        if (strcmp(name, pbjson_time_fields[i]) == 0)
            return 1;
    return 0;
}

/* The length of the prefix, ending in '_', that every value name shares. */
static size_t pbjson_enum_prefix(const ProtobufCEnumDescriptor *d)
{
    size_t n;

    if (d->n_values < 2)
        return 0;
    n = strlen(d->values[0].name);
    for (unsigned i = 1; i < d->n_values; i++) {
        size_t j = 0;
        while (j < n && d->values[i].name[j] == d->values[0].name[j])
            j++;
        n = j;
    }
    while (n > 0 && d->values[0].name[n - 1] != '_')
        n--;
    return n;
}

const char *pbjson_enum_name(const ProtobufCEnumDescriptor *d, int value, char *out,
                             size_t len)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(d, value);
    char sep = '_';
    size_t i = 0;
    const char *p;

    if (!v || !len)
        return NULL;
    for (size_t k = 0; k < sizeof(pbjson_dashed_enums) / sizeof(pbjson_dashed_enums[0]); k++)
        if (strcmp(d->short_name, pbjson_dashed_enums[k]) == 0)
            sep = '-';
    for (p = v->name + pbjson_enum_prefix(d); *p && i + 1 < len; p++)
        out[i++] = *p == '_' ? sep : (char)tolower((unsigned char)*p);
    out[i] = '\0';
    return out;
}

static json_t *pbjson_time(int64_t ms)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    char buf[48];

    if (!gmtime_r(&secs, &tm))
        return json_null();
    snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    return json_string(buf);
}

static json_t *pbjson_bytes(const ProtobufCBinaryData *b)
{
    static const char tbl[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    json_t *s = json_stringn((const char *)b->data, b->len);
    char *out;
    size_t o = 0;

    if (s || b->len == 0)
        return s ? s : json_string("");
    out = malloc(4 * ((b->len + 2) / 3) + 1);
    if (!out)
        return NULL;
    for (size_t i = 0; i < b->len; i += 3) {
        uint32_t v = (uint32_t)b->data[i] << 16;
        if (i + 1 < b->len)
            v |= (uint32_t)b->data[i + 1] << 8;
        if (i + 2 < b->len)
            v |= b->data[i + 2];
        out[o++] = tbl[v >> 18 & 63];
        out[o++] = tbl[v >> 12 & 63];
        out[o++] = i + 1 < b->len ? tbl[v >> 6 & 63] : '=';
        out[o++] = i + 2 < b->len ? tbl[v & 63] : '=';
    }
    out[o] = '\0';
    s = json_string(out);
    free(out);
    return s;
}

/* One value of field f at p (an element, for repeated fields). */
static json_t *pbjson_value(const ProtobufCFieldDescriptor *f, const void *p)
{
    char name[64];

    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return json_integer(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return json_integer(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return json_integer(*(const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: {
        uint64_t v = *(const uint64_t *)p;
        if (v > (uint64_t)LLONG_MAX) {
            snprintf(name, sizeof(name), "%llu", (unsigned long long)v);
            return json_string(name);
        }
        return json_integer((json_int_t)v);
    }
    case PROTOBUF_C_TYPE_FLOAT:
        return json_real(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE:
        return json_real(*(const double *)p);
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_ENUM: {
        int v = *(const int *)p;
        if (pbjson_enum_name(f->descriptor, v, name, sizeof(name)))
            return json_string(name);
        return json_integer(v); /* a value this build does not know */
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        json_t *j = json_string(s ? s : "");
        return j ? j : json_stringn("?", 1); /* not UTF-8: never from skiff */
    }
    case PROTOBUF_C_TYPE_BYTES:
        return pbjson_bytes(p);
    case PROTOBUF_C_TYPE_MESSAGE:
        return pbjson_from_message(*(ProtobufCMessage *const *)p);
    }
    return json_null();
}

static size_t pbjson_elem_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32: case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_FLOAT: return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
    }
    return 0;
}

/* 1 when field f of m is to be shown: always, but for a oneof member that
 * is not the one set, and an optional field without presence. */
static int pbjson_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const char *base = (const char *)m;

    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_MESSAGE &&
        f->type != PROTOBUF_C_TYPE_STRING && f->quantifier_offset)
        return *(const protobuf_c_boolean *)(base + f->quantifier_offset);
    return 1;
}

/* Adds NAME for a field NAME_ms: a duration or a time. */
static int pbjson_add_readable(json_t *obj, const char *field, int64_t ms)
{
    size_t n = strlen(field);
    char key[128], dur[48];

    if (n < 4 || n - 3 >= sizeof(key) || strcmp(field + n - 3, "_ms") != 0)
        return 0;
    memcpy(key, field, n - 3);
    key[n - 3] = '\0';
    if (pbjson_is_time_field(field))
        return ms ? json_object_set_new(obj, key, pbjson_time(ms)) : 0;
    return json_object_set_new(obj, key, json_string(duration_format(ms, dur, sizeof(dur))));
}

json_t *pbjson_from_message(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d;
    json_t *obj;

    if (!m)
        return json_null();
    d = m->descriptor;
    obj = json_object();
    if (!obj)
        return NULL;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *p = (const char *)m + f->offset;
        json_t *v;

        if (!pbjson_present(m, f))
            continue;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
            const char *arr = *(const char *const *)p;
            size_t sz = pbjson_elem_size(f);
            v = json_array();
            for (size_t k = 0; v && k < n; k++)
                if (json_array_append_new(v, pbjson_value(f, arr + k * sz)))
                    goto out_free_obj;
        } else {
            v = pbjson_value(f, p);
        }
        if (!v || json_object_set_new(obj, f->name, v))
            goto out_free_obj;
        if (f->label != PROTOBUF_C_LABEL_REPEATED &&
            (f->type == PROTOBUF_C_TYPE_INT64 || f->type == PROTOBUF_C_TYPE_UINT64) &&
            pbjson_add_readable(obj, f->name, *(const int64_t *)p))
            goto out_free_obj;
    }
    return obj;

out_free_obj:
    json_decref(obj);
    return NULL;
}
