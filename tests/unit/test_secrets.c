/* Unit tests of controller/secrets, with the in-process controller and
 * fake agents of ctl_harness: secrets and configs made, listed, shown
 * (a secret's value never), refused when wrong or in use; their values
 * sealed in the store; and on their way to the nodes: before the set that
 * uses them, again on every new connection, to the nodes that use them only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctl_harness.h"
#include "errors.h"
#include "pbutil.h"
#include "spec.h"
#include "wire.h"

#define WAIT_MS 5000
#define VALUE "pg-password-7f3a9c"
#define CONFIG_VALUE "{\"cache_ttl\": 30}"

static Envelope *secret_create(harness_t *h, SecretKind kind, const char *name,
                               const void *data, size_t len)
{
    Envelope env = PB_ENVELOPE_INIT;
    SecretCreate m = PB_SECRET_CREATE_INIT;
    Secret s = PB_SECRET_INIT;

    s.kind = kind;
    s.name = (char *)name;
    s.data.data = (uint8_t *)data;
    s.data.len = len;
    m.secret = &s;
    env.msg_case = MSG_SECRET_CREATE;
    env.secret_create = &m;
    return h_call(h, &env);
}

static Envelope *secret_call(harness_t *h, int which, SecretKind kind, const char *ref)
{
    Envelope env = PB_ENVELOPE_INIT;
    SecretGet get = PB_SECRET_GET_INIT;
    SecretRemove rm = PB_SECRET_REMOVE_INIT;
    SecretList ls = PB_SECRET_LIST_INIT;

    env.msg_case = which;
    if (which == MSG_SECRET_GET) {
        get.kind = kind;
        get.ref = (char *)ref;
        env.secret_get = &get;
    } else if (which == MSG_SECRET_REMOVE) {
        rm.kind = kind;
        rm.ref = (char *)ref;
        env.secret_remove = &rm;
    } else {
        ls.kind = kind;
        ls.stack = (char *)"";
        env.secret_list = &ls;
    }
    return h_call(h, &env);
}

static void expect_error(Envelope *r, ErrorCode code, const char *msg)
{
    assert_int_equal(r->msg_case, MSG_ERROR);
    assert_int_equal(r->error->code, code);
    assert_string_equal(r->error->message, msg);
    wire_free(r);
}

static size_t listed(harness_t *h, SecretKind kind)
{
    Envelope *r = secret_call(h, MSG_SECRET_LIST, kind, NULL);
    size_t n;

    assert_int_equal(r->msg_case, MSG_SECRET_LIST_REPLY);
    n = r->secret_list_reply->n_secrets;
    wire_free(r);
    return n;
}

static int file_has(const char *dir, const char *name, const char *needle)
{
    char path[PATH_MAX + 32];
    FILE *f;
    char *buf;
    long n;
    int found;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (!(f = fopen(path, "rb")))
        return 0;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    found = memmem(buf, (size_t)n, needle, strlen(needle)) != NULL;
    free(buf);
    return found;
}

static ServiceSpec *spec_with(const char *name, const char *secret, const char *config)
{
    ServiceSpec *s = h_spec(name, "busybox", 2);
    SecretRef *r;
    char err[256];

    if (secret) {
        assert_int_equal(spec_secret_ref_parse(secret, SECRET_KIND_SECRET, &r, err, sizeof err),
                         0);
        assert_int_equal(pb_push_msg(&s->n_secrets, (void ***)&s->secrets, r), 0);
    }
    if (config) {
        assert_int_equal(spec_secret_ref_parse(config, SECRET_KIND_CONFIG, &r, err, sizeof err),
                         0);
        assert_int_equal(pb_push_msg(&s->n_configs, (void ***)&s->configs, r), 0);
    }
    return s;
}

static void test_create_show_refuse(void **state)
{
    harness_t *h = h_new(3000, 100);
    Envelope *r;
    char *big = calloc(1, SPEC_SECRET_MAX_SIZE + 1);
    char id[MODEL_ID_LEN + 1];

    h_client_connect(h);
    r = secret_create(h, SECRET_KIND_SECRET, "db_pass", VALUE, strlen(VALUE));
    assert_int_equal(r->msg_case, MSG_SECRET_REPLY);
    assert_string_equal(r->secret_reply->secret->name, "db_pass");
    assert_int_equal(r->secret_reply->secret->size, strlen(VALUE));
    assert_int_equal(r->secret_reply->secret->data.len, 0);
    snprintf(id, sizeof(id), "%s", r->secret_reply->secret->id);
    wire_free(r);
    r = secret_create(h, SECRET_KIND_CONFIG, "api.json", CONFIG_VALUE, strlen(CONFIG_VALUE));
    assert_int_equal(r->msg_case, MSG_SECRET_REPLY);
    wire_free(r);

    /* Shown: a secret without its value, by name, id or id prefix; a config with it. */
    r = secret_call(h, MSG_SECRET_GET, SECRET_KIND_SECRET, id);
    assert_int_equal(r->msg_case, MSG_SECRET_REPLY);
    assert_string_equal(r->secret_reply->secret->name, "db_pass");
    assert_int_equal(r->secret_reply->secret->data.len, 0);
    wire_free(r);
    id[6] = '\0';
    r = secret_call(h, MSG_SECRET_GET, SECRET_KIND_SECRET, id);
    assert_int_equal(r->msg_case, MSG_SECRET_REPLY);
    wire_free(r);
    r = secret_call(h, MSG_SECRET_GET, SECRET_KIND_CONFIG, "api.json");
    assert_int_equal(r->msg_case, MSG_SECRET_REPLY);
    assert_int_equal(r->secret_reply->secret->data.len, strlen(CONFIG_VALUE));
    wire_free(r);
    /* Secrets and configs are apart. */
    expect_error(secret_call(h, MSG_SECRET_GET, SECRET_KIND_CONFIG, "db_pass"), ERR_NOT_FOUND,
                 "no such config: db_pass");

    /* Refused, each with its own line, nothing stored. */
    expect_error(secret_create(h, SECRET_KIND_SECRET, "db_pass", "x", 1), ERR_EXISTS,
                 "secret db_pass already exists");
    expect_error(secret_create(h, SECRET_KIND_SECRET, "bad name", "x", 1), ERR_INVALID,
                 "name: bad name is not a valid secret name (1 to 64 letters, digits, '-', '_' "
                 "or '.', starting and ending with a letter or digit)");
    expect_error(secret_create(h, SECRET_KIND_SECRET, "empty", "", 0), ERR_INVALID,
                 "secret empty: the value is empty");
    expect_error(secret_create(h, SECRET_KIND_SECRET, "big", big, SPEC_SECRET_MAX_SIZE + 1),
                 ERR_INVALID, "secret big: 512001 bytes is more than the limit of 512000");
    assert_int_equal(listed(h, SECRET_KIND_SECRET), 1);
    assert_int_equal(listed(h, SECRET_KIND_CONFIG), 1);
    expect_error(secret_call(h, MSG_SECRET_REMOVE, SECRET_KIND_SECRET, "nope"), ERR_NOT_FOUND,
                 "no such secret: nope");

    /* Sealed in the store: the database and its journal hold no value. */
    h_run_for(h, 100);
    assert_false(file_has(h->dir, "state.db", VALUE));
    assert_false(file_has(h->dir, "state.db-wal", VALUE));
    assert_false(file_has(h->dir, "secret-key", VALUE));

    /* Kept across a restart. */
    h_ctl_stop(h);
    h_ctl_start(h);
    h_client_connect(h);
    assert_int_equal(listed(h, SECRET_KIND_SECRET), 1);
    r = secret_call(h, MSG_SECRET_REMOVE, SECRET_KIND_SECRET, "db_pass");
    assert_int_equal(r->msg_case, MSG_OK);
    wire_free(r);
    assert_int_equal(listed(h, SECRET_KIND_SECRET), 0);
    free(big);
    h_free(h);
}

