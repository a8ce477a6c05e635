/* client: see client.h.
 *
 * One loop, one conn at a time, one timer for timeouts and sleeps, one
 * SIGINT watcher. A wait is "run the loop once, then look": client_run()
 * returns when its condition holds, the timer fired, SIGINT came, or the
 * conn closed. With several controllers (or once one redirected), a new
 * conn replaces one that a Redirect, a close or a silent controller ended,
 * and the request goes again when that cannot apply it twice.
 */
#include "client.h"
#include "conn.h"
#include "errors.h"
#include "parse.h"
#include "pbutil.h"
#include "wire.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define CLIENT_MAX_HOSTS 16

struct client {
    uv_loop_t loop;
    uv_timer_t timer;
    uv_signal_t sigint;
    conn_t *conn;
    char host[WIRE_HOSTPORT_MAX];       /* the controller of conn */
    char hosts[CLIENT_MAX_HOSTS][WIRE_HOSTPORT_MAX];
    size_t n_hosts;
    size_t next_host;                   /* where the next round of attempts starts */
    char *token;
    int ha;             /* several controllers, or one redirected: find the leader again */
    char redirect[WIRE_HOSTPORT_MAX];   /* the leader the last Redirect named */
    int connect_status; /* 1 connected, 0 waiting, < 0 failed */
    int closed;
    int close_err;
    int interrupted;
    int timed_out;
    uint64_t next_id;
    uint64_t wait_id;   /* the request whose reply we wait for */
    Envelope *reply;    /* its reply, or the end of its stream */
    int (*on_data)(void *arg, const Envelope *env);
    int end_case;       /* the message that ends the stream */
    void *data_arg;
    int data_rc;
};

/* Inside this file: the reply was a Redirect (c->redirect names the leader). */
#define CLIENT_EREDIRECT (-2001)

static const struct {
    ErrorCode code;
    int err;
} client_codes[] = {
    { ERR_INVALID, SKIFF_EINVAL },     { ERR_NOT_FOUND, SKIFF_ENOTFOUND },
    { ERR_EXISTS, SKIFF_EEXISTS },     { ERR_AUTH, SKIFF_EAUTH },
    { ERR_CONFLICT, SKIFF_ECONFLICT }, { ERR_LIMIT, SKIFF_ELIMIT },
    { ERR_PROTOCOL, SKIFF_EPROTO },    { ERR_UNAVAILABLE, SKIFF_EUNAVAILABLE },
};

static int client_code(ErrorCode code)
{
    for (size_t i = 0; i < sizeof(client_codes) / sizeof(client_codes[0]); i++)
        if (client_codes[i].code == code)
            return client_codes[i].err;
    return SKIFF_EPROTO;
}

static const char *client_strerror(int code)
{
    return code > -1000 ? uv_strerror(code) : skiff_strerror(code);
}

/* ------------------------------------------------------------ callbacks */

static int client_on_message(conn_t *conn, Envelope *env)
{
    client_t *c = conn_data(conn);

    /* An error with id 0 is about the connection (too many connections):
     * the answer to whatever we wait for. */
    int conn_error = env->id == 0 && env->msg_case == MSG_ERROR;

    if (!c->wait_id || (env->id != c->wait_id && !conn_error)) {
        wire_free(env); /* a late reply to a request we gave up on, or a push */
        return 0;
    }
    if (c->on_data && env->msg_case != MSG_ERROR && (int)env->msg_case != c->end_case) {
        if (c->data_rc == 0)
            c->data_rc = c->on_data(c->data_arg, env);
        wire_free(env);
        return 0;
    }
    if (c->reply)
        wire_free(c->reply);
    c->reply = env;
    return 0;
}

static void client_on_connect(conn_t *conn, int status)
{
    client_t *c = conn_data(conn);

    c->connect_status = status == 0 ? 1 : status;
}

static void client_on_close(conn_t *conn, int err)
{
    client_t *c = conn_data(conn);

    c->closed = 1;
    c->close_err = err;
    c->conn = NULL;
    if (c->connect_status == 0)
        c->connect_status = err ? err : SKIFF_ECLOSED;
}

