/* service: skiff service create | update | scale | ls | ps | inspect |
 * rollback | rm | logs.
 *
 * create and update build the whole spec here and check it with
 * spec_validate() before anything is sent; update is a read-modify-write
 * (ServiceGet, change, ServiceUpdate with the version read), retried when
 * the service changed in between.
 */
#include "cli.h"
#include "edit.h"
#include "errors.h"
#include "parse.h"
#include "pbutil.h"
#include "spec.h"
#include "wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SERVICE_UPDATE_ATTEMPTS 3

int cli_follow(client_t *c, const Service *svc, enum progress_op op, const cli_args_t *a)
{
    const UpdateStatus *us = svc->update_status;
    int rolling = us && (us->state == UPDATE_UPDATING || us->state == UPDATE_ROLLBACK_STARTED);
    char err[600];
    int rc;

    if (a->detach)
        return CLI_OK;
    rc = progress_follow(c, svc->id, op, rolling, a->quiet, err, sizeof(err));
    if (rc == -EINTR)
        return CLI_INTERRUPTED; /* progress_follow said that it goes on */
    if (rc)
        return cli_error(CLI_ERROR, "%s", err);
    return CLI_OK;
}

ServiceSpec *service_create_spec(const cli_args_t *a, char *err, size_t errlen)
{
    ServiceSpec *s = spec_new();
    char name[64];
    int rc;

    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (pb_set_str(&s->image, a->argv[0]) ||
        edit_strv_set(&s->n_command, &s->command, a->argv + 1, (size_t)a->argc - 1)) {
        snprintf(err, errlen, "out of memory");
        goto out_free_spec;
    }
    if ((rc = svc_opts_apply(&a->svc, s, err, errlen)))
        goto out_free_spec;
    if (!*s->name) {
        svc_name_from_image(a->argv[0], name, sizeof(name));
        if (!*name) {
            snprintf(err, errlen, "--name is required (none comes from the image %.100s)",
                     a->argv[0]);
            parse_one_line(err);
            goto out_free_spec;
        }
        if (pb_set_str(&s->name, name)) {
            snprintf(err, errlen, "out of memory");
            goto out_free_spec;
        }
    }
    if (spec_validate(s, NULL, err, errlen))
        goto out_free_spec;
    return s;

out_free_spec:
    pb_free(s);
    return NULL;
}

ServiceSpec *service_update_spec(const cli_args_t *a, const ServiceSpec *cur, char *err,
                                 size_t errlen)
{
    ServiceSpec *s = pb_dup(cur);

    if (!s || spec_complete(s)) {
        snprintf(err, errlen, "out of memory");
        goto out_free_spec;
    }
    if (svc_opts_apply(&a->svc, s, err, errlen))
        goto out_free_spec;
    if (a->force)
        s->force_update++;
    if (spec_validate(s, NULL, err, errlen))
        goto out_free_spec;
    return s;

out_free_spec:
    pb_free(s);
    return NULL;
}

int service_create(cli_args_t *a)
{
    Envelope req = PB_ENVELOPE_INIT, *reply = NULL;
    ServiceCreate create = PB_SERVICE_CREATE_INIT;
    client_t *c = NULL;
    char err[512];
    int status;

    create.spec = service_create_spec(a, err, sizeof(err));
    if (!create.spec)
        return cli_error(CLI_USAGE, "%s", err);
    if (!(c = cli_connect(a))) {
        status = CLI_ERROR;
        goto out_free_spec;
    }
    req.msg_case = MSG_SERVICE_CREATE;
    req.service_create = &create;
    status = cli_request(c, &req, MSG_SERVICE_REPLY, &reply);
    if (status)
        goto out_close;
    if (!reply->service_reply->service) {
        status = cli_error(CLI_ERROR, "the controller sent no service");
        goto out_close;
    }
    printf("%s\n", reply->service_reply->service->id);
    fflush(stdout);
    status = cli_follow(c, reply->service_reply->service, PROGRESS_CREATE, a);
out_close:
    wire_free(reply);
    client_close(c);
out_free_spec:
    pb_free(create.spec);
    return status;
}

