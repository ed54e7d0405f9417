/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "base/strbuf.h"
#include "engine/engine.h"
#include "engine/local/local.h"
#include "engine/rke/rke.h"

/* Filled at start-up before threads exist, read-only afterwards: no lock needed. */
static const struct cm_engine_ops *engines[16];
static size_t n_engines;

int cm_engine_register(const struct cm_engine_ops *ops) {
        if (cm_engine_find(ops->name))
                return -EEXIST;
        if (n_engines >= ELEMENTSOF(engines))
                return -E2BIG;
        engines[n_engines++] = ops;
        return 0;
}

const struct cm_engine_ops *cm_engine_find(const char *name) {
        if (!name)
                return NULL;
        for (size_t i = 0; i < n_engines; i++)
                if (streq(engines[i]->name, name))
                        return engines[i];
        return NULL;
}

size_t cm_engine_count(void) {
        return n_engines;
}

void cm_engine_names(char *buf, size_t size) {
        struct strbuf sb = STRBUF_INIT(size > 0 ? size - 1 : 0);

        for (size_t i = 0; i < n_engines; i++)
                if ((i > 0 && strbuf_adds(&sb, ", ") < 0) || strbuf_adds(&sb, engines[i]->name) < 0)
                        break;
        (void) cm_strlcpy(buf, sb.buf ?: "", size);
        strbuf_release(&sb);
}

void cm_engines_register_builtin(void) {
        /* Product engines. */
        (void) cm_engine_register(&cm_engine_local_ops);
        (void) cm_engine_register(&cm_engine_rke_ops);
}

cm_engine_step_fn cm_engine_step(const struct cm_engine_ops *e, enum cm_op_type t) {
        switch (t) {
        case CM_OP_CREATE:
        case CM_OP_UPDATE:
                return e->apply;
        case CM_OP_DELETE:
                return e->destroy;
        case CM_OP_SNAPSHOT:
                return e->snapshot;
        case CM_OP_RESTORE:
                return e->restore;
        case CM_OP_ROTATE_CERTS:
                return e->rotate_certificates;
        case _CM_OP_TYPE_MAX:
                break;
        }
        return NULL;
}
