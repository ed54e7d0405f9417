/* SPDX-License-Identifier: Apache-2.0 */
/* A synchronous client of a cluster's Kubernetes API server: requests, discovery, server-side apply. */
#include "base/common.h"

#include <curl/curl.h>
#include <jansson.h>

#include "base/parse.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "client/curlx.h"
#include "kube/client.h"

#define KUBE_CONNECT_TIMEOUT_MS 5000U
#define KUBE_TIMEOUT_MS 30000U
#define KUBE_PATH_MAX 4096U /* a request's path with its query */
#define KUBE_GV_MAX 256U /* group versions cached per client */
#define KUBE_KINDS_MAX 4096U /* kinds kept of one group version */
#define KUBE_STATUS_MAX (64U * 1024U) /* an error answer is decoded for its Status up to this size */
#define KUBE_FIELD_MANAGER_MAX 128U

/* A kind of one group version, as discovery listed it. */
struct kube_kind {
        char *kind;
        struct cm_kube_resource res;
};

struct kube_gv {
        char *group_version;
        struct kube_kind *kinds;
        size_t n;
};

struct cm_kube {
        struct cm_kubeconfig kc; /* the blobs given to libcurl point into it */
        CURL *curl;
        char *auth; /* "Authorization: Bearer <token>" (a secret) or NULL with a client certificate */
        struct curl_slist *connect_to; /* with a tls-server-name: that name, connected to the server */
        char *base; /* what paths are appended to: the server, or its tls-server-name form */
        char user_agent[128];
        char errbuf[CURL_ERROR_SIZE];
        struct kube_gv *gvs;
        size_t n_gvs;
};

/* ---- errors ---------------------------------------------------------------------------------- */

_printf_(3, 4) static int kube_fail(struct cm_kube_error *err, int r, const char *fmt, ...) {
        va_list ap;

        if (err) {
                *err = (struct cm_kube_error){};
                va_start(ap, fmt);
                (void) vsnprintf(err->message, sizeof(err->message), fmt, ap);
                va_end(ap);
                (void) cm_redact(err->message);
        }
        return r;
}

/* Puts "<what>: " in front of err's message (cut to fit). */
static void error_prefix(struct cm_kube_error *err, const char *what) {
        char tmp[CM_KUBE_ERROR_MAX];

        if (!err || isempty(what))
                return;
        (void) cm_snprintf(tmp, sizeof(tmp), "%s: %s", what, err->message);
        memcpy(err->message, tmp, sizeof(tmp));
}

/* Copies text from the API server: control characters become '?', the rest is cut to fit. */
static void clean_copy(char *dst, size_t size, const char *src) {
        size_t i = 0;

        if (size == 0)
                return;
        for (; src && src[i] && i + 1 < size; i++) {
                unsigned char c = (unsigned char) src[i];

                dst[i] = c < 0x20 || c == 0x7f ? '?' : (char) c;
        }
        dst[i] = 0;
}

int cm_kube_status_errno(long status) {
        switch (status) {
        case 400:
        case 422:
                return -EINVAL;
        case 401:
                return -EACCES;
        case 403:
                return -EPERM;
        case 404:
        case 410:
                return -ENOENT;
        case 409:
                return -EBUSY;
        case 415:
                return -EOPNOTSUPP;
        case 429:
                return -EAGAIN;
        default:
                return status >= 500 && status < 600 ? -EIO : -EPROTO;
        }
}

int cm_kube_error_from_answer(struct cm_kube_error *err, const char *what, long status, const char *body,
                              size_t len) {
        char reason[64] = "", message[512] = "";
        json_t *doc = NULL;

        if (body && len > 0 && len <= KUBE_STATUS_MAX)
                doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
        if (json_is_object(doc) && json_is_string(json_object_get(doc, "kind")) &&
            streq(json_string_value(json_object_get(doc, "kind")), "Status")) {
                clean_copy(reason, sizeof(reason), json_string_value(json_object_get(doc, "reason")));
                clean_copy(message, sizeof(message), json_string_value(json_object_get(doc, "message")));
        }
        json_decref(doc);
        if (err) {
                *err = (struct cm_kube_error){ .status = status };
                (void) cm_strlcpy(err->reason, reason, sizeof(err->reason));
                (void) snprintf(err->message, sizeof(err->message),
                                "%s%sthe API server answered %ld%s%s%s%s", what ?: "",
                                isempty(what) ? "" : ": ", status, reason[0] ? " " : "", reason,
                                message[0] ? ": " : "", message);
                (void) cm_redact(err->message);
        }
        return cm_kube_status_errno(status);
}

