/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>

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
