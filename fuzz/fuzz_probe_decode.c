/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The answers of a cluster's API server to a probe. The first byte picks the decoder (/readyz?verbose,
 * /version, a page of nodes, a list of Deployments, DaemonSets or StatefulSets); the rest is the body.
 * Whatever comes in, the texts stay terminated, valid UTF-8 without controls, and a refused answer
 * leaves the probe's result as it was.
 */
#include "base/common.h"

#include "monitor/health.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool text_ok(const char *t, size_t size) {
        const unsigned char *s = (const unsigned char *) t;
        size_t n = strnlen(t, size);

        if (n >= size)
                return false;
        for (size_t i = 0; i < n;) {
                size_t k = s[i] < 0x80 ? 1 : s[i] >= 0xf0 ? 4 : s[i] >= 0xe0 ? 3 : s[i] >= 0xc2 ? 2 : 0;
                uint32_t cp;

                if (k == 0 || s[i] > 0xf4 || i + k > n)
                        return false;
                cp = k == 1 ? s[i] : s[i] & (0x7fU >> k);
                for (size_t j = 1; j < k; j++) {
                        if ((s[i + j] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (s[i + j] & 0x3fU);
                }
                if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || (cp >= 0xd800 && cp <= 0xdfff) ||
                    cp > 0x10ffff || (k == 3 && cp < 0x800) || (k == 4 && cp < 0x10000))
                        return false;
                i += k;
        }
        return true;
}

/* What the decoders write, field by field (the struct has padding). */
static bool same(const struct cm_probe_result *a, const struct cm_probe_result *b) {
        return a->nodes_known == b->nodes_known && a->nodes_total == b->nodes_total &&
               a->nodes_ready == b->nodes_ready && streq(a->nodes_not_ready, b->nodes_not_ready) &&
               streq(a->nodes_pressure, b->nodes_pressure) && a->workloads_known == b->workloads_known &&
               a->workloads_total == b->workloads_total &&
               a->workloads_unavailable == b->workloads_unavailable &&
               streq(a->workloads_not_available, b->workloads_not_available);
}

static void check_result(const struct cm_probe_result *r) {
        if (!text_ok(r->nodes_not_ready, sizeof(r->nodes_not_ready)) ||
            !text_ok(r->nodes_pressure, sizeof(r->nodes_pressure)) ||
            !text_ok(r->workloads_not_available, sizeof(r->workloads_not_available)))
                __builtin_trap();
        if (r->nodes_ready > r->nodes_total || r->workloads_unavailable > r->workloads_total)
                __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct cm_probe_result r = {}, before;
        const char *body = (const char *) data + 1;
        char text[CM_PROBE_TEXT_MAX], cont[128];
        size_t len;
        int ret;

        if (size < 1)
                return 0;
        len = size - 1;
        memset(text, 0x5a, sizeof(text));
        switch (data[0] % 6) {
        case 0:
                ret = cm_probe_decode_readyz(body, len, text, sizeof(text));
                if (ret >= 0 && !text_ok(text, sizeof(text)))
                        __builtin_trap();
                if (ret == 0 && text[0] != 0)
                        __builtin_trap();
                break;
        case 1:
                ret = cm_probe_decode_version(body, len, r.version, sizeof(r.version));
                if (ret == 0 && (!text_ok(r.version, sizeof(r.version)) || r.version[0] == 0))
                        __builtin_trap();
                break;
        case 2:
                /* Two pages of the same: the lists keep their caps as they grow. */
                for (int page = 0; page < 2; page++) {
                        before = r;
                        ret = cm_probe_decode_nodes(body, len, &r, cont, sizeof(cont));
                        if (ret < 0 && !same(&r, &before))
                                __builtin_trap();
                        if (ret == 0 && (!r.nodes_known || !text_ok(cont, sizeof(cont))))
                                __builtin_trap();
                        check_result(&r);
                }
                break;
        default: {
                enum cm_workload_kind k = (enum cm_workload_kind)(data[0] % 6 - 3);

                for (int page = 0; page < 2; page++) {
                        before = r;
                        ret = cm_probe_decode_workloads(k, body, len, &r);
                        if (ret < 0 && !same(&r, &before))
                                __builtin_trap();
                        if (ret == 0 && !r.workloads_known)
                                __builtin_trap();
                        check_result(&r);
                }
                break;
        }
        }
        return 0;
}
