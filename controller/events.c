/* events: see events.h. The ring is an array of capacity slots holding
 * events in seq order from head, each packed (its seq and time beside the
 * bytes, for the searches): an unpacked event is a dozen allocations, and
 * a ring of 50,000 of them was a tenth of a 100,000-replica controller's
 * memory. An event is unpacked only while a reader looks at it. Readers
 * are a list, each a cursor (the next seq it wants) and a filter. */
#include "events.h"
#include "errors.h"
#include "pbutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#define EVENTS_MIN_CAPACITY 16

struct events_reader {
    events_t *ev;
    EventsRequest *req;       /* owned copy */
    const events_reader_ops_t *ops;
    void *arg;
    uint64_t cursor;          /* the next seq to offer */
    uint64_t dropped;         /* matching events evicted before offered */
    int closed;               /* closed inside a callback: freed after it */
    events_reader_t *prev, *next;
};

typedef struct events_slot {
    uint64_t seq;
    int64_t time_ms;
    uint8_t *data;            /* the packed Event */
    size_t len;
} events_slot_t;

struct events {
    events_slot_t *ring;
    size_t cap, head, n;
    uint64_t next_seq;        /* of the next event added */
    uint64_t published;       /* events up to it may be seen */
    events_reader_t *readers;
    int pumping;
};

events_t *events_create(size_t capacity)
{
    events_t *ev = calloc(1, sizeof(*ev));

    if (!ev)
        return NULL;
    ev->cap = capacity < EVENTS_MIN_CAPACITY ? EVENTS_MIN_CAPACITY : capacity;
    ev->ring = calloc(ev->cap, sizeof(*ev->ring));
    if (!ev->ring) {
        free(ev);
        return NULL;
    }
    ev->next_seq = 1;
    return ev;
}

static void events_reader_free(events_reader_t *r)
{
    DL_DELETE(r->ev->readers, r);
    pb_free(r->req);
    free(r);
}

void events_free(events_t *ev)
{
    if (!ev)
        return;
    while (ev->readers)
        events_reader_free(ev->readers);
    for (size_t i = 0; i < ev->n; i++)
        free(ev->ring[(ev->head + i) % ev->cap].data);
    free(ev->ring);
    free(ev);
}

void events_set_next_seq(events_t *ev, uint64_t seq)
{
    if (seq > ev->next_seq)
        ev->next_seq = seq;
}

static const events_slot_t *events_at(const events_t *ev, size_t i)
{
    return &ev->ring[(ev->head + i) % ev->cap];
}

/* The slot's event, unpacked (pb_free it); NULL when out of memory. */
static Event *events_unpack(const events_slot_t *slot)
{
    return (Event *)protobuf_c_message_unpack(&PB_DESC_Event, NULL, slot->len,
                                              slot->data);
}

int events_match(const EventsRequest *req, const Event *e)
{
    int ok;

    if (req->n_types) {
        ok = 0;
        for (size_t i = 0; i < req->n_types && !ok; i++)
            ok = strcmp(req->types[i], e->type) == 0;
        if (!ok)
            return 0;
    }
    if (req->n_services) {
        ok = 0;
        for (size_t i = 0; i < req->n_services && !ok; i++)
            ok = strcmp(req->services[i], e->service) == 0 ||
                 (strcmp(e->type, "service") == 0 && strcmp(req->services[i], e->name) == 0);
        if (!ok)
            return 0;
    }
    if (req->n_nodes) {
        ok = 0;
        for (size_t i = 0; i < req->n_nodes && !ok; i++)
            ok = strcmp(req->nodes[i], e->node) == 0 ||
                 (strcmp(e->type, "node") == 0 && strcmp(req->nodes[i], e->name) == 0);
        if (!ok)
            return 0;
    }
    return 1;
}

static int events_in_time(const EventsRequest *req, const Event *e)
{
    return e->time_ms >= req->since_ms && (!req->until_ms || e->time_ms <= req->until_ms);
}

/* The oldest event leaves: readers that wanted it, and would have taken
 * it, lost it. */
static void events_evict(events_t *ev)
{
    events_slot_t *old = &ev->ring[ev->head];
    Event *e = NULL;

    for (events_reader_t *r = ev->readers; r; r = r->next) {
        if (r->cursor > old->seq)
            continue;
        if (!e)
            e = events_unpack(old);
        /* out of memory: counted as lost, which it is to this reader */
        if (!e || (events_match(r->req, e) && events_in_time(r->req, e)))
            r->dropped++;
        r->cursor = old->seq + 1;
    }
    pb_free(e);
    free(old->data);
    memset(old, 0, sizeof(*old));
    ev->head = (ev->head + 1) % ev->cap;
    ev->n--;
}

