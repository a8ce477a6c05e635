/* Unit tests of the Compose reader (cli/compose.c): every supported key
 * (data/compose/full.yml), the reference stack (data/compose/shop.yml, with
 * anchors, merge keys and variables), variable substitution, and a table of
 * bad files, each refused with one line that names the file, the line and
 * the key's path.
 *
 * Variables come from a table here, never from the environment.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "compose.h"
#include "errors.h"
#include "pbutil.h"
#include "spec.h"

#define DATA "data/compose/"

static const char *const test_env[][2] = {
    { "A", "1" },
    { "EMPTY", "" },
    { "FROM_SHELL", "shell-value" },
    { "HOME", "/home/u" },
    { "API_TAG", "2.1" },
    { "TAG", "v2" },
};

static const char *env_lookup(void *arg, const char *name)
{
    for (size_t i = 0; i < sizeof(test_env) / sizeof(test_env[0]); i++)
        if (strcmp(test_env[i][0], name) == 0)
            return test_env[i][1];
    return NULL;
}

static const compose_opts_t opts = {
    .stack = "shop", .base_dir = "/srv/app", .env = env_lookup,
};

static compose_t *load_ok(const char *path)
{
    compose_t *c = NULL;
    char err[512];

    if (compose_load(path, &opts, &c, err, sizeof(err)))
        fail_msg("%s: %s", path, err);
    return c;
}

static compose_t *parse_ok(const char *yaml)
{
    compose_t *c = NULL;
    char err[512];

    if (compose_parse("t.yml", yaml, strlen(yaml), &opts, &c, err, sizeof(err)))
        fail_msg("%s", err);
    return c;
}

static const ServiceSpec *find(const compose_t *c, const char *name)
{
    for (size_t i = 0; i < c->n_services; i++)
        if (strcmp(c->services[i]->name, name) == 0)
            return c->services[i];
    fail_msg("no service %s", name);
    return NULL;
}

/* ------------------------------------------------------------ full.yml */

static void test_full(void **state)
{
    compose_t *c = load_ok(DATA "full.yml");
    const ServiceSpec *s;

    assert_int_equal(c->n_services, 3);
    /* in the file's order, named STACK_SERVICE */
    assert_string_equal(c->services[0]->name, "shop_web");
    assert_string_equal(c->services[1]->name, "shop_worker");
    assert_string_equal(c->services[2]->name, "shop_quiet");

    s = find(c, "shop_web");
    assert_string_equal(s->stack, "shop");
    assert_string_equal(s->image, "skiff-test/web:v1");
    assert_int_equal(s->n_command, 3);
    assert_string_equal(s->command[2], "8080");
    assert_int_equal(s->n_entrypoint, 2);
    assert_string_equal(s->entrypoint[0], "/bin/sh");
    assert_string_equal(s->entrypoint[1], "-c");
    assert_int_equal(s->n_env, 5);
    assert_string_equal(s->env[0], "MODE=production");
    assert_string_equal(s->env[1], "WORKERS=4");
    assert_string_equal(s->env[2], "DEBUG=false");
    assert_string_equal(s->env[3], "FROM_SHELL=shell-value");
    assert_string_equal(s->env[4], "PRICE=$5");
    assert_int_equal(s->n_ports, 2);
    assert_int_equal(s->ports[0]->published, 8080);
    assert_int_equal(s->ports[0]->target, 8080);
    assert_int_equal(s->ports[1]->published, 8443);
    assert_int_equal(s->ports[1]->target, 443);
    assert_string_equal(s->ports[1]->protocol, "tcp");
    assert_int_equal(s->n_expose, 2);
    assert_int_equal(s->expose[0], 9000);
    assert_int_equal(s->expose[1], 9001);
    assert_int_equal(s->health->n_test, 5);
    assert_string_equal(s->health->test[0], "CMD");
    assert_int_equal(s->health->interval_ms, 2000);
    assert_int_equal(s->health->timeout_ms, 1000);
    assert_int_equal(s->health->retries, 5);
    assert_int_equal(s->health->start_period_ms, 10000);
    assert_string_equal(s->health->http_path, "/health");
    assert_int_equal(s->health->http_port, 8080);
    assert_int_equal(s->replicas, 3);
    assert_int_equal(s->update->parallelism, 2);
    assert_int_equal(s->update->delay_ms, 10000);
    assert_int_equal(s->update->failure_action, FAILURE_ROLLBACK);
    assert_int_equal(s->update->monitor_ms, 30000);
    assert_true(s->update->max_failure_ratio == 0.25);
    assert_int_equal(s->update->order, ORDER_START_FIRST);
    assert_int_equal(s->rollback->parallelism, 0);
    assert_int_equal(s->rollback->delay_ms, 1000);
    assert_int_equal(s->rollback->failure_action, FAILURE_CONTINUE);
    assert_int_equal(s->rollback->monitor_ms, 5000);
    assert_true(s->rollback->max_failure_ratio == 1.0);
    assert_int_equal(s->rollback->order, ORDER_STOP_FIRST);
    assert_int_equal(s->restart->condition, RESTART_ON_FAILURE);
    assert_int_equal(s->restart->delay_ms, 1000);
    assert_int_equal(s->restart->max_attempts, 4);
    assert_int_equal(s->restart->window_ms, 120000);
    assert_int_equal(s->limits->nano_cpus, 2000000000);
    assert_int_equal(s->limits->memory_bytes, 1LL << 30);
    assert_int_equal(s->reservations->nano_cpus, 500000000);
    assert_int_equal(s->reservations->memory_bytes, 512LL << 20);
    assert_int_equal(s->n_constraints, 2);
    assert_string_equal(s->constraints[0], "node.labels.zone == eu");
    assert_string_equal(s->constraints[1], "node.name!=n3");
    /* deploy.labels and labels are both the service's labels */
    assert_int_equal(s->n_labels, 2);
    assert_string_equal(s->labels[0]->key, "com.example.tier");
    assert_string_equal(s->labels[0]->value, "front");
    assert_string_equal(s->labels[1]->key, "com.example.team");
    assert_string_equal(s->user, "1000:1000");
    assert_int_equal(s->stop_grace_period_ms, 90000);
    assert_int_equal(s->drain_delay_ms, 3000);

    /* volumes: named ones get the stack's prefix unless external or named */
    assert_int_equal(s->n_mounts, 7);
    assert_int_equal(s->mounts[0]->type, MOUNT_VOLUME);
    assert_string_equal(s->mounts[0]->source, "shop_data");
    assert_string_equal(s->mounts[0]->target, "/data");
    assert_false(s->mounts[0]->readonly);
    assert_string_equal(s->mounts[1]->source, "logs");
    assert_true(s->mounts[1]->readonly);
    assert_int_equal(s->mounts[2]->type, MOUNT_BIND);
    assert_string_equal(s->mounts[2]->source, "/srv/app/html");
    assert_true(s->mounts[2]->readonly);
    assert_string_equal(s->mounts[3]->source, "/etc/skiff");
    assert_int_equal(s->mounts[4]->type, MOUNT_VOLUME);
    assert_string_equal(s->mounts[4]->source, "");
    assert_string_equal(s->mounts[4]->target, "/scratch");
    assert_string_equal(s->mounts[5]->source, "shared-cache");
    assert_true(s->mounts[5]->readonly);
    assert_int_equal(s->mounts[6]->type, MOUNT_BIND);
    assert_string_equal(s->mounts[6]->source, "/srv/conf");

    s = find(c, "shop_worker");
    assert_int_equal(s->n_command, 3);
    assert_string_equal(s->command[2], "jobs high");
    assert_int_equal(s->n_env, 3);
    assert_string_equal(s->env[1], "FROM_SHELL=shell-value");
    assert_string_equal(s->env[2], "EMPTY=");
    assert_int_equal(s->n_labels, 2);
    assert_string_equal(s->labels[1]->key, "flag");
    assert_string_equal(s->labels[1]->value, "");
    assert_int_equal(s->health->n_test, 2);
    assert_string_equal(s->health->test[0], "CMD-SHELL");
    assert_string_equal(s->health->test[1], "curl -f http://localhost/ || exit 1");
    assert_int_equal(s->restart->condition, RESTART_ON_FAILURE); /* merged from x-defaults */
    assert_int_equal(s->replicas, 0);

    s = find(c, "shop_quiet");
    assert_int_equal(s->health->n_test, 1);
    assert_string_equal(s->health->test[0], "NONE");
    /* what the file does not say is spec_new()'s */
    assert_int_equal(s->replicas, SPEC_DEFAULT_REPLICAS);
    assert_int_equal(s->stop_grace_period_ms, SPEC_DEFAULT_STOP_GRACE_MS);
    assert_int_equal(s->update->monitor_ms, SPEC_DEFAULT_UPDATE_MONITOR_MS);
    assert_int_equal(c->n_warnings, 0);
    compose_free(c);
}

