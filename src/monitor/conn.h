/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <openssl/ssl.h>
#include <sys/socket.h>

#include "base/common.h"
#include "base/strbuf.h"
#include "monitor/http1.h"
#include "monitor/tls.h"

/*
 * The probes' own client: a non-blocking TCP connection with TLS (the shared client context and the
 * cluster's identity: tls.h) carrying HTTP/1.1 GETs one after another. One shared SSL_CTX for all
 * connections instead of libcurl's new context per connection, and a session resumed without decoding
 * a certificate: at 10,000 clusters these were the largest costs of a probe.
 *
 * Driven by the caller's event loop: cm_conn_run() goes as far as it can without blocking and returns 0
 * when it waits for the socket. The caller registers the socket once, edge-triggered, for input and
 * output (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET), and calls cm_conn_run() on any event: the
 * connection retries whatever it waits for (every wait follows an EAGAIN, so an edge will come).
 */
struct cm_conn;

/* Why an exchange failed (cm_conn_failure()). */
enum cm_conn_failure {
        CM_CONN_UNREACHABLE, /* connect, reset, closed early, timeouts */
        CM_CONN_TLS, /* the handshake failed: the server's certificate, an alert */
        CM_CONN_PROTOCOL, /* the answer is not valid HTTP/1.1 */
        CM_CONN_TOO_LARGE, /* the answer's body is over its buffer's cap */
};

/*
 * The parts of a kubeconfig's server URL (https://host[:port][/prefix]) a connection needs: host
 * without brackets (a name, an IPv4 or an IPv6 address), port (443 when absent), authority (the
 * Host header: host[:port] as written) and the path prefix requests go under ("" or "/prefix").
 */
struct cm_endpoint {
        char host[256];
        char authority[272];
        char prefix[1024];
        uint16_t port;
};

/* Splits server into e. 0, or -EINVAL when it is not such a URL (or a part is too long). */
_warn_unused_result_ int cm_endpoint_parse(const char *server, struct cm_endpoint *e);

/*
 * Opens a connection to addr (connect() started) for identity id; name is what the server's
 * certificate must name (tls.h: cm_tls_identity_attach). kept_idle: it will wait idle between probes.
 * 0, or -errno (no socket, or connect() refused at once: the error says which).
 */
_warn_unused_result_ int cm_conn_open(SSL_CTX *ctx, struct cm_tls_identity *id, const char *name,
                                      const struct sockaddr *addr, socklen_t addr_len, bool kept_idle,
                                      struct cm_conn **ret);
/* Sends close_notify when the TLS session is up, closes the socket, frees. Accepts NULL; returns NULL. */
struct cm_conn *cm_conn_close(struct cm_conn *c);
int cm_conn_fd(const struct cm_conn *c);

/*
 * Starts one request: its bytes (a whole HTTP/1.1 request; it may carry a token) are copied and wiped
 * once written; the answer's body goes to body (reset first; its cap bounds the answer), parsed with
 * resp (the caller's: a parser's line buffer is not worth keeping in every idle connection). Both must
 * stay until the answer is complete, or after a failure until cm_conn_stale() was asked. The previous
 * answer must be complete.
 * 0, -EINVAL or -ENOMEM.
 */
_warn_unused_result_ int cm_conn_send(struct cm_conn *c, const char *req, size_t len, struct strbuf *body,
                                      struct cm_http1_response *resp);

/*
 * Runs the exchange: 0 while it waits for the socket, 1 when the answer is complete (cm_conn_status),
 * a negative errno when it failed (cm_conn_failure and cm_conn_error tell why).
 */
_warn_unused_result_ int cm_conn_run(struct cm_conn *c);

int cm_conn_status(const struct cm_conn *c);
/* After a complete answer: whether the connection can carry the next request. */
bool cm_conn_reusable(const struct cm_conn *c);
enum cm_conn_failure cm_conn_failure(const struct cm_conn *c);
/* Why it failed, in words (never the request or the answer's content). */
const char *cm_conn_error(const struct cm_conn *c);
/*
 * Whether the failed request was on a connection that had answered before and got no byte of answer:
 * the server closed it while it was idle, and the request can be sent again on a new connection.
 */
bool cm_conn_stale(const struct cm_conn *c);
/* Whether the TLS handshake of the connection completed. */
bool cm_conn_established(const struct cm_conn *c);
/*
 * Whether an idle connection can still carry a request: what the server sent meanwhile is read (a
 * session ticket is taken in; its close_notify, the end of the stream, an error or data nobody asked
 * for mean it cannot). Without anything waiting, one recv() that finds nothing.
 */
bool cm_conn_alive(struct cm_conn *c);
