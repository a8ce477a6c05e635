/* buf: see buf.h. */
#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int buf_init(buf_t *b, size_t cap)
{
    b->start = cap ? malloc(cap) : NULL;
    if (cap && !b->start)
        return -ENOMEM;
    b->end = cap ? b->start + cap : b->start;
    b->pos = b->last = b->start;
    return 0;
}

void buf_free(buf_t *b)
{
    free(b->start);
    b->start = b->end = b->pos = b->last = NULL;
}

void buf_consume(buf_t *b, size_t n)
{
    if (n == 0)
        return; /* pos may be NULL: NULL + 0 is undefined */
    b->pos += n;
    if (b->pos >= b->last)
        b->pos = b->last = b->start;
}

void buf_compact(buf_t *b)
{
    size_t len = buf_len(b);

    if (b->pos == b->start)
        return;
    if (len)
        memmove(b->start, b->pos, len);
    b->pos = b->start;
    b->last = b->start + len;
}

int buf_reserve(buf_t *b, size_t n, size_t max)
{
    size_t len = buf_len(b);
    size_t cap;
    char *p;

    if (buf_room(b) >= n)
        return 0;
    if (n > max || len > max - n)
        return -ENOBUFS;
    buf_compact(b);
    if (buf_room(b) >= n)
        return 0;
    cap = buf_cap(b) ? buf_cap(b) : 256;
    if (cap > max) /* the first allocation, too, stays within max */
        cap = max;
    while (cap < len + n)
        cap = cap > max / 2 ? max : cap * 2;
    p = realloc(b->start, cap);
    if (!p)
        return -ENOMEM;
    b->start = b->pos = p;
    b->last = p + len;
    b->end = p + cap;
    return 0;
}

int buf_append(buf_t *b, const void *data, size_t n, size_t max)
{
    int rc = buf_reserve(b, n, max);

    if (rc)
        return rc;
    if (n) { /* last may be NULL: NULL + 0 is undefined */
        memcpy(b->last, data, n);
        b->last += n;
    }
    return 0;
}
