/* cli: the command table, the command-line parser and the help, and what
 * every verb shares (connecting, requests, errors). See cli.h.
 *
 * Flags come from two tables: the common ones below (each command lists
 * those it takes as CF_* bits) and the service flags of flags.c (for
 * service create and update). One getopt_long option array is built per
 * command from both, so that --help and the parser never disagree.
 */
#include "cli.h"
#include "errors.h"
#include "parse.h"
#include "pbutil.h"
#include "spec.h"
#include "wire.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The common flags; a command takes those whose bits it has. */
enum {
    CF_FORMAT = 1u << 0,
    CF_QUIET_IDS = 1u << 1,
    CF_QUIET_PROGRESS = 1u << 2,
    CF_NO_TRUNC = 1u << 3,
    CF_DETACH = 1u << 4,
    CF_FORCE_NODE = 1u << 5,
    CF_FORCE_UPDATE = 1u << 6,
    CF_FOLLOW = 1u << 7,
    CF_TAIL = 1u << 8,
    CF_COMPOSE = 1u << 9,
    CF_PRUNE = 1u << 10,
    CF_AVAILABILITY = 1u << 11,
    CF_GLOBAL = 1u << 12,  /* --host, --token-file, --tls-ca: every command */
    CF_HELP = 1u << 13,    /* every command */
    CF_SINCE = 1u << 14,
    CF_UNTIL = 1u << 15,
    CF_FILTER = 1u << 16,
    CF_NO_STREAM = 1u << 17,
    CF_ROTATE = 1u << 18,
    CF_LABEL = 1u << 19,   /* secret|config create --label */
    CF_PRETTY = 1u << 20,  /* secret|config inspect --pretty */
    CF_LABEL_ADD = 1u << 21,
    CF_LABEL_RM = 1u << 22,
};

typedef struct cli_flag {
    unsigned bit;
    const char *name;
    char shortc;
    const char *metavar;  /* NULL: a switch */
    const char *help;
} cli_flag_t;

static const cli_flag_t cli_flags[] = {
    { CF_FORMAT, "format", 0, "FORMAT", "Output format: table (default) or json" },
    { CF_QUIET_IDS, "quiet", 'q', NULL, "Only display IDs" },
    { CF_QUIET_PROGRESS, "quiet", 'q', NULL, "Suppress progress output" },
    { CF_NO_TRUNC, "no-trunc", 0, NULL, "Do not truncate IDs and errors" },
    { CF_DETACH, "detach", 'd', NULL,
      "Exit at once instead of waiting for the service to converge" },
    { CF_FORCE_NODE, "force", 'f', NULL, "Remove a node even if it is not down" },
    { CF_FORCE_UPDATE, "force", 0, NULL, "Redeploy every task, even without changes" },
    { CF_FOLLOW, "follow", 'f', NULL, "Follow the logs until Ctrl-C" },
    { CF_TAIL, "tail", 'n', "N", "Lines to show from the end of each log (default: all)" },
    { CF_COMPOSE, "compose-file", 'c', "FILE", "Compose file of the stack (\"-\": stdin)" },
    { CF_PRUNE, "prune", 0, NULL, "Remove the stack's services that the file no longer has" },
    { CF_AVAILABILITY, "availability", 0, "active|drain", "Node availability" },
    { CF_LABEL_ADD, "label-add", 0, "KEY=VALUE",
      "Set a node label (repeatable); it wins over the agent's --label of the same key" },
    { CF_LABEL_RM, "label-rm", 0, "KEY", "Remove a node label set with --label-add (repeatable)" },
    { CF_SINCE, "since", 0, "TIME",
      "Show events since TIME: a duration back (10m), Unix seconds, or RFC 3339" },
    { CF_UNTIL, "until", 0, "TIME", "Stop at TIME (same forms); without it, follow" },
    { CF_FILTER, "filter", 'f', "KEY=VALUE",
      "Only type=service|task|node, service=NAME, node=NAME (repeatable)" },
    { CF_NO_STREAM, "no-stream", 0, NULL, "Print the figures once, not every second" },
    { CF_GLOBAL, "host", 'H', "ADDR:PORT[,...]",
      "Controller address, or the controllers of a cluster on etcd, tried in turn "
      "(SKIFF_HOST; default " CLI_DEFAULT_HOST ")" },
    { CF_GLOBAL, "token-file", 0, "FILE",
      "Admin token file (SKIFF_TOKEN_FILE, or the token in SKIFF_TOKEN; default "
      CLI_DEFAULT_TOKEN_FILE ")" },
    { CF_GLOBAL, "tls-ca", 0, "FILE",
      "Verify the controller against these CA certificates (SKIFF_TLS_CA; default: the CA "
      "digest in the admin token)" },
    { CF_ROTATE, "rotate", 0, NULL,
      "Rotate the CA: a new CA, every node's certificate reissued, new tokens" },
    { CF_LABEL, "label", 'l', "KEY=VALUE", "Set a label (repeatable)" },
    { CF_PRETTY, "pretty", 0, NULL, "Print the information in a human friendly format" },
    { CF_HELP, "help", 'h', NULL, "Print this help" },
};

