/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "base/strbuf.h"
#include "cli/internal.h"

#define POLICY_DOC_SHAPE "a policy settings document is a mapping: rules: {RULE: {enabled, effect, params}}"

/* The rules as they apply: a table (RULE, ENABLED, EFFECT, PARAMS) or the whole document. */
static int print_rules(struct cm_cli *cli, const json_t *doc) {
        const json_t *rules = json_object_get(doc, "rules"), *rule;
        size_t w = 4, i;

        if (cli->output != CM_OUTPUT_TABLE)
                return cm_cli_print_document(cli, doc);
        json_array_foreach(rules, i, rule) {
                const char *id = json_string_value(json_object_get(rule, "id"));
                w = MAX(w, id ? strlen(id) : 0);
        }
        fprintf(cli->out, "%-*s  %-7s  %-6s  %s\n", (int) w, "RULE", "ENABLED", "EFFECT", "PARAMS");
        json_array_foreach(rules, i, rule) {
                const json_t *params = json_object_get(rule, "params");
                _cleanup_free_ char *ptext =
                        json_object_size(params) ? json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
                _cleanup_strbuf_ struct strbuf line = STRBUF_INIT(64 * 1024);

                if (strbuf_addf(&line, "%-*s  %-7s  %-6s  ", (int) w,
                                strna(json_string_value(json_object_get(rule, "id"))),
                                json_is_true(json_object_get(rule, "enabled")) ? "true" : "false",
                                strna(json_string_value(json_object_get(rule, "effect")))) < 0 ||
                    cm_output_add_clean(&line, ptext ?: "-") < 0)
                        return cm_cli_error(cli, "out of memory");
                fprintf(cli->out, "%s\n", line.buf);
        }
        fprintf(cli->out, "\nenvironment %s, settings version %" JSON_INTEGER_FORMAT ", decided by %s\n",
                strna(json_string_value(json_object_get(doc, "environment"))),
                json_integer_value(json_object_get(doc, "version")),
                strna(json_string_value(json_object_get(doc, "mode"))));
        return CM_EXIT_OK;
}

static int policy_get(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                      int argc, char **argv) {
        return cm_cli_settings_get_command(cli, noun, verb, argc, argv, "policies", NULL, print_rules);
}

static int policy_set(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                      int argc, char **argv) {
        const char *file = NULL;
        const struct cm_cli_opt opts[] = {
                { "file", 'f', CM_CLI_OPT_STRING, &file },
        };
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        json_t *doc = NULL, *body = NULL, *answer = NULL;
        size_t n_pos;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), NULL, 0, 0, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (!file)
                return cm_cli_usage_error(cli, noun, verb, "give the settings with -f FILE (- reads stdin)");
        if (cm_cli_read_document(cli, POLICY_DOC_SHAPE, file, &doc) < 0)
                return CM_EXIT_FAILURE;
        /* `policy get -o yaml` output can be edited and set again: only its settings are sent. */
        body = json_incref(json_object_get(doc, "settings") ?: doc);
        if (cm_cli_env_path(cli, &path, "policies", NULL, NULL) < 0)
                r = cm_cli_error(cli, "the environment name is too long");
        else if (cm_cli_call(cli, "PUT", path.buf, body, NULL, &answer, NULL) < 0)
                r = CM_EXIT_FAILURE;
        else
                r = print_rules(cli, answer);
        json_decref(answer);
        json_decref(body);
        json_decref(doc);
        return r;
}

static int policy_check(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                        int argc, char **argv) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        const json_t *items, *item;
        json_t *report = NULL;
        size_t n_pos, i;
        int r = CM_EXIT_OK;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, NULL, 0, NULL, 0, 0, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (cm_cli_env_path(cli, &path, "policies", NULL, "check") < 0)
                return cm_cli_error(cli, "the environment name is too long");
        if (cm_cli_call(cli, "POST", path.buf, NULL, NULL, &report, NULL) < 0)
                return CM_EXIT_FAILURE;
        items = json_object_get(report, "items");
        if (cli->output != CM_OUTPUT_TABLE)
                r = cm_cli_print_document(cli, report);
        else {
                json_array_foreach(items, i, item) {
                        const json_t *d = json_object_get(item, "decision"), *v;
                        const char *name = strna(json_string_value(json_object_get(item, "cluster")));
                        size_t k;

                        if (!d) {
                                fprintf(cli->out, "%s: not checked: %s\n", name,
                                        strna(json_string_value(json_object_get(item, "error"))));
                                continue;
                        }
                        if (json_array_size(json_object_get(d, "deny")) == 0 &&
                            json_array_size(json_object_get(d, "warn")) == 0) {
                                fprintf(cli->out, "%s: compliant\n", name);
                                continue;
                        }
                        fprintf(cli->out, "%s: %s\n", name,
                                json_array_size(json_object_get(d, "deny")) ? "VIOLATES"
                                                                            : "compliant, with warnings");
                        for (int pass = 0; pass < 2; pass++)
                                json_array_foreach(json_object_get(d, pass ? "warn" : "deny"), k, v) {
                                        _cleanup_strbuf_ struct strbuf line = STRBUF_INIT(8192);
                                        const char *field = json_string_value(json_object_get(v, "field"));

                                        if (strbuf_addf(&line, "  %s [%s] ", pass ? "warn:" : "deny:",
                                                        strna(json_string_value(
                                                                json_object_get(v, "rule")))) < 0 ||
                                            cm_output_add_clean(
                                                    &line, strna(json_string_value(
                                                                   json_object_get(v, "message")))) < 0 ||
                                            (field && (strbuf_adds(&line, " (") < 0 ||
                                                       cm_output_add_clean(&line, field) < 0 ||
                                                       strbuf_addch(&line, ')') < 0)))
                                                return cm_cli_error(cli, "out of memory");
                                        fprintf(cli->out, "%s\n", line.buf);
                                }
                }
                fprintf(cli->out,
                        "%" JSON_INTEGER_FORMAT " clusters checked, %" JSON_INTEGER_FORMAT " violating\n",
                        json_integer_value(json_object_get(report, "checked")),
                        json_integer_value(json_object_get(report, "violations")));
        }
        /* Violations make the command fail, for scripts and CI. */
        if (r == CM_EXIT_OK && json_integer_value(json_object_get(report, "violations")) > 0)
                r = CM_EXIT_FAILURE;
        json_decref(report);
        return r;
}

static const struct cm_cli_verb policy_verbs[] = {
        { "get", "", "Show the environment's rules as they apply (enabled, effect, parameters).",
          policy_get },
        { "set", "-f FILE",
          "Replace the environment's policy settings (YAML or JSON: rules: {RULE: {enabled, effect, "
          "params}};\n"
          "      only what differs from the defaults; admin).",
          policy_set },
        { "check", "",
          "Evaluate every cluster of the environment against its current policies (sets their\n"
          "      PolicyCompliant condition); exits 1 when one violates them.",
          policy_check },
};

const struct cm_cli_noun cm_cli_noun_policy = {
        .name = "policy",
        .summary = "compliance policies of the environment: get, set, check",
        .description =
                "Cluster specs are checked against these rules before a create or a change is accepted\n"
                "(docs/policy.md lists them).",
        .verbs = policy_verbs,
        .n_verbs = ELEMENTSOF(policy_verbs),
};
