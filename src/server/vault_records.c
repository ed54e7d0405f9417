/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "api/problem.h"
#include "base/parse.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "server/server_internal.h"
#include "server/vault_records.h"
#include "vault/vault.h"

#define LIST_DEFAULT 100U
#define LIST_MAX 500U

int cm_vault_records_files(const struct cm_vault_records *k, const char *name, char *secret, char *record,
                           size_t size) {
        if (cm_snprintf(secret, size, "%s%s", k->prefix, name) < 0 ||
            cm_snprintf(record, size, "%s%s%s", k->prefix, name, k->suffix) < 0)
                return -EINVAL;
        return 0;
}

static void wipe_json_string(json_t *v) {
        if (json_is_string(v))
                cm_wipe(CM_UNCONST(char *, json_string_value(v)), json_string_length(v));
}

void cm_json_decref_wiped(json_t **p) {
        const char *key;
        json_t *v;

        if (!*p)
                return;
        /* jansson frees its strings unwiped: wipe them first. */
        json_object_foreach(*p, key, v) {
                wipe_json_string(v);
        }
        json_decref(*p);
}

int cm_vault_records_put(struct cm_req *req, const struct cm_vault_records *k, const char *name,
                         const void *secret, size_t secret_n, const char *record, size_t record_n,
                         bool create) {
        char owner[CM_VAULT_OWNER_MAX + 1], fsecret[CM_VAULT_NAME_MAX + 1], frecord[CM_VAULT_NAME_MAX + 1];
        struct cm_vault_version *vs = NULL;
        size_t nv = 0;
        uint64_t cur = 0;
        int r;

        if ((r = cm_vault_env_owner(req->params[0], owner, sizeof(owner))) < 0 ||
            (r = cm_vault_records_files(k, name, fsecret, frecord, sizeof(fsecret))) < 0)
                goto fail;
        /* The record decides existence. */
        r = cm_vault_list_versions(req->svc->vault, owner, frecord, &vs, &nv);
        if (r >= 0)
                cur = nv > 0 ? vs[0].version : 0;
        free(vs);
        if (r < 0 && r != -ENOENT)
                goto fail;
        if (create && r >= 0)
                goto conflict;
        if (!create && r == -ENOENT) {
                cm_reply_not_found(req, k->what, name);
                return -ENOENT;
        }
        r = cm_vault_write(req->svc->vault, owner, fsecret, secret, secret_n, -1, NULL);
        if (r < 0)
                goto fail;
        /* compare-and-swap: a create or change of the same name at the same time loses here */
        r = cm_vault_write(req->svc->vault, owner, frecord, record, record_n, create ? 0 : (int64_t) cur,
                           NULL);
        if (r == -ESTALE)
                goto conflict;
        if (r < 0)
                goto fail;
        return 0;
conflict : {
        struct cm_problem p;

        cm_problem_init(&p);
        cm_problem_set(&p, 409, "conflict", "Conflict", "%s '%s' %s", k->what, name,
                       create ? "already exists" : "changed at the same time; try again");
        cm_reply_problem(req, &p);
        cm_problem_done(&p);
        return -EEXIST;
}
fail:
        cm_reply_error(req, r, NULL);
        return r;
}

static bool is_record(const struct cm_vault_records *k, const char *file, const char **ret_name,
                      size_t *ret_len) {
        size_t n = strlen(file), np = strlen(k->prefix), ns = strlen(k->suffix);

        if (n <= np + ns || !strneq(file, k->prefix, np) || !streq(file + n - ns, k->suffix))
                return false;
        *ret_name = file + np;
        *ret_len = n - np - ns;
        return true;
}

