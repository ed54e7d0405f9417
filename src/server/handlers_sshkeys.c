/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SSH key routes: private keys are write-only and kept only in the encrypted state vault.
 *
 * An environment's keys live under the vault owner "env:<env>": `ssh/<name>` holds the private key
 * as given (what the rke engine materialises for `ssh_key_path`), `ssh/<name>.pub` the public record
 * answered by the API ({name, publicKey, fingerprint, createdAt}); the record is written last and
 * removed first, so a key is listed only when both exist.
 */
#include "base/common.h"

#include "api/encode.h"
#include "api/json.h"
#include "api/problem.h"
#include "base/parse.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "lifecycle/service.h"
#include "server/handlers.h"
#include "server/server_internal.h"
#include "vault/sshkey.h"
#include "vault/vault.h"

#define SSHKEY_LIST_DEFAULT 100U
#define SSHKEY_LIST_MAX 500U
#define SSHKEY_RECORD_MAX (8U * 1024U)

static bool vault_missing(struct cm_req *req) {
        if (req->svc->vault)
                return false;
        cm_reply_problem_simple(
                req, 501, "vault-unavailable", "Not implemented",
                "SSH keys are stored only in the encrypted state vault, which this service runs "
                "without; the key was not stored");
        return true;
}

static int key_files(const char *name, char priv[static CM_VAULT_NAME_MAX + 1],
                     char pub[static CM_VAULT_NAME_MAX + 1]) {
        if (cm_snprintf(priv, CM_VAULT_NAME_MAX + 1, "ssh/%s", name) < 0 ||
            cm_snprintf(pub, CM_VAULT_NAME_MAX + 1, "ssh/%s.pub", name) < 0)
                return -EINVAL;
        return 0;
}

/* Wipes a JSON string's bytes in place (jansson owns them; they are freed unwiped otherwise). */
static void wipe_json_string(json_t *v) {
        if (json_is_string(v))
                cm_wipe(CM_UNCONST(char *, json_string_value(v)), json_string_length(v));
}

/* Wipes every string of the decoded body: one of them is a private key. */
static void wipe_json_strings(json_t *obj) {
        const char *k;
        json_t *v;

        json_object_foreach(obj, k, v) {
                wipe_json_string(v);
        }
}

static void json_decref_wiped(json_t **p) {
        if (*p) {
                wipe_json_strings(*p);
                json_decref(*p);
        }
}

