/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Add-on manifests (src/kube/manifest.c): decoding multi-document YAML and JSON into validated objects,
 * each refusal with where and why (never quoting the input), the limits, and the apply order.
 */
#include "base/common.h"

#include <setjmp.h>
#include <cmocka.h>
#include <jansson.h>

#include "base/strbuf.h"
#include "cli/yaml.h"
#include "kube/manifest.h"

/* Planted in refused values: no reason may repeat it. */
#define CANARY "zq7canaryzq7"

#define CM(name) "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " name "\n"

static int parse(const char *text, struct cm_manifest *m, struct cm_manifest_error *err) {
        return cm_manifest_parse(text, strlen(text), m, err);
}

static void assert_object(const struct cm_manifest_object *o, const char *api_version, const char *kind,
                          const char *namespace, const char *name, unsigned doc, unsigned item,
                          unsigned line) {
        assert_string_equal(o->api_version, api_version);
        assert_string_equal(o->kind, kind);
        if (namespace)
                assert_string_equal(o->namespace, namespace);
        else
                assert_null(o->namespace);
        assert_string_equal(o->name, name);
        assert_int_equal(o->doc, doc);
        assert_int_equal(o->item, item);
        assert_int_equal(o->line, line);
        /* The pointers point into the object. */
        assert_ptr_equal(o->name,
                         json_string_value(json_object_get(json_object_get(o->object, "metadata"), "name")));
        assert_ptr_equal(o->kind, json_string_value(json_object_get(o->object, "kind")));
}

static void test_streams(void **state) {
        static const char text[] = "# an add-on\n"
                                   "---\n"
                                   "apiVersion: v1\n"
                                   "kind: Namespace\n"
                                   "metadata:\n"
                                   "  name: monitoring\n"
                                   "---\n"
                                   "# only a comment\n"
                                   "---\n"
                                   "---\n"
                                   "apiVersion: apps/v1\n"
                                   "kind: Deployment\n"
                                   "metadata:\n"
                                   "  name: agent\n"
                                   "  namespace: monitoring\n"
                                   "spec:\n"
                                   "  replicas: 2\n"
                                   "...\n"
                                   "---\n"
                                   "null\n"
                                   "--- # a comment on the marker\n"
                                   "\n"
                                   "apiVersion: monitoring.coreos.com/v1\n"
                                   "kind: ServiceMonitor\n"
                                   "metadata: {name: agent, namespace: monitoring, labels: {app: agent}}\n";
        struct cm_manifest m = {};
        struct cm_manifest_error err = {};

        assert_int_equal(parse(text, &m, &err), 0);
        assert_int_equal(m.n, 3);
        assert_object(&m.objects[0], "v1", "Namespace", NULL, "monitoring", 1, 0, 3);
        assert_object(&m.objects[1], "apps/v1", "Deployment", "monitoring", "agent", 4, 0, 11);
        assert_int_equal(json_integer_value(
                                 json_object_get(json_object_get(m.objects[1].object, "spec"), "replicas")),
                         2);
        assert_object(&m.objects[2], "monitoring.coreos.com/v1", "ServiceMonitor", "monitoring", "agent", 6,
                      0, 23);
        cm_manifest_done(&m);
        assert_null(m.objects);
        assert_int_equal(m.n, 0);
        cm_manifest_done(&m);
        cm_manifest_done(NULL);

        /* Nothing at all, or only comments and markers: no objects, and that is not an error. */
        assert_int_equal(parse("", &m, &err), 0);
        assert_int_equal(m.n, 0);
        assert_int_equal(parse("# nothing\n---\n# here\n---\n", &m, &err), 0);
        assert_int_equal(m.n, 0);
        cm_manifest_done(&m);

        /* No document marker at all. */
        assert_int_equal(parse(CM("one"), &m, &err), 0);
        assert_int_equal(m.n, 1);
        assert_object(&m.objects[0], "v1", "ConfigMap", NULL, "one", 1, 0, 1);
        cm_manifest_done(&m);
}

