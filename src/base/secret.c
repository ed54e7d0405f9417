/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <openssl/crypto.h>

#include "base/secret.h"

void cm_wipe(void *p, size_t n) {
        if (p && n > 0)
                OPENSSL_cleanse(p, n);
}

char *cm_erase_and_free(char *s) {
        if (s) {
                cm_wipe(s, strlen(s));
                free(s);
        }
        return NULL;
}

bool cm_memeq_const(const void *a, const void *b, size_t n) {
        return CRYPTO_memcmp(a, b, n) == 0;
}

void cm_mask_secret(char *text, const char *secret) {
        size_t n = secret ? strlen(secret) : 0;

        if (!text || n < 4)
                return;
        for (char *p = strstr(text, secret); p; p = strstr(p + n, secret))
                memset(p, '*', n);
}
