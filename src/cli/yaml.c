/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <math.h>
#include <yaml.h>

#include "base/strbuf.h"
#include "cli/yaml.h"

/* The YAML written by cm_json_to_yaml() never nests deeper than this. */
#define EMIT_MAX_DEPTH 64U
/* Keys quoted in error messages are cut to this many bytes. */
#define ERROR_KEY_MAX 64

#define TAG_STR "tag:yaml.org,2002:str"
#define TAG_INT "tag:yaml.org,2002:int"
#define TAG_FLOAT "tag:yaml.org,2002:float"
#define TAG_BOOL "tag:yaml.org,2002:bool"
#define TAG_NULL "tag:yaml.org,2002:null"
#define TAG_MAP "tag:yaml.org,2002:map"
#define TAG_SEQ "tag:yaml.org,2002:seq"

/* What a plain scalar means under the YAML 1.2 core schema. */
enum plain_kind {
        PLAIN_STRING,
        PLAIN_NULL,
        PLAIN_BOOL,
        PLAIN_INT,
        PLAIN_INT_HEX,
        PLAIN_INT_OCT,
        PLAIN_FLOAT,
        PLAIN_FLOAT_SPECIAL, /* .inf, -.inf, .nan: no JSON equivalent */
};

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

static bool span_all(const char *s, size_t n, const char *set) {
        if (n == 0)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!s[i] || !strchr(set, s[i]))
                        return false;
        return true;
}

static bool eq_any(const char *s, size_t n, const char *const *words) {
        for (; *words; words++)
                if (strlen(*words) == n && memcmp(s, *words, n) == 0)
                        return true;
        return false;
}

/* [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )? */
static bool is_core_float(const char *s, size_t n) {
        size_t i = 0, d;

        if (i < n && (s[i] == '-' || s[i] == '+'))
                i++;
        if (i < n && s[i] == '.') {
                i++;
                for (d = 0; i < n && is_digit(s[i]); i++)
                        d++;
                if (d == 0)
                        return false;
        } else {
                for (d = 0; i < n && is_digit(s[i]); i++)
                        d++;
                if (d == 0)
                        return false;
                if (i < n && s[i] == '.')
                        for (i++; i < n && is_digit(s[i]); i++)
                                ;
        }
        if (i < n && (s[i] == 'e' || s[i] == 'E')) {
                i++;
                if (i < n && (s[i] == '-' || s[i] == '+'))
                        i++;
                for (d = 0; i < n && is_digit(s[i]); i++)
                        d++;
                if (d == 0)
                        return false;
        }
        return i == n;
}

static enum plain_kind plain_classify(const char *s, size_t n) {
        static const char *const nulls[] = { "~", "null", "Null", "NULL", NULL };
        static const char *const bools[] = { "true", "True", "TRUE", "false", "False", "FALSE", NULL };
        static const char *const specials[] = { ".inf",  ".Inf",  ".INF", "+.inf", "+.Inf", "+.INF", "-.inf",
                                                "-.Inf", "-.INF", ".nan", ".NaN",  ".NAN",  NULL };
        size_t i = 0;

        if (n == 0 || eq_any(s, n, nulls))
                return PLAIN_NULL;
        if (eq_any(s, n, bools))
                return PLAIN_BOOL;
        if (n > 2 && s[0] == '0' && s[1] == 'x' && span_all(s + 2, n - 2, "0123456789abcdefABCDEF"))
                return PLAIN_INT_HEX;
        if (n > 2 && s[0] == '0' && s[1] == 'o' && span_all(s + 2, n - 2, "01234567"))
                return PLAIN_INT_OCT;
        if (s[0] == '-' || s[0] == '+')
                i = 1;
        if (span_all(s + i, n - i, "0123456789"))
                return PLAIN_INT;
        if (is_core_float(s, n))
                return PLAIN_FLOAT;
        if (eq_any(s, n, specials))
                return PLAIN_FLOAT_SPECIAL;
        return PLAIN_STRING;
}

