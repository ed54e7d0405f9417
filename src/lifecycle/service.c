/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "base/log.h"
#include "base/util.h"
#include "engine/engine.h"
#include "lifecycle/conditions.h"
#include "lifecycle/service.h"
#include "lifecycle/worker.h"

void cm_service_config_defaults(struct cm_service_config *c) {
        *c = (struct cm_service_config){
                .data_dir = "./data",
                .workers = 4,
                .lease_usec = 30 * USEC_PER_SEC,
                .max_attempts = 5,
                .backoff_base_usec = 2 * USEC_PER_SEC,
                .backoff_cap_usec = 300 * USEC_PER_SEC,
                .poll_usec = 1 * USEC_PER_SEC,
                .shutdown_grace_usec = 10 * USEC_PER_SEC,
                .state_retention_usec = 30 * 86400 * USEC_PER_SEC,
        };
}

int cm_service_new(struct cm_store *store, const struct cm_service_config *cfg, struct cm_service **ret) {
        struct cm_service *s;
        int r;

        s = new0(struct cm_service, 1);
        if (!s)
                return -ENOMEM;
        s->store = store;
        s->cfg = *cfg;
        r = cm_random_id("replica-", s->replica_id, sizeof(s->replica_id));
        if (r < 0) {
                free(s);
                return r;
        }
        pthread_mutex_init(&s->lock, NULL);
        {
                pthread_condattr_t ca;
                pthread_condattr_init(&ca);
                pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
                pthread_cond_init(&s->work_cond, &ca);
                pthread_cond_init(&s->log_cond, &ca);
                pthread_condattr_destroy(&ca);
        }
        *ret = s;
        return 0;
}

struct cm_service *cm_service_free(struct cm_service *s) {
        if (!s)
                return NULL;
        cm_service_stop(s);
        pthread_cond_destroy(&s->work_cond);
        pthread_cond_destroy(&s->log_cond);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return NULL;
}

int cm_service_start(struct cm_service *s) {
        /* With no workers, the heartbeat thread still runs the housekeeping (idempotency expiry). */
        return cm_workers_start(s, s->cfg.workers, &s->workers);
}

void cm_service_stop(struct cm_service *s) {
        cm_compliance_stop(s);
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_cond_broadcast(&s->work_cond);
        pthread_cond_broadcast(&s->log_cond);
        pthread_mutex_unlock(&s->lock);
        s->workers = cm_workers_stop(s->workers);
}

void cm_service_notify_work(struct cm_service *s) {
        pthread_mutex_lock(&s->lock);
        s->work_seq++;
        pthread_cond_broadcast(&s->work_cond);
        pthread_mutex_unlock(&s->lock);
}

void cm_service_cancel_local(struct cm_service *s, const char *op_id) {
        if (s->workers)
                cm_workers_cancel(s->workers, op_id);
}

void cm_service_notify_log(struct cm_service *s) {
        pthread_mutex_lock(&s->lock);
        s->log_seq++;
        pthread_cond_broadcast(&s->log_cond);
        pthread_mutex_unlock(&s->lock);
}

uint64_t cm_service_log_seq(struct cm_service *s) {
        uint64_t v;

        pthread_mutex_lock(&s->lock);
        v = s->log_seq;
        pthread_mutex_unlock(&s->lock);
        return v;
}

static void deadline_after(struct timespec *ts, uint64_t usec) {
        clock_gettime(CLOCK_MONOTONIC, ts);
        ts->tv_sec += (time_t) (usec / USEC_PER_SEC);
        ts->tv_nsec += (long) (usec % USEC_PER_SEC) * 1000;
        if (ts->tv_nsec >= 1000000000L) {
                ts->tv_sec++;
                ts->tv_nsec -= 1000000000L;
        }
}

void cm_service_wait_log(struct cm_service *s, uint64_t seen, uint64_t timeout_usec) {
        struct timespec ts;

        deadline_after(&ts, timeout_usec);
        pthread_mutex_lock(&s->lock);
        while (s->log_seq == seen && !s->stopping)
                if (pthread_cond_timedwait(&s->log_cond, &s->lock, &ts) == ETIMEDOUT)
                        break;
        pthread_mutex_unlock(&s->lock);
}

int cm_service_bootstrap(struct cm_service *s) {
        struct cm_environment e = { .name = CM_UNCONST(char *, "default"),
                                    .labels_json = CM_UNCONST(char *, "{}") };
        int r;

        e.created_usec = cm_now_usec();
        r = STORE_CALL(s->store, env_create, &e);
        if (r == -EEXIST)
                return 0;
        if (r < 0)
                return r;
        log_info("created environment 'default'");
        return 0;
}

