/* SPDX-License-Identifier: Apache-2.0 */
/* Add-on manifests: untrusted YAML/JSON text to validated Kubernetes objects, in apply order. */
#include "base/common.h"

#include <jansson.h>

#include "base/parse.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "cli/yaml.h"
#include "kube/client.h"
#include "kube/manifest.h"

#define KIND_MAX 63U
#define GROUP_MAX 253U
#define VERSION_MAX 63U
/* "<group>/<kind>/<namespace>/<name>": none of the four may contain '/'. */
#define IDENTITY_MAX (GROUP_MAX + 1 + KIND_MAX + 1 + 63 + 1 + CM_KUBE_NAME_MAX + 1)

/* The manifest being built, and where in the stream the decoder is. */
struct decoder {
        struct cm_manifest m;
        size_t alloc;
        json_t *seen; /* identity → index in m.objects */
        struct cm_manifest_error err;
        unsigned docs; /* documents handed over so far */
        unsigned doc, item, line; /* the document (and List item) being looked at */
};

_printf_(2, 3) static void decoder_set_error(struct decoder *d, const char *fmt, ...) {
        va_list ap;

        d->err = (struct cm_manifest_error){ .doc = d->doc, .item = d->item, .line = d->line };
        va_start(ap, fmt);
        (void) vsnprintf(d->err.reason, sizeof(d->err.reason), fmt, ap);
        va_end(ap);
}

/* Records where and why, and evaluates to r (a macro, so that analyzers see the value returned). */
#define decoder_fail(d, r, ...) (decoder_set_error((d), __VA_ARGS__), (r))

static bool is_lower_alnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* A DNS-1123 subdomain: dot-separated DNS labels, at most 253 bytes in all. */
static bool group_valid(const char *s, size_t n) {
        size_t label = 0;

        if (n == 0 || n > GROUP_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '.') {
                        if (label == 0 || s[i - 1] == '-')
                                return false;
                        label = 0;
                } else if (is_lower_alnum(s[i]) || (s[i] == '-' && label > 0)) {
                        if (++label > 63)
                                return false;
                } else
                        return false;
        }
        return s[n - 1] != '-';
}

/* A DNS-1035 label: a lowercase letter, then lowercase letters, digits and '-', not ending in '-'. */
static bool version_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > VERSION_MAX || !(s[0] >= 'a' && s[0] <= 'z') || s[n - 1] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!is_lower_alnum(s[i]) && s[i] != '-')
                        return false;
        return true;
}

/* "v1" (the core group) or "<group>/<version>". */
static bool api_version_valid(const char *s) {
        const char *slash = strchr(s, '/');

        if (!slash)
                return streq(s, "v1");
        return group_valid(s, (size_t) (slash - s)) && version_valid(slash + 1);
}

static bool kind_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > KIND_MAX || !(s[0] >= 'A' && s[0] <= 'Z'))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
                      (s[i] >= '0' && s[i] <= '9')))
                        return false;
        return true;
}

/* The group of a valid apiVersion: "" for "v1". */
static void api_group(const char *api_version, const char **ret, size_t *ret_len) {
        const char *slash = strchr(api_version, '/');

        *ret = api_version;
        *ret_len = slash ? (size_t) (slash - api_version) : 0;
}

static bool group_is(const char *api_version, const char *group) {
        const char *g;
        size_t n;

        api_group(api_version, &g, &n);
        return n == strlen(group) && memcmp(g, group, n) == 0;
}

static const char *json_type_name(const json_t *v) {
        switch (json_typeof(v)) {
        case JSON_OBJECT:
                return "a mapping";
        case JSON_ARRAY:
                return "a sequence";
        case JSON_STRING:
                return "a string";
        case JSON_INTEGER:
        case JSON_REAL:
                return "a number";
        case JSON_TRUE:
        case JSON_FALSE:
                return "a boolean";
        case JSON_NULL:
                return "null";
        }
        return "not a mapping";
}

/*
 * The string member key of obj: 0 with *ret set (NULL when absent, and when null if null_ok), or
 * -EINVAL when it is not a string or holds a NUL character.
 */
static int string_member(struct decoder *d, const json_t *obj, const char *key, const char *field,
                         bool null_ok, const char **ret) {
        const json_t *v = json_object_get(obj, key);

        *ret = NULL;
        if (!v || (null_ok && json_is_null(v)))
                return 0;
        if (!json_is_string(v))
                return decoder_fail(d, -EINVAL, "%s must be a string, not %s", field, json_type_name(v));
        if (strlen(json_string_value(v)) != json_string_length(v))
                return decoder_fail(d, -EINVAL, "%s must not contain NUL characters", field);
        *ret = json_string_value(v);
        return 0;
}

