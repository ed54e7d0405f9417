/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "api/model.h"
#include "api/problem.h"
#include "base/common.h"
#include "kube/manifest.h"

/*
 * The documents of the add-on API: a definition of an environment and an installation's request.
 * Decoding is strict like the other documents (api/documents.h): unknown members are refused, every
 * wrong member is a field error of a 422 problem, and no reason quotes a value of the input (manifests
 * and Helm values may carry secrets).
 *
 * A definition (POST/PUT /v1/environments/{env}/addons[/{addon}]):
 *
 *   name                  DNS-1123 label of at most CM_ADDON_NAME_MAX characters (also the Helm release)
 *   kind                  "manifest" | "helm"
 *   version               1-64 printable ASCII characters (the definition's own version, required)
 *   description           optional, at most CM_ADDON_DESCRIPTION_MAX bytes
 *   baseline              bool, default false: installed on every new cluster of the environment
 *   namespace             DNS label, default "default": for namespaced objects without one / the release
 *   manifests             kind manifest only (required): YAML documents or JSON, parsed with
 *                         cm_manifest_parse() at once (its reason, with document and line, on failure)
 *   chart                 kind helm only (required): {repository, name, version} or {oci, version}
 *   values                object, default {}: the chart's values (must be {} for kind manifest)
 *   timeoutSeconds        CM_ADDON_TIMEOUT_MIN..CM_ADDON_TIMEOUT_MAX, default CM_ADDON_TIMEOUT_DEFAULT
 *   driftIntervalSeconds  CM_ADDON_DRIFT_MIN..CM_ADDON_DRIFT_MAX, default CM_ADDON_DRIFT_DEFAULT
 *
 * The canonical document (sorted keys, defaults filled, description only when given) is what the store
 * keeps as the definition's doc_json and what the reconciler reads.
 */

#define CM_ADDON_NAME_MAX 53U
#define CM_ADDON_VERSION_MAX 64U
#define CM_ADDON_DESCRIPTION_MAX 1024U
#define CM_ADDON_NAMESPACE_DEFAULT "default"
#define CM_ADDON_TIMEOUT_MIN 10U
#define CM_ADDON_TIMEOUT_MAX 3600U
#define CM_ADDON_TIMEOUT_DEFAULT 300U
#define CM_ADDON_DRIFT_MIN 10U
#define CM_ADDON_DRIFT_MAX 86400U
#define CM_ADDON_DRIFT_DEFAULT 300U
/* Installation values (compact JSON), as Helm takes them (addons/helm.h CM_HELM_VALUES_MAX). */
#define CM_ADDON_VALUES_MAX (1024U * 1024U)
/*
 * The request body cap of the definition routes: manifests of up to CM_MANIFEST_MAX bytes escaped in a
 * JSON string (newlines and quotes take two bytes), values and the other members. Other routes keep
 * the server's cap.
 */
#define CM_ADDON_BODY_MAX (CM_MANIFEST_MAX + CM_MANIFEST_MAX / 2U + CM_ADDON_VALUES_MAX + 64U * 1024U)
/* The body cap of the installation routes (values and the add-on's name). */
#define CM_ADDON_INSTALL_BODY_MAX (2U * CM_ADDON_VALUES_MAX + 64U * 1024U)

enum cm_addon_doc_mode {
        CM_ADDON_DOC_CREATE, /* name required */
        CM_ADDON_DOC_REPLACE, /* name optional; must be the path's name when given */
};

struct cm_addon_doc {
        char *name;
        enum cm_addon_kind kind;
        char *version;
        bool baseline;
        char *doc_json; /* the canonical document; may hold secrets (a Secret manifest): wiped when freed */
};

/* Wipes and frees; accepts NULL and a zeroed document, and leaves it zeroed. */
void cm_addon_doc_done(struct cm_addon_doc *d);

/*
 * Decodes and validates a definition. path_name: the {addon} of a PUT (CM_ADDON_DOC_REPLACE), NULL on
 * create. 0 with *ret filled; -EINVAL with p set (400 for a body that is not a JSON object, 413 for a
 * string or body over the limits, 422 with field errors); -ENOMEM. *ret is written on success only.
 */
_warn_unused_result_ int cm_addon_doc_decode(const char *body, size_t n, enum cm_addon_doc_mode mode,
                                             const char *path_name, struct cm_addon_doc *ret,
                                             struct cm_problem *p);

/*
 * Decodes an installation request: on create (path_addon NULL) {"addon": name, "values"?: object},
 * on a change {"values": object} (an "addon" member must be path_addon). Values default to {} on
 * create, are required on a change, and are at most CM_ADDON_VALUES_MAX bytes as compact JSON.
 * *ret_addon (create only; may be NULL otherwise) and *ret_values_json (canonical JSON; wiped by the
 * caller with cm_erase_and_free) on success; -EINVAL with p set; -ENOMEM.
 */
_warn_unused_result_ int cm_addon_install_doc_decode(const char *body, size_t n, const char *path_addon,
                                                     char **ret_addon, char **ret_values_json,
                                                     struct cm_problem *p);

/* True for a valid add-on name: a DNS-1123 label of at most CM_ADDON_NAME_MAX characters. */
bool cm_addon_name_valid(const char *s);
