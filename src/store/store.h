/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "api/model.h"
#include "base/common.h"
#include "base/strbuf.h"

/*
 * The metadata store: environments, clusters, operations and their logs, API keys, idempotency
 * records, events, webhooks, add-ons. A backend is a const vtable (struct cm_store_ops) registered by
 * URL scheme; the concrete store embeds struct cm_store first. Callers use STORE_CALL() (below).
 *
 * Contracts every backend keeps (tests/unit/test_store_conformance.c checks them):
 * - Every function is safe to call from any thread at the same time (backends keep one connection
 *   per thread or a pool).
 * - Out-parameters are written only on success; records returned are owned by the caller
 *   (cm_*_done / cm_*_array_free).
 * - Errors are negative errno: -ENOENT no such record, -EEXIST name taken, -ESTALE expected
 *   resource version does not match, -EBUSY another operation of the cluster is not finished
 *   (ret_conflict_op names it) or an add-on is in use, -EAGAIN nothing to claim, -ESRCH lease lost,
 *   -ENOTEMPTY environment still has clusters, -EIO/-ENOMEM for backend failures (also -ETIMEDOUT
 *   database locked for too long, -EPROTO schema not migrated, -EBADMSG corrupt or not a database,
 *   -ENOSPC, -EROFS).
 * - Every mutation of a cluster together with the operation that carries it is one transaction: a
 *   crash leaves both or neither.
 * - At most one unfinished (pending or running) operation per cluster, enforced by the backend.
 * - Times are wall-clock microseconds since the epoch, passed in by the caller (tests control them).
 */

struct cm_store;

struct cm_op_stats {
        /* count of operations by [type][state] */
        uint64_t count[_CM_OP_TYPE_MAX][_CM_OP_STATE_MAX];
        /* pending operations whose next run time has come (the queue depth) */
        uint64_t queue_depth;
};

/* What a worker writes when an operation reaches an end (or retries). */
struct cm_op_outcome {
        enum cm_op_state state; /* SUCCEEDED, FAILED, CANCELLED, or PENDING for a retry */
        const char *error; /* NULL on success; already redacted */
        uint64_t next_run_usec; /* for a retry */
        /* cluster status written in the same transaction */
        enum cm_phase phase;
        const char *conditions_json; /* NULL: leave as is */
        const char *status_json; /* NULL: leave as is */
        const char *result_json; /* the operation's result (JSON object); NULL: leave as is */
        bool set_observed_generation; /* observed_generation := operation generation */
        bool delete_cluster; /* the cluster record is removed (delete succeeded) */
        /* Operation log output not yet stored, appended as one chunk in the same transaction. */
        const char *log_text;
        size_t log_len;
};

/* What a reconciler writes when it is done with an add-on installation it holds (install_finish). */
struct cm_install_outcome {
        int64_t generation_seen; /* the generation of the installation it worked on */
        const char *status_json; /* JSON object; NULL: leave as is */
        const char *inventory_json; /* JSON array of objects (addons/apply.h, "inventory"); NULL: leave */
        const char *applied_key; /* what is now applied (a digest); NULL: leave as is */
        uint64_t next_check_usec; /* when to look again (the drift interval) */
};

/* The result of an idempotency lookup. */
enum cm_idem_state {
        CM_IDEM_NEW, /* placeholder inserted: handle the request, then idem_finish/idem_abort */
        CM_IDEM_DONE, /* a stored response: return it again */
        CM_IDEM_BUSY, /* the first request with this key is still being handled */
        CM_IDEM_MISMATCH, /* the key was used with another request */
};

struct cm_store_ops {
        const char *name; /* "sqlite" */
        const char *scheme; /* URL scheme handled: "sqlite" for sqlite:///path or a plain path */