/* apiVersion and kind, which every document has, Lists included. */
static int check_type(struct decoder *d, const json_t *obj, const char **ret_api_version,
                      const char **ret_kind) {
        const char *api_version, *kind;
        int r;

        r = string_member(d, obj, "apiVersion", "apiVersion", false, &api_version);
        if (r < 0)
                return r;
        if (!api_version)
                return decoder_fail(d, -EINVAL, "apiVersion is missing");
        if (!api_version_valid(api_version))
                return decoder_fail(
                        d, -EINVAL,
                        "apiVersion is not valid (\"v1\" or \"<group>/<version>\": a DNS subdomain "
                        "and a lowercase version such as \"v1beta1\")");
        r = string_member(d, obj, "kind", "kind", false, &kind);
        if (r < 0)
                return r;
        if (!kind)
                return decoder_fail(d, -EINVAL, "kind is missing");
        if (!kind_valid(kind))
                return decoder_fail(
                        d, -EINVAL,
                        "kind is not valid (letters and digits, starting with an uppercase letter, "
                        "at most %u)",
                        KIND_MAX);
        *ret_api_version = api_version;
        *ret_kind = kind;
        return 0;
}

/* kind List, or a kind ending in List with an items member ("ConfigMapList", as kubectl writes them). */
static bool is_list(const json_t *obj, const char *kind) {
        return streq(kind, "List") || (endswith(kind, "List") && json_object_get(obj, "items"));
}

static bool kind_is_secret(const char *kind) {
        return streq(kind, "Secret");
}

static void object_release(struct cm_manifest_object *o) {
        if (o->kind && kind_is_secret(o->kind))
                cm_json_wipe_and_free(&o->object);
        else
                json_decref(TAKE_PTR(o->object));
        *o = (struct cm_manifest_object){};
}

void cm_manifest_done(struct cm_manifest *m) {
        if (!m)
                return;
        for (size_t i = 0; i < m->n; i++)
                object_release(&m->objects[i]);
        free(m->objects);
        *m = (struct cm_manifest){};
}

/* Validates one object and appends it; takes over obj (wiped when refused: it may be a Secret). */
static int add_object(struct decoder *d, json_t *obj_in) {
        _cleanup_(cm_json_wipe_and_free) json_t *obj = obj_in;
        const char *api_version, *kind, *name, *namespace, *group;
        char identity[IDENTITY_MAX];
        json_t *metadata, *generate_name, *first, *index;
        size_t group_len;
        int r;

        if (!json_is_object(obj))
                return decoder_fail(d, -EINVAL, "an object must be a mapping, not %s", json_type_name(obj));
        r = check_type(d, obj, &api_version, &kind);
        if (r < 0)
                return r;
        if (is_list(obj, kind))
                return decoder_fail(d, -EINVAL, "a List inside a List is not allowed");

        metadata = json_object_get(obj, "metadata");
        if (!metadata)
                return decoder_fail(d, -EINVAL, "metadata is missing");
        if (!json_is_object(metadata))
                return decoder_fail(d, -EINVAL, "metadata must be a mapping, not %s",
                                    json_type_name(metadata));
        generate_name = json_object_get(metadata, "generateName");
        if (generate_name && !json_is_null(generate_name))
                return decoder_fail(
                        d, -EINVAL,
                        "metadata.generateName is not supported: server-side apply needs a fixed "
                        "metadata.name");
        r = string_member(d, metadata, "name", "metadata.name", false, &name);
        if (r < 0)
                return r;
        if (!name)
                return decoder_fail(d, -EINVAL, "metadata.name is missing");
        if (!cm_kube_name_valid(name))
                return decoder_fail(d, -EINVAL,
                                    "metadata.name is not valid (1 to %u printable ASCII characters without "
                                    "spaces, '/' or '%%', not \".\" or \"..\")",
                                    CM_KUBE_NAME_MAX);
        r = string_member(d, metadata, "namespace", "metadata.namespace", true, &namespace);
        if (r < 0)
                return r;
        if (namespace && !cm_dns_label_valid(namespace))
                return decoder_fail(
                        d, -EINVAL,
                        "metadata.namespace is not valid (a DNS label: 1 to 63 lowercase letters, "
                        "digits and '-', starting and ending with a letter or digit)");

        api_group(api_version, &group, &group_len);
        r = cm_snprintf(identity, sizeof(identity), "%.*s/%s/%s/%s", (int) group_len, group, kind,
                        namespace ?: "", name);
        if (r < 0)
                return decoder_fail(d, -EINVAL, "the object's identity is too long");
        first = json_object_get(d->seen, identity);
        if (first) {
                const struct cm_manifest_object *o = &d->m.objects[json_integer_value(first)];

                if (o->item > 0)
                        return decoder_fail(
                                d, -EINVAL,
                                "the same object (apiVersion group, kind, namespace and name) as "
                                "document %u, item %u",
                                o->doc, o->item);
                return decoder_fail(
                        d, -EINVAL,
                        "the same object (apiVersion group, kind, namespace and name) as document %u",
                        o->doc);
        }

        if (d->m.n >= CM_MANIFEST_OBJECTS_MAX)
                return decoder_fail(d, -EFBIG, "more than %u objects", CM_MANIFEST_OBJECTS_MAX);
        if (d->m.n == d->alloc) {
                size_t alloc = MIN(MAX(d->alloc * 2, (size_t) 16), (size_t) CM_MANIFEST_OBJECTS_MAX);
                struct cm_manifest_object *objects = reallocarray(d->m.objects, alloc, sizeof(*objects));

                if (!objects)
                        return decoder_fail(d, -ENOMEM, "out of memory");
                d->m.objects = objects;
                d->alloc = alloc;
        }
        index = json_integer((json_int_t) d->m.n);
        if (!index || json_object_set_new(d->seen, identity, index) < 0)
                return decoder_fail(d, -ENOMEM, "out of memory");

        d->m.objects[d->m.n++] = (struct cm_manifest_object){
                .object = TAKE_PTR(obj),
                .api_version = api_version,
                .kind = kind,
                .namespace = namespace,
                .name = name,
                .doc = d->doc,
                .item = d->item,
                .line = d->line,
        };
        return 0;
}

