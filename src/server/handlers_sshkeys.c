/* SPDX-License-Identifier: Apache-2.0 */
/* SSH key routes: private keys are write-only and kept only in the encrypted state vault. */
#include "base/common.h"

#include "api/problem.h"
#include "base/strbuf.h"
#include "server/handlers.h"
#include "server/server_internal.h"

static void reply_problemf(struct cm_req *req, int status, const char *type, const char *title,
                           const char *detail) {
        struct cm_problem p;

        cm_problem_init(&p);
        cm_problem_set(&p, status, type, title, "%s", detail);
        cm_reply_problem(req, &p);
        cm_problem_done(&p);
}

static void reply_not_found(struct cm_req *req, const char *what, const char *name) {
        struct cm_problem p;

        cm_problem_init(&p);
        cm_problem_not_found(&p, what, name);
        cm_reply_problem(req, &p);
        cm_problem_done(&p);
}

void cm_handle_sshkey_create(struct cm_req *req) {
        /* Private keys are only ever stored encrypted: without the state vault this build refuses. */
        reply_problemf(
                req, 501, "vault-unavailable", "Not implemented",
                "SSH keys are stored only in the encrypted state vault, which this build does not have; "
                "the key was not stored");
}

void cm_handle_sshkey_list(struct cm_req *req) {
        if (strbuf_adds(&req->out, "{\"items\":[]}") < 0)
                return cm_reply_error(req, -ENOMEM, NULL);
        cm_reply(req, 200);
}

void cm_handle_sshkey_get(struct cm_req *req) {
        reply_not_found(req, "SSH key", req->params[1]);
}

void cm_handle_sshkey_delete(struct cm_req *req) {
        reply_not_found(req, "SSH key", req->params[1]);
}
