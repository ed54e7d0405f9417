/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <setjmp.h>
#include <cmocka.h>
#include <jansson.h>
#include <sys/stat.h>

#include "base/strbuf.h"
#include "base/util.h"
#include "cli/cli.h"
#include "cli/internal.h"
#include "cli/output.h"
#include "cli/sse.h"
#include "cli/yaml.h"
#include "client/client.h"

/* ---- YAML → JSON ---------------------------------------------------------------------------- */

static char *dump(const json_t *v) {
        return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

static void test_yaml_good(void **state) {
        static const struct {
                const char *yaml;
                const char *json;
        } cases[] = {
                { "a: 1", "{\"a\":1}" },
                { "i: 42\nn: -7\np: +3\nz: 007\nh: 0x1F\no: 0o17\n",
                  "{\"i\":42,\"n\":-7,\"p\":3,\"z\":7,\"h\":31,\"o\":15}" },
                { "f: 1.5\ne: 1e3\nd: .5\nm: -2.\n", "{\"f\":1.5,\"e\":1000.0,\"d\":0.5,\"m\":-2.0}" },
                { "t: true\nT: True\nF: FALSE\nf: false\n",
                  "{\"t\":true,\"T\":true,\"F\":false,\"f\":false}" },
                { "a: null\nb: ~\nc:\nd: Null\n", "{\"a\":null,\"b\":null,\"c\":null,\"d\":null}" },
                /* YAML 1.2 core schema: the YAML 1.1 booleans are strings. */
                { "y: yes\nn: no\non: on\noff: off\n",
                  "{\"y\":\"yes\",\"n\":\"no\",\"on\":\"on\",\"off\":\"off\"}" },
                /* Quoted scalars stay strings. */
                { "q: \"123\"\ns: '1.0'\nt: 'true'\nn: \"null\"\ne: ''\n",
                  "{\"q\":\"123\",\"s\":\"1.0\",\"t\":\"true\",\"n\":\"null\",\"e\":\"\"}" },
                { "v: v1.32.13-rancher1-2\nip: 10.0.1.10\nu: https://x.example/a?b=c\n",
                  "{\"v\":\"v1.32.13-rancher1-2\",\"ip\":\"10.0.1.10\",\"u\":\"https://x.example/a?b=c\"}" },
                { "{a: [1, 2, {b: c}], d: []}", "{\"a\":[1,2,{\"b\":\"c\"}],\"d\":[]}" },
                { "- 1\n- two\n- [3]\n", "[1,\"two\",[3]]" },
                { "k: |\n  line1\n  line2\n", "{\"k\":\"line1\\nline2\\n\"}" },
                { "k: >-\n  folded\n  text\n", "{\"k\":\"folded text\"}" },
                { "a: !!str 123\nb: ! 12\nc: !!int \"5\"\nd: !!float 2\n",
                  "{\"a\":\"123\",\"b\":\"12\",\"c\":5,\"d\":2.0}" },
                { "1: one\ntrue: yes\nnull: x\n", "{\"1\":\"one\",\"true\":\"yes\",\"null\":\"x\"}" },
                { "%YAML 1.2\n---\na: 1\n...\n", "{\"a\":1}" },
                { "# comment\na: b # trailing\n", "{\"a\":\"b\"}" },
                { "s: \"caf\\u00e9 \\t\"\n", "{\"s\":\"caf\xc3\xa9 \\t\"}" },
                { "name: prod-east\n"
                  "labels: {team: payments}\n"
                  "spec:\n"
                  "  engine: rke\n"
                  "  rke:\n"
                  "    nodes:\n"
                  "      - {address: 10.0.1.10, port: 22, user: ubuntu, roles: [controlplane, etcd], "
                  "sshKey: ops}\n"
                  "    etcdSnapshots: {enabled: true, intervalHours: 6}\n",
                  "{\"name\":\"prod-east\",\"labels\":{\"team\":\"payments\"},\"spec\":{\"engine\":\"rke\","
                  "\"rke\":{"
                  "\"nodes\":[{\"address\":\"10.0.1.10\",\"port\":22,\"user\":\"ubuntu\",\"roles\":["
                  "\"controlplane\","
                  "\"etcd\"],\"sshKey\":\"ops\"}],\"etcdSnapshots\":{\"enabled\":true,\"intervalHours\":6}}}"
                  "}" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct cm_doc_error err = {};
                json_t *v = NULL;
                char *s;
                int r;

                r = cm_yaml_to_json(cases[i].yaml, strlen(cases[i].yaml), &v, &err);
                if (r < 0)
                        fail_msg("case %zu: %s (line %u, column %u)", i, err.message, err.line, err.column);
                s = dump(v);
                if (!streq(s, cases[i].json))
                        fail_msg("case %zu: got %s, want %s", i, s, cases[i].json);
                free(s);
                json_decref(v);
        }
}

static char *nested(unsigned levels, bool flow) {
        struct strbuf sb = STRBUF_INIT(1 << 20);

        for (unsigned i = 0; i < levels; i++) {
                if (flow)
                        assert_int_equal(strbuf_addch(&sb, '['), 0);
                else
                        assert_int_equal(strbuf_addf(&sb, "%*sk%u:\n", (int) (2 * i), "", i), 0);
        }
        if (flow)
                for (unsigned i = 0; i < levels; i++)
                        assert_int_equal(strbuf_addch(&sb, ']'), 0);
        else
                assert_int_equal(strbuf_addf(&sb, "%*sx\n", (int) (2 * levels), ""), 0);
        return strbuf_detach(&sb, NULL);
}

static void test_yaml_depth(void **state) {
        char *doc;
        json_t *v = NULL;
        struct cm_doc_error err = {};

        /* 32 sequences deep is the limit; 33 is rejected. */
        doc = nested(32, true);
        assert_int_equal(cm_yaml_to_json(doc, strlen(doc), &v, &err), 0);
        json_decref(v);
        free(doc);
        doc = nested(33, true);
        assert_int_equal(cm_yaml_to_json(doc, strlen(doc), &v, &err), -EINVAL);
        assert_non_null(strstr(err.message, "nesting deeper than 32"));
        assert_int_equal(err.line, 1);
        assert_int_equal(err.column, 33);
        free(doc);

        /* Block mappings: 32 levels hold a scalar at the bottom. */
        doc = nested(32, false);
        v = NULL;
        assert_int_equal(cm_yaml_to_json(doc, strlen(doc), &v, &err), 0);
        json_decref(v);
        free(doc);
        doc = nested(33, false);
        assert_int_equal(cm_yaml_to_json(doc, strlen(doc), &v, &err), -EINVAL);
        assert_non_null(strstr(err.message, "nesting deeper than 32"));
        free(doc);

        /* A megabyte of '[' stops at level 33, not after building a huge tree. */
        doc = malloc(CM_DOCUMENT_MAX);
        assert_non_null(doc);
        memset(doc, '[', CM_DOCUMENT_MAX);
        assert_int_equal(cm_yaml_to_json(doc, CM_DOCUMENT_MAX, &v, &err), -EINVAL);
        free(doc);
}

static void test_yaml_bad(void **state) {
        static const struct {
                const char *yaml;
                const char *message; /* a part of the error message */
                unsigned line; /* 0: not checked */
                unsigned column;
        } cases[] = {
                { "a: 1\nb: 2\na: 3\n", "duplicate key 'a'", 3, 1 },
                { "a: 1\n\"a\": 2\n", "duplicate key 'a'", 2, 1 },
                { "spec:\n  engine: x\n  engine: y\n", "duplicate key 'engine'", 3, 3 },
                { "{x: 1, x: 2}", "duplicate key 'x'", 1, 8 },
                { "a: &anchor 1\nb: 2\n", "anchors (&anchor) are not allowed", 1, 4 },
                { "a: 1\nb: *ref\n", "aliases (*ref) are not allowed", 2, 4 },
                { "*ref : 1\n", "aliases (*ref) are not allowed", 1, 1 },
                { "a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\n", "anchors (&a) are not allowed", 1, 4 },
                { "base: &b {x: 1}\nother:\n  <<: *b\n", "anchors (&b) are not allowed", 1, 7 },
                { "a: 1\n---\nb: 2\n", "only one document is allowed", 2, 1 },
                { "--- a\n--- b\n", "only one document is allowed", 2, 1 },
                { "", "the document is empty", 1, 1 },
                { "# only a comment\n", "the document is empty", 0, 0 },
                { "a: [1, 2\n", "did not find expected ',' or ']'", 2, 1 },
                { "a: b\n c: d\n", "mapping values are not allowed", 2, 3 },
                { "a:\n\t- 1\n", "found character that cannot start any token", 2, 1 },
                { "a: \"unterminated\n", "found unexpected end of stream", 2, 1 },
                { "x: .inf\n", ".inf cannot be represented in JSON", 1, 4 },
                { "x: -.Inf\n", "cannot be represented in JSON", 1, 4 },
                { "x: .nan\n", "cannot be represented in JSON", 1, 4 },
                { "x: 99999999999999999999\n", "out of range", 1, 4 },
                { "x: 0xFFFFFFFFFFFFFFFFF\n", "out of range", 1, 4 },
                { "x: 1e999\n", "out of range", 1, 4 },
                { "? [a, b]\n: 1\n", "mapping keys must be strings, not sequences", 1, 3 },
                { "? {a: b}\n: 1\n", "mapping keys must be strings, not mappings", 1, 3 },
                { "x: !!binary aGVsbG8=\n", "unsupported tag 'tag:yaml.org,2002:binary'", 1, 4 },
                { "x: !custom v\n", "unsupported tag '!custom'", 1, 4 },
                { "x: !!int abc\n", "'abc' is not a valid int", 1, 4 },
                { "x: !!bool 1\n", "is not a valid bool", 1, 4 },
                { "x: !!set {a}\n", "unsupported tag", 1, 4 },
                { "\"a\\0b\": 1\n", "must not contain NUL", 1, 1 },
                { "a: \"\\ud800\"\n", "invalid Unicode character escape code", 1, 7 },
                { "a: \x01\n", "control characters are not allowed", 1, 4 },
                { "a: \xff\n", "invalid leading UTF-8 octet", 1, 4 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct cm_doc_error err = {};
                json_t *v = NULL;
                int r;

                r = cm_yaml_to_json(cases[i].yaml, strlen(cases[i].yaml), &v, &err);
                if (r != -EINVAL)
                        fail_msg("case %zu (%s): got %d, want -EINVAL", i, cases[i].yaml, r);
                if (!strstr(err.message, cases[i].message))
                        fail_msg("case %zu: message '%s' lacks '%s'", i, err.message, cases[i].message);
                if (cases[i].line && (err.line != cases[i].line || err.column != cases[i].column))
                        fail_msg("case %zu (%s): at %u:%u, want %u:%u", i, err.message, err.line, err.column,
                                 cases[i].line, cases[i].column);
                assert_null(v);
        }
}

static void test_yaml_billion_laughs(void **state) {
        struct strbuf sb = STRBUF_INIT(1 << 16);
        struct cm_doc_error err = {};
        json_t *v = NULL;
        char *doc;

        assert_int_equal(
                strbuf_adds(
                        &sb,
                        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"),
                0);
        for (char c = 'b'; c <= 'i'; c++)
                assert_int_equal(strbuf_addf(&sb, "%c: &%c [*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c]\n", c, c,
                                             c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1),
                                 0);
        doc = strbuf_detach(&sb, NULL);
        assert_int_equal(cm_yaml_to_json(doc, strlen(doc), &v, &err), -EINVAL);
        assert_non_null(strstr(err.message, "anchors"));
        free(doc);
}

static void test_document_size(void **state) {
        struct cm_doc_error err = {};
        json_t *v = NULL;
        char *doc;

        doc = malloc(CM_DOCUMENT_MAX + 1);
        assert_non_null(doc);
        memset(doc, ' ', CM_DOCUMENT_MAX + 1);
        memcpy(doc, "a: 1\n", 5);
        assert_int_equal(cm_yaml_to_json(doc, CM_DOCUMENT_MAX + 1, &v, &err), -EFBIG);
        assert_non_null(strstr(err.message, "larger than"));
        /* Exactly at the cap is fine. */
        assert_int_equal(cm_yaml_to_json(doc, CM_DOCUMENT_MAX, &v, &err), 0);
        json_decref(v);
        doc[0] = '{';
        assert_int_equal(cm_document_parse(doc, CM_DOCUMENT_MAX + 1, &v, &err), -EFBIG);
        free(doc);
}

static void test_document_json(void **state) {
        static const char good[] =
                "  \n{\"name\": \"demo\", \"spec\": {\"engine\": \"local\", \"local\": {\"nodes\": 3}}}";
        struct cm_doc_error err = {};
        json_t *v = NULL;
        char *s;
        char msg[512];

        assert_int_equal(cm_document_parse(good, strlen(good), &v, &err), 0);
        s = dump(v);
        assert_string_equal(s,
                            "{\"name\":\"demo\",\"spec\":{\"engine\":\"local\",\"local\":{\"nodes\":3}}}");
        free(s);
        json_decref(v);

        /* Duplicate keys are rejected in JSON too, with where. */
        assert_int_equal(cm_document_parse("{\"a\": 1,\n \"a\": 2}", 17, &v, &err), -EINVAL);
        assert_non_null(strstr(err.message, "duplicate"));
        assert_int_equal(err.line, 2);
        cm_doc_error_format(&err, msg, sizeof(msg));
        assert_true(strneq(msg, "line 2, column ", 15));

        assert_int_equal(cm_document_parse("{\"a\": 1} x", 10, &v, &err), -EINVAL);
        assert_int_equal(cm_document_parse("{\"a\": }", 7, &v, &err), -EINVAL);

        /* Depth is bounded as for YAML: 32 levels pass, 33 do not. */
        for (int levels = 32; levels <= 33; levels++) {
                struct strbuf sb = STRBUF_INIT(4096);

                assert_int_equal(strbuf_adds(&sb, "{\"a\":"), 0);
                for (int i = 1; i < levels; i++)
                        assert_int_equal(strbuf_addch(&sb, '['), 0);
                for (int i = 1; i < levels; i++)
                        assert_int_equal(strbuf_addch(&sb, ']'), 0);
                assert_int_equal(strbuf_addch(&sb, '}'), 0);
                if (levels == 32) {
                        assert_int_equal(cm_document_parse(sb.buf, sb.len, &v, &err), 0);
                        json_decref(v);
                } else {
                        assert_int_equal(cm_document_parse(sb.buf, sb.len, &v, &err), -EINVAL);
                        assert_non_null(strstr(err.message, "nesting deeper than 32"));
                }
                strbuf_release(&sb);
        }

        /* Anything not starting with '{' is YAML (which reads flow JSON too). */
        assert_int_equal(cm_document_parse("[1, 2]", 6, &v, &err), 0);
        s = dump(v);
        assert_string_equal(s, "[1,2]");
        free(s);
        json_decref(v);
}

/* ---- JSON → YAML ---------------------------------------------------------------------------- */

static void assert_yaml(const char *json, const char *yaml) {
        struct strbuf sb = STRBUF_INIT(1 << 20);
        json_t *v = json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);

        assert_non_null(v);
        assert_int_equal(cm_json_to_yaml(v, &sb), 0);
        if (!streq(sb.buf, yaml))
                fail_msg("%s: got\n%s\nwant\n%s", json, sb.buf, yaml);
        json_decref(v);
        strbuf_release(&sb);
}

static void test_json_to_yaml(void **state) {
        assert_yaml("{\"a\":1,\"b\":\"x\",\"c\":[true,false,null],\"d\":{},\"e\":[],\"f\":1.5}",
                    "a: 1\nb: x\nc:\n- true\n- false\n- null\nd: {}\ne: []\nf: 1.5\n");
        assert_yaml("{\"t\":\"true\",\"n\":\"123\",\"f\":\"1.0\",\"z\":\"null\",\"y\":\"yes\",\"e\":\"\","
                    "\"h\":\"0x10\"}",
                    "t: 'true'\n'n': '123'\nf: '1.0'\nz: 'null'\n'y': 'yes'\ne: ''\nh: '0x10'\n");
        assert_yaml("{\"true\":1,\"1\":2}", "'true': 1\n'1': 2\n");
        assert_yaml("{\"s\":\"a: b\",\"h\":\"#x\",\"d\":\"- x\",\"q\":\"it's\"}",
                    "s: 'a: b'\nh: '#x'\nd: '- x'\nq: it's\n");
        assert_yaml("{\"m\":\"line1\\nline2\\n\"}", "m: |\n  line1\n  line2\n");
        assert_yaml("{\"r\":0.1,\"g\":1e+300,\"w\":2.0,\"neg\":-0.5}",
                    "r: 0.1\ng: 1e+300\nw: 2.0\nneg: -0.5\n");
        assert_yaml("{\"u\":\"caf\\u00e9\"}", "u: caf\xc3\xa9\n");
        assert_yaml("{\"ctl\":\"a\\u0001b\"}", "ctl: \"a\\x01b\"\n");
        assert_yaml("{\"ts\":\"2026-01-02T03:04:05.678Z\"}", "ts: '2026-01-02T03:04:05.678Z'\n");
        assert_yaml("{\"v\":\"1.32\",\"ip\":\"10.0.1.10\",\"k\":\"v1.32.13-rancher1-2\",\"t\":\"12:30\"}",
                    "v: '1.32'\nip: 10.0.1.10\nk: v1.32.13-rancher1-2\nt: '12:30'\n");
        assert_yaml("{\"nodes\":[{\"address\":\"10.0.1.10\",\"roles\":[\"etcd\"]}]}",
                    "nodes:\n- address: 10.0.1.10\n  roles:\n  - etcd\n");
}

static void test_yaml_round_trip(void **state) {
        static const char *const strings[] = {
                "",
                "true",
                "True",
                "FALSE",
                "null",
                "~",
                "yes",
                "No",
                "on",
                "OFF",
                "y",
                "n",
                "1",
                "-1",
                "+1",
                "1.0",
                ".5",
                "1e3",
                "0x1F",
                "0o17",
                "1_000",
                "1:20",
                ".inf",
                "-.inf",
                ".nan",
                "=",
                "<<",
                "- a",
                "a: b",
                "a:b",
                "#c",
                "a #c",
                "@x",
                "`x",
                "!x",
                "&x",
                "*x",
                "%x",
                "|",
                ">",
                "'",
                "\"",
                "{",
                "}",
                "[",
                "]",
                ",",
                "?",
                "? x",
                " lead",
                "trail ",
                "\t",
                "a\tb",
                "\n",
                "a\n",
                "a\nb",
                "a\n\nb",
                "a\n ",
                "\r\n",
                "caf\xc3\xa9",
                "\xe2\x80\xa8",
                "\xc2\x85",
                "\xef\xbb\xbf",
                "---",
                "...",
                "- ",
                "2026-01-02",
                "12:30:00",
                "1.32",
                "10.0.1.10",
                "1.2.3",
                "3d",
                "0b101",
                "2001-12-14t21:59:43.10-05:00",
                "v1.32.13-rancher1-2",
                "-",
                "-x",
                ".x",
                "+.5",
                "1e",
                "0x",
                "https://x.example/a?b=c#d",
        };

        for (size_t i = 0; i < ELEMENTSOF(strings); i++) {
                struct strbuf sb = STRBUF_INIT(1 << 16);
                struct cm_doc_error err = {};
                json_t *v, *back = NULL;

                v = json_pack("{s:s, s:[s], s:{s:s}}", "k", strings[i], "l", strings[i], "m", strings[i],
                              "x");
                assert_non_null(v);
                assert_int_equal(cm_json_to_yaml(v, &sb), 0);
                if (cm_yaml_to_json(sb.buf, sb.len, &back, &err) < 0)
                        fail_msg("string %zu: %s does not read back: %s\n%s", i, strings[i], err.message,
                                 sb.buf);
                if (!json_equal(v, back))
                        fail_msg("string %zu: %s reads back differently:\n%s", i, strings[i], sb.buf);
                json_decref(v);
                json_decref(back);
                strbuf_release(&sb);
        }
}

/* ---- labels --------------------------------------------------------------------------------- */

static void test_label_parse(void **state) {
        static const struct {
                const char *arg;
                int r;
                const char *key;
                const char *value;
        } cases[] = {
                { "team=payments", 0, "team", "payments" },
                { "tier=", 0, "tier", "" },
                { "app.kubernetes.io/name=demo", 0, "app.kubernetes.io/name", "demo" },
                { "a_b.c-d=X_1.2-3", 0, "a_b.c-d", "X_1.2-3" },
                { "k=v=w", -EINVAL, NULL, NULL },
                { "team", -EINVAL, NULL, NULL },
                { "=x", -EINVAL, NULL, NULL },
                { "/name=x", -EINVAL, NULL, NULL },
                { "ex_ample.com/name=x", -EINVAL, NULL, NULL },
                { "a/b/c=x", -EINVAL, NULL, NULL },
                { "prefix/=x", -EINVAL, NULL, NULL },
                { "sp ace=x", -EINVAL, NULL, NULL },
                { "k=has space", -EINVAL, NULL, NULL },
                { "k=\xc3\xa9", -EINVAL, NULL, NULL },
                { "k=0123456789012345678901234567890123456789012345678901234567890123", -EINVAL, NULL,
                  NULL },
                { "k012345678901234567890123456789012345678901234567890123456789012=v", -EINVAL, NULL,
                  NULL },
                { "k01234567890123456789012345678901234567890123456789012345678901=v", 0,
                  "k01234567890123456789012345678901234567890123456789012345678901", "v" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                json_t *labels = json_object();
                const char *reason = NULL;
                int r;

                r = cm_cli_label_parse(cases[i].arg, labels, &reason);
                if (r != cases[i].r)
                        fail_msg("case %zu (%s): got %d (%s), want %d", i, cases[i].arg, r, strna(reason),
                                 cases[i].r);
                if (r == 0)
                        assert_string_equal(json_string_value(json_object_get(labels, cases[i].key)),
                                            cases[i].value);
                else {
                        assert_non_null(reason);
                        assert_int_equal(json_object_size(labels), 0);
                }
                json_decref(labels);
        }

        {
                json_t *labels = json_object();
                const char *reason = NULL;

                assert_int_equal(cm_cli_label_parse("a=1", labels, &reason), 0);
                assert_int_equal(cm_cli_label_parse("a=2", labels, &reason), -EEXIST);
                assert_string_equal(json_string_value(json_object_get(labels, "a")), "1");
                json_decref(labels);
        }
}

/* ---- output --------------------------------------------------------------------------------- */

static const char cluster_json[] =
        "{\"id\":\"cl_1\",\"name\":\"demo\",\"environment\":\"default\",\"labels\":{\"team\":\"payments\"},"
        "\"spec\":{\"engine\":\"local\",\"local\":{\"nodes\":3}},\"generation\":2,\"resourceVersion\":\"7\","
        "\"status\":{\"phase\":\"Ready\",\"observedGeneration\":2,\"conditions\":[{\"type\":\"Ready\","
        "\"status\":"
        "\"True\",\"reason\":\"Provisioned\",\"message\":\"ok\",\"lastTransitionTime\":\"2026-01-02T03:05:"
        "00.000Z\"}],"
        "\"endpoint\":\"https://127.0.0.1:6443\",\"kubernetesVersion\":\"v1.36.1\",\"nodes\":3},"
        "\"createdAt\":\"2026-01-02T03:04:05.000Z\",\"updatedAt\":\"2026-01-02T03:05:00.000Z\"}";

static const char op_json[] =
        "{\"id\":\"op_abc\",\"type\":\"create\",\"state\":\"failed\",\"environment\":\"default\","
        "\"cluster\":\"demo\","
        "\"generation\":1,\"attempts\":5,\"maxAttempts\":5,\"error\":\"rke up: exit "
        "1\\u001b[31m\",\"cancelRequested\":"
        "false,\"requestedBy\":\"admin\",\"createdAt\":\"2026-01-02T03:04:05.000Z\",\"startedAt\":"
        "\"2026-01-02T03:04:06.000Z\",\"finishedAt\":\"2026-01-02T03:10:00.000Z\",\"nextRunAt\":null}";

static uint64_t at(const char *ts, uint64_t plus_sec) {
        uint64_t usec;

        assert_int_equal(cm_parse_rfc3339(ts, &usec), 0);
        return usec + plus_sec * USEC_PER_SEC;
}

static void assert_render(enum cm_output_format fmt, enum cm_resource kind, const char *json, uint64_t now,
                          const char *want) {
        struct strbuf sb = STRBUF_INIT(1 << 20);
        json_t *v = json_loads(json, 0, NULL);

        assert_non_null(v);
        assert_int_equal(cm_output_render(&sb, fmt, kind, v, now), 0);
        if (!streq(sb.buf, want))
                fail_msg("got\n%s\nwant\n%s", sb.buf, want);
        json_decref(v);
        strbuf_release(&sb);
}

static void test_output_cluster(void **state) {
        uint64_t now = at("2026-01-02T03:04:05.000Z", 3723);
        _cleanup_free_ char *list = NULL;

        assert_render(CM_OUTPUT_TABLE, CM_RESOURCE_CLUSTER, cluster_json, now,
                      "NAME   ENGINE   PHASE   GENERATION   NODES   AGE\n"
                      "demo   local    Ready   2            3       62m\n"
                      "\n"
                      "Environment:         default\n"
                      "Labels:              team=payments\n"
                      "Observed generation: 2\n"
                      "Endpoint:            https://127.0.0.1:6443\n"
                      "Kubernetes version:  v1.36.1\n"
                      "Created:             2026-01-02T03:04:05.000Z\n"
                      "Updated:             2026-01-02T03:05:00.000Z\n"
                      "Conditions:\n"
                      "  Ready=True (Provisioned): ok\n");

        assert_true(
                asprintf(&list,
                         "[%s,{\"name\":\"a-much-longer-name\",\"spec\":{\"engine\":\"rke\"},\"generation\":"
                         "1,"
                         "\"status\":{\"phase\":\"Pending\"},\"createdAt\":\"2026-01-02T03:04:05.000Z\"}]",
                         cluster_json) > 0);
        assert_render(CM_OUTPUT_TABLE, CM_RESOURCE_CLUSTER, list, now,
                      "NAME                 ENGINE   PHASE     GENERATION   NODES   AGE\n"
                      "demo                 local    Ready     2            3       62m\n"
                      "a-much-longer-name   rke      Pending   1            -       62m\n");

        assert_render(CM_OUTPUT_YAML, CM_RESOURCE_CLUSTER, cluster_json, now,
                      "id: cl_1\n"
                      "name: demo\n"
                      "environment: default\n"
                      "labels:\n"
                      "  team: payments\n"
                      "spec:\n"
                      "  engine: local\n"
                      "  local:\n"
                      "    nodes: 3\n"
                      "generation: 2\n"
                      "resourceVersion: '7'\n"
                      "status:\n"
                      "  phase: Ready\n"
                      "  observedGeneration: 2\n"
                      "  conditions:\n"
                      "  - type: Ready\n"
                      "    status: 'True'\n"
                      "    reason: Provisioned\n"
                      "    message: ok\n"
                      "    lastTransitionTime: '2026-01-02T03:05:00.000Z'\n"
                      "  endpoint: https://127.0.0.1:6443\n"
                      "  kubernetesVersion: v1.36.1\n"
                      "  nodes: 3\n"
                      "createdAt: '2026-01-02T03:04:05.000Z'\n"
                      "updatedAt: '2026-01-02T03:05:00.000Z'\n");

        assert_render(CM_OUTPUT_JSON, CM_RESOURCE_CLUSTER,
                      "{\"name\":\"demo\",\"spec\":{\"engine\":\"local\"}}", now,
                      "{\n  \"name\": \"demo\",\n  \"spec\": {\n    \"engine\": \"local\"\n  }\n}\n");
        assert_render(CM_OUTPUT_JSON, CM_RESOURCE_CLUSTER, "[{\"name\":\"a\"}]", now,
                      "{\n  \"items\": [\n    {\n      \"name\": \"a\"\n    }\n  ]\n}\n");
        assert_render(CM_OUTPUT_YAML, CM_RESOURCE_CLUSTER, "[]", now, "items: []\n");
        assert_render(CM_OUTPUT_TABLE, CM_RESOURCE_CLUSTER, "[]", now,
                      "NAME   ENGINE   PHASE   GENERATION   NODES   AGE\n");
}

static void test_output_operation(void **state) {
        uint64_t now = at("2026-01-02T03:04:05.000Z", 45);

        /* The escape sequence in the error cannot reach the terminal. */
        assert_render(CM_OUTPUT_TABLE, CM_RESOURCE_OPERATION, op_json, now,
                      "ID       TYPE     STATE    CLUSTER   ATTEMPTS   AGE\n"
                      "op_abc   create   failed   demo      5/5        45s\n"
                      "\n"
                      "Environment:         default\n"
                      "Requested by:        admin\n"
                      "Created:             2026-01-02T03:04:05.000Z\n"
                      "Started:             2026-01-02T03:04:06.000Z\n"
                      "Finished:            2026-01-02T03:10:00.000Z\n"
                      "Error:               rke up: exit 1?[31m\n");
        assert_render(CM_OUTPUT_YAML, CM_RESOURCE_OPERATION, op_json, now,
                      "id: op_abc\n"
                      "type: create\n"
                      "state: failed\n"
                      "environment: default\n"
                      "cluster: demo\n"
                      "generation: 1\n"
                      "attempts: 5\n"
                      "maxAttempts: 5\n"
                      "error: \"rke up: exit 1\\e[31m\"\n"
                      "cancelRequested: false\n"
                      "requestedBy: admin\n"
                      "createdAt: '2026-01-02T03:04:05.000Z'\n"
                      "startedAt: '2026-01-02T03:04:06.000Z'\n"
                      "finishedAt: '2026-01-02T03:10:00.000Z'\n"
                      "nextRunAt: null\n");
        assert_render(CM_OUTPUT_TABLE, CM_RESOURCE_OPERATION,
                      "[{\"id\":\"op_1\",\"type\":\"delete\",\"state\":\"running\",\"cluster\":\"c\","
                      "\"attempts\":1,"
                      "\"maxAttempts\":5,\"createdAt\":\"2026-01-02T03:04:05.000Z\"}]",
                      now,
                      "ID     TYPE     STATE     CLUSTER   ATTEMPTS   AGE\n"
                      "op_1   delete   running   c         1/5        45s\n");
}

static void test_output_environment_and_keys(void **state) {
        uint64_t now = at("2026-01-02T03:04:05.000Z", 3 * 86400 + 4 * 3600);

        assert_render(
                CM_OUTPUT_TABLE, CM_RESOURCE_ENVIRONMENT,
                "[{\"name\":\"default\",\"labels\":{},\"createdAt\":\"2026-01-02T03:04:05.000Z\"},"
                "{\"name\":\"prod\",\"labels\":{\"tier\":\"prod\",\"team\":\"a\"},\"createdAt\":\"bad\"}]",
                now,
                "NAME      LABELS             AGE\n"
                "default   <none>             3d4h\n"
                "prod      tier=prod,team=a   -\n");
        assert_render(CM_OUTPUT_TABLE, CM_RESOURCE_SSHKEY,
                      "[{\"name\":\"ops\",\"publicKey\":\"ssh-ed25519 AAAAC3 "
                      "me@host\",\"fingerprint\":\"SHA256:x\","
                      "\"createdAt\":\"2026-01-02T03:04:05.000Z\"}]",
                      now,
                      "NAME   TYPE          FINGERPRINT   AGE\n"
                      "ops    ssh-ed25519   SHA256:x      3d4h\n");
}

static void test_output_age(void **state) {
        static const struct {
                uint64_t sec;
                const char *age;
        } cases[] = {
                { 0, "0s" },
                { 59, "59s" },
                { 119, "119s" },
                { 120, "2m0s" },
                { 599, "9m59s" },
                { 600, "10m" },
                { 3 * 3600 - 1, "179m" },
                { 3 * 3600, "3h0m" },
                { 8 * 3600, "8h" },
                { 47 * 3600, "47h" },
                { 2 * 86400, "2d0h" },
                { 8 * 86400, "8d" },
                { 400 * 86400, "400d" },
        };
        char buf[32];

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                cm_output_age(1000 * USEC_PER_SEC, (1000 + cases[i].sec) * USEC_PER_SEC, buf, sizeof(buf));
                assert_string_equal(buf, cases[i].age);
        }
        /* A clock behind the server's does not give negative ages. */
        cm_output_age(2000 * USEC_PER_SEC, 1000 * USEC_PER_SEC, buf, sizeof(buf));
        assert_string_equal(buf, "0s");
}

static void test_output_clean(void **state) {
        struct strbuf sb = STRBUF_INIT(256);

        assert_int_equal(cm_output_add_clean(&sb, "ok \x1b]0;title\x07 caf\xc3\xa9 \xc2\x9b"
                                                  "31m\x7f!"),
                         0);
        assert_string_equal(sb.buf, "ok ?]0;title? caf\xc3\xa9 ?31m?!");
        strbuf_release(&sb);
}

/* ---- problems ------------------------------------------------------------------------------- */

static char *render_problem(long status, const char *type, const char *body) {
        struct cm_client_problem p = {};
        struct strbuf sb = STRBUF_INIT(1 << 16);

        assert_int_equal(cm_client_problem_decode_body(status, type, body, body ? strlen(body) : 0, &p), 0);
        assert_int_equal(cm_output_problem(&sb, &p), 0);
        cm_client_problem_done(&p);
        return strbuf_detach(&sb, NULL);
}

static void test_problem_render(void **state) {
        static const struct {
                long status;
                const char *type;
                const char *body;
                const char *want;
        } cases[] = {
                { 422, "application/problem+json",
                  "{\"type\":\"https://cratekube.io/problems/validation\",\"title\":\"Invalid "
                  "request\",\"status\":422,"
                  "\"detail\":\"the request body is not a valid "
                  "cluster\",\"errors\":[{\"field\":\"spec.engine\","
                  "\"reason\":\"unknown engine 'x'; registered engines: local, "
                  "rke\"},{\"field\":\"name\",\"reason\":"
                  "\"must be a DNS label\"}]}",
                  "error: Invalid request: the request body is not a valid cluster\n"
                  "  spec.engine: unknown engine 'x'; registered engines: local, rke\n"
                  "  name: must be a DNS label\n" },
                { 404, "application/problem+json", "{\"title\":\"Not found\"}", "error: Not found\n" },
                { 409, "application/problem+json",
                  "{\"title\":\"Conflict\",\"detail\":\"cluster 'demo' has an unfinished "
                  "operation\",\"operation\":"
                  "\"op_1\"}",
                  "error: Conflict: cluster 'demo' has an unfinished operation\n" },
                { 502, "text/html", "<html><body>Bad gateway</body></html>", "error: Bad Gateway\n" },
                { 503, "text/plain", "\n  upstream is down\nmore\n",
                  "error: Service Unavailable: upstream is down\n" },
                { 500, NULL, NULL, "error: Internal Server Error\n" },
                { 400, "application/json", "{not json", "error: Bad Request\n" },
                { 418, "application/problem+json",
                  "{\"title\":\"x\\u001b[2J\",\"detail\":\"y\\ny\",\"errors\":[1,"
                  "{\"reason\":\"no field\"}]}",
                  "error: x?[2J: y?y\n  no field\n" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *got = render_problem(cases[i].status, cases[i].type, cases[i].body);

                if (!streq(got, cases[i].want))
                        fail_msg("case %zu: got\n%s\nwant\n%s", i, got, cases[i].want);
                free(got);
        }

        {
                struct cm_client_problem p = {};
                const char *body = "{\"title\":\"Conflict\",\"operation\":\"op_1\"}";

                assert_int_equal(cm_client_problem_decode_body(409, "application/problem+json", body,
                                                               strlen(body), &p),
                                 0);
                assert_int_equal(p.status, 409);
                assert_string_equal(p.operation, "op_1");
                cm_client_problem_done(&p);
        }
}

static void test_problem_bounds(void **state) {
        struct strbuf sb = STRBUF_INIT(1 << 20);
        struct cm_client_problem p = {};

        assert_int_equal(strbuf_adds(&sb, "{\"title\":\""), 0);
        for (int i = 0; i < 3000; i++)
                assert_int_equal(strbuf_adds(&sb, "\xc3\xa9"), 0);
        assert_int_equal(strbuf_adds(&sb, "\",\"errors\":["), 0);
        for (int i = 0; i < 500; i++)
                assert_int_equal(strbuf_addf(&sb, "%s{\"field\":\"f%d\",\"reason\":\"r\"}", i ? "," : "", i),
                                 0);
        assert_int_equal(strbuf_adds(&sb, "]}"), 0);
        assert_int_equal(cm_client_problem_decode_body(422, "application/problem+json", sb.buf, sb.len, &p),
                         0);
        assert_int_equal(p.n_errors, CM_CLIENT_PROBLEM_ERRORS_MAX);
        assert_true(strlen(p.title) <= CM_CLIENT_PROBLEM_STRING_MAX);
        assert_int_equal(strlen(p.title) % 2, 0); /* cut between characters */
        cm_client_problem_done(&p);
        strbuf_release(&sb);
}

/* ---- client --------------------------------------------------------------------------------- */

static void test_client_basics(void **state) {
        struct strbuf sb = STRBUF_INIT(256);
        struct cm_client *c = NULL;

        assert_int_equal(cm_url_escape_segment(&sb, "demo-1_x.y~z"), 0);
        assert_string_equal(sb.buf, "demo-1_x.y~z");
        strbuf_reset(&sb);
        assert_int_equal(cm_url_escape_segment(&sb, "../a b/?#%\xc3\xa9"), 0);
        assert_string_equal(sb.buf, "..%2Fa%20b%2F%3F%23%25%C3%A9");
        strbuf_release(&sb);

        assert_int_equal(cm_client_new("ftp://x", NULL, NULL, &c), -EINVAL);
        assert_int_equal(cm_client_new("http://x y", NULL, NULL, &c), -EINVAL);
        assert_int_equal(cm_client_new("http://127.0.0.1:1", "tok\nInjected: 1", NULL, &c), -EINVAL);
        assert_int_equal(cm_client_new("http://127.0.0.1:1", "", NULL, &c), -EINVAL);
        assert_null(c);
        assert_int_equal(cm_client_new("http://127.0.0.1:1///", "cmk_secret", NULL, &c), 0);
        assert_string_equal(cm_client_server(c), "http://127.0.0.1:1");
        c = cm_client_free(c);
        assert_null(cm_client_free(NULL));
}

static void test_client_refused(void **state) {
        struct cm_client_response resp = {};
        struct cm_client *c = NULL;
        const char *msg;

        /* Port 1 on loopback: nobody listens there. */
        assert_int_equal(cm_client_new("http://127.0.0.1:1", "cmk_secret_token", NULL, &c), 0);
        assert_int_equal(cm_client_request(c, "GET", "/v1/environments", NULL, NULL, &resp), -ECONNREFUSED);
        msg = cm_client_last_error(c);
        assert_non_null(strstr(msg, "cannot connect to http://127.0.0.1:1: Connection refused"));
        assert_non_null(strstr(msg, "is `clustermgmt serve` running?"));
        assert_null(strstr(msg, "cmk_secret_token"));
        assert_int_equal(resp.status, 0);
        assert_int_equal(cm_client_request(c, "GET", "no-slash", NULL, NULL, &resp), -EINVAL);
        assert_int_equal(cm_client_request(c, "GET", "/a b", NULL, NULL, &resp), -EINVAL);
        c = cm_client_free(c);
}

/* ---- server-sent events --------------------------------------------------------------------- */

/* What the parser reported: "[type|id|data]" per event. */
struct sse_log {
        struct strbuf text;
        size_t n;
        size_t fail_at; /* the callback fails on this event (1-based); 0: never */
};

static int sse_collect(const struct cm_sse_event *ev, void *userdata) {
        struct sse_log *log = userdata;

        log->n++;
        if (log->fail_at > 0 && log->n == log->fail_at)
                return -ECANCELED;
        assert_non_null(ev->type);
        assert_non_null(ev->id);
        assert_non_null(ev->data);
        assert_true(ev->data_len <= CM_SSE_EVENT_MAX);
        assert_int_equal(ev->data[ev->data_len], 0);
        assert_int_equal(strbuf_addf(&log->text, "[%s|%s|", ev->type, ev->id), 0);
        assert_int_equal(strbuf_add(&log->text, ev->data, ev->data_len), 0);
        assert_int_equal(strbuf_addch(&log->text, ']'), 0);
        return 0;
}

/* Parses input fed as its first `first` bytes (perhaps none), then the rest in pieces of `piece` bytes. */
static int sse_parse(const char *input, size_t n, size_t first, size_t piece, struct sse_log *log,
                     char *last_id, size_t last_id_size) {
        struct cm_sse_parser p;
        size_t off = MIN(first, n);
        int r;

        *log = (struct sse_log){ .text = STRBUF_INIT(1 << 20), .fail_at = log->fail_at };
        cm_sse_parser_init(&p, sse_collect, log);
        r = cm_sse_parser_feed(&p, input, off);
        while (off < n && r >= 0) {
                size_t k = MIN(piece, n - off);

                r = cm_sse_parser_feed(&p, input + off, k);
                off += k;
        }
        if (last_id)
                assert_int_equal(cm_strlcpy(last_id, cm_sse_parser_last_id(&p), last_id_size), 0);
        cm_sse_parser_done(&p);
        return r;
}

/* A string literal and its length, NUL bytes included. */
#define SSE_TEXT(s) s, sizeof(s) - 1

static void test_sse_parse(void **state) {
        static const struct {
                const char *input;
                size_t len;
                const char *events;
                size_t events_len;
                const char *last_id;
        } cases[] = {
                { SSE_TEXT("data: hello\n\n"), SSE_TEXT("[message||hello]"), "" },
                { SSE_TEXT(": keepalive\n\nid: 7\nevent: PhaseChanged\ndata: {\"a\":1}\n\n: keepalive\n"),
                  SSE_TEXT("[PhaseChanged|7|{\"a\":1}]"), "7" },
                /* Data lines are joined with "\n"; one space after the colon is dropped, no more. */
                { SSE_TEXT("data: one\ndata:two\ndata:  three\ndata\n\n"),
                  SSE_TEXT("[message||one\ntwo\n three\n]"), "" },
                { SSE_TEXT("id: 1\r\nevent: x\r\ndata: a\r\ndata: b\r\n\r\n"), SSE_TEXT("[x|1|a\nb]"), "1" },
                { SSE_TEXT("data: a\r\rdata: b\r\r"), SSE_TEXT("[message||a][message||b]"), "" },
                { SSE_TEXT("data: a\n\r\n\rdata: b\r\n\n"), SSE_TEXT("[message||a][message||b]"), "" },
                /* An event without data is not dispatched, but its id counts. */
                { SSE_TEXT("id: 5\nevent: ignored\n\ndata: x\n\n"), SSE_TEXT("[message|5|x]"), "5" },
                { SSE_TEXT("id: 3\ndata: a\n\ndata: b\n\n"), SSE_TEXT("[message|3|a][message|3|b]"), "3" },
                { SSE_TEXT("id: 4\ndata: a\n\nid\ndata: b\n\n"), SSE_TEXT("[message|4|a][message||b]"), "" },
                { SSE_TEXT("retry: 1000\nfoo: bar\nDATA: no\ndata : no\ndata: x\n\n"),
                  SSE_TEXT("[message||x]"), "" },
                { SSE_TEXT("event:\ndata: a: b\n\n"), SSE_TEXT("[message||a: b]"), "" },
                { SSE_TEXT("\xef\xbb\xbf"
                           "data: x\n\n"),
                  SSE_TEXT("[message||x]"), "" },
                /* A byte order mark is only skipped at the start. */
                { SSE_TEXT("data: a\n\n\xef\xbb\xbf"
                           "data: b\n\n"),
                  SSE_TEXT("[message||a]"), "" },
                /* The end of the stream drops an unfinished event and its id. */
                { SSE_TEXT("id: 1\ndata: a\n\nid: 2\ndata: b\n"), SSE_TEXT("[message|1|a]"), "1" },
                { SSE_TEXT("id: 1\ndata: a\n\nid: 2\ndata: b"), SSE_TEXT("[message|1|a]"), "1" },
                /* An id or event type with a NUL byte is ignored; NUL bytes in data are kept. */
                { SSE_TEXT("id: 4\ndata: a\n\nid: 5\0x\nevent: y\0z\ndata: b\0c\n\n"),
                  SSE_TEXT("[message|4|a][message|4|b\0c]"), "4" },
                { SSE_TEXT("event: x\nevent: \0\ndata: a\n\n"), SSE_TEXT("[x||a]"), "" },
                { SSE_TEXT(""), SSE_TEXT(""), "" },
                { SSE_TEXT("\n\n\n:\n"), SSE_TEXT(""), "" },
        };
        static const size_t pieces[] = { 1, 2, 3, 7, SIZE_MAX };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                size_t n = cases[i].len;

                /* The first piece ends at every byte position; the rest comes in pieces of several sizes. */
                for (size_t split = 0; split <= n; split++)
                        for (size_t k = 0; k < ELEMENTSOF(pieces); k++) {
                                struct sse_log log = {};
                                char last_id[64];
                                int r;

                                r = sse_parse(cases[i].input, n, split, pieces[k], &log, last_id,
                                              sizeof(last_id));
                                if (r != 0 || log.text.len != cases[i].events_len ||
                                    memcmp(log.text.buf ?: "", cases[i].events, log.text.len) != 0 ||
                                    !streq(last_id, cases[i].last_id))
                                        fail_msg("case %zu, split at %zu, pieces of %zu: r %d, events %s "
                                                 "(want "
                                                 "%s), last id '%s' (want '%s')",
                                                 i, split, pieces[k], r, log.text.buf ?: "", cases[i].events,
                                                 last_id, cases[i].last_id);
                                strbuf_release(&log.text);
                        }
        }
}

/* Writes an event of data lines of the given lengths (0-terminated list) into buf; returns its length. */
static size_t sse_event_of(char *buf, const size_t *lengths) {
        size_t n = 0;

        for (; *lengths; lengths++) {
                for (const char *f = "data:"; *f; f++)
                        buf[n++] = *f;
                memset(buf + n, 'b', *lengths);
                n += *lengths;
                buf[n++] = '\n';
        }
        buf[n++] = '\n';
        return n;
}

static void test_sse_limits(void **state) {
        _cleanup_free_ char *big = malloc(3 * CM_SSE_LINE_MAX);
        const size_t fits[] = { 40000, CM_SSE_EVENT_MAX - 40000 - 1, 0 },
                     too_big[] = { 40001, CM_SSE_EVENT_MAX - 40000 - 1, 0 },
                     one_line[] = { CM_SSE_LINE_MAX - 5, 0 }, long_line[] = { CM_SSE_LINE_MAX - 4, 0 };
        struct sse_log log = {};
        size_t n;

        assert_non_null(big);

        /* A line of exactly CM_SSE_LINE_MAX bytes is read; one more byte is too long. */
        n = sse_event_of(big, one_line);
        assert_int_equal(sse_parse(big, n, n, 1, &log, NULL, 0), 0);
        assert_int_equal(log.n, 1);
        assert_int_equal(log.text.len, strlen("[message||]") + CM_SSE_LINE_MAX - 5);
        strbuf_release(&log.text);
        n = sse_event_of(big, long_line);
        for (size_t piece = 1; piece <= 4096; piece *= 64) {
                assert_int_equal(sse_parse(big, n, piece, piece, &log, NULL, 0), -EMSGSIZE);
                assert_int_equal(log.n, 0);
                strbuf_release(&log.text);
        }
        /* Without a line end, and as a comment, too. */
        memset(big, ':', CM_SSE_LINE_MAX + 1);
        assert_int_equal(sse_parse(big, CM_SSE_LINE_MAX + 1, 100, 100, &log, NULL, 0), -EMSGSIZE);
        strbuf_release(&log.text);
        assert_int_equal(sse_parse(big, CM_SSE_LINE_MAX, 100, 100, &log, NULL, 0), 0);
        strbuf_release(&log.text);

        /* Data lines joined: exactly CM_SSE_EVENT_MAX bytes is an event; one more is too large. */
        n = sse_event_of(big, fits);
        assert_int_equal(sse_parse(big, n, 7, 8192, &log, NULL, 0), 0);
        assert_int_equal(log.n, 1);
        assert_int_equal(log.text.len, strlen("[message||]") + CM_SSE_EVENT_MAX);
        strbuf_release(&log.text);
        n = sse_event_of(big, too_big);
        assert_int_equal(sse_parse(big, n, n, 1, &log, NULL, 0), -EFBIG);
        assert_int_equal(log.n, 0);
        strbuf_release(&log.text);
}

static void test_sse_callback_and_reset(void **state) {
        static const char three[] = "id: 1\ndata: a\n\nid: 2\ndata: b\n\nid: 3\ndata: c\n\n";
        struct sse_log log = { .fail_at = 2 };
        struct cm_sse_parser p;
        char big[CM_SSE_LINE_MAX + 1];

        /* The callback's error stops the parser and is returned. */
        assert_int_equal(sse_parse(three, strlen(three), strlen(three), 1, &log, NULL, 0), -ECANCELED);
        assert_int_equal(log.n, 2);
        assert_string_equal(log.text.buf, "[message|1|a]");
        strbuf_release(&log.text);

        /* A reconnection: the partial event is dropped, the last id kept. */
        log = (struct sse_log){ .text = STRBUF_INIT(4096) };
        cm_sse_parser_init(&p, sse_collect, &log);
        assert_int_equal(cm_sse_parser_feed(&p, "id: 9\ndata: a\n\nid: 10\ndata: part", 32), 0);
        assert_string_equal(cm_sse_parser_last_id(&p), "9");
        cm_sse_parser_reset(&p);
        assert_int_equal(cm_sse_parser_feed(&p, "ial\n\ndata: b\n\n", 14), 0);
        /* "ial" is a line of its own in the new stream: an unknown field. */
        assert_string_equal(log.text.buf, "[message|9|a][message|9|b]");
        assert_string_equal(cm_sse_parser_last_id(&p), "9");

        /* After an oversized line, a reset starts over. */
        memset(big, 'x', sizeof(big));
        assert_int_equal(cm_sse_parser_feed(&p, big, sizeof(big)), -EMSGSIZE);
        cm_sse_parser_reset(&p);
        strbuf_reset(&log.text);
        assert_int_equal(cm_sse_parser_feed(&p, "data: ok\r", 9), 0);
        assert_int_equal(cm_sse_parser_feed(&p, "\n\r\n", 3), 0);
        assert_string_equal(log.text.buf, "[message|9|ok]");
        cm_sse_parser_done(&p);
        strbuf_release(&log.text);

        /* A parser that never saw a byte. */
        cm_sse_parser_init(&p, sse_collect, &log);
        assert_string_equal(cm_sse_parser_last_id(&p), "");
        cm_sse_parser_done(&p);
}

/* ---- monitoring output ---------------------------------------------------------------------- */

static void test_health_cell(void **state) {
        static const struct {
                const char *cluster;
                const char *want;
        } cases[] = {
                { "{}", "-" },
                { "{\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}", "-" },
                { "{\"status\":{\"conditions\":[{\"type\":\"Healthy\",\"status\":\"True\",\"reason\":"
                  "\"Healthy\"}]}}",
                  "Healthy" },
                { "{\"status\":{\"conditions\":[{\"type\":\"Healthy\",\"status\":\"True\"}]}}", "Healthy" },
                { "{\"status\":{\"conditions\":[{\"type\":\"Healthy\",\"status\":\"True\",\"reason\":"
                  "\"ExpiringSoon\"}]}}",
                  "Healthy (ExpiringSoon)" },
                { "{\"status\":{\"conditions\":[{\"type\":\"Healthy\",\"status\":\"True\",\"reason\":"
                  "\"AVeryLongReasonIndeed\"}]}}",
                  "Healthy" },
                { "{\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"},{\"type\":"
                  "\"Healthy\","
                  "\"status\":\"False\",\"reason\":\"Unreachable\"}]}}",
                  "Unreachable" },
                { "{\"status\":{\"conditions\":[{\"type\":\"Healthy\",\"status\":\"False\"}]}}",
                  "Unhealthy" },
                { "{\"status\":{\"conditions\":[{\"type\":\"Healthy\",\"status\":\"Unknown\",\"reason\":"
                  "\"APIServerUnavailable\"}]}}",
                  "Unknown" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                json_t *c = json_loads(cases[i].cluster, 0, NULL);
                char buf[96];

                assert_non_null(c);
                cm_cli_health_cell(c, buf, sizeof(buf));
                if (!streq(buf, cases[i].want))
                        fail_msg("case %zu: got '%s', want '%s'", i, buf, cases[i].want);
                json_decref(c);
        }
}

static void test_cli_table(void **state) {
        static const char *const headers[] = { "NAME", "STATUS", "MESSAGE" };
        struct cm_cli cli = {};
        struct cm_cli_table t = {};
        _cleanup_free_ char *out = NULL;
        size_t len = 0;
        char long_cell[CM_CLI_CELL_MAX + 10];

        cli.out = open_memstream(&out, &len);
        assert_non_null(cli.out);
        assert_int_equal(cm_cli_table_init(&t, headers, 0), -EINVAL);
        assert_int_equal(cm_cli_table_init(&t, headers, ELEMENTSOF(headers)), 0);
        memset(long_cell, 'z', sizeof(long_cell) - 1);
        long_cell[sizeof(long_cell) - 1] = 0;
        assert_int_equal(cm_cli_table_add(&t, "caf\xc3\xa9"), 0);
        assert_int_equal(cm_cli_table_add(&t, NULL), 0);
        assert_int_equal(cm_cli_table_add(&t, "esc\x1b[31m"), 0);
        assert_int_equal(cm_cli_table_add(&t, "a-longer-name"), 0);
        assert_int_equal(cm_cli_table_add(&t, "True"), 0);
        assert_int_equal(cm_cli_table_add(&t, long_cell), 0);
        assert_int_equal(cm_cli_table_print(&cli, &t), CM_EXIT_OK);
        cm_cli_table_done(&t);
        cm_cli_table_done(&t);
        assert_int_equal(fclose(cli.out), 0);
        long_cell[CM_CLI_CELL_MAX] = 0;
        {
                _cleanup_free_ char *want = NULL;

                assert_true(asprintf(&want,
                                     "NAME            STATUS   MESSAGE\n"
                                     "caf\xc3\xa9            -        esc?[31m\n"
                                     "a-longer-name   True     %s\n",
                                     long_cell) > 0);
                if (!streq(out, want))
                        fail_msg("got\n%s\nwant\n%s", out, want);
        }
}

/* ---- the command line ----------------------------------------------------------------------- */

struct run {
        int rc;
        char *out;
        char *err;
};

static void run_done(struct run *r) {
        free(r->out);
        free(r->err);
}

static struct run run_cli(const char *const *args) {
        struct run res = {};
        char *argv[32];
        size_t out_len, err_len;
        FILE *out, *err;
        int argc = 0;

        argv[argc++] = CM_UNCONST(char *, "clustermgmt");
        for (; *args; args++)
                argv[argc++] = CM_UNCONST(char *, *args);
        argv[argc] = NULL;
        out = open_memstream(&res.out, &out_len);
        err = open_memstream(&res.err, &err_len);
        assert_non_null(out);
        assert_non_null(err);
        res.rc = cm_cli_run(out, err, argc, argv);
        fclose(out);
        fclose(err);
        return res;
}

static void assert_run(const char *const *args, int rc, const char *out_part, const char *err_part) {
        struct run r = run_cli(args);

        if (r.rc != rc || (out_part && !strstr(r.out, out_part)) || (err_part && !strstr(r.err, err_part)))
                fail_msg("%s ...: rc %d (want %d)\nstdout: %s\nstderr: %s\nwant stdout with: %s\nwant "
                         "stderr with: %s",
                         args[0] ? args[0] : "(none)", r.rc, rc, r.out, r.err, strna(out_part),
                         strna(err_part));
        run_done(&r);
}

#define ARGS(...) ((const char *const[]){ __VA_ARGS__, NULL })

static char tmpdir[PATH_MAX];

static int setup_env(void **state) {
        const char *base = getenv("TMPDIR");

        /* A scratch working directory; nothing listens on port 1; no token is found unless given. */
        assert_true(cm_snprintf(tmpdir, sizeof(tmpdir), "%s/test_cli.XXXXXX",
                                isempty(base) ? "/tmp" : base) >= 0);
        assert_non_null(mkdtemp(tmpdir));
        assert_int_equal(chdir(tmpdir), 0);
        assert_int_equal(setenv("CLUSTERMGMT_SERVER", "http://127.0.0.1:1", 1), 0);
        assert_int_equal(unsetenv("CLUSTERMGMT_TOKEN"), 0);
        assert_int_equal(unsetenv("CLUSTERMGMT_DATA_DIR"), 0);
        assert_int_equal(unsetenv("CLUSTERMGMT_ENV"), 0);
        return 0;
}

static int teardown_env(void **state) {
        static const char *const files[] = { "other.yaml",  "envx.yaml", "dup.yaml",
                                             "nospec.yaml", "list.yaml", "data/admin.token" };

        for (size_t i = 0; i < ELEMENTSOF(files); i++)
                (void) unlink(files[i]);
        (void) rmdir("data");
        if (chdir("/") == 0)
                (void) rmdir(tmpdir);
        return 0;
}

static void write_file(const char *name, const char *content) {
        FILE *f = fopen(name, "we");

        assert_non_null(f);
        assert_int_equal(fputs(content, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

static void test_cli_usage(void **state) {
        const char *const none[] = { NULL };

        assert_run(none, CM_EXIT_USAGE, NULL, "usage: clustermgmt");
        assert_run(ARGS("help"), CM_EXIT_OK, "Commands:", NULL);
        assert_run(ARGS("--help"), CM_EXIT_OK, "Global flags", NULL);
        assert_run(ARGS("help", "cluster"), CM_EXIT_OK, "kubeconfig NAME", NULL);
        assert_run(ARGS("cluster", "--help"), CM_EXIT_OK, "create NAME (-f FILE | --engine ENGINE", NULL);
        assert_run(ARGS("op", "wait", "-h"), CM_EXIT_OK, "wait ID [--timeout SECONDS]", NULL);
        assert_run(ARGS("sshkey", "help"), CM_EXIT_OK, "--private-key-file", NULL);
        assert_run(ARGS("help", "nope"), CM_EXIT_USAGE, NULL, "unknown command 'nope'");
        assert_run(ARGS("frobnicate"), CM_EXIT_USAGE, NULL, "run `clustermgmt help` for help");
        assert_run(ARGS("cluster"), CM_EXIT_USAGE, NULL, "missing verb");
        assert_run(ARGS("cluster", "explode"), CM_EXIT_USAGE, NULL, "unknown verb 'explode' for cluster");
        assert_run(ARGS("cluster", "create"), CM_EXIT_USAGE, NULL,
                   "error: missing NAME\nusage: clustermgmt cluster create NAME");
        assert_run(ARGS("op", "get"), CM_EXIT_USAGE, NULL, "error: missing ID");
        assert_run(ARGS("cluster", "create", "demo"), CM_EXIT_USAGE, NULL, "-f FILE, or --engine ENGINE");
        assert_run(ARGS("cluster", "create", "demo", "-f", "x.yaml", "--engine", "local"), CM_EXIT_USAGE,
                   NULL, "either -f FILE or --engine, not both");
        assert_run(ARGS("cluster", "create", "demo", "--engine", "rke", "--nodes", "3"), CM_EXIT_USAGE, NULL,
                   "--nodes only applies to --engine local");
        assert_run(ARGS("cluster", "create", "demo", "--engine", "local", "--nodes", "three"), CM_EXIT_USAGE,
                   NULL, "--nodes takes a positive number, not 'three'");
        assert_run(ARGS("cluster", "create", "demo", "--engine", "local", "--engine", "rke"), CM_EXIT_USAGE,
                   NULL, "flag --engine given more than once");
        assert_run(ARGS("cluster", "create", "demo", "--engine", "local", "--label", "bad"), CM_EXIT_USAGE,
                   NULL, "invalid --label 'bad': expected KEY=VALUE");
        assert_run(ARGS("cluster", "create", "demo", "--engine"), CM_EXIT_USAGE, NULL,
                   "flag --engine needs a value");
        assert_run(ARGS("cluster", "create", "demo", "--engine", "local", "--timeout", "5"), CM_EXIT_USAGE,
                   NULL, "--timeout goes with --wait");
        assert_run(ARGS("cluster", "create", "a", "b", "--engine", "local"), CM_EXIT_USAGE, NULL,
                   "unexpected argument 'b'");
        assert_run(ARGS("cluster", "list", "--bogus"), CM_EXIT_USAGE, NULL, "unknown flag '--bogus'");
        assert_run(ARGS("cluster", "list", "--limit", "0"), CM_EXIT_USAGE, NULL,
                   "--limit takes a number from 1 to 500");
        assert_run(ARGS("cluster", "delete", "demo", "--wait=yes"), CM_EXIT_USAGE, NULL,
                   "flag --wait takes no value");
        assert_run(ARGS("cluster", "update", "demo"), CM_EXIT_USAGE, NULL, "-f FILE is required");
        assert_run(ARGS("op", "wait", "op_1", "--timeout", "0"), CM_EXIT_USAGE, NULL,
                   "--timeout takes a number of seconds");
        assert_run(ARGS("op", "log", "op_1", "-x"), CM_EXIT_USAGE, NULL, "unknown flag '-x'");
        assert_run(ARGS("sshkey", "create", "k"), CM_EXIT_USAGE, NULL,
                   "--private-key-file FILE or --public-key-file");
        assert_run(ARGS("-o", "xml", "env", "list"), CM_EXIT_USAGE, NULL, "unknown output format 'xml'");
        assert_run(ARGS("env", "list", "--output"), CM_EXIT_USAGE, NULL, "flag --output needs a value");
        assert_run(ARGS("--server", "ftp://x", "env", "list"), CM_EXIT_USAGE, NULL,
                   "must start with http:// or https://");

        /* Monitoring: events (a noun without verbs), webhook, monitoring, cluster health. */
        assert_run(ARGS("help"), CM_EXIT_OK, "  monitoring  how clusters are probed", NULL);
        assert_run(ARGS("events", "--help"), CM_EXIT_OK,
                   "usage: clustermgmt events [-f|--follow] [--cluster NAME] [--all-environments] "
                   "[--since-id ID]",
                   NULL);
        assert_run(ARGS("help", "events"), CM_EXIT_OK, "--follow keeps", NULL);
        assert_run(ARGS("cluster", "--help"), CM_EXIT_OK, "health NAME [--history N]", NULL);
        assert_run(ARGS("webhook", "help"), CM_EXIT_OK, "deliveries NAME [--limit N]", NULL);
        assert_run(ARGS("monitoring", "--help"), CM_EXIT_OK, "set [--interval SECONDS]", NULL);
        assert_run(ARGS("events", "now"), CM_EXIT_USAGE, NULL,
                   "error: unexpected argument 'now'\nusage: clustermgmt events [-f|--follow]");
        assert_run(ARGS("events", "--since-id", "-1"), CM_EXIT_USAGE, NULL,
                   "--since-id takes an event id (a number), not '-1'");
        assert_run(ARGS("events", "--cluster", ""), CM_EXIT_USAGE, NULL, "--cluster needs a cluster name");
        assert_run(ARGS("events", "-f", "--bogus"), CM_EXIT_USAGE, NULL, "unknown flag '--bogus'");
        assert_run(ARGS("cluster", "health"), CM_EXIT_USAGE, NULL, "error: missing NAME");
        assert_run(ARGS("cluster", "health", "demo", "--history", "501"), CM_EXIT_USAGE, NULL,
                   "--history takes a number from 0 to 500, not '501'");
        assert_run(ARGS("cluster", "list", "--limit", "501"), CM_EXIT_USAGE, NULL,
                   "--limit takes a number from 1 to 500");
        assert_run(ARGS("webhook", "create", "ops"), CM_EXIT_USAGE, NULL, "--url URL is required");
        assert_run(ARGS("webhook", "create", "ops", "--url", "ftp://x", "--secret", "k"), CM_EXIT_USAGE,
                   NULL, "--url must start with http:// or https://, not 'ftp://x'");
        assert_run(ARGS("webhook", "create", "ops", "--url", "https://x"), CM_EXIT_USAGE, NULL,
                   "--secret SECRETNAME is required");
        assert_run(ARGS("webhook", "create", "ops", "--url", "https://x", "--secret", "k", "--events", "A,"),
                   CM_EXIT_USAGE, NULL, "--events takes event types separated by commas");
        assert_run(ARGS("webhook", "deliveries", "ops", "--limit", "0"), CM_EXIT_USAGE, NULL,
                   "--limit takes a number from 1 to 500, not '0'");
        assert_run(ARGS("monitoring", "set"), CM_EXIT_USAGE, NULL, "say what to change: --interval SECONDS");
        assert_run(ARGS("monitoring", "set", "--interval", "0"), CM_EXIT_USAGE, NULL,
                   "--interval takes a number from 1 to 3600, not '0'");
        assert_run(ARGS("monitoring", "set", "--failure-threshold", "11"), CM_EXIT_USAGE, NULL,
                   "--failure-threshold takes a number from 1 to 10");
        assert_run(ARGS("monitoring", "set", "--cert-warning-days", "366"), CM_EXIT_USAGE, NULL,
                   "--cert-warning-days takes a number from 0 to 365");
        assert_run(ARGS("monitoring", "get", "x"), CM_EXIT_USAGE, NULL, "unexpected argument 'x'");
}

static void test_cli_documents(void **state) {
        write_file("other.yaml", "name: other\nspec: {engine: local}\n");
        write_file("envx.yaml", "name: demo\nenvironment: prod\nspec: {engine: local}\n");
        write_file("dup.yaml", "name: demo\nspec:\n  engine: local\n  engine: rke\n");
        write_file("nospec.yaml", "name: demo\nlabels: {a: b}\n");
        write_file("list.yaml", "- a\n- b\n");

        /* All of these fail before any request is made (nothing listens anyway). */
        assert_run(ARGS("--token", "t", "cluster", "create", "demo", "-f", "other.yaml"), CM_EXIT_FAILURE,
                   NULL, "other.yaml describes cluster 'other', but the command names 'demo'");
        assert_run(ARGS("--token", "t", "cluster", "update", "demo", "-f", "other.yaml"), CM_EXIT_FAILURE,
                   NULL, "other.yaml describes cluster 'other', but the command names 'demo'");
        assert_run(ARGS("--token", "t", "cluster", "create", "demo", "-f", "envx.yaml"), CM_EXIT_FAILURE,
                   NULL, "envx.yaml belongs to environment 'prod', but --env is 'default'");
        assert_run(ARGS("--token", "t", "cluster", "create", "demo", "-f", "dup.yaml"), CM_EXIT_FAILURE,
                   NULL, "error: dup.yaml: line 4, column 3: duplicate key 'engine'");
        assert_run(ARGS("--token", "t", "cluster", "create", "demo", "-f", "nospec.yaml"), CM_EXIT_FAILURE,
                   NULL, "nospec.yaml has no spec");
        assert_run(ARGS("--token", "t", "cluster", "create", "demo", "-f", "list.yaml"), CM_EXIT_FAILURE,
                   NULL, "a cluster document is a mapping");
        assert_run(ARGS("--token", "t", "cluster", "create", "demo", "-f", "missing.yaml"), CM_EXIT_FAILURE,
                   NULL, "cannot read missing.yaml: No such file or directory");
}

static void test_cli_token_and_transport(void **state) {
        struct run r;

        /* No token anywhere: say what to do. */
        assert_run(ARGS("env", "list"), CM_EXIT_FAILURE, NULL,
                   "no API token: pass --token, set CLUSTERMGMT_TOKEN, or run from the directory where");

        /* The quickstart's ./data/admin.token is found, and the token is never printed. */
        assert_int_equal(mkdir("data", 0700), 0);
        write_file("data/admin.token", "cmk_from_file_token\n");
        r = run_cli(ARGS("env", "list"));
        assert_int_equal(r.rc, CM_EXIT_FAILURE);
        assert_non_null(strstr(r.err, "error: cannot connect to http://127.0.0.1:1: Connection refused"));
        assert_null(strstr(r.err, "cmk_from_file_token"));
        assert_null(strstr(r.out, "cmk_from_file_token"));
        run_done(&r);

        r = run_cli(ARGS("cluster", "list", "--token", "cmk_flag_token_value", "--env", "prod"));
        assert_int_equal(r.rc, CM_EXIT_FAILURE);
        assert_non_null(strstr(r.err, "is `clustermgmt serve` running?"));
        assert_null(strstr(r.err, "cmk_flag_token_value"));
        run_done(&r);

        /* A token that cannot go into a header. */
        assert_run(ARGS("--token", "has space", "env", "list"), CM_EXIT_FAILURE, NULL,
                   "must not contain blanks");

        /* The first connection of `events -f` failing is an error, not a reason to retry forever. */
        assert_run(ARGS("--token", "t", "events", "-f"), CM_EXIT_FAILURE, NULL,
                   "error: cannot connect to http://127.0.0.1:1: Connection refused");
        assert_run(ARGS("--token", "t", "webhook", "list"), CM_EXIT_FAILURE, NULL,
                   "error: cannot connect to http://127.0.0.1:1");

        /* Plain HTTP off loopback warns (0.0.0.0 then refuses the connection). */
        r = run_cli(ARGS("--server", "http://0.0.0.0:1", "--token", "t", "env", "get", "x"));
        assert_int_equal(r.rc, CM_EXIT_FAILURE);
        assert_non_null(strstr(r.err, "warning: sending the API token to http://0.0.0.0:1 over plain HTTP"));
        run_done(&r);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_yaml_good),
                cmocka_unit_test(test_yaml_depth),
                cmocka_unit_test(test_yaml_bad),
                cmocka_unit_test(test_yaml_billion_laughs),
                cmocka_unit_test(test_document_size),
                cmocka_unit_test(test_document_json),
                cmocka_unit_test(test_json_to_yaml),
                cmocka_unit_test(test_yaml_round_trip),
                cmocka_unit_test(test_label_parse),
                cmocka_unit_test(test_output_cluster),
                cmocka_unit_test(test_output_operation),
                cmocka_unit_test(test_output_environment_and_keys),
                cmocka_unit_test(test_output_age),
                cmocka_unit_test(test_output_clean),
                cmocka_unit_test(test_problem_render),
                cmocka_unit_test(test_problem_bounds),
                cmocka_unit_test(test_client_basics),
                cmocka_unit_test(test_client_refused),
                cmocka_unit_test(test_sse_parse),
                cmocka_unit_test(test_sse_limits),
                cmocka_unit_test(test_sse_callback_and_reset),
                cmocka_unit_test(test_health_cell),
                cmocka_unit_test(test_cli_table),
                cmocka_unit_test(test_cli_usage),
                cmocka_unit_test(test_cli_documents),
                cmocka_unit_test(test_cli_token_and_transport),
        };

        return cmocka_run_group_tests(tests, setup_env, teardown_env);
}