static void test_crlf(void **state) {
        static const char text[] = "apiVersion: v1\r\n"
                                   "kind: ConfigMap\r\n"
                                   "metadata:\r\n"
                                   "  name: crlf\r\n"
                                   "data:\r\n"
                                   "  script: |\r\n"
                                   "    one\r\n"
                                   "    two\r\n"
                                   "---\r\n"
                                   "apiVersion: v1\r\n"
                                   "kind: ConfigMap\r\n"
                                   "metadata:\r\n"
                                   "  name: second\r\n";
        struct cm_manifest m = {};
        struct cm_manifest_error err = {};

        assert_int_equal(parse(text, &m, &err), 0);
        assert_int_equal(m.n, 2);
        assert_object(&m.objects[0], "v1", "ConfigMap", NULL, "crlf", 1, 0, 1);
        assert_string_equal(
                json_string_value(json_object_get(json_object_get(m.objects[0].object, "data"), "script")),
                "one\ntwo\n");
        assert_object(&m.objects[1], "v1", "ConfigMap", NULL, "second", 2, 0, 10);
        cm_manifest_done(&m);
}

static void test_lists(void **state) {
        static const char text[] =
                CM("before") "---\n"
                             "apiVersion: v1\n"
                             "kind: List\n"
                             "metadata: {resourceVersion: \"\"}\n"
                             "items:\n"
                             "- apiVersion: v1\n"
                             "  kind: ServiceAccount\n"
                             "  metadata: {name: sa, namespace: ns1}\n"
                             "- apiVersion: rbac.authorization.k8s.io/v1\n"
                             "  kind: ClusterRole\n"
                             "  metadata: {name: reader}\n"
                             "---\n"
                             "apiVersion: v1\n"
                             "kind: ConfigMapList\n"
                             "items:\n"
                             "- {apiVersion: v1, kind: ConfigMap, metadata: {name: listed}}\n"
                             "---\n"
                             "apiVersion: v1\n"
                             "kind: List\n"
                             "items: []\n"
                             "---\n"
                             "apiVersion: v1\n"
                             "kind: List\n";
        struct cm_manifest m = {};
        struct cm_manifest_error err = {};

        assert_int_equal(parse(text, &m, &err), 0);
        assert_int_equal(m.n, 4);
        assert_object(&m.objects[0], "v1", "ConfigMap", NULL, "before", 1, 0, 1);
        assert_object(&m.objects[1], "v1", "ServiceAccount", "ns1", "sa", 2, 1, 6);
        assert_object(&m.objects[2], "rbac.authorization.k8s.io/v1", "ClusterRole", NULL, "reader", 2, 2, 6);
        assert_object(&m.objects[3], "v1", "ConfigMap", NULL, "listed", 3, 1, 17);
        cm_manifest_done(&m);

        /* A kind ending in List without items is an object of its own (a custom resource's kind). */
        assert_int_equal(
                parse("apiVersion: example.com/v1\nkind: AccessList\nmetadata: {name: a}\n", &m, &err), 0);
        assert_int_equal(m.n, 1);
        assert_string_equal(m.objects[0].kind, "AccessList");
        cm_manifest_done(&m);
}

static void test_json(void **state) {
        static const char one[] = "\n  {\"apiVersion\": \"v1\", \"kind\": \"Secret\",\n"
                                  "   \"metadata\": {\"name\": \"s\", \"namespace\": \"ns\"},\n"
                                  "   \"stringData\": {\"password\": \"\\ud83d\\ude00\"}}\n";
        static const char list[] =
                "{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [\n"
                "  {\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"a\"}},\n"
                "  {\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"b\"}}]}";
        struct cm_manifest m = {};
        struct cm_manifest_error err = {};

        assert_int_equal(parse(one, &m, &err), 0);
        assert_int_equal(m.n, 1);
        assert_object(&m.objects[0], "v1", "Secret", "ns", "s", 1, 0, 2);
        assert_string_equal(json_string_value(json_object_get(
                                    json_object_get(m.objects[0].object, "stringData"), "password")),
                            "\xf0\x9f\x98\x80");
        cm_manifest_done(&m);

        assert_int_equal(parse(list, &m, &err), 0);
        assert_int_equal(m.n, 2);
        assert_object(&m.objects[0], "v1", "ConfigMap", NULL, "a", 1, 1, 1);
        assert_object(&m.objects[1], "v1", "ConfigMap", NULL, "b", 1, 2, 1);
        cm_manifest_done(&m);
}

