/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <sys/stat.h>

#include "api/json.h"
#include "api/problem.h"
#include "base/fileio.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "policy/policy.h"
#include "policy/remote.h"
#include "client/curlx.h"

#define REMOTE_URL_MAX 2048U
#define REMOTE_TOKEN_MAX 4096U
#define REMOTE_TOKEN_FILE_MAX (16U * 1024U)
#define REMOTE_CA_FILE_MAX (4U * 1024U * 1024U)
#define REMOTE_REQUEST_MAX (16U * 1024U * 1024U)
#define REMOTE_POOL_IDLE_MAX 16U
#define REMOTE_AUTH_PREFIX "Authorization: Bearer "
#define REMOTE_DETAIL_MAX 200U

/* Limits of a decision: what a person can read in an error message, not what JSON allows. */
#define DECISION_ENTRIES_MAX 1000U
#define DECISION_MESSAGE_MAX 2048U
#define DECISION_RULE_MAX 128U
#define DECISION_FIELD_MAX 512U

/* One libcurl handle with its own connection, used by one evaluation at a time. */
struct remote_handle {
        CURL *curl;
        struct remote_handle *next;
};

/* What identifies a version of the token file: a rename, a rewrite or a touch changes it. */
struct file_id {
        dev_t dev;
        ino_t ino;
        off_t size;
        struct timespec mtime;
};

struct cm_policy_remote {
        char *url;
        char *token_file;
        char *ca_file;
        long timeout_ms;
        bool plain_http;
        bool curl_initialized;

        CURLSH *share; /* TLS sessions and DNS answers, shared by the handles */
        pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
        bool share_locks_initialized;

        pthread_mutex_t lock; /* guards everything below */
        bool lock_initialized;
        char *token; /* NULL without a token file; wiped when replaced and at close */
        struct file_id token_id;
        struct remote_handle *idle;
        unsigned n_idle;
};

/* The response being received. */
struct answer {
        struct strbuf body;
        int error; /* set by the write callback when it stopped the transfer */
};

/* Leaves a message for people in err (when there is room) and returns r. */
_printf_(4, 5) static int err_set(char *err, size_t err_size, int r, const char *fmt, ...) {
        va_list ap;

        if (!err || err_size == 0)
                return r;
        va_start(ap, fmt);
        (void) vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
        return r;
}

/* -------------------------------------------------------------------------------------------------
 * Decisions
 */

/* Text that may end up on a terminal: 1..max bytes, no control characters (jansson checked UTF-8). */
static bool text_ok(const char *s, size_t max) {
        size_t n = 0;

        for (const unsigned char *p = (const unsigned char *) s; *p; p++, n++)
                if (*p < 0x20 || *p == 0x7f)
                        return false;
        return n > 0 && n <= max;
}

static bool rule_id_ok(const char *s) {
        size_t n = 0;

        for (const char *p = s; *p; p++, n++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '-' || *p == '_' || *p == '.' || *p == ':' || *p == '/'))
                        return false;
        return n > 0 && n <= DECISION_RULE_MAX;
}

/* Sets why to "<path>: <reason>"; returns -EBADMSG. The answer's text is never quoted. */
_printf_(4, 5) static int decision_bad(char *why, size_t why_size, const char *path, const char *fmt, ...) {
        char reason[160];
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(reason, sizeof(reason), fmt, ap);
        va_end(ap);
        (void) err_set(why, why_size, 0, "%s: %s", path, reason);
        return -EBADMSG;
}

