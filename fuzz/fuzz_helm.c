/* SPDX-License-Identifier: Apache-2.0 */
/* What the helm binary prints: a release as JSON on stdout, errors on stderr (both untrusted). */
#include "base/common.h"

#include "addons/helm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool shown(const char *s) {
        for (; *s; s++)
                if ((unsigned char) *s < 0x20 || *s == 0x7f)
                        return false;
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *text = NULL;
        struct cm_helm_result res = {};
        char message[256];
        int r;

        if (size == 0)
                return 0;
        /* The first byte picks the reader; the rest is its input, NUL-terminated as the runner gives it. */
        text = strndup((const char *) data + 1, size - 1);
        if (!text)
                return 0;
        if (data[0] & 1) {
                r = cm_helm_release_parse(text, strlen(text), data[0] & 2, &res);
                if (r >= 0 && (!shown(res.release) || !shown(res.namespace) || !shown(res.status)))
                        __builtin_trap();
                if (r >= 0 && res.manifest && strlen(res.manifest) != res.manifest_len)
                        __builtin_trap();
                cm_helm_result_done(&res);
                return 0;
        }
        r = cm_helm_error_parse(text, message, sizeof(message));
        /* Always an error code and a message for people without control characters. */
        if (r >= 0 || !shown(message) || strlen(message) >= sizeof(message))
                __builtin_trap();
        return 0;
}
