/* progress: following a service until it converges, as `docker service
 * create` does, for create, update, scale, rollback and stack deploy.
 *
 * The core is pure: progress_eval() looks at one poll (the service and its
 * tasks, history included) and says whether the service converged, failed,
 * or is still on its way, and what each slot is doing; progress_render()
 * draws that, in place on a terminal and as plain lines (only those that
 * changed) otherwise. progress_follow() is the loop around them: it polls
 * ServiceGet and TaskList every 250 ms (docs/protocol.md).
 *
 * Converged: the update state is none, completed or (for a rollback)
 * rollback_completed; every slot has a task that runs, healthy where
 * checked, of the current spec where an update is under way, and stable: it
 * ran so when the wait began, or has stayed so, without a restart, for the
 * spec's update monitor (Docker's "verify: Waiting 5s to verify that tasks
 * are stable"), so that a task that crashes at once is not taken for a
 * running one; and the controller counts as many running tasks as it wants.
 * Failed: the update this command started paused or was rolled back; or,
 * outside an update, a slot's task was rejected by the engine, or failed or
 * restarted PROGRESS_MAX_STRIKES times since the wait began. A task that
 * fits nowhere is no failure: its slot shows why, and the wait goes on.
 */
#ifndef SKIFF_CLI_PROGRESS_H
#define SKIFF_CLI_PROGRESS_H

#include <stddef.h>
#include <stdio.h>

#include "client.h"
#include "skiff_pb.h"

#define PROGRESS_POLL_MS 250
#define PROGRESS_MAX_STRIKES 3
#define PROGRESS_MAX_SLOT_LINES 50
#define PROGRESS_STAGES 6

enum progress_op { PROGRESS_CREATE, PROGRESS_UPDATE, PROGRESS_SCALE, PROGRESS_ROLLBACK };

enum progress_verdict { PROGRESS_WAITING, PROGRESS_CONVERGED, PROGRESS_FAILED };

typedef struct progress progress_t;

/* A follower for an operation. rolling: the controller's reply showed that
 * the operation started a rolling update (state updating or
 * rollback_started), so the update's outcome decides. NULL when out of
 * memory. */
progress_t *progress_create(enum progress_op op, int rolling);
void progress_free(progress_t *p);

/* Evaluates one poll, made at now_ms (our clock). For PROGRESS_FAILED,
 * progress_message() says why. */
enum progress_verdict progress_eval(progress_t *p, const Service *svc, Task *const *tasks,
                                    size_t n, int64_t now_ms);
const char *progress_message(const progress_t *p);

/* The view of the last evaluation, as plain lines ("overall progress: 2
 * out of 3 tasks", "1/3: running", "2/3: pending no suitable node ..."). */
size_t progress_lines(const progress_t *p);
void progress_line(const progress_t *p, size_t i, int with_bar, char *out, size_t len);

/* Draws the view: on a terminal (tty) redrawn in place, with bars, lines
 * cut to width; otherwise the lines that changed since the last call. */
void progress_render(progress_t *p, FILE *out, int tty, int width);

/* Follows service (id or name) until it converges. Prints the progress to
 * stdout unless quiet. Returns 0 when converged; -EINTR on Ctrl-C (after
 * printing that the operation goes on); otherwise a negative code with err
 * set. */
int progress_follow(client_t *c, const char *service, enum progress_op op, int rolling,
                    int quiet, char *err, size_t errlen);

#endif
