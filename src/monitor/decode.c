/* SPDX-License-Identifier: Apache-2.0 */
/* The decoders of the API server's answers to a probe: /readyz?verbose, /version, nodes, workloads. */
#include "base/common.h"

#include <jansson.h>

#include "monitor/health.h"

/* Size limits of the answers, checked before anything is parsed. */
#define READYZ_MAX (1024U * 1024U)
#define VERSION_MAX (64U * 1024U)
#define LIST_BODY_MAX (16U * 1024U * 1024U)

/* U+2026 HORIZONTAL ELLIPSIS, and what ends a list that reached its buffer's size. */
#define ELLIPSIS "\xe2\x80\xa6"
#define LIST_MORE ", " ELLIPSIS

/* The longest name (node, workload, check) an entry of a list shows. */
#define NAME_SHOWN_MAX 128U

static const char *const outcome_names[_CM_PROBE_OUTCOME_MAX] = {
        [CM_PROBE_OK] = "OK",
        [CM_PROBE_UNREACHABLE] = "Unreachable",
        [CM_PROBE_UNAUTHORIZED] = "Unauthorized",
        [CM_PROBE_TLS_ERROR] = "TLSError",
        [CM_PROBE_BAD_KUBECONFIG] = "BadKubeconfig",
        [CM_PROBE_ERROR] = "Error",
};

const char *cm_probe_outcome_name(enum cm_probe_outcome o) {
        if ((unsigned) o >= _CM_PROBE_OUTCOME_MAX)
                return NULL;
        return outcome_names[o];
}

static const char *const workload_resources[_CM_WORKLOAD_KIND_MAX] = {
        [CM_WORKLOAD_DEPLOYMENT] = "deployments",
        [CM_WORKLOAD_DAEMONSET] = "daemonsets",
        [CM_WORKLOAD_STATEFULSET] = "statefulsets",
};

/* The singular, as in "deployment/coredns", and the kind of the list the server answers with. */
static const char *const workload_singular[_CM_WORKLOAD_KIND_MAX] = {
        [CM_WORKLOAD_DEPLOYMENT] = "deployment",
        [CM_WORKLOAD_DAEMONSET] = "daemonset",
        [CM_WORKLOAD_STATEFULSET] = "statefulset",
};

static const char *const workload_list_kinds[_CM_WORKLOAD_KIND_MAX] = {
        [CM_WORKLOAD_DEPLOYMENT] = "DeploymentList",
        [CM_WORKLOAD_DAEMONSET] = "DaemonSetList",
        [CM_WORKLOAD_STATEFULSET] = "StatefulSetList",
};

const char *cm_workload_resource(enum cm_workload_kind k) {
        if ((unsigned) k >= _CM_WORKLOAD_KIND_MAX)
                return NULL;
        return workload_resources[k];
}

/* ---- text from the server ------------------------------------------------------------------- */

/* health.h: shared by the decoders and the condition messages. */
bool cm_monitor_char_shown(const unsigned char *s, size_t n, size_t *ret_len) {
        uint32_t cp;
        size_t k;

        *ret_len = 1;
        if (s[0] < 0x80)
                return s[0] >= 0x20 && s[0] != 0x7f;
        if (s[0] >= 0xc2 && s[0] <= 0xdf) {
                k = 2;
                cp = s[0] & 0x1fU;
        } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
                k = 3;
                cp = s[0] & 0x0fU;
        } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
                k = 4;
                cp = s[0] & 0x07U;
        } else
                return false;
        if (n < k)
                return false;
        for (size_t i = 1; i < k; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return false;
                cp = cp << 6 | (s[i] & 0x3fU);
        }
        if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return false;
        *ret_len = k;
        return cp >= 0xa0 && cp != 0x200e && cp != 0x200f && (cp < 0x2028 || cp > 0x202e) &&
               (cp < 0x2066 || cp > 0x2069) && cp != 0xfeff;
}

