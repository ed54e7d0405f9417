/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"

/*
 * The service's records as held in memory. Strings are owned by the record (malloc'd) and freed by
 * the matching *_done(); JSON-valued members (labels, spec, conditions, status) hold canonical JSON
 * text (compact, sorted keys) so that they can be stored and spliced into responses without
 * re-encoding.
 */

enum cm_phase {
        CM_PHASE_PENDING,
        CM_PHASE_PROVISIONING,
        CM_PHASE_READY,
        CM_PHASE_UPDATING,
        CM_PHASE_DELETING,
        CM_PHASE_FAILED,
        _CM_PHASE_MAX,
};

enum cm_op_type {
        CM_OP_CREATE,
        CM_OP_UPDATE,
        CM_OP_DELETE,
        CM_OP_SNAPSHOT, /* etcd snapshot of a running cluster; params {"name"}, result {"snapshot"} */
        CM_OP_RESTORE, /* etcd restored from a snapshot; params {"snapshot"} */
        CM_OP_ROTATE_CERTS, /* certificates renewed; params {"rotateCA", "services"} */
        _CM_OP_TYPE_MAX,
};

enum cm_op_state {
        CM_OP_PENDING,
        CM_OP_RUNNING,
        CM_OP_SUCCEEDED,
        CM_OP_FAILED,
        CM_OP_CANCELLED,
        _CM_OP_STATE_MAX,
};

const char *cm_phase_to_string(enum cm_phase p);
int cm_phase_from_string(const char *s, enum cm_phase *ret);
const char *cm_op_type_to_string(enum cm_op_type t);
int cm_op_type_from_string(const char *s, enum cm_op_type *ret);
const char *cm_op_state_to_string(enum cm_op_state s);
int cm_op_state_from_string(const char *s, enum cm_op_state *ret);
static inline bool cm_op_state_terminal(enum cm_op_state s) {
        return s == CM_OP_SUCCEEDED || s == CM_OP_FAILED || s == CM_OP_CANCELLED;
}

struct cm_environment {
        char *name;
        char *labels_json; /* JSON object */
        uint64_t created_usec;
};

struct cm_cluster {
        char *id; /* "cl_" + random; stable across renames of nothing: names are immutable */
        char *env;
        char *name;
        char *engine; /* copy of spec.engine */
        char *labels_json; /* JSON object */
        char *spec_json; /* JSON object, validated */
        int64_t generation; /* +1 on every spec change */
        int64_t resource_version; /* +1 on every write (spec or status) */
        enum cm_phase phase;
        char *conditions_json; /* JSON array of {type,status,reason,message,lastTransitionTime} */
        char *status_json; /* JSON object reported by the engine (endpoint, version, nodes) */
        char *health_json; /* JSON object: the monitor's last health summary (status.health); NULL */
        int64_t observed_generation;
        uint64_t created_usec;
        uint64_t updated_usec;
};

struct cm_operation {
        char *id; /* "op_" + random */
        int64_t seq;
        char *env;
        char *cluster_id;
        char *cluster_name;
        enum cm_op_type type;
        enum cm_op_state state;
        int64_t generation; /* the cluster generation this operation converges to */
        unsigned attempts;
        unsigned max_attempts;
        char *error; /* last error message (already redacted); NULL when none */
        char *lease_owner; /* NULL unless running */
        uint64_t lease_expires_usec;
        uint64_t next_run_usec;
        bool cancel_requested;
        char *requested_by; /* principal name */
        uint64_t created_usec;
        uint64_t started_usec; /* 0 until first claimed */
        uint64_t finished_usec; /* 0 until terminal */
        char *params_json; /* JSON object of the request's parameters; NULL when none */
        char *result_json; /* JSON object of what the operation produced; NULL when nothing */
        char *policy_json; /* the policy decision that admitted it ({mode, deny, warn}); NULL when none */
};

struct cm_apikey {
        char *id;
        char *name;
        char *hash; /* hex SHA-256 of the token; the token itself is never stored */
        char *role; /* global role: "admin" (every environment), or "" (only what role bindings grant) */
        uint64_t created_usec;
        uint64_t expires_usec; /* 0 = never */
        char *owner; /* who it is for (a person or a system); NULL when not given */
        bool revoked;
        uint64_t last_used_usec; /* 0 = never; updated at most once a minute */
};

/* A role granted to a subject in one environment, or in all of them ("*"). */
struct cm_rolebinding {
        char *id; /* "rb_" + random */
        char *env; /* environment name or "*" */
        char *subject_kind; /* "apikey" (its id), "user" (OIDC subject or email), "group" (OIDC group) */
        char *subject;
        char *role; /* "viewer", "operator", "admin" */
        char *created_by;
        uint64_t created_usec;
};

/*
 * One audit record: who (principal, source address, request id) did what (action, resource) with
 * which outcome, when. Records are chained: hash = SHA-256 over the record and prev_hash
 * (cm_audit_hash), so that a change, deletion or reordering inside the chain shows.
 */
struct cm_audit_record {
        int64_t seq; /* 1, 2, 3... assigned by the store */
        uint64_t ts_usec;
        char *principal; /* "apikey:<id>", "user:<subject>", or "anonymous" */
        char *source; /* client address */
        char *request_id;
        char *action; /* "<METHOD> <route pattern>", e.g. "POST /v1/environments/{env}/clusters" */
        char *resource; /* the path requested (no query) */
        char *outcome; /* "committed" (written with the change), "success", "denied", "failed" */
        int status; /* HTTP status; 0 for a record written with the change it records */
        char *prev_hash; /* hex; 64 zeros for the first record */
        char *hash;
};

