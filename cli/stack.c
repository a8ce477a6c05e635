/* stack: skiff stack deploy | ls | services | ps | rm.
 *
 * A stack is the services whose spec.stack names it. deploy reads the
 * Compose file (compose.c), then in three steps changes only what changed:
 * it reads every service of the file and of the stack first (and stops,
 * having changed nothing, if a name belongs to a service outside the
 * stack); then creates what is missing, scales what differs only in
 * replicas, updates what differs otherwise, and (with --prune) removes what
 * the file no longer has; then follows the services it changed.
 *
 * The stack's own secrets and configs (Secret.stack = STACK) are created in
 * step 2 before the services; external ones must exist in step 1. One that
 * exists already is kept when it is the stack's: a config only if its data
 * is the file's, since configs are immutable; a secret's value cannot be
 * read back, so a changed secret file is not noticed: as in Swarm, a new
 * value needs a new name (secrets.KEY.name) and the services move to it.
 * stack rm removes the stack's own secrets and configs after its services,
 * never external ones.
 */
#include "cli.h"
#include "compose.h"
#include "errors.h"
#include "pbutil.h"
#include "secret.h"
#include "spec.h"
#include "wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum stack_action { STACK_UNCHANGED, STACK_CREATE, STACK_SCALE, STACK_UPDATE, STACK_RESUME };

typedef struct stack_item {
    ServiceSpec *spec;      /* from the file (owned by the compose_t) */
    Envelope *current;      /* ServiceReply, or NULL when it does not exist */
    enum stack_action action;
    Envelope *result;       /* the reply to what was done */
    enum progress_op op;
} stack_item_t;

#define STACK_SECRET_RM_ATTEMPTS 20
#define STACK_SECRET_RM_PAUSE_MS 250

/* ServiceList{stack}. */
static int stack_list(client_t *c, const char *stack, Envelope **reply)
{
    Envelope req = PB_ENVELOPE_INIT;
    ServiceList list = PB_SERVICE_LIST_INIT;

    list.stack = (char *)stack;
    req.msg_case = MSG_SERVICE_LIST;
    req.service_list = &list;
    return cli_request(c, &req, MSG_SERVICE_LIST_REPLY, reply);
}

/* The ports a spec listens on (published and exposed): one namespace on
 * every node, as the controller checks them. */
static size_t stack_ports(const ServiceSpec *s, size_t i)
{
    return i < s->n_ports ? s->ports[i]->published : s->expose[i - s->n_ports];
}

/* Refuses, before anything changes, a port that another service of the
 * file or a service outside it already uses; the controller would refuse
 * it at that service, after creating the ones before. */
static int stack_check_ports(client_t *c, const compose_t *cf)
{
    Envelope *all = NULL;
    int status = stack_list(c, "", &all);

    for (size_t i = 0; status == 0 && i < cf->n_services; i++) {
        const ServiceSpec *s = cf->services[i];
        for (size_t k = 0; status == 0 && k < s->n_ports + s->n_expose; k++) {
            size_t port = stack_ports(s, k);
            for (size_t j = 0; status == 0 && j < i; j++) {
                const ServiceSpec *o = cf->services[j];
                for (size_t m = 0; m < o->n_ports + o->n_expose; m++)
                    if (stack_ports(o, m) == port)
                        status = cli_error(CLI_ERROR, "services %s and %s both use port %zu; "
                                           "nothing was deployed", o->name, s->name, port);
            }
            for (size_t j = 0; status == 0 && j < all->service_list_reply->n_services; j++) {
                const ServiceSpec *o = all->service_list_reply->services[j]->spec;
                int ours = 0;
                if (!o)
                    continue;
                for (size_t m = 0; m < cf->n_services; m++)
                    ours |= strcmp(cf->services[m]->name, o->name) == 0;
                for (size_t m = 0; !ours && m < o->n_ports + o->n_expose; m++)
                    if (stack_ports(o, m) == port)
                        status = cli_error(CLI_ERROR, "%s: port %zu is already used by service "
                                           "%s; nothing was deployed", s->name, port, o->name);
            }
        }
    }
    wire_free(all);
    return status;
}

/* ------------------------------------------------- secrets and configs */

/* Step 1 for the file's secrets and configs: sets create[i] for those to
 * create; an error when an external one is missing, or a name is taken
 * outside the stack, or a config of the stack has other data. */
