/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <openssl/evp.h>

#include "api/model.h"
#include "base/strbuf.h"
#include "base/util.h"

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

static const char *const addon_kind_names[_CM_ADDON_KIND_MAX] = {
        [CM_ADDON_MANIFEST] = "manifest",
        [CM_ADDON_HELM] = "helm",
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

const char *cm_addon_kind_to_string(enum cm_addon_kind k) {
        return (unsigned) k < _CM_ADDON_KIND_MAX ? addon_kind_names[k] : NULL;
}

int cm_addon_kind_from_string(const char *s, enum cm_addon_kind *ret) {
        int i = lookup(addon_kind_names, _CM_ADDON_KIND_MAX, s);
        if (i < 0)
                return i;
        *ret = (enum cm_addon_kind) i;
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
        free(c->health_json);
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
        free(k->owner);
        *k = (struct cm_apikey){};
}

void cm_rolebinding_done(struct cm_rolebinding *b) {
        if (!b)
                return;
        free(b->id);
        free(b->env);
        free(b->subject_kind);
        free(b->subject);
        free(b->role);
        free(b->created_by);
        *b = (struct cm_rolebinding){};
}

void cm_audit_record_done(struct cm_audit_record *a) {
        if (!a)
                return;
        free(a->principal);
        free(a->source);
        free(a->request_id);
        free(a->action);
        free(a->resource);
        free(a->outcome);
        free(a->prev_hash);
        free(a->hash);
        *a = (struct cm_audit_record){};
}

void cm_event_done(struct cm_event *e) {
        if (!e)
                return;
        free(e->env);
        free(e->cluster);
        free(e->cluster_id);
        free(e->type);
        free(e->data_json);
        *e = (struct cm_event){};
}

void cm_event_array_free(struct cm_event *a, size_t n) {
        for (size_t i = 0; a && i < n; i++)
                cm_event_done(&a[i]);
        free(a);
}

void cm_addon_done(struct cm_addon *a) {
        if (!a)
                return;
        free(a->env);
        free(a->name);
        free(a->version);
        free(a->doc_json);
        *a = (struct cm_addon){};
}

void cm_addon_array_free(struct cm_addon *a, size_t n) {
        for (size_t i = 0; a && i < n; i++)
                cm_addon_done(&a[i]);
        free(a);
}

void cm_addon_install_done(struct cm_addon_install *i) {
        if (!i)
                return;
        free(i->cluster_id);
        free(i->env);
        free(i->cluster_name);
        free(i->addon);
        free(i->values_json);
        free(i->status_json);
        free(i->inventory_json);
        free(i->applied_key);
        free(i->lease_owner);
        free(i->addon_version);
        free(i->addon_doc_json);
        *i = (struct cm_addon_install){};
}

void cm_addon_install_array_free(struct cm_addon_install *a, size_t n) {
        for (size_t i = 0; a && i < n; i++)
                cm_addon_install_done(&a[i]);
        free(a);
}

void cm_webhook_done(struct cm_webhook *w) {
        if (!w)
                return;
        free(w->id);
        free(w->env);
        free(w->name);
        free(w->url);
        free(w->secret);
        free(w->events_json);
        *w = (struct cm_webhook){};
}

void cm_webhook_array_free(struct cm_webhook *a, size_t n) {
        for (size_t i = 0; a && i < n; i++)
                cm_webhook_done(&a[i]);
        free(a);
}

void cm_webhook_delivery_done(struct cm_webhook_delivery *d) {
        if (!d)
                return;
        free(d->webhook_id);
        free(d->event_type);
        free(d->outcome);
        free(d->error);
        *d = (struct cm_webhook_delivery){};
}

void cm_webhook_delivery_array_free(struct cm_webhook_delivery *a, size_t n) {
        for (size_t i = 0; a && i < n; i++)
                cm_webhook_delivery_done(&a[i]);
        free(a);
}

void cm_apikey_array_free(struct cm_apikey *a, size_t n) {
        for (size_t i = 0; a && i < n; i++)
                cm_apikey_done(&a[i]);
        free(a);
}

void cm_rolebinding_array_free(struct cm_rolebinding *a, size_t n) {
        for (size_t i = 0; a && i < n; i++)
                cm_rolebinding_done(&a[i]);
        free(a);
}

void cm_audit_array_free(struct cm_audit_record *a, size_t n) {
        for (size_t i = 0; a && i < n; i++)
                cm_audit_record_done(&a[i]);
        free(a);
}

static void hash_field(EVP_MD_CTX *md, const char *s) {
        uint64_t n = s ? strlen(s) : 0;
        unsigned char len[8];

        for (int i = 0; i < 8; i++)
                len[i] = (unsigned char) (n >> (56 - 8 * i));
        (void) EVP_DigestUpdate(md, len, sizeof(len));
        if (n)
                (void) EVP_DigestUpdate(md, s, n);
}

void cm_audit_hash(const struct cm_audit_record *a, const char *prev_hash, char out[static 65]) {
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned dlen = 0;
        char num[3][24];
        EVP_MD_CTX *md = EVP_MD_CTX_new();

        (void) cm_snprintf(num[0], sizeof(num[0]), "%" PRIi64, a->seq);
        (void) cm_snprintf(num[1], sizeof(num[1]), "%" PRIu64, a->ts_usec);
        (void) cm_snprintf(num[2], sizeof(num[2]), "%d", a->status);
        if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
                EVP_MD_CTX_free(md);
                memset(out, '!', 64); /* matches no real hash: verification fails loudly */
                out[64] = 0;
                return;
        }
        hash_field(md, "cm-audit-1");
        hash_field(md, prev_hash);
        hash_field(md, num[0]);
        hash_field(md, num[1]);
        hash_field(md, a->principal);
        hash_field(md, a->source);
        hash_field(md, a->request_id);
        hash_field(md, a->action);
        hash_field(md, a->resource);
        hash_field(md, a->outcome);
        hash_field(md, num[2]);
        (void) EVP_DigestFinal_ex(md, digest, &dlen);
        EVP_MD_CTX_free(md);
        cm_hex(digest, dlen, out);
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
