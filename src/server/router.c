/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "addons/definition.h"
#include "server/handlers.h"
#include "server/router.h"

const struct cm_route cm_routes[] = {
        { "GET", "/healthz", cm_handle_healthz, CM_ROLE_NONE, CM_SCOPE_ANY, false, false },
        { "GET", "/readyz", cm_handle_readyz, CM_ROLE_NONE, CM_SCOPE_ANY, false, false },
        { "GET", "/metrics", cm_handle_metrics, CM_ROLE_NONE, CM_SCOPE_ANY, false, false },
        { "GET", "/openapi.json", cm_handle_openapi, CM_ROLE_NONE, CM_SCOPE_ANY, false, false },
        { "POST", "/v1/environments", cm_handle_env_create, CM_ROLE_ADMIN, CM_SCOPE_GLOBAL, false, false },
        { "GET", "/v1/environments", cm_handle_env_list, CM_ROLE_VIEWER, CM_SCOPE_ANY, false, false },
        { "GET", "/v1/environments/{env}", cm_handle_env_get, CM_ROLE_VIEWER, CM_SCOPE_ENV, false, false },
        { "DELETE", "/v1/environments/{env}", cm_handle_env_delete, CM_ROLE_ADMIN, CM_SCOPE_ENV, false,
          false },
        { "POST", "/v1/environments/{env}/clusters", cm_handle_cluster_create, CM_ROLE_OPERATOR,
          CM_SCOPE_ENV, false, false },
        { "GET", "/v1/environments/{env}/clusters", cm_handle_cluster_list, CM_ROLE_VIEWER, CM_SCOPE_ENV,
          false, false },
        { "GET", "/v1/environments/{env}/clusters/{name}", cm_handle_cluster_get, CM_ROLE_VIEWER,
          CM_SCOPE_ENV, false, false },
        { "PUT", "/v1/environments/{env}/clusters/{name}", cm_handle_cluster_update, CM_ROLE_OPERATOR,
          CM_SCOPE_ENV, false, false },
        { "DELETE", "/v1/environments/{env}/clusters/{name}", cm_handle_cluster_delete, CM_ROLE_OPERATOR,
          CM_SCOPE_ENV, false, false },
        { "GET", "/v1/environments/{env}/clusters/{name}/kubeconfig", cm_handle_cluster_kubeconfig,
          CM_ROLE_ADMIN, CM_SCOPE_ENV, false, true },
        { "GET", "/v1/environments/{env}/clusters/{name}/kubeconfig/customer",
          cm_handle_cluster_kubeconfig_customer, CM_ROLE_OPERATOR, CM_SCOPE_ENV, false, true },
        { "GET", "/v1/environments/{env}/clusters/{name}/operations", cm_handle_cluster_operations,
          CM_ROLE_VIEWER, CM_SCOPE_ENV, false, false },
        { "POST", "/v1/environments/{env}/clusters/{name}/snapshots", cm_handle_cluster_snapshot,
          CM_ROLE_OPERATOR, CM_SCOPE_ENV, false, false },
        { "GET", "/v1/environments/{env}/clusters/{name}/snapshots", cm_handle_cluster_snapshots,
          CM_ROLE_VIEWER, CM_SCOPE_ENV, false, false },
        { "POST", "/v1/environments/{env}/clusters/{name}/restore", cm_handle_cluster_restore,
          CM_ROLE_OPERATOR, CM_SCOPE_ENV, false, false },
        { "POST", "/v1/environments/{env}/clusters/{name}/rotate-certs", cm_handle_cluster_rotate_certs,
          CM_ROLE_OPERATOR, CM_SCOPE_ENV, false, false },
        { "GET", "/v1/environments/{env}/clusters/{name}/state", cm_handle_cluster_state_list, CM_ROLE_ADMIN,
          CM_SCOPE_ENV, false, false },
        { "GET", "/v1/environments/{env}/clusters/{name}/state/{file}", cm_handle_cluster_state_get,
          CM_ROLE_ADMIN, CM_SCOPE_ENV, false, true },
        { "GET", "/v1/environments/{env}/clusters/{name}/health", cm_handle_cluster_health, CM_ROLE_VIEWER,
          CM_SCOPE_ENV, false, false },
        { "GET", "/v1/environments/{env}/clusters/{name}/health/history", cm_handle_cluster_health_history,
          CM_ROLE_VIEWER, CM_SCOPE_ENV, false, false },
        { "GET", "/v1/operations/{id}", cm_handle_op_get, CM_ROLE_VIEWER, CM_SCOPE_OPERATION, false, false },
        { "GET", "/v1/operations/{id}/log", cm_handle_op_log, CM_ROLE_VIEWER, CM_SCOPE_OPERATION, true,
          false },
        { "POST", "/v1/operations/{id}/cancel", cm_handle_op_cancel, CM_ROLE_OPERATOR, CM_SCOPE_OPERATION,
          false, false },
        { "POST", "/v1/environments/{env}/sshkeys", cm_handle_sshkey_create, CM_ROLE_ADMIN, CM_SCOPE_ENV,
          false, false },
        { "GET", "/v1/environments/{env}/sshkeys", cm_handle_sshkey_list, CM_ROLE_VIEWER, CM_SCOPE_ENV,
          false, false },
        { "GET", "/v1/environments/{env}/sshkeys/{name}", cm_handle_sshkey_get, CM_ROLE_VIEWER, CM_SCOPE_ENV,
          false, false },
        { "DELETE", "/v1/environments/{env}/sshkeys/{name}", cm_handle_sshkey_delete, CM_ROLE_ADMIN,
          CM_SCOPE_ENV, false, false },
        { "POST", "/v1/environments/{env}/secrets", cm_handle_secret_create, CM_ROLE_ADMIN, CM_SCOPE_ENV,
          false, false },
        { "GET", "/v1/environments/{env}/secrets", cm_handle_secret_list, CM_ROLE_VIEWER, CM_SCOPE_ENV,
          false, false },
        { "GET", "/v1/environments/{env}/secrets/{name}", cm_handle_secret_get, CM_ROLE_VIEWER, CM_SCOPE_ENV,
          false, false },
        { "PUT", "/v1/environments/{env}/secrets/{name}", cm_handle_secret_update, CM_ROLE_ADMIN,
          CM_SCOPE_ENV, false, false },
        { "DELETE", "/v1/environments/{env}/secrets/{name}", cm_handle_secret_delete, CM_ROLE_ADMIN,
          CM_SCOPE_ENV, false, false },
        { "POST", "/v1/environments/{env}/addons", cm_handle_addon_create, CM_ROLE_ADMIN, CM_SCOPE_ENV,
          false, false, CM_ADDON_BODY_MAX },
        { "GET", "/v1/environments/{env}/addons", cm_handle_addon_list, CM_ROLE_VIEWER, CM_SCOPE_ENV, false,
          false },
        { "GET", "/v1/environments/{env}/addons/{addon}", cm_handle_addon_get, CM_ROLE_VIEWER, CM_SCOPE_ENV,
          false, false },
        { "PUT", "/v1/environments/{env}/addons/{addon}", cm_handle_addon_update, CM_ROLE_ADMIN,
          CM_SCOPE_ENV, false, false, CM_ADDON_BODY_MAX },
        { "DELETE", "/v1/environments/{env}/addons/{addon}", cm_handle_addon_delete, CM_ROLE_ADMIN,
          CM_SCOPE_ENV, false, false },
        { "POST", "/v1/environments/{env}/clusters/{name}/addons", cm_handle_install_create,
          CM_ROLE_OPERATOR, CM_SCOPE_ENV, false, false, CM_ADDON_INSTALL_BODY_MAX },
        { "GET", "/v1/environments/{env}/clusters/{name}/addons", cm_handle_install_list, CM_ROLE_VIEWER,
          CM_SCOPE_ENV, false, false },
        { "GET", "/v1/environments/{env}/clusters/{name}/addons/{addon}", cm_handle_install_get,
          CM_ROLE_VIEWER, CM_SCOPE_ENV, false, false },
        { "PUT", "/v1/environments/{env}/clusters/{name}/addons/{addon}", cm_handle_install_update,
          CM_ROLE_OPERATOR, CM_SCOPE_ENV, false, false, CM_ADDON_INSTALL_BODY_MAX },
        { "DELETE", "/v1/environments/{env}/clusters/{name}/addons/{addon}", cm_handle_install_delete,
          CM_ROLE_OPERATOR, CM_SCOPE_ENV, false, false },
        { "POST", "/v1/environments/{env}/clusters/{name}/addons/{addon}/sync", cm_handle_install_sync,
          CM_ROLE_OPERATOR, CM_SCOPE_ENV, false, false },
        { "POST", "/v1/environments/{env}/clusters/{name}/addons/{addon}/plan", cm_handle_install_plan,
          CM_ROLE_OPERATOR, CM_SCOPE_ENV, false, false },
        { "GET", "/v1/environments/{env}/policies", cm_handle_policy_get, CM_ROLE_VIEWER, CM_SCOPE_ENV,
          false, false },
        { "PUT", "/v1/environments/{env}/policies", cm_handle_policy_put, CM_ROLE_ADMIN, CM_SCOPE_ENV, false,
          false },
        { "POST", "/v1/environments/{env}/policies/check", cm_handle_policy_check, CM_ROLE_OPERATOR,
          CM_SCOPE_ENV, false, false },
        { "POST", "/v1/environments/{env}/webhooks", cm_handle_webhook_create, CM_ROLE_ADMIN, CM_SCOPE_ENV,
          false, false },
        { "GET", "/v1/environments/{env}/webhooks", cm_handle_webhook_list, CM_ROLE_ADMIN, CM_SCOPE_ENV,
          false, false },
        { "GET", "/v1/environments/{env}/webhooks/{name}", cm_handle_webhook_get, CM_ROLE_ADMIN,
          CM_SCOPE_ENV, false, false },
        { "DELETE", "/v1/environments/{env}/webhooks/{name}", cm_handle_webhook_delete, CM_ROLE_ADMIN,
          CM_SCOPE_ENV, false, false },
        { "GET", "/v1/environments/{env}/webhooks/{name}/deliveries", cm_handle_webhook_deliveries,
          CM_ROLE_ADMIN, CM_SCOPE_ENV, false, false },
        { "GET", "/v1/environments/{env}/monitoring", cm_handle_monitoring_get, CM_ROLE_VIEWER, CM_SCOPE_ENV,
          false, false },
        { "PUT", "/v1/environments/{env}/monitoring", cm_handle_monitoring_put, CM_ROLE_ADMIN, CM_SCOPE_ENV,
          false, false },
        { "GET", "/v1/environments/{env}/customer-access", cm_handle_customer_access_get, CM_ROLE_VIEWER,
          CM_SCOPE_ENV, false, false },
        { "PUT", "/v1/environments/{env}/customer-access", cm_handle_customer_access_put, CM_ROLE_ADMIN,
          CM_SCOPE_ENV, false, false },
        /* the handler checks the role: in ?environment=, or in every environment without it */
        { "GET", "/v1/events", cm_handle_events, CM_ROLE_VIEWER, CM_SCOPE_ANY, true, false },
        { "GET", "/v1/engines/{engine}/versions", cm_handle_engine_versions, CM_ROLE_VIEWER, CM_SCOPE_ANY,
          false, false },
        { "POST", "/v1/apikeys", cm_handle_apikey_create, CM_ROLE_ADMIN, CM_SCOPE_GLOBAL, false, false },
        { "GET", "/v1/apikeys", cm_handle_apikey_list, CM_ROLE_ADMIN, CM_SCOPE_GLOBAL, false, false },
        { "DELETE", "/v1/apikeys/{id}", cm_handle_apikey_revoke, CM_ROLE_ADMIN, CM_SCOPE_GLOBAL, false,
          false },
        { "POST", "/v1/rolebindings", cm_handle_rolebinding_create, CM_ROLE_ADMIN, CM_SCOPE_GLOBAL, false,
          false },
        { "GET", "/v1/rolebindings", cm_handle_rolebinding_list, CM_ROLE_ADMIN, CM_SCOPE_GLOBAL, false,
          false },
        { "DELETE", "/v1/rolebindings/{id}", cm_handle_rolebinding_delete, CM_ROLE_ADMIN, CM_SCOPE_GLOBAL,
          false, false },
        { "GET", "/v1/audit", cm_handle_audit_list, CM_ROLE_ADMIN, CM_SCOPE_GLOBAL, false, false },
        { "GET", "/v1/audit/verify", cm_handle_audit_verify, CM_ROLE_ADMIN, CM_SCOPE_GLOBAL, false, false },
        { "GET", "/v1/whoami", cm_handle_whoami, CM_ROLE_VIEWER, CM_SCOPE_ANY, false, false },
};
const size_t cm_routes_count = ELEMENTSOF(cm_routes);

