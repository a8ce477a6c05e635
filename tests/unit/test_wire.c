/* Unit tests of proto/wire: frames on a byte stream. A frame round-trips;
 * it decodes whether it arrives whole, one byte at a time, in two pieces at
 * any offset, or joined with others; an oversize length is refused before its
 * body arrives; an empty frame and garbage are SKIFF_EFRAME, never a crash
 * (every payload here sits in an allocation of its exact size, so ASan sees
 * any read past it). Also wire_msg_name and wire_parse_hostport.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "errors.h"
#include "wire.h"

/* ------------------------------------------------------------- helpers */

/* A Hello envelope on the stack, pointing at static strings. */
static void make_hello(Envelope *env, Hello *hello, uint64_t id, const char *token)
{
    *env = (Envelope)PB_ENVELOPE_INIT;
    *hello = (Hello)PB_HELLO_INIT;
    hello->role = ROLE_AGENT;
    hello->token = (char *)token;
    hello->version = (char *)"0.1.0";
    env->id = id;
    env->msg_case = MSG_HELLO;
    env->hello = hello;
}

/* A LogsData envelope carrying n bytes of data (a frame longer than 255, so
 * that its length uses more than one header byte). data is the caller's. */
static void make_logs(Envelope *env, LogsData *ld, uint64_t id, uint8_t *data, size_t n)
{
    *env = (Envelope)PB_ENVELOPE_INIT;
    *ld = (LogsData)PB_LOGS_DATA_INIT;
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)(i * 7 + id);
    ld->stream = id * 100;
    ld->task_name = (char *)"web.1.abc";
    ld->data.data = data;
    ld->data.len = n;
    env->id = id;
    env->msg_case = MSG_LOGS_DATA;
    env->logs_data = ld;
}

/* The frame of env, malloc'd; *len is its size. */
static uint8_t *frame_of(const Envelope *env, size_t *len)
{
    uint8_t *f;

    *len = wire_frame_size(env);
    f = malloc(*len);
    assert_non_null(f);
    wire_pack(env, f);
    return f;
}

/* A buffer holding exactly these bytes, in an allocation of exactly their
 * size, so that a read past them is an ASan error. */
