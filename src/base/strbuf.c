/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "base/secret.h"
#include "base/strbuf.h"

void strbuf_init(struct strbuf *sb, size_t cap) {
        *sb = (struct strbuf){ .cap = cap };
}

void strbuf_init_secret(struct strbuf *sb, size_t cap) {
        *sb = (struct strbuf){ .cap = cap, .secret = true };
}

void strbuf_release(struct strbuf *sb) {
        if (!sb)
                return;
        if (sb->buf && sb->secret)
                cm_wipe(sb->buf, sb->alloc);
        free(sb->buf);
        sb->buf = NULL;
        sb->len = sb->alloc = 0;
}

void strbuf_reset(struct strbuf *sb) {
        if (sb->buf) {
                if (sb->secret)
                        cm_wipe(sb->buf, sb->len);
                sb->buf[0] = 0;
        }
        sb->len = 0;
}

char *strbuf_detach(struct strbuf *sb, size_t *ret_len) {
        char *p;

        if (!sb->buf) {
                p = strdup("");
                if (!p)
                        return NULL;
        } else
                p = sb->buf;
        if (ret_len)
                *ret_len = sb->len;
        sb->buf = NULL;
        sb->len = sb->alloc = 0;
        return p;
}

int strbuf_grow(struct strbuf *sb, size_t extra) {
        size_t need, n;
        char *p;

        if (extra > sb->cap || sb->len > sb->cap - extra)
                return -ENOBUFS;
        need = sb->len + extra + 1;
        if (need <= sb->alloc)
                return 0;

        n = sb->alloc ? sb->alloc : 64;
        while (n < need)
                n = n > SIZE_MAX / 2 ? need : n * 2;
        if (n > sb->cap + 1)
                n = sb->cap + 1;

        if (sb->secret) {
                /* Never realloc key material: copy, then wipe the old block. */
                p = malloc(n);
                if (!p)
                        return -ENOMEM;
                if (sb->buf) {
                        memcpy(p, sb->buf, sb->len + 1);
                        cm_wipe(sb->buf, sb->alloc);
                        free(sb->buf);
                }
        } else {
                p = realloc(sb->buf, n);
                if (!p)
                        return -ENOMEM;
        }
        if (!sb->buf)
                p[0] = 0;
        sb->buf = p;
        sb->alloc = n;
        return 0;
}

int strbuf_add(struct strbuf *sb, const void *data, size_t n) {
        int r;

        /* Fast path: it fits the block and the cap. */
        if (n < sb->alloc - sb->len && n <= sb->cap - sb->len) {
                memcpy(sb->buf + sb->len, data, n);
                sb->len += n;
                sb->buf[sb->len] = 0;
                return 0;
        }
        r = strbuf_grow(sb, n);
        if (r < 0)
                return r;
        if (n > 0)
                memcpy(sb->buf + sb->len, data, n);
        sb->len += n;
        sb->buf[sb->len] = 0;
        return 0;
}

int strbuf_adds(struct strbuf *sb, const char *s) {
        return strbuf_add(sb, s, strlen(s));
}

int strbuf_addch(struct strbuf *sb, char c) {
        return strbuf_add(sb, &c, 1);
}

int strbuf_vaddf(struct strbuf *sb, const char *fmt, va_list ap) {
        va_list aq;
        size_t avail;
        int n, r;

        /* One pass when the result fits the room left (the common case), a second after growing. */
        if (sb->alloc - sb->len < 64 && strbuf_grow(sb, MIN((size_t) 64, sb->cap - sb->len)) < 0 &&
            sb->alloc == 0)
                return -ENOBUFS;
        avail = sb->alloc > sb->len ? sb->alloc - sb->len : 0;
        va_copy(aq, ap);
        n = sb->buf && avail > 0 ? vsnprintf(sb->buf + sb->len, avail, fmt, aq)
                                 : vsnprintf(NULL, 0, fmt, aq);
        va_end(aq);
        if (n < 0) {
                if (sb->buf)
                        sb->buf[sb->len] = 0;
                return -EINVAL;
        }
        if (sb->buf && (size_t) n < avail) {
                if ((size_t) n > sb->cap - sb->len) {
                        sb->buf[sb->len] = 0;
                        return -ENOBUFS;
                }
                sb->len += (size_t) n;
                return 0;
        }
        if (sb->buf)
                sb->buf[sb->len] = 0;
        r = strbuf_grow(sb, (size_t) n);
        if (r < 0)
                return r;
        (void) vsnprintf(sb->buf + sb->len, (size_t) n + 1, fmt, ap);
        sb->len += (size_t) n;
        return 0;
}

