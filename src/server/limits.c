/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "base/log.h"
#include "base/util.h"
#include "server/server_internal.h"

/*
 * The tables are set-associative: a key hashes to one set of LIMITS_WAYS entries, and a new key takes
 * the set's free entry or its least recently used one. Memory is fixed at start whatever the clients
 * do; an evicted bucket was idle longer than every other of its set (and had most likely refilled).
 */
#define LIMITS_WAYS 8
#define LIMITS_RATE_SETS 512 /* 4096 principals and sources */
#define LIMITS_AUTH_SETS 256 /* 2048 sources with recent authentication failures */
#define LIMITS_KEY_MAX 64
#define WATCHDOG_PERIOD_MSEC 500

struct entry {
        char key[LIMITS_KEY_MAX]; /* "" when free */
        uint64_t used_usec; /* monotonic: the last refill of a bucket, the last failure of a source */
        union {
                double tokens;
                struct {
                        unsigned fails;
                        uint64_t blocked_until_usec;
                } auth;
        };
};

struct table {
        pthread_mutex_t lock;
        struct entry *entries; /* n_sets * LIMITS_WAYS */
        size_t n_sets;
        uint64_t seed;
};

struct cm_conn {
        int fd;
        bool in_use;
        atomic_uint_fast64_t deadline_usec; /* monotonic; 0 while an answer is made */
};

struct cm_limits {
        double rate, burst;
        uint64_t request_timeout_usec;
        unsigned auth_fail_max;
        uint64_t auth_window_usec, auth_block_max_usec;

        struct table rate_table; /* "p:<principal id>" and "s:<source>" → tokens */
        struct table auth_table; /* "<source>" → failures */

        /* Held while a slot is taken or given back, and while the watchdog shuts a socket down: the
         * socket of a slot in use is open (libmicrohttpd closes it after the close notification). */
        pthread_mutex_t conn_lock;
        struct cm_conn *conns;
        size_t n_conns;
        size_t *free_conns; /* stack of the indexes of free slots */
        size_t n_free;

        pthread_mutex_t stop_lock;
        pthread_cond_t stop_cond; /* on CLOCK_MONOTONIC */
        bool stopping;
        pthread_t watchdog;
        bool watchdog_started;

        atomic_uint_fast64_t counts[_CM_LIMIT_REASON_MAX];
};

const char *cm_limit_reason_to_string(enum cm_limit_reason r) {
        static const char *const names[_CM_LIMIT_REASON_MAX] = {
                [CM_LIMIT_RATE] = "rate-limited",
                [CM_LIMIT_AUTH_FAILURES] = "too-many-auth-failures",
                [CM_LIMIT_TOO_LARGE] = "too-large",
                [CM_LIMIT_SLOW_REQUEST] = "slow-request",
                [CM_LIMIT_CONNECTIONS] = "connection-limit",
        };

        return (unsigned) r < _CM_LIMIT_REASON_MAX ? names[r] : NULL;
}

void cm_limits_note(struct cm_limits *l, enum cm_limit_reason r) {
        if (l && (unsigned) r < _CM_LIMIT_REASON_MAX)
                atomic_fetch_add_explicit(&l->counts[r], 1, memory_order_relaxed);
}

uint64_t cm_limits_count(const struct cm_limits *l, enum cm_limit_reason r) {
        if (!l || (unsigned) r >= _CM_LIMIT_REASON_MAX)
                return 0;
        return atomic_load_explicit(&l->counts[r], memory_order_relaxed);
}

