/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <setjmp.h>
#include <cmocka.h>

#include "api/documents.h"
#include "api/encode.h"
#include "api/json.h"
#include "engine/engine.h"
#include "server/router.h"
#include "support/test_engine.h"

static bool has_field(const struct cm_problem *p, const char *field, const char *part) {
        size_t i;
        json_t *e;

        json_array_foreach(p->errors, i, e) {
                if (streq(json_string_value(json_object_get(e, "field")), field) &&
                    (!part || strstr(json_string_value(json_object_get(e, "reason")), part)))
                        return true;
        }
        return false;
}

static void test_cluster_documents(void **state) {
        static const struct {
                const char *body;
                int status; /* 0: accepted */
                const char *field; /* expected field error */
                const char *reason_part;
        } cases[] = {
                { "{\"name\":\"a\",\"spec\":{\"engine\":\"test\"}}", 0, NULL, NULL },
                { "{\"name\":\"a\",\"spec\":{\"engine\":\"test\",\"kubernetesVersion\":\"v1.32.13-rancher1-"
                  "2\"}}",
                  0, NULL, NULL },
                { "{\"name\":\"a\",\"spec\":{\"engine\":\"nope\"}}", 422, "spec.engine",
                  "registered engines: test" },
                { "{\"name\":\"A\",\"spec\":{\"engine\":\"test\"}}", 422, "name", "DNS label" },
                { "{\"spec\":{\"engine\":\"test\"}}", 422, "name", "required" },
                { "{\"name\":\"a\"}", 422, "spec", "required" },
                { "{\"name\":\"a\",\"spec\":[]}", 422, "spec", "object" },
                { "{\"name\":\"a\",\"spec\":{\"engine\":\"test\",\"x\":1}}", 422, "spec.x",
                  "unknown field" },
                { "{\"name\":\"a\",\"spec\":{\"engine\":\"test\",\"local\":{}}}", 422, "spec.local",
                  "only allowed" },
                { "{\"name\":\"a\",\"spec\":{\"engine\":\"test\",\"kubernetesVersion\":\"1.2\"}}", 422,
                  "spec.kubernetesVersion", NULL },
                { "{\"name\":\"a\",\"spec\":{\"engine\":\"test\",\"kubernetesVersion\":\"v1.2.3;rm\"}}", 422,
                  "spec.kubernetesVersion", NULL },
                { "{\"name\":\"a\",\"labels\":{\"k\":\"v v\"},\"spec\":{\"engine\":\"test\"}}", 422,
                  "labels.k", NULL },
                { "{\"name\":\"a\",\"labels\":{\"a/b/c\":\"v\"},\"spec\":{\"engine\":\"test\"}}", 422,
                  "labels.a/b/c", NULL },
                { "{\"name\":\"a\",\"spec\":{\"engine\":\"test\",\"addons\":[1]}}", 422, "spec.addons[0]",
                  "object" },
                { "{\"name\":\"a\",\"spec\":{\"engine\":\"test\",\"customer\":{\"role\":5}}}", 422,
                  "spec.customer.role", NULL },
                { "{\"name\":\"a\",\"name\":\"b\",\"spec\":{\"engine\":\"test\"}}", 400, NULL, NULL },
                { "[]", 400, NULL, NULL },
                { "", 400, NULL, NULL },
                { "{\"name\":\"a\",\"spec\":{\"engine\":\"test\"}} x", 400, NULL, NULL },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct cm_cluster_doc d = {};
                struct cm_problem p;
                int r;

                cm_problem_init(&p);
                r = cm_cluster_doc_decode(cases[i].body, strlen(cases[i].body), CM_CLUSTER_DOC_CREATE, &d,
                                          &p);
                if (cases[i].status == 0) {
                        if (r != 0)
                                fail_msg("case %zu: refused: %s", i, p.detail);
                        assert_string_equal(d.engine, "test");
                        assert_non_null(d.spec_json);
                } else {
                        assert_true(r < 0);
                        if (p.status != cases[i].status)
                                fail_msg("case %zu: status %d, expected %d", i, p.status, cases[i].status);
                        if (cases[i].field && !has_field(&p, cases[i].field, cases[i].reason_part))
                                fail_msg("case %zu: no error for %s", i, cases[i].field);
                }
                cm_cluster_doc_done(&d);
                cm_problem_done(&p);
        }
}

