/* SPDX-License-Identifier: Apache-2.0 */
/* The add-on API's documents: a definition and an installation request (definition.h). */
#include "base/common.h"

#include "addons/definition.h"
#include "addons/helm.h"
#include "api/json.h"
#include "base/parse.h"
#include "base/secret.h"
#include "base/strbuf.h"

void cm_addon_doc_done(struct cm_addon_doc *d) {
        if (!d)
                return;
        free(d->name);
        free(d->version);
        (void) cm_erase_and_free(d->doc_json);
        *d = (struct cm_addon_doc){};
}

bool cm_addon_name_valid(const char *s) {
        return s && strlen(s) <= CM_ADDON_NAME_MAX && cm_dns_label_valid(s);
}

static int finish_validation(struct cm_problem *p) {
        if (cm_problem_has_errors(p) || p->status != 0) {
                if (p->status == 0)
                        cm_problem_validation(p, "the request body is not valid; see errors");
                return -EINVAL;
        }
        return 0;
}

static bool check_addon_name(const json_t *v, const char *field, struct cm_problem *p) {
        return cm_json_check_dns_label(v, field, CM_ADDON_NAME_MAX, p);
}

/* Compact JSON with sorted keys into a secret buffer (manifests and values may hold secrets). */
static int dump_cb(const char *buf, size_t size, void *data) {
        return strbuf_add(data, buf, size) < 0 ? -1 : 0;
}

static int canonical_secret(const json_t *v, size_t max, char **ret) {
        struct strbuf sb;
        char *s;

        strbuf_init_secret(&sb, max);
        if (json_dump_callback(v, dump_cb, &sb, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) < 0) {
                strbuf_release(&sb);
                return -EFBIG; /* over max (or out of memory while growing) */
        }
        s = strbuf_detach(&sb, NULL);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static bool check_seconds(json_t *root, const char *key, unsigned min, unsigned max, unsigned def,
                          struct cm_problem *p) {
        const json_t *v = json_object_get(root, key);

        if (!v)
                return json_object_set_new(root, key, json_integer(def)) >= 0;
        if (!json_is_integer(v) || json_integer_value(v) < (json_int_t) min ||
            json_integer_value(v) > (json_int_t) max)
                cm_problem_add(p, key, "must be a whole number of seconds from %u to %u", min, max);
        return true;
}

/* Returns -ENOMEM, else 0 (a refusal is a field error). */
static int check_manifests(const json_t *v, struct cm_problem *p) {
        struct cm_manifest m = {};
        struct cm_manifest_error err = {};
        char reason[320];
        int r;

        if (!json_is_string(v)) {
                cm_problem_add(
                        p, "manifests",
                        "must be a string: YAML documents separated by '---', or a JSON object; not %s",
                        cm_json_type_name(v));
                return 0;
        }
        if (json_string_length(v) == 0) {
                cm_problem_add(p, "manifests", "must not be empty");
                return 0;
        }
        r = cm_manifest_parse(json_string_value(v), json_string_length(v), &m, &err);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                cm_manifest_error_format(&err, reason, sizeof(reason));
                if (r == -EFBIG && reason[0] == 0)
                        (void) cm_snprintf(reason, sizeof(reason),
                                           "larger than %u bytes or more than %u objects", CM_MANIFEST_MAX,
                                           CM_MANIFEST_OBJECTS_MAX);
                cm_problem_add(p, "manifests", "%s", reason);
                return 0;
        }
        cm_manifest_done(&m);
        return 0;
}

