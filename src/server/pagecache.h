/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <pthread.h>

#include "base/common.h"
#include "base/strbuf.h"

/*
 * Encoded pages of the cluster list, tagged with the environment's clusters_version read before the
 * page was built (store.h: a page read after the version is at least as new as it). A hit needs the
 * version to match what the store says now, so a cached page is never older than the data.
 * Bounded: CM_PAGE_CACHE_ENTRIES pages of at most CM_PAGE_CACHE_ENTRY_MAX bytes, least recently used
 * evicted. Thread-safe.
 */
#define CM_PAGE_CACHE_ENTRIES 32
#define CM_PAGE_CACHE_ENTRY_MAX (256 * 1024)
#define CM_PAGE_CACHE_KEY_MAX 160

struct cm_page_cache {
        pthread_mutex_t lock;
        uint64_t clock;
        struct {
                char key[CM_PAGE_CACHE_KEY_MAX];
                int64_t version;
                char *data;
                size_t len;
                uint64_t used;
        } entries[CM_PAGE_CACHE_ENTRIES];
};

void cm_page_cache_init(struct cm_page_cache *c);
void cm_page_cache_done(struct cm_page_cache *c);
/* Appends the page for key at version to out; -ENOENT when absent or of another version. */
int cm_page_cache_get(struct cm_page_cache *c, const char *key, int64_t version, struct strbuf *out);
/* Stores a copy (pages over the entry cap, or keys over the key cap, are not stored). */
void cm_page_cache_put(struct cm_page_cache *c, const char *key, int64_t version, const char *data,
                       size_t n);