struct refusal {
        const char *text;
        int r;
        unsigned doc, item, line;
        const char *reason; /* a part of the reason */
};

/* Runs every case and reports every mismatch before failing. */
static void check_refusals(const struct refusal *cases, size_t n) {
        unsigned failed = 0;

        for (size_t i = 0; i < n; i++) {
                struct cm_manifest m = { .objects = (void *) 1, .n = 42 };
                struct cm_manifest_error err = {};
                char text[512];
                int r;

                r = parse(cases[i].text, &m, &err);
                cm_manifest_error_format(&err, text, sizeof(text));
                if (r != cases[i].r) {
                        print_error("case %zu: got %d (%s), want %d\n", i, r, text, cases[i].r);
                        failed++;
                        if (r == 0)
                                cm_manifest_done(&m);
                        continue;
                }
                /* *ret is not written on failure. */
                if (m.objects != (void *) 1 || m.n != 42) {
                        print_error("case %zu: the manifest was written\n", i);
                        failed++;
                }
                if (err.doc != cases[i].doc || err.item != cases[i].item || err.line != cases[i].line) {
                        print_error("case %zu: %s: at document %u, item %u, line %u; want %u, %u, %u\n", i,
                                    text, err.doc, err.item, err.line, cases[i].doc, cases[i].item,
                                    cases[i].line);
                        failed++;
                }
                if (!strstr(err.reason, cases[i].reason)) {
                        print_error("case %zu: reason '%s' lacks '%s'\n", i, err.reason, cases[i].reason);
                        failed++;
                }
                if (strstr(text, CANARY)) {
                        print_error("case %zu: the error quotes the input: %s\n", i, text);
                        failed++;
                }
        }
        assert_int_equal(failed, 0);
}

