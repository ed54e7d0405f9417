/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "base/fileio.h"
#include "base/log.h"
#include "base/parse.h"
#include "base/secret.h"
#include "base/util.h"
#include "server/server_internal.h"

#define REQ_ID_HEADER "X-Request-Id"

/*
 * TLS 1.2 and 1.3 only; AEAD ciphers only (AES-GCM, ChaCha20-Poly1305); ephemeral elliptic-curve key
 * exchange only (no RSA key transport, no finite-field DH); no SHA-1.
 */
#define TLS_PRIORITIES                                                                                      \
        "SECURE128:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:"              \
        "+CHACHA20-POLY1305:-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:-GROUP-ALL:+GROUP-X25519:"       \
        "+GROUP-SECP256R1:+GROUP-SECP384R1:+GROUP-SECP521R1:%SERVER_PRECEDENCE"
#define TLS_FILE_MAX (256 * 1024)

struct cm_server_tls {
        char *cert; /* PEM, NUL-terminated */
        char *key; /* PEM, NUL-terminated; wiped when freed */
        size_t key_len;
        char subject[256];
        uint64_t not_after_usec;
};

void cm_server_config_defaults(struct cm_server_config *c) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);

        *c = (struct cm_server_config){
                .listen = "127.0.0.1:8080",
                .threads = (unsigned) MAX(2, MIN(n > 0 ? n : 2, 16)),
                .max_body = 1024 * 1024,
                .max_connections = 1000,
                .max_connections_per_ip = 64,
                .idle_timeout_sec = 30,
                .request_timeout_sec = 60,
                .rate_limit = 50,
                .rate_burst = 100,
                .auth_fail_max = 5,
                .auth_fail_window_sec = 60,
                .auth_block_max_sec = 300,
        };
}

uint16_t cm_server_port(const struct cm_server *s) {
        return s->port;
}

const char *cm_req_query(struct cm_req *req, const char *key) {
        return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *cm_req_header(struct cm_req *req, const char *key) {
        return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, key);
}

int cm_reply_header(struct cm_req *req, const char *name, const char *value) {
        char *v;

        if (req->n_headers >= CM_REQ_MAX_HEADERS)
                return -E2BIG;
        v = strdup(value);
        if (!v)
                return -ENOMEM;
        req->header_names[req->n_headers] = name;
        req->header_values[req->n_headers++] = v;
        return 0;
}

static void add_common_headers(struct cm_req *req, struct MHD_Response *resp) {
        (void) MHD_add_response_header(resp, REQ_ID_HEADER, req->request_id);
        (void) MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        (void) MHD_add_response_header(resp, "Cache-Control", "no-store");
        (void) MHD_add_response_header(resp, "Content-Security-Policy", "default-src 'none'");
        (void) MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
        if (req->srv->tls)
                (void) MHD_add_response_header(resp, "Strict-Transport-Security", "max-age=31536000");
        for (size_t i = 0; i < req->n_headers; i++)
                (void) MHD_add_response_header(resp, req->header_names[i], req->header_values[i]);
}

static void req_free(struct cm_req *req) {
        if (!req)
                return;
        strbuf_release(&req->body);
        strbuf_release(&req->out);
        for (size_t i = 0; i < req->n_headers; i++)
                free(req->header_values[i]);
        free(req->path);
        free(req);
}

/* Queues the answer held in req (out buffer or stream). */
static enum MHD_Result send_reply(struct cm_req *req) {
        struct MHD_Response *resp;
        enum MHD_Result ret;

        if (req->stream) {
                resp = req->stream;
                req->stream = NULL;
        } else {
                size_t len = 0;
                char *body = strbuf_detach(&req->out, &len);

                if (!body)
                        return MHD_NO;
                resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
                if (!resp) {
                        free(body);
                        return MHD_NO;
                }
        }
        if (req->content_type)
                (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, req->content_type);
        add_common_headers(req, resp);
        ret = MHD_queue_response(req->conn, (unsigned) req->status, resp);
        MHD_destroy_response(resp);
        return ret;
}

