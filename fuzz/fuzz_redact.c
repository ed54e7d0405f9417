/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The redaction step over any text: the text keeps its length and only '*' is ever written (a second
 * pass may mask more: patterns can overlap).
 */
#include "base/common.h"

#include "base/secret.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *a, *b;
        size_t n;

        if (size > 65536)
                return 0;
        a = strndup((const char *) data, size);
        if (!a)
                return 0;
        n = strlen(a);
        b = strdup(a);
        if (!b) {
                free(a);
                return 0;
        }
        (void) cm_redact(a);
        if (strlen(a) != n)
                __builtin_trap();
        for (size_t i = 0; i < n; i++)
                if (a[i] != b[i] && a[i] != '*')
                        __builtin_trap();
        free(a);
        free(b);
        return 0;
}