static void test_refusals(void **state) {
        static const struct refusal cases[] = {
                /* Malformed YAML: the line of the problem. */
                { CM("a") "---\n" CM("b") "data:\n  k: [unclosed, " CANARY "\n", -EINVAL, 2, 0, 12,
                  "did not find expected" },
                { CM("a") "  bad indent: " CANARY "\n x: y\n", -EINVAL, 1, 0, 6, "" },
                { "a: \"\\x" CANARY "\"\n", -EINVAL, 1, 0, 1, "" },
                { "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n" CANARY ": 1\n" CANARY ": 2\n",
                  -EINVAL, 1, 0, 5, "duplicate key" },
                /* Anchors and aliases are refused by the converter, without naming them. */
                { CM("a") "data:\n  x: &" CANARY " v\n  y: *" CANARY "\n", -EINVAL, 1, 0, 6, "anchors" },
                { CM("a") "data:\n  y: *" CANARY "\n", -EINVAL, 1, 0, 6, "aliases" },
                { CM("a") "data:\n  y: !" CANARY " v\n", -EINVAL, 1, 0, 6, "tag" },
                { CM("a") "data:\n  y: !!int " CANARY "\n", -EINVAL, 1, 0, 6, "not a valid int" },
                { CM("a") "data:\n  y: 999999999999999999999999\n", -EINVAL, 1, 0, 6, "out of range" },
                /* What every object needs. */
                { "kind: ConfigMap\nmetadata: {name: a}\n", -EINVAL, 1, 0, 1, "apiVersion is missing" },
                { "apiVersion: v1\nmetadata: {name: a}\n", -EINVAL, 1, 0, 1, "kind is missing" },
                { "apiVersion: 1\nkind: ConfigMap\nmetadata: {name: a}\n", -EINVAL, 1, 0, 1,
                  "apiVersion must be a string, not a number" },
                { "apiVersion: v1\nkind: [ConfigMap]\nmetadata: {name: a}\n", -EINVAL, 1, 0, 1,
                  "kind must be a string, not a sequence" },
                { "apiVersion: v1\nkind: ConfigMap\n", -EINVAL, 1, 0, 1, "metadata is missing" },
                { "apiVersion: v1\nkind: ConfigMap\nmetadata: " CANARY "\n", -EINVAL, 1, 0, 1,
                  "metadata must be a mapping, not a string" },
                { "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", -EINVAL, 1, 0, 1,
                  "metadata.name is missing" },
                { "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: 7}\n", -EINVAL, 1, 0, 1,
                  "metadata.name must be a string" },
                { "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: \"a\\0b\"}\n", -EINVAL, 1, 0, 1,
                  "metadata.name must not contain NUL" },
                { "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: " CANARY "-}\n", -EINVAL, 1, 0,
                  1, "metadata.generateName is not supported" },
                { "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, generateName: " CANARY "-}\n",
                  -EINVAL, 1, 0, 1, "metadata.generateName" },
                /* Bad values: the field is named, the value is not. */
                { "apiVersion: " CANARY "\nkind: ConfigMap\nmetadata: {name: a}\n", -EINVAL, 1, 0, 1,
                  "apiVersion is not valid" },
                { "apiVersion: V1\nkind: ConfigMap\nmetadata: {name: a}\n", -EINVAL, 1, 0, 1,
                  "apiVersion is not valid" },
                { "apiVersion: v2\nkind: ConfigMap\nmetadata: {name: a}\n", -EINVAL, 1, 0, 1,
                  "apiVersion is not valid" },
                { "apiVersion: apps/\nkind: Deployment\nmetadata: {name: a}\n", -EINVAL, 1, 0, 1,
                  "apiVersion is not valid" },
                { "apiVersion: /v1\nkind: Deployment\nmetadata: {name: a}\n", -EINVAL, 1, 0, 1,
                  "apiVersion is not valid" },
                { "apiVersion: Apps/v1\nkind: Deployment\nmetadata: {name: a}\n", -EINVAL, 1, 0, 1,
                  "apiVersion is not valid" },
                { "apiVersion: apps/v1/x\nkind: Deployment\nmetadata: {name: a}\n", -EINVAL, 1, 0, 1,
                  "apiVersion is not valid" },
                { "apiVersion: apps/1v\nkind: Deployment\nmetadata: {name: a}\n", -EINVAL, 1, 0, 1,
                  "apiVersion is not valid" },
                { "apiVersion: ex..com/v1\nkind: Thing\nmetadata: {name: a}\n", -EINVAL, 1, 0, 1,
                  "apiVersion is not valid" },
                { "apiVersion: -ex.com/v1\nkind: Thing\nmetadata: {name: a}\n", -EINVAL, 1, 0, 1,
                  "apiVersion is not valid" },
                { "apiVersion: v1\nkind: " CANARY "\nmetadata: {name: a}\n", -EINVAL, 1, 0, 1,
                  "kind is not valid" },
                { "apiVersion: v1\nkind: Config-Map\nmetadata: {name: a}\n", -EINVAL, 1, 0, 1,
                  "kind is not valid" },
                { "apiVersion: v1\nkind: "
                  "Kaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\nmetadata: {name: a}\n",
                  -EINVAL, 1, 0, 1, "kind is not valid" },
                { "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " CANARY "/x}\n", -EINVAL, 1, 0, 1,
                  "metadata.name is not valid" },
                { "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: \"" CANARY " x\"}\n", -EINVAL, 1, 0, 1,
                  "metadata.name is not valid" },
                { "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: \"..\"}\n", -EINVAL, 1, 0, 1,
                  "metadata.name is not valid" },
                { "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: \"\"}\n", -EINVAL, 1, 0, 1,
                  "metadata.name is not valid" },
                { "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: " CANARY "_x}\n", -EINVAL,
                  1, 0, 1, "metadata.namespace is not valid" },
                { "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: Default}\n", -EINVAL, 1,
                  0, 1, "metadata.namespace is not valid" },
                { "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: \"\"}\n", -EINVAL, 1, 0,
                  1, "metadata.namespace is not valid" },
                { "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: [x]}\n", -EINVAL, 1, 0, 1,
                  "metadata.namespace must be a string" },
                /* Documents that are not objects. */
                { CANARY "\n", -EINVAL, 1, 0, 1, "not a string" },
                { CM("a") "---\n- " CANARY "\n- b\n", -EINVAL, 2, 0, 6, "a document must be a mapping" },
                { "42\n", -EINVAL, 1, 0, 1, "not a number" },
                { "[1, 2]\n", -EINVAL, 1, 0, 1, "not a sequence" },
                /* Duplicates: the group counts, the version does not. */
                { CM("a") "---\n" CM("a"), -EINVAL, 2, 0, 6, "the same object" },
                { "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a, namespace: x}\n---\n"
                  "apiVersion: apps/v1beta2\nkind: Deployment\nmetadata: {name: a, namespace: x}\n",
                  -EINVAL, 2, 0, 5, "as document 1" },
                { CM("a") "---\napiVersion: v1\nkind: List\nitems:\n"
                          "- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n"
                          "- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n",
                  -EINVAL, 2, 2, 6, "as document 1" },
                /* Lists. */
                { "apiVersion: v1\nkind: List\nitems: {a: b}\n", -EINVAL, 1, 0, 1,
                  "items must be a sequence" },
                { "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: "
                  "a}}\n"
                  "- " CANARY "\n",
                  -EINVAL, 1, 2, 1, "an object must be a mapping, not a string" },
                { "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: List, items: []}\n", -EINVAL,
                  1, 1, 1, "a List inside a List" },
                { "kind: List\nitems: []\n", -EINVAL, 1, 0, 1, "apiVersion is missing" },
                { "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: "
                  "a}}\n"
                  "- {apiVersion: v1, kind: ConfigMap, metadata: {name: " CANARY "/}}\n",
                  -EINVAL, 1, 2, 1, "metadata.name is not valid" },
                /* JSON: jansson's own text quotes the input and is not used. */
                { "{\"apiVersion\": \"v1\", \"kind\": " CANARY "}", -EINVAL, 1, 0, 1, "invalid JSON" },
                { "{\"apiVersion\": \"v1\",\n \"kind\": \"" CANARY "\", \"kind\": \"x\"}", -EINVAL, 1, 0, 2,
                  "duplicate key" },
                { "{\"apiVersion\": \"v1\"} " CANARY, -EINVAL, 1, 0, 1, "more after the JSON object" },
                { "\n\n{\"apiVersion\": \"v1\", \"kind\": \"" CANARY "\", \"metadata\": {\"name\": \"a\"}}",
                  -EINVAL, 1, 0, 3, "kind is not valid" },
                { "{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": "
                  "\"a\"}}\n---\n" CM("b"),
                  -EINVAL, 1, 0, 2, "more after the JSON object" },
        };

        check_refusals(cases, ELEMENTSOF(cases));
}

