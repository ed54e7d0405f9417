/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The monitor's resolver against the local system only: literals, "localhost" (/etc/hosts) and names
 * under the reserved .invalid TLD, which never resolve (RFC 6761).
 */
#include "base/common.h"

#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>

#include "base/strbuf.h"
#include "base/util.h"
#include "monitor/resolve.h"

/*
 * The longest a lookup may take to settle in these tests: a name server that drops a query costs
 * glibc 5 s before it asks again.
 */
#define WAIT_MS 25000
/*
 * A label longer than DNS allows (63): glibc refuses to build the query, so names with it fail at
 * once without a name server. The tests that ask for many failing names use it; a few plain .invalid
 * names go to the system's name server, which may be slow or drop queries here and there.
 */
#define LONG_LABEL "label-of-64-characters-no-name-server-is-asked-for-such-a-name-x"
#define THREADS 4U

struct fixture {
        int efd;
        struct cm_resolver *r;
};

static int setup(void **state) {
        struct fixture *f = new0(struct fixture, 1);

        if (!f)
                return -1;
        f->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (f->efd < 0 || cm_resolver_new(THREADS, f->efd, &f->r) < 0) {
                if (f->efd >= 0)
                        (void) close(f->efd);
                free(f);
                return -1;
        }
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;

        f->r = cm_resolver_free(f->r);
        (void) close(f->efd);
        free(f);
        return 0;
}

static void sleep_ms(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Waits up to ms for a notification and resets the eventfd; whether one came. */
static bool notified(int efd, int ms) {
        struct pollfd p = { .fd = efd, .events = POLLIN };
        uint64_t v = 0;

        if (poll(&p, 1, ms) != 1)
                return false;
        assert_int_equal(read(efd, &v, sizeof(v)), sizeof(v));
        return v > 0;
}

/* Asks until the answer is something else than -EAGAIN, waiting on the eventfd (WAIT_MS at most). */
static int lookup_wait(struct fixture *f, const char *host, uint16_t port, struct sockaddr_storage *addr,
                       socklen_t *addr_len, char *error, size_t error_size) {
        uint64_t deadline = cm_mono_usec() + WAIT_MS * USEC_PER_MSEC;

        for (;;) {
                int k = cm_resolver_lookup(f->r, host, port, addr, addr_len, error, error_size);
                uint64_t now = cm_mono_usec();

                if (k != -EAGAIN || now >= deadline)
                        return k;
                (void) notified(f->efd, (int) ((deadline - now) / USEC_PER_MSEC) + 1);
        }
}

static bool is_loopback(const struct sockaddr_storage *ss, socklen_t len, uint16_t port) {
        const struct sockaddr_in *in = (const struct sockaddr_in *) ss;
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) ss;

        if (ss->ss_family == AF_INET)
                return len == sizeof(*in) && ntohs(in->sin_port) == port &&
                       ntohl(in->sin_addr.s_addr) >> 24 == 127;
        if (ss->ss_family == AF_INET6)
                return len == sizeof(*in6) && ntohs(in6->sin6_port) == port &&
                       IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
        return false;
}

static void test_new_invalid(void **state) {
        struct cm_resolver *r = NULL;

        assert_int_equal(cm_resolver_new(0, 0, &r), -EINVAL);
        assert_int_equal(cm_resolver_new(CM_RESOLVER_THREADS_MAX + 1, 0, &r), -EINVAL);
        assert_int_equal(cm_resolver_new(1, -1, &r), -EINVAL);
        assert_null(r);
        assert_null(cm_resolver_free(NULL));
}

