/* SPDX-License-Identifier: Apache-2.0 */
/* The add-on API's documents (addons/definition.h): every refusal with its field, and no input echoed. */
#include "base/common.h"

#include <setjmp.h>
#include <cmocka.h>
#include <jansson.h>

#include "addons/definition.h"
#include "api/problem.h"

/* Planted in values, names and manifests: no reason may quote it. */
#define CANARY "Canary-Pw-4f1d9a2e"

#define CM "apiVersion: v1\\nkind: ConfigMap\\nmetadata:\\n  name: settings\\ndata:\\n  a: b\\n"
#define CHART                                                                                               \
        "\"chart\":{\"repository\":\"https://charts.example.com\",\"name\":\"m\",\"version\":\"1.2.3\"}"

struct refusal {
        const char *body;
        const char *field;
        const char *reason_part; /* NULL: any reason */
};

static const struct refusal refusals[] = {
        /* manifests: invalid YAML with where it is, a document without kind, secrets not quoted */
        { "{\"name\":\"a\",\"kind\":\"manifest\",\"version\":\"1\",\"manifests\":\"a: [1, 2\\n  b: " CANARY
          "\\n\"}",
          "manifests", "line" },
        { "{\"name\":\"a\",\"kind\":\"manifest\",\"version\":\"1\",\"manifests\":\"" CM
          "---\\napiVersion: v1\\nmetadata:\\n  name: " CANARY "\\n\"}",
          "manifests", "document 2" },
        { "{\"name\":\"a\",\"kind\":\"manifest\",\"version\":\"1\",\"manifests\":\"" CM
          "---\\napiVersion: v1\\nmetadata:\\n  name: x\\n\"}",
          "manifests", "kind" },
        { "{\"name\":\"a\",\"kind\":\"manifest\",\"version\":\"1\",\"manifests\":\"apiVersion: v1\\nkind: "
          "Secret\\nmetadata: {name: x, namespace: " CANARY "}\\n\"}",
          "manifests", "metadata.namespace" },
        { "{\"name\":\"a\",\"kind\":\"manifest\",\"version\":\"1\",\"manifests\":5}", "manifests",
          "string" },
        { "{\"name\":\"a\",\"kind\":\"manifest\",\"version\":\"1\",\"manifests\":\"\"}", "manifests",
          "empty" },
        { "{\"name\":\"a\",\"kind\":\"manifest\",\"version\":\"1\"}", "manifests", "required" },
        /* kind and its members */
        { "{\"name\":\"a\",\"kind\":\"manifest\",\"version\":\"1\",\"manifests\":\"" CM "\"," CHART "}",
          "chart", "only for kind helm" },
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"1\"}", "chart", "required" },
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"1\"," CHART ",\"manifests\":\"" CM "\"}",
          "manifests", "only for kind manifest" },
        { "{\"name\":\"a\",\"kind\":\"kustomize\",\"version\":\"1\"}", "kind", "manifest or helm" },
        { "{\"name\":\"a\",\"version\":\"1\"}", "kind", "required" },
        /* chart references */
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"1\",\"chart\":{\"repository\":\"file:///"
          "etc/" CANARY "\",\"name\":\"m\",\"version\":\"1.2.3\"}}",
          "chart.repository", "https://" },
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"1\",\"chart\":{\"repository\":\"https://u:" CANARY
          "@charts.example.com\",\"name\":\"m\",\"version\":\"1.2.3\"}}",
          "chart.repository", "credentials" },
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"1\",\"chart\":{\"repository\":\"https://"
          "c.example.com\","
          "\"version\":\"1.2.3\"}}",
          "chart.name", "required" },
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"1\",\"chart\":{\"repository\":\"https://"
          "c.example.com\","
          "\"name\":\"-m\",\"version\":\"1.2.3\"}}",
          "chart.name", NULL },
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"1\",\"chart\":{\"oci\":\"oci://r.example.com/"
          "m:1\","
          "\"version\":\"1.2.3\"}}",
          "chart.oci", "without tag" },
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"1\",\"chart\":{\"oci\":\"oci://r.example.com/m\","
          "\"name\":\"m\",\"version\":\"1.2.3\"}}",
          "chart.name", "not with chart.oci" },
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"1\",\"chart\":{\"oci\":\"oci://r.example.com/m\","
          "\"repository\":\"https://c.example.com\",\"version\":\"1.2.3\"}}",
          "chart.oci", "either" },
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"1\",\"chart\":{\"oci\":\"oci://r.example.com/"
          "m\"}}",
          "chart.version", "required" },
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"1\",\"chart\":{\"oci\":\"oci://r.example.com/m\","
          "\"version\":\">=1.0\"}}",
          "chart.version", "exact" },
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"1\",\"chart\":{\"oci\":\"oci://r.example.com/m\","
          "\"version\":\"1.0.0\",\"digest\":\"x\"}}",
          "chart.digest", "unknown" },
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"1\",\"chart\":\"oci://r.example.com/m\"}",
          "chart", "object" },
        /* names, versions, numbers, values */
        { "{\"name\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"kind\":\"helm\","
          "\"version\":\"1\"," CHART "}",
          "name", "53" },
        { "{\"name\":\"" CANARY "\",\"kind\":\"helm\",\"version\":\"1\"," CHART "}", "name", "DNS label" },
        { "{\"kind\":\"helm\",\"version\":\"1\"," CHART "}", "name", "required" },
        { "{\"name\":\"a\",\"kind\":\"helm\"," CHART "}", "version", "required" },
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"\"," CHART "}", "version", "printable" },
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"" CANARY "\\n\"," CHART "}", "version",
          "printable" },
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"1\",\"timeoutSeconds\":9," CHART "}",
          "timeoutSeconds", "10 to 3600" },
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"1\",\"timeoutSeconds\":3601," CHART "}",
          "timeoutSeconds", "10 to 3600" },
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"1\",\"timeoutSeconds\":\"60\"," CHART "}",
          "timeoutSeconds", NULL },
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"1\",\"driftIntervalSeconds\":86401," CHART "}",
          "driftIntervalSeconds", "10 to 86400" },
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"1\",\"values\":[\"" CANARY "\"]," CHART "}",
          "values", "object" },
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"1\",\"values\":\"" CANARY "\"," CHART "}",
          "values", "object" },
        { "{\"name\":\"a\",\"kind\":\"manifest\",\"version\":\"1\",\"manifests\":\"" CM
          "\",\"values\":{\"pw\":\"" CANARY "\"}}",
          "values", "only for kind helm" },
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"1\",\"namespace\":\"Kube_System\"," CHART "}",
          "namespace", "DNS label" },
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"1\",\"baseline\":\"yes\"," CHART "}", "baseline",
          "true or false" },
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"1\",\"description\":7," CHART "}", "description",
          NULL },
        { "{\"name\":\"a\",\"kind\":\"helm\",\"version\":\"1\",\"spec\":{}," CHART "}", "spec", "unknown" },
};