void cm_reply(struct cm_req *req, int status) {
        if (req->replied)
                return;
        req->replied = true;
        req->status = status;
        if (!req->content_type)
                req->content_type = "application/json";
}

void cm_reply_stream(struct cm_req *req, int status, const char *content_type, struct MHD_Response *resp) {
        if (req->replied) {
                MHD_destroy_response(resp);
                return;
        }
        req->replied = true;
        req->status = status;
        req->content_type = content_type;
        req->stream = resp;
}

void cm_reply_problem(struct cm_req *req, const struct cm_problem *p) {
        int r;

        if (req->replied)
                return;
        strbuf_reset(&req->out);
        r = cm_problem_encode(p, req->url, &req->out);
        if (r < 0) {
                strbuf_reset(&req->out);
                if (strbuf_adds(&req->out, "{\"status\":500,\"title\":\"Internal error\"}") < 0)
                        strbuf_reset(&req->out);
        }
        req->content_type = "application/problem+json";
        cm_reply(req, p->status ?: 500);
}

void cm_reply_error(struct cm_req *req, int r, const struct cm_problem *p) {
        struct cm_problem internal;

        if (p && p->status != 0) {
                cm_reply_problem(req, p);
                return;
        }
        log_full(LOG_LEVEL_ERROR, r, NULL, "%s %s (request %s): %m", req->method, req->url, req->request_id);
        cm_problem_init(&internal);
        if (r == -ENOMEM || r == -ENOBUFS)
                cm_problem_set(&internal, 503, "unavailable", "Service unavailable",
                               "the service is short of memory; retry later (request %s)", req->request_id);
        else
                cm_problem_set(&internal, 500, "internal", "Internal error",
                               "the service failed to handle the request; it was logged as request %s",
                               req->request_id);
        cm_reply_problem(req, &internal);
        cm_problem_done(&internal);
}

void cm_reply_problem_simple(struct cm_req *req, int status, const char *type, const char *title,
                             const char *detail) {
        struct cm_problem p;

        cm_problem_init(&p);
        cm_problem_set(&p, status, type, title, "%s", detail);
        cm_reply_problem(req, &p);
        cm_problem_done(&p);
}

void cm_reply_not_found(struct cm_req *req, const char *what, const char *name) {
        struct cm_problem p;

        cm_problem_init(&p);
        cm_problem_not_found(&p, what, name);
        cm_reply_problem(req, &p);
        cm_problem_done(&p);
}

/* Idempotency-Key on POST: replays the first answer; -EALREADY when the request was answered here. */
static int idempotency_begin(struct cm_req *req, const char *key, bool *ret_recorded) {
        struct cm_store *store = req->svc->store;
        _cleanup_free_ char *body = NULL;
        _cleanup_strbuf_ struct strbuf h = STRBUF_INIT(2 * 1024 * 1024);
        enum cm_idem_state st;
        char hash[65];
        int status = 0, r;

        *ret_recorded = false;
        if (strlen(key) == 0 || strlen(key) > 255) {
                cm_reply_problem_simple(req, 400, "malformed", "Malformed request",
                                        "Idempotency-Key must be 1-255 visible ASCII characters");
                return -EALREADY;
        }
        for (const char *c = key; *c; c++)
                if (*c < 0x21 || *c > 0x7e) {
                        cm_reply_problem_simple(req, 400, "malformed", "Malformed request",
                                                "Idempotency-Key must be 1-255 visible ASCII characters");
                        return -EALREADY;
                }
        if (strbuf_adds(&h, req->method) < 0 || strbuf_addch(&h, ' ') < 0 || strbuf_adds(&h, req->url) < 0 ||
            strbuf_addch(&h, '\n') < 0 || strbuf_add(&h, req->body.buf ?: "", req->body.len) < 0)
                return -ENOMEM;
        cm_sha256_hex(h.buf, h.len, hash);

        r = STORE_CALL(store, idem_begin, req->principal.id, key, hash, cm_now_usec(), &st, &status, &body);
        if (r < 0)
                return r;
        switch (st) {
        case CM_IDEM_NEW:
                *ret_recorded = true;
                return 0;
        case CM_IDEM_DONE:
                strbuf_reset(&req->out);
                if (body && strbuf_adds(&req->out, body) < 0)
                        return -ENOMEM;
                (void) cm_reply_header(req, "Idempotent-Replayed", "true");
                req->content_type = status >= 400 ? "application/problem+json" : "application/json";
                cm_reply(req, status);
                return -EALREADY;
        case CM_IDEM_BUSY:
                cm_reply_problem_simple(
                        req, 409, "idempotency-in-progress", "Conflict",
                        "a request with this Idempotency-Key is still being handled; retry shortly");
                return -EALREADY;
        case CM_IDEM_MISMATCH:
                cm_reply_problem_simple(req, 422, "idempotency-mismatch", "Invalid request",
                                        "this Idempotency-Key was used for a different request");
                return -EALREADY;
        }
        return -EINVAL;
}

