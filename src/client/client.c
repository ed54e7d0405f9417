/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <curl/curl.h>
#include <jansson.h>

#include "base/secret.h"
#include "base/strbuf.h"
#include "client/client.h"
#include "client/curlx.h"

#define CLIENT_URL_MAX 4096U
#define CLIENT_HEADER_VALUE_MAX 2048U
#define CLIENT_TOKEN_MAX 4096U
#define CLIENT_CONNECT_TIMEOUT_SEC 10L
#define CLIENT_DEFAULT_TIMEOUT_SEC 120L

struct cm_client {
        CURL *curl;
        char *server; /* without trailing slash */
        char *token; /* wiped on free */
        char *ca_file;
        char error[512];
        char curl_error[CURL_ERROR_SIZE];
};

/* Per-transfer state shared by the write and header callbacks. */
struct transfer {
        struct cm_client *client;
        const struct cm_client_request *req;
        struct cm_client_response resp;
        int error; /* set by a callback that aborted the transfer */
};

void cm_client_response_done(struct cm_client_response *r) {
        if (!r)
                return;
        r->content_type = mfree(r->content_type);
        r->etag = mfree(r->etag);
        r->location = mfree(r->location);
        strbuf_release(&r->body);
        r->status = 0;
        r->replayed = false;
}

static bool token_valid(const char *t) {
        size_t n = 0;

        for (const char *p = t; *p; p++, n++)
                if (*p < 0x21 || *p > 0x7e)
                        return false;
        return n > 0 && n <= CLIENT_TOKEN_MAX;
}

