/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <pthread.h>

#include "base/common.h"
#include "base/strbuf.h"

/*
 * Encoded answers (pages of the cluster list, single clusters) tagged with the store version read
 * before they were built (store.h: env_clusters_version or change_counter; data read after the version
 * is at least as new as it). A hit needs the version to match what the store says now, so a cached
 * answer is never older than the data it claims to show.
 *
 * Bounded: a set-associative table (4 ways per set, least recently used way evicted) of at most
 * `entries` answers of at most `entry_max` bytes each. Thread-safe.
 */
#define CM_PAGE_CACHE_KEY_MAX 160
#define CM_PAGE_CACHE_WAYS 4

struct cm_page_entry {
        char key[CM_PAGE_CACHE_KEY_MAX];
        uint64_t version;
        char *data;
        size_t len;
        uint64_t used;
};

struct cm_page_cache {
        pthread_mutex_t lock;
        uint64_t clock;
        size_t n_sets;
        size_t entry_max;
        struct cm_page_entry *entries; /* n_sets * CM_PAGE_CACHE_WAYS */
};

/* entries is rounded up to a multiple of the ways. */
int cm_page_cache_init(struct cm_page_cache *c, size_t entries, size_t entry_max);
void cm_page_cache_done(struct cm_page_cache *c);
/* Appends the answer for key at version to out; -ENOENT when absent or of another version. */
int cm_page_cache_get(struct cm_page_cache *c, const char *key, uint64_t version, struct strbuf *out);
/* Stores a copy (answers over entry_max, or keys over the key cap, are not stored). */
void cm_page_cache_put(struct cm_page_cache *c, const char *key, uint64_t version, const char *data,
                       size_t n);
