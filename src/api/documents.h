/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <jansson.h>

#include "api/model.h"
#include "api/problem.h"
#include "base/common.h"

/*
 * Decoders of request bodies. Each decodes strictly (api/json.h), validates every field it knows,
 * collects all field errors into the problem (422) rather than stopping at the first, and on success
 * hands over canonical JSON text ready to store.
 */

struct cm_env_doc {
        char *name;
        char *labels_json;
};

enum cm_cluster_doc_mode {
        CM_CLUSTER_DOC_CREATE, /* name required */
        CM_CLUSTER_DOC_UPDATE, /* name optional; must match the cluster when given */
};

struct cm_cluster_doc {
        char *name; /* NULL when absent (update) */
        char *labels_json; /* NULL when absent */
        char *spec_json;
        char *engine;
        json_t *spec; /* parsed spec, for the engine's validation */
};

void cm_env_doc_done(struct cm_env_doc *d);
void cm_cluster_doc_done(struct cm_cluster_doc *d);

int cm_env_doc_decode(const char *body, size_t n, struct cm_env_doc *ret, struct cm_problem *p);

/*
 * Decodes and validates a cluster document: name (DNS label), labels, and the spec's common part
 * (engine, kubernetesVersion, customer, addons; the engine sections must match spec.engine). The
 * engine's own part is validated by its validate() through the registry: an engine that is not
 * registered is a field error naming the registered ones.
 */
int cm_cluster_doc_decode(const char *body, size_t n, enum cm_cluster_doc_mode mode,
                          struct cm_cluster_doc *ret, struct cm_problem *p);

/* The etcd services whose certificates `rotate-certs` can renew alone. */
#define CM_ROTATE_SERVICES                                                                                  \
        "etcd, kubelet, kube-apiserver, kube-proxy, kube-scheduler, kube-controller-manager"

/*
 * Decodes the body of an operation on a running cluster (an empty body is {}) into its canonical
 * parameters (*ret_params_json, a JSON object):
 * - CM_OP_SNAPSHOT: {"name"?} — a snapshot name (1-128 of A-Z a-z 0-9 . _ -, starting with a letter
 *   or digit); when absent, "<cluster>-<UTC time>" (from now_usec) is chosen.
 * - CM_OP_RESTORE: {"snapshot"} — the name of the snapshot to restore, required.
 * - CM_OP_ROTATE_CERTS: {"rotateCA"?: bool, "services"?: [names of CM_ROTATE_SERVICES]}; an empty or
 *   absent list renews every service's certificate.
 * -EINVAL with field errors in p; -EOPNOTSUPP for another type.
 */
int cm_cluster_action_decode(enum cm_op_type type, const char *cluster, const char *body, size_t n,
                             uint64_t now_usec, char **ret_params_json, struct cm_problem *p);

/* True for a valid snapshot name (see cm_cluster_action_decode). */
bool cm_snapshot_name_valid(const char *s);
