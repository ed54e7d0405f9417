/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "api/model.h"
#include "base/common.h"
#include "base/strbuf.h"

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
/* A version of a file (0: the newest); the version read in *ret_version. */
int cm_state_file_read_version(struct cm_service *s, const struct cm_cluster *c, const char *name,
                               uint64_t version, char **ret, size_t *ret_n, uint64_t *ret_version);
/*
 * The cluster's state files with their kept versions (newest first) as JSON into out:
 * {"items":[{"name":...,"versions":[{"version","size","createdAt","keyId"}]}]}.
 */
int cm_state_files_list_json(struct cm_service *s, const struct cm_cluster *c, struct strbuf *out);
/*
 * A deleted cluster's files are archived, not destroyed: kept for the service's retention period, then
 * purged (cm_state_files_purge, run by the service's housekeeping). 0 when there was nothing to archive
 * or no vault.
 */
int cm_state_files_archive(struct cm_service *s, const char *cluster_id);
/* Purges archives older than the retention period; returns how many were removed. */
int cm_state_files_purge(struct cm_service *s);