/* ServiceGet, printing the error. */
static int service_get(client_t *c, const char *name, Envelope **reply)
{
    Envelope req = PB_ENVELOPE_INIT;
    ServiceGet get = PB_SERVICE_GET_INIT;
    int status;

    get.service = (char *)name;
    req.msg_case = MSG_SERVICE_GET;
    req.service_get = &get;
    status = cli_request(c, &req, MSG_SERVICE_REPLY, reply);
    if (status == 0 && (!(*reply)->service_reply->service ||
                        !(*reply)->service_reply->service->spec)) {
        wire_free(*reply);
        *reply = NULL;
        return cli_error(CLI_ERROR, "the controller sent a service without a spec");
    }
    return status;
}

int service_update(cli_args_t *a)
{
    Envelope *got = NULL, *reply = NULL;
    client_t *c = NULL;
    char err[512];
    int status = CLI_ERROR, rc;

    /* check every value before connecting */
    rc = svc_opts_check(&a->svc, err, sizeof(err));
    if (rc)
        return cli_error(rc == -ENOMEM ? CLI_ERROR : CLI_USAGE, "%s", err);
    if (!(c = cli_connect(a)))
        return CLI_ERROR;
    for (int attempt = 1; attempt <= SERVICE_UPDATE_ATTEMPTS; attempt++) {
        Envelope req = PB_ENVELOPE_INIT;
        ServiceUpdate up = PB_SERVICE_UPDATE_INIT;
        const Service *cur;

        wire_free(got);
        got = NULL;
        if ((status = service_get(c, a->argv[0], &got)))
            goto out_close;
        cur = got->service_reply->service;
        up.service = cur->id;
        up.version = cur->version;
        up.spec = service_update_spec(a, cur->spec, err, sizeof(err));
        if (!up.spec) {
            status = cli_error(CLI_USAGE, "%s", err);
            goto out_close;
        }
        req.msg_case = MSG_SERVICE_UPDATE;
        req.service_update = &up;
        rc = client_call(c, &req, MSG_SERVICE_REPLY, &reply, err, sizeof(err));
        pb_free(up.spec);
        if (rc == SKIFF_ECONFLICT && attempt < SERVICE_UPDATE_ATTEMPTS)
            continue; /* changed meanwhile: read it again, apply the flags again */
        if (rc) {
            status = cli_error(cli_status(rc), "%s", err);
            goto out_close;
        }
        break;
    }
    if (!reply || !reply->service_reply->service) {
        status = cli_error(CLI_ERROR, "the controller sent no service");
        goto out_close;
    }
    printf("%s\n", reply->service_reply->service->spec
                       ? reply->service_reply->service->spec->name : a->argv[0]);
    fflush(stdout);
    status = cli_follow(c, reply->service_reply->service, PROGRESS_UPDATE, a);
out_close:
    wire_free(got);
    wire_free(reply);
    client_close(c);
    return status;
}

int service_scale(cli_args_t *a)
{
    Envelope **replies = NULL;
    uint32_t *counts = calloc((size_t)a->argc, sizeof(*counts));
    client_t *c = NULL;
    int status = CLI_OK;

    if (!counts)
        return cli_error(CLI_ERROR, "out of memory");
    /* SERVICE=REPLICAS, every one checked before anything is sent */
    for (int i = 0; i < a->argc; i++) {
        char *eq = strchr(a->argv[i], '=');
        uint64_t n;
        if (!eq || eq == a->argv[i] ||
            parse_uint(eq + 1, spec_limits_default.max_replicas, &n)) {
            status = cli_error(CLI_USAGE, "invalid value \"%.100s\" (SERVICE=REPLICAS, with "
                               "REPLICAS from 0 to %u)", a->argv[i],
                               spec_limits_default.max_replicas);
            goto out_free;
        }
        *eq = '\0';
        counts[i] = (uint32_t)n;
    }
    if (!(replies = calloc((size_t)a->argc, sizeof(*replies)))) {
        status = cli_error(CLI_ERROR, "out of memory");
        goto out_free;
    }
    if (!(c = cli_connect(a))) {
        status = CLI_ERROR;
        goto out_free;
    }
    for (int i = 0; i < a->argc && status != CLI_INTERRUPTED; i++) {
        Envelope req = PB_ENVELOPE_INIT;
        ServiceScale scale = PB_SERVICE_SCALE_INIT;
        int rc;
        scale.service = a->argv[i];
        scale.replicas = counts[i];
        req.msg_case = MSG_SERVICE_SCALE;
        req.service_scale = &scale;
        rc = cli_request(c, &req, MSG_SERVICE_REPLY, &replies[i]);
        if (rc || !replies[i]->service_reply->service) {
            status = rc ? rc : cli_error(CLI_ERROR, "the controller sent no service");
            continue;
        }
        {
            const Autoscale *as = replies[i]->service_reply->service->spec
                                      ? replies[i]->service_reply->service->spec->autoscale
                                      : NULL;
            if (as)
                printf("%s scaled to %u (autoscaled between %u and %u: the autoscaler changes "
                       "the count as the load does)\n", a->argv[i], counts[i], as->min, as->max);
            else
                printf("%s scaled to %u\n", a->argv[i], counts[i]);
        }
    }
    fflush(stdout);
    for (int i = 0; i < a->argc && status != CLI_INTERRUPTED; i++) {
        int rc;
        if (!replies[i] || !replies[i]->service_reply->service)
            continue;
        if (a->argc > 1 && !a->detach && !a->quiet)
            printf("%s\n", a->argv[i]);
        rc = cli_follow(c, replies[i]->service_reply->service, PROGRESS_SCALE, a);
        if (rc)
            status = rc;
    }
out_free:
    for (int i = 0; replies && i < a->argc; i++)
        wire_free(replies[i]);
    free(replies);
    free(counts);
    client_close(c);
    return status;
}

