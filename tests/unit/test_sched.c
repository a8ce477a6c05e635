/* Unit tests for the scheduler (controller/sched.c), in the manner of
 * Nomad's Harness: each case is a small cluster built in memory, a request,
 * and the placement and reason it must give. No I/O.
 *
 * Nodes are named a, b, c, ... in the tables; a placement is written as the
 * node name of each task in order, "-" for a task that fits nowhere.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler.h"

#define MAX_NODES 12
#define MAX_LABELS 4
#define GB (1024LL * 1024 * 1024)
#define MB (1024LL * 1024)
#define CPU (1000000000LL) /* one CPU in nano-CPUs */

/* A node of a table. Defaults (zero) are: ready, active, no resources known. */
typedef struct node_def {
    const char *name;
    const char *labels;  /* "zone=eu,disk=ssd": the agent's */
    const char *spec;    /* the same, set on the controller */
    int down, drain;
    int64_t cpu, mem, cpu_res, mem_res;
    uint32_t tasks, service_tasks;
} node_def_t;

typedef struct sched_case {
    const char *name;
    node_def_t nodes[MAX_NODES];  /* up to the first without a name */
    const char *constraints[4];
    int64_t cpu, mem;
    size_t count;
    const char *want;    /* "a b c -" */
    const char *reason;  /* NULL: every task fits, the reason stays empty */
} sched_case_t;

/* The cluster a table's nodes describe, with storage for ids and labels. */
typedef struct cluster {
    sched_node_t nodes[MAX_NODES];
    sched_label_t labels[MAX_NODES][MAX_LABELS];
    sched_label_t spec_labels[MAX_NODES][MAX_LABELS];
    char label_text[MAX_NODES][128];
    char spec_text[MAX_NODES][128];
    char ids[MAX_NODES][32];
    size_t n;
} cluster_t;

/* "k=v,k2=v2" in text (changed in place) into labels; returns how many. */
static size_t labels_build(sched_label_t *labels, char *text, size_t textlen, const char *def)
{
    char *save = NULL, *tok;
    size_t n = 0;

    if (!def)
        return 0;
    snprintf(text, textlen, "%s", def);
    for (tok = strtok_r(text, ",", &save); tok && n < MAX_LABELS;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');

        assert_non_null(eq);
        *eq = '\0';
        labels[n++] = (sched_label_t){ tok, eq + 1 };
    }
    return n;
}

static void cluster_build(cluster_t *cl, const node_def_t *defs)
{
    memset(cl, 0, sizeof(*cl));
    for (size_t i = 0; i < MAX_NODES && defs[i].name; i++, cl->n++) {
        sched_node_t *nd = &cl->nodes[i];

        snprintf(cl->ids[i], sizeof(cl->ids[i]), "id-%s", defs[i].name);
        nd->id = cl->ids[i];
        nd->name = defs[i].name;
        nd->ready = !defs[i].down;
        nd->active = !defs[i].drain;
        nd->cpu_total = defs[i].cpu;
        nd->mem_total = defs[i].mem;
        nd->cpu_reserved = defs[i].cpu_res;
        nd->mem_reserved = defs[i].mem_res;
        nd->tasks = defs[i].tasks;
        nd->service_tasks = defs[i].service_tasks;
        nd->labels = cl->labels[i];
        nd->n_labels = labels_build(cl->labels[i], cl->label_text[i],
                                    sizeof(cl->label_text[i]), defs[i].labels);
        nd->spec_labels = cl->spec_labels[i];
        nd->n_spec_labels = labels_build(cl->spec_labels[i], cl->spec_text[i],
                                         sizeof(cl->spec_text[i]), defs[i].spec);
    }
}

/* "a b -" for out[0..count). */
static void placement_text(const cluster_t *cl, const int *out, size_t count, char *buf,
                           size_t len)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < count && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? " " : "",
                                 out[i] < 0 ? "-" : cl->nodes[out[i]].name);
}

static void parse_constraints(const char *const *texts, constraint_t *out, size_t *n)
{
    for (*n = 0; *n < 4 && texts[*n]; (*n)++)
        assert_int_equal(constraint_parse(texts[*n], &out[*n]), 0);
}

