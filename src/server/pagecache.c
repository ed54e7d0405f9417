/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "server/pagecache.h"

void cm_page_cache_init(struct cm_page_cache *c) {
        memset(c, 0, sizeof(*c));
        pthread_mutex_init(&c->lock, NULL);
}

void cm_page_cache_done(struct cm_page_cache *c) {
        for (size_t i = 0; i < CM_PAGE_CACHE_ENTRIES; i++)
                free(c->entries[i].data);
        pthread_mutex_destroy(&c->lock);
}

int cm_page_cache_get(struct cm_page_cache *c, const char *key, int64_t version, struct strbuf *out) {
        int r = -ENOENT;

        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < CM_PAGE_CACHE_ENTRIES; i++) {
                if (!c->entries[i].data || c->entries[i].version != version ||
                    !streq(c->entries[i].key, key))
                        continue;
                r = strbuf_add(out, c->entries[i].data, c->entries[i].len);
                c->entries[i].used = ++c->clock;
                break;
        }
        pthread_mutex_unlock(&c->lock);
        return r;
}

void cm_page_cache_put(struct cm_page_cache *c, const char *key, int64_t version, const char *data,
                       size_t n) {
        size_t victim = 0;
        char *copy;

        if (n > CM_PAGE_CACHE_ENTRY_MAX || strlen(key) >= CM_PAGE_CACHE_KEY_MAX)
                return;
        copy = malloc(n ?: 1);
        if (!copy)
                return;
        memcpy(copy, data, n);

        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < CM_PAGE_CACHE_ENTRIES; i++) {
                /* The same page (any version) is replaced; else an empty slot; else the least recent. */
                if (c->entries[i].data && streq(c->entries[i].key, key)) {
                        victim = i;
                        break;
                }
                if (!c->entries[i].data) {
                        if (c->entries[victim].data)
                                victim = i;
                } else if (c->entries[victim].data && c->entries[i].used < c->entries[victim].used)
                        victim = i;
        }
        free(c->entries[victim].data);
        (void) cm_strlcpy(c->entries[victim].key, key, sizeof(c->entries[victim].key));
        c->entries[victim].version = version;
        c->entries[victim].data = copy;
        c->entries[victim].len = n;
        c->entries[victim].used = ++c->clock;
        pthread_mutex_unlock(&c->lock);
}
