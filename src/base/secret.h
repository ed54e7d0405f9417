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
/* Wipes a NUL-terminated string and frees it; accepts NULL; returns NULL. */
char *cm_erase_and_free(char *s);
/* Constant-time comparison of two equally long byte strings: true when equal. */
bool cm_memeq_const(const void *a, const void *b, size_t n);

static inline void cm_erase_and_freep(char **s) {
        cm_erase_and_free(*s);
}
#define _cleanup_erase_free_ _cleanup_(cm_erase_and_freep)
