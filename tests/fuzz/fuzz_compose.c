/* fuzz_compose: the Compose reader (cli/compose.h) on arbitrary YAML, as
 * `skiff stack deploy -c FILE` reads it.
 *
 * Variables come from a fixed table, never from the environment, so a run
 * is the same everywhere. Checked: nothing crashes, hangs (anchors and
 * merge keys can't blow up) or trips a sanitizer; an error is one line;
 * every spec that comes out passes spec_validate (compose.h promises it),
 * belongs to the stack, is named STACK_NAME, and packs and unpacks to an
 * equal spec; warnings are one line each.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compose.h"
#include "errors.h"
#include "pbutil.h"
#include "spec.h"

static const char *const fz_env[][2] = {
    { "A", "1" },           { "EMPTY", "" },       { "TAG", "v2" },
    { "PORT", "8080" },     { "HOME", "/home/u" }, { "REPLICAS", "3" },
    { "DOLLAR", "$$" },     { "NL", "a\nb" },
};

static const char *fz_lookup(void *arg, const char *name)
{
    (void)arg;
    for (size_t i = 0; i < sizeof(fz_env) / sizeof(fz_env[0]); i++)
        if (strcmp(fz_env[i][0], name) == 0)
            return fz_env[i][1];
    return NULL;
}

static int fz_one_line(const char *s)
{
    return s && *s && !strchr(s, '\n');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const compose_opts_t opts = { .stack = "st", .base_dir = "/srv/app", .env = fz_lookup };
    compose_t *c = NULL;
    char err[512], why[512];
    int rc;

    if (size > COMPOSE_MAX_FILE)
        return 0;
    err[0] = '\0';
    rc = compose_parse("f.yml", (const char *)data, size, &opts, &c, err, sizeof(err));
    if (rc == SKIFF_EINVAL) {
        if (c || !fz_one_line(err))
            abort();
        return 0;
    }
    if (rc == -ENOMEM)
        return 0;
    if (rc != 0 || !c)
        abort();
    if (c->n_services > COMPOSE_MAX_SERVICES)
        abort();
    for (size_t i = 0; i < c->n_services; i++) {
        ServiceSpec *s = c->services[i], *copy;
        if (spec_validate(s, NULL, why, sizeof(why)) != 0)
            abort(); /* compose.h: every spec that comes out passed spec_validate */
        if (strcmp(s->stack, "st") != 0 || strncmp(s->name, "st_", 3) != 0)
            abort();
        for (size_t j = 0; j < i; j++)
            if (strcmp(c->services[j]->name, s->name) == 0)
                abort(); /* a service twice */
        copy = pb_dup(s);
        if (copy && !pb_equal(s, copy))
            abort();
        pb_free(copy);
    }
    for (size_t i = 0; i < c->n_warnings; i++)
        if (!fz_one_line(c->warnings[i]))
            abort();
    compose_free(c);
    return 0;
}
