/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>

#include "base/common.h"

/*
 * Encoded answers (pages of the cluster list, single clusters) tagged with the store version read
 * before they were built (store.h: env_clusters_version or change_counter; data read after the version
 * is at least as new as it). A hit needs the version to match what the store says now, so a cached
 * answer is never older than the data it claims to show.
 *
 * Answers are reference-counted blobs handed to libmicrohttpd without a copy; each holder drops its
 * reference with cm_blob_unref. Bounded: a set-associative table (4 ways per set, least recently used
 * way evicted) of at most `entries` answers of at most `entry_max` bytes each. Thread-safe.
 */
#define CM_PAGE_CACHE_KEY_MAX 160
#define CM_PAGE_CACHE_WAYS 4
#define CM_PAGE_CACHE_TAG_MAX 32

struct cm_blob {
        atomic_uint refs;
        size_t len;
        char tag[CM_PAGE_CACHE_TAG_MAX]; /* e.g. the ETag of a cluster */
        char data[];
};

/* A blob holding a copy of data (one reference). NULL on allocation failure. */
struct cm_blob *cm_blob_new(const char *data, size_t n, const char *tag);
struct cm_blob *cm_blob_ref(struct cm_blob *b);
void cm_blob_unref(struct cm_blob *b);
/* For libmicrohttpd's free callback. */
void cm_blob_unref_cb(void *b);

struct cm_page_entry {
        char key[CM_PAGE_CACHE_KEY_MAX];
        uint64_t version;
        struct cm_blob *blob;
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
/* A new reference to the answer for key at version; NULL when absent or of another version. */
struct cm_blob *cm_page_cache_get(struct cm_page_cache *c, const char *key, uint64_t version);
/* Keeps a reference to blob (answers over entry_max, or keys over the key cap, are not kept). */
void cm_page_cache_put(struct cm_page_cache *c, const char *key, uint64_t version, struct cm_blob *blob);