static void test_shop(void **state)
{
    compose_t *c = load_ok(DATA "shop.yml");
    const ServiceSpec *api, *db, *redis;

    assert_int_equal(c->n_services, 4);
    api = find(c, "shop_api");
    assert_string_equal(api->image, "shop/api:2.1");
    assert_int_equal(api->replicas, 3);
    assert_int_equal(api->stop_grace_period_ms, 20000);         /* from <<: *service */
    assert_int_equal(api->restart->delay_ms, 500);              /* from <<: *deploy */
    assert_int_equal(api->update->order, ORDER_START_FIRST);
    assert_string_equal(api->health->http_path, "/healthz");
    db = find(c, "shop_db");
    assert_string_equal(db->env[1], "POSTGRES_PASSWORD=secret");
    assert_string_equal(db->mounts[0]->source, "shop_pgdata");
    assert_int_equal(db->expose[0], 5432);
    assert_int_equal(db->restart->delay_ms, 500);
    redis = find(c, "shop_redis");
    assert_int_equal(redis->n_command, 3);
    assert_int_equal(find(c, "shop_mongo")->expose[0], 27017);
    compose_free(c);

    /* the same file read twice gives the same specs (a redeploy compares) */
    compose_t *a = load_ok(DATA "shop.yml"), *b = load_ok(DATA "shop.yml");
    for (size_t i = 0; i < a->n_services; i++)
        assert_true(pb_equal(a->services[i], b->services[i]));
    compose_free(a);
    compose_free(b);
}

static void test_warnings_and_merges(void **state)
{
    compose_t *c = parse_ok("services:\n"
                            "  a:\n"
                            "    image: img:${NOPE}\n"
                            "    environment:\n      - X=${NOPE}\n      - Y=${NOPE2}\n"
                            "  b: &b\n"
                            "    image: img\n"
                            "    deploy: {replicas: 2}\n"
                            "  c:\n"
                            "    <<: *b\n"
                            "    image: other\n");

    assert_string_equal(c->services[0]->image, "img:");
    assert_int_equal(c->n_warnings, 2);
    assert_string_equal(c->warnings[0], "The NOPE variable is not set. Defaulting to a blank "
                                        "string.");
    /* explicit keys win over merged ones */
    assert_string_equal(c->services[2]->image, "other");
    assert_int_equal(c->services[2]->replicas, 2);
    compose_free(c);
}

/* ------------------------------------------------------ interpolation */