/* ------------------------------------------------------------ the table */

static const sched_case_t cases[] = {
    {
        .name = "spread: 6 tasks on 3 nodes, 2 each, in node order",
        .nodes = { { "a" }, { "b" }, { "c" } },
        .count = 6,
        .want = "a b c a b c",
    },
    {
        .name = "spread: a node holding 2 of the service waits until the others catch up",
        .nodes = { { "a", .tasks = 2, .service_tasks = 2 }, { "b" }, { "c" } },
        .count = 5,
        .want = "b c b c a",
    },
    {
        .name = "spread: other services' tasks break ties between equal service counts",
        .nodes = { { "a", .tasks = 5 }, { "b", .tasks = 1 }, { "c", .tasks = 3 } },
        .count = 3,
        .want = "b c a",
    },
    {
        .name = "spread: the service's own count comes before the total",
        .nodes = { { "a", .tasks = 9 }, { "b", .tasks = 1, .service_tasks = 1 } },
        .count = 2,
        .want = "a b",
    },
    {
        .name = "nothing asked, nothing placed",
        .nodes = { { "a" } },
        .count = 0,
        .want = "",
    },
    {
        .name = "not ready and drained nodes are skipped",
        .nodes = { { "a", .down = 1 }, { "b", .drain = 1 }, { "c" } },
        .count = 3,
        .want = "c c c",
    },
    {
        .name = "reason: one node not ready, one drained",
        .nodes = { { "a", .down = 1 }, { "b", .drain = 1 } },
        .count = 2,
        .want = "- -",
        .reason = "no suitable node (1 node not ready, 1 node drained)",
    },
    {
        .name = "reason: plurals; a down node that is also drained counts as not ready",
        .nodes = { { "a", .down = 1 }, { "b", .down = 1, .drain = 1 }, { "c", .drain = 1 },
                   { "d", .drain = 1 }, { "e", .drain = 1 } },
        .count = 1,
        .want = "-",
        .reason = "no suitable node (2 nodes not ready, 3 nodes drained)",
    },
    {
        .name = "reason: no nodes at all",
        .nodes = { { NULL } },
        .count = 2,
        .want = "- -",
        .reason = "no suitable node (no nodes in the cluster)",
    },
    {
        .name = "constraint node.name==",
        .nodes = { { "a" }, { "b" }, { "c" } },
        .constraints = { "node.name==b" },
        .count = 2,
        .want = "b b",
    },
    {
        .name = "constraint node.name!=",
        .nodes = { { "a" }, { "b" }, { "c" } },
        .constraints = { "node.name != a" },
        .count = 4,
        .want = "b c b c",
    },
    {
        .name = "constraint node.id==",
        .nodes = { { "a" }, { "b" }, { "c" } },
        .constraints = { "node.id==id-c" },
        .count = 1,
        .want = "c",
    },
    {
        .name = "constraint node.labels.K==V",
        .nodes = { { "a", "zone=eu" }, { "b", "zone=us" }, { "c", "disk=ssd,zone=eu" } },
        .constraints = { "node.labels.zone==eu" },
        .count = 4,
        .want = "a c a c",
    },
    {
        .name = "constraint node.labels.K!=V: a node without the label satisfies it",
        .nodes = { { "a", "zone=eu" }, { "b", "zone=us" }, { "c" } },
        .constraints = { "node.labels.zone!=eu" },
        .count = 4,
        .want = "b c b c",
    },
    {
        .name = "constraint node.labels.K==V: a node without the label fails it",
        .nodes = { { "a" }, { "b", "disk=ssd" }, { "c", "zone=" } },
        .constraints = { "node.labels.zone==eu" },
        .count = 1,
        .want = "-",
        .reason = "no suitable node (3 nodes fail node.labels.zone==eu)",
    },
    {
        .name = "constraint node.labels.K==V: labels set on the controller count",
        .nodes = { { "a" }, { "b", .spec = "zone=edge" }, { "c", "zone=edge" } },
        .constraints = { "node.labels.zone==edge" },
        .count = 4,
        .want = "b c b c",
    },
    {
        .name = "constraint node.labels.K==V: the controller's label wins over the agent's",
        .nodes = { { "a", "zone=edge", "zone=core" }, { "b", "zone=core", "zone=edge" },
                   { "c", "zone=edge" } },
        .constraints = { "node.labels.zone==edge" },
        .count = 2,
        .want = "b c",
    },
    {
        .name = "constraint engine.labels.K==V: the agent's labels alone",
        .nodes = { { "a", "zone=edge", "zone=core" }, { "b", .spec = "zone=edge" },
                   { "c", "zone=core" } },
        .constraints = { "engine.labels.zone==edge" },
        .count = 2,
        .want = "a a",
    },
    {
        .name = "constraint engine.labels.K==V: the reason names it",
        .nodes = { { "a", .spec = "zone=edge" }, { "b", "zone=core", "zone=edge" } },
        .constraints = { "engine.labels.zone==edge" },
        .count = 1,
        .want = "-",
        .reason = "no suitable node (2 nodes fail engine.labels.zone==edge)",
    },
    {
        .name = "constraints: all must hold; the reason names the first that fails",
        .nodes = { { "a", "zone=eu,disk=hdd" }, { "b", "zone=us,disk=ssd" },
                   { "c", "zone=us" }, { "d", "zone=eu,disk=ssd" } },
        .constraints = { "node.labels.zone==eu", "node.labels.disk==ssd" },
        .count = 2,
        .want = "d d",
    },
    {
        .name = "reason: nodes counted under their first failing constraint",
        .nodes = { { "a", "zone=eu,disk=hdd" }, { "b", "zone=us,disk=ssd" },
                   { "c", "zone=us" } },
        .constraints = { "node.labels.zone==eu", "node.labels.disk==ssd", "node.name!=x" },
        .count = 1,
        .want = "-",
        .reason = "no suitable node (2 nodes fail node.labels.zone==eu, "
                  "1 node fails node.labels.disk==ssd)",
    },
    {
        .name = "reason: node.name and node.id constraints are written back as given",
        .nodes = { { "a" }, { "b" } },
        .constraints = { "node.name!=a", "node.id==id-zzz" },
        .count = 1,
        .want = "-",
        .reason = "no suitable node (1 node fails node.name!=a, 1 node fails node.id==id-zzz)",
    },
    {
        .name = "cpu: fits until full, then the rest fit nowhere",
        .nodes = { { "a", .cpu = 2 * CPU }, { "b", .cpu = 1 * CPU } },
        .cpu = CPU,
        .count = 4,
        .want = "a b a -",
        .reason = "no suitable node (2 nodes lack CPU)",
    },
    {
        .name = "cpu: a reservation that fills the node exactly fits",
        .nodes = { { "a", .cpu = 4 * CPU, .cpu_res = 3 * CPU } },
        .cpu = CPU,
        .count = 2,
        .want = "a -",
        .reason = "no suitable node (1 node lacks CPU)",
    },
    {
        .name = "memory: fits until full, with what is already reserved",
        .nodes = { { "a", .mem = 1 * GB }, { "b", .mem = 512 * MB, .mem_res = 256 * MB } },
        .mem = 256 * MB,
        .count = 7,
        .want = "a b a a a - -",
        .reason = "no suitable node (2 nodes lack memory)",
    },
    {
        .name = "memory: a node already over its total takes nothing",
        .nodes = { { "a", .mem = 1 * GB, .mem_res = 2 * GB }, { "b", .mem = 1 * GB } },
        .mem = 1,
        .count = 2,
        .want = "b b",
    },
    {
        .name = "unknown resources (total 0): no cpu reservation fits",
        .nodes = { { "a" } },
        .cpu = 1,
        .count = 1,
        .want = "-",
        .reason = "no suitable node (1 node lacks CPU)",
    },
    {
        .name = "unknown resources (total 0): no memory reservation fits",
        .nodes = { { "a", .cpu = CPU }, { "b", .cpu = CPU } },
        .mem = 1,
        .count = 1,
        .want = "-",
        .reason = "no suitable node (2 nodes lack memory)",
    },
    {
        .name = "unknown resources (total 0): a request of 0 always fits",
        .nodes = { { "a" }, { "b", .mem = 1 * GB, .mem_res = 1 * GB } },
        .count = 4,
        .want = "a b a b",
    },
    {
        .name = "a request of 0 on one resource fits a full node; the other is checked",
        .nodes = { { "a", .cpu = CPU, .cpu_res = CPU, .mem = GB } },
        .mem = GB / 2,
        .count = 3,
        .want = "a a -",
        .reason = "no suitable node (1 node lacks memory)",
    },
    {
        .name = "reason: a node short of both lacks CPU (checked first)",
        .nodes = { { "a", .cpu = CPU, .mem = MB } },
        .cpu = 2 * CPU,
        .mem = GB,
        .count = 1,
        .want = "-",
        .reason = "no suitable node (1 node lacks CPU)",
    },
    {
        .name = "reason: a mixture, Swarm-like",
        .nodes = { { "a", "zone=eu", .down = 1, .mem = GB },
                   { "b", "zone=eu", .drain = 1, .mem = GB },
                   { "c", "zone=eu", .drain = 1, .mem = GB },
                   { "d", "zone=us", .mem = GB },
                   { "e", .mem = GB },
                   { "f", "zone=asia", .mem = GB },
                   { "g", "zone=eu", .mem = GB },
                   { "h", "zone=eu", .mem = GB, .mem_res = GB / 2 } },
        .constraints = { "node.labels.zone==eu" },
        .mem = GB / 2,
        .count = 5,
        .want = "g h g - -",
        .reason = "no suitable node (1 node not ready, 2 nodes drained, "
                  "3 nodes fail node.labels.zone==eu, 2 nodes lack memory)",
    },
};

