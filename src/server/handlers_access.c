/* SPDX-License-Identifier: Apache-2.0 */
/* Access routes: API keys, role bindings, and who the caller is (docs/security.md). */
#include "base/common.h"

#include "api/json.h"
#include "api/problem.h"
#include "base/parse.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "server/handlers.h"
#include "server/server_internal.h"

#define ROLES_MAX 64

static bool env_or_all_valid(const char *s) {
        return s && (streq(s, "*") || cm_dns_label_valid(s));
}

/* One {"environment", "role"} of a key's roles, or a binding's; adds field errors under field. */
static void check_grant(struct cm_req *req, const json_t *env, const json_t *role, const char *field,
                        struct cm_problem *p) {
        char f[96];

        cm_json_path(f, sizeof(f), field, "environment");
        if (!json_is_string(env) || !env_or_all_valid(json_string_value(env)))
                cm_problem_add(p, f, "required: an environment name, or \"*\" for every environment");
        else if (!streq(json_string_value(env), "*")) {
                struct cm_environment e = {};

                if (STORE_CALL(req->svc->store, env_get, json_string_value(env), &e) < 0)
                        cm_problem_add(p, f, "no environment '%s'", json_string_value(env));
                cm_environment_done(&e);
        }
        cm_json_path(f, sizeof(f), field, "role");
        if (!json_is_string(role) || cm_role_from_string(json_string_value(role)) == CM_ROLE_NONE)
                cm_problem_add(p, f, "required: viewer, operator or admin");
}

static int add_time_member(struct strbuf *out, const char *key, uint64_t usec) {
        char ts[40];
        int r;

        if ((r = strbuf_addf(out, ",\"%s\":", key)) < 0)
                return r;
        if (usec == 0)
                return strbuf_adds(out, "null");
        cm_format_rfc3339(usec, ts, sizeof(ts));
        return strbuf_addf(out, "\"%s\"", ts);
}

static int encode_binding(struct strbuf *out, const struct cm_rolebinding *b) {
        int r;

        if ((r = strbuf_adds(out, "{\"id\":")) < 0 || (r = strbuf_add_json_string(out, b->id)) < 0 ||
            (r = strbuf_adds(out, ",\"environment\":")) < 0 ||
            (r = strbuf_add_json_string(out, b->env)) < 0 ||
            (r = strbuf_adds(out, ",\"subject\":{\"kind\":")) < 0 ||
            (r = strbuf_add_json_string(out, b->subject_kind)) < 0 ||
            (r = strbuf_adds(out, ",\"name\":")) < 0 || (r = strbuf_add_json_string(out, b->subject)) < 0 ||
            (r = strbuf_adds(out, "},\"role\":")) < 0 || (r = strbuf_add_json_string(out, b->role)) < 0 ||
            (r = strbuf_adds(out, ",\"createdBy\":")) < 0 ||
            (r = strbuf_add_json_string(out, b->created_by)) < 0 ||
            (r = add_time_member(out, "createdAt", b->created_usec)) < 0)
                return r;
        return strbuf_addch(out, '}');
}

