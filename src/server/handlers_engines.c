/* SPDX-License-Identifier: Apache-2.0 */
/* Engine routes: what an engine supports (GET /v1/engines/{engine}/versions). */
#include "base/common.h"

#include "api/problem.h"
#include "base/strbuf.h"
#include "engine/engine.h"
#include "server/handlers.h"
#include "server/server_internal.h"

void cm_handle_engine_versions(struct cm_req *req) {
        const struct cm_engine_ops *eng = cm_engine_find(req->params[0]);
        _cleanup_free_ char *text = NULL;
        json_t *v = NULL;
        int r;

        if (!eng || !eng->list_versions)
                return cm_reply_not_found(req, "engine with a version list",
                                          strlen(req->params[0]) > 32 ? "<long name>" : req->params[0]);
        r = eng->list_versions(&v);
        if (r == -ENOENT)
                return cm_reply_problem_simple(req, 503, "engine-unavailable", "Service Unavailable",
                                               "the engine's program is missing on this server; build it "
                                               "with `make tools` or point the service at it");
        if (r < 0)
                return cm_reply_problem_simple(req, 503, "engine-unavailable", "Service Unavailable",
                                               "the engine's program did not list its versions");
        text = json_dumps(v, JSON_COMPACT);
        json_decref(v);
        if (!text || strbuf_adds(&req->out, text) < 0)
                return cm_reply_error(req, -ENOMEM, NULL);
        cm_reply(req, 200);
}
