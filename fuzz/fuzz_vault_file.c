/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The vault file format reader: sealed bytes as found on the volume (an attacker with access to it
 * controls them), opened with a fixed keyring; also the header reader, the re-wrap of rotation and
 * the keyring file parser. Nothing may crash, and no content may come back unless it authenticates.
 */
#include "base/common.h"

#include "base/strbuf.h"
#include "vault/crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct cm_keyring *fuzz_keyring(void) {
        static struct cm_keyring kr;

        if (kr.n == 0) {
                (void) cm_strlcpy(kr.keys[0].id, "fuzz-new", sizeof(kr.keys[0].id));
                memset(kr.keys[0].key, 0x24, CM_KEK_LEN);
                (void) cm_strlcpy(kr.keys[1].id, "fuzz", sizeof(kr.keys[1].id));
                memset(kr.keys[1].key, 0x42, CM_KEK_LEN);
                kr.n = 2;
        }
        return &kr;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const struct cm_keyring *kr = fuzz_keyring();
        struct cm_sealed_info info;
        struct cm_keyring *parsed = NULL;
        uint64_t version = 1;
        uint8_t *nb = NULL;
        char *out = NULL;
        size_t n = 0, nb_n = 0;
        int r;

        if (cm_vault_sealed_info(data, size, &info) == 0) {
                version = info.version;
                if (info.size > size)
                        __builtin_trap();
        }
        r = cm_vault_unseal(kr, "cl_fuzz", "cluster.rkestate", version, data, size, &out, &n, NULL);
        if (r == 0) {
                if (out[n] != 0)
                        __builtin_trap();
                free(out);
        } else if (r != -EBADMSG && r != -ENOKEY && r != -EKEYREJECTED && r != -ENOMEM)
                __builtin_trap();
        r = cm_vault_rewrap_sealed(kr, "cl_fuzz", "cluster.rkestate", version, data, size, &nb, &nb_n);
        if (r == 0) {
                /* a re-wrapped file opens to the same result as the original */
                r = cm_vault_unseal(kr, "cl_fuzz", "cluster.rkestate", version, nb, nb_n, &out, &n, NULL);
                if (r == 0)
                        free(out);
                free(nb);
        }
        if (cm_keyring_parse((const char *) data, size, &parsed) == 0)
                cm_keyring_free(parsed);
        return 0;
}