/* n ConfigMaps, one per document (list == false) or as the items of one List. */
static char *many(unsigned n, bool list) {
        struct strbuf sb = STRBUF_INIT(CM_MANIFEST_MAX);

        if (list)
                assert_int_equal(strbuf_addl(&sb, "apiVersion: v1\nkind: List\nitems:\n"), 0);
        for (unsigned i = 0; i < n; i++) {
                if (list)
                        assert_int_equal(
                                strbuf_addf(&sb,
                                            "- {apiVersion: v1, kind: ConfigMap, metadata: {name: c%u}}\n",
                                            i),
                                0);
                else
                        assert_int_equal(strbuf_addf(&sb, "---\n" CM("c%u"), i), 0);
        }
        return strbuf_detach(&sb, NULL);
}

/* A ConfigMap whose data.x nests levels deep in all (the object itself is the first level). */
static char *nested(const char *name, unsigned levels, bool json) {
        struct strbuf sb = STRBUF_INIT(1 << 20);

        if (json)
                assert_int_equal(strbuf_addf(&sb,
                                             "{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", "
                                             "\"metadata\": {\"name\": \"%s\"}, \"data\": {\"x\": ",
                                             name),
                                 0);
        else
                assert_int_equal(strbuf_addf(&sb,
                                             "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n"
                                             "data:\n  x: ",
                                             name),
                                 0);
        for (unsigned i = 2; i < levels; i++)
                assert_int_equal(strbuf_addch(&sb, '['), 0);
        for (unsigned i = 2; i < levels; i++)
                assert_int_equal(strbuf_addch(&sb, ']'), 0);
        assert_int_equal(strbuf_adds(&sb, json ? "}}" : "\n"), 0);
        return strbuf_detach(&sb, NULL);
}

