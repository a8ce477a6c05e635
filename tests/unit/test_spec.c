/* Unit tests of proto/spec: ServiceSpec defaults, validation, comparison,
 * placement constraints and the enum names.
 *
 * Validation is table-driven: each case takes a valid spec, breaks one field
 * in one way, and expects SKIFF_EINVAL with a one-line message that starts
 * with the field's name (control characters of a quoted value show as '?').
 * Cases that break different things must get different messages, so that
 * each bad value gets its own.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "errors.h"
#include "pbutil.h"
#include "spec.h"

/* ------------------------------------------------------------- helpers */

static void set_str(char **field, const char *s)
{
    assert_int_equal(pb_set_str(field, s), 0);
}

static void add_env(ServiceSpec *s, const char *kv)
{
    assert_int_equal(pb_push_str(&s->n_env, &s->env, kv), 0);
}

static void add_label(ServiceSpec *s, const char *key, const char *value)
{
    Label *l = PB_NEW(Label);

    assert_non_null(l);
    set_str(&l->key, key);
    set_str(&l->value, value);
    assert_int_equal(pb_push_msg(&s->n_labels, (void ***)&s->labels, l), 0);
}

static PortConfig *add_port(ServiceSpec *s, uint32_t published, uint32_t target,
                            const char *protocol)
{
    PortConfig *p = PB_NEW(PortConfig);

    assert_non_null(p);
    p->published = published;
    p->target = target;
    set_str(&p->protocol, protocol);
    assert_int_equal(pb_push_msg(&s->n_ports, (void ***)&s->ports, p), 0);
    return p;
}

static void add_expose(ServiceSpec *s, uint32_t port)
{
    uint32_t *grown = realloc(s->expose, (s->n_expose + 1) * sizeof(*grown));

    assert_non_null(grown);
    s->expose = grown;
    s->expose[s->n_expose++] = port;
}

static void add_mount(ServiceSpec *s, MountType type, const char *source, const char *target)
{
    Mount *m = PB_NEW(Mount);

    assert_non_null(m);
    m->type = type;
    set_str(&m->source, source);
    set_str(&m->target, target);
    assert_int_equal(pb_push_msg(&s->n_mounts, (void ***)&s->mounts, m), 0);
}

static void add_constraint(ServiceSpec *s, const char *c)
{
    assert_int_equal(pb_push_str(&s->n_constraints, &s->constraints, c), 0);
}

static void add_test(ServiceSpec *s, const char *arg)
{
    assert_int_equal(pb_push_str(&s->health->n_test, &s->health->test, arg), 0);
}

static void add_command(ServiceSpec *s, const char *arg)
{
    assert_int_equal(pb_push_str(&s->n_command, &s->command, arg), 0);
}

/* The smallest valid spec: defaults, a name and an image. */
static ServiceSpec *base_spec(void)
{
    ServiceSpec *s = spec_new();

    assert_non_null(s);
    set_str(&s->name, "web");
    set_str(&s->image, "nginx:1.25");
    return s;
}

/* A spec with every field set to a valid value. */
static ServiceSpec *full_spec(void)
{
    ServiceSpec *s = base_spec();

    set_str(&s->stack, "shop");
    set_str(&s->name, "shop_web");
    set_str(&s->image, "registry.local:5000/shop/web@sha256:0123abcd");
    add_command(s, "httpd");
    add_command(s, "-f");
    assert_int_equal(pb_push_str(&s->n_entrypoint, &s->entrypoint, "/bin/sh"), 0);
    add_env(s, "A=1");
    add_env(s, "EMPTY=");
    add_env(s, "URL=http://x/?a=b");
    add_label(s, "team", "payments");
    add_label(s, "com.example.tier", "");
    s->replicas = 5;
    add_port(s, 8080, 80, "tcp");
    add_port(s, 8443, 443, "");
    add_expose(s, 9000);
    add_test(s, "CMD-SHELL");
    add_test(s, "wget -q -O- localhost/health");
    set_str(&s->health->http_path, "/health?full=1");
    s->health->http_port = 80;
    s->health->interval_ms = 1000;
    s->health->timeout_ms = 500;
    s->health->retries = 2;
    s->health->start_period_ms = 3000;
    s->restart->condition = RESTART_ON_FAILURE;
    s->restart->delay_ms = 0;
    s->restart->max_attempts = 3;
    s->restart->window_ms = 60000;
    s->update->parallelism = 2;
    s->update->delay_ms = 10000;
    s->update->failure_action = FAILURE_ROLLBACK;
    s->update->max_failure_ratio = 0.25;
    s->update->order = ORDER_START_FIRST;
    s->rollback->failure_action = FAILURE_CONTINUE;
    s->rollback->max_failure_ratio = 1;
    s->reservations->nano_cpus = 250000000;
    s->reservations->memory_bytes = 64 << 20;
    s->limits->nano_cpus = 1000000000;
    s->limits->memory_bytes = 128 << 20;
    add_mount(s, MOUNT_VOLUME, "data", "/var/lib/data");
    add_mount(s, MOUNT_VOLUME, "", "/scratch");
    add_mount(s, MOUNT_BIND, "/etc/ssl", "/etc/ssl");
    add_constraint(s, "node.labels.zone==eu-1");
    add_constraint(s, "node.name != n3");
    set_str(&s->user, "1000:1000");
    s->stop_grace_period_ms = 3600000;
    s->drain_delay_ms = 600000;
    s->force_update = 3;
    return s;
}

static void assert_valid(const ServiceSpec *s)
{
    char err[256] = "";
    int rc = spec_validate(s, NULL, err, sizeof(err));

    if (rc != 0)
        fail_msg("spec_validate = %d (%s), want 0", rc, err);
}

/* ------------------------------------------------------ defaults, valid */

static void test_spec_new_defaults(void **state)
{
    ServiceSpec *s = spec_new();

    assert_non_null(s);
    assert_string_equal(s->name, "");
    assert_string_equal(s->image, "");
    assert_int_equal(s->replicas, SPEC_DEFAULT_REPLICAS);
    assert_int_equal(s->stop_grace_period_ms, SPEC_DEFAULT_STOP_GRACE_MS);
    assert_int_equal(s->drain_delay_ms, SPEC_DEFAULT_DRAIN_DELAY_MS);
    assert_non_null(s->health);
    assert_int_equal(s->health->interval_ms, SPEC_DEFAULT_HEALTH_INTERVAL_MS);
    assert_int_equal(s->health->timeout_ms, SPEC_DEFAULT_HEALTH_TIMEOUT_MS);
    assert_int_equal(s->health->retries, SPEC_DEFAULT_HEALTH_RETRIES);
    assert_int_equal(s->health->start_period_ms, 0);
    assert_int_equal(s->health->n_test, 0);
    assert_non_null(s->restart);
    assert_int_equal(s->restart->condition, RESTART_ANY);
    assert_int_equal(s->restart->delay_ms, SPEC_DEFAULT_RESTART_DELAY_MS);
    assert_non_null(s->update);
    assert_int_equal(s->update->parallelism, 1);
    assert_int_equal(s->update->failure_action, FAILURE_PAUSE);
    assert_int_equal(s->update->monitor_ms, SPEC_DEFAULT_UPDATE_MONITOR_MS);
    assert_int_equal(s->update->order, ORDER_STOP_FIRST);
    assert_non_null(s->rollback);
    assert_int_equal(s->rollback->failure_action, FAILURE_PAUSE);
    assert_non_null(s->reservations);
    assert_non_null(s->limits);
    assert_int_equal(s->limits->memory_bytes, 0);
    pb_free(s);
}

