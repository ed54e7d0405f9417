/* SPDX-License-Identifier: Apache-2.0 */
/* Request paths: the router splits and matches arbitrary paths in place. */
#include "base/common.h"

#include "server/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char *const methods[] = { "GET", "POST", "PUT", "DELETE", "PATCH" };
        char *params[CM_ROUTE_MAX_PARAMS];
        size_t np;
        bool matched;
        char *path;

        if (size == 0)
                return 0;
        path = strndup((const char *) data + 1, size - 1);
        if (!path)
                return 0;
        const struct cm_route *r =
                cm_route_match(methods[data[0] % ELEMENTSOF(methods)], path, params, &np, &matched);
        if (r) {
                for (size_t i = 0; i < np; i++)
                        if (!params[i] || !params[i][0] || strchr(params[i], '/'))
                                __builtin_trap();
        }
        free(path);
        return 0;
}
