/* SPDX-License-Identifier: Apache-2.0 */
/* SSH private keys as sent to POST /v1/environments/{env}/sshkeys (OpenSSH container and PEM). */
#include "base/common.h"

#include "vault/sshkey.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char fp[CM_SSHKEY_FP_LEN + 1];
        char *pub = NULL;

        if (cm_sshkey_parse_private((const char *) data, size, &pub, fp) == 0) {
                if (!strchr(pub, ' ') || strlen(fp) != CM_SSHKEY_FP_LEN)
                        __builtin_trap();
                free(pub);
        }
        return 0;
}