static void buf_exact(buf_t *b, const void *data, size_t n)
{
    assert_int_equal(buf_init(b, n), 0);
    if (n)
        assert_int_equal(buf_append(b, data, n, n), 0);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A frame with this payload, header computed. */
static uint8_t *frame_raw(const void *payload, size_t n, size_t *len)
{
    uint8_t *f = malloc(WIRE_HEADER_SIZE + n);

    assert_non_null(f);
    put_be32(f, (uint32_t)n);
    if (n)
        memcpy(f + WIRE_HEADER_SIZE, payload, n);
    *len = WIRE_HEADER_SIZE + n;
    return f;
}

/* Decodes a buffer that holds exactly one frame with this payload. */
static int decode_payload(const void *payload, size_t n, size_t max, Envelope **env)
{
    size_t len;
    uint8_t *f = frame_raw(payload, n, &len);
    buf_t b;
    int rc;

    buf_exact(&b, f, len);
    free(f);
    rc = wire_decode(&b, max, env);
    buf_free(&b);
    return rc;
}

static void assert_hello(const Envelope *env, uint64_t id, const char *token)
{
    assert_non_null(env);
    assert_int_equal(env->id, id);
    assert_int_equal(env->msg_case, MSG_HELLO);
    assert_non_null(env->hello);
    assert_int_equal(env->hello->role, ROLE_AGENT);
    assert_string_equal(env->hello->token, token);
    assert_string_equal(env->hello->version, "0.1.0");
}

static void assert_logs(const Envelope *env, uint64_t id, size_t n)
{
    assert_non_null(env);
    assert_int_equal(env->id, id);
    assert_int_equal(env->msg_case, MSG_LOGS_DATA);
    assert_int_equal(env->logs_data->stream, id * 100);
    assert_string_equal(env->logs_data->task_name, "web.1.abc");
    assert_int_equal(env->logs_data->data.len, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(env->logs_data->data.data[i], (uint8_t)(i * 7 + id));
}

static uint32_t rng_next(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* --------------------------------------------------------- round trips */

static void test_round_trip_hello(void **state)
{
    Envelope env, *out;
    Hello hello;
    buf_t b = BUF_INIT;

    make_hello(&env, &hello, 42, "0123456789abcdef");
    assert_int_equal(wire_encode(&env, &b, WIRE_MAX_FRAME_DEFAULT), 0);
    assert_int_equal(buf_len(&b), wire_frame_size(&env));
    assert_int_equal(wire_decode(&b, WIRE_MAX_FRAME_DEFAULT, &out), 1);
    assert_hello(out, 42, "0123456789abcdef");
    assert_int_equal(buf_len(&b), 0);
    wire_free(out);
    /* Nothing left: more bytes needed, *env NULL. */
    out = (Envelope *)&env;
    assert_int_equal(wire_decode(&b, WIRE_MAX_FRAME_DEFAULT, &out), 0);
    assert_null(out);
    buf_free(&b);
}

static void test_round_trip_large(void **state)
{
    enum { N = 300000 };
    uint8_t *data = malloc(N);
    Envelope env, *out;
    LogsData ld;
    buf_t b = BUF_INIT;

    assert_non_null(data);
    make_logs(&env, &ld, 7, data, N);
    assert_int_equal(wire_encode(&env, &b, WIRE_MAX_FRAME_DEFAULT), 0);
    assert_int_equal(wire_decode(&b, WIRE_MAX_FRAME_DEFAULT, &out), 1);
    assert_logs(out, 7, N);
    wire_free(out);
    buf_free(&b);
    free(data);
}

static void test_round_trip_error_and_ok(void **state)
{
    Envelope env = PB_ENVELOPE_INIT, *out;
    Error err = PB_ERROR_INIT;
    Ok ok = PB_OK_INIT;
    buf_t b = BUF_INIT;

    err.code = ERR_AUTH;
    err.message = (char *)"wrong token";
    env.id = UINT64_MAX;
    env.msg_case = MSG_ERROR;
    env.error = &err;
    assert_int_equal(wire_encode(&env, &b, 1024), 0);
    /* An empty submessage still sets the oneof: Ok is a valid message. */
    env.id = 0;
    env.msg_case = MSG_OK;
    env.ok = &ok;
    assert_int_equal(wire_encode(&env, &b, 1024), 0);

    assert_int_equal(wire_decode(&b, 1024, &out), 1);
    assert_int_equal(out->id, UINT64_MAX);
    assert_int_equal(out->msg_case, MSG_ERROR);
    assert_int_equal(out->error->code, ERR_AUTH);
    assert_string_equal(out->error->message, "wrong token");
    wire_free(out);
    assert_int_equal(wire_decode(&b, 1024, &out), 1);
    assert_int_equal(out->id, 0);
    assert_int_equal(out->msg_case, MSG_OK);
    assert_non_null(out->ok);
    wire_free(out);
    assert_int_equal(buf_len(&b), 0);
    buf_free(&b);
}

static void test_frame_layout(void **state)
{
    uint8_t data[1000];
    Envelope env;
    LogsData ld;
    size_t len;
    uint8_t *f;
    size_t payload;

    make_logs(&env, &ld, 3, data, sizeof(data));
    payload = skiff__v1__envelope__get_packed_size(&env);
    assert_int_equal(wire_frame_size(&env), WIRE_HEADER_SIZE + payload);
    f = frame_of(&env, &len);
    /* 4-byte big-endian length, then the packed Envelope. */
    assert_int_equal(f[0], (payload >> 24) & 0xff);
    assert_int_equal(f[1], (payload >> 16) & 0xff);
    assert_int_equal(f[2], (payload >> 8) & 0xff);
    assert_int_equal(f[3], payload & 0xff);
    assert_true(payload > 255);
    {
        uint8_t *packed = malloc(payload);
        assert_non_null(packed);
        assert_int_equal(skiff__v1__envelope__pack(&env, packed), payload);
        assert_memory_equal(f + WIRE_HEADER_SIZE, packed, payload);
        free(packed);
    }
    free(f);
}

static void test_encode_appends_after_existing_data(void **state)
{
    Envelope env, *out;
    Hello hello;
    buf_t b = BUF_INIT;

    assert_int_equal(buf_append(&b, "junk", 4, 1 << 20), 0);
    make_hello(&env, &hello, 1, "t");
    assert_int_equal(wire_encode(&env, &b, 1 << 20), 0);
    assert_int_equal(buf_len(&b), 4 + wire_frame_size(&env));
    buf_consume(&b, 4);
    assert_int_equal(wire_decode(&b, 1 << 20, &out), 1);
    assert_hello(out, 1, "t");
    wire_free(out);
    buf_free(&b);
}

/* ------------------------------------------------------ split and joined */

static void test_split_one_byte_at_a_time(void **state)
{
    uint8_t data[400];
    Envelope env, *out;
    LogsData ld;
    size_t len;
    uint8_t *f;
    buf_t b = BUF_INIT;

    make_logs(&env, &ld, 9, data, sizeof(data));
    f = frame_of(&env, &len);
    for (size_t i = 0; i < len; i++) {
        assert_int_equal(buf_append(&b, f + i, 1, len), 0);
        if (i + 1 < len) {
            /* Not whole yet: more needed, nothing consumed. */
            assert_int_equal(wire_decode(&b, WIRE_MAX_FRAME_DEFAULT, &out), 0);
            assert_null(out);
            assert_int_equal(buf_len(&b), i + 1);
        }
    }
    assert_int_equal(wire_decode(&b, WIRE_MAX_FRAME_DEFAULT, &out), 1);
    assert_logs(out, 9, sizeof(data));
    assert_int_equal(buf_len(&b), 0);
    wire_free(out);
    buf_free(&b);
    free(f);
}

static void test_split_in_two_at_every_offset(void **state)
{
    uint8_t data[300];
    Envelope env, *out;
    LogsData ld;
    size_t len;
    uint8_t *f;

    make_logs(&env, &ld, 5, data, sizeof(data));
    f = frame_of(&env, &len);
    for (size_t k = 0; k <= len; k++) {
        buf_t b = BUF_INIT;
        int rc;

        assert_int_equal(buf_append(&b, f, k, len), 0);
        rc = wire_decode(&b, WIRE_MAX_FRAME_DEFAULT, &out);
        if (k < len) {
            assert_int_equal(rc, 0);
            assert_null(out);
            assert_int_equal(buf_len(&b), k);
            assert_int_equal(buf_append(&b, f + k, len - k, len), 0);
            rc = wire_decode(&b, WIRE_MAX_FRAME_DEFAULT, &out);
        }
        assert_int_equal(rc, 1);
        assert_logs(out, 5, sizeof(data));
        assert_int_equal(buf_len(&b), 0);
        wire_free(out);
        buf_free(&b);
    }
    free(f);
}

static void test_joined_frames(void **state)
{
    uint8_t data[500];
    Envelope env, *out;
    Hello hello;
    LogsData ld;
    buf_t b = BUF_INIT;

    make_hello(&env, &hello, 1, "first");
    assert_int_equal(wire_encode(&env, &b, 1 << 20), 0);
    make_logs(&env, &ld, 2, data, sizeof(data));
    assert_int_equal(wire_encode(&env, &b, 1 << 20), 0);
    make_hello(&env, &hello, 3, "third");
    assert_int_equal(wire_encode(&env, &b, 1 << 20), 0);
    /* and the first 3 bytes of a fourth */
    assert_int_equal(buf_append(&b, "\0\0\0", 3, 1 << 20), 0);

    assert_int_equal(wire_decode(&b, 1 << 20, &out), 1);
    assert_hello(out, 1, "first");
    wire_free(out);
    assert_int_equal(wire_decode(&b, 1 << 20, &out), 1);
    assert_logs(out, 2, sizeof(data));
    wire_free(out);
    assert_int_equal(wire_decode(&b, 1 << 20, &out), 1);
    assert_hello(out, 3, "third");
    wire_free(out);
    assert_int_equal(wire_decode(&b, 1 << 20, &out), 0);
    assert_int_equal(buf_len(&b), 3);
    buf_free(&b);
}

/* Many frames, joined, fed in pieces of every size from 1 to 13 bytes: every
 * frame comes out once, in order. */
static void test_joined_frames_in_pieces(void **state)
{
    enum { FRAMES = 20 };
    static uint8_t data[FRAMES][260];
    uint8_t *stream = NULL;
    size_t total = 0;

    for (int i = 0; i < FRAMES; i++) {
        Envelope env;
        LogsData ld;
        size_t len;
        uint8_t *f;

        make_logs(&env, &ld, (uint64_t)i + 1, data[i], (size_t)(i * 13));
        f = frame_of(&env, &len);
        stream = realloc(stream, total + len);
        assert_non_null(stream);
        memcpy(stream + total, f, len);
        total += len;
        free(f);
    }
    for (size_t piece = 1; piece <= 13; piece++) {
        buf_t b = BUF_INIT;
        int got = 0;

        for (size_t off = 0; off < total; off += piece) {
            size_t n = total - off < piece ? total - off : piece;
            Envelope *out;
            int rc;

            assert_int_equal(buf_append(&b, stream + off, n, 1 << 20), 0);
            while ((rc = wire_decode(&b, 1 << 20, &out)) == 1) {
                assert_logs(out, (uint64_t)got + 1, (size_t)(got * 13));
                wire_free(out);
                got++;
            }
            assert_int_equal(rc, 0);
        }
        assert_int_equal(got, FRAMES);
        assert_int_equal(buf_len(&b), 0);
        buf_free(&b);
    }
    free(stream);
}

/* ------------------------------------------------------------- limits */

static void test_oversize_refused_before_body(void **state)
{
    uint8_t hdr[WIRE_HEADER_SIZE];
    Envelope *out;
    buf_t b;

    /* Only the header has arrived: one byte over the limit is enough. */
    put_be32(hdr, 1025);
    buf_exact(&b, hdr, sizeof(hdr));
    out = (Envelope *)hdr;
    assert_int_equal(wire_decode(&b, 1024, &out), SKIFF_ETOOBIG);
    assert_null(out);
    buf_free(&b);

    put_be32(hdr, UINT32_MAX);
    buf_exact(&b, hdr, sizeof(hdr));
    assert_int_equal(wire_decode(&b, WIRE_MAX_FRAME_DEFAULT, &out), SKIFF_ETOOBIG);
    buf_free(&b);

    put_be32(hdr, (uint32_t)WIRE_MAX_FRAME_DEFAULT + 1);
    buf_exact(&b, hdr, sizeof(hdr));
    assert_int_equal(wire_decode(&b, WIRE_MAX_FRAME_DEFAULT, &out), SKIFF_ETOOBIG);
    buf_free(&b);

    /* Exactly the limit is fine: more bytes are needed. */
    put_be32(hdr, 1024);
    buf_exact(&b, hdr, sizeof(hdr));
    assert_int_equal(wire_decode(&b, 1024, &out), 0);
    assert_int_equal(buf_len(&b), WIRE_HEADER_SIZE);
    buf_free(&b);
}

static void test_partial_header_needs_more(void **state)
{
    uint8_t hdr[3] = { 0xff, 0xff, 0xff }; /* would be oversize, once whole */
    Envelope *out;
    buf_t b;

    for (size_t n = 0; n < sizeof(hdr); n++) {
        buf_exact(&b, hdr, n);
        assert_int_equal(wire_decode(&b, 16, &out), 0);
        assert_int_equal(buf_len(&b), n);
        buf_free(&b);
    }
}

static void test_frame_at_exactly_max(void **state)
{
    uint8_t data[200];
    Envelope env, *out;
    LogsData ld;
    size_t len, payload;
    uint8_t *f;
    buf_t b;

    make_logs(&env, &ld, 4, data, sizeof(data));
    f = frame_of(&env, &len);
    payload = len - WIRE_HEADER_SIZE;

    buf_exact(&b, f, len);
    assert_int_equal(wire_decode(&b, payload, &out), 1);
    assert_logs(out, 4, sizeof(data));
    wire_free(out);
    buf_free(&b);

    buf_exact(&b, f, len);
    assert_int_equal(wire_decode(&b, payload - 1, &out), SKIFF_ETOOBIG);
    buf_free(&b);
    free(f);
}

static void test_zero_length_frame(void **state)
{
    uint8_t zero[WIRE_HEADER_SIZE] = { 0 };
    uint8_t two[2 * WIRE_HEADER_SIZE] = { 0 };
    Envelope *out;
    buf_t b;

    buf_exact(&b, zero, sizeof(zero));
    out = (Envelope *)zero;
    assert_int_equal(wire_decode(&b, 1024, &out), SKIFF_EFRAME);
    assert_null(out);
    buf_free(&b);

    buf_exact(&b, two, sizeof(two));
    assert_int_equal(wire_decode(&b, 1024, &out), SKIFF_EFRAME);
    buf_free(&b);
}

static void test_encode_refuses_over_max(void **state)
{
    uint8_t data[1000];
    Envelope env, *out;
    LogsData ld;
    size_t payload;
    buf_t b = BUF_INIT;

    make_logs(&env, &ld, 6, data, sizeof(data));
    payload = wire_frame_size(&env) - WIRE_HEADER_SIZE;

    /* The frame alone passes max: refused, nothing written. */
    assert_int_equal(wire_encode(&env, &b, payload - 1), SKIFF_ETOOBIG);
    assert_int_equal(wire_encode(&env, &b, 500), SKIFF_ETOOBIG);
    assert_int_equal(buf_len(&b), 0);

    /* A frame of exactly max bytes goes, and decodes under the same max. */
    assert_int_equal(wire_encode(&env, &b, payload), 0);
    assert_int_equal(buf_len(&b), payload + WIRE_HEADER_SIZE);
    /* A second one does not fit in a buffer bounded by that max. */
    assert_int_equal(wire_encode(&env, &b, payload), -ENOBUFS);
    assert_int_equal(buf_len(&b), payload + WIRE_HEADER_SIZE);

    assert_int_equal(wire_decode(&b, payload, &out), 1);
    assert_logs(out, 6, sizeof(data));
    wire_free(out);
    buf_free(&b);
}

/* -------------------------------------------------------------- garbage */

static void test_garbage_invalid_wire_type(void **state)
{
    static const uint8_t ff[16] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    static const uint8_t wt7[] = { 0x0f }; /* field 1, wire type 7 */
    Envelope *out;

    out = (Envelope *)ff;
    assert_int_equal(decode_payload(ff, sizeof(ff), 1024, &out), SKIFF_EFRAME);
    assert_null(out);
    assert_int_equal(decode_payload(ff, 1, 1024, &out), SKIFF_EFRAME);
    assert_int_equal(decode_payload(wt7, sizeof(wt7), 1024, &out), SKIFF_EFRAME);
}

static void test_garbage_truncated_protobuf(void **state)
{
    Envelope env, *out;
    Hello hello;
    size_t len;
    uint8_t *f;

    make_hello(&env, &hello, 300, "a-token-of-some-length");
    f = frame_of(&env, &len);
    /* Every proper prefix of the packed Envelope, announced as the whole
     * frame: a cut varint or a cut string. A prefix that ends exactly between
     * two fields can still be a valid Envelope; then it must be a whole one. */
    for (size_t n = 1; n < len - WIRE_HEADER_SIZE; n++) {
        int rc = decode_payload(f + WIRE_HEADER_SIZE, n, 1024, &out);
        if (rc == 1) {
            assert_int_equal(out->msg_case, MSG_HELLO);
            wire_free(out);
        } else {
            assert_int_equal(rc, SKIFF_EFRAME);
            assert_null(out);
        }
    }
    /* The last byte cut off the token: certainly malformed. */
    assert_int_equal(decode_payload(f + WIRE_HEADER_SIZE, len - WIRE_HEADER_SIZE - 1, 1024,
                                    &out),
                     SKIFF_EFRAME);
    free(f);
}

static void test_garbage_length_past_submessage(void **state)
{
    /* field 10 (hello), length-delimited, announcing 100 bytes; 2 follow */
    static const uint8_t p[] = { 0x52, 100, 0x08, 0x01 };
    /* field 10 (hello) as a varint: the wrong wire type for a message */
    static const uint8_t q[] = { 0x50, 0x01 };
    /* a varint that never ends */
    static const uint8_t r[] = { 0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                 0x80, 0x80, 0x80, 0x80 };
    Envelope *out;

    assert_int_equal(decode_payload(p, sizeof(p), 1024, &out), SKIFF_EFRAME);
    assert_int_equal(decode_payload(q, sizeof(q), 1024, &out), SKIFF_EFRAME);
    assert_int_equal(decode_payload(r, sizeof(r), 1024, &out), SKIFF_EFRAME);
}

static void test_garbage_valid_protobuf_without_message(void **state)
{
    Envelope env = PB_ENVELOPE_INIT, *out;
    Hello hello = PB_HELLO_INIT;
    static const uint8_t unknown_field[] = { 0xf8, 0x06, 0x01 }; /* field 111 = 1 */
    uint8_t packed[64];
    size_t n;

    /* An Envelope with an id and no message. */
    env.id = 77;
    n = skiff__v1__envelope__pack(&env, packed);
    assert_true(n > 0);
    out = (Envelope *)packed;
    assert_int_equal(decode_payload(packed, n, 1024, &out), SKIFF_EFRAME);
    assert_null(out);

    /* Only a field that Envelope does not know. */
    assert_int_equal(decode_payload(unknown_field, sizeof(unknown_field), 1024, &out),
                     SKIFF_EFRAME);

    /* A Hello sent bare, not in an Envelope: valid protobuf, no message. */
    hello.role = ROLE_CLIENT;
    hello.token = (char *)"tok";
    n = skiff__v1__hello__pack(&hello, packed);
    assert_int_equal(decode_payload(packed, n, 1024, &out), SKIFF_EFRAME);
}

static void test_garbage_consumes_the_frame(void **state)
{
    static const uint8_t ff[8] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    Envelope *out;
    size_t len;
    uint8_t *f = frame_raw(ff, sizeof(ff), &len);
    buf_t b;

    /* The bad frame is taken off: wire_decode never loops on it. */
    buf_exact(&b, f, len);
    assert_int_equal(wire_decode(&b, 1024, &out), SKIFF_EFRAME);
    assert_int_equal(buf_len(&b), 0);
    buf_free(&b);
    free(f);
}

/* Random payloads of random lengths: each is either an Envelope with a
 * message or SKIFF_EFRAME; nothing crashes, leaks or reads out of bounds. */
static void test_garbage_random(void **state)
{
    uint32_t seed = 0x5eed;
    uint8_t payload[300];
    int frames = 0, valid = 0;

    for (int i = 0; i < 20000; i++) {
        size_t n = 1 + rng_next(&seed) % sizeof(payload);
        Envelope *out;
        int rc;

        for (size_t k = 0; k < n; k++)
            payload[k] = (uint8_t)rng_next(&seed);
        /* Half of them start like an Envelope's oneof, to get past the
         * first byte more often. */
        if (i % 2 && n > 2) {
            /* fields 10 to 13 (hello ... ok), length-delimited */
            payload[0] = (uint8_t)((10 + rng_next(&seed) % 4) << 3 | 2);
            payload[1] = (uint8_t)(payload[1] % (n - 1) % 128);
        }
        rc = decode_payload(payload, n, 1024, &out);
        if (rc == 1) {
            assert_non_null(out);
            assert_int_not_equal(out->msg_case, MSG_NOT_SET);
            valid++;
            wire_free(out);
        } else {
            assert_int_equal(rc, SKIFF_EFRAME);
            assert_null(out);
            frames++;
        }
    }
    assert_true(frames > 10000);
    (void)valid;
}

/* A stream of garbage frames joined: every one is a clean error. */
static void test_garbage_random_streams(void **state)
{
    uint32_t seed = 99;
    uint8_t stream[2048];

    for (int i = 0; i < 5000; i++) {
        size_t n = 1 + rng_next(&seed) % sizeof(stream);
        Envelope *out;
        buf_t b;
        int rc;

        for (size_t k = 0; k < n; k++)
            stream[k] = (uint8_t)rng_next(&seed);
        if (n >= WIRE_HEADER_SIZE && i % 2) /* a plausible length */
            put_be32(stream, rng_next(&seed) % (uint32_t)n);
        buf_exact(&b, stream, n);
        while ((rc = wire_decode(&b, 1024, &out)) == 1)
            wire_free(out);
        assert_true(rc == 0 || rc == SKIFF_EFRAME || rc == SKIFF_ETOOBIG);
        assert_true(buf_len(&b) <= n);
        buf_free(&b);
    }
}

/* ------------------------------------------------------ names and hosts */

static void test_msg_name(void **state)
{
    assert_string_equal(wire_msg_name(MSG_NOT_SET), "none");
    assert_string_equal(wire_msg_name(MSG_HELLO), "hello");
    assert_string_equal(wire_msg_name(MSG_HELLO_REPLY), "hello_reply");
    assert_string_equal(wire_msg_name(MSG_ERROR), "error");
    assert_string_equal(wire_msg_name(MSG_OK), "ok");
    assert_string_equal(wire_msg_name(MSG_STATUS), "status");
    assert_string_equal(wire_msg_name(MSG_ASSIGNMENTS), "assignments");
    assert_string_equal(wire_msg_name(MSG_SERVICE_CREATE), "service_create");
    assert_string_equal(wire_msg_name(MSG_LOGS_REQUEST), "logs_request");
    assert_string_equal(wire_msg_name(MSG_NODE_LIST_REPLY), "node_list_reply");
    assert_string_equal(wire_msg_name(9999), "unknown");
}

static void test_msg_name_of_decoded(void **state)
{
    Envelope env, *out;
    Hello hello;
    buf_t b = BUF_INIT;

    make_hello(&env, &hello, 1, "x");
    assert_int_equal(wire_encode(&env, &b, 1024), 0);
    assert_int_equal(wire_decode(&b, 1024, &out), 1);
    assert_string_equal(wire_msg_name(out->msg_case), "hello");
    wire_free(out);
    wire_free(NULL);
    buf_free(&b);
}

static void test_parse_hostport_good(void **state)
{
    static const struct {
        const char *in, *host;
        int port;
    } cases[] = {
        { "127.0.0.1:7946", "127.0.0.1", 7946 },
        { "localhost:1", "localhost", 1 },
        { "controller.example.com:65535", "controller.example.com", 65535 },
        { "0.0.0.0:080", "0.0.0.0", 80 },
        { "[::1]:8080", "::1", 8080 },
        { "[fe80::1%eth0]:22", "fe80::1%eth0", 22 },
        { "[2001:db8::a:b]:443", "2001:db8::a:b", 443 },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char host[64];
        int port = -1;
        assert_int_equal(wire_parse_hostport(cases[i].in, host, sizeof(host), &port), 0);
        assert_string_equal(host, cases[i].host);
        assert_int_equal(port, cases[i].port);
    }
}

static void test_parse_hostport_bad(void **state)
{
    static const char *const cases[] = {
        "",               /* empty */
        "host",           /* missing port */
        "host:",          /* empty port */
        ":80",            /* empty host */
        "[]:80",          /* empty v6 host */
        "host:0",         /* port out of range */
        "host:65536",
        "host:70000",
        "host:-1",
        "host:99999999999999999999",
        "host:abc",       /* not a number */
        "host:80x",
        "host:8 0",
        "host:+80",       /* a sign is not a port */
        "host: 80",       /* nor is a space */
        "host:0x50",
        "::1:80",         /* v6 without brackets */
        "a:b:80",
        "[::1]",          /* missing port */
        "[::1]:",
        "[::1]80",
        "[::1:80",        /* unclosed bracket */
        "[::1]:+80",
    };
    char host[64];
    int port = 1234;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = wire_parse_hostport(cases[i], host, sizeof(host), &port);
        if (rc != SKIFF_EINVAL)
            fail_msg("wire_parse_hostport(\"%s\") = %d, want SKIFF_EINVAL", cases[i], rc);
        assert_int_equal(port, 1234); /* untouched on error */
    }
    assert_int_equal(wire_parse_hostport(NULL, host, sizeof(host), &port), SKIFF_EINVAL);
}

static void test_parse_hostport_host_too_long(void **state)
{
    char host[10];
    int port;

    /* 9 characters and the '\0' fit in 10 bytes; 10 characters do not. */
    assert_int_equal(wire_parse_hostport("1234567890:80", host, sizeof(host), &port),
                     SKIFF_EINVAL);
    assert_int_equal(wire_parse_hostport("123456789:80", host, sizeof(host), &port), 0);
    assert_string_equal(host, "123456789");
    assert_int_equal(wire_parse_hostport("[1:2:3:4:55]:80", host, sizeof(host), &port),
                     SKIFF_EINVAL);
    assert_int_equal(wire_parse_hostport("[1:2:3:4:5]:80", host, sizeof(host), &port), 0);
    assert_string_equal(host, "1:2:3:4:5");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_hello),
        cmocka_unit_test(test_round_trip_large),
        cmocka_unit_test(test_round_trip_error_and_ok),
        cmocka_unit_test(test_frame_layout),
        cmocka_unit_test(test_encode_appends_after_existing_data),
        cmocka_unit_test(test_split_one_byte_at_a_time),
        cmocka_unit_test(test_split_in_two_at_every_offset),
        cmocka_unit_test(test_joined_frames),
        cmocka_unit_test(test_joined_frames_in_pieces),
        cmocka_unit_test(test_oversize_refused_before_body),
        cmocka_unit_test(test_partial_header_needs_more),
        cmocka_unit_test(test_frame_at_exactly_max),
        cmocka_unit_test(test_zero_length_frame),
        cmocka_unit_test(test_encode_refuses_over_max),
        cmocka_unit_test(test_garbage_invalid_wire_type),
        cmocka_unit_test(test_garbage_truncated_protobuf),
        cmocka_unit_test(test_garbage_length_past_submessage),
        cmocka_unit_test(test_garbage_valid_protobuf_without_message),
        cmocka_unit_test(test_garbage_consumes_the_frame),
        cmocka_unit_test(test_garbage_random),
        cmocka_unit_test(test_garbage_random_streams),
        cmocka_unit_test(test_msg_name),
        cmocka_unit_test(test_msg_name_of_decoded),
        cmocka_unit_test(test_parse_hostport_good),
        cmocka_unit_test(test_parse_hostport_bad),
        cmocka_unit_test(test_parse_hostport_host_too_long),
    };

    return cmocka_run_group_tests_name("wire", tests, NULL, NULL);
}
