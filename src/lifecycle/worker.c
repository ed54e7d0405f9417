/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <pthread.h>
#include <stdatomic.h>

#include "addons/addons.h"
#include "base/log.h"
#include "base/secret.h"
#include "base/spawn.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "engine/engine.h"
#include "lifecycle/conditions.h"
#include "lifecycle/service.h"
#include "lifecycle/statefiles.h"
#include "lifecycle/worker.h"
#include "monitor/monitor.h"
#include "monitor/webhooks.h"
#include "vault/vault.h"

struct worker_slot {
        pthread_t thread;
        bool thread_started;
        struct cm_workers *w;
        unsigned index;
        char owner[80];

        /* The operation this worker runs ("" when idle); guarded by w->lock. */
        char op_id[48];
        atomic_bool cancel; /* the user cancelled it */
        atomic_bool stop; /* the service is stopping past its grace period */
        atomic_bool lease_lost; /* another worker holds it now */

        /*
         * Operation log output is buffered and stored in batches: by the heartbeat thread a few times a
         * second, and with the outcome in the operation's final transaction. flush_lock orders the
         * batches; log_lock guards the buffer.
         */
        pthread_mutex_t log_lock;
        pthread_mutex_t flush_lock;
        struct strbuf logbuf;
};

struct cm_workers {
        struct cm_service *svc;
        unsigned n;
        struct worker_slot *slots;
        pthread_t heartbeat;
        bool heartbeat_started;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        atomic_bool stopping; /* no new claims */
        atomic_bool hb_stopping; /* heartbeat thread ends */
};

struct cm_engine_ctx {
        struct cm_service *svc;
        struct worker_slot *slot;
        const struct cm_cluster *cluster;
        const struct cm_operation *op;
        const json_t *spec;
        const json_t *params;
};

uint64_t cm_backoff_usec(uint64_t base, uint64_t cap, unsigned attempt) {
        uint64_t d = base;

        for (unsigned i = 1; i < attempt && d < cap; i++)
                d = d > UINT64_MAX / 2 ? cap : d * 2;
        return MIN(d, cap);
}

const struct cm_cluster *cm_engine_ctx_cluster(struct cm_engine_ctx *ctx) {
        return ctx->cluster;
}

const struct cm_operation *cm_engine_ctx_operation(struct cm_engine_ctx *ctx) {
        return ctx->op;
}

const json_t *cm_engine_ctx_spec(struct cm_engine_ctx *ctx) {
        return ctx->spec;
}

const json_t *cm_engine_ctx_params(struct cm_engine_ctx *ctx) {
        return ctx->params;
}

const char *cm_engine_ctx_data_dir(struct cm_engine_ctx *ctx) {
        return ctx->svc->cfg.data_dir;
}

bool cm_engine_ctx_cancelled(struct cm_engine_ctx *ctx) {
        return atomic_load(&ctx->slot->cancel) || atomic_load(&ctx->slot->stop) ||
               atomic_load(&ctx->slot->lease_lost);
}

#define LOG_BUFFER_MAX (256 * 1024)

/* Stores the buffered output now (flush_lock held by the caller). */
static void slot_flush_locked(struct worker_slot *slot, const char *op_id) {
        struct cm_service *svc = slot->w->svc;
        _cleanup_free_ char *text = NULL;
        size_t n = 0;
        int r;

        pthread_mutex_lock(&slot->log_lock);
        if (slot->logbuf.len > 0)
                text = strbuf_detach(&slot->logbuf, &n);
        pthread_mutex_unlock(&slot->log_lock);
        if (!text || n == 0)
                return;
        r = STORE_CALL(svc->store, op_log_append, op_id, cm_now_usec(), text, n);
        if (r < 0)
                log_warning_errno(r, "append to the log of operation %s: %m", op_id);
        cm_service_notify_log(svc);
}

static void slot_flush(struct worker_slot *slot, const char *op_id) {
        pthread_mutex_lock(&slot->flush_lock);
        slot_flush_locked(slot, op_id);
        pthread_mutex_unlock(&slot->flush_lock);
}

