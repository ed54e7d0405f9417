/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <jansson.h>

#include "base/strbuf.h"
#include "cli/yaml.h"

/*
 * The YAML/JSON document reader of the CLI (`-f spec.yaml`). Any input must be either rejected with a
 * message or converted; what is converted must survive JSON → YAML → JSON unchanged (the `-o yaml`
 * writer quotes every string that would read back as something else).
 */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct strbuf yaml = STRBUF_INIT(4 * CM_DOCUMENT_MAX);
        struct cm_doc_error err = {};
        json_t *v = NULL, *back = NULL;
        int r;

        if (size > CM_DOCUMENT_MAX + 1)
                return 0;
        r = cm_document_parse((const char *) data, size, &v, &err);
        if (r < 0) {
                /* Every rejection says why. */
                if (r != -ENOMEM && err.message[0] == 0)
                        abort();
                return 0;
        }

        r = cm_json_to_yaml(v, &yaml);
        if (r < 0 && r != -ENOBUFS && r != -ENOMEM)
                abort();
        if (r == 0 && yaml.len <= CM_DOCUMENT_MAX) {
                r = cm_yaml_to_json(yaml.buf, yaml.len, &back, &err);
                if (r == -ENOMEM)
                        goto out;
                if (r < 0) {
                        fprintf(stderr, "written YAML does not read back: %s (line %u, column %u)\n%s\n",
                                err.message, err.line, err.column, yaml.buf);
                        abort();
                }
                if (!json_equal(v, back)) {
                        fprintf(stderr, "written YAML reads back differently:\n%s\n", yaml.buf);
                        abort();
                }
        }
out:
        json_decref(back);
        json_decref(v);
        strbuf_release(&yaml);
        return 0;
}
