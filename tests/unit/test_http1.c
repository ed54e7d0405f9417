/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The monitor's HTTP/1.1 response parser. Every case is fed in one piece, byte by byte and in random
 * splits (fixed seeds, so a failure repeats), each piece in a block of its own size so that AddressSanitizer
 * catches a read past it; every way must give the same outcome.
 */
#include "base/common.h"

#include <setjmp.h>
#include <cmocka.h>

#include "base/strbuf.h"
#include "monitor/http1.h"

#define BODY_CAP (1024U * 1024U)
/* The seeds of the random splits of each case. */
#define SPLIT_SEEDS 24U

/* A string literal and its length, which may count NUL bytes inside it. */
#define IN(lit) .in = "" lit, .len = sizeof(lit) - 1
#define BODY(lit) .body = "" lit, .body_len = sizeof(lit) - 1

struct h1_case {
        const char *name;
        const char *in;
        size_t len;
        size_t cap; /* of the body; 0: BODY_CAP */
        const char *body; /* when complete; NULL: empty */
        size_t body_len; /* of body when it holds NUL bytes (BODY()); 0: strlen(body) */
        size_t rest; /* when complete: the bytes after the response, left unconsumed */
        int ret; /* 1: complete; 0: needs more; else the error */
        int status; /* when complete */
        bool eof; /* the server closes the connection after the input */
        bool keep_alive; /* when complete */
};

enum split { SPLIT_ONE, SPLIT_BYTES, SPLIT_RANDOM };

static const char *const split_names[] = { "one piece", "byte by byte", "random splits" };

/* xorshift64: the splits only need to differ, not to be unpredictable. */
static uint64_t rng_next(uint64_t *s) {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        return *s;
}

static size_t piece_size(enum split how, size_t left, uint64_t *rng) {
        uint64_t x;

        switch (how) {
        case SPLIT_ONE:
                return left;
        case SPLIT_BYTES:
                return 1;
        case SPLIT_RANDOM:
        default:
                /* Mostly short pieces, to end them inside every kind of line, now and then longer ones. */
                x = rng_next(rng);
                return MIN(left, (size_t) (1 + (x >> 8) % ((x & 3) == 0 ? 600 : 9)));
        }
}

/* Feeds a piece copied into a block of exactly its size: a read past it is an ASan report. */
static int feed_piece(struct cm_http1_response *r, const char *p, size_t n, size_t *ret_used) {
        _cleanup_free_ char *copy = malloc(n ?: 1);
        int k;

        assert_non_null(copy);
        memcpy(copy, p, n);
        k = cm_http1_response_feed(r, copy, n, ret_used);
        return k;
}

/*
 * Feeds in[0..len) to r in pieces and then, when eof, closes. Returns what the parser said last;
 * *ret_rest: the bytes it left when complete.
 */
static int feed_all(struct cm_http1_response *r, const char *in, size_t len, bool eof, enum split how,
                    uint64_t seed, size_t *ret_rest) {
        uint64_t rng = seed * UINT64_C(0x9e3779b97f4a7c15) | 1;
        size_t off = 0;

        *ret_rest = 0;
        while (off < len) {
                size_t n = piece_size(how, len - off, &rng), used = SIZE_MAX;
                int k = feed_piece(r, in + off, n, &used);

                if (k < 0)
                        return k;
                assert_true(used <= n);
                if (k == 1) {
                        *ret_rest = len - off - used;
                        return 1;
                }
                assert_int_equal(k, 0);
                assert_int_equal(used, n);
                off += n;
        }
        return eof ? cm_http1_response_eof(r) : 0;
}

/* Runs one case in one way, and checks what comes after: a complete or failed parser stays so. */
static void run_one(const struct h1_case *c, enum split how, uint64_t seed) {
        _cleanup_strbuf_ struct strbuf body = STRBUF_INIT(c->cap ?: BODY_CAP);
        const char *want_body = c->body ?: "";
        size_t want_len = c->body_len ?: strlen(want_body);
        struct cm_http1_response r;
        size_t rest, used = SIZE_MAX;
        int k;

        cm_http1_response_init(&r, &body);
        k = feed_all(&r, c->in, c->len, c->eof, how, seed, &rest);
        if (k != c->ret)
                fail_msg("case '%s' (%s, seed %" PRIu64 "): returned %d, want %d", c->name, split_names[how],
                         seed, k, c->ret);
        if (k < 0) {
                /* Failed for good, whatever comes next. */
                assert_int_equal(cm_http1_response_feed(&r, "HTTP/1.1 200 OK\r\n\r\n", 19, &used), k);
                assert_int_equal(used, SIZE_MAX);
                assert_int_equal(cm_http1_response_eof(&r), k);
                return;
        }
        if (k == 0)
                return;

        if (r.status != c->status || r.keep_alive != c->keep_alive || rest != c->rest)
                fail_msg("case '%s' (%s, seed %" PRIu64
                         "): status %d keep-alive %d rest %zu, want %d %d %zu",
                         c->name, split_names[how], seed, r.status, r.keep_alive, rest, c->status,
                         c->keep_alive, c->rest);
        if (body.len != want_len || (body.len > 0 && memcmp(body.buf, want_body, body.len) != 0))
                fail_msg("case '%s' (%s, seed %" PRIu64 "): body '%.*s', want '%s'", c->name,
                         split_names[how], seed, (int) MIN(body.len, (size_t) 200), body.buf ?: "",
                         want_body);
        assert_true(cm_http1_response_started(&r));

        /* Complete: nothing more is taken, and a close changes nothing. */
        assert_int_equal(cm_http1_response_feed(&r, "x", 1, &used), 1);
        assert_int_equal(used, 0);
        assert_int_equal(cm_http1_response_eof(&r), 1);
        assert_int_equal(body.len, want_len);
}

