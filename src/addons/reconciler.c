/* SPDX-License-Identifier: Apache-2.0 */
/* The add-on reconciler (reconciler.h). */
#include "base/common.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <limits.h>
#include <time.h>

#include "addons/apply.h"
#include "addons/helm.h"
#include "addons/reconciler.h"
#include "api/model.h"
#include "base/log.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "kube/client.h"
#include "kube/manifest.h"
#include "lifecycle/service.h"
#include "lifecycle/statefiles.h"
#include "store/store.h"
#include "vault/vault.h"

#define ADMIN_KUBECONFIG "kube_config_cluster.yml"
#define RETRY_FIRST_USEC (30 * USEC_PER_SEC)
#define NOT_READY_RETRY_USEC (30 * USEC_PER_SEC)
#define CLAIM_BATCH 8

static char helm_path[PATH_MAX];

int cm_addons_set_helm_path(const char *path) {
        if (!path) {
                helm_path[0] = '\0';
                return 0;
        }
        return cm_strlcpy(helm_path, path, sizeof(helm_path)) < 0 ? -ENAMETOOLONG : 0;
}

const char *cm_addons_helm_path(void) {
        return helm_path[0] ? helm_path : NULL;
}

int cm_addons_helm_dir(const struct cm_service *svc, char *buf, size_t size) {
        _cleanup_free_ char *abs = realpath(svc->cfg.data_dir ?: ".", NULL);

        if (!abs)
                return -errno;
        return cm_snprintf(buf, size, "%s/helm", abs) < 0 ? -ENAMETOOLONG : 0;
}