/* Adds one timestamped line to the operation's log buffer. */
static void op_log(struct worker_slot *slot, const char *op_id, const char *text, size_t n) {
        char ts[40], line[4097];
        bool full;
        int r;

        /* the one redaction step, on a copy (engines' lines are redacted once more here) */
        n = MIN(n, sizeof(line) - 1);
        memcpy(line, text, n);
        line[n] = 0;
        (void) cm_redact(line);
        n = strlen(line);
        text = line;
        cm_format_rfc3339(cm_now_usec(), ts, sizeof(ts));
        pthread_mutex_lock(&slot->log_lock);
        r = strbuf_addf(&slot->logbuf, "%s ", ts);
        if (r >= 0)
                r = strbuf_add(&slot->logbuf, text, MIN(n, (size_t) 4096));
        if (r >= 0)
                r = strbuf_addch(&slot->logbuf, '\n');
        full = r == -ENOBUFS || slot->logbuf.len > LOG_BUFFER_MAX / 2;
        pthread_mutex_unlock(&slot->log_lock);
        if (full) {
                slot_flush(slot, op_id);
                if (r == -ENOBUFS) {
                        /* The line did not fit before the flush: it does now. */
                        pthread_mutex_lock(&slot->log_lock);
                        if (strbuf_addf(&slot->logbuf, "%s ", ts) < 0 ||
                            strbuf_add(&slot->logbuf, text, MIN(n, (size_t) 4096)) < 0 ||
                            strbuf_addch(&slot->logbuf, '\n') < 0)
                                strbuf_reset(&slot->logbuf);
                        pthread_mutex_unlock(&slot->log_lock);
                }
        }
}

_printf_(3, 4) static void op_logf(struct worker_slot *slot, const char *op_id, const char *fmt, ...) {
        char buf[2048];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        op_log(slot, op_id, buf, strlen(buf));
}

void cm_engine_ctx_log(struct cm_engine_ctx *ctx, const char *fmt, ...) {
        char buf[4096];
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        op_log(ctx->slot, ctx->op->id, buf, strlen(buf));
}

int cm_engine_ctx_store_file(struct cm_engine_ctx *ctx, const char *name, const void *data, size_t n) {
        return cm_state_file_write(ctx->svc, ctx->cluster, name, data, n);
}

int cm_engine_ctx_load_file(struct cm_engine_ctx *ctx, const char *name, char **ret, size_t *ret_n) {
        return cm_state_file_read(ctx->svc, ctx->cluster, name, ret, ret_n);
}

static void spawn_on_line(void *userdata, const char *line, size_t n) {
        struct cm_engine_ctx *ctx = userdata;

        op_log(ctx->slot, ctx->op->id, line, n);
}

static bool spawn_should_stop(void *userdata) {
        return cm_engine_ctx_cancelled(userdata);
}

int cm_engine_ctx_spawn(struct cm_engine_ctx *ctx, char *const argv[], char *const envp[]) {
        struct cm_spawn_opts o = {
                .argv = argv,
                .envp = envp,
                .on_line = spawn_on_line,
                .should_stop = spawn_should_stop,
                .userdata = ctx,
        };
        return cm_spawn_run(&o);
}

struct hooked_spawn {
        struct cm_engine_ctx *ctx;
        const struct cm_engine_spawn_hooks *hooks;
};

static void hooked_on_line(void *userdata, const char *line, size_t n) {
        struct hooked_spawn *h = userdata;

        if (h->hooks->on_line)
                h->hooks->on_line(h->hooks->userdata, line, n);
        else
                spawn_on_line(h->ctx, line, n);
}

static bool hooked_should_stop(void *userdata) {
        struct hooked_spawn *h = userdata;

        if (h->hooks->tick)
                h->hooks->tick(h->hooks->userdata);
        return cm_engine_ctx_cancelled(h->ctx);
}

