/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <unistd.h>

#include "base/secret.h"
#include "base/util.h"
#include "monitor/conn.h"
#include "monitor/http1.h"

/* What one SSL_read() may hand over: one TLS record's plaintext at most. */
#define READ_CHUNK (16 * 1024)

enum conn_state {
        CONN_CONNECTING,
        CONN_HANDSHAKE,
        CONN_SENDING,
        CONN_RECEIVING,
        CONN_IDLE, /* the answer is complete */
        CONN_FAILED,
};

struct cm_conn {
        int fd;
        SSL *ssl;
        enum conn_state state;
        struct sockaddr_storage addr;
        socklen_t addr_len;
        bool established; /* the handshake completed */
        unsigned answered; /* complete answers on this connection */
        char *req; /* the request being written (wiped when written) */
        size_t req_len;
        struct strbuf *body;
        struct cm_http1_response *resp; /* the caller's, while an answer is read */
        int status;
        bool reusable;
        enum cm_conn_failure failure;
        char error[256];
};

int cm_endpoint_parse(const char *server, struct cm_endpoint *e) {
        const char *h, *end, *slash, *port = NULL;
        size_t hn;

        *e = (struct cm_endpoint){ .port = 443 };
        if (!server || strncasecmp(server, "https://", 8) != 0)
                return -EINVAL;
        /* It goes into the request line and the Host header: visible ASCII only, no query or fragment. */
        for (const char *p = server; *p; p++)
                if ((unsigned char) *p <= 0x20 || (unsigned char) *p >= 0x7f || *p == '?' || *p == '#')
                        return -EINVAL;
        h = server + 8;
        slash = strchr(h, '/');
        end = slash ? slash : h + strlen(h);
        if (end == h || (size_t) (end - h) >= sizeof(e->authority))
                return -EINVAL;
        memcpy(e->authority, h, (size_t) (end - h));
        e->authority[end - h] = '\0';
        if (h[0] == '[') {
                const char *close = memchr(h, ']', (size_t) (end - h));

                if (!close || close == h + 1)
                        return -EINVAL;
                hn = (size_t) (close - h - 1);
                if (hn >= sizeof(e->host))
                        return -EINVAL;
                memcpy(e->host, h + 1, hn);
                e->host[hn] = '\0';
                if (close + 1 < end) {
                        if (close[1] != ':')
                                return -EINVAL;
                        port = close + 2;
                }
                {
                        struct in6_addr a6;

                        if (inet_pton(AF_INET6, e->host, &a6) != 1)
                                return -EINVAL;
                }
        } else {
                const char *colon = memchr(h, ':', (size_t) (end - h));

                hn = (size_t) ((colon ? colon : end) - h);
                if (hn == 0 || hn >= sizeof(e->host))
                        return -EINVAL;
                memcpy(e->host, h, hn);
                e->host[hn] = '\0';
                if (colon)
                        port = colon + 1;
                for (size_t i = 0; i < hn; i++)
                        if (!(isalnum((unsigned char) e->host[i]) || e->host[i] == '-' ||
                              e->host[i] == '.' || e->host[i] == '_'))
                                return -EINVAL;
        }
        if (port) {
                unsigned v = 0;

                if (port == end || end - port > 5)
                        return -EINVAL;
                for (const char *p = port; p < end; p++) {
                        if (*p < '0' || *p > '9')
                                return -EINVAL;
                        v = v * 10 + (unsigned) (*p - '0');
                }
                if (v == 0 || v > 65535)
                        return -EINVAL;
                e->port = (uint16_t) v;
        }
        if (slash) {
                size_t pn = strlen(slash);

                while (pn > 0 && slash[pn - 1] == '/')
                        pn--;
                if (pn >= sizeof(e->prefix))
                        return -EINVAL;
                memcpy(e->prefix, slash, pn);
                e->prefix[pn] = '\0';
        }
        return 0;
}

static int conn_fail(struct cm_conn *c, enum cm_conn_failure f, int err, const char *fmt, ...)
        _printf_(4, 5);
static int conn_fail(struct cm_conn *c, enum cm_conn_failure f, int err, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(c->error, sizeof(c->error), fmt, ap);
        va_end(ap);
        c->failure = f;
        c->state = CONN_FAILED;
        c->reusable = false;
        ERR_clear_error();
        return err < 0 ? err : -EIO;
}