/* A key as listed: never its hash. roles: its bindings (may be NULL). */
static int encode_key(struct strbuf *out, const struct cm_apikey *k, const struct cm_rolebinding *b,
                      size_t nb) {
        bool first = true;
        int r;

        if ((r = strbuf_adds(out, "{\"id\":")) < 0 || (r = strbuf_add_json_string(out, k->id)) < 0 ||
            (r = strbuf_adds(out, ",\"name\":")) < 0 || (r = strbuf_add_json_string(out, k->name)) < 0 ||
            (r = strbuf_adds(out, ",\"owner\":")) < 0 || (r = strbuf_add_json_string(out, k->owner)) < 0 ||
            (r = strbuf_addf(out, ",\"globalAdmin\":%s,\"revoked\":%s",
                             streq(k->role ?: "", "admin") ? "true" : "false",
                             k->revoked ? "true" : "false")) < 0 ||
            (r = add_time_member(out, "createdAt", k->created_usec)) < 0 ||
            (r = add_time_member(out, "expiresAt", k->expires_usec)) < 0 ||
            (r = add_time_member(out, "lastUsedAt", k->last_used_usec)) < 0 ||
            (r = strbuf_adds(out, ",\"roles\":[")) < 0)
                return r;
        for (size_t i = 0; i < nb; i++) {
                if (!streq(b[i].subject_kind, "apikey") || !streq(b[i].subject, k->id))
                        continue;
                if ((r = strbuf_adds(out, first ? "{\"environment\":" : ",{\"environment\":")) < 0 ||
                    (r = strbuf_add_json_string(out, b[i].env)) < 0 ||
                    (r = strbuf_adds(out, ",\"role\":")) < 0 ||
                    (r = strbuf_add_json_string(out, b[i].role)) < 0 ||
                    (r = strbuf_adds(out, ",\"binding\":")) < 0 ||
                    (r = strbuf_add_json_string(out, b[i].id)) < 0 || (r = strbuf_addch(out, '}')) < 0)
                        return r;
                first = false;
        }
        return strbuf_adds(out, "]}");
}

/*
 * POST /v1/apikeys {name, owner?, expiresInDays?, globalAdmin?, roles?: [{environment, role}]}: a new
 * key and its bindings in one transaction; the token is in this answer only.
 */
