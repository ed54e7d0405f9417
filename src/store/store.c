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

/* The record staged by this thread; NULL when none (or once it was committed). */
static _Thread_local struct cm_audit_record *staged_audit;

struct cm_audit_record *cm_store_audit_stage(struct cm_audit_record *a) {
        struct cm_audit_record *old = staged_audit;

        staged_audit = a;
        return old;
}

struct cm_audit_record *cm_store_audit_staged(void) {
        return staged_audit && staged_audit->seq == 0 ? staged_audit : NULL;
}

void cm_store_audit_committed(struct cm_audit_record *a, int64_t seq, const char *hash) {
        if (!a)
                return;
        a->seq = seq;
        free(a->hash);
        a->hash = strdup(hash);
}