int service_ls(cli_args_t *a)
{
    Envelope req = PB_ENVELOPE_INIT, *reply = NULL;
    ServiceList list = PB_SERVICE_LIST_INIT;
    fmt_opts_t o = cli_fmt_opts(a);
    client_t *c = cli_connect(a);
    int status;

    if (!c)
        return CLI_ERROR;
    req.msg_case = MSG_SERVICE_LIST;
    req.service_list = &list;
    status = cli_request(c, &req, MSG_SERVICE_LIST_REPLY, &reply);
    if (status == 0 && fmt_services(stdout, reply->service_list_reply->services,
                                    reply->service_list_reply->n_services, &o))
        status = cli_error(CLI_ERROR, "out of memory");
    wire_free(reply);
    client_close(c);
    return status;
}

int service_ps(cli_args_t *a)
{
    Envelope **replies = calloc((size_t)a->argc, sizeof(*replies));
    fmt_opts_t o = cli_fmt_opts(a);
    Task **tasks = NULL;
    size_t n = 0, total = 0;
    client_t *c = NULL;
    int status = CLI_OK;

    if (!replies)
        return cli_error(CLI_ERROR, "out of memory");
    if (!(c = cli_connect(a))) {
        status = CLI_ERROR;
        goto out_free;
    }
    for (int i = 0; i < a->argc; i++) {
        TaskList list = PB_TASK_LIST_INIT;
        list.service = a->argv[i];
        list.all = 1;
        if ((status = cli_task_list(c, &list, &replies[i])))
            goto out_free;
        total += replies[i]->task_list_reply->n_tasks;
    }
    if (!(tasks = calloc(total ? total : 1, sizeof(*tasks)))) {
        status = cli_error(CLI_ERROR, "out of memory");
        goto out_free;
    }
    for (int i = 0; i < a->argc; i++)
        for (size_t k = 0; k < replies[i]->task_list_reply->n_tasks; k++)
            tasks[n++] = replies[i]->task_list_reply->tasks[k];
    if (fmt_tasks(stdout, tasks, n, &o))
        status = cli_error(CLI_ERROR, "out of memory");
out_free:
    for (int i = 0; i < a->argc; i++)
        wire_free(replies[i]);
    free(replies);
    free(tasks);
    client_close(c);
    return status;
}

int service_inspect(cli_args_t *a)
{
    Envelope **replies = calloc((size_t)a->argc, sizeof(*replies));
    Service **svcs = calloc((size_t)a->argc, sizeof(*svcs));
    client_t *c = NULL;
    int status = CLI_OK;
    size_t n = 0;

    if (!replies || !svcs) {
        status = cli_error(CLI_ERROR, "out of memory");
        goto out_free;
    }
    if (!(c = cli_connect(a))) {
        status = CLI_ERROR;
        goto out_free;
    }
    for (int i = 0; i < a->argc && status != CLI_INTERRUPTED; i++) {
        int rc = service_get(c, a->argv[i], &replies[i]);
        if (rc)
            status = rc;
        else
            svcs[n++] = replies[i]->service_reply->service;
    }
    if (fmt_json(stdout, (void *const *)svcs, n))
        status = cli_error(CLI_ERROR, "out of memory");
out_free:
    for (int i = 0; replies && i < a->argc; i++)
        wire_free(replies[i]);
    free(replies);
    free(svcs);
    client_close(c);
    return status;
}

