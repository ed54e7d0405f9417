/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "api/model.h"
#include "base/common.h"

struct cm_service;

/*
 * A cluster's state files as the service layer sees them: named files in the state vault,
 * encrypted and versioned. The engine context and the API (kubeconfig, state files) go through
 * these. read returns a copy the caller wipes and frees; -ENOENT when absent; -EOPNOTSUPP when the
 * service runs without a vault.
 */
int cm_state_file_write(struct cm_service *s, const struct cm_cluster *c, const char *name, const void *data,
                        size_t n);
int cm_state_file_read(struct cm_service *s, const struct cm_cluster *c, const char *name, char **ret,
                       size_t *ret_n);