static void idempotency_end(struct cm_req *req, const char *key) {
        struct cm_store *store = req->svc->store;
        int r;

        /* Server-side failures are not remembered: the client may retry them with the same key. */
        if (req->status >= 500 || req->stream)
                r = STORE_CALL(store, idem_abort, req->principal.id, key);
        else
                r = STORE_CALL(store, idem_finish, req->principal.id, key, req->status, req->out.buf ?: "");
        if (r < 0)
                log_warning_errno(r, "record idempotency key of request %s: %m", req->request_id);
}

/* The chain of steps for a complete request. */
static void handle(struct cm_req *req) {
        struct cm_problem p;
        bool recorded = false;
        const char *idem_key = NULL;
        int r;

        cm_problem_init(&p);
        /* routed when the request arrived (route_request), before its body was read */
        if (!req->path) {
                cm_reply_error(req, -ENOMEM, NULL);
                goto out;
        }
        if (!req->route) {
                if (req->path_matched) {
                        cm_reply_problem_simple(req, 405, "method-not-allowed", "Method not allowed",
                                                "this resource does not support the method");
                } else
                        cm_reply_problem_simple(req, 404, "not-found", "Not found", "no such resource");
                goto out;
        }
        if (req->body_too_large) {
                char d[96];
                (void) cm_snprintf(d, sizeof(d), "the request body is larger than %zu bytes", req->max_body);
                cm_reply_problem_simple(req, 413, "too-large", "Request too large", d);
                cm_limits_note(req->srv->limits, CM_LIMIT_TOO_LARGE);
                goto out;
        }

        /* A source that failed authentication too often is refused before its credentials are read. */
        r = cm_limits_auth_check(req, &p);
        if (r < 0) {
                cm_reply_error(req, r, &p);
                goto out;
        }
        r = cm_auth_authenticate(req, &p);
        cm_limits_auth_done(req, r);
        if (r < 0) {
                cm_reply_error(req, r, &p);
                if (req->auth_failure)
                        cm_audit_auth_failure(req);
                goto out;
        }
        r = cm_limits_rate(req, &p);
        if (r < 0) {
                cm_reply_error(req, r, &p);
                goto out;
        }
        cm_audit_begin(req);
        r = cm_auth_authorize(req, &p);
        if (r < 0) {
                cm_reply_error(req, r, &p);
                goto out;
        }

        if (streq(req->method, "POST") && req->route->role != CM_ROLE_NONE)
                idem_key = cm_req_header(req, "Idempotency-Key");
        if (idem_key) {
                r = idempotency_begin(req, idem_key, &recorded);
                if (r == -EALREADY)
                        goto out;
                if (r < 0) {
                        cm_reply_error(req, r, NULL);
                        goto out;
                }
        }

        /* the change and its audit record in one transaction */
        cm_audit_stage(req, true);
        req->route->handler(req);
        cm_audit_stage(req, false);
        if (!req->replied)
                cm_reply_error(req, -EIO, NULL);
        if (recorded)
                idempotency_end(req, idem_key);
out:
        cm_audit_end(req);
        cm_problem_done(&p);
}

static struct cm_conn *conn_state(struct MHD_Connection *conn) {
        const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

