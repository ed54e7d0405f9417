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
#include "server/vault_records.h"
#include "vault/sshkey.h"
#include "vault/vault.h"

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

static const struct cm_vault_records sshkeys = { .prefix = "ssh/", .suffix = ".pub", .what = "SSH key" };

void cm_handle_sshkey_create(struct cm_req *req) {
        static const char *const allowed[] = { "name", "privateKey", "publicKey", "generate", NULL };
        _cleanup_(cm_json_decref_wiped) json_t *doc = NULL;
        _cleanup_erase_free_ char *generated = NULL;
        _cleanup_free_ char *pub = NULL;
        _cleanup_strbuf_ struct strbuf rec = STRBUF_INIT(SSHKEY_RECORD_MAX);
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

        cm_format_rfc3339(cm_now_usec(), created, sizeof(created));
        if ((r = strbuf_adds(&rec, "{\"name\":")) < 0 || (r = strbuf_add_json_string(&rec, name)) < 0 ||
            (r = strbuf_adds(&rec, ",\"publicKey\":")) < 0 || (r = strbuf_add_json_string(&rec, pub)) < 0 ||
            (r = strbuf_adds(&rec, ",\"fingerprint\":")) < 0 || (r = strbuf_add_json_string(&rec, fp)) < 0 ||
            (r = strbuf_adds(&rec, ",\"createdAt\":")) < 0 ||
            (r = strbuf_add_json_string(&rec, created)) < 0 || (r = strbuf_addch(&rec, '}')) < 0)
                goto fail;

        if (cm_vault_records_put(req, &sshkeys, name, priv, priv_n, rec.buf, rec.len, true) < 0)
                goto done;
        if ((r = strbuf_add(&req->out, rec.buf, rec.len)) < 0)
                goto fail;
        (void) cm_snprintf(loc, sizeof(loc), "/v1/environments/%s/sshkeys/%s", req->params[0], name);
        (void) cm_reply_header(req, "Location", loc);
        cm_reply(req, 201);
        goto done;
fail:
        cm_reply_error(req, r, &p);
done:
        cm_problem_done(&p);
}

void cm_handle_sshkey_list(struct cm_req *req) {
        cm_vault_records_list(req, &sshkeys);
}

void cm_handle_sshkey_get(struct cm_req *req) {
        cm_vault_records_get(req, &sshkeys);
}

void cm_handle_sshkey_delete(struct cm_req *req) {
        cm_vault_records_delete(req, &sshkeys);
}