/*
 * Appends src[0..n) to dst (size bytes, NUL-terminated, *pos its length), each character that
 * cm_monitor_char_shown() refuses replaced by one '?'. Stops before the first character that does not fit and
 * returns false then; true when all of src was appended.
 */
static bool text_append(char *dst, size_t size, size_t *pos, const char *src, size_t n) {
        const unsigned char *s = (const unsigned char *) src;
        bool all = true;
        size_t i = 0;

        if (size == 0)
                return n == 0;
        while (i < n) {
                size_t k;
                bool shown = cm_monitor_char_shown(s + i, n - i, &k);
                size_t w = shown ? k : 1;

                if (*pos + w >= size) {
                        all = false;
                        break;
                }
                if (shown)
                        memcpy(dst + *pos, s + i, k);
                else
                        dst[*pos] = '?';
                *pos += w;
                i += k;
        }
        dst[*pos] = 0;
        return all;
}

static void text_appends(char *dst, size_t size, size_t *pos, const char *s) {
        (void) text_append(dst, size, pos, s, strlen(s));
}

/* A name as an entry shows it: at most NAME_SHOWN_MAX bytes of it. */
static void name_append(char *dst, size_t size, size_t *pos, const char *name, size_t n) {
        (void) text_append(dst, size, pos, name, MIN(n, (size_t) NAME_SHOWN_MAX));
}

/*
 * Appends an entry (shown text) to the list in buf (size bytes), after sep when the list is not
 * empty. A list always keeps room for LIST_MORE: an entry that would take it is dropped and the list
 * ends with LIST_MORE instead (a first entry too long on its own is cut and ends with an ellipsis).
 * A list that ends with an ellipsis is complete and takes no more entries.
 */
static void list_add(char *buf, size_t size, const char *sep, const char *entry) {
        size_t len, n = strlen(entry), s, more = strlen(LIST_MORE), ell = strlen(ELLIPSIS);

        if (size == 0)
                return;
        len = strnlen(buf, size);
        if (len >= size)
                return;
        if (len >= ell && memcmp(buf + len - ell, ELLIPSIS, ell) == 0)
                return;
        s = len > 0 ? strlen(sep) : 0;
        if (len + s + n + more < size) {
                memcpy(buf + len, sep, s);
                memcpy(buf + len + s, entry, n + 1);
                return;
        }
        if (len > 0) {
                if (len + more < size)
                        memcpy(buf + len, LIST_MORE, more + 1);
                return;
        }
        if (size > ell + 1) {
                size_t pos = 0;

                (void) text_append(buf, size - ell, &pos, entry, n);
                memcpy(buf + pos, ELLIPSIS, ell + 1);
        }
}

/* ---- /readyz?verbose ---------------------------------------------------------------------- */

/* Whether the line [s, s+n) is a check ("[+]name ..." or "[-]name ..."); its name and whether it failed. */
static bool readyz_line(const char *s, size_t n, const char **ret_name, size_t *ret_name_len,
                        bool *ret_failed) {
        size_t k = 3;

        if (n > 0 && s[n - 1] == '\r')
                n--;
        if (n < 4 || s[0] != '[' || (s[1] != '+' && s[1] != '-') || s[2] != ']')
                return false;
        while (k < n && s[k] != ' ')
                k++;
        if (k == 3)
                return false;
        *ret_name = s + 3;
        *ret_name_len = k - 3;
        *ret_failed = s[1] == '-';
        return true;
}