/* One non-empty document: an object or a List of them. Takes over doc. */
static int add_document(struct decoder *d, json_t *doc_in) {
        _cleanup_(cm_json_wipe_and_free) json_t *doc = doc_in;
        const char *api_version, *kind;
        json_t *items, *item;
        size_t i;
        int r;

        d->item = 0;
        if (!json_is_object(doc))
                return decoder_fail(d, -EINVAL, "a document must be a mapping (a Kubernetes object), not %s",
                                    json_type_name(doc));
        r = check_type(d, doc, &api_version, &kind);
        if (r < 0)
                return r;
        if (!is_list(doc, kind))
                return add_object(d, TAKE_PTR(doc));

        items = json_object_get(doc, "items");
        if (!items || json_is_null(items))
                return 0;
        if (!json_is_array(items))
                return decoder_fail(d, -EINVAL, "items must be a sequence, not %s", json_type_name(items));
        if (json_array_size(items) > CM_MANIFEST_OBJECTS_MAX - d->m.n)
                return decoder_fail(d, -EFBIG, "more than %u objects", CM_MANIFEST_OBJECTS_MAX);
        json_array_foreach(items, i, item) {
                d->item = (unsigned) i + 1;
                r = add_object(d, json_incref(item));
                if (r < 0)
                        return r;
        }
        /* The items now belong to the manifest: drop the List's references before the List is wiped. */
        json_array_clear(items);
        return 0;
}

static int on_document(json_t *doc, unsigned index, unsigned line, void *userdata) {
        struct decoder *d = userdata;

        d->docs = index;
        d->doc = index;
        d->line = line;
        if (json_is_null(doc)) {
                json_decref(doc);
                return 0; /* empty, or only comments */
        }
        return add_document(d, doc);
}

static bool json_depth_ok(const json_t *v, unsigned depth) {
        const char *key;
        json_t *child;
        size_t i;

        if (!json_is_object(v) && !json_is_array(v))
                return true;
        if (depth >= CM_DOCUMENT_MAX_DEPTH)
                return false;
        if (json_is_object(v)) {
                json_object_foreach(CM_UNCONST(json_t *, v), key, child) {
                        if (!json_depth_ok(child, depth + 1))
                                return false;
                }
        } else {
                json_array_foreach(v, i, child) {
                        if (!json_depth_ok(child, depth + 1))
                                return false;
                }
        }
        return true;
}

