/* Unit tests of the skiff command line: cli.c's parser (commands, common
 * flags, arguments, errors), the service flags of flags.c (each one sets its
 * field; each bad value gets its own one-line message), `service update`'s
 * read-modify-write of a spec, the value parsers of parse.c and the token
 * lookup.
 *
 * Command lines are written as one string and split as a shell would
 * (parse_words), so that a case reads like what a user types.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli.h"
#include "edit.h"
#include "errors.h"
#include "parse.h"
#include "pbutil.h"
#include "secret.h"
#include "spec.h"

/* ------------------------------------------------------------- helpers */

typedef struct line {
    size_t n;
    char **words;
    char **argv;  /* the parser may permute this copy */
    cli_args_t args;
    char err[512];
    int rc;
} line_t;

/* Parses a command line; the words stay alive with the line. */
static line_t *parse(const char *cmdline)
{
    line_t *l = calloc(1, sizeof(*l));
    char why[64];

    assert_non_null(l);
    assert_int_equal(parse_words(cmdline, &l->n, &l->words, why, sizeof(why)), 0);
    l->argv = calloc(l->n + 1, sizeof(*l->argv));
    assert_non_null(l->argv);
    memcpy(l->argv, l->words, l->n * sizeof(*l->argv));
    l->rc = cli_parse((int)l->n, l->argv, &l->args, l->err, sizeof(l->err));
    return l;
}

static void line_free(line_t *l)
{
    cli_args_free(&l->args);
    for (size_t i = 0; i < l->n; i++)
        free(l->words[i]);
    free(l->words);
    free(l->argv);
    free(l);
}

/* The spec of a `skiff service create ...` line that must be valid. */
static ServiceSpec *create_spec(const char *cmdline)
{
    line_t *l = parse(cmdline);
    char err[512] = "";
    ServiceSpec *s;

    if (l->rc)
        fail_msg("parse of \"%s\": %s", cmdline, l->err);
    s = service_create_spec(&l->args, err, sizeof(err));
    if (!s)
        fail_msg("\"%s\": %s", cmdline, err);
    line_free(l);
    return s;
}

/* The error of a command line: from the parser, or from building the spec. */
static void expect_error(const char *cmdline, const char *message)
{
    line_t *l = parse(cmdline);
    char err[512] = "";
    ServiceSpec *s = NULL;

    if (l->rc) {
        snprintf(err, sizeof(err), "%s", l->err);
    } else if (l->args.cmd && l->args.cmd->run == service_create) {
        s = service_create_spec(&l->args, err, sizeof(err));
    } else if (l->args.cmd && l->args.cmd->run == service_update) {
        ServiceSpec *cur = spec_new();
        assert_non_null(cur);
        assert_int_equal(pb_set_str(&cur->name, "web"), 0);
        assert_int_equal(pb_set_str(&cur->image, "img"), 0);
        s = service_update_spec(&l->args, cur, err, sizeof(err));
        pb_free(cur);
    }
    if (s)
        fail_msg("\"%s\" was accepted", cmdline);
    if (strcmp(err, message) != 0)
        fail_msg("\"%s\":\n  got  %s\n  want %s", cmdline, err, message);
    assert_null(strchr(err, '\n'));
    line_free(l);
}

/* ------------------------------------------------------ the command line */

static void test_parse_commands(void **state)
{
    line_t *l = parse("skiff service ls");
    assert_int_equal(l->rc, 0);
    assert_string_equal(l->args.cmd->verb, "ls");
    assert_int_equal(l->args.argc, 0);
    line_free(l);

    l = parse("skiff node list --format json -q");  /* Docker's alias */
    assert_int_equal(l->rc, 0);
    assert_ptr_equal(l->args.cmd->run, node_ls);
    assert_true(l->args.json);
    assert_true(l->args.quiet);
    line_free(l);

    /* flags may follow arguments, as Docker allows (but for create) */
    l = parse("skiff service ps web api --no-trunc --format table");
    assert_int_equal(l->rc, 0);
    assert_int_equal(l->args.argc, 2);
    assert_string_equal(l->args.argv[0], "web");
    assert_string_equal(l->args.argv[1], "api");
    assert_true(l->args.no_trunc);
    assert_false(l->args.json);
    line_free(l);

    l = parse("skiff service update web --replicas 3 -d");
    assert_int_equal(l->rc, 0);
    assert_int_equal(l->args.argc, 1);
    assert_string_equal(l->args.argv[0], "web");
    assert_true(l->args.detach);
    assert_int_equal(l->args.svc.n, 1);
    line_free(l);

    /* for create, what follows the image is the command, flags included */
    l = parse("skiff service create --name w img sh -c 'echo --replicas' --replicas 2");
    assert_int_equal(l->rc, 0);
    assert_int_equal(l->args.argc, 6);
    assert_string_equal(l->args.argv[0], "img");
    assert_string_equal(l->args.argv[3], "echo --replicas");
    assert_string_equal(l->args.argv[4], "--replicas");
    line_free(l);

    l = parse("skiff --host 127.0.0.1:9 --token-file /t stack deploy -c s.yml --prune shop");
    assert_int_equal(l->rc, 0);
    assert_string_equal(l->args.host, "127.0.0.1:9");
    assert_string_equal(l->args.token_file, "/t");
    assert_string_equal(l->args.compose_file, "s.yml");
    assert_true(l->args.prune);
    assert_string_equal(l->args.argv[0], "shop");
    line_free(l);

    /* global flags after the verb too */
    l = parse("skiff node rm --force n1 -H 127.0.0.1:7 n2");
    assert_int_equal(l->rc, 0);
    assert_true(l->args.force);
    assert_string_equal(l->args.host, "127.0.0.1:7");
    assert_int_equal(l->args.argc, 2);
    line_free(l);

    l = parse("skiff service logs -f --tail 20 web");
    assert_int_equal(l->rc, 0);
    assert_true(l->args.follow);
    assert_int_equal(l->args.tail, 20);
    line_free(l);

    l = parse("skiff service logs --tail all web");
    assert_int_equal(l->args.tail, -1);
    line_free(l);

    l = parse("skiff node update --availability drain n1");
    assert_int_equal(l->rc, 0);
    assert_int_equal(l->args.availability, AVAILABILITY_DRAIN);
    line_free(l);

    l = parse("skiff node update --label-add zone=edge --label-add ssd --label-rm tier n1");
    assert_int_equal(l->rc, 0);
    assert_int_equal(l->args.availability, -1);
    assert_int_equal(l->args.n_label_add, 2);
    assert_string_equal(l->args.label_add[0], "zone=edge");
    assert_string_equal(l->args.label_add[1], "ssd");
    assert_int_equal(l->args.n_label_rm, 1);
    assert_string_equal(l->args.label_rm[0], "tier");
    assert_string_equal(l->args.argv[0], "n1");
    line_free(l);

    l = parse("skiff service scale web=3 api=0");
    assert_int_equal(l->rc, 0);
    assert_int_equal(l->args.argc, 2);
    line_free(l);
}

