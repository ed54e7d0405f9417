/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Compliance: the service's side of src/policy. Builds the policy input of a desired cluster (its
 * environment's labels and policy settings, the engine's Kubernetes versions), asks the built-in
 * rules or the remote policy service, and turns the decision into an admission (with the decision
 * recorded on the operation), a 422 listing the violations, or a 503 when the policy service cannot
 * answer. Also the PolicyCompliant condition and the periodic re-validation of existing clusters.
 */
#include "base/common.h"

#include <pthread.h>

#include "api/json.h"
#include "base/log.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "engine/engine.h"
#include "lifecycle/conditions.h"
#include "lifecycle/service.h"
#include "policy/policy.h"
#include "policy/remote.h"

/* The engine's versions ({"versions": [...], "default": ...}), or NULL when it cannot tell. */
static json_t *engine_versions(const char *engine) {
        const struct cm_engine_ops *e = engine ? cm_engine_find(engine) : NULL;
        json_t *v = NULL;

        if (!e || !e->list_versions || e->list_versions(&v) < 0)
                return NULL;
        return v;
}

/*
 * Effective settings by their stored text: merging the defaults costs more than evaluating the rules,
 * and environments change their settings rarely. Keyed by content (not by environment and version,
 * which repeat when an environment is deleted and made again); entries are shared read-only.
 */
#define SETTINGS_CACHE_SIZE 16

static pthread_mutex_t settings_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
        char *stored; /* NULL: the slot is free; "" stands for no stored settings */
        json_t *effective;
} settings_cache[SETTINGS_CACHE_SIZE];
static unsigned settings_next;

static json_t *effective_settings(const char *stored) {
        const char *key = stored ?: "";
        json_t *e = NULL;
        char *copy;

        pthread_mutex_lock(&settings_lock);
        for (size_t i = 0; i < SETTINGS_CACHE_SIZE && !e; i++)
                if (settings_cache[i].stored && streq(settings_cache[i].stored, key))
                        e = json_incref(settings_cache[i].effective);
        pthread_mutex_unlock(&settings_lock);
        if (e)
                return e;
        e = cm_policy_settings_effective(stored);
        copy = e ? strdup(key) : NULL;
        if (!copy)
                return e;
        pthread_mutex_lock(&settings_lock);
        {
                unsigned i = settings_next++ % SETTINGS_CACHE_SIZE;

                free(settings_cache[i].stored);
                json_decref(settings_cache[i].effective);
                settings_cache[i].stored = copy;
                settings_cache[i].effective = json_incref(e);
        }
        pthread_mutex_unlock(&settings_lock);
        return e;
}

static int unavailable(struct cm_service *s, struct cm_problem *p, const char *err) {
        cm_problem_set(
                p, 503, "policy-unavailable", "Policy service unavailable",
                "the policy service (%s) could not decide: %s; nothing was changed. Retry later, or ask "
                "the platform team (the service fails closed)",
                s->policy_url ?: "remote", err);
        return -EHOSTUNREACH;
}

/* The violations as field errors "[rule] message" on their field (the spec when none is named). */
static int deny_problem(struct cm_problem *p, const char *env, const json_t *deny) {
        const json_t *v;
        size_t i;

        json_array_foreach(deny, i, v) {
                const char *field = json_string_value(json_object_get(v, "field"));
                const char *rule = json_string_value(json_object_get(v, "rule"));
                const char *msg = json_string_value(json_object_get(v, "message"));

                cm_problem_add(p, isempty(field) ? "spec" : field, "[%s] %s", rule ?: "policy",
                               msg ?: "denied");
        }
        cm_problem_set(p, 422, "policy-violation", "Policy violation",
                       "the cluster violates %zu polic%s of environment '%s'; see errors",
                       json_array_size(deny), json_array_size(deny) == 1 ? "y" : "ies", env);
        return -EPERM;
}

