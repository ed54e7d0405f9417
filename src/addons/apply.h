/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <jansson.h>

#include "base/common.h"
#include "kube/client.h"
#include "kube/manifest.h"

/*
 * Applying an add-on's objects to a cluster and keeping them there: server-side apply in order (CRDs
 * and Namespaces first, each CRD waited for until Established before anything else), pruning what the
 * add-on no longer has, waiting for workloads to roll out, plans by server-side dry run, drift
 * detection, and removal.
 *
 * The inventory is what the service applied and owns, a JSON array of
 *   {"apiVersion", "kind", "namespace" (namespaced kinds only), "name", "uid", "managedTime", "digest"}
 * in apply order. uid is the object's; managedTime the time of the field manager's Apply entry in
 * metadata.managedFields; digest the hex SHA-256 of the object as it was sent (its JSON with sorted
 * keys; the inventory is stored beside the add-on's definition, which holds the objects themselves).
 *
 * Drift, and what the API server does that its detection relies on (checked against kube-apiserver
 * v1.36, tests/integration/test_addon_apply.py):
 *   - a server-side apply that changes nothing writes nothing: resourceVersion and managedTime stay;
 *   - an apply that writes sets managedTime to the time of the write, at a resolution of one second,
 *     also when the change is the service's own (a new version of the add-on): a changed managedTime
 *     alone is not drift;
 *   - a change by another field manager (kubectl edit, patch, scale, a forced apply) moves the fields
 *     it changed to that manager: an apply without force then fails with a conflict (409) naming them;
 *   - a removal by another manager drops the fields from the service's entry without any conflict.
 * So every object is applied without force first (one request when nothing changed) and, after a
 * conflict, again with force. An object is listed in report.corrected as "recreated" when its uid
 * differs from the previous inventory's, as "reverted" after a conflict, or when the apply wrote
 * (managedTime moved) although the object sent is the one sent last time (digest unchanged): someone
 * had removed fields the service sets. A removal put back within the second of the previous apply is
 * corrected but not reported (managedTime cannot move).
 */

#define CM_ADDON_FIELD_MANAGER "clustermgmt"
#define CM_ADDON_LABEL "addons.cratekube.io/name"

struct cm_apply_options {
        const char *addon; /* the add-on's name: the label CM_ADDON_LABEL on every object, messages */
        const char *default_namespace; /* for namespaced objects without one; NULL: "default" */
        unsigned timeout_sec; /* CRDs established, workloads rolled out; 0: 300 */
        unsigned poll_ms; /* between two looks while waiting; 0: 250 */
        /* Optional: asked between steps; true ends the call with -ECANCELED. */
        bool (*cancelled)(void *userdata);
        void *userdata;
};

/* What an apply, a wait or a removal did. Owned by the caller: cm_apply_report_done(). */
struct cm_apply_report {
        json_t *inventory; /* the objects applied (the inventory to store), on success and on failure */
        json_t *corrected; /* [{apiVersion, kind, namespace?, name, change: "recreated"|"reverted"}] */
        json_t *pruned; /* [{apiVersion, kind, namespace?, name}] deleted because the add-on dropped them */
        /*
         * Requests made to the API server. Discovery is counted once per group version and call: with a
         * client that was used before (its discovery cache warm) this is an upper bound.
         */
        unsigned api_calls;
        /*
         * On failure: ApplyFailed, CRDNotEstablished, PruneFailed, PlanFailed, DeleteFailed, NotHealthy,
         * Timeout, Cancelled.
         */
        char reason[64];
        char message[CM_KUBE_ERROR_MAX]; /* on failure, for people (never a value of the objects) */
};

void cm_apply_report_done(struct cm_apply_report *r);

/*
 * Applies m (sorted with cm_manifest_sort) over the previous inventory (NULL or [] on a first apply):
 * every object without force, and with force after a conflict (the service's fields are the service's),
 * then prunes the objects of the previous inventory that m no longer has, in reverse order. A kind
 * that a CustomResourceDefinition of m defines is waited for until discovery serves it. Drift that the
 * apply corrected is listed in ret->corrected (see above). ret->inventory holds what was applied even
 * when a later object fails, and then also the previous inventory's objects not reached (nor pruned),
 * so that nothing applied is left unrecorded; objects whose pruning failed or was not tried
 * (cancelled) stay in it too. Returns 0 or a negative errno with ret->reason and ret->message set.
 */
_warn_unused_result_ int cm_addon_apply(struct cm_kube *k, const struct cm_manifest *m,
                                        const json_t *previous, const struct cm_apply_options *o,
                                        struct cm_apply_report *ret);

/*
 * Waits until every Deployment, StatefulSet and DaemonSet of the inventory has rolled out and every Job
 * completed. 0; -ETIMEDOUT (reason Timeout, message naming what was not ready and why); -EIO (reason
 * NotHealthy: a Job failed, a Deployment exceeded its progress deadline); -ENOENT (reason NotHealthy:
 * one is gone); -ECANCELED; client errors. ret is not reset (its lists are left as they are): the
 * requests are added to ret->api_calls, and reason and message are set on failure.
 */
_warn_unused_result_ int cm_addon_wait_healthy(struct cm_kube *k, const json_t *inventory,
                                               const struct cm_apply_options *o,
                                               struct cm_apply_report *ret);

/*
 * What applying m would change, asked of the API server with server-side dry runs (nothing changes):
 * a JSON array of {apiVersion, kind, namespace?, name, action: "create"|"update"|"unchanged"|"prune",
 * fields: ["spec", "data", "metadata.labels", ...] (the top-level fields an update changes, those of
 * metadata prefixed)}, in the order of m, then the objects of previous that m no longer has. An object
 * whose kind a CustomResourceDefinition of m defines and the API server does not serve yet is planned
 * as "create". 0 with *ret_plan, or a negative errno with ret->reason and ret->message.
 */
_warn_unused_result_ int cm_addon_plan(struct cm_kube *k, const struct cm_manifest *m,
                                       const json_t *previous, const struct cm_apply_options *o,
                                       json_t **ret_plan, struct cm_apply_report *ret);

/*
 * Deletes every object of the inventory (reverse order, dependents in the background). 0 once the API
 * server accepted every deletion (objects with finalizers, a Namespace, may take a while to go), or a
 * negative errno with ret->reason and ret->message; ret->inventory lists what was not deleted.
 */
_warn_unused_result_ int cm_addon_remove(struct cm_kube *k, const json_t *inventory,
                                         const struct cm_apply_options *o, struct cm_apply_report *ret);

/*
 * Whether a live object has rolled out (pure; the decision cm_addon_wait_healthy() makes): 1 ready (or
 * a kind without a rollout), 0 still progressing, -1 failed. why (may be NULL) says what is awaited or
 * what failed, e.g. "1/2 replicas available".
 */
int cm_addon_object_ready(const json_t *live, char *why, size_t size);