int cm_probe_decode_readyz(const char *body, size_t len, char *ret_failing, size_t size) {
        unsigned failed = 0;
        bool any = false;

        if ((!body && len > 0) || len > READYZ_MAX || !ret_failing || size == 0)
                return -EINVAL;

        /* First pass: is it a readyz answer at all (the output is written on success only). */
        for (size_t i = 0; i < len && !any;) {
                const char *eol = memchr(body + i, '\n', len - i), *name;
                size_t n = eol ? (size_t) (eol - (body + i)) : len - i, name_len;
                bool f;

                any = readyz_line(body + i, n, &name, &name_len, &f);
                i += n + 1;
        }
        if (!any)
                return -EINVAL;

        ret_failing[0] = 0;
        for (size_t i = 0; i < len;) {
                const char *eol = memchr(body + i, '\n', len - i), *name;
                size_t n = eol ? (size_t) (eol - (body + i)) : len - i, name_len;
                bool f;

                if (readyz_line(body + i, n, &name, &name_len, &f) && f) {
                        char entry[NAME_SHOWN_MAX * 2];
                        size_t pos = 0;

                        name_append(entry, sizeof(entry), &pos, name, name_len);
                        list_add(ret_failing, size, ", ", entry);
                        failed++;
                }
                i += n + 1;
        }
        return (int) MIN(failed, (unsigned) INT_MAX);
}

/* ---- JSON answers ----------------------------------------------------------------------------- */

/* The top-level object of a JSON answer, or NULL when it is too large, malformed or not an object. */
static json_t *load_object(const char *body, size_t len, size_t max) {
        json_t *v;

        if (!body || len > max)
                return NULL;
        v = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(v)) {
                json_decref(v);
                return NULL;
        }
        return v;
}

int cm_probe_decode_version(const char *body, size_t len, char *ret_version, size_t size) {
        _cleanup_(json_decrefp) json_t *root = NULL;
        const json_t *v;
        size_t pos = 0;

        if (!ret_version || size == 0)
                return -EINVAL;
        root = load_object(body, len, VERSION_MAX);
        v = json_object_get(root, "gitVersion");
        if (!json_is_string(v) || json_string_length(v) == 0)
                return -EINVAL;
        ret_version[0] = 0;
        (void) text_append(ret_version, size, &pos, json_string_value(v), json_string_length(v));
        return 0;
}

/* A list answer's items (an array; null counts as empty) when its kind, if given, is kind. */
static int list_items(const json_t *root, const char *kind, const json_t **ret_items) {
        const json_t *k = json_object_get(root, "kind"), *items = json_object_get(root, "items");

        if (k && (!json_is_string(k) || !streq(json_string_value(k), kind)))
                return -EINVAL;
        if (!items || (!json_is_array(items) && !json_is_null(items)))
                return -EINVAL;
        *ret_items = items;
        return 0;
}

/* metadata.name of a list item: a non-empty string. */
static const json_t *item_name(const json_t *item) {
        const json_t *name = json_object_get(json_object_get(item, "metadata"), "name");

        if (!json_is_string(name) || json_string_length(name) == 0)
                return NULL;
        return name;
}

/* status.conditions of an item: NULL when absent, -EINVAL when not an array. */
static int item_conditions(const json_t *item, const json_t **ret) {
        const json_t *status = json_object_get(item, "status"), *c;

        if (status && !json_is_object(status) && !json_is_null(status))
                return -EINVAL;
        c = json_object_get(status, "conditions");
        if (c && !json_is_array(c) && !json_is_null(c))
                return -EINVAL;
        *ret = json_is_array(c) ? c : NULL;
        return 0;
}

/* A condition's type and status, or false when it lacks either. */
static bool condition_read(const json_t *c, const char **ret_type, const char **ret_status) {
        const char *type = json_string_value(json_object_get(c, "type")),
                   *status = json_string_value(json_object_get(c, "status"));

        if (!type || !status)
                return false;
        *ret_type = type;
        *ret_status = status;
        return true;
}

static const char *const pressure_types[] = { "MemoryPressure", "DiskPressure", "PIDPressure" };

