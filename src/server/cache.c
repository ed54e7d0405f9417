/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "base/secret.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "server/cache.h"

void cm_cache_init(struct cm_cache *c, uint64_t ttl_usec) {
        memset(c->slots, 0, sizeof(c->slots));
        c->ttl_usec = ttl_usec;
        pthread_mutex_init(&c->lock, NULL);
}

void cm_cache_done(struct cm_cache *c) {
        cm_wipe(c->slots, sizeof(c->slots));
        pthread_mutex_destroy(&c->lock);
}

/* FNV-1a: keys are short; a collision only evicts another entry. */
static size_t slot_of(const char *key) {
        uint64_t h = UINT64_C(1469598103934665603);

        for (const unsigned char *p = (const unsigned char *) key; *p; p++) {
                h ^= *p;
                h *= UINT64_C(1099511628211);
        }
        return (size_t) (h % CM_CACHE_SLOTS);
}

bool cm_cache_get(struct cm_cache *c, const char *key, char *value, size_t size) {
        size_t i = slot_of(key);
        bool found = false;

        pthread_mutex_lock(&c->lock);
        if (c->slots[i].expires > cm_mono_usec() && streq(c->slots[i].key, key))
                found = cm_strlcpy(value, c->slots[i].value, size) == 0;
        pthread_mutex_unlock(&c->lock);
        return found;
}

void cm_cache_put(struct cm_cache *c, const char *key, const char *value) {
        size_t i = slot_of(key);

        if (strlen(key) >= CM_CACHE_KEY_MAX || strlen(value) >= CM_CACHE_VALUE_MAX || c->ttl_usec == 0)
                return;
        pthread_mutex_lock(&c->lock);
        (void) cm_strlcpy(c->slots[i].key, key, sizeof(c->slots[i].key));
        (void) cm_strlcpy(c->slots[i].value, value, sizeof(c->slots[i].value));
        c->slots[i].expires = cm_mono_usec() + c->ttl_usec;
        pthread_mutex_unlock(&c->lock);
}

void cm_cache_invalidate(struct cm_cache *c, const char *key) {
        size_t i = slot_of(key);

        pthread_mutex_lock(&c->lock);
        if (streq(c->slots[i].key, key))
                c->slots[i].expires = 0;
        pthread_mutex_unlock(&c->lock);
}

void cm_cache_clear(struct cm_cache *c) {
        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < CM_CACHE_SLOTS; i++)
                c->slots[i].expires = 0;
        pthread_mutex_unlock(&c->lock);
}
