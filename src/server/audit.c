/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The audit step: every mutating request, every read of a secret (routes marked `secret`) and every
 * authentication failure leaves a record in the store's hash-chained audit log. A mutating request's
 * record is staged around its handler, so that the store writes it in the transaction of the change it
 * records (outcome "committed"); a request that changed nothing in the store (refused, failed, or a
 * change of the vault only) gets its record afterwards, with its HTTP status.
 */
#include "base/common.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include "base/log.h"
#include "base/util.h"
#include "server/server_internal.h"

static void source_of(struct cm_req *req, char *buf, size_t size) {
        const union MHD_ConnectionInfo *ci =
                req->conn ? MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS) : NULL;
        const struct sockaddr *sa = ci ? ci->client_addr : NULL;

        (void) cm_strlcpy(buf, "unknown", size);
        if (sa && sa->sa_family == AF_INET)
                (void) inet_ntop(AF_INET, &((const struct sockaddr_in *) (const void *) sa)->sin_addr, buf,
                                 (socklen_t) size);
        else if (sa && sa->sa_family == AF_INET6)
                (void) inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) (const void *) sa)->sin6_addr,
                                 buf, (socklen_t) size);
}

/* The request's path without its query: what was asked for (values in queries are not recorded). */
static char *resource_of(const char *url) {
        size_t n = strcspn(url ?: "", "?");
        return strndup(url ?: "", n);
}

static int fill(struct cm_req *req, const char *principal) {
        struct cm_audit_record *a = &req->audit;
        char src[64], action[256];

        source_of(req, src, sizeof(src));
        (void) cm_snprintf(action, sizeof(action), "%s %s", req->method,
                           req->route ? req->route->pattern : "(no route)");
        *a = (struct cm_audit_record){
                .ts_usec = cm_now_usec(),
                .principal = strdup(principal),
                .source = strdup(src),
                .request_id = strdup(req->request_id),
                .action = strdup(action),
                .resource = resource_of(req->url),
        };
        if (!a->principal || !a->source || !a->request_id || !a->action || !a->resource) {
                cm_audit_record_done(a);
                return -ENOMEM;
        }
        req->audited = true;
        return 0;
}

static void principal_label(const struct cm_principal *p, char *buf, size_t size) {
        switch (p->kind) {
        case CM_PRINCIPAL_APIKEY:
                (void) cm_snprintf(buf, size, "apikey:%s", p->id);
                return;
        case CM_PRINCIPAL_USER:
                (void) cm_snprintf(buf, size, "user:%s", p->subject);
                return;
        case CM_PRINCIPAL_NONE:
                break;
        }
        (void) cm_strlcpy(buf, "anonymous", size);
}

static bool audited_route(const struct cm_req *req) {
        return req->route && req->route->role != CM_ROLE_NONE &&
               (req->route->secret || !(streq(req->method, "GET") || streq(req->method, "HEAD")));
}

void cm_audit_begin(struct cm_req *req) {
        char who[sizeof(req->principal.subject) + 16];

        if (req->audited || !audited_route(req))
                return;
        principal_label(&req->principal, who, sizeof(who));
        if (fill(req, who) < 0) {
                log_error("request %s: no memory for its audit record", req->request_id);
                return;
        }
        /* what a record written with the change says; a record written afterwards says the status */
        req->audit.outcome = strdup("committed");
        if (!req->audit.outcome) {
                cm_audit_record_done(&req->audit);
                req->audited = false;
        }
}

void cm_audit_stage(struct cm_req *req, bool on) {
        if (req->audited && !req->route->secret)
                (void) cm_store_audit_stage(on ? &req->audit : NULL);
        else if (!on)
                (void) cm_store_audit_stage(NULL);
}

static const char *outcome_of(int status) {
        if (status >= 200 && status < 400)
                return "success";
        if (status == 401 || status == 403 || status == 404 || status == 429)
                return "denied";
        if (status >= 400 && status < 500)
                return "refused";
        return "failed";
}

void cm_audit_end(struct cm_req *req) {
        struct cm_audit_record *a = &req->audit;
        int r;

        if (!req->audited)
                return;
        (void) cm_store_audit_stage(NULL);
        if (a->seq == 0) {
                free(a->outcome);
                a->outcome = strdup(outcome_of(req->status));
                a->status = req->status;
                r = a->outcome ? STORE_CALL(req->svc->store, audit_append, a) : -ENOMEM;
                if (r < 0)
                        log_error_errno(r, "request %s: write its audit record: %m", req->request_id);
        }
        cm_audit_record_done(a);
        req->audited = false;
}

void cm_audit_auth_failure(struct cm_req *req) {
        int r;

        if (req->audited || fill(req, "anonymous") < 0)
                return;
        req->audit.outcome = strdup("denied");
        req->audit.status = 401;
        r = req->audit.outcome ? STORE_CALL(req->svc->store, audit_append, &req->audit) : -ENOMEM;
        if (r < 0)
                log_error_errno(r, "request %s: write the audit record of a failed authentication: %m",
                                req->request_id);
        cm_audit_record_done(&req->audit);
        req->audited = false;
}
