/* wire: skiff's frames on a byte stream.
 *
 * A frame is a 4-byte big-endian length and one protobuf Envelope
 * (skiff.proto). wire_decode() takes whole frames off the front of a buffer
 * that may hold part of a frame, one frame, or several; it never reads past
 * what is there and refuses a frame longer than the limit before any of it
 * arrives. Malformed input is an error code, never a crash. This module does
 * no I/O; conn.h moves frames over libuv streams.
 */
#ifndef SKIFF_WIRE_H
#define SKIFF_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "skiff_pb.h"

#define WIRE_HEADER_SIZE 4
#define WIRE_MAX_FRAME_DEFAULT ((size_t)4 << 20)

/* Takes the first whole frame off in and decodes it.
 * Returns 1 and sets *env (the caller frees it with wire_free) when a frame
 * was there; 0 when more bytes are needed (nothing consumed);
 * SKIFF_ETOOBIG when the frame announces more than max bytes;
 * SKIFF_EFRAME when the frame is empty, is not an Envelope, carries no
 * message, or holds a field number 0 (which protobuf-c would take, but not
 * take back once packed again); -ENOMEM. After an error the stream is
 * lost: close it. */
int wire_decode(buf_t *in, size_t max, Envelope **env);

/* The size of env's frame, header included. */
size_t wire_frame_size(const Envelope *env);

/* Writes env's frame to out, which must have wire_frame_size(env) bytes. */
void wire_pack(const Envelope *env, uint8_t *out);

/* Appends env's frame to out, growing it up to max bytes.
 * Returns 0, SKIFF_ETOOBIG when the frame alone passes max, or a code of
 * buf_reserve(). */
int wire_encode(const Envelope *env, buf_t *out, size_t max);

/* Frees an Envelope from wire_decode. NULL is fine. */
void wire_free(Envelope *env);

/* The name of an Envelope's message, "hello", "status", ..., for logs and
 * errors; "none" when none is set. */
const char *wire_msg_name(int msg_case);

/* Splits "HOST:PORT" or "[V6HOST]:PORT". Returns 0 or SKIFF_EINVAL. */
int wire_parse_hostport(const char *s, char *host, size_t hostlen, int *port);

#define WIRE_HOSTPORT_MAX 128

/* Splits "A[:P],B[:P],..." (a controller list: --controller, --host) into
 * at most max "HOST:PORT" entries, default_port where an entry has none
 * (0: every entry must have its port).
 * Returns 0 and sets *n, or SKIFF_EINVAL (an empty, too long or bad entry,
 * or more than max). */
int wire_parse_hostlist(const char *list, int default_port, char (*out)[WIRE_HOSTPORT_MAX],
                        size_t max, size_t *n);

#endif
