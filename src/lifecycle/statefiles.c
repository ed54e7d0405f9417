/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "lifecycle/service.h"
#include "base/util.h"
#include "lifecycle/statefiles.h"
#include "vault/vault.h"

/*
 * A cluster's files live in the vault under its id (names are reused after a delete, ids never).
 * Without the state vault nothing is stored: secrets are never kept in clear.
 */
int cm_state_file_write(struct cm_service *s, const struct cm_cluster *c, const char *name, const void *data,
                        size_t n) {
        if (!s || !s->vault)
                return -EOPNOTSUPP;
        if (!c || isempty(c->id))
                return -EINVAL;
        return cm_vault_write(s->vault, c->id, name, data, n, -1, NULL);
}

int cm_state_file_read(struct cm_service *s, const struct cm_cluster *c, const char *name, char **ret,
                       size_t *ret_n) {
        if (!s || !s->vault)
                return -EOPNOTSUPP;
        if (!c || isempty(c->id))
                return -EINVAL;
        return cm_vault_read(s->vault, c->id, name, 0, ret, ret_n, NULL);
}

int cm_state_file_read_version(struct cm_service *s, const struct cm_cluster *c, const char *name,
                               uint64_t version, char **ret, size_t *ret_n, uint64_t *ret_version) {
        if (!s || !s->vault)
                return -EOPNOTSUPP;
        if (!c || isempty(c->id))
                return -EINVAL;
        return cm_vault_read(s->vault, c->id, name, version, ret, ret_n, ret_version);
}

static int add_versions(struct strbuf *out, const struct cm_vault_version *v, size_t n) {
        int r = strbuf_adds(out, ",\"versions\":[");

        for (size_t i = 0; i < n && r >= 0; i++) {
                char ts[40];

                cm_format_rfc3339(v[i].created_usec, ts, sizeof(ts));
                r = strbuf_addf(out,
                                "%s{\"version\":%" PRIu64 ",\"size\":%" PRIu64
                                ",\"createdAt\":\"%s\",\"keyId\":",
                                i ? "," : "", v[i].version, v[i].size, ts);
                if (r >= 0)
                        r = strbuf_add_json_string(out, v[i].key_id);
                if (r >= 0)
                        r = strbuf_addch(out, '}');
        }
        return r < 0 ? r : strbuf_addch(out, ']');
}

int cm_state_files_list_json(struct cm_service *s, const struct cm_cluster *c, struct strbuf *out) {
        char **names = NULL;
        size_t n = 0, shown = 0;
        int r;

        if (!s || !s->vault)
                return -EOPNOTSUPP;
        if (!c || isempty(c->id))
                return -EINVAL;
        r = cm_vault_list_files(s->vault, c->id, &names, &n);
        if (r == -ENOENT)
                n = 0;
        else if (r < 0)
                return r;
        r = strbuf_adds(out, "{\"items\":[");
        for (size_t i = 0; i < n && r >= 0; i++) {
                struct cm_vault_version *v = NULL;
                size_t nv = 0;

                r = cm_vault_list_versions(s->vault, c->id, names[i], &v, &nv);
                if (r == -ENOENT) {
                        r = 0; /* removed meanwhile */
                        continue;
                }
                if (r >= 0)
                        r = strbuf_adds(out, shown++ ? ",{\"name\":" : "{\"name\":");
                if (r >= 0)
                        r = strbuf_add_json_string(out, names[i]);
                if (r >= 0)
                        r = add_versions(out, v, nv);
                if (r >= 0)
                        r = strbuf_addch(out, '}');
                free(v);
        }
        cm_vault_names_free(names, n);
        return r < 0 ? r : strbuf_adds(out, "]}");
}

int cm_state_files_archive(struct cm_service *s, const char *cluster_id) {
        int r;

        if (!s || !s->vault)
                return 0;
        r = cm_vault_archive(s->vault, cluster_id, cm_now_usec());
        return r == -ENOENT ? 0 : r;
}

int cm_state_files_purge(struct cm_service *s) {
        uint64_t now = cm_now_usec(), keep = s->cfg.state_retention_usec;

        if (!s->vault || keep == 0)
                return 0;
        return cm_vault_purge(s->vault, now > keep ? now - keep : 0);
}
