/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The authentication and authorization steps of every request (docs/security.md).
 *
 * Authentication: `Authorization: Bearer <API key>`; the key's SHA-256 is looked up in the store (keys
 * are never stored in clear); a revoked or expired key is refused. OIDC bearer JWTs are the second
 * kind of credential.
 *
 * Authorization: one table (router.c) gives each route its role and its scope; the principal's role
 * in the environment of the request is the highest of its global role and the role bindings that name
 * it (or, for an OIDC user, its groups) in that environment or in "*". No role in an environment means
 * it does not exist for the caller: 404, so that names do not leak. Answers of both steps are cached
 * for 5 s; changes of keys and bindings clear the caches.
 */
#include "base/common.h"

#include "base/log.h"
#include "base/secret.h"
#include "auth/oidc.h"
#include "base/util.h"
#include "server/server_internal.h"

/* last use of a key is written at most this often */
#define TOUCH_INTERVAL_USEC (60 * USEC_PER_SEC)

enum cm_role cm_role_from_string(const char *s) {
        if (!s)
                return CM_ROLE_NONE;
        if (streq(s, "admin"))
                return CM_ROLE_ADMIN;
        if (streq(s, "operator"))
                return CM_ROLE_OPERATOR;
        if (streq(s, "viewer"))
                return CM_ROLE_VIEWER;
        return CM_ROLE_NONE;
}

const char *cm_role_to_string(enum cm_role r) {
        switch (r) {
        case CM_ROLE_ADMIN:
                return "admin";
        case CM_ROLE_OPERATOR:
                return "operator";
        case CM_ROLE_VIEWER:
                return "viewer";
        case CM_ROLE_NONE:
                break;
        }
        return "none";
}

/* "<role> <key id> <name>" as cached by cm_auth_authenticate. */
static int principal_from_cache(struct cm_req *req, const char *v) {
        const char *id, *name;
        int role = v[0] - '0';

        id = strchr(v, ' ');
        name = id ? strchr(id + 1, ' ') : NULL;
        if (role < CM_ROLE_NONE || role > CM_ROLE_ADMIN || !id || !name)
                return -EIO;
        if ((size_t) (name - id - 1) >= sizeof(req->principal.id))
                return -EIO;
        memcpy(req->principal.id, id + 1, (size_t) (name - id - 1));
        req->principal.id[name - id - 1] = 0;
        (void) cm_strlcpy(req->principal.subject, req->principal.id, sizeof(req->principal.subject));
        (void) cm_strlcpy(req->principal.name, name + 1, sizeof(req->principal.name));
        req->principal.role = (enum cm_role) role;
        req->principal.kind = CM_PRINCIPAL_APIKEY;
        return 0;
}

static int unauthenticated(struct cm_req *req, struct cm_problem *p, const char *why) {
        (void) cm_reply_header(req, "WWW-Authenticate",
                               why ? "Bearer realm=\"clustermgmt\", error=\"invalid_token\""
                                   : "Bearer realm=\"clustermgmt\"");
        req->auth_failure = why ?: "no credentials";
        return cm_problem_set(p, 401, "unauthenticated", "Unauthenticated", "%s",
                              why ?: "send an API key as 'Authorization: Bearer <key>'"),
               -EACCES;
}

/*
 * An OIDC bearer JWT (the verifier keeps verified tokens until they expire, and the JWK set). The
 * principal is the token's subject; its id, which scopes idempotency keys and names it in caches and
 * audit records, is derived from the issuer and the subject. Its role comes from role bindings only.
 */
