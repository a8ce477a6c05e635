/* Unit tests of controller/events (the ring and its readers) and
 * proto/event (building and printing events). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "errors.h"
#include "event.h"
#include "events.h"
#include "pbutil.h"

/* A reader as a test sees it: what it got, and what it does next. */
typedef struct sink {
    char got[64][64];  /* "seq:name" */
    int n;
    uint64_t dropped;
    int drops_told;
    int ended;
    int room;          /* events it takes before answering ELIMIT; -1: any */
    int fail;          /* answer this from send */
    events_reader_t *self;
    int close_self;    /* close its own reader from inside send */
} sink_t;

static int sink_send(void *arg, const Event *e)
{
    sink_t *s = arg;

    if (s->fail)
        return s->fail;
    if (s->room == 0)
        return SKIFF_ELIMIT;
    if (s->room > 0)
        s->room--;
    if (s->n < 64)
        snprintf(s->got[s->n], sizeof(s->got[0]), "%llu:%s", (unsigned long long)e->seq,
                 e->name);
    s->n++;
    if (s->close_self)
        events_reader_close(s->self);
    return 0;
}

static int sink_dropped(void *arg, uint64_t n)
{
    sink_t *s = arg;

    if (s->room == 0)
        return SKIFF_ELIMIT;
    s->dropped += n;
    s->drops_told++;
    return 0;
}

static void sink_end(void *arg)
{
    ((sink_t *)arg)->ended++;
}

static const events_reader_ops_t sink_ops = { sink_send, sink_dropped, sink_end };

static uint64_t add(events_t *ev, const char *type, const char *name, const char *service,
                    const char *node, int64_t t)
{
    Event *e = event_new(type, "test", name, name, t);

    assert_non_null(e);
    if (service)
        assert_int_equal(event_set_service(e, service), 0);
    if (node)
        assert_int_equal(event_set_node(e, node), 0);
    {
        uint64_t seq;
        assert_int_equal(events_add(ev, e), 0);
        seq = e->seq;
        pb_free(e);
        return seq;
    }
}

static void test_publish_and_follow(void **state)
{
    events_t *ev = events_create(100);
    EventsRequest req = PB_EVENTS_REQUEST_INIT;
    sink_t s = { .room = -1 };
    events_reader_t *r;

    add(ev, "service", "old", NULL, NULL, 1000);
    events_publish(ev, events_last_seq(ev));
    /* since 0: only what comes from now on */
    r = events_follow(ev, &req, &sink_ops, &s);
    assert_non_null(r);
    add(ev, "service", "web", NULL, NULL, 2000);
    events_pump(ev, 2000);
    assert_int_equal(s.n, 0); /* not committed yet */
    events_publish(ev, events_last_seq(ev));
    events_pump(ev, 2000);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.got[0], "2:web");
    events_pump(ev, 2000);
    assert_int_equal(s.n, 1); /* nothing twice */
    events_reader_close(r);
    events_free(ev);
    (void)state;
}

static void test_filters(void **state)
{
    events_t *ev = events_create(100);
    EventsRequest req = PB_EVENTS_REQUEST_INIT;
    char *types[] = { "task", "node" }, *services[] = { "web" };
    sink_t s = { .room = -1 };

    add(ev, "service", "web", NULL, NULL, 1000);       /* a service event of web */
    add(ev, "task", "web.1", "web", "n1", 1001);
    add(ev, "task", "db.1", "db", "n1", 1002);
    add(ev, "node", "n1", NULL, NULL, 1003);
    add(ev, "task", "web.2", "web", "n2", 1004);
    events_publish(ev, events_last_seq(ev));

    req.since_ms = 1;
    req.types = types;
    req.n_types = 2;
    req.services = services;
    req.n_services = 1;
    events_follow(ev, &req, &sink_ops, &s);
    events_pump(ev, 5000);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.got[0], "2:web.1");
    assert_string_equal(s.got[1], "5:web.2");

    {
        sink_t n = { .room = -1 };
        char *nodes[] = { "n1" };
        EventsRequest q = PB_EVENTS_REQUEST_INIT;
        q.since_ms = 1;
        q.nodes = nodes;
        q.n_nodes = 1;
        events_follow(ev, &q, &sink_ops, &n);
        events_pump(ev, 5000);
        assert_int_equal(n.n, 3); /* web.1, db.1, the node itself */
        assert_string_equal(n.got[2], "4:n1");
    }
    events_free(ev); /* frees the readers left */
    (void)state;
}

static void test_since_until(void **state)
{
    events_t *ev = events_create(100);
    EventsRequest req = PB_EVENTS_REQUEST_INIT;
    sink_t s = { .room = -1 }, live = { .room = -1 };

    for (int i = 0; i < 10; i++) {
        char name[16];
        snprintf(name, sizeof(name), "e%d", i);
        add(ev, "service", name, NULL, NULL, 1000 + i * 100);
    }
    events_publish(ev, events_last_seq(ev));
    req.since_ms = 1250;
    req.until_ms = 1600;
    events_follow(ev, &req, &sink_ops, &s);
    events_pump(ev, 5000);
    assert_int_equal(s.n, 4); /* 1300, 1400, 1500, 1600 */
    assert_string_equal(s.got[0], "4:e3");
    assert_string_equal(s.got[3], "7:e6");
    assert_int_equal(s.ended, 1);

    /* until in the future: follows, ends once it has passed */
    req.since_ms = 1850;
    req.until_ms = 3000;
    events_follow(ev, &req, &sink_ops, &live);
    events_pump(ev, 2000);
    assert_int_equal(live.n, 1); /* e9, at 1900 */
    assert_int_equal(live.ended, 0);
    add(ev, "service", "later", NULL, NULL, 2500);
    events_publish(ev, events_last_seq(ev));
    events_pump(ev, 2600);
    assert_int_equal(live.n, 2);
    assert_int_equal(live.ended, 0);
    events_pump(ev, 3001);
    assert_int_equal(live.ended, 1);
    events_free(ev);
    (void)state;
}