static void test_limits(void **state) {
        struct cm_manifest m = {};
        struct cm_manifest_error err = {};
        char *text;

        text = many(CM_MANIFEST_OBJECTS_MAX, false);
        assert_int_equal(parse(text, &m, &err), 0);
        assert_int_equal(m.n, CM_MANIFEST_OBJECTS_MAX);
        cm_manifest_done(&m);
        free(text);
        text = many(CM_MANIFEST_OBJECTS_MAX + 1, false);
        assert_int_equal(parse(text, &m, &err), -EFBIG);
        assert_int_equal(err.doc, CM_MANIFEST_OBJECTS_MAX + 1);
        assert_non_null(strstr(err.reason, "more than 5000 objects"));
        free(text);

        text = many(CM_MANIFEST_OBJECTS_MAX, true);
        assert_int_equal(parse(text, &m, &err), 0);
        assert_int_equal(m.n, CM_MANIFEST_OBJECTS_MAX);
        cm_manifest_done(&m);
        free(text);
        text = many(CM_MANIFEST_OBJECTS_MAX + 1, true);
        assert_int_equal(parse(text, &m, &err), -EFBIG);
        assert_int_equal(err.doc, 1);
        free(text);

        /* Larger than CM_MANIFEST_MAX: refused before anything is read. */
        text = malloc(CM_MANIFEST_MAX + 1);
        assert_non_null(text);
        memset(text, '#', CM_MANIFEST_MAX + 1);
        assert_int_equal(cm_manifest_parse(text, CM_MANIFEST_MAX + 1, &m, &err), -EFBIG);
        assert_int_equal(err.doc, 0);
        assert_int_equal(err.line, 0);
        assert_non_null(strstr(err.reason, "larger than"));
        /* Exactly CM_MANIFEST_MAX of comments: nothing, and fine. */
        text[CM_MANIFEST_MAX - 1] = '\n';
        assert_int_equal(cm_manifest_parse(text, CM_MANIFEST_MAX, &m, &err), 0);
        assert_int_equal(m.n, 0);
        free(text);

        /* The depth limit counts per document; JSON has it too. */
        text = nested("a", CM_DOCUMENT_MAX_DEPTH, false);
        assert_int_equal(parse(text, &m, &err), 0);
        cm_manifest_done(&m);
        free(text);
        text = nested("a", CM_DOCUMENT_MAX_DEPTH + 1, false);
        assert_int_equal(parse(text, &m, &err), -EINVAL);
        assert_non_null(strstr(err.reason, "nesting deeper than"));
        free(text);
        text = nested("a", CM_DOCUMENT_MAX_DEPTH + 1, true);
        assert_int_equal(parse(text, &m, &err), -EINVAL);
        assert_non_null(strstr(err.reason, "nesting deeper than"));
        free(text);
        {
                _cleanup_free_ char *a = nested("a", CM_DOCUMENT_MAX_DEPTH, false);
                _cleanup_free_ char *b = nested("b", CM_DOCUMENT_MAX_DEPTH, false);
                struct strbuf sb = STRBUF_INIT(1 << 20);

                assert_int_equal(strbuf_addf(&sb, "%s---\n%s", a, b), 0);
                text = strbuf_detach(&sb, NULL);
                assert_int_equal(parse(text, &m, &err), 0);
                assert_int_equal(m.n, 2);
                cm_manifest_done(&m);
                free(text);
        }
}