int cm_compliance_evaluate(struct cm_service *s, const char *operation, const char *principal,
                           const char *env, const char *cluster, const char *labels_json, const json_t *spec,
                           const char *engine, struct cm_problem *p, char **ret_decision_json) {
        _cleanup_(cm_environment_done) struct cm_environment e = {};
        _cleanup_free_ char *stored = NULL;
        struct cm_policy_decision d = {};
        json_t *env_labels = NULL, *labels = NULL, *settings = NULL, *versions = NULL, *input = NULL;
        json_t *record = NULL;
        const char *mode = s->policy ? "remote" : "builtin";
        int r;

        r = STORE_CALL(s->store, env_get, env, &e);
        if (r == -ENOENT)
                return cm_problem_not_found(p, "environment", env), -ENOENT;
        if (r < 0)
                return r;
        r = STORE_CALL(s->store, env_policy_get, env, &stored, NULL);
        if (r == -ENOENT)
                return cm_problem_not_found(p, "environment", env), -ENOENT;
        if (r < 0)
                return r;
        r = -ENOMEM;
        env_labels = json_loads(e.labels_json ?: "{}", 0, NULL);
        labels = json_loads(labels_json ?: "{}", 0, NULL);
        settings = effective_settings(stored);
        if (!env_labels || !labels || !settings)
                goto out;
        versions = engine_versions(engine);
        input = cm_policy_input_build(operation, principal, env, env_labels, cluster, labels, spec, engine,
                                      json_object_get(versions, "versions"),
                                      json_string_value(json_object_get(versions, "default")), settings);
        if (!input)
                goto out;

        if (s->policy) {
                char err[512] = "";

                r = cm_policy_remote_evaluate(s->policy, input, &d, err, sizeof(err));
                if (r == -ENOMEM)
                        goto out;
                if (r < 0) {
                        /* Open mode covers an outage, not a misconfiguration (a refused token, a URL
                         * that does not name the policy package): those are refused in both modes. */
                        bool outage = r == -ETIMEDOUT || r == -ECONNREFUSED || r == -EHOSTUNREACH ||
                                      r == -EPROTO || r == -EIO;

                        log_warning("policy service %s: %s", strna(s->policy_url), err);
                        if (!s->policy_fail_open || !outage) {
                                r = unavailable(s, p, err);
                                goto out;
                        }
                        /* Failure mode open: admitted, and the answer says it went unchecked. */
                        mode = "remote-unavailable";
                        d.deny = json_array();
                        d.warn = json_pack("[{s:s,s:s+}]", "rule", "policy-service", "message",
                                           "the policy service could not be asked (", err,
                                           "); admitted unchecked because the failure mode is open");
                        if (!d.deny || !d.warn) {
                                r = -ENOMEM;
                                goto out;
                        }
                }
        } else {
                r = cm_policy_evaluate_builtin(input, &d);
                if (r < 0)
                        goto out;
        }
        if (!d.deny)
                d.deny = json_array();
        if (!d.warn)
                d.warn = json_array();
        if (!d.deny || !d.warn) {
                r = -ENOMEM;
                goto out;
        }
        if (json_array_size(d.deny) > 0 && !streq(operation, "check")) {
                r = deny_problem(p, env, d.deny);
                goto out;
        }
        r = 0;
        if (ret_decision_json) {
                record = json_pack("{s:s,s:O,s:O}", "mode", mode, "deny", d.deny, "warn", d.warn);
                *ret_decision_json = record ? cm_json_canonical(record) : NULL;
                if (!*ret_decision_json)
                        r = -ENOMEM;
        }
out:
        json_decref(record);
        json_decref(input);
        json_decref(versions);
        json_decref(settings);
        json_decref(labels);
        json_decref(env_labels);
        cm_policy_decision_done(&d);
        return r;
}