void cm_limits_source_key(const struct sockaddr *sa, char *buf, size_t size) {
        buf[0] = 0;
        if (!sa)
                return;
        if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *) sa;

                if (!inet_ntop(AF_INET, &in->sin_addr, buf, (socklen_t) size))
                        buf[0] = 0;
        } else if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) sa;
                struct in6_addr a = in6->sin6_addr;
                size_t n;

                if (IN6_IS_ADDR_V4MAPPED(&a)) {
                        if (!inet_ntop(AF_INET, &a.s6_addr[12], buf, (socklen_t) size))
                                buf[0] = 0;
                        return;
                }
                if (IN6_IS_ADDR_LOOPBACK(&a)) {
                        (void) cm_strlcpy(buf, "::1", size);
                        return;
                }
                memset(&a.s6_addr[8], 0, 8);
                if (!inet_ntop(AF_INET6, &a, buf, (socklen_t) size)) {
                        buf[0] = 0;
                        return;
                }
                n = strlen(buf);
                if (cm_strlcpy(buf + n, "/64", size - n) < 0)
                        buf[0] = 0;
        }
}

/* -------------------------------------------------------------------------------------------------
 * Tables
 */

static int table_init(struct table *t, size_t n_sets) {
        t->entries = new0(struct entry, n_sets * LIMITS_WAYS);
        if (!t->entries)
                return -ENOMEM;
        t->n_sets = n_sets;
        pthread_mutex_init(&t->lock, NULL);
        /* Keys are partly chosen by clients (their addresses): the set of a key is not predictable. */
        return cm_random_bytes(&t->seed, sizeof(t->seed));
}

static void table_done(struct table *t) {
        if (!t->entries)
                return;
        pthread_mutex_destroy(&t->lock);
        t->entries = mfree(t->entries);
}

static uint64_t table_hash(const struct table *t, const char *key) {
        uint64_t h = t->seed ^ UINT64_C(0xcbf29ce484222325);

        for (const unsigned char *p = (const unsigned char *) key; *p; p++) {
                h ^= *p;
                h *= UINT64_C(0x100000001b3);
        }
        /* splitmix64's finalizer: every bit of the key reaches the set index. */
        h ^= h >> 30;
        h *= UINT64_C(0xbf58476d1ce4e5b9);
        h ^= h >> 27;
        h *= UINT64_C(0x94d049bb133111eb);
        h ^= h >> 31;
        return h;
}

/*
 * The entry of key, or NULL. With insert, a missing key gets a zeroed entry (its used_usec is left to
 * the caller; *ret_created is set), in place of the least recently used of its set when the set is full.
 * The caller holds t->lock.
 */
static struct entry *table_get(struct table *t, const char *key, bool insert, bool *ret_created) {
        struct entry *set = t->entries + (table_hash(t, key) % t->n_sets) * LIMITS_WAYS, *victim = NULL;

        for (size_t i = 0; i < LIMITS_WAYS; i++) {
                struct entry *e = &set[i];

                if (!e->key[0]) {
                        if (!victim || victim->key[0])
                                victim = e;
                        continue;
                }
                if (streq(e->key, key))
                        return e;
                if (!victim || (victim->key[0] && e->used_usec < victim->used_usec))
                        victim = e;
        }
        if (!insert)
                return NULL;
        memset(victim, 0, sizeof(*victim));
        (void) cm_strlcpy(victim->key, key, sizeof(victim->key));
        *ret_created = true;
        return victim;
}

/* Whole seconds to wait, at least one (Retry-After). */
static unsigned usec_to_retry_after(uint64_t usec) {
        uint64_t s = (usec + USEC_PER_SEC - 1) / USEC_PER_SEC;

        return (unsigned) MAX(MIN(s, (uint64_t) UINT_MAX), 1);
}

/* Takes one token from the bucket of key: 0, or -EBUSY with the seconds until one is back. */
static int bucket_take(struct cm_limits *l, const char *key, unsigned *ret_retry_after) {
        struct table *t = &l->rate_table;
        uint64_t now = cm_mono_usec();
        bool created = false;
        struct entry *e;
        int r = 0;

        pthread_mutex_lock(&t->lock);
        e = table_get(t, key, true, &created);
        if (created)
                e->tokens = l->burst;
        else if (now > e->used_usec)
                e->tokens = MIN(l->burst, e->tokens + (double) (now - e->used_usec) * l->rate / 1e6);
        e->used_usec = MAX(e->used_usec, now);
        if (e->tokens >= 1.0)
                e->tokens -= 1.0;
        else {
                *ret_retry_after = usec_to_retry_after((uint64_t) ((1.0 - e->tokens) * 1e6 / l->rate) + 1);
                r = -EBUSY;
        }
        pthread_mutex_unlock(&t->lock);
        return r;
}