/*
 * An event: a phase change, a condition transition or an operation starting or ending, recorded by
 * the store in the transaction of the change (never written by hand). data_json holds the
 * type-specific fields (docs/api.md, "Events").
 */
struct cm_event {
        int64_t seq; /* 1, 2, 3...: the SSE id */
        uint64_t ts_usec;
        char *env;
        char *cluster; /* the cluster's name */
        char *cluster_id;
        char *type; /* "PhaseChanged", "ConditionChanged", "OperationStarted", ... */
        char *data_json;
};

/* A webhook of an environment: events POSTed to url, signed with the environment secret `secret`. */
struct cm_webhook {
        char *id; /* "wh_" + random */
        char *env;
        char *name;
        char *url;
        char *secret; /* the name of the environment secret holding the HMAC key */
        char *events_json; /* JSON array of event types; [] means all */
        int64_t cursor; /* the last event handled (delivered or given up) */
        uint64_t created_usec;
};

/* One delivery attempt of an event to a webhook. */
struct cm_webhook_delivery {
        int64_t seq;
        char *webhook_id;
        uint64_t ts_usec;
        int64_t event_seq;
        char *event_type;
        unsigned attempt; /* 1, 2, ... */
        int status_code; /* HTTP status; 0 when none was received */
        char *outcome; /* "delivered", "failed" (will be retried), "gave-up" */
        char *error; /* "" when delivered */
        uint64_t duration_usec;
};

/* The kind of an add-on definition: Kubernetes manifests applied server-side, or a Helm chart. */
enum cm_addon_kind {
        CM_ADDON_MANIFEST,
        CM_ADDON_HELM,
        _CM_ADDON_KIND_MAX,
};

const char *cm_addon_kind_to_string(enum cm_addon_kind k);
int cm_addon_kind_from_string(const char *s, enum cm_addon_kind *ret);

/* An add-on definition of an environment. */
struct cm_addon {
        char *env;
        char *name; /* unique in its environment */
        enum cm_addon_kind kind;
        char *version; /* the definition's own version text (a chart version, a release tag) */
        bool baseline; /* installed on every new cluster of the environment */
        char *doc_json; /* the whole definition as the API stores it (JSON) */
        int64_t resource_version; /* 1 on create, +1 on every change */
        uint64_t created_usec;
        uint64_t updated_usec;
};

/*
 * An installation of an add-on on a cluster, as the store hands it out: the installation's own fields,
 * where it lives (joined from the cluster) and the definition it installs (joined from the add-on of
 * that name in the cluster's environment).
 */
struct cm_addon_install {
        char *cluster_id;
        char *env; /* the cluster's environment */
        char *cluster_name;
        char *addon; /* the definition's name */
        char *values_json; /* JSON object */
        int64_t generation; /* 1 on create, +1 on each change of values and on the uninstall request */
        bool uninstall; /* uninstall requested */
        char *status_json; /* JSON object written by the reconciler; {} before its first write */
        char *inventory_json; /* JSON array of the objects last applied (addons/apply.h, "inventory") */
        char *applied_key; /* what was last applied successfully (the reconciler's digest); NULL: never */
        uint64_t next_check_usec; /* when the reconciler looks again */
        char *lease_owner; /* NULL when no reconciler holds it */
        uint64_t lease_until_usec;
        int64_t resource_version; /* 1 on create, +1 on every change a reader can see */
        uint64_t created_usec;
        uint64_t updated_usec; /* moves with the desired state: values, uninstall request */
        /* the definition (NULL and 0 if it were gone, which the store does not allow) */
        char *addon_version;
        char *addon_doc_json;
        int64_t addon_resource_version;
};

void cm_addon_done(struct cm_addon *a);
void cm_addon_array_free(struct cm_addon *a, size_t n);
void cm_addon_install_done(struct cm_addon_install *i);
void cm_addon_install_array_free(struct cm_addon_install *a, size_t n);

void cm_event_done(struct cm_event *e);
void cm_event_array_free(struct cm_event *a, size_t n);
void cm_webhook_done(struct cm_webhook *w);
void cm_webhook_array_free(struct cm_webhook *a, size_t n);
void cm_webhook_delivery_done(struct cm_webhook_delivery *d);
void cm_webhook_delivery_array_free(struct cm_webhook_delivery *a, size_t n);

void cm_environment_done(struct cm_environment *e);
void cm_cluster_done(struct cm_cluster *c);
void cm_operation_done(struct cm_operation *o);
void cm_apikey_done(struct cm_apikey *k);
void cm_rolebinding_done(struct cm_rolebinding *b);
void cm_audit_record_done(struct cm_audit_record *a);
void cm_apikey_array_free(struct cm_apikey *a, size_t n);
void cm_rolebinding_array_free(struct cm_rolebinding *a, size_t n);
void cm_audit_array_free(struct cm_audit_record *a, size_t n);
/*
 * The chain hash of a record (seq, time, principal, source, request id, action, resource, outcome,
 * status) after prev_hash, as lowercase hex into out (65 bytes). Fields are length-prefixed, so no
 * choice of values can make two records hash alike.
 */
void cm_audit_hash(const struct cm_audit_record *a, const char *prev_hash, char out[static 65]);
void cm_environment_array_free(struct cm_environment *a, size_t n);
void cm_cluster_array_free(struct cm_cluster *a, size_t n);
void cm_operation_array_free(struct cm_operation *a, size_t n);