static void test_interpolate(void **state)
{
    static const struct {
        const char *in, *out, *missing;
    } ok[] = {
        { "plain", "plain", "" },
        { "$$", "$", "" },
        { "a$$b$$$$", "a$b$$", "" },
        { "${A}", "1", "" },
        { "$A", "1", "" },
        { "${A}${A}x$A-y", "11x1-y", "" },
        { "$A_B", "", "A_B" },
        { "${NOPE}", "", "NOPE" },
        { "${NOPE:-def}", "def", "" },
        { "${EMPTY:-def}", "def", "" },
        { "${EMPTY-def}", "", "" },
        { "${NOPE-def}", "def", "" },
        { "${NOPE-}", "", "" },
        { "${A:+alt}", "alt", "" },
        { "${EMPTY:+alt}", "", "" },
        { "${EMPTY+alt}", "alt", "" },
        { "${NOPE+alt}", "", "" },
        { "${A:?must}", "1", "" },
        { "${EMPTY?must}", "", "" },
        { "${NOPE:-${TAG}}", "v2", "" },
        { "${NOPE:-${NOPE2:-x}y}", "xy", "" },
        { "${NOPE:-a {b} c}", "a {b} c", "" },
        { "${NOPE:-$$}", "$", "" },
        { "url=${NOPE:-http://h:80/p}", "url=http://h:80/p", "" },
    };
    static const struct {
        const char *in, *why;
    } bad[] = {
        { "$", "invalid variable reference: a lone $ (write $$ for a dollar sign)" },
        { "5$ each", "invalid variable reference: a lone $ (write $$ for a dollar sign)" },
        { "${}", "invalid variable reference ${}" },
        { "${1A}", "invalid variable reference ${1A}" },
        { "${A B}", "invalid variable reference ${A B}" },
        { "${A:x}", "invalid variable reference ${A:x}" },
        { "${A", "unterminated ${ in variable reference" },
        { "${NOPE:?set NOPE first}", "NOPE: set NOPE first" },
        { "${EMPTY:?}", "required variable EMPTY is missing a value" },
        { "${NOPE?}", "required variable NOPE is missing a value" },
        { "${NOPE:-${NOPE:-${NOPE:-${NOPE:-${NOPE:-${NOPE:-${NOPE:-${NOPE:-${NOPE:-${NOPE:-x}}}}"
          "}}}}}}", "variable references nest too deep" },
    };
    char missing[64], why[256], *out;

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (compose_interpolate(ok[i].in, env_lookup, NULL, &out, missing, sizeof(missing), why,
                                sizeof(why)))
            fail_msg("%s: %s", ok[i].in, why);
        if (strcmp(out, ok[i].out) != 0)
            fail_msg("%s gave \"%s\", not \"%s\"", ok[i].in, out, ok[i].out);
        assert_string_equal(missing, ok[i].missing);
        free(out);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        out = NULL;
        if (compose_interpolate(bad[i].in, env_lookup, NULL, &out, missing, sizeof(missing),
                                why, sizeof(why)) != SKIFF_EINVAL)
            fail_msg("%s was accepted as \"%s\"", bad[i].in, out);
        if (strcmp(why, bad[i].why) != 0)
            fail_msg("%s:\n  got  %s\n  want %s", bad[i].in, why, bad[i].why);
    }
}

/* deploy/examples/shop/stack.yml, the file the quickstart and the docker
 * CLI's `docker stack deploy` both deploy: its skiff labels are read. */
static void test_shop_example(void **state)
{
    /* its files are found next to it, wherever it is read from */
    compose_opts_t o = { .stack = "shop", .env = env_lookup };
    compose_t *c = NULL;
    char err[512];

    if (compose_load("../../deploy/examples/shop/stack.yml", &o, &c, err, sizeof(err)))
        fail_msg("%s", err);
    const ServiceSpec *api = find(c, "shop_api"), *pg = find(c, "shop_postgres");

    (void)state;
    assert_string_equal(api->health->http_path, "/health");
    assert_int_equal(api->n_labels, 0);
    assert_int_equal(pg->n_expose, 1);
    assert_int_equal(pg->expose[0], 5432);
    assert_int_equal(find(c, "shop_redis")->expose[0], 6379);
    assert_int_equal(find(c, "shop_mongo")->expose[0], 27017);
    /* PostgreSQL's password is a secret that both read, the API's settings
     * a config; Redis has a volume and the databases' constraint */
    assert_int_equal(c->n_secrets, 2);
    assert_string_equal(c->secrets[0].secret->name, "shop_db_pass");
    assert_string_equal(c->secrets[0].secret->stack, "shop");
    assert_true(c->secrets[0].secret->data.len > 0);
    assert_string_equal(c->secrets[1].secret->name, "shop_api_config");
    assert_int_equal(c->secrets[1].secret->kind, SECRET_KIND_CONFIG);
    assert_int_equal(pg->n_secrets, 1);
    assert_string_equal(pg->secrets[0]->name, "shop_db_pass");
    assert_string_equal(pg->secrets[0]->target, "db_pass");
    assert_int_equal(pg->secrets[0]->uid, 999);
    assert_int_equal(pg->secrets[0]->mode, 0400);
    assert_int_equal(api->n_secrets, 1);
    assert_string_equal(api->secrets[0]->target, "db_pass");
    assert_int_equal(api->secrets[0]->mode, 0444);
    assert_int_equal(api->n_configs, 1);
    assert_string_equal(api->configs[0]->name, "shop_api_config");
    assert_string_equal(api->configs[0]->target, "/etc/shop/api.json");
    for (size_t i = 0; i < api->n_env; i++)
        assert_null(strstr(api->env[i], "PASSWORD="));
    assert_int_equal(find(c, "shop_redis")->n_mounts, 1);
    assert_string_equal(find(c, "shop_redis")->mounts[0]->source, "shop_redisdata");
    assert_int_equal(find(c, "shop_redis")->n_constraints, 1);
    compose_free(c);
}

/* The form the docker CLI also reads: skiff's labels under deploy.labels
 * for the HTTP probe and the exposed ports, a healthcheck without a test. */