int cm_conn_open(SSL_CTX *ctx, struct cm_tls_identity *id, const char *name, const struct sockaddr *addr,
                 socklen_t addr_len, bool kept_idle, struct cm_conn **ret) {
        struct cm_conn *c;
        int one = 1, r;

        if (addr_len > sizeof(c->addr))
                return -EINVAL;
        c = new0(struct cm_conn, 1);
        if (!c)
                return -ENOMEM;
        memcpy(&c->addr, addr, addr_len);
        c->addr_len = addr_len;
        c->fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
        if (c->fd < 0) {
                r = -errno;
                free(c);
                return r;
        }
        /* A request follows the handshake's last flight at once: no wait for its acknowledgement. */
        (void) setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->ssl = SSL_new(ctx);
        if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
                ERR_clear_error();
                (void) cm_conn_close(c);
                return -ENOMEM;
        }
        SSL_set_connect_state(c->ssl);
        r = cm_tls_identity_attach(id, c->ssl, name, kept_idle);
        if (r < 0) {
                (void) cm_conn_close(c);
                return r;
        }
        if (connect(c->fd, addr, addr_len) < 0 && errno != EINPROGRESS) {
                r = -errno;
                (void) cm_conn_close(c);
                return r;
        }
        c->state = CONN_CONNECTING;
        *ret = c;
        return 0;
}

static void request_drop(struct cm_conn *c) {
        if (!c->req)
                return;
        cm_wipe(c->req, c->req_len);
        free(c->req);
        c->req = NULL;
        c->req_len = 0;
}

struct cm_conn *cm_conn_close(struct cm_conn *c) {
        if (!c)
                return NULL;
        if (c->ssl) {
                /* A polite end when the session is up and healthy; never waits for the server's. */
                if (c->established && c->state != CONN_FAILED)
                        (void) SSL_shutdown(c->ssl);
                SSL_free(c->ssl);
                ERR_clear_error();
        }
        if (c->fd >= 0)
                (void) close(c->fd);
        request_drop(c);
        free(c);
        return NULL;
}

int cm_conn_fd(const struct cm_conn *c) {
        return c->fd;
}

int cm_conn_send(struct cm_conn *c, const char *req, size_t len, struct strbuf *body,
                 struct cm_http1_response *resp) {
        if (c->state == CONN_FAILED || c->state == CONN_SENDING || c->state == CONN_RECEIVING || c->req ||
            len == 0 || len > INT_MAX)
                return -EINVAL;
        c->req = malloc(len);
        if (!c->req)
                return -ENOMEM;
        memcpy(c->req, req, len);
        c->req_len = len;
        c->body = body;
        strbuf_reset(body);
        c->resp = resp;
        c->status = 0;
        cm_http1_response_init(resp, body);
        c->reusable = false;
        if (c->state == CONN_IDLE)
                c->state = CONN_SENDING;
        return 0;
}

/* Says why a TLS call failed, from SSL_get_error() and the error queue. */
static int tls_failed(struct cm_conn *c, int rc, const char *during) {
        int saved = errno, e = SSL_get_error(c->ssl, rc);
        unsigned long code = ERR_peek_last_error();

        if (e == SSL_ERROR_SSL) {
                long v = SSL_get_verify_result(c->ssl);

                if (!c->established && v != X509_V_OK)
                        return conn_fail(c, CM_CONN_TLS, -EIO, "TLS %s: the server's certificate: %s",
                                         during, X509_verify_cert_error_string(v));
                return conn_fail(c, CM_CONN_TLS, -EIO, "TLS %s: %s", during,
                                 code && ERR_reason_error_string(code) ? ERR_reason_error_string(code)
                                                                       : "protocol error");
        }
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && saved == 0))
                return conn_fail(c, CM_CONN_UNREACHABLE, -ECONNRESET,
                                 "the server closed the connection (%s)", during);
        if (e == SSL_ERROR_SYSCALL)
                return conn_fail(c, CM_CONN_UNREACHABLE, -saved, "%s: %s", during, strerror(saved));
        return conn_fail(c, CM_CONN_UNREACHABLE, -EIO, "TLS %s: error %d", during, e);
}

/* The end of the stream, with or without the server's close_notify (many close without one). */
static bool end_of_stream(const struct cm_conn *c, int rc, int saved_errno) {
        int e = SSL_get_error(c->ssl, rc);
        unsigned long code = ERR_peek_error();

        return e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && saved_errno == 0) ||
               (e == SSL_ERROR_SSL && ERR_GET_LIB(code) == ERR_LIB_SSL &&
                ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING);
}

/* The answer is complete: the connection waits for the next request (when reusable). Returns 1. */
static int answer_complete(struct cm_conn *c, bool reusable) {
        c->state = CONN_IDLE;
        c->status = c->resp->status;
        c->resp = NULL;
        c->reusable = reusable;
        c->answered++;
        return 1;
}