/* State of one YAML → JSON conversion. */
struct yconv {
        yaml_parser_t parser;
        const char *data;
        size_t len;
        struct cm_doc_error err;
        unsigned depth;
        bool redact; /* messages never quote the input (keys, values, tags, anchors) */
};

_printf_(4, 0) static void doc_error_setv(struct cm_doc_error *e, unsigned line, unsigned column,
                                          const char *fmt, va_list ap) {
        e->line = line;
        e->column = column;
        (void) vsnprintf(e->message, sizeof(e->message), fmt, ap);
}

_printf_(4, 5) static void doc_error_set(struct cm_doc_error *e, unsigned line, unsigned column,
                                         const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        doc_error_setv(e, line, column, fmt, ap);
        va_end(ap);
}

_printf_(3, 4) static int yconv_fail(struct yconv *y, const yaml_mark_t *mark, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        doc_error_setv(&y->err, (unsigned) MIN(mark->line + 1, (size_t) UINT_MAX),
                       (unsigned) MIN(mark->column + 1, (size_t) UINT_MAX), fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static int yconv_next(struct yconv *y, yaml_event_t *ev) {
        if (yaml_parser_parse(&y->parser, ev))
                return 0;
        if (y->parser.error == YAML_MEMORY_ERROR)
                return -ENOMEM;
        if (y->parser.error == YAML_READER_ERROR) {
                /* The reader reports a byte offset (bad UTF-8, control characters): find its line. */
                yaml_mark_t mark = {};
                size_t end = MIN(y->parser.problem_offset, y->len);

                for (size_t i = 0; i < end; i++) {
                        if (y->data[i] == '\n') {
                                mark.line++;
                                mark.column = 0;
                        } else if (((unsigned char) y->data[i] & 0xC0) != 0x80)
                                mark.column++;
                }
                return yconv_fail(y, &mark, "%s", strna(y->parser.problem));
        }
        if (y->parser.context)
                return yconv_fail(y, &y->parser.problem_mark, "%s %s", strna(y->parser.problem),
                                  y->parser.context);
        return yconv_fail(y, &y->parser.problem_mark, "%s", strna(y->parser.problem));
}

static int yconv_check_anchor(struct yconv *y, const yaml_event_t *ev, const yaml_char_t *anchor) {
        if (anchor && y->redact)
                return yconv_fail(y, &ev->start_mark,
                                  "anchors are not allowed; write the value out in full");
        if (anchor)
                return yconv_fail(y, &ev->start_mark,
                                  "anchors (&%.*s) are not allowed; write the value out in full",
                                  ERROR_KEY_MAX, (const char *) anchor);
        return 0;
}

static int yconv_unsupported_tag(struct yconv *y, const yaml_event_t *ev, const yaml_char_t *tag) {
        if (y->redact)
                return yconv_fail(y, &ev->start_mark, "unsupported tag");
        return yconv_fail(y, &ev->start_mark, "unsupported tag '%.*s'", ERROR_KEY_MAX, (const char *) tag);
}

static int scalar_to_json(struct yconv *y, const yaml_event_t *ev, json_t **ret) {
        const char *s = (const char *) ev->data.scalar.value;
        const char *tag = (const char *) ev->data.scalar.tag;
        size_t n = ev->data.scalar.length;
        enum plain_kind kind = PLAIN_STRING;
        json_t *v = NULL;
        int r;

        r = yconv_check_anchor(y, ev, ev->data.scalar.anchor);
        if (r < 0)
                return r;

        if (!tag) {
                if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
                        kind = plain_classify(s, n);
        } else if (streq(tag, "!") || streq(tag, TAG_STR)) {
                kind = PLAIN_STRING;
        } else {
                kind = plain_classify(s, n);
                if ((streq(tag, TAG_NULL) && kind != PLAIN_NULL) ||
                    (streq(tag, TAG_BOOL) && kind != PLAIN_BOOL) ||
                    (streq(tag, TAG_INT) && kind != PLAIN_INT && kind != PLAIN_INT_HEX &&
                     kind != PLAIN_INT_OCT) ||
                    (streq(tag, TAG_FLOAT) && kind != PLAIN_FLOAT && kind != PLAIN_INT))
                        return y->redact ? yconv_fail(y, &ev->start_mark, "the value is not a valid %s",
                                                      tag + strlen("tag:yaml.org,2002:"))
                                         : yconv_fail(y, &ev->start_mark, "'%.*s' is not a valid %s",
                                                      ERROR_KEY_MAX, s, tag + strlen("tag:yaml.org,2002:"));
                if (!streq(tag, TAG_NULL) && !streq(tag, TAG_BOOL) && !streq(tag, TAG_INT) &&
                    !streq(tag, TAG_FLOAT))
                        return yconv_unsupported_tag(y, ev, ev->data.scalar.tag);
                if (streq(tag, TAG_FLOAT))
                        kind = PLAIN_FLOAT;
        }

        switch (kind) {
        case PLAIN_STRING:
                v = json_stringn(s, n);
                if (!v)
                        return yconv_fail(y, &ev->start_mark, "the string is not valid UTF-8");
                break;
        case PLAIN_NULL:
                v = json_null();
                break;
        case PLAIN_BOOL:
                v = json_boolean(s[0] == 't' || s[0] == 'T');
                break;
        case PLAIN_INT: {
                long long x;
                char *end;

                errno = 0;
                x = strtoll(s, &end, 10);
                if (errno == ERANGE || end != s + n)
                        return y->redact ? yconv_fail(y, &ev->start_mark, "the integer is out of range")
                                         : yconv_fail(y, &ev->start_mark, "the integer %.*s is out of range",
                                                      ERROR_KEY_MAX, s);
                v = json_integer(x);
                break;
        }
        case PLAIN_INT_HEX:
        case PLAIN_INT_OCT: {
                unsigned long long x;
                char *end;

                errno = 0;
                x = strtoull(s + 2, &end, kind == PLAIN_INT_HEX ? 16 : 8);
                if (errno == ERANGE || end != s + n || x > (unsigned long long) INT64_MAX)
                        return y->redact ? yconv_fail(y, &ev->start_mark, "the integer is out of range")
                                         : yconv_fail(y, &ev->start_mark, "the integer %.*s is out of range",
                                                      ERROR_KEY_MAX, s);
                v = json_integer((json_int_t) x);
                break;
        }
        case PLAIN_FLOAT: {
                double d;
                char *end;

                errno = 0;
                d = strtod(s, &end);
                if (end != s + n || !isfinite(d))
                        return y->redact ? yconv_fail(y, &ev->start_mark, "the number is out of range")
                                         : yconv_fail(y, &ev->start_mark, "the number %.*s is out of range",
                                                      ERROR_KEY_MAX, s);
                v = json_real(d);
                break;
        }
        case PLAIN_FLOAT_SPECIAL:
                if (y->redact)
                        return yconv_fail(y, &ev->start_mark,
                                          "infinity and NaN cannot be represented in JSON");
                return yconv_fail(y, &ev->start_mark, "%.*s cannot be represented in JSON", ERROR_KEY_MAX,
                                  s);
        }
        if (!v)
                return -ENOMEM;
        *ret = v;
        return 0;
}

static int node_to_json(struct yconv *y, const yaml_event_t *ev, json_t **ret);

static int yconv_enter(struct yconv *y, const yaml_event_t *ev) {
        if (y->depth >= CM_DOCUMENT_MAX_DEPTH)
                return yconv_fail(y, &ev->start_mark, "nesting deeper than %u levels",
                                  CM_DOCUMENT_MAX_DEPTH);
        y->depth++;
        return 0;
}

static int sequence_to_json(struct yconv *y, const yaml_event_t *start, json_t **ret) {
        const char *tag = (const char *) start->data.sequence_start.tag;
        json_t *arr;
        int r;

        r = yconv_check_anchor(y, start, start->data.sequence_start.anchor);
        if (r < 0)
                return r;
        if (tag && !streq(tag, TAG_SEQ) && !streq(tag, "!"))
                return yconv_unsupported_tag(y, start, start->data.sequence_start.tag);
        r = yconv_enter(y, start);
        if (r < 0)
                return r;

        arr = json_array();
        if (!arr)
                return -ENOMEM;
        for (;;) {
                _cleanup_(yaml_event_delete) yaml_event_t ev = {};
                json_t *item = NULL;

                r = yconv_next(y, &ev);
                if (r < 0)
                        goto fail;
                if (ev.type == YAML_SEQUENCE_END_EVENT)
                        break;
                r = node_to_json(y, &ev, &item);
                if (r < 0)
                        goto fail;
                if (json_array_append_new(arr, item) < 0) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        y->depth--;
        *ret = arr;
        return 0;
fail:
        json_decref(arr);
        return r;
}

static int mapping_key(struct yconv *y, const yaml_event_t *ev) {
        const char *tag = (const char *) ev->data.scalar.tag;
        int r;

        switch (ev->type) {
        case YAML_SCALAR_EVENT:
                break;
        case YAML_ALIAS_EVENT:
                if (y->redact)
                        return yconv_fail(y, &ev->start_mark,
                                          "aliases are not allowed; write the value out in full");
                return yconv_fail(y, &ev->start_mark,
                                  "aliases (*%.*s) are not allowed; write the value out in full",
                                  ERROR_KEY_MAX, (const char *) ev->data.alias.anchor);
        case YAML_MAPPING_START_EVENT:
        case YAML_SEQUENCE_START_EVENT:
                return yconv_fail(y, &ev->start_mark, "mapping keys must be strings, not %s",
                                  ev->type == YAML_MAPPING_START_EVENT ? "mappings" : "sequences");
        default:
                return yconv_fail(y, &ev->start_mark, "unexpected YAML event");
        }
        r = yconv_check_anchor(y, ev, ev->data.scalar.anchor);
        if (r < 0)
                return r;
        if (tag && !streq(tag, TAG_STR) && !streq(tag, "!"))
                return yconv_unsupported_tag(y, ev, ev->data.scalar.tag);
        if (memchr(ev->data.scalar.value, 0, ev->data.scalar.length))
                return yconv_fail(y, &ev->start_mark, "mapping keys must not contain NUL characters");
        return 0;
}

static int mapping_to_json(struct yconv *y, const yaml_event_t *start, json_t **ret) {
        const char *tag = (const char *) start->data.mapping_start.tag;
        json_t *obj;
        int r;

        r = yconv_check_anchor(y, start, start->data.mapping_start.anchor);
        if (r < 0)
                return r;
        if (tag && !streq(tag, TAG_MAP) && !streq(tag, "!"))
                return yconv_unsupported_tag(y, start, start->data.mapping_start.tag);
        r = yconv_enter(y, start);
        if (r < 0)
                return r;

        obj = json_object();
        if (!obj)
                return -ENOMEM;
        for (;;) {
                _cleanup_(yaml_event_delete) yaml_event_t kev = {};
                _cleanup_(yaml_event_delete) yaml_event_t vev = {};
                const char *key;
                json_t *value = NULL;

                r = yconv_next(y, &kev);
                if (r < 0)
                        goto fail;
                if (kev.type == YAML_MAPPING_END_EVENT)
                        break;
                r = mapping_key(y, &kev);
                if (r < 0)
                        goto fail;
                key = (const char *) kev.data.scalar.value;
                if (json_object_get(obj, key)) {
                        r = y->redact ? yconv_fail(y, &kev.start_mark, "duplicate key")
                                      : yconv_fail(y, &kev.start_mark, "duplicate key '%.*s'", ERROR_KEY_MAX,
                                                   key);
                        goto fail;
                }
                r = yconv_next(y, &vev);
                if (r < 0)
                        goto fail;
                r = node_to_json(y, &vev, &value);
                if (r < 0)
                        goto fail;
                if (json_object_set_new(obj, key, value) < 0) {
                        r = yconv_fail(y, &kev.start_mark, "the key is not valid UTF-8");
                        goto fail;
                }
        }
        y->depth--;
        *ret = obj;
        return 0;
fail:
        json_decref(obj);
        return r;
}

static int node_to_json(struct yconv *y, const yaml_event_t *ev, json_t **ret) {
        switch (ev->type) {
        case YAML_SCALAR_EVENT:
                return scalar_to_json(y, ev, ret);
        case YAML_SEQUENCE_START_EVENT:
                return sequence_to_json(y, ev, ret);
        case YAML_MAPPING_START_EVENT:
                return mapping_to_json(y, ev, ret);
        case YAML_ALIAS_EVENT:
                if (y->redact)
                        return yconv_fail(y, &ev->start_mark,
                                          "aliases are not allowed; write the value out in full");
                return yconv_fail(y, &ev->start_mark,
                                  "aliases (*%.*s) are not allowed; write the value out in full",
                                  ERROR_KEY_MAX, (const char *) ev->data.alias.anchor);
        default:
                return yconv_fail(y, &ev->start_mark, "unexpected YAML event");
        }
}

static int yaml_convert(struct yconv *y, json_t **ret) {
        _cleanup_(yaml_event_delete) yaml_event_t ev = {};
        json_t *root = NULL;
        int r;

        r = yconv_next(y, &ev);
        if (r < 0)
                return r;
        if (ev.type != YAML_STREAM_START_EVENT)
                return yconv_fail(y, &ev.start_mark, "unexpected YAML event");
        yaml_event_delete(&ev);

        r = yconv_next(y, &ev);
        if (r < 0)
                return r;
        if (ev.type == YAML_STREAM_END_EVENT)
                return yconv_fail(y, &ev.start_mark, "the document is empty");
        if (ev.type != YAML_DOCUMENT_START_EVENT)
                return yconv_fail(y, &ev.start_mark, "unexpected YAML event");
        yaml_event_delete(&ev);

        r = yconv_next(y, &ev);
        if (r < 0)
                return r;
        r = node_to_json(y, &ev, &root);
        if (r < 0)
                return r;
        yaml_event_delete(&ev);

        r = yconv_next(y, &ev);
        if (r < 0)
                goto fail;
        if (ev.type != YAML_DOCUMENT_END_EVENT) {
                r = yconv_fail(y, &ev.start_mark, "unexpected YAML event");
                goto fail;
        }
        yaml_event_delete(&ev);

        r = yconv_next(y, &ev);
        if (r < 0)
                goto fail;
        if (ev.type == YAML_DOCUMENT_START_EVENT) {
                r = yconv_fail(y, &ev.start_mark, "only one document is allowed, found a second one");
                goto fail;
        }
        if (ev.type != YAML_STREAM_END_EVENT) {
                r = yconv_fail(y, &ev.start_mark, "unexpected YAML event");
                goto fail;
        }
        *ret = root;
        return 0;
fail:
        json_decref(root);
        return r;
}

int cm_yaml_to_json(const char *data, size_t len, json_t **ret, struct cm_doc_error *error) {
        struct yconv y = { .data = data, .len = len };
        json_t *root = NULL;
        int r;

        if (len > CM_DOCUMENT_MAX) {
                if (error)
                        doc_error_set(error, 0, 0, "the document is larger than %u bytes", CM_DOCUMENT_MAX);
                return -EFBIG;
        }
        if (!yaml_parser_initialize(&y.parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&y.parser, (const unsigned char *) data, len);
        r = yaml_convert(&y, &root);
        yaml_parser_delete(&y.parser);
        if (r < 0) {
                if (error) {
                        if (r == -ENOMEM)
                                doc_error_set(&y.err, 0, 0, "out of memory");
                        *error = y.err;
                }
                return r;
        }
        *ret = root;
        return 0;
}

/* The documents of a stream, one after the other, each handed to fn. */
static int yaml_convert_stream(struct yconv *y, cm_yaml_document_fn fn, void *userdata, bool *ret_stopped) {
        _cleanup_(yaml_event_delete) yaml_event_t ev = {};
        unsigned index = 0;
        int r;

        r = yconv_next(y, &ev);
        if (r < 0)
                return r;
        if (ev.type != YAML_STREAM_START_EVENT)
                return yconv_fail(y, &ev.start_mark, "unexpected YAML event");

        for (;;) {
                json_t *root = NULL;
                unsigned line;

                yaml_event_delete(&ev);
                r = yconv_next(y, &ev);
                if (r < 0)
                        return r;
                if (ev.type == YAML_STREAM_END_EVENT)
                        return 0;
                if (ev.type != YAML_DOCUMENT_START_EVENT)
                        return yconv_fail(y, &ev.start_mark, "unexpected YAML event");
                if (index == UINT_MAX)
                        return yconv_fail(y, &ev.start_mark, "too many documents");
                yaml_event_delete(&ev);

                r = yconv_next(y, &ev);
                if (r < 0)
                        return r;
                line = (unsigned) MIN(ev.start_mark.line + 1, (size_t) UINT_MAX);
                y->depth = 0;
                r = node_to_json(y, &ev, &root);
                if (r < 0)
                        return r;
                yaml_event_delete(&ev);

                r = yconv_next(y, &ev);
                if (r >= 0 && ev.type != YAML_DOCUMENT_END_EVENT)
                        r = yconv_fail(y, &ev.start_mark, "unexpected YAML event");
                if (r < 0) {
                        json_decref(root);
                        return r;
                }
                r = fn(root, ++index, line, userdata);
                if (r < 0) {
                        *ret_stopped = true;
                        return r;
                }
        }
}

int cm_yaml_stream_to_json(const char *data, size_t len, size_t max, cm_yaml_document_fn fn, void *userdata,
                           struct cm_doc_error *error) {
        struct yconv y = { .data = data, .len = len, .redact = true };
        bool stopped = false;
        int r;

        if (len > max) {
                if (error)
                        doc_error_set(error, 0, 0, "the stream is larger than %zu bytes", max);
                return -EFBIG;
        }
        if (!yaml_parser_initialize(&y.parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&y.parser, (const unsigned char *) data, len);
        r = yaml_convert_stream(&y, fn, userdata, &stopped);
        yaml_parser_delete(&y.parser);
        if (r < 0 && !stopped && error) {
                if (r == -ENOMEM)
                        doc_error_set(&y.err, 0, 0, "out of memory");
                *error = y.err;
        }
        return r;
}

static bool json_depth_ok(const json_t *v, unsigned depth) {
        const char *key;
        json_t *child;
        size_t i;

        if (!json_is_object(v) && !json_is_array(v))
                return true;
        if (depth >= CM_DOCUMENT_MAX_DEPTH)
                return false;
        if (json_is_object(v)) {
                json_object_foreach(CM_UNCONST(json_t *, v), key,
                                    child) if (!json_depth_ok(child, depth + 1)) return false;
        } else {
                json_array_foreach(v, i, child) if (!json_depth_ok(child, depth + 1)) return false;
        }
        return true;
}

int cm_document_parse(const char *data, size_t len, json_t **ret, struct cm_doc_error *error) {
        json_error_t jerr;
        json_t *root;
        size_t i = 0;

        while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n'))
                i++;
        if (i >= len || data[i] != '{')
                return cm_yaml_to_json(data, len, ret, error);

        if (len > CM_DOCUMENT_MAX) {
                if (error)
                        doc_error_set(error, 0, 0, "the document is larger than %u bytes", CM_DOCUMENT_MAX);
                return -EFBIG;
        }
        root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root) {
                if (error)
                        doc_error_set(error, jerr.line > 0 ? (unsigned) jerr.line : 0,
                                      jerr.column > 0 ? (unsigned) jerr.column : 0, "%s", jerr.text);
                return json_error_code(&jerr) == json_error_out_of_memory ? -ENOMEM : -EINVAL;
        }
        if (!json_depth_ok(root, 0)) {
                json_decref(root);
                if (error)
                        doc_error_set(error, 0, 0, "nesting deeper than %u levels", CM_DOCUMENT_MAX_DEPTH);
                return -EINVAL;
        }
        *ret = root;
        return 0;
}

void cm_doc_error_format(const struct cm_doc_error *e, char *buf, size_t size) {
        if (e->line > 0 && e->column > 0)
                (void) snprintf(buf, size, "line %u, column %u: %s", e->line, e->column, e->message);
        else if (e->line > 0)
                (void) snprintf(buf, size, "line %u: %s", e->line, e->message);
        else
                (void) snprintf(buf, size, "%s", e->message);
}

/* JSON → YAML, through libyaml's emitter, which picks the scalar styles and escapes. */
struct emit {
        yaml_emitter_t emitter;
        struct strbuf *out;
        int error;
};

static int emit_write(void *data, unsigned char *buffer, size_t size) {
        struct emit *em = data;
        int r;

        r = strbuf_add(em->out, buffer, size);
        if (r < 0) {
                em->error = r;
                return 0;
        }
        return 1;
}

/* Emits (and thereby frees) ev; a failed initialize of ev is passed in as ok == false. */
static int emit_event(struct emit *em, yaml_event_t *ev, bool ok) {
        if (!ok)
                return -ENOMEM;
        if (!yaml_emitter_emit(&em->emitter, ev)) {
                if (em->error < 0)
                        return em->error;
                return em->emitter.error == YAML_MEMORY_ERROR ? -ENOMEM : -EINVAL;
        }
        return 0;
}

/*
 * True when the string must be quoted to read back as the same string: anything the core schema
 * resolves to another type, the YAML 1.1 booleans and specials that older readers still resolve, and
 * anything that starts like a number (1.1 sexagesimals, timestamps, 1_000).
 */
static bool string_needs_quotes(const char *s, size_t n) {
        static const char *const yaml11[] = { "y",  "Y",  "yes", "Yes", "YES", "n",   "N", "no", "No", "NO",
                                              "on", "On", "ON",  "off", "Off", "OFF", "=", "<<", NULL };

        size_t dots = 0;

        if (n == 0 || plain_classify(s, n) != PLAIN_STRING || eq_any(s, n, yaml11))
                return true;
        if (!is_digit(s[0]) &&
            !((s[0] == '-' || s[0] == '+' || s[0] == '.') && n > 1 && (is_digit(s[1]) || s[1] == '.')))
                return false;
        /* YAML 1.1 timestamps: 2001-12-14, 2001-12-14t21:59:43.10-05:00. */
        if (n >= 8 && span_all(s, 4, "0123456789") && s[4] == '-')
                return true;
        /* 1.1 numbers (1_000, 0b101, 190:20:30, 1.5e3) use these characters and at most one '.'; an
         * address such as 10.0.1.10 is a string everywhere and stays plain. */
        for (size_t i = 0; i < n; i++) {
                if (!strchr("0123456789abcdefABCDEF_.:+-xXoObB", s[i]))
                        return false;
                if (s[i] == '.')
                        dots++;
        }
        return dots <= 1;
}

static int emit_scalar(struct emit *em, const char *s, size_t n, bool is_string) {
        yaml_scalar_style_t style = YAML_PLAIN_SCALAR_STYLE;
        int plain_implicit = 1, quoted_implicit = 0;
        yaml_event_t ev;
        bool ok;

        if (n > INT_MAX)
                return -E2BIG;
        if (is_string) {
                quoted_implicit = 1;
                style = YAML_ANY_SCALAR_STYLE;
                if (string_needs_quotes(s, n))
                        plain_implicit = 0; /* makes libyaml quote it */
                else if (memchr(s, '\n', n))
                        style = YAML_LITERAL_SCALAR_STYLE; /* libyaml falls back to quotes when it must */
        }
        ok = yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *) CM_UNCONST(char *, s), (int) n,
                                          plain_implicit, quoted_implicit, style);
        return emit_event(em, &ev, ok);
}

/* The shortest text that reads back as the same double, always with a '.' or an exponent. */
static void format_real(double d, char *buf, size_t size) {
        for (int prec = 1; prec <= 17; prec++) {
                (void) snprintf(buf, size, "%.*g", prec, d);
                if (strtod(buf, NULL) == d)
                        break;
        }
        if (!strpbrk(buf, ".eE")) {
                size_t l = strlen(buf);

                if (l + 3 <= size)
                        memcpy(buf + l, ".0", 3);
        }
}

static int emit_value(struct emit *em, const json_t *v, unsigned depth) {
        char num[64];
        yaml_event_t ev;
        int r;

        if (depth > EMIT_MAX_DEPTH)
                return -E2BIG;
        switch (json_typeof(v)) {
        case JSON_OBJECT: {
                const char *key;
                json_t *child;

                r = emit_event(
                        em, &ev,
                        yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE));
                if (r < 0)
                        return r;
                json_object_foreach(CM_UNCONST(json_t *, v), key, child) {
                        r = emit_scalar(em, key, strlen(key), true);
                        if (r < 0)
                                return r;
                        r = emit_value(em, child, depth + 1);
                        if (r < 0)
                                return r;
                }
                return emit_event(em, &ev, yaml_mapping_end_event_initialize(&ev));
        }
        case JSON_ARRAY: {
                json_t *child;
                size_t i;

                r = emit_event(
                        em, &ev,
                        yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE));
                if (r < 0)
                        return r;
                json_array_foreach(v, i, child) {
                        r = emit_value(em, child, depth + 1);
                        if (r < 0)
                                return r;
                }
                return emit_event(em, &ev, yaml_sequence_end_event_initialize(&ev));
        }
        case JSON_STRING:
                return emit_scalar(em, json_string_value(v), json_string_length(v), true);
        case JSON_INTEGER:
                (void) snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                return emit_scalar(em, num, strlen(num), false);
        case JSON_REAL:
                format_real(json_real_value(v), num, sizeof(num));
                return emit_scalar(em, num, strlen(num), false);
        case JSON_TRUE:
                return emit_scalar(em, "true", 4, false);
        case JSON_FALSE:
                return emit_scalar(em, "false", 5, false);
        case JSON_NULL:
                return emit_scalar(em, "null", 4, false);
        }
        return -EINVAL;
}