        int (*open)(const char *url, struct cm_store **ret);
        void (*close)(struct cm_store *s);
        /*
         * Applies the compiled-in migrations not yet applied; idempotent; safe with replicas.
         * Returns the number applied (0 when the schema was up to date).
         */
        int (*migrate)(struct cm_store *s);
        /* 0 when reachable and fully migrated. */
        int (*ping)(struct cm_store *s);

        int (*env_create)(struct cm_store *s, const struct cm_environment *e);
        int (*env_get)(struct cm_store *s, const char *name, struct cm_environment *ret);
        /* Environments ordered by name, names > after (NULL: from the start), at most limit. */
        int (*env_list)(struct cm_store *s, const char *after, unsigned limit, struct cm_environment **ret,
                        size_t *ret_n);
        /* -ENOTEMPTY when clusters (not deleted) remain in it. */
        int (*env_delete)(struct cm_store *s, const char *name);

        /*
         * An environment's policy settings (canonical JSON; *ret_settings NULL and version 0 when none
         * were stored) and their version (1 on the first put, +1 on each). put replaces them; expected
         * < 0 skips the version check, else -ESTALE when it differs (0: only when none are stored).
         * -ENOENT when the environment does not exist. Deleting the environment removes them.
         */
        int (*env_policy_get)(struct cm_store *s, const char *env, char **ret_settings,
                              int64_t *ret_version);
        int (*env_policy_put)(struct cm_store *s, const char *env, const char *settings,
                              int64_t expected_version, uint64_t now, int64_t *ret_version);

        /* An API key with its role bindings, in one transaction (-EEXIST: a binding is taken). */
        int (*apikey_create)(struct cm_store *s, const struct cm_apikey *k, const struct cm_rolebinding *b,
                             size_t nb);
        int (*apikey_get_by_hash)(struct cm_store *s, const char *hash, struct cm_apikey *ret);
        int (*apikey_count)(struct cm_store *s, uint64_t *ret);
        /* Every key (revoked ones too), oldest first. */
        int (*apikey_list)(struct cm_store *s, struct cm_apikey **ret, size_t *ret_n);
        /* Marks a key revoked (kept for the record); -ENOENT when unknown. */
        int (*apikey_revoke)(struct cm_store *s, const char *id);
        /* Moves last_used forward to now (never back). */
        int (*apikey_touch)(struct cm_store *s, const char *id, uint64_t now);

        /* -EEXIST when the subject already has a binding in that environment. */
        int (*rolebinding_create)(struct cm_store *s, const struct cm_rolebinding *b);
        /* env NULL: every binding; else the environment's and the global ("*") ones. */
        int (*rolebinding_list)(struct cm_store *s, const char *env, struct cm_rolebinding **ret,
                                size_t *ret_n);
        int (*rolebinding_delete)(struct cm_store *s, const char *id);

        /*
         * Appends a record to the audit chain (its own transaction); on success a->seq and a->hash are
         * set. A record staged with cm_store_audit_stage() is instead appended by the next write of the
         * staging thread, in that write's transaction.
         */
        int (*audit_append)(struct cm_store *s, struct cm_audit_record *a);
        /* Records with seq > after, in order, at most limit. */
        int (*audit_list)(struct cm_store *s, int64_t after, unsigned limit, struct cm_audit_record **ret,
                          size_t *ret_n);

        /*
         * Settings of an environment by kind ("monitoring"): like env_policy_get/put, for settings
         * documents that are not policies.
         */
        int (*env_settings_get)(struct cm_store *s, const char *env, const char *kind, char **ret_settings,
                                int64_t *ret_version);
        int (*env_settings_put)(struct cm_store *s, const char *env, const char *kind, const char *settings,
                                int64_t expected_version, uint64_t now, int64_t *ret_version);

