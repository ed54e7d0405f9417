/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "base/secret.h"
#include "base/strbuf.h"
#include "vault/crypto.h"
#include "vault/vault.h"

static const struct cm_vault_ops *const vault_backends[] = {
        &cm_vault_fs_ops,
};

int cm_vault_open(const char *url, const struct cm_keyring *kr, unsigned keep, struct cm_vault **ret) {
        const char *colon = strchr(url, ':');
        size_t sl = colon ? (size_t) (colon - url) : 0;

        if (colon && colon[1] == '/' && colon[2] == '/') {
                for (size_t i = 0; i < ELEMENTSOF(vault_backends); i++) {
                        const struct cm_vault_ops *o = vault_backends[i];
                        if (sl == strlen(o->scheme) && strneq(url, o->scheme, sl))
                                return o->open(url, kr, keep, ret);
                }
                return -EPROTONOSUPPORT;
        }
        /* A plain path is a directory for the fs backend. */
        return cm_vault_fs_ops.open(url, kr, keep, ret);
}

struct cm_vault *cm_vault_close(struct cm_vault *v) {
        if (v)
                v->ops->close(v);
        return NULL;
}

bool cm_vault_owner_valid(const char *owner) {
        size_t n;

        if (!owner)
                return false;
        n = strlen(owner);
        if (n < 1 || n > CM_VAULT_OWNER_MAX || owner[0] == '.')
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = owner[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-' || c == ':'))
                        return false;
        }
        return true;
}

bool cm_vault_name_valid(const char *name) {
        size_t n, seg = 0;

        if (!name)
                return false;
        n = strlen(name);
        if (n < 1 || n > CM_VAULT_NAME_MAX)
                return false;
        for (size_t i = 0; i <= n; i++) {
                char c = name[i];

                if (c == '/' || c == 0) {
                        /* a segment: not empty, ".", ".." or hidden */
                        if (i == seg || name[seg] == '.')
                                return false;
                        seg = i + 1;
                        continue;
                }
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-'))
                        return false;
        }
        return true;
}

void cm_vault_data_free(char *data, size_t n) {
        if (data) {
                cm_wipe(data, n);
                free(data);
        }
}

void cm_vault_names_free(char **names, size_t n) {
        for (size_t i = 0; names && i < n; i++)
                free(names[i]);
        free(names);
}

int cm_vault_env_owner(const char *env, char *buf, size_t size) {
        int r = cm_snprintf(buf, size, "env:%s", env);

        if (r < 0)
                return r;
        return cm_vault_owner_valid(buf) ? 0 : -EINVAL;
}

int cm_vault_rotate_key(const char *url, const char *key_file, const char *new_key_file, bool keep_old,
                        size_t *ret_rewrapped, char *ret_key_id) {
        _cleanup_(cm_keyring_freep) struct cm_keyring *kr = NULL, *fresh = NULL, *only = NULL;
        _cleanup_(cm_vault_closep) struct cm_vault *v = NULL;
        int r;

        r = cm_keyring_load(key_file, &kr);
        if (r < 0)
                return r;
        if (new_key_file)
                r = cm_keyring_load(new_key_file, &fresh);
        else
                r = cm_keyring_generate(&fresh);
        if (r < 0)
                return r;
        /* A new key already current (a rotation run again with the same --new-key-file) is fine. */
        if (!streq(kr->keys[0].id, fresh->keys[0].id)) {
                r = cm_keyring_push_current(kr, &fresh->keys[0]);
                if (r < 0)
                        return r;
                /* Step 1: new key current, old keys kept, so everything stays readable. */
                r = cm_keyring_save(key_file, kr);
                if (r < 0)
                        return r;
        }
        /* Step 2: every data key under the new key. */
        r = cm_vault_open(url, kr, CM_VAULT_KEEP_MAX, &v);
        if (r < 0)
                return r;
        r = cm_vault_rewrap(v, 0);
        if (r < 0)
                return r;
        if (ret_rewrapped)
                *ret_rewrapped = (size_t) r;
        /* Step 3: the old keys go once nothing needs them. */
        if (!keep_old && kr->n > 1) {
                only = new0(struct cm_keyring, 1);
                if (!only)
                        return -ENOMEM;
                only->keys[0] = kr->keys[0];
                only->n = 1;
                r = cm_keyring_save(key_file, only);
                if (r < 0)
                        return r;
        }
        if (ret_key_id)
                (void) cm_strlcpy(ret_key_id, kr->keys[0].id, CM_KEK_ID_MAX + 1);
        return 0;
}
