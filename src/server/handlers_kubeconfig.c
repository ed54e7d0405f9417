/* SPDX-License-Identifier: Apache-2.0 */
/* Kubeconfig routes: the admin kubeconfig and the customer kubeconfig of a cluster. */
#include "base/common.h"

#include "addons/customer.h"
#include "api/problem.h"
#include "base/parse.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "lifecycle/statefiles.h"
#include "server/handlers.h"
#include "server/server_internal.h"

/* The state file an engine stores the admin kubeconfig in. */
#define ADMIN_KUBECONFIG_FILE "kube_config_cluster.yml"

/* A response body holding a secret: wiped when libmicrohttpd is done with it. */
struct secret_body {
        char *buf;
        size_t len;
};

static void secret_body_free(void *cls) {
        struct secret_body *b = cls;

        if (!b)
                return;
        cm_wipe(b->buf, b->len);
        free(b->buf);
        free(b);
}

int cm_req_load_cluster(struct cm_req *req, struct cm_cluster *ret) {
        int r = STORE_CALL(req->svc->store, cluster_get, req->params[0], req->params[1], ret);

        if (r == -ENOENT)
                cm_reply_not_found(req, "cluster", req->params[1]);
        else if (r < 0)
                cm_reply_error(req, r, NULL);
        return r;
}

void cm_reply_secret(struct cm_req *req, int status, const char *content_type, char *data, size_t n) {
        struct secret_body *body;
        struct MHD_Response *resp;

        body = new0(struct secret_body, 1);
        if (!body) {
                cm_wipe(data, n);
                free(data);
                return cm_reply_error(req, -ENOMEM, NULL);
        }
        *body = (struct secret_body){ .buf = data, .len = n };
        /* libmicrohttpd sends from our buffer (no copy) and calls secret_body_free when done. */
        resp = MHD_create_response_from_buffer_with_free_callback_cls(n, data, secret_body_free, body);
        if (!resp) {
                secret_body_free(body);
                return cm_reply_error(req, -ENOMEM, NULL);
        }
        cm_reply_stream(req, status, content_type, resp);
}

void cm_handle_cluster_kubeconfig(struct cm_req *req) {
        _cleanup_(cm_cluster_done) struct cm_cluster c = {};
        char *data = NULL, detail[256];
        size_t n = 0;
        int r;

        if (cm_req_load_cluster(req, &c) < 0)
                return;

        r = cm_state_file_read(req->svc, &c, ADMIN_KUBECONFIG_FILE, &data, &n);
        if (r == -ENOENT || r == -EOPNOTSUPP) {
                (void) cm_snprintf(detail, sizeof(detail),
                                   "no admin kubeconfig is stored for cluster '%s'%s", c.name,
                                   r == -EOPNOTSUPP ? " (this service has no state vault)"
                                                    : "; it appears once the cluster is provisioned");
                return cm_reply_problem_simple(req, 404, "kubeconfig-unavailable", "Not found", detail);
        }
        if (r < 0)
                return cm_reply_error(req, r, NULL);

        cm_reply_secret(req, 200, "application/yaml", data, n);
}

/* ?lifetimeSeconds=N within the token bounds; replies 422 naming the parameter and returns -EINVAL otherwise. */
static int query_lifetime(struct cm_req *req, unsigned def, unsigned *ret) {
        const char *v = cm_req_query(req, "lifetimeSeconds");
        struct cm_problem p;
        unsigned n;

        if (!v) {
                *ret = def;
                return 0;
        }
        if (safe_atou(v, &n) >= 0 && n >= CM_CUSTOMER_TOKEN_MIN && n <= CM_CUSTOMER_TOKEN_MAX) {
                *ret = n;
                return 0;
        }
        cm_problem_init(&p);
        cm_problem_add(
                &p, "lifetimeSeconds",
                "must be an integer from %u (10 minutes, the shortest token the API server issues) to %u "
                "(a year)",
                CM_CUSTOMER_TOKEN_MIN, CM_CUSTOMER_TOKEN_MAX);
        (void) cm_problem_validation(&p, "the token lifetime is out of bounds");
        cm_reply_problem(req, &p);
        cm_problem_done(&p);
        return -EINVAL;
}

/*
 * The customer kubeconfig: a token minted now for the cluster's customer service account (TokenRequest),
 * with the server and CA of the admin kubeconfig. Never the admin credentials; the answer is wiped once
 * sent. Every read is audited (the route is marked secret).
 */
void cm_handle_cluster_kubeconfig_customer(struct cm_req *req) {
        _cleanup_(cm_cluster_done) struct cm_cluster c = {};
        struct cm_customer_settings s = {};
        char *data = NULL, detail[512] = "";
        unsigned lifetime = 0;
        size_t n = 0;
        int r;

        if (cm_req_load_cluster(req, &c) < 0)
                return;
        r = cm_customer_settings_get(req->svc, c.env, &s, NULL);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        if (query_lifetime(req, s.token_lifetime_sec, &lifetime) < 0)
                return;
        if (!s.enabled) {
                (void) cm_snprintf(detail, sizeof(detail),
                                   "customer access is turned off in environment '%s'", c.env);
                return cm_reply_problem_simple(req, 404, "kubeconfig-unavailable", "Not found", detail);
        }
        if (c.phase != CM_PHASE_READY) {
                (void) cm_snprintf(
                        detail, sizeof(detail),
                        "cluster '%s' is %s; its customer kubeconfig is available once it is Ready", c.name,
                        cm_phase_to_string(c.phase) ?: "not ready");
                return cm_reply_problem_simple(req, 404, "kubeconfig-unavailable", "Not found", detail);
        }

        r = cm_customer_kubeconfig_issue(req->svc, &c, lifetime, &data, &n, detail, sizeof(detail));
        if (r == -ENOENT || r == -EOPNOTSUPP)
                return cm_reply_problem_simple(req, 404, "kubeconfig-unavailable", "Not found", detail);
        if (r == -EREMOTEIO) {
                struct cm_problem p;

                cm_problem_init(&p);
                (void) cm_problem_set(&p, 502, "cluster-api-error", "Bad gateway", "cluster '%s': %s",
                                      c.name, detail);
                cm_reply_problem(req, &p);
                cm_problem_done(&p);
                return;
        }
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_reply_secret(req, 200, "application/yaml", data, n);
}
