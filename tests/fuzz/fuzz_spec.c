/* fuzz_spec: a ServiceSpec unpacked from arbitrary bytes, as the controller
 * takes one from a client (ServiceCreate, ServiceUpdate) and an agent from
 * the controller (Assignment): spec_complete, then spec_validate with the
 * default limits and with tight ones.
 *
 * A spec that validates is then taken further, as the rest of skiff would:
 *   - it packs and unpacks to an equal spec, and spec_same_but_replicas
 *     holds between the two;
 *   - every constraint parses;
 *   - the agent can build the container's create body from it (a valid spec
 *     never fails there), and that body never asks for privileged mode,
 *     the host's network, PID or IPC namespace, added capabilities or
 *     devices, keeps skiff's own labels (no spec label overrides them),
 *     and runs as spec.user when one is given.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "engine_json.h"
#include "errors.h"
#include "pbutil.h"
#include "spec.h"

static const char *fz_jstr(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);

    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void fz_expect_label(const json_t *labels, const char *key, const char *value)
{
    const char *v = fz_jstr(labels, key);

    if (!v || strcmp(v, value) != 0)
        abort();
}

/* The agent's create body for the spec: safe, and skiff's. */
static void fz_create_body(ServiceSpec *spec)
{
    Assignment a = PB_ASSIGNMENT_INIT;
    engine_create_t req = { 0 };
    char name[256], *body, slot[16];
    char *hosts[2] = { (char *)"db", (char *)"stack_db" };
    json_t *root, *host, *labels, *v;
    const char *key;

    a.task_id = (char *)"0123456789abcdef";
    a.service_id = (char *)"fedcba9876543210";
    a.service_name = spec->name;
    a.slot = spec->replicas ? spec->replicas : 1;
    a.spec_version = 7;
    a.spec = spec;
    a.n_hosts = 2;
    a.hosts = hosts;
    if (engine_container_name(&a, name, sizeof(name)) != 0)
        abort(); /* a valid service name always makes a container name */
    req.assignment = &a;
    req.name = name;
    req.cluster = "c0ffee";
    req.node = "node-1";
    req.advertise = "127.0.0.2";
    req.gateway = "172.17.0.1";
    body = engine_json_create_body(&req);
    if (!body)
        abort(); /* a valid spec must give a body (or this was out of memory) */
    root = json_loads(body, 0, NULL);
    if (!json_is_object(root))
        abort();
    host = json_object_get(root, "HostConfig");
    if (!json_is_object(host))
        abort();
    v = json_object_get(host, "Privileged");
    if (v && !json_is_false(v))
        abort();
    key = fz_jstr(host, "NetworkMode");
    if (key && (strcmp(key, "host") == 0 || strncmp(key, "container:", 10) == 0))
        abort();
    key = fz_jstr(host, "PidMode");
    if (key && *key)
        abort();
    key = fz_jstr(host, "IpcMode");
    if (key && (strcmp(key, "host") == 0 || strncmp(key, "container:", 10) == 0))
        abort();
    key = fz_jstr(host, "UsernsMode");
    if (key && *key)
        abort();
    if (json_object_get(host, "CapAdd") || json_object_get(host, "Devices") ||
        json_object_get(host, "SecurityOpt") || json_object_get(host, "CgroupParent") ||
        json_object_get(host, "Binds") || json_object_get(host, "VolumesFrom"))
        abort();
    labels = json_object_get(root, "Labels");
    if (!json_is_object(labels))
        abort();
    fz_expect_label(labels, "skiff.cluster", "c0ffee");
    fz_expect_label(labels, "skiff.node", "node-1");
    fz_expect_label(labels, "skiff.service", spec->name);
    fz_expect_label(labels, "skiff.task", "0123456789abcdef");
    snprintf(slot, sizeof(slot), "%u", a.slot);
    fz_expect_label(labels, "skiff.slot", slot);
    fz_expect_label(labels, "skiff.version", "7");
    if (*spec->user) {
        key = fz_jstr(root, "User");
        if (!key || strcmp(key, spec->user) != 0)
            abort();
    }
    if (!fz_jstr(root, "Image") || strcmp(fz_jstr(root, "Image"), spec->image) != 0)
        abort();
    json_decref(root);
    free(body);
}

static void fz_valid(ServiceSpec *spec)
{
    ServiceSpec *copy = pb_dup(spec);
    constraint_t c;
    char err[512];

    if (!copy)
        return;
    if (!pb_equal(spec, copy) || !spec_same_but_replicas(spec, copy))
        abort();
    copy->replicas = spec->replicas + 1;
    if (!spec_same_but_replicas(spec, copy))
        abort();
    if (spec_validate(copy, NULL, err, sizeof(err)) != 0 && spec->replicas < 100000)
        abort(); /* replicas aside, the copy is the spec */
    pb_free(copy);
    for (size_t i = 0; i < spec->n_constraints; i++)
        if (constraint_parse(spec->constraints[i], &c) != 0)
            abort();
    fz_create_body(spec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const spec_limits_t tight = {
        .max_replicas = 3, .max_string = 16, .max_list = 2,
        .max_ports = 2, .max_mounts = 1, .max_constraints = 1,
    };
    ServiceSpec *spec = skiff__v1__service_spec__unpack(NULL, size, data);
    char err[512];
    int rc;

    if (!spec)
        return 0;
    if (spec_complete(spec) != 0) {
        pb_free(spec);
        return 0;
    }
    err[0] = '\0';
    rc = spec_validate(spec, &tight, err, sizeof(err));
    if (rc != 0 && (rc != SKIFF_EINVAL || !err[0] || strchr(err, '\n')))
        abort(); /* one line naming the field */
    err[0] = '\0';
    rc = spec_validate(spec, NULL, err, sizeof(err));
    if (rc != 0 && (rc != SKIFF_EINVAL || !err[0] || strchr(err, '\n')))
        abort();
    if (rc == 0)
        fz_valid(spec);
    pb_free(spec);
    return 0;
}