/* ---- opening --------------------------------------------------------------------------------- */

/*
 * With a tls-server-name, requests go to https://<that name>:<port><path> and libcurl connects to the
 * server's host instead (CURLOPT_CONNECT_TO): the certificate is checked against the name the
 * kubeconfig asks for, as kubectl does.
 */
static int setup_server_name(struct cm_kube *k) {
        const char *host = k->kc.server + strlen("https://"), *end, *port = "443", *path;
        _cleanup_free_ char *h = NULL, *p = NULL;
        _cleanup_strbuf_ struct strbuf line = STRBUF_INIT(1024), base = STRBUF_INIT(2048);
        int r;

        path = strchrnul(host, '/');
        if (host[0] == '[') {
                end = memchr(host, ']', (size_t) (path - host));
                if (!end)
                        return -EINVAL;
                end++;
        } else
                end = memchr(host, ':', (size_t) (path - host)) ?: path;
        if (*end == ':') {
                p = strndup(end + 1, (size_t) (path - end - 1));
                if (!p)
                        return -ENOMEM;
                port = p;
        } else if (end != path)
                return -EINVAL;
        h = strndup(host, (size_t) (end - host));
        if (!h)
                return -ENOMEM;
        if (!k->kc.tls_server_name || strcasecmp(k->kc.tls_server_name, h) == 0) {
                k->base = strdup(k->kc.server);
                return k->base ? 0 : -ENOMEM;
        }
        if ((r = strbuf_addf(&line, "%s:%s:%s:%s", k->kc.tls_server_name, port, h, port)) < 0 ||
            (r = cm_curl_slist_add(&k->connect_to, line.buf)) < 0 ||
            (r = strbuf_addf(&base, "https://%s:%s%s", k->kc.tls_server_name, port, path)) < 0)
                return r;
        k->base = strbuf_detach(&base, NULL);
        return 0;
}

static size_t kube_write(char *ptr, size_t size, size_t nmemb, void *userdata);

int cm_kube_open(const char *kubeconfig, size_t len, const struct cm_kube_options *o, struct cm_kube **ret,
                 struct cm_kube_error *err) {
        _cleanup_(cm_kube_closep) struct cm_kube *k = NULL;
        unsigned connect_ms = o && o->connect_timeout_ms ? o->connect_timeout_ms : KUBE_CONNECT_TIMEOUT_MS;
        unsigned timeout_ms = o && o->timeout_ms ? o->timeout_ms : KUBE_TIMEOUT_MS;
        char why[256] = "";
        int r;

        k = new0(struct cm_kube, 1);
        if (!k)
                return kube_fail(err, -ENOMEM, "out of memory");
        r = cm_kubeconfig_parse(kubeconfig, len, &k->kc, why, sizeof(why));
        if (r == -ENOMEM)
                return kube_fail(err, r, "out of memory");
        if (r < 0)
                return kube_fail(err, -EINVAL, "the kubeconfig is not usable: %s",
                                 why[0] ? why : "malformed");
        r = setup_server_name(k);
        if (r == -ENOMEM)
                return kube_fail(err, r, "out of memory");
        if (r < 0)
                return kube_fail(err, -EINVAL, "the kubeconfig's server is not a URL this client can use");
        if (k->kc.token) {
                size_t n = strlen(k->kc.token) + sizeof("Authorization: Bearer ");

                k->auth = malloc(n);
                if (!k->auth)
                        return kube_fail(err, -ENOMEM, "out of memory");
                (void) snprintf(k->auth, n, "Authorization: Bearer %s", k->kc.token);
        }
        (void) cm_strlcpy(k->user_agent, o && o->user_agent ? o->user_agent : "clustermgmt/" CM_VERSION,
                          sizeof(k->user_agent));

        k->curl = curl_easy_init();
        if (!k->curl)
                return kube_fail(err, -ENOMEM, "out of memory");
        {
                struct curl_blob ca = { .data = k->kc.ca_pem,
                                        .len = k->kc.ca_len,
                                        .flags = CURL_BLOB_NOCOPY };
                struct curl_blob cert = { .data = k->kc.cert_pem,
                                          .len = k->kc.cert_len,
                                          .flags = CURL_BLOB_NOCOPY };
                struct curl_blob key = { .data = k->kc.key_pem,
                                         .len = k->kc.key_len,
                                         .flags = CURL_BLOB_NOCOPY };
                CURL *e = k->curl;
                CURLcode cc = CURLE_OK;

#define KSETOPT(opt, val)                                                                                   \
        do {                                                                                                \
                if (cc == CURLE_OK)                                                                         \
                        cc = curl_easy_setopt(e, opt, val);                                                 \
        } while (0)
                KSETOPT(CURLOPT_NOSIGNAL, 1L);
                KSETOPT(CURLOPT_PROTOCOLS_STR, "https");
                KSETOPT(CURLOPT_FOLLOWLOCATION, 0L);
                KSETOPT(CURLOPT_PROXY, ""); /* the environment's proxy variables do not apply */
                KSETOPT(CURLOPT_USERAGENT, k->user_agent);
                KSETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long) connect_ms);
                KSETOPT(CURLOPT_TIMEOUT_MS, (long) timeout_ms);
                KSETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
                KSETOPT(CURLOPT_ERRORBUFFER, k->errbuf);
                KSETOPT(CURLOPT_WRITEFUNCTION, kube_write);
                /* Only the kubeconfig's CA: no system bundle or directory besides it. */
                KSETOPT(CURLOPT_CAINFO, NULL);
                KSETOPT(CURLOPT_CAPATH, NULL);
                KSETOPT(CURLOPT_CAINFO_BLOB, &ca);
                KSETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
                KSETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
                KSETOPT(CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_2);
                if (k->kc.cert_pem) {
                        KSETOPT(CURLOPT_SSLCERT_BLOB, &cert);
                        KSETOPT(CURLOPT_SSLCERTTYPE, "PEM");
                        KSETOPT(CURLOPT_SSLKEY_BLOB, &key);
                        KSETOPT(CURLOPT_SSLKEYTYPE, "PEM");
                }
                if (k->connect_to)
                        KSETOPT(CURLOPT_CONNECT_TO, k->connect_to);