static void test_slow_reader_drops(void **state)
{
    events_t *ev = events_create(16);
    EventsRequest req = PB_EVENTS_REQUEST_INIT;
    char *services[] = { "web" };
    sink_t s = { .room = 2 };

    req.services = services;
    req.n_services = 1;
    events_follow(ev, &req, &sink_ops, &s);
    /* 40 events, 30 of them for web; the reader takes 2, then is full */
    for (int i = 0; i < 40; i++)
        add(ev, "task", "x", i % 4 == 3 ? "db" : "web", "n1", 1000 + i);
    events_publish(ev, events_last_seq(ev));
    assert_int_equal(events_count(ev), 16);
    events_pump(ev, 5000);
    /* 24 evicted, 18 of them web: told first; then 2 of the 12 kept */
    assert_int_equal(s.drops_told, 1);
    assert_int_equal(s.dropped, 18);
    assert_int_equal(s.n, 2);
    s.room = -1;
    events_pump(ev, 5000);
    assert_int_equal(s.drops_told, 1);
    assert_int_equal(s.n, 12);

    /* a reader that cannot take anything never grows anything */
    {
        sink_t stuck = { .room = 0 };
        EventsRequest all = PB_EVENTS_REQUEST_INIT;
        events_follow(ev, &all, &sink_ops, &stuck);
        for (int i = 0; i < 1000; i++)
            add(ev, "task", "y", "web", "n1", 2000 + i);
        events_publish(ev, events_last_seq(ev));
        events_pump(ev, 5000);
        assert_int_equal(events_count(ev), 16);
        stuck.room = -1;
        events_pump(ev, 5000);
        assert_int_equal(stuck.dropped, 1000 - 16);
        assert_int_equal(stuck.n, 16);
    }
    events_free(ev);
    (void)state;
}

static void test_reader_failures(void **state)
{
    events_t *ev = events_create(16);
    EventsRequest req = PB_EVENTS_REQUEST_INIT;
    sink_t failing = { .room = -1, .fail = SKIFF_ECLOSED };
    sink_t closer = { .room = -1, .close_self = 1 };
    sink_t ok = { .room = -1 };

    events_follow(ev, &req, &sink_ops, &failing);
    closer.self = events_follow(ev, &req, &sink_ops, &closer);
    events_follow(ev, &req, &sink_ops, &ok);
    add(ev, "node", "a", NULL, NULL, 1);
    add(ev, "node", "b", NULL, NULL, 2);
    events_publish(ev, events_last_seq(ev));
    events_pump(ev, 10);
    assert_int_equal(closer.n, 1); /* closed itself after the first */
    assert_int_equal(ok.n, 2);
    add(ev, "node", "c", NULL, NULL, 3);
    events_publish(ev, events_last_seq(ev));
    events_pump(ev, 10);
    assert_int_equal(ok.n, 3);
    assert_int_equal(closer.n, 1);
    events_free(ev);
    (void)state;
}

static void test_load_and_seq(void **state)
{
    events_t *ev = events_create(16);
    EventsRequest req = PB_EVENTS_REQUEST_INIT;
    sink_t s = { .room = -1 };

    for (uint64_t i = 100; i < 104; i++) {
        Event *e = event_new("node", "up", "id", "n", 1000 + (int64_t)i);
        e->seq = i;
        events_load(ev, e);
        pb_free(e);
    }
    {
        Event *e = event_new("node", "up", "id", "late", 1);
        e->seq = 50; /* out of order */
        events_load(ev, e);
        pb_free(e);
    }
    assert_int_equal(events_count(ev), 4);
    assert_int_equal(add(ev, "node", "new", NULL, NULL, 2000), 104);
    req.since_ms = 1;
    events_follow(ev, &req, &sink_ops, &s);
    events_pump(ev, 5000);
    assert_int_equal(s.n, 4); /* the loaded ones; 104 is not published */
    events_free(ev);
    (void)state;
}

static void test_event_format(void **state)
{
    Event *e = event_new("task", "running", "abc", "web.2", 1765029001123LL);
    char line[256];

    assert_int_equal(event_set_service(e, "web"), 0);
    assert_int_equal(event_set_node(e, "n1"), 0);
    assert_int_equal(event_attr(e, "from", "%s", "starting"), 0);
    assert_int_equal(event_attr(e, "slot", "%u", 2), 0);
    assert_string_equal(event_attr_get(e, "slot"), "2");
    assert_null(event_attr_get(e, "nope"));
    event_format_line(e, line, sizeof(line));
    assert_string_equal(line, "2025-12-06T13:50:01.123Z task running web.2 (node=n1, from=starting, slot=2)");
    pb_set_str(&e->message, "all good");
    event_format_line(e, line, sizeof(line));
    assert_string_equal(line, "2025-12-06T13:50:01.123Z task running web.2 (node=n1, from=starting, slot=2): all good");
    event_format_line(e, line, 20); /* truncated, never overrun */
    assert_int_equal(strlen(line), 19);
    pb_free(e);

    e = event_new("node", "down", "id", "n1", 0);
    event_set_node(e, "n1");
    event_format_line(e, line, sizeof(line));
    assert_string_equal(line, "1970-01-01T00:00:00.000Z node down n1");
    pb_free(e);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_and_follow),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_since_until),
        cmocka_unit_test(test_slow_reader_drops),
        cmocka_unit_test(test_reader_failures),
        cmocka_unit_test(test_load_and_seq),
        cmocka_unit_test(test_event_format),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
