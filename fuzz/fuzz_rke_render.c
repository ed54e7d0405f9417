/* SPDX-License-Identifier: Apache-2.0 */
/* spec.rke as users send it: validation, then cluster.yml rendering of what validation accepts. */
#include "base/common.h"

#include "api/problem.h"
#include "engine/rke/rke.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char *const passwords[CM_RKE_MAX_REGISTRIES] = {
                "a", "b\"c", "d\\e", "f g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s",
        };
        json_t *spec = json_loadb((const char *) data, size, JSON_REJECT_DUPLICATES, NULL);
        struct cm_problem p;
        char *yml = NULL;
        size_t n = 0;

        if (!spec)
                return 0;
        cm_problem_init(&p);
        cm_rke_validate_spec(spec, &p);
        /* Rendering never trusts validation: it must cope with any spec, rendering or refusing it. */
        if (cm_rke_render(spec, "fuzz", "/var/lib/clustermgmt/rke-runs/op-1/ssh", passwords, &yml, &n) >=
            0) {
                if (!yml || strlen(yml) != n)
                        __builtin_trap();
                free(yml);
        } else if (!cm_problem_has_errors(&p) && json_is_object(json_object_get(spec, "rke")))
                __builtin_trap(); /* a valid spec always renders */
        cm_problem_done(&p);
        json_decref(spec);
        return 0;
}
