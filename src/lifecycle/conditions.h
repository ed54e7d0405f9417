/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"

/*
 * Conditions are a JSON array of {type, status ("True"|"False"|"Unknown"), reason, message,
 * lastTransitionTime}. Pure functions over their canonical text.
 *
 * Returns a new array (malloc'd canonical JSON) in which `type` has the given status, reason and
 * message; lastTransitionTime changes only when the status changes. A missing or unparsable input is
 * treated as []. NULL on allocation failure.
 */
char *cm_conditions_set(const char *conditions_json, const char *type, const char *status,
                        const char *reason, const char *message, uint64_t now_usec);

/*
 * Sets every condition of patch_json (an array of {type, status, reason, message}; entries without a
 * type or status are skipped) into conditions_json, as cm_conditions_set does one by one. A missing
 * or unparsable patch changes nothing. Returns a new canonical array; NULL on allocation failure.
 */
char *cm_conditions_merge(const char *conditions_json, const char *patch_json, uint64_t now_usec);

/* True when conditions has `type` with status "True" (false for a missing or unparsable input). */
bool cm_conditions_is_true(const char *conditions_json, const char *type);
