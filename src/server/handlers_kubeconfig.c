/* SPDX-License-Identifier: Apache-2.0 */
/* Kubeconfig routes: the admin kubeconfig and the customer kubeconfig of a cluster. */
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

static void kubeconfig_common(struct cm_req *req, const char *what) {
        _cleanup_(cm_cluster_done) struct cm_cluster c = {};
        char detail[256];
        int r;

        r = STORE_CALL(req->svc->store, cluster_get, req->params[0], req->params[1], &c);
        if (r == -ENOENT)
                return reply_not_found(req, "cluster", req->params[1]);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        /* Kubeconfigs live in the encrypted state vault that engines write; none is stored yet. */
        (void) cm_snprintf(detail, sizeof(detail), "no %s is stored for cluster '%s'", what, c.name);
        reply_problemf(req, 404, "kubeconfig-unavailable", "Not found", detail);
}

void cm_handle_cluster_kubeconfig(struct cm_req *req) {
        kubeconfig_common(req, "admin kubeconfig");
}

void cm_handle_cluster_kubeconfig_customer(struct cm_req *req) {
        kubeconfig_common(req, "customer kubeconfig");
}

