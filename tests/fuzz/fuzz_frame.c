/* fuzz_frame: wire_decode over arbitrary byte streams.
 *
 * The first byte picks the largest frame (16 B, 256 B, 4 KiB or the 4 MiB
 * default) and how the rest is cut into reads (1 to 64 bytes, or 4 KiB);
 * the rest is the stream. The stream is decoded twice: whole, and in those
 * pieces into a buffer grown the way conn.c grows its input. Checked:
 *   - both give the same frames and end the same way (a split or joined
 *     frame changes nothing);
 *   - the input buffer never needs more than max_frame + header + one read,
 *     the bound conn.c relies on;
 *   - every decoded Envelope packs, and decodes back to the same message.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "errors.h"
#include "pbutil.h"
#include "wire.h"

#define FZ_MAX_FRAMES 4096

typedef struct fz_result {
    size_t n;
    size_t sizes[FZ_MAX_FRAMES];  /* packed size of each decoded envelope */
    uint32_t cases[FZ_MAX_FRAMES];
    int end;                      /* 0: wants more; else the error */
    size_t left;                  /* unread bytes at the end */
} fz_result_t;

static fz_result_t whole, pieces;

/* Re-encodes env and decodes it again: the same message must come back. */
static void fz_roundtrip(const Envelope *env)
{
    buf_t b = BUF_INIT;
    Envelope *again = NULL;
    size_t max = wire_frame_size(env);
    int rc;

    if (wire_encode(env, &b, max) != 0)
        abort();
    if (buf_len(&b) != max)
        abort();
    rc = wire_decode(&b, max, &again);
    /* An Envelope whose message is empty still has its case set, so it
     * decodes; only the message-less envelope was refused already. */
    if (rc != 1 || !again || buf_len(&b) != 0)
        abort();
    if (!pb_equal(env, again) || again->msg_case != env->msg_case || again->id != env->id)
        abort();
    if (!wire_msg_name(env->msg_case))
        abort();
    wire_free(again);
    buf_free(&b);
}

static void fz_take(fz_result_t *r, Envelope *env)
{
    if (r->n < FZ_MAX_FRAMES) {
        r->sizes[r->n] = wire_frame_size(env);
        r->cases[r->n] = (uint32_t)env->msg_case;
    }
    r->n++;
}

/* Decodes every whole frame in in; returns 0 or the error. */
static int fz_drain(buf_t *in, size_t max, fz_result_t *r, int check)
{
    Envelope *env;
    int rc;

    while ((rc = wire_decode(in, max, &env)) == 1) {
        if (!env)
            abort();
        if (check)
            fz_roundtrip(env);
        fz_take(r, env);
        wire_free(env);
    }
    if (rc != 0 && rc != SKIFF_ETOOBIG && rc != SKIFF_EFRAME && rc != -ENOMEM)
        abort();
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t maxes[4] = { 16, 256, 4096, WIRE_MAX_FRAME_DEFAULT };
    const size_t chunk = 4096; /* as conn.c reads */
    size_t max, piece, off;
    uint32_t seed;
    buf_t in = BUF_INIT;
    int rc = 0;

    if (size < 1)
        return 0;
    max = maxes[data[0] & 3];
    piece = (data[0] >> 2) & 63; /* 0: one read of everything */
    seed = data[0];
    data++;
    size--;

    /* Whole. */
    memset(&whole, 0, sizeof(whole));
    if (buf_append(&in, data, size, size + 1) != 0)
        abort();
    whole.end = fz_drain(&in, max, &whole, 1);
    whole.left = buf_len(&in);
    buf_free(&in);

    /* In pieces, as conn.c reads: reserve one read's room, append, decode. */
    memset(&pieces, 0, sizeof(pieces));
    for (off = 0; off < size && rc == 0;) {
        size_t n = chunk; /* piece 0: reads as large as conn.c's */
        if (piece) { /* vary the pieces a little */
            seed = seed * 1103515245u + 12345u;
            n = 1 + (piece + (seed >> 16)) % 64;
        }
        if (n > size - off)
            n = size - off;
        if (buf_reserve(&in, chunk, max + WIRE_HEADER_SIZE + chunk) != 0)
            abort(); /* conn.c's bound did not hold */
        memcpy(in.last, data + off, n);
        in.last += n;
        off += n;
        rc = fz_drain(&in, max, &pieces, 0);
    }
    pieces.end = rc;
    pieces.left = buf_len(&in);
    buf_free(&in);

    if (whole.n != pieces.n || whole.end != pieces.end)
        abort();
    if (whole.end == 0 && whole.left != pieces.left)
        abort();
    for (size_t i = 0; i < whole.n && i < FZ_MAX_FRAMES; i++)
        if (whole.sizes[i] != pieces.sizes[i] || whole.cases[i] != pieces.cases[i])
            abort();
    return 0;
}
