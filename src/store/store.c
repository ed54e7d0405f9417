/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "store/store.h"

static const struct cm_store_ops *const store_backends[] = {
        &cm_store_sqlite_ops,
};

int cm_store_open(const char *url, struct cm_store **ret) {
        const char *colon = strchr(url, ':');
        size_t sl = colon ? (size_t) (colon - url) : 0;

        for (size_t i = 0; i < ELEMENTSOF(store_backends); i++) {
                const struct cm_store_ops *o = store_backends[i];
                if (sl == strlen(o->scheme) && strneq(url, o->scheme, sl))
                        return o->open(url, ret);
        }
        /* A URL with a scheme nobody handles is an error; a plain path is a SQLite file. */
        if (colon && colon[1] == '/' && colon[2] == '/')
                return -EPROTONOSUPPORT;
        return cm_store_sqlite_ops.open(url, ret);
}

struct cm_store *cm_store_close(struct cm_store *s) {
        if (s)
                s->ops->close(s);
        return NULL;
}
