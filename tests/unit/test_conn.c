/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The probes' own TLS and HTTP/1.1 client (src/monitor/conn.c) against a real TLS server in a thread
 * (OpenSSL with tests/testdata/tls/server.*, which names 127.0.0.1), driven the way the prober drives
 * it: the socket in epoll once, edge-triggered, cm_conn_run() on every event.
 */
#include "base/common.h"

#include <setjmp.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "base/fileio.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "monitor/conn.h"
#include "monitor/health.h"
#include "monitor/tls.h"
#include "support/net.h"

/* What the server does with each request of a connection. */
enum mode {
        MODE_KEEP, /* Content-Length, then chunked, keeping the connection */
        MODE_CLOSE_DELIMITED, /* a body delimited by the close */
        MODE_IDLE_CLOSE, /* answers one request, then closes the idle connection */
        MODE_NO_ANSWER, /* reads the request and closes */
        MODE_GARBAGE, /* not HTTP */
        MODE_LARGE, /* a body of 64 bytes */
};

struct server {
        int lfd;
        uint16_t port;
        SSL_CTX *ctx;
        pthread_t thread;
        enum mode mode;
        char last_request[1024];
        unsigned connections;
};

static SSL_CTX *shared_ctx;

static char *testdata(const char *name, size_t *ret_len) {
        char path[512];
        char *data = NULL;

        assert_true(snprintf(path, sizeof(path), "%s/tls/%s", CM_TESTDATA_DIR, name) < (int) sizeof(path));
        assert_int_equal(cm_read_file(path, 64 * 1024, true, &data, ret_len), 0);
        return data;
}

static struct cm_tls_identity *identity_of(const char *ca) {
        struct cm_kubeconfig kc = {};
        struct cm_tls_identity *id = NULL;

        kc.ca_pem = testdata(ca, &kc.ca_len);
        assert_int_equal(cm_tls_identity_new(&kc, &id, NULL, 0), 0);
        cm_kubeconfig_done(&kc);
        return id;
}

/* Reads one request head (up to the empty line); false at the end of the stream. */
static bool read_request(SSL *ssl, char *buf, size_t size) {
        size_t n = 0;

        while (n + 1 < size) {
                int k = SSL_read(ssl, buf + n, 1);

                if (k <= 0)
                        return false;
                n += (size_t) k;
                buf[n] = '\0';
                if (n >= 4 && memcmp(buf + n - 4, "\r\n\r\n", 4) == 0)
                        return true;
        }
        return false;
}

static void write_all(SSL *ssl, const char *s) {
        (void) SSL_write(ssl, s, (int) strlen(s));
}