static void test_literals(void **state) {
        static const struct {
                const char *host;
                uint16_t port;
                int family;
        } cases[] = {
                { "192.0.2.7", 6443, AF_INET },    { "127.0.0.1", 1, AF_INET },
                { "0.0.0.0", 65535, AF_INET },     { "::1", 443, AF_INET6 },
                { "2001:db8::5", 6443, AF_INET6 }, { "::ffff:192.0.2.1", 80, AF_INET6 },
        };
        struct fixture *f = *state;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct sockaddr_storage ss;
                socklen_t len = 0;
                unsigned char want[16];

                memset(&ss, 0xaa, sizeof(ss));
                assert_int_equal(inet_pton(cases[i].family, cases[i].host, want), 1);
                assert_int_equal(cm_resolver_lookup(f->r, cases[i].host, cases[i].port, &ss, &len, NULL, 0),
                                 0);
                assert_int_equal(ss.ss_family, cases[i].family);
                if (cases[i].family == AF_INET) {
                        const struct sockaddr_in *in = (const struct sockaddr_in *) &ss;

                        assert_int_equal(len, sizeof(*in));
                        assert_int_equal(in->sin_port, htons(cases[i].port));
                        assert_memory_equal(&in->sin_addr, want, 4);
                } else {
                        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) &ss;

                        assert_int_equal(len, sizeof(*in6));
                        assert_int_equal(in6->sin6_port, htons(cases[i].port));
                        assert_memory_equal(&in6->sin6_addr, want, 16);
                        assert_int_equal(in6->sin6_scope_id, 0);
                }
        }
        /* No lookup, no cache entry. */
        assert_int_equal(cm_resolver_size(f->r), 0);
        assert_false(notified(f->efd, 0));
}

static void test_localhost(void **state) {
        struct fixture *f = *state;
        struct sockaddr_storage ss;
        socklen_t len = 0;

        assert_int_equal(cm_resolver_lookup(f->r, "localhost", 6443, &ss, &len, NULL, 0), -EAGAIN);
        assert_int_equal(len, 0);
        assert_int_equal(lookup_wait(f, "localhost", 6443, &ss, &len, NULL, 0), 0);
        assert_true(is_loopback(&ss, len, 6443));
        assert_int_equal(cm_resolver_size(f->r), 1);
}

static void test_ports(void **state) {
        struct fixture *f = *state;
        struct sockaddr_storage ss;
        socklen_t len = 0;

        /* (host, port) is the key: each port its own entry, each answer with its own port. */
        assert_int_equal(lookup_wait(f, "localhost", 1, &ss, &len, NULL, 0), 0);
        assert_true(is_loopback(&ss, len, 1));
        assert_int_equal(lookup_wait(f, "localhost", 65535, &ss, &len, NULL, 0), 0);
        assert_true(is_loopback(&ss, len, 65535));
        assert_int_equal(cm_resolver_lookup(f->r, "localhost", 1, &ss, &len, NULL, 0), 0);
        assert_true(is_loopback(&ss, len, 1));
        assert_int_equal(cm_resolver_size(f->r), 2);
}

static void test_failure(void **state) {
        struct fixture *f = *state;
        struct sockaddr_storage ss;
        socklen_t len = 12345;
        char error[256] = "", small[8] = "";

        assert_int_equal(
                cm_resolver_lookup(f->r, "no-such-host.invalid", 443, &ss, &len, error, sizeof(error)),
                -EAGAIN);
        assert_int_equal(lookup_wait(f, "no-such-host.invalid", 443, &ss, &len, error, sizeof(error)),
                         -EHOSTUNREACH);
        assert_int_equal(len, 12345);
        assert_true(strneq(error, "no-such-host.invalid: ", 22));
        assert_true(strlen(error) > 22);
        /* A short buffer gets the start of the reason; no buffer is fine. */
        assert_int_equal(
                cm_resolver_lookup(f->r, "no-such-host.invalid", 443, &ss, &len, small, sizeof(small)),
                -EHOSTUNREACH);
        assert_string_equal(small, "no-such");
        assert_int_equal(cm_resolver_lookup(f->r, "no-such-host.invalid", 443, &ss, &len, NULL, 0),
                         -EHOSTUNREACH);
}