void cm_handle_sshkey_create(struct cm_req *req) {
        static const char *const allowed[] = { "name", "privateKey", "publicKey", "generate", NULL };
        _cleanup_(json_decref_wiped) json_t *doc = NULL;
        _cleanup_erase_free_ char *generated = NULL;
        _cleanup_free_ char *pub = NULL;
        _cleanup_strbuf_ struct strbuf rec = STRBUF_INIT(SSHKEY_RECORD_MAX);
        char owner[CM_VAULT_OWNER_MAX + 1], fpriv[CM_VAULT_NAME_MAX + 1], fpub[CM_VAULT_NAME_MAX + 1];
        char fp[CM_SSHKEY_FP_LEN + 1], created[40], loc[256];
        const char *name, *given_pub = NULL, *priv = NULL;
        json_t *jname, *jpriv, *jpub, *jgen;
        struct cm_problem p;
        size_t priv_n = 0, generated_n = 0;
        bool generate = false;
        int r;

        cm_problem_init(&p);
        if (vault_missing(req)) {
                cm_wipe(req->body.buf, req->body.len);
                goto done;
        }
        r = cm_json_parse_strict(req->body.buf ?: "", req->body.len, &doc, &p);
        /* The body may carry a private key: the decoded copy is all that is needed from here on. */
        cm_wipe(req->body.buf, req->body.len);
        if (r < 0)
                goto fail;
        if (!cm_json_check_fields(doc, "", allowed, &p)) {
                cm_problem_validation(&p, "the SSH key document has unknown fields");
                goto fail;
        }
        jname = json_object_get(doc, "name");
        jpriv = json_object_get(doc, "privateKey");
        jpub = json_object_get(doc, "publicKey");
        jgen = json_object_get(doc, "generate");
        name = json_string_value(jname);
        if (!name || !cm_dns_label_valid(name))
                cm_problem_add(&p, "name", "required: a DNS label (1-63 of a-z, 0-9, '-')");
        if (jgen && !json_is_boolean(jgen))
                cm_problem_add(&p, "generate", "must be true or false");
        generate = json_is_true(jgen);
        if (jpriv && !json_is_string(jpriv))
                cm_problem_add(&p, "privateKey", "must be a string");
        if (jpub && !json_is_string(jpub))
                cm_problem_add(&p, "publicKey", "must be a string");
        if (generate && (jpriv || jpub))
                cm_problem_add(&p, "generate", "generate a key or give one, not both");
        if (!generate && !jpriv)
                cm_problem_add(&p, "privateKey",
                               "required (or generate: true): engines log in to nodes with the private key, "
                               "a public key alone is not enough");
        if (cm_problem_has_errors(&p)) {
                cm_problem_validation(&p, "the SSH key document is not valid");
                goto fail;
        }
        given_pub = json_string_value(jpub);

        if (generate) {
                r = cm_sshkey_generate_ed25519(&generated, &generated_n, &pub, fp);
                if (r < 0)
                        goto fail;
                priv = generated;
                priv_n = generated_n;
        } else {
                priv = json_string_value(jpriv);
                priv_n = json_string_length(jpriv);
                r = cm_sshkey_parse_private(priv, priv_n, &pub, fp);
                if (r == -ENOMEM)
                        goto fail;
                if (r < 0) {
                        cm_problem_add(
                                &p, "privateKey", "%s",
                                r == -EACCES ? "protected by a passphrase: store the key without one"
                                : r == -EOPNOTSUPP
                                        ? "key type not accepted: use ed25519, RSA (2048 bits or more) "
                                          "or ECDSA (P-256, P-384, P-521)"
                                        : "not a private key in OpenSSH or PEM format");
                        cm_problem_validation(&p, "the SSH key document is not valid");
                        goto fail;
                }
                if (given_pub && !cm_sshkey_public_equal(given_pub, pub)) {
                        cm_problem_add(&p, "publicKey", "does not belong to the private key");
                        cm_problem_validation(&p, "the SSH key document is not valid");
                        goto fail;
                }
        }

        if ((r = cm_vault_env_owner(req->params[0], owner, sizeof(owner))) < 0 ||
            (r = key_files(name, fpriv, fpub)) < 0)
                goto fail;
        cm_format_rfc3339(cm_now_usec(), created, sizeof(created));
        if ((r = strbuf_adds(&rec, "{\"name\":")) < 0 || (r = strbuf_add_json_string(&rec, name)) < 0 ||
            (r = strbuf_adds(&rec, ",\"publicKey\":")) < 0 || (r = strbuf_add_json_string(&rec, pub)) < 0 ||
            (r = strbuf_adds(&rec, ",\"fingerprint\":")) < 0 || (r = strbuf_add_json_string(&rec, fp)) < 0 ||
            (r = strbuf_adds(&rec, ",\"createdAt\":")) < 0 ||
            (r = strbuf_add_json_string(&rec, created)) < 0 || (r = strbuf_addch(&rec, '}')) < 0)
                goto fail;

        /* The record decides existence; a private key left without one by a crash is overwritten. */
        {
                struct cm_vault_version *vs = NULL;
                size_t nv = 0;

                r = cm_vault_list_versions(req->svc->vault, owner, fpub, &vs, &nv);
                free(vs);
                if (r >= 0)
                        goto conflict;
                if (r != -ENOENT)
                        goto fail;
        }
        r = cm_vault_write(req->svc->vault, owner, fpriv, priv, priv_n, -1, NULL);
        if (r < 0)
                goto fail;
        r = cm_vault_write(req->svc->vault, owner, fpub, rec.buf, rec.len, 0, NULL);
        if (r == -ESTALE)
                goto conflict; /* created at the same time by another request */
        if (r < 0)
                goto fail;

        if ((r = strbuf_add(&req->out, rec.buf, rec.len)) < 0)
                goto fail;
        (void) cm_snprintf(loc, sizeof(loc), "/v1/environments/%s/sshkeys/%s", req->params[0], name);
        (void) cm_reply_header(req, "Location", loc);
        cm_reply(req, 201);
        goto done;
conflict:
        cm_problem_set(&p, 409, "conflict", "Conflict", "SSH key '%s' already exists", name);
        r = -EEXIST;
fail:
        cm_reply_error(req, r, &p);
done:
        cm_problem_done(&p);
}

static bool is_record(const char *file, const char **ret_name, size_t *ret_len) {
        size_t n = strlen(file);

        if (n <= 8 || !strneq(file, "ssh/", 4) || !streq(file + n - 4, ".pub"))
                return false;
        *ret_name = file + 4;
        *ret_len = n - 8;
        return true;
}