void cm_handle_apikey_create(struct cm_req *req) {
        static const char *const allowed[] = {
                "name", "owner", "expiresInDays", "globalAdmin", "roles", NULL
        };
        struct cm_rolebinding b[ROLES_MAX] = {};
        char id[40], token[64] = "", hash[65], rb_ids[ROLES_MAX][40];
        struct cm_problem p;
        json_t *doc = NULL, *roles, *v;
        struct cm_apikey k = {};
        uint64_t now = cm_now_usec();
        size_t nb = 0, i;
        int r;

        cm_problem_init(&p);
        r = cm_json_parse_strict(req->body.buf ?: "", req->body.len, &doc, &p);
        if (r < 0)
                goto fail;
        (void) cm_json_check_fields(doc, "", allowed, &p);
        v = json_object_get(doc, "name");
        if (!json_is_string(v) || json_string_length(v) < 1 || json_string_length(v) > 100 ||
            !cm_dns_label_valid(json_string_value(v)))
                cm_problem_add(
                        &p, "name",
                        "required: a DNS label (1-63 of a-z, 0-9, '-') that says what the key is for");
        v = json_object_get(doc, "owner");
        if (v && (!json_is_string(v) || json_string_length(v) > 200))
                cm_problem_add(&p, "owner",
                               "must be a string of at most 200 characters (who the key is for)");
        v = json_object_get(doc, "expiresInDays");
        if (v && (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 3650))
                cm_problem_add(&p, "expiresInDays", "must be a whole number of days from 1 to 3650");
        v = json_object_get(doc, "globalAdmin");
        if (v && !json_is_boolean(v))
                cm_problem_add(&p, "globalAdmin", "must be true or false");
        roles = json_object_get(doc, "roles");
        if (roles && (!json_is_array(roles) || json_array_size(roles) > ROLES_MAX))
                cm_problem_add(&p, "roles", "must be a list of at most %d {environment, role}", ROLES_MAX);
        else
                json_array_foreach(roles, i, v) {
                        static const char *const grant_fields[] = { "environment", "role", NULL };
                        char f[32];

                        cm_json_path_index(f, sizeof(f), "roles", i);
                        if (!json_is_object(v)) {
                                cm_problem_add(&p, f, "must be {environment, role}");
                                continue;
                        }
                        (void) cm_json_check_fields(v, f, grant_fields, &p);
                        check_grant(req, json_object_get(v, "environment"), json_object_get(v, "role"), f,
                                    &p);
                        for (size_t j = 0; j < i; j++)
                                if (json_equal(json_object_get(json_array_get(roles, j), "environment"),
                                               json_object_get(v, "environment")))
                                        cm_problem_add(&p, f, "names the environment of roles[%zu] again",
                                                       j);
                }
        if (!json_is_true(json_object_get(doc, "globalAdmin")) && json_array_size(roles) == 0 &&
            !cm_problem_has_errors(&p))
                cm_problem_add(&p, "roles",
                               "a key needs roles (or globalAdmin: true): without them it can do nothing");
        if (cm_problem_has_errors(&p)) {
                cm_problem_validation(&p, "the API key document is not valid");
                r = -EINVAL;
                goto fail;
        }

        if ((r = cm_random_id("key_", id, sizeof(id))) < 0 ||
            (r = cm_random_token("cmk_", token, sizeof(token))) < 0)
                goto fail;
        cm_sha256_hex(token, strlen(token), hash);
        k = (struct cm_apikey){
                .id = id,
                .name = CM_UNCONST(char *, json_string_value(json_object_get(doc, "name"))),
                .hash = hash,
                .role = CM_UNCONST(char *, json_is_true(json_object_get(doc, "globalAdmin")) ? "admin" : ""),
                .owner = CM_UNCONST(char *, json_string_value(json_object_get(doc, "owner"))),
                .created_usec = now,
                .expires_usec = json_object_get(doc, "expiresInDays")
                                        ? now + (uint64_t) json_integer_value(
                                                        json_object_get(doc, "expiresInDays")) *
                                                          86400 * USEC_PER_SEC
                                        : 0,
        };
        json_array_foreach(roles, i, v) {
                if ((r = cm_random_id("rb_", rb_ids[i], sizeof(rb_ids[i]))) < 0)
                        goto fail;
                nb = i + 1;
                b[i] = (struct cm_rolebinding){
                        .id = rb_ids[i],
                        .env = CM_UNCONST(char *, json_string_value(json_object_get(v, "environment"))),
                        .subject_kind = CM_UNCONST(char *, "apikey"),
                        .subject = id,
                        .role = CM_UNCONST(char *, json_string_value(json_object_get(v, "role"))),
                        .created_by = req->principal.name,
                        .created_usec = now,
                };
        }
        r = STORE_CALL(req->svc->store, apikey_create, &k, b, nb);
        if (r < 0)
                goto fail;
        cm_auth_changed(req->srv);
        /* The token, once: the store keeps only its hash. */
        r = encode_key(&req->out, &k, b, nb);
        if (r >= 0) {
                req->out.len--; /* reopen the object for the token */
                r = strbuf_adds(&req->out, ",\"token\":");
        }
        if (r >= 0)
                r = strbuf_add_json_string(&req->out, token);
        if (r >= 0)
                r = strbuf_addch(&req->out, '}');
        cm_wipe(token, sizeof(token));
        if (r < 0)
                goto fail;
        cm_reply(req, 201);
        goto out;
fail:
        cm_wipe(token, sizeof(token));
        cm_reply_error(req, r, &p);
out:
        json_decref(doc);
        cm_problem_done(&p);
}

void cm_handle_apikey_list(struct cm_req *req) {
        struct cm_apikey *k = NULL;
        struct cm_rolebinding *b = NULL;
        size_t n = 0, nb = 0;
        int r;

        r = STORE_CALL(req->svc->store, apikey_list, &k, &n);
        if (r >= 0)
                r = STORE_CALL(req->svc->store, rolebinding_list, NULL, &b, &nb);
        if (r >= 0)
                r = strbuf_adds(&req->out, "{\"items\":[");
        for (size_t i = 0; r >= 0 && i < n; i++) {
                if (i)
                        r = strbuf_addch(&req->out, ',');
                if (r >= 0)
                        r = encode_key(&req->out, &k[i], b, nb);
        }
        if (r >= 0)
                r = strbuf_adds(&req->out, "]}");
        cm_apikey_array_free(k, n);
        cm_rolebinding_array_free(b, nb);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 200);
}

