/* buf: the one byte buffer of skiff, after nginx's ngx_buf_t.
 *
 * The allocation [start, end) is kept apart from the unread data [pos, last):
 * a reader consumes by advancing pos, a writer appends at last. Used for
 * framing (wire.c), for proxying (agent/lb.c) and for collecting HTTP bodies
 * (agent/docker.c). A buffer never grows past the limit its owner passes in,
 * which is how every queue in skiff stays bounded.
 */
#ifndef SKIFF_BUF_H
#define SKIFF_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct buf {
    char *start; /* allocation */
    char *end;
    char *pos;   /* unread data */
    char *last;
} buf_t;

/* An empty buffer with nothing allocated. */
#define BUF_INIT { NULL, NULL, NULL, NULL }

/* Allocates cap bytes. Returns 0 or -ENOMEM. */
int buf_init(buf_t *b, size_t cap);
void buf_free(buf_t *b);

static inline size_t buf_len(const buf_t *b) { return (size_t)(b->last - b->pos); }
static inline size_t buf_room(const buf_t *b) { return (size_t)(b->end - b->last); }
static inline size_t buf_cap(const buf_t *b) { return (size_t)(b->end - b->start); }

/* Drops n unread bytes (n <= buf_len). When nothing is left unread, pos and
 * last go back to start, so a drained buffer is reused from its beginning. */
void buf_consume(buf_t *b, size_t n);

/* Moves the unread data to the start of the allocation. */
void buf_compact(buf_t *b);

/* Makes room for n more bytes after last: compacts, then grows the allocation
 * (doubling) but never past max bytes in all. Returns 0, -ENOBUFS when the
 * unread data plus n would pass max, or -ENOMEM. */
int buf_reserve(buf_t *b, size_t n, size_t max);

/* Appends n bytes, reserving as buf_reserve does. Returns 0 or a negative
 * error code from buf_reserve. */
int buf_append(buf_t *b, const void *data, size_t n, size_t max);

#endif