/* Runs one case: placement, reason, and the counters of every node grown by
 * what landed on it. */
static void test_case(void **state)
{
    const sched_case_t *tc = *state;
    constraint_t cons[4];
    sched_request_t req = { 0 };
    cluster_t cl, before;
    int out[64];
    char got[512], reason[256];
    int placed, want_placed = 0;

    cluster_build(&cl, tc->nodes);
    cluster_build(&before, tc->nodes);
    parse_constraints(tc->constraints, cons, &req.n_constraints);
    req.constraints = cons;
    req.cpu = tc->cpu;
    req.mem = tc->mem;
    req.count = tc->count;
    assert_true(req.count <= 64);
    memset(out, 0x55, sizeof(out));
    memset(reason, 'x', sizeof(reason));

    placed = sched_place(cl.nodes, cl.n, &req, out, reason, sizeof(reason));

    placement_text(&cl, out, tc->count, got, sizeof(got));
    if (strcmp(got, tc->want) != 0)
        fail_msg("%s: placed \"%s\", want \"%s\"", tc->name, got, tc->want);
    for (const char *p = tc->want; *p; p++)
        want_placed += *p != ' ' && *p != '-';
    assert_int_equal(placed, want_placed);
    if (strcmp(reason, tc->reason ? tc->reason : "") != 0)
        fail_msg("%s: reason \"%s\", want \"%s\"", tc->name, reason,
                 tc->reason ? tc->reason : "");

    for (size_t i = 0; i < cl.n; i++) {
        uint32_t here = 0;

        for (size_t t = 0; t < tc->count; t++)
            here += out[t] == (int)i;
        assert_int_equal(cl.nodes[i].tasks, before.nodes[i].tasks + here);
        assert_int_equal(cl.nodes[i].service_tasks, before.nodes[i].service_tasks + here);
        assert_int_equal(cl.nodes[i].cpu_reserved, before.nodes[i].cpu_reserved + here * tc->cpu);
        assert_int_equal(cl.nodes[i].mem_reserved, before.nodes[i].mem_reserved + here * tc->mem);
        if (cl.nodes[i].cpu_reserved != before.nodes[i].cpu_reserved && tc->cpu)
            assert_true(cl.nodes[i].cpu_reserved <= cl.nodes[i].cpu_total);
        if (cl.nodes[i].mem_reserved != before.nodes[i].mem_reserved && tc->mem)
            assert_true(cl.nodes[i].mem_reserved <= cl.nodes[i].mem_total);
    }
}