/* DELETE /v1/apikeys/{id}: revoked at once (kept for the record); never the last global admin key. */
void cm_handle_apikey_revoke(struct cm_req *req) {
        struct cm_apikey *k = NULL;
        size_t n = 0, admins = 0;
        bool found = false, admin = false, revoked = false;
        int r;

        r = STORE_CALL(req->svc->store, apikey_list, &k, &n);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        for (size_t i = 0; i < n; i++) {
                bool is_admin = streq(k[i].role ?: "", "admin") && !k[i].revoked &&
                                (k[i].expires_usec == 0 || k[i].expires_usec > cm_now_usec());

                admins += is_admin;
                if (streq(k[i].id, req->params[0])) {
                        found = true;
                        admin = is_admin;
                        revoked = k[i].revoked;
                }
        }
        cm_apikey_array_free(k, n);
        if (!found)
                return cm_reply_not_found(req, "API key", req->params[0]);
        if (revoked)
                return cm_reply(req, 204);
        if (admin && admins <= 1)
                return cm_reply_problem_simple(req, 409, "last-admin-key", "Conflict",
                                               "this is the last API key with the global admin role: create "
                                               "another one first, or nobody could administer the service");
        r = STORE_CALL(req->svc->store, apikey_revoke, req->params[0]);
        if (r == -ENOENT)
                return cm_reply_not_found(req, "API key", req->params[0]);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_auth_changed(req->srv);
        cm_reply(req, 204);
}

/* POST /v1/rolebindings {environment, subject: {kind, name}, role} */
void cm_handle_rolebinding_create(struct cm_req *req) {
        static const char *const allowed[] = { "environment", "subject", "role", NULL };
        static const char *const subject_fields[] = { "kind", "name", NULL };
        struct cm_problem p;
        json_t *doc = NULL, *subject, *kind, *name;
        struct cm_rolebinding b = {};
        char id[40];
        int r;

        cm_problem_init(&p);
        r = cm_json_parse_strict(req->body.buf ?: "", req->body.len, &doc, &p);
        if (r < 0)
                goto fail;
        (void) cm_json_check_fields(doc, "", allowed, &p);
        check_grant(req, json_object_get(doc, "environment"), json_object_get(doc, "role"), "", &p);
        subject = json_object_get(doc, "subject");
        kind = json_object_get(subject, "kind");
        name = json_object_get(subject, "name");
        if (!json_is_object(subject))
                cm_problem_add(&p, "subject", "required: {kind: apikey | user | group, name}");
        else {
                (void) cm_json_check_fields(subject, "subject", subject_fields, &p);
                if (!json_is_string(kind) ||
                    (!streq(json_string_value(kind), "apikey") && !streq(json_string_value(kind), "user") &&
                     !streq(json_string_value(kind), "group")))
                        cm_problem_add(&p, "subject.kind",
                                       "must be apikey (a key id), user (an OIDC subject or "
                                       "email) or group (an OIDC group)");
                if (!json_is_string(name) || json_string_length(name) < 1 || json_string_length(name) > 255)
                        cm_problem_add(&p, "subject.name", "required: 1-255 characters");
        }
        if (cm_problem_has_errors(&p)) {
                cm_problem_validation(&p, "the role binding is not valid");
                r = -EINVAL;
                goto fail;
        }
        if ((r = cm_random_id("rb_", id, sizeof(id))) < 0)
                goto fail;
        b = (struct cm_rolebinding){
                .id = id,
                .env = CM_UNCONST(char *, json_string_value(json_object_get(doc, "environment"))),
                .subject_kind = CM_UNCONST(char *, json_string_value(kind)),
                .subject = CM_UNCONST(char *, json_string_value(name)),
                .role = CM_UNCONST(char *, json_string_value(json_object_get(doc, "role"))),
                .created_by = req->principal.name,
                .created_usec = cm_now_usec(),
        };
        r = STORE_CALL(req->svc->store, rolebinding_create, &b);
        if (r == -EEXIST) {
                cm_problem_set(&p, 409, "conflict", "Conflict",
                               "%s '%s' already has a role in '%s'; delete that binding first",
                               b.subject_kind, b.subject, b.env);
                goto fail;
        }
        if (r < 0)
                goto fail;
        cm_auth_changed(req->srv);
        r = encode_binding(&req->out, &b);
        if (r < 0)
                goto fail;
        cm_reply(req, 201);
        goto out;
fail:
        cm_reply_error(req, r, &p);
out:
        json_decref(doc);
        cm_problem_done(&p);
}

