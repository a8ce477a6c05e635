/* Tests of the controller's behaviour, in process, over real TCP
 * (tests/unit/ctl_harness.h): a ctl_t on its own loop, fake agents that
 * answer assignments as skiff-agent would, and a fake client.
 *
 * Each scenario asserts on the replies, on what the fake agents received
 * (their sets and endpoints), and on the store: the controller is stopped
 * and started again on the same data dir, and must hold the same services
 * and tasks. Times are short: heartbeats every 50ms, a heartbeat timeout of
 * 300ms, update monitors of 50ms.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <utlist.h>

#include "ctl_harness.h"
#include "errors.h"
#include "pbutil.h"
#include "spec.h"
#include "wire.h"

#define HB_TIMEOUT_MS 300
#define BEAT_MS 50
#define WAIT_MS 5000 /* the longest any condition may take */

/* ------------------------------------------------------------- helpers */

static harness_t *cluster(size_t n_agents)
{
    static const char *const zones[] = { "zone=a", "zone=b", "zone=a", "zone=b", "zone=a" };
    harness_t *h = h_new(HB_TIMEOUT_MS, BEAT_MS);

    for (size_t i = 0; i < n_agents; i++) {
        char name[32], addr[32];
        snprintf(name, sizeof(name), "n%zu", i + 1);
        snprintf(addr, sizeof(addr), "127.0.0.%zu", 11 + i);
        h_agent_connect(h, h_agent_add(h, name, addr, zones[i % 5]));
    }
    h_client_connect(h);
    return h;
}

static void done(harness_t *h)
{
    if (h->violations)
        fail_msg("%u violation(s), the first: %s", h->violations, h->violation);
    assert_true(h->committed_checks > 0);
    h_free(h);
}

/* Creates a service; returns its version. */
static uint64_t create(harness_t *h, ServiceSpec *spec)
{
    Envelope *r = h_expect(h_service_create(h, spec), MSG_SERVICE_REPLY);
    uint64_t v = r->service_reply->service->version;

    assert_string_equal(r->service_reply->service->spec->name, spec->name);
    assert_int_equal(r->service_reply->service->desired_tasks, spec->replicas);
    wire_free(r);
    pb_free(spec);
    return v;
}

static void scale(harness_t *h, const char *name, uint32_t n)
{
    Envelope *r = h_expect(h_service_scale(h, name, n), MSG_SERVICE_REPLY);

    assert_int_equal(r->service_reply->service->spec->replicas, n);
    wire_free(r);
}

/* The service as the controller shows it; free with pb_free. */
static Service *get(harness_t *h, const char *name)
{
    Envelope *r = h_expect(h_service_get(h, name), MSG_SERVICE_REPLY);
    Service *s = pb_dup(r->service_reply->service);

    wire_free(r);
    assert_non_null(s);
    return s;
}

/* Every agent runs per_node tasks of the service and has no other task of
 * it in its set. */
static int spread_is(harness_t *h, const char *name, size_t per_node)
{
    for (size_t i = 0; i < h->n_agents; i++) {
        h_agent_t *a = &h->agents[i];
        if (h_agent_running(a, name) != per_node ||
            h_agent_count(a, name, DESIRED_RUNNING) != per_node ||
            h_agent_count(a, name, DESIRED_SHUTDOWN) != 0)
            return 0;
    }
    return 1;
}

static int backends_are(harness_t *h, const char *name, int n)
{
    for (size_t i = 0; i < h->n_agents; i++)
        if (h->agents[i].conn && h_agent_backends(&h->agents[i], name) != n)
            return 0;
    return 1;
}

/* Tasks of TaskList(service, all) in a state, with a desired state
 * (-1: any). */
static size_t tasks_in(harness_t *h, const char *name, int all, int desired, int state)
{
    Envelope *r = h_expect(h_task_list(h, name, NULL, all), MSG_TASK_LIST_REPLY);
    size_t n = 0;

    for (size_t i = 0; i < r->task_list_reply->n_tasks; i++) {
        const Task *t = r->task_list_reply->tasks[i];
        n += (desired < 0 || (int)t->desired_state == desired) &&
             (state < 0 || (int)t->state == state);
    }
    wire_free(r);
    return n;
}

/* The controller has nothing waiting to be committed or sent. */
static int quiet(harness_t *h)
{
    return !h->ctl->committing && !model_has_changes(&h->ctl->model) && !h->ctl->out_head;
}