static int stack_plan_secrets(client_t *c, const char *stack, const compose_t *cf, int *create)
{
    for (size_t i = 0; i < cf->n_secrets; i++) {
        const compose_secret_t *cs = &cf->secrets[i];
        const Secret *want = cs->secret, *have;
        const char *what = spec_secret_kind_name(want->kind);
        Envelope *reply = NULL;
        char err[512];
        int rc = secret_get(c, want->kind, want->name, &reply, err, sizeof(err));

        create[i] = 0;
        if (rc == SKIFF_ENOTFOUND) {
            if (cs->external)
                return cli_error(CLI_ERROR, "%s %s is external and does not exist (%ss.%s); "
                                 "nothing was deployed", what, want->name, what, cs->key);
            create[i] = 1;
            continue;
        }
        if (rc)
            return cli_error(cli_status(rc), "%s", err);
        have = reply->secret_reply->secret;
        if (!cs->external && have && strcmp(have->stack, stack) != 0)
            rc = cli_error(CLI_ERROR, "%s %s exists and is not part of stack %s; nothing was "
                           "deployed", what, want->name, stack);
        else if (!cs->external && have && want->kind == SECRET_KIND_CONFIG &&
                 (have->data.len != want->data.len ||
                  (want->data.len && memcmp(have->data.data, want->data.data,
                                            want->data.len) != 0)))
            rc = cli_error(CLI_ERROR, "config %s exists with other data: configs cannot "
                           "change, give the new one another name (configs.%s.name); nothing "
                           "was deployed", want->name, cs->key);
        wire_free(reply);
        if (rc)
            return rc;
    }
    return 0;
}

/* Step 2: creates the ones step 1 found missing. */
static int stack_create_secrets(client_t *c, const char *stack, const compose_t *cf,
                                const int *create)
{
    for (size_t i = 0; i < cf->n_secrets; i++) {
        Envelope req = PB_ENVELOPE_INIT, *reply = NULL;
        SecretCreate sc = PB_SECRET_CREATE_INIT;
        Secret *sec = cf->secrets[i].secret;
        const char *what = spec_secret_kind_name(sec->kind);
        char err[512];
        int rc;

        if (!create[i])
            continue;
        printf("Creating %s %s\n", what, sec->name);
        fflush(stdout);
        sc.secret = sec;
        req.msg_case = MSG_SECRET_CREATE;
        req.secret_create = &sc;
        rc = client_call(c, &req, MSG_SECRET_REPLY, &reply, err, sizeof(err));
        wire_free(reply);
        reply = NULL;
        if (rc == SKIFF_EEXISTS) {
            /* made meanwhile (another deploy of the stack): fine if it is ours */
            rc = secret_get(c, sec->kind, sec->name, &reply, err, sizeof(err));
            if (rc == 0 && (!reply->secret_reply->secret ||
                            strcmp(reply->secret_reply->secret->stack, stack) != 0)) {
                snprintf(err, sizeof(err), "%s %s exists and is not part of stack %s", what,
                         sec->name, stack);
                rc = SKIFF_EEXISTS;
            }
            wire_free(reply);
        }
        if (rc)
            return cli_error(cli_status(rc), "%s", err);
    }
    return 0;
}

/* The ids the controller gave the references of the service as it is, so
 * that the file's spec compares equal when nothing changed. */
static void stack_copy_ref_ids(SecretRef **to, size_t n, SecretRef *const *from, size_t m)
{
    for (size_t i = 0; i < n; i++) {
        if (*to[i]->id)
            continue;
        for (size_t j = 0; j < m; j++) {
            if (strcmp(to[i]->name, from[j]->name) == 0) {
                pb_set_str(&to[i]->id, from[j]->id); /* on -ENOMEM: an update, no harm */
                break;
            }
        }
    }
}

/* Removes the stack's own secrets or configs; *found counts them. A secret
 * is in use until the controller has removed the services that use it:
 * ERR_CONFLICT is tried again for a while. */
