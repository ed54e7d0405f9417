/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <sys/socket.h>

#include "base/common.h"

/*
 * Host names resolved for the monitor's event loop without ever blocking it: worker threads call
 * getaddrinfo() (TCP, AF_UNSPEC, AI_ADDRCONFIG; the first address it gives is the answer) and the loop
 * asks a cache that never waits.
 *
 * - The cache is keyed by (host, port), exactly as given (no case folding, a trailing dot is another
 *   name). An answer is fresh for 60 s, a failure for 5 s (cm_resolver_set_ttl).
 * - A stale answer is still served, and a refresh starts in the background (stale-while-revalidate): the
 *   probes of a name that resolves never wait for it. Whatever the refresh finds replaces the answer,
 *   a failure included. A stale failure is not served: the name is looked up again.
 * - Names not asked for in 10 minutes are dropped (cm_resolver_set_idle); the cache is swept at most
 *   once a minute, and holds at most 65536 names.
 * - At most 4096 lookups are queued or running at once; a lookup that does not fit is not started and
 *   the caller is told to ask again, which it does after the next notification (one will come: the
 *   queue is full of lookups that will finish).
 *
 * Threads: cm_resolver_lookup(), the setters and cm_resolver_free() are called from one thread (the
 * monitor's), never concurrently; only the workers run beside it.
 */
struct cm_resolver;

/* Longest host name (RFC 1035, the textual form without a trailing dot). */
#define CM_RESOLVER_HOST_MAX 253U
/* Worker threads a resolver may have. */
#define CM_RESOLVER_THREADS_MAX 64U

/*
 * Starts threads workers (1 to CM_RESOLVER_THREADS_MAX; -EINVAL otherwise) that run with every signal
 * blocked. notify_fd is an eventfd (not owned: it must stay open until cm_resolver_free() returns) to
 * which 1 is added (an 8-byte write) whenever a lookup finishes; the caller's loop watches it, reads
 * it to reset it, and then asks again for the names it was told to wait for. Returns 0 with *ret set,
 * or -EINVAL, -ENOMEM, or the negative errno of pthread_create (nothing is left running).
 */
_warn_unused_result_ int cm_resolver_new(unsigned threads, int notify_fd, struct cm_resolver **ret);

/*
 * Stops the workers, joins them and frees everything; queued lookups are abandoned. A worker inside
 * getaddrinfo() cannot be interrupted: this waits until that call returns, which its own timeouts bound
 * (resolv.conf `timeout` x `attempts` per name server, 5 s x 2 each by default). No notification is
 * written after it returns. Accepts NULL; returns NULL.
 */
struct cm_resolver *cm_resolver_free(struct cm_resolver *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct cm_resolver *, cm_resolver_free);

/*
 * The address of host:port (TCP). host is a name, or a literal IPv4 or IPv6 address (without
 * brackets), which is answered at once without a lookup or the cache. Never blocks.
 *
 * Returns
 * - 0: *addr and *addr_len are written (the port in network byte order); a fresh answer, or a stale one
 *   whose refresh runs in the background (or, when the queue is full, starts at a later call).
 * - -EAGAIN: a lookup of the name is running (started now or before), or could not be queued: ask
 *   again after notify_fd fired.
 * - -EHOSTUNREACH: the name does not resolve (a fresh cached failure); error gets a short reason,
 *   "<host>: <gai_strerror>", cut to error_size (error may be NULL).
 * - -EINVAL: r, addr or addr_len is NULL; host is NULL or empty, longer than CM_RESOLVER_HOST_MAX, or
 *   has a byte outside printable ASCII (names reach the resolver in their ASCII (punycode) form).
 * - -ENOBUFS: the cache is full of names asked for in the last 10 minutes.
 * - -ENOMEM.
 * Out-parameters are written only for the return value that names them.
 */
_warn_unused_result_ int cm_resolver_lookup(struct cm_resolver *r, const char *host, uint16_t port,
                                            struct sockaddr_storage *addr, socklen_t *addr_len, char *error,
                                            size_t error_size);

/* How long an answer and a failure stay fresh (tests; defaults 60 s and 5 s). */
void cm_resolver_set_ttl(struct cm_resolver *r, uint64_t ok_usec, uint64_t fail_usec);
/*
 * After how long without a lookup a name is dropped (tests; default 10 min). The cache is swept at
 * most once per this or once a minute, whichever is shorter.
 */
void cm_resolver_set_idle(struct cm_resolver *r, uint64_t idle_usec);
/* How many lookups may be queued or running at once (tests; default 4096; at least 1). */
void cm_resolver_set_queue_max(struct cm_resolver *r, unsigned n);
/* The names cached (for metrics and tests). */
size_t cm_resolver_size(const struct cm_resolver *r);
