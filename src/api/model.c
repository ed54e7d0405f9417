/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "api/model.h"

static const char *const phase_names[_CM_PHASE_MAX] = {
        [CM_PHASE_PENDING] = "Pending",   [CM_PHASE_PROVISIONING] = "Provisioning",
        [CM_PHASE_READY] = "Ready",       [CM_PHASE_UPDATING] = "Updating",
        [CM_PHASE_DELETING] = "Deleting", [CM_PHASE_FAILED] = "Failed",
};

static const char *const op_type_names[_CM_OP_TYPE_MAX] = {
        [CM_OP_CREATE] = "create",     [CM_OP_UPDATE] = "update",   [CM_OP_DELETE] = "delete",
        [CM_OP_SNAPSHOT] = "snapshot", [CM_OP_RESTORE] = "restore", [CM_OP_ROTATE_CERTS] = "rotate-certs",
};

static const char *const op_state_names[_CM_OP_STATE_MAX] = {
        [CM_OP_PENDING] = "pending", [CM_OP_RUNNING] = "running",     [CM_OP_SUCCEEDED] = "succeeded",
        [CM_OP_FAILED] = "failed",   [CM_OP_CANCELLED] = "cancelled",
};

static int lookup(const char *const *names, size_t n, const char *s) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (names[i] && streq(names[i], s))
                        return (int) i;
        return -EINVAL;
}

const char *cm_phase_to_string(enum cm_phase p) {
        return (unsigned) p < _CM_PHASE_MAX ? phase_names[p] : NULL;
}

int cm_phase_from_string(const char *s, enum cm_phase *ret) {
        int i = lookup(phase_names, _CM_PHASE_MAX, s);
        if (i < 0)
                return i;
        *ret = (enum cm_phase) i;
        return 0;
}

const char *cm_op_type_to_string(enum cm_op_type t) {
        return (unsigned) t < _CM_OP_TYPE_MAX ? op_type_names[t] : NULL;
}

int cm_op_type_from_string(const char *s, enum cm_op_type *ret) {
        int i = lookup(op_type_names, _CM_OP_TYPE_MAX, s);
        if (i < 0)
                return i;
        *ret = (enum cm_op_type) i;
        return 0;
}

const char *cm_op_state_to_string(enum cm_op_state s) {
        return (unsigned) s < _CM_OP_STATE_MAX ? op_state_names[s] : NULL;
}

int cm_op_state_from_string(const char *s, enum cm_op_state *ret) {
        int i = lookup(op_state_names, _CM_OP_STATE_MAX, s);
        if (i < 0)
                return i;
        *ret = (enum cm_op_state) i;
        return 0;
}

void cm_environment_done(struct cm_environment *e) {
        if (!e)
                return;
        free(e->name);
        free(e->labels_json);
        *e = (struct cm_environment){};
}

void cm_cluster_done(struct cm_cluster *c) {
        if (!c)
                return;
        free(c->id);
        free(c->env);
        free(c->name);
        free(c->engine);
        free(c->labels_json);
        free(c->spec_json);
        free(c->conditions_json);
        free(c->status_json);
        *c = (struct cm_cluster){};
}

void cm_operation_done(struct cm_operation *o) {
        if (!o)
                return;
        free(o->id);
        free(o->env);
        free(o->cluster_id);
        free(o->cluster_name);
        free(o->error);
        free(o->lease_owner);
        free(o->requested_by);
        free(o->params_json);
        free(o->result_json);
        free(o->policy_json);
        *o = (struct cm_operation){};
}

void cm_apikey_done(struct cm_apikey *k) {
        if (!k)
                return;
        free(k->id);
        free(k->name);
        free(k->hash);
        free(k->role);
        *k = (struct cm_apikey){};
}

void cm_environment_array_free(struct cm_environment *a, size_t n) {
        for (size_t i = 0; a && i < n; i++)
                cm_environment_done(&a[i]);
        free(a);
}

void cm_cluster_array_free(struct cm_cluster *a, size_t n) {
        for (size_t i = 0; a && i < n; i++)
                cm_cluster_done(&a[i]);
        free(a);
}

void cm_operation_array_free(struct cm_operation *a, size_t n) {
        for (size_t i = 0; a && i < n; i++)
                cm_operation_done(&a[i]);
        free(a);
}
