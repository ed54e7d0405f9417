/* SPDX-License-Identifier: Apache-2.0 */
/* The Authorization header: "Bearer <b64token>" and nothing else; the token's shape as a JWT. */
#include "base/common.h"

#include "auth/oidc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool b64token_char(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
               c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '=';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *token = NULL;
        size_t n = 0;
        char *h;
        int r;

        /* A header value as the server sees it: NUL-terminated (a NUL inside ends it). */
        h = malloc(size + 1);
        if (!h)
                return 0;
        memcpy(h, data, size);
        h[size] = 0;

        r = cm_auth_parse_bearer(h, &token, &n);
        if (r < 0) {
                if (r != -EINVAL || token || n)
                        __builtin_trap();
        } else {
                if (r != 0 || token != h + 7 || n == 0 || n > CM_OIDC_TOKEN_MAX || token[n] != 0 ||
                    strncasecmp(h, "Bearer ", 7) != 0 || token[0] == '=')
                        __builtin_trap();
                for (size_t i = 0; i < n; i++)
                        if (!b64token_char(token[i]) || (i > 0 && token[i - 1] == '=' && token[i] != '='))
                                __builtin_trap();
                /* A JWT is a b64token without '=', '~', '+' or '/'. */
                if (cm_oidc_looks_like_jwt(token, n) && strpbrk(token, "=~+/"))
                        __builtin_trap();
        }
        /* The shape test on the raw bytes: never reads past them. */
        (void) cm_oidc_looks_like_jwt((const char *) data, size);
        free(h);
        return 0;
}
