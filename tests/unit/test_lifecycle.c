/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <setjmp.h>
#include <cmocka.h>
#include <jansson.h>

#include "lifecycle/conditions.h"
#include "lifecycle/worker.h"

static void test_backoff(void **state) {
        static const struct {
                uint64_t base, cap;
                unsigned attempt;
                uint64_t want;
        } cases[] = {
                { 2, 300, 1, 2 },
                { 2, 300, 2, 4 },
                { 2, 300, 3, 8 },
                { 2, 300, 8, 256 },
                { 2, 300, 9, 300 },
                { 2, 300, 100, 300 },
                { 1, UINT64_MAX, 64, UINT64_C(1) << 63 },
                { 1, UINT64_MAX, 70, UINT64_MAX },
                { 5, 3, 1, 3 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                assert_int_equal(cm_backoff_usec(cases[i].base, cases[i].cap, cases[i].attempt),
                                 cases[i].want);
}

static const char *cond_field(json_t *arr, const char *type, const char *field) {
        size_t i;
        json_t *e;

        json_array_foreach(arr, i, e) {
                if (streq(json_string_value(json_object_get(e, "type")), type))
                        return json_string_value(json_object_get(e, field));
        }
        return NULL;
}

static void test_conditions(void **state) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL;
        json_t *ja, *jb, *jc, *jd;

        a = cm_conditions_set(NULL, "Ready", "False", "Pending", "waiting", UINT64_C(1000000));
        assert_non_null(a);
        /* Same status: the transition time stays; reason and message change. */
        b = cm_conditions_set(a, "Ready", "False", "Provisioning", "running", UINT64_C(2000000));
        /* A new status: the transition time moves. */
        c = cm_conditions_set(b, "Ready", "True", "Provisioned", "done", UINT64_C(3000000));
        /* Another type is added beside it; garbage input is treated as []. */
        d = cm_conditions_set(c, "Reconciling", "False", "Done", "bad utf8 \xff", UINT64_C(4000000));
        ja = json_loads(a, 0, NULL);
        jb = json_loads(b, 0, NULL);
        jc = json_loads(c, 0, NULL);
        jd = json_loads(d, 0, NULL);
        assert_non_null(jd);
        assert_string_equal(cond_field(ja, "Ready", "lastTransitionTime"), "1970-01-01T00:00:01.000Z");
        assert_string_equal(cond_field(jb, "Ready", "lastTransitionTime"), "1970-01-01T00:00:01.000Z");
        assert_string_equal(cond_field(jb, "Ready", "reason"), "Provisioning");
        assert_string_equal(cond_field(jc, "Ready", "lastTransitionTime"), "1970-01-01T00:00:03.000Z");
        assert_string_equal(cond_field(jd, "Ready", "status"), "True");
        assert_string_equal(cond_field(jd, "Reconciling", "status"), "False");
        assert_int_equal(json_array_size(jd), 2);
        json_decref(ja);
        json_decref(jb);
        json_decref(jc);
        json_decref(jd);

        free(a);
        a = cm_conditions_set("not json", "Ready", "Unknown", "", "", 0);
        assert_non_null(a);
        assert_false(cm_conditions_is_true(a, "Ready")); /* Unknown */
        free(a);
        a = cm_conditions_set(NULL, "Ready", "True", "Provisioned", "", 0);
        assert_true(cm_conditions_is_true(a, "Ready"));
        assert_false(cm_conditions_is_true(a, "Reconciling"));
        assert_false(cm_conditions_is_true(NULL, "Ready"));
        assert_false(cm_conditions_is_true("{\"type\":\"Ready\"}", "Ready"));
        assert_false(cm_conditions_is_true("[{\"type\":\"Ready\",\"status\":true}]", "Ready"));
        free(a);
        a = NULL;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_backoff),
                cmocka_unit_test(test_conditions),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