static void test_skiff_labels(void **state)
{
    compose_t *c = parse_ok("services:\n  api:\n    image: x\n    healthcheck:\n"
                            "      interval: 2s\n    deploy:\n      labels:\n"
                            "        skiff.health.http: /health\n        skiff.expose: \"3000\"\n"
                            "        team: a\n");
    const ServiceSpec *api = find(c, "shop_api");

    (void)state;
    assert_string_equal(api->health->http_path, "/health");
    assert_int_equal(api->health->interval_ms, 2000);
    assert_int_equal(api->n_expose, 1);
    assert_int_equal(api->expose[0], 3000);
    assert_int_equal(api->n_labels, 1);
    assert_string_equal(api->labels[0]->key, "team");
    compose_free(c);
}

/* ------------------------------------------------------------ bad files */

/* Each case: a file, and the one line it must be refused with. */
static const struct {
    const char *yaml, *error;
} bad_files[] = {
    /* types */
    { "services:\n  api:\n    image: x\n    deploy:\n      replicas: three\n",
      "t.yml:5: services.api.deploy.replicas: expected an integer, not \"three\"" },
    { "services:\n  api:\n    image: x\n    deploy:\n      replicas: [1]\n",
      "t.yml:5: services.api.deploy.replicas: expected an integer, not a list" },
    { "services:\n  api:\n    image: x\n    deploy:\n      replicas: -1\n",
      "t.yml:5: services.api.deploy.replicas: expected an integer, not \"-1\"" },
    { "services:\n  api:\n    image: [x]\n",
      "t.yml:3: services.api.image: expected a string, not a list" },
    { "services:\n  api:\n    image:\n",
      "t.yml:3: services.api.image: expected a string, not nothing" },
    { "services:\n  api:\n", "t.yml:2: services.api: expected a mapping, not nothing" },
    { "services:\n  api:\n    image: x\n    command: {a: 1}\n",
      "t.yml:4: services.api.command: expected a string or a list of strings, not a mapping" },
    { "services:\n  api:\n    image: x\n    environment: [\"=x\"]\n",
      "t.yml:4: services.api.environment[0]: expected KEY=VALUE" },
    { "services:\n  api:\n    image: x\n    environment:\n      A: [1]\n",
      "t.yml:5: services.api.environment.A: expected a string, not a list" },
    { "services:\n  api:\n    image: x\n    labels: tier\n",
      "t.yml:4: services.api.labels: expected a mapping or a list, not a scalar" },
    { "services:\n  api:\n    image: x\n    ports: \"80:80\"\n",
      "t.yml:4: services.api.ports: expected a list, not a scalar" },
    { "services:\n  api:\n    image: x\n    volumes:\n      - type: bind\n        source: /a\n"
      "        target: /b\n        read_only: maybe\n",
      "t.yml:8: services.api.volumes[0].read_only: expected true or false, not \"maybe\"" },
    { "services: [api]\n", "t.yml:1: services: expected a mapping, not a list" },
    { "- services\n", "t.yml:1: expected a mapping with services at the top" },
    /* keys */
    { "services:\n  api:\n    imgae: x\n", "t.yml:3: services.api.imgae: unknown key" },
    { "services:\n  api:\n    image: x\n    networks: [front]\n",
      "t.yml:4: services.api.networks: not supported by skiff" },
    { "services:\n  api:\n    image: x\n    build: .\n",
      "t.yml:4: services.api.build: not supported by skiff" },
    { "services:\n  api:\n    image: x\n    depends_on: [db]\n",
      "t.yml:4: services.api.depends_on: not supported by skiff" },
    { "services:\n  api:\n    image: x\n    restart: always\n",
      "t.yml:4: services.api.restart: not supported by skiff" },
    { "services:\n  api:\n    image: x\n    x-skiff-typo: 1\n",
      "t.yml:4: services.api.x-skiff-typo: unknown key" },
    { "services:\n  api:\n    image: x\nnetworks:\n  front:\n",
      "t.yml:4: networks: not supported by skiff" },
    /* secrets and configs */
    { "services:\n  api:\n    image: x\n    secrets: [db]\n",
      "t.yml:4: services.api.secrets[0]: secret db is not declared in the top-level secrets" },
    { "services:\n  api:\n    image: x\n    configs:\n      - source: db\n"
      "secrets:\n  db: {external: true}\n",
      "t.yml:5: services.api.configs[0]: config db is not declared in the top-level configs" },
    { "services:\n  api:\n    image: x\n    secrets:\n      - target: x\n"
      "secrets:\n  db: {external: true}\n",
      "t.yml:5: services.api.secrets[0]: source: required" },
    { "services:\n  api:\n    image: x\n    secrets:\n      - {source: db, mode: 0999}\n"
      "secrets:\n  db: {external: true}\n",
      "t.yml:5: services.api.secrets[0].mode: expected a mode like 0400, not \"0999\"" },
    { "services:\n  api:\n    image: x\n    secrets:\n      - {source: db, mode: 1000}\n"
      "secrets:\n  db: {external: true}\n",
      "t.yml:5: services.api.secrets[0].mode: expected a mode like 0400, not \"1000\"" },
    { "services:\n  api:\n    image: x\n    secrets:\n      - {source: db, colour: red}\n"
      "secrets:\n  db: {external: true}\n",
      "t.yml:5: services.api.secrets[0].colour: unknown key" },
    { "services:\n  api:\n    image: x\n    secrets:\n      - db\n      - source: db\n"
      "secrets:\n  db: {external: true}\n",
      "t.yml:6: services.api.secrets[1]: target db is used twice" },
    { "services:\n  api:\n    image: x\n    secrets:\n      - {source: db, target: a/b}\n"
      "secrets:\n  db: {external: true}\n",
      "t.yml:2: services.api: secrets[0].target: a/b must be a file name (it is put in "
      "/run/secrets)" },
    { "services:\n  api:\n    image: x\nsecrets:\n  db:\n    environment: DB_PASS\n",
      "t.yml:6: secrets.db.environment: not supported by skiff" },
    { "services:\n  api:\n    image: x\nconfigs:\n  c:\n    file: c.txt\n"
      "    template_driver: golang\n",
      "t.yml:7: configs.c.template_driver: not supported by skiff" },
    { "services:\n  api:\n    image: x\nconfigs:\n  c:\n    file: c.txt\n    colour: red\n",
      "t.yml:7: configs.c.colour: unknown key" },
    { "services:\n  api:\n    image: x\nsecrets:\n  db:\n",
      "t.yml:5: secrets.db: file or external: true is required" },
    { "services:\n  api:\n    image: x\nsecrets:\n  db: {labels: {a: b}}\n",
      "t.yml:5: secrets.db: file or external: true is required" },
    { "services:\n  api:\n    image: x\nsecrets:\n  db: {file: a, external: true}\n",
      "t.yml:5: secrets.db: file and external: true exclude each other" },
    { "services:\n  api:\n    image: x\nsecrets:\n  db: {external: true, name: \"a b\"}\n",
      "t.yml:5: secrets.db: a b is not a valid secret name" },
    { "services:\n  api:\n    image: x\nsecrets:\n  a: {external: true, name: x}\n"
      "  b: {file: f, name: x}\n",
      "t.yml:6: secrets.b: secret x is also secrets.a" },
    { "services:\n  api:\n    image: x\nservice: {}\n", "t.yml:4: service: unknown key" },
    { "services:\n  api:\n    image: x\n    deploy:\n      resources:\n        limits:\n"
      "          pids: 10\n",
      "t.yml:7: services.api.deploy.resources.limits.pids: not supported by skiff" },
    { "services:\n  api:\n    image: x\n    deploy:\n      placement:\n        preferences: []\n",
      "t.yml:6: services.api.deploy.placement.preferences: not supported by skiff" },
    { "services:\n  api:\n    image: x\n    healthcheck:\n      start_interval: 1s\n",
      "t.yml:5: services.api.healthcheck.start_interval: not supported by skiff" },
    { "services:\n  api:\n    image: x\n    image: y\n",
      "t.yml:4: services.api: duplicate key image" },
    { "services:\n  api:\n    image: x\n    ? [a]\n    : 1\n",
      "t.yml:4: services.api: keys must be strings" },
    /* required */
    { "services:\n  api:\n    command: run\n", "t.yml:2: services.api: image: required" },
    { "version: '3'\n", "t.yml:1: services: required" },
    { "services: {}\n", "t.yml:1: services: no services" },
    { "", "t.yml: empty file" },
    { "# only a comment\n", "t.yml: empty file" },
    /* values */
    { "services:\n  api:\n    image: x\n    healthcheck:\n      interval: 10 seconds\n",
      "t.yml:5: services.api.healthcheck.interval: expected a duration like 10s or 1m30s, not "
      "\"10 seconds\"" },
    { "services:\n  api:\n    image: x\n    stop_grace_period: 10\n",
      "t.yml:4: services.api.stop_grace_period: expected a duration like 10s or 1m30s, not "
      "\"10\"" },
    { "services:\n  api:\n    image: x\n    healthcheck:\n      test: [RUN, x]\n",
      "t.yml:5: services.api.healthcheck.test: the list must start with CMD, CMD-SHELL or NONE" },
    { "services:\n  api:\n    image: x\n    healthcheck:\n      test: [CMD]\n",
      "t.yml:5: services.api.healthcheck.test: CMD needs a command" },
    { "services:\n  api:\n    image: x\n    ports: ['80:80']\n    healthcheck:\n"
      "      x-skiff-http: health\n",
      "t.yml:6: services.api.healthcheck.x-skiff-http: expected a path like /health, not "
      "\"health\"" },
    { "services:\n  api:\n    image: x\n    ports: [\"80\"]\n",
      "t.yml:4: services.api.ports[0]: \"80\": give PUBLISHED:TARGET (use expose for internal "
      "ports)" },
    { "services:\n  api:\n    image: x\n    ports: [80]\n",
      "t.yml:4: services.api.ports[0]: \"80\": give PUBLISHED:TARGET (use expose for internal "
      "ports)" },
    { "services:\n  api:\n    image: x\n    ports: [\"8080:80/udp\"]\n",
      "t.yml:4: services.api.ports[0]: \"8080:80/udp\": only tcp ports are supported" },
    { "services:\n  api:\n    image: x\n    ports: [\"127.0.0.1:8080:80\"]\n",
      "t.yml:4: services.api.ports[0]: \"127.0.0.1:8080:80\": a host address is not supported; "
      "PUBLISHED:TARGET" },
    { "services:\n  api:\n    image: x\n    ports: [\"8080-8081:80-81\"]\n",
      "t.yml:4: services.api.ports[0]: \"8080-8081:80-81\": port ranges are not supported" },
    { "services:\n  api:\n    image: x\n    ports: [\"99999:80\"]\n",
      "t.yml:4: services.api.ports[0]: \"99999:80\": a port between 1 and 65535" },
    { "services:\n  api:\n    image: x\n    ports:\n      - target: 80\n",
      "t.yml:5: services.api.ports[0]: published: required (skiff publishes a port on every "
      "node; use expose for internal ports)" },
    { "services:\n  api:\n    image: x\n    ports:\n      - published: 80\n",
      "t.yml:5: services.api.ports[0]: target: required" },
    { "services:\n  api:\n    image: x\n    ports:\n      - {target: 80, published: 80, "
      "protocol: udp}\n",
      "t.yml:5: services.api.ports[0].protocol: \"udp\": only tcp is supported" },
    { "services:\n  api:\n    image: x\n    ports:\n      - {target: 80, published: 80, "
      "mode: host}\n",
      "t.yml:5: services.api.ports[0].mode: \"host\" is not supported (ingress only)" },
    { "services:\n  api:\n    image: x\n    ports:\n      - {target: 80, published: 80, "
      "host_ip: 127.0.0.1}\n",
      "t.yml:5: services.api.ports[0].host_ip: not supported by skiff" },
    { "services:\n  api:\n    image: x\n    expose: [http]\n",
      "t.yml:4: services.api.expose[0]: \"http\": a port between 1 and 65535" },
    { "services:\n  api:\n    image: x\n    ports: ['80:80']\n    expose: [80]\n",
      "t.yml:2: services.api: expose[0]: port 80 is also published" },
    { "services:\n  api:\n    image: x\n    deploy:\n      mode: global\n",
      "t.yml:5: services.api.deploy.mode: global is not supported" },
    { "services:\n  api:\n    image: x\n    deploy:\n      mode: replicated-job\n",
      "t.yml:5: services.api.deploy.mode: \"replicated-job\" is not supported (replicated only)" },
    { "services:\n  api:\n    image: x\n    deploy:\n      endpoint_mode: dnsrr\n",
      "t.yml:5: services.api.deploy.endpoint_mode: \"dnsrr\" is not supported (vip only)" },
    { "services:\n  api:\n    image: x\n    deploy:\n      restart_policy:\n"
      "        condition: always\n",
      "t.yml:6: services.api.deploy.restart_policy.condition: expected none, on-failure or any, "
      "not \"always\"" },
    { "services:\n  api:\n    image: x\n    deploy:\n      update_config:\n"
      "        order: sideways\n",
      "t.yml:6: services.api.deploy.update_config.order: expected stop-first or start-first, "
      "not \"sideways\"" },
    { "services:\n  api:\n    image: x\n    deploy:\n      update_config:\n"
      "        failure_action: retry\n",
      "t.yml:6: services.api.deploy.update_config.failure_action: expected pause, continue or "
      "rollback, not \"retry\"" },
    { "services:\n  api:\n    image: x\n    deploy:\n      rollback_config:\n"
      "        failure_action: rollback\n",
      "t.yml:6: services.api.deploy.rollback_config.failure_action: expected pause or continue, "
      "not \"rollback\"" },
    { "services:\n  api:\n    image: x\n    deploy:\n      update_config:\n"
      "        max_failure_ratio: 2\n",
      "t.yml:6: services.api.deploy.update_config.max_failure_ratio: expected a number between 0 "
      "and 1, not \"2\"" },
    { "services:\n  api:\n    image: x\n    deploy:\n      resources:\n        limits:\n"
      "          memory: lots\n",
      "t.yml:7: services.api.deploy.resources.limits.memory: expected a size like 512M or 1G, "
      "not \"lots\"" },
    { "services:\n  api:\n    image: x\n    deploy:\n      resources:\n        reservations:\n"
      "          cpus: half\n",
      "t.yml:7: services.api.deploy.resources.reservations.cpus: expected a number of CPUs like "
      "0.5, not \"half\"" },
    { "services:\n  api:\n    image: x\n    deploy:\n      resources:\n        limits:\n"
      "          memory: 1k\n",
      "t.yml:2: services.api: limits.memory: must be at least 6MiB" },
    { "services:\n  api:\n    image: x\n    deploy:\n      placement:\n"
      "        constraints: [zone==eu]\n",
      "t.yml:6: services.api.deploy.placement.constraints[0]: \"zone==eu\": expected "
      "node.labels.KEY==VALUE, node.name!=NAME or node.id==ID" },
    { "services:\n  api:\n    image: x\n    volumes: [data:/data]\n",
      "t.yml:4: services.api.volumes[0]: volume data is not declared in the top-level volumes" },
    { "services:\n  api:\n    image: x\n    volumes: ['/a:/b:z']\n",
      "t.yml:4: services.api.volumes[0]: mode z is not supported (ro or rw)" },
    { "services:\n  api:\n    image: x\n    volumes: ['/a:b']\n",
      "t.yml:4: services.api.volumes[0]: \"/a:b\": the target must be an absolute path" },
    { "services:\n  api:\n    image: x\n    volumes:\n      - type: tmpfs\n        target: /t\n",
      "t.yml:5: services.api.volumes[0].type: \"tmpfs\" is not supported (volume or bind)" },
    { "services:\n  api:\n    image: x\n    volumes:\n      - type: bind\n        target: /t\n",
      "t.yml:5: services.api.volumes[0]: source: required for a bind mount" },
    { "services:\n  api:\n    image: x\nvolumes:\n  data:\n    driver: nfs\n",
      "t.yml:6: volumes.data.driver: \"nfs\" is not supported (local only)" },
    { "services:\n  api:\n    image: x\nvolumes:\n  data:\n    name: a/b\n",
      "t.yml:5: volumes.data: a/b is not a valid volume name" },
    { "services:\n  api:\n    image: x\n    user: a b\n",
      "t.yml:2: services.api: user: a b is not a user name or UID[:GID]" },
    { "services:\n  we b:\n    image: x\n",
      "t.yml:2: services.we b: name: shop_we b: must be 1 to 63 letters, digits, '-' or '_', "
      "starting with a letter or digit" },
    /* variables */
    { "services:\n  api:\n    image: x:$\n",
      "t.yml:3: services.api.image: invalid variable reference: a lone $ (write $$ for a dollar "
      "sign)" },
    { "services:\n  api:\n    image: x:${TAG_NOPE:?give a tag}\n",
      "t.yml:3: services.api.image: TAG_NOPE: give a tag" },
    { "services:\n  api:\n    image: x\n    deploy:\n      replicas: ${NOPE:-many}\n",
      "t.yml:5: services.api.deploy.replicas: expected an integer, not \"many\"" },
    /* a quoted value with a newline: the message stays one line */
    { "services:\n  api:\n    image: x\n    stop_grace_period: \"10s\\nBm\"\n",
      "t.yml:4: services.api.stop_grace_period: expected a duration like 10s or 1m30s, not "
      "\"10s?Bm\"" },
    /* YAML */
    { "services:\n  api:\n    image: x\n   bad: indent\n",
      "t.yml:4: YAML: did not find expected key while parsing a block mapping" },
    { "services:\n  api: {image: x}\n---\nservices: {}\n",
      "t.yml:4: more than one YAML document" },
    { "services:\n  api: *nope\n", "t.yml:2: YAML: found undefined alias" },
    { "x-a: &a\n  <<: *a\nservices:\n  api:\n    <<: *a\n    image: x\n",
      "t.yml:1: services.api: <<: merges nest too deep" },
    /* skiff's labels (what the docker CLI's schema lets a file say) */
    { "services:\n  api:\n    image: x\n    deploy:\n      labels:\n        skiff.expose: \"http\"\n",
      "t.yml:2: services.api: labels: skiff.expose: \"http\" is not a port (1-65535)" },
};