        /*
         * Events, oldest first, with seq > after, of one environment (NULL: all) and one cluster name
         * (NULL: all), at most limit. Events are written by the store itself with the change they
         * describe (a phase change, a condition transition, an operation starting or ending).
         */
        int (*event_list)(struct cm_store *s, const char *env, const char *cluster, int64_t after,
                          unsigned limit, struct cm_event **ret, size_t *ret_n);
        /*
         * Condition transitions (ConditionChanged events) of one cluster id, newest first, with
         * seq < before (0: from the newest) and time >= since_usec, of one condition type (NULL: all),
         * at most limit.
         */
        int (*event_history)(struct cm_store *s, const char *cluster_id, const char *condition,
                             int64_t before, uint64_t since_usec, unsigned limit, struct cm_event **ret,
                             size_t *ret_n);
        /* The newest event's seq (0 when there is none). */
        int (*event_last)(struct cm_store *s, int64_t *ret);
        /* Deletes events older than before_usec. */
        int (*event_prune)(struct cm_store *s, uint64_t before_usec);

        /*
         * Webhooks. create sets the cursor to the newest event (a new webhook gets what happens from
         * then on); -EEXIST when the name is taken, -ENOENT when the environment does not exist.
         * list: of one environment, or all (env NULL), by environment and name.
         */
        int (*webhook_create)(struct cm_store *s, const struct cm_webhook *w, int64_t *ret_cursor);
        int (*webhook_get)(struct cm_store *s, const char *env, const char *name, struct cm_webhook *ret);
        int (*webhook_list)(struct cm_store *s, const char *env, struct cm_webhook **ret, size_t *ret_n);
        int (*webhook_delete)(struct cm_store *s, const char *env, const char *name);
        /*
         * Records a delivery attempt (d may be NULL) and, when cursor >= 0, moves the webhook's
         * cursor there, in one transaction. -ENOENT when the webhook is gone.
         */
        int (*webhook_record)(struct cm_store *s, const char *webhook_id, int64_t cursor,
                              const struct cm_webhook_delivery *d);
        /* Delivery attempts of one webhook, newest first, at most limit. */
        int (*webhook_deliveries)(struct cm_store *s, const char *webhook_id, unsigned limit,
                                  struct cm_webhook_delivery **ret, size_t *ret_n);

        /*
         * Add-on definitions of an environment (docs/internals/store.md, "Add-ons").
         *
         * addon_put creates or replaces a->env/a->name with a's kind, version, baseline and doc_json
         * (a->resource_version and the times are not read: created and updated are now; resource
         * version 1 on create, +1 on each change). expected_version: < 0 any, 0 only when it does not
         * exist (-EEXIST otherwise), n only when its resource version is n (-ESTALE otherwise, also
         * when it does not exist). -ENOENT when the environment does not exist; -EINVAL when doc_json
         * is not JSON or the kind is unknown. A put that changes nothing writes nothing and gives the
         * current version. A change makes every installation of the definition in the environment due
         * now, in the same transaction. *ret_version (if not NULL): the resource version after the put.
         */
        int (*addon_put)(struct cm_store *s, const struct cm_addon *a, int64_t expected_version,
                         uint64_t now, int64_t *ret_version);
        int (*addon_get)(struct cm_store *s, const char *env, const char *name, struct cm_addon *ret);
        /* The definitions of env (only the baseline ones when baseline_only) by name; none: n = 0. */
        int (*addon_list)(struct cm_store *s, const char *env, bool baseline_only, struct cm_addon **ret,
                          size_t *ret_n);
        /*
         * Checks in this order: -ENOENT, -ESTALE (expected_version >= 0 and not the resource version),
         * -EBUSY (installations of it exist on clusters of env, uninstalling ones too).
         */
        int (*addon_delete)(struct cm_store *s, const char *env, const char *name, int64_t expected_version);

