/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Policy settings of an environment: {"rules": {"<rule id>": {"enabled", "effect", "params"}}}.
 * Decoding is strict and reports every error with its field path; the effective settings are the
 * defaults of every rule with what the environment stored laid over them.
 */
#include "base/common.h"

#include "api/json.h"
#include "base/parse.h"
#include "base/strbuf.h"
#include "policy/policy.h"
#include "policy/policy_internal.h"

/* Client text in a field path: long keys are cut, as cm_json_check_fields() does. */
static const char *key_text(const char *key) {
        return strlen(key) > 64 ? "<long key>" : key;
}

static void check_count(const struct cm_policy__param *pd, const json_t *v, const char *path,
                        struct cm_problem *p) {
        if (!json_is_integer(v) || json_integer_value(v) < pd->min || json_integer_value(v) > pd->max)
                cm_problem_add(p, path, "must be a whole number from %lld to %lld", pd->min, pd->max);
}

static void check_version(const json_t *v, const char *path, struct cm_problem *p) {
        uint32_t parts[3];

        if (!json_is_string(v) || json_string_length(v) > 64 ||
            (json_string_length(v) > 0 && !cm_policy__version_parse(json_string_value(v), parts)))
                cm_problem_add(p, path,
                               "must be a Kubernetes version like v1.30.0 (a suffix like -rancher1-1 is "
                               "ignored), or \"\" for no minimum");
}

/* The lists: CIDRs, label keys, engine names; no entry twice. */
static void check_list(const struct cm_policy__param *pd, const json_t *v, const char *path,
                       struct cm_problem *p) {
        static const char *const examples[] = {
                [CM_POLICY__CIDRS] = "[\"10.0.0.0/8\", \"fd00::/8\"]",
                [CM_POLICY__LABEL_KEYS] = "[\"team\", \"example.com/cost-center\"]",
                [CM_POLICY__ENGINES] = "[\"rke\"]",
        };
        size_t i;
        json_t *x;

        if (!json_is_array(v) || json_array_size(v) > (size_t) pd->max) {
                cm_problem_add(p, path, "must be a list of at most %lld strings like %s", pd->max,
                               examples[pd->kind]);
                return;
        }
        json_array_foreach(v, i, x) {
                char field[192], why[160];
                const char *s = json_string_value(x);
                bool twice = false;

                cm_json_path_index(field, sizeof(field), path, i);
                if (!s) {
                        cm_problem_add(p, field, "must be a string, not %s", cm_json_type_name(x));
                        continue;
                }
                switch (pd->kind) {
                case CM_POLICY__CIDRS:
                        if (!cm_policy__cidr_valid(s, why, sizeof(why))) {
                                cm_problem_add(p, field, "%s", why);
                                continue;
                        }
                        break;
                case CM_POLICY__LABEL_KEYS:
                        if (!cm_policy__label_key_valid(s)) {
                                cm_problem_add(
                                        p, field,
                                        "label keys are [prefix/]name: name 1-63 characters of A-Z a-z "
                                        "0-9 . _ -");
                                continue;
                        }
                        break;
                case CM_POLICY__ENGINES:
                        if (!cm_dns_label_valid(s)) {
                                cm_problem_add(p, field,
                                               "must be an engine name like rke or local (a DNS label)");
                                continue;
                        }
                        break;
                default:
                        break;
                }
                for (size_t j = 0; j < i && !twice; j++)
                        twice = json_equal(x, json_array_get(v, j));
                if (twice)
                        cm_problem_add(p, field, "is listed twice");
        }
}

static void check_params(const struct cm_policy__rule *rule, const json_t *params, const char *base,
                         struct cm_problem *p) {
        const char *allowed[8] = {};
        size_t n = 0;

        if (!json_is_object(params)) {
                cm_problem_add(p, base, "must be an object of the rule's parameters, not %s",
                               cm_json_type_name(params));
                return;
        }
        for (const struct cm_policy__param *pd = rule->params; pd && pd->name && n + 1 < ELEMENTSOF(allowed);
             pd++)
                allowed[n++] = pd->name;
        if (n == 0 && json_object_size(params) > 0) {
                cm_problem_add(p, base, "rule %s has no parameters", rule->id);
                return;
        }
        (void) cm_json_check_fields(params, base, allowed, p);
        for (const struct cm_policy__param *pd = rule->params; pd && pd->name; pd++) {
                const json_t *v = json_object_get(params, pd->name);
                char path[192];

                if (!v)
                        continue;
                cm_json_path(path, sizeof(path), base, pd->name);
                switch (pd->kind) {
                case CM_POLICY__COUNT:
                        check_count(pd, v, path, p);
                        break;
                case CM_POLICY__VERSION:
                        check_version(v, path, p);
                        break;
                case CM_POLICY__LABELS:
                        (void) cm_labels_validate(v, path, p);
                        break;
                case CM_POLICY__CIDRS:
                case CM_POLICY__LABEL_KEYS:
                case CM_POLICY__ENGINES:
                        check_list(pd, v, path, p);
                        break;
                }
        }
}

static void rule_ids(char *buf, size_t size) {
        struct strbuf sb = STRBUF_INIT(size);
        int r = 0;

        for (const struct cm_policy__rule *rule = cm_policy__rules; r >= 0 && rule->id; rule++)
                r = strbuf_addf(&sb, "%s%s", rule == cm_policy__rules ? "" : ", ", rule->id);
        (void) cm_strlcpy(buf, sb.buf ?: "", size);
        strbuf_release(&sb);
}