static void test_sort(void **state) {
        /* Shuffled; the expected order of names is a, b, c, ... */
        static const char text[] =
                "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: q}\n"
                "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: l}\n"
                "---\napiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: r}\n"
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: g}\n"
                "---\napiVersion: admissionregistration.k8s.io/v1\n"
                "kind: ValidatingWebhookConfiguration\nmetadata: {name: n}\n"
                "---\napiVersion: v1\nkind: Service\nmetadata: {name: k}\n"
                "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n"
                "metadata: {name: j}\n"
                "---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
                "metadata: {name: c}\n"
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: h}\n"
                "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n"
                "metadata: {name: i}\n"
                "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n"
                "---\napiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: o}\n"
                "---\napiVersion: v1\nkind: Secret\nmetadata: {name: f}\n"
                "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: s}\n"
                "---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: e}\n"
                "---\napiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: d}\n"
                "---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: m}\n"
                "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n"
                "---\napiVersion: v1\nkind: Endpoints\nmetadata: {name: p}\n";
        struct cm_manifest m = {};
        struct cm_manifest_error err = {};
        char names[64] = "";

        assert_int_equal(parse(text, &m, &err), 0);
        assert_int_equal(m.n, 19);
        cm_manifest_sort(&m);
        for (size_t i = 0; i < m.n; i++)
                names[i] = m.objects[i].name[0];
        assert_string_equal(names, "abcdefghijklmnopqrs");
        assert_true(cm_manifest_is_crd(&m.objects[2]));
        assert_false(cm_manifest_is_crd(&m.objects[0]));
        /* Sorting again changes nothing. */
        cm_manifest_sort(&m);
        for (size_t i = 0; i < m.n; i++)
                assert_int_equal(m.objects[i].name[0], names[i]);
        cm_manifest_done(&m);

        /* Stable: objects of one class keep their stream order, List items included. */
        {
                static const char same[] =
                        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\n"
                        "---\n" CM(
                                "c1") "---\napiVersion: example.com/v1\nkind: Gadget\n"
                                      "metadata: {name: w2}\n"
                                      "---\napiVersion: v1\nkind: List\nitems:\n"
                                      "- {apiVersion: example.com/v1, kind: Widget, metadata: {name: w3}}\n"
                                      "- {apiVersion: v1, kind: ConfigMap, metadata: {name: c2}}\n"
                                      "- {apiVersion: v1, kind: ConfigMap, metadata: {name: c3}}\n"
                                      "---\n" CM("c4") "---\napiVersion: example.com/v1\nkind: Widget\n"
                                                       "metadata: {name: w4}\n";
                static const char *const want[] = { "c1", "c2", "c3", "c4", "w1", "w2", "w3", "w4" };

                assert_int_equal(parse(same, &m, &err), 0);
                assert_int_equal(m.n, ELEMENTSOF(want));
                cm_manifest_sort(&m);
                for (size_t i = 0; i < m.n; i++)
                        assert_string_equal(m.objects[i].name, want[i]);
                cm_manifest_done(&m);
        }

        /* Nothing to sort. */
        cm_manifest_sort(&m);
}

