/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "api/model.h"
#include "base/strbuf.h"

/*
 * Wire encoders (docs/api.md). They write straight into a bounded buffer and splice the stored
 * canonical JSON members (labels, spec, conditions, status) without re-encoding them.
 */
int cm_encode_environment(struct strbuf *out, const struct cm_environment *e);
int cm_encode_cluster(struct strbuf *out, const struct cm_cluster *c);
int cm_encode_operation(struct strbuf *out, const struct cm_operation *o);
/* Appends ,"nextPageToken":"..." when token is not NULL, then closes the list object. */
int cm_encode_list_end(struct strbuf *out, const char *next_token);