static void check_rule(const char *id, const json_t *s, struct cm_problem *p) {
        static const char *const allowed[] = { "enabled", "effect", "params", NULL };
        const struct cm_policy__rule *rule = cm_policy__rule_find(id);
        const json_t *v;
        char base[128], path[160];

        cm_json_path(base, sizeof(base), "rules", key_text(id));
        if (!rule) {
                char ids[512];

                rule_ids(ids, sizeof(ids));
                cm_problem_add(p, base, "unknown rule; the built-in rules are %s", ids);
                return;
        }
        if (!json_is_object(s)) {
                cm_problem_add(
                        p, base,
                        "must be an object like {\"enabled\": true, \"effect\": \"deny\", \"params\": "
                        "{...}}, not %s",
                        cm_json_type_name(s));
                return;
        }
        (void) cm_json_check_fields(s, base, allowed, p);
        v = json_object_get(s, "enabled");
        cm_json_path(path, sizeof(path), base, "enabled");
        if (v && !json_is_boolean(v))
                cm_problem_add(p, path, "must be true or false, not %s", cm_json_type_name(v));
        v = json_object_get(s, "effect");
        cm_json_path(path, sizeof(path), base, "effect");
        if (v && (!json_is_string(v) ||
                  !(streq(json_string_value(v), "deny") || streq(json_string_value(v), "warn"))))
                cm_problem_add(p, path,
                               "must be \"deny\" (reject the request) or \"warn\" (accept it and say why)");
        v = json_object_get(s, "params");
        cm_json_path(path, sizeof(path), base, "params");
        if (v)
                check_params(rule, v, path, p);
}

int cm_policy_settings_decode(const char *body, size_t n, char **ret_canonical, struct cm_problem *p) {
        static const char *const allowed[] = { "rules", NULL };
        json_t *root = NULL, *rules, *s;
        const char *id;
        char *out = NULL;
        int r;

        r = cm_json_parse_strict(body, n, &root, p);
        if (r < 0)
                return r;
        (void) cm_json_check_fields(root, "", allowed, p);
        rules = json_object_get(root, "rules");
        if (rules && !json_is_object(rules))
                cm_problem_add(
                        p, "rules",
                        "must be an object of rule settings like {\"node-cidrs\": {\"params\": {\"cidrs\": "
                        "[\"10.0.0.0/8\"]}}}, not %s",
                        cm_json_type_name(rules));
        else if (rules)
                json_object_foreach(rules, id, s) {
                        check_rule(id, s, p);
                }
        if (cm_problem_has_errors(p) || p->status != 0) {
                json_decref(root);
                if (p->status == 0)
                        cm_problem_validation(p, "the policy settings are not valid; see errors");
                return -EINVAL;
        }
        if (!rules && json_object_set_new(root, "rules", json_object()) < 0) {
                json_decref(root);
                return -ENOMEM;
        }
        out = cm_json_canonical(root);
        json_decref(root);
        if (!out)
                return -ENOMEM;
        *ret_canonical = out;
        return 0;
}

/* One rule's effective settings: its defaults, with what stored (any JSON) gives that can be used. */
static json_t *rule_effective(const struct cm_policy__rule *rule, const json_t *stored) {
        const json_t *enabled = json_object_get(stored, "enabled"),
                     *effect = json_object_get(stored, "effect");
        const json_t *given = json_object_get(stored, "params");
        json_t *params = json_object(), *o;

        for (const struct cm_policy__param *pd = rule->params; params && pd && pd->name; pd++) {
                const json_t *v = json_object_get(given, pd->name);
                json_t *value = v && cm_policy__param_usable(pd, v) ? json_deep_copy(v)
                                                                    : cm_policy__param_default(pd);

                if (json_object_set_new(params, pd->name, value) < 0) {
                        json_decref(params);
                        return NULL;
                }
        }
        if (!params)
                return NULL;
        if (!(json_is_string(effect) &&
              (streq(json_string_value(effect), "deny") || streq(json_string_value(effect), "warn"))))
                effect = NULL;
        o = json_pack("{s:b, s:s, s:o}", "enabled",
                      json_is_boolean(enabled) ? json_is_true(enabled) : rule->enabled, "effect",
                      effect       ? json_string_value(effect)
                      : rule->deny ? "deny"
                                   : "warn",
                      "params", params);
        return o;
}

json_t *cm_policy_settings_effective(const char *stored_json) {
        json_t *stored = NULL, *rules = json_object();
        const json_t *given;

        if (!rules)
                return NULL;
        /* Stored settings went through cm_policy_settings_decode(); anything else counts as none. */
        if (stored_json)
                stored = json_loads(stored_json, JSON_REJECT_DUPLICATES, NULL);
        given = json_object_get(stored, "rules");
        for (const struct cm_policy__rule *rule = cm_policy__rules; rule->id; rule++) {
                const json_t *s = json_object_get(given, rule->id);

                if (json_object_set_new(rules, rule->id,
                                        rule_effective(rule, json_is_object(s) ? s : NULL)) < 0) {
                        json_decref(stored);
                        json_decref(rules);
                        return NULL;
                }
        }
        json_decref(stored);
        return json_pack("{s:o}", "rules", rules);
}
