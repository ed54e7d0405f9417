/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "api/json.h"
#include "base/parse.h"

/* A scan of the raw bytes that bounds nesting, value count and string length before parsing. */
static int json_prescan(const char *buf, size_t n, size_t max_string, struct cm_problem *p) {
        unsigned depth = 0, values = 0;
        size_t strlen_cur = 0;
        bool in_string = false, escape = false;

        for (size_t i = 0; i < n; i++) {
                char c = buf[i];

                if (in_string) {
                        if (++strlen_cur > max_string)
                                return cm_problem_set(p, 413, "too-large", "Request too large",
                                                      "a string is longer than %zu bytes", max_string);
                        if (escape)
                                escape = false;
                        else if (c == '\\')
                                escape = true;
                        else if (c == '"')
                                in_string = false;
                        continue;
                }
                switch (c) {
                case '"':
                        in_string = true;
                        strlen_cur = 0;
                        values++;
                        break;
                case '[':
                case '{':
                        if (++depth > CM_JSON_MAX_DEPTH)
                                return cm_problem_set(p, 400, "malformed", "Malformed request",
                                                      "JSON nesting deeper than %d levels",
                                                      CM_JSON_MAX_DEPTH);
                        values++;
                        break;
                case ']':
                case '}':
                        if (depth > 0)
                                depth--;
                        break;
                case ',':
                        values++;
                        break;
                default:
                        break;
                }
                if (values > CM_JSON_MAX_VALUES)
                        return cm_problem_set(p, 413, "too-large", "Request too large",
                                              "more than %d JSON values", CM_JSON_MAX_VALUES);
        }
        return 0;
}

int cm_json_parse_strict(const char *buf, size_t n, json_t **ret, struct cm_problem *p) {
        return cm_json_parse_strict_max(buf, n, CM_JSON_MAX_STRING, ret, p);
}

int cm_json_parse_strict_max(const char *buf, size_t n, size_t max_string, json_t **ret,
                             struct cm_problem *p) {
        json_error_t err;
        json_t *v;
        char *near;
        int r;

        if (n == 0)
                return cm_problem_set(p, 400, "malformed", "Malformed request", "the request body is empty");
        r = json_prescan(buf, n, max_string, p);
        if (r < 0)
                return r;
        v = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &err);
        if (!v) {
                /* jansson quotes the offending token ("near '...'"): never echo client bytes back. */
                near = strstr(err.text, " near ");
                if (near)
                        *near = 0;
                return cm_problem_set(p, 400, "malformed", "Malformed request",
                                      "invalid JSON at line %d, column %d: %s", err.line, err.column,
                                      err.text);
        }
        if (!json_is_object(v)) {
                json_decref(v);
                return cm_problem_set(p, 400, "malformed", "Malformed request",
                                      "the request body must be a JSON object");
        }
        *ret = v;
        return 0;
}

void cm_json_path(char *buf, size_t size, const char *base, const char *key) {
        if (isempty(base))
                (void) cm_snprintf(buf, size, "%s", key);
        else
                (void) cm_snprintf(buf, size, "%s.%s", base, key);
}

void cm_json_path_index(char *buf, size_t size, const char *base, size_t index) {
        (void) cm_snprintf(buf, size, "%s[%zu]", base, index);
}

const char *cm_json_type_name(const json_t *v) {
        switch (json_typeof(v)) {
        case JSON_OBJECT:
                return "object";
        case JSON_ARRAY:
                return "array";
        case JSON_STRING:
                return "string";
        case JSON_INTEGER:
                return "integer";
        case JSON_REAL:
                return "number";
        case JSON_TRUE:
        case JSON_FALSE:
                return "boolean";
        case JSON_NULL:
                return "null";
        }
        return "unknown";
}

bool cm_json_check_dns_label(const json_t *v, const char *field, size_t max, struct cm_problem *p) {
        const char *s = json_string_value(v);

        if (!json_is_string(v)) {
                cm_problem_add(p, field, "must be a string, not %s", cm_json_type_name(v));
                return false;
        }
        if (!cm_dns_label_valid(s) || strlen(s) > max) {
                cm_problem_add(
                        p, field,
                        "must be a DNS label: 1-%zu characters of a-z, 0-9 and '-', starting and ending "
                        "with a letter or digit",
                        MIN(max, (size_t) 63));
                return false;
        }
        return true;
}

bool cm_json_check_fields(const json_t *obj, const char *path, const char *const *allowed,
                          struct cm_problem *p) {
        const char *key;
        json_t *value;
        bool ok = true;

        json_object_foreach(CM_UNCONST(json_t *, obj), key, value) {
                bool known = false;
                char field[256];

                for (const char *const *a = allowed; *a; a++)
                        if (streq(*a, key)) {
                                known = true;
                                break;
                        }
                if (known)
                        continue;
                ok = false;
                /* The key is client text: bounded and escaped by the encoder, but cut long ones. */
                cm_json_path(field, sizeof(field), path, strlen(key) > 64 ? "<long key>" : key);
                cm_problem_add(p, field, "unknown field");
        }
        return ok;
}

char *cm_json_canonical(const json_t *v) {
        return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

static bool label_chars_ok(const char *s, bool allow_slash) {
        for (; *s; s++) {
                char c = *s;
                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-' || (allow_slash && c == '/'))
                        continue;
                return false;
        }
        return true;
}

bool cm_labels_validate(const json_t *labels, const char *path, struct cm_problem *p) {
        const char *key;
        json_t *value;
        bool ok = true;

        if (!json_is_object(labels)) {
                cm_problem_add(p, path, "must be an object of string values, not %s",
                               cm_json_type_name(labels));
                return false;
        }
        if (json_object_size(labels) > 64) {
                cm_problem_add(p, path, "at most 64 labels");
                return false;
        }
        json_object_foreach(CM_UNCONST(json_t *, labels), key, value) {
                char field[256];
                const char *slash = strchr(key, '/');
                size_t name_len = slash ? strlen(slash + 1) : strlen(key);

                cm_json_path(field, sizeof(field), path, strlen(key) > 64 ? "<long key>" : key);
                if (strlen(key) > 253 || name_len == 0 || name_len > 63 || !label_chars_ok(key, true) ||
                    (slash && strchr(slash + 1, '/'))) {
                        cm_problem_add(
                                p, field,
                                "label keys are [prefix/]name: name 1-63 characters of A-Z a-z 0-9 . _ -");
                        ok = false;
                        continue;
                }
                if (!json_is_string(value)) {
                        cm_problem_add(p, field, "label values must be strings, not %s",
                                       cm_json_type_name(value));
                        ok = false;
                        continue;
                }
                if (strlen(json_string_value(value)) > 63 ||
                    !label_chars_ok(json_string_value(value), false)) {
                        cm_problem_add(p, field, "label values are 0-63 characters of A-Z a-z 0-9 . _ -");
                        ok = false;
                }
        }
        return ok;
}
