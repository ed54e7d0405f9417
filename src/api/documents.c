/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <ctype.h>

#include "api/documents.h"
#include "api/json.h"
#include "base/parse.h"
#include "base/util.h"
#include "engine/engine.h"

void cm_env_doc_done(struct cm_env_doc *d) {
        if (!d)
                return;
        free(d->name);
        free(d->labels_json);
        *d = (struct cm_env_doc){};
}

void cm_cluster_doc_done(struct cm_cluster_doc *d) {
        if (!d)
                return;
        free(d->name);
        free(d->labels_json);
        free(d->spec_json);
        free(d->engine);
        json_decref(d->spec);
        *d = (struct cm_cluster_doc){};
}

static bool check_name(const json_t *v, const char *field, struct cm_problem *p) {
        return cm_json_check_dns_label(v, field, 63, p);
}

static int finish_validation(struct cm_problem *p) {
        if (cm_problem_has_errors(p) || p->status != 0) {
                if (p->status == 0)
                        cm_problem_validation(p, "the request body is not valid; see errors");
                return -EINVAL;
        }
        return 0;
}

int cm_env_doc_decode(const char *body, size_t n, struct cm_env_doc *ret, struct cm_problem *p) {
        static const char *const allowed[] = { "name", "labels", NULL };
        _cleanup_(cm_env_doc_done) struct cm_env_doc d = {};
        json_t *root = NULL, *v;
        int r;

        r = cm_json_parse_strict(body, n, &root, p);
        if (r < 0)
                return r;
        (void) cm_json_check_fields(root, "", allowed, p);
        v = json_object_get(root, "name");
        if (!v)
                cm_problem_add(p, "name", "required");
        else if (check_name(v, "name", p) && !(d.name = strdup(json_string_value(v))))
                goto oom;
        v = json_object_get(root, "labels");
        if (v && cm_labels_validate(v, "labels", p) && !(d.labels_json = cm_json_canonical(v)))
                goto oom;
        json_decref(root);
        r = finish_validation(p);
        if (r < 0)
                return r;
        if (!d.labels_json && !(d.labels_json = strdup("{}")))
                return -ENOMEM;
        *ret = d;
        d = (struct cm_env_doc){};
        return 0;
oom:
        json_decref(root);
        return -ENOMEM;
}

static bool check_string(const json_t *v, const char *field, size_t max, struct cm_problem *p) {
        if (!json_is_string(v)) {
                cm_problem_add(p, field, "must be a string, not %s", cm_json_type_name(v));
                return false;
        }
        if (strlen(json_string_value(v)) > max) {
                cm_problem_add(p, field, "must be at most %zu characters", max);
                return false;
        }
        return true;
}

/* "v1.32.13-rancher1-2", "v1.36.1": a 'v', three dot-separated numbers, an optional suffix. */
static bool kubernetes_version_valid(const char *s) {
        const char *q = s;

        if (*q++ != 'v')
                return false;
        for (int part = 0; part < 3; part++) {
                if (*q < '0' || *q > '9')
                        return false;
                while (*q >= '0' && *q <= '9')
                        q++;
                if (part < 2 && *q++ != '.')
                        return false;
        }
        if (*q == 0)
                return true;
        if (*q != '-' && *q != '+')
                return false;
        for (q++; *q; q++)
                if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
                      *q == '-' || *q == '.' || *q == '+'))
                        return false;
        return true;
}

static void validate_customer(const json_t *c, struct cm_problem *p) {
        static const char *const allowed[] = { "namespace", "serviceAccount", "role", NULL };
        static const char *const fields[] = { "namespace", "serviceAccount" };

        if (!json_is_object(c)) {
                cm_problem_add(p, "spec.customer", "must be an object, not %s", cm_json_type_name(c));
                return;
        }
        (void) cm_json_check_fields(c, "spec.customer", allowed, p);
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                const json_t *v = json_object_get(c, fields[i]);
                char field[64];

                cm_json_path(field, sizeof(field), "spec.customer", fields[i]);
                if (v)
                        (void) check_name(v, field, p);
        }
        if (json_object_get(c, "role"))
                (void) check_string(json_object_get(c, "role"), "spec.customer.role", 253, p);
}

