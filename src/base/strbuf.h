/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"

/*
 * A growable byte buffer with a hard size cap chosen by its owner (request body, log chunk, YAML
 * document...). Appending past the cap fails with -ENOBUFS and leaves the buffer as it was; it never
 * grows silently. The content is always NUL-terminated (the terminator is not counted in len).
 *
 * A buffer marked secret (strbuf_init_secret) never uses realloc: growing copies into a new block and
 * wipes the old one, and release wipes the content before freeing it.
 */
struct strbuf {
        char *buf;
        size_t len;
        size_t alloc;
        size_t cap;
        bool secret;
};

#define STRBUF_INIT(max) ((struct strbuf){ .cap = (max) })

void strbuf_init(struct strbuf *sb, size_t cap);
void strbuf_init_secret(struct strbuf *sb, size_t cap);
/* Frees (and wipes when secret) the content; the buffer can be reused afterwards. */
void strbuf_release(struct strbuf *sb);
void strbuf_reset(struct strbuf *sb);
/* Hands the content over to the caller (never NULL on success: an empty buffer gives ""). */
_warn_unused_result_ char *strbuf_detach(struct strbuf *sb, size_t *ret_len);

_warn_unused_result_ int strbuf_grow(struct strbuf *sb, size_t extra);
_warn_unused_result_ int strbuf_add(struct strbuf *sb, const void *data, size_t n);
_warn_unused_result_ int strbuf_adds(struct strbuf *sb, const char *s);
/* Appends a string literal without measuring it at run time. */
#define strbuf_addl(sb, lit) strbuf_add((sb), "" lit, sizeof(lit) - 1)
_warn_unused_result_ int strbuf_addch(struct strbuf *sb, char c);
_warn_unused_result_ _printf_(2, 3) int strbuf_addf(struct strbuf *sb, const char *fmt, ...);
_warn_unused_result_ _printf_(2, 0) int strbuf_vaddf(struct strbuf *sb, const char *fmt, va_list ap);
/* Appends the decimal digits of v. */
_warn_unused_result_ int strbuf_add_i64(struct strbuf *sb, int64_t v);
/* Appends s as a quoted JSON string; NULL appends `null`. Invalid UTF-8 is replaced by U+FFFD. */
_warn_unused_result_ int strbuf_add_json_string(struct strbuf *sb, const char *s);
_warn_unused_result_ int strbuf_add_json_stringn(struct strbuf *sb, const char *s, size_t n);

static inline void strbuf_releasep(struct strbuf *sb) {
        strbuf_release(sb);
}
#define _cleanup_strbuf_ _cleanup_(strbuf_releasep)

/* Bounded copy: writes at most size-1 bytes and a NUL; returns -ENOBUFS when src was cut. */
int cm_strlcpy(char *dst, const char *src, size_t size);
/* snprintf into a fixed buffer that fails with -ENOBUFS instead of truncating silently. */
_printf_(3, 4) int cm_snprintf(char *dst, size_t size, const char *fmt, ...);