static void test_parse_help(void **state)
{
    static const char *const lines[] = {
        "skiff", "skiff --help", "skiff -h", "skiff service", "skiff service --help",
        "skiff service create --help", "skiff stack deploy --help", "skiff help service",
        "skiff help service ls", "skiff service ls -h",
    };

    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        line_t *l = parse(lines[i]);
        if (l->rc)
            fail_msg("%s: %s", lines[i], l->err);
        if (!l->args.help)
            fail_msg("%s: no help", lines[i]);
        line_free(l);
    }
    line_t *l = parse("skiff --version");
    assert_int_equal(l->rc, 0);
    assert_true(l->args.version);
    line_free(l);
}

static void test_parse_errors(void **state)
{
    static const struct {
        const char *line, *message;
    } cases[] = {
        { "skiff bogus", "unknown command \"bogus\" (see skiff --help)" },
        { "skiff service bogus",
          "unknown command \"skiff service bogus\" (see skiff service --help)" },
        { "skiff service ls --bogus", "unknown flag: --bogus (see skiff service ls --help)" },
        { "skiff service ls --bogus=1", "unknown flag: --bogus (see skiff service ls --help)" },
        { "skiff service ls -x", "unknown flag: -x (see skiff service ls --help)" },
        { "skiff --bogus service ls", "unknown flag: --bogus (see skiff --help)" },
        { "skiff service ls -d", "unknown flag: -d (see skiff service ls --help)" },
        { "skiff service ls --replicas 3",
          "unknown flag: --replicas (see skiff service ls --help)" },
        { "skiff service create --image x img",
          "unknown flag: --image (see skiff service create --help)" },
        { "skiff service update --name x web",
          "unknown flag: --name (see skiff service update --help)" },
        { "skiff service create --replicas", "flag needs an argument: --replicas" },
        { "skiff service create -p", "flag needs an argument: -p" },
        { "skiff service ls --format yaml",
          "invalid value for --format: \"yaml\" (table or json)" },
        { "skiff service logs --tail x web",
          "invalid value for --tail: \"x\" (a number of lines or all)" },
        { "skiff --host nohost service ls",
          "invalid value for --host: \"nohost\" (ADDRESS:PORT, e.g. 127.0.0.1:7400, or a list of them)" },
        { "skiff node update --availability pause n1",
          "invalid value for --availability: \"pause\" (active or drain)" },
        { "skiff node update n1",
          "\"skiff node update\" requires --availability active|drain, --label-add KEY=VALUE or "
          "--label-rm KEY" },
        { "skiff node update --label-add =edge n1", "--label-add: empty key" },
        { "skiff node update --label-add skiff.zone=edge n1",
          "--label-add: skiff.zone: the skiff. prefix is reserved" },
        { "skiff node update --label-rm zone=edge n1",
          "invalid value for --label-rm: \"zone=edge\" (a key, without =VALUE)" },
        { "skiff node update --label-rm '' n1", "--label-rm: empty key" },
        { "skiff node update --label-add zone n1 n2",
          "\"skiff node update\" takes at most 1 argument, not 2: [--availability active|drain] "
          "[--label-add KEY=VALUE] [--label-rm KEY] NODE" },
        { "skiff service create",
          "\"skiff service create\" requires at least 1 argument: [OPTIONS] IMAGE [COMMAND] "
          "[ARG...]" },
        { "skiff service ps", "\"skiff service ps\" requires at least 1 argument: [OPTIONS] "
                              "SERVICE [SERVICE...]" },
        { "skiff service update a b", "\"skiff service update\" takes at most 1 argument, not "
                                      "2: [OPTIONS] SERVICE" },
        { "skiff service ls web", "\"skiff service ls\" takes 0 arguments, not 1: [OPTIONS]" },
        { "skiff stack deploy shop", "\"skiff stack deploy\" requires -c/--compose-file FILE" },
        { "skiff stack deploy -c a.yml -c b.yml shop",
          "--compose-file: only one file is supported" },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        line_t *l = parse(cases[i].line);
        if (l->rc != SKIFF_EINVAL)
            fail_msg("\"%s\" was accepted", cases[i].line);
        if (strcmp(l->err, cases[i].message) != 0)
            fail_msg("\"%s\":\n  got  %s\n  want %s", cases[i].line, l->err, cases[i].message);
        line_free(l);
    }
}

/* ----------------------------------------------------- service create flags */