        return ci ? ci->socket_context : NULL;
}

/* A body announced larger than the cap is refused before a byte of it is read. */
static bool body_announced_too_large(struct cm_req *req) {
        const char *v =
                MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        uint64_t n;

        return v && safe_atou64(v, &n) >= 0 && n > req->max_body;
}

/*
 * Whether the caller may send a body over the server's cap: only an authenticated one, because bodies
 * are read before a request is handled and the cap bounds what an anonymous client makes the server
 * hold. A source that is throttled is not asked. The check leaves nothing behind (principal, failure,
 * headers); handle() authenticates again (an API key from the cache) and counts a failure there.
 */
static bool large_body_allowed(struct cm_req *req) {
        struct cm_problem p;
        int r;

        if (cm_limits_auth_blocked(req))
                return false;
        cm_problem_init(&p);
        r = cm_auth_authenticate(req, &p);
        cm_problem_done(&p);
        req->principal = (struct cm_principal){};
        req->auth_failure = NULL;
        req->auth_reason[0] = 0;
        for (size_t i = 0; i < req->n_headers; i++)
                free(req->header_values[i]);
        req->n_headers = 0;
        return r >= 0;
}

/*
 * Finds the route when the request arrives, so that its body cap is known before a byte of the body
 * is read: the server's cap, or the route's when that is larger (add-on definitions carry manifests)
 * and the caller is authenticated. A copy of the path that cannot be made is answered by handle() (500).
 */
static void route_request(struct cm_req *req) {
        req->max_body = req->srv->cfg.max_body;
        req->path = strdup(req->url);
        if (!req->path)
                return;
        req->route = cm_route_match(req->method, req->path, req->params, &req->n_params, &req->path_matched);
        if (req->route && req->route->max_body > req->max_body && large_body_allowed(req))
                req->max_body = req->route->max_body;
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version, const char *upload_data,
                                      size_t *upload_data_size, void **con_cls) {
        struct cm_server *s = cls;
        struct cm_req *req = *con_cls;
        enum MHD_Result ret;

        if (!req) {
                const char *rid;

                req = new0(struct cm_req, 1);
                if (!req)
                        return MHD_NO;
                req->srv = s;
                req->svc = s->svc;
                req->conn = conn;
                req->method = method;
                req->url = url;
                req->start_usec = cm_mono_usec();
                strbuf_init(&req->out, 64 * 1024 * 1024);
                /* Most answers are a few hundred bytes: one allocation up front. */
                if (strbuf_grow(&req->out, 1024) < 0) {
                        free(req);
                        return MHD_NO;
                }
                rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, REQ_ID_HEADER);
                if (!rid || strlen(rid) >= sizeof(req->request_id) || strlen(rid) < 8 ||
                    strspn(rid, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") !=
                            strlen(rid)) {
                        /* Unique per process start and request; no random bytes on the hot path. */
                        (void) cm_snprintf(req->request_id, sizeof(req->request_id), "req_%s%" PRIx64,
                                           s->request_id_prefix,
                                           (uint64_t) atomic_fetch_add(&s->request_counter, 1));
                } else
                        (void) cm_strlcpy(req->request_id, rid, sizeof(req->request_id));
                {
                        const union MHD_ConnectionInfo *ci =
                                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

                        cm_limits_source_key(ci ? ci->client_addr : NULL, req->source, sizeof(req->source));
                }
                route_request(req);
                /* Bodies may carry private keys: growing copies and wipes, release wipes. */
                strbuf_init_secret(&req->body, req->max_body);
                *con_cls = req;
                if (body_announced_too_large(req)) {
                        /* Answered now: libmicrohttpd then discards the body and closes the connection. */
                        req->body_too_large = true;
                        cm_limits_conn_answering(conn_state(conn));
                        handle(req);
                        return send_reply(req);
                }
                return MHD_YES;
        }

        if (*upload_data_size > 0) {
                if (!req->body_too_large && strbuf_add(&req->body, upload_data, *upload_data_size) < 0) {
                        req->body_too_large = true;
                        strbuf_release(&req->body);
                }
                *upload_data_size = 0;
                return MHD_YES;
        }

        cm_limits_conn_answering(conn_state(conn));
        if (!req->replied)
                handle(req);
        ret = send_reply(req);
        return ret;
}