size_t cm_route_index(const struct cm_route *r) {
        return (size_t) (r - cm_routes);
}

static bool pattern_match(const char *pattern, char *const segs[], size_t n, char *params[],
                          size_t *ret_np) {
        const char *p = pattern + 1;
        size_t i = 0, np = 0;

        while (*p) {
                const char *end = strchrnul(p, '/');
                size_t len = (size_t) (end - p);

                if (i >= n)
                        return false;
                if (*p == '{') {
                        if (np >= CM_ROUTE_MAX_PARAMS)
                                return false;
                        params[np++] = segs[i];
                } else if (strlen(segs[i]) != len || !strneq(segs[i], p, len))
                        return false;
                i++;
                p = *end ? end + 1 : end;
        }
        if (i != n)
                return false;
        *ret_np = np;
        return true;
}

const struct cm_route *cm_route_match(const char *method, char *path, char *params[CM_ROUTE_MAX_PARAMS],
                                      size_t *ret_n_params, bool *ret_path_matched) {
        char *segs[8];
        size_t n = 0;

        *ret_path_matched = false;
        /* Split on '/' by replacing each separator with NUL. */
        {
                char *p = path;

                if (*p != '/')
                        return NULL;
                p++;
                if (*p == 0)
                        return NULL;
                for (;;) {
                        if (n >= ELEMENTSOF(segs) || *p == '/' || *p == 0)
                                return NULL; /* too deep, or an empty segment */
                        segs[n++] = p;
                        p = strchrnul(p, '/');
                        if (*p == 0)
                                break;
                        *p++ = 0;
                }
        }
        for (size_t i = 0; i < cm_routes_count; i++) {
                char *prm[CM_ROUTE_MAX_PARAMS];
                size_t np = 0;

                if (!pattern_match(cm_routes[i].pattern, segs, n, prm, &np))
                        continue;
                if (!streq(cm_routes[i].method, method)) {
                        *ret_path_matched = true;
                        continue;
                }
                memcpy(params, prm, sizeof(prm[0]) * np);
                *ret_n_params = np;
                return &cm_routes[i];
        }
        return NULL;
}