/* ------------------------------------------------- sched_constraint_ok */

static void test_constraint_ok(void **state)
{
    static const struct {
        const char *labels, *constraint;
        int ok;
        const char *spec; /* labels set on the controller */
    } rows[] = {
        { NULL, "node.name==n1", 1 },
        { NULL, "node.name==n2", 0 },
        { NULL, "node.name!=n1", 0 },
        { NULL, "node.name!=n2", 1 },
        { NULL, "node.hostname==n1", 1 },
        { NULL, "node.id==id-n1", 1 },
        { NULL, "node.id!=id-n1", 0 },
        { "zone=eu", "node.labels.zone==eu", 1 },
        { "zone=eu", "node.labels.zone==us", 0 },
        { "zone=eu", "node.labels.zone!=eu", 0 },
        { "zone=eu", "node.labels.zone!=us", 1 },
        { NULL, "node.labels.zone==eu", 0 },
        { NULL, "node.labels.zone!=eu", 1 },
        { "zone=", "node.labels.zone!=eu", 1 },
        { "disk=ssd,zone=eu", "node.labels.zone==eu", 1 },
        { "zoned=eu", "node.labels.zone==eu", 0 },
        { "zone=eu", "node.labels.zone==EU", 0 },
        /* the controller's labels: the effective labels are both sets */
        { NULL, "node.labels.zone==edge", 1, "zone=edge" },
        { "disk=ssd", "node.labels.disk==ssd", 1, "zone=edge" },
        { "disk=ssd", "node.labels.zone==edge", 1, "zone=edge" },
        { NULL, "node.labels.zone!=edge", 0, "zone=edge" },
        /* ... and the controller's win for a key in both */
        { "zone=eu", "node.labels.zone==edge", 1, "zone=edge" },
        { "zone=eu", "node.labels.zone==eu", 0, "zone=edge" },
        { "zone=eu", "node.labels.zone!=eu", 1, "zone=edge" },
        { "zone=edge", "node.labels.zone==edge", 0, "zone=" },
        /* engine.labels.K: the agent's alone (Docker's engine labels) */
        { "zone=eu", "engine.labels.zone==eu", 1 },
        { "zone=eu", "engine.labels.zone==eu", 1, "zone=edge" },
        { NULL, "engine.labels.zone==edge", 0, "zone=edge" },
        { NULL, "engine.labels.zone!=edge", 1, "zone=edge" },
        { "zone=eu", "engine.labels.zone!=eu", 0, "zone=edge" },
    };
    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        node_def_t defs[2] = { { "n1", rows[i].labels, rows[i].spec } };
        cluster_t cl;
        constraint_t c;

        cluster_build(&cl, defs);
        assert_int_equal(constraint_parse(rows[i].constraint, &c), 0);
        if (sched_constraint_ok(&cl.nodes[0], &c) != rows[i].ok)
            fail_msg("labels %s, spec labels %s, %s: want %d",
                     rows[i].labels ? rows[i].labels : "(none)",
                     rows[i].spec ? rows[i].spec : "(none)", rows[i].constraint, rows[i].ok);
    }
}