#undef KSETOPT
                if (cc == CURLE_OUT_OF_MEMORY)
                        return kube_fail(err, -ENOMEM, "out of memory");
                if (cc != CURLE_OK)
                        return kube_fail(err, -EIO, "libcurl refused an option: %s", curl_easy_strerror(cc));
        }
        *ret = TAKE_PTR(k);
        return 0;
}

static void gv_free(struct kube_gv *gv) {
        for (size_t i = 0; i < gv->n; i++)
                free(gv->kinds[i].kind);
        free(gv->kinds);
        free(gv->group_version);
        *gv = (struct kube_gv){};
}

struct cm_kube *cm_kube_close(struct cm_kube *k) {
        if (!k)
                return NULL;
        if (k->curl)
                curl_easy_cleanup(k->curl);
        cm_curl_slist_free_wiped(k->connect_to);
        k->auth = cm_erase_and_free(k->auth);
        free(k->base);
        for (size_t i = 0; i < k->n_gvs; i++)
                gv_free(&k->gvs[i]);
        free(k->gvs);
        cm_kubeconfig_done(&k->kc);
        free(k);
        return NULL;
}

const struct cm_kubeconfig *cm_kube_kubeconfig(const struct cm_kube *k) {
        return k ? &k->kc : NULL;
}

/* ---- requests -------------------------------------------------------------------------------- */

struct write_ctx {
        struct strbuf *sb;
        bool over; /* the answer did not fit */
};

static size_t kube_write(char *ptr, size_t size, size_t nmemb, void *userdata) {
        struct write_ctx *w = userdata;
        size_t n = size * nmemb;

        if (strbuf_add(w->sb, ptr, n) < 0) {
                w->over = true;
                return 0; /* the transfer ends with CURLE_WRITE_ERROR */
        }
        return n;
}

static bool method_known(const char *m) {
        static const char *const methods[] = { "GET", "POST", "PUT", "PATCH", "DELETE" };

        for (size_t i = 0; i < ELEMENTSOF(methods); i++)
                if (streq(methods[i], m))
                        return true;
        return false;
}

static bool path_valid(const char *p) {
        size_t n = 0;

        if (!p || p[0] != '/')
                return false;
        for (; p[n]; n++)
                if ((unsigned char) p[n] <= 0x20 || (unsigned char) p[n] >= 0x7f || p[n] == '#')
                        return false;
        return n <= KUBE_PATH_MAX;
}