int cm_json_to_yaml(const json_t *v, struct strbuf *out) {
        struct emit em = { .out = out };
        size_t old_len = out->len;
        yaml_event_t ev;
        int r;

        if (!yaml_emitter_initialize(&em.emitter))
                return -ENOMEM;
        yaml_emitter_set_output(&em.emitter, emit_write, &em);
        yaml_emitter_set_unicode(&em.emitter, 1);
        yaml_emitter_set_indent(&em.emitter, 2);
        yaml_emitter_set_width(&em.emitter, -1); /* never fold long lines */

        r = emit_event(&em, &ev, yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING));
        if (r >= 0)
                r = emit_event(&em, &ev, yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1));
        if (r >= 0)
                r = emit_value(&em, v, 0);
        if (r >= 0)
                r = emit_event(&em, &ev, yaml_document_end_event_initialize(&ev, 1));
        if (r >= 0)
                r = emit_event(&em, &ev, yaml_stream_end_event_initialize(&ev));
        if (r >= 0 && !yaml_emitter_flush(&em.emitter))
                r = em.error < 0 ? em.error : -EIO;
        yaml_emitter_delete(&em.emitter);
        if (r < 0) {
                /* Leave out as it was: no half document. */
                out->len = old_len;
                if (out->buf)
                        out->buf[old_len] = 0;
        }
        return r;
}