int strbuf_add_i64(struct strbuf *sb, int64_t v) {
        char buf[24], *p = buf + sizeof(buf);
        uint64_t u = v < 0 ? (uint64_t) 0 - (uint64_t) v : (uint64_t) v;

        do {
                *--p = (char) ('0' + u % 10);
                u /= 10;
        } while (u);
        if (v < 0)
                *--p = '-';
        return strbuf_add(sb, p, (size_t) (buf + sizeof(buf) - p));
}

int strbuf_addf(struct strbuf *sb, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = strbuf_vaddf(sb, fmt, ap);
        va_end(ap);
        return r;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 when it is invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n) {
        uint32_t cp;
        size_t len, i;

        if (s[0] < 0x80)
                return 1;
        if ((s[0] & 0xE0) == 0xC0) {
                len = 2;
                cp = s[0] & 0x1F;
        } else if ((s[0] & 0xF0) == 0xE0) {
                len = 3;
                cp = s[0] & 0x0F;
        } else if ((s[0] & 0xF8) == 0xF0) {
                len = 4;
                cp = s[0] & 0x07;
        } else
                return 0;
        if (len > n)
                return 0;
        for (i = 1; i < len; i++) {
                if ((s[i] & 0xC0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                return 0;
        return len;
}

int strbuf_add_json_stringn(struct strbuf *sb, const char *s, size_t n) {
        static const char hexdig[] = "0123456789abcdef";
        const unsigned char *p = (const unsigned char *) s;
        size_t i = 0, start;
        int r;

        r = strbuf_addch(sb, '"');
        if (r < 0)
                return r;
        while (i < n) {
                size_t l;

                start = i;
                while (i < n && p[i] >= 0x20 && p[i] != '"' && p[i] != '\\' && p[i] < 0x80)
                        i++;
                if (i > start) {
                        r = strbuf_add(sb, s + start, i - start);
                        if (r < 0)
                                return r;
                }
                if (i >= n)
                        break;
                if (p[i] >= 0x80) {
                        l = utf8_seq_len(p + i, n - i);
                        if (l == 0) {
                                r = strbuf_adds(sb, "\xEF\xBF\xBD");
                                l = 1;
                        } else
                                r = strbuf_add(sb, s + i, l);
                        if (r < 0)
                                return r;
                        i += l;
                        continue;
                }
                switch (p[i]) {
                case '"':
                        r = strbuf_adds(sb, "\\\"");
                        break;
                case '\\':
                        r = strbuf_adds(sb, "\\\\");
                        break;
                case '\n':
                        r = strbuf_adds(sb, "\\n");
                        break;
                case '\r':
                        r = strbuf_adds(sb, "\\r");
                        break;
                case '\t':
                        r = strbuf_adds(sb, "\\t");
                        break;
                default: {
                        char esc[6] = { '\\', 'u', '0', '0', hexdig[p[i] >> 4], hexdig[p[i] & 0xF] };
                        r = strbuf_add(sb, esc, sizeof(esc));
                        break;
                }
                }
                if (r < 0)
                        return r;
                i++;
        }
        return strbuf_addch(sb, '"');
}

int strbuf_add_json_string(struct strbuf *sb, const char *s) {
        if (!s)
                return strbuf_adds(sb, "null");
        return strbuf_add_json_stringn(sb, s, strlen(s));
}

int cm_strlcpy(char *dst, const char *src, size_t size) {
        size_t n;

        if (size == 0)
                return -ENOBUFS;
        n = strlen(src);
        if (n >= size) {
                memcpy(dst, src, size - 1);
                dst[size - 1] = 0;
                return -ENOBUFS;
        }
        memcpy(dst, src, n + 1);
        return 0;
}

int cm_snprintf(char *dst, size_t size, const char *fmt, ...) {
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(dst, size, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        if ((size_t) n >= size)
                return -ENOBUFS;
        return n;
}
