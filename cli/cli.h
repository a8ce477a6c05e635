/* cli: the skiff command. One table of commands (cli.c) names each verb,
 * its arguments, its flags and its help text; the verbs live in one file
 * per group (node.c, service.c, stack.c, controller.c).
 *
 * Exit status: 0 done; 1 an error (from the controller, the connection, a
 * file, a service that did not converge); 2 a usage error (unknown flag, bad
 * value, wrong arguments), found before anything is sent; 130 interrupted.
 * Every error is one line on stderr: "skiff: <what is wrong>".
 */
#ifndef SKIFF_CLI_H
#define SKIFF_CLI_H

#include <stddef.h>

#include "client.h"
#include "flags.h"
#include "format.h"
#include "progress.h"
#include "skiff_pb.h"

enum cli_status { CLI_OK = 0, CLI_ERROR = 1, CLI_USAGE = 2, CLI_INTERRUPTED = 130 };

#define CLI_DEFAULT_HOST "127.0.0.1:7400"
#define CLI_DEFAULT_TOKEN_FILE "/var/lib/skiff/admin-token"
#define CLI_MAX_TOKEN 1024

typedef struct cli_command cli_command_t;

/* A parsed command line. */
typedef struct cli_args {
    const cli_command_t *cmd;  /* NULL with help: the top or a group's help */
    const char *group;         /* for a group's help */
    int help;                  /* print help and exit 0 */
    int version;
    /* global */
    const char *host;
    const char *token_file;
    const char *tls_ca;        /* --tls-ca FILE */
    /* the command's flags */
    int json;
    int quiet;
    int no_trunc;
    int detach;
    int force;
    int follow;
    long tail;                 /* -1: all */
    const char *compose_file;
    int prune;
    int availability;          /* -1: not given */
    char **label_add;          /* node update --label-add KEY[=VALUE], checked */
    size_t n_label_add;
    char **label_rm;           /* node update --label-rm KEY, checked */
    size_t n_label_rm;
    int64_t since_ms, until_ms;  /* --since, --until; 0: not given */
    char **filters;            /* --filter KEY=VALUE, checked */
    size_t n_filters;
    int no_stream;
    int rotate;                /* cluster ca --rotate */
    int pretty;                /* secret|config inspect --pretty */
    char **labels;             /* secret|config create --label KEY=VALUE */
    size_t n_labels;
    svc_opts_t svc;            /* service create/update flags, in order */
    /* the command's arguments */
    int argc;
    char **argv;
} cli_args_t;

struct cli_command {
    const char *group;
    const char *verb;       /* NULL: the group is the command (skiff events) */
    const char *alias;      /* Docker's other name ("list"), or NULL */
    const char *usage;      /* what follows the verb in the usage line */
    const char *summary;
    unsigned flags;         /* CF_* of the flags it takes */
    unsigned svc_mode;      /* SVC_CREATE or SVC_UPDATE: the service flags */
    int min_args;
    int max_args;           /* -1: any */
    int (*run)(cli_args_t *a);
};

/* Parses argv. Returns 0 (run a->cmd, or print help when a->help), or
 * SKIFF_EINVAL with one line in err (a usage error), or -ENOMEM. argv may
 * be permuted. Free with cli_args_free(). */
int cli_parse(int argc, char **argv, cli_args_t *a, char *err, size_t errlen);
void cli_args_free(cli_args_t *a);

/* The whole command: parse, run, print errors. Returns the exit status. */
int cli_main(int argc, char **argv);

/* For the verbs. */

/* Prints "skiff: <message>" on stderr; returns status. */
int cli_error(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The exit status for a negative code (-EINTR: 130; else 1). */
int cli_status(int rc);

/* Connects with the host and token that a, the environment and the
 * defaults give. Prints the error and returns NULL on failure. */
client_t *cli_connect(const cli_args_t *a);

/* client_call that prints the error. Returns 0 or an exit status. */
int cli_request(client_t *c, Envelope *req, int reply_case, Envelope **reply);
/* cli_request for a TaskList, every page of it (client_task_list). */
int cli_task_list(client_t *c, TaskList *filter, Envelope **reply);

/* The listing options of a. */
fmt_opts_t cli_fmt_opts(const cli_args_t *a);

/* The token: --token-file, SKIFF_TOKEN_FILE, SKIFF_TOKEN, the default file.
 * Returns 0, or SKIFF_EINVAL with err set. */
int cli_token(const cli_args_t *a, char *token, size_t len, char *err, size_t errlen);

int node_ls(cli_args_t *a);
int node_inspect(cli_args_t *a);
int node_update(cli_args_t *a);
int node_rm(cli_args_t *a);

int service_create(cli_args_t *a);
int service_update(cli_args_t *a);
int service_scale(cli_args_t *a);
int service_ls(cli_args_t *a);
int service_ps(cli_args_t *a);
int service_inspect(cli_args_t *a);
int service_rollback(cli_args_t *a);
int service_rm(cli_args_t *a);
int service_logs(cli_args_t *a);

int events_run(cli_args_t *a);
int service_stats(cli_args_t *a);
int cluster_ca(cli_args_t *a);
int cluster_client_cert(cli_args_t *a);

int stack_deploy(cli_args_t *a);
int stack_ls(cli_args_t *a);
int stack_services(cli_args_t *a);
int stack_ps(cli_args_t *a);
int stack_rm(cli_args_t *a);

int controller_ls(cli_args_t *a);

/* skiff secret ... and skiff config ...: the kind is a->cmd->group's. */
int secret_create(cli_args_t *a);
int secret_ls(cli_args_t *a);
int secret_inspect(cli_args_t *a);
int secret_rm(cli_args_t *a);

/* Follows svc until it converges (unless a->detach), with the progress
 * shown unless a->quiet. Returns an exit status; prints the error. */
int cli_follow(client_t *c, const Service *svc, enum progress_op op, const cli_args_t *a);

/* Builds the spec of `service create` from a's flags and arguments (IMAGE
 * [COMMAND [ARG...]]), validated. Returns the spec, or NULL with err set. */
ServiceSpec *service_create_spec(const cli_args_t *a, char *err, size_t errlen);

/* Applies `service update`'s flags to a copy of cur. Returns the new spec,
 * or NULL with err set. */
ServiceSpec *service_update_spec(const cli_args_t *a, const ServiceSpec *cur, char *err,
                                 size_t errlen);

#endif