/* What jansson found wrong, without its text: that quotes the input. */
static const char *json_error_reason(enum json_error_code code) {
        switch (code) {
        case json_error_invalid_utf8:
                return "the text is not valid UTF-8";
        case json_error_premature_end_of_input:
                return "the JSON ends early";
        case json_error_end_of_input_expected:
                return "there is more after the JSON object";
        case json_error_null_character:
        case json_error_null_byte_in_key:
                return "NUL characters are not allowed";
        case json_error_duplicate_key:
                return "duplicate key";
        case json_error_numeric_overflow:
                return "a number is out of range";
        case json_error_stack_overflow:
                return "nesting too deep";
        case json_error_out_of_memory:
                return "out of memory";
        default:
                return "invalid JSON";
        }
}

/* One JSON object (or List), decoded by jansson like cm_document_parse() does. */
static int parse_json(struct decoder *d, const char *data, size_t len, size_t start) {
        json_error_t jerr;
        json_t *root;

        d->doc = 1;
        d->line = 1;
        for (size_t i = 0; i < start; i++)
                if (data[i] == '\n')
                        d->line++;
        root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root) {
                enum json_error_code code = json_error_code(&jerr);
                int r = code == json_error_out_of_memory ? -ENOMEM : -EINVAL;

                r = decoder_fail(d, r, "%s", json_error_reason(code));
                d->err.line = jerr.line > 0 ? (unsigned) jerr.line : 0;
                d->err.column = jerr.column > 0 ? (unsigned) jerr.column : 0;
                return r;
        }
        d->docs = 1;
        if (!json_depth_ok(root, 0)) {
                cm_json_wipe_and_free(&root);
                return decoder_fail(d, -EINVAL, "nesting deeper than %u levels", CM_DOCUMENT_MAX_DEPTH);
        }
        return add_document(d, root);
}

static int parse_yaml(struct decoder *d, const char *data, size_t len) {
        struct cm_doc_error derr = {};
        int r;

        r = cm_yaml_stream_to_json(data, len, CM_MANIFEST_MAX, on_document, d, &derr);
        if (r < 0 && !d->err.reason[0]) {
                /* The converter refused the text: it was reading the document after the last one handed over. */
                d->doc = d->docs < UINT_MAX ? d->docs + 1 : d->docs;
                d->item = 0;
                d->line = derr.line;
                r = decoder_fail(d, r, "%s", r == -ENOMEM ? "out of memory" : derr.message);
                d->err.column = derr.column;
        }
        return r;
}

int cm_manifest_parse(const char *data, size_t len, struct cm_manifest *ret, struct cm_manifest_error *err) {
        struct decoder d = {};
        size_t i = 0;
        int r;

        if (len > CM_MANIFEST_MAX) {
                r = decoder_fail(&d, -EFBIG, "the manifest is larger than %u bytes", CM_MANIFEST_MAX);
                goto out;
        }
        d.seen = json_object();
        if (!d.seen) {
                r = decoder_fail(&d, -ENOMEM, "out of memory");
                goto out;
        }
        while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n'))
                i++;
        if (i < len && data[i] == '{')
                r = parse_json(&d, data, len, i);
        else
                r = parse_yaml(&d, data, len);
out:
        json_decref(d.seen);
        if (r < 0) {
                cm_manifest_done(&d.m);
                if (err)
                        *err = d.err;
                return r;
        }
        *ret = d.m;
        return 0;
}

/* ---- apply order ------------------------------------------------------------------------------ */

struct kind_order {
        const char *group;
        const char *kind;
};

/* Helm's install order by (group, kind), Namespaces and CustomResourceDefinitions first. */
static const struct kind_order install_order[] = {
        { "", "Namespace" },
        { "apiextensions.k8s.io", "CustomResourceDefinition" },
        { "scheduling.k8s.io", "PriorityClass" },
        { "node.k8s.io", "RuntimeClass" },
        { "networking.k8s.io", "NetworkPolicy" },
        { "", "ResourceQuota" },
        { "", "LimitRange" },
        { "policy", "PodSecurityPolicy" },
        { "policy", "PodDisruptionBudget" },
        { "", "ServiceAccount" },
        { "", "Secret" },
        { "", "ConfigMap" },
        { "storage.k8s.io", "StorageClass" },
        { "", "PersistentVolume" },
        { "", "PersistentVolumeClaim" },
        { "rbac.authorization.k8s.io", "ClusterRole" },
        { "rbac.authorization.k8s.io", "ClusterRoleBinding" },
        { "rbac.authorization.k8s.io", "Role" },
        { "rbac.authorization.k8s.io", "RoleBinding" },
        { "", "Service" },
        { "apps", "DaemonSet" },
        { "", "Pod" },
        { "", "ReplicationController" },
        { "apps", "ReplicaSet" },
        { "apps", "Deployment" },
        { "autoscaling", "HorizontalPodAutoscaler" },
        { "apps", "StatefulSet" },
        { "batch", "Job" },
        { "batch", "CronJob" },
        { "networking.k8s.io", "IngressClass" },
        { "networking.k8s.io", "Ingress" },
        { "apiregistration.k8s.io", "APIService" },
        { "admissionregistration.k8s.io", "MutatingWebhookConfiguration" },
        { "admissionregistration.k8s.io", "ValidatingWebhookConfiguration" },
};