int cm_engine_ctx_spawn_hooked(struct cm_engine_ctx *ctx, char *const argv[], char *const envp[],
                               const struct cm_engine_spawn_hooks *hooks) {
        struct hooked_spawn h = { .ctx = ctx, .hooks = hooks };
        struct cm_spawn_opts o = {
                .argv = argv,
                .envp = envp,
                .on_line = hooked_on_line,
                .should_stop = hooked_should_stop,
                .userdata = &h,
        };

        if (!hooks)
                return cm_engine_ctx_spawn(ctx, argv, envp);
        return cm_spawn_run(&o);
}

int cm_engine_ctx_load_env_file(struct cm_engine_ctx *ctx, const char *name, char **ret, size_t *ret_n) {
        char owner[CM_VAULT_OWNER_MAX + 1];
        int r;

        if (!ctx->svc->vault)
                return -EOPNOTSUPP;
        r = cm_vault_env_owner(ctx->cluster->env, owner, sizeof(owner));
        if (r < 0)
                return r;
        return cm_vault_read(ctx->svc->vault, owner, name, 0, ret, ret_n, NULL);
}

/* The phase while an operation runs; `now` for one that leaves the cluster as it is (a snapshot). */
static enum cm_phase running_phase(enum cm_op_type t, enum cm_phase now) {
        switch (t) {
        case CM_OP_CREATE:
                return CM_PHASE_PROVISIONING;
        case CM_OP_UPDATE:
                return CM_PHASE_UPDATING;
        case CM_OP_DELETE:
                return CM_PHASE_DELETING;
        case CM_OP_RESTORE:
        case CM_OP_ROTATE_CERTS:
                return CM_PHASE_UPDATING;
        case CM_OP_SNAPSHOT:
        case _CM_OP_TYPE_MAX:
                break;
        }
        return now;
}

/* The Ready reason of a successful operation. */
static const char *success_reason(enum cm_op_type t) {
        switch (t) {
        case CM_OP_CREATE:
                return "Provisioned";
        case CM_OP_RESTORE:
                return "Restored";
        case CM_OP_ROTATE_CERTS:
                return "CertificatesRotated";
        default:
                return "Updated";
        }
}

/* Writes the outcome; returns -ESRCH when the lease was lost (someone else owns the operation). */
static int finish(struct worker_slot *slot, const struct cm_operation *op, const struct cm_cluster *c,
                  struct cm_op_outcome *o, const char *ready_status, const char *ready_reason,
                  const char *reconciling_status, const char *reason_msg) {
        struct cm_service *svc = slot->w->svc;
        _cleanup_free_ char *c1 = NULL, *c2 = NULL;
        uint64_t now = cm_now_usec();
        int r;

        if (c && !o->delete_cluster) {
                /* ready_status NULL: Ready stays as it is (a retry says so in Reconciling only). */
                if (ready_status)
                        c1 = cm_conditions_set(c->conditions_json, "Ready", ready_status, ready_reason,
                                               reason_msg, now);
                else
                        c1 = strdup(c->conditions_json ?: "[]");
                if (c1)
                        c2 = cm_conditions_set(c1, "Reconciling", reconciling_status, ready_reason,
                                               reason_msg, now);
                if (!c2)
                        return -ENOMEM;
                o->conditions_json = c2;
        }
        /* The output not yet stored goes with the outcome, in the same transaction. */
        pthread_mutex_lock(&slot->flush_lock);
        pthread_mutex_lock(&slot->log_lock);
        o->log_text = slot->logbuf.buf;
        o->log_len = slot->logbuf.len;
        pthread_mutex_unlock(&slot->log_lock);
        r = STORE_CALL(svc->store, op_finish, op->id, slot->owner, now, o);
        pthread_mutex_lock(&slot->log_lock);
        if (r >= 0)
                strbuf_reset(&slot->logbuf);
        pthread_mutex_unlock(&slot->log_lock);
        if (r < 0)
                slot_flush_locked(slot, op->id);
        pthread_mutex_unlock(&slot->flush_lock);
        if (r == -ESRCH)
                log_info("operation %s: lease lost to another worker; leaving it to them", op->id);
        else if (r < 0)
                log_error_errno(r, "record the outcome of operation %s: %m", op->id);
        cm_service_notify_log(svc);
        /* A cluster may have become Ready (probe it now) or gone; the operation's events are stored. */
        cm_monitor_poke(svc->monitor);
        cm_webhooks_poke(svc->webhooks);
        return r;
}