        /*
         * Installations of add-ons on clusters; a reconciler claims the due ones with a lease.
         * The reconciler's status_json may carry members that the store turns into events, in the
         * transaction of the write: "phase" (AddonPhaseChanged when it changes to a value, with
         * "reason" and "message"), "corrections" (an integer; AddonDriftCorrected when it grows, with
         * "lastCorrection": {"objects": [...]}). Removing an uninstalled installation is
         * AddonUninstalled; deleting the cluster removes its installations without events.
         *
         * install_put creates the installation of the add-on named addon on the cluster (generation
         * 1, status {}, inventory [], due now) or changes its values (generation+1, due now);
         * values_json must be a JSON object (-EINVAL). Values equal to the stored text change nothing
         * and give the current version. expected_version as in addon_put. -ENOENT when the cluster
         * or the add-on (in the cluster's environment) does not exist, -EBUSY when its uninstall
         * was requested (it is being removed).
         */
        int (*install_put)(struct cm_store *s, const char *cluster_id, const char *addon,
                           const char *values_json, int64_t expected_version, uint64_t now,
                           int64_t *ret_version);
        int (*install_get)(struct cm_store *s, const char *cluster_id, const char *addon,
                           struct cm_addon_install *ret);
        /* The installations of one cluster by add-on name (none: n = 0, also for no such cluster). */
        int (*install_list)(struct cm_store *s, const char *cluster_id, struct cm_addon_install **ret,
                            size_t *ret_n);
        /*
         * Sets uninstall (generation+1, due now); the reconciler removes the add-on's objects and then
         * the installation (install_remove). Asking again changes nothing. -ENOENT when unknown.
         */
        int (*install_request_uninstall)(struct cm_store *s, const char *cluster_id, const char *addon,
                                         uint64_t now);
        /*
         * Claims at most limit due installations (next_check <= now, earliest first) that no lease
         * holds (none, or one that ended before now) for owner until now + lease_usec, in one
         * transaction, and returns them with their lease set. -EAGAIN when none is due. A lease
         * that ends is taken over by the next claim: the installation is still due.
         */
        int (*install_claim)(struct cm_store *s, const char *owner, uint64_t now, uint64_t lease_usec,
                             unsigned limit, struct cm_addon_install **ret, size_t *ret_n);
        /*
         * Writes what the holder did and releases the lease, in one transaction; -ESRCH when owner
         * does not hold the lease (nothing is written). next_check becomes o->next_check_usec, unless
         * the installation changed while it was held (a generation other than o->generation_seen, or a
         * new version of the definition): then it stays due (at the latest now). resource_version+1
         * only when status, inventory or applied_key changed. A status that is not a JSON object or an
         * inventory that is not a JSON array is -EINVAL (nothing is written; the lease stays).
         */
        int (*install_finish)(struct cm_store *s, const char *cluster_id, const char *addon,
                              const char *owner, const struct cm_install_outcome *o, uint64_t now);
        /*
         * Deletes an installation whose uninstall was requested, by the holder of its lease once the
         * objects are gone (AddonUninstalled). -ESRCH when owner does not hold the lease (or it is
         * gone already), -EINVAL when no uninstall was requested.
         */
        int (*install_remove)(struct cm_store *s, const char *cluster_id, const char *addon,
                              const char *owner);
        /*
         * Makes an installation due now (next_check = min(next_check, now)): the reconciler looks at
         * it (a drift check) at its next claim. Nothing a reader sees changes: no new resource
         * version, no event. A reconciler that holds it when this is called still sets next_check as
         * it decides when it finishes. -ENOENT when unknown (an uninstalling one is still known).
         */
        int (*install_schedule)(struct cm_store *s, const char *cluster_id, const char *addon, uint64_t now);

        /*
         * The monitor's write: merges conditions_json (a JSON array of conditions; NULL: none) into
         * the cluster's conditions (a condition keeps its lastTransitionTime unless its status
         * changes) and replaces status.health with health_json (NULL keeps it), in one transaction;
         * resource_version+1 only when something changed. -ENOENT when the cluster is gone.
         */
        int (*cluster_set_health)(struct cm_store *s, const char *cluster_id, const char *conditions_json,
                                  const char *health_json, uint64_t now);

