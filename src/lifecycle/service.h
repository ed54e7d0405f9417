/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <pthread.h>

#include "api/documents.h"
#include "api/model.h"
#include "api/problem.h"
#include "base/common.h"
#include "store/store.h"

/*
 * The service layer: validates a change, writes the desired state and queues its operation in one
 * store transaction, and runs the workers that carry operations out. The HTTP layer calls it; it
 * never sees HTTP.
 */

struct cm_service_config {
        const char *data_dir;
        unsigned workers; /* worker threads; 0 runs no workers (API only) */
        uint64_t lease_usec; /* operation lease; heartbeats renew it at a third of it */
        unsigned max_attempts; /* per operation, retries included */
        uint64_t backoff_base_usec; /* first retry delay; doubles per attempt */
        uint64_t backoff_cap_usec; /* longest retry delay */
        uint64_t poll_usec; /* idle workers look for work this often (other replicas' work) */
        uint64_t shutdown_grace_usec; /* on stop, running steps get this long before being asked to stop */
        uint64_t
                state_retention_usec; /* archived state of deleted clusters is kept this long (0: forever) */
};

void cm_service_config_defaults(struct cm_service_config *c);

struct cm_workers;
struct cm_vault;
struct cm_policy_remote;
struct cm_compliance_loop;
struct cm_addons_reconciler;
struct strbuf;

struct cm_service {
        struct cm_store *store;
        struct cm_vault *vault; /* the state vault; NULL: none (state files and SSH keys refused) */
        struct cm_service_config cfg;
        char replica_id[48];

        pthread_mutex_t lock;
        pthread_cond_t work_cond; /* new work queued in this process */
        pthread_cond_t log_cond; /* an operation log or state changed in this process */
        uint64_t log_seq;
        uint64_t work_seq; /* bumped by notify_work: idle workers wait only while it is unchanged */
        bool stopping;

        struct cm_workers *workers;

        /* Compliance: NULL evaluates the built-in rules; else the remote Policy Management Service. */
        struct cm_policy_remote *policy;
        const char *policy_url; /* for messages (no credentials in it) */
        bool policy_fail_open; /* remote unreachable: accept with a warning instead of 503 */
        struct cm_compliance_loop *compliance; /* periodic re-validation; NULL when off */
        struct cm_addons_reconciler *addons; /* add-on reconciler (addons/reconciler.h); NULL when off */

        /* Health monitoring (monitor/monitor.h) and webhook delivery (monitor/webhooks.h); NULL: off. */
        struct cm_monitor *monitor;
        struct cm_webhooks *webhooks;
        unsigned monitor_interval_sec; /* the default interval of environments without settings */
        unsigned monitor_threshold;
        unsigned monitor_cert_warning_days;
};

int cm_service_new(struct cm_store *store, const struct cm_service_config *cfg, struct cm_service **ret);
struct cm_service *cm_service_free(struct cm_service *s);
/* Starts the worker threads (cfg.workers of them). */
int cm_service_start(struct cm_service *s);
/* Graceful stop: no new claims; running steps finish within the grace period or release their lease. */
void cm_service_stop(struct cm_service *s);

/* Bootstrap on first start: the `default` environment. */
int cm_service_bootstrap(struct cm_service *s);

/*
 * Mutations. Each validates the body (problem set on failure: 4xx), then writes the cluster and its
 * operation in one transaction. ret_op receives the queued operation. Return 0, or a negative errno
 * with the problem set (404, 409 naming the operation, 412, 422), or a negative errno with no
 * problem for internal failures (500).
 */
int cm_service_create_cluster(struct cm_service *s, const char *principal, const char *env, const char *body,
                              size_t n, struct cm_problem *p, struct cm_operation *ret_op);
int cm_service_update_cluster(struct cm_service *s, const char *principal, const char *env, const char *name,
                              int64_t expected_rv, const char *body, size_t n, struct cm_problem *p,
                              struct cm_operation *ret_op);
int cm_service_delete_cluster(struct cm_service *s, const char *principal, const char *env, const char *name,
                              int64_t expected_rv, struct cm_problem *p, struct cm_operation *ret_op);
/*
 * An operation on a running cluster: CM_OP_SNAPSHOT (the cluster must be Ready; it stays Ready while
 * the snapshot is taken), CM_OP_RESTORE and CM_OP_ROTATE_CERTS (Ready or Failed; the cluster is
 * Updating meanwhile). body holds the parameters (cm_cluster_action_decode). 422 when the cluster's
 * engine does not support the operation, 409 for another phase or an unfinished operation.
 */
int cm_service_cluster_action(struct cm_service *s, const char *principal, const char *env, const char *name,
                              enum cm_op_type type, const char *body, size_t n, struct cm_problem *p,
                              struct cm_operation *ret_op);
/*
 * Compliance (lifecycle/compliance.c). Evaluates the desired cluster against the environment's
 * policies: built-in rules, or the remote policy service when one is configured. Returns 0 when
 * admitted, with the decision to record ({mode, deny: [], warn: [...]}, canonical JSON) in
 * *ret_decision_json (may be NULL). A denial is -EPERM with a 422 problem listing the violations (field
 * errors "[rule] message"); an unreachable policy service (failure mode closed) is -EHOSTUNREACH with a
 * 503 problem. operation: "create", "update" or "check".
 */
int cm_compliance_evaluate(struct cm_service *s, const char *operation, const char *principal,
                           const char *env, const char *cluster, const char *labels_json, const json_t *spec,
                           const char *engine, struct cm_problem *p, char **ret_decision_json);
/* Sets a cluster's PolicyCompliant condition from a decision; 1 when it changed, 0 when not. */
int cm_compliance_set_condition(struct cm_service *s, const struct cm_cluster *c, const char *decision_json);
/*
 * Evaluates every cluster of env ("check"), sets their PolicyCompliant condition, and (out non-NULL)
 * appends {"cluster","compliant","decision"} items (or {"cluster","compliant":null,"error"}) to out,
 * comma-separated. Counts clusters and violating ones.
 */
int cm_compliance_check_env(struct cm_service *s, const char *env, const char *principal, struct strbuf *out,
                            unsigned *ret_checked, unsigned *ret_violations);
/* Re-validates every cluster of every environment each interval (0: never) in a thread of its own. */
int cm_compliance_start(struct cm_service *s, uint64_t interval_usec);
void cm_compliance_stop(struct cm_service *s);
int cm_service_cancel_operation(struct cm_service *s, const char *id, struct cm_problem *p,
                                struct cm_operation *ret_op);

/* Asks this process's worker running operation id (if any) to stop it now. */
void cm_service_cancel_local(struct cm_service *s, const char *op_id);

/* Wakes idle workers (new work) / log followers (new log output or state). */
void cm_service_notify_work(struct cm_service *s);
void cm_service_notify_log(struct cm_service *s);
/* Current log sequence; waits until it moves past seen or timeout passes. */
uint64_t cm_service_log_seq(struct cm_service *s);
void cm_service_wait_log(struct cm_service *s, uint64_t seen, uint64_t timeout_usec);