static void run_operation(struct worker_slot *slot, struct cm_operation *op) {
        struct cm_service *svc = slot->w->svc;
        _cleanup_(cm_cluster_done) struct cm_cluster c = {};
        struct cm_engine_result res = {};
        const struct cm_engine_ops *eng;
        const char *type = cm_op_type_to_string(op->type);
        struct cm_op_outcome o = {};
        cm_engine_step_fn step;
        json_t *spec = NULL, *params = NULL;
        uint64_t now = cm_now_usec();
        int r;

        log_info("operation %s (%s of %s/%s) attempt %u of %u", op->id, type, op->env, op->cluster_name,
                 op->attempts, op->max_attempts);
        op_logf(slot, op->id, "%s attempt %u of %u started by %s", type, op->attempts, op->max_attempts,
                slot->owner);

        r = STORE_CALL(svc->store, cluster_get_by_id, op->cluster_id, &c);
        if (r == -ENOENT) {
                if (op->type == CM_OP_DELETE) {
                        o = (struct cm_op_outcome){ .state = CM_OP_SUCCEEDED };
                        op_logf(slot, op->id, "cluster already removed");
                        (void) finish(slot, op, NULL, &o, NULL, NULL, NULL, NULL);
                } else {
                        o = (struct cm_op_outcome){ .state = CM_OP_FAILED,
                                                    .error = "the cluster no longer exists" };
                        op_logf(slot, op->id, "failed: the cluster no longer exists");
                        (void) finish(slot, op, NULL, &o, NULL, NULL, NULL, NULL);
                }
                return;
        }
        if (r < 0) {
                /* The store is unreachable: the lease expires and the operation is taken over later. */
                slot_flush(slot, op->id);
                log_error_errno(r, "load cluster of operation %s: %m", op->id);
                return;
        }

        eng = cm_engine_find(c.engine);
        if (!eng) {
                char msg[256];

                (void) cm_snprintf(msg, sizeof(msg), "engine '%s' is not available in this build", c.engine);
                op_logf(slot, op->id, "failed: %s", msg);
                o = (struct cm_op_outcome){ .state = CM_OP_FAILED, .error = msg, .phase = CM_PHASE_FAILED };
                (void) finish(slot, op, &c, &o, "False", "EngineUnavailable", "False", msg);
                return;
        }

        {
                _cleanup_free_ char *c1 = NULL;
                char msg[160];

                (void) cm_snprintf(msg, sizeof(msg), "%s operation %s, attempt %u", type, op->id,
                                   op->attempts);
                c1 = cm_conditions_set(c.conditions_json, "Reconciling", "True", "OperationRunning", msg,
                                       now);
                if (c1 && STORE_CALL(svc->store, cluster_set_status, c.id, running_phase(op->type, c.phase),
                                     c1, NULL) >= 0) {
                        free(c.conditions_json);
                        c.conditions_json = TAKE_PTR(c1);
                        c.phase = running_phase(op->type, c.phase);
                }
        }

        spec = json_loads(c.spec_json, 0, NULL);
        if (!spec) {
                o = (struct cm_op_outcome){ .state = CM_OP_FAILED,
                                            .error = "stored spec is unreadable",
                                            .phase = CM_PHASE_FAILED };
                (void) finish(slot, op, &c, &o, "False", "SpecUnreadable", "False", o.error);
                return;
        }

        params = op->params_json ? json_loads(op->params_json, 0, NULL) : json_object();
        if (!params) {
                o = (struct cm_op_outcome){ .state = CM_OP_FAILED,
                                            .error = "stored operation parameters are unreadable",
                                            .phase = c.phase };
                (void) finish(slot, op, &c, &o, NULL, "ParametersUnreadable", "False", o.error);
                json_decref(spec);
                return;
        }

        struct cm_engine_ctx ctx = {
                .svc = svc, .slot = slot, .cluster = &c, .op = op, .spec = spec, .params = params
        };
        step = cm_engine_step(eng, op->type);
        if (step)
                r = step(&ctx, &res);
        else if (op->type == CM_OP_DELETE)
                r = 0; /* nothing to tear down outside the service */
        else {
                (void) cm_snprintf(res.message, sizeof(res.message), "engine '%s' does not support %s",
                                   eng->name, type);
                r = -EOPNOTSUPP;
        }
        /* A built or changed cluster is then configured (customer access), as part of the operation. */
        if (step && r >= 0 && (op->type == CM_OP_CREATE || op->type == CM_OP_UPDATE) &&
            !atomic_load(&slot->lease_lost))
                r = cm_addons_after_apply(svc, &ctx, &res);
        json_decref(spec);
        json_decref(params);

        if (atomic_load(&slot->lease_lost)) {
                slot_flush(slot, op->id);
                log_info("operation %s: lease lost while running; not recording an outcome", op->id);
                goto out;
        }

        if (r >= 0) {
                if (op->type == CM_OP_DELETE) {
                        o = (struct cm_op_outcome){ .state = CM_OP_SUCCEEDED, .delete_cluster = true };
                        /* The state is archived before the record goes: a retry finds the cluster again. */
                        r = cm_state_files_archive(svc, c.id);
                        if (r < 0) {
                                log_error_errno(r, "archive the state of cluster %s: %m", c.id);
                                o = (struct cm_op_outcome){ .state = CM_OP_PENDING,
                                                            .phase = c.phase,
                                                            .error = "archiving the cluster's state failed",
                                                            .next_run_usec = cm_now_usec() +
                                                                             svc->cfg.backoff_base_usec };
                                (void) finish(slot, op, &c, &o, NULL, "ArchiveFailed", "True", o.error);
                                goto out;
                        }
                        op_logf(slot, op->id, "state files archived for %" PRIu64 " days",
                                svc->cfg.state_retention_usec / (86400 * USEC_PER_SEC));
                        op_logf(slot, op->id, "%s succeeded", type);
                        (void) finish(slot, op, &c, &o, NULL, NULL, NULL, NULL);
                } else if (op->type == CM_OP_SNAPSHOT) {
                        op_logf(slot, op->id, "%s succeeded", type);
                        o = (struct cm_op_outcome){ .state = CM_OP_SUCCEEDED,
                                                    .phase = c.phase,
                                                    .result_json = res.result_json };
                        (void) finish(slot, op, &c, &o, NULL, "SnapshotSaved", "False",
                                      "the etcd snapshot was saved");
                } else {
                        op_logf(slot, op->id, "%s succeeded", type);
                        o = (struct cm_op_outcome){ .state = CM_OP_SUCCEEDED,
                                                    .phase = CM_PHASE_READY,
                                                    .status_json = res.status_json,
                                                    .result_json = res.result_json,
                                                    .set_observed_generation = true };
                        (void) finish(slot, op, &c, &o, "True", success_reason(op->type), "False",
                                      "the cluster matches its spec");
                }
                goto out;
        }

        if (r == -ECANCELED && atomic_load(&slot->stop) && !atomic_load(&slot->cancel)) {
                /* Shutdown: give the operation back for the next start or another replica. */
                op_logf(slot, op->id, "stopped at a safe point for a service shutdown; it will be resumed");
                slot_flush(slot, op->id);
                r = STORE_CALL(svc->store, op_release, op->id, slot->owner);
                if (r < 0 && r != -ESRCH)
                        log_warning_errno(r, "release operation %s: %m", op->id);
                goto out;
        }

        if (r == -ECANCELED || atomic_load(&slot->cancel)) {
                op_logf(slot, op->id, "%s cancelled", type);
                o = (struct cm_op_outcome){ .state = CM_OP_CANCELLED,
                                            .error = "cancelled by request",
                                            .phase = CM_PHASE_FAILED };
                if (op->type == CM_OP_SNAPSHOT) {
                        /* a snapshot cut short leaves the cluster as it was */
                        o.phase = c.phase;
                        (void) finish(slot, op, &c, &o, NULL, "OperationCancelled", "False",
                                      "the snapshot was cancelled while it ran");
                } else
                        (void) finish(slot, op, &c, &o, "False", "OperationCancelled", "False",
                                      "the operation was cancelled while it ran");
                goto out;
        }

        if (isempty(res.message))
                (void) cm_snprintf(res.message, sizeof(res.message), "%s failed: %s", type, strerror(-r));

        if (res.retryable && op->attempts < op->max_attempts) {
                uint64_t delay =
                        cm_backoff_usec(svc->cfg.backoff_base_usec, svc->cfg.backoff_cap_usec, op->attempts);
                char msg[1200];

                (void) cm_snprintf(msg, sizeof(msg), "attempt %u failed, retrying in %" PRIu64 " s: %s",
                                   op->attempts, (delay + USEC_PER_SEC / 2) / USEC_PER_SEC, res.message);
                op_logf(slot, op->id, "%s", msg);
                o = (struct cm_op_outcome){ .state = CM_OP_PENDING,
                                            .error = res.message,
                                            .next_run_usec = cm_now_usec() + delay,
                                            .phase = c.phase };
                (void) finish(slot, op, &c, &o, NULL, "RetryScheduled", "True", msg);
                goto out;
        }

        op_logf(slot, op->id, "%s failed: %s", type, res.message);
        o = (struct cm_op_outcome){ .state = CM_OP_FAILED, .error = res.message, .phase = CM_PHASE_FAILED };
        if (op->type == CM_OP_SNAPSHOT) {
                /* a failed snapshot changed nothing in the cluster: it stays as it was */
                o.phase = c.phase;
                (void) finish(slot, op, &c, &o, NULL, "SnapshotFailed", "False", res.message);
        } else if (res.untouched && op->type != CM_OP_CREATE) {
                /* the engine says the cluster was not changed: Ready or Failed, as it was before */
                o.phase =
                        cm_conditions_is_true(c.conditions_json, "Ready") ? CM_PHASE_READY : CM_PHASE_FAILED;
                (void) finish(slot, op, &c, &o, NULL, "OperationFailed", "False", res.message);
        } else
                (void) finish(slot, op, &c, &o, "False", "OperationFailed", "False", res.message);
out:
        free(res.status_json);
        free(res.result_json);
}