        int (*cluster_get)(struct cm_store *s, const char *env, const char *name, struct cm_cluster *ret);
        int (*cluster_get_by_id)(struct cm_store *s, const char *id, struct cm_cluster *ret);
        /* Clusters of env ordered by name, names > after, at most limit. */
        int (*cluster_list)(struct cm_store *s, const char *env, const char *after, unsigned limit,
                            struct cm_cluster **ret, size_t *ret_n);
        /*
         * The same page without copies: fn is called for each cluster with a record whose strings
         * point into the backend's row memory, valid only during the call. fn must not call the
         * store; a negative return from fn stops the walk and is returned.
         */
        int (*cluster_list_each)(struct cm_store *s, const char *env, const char *after, unsigned limit,
                                 int (*fn)(const struct cm_cluster *c, void *userdata), void *userdata);
        int (*cluster_count)(struct cm_store *s, const char *env, uint64_t *ret);
        /*
         * A number that changes whenever any cluster of env is created, changed (spec or status) or
         * removed, in the same transaction as that write: a page of clusters read after reading it
         * is at least as new as it. -ENOENT when env does not exist.
         */
        int (*env_clusters_version)(struct cm_store *s, const char *env, int64_t *ret);
        /*
         * Optional (NULL for backends that replicas share): a count of the writes committed through
         * this process, for a backend that guarantees this process is the database's only writer
         * (SQLite locks the file for one process). It moves after every committed write, before the
         * write's caller returns, so a value read before reading data never labels older data.
         */
        int (*change_counter)(struct cm_store *s, uint64_t *ret);
        /*
         * Inserts the cluster (generation 1, resource_version 1) and its create operation in one
         * transaction. -EEXIST when the name is taken in env, -ENOENT when env does not exist.
         */
        int (*cluster_create)(struct cm_store *s, const struct cm_cluster *c, const struct cm_operation *op);
        /*
         * Replaces spec and labels (generation+1, resource_version+1), sets the phase, and inserts op
         * (whose generation is set to the new generation) in one transaction. expected_rv < 0 skips
         * the check. On -EBUSY, ret_conflict_op (if not NULL) receives the unfinished operation's id.
         * On success ret (if not NULL) receives the updated cluster.
         * spec_json NULL keeps the spec without a generation bump and op.generation is the current
         * generation (a delete); labels_json NULL keeps the labels. op is always inserted pending;
         * its env, cluster id and name are taken from the cluster. Checks in this order: -ENOENT,
         * -ESTALE, -EBUSY.
         */
        int (*cluster_update)(struct cm_store *s, const char *env, const char *name, int64_t expected_rv,
                              const char *spec_json, const char *labels_json, enum cm_phase phase,
                              const struct cm_operation *op, struct cm_cluster *ret, char **ret_conflict_op);
        /* Writes observed status (phase, conditions, status; NULL keeps one), resource_version+1. */
        int (*cluster_set_status)(struct cm_store *s, const char *cluster_id, enum cm_phase phase,
                                  const char *conditions_json, const char *status_json);

