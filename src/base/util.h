/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"

/* Wall clock and monotonic clock in microseconds. */
uint64_t cm_now_usec(void);
uint64_t cm_mono_usec(void);
/* "2026-01-02T03:04:05.678Z"; buf needs at least 32 bytes. */
void cm_format_rfc3339(uint64_t usec, char *buf, size_t size);
/* Parses the format above (fraction optional, 'Z' required); -EINVAL otherwise. */
int cm_parse_rfc3339(const char *s, uint64_t *ret_usec);

/* Cryptographically random bytes (OpenSSL); -EIO when the generator fails. */
_warn_unused_result_ int cm_random_bytes(void *buf, size_t n);
/*
 * A random identifier: prefix + 26 characters of lowercase base32 (130 bits). out needs
 * strlen(prefix) + 27 bytes.
 */
_warn_unused_result_ int cm_random_id(const char *prefix, char *out, size_t size);
/* An opaque secret token: prefix + 43 characters of base64url (256 bits). */
_warn_unused_result_ int cm_random_token(const char *prefix, char *out, size_t size);

/* Lowercase hex SHA-256 of data; out needs 65 bytes. */
void cm_sha256_hex(const void *data, size_t n, char out[static 65]);
void cm_hex(const void *data, size_t n, char *out);