static void test_spec_new_validates_once_named(void **state)
{
    ServiceSpec *s = spec_new();
    char err[256];

    /* A fresh spec lacks only what the user must give: a name. */
    assert_int_equal(spec_validate(s, NULL, err, sizeof(err)), SKIFF_EINVAL);
    assert_string_equal(err, "name: required");
    set_str(&s->name, "web");
    assert_int_equal(spec_validate(s, NULL, err, sizeof(err)), SKIFF_EINVAL);
    assert_string_equal(err, "image: required");
    set_str(&s->image, "nginx");
    assert_valid(s);
    pb_free(s);
}

static void test_full_spec_valid(void **state)
{
    ServiceSpec *s = full_spec();
    ServiceSpec *copy;

    assert_valid(s);
    /* and it survives the wire */
    copy = pb_dup(s);
    assert_non_null(copy);
    assert_valid(copy);
    assert_true(pb_equal(s, copy));
    pb_free(copy);
    pb_free(s);
}

static void test_valid_edge_values(void **state)
{
    ServiceSpec *s;

    /* the largest values that are still fine */
    s = base_spec();
    s->replicas = spec_limits_default.max_replicas;
    s->limits->memory_bytes = SPEC_MIN_MEMORY_LIMIT;
    s->reservations->memory_bytes = SPEC_MIN_MEMORY_LIMIT;
    s->health->retries = 1000;
    s->update->max_failure_ratio = 1;
    s->stop_grace_period_ms = 0;
    s->drain_delay_ms = 0;
    add_port(s, 1, 1, "tcp");
    add_port(s, 65535, 65535, "tcp");
    add_port(s, 2, 65535, "tcp"); /* one target behind two published ports */
    add_expose(s, 65534);
    set_str(&s->name, "a");
    assert_valid(s);
    set_str(&s->name, "A-very_long-name-of-63-characters-0123456789-0123456789-abcdefg");
    assert_int_equal(strlen(s->name), 63);
    assert_valid(s);
    pb_free(s);

    /* a reservation without a limit, an http probe on an exposed port */
    s = base_spec();
    s->reservations->nano_cpus = 4000000000;
    s->reservations->memory_bytes = 1;
    add_expose(s, 8080);
    set_str(&s->health->http_path, "/");
    s->health->http_port = 8080;
    add_test(s, "NONE");
    assert_valid(s);
    pb_free(s);
}

/* ------------------------------------------------------ the bad values */

typedef void (*mutate_fn)(ServiceSpec *s);

#define MUT(id) static void mut_##id(ServiceSpec *s)