        int (*op_get)(struct cm_store *s, const char *id, struct cm_operation *ret);
        /* Operations of one cluster, newest first, seq < before (0: from the newest), at most limit. */
        int (*op_list)(struct cm_store *s, const char *env, const char *cluster_name, int64_t before,
                       unsigned limit, struct cm_operation **ret, size_t *ret_n);
        /*
         * Claims the oldest runnable operation: pending with next_run <= now, or running with an
         * expired lease (taken over). Sets state running, lease owner/expiry, attempts+1, started
         * (first time). -EAGAIN when none. "Oldest" is the earliest due time (next_run, or
         * lease_expires for a takeover), ties by seq. max_attempts is not checked here: the worker
         * fails an operation whose attempts exceed it.
         */
        int (*op_claim)(struct cm_store *s, const char *owner, uint64_t now, uint64_t lease_usec,
                        struct cm_operation *ret);
        /* Extends the lease; -ESRCH when owner no longer holds it. Reports cancel requests. */
        int (*op_heartbeat)(struct cm_store *s, const char *id, const char *owner, uint64_t lease_until,
                            bool *ret_cancel_requested);
        /*
         * Ends (or re-queues, state PENDING) an operation held by owner and writes the cluster's status
         * in one transaction. -ESRCH when owner no longer holds the lease (nothing is written).
         * A terminal state sets finished = now; PENDING sets next_run and keeps attempts; both clear
         * the lease and store o->error. -EINVAL for state RUNNING.
         */
        int (*op_finish)(struct cm_store *s, const char *id, const char *owner, uint64_t now,
                         const struct cm_op_outcome *o);
        /* Gives a lease back (shutdown): state pending, runnable at once, attempts-1. */
        int (*op_release)(struct cm_store *s, const char *id, const char *owner);
        /*
         * Cancels: a pending operation becomes cancelled at once (ret_state CANCELLED); a running
         * one gets cancel_requested (ret_state RUNNING); a finished one gives -EALREADY.
         */
        int (*op_cancel)(struct cm_store *s, const char *id, uint64_t now, enum cm_op_state *ret_state);
        int (*op_stats)(struct cm_store *s, uint64_t now, struct cm_op_stats *ret);

        /* Appends one chunk (a line or several) to the operation's log. */
        int (*op_log_append)(struct cm_store *s, const char *op_id, uint64_t now, const char *text,
                             size_t n);
        /*
         * Appends the log chunks with sequence > after to out (up to out's cap; stops before a chunk
         * that does not fit) and sets *ret_last to the last sequence appended (after when none).
         * Returns the number of chunks appended; -ENOBUFS when not even the first one fits (out is
         * left as it was); -ENOENT for an unknown operation.
         */
        int (*op_log_read)(struct cm_store *s, const char *op_id, int64_t after, struct strbuf *out,
                           int64_t *ret_last);

        /*
         * Idempotency records, scoped to principal and key. begin inserts a placeholder tied to
         * request_hash (CM_IDEM_NEW), or reports a stored response (ret_status/ret_body, CM_IDEM_DONE),
         * one in progress or one for another request. ret_status/ret_body are written only for
         * CM_IDEM_DONE. finish stores the response of a placeholder (-ENOENT when there is none);
         * abort removes a placeholder (never a stored response; -ENOENT when there is none).
         */
        int (*idem_begin)(struct cm_store *s, const char *principal, const char *key,
                          const char *request_hash, uint64_t now, enum cm_idem_state *ret_state,
                          int *ret_status, char **ret_body);
        int (*idem_finish)(struct cm_store *s, const char *principal, const char *key, int status,
                           const char *body);
        int (*idem_abort)(struct cm_store *s, const char *principal, const char *key);
        /* Removes records created before `before`; returns how many. */
        int (*idem_expire)(struct cm_store *s, uint64_t before);
};

struct cm_store {
        const struct cm_store_ops *ops;
};

/*
 * Audit records written with the change they record. The calling thread stages a record (NULL
 * unstages; the previous one is returned); the next successful write of this thread through any
 * store appends it in the same transaction, then it counts as committed (seq and hash set) and is not
 * appended again. Writes that fail leave it staged.
 */
struct cm_audit_record *cm_store_audit_stage(struct cm_audit_record *a);
struct cm_audit_record *cm_store_audit_staged(void);
void cm_store_audit_committed(struct cm_audit_record *a, int64_t seq, const char *hash);

/* Opens the store for url: "sqlite:///abs/path.db", "sqlite:rel/path.db" or a plain file path. */
int cm_store_open(const char *url, struct cm_store **ret);
struct cm_store *cm_store_close(struct cm_store *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct cm_store *, cm_store_close);

extern const struct cm_store_ops cm_store_sqlite_ops;

/* Calls a backend function: STORE_CALL(s, cluster_get, env, name, &c). */
#define STORE_CALL(s, fn, ...) ((s)->ops->fn((s), ##__VA_ARGS__))