static void test_to_the_nodes(void **state)
{
    harness_t *h = h_new(3000, 100);
    h_agent_t *a = h_agent_add(h, "n1", "127.0.0.11", NULL);
    h_agent_t *b = h_agent_add(h, "n2", "127.0.0.12", NULL);
    h_agent_t *c = h_agent_add(h, "n3", "127.0.0.13", NULL);
    ServiceSpec *spec;
    Envelope *r;

    h_agent_connect(h, a);
    h_agent_connect(h, b);
    h_agent_connect(h, c);
    h_client_connect(h);
    wire_free(secret_create(h, SECRET_KIND_SECRET, "db_pass", VALUE, strlen(VALUE)));
    wire_free(secret_create(h, SECRET_KIND_CONFIG, "api.json", CONFIG_VALUE,
                            strlen(CONFIG_VALUE)));

    /* An unknown name, and secrets used twice at one target, are refused. */
    spec = spec_with("api", "nope", NULL);
    expect_error(h_service_create(h, spec), ERR_INVALID, "secrets[0]: no such secret: nope");
    pb_free(spec);
    spec = spec_with("api", "source=db_pass,target=pw", "source=nope,target=/etc/x");
    expect_error(h_service_create(h, spec), ERR_INVALID, "configs[0]: no such config: nope");
    pb_free(spec);

    /* Two replicas, spread: two nodes get the values, before their sets. */
    spec = spec_with("api", "source=db_pass,target=pw,mode=0400", "source=api.json,target=/etc/api.json");
    r = h_service_create(h, spec);
    assert_int_equal(r->msg_case, MSG_SERVICE_REPLY);
    assert_int_equal(strlen(r->service_reply->service->spec->secrets[0]->id), MODEL_ID_LEN);
    wire_free(r);
    H_RUN_UNTIL(h, h_agent_running(a, "api") + h_agent_running(b, "api") +
                       h_agent_running(c, "api") == 2, WAIT_MS);
    {
        size_t with_values = 0;
        for (size_t i = 0; i < h->n_agents; i++) {
            h_agent_t *x = &h->agents[i];
            if (!h_agent_running(x, "api")) {
                assert_int_equal(x->n_values, 0); /* a node without a task gets nothing */
                continue;
            }
            assert_int_equal(x->n_values, 2);
            assert_true(strcmp(x->values[0].data, VALUE) == 0 ||
                        strcmp(x->values[1].data, VALUE) == 0);
            with_values++;
        }
        assert_int_equal(with_values, 2);
    }
    /* In use: not removed, the service named. */
    expect_error(secret_call(h, MSG_SECRET_REMOVE, SECRET_KIND_SECRET, "db_pass"), ERR_CONFLICT,
                 "secret db_pass is in use by service api");
    r = secret_call(h, MSG_SECRET_GET, SECRET_KIND_SECRET, "db_pass");
    assert_int_equal(r->secret_reply->secret->n_services, 1);
    assert_string_equal(r->secret_reply->secret->services[0], "api");
    wire_free(r);

    /* A new connection carries them again, before its first set. */
    {
        h_agent_t *x = h_agent_running(a, "api") ? a : b;
        unsigned before = x->n_values_received;
        h_agent_disconnect(h, x);
        h_agent_connect(h, x);
        H_RUN_UNTIL(h, x->n_values_received >= before + 2 && x->n_values == 2, WAIT_MS);
    }
    /* Removed from the service (a rolling update): the nodes drop it. */
    pb_free(spec);
    spec = spec_with("api", NULL, "source=api.json,target=/etc/api.json");
    r = h_service_update(h, "api", spec, 0);
    assert_int_equal(r->msg_case, MSG_SERVICE_REPLY);
    wire_free(r);
    H_RUN_UNTIL(h, a->n_values + b->n_values + c->n_values == 2, WAIT_MS);
    h_run_for(h, 200);
    /* The older tasks are gone: no version uses it, so it goes. */
    H_RUN_UNTIL(h, (r = secret_call(h, MSG_SECRET_REMOVE, SECRET_KIND_SECRET, "db_pass"),
                    r->msg_case == MSG_OK ? (wire_free(r), 1) : (wire_free(r), 0)), WAIT_MS);
    pb_free(spec);
    if (h->violations)
        fail_msg("%u violation(s), the first: %s", h->violations, h->violation);
    h_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_show_refuse),
        cmocka_unit_test(test_to_the_nodes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
