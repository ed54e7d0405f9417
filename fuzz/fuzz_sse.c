/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The server-sent event parser of `clustermgmt events`: the stream (after the first byte) is parsed at
 * once and again in pieces whose sizes come from the first byte; both must report the same events (a
 * hash of each event's type, id and data), the same last event id and the same result, and every event
 * must respect the parser's limits.
 */
#include "base/common.h"

#include "cli/sse.h"

#define INPUT_MAX (256U * 1024U)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct outcome {
        uint64_t hash;
        size_t n_events;
};

static void hash_add(uint64_t *h, const void *p, size_t n) {
        const unsigned char *b = p;

        for (size_t i = 0; i < n; i++) {
                *h ^= b[i];
                *h *= UINT64_C(0x100000001b3);
        }
        *h ^= 0xff; /* a field separator that no byte sequence can imitate */
        *h *= UINT64_C(0x100000001b3);
}

static int on_event(const struct cm_sse_event *ev, void *userdata) {
        struct outcome *o = userdata;
        size_t type_len = strlen(ev->type);

        if (type_len == 0 || type_len > CM_SSE_LINE_MAX || strlen(ev->id) > CM_SSE_LINE_MAX ||
            ev->data_len > CM_SSE_EVENT_MAX || ev->data[ev->data_len] != 0)
                __builtin_trap();
        hash_add(&o->hash, ev->type, type_len);
        hash_add(&o->hash, ev->id, strlen(ev->id));
        hash_add(&o->hash, ev->data, ev->data_len);
        o->n_events++;
        return 0;
}

/* Parses the stream in pieces of `piece` bytes (0: varying sizes from seed); returns the result. */
static int parse(const uint8_t *s, size_t n, size_t piece, unsigned seed, struct outcome *o,
                 char **ret_last_id) {
        struct cm_sse_parser p;
        size_t off = 0;
        int r = 0;

        *o = (struct outcome){ .hash = UINT64_C(0xcbf29ce484222325) };
        cm_sse_parser_init(&p, on_event, o);
        while (off < n && r >= 0) {
                size_t k = piece;

                if (k == 0) {
                        seed = seed * 1103515245U + 12345U;
                        k = (seed >> 16) % 23U; /* 0..22: empty pieces too */
                }
                k = MIN(k, n - off);
                r = cm_sse_parser_feed(&p, s + off, k);
                off += k;
        }
        *ret_last_id = strdup(cm_sse_parser_last_id(&p));
        cm_sse_parser_done(&p);
        return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct outcome whole, pieces;
        char *id_whole = NULL, *id_pieces = NULL;
        int r_whole, r_pieces;

        if (size < 1 || size > INPUT_MAX)
                return 0;
        r_whole = parse(data + 1, size - 1, SIZE_MAX, 0, &whole, &id_whole);
        r_pieces = parse(data + 1, size - 1, 0, data[0], &pieces, &id_pieces);
        if (r_whole == -ENOMEM || r_pieces == -ENOMEM || !id_whole || !id_pieces)
                goto out;
        if (r_whole != 0 && r_whole != -EMSGSIZE && r_whole != -EFBIG)
                __builtin_trap();
        if (r_whole != r_pieces || whole.n_events != pieces.n_events || whole.hash != pieces.hash ||
            !streq(id_whole, id_pieces))
                __builtin_trap();
out:
        free(id_whole);
        free(id_pieces);
        return 0;
}