static int op_init(struct cm_service *s, struct cm_operation *op, enum cm_op_type type, const char *env,
                   const char *cluster_id, const char *cluster_name, const char *principal, uint64_t now) {
        char id[40];
        int r;

        r = cm_random_id("op_", id, sizeof(id));
        if (r < 0)
                return r;
        *op = (struct cm_operation){
                .type = type,
                .state = CM_OP_PENDING,
                .max_attempts = s->cfg.max_attempts,
                .created_usec = now,
                .next_run_usec = now,
        };
        op->id = strdup(id);
        op->env = strdup(env);
        op->cluster_id = strdup(cluster_id);
        op->cluster_name = strdup(cluster_name);
        op->requested_by = strdup(principal ?: "unknown");
        if (!op->id || !op->env || !op->cluster_id || !op->cluster_name || !op->requested_by) {
                cm_operation_done(op);
                return -ENOMEM;
        }
        return 0;
}

static int env_must_exist(struct cm_service *s, const char *env, struct cm_problem *p) {
        struct cm_environment e = {};
        int r;

        r = STORE_CALL(s->store, env_get, env, &e);
        if (r == -ENOENT)
                return cm_problem_not_found(p, "environment", env), -ENOENT;
        if (r < 0)
                return r;
        cm_environment_done(&e);
        return 0;
}

int cm_service_create_cluster(struct cm_service *s, const char *principal, const char *env, const char *body,
                              size_t n, struct cm_problem *p, struct cm_operation *ret_op) {
        _cleanup_(cm_cluster_doc_done) struct cm_cluster_doc doc = {};
        _cleanup_(cm_operation_done) struct cm_operation op = {};
        _cleanup_free_ char *conditions = NULL, *decision = NULL;
        struct cm_cluster c = {};
        uint64_t now = cm_now_usec();
        char id[40];
        int r;

        r = env_must_exist(s, env, p);
        if (r < 0)
                return r;
        r = cm_cluster_doc_decode(body, n, CM_CLUSTER_DOC_CREATE, &doc, p);
        if (r < 0)
                return r;
        r = cm_compliance_evaluate(s, "create", principal, env, doc.name, doc.labels_json, doc.spec,
                                   doc.engine, p, &decision);
        if (r < 0)
                return r;
        r = cm_random_id("cl_", id, sizeof(id));
        if (r < 0)
                return r;
        conditions = cm_conditions_set(NULL, "Ready", "False", "Pending", "waiting for the create operation",
                                       now);
        if (!conditions)
                return -ENOMEM;
        c = (struct cm_cluster){
                .id = id,
                .env = CM_UNCONST(char *, env),
                .name = doc.name,
                .engine = doc.engine,
                .labels_json = doc.labels_json ?: CM_UNCONST(char *, "{}"),
                .spec_json = doc.spec_json,
                .generation = 1,
                .resource_version = 1,
                .phase = CM_PHASE_PENDING,
                .conditions_json = conditions,
                .status_json = CM_UNCONST(char *, "{}"),
                .created_usec = now,
                .updated_usec = now,
        };
        r = op_init(s, &op, CM_OP_CREATE, env, id, doc.name, principal, now);
        if (r < 0)
                return r;
        op.generation = 1;
        op.policy_json = TAKE_PTR(decision);
        r = STORE_CALL(s->store, cluster_create, &c, &op);
        if (r == -EEXIST)
                return cm_problem_set(p, 409, "conflict", "Conflict",
                                      "cluster '%s' already exists in environment '%s'", doc.name, env),
                       -EEXIST;
        if (r == -ENOENT)
                return cm_problem_not_found(p, "environment", env), -ENOENT;
        if (r < 0)
                return r;
        cm_service_notify_work(s);
        *ret_op = op;
        op = (struct cm_operation){};
        return 0;
}

static int conflict_problem(struct cm_problem *p, const char *name, const char *op_id) {
        cm_problem_set(p, 409, "operation-in-progress", "Conflict",
                       "cluster '%s' has an unfinished operation %s; wait for it or cancel it", name,
                       op_id ?: "(unknown)");
        if (op_id)
                (void) cm_strlcpy(p->operation, op_id, sizeof(p->operation));
        return -EBUSY;
}

/* The cluster a change is about: its environment and itself must exist (404 otherwise). */
static int load_cluster(struct cm_service *s, const char *env, const char *name, struct cm_problem *p,
                        struct cm_cluster *ret) {
        int r;

        r = env_must_exist(s, env, p);
        if (r < 0)
                return r;
        r = STORE_CALL(s->store, cluster_get, env, name, ret);
        if (r == -ENOENT)
                return cm_problem_not_found(p, "cluster", name), -ENOENT;
        return r;
}

