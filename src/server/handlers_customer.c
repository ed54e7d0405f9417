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
        int r;

        r = cm_customer_settings_encode(s, &doc);
        return r < 0 ? r : cm_settings_add_document(req, &doc, version);
}

void cm_handle_customer_access_get(struct cm_req *req) {
        struct cm_customer_settings s = {};
        int64_t version = 0;
        int r;

        r = cm_customer_settings_get(req->svc, req->params[0], &s, &version);
        if (r >= 0)
                r = settings_document(req, &s, version);
        cm_settings_reply(req, r, NULL, NULL, -1);
}

/*
 * PUT: the document is stored as given (members left out follow the built-in defaults); the answer is
 * the settings as they now apply, as GET answers them. Clusters get them with their next create or
 * update.
 */
void cm_handle_customer_access_put(struct cm_req *req) {
        struct cm_customer_settings defaults = {}, s = {};
        struct cm_problem p;
        int64_t expected, version = 0;
        json_t *doc = NULL;
        int r;

        if (cm_settings_if_match(req, &expected) < 0)
                return;
        cm_problem_init(&p);
        cm_customer_settings_default(&defaults);
        r = cm_json_parse_strict(req->body.buf ?: "", req->body.len, &doc, &p);
        if (r >= 0 && cm_customer_settings_decode(doc, &defaults, &s, &p) < 0)
                r = cm_problem_validation(&p, "the customer access settings are not valid; see errors");
        if (r >= 0)
                r = cm_settings_store(req, CM_CUSTOMER_SETTINGS_KIND, doc, expected, &version);
        if (r >= 0)
                r = settings_document(req, &s, version);
        cm_settings_reply(req, r, &p, "customer access", expected);
        json_decref(doc);
        cm_problem_done(&p);
}
