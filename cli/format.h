/* format: the CLI's listings, as Docker prints them, from the messages the
 * controller sends: `service ls`, `service ps`, `node ls`, `stack ls`,
 * `controller ls`, and
 * their `--format json` (one JSON array, pbjson's form).
 *
 * Pure: messages and the current time in, text out to a FILE. The messages
 * are not changed (the functions sort copies of the pointer arrays).
 */
#ifndef SKIFF_CLI_FORMAT_H
#define SKIFF_CLI_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "skiff_pb.h"

#define FMT_ID_LEN 12
#define FMT_ERROR_LEN 40

typedef struct fmt_opts {
    int quiet;       /* IDs only */
    int no_trunc;    /* whole IDs and errors */
    int json;        /* one JSON array */
    int json_lines;  /* ... on one line (a stream of them) */
    int64_t now_ms;  /* for ages */
} fmt_opts_t;

/* Each returns 0 or -ENOMEM. */
int fmt_services(FILE *out, Service *const *svcs, size_t n, const fmt_opts_t *o);
int fmt_tasks(FILE *out, Task *const *tasks, size_t n, const fmt_opts_t *o);
int fmt_nodes(FILE *out, Node *const *nodes, size_t n, const fmt_opts_t *o);
/* `skiff controller ls`: ADDRESS, ROLE (leader, follower), STORE. */
int fmt_controllers(FILE *out, ControllerInfo *const *cs, size_t n, const fmt_opts_t *o);
/* Stacks, from all services: NAME and SERVICES. */
int fmt_stacks(FILE *out, Service *const *svcs, size_t n, const fmt_opts_t *o);

/* `service stats`: TASK ID, NAME, NODE, CPU %, MEM USAGE / LIMIT, MEM %,
 * NET I/O, CONN/S, ACTIVE (a task without figures yet shows "--"). */
int fmt_stats(FILE *out, TaskStats *const *tasks, size_t n, const fmt_opts_t *o);

/* `secret ls` and `config ls`: ID, NAME, CREATED, UPDATED, by name. */
int fmt_secrets(FILE *out, Secret *const *secrets, size_t n, const fmt_opts_t *o);

/* `secret inspect` and `config inspect`: one JSON array (a config's data in
 * base64, as Docker's Spec.Data; a secret never has any), or with pretty
 * Docker's --pretty text (a config's data as it is). */
int fmt_secrets_inspect(FILE *out, Secret *const *secrets, size_t n, int pretty);

/* Any messages as one JSON array, indented. */
int fmt_json(FILE *out, void *const *msgs, size_t n);

/* "Running", "Shutdown", ... as `docker service ps` names them. */
const char *fmt_task_state(TaskState s);
const char *fmt_desired_state(DesiredState s);

/* Docker's age: "less than a second ago", "2 minutes ago", "about an hour
 * ago", "3 days ago". */
char *fmt_age(int64_t since_ms, int64_t now_ms, char *out, size_t len);

/* "*:8080->80/tcp, *:8443->443/tcp" for a spec's published ports. */
char *fmt_ports(const ServiceSpec *s, char *out, size_t len);

/* The first FMT_ID_LEN characters of id (all of it with no_trunc). */
char *fmt_id(const char *id, int no_trunc, char *out, size_t len);

/* The current time in ms since the epoch. */
int64_t fmt_now_ms(void);

#endif