static int transport_error(struct cm_kube *k, CURLcode cc, bool over, size_t cap,
                           struct cm_kube_error *err) {
        const char *detail = k->errbuf[0] ? k->errbuf : curl_easy_strerror(cc);

        if (over || cc == CURLE_FILESIZE_EXCEEDED)
                return kube_fail(err, -EFBIG, "%s: the answer is larger than %zu bytes", k->kc.server, cap);
        switch (cc) {
        case CURLE_OUT_OF_MEMORY:
                return kube_fail(err, -ENOMEM, "out of memory");
        case CURLE_OPERATION_TIMEDOUT:
                return kube_fail(err, -ETIMEDOUT, "%s: the API server did not answer in time (%s)",
                                 k->kc.server, detail);
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_CONNECT:
                return kube_fail(err, -EHOSTUNREACH, "%s: cannot connect to the API server (%s)",
                                 k->kc.server, detail);
        default:
                break;
        }
        if (cm_curl_code_is_tls(cc))
                return kube_fail(
                        err, -EPROTO,
                        "%s: TLS with the API server failed; its certificate must verify against the "
                        "kubeconfig's CA (%s)",
                        k->kc.server, detail);
        return kube_fail(err, -EIO, "%s: the request to the API server failed (%s)", k->kc.server, detail);
}

int cm_kube_request(struct cm_kube *k, const char *method, const char *path, const char *content_type,
                    const void *body, size_t len, long *ret_status, struct strbuf *resp,
                    struct cm_kube_error *err) {
        _cleanup_strbuf_ struct strbuf url = STRBUF_INIT(KUBE_PATH_MAX + 2048), ct = STRBUF_INIT(256);
        struct curl_slist *headers = NULL;
        struct write_ctx w = { .sb = resp };
        CURL *e;
        CURLcode cc = CURLE_OK;
        long status = 0;
        int r;

        if (!k || !method || !method_known(method))
                return kube_fail(err, -EINVAL, "the request method is not one this client sends");
        if (!path_valid(path))
                return kube_fail(err, -EINVAL, "the request path is not a valid, escaped path");
        if (content_type && ((unsigned char) content_type[0] <= 0x20 || strpbrk(content_type, "\r\n") ||
                             strlen(content_type) > 128))
                return kube_fail(err, -EINVAL, "the content type is not valid");
        if (!resp)
                return kube_fail(err, -EINVAL, "no buffer for the answer");
        if ((r = strbuf_adds(&url, k->base)) < 0 || (r = strbuf_adds(&url, path)) < 0)
                return kube_fail(err, r == -ENOMEM ? -ENOMEM : -EINVAL, "the request URL is too long");
        if (content_type && (r = strbuf_addf(&ct, "Content-Type: %s", content_type)) < 0)
                return kube_fail(err, -ENOMEM, "out of memory");

        r = cm_curl_slist_add(&headers, "Accept: application/json");
        if (r >= 0)
                r = cm_curl_slist_add(&headers, "Expect:"); /* no 100-continue round trip for large bodies */
        if (r >= 0 && content_type)
                r = cm_curl_slist_add(&headers, ct.buf);
        if (r >= 0 && k->auth)
                r = cm_curl_slist_add(&headers, k->auth);
        if (r < 0) {
                cm_curl_slist_free_wiped(headers);
                return kube_fail(err, -ENOMEM, "out of memory");
        }

        strbuf_reset(resp);
        k->errbuf[0] = 0;
        e = k->curl;
#define RSETOPT(opt, val)                                                                                   \
        do {                                                                                                \
                if (cc == CURLE_OK)                                                                         \
                        cc = curl_easy_setopt(e, opt, val);                                                 \
        } while (0)
        RSETOPT(CURLOPT_URL, url.buf);
        RSETOPT(CURLOPT_HTTPGET, 1L); /* forgets the previous request's body and method */
        if (body || !streq(method, "GET")) {
                if (body || streq(method, "POST") || streq(method, "PUT") || streq(method, "PATCH")) {
                        RSETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) (body ? len : 0));
                        RSETOPT(CURLOPT_POSTFIELDS, body ?: "");
                }
                RSETOPT(CURLOPT_CUSTOMREQUEST, method);
        } else
                RSETOPT(CURLOPT_CUSTOMREQUEST, NULL);
        RSETOPT(CURLOPT_HTTPHEADER, headers);
        RSETOPT(CURLOPT_WRITEDATA, &w);
        RSETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) resp->cap);
