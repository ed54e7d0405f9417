/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <jansson.h>

#include "api/problem.h"
#include "base/common.h"

/*
 * Compliance validation of cluster specs (docs/policy.md).
 *
 * Everything is decided over one JSON document, the policy input, built by cm_policy_input_build()
 * and sent as is to a remote Policy Management Service (OPA: POST /v1/data/<package> {"input": ...}),
 * so that the built-in rules (C) and the shipped Rego bundle (policy/) see the same facts:
 *
 *   {"operation": "create" | "update" | "check",
 *    "principal": "admin",
 *    "environment": {"name": "prod", "labels": {...}},
 *    "cluster": {"name": "east", "labels": {...}, "spec": {...validated spec...}},
 *    "engine": {"name": "rke", "versions": ["v1.32.7-rancher1-1", ...] | null, "default": "..." | null},
 *    "settings": {"rules": {"<rule id>": {"enabled": true, "effect": "deny" | "warn",
 *                                         "params": {...}}, ...}}}
 *
 * settings are the environment's effective settings: every built-in rule with its defaults, merged
 * with what the environment stored (PUT /v1/environments/{env}/policies).
 *
 * A decision is {"deny": [V...], "warn": [V...]} with V = {"rule": id, "message": text, "field"?: path}
 * (field: the spec path the violation is about, like "spec.rke.nodes[2].address").
 */

struct cm_policy_decision {
        json_t *deny; /* array of violations */
        json_t *warn; /* array of violations */
};

void cm_policy_decision_done(struct cm_policy_decision *d);

/*
 * The built-in rules in catalogue order (docs/policy.md):
 * [{"id","effect","description","params":{name: default...},"enabled"}]. NULL on ENOMEM.
 */
json_t *cm_policy_catalogue(void);

/*
 * Decodes a settings document of an environment (strictly: unknown rules, unknown params and wrong
 * types are field errors, 422) into canonical JSON. Only what differs from the defaults needs to be
 * given; {"rules": {}} resets to the defaults.
 *
 * {"rules": {"<rule id>": {"enabled": bool, "effect": "deny"|"warn", "params": {...}}}}, each member
 * optional. Every error is reported, with paths like "rules.node-cidrs.params.cidrs[1]". Returns 0 with
 * *ret_canonical (malloc'd, compact, keys sorted, "rules" always present); -EINVAL with p set (400 or
 * 413 for malformed JSON, 422 with field errors); -ENOMEM.
 */
int cm_policy_settings_decode(const char *body, size_t n, char **ret_canonical, struct cm_problem *p);

/*
 * Effective settings: the defaults of every rule merged with stored (canonical JSON or NULL):
 * {"rules": {"<id>": {"enabled", "effect", "params": {every param}}}} for all built-in rules. Stored
 * text that does not parse, unknown rules and values of the wrong type are ignored (defaults apply).
 * NULL on ENOMEM only.
 */
json_t *cm_policy_settings_effective(const char *stored_json);

/*
 * Builds the policy input; every argument is copied or referenced (json_incref). NULL on ENOMEM. A NULL
 * string becomes null; NULL labels {}; a NULL spec or versions null; NULL effective_settings the
 * defaults (cm_policy_settings_effective(NULL)).
 */
json_t *cm_policy_input_build(const char *operation, const char *principal, const char *env,
                              const json_t *env_labels, const char *cluster, const json_t *labels,
                              const json_t *spec, const char *engine, const json_t *versions,
                              const char *default_version, const json_t *effective_settings);

/*
 * Evaluates the built-in rules over an input. 0, or -ENOMEM. Any JSON value is accepted and no type in
 * it is trusted: a member of the wrong type counts as absent, a setting of the wrong type as its
 * default. On success *ret holds two new arrays of {"rule", "message", "field"} (in catalogue order,
 * then node order), to be released with cm_policy_decision_done(); on failure *ret is untouched.
 * policy/cratekube gives the same decisions in Rego.
 */
int cm_policy_evaluate_builtin(const json_t *input, struct cm_policy_decision *ret);

/*
 * Decodes a decision as a policy service answers it: {"result": {"deny": [...], "warn": [...]}},
 * where each entry is a string (the message) or an object {"msg"|"message", "rule"?, "field"?}.
 * A missing result or missing lists count as empty here; cm_policy_remote_evaluate() refuses an answer
 * without "result" (OPA's answer for a package without rules), so that a wrong package path never
 * reads as "no violations". -EBADMSG for anything else.
 */
int cm_policy_decision_decode(const char *body, size_t n, struct cm_policy_decision *ret);
