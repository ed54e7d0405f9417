/* SPDX-License-Identifier: Apache-2.0 */
/* Environment documents: strict JSON decoding, names and labels. */
#include "base/common.h"

#include "api/documents.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct cm_env_doc doc = {};
        struct cm_problem p;

        cm_problem_init(&p);
        if (cm_env_doc_decode((const char *) data, size, &doc, &p) >= 0)
                cm_env_doc_done(&doc);
        else if (p.status != 0 && (p.status < 400 || p.status >= 500))
                __builtin_trap();
        cm_problem_done(&p);
        return 0;
}
