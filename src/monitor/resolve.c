/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include "base/strbuf.h"
#include "base/util.h"
#include "monitor/resolve.h"

#define OK_TTL_USEC (60 * USEC_PER_SEC)
#define FAIL_TTL_USEC (5 * USEC_PER_SEC)
#define IDLE_USEC (600 * USEC_PER_SEC)
#define PRUNE_EVERY_USEC (60 * USEC_PER_SEC)
/* Lookups queued, running or finished and not yet collected. */
#define PENDING_MAX 4096U
/* Names cached: ten times the clusters the monitor is sized for, a few MB at most. */
#define CACHE_MAX 65536U
#define CACHE_MIN_ALLOC 64U

enum entry_state {
        ENTRY_NEW, /* never answered */
        ENTRY_OK,
        ENTRY_FAILED,
};

union addr {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
};

/* One (host, port): what the cache knows, and the lookup a worker may be making of it. */
struct entry {
        /* The monitor thread's. */
        enum entry_state state;
        uint64_t answered_mono;
        uint64_t used_mono;
        bool pending; /* queued, running, or done and not yet collected: a worker may hold it */
        union addr addr; /* ENTRY_OK */
        socklen_t addr_len;
        int gai_error, sys_error; /* ENTRY_FAILED */

        /*
         * The worker's result, written before it puts the entry on the done list and read by the
         * monitor thread after it took the entry off it (both under the lock): the answer above may be
         * served meanwhile, so the worker has its own copy.
         */
        union addr res_addr;
        socklen_t res_addr_len;
        int res_gai_error, res_sys_error;
        uint64_t res_mono;

        struct entry *qnext; /* under the lock: the next in the queue or on the done list */
        uint16_t port;
        char host[]; /* set before the entry is first queued, never changed */
};

struct cm_resolver {
        int notify_fd;

        pthread_mutex_t lock;
        pthread_cond_t wake; /* workers: the queue has an entry, or stop */
        bool lock_ready, wake_ready;
        bool stop; /* under the lock */
        struct entry *queue_head, *queue_tail; /* under the lock */
        struct entry *done; /* under the lock */
        pthread_t *threads;
        unsigned n_threads;

        /* The monitor thread's. */
        struct entry **entries; /* sorted by (host, port) */
        size_t n_entries, n_alloc;
        unsigned n_pending, pending_max;
        uint64_t ok_ttl, fail_ttl, idle;
        uint64_t next_prune;
};

/* -------------------------------------------------------------------------------------------------
 * Workers
 */

static void notify(struct cm_resolver *r) {
        uint64_t one = 1;
        ssize_t k;

        /* EAGAIN (the counter is full) is a notification that is pending anyway. */
        k = write(r->notify_fd, &one, sizeof(one));
        (void) k;
}

static void resolve(struct entry *e) {
        struct addrinfo hints = {
                .ai_family = AF_UNSPEC,
                .ai_socktype = SOCK_STREAM,
                .ai_protocol = IPPROTO_TCP,
                .ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV,
        };
        struct addrinfo *ai = NULL;
        char service[8];
        int k;

        (void) cm_snprintf(service, sizeof(service), "%u", (unsigned) e->port);
        e->res_gai_error = 0;
        e->res_sys_error = 0;
        k = getaddrinfo(e->host, service, &hints, &ai);
        if (k == 0 && ai && (ai->ai_family == AF_INET || ai->ai_family == AF_INET6) &&
            ai->ai_addrlen <= sizeof(e->res_addr)) {
                memset(&e->res_addr, 0, sizeof(e->res_addr));
                memcpy(&e->res_addr, ai->ai_addr, ai->ai_addrlen);
                e->res_addr_len = ai->ai_addrlen;
        } else if (k == 0) {
                /* AF_UNSPEC gives IPv4 and IPv6 only; anything else is no answer. */
                e->res_gai_error = EAI_NONAME;
        } else {
                e->res_gai_error = k;
                e->res_sys_error = k == EAI_SYSTEM ? errno : 0;
        }
        if (ai)
                freeaddrinfo(ai);
        e->res_mono = cm_mono_usec();
}