static void validate_addons(const json_t *a, struct cm_problem *p) {
        static const char *const allowed[] = { "name", "values", NULL };
        size_t i;
        json_t *e;

        if (!json_is_array(a)) {
                cm_problem_add(p, "spec.addons", "must be an array, not %s", cm_json_type_name(a));
                return;
        }
        if (json_array_size(a) > 64) {
                cm_problem_add(p, "spec.addons", "at most 64 add-ons");
                return;
        }
        json_array_foreach(CM_UNCONST(json_t *, a), i, e) {
                char base[64], field[96];

                cm_json_path_index(base, sizeof(base), "spec.addons", i);
                if (!json_is_object(e)) {
                        cm_problem_add(p, base, "must be an object, not %s", cm_json_type_name(e));
                        continue;
                }
                (void) cm_json_check_fields(e, base, allowed, p);
                cm_json_path(field, sizeof(field), base, "name");
                if (!json_object_get(e, "name"))
                        cm_problem_add(p, field, "required");
                else
                        (void) check_name(json_object_get(e, "name"), field, p);
                cm_json_path(field, sizeof(field), base, "values");
                if (json_object_get(e, "values") && !json_is_object(json_object_get(e, "values")))
                        cm_problem_add(p, field, "must be an object");
        }
}

/* Engine sections a spec may carry; the one matching spec.engine is validated by the engine. */
static const char *const engine_sections[] = { "local", "rke", "test", NULL };

static void validate_spec(const json_t *spec, struct cm_problem *p, const char **ret_engine) {
        static const char *const allowed[] = { "engine", "kubernetesVersion", "local",  "rke",
                                               "test",   "customer",          "addons", NULL };
        const struct cm_engine_ops *eng = NULL;
        const json_t *v;
        const char *engine = NULL;

        if (!json_is_object(spec)) {
                cm_problem_add(p, "spec", "must be an object, not %s", cm_json_type_name(spec));
                return;
        }
        (void) cm_json_check_fields(spec, "spec", allowed, p);

        v = json_object_get(spec, "engine");
        if (!v)
                cm_problem_add(p, "spec.engine", "required");
        else if (check_string(v, "spec.engine", 63, p)) {
                engine = json_string_value(v);
                eng = cm_engine_find(engine);
                if (!eng) {
                        char names[256];

                        cm_engine_names(names, sizeof(names));
                        if (names[0])
                                cm_problem_add(p, "spec.engine",
                                               "unknown engine '%s'; registered engines: %s",
                                               strlen(engine) > 32 ? "<long name>" : engine, names);
                        else
                                cm_problem_add(p, "spec.engine",
                                               "unknown engine '%s'; this build has no engines registered",
                                               strlen(engine) > 32 ? "<long name>" : engine);
                }
        }

        v = json_object_get(spec, "kubernetesVersion");
        if (v && check_string(v, "spec.kubernetesVersion", 64, p) && json_string_length(v) > 0 &&
            !kubernetes_version_valid(json_string_value(v)))
                cm_problem_add(
                        p, "spec.kubernetesVersion",
                        "must look like v1.32.13 or v1.32.13-rancher1-2 (or be empty for the default)");

        for (const char *const *s = engine_sections; *s; s++) {
                char field[32];

                if (!json_object_get(spec, *s))
                        continue;
                cm_json_path(field, sizeof(field), "spec", *s);
                if (engine && !streq(engine, *s))
                        cm_problem_add(p, field, "only allowed with engine '%s'", *s);
        }

        v = json_object_get(spec, "customer");
        if (v)
                validate_customer(v, p);
        v = json_object_get(spec, "addons");
        if (v)
                validate_addons(v, p);

        if (eng && eng->validate)
                (void) eng->validate(spec, p);
        if (eng)
                *ret_engine = eng->name;
}

int cm_cluster_doc_decode(const char *body, size_t n, enum cm_cluster_doc_mode mode,
                          struct cm_cluster_doc *ret, struct cm_problem *p) {
        static const char *const allowed[] = { "name", "labels", "spec", NULL };
        _cleanup_(cm_cluster_doc_done) struct cm_cluster_doc d = {};
        const char *engine = NULL;
        json_t *root = NULL, *v;
        int r;

        r = cm_json_parse_strict(body, n, &root, p);
        if (r < 0)
                return r;
        (void) cm_json_check_fields(root, "", allowed, p);

        v = json_object_get(root, "name");
        if (!v) {
                if (mode == CM_CLUSTER_DOC_CREATE)
                        cm_problem_add(p, "name", "required");
        } else if (check_name(v, "name", p) && !(d.name = strdup(json_string_value(v))))
                goto oom;

        v = json_object_get(root, "labels");
        if (v && cm_labels_validate(v, "labels", p) && !(d.labels_json = cm_json_canonical(v)))
                goto oom;

        v = json_object_get(root, "spec");
        if (!v)
                cm_problem_add(p, "spec", "required");
        else {
                validate_spec(v, p, &engine);
                if (engine) {
                        d.engine = strdup(engine);
                        d.spec = json_incref(v);
                        d.spec_json = cm_json_canonical(v);
                        if (!d.engine || !d.spec_json)
                                goto oom;
                }
        }
        json_decref(root);

        r = finish_validation(p);
        if (r < 0)
                return r;
        *ret = d;
        d = (struct cm_cluster_doc){};
        return 0;
oom:
        json_decref(root);
        return -ENOMEM;
}