static void test_cached(void **state) {
        struct fixture *f = *state;
        struct sockaddr_storage ss;
        socklen_t len = 0;
        char error[256];

        assert_int_equal(lookup_wait(f, "localhost", 443, &ss, &len, NULL, 0), 0);
        assert_int_equal(
                lookup_wait(f, "cached." LONG_LABEL ".invalid", 443, &ss, &len, error, sizeof(error)),
                -EHOSTUNREACH);
        (void) notified(f->efd, 0);

        /* Both fresh: answered from the cache, no lookup started. */
        for (int i = 0; i < 3; i++) {
                len = 0;
                assert_int_equal(cm_resolver_lookup(f->r, "localhost", 443, &ss, &len, NULL, 0), 0);
                assert_true(is_loopback(&ss, len, 443));
                assert_int_equal(cm_resolver_lookup(f->r, "cached." LONG_LABEL ".invalid", 443, &ss, &len,
                                                    error, sizeof(error)),
                                 -EHOSTUNREACH);
        }
        assert_false(notified(f->efd, 200));
        assert_int_equal(cm_resolver_size(f->r), 2);
}

static void test_stale_refresh(void **state) {
        struct fixture *f = *state;
        struct sockaddr_storage ss;
        socklen_t len = 0;

        cm_resolver_set_ttl(f->r, 500 * USEC_PER_MSEC, 5 * USEC_PER_SEC);
        assert_int_equal(lookup_wait(f, "localhost", 80, &ss, &len, NULL, 0), 0);
        (void) notified(f->efd, 0);
        sleep_ms(600);

        /* Stale: served at once, and a refresh runs in the background. */
        len = 0;
        assert_int_equal(cm_resolver_lookup(f->r, "localhost", 80, &ss, &len, NULL, 0), 0);
        assert_true(is_loopback(&ss, len, 80));
        /* Asking again while it runs starts no second one. */
        assert_int_equal(cm_resolver_lookup(f->r, "localhost", 80, &ss, &len, NULL, 0), 0);
        assert_true(notified(f->efd, WAIT_MS));
        assert_false(notified(f->efd, 100));

        /* The refresh made the answer fresh again: no further lookup. */
        assert_int_equal(cm_resolver_lookup(f->r, "localhost", 80, &ss, &len, NULL, 0), 0);
        assert_true(is_loopback(&ss, len, 80));
        assert_false(notified(f->efd, 100));
}

static void test_failure_expiry(void **state) {
        static const char host[] = "retry." LONG_LABEL ".invalid";
        struct fixture *f = *state;
        struct sockaddr_storage ss;
        socklen_t len = 0;
        char error[256];

        cm_resolver_set_ttl(f->r, 60 * USEC_PER_SEC, 1 * USEC_PER_MSEC);
        assert_int_equal(lookup_wait(f, host, 443, &ss, &len, error, sizeof(error)), -EHOSTUNREACH);
        (void) notified(f->efd, 0);
        sleep_ms(20);

        /* A stale failure is not served: the name is looked up again. */
        assert_int_equal(cm_resolver_lookup(f->r, host, 443, &ss, &len, error, sizeof(error)), -EAGAIN);
        assert_true(notified(f->efd, WAIT_MS));
        assert_int_equal(lookup_wait(f, host, 443, &ss, &len, error, sizeof(error)), -EHOSTUNREACH);
        assert_int_equal(cm_resolver_size(f->r), 1);
}