static int conn_receive(struct cm_conn *c) {
        char buf[READ_CHUNK];

        for (;;) {
                int n = SSL_read(c->ssl, buf, (int) sizeof(buf)), e, r;
                size_t used = 0;

                if (n <= 0) {
                        int saved = errno;

                        e = SSL_get_error(c->ssl, n);
                        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                                return 0;
                        if (end_of_stream(c, n, saved)) {
                                /* The end of the stream: it may end an answer delimited by the close. */
                                ERR_clear_error();
                                r = cm_http1_response_eof(c->resp);
                                if (r == 1)
                                        return answer_complete(c, false);
                                return conn_fail(c, CM_CONN_UNREACHABLE, -ECONNRESET,
                                                 cm_http1_response_started(c->resp)
                                                         ? "the server closed the connection before "
                                                           "the answer was complete"
                                                         : "the server closed the connection without "
                                                           "answering");
                        }
                        return tls_failed(c, n, "read");
                }
                r = cm_http1_response_feed(c->resp, buf, (size_t) n, &used);
                if (r == -EFBIG)
                        return conn_fail(c, CM_CONN_TOO_LARGE, -EFBIG, "the answer is larger than %zu bytes",
                                         c->body->cap);
                if (r < 0)
                        return conn_fail(c, CM_CONN_PROTOCOL, r, "the answer is not valid HTTP/1.1");
                /* Bytes after the answer to a single request: nothing more is trusted on it. */
                if (r == 1)
                        return answer_complete(c, c->resp->keep_alive && used == (size_t) n &&
                                                          SSL_pending(c->ssl) == 0);
        }
}

int cm_conn_run(struct cm_conn *c) {
        for (;;) {
                int rc;

                switch (c->state) {
                case CONN_CONNECTING:
                        /* connect() again says how the first one ended. */
                        if (connect(c->fd, (const struct sockaddr *) &c->addr, c->addr_len) < 0 &&
                            errno != EISCONN) {
                                if (errno == EINPROGRESS || errno == EALREADY || errno == EAGAIN)
                                        return 0;
                                return conn_fail(c, CM_CONN_UNREACHABLE, -errno, "connect: %s",
                                                 strerror(errno));
                        }
                        c->state = CONN_HANDSHAKE;
                        break;
                case CONN_HANDSHAKE:
                        rc = SSL_connect(c->ssl);
                        if (rc != 1) {
                                int e = SSL_get_error(c->ssl, rc);

                                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                                        return 0;
                                return tls_failed(c, rc, "handshake");
                        }
                        c->established = true;
                        c->state = c->req ? CONN_SENDING : CONN_IDLE;
                        if (!c->req)
                                return 0;
                        break;
                case CONN_SENDING:
                        rc = SSL_write(c->ssl, c->req, (int) c->req_len);
                        if (rc <= 0) {
                                int e = SSL_get_error(c->ssl, rc);

                                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                                        return 0;
                                return tls_failed(c, rc, "write");
                        }
                        request_drop(c);
                        c->state = CONN_RECEIVING;
                        break;
                case CONN_RECEIVING:
                        return conn_receive(c);
                case CONN_IDLE:
                        return 0; /* nothing asked */
                case CONN_FAILED:
                default:
                        return -EIO;
                }
        }
}

int cm_conn_status(const struct cm_conn *c) {
        return c->status;
}

bool cm_conn_reusable(const struct cm_conn *c) {
        return c->state == CONN_IDLE && c->reusable;
}

enum cm_conn_failure cm_conn_failure(const struct cm_conn *c) {
        return c->failure;
}

const char *cm_conn_error(const struct cm_conn *c) {
        return c->error;
}

bool cm_conn_stale(const struct cm_conn *c) {
        /* The caller's parser stays with a failed exchange: it knows whether any byte came. */
        return c->state == CONN_FAILED && c->answered > 0 && c->resp && !cm_http1_response_started(c->resp);
}

bool cm_conn_established(const struct cm_conn *c) {
        return c->established;
}

bool cm_conn_alive(struct cm_conn *c) {
        char b;
        int n, e;

        if (c->state != CONN_IDLE || !c->reusable)
                return false;
        /*
         * Reads what waits on the socket without taking application data: a session ticket is taken in,
         * the server's close_notify or the end of the stream ends it. Data nobody asked for means the
         * connection is out of step: not used again.
         */
        n = SSL_peek(c->ssl, &b, 1);
        if (n > 0) {
                c->reusable = false;
                return false;
        }
        e = SSL_get_error(c->ssl, n);
        ERR_clear_error();
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return true;
        c->reusable = false;
        return false;
}