MUT(name_empty) { set_str(&s->name, ""); }
MUT(name_bad_chars) { set_str(&s->name, "web.1"); }
MUT(name_space) { set_str(&s->name, "my web"); }
MUT(name_leading_dash) { set_str(&s->name, "-web"); }
MUT(name_too_long)
{
    set_str(&s->name, "a123456789012345678901234567890123456789012345678901234567890123");
}
MUT(stack_bad) { set_str(&s->stack, "my stack"); }
MUT(stack_mismatch) { set_str(&s->stack, "shop"); }
MUT(stack_prefix_without_underscore) { set_str(&s->stack, "we"); }
MUT(stack_no_service_name) { set_str(&s->stack, "shop"); set_str(&s->name, "shop_"); }
MUT(image_missing) { set_str(&s->image, ""); }
MUT(image_spaces) { set_str(&s->image, "nginx latest"); }
MUT(image_tab) { set_str(&s->image, "nginx\tlatest"); }
MUT(image_too_long)
{
    char img[300];
    memset(img, 'a', sizeof(img) - 1);
    img[sizeof(img) - 1] = '\0';
    set_str(&s->image, img);
}
MUT(command_control_char) { add_command(s, "echo"); add_command(s, "a\nb"); }
MUT(entrypoint_control_char)
{
    assert_int_equal(pb_push_str(&s->n_entrypoint, &s->entrypoint, "\x1b[0m"), 0);
}
MUT(env_no_equals) { add_env(s, "A=1"); add_env(s, "NOVALUE"); }
MUT(env_empty_key) { add_env(s, "=value"); }
MUT(env_too_many)
{
    for (int i = 0; i < 257; i++)
        add_env(s, "K=V");
}
MUT(env_too_long)
{
    char *kv = malloc(5000);
    assert_non_null(kv);
    memset(kv, 'v', 4999);
    kv[0] = 'K';
    kv[1] = '=';
    kv[4999] = '\0';
    add_env(s, kv);
    free(kv);
}
MUT(label_skiff_prefix) { add_label(s, "skiff.service", "x"); }
MUT(label_empty_key) { add_label(s, "", "x"); }
MUT(label_control_char) { add_label(s, "team", "a\x01"); }
MUT(labels_too_many)
{
    for (int i = 0; i < 257; i++)
        add_label(s, "k", "v");
}
MUT(replicas_over_limit) { s->replicas = 100001; }
MUT(port_published_zero) { add_port(s, 0, 80, "tcp"); }
MUT(port_published_too_big) { add_port(s, 70000, 80, "tcp"); }
MUT(port_target_zero) { add_port(s, 8080, 0, "tcp"); }
MUT(port_target_too_big) { add_port(s, 8080, 65536, "tcp"); }
MUT(port_udp) { add_port(s, 53, 53, "udp"); }
MUT(port_published_twice) { add_port(s, 8080, 80, "tcp"); add_port(s, 8080, 81, "tcp"); }
MUT(ports_too_many)
{
    for (uint32_t i = 0; i < 40; i++)
        add_port(s, 10000 + i, 80, "tcp");
    for (uint32_t i = 0; i < 25; i++)
        add_expose(s, 20000 + i);
}
MUT(expose_zero) { add_expose(s, 0); }
MUT(expose_too_big) { add_expose(s, 65536); }
MUT(expose_twice) { add_expose(s, 9000); add_expose(s, 9001); add_expose(s, 9000); }
MUT(expose_also_published) { add_port(s, 8080, 80, "tcp"); add_expose(s, 8080); }
MUT(health_bad_kind) { add_test(s, "SHELL"); add_test(s, "true"); }
MUT(health_cmd_without_command) { add_test(s, "CMD"); }
MUT(health_cmd_shell_without_command) { add_test(s, "CMD-SHELL"); }
MUT(health_test_control_char) { add_test(s, "CMD"); add_test(s, "a\rb"); }
MUT(health_http_path_no_slash) { add_expose(s, 80); set_str(&s->health->http_path, "health"); }
MUT(health_http_path_space) { add_expose(s, 80); set_str(&s->health->http_path, "/a b"); }
MUT(health_http_path_no_port) { set_str(&s->health->http_path, "/health"); }
MUT(health_http_port_not_a_target)
{
    add_port(s, 8080, 80, "tcp");
    set_str(&s->health->http_path, "/health");
    s->health->http_port = 8080; /* the published port, not the target */
}
MUT(health_interval_zero) { s->health->interval_ms = 0; }
MUT(health_timeout_zero) { s->health->timeout_ms = 0; }
MUT(health_retries_zero) { s->health->retries = 0; }
MUT(health_retries_too_many) { s->health->retries = 1001; }
MUT(health_start_period_negative) { s->health->start_period_ms = -1; }
MUT(health_missing) { pb_free(s->health); s->health = NULL; }
MUT(restart_condition) { s->restart->condition = (RestartCondition)3; }
MUT(restart_condition_negative) { s->restart->condition = (RestartCondition)-1; }
MUT(restart_delay_negative) { s->restart->delay_ms = -1; }
MUT(restart_window_negative) { s->restart->window_ms = -5; }
MUT(restart_missing) { pb_free(s->restart); s->restart = NULL; }
MUT(update_delay_negative) { s->update->delay_ms = -1; }
MUT(update_monitor_negative) { s->update->monitor_ms = -1; }
MUT(update_ratio_negative) { s->update->max_failure_ratio = -0.1; }
MUT(update_ratio_too_big) { s->update->max_failure_ratio = 1.5; }
MUT(update_ratio_nan) { s->update->max_failure_ratio = NAN; }
MUT(update_action) { s->update->failure_action = (FailureAction)3; }
MUT(update_order) { s->update->order = (UpdateOrder)2; }
MUT(update_missing) { pb_free(s->update); s->update = NULL; }
MUT(rollback_delay_negative) { s->rollback->delay_ms = -1; }
MUT(rollback_monitor_negative) { s->rollback->monitor_ms = -1; }
MUT(rollback_ratio_negative) { s->rollback->max_failure_ratio = -0.1; }
MUT(rollback_ratio_too_big) { s->rollback->max_failure_ratio = 1.5; }
MUT(rollback_action) { s->rollback->failure_action = (FailureAction)-1; }
MUT(rollback_action_rollback) { s->rollback->failure_action = FAILURE_ROLLBACK; }
MUT(rollback_order) { s->rollback->order = (UpdateOrder)7; }
MUT(rollback_missing) { pb_free(s->rollback); s->rollback = NULL; }
MUT(reservations_cpu_negative) { s->reservations->nano_cpus = -1; }
MUT(reservations_memory_negative) { s->reservations->memory_bytes = -1; }
MUT(limits_cpu_negative) { s->limits->nano_cpus = -1; }
MUT(limits_memory_negative) { s->limits->memory_bytes = -1; }
MUT(limits_memory_under_6mib) { s->limits->memory_bytes = SPEC_MIN_MEMORY_LIMIT - 1; }
MUT(reservation_cpu_over_limit)
{
    s->limits->nano_cpus = 500000000;
    s->reservations->nano_cpus = 500000001;
}
MUT(reservation_memory_over_limit)
{
    s->limits->memory_bytes = 64 << 20;
    s->reservations->memory_bytes = (64 << 20) + 1;
}
MUT(reservations_missing) { pb_free(s->reservations); s->reservations = NULL; }
MUT(limits_missing) { pb_free(s->limits); s->limits = NULL; }
MUT(mount_bad_type) { add_mount(s, (MountType)2, "data", "/data"); }
MUT(mount_relative_target) { add_mount(s, MOUNT_VOLUME, "data", "data"); }
MUT(mount_empty_target) { add_mount(s, MOUNT_VOLUME, "data", ""); }
MUT(mount_relative_bind_source) { add_mount(s, MOUNT_BIND, "./etc", "/etc/app"); }
MUT(mount_empty_bind_source) { add_mount(s, MOUNT_BIND, "", "/etc/app"); }
MUT(mount_bad_volume_name) { add_mount(s, MOUNT_VOLUME, "my/vol", "/data"); }
MUT(mount_target_twice)
{
    add_mount(s, MOUNT_VOLUME, "a", "/data");
    add_mount(s, MOUNT_BIND, "/srv", "/data");
}
MUT(mount_target_control_char) { add_mount(s, MOUNT_VOLUME, "a", "/da\nta"); }
MUT(mounts_too_many)
{
    char target[32];
    for (int i = 0; i < 33; i++) {
        snprintf(target, sizeof(target), "/m%d", i);
        add_mount(s, MOUNT_VOLUME, "", target);
    }
}
MUT(constraint_unknown_attribute) { add_constraint(s, "node.foo==x"); }
MUT(constraint_single_equals) { add_constraint(s, "node.name=x"); }
MUT(constraint_empty_label_key) { add_constraint(s, "node.labels.==x"); }
MUT(constraint_no_value) { add_constraint(s, "node.name=="); }
MUT(constraint_second_bad)
{
    add_constraint(s, "node.name==a");
    add_constraint(s, "node.platform.os==linux");
}
MUT(constraints_too_many)
{
    for (int i = 0; i < 33; i++)
        add_constraint(s, "node.name!=z");
}
MUT(user_spaces) { set_str(&s->user, "www data"); }
MUT(user_too_long)
{
    set_str(&s->user, "u1234567890123456789012345678901234567890123456789012345678901234");
}
/* Values with control characters, which messages that quote the value must
 * not carry into the one line they are. */
MUT(name_newline) { set_str(&s->name, "web\nx"); }
MUT(stack_newline) { set_str(&s->stack, "shop\n"); }
MUT(image_newline) { set_str(&s->image, "nginx\r\nx"); }
MUT(label_newline) { add_label(s, "skiff.\nx", "v"); }
MUT(mount_volume_newline) { add_mount(s, MOUNT_VOLUME, "vol\n", "/data"); }
MUT(constraint_newline) { add_constraint(s, "node.foo\n==x"); }
MUT(user_newline) { set_str(&s->user, "www\n"); }
MUT(stop_grace_negative) { s->stop_grace_period_ms = -1; }
MUT(stop_grace_too_long) { s->stop_grace_period_ms = 3600001; }
MUT(drain_delay_negative) { s->drain_delay_ms = -1; }
MUT(drain_delay_too_long) { s->drain_delay_ms = 600001; }