/* --------------------------------------------------- beyond one request */

/* Several services in a row on one view: each sees the tasks and the
 * reservations of the ones before. */
static void test_services_in_a_row(void **state)
{
    const node_def_t defs[] = { { "a", .mem = GB }, { "b", .mem = GB }, { "c", .mem = 2 * GB },
                                { NULL } };
    sched_request_t api = { .count = 4, .mem = GB / 2 };
    sched_request_t redis = { .count = 2 };
    sched_request_t db = { .count = 3, .mem = GB };
    cluster_t cl;
    int out[8];
    char got[64], reason[128];

    (void)state;
    cluster_build(&cl, defs);

    assert_int_equal(sched_place(cl.nodes, cl.n, &api, out, reason, sizeof(reason)), 4);
    placement_text(&cl, out, 4, got, sizeof(got));
    assert_string_equal(got, "a b c a");
    assert_string_equal(reason, "");

    /* A new service: the caller sets service_tasks to that service's. */
    for (size_t i = 0; i < cl.n; i++)
        cl.nodes[i].service_tasks = 0;
    assert_int_equal(sched_place(cl.nodes, cl.n, &redis, out, reason, sizeof(reason)), 2);
    placement_text(&cl, out, 2, got, sizeof(got));
    assert_string_equal(got, "b c");  /* fewest tasks in all */
    assert_int_equal(cl.nodes[0].tasks, 2);
    assert_int_equal(cl.nodes[1].tasks, 2);
    assert_int_equal(cl.nodes[2].tasks, 2);

    /* a and b hold 1 GB and 512 MB of api; c holds 512 MB: one 1 GB fits. */
    for (size_t i = 0; i < cl.n; i++)
        cl.nodes[i].service_tasks = 0;
    assert_int_equal(sched_place(cl.nodes, cl.n, &db, out, reason, sizeof(reason)), 1);
    placement_text(&cl, out, 3, got, sizeof(got));
    assert_string_equal(got, "c - -");
    assert_string_equal(reason, "no suitable node (3 nodes lack memory)");
    assert_int_equal(cl.nodes[0].mem_reserved, GB);
    assert_int_equal(cl.nodes[1].mem_reserved, GB / 2);
    assert_int_equal(cl.nodes[2].mem_reserved, GB / 2 + GB);
    assert_int_equal(cl.nodes[2].tasks, 3);
}