/* --------------------------------------------------- secrets and configs */

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_secrets(void **state)
{
    compose_t *c = parse_ok(
        "services:\n  api:\n    image: x\n    secrets:\n      - db_pass\n"
        "      - source: tls\n        target: cert.pem\n        uid: \"1000\"\n"
        "        gid: 1001\n        mode: 0400\n"
        "      - {source: plain, mode: 292}\n"
        "    configs:\n      - source: app\n        target: /etc/app.json\n"
        "        mode: \"0440\"\n      - other\n"
        "secrets:\n  db_pass:\n    file: ./db_pass.txt\n"
        "  tls:\n    external: true\n    name: real_tls\n"
        "  plain:\n    external: true\n"
        "configs:\n  app:\n    file: ../conf/app.json\n    labels: {team: a}\n"
        "    name: app_v2\n  other:\n    file: /etc/other\n    labels: [k=v]\n");
    const ServiceSpec *api = find(c, "shop_api");

    (void)state;
    assert_int_equal(c->n_secrets, 5);
    /* the stack's own: STACK_KEY, file relative to the file's directory */
    assert_string_equal(c->secrets[0].key, "db_pass");
    assert_string_equal(c->secrets[0].secret->name, "shop_db_pass");
    assert_string_equal(c->secrets[0].secret->stack, "shop");
    assert_int_equal(c->secrets[0].secret->kind, SECRET_KIND_SECRET);
    assert_string_equal(c->secrets[0].file, "/srv/app/db_pass.txt");
    assert_false(c->secrets[0].external);
    /* external: its name, or the key; no stack, no file */
    assert_string_equal(c->secrets[1].secret->name, "real_tls");
    assert_string_equal(c->secrets[1].secret->stack, "");
    assert_true(c->secrets[1].external);
    assert_null(c->secrets[1].file);
    assert_string_equal(c->secrets[2].secret->name, "plain");
    /* configs: name: is the real name, even of the stack's own */
    assert_int_equal(c->secrets[3].secret->kind, SECRET_KIND_CONFIG);
    assert_string_equal(c->secrets[3].secret->name, "app_v2");
    assert_string_equal(c->secrets[3].secret->stack, "shop");
    assert_string_equal(c->secrets[3].file, "/srv/conf/app.json");
    assert_int_equal(c->secrets[3].secret->n_labels, 1);
    assert_string_equal(c->secrets[3].secret->labels[0]->key, "team");
    assert_string_equal(c->secrets[4].secret->name, "shop_other");
    assert_string_equal(c->secrets[4].file, "/etc/other");
    assert_string_equal(c->secrets[4].secret->labels[0]->value, "v");
    assert_int_equal(c->secrets[0].secret->data.len, 0); /* not read by compose_parse */

    /* references: the real name, the key as default target */
    assert_int_equal(api->n_secrets, 3);
    assert_string_equal(api->secrets[0]->name, "shop_db_pass");
    assert_string_equal(api->secrets[0]->target, "db_pass");
    assert_int_equal(api->secrets[0]->mode, 0444);
    assert_string_equal(api->secrets[1]->name, "real_tls");
    assert_string_equal(api->secrets[1]->target, "cert.pem");
    assert_int_equal(api->secrets[1]->uid, 1000);
    assert_int_equal(api->secrets[1]->gid, 1001);
    assert_int_equal(api->secrets[1]->mode, 0400);
    assert_int_equal(api->secrets[2]->mode, 0444); /* 292, decimal */
    assert_int_equal(api->n_configs, 2);
    assert_string_equal(api->configs[0]->name, "app_v2");
    assert_string_equal(api->configs[0]->target, "/etc/app.json");
    assert_int_equal(api->configs[0]->mode, 0440);
    assert_string_equal(api->configs[1]->name, "shop_other");
    assert_string_equal(api->configs[1]->target, "/other");
    compose_free(c);
}

