/* SPDX-License-Identifier: Apache-2.0 */
/* Customer access: settings, the objects applied to a cluster, and the customer kubeconfig. */
#include "base/common.h"

#include <jansson.h>
#include <openssl/evp.h>

#include "addons/customer.h"
#include "api/json.h"
#include "base/log.h"
#include "base/parse.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "engine/engine.h"
#include "kube/client.h"
#include "lifecycle/service.h"
#include "lifecycle/statefiles.h"
#include "vault/vault.h"

/* The state file engines keep the admin kubeconfig in. */
#define ADMIN_KUBECONFIG_FILE "kube_config_cluster.yml"
#define MANAGED_BY_LABEL "app.kubernetes.io/managed-by"
#define COMPONENT_LABEL "app.kubernetes.io/component"
#define RBAC_API "rbac.authorization.k8s.io/v1"
#define SETTINGS_MAX 4096U
#define TOKEN_MAX (16U * 1024U) /* a service account token (a JWT) */
#define KUBECONFIG_OUT_MAX (64U * 1024U)
/* The API server's answer to a TokenRequest: the token and a little metadata. */
#define TOKEN_ANSWER_MAX (64U * 1024U)

static const char *const scope_names[_CM_CUSTOMER_SCOPE_MAX] = {
        [CM_CUSTOMER_SCOPE_CLUSTER] = "cluster",
        [CM_CUSTOMER_SCOPE_NAMESPACE] = "namespace",
};

const char *cm_customer_scope_to_string(enum cm_customer_scope s) {
        return (unsigned) s < _CM_CUSTOMER_SCOPE_MAX ? scope_names[s] : NULL;
}

int cm_customer_scope_from_string(const char *s, enum cm_customer_scope *ret) {
        for (unsigned i = 0; s && i < _CM_CUSTOMER_SCOPE_MAX; i++)
                if (streq(scope_names[i], s)) {
                        *ret = (enum cm_customer_scope) i;
                        return 0;
                }
        return -EINVAL;
}

void cm_customer_settings_default(struct cm_customer_settings *ret) {
        *ret = (struct cm_customer_settings){
                .enabled = true,
                .namespace = "customer",
                .service_account = "customer",
                .role = "cluster-admin",
                .scope = CM_CUSTOMER_SCOPE_CLUSTER,
                .token_lifetime_sec = 86400,
        };
}

bool cm_customer_role_valid(const char *s) {
        _Static_assert(CM_CUSTOMER_ROLE_MAX == CM_KUBE_NAME_MAX, "a role is a Kubernetes object name");
        return cm_kube_name_valid(s);
}

/* ---- settings -------------------------------------------------------------------------------- */

/* A member that must be a DNS label; copied into dst. false (with a field error) otherwise. */
static bool decode_label(const json_t *v, const char *field, char *dst, size_t size, struct cm_problem *p) {
        return cm_json_check_dns_label(v, field, 63, p) && cm_strlcpy(dst, json_string_value(v), size) >= 0;
}

static bool decode_role(const json_t *v, const char *field, char *dst, size_t size, struct cm_problem *p) {
        if (!json_is_string(v)) {
                cm_problem_add(p, field, "must be a string, not %s", cm_json_type_name(v));
                return false;
        }
        if (!cm_customer_role_valid(json_string_value(v))) {
                cm_problem_add(
                        p, field,
                        "must name a ClusterRole: 1-%u printable characters without spaces, '/' or '%%'",
                        CM_CUSTOMER_ROLE_MAX);
                return false;
        }
        return cm_strlcpy(dst, json_string_value(v), size) >= 0;
}