static const struct bad_case {
    const char *what;
    mutate_fn mutate;
    const char *prefix; /* the message starts with this */
} bad_cases[] = {
#define BAD(id, prefix) { #id, mut_##id, prefix }
    BAD(name_empty, "name: required"),
    BAD(name_bad_chars, "name: web.1:"),
    BAD(name_space, "name: my web:"),
    BAD(name_leading_dash, "name: -web:"),
    BAD(name_too_long, "name: a1234"),
    BAD(stack_bad, "stack: my stack "),
    BAD(stack_mismatch, "name: a service of stack shop must be named shop_NAME"),
    BAD(stack_prefix_without_underscore, "name: a service of stack we "),
    BAD(stack_no_service_name, "name: a service of stack shop must be named shop_NAME"),
    BAD(image_missing, "image: required"),
    BAD(image_spaces, "image: nginx latest"),
    BAD(image_tab, "image: nginx?latest"),
    BAD(image_too_long, "image: longer than 255"),
    BAD(command_control_char, "command[1]: "),
    BAD(entrypoint_control_char, "entrypoint[0]: "),
    BAD(env_no_equals, "env[1]: NOVALUE"),
    BAD(env_empty_key, "env[0]: =value"),
    BAD(env_too_many, "env: more than 256"),
    BAD(env_too_long, "env[0]: longer than 4096"),
    BAD(label_skiff_prefix, "labels: skiff.service:"),
    BAD(label_empty_key, "labels[0]: empty key"),
    BAD(label_control_char, "labels: contains control"),
    BAD(labels_too_many, "labels: more than 256"),
    BAD(replicas_over_limit, "replicas: 100001"),
    BAD(port_published_zero, "ports[0]: published port 0 "),
    BAD(port_published_too_big, "ports[0]: published port 70000 "),
    BAD(port_target_zero, "ports[0]: target port 0 "),
    BAD(port_target_too_big, "ports[0]: target port 65536 "),
    BAD(port_udp, "ports[0]: protocol"),
    BAD(port_published_twice, "ports[1]: port 8080 is published twice"),
    BAD(ports_too_many, "ports: more than 64"),
    BAD(expose_zero, "expose[0]: port 0 "),
    BAD(expose_too_big, "expose[0]: port 65536 "),
    BAD(expose_twice, "expose[2]: port 9000 is exposed twice"),
    BAD(expose_also_published, "expose[0]: port 8080 is also published"),
    BAD(health_bad_kind, "health.test: must start with"),
    BAD(health_cmd_without_command, "health.test: CMD needs"),
    BAD(health_cmd_shell_without_command, "health.test: CMD-SHELL needs"),
    BAD(health_test_control_char, "health.test[1]: "),
    BAD(health_http_path_no_slash, "health.http_path: must start with /"),
    BAD(health_http_path_space, "health.http_path: must not contain spaces"),
    BAD(health_http_path_no_port, "health.http_path: the service has no port"),
    BAD(health_http_port_not_a_target, "health.http_port: 8080 "),
    BAD(health_interval_zero, "health.interval:"),
    BAD(health_timeout_zero, "health.timeout:"),
    BAD(health_retries_zero, "health.retries:"),
    BAD(health_retries_too_many, "health.retries:"),
    BAD(health_start_period_negative, "health.start_period:"),
    BAD(health_missing, "health: missing"),
    BAD(restart_condition, "restart.condition:"),
    BAD(restart_condition_negative, "restart.condition:"),
    BAD(restart_delay_negative, "restart.delay:"),
    BAD(restart_window_negative, "restart.window:"),
    BAD(restart_missing, "restart: missing"),
    BAD(update_delay_negative, "update.delay:"),
    BAD(update_monitor_negative, "update.monitor:"),
    BAD(update_ratio_negative, "update.max_failure_ratio:"),
    BAD(update_ratio_too_big, "update.max_failure_ratio:"),
    BAD(update_ratio_nan, "update.max_failure_ratio:"),
    BAD(update_action, "update.failure_action: must be pause, continue or rollback"),
    BAD(update_order, "update.order:"),
    BAD(update_missing, "update: missing"),
    BAD(rollback_delay_negative, "rollback.delay:"),
    BAD(rollback_monitor_negative, "rollback.monitor:"),
    BAD(rollback_ratio_negative, "rollback.max_failure_ratio:"),
    BAD(rollback_ratio_too_big, "rollback.max_failure_ratio:"),
    BAD(rollback_action, "rollback.failure_action: must be pause, continue or rollback"),
    BAD(rollback_action_rollback, "rollback.failure_action: must be pause or continue"),
    BAD(rollback_order, "rollback.order:"),
    BAD(rollback_missing, "rollback: missing"),
    BAD(reservations_cpu_negative, "reservations.cpu: must not be negative"),
    BAD(reservations_memory_negative, "reservations.memory: must not be negative"),
    BAD(limits_cpu_negative, "limits.cpu:"),
    BAD(limits_memory_negative, "limits.memory: must not be negative"),
    BAD(limits_memory_under_6mib, "limits.memory: must be at least 6MiB"),
    BAD(reservation_cpu_over_limit, "reservations.cpu: more than limits.cpu"),
    BAD(reservation_memory_over_limit, "reservations.memory: more than limits.memory"),
    BAD(reservations_missing, "reservations: missing"),
    BAD(limits_missing, "limits: missing"),
    BAD(mount_bad_type, "mounts[0].type:"),
    BAD(mount_relative_target, "mounts[0].target: must be an absolute path"),
    BAD(mount_empty_target, "mounts[0].target: must be an absolute path"),
    BAD(mount_relative_bind_source, "mounts[0].source: a bind source"),
    BAD(mount_empty_bind_source, "mounts[0].source: a bind source"),
    BAD(mount_bad_volume_name, "mounts[0].source: my/vol "),
    BAD(mount_target_twice, "mounts[1].target: /data is mounted twice"),
    BAD(mount_target_control_char, "mounts.target: contains control"),
    BAD(mounts_too_many, "mounts: more than 32"),
    BAD(constraint_unknown_attribute, "constraints[0]: node.foo==x:"),
    BAD(constraint_single_equals, "constraints[0]: node.name=x:"),
    BAD(constraint_empty_label_key, "constraints[0]: node.labels.==x:"),
    BAD(constraint_no_value, "constraints[0]: node.name==:"),
    BAD(constraint_second_bad, "constraints[1]: node.platform.os==linux:"),
    BAD(constraints_too_many, "constraints: more than 32"),
    BAD(user_spaces, "user: www data "),
    BAD(user_too_long, "user: longer than 64"),
    BAD(name_newline, "name: web?x:"),
    BAD(stack_newline, "stack: shop? "),
    BAD(image_newline, "image: nginx??x "),
    BAD(label_newline, "labels: skiff.?x:"),
    BAD(mount_volume_newline, "mounts[0].source: vol? "),
    BAD(constraint_newline, "constraints[0]: node.foo?==x:"),
    BAD(user_newline, "user: www? "),
    BAD(stop_grace_negative, "stop_grace_period:"),
    BAD(stop_grace_too_long, "stop_grace_period:"),
    BAD(drain_delay_negative, "drain_delay:"),
    BAD(drain_delay_too_long, "drain_delay:"),
#undef BAD
};

#define N_BAD (sizeof(bad_cases) / sizeof(bad_cases[0]))

