/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The monitor's HTTP/1.1 response parser. The first byte picks how the rest is cut into pieces (low five
 * bits: 0 one piece, 1 byte by byte, n pieces of 1..n bytes) and the body's cap (high three bits); the
 * rest is what a server sent before it closed the connection. Each piece is fed from a block of its own
 * size, so a read past it is an ASan report. Whatever comes in: the body stays within its cap, a
 * complete response is in 200..599 and has no body when it is 204 or 304, and the outcome (the error,
 * or the status, keep-alive, body and bytes used) is the one a single piece gives, and the one the
 * response's own bytes give alone.
 */
#include "base/common.h"

#include "base/strbuf.h"
#include "monitor/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Picked by the first byte's high bits; printable seeds land on the first four. */
static const size_t caps[] = { 1U << 20, 16, 1U << 20, 64, 0, 1, 255, 1U << 16 };

struct outcome {
        int ret;
        size_t used; /* of the input, when complete */
        bool by_eof; /* completed by the close */
        int status;
        bool keep_alive;
};

static uint32_t rng_next(uint32_t *s) {
        *s ^= *s << 13;
        *s ^= *s >> 17;
        *s ^= *s << 5;
        return *s;
}

static int feed_piece(struct cm_http1_response *r, const char *p, size_t n, size_t *ret_used) {
        _cleanup_free_ char *copy = malloc(n ?: 1);

        if (!copy)
                __builtin_trap();
        memcpy(copy, p, n);
        return cm_http1_response_feed(r, copy, n, ret_used);
}

/* Parses in[0..len) into body, cut as split says, then closes. */
static struct outcome parse(const char *in, size_t len, struct strbuf *body, unsigned split, uint32_t seed) {
        struct cm_http1_response r;
        struct outcome o = {};
        uint32_t rng = seed | 1;
        size_t off = 0, used;
        int k = 0;

        cm_http1_response_init(&r, body);
        while (off < len) {
                size_t n = split == 0 ? len - off : split == 1 ? 1 : 1 + rng_next(&rng) % split;

                n = MIN(n, len - off);
                used = SIZE_MAX;
                k = feed_piece(&r, in + off, n, &used);
                if (body->len > body->cap)
                        __builtin_trap();
                if (k < 0)
                        break;
                if (k == 1) {
                        if (used > n)
                                __builtin_trap();
                        o.used = off + used;
                        break;
                }
                if (k != 0 || used != n)
                        __builtin_trap();
                off += n;
        }
        if (k == 0) {
                k = cm_http1_response_eof(&r);
                o.by_eof = k == 1;
                o.used = len;
        }
        o.ret = k;
        if (k < 0) {
                /* Failed for good. */
                if (cm_http1_response_feed(&r, "HTTP/1.1 200 OK\r\n\r\n", 19, &used) != k ||
                    cm_http1_response_eof(&r) != k)
                        __builtin_trap();
                return o;
        }
        if (k != 1)
                __builtin_trap();
        o.status = r.status;
        o.keep_alive = r.keep_alive;
        if (r.status < 200 || r.status > 599 || (o.by_eof && r.keep_alive) ||
            ((r.status == 204 || r.status == 304) && body->len > 0))
                __builtin_trap();
        /* Complete for good: nothing more is taken. */
        used = SIZE_MAX;
        if (cm_http1_response_feed(&r, "x", 1, &used) != 1 || used != 0 || cm_http1_response_eof(&r) != 1)
                __builtin_trap();
        return o;
}

static bool same(const struct outcome *a, const struct strbuf *ab, const struct outcome *b,
                 const struct strbuf *bb) {
        if (a->ret != b->ret)
                return false;
        if (a->ret < 0)
                return true;
        return a->used == b->used && a->by_eof == b->by_eof && a->status == b->status &&
               a->keep_alive == b->keep_alive && ab->len == bb->len &&
               (ab->len == 0 || memcmp(ab->buf, bb->buf, ab->len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_strbuf_ struct strbuf one = STRBUF_INIT(0), cut = STRBUF_INIT(0), own = STRBUF_INIT(0);
        const char *in = (const char *) data + 1;
        struct outcome a, b, c;
        unsigned split;
        size_t cap, len;

        if (size < 1)
                return 0;
        split = data[0] & 31U;
        cap = caps[data[0] >> 5];
        len = size - 1;
        strbuf_init(&one, cap);
        strbuf_init(&cut, cap);
        strbuf_init(&own, cap);

        a = parse(in, len, &one, 0, 0);
        b = parse(in, len, &cut, split, data[0]);
        if (!same(&a, &one, &b, &cut))
                __builtin_trap();

        /* A response that ended before the close is all in its own bytes: what follows changes nothing. */
        if (a.ret == 1 && !a.by_eof) {
                c = parse(in, a.used, &own, split, data[0] ^ 0x5a5aU);
                if (!same(&a, &one, &c, &own))
                        __builtin_trap();
        }
        return 0;
}
