/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <pthread.h>

#include "base/common.h"

/*
 * A small fixed-size cache of short-lived positive answers (which API key a token hash belongs to,
 * which environments exist), so that the hot read path does not ask the store for them on every
 * request. Entries expire after ttl; writers in this process invalidate what they change; other
 * replicas' changes are seen within ttl. Thread-safe.
 */
#define CM_CACHE_SLOTS 512
#define CM_CACHE_KEY_MAX 72
#define CM_CACHE_VALUE_MAX 200

struct cm_cache {
        pthread_mutex_t lock;
        uint64_t ttl_usec;
        struct {
                char key[CM_CACHE_KEY_MAX];
                char value[CM_CACHE_VALUE_MAX];
                uint64_t expires; /* monotonic; 0 = empty */
        } slots[CM_CACHE_SLOTS];
};

void cm_cache_init(struct cm_cache *c, uint64_t ttl_usec);
void cm_cache_done(struct cm_cache *c);
/* Copies the value for key into value (size bytes) and returns true when present and fresh. */
bool cm_cache_get(struct cm_cache *c, const char *key, char *value, size_t size);
/* Stores key → value (keys or values too long are not cached). */
void cm_cache_put(struct cm_cache *c, const char *key, const char *value);
void cm_cache_invalidate(struct cm_cache *c, const char *key);
void cm_cache_clear(struct cm_cache *c);