static void test_create_every_flag(void **state)
{
    ServiceSpec *s = create_spec(
        "skiff service create --name web --replicas 3 -p 8080:80 --publish "
        "published=8443,target=443,protocol=tcp --expose 9000 -e A=1 --env B=two=2 "
        "--label team=shop -l tier --constraint 'node.labels.zone==eu' "
        "--constraint 'node.name != n3' --mount type=volume,source=data,target=/data "
        "--mount type=bind,src=/etc/x,dst=/x,readonly --health-cmd 'curl -f localhost' "
        "--health-http /health --health-http-port 80 --health-interval 2s "
        "--health-timeout 500ms --health-retries 5 --health-start-period 1m "
        "--restart-condition on-failure --restart-delay 1s --restart-max-attempts 4 "
        "--restart-window 2m --update-parallelism 2 --update-delay 10s --update-order "
        "start-first --update-failure-action rollback --update-monitor 30s "
        "--update-max-failure-ratio 0.25 --rollback-parallelism 0 --rollback-delay 1s "
        "--rollback-order stop-first --rollback-failure-action continue --rollback-monitor 5s "
        "--rollback-max-failure-ratio 1 --reserve-cpu 0.5 --reserve-memory 512m --limit-cpu 2 "
        "--limit-memory 1g --user 1000:1000 --stop-grace-period 1m30s --drain-delay 3s "
        "--entrypoint '/bin/sh -c' skiff-test/web:v1 run --fast");

    assert_string_equal(s->name, "web");
    assert_string_equal(s->image, "skiff-test/web:v1");
    assert_int_equal(s->n_command, 2);
    assert_string_equal(s->command[0], "run");
    assert_string_equal(s->command[1], "--fast");
    assert_int_equal(s->replicas, 3);
    assert_int_equal(s->n_ports, 2);
    assert_int_equal(s->ports[0]->published, 8080);
    assert_int_equal(s->ports[0]->target, 80);
    assert_string_equal(s->ports[0]->protocol, "tcp");
    assert_int_equal(s->ports[1]->published, 8443);
    assert_int_equal(s->ports[1]->target, 443);
    assert_int_equal(s->n_expose, 1);
    assert_int_equal(s->expose[0], 9000);
    assert_int_equal(s->n_env, 2);
    assert_string_equal(s->env[0], "A=1");
    assert_string_equal(s->env[1], "B=two=2");
    assert_int_equal(s->n_labels, 2);
    assert_string_equal(s->labels[0]->key, "team");
    assert_string_equal(s->labels[0]->value, "shop");
    assert_string_equal(s->labels[1]->key, "tier");
    assert_string_equal(s->labels[1]->value, "");
    assert_int_equal(s->n_constraints, 2);
    assert_string_equal(s->constraints[1], "node.name != n3");
    assert_int_equal(s->n_mounts, 2);
    assert_int_equal(s->mounts[0]->type, MOUNT_VOLUME);
    assert_string_equal(s->mounts[0]->source, "data");
    assert_string_equal(s->mounts[0]->target, "/data");
    assert_false(s->mounts[0]->readonly);
    assert_int_equal(s->mounts[1]->type, MOUNT_BIND);
    assert_string_equal(s->mounts[1]->source, "/etc/x");
    assert_true(s->mounts[1]->readonly);
    assert_int_equal(s->health->n_test, 2);
    assert_string_equal(s->health->test[0], "CMD-SHELL");
    assert_string_equal(s->health->test[1], "curl -f localhost");
    assert_string_equal(s->health->http_path, "/health");
    assert_int_equal(s->health->http_port, 80);
    assert_int_equal(s->health->interval_ms, 2000);
    assert_int_equal(s->health->timeout_ms, 500);
    assert_int_equal(s->health->retries, 5);
    assert_int_equal(s->health->start_period_ms, 60000);
    assert_int_equal(s->restart->condition, RESTART_ON_FAILURE);
    assert_int_equal(s->restart->delay_ms, 1000);
    assert_int_equal(s->restart->max_attempts, 4);
    assert_int_equal(s->restart->window_ms, 120000);
    assert_int_equal(s->update->parallelism, 2);
    assert_int_equal(s->update->delay_ms, 10000);
    assert_int_equal(s->update->order, ORDER_START_FIRST);
    assert_int_equal(s->update->failure_action, FAILURE_ROLLBACK);
    assert_int_equal(s->update->monitor_ms, 30000);
    assert_true(s->update->max_failure_ratio == 0.25);
    assert_int_equal(s->rollback->parallelism, 0);
    assert_int_equal(s->rollback->delay_ms, 1000);
    assert_int_equal(s->rollback->order, ORDER_STOP_FIRST);
    assert_int_equal(s->rollback->failure_action, FAILURE_CONTINUE);
    assert_int_equal(s->rollback->monitor_ms, 5000);
    assert_true(s->rollback->max_failure_ratio == 1.0);
    assert_int_equal(s->reservations->nano_cpus, 500000000);
    assert_int_equal(s->reservations->memory_bytes, 512LL << 20);
    assert_int_equal(s->limits->nano_cpus, 2000000000);
    assert_int_equal(s->limits->memory_bytes, 1LL << 30);
    assert_string_equal(s->user, "1000:1000");
    assert_int_equal(s->stop_grace_period_ms, 90000);
    assert_int_equal(s->drain_delay_ms, 3000);
    assert_int_equal(s->n_entrypoint, 2);
    assert_string_equal(s->entrypoint[0], "/bin/sh");
    assert_string_equal(s->entrypoint[1], "-c");
    pb_free(s);
}

static void test_create_defaults(void **state)
{
    ServiceSpec *s = create_spec("skiff service create registry.local:5000/team/web:v2");
    ServiceSpec *d = spec_new();

    /* the name comes from the image; the rest is spec_new()'s */
    assert_string_equal(s->name, "web");
    assert_non_null(d);
    assert_int_equal(pb_set_str(&d->name, "web"), 0);
    assert_int_equal(pb_set_str(&d->image, "registry.local:5000/team/web:v2"), 0);
    assert_true(pb_equal(s, d));
    pb_free(s);
    pb_free(d);

    s = create_spec("skiff service create --no-healthcheck img");
    assert_int_equal(s->health->n_test, 1);
    assert_string_equal(s->health->test[0], "NONE");
    pb_free(s);

    /* the last value of a key wins; -e KEY takes skiff's environment */
    setenv("SKIFF_TEST_FROM_ENV", "yes", 1);
    unsetenv("SKIFF_TEST_UNSET");
    s = create_spec("skiff service create -e A=1 -e A=2 -e SKIFF_TEST_FROM_ENV "
                    "-e SKIFF_TEST_UNSET --label k=1 --label k=2 -p 80:8080 -p 80:9090 img");
    assert_int_equal(s->n_env, 2);
    assert_string_equal(s->env[0], "A=2");
    assert_string_equal(s->env[1], "SKIFF_TEST_FROM_ENV=yes");
    assert_int_equal(s->n_labels, 1);
    assert_string_equal(s->labels[0]->value, "2");
    assert_int_equal(s->n_ports, 1);
    assert_int_equal(s->ports[0]->target, 9090);
    pb_free(s);

    s = create_spec("skiff service create --reserve-memory 1536 --limit-memory 64MiB "
                    "--reserve-cpu .25 --limit-cpu 1.000000001 img");
    assert_int_equal(s->reservations->memory_bytes, 1536);
    assert_int_equal(s->limits->memory_bytes, 64LL << 20);
    assert_int_equal(s->reservations->nano_cpus, 250000000);
    assert_int_equal(s->limits->nano_cpus, 1000000001);
    pb_free(s);
}