static int authenticate_oidc(struct cm_req *req, const char *token, size_t n, struct cm_problem *p) {
        struct cm_oidc_principal u = {};
        char reason[256] = "", both[CM_OIDC_CLAIM_STRING_MAX + 1100], h[65];
        size_t used = 0;
        int r;

        r = cm_oidc_verify(req->srv->cfg.oidc, token, n, cm_now_usec(), &u, reason, sizeof(reason));
        if (r == -EACCES) {
                (void) cm_strlcpy(req->auth_reason, reason, sizeof(req->auth_reason));
                return unauthenticated(req, p, req->auth_reason);
        }
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                log_warning("OIDC issuer %s: %s", cm_oidc_issuer(req->srv->cfg.oidc), reason);
                return cm_problem_set(
                               p, 503, "identity-provider-unavailable", "Service unavailable",
                               "the identity provider's keys cannot be fetched now, so the token cannot be "
                               "verified; retry later"),
                       -EHOSTUNREACH;
        }
        req->principal.kind = CM_PRINCIPAL_USER;
        req->principal.role = CM_ROLE_NONE;
        (void) cm_strlcpy(req->principal.subject, u.subject, sizeof(req->principal.subject));
        (void) cm_strlcpy(req->principal.email, u.email, sizeof(req->principal.email));
        (void) cm_strlcpy(req->principal.name, u.email[0] ? u.email : u.subject,
                          sizeof(req->principal.name));
        (void) cm_snprintf(both, sizeof(both), "%s\n%s", cm_oidc_issuer(req->srv->cfg.oidc), u.subject);
        cm_sha256_hex(both, strlen(both), h);
        (void) cm_snprintf(req->principal.id, sizeof(req->principal.id), "u:%.40s", h);
        req->principal.groups[0] = 0;
        for (size_t i = 0; i < u.n_groups; i++) {
                size_t gl = strlen(u.groups[i]);

                /* groups that do not fit are left out: a binding can only grant, never deny */
                if (used + gl + 2 > sizeof(req->principal.groups))
                        break;
                if (used)
                        req->principal.groups[used++] = '\n';
                memcpy(req->principal.groups + used, u.groups[i], gl);
                used += gl;
                req->principal.groups[used] = 0;
        }
        cm_oidc_principal_done(&u);
        return 0;
}

int cm_auth_authenticate(struct cm_req *req, struct cm_problem *p) {
        _cleanup_(cm_apikey_done) struct cm_apikey key = {};
        const char *h, *token = NULL;
        char hash[65], ckey[80], cval[CM_CACHE_VALUE_MAX];
        size_t token_n = 0;
        uint64_t now;
        int r;

        if (req->route->role == CM_ROLE_NONE)
                return 0;

        h = cm_req_header(req, "Authorization");
        if (!h)
                return unauthenticated(req, p, NULL);
        if (cm_auth_parse_bearer(h, &token, &token_n) < 0)
                return unauthenticated(req, p, "the Authorization header is not 'Bearer <token>'");
        if (req->srv->cfg.oidc && cm_oidc_looks_like_jwt(token, token_n))
                return authenticate_oidc(req, token, token_n, p);
        cm_sha256_hex(token, token_n, hash);
        (void) cm_snprintf(ckey, sizeof(ckey), "k:%s", hash);
        if (cm_cache_get(&req->srv->auth_cache, ckey, cval, sizeof(cval)))
                return principal_from_cache(req, cval);

        r = STORE_CALL(req->svc->store, apikey_get_by_hash, hash, &key);
        now = cm_now_usec();
        if (r == -ENOENT)
                return unauthenticated(req, p, "the API key is not valid (unknown, revoked or expired)");
        if (r < 0)
                return r;
        if (key.revoked || (key.expires_usec != 0 && key.expires_usec < now))
                return unauthenticated(req, p, "the API key is not valid (unknown, revoked or expired)");
        req->principal.kind = CM_PRINCIPAL_APIKEY;
        (void) cm_strlcpy(req->principal.id, key.id, sizeof(req->principal.id));
        (void) cm_strlcpy(req->principal.subject, key.id, sizeof(req->principal.subject));
        (void) cm_strlcpy(req->principal.name, key.name, sizeof(req->principal.name));
        req->principal.role = streq(key.role, "admin") ? CM_ROLE_ADMIN : CM_ROLE_NONE;
        if (key.last_used_usec + TOUCH_INTERVAL_USEC < now) {
                r = STORE_CALL(req->svc->store, apikey_touch, key.id, now);
                if (r < 0)
                        log_warning_errno(r, "record the last use of API key %s: %m", key.id);
        }
        /* Keys that expire soon are not cached past their expiry: the cache's lifetime is 5 s. */
        if (key.expires_usec == 0 || key.expires_usec > now + 10 * USEC_PER_SEC) {
                (void) cm_snprintf(cval, sizeof(cval), "%d %s %s", (int) req->principal.role, key.id,
                                   key.name);
                cm_cache_put(&req->srv->auth_cache, ckey, cval);
        }
        return 0;
}

/* Whether a binding names the principal: its key, its OIDC subject or email, or one of its groups. */
static bool binding_names(const struct cm_principal *pr, const struct cm_rolebinding *b) {
        if (pr->kind == CM_PRINCIPAL_APIKEY)
                return streq(b->subject_kind, "apikey") && streq(b->subject, pr->subject);
        if (pr->kind != CM_PRINCIPAL_USER)
                return false;
        if (streq(b->subject_kind, "user"))
                return streq(b->subject, pr->subject) || (pr->email[0] && streq(b->subject, pr->email));
        if (streq(b->subject_kind, "group")) {
                size_t n = strlen(b->subject);

                for (const char *g = pr->groups; *g;) {
                        const char *end = strchr(g, '\n') ?: g + strlen(g);

                        if ((size_t) (end - g) == n && strneq(g, b->subject, n))
                                return true;
                        g = *end ? end + 1 : end;
                }
        }
        return false;
}