/* A source's failures are forgotten once the window has passed since its last failure and its block. */
static bool auth_entry_stale(const struct cm_limits *l, const struct entry *e, uint64_t now) {
        return now >= MAX(e->used_usec, e->auth.blocked_until_usec) + l->auth_window_usec;
}

static int auth_blocked(struct cm_limits *l, const char *source, unsigned *ret_retry_after) {
        struct table *t = &l->auth_table;
        uint64_t now = cm_mono_usec();
        struct entry *e;
        int r = 0;

        pthread_mutex_lock(&t->lock);
        e = table_get(t, source, false, NULL);
        if (e && e->auth.blocked_until_usec > now) {
                *ret_retry_after = usec_to_retry_after(e->auth.blocked_until_usec - now);
                r = -EBUSY;
        }
        pthread_mutex_unlock(&t->lock);
        return r;
}

static void auth_failed(struct cm_limits *l, const char *source) {
        struct table *t = &l->auth_table;
        uint64_t now = cm_mono_usec();
        bool created = false;
        struct entry *e;

        pthread_mutex_lock(&t->lock);
        e = table_get(t, source, true, &created);
        if (!created && auth_entry_stale(l, e, now)) {
                e->auth.fails = 0;
                e->auth.blocked_until_usec = 0;
        }
        if (e->auth.fails < UINT_MAX)
                e->auth.fails++;
        e->used_usec = MAX(e->used_usec, now);
        if (e->auth.fails >= l->auth_fail_max) {
                /* 1 s after the last allowed failure, then twice as long after each further one. */
                unsigned shift = e->auth.fails - l->auth_fail_max;
                uint64_t delay = shift >= 32 ? l->auth_block_max_usec
                                             : MIN(USEC_PER_SEC << shift, l->auth_block_max_usec);

                e->auth.blocked_until_usec = now + delay;
        }
        pthread_mutex_unlock(&t->lock);
}

static void auth_succeeded(struct cm_limits *l, const char *source) {
        struct table *t = &l->auth_table;
        struct entry *e;

        pthread_mutex_lock(&t->lock);
        e = table_get(t, source, false, NULL);
        if (e)
                memset(e, 0, sizeof(*e));
        pthread_mutex_unlock(&t->lock);
}

/* -------------------------------------------------------------------------------------------------
 * The steps of the request pipeline
 */

_printf_(5, 6) static int refuse(struct cm_req *req, struct cm_problem *p, enum cm_limit_reason reason,
                                 unsigned retry_after, const char *fmt, ...) {
        char v[16], detail[256];
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(detail, sizeof(detail), fmt, ap);
        va_end(ap);
        (void) cm_snprintf(v, sizeof(v), "%u", retry_after);
        (void) cm_reply_header(req, "Retry-After", v);
        cm_limits_note(req->srv->limits, reason);
        (void) cm_problem_set(p, 429, cm_limit_reason_to_string(reason), "Too many requests", "%s", detail);
        return -EBUSY;
}

int cm_limits_auth_check(struct cm_req *req, struct cm_problem *p) {
        struct cm_limits *l = req->srv->limits;
        unsigned retry_after = 0;

        if (!l || req->route->role == CM_ROLE_NONE || !req->source[0] || l->auth_fail_max == 0)
                return 0;
        if (auth_blocked(l, req->source, &retry_after) < 0)
                return refuse(req, p, CM_LIMIT_AUTH_FAILURES, retry_after,
                              "too many failed authentications from this address; retry in %u s",
                              retry_after);
        return 0;
}