static void wait_for_work(struct cm_service *svc, uint64_t seen) {
        struct timespec ts;
        uint64_t usec = svc->cfg.poll_usec;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t) (usec / USEC_PER_SEC);
        ts.tv_nsec += (long) (usec % USEC_PER_SEC) * 1000;
        if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&svc->lock);
        while (svc->work_seq == seen && !svc->stopping)
                if (pthread_cond_timedwait(&svc->work_cond, &svc->lock, &ts) == ETIMEDOUT)
                        break;
        pthread_mutex_unlock(&svc->lock);
}

static void *worker_main(void *userdata) {
        struct worker_slot *slot = userdata;
        struct cm_workers *w = slot->w;
        struct cm_service *svc = w->svc;
        int last_error = 0;

        while (!atomic_load(&w->stopping)) {
                struct cm_operation op = {};
                uint64_t seen;
                int r;

                pthread_mutex_lock(&svc->lock);
                seen = svc->work_seq;
                pthread_mutex_unlock(&svc->lock);

                r = STORE_CALL(svc->store, op_claim, slot->owner, cm_now_usec(), svc->cfg.lease_usec, &op);
                if (r == -EAGAIN) {
                        last_error = 0;
                        wait_for_work(svc, seen);
                        continue;
                }
                if (r < 0) {
                        if (r != last_error)
                                log_error_errno(r, "claim an operation: %m");
                        last_error = r;
                        wait_for_work(svc, seen);
                        continue;
                }
                last_error = 0;

                pthread_mutex_lock(&w->lock);
                (void) cm_strlcpy(slot->op_id, op.id, sizeof(slot->op_id));
                atomic_store(&slot->cancel, op.cancel_requested);
                atomic_store(&slot->stop, false);
                atomic_store(&slot->lease_lost, false);
                pthread_mutex_unlock(&w->lock);

                run_operation(slot, &op);
                /* Whatever output a path above left behind belongs to this operation. */
                slot_flush(slot, op.id);

                pthread_mutex_lock(&w->lock);
                slot->op_id[0] = 0;
                pthread_cond_broadcast(&w->cond);
                pthread_mutex_unlock(&w->lock);
                cm_operation_done(&op);
        }
        return NULL;
}