static void serve_one(struct server *srv, int fd) {
        SSL *ssl = SSL_new(srv->ctx);
        char req[1024];

        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) != 1)
                goto out;
        for (unsigned i = 0; read_request(ssl, req, sizeof(req)); i++) {
                (void) cm_strlcpy(srv->last_request, req, sizeof(srv->last_request));
                switch (srv->mode) {
                case MODE_KEEP:
                        if (i % 2 == 0)
                                write_all(ssl, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
                        else
                                write_all(ssl, "HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: "
                                               "chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
                        continue;
                case MODE_CLOSE_DELIMITED:
                        write_all(ssl, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end");
                        (void) SSL_shutdown(ssl);
                        goto out;
                case MODE_IDLE_CLOSE:
                        write_all(ssl, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                        usleep(100 * 1000);
                        (void) SSL_shutdown(ssl);
                        goto out;
                case MODE_NO_ANSWER:
                        goto out;
                case MODE_GARBAGE:
                        write_all(ssl, "SSH-2.0-OpenSSH_9.2\r\n\r\n");
                        continue;
                case MODE_LARGE:
                        write_all(ssl, "HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n"
                                       "0123456789012345678901234567890123456789012345678901234567890123");
                        continue;
                }
        }
out:
        SSL_free(ssl);
        ERR_clear_error();
}

static void *server_main(void *userdata) {
        struct server *srv = userdata;

        for (;;) {
                int fd = accept(srv->lfd, NULL, NULL);

                if (fd < 0)
                        return NULL; /* the listening socket was shut down */
                srv->connections++;
                serve_one(srv, fd);
                (void) close(fd);
        }
}

static void server_start(struct server *srv) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        char path[512];

        *srv = (struct server){ .lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0) };
        assert_true(srv->lfd >= 0);
        assert_int_equal(bind(srv->lfd, (struct sockaddr *) &a, sizeof(a)), 0);
        assert_int_equal(listen(srv->lfd, 8), 0);
        assert_int_equal(getsockname(srv->lfd, (struct sockaddr *) &a, &len), 0);
        srv->port = ntohs(a.sin_port);
        srv->ctx = SSL_CTX_new(TLS_server_method());
        assert_non_null(srv->ctx);
        assert_true(snprintf(path, sizeof(path), "%s/tls/server.pem", CM_TESTDATA_DIR) < (int) sizeof(path));
        assert_int_equal(SSL_CTX_use_certificate_file(srv->ctx, path, SSL_FILETYPE_PEM), 1);
        assert_true(snprintf(path, sizeof(path), "%s/tls/server.key", CM_TESTDATA_DIR) < (int) sizeof(path));
        assert_int_equal(SSL_CTX_use_PrivateKey_file(srv->ctx, path, SSL_FILETYPE_PEM), 1);
        assert_int_equal(pthread_create(&srv->thread, NULL, server_main, srv), 0);
}

static void server_stop(struct server *srv) {
        (void) shutdown(srv->lfd, SHUT_RDWR);
        assert_int_equal(pthread_join(srv->thread, NULL), 0);
        (void) close(srv->lfd);
        SSL_CTX_free(srv->ctx);
}

static struct cm_conn *open_to(uint16_t port, struct cm_tls_identity *id, const char *name, int *epfd) {
        struct sockaddr_in a = { .sin_family = AF_INET,
                                 .sin_port = htons(port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        struct cm_conn *c = NULL;

        assert_int_equal(cm_conn_open(shared_ctx, id, name, (struct sockaddr *) &a, sizeof(a), true, &c), 0);
        *epfd = epoll_create1(EPOLL_CLOEXEC);
        assert_true(*epfd >= 0);
        assert_int_equal(
                epoll_ctl(*epfd, EPOLL_CTL_ADD, cm_conn_fd(c),
                          &(struct epoll_event){ .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET }),
                0);
        return c;
}

/* One GET, driven to its end (at most 5 s): cm_conn_run's last result. */
static int get(struct cm_conn *c, int epfd, const char *path, struct strbuf *body) {
        static struct cm_http1_response resp;
        char req[256];
        int rc;

        assert_true(snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path) <
                    (int) sizeof(req));
        assert_int_equal(cm_conn_send(c, req, strlen(req), body, &resp), 0);
        for (int i = 0; i < 50; i++) {
                struct epoll_event ev;

                rc = cm_conn_run(c);
                if (rc != 0)
                        return rc;
                (void) epoll_wait(epfd, &ev, 1, 100);
        }
        fail_msg("the exchange did not end");
        return 0;
}

static void test_endpoint_parse(void **state) {
        static const struct {
                const char *url;
                int r;
                uint16_t port;
                const char *host, *authority, *prefix;
        } cases[] = {
                { "https://10.0.0.1:6443", 0, 6443, "10.0.0.1", "10.0.0.1:6443", "" },
                { "https://api.example.com", 0, 443, "api.example.com", "api.example.com", "" },
                { "HTTPS://api.example.com/k8s/clusters/c-1//", 0, 443, "api.example.com", "api.example.com",
                  "/k8s/clusters/c-1" },
                { "https://[::1]:6443/", 0, 6443, "::1", "[::1]:6443", "" },
                { "https://[fd00::2]", 0, 443, "fd00::2", "[fd00::2]", "" },
                { "http://10.0.0.1", -EINVAL, 0, NULL, NULL, NULL },
                { "https://", -EINVAL, 0, NULL, NULL, NULL },
                { "https://:6443", -EINVAL, 0, NULL, NULL, NULL },
                { "https://host:", -EINVAL, 0, NULL, NULL, NULL },
                { "https://host:0", -EINVAL, 0, NULL, NULL, NULL },
                { "https://host:65536", -EINVAL, 0, NULL, NULL, NULL },
                { "https://host:64x", -EINVAL, 0, NULL, NULL, NULL },
                { "https://[::1", -EINVAL, 0, NULL, NULL, NULL },
                { "https://[]:1", -EINVAL, 0, NULL, NULL, NULL },
                { "https://[not-v6]:1", -EINVAL, 0, NULL, NULL, NULL },
                { "https://[::1]x", -EINVAL, 0, NULL, NULL, NULL },
                { "https://ho st", -EINVAL, 0, NULL, NULL, NULL },
                { "https://a%0d%0aX:1", -EINVAL, 0, NULL, NULL, NULL },
                { "https://h:6443/p?x=1", -EINVAL, 0, NULL, NULL, NULL },
                { "https://h:6443/p#f", -EINVAL, 0, NULL, NULL, NULL },
        };
        (void) state;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct cm_endpoint e;
                int r = cm_endpoint_parse(cases[i].url, &e);

                print_message("%s: %d\n", cases[i].url, r);
                assert_int_equal(r, cases[i].r);
                if (r < 0)
                        continue;
                assert_string_equal(e.host, cases[i].host);
                assert_string_equal(e.authority, cases[i].authority);
                assert_string_equal(e.prefix, cases[i].prefix);
                assert_int_equal(e.port, cases[i].port);
        }
}

/* Requests one after another on one connection: a Content-Length answer, then a chunked one. */
static void test_conn_keeps(void **state) {
        struct cm_tls_identity *id = identity_of("ca.pem");
        _cleanup_strbuf_ struct strbuf body = STRBUF_INIT(1024);
        struct server srv;
        struct cm_conn *c;
        int epfd;
        (void) state;

        server_start(&srv);
        c = open_to(srv.port, id, "127.0.0.1", &epfd);
        for (int i = 0; i < 4; i++) {
                assert_int_equal(get(c, epfd, "/readyz?verbose", &body), 1);
                assert_int_equal(cm_conn_status(c), i % 2 == 0 ? 200 : 500);
                assert_string_equal(body.buf, i % 2 == 0 ? "hello" : "hello world");
                assert_true(cm_conn_reusable(c));
                assert_true(cm_conn_alive(c));
        }
        assert_non_null(strstr(srv.last_request, "GET /readyz?verbose HTTP/1.1\r\nHost: 127.0.0.1\r\n"));
        assert_int_equal(srv.connections, 1);
        cm_conn_close(c);
        (void) close(epfd);
        server_stop(&srv);
        cm_tls_identity_free(id);
}

/* A body that ends with the connection: complete, and the connection is not used again. */
static void test_conn_close_delimited(void **state) {
        struct cm_tls_identity *id = identity_of("ca.pem");
        _cleanup_strbuf_ struct strbuf body = STRBUF_INIT(1024);
        struct server srv;
        struct cm_conn *c;
        int epfd;
        (void) state;

        server_start(&srv);
        srv.mode = MODE_CLOSE_DELIMITED;
        c = open_to(srv.port, id, "127.0.0.1", &epfd);
        assert_int_equal(get(c, epfd, "/version", &body), 1);
        assert_int_equal(cm_conn_status(c), 200);
        assert_string_equal(body.buf, "until the end");
        assert_false(cm_conn_reusable(c));
        cm_conn_close(c);
        (void) close(epfd);
        server_stop(&srv);
        cm_tls_identity_free(id);
}

/*
 * The server closes an idle connection: it is seen as not alive; a request sent on it anyway fails as
 * stale (it may be sent again on a new connection; one that gets no answer on a new connection is not:
 * test_conn_failures).
 */
static void test_conn_stale(void **state) {
        struct cm_tls_identity *id = identity_of("ca.pem");
        _cleanup_strbuf_ struct strbuf body = STRBUF_INIT(1024);
        struct server srv;
        struct cm_conn *c;
        int epfd;
        (void) state;

        server_start(&srv);
        srv.mode = MODE_IDLE_CLOSE;
        c = open_to(srv.port, id, "127.0.0.1", &epfd);
        assert_int_equal(get(c, epfd, "/livez", &body), 1);
        assert_string_equal(body.buf, "ok");
        assert_true(cm_conn_reusable(c));
        for (int i = 0; i < 50 && cm_conn_alive(c); i++)
                usleep(20 * 1000);
        assert_false(cm_conn_alive(c));
        assert_true(get(c, epfd, "/livez", &body) < 0);
        assert_true(cm_conn_stale(c));
        assert_int_equal(cm_conn_failure(c), CM_CONN_UNREACHABLE);
        cm_conn_close(c);
        (void) close(epfd);
        server_stop(&srv);
        cm_tls_identity_free(id);
}

/*
 * A new connection's first request fails with failure, and its reason holds in_error (when given);
 * returns cm_conn_run's result.
 */
static int expect_failure(uint16_t port, struct cm_tls_identity *id, const char *name, struct strbuf *body,
                          enum cm_conn_failure failure, const char *in_error) {
        int epfd, rc;
        struct cm_conn *c = open_to(port, id, name, &epfd);

        rc = get(c, epfd, "/livez", body);
        print_message("%s\n", cm_conn_error(c));
        assert_true(rc < 0);
        assert_int_equal(cm_conn_failure(c), failure);
        assert_false(cm_conn_stale(c));
        if (in_error)
                assert_non_null(strstr(cm_conn_error(c), in_error));
        cm_conn_close(c);
        (void) close(epfd);
        return rc;
}

/* What goes wrong says what it was: not HTTP, too large, another CA, another name, nobody listening. */
static void test_conn_failures(void **state) {
        struct cm_tls_identity *id = identity_of("ca.pem"), *other = identity_of("other-ca.pem");
        _cleanup_strbuf_ struct strbuf body = STRBUF_INIT(16);
        struct server srv;
        (void) state;

        server_start(&srv);
        srv.mode = MODE_GARBAGE;
        (void) expect_failure(srv.port, id, "127.0.0.1", &body, CM_CONN_PROTOCOL, "not valid HTTP/1.1");
        srv.mode = MODE_LARGE;
        assert_int_equal(
                expect_failure(srv.port, id, "127.0.0.1", &body, CM_CONN_TOO_LARGE, "larger than 16"),
                -EFBIG);
        assert_true(body.len <= 16);
        srv.mode = MODE_NO_ANSWER;
        (void) expect_failure(srv.port, id, "127.0.0.1", &body, CM_CONN_UNREACHABLE, "without answering");
        srv.mode = MODE_KEEP;
        (void) expect_failure(srv.port, other, "127.0.0.1", &body, CM_CONN_TLS, "certificate");
        /* The identity has a session for 127.0.0.1: not offered for another name. */
        (void) expect_failure(srv.port, id, "127.0.0.9", &body, CM_CONN_TLS, "IP address mismatch");
        server_stop(&srv);
        (void) expect_failure((uint16_t) cm_test_free_port(), id, "127.0.0.1", &body, CM_CONN_UNREACHABLE,
                              "refused");
        cm_tls_identity_free(id);
        cm_tls_identity_free(other);
}

static int setup(void **state) {
        (void) state;
        shared_ctx = cm_tls_client_ctx_new();
        return shared_ctx ? 0 : -1;
}

static int teardown(void **state) {
        (void) state;
        SSL_CTX_free(shared_ctx);
        return 0;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_endpoint_parse),       cmocka_unit_test(test_conn_keeps),
                cmocka_unit_test(test_conn_close_delimited), cmocka_unit_test(test_conn_stale),
                cmocka_unit_test(test_conn_failures),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