/* Runs case i on a fresh spec; returns its message in err. */
static void run_bad_case(size_t i, char *err, size_t errlen)
{
    const struct bad_case *bc = &bad_cases[i];
    ServiceSpec *s = base_spec();
    int rc;

    bc->mutate(s);
    memset(err, 0, errlen);
    rc = spec_validate(s, NULL, err, errlen);
    pb_free(s);
    if (rc != SKIFF_EINVAL)
        fail_msg("%s: spec_validate = %d (\"%s\"), want SKIFF_EINVAL", bc->what, rc, err);
    if (strncmp(err, bc->prefix, strlen(bc->prefix)) != 0)
        fail_msg("%s: message \"%s\" does not start with \"%s\"", bc->what, err, bc->prefix);
    for (const char *c = err; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            fail_msg("%s: message \"%s\" is not one printable line", bc->what, err);
}

static void test_validate_bad_values(void **state)
{
    static char msgs[N_BAD][256];

    for (size_t i = 0; i < N_BAD; i++)
        run_bad_case(i, msgs[i], sizeof(msgs[i]));
    /* Each bad value gets its own message. Two cases that break the same
     * field the same way (empty and relative sources, say) may share one. */
    for (size_t i = 0; i < N_BAD; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(msgs[i], msgs[j]) == 0 && strcmp(bad_cases[i].prefix,
                                                        bad_cases[j].prefix) != 0)
                fail_msg("%s and %s give the same message \"%s\"", bad_cases[j].what,
                         bad_cases[i].what, msgs[i]);
}

static void test_validate_small_err_buffer(void **state)
{
    ServiceSpec *s = base_spec();
    char err[8];

    s->update->max_failure_ratio = 2;
    memset(err, 'x', sizeof(err));
    assert_int_equal(spec_validate(s, NULL, err, sizeof(err)), SKIFF_EINVAL);
    assert_string_equal(err, "update.");
    pb_free(s);
}

static void test_validate_custom_limits(void **state)
{
    spec_limits_t lim = spec_limits_default;
    ServiceSpec *s = base_spec();
    char err[256];

    lim.max_replicas = 3;
    lim.max_list = 2;
    lim.max_string = 10;
    lim.max_ports = 1;
    lim.max_mounts = 1;
    lim.max_constraints = 1;
    assert_int_equal(spec_validate(s, &lim, err, sizeof(err)), 0);

    s->replicas = 4;
    assert_int_equal(spec_validate(s, &lim, err, sizeof(err)), SKIFF_EINVAL);
    assert_string_equal(err, "replicas: 4 is more than the limit of 3");
    s->replicas = 3;

    add_command(s, "a");
    add_command(s, "b");
    assert_int_equal(spec_validate(s, &lim, err, sizeof(err)), 0);
    add_command(s, "c");
    assert_int_equal(spec_validate(s, &lim, err, sizeof(err)), SKIFF_EINVAL);
    assert_string_equal(err, "command: more than 2 entries");
    pb_free(s);

    s = base_spec();
    add_env(s, "K=0123456789");
    assert_int_equal(spec_validate(s, &lim, err, sizeof(err)), SKIFF_EINVAL);
    assert_string_equal(err, "env[0]: longer than 10 bytes");
    pb_free(s);

    s = base_spec();
    add_port(s, 80, 80, "tcp");
    assert_int_equal(spec_validate(s, &lim, err, sizeof(err)), 0);
    add_expose(s, 81);
    assert_int_equal(spec_validate(s, &lim, err, sizeof(err)), SKIFF_EINVAL);
    assert_string_equal(err, "ports: more than 1 ports");
    pb_free(s);

    s = base_spec();
    add_mount(s, MOUNT_VOLUME, "", "/a");
    add_mount(s, MOUNT_VOLUME, "", "/b");
    assert_int_equal(spec_validate(s, &lim, err, sizeof(err)), SKIFF_EINVAL);
    assert_string_equal(err, "mounts: more than 1 mounts");
    pb_free(s);

    s = base_spec();
    add_constraint(s, "node.id==a");
    add_constraint(s, "node.id==b");
    assert_int_equal(spec_validate(s, &lim, err, sizeof(err)), SKIFF_EINVAL);
    assert_string_equal(err, "constraints: more than 1");
    pb_free(s);
}

static void test_validate_does_not_change_spec(void **state)
{
    ServiceSpec *s = full_spec();
    ServiceSpec *before = pb_dup(s);
    char err[256];

    assert_non_null(before);
    assert_int_equal(spec_validate(s, NULL, err, sizeof(err)), 0);
    assert_true(pb_equal(s, before));
    pb_free(before);
    pb_free(s);
}

/* ------------------------------------------------------------ complete */

static void test_complete_fills_missing(void **state)
{
    ServiceSpec *s = PB_NEW(ServiceSpec);
    PortConfig *p1, *p2;

    assert_non_null(s);
    assert_null(s->health);
    assert_null(s->update);
    p1 = add_port(s, 8080, 80, "");
    p2 = add_port(s, 8081, 81, "tcp");
    s->restart = PB_NEW(RestartPolicy);
    assert_non_null(s->restart);
    s->restart->delay_ms = 7;
    s->restart->condition = RESTART_NONE;

    assert_int_equal(spec_complete(s), 0);
    assert_non_null(s->health);
    assert_int_equal(s->health->interval_ms, SPEC_DEFAULT_HEALTH_INTERVAL_MS);
    assert_int_equal(s->health->timeout_ms, SPEC_DEFAULT_HEALTH_TIMEOUT_MS);
    assert_int_equal(s->health->retries, SPEC_DEFAULT_HEALTH_RETRIES);
    /* a submessage already there is kept as it was */
    assert_int_equal(s->restart->delay_ms, 7);
    assert_int_equal(s->restart->condition, RESTART_NONE);
    assert_non_null(s->update);
    assert_int_equal(s->update->monitor_ms, SPEC_DEFAULT_UPDATE_MONITOR_MS);
    assert_int_equal(s->update->parallelism, 1);
    assert_non_null(s->rollback);
    assert_int_equal(s->rollback->monitor_ms, SPEC_DEFAULT_UPDATE_MONITOR_MS);
    assert_int_equal(s->rollback->failure_action, FAILURE_PAUSE);
    assert_non_null(s->reservations);
    assert_non_null(s->limits);
    assert_string_equal(p1->protocol, "tcp");
    assert_string_equal(p2->protocol, "tcp");

    /* Completing twice changes nothing. */
    {
        ServiceSpec *copy = pb_dup(s);
        assert_non_null(copy);
        assert_int_equal(spec_complete(s), 0);
        assert_true(pb_equal(s, copy));
        pb_free(copy);
    }

    /* And once named, it validates. */
    set_str(&s->name, "web");
    set_str(&s->image, "nginx");
    s->stop_grace_period_ms = 0;
    assert_valid(s);
    pb_free(s);
}

static void test_complete_after_wire(void **state)
{
    /* A spec whose submessages were all default (so absent on the wire)
     * comes back whole after spec_complete. */
    ServiceSpec *s = PB_NEW(ServiceSpec);
    uint8_t buf[256];
    size_t n;
    ServiceSpec *back;

    assert_non_null(s);
    set_str(&s->name, "web");
    set_str(&s->image, "nginx");
    n = skiff__v1__service_spec__pack(s, buf);
    back = skiff__v1__service_spec__unpack(NULL, n, buf);
    assert_non_null(back);
    assert_null(back->update);
    assert_int_equal(spec_complete(back), 0);
    assert_non_null(back->update);
    assert_non_null(back->health);
    assert_valid(back);
    pb_free(back);
    pb_free(s);
}

/* ---------------------------------------------------- same but replicas */

static void test_same_but_replicas(void **state)
{
    ServiceSpec *a = full_spec();
    ServiceSpec *b = pb_dup(a);

    assert_non_null(b);
    assert_true(spec_same_but_replicas(a, b));
    assert_true(spec_same_but_replicas(a, a));
    b->replicas = 99;
    assert_true(spec_same_but_replicas(a, b));
    b->replicas = 0;
    assert_true(spec_same_but_replicas(a, b));
    /* the comparison left both specs alone */
    assert_int_equal(a->replicas, 5);
    assert_int_equal(b->replicas, 0);

    set_str(&b->image, "nginx:1.26");
    assert_false(spec_same_but_replicas(a, b));
    set_str(&b->image, a->image);
    assert_true(spec_same_but_replicas(a, b));

    b->update->delay_ms++;
    assert_false(spec_same_but_replicas(a, b));
    b->update->delay_ms--;

    b->force_update++;
    assert_false(spec_same_but_replicas(a, b));
    b->force_update--;

    add_env(b, "NEW=1");
    assert_false(spec_same_but_replicas(a, b));
    pb_free(b);

    b = pb_dup(a);
    assert_non_null(b);
    b->ports[0]->published = 9090;
    assert_false(spec_same_but_replicas(a, b));
    pb_free(b);

    b = pb_dup(a);
    assert_non_null(b);
    b->health->retries = 9;
    b->replicas = 1;
    assert_false(spec_same_but_replicas(a, b));
    pb_free(b);
    pb_free(a);
}

/* ---------------------------------------------------------- constraints */

static void test_constraint_parse_good(void **state)
{
    static const struct {
        const char *in;
        enum constraint_kind kind;
        int equal;
        const char *key, *value;
    } cases[] = {
        { "node.name==a", CONSTRAINT_NODE_NAME, 1, "", "a" },
        { "node.hostname==h1", CONSTRAINT_NODE_NAME, 1, "", "h1" },
        { "node.id!=b", CONSTRAINT_NODE_ID, 0, "", "b" },
        { "node.labels.zone == eu-1", CONSTRAINT_NODE_LABEL, 1, "zone", "eu-1" },
        { "node.labels.zone==eu-1", CONSTRAINT_NODE_LABEL, 1, "zone", "eu-1" },
        { "  node.labels.com.example.tier !=  db  ", CONSTRAINT_NODE_LABEL, 0,
          "com.example.tier", "db" },
        { "node.name\t==\tn 1", CONSTRAINT_NODE_NAME, 1, "", "n 1" },
        { "node.labels.x==a=b", CONSTRAINT_NODE_LABEL, 1, "x", "a=b" },
        { "engine.labels.zone==edge", CONSTRAINT_ENGINE_LABEL, 1, "zone", "edge" },
        { " engine.labels.disk != ssd", CONSTRAINT_ENGINE_LABEL, 0, "disk", "ssd" },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        constraint_t c;
        int rc = constraint_parse(cases[i].in, &c);
        if (rc != 0)
            fail_msg("constraint_parse(\"%s\") = %d, want 0", cases[i].in, rc);
        assert_int_equal(c.kind, cases[i].kind);
        assert_int_equal(c.equal, cases[i].equal);
        assert_string_equal(c.key, cases[i].key);
        assert_string_equal(c.value, cases[i].value);
    }
}

static void test_constraint_parse_bad(void **state)
{
    static const char *const cases[] = {
        "",
        "node.name",
        "==x",
        "node.foo==x",
        "node.name=x",
        "node.name = = x",
        "node.labels.==x",
        "node.labels==x",
        "node.labels.  ==x",
        "node.name==",
        "node.name==   ",
        "node.name==a==b",
        "node.name==a!=b",
        "node.name!=a!=b",
        "node.name!=a==b",
        "node.labels.k!=v==w", /* two operators: not a key "k!=v" */
        "node.labels.k==v!=w",
        "engine.labels.==y",
        "engine.label.x==y",
        "node.platform.os==linux",
        "NODE.NAME==x",
        "node.name<>x",
        "node.name~=x",
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        constraint_t c;
        int rc = constraint_parse(cases[i], &c);
        if (rc != SKIFF_EINVAL)
            fail_msg("constraint_parse(\"%s\") = %d, want SKIFF_EINVAL", cases[i], rc);
    }
}

static void test_constraint_parse_lengths(void **state)
{
    char s[600];
    constraint_t c;
    int n;

    /* the longest key and value that fit */
    n = snprintf(s, sizeof(s), "node.labels.%.*s==%.*s", 127,
                 "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
                 "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
                 255,
                 "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"
                 "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"
                 "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"
                 "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv");
    assert_true(n > 0 && (size_t)n < sizeof(s));
    assert_int_equal(constraint_parse(s, &c), 0);
    assert_int_equal(strlen(c.key), 127);
    assert_int_equal(strlen(c.value), 255);

    /* a key of 128 */
    memset(s, 0, sizeof(s));
    strcpy(s, "node.labels.");
    memset(s + 12, 'k', 128);
    strcat(s, "==v");
    assert_int_equal(constraint_parse(s, &c), SKIFF_EINVAL);

    /* a value of 256 */
    memset(s, 0, sizeof(s));
    strcpy(s, "node.name==");
    memset(s + 11, 'v', 256);
    assert_int_equal(constraint_parse(s, &c), SKIFF_EINVAL);

    /* a very long left-hand side */
    memset(s, 'x', sizeof(s) - 1);
    s[sizeof(s) - 1] = '\0';
    memcpy(s + 500, "==v", 3);
    assert_int_equal(constraint_parse(s, &c), SKIFF_EINVAL);
}

/* -------------------------------------------------------------- names */

static void test_name_valid(void **state)
{
    static const char *const good[] = {
        "a", "web", "Web1", "0day", "my-web_2", "a-",
        "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk", /* 63 */
    };
    static const char *const bad[] = {
        "", "-a", "_a", "a.b", "a b", "a/b", "é", "a\n", "a:b",
        "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl", /* 64 */
    };

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!spec_name_valid(good[i]))
            fail_msg("spec_name_valid(\"%s\") = 0, want 1", good[i]);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (spec_name_valid(bad[i]))
            fail_msg("spec_name_valid(\"%s\") = 1, want 0", bad[i]);
    assert_false(spec_name_valid(NULL));
}