/* A count from the controller's state.db. */
static long long sqlite3_count(harness_t *h, const char *sql)
{
    sqlite3_stmt *st;
    long long n = -1;

    assert_int_equal(sqlite3_prepare_v2(h->db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* Stops the controller, starts a new one on the same data dir: it must
 * hold the same services and tasks. The agents and the client connect
 * again. */
static void restart(harness_t *h)
{
    h_snapshot_t snap;

    H_RUN_UNTIL(h, quiet(h), WAIT_MS);
    h_snapshot_take(h, &snap);
    h_ctl_stop(h);
    h_ctl_start(h);
    h_snapshot_check(h, &snap);
    h_snapshot_free(&snap);
    for (size_t i = 0; i < h->n_agents; i++)
        if (!h->agents[i].conn && !h->agents[i].silent)
            h_agent_connect(h, &h->agents[i]);
    h_client_connect(h);
}

/* ---------------------------------------------------------- scenarios */

/* 3 nodes, 6 replicas: 2 per node, all running; 9: 3 per node; 3: 1 per
 * node, the extra tasks told to stop and out of the sets once stopped. */
static void test_spread_and_scale(void **state)
{
    harness_t *h = cluster(3);
    ServiceSpec *spec = h_spec("web", "web:v1", 6);
    size_t seen;

    (void)state;
    h_spec_port(spec, 8080, 80);
    assert_int_equal(create(h, spec), 1);
    H_RUN_UNTIL(h, spread_is(h, "web", 2), WAIT_MS);
    H_RUN_UNTIL(h, backends_are(h, "web", 6), WAIT_MS);
    assert_int_equal(tasks_in(h, "web", 0, DESIRED_RUNNING, TASK_RUNNING), 6);
    {
        Envelope *r = h_expect(h_task_list(h, "web", NULL, 0), MSG_TASK_LIST_REPLY);
        unsigned slots = 0;
        for (size_t i = 0; i < r->task_list_reply->n_tasks; i++) {
            const Task *t = r->task_list_reply->tasks[i];
            slots |= 1u << t->slot;
            assert_int_equal(t->spec_version, 1);
            assert_true(*t->node_name);
        }
        assert_int_equal(slots, 0x7e); /* slots 1..6 */
        wire_free(r);
    }
    {
        Service *s = get(h, "web");
        assert_int_equal(s->running_tasks, 6);
        assert_int_equal(s->desired_tasks, 6);
        pb_free(s);
    }

    scale(h, "web", 9);
    H_RUN_UNTIL(h, spread_is(h, "web", 3), WAIT_MS);
    H_RUN_UNTIL(h, backends_are(h, "web", 9), WAIT_MS);
    seen = h->n_seen;
    assert_int_equal(seen, 9);

    scale(h, "web", 3);
    H_RUN_UNTIL(h, spread_is(h, "web", 1), WAIT_MS);
    H_RUN_UNTIL(h, backends_are(h, "web", 3), WAIT_MS);
    assert_int_equal(h->n_seen, 9); /* scaling down creates nothing */
    assert_true(h->leave_checks >= 6); /* each left the endpoints in time */
    for (size_t i = 0; i < h->n_seen; i++)
        assert_int_equal(h->seen[i].told_stop, h->seen[i].slot > 3);
    /* The sets hold nothing else: the stopped tasks left them. */
    for (size_t i = 0; i < h->n_agents; i++)
        assert_int_equal(h->agents[i].set->n_tasks, 1);
    assert_int_equal(tasks_in(h, "web", 0, -1, -1), 3);
    assert_int_equal(tasks_in(h, "web", 1, DESIRED_SHUTDOWN, TASK_SHUTDOWN), 6);
    assert_int_equal(h_max_per_slot(h, "web"), 1);

    /* To zero and back: the service stays, with no backend; new tasks come. */
    scale(h, "web", 0);
    H_RUN_UNTIL(h, spread_is(h, "web", 0) && backends_are(h, "web", 0), WAIT_MS);
    {
        Service *s = get(h, "web");
        assert_int_equal(s->running_tasks, 0);
        assert_int_equal(s->desired_tasks, 0);
        pb_free(s);
    }
    scale(h, "web", 3);
    H_RUN_UNTIL(h, spread_is(h, "web", 1) && backends_are(h, "web", 3), WAIT_MS);
    assert_int_equal(h->n_seen, 12);
    assert_int_equal(h_max_per_slot(h, "web"), 1);

    restart(h);
    H_RUN_UNTIL(h, spread_is(h, "web", 1) && backends_are(h, "web", 3), WAIT_MS);
    h_run_for(h, 150);
    assert_int_equal(h->n_seen, 12);
    done(h);
}

/* A task that fails for good (its restart policy gave up) is replaced in
 * its slot, after a backoff; the failed one stays as history, out of the
 * sets. */
static void test_failed_task_replaced(void **state)
{
    harness_t *h = cluster(2);
    h_agent_t *n1 = &h->agents[0];
    char failed[MODEL_ID_LEN + 1];
    h_task_t *t;
    uint32_t slot;

    (void)state;
    create(h, h_spec("web", "web:v1", 2));
    H_RUN_UNTIL(h, spread_is(h, "web", 1), WAIT_MS);
    t = h_agent_task(n1, n1->set->tasks[0]->task_id);
    snprintf(failed, sizeof(failed), "%s", t->id);
    slot = t->slot;
    t->state = TASK_FAILED;
    t->exit_code = 1;
    h_agent_report(h, n1, t, 0);
    H_RUN_UNTIL(h, h_seen_count(h, "web", slot, 1) == 2 && h_converged(h, "web"), WAIT_MS);
    H_RUN_UNTIL(h, !h_agent_has(n1, failed), WAIT_MS);
    assert_int_equal(h_max_per_slot(h, "web"), 1);
    assert_int_equal(tasks_in(h, "web", 1, DESIRED_SHUTDOWN, TASK_FAILED), 1);
    assert_int_equal(tasks_in(h, "web", 0, DESIRED_RUNNING, TASK_RUNNING), 2);
    assert_int_equal(h->n_seen, 3);
    restart(h);
    done(h);
}


/* A request that is wrong in any way gets one error naming what is wrong,
 * and changes nothing. */
static void test_errors_change_nothing(void **state)
{
    harness_t *h = cluster(2);
    h_agent_t *raw;
    ServiceSpec *spec;
    h_snapshot_t snap;
    size_t seen;
    unsigned sets[2];
    uint64_t version;

    (void)state;
    spec = h_spec("web", "web:v1", 2);
    h_spec_port(spec, 8080, 80);
    version = create(h, spec);
    spec = h_spec("api", "api:v1", 1);
    h_spec_port(spec, 9090, 90);
    create(h, spec);
    H_RUN_UNTIL(h, h_converged(h, "web") && h_converged(h, "api"), WAIT_MS);
    H_RUN_UNTIL(h, quiet(h), WAIT_MS);
    h_snapshot_take(h, &snap);
    seen = h->n_seen;
    sets[0] = h->agents[0].n_sets;
    sets[1] = h->agents[1].n_sets;

    /* Unknown service, in every request that names one. */
    h_expect_error(h_service_get(h, "nosuch"), ERR_NOT_FOUND, "no such service: nosuch");
    h_expect_error(h_service_scale(h, "nosuch", 2), ERR_NOT_FOUND, "nosuch");
    h_expect_error(h_service_remove(h, "nosuch"), ERR_NOT_FOUND, "nosuch");
    h_expect_error(h_service_rollback(h, "nosuch"), ERR_NOT_FOUND, "nosuch");
    h_expect_error(h_task_list(h, "nosuch", NULL, 0), ERR_NOT_FOUND, "nosuch");
    spec = h_spec("nosuch", "x:1", 1);
    h_expect_error(h_service_update(h, "nosuch", spec, 0), ERR_NOT_FOUND, "nosuch");
    pb_free(spec);
    h_expect_error(h_node_update(h, "n9", AVAILABILITY_DRAIN), ERR_NOT_FOUND, "no such node: n9");
    h_expect_error(h_node_remove(h, "n9", 1), ERR_NOT_FOUND, "n9");
    h_expect_error(h_task_list(h, NULL, "n9", 0), ERR_NOT_FOUND, "n9");

    /* Name taken. */
    spec = h_spec("web", "other:1", 1);
    h_expect_error(h_service_create(h, spec), ERR_EXISTS, "service web already exists");
    pb_free(spec);

    /* Invalid specs: the message names the field. */
    {
        static const struct {
            const char *field;
            int what;
        } bad[] = {
            { "image:", 0 }, { "name:", 1 }, { "constraints[0]:", 2 }, { "ports[0]:", 3 },
            { "update.max_failure_ratio:", 4 }, { "rollback.failure_action:", 5 },
            { "env[0]:", 6 }, { "health.retries:", 7 }, { "mounts[0].target:", 8 },
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            spec = h_spec("fresh", "fresh:1", 1);
            switch (bad[i].what) {
            case 0: pb_set_str(&spec->image, ""); break;
            case 1: pb_set_str(&spec->name, "bad name!"); break;
            case 2: pb_push_str(&spec->n_constraints, &spec->constraints, "node.color==red"); break;
            case 3: h_spec_port(spec, 0, 80); break;
            case 4: spec->update->max_failure_ratio = 2; break;
            case 5: spec->rollback->failure_action = FAILURE_ROLLBACK; break;
            case 6: pb_push_str(&spec->n_env, &spec->env, "NOEQUALS"); break;
            case 7:
                pb_push_str(&spec->health->n_test, &spec->health->test, "CMD");
                pb_push_str(&spec->health->n_test, &spec->health->test, "true");
                spec->health->retries = 0;
                break;
            case 8: {
                Mount *mt = PB_NEW(Mount);
                pb_set_str(&mt->source, "data");
                pb_set_str(&mt->target, "relative");
                pb_push_msg(&spec->n_mounts, (void ***)&spec->mounts, mt);
                break;
            }
            }
            h_expect_error(h_service_create(h, spec), ERR_INVALID, bad[i].field);
            /* The same on an update of a service that exists. */
            pb_set_str(&spec->name, "web");
            if (bad[i].what != 1)
                h_expect_error(h_service_update(h, "web", spec, version), ERR_INVALID,
                               bad[i].field);
            pb_free(spec);
        }
        {
            ServiceCreate m = PB_SERVICE_CREATE_INIT;
            Envelope env = PB_ENVELOPE_INIT;
            env.msg_case = MSG_SERVICE_CREATE;
            env.service_create = &m;
            h_expect_error(h_call(h, &env), ERR_INVALID, "spec: missing");
        }
    }

    /* Bad replica counts (the harness's limit is 1000). */
    h_expect_error(h_service_scale(h, "web", 1001), ERR_INVALID, "replicas:");
    spec = h_spec("many", "many:1", 5000);
    h_expect_error(h_service_create(h, spec), ERR_INVALID, "replicas:");
    pb_free(spec);

    /* Version conflict, renames. */
    spec = h_spec("web", "web:v2", 2);
    h_spec_port(spec, 8080, 80);
    h_expect_error(h_service_update(h, "web", spec, version + 5), ERR_CONFLICT,
                   "changed since it was read");
    pb_set_str(&spec->name, "web2");
    h_expect_error(h_service_update(h, "web", spec, version), ERR_INVALID, "name:");
    pb_free(spec);

    /* A port another service publishes, on create and on update. */
    spec = h_spec("other", "other:1", 1);
    h_spec_port(spec, 8080, 80);
    h_expect_error(h_service_create(h, spec), ERR_INVALID,
                   "ports[0]: port 8080 is already used by service web");
    pb_free(spec);
    spec = h_spec("other", "other:1", 1);
    spec->expose = malloc(sizeof(*spec->expose));
    assert_non_null(spec->expose);
    spec->expose[0] = 9090;
    spec->n_expose = 1;
    h_expect_error(h_service_create(h, spec), ERR_INVALID,
                   "expose[0]: port 9090 is already used by service api");
    pb_free(spec);
    spec = h_spec("api", "api:v1", 1);
    h_spec_port(spec, 8080, 90);
    h_expect_error(h_service_update(h, "api", spec, 0), ERR_INVALID,
                   "port 8080 is already used by service web");
    pb_free(spec);

    /* Rollback without a previous spec. */
    h_expect_error(h_service_rollback(h, "web"), ERR_INVALID, "no previous spec");

    /* Nodes. */
    h_expect_error(h_node_update(h, "n1", (NodeAvailability)7), ERR_INVALID, "availability:");
    h_expect_error(h_node_remove(h, "n1", 0), ERR_INVALID, "node n1 is ready");

    /* Wrong tokens, a wrong role, a message before the hello, an agent
     * without its certificate: ERR_AUTH and the connection closed. */
    raw = h_agent_add(h, "intruder", "127.0.0.99", NULL);
    {
        static const struct {
            int token; /* 0: wrong, 1: join, 2: admin, 3: none (no hello) */
            int role;
            const char *text;
        } cases[] = {
            { 0, ROLE_CLIENT, "wrong token" }, { 0, ROLE_AGENT, "needs its node certificate" },
            { 2, ROLE_AGENT, "needs its node certificate" },  { 1, ROLE_CLIENT, "wrong token" },
            { 2, ROLE_UNSPECIFIED, "unknown role" }, { 3, ROLE_CLIENT, "say hello first" },
        };
        char wrong[CTL_TOKEN_LEN + 1];
        memset(wrong, 'a', CTL_TOKEN_LEN);
        wrong[CTL_TOKEN_LEN] = '\0';
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            int closed = raw->closed;
            const char *token = cases[i].token == 0 ? wrong : cases[i].token == 1 ? h->join_token
                              : cases[i].token == 2 ? h->admin_token : NULL;
            h_agent_connect_raw(h, raw, token, cases[i].role);
            H_RUN_UNTIL(h, raw->closed != closed, WAIT_MS);
            assert_false(raw->hello_ok);
            assert_int_equal(raw->last_error, ERR_AUTH);
            assert_non_null(strstr(raw->last_error_msg, cases[i].text));
        }
        /* A join with a wrong secret, or the admin's, is refused. */
        assert_int_equal(h_agent_join(h, raw, wrong), ERR_AUTH);
        assert_int_equal(h_agent_join(h, raw, h->admin_token), ERR_AUTH);
        /* A join under the name of a node that holds a certificate too. */
        snprintf(raw->name, sizeof(raw->name), "n1");
        assert_int_equal(h_agent_join(h, raw, h->join_token), ERR_EXISTS);
        assert_null(raw->tls);
    }
    h_agent_drop_last(h); /* the intruder is no agent of the cluster */

    /* Nothing changed: the same services and tasks, no new set pushed. */
    H_RUN_UNTIL(h, quiet(h), WAIT_MS);
    h_snapshot_check(h, &snap);
    h_snapshot_free(&snap);
    assert_int_equal(h->n_seen, seen);
    assert_int_equal(h->agents[0].n_sets, sets[0]);
    assert_int_equal(h->agents[1].n_sets, sets[1]);
    assert_null(h_service(h, "fresh"));
    assert_null(h_service(h, "other"));
    {
        Service *s = get(h, "web");
        assert_int_equal(s->version, version);
        assert_string_equal(s->spec->image, "web:v1");
        assert_int_equal(s->spec->replicas, 2);
        pb_free(s);
    }
    done(h);
}

/* Constraints on node names and labels; a service that fits nowhere stays
 * pending with the reason, and runs when a node that fits joins. */
static void test_placement(void **state)
{
    harness_t *h = cluster(3); /* n1 zone=a, n2 zone=b, n3 zone=a */
    ServiceSpec *spec;
    h_agent_t *mars;

    (void)state;
    spec = h_spec("pin", "pin:1", 2);
    pb_push_str(&spec->n_constraints, &spec->constraints, "node.name==n2");
    create(h, spec);
    spec = h_spec("za", "za:1", 4);
    pb_push_str(&spec->n_constraints, &spec->constraints, "node.labels.zone==a");
    create(h, spec);
    spec = h_spec("notb", "notb:1", 2);
    pb_push_str(&spec->n_constraints, &spec->constraints, "node.labels.zone != b");
    pb_push_str(&spec->n_constraints, &spec->constraints, "node.name!=n1");
    create(h, spec);
    spec = h_spec("nowhere", "nowhere:1", 2);
    pb_push_str(&spec->n_constraints, &spec->constraints, "node.labels.zone==mars");
    create(h, spec);
    spec = h_spec("huge", "huge:1", 1);
    spec->reservations->memory_bytes = 64ll << 30; /* the nodes have 8 GiB */
    create(h, spec);

    H_RUN_UNTIL(h, h_converged(h, "pin") && h_converged(h, "za") && h_converged(h, "notb"),
                WAIT_MS);
    assert_int_equal(h_agent_running(&h->agents[1], "pin"), 2);
    assert_int_equal(h_agent_running(&h->agents[0], "za"), 2);
    assert_int_equal(h_agent_running(&h->agents[1], "za"), 0);
    assert_int_equal(h_agent_running(&h->agents[2], "za"), 2);
    assert_int_equal(h_agent_running(&h->agents[2], "notb"), 2);

    /* Pending, with the reason, and nowhere in a set. */
    H_RUN_UNTIL(h, tasks_in(h, "nowhere", 0, DESIRED_RUNNING, TASK_PENDING) == 2, WAIT_MS);
    {
        Envelope *r = h_expect(h_task_list(h, "nowhere", NULL, 0), MSG_TASK_LIST_REPLY);
        for (size_t i = 0; i < r->task_list_reply->n_tasks; i++) {
            const Task *t = r->task_list_reply->tasks[i];
            assert_string_equal(t->node_name, "");
            assert_non_null(strstr(t->message, "no suitable node"));
            assert_non_null(strstr(t->message, "node.labels.zone==mars"));
        }
        wire_free(r);
        r = h_expect(h_task_list(h, "huge", NULL, 0), MSG_TASK_LIST_REPLY);
        assert_int_equal(r->task_list_reply->n_tasks, 1);
        assert_int_equal(r->task_list_reply->tasks[0]->state, TASK_PENDING);
        assert_non_null(strstr(r->task_list_reply->tasks[0]->message, "memory"));
        wire_free(r);
    }
    for (size_t i = 0; i < h->n_agents; i++) {
        assert_int_equal(h_agent_count(&h->agents[i], "nowhere", DESIRED_RUNNING), 0);
        assert_int_equal(h_agent_count(&h->agents[i], "huge", DESIRED_RUNNING), 0);
    }
    {
        Service *s = get(h, "nowhere");
        assert_int_equal(s->running_tasks, 0);
        assert_int_equal(s->desired_tasks, 2);
        pb_free(s);
    }
    /* Still pending after a while, and nothing more created. */
    h_run_for(h, 100);
    assert_int_equal(tasks_in(h, "nowhere", 1, -1, -1), 2);

    restart(h);
    assert_int_equal(tasks_in(h, "nowhere", 0, DESIRED_RUNNING, TASK_PENDING), 2);

    /* A node that fits joins: they run there. */
    mars = h_agent_add(h, "n4", "127.0.0.14", "zone=mars");
    h_agent_connect(h, mars);
    H_RUN_UNTIL(h, h_agent_running(mars, "nowhere") == 2 && h_converged(h, "nowhere"), WAIT_MS);
    assert_int_equal(tasks_in(h, "nowhere", 1, -1, -1), 2); /* the same tasks, placed */
    assert_int_equal(h_agent_running(mars, "za"), 0);
    assert_int_equal(h_agent_running(mars, "pin"), 0);
    done(h);
}

/* A drained node's tasks move to the others, and nothing new lands there;
 * active again, new tasks may. */
static void test_drain(void **state)
{
    harness_t *h = cluster(3);
    ServiceSpec *spec = h_spec("web", "web:v1", 6);
    h_agent_t *n1 = &h->agents[0];
    Envelope *r;

    (void)state;
    h_spec_port(spec, 8080, 80);
    create(h, spec);
    spec = h_spec("pinned", "pinned:1", 1);
    pb_push_str(&spec->n_constraints, &spec->constraints, "node.name==n1");
    create(h, spec);
    H_RUN_UNTIL(h, spread_is(h, "web", 2) && backends_are(h, "web", 6) &&
                   h_converged(h, "pinned"), WAIT_MS);

    r = h_expect(h_node_update(h, "n1", AVAILABILITY_DRAIN), MSG_NODE_REPLY);
    assert_int_equal(r->node_reply->node->availability, AVAILABILITY_DRAIN);
    wire_free(r);

    H_RUN_UNTIL(h, n1->set->n_tasks == 0 && h_agent_running(&h->agents[1], "web") == 3 &&
                   h_agent_running(&h->agents[2], "web") == 3 && h_converged(h, "web") &&
                   backends_are(h, "web", 6), WAIT_MS);
    for (size_t i = 0; i < h->n_agents; i++) {
        const Endpoints *eps = h->agents[i].eps;
        for (size_t k = 0; k < eps->n_services; k++)
            for (size_t b = 0; b < eps->services[k]->n_backends; b++)
                assert_string_not_equal(eps->services[k]->backends[b]->address, n1->address);
    }
    assert_int_equal(h_max_per_slot(h, "web"), 1);
    assert_int_equal(h->n_seen, 9); /* web: two replacements; pinned: none placed */
    /* A task that can go nowhere else stops all the same (drain wins), and
     * its replacement waits, saying why. */
    assert_int_equal(h_agent_count(n1, "pinned", DESIRED_RUNNING), 0);
    H_RUN_UNTIL(h, tasks_in(h, "pinned", 0, DESIRED_RUNNING, TASK_PENDING) == 1, WAIT_MS);
    {
        Envelope *tl = h_expect(h_task_list(h, "pinned", NULL, 0), MSG_TASK_LIST_REPLY);
        assert_non_null(strstr(tl->task_list_reply->tasks[0]->message, "1 node drained"));
        wire_free(tl);
    }
    assert_int_equal(tasks_in(h, "pinned", 1, DESIRED_SHUTDOWN, TASK_SHUTDOWN), 1);

    /* Nothing new lands on it. */
    scale(h, "web", 9);
    spec = h_spec("db", "db:1", 2);
    create(h, spec);
    H_RUN_UNTIL(h, h_converged(h, "web") && h_converged(h, "db"), WAIT_MS);
    assert_int_equal(n1->set->n_tasks, 0);
    r = h_expect(h_node_list(h), MSG_NODE_LIST_REPLY);
    assert_int_equal(r->node_list_reply->n_nodes, 3);
    assert_string_equal(r->node_list_reply->nodes[0]->name, "n1");
    assert_int_equal(r->node_list_reply->nodes[0]->availability, AVAILABILITY_DRAIN);
    assert_int_equal(r->node_list_reply->nodes[0]->tasks, 0);
    assert_int_equal(r->node_list_reply->nodes[0]->state, NODE_READY);
    assert_int_equal(r->node_list_reply->nodes[1]->tasks + r->node_list_reply->nodes[2]->tasks,
                     11); /* the pending one is on no node */
    wire_free(r);

    restart(h);
    assert_int_equal(model_node_by_name(&h->ctl->model, "n1")->pb->availability,
                     AVAILABILITY_DRAIN);
    h_run_for(h, 100);
    assert_int_equal(n1->set->n_tasks, 0);

    /* Active again: new tasks land there (spread: it has the fewest). */
    r = h_expect(h_node_update(h, "n1", AVAILABILITY_ACTIVE), MSG_NODE_REPLY);
    wire_free(r);
    scale(h, "web", 12);
    H_RUN_UNTIL(h, h_converged(h, "web") && h_agent_running(n1, "web") == 3 &&
                   h_converged(h, "pinned") && h_agent_running(n1, "pinned") == 1, WAIT_MS);
    assert_int_equal(h_agent_running(&h->agents[1], "web") + h_agent_running(&h->agents[2], "web"),
                     9);
    done(h);
}

/* The value of the node's spec label key in the model, or NULL. */
static const char *spec_label(harness_t *h, const char *node, const char *key)
{
    const node_t *n = model_node_by_name(&h->ctl->model, node);

    for (size_t i = 0; n && i < n->pb->n_spec_labels; i++)
        if (strcmp(n->pb->spec_labels[i]->key, key) == 0)
            return n->pb->spec_labels[i]->value;
    return NULL;
}

/* Labels set on the controller: checked, kept across a restart and the
 * agents' registrations, and what node.labels constraints see, winning over
 * the agent's label of the same key; engine.labels sees the agent's alone.
 * A pending task waiting for a label is placed once it is added; running
 * tasks whose node no longer satisfies their constraints move (Swarm). */
static void test_node_labels(void **state)
{
    harness_t *h = cluster(3); /* agents' labels: n1 zone=a, n2 zone=b, n3 zone=a */
    h_agent_t *n2 = &h->agents[1], *n3 = &h->agents[2];
    ServiceSpec *spec;
    Envelope *r;

    (void)state;
    spec = h_spec("edge", "edge:1", 2);
    pb_push_str(&spec->n_constraints, &spec->constraints, "node.labels.zone==edge");
    create(h, spec);
    spec = h_spec("bees", "bees:1", 1);
    pb_push_str(&spec->n_constraints, &spec->constraints, "node.labels.zone==b");
    create(h, spec);
    spec = h_spec("engine", "engine:1", 1);
    pb_push_str(&spec->n_constraints, &spec->constraints, "engine.labels.zone==b");
    create(h, spec);
    H_RUN_UNTIL(h, tasks_in(h, "edge", 0, DESIRED_RUNNING, TASK_PENDING) == 2 &&
                   h_converged(h, "bees") && h_converged(h, "engine"), WAIT_MS);
    assert_int_equal(h_agent_running(n2, "bees"), 1);

    /* Refused, and nothing changes. */
    h_expect_error(h_node_labels(h, "n2", NULL, "nope"), ERR_NOT_FOUND,
                   "node n2 has no label nope");
    h_expect_error(h_node_labels(h, "n2", NULL, "zone"), ERR_NOT_FOUND,
                   "label zone comes from the agent's --label on n2");
    h_expect_error(h_node_labels(h, "n2", "skiff.x=1", NULL), ERR_INVALID,
                   "label_add: skiff.x: the skiff. prefix is reserved");
    h_expect_error(h_node_labels(h, "n2", "=1", NULL), ERR_INVALID, "label_add: empty key");
    h_expect_error(h_node_labels(h, "n2", "a=1", "a"), ERR_INVALID,
                   "label a: both added and removed");
    h_expect_error(h_node_labels(h, "n9", "a=1", NULL), ERR_NOT_FOUND, "no such node: n9");
    assert_null(spec_label(h, "n2", "a"));

    /* Added: the pending tasks land there; the controller's zone wins over
     * the agent's, so bees (zone==b) fits nowhere and stops, while engine
     * (engine.labels.zone==b) stays. */
    r = h_expect(h_node_labels(h, "n2", "zone=edge,tier=1", NULL), MSG_NODE_REPLY);
    assert_int_equal(r->node_reply->node->n_spec_labels, 2);
    assert_int_equal(r->node_reply->node->n_labels, 1);
    assert_int_equal(r->node_reply->node->availability, AVAILABILITY_ACTIVE);
    wire_free(r);
    H_RUN_UNTIL(h, h_converged(h, "edge") && h_agent_running(n2, "edge") == 2 &&
                   tasks_in(h, "bees", 0, DESIRED_RUNNING, TASK_PENDING) == 1 &&
                   h_agent_count(n2, "bees", DESIRED_RUNNING) == 0, WAIT_MS);
    assert_int_equal(h_agent_running(n2, "engine"), 1);
    assert_string_equal(spec_label(h, "n2", "zone"), "edge");

    /* Kept across a restart of the controller and the agents' registrations. */
    restart(h);
    H_RUN_UNTIL(h, h_converged(h, "edge"), WAIT_MS);
    assert_string_equal(spec_label(h, "n2", "zone"), "edge");
    assert_string_equal(spec_label(h, "n2", "tier"), "1");
    assert_int_equal(h_agent_running(n2, "edge"), 2);

    /* Moved: n3 takes zone=edge, n2 loses it; edge's tasks go to n3 and
     * bees comes back to n2. */
    wire_free(h_expect(h_node_labels(h, "n3", "zone=edge", NULL), MSG_NODE_REPLY));
    r = h_expect(h_node_labels(h, "n2", NULL, "zone"), MSG_NODE_REPLY);
    assert_int_equal(r->node_reply->node->n_spec_labels, 1);
    wire_free(r);
    H_RUN_UNTIL(h, h_converged(h, "edge") && h_agent_running(n3, "edge") == 2 &&
                   h_agent_count(n2, "edge", DESIRED_RUNNING) == 0 && h_converged(h, "bees") &&
                   h_agent_running(n2, "bees") == 1, WAIT_MS);
    assert_null(spec_label(h, "n2", "zone"));
    assert_int_equal(h_max_per_slot(h, "edge"), 1);
    done(h);
}

/* The id of the agent's task of service in its set (the first), or "". */
static const char *task_of(const h_agent_t *a, const char *service)
{
    for (size_t i = 0; a->set && i < a->set->n_tasks; i++)
        if (strcmp(a->set->tasks[i]->service_name, service) == 0)
            return a->set->tasks[i]->task_id;
    return "";
}

static task_t *task(harness_t *h, const char *id)
{
    task_t *t = model_task_by_id(&h->ctl->model, id);

    if (!t)
        fail_msg("no task %s", id);
    return t;
}

static int node_state(harness_t *h, const char *name)
{
    node_t *n = model_node_by_name(&h->ctl->model, name);

    return n ? (int)n->pb->state : -1;
}

static int no_backend_at(harness_t *h, const char *address)
{
    for (size_t i = 0; i < h->n_agents; i++) {
        const Endpoints *eps = h->agents[i].eps;
        if (!h->agents[i].conn || h->agents[i].deaf || !eps)
            continue;
        for (size_t k = 0; k < eps->n_services; k++)
            for (size_t b = 0; b < eps->services[k]->n_backends; b++)
                if (strcmp(eps->services[k]->backends[b]->address, address) == 0)
                    return 0;
    }
    return 1;
}

/* After a restart, a node not back yet is not down for its silence while
 * the other nodes still come back (thousands of agents, each a TLS
 * handshake on the loop, take longer than the grace): here n1-n4 return
 * one every 100 ms past the grace (2 s plus the heartbeat timeout), n5
 * stays away and is down only once the returns stopped. */
static void test_restart_nodes_returning(void **state)
{
    harness_t *h = cluster(5);

    (void)state;
    create(h, h_spec("web", "web:v1", 5));
    H_RUN_UNTIL(h, h_converged(h, "web"), WAIT_MS);
    H_RUN_UNTIL(h, quiet(h), WAIT_MS);
    h->agents[4].silent = h->agents[4].deaf = 1;
    h_ctl_stop(h);
    h_ctl_start(h);
    h_client_connect(h);
    h_run_for(h, 2100);
    for (size_t i = 0; i < 4; i++) {
        if (!h->agents[i].conn)
            h_agent_connect(h, &h->agents[i]);
        h_run_for(h, 100);
    }
    /* Past the grace (2.3 s after the start), yet the others came back
     * within the heartbeat timeout. */
    assert_int_equal(node_state(h, "n5"), NODE_READY);
    H_RUN_UNTIL(h, node_state(h, "n5") == NODE_DOWN, HB_TIMEOUT_MS + 1000);
    for (size_t i = 0; i < 4; i++) {
        char name[8];
        snprintf(name, sizeof(name), "n%zu", i + 1);
        assert_int_equal(node_state(h, name), NODE_READY);
    }
    done(h);
}

/* A node that stops reporting is down after the heartbeat timeout: its
 * tasks are replaced elsewhere (constraints respected), its endpoints go;
 * a task pinned to it stays, and runs again when it returns, with a set
 * that no longer holds the replaced tasks. */
static void test_node_loss(void **state)
{
    harness_t *h = cluster(3); /* n1 zone=a, n2 zone=b, n3 zone=a */
    h_agent_t *n3 = &h->agents[2];
    ServiceSpec *spec;
    char w3[MODEL_ID_LEN + 1], z3[MODEL_ID_LEN + 1], p3[MODEL_ID_LEN + 1];
    char node_id[MODEL_ID_LEN + 1];
    unsigned sets;

    (void)state;
    spec = h_spec("web", "web:v1", 3);
    h_spec_port(spec, 8080, 80);
    create(h, spec);
    spec = h_spec("za", "za:1", 2);
    pb_push_str(&spec->n_constraints, &spec->constraints, "node.labels.zone==a");
    create(h, spec);
    spec = h_spec("pin", "pin:1", 1);
    pb_push_str(&spec->n_constraints, &spec->constraints, "node.name==n3");
    create(h, spec);
    H_RUN_UNTIL(h, spread_is(h, "web", 1) && h_converged(h, "za") && h_converged(h, "pin") &&
                   h_agent_running(n3, "za") == 1 && backends_are(h, "web", 3), WAIT_MS);
    snprintf(w3, sizeof(w3), "%s", task_of(n3, "web"));
    snprintf(z3, sizeof(z3), "%s", task_of(n3, "za"));
    snprintf(p3, sizeof(p3), "%s", task_of(n3, "pin"));
    snprintf(node_id, sizeof(node_id), "%s", n3->node_id);
    assert_true(*w3 && *z3 && *p3);

    /* n3 goes silent, and what is sent to it is lost. */
    n3->silent = n3->deaf = 1;
    H_RUN_UNTIL(h, node_state(h, "n3") == NODE_DOWN, HB_TIMEOUT_MS + 500);
    /* Its endpoints leave every balancer at once. */
    H_RUN_UNTIL(h, no_backend_at(h, n3->address), 500);
    H_RUN_UNTIL(h, h_converged(h, "web") && h_converged(h, "za") && backends_are(h, "web", 3),
                WAIT_MS);
    assert_int_equal(h_agent_running(&h->agents[0], "web") + h_agent_running(&h->agents[1], "web"),
                     3);
    assert_int_equal(h_agent_running(&h->agents[0], "za"), 2); /* zone a: n1 only */
    assert_int_equal(h_agent_running(&h->agents[1], "za"), 0);
    assert_int_equal(task(h, w3)->pb->state, TASK_ORPHANED);
    assert_int_equal(task(h, w3)->pb->desired_state, DESIRED_SHUTDOWN);
    assert_int_equal(task(h, z3)->pb->state, TASK_ORPHANED);
    assert_int_equal(task(h, z3)->pb->desired_state, DESIRED_SHUTDOWN);
    /* The pinned task has nowhere to go: it stays, neither replaced
     * elsewhere nor stopped. */
    h_run_for(h, 150);
    assert_int_equal(task(h, p3)->pb->desired_state, DESIRED_RUNNING);
    assert_int_equal(task(h, p3)->pb->state, TASK_ORPHANED);
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(h_agent_count(&h->agents[i], "pin", DESIRED_RUNNING), 0);
    assert_int_equal(h_max_per_slot(h, "web"), 1);
    assert_int_equal(h_max_per_slot(h, "za"), 1);
    assert_int_equal(tasks_in(h, "pin", 0, DESIRED_RUNNING, TASK_RUNNING), 0);

    restart(h); /* n3 stays away: its agent is silent */
    H_RUN_UNTIL(h, node_state(h, "n3") == NODE_DOWN, HB_TIMEOUT_MS + 500);
    assert_int_equal(task(h, p3)->pb->desired_state, DESIRED_RUNNING);

    /* n3 comes back (its agent reconnects, with its containers). */
    h_agent_disconnect(h, n3);
    n3->silent = n3->deaf = 0;
    sets = n3->n_sets;
    h_agent_connect(h, n3);
    assert_string_equal(n3->node_id, node_id); /* its node, back */
    H_RUN_UNTIL(h, n3->n_sets > sets, WAIT_MS);
    /* Its first set no longer holds the replaced tasks; it keeps the pinned one. */
    assert_false(h_agent_has(n3, w3));
    assert_false(h_agent_has(n3, z3));
    assert_true(h_agent_has(n3, p3));
    H_RUN_UNTIL(h, node_state(h, "n3") == NODE_READY && h_converged(h, "pin") &&
                   h_max_per_slot(h, "pin") == 1 && task(h, p3)->pb->state == TASK_RUNNING,
                WAIT_MS);
    h_run_for(h, 100);
    assert_false(h_agent_has(n3, w3));
    assert_false(h_agent_has(n3, z3));
    assert_null(h_agent_task(n3, w3)); /* their containers are removed */
    assert_null(h_agent_task(n3, z3));
    H_RUN_UNTIL(h, task(h, w3)->pb->state == TASK_SHUTDOWN && task(h, z3)->pb->state ==
                   TASK_SHUTDOWN, WAIT_MS);
    assert_int_equal(tasks_in(h, "pin", 0, -1, -1), 1);
    assert_int_equal(h_max_per_slot(h, "web"), 1);
    assert_int_equal(h_max_per_slot(h, "za"), 1);
    assert_int_equal(h_max_per_slot(h, "pin"), 1);
    assert_true(h_converged(h, "web") && h_converged(h, "za"));
    restart(h);
    done(h);
}

/* A node that is down can be removed; its tasks go elsewhere, its
 * certificate is revoked, and an agent that joins under its name later is
 * a new node. */
static void test_node_remove(void **state)
{
    harness_t *h = cluster(3);
    h_agent_t *n2 = &h->agents[1];
    ServiceSpec *spec = h_spec("web", "web:v1", 3);
    char old_id[MODEL_ID_LEN + 1];
    Envelope *r;

    (void)state;
    create(h, spec);
    H_RUN_UNTIL(h, spread_is(h, "web", 1), WAIT_MS);
    snprintf(old_id, sizeof(old_id), "%s", n2->node_id);
    n2->silent = 1;
    h_agent_disconnect(h, n2);
    H_RUN_UNTIL(h, node_state(h, "n2") == NODE_DOWN, HB_TIMEOUT_MS + 500);
    r = h_expect(h_node_remove(h, "n2", 0), MSG_OK);
    wire_free(r);
    r = h_expect(h_node_list(h), MSG_NODE_LIST_REPLY);
    assert_int_equal(r->node_list_reply->n_nodes, 2);
    wire_free(r);
    H_RUN_UNTIL(h, h_converged(h, "web"), WAIT_MS);
    assert_int_equal(h_agent_running(&h->agents[0], "web") + h_agent_running(&h->agents[2], "web"),
                     3);
    assert_int_equal(h_max_per_slot(h, "web"), 1);
    restart(h);

    /* Its certificate is refused at the handshake, after a restart too. */
    n2->silent = 0;
    assert_false(h_agent_connect_try(h, n2));
    h_agent_forget(n2); /* its state dir emptied: it joins again */
    h_agent_connect(h, n2);
    assert_string_not_equal(n2->node_id, old_id);
    r = h_expect(h_node_list(h), MSG_NODE_LIST_REPLY);
    assert_int_equal(r->node_list_reply->n_nodes, 3);
    wire_free(r);

    /* Another agent joins under n1's name: refused, n1 stays as it was. */
    {
        h_agent_t *twin = h_agent_add(h, "n1", "127.0.0.21", "zone=a");
        h_agent_t *n1 = &h->agents[0];
        int closed = n1->closed;
        assert_int_equal(h_agent_join(h, twin, h->join_token), ERR_EXISTS);
        assert_false(h_agent_connect_try(h, twin));
        h_run_for(h, 100);
        assert_int_equal(n1->closed, closed);
        assert_true(n1->registered);
        assert_string_equal(model_node_by_name(&h->ctl->model, "n1")->pb->address, "127.0.0.11");
        h_agent_drop_last(h);
    }
    done(h);
}

/* Endpoints list running tasks on ready nodes, healthy where checked,
 * with the host ports the agents reported. */
static void test_endpoints(void **state)
{
    harness_t *h = cluster(2);
    h_agent_t *n1 = &h->agents[0], *n2 = &h->agents[1];
    ServiceSpec *spec;
    h_task_t *t;
    const ServiceEndpoints *se = NULL;

    (void)state;
    n2->manual = 1; /* the test reports for n2 */
    spec = h_spec("api", "api:1", 2);
    h_spec_port(spec, 8080, 80);
    pb_push_str(&spec->health->n_test, &spec->health->test, "CMD");
    pb_push_str(&spec->health->n_test, &spec->health->test, "true");
    create(h, spec);
    spec = h_spec("cache", "cache:1", 2);
    spec->expose = malloc(sizeof(*spec->expose));
    spec->expose[0] = 6379;
    spec->n_expose = 1;
    create(h, spec);
    spec = h_spec("worker", "worker:1", 2);
    create(h, spec);

    H_RUN_UNTIL(h, h_agent_running(n1, "api") == 1 && h_agent_count(n2, "api", DESIRED_RUNNING) == 1 &&
                   h_agent_count(n2, "cache", DESIRED_RUNNING) == 1 &&
                   h_agent_backends(n1, "api") == 1 && h_agent_backends(n1, "cache") == 1,
                WAIT_MS);
    assert_int_equal(h_agent_backends(n1, "worker"), -1); /* no ports: not there */
    for (size_t k = 0; k < n1->eps->n_services; k++)
        if (strcmp(n1->eps->services[k]->service_name, "cache") == 0)
            se = n1->eps->services[k];
    assert_non_null(se);
    assert_int_equal(se->n_ports, 1);
    assert_int_equal(se->ports[0]->port, 6379);
    assert_true(se->ports[0]->internal);

    /* n2's api task: running but starting its health check: no backend. */
    t = h_agent_task(n2, task_of(n2, "api"));
    assert_non_null(t);
    t->state = TASK_RUNNING;
    t->health = HEALTH_STARTING;
    h_agent_report(h, n2, t, 0);
    h_run_for(h, 150);
    assert_int_equal(h_agent_backends(n1, "api"), 1);
    assert_int_equal(h_agent_backends(n2, "api"), 1);
    assert_false(h_agent_backend(n1, "api", t->id));

    t->health = HEALTH_HEALTHY;
    h_agent_report(h, n2, t, 0);
    H_RUN_UNTIL(h, h_agent_backend(n1, "api", t->id) && h_agent_backend(n2, "api", t->id),
                WAIT_MS);
    for (size_t k = 0; k < n1->eps->n_services; k++) {
        se = n1->eps->services[k];
        if (strcmp(se->service_name, "api") != 0)
            continue;
        assert_int_equal(se->n_ports, 1);
        assert_int_equal(se->ports[0]->port, 8080);
        assert_int_equal(se->ports[0]->target, 80);
        assert_false(se->ports[0]->internal);
        for (size_t b = 0; b < se->n_backends; b++) {
            if (strcmp(se->backends[b]->task_id, t->id) != 0)
                continue;
            assert_string_equal(se->backends[b]->address, n2->address);
            assert_string_equal(se->backends[b]->node_id, n2->node_id);
            assert_int_equal(se->backends[b]->n_ports, 1);
            assert_int_equal(se->backends[b]->ports[0]->target, 80);
            assert_int_equal(se->backends[b]->ports[0]->host_port, t->host_ports[0]);
        }
    }

    /* Unhealthy: out; healthy again: in. */
    t->health = HEALTH_UNHEALTHY;
    h_agent_report(h, n2, t, 0);
    H_RUN_UNTIL(h, !h_agent_backend(n1, "api", t->id), WAIT_MS);
    assert_int_equal(h_agent_backends(n1, "api"), 1);
    t->health = HEALTH_HEALTHY;
    h_agent_report(h, n2, t, 0);
    H_RUN_UNTIL(h, h_agent_backend(n1, "api", t->id), WAIT_MS);

    /* A task that is not running (restarting) is no backend. */
    t->state = TASK_STARTING;
    t->restarts = 1;
    h_agent_report(h, n2, t, 0);
    H_RUN_UNTIL(h, !h_agent_backend(n1, "api", t->id), WAIT_MS);
    t->state = TASK_RUNNING;
    h_agent_report(h, n2, t, 0);
    H_RUN_UNTIL(h, h_agent_backend(n1, "api", t->id), WAIT_MS);

    /* n2's cache task runs (no check): a backend. */
    t = h_agent_task(n2, task_of(n2, "cache"));
    t->state = TASK_RUNNING;
    h_agent_report(h, n2, t, 0);
    H_RUN_UNTIL(h, h_agent_backends(n1, "cache") == 2, WAIT_MS);

    /* Scaling down: the tasks told to stop leave the endpoints in the same
     * push (the harness checks the frame that follows). */
    {
        unsigned checks = h->leave_checks;
        scale(h, "cache", 1);
        H_RUN_UNTIL(h, h_agent_backends(n1, "cache") == 1 && h_agent_backends(n2, "cache") == 1,
                    WAIT_MS);
        assert_int_equal(h->leave_checks, checks + 1);
    }

    /* n2 is lost: its backends leave at once. */
    n2->silent = n2->deaf = 1;
    H_RUN_UNTIL(h, node_state(h, "n2") == NODE_DOWN, HB_TIMEOUT_MS + 500);
    H_RUN_UNTIL(h, no_backend_at(h, n2->address), 300);
    done(h);
}

/* service rm: its tasks are told to stop, it leaves the endpoints and the
 * list at once, and once its tasks stopped it is gone from the store; its
 * name is free again. ServiceList lists services by name. */
static void test_remove_and_list(void **state)
{
    harness_t *h = cluster(2);
    ServiceSpec *spec;
    Envelope *r;
    char id[MODEL_ID_LEN + 1];

    (void)state;
    spec = h_spec("web", "web:v1", 4);
    h_spec_port(spec, 8080, 80);
    create(h, spec);
    create(h, h_spec("db", "db:1", 1));
    create(h, h_spec("api", "api:1", 2));
    H_RUN_UNTIL(h, h_converged(h, "web") && h_converged(h, "db") && h_converged(h, "api") &&
                   backends_are(h, "web", 4), WAIT_MS);
    r = h_expect(h_service_list(h), MSG_SERVICE_LIST_REPLY);
    assert_int_equal(r->service_list_reply->n_services, 3);
    assert_string_equal(r->service_list_reply->services[0]->spec->name, "api");
    assert_string_equal(r->service_list_reply->services[1]->spec->name, "db");
    assert_string_equal(r->service_list_reply->services[2]->spec->name, "web");
    assert_int_equal(r->service_list_reply->services[2]->running_tasks, 4);
    wire_free(r);
    snprintf(id, sizeof(id), "%s", h_service(h, "web")->pb->id);

    /* By a unique prefix of its id. */
    r = h_expect(h_service_remove(h, (char[]){ id[0], id[1], id[2], id[3], id[4], id[5], 0 }),
                 MSG_OK);
    wire_free(r);
    h_expect_error(h_service_get(h, "web"), ERR_NOT_FOUND, "no such service: web");
    r = h_expect(h_service_list(h), MSG_SERVICE_LIST_REPLY);
    assert_int_equal(r->service_list_reply->n_services, 2);
    wire_free(r);
    H_RUN_UNTIL(h, backends_are(h, "web", -1), WAIT_MS); /* out of the endpoints */
    H_RUN_UNTIL(h, h_agent_count(&h->agents[0], "web", DESIRED_RUNNING) +
                   h_agent_count(&h->agents[0], "web", DESIRED_SHUTDOWN) +
                   h_agent_count(&h->agents[1], "web", DESIRED_RUNNING) +
                   h_agent_count(&h->agents[1], "web", DESIRED_SHUTDOWN) == 0, WAIT_MS);
    for (size_t i = 0; i < h->n_seen; i++)
        assert_int_equal(h->seen[i].told_stop, strcmp(h->seen[i].service, "web") == 0);
    H_RUN_UNTIL(h, model_service_by_id(&h->ctl->model, id) == NULL && quiet(h), WAIT_MS);
    assert_int_equal(sqlite3_count(h, "SELECT count(*) FROM services"), 2);
    assert_int_equal(sqlite3_count(h, "SELECT count(*) FROM tasks"), 3);
    restart(h);
    assert_null(model_service_by_id(&h->ctl->model, id));

    /* A client that goes away before its reply: the change stands, and
     * the reply waiting for the commit goes nowhere. */
    {
        Envelope env = PB_ENVELOPE_INIT;
        ServiceCreate m = PB_SERVICE_CREATE_INIT;
        m.spec = h_spec("late", "late:1", 1);
        env.id = ++h->next_id;
        env.msg_case = MSG_SERVICE_CREATE;
        env.service_create = &m;
        assert_int_equal(conn_send(h->client, &env), 0);
        conn_close(h->client, 0); /* after the request is written */
        pb_free(m.spec);
        H_RUN_UNTIL(h, !h->client, WAIT_MS);
        H_RUN_UNTIL(h, h_converged(h, "late"), WAIT_MS);
        h_client_connect(h);
    }

    /* The name is free; the port too. */
    spec = h_spec("web", "web:v9", 1);
    h_spec_port(spec, 8080, 80);
    create(h, spec);
    H_RUN_UNTIL(h, h_converged(h, "web") && backends_are(h, "web", 1), WAIT_MS);
    assert_string_not_equal(h_service(h, "web")->pb->id, id);
    done(h);
}

/* ------------------------------------------------------ rolling updates */

/* The fewest backends of a service any agent was pushed, and the fewest
 * ready tasks the controller had, while armed. */
typedef struct watch {
    const char *service;
    int armed;
    int min_backends;
    int min_ready;
} watch_t;

static void watch_push(harness_t *h, h_agent_t *a, const Envelope *env)
{
    watch_t *w = h->test_data;
    int n;

    if (!w || !w->armed || env->msg_case != MSG_ENDPOINTS || !a->registered)
        return;
    n = h_agent_backends(a, w->service);
    if (n < w->min_backends)
        w->min_backends = n;
}

/* Ready tasks of any version: desired running, running, healthy where
 * checked, on a ready node. */
static int ready_any(harness_t *h, const char *name)
{
    service_t *svc = h_service(h, name);
    int n = 0;
    task_t *t;

    DL_FOREACH2(svc->tasks, t, svc_next)
        n += t->pb->desired_state == DESIRED_RUNNING && model_task_ready(t) && t->node &&
             t->node->pb->state == NODE_READY;
    return n;
}

#define RUN_WATCHING(h, w, cond, ms)                                              \
    do {                                                                          \
        uint64_t deadline_ = uv_hrtime() / 1000000 + (uint64_t)(ms);              \
        while (!(cond)) {                                                         \
            int ready_;                                                           \
            if (uv_hrtime() / 1000000 > deadline_)                                \
                fail_msg("%s:%d: timed out waiting for %s", __FILE__, __LINE__,   \
                         #cond);                                                  \
            h_run_once(h);                                                        \
            ready_ = ready_any(h, (w)->service);                                  \
            if ((w)->armed && ready_ < (w)->min_ready)                            \
                (w)->min_ready = ready_;                                          \
        }                                                                         \
    } while (0)

static UpdateState update_state(harness_t *h, const char *name)
{
    return h_service(h, name)->pb->update_status->state;
}

static ServiceSpec *web_spec(uint32_t replicas, UpdateOrder order, FailureAction action)
{
    ServiceSpec *spec = h_spec("web", "web:v1", replicas);

    h_spec_port(spec, 8080, 80);
    spec->update->parallelism = 1;
    spec->update->order = order;
    spec->update->failure_action = action;
    spec->rollback->parallelism = 1;
    spec->rollback->order = order;
    return spec;
}

/* Sends an update of web to image (read-modify-write); returns the reply's
 * update state. */
static UpdateState update_image(harness_t *h, const char *image)
{
    Service *s = get(h, "web");
    Envelope *r;
    UpdateState st;

    pb_set_str(&s->spec->image, image);
    r = h_expect(h_service_update(h, "web", s->spec, s->version), MSG_SERVICE_REPLY);
    assert_int_equal(r->service_reply->service->version, s->version + 1);
    assert_string_equal(r->service_reply->service->spec->image, image);
    st = r->service_reply->service->update_status->state;
    wire_free(r);
    pb_free(s);
    return st;
}

/* Every task an agent should run is of image, and runs. */
static int all_on(harness_t *h, const char *image, size_t replicas)
{
    size_t n = 0;

    for (size_t i = 0; i < h->n_agents; i++) {
        const h_agent_t *a = &h->agents[i];
        if (a->deaf)
            continue; /* what it has is stale */
        for (size_t k = 0; a->set && k < a->set->n_tasks; k++) {
            const Assignment *as = a->set->tasks[k];
            const h_task_t *t = h_agent_task((h_agent_t *)a, as->task_id);
            if (strcmp(as->service_name, "web") != 0 || as->desired_state != DESIRED_RUNNING)
                continue;
            if (strcmp(as->spec->image, image) != 0 || !t || t->state != TASK_RUNNING)
                return 0;
            n++;
        }
    }
    return n == replicas;
}

static void rolling_update(UpdateOrder order, int min_ready)
{
    harness_t *h = cluster(3);
    watch_t w = { .service = "web", .min_backends = 99, .min_ready = 99 };
    Service *s;

    create(h, web_spec(3, order, FAILURE_PAUSE));
    H_RUN_UNTIL(h, h_converged(h, "web") && backends_are(h, "web", 3), WAIT_MS);
    h->test_data = &w;
    h->on_push = watch_push;
    w.armed = 1;

    assert_int_equal(update_image(h, "web:v2"), UPDATE_UPDATING);
    RUN_WATCHING(h, &w, update_state(h, "web") == UPDATE_COMPLETED && h_converged(h, "web") &&
                 all_on(h, "web:v2", 3) && backends_are(h, "web", 3), WAIT_MS);
    assert_true(w.min_backends >= min_ready);
    assert_true(w.min_ready >= min_ready);
    /* A stop-first update with parallelism 1 does go down to 2 at times;
     * start-first never does. */
    if (order == ORDER_STOP_FIRST)
        assert_int_equal(w.min_ready, 2);
    for (uint32_t slot = 1; slot <= 3; slot++) {
        assert_int_equal(h_seen_count(h, "web", slot, 1), 1);
        assert_int_equal(h_seen_count(h, "web", slot, 2), 1);
    }
    assert_int_equal(h->n_seen, 6);
    assert_true(h->leave_checks >= 3);
    s = get(h, "web");
    assert_int_equal(s->version, 2);
    assert_int_equal(s->update_status->state, UPDATE_COMPLETED);
    assert_string_equal(s->update_status->message, "update completed");
    assert_string_equal(s->previous_spec->image, "web:v1");
    assert_int_equal(s->running_tasks, 3);
    pb_free(s);
    assert_int_equal(tasks_in(h, "web", 1, DESIRED_SHUTDOWN, TASK_SHUTDOWN), 3);
    assert_int_equal(tasks_in(h, "web", 0, DESIRED_RUNNING, TASK_RUNNING), 3);
    restart(h);
    H_RUN_UNTIL(h, h_converged(h, "web") && all_on(h, "web:v2", 3), WAIT_MS);

    /* Rollback on demand: back to v1, each slot once, by the rollback
     * config. */
    w.min_backends = w.min_ready = 99;
    {
        Envelope *r = h_expect(h_service_rollback(h, "web"), MSG_SERVICE_REPLY);
        assert_int_equal(r->service_reply->service->update_status->state, UPDATE_ROLLBACK_STARTED);
        assert_int_equal(r->service_reply->service->version, 3);
        assert_string_equal(r->service_reply->service->spec->image, "web:v1");
        wire_free(r);
    }
    RUN_WATCHING(h, &w, update_state(h, "web") == UPDATE_ROLLBACK_COMPLETED &&
                 h_converged(h, "web") && all_on(h, "web:v1", 3), WAIT_MS);
    assert_true(w.min_backends >= min_ready);
    assert_true(w.min_ready >= min_ready);
    for (uint32_t slot = 1; slot <= 3; slot++)
        assert_int_equal(h_seen_count(h, "web", slot, 3), 1);
    assert_int_equal(h->n_seen, 9);
    done(h);
}

/* Distinct tasks of web assigned for slot whose image is image. */
static size_t seen_image(harness_t *h, uint32_t slot, const char *image)
{
    service_t *svc = h_service(h, "web");
    size_t n = 0;

    for (size_t i = 0; i < h->n_seen; i++) {
        const ServiceSpec *spec;
        if (strcmp(h->seen[i].service, "web") != 0 || h->seen[i].slot != slot)
            continue;
        spec = model_service_spec(svc, h->seen[i].spec_version);
        if (!spec)
            fail_msg("spec version %llu of a task seen is gone",
                     (unsigned long long)h->seen[i].spec_version);
        n += strcmp(spec->image, image) == 0;
    }
    return n;
}

/* An update that also scales; a scale in the middle of an update; a
 * rollback asked for in the middle of an update. */
static void test_update_and_scale(void **state)
{
    harness_t *h = cluster(3);
    Service *s;
    Envelope *r;

    (void)state;
    create(h, web_spec(3, ORDER_STOP_FIRST, FAILURE_PAUSE));
    H_RUN_UNTIL(h, h_converged(h, "web"), WAIT_MS);

    /* v2 and 5 replicas at once: slots 4 and 5 start on v2. */
    s = get(h, "web");
    pb_set_str(&s->spec->image, "web:v2");
    s->spec->replicas = 5;
    r = h_expect(h_service_update(h, "web", s->spec, s->version), MSG_SERVICE_REPLY);
    assert_int_equal(r->service_reply->service->update_status->state, UPDATE_UPDATING);
    wire_free(r);
    pb_free(s);
    H_RUN_UNTIL(h, update_state(h, "web") == UPDATE_COMPLETED && h_converged(h, "web") &&
                   all_on(h, "web:v2", 5), WAIT_MS);
    for (uint32_t slot = 1; slot <= 5; slot++) {
        assert_int_equal(h_seen_count(h, "web", slot, 1), slot <= 3);
        assert_int_equal(h_seen_count(h, "web", slot, 2), 1);
    }

    /* v3, scaled down to 2 once the update has begun. */
    assert_int_equal(update_image(h, "web:v3"), UPDATE_UPDATING);
    H_RUN_UNTIL(h, seen_image(h, 1, "web:v3") == 1, WAIT_MS);
    scale(h, "web", 2);
    H_RUN_UNTIL(h, update_state(h, "web") == UPDATE_COMPLETED && h_converged(h, "web") &&
                   all_on(h, "web:v3", 2), WAIT_MS);
    for (uint32_t slot = 1; slot <= 5; slot++)
        assert_true(seen_image(h, slot, "web:v3") == (slot <= 2));
    assert_int_equal(h_max_per_slot(h, "web"), 1);

    /* v4, rolled back by hand in the middle: back to v3. */
    {
        watch_t w = { .service = "web", .min_backends = 99, .min_ready = 99, .armed = 1 };
        h->test_data = &w;
        h->on_push = watch_push;
        assert_int_equal(update_image(h, "web:v4"), UPDATE_UPDATING);
        H_RUN_UNTIL(h, seen_image(h, 1, "web:v4") == 1, WAIT_MS);
        r = h_expect(h_service_rollback(h, "web"), MSG_SERVICE_REPLY);
        assert_string_equal(r->service_reply->service->spec->image, "web:v3");
        assert_int_equal(r->service_reply->service->spec->replicas, 2);
        wire_free(r);
        RUN_WATCHING(h, &w, update_state(h, "web") == UPDATE_ROLLBACK_COMPLETED &&
                     h_converged(h, "web") && all_on(h, "web:v3", 2), WAIT_MS);
        assert_true(w.min_backends >= 1);
        h->on_push = NULL;
    }
    assert_int_equal(seen_image(h, 1, "web:v4"), 1);
    assert_int_equal(seen_image(h, 2, "web:v4"), 0);
    assert_int_equal(seen_image(h, 2, "web:v3"), 1); /* never touched */
    assert_int_equal(h_max_per_slot(h, "web"), 1);

    /* --force: the same spec, every task replaced once. */
    {
        size_t seen = h->n_seen;
        s = get(h, "web");
        s->spec->force_update++;
        r = h_expect(h_service_update(h, "web", s->spec, s->version), MSG_SERVICE_REPLY);
        assert_int_equal(r->service_reply->service->update_status->state, UPDATE_UPDATING);
        wire_free(r);
        pb_free(s);
        H_RUN_UNTIL(h, update_state(h, "web") == UPDATE_COMPLETED && h_converged(h, "web") &&
                       all_on(h, "web:v3", 2), WAIT_MS);
        assert_int_equal(h->n_seen, seen + 2);
        assert_int_equal(seen_image(h, 1, "web:v3"), 3); /* v3, rollback to v3, forced */
        assert_int_equal(seen_image(h, 2, "web:v3"), 2);
    }
    restart(h);
    done(h);
}

/* A node is lost in the middle of an update: its slot is replaced on the
 * new spec, and the update completes. */
/* An agent that comes back reports HEALTH_NONE for the containers it finds
 * (its HTTP probes come with the set, after the registration): the last
 * health the controller knew stands, and no backend leaves the balancers. */
static void test_register_keeps_health(void **state)
{
    harness_t *h = cluster(2);
    h_agent_t *n1 = &h->agents[0];
    ServiceSpec *spec = h_spec("web", "web:v1", 2);

    (void)state;
    h_spec_port(spec, 8080, 80);
    pb_set_str(&spec->health->http_path, "/health");
    create(h, spec);
    H_RUN_UNTIL(h, spread_is(h, "web", 1) && backends_are(h, "web", 2), WAIT_MS);
    assert_int_equal(n1->n_tasks, 1);
    n1->tasks[0].health = HEALTH_NONE;
    h_agent_disconnect(h, n1);
    h_agent_connect(h, n1);
    H_RUN_UNTIL(h, n1->registered, WAIT_MS);
    assert_int_equal(task(h, n1->tasks[0].id)->pb->health, HEALTH_HEALTHY);
    assert_int_equal(h_agent_backends(&h->agents[1], "web"), 2);
    done(h);
}

static void test_node_loss_during_update(void **state)
{
    harness_t *h = cluster(3);
    ServiceSpec *spec = web_spec(3, ORDER_STOP_FIRST, FAILURE_PAUSE);
    h_agent_t *n3 = &h->agents[2];

    (void)state;
    spec->update->monitor_ms = 300;
    create(h, spec);
    H_RUN_UNTIL(h, spread_is(h, "web", 1) && backends_are(h, "web", 3), WAIT_MS);
    assert_int_equal(update_image(h, "web:v2"), UPDATE_UPDATING);
    H_RUN_UNTIL(h, h_seen_count(h, "web", 1, 2) == 1, WAIT_MS);
    n3->silent = n3->deaf = 1;
    H_RUN_UNTIL(h, update_state(h, "web") == UPDATE_COMPLETED && h_converged(h, "web") &&
                   all_on(h, "web:v2", 3), WAIT_MS);
    assert_int_equal(node_state(h, "n3"), NODE_DOWN);
    for (uint32_t slot = 1; slot <= 3; slot++)
        assert_int_equal(h_seen_count(h, "web", slot, 2), 1);
    assert_int_equal(h_max_per_slot(h, "web"), 1);
    /* It comes back: nothing of web for it to run. */
    h_agent_disconnect(h, n3);
    n3->silent = n3->deaf = 0;
    h_agent_connect(h, n3);
    H_RUN_UNTIL(h, node_state(h, "n3") == NODE_READY && h_agent_count(n3, "web", DESIRED_RUNNING) +
                   h_agent_count(n3, "web", DESIRED_SHUTDOWN) == 0, WAIT_MS);
    assert_true(h_converged(h, "web"));
    restart(h);
    done(h);
}

static void test_update_stop_first(void **state)
{
    (void)state;
    rolling_update(ORDER_STOP_FIRST, 2);
}

static void test_update_start_first(void **state)
{
    (void)state;
    rolling_update(ORDER_START_FIRST, 3);
}

/* What the fake agents do with the new image web:bad. */
static void fail_bad(harness_t *h, h_agent_t *a, const Assignment *as, h_task_t *t)
{
    (void)a;
    if (strcmp(as->spec->image, "web:bad") != 0)
        return;
    if (*(int *)h->test_data) {
        t->state = TASK_FAILED; /* the restart policy gave up */
        t->exit_code = 1;
        t->health = HEALTH_NONE;
    } else {
        t->restarts = 1; /* it runs, but it restarted */
    }
}

static void failing_update_rollback(int failed)
{
    harness_t *h = cluster(3);
    Service *s;

    create(h, web_spec(3, ORDER_STOP_FIRST, FAILURE_ROLLBACK));
    H_RUN_UNTIL(h, h_converged(h, "web") && backends_are(h, "web", 3), WAIT_MS);
    h->test_data = &failed;
    h->policy = fail_bad;
    assert_int_equal(update_image(h, "web:bad"), UPDATE_UPDATING);
    H_RUN_UNTIL(h, update_state(h, "web") != UPDATE_UPDATING, WAIT_MS);
    assert_int_equal(update_state(h, "web"), UPDATE_ROLLBACK_STARTED);
    assert_non_null(strstr(h_service(h, "web")->pb->update_status->message,
                           "rollback started: 1 task failed during the update"));
    /* 2.5s: a failed task's slot waits a backoff of 1s. */
    H_RUN_UNTIL(h, update_state(h, "web") == UPDATE_ROLLBACK_COMPLETED && h_converged(h, "web") &&
                   all_on(h, "web:v1", 3), WAIT_MS);
    s = get(h, "web");
    assert_int_equal(s->version, 3);
    assert_string_equal(s->spec->image, "web:v1");
    assert_string_equal(s->previous_spec->image, "web:bad");
    assert_string_equal(s->update_status->message, "rollback completed");
    pb_free(s);
    /* Only slot 1 ever got the new version; the others never stopped. */
    assert_int_equal(h_seen_count(h, "web", 1, 2), 1);
    assert_int_equal(h_seen_count(h, "web", 2, 2) + h_seen_count(h, "web", 3, 2), 0);
    assert_int_equal(h_seen_count(h, "web", 2, 1), 1);
    assert_int_equal(h_seen_count(h, "web", 3, 1), 1);
    assert_int_equal(tasks_in(h, "web", 0, DESIRED_RUNNING, TASK_RUNNING), 3);
    if (failed)
        assert_int_equal(tasks_in(h, "web", 1, DESIRED_SHUTDOWN, TASK_FAILED), 1);
    restart(h);
    h_run_for(h, 100);
    assert_true(h_converged(h, "web") && all_on(h, "web:v1", 3));
    done(h);
}

static void test_update_failed_rollback(void **state)
{
    (void)state;
    failing_update_rollback(1);
}

static void test_update_restarts_rollback(void **state)
{
    (void)state;
    failing_update_rollback(0);
}

static void test_update_pause_resume(void **state)
{
    harness_t *h = cluster(3);
    int failed = 1;
    size_t seen;
    Service *s;
    Envelope *r;

    (void)state;
    create(h, web_spec(3, ORDER_STOP_FIRST, FAILURE_PAUSE));
    H_RUN_UNTIL(h, h_converged(h, "web") && backends_are(h, "web", 3), WAIT_MS);
    h->test_data = &failed;
    h->policy = fail_bad;
    assert_int_equal(update_image(h, "web:bad"), UPDATE_UPDATING);
    H_RUN_UNTIL(h, update_state(h, "web") == UPDATE_PAUSED, WAIT_MS);
    assert_non_null(strstr(h_service(h, "web")->pb->update_status->message,
                           "update paused: 1 task failed during the update"));
    /* Paused: the other slots stay as they were. */
    seen = h->n_seen;
    h_run_for(h, 200);
    assert_int_equal(update_state(h, "web"), UPDATE_PAUSED);
    assert_int_equal(h->n_seen, seen);
    assert_int_equal(h_seen_count(h, "web", 2, 2) + h_seen_count(h, "web", 3, 2), 0);
    assert_int_equal(ready_any(h, "web"), 2);
    restart(h);
    assert_int_equal(update_state(h, "web"), UPDATE_PAUSED);

    /* The image is fixed (same tag); the same spec again resumes. */
    h->policy = NULL;
    s = get(h, "web");
    r = h_expect(h_service_update(h, "web", s->spec, s->version), MSG_SERVICE_REPLY);
    assert_int_equal(r->service_reply->service->version, s->version);
    assert_int_equal(r->service_reply->service->update_status->state, UPDATE_UPDATING);
    assert_string_equal(r->service_reply->service->update_status->message, "update resumed");
    wire_free(r);
    pb_free(s);
    H_RUN_UNTIL(h, update_state(h, "web") == UPDATE_COMPLETED && h_converged(h, "web") &&
                   all_on(h, "web:bad", 3), WAIT_MS);
    assert_int_equal(h_seen_count(h, "web", 2, 2), 1);
    assert_int_equal(h_seen_count(h, "web", 3, 2), 1);
    assert_true(h_seen_count(h, "web", 1, 2) >= 2); /* the failed one, and its successor */
    done(h);
}

/* ------------------------------------------------------------ durability */

/* kill -9 of the controller in the middle of an update, twice: the update
 * goes on from where it was, no slot updated twice or skipped; a restart
 * without changes creates nothing. */
static void test_kill_during_update(void **state)
{
    harness_t *h = cluster(3);
    ServiceSpec *spec = web_spec(3, ORDER_STOP_FIRST, FAILURE_PAUSE);
    size_t seen;

    (void)state;
    spec->update->monitor_ms = 100;
    create(h, spec);
    H_RUN_UNTIL(h, h_converged(h, "web") && backends_are(h, "web", 3), WAIT_MS);
    assert_int_equal(update_image(h, "web:v2"), UPDATE_UPDATING);

    for (uint32_t slot = 1; slot <= 2; slot++) {
        H_RUN_UNTIL(h, h_seen_count(h, "web", slot, 2) == 1, WAIT_MS);
        h_ctl_kill(h);
        h_ctl_start(h);
        assert_int_equal(update_state(h, "web"), UPDATE_UPDATING);
        assert_int_equal(h_service(h, "web")->pb->version, 2);
        for (size_t i = 0; i < h->n_agents; i++)
            h_agent_connect(h, &h->agents[i]);
        h_client_connect(h);
    }
    H_RUN_UNTIL(h, update_state(h, "web") == UPDATE_COMPLETED && h_converged(h, "web") &&
                   all_on(h, "web:v2", 3), WAIT_MS);
    for (uint32_t slot = 1; slot <= 3; slot++) {
        assert_int_equal(h_seen_count(h, "web", slot, 1), 1);
        assert_int_equal(h_seen_count(h, "web", slot, 2), 1);
    }
    assert_int_equal(h_max_per_slot(h, "web"), 1);

    /* A restart with nothing changed: the same services and tasks, and no
     * task created. */
    seen = h->n_seen;
    restart(h);
    h_run_for(h, 200);
    assert_true(h_converged(h, "web"));
    assert_int_equal(h->n_seen, seen);
    assert_int_equal(HASH_COUNT(h->ctl->model.tasks), 6);
    done(h);
}

/* kill -9 at moments that fall anywhere (a fixed sequence of offsets),
 * six times during an update: it still ends with each slot updated once. */
static void test_kill_anywhere(void **state)
{
    static const int offsets_ms[] = { 7, 61, 23, 113, 41, 3, 89 };
    harness_t *h = cluster(3);
    ServiceSpec *spec = web_spec(3, ORDER_START_FIRST, FAILURE_PAUSE);

    (void)state;
    spec->update->monitor_ms = 100;
    create(h, spec);
    H_RUN_UNTIL(h, h_converged(h, "web") && backends_are(h, "web", 3), WAIT_MS);
    assert_int_equal(update_image(h, "web:v2"), UPDATE_UPDATING);
    for (size_t k = 0; k < sizeof(offsets_ms) / sizeof(offsets_ms[0]); k++) {
        if (update_state(h, "web") != UPDATE_UPDATING)
            break;
        h_run_for(h, offsets_ms[k]);
        h_ctl_kill(h);
        h_ctl_start(h);
        for (size_t i = 0; i < h->n_agents; i++)
            h_agent_connect(h, &h->agents[i]);
        h_client_connect(h);
    }
    H_RUN_UNTIL(h, update_state(h, "web") == UPDATE_COMPLETED && h_converged(h, "web") &&
                   all_on(h, "web:v2", 3), WAIT_MS);
    for (uint32_t slot = 1; slot <= 3; slot++) {
        assert_int_equal(h_seen_count(h, "web", slot, 1), 1);
        assert_int_equal(h_seen_count(h, "web", slot, 2), 1);
    }
    assert_int_equal(h_max_per_slot(h, "web"), 1);
    done(h);
}

/* kill -9 right after a create: either the service and its tasks exist
 * after the restart, or nothing does; never a task twice. */
static void test_kill_after_create(void **state)
{
    harness_t *h = cluster(2);
    ServiceSpec *spec = h_spec("db", "db:1", 4);

    (void)state;
    create(h, spec);
    H_RUN_UNTIL(h, h_desired_running(h, "db") == 4 && h->n_seen >= 1, WAIT_MS);
    h_ctl_kill(h);
    h_ctl_start(h);
    for (size_t i = 0; i < h->n_agents; i++)
        h_agent_connect(h, &h->agents[i]);
    h_client_connect(h);
    H_RUN_UNTIL(h, h_converged(h, "db"), WAIT_MS);
    for (uint32_t slot = 1; slot <= 4; slot++)
        assert_int_equal(h_seen_count(h, "db", slot, 1), 1);
    assert_int_equal(h->n_seen, 4);
    done(h);
}

/* ------------------------------------------------------------------ logs */

static void agent_send_logs(harness_t *h, h_agent_t *a, uint64_t stream, const char *task,
                            const char *data, int close)
{
    Envelope env = PB_ENVELOPE_INIT;
    LogsData ld = PB_LOGS_DATA_INIT;
    LogsClose lc = PB_LOGS_CLOSE_INIT;

    (void)h;
    if (close) {
        lc.stream = stream;
        env.msg_case = MSG_LOGS_CLOSE;
        env.logs_close = &lc;
    } else {
        ld.stream = stream;
        ld.task_name = (char *)task;
        ld.data.data = (uint8_t *)data;
        ld.data.len = strlen(data);
        env.msg_case = MSG_LOGS_DATA;
        env.logs_data = &ld;
    }
    assert_int_equal(conn_send(a->conn, &env), 0);
}

static uint64_t request_logs(harness_t *h, const char *service, int follow)
{
    Envelope env = PB_ENVELOPE_INIT;
    LogsRequest req = PB_LOGS_REQUEST_INIT;

    req.service = (char *)service;
    req.follow = follow;
    req.tail = 10;
    env.id = ++h->next_id;
    env.msg_case = MSG_LOGS_REQUEST;
    env.logs_request = &req;
    assert_int_equal(conn_send(h->client, &env), 0);
    return env.id;
}

static void test_logs_relay(void **state)
{
    harness_t *h = cluster(2);
    h_agent_t *n1 = &h->agents[0], *n2 = &h->agents[1];
    uint64_t id, stream;
    Envelope *m;
    char name[64];

    (void)state;
    create(h, h_spec("web", "web:v1", 2));
    H_RUN_UNTIL(h, spread_is(h, "web", 1), WAIT_MS);
    H_RUN_UNTIL(h, tasks_in(h, "web", 0, DESIRED_RUNNING, TASK_RUNNING) == 2, WAIT_MS);

    id = request_logs(h, "web", 1);
    H_RUN_UNTIL(h, n1->n_logs_open == 1 && n2->n_logs_open == 1, WAIT_MS);
    stream = n1->logs_open[0]->stream;
    assert_int_equal(n2->logs_open[0]->stream, stream);
    for (size_t i = 0; i < 2; i++) {
        const h_agent_t *a = &h->agents[i];
        const LogsOpen *lo = a->logs_open[0];
        const Assignment *as = a->set->tasks[0];
        assert_int_equal(lo->n_tasks, 1);
        assert_string_equal(lo->tasks[0]->task_id, as->task_id);
        snprintf(name, sizeof(name), "web.%u.%s", as->slot, as->task_id);
        assert_string_equal(lo->tasks[0]->name, name);
        assert_true(lo->follow);
        assert_int_equal(lo->tail, 10);
    }

    agent_send_logs(h, n1, stream, "web.1.x", "hello from n1\n", 0);
    H_RUN_UNTIL(h, (m = h_take(h, id)) != NULL, WAIT_MS);
    h_expect(m, MSG_LOGS_DATA);
    assert_int_equal(m->logs_data->data.len, strlen("hello from n1\n"));
    assert_memory_equal(m->logs_data->data.data, "hello from n1\n", m->logs_data->data.len);
    assert_string_equal(m->logs_data->task_name, "web.1.x");
    wire_free(m);
    agent_send_logs(h, n2, stream, "web.2.y", "hello from n2\n", 0);
    H_RUN_UNTIL(h, (m = h_take(h, id)) != NULL, WAIT_MS);
    h_expect(m, MSG_LOGS_DATA);
    assert_string_equal(m->logs_data->task_name, "web.2.y");
    wire_free(m);

    /* One agent done: the stream goes on; both: it ends. */
    agent_send_logs(h, n1, stream, NULL, NULL, 1);
    h_run_for(h, 100);
    assert_null(h_take(h, id));
    agent_send_logs(h, n2, stream, "web.2.y", "last\n", 0);
    agent_send_logs(h, n2, stream, NULL, NULL, 1);
    H_RUN_UNTIL(h, (m = h_take(h, id)) != NULL, WAIT_MS);
    h_expect(m, MSG_LOGS_DATA);
    wire_free(m);
    H_RUN_UNTIL(h, (m = h_take(h, id)) != NULL, WAIT_MS);
    h_expect(m, MSG_LOGS_CLOSE);
    wire_free(m);

    /* The client goes away: every agent is told to stop. */
    id = request_logs(h, "web", 1);
    H_RUN_UNTIL(h, n1->n_logs_open == 2 && n2->n_logs_open == 2, WAIT_MS);
    conn_close(h->client, 0);
    H_RUN_UNTIL(h, !h->client, WAIT_MS);
    H_RUN_UNTIL(h, n1->n_logs_close == 1 && n2->n_logs_close == 1, WAIT_MS);
    /* Data that comes after: the agent is told again, once. */
    agent_send_logs(h, n1, n1->logs_open[1]->stream, "web.1.x", "late\n", 0);
    H_RUN_UNTIL(h, n1->n_logs_close == 2, WAIT_MS);

    /* An unknown service. */
    h_client_connect(h);
    id = request_logs(h, "nosuch", 0);
    H_RUN_UNTIL(h, (m = h_take(h, id)) != NULL, WAIT_MS);
    h_expect_error(m, ERR_NOT_FOUND, "no such service: nosuch");
    done(h);
}

/* The latest set of agent a gives service's tasks the host name host. */
static int set_has_host(const h_agent_t *a, const char *service, const char *host)
{
    if (!a->set)
        return 0;
    for (size_t i = 0; i < a->set->n_tasks; i++) {
        const Assignment *as = a->set->tasks[i];
        if (strcmp(as->service_name, service) != 0)
            continue;
        for (size_t k = 0; k < as->n_hosts; k++)
            if (strcmp(as->hosts[k], host) == 0)
                return 1;
    }
    return 0;
}

/* A service that joins a stack reaches, as host names, every node with a
 * task of the stack, also when its own tasks run elsewhere (a container
 * created there later then resolves it): a stack deploy creates its
 * services one after the other, and the first ones' tasks were placed
 * before the others existed. Services outside the stack stay out. */
static void test_stack_hosts(void **state)
{
    harness_t *h = cluster(2);
    h_agent_t *n1 = &h->agents[0], *n2 = &h->agents[1];
    ServiceSpec *spec;

    (void)state;
    spec = h_spec("shop_api", "api:1", 1);
    pb_set_str(&spec->stack, "shop");
    pb_push_str(&spec->n_constraints, &spec->constraints, "node.name==n1");
    create(h, spec);
    H_RUN_UNTIL(h, h_agent_running(n1, "shop_api") == 1, WAIT_MS);
    assert_true(set_has_host(n1, "shop_api", "api"));
    assert_true(set_has_host(n1, "shop_api", "shop_api"));
    assert_false(set_has_host(n1, "shop_api", "db"));

    spec = h_spec("shop_db", "db:1", 1);
    pb_set_str(&spec->stack, "shop");
    pb_push_str(&spec->n_constraints, &spec->constraints, "node.name==n2");
    create(h, spec);
    H_RUN_UNTIL(h, h_agent_running(n2, "shop_db") == 1 && set_has_host(n1, "shop_api", "db") &&
                       set_has_host(n1, "shop_api", "shop_db"),
                WAIT_MS);
    assert_true(set_has_host(n2, "shop_db", "api"));

    spec = h_spec("other", "other:1", 1);
    pb_push_str(&spec->n_constraints, &spec->constraints, "node.name==n2");
    create(h, spec);
    H_RUN_UNTIL(h, h_agent_running(n2, "other") == 1, WAIT_MS);
    h_run_for(h, 100);
    assert_false(set_has_host(n1, "shop_api", "other"));
    assert_false(set_has_host(n2, "other", "db"));
    assert_true(set_has_host(n2, "other", "other"));
    done(h);
}

/* TaskList in pages that each fit a frame: every task once, in order, the
 * pages' tasks adding up to the total. */
/* A controller on SQLite is the one controller, leading: `skiff controller
 * ls` says so, and the leader pings nobody (agents of a store of one never
 * watch its silence). */
static void test_controller_list_sqlite(void **state)
{
    harness_t *h = h_new(3000, 100);
    Envelope req = PB_ENVELOPE_INIT, *r;
    ControllerList cl = PB_CONTROLLER_LIST_INIT;

    h_client_connect(h);
    req.msg_case = MSG_CONTROLLER_LIST;
    req.controller_list = &cl;
    r = h_expect(h_call(h, &req), MSG_CONTROLLER_LIST_REPLY);
    assert_int_equal(r->controller_list_reply->n_controllers, 1);
    assert_string_equal(r->controller_list_reply->controllers[0]->address, h->hostport);
    assert_string_equal(r->controller_list_reply->controllers[0]->role, "leader");
    assert_string_equal(r->controller_list_reply->controllers[0]->store, "sqlite: healthy");
    wire_free(r);
    assert_true(h->ctl->leading);
    assert_false(store_shared(h->ctl->store));
    h_free(h);
}

static void test_task_list_pages(void **state)
{
    harness_t *h = cluster(0);
    char prev_name[64] = "";
    uint32_t prev_slot = 0, offset = 0, pages = 0;
    size_t seen = 0;

    (void)state;
    create(h, h_spec("a", "web:1", 300));
    create(h, h_spec("b", "web:1", 100));
    h->ctl->cfg.max_frame = 8192; /* pages of about 40 pending tasks */
    do {
        Envelope req = PB_ENVELOPE_INIT, *r;
        TaskList m = PB_TASK_LIST_INIT;
        const TaskListReply *tl;

        m.all = 1;
        m.offset = offset;
        req.msg_case = MSG_TASK_LIST;
        req.task_list = &m;
        r = h_expect(h_call(h, &req), MSG_TASK_LIST_REPLY);
        tl = r->task_list_reply;
        assert_int_equal(tl->total, 400);
        assert_true(tl->n_tasks > 0);
        assert_true(protobuf_c_message_get_packed_size(&r->base) < 8192);
        for (size_t i = 0; i < tl->n_tasks; i++) {
            const Task *t = tl->tasks[i];
            int c = strcmp(prev_name, t->service_name);
            assert_true(c < 0 || (c == 0 && t->slot == prev_slot + 1));
            snprintf(prev_name, sizeof(prev_name), "%s", t->service_name);
            prev_slot = t->slot;
        }
        seen += tl->n_tasks;
        assert_true(tl->next_offset == 0 || tl->next_offset == offset + tl->n_tasks);
        offset = tl->next_offset;
        pages++;
        wire_free(r);
    } while (offset);
    assert_int_equal(seen, 400);
    assert_true(pages >= 5);
    /* Past the end: an empty last page. */
    {
        Envelope req = PB_ENVELOPE_INIT, *r;
        TaskList m = PB_TASK_LIST_INIT;

        m.offset = 1000;
        req.msg_case = MSG_TASK_LIST;
        req.task_list = &m;
        r = h_expect(h_call(h, &req), MSG_TASK_LIST_REPLY);
        assert_int_equal(r->task_list_reply->n_tasks, 0);
        assert_int_equal(r->task_list_reply->next_offset, 0);
        wire_free(r);
    }
    h_free(h); /* no agent: nothing for done()'s checks */
}

/* Tokens: exactly the 64 hex digits, in either case; nothing shorter,
 * longer or different. */
static void test_tokens_match(void **state)
{
    const char *t = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    (void)state;
    assert_true(tokens_match(t, t));
    assert_true(tokens_match(t, "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789ABCDEF"));
    assert_false(tokens_match(t, ""));
    assert_false(tokens_match(t, "0123456789abcdef"));
    assert_false(tokens_match(t, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdee"));
    assert_false(tokens_match(t, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0"));
    assert_false(tokens_match(t, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeF0"));
    assert_false(tokens_match(t, "0123456789abcdeg0123456789abcdef0123456789abcdef0123456789abcdef"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spread_and_scale),
        cmocka_unit_test(test_failed_task_replaced),
        cmocka_unit_test(test_errors_change_nothing),
        cmocka_unit_test(test_placement),
        cmocka_unit_test(test_drain),
        cmocka_unit_test(test_node_labels),
        cmocka_unit_test(test_node_loss),
        cmocka_unit_test(test_restart_nodes_returning),
        cmocka_unit_test(test_node_remove),
        cmocka_unit_test(test_endpoints),
        cmocka_unit_test(test_remove_and_list),
        cmocka_unit_test(test_update_stop_first),
        cmocka_unit_test(test_update_start_first),
        cmocka_unit_test(test_update_and_scale),
        cmocka_unit_test(test_node_loss_during_update),
        cmocka_unit_test(test_update_failed_rollback),
        cmocka_unit_test(test_update_restarts_rollback),
        cmocka_unit_test(test_update_pause_resume),
        cmocka_unit_test(test_kill_during_update),
        cmocka_unit_test(test_kill_anywhere),
        cmocka_unit_test(test_kill_after_create),
        cmocka_unit_test(test_logs_relay),
        cmocka_unit_test(test_stack_hosts),
        cmocka_unit_test(test_register_keeps_health),
        cmocka_unit_test(test_tokens_match),
        cmocka_unit_test(test_task_list_pages),
        cmocka_unit_test(test_controller_list_sqlite),
    };

    return cmocka_run_group_tests_name("orch", tests, NULL, NULL);
}