#define N_CLI_FLAGS (sizeof(cli_flags) / sizeof(cli_flags[0]))

#define LISTING (CF_FORMAT | CF_QUIET_IDS | CF_NO_TRUNC)
#define WAITING (CF_DETACH | CF_QUIET_PROGRESS)

static const cli_command_t cli_commands[] = {
    { "node", "ls", "list", "[OPTIONS]", "List nodes", LISTING, 0, 0, 0, node_ls },
    { "node", "inspect", NULL, "NODE [NODE...]", "Display nodes in detail, as JSON", 0, 0, 1,
      -1, node_inspect },
    { "node", "update", NULL,
      "[--availability active|drain] [--label-add KEY=VALUE] [--label-rm KEY] NODE",
      "Change a node's availability (drain moves its tasks away) or labels",
      CF_AVAILABILITY | CF_LABEL_ADD | CF_LABEL_RM, 0, 1, 1, node_update },
    { "node", "rm", "remove", "[OPTIONS] NODE [NODE...]", "Remove nodes from the cluster",
      CF_FORCE_NODE, 0, 1, -1, node_rm },
    { "service", "create", NULL, "[OPTIONS] IMAGE [COMMAND] [ARG...]", "Create a service",
      WAITING, SVC_CREATE, 1, -1, service_create },
    { "service", "update", NULL, "[OPTIONS] SERVICE",
      "Update a service (a rolling update; the same spec resumes a paused one)",
      WAITING | CF_FORCE_UPDATE, SVC_UPDATE, 1, 1, service_update },
    { "service", "scale", NULL, "SERVICE=REPLICAS [SERVICE=REPLICAS...]",
      "Change the number of tasks of services", WAITING, 0, 1, -1, service_scale },
    { "service", "ls", "list", "[OPTIONS]", "List services", LISTING, 0, 0, 0, service_ls },
    { "service", "ps", NULL, "[OPTIONS] SERVICE [SERVICE...]",
      "List the tasks of services, with their history", LISTING, 0, 1, -1, service_ps },
    { "service", "inspect", NULL, "SERVICE [SERVICE...]", "Display services in detail, as JSON",
      0, 0, 1, -1, service_inspect },
    { "service", "rollback", NULL, "[OPTIONS] SERVICE",
      "Go back to a service's previous spec", WAITING, 0, 1, 1, service_rollback },
    { "service", "rm", "remove", "SERVICE [SERVICE...]", "Remove services", 0, 0, 1, -1,
      service_rm },
    { "service", "logs", NULL, "[OPTIONS] SERVICE", "Show the logs of a service's tasks",
      CF_FOLLOW | CF_TAIL, 0, 1, 1, service_logs },
    { "service", "stats", NULL, "[OPTIONS] [SERVICE...]",
      "Show the tasks' CPU, memory, network and balancer figures, live",
      CF_FORMAT | CF_NO_STREAM | CF_NO_TRUNC, 0, 0, -1, service_stats },
    { "events", NULL, NULL, "[OPTIONS]", "Show what happens in the cluster",
      CF_FORMAT | CF_SINCE | CF_UNTIL | CF_FILTER, 0, 0, 0, events_run },
    { "cluster", "ca", NULL, "[OPTIONS]",
      "Display the cluster CA, or rotate it (--rotate)", CF_ROTATE | WAITING, 0, 0, 0,
      cluster_ca },
    { "cluster", "client-cert", NULL, "DIR",
      "Write a client certificate of the cluster CA into DIR (ca.pem, cert.pem, key.pem)", 0, 0,
      1, 1, cluster_client_cert },
    { "stack", "deploy", "up", "[OPTIONS] STACK", "Deploy a stack from a Compose file, or "
      "change it to match the file", CF_COMPOSE | CF_PRUNE | WAITING, 0, 1, 1, stack_deploy },
    { "stack", "ls", "list", "[OPTIONS]", "List stacks", CF_FORMAT | CF_QUIET_IDS, 0, 0, 0,
      stack_ls },
    { "stack", "services", NULL, "[OPTIONS] STACK", "List the services of a stack", LISTING, 0,
      1, 1, stack_services },
    { "stack", "ps", NULL, "[OPTIONS] STACK", "List the tasks of a stack", LISTING, 0, 1, 1,
      stack_ps },
    { "stack", "rm", "remove", "STACK [STACK...]", "Remove stacks", 0, 0, 1, -1, stack_rm },
    { "secret", "create", NULL, "[OPTIONS] SECRET FILE|-",
      "Create a secret from a file or standard input (\"-\")", CF_LABEL, 0, 2, 2,
      secret_create },
    { "secret", "ls", "list", "[OPTIONS]", "List secrets", LISTING, 0, 0, 0, secret_ls },
    { "secret", "inspect", NULL, "[OPTIONS] SECRET [SECRET...]",
      "Display secrets in detail, as JSON (never their values)", CF_PRETTY, 0, 1, -1,
      secret_inspect },
    { "secret", "rm", "remove", "SECRET [SECRET...]", "Remove secrets", 0, 0, 1, -1,
      secret_rm },
    { "config", "create", NULL, "[OPTIONS] CONFIG FILE|-",
      "Create a config from a file or standard input (\"-\")", CF_LABEL, 0, 2, 2,
      secret_create },
    { "config", "ls", "list", "[OPTIONS]", "List configs", LISTING, 0, 0, 0, secret_ls },
    { "config", "inspect", NULL, "[OPTIONS] CONFIG [CONFIG...]",
      "Display configs in detail, as JSON", CF_PRETTY, 0, 1, -1, secret_inspect },
    { "config", "rm", "remove", "CONFIG [CONFIG...]", "Remove configs", 0, 0, 1, -1,
      secret_rm },
    { "controller", "ls", "list", "[OPTIONS]",
      "List the controllers, their roles (leader, follower) and their stores' health",
      CF_FORMAT, 0, 0, 0, controller_ls },
};

