/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "lifecycle/statefiles.h"

/* Without the state vault nothing is stored: secrets are never kept in clear. */
int cm_state_file_write(struct cm_service *s, const struct cm_cluster *c, const char *name, const void *data,
                        size_t n) {
        return -EOPNOTSUPP;
}

int cm_state_file_read(struct cm_service *s, const struct cm_cluster *c, const char *name, char **ret,
                       size_t *ret_n) {
        return -EOPNOTSUPP;
}