int cm_client_new(const char *server_url, const char *token, const char *ca_file, struct cm_client **ret) {
        _cleanup_(cm_client_freep) struct cm_client *c = NULL;
        size_t n;

        if (!server_url || (!strneq(server_url, "http://", 7) && !strneq(server_url, "https://", 8)))
                return -EINVAL;
        n = strlen(server_url);
        if (n >= CLIENT_URL_MAX / 2)
                return -EINVAL;
        for (const char *p = server_url; *p; p++)
                if (*p <= 0x20 || *p > 0x7e)
                        return -EINVAL;
        if (token && !token_valid(token))
                return -EINVAL;

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return -EIO;
        c = new0(struct cm_client, 1);
        if (!c) {
                curl_global_cleanup();
                return -ENOMEM;
        }
        c->curl = curl_easy_init();
        if (!c->curl)
                return -EIO;
        while (n > 0 && server_url[n - 1] == '/')
                n--;
        c->server = strndup(server_url, n);
        if (!c->server)
                return -ENOMEM;
        if (token) {
                c->token = strdup(token);
                if (!c->token)
                        return -ENOMEM;
        }
        if (ca_file) {
                c->ca_file = strdup(ca_file);
                if (!c->ca_file)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

struct cm_client *cm_client_free(struct cm_client *c) {
        if (!c)
                return NULL;
        if (c->curl)
                curl_easy_cleanup(c->curl);
        curl_global_cleanup(); /* pairs with the curl_global_init() of cm_client_new() */
        free(c->server);
        c->token = cm_erase_and_free(c->token);
        free(c->ca_file);
        free(c);
        return NULL;
}

const char *cm_client_server(const struct cm_client *c) {
        return c->server;
}

const char *cm_client_last_error(const struct cm_client *c) {
        return c->error;
}

_printf_(2, 3) static void client_set_error(struct cm_client *c, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(c->error, sizeof(c->error), fmt, ap);
        va_end(ap);
}

int cm_url_escape_segment(struct strbuf *sb, const char *s) {
        static const char hexdig[] = "0123456789ABCDEF";
        int r;

        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                    *p == '-' || *p == '.' || *p == '_' || *p == '~') {
                        r = strbuf_addch(sb, (char) *p);
                } else {
                        char esc[3] = { '%', hexdig[*p >> 4], hexdig[*p & 0xF] };
                        r = strbuf_add(sb, esc, sizeof(esc));
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userdata) {
        struct transfer *t = userdata;
        size_t n = size * nmemb;
        long code = 0;
        int r;

        (void) curl_easy_getinfo(t->client->curl, CURLINFO_RESPONSE_CODE, &code);
        if (t->req->on_chunk && code >= 200 && code < 300) {
                r = t->req->on_chunk(data, n, t->req->userdata);
                if (r < 0) {
                        t->error = r;
                        return 0;
                }
                return n;
        }
        r = strbuf_add(&t->resp.body, data, n);
        if (r < 0) {
                t->error = r == -ENOBUFS ? -EFBIG : r;
                return 0;
        }
        return n;
}

static int xferinfo_cb(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
        struct transfer *t = userdata;
        int r;

        r = t->req->on_tick(t->req->userdata);
        if (r < 0) {
                t->error = r;
                return 1; /* the transfer ends with CURLE_ABORTED_BY_CALLBACK */
        }
        return 0;
}

/* Copies a header value, trimmed of surrounding blanks and the line end. */
static int header_value_dup(const char *v, size_t n, char **ret) {
        char *p;

        while (n > 0 && (*v == ' ' || *v == '\t')) {
                v++;
                n--;
        }
        while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' || v[n - 1] == '\t'))
                n--;
        if (n > CLIENT_HEADER_VALUE_MAX)
                return 0; /* ignored: no header of interest is that long */
        p = strndup(v, n);
        if (!p)
                return -ENOMEM;
        free(*ret);
        *ret = p;
        return 0;
}

static bool header_is(const char *line, size_t n, const char *name, const char **ret_value,
                      size_t *ret_value_len) {
        size_t l = strlen(name);

        if (n <= l || line[l] != ':' || strncasecmp(line, name, l) != 0)
                return false;
        *ret_value = line + l + 1;
        *ret_value_len = n - l - 1;
        return true;
}

static size_t header_cb(char *data, size_t size, size_t nitems, void *userdata) {
        struct transfer *t = userdata;
        size_t n = size * nitems;
        const char *v;
        size_t vn;
        int r = 0;

        if (n >= 5 && strneq(data, "HTTP/", 5)) {
                /* A new response starts (after 100 Continue, for one): forget the previous headers. */
                t->resp.content_type = mfree(t->resp.content_type);
                t->resp.etag = mfree(t->resp.etag);
                t->resp.location = mfree(t->resp.location);
                t->resp.replayed = false;
                return n;
        }
        if (header_is(data, n, "Content-Type", &v, &vn))
                r = header_value_dup(v, vn, &t->resp.content_type);
        else if (header_is(data, n, "ETag", &v, &vn))
                r = header_value_dup(v, vn, &t->resp.etag);
        else if (header_is(data, n, "Location", &v, &vn))
                r = header_value_dup(v, vn, &t->resp.location);
        else if (header_is(data, n, "Idempotent-Replayed", &v, &vn)) {
                _cleanup_free_ char *val = NULL;

                r = header_value_dup(v, vn, &val);
                if (r >= 0 && val)
                        t->resp.replayed = strcasecmp(val, "true") == 0;
        }
        if (r < 0) {
                t->error = r;
                return 0;
        }
        return n;
}

static bool path_valid(const char *path) {
        if (!path || path[0] != '/')
                return false;
        for (const char *p = path; *p; p++)
                if (*p <= 0x20 || *p > 0x7e)
                        return false;
        return true;
}

static bool header_line_valid(const char *h) {
        if (!strchr(h, ':'))
                return false;
        for (const char *p = h; *p; p++)
                if ((unsigned char) *p < 0x20 && *p != '\t')
                        return false;
        return true;
}

/* Turns a libcurl failure into a negative errno and a message for people; the one place that does. */
static int client_map_error(struct cm_client *c, CURLcode cc, const struct transfer *t) {
        const char *why = c->curl_error[0] ? c->curl_error : curl_easy_strerror(cc);
        long os_errno = 0;

        if (t->error < 0) {
                if (t->error == -EFBIG)
                        client_set_error(c, "the answer to %s %s is larger than %zu bytes", t->req->method,
                                         t->req->path, t->resp.body.cap);
                else if (t->error == -ENOMEM)
                        client_set_error(c, "out of memory while receiving the answer to %s %s",
                                         t->req->method, t->req->path);
                else
                        client_set_error(c, "receiving the answer to %s %s stopped: %s", t->req->method,
                                         t->req->path, strerror(-t->error));
                return t->error;
        }

        (void) curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &os_errno);
        switch (cc) {
        case CURLE_COULDNT_CONNECT:
                if (os_errno == 0 || os_errno == ECONNREFUSED) {
                        client_set_error(
                                c, "cannot connect to %s: %s \xe2\x80\x94 is `clustermgmt serve` running?",
                                c->server, strerror(ECONNREFUSED));
                        return -ECONNREFUSED;
                }
                client_set_error(c, "cannot connect to %s: %s", c->server, strerror((int) os_errno));
                return -(int) os_errno;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                client_set_error(c, "cannot resolve the host name of %s: %s", c->server, why);
                return -EHOSTUNREACH;
        case CURLE_OPERATION_TIMEDOUT:
                client_set_error(c, "%s %s%s timed out: %s", t->req->method, c->server, t->req->path, why);
                return -ETIMEDOUT;
        case CURLE_SSL_CACERT_BADFILE:
                client_set_error(c, "cannot use the CA file '%s': %s", strna(c->ca_file), why);
                return -EPROTO;
        case CURLE_GOT_NOTHING:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_PARTIAL_FILE:
                client_set_error(c, "the connection to %s was closed before the answer was complete: %s",
                                 c->server, why);
                return -ECONNRESET;
        case CURLE_URL_MALFORMAT:
        case CURLE_UNSUPPORTED_PROTOCOL:
                client_set_error(c, "invalid server URL '%s': %s", c->server, why);
                return -EINVAL;
        case CURLE_OUT_OF_MEMORY:
                client_set_error(c, "out of memory");
                return -ENOMEM;
        default:
                if (cm_curl_code_is_tls(cc)) {
                        client_set_error(c,
                                         "TLS connection to %s failed: %s (pass --ca-file with the CA that "
                                         "signed the server's certificate)",
                                         c->server, why);
                        return -EPROTO;
                }
                client_set_error(c, "%s %s%s failed: %s", t->req->method, c->server, t->req->path, why);
                return -EIO;
        }
}

#define SETOPT(c, opt, val)                                                                                 \
        do {                                                                                                \
                if (curl_easy_setopt((c)->curl, (opt), (val)) != CURLE_OK) {                                \
                        client_set_error((c), "cannot set libcurl option " #opt);                           \
                        r = -EIO;                                                                           \
                        goto out;                                                                           \
                }                                                                                           \
        } while (0)

int cm_client_perform(struct cm_client *c, const struct cm_client_request *req,
                      struct cm_client_response *ret) {
        _cleanup_strbuf_ struct strbuf url = STRBUF_INIT(CLIENT_URL_MAX);
        _cleanup_strbuf_ struct strbuf line = STRBUF_INIT(CLIENT_TOKEN_MAX + 64);
        struct curl_slist *headers = NULL;
        struct transfer t = { .client = c, .req = req };
        size_t max;
        long timeout;
        CURLcode cc;
        int r;

        c->error[0] = 0;
        c->curl_error[0] = 0;
        line.secret = true; /* it carries the Authorization header */

        if (!req->method || !path_valid(req->path)) {
                client_set_error(c, "invalid request path");
                return -EINVAL;
        }
        if (req->on_chunk)
                max = CM_CLIENT_ERROR_BODY_MAX;
        else
                max = req->max_body > 0 ? req->max_body : CM_CLIENT_BODY_MAX;
        if (req->secret_body)
                strbuf_init_secret(&t.resp.body, max);
        else
                strbuf_init(&t.resp.body, max);

        r = strbuf_adds(&url, c->server);
        if (r >= 0)
                r = strbuf_adds(&url, req->path);
        if (r < 0) {
                client_set_error(c, "request URL too long");
                goto out;
        }

        if (c->token) {
                r = strbuf_addf(&line, "Authorization: Bearer %s", c->token);
                if (r >= 0)
                        r = cm_curl_slist_add(&headers, line.buf);
                strbuf_reset(&line);
                if (r < 0)
                        goto out_nomem;
        }
        r = cm_curl_slist_add(&headers, "Expect:");
        if (r < 0)
                goto out_nomem;
        if (req->body) {
                r = strbuf_addf(&line, "Content-Type: %s", req->content_type ?: "application/json");
                if (r >= 0)
                        r = cm_curl_slist_add(&headers, line.buf);
                strbuf_reset(&line);
                if (r < 0)
                        goto out_nomem;
        }
        for (const char *const *h = req->headers; h && *h; h++) {
                if (!header_line_valid(*h)) {
                        client_set_error(c, "invalid request header");
                        r = -EINVAL;
                        goto out;
                }
                r = cm_curl_slist_add(&headers, *h);
                if (r < 0)
                        goto out_nomem;
        }

        curl_easy_reset(c->curl);
        SETOPT(c, CURLOPT_URL, url.buf);
        SETOPT(c, CURLOPT_PROTOCOLS_STR, "http,https");
        SETOPT(c, CURLOPT_FOLLOWLOCATION, 0L);
        SETOPT(c, CURLOPT_NOSIGNAL, 1L);
        SETOPT(c, CURLOPT_ERRORBUFFER, c->curl_error);
        SETOPT(c, CURLOPT_USERAGENT, "clustermgmt/" CM_VERSION);
        SETOPT(c, CURLOPT_CONNECTTIMEOUT, CLIENT_CONNECT_TIMEOUT_SEC);
        timeout = req->timeout_sec == 0 ? CLIENT_DEFAULT_TIMEOUT_SEC : MAX(req->timeout_sec, 0L);
        SETOPT(c, CURLOPT_TIMEOUT, timeout);
        SETOPT(c, CURLOPT_TCP_KEEPALIVE, 1L);
        /* Verification is libcurl's default; stated here so that no change can drop it silently. */
        SETOPT(c, CURLOPT_SSL_VERIFYPEER, 1L);
        SETOPT(c, CURLOPT_SSL_VERIFYHOST, 2L);
        SETOPT(c, CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_2);
        if (c->ca_file)
                SETOPT(c, CURLOPT_CAINFO, c->ca_file);
        SETOPT(c, CURLOPT_HTTPHEADER, headers);
        SETOPT(c, CURLOPT_WRITEFUNCTION, write_cb);
        SETOPT(c, CURLOPT_WRITEDATA, &t);
        SETOPT(c, CURLOPT_HEADERFUNCTION, header_cb);
        SETOPT(c, CURLOPT_HEADERDATA, &t);
        if (req->on_tick) {
                SETOPT(c, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
                SETOPT(c, CURLOPT_XFERINFODATA, &t);
                SETOPT(c, CURLOPT_NOPROGRESS, 0L);
        }

        if (req->body) {
                /* POSTFIELDS does not copy: the body (which may hold a private key) stays the caller's. */
                SETOPT(c, CURLOPT_POSTFIELDS, req->body);
                SETOPT(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
                if (!streq(req->method, "POST"))
                        SETOPT(c, CURLOPT_CUSTOMREQUEST, req->method);
        } else if (streq(req->method, "POST")) {
                SETOPT(c, CURLOPT_POSTFIELDS, "");
                SETOPT(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) 0);
        } else if (streq(req->method, "GET")) {
                SETOPT(c, CURLOPT_HTTPGET, 1L);
        } else {
                SETOPT(c, CURLOPT_CUSTOMREQUEST, req->method);
        }

        cc = curl_easy_perform(c->curl);
        /* The handle must not keep pointers to this stack frame or to the header list. */
        (void) curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
        (void) curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, NULL);
        if (cc != CURLE_OK || t.error < 0) {
                r = client_map_error(c, cc, &t);
                goto out;
        }
        (void) curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &t.resp.status);

        *ret = t.resp;
        t.resp = (struct cm_client_response){};
        r = 0;
        goto out;

out_nomem:
        client_set_error(c, "out of memory");
        r = -ENOMEM;
out:
        cm_curl_slist_free_wiped(headers);
        cm_client_response_done(&t.resp);
        return r;
}

int cm_client_request(struct cm_client *c, const char *method, const char *path, const char *body,
                      const char *const *headers, struct cm_client_response *ret) {
        struct cm_client_request req = {
                .method = method,
                .path = path,
                .body = body,
                .body_len = body ? strlen(body) : 0,
                .headers = headers,
        };

        return cm_client_perform(c, &req, ret);
}

int cm_client_stream(struct cm_client *c, const char *path, const char *const *headers,
                     cm_client_chunk_fn on_chunk, void *userdata, struct cm_client_response *ret) {
        struct cm_client_request req = {
                .method = "GET",
                .path = path,
                .headers = headers,
                .timeout_sec = -1,
                .on_chunk = on_chunk,
                .userdata = userdata,
        };

        return cm_client_perform(c, &req, ret);
}

const char *cm_http_status_text(long status) {
        static const struct {
                long status;
                const char *text;
        } table[] = {
                { 400, "Bad Request" },
                { 401, "Unauthorized" },
                { 403, "Forbidden" },
                { 404, "Not Found" },
                { 405, "Method Not Allowed" },
                { 406, "Not Acceptable" },
                { 408, "Request Timeout" },
                { 409, "Conflict" },
                { 410, "Gone" },
                { 411, "Length Required" },
                { 412, "Precondition Failed" },
                { 413, "Content Too Large" },
                { 414, "URI Too Long" },
                { 415, "Unsupported Media Type" },
                { 416, "Range Not Satisfiable" },
                { 422, "Unprocessable Content" },
                { 428, "Precondition Required" },
                { 429, "Too Many Requests" },
                { 431, "Request Header Fields Too Large" },
                { 500, "Internal Server Error" },
                { 501, "Not Implemented" },
                { 502, "Bad Gateway" },
                { 503, "Service Unavailable" },
                { 504, "Gateway Timeout" },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (table[i].status == status)
                        return table[i].text;
        return "HTTP error";
}

/* A copy of s cut to CM_CLIENT_PROBLEM_STRING_MAX bytes at a UTF-8 character boundary. */
static int problem_strdup(const char *s, char **ret) {
        size_t n = strlen(s);
        char *p;

        if (n > CM_CLIENT_PROBLEM_STRING_MAX) {
                n = CM_CLIENT_PROBLEM_STRING_MAX;
                while (n > 0 && ((unsigned char) s[n] & 0xC0) == 0x80)
                        n--;
        }
        p = strndup(s, n);
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

static int problem_member(json_t *obj, const char *key, char **ret) {
        json_t *v = json_object_get(obj, key);

        if (!json_is_string(v))
                return 0;
        return problem_strdup(json_string_value(v), ret);
}

static int problem_from_json(json_t *obj, struct cm_client_problem *p) {
        json_t *errors, *e;
        size_t i;
        int r;

        if ((r = problem_member(obj, "type", &p->type)) < 0 ||
            (r = problem_member(obj, "title", &p->title)) < 0 ||
            (r = problem_member(obj, "detail", &p->detail)) < 0 ||
            (r = problem_member(obj, "instance", &p->instance)) < 0 ||
            (r = problem_member(obj, "operation", &p->operation)) < 0)
                return r;

        errors = json_object_get(obj, "errors");
        if (!json_is_array(errors) || json_array_size(errors) == 0)
                return 0;
        p->errors = new0(struct cm_client_problem_field,
                         MIN(json_array_size(errors), CM_CLIENT_PROBLEM_ERRORS_MAX));
        if (!p->errors)
                return -ENOMEM;
        json_array_foreach(errors, i, e) {
                struct cm_client_problem_field *f;

                if (p->n_errors >= CM_CLIENT_PROBLEM_ERRORS_MAX)
                        break;
                if (!json_is_object(e))
                        continue;
                f = &p->errors[p->n_errors];
                r = problem_member(e, "field", &f->field);
                if (r >= 0)
                        r = problem_member(e, "reason", &f->reason);
                if (r >= 0 && !f->reason)
                        r = problem_member(e, "message", &f->reason);
                p->n_errors++;
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The first non-empty line of a text body, trimmed, at most 200 bytes, or NULL. */
static int problem_text_detail(const char *body, size_t len, char **ret) {
        const char *s = body, *end = body + len, *e;
        size_t n;

        while (s < end && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'))
                s++;
        if (s >= end)
                return 0;
        e = s;
        while (e < end && *e != '\n' && *e != '\r' && *e != '\0')
                e++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
        n = MIN((size_t) (e - s), (size_t) 200);
        while (n > 0 && n < (size_t) (e - s) && ((unsigned char) s[n] & 0xC0) == 0x80)
                n--;
        *ret = strndup(s, n);
        return *ret ? 0 : -ENOMEM;
}

void cm_client_problem_done(struct cm_client_problem *p) {
        if (!p)
                return;
        p->type = mfree(p->type);
        p->title = mfree(p->title);
        p->detail = mfree(p->detail);
        p->instance = mfree(p->instance);
        p->operation = mfree(p->operation);
        for (size_t i = 0; i < p->n_errors; i++) {
                free(p->errors[i].field);
                free(p->errors[i].reason);
        }
        p->errors = mfree(p->errors);
        p->n_errors = 0;
        p->status = 0;
}

int cm_client_problem_decode_body(long status, const char *content_type, const char *body, size_t len,
                                  struct cm_client_problem *ret) {
        struct cm_client_problem p = { .status = status };
        bool json_type = content_type && strstr(content_type, "json");
        bool html = content_type && strstr(content_type, "html");
        int r = 0;

        if (body && len > 0 && (json_type || body[0] == '{')) {
                json_t *obj = json_loadb(body, len, 0, NULL);

                if (json_is_object(obj))
                        r = problem_from_json(obj, &p);
                json_decref(obj);
                if (r < 0)
                        goto fail;
        }
        if (!p.title) {
                r = problem_strdup(cm_http_status_text(status), &p.title);
                if (r < 0)
                        goto fail;
                if (!p.detail && body && !html && !json_type) {
                        r = problem_text_detail(body, len, &p.detail);
                        if (r < 0)
                                goto fail;
                }
        }
        *ret = p;
        return 0;
fail:
        cm_client_problem_done(&p);
        return r;
}

int cm_client_problem_decode(const struct cm_client_response *r, struct cm_client_problem *ret) {
        return cm_client_problem_decode_body(r->status, r->content_type, r->body.buf, r->body.len, ret);
}
