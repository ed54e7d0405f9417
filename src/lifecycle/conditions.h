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

/* True when conditions has `type` with status "True" (false for a missing or unparsable input). */
bool cm_conditions_is_true(const char *conditions_json, const char *type);