#undef RSETOPT
        if (cc == CURLE_OK)
                cc = curl_easy_perform(e);
        if (cc == CURLE_OK)
                (void) curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        /* Nothing of this request stays set: the headers (a token) are wiped and freed now. */
        (void) curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
        (void) curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
        (void) curl_easy_setopt(e, CURLOPT_POSTFIELDS, NULL);
        cm_curl_slist_free_wiped(headers);

        if (cc != CURLE_OK)
                return transport_error(k, cc, w.over, resp->cap, err);
        if (status < 100 || status > 599)
                return kube_fail(err, -EIO, "%s: the API server sent no valid HTTP status", k->kc.server);
        if (ret_status)
                *ret_status = status;
        return 0;
}

/* ---- names and paths ------------------------------------------------------------------------- */

bool cm_kube_name_valid(const char *s) {
        return cm_ascii_text_valid(s, CM_KUBE_NAME_MAX, false) && !streq(s, ".") && !streq(s, "..") &&
               !strpbrk(s, "/%");
}

static bool kind_valid(const char *s) {
        size_t n = s ? strlen(s) : 0;

        if (n == 0 || n > 63 || !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z')))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
                      (s[i] >= '0' && s[i] <= '9')))
                        return false;
        return true;
}

/* "v1" (the core group) or "<group>/<version>": a DNS-subdomain-like group, a lowercase version. */
static bool api_version_valid(const char *s) {
        const char *slash = s ? strchr(s, '/') : NULL, *version = slash ? slash + 1 : s;
        size_t glen = slash ? (size_t) (slash - s) : 0, vlen;

        if (isempty(s) || strlen(s) > 316)
                return false;
        if (slash && (glen == 0 || glen > 253))
                return false;
        for (size_t i = 0; i < glen; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
                      s[i] == '.'))
                        return false;
        vlen = strlen(version);
        if (vlen == 0 || vlen > 63)
                return false;
        for (size_t i = 0; i < vlen; i++)
                if (!((version[i] >= 'a' && version[i] <= 'z') || (version[i] >= '0' && version[i] <= '9')))
                        return false;
        return true;
}

/* Percent-encodes everything but the unreserved characters (RFC 3986) and ':' and '@'. */
static int add_escaped(struct strbuf *out, const char *s) {
        int r = 0;

        for (; *s && r >= 0; s++) {
                unsigned char c = (unsigned char) *s;

                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '.' || c == '_' || c == '~' || c == ':' || c == '@')
                        r = strbuf_addch(out, (char) c);
                else
                        r = strbuf_addf(out, "%%%02X", c);
        }
        return r;
}

/* "ServiceAccount customer/customer", "Namespace customer": how messages name an object. */
static void ref_what(const char *verb, const struct cm_kube_ref *ref, char *buf, size_t size) {
        bool ns = !isempty(ref->namespace);

        (void) snprintf(buf, size, "%s %s %s%s%s", verb, strna(ref->kind), ns ? ref->namespace : "",
                        ns ? "/" : "", ref->name ?: "(all)");
}

/* ---- discovery ------------------------------------------------------------------------------- */

static struct kube_gv *gv_find(struct cm_kube *k, const char *gv) {
        for (size_t i = 0; i < k->n_gvs; i++)
                if (streq(k->gvs[i].group_version, gv))
                        return &k->gvs[i];
        return NULL;
}

static void gv_drop(struct cm_kube *k, const char *gv) {
        struct kube_gv *g = gv_find(k, gv);

        if (!g)
                return;
        gv_free(g);
        *g = k->gvs[--k->n_gvs];
        k->gvs[k->n_gvs] = (struct kube_gv){};
}

/* Decodes an APIResourceList into a new entry's kinds (subresources, odd entries skipped). */
static int gv_decode(const char *body, size_t len, struct kube_gv *ret) {
        json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL), *list, *item;
        struct kube_kind *kinds = NULL;
        size_t n = 0, i;
        int r = 0;

        list = json_object_get(doc, "resources");
        if (!json_is_array(list)) {
                json_decref(doc);
                return -EBADMSG;
        }
        kinds = new0(struct kube_kind, MIN(json_array_size(list), (size_t) KUBE_KINDS_MAX));
        if (!kinds) {
                json_decref(doc);
                return -ENOMEM;
        }
        json_array_foreach(list, i, item) {
                const char *name = json_string_value(json_object_get(item, "name")),
                           *kind = json_string_value(json_object_get(item, "kind"));
                const json_t *namespaced = json_object_get(item, "namespaced");

                if (n >= KUBE_KINDS_MAX)
                        break;
                if (!name || !kind || !json_is_boolean(namespaced) || strchr(name, '/') ||
                    !kind_valid(kind) || !cm_kube_name_valid(name) ||
                    strlen(name) >= sizeof(kinds[n].res.name))
                        continue;
                kinds[n].kind = strdup(kind);
                if (!kinds[n].kind) {
                        r = -ENOMEM;
                        break;
                }
                (void) cm_strlcpy(kinds[n].res.name, name, sizeof(kinds[n].res.name));
                kinds[n].res.namespaced = json_is_true(namespaced);
                n++;
        }
        json_decref(doc);
        if (r < 0) {
                for (size_t j = 0; j < n; j++)
                        free(kinds[j].kind);
                free(kinds);
                return r;
        }
        ret->kinds = kinds;
        ret->n = n;
        return 0;
}

