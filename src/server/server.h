/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <microhttpd.h>

#include "api/problem.h"
#include "base/common.h"
#include "base/strbuf.h"
#include "lifecycle/service.h"
#include "server/router.h"

/*
 * The HTTP front: libmicrohttpd with a thread pool, bodies read into a capped buffer, then one chain
 * of steps per request: route → authenticate → authorize (environment reach) → idempotency → handler.
 * Handlers answer through cm_reply_*; exactly one answer per request.
 */

struct cm_server_tls;

struct cm_oidc;

struct cm_server_config {
        const char *listen; /* "127.0.0.1:8080", "[::1]:8080", "0.0.0.0:8080" */
        unsigned threads; /* thread pool size */
        size_t max_body; /* request body cap */
        unsigned max_connections;
        unsigned max_connections_per_ip; /* 0: no cap per address */
        unsigned idle_timeout_sec; /* a connection without traffic for this long is closed */
        unsigned request_timeout_sec; /* to send a request's header and body, however slowly */
        unsigned rate_limit; /* requests per second per principal (per source address without one); 0: off */
        unsigned rate_burst; /* the bucket's size */
        unsigned auth_fail_max; /* failed authentications of a source before it is throttled */
        unsigned auth_fail_window_sec; /* a source's failures are forgotten after this long without one */
        unsigned auth_block_max_sec; /* the longest wait of a throttled source */
        /* HTTPS with this certificate and key; NULL: plain HTTP. Borrowed: it must outlive the server. */
        const struct cm_server_tls *tls;
        /* OIDC bearer tokens are verified with it; NULL: API keys only. Borrowed, like tls. */
        struct cm_oidc *oidc;
};

void cm_server_config_defaults(struct cm_server_config *c);

/* 1 when listen ("ADDR:PORT", numeric) is a loopback address (127.0.0.0/8, ::1), 0 when it is not,
 * -EINVAL when it is malformed. */
int cm_server_listen_is_loopback(const char *listen);

/*
 * TLS material: a certificate (chain) and its private key, PEM files read and checked once (the key
 * file must be readable by its owner only, unencrypted, and match the certificate). The key's bytes
 * stay in memory for the life of the server, which hands them to libmicrohttpd by pointer, and are
 * wiped when freed. On failure returns a negative errno and writes a message for people to err.
 */
_warn_unused_result_ int cm_server_tls_load(const char *cert_file, const char *key_file,
                                            struct cm_server_tls **ret, char *err, size_t err_size);
/* Wipes the key; accepts NULL; returns NULL. */
struct cm_server_tls *cm_server_tls_free(struct cm_server_tls *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct cm_server_tls *, cm_server_tls_free);
/* The certificate's subject (RFC 2253) and the end of its validity (µs since the epoch). */
const char *cm_server_tls_subject(const struct cm_server_tls *t);
uint64_t cm_server_tls_not_after(const struct cm_server_tls *t);

struct cm_server;

int cm_server_start(const struct cm_server_config *cfg, struct cm_service *svc, struct cm_server **ret);
/* Stops accepting, ends log streams, waits for handlers, frees. Accepts NULL; returns NULL. */
struct cm_server *cm_server_stop(struct cm_server *s);
uint16_t cm_server_port(const struct cm_server *s);

enum cm_principal_kind {
        CM_PRINCIPAL_NONE, /* not authenticated (routes that need no role) */
        CM_PRINCIPAL_APIKEY,
        CM_PRINCIPAL_USER, /* an OIDC user */
};

struct cm_principal {
        enum cm_principal_kind kind;
        char id[48]; /* API key id, or "u:" + a hash of the OIDC subject; scopes idempotency keys */
        char name[128]; /* for people: the key's name, the user's email or subject */
        char subject[256]; /* what role bindings name: the key id, or the OIDC subject */
        char email[256]; /* OIDC only; bindings of kind user match the subject or the email */
        char groups[1024]; /* OIDC groups, '\n'-separated */
        enum cm_role role; /* global role: every environment */
};

#define CM_REQ_MAX_HEADERS 6
#define CM_SOURCE_MAX 48

struct cm_req {
        struct cm_server *srv;
        struct cm_service *svc;
        struct MHD_Connection *conn;
        const char *method;
        char *path; /* copy, split by the router */
        const char *url; /* as received (path only) */
        struct strbuf body;
        size_t max_body; /* the body cap: the server's, or the route's when larger */
        bool body_too_large;
        const struct cm_route *route;
        bool path_matched; /* no route: some route has the path with another method (405) */
        char *params[CM_ROUTE_MAX_PARAMS];
        size_t n_params;
        struct cm_principal principal;
        const char *auth_failure; /* why authentication failed (for the audit record), or NULL */
        char auth_reason[256]; /* the token verifier's reason, when auth_failure points here */
        struct cm_audit_record audit; /* this request's audit record, when it gets one */
        bool audited;
        char request_id[40];
        uint64_t start_usec;
        char source[CM_SOURCE_MAX]; /* the client's address (of IPv6, the /64): limits anonymous clients */

        /* the answer */
        bool replied;
        int status;
        const char *content_type;
        struct strbuf out;
        const char *header_names[CM_REQ_MAX_HEADERS];
        char *header_values[CM_REQ_MAX_HEADERS];
        size_t n_headers;
        struct MHD_Response *stream; /* set by handlers that stream */
};

/* Reply with body `out` already filled by the handler (content type JSON unless set). */
void cm_reply(struct cm_req *req, int status);
void cm_reply_problem(struct cm_req *req, const struct cm_problem *p);
/* A problem when p->status is set; otherwise an internal error (500) logged with r. */
void cm_reply_error(struct cm_req *req, int r, const struct cm_problem *p);
void cm_reply_stream(struct cm_req *req, int status, const char *content_type, struct MHD_Response *resp);
/* A problem with a fixed detail; a 404 "<what> '<name>' not found". */
void cm_reply_problem_simple(struct cm_req *req, int status, const char *type, const char *title,
                             const char *detail);
void cm_reply_not_found(struct cm_req *req, const char *what, const char *name);
int cm_reply_header(struct cm_req *req, const char *name, const char *value);

const char *cm_req_query(struct cm_req *req, const char *key);
const char *cm_req_header(struct cm_req *req, const char *key);

/* For streamed answers: park the connection until new log output appears (see handlers.c). */
void cm_server_follow_suspend(struct cm_server *s, struct MHD_Connection *conn);

/* Metrics text (server/metrics.c). */
int cm_metrics_render(struct cm_server *s, struct strbuf *out);