int cm_customer_settings_decode(const json_t *doc, const struct cm_customer_settings *defaults,
                                struct cm_customer_settings *ret, struct cm_problem *p) {
        static const char *const allowed[] = { "enabled", "namespace", "serviceAccount",
                                               "role",    "roleScope", "tokenLifetimeSeconds",
                                               NULL };
        struct cm_customer_settings s = *defaults;
        const json_t *v;
        bool ok;

        if (!json_is_object(doc)) {
                cm_problem_add(p, "", "the settings must be a JSON object");
                return -EINVAL;
        }
        ok = cm_json_check_fields(doc, "", allowed, p);
        if ((v = json_object_get(doc, "enabled"))) {
                if (json_is_boolean(v))
                        s.enabled = json_is_true(v);
                else {
                        cm_problem_add(p, "enabled", "must be true or false, not %s", cm_json_type_name(v));
                        ok = false;
                }
        }
        if ((v = json_object_get(doc, "namespace")) &&
            !decode_label(v, "namespace", s.namespace, sizeof(s.namespace), p))
                ok = false;
        if ((v = json_object_get(doc, "serviceAccount")) &&
            !decode_label(v, "serviceAccount", s.service_account, sizeof(s.service_account), p))
                ok = false;
        if ((v = json_object_get(doc, "role")) && !decode_role(v, "role", s.role, sizeof(s.role), p))
                ok = false;
        if ((v = json_object_get(doc, "roleScope")) &&
            (!json_is_string(v) || cm_customer_scope_from_string(json_string_value(v), &s.scope) < 0)) {
                cm_problem_add(p, "roleScope",
                               "must be \"cluster\" (a ClusterRoleBinding) or \"namespace\" (a "
                               "RoleBinding in the customer namespace)");
                ok = false;
        }
        if ((v = json_object_get(doc, "tokenLifetimeSeconds"))) {
                json_int_t i = json_is_integer(v) ? json_integer_value(v) : -1;

                if (i < (json_int_t) CM_CUSTOMER_TOKEN_MIN || i > (json_int_t) CM_CUSTOMER_TOKEN_MAX) {
                        cm_problem_add(p, "tokenLifetimeSeconds",
                                       "must be an integer from %u (10 minutes, the shortest token the API "
                                       "server issues) to %u (a year)",
                                       CM_CUSTOMER_TOKEN_MIN, CM_CUSTOMER_TOKEN_MAX);
                        ok = false;
                } else
                        s.token_lifetime_sec = (unsigned) i;
        }
        if (!ok)
                return -EINVAL;
        *ret = s;
        return 0;
}

int cm_customer_settings_encode(const struct cm_customer_settings *s, struct strbuf *out) {
        int r;

        if ((r = strbuf_addf(out, "{\"enabled\":%s,\"namespace\":", s->enabled ? "true" : "false")) < 0 ||
            (r = strbuf_add_json_string(out, s->namespace)) < 0 ||
            (r = strbuf_addl(out, ",\"serviceAccount\":")) < 0 ||
            (r = strbuf_add_json_string(out, s->service_account)) < 0 ||
            (r = strbuf_addl(out, ",\"role\":")) < 0 || (r = strbuf_add_json_string(out, s->role)) < 0)
                return r;
        return strbuf_addf(out, ",\"roleScope\":\"%s\",\"tokenLifetimeSeconds\":%u}",
                           cm_customer_scope_to_string(s->scope) ?: "cluster", s->token_lifetime_sec);
}

int cm_customer_settings_get(struct cm_service *svc, const char *env, struct cm_customer_settings *ret,
                             int64_t *ret_version) {
        struct cm_customer_settings defaults = {}, s = {};
        _cleanup_free_ char *stored = NULL;
        int64_t version = 0;
        int r;

        cm_customer_settings_default(&defaults);
        r = STORE_CALL(svc->store, env_settings_get, env, CM_CUSTOMER_SETTINGS_KIND, &stored, &version);
        if (r < 0)
                return r;
        s = defaults;
        if (stored) {
                json_t *doc = strlen(stored) <= SETTINGS_MAX
                                      ? json_loads(stored, JSON_REJECT_DUPLICATES, NULL)
                                      : NULL;
                struct cm_problem p;

                /* Stored settings were validated when written; the defaults fill what they leave out. */
                cm_problem_init(&p);
                if (!doc || cm_customer_settings_decode(doc, &defaults, &s, &p) < 0) {
                        log_warning(
                                "customer access: the stored settings of environment '%s' do not decode; "
                                "using the defaults",
                                env);
                        s = defaults;
                }
                cm_problem_done(&p);
                json_decref(doc);
        }
        *ret = s;
        if (ret_version)
                *ret_version = version;
        return 0;
}