static int violation_decode(const json_t *e, const char *path, json_t **ret, char *why, size_t why_size) {
        json_t *v = NULL, *msg, *message, *rule, *field;
        const char *key;
        json_t *value;

        if (json_is_string(e)) {
                if (!text_ok(json_string_value(e), DECISION_MESSAGE_MAX))
                        return decision_bad(why, why_size, path,
                                            "a message must be 1-%u bytes without control characters",
                                            DECISION_MESSAGE_MAX);
                v = json_pack("{s:s, s:s}", "rule", CM_POLICY_RULE_UNNAMED, "message", json_string_value(e));
                if (!v)
                        return -ENOMEM;
                *ret = v;
                return 0;
        }
        if (!json_is_object(e))
                return decision_bad(why, why_size, path, "a violation is a string or an object, not %s",
                                    cm_json_type_name(e));

        json_object_foreach(
                CM_UNCONST(json_t *, e), key,
                value) if (!streq(key, "msg") && !streq(key, "message") && !streq(key, "rule") &&
                           !streq(key, "field")) return decision_bad(why, why_size, path,
                                                                     "unknown member (a violation has msg "
                                                                     "or message, rule, field)");

        msg = json_object_get(e, "msg");
        message = json_object_get(e, "message");
        if (msg && message)
                return decision_bad(why, why_size, path, "both msg and message");
        if (!message)
                message = msg;
        if (!json_is_string(message) || !text_ok(json_string_value(message), DECISION_MESSAGE_MAX))
                return decision_bad(
                        why, why_size, path,
                        "msg or message must be a string of 1-%u bytes without control characters",
                        DECISION_MESSAGE_MAX);
        rule = json_object_get(e, "rule");
        if (rule && (!json_is_string(rule) || !rule_id_ok(json_string_value(rule))))
                return decision_bad(why, why_size, path,
                                    "rule must be 1-%u characters of A-Z a-z 0-9 - _ . : /",
                                    DECISION_RULE_MAX);
        field = json_object_get(e, "field");
        if (field && (!json_is_string(field) || !text_ok(json_string_value(field), DECISION_FIELD_MAX)))
                return decision_bad(why, why_size, path,
                                    "field must be a string of 1-%u bytes without control characters",
                                    DECISION_FIELD_MAX);

        v = json_pack("{s:s, s:s}", "rule", rule ? json_string_value(rule) : CM_POLICY_RULE_UNNAMED,
                      "message", json_string_value(message));
        if (!v)
                return -ENOMEM;
        if (field && json_object_set(v, "field", field) < 0) {
                json_decref(v);
                return -ENOMEM;
        }
        *ret = v;
        return 0;
}

/* A missing list is empty; otherwise an array of violations. */
static int violations_decode(const json_t *list, const char *name, json_t **ret, char *why,
                             size_t why_size) {
        json_t *out, *e;
        size_t i;
        int r;

        if (!list) {
                out = json_array();
                if (!out)
                        return -ENOMEM;
                *ret = out;
                return 0;
        }
        if (!json_is_array(list))
                return decision_bad(why, why_size, name, "must be an array (a set of violations), not %s",
                                    cm_json_type_name(list));
        if (json_array_size(list) > DECISION_ENTRIES_MAX)
                return decision_bad(why, why_size, name, "more than %u violations", DECISION_ENTRIES_MAX);

        out = json_array();
        if (!out)
                return -ENOMEM;
        json_array_foreach(CM_UNCONST(json_t *, list), i, e) {
                char path[64];
                json_t *v = NULL;

                cm_json_path_index(path, sizeof(path), name, i);
                r = violation_decode(e, path, &v, why, why_size);
                if (r < 0) {
                        json_decref(out);
                        return r;
                }
                if (json_array_append_new(out, v) < 0) {
                        json_decref(out);
                        return -ENOMEM;
                }
        }
        *ret = out;
        return 0;
}

/*
 * The decoder behind cm_policy_decision_decode(); with need_result, an answer without "result" is
 * not a decision either. why gets the reason of an -EBADMSG (a path, never the answer's text).
 */
static int decision_decode(const char *body, size_t n, bool need_result, struct cm_policy_decision *ret,
                           char *why, size_t why_size) {
        struct cm_policy_decision d = {};
        struct cm_problem p;
        json_t *doc = NULL, *result;
        int r;

        if (n == 0)
                return err_set(why, why_size, -EBADMSG, "the answer is empty");
        cm_problem_init(&p);
        r = cm_json_parse_strict(body, n, &doc, &p);
        if (r < 0) {
                /* The parser speaks of requests; what it says holds for the answer. */
                const char *detail = p.detail[0] ? p.detail : "not a JSON object";

                if (strneq(detail, "the request body ", 17))
                        (void) err_set(why, why_size, 0, "the answer %s", detail + 17);
                else
                        (void) err_set(why, why_size, 0, "%s", detail);
                cm_problem_done(&p);
                return -EBADMSG;
        }
        cm_problem_done(&p);

        /* Other members (decision_id, metrics, warning ...) are OPA's bookkeeping. */
        result = json_object_get(doc, "result");
        if (!result && need_result) {
                r = decision_bad(why, why_size, "result",
                                 "missing: no policy at this path (is the package path in the URL right?)");
                goto out;
        }
        if (result && !json_is_object(result)) {
                r = decision_bad(why, why_size, "result", "must be an object with deny and warn, not %s",
                                 cm_json_type_name(result));
                goto out;
        }
        /* Other members of result are the package's other rules. */
        r = violations_decode(json_object_get(result, "deny"), "result.deny", &d.deny, why, why_size);
        if (r < 0)
                goto out;
        r = violations_decode(json_object_get(result, "warn"), "result.warn", &d.warn, why, why_size);
        if (r < 0)
                goto out;
        *ret = d;
        d = (struct cm_policy_decision){};
        r = 0;
out:
        cm_policy_decision_done(&d);
        json_decref(doc);
        return r;
}

