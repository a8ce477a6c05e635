/* events: `skiff events`, as `docker events`: the cluster's events since
 * --since (or from now), until --until or Ctrl-C, filtered by --filter
 * type=, service=, node=; one line each (event_format_line), or with
 * --format json one JSON object a line. Events the controller had to drop
 * for a slow reader are said in a line of their own. */
#include "cli.h"
#include "errors.h"
#include "event.h"
#include "pbjson.h"
#include "pbutil.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int events_print(void *arg, const Envelope *env)
{
    const cli_args_t *a = arg;
    char line[2048];

    if (env->msg_case == MSG_EVENT) {
        if (a->json) {
            json_t *o = pbjson_from_message(&env->event->base);
            char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
            json_decref(o);
            if (!s)
                return -ENOMEM;
            printf("%s\n", s);
            free(s);
        } else {
            event_format_line(env->event, line, sizeof(line));
            printf("%s\n", line);
        }
    } else if (env->msg_case == MSG_EVENTS_DROPPED) {
        unsigned long long n = (unsigned long long)env->events_dropped->count;
        if (a->json)
            printf("{\"dropped\":%llu}\n", n);
        else
            printf("%llu event%s dropped: this reader was too slow for the controller\n", n,
                   n == 1 ? "" : "s");
    }
    fflush(stdout);
    return 0;
}

int events_run(cli_args_t *a)
{
    Envelope req = PB_ENVELOPE_INIT;
    EventsRequest er = PB_EVENTS_REQUEST_INIT;
    char err[512];
    client_t *c;
    int rc = 0;

    if (a->since_ms && a->until_ms && a->until_ms < a->since_ms)
        return cli_error(CLI_USAGE, "invalid value for --until: before --since");
    er.since_ms = a->since_ms;
    er.until_ms = a->until_ms;
    if (a->until_ms && !a->since_ms)
        er.since_ms = 1; /* as docker events: --until alone shows the past up to it */
    for (size_t i = 0; i < a->n_filters && rc == 0; i++) {
        const char *v = strchr(a->filters[i], '=') + 1;
        switch (a->filters[i][0]) {
        case 't': rc = pb_push_str(&er.n_types, &er.types, v); break;
        case 's': rc = pb_push_str(&er.n_services, &er.services, v); break;
        default: rc = pb_push_str(&er.n_nodes, &er.nodes, v); break;
        }
    }
    if (rc) {
        rc = cli_error(CLI_ERROR, "out of memory");
        goto out_free;
    }
    if (!(c = cli_connect(a))) {
        rc = CLI_ERROR;
        goto out_free;
    }
    req.msg_case = MSG_EVENTS_REQUEST;
    req.events_request = &er;
    rc = client_stream(c, &req, MSG_OK, events_print, a, err, sizeof(err));
    client_close(c);
    if (rc == -EINTR)
        rc = CLI_OK; /* Ctrl-C is how a follow ends */
    else if (rc)
        rc = cli_error(cli_status(rc), "%s", err);

out_free:
    for (size_t i = 0; i < er.n_types; i++)
        free(er.types[i]);
    for (size_t i = 0; i < er.n_services; i++)
        free(er.services[i]);
    for (size_t i = 0; i < er.n_nodes; i++)
        free(er.nodes[i]);
    free(er.types);
    free(er.services);
    free(er.nodes);
    return rc;
}
