/* Unit tests of agent/logstream, the tasks' logs as the runner's node sends
 * them: whole lines per output, several in one frame, a line too long cut,
 * a log without a final newline ended, LogsClose once every task's log has
 * ended, data dropped (and said so) when the connection is busy, and with
 * follow, a log that goes on when the container runs again.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "errors.h"
#include "logstream.h"
#include "pbutil.h"

/* ------------------------------------------------------------ fakes */

typedef struct open_log {
    char id[80];
    int follow;
    uint32_t tail;
    int64_t since;
    const engine_logs_ops_t *ops;
    void *arg;
    int closed;
} open_log_t;

static struct {
    engine_t base;
    open_log_t logs[16];
    int n;
} fe;

static int f_logs_open(engine_t *e, const char *id, int follow, uint32_t tail, int64_t since,
                       const engine_logs_ops_t *ops, void *arg, engine_logs_t **out)
{
    open_log_t *l = &fe.logs[fe.n++];

    snprintf(l->id, sizeof(l->id), "%s", id);
    l->follow = follow;
    l->tail = tail;
    l->since = since;
    l->ops = ops;
    l->arg = arg;
    *out = (engine_logs_t *)l;
    return 0;
}

static void f_logs_close(engine_t *e, engine_logs_t *h)
{
    ((open_log_t *)h)->closed = 1;
}

static const engine_ops_t fe_ops = { .logs_open = f_logs_open, .logs_close = f_logs_close };

static struct sent {
    char data[32][512];
    char task[32][64];
    int is_stderr[32];
    int n;
    int closes;
    char close_msg[256];
    int busy;
} sent;

static int fake_send(void *arg, const Envelope *env)
{
    if (sent.busy)
        return SKIFF_ELIMIT;
    if (env->msg_case == MSG_LOGS_CLOSE) {
        sent.closes++;
        snprintf(sent.close_msg, sizeof(sent.close_msg), "%s", env->logs_close->message);
        return 0;
    }
    assert_int_equal(env->msg_case, MSG_LOGS_DATA);
    assert_true(sent.n < 32);
    assert_true(env->logs_data->data.len < sizeof(sent.data[0]) ||
                env->logs_data->data.len > LOGSTREAM_LINE_MAX);
    snprintf(sent.data[sent.n], sizeof(sent.data[0]), "%.*s",
             (int)env->logs_data->data.len, (const char *)env->logs_data->data.data);
    snprintf(sent.task[sent.n], sizeof(sent.task[0]), "%s", env->logs_data->task_name);
    sent.is_stderr[sent.n] = env->logs_data->stderr;
    sent.n++;
    return 0;
}

static const char *containers[4];

static const char *fake_container(void *arg, const char *task_id)
{
    if (strcmp(task_id, "t1") == 0)
        return containers[1];
    if (strcmp(task_id, "t2") == 0)
        return containers[2];
    return NULL;
}

static logstreams_t *ls;

static int setup(void **state)
{
    memset(&fe, 0, sizeof(fe));
    fe.base.ops = &fe_ops;
    memset(&sent, 0, sizeof(sent));
    containers[1] = "c1";
    containers[2] = "c2";
    ls = logstreams_create(uv_default_loop(), &fe.base, fake_container, fake_send, NULL);
    assert_non_null(ls);
    return 0;
}

static int teardown(void **state)
{
    logstreams_free(ls);
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    return 0;
}

static void open_stream(uint64_t stream, int follow, uint32_t tail, int n_tasks)
{
    LogsOpen lo = PB_LOGS_OPEN_INIT;
    LogsTask t[3] = { PB_LOGS_TASK_INIT, PB_LOGS_TASK_INIT, PB_LOGS_TASK_INIT };
    LogsTask *tp[3] = { &t[0], &t[1], &t[2] };

    t[0].task_id = "t1";
    t[0].name = "web.1.t1";
    t[1].task_id = "t2";
    t[1].name = "web.2.t2";
    t[2].task_id = "t3"; /* no container on this node */
    t[2].name = "web.3.t3";
    lo.stream = stream;
    lo.follow = follow;
    lo.tail = tail;
    lo.tasks = tp;
    lo.n_tasks = (size_t)n_tasks;
    assert_int_equal(logstreams_open(ls, &lo), 0);
}

static void feed(int i, int is_stderr, const char *s)
{
    fe.logs[i].ops->on_data(fe.logs[i].arg, is_stderr, s, strlen(s));
}

static void end(int i, int status, const char *msg)
{
    fe.logs[i].ops->on_end(fe.logs[i].arg, status, msg);
}

/* ------------------------------------------------------------ tests */