int cm_kube_resource_list_find(const char *body, size_t len, const char *kind,
                               struct cm_kube_resource *ret) {
        struct kube_gv g = {};
        int r;

        if (!body || !kind || !ret)
                return -EINVAL;
        r = gv_decode(body, len, &g);
        if (r < 0)
                return r;
        r = -ENOENT;
        for (size_t i = 0; i < g.n; i++)
                if (streq(g.kinds[i].kind, kind)) {
                        *ret = g.kinds[i].res;
                        r = 0;
                        break;
                }
        gv_free(&g);
        return r;
}

/* Reads the resource list of one group version into the cache (replacing what it held). */
static int gv_fetch(struct cm_kube *k, const char *gv, struct cm_kube_error *err) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(512), body = STRBUF_INIT(CM_KUBE_DISCOVERY_MAX);
        struct kube_gv fresh = {}, *slot;
        char what[384];
        long status = 0;
        int r;

        (void) snprintf(what, sizeof(what), "discover the kinds of %s", gv);
        r = strbuf_addf(&path, "%s%s", strchr(gv, '/') ? "/apis/" : "/api/", gv);
        if (r < 0)
                return kube_fail(err, -ENOMEM, "out of memory");
        r = cm_kube_request(k, "GET", path.buf, NULL, NULL, 0, &status, &body, err);
        if (r < 0) {
                error_prefix(err, what);
                return r;
        }
        if (status == 404) {
                gv_drop(k, gv);
                (void) cm_kube_error_from_answer(err, what, status, body.buf, body.len);
                return kube_fail(err, -ENOENT, "the API server does not serve %s", gv);
        }
        if (status != 200)
                return cm_kube_error_from_answer(err, what, status, body.buf, body.len);
        r = gv_decode(body.buf, body.len, &fresh);
        if (r == -ENOMEM)
                return kube_fail(err, r, "out of memory");
        if (r < 0)
                return kube_fail(err, -EBADMSG, "%s: the answer is not an APIResourceList", what);
        fresh.group_version = strdup(gv);
        if (!fresh.group_version) {
                gv_free(&fresh);
                return kube_fail(err, -ENOMEM, "out of memory");
        }

        slot = gv_find(k, gv);
        if (slot)
                gv_free(slot);
        else {
                if (k->n_gvs >= KUBE_GV_MAX) {
                        /* A full cache forgets its oldest entry: it is read again when needed. */
                        gv_free(&k->gvs[0]);
                        memmove(&k->gvs[0], &k->gvs[1], sizeof(k->gvs[0]) * (k->n_gvs - 1));
                        k->n_gvs--;
                } else if (k->n_gvs % 16 == 0) {
                        struct kube_gv *g = new0(struct kube_gv, k->n_gvs + 16);

                        if (!g) {
                                gv_free(&fresh);
                                return kube_fail(err, -ENOMEM, "out of memory");
                        }
                        if (k->n_gvs > 0)
                                memcpy(g, k->gvs, sizeof(g[0]) * k->n_gvs);
                        free(k->gvs);
                        k->gvs = g;
                }
                slot = &k->gvs[k->n_gvs++];
        }
        *slot = fresh;
        return 0;
}

static bool gv_lookup(struct cm_kube *k, const char *gv, const char *kind, struct cm_kube_resource *ret) {
        const struct kube_gv *g = gv_find(k, gv);

        for (size_t i = 0; g && i < g->n; i++)
                if (streq(g->kinds[i].kind, kind)) {
                        *ret = g->kinds[i].res;
                        return true;
                }
        return false;
}