static void heartbeat_once(struct cm_workers *w) {
        struct cm_service *svc = w->svc;

        for (unsigned i = 0; i < w->n; i++) {
                struct worker_slot *slot = &w->slots[i];
                char op_id[48];
                bool cancel = false;
                int r;

                pthread_mutex_lock(&w->lock);
                (void) cm_strlcpy(op_id, slot->op_id, sizeof(op_id));
                pthread_mutex_unlock(&w->lock);
                if (!op_id[0])
                        continue;

                r = STORE_CALL(svc->store, op_heartbeat, op_id, slot->owner,
                               cm_now_usec() + svc->cfg.lease_usec, &cancel);
                /* The slot may have moved on meanwhile: only flag it if it still runs the same one. */
                pthread_mutex_lock(&w->lock);
                if (streq(slot->op_id, op_id)) {
                        if (r == -ESRCH)
                                atomic_store(&slot->lease_lost, true);
                        if (r >= 0 && cancel)
                                atomic_store(&slot->cancel, true);
                }
                pthread_mutex_unlock(&w->lock);
                if (r < 0 && r != -ESRCH)
                        log_warning_errno(r, "renew the lease of operation %s: %m", op_id);
        }
}

/* Stores buffered log output of running operations (the heartbeat thread, several times a second). */
static void flush_logs(struct cm_workers *w) {
        for (unsigned i = 0; i < w->n; i++) {
                struct worker_slot *slot = &w->slots[i];
                char op_id[48];

                pthread_mutex_lock(&slot->flush_lock);
                pthread_mutex_lock(&w->lock);
                (void) cm_strlcpy(op_id, slot->op_id, sizeof(op_id));
                pthread_mutex_unlock(&w->lock);
                if (op_id[0])
                        slot_flush_locked(slot, op_id);
                pthread_mutex_unlock(&slot->flush_lock);
        }
}

