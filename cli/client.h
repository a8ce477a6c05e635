/* client: the CLI's connection to the controller, synchronous on top of
 * conn.h.
 *
 * The CLI does one thing at a time: connect and say Hello, send a request and
 * wait for its one reply, sleep between two polls, relay a stream of logs.
 * Each call runs the client's own uv loop until what it waits for arrives, a
 * timeout passes, the connection closes, or SIGINT arrives: while a client
 * lives it catches SIGINT, so that Ctrl-C ends a wait and the caller can say
 * what goes on without it. Errors come back as a negative code with one line
 * in err, ready to print after "skiff: ".
 */
#ifndef SKIFF_CLI_CLIENT_H
#define SKIFF_CLI_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "skiff_pb.h"

#define CLIENT_CONNECT_TIMEOUT_MS 5000
#define CLIENT_REQUEST_TIMEOUT_MS 30000
/* With several controllers: how long to look for the leader (an election
 * takes about the leader lease); an attempt on a controller that does not
 * answer gives up sooner, for the next one. */
#define CLIENT_FAILOVER_MS 20000
#define CLIENT_HA_CONNECT_TIMEOUT_MS 2000
#define CLIENT_HA_REQUEST_TIMEOUT_MS 5000
#define CLIENT_RETRY_PAUSE_MS 250

typedef struct client client_t;

/* Connects to "HOST:PORT" and authenticates with the admin token. Returns
 * the client, or NULL with err set (unreachable, refused token, timeout).
 * hosts may be a list, "A:P,B:P,C:P" (a port left out is 7400): the
 * controllers of a cluster on etcd, tried in turn, round after round for
 * up to CLIENT_FAILOVER_MS. A follower's Redirect (to any request) sends
 * the client to the leader, and the request goes again there; with several
 * controllers, a request that may go twice (reads, scale, node update) goes
 * again after a lost connection or a silent controller. */
client_t *client_connect(const char *hosts, const char *token, char *err, size_t errlen);

/* Sends req (its id is set here) and waits for the reply with the same id.
 * Returns 0 and *reply (wire_free it), whose message is reply_case;
 * otherwise *reply is NULL and the result is a negative code with err set:
 * for an Error reply its message and a code from its ErrorCode
 * (SKIFF_ENOTFOUND, SKIFF_ECONFLICT, ...); -EINTR after SIGINT;
 * SKIFF_ETIMEDOUT; SKIFF_ECLOSED. */
int client_call(client_t *c, Envelope *req, int reply_case, Envelope **reply, char *err,
                size_t errlen);

/* client_call for the TaskList filter, page after page: *reply is one
 * TaskListReply with the tasks of every page. */
int client_task_list(client_t *c, TaskList *filter, Envelope **reply, char *err,
                     size_t errlen);

/* Sends req and hands every message of its stream (LogsData, Event, ...)
 * to on_data (which does not own env; a negative return ends the stream
 * with that code) until the message end_case (MSG_LOGS_CLOSE, MSG_OK).
 * Returns 0 when the stream ended normally; SKIFF_EUNAVAILABLE with
 * LogsClose's message when logs ended early; -EINTR after SIGINT; or a
 * code as client_call returns them. */
int client_stream(client_t *c, Envelope *req, int end_case,
                  int (*on_data)(void *arg, const Envelope *env), void *arg, char *err,
                  size_t errlen);

/* Waits ms milliseconds. Returns 0, -EINTR after SIGINT, or SKIFF_ECLOSED
 * when the controller closed the connection meanwhile (err set). */
int client_sleep(client_t *c, uint64_t ms, char *err, size_t errlen);

/* Closes the connection and frees the client. NULL is fine. */
void client_close(client_t *c);

#endif
