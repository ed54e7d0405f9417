/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <jansson.h>

#include "base/common.h"
#include "server/server.h"

/*
 * Named secrets of an environment kept in the state vault (SSH keys, registry passwords): under the
 * vault owner "env:<env>", `<prefix><name>` holds the secret and `<prefix><name><suffix>` its public
 * record (the JSON the API answers). The record is written last and removed first, so an item is
 * listed only when both exist; a secret left without a record by a crash is overwritten by the next
 * create. Names are DNS labels.
 */
struct cm_vault_records {
        const char *prefix; /* "ssh/" */
        const char *suffix; /* ".pub" */
        const char *what; /* "SSH key", for messages */
};

/* `<prefix><name>` and `<prefix><name><suffix>`; -EINVAL when they do not fit. */
int cm_vault_records_files(const struct cm_vault_records *k, const char *name, char *secret, char *record,
                           size_t size);

/*
 * Stores a secret and its record. create: only when no record exists (409 otherwise); else only
 * when one exists (404 otherwise), as a new version of both. Returns 0 or replies with the problem
 * and returns < 0.
 */
int cm_vault_records_put(struct cm_req *req, const struct cm_vault_records *k, const char *name,
                         const void *secret, size_t secret_n, const char *record, size_t record_n,
                         bool create);

/* GET of the collection (records in name order, ?limit and ?pageToken), of one record, DELETE of one. */
void cm_vault_records_list(struct cm_req *req, const struct cm_vault_records *k);
void cm_vault_records_get(struct cm_req *req, const struct cm_vault_records *k);
void cm_vault_records_delete(struct cm_req *req, const struct cm_vault_records *k);

/* Wipes every string member of a decoded body (one of them is a secret), then drops it. */
void cm_json_decref_wiped(json_t **p);