static void *heartbeat_main(void *userdata) {
        struct cm_workers *w = userdata;
        uint64_t lease_tick = MIN(w->svc->cfg.lease_usec / 3, USEC_PER_SEC), tick = 200 * USEC_PER_MSEC;
        uint64_t next_heartbeat = 0, next_expire = 0;

        while (!atomic_load(&w->hb_stopping)) {
                struct timespec ts;
                uint64_t now = cm_mono_usec();

                flush_logs(w);
                if (now >= next_heartbeat) {
                        heartbeat_once(w);
                        next_heartbeat = now + lease_tick;
                }
                if (now >= next_expire) {
                        /* Idempotency keys are kept for 24 hours. */
                        int r = STORE_CALL(w->svc->store, idem_expire,
                                           cm_now_usec() - 24 * 3600 * USEC_PER_SEC);
                        if (r < 0)
                                log_warning_errno(r, "expire idempotency keys: %m");
                        /* Archived state of deleted clusters is kept for the retention period. */
                        r = cm_state_files_purge(w->svc);
                        if (r < 0)
                                log_warning_errno(r, "purge archived cluster state: %m");
                        else if (r > 0)
                                log_info("purged the archived state of %d deleted clusters", r);
                        next_expire = now + 600 * USEC_PER_SEC;
                }
                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_nsec += (long) tick * 1000;
                while (ts.tv_nsec >= 1000000000L) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000L;
                }
                pthread_mutex_lock(&w->lock);
                if (!atomic_load(&w->hb_stopping))
                        (void) pthread_cond_timedwait(&w->cond, &w->lock, &ts);
                pthread_mutex_unlock(&w->lock);
        }
        return NULL;
}

