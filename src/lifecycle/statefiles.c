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