/* skiff.health.http, skiff.health.http-port and skiff.expose become the
 * spec's fields; other labels stay; a bad one is refused, naming it. */
static void test_take_labels(void **state)
{
    static const struct {
        const char *key, *value, *error;
    } bad[] = {
        { "skiff.health.http", "health", "labels: skiff.health.http: expected a path like /health" },
        { "skiff.health.http-port", "0", "labels: skiff.health.http-port: \"0\" is not a port (1-65535)" },
        { "skiff.health.http-port", "8o", "labels: skiff.health.http-port: \"8o\" is not a port (1-65535)" },
        { "skiff.expose", "5432,,6379", "labels: skiff.expose: expected PORT[,PORT...]" },
        { "skiff.expose", "", "labels: skiff.expose: expected PORT[,PORT...]" },
        { "skiff.expose", "5432,", "labels: skiff.expose: expected PORT[,PORT...]" },
        { "skiff.expose", ",5432", "labels: skiff.expose: expected PORT[,PORT...]" },
        { "skiff.expose", "70000", "labels: skiff.expose: \"70000\" is not a port (1-65535)" },
        { "skiff.node", "n1", "labels: skiff.node: not a label skiff knows (the skiff. prefix is reserved)" },
    };
    ServiceSpec *s = spec_new();
    char err[256];

    (void)state;
    assert_non_null(s);
    s->expose = calloc(1, sizeof(*s->expose));
    assert_non_null(s->expose);
    s->expose[0] = 1;
    s->n_expose = 1;
    add_label(s, "tier", "db");
    add_label(s, "skiff.health.http", "/ready");
    add_label(s, "skiff.health.http-port", "8081");
    add_label(s, "skiff.expose", "5432,6379");
    assert_int_equal(spec_take_labels(s, err, sizeof(err)), 0);
    assert_int_equal(s->n_labels, 1);
    assert_string_equal(s->labels[0]->key, "tier");
    assert_string_equal(s->health->http_path, "/ready");
    assert_int_equal(s->health->http_port, 8081);
    assert_int_equal(s->n_expose, 2); /* replaced, not added to */
    assert_int_equal(s->expose[0], 5432);
    assert_int_equal(s->expose[1], 6379);
    pb_free(s);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_non_null(s = spec_new());
        add_label(s, bad[i].key, bad[i].value);
        assert_int_equal(spec_take_labels(s, err, sizeof(err)), SKIFF_EINVAL);
        if (strcmp(err, bad[i].error) != 0)
            fail_msg("case %zu:\n  got  %s\n  want %s", i, err, bad[i].error);
        assert_int_equal(s->n_labels, 1); /* nothing taken */
        assert_string_equal(s->health->http_path, "");
        pb_free(s);
    }
    /* a good one taken before a bad one: the spec stays whole (freed once) */
    assert_non_null(s = spec_new());
    add_label(s, "skiff.expose", "5432");
    add_label(s, "skiff.nope", "x");
    add_label(s, "team", "a");
    assert_int_equal(spec_take_labels(s, err, sizeof(err)), SKIFF_EINVAL);
    assert_int_equal(s->n_labels, 2);
    assert_string_equal(s->labels[0]->key, "skiff.nope");
    assert_string_equal(s->labels[1]->key, "team");
    pb_free(s);
}