/* The problem for a refused cluster_update: gone (404), stale If-Match (412), busy (409). */
static int change_problem(int r, struct cm_problem *p, const char *name, int64_t expected_rv,
                          const char *conflict) {
        switch (r) {
        case -ENOENT:
                cm_problem_not_found(p, "cluster", name);
                return r;
        case -ESTALE:
                cm_problem_set(p, 412, "precondition-failed", "Precondition failed",
                               "cluster '%s' changed since resourceVersion %" PRIi64
                               "; read it again and retry",
                               name, expected_rv);
                return r;
        case -EBUSY:
                return conflict_problem(p, name, conflict);
        default:
                return r;
        }
}

int cm_service_update_cluster(struct cm_service *s, const char *principal, const char *env, const char *name,
                              int64_t expected_rv, const char *body, size_t n, struct cm_problem *p,
                              struct cm_operation *ret_op) {
        _cleanup_(cm_cluster_doc_done) struct cm_cluster_doc doc = {};
        _cleanup_(cm_cluster_done) struct cm_cluster cur = {};
        _cleanup_(cm_operation_done) struct cm_operation op = {};
        _cleanup_free_ char *conflict = NULL, *decision = NULL;
        uint64_t now = cm_now_usec();
        int r;

        r = load_cluster(s, env, name, p, &cur);
        if (r < 0)
                return r;
        r = cm_cluster_doc_decode(body, n, CM_CLUSTER_DOC_UPDATE, &doc, p);
        if (r < 0)
                return r;
        if (doc.name && !streq(doc.name, name)) {
                cm_problem_add(p, "name", "must be '%s' (the cluster being changed) or absent", name);
                return cm_problem_validation(p, "the name in the body does not match the URL");
        }
        if (!streq(doc.engine, cur.engine)) {
                cm_problem_add(p, "spec.engine",
                               "cannot change from '%s' to '%s'; create a new cluster instead", cur.engine,
                               doc.engine);
                return cm_problem_validation(p, "the engine of a cluster cannot change");
        }
        r = cm_compliance_evaluate(s, "update", principal, env, name, doc.labels_json ?: cur.labels_json,
                                   doc.spec, doc.engine, p, &decision);
        if (r < 0)
                return r;
        r = op_init(s, &op, CM_OP_UPDATE, env, cur.id, name, principal, now);
        if (r < 0)
                return r;
        op.policy_json = TAKE_PTR(decision);
        r = STORE_CALL(s->store, cluster_update, env, name, expected_rv, doc.spec_json, doc.labels_json,
                       CM_PHASE_UPDATING, &op, NULL, &conflict);
        if (r < 0)
                return change_problem(r, p, name, expected_rv, conflict);
        cm_service_notify_work(s);
        /* The answer shows the operation as stored (with the generation the store assigned). */
        r = STORE_CALL(s->store, op_get, op.id, ret_op);
        return r;
}

int cm_service_delete_cluster(struct cm_service *s, const char *principal, const char *env, const char *name,
                              int64_t expected_rv, struct cm_problem *p, struct cm_operation *ret_op) {
        _cleanup_(cm_cluster_done) struct cm_cluster cur = {};
        _cleanup_(cm_operation_done) struct cm_operation op = {};
        _cleanup_free_ char *conflict = NULL;
        uint64_t now = cm_now_usec();
        int r;

        r = load_cluster(s, env, name, p, &cur);
        if (r < 0)
                return r;
        r = op_init(s, &op, CM_OP_DELETE, env, cur.id, name, principal, now);
        if (r < 0)
                return r;
        r = STORE_CALL(s->store, cluster_update, env, name, expected_rv, NULL, NULL, CM_PHASE_DELETING, &op,
                       NULL, &conflict);
        if (r < 0)
                return change_problem(r, p, name, expected_rv, conflict);
        cm_service_notify_work(s);
        return STORE_CALL(s->store, op_get, op.id, ret_op);
}