int cm_kube_resolve(struct cm_kube *k, const char *api_version, const char *kind,
                    struct cm_kube_resource *ret, struct cm_kube_error *err) {
        bool fetched = false;
        int r;

        if (!api_version_valid(api_version))
                return kube_fail(err, -EINVAL,
                                 "the apiVersion is not valid (\"v1\" or \"<group>/<version>\")");
        if (!kind_valid(kind))
                return kube_fail(err, -EINVAL, "the kind is not valid (1-63 letters and digits)");
        if (!gv_find(k, api_version)) {
                r = gv_fetch(k, api_version, err);
                if (r < 0)
                        return r;
                fetched = true;
        }
        if (gv_lookup(k, api_version, kind, ret))
                return 0;
        if (!fetched) {
                /* Not in the cached list: it may have been added since (a new CRD); read it once more. */
                r = gv_fetch(k, api_version, err);
                if (r < 0)
                        return r;
                if (gv_lookup(k, api_version, kind, ret))
                        return 0;
        }
        return kube_fail(err, -ENOENT, "the API server has no kind %s in %s", kind, api_version);
}

int cm_kube_object_path(struct cm_kube *k, const struct cm_kube_ref *ref, struct strbuf *out,
                        struct cm_kube_error *err) {
        struct cm_kube_resource res = {};
        bool has_ns;
        int r;

        if (!ref || !ref->api_version || !ref->kind)
                return kube_fail(err, -EINVAL, "no object: an apiVersion and a kind are needed");
        has_ns = !isempty(ref->namespace);
        if (has_ns && !cm_kube_name_valid(ref->namespace))
                return kube_fail(err, -EINVAL, "the namespace of %s is not a valid name", strna(ref->kind));
        if (ref->name && !cm_kube_name_valid(ref->name))
                return kube_fail(err, -EINVAL, "the name of %s is not a valid name", strna(ref->kind));
        r = cm_kube_resolve(k, ref->api_version, ref->kind, &res, err);
        if (r < 0)
                return r;
        if (res.namespaced && !has_ns)
                return kube_fail(err, -EINVAL,
                                 "%s is a namespaced kind: the object needs metadata.namespace", ref->kind);
        if (!res.namespaced && has_ns)
                return kube_fail(err, -EINVAL, "%s is a cluster-scoped kind: the object has no namespace",
                                 ref->kind);
        r = strbuf_addf(out, "%s%s", strchr(ref->api_version, '/') ? "/apis/" : "/api/", ref->api_version);
        if (r >= 0 && has_ns && (r = strbuf_addl(out, "/namespaces/")) >= 0)
                r = add_escaped(out, ref->namespace);
        if (r >= 0)
                r = strbuf_addf(out, "/%s", res.name);
        if (r >= 0 && ref->name && (r = strbuf_addch(out, '/')) >= 0)
                r = add_escaped(out, ref->name);
        if (r < 0)
                return kube_fail(err, r == -ENOMEM ? -ENOMEM : -EINVAL, "the object's path is too long");
        return 0;
}

/* ---- objects --------------------------------------------------------------------------------- */

int cm_kube_get(struct cm_kube *k, const struct cm_kube_ref *ref, json_t **ret, struct cm_kube_error *err) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(KUBE_PATH_MAX), body = {};
        char what[384];
        long status = 0;
        json_t *obj;
        int r;

        if (!ref || !ref->name)
                return kube_fail(err, -EINVAL, "get: no object named");
        ref_what("get", ref, what, sizeof(what));
        r = cm_kube_object_path(k, ref, &path, err);
        if (r < 0) {
                error_prefix(err, what);
                return r;
        }
        strbuf_init_secret(&body, CM_KUBE_OBJECT_MAX); /* the object may be a Secret */
        r = cm_kube_request(k, "GET", path.buf, NULL, NULL, 0, &status, &body, err);
        if (r < 0) {
                error_prefix(err, what);
                return r;
        }
        if (status != 200)
                return cm_kube_error_from_answer(err, what, status, body.buf, body.len);
        obj = json_loadb(body.buf, body.len, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(obj)) {
                json_decref(obj);
                return kube_fail(err, -EBADMSG, "%s: the answer is not a JSON object", what);
        }
        *ret = obj;
        return 0;
}

