/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <jansson.h>

#include "api/model.h"
#include "api/problem.h"
#include "base/common.h"
#include "base/strbuf.h"
#include "monitor/health.h"

struct cm_service;
struct cm_engine_ctx;
struct cm_engine_result;

/*
 * Customer access: the namespace, service account and role binding through which the customer of a
 * cluster works in it, and the kubeconfig with a short-lived token that hands that access out.
 *
 * The effective settings of a cluster are spec.customer {namespace, serviceAccount, role} over the
 * settings of its environment (store kind "customer"), over the built-in defaults:
 *
 *   {"enabled": true, "namespace": "customer", "serviceAccount": "customer", "role": "cluster-admin",
 *    "roleScope": "cluster", "tokenLifetimeSeconds": 86400}
 *
 * roleScope "cluster" binds the ClusterRole `role` with a ClusterRoleBinding, "namespace" with a
 * RoleBinding in the customer namespace; either is named clustermgmt-customer-<serviceAccount>. After
 * every successful create and update the three objects are applied by server-side apply (field manager
 * "clustermgmt"), labelled app.kubernetes.io/managed-by: clustermgmt, and what was applied is recorded
 * in the cluster's status.customerAccess. See docs/internals/addons.md.
 */

#define CM_CUSTOMER_SETTINGS_KIND "customer"
#define CM_CUSTOMER_FIELD_MANAGER "clustermgmt"
/* kube-apiserver refuses TokenRequests shorter than 10 minutes. */
#define CM_CUSTOMER_TOKEN_MIN 600U
#define CM_CUSTOMER_TOKEN_MAX 31536000U
#define CM_CUSTOMER_ROLE_MAX 253U
#define CM_CUSTOMER_BINDING_PREFIX "clustermgmt-customer-"

enum cm_customer_scope {
        CM_CUSTOMER_SCOPE_CLUSTER,
        CM_CUSTOMER_SCOPE_NAMESPACE,
        _CM_CUSTOMER_SCOPE_MAX,
};

/* "cluster", "namespace"; NULL out of range. */
const char *cm_customer_scope_to_string(enum cm_customer_scope s);
/* -EINVAL for another string. */
int cm_customer_scope_from_string(const char *s, enum cm_customer_scope *ret);

struct cm_customer_settings {
        bool enabled; /* false: the service neither creates nor removes anything, and hands out no kubeconfig */
        char namespace[64]; /* a DNS label */
        char service_account[64]; /* a DNS label */
        char role[CM_CUSTOMER_ROLE_MAX + 1]; /* a ClusterRole's name */
        enum cm_customer_scope scope;
        unsigned token_lifetime_sec; /* CM_CUSTOMER_TOKEN_MIN..CM_CUSTOMER_TOKEN_MAX */
};

/* The built-in defaults above. */
void cm_customer_settings_default(struct cm_customer_settings *ret);

/*
 * True for a name RBAC accepts in roleRef.name (a path segment name): 1-253 printable ASCII characters
 * without '/' or '%', not "." or "..".
 */
bool cm_customer_role_valid(const char *s);

/*
 * Decodes an environment's settings document (every member optional; a missing one keeps its value
 * from defaults) strictly: unknown members, wrong types, names that are not DNS labels, an invalid role,
 * a roleScope other than "cluster" or "namespace" and a tokenLifetimeSeconds out of bounds are each a
 * field error in p (field paths are the member names) and -EINVAL. ret is written on success only.
 */
int cm_customer_settings_decode(const json_t *doc, const struct cm_customer_settings *defaults,
                                struct cm_customer_settings *ret, struct cm_problem *p);
/* The whole settings document (every member) into out. */
_warn_unused_result_ int cm_customer_settings_encode(const struct cm_customer_settings *s,
                                                     struct strbuf *out);
/*
 * The settings of an environment: the stored document over the built-in defaults (a stored document
 * that no longer decodes counts as none, with a warning in the service log). ret_version (may be NULL)
 * receives the stored version, 0 when none. -ENOENT when the environment does not exist.
 */
int cm_customer_settings_get(struct cm_service *svc, const char *env, struct cm_customer_settings *ret,
                             int64_t *ret_version);