int service_rollback(cli_args_t *a)
{
    Envelope req = PB_ENVELOPE_INIT, *reply = NULL;
    ServiceRollback rb = PB_SERVICE_ROLLBACK_INIT;
    client_t *c = cli_connect(a);
    int status;

    if (!c)
        return CLI_ERROR;
    rb.service = a->argv[0];
    req.msg_case = MSG_SERVICE_ROLLBACK;
    req.service_rollback = &rb;
    status = cli_request(c, &req, MSG_SERVICE_REPLY, &reply);
    if (status == 0 && !reply->service_reply->service)
        status = cli_error(CLI_ERROR, "the controller sent no service");
    if (status == 0) {
        printf("%s\nrollback: manually requested rollback\n", a->argv[0]);
        fflush(stdout);
        status = cli_follow(c, reply->service_reply->service, PROGRESS_ROLLBACK, a);
    }
    wire_free(reply);
    client_close(c);
    return status;
}

int service_rm(cli_args_t *a)
{
    client_t *c = cli_connect(a);
    int status = CLI_OK;

    if (!c)
        return CLI_ERROR;
    for (int i = 0; i < a->argc && status != CLI_INTERRUPTED; i++) {
        Envelope req = PB_ENVELOPE_INIT, *reply = NULL;
        ServiceRemove rm = PB_SERVICE_REMOVE_INIT;
        int rc;
        rm.service = a->argv[i];
        req.msg_case = MSG_SERVICE_REMOVE;
        req.service_remove = &rm;
        rc = cli_request(c, &req, MSG_OK, &reply);
        if (rc)
            status = rc;
        else
            printf("%s\n", a->argv[i]);
        wire_free(reply);
    }
    client_close(c);
    return status;
}

/* --------------------------------------------------------------- logs */

typedef struct service_logs_ctx {
    size_t width;  /* of the widest task name so far */
} service_logs_ctx_t;

/* "web.1.<task id>" with the task id cut to 12 characters. */
static void service_log_name(const char *name, char *out, size_t len)
{
    const char *dot = strrchr(name, '.');

    if (dot && strlen(dot + 1) > FMT_ID_LEN)
        snprintf(out, len, "%.*s%.*s", (int)(dot + 1 - name), name, FMT_ID_LEN, dot + 1);
    else
        snprintf(out, len, "%s", name);
}

static int service_logs_data(void *arg, const Envelope *env)
{
    service_logs_ctx_t *ctx = arg;
    const LogsData *d = env->logs_data;
    FILE *out;
    const char *p, *end;
    char name[160];
    size_t w;

    if (env->msg_case != MSG_LOGS_DATA)
        return 0;
    out = d->stderr ? stderr : stdout;
    p = (const char *)d->data.data;
    end = p + d->data.len;
    service_log_name(d->task_name, name, sizeof(name));
    w = strlen(name);
    if (w > ctx->width)
        ctx->width = w;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        fprintf(out, "%-*s    | %.*s\n", (int)ctx->width, parse_one_line(name), (int)n, p);
        p += n + (nl ? 1 : 0);
    }
    fflush(out);
    return 0;
}

int service_logs(cli_args_t *a)
{
    Envelope req = PB_ENVELOPE_INIT;
    LogsRequest lr = PB_LOGS_REQUEST_INIT;
    service_logs_ctx_t ctx = { 0 };
    client_t *c;
    char err[512];
    int rc;

    if (a->tail == 0)
        return cli_error(CLI_USAGE, "invalid value for --tail: \"0\" (at least 1, or all)");
    if (!(c = cli_connect(a)))
        return CLI_ERROR;
    lr.service = a->argv[0];
    lr.follow = a->follow;
    lr.tail = a->tail < 0 ? 0 : (uint32_t)a->tail;
    req.msg_case = MSG_LOGS_REQUEST;
    req.logs_request = &lr;
    rc = client_stream(c, &req, MSG_LOGS_CLOSE, service_logs_data, &ctx, err, sizeof(err));
    client_close(c);
    if (rc == -EINTR)
        return CLI_OK; /* Ctrl-C is how a follow ends */
    if (rc)
        return cli_error(CLI_ERROR, "%s", err);
    return CLI_OK;
}