static void *worker_main(void *userdata) {
        struct cm_resolver *r = userdata;

        (void) pthread_setname_np(pthread_self(), "cm-resolve");
        for (;;) {
                struct entry *e;

                (void) pthread_mutex_lock(&r->lock);
                while (!r->stop && !r->queue_head)
                        (void) pthread_cond_wait(&r->wake, &r->lock);
                if (r->stop) {
                        (void) pthread_mutex_unlock(&r->lock);
                        break;
                }
                e = r->queue_head;
                r->queue_head = e->qnext;
                if (!r->queue_head)
                        r->queue_tail = NULL;
                (void) pthread_mutex_unlock(&r->lock);

                resolve(e);

                (void) pthread_mutex_lock(&r->lock);
                e->qnext = r->done;
                r->done = e;
                (void) pthread_mutex_unlock(&r->lock);
                /* After this the entry is the monitor thread's again; only r is touched. */
                notify(r);
        }
        return NULL;
}

/* -------------------------------------------------------------------------------------------------
 * The cache (the monitor thread's)
 */

static int entry_compare(const struct entry *e, const char *host, uint16_t port) {
        int c = strcmp(e->host, host);

        if (c != 0)
                return c;
        return e->port < port ? -1 : e->port > port ? 1 : 0;
}

/* The index of (host, port) in r->entries, or the index where it would be inserted. */
static size_t cache_find(const struct cm_resolver *r, const char *host, uint16_t port, bool *ret_found) {
        size_t lo = 0, hi = r->n_entries;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = entry_compare(r->entries[mid], host, port);

                if (c == 0) {
                        *ret_found = true;
                        return mid;
                }
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *ret_found = false;
        return lo;
}

static int cache_insert(struct cm_resolver *r, size_t at, const char *host, size_t host_len, uint16_t port,
                        struct entry **ret) {
        struct entry *e;

        if (r->n_entries >= CACHE_MAX)
                return -ENOBUFS;
        if (r->n_entries == r->n_alloc) {
                size_t n = MIN(MAX(r->n_alloc * 2, (size_t) CACHE_MIN_ALLOC), (size_t) CACHE_MAX);
                struct entry **p = reallocarray(r->entries, n, sizeof(*p));

                if (!p)
                        return -ENOMEM;
                r->entries = p;
                r->n_alloc = n;
        }
        e = calloc(1, sizeof(*e) + host_len + 1);
        if (!e)
                return -ENOMEM;
        memcpy(e->host, host, host_len + 1);
        e->port = port;
        memmove(r->entries + at + 1, r->entries + at, (r->n_entries - at) * sizeof(*r->entries));
        r->entries[at] = e;
        r->n_entries++;
        *ret = e;
        return 0;
}

/*
 * Drops the names not asked for in r->idle. It walks the whole cache, so it runs at most once per
 * PRUNE_EVERY_USEC (or per r->idle when that is shorter). Entries a worker may hold are kept.
 */
static void cache_prune(struct cm_resolver *r, uint64_t now) {
        size_t kept = 0;

        if (now < r->next_prune)
                return;
        r->next_prune = now + MIN((uint64_t) PRUNE_EVERY_USEC, r->idle);
        for (size_t i = 0; i < r->n_entries; i++) {
                struct entry *e = r->entries[i];

                if (!e->pending && now - e->used_mono >= r->idle)
                        free(e);
                else
                        r->entries[kept++] = e;
        }
        r->n_entries = kept;
        /* Give memory back after a burst of names that are gone (shrinking cannot fail harmfully). */
        if (r->n_alloc > CACHE_MIN_ALLOC && r->n_entries < r->n_alloc / 4) {
                size_t n = MAX(r->n_entries * 2, (size_t) CACHE_MIN_ALLOC);
                struct entry **p = reallocarray(r->entries, n, sizeof(*p));

                if (p) {
                        r->entries = p;
                        r->n_alloc = n;
                }
        }
}

