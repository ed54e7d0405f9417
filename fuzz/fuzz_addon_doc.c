/* SPDX-License-Identifier: Apache-2.0 */
/* Add-on documents from the API: definitions (their manifests and chart references) and installations. */
#include "base/common.h"

#include "addons/definition.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_problem(const struct cm_problem *p) {
        /* A refusal is the client's: 4xx, never a server error. */
        if (p->status != 0 && (p->status < 400 || p->status >= 500))
                __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *body = (const char *) data + 1;
        struct cm_addon_doc doc = {};
        struct cm_problem p;
        char *addon = NULL, *values = NULL;

        if (size == 0)
                return 0;
        size--;
        cm_problem_init(&p);
        switch (data[0] % 3) {
        case 0:
        case 1:
                /* Create, or replace under the name "demo" in the path. */
                if (cm_addon_doc_decode(body, size, data[0] % 3 ? CM_ADDON_DOC_REPLACE : CM_ADDON_DOC_CREATE,
                                        data[0] % 3 ? "demo" : NULL, &doc, &p) >= 0) {
                        /* What is stored is a canonical JSON document with a valid name. */
                        if (!doc.name || !cm_addon_name_valid(doc.name) || !doc.doc_json || !doc.version)
                                __builtin_trap();
                        cm_addon_doc_done(&doc);
                } else
                        check_problem(&p);
                break;
        default:
                if (cm_addon_install_doc_decode(body, size, NULL, &addon, &values, &p) >= 0) {
                        if (!addon || !values || values[0] != '{')
                                __builtin_trap();
                        free(addon);
                        free(values);
                } else
                        check_problem(&p);
                break;
        }
        cm_problem_done(&p);
        return 0;
}