static void test_names_invalid(void **state) {
        static const char *const bad[] = {
                "", "bad host", "a\nb.invalid", "tab\t.invalid", "caf\xc3\xa9.invalid", "del\x7f.invalid"
        };
        struct fixture *f = *state;
        struct sockaddr_storage ss;
        socklen_t len = 0;
        char longest[CM_RESOLVER_HOST_MAX + 1], too_long[CM_RESOLVER_HOST_MAX + 2], error[512];

        /* Three labels of 63, one of 53, ".invalid": 253 characters, the most a name may have. */
        memset(longest, 'a', sizeof(longest));
        for (size_t i = 63; i < 200; i += 64)
                longest[i] = '.';
        memcpy(longest + 245, ".invalid", 9);
        assert_int_equal(strlen(longest), CM_RESOLVER_HOST_MAX);
        memset(too_long, 'a', sizeof(too_long));
        memcpy(too_long, longest, 245);
        memcpy(too_long + 246, ".invalid", 9);
        assert_int_equal(strlen(too_long), CM_RESOLVER_HOST_MAX + 1);

        assert_int_equal(cm_resolver_lookup(f->r, NULL, 443, &ss, &len, NULL, 0), -EINVAL);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(cm_resolver_lookup(f->r, bad[i], 443, &ss, &len, NULL, 0), -EINVAL);
        assert_int_equal(cm_resolver_lookup(f->r, too_long, 443, &ss, &len, NULL, 0), -EINVAL);
        assert_int_equal(cm_resolver_size(f->r), 0);

        assert_int_equal(lookup_wait(f, longest, 443, &ss, &len, error, sizeof(error)), -EHOSTUNREACH);
        assert_true(strneq(error, longest, CM_RESOLVER_HOST_MAX));
        assert_int_equal(cm_resolver_size(f->r), 1);
}

static void test_many(void **state) {
        struct fixture *f = *state;
        struct sockaddr_storage ss;
        socklen_t len = 0;
        bool settled[200] = {};
        size_t left = ELEMENTSOF(settled);
        uint64_t deadline;
        char name[128], error[256];

        /* Inserted out of order (h10 sorts before h2), with a name that resolves among them. */
        for (size_t i = 0; i < ELEMENTSOF(settled); i++) {
                (void) cm_snprintf(name, sizeof(name), "h%zu." LONG_LABEL ".invalid", i);
                assert_int_equal(cm_resolver_lookup(f->r, name, 6443, &ss, &len, error, sizeof(error)),
                                 -EAGAIN);
                if (i == ELEMENTSOF(settled) / 2)
                        assert_int_equal(cm_resolver_lookup(f->r, "localhost", 6443, &ss, &len, NULL, 0),
                                         -EAGAIN);
        }
        assert_int_equal(cm_resolver_size(f->r), ELEMENTSOF(settled) + 1);

        /* As the monitor does: after each notification, ask again for every name still waiting. */
        deadline = cm_mono_usec() + WAIT_MS * USEC_PER_MSEC;
        while (left > 0 && cm_mono_usec() < deadline) {
                (void) notified(f->efd, 100);
                for (size_t i = 0; i < ELEMENTSOF(settled); i++) {
                        int k;

                        if (settled[i])
                                continue;
                        (void) cm_snprintf(name, sizeof(name), "h%zu." LONG_LABEL ".invalid", i);
                        k = cm_resolver_lookup(f->r, name, 6443, &ss, &len, error, sizeof(error));
                        if (k == -EAGAIN)
                                continue;
                        assert_int_equal(k, -EHOSTUNREACH);
                        assert_true(strneq(error, name, strlen(name)));
                        settled[i] = true;
                        left--;
                }
        }
        assert_int_equal(left, 0);
        assert_int_equal(lookup_wait(f, "localhost", 6443, &ss, &len, NULL, 0), 0);
        assert_true(is_loopback(&ss, len, 6443));
        assert_int_equal(cm_resolver_size(f->r), ELEMENTSOF(settled) + 1);

        /* Every one of them is found again in the cache. */
        (void) notified(f->efd, 0);
        for (size_t i = 0; i < ELEMENTSOF(settled); i++) {
                (void) cm_snprintf(name, sizeof(name), "h%zu." LONG_LABEL ".invalid", i);
                assert_int_equal(cm_resolver_lookup(f->r, name, 6443, &ss, &len, NULL, 0), -EHOSTUNREACH);
        }
        assert_int_equal(cm_resolver_lookup(f->r, "localhost", 6443, &ss, &len, NULL, 0), 0);
        assert_false(notified(f->efd, 0));
}