int cm_policy_decision_decode(const char *body, size_t n, struct cm_policy_decision *ret) {
        return decision_decode(body, n, false, ret, NULL, 0);
}

/* -------------------------------------------------------------------------------------------------
 * Configuration
 */

static bool host_is_loopback(const char *host) {
        char buf[INET6_ADDRSTRLEN + 2];
        struct in6_addr a6;
        struct in_addr a4;
        size_t n = strlen(host);

        if (strcasecmp(host, "localhost") == 0 || strcasecmp(host, "localhost.") == 0)
                return true;
        if (inet_pton(AF_INET, host, &a4) == 1)
                return (ntohl(a4.s_addr) >> 24) == 127;
        if (n > 2 && n < sizeof(buf) && host[0] == '[' && host[n - 1] == ']') {
                memcpy(buf, host + 1, n - 2);
                buf[n - 2] = 0;
                if (inet_pton(AF_INET6, buf, &a6) == 1)
                        return IN6_IS_ADDR_LOOPBACK(&a6);
        }
        return false;
}

static bool curl_url_has(CURLU *u, CURLUPart part) {
        char *v = NULL;
        bool has;

        has = curl_url_get(u, part, &v, 0) == CURLUE_OK && !isempty(v);
        curl_free(v);
        return has;
}

static int url_check(const char *url, bool *ret_plain_http, char *err, size_t err_size) {
        static const char example[] = "https://opa.example:8181/v1/data/cratekube/cluster";
        CURLU *u = NULL;
        char *scheme = NULL, *host = NULL, *path = NULL;
        bool plain_http = false;
        size_t n = 0;
        int r = -EINVAL;

        if (isempty(url))
                return err_set(err, err_size, -EINVAL, "the policy URL is empty (like %s)", example);
        for (const char *p = url; *p; p++, n++)
                if (*p <= 0x20 || *p > 0x7e)
                        return err_set(err, err_size, -EINVAL,
                                       "the policy URL holds blanks, control or non-ASCII characters");
        if (n > REMOTE_URL_MAX)
                return err_set(err, err_size, -EINVAL, "the policy URL is longer than %u characters",
                               REMOTE_URL_MAX);

        u = curl_url();
        if (!u)
                return err_set(err, err_size, -ENOMEM, "out of memory");
        if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK) {
                /* A URL that does not parse may still carry a password: not quoted then. */
                (void) err_set(err, err_size, 0, "invalid policy URL '%s' (like %s)",
                               strchr(url, '@') ? "<not shown>" : url, example);
                goto out;
        }
        if (curl_url_has(u, CURLUPART_USER) || curl_url_has(u, CURLUPART_PASSWORD) ||
            curl_url_has(u, CURLUPART_OPTIONS)) {
                /* Not quoted: the URL carries a credential. */
                (void) err_set(err, err_size, 0,
                               "the policy URL must not carry credentials (user:password@): "
                               "give the service a token file instead");
                goto out;
        }
        if (curl_url_has(u, CURLUPART_FRAGMENT)) {
                (void) err_set(err, err_size, 0, "the policy URL '%s' must not have a #fragment", url);
                goto out;
        }
        if (strcasecmp(scheme, "http") == 0) {
                if (!host_is_loopback(host)) {
                        (void) err_set(
                                err, err_size, 0,
                                "the policy URL '%s' is plain http:// to a host that is not loopback: the "
                                "token and the decisions would cross the network unprotected; use https:// "
                                "(http:// is only accepted for 127.0.0.1, ::1 and localhost)",
                                url);
                        goto out;
                }
                plain_http = true;
        } else if (strcasecmp(scheme, "https") != 0) {
                (void) err_set(err, err_size, 0, "the policy URL '%s' must be https:// (like %s)", url,
                               example);
                goto out;
        }
        if (isempty(path) || streq(path, "/")) {
                (void) err_set(err, err_size, 0,
                               "the policy URL '%s' has no path: name the decision, like %s", url, example);
                goto out;
        }
        *ret_plain_http = plain_http;
        r = 0;