void cm_workers_cancel(struct cm_workers *w, const char *op_id) {
        pthread_mutex_lock(&w->lock);
        for (unsigned i = 0; i < w->n; i++)
                if (streq(w->slots[i].op_id, op_id))
                        atomic_store(&w->slots[i].cancel, true);
        pthread_mutex_unlock(&w->lock);
}

static bool any_busy(struct cm_workers *w) {
        bool busy = false;

        pthread_mutex_lock(&w->lock);
        for (unsigned i = 0; i < w->n; i++)
                if (w->slots[i].op_id[0])
                        busy = true;
        pthread_mutex_unlock(&w->lock);
        return busy;
}

struct cm_workers *cm_workers_stop(struct cm_workers *w) {
        uint64_t deadline;

        if (!w)
                return NULL;
        atomic_store(&w->stopping, true);
        cm_service_notify_work(w->svc);

        deadline = cm_mono_usec() + w->svc->cfg.shutdown_grace_usec;
        while (any_busy(w) && cm_mono_usec() < deadline)
                usleep(20000);
        if (any_busy(w)) {
                log_info("asking running operations to stop at a safe point");
                pthread_mutex_lock(&w->lock);
                for (unsigned i = 0; i < w->n; i++)
                        if (w->slots[i].op_id[0])
                                atomic_store(&w->slots[i].stop, true);
                pthread_mutex_unlock(&w->lock);
        }
        for (unsigned i = 0; i < w->n; i++)
                if (w->slots[i].thread_started)
                        pthread_join(w->slots[i].thread, NULL);

        /* Leases are renewed until the last step has stopped. */
        atomic_store(&w->hb_stopping, true);
        pthread_mutex_lock(&w->lock);
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
        if (w->heartbeat_started)
                pthread_join(w->heartbeat, NULL);

        for (unsigned i = 0; i < w->n; i++) {
                strbuf_release(&w->slots[i].logbuf);
                pthread_mutex_destroy(&w->slots[i].log_lock);
                pthread_mutex_destroy(&w->slots[i].flush_lock);
        }
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        free(w->slots);
        free(w);
        return NULL;
}

int cm_workers_start(struct cm_service *s, unsigned n, struct cm_workers **ret) {
        struct cm_workers *w;
        pthread_condattr_t ca;
        int r;

        w = new0(struct cm_workers, 1);
        if (!w)
                return -ENOMEM;
        w->slots = new0(struct worker_slot, n);
        if (!w->slots) {
                free(w);
                return -ENOMEM;
        }
        w->svc = s;
        w->n = n;
        pthread_mutex_init(&w->lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&w->cond, &ca);
        pthread_condattr_destroy(&ca);

        for (unsigned i = 0; i < n; i++) {
                struct worker_slot *slot = &w->slots[i];

                slot->w = w;
                slot->index = i;
                pthread_mutex_init(&slot->log_lock, NULL);
                pthread_mutex_init(&slot->flush_lock, NULL);
                strbuf_init(&slot->logbuf, LOG_BUFFER_MAX);
                (void) cm_snprintf(slot->owner, sizeof(slot->owner), "%s/worker-%u", s->replica_id, i);
        }
        r = -pthread_create(&w->heartbeat, NULL, heartbeat_main, w);
        if (r < 0)
                goto fail;
        w->heartbeat_started = true;
        for (unsigned i = 0; i < n; i++) {
                r = -pthread_create(&w->slots[i].thread, NULL, worker_main, &w->slots[i]);
                if (r < 0)
                        goto fail;
                w->slots[i].thread_started = true;
        }
        *ret = w;
        return 0;
fail:
        cm_workers_stop(w);
        return r;
}