#define N_COMMANDS (sizeof(cli_commands) / sizeof(cli_commands[0]))

static const struct {
    const char *name;
    const char *summary;
} cli_groups[] = {
    { "node", "Manage the cluster's nodes" },
    { "cluster", "Manage the cluster's CA and certificates" },
    { "service", "Manage services" },
    { "stack", "Manage stacks (services from a Compose file)" },
    { "secret", "Manage secrets (values that tasks get as files, never shown)" },
    { "config", "Manage configs (files that tasks get, shown as they are)" },
    { "events", "Show what happens in the cluster (services, tasks, nodes)" },
    { "controller", "Look at the controllers (several on etcd, one leading)" },
};

#define N_GROUPS (sizeof(cli_groups) / sizeof(cli_groups[0]))

/* getopt_long values: common flags from 1000, service flags from 2000. */
#define OPT_COMMON 1000
#define OPT_SVC 2000

/* ------------------------------------------------------------ helpers */

int cli_error(int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fflush(stdout);
    fprintf(stderr, "skiff: %s\n", parse_one_line(msg));
    return status;
}

int cli_status(int rc)
{
    return rc == -EINTR ? CLI_INTERRUPTED : rc ? CLI_ERROR : CLI_OK;
}

fmt_opts_t cli_fmt_opts(const cli_args_t *a)
{
    fmt_opts_t o = { .quiet = a->quiet, .no_trunc = a->no_trunc, .json = a->json,
                     .now_ms = fmt_now_ms() };
    return o;
}

