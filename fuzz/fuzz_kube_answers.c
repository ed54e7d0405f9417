/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kubernetes API server's answers the service decodes outside the monitor: an API resource list
 * (discovery) and an error answer (a Status). The first byte picks the decoder; the rest is the body.
 */
#include "base/common.h"

#include "kube/client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *body = (const char *) data + 1;
        size_t len;

        if (size < 1)
                return 0;
        len = size - 1;
        if (data[0] % 2 == 0) {
                struct cm_kube_resource res = {};
                int r = cm_kube_resource_list_find(body, len, "ServiceAccount", &res);

                if (r == 0 &&
                    (strnlen(res.name, sizeof(res.name)) == sizeof(res.name) || res.name[0] == '\0'))
                        __builtin_trap();
        } else {
                struct cm_kube_error err = {};

                (void) cm_kube_error_from_answer(&err, "apply ServiceAccount/x", 422, body, len);
                if (strnlen(err.message, sizeof(err.message)) == sizeof(err.message) ||
                    strnlen(err.reason, sizeof(err.reason)) == sizeof(err.reason))
                        __builtin_trap();
        }
        return 0;
}
