/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"

/*
 * The state vault: durable, encrypted, versioned files that belong to an owner.
 *
 * An owner is a cluster (its id, never its name: names are reused after a delete) or an
 * environment's namespace `env:<env>` (SSH keys). Each owner has named files ("cluster.yml",
 * "cluster.rkestate", "ssh/ops"); every write of a file makes a new version (1, 2, ...), of which
 * the newest `keep` are kept. Contents are sealed with envelope encryption (vault/crypto.h): a fresh
 * AES-256-GCM data key per version, wrapped by the keyring's current key-encryption key.
 *
 * A backend is a const vtable (struct cm_vault_ops) registered by URL scheme; the concrete vault
 * embeds struct cm_vault first. Callers use the cm_vault_* wrappers below.
 *
 * Contracts every backend keeps (tests/unit/test_vault_conformance.c checks them):
 * - Every function is safe to call from any thread at the same time.
 * - Out-parameters are written only on success and are owned by the caller; file contents are
 *   returned in a buffer the caller wipes and frees (cm_vault_data_free), NUL-terminated (the
 *   terminator is not counted).
 * - A write is atomic and durable when it returns: a crash leaves the old or the new version, never a
 *   torn one, and a read never returns bytes that did not pass authentication.
 * - Errors are negative errno: -EINVAL bad owner or file name, -ENOENT no such owner/file/version,
 *   -ESTALE the expected version does not match, -EFBIG content larger than CM_VAULT_DATA_MAX,
 *   -EBADMSG the stored file is malformed, truncated or fails authentication (tampered, copied
 *   to another owner, name or version), -ENOKEY it was sealed under a key id the keyring does not
 *   have, -EKEYREJECTED the keyring's key of that id does not open its data key (wrong key or a
 *   tampered wrapped key), -EIO/-ENOSPC/-EROFS/-ENOMEM for storage failures.
 * - Times are wall-clock microseconds since the epoch.
 */

#define CM_VAULT_KEEP_DEFAULT 20U
#define CM_VAULT_KEEP_MAX 1000U
/* Largest content of one version (an rkestate of a big cluster is a few MB). */
#define CM_VAULT_DATA_MAX (64U * 1024U * 1024U)
/* Owner: 1-128 of [A-Za-z0-9._:-], not starting with '.'. */
#define CM_VAULT_OWNER_MAX 128U
/*
 * File name: 1-128 of [A-Za-z0-9._/-]; '/'-separated segments that are not empty, "." or "..", and
 * do not start with '.'. So no absolute paths, no "..", no hidden files.
 */
#define CM_VAULT_NAME_MAX 128U

struct cm_vault;
struct cm_keyring;

struct cm_vault_version {
        uint64_t version;
        uint64_t created_usec;
        uint64_t size; /* bytes of content */
        char key_id[65]; /* id of the key-encryption key that wraps its data key */
};

struct cm_vault_archive {
        char owner[CM_VAULT_OWNER_MAX + 1];
        uint64_t archived_usec;
};

struct cm_vault_ops {
        const char *name; /* "fs" */
        const char *scheme; /* URL scheme handled: "file" for file:///dir (a plain path also) */

        /* The keyring is copied; keep is the number of versions kept per file (1..CM_VAULT_KEEP_MAX). */
        int (*open)(const char *url, const struct cm_keyring *kr, unsigned keep, struct cm_vault **ret);
        void (*close)(struct cm_vault *v);

        /*
         * Writes a new version of name. expected_version < 0 writes unconditionally; 0 only when the
         * file does not exist; > 0 only when it is the newest version (-ESTALE otherwise). Versions
         * beyond keep are removed after the new one is durable. ret_version (may be NULL) receives
         * the new version number.
         */
        int (*write)(struct cm_vault *v, const char *owner, const char *name, const void *data, size_t n,
                     int64_t expected_version, uint64_t *ret_version);
        /*
         * Reads version (0: the newest). The content is handed over in *ret (wipe and free with
         * cm_vault_data_free), its length in ret_n, the version read in ret_version (may be NULL).
         */
        int (*read)(struct cm_vault *v, const char *owner, const char *name, uint64_t version, char **ret,
                    size_t *ret_n, uint64_t *ret_version);
        /* Names of the owner's files, sorted (strcmp); free with cm_vault_names_free. 0 files is no error. */
        int (*list_files)(struct cm_vault *v, const char *owner, char ***ret, size_t *ret_n);
        /* Versions of a file that are kept, newest first; -ENOENT when the file does not exist. */
        int (*list_versions)(struct cm_vault *v, const char *owner, const char *name,
                             struct cm_vault_version **ret, size_t *ret_n);
        /* Removes a file with all its versions; -ENOENT when absent. */
        int (*remove)(struct cm_vault *v, const char *owner, const char *name);
        /*
         * Moves all files of owner into the archive (stamped now_usec): they vanish from the live view
         * at once and are kept until purged. -ENOENT when the owner has no files.
         */
        int (*archive)(struct cm_vault *v, const char *owner, uint64_t now_usec);
        /* Archived owners, oldest first; free with free(). */
        int (*list_archives)(struct cm_vault *v, struct cm_vault_archive **ret, size_t *ret_n);
        /* Destroys archives stamped before before_usec; returns how many. */
        int (*purge)(struct cm_vault *v, uint64_t before_usec);
        /*
         * Re-wraps the data key of every version (live and archived) whose key id is not the
         * keyring's current one under the current key, without decrypting the content; each file is
         * replaced atomically. Stops after limit files (0: no limit; for tests of an interrupted
         * rotation). Returns the number of files re-wrapped.
         */
        int (*rewrap)(struct cm_vault *v, size_t limit);
};