static bool all_wiped(const json_t *v) {
        const char *key;
        json_t *child;
        size_t i;

        if (json_is_string(v)) {
                for (i = 0; i < json_string_length(v); i++)
                        if (json_string_value(v)[i])
                                return false;
                return true;
        }
        if (json_is_object(v)) {
                json_object_foreach(CM_UNCONST(json_t *, v), key, child) {
                        if (!all_wiped(child))
                                return false;
                }
        }
        return true;
}

static void test_done_wipes_secrets(void **state) {
        static const char text[] = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"
                                   "stringData: {password: " CANARY "}\n"
                                   "---\n" CM("c") "data: {k: v}\n";
        struct cm_manifest m = {};
        struct cm_manifest_error err = {};
        json_t *secret, *config;

        assert_int_equal(parse(text, &m, &err), 0);
        assert_int_equal(m.n, 2);
        /* Extra references let the test look after the manifest is done (as the header warns). */
        secret = json_incref(m.objects[0].object);
        config = json_incref(m.objects[1].object);
        cm_manifest_done(&m);
        assert_true(all_wiped(secret));
        assert_string_equal(json_string_value(json_object_get(json_object_get(config, "data"), "k")), "v");
        json_decref(secret);
        json_decref(config);
}

static void test_set_namespace(void **state) {
        struct cm_manifest m = {};
        struct cm_manifest_error err = {};
        struct cm_manifest_object *o;

        assert_int_equal(
                parse(CM("a") "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: x}\n",
                      &m, &err),
                0);
        o = &m.objects[0];
        assert_null(o->namespace);
        assert_int_equal(cm_manifest_object_set_namespace(o, "team-a"), 0);
        assert_string_equal(o->namespace, "team-a");
        assert_ptr_equal(o->namespace, json_string_value(json_object_get(
                                               json_object_get(o->object, "metadata"), "namespace")));
        o = &m.objects[1];
        assert_int_equal(cm_manifest_object_set_namespace(o, "y"), 0);
        assert_string_equal(o->namespace, "y");
        assert_int_equal(cm_manifest_object_set_namespace(o, "Not_A_Label"), -EINVAL);
        assert_int_equal(cm_manifest_object_set_namespace(o, ""), -EINVAL);
        assert_int_equal(cm_manifest_object_set_namespace(o, NULL), -EINVAL);
        assert_string_equal(o->namespace, "y");
        cm_manifest_done(&m);
}

static void test_error_format(void **state) {
        struct cm_manifest_error e = {
                .doc = 3, .item = 2, .line = 40, .reason = "metadata.name is missing"
        };
        char buf[128];

        cm_manifest_error_format(&e, buf, sizeof(buf));
        assert_string_equal(buf, "document 3, item 2 (line 40): metadata.name is missing");
        e.item = 0;
        e.column = 5;
        cm_manifest_error_format(&e, buf, sizeof(buf));
        assert_string_equal(buf, "document 3 (line 40, column 5): metadata.name is missing");
        e = (struct cm_manifest_error){ .reason = "the manifest is larger than 8388608 bytes" };
        cm_manifest_error_format(&e, buf, sizeof(buf));
        assert_string_equal(buf, "the manifest is larger than 8388608 bytes");

        /* A refusal without an error to fill in. */
        {
                struct cm_manifest m = {};

                assert_int_equal(cm_manifest_parse("[", 1, &m, NULL), -EINVAL);
                assert_null(m.objects);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_streams),       cmocka_unit_test(test_crlf),
                cmocka_unit_test(test_lists),         cmocka_unit_test(test_json),
                cmocka_unit_test(test_refusals),      cmocka_unit_test(test_limits),
                cmocka_unit_test(test_sort),          cmocka_unit_test(test_done_wipes_secrets),
                cmocka_unit_test(test_set_namespace), cmocka_unit_test(test_error_format),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