/* A reason buffer that is too short is cut, still terminated; a NULL one
 * is allowed. */
static void test_reason_short_buffer(void **state)
{
    const node_def_t defs[] = { { "a", .down = 1 }, { "b", .drain = 1 }, { NULL } };
    sched_request_t req = { .count = 1 };
    cluster_t cl;
    int out[1];
    char reason[12];

    (void)state;
    cluster_build(&cl, defs);
    assert_int_equal(sched_place(cl.nodes, cl.n, &req, out, reason, sizeof(reason)), 0);
    assert_string_equal(reason, "no suitable");
    assert_int_equal(sched_place(cl.nodes, cl.n, &req, out, NULL, 0), 0);
    assert_int_equal(out[0], -1);
}

/* A reference scheduler, O(nodes) per task, written the obvious way. */
static int naive_fits(const sched_node_t *n, const sched_request_t *req)
{
    if (!n->ready || !n->active)
        return 0;
    for (size_t c = 0; c < req->n_constraints; c++)
        if (!sched_constraint_ok(n, &req->constraints[c]))
            return 0;
    if (req->cpu && !(n->cpu_total && n->cpu_reserved + req->cpu <= n->cpu_total))
        return 0;
    if (req->mem && !(n->mem_total && n->mem_reserved + req->mem <= n->mem_total))
        return 0;
    return 1;
}

static void naive_place(sched_node_t *nodes, size_t n, const sched_request_t *req, int *out)
{
    for (size_t t = 0; t < req->count; t++) {
        int best = -1;

        for (size_t i = 0; i < n; i++) {
            const sched_node_t *b = best < 0 ? NULL : &nodes[best];

            if (!naive_fits(&nodes[i], req))
                continue;
            if (!b || nodes[i].service_tasks < b->service_tasks ||
                (nodes[i].service_tasks == b->service_tasks && nodes[i].tasks < b->tasks))
                best = (int)i;
        }
        out[t] = best;
        if (best >= 0) {
            nodes[best].tasks++;
            nodes[best].service_tasks++;
            nodes[best].cpu_reserved += req->cpu;
            nodes[best].mem_reserved += req->mem;
        }
    }
}