static void check_chart(const json_t *c, struct cm_problem *p) {
        static const char *const allowed[] = { "repository", "oci", "name", "version", NULL };
        const json_t *repo, *oci, *name, *version;

        if (!json_is_object(c)) {
                cm_problem_add(p, "chart",
                               "must be an object: {repository, name, version} or {oci, version}, not %s",
                               cm_json_type_name(c));
                return;
        }
        (void) cm_json_check_fields(c, "chart", allowed, p);
        repo = json_object_get(c, "repository");
        oci = json_object_get(c, "oci");
        name = json_object_get(c, "name");
        version = json_object_get(c, "version");
        if (repo && oci)
                cm_problem_add(p, "chart.oci",
                               "give either chart.repository (with chart.name) or chart.oci");
        else if (!repo && !oci)
                cm_problem_add(p, "chart.repository",
                               "required: an https:// or http:// chart repository with chart.name, or else "
                               "chart.oci");
        if (repo) {
                if (!json_is_string(repo) || !cm_helm_repo_url_valid(json_string_value(repo)))
                        cm_problem_add(p, "chart.repository",
                                       "must be the https:// or http:// URL of a chart repository, without "
                                       "credentials, query or fragment (at most %u characters)",
                                       CM_HELM_REPO_URL_MAX);
                if (!name)
                        cm_problem_add(p, "chart.name", "required with chart.repository");
                else if (!json_is_string(name) || !cm_helm_chart_name_valid(json_string_value(name)))
                        cm_problem_add(p, "chart.name",
                                       "must be a chart name: letters, digits, '.', '_' and '-', starting "
                                       "with a letter or digit");
        }
        if (oci) {
                if (!json_is_string(oci) || !cm_helm_oci_ref_valid(json_string_value(oci)))
                        cm_problem_add(p, "chart.oci",
                                       "must be a reference oci://host[:port]/path/name without tag or "
                                       "digest (the version is chart.version)");
                if (name)
                        cm_problem_add(p, "chart.name", "not with chart.oci: the reference names the chart");
        }
        if (!version)
                cm_problem_add(p, "chart.version", "required: the exact chart version");
        else if (!json_is_string(version) || !cm_helm_version_valid(json_string_value(version)))
                cm_problem_add(
                        p, "chart.version",
                        "must be an exact chart version like 1.2.3 or v1.2.3-rc.1 (no ranges), at most "
                        "%u characters",
                        CM_HELM_VERSION_MAX);
}

/* The size of values as compact JSON, checked against CM_ADDON_VALUES_MAX. */
static bool values_small(const json_t *v) {
        size_t n = json_dumpb(v, NULL, 0, JSON_COMPACT);

        return n > 0 && n <= CM_ADDON_VALUES_MAX;
}

int cm_addon_doc_decode(const char *body, size_t n, enum cm_addon_doc_mode mode, const char *path_name,
                        struct cm_addon_doc *ret, struct cm_problem *p) {
        static const char *const allowed[] = { "name",
                                               "kind",
                                               "version",
                                               "description",
                                               "baseline",
                                               "namespace",
                                               "manifests",
                                               "chart",
                                               "values",
                                               "timeoutSeconds",
                                               "driftIntervalSeconds",
                                               NULL };
        _cleanup_(cm_json_wipe_and_free) json_t *root = NULL;
        _cleanup_(cm_addon_doc_done) struct cm_addon_doc d = {};
        enum cm_addon_kind kind = _CM_ADDON_KIND_MAX;
        const json_t *v;
        int r;

        r = cm_json_parse_strict_max(body, n, CM_ADDON_BODY_MAX, &root, p);
        if (r < 0)
                return r;
        (void) cm_json_check_fields(root, "", allowed, p);

        v = json_object_get(root, "name");
        if (!v) {
                if (mode == CM_ADDON_DOC_CREATE)
                        cm_problem_add(p, "name", "required");
                else if (json_object_set_new(root, "name", json_string(path_name)) < 0)
                        return -ENOMEM;
        } else if (check_addon_name(v, "name", p) && mode == CM_ADDON_DOC_REPLACE &&
                   !streq(json_string_value(v), path_name))
                cm_problem_add(p, "name", "must be the name in the path, '%s' (a definition is not renamed)",
                               path_name);

        v = json_object_get(root, "kind");
        if (!v)
                cm_problem_add(p, "kind", "required: manifest or helm");
        else if (!json_is_string(v) || cm_addon_kind_from_string(json_string_value(v), &kind) < 0)
                cm_problem_add(p, "kind", "must be manifest or helm");

        v = json_object_get(root, "version");
        if (!v)
                cm_problem_add(p, "version",
                               "required: the definition's version (1-%u printable characters)",
                               CM_ADDON_VERSION_MAX);
        else if (!json_is_string(v) ||
                 !cm_ascii_text_valid(json_string_value(v), CM_ADDON_VERSION_MAX, true))
                cm_problem_add(p, "version", "must be 1-%u printable ASCII characters",
                               CM_ADDON_VERSION_MAX);

        v = json_object_get(root, "description");
        if (v && (!json_is_string(v) || json_string_length(v) > CM_ADDON_DESCRIPTION_MAX))
                cm_problem_add(p, "description", "must be a string of at most %u bytes",
                               CM_ADDON_DESCRIPTION_MAX);

        v = json_object_get(root, "baseline");
        if (!v) {
                if (json_object_set_new(root, "baseline", json_false()) < 0)
                        return -ENOMEM;
        } else if (!json_is_boolean(v))
                cm_problem_add(p, "baseline", "must be true or false, not %s", cm_json_type_name(v));

        v = json_object_get(root, "namespace");
        if (!v) {
                if (json_object_set_new(root, "namespace", json_string(CM_ADDON_NAMESPACE_DEFAULT)) < 0)
                        return -ENOMEM;
        } else
                (void) cm_json_check_dns_label(v, "namespace", 63, p);

        v = json_object_get(root, "values");
        if (!v) {
                if (json_object_set_new(root, "values", json_object()) < 0)
                        return -ENOMEM;
        } else if (!json_is_object(v))
                cm_problem_add(p, "values", "must be an object, not %s", cm_json_type_name(v));
        else if (kind == CM_ADDON_MANIFEST && json_object_size(v) > 0)
                cm_problem_add(p, "values", "only for kind helm: a manifest add-on takes no values");
        else if (!values_small(v))
                cm_problem_add(p, "values", "must be at most %u bytes as compact JSON", CM_ADDON_VALUES_MAX);

        if (!check_seconds(root, "timeoutSeconds", CM_ADDON_TIMEOUT_MIN, CM_ADDON_TIMEOUT_MAX,
                           CM_ADDON_TIMEOUT_DEFAULT, p) ||
            !check_seconds(root, "driftIntervalSeconds", CM_ADDON_DRIFT_MIN, CM_ADDON_DRIFT_MAX,
                           CM_ADDON_DRIFT_DEFAULT, p))
                return -ENOMEM;

        v = json_object_get(root, "manifests");
        if (kind == CM_ADDON_MANIFEST) {
                if (!v)
                        cm_problem_add(p, "manifests", "required for kind manifest: the objects to apply");
                else if ((r = check_manifests(v, p)) < 0)
                        return r;
        } else if (kind == CM_ADDON_HELM && v)
                cm_problem_add(p, "manifests", "only for kind manifest: a helm add-on names a chart");

        v = json_object_get(root, "chart");
        if (kind == CM_ADDON_HELM) {
                if (!v)
                        cm_problem_add(
                                p, "chart",
                                "required for kind helm: {repository, name, version} or {oci, version}");
                else
                        check_chart(v, p);
        } else if (kind == CM_ADDON_MANIFEST && v)
                cm_problem_add(p, "chart", "only for kind helm: a manifest add-on has manifests");

        r = finish_validation(p);
        if (r < 0)
                return r;

        d.kind = kind;
        d.baseline = json_is_true(json_object_get(root, "baseline"));
        d.name = strdup(json_string_value(json_object_get(root, "name")));
        d.version = strdup(json_string_value(json_object_get(root, "version")));
        if (!d.name || !d.version)
                return -ENOMEM;
        r = canonical_secret(root, CM_ADDON_BODY_MAX, &d.doc_json);
        if (r == -EFBIG)
                return cm_problem_set(p, 413, "too-large", "Request too large",
                                      "the add-on definition is larger than %u bytes", CM_ADDON_BODY_MAX);
        if (r < 0)
                return r;
        *ret = d;
        d = (struct cm_addon_doc){};
        return 0;
}