/*
 * A cluster's effective settings: spec.customer (namespace, serviceAccount, role; an empty role keeps
 * the environment's) over env. A spec without customer gives env. -EINVAL with a reason in error when
 * spec.customer holds something unusable (the API validates specs, but not everything RBAC needs).
 */
int cm_customer_effective(const struct cm_customer_settings *env, const json_t *spec,
                          struct cm_customer_settings *ret, char *error, size_t error_size);

/* What status.customerAccess records: the access in place on the cluster. */
struct cm_customer_record {
        char namespace[64];
        char service_account[64];
        char role[CM_CUSTOMER_ROLE_MAX + 1];
        enum cm_customer_scope scope;
        char binding_kind[32]; /* "ClusterRoleBinding" or "RoleBinding" */
        char binding_namespace[64]; /* "" for a ClusterRoleBinding */
        char binding_name[96];
};

/* The record of the access s sets up. */
void cm_customer_record_from_settings(const struct cm_customer_settings *s, struct cm_customer_record *ret);
/*
 * {"namespace","serviceAccount","role","roleScope","binding":{"kind","name","namespace"?}}; NULL when out
 * of memory.
 */
json_t *cm_customer_record_to_json(const struct cm_customer_record *r);
/*
 * Reads status.customerAccess from a cluster's status JSON (the engine's facts). -ENOENT when there is
 * none, -EINVAL when it is malformed. ret is written on success only.
 */
int cm_customer_record_from_status(const char *status_json, struct cm_customer_record *ret);

/* The three objects to apply, each a new JSON object owned by the struct. */
struct cm_customer_objects {
        json_t *namespace;
        json_t *service_account;
        json_t *binding;
};

/* Builds the objects of s (labelled, the binding's subject the service account). -ENOMEM. */
_warn_unused_result_ int cm_customer_objects_build(const struct cm_customer_settings *s,
                                                   struct cm_customer_objects *ret);
/* Frees the objects; accepts a zeroed or half-built struct and leaves it zeroed. */
void cm_customer_objects_done(struct cm_customer_objects *o);

/*
 * The customer kubeconfig (YAML) into out, which should be a secret buffer: the admin kubeconfig's
 * server, CA (and tls-server-name), a user with token, and one context named after the cluster whose
 * namespace is the customer namespace. No client certificate or key, nothing else of admin. expires_usec
 * (0: unknown) is named in a comment. -EINVAL for a token that is not a bearer token (printable ASCII
 * without spaces) or names that could not be written safely; -ENOBUFS; -ENOMEM.
 */
_warn_unused_result_ int cm_customer_kubeconfig_build(const struct cm_kubeconfig *admin, const char *cluster,
                                                      const struct cm_customer_record *rec,
                                                      const char *token, uint64_t expires_usec,
                                                      struct strbuf *out);

/*
 * The step run after an engine's successful create or update (through cm_addons_after_apply()):
 * applies the cluster's customer access with its admin kubeconfig from the state vault, deleting the
 * binding a previous run made when it is no longer the one wanted, and records the access in
 * ret->status_json (the engine's status with customerAccess set). Log lines go to the operation log.
 *
 * Returns 0 when done, or skipped (customer access turned off for the environment, or no admin
 * kubeconfig in the vault: an engine that stores none); -ECANCELED when the operation was cancelled;
 * otherwise a negative errno with ret->message set and ret->retryable true (the engine step is
 * idempotent, so the whole operation can run again).
 */
int cm_customer_access_apply(struct cm_service *svc, struct cm_engine_ctx *ctx,
                             struct cm_engine_result *ret);

/*
 * Mints a token for the cluster's customer service account (TokenRequest with expirationSeconds =
 * lifetime_sec) and builds the customer kubeconfig around it. *ret (wipe and free it) receives the YAML.
 * -ENOENT when the cluster has no admin kubeconfig in the vault or no customer access in place
 * (status.customerAccess), -EOPNOTSUPP without a vault, both with a reason in error; -EREMOTEIO when the
 * cluster's API server could not be reached or refused (error says what it answered); -ENOMEM; -EIO.
 */
int cm_customer_kubeconfig_issue(struct cm_service *svc, const struct cm_cluster *c, unsigned lifetime_sec,
                                 char **ret, size_t *ret_len, char *error, size_t error_size);