static void test_create_bad_values(void **state)
{
    static const struct {
        const char *flags, *message;
    } cases[] = {
        { "--replicas x", "invalid value for --replicas: \"x\" (a whole number)" },
        { "--replicas -1", "invalid value for --replicas: \"-1\" (a whole number)" },
        { "--replicas 4294967296",
          "invalid value for --replicas: \"4294967296\" (a whole number)" },
        { "--replicas 100001", "replicas: 100001 is more than the limit of 100000" },
        { "--update-order sideways",
          "invalid value for --update-order: \"sideways\" (stop-first or start-first)" },
        { "--rollback-order up",
          "invalid value for --rollback-order: \"up\" (stop-first or start-first)" },
        { "--update-failure-action retry", "invalid value for --update-failure-action: "
                                           "\"retry\" (pause, continue or rollback)" },
        { "--rollback-failure-action rollback", "invalid value for --rollback-failure-action: "
                                                "\"rollback\" (pause or continue)" },
        { "--restart-condition always", "invalid value for --restart-condition: \"always\" "
                                        "(any, on-failure or none)" },
        { "--update-delay 5", "invalid value for --update-delay: \"5\" (a duration like 10s or "
                              "1m30s)" },
        { "--health-interval 1x", "invalid value for --health-interval: \"1x\" (a duration "
                                  "like 10s or 1m30s)" },
        { "--stop-grace-period -1s", "invalid value for --stop-grace-period: \"-1s\" (a "
                                     "duration like 10s or 1m30s)" },
        { "--stop-grace-period 2h", "stop_grace_period: must be between 0s and 1h" },
        { "--drain-delay 11m", "drain_delay: must be between 0s and 10m" },
        { "--update-max-failure-ratio 1.5", "invalid value for --update-max-failure-ratio: "
                                            "\"1.5\" (a number between 0 and 1)" },
        { "--update-max-failure-ratio x", "invalid value for --update-max-failure-ratio: "
                                          "\"x\" (a number between 0 and 1)" },
        { "--reserve-cpu half", "invalid value for --reserve-cpu: \"half\" (a number of CPUs "
                                "like 0.5 or 2)" },
        { "--limit-cpu -1", "invalid value for --limit-cpu: \"-1\" (a number of CPUs like 0.5 "
                            "or 2)" },
        { "--reserve-memory 1q", "invalid value for --reserve-memory: \"1q\" (a size like 512m "
                                 "or 1g)" },
        { "--limit-memory 1k", "limits.memory: must be at least 6MiB" },
        { "--reserve-cpu 2 --limit-cpu 1", "reservations.cpu: more than limits.cpu" },
        { "--health-retries 0", "health.retries: must be between 1 and 1000" },
        { "-p 80", "invalid value for --publish: \"80\" (PUBLISHED:TARGET, e.g. 8080:80)" },
        { "-p 0:80", "invalid value for --publish: \"0:80\" (a port between 1 and 65535)" },
        { "-p 8080:70000", "invalid value for --publish: \"8080:70000\" (a port between 1 and "
                           "65535)" },
        { "-p 8080:80/udp", "invalid value for --publish: \"8080:80/udp\" (only tcp ports are "
                            "supported)" },
        { "-p 127.0.0.1:8080:80", "invalid value for --publish: \"127.0.0.1:8080:80\" (a host "
                                  "address is not supported; PUBLISHED:TARGET)" },
        { "-p 8000-8001:80", "invalid value for --publish: \"8000-8001:80\" (port ranges are "
                             "not supported)" },
        { "-p published=8080", "invalid value for --publish: \"published=8080\" (target= is "
                               "required)" },
        { "-p target=80,mode=host", "invalid value for --publish: \"target=80,mode=host\" "
                                    "(mode host is not supported (ingress only))" },
        { "-p 8080:80 -p 8080:80 --expose 8080", "expose[0]: port 8080 is also published" },
        { "--expose http", "invalid value for --expose: \"http\" (a port between 1 and 65535)" },
        { "-e =x", "invalid value for --env: \"=x\" (KEY=VALUE)" },
        { "--label =x", "invalid value for --label: \"=x\" (KEY=VALUE)" },
        { "--label skiff.node=x", "invalid value for --label: \"skiff.node=x\" (the skiff. "
                                  "prefix is reserved)" },
        { "--constraint node.zone==eu", "invalid value for --constraint: \"node.zone==eu\" "
                                        "(node.labels.KEY==VALUE, node.name!=NAME or "
                                        "node.id==ID)" },
        { "--constraint node.name", "invalid value for --constraint: \"node.name\" "
                                    "(node.labels.KEY==VALUE, node.name!=NAME or node.id==ID)" },
        { "--mount type=tmpfs,target=/x", "invalid value for --mount: \"type=tmpfs,target=/x\" "
                                          "(type must be volume or bind)" },
        { "--mount source=data", "invalid value for --mount: \"source=data\" (target= is "
                                 "required)" },
        { "--mount target=data", "invalid value for --mount: \"target=data\" (target must be "
                                 "an absolute path)" },
        { "--mount type=bind,source=rel,target=/x", "invalid value for --mount: "
                                                    "\"type=bind,source=rel,target=/x\" (a bind "
                                                    "mount needs an absolute source= path)" },
        { "--mount target=/x,ro=maybe", "invalid value for --mount: \"target=/x,ro=maybe\" (ro "
                                        "must be true or false)" },
        { "--mount target=/x,size=1", "invalid value for --mount: \"target=/x,size=1\" "
                                      "(unknown option size)" },
        { "--mount source=a/b,target=/x", "mounts[0].source: a/b is not a valid volume name" },
        { "--health-http health", "invalid value for --health-http: \"health\" (a path like "
                                  "/health)" },
        { "--health-http /health", "health.http_path: the service has no port to probe" },
        { "-p 80:80 --health-http /h --health-http-port 81",
          "health.http_port: 81 is not a port of the service" },
        { "--no-healthcheck --health-cmd true", "--no-healthcheck conflicts with --health-cmd" },
        { "--entrypoint 'sh -c \"x'", "invalid value for --entrypoint: \"sh -c \"x\" "
                                      "(unterminated \" quote)" },
        { "--user 'a b'", "user: a b is not a user name or UID[:GID]" },
        { "--name 'we b'", "name: we b: must be 1 to 63 letters, digits, '-' or '_', starting "
                           "with a letter or digit" },
    };
    char line[512];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(line, sizeof(line), "skiff service create %s img", cases[i].flags);
        expect_error(line, cases[i].message);
    }
    expect_error("skiff service create ---", "unknown flag: --- (see skiff service create --help)");
    /* a value with a newline: still one line (fuzz_flags found it) */
    expect_error("skiff service create --update-delay '1s\n2s' img",
                 "invalid value for --update-delay: \"1s?2s\" (a duration like 10s or 1m30s)");
    expect_error("skiff 'u\n-=A-'", "unknown command \"u?-=A-\" (see skiff --help)");
    expect_error("skiff service create --name x 'im age'", "image: im age must not contain "
                                                             "spaces");
    expect_error("skiff service create :latest", "--name is required (none comes from the image "
                                                 ":latest)");
}