/* Judges one node of a list into r; -EINVAL when it is not a Node. */
static int node_add(const json_t *node, struct cm_probe_result *r) {
        const json_t *name = item_name(node), *conds = NULL, *c;
        const json_t *ready_reason = NULL;
        bool ready = false, pressure[ELEMENTSOF(pressure_types)] = {}, any_pressure = false;
        size_t i;
        int k;

        if (!json_is_object(node) || !name)
                return -EINVAL;
        k = item_conditions(node, &conds);
        if (k < 0)
                return k;
        json_array_foreach(conds, i, c) {
                const char *type, *status;

                if (!condition_read(c, &type, &status))
                        continue;
                if (streq(type, "Ready")) {
                        ready = streq(status, "True");
                        ready_reason = json_object_get(c, "reason");
                        continue;
                }
                for (size_t p = 0; p < ELEMENTSOF(pressure_types); p++)
                        if (streq(type, pressure_types[p]) && streq(status, "True"))
                                any_pressure = pressure[p] = true;
        }

        if (r->nodes_total == UINT_MAX)
                return -EINVAL;
        r->nodes_total++;
        if (ready)
                r->nodes_ready++;
        else {
                char entry[NAME_SHOWN_MAX * 2 + 16];
                size_t pos = 0;

                name_append(entry, sizeof(entry), &pos, json_string_value(name), json_string_length(name));
                text_appends(entry, sizeof(entry), &pos, " (");
                if (json_is_string(ready_reason) && json_string_length(ready_reason) > 0)
                        name_append(entry, sizeof(entry), &pos, json_string_value(ready_reason),
                                    json_string_length(ready_reason));
                else
                        text_appends(entry, sizeof(entry), &pos, "Unknown");
                text_appends(entry, sizeof(entry), &pos, ")");
                list_add(r->nodes_not_ready, sizeof(r->nodes_not_ready), ", ", entry);
        }
        if (any_pressure) {
                char entry[NAME_SHOWN_MAX + 64];
                size_t pos = 0;
                bool first = true;

                name_append(entry, sizeof(entry), &pos, json_string_value(name), json_string_length(name));
                text_appends(entry, sizeof(entry), &pos, ": ");
                for (size_t p = 0; p < ELEMENTSOF(pressure_types); p++) {
                        if (!pressure[p])
                                continue;
                        if (!first)
                                text_appends(entry, sizeof(entry), &pos, ", ");
                        text_appends(entry, sizeof(entry), &pos, pressure_types[p]);
                        first = false;
                }
                list_add(r->nodes_pressure, sizeof(r->nodes_pressure), "; ", entry);
        }
        return 0;
}

/* metadata.continue: printable ASCII that fits in size bytes ("" when absent). */
static int list_continue(const json_t *root, const char **ret, size_t size) {
        const json_t *meta = json_object_get(root, "metadata"), *c;
        const char *s;
        size_t n;

        if (meta && !json_is_object(meta) && !json_is_null(meta))
                return -EINVAL;
        c = json_object_get(meta, "continue");
        if (!c || json_is_null(c)) {
                *ret = "";
                return 0;
        }
        if (!json_is_string(c))
                return -EINVAL;
        s = json_string_value(c);
        n = json_string_length(c);
        if (n >= size)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (s[i] < 0x21 || s[i] > 0x7e)
                        return -EINVAL;
        *ret = s;
        return 0;
}

int cm_probe_decode_nodes(const char *body, size_t len, struct cm_probe_result *r, char *ret_continue,
                          size_t size) {
        _cleanup_(json_decrefp) json_t *root = NULL;
        const json_t *items, *node;
        struct cm_probe_result t;
        const char *cont = "";
        size_t i;
        int k;

        if (!r || (ret_continue && size == 0))
                return -EINVAL;
        root = load_object(body, len, LIST_BODY_MAX);
        if (!root || list_items(root, "NodeList", &items) < 0)
                return -EINVAL;
        if (ret_continue && list_continue(root, &cont, size) < 0)
                return -EINVAL;

        t = *r;
        json_array_foreach(items, i, node) {
                k = node_add(node, &t);
                if (k < 0)
                        return k;
        }
        t.nodes_known = true;
        *r = t;
        if (ret_continue)
                memcpy(ret_continue, cont, strlen(cont) + 1);
        return 0;
}