static int cmp_name(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

void cm_handle_sshkey_list(struct cm_req *req) {
        char owner[CM_VAULT_OWNER_MAX + 1];
        const char *limit_s = cm_req_query(req, "limit"), *after = cm_req_query(req, "pageToken");
        char **files = NULL;
        size_t nf = 0, shown = 0;
        const char *last = NULL;
        size_t nk = 0;
        unsigned limit = SSHKEY_LIST_DEFAULT;
        bool more = false;
        int r;

        if (limit_s && (safe_atou(limit_s, &limit) < 0 || limit < 1 || limit > SSHKEY_LIST_MAX)) {
                struct cm_problem p;

                cm_problem_init(&p);
                cm_problem_add(&p, "limit", "must be a whole number from 1 to %u", SSHKEY_LIST_MAX);
                cm_problem_set(&p, 400, "malformed", "Malformed request", "invalid query parameter");
                cm_reply_problem(req, &p);
                cm_problem_done(&p);
                return;
        }
        if (after && !cm_dns_label_valid(after)) {
                struct cm_problem p;

                cm_problem_init(&p);
                cm_problem_add(&p, "pageToken", "not a page token of this list");
                cm_problem_set(&p, 400, "malformed", "Malformed request", "invalid query parameter");
                cm_reply_problem(req, &p);
                cm_problem_done(&p);
                return;
        }
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
        /* Key names in name order (the file names "ssh/<name>.pub" do not sort like the names). */
        for (size_t i = 0; i < nf; i++) {
                const char *kn;
                size_t kl;

                if (!is_record(files[i], &kn, &kl))
                        continue;
                char *t = files[i];

                memmove(t, kn, kl); /* in place: "ssh/<name>.pub" becomes "<name>" */
                t[kl] = 0;
                files[i] = files[nk];
                files[nk++] = t;
        }
        if (nk > 1)
                qsort(files, nk, sizeof(*files), cmp_name);
        r = strbuf_adds(&req->out, "{\"items\":[");
        for (size_t i = 0; r >= 0 && i < nk; i++) {
                char fpriv[CM_VAULT_NAME_MAX + 1], fpub[CM_VAULT_NAME_MAX + 1];
                char *data = NULL;
                size_t dn = 0;

                if (after && strcmp(files[i], after) <= 0)
                        continue;
                if (shown == limit) {
                        more = true;
                        break;
                }
                r = key_files(files[i], fpriv, fpub);
                if (r >= 0)
                        r = cm_vault_read(req->svc->vault, owner, fpub, 0, &data, &dn, NULL);
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

void cm_handle_sshkey_get(struct cm_req *req) {
        char owner[CM_VAULT_OWNER_MAX + 1], fpriv[CM_VAULT_NAME_MAX + 1], fpub[CM_VAULT_NAME_MAX + 1];
        char *data = NULL;
        size_t dn = 0;
        int r;

        if (!req->svc->vault || !cm_dns_label_valid(req->params[1]))
                return cm_reply_not_found(req, "SSH key", req->params[1]);
        r = cm_vault_env_owner(req->params[0], owner, sizeof(owner));
        if (r >= 0)
                r = key_files(req->params[1], fpriv, fpub);
        if (r >= 0)
                r = cm_vault_read(req->svc->vault, owner, fpub, 0, &data, &dn, NULL);
        if (r == -ENOENT)
                return cm_reply_not_found(req, "SSH key", req->params[1]);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        r = strbuf_add(&req->out, data, dn);
        free(data);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 200);
}

void cm_handle_sshkey_delete(struct cm_req *req) {
        char owner[CM_VAULT_OWNER_MAX + 1], fpriv[CM_VAULT_NAME_MAX + 1], fpub[CM_VAULT_NAME_MAX + 1];
        int r;

        if (!req->svc->vault || !cm_dns_label_valid(req->params[1]))
                return cm_reply_not_found(req, "SSH key", req->params[1]);
        r = cm_vault_env_owner(req->params[0], owner, sizeof(owner));
        if (r >= 0)
                r = key_files(req->params[1], fpriv, fpub);
        if (r >= 0)
                r = cm_vault_remove(req->svc->vault, owner, fpub);
        if (r == -ENOENT)
                return cm_reply_not_found(req, "SSH key", req->params[1]);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        r = cm_vault_remove(req->svc->vault, owner, fpriv);
        if (r < 0 && r != -ENOENT)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 204);
}
