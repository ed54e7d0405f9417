/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"

/* The one wipe helper: the compiler may not elide it. */
void cm_wipe(void *p, size_t n);
/*
 * Overwrites every occurrence of secret in the NUL-terminated text with '*' (same length), for a
 * line about to be logged. Secrets shorter than 4 bytes (or NULL) are left alone: masking them
 * would garble ordinary text without hiding anything.
 */
void cm_mask_secret(char *text, const char *secret);
/*
 * The one redaction step of text about to leave the process (service log lines, operation log lines,
 * error details): overwrites with '*' (same length) PEM private keys, this service's API keys
 * (cmk_...), JWTs, the credential after "Bearer ", and the value after password, passwd, secret,
 * token, client-key-data, private_key, secret_key followed by ':' or '='. Returns how many were masked.
 */
size_t cm_redact(char *text);
/* Wipes a NUL-terminated string and frees it; accepts NULL; returns NULL. */
char *cm_erase_and_free(char *s);
/* Constant-time comparison of two equally long byte strings: true when equal. */
bool cm_memeq_const(const void *a, const void *b, size_t n);

static inline void cm_erase_and_freep(char **s) {
        cm_erase_and_free(*s);
}
#define _cleanup_erase_free_ _cleanup_(cm_erase_and_freep)

/*
 * Wipes every string of a decoded JSON document (object keys are names, never secrets, and stay),
 * drops the reference and sets *v to NULL; accepts a NULL *v. For answers that carry a credential.
 */
struct json_t;
void cm_json_wipe_and_free(struct json_t **v);