int cm_addon_install_doc_decode(const char *body, size_t n, const char *path_addon, char **ret_addon,
                                char **ret_values_json, struct cm_problem *p) {
        static const char *const allowed[] = { "addon", "values", NULL };
        _cleanup_(cm_json_wipe_and_free) json_t *root = NULL;
        _cleanup_free_ char *addon = NULL;
        char *values = NULL;
        const json_t *v;
        int r;

        r = cm_json_parse_strict(body, n, &root, p);
        if (r < 0)
                return r;
        (void) cm_json_check_fields(root, "", allowed, p);

        v = json_object_get(root, "addon");
        if (!path_addon) {
                if (!v)
                        cm_problem_add(p, "addon", "required: the name of an add-on of the environment");
                else if (check_addon_name(v, "addon", p) && !(addon = strdup(json_string_value(v))))
                        return -ENOMEM;
        } else if (v && check_addon_name(v, "addon", p) && !streq(json_string_value(v), path_addon))
                cm_problem_add(p, "addon", "must be the add-on in the path, '%s'", path_addon);

        v = json_object_get(root, "values");
        if (!v) {
                if (path_addon)
                        cm_problem_add(p, "values", "required: the installation's values ({} for none)");
        } else if (!json_is_object(v))
                cm_problem_add(p, "values", "must be an object, not %s", cm_json_type_name(v));
        else if (!values_small(v))
                cm_problem_add(p, "values", "must be at most %u bytes as compact JSON", CM_ADDON_VALUES_MAX);

        r = finish_validation(p);
        if (r < 0)
                return r;
        if (v)
                r = canonical_secret(v, CM_ADDON_VALUES_MAX + 1, &values);
        else
                r = (values = strdup("{}")) ? 0 : -ENOMEM;
        if (r < 0)
                return r == -EFBIG ? -ENOMEM : r;
        if (ret_addon)
                *ret_addon = TAKE_PTR(addon);
        *ret_values_json = values;
        return 0;
}
