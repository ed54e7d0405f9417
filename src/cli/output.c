/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "base/util.h"
#include "cli/output.h"
#include "cli/yaml.h"

#define TABLE_GAP "   "
#define CELL_MAX CM_OUTPUT_CELL_MAX

int cm_output_format_from_string(const char *s, enum cm_output_format *ret) {
        if (streq(s, "table"))
                *ret = CM_OUTPUT_TABLE;
        else if (streq(s, "json"))
                *ret = CM_OUTPUT_JSON;
        else if (streq(s, "yaml"))
                *ret = CM_OUTPUT_YAML;
        else
                return -EINVAL;
        return 0;
}

void cm_output_age(uint64_t created_usec, uint64_t now_usec, char *buf, size_t size) {
        uint64_t s = now_usec > created_usec ? (now_usec - created_usec) / USEC_PER_SEC : 0;

        if (s < 120)
                (void) snprintf(buf, size, "%" PRIu64 "s", s);
        else if (s < 10 * 60)
                (void) snprintf(buf, size, "%" PRIu64 "m%" PRIu64 "s", s / 60, s % 60);
        else if (s < 3 * 3600)
                (void) snprintf(buf, size, "%" PRIu64 "m", s / 60);
        else if (s < 8 * 3600)
                (void) snprintf(buf, size, "%" PRIu64 "h%" PRIu64 "m", s / 3600, (s % 3600) / 60);
        else if (s < 2 * 86400)
                (void) snprintf(buf, size, "%" PRIu64 "h", s / 3600);
        else if (s < 8 * 86400)
                (void) snprintf(buf, size, "%" PRIu64 "d%" PRIu64 "h", s / 86400, (s % 86400) / 3600);
        else
                (void) snprintf(buf, size, "%" PRIu64 "d", s / 86400);
}

int cm_output_add_clean(struct strbuf *out, const char *s) {
        const unsigned char *p = (const unsigned char *) s;
        int r;

        while (*p) {
                size_t n = 0;

                while (p[n] >= 0x20 && p[n] != 0x7f &&
                       !(p[n] == 0xc2 && p[n + 1] >= 0x80 && p[n + 1] <= 0x9f))
                        n++;
                r = strbuf_add(out, p, n);
                if (r < 0)
                        return r;
                p += n;
                if (!*p)
                        break;
                r = strbuf_addch(out, '?');
                if (r < 0)
                        return r;
                p += (p[0] == 0xc2) ? 2 : 1;
        }
        return 0;
}

static const char *json_str(const json_t *obj, const char *key) {
        return json_string_value(json_object_get(obj, key));
}

int cm_output_labels(struct strbuf *out, const json_t *labels) {
        const char *key;
        json_t *value;
        bool first = true;
        int r;

        if (!json_is_object(labels) || json_object_size(labels) == 0)
                return strbuf_adds(out, "<none>");
        json_object_foreach(CM_UNCONST(json_t *, labels), key, value) {
                if (!first && (r = strbuf_addch(out, ',')) < 0)
                        return r;
                first = false;
                if ((r = cm_output_add_clean(out, key)) < 0 || (r = strbuf_addch(out, '=')) < 0 ||
                    (r = cm_output_add_clean(out, json_is_string(value) ? json_string_value(value) : "?")) <
                            0)
                        return r;
        }
        return 0;
}

void cm_output_table_done(struct cm_output_table *t) {
        if (!t)
                return;
        for (size_t i = 0; i < t->n_cells; i++)
                free(t->cells[i]);
        free(t->cells);
        *t = (struct cm_output_table){};
}

int cm_output_table_init(struct cm_output_table *t, const char *const *headers, size_t n) {
        int r;

        if (n == 0 || n > CM_OUTPUT_TABLE_COLUMNS_MAX)
                return -EINVAL;
        *t = (struct cm_output_table){ .n_columns = n };
        for (size_t i = 0; i < n; i++) {
                r = cm_output_table_add(t, headers[i]);
                if (r < 0) {
                        cm_output_table_done(t);
                        return r;
                }
        }
        return 0;
}