static void run_case(const struct h1_case *c) {
        run_one(c, SPLIT_ONE, 0);
        run_one(c, SPLIT_BYTES, 0);
        for (uint64_t seed = 1; seed <= SPLIT_SEEDS; seed++)
                run_one(c, SPLIT_RANDOM, seed);
}

static void run_cases(const struct h1_case *cases, size_t n) {
        for (size_t i = 0; i < n; i++)
                run_case(&cases[i]);
}

#define OK_200 "HTTP/1.1 200 OK\r\n"
#define CHUNKED "Transfer-Encoding: chunked\r\n"
#define NEXT "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

/* ---- status line ------------------------------------------------------------------------------- */

static void test_status_line(void **state) {
        static const struct h1_case cases[] = {
                { "content-length", IN(OK_200 "Content-Length: 5\r\n\r\nhello"), .ret = 1, .status = 200,
                  .body = "hello", .keep_alive = true },
                { "bare LF line ends", IN("HTTP/1.1 200 OK\nContent-Length: 2\n\nok"), .ret = 1,
                  .status = 200, .body = "ok", .keep_alive = true },
                { "empty reason", IN("HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n"), .ret = 1, .status = 404,
                  .keep_alive = true },
                { "no reason, no SP", IN("HTTP/1.1 503\r\nContent-Length: 0\r\n\r\n"), .ret = 1,
                  .status = 503, .keep_alive = true },
                { "reason with tabs and UTF-8",
                  IN("HTTP/1.1 599 Gr\xc3\xbc\tn  \r\nContent-Length: 0\r\n\r\n"), .ret = 1, .status = 599,
                  .keep_alive = true },
                { "lowest final status", IN("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), .ret = 1,
                  .status = 200, .keep_alive = true },
                { "HTTP/2", IN("HTTP/2 200 OK\r\n\r\n"), .ret = -EBADMSG },
                { "HTTP/1.2", IN("HTTP/1.2 200 OK\r\n\r\n"), .ret = -EBADMSG },
                { "HTTP/1.10", IN("HTTP/1.10 200 OK\r\n\r\n"), .ret = -EBADMSG },
                { "lowercase version", IN("http/1.1 200 OK\r\n\r\n"), .ret = -EBADMSG },
                { "ICY", IN("ICY 200 OK\r\n\r\n"), .ret = -EBADMSG },
                { "status 099", IN("HTTP/1.1 099 Low\r\n\r\n"), .ret = -EBADMSG },
                { "status 600", IN("HTTP/1.1 600 High\r\n\r\n"), .ret = -EBADMSG },
                { "four digits", IN("HTTP/1.1 2000 OK\r\n\r\n"), .ret = -EBADMSG },
                { "two digits", IN("HTTP/1.1 20 OK\r\n\r\n"), .ret = -EBADMSG },
                { "letter in status", IN("HTTP/1.1 20a OK\r\n\r\n"), .ret = -EBADMSG },
                { "two spaces", IN("HTTP/1.1  200 OK\r\n\r\n"), .ret = -EBADMSG },
                { "tab after status", IN("HTTP/1.1 200\tOK\r\n\r\n"), .ret = -EBADMSG },
                { "empty line first", IN("\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
                  .ret = -EBADMSG },
                { "NUL in reason", IN("HTTP/1.1 200 O\0K\r\n\r\n"), .ret = -EBADMSG },
                { "bare CR in reason", IN("HTTP/1.1 200 O\rK\r\n\r\n"), .ret = -EBADMSG },
                { "not HTTP at all", IN("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n"), .ret = -EBADMSG },
        };

        run_cases(cases, ELEMENTSOF(cases));
}

/* ---- headers ---------------------------------------------------------------------------------- */

static void test_headers(void **state) {
        static const struct h1_case cases[] = {
                { "names in any case, OWS around values",
                  IN(OK_200 "cOnTeNt-LeNgTh:3 \t\r\nX-Empty:\r\nX-Tabs:\tv\t\r\n\r\nabc"), .ret = 1,
                  .status = 200, .body = "abc", .keep_alive = true },
                { "every tchar in a name", IN(OK_200 "!#$%&'*+-.^_`|~0aZ: v\r\nContent-Length: 0\r\n\r\n"),
                  .ret = 1, .status = 200, .keep_alive = true },
                { "obs-text in a value", IN(OK_200 "X: \xff\x80\r\nContent-Length: 0\r\n\r\n"), .ret = 1,
                  .status = 200, .keep_alive = true },
                { "obs-fold", IN(OK_200 "X-A: one\r\n two\r\nContent-Length: 0\r\n\r\n"), .ret = -EBADMSG },
                { "obs-fold with a tab", IN(OK_200 "X-A: one\r\n\ttwo\r\n\r\n"), .ret = -EBADMSG },
                { "whitespace before the first header", IN(OK_200 " X-A: one\r\n\r\n"), .ret = -EBADMSG },
                { "no colon", IN(OK_200 "X-A one\r\n\r\n"), .ret = -EBADMSG },
                { "space before the colon", IN(OK_200 "Content-Length : 0\r\n\r\n"), .ret = -EBADMSG },
                { "tab before the colon", IN(OK_200 "X-A\t: 0\r\n\r\n"), .ret = -EBADMSG },
                { "empty name", IN(OK_200 ": value\r\n\r\n"), .ret = -EBADMSG },
                { "slash in a name", IN(OK_200 "X/Y: value\r\n\r\n"), .ret = -EBADMSG },
                { "DEL in a name", IN(OK_200 "X\x7f: value\r\n\r\n"), .ret = -EBADMSG },
                { "bare CR in a value", IN(OK_200 "X: a\rb\r\n\r\n"), .ret = -EBADMSG },
                { "CR CR LF", IN(OK_200 "X: a\r\r\n\r\n"), .ret = -EBADMSG },
                { "NUL in a value", IN(OK_200 "X: a\0b\r\n\r\n"), .ret = -EBADMSG },
                { "control character in a value", IN(OK_200 "X: a\x01\r\n\r\n"), .ret = -EBADMSG },
                { "bare CR ending the head", IN(OK_200 "Content-Length: 0\r\n\r"), .ret = 0 },
                { "header lines then eof", IN(OK_200 "Content-Length: 2\r\n"), .eof = true,
                  .ret = -EBADMSG },
                { "status line then eof", IN("HTTP/1.1 200 O"), .eof = true, .ret = -EBADMSG },
                { "nothing then eof", IN(""), .eof = true, .ret = -EBADMSG },
                { "nothing", IN(""), .ret = 0 },
        };

        run_cases(cases, ELEMENTSOF(cases));
}

/* ---- Content-Length -------------------------------------------------------------------------- */

static void test_content_length(void **state) {
        static const struct h1_case cases[] = {
                { "200 with Content-Length 0", IN(OK_200 "Content-Length: 0\r\n\r\n"), .ret = 1,
                  .status = 200, .keep_alive = true },
                { "leading zeros", IN(OK_200 "Content-Length: 003\r\n\r\nabc"), .ret = 1, .status = 200,
                  .body = "abc", .keep_alive = true },
                { "repeated, same value", IN(OK_200 "Content-Length: 3\r\ncontent-length: 03\r\n\r\nabc"),
                  .ret = 1, .status = 200, .body = "abc", .keep_alive = true },
                { "body with NUL and CRLF", IN(OK_200 "Content-Length: 6\r\n\r\na\0\r\n\r\n"), .ret = 1,
                  .status = 200, BODY("a\0\r\n\r\n"), .keep_alive = true },
                { "conflicting", IN(OK_200 "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
                  .ret = -EBADMSG },
                { "conflicting, second one malformed",
                  IN(OK_200 "Content-Length: 3\r\nContent-Length: x\r\n\r\n"), .ret = -EBADMSG },
                { "a list of the same value", IN(OK_200 "Content-Length: 3, 3\r\n\r\nabc"),
                  .ret = -EBADMSG },
                { "negative", IN(OK_200 "Content-Length: -1\r\n\r\n"), .ret = -EBADMSG },
                { "plus sign", IN(OK_200 "Content-Length: +3\r\n\r\nabc"), .ret = -EBADMSG },
                { "empty", IN(OK_200 "Content-Length:\r\n\r\n"), .ret = -EBADMSG },
                { "hexadecimal", IN(OK_200 "Content-Length: 0x10\r\n\r\n"), .ret = -EBADMSG },
                { "space inside", IN(OK_200 "Content-Length: 1 2\r\n\r\n"), .ret = -EBADMSG },
                { "overflowing 64 bits", IN(OK_200 "Content-Length: 18446744073709551616\r\n\r\n"),
                  .ret = -EBADMSG },
                { "many digits", IN(OK_200 "Content-Length: 99999999999999999999999999999999999999\r\n\r\n"),
                  .ret = -EBADMSG },
                { "2^40 + 1", IN(OK_200 "Content-Length: 1099511627777\r\n\r\n"), .ret = -EBADMSG },
                { "2^40 is a length, over the cap", IN(OK_200 "Content-Length: 1099511627776\r\n\r\n"),
                  .ret = -EFBIG },
                { "truncated body at eof", IN(OK_200 "Content-Length: 10\r\n\r\nabc"), .eof = true,
                  .ret = -EBADMSG },
                { "body still coming", IN(OK_200 "Content-Length: 10\r\n\r\nabc"), .ret = 0 },
                { "bytes after the body left", IN(OK_200 "Content-Length: 2\r\n\r\nok" NEXT), .ret = 1,
                  .status = 200, .body = "ok", .keep_alive = true, .rest = sizeof(NEXT) - 1 },
        };

        run_cases(cases, ELEMENTSOF(cases));
}

/* ---- chunked ----------------------------------------------------------------------------------- */

static void test_chunked(void **state) {
        static const struct h1_case cases[] = {
                { "extensions and trailers",
                  IN(OK_200 CHUNKED "\r\n5;name=value\r\nhello\r\n6 ; a ; b=\"c d\"\r\n world\r\n0;last\r\n"
                                    "X-Checksum: abc\r\nX-Other:\r\n\r\n"),
                  .ret = 1, .status = 200, .body = "hello world", .keep_alive = true },
                { "leading zeros, both cases of hex",
                  IN(OK_200 CHUNKED "\r\n00a\r\n0123456789\r\n000B\r\nabcdefghijk\r\n0000\r\n\r\n"),
                  .ret = 1, .status = 200, .body = "0123456789abcdefghijk", .keep_alive = true },
                { "bare LF everywhere", IN("HTTP/1.1 200 OK\n" CHUNKED "\n3\nabc\n1\r\nd\n0\n\n"), .ret = 1,
                  .status = 200, .body = "abcd", .keep_alive = true },
                { "chunk data holding CRLF", IN(OK_200 CHUNKED "\r\n4\r\n\r\n\r\n\r\n0\r\n\r\n"), .ret = 1,
                  .status = 200, .body = "\r\n\r\n", .keep_alive = true },
                { "empty body", IN(OK_200 CHUNKED "\r\n0\r\n\r\n"), .ret = 1, .status = 200,
                  .keep_alive = true },
                { "Transfer-Encoding in any case, with whitespace",
                  IN(OK_200 "transfer-ENCODING:  ChUnKeD \t\r\n\r\n1\r\nx\r\n0\r\n\r\n"), .ret = 1,
                  .status = 200, .body = "x", .keep_alive = true },
                { "bytes after the trailers left", IN(OK_200 CHUNKED "\r\n1\r\nx\r\n0\r\n\r\n" NEXT),
                  .ret = 1, .status = 200, .body = "x", .keep_alive = true, .rest = sizeof(NEXT) - 1 },
                { "Transfer-Encoding and Content-Length: chunked wins, connection not kept",
                  IN(OK_200 "Content-Length: 100\r\n" CHUNKED "\r\n3\r\nabc\r\n0\r\n\r\n"), .ret = 1,
                  .status = 200, .body = "abc", .keep_alive = false },
                { "a malformed Content-Length beside chunked is ignored",
                  IN(OK_200 CHUNKED
                     "Content-Length: nope\r\nContent-Length: 7\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
                  .ret = 1, .status = 200, .body = "abc", .keep_alive = false },
                { "gzip", IN(OK_200 "Transfer-Encoding: gzip\r\n\r\n"), .ret = -EBADMSG },
                { "gzip, chunked", IN(OK_200 "Transfer-Encoding: gzip, chunked\r\n\r\n"), .ret = -EBADMSG },
                { "chunked, chunked", IN(OK_200 "Transfer-Encoding: chunked, chunked\r\n\r\n"),
                  .ret = -EBADMSG },
                { "repeated header", IN(OK_200 CHUNKED CHUNKED "\r\n0\r\n\r\n"), .ret = -EBADMSG },
                { "gzip then chunked headers", IN(OK_200 "Transfer-Encoding: gzip\r\n" CHUNKED "\r\n"),
                  .ret = -EBADMSG },
                { "empty Transfer-Encoding", IN(OK_200 "Transfer-Encoding:\r\nContent-Length: 0\r\n\r\n"),
                  .ret = -EBADMSG },
                { "chunked in HTTP/1.0", IN("HTTP/1.0 200 OK\r\n" CHUNKED "\r\n0\r\n\r\n"),
                  .ret = -EBADMSG },
                { "chunk size overflowing 64 bits", IN(OK_200 CHUNKED "\r\nffffffffffffffffff\r\n"),
                  .ret = -EBADMSG },
                { "chunk size 2^40 + 1", IN(OK_200 CHUNKED "\r\n10000000001\r\n"), .ret = -EBADMSG },
                { "chunk size 2^40, over the cap", IN(OK_200 CHUNKED "\r\n10000000000\r\n"), .ret = -EFBIG },
                { "chunk size with many leading zeros",
                  IN(OK_200 CHUNKED "\r\n000000000000000000000000000000001\r\nx\r\n0\r\n\r\n"), .ret = 1,
                  .status = 200, .body = "x", .keep_alive = true },
                { "chunk size missing", IN(OK_200 CHUNKED "\r\n\r\nabc"), .ret = -EBADMSG },
                { "extension without a size", IN(OK_200 CHUNKED "\r\n;ext\r\n"), .ret = -EBADMSG },
                { "chunk size 0x5", IN(OK_200 CHUNKED "\r\n0x5\r\nhello\r\n"), .ret = -EBADMSG },
                { "chunk size -5", IN(OK_200 CHUNKED "\r\n-5\r\n"), .ret = -EBADMSG },
                { "chunk size with a space inside", IN(OK_200 CHUNKED "\r\n1 0\r\n"), .ret = -EBADMSG },
                { "chunk size with trailing space", IN(OK_200 CHUNKED "\r\n5 \r\nhello\r\n"),
                  .ret = -EBADMSG },
                { "chunk size with leading space", IN(OK_200 CHUNKED "\r\n 5\r\nhello\r\n"),
                  .ret = -EBADMSG },
                { "NUL in an extension", IN(OK_200 CHUNKED "\r\n5;a\0\r\nhello\r\n"), .ret = -EBADMSG },
                { "missing CRLF after chunk data", IN(OK_200 CHUNKED "\r\n5\r\nhello0\r\n\r\n"),
                  .ret = -EBADMSG },
                { "CR without LF after chunk data", IN(OK_200 CHUNKED "\r\n5\r\nhello\rX0\r\n\r\n"),
                  .ret = -EBADMSG },
                { "chunk data longer than its size", IN(OK_200 CHUNKED "\r\n3\r\nhello\r\n0\r\n\r\n"),
                  .ret = -EBADMSG },
                { "trailer obs-fold", IN(OK_200 CHUNKED "\r\n0\r\nX: a\r\n b\r\n\r\n"), .ret = -EBADMSG },
                { "trailer without a colon", IN(OK_200 CHUNKED "\r\n0\r\nX-A\r\n\r\n"), .ret = -EBADMSG },
                { "truncated chunk at eof", IN(OK_200 CHUNKED "\r\n5\r\nhel"), .eof = true,
                  .ret = -EBADMSG },
                { "truncated before the last chunk at eof", IN(OK_200 CHUNKED "\r\n5\r\nhello\r\n"),
                  .eof = true, .ret = -EBADMSG },
                { "truncated trailers at eof", IN(OK_200 CHUNKED "\r\n0\r\n"), .eof = true,
                  .ret = -EBADMSG },
                { "truncated after chunk data at eof", IN(OK_200 CHUNKED "\r\n1\r\nx\r"), .eof = true,
                  .ret = -EBADMSG },
        };

        run_cases(cases, ELEMENTSOF(cases));
}

/* ---- interim responses, no body, connection ---------------------------------------------------- */

static void test_interim_and_empty(void **state) {
        static const struct h1_case cases[] = {
                { "100 Continue then 200",
                  IN("HTTP/1.1 100 Continue\r\n\r\n" OK_200 "Content-Length: 2\r\n\r\nok"), .ret = 1,
                  .status = 200, .body = "ok", .keep_alive = true },
                { "102 and 103 with headers, which are dropped",
                  IN("HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; "
                     "rel=preload\r\n"
                     "Content-Length: 99\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\n" OK_200
                     "Content-Length: 2\r\n\r\nok"),
                  .ret = 1, .status = 200, .body = "ok", .keep_alive = true },
                { "an unknown 1xx is interim too",
                  IN("HTTP/1.1 199 Later\n\n" OK_200 "Content-Length: 0\r\n\r\n"), .ret = 1, .status = 200,
                  .keep_alive = true },
                { "101 Switching Protocols", IN("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"),
                  .ret = -EBADMSG },
                { "1xx with a malformed header", IN("HTTP/1.1 103 Early Hints\r\nLink <x>\r\n\r\n"),
                  .ret = -EBADMSG },
                { "1xx then eof", IN("HTTP/1.1 100 Continue\r\n\r\n"), .eof = true, .ret = -EBADMSG },
                { "204 with no body, kept, next response left",
                  IN("HTTP/1.1 204 No Content\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n" NEXT),
                  .ret = 1, .status = 204, .keep_alive = true, .rest = sizeof(NEXT) - 1 },
                { "304 with a Content-Length has no body",
                  IN("HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n"), .ret = 1, .status = 304,
                  .keep_alive = true },
                { "204 then eof", IN("HTTP/1.1 204 No Content\r\n\r\n"), .eof = true, .ret = 1,
                  .status = 204, .keep_alive = true },
                { "Connection: close", IN(OK_200 "Connection: close\r\nContent-Length: 2\r\n\r\nok"),
                  .ret = 1, .status = 200, .body = "ok", .keep_alive = false },
                { "close in a list, any case",
                  IN(OK_200 "Connection: keep-alive, Upgrade ,, CLOSE\r\nContent-Length: 0\r\n\r\n"),
                  .ret = 1, .status = 200, .keep_alive = false },
                { "close in a second Connection header",
                  IN(OK_200 "Connection: foo\r\nconnection:\tclose\t\r\nContent-Length: 0\r\n\r\n"),
                  .ret = 1, .status = 200, .keep_alive = false },
                { "closed is not close",
                  IN(OK_200 "Connection: closed, xclose\r\nContent-Length: 0\r\n\r\n"), .ret = 1,
                  .status = 200, .keep_alive = true },
                { "HTTP/1.0 closes by default", IN("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"),
                  .ret = 1, .status = 200, .body = "ok", .keep_alive = false },
                { "HTTP/1.0 with keep-alive",
                  IN("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok"), .ret = 1,
                  .status = 200, .body = "ok", .keep_alive = true },
                { "HTTP/1.0 with keep-alive and close",
                  IN("HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n"),
                  .ret = 1, .status = 200, .keep_alive = false },
                { "read until close, completed by eof",
                  IN(OK_200 "Content-Type: text/plain\r\n\r\nuntil\r\nthe end"), .eof = true, .ret = 1,
                  .status = 200, .body = "until\r\nthe end", .keep_alive = false },
                { "read until close, HTTP/1.0 keep-alive",
                  IN("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\nbody"), .eof = true, .ret = 1,
                  .status = 200, .body = "body", .keep_alive = false },
                { "read until close, empty", IN(OK_200 "\r\n"), .eof = true, .ret = 1, .status = 200,
                  .keep_alive = false },
                { "read until close, not closed yet", IN(OK_200 "\r\nbody"), .ret = 0 },
        };

        run_cases(cases, ELEMENTSOF(cases));
}

/* ---- the body's cap ----------------------------------------------------------------------------- */

static void test_body_cap(void **state) {
        static const struct h1_case cases[] = {
                { "Content-Length at the cap", IN(OK_200 "Content-Length: 16\r\n\r\n0123456789abcdef"),
                  .cap = 16, .ret = 1, .status = 200, .body = "0123456789abcdef", .keep_alive = true },
                { "Content-Length over the cap", IN(OK_200 "Content-Length: 17\r\n\r\n0123456789abcdefg"),
                  .cap = 16, .ret = -EFBIG },
                { "chunks at the cap", IN(OK_200 CHUNKED "\r\n8\r\n01234567\r\n8\r\n89abcdef\r\n0\r\n\r\n"),
                  .cap = 16, .ret = 1, .status = 200, .body = "0123456789abcdef", .keep_alive = true },
                { "chunks over the cap",
                  IN(OK_200 CHUNKED "\r\n8\r\n01234567\r\n9\r\n89abcdefg\r\n0\r\n\r\n"), .cap = 16,
                  .ret = -EFBIG },
                { "until close at the cap", IN(OK_200 "\r\n0123456789abcdef"), .cap = 16, .eof = true,
                  .ret = 1, .status = 200, .body = "0123456789abcdef", .keep_alive = false },
                { "until close over the cap", IN(OK_200 "\r\n0123456789abcdefg"), .cap = 16, .eof = true,
                  .ret = -EFBIG },
                { "304 with a Content-Length over the cap",
                  IN("HTTP/1.1 304 Not Modified\r\nContent-Length: 17\r\n\r\n"), .cap = 16, .ret = 1,
                  .status = 304, .keep_alive = true },
        };

        run_cases(cases, ELEMENTSOF(cases));
}

/* A body buffer that already holds something: the cap bounds what it holds in all. */
static void test_body_appended(void **state) {
        _cleanup_strbuf_ struct strbuf body = STRBUF_INIT(8);
        static const char in[] = OK_200 "Content-Length: 5\r\n\r\nhello";
        struct cm_http1_response r;
        size_t used;

        assert_int_equal(strbuf_addl(&body, "abc"), 0);
        cm_http1_response_init(&r, &body);
        assert_int_equal(cm_http1_response_feed(&r, in, sizeof(in) - 1, &used), 1);
        assert_int_equal(used, sizeof(in) - 1);
        assert_string_equal(body.buf, "abchello");

        strbuf_reset(&body);
        assert_int_equal(strbuf_addl(&body, "abcd"), 0);
        cm_http1_response_init(&r, &body);
        assert_int_equal(cm_http1_response_feed(&r, in, sizeof(in) - 1, &used), -EFBIG);
        assert_string_equal(body.buf, "abcd");
}

/* ---- bounds of the head --------------------------------------------------------------------------- */

/* Appends header lines "X-Pad: aaa...\r\n" of total bytes n (n >= 9). */
static void add_padding(struct strbuf *sb, size_t n) {
        while (n > 0) {
                size_t k = n >= 4000 + 9 + 9 ? 4000 : n - 9;

                assert_int_equal(strbuf_addl(sb, "X-Pad: "), 0);
                for (size_t i = 0; i < k; i++)
                        assert_int_equal(strbuf_addch(sb, 'a'), 0);
                assert_int_equal(strbuf_addl(sb, "\r\n"), 0);
                n -= k + 9;
        }
}

static void run_built(const char *name, const struct strbuf *in, int ret, const char *body, size_t cap) {
        struct h1_case c = { .name = name,
                             .in = in->buf,
                             .len = in->len,
                             .cap = cap,
                             .ret = ret,
                             .status = 200,
                             .body = body,
                             .keep_alive = true };

        run_case(&c);
}

/* The head is at most 64 KiB, its line ends counted, interim responses too. */
static void test_head_limit(void **state) {
        static const char status[] = OK_200 "Content-Length: 2\r\n";

        for (size_t total = CM_HTTP1_HEAD_MAX - 1; total <= CM_HTTP1_HEAD_MAX + 1; total++) {
                _cleanup_strbuf_ struct strbuf in = STRBUF_INIT(2 * CM_HTTP1_HEAD_MAX);

                assert_int_equal(strbuf_addl(&in, OK_200 "Content-Length: 2\r\n"), 0);
                add_padding(&in, total - (sizeof(status) - 1) - 2);
                assert_int_equal(strbuf_addl(&in, "\r\nok"), 0);
                assert_int_equal(in.len, total + 2);
                run_built("head at the limit", &in, total <= CM_HTTP1_HEAD_MAX ? 1 : -EBADMSG, "ok", 0);
        }

        /* Interim responses count: 100 Continue sent for ever is refused. */
        {
                _cleanup_strbuf_ struct strbuf in = STRBUF_INIT(2 * CM_HTTP1_HEAD_MAX);

                while (in.len <= CM_HTTP1_HEAD_MAX)
                        assert_int_equal(strbuf_addl(&in, "HTTP/1.1 100 Continue\r\n\r\n"), 0);
                assert_int_equal(strbuf_addl(&in, OK_200 "Content-Length: 2\r\n\r\nok"), 0);
                run_built("endless 100 Continue", &in, -EBADMSG, NULL, 0);
        }

        /* Trailers are bounded alike, on their own. */
        for (size_t total = CM_HTTP1_HEAD_MAX; total <= CM_HTTP1_HEAD_MAX + 1; total++) {
                _cleanup_strbuf_ struct strbuf in = STRBUF_INIT(4 * CM_HTTP1_HEAD_MAX);

                assert_int_equal(strbuf_addl(&in, OK_200 CHUNKED), 0);
                add_padding(&in, CM_HTTP1_HEAD_MAX - in.len - 2);
                assert_int_equal(strbuf_addl(&in, "\r\n2\r\nok\r\n0\r\n"), 0);
                add_padding(&in, total - 2);
                assert_int_equal(strbuf_addl(&in, "\r\n"), 0);
                run_built("trailers at the limit", &in, total <= CM_HTTP1_HEAD_MAX ? 1 : -EBADMSG, "ok", 0);
        }
}

/* A line is at most 8 KiB without its line end: a header, a chunk-size line. */
static void test_line_limit(void **state) {
        for (size_t n = CM_HTTP1_LINE_MAX - 1; n <= CM_HTTP1_LINE_MAX + 1; n++) {
                int want = n <= CM_HTTP1_LINE_MAX ? 1 : -EBADMSG;

                for (int crlf = 0; crlf < 2; crlf++) {
                        _cleanup_strbuf_ struct strbuf in = STRBUF_INIT(4 * CM_HTTP1_LINE_MAX);
                        const char *end = crlf ? "\r\n" : "\n";

                        assert_int_equal(strbuf_addl(&in, OK_200 "X-Long: "), 0);
                        while (in.len < (sizeof(OK_200) - 1) + n)
                                assert_int_equal(strbuf_addch(&in, 'v'), 0);
                        assert_int_equal(strbuf_adds(&in, end), 0);
                        assert_int_equal(strbuf_addl(&in, "Content-Length: 2\r\n\r\nok"), 0);
                        run_built("header line at the limit", &in, want, "ok", 0);

                        strbuf_reset(&in);
                        assert_int_equal(strbuf_addl(&in, OK_200 CHUNKED "\r\n2;x="), 0);
                        while (in.len < (sizeof(OK_200 CHUNKED "\r\n") - 1) + n)
                                assert_int_equal(strbuf_addch(&in, 'e'), 0);
                        assert_int_equal(strbuf_adds(&in, end), 0);
                        assert_int_equal(strbuf_addl(&in, "ok\r\n0\r\n\r\n"), 0);
                        run_built("chunk-size line at the limit", &in, want, "ok", 0);
                }
        }
}

/* ---- around one response ------------------------------------------------------------------------ */

/* Two responses back to back on a kept connection: each parser takes its own bytes. */
static void test_pipelined(void **state) {
        static const char in[] = "HTTP/1.1 100 Continue\r\n\r\n" OK_200 CHUNKED "\r\n3\r\none\r\n0\r\n\r\n"
                                 "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\ntwo"
                                 "HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\nthree";
        static const int statuses[] = { 200, 404, 500 };
        static const char *const bodies[] = { "one", "two", "three" };
        size_t off = 0, used;

        for (size_t i = 0; i < ELEMENTSOF(statuses); i++) {
                _cleanup_strbuf_ struct strbuf body = STRBUF_INIT(64);
                struct cm_http1_response r;
                int k;

                cm_http1_response_init(&r, &body);
                k = cm_http1_response_feed(&r, in + off, sizeof(in) - 1 - off, &used);
                if (i < 2) {
                        assert_int_equal(k, 1);
                        assert_true(r.keep_alive);
                } else {
                        assert_int_equal(k, 0);
                        assert_int_equal(used, sizeof(in) - 1 - off);
                        assert_int_equal(cm_http1_response_eof(&r), 1);
                        assert_false(r.keep_alive);
                }
                assert_int_equal(r.status, statuses[i]);
                assert_string_equal(body.buf, bodies[i]);
                off += used;
        }
        assert_int_equal(off, sizeof(in) - 1);
}

static void test_started(void **state) {
        _cleanup_strbuf_ struct strbuf body = STRBUF_INIT(64);
        struct cm_http1_response r;
        size_t used = SIZE_MAX;

        /* Nothing received: a kept connection the server had closed; worth a retry. */
        cm_http1_response_init(&r, &body);
        assert_int_equal(cm_http1_response_feed(&r, NULL, 0, &used), 0);
        assert_int_equal(used, 0);
        assert_false(cm_http1_response_started(&r));
        assert_int_equal(cm_http1_response_eof(&r), -EBADMSG);
        assert_false(cm_http1_response_started(&r));

        cm_http1_response_init(&r, &body);
        assert_int_equal(cm_http1_response_feed(&r, "H", 1, &used), 0);
        assert_true(cm_http1_response_started(&r));
        assert_int_equal(cm_http1_response_eof(&r), -EBADMSG);
        assert_int_equal(cm_http1_response_feed(&r, "TTP/1.1 200 OK\r\n\r\n", 18, &used), -EBADMSG);

        cm_http1_response_init(&r, &body);
        assert_int_equal(cm_http1_response_feed(&r, NULL, 1, &used), -EINVAL);

        /* An interim response is not the answer: status goes back to 0 until the final one. */
        cm_http1_response_init(&r, &body);
        assert_int_equal(cm_http1_response_feed(&r, "HTTP/1.1 103 Early Hints\r\n", 26, &used), 0);
        assert_int_equal(r.status, 103);
        assert_int_equal(cm_http1_response_feed(&r, "\r\n", 2, &used), 0);
        assert_int_equal(r.status, 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_status_line),       cmocka_unit_test(test_headers),
                cmocka_unit_test(test_content_length),    cmocka_unit_test(test_chunked),
                cmocka_unit_test(test_interim_and_empty), cmocka_unit_test(test_body_cap),
                cmocka_unit_test(test_body_appended),     cmocka_unit_test(test_head_limit),
                cmocka_unit_test(test_line_limit),        cmocka_unit_test(test_pipelined),
                cmocka_unit_test(test_started),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