static void test_secret_files(void **state)
{
    char dir[] = "/tmp/skiff-test-compose-XXXXXX", path[160], big[160], want[400], err[512];
    compose_opts_t o = { .stack = "shop", .env = env_lookup };
    compose_t *c = NULL;
    FILE *f;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/db_pass.txt", dir);
    write_text(path, "s3cret");
    snprintf(path, sizeof(path), "%s/stack.yml", dir);
    write_text(path, "services:\n  db:\n    image: x\n    secrets: [db_pass]\n"
                     "secrets:\n  db_pass:\n    file: db_pass.txt\n");
    /* a relative file starts at the Compose file's directory, not here */
    if (compose_load(path, &o, &c, err, sizeof(err)))
        fail_msg("%s", err);
    assert_int_equal(c->secrets[0].secret->data.len, 6);
    assert_memory_equal(c->secrets[0].secret->data.data, "s3cret", 6);
    compose_free(c);

    /* one over the limit: refused, naming the file's key and the secret */
    snprintf(big, sizeof(big), "%s/big.txt", dir);
    assert_non_null(f = fopen(big, "wb"));
    for (int i = 0; i < 600 * 1024; i++)
        fputc('x', f);
    fclose(f);
    write_text(path, "services:\n  db:\n    image: x\n    secrets: [db_pass]\n"
                     "secrets:\n  db_pass:\n    file: big.txt\n");
    assert_int_equal(compose_load(path, &o, &c, err, sizeof(err)), SKIFF_EINVAL);
    assert_null(c);
    snprintf(want, sizeof(want), "%s: secrets.db_pass: secret shop_db_pass: 614400 bytes is "
             "more than the limit of 512000", path);
    assert_string_equal(err, want);

    /* a missing file */
    write_text(path, "services:\n  db:\n    image: x\nconfigs:\n  conf:\n    file: nope.json\n");
    assert_int_equal(compose_load(path, &o, &c, err, sizeof(err)), SKIFF_EINVAL);
    snprintf(want, sizeof(want), "%s: configs.conf: config shop_conf: cannot read %s/nope.json: "
             "No such file or directory", path, dir);
    assert_string_equal(err, want);
    unlink(big);
    unlink(path);
    snprintf(path, sizeof(path), "%s/db_pass.txt", dir);
    unlink(path);
    rmdir(dir);
}