/* The problem as the client would see it. */
static char *encode_problem(const struct cm_problem *p) {
        struct strbuf sb = STRBUF_INIT(1 << 20);
        char *s;

        assert_int_equal(cm_problem_encode(p, "/v1/environments/default/addons", &sb), 0);
        s = strbuf_detach(&sb, NULL);
        assert_non_null(s);
        return s;
}

static bool has_error(const struct cm_problem *p, const char *field, const char *part) {
        const json_t *e;
        size_t i;

        json_array_foreach(p->errors, i, e) {
                const char *f = json_string_value(json_object_get(e, "field"));
                const char *reason = json_string_value(json_object_get(e, "reason"));

                if (f && streq(f, field) && reason && (!part || strstr(reason, part)))
                        return true;
        }
        return false;
}

static void test_refusals(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(refusals); i++) {
                const struct refusal *t = &refusals[i];
                struct cm_addon_doc d = {};
                struct cm_problem p;
                char *text;
                int r;

                cm_problem_init(&p);
                r = cm_addon_doc_decode(t->body, strlen(t->body), CM_ADDON_DOC_CREATE, NULL, &d, &p);
                text = encode_problem(&p);
                if (r != -EINVAL || p.status != 422 || !has_error(&p, t->field, t->reason_part))
                        fail_msg("case %zu (%s): r=%d status=%d: %s", i, t->field, r, p.status, text);
                if (strstr(text, CANARY))
                        fail_msg("case %zu quotes the input: %s", i, text);
                assert_null(d.doc_json);
                free(text);
                cm_problem_done(&p);
        }
}

