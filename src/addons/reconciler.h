/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"

#include <jansson.h>

struct cm_service;
struct cm_addon_install;

/*
 * The add-on reconciler: one thread that claims due installations from the store (a lease per
 * installation, so replicas share the work and a dead replica's claims are taken over), brings each
 * cluster to what its installation asks for, and writes the outcome:
 *
 * - manifest add-ons: server-side apply in order, prune, rollout wait (addons/apply.h); every
 *   driftIntervalSeconds the same apply again, which re-creates deleted objects and reverts changed
 *   fields, each correction counted in status.corrections (an AddonDriftCorrected event);
 * - Helm add-ons: `helm upgrade --install --atomic --wait` when the definition or the values changed;
 *   every driftIntervalSeconds a check that each object of the release still exists, and an upgrade
 *   with the same values when one is gone (Helm re-creates missing objects);
 * - uninstall: the objects of the inventory deleted (or `helm uninstall`), then the record.
 *
 * A cluster that is not Ready is looked at again later; a failure is retried with backoff (30 s,
 * doubling up to the drift interval). Nothing here logs a value of a manifest or of Helm values.
 */

struct cm_addons_config {
        uint64_t lease_usec; /* 0: 15 min */
        uint64_t poll_usec; /* how often the store is asked for due work when nothing pokes; 0: 2 s */
};

int cm_addons_reconciler_start(struct cm_service *svc, const struct cm_addons_config *cfg);
void cm_addons_reconciler_stop(struct cm_service *svc);
/* Work may be due now (a definition or installation changed): the reconciler looks at once. */
void cm_addons_reconciler_poke(struct cm_service *svc);

/*
 * Installs the environment's baseline add-ons on a cluster (installation records with default values;
 * those that exist are left alone) and pokes the reconciler. Called after every successful create and
 * update, so a baseline add-on defined later reaches existing clusters at their next update.
 */
int cm_addons_install_baseline(struct cm_service *svc, const char *env, const char *cluster_id);

/* The helm binary of Helm add-ons (`serve --helm-path`); NULL: cm_helm_default_binary(). -ENAMETOOLONG. */
int cm_addons_set_helm_path(const char *path);
/* The binary set, or NULL for helm.h's default. */
const char *cm_addons_helm_path(void);
/* The service's helm directory (charts cache, configuration): <data dir>/helm, absolute. */
int cm_addons_helm_dir(const struct cm_service *svc, char *buf, size_t size);

/*
 * The values a Helm add-on is installed with: the definition's "values", with the installation's values
 * (JSON text of an object) merged over them recursively, as Helm merges value files. Returns 0 with a
 * new object in *ret (it may hold secrets: free it with cm_json_wipe_and_free()), -EINVAL, -ENOMEM.
 */
int cm_addons_helm_values(const json_t *definition, const char *values_json, json_t **ret);
