/* stats: `skiff service stats`, as `docker stats`: each running task's
 * CPU, memory, network and the balancers' figures for it, every second,
 * the table redrawn in place on a terminal; --no-stream prints it once;
 * --format json gives one JSON array (a line of it per refresh). */
#include "cli.h"
#include "errors.h"
#include "pbutil.h"
#include "wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STATS_REFRESH_MS 1000

static int stats_once(client_t *c, const cli_args_t *a, int tty, int first)
{
    Envelope req = PB_ENVELOPE_INIT, *reply = NULL;
    ServiceStats ss = PB_SERVICE_STATS_INIT;
    fmt_opts_t o = cli_fmt_opts(a);
    int rc;

    ss.services = a->argv;
    ss.n_services = (size_t)a->argc;
    req.msg_case = MSG_SERVICE_STATS;
    req.service_stats = &ss;
    if ((rc = cli_request(c, &req, MSG_SERVICE_STATS_REPLY, &reply)))
        return rc;
    if (tty && !a->json && !a->no_stream)
        fputs(first ? "\033[2J\033[H" : "\033[H\033[J", stdout); /* in place, as docker stats */
    o.json_lines = !a->no_stream;
    rc = fmt_stats(stdout, reply->service_stats_reply->tasks,
                   reply->service_stats_reply->n_tasks, &o);
    fflush(stdout);
    wire_free(reply);
    return rc ? cli_error(CLI_ERROR, "out of memory") : 0;
}

int service_stats(cli_args_t *a)
{
    char err[512];
    client_t *c = cli_connect(a);
    int tty = isatty(STDOUT_FILENO), rc;

    if (!c)
        return CLI_ERROR;
    rc = stats_once(c, a, tty, 1);
    while (rc == 0 && !a->no_stream) {
        int slept = client_sleep(c, STATS_REFRESH_MS, err, sizeof(err));
        if (slept == -EINTR)
            break; /* Ctrl-C ends it */
        if (slept) {
            rc = cli_error(cli_status(slept), "%s", err);
            break;
        }
        rc = stats_once(c, a, tty, 0);
    }
    client_close(c);
    return rc;
}
