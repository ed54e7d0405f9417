/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "cli/sse.h"

void cm_sse_parser_init(struct cm_sse_parser *p, cm_sse_event_fn on_event, void *userdata) {
        *p = (struct cm_sse_parser){ .on_event = on_event, .userdata = userdata };
        strbuf_init(&p->line, CM_SSE_LINE_MAX);
        strbuf_init(&p->data, CM_SSE_EVENT_MAX);
        strbuf_init(&p->type, CM_SSE_LINE_MAX);
        strbuf_init(&p->id, CM_SSE_LINE_MAX);
        strbuf_init(&p->last_id, CM_SSE_LINE_MAX);
}

void cm_sse_parser_done(struct cm_sse_parser *p) {
        if (!p)
                return;
        strbuf_release(&p->line);
        strbuf_release(&p->data);
        strbuf_release(&p->type);
        strbuf_release(&p->id);
        strbuf_release(&p->last_id);
}

void cm_sse_parser_reset(struct cm_sse_parser *p) {
        strbuf_reset(&p->line);
        strbuf_reset(&p->data);
        strbuf_reset(&p->type);
        strbuf_reset(&p->id);
        p->id_pending = false;
        p->has_data = false;
        p->after_cr = false;
        p->started = false;
}

const char *cm_sse_parser_last_id(const struct cm_sse_parser *p) {
        return p->last_id.buf ?: "";
}

static void strbuf_swap(struct strbuf *a, struct strbuf *b) {
        struct strbuf t = *a;

        *a = *b;
        *b = t;
}

/* An empty line: the event ends. */
static int dispatch(struct cm_sse_parser *p) {
        struct cm_sse_event ev;
        int r;

        if (p->id_pending) {
                /* Both buffers have the same cap; the old last id is dropped with the swap. */
                strbuf_swap(&p->id, &p->last_id);
                strbuf_reset(&p->id);
                p->id_pending = false;
        }
        if (!p->has_data) {
                strbuf_reset(&p->type);
                return 0;
        }
        ev = (struct cm_sse_event){
                .type = p->type.len > 0 ? p->type.buf : "message",
                .id = cm_sse_parser_last_id(p),
                .data = p->data.buf ?: "",
                .data_len = p->data.len,
        };
        r = p->on_event(&ev, p->userdata);
        strbuf_reset(&p->data);
        strbuf_reset(&p->type);
        p->has_data = false;
        return r;
}

static bool field_is(const char *field, size_t n, const char *name) {
        return strlen(name) == n && memcmp(field, name, n) == 0;
}

static int set_value(struct strbuf *sb, const char *value, size_t n) {
        strbuf_reset(sb);
        return strbuf_add(sb, value, n); /* a value is shorter than a line: it fits the cap */
}

static int process_line(struct cm_sse_parser *p) {
        const char *line = p->line.buf ?: "", *colon, *value;
        size_t n = p->line.len, field_len, value_len;
        int r;

        if (!p->started) {
                p->started = true;
                if (n >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0) {
                        line += 3;
                        n -= 3;
                }
        }
        if (n == 0)
                return dispatch(p);
        if (line[0] == ':')
                return 0; /* a comment */

        colon = memchr(line, ':', n);
        if (colon) {
                field_len = (size_t) (colon - line);
                value = colon + 1;
                value_len = n - field_len - 1;
                if (value_len > 0 && value[0] == ' ') {
                        value++;
                        value_len--;
                }
        } else {
                field_len = n;
                value = line + n;
                value_len = 0;
        }

        if (field_is(line, field_len, "data")) {
                if (p->has_data && (r = strbuf_addch(&p->data, '\n')) < 0)
                        return r == -ENOBUFS ? -EFBIG : r;
                r = strbuf_add(&p->data, value, value_len);
                if (r < 0)
                        return r == -ENOBUFS ? -EFBIG : r;
                p->has_data = true;
                return 0;
        }
        if ((field_is(line, field_len, "event") || field_is(line, field_len, "id")) &&
            memchr(value, 0, value_len))
                return 0; /* a NUL byte cannot be in a C string: the field is ignored */
        if (field_is(line, field_len, "event"))
                return set_value(&p->type, value, value_len);
        if (field_is(line, field_len, "id")) {
                r = set_value(&p->id, value, value_len);
                if (r >= 0)
                        p->id_pending = true;
                return r;
        }
        return 0; /* retry and unknown fields */
}

/* The first CR or LF in s, or NULL. */
static const char *find_line_end(const char *s, size_t n) {
        const char *lf = memchr(s, '\n', n);
        const char *cr = memchr(s, '\r', lf ? (size_t) (lf - s) : n);

        return cr ?: lf;
}

int cm_sse_parser_feed(struct cm_sse_parser *p, const void *buf, size_t n) {
        const char *s = buf;
        int r;

        while (n > 0) {
                const char *end;
                size_t k;

                if (p->after_cr) {
                        p->after_cr = false;
                        if (*s == '\n') {
                                /* The LF of a CRLF split across two pieces. */
                                s++;
                                n--;
                                continue;
                        }
                }
                end = find_line_end(s, n);
                k = end ? (size_t) (end - s) : n;
                r = strbuf_add(&p->line, s, k);
                if (r < 0)
                        return r == -ENOBUFS ? -EMSGSIZE : r;
                if (!end)
                        return 0;
                p->after_cr = *end == '\r';
                r = process_line(p);
                strbuf_reset(&p->line);
                if (r < 0)
                        return r;
                s = end + 1;
                n -= k + 1;
        }
        return 0;
}