static int stack_rm_secrets(client_t *c, const char *stack, SecretKind kind, size_t *found)
{
    Envelope req = PB_ENVELOPE_INIT, *list = NULL;
    SecretList sl = PB_SECRET_LIST_INIT;
    const char *what = spec_secret_kind_name(kind);
    int status;

    sl.kind = kind;
    sl.stack = (char *)stack;
    req.msg_case = MSG_SECRET_LIST;
    req.secret_list = &sl;
    if ((status = cli_request(c, &req, MSG_SECRET_LIST_REPLY, &list)))
        return status;
    for (size_t i = 0; i < list->secret_list_reply->n_secrets && status != CLI_INTERRUPTED;
         i++) {
        const Secret *sec = list->secret_list_reply->secrets[i];
        SecretRemove rm = PB_SECRET_REMOVE_INIT;
        char err[512] = "interrupted";
        int rc;
        if (strcmp(sec->stack, stack) != 0)
            continue; /* never another's, nor an external one */
        (*found)++;
        printf("Removing %s %s\n", what, sec->name);
        fflush(stdout);
        rm.kind = kind;
        rm.ref = sec->id;
        req.msg_case = MSG_SECRET_REMOVE;
        req.secret_remove = &rm;
        for (int attempt = 1;; attempt++) {
            Envelope *reply = NULL;
            rc = client_call(c, &req, MSG_OK, &reply, err, sizeof(err));
            wire_free(reply);
            if (rc != SKIFF_ECONFLICT || attempt == STACK_SECRET_RM_ATTEMPTS)
                break;
            if ((rc = client_sleep(c, STACK_SECRET_RM_PAUSE_MS, err, sizeof(err))))
                break;
        }
        if (rc)
            status = cli_error(cli_status(rc), "%s", err);
    }
    wire_free(list);
    return status;
}

/* What to do with one service of the file. Returns 0 or an exit status. */
/* 1 when the file changes only the replica count: a scale. (A change of
 * the autoscaling policy is an update of the spec, which rolls nothing.) */
static int stack_only_replicas(const ServiceSpec *a, const ServiceSpec *b)
{
    ServiceSpec ca = *a, cb = *b;

    ca.replicas = cb.replicas = 0;
    return pb_equal(&ca, &cb);
}

static int stack_plan(client_t *c, const char *stack, stack_item_t *it)
{
    Envelope req = PB_ENVELOPE_INIT;
    ServiceGet get = PB_SERVICE_GET_INIT;
    const Service *cur;
    char err[512];
    int rc;

    get.service = it->spec->name;
    req.msg_case = MSG_SERVICE_GET;
    req.service_get = &get;
    rc = client_call(c, &req, MSG_SERVICE_REPLY, &it->current, err, sizeof(err));
    if (rc == SKIFF_ENOTFOUND) {
        it->action = STACK_CREATE;
        it->op = PROGRESS_CREATE;
        return 0;
    }
    if (rc)
        return cli_error(cli_status(rc), "%s", err);
    cur = it->current->service_reply->service;
    if (!cur || !cur->spec)
        return cli_error(CLI_ERROR, "the controller sent a service without a spec");
    if (strcmp(cur->spec->stack, stack) != 0)
        return cli_error(CLI_ERROR, "service %s exists and is not part of stack %s; nothing "
                         "was deployed", it->spec->name, stack);
    stack_copy_ref_ids(it->spec->secrets, it->spec->n_secrets, cur->spec->secrets,
                       cur->spec->n_secrets);
    stack_copy_ref_ids(it->spec->configs, it->spec->n_configs, cur->spec->configs,
                       cur->spec->n_configs);
    /* force_update is not the file's business: keep the service's */
    it->spec->force_update = cur->spec->force_update;
    /* nor, once the autoscaler runs it, the replica count (within the
     * file's range) */
    if (it->spec->autoscale && cur->spec->autoscale) {
        uint32_t n = cur->spec->replicas;
        it->spec->replicas = n < it->spec->autoscale->min   ? it->spec->autoscale->min
                             : n > it->spec->autoscale->max ? it->spec->autoscale->max
                                                            : n;
    }
    if (pb_equal(it->spec, cur->spec)) {
        int paused = cur->update_status && (cur->update_status->state == UPDATE_PAUSED);
        it->action = paused ? STACK_RESUME : STACK_UNCHANGED;
        it->op = PROGRESS_UPDATE;
    } else if (stack_only_replicas(it->spec, cur->spec)) {
        it->action = STACK_SCALE;
        it->op = PROGRESS_SCALE;
    } else {
        it->action = STACK_UPDATE;
        it->op = PROGRESS_UPDATE;
    }
    return 0;
}