/* ----------------------------------------------------- service update flags */

static ServiceSpec *current_spec(void)
{
    ServiceSpec *s = create_spec(
        "skiff service create --name web -e A=1 -e B=2 --label a=1 --label b=2 "
        "--constraint node.name!=n1 --constraint node.labels.zone==eu "
        "--mount source=data,target=/data --mount source=logs,target=/logs -p 8080:80 "
        "-p 8443:443 --expose 9000 --health-http /health img:v1 serve");
    return s;
}

static ServiceSpec *update_spec(const ServiceSpec *cur, const char *cmdline)
{
    line_t *l = parse(cmdline);
    char err[512] = "";
    ServiceSpec *s;

    if (l->rc)
        fail_msg("parse of \"%s\": %s", cmdline, l->err);
    s = service_update_spec(&l->args, cur, err, sizeof(err));
    if (!s)
        fail_msg("\"%s\": %s", cmdline, err);
    line_free(l);
    return s;
}

static void test_update_flags(void **state)
{
    ServiceSpec *cur = current_spec(), *s;

    /* nothing given: the same spec (resumes a paused update) */
    s = update_spec(cur, "skiff service update web");
    assert_true(pb_equal(s, cur));
    pb_free(s);

    /* only replicas: a scale */
    s = update_spec(cur, "skiff service update --replicas 5 web");
    assert_int_equal(s->replicas, 5);
    assert_true(spec_same_but_replicas(s, cur));
    pb_free(s);

    s = update_spec(cur, "skiff service update --image img:v2 --force web");
    assert_string_equal(s->image, "img:v2");
    assert_int_equal(s->force_update, cur->force_update + 1);
    assert_false(spec_same_but_replicas(s, cur));
    pb_free(s);

    /* removals first, then additions, whatever their order */
    s = update_spec(cur, "skiff service update --env-add A=9 --env-rm A --env-add C=3 "
                         "--env-rm B --env D=4 web");
    assert_int_equal(s->n_env, 3);
    assert_string_equal(s->env[0], "A=9");
    assert_string_equal(s->env[1], "C=3");
    assert_string_equal(s->env[2], "D=4");
    pb_free(s);

    s = update_spec(cur, "skiff service update --label-rm a --label-add b=3 --label-add c web");
    assert_int_equal(s->n_labels, 2);
    assert_string_equal(s->labels[0]->key, "b");
    assert_string_equal(s->labels[0]->value, "3");
    assert_string_equal(s->labels[1]->key, "c");
    pb_free(s);

    s = update_spec(cur, "skiff service update --constraint-rm 'node.name != n1' "
                         "--constraint-add node.labels.disk==ssd "
                         "--constraint-add node.labels.zone==eu web");
    assert_int_equal(s->n_constraints, 2);
    assert_string_equal(s->constraints[0], "node.labels.zone==eu");
    assert_string_equal(s->constraints[1], "node.labels.disk==ssd");
    pb_free(s);

    s = update_spec(cur, "skiff service update --mount-rm /logs "
                         "--mount-add type=volume,source=data2,target=/data web");
    assert_int_equal(s->n_mounts, 1);
    assert_string_equal(s->mounts[0]->source, "data2");
    pb_free(s);

    s = update_spec(cur, "skiff service update --publish-rm 443 --publish-add 9090:90 "
                         "--publish-rm 8080:81 --expose-rm 9000 --expose-add 9001 web");
    assert_int_equal(s->n_ports, 2);
    assert_int_equal(s->ports[0]->published, 8080);
    assert_int_equal(s->ports[1]->published, 9090);
    assert_int_equal(s->n_expose, 1);
    assert_int_equal(s->expose[0], 9001);
    pb_free(s);

    s = update_spec(cur, "skiff service update --publish-rm 8080:80 --health-http '' web");
    assert_int_equal(s->n_ports, 1);
    assert_string_equal(s->health->http_path, "");
    pb_free(s);

    s = update_spec(cur, "skiff service update --args 'serve --port 80' --entrypoint '' "
                         "--update-order start-first web");
    assert_int_equal(s->n_command, 3);
    assert_string_equal(s->command[2], "80");
    assert_int_equal(s->n_entrypoint, 0);
    assert_int_equal(s->update->order, ORDER_START_FIRST);
    pb_free(s);

    /* a spec from the wire without its submessages still takes flags */
    ServiceSpec *bare = PB_NEW(ServiceSpec);
    assert_non_null(bare);
    assert_int_equal(pb_set_str(&bare->name, "web"), 0);
    assert_int_equal(pb_set_str(&bare->image, "img"), 0);
    s = update_spec(bare, "skiff service update --health-retries 7 --reserve-cpu 1 web");
    assert_int_equal(s->health->retries, 7);
    assert_int_equal(s->reservations->nano_cpus, 1000000000);
    pb_free(s);
    pb_free(bare);
    pb_free(cur);

    expect_error("skiff service update --publish-rm x web",
                 "invalid value for --publish-rm: \"x\" (a port between 1 and 65535)");
    expect_error("skiff service update --mount-rm data web",
                 "invalid value for --mount-rm: \"data\" (the mount's target, an absolute path)");
    expect_error("skiff service update --env-rm A=1 web",
                 "invalid value for --env-rm: \"A=1\" (a variable name)");
    expect_error("skiff service update --label-rm a=1 web",
                 "invalid value for --label-rm: \"a=1\" (a label key)");
    expect_error("skiff service update --health-http /h web",
                 "health.http_path: the service has no port to probe");
}


