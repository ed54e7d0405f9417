/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Secret routes: values engines need and nobody reads back (a private registry's password). They are
 * write-only and kept only in the encrypted state vault, as `secret/<name>` of the environment, with
 * the public record `secret/<name>.meta` ({name, size, createdAt, updatedAt}) that the API answers.
 */
#include "base/common.h"

#include "api/json.h"
#include "api/problem.h"
#include "base/parse.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "server/handlers.h"
#include "server/server_internal.h"
#include "server/vault_records.h"
#include "vault/vault.h"

#define SECRET_VALUE_MAX (64U * 1024U)
#define RECORD_MAX 1024U

static const struct cm_vault_records secrets = { .prefix = "secret/", .suffix = ".meta", .what = "secret" };

/* Decodes {name?, value} (name only on create); replies and returns < 0 on a bad body. */
static int decode(struct cm_req *req, bool create, json_t **ret_doc, const char **ret_name,
                  const char **ret_value, size_t *ret_n) {
        static const char *const create_fields[] = { "name", "value", NULL };
        static const char *const update_fields[] = { "value", NULL };
        const json_t *jv = NULL;
        struct cm_problem p;
        json_t *doc = NULL;
        int r;

        cm_problem_init(&p);
        if (!req->svc->vault) {
                cm_wipe(req->body.buf, req->body.len);
                cm_reply_problem_simple(req, 501, "vault-unavailable", "Not implemented",
                                        "secrets are stored only in the encrypted state vault, which this "
                                        "service runs without; nothing was stored");
                return -EOPNOTSUPP;
        }
        r = cm_json_parse_strict(req->body.buf ?: "", req->body.len, &doc, &p);
        /* The decoded copy is all that is needed from here on. */
        cm_wipe(req->body.buf, req->body.len);
        if (r >= 0) {
                (void) cm_json_check_fields(doc, "", create ? create_fields : update_fields, &p);
                if (create) {
                        const char *name = json_string_value(json_object_get(doc, "name"));

                        if (!name || !cm_dns_label_valid(name))
                                cm_problem_add(&p, "name", "required: a DNS label (1-63 of a-z, 0-9, '-')");
                        *ret_name = name;
                }
                jv = json_object_get(doc, "value");
                if (!json_is_string(jv) || json_string_length(jv) == 0 ||
                    json_string_length(jv) > SECRET_VALUE_MAX)
                        cm_problem_add(&p, "value", "required: a string of 1 to %u bytes", SECRET_VALUE_MAX);
                if (cm_problem_has_errors(&p))
                        cm_problem_validation(&p, "the secret document is not valid");
        }
        if (p.status) {
                cm_reply_problem(req, &p);
                cm_problem_done(&p);
                cm_json_decref_wiped(&doc);
                return -EINVAL;
        }
        cm_problem_done(&p);
        *ret_value = json_string_value(jv);
        *ret_n = json_string_length(jv);
        *ret_doc = doc;
        return 0;
}

static int record(struct strbuf *rec, const char *name, size_t n, const char *created, const char *updated) {
        int r;

        if ((r = strbuf_adds(rec, "{\"name\":")) < 0 || (r = strbuf_add_json_string(rec, name)) < 0 ||
            (r = strbuf_addf(rec, ",\"size\":%zu,\"createdAt\":", n)) < 0 ||
            (r = strbuf_add_json_string(rec, created)) < 0 ||
            (r = strbuf_adds(rec, ",\"updatedAt\":")) < 0 || (r = strbuf_add_json_string(rec, updated)) < 0)
                return r;
        return strbuf_addch(rec, '}');
}

void cm_handle_secret_create(struct cm_req *req) {
        _cleanup_(cm_json_decref_wiped) json_t *doc = NULL;
        _cleanup_strbuf_ struct strbuf rec = STRBUF_INIT(RECORD_MAX);
        const char *name = NULL, *value;
        char now[40], loc[256];
        size_t n;
        int r;

        if (decode(req, true, &doc, &name, &value, &n) < 0)
                return;
        cm_format_rfc3339(cm_now_usec(), now, sizeof(now));
        r = record(&rec, name, n, now, now);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        if (cm_vault_records_put(req, &secrets, name, value, n, rec.buf, rec.len, true) < 0)
                return;
        if ((r = strbuf_add(&req->out, rec.buf, rec.len)) < 0)
                return cm_reply_error(req, r, NULL);
        (void) cm_snprintf(loc, sizeof(loc), "/v1/environments/%s/secrets/%s", req->params[0], name);
        (void) cm_reply_header(req, "Location", loc);
        cm_reply(req, 201);
}

/* PUT: a new value (a new version in the vault); the record keeps its createdAt. */
void cm_handle_secret_update(struct cm_req *req) {
        _cleanup_(cm_json_decref_wiped) json_t *doc = NULL;
        _cleanup_strbuf_ struct strbuf rec = STRBUF_INIT(RECORD_MAX);
        char owner[CM_VAULT_OWNER_MAX + 1], fsecret[CM_VAULT_NAME_MAX + 1], frecord[CM_VAULT_NAME_MAX + 1];
        char now[40], created[40] = "";
        const char *name = req->params[1], *value;
        char *old = NULL;
        size_t n, old_n = 0;
        int r;

        if (!cm_dns_label_valid(name)) {
                cm_wipe(req->body.buf, req->body.len);
                return cm_reply_not_found(req, "secret", name);
        }
        if (decode(req, false, &doc, NULL, &value, &n) < 0)
                return;
        r = cm_vault_env_owner(req->params[0], owner, sizeof(owner));
        if (r >= 0)
                r = cm_vault_records_files(&secrets, name, fsecret, frecord, sizeof(fsecret));
        if (r >= 0)
                r = cm_vault_read(req->svc->vault, owner, frecord, 0, &old, &old_n, NULL);
        if (r == -ENOENT)
                return cm_reply_not_found(req, "secret", name);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        {
                json_t *j = json_loadb(old, old_n, 0, NULL);

                (void) cm_strlcpy(created, json_string_value(json_object_get(j, "createdAt")) ?: "",
                                  sizeof(created));
                json_decref(j);
                free(old);
        }
        cm_format_rfc3339(cm_now_usec(), now, sizeof(now));
        r = record(&rec, name, n, created[0] ? created : now, now);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        if (cm_vault_records_put(req, &secrets, name, value, n, rec.buf, rec.len, false) < 0)
                return;
        if ((r = strbuf_add(&req->out, rec.buf, rec.len)) < 0)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 200);
}

void cm_handle_secret_list(struct cm_req *req) {
        cm_vault_records_list(req, &secrets);
}

void cm_handle_secret_get(struct cm_req *req) {
        cm_vault_records_get(req, &secrets);
}

void cm_handle_secret_delete(struct cm_req *req) {
        cm_vault_records_delete(req, &secrets);
}