int cm_addons_helm_values(const json_t *definition, const char *values_json, json_t **ret) {
        _cleanup_(cm_json_wipe_and_free) json_t *values =
                json_deep_copy(json_object_get(definition, "values"));
        /* Not wiped here: the merge shares its strings with values, which the caller wipes. */
        _cleanup_(json_decrefp) json_t *over = json_loads(values_json ?: "{}", 0, NULL);

        if (!json_is_object(over))
                return over ? -EINVAL : -ENOMEM;
        if (!json_is_object(values)) {
                json_decref(values);
                values = json_object();
        }
        if (!values || json_object_update_recursive(values, over) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(values);
        return 0;
}

struct cm_addons_reconciler {
        struct cm_service *svc;
        char helm_dir[PATH_MAX];
        uint64_t lease_usec, poll_usec;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool stop, poked;
};

/* What one pass over an installation decided; written with install_finish. */
struct outcome {
        json_t *status; /* the new status object */
        json_t *inventory; /* NULL: leave as is */
        bool applied; /* applied_key := the desired key */
        uint64_t next_check_usec;
};

static const char *jstr(const json_t *o, const char *key) {
        return json_string_value(json_object_get(o, key));
}

static unsigned juint(const json_t *o, const char *key, unsigned dflt) {
        const json_t *v = json_object_get(o, key);

        return json_is_integer(v) && json_integer_value(v) > 0 ? (unsigned) json_integer_value(v) : dflt;
}

static bool reconciler_stopping(void *userdata) {
        struct cm_addons_reconciler *rc = userdata;
        bool stop;

        pthread_mutex_lock(&rc->lock);
        stop = rc->stop;
        pthread_mutex_unlock(&rc->lock);
        return stop;
}

/* ---- status ---- */

static void now_rfc3339(char *buf, size_t size) {
        cm_format_rfc3339(cm_now_usec(), buf, size);
}

/*
 * Sets condition type in status.conditions (status, reason, message), keeping its lastTransitionTime
 * unless the status changes.
 */
static int set_condition(json_t *status, const char *type, const char *cstatus, const char *reason,
                         const char *message) {
        json_t *conds = json_object_get(status, "conditions"), *c = NULL, *e;
        char ts[40];
        size_t i;

        if (!json_is_array(conds)) {
                conds = json_array();
                if (!conds || json_object_set_new(status, "conditions", conds) < 0)
                        return -ENOMEM;
        }
        json_array_foreach(conds, i, e) if (json_is_object(e) && streq(jstr(e, "type") ?: "", type)) c = e;
        if (!c) {
                c = json_object();
                if (!c || json_array_append_new(conds, c) < 0 ||
                    json_object_set_new(c, "type", json_string(type)) < 0)
                        return -ENOMEM;
        }
        if (!streq(jstr(c, "status") ?: "", cstatus)) {
                now_rfc3339(ts, sizeof(ts));
                if (json_object_set_new(c, "lastTransitionTime", json_string(ts)) < 0)
                        return -ENOMEM;
        }
        if (json_object_set_new(c, "status", json_string(cstatus)) < 0 ||
            json_object_set_new(c, "reason", json_string(reason)) < 0 ||
            json_object_set_new(c, "message", json_string(message)) < 0)
                return -ENOMEM;
        return 0;
}

/* phase, reason and message at the top of the status. */
static int set_phase(json_t *status, const char *phase, const char *reason, const char *message) {
        if (json_object_set_new(status, "phase", json_string(phase)) < 0 ||
            json_object_set_new(status, "reason", json_string(reason)) < 0 ||
            json_object_set_new(status, "message", json_string(message)) < 0)
                return -ENOMEM;
        return 0;
}

static int set_time(json_t *status, const char *key) {
        char ts[40];

        now_rfc3339(ts, sizeof(ts));
        return json_object_set_new(status, key, json_string(ts));
}

/* Adds corrected objects to status.corrections and lists them in status.lastCorrection (an event). */
static int record_corrections(json_t *status, json_t *objects) {
        json_int_t total =
                (json_int_t) juint(status, "corrections", 0) + (json_int_t) json_array_size(objects);
        json_t *last = json_pack("{s:O}", "objects", objects);
        char ts[40];

        now_rfc3339(ts, sizeof(ts));
        if (!last || json_object_set_new(last, "time", json_string(ts)) < 0 ||
            json_object_set_new(status, "lastCorrection", last) < 0 ||
            json_object_set_new(status, "corrections", json_integer(total)) < 0)
                return -ENOMEM;
        return 0;
}

/* A failure: phase Failed (or Uninstalling), Applied False with the reason; retried with backoff. */
static int outcome_failed(struct outcome *o, unsigned drift_sec, const char *phase, const char *reason,
                          const char *message) {
        uint64_t failures = (uint64_t) juint(o->status, "failures", 0) + 1,
                 delay = RETRY_FIRST_USEC << MIN(failures - 1, 10U);

        delay = MIN(delay, (uint64_t) drift_sec * USEC_PER_SEC);
        o->next_check_usec = cm_now_usec() + MAX(delay, RETRY_FIRST_USEC);
        if (set_phase(o->status, phase, reason, message) < 0 ||
            set_condition(o->status, "Applied", "False", reason, message) < 0 ||
            json_object_set_new(o->status, "failures", json_integer((json_int_t) failures)) < 0)
                return -ENOMEM;
        return 0;
}

/* ---- the cluster ---- */

/* The cluster and its admin kubeconfig; 0, -EAGAIN (not Ready yet), -ENOENT (gone), or errors. */
static int cluster_access(struct cm_service *svc, const char *cluster_id, struct cm_cluster *ret_c,
                          char **ret_kc, size_t *ret_len, char *why, size_t size) {
        struct cm_cluster c = {};
        int r;

        r = STORE_CALL(svc->store, cluster_get_by_id, cluster_id, &c);
        if (r < 0)
                return r;
        if (c.phase != CM_PHASE_READY && c.phase != CM_PHASE_UPDATING) {
                (void) cm_snprintf(why, size, "waiting for the cluster to be Ready (it is %s)",
                                   cm_phase_to_string(c.phase));
                cm_cluster_done(&c);
                return -EAGAIN;
        }
        r = cm_state_file_read(svc, &c, ADMIN_KUBECONFIG, ret_kc, ret_len);
        if (r < 0) {
                (void) cm_snprintf(why, size,
                                   "the cluster's admin kubeconfig cannot be read from the state vault: %s",
                                   r == -ENOENT ? "the engine stored none" : strerror(-r));
                cm_cluster_done(&c);
                return r;
        }
        *ret_c = c;
        return 0;
}

/* ---- manifest add-ons ---- */

static int manifest_pass(struct cm_addons_reconciler *rc, const struct cm_addon_install *inst,
                         const json_t *def, const char *kubeconfig, size_t kc_len, bool changed,
                         struct outcome *o) {
        const struct cm_apply_options opts = { .addon = inst->addon,
                                               .default_namespace = jstr(def, "namespace"),
                                               .timeout_sec = juint(def, "timeoutSeconds", 300),
                                               .cancelled = reconciler_stopping,
                                               .userdata = rc };
        unsigned drift = juint(def, "driftIntervalSeconds", 300);
        _cleanup_(json_decrefp) json_t *previous = json_loads(inst->inventory_json ?: "[]", 0, NULL);
        _cleanup_(cm_apply_report_done) struct cm_apply_report rep = {};
        _cleanup_(cm_kube_closep) struct cm_kube *k = NULL;
        struct cm_manifest m = {};
        struct cm_manifest_error merr = {};
        struct cm_kube_error kerr = {};
        const char *text = jstr(def, "manifests") ?: "";
        size_t ncorr;
        int r;

        if (inst->uninstall) {
                r = cm_kube_open(kubeconfig, kc_len, NULL, &k, &kerr);
                if (r < 0)
                        return outcome_failed(o, drift, "Uninstalling", "UninstallFailed", kerr.message);
                r = cm_addon_remove(k, previous, &opts, &rep);
                o->inventory = json_incref(rep.inventory);
                if (r < 0)
                        return outcome_failed(o, drift, "Uninstalling", "UninstallFailed", rep.message);
                return 1; /* removed */
        }

        r = cm_manifest_parse(text, strlen(text), &m, &merr);
        if (r < 0) {
                char msg[512];

                cm_manifest_error_format(&merr, msg, sizeof(msg));
                return outcome_failed(o, drift, "Failed", "InvalidManifests", msg);
        }
        cm_manifest_sort(&m);
        r = cm_kube_open(kubeconfig, kc_len, NULL, &k, &kerr);
        if (r < 0) {
                cm_manifest_done(&m);
                return outcome_failed(o, drift, "Failed", "Unreachable", kerr.message);
        }
        r = cm_addon_apply(k, &m, previous, &opts, &rep);
        cm_manifest_done(&m);
        o->inventory = json_incref(rep.inventory);
        if (r < 0)
                return outcome_failed(o, drift, "Failed", rep.reason, rep.message);
        ncorr = json_array_size(rep.corrected);
        if (changed || ncorr > 0 || !streq(jstr(o->status, "phase") ?: "", "Applied")) {
                struct cm_apply_report wait = {};

                r = cm_addon_wait_healthy(k, rep.inventory, &opts, &wait);
                if (r < 0) {
                        r = outcome_failed(o, drift, "Failed", wait.reason, wait.message);
                        (void) set_condition(o->status, "Healthy", "False", wait.reason, wait.message);
                        cm_apply_report_done(&wait);
                        return r;
                }
                cm_apply_report_done(&wait);
        }
        if (ncorr > 0) {
                if (record_corrections(o->status, rep.corrected) < 0)
                        return -ENOMEM;
                log_info("add-on %s on cluster %s/%s: drift corrected on %zu object(s)", inst->addon,
                         inst->env, inst->cluster_name, ncorr);
        }
        if (json_object_set_new(o->status, "objects",
                                json_integer((json_int_t) json_array_size(rep.inventory))) < 0)
                return -ENOMEM;
        o->applied = true;
        o->next_check_usec = cm_now_usec() + (uint64_t) drift * USEC_PER_SEC;
        return 0;
}

/* ---- Helm add-ons ---- */

/* The release's objects from its manifest (hooks left out: Helm deletes them by policy). */
static int helm_inventory(const char *manifest, size_t len, const char *namespace, json_t **ret) {
        _cleanup_(json_decrefp) json_t *inv = json_array();
        struct cm_manifest m = {};
        int r;

        if (!inv)
                return -ENOMEM;
        r = cm_manifest_parse(manifest ?: "", manifest ? len : 0, &m, NULL);
        if (r < 0)
                return r;
        for (size_t i = 0; i < m.n; i++) {
                const struct cm_manifest_object *obj = &m.objects[i];
                json_t *anno = json_object_get(json_object_get(obj->object, "metadata"), "annotations"), *e;

                if (json_object_get(anno, "helm.sh/hook"))
                        continue;
                e = json_pack("{s:s, s:s, s:s, s:s}", "apiVersion", obj->api_version, "kind", obj->kind,
                              "name", obj->name, "namespace", obj->namespace ?: namespace);
                if (!e || json_array_append_new(inv, e) < 0) {
                        cm_manifest_done(&m);
                        return -ENOMEM;
                }
        }
        cm_manifest_done(&m);
        *ret = TAKE_PTR(inv);
        return 0;
}

/* Objects of the inventory that no longer exist ([] when all do), by GET; the namespace of cluster-scoped kinds ignored. */
static int helm_missing(const char *kubeconfig, size_t kc_len, const json_t *inv, json_t **ret, char *why,
                        size_t size) {
        _cleanup_(cm_kube_closep) struct cm_kube *k = NULL;
        _cleanup_(json_decrefp) json_t *missing = json_array();
        struct cm_kube_error err = {};
        const json_t *e;
        size_t i;
        int r;

        if (!missing)
                return -ENOMEM;
        r = cm_kube_open(kubeconfig, kc_len, NULL, &k, &err);
        if (r < 0) {
                (void) cm_strlcpy(why, err.message, size);
                return r;
        }
        json_array_foreach(inv, i, e) {
                struct cm_kube_resource res = {};
                struct cm_kube_ref ref = { .api_version = jstr(e, "apiVersion"),
                                           .kind = jstr(e, "kind"),
                                           .namespace = jstr(e, "namespace"),
                                           .name = jstr(e, "name") };
                json_t *live = NULL;

                if (!ref.api_version || !ref.kind || !ref.name)
                        continue;
                r = cm_kube_resolve(k, ref.api_version, ref.kind, &res, &err);
                if (r >= 0 && !res.namespaced)
                        ref.namespace = NULL;
                if (r >= 0)
                        r = cm_kube_get(k, &ref, &live, &err);
                cm_json_wipe_and_free(&live); /* may be a Secret */
                if (r == -ENOENT) {
                        json_t *c = json_deep_copy(e);

                        if (!c || json_object_set_new(c, "change", json_string("recreated")) < 0 ||
                            json_array_append_new(missing, c) < 0)
                                return -ENOMEM;
                        continue;
                }
                if (r < 0) {
                        (void) cm_strlcpy(why, err.message, size);
                        return r;
                }
        }
        *ret = TAKE_PTR(missing);
        return 0;
}

static int helm_pass(struct cm_addons_reconciler *rc, const struct cm_addon_install *inst, const json_t *def,
                     const char *kubeconfig, size_t kc_len, bool changed, struct outcome *o) {
        const json_t *chart = json_object_get(def, "chart");
        unsigned drift = juint(def, "driftIntervalSeconds", 300);
        const struct cm_helm h = { .binary = cm_addons_helm_path(),
                                   .dir = rc->helm_dir,
                                   .kubeconfig = kubeconfig,
                                   .kubeconfig_len = kc_len,
                                   .timeout_sec = juint(def, "timeoutSeconds", 300),
                                   .should_stop = reconciler_stopping,
                                   .userdata = rc };
        const struct cm_helm_release rel = { .name = inst->addon,
                                             .namespace = jstr(def, "namespace") ?: "default",
                                             .chart = jstr(chart, "oci") ?: jstr(chart, "name"),
                                             .version = jstr(chart, "version"),
                                             .repo = jstr(chart, "oci") ? NULL : jstr(chart, "repository") };
        _cleanup_(cm_json_wipe_and_free) json_t *values = NULL;
        _cleanup_(json_decrefp) json_t *missing = NULL;
        struct cm_helm_result res = CM_HELM_RESULT_INIT;
        char why[CM_KUBE_ERROR_MAX] = "";
        json_t *inv = NULL, *helm;
        int r;

        if (inst->uninstall) {
                r = cm_helm_uninstall(&h, &rel, &res);
                if (r < 0) {
                        r = outcome_failed(o, drift, "Uninstalling", "UninstallFailed", res.message);
                        cm_helm_result_done(&res);
                        return r;
                }
                cm_helm_result_done(&res);
                return 1;
        }
        if (!changed) {
                /* The drift check: every object of the release still there? */
                _cleanup_(json_decrefp) json_t *previous = json_loads(inst->inventory_json ?: "[]", 0, NULL);

                r = helm_missing(kubeconfig, kc_len, previous, &missing, why, sizeof(why));
                if (r < 0)
                        return outcome_failed(o, drift, "Failed", "Unreachable", why);
                if (json_array_size(missing) == 0) {
                        o->applied = true;
                        o->next_check_usec = cm_now_usec() + (uint64_t) drift * USEC_PER_SEC;
                        return 0;
                }
                log_info("add-on %s on cluster %s/%s: %zu object(s) of the release are gone; upgrading to "
                         "re-create "
                         "them",
                         inst->addon, inst->env, inst->cluster_name, json_array_size(missing));
        }
        r = cm_addons_helm_values(def, inst->values_json, &values);
        if (r < 0)
                return outcome_failed(o, drift, "Failed", "InvalidValues",
                                      "the installation's values are not a JSON object");
        r = cm_helm_upgrade_install(&h, &rel, values, &res);
        if (r < 0) {
                r = outcome_failed(o, drift, "Failed", r == -ENOENT ? "ChartNotFound" : "HelmFailed",
                                   res.message);
                cm_helm_result_done(&res);
                return r;
        }
        r = helm_inventory(res.manifest, res.manifest_len, rel.namespace, &inv);
        if (r >= 0) {
                o->inventory = inv;
                helm = json_pack("{s:s, s:I, s:s}", "release", res.release, "revision",
                                 (json_int_t) res.revision, "chartVersion", res.chart_version);
                if (!helm || json_object_set_new(o->status, "helm", helm) < 0 ||
                    json_object_set_new(o->status, "objects",
                                        json_integer((json_int_t) json_array_size(inv))) < 0)
                        r = -ENOMEM;
        }
        cm_helm_result_done(&res);
        if (r < 0)
                return outcome_failed(o, drift, "Failed", "HelmFailed",
                                      "the release's manifest could not be read back");
        if (missing && json_array_size(missing) > 0 && record_corrections(o->status, missing) < 0)
                return -ENOMEM;
        o->applied = true;
        o->next_check_usec = cm_now_usec() + (uint64_t) drift * USEC_PER_SEC;
        return 0;
}

/* ---- one installation ---- */

static void reconcile(struct cm_addons_reconciler *rc, struct cm_addon_install *inst) {
        struct cm_service *svc = rc->svc;
        _cleanup_(json_decrefp) json_t *def = json_loads(inst->addon_doc_json ?: "{}", 0, NULL);
        struct outcome o = { .status = json_loads(inst->status_json ?: "{}", 0, NULL) };
        struct cm_cluster c = {};
        char key[80], why[512] = "", *kc = NULL, *status = NULL, *inventory = NULL;
        bool helm = streq(jstr(def, "kind") ?: "", "helm"), changed;
        unsigned drift = juint(def, "driftIntervalSeconds", 300);
        size_t kc_len = 0;
        int r;

        (void) cm_snprintf(key, sizeof(key), "definition %" PRId64 ", generation %" PRId64,
                           inst->addon_resource_version, inst->generation);
        changed = !inst->applied_key || !streq(inst->applied_key, key);
        if (!json_is_object(o.status)) {
                json_decref(o.status);
                o.status = json_object();
        }
        if (!o.status || !json_is_object(def)) {
                r = -ENOMEM;
                goto finish;
        }

        r = cluster_access(svc, inst->cluster_id, &c, &kc, &kc_len, why, sizeof(why));
        if (r == -EAGAIN) {
                (void) set_phase(o.status, inst->uninstall ? "Uninstalling" : "Pending", "WaitingForCluster",
                                 why);
                o.next_check_usec = cm_now_usec() + NOT_READY_RETRY_USEC;
                goto finish;
        }
        if (r < 0) {
                r = outcome_failed(&o, drift, inst->uninstall ? "Uninstalling" : "Failed", "NoKubeconfig",
                                   why);
                goto finish;
        }
        r = helm ? helm_pass(rc, inst, def, kc, kc_len, changed, &o)
                 : manifest_pass(rc, inst, def, kc, kc_len, changed, &o);
        cm_vault_data_free(kc, kc_len);
        kc = NULL;
        if (r == 1) {
                /* Uninstalled: the record goes (AddonUninstalled). */
                r = STORE_CALL(svc->store, install_remove, inst->cluster_id, inst->addon, svc->replica_id);
                if (r < 0 && r != -ESRCH)
                        log_warning_errno(r, "add-on %s on cluster %s/%s: remove the installation: %m",
                                          inst->addon, inst->env, inst->cluster_name);
                else
                        log_info("add-on %s uninstalled from cluster %s/%s", inst->addon, inst->env,
                                 inst->cluster_name);
                goto out;
        }
        if (r >= 0 && o.applied) {
                char ts[40];

                (void) json_object_del(o.status, "failures");
                now_rfc3339(ts, sizeof(ts));
                if (set_phase(o.status, "Applied", "Applied",
                              changed ? "the add-on is applied and rolled out"
                                      : "no drift, or drift corrected") < 0 ||
                    set_condition(o.status, "Applied", "True", "Applied", inst->addon_version ?: "") < 0 ||
                    set_condition(o.status, "Healthy", "True", "RolledOut", "") < 0 ||
                    json_object_set_new(o.status, "observedGeneration", json_integer(inst->generation)) <
                            0 ||
                    json_object_set_new(o.status, "appliedVersion", json_string(inst->addon_version ?: "")) <
                            0 ||
                    json_object_set_new(o.status, "lastDriftCheckTime", json_string(ts)) < 0 ||
                    (changed && set_time(o.status, "lastApplyTime") < 0))
                        r = -ENOMEM;
                if (changed)
                        log_info("add-on %s (%s) applied on cluster %s/%s", inst->addon,
                                 inst->addon_version ?: "", inst->env, inst->cluster_name);
        } else if (r >= 0)
                log_warning("add-on %s on cluster %s/%s: %s: %s", inst->addon, inst->env, inst->cluster_name,
                            jstr(o.status, "reason") ?: "", jstr(o.status, "message") ?: "");

finish:
        if (r == -ENOMEM || !o.status)
                o.next_check_usec = cm_now_usec() + RETRY_FIRST_USEC;
        status = o.status ? json_dumps(o.status, JSON_COMPACT) : NULL;
        inventory = o.inventory ? json_dumps(o.inventory, JSON_COMPACT) : NULL;
        {
                const struct cm_install_outcome out = {
                        .generation_seen = inst->generation,
                        .status_json = status,
                        .inventory_json = inventory,
                        .applied_key = o.applied ? key : NULL,
                        .next_check_usec = o.next_check_usec ?: cm_now_usec() + RETRY_FIRST_USEC
                };

                r = STORE_CALL(svc->store, install_finish, inst->cluster_id, inst->addon, svc->replica_id,
                               &out, cm_now_usec());
                if (r < 0 && r != -ESRCH && r != -ENOENT)
                        log_warning_errno(r, "add-on %s on cluster %s/%s: store the outcome: %m",
                                          inst->addon, inst->env, inst->cluster_name);
        }
out:
        if (kc)
                cm_vault_data_free(kc, kc_len);
        free(status);
        free(inventory);
        json_decref(o.status);
        json_decref(o.inventory);
        cm_cluster_done(&c);
}

/* ---- the thread ---- */

static void *reconciler_main(void *userdata) {
        struct cm_addons_reconciler *rc = userdata;

        (void) pthread_setname_np(pthread_self(), "cm-addons");
        for (;;) {
                struct cm_addon_install *recs = NULL;
                size_t n = 0;
                int r;

                if (reconciler_stopping(rc))
                        break;
                r = STORE_CALL(rc->svc->store, install_claim, rc->svc->replica_id, cm_now_usec(),
                               rc->lease_usec, CLAIM_BATCH, &recs, &n);
                if (r >= 0 && n > 0) {
                        for (size_t i = 0; i < n && !reconciler_stopping(rc); i++)
                                reconcile(rc, &recs[i]);
                        cm_addon_install_array_free(recs, n);
                        continue; /* more may be due */
                }
                if (r < 0 && r != -EAGAIN)
                        log_warning_errno(r, "add-ons: look for due installations: %m");
                pthread_mutex_lock(&rc->lock);
                if (!rc->poked && !rc->stop) {
                        struct timespec ts;

                        clock_gettime(CLOCK_MONOTONIC, &ts);
                        ts.tv_sec += (time_t) (rc->poll_usec / USEC_PER_SEC);
                        ts.tv_nsec += (long) (rc->poll_usec % USEC_PER_SEC) * 1000;
                        if (ts.tv_nsec >= 1000000000L) {
                                ts.tv_sec++;
                                ts.tv_nsec -= 1000000000L;
                        }
                        (void) pthread_cond_timedwait(&rc->cond, &rc->lock, &ts);
                }
                rc->poked = false;
                pthread_mutex_unlock(&rc->lock);
        }
        return NULL;
}

int cm_addons_reconciler_start(struct cm_service *svc, const struct cm_addons_config *cfg) {
        struct cm_addons_reconciler *rc;
        pthread_condattr_t ca;
        int r;

        if (svc->addons)
                return 0;
        rc = new0(struct cm_addons_reconciler, 1);
        if (!rc)
                return -ENOMEM;
        rc->svc = svc;
        rc->lease_usec = cfg && cfg->lease_usec ? cfg->lease_usec : 15 * 60 * USEC_PER_SEC;
        rc->poll_usec = cfg && cfg->poll_usec ? cfg->poll_usec : 2 * USEC_PER_SEC;
        r = cm_addons_helm_dir(svc, rc->helm_dir, sizeof(rc->helm_dir));
        if (r < 0) {
                free(rc);
                return r;
        }
        pthread_mutex_init(&rc->lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&rc->cond, &ca);
        pthread_condattr_destroy(&ca);
        r = -pthread_create(&rc->thread, NULL, reconciler_main, rc);
        if (r < 0) {
                pthread_cond_destroy(&rc->cond);
                pthread_mutex_destroy(&rc->lock);
                free(rc);
                return r;
        }
        svc->addons = rc;
        return 0;
}

void cm_addons_reconciler_stop(struct cm_service *svc) {
        struct cm_addons_reconciler *rc = svc ? svc->addons : NULL;

        if (!rc)
                return;
        pthread_mutex_lock(&rc->lock);
        rc->stop = true;
        pthread_cond_broadcast(&rc->cond);
        pthread_mutex_unlock(&rc->lock);
        (void) pthread_join(rc->thread, NULL);
        pthread_cond_destroy(&rc->cond);
        pthread_mutex_destroy(&rc->lock);
        free(rc);
        svc->addons = NULL;
}

void cm_addons_reconciler_poke(struct cm_service *svc) {
        struct cm_addons_reconciler *rc = svc ? svc->addons : NULL;

        if (!rc)
                return;
        pthread_mutex_lock(&rc->lock);
        rc->poked = true;
        pthread_cond_signal(&rc->cond);
        pthread_mutex_unlock(&rc->lock);
}

int cm_addons_install_baseline(struct cm_service *svc, const char *env, const char *cluster_id) {
        struct cm_addon *defs = NULL;
        size_t n = 0;
        int r;

        r = STORE_CALL(svc->store, addon_list, env, true, &defs, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                int64_t v = 0;
                int q = STORE_CALL(svc->store, install_put, cluster_id, defs[i].name, "{}", 0, cm_now_usec(),
                                   &v);

                if (q < 0 && q != -EEXIST && q != -EBUSY && r >= 0)
                        r = q;
        }
        cm_addon_array_free(defs, n);
        if (n > 0)
                cm_addons_reconciler_poke(svc);
        return r;
}