int cm_kube_delete(struct cm_kube *k, const struct cm_kube_ref *ref, struct cm_kube_error *err) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(KUBE_PATH_MAX),
                                       body = STRBUF_INIT(CM_KUBE_OBJECT_MAX);
        char what[384];
        long status = 0;
        int r;

        if (!ref || !ref->name)
                return kube_fail(err, -EINVAL, "delete: no object named");
        ref_what("delete", ref, what, sizeof(what));
        r = cm_kube_object_path(k, ref, &path, err);
        if (r == -ENOENT)
                return 0; /* the kind is not served: no object of it can exist */
        if (r >= 0)
                r = strbuf_addl(&path, "?propagationPolicy=Background");
        if (r >= 0)
                r = cm_kube_request(k, "DELETE", path.buf, NULL, NULL, 0, &status, &body, err);
        if (r < 0) {
                error_prefix(err, what);
                return r;
        }
        if (status == 404)
                return 0;
        if (status != 200 && status != 202)
                return cm_kube_error_from_answer(err, what, status, body.buf, body.len);
        return 1;
}

/* The identity an object to apply names; -EINVAL when something is missing. */
static int object_ref(const json_t *object, struct cm_kube_ref *ret, struct cm_kube_error *err) {
        const json_t *meta = json_object_get(object, "metadata"), *ns;

        if (!json_is_object(object))
                return kube_fail(err, -EINVAL, "apply: the object is not a JSON object");
        *ret = (struct cm_kube_ref){
                .api_version = json_string_value(json_object_get(object, "apiVersion")),
                .kind = json_string_value(json_object_get(object, "kind")),
                .name = json_string_value(json_object_get(meta, "name")),
        };
        ns = json_object_get(meta, "namespace");
        if (ns && !json_is_string(ns) && !json_is_null(ns))
                return kube_fail(err, -EINVAL, "apply: metadata.namespace must be a string");
        ret->namespace = json_string_value(ns);
        if (!ret->api_version || !ret->kind)
                return kube_fail(err, -EINVAL, "apply: the object has no %s",
                                 ret->api_version ? "kind" : "apiVersion");
        if (!ret->name)
                return kube_fail(err, -EINVAL, "apply %s: the object has no metadata.name", ret->kind);
        return 0;
}

int cm_kube_apply(struct cm_kube *k, const json_t *object, const char *field_manager, bool dry_run,
                  bool force, json_t **ret_live, struct cm_kube_error *err) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(KUBE_PATH_MAX), body = {};
        _cleanup_erase_free_ char *doc = NULL;
        struct cm_kube_ref ref = {};
        char what[384];
        long status = 0;
        int r;

        r = object_ref(object, &ref, err);
        if (r < 0)
                return r;
        ref_what(dry_run ? "apply (dry run)" : "apply", &ref, what, sizeof(what));
        if (!cm_ascii_text_valid(field_manager, KUBE_FIELD_MANAGER_MAX, true))
                return kube_fail(err, -EINVAL, "%s: the field manager must be 1-%u printable characters",
                                 what, KUBE_FIELD_MANAGER_MAX);
        r = cm_kube_object_path(k, &ref, &path, err);
        if (r < 0) {
                error_prefix(err, what);
                return r;
        }
        r = strbuf_addl(&path, "?fieldManager=");
        if (r >= 0)
                r = add_escaped(&path, field_manager);
        if (r >= 0 && force)
                r = strbuf_addl(&path, "&force=true");
        if (r >= 0 && dry_run)
                r = strbuf_addl(&path, "&dryRun=All");
        /* A field the schema does not know is an error, not silently dropped (the default, Warn). */
        if (r >= 0)
                r = strbuf_addl(&path, "&fieldValidation=Strict");
        if (r < 0)
                return kube_fail(err, r == -ENOMEM ? -ENOMEM : -EINVAL, "%s: the path is too long", what);
        /* JSON is YAML: the apply patch is the object as compact JSON. */
        doc = json_dumps(object, JSON_COMPACT);
        if (!doc)
                return kube_fail(err, -ENOMEM, "out of memory");

        strbuf_init_secret(&body, CM_KUBE_OBJECT_MAX);
        r = cm_kube_request(k, "PATCH", path.buf, "application/apply-patch+yaml", doc, strlen(doc), &status,
                            &body, err);
        if (r < 0) {
                error_prefix(err, what);
                return r;
        }
        if (status != 200 && status != 201)
                return cm_kube_error_from_answer(err, what, status, body.buf, body.len);
        if (ret_live) {
                json_t *live = json_loadb(body.buf, body.len, JSON_REJECT_DUPLICATES, NULL);

                if (!json_is_object(live)) {
                        json_decref(live);
                        return kube_fail(err, -EBADMSG, "%s: the answer is not a JSON object", what);
                }
                *ret_live = live;
        }
        return 0;
}
