/* SPDX-License-Identifier: Apache-2.0 */
/* Cluster documents as the API receives them: strict JSON decoding and spec validation. */
#include "base/common.h"

#include "api/documents.h"
#include "base/strbuf.h"
#include "engine/engine.h"
#include "support/test_engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static bool registered;
        struct cm_cluster_doc doc = {};
        struct cm_problem p;
        struct strbuf out = STRBUF_INIT(1 << 20);

        if (!registered) {
                cm_test_engine_register();
                registered = true;
        }
        for (int mode = 0; mode < 2; mode++) {
                cm_problem_init(&p);
                if (cm_cluster_doc_decode((const char *) data, size, (enum cm_cluster_doc_mode) mode, &doc,
                                          &p) >= 0) {
                        /* Accepted documents carry a spec that re-parses. */
                        if (!doc.spec_json || !doc.engine)
                                __builtin_trap();
                        cm_cluster_doc_done(&doc);
                } else if (p.status != 0) {
                        /* Every refusal is a client error with a problem document. */
                        if (p.status < 400 || p.status >= 500)
                                __builtin_trap();
                        if (cm_problem_encode(&p, "/fuzz", &out) < 0)
                                __builtin_trap();
                        strbuf_reset(&out);
                }
                cm_problem_done(&p);
        }
        strbuf_release(&out);
        return 0;
}