static void test_manifest_reason_has_document_and_line(void **state) {
        const char *body = "{\"name\":\"a\",\"kind\":\"manifest\",\"version\":\"1\",\"manifests\":\"" CM
                           "---\\napiVersion: v1\\nkind: ConfigMap\\nmetadata:\\n  name: [x\\n\"}";
        struct cm_addon_doc d = {};
        struct cm_problem p;

        cm_problem_init(&p);
        assert_int_equal(cm_addon_doc_decode(body, strlen(body), CM_ADDON_DOC_CREATE, NULL, &d, &p),
                         -EINVAL);
        assert_true(has_error(&p, "manifests", "line 1"));
        cm_problem_done(&p);
}

static void test_malformed_and_large(void **state) {
        struct cm_addon_doc d = {};
        struct cm_problem p;
        char *big;
        size_t n = CM_ADDON_BODY_MAX + 100;

        cm_problem_init(&p);
        assert_int_equal(cm_addon_doc_decode("[1]", 3, CM_ADDON_DOC_CREATE, NULL, &d, &p), -EINVAL);
        assert_int_equal(p.status, 400);
        cm_problem_done(&p);

        /* a string past the route's cap is 413 */
        big = malloc(n + 1);
        assert_non_null(big);
        memset(big, 'x', n);
        memcpy(big, "{\"manifests\":\"", 14);
        big[n - 2] = '"';
        big[n - 1] = '}';
        big[n] = 0;
        cm_problem_init(&p);
        assert_int_equal(cm_addon_doc_decode(big, n, CM_ADDON_DOC_CREATE, NULL, &d, &p), -EINVAL);
        assert_int_equal(p.status, 413);
        cm_problem_done(&p);
        free(big);
}

static void test_defaults_and_canonical(void **state) {
        const char *body = "{\"name\":\"metrics\",\"kind\":\"helm\",\"version\":\"4.2\"," CHART
                           ",\"values\":{\"b\":1,\"a\":2}}";
        _cleanup_(cm_addon_doc_done) struct cm_addon_doc d = {};
        struct cm_problem p;
        json_t *doc;

        cm_problem_init(&p);
        assert_int_equal(cm_addon_doc_decode(body, strlen(body), CM_ADDON_DOC_CREATE, NULL, &d, &p), 0);
        cm_problem_done(&p);
        assert_string_equal(d.name, "metrics");
        assert_string_equal(d.version, "4.2");
        assert_int_equal(d.kind, CM_ADDON_HELM);
        assert_false(d.baseline);
        assert_string_equal(
                d.doc_json,
                "{\"baseline\":false,\"chart\":{\"name\":\"m\",\"repository\":\"https://"
                "charts.example.com\",\"version\":\"1.2.3\"},\"driftIntervalSeconds\":300,\"kind\":"
                "\"helm\",\"name\":\"metrics\",\"namespace\":\"default\",\"timeoutSeconds\":300,"
                "\"values\":{\"a\":2,\"b\":1},\"version\":\"4.2\"}");
        doc = json_loads(d.doc_json, 0, NULL);
        assert_non_null(doc);
        json_decref(doc);
}