static void test_all_errors_reported(void **state) {
        const char *body = "{\"name\":\"BAD\",\"labels\":[],\"spec\":{\"engine\":\"nope\",\"y\":2},\"z\":3}";
        struct cm_cluster_doc d = {};
        struct cm_problem p;

        cm_problem_init(&p);
        assert_true(cm_cluster_doc_decode(body, strlen(body), CM_CLUSTER_DOC_CREATE, &d, &p) < 0);
        assert_int_equal(p.status, 422);
        assert_true(has_field(&p, "name", NULL));
        assert_true(has_field(&p, "labels", NULL));
        assert_true(has_field(&p, "spec.engine", NULL));
        assert_true(has_field(&p, "spec.y", NULL));
        assert_true(has_field(&p, "z", NULL));
        cm_problem_done(&p);
}

static void test_deep_and_huge(void **state) {
        char deep[200];
        struct cm_problem p;
        json_t *v = NULL;
        size_t n = 0;

        n += (size_t) cm_snprintf(deep, sizeof(deep), "{\"a\":");
        for (int i = 0; i < 40; i++)
                deep[n++] = '[';
        for (int i = 0; i < 40; i++)
                deep[n++] = ']';
        deep[n++] = '}';
        deep[n] = 0;
        cm_problem_init(&p);
        assert_int_equal(cm_json_parse_strict(deep, n, &v, &p), -EINVAL);
        assert_int_equal(p.status, 400);
        assert_non_null(strstr(p.detail, "nesting"));
        cm_problem_done(&p);
}

static void test_problem_never_quotes_input(void **state) {
        const char *body = "{\"name\": canary-secret-123}";
        struct cm_problem p;
        json_t *v = NULL;

        cm_problem_init(&p);
        assert_int_equal(cm_json_parse_strict(body, strlen(body), &v, &p), -EINVAL);
        assert_null(strstr(p.detail, "canary"));
        cm_problem_done(&p);
}

static void test_encode_cluster(void **state) {
        struct cm_cluster c = {
                .id = CM_UNCONST(char *, "cl_1"),
                .env = CM_UNCONST(char *, "default"),
                .name = CM_UNCONST(char *, "demo"),
                .engine = CM_UNCONST(char *, "test"),
                .labels_json = CM_UNCONST(char *, "{\"a\":\"b\"}"),
                .spec_json = CM_UNCONST(char *, "{\"engine\":\"test\"}"),
                .generation = 2,
                .resource_version = 7,
                .phase = CM_PHASE_READY,
                .conditions_json = CM_UNCONST(char *, "[]"),
                .status_json = CM_UNCONST(char *, "{\"nodes\":3}"),
                .observed_generation = 2,
                .created_usec = UINT64_C(1767323045678000),
                .updated_usec = UINT64_C(1767323045678000),
        };
        _cleanup_strbuf_ struct strbuf out = STRBUF_INIT(4096);
        json_t *v;

        assert_int_equal(cm_encode_cluster(&out, &c), 0);
        v = json_loads(out.buf, JSON_REJECT_DUPLICATES, NULL);
        assert_non_null(v);
        assert_string_equal(json_string_value(json_object_get(v, "resourceVersion")), "7");
        assert_int_equal(json_integer_value(json_object_get(json_object_get(v, "status"), "nodes")), 3);
        assert_string_equal(json_string_value(json_object_get(json_object_get(v, "status"), "phase")),
                            "Ready");
        assert_string_equal(json_string_value(json_object_get(v, "createdAt")), "2026-01-02T03:04:05.678Z");
        json_decref(v);
}

static void test_router(void **state) {
        static const struct {
                const char *method, *path, *pattern;
                size_t n_params;
                bool path_matched;
        } cases[] = {
                { "GET", "/v1/environments", "/v1/environments", 0, false },
                { "GET", "/v1/environments/dev/clusters/x", "/v1/environments/{env}/clusters/{name}", 2,
                  false },
                { "GET", "/v1/environments/dev/clusters/x/kubeconfig/customer",
                  "/v1/environments/{env}/clusters/{name}/kubeconfig/customer", 2, false },
                { "POST", "/v1/operations/op_1/cancel", "/v1/operations/{id}/cancel", 1, false },
                { "PATCH", "/v1/environments/dev", NULL, 0, true },
                { "GET", "/v1/environments//clusters", NULL, 0, false },
                { "GET", "/v1/environments/dev/", NULL, 0, false },
                { "GET", "/", NULL, 0, false },
                { "GET", "", NULL, 0, false },
                { "GET", "/a/b/c/d/e/f/g/h/i/j/k", NULL, 0, false },
                { "GET", "/healthz", "/healthz", 0, false },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char path[128], *params[CM_ROUTE_MAX_PARAMS];
                size_t np = 0;
                bool matched = false;
                const struct cm_route *r;

                assert_int_equal(cm_strlcpy(path, cases[i].path, sizeof(path)), 0);
                r = cm_route_match(cases[i].method, path, params, &np, &matched);
                if (!cases[i].pattern) {
                        assert_null(r);
                        assert_int_equal(matched, cases[i].path_matched);
                        continue;
                }
                assert_non_null(r);
                assert_string_equal(r->pattern, cases[i].pattern);
                assert_int_equal(np, cases[i].n_params);
                if (np > 0)
                        assert_string_equal(params[0], strstr(cases[i].path, "operations") ? "op_1" : "dev");
        }
}