out:
        curl_free(scheme);
        curl_free(host);
        curl_free(path);
        curl_url_cleanup(u);
        return r;
}

static void file_id_from_stat(struct file_id *id, const struct stat *st) {
        *id = (struct file_id){
                .dev = st->st_dev,
                .ino = st->st_ino,
                .size = st->st_size,
                .mtime = st->st_mtim,
        };
}

static bool file_id_eq(const struct file_id *a, const struct file_id *b) {
        return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
               a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* The token: the first line of a token file's content, without its line end. */
static int token_parse(const char *path, const char *content, size_t len, char **ret, char *err,
                       size_t err_size) {
        const char *nl;
        char *token;
        size_t n;

        nl = memchr(content, '\n', len);
        n = nl ? (size_t) (nl - content) : len;
        if (n > 0 && content[n - 1] == '\r')
                n--;
        if (n == 0)
                return err_set(err, err_size, -EINVAL,
                               "the token file '%s' is empty (the token is its first line)", path);
        if (n > REMOTE_TOKEN_MAX)
                return err_set(err, err_size, -EINVAL, "the token in '%s' is longer than %u characters",
                               path, REMOTE_TOKEN_MAX);
        for (size_t i = 0; i < n; i++)
                if (content[i] < 0x21 || content[i] > 0x7e)
                        return err_set(
                                err, err_size, -EINVAL,
                                "the first line of the token file '%s' is not a bearer token: it holds "
                                "blanks, control or non-ASCII characters",
                                path);
        token = strndup(content, n);
        if (!token)
                return err_set(err, err_size, -ENOMEM, "out of memory");
        *ret = token;
        return 0;
}

/* Reads the token of a token file into a new string; the file's content is wiped after use. */
static int token_read(const char *path, char **ret, struct file_id *ret_id, char *err, size_t err_size) {
        char *content = NULL;
        struct stat st;
        size_t len = 0;
        int r;

        /* stat first: when the file is replaced in between, the next refresh sees a new identity. */
        if (stat(path, &st) < 0) {
                r = negative_errno();
                return err_set(err, err_size, r, "cannot read the token file '%s': %s", path, strerror(-r));
        }
        if (!S_ISREG(st.st_mode))
                return err_set(err, err_size, -EINVAL, "the token file '%s' is not a regular file", path);
        r = cm_read_file(path, REMOTE_TOKEN_FILE_MAX, true, &content, &len);
        if (r == -EFBIG)
                return err_set(err, err_size, -EINVAL, "the token file '%s' is larger than %u bytes", path,
                               REMOTE_TOKEN_FILE_MAX);
        if (r < 0)
                return err_set(err, err_size, r, "cannot read the token file '%s': %s", path, strerror(-r));
        r = token_parse(path, content, len, ret, err, err_size);
        cm_wipe(content, len); /* all of it: a NUL inside would stop a strlen() */
        free(content);
        if (r < 0)
                return r;
        file_id_from_stat(ret_id, &st);
        return 0;
}

static int ca_file_check(const char *path, char *err, size_t err_size) {
        _cleanup_free_ char *content = NULL;
        struct stat st;
        size_t len = 0;
        int r;

        if (stat(path, &st) < 0) {
                r = negative_errno();
                return err_set(err, err_size, r, "cannot read the CA file '%s': %s", path, strerror(-r));
        }
        if (!S_ISREG(st.st_mode))
                return err_set(err, err_size, -EINVAL, "the CA file '%s' is not a regular file", path);
        r = cm_read_file(path, REMOTE_CA_FILE_MAX, false, &content, &len);
        if (r == -EFBIG)
                return err_set(err, err_size, -EINVAL, "the CA file '%s' is larger than %u bytes", path,
                               REMOTE_CA_FILE_MAX);
        if (r < 0)
                return err_set(err, err_size, r, "cannot read the CA file '%s': %s", path, strerror(-r));
        if (len == 0)
                return err_set(err, err_size, -EINVAL, "the CA file '%s' is empty", path);
        if (!memmem(content, len, "-----BEGIN CERTIFICATE-----", 27))
                return err_set(err, err_size, -EINVAL, "the CA file '%s' holds no PEM certificate", path);
        return 0;
}

/* -------------------------------------------------------------------------------------------------
 * Handles
 */

static void share_lock(CURL *handle, curl_lock_data data, curl_lock_access access, void *userptr) {
        struct cm_policy_remote *r = userptr;

        if ((unsigned) data < ELEMENTSOF(r->share_locks))
                (void) pthread_mutex_lock(&r->share_locks[data]);
}

static void share_unlock(CURL *handle, curl_lock_data data, void *userptr) {
        struct cm_policy_remote *r = userptr;

        if ((unsigned) data < ELEMENTSOF(r->share_locks))
                (void) pthread_mutex_unlock(&r->share_locks[data]);
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userdata) {
        struct answer *a = userdata;
        size_t n = size * nmemb;
        int r;

        r = strbuf_add(&a->body, data, n);
        if (r < 0) {
                a->error = r == -ENOBUFS ? -EFBIG : r;
                return 0;
        }
        return n;
}

static struct remote_handle *handle_free(struct remote_handle *h) {
        if (!h)
                return NULL;
        if (h->curl)
                curl_easy_cleanup(h->curl);
        free(h);
        return NULL;
}

#define HSETOPT(opt, val)                                                                                   \
        do {                                                                                                \
                if (curl_easy_setopt(h->curl, (opt), (val)) != CURLE_OK) {                                  \
                        (void) err_set(err, err_size, 0, "cannot set libcurl option " #opt);                \
                        handle_free(h);                                                                     \
                        return -EIO;                                                                        \
                }                                                                                           \
        } while (0)

/* A new handle with every option that does not change between evaluations. */
static int handle_new(struct cm_policy_remote *r, struct remote_handle **ret, char *err, size_t err_size) {
        struct remote_handle *h;

        /* Explicit returns: static analyzers do not follow the value through variadic err_set(). */
        h = new0(struct remote_handle, 1);
        if (!h) {
                (void) err_set(err, err_size, 0, "out of memory");
                return -ENOMEM;
        }
        h->curl = curl_easy_init();
        if (!h->curl) {
                handle_free(h);
                (void) err_set(err, err_size, 0, "cannot create a libcurl handle");
                return -EIO;
        }
        HSETOPT(CURLOPT_URL, r->url);
        HSETOPT(CURLOPT_PROTOCOLS_STR, r->plain_http ? "http" : "https");
        HSETOPT(CURLOPT_FOLLOWLOCATION, 0L);
        HSETOPT(CURLOPT_PROXY, ""); /* the environment's proxy variables do not apply */
        HSETOPT(CURLOPT_NOSIGNAL, 1L);
        HSETOPT(CURLOPT_USERAGENT, "clustermgmt/" CM_VERSION);
        HSETOPT(CURLOPT_TIMEOUT_MS, r->timeout_ms);
        HSETOPT(CURLOPT_CONNECTTIMEOUT_MS, r->timeout_ms);
        HSETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
        HSETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
        HSETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
        HSETOPT(CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_2);
        if (r->ca_file)
                HSETOPT(CURLOPT_CAINFO, r->ca_file);
        HSETOPT(CURLOPT_SHARE, r->share);
        HSETOPT(CURLOPT_POST, 1L);
        HSETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) CM_POLICY_REMOTE_ANSWER_MAX);
        HSETOPT(CURLOPT_WRITEFUNCTION, write_cb);
        *ret = h;
        return 0;
}

