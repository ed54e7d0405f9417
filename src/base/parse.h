/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"

/* Checked number parsing: the whole string must be a number in range; -EINVAL or -ERANGE otherwise. */
_warn_unused_result_ int safe_atou64(const char *s, uint64_t *ret);
_warn_unused_result_ int safe_atoi64(const char *s, int64_t *ret);
_warn_unused_result_ int safe_atou(const char *s, unsigned *ret);
_warn_unused_result_ int safe_atoi(const char *s, int *ret);

/* A DNS label (RFC 1123): 1..63 of [a-z0-9-], starting and ending alphanumeric. */
bool cm_dns_label_valid(const char *s);
/* 1..max bytes of printable ASCII (0x21-0x7e, and ' ' too when space_ok): a token, a header-safe name. */
bool cm_ascii_text_valid(const char *s, size_t max, bool space_ok);
