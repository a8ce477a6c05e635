/* Unit tests of controller/rebalance: which move restores a spread, and
 * which services may be moved at all. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pbutil.h"
#include "rebalance.h"
#include "spec.h"

static void test_pick(void **state)
{
    rebalance_node_t back[] = { { 3, 1 }, { 3, 1 }, { 0, 1 } };
    rebalance_node_t even[] = { { 2, 1 }, { 2, 1 }, { 2, 1 } };
    rebalance_node_t off_by_one[] = { { 3, 1 }, { 2, 1 }, { 2, 1 } };
    rebalance_node_t not_ready[] = { { 3, 1 }, { 3, 1 }, { 0, 0 } };
    rebalance_node_t full[] = { { 4, 0 }, { 1, 1 }, { 1, 1 } };
    size_t from = 99, to = 99;

    /* 3/3/0: from the first of the fullest to the empty one; then 2/3/1 */
    assert_int_equal(rebalance_pick(back, 3, &from, &to), 1);
    assert_int_equal(from, 0);
    assert_int_equal(to, 2);
    back[0].tasks--, back[2].tasks++;
    assert_int_equal(rebalance_pick(back, 3, &from, &to), 1);
    assert_int_equal(from, 1);
    assert_int_equal(to, 2);
    back[1].tasks--, back[2].tasks++;
    assert_int_equal(rebalance_pick(back, 3, &from, &to), 0); /* 2/2/2 */
    assert_int_equal(rebalance_pick(even, 3, &from, &to), 0);
    /* a move would only make it different, not better */
    assert_int_equal(rebalance_pick(off_by_one, 3, &from, &to), 0);
    /* a node that may not take one (not ready for the delay, drained,
     * constraints, no room) is no target */
    assert_int_equal(rebalance_pick(not_ready, 3, &from, &to), 0);
    /* a node that may not take more can still give */
    assert_int_equal(rebalance_pick(full, 3, &from, &to), 1);
    assert_int_equal(from, 0);
    assert_int_equal(to, 1);
    assert_int_equal(rebalance_pick(NULL, 0, &from, &to), 0);
    (void)state;
}

static void test_service_ok(void **state)
{
    ServiceSpec *s = spec_new();
    Mount *m = PB_NEW(Mount);

    assert_true(rebalance_service_ok(s));
    pb_push_str(&s->n_constraints, &s->constraints, "node.labels.zone==eu");
    pb_push_str(&s->n_constraints, &s->constraints, "node.name!=n1");
    assert_true(rebalance_service_ok(s)); /* a label, or away from a node: movable */
    pb_push_str(&s->n_constraints, &s->constraints, "node.name==n2");
    assert_false(rebalance_service_ok(s)); /* pinned to a node */
    free(s->constraints[--s->n_constraints]);
    s->no_rebalance = 1;
    assert_false(rebalance_service_ok(s));
    s->no_rebalance = 0;
    pb_push_msg(&s->n_mounts, (void ***)&s->mounts, m);
    assert_false(rebalance_service_ok(s)); /* its data is on a node */
    pb_free(s);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pick),
        cmocka_unit_test(test_service_ok),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