/* ---------------------------------------------------- secrets and configs */

static void test_secret_flags(void **state)
{
    ServiceSpec *s, *u;

    (void)state;
    s = create_spec("skiff service create --name api --secret db_pass "
                    "--secret source=tls,target=cert.pem,uid=1000,gid=1001,mode=0400 "
                    "--config app_conf --config src=nginx,dst=/etc/nginx.conf img");
    assert_int_equal(s->n_secrets, 2);
    assert_string_equal(s->secrets[0]->name, "db_pass");
    assert_string_equal(s->secrets[0]->target, "db_pass");
    assert_int_equal(s->secrets[0]->mode, 0444);
    assert_string_equal(s->secrets[1]->name, "tls");
    assert_string_equal(s->secrets[1]->target, "cert.pem");
    assert_int_equal(s->secrets[1]->uid, 1000);
    assert_int_equal(s->secrets[1]->gid, 1001);
    assert_int_equal(s->secrets[1]->mode, 0400);
    assert_int_equal(s->n_configs, 2);
    assert_string_equal(s->configs[0]->target, "/app_conf");
    assert_string_equal(s->configs[1]->name, "nginx");
    assert_string_equal(s->configs[1]->target, "/etc/nginx.conf");

    /* removals first (by name or target), then additions; same target: replaced */
    u = update_spec(s, "skiff service update --secret-add db_pass2 --secret-rm db_pass "
                       "--secret-rm cert.pem --config-rm nginx "
                       "--config-add source=app_conf2,target=/app_conf api");
    assert_int_equal(u->n_secrets, 1);
    assert_string_equal(u->secrets[0]->name, "db_pass2");
    assert_int_equal(u->n_configs, 1);
    assert_string_equal(u->configs[0]->name, "app_conf2");
    assert_string_equal(u->configs[0]->target, "/app_conf");
    pb_free(u);
    /* --secret on update adds, as --env does */
    u = update_spec(s, "skiff service update --secret other api");
    assert_int_equal(u->n_secrets, 3);
    assert_string_equal(u->secrets[2]->name, "other");
    pb_free(u);

    expect_error("skiff service update --secret-rm nope web",
                 "invalid value for --secret-rm: \"nope\" (the service uses no secret nope)");
    expect_error("skiff service update --config-rm nope web",
                 "invalid value for --config-rm: \"nope\" (the service uses no config nope)");
    expect_error("skiff service create --secret 'bad name' img",
                 "--secret: bad name is not a valid secret name");
    expect_error("skiff service create --secret source=a,mode=999 img",
                 "mode: \"999\" is not an octal mode like 0400");
    expect_error("skiff service create --secret source=a,colour=red img",
                 "--secret: colour: not an option skiff knows (source, target, uid, gid, mode)");
    expect_error("skiff service create --config source=a,target=rel img",
                 "configs[0].target: rel must be an absolute path without . or .. in it");
    expect_error("skiff service create --secret source=a,target=x --secret source=b,target=x "
                 "img", "secrets: target x is used twice (a and b)");
    expect_error("skiff service create --secret source=a,target=x --secret source=c,target=x/y "
                 "img", "secrets[1].target: x/y must be a file name (it is put in /run/secrets)");
    pb_free(s);
}

static void write_file(const char *path, size_t n, char c)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    for (size_t i = 0; i < n; i++)
        fputc(c, f);
    fclose(f);
}