static int cli_fail(char *err, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int cli_fail(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
    parse_one_line(err);
    return SKIFF_EINVAL;
}

/* Reads a token file: its first line, without blanks around it. */
static int cli_read_token(const char *path, char *token, size_t len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char buf[CLI_MAX_TOKEN + 2], *s, *e;
    size_t n;

    if (!f)
        return cli_fail(err, errlen, "cannot read token file %s: %s", path, strerror(errno));
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    for (s = buf; isspace((unsigned char)*s); s++)
        ;
    for (e = s; *e && *e != '\n' && *e != '\r'; e++)
        ;
    while (e > s && isspace((unsigned char)e[-1]))
        e--;
    *e = '\0';
    if (!*s)
        return cli_fail(err, errlen, "token file %s is empty", path);
    if ((size_t)(e - s) >= len || (size_t)(e - s) > CLI_MAX_TOKEN)
        return cli_fail(err, errlen, "token file %s: the token is too long", path);
    memcpy(token, s, (size_t)(e - s) + 1);
    return 0;
}

int cli_token(const cli_args_t *a, char *token, size_t len, char *err, size_t errlen)
{
    const char *file = a->token_file, *env;

    if (!file && (env = getenv("SKIFF_TOKEN_FILE")) && *env)
        file = env;
    if (file)
        return cli_read_token(file, token, len, err, errlen);
    if ((env = getenv("SKIFF_TOKEN")) && *env) {
        if (strlen(env) >= len || strlen(env) > CLI_MAX_TOKEN)
            return cli_fail(err, errlen, "SKIFF_TOKEN is too long");
        strcpy(token, env);
        return 0;
    }
    if (access(CLI_DEFAULT_TOKEN_FILE, R_OK) == 0)
        return cli_read_token(CLI_DEFAULT_TOKEN_FILE, token, len, err, errlen);
    return cli_fail(err, errlen,
                    "no admin token: give --token-file FILE, or set SKIFF_TOKEN_FILE or "
                    "SKIFF_TOKEN (%s is not readable)", CLI_DEFAULT_TOKEN_FILE);
}

client_t *cli_connect(const cli_args_t *a)
{
    const char *host = a->host, *env, *ca = a->tls_ca;
    char token[CLI_MAX_TOKEN + 1], err[512], list[16][WIRE_HOSTPORT_MAX];
    client_t *c;
    size_t n;

    if (!host && (env = getenv("SKIFF_HOST")) && *env)
        host = env;
    if (!host)
        host = CLI_DEFAULT_HOST;
    if (wire_parse_hostlist(host, 0, list, 16, &n)) {
        cli_error(CLI_USAGE, "invalid controller address \"%s\" (ADDRESS:PORT[,ADDRESS:PORT...])",
                  host);
        return NULL;
    }
    if (cli_token(a, token, sizeof(token), err, sizeof(err))) {
        cli_error(CLI_ERROR, "%s", err);
        return NULL;
    }
    if (!ca && (env = getenv("SKIFF_TLS_CA")) && *env)
        ca = env;
    c = client_connect(host, token, ca, err, sizeof(err));
    memset(token, 0, sizeof(token));
    if (!c)
        cli_error(CLI_ERROR, "%s", err);
    return c;
}

int cli_request(client_t *c, Envelope *req, int reply_case, Envelope **reply)
{
    char err[512];
    int rc = client_call(c, req, reply_case, reply, err, sizeof(err));

    if (rc)
        return cli_error(cli_status(rc), "%s", err);
    return 0;
}

int cli_task_list(client_t *c, TaskList *filter, Envelope **reply)
{
    char err[512];
    int rc = client_task_list(c, filter, reply, err, sizeof(err));

    if (rc)
        return cli_error(cli_status(rc), "%s", err);
    return 0;
}

/* ------------------------------------------------------------- parsing */

static const cli_command_t *cli_find(const char *group, const char *verb)
{
    for (size_t i = 0; i < N_COMMANDS; i++) {
        const cli_command_t *c = &cli_commands[i];
        if (strcmp(c->group, group) != 0)
            continue;
        if (!c->verb || !verb) {
            if (!c->verb && !verb)
                return c;
            continue;
        }
        if (strcmp(c->verb, verb) == 0 || (c->alias && strcmp(c->alias, verb) == 0))
            return c;
    }
    return NULL;
}

static int cli_group_known(const char *group)
{
    for (size_t i = 0; i < N_GROUPS; i++)
        if (strcmp(cli_groups[i].name, group) == 0)
            return 1;
    return 0;
}

static int cli_takes(const cli_command_t *cmd, const cli_flag_t *f)
{
    return (f->bit & (CF_GLOBAL | CF_HELP)) || (cmd && (cmd->flags & f->bit));
}

/* The getopt_long options of a command (cmd NULL: the global ones). */
static int cli_options(const cli_command_t *cmd, struct option **longopts, char *shortopts,
                       size_t shortlen)
{
    size_t n = 0, s = 0, cap = N_CLI_FLAGS + svc_flags_n + 1;
    struct option *o = calloc(cap, sizeof(*o));

    if (!o)
        return -ENOMEM;
    shortopts[s++] = cmd && cmd->svc_mode != SVC_CREATE ? '-' : '+';
    shortopts[s++] = ':';
    for (size_t i = 0; i < N_CLI_FLAGS; i++) {
        const cli_flag_t *f = &cli_flags[i];
        if (!cli_takes(cmd, f))
            continue;
        o[n++] = (struct option){ f->name, f->metavar ? required_argument : no_argument, NULL,
                                  OPT_COMMON + (int)i };
        if (f->shortc && s + 3 < shortlen) {
            shortopts[s++] = f->shortc;
            if (f->metavar)
                shortopts[s++] = ':';
        }
    }
    for (size_t i = 0; cmd && cmd->svc_mode && i < svc_flags_n; i++) {
        const svc_flag_t *f = &svc_flags[i];
        if (!(f->modes & cmd->svc_mode))
            continue;
        o[n++] = (struct option){ f->name, f->metavar ? required_argument : no_argument, NULL,
                                  OPT_SVC + (int)i };
        if (f->shortc && s + 3 < shortlen) {
            shortopts[s++] = f->shortc;
            if (f->metavar)
                shortopts[s++] = ':';
        }
    }
    shortopts[s] = '\0';
    *longopts = o;
    return 0;
}

/* The option value for a short flag character. */
static int cli_short(const cli_command_t *cmd, int c)
{
    for (size_t i = 0; i < N_CLI_FLAGS; i++)
        if (cli_flags[i].shortc == c && cli_takes(cmd, &cli_flags[i]))
            return OPT_COMMON + (int)i;
    for (size_t i = 0; cmd && cmd->svc_mode && i < svc_flags_n; i++)
        if (svc_flags[i].shortc == c && (svc_flags[i].modes & cmd->svc_mode))
            return OPT_SVC + (int)i;
    return -1;
}

static int cli_set_common(cli_args_t *a, const cli_flag_t *f, const char *v, char *err,
                          size_t len)
{
    uint64_t u;

    switch (f->bit) {
    case CF_FORMAT:
        if (strcmp(v, "json") != 0 && strcmp(v, "table") != 0)
            return cli_fail(err, len, "invalid value for --format: \"%.100s\" (table or json)",
                            v);
        a->json = strcmp(v, "json") == 0;
        return 0;
    case CF_QUIET_IDS:
    case CF_QUIET_PROGRESS: a->quiet = 1; return 0;
    case CF_NO_TRUNC: a->no_trunc = 1; return 0;
    case CF_DETACH: a->detach = 1; return 0;
    case CF_FORCE_NODE:
    case CF_FORCE_UPDATE: a->force = 1; return 0;
    case CF_FOLLOW: a->follow = 1; return 0;
    case CF_TAIL:
        if (strcmp(v, "all") == 0) {
            a->tail = -1;
        } else if (parse_uint(v, 1000000000, &u)) {
            return cli_fail(err, len, "invalid value for --tail: \"%.100s\" (a number of lines "
                            "or all)", v);
        } else {
            a->tail = (long)u;
        }
        return 0;
    case CF_COMPOSE:
        if (a->compose_file)
            return cli_fail(err, len, "--compose-file: only one file is supported");
        a->compose_file = v;
        return 0;
    case CF_PRUNE: a->prune = 1; return 0;
    case CF_AVAILABILITY:
        if (strcmp(v, "active") == 0)
            a->availability = AVAILABILITY_ACTIVE;
        else if (strcmp(v, "drain") == 0)
            a->availability = AVAILABILITY_DRAIN;
        else
            return cli_fail(err, len, "invalid value for --availability: \"%.100s\" (active or "
                            "drain)", v);
        return 0;
    case CF_LABEL_ADD: {
        const char *eq = strchr(v, '=');
        size_t klen = eq ? (size_t)(eq - v) : strlen(v);
        char key[256], msg[256];
        if (klen >= sizeof(key))
            return cli_fail(err, len, "invalid value for --label-add: \"%.100s\" (a key of at "
                            "most %zu bytes)", v, sizeof(key) - 1);
        memcpy(key, v, klen);
        key[klen] = '\0';
        if (spec_label_check("--label-add", key, eq ? eq + 1 : "", NULL, msg, sizeof(msg)))
            return cli_fail(err, len, "%s", msg);
        return pb_push_str(&a->n_label_add, &a->label_add, v) ? -ENOMEM : 0;
    }
    case CF_LABEL_RM: {
        char msg[256];
        if (strchr(v, '='))
            return cli_fail(err, len, "invalid value for --label-rm: \"%.100s\" (a key, "
                            "without =VALUE)", v);
        if (spec_label_check("--label-rm", v, "", NULL, msg, sizeof(msg)))
            return cli_fail(err, len, "%s", msg);
        return pb_push_str(&a->n_label_rm, &a->label_rm, v) ? -ENOMEM : 0;
    }
    case CF_HELP: a->help = 1; return 0;
    case CF_SINCE:
    case CF_UNTIL: {
        int64_t ms;
        if (parse_time(v, fmt_now_ms(), &ms) || ms <= 0)
            return cli_fail(err, len, "invalid value for --%s: \"%.100s\" (a duration like 10m, "
                            "Unix seconds, or a time like 2026-12-06T13:50:00Z)", f->name, v);
        if (f->bit == CF_SINCE)
            a->since_ms = ms;
        else
            a->until_ms = ms;
        return 0;
    }
    case CF_FILTER: {
        const char *eq = strchr(v, '=');
        size_t klen = eq ? (size_t)(eq - v) : 0;
        if (!eq || !eq[1])
            return cli_fail(err, len, "invalid filter: \"%.100s\" (KEY=VALUE)", v);
        if (!((klen == 4 && strncmp(v, "type", 4) == 0) ||
              (klen == 7 && strncmp(v, "service", 7) == 0) ||
              (klen == 4 && strncmp(v, "node", 4) == 0)))
            return cli_fail(err, len, "invalid filter: \"%.100s\" (type, service or node)", v);
        if (klen == 4 && strncmp(v, "type", 4) == 0 && strcmp(eq + 1, "service") != 0 &&
            strcmp(eq + 1, "task") != 0 && strcmp(eq + 1, "node") != 0 &&
            strcmp(eq + 1, "secret") != 0 && strcmp(eq + 1, "config") != 0)
            return cli_fail(err, len, "invalid filter: \"%.100s\" (type is service, task, "
                            "node, secret or config)", v);
        return pb_push_str(&a->n_filters, &a->filters, v) ? -ENOMEM : 0;
    }
    case CF_NO_STREAM: a->no_stream = 1; return 0;
    case CF_ROTATE: a->rotate = 1; return 0;
    case CF_PRETTY: a->pretty = 1; return 0;
    case CF_LABEL: {
        const char *eq = strchr(v, '=');
        if (!*v || eq == v)
            return cli_fail(err, len, "invalid value for --label: \"%.100s\" (KEY=VALUE)", v);
        return pb_push_str(&a->n_labels, &a->labels, v) ? -ENOMEM : 0;
    }
    case CF_GLOBAL:
        if (strcmp(f->name, "host") == 0) {
            char list[16][WIRE_HOSTPORT_MAX];
            size_t n;
            if (wire_parse_hostlist(v, 0, list, 16, &n))
                return cli_fail(err, len, "invalid value for --host: \"%.100s\" (ADDRESS:PORT, "
                                "e.g. 127.0.0.1:7400, or a list of them)", v);
            a->host = v;
        } else if (strcmp(f->name, "tls-ca") == 0) {
            if (!*v)
                return cli_fail(err, len, "invalid value for --tls-ca: \"\" (a PEM file)");
            a->tls_ca = v;
        } else {
            a->token_file = v;
        }
        return 0;
    }
    return cli_fail(err, len, "internal error: flag --%s", f->name);
}

/* The text of the flag getopt complained about. */
static void cli_bad_flag(char **argv, int optind_now, int optopt_now, char *out, size_t len)
{
    const char *arg = optind_now > 0 ? argv[optind_now - 1] : "";

    if (optopt_now && !(arg[0] == '-' && arg[1] == '-'))
        snprintf(out, len, "-%c", optopt_now);
    else
        snprintf(out, len, "%.*s", (int)strcspn(arg, "="), arg);
}

static const char *cli_cmd_name(const cli_command_t *cmd, char *out, size_t len)
{
    snprintf(out, len, "skiff %s%s%s", cmd->group, cmd->verb ? " " : "",
             cmd->verb ? cmd->verb : "");
    return out;
}

/* Parses the flags of argv (argv[0] is the verb, or "skiff" for the global
 * flags) for cmd. Sets *next to the first argument that is not a flag. */
static int cli_getopt(const cli_command_t *cmd, int argc, char **argv, cli_args_t *a,
                      int *next, char *err, size_t len)
{
    struct option *longopts = NULL;
    char shortopts[64], bad[128], name[64];
    int rc, c;

    if ((rc = cli_options(cmd, &longopts, shortopts, sizeof(shortopts))))
        return rc;
    if (cmd)
        cli_cmd_name(cmd, name, sizeof(name));
    else
        snprintf(name, sizeof(name), "skiff");
    /* '-' in shortopts returns arguments in order as 1 (so that flags may
     * follow them, as Docker allows); '+' stops at the first argument. */
    optind = 0;
    opterr = 0;
    rc = 0;
    while (rc == 0 && (c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        if (c == 1) {
            argv[a->argc++] = optarg; /* arguments collect at the front */
            continue;
        }
        if (c == '?' || c == ':') {
            cli_bad_flag(argv, optind, optopt, bad, sizeof(bad));
            rc = c == '?' ? cli_fail(err, len, "unknown flag: %s (see %s --help)", bad, name)
                          : cli_fail(err, len, "flag needs an argument: %s", bad);
            break;
        }
        if (c < OPT_COMMON)
            c = cli_short(cmd, c);
        if (c >= OPT_SVC)
            rc = svc_opts_push(&a->svc, &svc_flags[c - OPT_SVC], optarg) ? -ENOMEM : 0;
        else if (c >= OPT_COMMON)
            rc = cli_set_common(a, &cli_flags[c - OPT_COMMON], optarg, err, len);
    }
    *next = optind;
    free(longopts);
    return rc;
}

int cli_parse(int argc, char **argv, cli_args_t *a, char *err, size_t errlen)
{
    const cli_command_t *cmd;
    char name[64];
    int next, rc, sub_argc;
    char **sub;

    memset(a, 0, sizeof(*a));
    a->tail = -1;
    a->availability = -1;
    /* skiff [global flags] GROUP VERB [flags and arguments] */
    for (int i = 1; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--version") == 0) {
            a->version = 1;
            return 0;
        }
    }
    next = 1;
    if (argc > 1 && argv[1][0] == '-' && (rc = cli_getopt(NULL, argc, argv, a, &next, err,
                                                          errlen)))
        return rc;
    if (a->help || next >= argc)
        return (a->help = 1, 0);
    a->group = argv[next++];
    if (strcmp(a->group, "help") == 0) {
        a->help = 1;
        a->group = next < argc ? argv[next++] : NULL;
        if (a->group && next < argc)
            a->cmd = cli_find(a->group, argv[next]);
        if (a->group && !a->cmd)
            a->cmd = cli_find(a->group, NULL);
        if (a->group && !cli_group_known(a->group))
            return cli_fail(err, errlen, "unknown command \"%.60s\" (see skiff --help)",
                            a->group);
        return 0;
    }
    if (!cli_group_known(a->group))
        return cli_fail(err, errlen, "unknown command \"%.60s\" (see skiff --help)", a->group);
    if ((cmd = cli_find(a->group, NULL))) {
        next--; /* a command of its own: the group word is its verb */
    } else {
        if (next >= argc || strcmp(argv[next], "--help") == 0 || strcmp(argv[next], "-h") == 0)
            return (a->help = 1, 0);
        cmd = cli_find(a->group, argv[next]);
    }
    if (!cmd)
        return cli_fail(err, errlen, "unknown command \"skiff %s %.60s\" (see skiff %s --help)",
                        a->group, argv[next], a->group);
    a->cmd = cmd;
    /* the verb's flags and arguments: argv[next] is the verb */
    sub = argv + next;
    sub_argc = argc - next;
    if ((rc = cli_getopt(cmd, sub_argc, sub, a, &next, err, errlen)))
        return rc;
    if (a->help)
        return 0;
    /* with '-', getopt collected the arguments at sub[0..a->argc); with '+'
     * (create), they are sub[next..] */
    if (cmd->svc_mode == SVC_CREATE) {
        a->argv = sub + next;
        a->argc = sub_argc - next;
    } else {
        for (int i = next; i < sub_argc; i++) /* after "--" */
            sub[a->argc++] = sub[i];
        a->argv = sub;
    }
    cli_cmd_name(cmd, name, sizeof(name));
    if (a->argc < cmd->min_args)
        return cli_fail(err, errlen, "\"%s\" requires %s %d argument%s: %s", name,
                        cmd->max_args == cmd->min_args ? "exactly" : "at least", cmd->min_args,
                        cmd->min_args == 1 ? "" : "s", cmd->usage);
    if (cmd->max_args >= 0 && a->argc > cmd->max_args)
        return cli_fail(err, errlen, "\"%s\" takes %s%d argument%s, not %d: %s", name,
                        cmd->max_args ? "at most " : "", cmd->max_args,
                        cmd->max_args == 1 ? "" : "s", a->argc, cmd->usage);
    if ((cmd->flags & CF_AVAILABILITY) && a->availability < 0 && !a->n_label_add &&
        !a->n_label_rm)
        return cli_fail(err, errlen, "\"%s\" requires --availability active|drain, --label-add "
                        "KEY=VALUE or --label-rm KEY", name);
    if ((cmd->flags & CF_COMPOSE) && !a->compose_file)
        return cli_fail(err, errlen, "\"%s\" requires -c/--compose-file FILE", name);
    return 0;
}

void cli_args_free(cli_args_t *a)
{
    svc_opts_free(&a->svc);
    for (size_t i = 0; i < a->n_filters; i++)
        free(a->filters[i]);
    free(a->filters);
    for (size_t i = 0; i < a->n_labels; i++)
        free(a->labels[i]);
    free(a->labels);
    for (size_t i = 0; i < a->n_label_add; i++)
        free(a->label_add[i]);
    free(a->label_add);
    for (size_t i = 0; i < a->n_label_rm; i++)
        free(a->label_rm[i]);
    free(a->label_rm);
}

/* ---------------------------------------------------------------- help */

static void cli_help_flag(FILE *out, char shortc, const char *name, const char *metavar,
                          const char *help)
{
    char left[64];

    snprintf(left, sizeof(left), "%c%c%c --%s%s%s", shortc ? '-' : ' ', shortc ? shortc : ' ',
             shortc ? ',' : ' ', name, metavar ? " " : "", metavar ? metavar : "");
    if (strlen(left) > 34)
        fprintf(out, "  %s\n  %-34s  %s\n", left, "", help);
    else
        fprintf(out, "  %-34s  %s\n", left, help);
}

static void cli_help_top(FILE *out)
{
    fprintf(out, "Usage:  skiff [OPTIONS] COMMAND\n\n"
                 "skiff: a small container orchestrator, driven like docker service and "
                 "docker stack.\n\nOptions:\n");
    for (size_t i = 0; i < N_CLI_FLAGS; i++)
        if (cli_flags[i].bit & (CF_GLOBAL | CF_HELP))
            cli_help_flag(out, cli_flags[i].shortc, cli_flags[i].name, cli_flags[i].metavar,
                          cli_flags[i].help);
    cli_help_flag(out, 0, "version", NULL, "Print the version");
    fprintf(out, "\nCommands:\n");
    for (size_t i = 0; i < N_GROUPS; i++)
        fprintf(out, "  %-10s%s\n", cli_groups[i].name, cli_groups[i].summary);
    fprintf(out, "\nRun 'skiff COMMAND --help' for more information on a command.\n");
}

static void cli_help_group(FILE *out, const char *group)
{
    for (size_t i = 0; i < N_GROUPS; i++)
        if (strcmp(cli_groups[i].name, group) == 0)
            fprintf(out, "Usage:  skiff %s COMMAND\n\n%s\n\nCommands:\n", group,
                    cli_groups[i].summary);
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(cli_commands[i].group, group) == 0)
            fprintf(out, "  %-10s%s\n", cli_commands[i].verb, cli_commands[i].summary);
    fprintf(out, "\nRun 'skiff %s COMMAND --help' for more information on a command.\n", group);
}