/* Takes the finished lookups' results into the cache. */
static void collect(struct cm_resolver *r) {
        struct entry *list;

        if (r->n_pending == 0)
                return;
        (void) pthread_mutex_lock(&r->lock);
        list = r->done;
        r->done = NULL;
        (void) pthread_mutex_unlock(&r->lock);

        while (list) {
                struct entry *e = list;

                list = e->qnext;
                e->qnext = NULL;
                e->pending = false;
                r->n_pending--;
                e->answered_mono = e->res_mono;
                if (e->res_gai_error == 0) {
                        e->state = ENTRY_OK;
                        e->addr = e->res_addr;
                        e->addr_len = e->res_addr_len;
                } else {
                        e->state = ENTRY_FAILED;
                        e->gai_error = e->res_gai_error;
                        e->sys_error = e->res_sys_error;
                }
        }
}

/* Queues a lookup of e unless one is pending; -EAGAIN when the queue is full. */
static int entry_start(struct cm_resolver *r, struct entry *e) {
        if (e->pending)
                return 0;
        if (r->n_pending >= r->pending_max)
                return -EAGAIN;
        e->pending = true;
        r->n_pending++;
        (void) pthread_mutex_lock(&r->lock);
        e->qnext = NULL;
        if (r->queue_tail)
                r->queue_tail->qnext = e;
        else
                r->queue_head = e;
        r->queue_tail = e;
        (void) pthread_cond_signal(&r->wake);
        (void) pthread_mutex_unlock(&r->lock);
        return 0;
}

static bool fresh(uint64_t answered, uint64_t ttl, uint64_t now) {
        /* answered <= now (collect() runs before now is read); the check keeps the subtraction safe. */
        return answered >= now || now - answered < ttl;
}

/* -------------------------------------------------------------------------------------------------
 * The interface
 */

static bool host_valid(const char *host, size_t *ret_len) {
        size_t n;

        if (isempty(host))
                return false;
        n = strnlen(host, CM_RESOLVER_HOST_MAX + 1);
        if (n > CM_RESOLVER_HOST_MAX)
                return false;
        /* Printable ASCII only: the name may end up in a log line through the error message. */
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) host[i] <= 0x20 || (unsigned char) host[i] >= 0x7f)
                        return false;
        *ret_len = n;
        return true;
}

/* A literal IPv4 or IPv6 address as a socket address. */
static bool literal(const char *host, uint16_t port, union addr *ret, socklen_t *ret_len) {
        union addr a = {};

        if (inet_pton(AF_INET, host, &a.in.sin_addr) == 1) {
                a.in.sin_family = AF_INET;
                a.in.sin_port = htons(port);
                *ret_len = sizeof(a.in);
        } else if (inet_pton(AF_INET6, host, &a.in6.sin6_addr) == 1) {
                a.in6.sin6_family = AF_INET6;
                a.in6.sin6_port = htons(port);
                *ret_len = sizeof(a.in6);
        } else
                return false;
        *ret = a;
        return true;
}

static void answer(const union addr *a, socklen_t len, struct sockaddr_storage *addr, socklen_t *addr_len) {
        memset(addr, 0, sizeof(*addr));
        memcpy(addr, a, len);
        *addr_len = len;
}

int cm_resolver_lookup(struct cm_resolver *r, const char *host, uint16_t port, struct sockaddr_storage *addr,
                       socklen_t *addr_len, char *error, size_t error_size) {
        struct entry *e;
        union addr lit;
        socklen_t lit_len;
        size_t host_len = 0, at;
        uint64_t now;
        bool found;
        int k;

        if (!r || !addr || !addr_len || !host_valid(host, &host_len))
                return -EINVAL;
        if (literal(host, port, &lit, &lit_len)) {
                answer(&lit, lit_len, addr, addr_len);
                return 0;
        }

        collect(r);
        /* After collect(): the results just taken in were answered before now. */
        now = cm_mono_usec();
        cache_prune(r, now);
        at = cache_find(r, host, port, &found);
        if (found)
                e = r->entries[at];
        else {
                k = cache_insert(r, at, host, host_len, port, &e);
                if (k < 0)
                        return k;
        }
        e->used_mono = now;

        switch (e->state) {
        case ENTRY_OK:
                /* Stale: served while a refresh runs; a full queue leaves the refresh to a later call. */
                if (!fresh(e->answered_mono, r->ok_ttl, now))
                        (void) entry_start(r, e);
                answer(&e->addr, e->addr_len, addr, addr_len);
                return 0;
        case ENTRY_FAILED:
                if (!fresh(e->answered_mono, r->fail_ttl, now))
                        break;
                if (error && error_size > 0)
                        (void) cm_snprintf(error, error_size, "%s: %s", e->host,
                                           e->gai_error == EAI_SYSTEM ? strerror(e->sys_error)
                                                                      : gai_strerror(e->gai_error));
                return -EHOSTUNREACH;
        case ENTRY_NEW:
                break;
        }
        /* Never answered, or a stale failure: ask again (a full queue: -EAGAIN all the same). */
        (void) entry_start(r, e);
        return -EAGAIN;
}