static int pool_get(struct cm_policy_remote *r, struct remote_handle **ret, char *err, size_t err_size) {
        struct remote_handle *h;

        (void) pthread_mutex_lock(&r->lock);
        h = r->idle;
        if (h) {
                r->idle = h->next;
                r->n_idle--;
                h->next = NULL;
        }
        (void) pthread_mutex_unlock(&r->lock);
        if (h) {
                *ret = h;
                return 0;
        }
        return handle_new(r, ret, err, err_size);
}

static void pool_put(struct cm_policy_remote *r, struct remote_handle *h) {
        (void) pthread_mutex_lock(&r->lock);
        if (r->n_idle < REMOTE_POOL_IDLE_MAX) {
                h->next = r->idle;
                r->idle = h;
                r->n_idle++;
                h = NULL;
        }
        (void) pthread_mutex_unlock(&r->lock);
        handle_free(h);
}

/* -------------------------------------------------------------------------------------------------
 * Open, close
 */

int cm_policy_remote_open(const struct cm_policy_remote_config *c, struct cm_policy_remote **ret, char *err,
                          size_t err_size) {
        _cleanup_(cm_policy_remote_closep) struct cm_policy_remote *r = NULL;
        int k;

        if (err_size > 0)
                err[0] = 0;
        if (!c)
                return err_set(err, err_size, -EINVAL, "no policy service configured");

        r = new0(struct cm_policy_remote, 1);
        if (!r)
                return err_set(err, err_size, -ENOMEM, "out of memory");
        k = url_check(c->url, &r->plain_http, err, err_size);
        if (k < 0)
                return k;
        r->url = strdup(c->url);
        if (!r->url)
                return err_set(err, err_size, -ENOMEM, "out of memory");
        r->timeout_ms =
                c->timeout_ms > 0 ? (long) c->timeout_ms : (long) CM_POLICY_REMOTE_TIMEOUT_MS_DEFAULT;

        if (c->ca_file) {
                k = ca_file_check(c->ca_file, err, err_size);
                if (k < 0)
                        return k;
                r->ca_file = strdup(c->ca_file);
                if (!r->ca_file)
                        return err_set(err, err_size, -ENOMEM, "out of memory");
        }
        if (c->token_file) {
                r->token_file = strdup(c->token_file);
                if (!r->token_file)
                        return err_set(err, err_size, -ENOMEM, "out of memory");
                k = token_read(r->token_file, &r->token, &r->token_id, err, err_size);
                if (k < 0)
                        return k;
        }

        if (pthread_mutex_init(&r->lock, NULL) != 0)
                return err_set(err, err_size, -ENOMEM, "cannot create a lock");
        r->lock_initialized = true;
        for (size_t i = 0; i < ELEMENTSOF(r->share_locks); i++)
                if (pthread_mutex_init(&r->share_locks[i], NULL) != 0) {
                        for (size_t j = 0; j < i; j++)
                                (void) pthread_mutex_destroy(&r->share_locks[j]);
                        return err_set(err, err_size, -ENOMEM, "cannot create a lock");
                }
        r->share_locks_initialized = true;

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return err_set(err, err_size, -EIO, "cannot initialize libcurl");
        r->curl_initialized = true;
        r->share = curl_share_init();
        if (!r->share)
                return err_set(err, err_size, -EIO, "cannot create a libcurl share");
        if (curl_share_setopt(r->share, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
            curl_share_setopt(r->share, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
            curl_share_setopt(r->share, CURLSHOPT_USERDATA, r) != CURLSHE_OK ||
            curl_share_setopt(r->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK ||
            curl_share_setopt(r->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK)
                return err_set(err, err_size, -EIO, "cannot set up the libcurl share");

        *ret = TAKE_PTR(r);
        return 0;
}

struct cm_policy_remote *cm_policy_remote_close(struct cm_policy_remote *r) {
        if (!r)
                return NULL;
        /* Every handle goes before the share they use. */
        while (r->idle) {
                struct remote_handle *h = r->idle;

                r->idle = h->next;
                handle_free(h);
        }
        if (r->share)
                curl_share_cleanup(r->share);
        if (r->curl_initialized)
                curl_global_cleanup(); /* pairs with the curl_global_init() of open */
        if (r->share_locks_initialized)
                for (size_t i = 0; i < ELEMENTSOF(r->share_locks); i++)
                        (void) pthread_mutex_destroy(&r->share_locks[i]);
        if (r->lock_initialized)
                (void) pthread_mutex_destroy(&r->lock);
        r->token = cm_erase_and_free(r->token);
        free(r->url);
        free(r->token_file);
        free(r->ca_file);
        free(r);
        return NULL;
}

const char *cm_policy_remote_url(const struct cm_policy_remote *r) {
        return r->url;
}

/* -------------------------------------------------------------------------------------------------
 * Evaluation
 */

/* Reads the token file again when it changed; on any trouble the token in use stays. */
static void token_refresh(struct cm_policy_remote *r) {
        struct file_id id;
        struct stat st;
        char *token = NULL;

        if (!r->token_file || stat(r->token_file, &st) < 0)
                return;
        file_id_from_stat(&id, &st);
        (void) pthread_mutex_lock(&r->lock);
        if (!file_id_eq(&id, &r->token_id) && token_read(r->token_file, &token, &id, NULL, 0) >= 0) {
                cm_erase_and_free(r->token);
                r->token = token;
                r->token_id = id;
        }
        (void) pthread_mutex_unlock(&r->lock);
}

/* Turns a failed transfer into a negative errno and a message for people; the one place that does. */
static int remote_map_curl_error(const struct cm_policy_remote *r, CURL *curl, CURLcode cc,
                                 const struct answer *a, const char *curl_error, char *err,
                                 size_t err_size) {
        const char *why = curl_error[0] ? curl_error : curl_easy_strerror(cc);
        long os_errno = 0;

        if (a->error == -EFBIG || cc == CURLE_FILESIZE_EXCEEDED)
                return err_set(err, err_size, -EBADMSG,
                               "the answer of the policy service at %s is larger than %u bytes", r->url,
                               CM_POLICY_REMOTE_ANSWER_MAX);
        if (a->error == -ENOMEM || cc == CURLE_OUT_OF_MEMORY)
                return err_set(err, err_size, -ENOMEM, "out of memory while asking the policy service at %s",
                               r->url);

        (void) curl_easy_getinfo(curl, CURLINFO_OS_ERRNO, &os_errno);
        switch (cc) {
        case CURLE_COULDNT_CONNECT:
                if (os_errno == 0 || os_errno == ECONNREFUSED)
                        return err_set(err, err_size, -ECONNREFUSED,
                                       "cannot connect to the policy service at %s: %s (is it running?)",
                                       r->url, strerror(ECONNREFUSED));
                return err_set(err, err_size, -EHOSTUNREACH,
                               "cannot connect to the policy service at %s: %s", r->url,
                               strerror((int) os_errno));
        case CURLE_COULDNT_RESOLVE_HOST:
                return err_set(err, err_size, -EHOSTUNREACH,
                               "cannot resolve the host of the policy service at %s: %s", r->url, why);
        case CURLE_OPERATION_TIMEDOUT:
                return err_set(err, err_size, -ETIMEDOUT,
                               "the policy service at %s did not answer within %ld ms: %s", r->url,
                               r->timeout_ms, why);
        case CURLE_GOT_NOTHING:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_PARTIAL_FILE:
                return err_set(err, err_size, -EPROTO,
                               "the connection to the policy service at %s was closed before the answer was "
                               "complete: %s",
                               r->url, why);
        default:
                break;
        }
        if (cc == CURLE_SSL_CACERT_BADFILE)
                return err_set(err, err_size, -EPROTO,
                               "cannot use the CA file '%s' for the policy service at %s: %s",
                               strna(r->ca_file), r->url, why);
        if (cm_curl_code_is_tls(cc))
                return err_set(err, err_size, -EPROTO,
                               "TLS connection to the policy service at %s failed: %s (%s)", r->url, why,
                               r->ca_file ? "does the CA file hold the CA that signed its certificate?"
                                          : "give the CA that signed its certificate as the CA file");
        return err_set(err, err_size, -EIO, "asking the policy service at %s failed: %s", r->url, why);
}

/*
 * A short detail for an error status: OPA's {"message": ...} or the first line of a text body, at
 * most REMOTE_DETAIL_MAX bytes, control characters replaced.
 */
static void error_detail(const struct strbuf *body, char *out, size_t size) {
        json_t *doc = NULL, *m;
        const char *s = NULL;
        size_t n = 0;

        out[0] = 0;
        if (body->len == 0)
                return;
        if (body->buf[0] == '{') {
                doc = json_loadb(body->buf, body->len, 0, NULL);
                m = json_object_get(doc, "message");
                if (json_is_string(m)) {
                        s = json_string_value(m);
                        n = strlen(s);
                }
        }
        if (!s) {
                s = body->buf;
                n = strcspn(s, "\r\n");
        }
        n = MIN(n, MIN((size_t) REMOTE_DETAIL_MAX, size - 1));
        while (n > 0 && ((unsigned char) s[n] & 0xC0) == 0x80 && s[n] != 0)
                n--;
        memcpy(out, s, n);
        out[n] = 0;
        for (char *p = out; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        *p = ' ';
        json_decref(doc);
}

static int remote_map_status(const struct cm_policy_remote *r, long status, const struct answer *a,
                             char *err, size_t err_size) {
        char detail[REMOTE_DETAIL_MAX + 1];

        error_detail(&a->body, detail, sizeof(detail));
        if (status == 401 || status == 403)
                return err_set(err, err_size, -EACCES,
                               "the policy service at %s refused the request (HTTP %ld%s%s): %s", r->url,
                               status, detail[0] ? ", " : "", detail,
                               r->token_file ? "is the token in the token file one it accepts?"
                                             : "no token file is configured");
        return err_set(err, err_size, -EPROTO, "the policy service at %s answered HTTP %ld%s%s", r->url,
                       status, detail[0] ? ": " : "", detail);
}

#define SETOPT(opt, val)                                                                                    \
        do {                                                                                                \
                if (curl_easy_setopt(h->curl, (opt), (val)) != CURLE_OK) {                                  \
                        (void) err_set(err, err_size, 0, "cannot set libcurl option " #opt);                \
                        r = -EIO;                                                                           \
                        goto out;                                                                           \
                }                                                                                           \
        } while (0)

int cm_policy_remote_evaluate(struct cm_policy_remote *remote, const json_t *input,
                              struct cm_policy_decision *ret, char *err, size_t err_size) {
        _cleanup_strbuf_ struct strbuf body = STRBUF_INIT(REMOTE_REQUEST_MAX);
        _cleanup_strbuf_ struct strbuf auth = STRBUF_INIT(REMOTE_TOKEN_MAX + 64);
        _cleanup_free_ char *dump = NULL;
        struct answer a = { .body = STRBUF_INIT(CM_POLICY_REMOTE_ANSWER_MAX) };
        struct curl_slist *headers = NULL;
        struct remote_handle *h = NULL;
        struct cm_policy_decision d = {};
        char curl_error[CURL_ERROR_SIZE] = "";
        char why[256] = "";
        long status = 0;
        CURLcode cc;
        int r;

        auth.secret = true;
        if (err_size > 0)
                err[0] = 0;
        if (!json_is_object(input))
                return err_set(err, err_size, -EINVAL, "the policy input must be a JSON object");

        dump = json_dumps(input, JSON_COMPACT);
        if (!dump)
                return err_set(err, err_size, -ENOMEM, "cannot encode the policy input");
        r = strbuf_addl(&body, "{\"input\":");
        if (r >= 0)
                r = strbuf_adds(&body, dump);
        if (r >= 0)
                r = strbuf_addch(&body, '}');
        if (r == -ENOBUFS)
                return err_set(err, err_size, -EINVAL, "the policy input is larger than %u bytes",
                               REMOTE_REQUEST_MAX);
        if (r < 0)
                return err_set(err, err_size, r, "out of memory");

        token_refresh(remote);
        (void) pthread_mutex_lock(&remote->lock);
        if (remote->token)
                r = strbuf_addf(&auth, REMOTE_AUTH_PREFIX "%s", remote->token);
        (void) pthread_mutex_unlock(&remote->lock);
        if (r < 0)
                return err_set(err, err_size, -ENOMEM, "out of memory");

        if ((auth.len > 0 && cm_curl_slist_add(&headers, auth.buf) < 0) ||
            cm_curl_slist_add(&headers, "Content-Type: application/json") < 0 ||
            cm_curl_slist_add(&headers, "Accept: application/json") < 0 ||
            cm_curl_slist_add(&headers, "Expect:") < 0) {
                (void) err_set(err, err_size, 0, "out of memory");
                r = -ENOMEM;
                goto out;
        }

        r = pool_get(remote, &h, err, err_size);
        if (r < 0)
                goto out;
        SETOPT(CURLOPT_POSTFIELDS, body.buf);
        SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) body.len);
        SETOPT(CURLOPT_HTTPHEADER, headers);
        SETOPT(CURLOPT_WRITEDATA, &a);
        SETOPT(CURLOPT_ERRORBUFFER, curl_error);

        cc = curl_easy_perform(h->curl);
        /* The handle must keep no pointer into this frame or to the header list. */
        (void) curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, NULL);
        (void) curl_easy_setopt(h->curl, CURLOPT_ERRORBUFFER, NULL);
        (void) curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, NULL);
        (void) curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, NULL);
        if (cc != CURLE_OK || a.error < 0) {
                r = remote_map_curl_error(remote, h->curl, cc, &a, curl_error, err, err_size);
                goto out;
        }
        (void) curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
        if (status < 200 || status > 299) {
                r = remote_map_status(remote, status, &a, err, err_size);
                goto out;
        }
        r = decision_decode(a.body.buf, a.body.len, true, &d, why, sizeof(why));
        if (r == -EBADMSG) {
                (void) err_set(err, err_size, 0,
                               "the answer of the policy service at %s is not a decision: %s", remote->url,
                               why);
                goto out;
        }
        if (r < 0) {
                (void) err_set(err, err_size, 0, "out of memory");
                goto out;
        }
        *ret = d;
        r = 0;
out:
        if (h)
                pool_put(remote, h);
        cm_curl_slist_free_wiped(headers);
        strbuf_release(&a.body);
        /* Belt and braces: nothing above quotes the token, and no message may ever carry it. */
        if (r < 0 && auth.len > 0 && err_size > 0)
                cm_mask_secret(err, auth.buf + strlen(REMOTE_AUTH_PREFIX));
        return r;
}