static int stack_apply(client_t *c, stack_item_t *it)
{
    Envelope req = PB_ENVELOPE_INIT;
    ServiceCreate create = PB_SERVICE_CREATE_INIT;
    ServiceUpdate up = PB_SERVICE_UPDATE_INIT;
    ServiceScale scale = PB_SERVICE_SCALE_INIT;
    const Service *cur = it->current ? it->current->service_reply->service : NULL;

    switch (it->action) {
    case STACK_UNCHANGED:
        printf("Service %s is up to date\n", it->spec->name);
        return 0;
    case STACK_CREATE:
        printf("Creating service %s\n", it->spec->name);
        create.spec = it->spec;
        req.msg_case = MSG_SERVICE_CREATE;
        req.service_create = &create;
        break;
    case STACK_SCALE:
        printf("Scaling service %s to %u\n", it->spec->name, it->spec->replicas);
        scale.service = cur->id;
        scale.replicas = it->spec->replicas;
        req.msg_case = MSG_SERVICE_SCALE;
        req.service_scale = &scale;
        break;
    case STACK_UPDATE:
    case STACK_RESUME:
        printf("%s service %s\n", it->action == STACK_UPDATE ? "Updating" : "Resuming",
               it->spec->name);
        up.service = cur->id;
        up.spec = it->spec;
        up.version = cur->version;
        req.msg_case = MSG_SERVICE_UPDATE;
        req.service_update = &up;
        break;
    }
    fflush(stdout);
    return cli_request(c, &req, MSG_SERVICE_REPLY, &it->result);
}

/* Removes the stack's services that are not among the file's. */
static int stack_prune(client_t *c, const char *stack, const compose_t *cf)
{
    Envelope *list = NULL;
    int status = stack_list(c, stack, &list);

    for (size_t i = 0; status == 0 && i < list->service_list_reply->n_services; i++) {
        const Service *s = list->service_list_reply->services[i];
        Envelope req = PB_ENVELOPE_INIT, *reply = NULL;
        ServiceRemove rm = PB_SERVICE_REMOVE_INIT;
        int keep = 0;
        if (!s->spec)
            continue;
        for (size_t k = 0; k < cf->n_services; k++)
            if (strcmp(cf->services[k]->name, s->spec->name) == 0)
                keep = 1;
        if (keep)
            continue;
        printf("Removing service %s\n", s->spec->name);
        fflush(stdout);
        rm.service = s->id;
        req.msg_case = MSG_SERVICE_REMOVE;
        req.service_remove = &rm;
        status = cli_request(c, &req, MSG_OK, &reply);
        wire_free(reply);
    }
    wire_free(list);
    return status;
}

int stack_deploy(cli_args_t *a)
{
    const char *stack = a->argv[0];
    compose_opts_t opts = { .stack = stack };
    compose_t *cf = NULL;
    stack_item_t *items = NULL;
    client_t *c = NULL;
    int *create = NULL;
    char err[600];
    int status = CLI_OK, rc;

    if (!spec_name_valid(stack))
        return cli_error(CLI_USAGE, "invalid stack name \"%.100s\" (letters, digits, '-' and "
                         "'_', starting with a letter or digit)", stack);
    rc = compose_load(a->compose_file, &opts, &cf, err, sizeof(err));
    if (rc)
        return cli_error(CLI_ERROR, "%s", err);
    for (size_t i = 0; i < cf->n_warnings; i++)
        fprintf(stderr, "skiff: warning: %s\n", cf->warnings[i]);
    if (!(items = calloc(cf->n_services, sizeof(*items))) ||
        !(create = calloc(cf->n_secrets + 1, sizeof(*create)))) {
        status = cli_error(CLI_ERROR, "out of memory");
        goto out_free;
    }
    if (!(c = cli_connect(a))) {
        status = CLI_ERROR;
        goto out_free;
    }
    /* 1. read everything; change nothing if anything is amiss */
    if ((status = stack_plan_secrets(c, stack, cf, create)))
        goto out_free;
    for (size_t i = 0; i < cf->n_services; i++) {
        items[i].spec = cf->services[i];
        if ((status = stack_plan(c, stack, &items[i])))
            goto out_free;
    }
    if ((status = stack_check_ports(c, cf)))
        goto out_free;
    /* 2. change what changed: secrets and configs first */
    status = stack_create_secrets(c, stack, cf, create);
    for (size_t i = 0; i < cf->n_services && status == CLI_OK; i++)
        status = stack_apply(c, &items[i]);
    if (status == CLI_OK && a->prune)
        status = stack_prune(c, stack, cf);
    if (status)
        goto out_free;
    /* 3. follow what changed */
    for (size_t i = 0; i < cf->n_services && status != CLI_INTERRUPTED; i++) {
        const Service *s = items[i].result ? items[i].result->service_reply->service : NULL;
        if (!s)
            continue;
        if (!a->detach && !a->quiet)
            printf("%s\n", items[i].spec->name);
        rc = cli_follow(c, s, items[i].op, a);
        if (rc)
            status = rc;
    }
out_free:
    for (size_t i = 0; items && i < cf->n_services; i++) {
        wire_free(items[i].current);
        wire_free(items[i].result);
    }
    free(items);
    free(create);
    client_close(c);
    compose_free(cf);
    return status;
}