bool cm_limits_auth_blocked(struct cm_req *req) {
        struct cm_limits *l = req->srv->limits;
        unsigned retry_after = 0;

        if (!l || req->route->role == CM_ROLE_NONE || !req->source[0] || l->auth_fail_max == 0)
                return false;
        return auth_blocked(l, req->source, &retry_after) < 0;
}

void cm_limits_auth_done(struct cm_req *req, int r) {
        struct cm_limits *l = req->srv->limits;

        if (!l || req->route->role == CM_ROLE_NONE || !req->source[0] || l->auth_fail_max == 0)
                return;
        if (r == -EACCES)
                auth_failed(l, req->source);
        else if (r >= 0)
                auth_succeeded(l, req->source);
}

int cm_limits_rate(struct cm_req *req, struct cm_problem *p) {
        struct cm_limits *l = req->srv->limits;
        char key[LIMITS_KEY_MAX];
        unsigned retry_after = 0;

        if (!l || l->rate <= 0)
                return 0;
        /* Routes without a role are limited per address, the others per principal. */
        if (req->route->role != CM_ROLE_NONE && req->principal.id[0])
                (void) cm_snprintf(key, sizeof(key), "p:%s", req->principal.id);
        else if (req->source[0])
                (void) cm_snprintf(key, sizeof(key), "s:%s", req->source);
        else
                return 0;
        if (bucket_take(l, key, &retry_after) < 0)
                return refuse(req, p, CM_LIMIT_RATE, retry_after,
                              "more than %.0f requests per second (bursts of %.0f); retry in %u s", l->rate,
                              l->burst, retry_after);
        return 0;
}

/* -------------------------------------------------------------------------------------------------
 * Connections and the request deadline
 */

void cm_limits_conn_started(struct cm_limits *l, struct MHD_Connection *conn, void **socket_context) {
        const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct cm_conn *c = NULL;

        *socket_context = NULL;
        if (!l || !ci)
                return;
        pthread_mutex_lock(&l->conn_lock);
        if (l->n_free > 0) {
                c = &l->conns[l->free_conns[--l->n_free]];
                c->fd = ci->connect_fd;
                c->in_use = true;
                atomic_store(&c->deadline_usec, cm_mono_usec() + l->request_timeout_usec);
        }
        pthread_mutex_unlock(&l->conn_lock);
        *socket_context = c;
}

void cm_limits_conn_closed(struct cm_limits *l, void **socket_context) {
        struct cm_conn *c = *socket_context;

        if (!l || !c)
                return;
        pthread_mutex_lock(&l->conn_lock);
        c->in_use = false;
        c->fd = -1;
        atomic_store(&c->deadline_usec, 0);
        l->free_conns[l->n_free++] = (size_t) (c - l->conns);
        pthread_mutex_unlock(&l->conn_lock);
        *socket_context = NULL;
}

void cm_limits_conn_answering(struct cm_conn *c) {
        if (c)
                atomic_store(&c->deadline_usec, 0);
}

void cm_limits_conn_idle(struct cm_limits *l, struct cm_conn *c) {
        if (l && c)
                atomic_store(&c->deadline_usec, cm_mono_usec() + l->request_timeout_usec);
}

/* Shuts down the sockets of connections past their deadline; libmicrohttpd then sees the end and
 * closes them. */
static void reap_slow(struct cm_limits *l) {
        uint64_t now = cm_mono_usec();
        size_t n = 0;

        pthread_mutex_lock(&l->conn_lock);
        for (size_t i = 0; i < l->n_conns; i++) {
                struct cm_conn *c = &l->conns[i];
                uint_fast64_t d;

                if (!c->in_use)
                        continue;
                d = atomic_load(&c->deadline_usec);
                if (d == 0 || d > now)
                        continue;
                /* Only once: a request that completes now sets a new deadline, which is harmless. */
                if (!atomic_compare_exchange_strong(&c->deadline_usec, &d, 0))
                        continue;
                (void) shutdown(c->fd, SHUT_RDWR);
                n++;
        }
        pthread_mutex_unlock(&l->conn_lock);
        for (size_t i = 0; i < n; i++)
                cm_limits_note(l, CM_LIMIT_SLOW_REQUEST);
        if (n > 0)
                log_debug("closed %zu connections that did not send a request within %" PRIu64 " s", n,
                          l->request_timeout_usec / USEC_PER_SEC);
}

