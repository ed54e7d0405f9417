/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "base/strbuf.h"
#include "server/pagecache.h"

struct cm_blob *cm_blob_new(const char *data, size_t n, const char *tag) {
        struct cm_blob *b;

        if (n > SIZE_MAX - sizeof(struct cm_blob) - 1)
                return NULL;
        b = malloc(sizeof(struct cm_blob) + n + 1);
        if (!b)
                return NULL;
        atomic_init(&b->refs, 1);
        b->len = n;
        if (cm_strlcpy(b->tag, tag ?: "", sizeof(b->tag)) < 0)
                b->tag[0] = 0;
        memcpy(b->data, data, n);
        b->data[n] = 0;
        return b;
}

struct cm_blob *cm_blob_ref(struct cm_blob *b) {
        if (b)
                atomic_fetch_add(&b->refs, 1);
        return b;
}

void cm_blob_unref(struct cm_blob *b) {
        if (b && atomic_fetch_sub(&b->refs, 1) == 1)
                free(b);
}

void cm_blob_unref_cb(void *b) {
        cm_blob_unref(b);
}

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
                cm_blob_unref(c->entries[i].blob);
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

struct cm_blob *cm_page_cache_get(struct cm_page_cache *c, const char *key, uint64_t version) {
        struct cm_page_entry *set;
        struct cm_blob *b = NULL;

        if (!c->entries)
                return NULL;
        set = set_of(c, key);
        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < CM_PAGE_CACHE_WAYS; i++) {
                struct cm_page_entry *e = &set[i];

                if (!e->blob || e->version != version || !streq(e->key, key))
                        continue;
                b = cm_blob_ref(e->blob);
                e->used = ++c->clock;
                break;
        }
        pthread_mutex_unlock(&c->lock);
        return b;
}

void cm_page_cache_put(struct cm_page_cache *c, const char *key, uint64_t version, struct cm_blob *blob) {
        struct cm_page_entry *set, *victim;
        struct cm_blob *old;

        if (!c->entries || !blob || blob->len > c->entry_max || strlen(key) >= CM_PAGE_CACHE_KEY_MAX)
                return;
        set = set_of(c, key);
        pthread_mutex_lock(&c->lock);
        /* The same key (any version) is replaced; else an empty way; else the least recently used. */
        victim = &set[0];
        for (size_t i = 0; i < CM_PAGE_CACHE_WAYS; i++) {
                struct cm_page_entry *e = &set[i];

                if (e->blob && streq(e->key, key)) {
                        victim = e;
                        break;
                }
                if (!e->blob) {
                        if (victim->blob)
                                victim = e;
                } else if (victim->blob && e->used < victim->used)
                        victim = e;
        }
        old = victim->blob;
        (void) cm_strlcpy(victim->key, key, sizeof(victim->key));
        victim->version = version;
        victim->blob = cm_blob_ref(blob);
        victim->used = ++c->clock;
        pthread_mutex_unlock(&c->lock);
        cm_blob_unref(old);
}
