/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kubernetes API server's answers the service decodes outside the monitor: an API resource list
 * (discovery), an error answer (a Status) and a live object judged for its rollout (add-ons). The
 * first byte picks the decoder; the rest is the body.
 */
#include "base/common.h"

#include <jansson.h>

#include "addons/apply.h"
#include "kube/client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *body = (const char *) data + 1;
        size_t len;

        if (size < 1)
                return 0;
        len = size - 1;
        if (data[0] % 3 == 2) {
                json_t *live = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
                char why[160];
                int r;

                if (!live)
                        return 0;
                r = cm_addon_object_ready(live, why, sizeof(why));
                json_decref(live);
                /* A decision, and a reason for people: terminated, no control characters. */
                if (r < -1 || r > 1 || strnlen(why, sizeof(why)) == sizeof(why))
                        __builtin_trap();
                for (const char *c = why; *c; c++)
                        if ((unsigned char) *c < 0x20 || *c == 0x7f)
                                __builtin_trap();
        } else if (data[0] % 3 == 0) {
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