int stack_ls(cli_args_t *a)
{
    fmt_opts_t o = cli_fmt_opts(a);
    Envelope *reply = NULL;
    client_t *c = cli_connect(a);
    int status;

    if (!c)
        return CLI_ERROR;
    status = stack_list(c, "", &reply);
    if (status == 0 && fmt_stacks(stdout, reply->service_list_reply->services,
                                  reply->service_list_reply->n_services, &o))
        status = cli_error(CLI_ERROR, "out of memory");
    wire_free(reply);
    client_close(c);
    return status;
}

int stack_services(cli_args_t *a)
{
    fmt_opts_t o = cli_fmt_opts(a);
    Envelope *reply = NULL;
    client_t *c = cli_connect(a);
    int status;

    if (!c)
        return CLI_ERROR;
    status = stack_list(c, a->argv[0], &reply);
    if (status == 0 && reply->service_list_reply->n_services == 0)
        status = cli_error(CLI_ERROR, "nothing found in stack: %s", a->argv[0]);
    if (status == 0 && fmt_services(stdout, reply->service_list_reply->services,
                                    reply->service_list_reply->n_services, &o))
        status = cli_error(CLI_ERROR, "out of memory");
    wire_free(reply);
    client_close(c);
    return status;
}

int stack_ps(cli_args_t *a)
{
    Envelope *reply = NULL, *list = NULL;
    TaskList tl = PB_TASK_LIST_INIT;
    fmt_opts_t o = cli_fmt_opts(a);
    client_t *c = cli_connect(a);
    int status;

    if (!c)
        return CLI_ERROR;
    tl.stack = a->argv[0];
    tl.all = 1;
    status = cli_task_list(c, &tl, &reply);
    if (status == 0 && reply->task_list_reply->n_tasks == 0) {
        status = stack_list(c, a->argv[0], &list);
        if (status == 0 && list->service_list_reply->n_services == 0)
            status = cli_error(CLI_ERROR, "nothing found in stack: %s", a->argv[0]);
    }
    if (status == 0 && fmt_tasks(stdout, reply->task_list_reply->tasks,
                                 reply->task_list_reply->n_tasks, &o))
        status = cli_error(CLI_ERROR, "out of memory");
    wire_free(list);
    wire_free(reply);
    client_close(c);
    return status;
}

int stack_rm(cli_args_t *a)
{
    client_t *c = cli_connect(a);
    int status = CLI_OK;

    if (!c)
        return CLI_ERROR;
    for (int i = 0; i < a->argc && status != CLI_INTERRUPTED; i++) {
        Envelope *list = NULL;
        int rc = stack_list(c, a->argv[i], &list);
        if (rc) {
            status = rc;
            continue;
        }
        size_t found = list->service_list_reply->n_services;
        for (size_t k = 0; k < list->service_list_reply->n_services; k++) {
            const Service *s = list->service_list_reply->services[k];
            Envelope req = PB_ENVELOPE_INIT, *reply = NULL;
            ServiceRemove rm = PB_SERVICE_REMOVE_INIT;
            printf("Removing service %s\n", s->spec ? s->spec->name : s->id);
            fflush(stdout);
            rm.service = s->id;
            req.msg_case = MSG_SERVICE_REMOVE;
            req.service_remove = &rm;
            rc = cli_request(c, &req, MSG_OK, &reply);
            if (rc)
                status = rc;
            wire_free(reply);
        }
        wire_free(list);
        /* then its own secrets and configs (the services no longer use them) */
        for (int kind = SECRET_KIND_SECRET; kind <= SECRET_KIND_CONFIG; kind++)
            if ((rc = stack_rm_secrets(c, a->argv[i], (SecretKind)kind, &found)))
                status = rc;
        if (found == 0)
            status = cli_error(CLI_ERROR, "nothing found in stack: %s", a->argv[i]);
    }
    client_close(c);
    return status;
}