static const conn_ops_t client_ops = {
    .on_message = client_on_message,
    .on_connect = client_on_connect,
    .on_close = client_on_close,
};

static void client_on_timer(uv_timer_t *t)
{
    client_t *c = t->data;

    c->timed_out = 1;
}

static void client_on_sigint(uv_signal_t *s, int signum)
{
    client_t *c = s->data;

    c->interrupted = 1;
}

/* ---------------------------------------------------------------- waits */

enum client_until { UNTIL_CONNECTED, UNTIL_REPLY, UNTIL_TIMER };

static int client_done(const client_t *c, enum client_until until)
{
    switch (until) {
    case UNTIL_CONNECTED: return c->connect_status != 0;
    case UNTIL_REPLY: return c->reply != NULL || c->data_rc != 0;
    case UNTIL_TIMER: return 0;
    }
    return 1;
}

/* Runs the loop until the condition holds (0), SIGINT (-EINTR), the timer
 * (SKIFF_ETIMEDOUT; with UNTIL_TIMER that is success: 0) or the connection
 * closed (SKIFF_ECLOSED). timeout_ms 0: none. */
static int client_run(client_t *c, enum client_until until, uint64_t timeout_ms)
{
    int rc = 0;

    c->timed_out = 0;
    if (timeout_ms)
        uv_timer_start(&c->timer, client_on_timer, timeout_ms, 0);
    for (;;) {
        if (client_done(c, until))
            break;
        if (c->interrupted) {
            rc = -EINTR;
            break;
        }
        if (c->timed_out) {
            rc = until == UNTIL_TIMER ? 0 : SKIFF_ETIMEDOUT;
            break;
        }
        if (c->closed && until != UNTIL_CONNECTED) {
            rc = SKIFF_ECLOSED;
            break;
        }
        uv_run(&c->loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&c->timer);
    return rc;
}

static int client_fail(char *err, size_t len, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int client_fail(char *err, size_t len, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
    parse_one_line(err);
    return code;
}

/* The message for a wait that ended without its reply. */
static int client_wait_error(client_t *c, int rc, char *err, size_t len)
{
    if (rc == -EINTR)
        return client_fail(err, len, rc, "interrupted");
    if (rc == SKIFF_ETIMEDOUT)
        return client_fail(err, len, rc, "the controller at %s did not answer within %ds",
                           c->host, CLIENT_REQUEST_TIMEOUT_MS / 1000);
    if (c->close_err && c->close_err != SKIFF_ECLOSED)
        return client_fail(err, len, SKIFF_ECLOSED,
                           "lost the connection to the controller at %s: %s", c->host,
                           client_strerror(c->close_err));
    return client_fail(err, len, SKIFF_ECLOSED, "the controller at %s closed the connection",
                       c->host);
}

/* Takes the reply for the current request and checks its kind. */
static int client_take_reply(client_t *c, int reply_case, Envelope **reply, char *err,
                             size_t len)
{
    Envelope *env = c->reply;
    int rc;

    c->reply = NULL;
    if (env->msg_case == MSG_REDIRECT) {
        snprintf(c->redirect, sizeof(c->redirect), "%s", env->redirect->leader);
        rc = client_fail(err, len, CLIENT_EREDIRECT, "the controller at %s does not lead (%s)",
                         c->host, *env->redirect->leader ? env->redirect->leader
                                                         : "no controller leads now");
        wire_free(env);
        return rc;
    }
    if (env->msg_case == MSG_ERROR) {
        const Error *e = env->error;
        rc = client_fail(err, len, client_code(e->code), "%s",
                         *e->message ? e->message : "the controller refused the request");
        wire_free(env);
        return rc;
    }
    if ((int)env->msg_case != reply_case) {
        rc = client_fail(err, len, SKIFF_EPROTO, "unexpected %s from the controller",
                         wire_msg_name(env->msg_case));
        wire_free(env);
        return rc;
    }
    *reply = env;
    return 0;
}

static int client_send(client_t *c, Envelope *req, char *err, size_t len)
{
    int rc;

    if (c->closed || !c->conn)
        return client_wait_error(c, SKIFF_ECLOSED, err, len);
    req->id = ++c->next_id;
    c->wait_id = req->id;
    if (c->reply) {
        wire_free(c->reply);
        c->reply = NULL;
    }
    rc = conn_send(c->conn, req);
    if (rc == SKIFF_ELIMIT)
        return client_fail(err, len, rc, "the request is too large to send");
    if (rc)
        return client_fail(err, len, rc, "cannot send to the controller at %s: %s", c->host,
                           client_strerror(rc));
    return 0;
}

static int client_reach(client_t *c, uint64_t deadline, char *err, size_t len);

/* Requests that may go twice: reads, and those that set a value. */
static int client_idempotent(int msg_case)
{
    switch (msg_case) {
    case MSG_SERVICE_GET: case MSG_SERVICE_LIST: case MSG_TASK_LIST: case MSG_NODE_LIST:
    case MSG_NODE_GET: case MSG_CONTROLLER_LIST: case MSG_SERVICE_SCALE: case MSG_NODE_UPDATE:
        return 1;
    default:
        return 0;
    }
}

static uint64_t client_now_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* One attempt on the conn there is. *sent: the request left. */
static int client_call_once(client_t *c, Envelope *req, int reply_case, Envelope **reply,
                            char *err, size_t errlen, int *sent)
{
    uint64_t timeout = c->ha && client_idempotent(req->msg_case) ? CLIENT_HA_REQUEST_TIMEOUT_MS
                                                                  : CLIENT_REQUEST_TIMEOUT_MS;
    int rc;

    *sent = 0;
    if ((rc = client_send(c, req, err, errlen)))
        return rc;
    *sent = 1;
    rc = client_run(c, UNTIL_REPLY, timeout);
    if (rc)
        return client_wait_error(c, rc, err, errlen);
    return client_take_reply(c, reply_case, reply, err, errlen);
}

int client_call(client_t *c, Envelope *req, int reply_case, Envelope **reply, char *err,
                size_t errlen)
{
    uint64_t deadline = client_now_ms() + CLIENT_FAILOVER_MS;
    int rc, sent;

    *reply = NULL;
    for (int attempt = 0;; attempt++) {
        if (attempt > 1 && client_run(c, UNTIL_TIMER, CLIENT_RETRY_PAUSE_MS) == -EINTR)
            return client_fail(err, errlen, -EINTR, "interrupted");
        rc = client_call_once(c, req, reply_case, reply, err, errlen, &sent);
        if (rc == CLIENT_EREDIRECT) {
            c->ha = 1; /* a follower answered: find the leader (not applied there) */
        } else if (!c->ha || (rc != SKIFF_ECLOSED && rc != SKIFF_ETIMEDOUT) ||
                   (sent && !client_idempotent(req->msg_case))) {
            return rc;
        }
        /* The first time at once: a follower knows the leader; then with
         * a pause (an election is under way, it may name a dead one). */
        if (client_now_ms() >= deadline || client_reach(c, deadline, err, errlen)) {
            if (rc == CLIENT_EREDIRECT && !*err)
                client_fail(err, errlen, SKIFF_EUNAVAILABLE, "no controller leads");
            return rc == CLIENT_EREDIRECT ? SKIFF_EUNAVAILABLE : rc;
        }
    }
}

int client_task_list(client_t *c, TaskList *filter, Envelope **reply, char *err,
                     size_t errlen)
{
    Envelope req = PB_ENVELOPE_INIT, *page = NULL;
    uint32_t next;
    int rc;

    *reply = NULL;
    req.msg_case = MSG_TASK_LIST;
    req.task_list = filter;
    filter->offset = 0;
    for (;;) {
        if ((rc = client_call(c, &req, MSG_TASK_LIST_REPLY, &page, err, errlen)))
            break;
        next = page->task_list_reply->next_offset;
        if (!*reply) {
            *reply = page;
        } else {
            rc = pb_tasks_append((*reply)->task_list_reply, page->task_list_reply);
            wire_free(page);
            if (rc) {
                rc = client_fail(err, errlen, rc, "out of memory");
                break;
            }
        }
        if (next == 0)
            break;
        if (next <= filter->offset) {
            rc = client_fail(err, errlen, SKIFF_EPROTO, "the controller sent a page out of order");
            break;
        }
        filter->offset = next;
    }
    if (rc) {
        wire_free(*reply);
        *reply = NULL;
    }
    return rc;
}

int client_stream(client_t *c, Envelope *req, int end_case,
                  int (*on_data)(void *arg, const Envelope *env), void *arg, char *err,
                  size_t errlen)
{
    Envelope *end = NULL;
    int rc;

    c->on_data = on_data;
    c->end_case = end_case;
    c->data_arg = arg;
    c->data_rc = 0;
    if ((rc = client_send(c, req, err, errlen)))
        goto out_reset;
    rc = client_run(c, UNTIL_REPLY, 0);
    if (rc == 0 && c->reply && c->reply->msg_case == MSG_REDIRECT) {
        /* A follower: the stream goes to the leader, from its start. */
        wire_free(c->reply);
        c->reply = NULL;
        c->ha = 1;
        if ((rc = client_reach(c, client_now_ms() + CLIENT_FAILOVER_MS, err, errlen)) ||
            (rc = client_send(c, req, err, errlen)))
            goto out_reset;
        rc = client_run(c, UNTIL_REPLY, 0);
    }
    if (rc) {
        rc = client_wait_error(c, rc, err, errlen);
        goto out_reset;
    }
    if (c->data_rc) {
        rc = client_fail(err, errlen, c->data_rc, "%s", skiff_strerror(c->data_rc));
        goto out_reset;
    }
    rc = client_take_reply(c, end_case, &end, err, errlen);
    if (rc == 0 && end_case == MSG_LOGS_CLOSE && *end->logs_close->message)
        rc = client_fail(err, errlen, SKIFF_EUNAVAILABLE, "%s", end->logs_close->message);
    wire_free(end);
out_reset:
    c->on_data = NULL;
    c->wait_id = 0;
    return rc;
}

int client_sleep(client_t *c, uint64_t ms, char *err, size_t errlen)
{
    int rc = client_run(c, UNTIL_TIMER, ms);

    /* With several controllers, the next call finds the leader again. */
    if (rc == 0 && c->closed && !c->ha)
        rc = SKIFF_ECLOSED;
    if (rc)
        return client_wait_error(c, rc, err, errlen);
    return 0;
}

/* ------------------------------------------------------ connect, close */

static int client_hello(client_t *c, const char *token, char *err, size_t len)
{
    int sent;
    Envelope req = PB_ENVELOPE_INIT, *reply = NULL;
    Hello hello = PB_HELLO_INIT;
    int rc;

    hello.role = ROLE_CLIENT;
    hello.token = (char *)token;
    hello.version = (char *)SKIFF_VERSION;
    req.msg_case = MSG_HELLO;
    req.hello = &hello;
    rc = client_call_once(c, &req, MSG_HELLO_REPLY, &reply, err, len, &sent);
    if (rc == SKIFF_EAUTH) {
        size_t n = strlen(err);
        snprintf(err + n, len - n, " (check --token-file, SKIFF_TOKEN_FILE or SKIFF_TOKEN)");
    } else if (rc == SKIFF_ECLOSED) {
        rc = client_fail(err, len, rc,
                         "the controller at %s closed the connection during the handshake",
                         c->host);
    }
    wire_free(reply);
    return rc;
}

/* Closes the conn there is, and waits until it is gone. */
static void client_drop(client_t *c)
{
    if (c->conn)
        conn_close(c->conn, 0);
    while (c->conn)
        uv_run(&c->loop, UV_RUN_ONCE);
    if (c->reply) {
        wire_free(c->reply);
        c->reply = NULL;
    }
}

/* Connects to host and says hello. */
static int client_open(client_t *c, const char *host, char *err, size_t errlen)
{
    conn_limits_t limits = { 0 };
    uint64_t wait = c->ha ? CLIENT_HA_CONNECT_TIMEOUT_MS : CLIENT_CONNECT_TIMEOUT_MS;
    int rc;

    client_drop(c);
    snprintf(c->host, sizeof(c->host), "%s", host);
    c->connect_status = 0;
    c->closed = 0;
    c->close_err = 0;
    c->conn = conn_create(&c->loop, &client_ops, &limits, c);
    if (!c->conn)
        return client_fail(err, errlen, -ENOMEM, "out of memory");
    rc = conn_connect(c->conn, host);
    if (rc) {
        conn_close(c->conn, 0);
        client_drop(c);
        return client_fail(err, errlen, rc, "invalid controller address %s (ADDRESS:PORT)", host);
    }
    rc = client_run(c, UNTIL_CONNECTED, wait);
    if (rc == 0 && c->connect_status < 0)
        rc = c->connect_status;
    if (rc == -EINTR)
        return client_fail(err, errlen, rc, "interrupted");
    if (rc == SKIFF_ETIMEDOUT)
        return client_fail(err, errlen, rc, "cannot connect to the controller at %s: timed out "
                           "after %ds", host, (int)(wait / 1000));
    if (rc)
        return client_fail(err, errlen, rc, "cannot connect to the controller at %s: %s%s", host,
                           client_strerror(rc),
                           rc == UV_ECONNREFUSED ? " (is skiff-controller running?)" : "");
    return client_hello(c, c->token, err, errlen);
}

/* Finds a controller that takes a hello: the leader a Redirect named
 * first, then the hosts in turn, round after round until the deadline.
 * Returns 0, or the last attempt's code (-EINTR at once). */
static int client_reach(client_t *c, uint64_t deadline, char *err, size_t len)
{
    char first[WIRE_HOSTPORT_MAX];
    int rc = SKIFF_EUNAVAILABLE;

    snprintf(first, sizeof(first), "%s", c->redirect);
    c->redirect[0] = '\0';
    if (*first) {
        rc = client_open(c, first, err, len);
        if (rc == 0 || rc == -EINTR || rc == SKIFF_EAUTH)
            return rc;
    }
    for (;;) {
        for (size_t k = 0; k < c->n_hosts; k++) {
            size_t i = (c->next_host + k) % c->n_hosts;
            rc = client_open(c, c->hosts[i], err, len);
            if (rc == 0 || rc == -EINTR || rc == SKIFF_EAUTH) {
                c->next_host = i;
                return rc;
            }
        }
        if (client_now_ms() + CLIENT_RETRY_PAUSE_MS >= deadline)
            return rc;
        /* Nobody took it: an election may be under way. */
        client_drop(c);
        if ((rc = client_run(c, UNTIL_TIMER, CLIENT_RETRY_PAUSE_MS)))
            return client_fail(err, len, rc, "interrupted");
    }
}

client_t *client_connect(const char *hosts, const char *token, char *err, size_t errlen)
{
    client_t *c = calloc(1, sizeof(*c));

    if (!c) {
        client_fail(err, errlen, -ENOMEM, "out of memory");
        return NULL;
    }
    if (wire_parse_hostlist(hosts, 0, c->hosts, CLIENT_MAX_HOSTS, &c->n_hosts)) {
        client_fail(err, errlen, SKIFF_EINVAL, "invalid controller address %s (ADDRESS:PORT)",
                    hosts);
        free(c);
        return NULL;
    }
    c->ha = c->n_hosts > 1;
    if (!(c->token = strdup(token)) || uv_loop_init(&c->loop)) {
        client_fail(err, errlen, -ENOMEM, "cannot create an event loop");
        free(c->token);
        free(c);
        return NULL;
    }
    uv_timer_init(&c->loop, &c->timer);
    c->timer.data = c;
    uv_signal_init(&c->loop, &c->sigint);
    c->sigint.data = c;
    uv_signal_start(&c->sigint, client_on_sigint, SIGINT);
    uv_unref((uv_handle_t *)&c->sigint);
    if (client_reach(c, client_now_ms() + (c->ha ? CLIENT_FAILOVER_MS : 0), err, errlen)) {
        client_close(c);
        return NULL;
    }
    return c;
}

void client_close(client_t *c)
{
    if (!c)
        return;
    if (c->conn)
        conn_close(c->conn, 0);
    uv_close((uv_handle_t *)&c->timer, NULL);
    uv_close((uv_handle_t *)&c->sigint, NULL);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    wire_free(c->reply);
    uv_loop_close(&c->loop);
    if (c->token) {
        memset(c->token, 0, strlen(c->token));
        free(c->token);
    }
    free(c);
}