static void test_enum_names(void **state)
{
    assert_string_equal(spec_restart_condition_name(RESTART_ANY), "any");
    assert_string_equal(spec_restart_condition_name(RESTART_ON_FAILURE), "on-failure");
    assert_string_equal(spec_restart_condition_name(RESTART_NONE), "none");
    assert_string_equal(spec_restart_condition_name((RestartCondition)3), "unknown");
    assert_string_equal(spec_restart_condition_name((RestartCondition)-1), "unknown");

    assert_string_equal(spec_failure_action_name(FAILURE_PAUSE), "pause");
    assert_string_equal(spec_failure_action_name(FAILURE_CONTINUE), "continue");
    assert_string_equal(spec_failure_action_name(FAILURE_ROLLBACK), "rollback");
    assert_string_equal(spec_failure_action_name((FailureAction)3), "unknown");
    assert_string_equal(spec_failure_action_name((FailureAction)-1), "unknown");

    assert_string_equal(spec_update_order_name(ORDER_STOP_FIRST), "stop-first");
    assert_string_equal(spec_update_order_name(ORDER_START_FIRST), "start-first");
    assert_string_equal(spec_update_order_name((UpdateOrder)2), "unknown");
    assert_string_equal(spec_update_order_name((UpdateOrder)-1), "unknown");
}

static void test_enum_parse(void **state)
{
    RestartCondition rc = RESTART_ANY;
    FailureAction fa = FAILURE_PAUSE;
    UpdateOrder uo = ORDER_STOP_FIRST;

    assert_int_equal(spec_restart_condition_parse("on-failure", &rc), 0);
    assert_int_equal(rc, RESTART_ON_FAILURE);
    assert_int_equal(spec_restart_condition_parse("none", &rc), 0);
    assert_int_equal(rc, RESTART_NONE);
    assert_int_equal(spec_restart_condition_parse("any", &rc), 0);
    assert_int_equal(rc, RESTART_ANY);

    assert_int_equal(spec_failure_action_parse("continue", &fa), 0);
    assert_int_equal(fa, FAILURE_CONTINUE);
    assert_int_equal(spec_failure_action_parse("rollback", &fa), 0);
    assert_int_equal(fa, FAILURE_ROLLBACK);
    assert_int_equal(spec_failure_action_parse("pause", &fa), 0);
    assert_int_equal(fa, FAILURE_PAUSE);

    assert_int_equal(spec_update_order_parse("start-first", &uo), 0);
    assert_int_equal(uo, ORDER_START_FIRST);
    assert_int_equal(spec_update_order_parse("stop-first", &uo), 0);
    assert_int_equal(uo, ORDER_STOP_FIRST);

    /* Bad text: SKIFF_EINVAL, out untouched. */
    rc = RESTART_NONE;
    fa = FAILURE_CONTINUE;
    uo = ORDER_START_FIRST;
    static const char *const bad[] = { "", "Any", "on_failure", "always", " none", "none " };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(spec_restart_condition_parse(bad[i], &rc), SKIFF_EINVAL);
    assert_int_equal(spec_failure_action_parse("Pause", &fa), SKIFF_EINVAL);
    assert_int_equal(spec_failure_action_parse("stop", &fa), SKIFF_EINVAL);
    assert_int_equal(spec_failure_action_parse("", &fa), SKIFF_EINVAL);
    assert_int_equal(spec_update_order_parse("stop_first", &uo), SKIFF_EINVAL);
    assert_int_equal(spec_update_order_parse("start", &uo), SKIFF_EINVAL);
    assert_int_equal(spec_update_order_parse("", &uo), SKIFF_EINVAL);
    assert_int_equal(rc, RESTART_NONE);
    assert_int_equal(fa, FAILURE_CONTINUE);
    assert_int_equal(uo, ORDER_START_FIRST);
}

static void test_enum_name_parse_round_trip(void **state)
{
    for (int v = 0; v <= 2; v++) {
        RestartCondition rc;
        FailureAction fa;
        assert_int_equal(spec_restart_condition_parse(
                             spec_restart_condition_name((RestartCondition)v), &rc), 0);
        assert_int_equal(rc, v);
        assert_int_equal(spec_failure_action_parse(
                             spec_failure_action_name((FailureAction)v), &fa), 0);
        assert_int_equal(fa, v);
    }
    for (int v = 0; v <= 1; v++) {
        UpdateOrder uo;
        assert_int_equal(spec_update_order_parse(spec_update_order_name((UpdateOrder)v), &uo),
                         0);
        assert_int_equal(uo, v);
    }
}

/* ------------------------------------------------- secrets and configs */

static SecretRef *parse_ref(const char *text, SecretKind kind)
{
    SecretRef *r = NULL;
    char err[256] = "";

    if (spec_secret_ref_parse(text, kind, &r, err, sizeof err) != 0)
        fail_msg("%s: %s", text, err);
    return r;
}