bool cm_snapshot_name_valid(const char *s) {
        size_t n = s ? strlen(s) : 0;

        if (n == 0 || n > 128 || !isalnum((unsigned char) s[0]))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char) s[i]) && !strchr("._-", s[i]))
                        return false;
        return true;
}

static const char *const rotate_services[] = {
        "etcd", "kubelet", "kube-apiserver", "kube-proxy", "kube-scheduler", "kube-controller-manager", NULL,
};

static void check_snapshot_name(const json_t *v, const char *field, struct cm_problem *p) {
        if (!json_is_string(v))
                cm_problem_add(p, field, "must be a string, not %s", cm_json_type_name(v));
        else if (!cm_snapshot_name_valid(json_string_value(v)))
                cm_problem_add(
                        p, field,
                        "must be 1-128 characters of A-Z, a-z, 0-9, '.', '_' and '-', starting with a "
                        "letter or digit");
}

static void check_rotate(json_t *root, struct cm_problem *p) {
        const json_t *v = json_object_get(root, "rotateCA"), *svc;
        size_t i;

        if (v && !json_is_boolean(v))
                cm_problem_add(p, "rotateCA", "must be true or false, not %s", cm_json_type_name(v));
        v = json_object_get(root, "services");
        if (!v)
                return;
        if (!json_is_array(v)) {
                cm_problem_add(p, "services", "must be a list of service names, not %s",
                               cm_json_type_name(v));
                return;
        }
        json_array_foreach(v, i, svc) {
                char f[64];
                bool known = false;

                cm_json_path_index(f, sizeof(f), "services", i);
                for (size_t k = 0; json_is_string(svc) && rotate_services[k]; k++)
                        known = known || streq(rotate_services[k], json_string_value(svc));
                if (!known)
                        cm_problem_add(p, f, "must be one of: " CM_ROTATE_SERVICES);
                for (size_t k = 0; known && k < i; k++)
                        if (json_equal(json_array_get(v, k), CM_UNCONST(json_t *, svc)))
                                cm_problem_add(p, f, "is listed twice");
        }
}

int cm_cluster_action_decode(enum cm_op_type type, const char *cluster, const char *body, size_t n,
                             uint64_t now_usec, char **ret_params_json, struct cm_problem *p) {
        static const char *const snapshot_fields[] = { "name", NULL };
        static const char *const restore_fields[] = { "snapshot", NULL };
        static const char *const rotate_fields[] = { "rotateCA", "services", NULL };
        json_t *root = NULL;
        char *out = NULL;
        int r;

        if (type != CM_OP_SNAPSHOT && type != CM_OP_RESTORE && type != CM_OP_ROTATE_CERTS)
                return -EOPNOTSUPP;
        if (n == 0)
                root = json_object();
        else {
                r = cm_json_parse_strict(body, n, &root, p);
                if (r < 0)
                        return r;
        }
        if (!root)
                return -ENOMEM;

        switch (type) {
        case CM_OP_SNAPSHOT: {
                const json_t *v = json_object_get(root, "name");

                (void) cm_json_check_fields(root, "", snapshot_fields, p);
                if (v)
                        check_snapshot_name(v, "name", p);
                else {
                        char ts[32], name[160];

                        /* "2026-11-25T15:12:57.123456Z" -> "<cluster>-20261125-151257" */
                        cm_format_rfc3339(now_usec, ts, sizeof(ts));
                        (void) cm_snprintf(name, sizeof(name), "%s-%.4s%.2s%.2s-%.2s%.2s%.2s", cluster, ts,
                                           ts + 5, ts + 8, ts + 11, ts + 14, ts + 17);
                        if (json_object_set_new(root, "name", json_string(name)) < 0)
                                goto oom;
                }
                break;
        }
        case CM_OP_RESTORE: {
                const json_t *v = json_object_get(root, "snapshot");

                (void) cm_json_check_fields(root, "", restore_fields, p);
                if (!v)
                        cm_problem_add(p, "snapshot", "required: the name of the snapshot to restore");
                else
                        check_snapshot_name(v, "snapshot", p);
                break;
        }
        default:
                (void) cm_json_check_fields(root, "", rotate_fields, p);
                check_rotate(root, p);
                break;
        }
        r = finish_validation(p);
        if (r < 0) {
                json_decref(root);
                return r;
        }
        out = cm_json_canonical(root);
        json_decref(root);
        if (!out)
                return -ENOMEM;
        *ret_params_json = out;
        return 0;
oom:
        json_decref(root);
        return -ENOMEM;
}
