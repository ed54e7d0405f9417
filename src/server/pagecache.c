/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "server/pagecache.h"

int cm_page_cache_init(struct cm_page_cache *c, size_t entries, size_t entry_max) {
        *c = (struct cm_page_cache){ .entry_max = entry_max };
        c->n_sets = MAX((size_t) 1, (entries + CM_PAGE_CACHE_WAYS - 1) / CM_PAGE_CACHE_WAYS);
        c->entries = new0(struct cm_page_entry, c->n_sets * CM_PAGE_CACHE_WAYS);
        if (!c->entries)
                return -ENOMEM;
        pthread_mutex_init(&c->lock, NULL);
        return 0;
}

void cm_page_cache_done(struct cm_page_cache *c) {
        if (!c->entries)
                return;
        for (size_t i = 0; i < c->n_sets * CM_PAGE_CACHE_WAYS; i++)
                free(c->entries[i].data);
        free(c->entries);
        c->entries = NULL;
        pthread_mutex_destroy(&c->lock);
}

/* FNV-1a of the key picks the set. */
static struct cm_page_entry *set_of(struct cm_page_cache *c, const char *key) {
        uint64_t h = UINT64_C(1469598103934665603);

        for (const unsigned char *p = (const unsigned char *) key; *p; p++) {
                h ^= *p;
                h *= UINT64_C(1099511628211);
        }
        return &c->entries[(h % c->n_sets) * CM_PAGE_CACHE_WAYS];
}

int cm_page_cache_get(struct cm_page_cache *c, const char *key, uint64_t version, struct strbuf *out) {
        struct cm_page_entry *set;
        int r = -ENOENT;

        if (!c->entries)
                return -ENOENT;
        set = set_of(c, key);
        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < CM_PAGE_CACHE_WAYS; i++) {
                struct cm_page_entry *e = &set[i];

                if (!e->data || e->version != version || !streq(e->key, key))
                        continue;
                r = strbuf_add(out, e->data, e->len);
                e->used = ++c->clock;
                break;
        }
        pthread_mutex_unlock(&c->lock);
        return r;
}

void cm_page_cache_put(struct cm_page_cache *c, const char *key, uint64_t version, const char *data,
                       size_t n) {
        struct cm_page_entry *set, *victim;
        char *copy;

        if (!c->entries || n > c->entry_max || strlen(key) >= CM_PAGE_CACHE_KEY_MAX)
                return;
        copy = malloc(n ?: 1);
        if (!copy)
                return;
        memcpy(copy, data, n);

        set = set_of(c, key);
        pthread_mutex_lock(&c->lock);
        /* The same key (any version) is replaced; else an empty way; else the least recently used. */
        victim = &set[0];
        for (size_t i = 0; i < CM_PAGE_CACHE_WAYS; i++) {
                struct cm_page_entry *e = &set[i];

                if (e->data && streq(e->key, key)) {
                        victim = e;
                        break;
                }
                if (!e->data) {
                        if (victim->data)
                                victim = e;
                } else if (victim->data && e->used < victim->used)
                        victim = e;
        }
        free(victim->data);
        (void) cm_strlcpy(victim->key, key, sizeof(victim->key));
        victim->version = version;
        victim->data = copy;
        victim->len = n;
        victim->used = ++c->clock;
        pthread_mutex_unlock(&c->lock);
}
