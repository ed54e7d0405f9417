/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "base/log.h"
#include "base/secret.h"
#include "base/util.h"
#include "server/server_internal.h"

/* "<role> <key id> <name>" as cached by cm_auth_authenticate. */
static int principal_from_cache(struct cm_req *req, const char *v) {
        const char *id, *name;
        int role = v[0] - '0';

        id = strchr(v, ' ');
        name = id ? strchr(id + 1, ' ') : NULL;
        if (role < CM_ROLE_VIEWER || role > CM_ROLE_ADMIN || !id || !name)
                return -EIO;
        if ((size_t) (name - id - 1) >= sizeof(req->principal.id))
                return -EIO;
        memcpy(req->principal.id, id + 1, (size_t) (name - id - 1));
        req->principal.id[name - id - 1] = 0;
        (void) cm_strlcpy(req->principal.name, name + 1, sizeof(req->principal.name));
        req->principal.role = (enum cm_role) role;
        return 0;
}

/*
 * Authentication: `Authorization: Bearer <API key>`; the key's SHA-256 is looked up in the store (keys
 * are never stored in clear). OIDC bearer JWTs slot in here as a second kind of credential.
 */
int cm_auth_authenticate(struct cm_req *req, struct cm_problem *p) {
        _cleanup_(cm_apikey_done) struct cm_apikey key = {};
        const char *h, *token;
        char hash[65], ckey[80], cval[CM_CACHE_VALUE_MAX];
        int r;

        if (req->route->role == CM_ROLE_NONE)
                return 0;

        h = cm_req_header(req, "Authorization");
        if (!h || strncasecmp(h, "Bearer ", 7) != 0 || isempty(h + 7) || strlen(h + 7) > 4096) {
                (void) cm_reply_header(req, "WWW-Authenticate", "Bearer realm=\"clustermgmt\"");
                return cm_problem_set(p, 401, "unauthenticated", "Unauthenticated",
                                      "send an API key as 'Authorization: Bearer <key>'"),
                       -EACCES;
        }
        token = h + 7;
        cm_sha256_hex(token, strlen(token), hash);
        (void) cm_snprintf(ckey, sizeof(ckey), "k:%s", hash);
        if (cm_cache_get(&req->srv->auth_cache, ckey, cval, sizeof(cval)))
                return principal_from_cache(req, cval);

        r = STORE_CALL(req->svc->store, apikey_get_by_hash, hash, &key);
        if (r == -ENOENT || (r >= 0 && key.expires_usec != 0 && key.expires_usec < cm_now_usec())) {
                (void) cm_reply_header(req, "WWW-Authenticate",
                                       "Bearer realm=\"clustermgmt\", error=\"invalid_token\"");
                return cm_problem_set(p, 401, "unauthenticated", "Unauthenticated",
                                      "the API key is not valid (unknown, revoked or expired)"),
                       -EACCES;
        }
        if (r < 0)
                return r;
        (void) cm_strlcpy(req->principal.id, key.id, sizeof(req->principal.id));
        (void) cm_strlcpy(req->principal.name, key.name, sizeof(req->principal.name));
        req->principal.role = streq(key.role, "admin")      ? CM_ROLE_ADMIN
                              : streq(key.role, "operator") ? CM_ROLE_OPERATOR
                                                            : CM_ROLE_VIEWER;
        /* Keys that expire soon are not cached past their expiry: the cache's lifetime is 5 s. */
        if (key.expires_usec == 0 || key.expires_usec > cm_now_usec() + 10 * USEC_PER_SEC) {
                (void) cm_snprintf(cval, sizeof(cval), "%d %s %s", (int) req->principal.role, key.id,
                                   key.name);
                cm_cache_put(&req->srv->auth_cache, ckey, cval);
        }
        return 0;
}

/*
 * Authorization: the route's role against the principal's, and the environment in the path must
 * exist and be within the caller's reach — otherwise 404, so that names do not leak. Per-environment
 * role bindings refine this step.
 */
int cm_auth_authorize(struct cm_req *req, struct cm_problem *p) {
        struct cm_environment e = {};
        char v[4];
        int r;

        if (req->route->role == CM_ROLE_NONE)
                return 0;
        if (req->route->env_scoped && !cm_cache_get(&req->srv->env_cache, req->params[0], v, sizeof(v))) {
                r = STORE_CALL(req->svc->store, env_get, req->params[0], &e);
                if (r == -ENOENT)
                        return cm_problem_not_found(p, "environment", req->params[0]), -ENOENT;
                if (r < 0)
                        return r;
                cm_environment_done(&e);
                cm_cache_put(&req->srv->env_cache, req->params[0], "1");
        }
        if (req->principal.role < req->route->role)
                return cm_problem_set(p, 403, "forbidden", "Forbidden", "this action needs the %s role",
                                      req->route->role == CM_ROLE_ADMIN ? "admin" : "operator"),
                       -EPERM;
        return 0;
}