int cm_service_cluster_action(struct cm_service *s, const char *principal, const char *env, const char *name,
                              enum cm_op_type type, const char *body, size_t n, struct cm_problem *p,
                              struct cm_operation *ret_op) {
        const char *what = cm_op_type_to_string(type);
        const struct cm_engine_ops *eng;
        _cleanup_free_ char *params = NULL;
        int r;

        if (type != CM_OP_SNAPSHOT && type != CM_OP_RESTORE && type != CM_OP_ROTATE_CERTS)
                return -EINVAL;
        /* The phase is read, checked, and kept unless the cluster changed in between (then again). */
        for (unsigned attempt = 0;; attempt++) {
                _cleanup_(cm_cluster_done) struct cm_cluster cur = {};
                _cleanup_(cm_operation_done) struct cm_operation op = {};
                _cleanup_free_ char *conflict = NULL;
                uint64_t now = cm_now_usec();
                enum cm_phase phase;

                r = load_cluster(s, env, name, p, &cur);
                if (r < 0)
                        return r;
                eng = cm_engine_find(cur.engine);
                if (!eng || !cm_engine_step(eng, type)) {
                        cm_problem_add(p, "spec.engine", "engine '%s' does not support %s", cur.engine,
                                       what);
                        return cm_problem_validation(p, "this cluster's engine cannot do that"), -EOPNOTSUPP;
                }
                if (!params) {
                        r = cm_cluster_action_decode(type, name, body, n, now, &params, p);
                        if (r < 0)
                                return r;
                }
                if (cur.phase != CM_PHASE_READY &&
                    (type == CM_OP_SNAPSHOT || cur.phase != CM_PHASE_FAILED)) {
                        struct cm_operation *last = NULL;
                        size_t nlast = 0;

                        /* An unfinished operation explains the phase best: name it (409 as for changes). */
                        if (STORE_CALL(s->store, op_list, env, name, 0, 1, &last, &nlast) >= 0 &&
                            nlast == 1 && !cm_op_state_terminal(last[0].state)) {
                                r = conflict_problem(p, name, last[0].id);
                                cm_operation_array_free(last, nlast);
                                return r;
                        }
                        cm_operation_array_free(last, nlast);
                        return cm_problem_set(p, 409, "cluster-not-ready", "Conflict",
                                              "cluster '%s' is %s; %s needs a %s cluster", name,
                                              cm_phase_to_string(cur.phase), what,
                                              type == CM_OP_SNAPSHOT ? "Ready" : "Ready or Failed"),
                               -EBUSY;
                }
                r = op_init(s, &op, type, env, cur.id, name, principal, now);
                if (r < 0)
                        return r;
                op.params_json = TAKE_PTR(params);
                phase = type == CM_OP_SNAPSHOT ? cur.phase : CM_PHASE_UPDATING;
                r = STORE_CALL(s->store, cluster_update, env, name, cur.resource_version, NULL, NULL, phase,
                               &op, NULL, &conflict);
                params = TAKE_PTR(op.params_json);
                if (r == -ESTALE && attempt < 3)
                        continue;
                if (r < 0)
                        return change_problem(r, p, name, cur.resource_version, conflict);
                cm_service_notify_work(s);
                return STORE_CALL(s->store, op_get, op.id, ret_op);
        }
}

/*
 * A pending operation cancelled before any worker took it: the cluster's status says so. Nothing ran,
 * so the cluster is as its Ready condition says: Ready when it was (a change of a running cluster),
 * Failed when it was not (a create, or a change of a Failed cluster).
 */
static void settle_cancelled(struct cm_service *s, const char *op_id) {
        _cleanup_(cm_operation_done) struct cm_operation op = {};
        _cleanup_(cm_cluster_done) struct cm_cluster c = {};
        _cleanup_free_ char *c1 = NULL, *c2 = NULL;
        uint64_t now = cm_now_usec();
        bool ready;

        if (STORE_CALL(s->store, op_get, op_id, &op) < 0 ||
            STORE_CALL(s->store, cluster_get_by_id, op.cluster_id, &c) < 0)
                return;
        ready = cm_conditions_is_true(c.conditions_json, "Ready");
        c1 = cm_conditions_set(c.conditions_json, "Ready", ready ? "True" : "False", "OperationCancelled",
                               "the operation was cancelled before it started", now);
        if (c1)
                c2 = cm_conditions_set(c1, "Reconciling", "False", "OperationCancelled",
                                       "the operation was cancelled before it started", now);
        if (c2)
                (void) STORE_CALL(s->store, cluster_set_status, c.id,
                                  ready ? CM_PHASE_READY : CM_PHASE_FAILED, c2, NULL);
}

int cm_service_cancel_operation(struct cm_service *s, const char *id, struct cm_problem *p,
                                struct cm_operation *ret_op) {
        enum cm_op_state st;
        int r;

        r = STORE_CALL(s->store, op_cancel, id, cm_now_usec(), &st);
        if (r == -ENOENT)
                return cm_problem_not_found(p, "operation", id), -ENOENT;
        if (r == -EALREADY)
                return cm_problem_set(p, 409, "operation-finished", "Conflict",
                                      "operation %s has already finished", id),
                       -EALREADY;
        if (r < 0)
                return r;
        if (st == CM_OP_CANCELLED)
                settle_cancelled(s, id);
        else
                cm_service_cancel_local(s, id);
        cm_service_notify_log(s);
        return STORE_CALL(s->store, op_get, id, ret_op);
}