static int cmp_name(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static void bad_query(struct cm_req *req, const char *field, const char *reason) {
        struct cm_problem p;

        cm_problem_init(&p);
        cm_problem_add(&p, field, "%s", reason);
        cm_problem_set(&p, 400, "malformed", "Malformed request", "invalid query parameter");
        cm_reply_problem(req, &p);
        cm_problem_done(&p);
}

void cm_vault_records_list(struct cm_req *req, const struct cm_vault_records *k) {
        char owner[CM_VAULT_OWNER_MAX + 1];
        const char *limit_s = cm_req_query(req, "limit"), *after = cm_req_query(req, "pageToken");
        char **files = NULL;
        size_t nf = 0, shown = 0, nk = 0;
        const char *last = NULL;
        unsigned limit = LIST_DEFAULT;
        bool more = false;
        int r;

        if (limit_s && (safe_atou(limit_s, &limit) < 0 || limit < 1 || limit > LIST_MAX))
                return bad_query(req, "limit", "must be a whole number from 1 to 500");
        if (after && !cm_dns_label_valid(after))
                return bad_query(req, "pageToken", "not a page token of this list");
        if (!req->svc->vault) {
                if (strbuf_adds(&req->out, "{\"items\":[]}") < 0)
                        return cm_reply_error(req, -ENOMEM, NULL);
                return cm_reply(req, 200);
        }
        r = cm_vault_env_owner(req->params[0], owner, sizeof(owner));
        if (r >= 0)
                r = cm_vault_list_files(req->svc->vault, owner, &files, &nf);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        /* Names in name order (the record files "<prefix><name><suffix>" do not sort like the names). */
        for (size_t i = 0; i < nf; i++) {
                const char *kn;
                size_t kl;

                if (!is_record(k, files[i], &kn, &kl))
                        continue;
                char *t = files[i];

                memmove(t, kn, kl); /* in place: the file name becomes the item's name */
                t[kl] = 0;
                files[i] = files[nk];
                files[nk++] = t;
        }
        if (nk > 1)
                qsort(files, nk, sizeof(*files), cmp_name);
        r = strbuf_adds(&req->out, "{\"items\":[");
        for (size_t i = 0; r >= 0 && i < nk; i++) {
                char fsecret[CM_VAULT_NAME_MAX + 1], frecord[CM_VAULT_NAME_MAX + 1];
                char *data = NULL;
                size_t dn = 0;

                if (after && strcmp(files[i], after) <= 0)
                        continue;
                if (shown == limit) {
                        more = true;
                        break;
                }
                r = cm_vault_records_files(k, files[i], fsecret, frecord, sizeof(fsecret));
                if (r >= 0)
                        r = cm_vault_read(req->svc->vault, owner, frecord, 0, &data, &dn, NULL);
                if (r == -ENOENT) {
                        r = 0;
                        continue; /* deleted meanwhile */
                }
                if (r < 0)
                        break;
                if (shown > 0)
                        r = strbuf_addch(&req->out, ',');
                if (r >= 0)
                        r = strbuf_add(&req->out, data, dn);
                free(data);
                last = files[i];
                shown++;
        }
        if (r >= 0)
                r = strbuf_addch(&req->out, ']');
        if (r >= 0 && more && last) {
                if ((r = strbuf_adds(&req->out, ",\"nextPageToken\":")) >= 0)
                        r = strbuf_add_json_string(&req->out, last);
        }
        if (r >= 0)
                r = strbuf_addch(&req->out, '}');
        cm_vault_names_free(files, nf);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 200);
}

void cm_vault_records_get(struct cm_req *req, const struct cm_vault_records *k) {
        char owner[CM_VAULT_OWNER_MAX + 1], fsecret[CM_VAULT_NAME_MAX + 1], frecord[CM_VAULT_NAME_MAX + 1];
        char *data = NULL;
        size_t dn = 0;
        int r;

        if (!req->svc->vault || !cm_dns_label_valid(req->params[1]))
                return cm_reply_not_found(req, k->what, req->params[1]);
        r = cm_vault_env_owner(req->params[0], owner, sizeof(owner));
        if (r >= 0)
                r = cm_vault_records_files(k, req->params[1], fsecret, frecord, sizeof(fsecret));
        if (r >= 0)
                r = cm_vault_read(req->svc->vault, owner, frecord, 0, &data, &dn, NULL);
        if (r == -ENOENT)
                return cm_reply_not_found(req, k->what, req->params[1]);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        r = strbuf_add(&req->out, data, dn);
        free(data);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 200);
}

void cm_vault_records_delete(struct cm_req *req, const struct cm_vault_records *k) {
        char owner[CM_VAULT_OWNER_MAX + 1], fsecret[CM_VAULT_NAME_MAX + 1], frecord[CM_VAULT_NAME_MAX + 1];
        int r;

        if (!req->svc->vault || !cm_dns_label_valid(req->params[1]))
                return cm_reply_not_found(req, k->what, req->params[1]);
        r = cm_vault_env_owner(req->params[0], owner, sizeof(owner));
        if (r >= 0)
                r = cm_vault_records_files(k, req->params[1], fsecret, frecord, sizeof(fsecret));
        if (r >= 0)
                r = cm_vault_remove(req->svc->vault, owner, frecord);
        if (r == -ENOENT)
                return cm_reply_not_found(req, k->what, req->params[1]);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        r = cm_vault_remove(req->svc->vault, owner, fsecret);
        if (r < 0 && r != -ENOENT)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 204);
}