static void test_bad_files(void **state)
{
    for (size_t i = 0; i < sizeof(bad_files) / sizeof(bad_files[0]); i++) {
        compose_t *c = NULL;
        char err[512] = "";
        int rc = compose_parse("t.yml", bad_files[i].yaml, strlen(bad_files[i].yaml), &opts,
                               &c, err, sizeof(err));
        if (rc != SKIFF_EINVAL)
            fail_msg("case %zu was accepted:\n%s", i, bad_files[i].yaml);
        assert_null(c);
        if (strcmp(err, bad_files[i].error) != 0)
            fail_msg("case %zu:\n  got  %s\n  want %s", i, err, bad_files[i].error);
        assert_null(strchr(err, '\n'));
    }
}

static void test_limits(void **state)
{
    compose_t *c = NULL;
    char err[512], *yaml;
    size_t len = 0, cap = 1 << 16;
    int rc;

    /* aliases that expand exponentially are cut off */
    yaml = malloc(cap);
    assert_non_null(yaml);
    len += (size_t)snprintf(yaml + len, cap - len, "x-0: &a0 {k: v}\n");
    for (int i = 1; i <= 7; i++) {
        len += (size_t)snprintf(yaml + len, cap - len, "x-%d: &a%d {<<: [*a%d", i, i, i - 1);
        for (int k = 1; k < 10; k++)
            len += (size_t)snprintf(yaml + len, cap - len, ", *a%d", i - 1);
        len += (size_t)snprintf(yaml + len, cap - len, "]}\n");
    }
    len += (size_t)snprintf(yaml + len, cap - len, "services:\n  api:\n    <<: *a7\n");
    rc = compose_parse("t.yml", yaml, len, &opts, &c, err, sizeof(err));
    assert_int_equal(rc, SKIFF_EINVAL);
    if (!strstr(err, "too much")) {
        free(yaml);
        fail_msg("%s", err);
    }

    /* too many services */
    len = 0;
    len += (size_t)snprintf(yaml + len, cap - len, "services:\n");
    for (int i = 0; i <= COMPOSE_MAX_SERVICES; i++)
        len += (size_t)snprintf(yaml + len, cap - len, "  s%d: {image: x}\n", i);
    rc = compose_parse("t.yml", yaml, len, &opts, &c, err, sizeof(err));
    assert_int_equal(rc, SKIFF_EINVAL);
    assert_string_equal(err, "t.yml:2: services: more than 256 services");
    free(yaml);

    /* a file too large is not read */
    rc = compose_parse("t.yml", "", COMPOSE_MAX_FILE + 1, &opts, &c, err, sizeof(err));
    assert_int_equal(rc, SKIFF_EINVAL);
    assert_string_equal(err, "t.yml: larger than 1048576 bytes");

    /* bad stack names, unreadable files */
    compose_opts_t o = opts;
    o.stack = "a b";
    rc = compose_parse("t.yml", "services: {a: {image: x}}", 25, &o, &c, err, sizeof(err));
    assert_int_equal(rc, SKIFF_EINVAL);
    assert_string_equal(err, "a b is not a valid stack name");
    rc = compose_load(DATA "nonexistent.yml", &opts, &c, err, sizeof(err));
    assert_int_equal(rc, SKIFF_EINVAL);
    assert_string_equal(err, "cannot read " DATA "nonexistent.yml: No such file or directory");
}

static void test_relative_paths(void **state)
{
    compose_opts_t o = opts;
    compose_t *c;
    char err[256];
    const char *yaml = "services:\n  a:\n    image: x\n    volumes:\n"
                       "      - ~/conf:/c\n      - ../../../x:/x\n      - .:/d\n"
                       "      - ./a/./b/../c:/e\n";

    assert_int_equal(compose_parse("t.yml", yaml, strlen(yaml), &o, &c, err, sizeof(err)), 0);
    assert_string_equal(c->services[0]->mounts[0]->source, "/home/u/conf");
    assert_string_equal(c->services[0]->mounts[1]->source, "/x");
    assert_string_equal(c->services[0]->mounts[2]->source, "/srv/app");
    assert_string_equal(c->services[0]->mounts[3]->source, "/srv/app/a/c");
    compose_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_shop),
        cmocka_unit_test(test_warnings_and_merges),
        cmocka_unit_test(test_interpolate),
        cmocka_unit_test(test_shop_example),
        cmocka_unit_test(test_skiff_labels),
        cmocka_unit_test(test_secrets),
        cmocka_unit_test(test_secret_files),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_relative_paths),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