/* Characters, not bytes: continuation bytes of UTF-8 do not count. */
static size_t utf8_width(const char *s) {
        size_t w = 0;

        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if ((*p & 0xC0) != 0x80)
                        w++;
        return w;
}

int cm_output_table_add(struct cm_output_table *t, const char *text) {
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT(CELL_MAX * 2);
        _cleanup_free_ char *cut = NULL;
        size_t col = t->n_cells % t->n_columns, w, n;
        char *cell;
        int r;

        if (isempty(text))
                text = "-";
        n = strlen(text);
        if (n > CELL_MAX) {
                /* Cut long cells at a character boundary. */
                n = CELL_MAX;
                while (n > 0 && ((unsigned char) text[n] & 0xC0) == 0x80)
                        n--;
                cut = strndup(text, n);
                if (!cut)
                        return -ENOMEM;
                text = cut;
        }
        r = cm_output_add_clean(&sb, text);
        if (r < 0)
                return r;
        if (t->n_cells == t->alloc) {
                size_t alloc = t->alloc ? t->alloc * 2 : 32;
                char **p = reallocarray(t->cells, alloc, sizeof(char *));
                if (!p)
                        return -ENOMEM;
                t->cells = p;
                t->alloc = alloc;
        }
        cell = strbuf_detach(&sb, NULL);
        if (!cell)
                return -ENOMEM;
        w = utf8_width(cell);
        t->widths[col] = MAX(t->widths[col], w);
        t->cells[t->n_cells++] = cell;
        return 0;
}

size_t cm_output_table_rows(const struct cm_output_table *t) {
        return t->n_columns ? (t->n_cells + t->n_columns - 1) / t->n_columns : 0;
}