void cm_handle_rolebinding_list(struct cm_req *req) {
        const char *env = cm_req_query(req, "environment");
        struct cm_rolebinding *b = NULL;
        size_t n = 0;
        bool first = true;
        int r;

        if (env && !env_or_all_valid(env))
                return cm_reply_problem_simple(req, 400, "malformed", "Malformed request",
                                               "environment must be an environment name or *");
        r = STORE_CALL(req->svc->store, rolebinding_list, NULL, &b, &n);
        if (r >= 0)
                r = strbuf_adds(&req->out, "{\"items\":[");
        for (size_t i = 0; r >= 0 && i < n; i++) {
                if (env && !streq(b[i].env, env))
                        continue;
                if (!first)
                        r = strbuf_addch(&req->out, ',');
                if (r >= 0)
                        r = encode_binding(&req->out, &b[i]);
                first = false;
        }
        if (r >= 0)
                r = strbuf_adds(&req->out, "]}");
        cm_rolebinding_array_free(b, n);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 200);
}

void cm_handle_rolebinding_delete(struct cm_req *req) {
        int r = STORE_CALL(req->svc->store, rolebinding_delete, req->params[0]);

        if (r == -ENOENT)
                return cm_reply_not_found(req, "role binding", req->params[0]);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_auth_changed(req->srv);
        cm_reply(req, 204);
}

/* GET /v1/whoami: the caller, its global role and its role in each environment it reaches. */
void cm_handle_whoami(struct cm_req *req) {
        struct cm_environment *e = NULL;
        enum cm_role global = CM_ROLE_NONE, role;
        size_t n = 0;
        bool first = true;
        int r;

        r = cm_auth_env_role(req, NULL, &global);
        if (r >= 0)
                r = STORE_CALL(req->svc->store, env_list, NULL, 1000, &e, &n);
        if (r >= 0)
                r = strbuf_adds(&req->out, "{\"kind\":");
        if (r >= 0)
                r = strbuf_add_json_string(&req->out,
                                           req->principal.kind == CM_PRINCIPAL_USER ? "user" : "apikey");
        if (r >= 0)
                r = strbuf_adds(&req->out, ",\"id\":");
        if (r >= 0)
                r = strbuf_add_json_string(&req->out, req->principal.id);
        if (r >= 0)
                r = strbuf_adds(&req->out, ",\"name\":");
        if (r >= 0)
                r = strbuf_add_json_string(&req->out, req->principal.name);
        if (r >= 0)
                r = strbuf_addf(&req->out, ",\"globalRole\":\"%s\",\"environments\":[",
                                cm_role_to_string(global));
        for (size_t i = 0; r >= 0 && i < n; i++) {
                r = cm_auth_env_role(req, e[i].name, &role);
                if (r < 0 || role == CM_ROLE_NONE)
                        continue;
                r = strbuf_adds(&req->out, first ? "{\"name\":" : ",{\"name\":");
                if (r >= 0)
                        r = strbuf_add_json_string(&req->out, e[i].name);
                if (r >= 0)
                        r = strbuf_addf(&req->out, ",\"role\":\"%s\"}", cm_role_to_string(role));
                first = false;
        }
        if (r >= 0)
                r = strbuf_adds(&req->out, "]}");
        cm_environment_array_free(e, n);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 200);
}