static void test_secret_commands(void **state)
{
    char dir[] = "/tmp/skiff-test-cli-XXXXXX", path[128], err[256];
    uint8_t *data;
    size_t len;
    line_t *l;

    (void)state;
    l = parse("skiff secret create --label a=1 -l b=2 db_pass ./pass.txt");
    assert_int_equal(l->rc, 0);
    assert_true(l->args.cmd->run == secret_create);
    assert_int_equal(l->args.n_labels, 2);
    assert_string_equal(l->args.labels[1], "b=2");
    assert_int_equal(l->args.argc, 2);
    line_free(l);
    l = parse("skiff config inspect --pretty app_conf");
    assert_int_equal(l->rc, 0);
    assert_true(l->args.cmd->run == secret_inspect);
    assert_true(l->args.pretty);
    line_free(l);
    l = parse("skiff secret ls -q --format json");
    assert_int_equal(l->rc, 0);
    assert_true(l->args.quiet && l->args.json);
    line_free(l);
    expect_error("skiff secret create db_pass",
                 "\"skiff secret create\" requires exactly 2 arguments: [OPTIONS] SECRET "
                 "FILE|-");
    expect_error("skiff secret create --label =1 a f",
                 "invalid value for --label: \"=1\" (KEY=VALUE)");
    expect_error("skiff secret rm", "\"skiff secret rm\" requires at least 1 argument: "
                 "SECRET [SECRET...]");

    assert_int_equal(secret_check_name(SECRET_KIND_SECRET, "shop_db.pass-1", err, sizeof(err)), 0);
    assert_int_equal(secret_check_name(SECRET_KIND_CONFIG, "-x", err, sizeof(err)), SKIFF_EINVAL);
    assert_string_equal(err, "invalid config name \"-x\" (1 to 64 letters, digits, '-', '_' or "
                        "'.', starting and ending with a letter or digit)");

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/big", dir);
    write_file(path, 614400, 'a');
    assert_int_equal(secret_read_file(SECRET_KIND_SECRET, "db_pass", path, &data, &len, err,
                                      sizeof(err)), SKIFF_EINVAL);
    assert_string_equal(err, "secret db_pass: 614400 bytes is more than the limit of 512000");
    assert_null(data);
    write_file(path, SPEC_SECRET_MAX_SIZE, 'b');
    assert_int_equal(secret_read_file(SECRET_KIND_CONFIG, "c", path, &data, &len, err,
                                      sizeof(err)), 0);
    assert_int_equal(len, SPEC_SECRET_MAX_SIZE);
    assert_int_equal(data[len - 1], 'b');
    free(data);
    write_file(path, 0, 'c');
    assert_int_equal(secret_read_file(SECRET_KIND_SECRET, "e", path, &data, &len, err,
                                      sizeof(err)), SKIFF_EINVAL);
    snprintf(path, sizeof(path), "secret e: %s/big is empty", dir);
    assert_string_equal(err, path);
    snprintf(path, sizeof(path), "%s/big", dir);
    unlink(path);
    assert_int_equal(secret_read_file(SECRET_KIND_SECRET, "e", path, &data, &len, err,
                                      sizeof(err)), SKIFF_EINVAL);
    assert_non_null(strstr(err, "cannot read"));
    rmdir(dir);
}

static void test_secret_output(void **state)
{
    Secret *sec = PB_NEW(Secret), *conf = PB_NEW(Secret);
    Secret *both[2];
    char *buf = NULL;
    size_t len = 0;
    FILE *out;
    fmt_opts_t o = { .now_ms = 1000000 };

    (void)state;
    assert_non_null(sec);
    assert_non_null(conf);
    assert_int_equal(pb_set_str(&sec->id, "s1d"), 0);
    assert_int_equal(pb_set_str(&sec->name, "zeta"), 0);
    sec->created_ms = 1000000 - 120000;
    assert_int_equal(pb_set_str(&conf->id, "c1d"), 0);
    assert_int_equal(pb_set_str(&conf->name, "alpha"), 0);
    conf->kind = SECRET_KIND_CONFIG;
    conf->created_ms = conf->updated_ms = 1000000 - 5000;
    conf->data.data = malloc(5);
    assert_non_null(conf->data.data);
    memcpy(conf->data.data, "hello", 5);
    conf->data.len = 5;
    both[0] = sec;
    both[1] = conf;

    assert_non_null(out = open_memstream(&buf, &len));
    assert_int_equal(fmt_secrets(out, both, 2, &o), 0);
    fclose(out);
    assert_int_equal(strncmp(buf, "ID ", 3), 0);
    assert_non_null(strstr(buf, " NAME "));
    assert_non_null(strstr(buf, " CREATED "));
    assert_non_null(strstr(buf, " UPDATED\n"));
    assert_true(strstr(buf, "alpha") < strstr(buf, "zeta")); /* by name */
    assert_non_null(strstr(buf, "2 minutes ago"));
    free(buf);

    assert_non_null(out = open_memstream(&buf, &len));
    assert_int_equal(fmt_secrets_inspect(out, both, 2, 0), 0);
    fclose(out);
    assert_non_null(strstr(buf, "\"data\": \"aGVsbG8=\"")); /* base64, as Spec.Data */
    assert_null(strstr(buf, "hello"));
    free(buf);

    assert_non_null(out = open_memstream(&buf, &len));
    assert_int_equal(fmt_secrets_inspect(out, both + 1, 1, 1), 0);
    fclose(out);
    assert_non_null(strstr(buf, "Name:            alpha\n"));
    assert_non_null(strstr(buf, "Data:\nhello\n"));
    free(buf);
    pb_free(sec);
    pb_free(conf);
}

/* -------------------------------------------------------------- values */