static void request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                              enum MHD_RequestTerminationCode toe) {
        struct cm_server *s = cls;
        struct cm_req *req = *con_cls;

        if (!req)
                return;
        /* The next request on this connection has the whole request timeout from now. */
        cm_limits_conn_idle(s->limits, conn_state(conn));
        if (req->replied)
                cm_metrics_observe(s, req->route, req->status, cm_mono_usec() - req->start_usec,
                                   !(req->route && req->route->streams));
        if (log_get_level() <= LOG_LEVEL_DEBUG) {
                char fields[256];
                (void) cm_snprintf(fields, sizeof(fields),
                                   "\"request\":\"%s\",\"status\":%d,\"duration_us\":%" PRIu64,
                                   req->request_id, req->status, cm_mono_usec() - req->start_usec);
                log_full(LOG_LEVEL_DEBUG, 0, fields, "%s %s", req->method,
                         req->route ? req->route->pattern : "-");
        }
        req_free(req);
        *con_cls = NULL;
}

void cm_server_follow_suspend(struct cm_server *s, struct MHD_Connection *conn) {
        pthread_mutex_lock(&s->follow_lock);
        if (!atomic_load(&s->stopping) && s->n_suspended < s->max_suspended) {
                s->suspended[s->n_suspended++] = conn;
                MHD_suspend_connection(conn);
        }
        pthread_mutex_unlock(&s->follow_lock);
}

static void resume_all(struct cm_server *s) {
        pthread_mutex_lock(&s->follow_lock);
        for (size_t i = 0; i < s->n_suspended; i++)
                MHD_resume_connection(s->suspended[i]);
        s->n_suspended = 0;
        pthread_mutex_unlock(&s->follow_lock);
}

/* Wakes parked log streams whenever a log or an operation changes (and twice a second regardless). */
static void *follow_main(void *userdata) {
        struct cm_server *s = userdata;

        while (!atomic_load(&s->stopping)) {
                uint64_t seq = cm_service_log_seq(s->svc);

                cm_service_wait_log(s->svc, seq, 500 * USEC_PER_MSEC);
                resume_all(s);
        }
        return NULL;
}

static void notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                              enum MHD_ConnectionNotificationCode toe) {
        struct cm_server *s = cls;

        if (toe == MHD_CONNECTION_NOTIFY_STARTED)
                cm_limits_conn_started(s->limits, conn, socket_context);
        else if (toe == MHD_CONNECTION_NOTIFY_CLOSED)
                cm_limits_conn_closed(s->limits, socket_context);
}

_printf_(2, 0) static void mhd_log(void *cls, const char *fmt, va_list ap) {
        struct cm_server *s = cls;
        char msg[512];
        size_t n;

        (void) vsnprintf(msg, sizeof(msg), fmt, ap);
        n = strlen(msg);
        while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '.'))
                msg[--n] = 0;
        /* Refused connections are counted; a flood of them logs one line every 10 s. */
        if (s && strstr(msg, "reached connection limit")) {
                uint64_t now = cm_mono_usec();
                uint_fast64_t last = atomic_load(&s->conn_limit_logged_usec);

                cm_limits_note(s->limits, CM_LIMIT_CONNECTIONS);
                if ((last != 0 && now < last + 10 * USEC_PER_SEC) ||
                    !atomic_compare_exchange_strong(&s->conn_limit_logged_usec, &last, now))
                        return;
                log_warning(
                        "http: refusing connections: %u open in all, or %u from one address, is the limit",
                        s->cfg.max_connections, s->cfg.max_connections_per_ip);
                return;
        }
        log_warning("http: %s", msg);
}

