/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include <jansson.h>

#include "server/cache.h"
#include "server/pagecache.h"
#include "server/server.h"

/* HTTP status codes counted per route (anything else counts as "other"). */
#define CM_METRIC_CODES 20
#define CM_METRIC_BUCKETS 10

struct cm_route_metrics {
        atomic_uint_fast64_t count[CM_METRIC_CODES];
        atomic_uint_fast64_t buckets[CM_METRIC_BUCKETS]; /* cumulative at render time, not here */
        atomic_uint_fast64_t duration_usec_sum;
        atomic_uint_fast64_t duration_count;
};

struct follower {
        struct MHD_Connection *conn;
        struct follower *next;
};

struct cm_server {
        struct MHD_Daemon *daemon;
        struct cm_service *svc;
        struct cm_server_config cfg;
        uint16_t port;

        struct cm_route_metrics *route_metrics; /* cm_routes_count + 1 (the last: unmatched) */

        pthread_mutex_t follow_lock;
        struct MHD_Connection **suspended;
        size_t n_suspended, max_suspended;
        pthread_t follow_thread;
        bool follow_thread_started;
        atomic_bool stopping;
        atomic_uint active_streams;

        /* Short-lived positive answers of the authentication and authorization steps. */
        struct cm_cache auth_cache; /* "k:<token sha256>" → "<role> <key id> <name>" */
        struct cm_cache env_cache; /* "<env>" → "1" */
        struct cm_page_cache list_cache; /* encoded pages of cluster lists */
        struct cm_page_cache cluster_cache; /* encoded single clusters (backends with a change counter) */
        char request_id_prefix[16];
        atomic_uint_fast64_t request_counter;

        struct cm_limits *limits; /* rate limits, authentication failures, request deadlines */
        bool tls; /* HTTPS (the answers carry Strict-Transport-Security) */
        atomic_uint_fast64_t conn_limit_logged_usec; /* last "connection limit reached" warning */
};

extern const int cm_metric_codes[CM_METRIC_CODES];
extern const double cm_metric_bounds[CM_METRIC_BUCKETS];
void cm_metrics_observe(struct cm_server *s, const struct cm_route *route, int status, uint64_t usec,
                        bool count_duration);

/* Authentication and authorization steps (server/auth.c). Set a problem and return < 0 to refuse. */
/* The cluster named by the route's {env}/{name}; on failure replies (404 or 500) and returns < 0. */
int cm_req_load_cluster(struct cm_req *req, struct cm_cluster *ret);
/* Answers with a secret (takes data over): sent without a copy, wiped and freed once sent. */
void cm_reply_secret(struct cm_req *req, int status, const char *content_type, char *data, size_t n);
/*
 * Settings documents of an environment (server/handlers.c): GET answers the document with its
 * "version" and ETag: "<version>"; PUT takes If-Match: "<version>" (0 before any were stored) and
 * stores only when it is still the stored version.
 */
/* The version If-Match expects; -1 without one (or "*"). When malformed, replies 400 and returns < 0. */
int cm_settings_if_match(struct cm_req *req, int64_t *ret);
/* Sets the ETag header of version. */
void cm_settings_etag(struct cm_req *req, int64_t version);
/* Appends doc (an encoded JSON object) with "version" as its last member to req->out; sets the ETag. */
_warn_unused_result_ int cm_settings_add_document(struct cm_req *req, const struct strbuf *doc,
                                                  int64_t version);
/* Stores doc (canonical JSON) as the kind settings of the route's environment, if still at expected. */
_warn_unused_result_ int cm_settings_store(struct cm_req *req, const char *kind, const json_t *doc,
                                           int64_t expected, int64_t *ret_version);
/*
 * Answers a settings request of the route's environment: 200 with req->out when r >= 0, else the error.
 * -ENOENT is the environment's 404. With p (a PUT), p holds the problem and -ESTALE is 412 naming what
 * ("monitoring") and the expected version; without p (a GET) the rest go to cm_reply_error() alone.
 */
void cm_settings_reply(struct cm_req *req, int r, struct cm_problem *p, const char *what, int64_t expected);
int cm_auth_authenticate(struct cm_req *req, struct cm_problem *p);
int cm_auth_authorize(struct cm_req *req, struct cm_problem *p);
/* The principal's role in env (NULL: its global role, from its key and the "*" bindings). */
int cm_auth_env_role(struct cm_req *req, const char *env, enum cm_role *ret);
/*
 * The audit step (audit.c): begin after authentication (a record for mutating and secret-reading
 * routes), stage around the handler (the store writes the record with the change), end after the
 * answer (a record not written with a change is written now, with the status).
 */
