/* wire: see wire.h. */
#include "wire.h"
#include "errors.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t wire_get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void wire_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* 1 unless m, or a message in it, holds an unknown field number 0.
 * protobuf-c takes field 0 written in more than one byte (0x80 0x00) for an
 * unknown field, packs it back as 0x00, and then refuses that: such a
 * message could not be copied (pb_dup), relayed or stored. Field 0 is not
 * valid protobuf; the frame is malformed. */
static int wire_tags_valid(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;

    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0)
            return 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *field = (const char *)m + f->offset;

        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
            ProtobufCMessage *const *v = *(ProtobufCMessage *const *const *)field;
            for (size_t k = 0; k < n; k++)
                if (v[k] && !wire_tags_valid(v[k]))
                    return 0;
            continue;
        }
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id)
            continue; /* another member of the oneof is set */
        if (*(ProtobufCMessage *const *)field &&
            !wire_tags_valid(*(ProtobufCMessage *const *)field))
            return 0;
    }
    return 1;
}

int wire_decode(buf_t *in, size_t max, Envelope **env)
{
    const uint8_t *p = (const uint8_t *)in->pos;
    size_t avail = buf_len(in);
    uint32_t len;
    Envelope *e;

    *env = NULL;
    if (avail < WIRE_HEADER_SIZE)
        return 0;
    len = wire_get_be32(p);
    if (len > max)
        return SKIFF_ETOOBIG;
    if (len == 0)
        return SKIFF_EFRAME;
    if (avail - WIRE_HEADER_SIZE < len)
        return 0;
    e = skiff__v1__envelope__unpack(NULL, len, p + WIRE_HEADER_SIZE);
    buf_consume(in, WIRE_HEADER_SIZE + len);
    if (!e)
        return SKIFF_EFRAME;
    if (e->msg_case == MSG_NOT_SET || !wire_tags_valid(&e->base)) {
        skiff__v1__envelope__free_unpacked(e, NULL);
        return SKIFF_EFRAME;
    }
    *env = e;
    return 1;
}

size_t wire_frame_size(const Envelope *env)
{
    return WIRE_HEADER_SIZE + skiff__v1__envelope__get_packed_size(env);
}

void wire_pack(const Envelope *env, uint8_t *out)
{
    size_t len = skiff__v1__envelope__pack(env, out + WIRE_HEADER_SIZE);

    wire_put_be32(out, (uint32_t)len);
}

int wire_encode(const Envelope *env, buf_t *out, size_t max)
{
    size_t size = wire_frame_size(env);
    int rc;

    if (size - WIRE_HEADER_SIZE > max)
        return SKIFF_ETOOBIG;
    rc = buf_reserve(out, size, max + WIRE_HEADER_SIZE);
    if (rc)
        return rc;
    wire_pack(env, (uint8_t *)out->last);
    out->last += size;
    return 0;
}

void wire_free(Envelope *env)
{
    if (env)
        skiff__v1__envelope__free_unpacked(env, NULL);
}

const char *wire_msg_name(int msg_case)
{
    const ProtobufCFieldDescriptor *f;

    if (msg_case == MSG_NOT_SET)
        return "none";
    f = protobuf_c_message_descriptor_get_field(&skiff__v1__envelope__descriptor,
                                                (unsigned)msg_case);
    return f ? f->name : "unknown";
}

int wire_parse_hostport(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon, *h = s;
    size_t n;
    char *end;
    long p;

    if (!s || !*s)
        return SKIFF_EINVAL;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return SKIFF_EINVAL;
        h = s + 1;
        n = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || strchr(s, ':') != colon)
            return SKIFF_EINVAL;
        n = (size_t)(colon - s);
    }
    if (n == 0 || n >= hostlen)
        return SKIFF_EINVAL;
    if (!isdigit((unsigned char)colon[1])) /* strtol would take "+80", " 80" */
        return SKIFF_EINVAL;
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (errno || *end || p < 1 || p > 65535)
        return SKIFF_EINVAL;
    memcpy(host, h, n);
    host[n] = '\0';
    *port = (int)p;
    return 0;
}

int wire_parse_hostlist(const char *list, int default_port, char (*out)[WIRE_HOSTPORT_MAX],
                        size_t max, size_t *n)
{
    const char *p = list;

    *n = 0;
    if (!list || !*list)
        return SKIFF_EINVAL;
    for (;;) {
        size_t len = strcspn(p, ",");
        char entry[WIRE_HOSTPORT_MAX], host[WIRE_HOSTPORT_MAX];
        int port;

        if (len == 0 || len + 8 > sizeof(entry) || *n == max)
            return SKIFF_EINVAL;
        memcpy(entry, p, len);
        entry[len] = '\0';
        /* ADDR alone, or [V6ADDR] alone: the default port, if there is one */
        if (default_port > 0 && ((entry[0] == '[' && entry[len - 1] == ']') ||
                                 (entry[0] != '[' && !strchr(entry, ':'))))
            snprintf(entry + len, sizeof(entry) - len, ":%d", default_port);
        if (wire_parse_hostport(entry, host, sizeof(host), &port))
            return SKIFF_EINVAL;
        memcpy(out[(*n)++], entry, sizeof(entry));
        p += len;
        if (!*p)
            return 0;
        p++; /* the comma */
    }
}
