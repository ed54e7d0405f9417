/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Policy settings documents (strict decoding, effective settings of stored text) and the built-in
 * evaluator over an arbitrary policy input: the same bytes are read as a settings document, as stored
 * settings, as a whole policy input, and as a cluster spec under a few effective settings.
 */
#include "base/common.h"

#include "api/json.h"
#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every violation is {"rule", "message", "field"} of strings. */
static void check_decision(const struct cm_policy_decision *d) {
        const json_t *lists[2] = { d->deny, d->warn };

        for (int l = 0; l < 2; l++) {
                size_t i;
                json_t *v;

                if (!json_is_array(lists[l]))
                        __builtin_trap();
                json_array_foreach(lists[l], i, v) {
                        if (json_object_size(v) != 3 || !json_is_string(json_object_get(v, "rule")) ||
                            !json_is_string(json_object_get(v, "message")) ||
                            !json_is_string(json_object_get(v, "field")))
                                __builtin_trap();
                }
        }
}

static void evaluate(const json_t *input) {
        struct cm_policy_decision d = {};
        int r = cm_policy_evaluate_builtin(input, &d);

        if (r == -ENOMEM)
                return;
        if (r != 0)
                __builtin_trap();
        check_decision(&d);
        cm_policy_decision_done(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char *const settings_docs[] = {
                NULL,
                "{\"rules\":{\"node-cidrs\":{\"params\":{\"cidrs\":[\"10.0.0.0/8\",\"fd00::/8\"]}},"
                "\"required-labels\":{\"params\":{\"keys\":[\"team\"]}},\"supported-version\":{\"params\":{"
                "\"minimum\":\"v1.30.0\"}},\"etcd-snapshots\":{\"params\":{\"minRetentionHours\":100}},"
                "\"allowed-engines\":{\"params\":{\"engines\":[\"rke\"]}},\"max-nodes\":{\"params\":{"
                "\"max\":2}}}}",
                "{\"rules\":{\"production-etcd-quorum\":{\"params\":{\"environmentLabels\":{}}},\"odd-etcd-"
                "count\":{"
                "\"effect\":\"deny\"}}}",
        };
        char *canonical = NULL, *text;
        struct cm_problem p;
        json_t *v, *settings;
        int r;

        /* As a settings document: accepted, or refused as the client's fault. */
        cm_problem_init(&p);
        r = cm_policy_settings_decode((const char *) data, size, &canonical, &p);
        if (r == 0) {
                settings = cm_policy_settings_effective(canonical);
                if (!settings || json_object_size(json_object_get(settings, "rules")) < 9)
                        __builtin_trap();
                json_decref(settings);
                free(canonical);
        } else if (r != -ENOMEM && (r != -EINVAL || p.status < 400 || p.status >= 500))
                __builtin_trap();
        cm_problem_done(&p);

        /* As stored settings that went wrong: still the rules, with defaults where unusable. */
        text = strndup((const char *) data, size);
        if (text) {
                settings = cm_policy_settings_effective(text);
                if (settings && json_object_size(json_object_get(settings, "rules")) < 9)
                        __builtin_trap();
                json_decref(settings);
                free(text);
        }

        v = json_loadb((const char *) data, size, JSON_DECODE_ANY, NULL);
        if (!v)
                return 0;
        /* As a whole input. */
        evaluate(v);
        /* As a spec (and as its labels) under several settings. */
        for (size_t i = 0; i < ELEMENTSOF(settings_docs); i++) {
                json_t *versions = json_pack("[s, s]", "v1.32.7-rancher1-1", "v1.31.11-rancher1-1"), *input;

                settings = cm_policy_settings_effective(settings_docs[i]);
                input = cm_policy_input_build("create", "admin", "prod", v, "east", v, v,
                                              json_string_value(json_object_get(v, "engine")), versions,
                                              "v1.32.7-rancher1-1", settings);
                if (input)
                        evaluate(input);
                json_decref(input);
                json_decref(settings);
                json_decref(versions);
        }
        json_decref(v);
        return 0;
}