static int parse_listen(const char *listen, struct sockaddr_storage *ret, socklen_t *ret_len) {
        _cleanup_free_ char *host = NULL;
        struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM };
        struct addrinfo *ai = NULL;
        const char *colon, *port;
        unsigned p;

        if (listen[0] == '[') {
                const char *end = strchr(listen, ']');
                if (!end || end[1] != ':')
                        return -EINVAL;
                host = strndup(listen + 1, (size_t) (end - listen - 1));
                port = end + 2;
        } else {
                colon = strrchr(listen, ':');
                if (!colon)
                        return -EINVAL;
                host = strndup(listen, (size_t) (colon - listen));
                port = colon + 1;
        }
        if (!host)
                return -ENOMEM;
        if (safe_atou(port, &p) < 0 || p > 65535)
                return -EINVAL;
        if (getaddrinfo(isempty(host) ? "0.0.0.0" : host, port, &hints, &ai) != 0 || !ai)
                return -EINVAL;
        memcpy(ret, ai->ai_addr, ai->ai_addrlen);
        *ret_len = ai->ai_addrlen;
        freeaddrinfo(ai);
        return 0;
}

int cm_server_listen_is_loopback(const char *listen) {
        struct sockaddr_storage addr;
        socklen_t addrlen;
        int r;

        r = parse_listen(listen, &addr, &addrlen);
        if (r < 0)
                return r;
        if (addr.ss_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *) &addr;

                return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
        }
        if (addr.ss_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) &addr;

                if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
                        return in6->sin6_addr.s6_addr[12] == 127;
                return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
        }
        return 0;
}

/* -------------------------------------------------------------------------------------------------
 * TLS material
 */

_printf_(4, 5) static int tls_error(char *err, size_t err_size, int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
        return r;
}

/* Never asks for a passphrase: an encrypted key is refused. */
static int no_passphrase(char *buf, int size, int rwflag, void *userdata) {
        return -1;
}

static int tls_read(const char *what, const char *path, bool secret, char **ret, size_t *ret_len, char *err,
                    size_t err_size) {
        struct stat st;
        int r;

        if (stat(path, &st) < 0) {
                r = negative_errno();
                return tls_error(err, err_size, r, "cannot read the TLS %s file '%s': %s", what, path,
                                 strerror(-r));
        }
        if (!S_ISREG(st.st_mode))
                return tls_error(err, err_size, -EINVAL, "the TLS %s file '%s' is not a regular file", what,
                                 path);
        if (secret && (st.st_mode & 0077) != 0)
                return tls_error(
                        err, err_size, -EPERM,
                        "the TLS key file '%s' has mode %04o: it must be readable by its owner only "
                        "(chmod 0600 '%s')",
                        path, (unsigned) (st.st_mode & 07777), path);
        r = cm_read_file(path, TLS_FILE_MAX, secret, ret, ret_len);
        if (r == -EFBIG)
                return tls_error(err, err_size, -EINVAL, "the TLS %s file '%s' is larger than %u bytes",
                                 what, path, TLS_FILE_MAX);
        if (r < 0)
                return tls_error(err, err_size, r, "cannot read the TLS %s file '%s': %s", what, path,
                                 strerror(-r));
        return 0;
}

/* Subject and expiry of the first certificate, and whether key is its private key. */
static int tls_inspect(struct cm_server_tls *t, const char *cert_file, const char *key_file, char *err,
                       size_t err_size) {
        BIO *bio = NULL, *out = NULL;
        X509 *x = NULL;
        EVP_PKEY *pkey = NULL;
        struct tm tm = {};
        char *mem = NULL;
        long n;
        int r = 0;

        bio = BIO_new_mem_buf(t->cert, -1);
        x = bio ? PEM_read_bio_X509(bio, NULL, no_passphrase, NULL) : NULL;
        BIO_free(bio);
        if (!x) {
                r = tls_error(err, err_size, -EINVAL,
                              "the TLS certificate file '%s' holds no PEM certificate", cert_file);
                goto out;
        }
        bio = BIO_new_mem_buf(t->key, (int) t->key_len);
        pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
        BIO_free(bio);
        if (!pkey) {
                r = tls_error(err, err_size, -EINVAL,
                              "the TLS key file '%s' holds no PEM private key (or an encrypted one)",
                              key_file);
                goto out;
        }
        if (X509_check_private_key(x, pkey) != 1) {
                r = tls_error(err, err_size, -EINVAL,
                              "the TLS key in '%s' does not belong to the certificate in '%s'", key_file,
                              cert_file);
                goto out;
        }
        out = BIO_new(BIO_s_mem());
        if (!out || X509_NAME_print_ex(out, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) < 0) {
                r = tls_error(err, err_size, -ENOMEM, "out of memory");
                goto out;
        }
        n = BIO_get_mem_data(out, &mem);
        if (n < 0 || !mem)
                n = 0;
        if ((size_t) n >= sizeof(t->subject))
                n = (long) sizeof(t->subject) - 1;
        memcpy(t->subject, mem ?: "", (size_t) n);
        t->subject[n] = 0;
        if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1) {
                time_t tt = timegm(&tm);
                t->not_after_usec = tt > 0 ? (uint64_t) tt * USEC_PER_SEC : 0;
        }
