/* SPDX-License-Identifier: Apache-2.0 */
/* Policy routes: an environment's compliance settings, and checks of its existing clusters. */
#include "base/common.h"

#include "api/json.h"
#include "api/problem.h"
#include "base/parse.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "lifecycle/service.h"
#include "policy/policy.h"
#include "server/handlers.h"
#include "server/server_internal.h"

/*
 * {"environment", "mode", "version", "settings": what the environment stored,
 *  "rules": [{"id", "description", "enabled", "effect", "params", "defaults": {...}}]}: every
 * built-in rule as it applies in the environment (in remote mode, what the policy service gets).
 */
static int policy_document(struct cm_req *req, const char *env, const char *stored, int64_t version) {
        json_t *catalogue = cm_policy_catalogue(), *effective = cm_policy_settings_effective(stored);
        json_t *settings = stored ? json_loads(stored, 0, NULL) : json_pack("{s:{}}", "rules");
        json_t *rules = json_array(), *entry, *doc = NULL;
        _cleanup_free_ char *text = NULL;
        size_t i;
        int r = -ENOMEM;

        if (!catalogue || !effective || !settings || !rules)
                goto out;
        json_array_foreach(catalogue, i, entry) {
                const char *id = json_string_value(json_object_get(entry, "id"));
                const json_t *eff = json_object_get(json_object_get(effective, "rules"), id ?: "");
                json_t *item = json_deep_copy(entry);

                if (!item || json_array_append_new(rules, item) < 0)
                        goto out;
                /* the catalogue's values are the defaults; the effective ones go beside them */
                if (json_object_set(item, "defaults", json_object_get(entry, "params") ?: json_object()) < 0)
                        goto out;
                if (json_is_object(eff)) {
                        const char *k;
                        json_t *v;

                        json_object_foreach(CM_UNCONST(json_t *, eff), k, v) {
                                if (json_object_set(item, k, v) < 0)
                                        goto out;
                        }
                }
        }
        doc = json_pack("{s:s,s:s,s:I,s:O,s:O}", "environment", env, "mode",
                        req->svc->policy ? "remote" : "builtin", "version", (json_int_t) version, "settings",
                        settings, "rules", rules);
        text = doc ? cm_json_canonical(doc) : NULL;
        if (!text)
                goto out;
        r = strbuf_adds(&req->out, text);
        if (r >= 0)
                cm_settings_etag(req, version);
out:
        json_decref(doc);
        json_decref(rules);
        json_decref(settings);
        json_decref(effective);
        json_decref(catalogue);
        return r;
}

void cm_handle_policy_get(struct cm_req *req) {
        _cleanup_free_ char *stored = NULL;
        int64_t version = 0;
        int r;

        r = STORE_CALL(req->svc->store, env_policy_get, req->params[0], &stored, &version);
        if (r >= 0)
                r = policy_document(req, req->params[0], stored, version);
        cm_settings_reply(req, r, NULL, NULL, -1);
}

void cm_handle_policy_put(struct cm_req *req) {
        _cleanup_free_ char *settings = NULL;
        struct cm_problem p;
        int64_t expected, version = 0;
        int r;

        if (cm_settings_if_match(req, &expected) < 0)
                return;
        cm_problem_init(&p);
        r = cm_policy_settings_decode(req->body.buf ?: "", req->body.len, &settings, &p);
        if (r >= 0)
                r = STORE_CALL(req->svc->store, env_policy_put, req->params[0], settings, expected,
                               cm_now_usec(), &version);
        if (r >= 0)
                r = policy_document(req, req->params[0], settings, version);
        cm_settings_reply(req, r, &p, "policy", expected);
        cm_problem_done(&p);
}

/*
 * POST .../policies/check: every cluster of the environment against its current policies; each
 * cluster's PolicyCompliant condition is set. {"environment","mode","checked","violations","items"}.
 */
void cm_handle_policy_check(struct cm_req *req) {
        unsigned checked = 0, violations = 0;
        struct cm_environment e = {};
        int r;

        r = STORE_CALL(req->svc->store, env_get, req->params[0], &e);
        cm_environment_done(&e);
        if (r == -ENOENT)
                return cm_reply_not_found(req, "environment", req->params[0]);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        r = strbuf_adds(&req->out, "{\"items\":[");
        if (r >= 0)
                r = cm_compliance_check_env(req->svc, req->params[0], req->principal.name, &req->out,
                                            &checked, &violations);
        if (r >= 0)
                r = strbuf_addf(&req->out,
                                "],\"checked\":%u,\"violations\":%u,\"mode\":\"%s\",\"environment\":",
                                checked, violations, req->svc->policy ? "remote" : "builtin");
        if (r >= 0)
                r = strbuf_add_json_string(&req->out, req->params[0]);
        if (r >= 0)
                r = strbuf_addch(&req->out, '}');
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 200);
}
