/* conn: a framed skiff connection on a libuv TCP stream, used by all three
 * binaries.
 *
 * A conn reads frames and hands each decoded Envelope to its on_message
 * callback; it writes Envelopes through a queue whose size is bounded
 * (conn_send refuses once max_pending bytes wait), and it closes on any
 * malformed or oversize frame, on a read error, or when no whole frame has
 * arrived for frame_timeout_ms (a silent peer, or one that sends half a frame
 * and stalls), or when a frame begun has not ended within partial_timeout_ms
 * (a peer allowed to be silent, that stalls inside a frame). Everything runs on the loop's thread; nothing blocks.
 *
 * With conn_use_tls, the connection runs TLS (tls.h) under the frames:
 * every byte on the socket is a TLS record, and every limit above applies
 * to the frames inside; the frame timeout also bounds the TLS handshake,
 * which comes before the first frame. A connecting conn reports on_connect
 * only once the handshake is done and the server verified; an accepting
 * one calls on_message only after its handshake. A failed handshake closes
 * the conn with SKIFF_ETLS, after the alert that tells the peer why has
 * been sent; conn_strerror() gives the reason.
 *
 * Ownership: the library frees a conn after calling on_close, which happens
 * exactly once for every conn, always from the loop after conn_close (or
 * after the library closed it). After conn_close, no more on_message calls
 * are made and conn_send refuses.
 */
#ifndef SKIFF_CONN_H
#define SKIFF_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/types.h>
#include <uv.h>

#include "skiff_pb.h"

typedef struct conn conn_t;

typedef struct conn_ops {
    /* A whole Envelope arrived; the callee owns env (wire_free).
     * Return 0, or a negative code to close the connection with it. */
    int (*on_message)(conn_t *c, Envelope *env);
    /* conn_connect's outcome: 0, or a negative code (on_close follows). */
    void (*on_connect)(conn_t *c, int status);
    /* The connection is closed; called once, before the conn is freed.
     * err is 0 after a plain conn_close(c, 0), or the reason. */
    void (*on_close)(conn_t *c, int err);
} conn_ops_t;

typedef struct conn_limits {
    size_t max_frame;           /* in either direction; 0: WIRE_MAX_FRAME_DEFAULT */
    size_t max_pending;         /* queued output bytes; 0: 4 * max_frame */
    uint64_t frame_timeout_ms;  /* 0: none */
    uint64_t partial_timeout_ms; /* a frame begun must end within it, even
                                  * while frame_timeout_ms is 0; 0: none */
} conn_limits_t;

/* A new conn on loop, not yet connected. data is the caller's. Returns NULL
 * when out of memory. */
conn_t *conn_create(uv_loop_t *loop, const conn_ops_t *ops,
                    const conn_limits_t *limits, void *data);

/* Makes c run TLS with ctx (a reference is taken; the context's policy
 * says whether it accepts or connects). Call before conn_accept or
 * conn_connect. Returns 0, or SKIFF_EINVAL once those were called. */
int conn_use_tls(conn_t *c, SSL_CTX *ctx);

/* Accepts a pending connection of server into c and starts reading.
 * Returns 0, or a negative code after which c is closing (on_close follows). */
int conn_accept(conn_t *c, uv_stream_t *server);

/* Connects c to "HOST:PORT" (resolved asynchronously) and starts reading;
 * on_connect reports the outcome, and a failure closes c. Send nothing
 * before on_connect reports 0. Returns 0, or a negative code when nothing
 * was started (close c with conn_close then). */
int conn_connect(conn_t *c, const char *hostport);

/* "IP:PORT" ("[IPv6]:PORT") as a socket address, for a listener. Returns 0,
 * or SKIFF_EINVAL when it is not one (a host name included). */
int conn_parse_addr(const char *hostport, struct sockaddr_storage *out);

/* Queues env. Returns 0; SKIFF_ELIMIT when the queue would pass max_pending
 * or the frame passes max_frame (nothing queued: the caller decides, usually
 * to close); SKIFF_ECLOSED after conn_close. */
int conn_send(conn_t *c, const Envelope *env);

/* Queues a frame already packed with wire_pack (header included); the
 * bytes are copied. Returns as conn_send. */
int conn_send_frame(conn_t *c, const uint8_t *frame, size_t len);

/* Sends an Error with this code and message (printf-style) as the reply to
 * request id. Returns as conn_send. */
int conn_send_error(conn_t *c, uint64_t id, ErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Closes c once its queued output is flushed (or at once when err != 0);
 * on_close(c, err) follows from the loop. Safe to call more than once and
 * from inside on_message. */
void conn_close(conn_t *c, int err);

/* Rearms the frame timeout; 0 turns it off. */
void conn_set_frame_timeout(conn_t *c, uint64_t ms);

void *conn_data(const conn_t *c);
void conn_set_data(conn_t *c, void *data);
/* "ADDRESS:PORT" of the peer, or "?" before it is known. */
const char *conn_peer(const conn_t *c);
size_t conn_pending(const conn_t *c);
/* What the peer has not taken yet: conn_pending plus the bytes the kernel
 * still holds in the socket's send queue. */
size_t conn_unsent(const conn_t *c);
int conn_is_closing(const conn_t *c);
/* The local address the connection uses ("127.0.0.2"), or "" before known. */
const char *conn_local_addr(const conn_t *c);
/* The peer's verified certificate, after the TLS handshake (the conn keeps
 * it), or NULL. */
X509 *conn_peer_cert(const conn_t *c);
/* The text of err, a code this conn closed with: for SKIFF_ETLS, the
 * handshake's reason ("the peer's certificate is revoked"). */
const char *conn_strerror(const conn_t *c, int err);

#endif