out:
        ERR_clear_error(); /* what OpenSSL queued is said in err */
        BIO_free(out);
        EVP_PKEY_free(pkey);
        X509_free(x);
        return r;
}

int cm_server_tls_load(const char *cert_file, const char *key_file, struct cm_server_tls **ret, char *err,
                       size_t err_size) {
        _cleanup_(cm_server_tls_freep) struct cm_server_tls *t = NULL;
        size_t len = 0;
        int r;

        if (!MHD_is_feature_supported(MHD_FEATURE_TLS))
                return tls_error(err, err_size, -EOPNOTSUPP, "this libmicrohttpd was built without TLS");
        t = new0(struct cm_server_tls, 1);
        if (!t)
                return tls_error(err, err_size, -ENOMEM, "out of memory");
        r = tls_read("certificate", cert_file, false, &t->cert, &len, err, err_size);
        if (r < 0)
                return r;
        r = tls_read("key", key_file, true, &t->key, &t->key_len, err, err_size);
        if (r < 0)
                return r;
        r = tls_inspect(t, cert_file, key_file, err, err_size);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(t);
        return 0;
}

struct cm_server_tls *cm_server_tls_free(struct cm_server_tls *t) {
        if (!t)
                return NULL;
        if (t->key)
                cm_wipe(t->key, t->key_len);
        free(t->key);
        free(t->cert);
        free(t);
        return NULL;
}

const char *cm_server_tls_subject(const struct cm_server_tls *t) {
        return t->subject;
}

uint64_t cm_server_tls_not_after(const struct cm_server_tls *t) {
        return t->not_after_usec;
}

/* -------------------------------------------------------------------------------------------------
 * Start and stop
 */