int cm_compliance_set_condition(struct cm_service *s, const struct cm_cluster *c,
                                const char *decision_json) {
        json_t *d = decision_json ? json_loads(decision_json, 0, NULL) : NULL;
        const json_t *deny = json_object_get(d, "deny");
        const char *mode = json_string_value(json_object_get(d, "mode"));
        _cleanup_free_ char *conds = NULL;
        char msg[600];
        const char *status, *reason;
        int r;

        if (!d) {
                status = "Unknown";
                reason = "PolicyUnavailable";
                (void) cm_strlcpy(msg, "the policy service could not be asked", sizeof(msg));
        } else if (mode && streq(mode, "remote-unavailable")) {
                status = "Unknown";
                reason = "PolicyUnavailable";
                (void) cm_strlcpy(msg, "the policy service could not be asked", sizeof(msg));
        } else if (json_array_size(deny) == 0) {
                status = "True";
                reason = "Compliant";
                (void) cm_strlcpy(msg, "the cluster meets its environment's policies", sizeof(msg));
        } else {
                const json_t *v = json_array_get(deny, 0);

                status = "False";
                reason = "PolicyViolation";
                (void) cm_snprintf(msg, sizeof(msg), "[%s] %s%s",
                                   strna(json_string_value(json_object_get(v, "rule"))),
                                   strna(json_string_value(json_object_get(v, "message"))),
                                   json_array_size(deny) > 1 ? " (and more: clustermgmt policy check)" : "");
        }
        json_decref(d);
        /* Written only when it changes: a re-validation of unchanged clusters writes nothing. */
        if (c->conditions_json) {
                _cleanup_free_ char *same =
                        cm_conditions_set(c->conditions_json, "PolicyCompliant", status, reason, msg, 0);
                json_t *a = json_loads(c->conditions_json, 0, NULL),
                       *b = same ? json_loads(same, 0, NULL) : NULL;
                bool unchanged = a && b && json_equal(a, b);

                json_decref(a);
                json_decref(b);
                if (unchanged)
                        return 0;
        }
        conds = cm_conditions_set(c->conditions_json, "PolicyCompliant", status, reason, msg, cm_now_usec());
        if (!conds)
                return -ENOMEM;
        r = STORE_CALL(s->store, cluster_set_status, c->id, c->phase, conds, NULL);
        return r < 0 ? r : 1;
}

/* One cluster of a check: evaluated, its condition set, and (out non-NULL) its item appended. */
static int check_one(struct cm_service *s, const struct cm_cluster *c, const char *principal,
                     struct strbuf *out, bool first, bool *ret_violation) {
        _cleanup_free_ char *decision = NULL;
        json_t *spec = json_loads(c->spec_json, 0, NULL);
        struct cm_problem p;
        int r;

        cm_problem_init(&p);
        *ret_violation = false;
        r = spec ? cm_compliance_evaluate(s, "check", principal, c->env, c->name, c->labels_json, spec,
                                          c->engine, &p, &decision)
                 : -EBADMSG;
        json_decref(spec);
        if (r == -ENOMEM) {
                cm_problem_done(&p);
                return r;
        }
        (void) cm_compliance_set_condition(s, c, r >= 0 ? decision : NULL);
        if (decision) {
                json_t *d = json_loads(decision, 0, NULL);
                *ret_violation = json_array_size(json_object_get(d, "deny")) > 0;
                json_decref(d);
        }
        if (out) {
                int k = strbuf_adds(out, first ? "{\"cluster\":" : ",{\"cluster\":");
                if (k >= 0)
                        k = strbuf_add_json_string(out, c->name);
                if (k >= 0 && decision)
                        k = strbuf_addf(out, ",\"compliant\":%s,\"decision\":%s}",
                                        *ret_violation ? "false" : "true", decision);
                else if (k >= 0) {
                        k = strbuf_adds(out, ",\"compliant\":null,\"error\":");
                        if (k >= 0)
                                k = strbuf_add_json_string(out, p.status ? p.detail
                                                                         : "the stored spec is unreadable");
                        if (k >= 0)
                                k = strbuf_addch(out, '}');
                }
                if (k < 0)
                        r = k;
        }
        cm_problem_done(&p);
        return r == -ENOMEM || r == -ENOBUFS ? r : 0;
}

