/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Customer access settings of an environment (docs/api.md, "Customer access"): the defaults every
 * cluster of the environment gets unless its spec.customer says otherwise. addons/customer.h applies them.
 */
#include "base/common.h"

#include <jansson.h>

#include "addons/customer.h"
#include "api/json.h"
#include "api/problem.h"
#include "base/parse.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "server/handlers.h"
#include "server/server_internal.h"

/* The settings as they apply, with their version; ETag: "<version>". */
static int settings_document(struct cm_req *req, const struct cm_customer_settings *s, int64_t version) {
        _cleanup_strbuf_ struct strbuf doc = STRBUF_INIT(2048);
        char etag[32];
        int r;

        r = cm_customer_settings_encode(s, &doc);
        if (r >= 0 && (doc.len < 2 || doc.buf[doc.len - 1] != '}'))
                r = -EBADMSG;
        if (r >= 0)
                r = strbuf_add(&req->out, doc.buf, doc.len - 1);
        if (r >= 0)
                r = strbuf_addf(&req->out, ",\"version\":%" PRIi64 "}", version);
        if (r >= 0) {
                (void) cm_snprintf(etag, sizeof(etag), "\"%" PRIi64 "\"", version);
                (void) cm_reply_header(req, "ETag", etag);
        }
        return r;
}

void cm_handle_customer_access_get(struct cm_req *req) {
        struct cm_customer_settings s = {};
        int64_t version = 0;
        int r;

        r = cm_customer_settings_get(req->svc, req->params[0], &s, &version);
        if (r == -ENOENT)
                return cm_reply_not_found(req, "environment", req->params[0]);
        if (r >= 0)
                r = settings_document(req, &s, version);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 200);
}

/* If-Match: "<version>" of the settings (0 before any were stored); none or "*" skips the check. */
static int parse_expected(struct cm_req *req, int64_t *ret) {
        const char *v = cm_req_header(req, "If-Match");
        char buf[32];
        uint64_t u;
        size_t n;

        *ret = -1;
        if (!v || streq(v, "*"))
                return 0;
        n = strlen(v);
        if (n >= 3 && n < sizeof(buf) && v[0] == '"' && v[n - 1] == '"') {
                memcpy(buf, v + 1, n - 2);
                buf[n - 2] = 0;
                if (safe_atou64(buf, &u) >= 0 && u <= INT64_MAX) {
                        *ret = (int64_t) u;
                        return 0;
                }
        }
        cm_reply_problem_simple(req, 400, "malformed", "Malformed request",
                                "If-Match must be the quoted version of the settings (the ETag of GET)");
        return -EINVAL;
}

/*
 * PUT: the document is stored as given (members left out follow the built-in defaults); the answer is
 * the settings as they now apply, as GET answers them. Clusters get them with their next create or
 * update.
 */
void cm_handle_customer_access_put(struct cm_req *req) {
        struct cm_customer_settings defaults = {}, s = {};
        _cleanup_free_ char *stored = NULL;
        struct cm_problem p;
        int64_t expected, version = 0;
        json_t *doc = NULL;
        int r;

        if (parse_expected(req, &expected) < 0)
                return;
        cm_problem_init(&p);
        cm_customer_settings_default(&defaults);
        r = cm_json_parse_strict(req->body.buf ?: "", req->body.len, &doc, &p);
        if (r >= 0 && cm_customer_settings_decode(doc, &defaults, &s, &p) < 0)
                r = cm_problem_validation(&p, "the customer access settings are not valid; see errors");
        if (r >= 0 && !(stored = cm_json_canonical(doc)))
                r = -ENOMEM;
        if (r >= 0)
                r = STORE_CALL(req->svc->store, env_settings_put, req->params[0], CM_CUSTOMER_SETTINGS_KIND,
                               stored, expected, cm_now_usec(), &version);
        if (r == -ENOENT)
                cm_problem_not_found(&p, "environment", req->params[0]);
        else if (r == -ESTALE)
                cm_problem_set(
                        &p, 412, "precondition-failed", "Precondition failed",
                        "the customer access settings of environment '%s' changed since version %" PRIi64
                        "; read them again and retry",
                        req->params[0], expected);
        if (r >= 0)
                r = settings_document(req, &s, version);
        if (r < 0)
                cm_reply_error(req, r, &p);
        else
                cm_reply(req, 200);
        json_decref(doc);
        cm_problem_done(&p);
}