/* Parameters of snapshot/restore/rotate-certs: canonical on success, field errors otherwise. */
static void test_cluster_actions(void **state) {
        static const struct {
                enum cm_op_type type;
                const char *body;
                const char *params; /* expected canonical parameters, or NULL for a refusal */
                int status;
                const char *field;
        } cases[] = {
                { CM_OP_SNAPSHOT, "{\"name\":\"before-upgrade.1\"}", "{\"name\":\"before-upgrade.1\"}", 0,
                  NULL },
                /* 2023-11-14T22:13:20Z: the default name is the cluster's and the UTC time */
                { CM_OP_SNAPSHOT, "", "{\"name\":\"prod-20231114-221320\"}", 0, NULL },
                { CM_OP_SNAPSHOT, "{}", "{\"name\":\"prod-20231114-221320\"}", 0, NULL },
                { CM_OP_SNAPSHOT, "{\"name\":\"\"}", NULL, 422, "name" },
                { CM_OP_SNAPSHOT, "{\"name\":\"--rotate-ca\"}", NULL, 422, "name" },
                { CM_OP_SNAPSHOT, "{\"name\":\"a/b\"}", NULL, 422, "name" },
                { CM_OP_SNAPSHOT, "{\"name\":null}", NULL, 422, "name" },
                { CM_OP_SNAPSHOT, "{\"x\":1}", NULL, 422, "x" },
                { CM_OP_SNAPSHOT, "[]", NULL, 400, NULL },
                { CM_OP_RESTORE, "{\"snapshot\":\"s1\"}", "{\"snapshot\":\"s1\"}", 0, NULL },
                { CM_OP_RESTORE, "", NULL, 422, "snapshot" },
                { CM_OP_RESTORE, "{\"snapshot\":\"s 1\"}", NULL, 422, "snapshot" },
                { CM_OP_ROTATE_CERTS, "", "{}", 0, NULL },
                { CM_OP_ROTATE_CERTS, "{\"services\":[\"kubelet\",\"etcd\"],\"rotateCA\":true}",
                  "{\"rotateCA\":true,\"services\":[\"kubelet\",\"etcd\"]}", 0, NULL },
                { CM_OP_ROTATE_CERTS, "{\"services\":[\"kubelet\",\"kubelet\"]}", NULL, 422, "services[1]" },
                { CM_OP_ROTATE_CERTS, "{\"services\":[\"-x\"]}", NULL, 422, "services[0]" },
                { CM_OP_ROTATE_CERTS, "{\"services\":[1]}", NULL, 422, "services[0]" },
                { CM_OP_ROTATE_CERTS, "{\"rotateCA\":1}", NULL, 422, "rotateCA" },
        };
        struct cm_problem p;
        char *params = NULL;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                int r;

                cm_problem_init(&p);
                r = cm_cluster_action_decode(cases[i].type, "prod", cases[i].body, strlen(cases[i].body),
                                             UINT64_C(1700000000000000), &params, &p);
                if (cases[i].params) {
                        if (r != 0)
                                fail_msg("case %zu: refused: %s", i, p.detail);
                        assert_string_equal(params, cases[i].params);
                        free(params);
                        params = NULL;
                } else {
                        assert_true(r < 0);
                        if (p.status != cases[i].status)
                                fail_msg("case %zu: status %d, expected %d", i, p.status, cases[i].status);
                        if (cases[i].field && !has_field(&p, cases[i].field, NULL))
                                fail_msg("case %zu: no error for %s", i, cases[i].field);
                }
                cm_problem_done(&p);
        }
        cm_problem_init(&p);
        assert_int_equal(cm_cluster_action_decode(CM_OP_CREATE, "prod", "", 0, 0, &params, &p), -EOPNOTSUPP);
        cm_problem_done(&p);
        assert_true(cm_snapshot_name_valid("a"));
        assert_false(cm_snapshot_name_valid(NULL));
        assert_false(cm_snapshot_name_valid(".hidden"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_cluster_documents), cmocka_unit_test(test_all_errors_reported),
                cmocka_unit_test(test_deep_and_huge),     cmocka_unit_test(test_problem_never_quotes_input),
                cmocka_unit_test(test_encode_cluster),    cmocka_unit_test(test_router),
                cmocka_unit_test(test_cluster_actions),
        };

        cm_test_engine_register();
        return cmocka_run_group_tests(tests, NULL, NULL);
}
