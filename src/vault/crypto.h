/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"

/*
 * The vault's keyring and its sealed file format (docs/internals/vault.md). Backend-independent:
 * every vault backend stores the bytes cm_vault_seal() makes.
 *
 * Keyring file: text, one key per line `<id> <base64 of 32 bytes>`, the first key is the current
 * one (new versions are sealed under it), the others still open what was sealed under them. Lines
 * that are empty or start with '#' are ignored. Ids are 1-64 of [A-Za-z0-9._-].
 *
 * A struct cm_keyring is a fixed-size block (never reallocated); cm_keyring_free wipes it.
 */

#define CM_KEYRING_MAX 16
#define CM_KEK_ID_MAX 64
#define CM_KEK_LEN 32
/* A keyring file is small; anything larger is not one. */
#define CM_KEYRING_FILE_MAX (16U * 1024U)

struct cm_kek {
        char id[CM_KEK_ID_MAX + 1];
        uint8_t key[CM_KEK_LEN];
};

struct cm_keyring {
        size_t n;
        struct cm_kek keys[CM_KEYRING_MAX]; /* keys[0] is current */
};

/* Accepts NULL; wipes; returns NULL. */
struct cm_keyring *cm_keyring_free(struct cm_keyring *kr);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct cm_keyring *, cm_keyring_free)

_warn_unused_result_ int cm_keyring_dup(const struct cm_keyring *kr, struct cm_keyring **ret);
/* A keyring with one freshly generated key (random id "kek_..."). */
_warn_unused_result_ int cm_keyring_generate(struct cm_keyring **ret);
/* -EINVAL (malformed; never quoting the text), -E2BIG more than CM_KEYRING_MAX keys, -EEXIST duplicate id. */
_warn_unused_result_ int cm_keyring_parse(const char *text, size_t n, struct cm_keyring **ret);
/* The text form (a secret buffer: wipe and free with cm_erase_and_free). */
_warn_unused_result_ int cm_keyring_format(const struct cm_keyring *kr, char **ret, size_t *ret_n);
_warn_unused_result_ int cm_keyring_load(const char *path, struct cm_keyring **ret);
/* Replaces path atomically and durably, mode 0600. */
_warn_unused_result_ int cm_keyring_save(const char *path, const struct cm_keyring *kr);
/*
 * Loads path, or when it does not exist generates a keyring and saves it (0600; *ret_created set).
 * The file is created with O_EXCL semantics: two processes starting at once agree on one key.
 */
_warn_unused_result_ int cm_keyring_load_or_create(const char *path, struct cm_keyring **ret,
                                                   bool *ret_created);
const struct cm_kek *cm_keyring_find(const struct cm_keyring *kr, const char *id, size_t id_len);
/* Puts key first (current), keeping the others after it; -EEXIST when its id is already there. */
_warn_unused_result_ int cm_keyring_push_current(struct cm_keyring *kr, const struct cm_kek *key);

/* What a sealed file says about itself (read without any key). */
struct cm_sealed_info {
        uint64_t version;
        uint64_t created_usec;
        uint64_t size; /* content bytes */
        char key_id[CM_KEK_ID_MAX + 1];
};

#define CM_SEALED_OVERHEAD_MAX (120U + CM_KEK_ID_MAX)

/*
 * Seals data as version `version` of (owner, name): a fresh data key and nonces, the data key
 * wrapped by kr's current key. The sealed bytes are handed over in ret (malloc'd, not secret).
 */
_warn_unused_result_ int cm_vault_seal(const struct cm_keyring *kr, const char *owner, const char *name,
                                       uint64_t version, uint64_t created_usec, const void *data, size_t n,
                                       uint8_t **ret, size_t *ret_n);
/*
 * Receives the sealed bytes piece by piece, in order; a negative errno stops sealing and is returned
 * by cm_vault_seal_to.
 */
typedef int (*cm_vault_sink_fn)(void *userdata, const void *buf, size_t n);
/* The largest piece of ciphertext handed to a sink at once (the first piece also carries the header). */
#define CM_SEAL_CHUNK (64U * 1024U)
/*
 * Seals like cm_vault_seal, but hands the bytes to sink as they are made (header with the first
 * chunk of ciphertext, further chunks, the tag with the last) instead of building the whole file in
 * memory. On success ret_n (may be NULL) receives the total length. After a failure the sink may
 * have received part of the bytes: they are no valid sealed file.
 */
_warn_unused_result_ int cm_vault_seal_to(const struct cm_keyring *kr, const char *owner, const char *name,
                                          uint64_t version, uint64_t created_usec, const void *data,
                                          size_t n, cm_vault_sink_fn sink, void *userdata, size_t *ret_n);
/*
 * Opens sealed bytes that must be version `version` of (owner, name). On success the content is
 * handed over in ret (NUL-terminated; wipe and free). -EBADMSG malformed, truncated, tampered or
 * bound to another owner/name/version; -ENOKEY unknown key id; -EKEYREJECTED the data key does not
 * open with that key. Never hands over unauthenticated bytes; plaintext is wiped on failure.
 */
_warn_unused_result_ int cm_vault_unseal(const struct cm_keyring *kr, const char *owner, const char *name,
                                         uint64_t version, const uint8_t *blob, size_t blob_n, char **ret,
                                         size_t *ret_n, struct cm_sealed_info *ret_info);
/*
 * Fills buf with the next n bytes of a sealed file: 0, or a negative errno that is returned by
 * cm_vault_unseal_from (-EBADMSG when the file ends early).
 */
typedef int (*cm_vault_source_fn)(void *userdata, void *buf, size_t n);
/*
 * cm_vault_unseal of a sealed file of blob_n bytes that source reads in order: the ciphertext is read
 * straight into the buffer handed over and decrypted in place, so the file is never in memory twice.
 * The same errors, and the same promise: nothing unauthenticated is handed over, the buffer is wiped
 * on failure.
 */
_warn_unused_result_ int cm_vault_unseal_from(const struct cm_keyring *kr, const char *owner,
                                              const char *name, uint64_t version, size_t blob_n,
                                              cm_vault_source_fn source, void *userdata, char **ret,
                                              size_t *ret_n);
/* cm_vault_sealed_info of a sealed file of blob_n bytes that source reads: only its header is read. */
_warn_unused_result_ int cm_vault_sealed_info_from(size_t blob_n, cm_vault_source_fn source, void *userdata,
                                                   struct cm_sealed_info *ret);
/* Parses the header only (no key needed, nothing authenticated); -EBADMSG when malformed. */
_warn_unused_result_ int cm_vault_sealed_info(const uint8_t *blob, size_t blob_n,
                                              struct cm_sealed_info *ret);
/*
 * Re-wraps the data key of sealed bytes under kr's current key; the content bytes are copied
 * unchanged. Returns 0 with the new bytes in ret, or 1 (ret untouched) when already under the
 * current key. Errors as cm_vault_unseal (the data key is authenticated before re-wrapping).
 */
_warn_unused_result_ int cm_vault_rewrap_sealed(const struct cm_keyring *kr, const char *owner,
                                                const char *name, uint64_t version, const uint8_t *blob,
                                                size_t blob_n, uint8_t **ret, size_t *ret_n);