int cm_compliance_check_env(struct cm_service *s, const char *env, const char *principal, struct strbuf *out,
                            unsigned *ret_checked, unsigned *ret_violations) {
        _cleanup_free_ char *after = NULL;
        unsigned checked = 0, violations = 0;
        int r;

        for (;;) {
                struct cm_cluster *page = NULL;
                size_t n = 0;

                r = STORE_CALL(s->store, cluster_list, env, after ?: "", 100, &page, &n);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < n && r >= 0; i++) {
                        bool violation = false;

                        r = check_one(s, &page[i], principal, out, checked == 0, &violation);
                        checked++;
                        violations += violation;
                }
                free(after);
                after = n > 0 ? strdup(page[n - 1].name) : NULL;
                cm_cluster_array_free(page, n);
                if (r < 0)
                        return r;
                if (n < 100 || !after)
                        break;
        }
        if (ret_checked)
                *ret_checked = checked;
        if (ret_violations)
                *ret_violations = violations;
        return 0;
}

/* ---- periodic re-validation ---- */

struct cm_compliance_loop {
        struct cm_service *s;
        uint64_t interval_usec;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool stop;
};

static void check_all(struct cm_service *s) {
        _cleanup_free_ char *after = NULL;
        unsigned total = 0, bad = 0;

        for (;;) {
                struct cm_environment *envs = NULL;
                size_t n = 0;

                if (STORE_CALL(s->store, env_list, after, 100, &envs, &n) < 0)
                        return;
                for (size_t i = 0; i < n; i++) {
                        unsigned checked = 0, violations = 0;

                        if (cm_compliance_check_env(s, envs[i].name, "policy-recheck", NULL, &checked,
                                                    &violations) >= 0) {
                                total += checked;
                                bad += violations;
                        }
                }
                free(after);
                after = n > 0 ? strdup(envs[n - 1].name) : NULL;
                cm_environment_array_free(envs, n);
                if (n < 100 || !after)
                        break;
        }
        log_debug("policy re-validation: %u clusters, %u violating", total, bad);
}

static void *loop_main(void *userdata) {
        struct cm_compliance_loop *l = userdata;

        for (;;) {
                struct timespec ts;

                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_sec += (time_t) (l->interval_usec / USEC_PER_SEC);
                ts.tv_nsec += (long) (l->interval_usec % USEC_PER_SEC) * 1000;
                if (ts.tv_nsec >= 1000000000L) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000L;
                }
                pthread_mutex_lock(&l->lock);
                while (!l->stop && pthread_cond_timedwait(&l->cond, &l->lock, &ts) != ETIMEDOUT)
                        ;
                bool stop = l->stop;
                pthread_mutex_unlock(&l->lock);
                if (stop)
                        return NULL;
                check_all(l->s);
        }
}

int cm_compliance_start(struct cm_service *s, uint64_t interval_usec) {
        struct cm_compliance_loop *l;
        pthread_condattr_t ca;
        int r;

        if (interval_usec == 0 || s->compliance)
                return 0;
        l = new0(struct cm_compliance_loop, 1);
        if (!l)
                return -ENOMEM;
        *l = (struct cm_compliance_loop){ .s = s, .interval_usec = interval_usec };
        pthread_mutex_init(&l->lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&l->cond, &ca);
        pthread_condattr_destroy(&ca);
        r = -pthread_create(&l->thread, NULL, loop_main, l);
        if (r < 0) {
                pthread_cond_destroy(&l->cond);
                pthread_mutex_destroy(&l->lock);
                free(l);
                return r;
        }
        s->compliance = l;
        return 0;
}

void cm_compliance_stop(struct cm_service *s) {
        struct cm_compliance_loop *l = s->compliance;

        if (!l)
                return;
        pthread_mutex_lock(&l->lock);
        l->stop = true;
        pthread_cond_broadcast(&l->cond);
        pthread_mutex_unlock(&l->lock);
        (void) pthread_join(l->thread, NULL);
        pthread_cond_destroy(&l->cond);
        pthread_mutex_destroy(&l->lock);
        free(l);
        s->compliance = NULL;
}