static void test_prune(void **state) {
        struct fixture *f = *state;
        struct sockaddr_storage ss;
        socklen_t len = 0;

        cm_resolver_set_idle(f->r, 50 * USEC_PER_MSEC);
        assert_int_equal(lookup_wait(f, "localhost", 443, &ss, &len, NULL, 0), 0);
        assert_int_equal(cm_resolver_size(f->r), 1);
        sleep_ms(100);

        /* The next call sweeps: localhost was not asked for in 50 ms and is gone: it is looked up again. */
        assert_int_equal(cm_resolver_lookup(f->r, "trigger." LONG_LABEL ".invalid", 443, &ss, &len, NULL, 0),
                         -EAGAIN);
        assert_int_equal(cm_resolver_size(f->r), 1);
        assert_int_equal(cm_resolver_lookup(f->r, "localhost", 443, &ss, &len, NULL, 0), -EAGAIN);
        assert_int_equal(cm_resolver_size(f->r), 2);
}

/*
 * More lookups than the queue holds: those that do not fit are told to ask again, and are answered
 * then. One worker and a queue of 2 against 300 names asked for in a tight loop: most do not fit.
 */
static void test_queue_full(void **state) {
        struct sockaddr_storage ss;
        socklen_t len = 0;
        struct cm_resolver *r = NULL;
        bool settled[300] = {};
        size_t left = ELEMENTSOF(settled);
        uint64_t deadline;
        char name[128];
        int efd;

        efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        assert_true(efd >= 0);
        assert_int_equal(cm_resolver_new(1, efd, &r), 0);
        cm_resolver_set_queue_max(r, 2);
        deadline = cm_mono_usec() + WAIT_MS * USEC_PER_MSEC;
        while (left > 0 && cm_mono_usec() < deadline) {
                for (size_t i = 0; i < ELEMENTSOF(settled); i++) {
                        int k;

                        if (settled[i])
                                continue;
                        (void) cm_snprintf(name, sizeof(name), "q%zu." LONG_LABEL ".invalid", i);
                        k = cm_resolver_lookup(r, name, 443, &ss, &len, NULL, 0);
                        if (k == -EAGAIN)
                                continue;
                        assert_int_equal(k, -EHOSTUNREACH);
                        settled[i] = true;
                        left--;
                }
                (void) notified(efd, 100);
        }
        assert_int_equal(left, 0);
        assert_int_equal(cm_resolver_size(r), ELEMENTSOF(settled));
        r = cm_resolver_free(r);
        (void) close(efd);
}

static void test_free_pending(void **state) {
        struct sockaddr_storage ss;
        socklen_t len = 0;
        struct cm_resolver *r = NULL;
        uint64_t start;
        char name[128];
        int efd;

        efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        assert_true(efd >= 0);
        assert_int_equal(cm_resolver_new(2, efd, &r), 0);
        for (unsigned i = 0; i < 500; i++) {
                (void) cm_snprintf(name, sizeof(name), "p%u." LONG_LABEL ".invalid", i);
                assert_int_equal(cm_resolver_lookup(r, name, 443, &ss, &len, NULL, 0), -EAGAIN);
        }
        assert_int_equal(cm_resolver_lookup(r, "localhost", 443, &ss, &len, NULL, 0), -EAGAIN);
        assert_int_equal(cm_resolver_size(r), 501);
        /* Queued lookups are abandoned, running ones waited for; nothing leaks. */
        start = cm_mono_usec();
        assert_null(cm_resolver_free(r));
        assert_true(cm_mono_usec() - start < WAIT_MS * USEC_PER_MSEC);
        (void) close(efd);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_new_invalid),
                cmocka_unit_test_setup_teardown(test_literals, setup, teardown),
                cmocka_unit_test_setup_teardown(test_localhost, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ports, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failure, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cached, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stale_refresh, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failure_expiry, setup, teardown),
                cmocka_unit_test_setup_teardown(test_names_invalid, setup, teardown),
                cmocka_unit_test_setup_teardown(test_many, setup, teardown),
                cmocka_unit_test_setup_teardown(test_prune, setup, teardown),
                cmocka_unit_test(test_queue_full),
                cmocka_unit_test(test_free_pending),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
