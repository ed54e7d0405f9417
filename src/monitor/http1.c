/* SPDX-License-Identifier: Apache-2.0 */
/* The monitor's HTTP/1.1 response parser; http1.h says what it accepts and why. */
#include "base/common.h"

#include "monitor/http1.h"

/* ---- characters (ASCII, whatever the locale) ------------------------------------------------- */

static bool is_ows(char c) {
        return c == ' ' || c == '\t';
}

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

static int hex_value(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* tchar, what a header name is made of (RFC 9110 section 5.6.2). */
static bool is_tchar(char c) {
        if (is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
                return true;
        return c != 0 && strchr("!#$%&'*+-.^_`|~", c);
}

static char ascii_lower(char c) {
        return c >= 'A' && c <= 'Z' ? (char) (c - 'A' + 'a') : c;
}

/* [s, s+n) is the lowercase literal lit, in any case. */
static bool equal_nocase(const char *s, size_t n, const char *lit) {
        size_t k = strlen(lit);

        if (n != k)
                return false;
        for (size_t i = 0; i < n; i++)
                if (ascii_lower(s[i]) != lit[i])
                        return false;
        return true;
}

/* Drops the optional whitespace around [*s, *s + *n). */
static void trim_ows(const char **s, size_t *n) {
        while (*n > 0 && is_ows((*s)[0])) {
                (*s)++;
                (*n)--;
        }
        while (*n > 0 && is_ows((*s)[*n - 1]))
                (*n)--;
}

/* ---- lines --------------------------------------------------------------------------------------- */

/*
 * Takes the bytes of data up to and including the next LF into the line buffer; *ret_used says how
 * many. Returns 1 when that completed a line (r->line[0..r->line_len), its line end dropped), 0 when
 * all of data went in without an LF. counted: the line belongs to the head or the trailers, which are
 * bounded as a whole, checked as bytes arrive so that a server dripping a long line is refused as soon
 * as it went too far.
 */
static int line_take(struct cm_http1_response *r, const char *data, size_t len, bool counted,
                     size_t *ret_used) {
        const char *lf = memchr(data, '\n', len);
        size_t n = lf ? (size_t) (lf - data) : len, used = lf ? n + 1 : n;

        if (counted) {
                if (used > CM_HTTP1_HEAD_MAX - r->head_bytes)
                        return -EBADMSG;
                r->head_bytes += used;
        }
        if (n > sizeof(r->line) - r->line_len)
                return -EBADMSG;
        memcpy(r->line + r->line_len, data, n);
        r->line_len += n;
        *ret_used = used;
        if (!lf)
                return 0;

        if (r->line_len > 0 && r->line[r->line_len - 1] == '\r')
                r->line_len--;
        if (r->line_len > CM_HTTP1_LINE_MAX)
                return -EBADMSG;
        /* No line has a use for control characters; a bare CR or a NUL is how smuggling starts. */
        for (size_t i = 0; i < r->line_len; i++) {
                unsigned char c = (unsigned char) r->line[i];

                if ((c < 0x20 && c != '\t') || c == 0x7f)
                        return -EBADMSG;
        }
        return 1;
}

/* ---- the head ------------------------------------------------------------------------------------ */

static int status_line(struct cm_http1_response *r, const char *s, size_t n) {
        int status;

        if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') || s[8] != ' ' ||
            s[9] < '1' || s[9] > '5' || !is_digit(s[10]) || !is_digit(s[11]) || (n > 12 && s[12] != ' '))
                return -EBADMSG;
        status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
        /* Switching protocols: the client never asks to, so it is not the server we think it is. */
        if (status == 101)
                return -EBADMSG;

        r->status = status;
        r->minor = (unsigned) (s[7] - '0');
        r->te_count = 0;
        r->te_chunked = r->cl_seen = r->cl_bad = r->conn_close = r->conn_keep_alive = false;
        r->state = CM_HTTP1__HEADERS;
        return 0;
}

/* A malformed or disagreeing value is only noted: with Transfer-Encoding, Content-Length is ignored. */
static void content_length(struct cm_http1_response *r, const char *v, size_t n) {
        uint64_t x = 0;

        if (n == 0)
                r->cl_bad = true;
        for (size_t i = 0; i < n && !r->cl_bad; i++) {
                if (!is_digit(v[i]))
                        r->cl_bad = true;
                else {
                        x = x * 10 + (uint64_t) (v[i] - '0');
                        if (x > CM_HTTP1_LENGTH_MAX)
                                r->cl_bad = true;
                }
        }
        if (r->cl_seen && x != r->content_length)
                r->cl_bad = true;
        r->cl_seen = true;
        r->content_length = x;
}

/* The tokens of a Connection header (a comma-separated list; empty elements are allowed). */
static void connection(struct cm_http1_response *r, const char *v, size_t n) {
        while (n > 0) {
                const char *comma = memchr(v, ',', n);
                size_t k = comma ? (size_t) (comma - v) : n;
                const char *t = v;
                size_t tn = k;

                trim_ows(&t, &tn);
                if (equal_nocase(t, tn, "close"))
                        r->conn_close = true;
                else if (equal_nocase(t, tn, "keep-alive"))
                        r->conn_keep_alive = true;
                if (!comma)
                        break;
                v += k + 1;
                n -= k + 1;
        }
}

/* The end of a response's header section: an interim response is over, a final one's body framed. */
static int head_end(struct cm_http1_response *r) {
        struct strbuf *body = r->body;

        if (r->status < 200) {
                r->status = 0;
                r->state = CM_HTTP1__STATUS_LINE;
                return 0;
        }

        if (r->te_count > 0) {
                /* RFC 9112 section 6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty. */
                if (r->te_count > 1 || !r->te_chunked || r->minor == 0)
                        return -EBADMSG;
        } else if (r->cl_bad)
                return -EBADMSG;

        if (r->minor == 1)
                r->keep_alive = !r->conn_close;
        else
                r->keep_alive = r->conn_keep_alive && !r->conn_close;
        /*
         * Both framings at once is what response splitting looks like: the chunked body is read, but
         * whatever follows it on the connection is not trusted to be the next response.
         */
        if (r->te_count > 0 && r->cl_seen)
                r->keep_alive = false;

        if (r->status == 204 || r->status == 304) {
                r->state = CM_HTTP1__DONE;
                return 0;
        }
        if (r->te_count > 0) {
                r->state = CM_HTTP1__CHUNK_SIZE;
                return 0;
        }
        if (r->cl_seen) {
                /* Refused before it is read: the body buffer keeps len <= cap. */
                if (r->content_length > body->cap - body->len)
                        return -EFBIG;
                r->remaining = r->content_length;
                r->state = r->remaining > 0 ? CM_HTTP1__BODY_LENGTH : CM_HTTP1__DONE;
                return 0;
        }
        r->keep_alive = false;
        r->state = CM_HTTP1__BODY_CLOSE;
        return 0;
}

/* A header or trailer line; an empty one ends its section. */
static int header_line(struct cm_http1_response *r, const char *s, size_t n) {
        const char *colon, *v;
        size_t name_len, vn;

        if (n == 0) {
                if (r->state == CM_HTTP1__TRAILERS) {
                        r->state = CM_HTTP1__DONE;
                        return 0;
                }
                return head_end(r);
        }
        /* obs-fold, or whitespace before the first header, which would hide it (RFC 9112 section 2.2). */
        if (is_ows(s[0]))
                return -EBADMSG;
        colon = memchr(s, ':', n);
        if (!colon || colon == s)
                return -EBADMSG;
        name_len = (size_t) (colon - s);
        for (size_t i = 0; i < name_len; i++)
                if (!is_tchar(s[i]))
                        return -EBADMSG;
        v = colon + 1;
        vn = n - name_len - 1;
        trim_ows(&v, &vn);

        /* Only a final response's headers frame it; an interim response's and the trailers are dropped. */
        if (r->state == CM_HTTP1__TRAILERS || r->status < 200)
                return 0;
        if (equal_nocase(s, name_len, "content-length"))
                content_length(r, v, vn);
        else if (equal_nocase(s, name_len, "transfer-encoding")) {
                r->te_count++;
                r->te_chunked = equal_nocase(v, vn, "chunked");
        } else if (equal_nocase(s, name_len, "connection"))
                connection(r, v, vn);
        return 0;
}

/* ---- the body ------------------------------------------------------------------------------------ */

static int chunk_size_line(struct cm_http1_response *r, const char *s, size_t n) {
        uint64_t x = 0;
        size_t i = 0;
        int d;

        while (i < n && (d = hex_value(s[i])) >= 0) {
                x = x << 4 | (uint64_t) d;
                if (x > CM_HTTP1_LENGTH_MAX)
                        return -EBADMSG;
                i++;
        }
        if (i == 0)
                return -EBADMSG;
        /* chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ): nothing in it is of use here. */
        if (i < n) {
                while (i < n && is_ows(s[i]))
                        i++;
                if (i == n || s[i] != ';')
                        return -EBADMSG;
        }

        if (x == 0) {
                r->head_bytes = 0;
                r->state = CM_HTTP1__TRAILERS;
                return 0;
        }
        if (x > r->body->cap - r->body->len)
                return -EFBIG;
        r->remaining = x;
        r->state = CM_HTTP1__CHUNK_DATA;
        return 0;
}

static int body_add(struct cm_http1_response *r, const char *data, size_t n) {
        int k = strbuf_add(r->body, data, n);

        return k == -ENOBUFS ? -EFBIG : k;
}

/* ---- the machine --------------------------------------------------------------------------------- */

/* Parses from data (len > 0) in the current state; takes at least one byte unless the response ends. */
static int step(struct cm_http1_response *r, const char *data, size_t len, size_t *ret_used) {
        size_t n;
        int k;

        switch (r->state) {
        case CM_HTTP1__STATUS_LINE:
        case CM_HTTP1__HEADERS:
        case CM_HTTP1__TRAILERS:
        case CM_HTTP1__CHUNK_SIZE:
                k = line_take(r, data, len, r->state != CM_HTTP1__CHUNK_SIZE, ret_used);
                if (k <= 0)
                        return k;
                n = r->line_len;
                r->line_len = 0;
                if (r->state == CM_HTTP1__STATUS_LINE)
                        return status_line(r, r->line, n);
                if (r->state == CM_HTTP1__CHUNK_SIZE)
                        return chunk_size_line(r, r->line, n);
                return header_line(r, r->line, n);

        case CM_HTTP1__BODY_LENGTH:
        case CM_HTTP1__CHUNK_DATA:
                n = (size_t) MIN((uint64_t) len, r->remaining);
                k = body_add(r, data, n);
                if (k < 0)
                        return k;
                r->remaining -= n;
                if (r->remaining == 0)
                        r->state = r->state == CM_HTTP1__BODY_LENGTH ? CM_HTTP1__DONE : CM_HTTP1__CHUNK_CR;
                *ret_used = n;
                return 0;

        case CM_HTTP1__BODY_CLOSE:
                k = body_add(r, data, len);
                if (k < 0)
                        return k;
                *ret_used = len;
                return 0;

        case CM_HTTP1__CHUNK_CR:
                if (data[0] == '\r')
                        r->state = CM_HTTP1__CHUNK_LF;
                else if (data[0] == '\n')
                        r->state = CM_HTTP1__CHUNK_SIZE;
                else
                        return -EBADMSG;
                *ret_used = 1;
                return 0;

        case CM_HTTP1__CHUNK_LF:
                if (data[0] != '\n')
                        return -EBADMSG;
                r->state = CM_HTTP1__CHUNK_SIZE;
                *ret_used = 1;
                return 0;

        case CM_HTTP1__DONE:
        case CM_HTTP1__FAILED:
        default:
                return -EINVAL;
        }
}

static int fail(struct cm_http1_response *r, int error) {
        r->state = CM_HTTP1__FAILED;
        r->error = error;
        return error;
}

void cm_http1_response_init(struct cm_http1_response *r, struct strbuf *body) {
        /* Not the line buffer: only line[0..line_len) is ever read, and clearing 8 KiB is for nothing. */
        memset(r, 0, offsetof(struct cm_http1_response, line));
        r->state = CM_HTTP1__STATUS_LINE;
        r->body = body;
}

int cm_http1_response_feed(struct cm_http1_response *r, const char *data, size_t len, size_t *consumed) {
        size_t pos = 0;

        if (r->state == CM_HTTP1__FAILED)
                return r->error;
        if (r->state == CM_HTTP1__DONE) {
                *consumed = 0;
                return 1;
        }
        if (!data && len > 0)
                return -EINVAL;
        if (len > 0)
                r->started = true;

        while (pos < len && r->state != CM_HTTP1__DONE) {
                size_t used = 0;
                int k = step(r, data + pos, len - pos, &used);

                if (k < 0)
                        return fail(r, k);
                pos += used;
        }
        *consumed = pos;
        return r->state == CM_HTTP1__DONE;
}

int cm_http1_response_eof(struct cm_http1_response *r) {
        switch (r->state) {
        case CM_HTTP1__DONE:
                return 1;
        case CM_HTTP1__FAILED:
                return r->error;
        case CM_HTTP1__BODY_CLOSE:
                r->state = CM_HTTP1__DONE;
                return 1;
        case CM_HTTP1__STATUS_LINE:
        case CM_HTTP1__HEADERS:
        case CM_HTTP1__BODY_LENGTH:
        case CM_HTTP1__CHUNK_SIZE:
        case CM_HTTP1__CHUNK_DATA:
        case CM_HTTP1__CHUNK_CR:
        case CM_HTTP1__CHUNK_LF:
        case CM_HTTP1__TRAILERS:
        default:
                return fail(r, -EBADMSG);
        }
}

bool cm_http1_response_started(const struct cm_http1_response *r) {
        return r->started;
}
