/* fuzz_flags: the skiff command line (cli_parse) and the service flags
 * (svc_opts_apply, through service_create_spec and service_update_spec),
 * on argv built from the input.
 *
 * The input is words separated by NUL bytes (at most 64). The first word
 * picks the prefix: "c" gives `skiff service create WORDS...`, "u" gives
 * `skiff service update WORDS...`, anything else `skiff WORDS...` (any
 * command). Nothing is sent anywhere: the fuzzer stops where the command
 * would connect. Checked: nothing crashes or trips a sanitizer, an error is
 * one line, and a spec that comes out passes spec_validate and packs and
 * unpacks to an equal spec; --host, when given, goes through the parser
 * conn_connect uses (wire_parse_hostport).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "errors.h"
#include "pbutil.h"
#include "spec.h"
#include "wire.h"

#define FZ_MAX_WORDS 64

static int fz_one_line(const char *s)
{
    return *s && !strchr(s, '\n');
}

static void fz_check_spec(ServiceSpec *s, const char *err)
{
    ServiceSpec *copy;
    char why[512];

    if (!s) {
        if (!fz_one_line(err))
            abort();
        return;
    }
    if (spec_validate(s, NULL, why, sizeof(why)) != 0)
        abort();
    copy = pb_dup(s);
    if (copy && !pb_equal(s, copy))
        abort();
    pb_free(copy);
    pb_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), *argv[FZ_MAX_WORDS + 4], *p, *end;
    char err[512], host[256];
    int argc = 0, rc, port;
    cli_args_t a;

    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    end = text + size;
    argv[argc++] = (char *)"skiff";
    if (strcmp(text, "c") == 0 || strcmp(text, "u") == 0) {
        argv[argc++] = (char *)"service";
        argv[argc++] = text[0] == 'c' ? (char *)"create" : (char *)"update";
    }
    p = text + strlen(text) + 1;
    if (argc == 1)
        p = text; /* the first word is a word like the others */
    while (p < end && argc < FZ_MAX_WORDS) {
        argv[argc++] = p;
        p += strlen(p) + 1;
    }
    argv[argc] = NULL;

    err[0] = '\0';
    rc = cli_parse(argc, argv, &a, err, sizeof(err));
    if (rc == SKIFF_EINVAL && !fz_one_line(err))
        abort();
    if (rc == 0 && !a.help && !a.version && a.cmd) {
        if (a.host && wire_parse_hostport(a.host, host, sizeof(host), &port) == 0 &&
            (port < 1 || port > 65535 || !host[0]))
            abort();
        if (a.cmd->svc_mode == SVC_CREATE && a.argc >= 1) {
            err[0] = '\0';
            fz_check_spec(service_create_spec(&a, err, sizeof(err)), err);
        } else if (a.cmd->svc_mode == SVC_UPDATE) {
            ServiceSpec *cur = spec_new();
            if (cur && pb_set_str(&cur->name, "web") == 0 &&
                pb_set_str(&cur->image, "skiff-test/web:v1") == 0) {
                err[0] = '\0';
                fz_check_spec(service_update_spec(&a, cur, err, sizeof(err)), err);
            }
            pb_free(cur);
        }
    }
    cli_args_free(&a); /* after an error too, as cli_main does */
    free(text);
    return 0;
}