/* An integer member of obj that Kubernetes defines as int32 (absent or null: def); -EINVAL otherwise. */
static int int32_member(const json_t *obj, const char *key, unsigned def, unsigned *ret) {
        const json_t *v = json_object_get(obj, key);
        json_int_t x;

        if (!v || json_is_null(v)) {
                *ret = def;
                return 0;
        }
        if (!json_is_integer(v))
                return -EINVAL;
        x = json_integer_value(v);
        if (x < 0 || x > INT32_MAX)
                return -EINVAL;
        *ret = (unsigned) x;
        return 0;
}

/* An object member (absent or null: NULL), -EINVAL when it is something else. */
static int object_member(const json_t *obj, const char *key, const json_t **ret) {
        const json_t *v = json_object_get(obj, key);

        if (v && !json_is_object(v) && !json_is_null(v))
                return -EINVAL;
        *ret = json_is_object(v) ? v : NULL;
        return 0;
}

/* Judges one workload of a list into r; -EINVAL when it is not one. */
static int workload_add(enum cm_workload_kind kind, const json_t *w, struct cm_probe_result *r) {
        const json_t *name = item_name(w), *spec, *status, *conds = NULL, *c;
        unsigned want = 0, have = 0;
        bool available, condition_false = false;
        const char *verb = "available";
        size_t i;

        if (!json_is_object(w) || !name || object_member(w, "spec", &spec) < 0 ||
            object_member(w, "status", &status) < 0)
                return -EINVAL;

        switch (kind) {
        case CM_WORKLOAD_DEPLOYMENT:
                if (int32_member(spec, "replicas", 1, &want) < 0 ||
                    int32_member(status, "availableReplicas", 0, &have) < 0 ||
                    item_conditions(w, &conds) < 0)
                        return -EINVAL;
                json_array_foreach(conds, i, c) {
                        const char *type, *st;

                        if (condition_read(c, &type, &st) && streq(type, "Available") && streq(st, "False"))
                                condition_false = true;
                }
                break;
        case CM_WORKLOAD_DAEMONSET:
                if (int32_member(status, "desiredNumberScheduled", 0, &want) < 0 ||
                    int32_member(status, "numberAvailable", 0, &have) < 0)
                        return -EINVAL;
                break;
        case CM_WORKLOAD_STATEFULSET:
                if (int32_member(spec, "replicas", 1, &want) < 0 ||
                    int32_member(status, "readyReplicas", 0, &have) < 0)
                        return -EINVAL;
                verb = "ready";
                break;
        default:
                return -EINVAL;
        }
        available = have >= want && !condition_false;

        if (r->workloads_total == UINT_MAX)
                return -EINVAL;
        r->workloads_total++;
        if (!available) {
                char entry[NAME_SHOWN_MAX + 96], counts[64];
                size_t pos = 0;

                r->workloads_unavailable++;
                text_appends(entry, sizeof(entry), &pos, workload_singular[kind]);
                text_appends(entry, sizeof(entry), &pos, "/");
                name_append(entry, sizeof(entry), &pos, json_string_value(name), json_string_length(name));
                if (have < want)
                        (void) snprintf(counts, sizeof(counts), " (%u/%u %s)", have, want, verb);
                else
                        (void) snprintf(counts, sizeof(counts), " (condition Available is False)");
                text_appends(entry, sizeof(entry), &pos, counts);
                list_add(r->workloads_not_available, sizeof(r->workloads_not_available), ", ", entry);
        }
        return 0;
}

int cm_probe_decode_workloads(enum cm_workload_kind k, const char *body, size_t len,
                              struct cm_probe_result *r) {
        _cleanup_(json_decrefp) json_t *root = NULL;
        const json_t *items, *w;
        struct cm_probe_result t;
        size_t i;

        if (!r || (unsigned) k >= _CM_WORKLOAD_KIND_MAX)
                return -EINVAL;
        root = load_object(body, len, LIST_BODY_MAX);
        if (!root || list_items(root, workload_list_kinds[k], &items) < 0)
                return -EINVAL;

        t = *r;
        json_array_foreach(items, i, w) {
                int e = workload_add(k, w, &t);

                if (e < 0)
                        return e;
        }
        t.workloads_known = true;
        *r = t;
        return 0;
}