static void test_replace_takes_the_path_name(void **state) {
        const char *body =
                "{\"kind\":\"manifest\",\"version\":\"2\",\"baseline\":true,\"manifests\":\"" CM "\"}";
        const char *renamed =
                "{\"name\":\"other\",\"kind\":\"manifest\",\"version\":\"2\",\"manifests\":\"" CM "\"}";
        _cleanup_(cm_addon_doc_done) struct cm_addon_doc d = {};
        struct cm_problem p;

        cm_problem_init(&p);
        assert_int_equal(cm_addon_doc_decode(body, strlen(body), CM_ADDON_DOC_REPLACE, "cfg", &d, &p), 0);
        cm_problem_done(&p);
        assert_string_equal(d.name, "cfg");
        assert_true(d.baseline);
        assert_int_equal(d.kind, CM_ADDON_MANIFEST);
        cm_addon_doc_done(&d);

        cm_problem_init(&p);
        assert_int_equal(cm_addon_doc_decode(renamed, strlen(renamed), CM_ADDON_DOC_REPLACE, "cfg", &d, &p),
                         -EINVAL);
        assert_true(has_error(&p, "name", "in the path"));
        cm_problem_done(&p);
}

#define ADDON_M "{\"addon\":\"m\"}"
#define ADDON_X "{\"addon\":\"x\",\"values\":{}}"
#define VALUES_ZA "{\"values\":{\"z\":1,\"a\":{\"b\":2}}}"

static void test_install_documents(void **state) {
        static const struct refusal create_refusals[] = {
                { "{}", "addon", "required" },
                { "{\"addon\":\"" CANARY "\"}", "addon", "DNS label" },
                { "{\"addon\":\"m\",\"values\":[\"" CANARY "\"]}", "values", "object" },
                { "{\"addon\":\"m\",\"values\":{},\"extra\":1}", "extra", "unknown" },
        };
        struct cm_problem p;
        char *addon = NULL, *values = NULL;

        for (size_t i = 0; i < ELEMENTSOF(create_refusals); i++) {
                const struct refusal *t = &create_refusals[i];
                char *text;

                cm_problem_init(&p);
                assert_int_equal(
                        cm_addon_install_doc_decode(t->body, strlen(t->body), NULL, &addon, &values, &p),
                        -EINVAL);
                text = encode_problem(&p);
                if (!has_error(&p, t->field, t->reason_part) || strstr(text, CANARY))
                        fail_msg("install case %zu: %s", i, text);
                free(text);
                cm_problem_done(&p);
        }
        cm_problem_init(&p);
        assert_int_equal(cm_addon_install_doc_decode(ADDON_M, strlen(ADDON_M), NULL, &addon, &values, &p),
                         0);
        assert_string_equal(addon, "m");
        assert_string_equal(values, "{}");
        free(addon);
        free(values);
        addon = values = NULL;
        cm_problem_done(&p);

        /* a change: values required, the add-on must be the path's */
        cm_problem_init(&p);
        assert_int_equal(cm_addon_install_doc_decode("{}", strlen("{}"), "m", NULL, &values, &p), -EINVAL);
        assert_true(has_error(&p, "values", "required"));
        cm_problem_done(&p);
        cm_problem_init(&p);
        assert_int_equal(cm_addon_install_doc_decode(ADDON_X, strlen(ADDON_X), "m", NULL, &values, &p),
                         -EINVAL);
        assert_true(has_error(&p, "addon", "in the path"));
        cm_problem_done(&p);
        cm_problem_init(&p);
        assert_int_equal(cm_addon_install_doc_decode(VALUES_ZA, strlen(VALUES_ZA), "m", NULL, &values, &p),
                         0);
        assert_string_equal(values, "{\"a\":{\"b\":2},\"z\":1}");
        free(values);
        cm_problem_done(&p);
}

static void test_names(void **state) {
        assert_true(cm_addon_name_valid("a"));
        assert_true(cm_addon_name_valid("cert-manager"));
        assert_true(cm_addon_name_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")); /* 53 */
        assert_false(cm_addon_name_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")); /* 54 */
        assert_false(cm_addon_name_valid("-a"));
        assert_false(cm_addon_name_valid("A"));
        assert_false(cm_addon_name_valid(""));
        assert_false(cm_addon_name_valid(NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_refusals),
                cmocka_unit_test(test_manifest_reason_has_document_and_line),
                cmocka_unit_test(test_malformed_and_large),
                cmocka_unit_test(test_defaults_and_canonical),
                cmocka_unit_test(test_replace_takes_the_path_name),
                cmocka_unit_test(test_install_documents),
                cmocka_unit_test(test_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