int cm_server_start(const struct cm_server_config *cfg, struct cm_service *svc, struct cm_server **ret) {
        struct sockaddr_storage addr;
        socklen_t addrlen;
        const union MHD_DaemonInfo *info;
        struct cm_server *s;
        unsigned flags;
        int r;

        r = parse_listen(cfg->listen, &addr, &addrlen);
        if (r < 0)
                return r;

        s = new0(struct cm_server, 1);
        if (!s)
                return -ENOMEM;
        s->svc = svc;
        s->cfg = *cfg;
        s->tls = cfg->tls != NULL;
        s->route_metrics = new0(struct cm_route_metrics, cm_routes_count + 1);
        s->max_suspended = cfg->max_connections;
        s->suspended = new0(struct MHD_Connection *, s->max_suspended);
        if (!s->route_metrics || !s->suspended) {
                r = -ENOMEM;
                goto fail;
        }
        pthread_mutex_init(&s->follow_lock, NULL);
        cm_cache_init(&s->auth_cache, 5 * USEC_PER_SEC);
        cm_cache_init(&s->env_cache, 5 * USEC_PER_SEC);
        /* Pages of up to 256 KiB (limit=100 is ~64 KiB); clusters of up to 16 KiB. */
        r = cm_page_cache_init(&s->list_cache, 32, 256 * 1024);
        if (r >= 0)
                r = cm_page_cache_init(&s->cluster_cache, 1024, 16 * 1024);
        if (r < 0)
                goto fail;
        r = cm_limits_new(cfg, &s->limits);
        if (r < 0)
                goto fail;
        {
                char rnd[32];

                r = cm_random_id("", rnd, sizeof(rnd));
                if (r < 0)
                        goto fail;
                rnd[8] = 0;
                (void) cm_strlcpy(s->request_id_prefix, rnd, sizeof(s->request_id_prefix));
        }

        flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                MHD_USE_ERROR_LOG;
        if (addr.ss_family == AF_INET6)
                flags |= MHD_USE_IPv6;
        if (cfg->tls)
                flags |= MHD_USE_TLS;
        {
                /* libmicrohttpd keeps the pointers to the certificate and key: cfg->tls outlives the daemon. */
                struct MHD_OptionItem tls_options[] = {
                        { MHD_OPTION_HTTPS_MEM_CERT, 0, cfg->tls ? cfg->tls->cert : NULL },
                        { MHD_OPTION_HTTPS_MEM_KEY, 0, cfg->tls ? cfg->tls->key : NULL },
                        { MHD_OPTION_HTTPS_PRIORITIES, 0, CM_UNCONST(char *, TLS_PRIORITIES) },
                        { MHD_OPTION_END, 0, NULL },
                };

                s->daemon = MHD_start_daemon(
                        /* The logger first: libmicrohttpd only routes messages of later options through it. */
                        flags, 0, NULL, NULL, access_handler, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
                        MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr, MHD_OPTION_THREAD_POOL_SIZE,
                        (unsigned) cfg->threads, MHD_OPTION_CONNECTION_LIMIT,
                        (unsigned) cfg->max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                        (unsigned) cfg->max_connections_per_ip, MHD_OPTION_CONNECTION_TIMEOUT,
                        (unsigned) cfg->idle_timeout_sec, MHD_OPTION_NOTIFY_COMPLETED, request_completed, s,
                        MHD_OPTION_NOTIFY_CONNECTION, notify_connection, s, MHD_OPTION_LISTEN_BACKLOG_SIZE,
                        (unsigned) 1024, MHD_OPTION_ARRAY, cfg->tls ? tls_options : &tls_options[3],
                        MHD_OPTION_END);
        }
        if (!s->daemon) {
                /* libmicrohttpd said why through mhd_log; binding is what usually fails. */
                r = -EADDRNOTAVAIL;
                goto fail;
        }
        info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
        s->port = info ? info->port : 0;

        r = -pthread_create(&s->follow_thread, NULL, follow_main, s);
        if (r < 0)
                goto fail;
        s->follow_thread_started = true;
        *ret = s;
        return 0;
fail:
        cm_server_stop(s);
        return r;
}

struct cm_server *cm_server_stop(struct cm_server *s) {
        if (!s)
                return NULL;
        atomic_store(&s->stopping, true);
        if (s->daemon)
                (void) MHD_quiesce_daemon(s->daemon);
        if (s->follow_thread_started) {
                cm_service_notify_log(s->svc);
                pthread_join(s->follow_thread, NULL);
        }
        /* Parked streams must be resumed before the daemon stops; they then see `stopping` and end. */
        if (s->suspended)
                resume_all(s);
        if (s->daemon) {
                /* Give resumed streams a moment to end cleanly. */
                for (int i = 0; i < 50 && atomic_load(&s->active_streams) > 0; i++) {
                        resume_all(s);
                        usleep(20000);
                }
                MHD_stop_daemon(s->daemon);
        }
        /* After the daemon: its last connections are closed (and their notifications made) by now. */
        s->limits = cm_limits_free(s->limits);
        pthread_mutex_destroy(&s->follow_lock);
        cm_cache_done(&s->auth_cache);
        cm_cache_done(&s->env_cache);
        cm_page_cache_done(&s->list_cache);
        cm_page_cache_done(&s->cluster_cache);
        free(s->suspended);
        free(s->route_metrics);
        free(s);
        return NULL;
}
