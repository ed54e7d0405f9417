/* SPDX-License-Identifier: Apache-2.0 */
/* The local engine's pure parts: spec validation, the helper's argv, ready.json, cmdline matching. */
#include "base/common.h"

#include <setjmp.h>
#include <cmocka.h>
#include <sys/stat.h>

#include "api/problem.h"
#include "base/fileio.h"
#include "engine/local/local.h"

static bool has_field_error(const struct cm_problem *p, const char *field, const char *reason_part) {
        size_t i;
        json_t *e;

        if (!p->errors)
                return false;
        json_array_foreach(p->errors, i, e) {
                const char *f = json_string_value(json_object_get(e, "field"));
                const char *r = json_string_value(json_object_get(e, "reason"));

                if (f && streq(f, field) && (!reason_part || (r && strstr(r, reason_part))))
                        return true;
        }
        return false;
}

static size_t validate(const char *spec_text, struct cm_problem *p) {
        json_t *spec = json_loads(spec_text, 0, NULL);

        assert_non_null(spec);
        cm_problem_init(p);
        (void) cm_engine_local_ops.validate(spec, p);
        json_decref(spec);
        return p->errors ? json_array_size(p->errors) : 0;
}

static void test_validate_nodes(void **state) {
        static const struct {
                const char *spec;
                const char *field; /* NULL: valid */
        } cases[] = {
                { "{\"engine\":\"local\"}", NULL },
                { "{\"engine\":\"local\",\"local\":{}}", NULL },
                { "{\"engine\":\"local\",\"local\":{\"nodes\":1}}", NULL },
                { "{\"engine\":\"local\",\"local\":{\"nodes\":10}}", NULL },
                { "{\"engine\":\"local\",\"local\":{\"nodes\":0}}", "spec.local.nodes" },
                { "{\"engine\":\"local\",\"local\":{\"nodes\":500}}", NULL },
                { "{\"engine\":\"local\",\"local\":{\"nodes\":501}}", "spec.local.nodes" },
                { "{\"engine\":\"local\",\"local\":{\"nodes\":-1}}", "spec.local.nodes" },
                { "{\"engine\":\"local\",\"local\":{\"nodes\":\"3\"}}", "spec.local.nodes" },
                { "{\"engine\":\"local\",\"local\":{\"nodes\":2.5}}", "spec.local.nodes" },
                { "{\"engine\":\"local\",\"local\":{\"nodes\":2,\"cpus\":4}}", "spec.local.cpus" },
                { "{\"engine\":\"local\",\"local\":[]}", "spec.local" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct cm_problem p;
                size_t n = validate(cases[i].spec, &p);

                if (!cases[i].field)
                        assert_int_equal(n, 0);
                else if (!has_field_error(&p, cases[i].field, NULL))
                        fail_msg("%s: expected an error on %s", cases[i].spec, cases[i].field);
                cm_problem_done(&p);
        }
}

/* spec.kubernetesVersion is checked against `helper --version`; a stand-in script plays the helper. */
static void test_validate_version(void **state) {
        char dir[] = "/tmp/cm-local-test-XXXXXX", helper[128];
        static const char script[] = "#!/bin/sh\necho v1.36.3\n";
        struct cm_problem p;

        assert_non_null(mkdtemp(dir));
        (void) cm_snprintf(helper, sizeof(helper), "%s/clustermgmt-localk8s", dir);
        assert_int_equal(cm_write_file_atomic(helper, script, sizeof(script) - 1, 0700), 0);
        assert_int_equal(cm_engine_local_set_helper(helper), 0);
        assert_string_equal(cm_engine_local_helper(), helper);

        assert_int_equal(validate("{\"engine\":\"local\",\"kubernetesVersion\":\"v1.36.3\"}", &p), 0);
        cm_problem_done(&p);
        assert_int_equal(validate("{\"engine\":\"local\",\"kubernetesVersion\":\"\"}", &p), 0);
        cm_problem_done(&p);
        (void) validate("{\"engine\":\"local\",\"kubernetesVersion\":\"v1.32.13\"}", &p);
        assert_true(has_field_error(&p, "spec.kubernetesVersion", "runs Kubernetes v1.36.3"));
        cm_problem_done(&p);

        assert_int_equal(unlink(helper), 0);
        assert_int_equal(rmdir(dir), 0);
        /* A missing helper cannot confirm a version. */
        (void) validate("{\"engine\":\"local\",\"kubernetesVersion\":\"v1.36.3\"}", &p);
        assert_true(has_field_error(&p, "spec.kubernetesVersion", "not available"));
        cm_problem_done(&p);
}

static void test_spec_nodes(void **state) {
        json_t *spec = json_loads("{\"engine\":\"local\",\"local\":{\"nodes\":3}}", 0, NULL);

        assert_int_equal(cm_local_spec_nodes(spec), 3);
        json_decref(spec);
        spec = json_loads("{\"engine\":\"local\"}", 0, NULL);
        assert_int_equal(cm_local_spec_nodes(spec), 1);
        json_decref(spec);
        assert_int_equal(cm_local_spec_nodes(NULL), 1);
}

static void test_helper_name(void **state) {
        char buf[48];

        cm_local_helper_name("demo", buf, sizeof(buf));
        assert_string_equal(buf, "demo");
        /* 40 characters at most, no trailing '-' after the cut. */
        cm_local_helper_name("a123456789012345678901234567890123456789-tail", buf, sizeof(buf));
        assert_string_equal(buf, "a123456789012345678901234567890123456789");
        cm_local_helper_name("a12345678901234567890123456789012345678-tail", buf, sizeof(buf));
        assert_string_equal(buf, "a12345678901234567890123456789012345678");
        cm_local_helper_name("", buf, sizeof(buf));
        assert_string_equal(buf, "localk8s");
}

static void test_build_argv(void **state) {
        char *argv[CM_LOCAL_ARGV_MAX], nodes[16];

        cm_local_build_argv("/opt/cm/clustermgmt-localk8s", "/srv/data/local/default/cl_x", "demo", 3, nodes,
                            sizeof(nodes), argv);
        assert_string_equal(argv[0], "/opt/cm/clustermgmt-localk8s");
        assert_string_equal(argv[1], "--data-dir");
        assert_string_equal(argv[2], "/srv/data/local/default/cl_x");
        assert_string_equal(argv[3], "--name");
        assert_string_equal(argv[4], "demo");
        assert_string_equal(argv[5], "--nodes");
        assert_string_equal(argv[6], "3");
        assert_null(argv[7]);
}

static void test_ready_parse(void **state) {
        static const char good[] =
                "{\"endpoint\": \"https://127.0.0.1:40123\", \"kubeconfig\": \"/x/admin.kubeconfig\","
                " \"pid\": 1234, \"version\": \"v1.36.3\", \"name\": \"demo\", \"nodes\": 3}\n";
        static const char *const bad[] = {
                "",
                "[]",
                "{\"endpoint\": \"https://127.0.0.1:40123\", \"nodes\": 3}",
                "{\"endpoint\": \"https://127.0.0.1:40123\", \"pid\": 1234}",
                "{\"endpoint\": \"https://example.com:443\", \"pid\": 1234, \"nodes\": 3}",
                "{\"endpoint\": \"http://127.0.0.1:40123\", \"pid\": 1234, \"nodes\": 3}",
                "{\"endpoint\": \"https://127.0.0.1:\", \"pid\": 1234, \"nodes\": 3}",
                "{\"endpoint\": \"https://127.0.0.1:99999\", \"pid\": 1234, \"nodes\": 3}",
                "{\"endpoint\": \"https://127.0.0.1:1/x\", \"pid\": 1234, \"nodes\": 3}",
                "{\"endpoint\": \"https://127.0.0.1:1\", \"pid\": \"1234\", \"nodes\": 3}",
                "{\"endpoint\": \"https://127.0.0.1:1\", \"pid\": 1234, \"pid\": 5, \"nodes\": 3}",
        };
        struct cm_local_ready rd = { .pid = 7 };

        assert_int_equal(cm_local_ready_parse(good, sizeof(good) - 1, &rd), 0);
        assert_string_equal(rd.endpoint, "https://127.0.0.1:40123");
        assert_string_equal(rd.version, "v1.36.3");
        assert_string_equal(rd.name, "demo");
        assert_int_equal(rd.pid, 1234);
        assert_int_equal(rd.nodes, 3);
        {
                static const char v6[] = "{\"endpoint\":\"https://[::1]:6443\",\"pid\":2,\"nodes\":0}";

                assert_int_equal(cm_local_ready_parse(v6, sizeof(v6) - 1, &rd), 0);
                assert_int_equal(rd.nodes, 0);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                struct cm_local_ready untouched = { .pid = 99 };

                if (cm_local_ready_parse(bad[i], strlen(bad[i]), &untouched) != -EINVAL)
                        fail_msg("accepted: %s", bad[i]);
                assert_int_equal(untouched.pid, 99);
        }
}

static void test_cmdline_matches(void **state) {
        static const char full[] =
                "/opt/bin/clustermgmt-localk8s\0--data-dir\0/d/local/e/cl_1\0--name\0demo\0"
                "--nodes\0003\0";
        static const char eq[] = "clustermgmt-localk8s\0-data-dir=/d/local/e/cl_1\0--nodes=2\0";
        static const char nodes_absent[] = "/x/clustermgmt-localk8s\0--data-dir\0/d/local/e/cl_1\0";
        static const char other_dir[] = "/x/clustermgmt-localk8s\0--data-dir\0/d/local/e/cl_10\0";
        static const char other_prog[] = "/usr/bin/sleep\0--data-dir\0/d/local/e/cl_1\0";
        static const char renamed[] = "/x/localk8s-copy\0--data-dir\0/d/local/e/cl_1\0";
        static const char cut[] = "/x/clustermgmt-localk8s\0--data-dir\0/d/local/e/cl_1";
        unsigned nodes = 0;

        assert_true(cm_local_cmdline_matches(full, sizeof(full) - 1, NULL, "/d/local/e/cl_1", &nodes));
        assert_int_equal(nodes, 3);
        assert_true(cm_local_cmdline_matches(eq, sizeof(eq) - 1, NULL, "/d/local/e/cl_1", &nodes));
        assert_int_equal(nodes, 2);
        assert_true(cm_local_cmdline_matches(nodes_absent, sizeof(nodes_absent) - 1, NULL, "/d/local/e/cl_1",
                                             &nodes));
        assert_int_equal(nodes, 1);
        assert_false(
                cm_local_cmdline_matches(other_dir, sizeof(other_dir) - 1, NULL, "/d/local/e/cl_1", NULL));
        assert_false(
                cm_local_cmdline_matches(other_prog, sizeof(other_prog) - 1, NULL, "/d/local/e/cl_1", NULL));
        assert_false(cm_local_cmdline_matches(renamed, sizeof(renamed) - 1, NULL, "/d/local/e/cl_1", NULL));
        assert_true(cm_local_cmdline_matches(renamed, sizeof(renamed) - 1, "localk8s-copy",
                                             "/d/local/e/cl_1", NULL));
        assert_false(cm_local_cmdline_matches(cut, sizeof(cut) - 1, NULL, "/d/local/e/cl_1", NULL));
        assert_false(cm_local_cmdline_matches("", 0, NULL, "/d", NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_validate_nodes),  cmocka_unit_test(test_validate_version),
                cmocka_unit_test(test_spec_nodes),      cmocka_unit_test(test_helper_name),
                cmocka_unit_test(test_build_argv),      cmocka_unit_test(test_ready_parse),
                cmocka_unit_test(test_cmdline_matches),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