static void test_parse_values(void **state)
{
    int64_t v;
    uint64_t u;
    double d;
    uint32_t port;
    char why[128];

    static const struct {
        const char *s;
        int64_t bytes;
    } mem[] = {
        { "0", 0 }, { "1024", 1024 }, { "1b", 1 }, { "1k", 1024 }, { "1K", 1024 },
        { "1kb", 1024 }, { "512m", 512LL << 20 }, { "512MiB", 512LL << 20 },
        { "1g", 1LL << 30 }, { "1.5g", 3LL << 29 }, { "2T", 2LL << 40 }, { "1p", 1LL << 50 },
    };
    for (size_t i = 0; i < sizeof(mem) / sizeof(mem[0]); i++) {
        assert_int_equal(parse_memory(mem[i].s, &v), 0);
        assert_int_equal(v, mem[i].bytes);
    }
    static const char *const bad_mem[] = { "", "m", "1x", "1mm", "-1", "1 m", "99999999p",
                                           "1.2.3" };
    for (size_t i = 0; i < sizeof(bad_mem) / sizeof(bad_mem[0]); i++)
        assert_int_equal(parse_memory(bad_mem[i], &v), SKIFF_EINVAL);

    assert_int_equal(parse_cpus("0.000000001", &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(parse_cpus("3", &v), 0);
    assert_int_equal(v, 3000000000LL);
    assert_int_equal(parse_cpus("1e3", &v), SKIFF_EINVAL);
    assert_int_equal(parse_cpus("", &v), SKIFF_EINVAL);

    assert_int_equal(parse_ratio("0", &d), 0);
    assert_int_equal(parse_ratio("1.0", &d), 0);
    assert_true(d == 1.0);
    assert_int_equal(parse_ratio("1.01", &d), SKIFF_EINVAL);
    assert_int_equal(parse_uint("18446744073709551615", UINT64_MAX, &u), 0);
    assert_int_equal(parse_uint("18446744073709551616", UINT64_MAX, &u), SKIFF_EINVAL);
    assert_int_equal(parse_uint("+1", 10, &u), SKIFF_EINVAL);
    /* a digit above the maximum (this once wrapped around) */
    assert_int_equal(parse_uint("5", 3, &u), SKIFF_EINVAL);
    assert_int_equal(parse_uint("3", 3, &u), 0);
    assert_int_equal(parse_uint("10", 9, &u), SKIFF_EINVAL);
    assert_int_equal(parse_ratio("2", &d), SKIFF_EINVAL);
    assert_int_equal(parse_cpus("1000001", &v), SKIFF_EINVAL);
    assert_int_equal(parse_port("80/tcp", &port, why, sizeof(why)), 0);
    assert_int_equal(port, 80);
    assert_int_equal(parse_port("80/udp", &port, why, sizeof(why)), SKIFF_EINVAL);

    char **words = NULL;
    size_t n = 0;
    assert_int_equal(parse_words("  a 'b c' \"d \\\"e\\\"\" f\\ g ''  ", &n, &words, why,
                                 sizeof(why)), 0);
    assert_int_equal(n, 5);
    assert_string_equal(words[1], "b c");
    assert_string_equal(words[2], "d \"e\"");
    assert_string_equal(words[3], "f g");
    assert_string_equal(words[4], "");
    for (size_t i = 0; i < n; i++)
        free(words[i]);
    free(words);

    char out[32];
    assert_string_equal(format_memory(512LL << 20, out, sizeof(out)), "512MiB");
    assert_string_equal(format_memory(100, out, sizeof(out)), "100B");
    assert_string_equal(format_memory(3LL << 29, out, sizeof(out)), "1.5GiB");
    assert_string_equal(format_cpus(500000000, out, sizeof(out)), "0.5");
    assert_string_equal(format_cpus(2000000000, out, sizeof(out)), "2");

    svc_name_from_image("skiff-test/web:v1", out, sizeof(out));
    assert_string_equal(out, "web");
    svc_name_from_image("localhost:5000/my.app@sha256:abc", out, sizeof(out));
    assert_string_equal(out, "my-app");
    svc_name_from_image("redis", out, sizeof(out));
    assert_string_equal(out, "redis");
}

/* -------------------------------------------------------------- token */

static void test_token(void **state)
{
    char path[] = "/tmp/skiff-test-token-XXXXXX", token[CLI_MAX_TOKEN + 1], err[256];
    cli_args_t a = { 0 };
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, "  abc123 \n", 10), 10);
    close(fd);
    unsetenv("SKIFF_TOKEN_FILE");
    unsetenv("SKIFF_TOKEN");

    a.token_file = path;
    assert_int_equal(cli_token(&a, token, sizeof(token), err, sizeof(err)), 0);
    assert_string_equal(token, "abc123");

    /* the flag wins over the environment */
    setenv("SKIFF_TOKEN", "fromenv", 1);
    assert_int_equal(cli_token(&a, token, sizeof(token), err, sizeof(err)), 0);
    assert_string_equal(token, "abc123");
    a.token_file = NULL;
    assert_int_equal(cli_token(&a, token, sizeof(token), err, sizeof(err)), 0);
    assert_string_equal(token, "fromenv");
    setenv("SKIFF_TOKEN_FILE", path, 1);
    assert_int_equal(cli_token(&a, token, sizeof(token), err, sizeof(err)), 0);
    assert_string_equal(token, "abc123");

    a.token_file = "/nonexistent/token";
    assert_int_equal(cli_token(&a, token, sizeof(token), err, sizeof(err)), SKIFF_EINVAL);
    assert_string_equal(err, "cannot read token file /nonexistent/token: No such file or "
                             "directory");
    unlink(path);
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    close(fd);
    a.token_file = path;
    assert_int_equal(cli_token(&a, token, sizeof(token), err, sizeof(err)), SKIFF_EINVAL);
    assert_non_null(strstr(err, "is empty"));
    unlink(path);
    unsetenv("SKIFF_TOKEN_FILE");
    unsetenv("SKIFF_TOKEN");
}

/* Every service flag of update is accepted by update's parser, as the
 * entry of the table that help lists. */
static void test_help_lists_flags(void **state)
{
    line_t *l = parse("skiff service update --help");

    assert_int_equal(l->rc, 0);
    assert_true(l->args.help);
    for (size_t i = 0; i < svc_flags_n; i++) {
        char line[96];
        line_t *k;
        if (!(svc_flags[i].modes & SVC_UPDATE))
            continue;
        snprintf(line, sizeof(line), "skiff service update --%s%s web", svc_flags[i].name,
                 svc_flags[i].metavar ? " x" : "");
        k = parse(line);
        assert_int_equal(k->rc, 0);
        assert_int_equal(k->args.svc.n, 1);
        assert_ptr_equal(k->args.svc.v[0].flag, &svc_flags[i]);
        line_free(k);
    }
    line_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_commands),
        cmocka_unit_test(test_parse_help),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_create_every_flag),
        cmocka_unit_test(test_create_defaults),
        cmocka_unit_test(test_create_bad_values),
        cmocka_unit_test(test_update_flags),
        cmocka_unit_test(test_secret_flags),
        cmocka_unit_test(test_secret_commands),
        cmocka_unit_test(test_secret_output),
        cmocka_unit_test(test_parse_values),
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_help_lists_flags),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
