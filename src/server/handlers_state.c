/* SPDX-License-Identifier: Apache-2.0 */
/* State file routes: the files an engine keeps for a cluster in the state vault (admin only). */
#include "base/common.h"

#include "base/log.h"
#include "base/parse.h"
#include "lifecycle/statefiles.h"
#include "server/handlers.h"
#include "server/server_internal.h"
#include "vault/vault.h"

static void reply_no_vault(struct cm_req *req) {
        cm_reply_problem_simple(req, 404, "state-unavailable", "Not found",
                                "this service runs without a state vault: no state files are kept");
}

void cm_handle_cluster_state_list(struct cm_req *req) {
        _cleanup_(cm_cluster_done) struct cm_cluster c = {};
        int r;

        if (cm_req_load_cluster(req, &c) < 0)
                return;
        r = cm_state_files_list_json(req->svc, &c, &req->out);
        if (r == -EOPNOTSUPP)
                return reply_no_vault(req);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 200);
}

static const char *content_type_of(const char *name) {
        if (endswith(name, ".yml") || endswith(name, ".yaml"))
                return "application/yaml";
        if (endswith(name, ".rkestate") || endswith(name, ".json"))
                return "application/json";
        return "application/octet-stream";
}

void cm_handle_cluster_state_get(struct cm_req *req) {
        _cleanup_(cm_cluster_done) struct cm_cluster c = {};
        const char *file = req->params[2], *vq = cm_req_query(req, "version");
        char *data = NULL, detail[384], vs[24];
        uint64_t version = 0, got = 0;
        size_t n = 0;
        int r;

        if (vq && (safe_atou64(vq, &version) < 0 || version == 0))
                return cm_reply_problem_simple(
                        req, 400, "malformed", "Malformed request",
                        "version must be a positive integer (omit it for the newest)");
        if (!cm_vault_name_valid(file) || strchr(file, '/'))
                return cm_reply_not_found(req, "state file", "(invalid name)");
        if (cm_req_load_cluster(req, &c) < 0)
                return;
        r = cm_state_file_read_version(req->svc, &c, file, version, &data, &n, &got);
        if (r == -EOPNOTSUPP)
                return reply_no_vault(req);
        if (r == -ENOENT) {
                if (version)
                        (void) cm_snprintf(detail, sizeof(detail),
                                           "state file '%s' of cluster '%s' has no version %" PRIu64
                                           " (see the list of kept versions)",
                                           file, c.name, version);
                else
                        (void) cm_snprintf(detail, sizeof(detail), "cluster '%s' has no state file '%s'",
                                           c.name, file);
                return cm_reply_problem_simple(req, 404, "not-found", "Not found", detail);
        }
        if (r == -EBADMSG || r == -ENOKEY || r == -EKEYREJECTED) {
                log_error("state file %s of cluster %s cannot be opened: %s", file, c.id, strerror(-r));
                (void) cm_snprintf(detail, sizeof(detail),
                                   "state file '%s' of cluster '%s' cannot be opened: %s; the service log "
                                   "has the details",
                                   file, c.name,
                                   r == -EBADMSG ? "it is damaged or was tampered with"
                                                 : "the vault key that sealed it is not loaded");
                return cm_reply_problem_simple(req, 500, "state-unreadable", "State file unreadable",
                                               detail);
        }
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        /* Until the audit log exists, reads of secrets leave a line in the service log (never bytes). */
        log_info("state file %s (version %" PRIu64 ") of cluster %s/%s read by %s", file, got, c.env, c.name,
                 req->principal.name);
        (void) cm_snprintf(vs, sizeof(vs), "%" PRIu64, got);
        (void) cm_reply_header(req, "X-State-Version", vs);
        cm_reply_secret(req, 200, content_type_of(file), data, n);
}