/*
 * The API groups Kubernetes serves itself; any other group is a custom resource's. Groups under k8s.io
 * are not all built in (gateway.networking.k8s.io and snapshot.storage.k8s.io are CRDs), hence the list.
 */
static const char *const builtin_groups[] = {
        "",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "apiregistration.k8s.io",
        "apps",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "autoscaling",
        "batch",
        "certificates.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "events.k8s.io",
        "extensions",
        "flowcontrol.apiserver.k8s.io",
        "internal.apiserver.k8s.io",
        "networking.k8s.io",
        "node.k8s.io",
        "policy",
        "rbac.authorization.k8s.io",
        "resource.k8s.io",
        "scheduling.k8s.io",
        "storage.k8s.io",
        "storagemigration.k8s.io",
};

#define RANK_OTHER_BUILTIN ELEMENTSOF(install_order)
#define RANK_CUSTOM (RANK_OTHER_BUILTIN + 1)

static size_t object_rank(const struct cm_manifest_object *o) {
        for (size_t i = 0; i < ELEMENTSOF(install_order); i++)
                if (streq(o->kind, install_order[i].kind) &&
                    group_is(o->api_version, install_order[i].group))
                        return i;
        for (size_t i = 0; i < ELEMENTSOF(builtin_groups); i++)
                if (group_is(o->api_version, builtin_groups[i]))
                        return RANK_OTHER_BUILTIN;
        return RANK_CUSTOM;
}

static int compare_apply_order(const void *pa, const void *pb) {
        const struct cm_manifest_object *a = pa, *b = pb;
        size_t ra = object_rank(a), rb = object_rank(b);

        if (ra != rb)
                return ra < rb ? -1 : 1;
        if (a->doc != b->doc)
                return a->doc < b->doc ? -1 : 1;
        if (a->item != b->item)
                return a->item < b->item ? -1 : 1;
        return 0;
}

void cm_manifest_sort(struct cm_manifest *m) {
        if (m->n > 1)
                qsort(m->objects, m->n, sizeof(m->objects[0]), compare_apply_order);
}

bool cm_manifest_is_crd(const struct cm_manifest_object *o) {
        return streq(o->kind, "CustomResourceDefinition") &&
               group_is(o->api_version, "apiextensions.k8s.io");
}

int cm_manifest_object_set_namespace(struct cm_manifest_object *o, const char *namespace) {
        json_t *metadata = json_object_get(o->object, "metadata"), *v;

        if (!namespace || !cm_dns_label_valid(namespace) || !json_is_object(metadata))
                return -EINVAL;
        v = json_string(namespace);
        if (!v)
                return -ENOMEM;
        /* On failure v is freed and the old value (which o->namespace points at) stays. */
        if (json_object_set_new(metadata, "namespace", v) < 0)
                return -ENOMEM;
        o->namespace = json_string_value(v);
        return 0;
}

void cm_manifest_error_format(const struct cm_manifest_error *e, char *buf, size_t size) {
        char where[96] = "";

        if (e->doc > 0 && e->item > 0)
                (void) snprintf(where, sizeof(where), "document %u, item %u", e->doc, e->item);
        else if (e->doc > 0)
                (void) snprintf(where, sizeof(where), "document %u", e->doc);
        if (e->line > 0 && e->column > 0)
                (void) snprintf(where + strlen(where), sizeof(where) - strlen(where),
                                "%sline %u, column %u%s", where[0] ? " (" : "", e->line, e->column,
                                where[0] ? ")" : "");
        else if (e->line > 0)
                (void) snprintf(where + strlen(where), sizeof(where) - strlen(where), "%sline %u%s",
                                where[0] ? " (" : "", e->line, where[0] ? ")" : "");
        if (where[0])
                (void) snprintf(buf, size, "%s: %s", where, e->reason);
        else
                (void) snprintf(buf, size, "%s", e->reason);
}