_printf_(3, 4) static int effective_fail(char *error, size_t size, const char *fmt, ...) {
        va_list ap;

        if (error && size > 0) {
                va_start(ap, fmt);
                (void) vsnprintf(error, size, fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

int cm_customer_effective(const struct cm_customer_settings *env, const json_t *spec,
                          struct cm_customer_settings *ret, char *error, size_t error_size) {
        const json_t *c = json_object_get(spec, "customer"), *v;
        struct cm_customer_settings s = *env;

        if (c && !json_is_null(c)) {
                if (!json_is_object(c))
                        return effective_fail(error, error_size, "spec.customer is not an object");
                v = json_object_get(c, "namespace");
                if (v && (!json_is_string(v) || !cm_dns_label_valid(json_string_value(v))))
                        return effective_fail(error, error_size,
                                              "spec.customer.namespace is not a DNS label");
                if (v)
                        (void) cm_strlcpy(s.namespace, json_string_value(v), sizeof(s.namespace));
                v = json_object_get(c, "serviceAccount");
                if (v && (!json_is_string(v) || !cm_dns_label_valid(json_string_value(v))))
                        return effective_fail(error, error_size,
                                              "spec.customer.serviceAccount is not a DNS label");
                if (v)
                        (void) cm_strlcpy(s.service_account, json_string_value(v),
                                          sizeof(s.service_account));
                v = json_object_get(c, "role");
                if (v && !json_is_string(v))
                        return effective_fail(error, error_size, "spec.customer.role is not a string");
                if (v && json_string_length(v) > 0) {
                        if (!cm_customer_role_valid(json_string_value(v)))
                                return effective_fail(
                                        error, error_size,
                                        "spec.customer.role cannot name a ClusterRole (1-%u printable "
                                        "characters without spaces, '/' or '%%')",
                                        CM_CUSTOMER_ROLE_MAX);
                        (void) cm_strlcpy(s.role, json_string_value(v), sizeof(s.role));
                }
        }
        *ret = s;
        return 0;
}

/* ---- the record in status.customerAccess ----------------------------------------------------- */

void cm_customer_record_from_settings(const struct cm_customer_settings *s, struct cm_customer_record *ret) {
        bool cluster = s->scope == CM_CUSTOMER_SCOPE_CLUSTER;

        *ret = (struct cm_customer_record){ .scope = s->scope };
        (void) cm_strlcpy(ret->namespace, s->namespace, sizeof(ret->namespace));
        (void) cm_strlcpy(ret->service_account, s->service_account, sizeof(ret->service_account));
        (void) cm_strlcpy(ret->role, s->role, sizeof(ret->role));
        (void) cm_strlcpy(ret->binding_kind, cluster ? "ClusterRoleBinding" : "RoleBinding",
                          sizeof(ret->binding_kind));
        if (!cluster)
                (void) cm_strlcpy(ret->binding_namespace, s->namespace, sizeof(ret->binding_namespace));
        (void) cm_snprintf(ret->binding_name, sizeof(ret->binding_name), CM_CUSTOMER_BINDING_PREFIX "%s",
                           s->service_account);
}

json_t *cm_customer_record_to_json(const struct cm_customer_record *r) {
        json_t *binding = json_pack("{s:s, s:s}", "kind", r->binding_kind, "name", r->binding_name);

        if (binding && r->binding_namespace[0] &&
            json_object_set_new(binding, "namespace", json_string(r->binding_namespace)) < 0) {
                json_decref(binding);
                return NULL;
        }
        if (!binding)
                return NULL;
        return json_pack("{s:s, s:s, s:s, s:s, s:o}", "namespace", r->namespace, "serviceAccount",
                         r->service_account, "role", r->role, "roleScope",
                         cm_customer_scope_to_string(r->scope) ?: "cluster", "binding", binding);
}

/* A string member copied into dst: false when absent, not a string, or too long. */
static bool member_copy(const json_t *obj, const char *key, char *dst, size_t size) {
        const char *s = json_string_value(json_object_get(obj, key));

        return s && cm_strlcpy(dst, s, size) >= 0;
}

int cm_customer_record_from_status(const char *status_json, struct cm_customer_record *ret) {
        struct cm_customer_record rec = {};
        json_t *status, *ca, *binding;
        int r = -EINVAL;

        if (isempty(status_json))
                return -ENOENT;
        status = json_loads(status_json, 0, NULL);
        ca = json_object_get(status, "customerAccess");
        if (!ca) {
                json_decref(status);
                return -ENOENT;
        }
        binding = json_object_get(ca, "binding");
        if (member_copy(ca, "namespace", rec.namespace, sizeof(rec.namespace)) &&
            member_copy(ca, "serviceAccount", rec.service_account, sizeof(rec.service_account)) &&
            member_copy(ca, "role", rec.role, sizeof(rec.role)) &&
            cm_customer_scope_from_string(json_string_value(json_object_get(ca, "roleScope")), &rec.scope) >=
                    0 &&
            member_copy(binding, "kind", rec.binding_kind, sizeof(rec.binding_kind)) &&
            member_copy(binding, "name", rec.binding_name, sizeof(rec.binding_name)) &&
            (!json_object_get(binding, "namespace") ||
             member_copy(binding, "namespace", rec.binding_namespace, sizeof(rec.binding_namespace))) &&
            cm_dns_label_valid(rec.namespace) && cm_dns_label_valid(rec.service_account)) {
                *ret = rec;
                r = 0;
        }
        json_decref(status);
        return r;
}

/* ---- the objects ------------------------------------------------------------------------------ */

static json_t *labels(void) {
        return json_pack("{s:s, s:s}", MANAGED_BY_LABEL, "clustermgmt", COMPONENT_LABEL, "customer-access");
}

void cm_customer_objects_done(struct cm_customer_objects *o) {
        if (!o)
                return;
        json_decref(o->namespace);
        json_decref(o->service_account);
        json_decref(o->binding);
        *o = (struct cm_customer_objects){};
}

int cm_customer_objects_build(const struct cm_customer_settings *s, struct cm_customer_objects *ret) {
        _cleanup_(cm_customer_objects_done) struct cm_customer_objects o = {};
        struct cm_customer_record rec;
        json_t *meta;

        cm_customer_record_from_settings(s, &rec);
        o.namespace = json_pack("{s:s, s:s, s:{s:s, s:o?}}", "apiVersion", "v1", "kind", "Namespace",
                                "metadata", "name", s->namespace, "labels", labels());
        o.service_account = json_pack("{s:s, s:s, s:{s:s, s:s, s:o?}}", "apiVersion", "v1", "kind",
                                      "ServiceAccount", "metadata", "name", s->service_account, "namespace",
                                      s->namespace, "labels", labels());
        o.binding = json_pack(
                "{s:s, s:s, s:{s:s, s:o?}, s:{s:s, s:s, s:s}, s:[{s:s, s:s, s:s}]}", "apiVersion", RBAC_API,
                "kind", rec.binding_kind, "metadata", "name", rec.binding_name, "labels", labels(),
                "roleRef", "apiGroup", "rbac.authorization.k8s.io", "kind", "ClusterRole", "name", s->role,
                "subjects", "kind", "ServiceAccount", "name", s->service_account, "namespace", s->namespace);
        if (!o.namespace || !o.service_account || !o.binding)
                return -ENOMEM;
        if (rec.binding_namespace[0]) {
                meta = json_object_get(o.binding, "metadata");
                if (json_object_set_new(meta, "namespace", json_string(rec.binding_namespace)) < 0)
                        return -ENOMEM;
        }
        /* json_pack's "o?" leaves a NULL (out of memory) out silently: every object must have its labels. */
        if (!json_object_get(json_object_get(o.namespace, "metadata"), "labels") ||
            !json_object_get(json_object_get(o.service_account, "metadata"), "labels") ||
            !json_object_get(json_object_get(o.binding, "metadata"), "labels"))
                return -ENOMEM;
        *ret = o;
        o = (struct cm_customer_objects){};
        return 0;
}

/* ---- the customer kubeconfig ----------------------------------------------------------------- */

int cm_customer_kubeconfig_build(const struct cm_kubeconfig *admin, const char *cluster,
                                 const struct cm_customer_record *rec, const char *token,
                                 uint64_t expires_usec, struct strbuf *out) {
        _cleanup_free_ char *ca = NULL;
        char user[160], expires[40] = "";
        size_t n;
        int r;

        if (!admin || !admin->server || !admin->ca_pem || admin->ca_len == 0 || admin->ca_len > INT_MAX / 2)
                return -EINVAL;
        if (!cm_dns_label_valid(cluster) || !cm_dns_label_valid(rec->namespace) ||
            !cm_dns_label_valid(rec->service_account) || !cm_ascii_text_valid(token, TOKEN_MAX, false))
                return -EINVAL;
        n = 4 * ((admin->ca_len + 2) / 3) + 1;
        ca = malloc(n);
        if (!ca)
                return -ENOMEM;
        (void) EVP_EncodeBlock((unsigned char *) ca, (const unsigned char *) admin->ca_pem,
                               (int) admin->ca_len);
        (void) cm_snprintf(user, sizeof(user), "%s@%s", rec->service_account, cluster);
        if (expires_usec > 0)
                cm_format_rfc3339(expires_usec, expires, sizeof(expires));

        if ((r = strbuf_addf(
                     out,
                     "# The customer kubeconfig of cluster %s: service account %s in namespace %s%s%s.\n",
                     cluster, rec->service_account, rec->namespace,
                     expires[0] ? ", a token valid until " : "", expires)) < 0 ||
            (r = strbuf_addl(out, "apiVersion: v1\nkind: Config\nclusters:\n- name: ")) < 0 ||
            (r = strbuf_add_json_string(out, cluster)) < 0 ||
            (r = strbuf_addl(out, "\n  cluster:\n    server: ")) < 0 ||
            (r = strbuf_add_json_string(out, admin->server)) < 0 ||
            (r = strbuf_addl(out, "\n    certificate-authority-data: ")) < 0 ||
            (r = strbuf_add_json_string(out, ca)) < 0)
                return r;
        if (admin->tls_server_name && ((r = strbuf_addl(out, "\n    tls-server-name: ")) < 0 ||
                                       (r = strbuf_add_json_string(out, admin->tls_server_name)) < 0))
                return r;
        if ((r = strbuf_addl(out, "\nusers:\n- name: ")) < 0 ||
            (r = strbuf_add_json_string(out, user)) < 0 ||
            (r = strbuf_addl(out, "\n  user:\n    token: ")) < 0 ||
            (r = strbuf_add_json_string(out, token)) < 0 ||
            (r = strbuf_addl(out, "\ncontexts:\n- name: ")) < 0 ||
            (r = strbuf_add_json_string(out, cluster)) < 0 ||
            (r = strbuf_addl(out, "\n  context:\n    cluster: ")) < 0 ||
            (r = strbuf_add_json_string(out, cluster)) < 0 || (r = strbuf_addl(out, "\n    user: ")) < 0 ||
            (r = strbuf_add_json_string(out, user)) < 0 || (r = strbuf_addl(out, "\n    namespace: ")) < 0 ||
            (r = strbuf_add_json_string(out, rec->namespace)) < 0 ||
            (r = strbuf_addl(out, "\ncurrent-context: ")) < 0 ||
            (r = strbuf_add_json_string(out, cluster)) < 0)
                return r;
        return strbuf_addch(out, '\n');
}

/* ---- applying --------------------------------------------------------------------------------- */

_printf_(3, 4) static int step_fail(struct cm_engine_result *ret, int r, const char *fmt, ...) {
        char buf[sizeof(ret->message) - 32];
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        (void) cm_snprintf(ret->message, sizeof(ret->message), "customer access: %s", buf);
        (void) cm_redact(ret->message);
        ret->retryable = true;
        return r;
}

static void ref_of_binding(const struct cm_customer_record *rec, struct cm_kube_ref *ret) {
        *ret = (struct cm_kube_ref){
                .api_version = RBAC_API,
                .kind = rec->binding_kind,
                .namespace = rec->binding_namespace[0] ? rec->binding_namespace : NULL,
                .name = rec->binding_name,
        };
}

/* roleRef cannot change: a binding of the same name that grants another role is deleted first. */
static int binding_prepare(struct cm_kube *k, struct cm_engine_ctx *ctx,
                           const struct cm_customer_record *want, struct cm_kube_error *err) {
        struct cm_kube_ref ref;
        json_t *live = NULL;
        const char *role, *role_kind;
        int r;

        ref_of_binding(want, &ref);
        r = cm_kube_get(k, &ref, &live, err);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        role = json_string_value(json_object_get(json_object_get(live, "roleRef"), "name"));
        role_kind = json_string_value(json_object_get(json_object_get(live, "roleRef"), "kind"));
        if (role && role_kind && streq(role, want->role) && streq(role_kind, "ClusterRole")) {
                json_decref(live);
                return 0;
        }
        json_decref(live);
        cm_engine_ctx_log(ctx, "customer access: %s %s grants another role; replacing it",
                          want->binding_kind, want->binding_name);
        r = cm_kube_delete(k, &ref, err);
        return r < 0 ? r : 0;
}

/* Deletes the binding a previous run made when it is not the one wanted now. */
static int binding_retire(struct cm_kube *k, struct cm_engine_ctx *ctx,
                          const struct cm_customer_record *prev, const struct cm_customer_record *want,
                          struct cm_kube_error *err) {
        struct cm_kube_ref ref;
        int r;

        if (streq(prev->binding_kind, want->binding_kind) &&
            streq(prev->binding_namespace, want->binding_namespace) &&
            streq(prev->binding_name, want->binding_name))
                return 0;
        if (!streq(prev->binding_kind, "ClusterRoleBinding") && !streq(prev->binding_kind, "RoleBinding"))
                return 0;
        ref_of_binding(prev, &ref);
        r = cm_kube_delete(k, &ref, err);
        if (r < 0)
                return r;
        cm_engine_ctx_log(ctx, "customer access: %s the previous binding %s %s%s%s",
                          r > 0 ? "deleted" : "found no", prev->binding_kind, prev->binding_namespace,
                          prev->binding_namespace[0] ? "/" : "", prev->binding_name);
        return 0;
}

/* The engine's status (or the cluster's) with customerAccess set (rec) or removed (NULL). */
static int status_with_record(const struct cm_cluster *c, struct cm_engine_result *ret,
                              const struct cm_customer_record *rec) {
        const char *base = ret->status_json ?: c->status_json;
        json_t *status = !isempty(base) ? json_loads(base, 0, NULL) : json_object(), *v;
        char *text;

        if (!json_is_object(status)) {
                json_decref(status);
                status = json_object();
                if (!status)
                        return -ENOMEM;
        }
        if (rec) {
                v = cm_customer_record_to_json(rec);
                if (!v || json_object_set_new(status, "customerAccess", v) < 0) {
                        json_decref(status);
                        return -ENOMEM;
                }
        } else if (!json_object_get(status, "customerAccess")) {
                json_decref(status);
                return 0; /* nothing to remove: the status stays as the engine left it */
        } else
                (void) json_object_del(status, "customerAccess");
        text = json_dumps(status, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(status);
        if (!text)
                return -ENOMEM;
        free(ret->status_json);
        ret->status_json = text;
        return 0;
}

static int apply_one(struct cm_kube *k, struct cm_engine_ctx *ctx, const json_t *obj,
                     struct cm_kube_error *err) {
        const json_t *meta = json_object_get(obj, "metadata");
        const char *ns = json_string_value(json_object_get(meta, "namespace"));
        int r;

        if (cm_engine_ctx_cancelled(ctx))
                return -ECANCELED;
        r = cm_kube_apply(k, obj, CM_CUSTOMER_FIELD_MANAGER, false, true, NULL, err);
        if (r < 0)
                return r;
        cm_engine_ctx_log(ctx, "customer access: applied %s %s%s%s",
                          json_string_value(json_object_get(obj, "kind")), ns ?: "", ns ? "/" : "",
                          json_string_value(json_object_get(meta, "name")));
        return 0;
}

int cm_customer_access_apply(struct cm_service *svc, struct cm_engine_ctx *ctx,
                             struct cm_engine_result *ret) {
        const struct cm_cluster *c = cm_engine_ctx_cluster(ctx);
        struct cm_customer_settings env = {}, s = {};
        struct cm_customer_record want = {}, prev = {};
        _cleanup_(cm_customer_objects_done) struct cm_customer_objects objs = {};
        _cleanup_(cm_kube_closep) struct cm_kube *k = NULL;
        struct cm_kube_error err = {};
        char *data = NULL, why[256] = "";
        size_t n = 0;
        bool have_prev;
        int r;

        r = cm_customer_settings_get(svc, c->env, &env, NULL);
        if (r < 0)
                return step_fail(ret, r, "cannot read the settings of environment '%s': %s", c->env,
                                 strerror(-r));
        if (!env.enabled) {
                cm_engine_ctx_log(ctx, "customer access is turned off in environment '%s': skipped", c->env);
                r = status_with_record(c, ret, NULL);
                return r < 0 ? step_fail(ret, r, "out of memory") : 0;
        }
        r = cm_customer_effective(&env, cm_engine_ctx_spec(ctx), &s, why, sizeof(why));
        if (r < 0) {
                (void) step_fail(ret, r, "%s", why);
                ret->retryable = false; /* the spec must change first */
                return r;
        }

        r = cm_engine_ctx_load_file(ctx, ADMIN_KUBECONFIG_FILE, &data, &n);
        if (r == -ENOENT || r == -EOPNOTSUPP) {
                cm_engine_ctx_log(ctx,
                                  "customer access skipped: the engine stored no admin kubeconfig for this "
                                  "cluster");
                return 0;
        }
        if (r < 0)
                return step_fail(ret, r, "cannot read the admin kubeconfig from the state vault: %s",
                                 strerror(-r));
        r = cm_kube_open(data, n, NULL, &k, &err);
        cm_vault_data_free(data, n);
        if (r < 0)
                return step_fail(ret, r, "%s", err.message);

        cm_customer_record_from_settings(&s, &want);
        have_prev = cm_customer_record_from_status(c->status_json, &prev) >= 0;
        r = cm_customer_objects_build(&s, &objs);
        if (r < 0)
                return step_fail(ret, r, "out of memory");

        cm_engine_ctx_log(ctx, "customer access: service account %s/%s bound to ClusterRole %s (%s scope)",
                          s.namespace, s.service_account, s.role, cm_customer_scope_to_string(s.scope));
        if ((r = apply_one(k, ctx, objs.namespace, &err)) < 0 ||
            (r = apply_one(k, ctx, objs.service_account, &err)) < 0)
                goto fail;
        if (have_prev && (r = binding_retire(k, ctx, &prev, &want, &err)) < 0)
                goto fail;
        if ((r = binding_prepare(k, ctx, &want, &err)) < 0 ||
            (r = apply_one(k, ctx, objs.binding, &err)) < 0)
                goto fail;
        r = status_with_record(c, ret, &want);
        if (r < 0)
                return step_fail(ret, r, "out of memory");
        return 0;
fail:
        if (r == -ECANCELED)
                return r;
        return step_fail(ret, r, "%s", err.message[0] ? err.message : strerror(-r));
}

/* ---- issuing a kubeconfig --------------------------------------------------------------------- */

int cm_customer_kubeconfig_issue(struct cm_service *svc, const struct cm_cluster *c, unsigned lifetime_sec,
                                 char **ret, size_t *ret_len, char *error, size_t error_size) {
        _cleanup_(cm_kube_closep) struct cm_kube *k = NULL;
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(512), body = STRBUF_INIT(256), answer = {},
                                       out = {};
        _cleanup_(cm_json_wipe_and_free) json_t *doc = NULL;
        struct cm_customer_record rec;
        struct cm_kube_error err = {};
        char *data = NULL, what[256];
        const char *token, *exp;
        uint64_t expires = 0;
        long status = 0;
        size_t n = 0;
        int r;

        r = cm_customer_record_from_status(c->status_json, &rec);
        if (r < 0) {
                (void) cm_snprintf(
                        error, error_size,
                        "customer access is not in place on cluster '%s' (it is set up when a create or "
                        "update succeeds, unless it is turned off for the environment)",
                        c->name);
                return -ENOENT;
        }
        r = cm_state_file_read(svc, c, ADMIN_KUBECONFIG_FILE, &data, &n);
        if (r == -ENOENT || r == -EOPNOTSUPP) {
                (void) cm_snprintf(error, error_size, "no admin kubeconfig is stored for cluster '%s'%s",
                                   c->name, r == -EOPNOTSUPP ? " (this service has no state vault)" : "");
                return r;
        }
        if (r < 0)
                return r;
        r = cm_kube_open(data, n,
                         &(struct cm_kube_options){ .connect_timeout_ms = 5000, .timeout_ms = 15000 }, &k,
                         &err);
        cm_vault_data_free(data, n);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                (void) cm_snprintf(error, error_size, "%s", err.message);
                return -EREMOTEIO;
        }

        (void) cm_snprintf(what, sizeof(what), "request a token for service account %s/%s", rec.namespace,
                           rec.service_account);
        if ((r = strbuf_addf(&path, "/api/v1/namespaces/%s/serviceaccounts/%s/token", rec.namespace,
                             rec.service_account)) < 0 ||
            (r = strbuf_addf(&body,
                             "{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenRequest\","
                             "\"spec\":{\"expirationSeconds\":%u}}",
                             lifetime_sec)) < 0)
                return r;
        strbuf_init_secret(&answer, TOKEN_ANSWER_MAX);
        r = cm_kube_request(k, "POST", path.buf, "application/json", body.buf, body.len, &status, &answer,
                            &err);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                (void) cm_snprintf(error, error_size, "%s: %s", what, err.message);
                return -EREMOTEIO;
        }
        if (status != 200 && status != 201) {
                (void) cm_kube_error_from_answer(&err, what, status, answer.buf, answer.len);
                (void) cm_snprintf(error, error_size, "%s", err.message);
                return -EREMOTEIO;
        }
        doc = json_loadb(answer.buf, answer.len, JSON_REJECT_DUPLICATES, NULL);
        token = json_string_value(json_object_get(json_object_get(doc, "status"), "token"));
        exp = json_string_value(json_object_get(json_object_get(doc, "status"), "expirationTimestamp"));
        if (!cm_ascii_text_valid(token, TOKEN_MAX, false)) {
                (void) cm_snprintf(error, error_size, "%s: the API server's answer holds no usable token",
                                   what);
                return -EREMOTEIO;
        }
        if (exp && cm_parse_rfc3339(exp, &expires) < 0)
                expires = 0;

        strbuf_init_secret(&out, KUBECONFIG_OUT_MAX);
        r = cm_customer_kubeconfig_build(cm_kube_kubeconfig(k), c->name, &rec, token, expires, &out);
        if (r < 0)
                return r == -EINVAL ? -EIO : r;
        *ret = strbuf_detach(&out, ret_len);
        return *ret ? 0 : -ENOMEM;
}