int cm_auth_env_role(struct cm_req *req, const char *env, enum cm_role *ret) {
        struct cm_rolebinding *b = NULL;
        char ckey[CM_CACHE_KEY_MAX], v[4];
        enum cm_role role = req->principal.role;
        size_t n = 0;
        int r;

        if (role == CM_ROLE_ADMIN || req->principal.kind == CM_PRINCIPAL_NONE) {
                *ret = role;
                return 0;
        }
        {
                /* principal id and environment, hashed to fit a cache key */
                char both[sizeof(req->principal.id) + 80], h[65];

                (void) cm_snprintf(both, sizeof(both), "%s\n%s", req->principal.id, env ?: "*");
                cm_sha256_hex(both, strlen(both), h);
                (void) cm_snprintf(ckey, sizeof(ckey), "r:%s", h);
        }
        if (cm_cache_get(&req->srv->env_cache, ckey, v, sizeof(v))) {
                *ret = (enum cm_role)(v[0] - '0');
                return 0;
        }
        /* env NULL: the global role, from the bindings of "*" only */
        r = STORE_CALL(req->svc->store, rolebinding_list, env ?: "*", &b, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if ((!env ? streq(b[i].env, "*") : true) && binding_names(&req->principal, &b[i]))
                        role = MAX(role, cm_role_from_string(b[i].role));
        cm_rolebinding_array_free(b, n);
        v[0] = (char) ('0' + (int) role);
        v[1] = 0;
        cm_cache_put(&req->srv->env_cache, ckey, v);
        *ret = role;
        return 0;
}

/* The environment must exist and the caller must have a role in it (404 otherwise), the route's role or more (403). */
static int authorize_env(struct cm_req *req, const char *env, const char *what, const char *name,
                         struct cm_problem *p) {
        enum cm_role role;
        char v[4];
        int r;

        if (!cm_cache_get(&req->srv->env_cache, env, v, sizeof(v))) {
                struct cm_environment e = {};

                r = STORE_CALL(req->svc->store, env_get, env, &e);
                if (r == -ENOENT)
                        return cm_problem_not_found(p, what, name), -ENOENT;
                if (r < 0)
                        return r;
                cm_environment_done(&e);
                cm_cache_put(&req->srv->env_cache, env, "1");
        }
        r = cm_auth_env_role(req, env, &role);
        if (r < 0)
                return r;
        if (role == CM_ROLE_NONE)
                return cm_problem_not_found(p, what, name), -ENOENT;
        if (role < req->route->role)
                return cm_problem_set(p, 403, "forbidden", "Forbidden",
                                      "this action needs the %s role in environment '%s' (you have %s)",
                                      cm_role_to_string(req->route->role), env, cm_role_to_string(role)),
                       -EPERM;
        return 0;
}

int cm_auth_authorize(struct cm_req *req, struct cm_problem *p) {
        enum cm_role role;
        int r;

        if (req->route->role == CM_ROLE_NONE)
                return 0;
        switch (req->route->scope) {
        case CM_SCOPE_ENV:
                return authorize_env(req, req->params[0], "environment", req->params[0], p);
        case CM_SCOPE_OPERATION: {
                _cleanup_(cm_operation_done) struct cm_operation op = {};

                r = STORE_CALL(req->svc->store, op_get, req->params[0], &op);
                if (r == -ENOENT)
                        return cm_problem_not_found(p, "operation", req->params[0]), -ENOENT;
                if (r < 0)
                        return r;
                /* an operation outside the caller's environments does not exist for it */
                return authorize_env(req, op.env, "operation", req->params[0], p);
        }
        case CM_SCOPE_GLOBAL:
                r = cm_auth_env_role(req, NULL, &role);
                if (r < 0)
                        return r;
                if (role < req->route->role)
                        return cm_problem_set(p, 403, "forbidden", "Forbidden",
                                              "this action needs the global %s role",
                                              cm_role_to_string(req->route->role)),
                               -EPERM;
                return 0;
        case CM_SCOPE_ANY:
                return 0;
        }
        return -EINVAL;
}

void cm_auth_changed(struct cm_server *s) {
        cm_cache_clear(&s->auth_cache);
        cm_cache_clear(&s->env_cache);
}
