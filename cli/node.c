/* node: skiff node ls | inspect | update | rm. */
#include "cli.h"
#include "errors.h"
#include "pbutil.h"
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int node_ls(cli_args_t *a)
{
    Envelope req = PB_ENVELOPE_INIT, *reply = NULL;
    NodeList list = PB_NODE_LIST_INIT;
    fmt_opts_t o = cli_fmt_opts(a);
    client_t *c = cli_connect(a);
    int status;

    if (!c)
        return CLI_ERROR;
    req.msg_case = MSG_NODE_LIST;
    req.node_list = &list;
    status = cli_request(c, &req, MSG_NODE_LIST_REPLY, &reply);
    if (status == 0 && fmt_nodes(stdout, reply->node_list_reply->nodes,
                                 reply->node_list_reply->n_nodes, &o))
        status = cli_error(CLI_ERROR, "out of memory");
    wire_free(reply);
    client_close(c);
    return status;
}

int node_inspect(cli_args_t *a)
{
    Envelope **replies = calloc((size_t)a->argc, sizeof(*replies));
    Node **nodes = calloc((size_t)a->argc, sizeof(*nodes));
    int status = CLI_OK;
    size_t n = 0;
    client_t *c = NULL;

    if (!replies || !nodes) {
        status = cli_error(CLI_ERROR, "out of memory");
        goto out_free;
    }
    if (!(c = cli_connect(a))) {
        status = CLI_ERROR;
        goto out_free;
    }
    for (int i = 0; i < a->argc && status != CLI_INTERRUPTED; i++) {
        Envelope req = PB_ENVELOPE_INIT;
        NodeGet get = PB_NODE_GET_INIT;
        int rc;
        get.node = a->argv[i];
        req.msg_case = MSG_NODE_GET;
        req.node_get = &get;
        rc = cli_request(c, &req, MSG_NODE_REPLY, &replies[i]);
        if (rc) {
            status = rc;
            continue;
        }
        if (replies[i]->node_reply->node)
            nodes[n++] = replies[i]->node_reply->node;
    }
    if (fmt_json(stdout, (void *const *)nodes, n))
        status = cli_error(CLI_ERROR, "out of memory");
out_free:
    for (int i = 0; replies && i < a->argc; i++)
        wire_free(replies[i]);
    free(replies);
    free(nodes);
    client_close(c);
    return status;
}

/* Availability and labels in one NodeUpdate; the flags were checked by
 * cli_parse, so nothing here is refused before it is sent. */
int node_update(cli_args_t *a)
{
    Envelope req = PB_ENVELOPE_INIT, *reply = NULL;
    NodeUpdate up = PB_NODE_UPDATE_INIT;
    Label *labels = NULL, **add = NULL;
    char **keys = NULL;
    client_t *c = NULL;
    int status;

    if (a->n_label_add && (!(labels = calloc(a->n_label_add, sizeof(*labels))) ||
                           !(add = calloc(a->n_label_add, sizeof(*add))) ||
                           !(keys = calloc(a->n_label_add, sizeof(*keys))))) {
        status = cli_error(CLI_ERROR, "out of memory");
        goto out_free;
    }
    for (size_t i = 0; i < a->n_label_add; i++) {
        char *eq;
        if (!(keys[i] = strdup(a->label_add[i]))) {
            status = cli_error(CLI_ERROR, "out of memory");
            goto out_free;
        }
        labels[i] = (Label)PB_LABEL_INIT;
        eq = strchr(keys[i], '=');
        labels[i].key = keys[i];
        labels[i].value = eq ? eq + 1 : "";
        if (eq)
            *eq = '\0';
        add[i] = &labels[i];
    }
    if (!(c = cli_connect(a))) {
        status = CLI_ERROR;
        goto out_free;
    }
    up.node = a->argv[0];
    up.keep_availability = a->availability < 0;
    up.availability = a->availability < 0 ? AVAILABILITY_ACTIVE : (NodeAvailability)a->availability;
    up.n_label_add = a->n_label_add;
    up.label_add = add;
    up.n_label_rm = a->n_label_rm;
    up.label_rm = a->label_rm;
    req.msg_case = MSG_NODE_UPDATE;
    req.node_update = &up;
    status = cli_request(c, &req, MSG_NODE_REPLY, &reply);
    if (status == 0)
        printf("%s\n", reply->node_reply->node ? reply->node_reply->node->name : a->argv[0]);
    wire_free(reply);
out_free:
    for (size_t i = 0; keys && i < a->n_label_add; i++)
        free(keys[i]);
    free(keys);
    free(add);
    free(labels);
    client_close(c);
    return status;
}

int node_rm(cli_args_t *a)
{
    client_t *c = cli_connect(a);
    int status = CLI_OK;

    if (!c)
        return CLI_ERROR;
    for (int i = 0; i < a->argc && status != CLI_INTERRUPTED; i++) {
        Envelope req = PB_ENVELOPE_INIT, *reply = NULL;
        NodeRemove rm = PB_NODE_REMOVE_INIT;
        int rc;
        rm.node = a->argv[i];
        rm.force = a->force;
        req.msg_case = MSG_NODE_REMOVE;
        req.node_remove = &rm;
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