/* Keeps a packed copy of e at the end. Returns 0 or -ENOMEM. */
static int events_push(events_t *ev, const Event *e)
{
    size_t len = protobuf_c_message_get_packed_size(&e->base);
    uint8_t *data = malloc(len ? len : 1);
    events_slot_t *slot;

    if (!data)
        return -ENOMEM;
    protobuf_c_message_pack(&e->base, data);
    if (ev->n == ev->cap)
        events_evict(ev);
    slot = &ev->ring[(ev->head + ev->n) % ev->cap];
    *slot = (events_slot_t){ .seq = e->seq, .time_ms = e->time_ms, .data = data, .len = len };
    ev->n++;
    return 0;
}

int events_add(events_t *ev, Event *e)
{
    e->seq = ev->next_seq++;
    return events_push(ev, e);
}

void events_load(events_t *ev, const Event *e)
{
    if (ev->n && e->seq <= events_at(ev, ev->n - 1)->seq)
        return; /* out of order: not ours to keep */
    if (events_push(ev, e))
        return;
    if (e->seq >= ev->next_seq)
        ev->next_seq = e->seq + 1;
    ev->published = e->seq;
}

void events_publish(events_t *ev, uint64_t seq)
{
    if (seq > ev->published)
        ev->published = seq;
}

uint64_t events_last_seq(const events_t *ev)
{
    return ev->next_seq - 1;
}

size_t events_count(const events_t *ev)
{
    return ev->n;
}

/* The index of the first event with seq >= s (ev->n when none). */
static size_t events_find(const events_t *ev, uint64_t s)
{
    size_t lo = 0, hi = ev->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (events_at(ev, mid)->seq < s)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

events_reader_t *events_follow(events_t *ev, const EventsRequest *req,
                               const events_reader_ops_t *ops, void *arg)
{
    events_reader_t *r = calloc(1, sizeof(*r));

    if (!r || !(r->req = pb_dup(req))) {
        free(r);
        return NULL;
    }
    r->ev = ev;
    r->ops = ops;
    r->arg = arg;
    if (req->since_ms) {
        /* the first event at or after since (times grow with seqs, but
         * for a clock stepped back: every later one is looked at anyway) */
        size_t i = 0;
        while (i < ev->n && events_at(ev, i)->time_ms < req->since_ms)
            i++;
        r->cursor = i < ev->n ? events_at(ev, i)->seq : ev->next_seq;
    } else {
        r->cursor = ev->published + 1;
    }
    DL_APPEND(ev->readers, r);
    return r;
}

void events_reader_close(events_reader_t *r)
{
    if (r->ev->pumping)
        r->closed = 1;
    else
        events_reader_free(r);
}

/* Offers r what it may see. Returns 0 while it goes on, 1 when it is done
 * (ended or failed) and must be freed. */
static int events_pump_one(events_t *ev, events_reader_t *r, int64_t now_ms)
{
    size_t i;
    int rc;

    if (r->dropped) {
        rc = r->ops->dropped(r->arg, r->dropped);
        if (rc == SKIFF_ELIMIT)
            return 0;
        if (rc)
            return 1;
        r->dropped = 0;
    }
    for (i = events_find(ev, r->cursor); i < ev->n && !r->closed; i++) {
        const events_slot_t *slot = events_at(ev, i);
        Event *e;

        if (slot->seq > ev->published)
            break;
        if (r->req->until_ms && slot->time_ms > r->req->until_ms) {
            r->ops->end(r->arg);
            return 1;
        }
        if (slot->time_ms >= r->req->since_ms) {
            if (!(e = events_unpack(slot)))
                return 0; /* out of memory: offered again at the next pump */
            rc = events_match(r->req, e) ? r->ops->send(r->arg, e) : 0;
            pb_free(e);
            if (rc == SKIFF_ELIMIT)
                return 0;
            if (rc)
                return 1;
        }
        r->cursor = slot->seq + 1;
    }
    if (r->closed)
        return 1;
    /* past until, with everything decided so far published and offered */
    if (r->req->until_ms && now_ms > r->req->until_ms && r->cursor > ev->published &&
        ev->published == events_last_seq(ev)) {
        r->ops->end(r->arg);
        return 1;
    }
    return 0;
}

void events_pump(events_t *ev, int64_t now_ms)
{
    events_reader_t *r, *tmp;

    ev->pumping = 1;
    DL_FOREACH_SAFE(ev->readers, r, tmp) {
        if (r->closed || events_pump_one(ev, r, now_ms))
            r->closed = 1;
    }
    ev->pumping = 0;
    DL_FOREACH_SAFE(ev->readers, r, tmp)
        if (r->closed)
            events_reader_free(r);
}
