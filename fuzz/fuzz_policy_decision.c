/* SPDX-License-Identifier: Apache-2.0 */
/* Decisions as a policy service answers them: strict JSON, shapes, limits. */
#include "base/common.h"

#include <jansson.h>

#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every violation that comes out is {"rule": string, "message": string, "field"?: string}. */
static void check_violations(const json_t *list) {
        const json_t *v;
        size_t i;

        if (!json_is_array(list))
                __builtin_trap();
        json_array_foreach(CM_UNCONST(json_t *, list), i, v) {
                const json_t *field = json_object_get(v, "field");

                if (!json_is_object(v) || !json_is_string(json_object_get(v, "rule")) ||
                    !json_is_string(json_object_get(v, "message")) || (field && !json_is_string(field)) ||
                    json_object_size(v) != (field ? 3U : 2U))
                        __builtin_trap();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct cm_policy_decision d = {};
        int r;

        r = cm_policy_decision_decode((const char *) data, size, &d);
        if (r < 0) {
                if (r != -EBADMSG && r != -ENOMEM)
                        __builtin_trap();
                if (d.deny || d.warn)
                        __builtin_trap();
                return 0;
        }
        check_violations(d.deny);
        check_violations(d.warn);
        cm_policy_decision_done(&d);
        return 0;
}