void cm_resolver_set_ttl(struct cm_resolver *r, uint64_t ok_usec, uint64_t fail_usec) {
        r->ok_ttl = ok_usec;
        r->fail_ttl = fail_usec;
}

void cm_resolver_set_idle(struct cm_resolver *r, uint64_t idle_usec) {
        r->idle = idle_usec;
        r->next_prune = MIN(r->next_prune, cm_mono_usec() + MIN((uint64_t) PRUNE_EVERY_USEC, idle_usec));
}

void cm_resolver_set_queue_max(struct cm_resolver *r, unsigned n) {
        r->pending_max = MAX(n, 1U);
}

size_t cm_resolver_size(const struct cm_resolver *r) {
        return r->n_entries;
}

struct cm_resolver *cm_resolver_free(struct cm_resolver *r) {
        if (!r)
                return NULL;
        if (r->n_threads > 0) {
                (void) pthread_mutex_lock(&r->lock);
                r->stop = true;
                (void) pthread_cond_broadcast(&r->wake);
                (void) pthread_mutex_unlock(&r->lock);
                /* A worker inside getaddrinfo() is waited for: its own timeouts bound the call. */
                for (unsigned i = 0; i < r->n_threads; i++)
                        (void) pthread_join(r->threads[i], NULL);
        }
        /* Every entry, queued or done included, is in the cache: the workers hold none now. */
        for (size_t i = 0; i < r->n_entries; i++)
                free(r->entries[i]);
        free(r->entries);
        free(r->threads);
        if (r->wake_ready)
                (void) pthread_cond_destroy(&r->wake);
        if (r->lock_ready)
                (void) pthread_mutex_destroy(&r->lock);
        free(r);
        return NULL;
}

int cm_resolver_new(unsigned threads, int notify_fd, struct cm_resolver **ret) {
        _cleanup_(cm_resolver_freep) struct cm_resolver *r = NULL;
        sigset_t all, old;
        int k;

        if (threads == 0 || threads > CM_RESOLVER_THREADS_MAX || notify_fd < 0 || !ret)
                return -EINVAL;
        r = new0(struct cm_resolver, 1);
        if (!r)
                return -ENOMEM;
        r->notify_fd = notify_fd;
        r->ok_ttl = OK_TTL_USEC;
        r->fail_ttl = FAIL_TTL_USEC;
        r->idle = IDLE_USEC;
        r->pending_max = PENDING_MAX;
        r->next_prune = cm_mono_usec() + PRUNE_EVERY_USEC;
        k = pthread_mutex_init(&r->lock, NULL);
        if (k != 0)
                return -k;
        r->lock_ready = true;
        k = pthread_cond_init(&r->wake, NULL);
        if (k != 0)
                return -k;
        r->wake_ready = true;
        r->threads = new0(pthread_t, threads);
        if (!r->threads)
                return -ENOMEM;

        /* The workers inherit the mask: signals go to the threads that handle them, never to a worker. */
        (void) sigfillset(&all);
        (void) pthread_sigmask(SIG_SETMASK, &all, &old);
        for (unsigned i = 0; i < threads; i++) {
                k = pthread_create(&r->threads[i], NULL, worker_main, r);
                if (k != 0)
                        break;
                r->n_threads++;
        }
        (void) pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (k != 0)
                return -k;
        *ret = TAKE_PTR(r);
        return 0;
}