/* Every vault starts with this. */
struct cm_vault {
        const struct cm_vault_ops *ops;
};

extern const struct cm_vault_ops cm_vault_fs_ops;

/*
 * Opens the backend handling url's scheme ("file:///var/lib/state", or a plain directory path for the
 * fs backend; the directory is created 0700). -EPROTONOSUPPORT for an unknown scheme.
 */
_warn_unused_result_ int cm_vault_open(const char *url, const struct cm_keyring *kr, unsigned keep,
                                       struct cm_vault **ret);
/* Accepts NULL; returns NULL. */
struct cm_vault *cm_vault_close(struct cm_vault *v);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct cm_vault *, cm_vault_close)

bool cm_vault_owner_valid(const char *owner);
bool cm_vault_name_valid(const char *name);

/* Wipes and frees a content buffer returned by read; accepts NULL. */
void cm_vault_data_free(char *data, size_t n);
void cm_vault_names_free(char **names, size_t n);

static inline int cm_vault_write(struct cm_vault *v, const char *owner, const char *name, const void *data,
                                 size_t n, int64_t expected_version, uint64_t *ret_version) {
        if (!cm_vault_owner_valid(owner) || !cm_vault_name_valid(name))
                return -EINVAL;
        if (n > CM_VAULT_DATA_MAX)
                return -EFBIG;
        return v->ops->write(v, owner, name, data, n, expected_version, ret_version);
}

static inline int cm_vault_read(struct cm_vault *v, const char *owner, const char *name, uint64_t version,
                                char **ret, size_t *ret_n, uint64_t *ret_version) {
        if (!cm_vault_owner_valid(owner) || !cm_vault_name_valid(name))
                return -EINVAL;
        return v->ops->read(v, owner, name, version, ret, ret_n, ret_version);
}

static inline int cm_vault_list_files(struct cm_vault *v, const char *owner, char ***ret, size_t *ret_n) {
        if (!cm_vault_owner_valid(owner))
                return -EINVAL;
        return v->ops->list_files(v, owner, ret, ret_n);
}

static inline int cm_vault_list_versions(struct cm_vault *v, const char *owner, const char *name,
                                         struct cm_vault_version **ret, size_t *ret_n) {
        if (!cm_vault_owner_valid(owner) || !cm_vault_name_valid(name))
                return -EINVAL;
        return v->ops->list_versions(v, owner, name, ret, ret_n);
}

static inline int cm_vault_remove(struct cm_vault *v, const char *owner, const char *name) {
        if (!cm_vault_owner_valid(owner) || !cm_vault_name_valid(name))
                return -EINVAL;
        return v->ops->remove(v, owner, name);
}

static inline int cm_vault_archive(struct cm_vault *v, const char *owner, uint64_t now_usec) {
        if (!cm_vault_owner_valid(owner))
                return -EINVAL;
        return v->ops->archive(v, owner, now_usec);
}

static inline int cm_vault_list_archives(struct cm_vault *v, struct cm_vault_archive **ret, size_t *ret_n) {
        return v->ops->list_archives(v, ret, ret_n);
}

static inline int cm_vault_purge(struct cm_vault *v, uint64_t before_usec) {
        return v->ops->purge(v, before_usec);
}

static inline int cm_vault_rewrap(struct cm_vault *v, size_t limit) {
        return v->ops->rewrap(v, limit);
}

/* The owner of an environment's files (SSH keys): "env:<env>" into buf; -ENOBUFS/-EINVAL. */
int cm_vault_env_owner(const char *env, char *buf, size_t size);

/*
 * Key rotation (offline: the service must not run on the same vault meanwhile).
 *
 * 1. The new key (new_key_file's current key, or a generated one) is put first in the keyring
 *    file, the old keys after it: from then on new versions are sealed under it and every file
 *    stays readable.
 * 2. Every data key not under the new key is re-wrapped (cm_vault_rewrap), file by file,
 *    atomically.
 * 3. Unless keep_old, the keyring file is rewritten with the new key only.
 * A crash at any point leaves every file readable with the keyring file on disk; running the
 * rotation again finishes the job (under yet another new key). ret_rewrapped (may be NULL) gets
 * the number of files re-wrapped and ret_key_id (may be NULL, 65 bytes) the new key's id.
 */
_warn_unused_result_ int cm_vault_rotate_key(const char *url, const char *key_file, const char *new_key_file,
                                             bool keep_old, size_t *ret_rewrapped, char *ret_key_id);