static void *watchdog_main(void *userdata) {
        struct cm_limits *l = userdata;

        pthread_mutex_lock(&l->stop_lock);
        while (!l->stopping) {
                struct timespec ts;

                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_nsec += (long) WATCHDOG_PERIOD_MSEC * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000L;
                }
                (void) pthread_cond_timedwait(&l->stop_cond, &l->stop_lock, &ts);
                if (l->stopping)
                        break;
                pthread_mutex_unlock(&l->stop_lock);
                reap_slow(l);
                pthread_mutex_lock(&l->stop_lock);
        }
        pthread_mutex_unlock(&l->stop_lock);
        return NULL;
}

/* -------------------------------------------------------------------------------------------------
 * Life cycle
 */

int cm_limits_new(const struct cm_server_config *cfg, struct cm_limits **ret) {
        pthread_condattr_t ca;
        struct cm_limits *l;
        int r;

        l = new0(struct cm_limits, 1);
        if (!l)
                return -ENOMEM;
        l->rate = cfg->rate_limit;
        l->burst = MAX(cfg->rate_burst, 1U);
        l->request_timeout_usec = (uint64_t) MAX(cfg->request_timeout_sec, 1U) * USEC_PER_SEC;
        l->auth_fail_max = cfg->auth_fail_max;
        l->auth_window_usec = (uint64_t) cfg->auth_fail_window_sec * USEC_PER_SEC;
        l->auth_block_max_usec = (uint64_t) MAX(cfg->auth_block_max_sec, 1U) * USEC_PER_SEC;
        pthread_mutex_init(&l->conn_lock, NULL);
        pthread_mutex_init(&l->stop_lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&l->stop_cond, &ca);
        pthread_condattr_destroy(&ca);

        /* libmicrohttpd shares the connection limit out among its threads: never more in all. */
        l->n_conns = (size_t) cfg->max_connections + 16;
        l->conns = new0(struct cm_conn, l->n_conns);
        l->free_conns = new0(size_t, l->n_conns);
        if (!l->conns || !l->free_conns) {
                r = -ENOMEM;
                goto fail;
        }
        for (size_t i = 0; i < l->n_conns; i++) {
                l->conns[i].fd = -1;
                l->free_conns[l->n_free++] = l->n_conns - 1 - i;
        }
        r = table_init(&l->rate_table, LIMITS_RATE_SETS);
        if (r >= 0)
                r = table_init(&l->auth_table, LIMITS_AUTH_SETS);
        if (r < 0)
                goto fail;
        r = -pthread_create(&l->watchdog, NULL, watchdog_main, l);
        if (r < 0)
                goto fail;
        l->watchdog_started = true;
        *ret = l;
        return 0;
fail:
        cm_limits_free(l);
        return r;
}

struct cm_limits *cm_limits_free(struct cm_limits *l) {
        if (!l)
                return NULL;
        if (l->watchdog_started) {
                pthread_mutex_lock(&l->stop_lock);
                l->stopping = true;
                pthread_cond_signal(&l->stop_cond);
                pthread_mutex_unlock(&l->stop_lock);
                pthread_join(l->watchdog, NULL);
        }
        table_done(&l->rate_table);
        table_done(&l->auth_table);
        pthread_cond_destroy(&l->stop_cond);
        pthread_mutex_destroy(&l->stop_lock);
        pthread_mutex_destroy(&l->conn_lock);
        free(l->free_conns);
        free(l->conns);
        free(l);
        return NULL;
}
