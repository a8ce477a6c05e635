/* events: what happened in the cluster, kept in a bounded ring, and the
 * readers that follow it (`skiff events` over the wire, the HTTP API's
 * Server-Sent Events).
 *
 * An event enters the ring when the controller decides it, with the next
 * sequence number, and becomes visible to readers only once the commit that
 * covers it is done (events_publish), like every other message the
 * controller sends. A reader is a cursor into the ring with a filter: it
 * never holds events of its own. A reader that takes them slower than they
 * come lags behind; what leaves the ring before it got there is counted and
 * told to it once (events_reader_ops.dropped), so memory stays bounded by
 * the ring whatever the readers do.
 *
 * Pure: no I/O, no clock of its own (times come in as arguments).
 */
#ifndef SKIFF_EVENTS_H
#define SKIFF_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "skiff_pb.h"

typedef struct events events_t;
typedef struct events_reader events_reader_t;

typedef struct events_reader_ops {
    /* Takes one event. Return 0; SKIFF_ELIMIT when the reader cannot take
     * it now (it is offered again at the next pump); another negative code
     * to stop the reader (it is closed). */
    int (*send)(void *arg, const Event *ev);
    /* count events were lost to this reader. Return as send. */
    int (*dropped)(void *arg, uint64_t count);
    /* Every event up to the reader's until_ms was sent: the reader is
     * closed after this returns. */
    void (*end)(void *arg);
} events_reader_ops_t;

/* A ring of capacity events (at least 16). NULL when out of memory. */
events_t *events_create(size_t capacity);
/* Frees the ring; its readers must be closed first. */
void events_free(events_t *ev);

/* Sets the sequence number of the next event (after a restart). */
void events_set_next_seq(events_t *ev, uint64_t seq);
/* Sets e's seq (the next one) and keeps a packed copy of it (e stays the
 * caller's), evicting the oldest when full. The event is not visible until
 * published. Returns 0, or -ENOMEM (the seq is used all the same). */
int events_add(events_t *ev, Event *e);
/* Keeps a copy of an event loaded from the store, visible at once (seq
 * kept); one out of order, or out of memory, is left out. */
void events_load(events_t *ev, const Event *e);
/* Events up to seq are committed: readers may see them. */
void events_publish(events_t *ev, uint64_t seq);
/* The seq of the last event added; 0 when none. */
uint64_t events_last_seq(const events_t *ev);
size_t events_count(const events_t *ev);

/* 1 when e passes the request's filters (times apart). */
int events_match(const EventsRequest *req, const Event *e);

/* A reader of the published events with the request's filters, starting
 * with those at or after since_ms (0: only those published from now on).
 * The request is copied. NULL when out of memory. */
events_reader_t *events_follow(events_t *ev, const EventsRequest *req,
                               const events_reader_ops_t *ops, void *arg);
/* Closes a reader; no callback of it is called again. */
void events_reader_close(events_reader_t *r);

/* Offers every reader what it may see and can take; ends the readers whose
 * until_ms has passed (now_ms: Unix ms). */
void events_pump(events_t *ev, int64_t now_ms);

#endif