void cm_audit_begin(struct cm_req *req);
void cm_audit_stage(struct cm_req *req, bool on);
void cm_audit_end(struct cm_req *req);
void cm_audit_auth_failure(struct cm_req *req);
/* Keys or role bindings changed: cached answers of authentication and authorization are dropped. */
void cm_auth_changed(struct cm_server *s);
enum cm_role cm_role_from_string(const char *s);
const char *cm_role_to_string(enum cm_role r);

/*
 * Limits (server/limits.c): token buckets per principal or source address, the throttle of sources
 * that fail authentication, and the deadline of every request. Each table has a fixed size chosen at
 * start (idle entries are evicted first) and is safe to use from every thread of the pool.
 */
enum cm_limit_reason {
        CM_LIMIT_RATE, /* "rate-limited": the token bucket of the principal (or source) is empty */
        CM_LIMIT_AUTH_FAILURES, /* "too-many-auth-failures": the source failed authentication too often */
        CM_LIMIT_TOO_LARGE, /* "too-large": the body is larger than the cap (413) */
        CM_LIMIT_SLOW_REQUEST, /* "slow-request": closed at the deadline of the request */
        CM_LIMIT_CONNECTIONS, /* "connection-limit": a connection refused by the total or per-address cap */
        _CM_LIMIT_REASON_MAX,
};

const char *cm_limit_reason_to_string(enum cm_limit_reason r);

struct cm_limits;
/* Per-connection state; the socket context of the connection (NULL when it could not be tracked). */
struct cm_conn;

/* Sizes its tables from cfg (max_connections, rates); the deadline watchdog starts with it. */
_warn_unused_result_ int cm_limits_new(const struct cm_server_config *cfg, struct cm_limits **ret);
/* Stops the watchdog and frees; call after the daemon stopped. Accepts NULL; returns NULL. */
struct cm_limits *cm_limits_free(struct cm_limits *l);
void cm_limits_note(struct cm_limits *l, enum cm_limit_reason r);
uint64_t cm_limits_count(const struct cm_limits *l, enum cm_limit_reason r);

/*
 * The key that limits anonymous clients and counts authentication failures: the IPv4 address, or
 * the /64 prefix of an IPv6 address (one host holds a whole /64). size >= CM_SOURCE_MAX.
 */
void cm_limits_source_key(const struct sockaddr *sa, char *buf, size_t size);

/*
 * Connection notifications (MHD_OPTION_NOTIFY_CONNECTION): a connection is tracked from its start;
 * until its first request has been received, and from the end of each answer until the next request
 * has been received, it has request_timeout_sec to send it — trickling bytes does not extend that, as
 * it does libmicrohttpd's idle timeout. Past the deadline the watchdog shuts the socket down.
 */
void cm_limits_conn_started(struct cm_limits *l, struct MHD_Connection *conn, void **socket_context);
void cm_limits_conn_closed(struct cm_limits *l, void **socket_context);
/* The request has been received: no deadline while it is answered (answers may stream for long). */
void cm_limits_conn_answering(struct cm_conn *c);
/* The answer is complete: the next request has request_timeout_sec from now. */
void cm_limits_conn_idle(struct cm_limits *l, struct cm_conn *c);

/*
 * The steps of the request pipeline (server.c calls them around cm_auth_authenticate):
 *
 *   cm_limits_auth_check(req)       before authentication, on routes that need a role: while the source
 *                                   is throttled after failed authentications, 429 too-many-auth-failures
 *                                   (the credentials are not looked at);
 *   cm_limits_auth_done(req, r)     with authentication's result: -EACCES counts a failure of the
 *                                   source; success on a route that needs a role clears its failures;
 *   cm_limits_rate(req)             after authentication: a token from the principal's bucket, or the
 *                                   source's when there is no principal; 429 rate-limited when empty.
 *
 * A refusal sets p (429, with a Retry-After header on req), counts it, and returns -EBUSY.
 */
int cm_limits_auth_check(struct cm_req *req, struct cm_problem *p);
/* Whether cm_limits_auth_check() would refuse the source now, without counting or answering anything. */
bool cm_limits_auth_blocked(struct cm_req *req);
void cm_limits_auth_done(struct cm_req *req, int r);
int cm_limits_rate(struct cm_req *req, struct cm_problem *p);