static void cli_help_command(FILE *out, const cli_command_t *cmd)
{
    char name[64];

    fprintf(out, "Usage:  %s %s\n\n%s\n", cli_cmd_name(cmd, name, sizeof(name)), cmd->usage,
            cmd->summary);
    if (cmd->alias)
        fprintf(out, "\nAliases:\n  %s, %s\n", cmd->verb, cmd->alias);
    fprintf(out, "\nOptions:\n");
    for (size_t i = 0; i < N_CLI_FLAGS; i++) {
        const cli_flag_t *f = &cli_flags[i];
        if ((cmd->flags & f->bit) && !(f->bit & (CF_GLOBAL | CF_HELP)))
            cli_help_flag(out, f->shortc, f->name, f->metavar, f->help);
    }
    for (size_t i = 0; cmd->svc_mode && i < svc_flags_n; i++) {
        const svc_flag_t *f = &svc_flags[i];
        if ((f->modes & cmd->svc_mode) && !f->hidden)
            cli_help_flag(out, f->shortc, f->name, f->metavar, f->help);
    }
    fprintf(out, "\nGlobal options:\n");
    for (size_t i = 0; i < N_CLI_FLAGS; i++)
        if (cli_flags[i].bit & (CF_GLOBAL | CF_HELP))
            cli_help_flag(out, cli_flags[i].shortc, cli_flags[i].name, cli_flags[i].metavar,
                          cli_flags[i].help);
    if (cmd->svc_mode)
        fprintf(out, "\nDurations are written like 500ms, 10s or 1m30s; sizes like 512m or 1g.\n");
}

static void cli_help(const cli_args_t *a, FILE *out)
{
    if (a->cmd)
        cli_help_command(out, a->cmd);
    else if (a->group)
        cli_help_group(out, a->group);
    else
        cli_help_top(out);
}

int cli_main(int argc, char **argv)
{
    cli_args_t a;
    char err[512];
    int rc, status;

    signal(SIGPIPE, SIG_IGN);
    rc = cli_parse(argc, argv, &a, err, sizeof(err));
    if (rc) {
        cli_args_free(&a);
        if (rc == -ENOMEM)
            return cli_error(CLI_ERROR, "out of memory");
        return cli_error(CLI_USAGE, "%s", err);
    }
    if (a.version) {
        printf("skiff version %s\n", SKIFF_VERSION);
        status = CLI_OK;
    } else if (a.help || !a.cmd) {
        cli_help(&a, stdout);
        status = CLI_OK;
    } else {
        status = a.cmd->run(&a);
    }
    cli_args_free(&a);
    if (fflush(stdout) != 0 && status == CLI_OK)
        status = cli_error(CLI_ERROR, "cannot write the output: %s", strerror(errno));
    return status;
}