/* Random clusters: the heap gives what the obvious scan gives. */
static void test_matches_reference(void **state)
{
    enum { N = 150, TASKS = 1200 };
    static const sched_label_t zones[] = { { "zone", "eu" }, { "zone", "us" } };
    sched_node_t *a = calloc(N, sizeof(*a)), *b = calloc(N, sizeof(*b));
    int *out_a = calloc(TASKS, sizeof(*out_a)), *out_b = calloc(TASKS, sizeof(*out_b));
    uint32_t seed = 12345;
    constraint_t c;

    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(out_a);
    assert_non_null(out_b);
    assert_int_equal(constraint_parse("node.labels.zone!=us", &c), 0);
    for (int round = 0; round < 40; round++) {
        sched_request_t req = { .count = TASKS };
        char reason[256];
        int placed;

#define RND() (seed = seed * 1103515245u + 12345u, (seed >> 8) & 0xffff)
        for (size_t i = 0; i < N; i++) {
            a[i] = (sched_node_t){
                .name = "n",
                .ready = RND() % 10 != 0,
                .active = RND() % 10 != 0,
                .cpu_total = (int64_t)(RND() % 8) * CPU,
                .mem_total = (int64_t)(RND() % 16) * GB,
                .tasks = RND() % 20,
                .service_tasks = RND() % 4,
            };
            a[i].cpu_reserved = a[i].cpu_total ? (int64_t)(RND() % 3) * CPU / 2 : 0;
            if (RND() % 3) {
                a[i].labels = &zones[RND() % 2];
                a[i].n_labels = 1;
            }
        }
        memcpy(b, a, N * sizeof(*a));
        if (round % 2) {
            req.constraints = &c;
            req.n_constraints = 1;
        }
        req.cpu = round % 4 >= 2 ? CPU / 2 : 0;
        req.mem = round % 3 ? (int64_t)GB : 0;
        placed = sched_place(a, N, &req, out_a, reason, sizeof(reason));
        naive_place(b, N, &req, out_b);
        assert_true(placed >= 0);
        assert_memory_equal(out_a, out_b, TASKS * sizeof(*out_a));
        assert_memory_equal(a, b, N * sizeof(*a));
        assert_int_equal(placed < TASKS, reason[0] != '\0');
    }
#undef RND
    free(a);
    free(b);
    free(out_a);
    free(out_b);
}

/* 10,000 tasks on 1,000 nodes: exactly 10 each. */
static void test_large_spread(void **state)
{
    enum { N = 1000, TASKS = 10000 };
    sched_node_t *nodes = calloc(N, sizeof(*nodes));
    int *out = calloc(TASKS, sizeof(*out));
    sched_request_t req = { .count = TASKS };
    char reason[64];

    (void)state;
    assert_non_null(nodes);
    assert_non_null(out);
    for (size_t i = 0; i < N; i++)
        nodes[i] = (sched_node_t){ .name = "n", .ready = 1, .active = 1 };
    assert_int_equal(sched_place(nodes, N, &req, out, reason, sizeof(reason)), TASKS);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(nodes[i].service_tasks, 10);
    for (size_t t = 0; t < TASKS; t++)
        assert_int_equal(out[t], (int)(t % N));
    free(nodes);
    free(out);
}

int main(void)
{
    const size_t n_cases = sizeof(cases) / sizeof(cases[0]);
    const struct CMUnitTest others[] = {
        cmocka_unit_test(test_constraint_ok),
        cmocka_unit_test(test_services_in_a_row),
        cmocka_unit_test(test_reason_short_buffer),
        cmocka_unit_test(test_matches_reference),
        cmocka_unit_test(test_large_spread),
    };
    struct CMUnitTest *tests = calloc(n_cases, sizeof(*tests));
    int failed;

    if (!tests)
        return 1;
    for (size_t i = 0; i < n_cases; i++)
        tests[i] = (struct CMUnitTest){ .name = cases[i].name, .test_func = test_case,
                                        .initial_state = (void *)&cases[i] };
    failed = _cmocka_run_group_tests("sched_cases", tests, n_cases, NULL, NULL);
    failed += cmocka_run_group_tests_name("sched", others, NULL, NULL);
    free(tests);
    return failed;
}
