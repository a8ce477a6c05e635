/* controller: skiff controller ls. Any controller answers it, leader or
 * not: each controller sharing the cluster's store, its role and the health
 * of its store, as the one asked sees them. */
#include "cli.h"
#include "errors.h"
#include "pbutil.h"
#include "wire.h"

#include <stdio.h>

int controller_ls(cli_args_t *a)
{
    Envelope req = PB_ENVELOPE_INIT, *reply = NULL;
    ControllerList list = PB_CONTROLLER_LIST_INIT;
    fmt_opts_t o = cli_fmt_opts(a);
    client_t *c = cli_connect(a);
    int status;

    if (!c)
        return CLI_ERROR;
    req.msg_case = MSG_CONTROLLER_LIST;
    req.controller_list = &list;
    status = cli_request(c, &req, MSG_CONTROLLER_LIST_REPLY, &reply);
    if (status == 0 && fmt_controllers(stdout, reply->controller_list_reply->controllers,
                                       reply->controller_list_reply->n_controllers, &o))
        status = cli_error(CLI_ERROR, "out of memory");
    wire_free(reply);
    client_close(c);
    return status;
}