static void expect_ref_error(const char *text, SecretKind kind, const char *msg)
{
    SecretRef *r = (SecretRef *)1;
    char err[256] = "";

    assert_int_equal(spec_secret_ref_parse(text, kind, &r, err, sizeof err), SKIFF_EINVAL);
    assert_null(r);
    assert_string_equal(err, msg);
}

static void test_secret_ref_parse(void **state)
{
    SecretRef *r = parse_ref("db_pass", SECRET_KIND_SECRET);

    assert_string_equal(r->name, "db_pass");
    assert_string_equal(r->target, "db_pass");
    assert_int_equal(r->mode, 0444);
    assert_int_equal(r->uid, 0);
    pb_free(r);
    r = parse_ref("source=db_pass_v2,target=db_pass,uid=70,gid=71,mode=0400", SECRET_KIND_SECRET);
    assert_string_equal(r->name, "db_pass_v2");
    assert_string_equal(r->target, "db_pass");
    assert_int_equal(r->uid, 70);
    assert_int_equal(r->gid, 71);
    assert_int_equal(r->mode, 0400);
    pb_free(r);
    r = parse_ref("api.json", SECRET_KIND_CONFIG);
    assert_string_equal(r->target, "/api.json");
    pb_free(r);
    r = parse_ref("src=api.json,dst=/etc/api/config.json,mode=440", SECRET_KIND_CONFIG);
    assert_string_equal(r->target, "/etc/api/config.json");
    assert_int_equal(r->mode, 0440);
    pb_free(r);

    expect_ref_error("target=x", SECRET_KIND_SECRET,
                     "--secret: target=x: the secret's name (source=) is missing");
    expect_ref_error("source=a,size=3", SECRET_KIND_SECRET,
                     "--secret: size: not an option skiff knows (source, target, uid, gid, mode)");
    expect_ref_error("source=a,mode=0999", SECRET_KIND_SECRET,
                     "mode: \"0999\" is not an octal mode like 0400");
    expect_ref_error("source=a,mode=01777", SECRET_KIND_SECRET,
                     "mode: \"01777\" is not an octal mode like 0400");
    expect_ref_error("source=a,uid=-1", SECRET_KIND_SECRET, "uid: \"-1\" is not a number");
    expect_ref_error("bad/name", SECRET_KIND_CONFIG, "--config: bad/name is not a valid config name");
    expect_ref_error("source=a,junk", SECRET_KIND_SECRET,
                     "--secret: junk: expected KEY=VALUE (source, target, uid, gid, mode)");
}

static void test_secret_name_valid(void **state)
{
    char long_name[70];

    assert_true(spec_secret_name_valid("db_pass"));
    assert_true(spec_secret_name_valid("a"));
    assert_true(spec_secret_name_valid("api.v2-json"));
    assert_false(spec_secret_name_valid(""));
    assert_false(spec_secret_name_valid("_x"));
    assert_false(spec_secret_name_valid("x."));
    assert_false(spec_secret_name_valid("a b"));
    assert_false(spec_secret_name_valid("a/b"));
    memset(long_name, 'a', 64);
    long_name[64] = '\0';
    assert_true(spec_secret_name_valid(long_name));
    long_name[64] = 'a';
    long_name[65] = '\0';
    assert_false(spec_secret_name_valid(long_name));
}

static void add_ref(ServiceSpec *s, SecretKind kind, const char *text)
{
    SecretRef *r = parse_ref(text, kind);

    if (kind == SECRET_KIND_SECRET)
        assert_int_equal(pb_push_msg(&s->n_secrets, (void ***)&s->secrets, r), 0);
    else
        assert_int_equal(pb_push_msg(&s->n_configs, (void ***)&s->configs, r), 0);
}

static void expect_spec_error(ServiceSpec *s, const char *msg)
{
    char err[256] = "";

    assert_int_equal(spec_validate(s, NULL, err, sizeof err), SKIFF_EINVAL);
    assert_string_equal(err, msg);
    pb_free(s);
}

static void test_validate_secret_refs(void **state)
{
    ServiceSpec *s = base_spec();
    char err[256] = "";

    add_ref(s, SECRET_KIND_SECRET, "db_pass");
    add_ref(s, SECRET_KIND_SECRET, "source=db_pass,target=db_pass_copy");
    add_ref(s, SECRET_KIND_CONFIG, "source=api,target=/etc/api.json");
    assert_int_equal(spec_validate(s, NULL, err, sizeof err), 0);
    pb_free(s);

    s = base_spec();
    add_ref(s, SECRET_KIND_SECRET, "db_pass");
    add_ref(s, SECRET_KIND_SECRET, "source=db_pass_v2,target=db_pass");
    expect_spec_error(s, "secrets: target db_pass is used twice (db_pass and db_pass_v2)");

    s = base_spec();
    add_ref(s, SECRET_KIND_SECRET, "source=a,target=dir/file");
    expect_spec_error(s, "secrets[0].target: dir/file must be a file name (it is put in "
                         "/run/secrets)");
    s = base_spec();
    add_ref(s, SECRET_KIND_SECRET, "source=a,target=..");
    expect_spec_error(s, "secrets[0].target: .. must be a file name (it is put in /run/secrets)");
    s = base_spec();
    add_ref(s, SECRET_KIND_CONFIG, "source=a,target=etc/x");
    expect_spec_error(s, "configs[0].target: etc/x must be an absolute path without . or .. in it");
    s = base_spec();
    add_ref(s, SECRET_KIND_CONFIG, "source=a,target=/etc/../x");
    expect_spec_error(s, "configs[0].target: /etc/../x must be an absolute path without . or .. "
                         "in it");
    s = base_spec();
    add_ref(s, SECRET_KIND_SECRET, "k");
    add_ref(s, SECRET_KIND_CONFIG, "source=c,target=/run/secrets/k");
    expect_spec_error(s, "configs: target /run/secrets/k is secret k's");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_new_defaults),
        cmocka_unit_test(test_spec_new_validates_once_named),
        cmocka_unit_test(test_full_spec_valid),
        cmocka_unit_test(test_valid_edge_values),
        cmocka_unit_test(test_validate_bad_values),
        cmocka_unit_test(test_validate_small_err_buffer),
        cmocka_unit_test(test_validate_custom_limits),
        cmocka_unit_test(test_validate_does_not_change_spec),
        cmocka_unit_test(test_complete_fills_missing),
        cmocka_unit_test(test_complete_after_wire),
        cmocka_unit_test(test_same_but_replicas),
        cmocka_unit_test(test_constraint_parse_good),
        cmocka_unit_test(test_constraint_parse_bad),
        cmocka_unit_test(test_constraint_parse_lengths),
        cmocka_unit_test(test_name_valid),
        cmocka_unit_test(test_take_labels),
        cmocka_unit_test(test_secret_ref_parse),
        cmocka_unit_test(test_secret_name_valid),
        cmocka_unit_test(test_validate_secret_refs),
        cmocka_unit_test(test_enum_names),
        cmocka_unit_test(test_enum_parse),
        cmocka_unit_test(test_enum_name_parse_round_trip),
    };

    return cmocka_run_group_tests_name("spec", tests, NULL, NULL);
}
