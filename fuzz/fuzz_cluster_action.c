/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bodies of snapshot / restore / rotate-certs requests. The first byte picks the operation; the
 * parameters that decoding accepts become rke's arguments, so they are checked once more here.
 */
#include "base/common.h"

#include "api/documents.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const enum cm_op_type types[] = { CM_OP_SNAPSHOT, CM_OP_RESTORE, CM_OP_ROTATE_CERTS };
        struct cm_problem p;
        char *params = NULL;

        if (size < 1)
                return 0;
        cm_problem_init(&p);
        if (cm_cluster_action_decode(types[data[0] % 3], "fuzz", (const char *) data + 1, size - 1,
                                     UINT64_C(1700000000000000), &params, &p) >= 0) {
                json_t *j = json_loads(params, 0, NULL);
                const char *name = json_string_value(json_object_get(j, "name"))
                                           ?: json_string_value(json_object_get(j, "snapshot"));
                const json_t *svcs = json_object_get(j, "services"), *v;
                size_t i;

                if (!json_is_object(j) || (name && (!cm_snapshot_name_valid(name) || name[0] == '-')))
                        __builtin_trap();
                json_array_foreach(svcs, i, v) {
                        if (!json_is_string(v) || json_string_value(v)[0] == '-')
                                __builtin_trap();
                }
                json_decref(j);
                free(params);
        } else if (p.status < 400 || p.status >= 500)
                __builtin_trap();
        cm_problem_done(&p);
        return 0;
}