int cm_output_table_render_row(const struct cm_output_table *t, size_t row, struct strbuf *out) {
        size_t first = row * t->n_columns;
        int r;

        for (size_t i = first; i < t->n_cells && i < first + t->n_columns; i++) {
                size_t col = i - first;

                r = strbuf_adds(out, t->cells[i]);
                if (r < 0)
                        return r;
                if (col == t->n_columns - 1 || i == t->n_cells - 1)
                        r = strbuf_addch(out, '\n');
                else {
                        size_t pad = t->widths[col] - utf8_width(t->cells[i]);
                        r = strbuf_addf(out, "%*s" TABLE_GAP, (int) pad, "");
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

static int table_render(const struct cm_output_table *t, struct strbuf *out) {
        size_t n = cm_output_table_rows(t);
        int r;

        for (size_t row = 0; row < n; row++) {
                r = cm_output_table_render_row(t, row, out);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void age_of(const json_t *item, uint64_t now_usec, char *buf, size_t size) {
        const char *created = json_str(item, "createdAt");
        uint64_t usec;

        if (!created || cm_parse_rfc3339(created, &usec) < 0) {
                (void) snprintf(buf, size, "-");
                return;
        }
        cm_output_age(usec, now_usec, buf, size);
}

static void int_of(const json_t *v, char *buf, size_t size) {
        if (json_is_integer(v))
                (void) snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        else
                (void) snprintf(buf, size, "-");
}

static int row_environment(struct cm_output_table *t, const json_t *item, uint64_t now_usec) {
        _cleanup_strbuf_ struct strbuf labels = STRBUF_INIT(CELL_MAX * 4);
        char age[32];
        int r;

        r = cm_output_labels(&labels, json_object_get(item, "labels"));
        if (r < 0 && r != -ENOBUFS)
                return r;
        age_of(item, now_usec, age, sizeof(age));
        if ((r = cm_output_table_add(t, json_str(item, "name"))) < 0 ||
            (r = cm_output_table_add(t, labels.buf)) < 0 || (r = cm_output_table_add(t, age)) < 0)
                return r;
        return 0;
}

static int row_cluster(struct cm_output_table *t, const json_t *item, uint64_t now_usec) {
        const json_t *status = json_object_get(item, "status");
        char gen[32], nodes[32], age[32];
        int r;

        int_of(json_object_get(item, "generation"), gen, sizeof(gen));
        int_of(json_object_get(status, "nodes"), nodes, sizeof(nodes));
        age_of(item, now_usec, age, sizeof(age));
        if ((r = cm_output_table_add(t, json_str(item, "name"))) < 0 ||
            (r = cm_output_table_add(t, json_str(json_object_get(item, "spec"), "engine"))) < 0 ||
            (r = cm_output_table_add(t, json_str(status, "phase"))) < 0 ||
            (r = cm_output_table_add(t, gen)) < 0 || (r = cm_output_table_add(t, nodes)) < 0 ||
            (r = cm_output_table_add(t, age)) < 0)
                return r;
        return 0;
}

static int row_operation(struct cm_output_table *t, const json_t *item, uint64_t now_usec) {
        const json_t *attempts = json_object_get(item, "attempts"),
                     *max = json_object_get(item, "maxAttempts");
        char att[48], age[32];
        int r;

        if (json_is_integer(attempts) && json_is_integer(max))
                (void) snprintf(att, sizeof(att), "%" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT,
                                json_integer_value(attempts), json_integer_value(max));
        else
                int_of(attempts, att, sizeof(att));
        age_of(item, now_usec, age, sizeof(age));
        if ((r = cm_output_table_add(t, json_str(item, "id"))) < 0 ||
            (r = cm_output_table_add(t, json_str(item, "type"))) < 0 ||
            (r = cm_output_table_add(t, json_str(item, "state"))) < 0 ||
            (r = cm_output_table_add(t, json_str(item, "cluster"))) < 0 ||
            (r = cm_output_table_add(t, att)) < 0 || (r = cm_output_table_add(t, age)) < 0)
                return r;
        return 0;
}

static int row_sshkey(struct cm_output_table *t, const json_t *item, uint64_t now_usec) {
        const char *pub = json_str(item, "publicKey");
        char type[64] = "", age[32];
        int r;

        /* An OpenSSH public key starts with its type: "ssh-ed25519 AAAA... comment". */
        if (pub) {
                size_t n = strcspn(pub, " \t\r\n");
                (void) snprintf(type, sizeof(type), "%.*s", (int) MIN(n, sizeof(type) - 1), pub);
        }
        age_of(item, now_usec, age, sizeof(age));
        if ((r = cm_output_table_add(t, json_str(item, "name"))) < 0 ||
            (r = cm_output_table_add(t, type)) < 0 ||
            (r = cm_output_table_add(t, json_str(item, "fingerprint"))) < 0 ||
            (r = cm_output_table_add(t, age)) < 0)
                return r;
        return 0;
}

static int row_snapshot(struct cm_output_table *t, const json_t *item, uint64_t now_usec) {
        char age[32];
        int r;

        age_of(item, now_usec, age, sizeof(age));
        if ((r = cm_output_table_add(t, json_str(item, "name"))) < 0 ||
            (r = cm_output_table_add(t, json_str(item, "operation"))) < 0 ||
            (r = cm_output_table_add(t, age)) < 0)
                return r;
        return 0;
}

/* A state file: its newest version (versions are listed newest first) and how many are kept. */
static int row_statefile(struct cm_output_table *t, const json_t *item, uint64_t now_usec) {
        const json_t *versions = json_object_get(item, "versions"), *newest = json_array_get(versions, 0);
        char ver[32], kept[32], size[32], age[32];
        int r;

        int_of(json_object_get(newest, "version"), ver, sizeof(ver));
        (void) snprintf(kept, sizeof(kept), "%zu", json_array_size(versions));
        int_of(json_object_get(newest, "size"), size, sizeof(size));
        age_of(newest, now_usec, age, sizeof(age));
        if ((r = cm_output_table_add(t, json_str(item, "name"))) < 0 ||
            (r = cm_output_table_add(t, ver)) < 0 || (r = cm_output_table_add(t, kept)) < 0 ||
            (r = cm_output_table_add(t, size)) < 0 ||
            (r = cm_output_table_add(t, json_str(newest, "keyId"))) < 0 ||
            (r = cm_output_table_add(t, age)) < 0)
                return r;
        return 0;
}

static int row_secret(struct cm_output_table *t, const json_t *item, uint64_t now_usec) {
        char size[32], age[32], updated[32] = "-";
        const char *u = json_str(item, "updatedAt");
        uint64_t usec;
        int r;

        int_of(json_object_get(item, "size"), size, sizeof(size));
        age_of(item, now_usec, age, sizeof(age));
        if (u && cm_parse_rfc3339(u, &usec) >= 0)
                cm_output_age(usec, now_usec, updated, sizeof(updated));
        if ((r = cm_output_table_add(t, json_str(item, "name"))) < 0 ||
            (r = cm_output_table_add(t, size)) < 0 || (r = cm_output_table_add(t, updated)) < 0 ||
            (r = cm_output_table_add(t, age)) < 0)
                return r;
        return 0;
}

static int row_apikey(struct cm_output_table *t, const json_t *item, uint64_t now_usec) {
        _cleanup_strbuf_ struct strbuf roles = STRBUF_INIT(4096);
        const json_t *list = json_object_get(item, "roles"), *g;
        const char *state = json_is_true(json_object_get(item, "revoked")) ? "revoked" : "active";
        char used[32] = "never", age[32];
        const char *u = json_str(item, "lastUsedAt");
        uint64_t usec;
        size_t i;
        int r = 0;

        if (json_is_true(json_object_get(item, "globalAdmin")))
                r = strbuf_adds(&roles, "*=admin(global)");
        json_array_foreach(list, i, g) {
                if (r >= 0 && roles.len)
                        r = strbuf_addch(&roles, ',');
                if (r >= 0)
                        r = strbuf_addf(&roles, "%s=%s", json_str(g, "environment") ?: "?",
                                        json_str(g, "role") ?: "?");
        }
        if (r < 0)
                return r;
        if (u && cm_parse_rfc3339(u, &usec) >= 0)
                cm_output_age(usec, now_usec, used, sizeof(used));
        age_of(item, now_usec, age, sizeof(age));
        if ((r = cm_output_table_add(t, json_str(item, "id"))) < 0 ||
            (r = cm_output_table_add(t, json_str(item, "name"))) < 0 ||
            (r = cm_output_table_add(t, roles.len ? roles.buf : "-")) < 0 ||
            (r = cm_output_table_add(t, state)) < 0 || (r = cm_output_table_add(t, used)) < 0 ||
            (r = cm_output_table_add(t, age)) < 0)
                return r;
        return 0;
}

static int row_rolebinding(struct cm_output_table *t, const json_t *item, uint64_t now_usec) {
        const json_t *sub = json_object_get(item, "subject");
        char who[300], age[32];
        int r;

        (void) snprintf(who, sizeof(who), "%s:%s", json_str(sub, "kind") ?: "?",
                        json_str(sub, "name") ?: "?");
        age_of(item, now_usec, age, sizeof(age));
        if ((r = cm_output_table_add(t, json_str(item, "id"))) < 0 ||
            (r = cm_output_table_add(t, json_str(item, "environment"))) < 0 ||
            (r = cm_output_table_add(t, who)) < 0 ||
            (r = cm_output_table_add(t, json_str(item, "role"))) < 0 ||
            (r = cm_output_table_add(t, age)) < 0)
                return r;
        return 0;
}

static int row_addon(struct cm_output_table *t, const json_t *item, uint64_t now_usec) {
        const json_t *chart = json_object_get(item, "chart");
        char age[64], source[320] = "-";
        int r;

        if (json_str(chart, "oci"))
                (void) snprintf(source, sizeof(source), "%s@%s", json_str(chart, "oci"),
                                json_str(chart, "version") ?: "?");
        else if (json_str(chart, "name"))
                (void) snprintf(source, sizeof(source), "%s@%s", json_str(chart, "name"),
                                json_str(chart, "version") ?: "?");
        age_of(item, now_usec, age, sizeof(age));
        if ((r = cm_output_table_add(t, json_str(item, "name"))) < 0 ||
            (r = cm_output_table_add(t, json_str(item, "kind"))) < 0 ||
            (r = cm_output_table_add(t, json_str(item, "version"))) < 0 ||
            (r = cm_output_table_add(t, json_is_true(json_object_get(item, "baseline")) ? "yes" : "no")) <
                    0 ||
            (r = cm_output_table_add(t, json_str(item, "namespace"))) < 0 ||
            (r = cm_output_table_add(t, source)) < 0 || (r = cm_output_table_add(t, age)) < 0)
                return r;
        return 0;
}

/* An installation: the reconciler's status (Uninstalling shows once asked, before it looks). */
static int row_addon_install(struct cm_output_table *t, const json_t *item, uint64_t now_usec) {
        const json_t *status = json_object_get(item, "status");
        const char *phase = json_str(status, "phase");
        char objects[32], corrections[32], age[32];
        int r;

        if (json_is_true(json_object_get(item, "uninstall")) && (!phase || !streq(phase, "Failed")))
                phase = "Uninstalling";
        int_of(json_object_get(status, "objects"), objects, sizeof(objects));
        int_of(json_object_get(status, "corrections"), corrections, sizeof(corrections));
        age_of(item, now_usec, age, sizeof(age));
        if ((r = cm_output_table_add(t, json_str(item, "addon"))) < 0 ||
            (r = cm_output_table_add(t, phase)) < 0 ||
            (r = cm_output_table_add(t, json_str(status, "appliedVersion"))) < 0 ||
            (r = cm_output_table_add(t, objects)) < 0 || (r = cm_output_table_add(t, corrections)) < 0 ||
            (r = cm_output_table_add(t, age)) < 0)
                return r;
        return 0;
}

struct table_kind {
        const char *const *headers;
        size_t n_columns;
        int (*row)(struct cm_output_table *t, const json_t *item, uint64_t now_usec);
};

static const char *const env_headers[] = { "NAME", "LABELS", "AGE" };
static const char *const cluster_headers[] = { "NAME", "ENGINE", "PHASE", "GENERATION", "NODES", "AGE" };
static const char *const op_headers[] = { "ID", "TYPE", "STATE", "CLUSTER", "ATTEMPTS", "AGE" };
static const char *const sshkey_headers[] = { "NAME", "TYPE", "FINGERPRINT", "AGE" };
static const char *const snapshot_headers[] = { "NAME", "OPERATION", "AGE" };
static const char *const apikey_headers[] = { "ID", "NAME", "ROLES", "STATE", "LAST USED", "AGE" };
static const char *const rolebinding_headers[] = { "ID", "ENVIRONMENT", "SUBJECT", "ROLE", "AGE" };
static const char *const secret_headers[] = { "NAME", "SIZE", "UPDATED", "AGE" };
static const char *const addon_headers[] = { "NAME",      "KIND",  "VERSION", "BASELINE",
                                             "NAMESPACE", "CHART", "AGE" };
static const char *const addon_install_headers[] = { "ADDON",   "PHASE",       "VERSION",
                                                     "OBJECTS", "CORRECTIONS", "AGE" };
static const char *const statefile_headers[] = { "FILE", "VERSION", "KEPT", "SIZE", "KEY", "AGE" };

static const struct table_kind table_kinds[] = {
        [CM_RESOURCE_ENVIRONMENT] = { env_headers, ELEMENTSOF(env_headers), row_environment },
        [CM_RESOURCE_CLUSTER] = { cluster_headers, ELEMENTSOF(cluster_headers), row_cluster },
        [CM_RESOURCE_OPERATION] = { op_headers, ELEMENTSOF(op_headers), row_operation },
        [CM_RESOURCE_SSHKEY] = { sshkey_headers, ELEMENTSOF(sshkey_headers), row_sshkey },
        [CM_RESOURCE_SNAPSHOT] = { snapshot_headers, ELEMENTSOF(snapshot_headers), row_snapshot },
        [CM_RESOURCE_STATEFILE] = { statefile_headers, ELEMENTSOF(statefile_headers), row_statefile },
        [CM_RESOURCE_SECRET] = { secret_headers, ELEMENTSOF(secret_headers), row_secret },
        [CM_RESOURCE_APIKEY] = { apikey_headers, ELEMENTSOF(apikey_headers), row_apikey },
        [CM_RESOURCE_ROLEBINDING] = { rolebinding_headers, ELEMENTSOF(rolebinding_headers),
                                      row_rolebinding },
        [CM_RESOURCE_ADDON] = { addon_headers, ELEMENTSOF(addon_headers), row_addon },
        [CM_RESOURCE_ADDON_INSTALL] = { addon_install_headers, ELEMENTSOF(addon_install_headers),
                                        row_addon_install },
};

/* "Label:   value" detail lines below a single resource's row. */
static int detail(struct strbuf *out, const char *label, const char *value) {
        int r;

        if (isempty(value))
                return 0;
        if ((r = strbuf_addf(out, "%-21s", label)) < 0 || (r = cm_output_add_clean(out, value)) < 0)
                return r;
        return strbuf_addch(out, '\n');
}

static int addon_details(struct strbuf *out, const json_t *a) {
        const json_t *chart = json_object_get(a, "chart"), *timeout = json_object_get(a, "timeoutSeconds"),
                     *drift = json_object_get(a, "driftIntervalSeconds");
        char buf[64];
        int r;

        if ((r = strbuf_addch(out, '\n')) < 0 ||
            (r = detail(out, "Environment:", json_str(a, "environment"))) < 0 ||
            (r = detail(out, "Description:", json_str(a, "description"))) < 0 ||
            (r = detail(out, "Chart repository:", json_str(chart, "repository"))) < 0 ||
            (r = detail(out, "Chart:", json_str(chart, "oci") ?: json_str(chart, "name"))) < 0 ||
            (r = detail(out, "Chart version:", json_str(chart, "version"))) < 0)
                return r;
        if (json_str(a, "manifests")) {
                (void) snprintf(buf, sizeof(buf), "%zu bytes", strlen(json_str(a, "manifests")));
                if ((r = detail(out, "Manifests:", buf)) < 0)
                        return r;
        }
        if (json_is_integer(timeout) && json_is_integer(drift)) {
                (void) snprintf(buf, sizeof(buf),
                                "%" JSON_INTEGER_FORMAT "s, drift check every %" JSON_INTEGER_FORMAT "s",
                                json_integer_value(timeout), json_integer_value(drift));
                if ((r = detail(out, "Rollout timeout:", buf)) < 0)
                        return r;
        }
        if ((r = detail(out, "Created:", json_str(a, "createdAt"))) < 0 ||
            (r = detail(out, "Updated:", json_str(a, "updatedAt"))) < 0)
                return r;
        return 0;
}

static int addon_install_details(struct strbuf *out, const json_t *i) {
        const json_t *status = json_object_get(i, "status"), *conds = json_object_get(status, "conditions"),
                     *cond;
        const json_t *helm = json_object_get(status, "helm");
        char buf[64];
        size_t k;
        int r;

        if ((r = strbuf_addch(out, '\n')) < 0 || (r = detail(out, "Cluster:", json_str(i, "cluster"))) < 0 ||
            (r = detail(out, "Definition version:", json_str(i, "addonVersion"))) < 0)
                return r;
        int_of(json_object_get(i, "generation"), buf, sizeof(buf));
        if ((r = detail(out, "Generation:", buf)) < 0)
                return r;
        if (json_is_integer(json_object_get(status, "observedGeneration"))) {
                int_of(json_object_get(status, "observedGeneration"), buf, sizeof(buf));
                if ((r = detail(out, "Observed generation:", buf)) < 0)
                        return r;
        }
        if ((r = detail(out, "Uninstall:",
                        json_is_true(json_object_get(i, "uninstall")) ? "requested" : NULL)) < 0 ||
            (r = detail(out, "Reason:", json_str(status, "reason"))) < 0 ||
            (r = detail(out, "Message:", json_str(status, "message"))) < 0 ||
            (r = detail(out, "Helm release:", json_str(helm, "release"))) < 0 ||
            (r = detail(out, "Last apply:", json_str(status, "lastApplyTime"))) < 0 ||
            (r = detail(out, "Last drift check:", json_str(status, "lastDriftCheckTime"))) < 0 ||
            (r = detail(out, "Created:", json_str(i, "createdAt"))) < 0 ||
            (r = detail(out, "Updated:", json_str(i, "updatedAt"))) < 0)
                return r;
        if (!json_is_array(conds) || json_array_size(conds) == 0)
                return 0;
        if ((r = strbuf_adds(out, "Conditions:\n")) < 0)
                return r;
        json_array_foreach(conds, k, cond) {
                if ((r = strbuf_adds(out, "  ")) < 0 ||
                    (r = cm_output_add_clean(out, json_str(cond, "type") ?: "?")) < 0 ||
                    (r = strbuf_addch(out, '=')) < 0 ||
                    (r = cm_output_add_clean(out, json_str(cond, "status") ?: "?")) < 0)
                        return r;
                if (json_str(cond, "reason") &&
                    ((r = strbuf_adds(out, " (")) < 0 ||
                     (r = cm_output_add_clean(out, json_str(cond, "reason"))) < 0 ||
                     (r = strbuf_addch(out, ')')) < 0))
                        return r;
                if (json_str(cond, "message") &&
                    ((r = strbuf_adds(out, ": ")) < 0 ||
                     (r = cm_output_add_clean(out, json_str(cond, "message"))) < 0))
                        return r;
                if ((r = strbuf_addch(out, '\n')) < 0)
                        return r;
        }
        return 0;
}

static int cluster_details(struct strbuf *out, const json_t *c) {
        const json_t *status = json_object_get(c, "status"), *conds = json_object_get(status, "conditions");
        _cleanup_strbuf_ struct strbuf labels = STRBUF_INIT(64 * 1024);
        const json_t *cond;
        char buf[64];
        size_t i;
        int r;

        if ((r = strbuf_addch(out, '\n')) < 0 ||
            (r = detail(out, "Environment:", json_str(c, "environment"))) < 0)
                return r;
        r = cm_output_labels(&labels, json_object_get(c, "labels"));
        if (r < 0)
                return r;
        if ((r = detail(out, "Labels:", labels.buf)) < 0)
                return r;
        if (json_is_integer(json_object_get(status, "observedGeneration"))) {
                int_of(json_object_get(status, "observedGeneration"), buf, sizeof(buf));
                if ((r = detail(out, "Observed generation:", buf)) < 0)
                        return r;
        }
        if ((r = detail(out, "Endpoint:", json_str(status, "endpoint"))) < 0 ||
            (r = detail(out, "Kubernetes version:", json_str(status, "kubernetesVersion"))) < 0 ||
            (r = detail(out, "Created:", json_str(c, "createdAt"))) < 0 ||
            (r = detail(out, "Updated:", json_str(c, "updatedAt"))) < 0)
                return r;
        if (!json_is_array(conds) || json_array_size(conds) == 0)
                return 0;
        if ((r = strbuf_adds(out, "Conditions:\n")) < 0)
                return r;
        json_array_foreach(conds, i, cond) {
                const char *reason = json_str(cond, "reason"), *message = json_str(cond, "message");

                if ((r = strbuf_adds(out, "  ")) < 0 ||
                    (r = cm_output_add_clean(out, strna(json_str(cond, "type")))) < 0 ||
                    (r = strbuf_addch(out, '=')) < 0 ||
                    (r = cm_output_add_clean(out, strna(json_str(cond, "status")))) < 0)
                        return r;
                if (reason &&
                    ((r = strbuf_adds(out, " (")) < 0 || (r = cm_output_add_clean(out, reason)) < 0 ||
                     (r = strbuf_addch(out, ')')) < 0))
                        return r;
                if (!isempty(message) &&
                    ((r = strbuf_adds(out, ": ")) < 0 || (r = cm_output_add_clean(out, message)) < 0))
                        return r;
                if ((r = strbuf_addch(out, '\n')) < 0)
                        return r;
        }
        return 0;
}

static int operation_details(struct strbuf *out, const json_t *op) {
        int r;

        if ((r = strbuf_addch(out, '\n')) < 0 ||
            (r = detail(out, "Environment:", json_str(op, "environment"))) < 0 ||
            (r = detail(out, "Requested by:", json_str(op, "requestedBy"))) < 0 ||
            (r = detail(out, "Created:", json_str(op, "createdAt"))) < 0 ||
            (r = detail(out, "Started:", json_str(op, "startedAt"))) < 0 ||
            (r = detail(out, "Finished:", json_str(op, "finishedAt"))) < 0 ||
            (r = detail(out, "Next attempt:", json_str(op, "nextRunAt"))) < 0)
                return r;
        if (json_is_true(json_object_get(op, "cancelRequested")) &&
            (r = detail(out, "Cancel requested:", "yes")) < 0)
                return r;
        return detail(out, "Error:", json_str(op, "error"));
}

static int render_table(struct strbuf *out, enum cm_resource kind, const json_t *v, uint64_t now_usec) {
        const struct table_kind *k = &table_kinds[kind];
        struct cm_output_table t = {};
        const json_t *item;
        size_t i;
        int r;

        r = cm_output_table_init(&t, k->headers, k->n_columns);
        if (json_is_array(v)) {
                json_array_foreach(v, i, item) {
                        if (r < 0)
                                break;
                        if (json_is_object(item))
                                r = k->row(&t, item, now_usec);
                }
        } else if (r >= 0)
                r = k->row(&t, v, now_usec);
        if (r >= 0)
                r = table_render(&t, out);
        cm_output_table_done(&t);
        if (r < 0 || json_is_array(v))
                return r;
        if (kind == CM_RESOURCE_CLUSTER)
                return cluster_details(out, v);
        if (kind == CM_RESOURCE_OPERATION)
                return operation_details(out, v);
        if (kind == CM_RESOURCE_ADDON)
                return addon_details(out, v);
        if (kind == CM_RESOURCE_ADDON_INSTALL)
                return addon_install_details(out, v);
        return 0;
}

int cm_output_render_document(struct strbuf *out, enum cm_output_format fmt, const json_t *v) {
        json_t *doc;
        int r;

        if (json_is_array(v)) {
                doc = json_pack("{s:O}", "items", CM_UNCONST(json_t *, v));
                if (!doc)
                        return -ENOMEM;
        } else
                doc = json_incref(CM_UNCONST(json_t *, v));

        if (fmt == CM_OUTPUT_YAML)
                r = cm_json_to_yaml(doc, out);
        else {
                char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

                if (!text)
                        r = -ENOMEM;
                else {
                        r = strbuf_adds(out, text);
                        if (r >= 0)
                                r = strbuf_addch(out, '\n');
                        free(text);
                }
        }
        json_decref(doc);
        return r;
}

int cm_output_render(struct strbuf *out, enum cm_output_format fmt, enum cm_resource kind, const json_t *v,
                     uint64_t now_usec) {
        if ((unsigned) kind >= ELEMENTSOF(table_kinds) || (!json_is_object(v) && !json_is_array(v)))
                return -EINVAL;
        if (fmt == CM_OUTPUT_TABLE)
                return render_table(out, kind, v, now_usec);
        return cm_output_render_document(out, fmt, v);
}

int cm_output_problem(struct strbuf *out, const struct cm_client_problem *p) {
        int r;

        if ((r = strbuf_adds(out, "error: ")) < 0 ||
            (r = cm_output_add_clean(out, isempty(p->title) ? cm_http_status_text(p->status) : p->title)) <
                    0)
                return r;
        if (!isempty(p->detail) && (!p->title || !streq(p->detail, p->title)) &&
            ((r = strbuf_adds(out, ": ")) < 0 || (r = cm_output_add_clean(out, p->detail)) < 0))
                return r;
        if ((r = strbuf_addch(out, '\n')) < 0)
                return r;
        for (size_t i = 0; i < p->n_errors; i++) {
                const struct cm_client_problem_field *f = &p->errors[i];

                if ((r = strbuf_adds(out, "  ")) < 0)
                        return r;
                if (!isempty(f->field) &&
                    ((r = cm_output_add_clean(out, f->field)) < 0 || (r = strbuf_adds(out, ": ")) < 0))
                        return r;
                if ((r = cm_output_add_clean(out, f->reason ?: "invalid")) < 0 ||
                    (r = strbuf_addch(out, '\n')) < 0)
                        return r;
        }
        return 0;
}
