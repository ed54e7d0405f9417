/* SPDX-License-Identifier: Apache-2.0 */
/*
 * policy-eval: the built-in policy rules on the command line, for the equivalence test against the
 * Rego bundle (tests/integration/test_policy_rego.py). Not part of the product.
 *
 *   policy-eval [evaluate]   stdin: a policy input (any JSON); stdout: the built-in decision as
 *                            canonical JSON {"deny": [...], "warn": [...]}, each list sorted
 *   policy-eval batch        stdin: a JSON array of policy inputs; stdout: a JSON array of their
 *                            decisions, one a line, as evaluate prints them
 *   policy-eval build        stdin: {"operation", "principal", "environment": {"name", "labels"},
 *                            "cluster": {"name", "labels", "spec"}, "engine": {"name", "versions",
 *                            "default"}, "settings": <a settings document as PUT, or absent>};
 *                            stdout: the policy input cm_policy_input_build() makes of it, with the
 *                            effective settings
 *
 * Exit status: 0; 2 for unreadable input; 3 when the settings document is refused (the problem
 * document on stdout).
 */
#include "base/common.h"

#include "api/json.h"
#include "api/problem.h"
#include "base/strbuf.h"
#include "policy/policy.h"

#define INPUT_MAX (16U * 1024U * 1024U)

static int read_stdin(struct strbuf *sb) {
        char buf[65536];
        size_t n;

        while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0)
                if (strbuf_add(sb, buf, n) < 0)
                        return -ENOBUFS;
        return ferror(stdin) ? -EIO : 0;
}

static int cmp_text(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The list as JSON text with its members in the byte order of their canonical texts. */
static int add_sorted(struct strbuf *out, const json_t *list) {
        size_t n = json_array_size(list), i;
        char **texts = new0(char *, n);
        int r = 0;

        if (!texts)
                return -ENOMEM;
        for (i = 0; i < n; i++)
                if (!(texts[i] = cm_json_canonical(json_array_get(list, i))))
                        r = -ENOMEM;
        if (r >= 0) {
                qsort(texts, n, sizeof(texts[0]), cmp_text);
                r = strbuf_addch(out, '[');
                for (i = 0; r >= 0 && i < n; i++) {
                        if (i > 0)
                                r = strbuf_addch(out, ',');
                        if (r >= 0)
                                r = strbuf_adds(out, texts[i]);
                }
                if (r >= 0)
                        r = strbuf_addch(out, ']');
        }
        for (i = 0; i < n; i++)
                free(texts[i]);
        free(texts);
        return r;
}

static int evaluate(const json_t *input, const char *sep) {
        _cleanup_strbuf_ struct strbuf out = STRBUF_INIT(INPUT_MAX * 4);
        struct cm_policy_decision d = {};
        int r;

        r = cm_policy_evaluate_builtin(input, &d);
        if (r < 0) {
                fprintf(stderr, "policy-eval: evaluation failed: %s\n", strerror(-r));
                return 1;
        }
        r = strbuf_addl(&out, "{\"deny\":");
        if (r >= 0)
                r = add_sorted(&out, d.deny);
        if (r >= 0)
                r = strbuf_addl(&out, ",\"warn\":");
        if (r >= 0)
                r = add_sorted(&out, d.warn);
        if (r >= 0)
                r = strbuf_addch(&out, '}');
        if (r >= 0)
                r = strbuf_adds(&out, sep);
        cm_policy_decision_done(&d);
        if (r < 0) {
                fprintf(stderr, "policy-eval: out of memory\n");
                return 1;
        }
        fputs(out.buf, stdout);
        return 0;
}

static int batch(const json_t *inputs) {
        size_t i, n = json_array_size(inputs);

        if (!json_is_array(inputs)) {
                fprintf(stderr, "policy-eval: batch wants a JSON array of inputs\n");
                return 2;
        }
        fputs("[", stdout);
        for (i = 0; i < n; i++)
                if (evaluate(json_array_get(inputs, i), i + 1 < n ? ",\n" : "") != 0)
                        return 1;
        fputs("]\n", stdout);
        return 0;
}

static const char *member_string(const json_t *o, const char *k1, const char *k2) {
        const json_t *v = json_object_get(o, k1);

        return json_string_value(k2 ? json_object_get(v, k2) : v);
}

static int build(const json_t *parts) {
        const json_t *env = json_object_get(parts, "environment"),
                     *cluster = json_object_get(parts, "cluster");
        const json_t *eng = json_object_get(parts, "engine"), *doc = json_object_get(parts, "settings");
        _cleanup_free_ char *stored = NULL, *doc_text = NULL, *text = NULL;
        json_t *settings, *input;
        struct cm_problem p;

        if (doc) {
                int r;

                doc_text = cm_json_canonical(doc);
                if (!doc_text)
                        return 1;
                cm_problem_init(&p);
                r = cm_policy_settings_decode(doc_text, strlen(doc_text), &stored, &p);
                if (r < 0) {
                        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT(1U << 20);

                        if (cm_problem_encode(&p, NULL, &sb) >= 0)
                                printf("%s\n", sb.buf);
                        cm_problem_done(&p);
                        return 3;
                }
                cm_problem_done(&p);
        }
        settings = cm_policy_settings_effective(stored);
        if (!settings)
                return 1;
        input = cm_policy_input_build(
                member_string(parts, "operation", NULL), member_string(parts, "principal", NULL),
                member_string(env, "name", NULL), json_object_get(env, "labels"),
                member_string(cluster, "name", NULL), json_object_get(cluster, "labels"),
                json_object_get(cluster, "spec"), member_string(eng, "name", NULL),
                json_object_get(eng, "versions"), member_string(eng, "default", NULL), settings);
        json_decref(settings);
        if (!input)
                return 1;
        text = cm_json_canonical(input);
        json_decref(input);
        if (!text)
                return 1;
        printf("%s\n", text);
        return 0;
}

int main(int argc, char *argv[]) {
        _cleanup_strbuf_ struct strbuf in = STRBUF_INIT(INPUT_MAX);
        const char *mode = argc > 1 ? argv[1] : "evaluate";
        json_error_t err;
        json_t *v;
        int r;

        if (argc > 2 || !(streq(mode, "evaluate") || streq(mode, "batch") || streq(mode, "build"))) {
                fprintf(stderr, "usage: policy-eval [evaluate|batch|build] < input.json\n");
                return 2;
        }
        if (read_stdin(&in) < 0) {
                fprintf(stderr, "policy-eval: cannot read stdin\n");
                return 2;
        }
        v = json_loadb(in.buf ?: "", in.len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
        if (!v) {
                fprintf(stderr, "policy-eval: invalid JSON at line %d: %s\n", err.line, err.text);
                return 2;
        }
        r = streq(mode, "build") ? build(v) : streq(mode, "batch") ? batch(v) : evaluate(v, "\n");
        json_decref(v);
        return r;
}