static void test_whole_lines(void **state)
{
    open_stream(7, 0, 10, 3);
    assert_int_equal(fe.n, 2); /* t3 has no container here */
    assert_string_equal(fe.logs[0].id, "c1");
    assert_int_equal(fe.logs[0].tail, 10);
    assert_false(fe.logs[0].follow);

    feed(0, 0, "hel");
    assert_int_equal(sent.n, 0);
    feed(0, 0, "lo\nwor");
    assert_int_equal(sent.n, 1);
    assert_string_equal(sent.data[0], "hello\n");
    assert_string_equal(sent.task[0], "web.1.t1");
    feed(0, 1, "oops\n");
    assert_int_equal(sent.n, 2);
    assert_true(sent.is_stderr[1]);
    feed(0, 0, "ld\na\nb\n");
    assert_string_equal(sent.data[2], "world\na\nb\n"); /* together, in one frame */

    /* The end: a last line without a newline gets one; LogsClose once both
     * tasks' logs ended. */
    feed(1, 0, "tail without newline");
    end(1, 0, "");
    assert_string_equal(sent.data[3], "tail without newline\n");
    assert_int_equal(sent.closes, 0);
    end(0, 0, "");
    assert_int_equal(sent.closes, 1);
    assert_string_equal(sent.close_msg, "");
    assert_int_equal(logstreams_count(ls), 0);
}

static void test_long_line_cut(void **state)
{
    char *big = malloc(LOGSTREAM_LINE_MAX + 100);

    memset(big, 'x', LOGSTREAM_LINE_MAX + 99);
    big[LOGSTREAM_LINE_MAX + 99] = '\0';
    open_stream(8, 0, 0, 1);
    sent.busy = 0;
    feed(0, 0, big);
    /* Cut at the bound, as a line of its own; the rest waits. */
    assert_int_equal(sent.n, 1);
    feed(0, 0, "\n");
    assert_int_equal(sent.n, 2);
    end(0, 0, "");
    free(big);
}

static void test_busy_connection_drops_and_says_so(void **state)
{
    open_stream(9, 0, 0, 1);
    sent.busy = 1;
    feed(0, 0, "lost 1\nlost 2\n");
    assert_int_equal(sent.n, 0);
    sent.busy = 0;
    feed(0, 0, "kept\n");
    assert_int_equal(sent.n, 2);
    assert_string_equal(sent.data[0],
                        "[skiff: 14 bytes of logs dropped: the connection to the controller was "
                        "busy]\n");
    assert_true(sent.is_stderr[0]);
    assert_string_equal(sent.data[1], "kept\n");
    end(0, 0, "");
}

static void test_nothing_here_closes_at_once(void **state)
{
    containers[1] = containers[2] = NULL;
    open_stream(10, 0, 0, 3);
    assert_int_equal(sent.closes, 1);
    assert_int_equal(logstreams_count(ls), 0);
}

static void test_controller_closes(void **state)
{
    open_stream(11, 1, 0, 2);
    assert_int_equal(fe.n, 2);
    logstreams_close(ls, 11);
    assert_true(fe.logs[0].closed);
    assert_true(fe.logs[1].closed);
    assert_int_equal(sent.closes, 0); /* the controller asked: nothing back */
    assert_int_equal(logstreams_count(ls), 0);
}

static void test_follow_goes_on_after_a_restart(void **state)
{
    open_stream(12, 1, 5, 1);
    assert_true(fe.logs[0].follow);
    feed(0, 0, "first run\n");
    end(0, 0, ""); /* the container stopped */
    assert_int_equal(sent.closes, 0);
    /* Reopened by the timer, from the moment it ended. */
    while (fe.n < 2)
        uv_run(uv_default_loop(), UV_RUN_ONCE);
    assert_string_equal(fe.logs[1].id, "c1");
    assert_true(fe.logs[1].since > 0);
    assert_int_equal(fe.logs[1].tail, 0);
    feed(1, 0, "second run\n");
    assert_string_equal(sent.data[1], "second run\n");
    logstreams_close(ls, 12);
    assert_true(fe.logs[1].closed);
}

static void test_error_end_is_said(void **state)
{
    open_stream(13, 0, 0, 1);
    end(0, SKIFF_EENGINE, "No such container: c1");
    assert_int_equal(sent.n, 1);
    assert_string_equal(sent.data[0], "[skiff: the log ended early: No such container: c1]\n");
    assert_int_equal(sent.closes, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_whole_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_line_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_connection_drops_and_says_so, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nothing_here_closes_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_controller_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_follow_goes_on_after_a_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_end_is_said, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);

    uv_loop_close(uv_default_loop());
    return rc;
}
