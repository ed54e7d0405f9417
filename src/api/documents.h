/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <jansson.h>

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
