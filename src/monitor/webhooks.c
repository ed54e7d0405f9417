/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdatomic.h>
#include <sys/eventfd.h>

#include "base/log.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "client/curlx.h"
#include "lifecycle/service.h"
#include "monitor/webhooks.h"
#include "store/store.h"
#include "vault/vault.h"

/* Events read per webhook at once, and what one pass may pass over before it lets others run. */
#define HOOK_BATCH 100U
#define HOOK_SKIP_BATCHES 10U
#define HOOK_ATTEMPTS_MAX 8U
#define HOOK_BACKOFF_FIRST_USEC (1 * USEC_PER_SEC)
#define HOOK_BACKOFF_CAP_USEC (300 * USEC_PER_SEC)
#define HOOK_CONNECT_TIMEOUT_MS 5000L
#define HOOK_TIMEOUT_MS 10000L

#define TICK_USEC USEC_PER_SEC
/* Pokes closer together than this are served by one pass (a burst of writes is one wake-up). */
#define POKE_COALESCE_USEC (20 * USEC_PER_MSEC)
#define RELOAD_USEC (2 * USEC_PER_SEC)
#define PRUNE_EVERY_USEC (3600 * USEC_PER_SEC)
/* The monitor's availability looks 30 days back; a few more days of margin. */
#define EVENT_RETENTION_USEC (35 * 24 * 3600 * USEC_PER_SEC)

/* The body of one delivery: an event's JSON (condition messages, operation errors). */
#define BODY_MAX (256U * 1024U)
#define ERROR_MAX 256U
#define SAFE_URL_MAX 512U
#define HEADER_LINE_MAX 128U
#define EVENT_TYPE_MAX 64U

/* Whether the webhook's deliveries work, for logging once per change. */
enum hook_health {
        HOOK_HEALTHY,
        HOOK_FAILING, /* an attempt failed; the event is being retried */
        HOOK_DROPPING, /* an event was given up; later ones fail too */
};

/* One webhook as the dispatcher serves it. */
struct hook {
        struct cm_webhook w; /* as last read from the store; w.cursor is not kept up to date */
        char safe_url[SAFE_URL_MAX]; /* scheme://host[:port]/path: what logs and records may show */
        char *masks[3]; /* parts of the URL that may be credentials (query, user, password) */
        char **types; /* the event types wanted; NULL: every type */
        size_t n_types;

        int64_t cursor; /* the last event handled (delivered, given up or passed over) */
        int64_t stored; /* the cursor as last written to the store */
        struct cm_event *batch; /* the environment's next events (HOOK_BATCH at most), oldest first */
        size_t n_batch;
        size_t pos; /* batch[pos] is the next event to handle; those before it are handled */
        bool fetch; /* top the batch up at the next pass (after a poke or a tick) */
        bool more; /* the batch was full: more events may follow it */

        /* batch[pos] while busy: being delivered, or waiting for its next attempt */
        bool busy;
        unsigned attempt; /* attempts made */
        uint64_t due_mono; /* when the next attempt may start */
        bool in_flight;
        uint64_t started_mono;
        uint64_t started_wall;
        CURL *curl;
        struct curl_slist *headers;
        struct strbuf body;
        char curl_error[CURL_ERROR_SIZE];

        enum hook_health health;
        unsigned dropped; /* events given up since deliveries last succeeded */
        bool seen; /* in the last list read from the store */
        bool gone; /* the store says it was deleted */
        struct hook *next;
};

struct cm_webhooks {
        struct cm_service *svc;
        int wake_fd; /* eventfd: a poke, or the request to stop */
        atomic_bool stop;
        pthread_t thread;
        bool thread_started;
        bool curl_initialized;
        CURLM *multi;
        EVP_MAC *mac;
        struct hook *hooks;
        bool again; /* something is ready now: do not sleep before the next pass */

        atomic_uint_fast64_t n_delivered;
        atomic_uint_fast64_t n_failed;
        atomic_uint_fast64_t n_gave_up;
        atomic_uint_fast64_t n_pending;
};

/* -------------------------------------------------------------------------------------------------
 * The event's JSON
 */

int cm_event_encode(const struct cm_event *e, struct strbuf *out) {
        static const char *const fixed[] = { "id", "time", "type", "environment", "cluster" };
        size_t old = out->len;
        json_t *data = NULL, *value;
        const char *key;
        char ts[40];
        int r;

        cm_format_rfc3339(e->ts_usec, ts, sizeof(ts));
        r = strbuf_addf(out, "{\"id\":%" PRId64 ",\"time\":\"%s\",\"type\":", e->seq, ts);
        if (r >= 0)
                r = strbuf_add_json_string(out, e->type ?: "");
        if (r >= 0)
                r = strbuf_addl(out, ",\"environment\":");
        if (r >= 0)
                r = strbuf_add_json_string(out, e->env ?: "");
        if (r >= 0)
                r = strbuf_addl(out, ",\"cluster\":");
        if (r >= 0)
                r = strbuf_add_json_string(out, e->cluster ?: "");
        if (r >= 0 && e->data_json)
                data = json_loads(e->data_json, JSON_REJECT_DUPLICATES, NULL);
        if (r >= 0 && json_is_object(data))
                json_object_foreach(data, key, value) {
                        bool taken = false;
                        char *v;

                        for (size_t i = 0; i < ELEMENTSOF(fixed); i++)
                                taken = taken || streq(key, fixed[i]);
                        if (taken)
                                continue;
                        v = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
                        if (!v) {
                                r = -ENOMEM;
                                break;
                        }
                        r = strbuf_addch(out, ',');
                        if (r >= 0)
                                r = strbuf_add_json_string(out, key);
                        if (r >= 0)
                                r = strbuf_addch(out, ':');
                        if (r >= 0)
                                r = strbuf_adds(out, v);
                        free(v);
                        if (r < 0)
                                break;
                }
        if (r >= 0)
                r = strbuf_addch(out, '}');
        json_decref(data);
        if (r < 0 && out->buf) {
                out->len = old;
                out->buf[old] = 0;
        }
        return r;
}

/* -------------------------------------------------------------------------------------------------
 * Webhooks as served
 */

static void hook_transfer_done(struct cm_webhooks *w, struct hook *h) {
        if (h->in_flight) {
                (void) curl_multi_remove_handle(w->multi, h->curl);
                h->in_flight = false;
        }
        cm_curl_slist_free_wiped(h->headers);
        h->headers = NULL;
        strbuf_release(&h->body);
}

static void hook_types_free(struct hook *h) {
        for (size_t i = 0; i < h->n_types; i++)
                free(h->types[i]);
        h->types = mfree(h->types);
        h->n_types = 0;
}

static void hook_masks_free(struct hook *h) {
        for (size_t i = 0; i < ELEMENTSOF(h->masks); i++)
                h->masks[i] = cm_erase_and_free(h->masks[i]);
}

static struct hook *hook_free(struct cm_webhooks *w, struct hook *h) {
        if (!h)
                return NULL;
        hook_transfer_done(w, h);
        if (h->curl)
                curl_easy_cleanup(h->curl);
        cm_event_array_free(h->batch, h->n_batch);
        hook_types_free(h);
        hook_masks_free(h);
        cm_webhook_done(&h->w);
        free(h);
        return NULL;
}

/* A copy of a part of u into *ret when it is there and not empty. */
static int url_part(CURLU *u, CURLUPart part, unsigned flags, char **ret) {
        char *v = NULL;
        CURLUcode uc;

        uc = curl_url_get(u, part, &v, flags);
        if (uc == CURLUE_OUT_OF_MEMORY)
                return -ENOMEM;
        if (uc != CURLUE_OK || isempty(v)) {
                curl_free(v);
                *ret = NULL;
                return 0;
        }
        *ret = strdup(v);
        cm_wipe(v, strlen(v));
        curl_free(v);
        return *ret ? 0 : -ENOMEM;
}

/* The URL as logs and records may show it, and the parts that must never be shown. */
static int hook_set_url(struct hook *h) {
        _cleanup_free_ char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
        CURLU *u;
        int r;

        hook_masks_free(h);
        (void) cm_strlcpy(h->safe_url, "(invalid URL)", sizeof(h->safe_url));
        u = curl_url();
        if (!u)
                return -ENOMEM;
        if (curl_url_set(u, CURLUPART_URL, h->w.url, 0) != CURLUE_OK) {
                curl_url_cleanup(u);
                return 0;
        }
        r = url_part(u, CURLUPART_SCHEME, 0, &scheme);
        if (r >= 0)
                r = url_part(u, CURLUPART_HOST, 0, &host);
        if (r >= 0)
                r = url_part(u, CURLUPART_PORT, CURLU_NO_DEFAULT_PORT, &port);
        if (r >= 0)
                r = url_part(u, CURLUPART_PATH, 0, &path);
        if (r >= 0)
                r = url_part(u, CURLUPART_QUERY, 0, &h->masks[0]);
        if (r >= 0)
                r = url_part(u, CURLUPART_USER, 0, &h->masks[1]);
        if (r >= 0)
                r = url_part(u, CURLUPART_PASSWORD, 0, &h->masks[2]);
        curl_url_cleanup(u);
        if (r < 0)
                return r;
        if (scheme && host)
                (void) cm_snprintf(h->safe_url, sizeof(h->safe_url), "%s://%s%s%s%s", scheme, host,
                                   port ? ":" : "", port ?: "", path ?: "/");
        return 0;
}

/* The event types of events_json (a JSON array of strings; [] or anything else: every type). */
static int hook_set_types(struct hook *h) {
        json_t *a, *v;
        size_t i;
        int r = 0;

        hook_types_free(h);
        a = json_loads(h->w.events_json ?: "[]", 0, NULL);
        if (!json_is_array(a) || json_array_size(a) == 0) {
                json_decref(a);
                return 0;
        }
        h->types = new0(char *, json_array_size(a));
        if (!h->types) {
                json_decref(a);
                return -ENOMEM;
        }
        json_array_foreach(a, i, v) {
                if (!json_is_string(v))
                        continue;
                h->types[h->n_types] = strdup(json_string_value(v));
                if (!h->types[h->n_types]) {
                        r = -ENOMEM;
                        break;
                }
                h->n_types++;
        }
        json_decref(a);
        if (r < 0)
                hook_types_free(h);
        return r;
}

static bool hook_wants(const struct hook *h, const char *type) {
        if (!h->types)
                return true;
        for (size_t i = 0; i < h->n_types; i++)
                if (streq(h->types[i], type ?: ""))
                        return true;
        return false;
}

/* Takes over the strings of *src (left zeroed) as the webhook's settings. */
static int hook_configure(struct hook *h, struct cm_webhook *src) {
        bool url_changed = !h->w.url || !streq(h->w.url, src->url),
             types_changed = !h->w.events_json || !streq(h->w.events_json, src->events_json ?: "[]");
        int r;

        cm_webhook_done(&h->w);
        h->w = *src;
        *src = (struct cm_webhook){};
        if (url_changed) {
                r = hook_set_url(h);
                if (r < 0)
                        return r;
        }
        if (types_changed)
                return hook_set_types(h);
        return 0;
}

static const char *hook_name(const struct hook *h, char *buf, size_t size) {
        (void) cm_snprintf(buf, size, "%s/%s", h->w.env, h->w.name);
        return buf;
}

/* -------------------------------------------------------------------------------------------------
 * One attempt
 */

static size_t discard_cb(char *data, size_t size, size_t nmemb, void *userdata) {
        return size * nmemb;
}

/* HMAC-SHA256(key, "<ts>.<body>") as lowercase hex. */
static int sign(EVP_MAC *mac, const void *key, size_t key_n, const char *ts, const struct strbuf *body,
                char out[static 65]) {
        OSSL_PARAM params[] = {
                OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, CM_UNCONST(char *, "SHA256"), 0),
                OSSL_PARAM_construct_end(),
        };
        unsigned char md[32];
        size_t md_n = 0;
        EVP_MAC_CTX *ctx;
        int r = 0;

        ctx = EVP_MAC_CTX_new(mac);
        if (!ctx)
                return -ENOMEM;
        if (EVP_MAC_init(ctx, key, key_n, params) != 1 ||
            EVP_MAC_update(ctx, (const void *) ts, strlen(ts)) != 1 ||
            EVP_MAC_update(ctx, (const void *) ".", 1) != 1 ||
            EVP_MAC_update(ctx, (const void *) body->buf, body->len) != 1 ||
            EVP_MAC_final(ctx, md, &md_n, sizeof(md)) != 1 || md_n != sizeof(md))
                r = -EIO;
        EVP_MAC_CTX_free(ctx); /* the provider wipes its copy of the key */
        if (r < 0)
                return r;
        cm_hex(md, sizeof(md), out);
        return 0;
}

/* Reads the webhook's signing key from the vault and signs; the key is wiped before returning. */
static int hook_sign(struct cm_webhooks *w, struct hook *h, const char *ts, char sig[static 65], char *err,
                     size_t err_size) {
        char owner[CM_VAULT_OWNER_MAX + 1], file[CM_VAULT_NAME_MAX + 1];
        char *key = NULL;
        size_t key_n = 0;
        int r;

        if (!w->svc->vault) {
                (void) cm_snprintf(err, err_size, "no state vault: the signing secret '%s' cannot be read",
                                   h->w.secret);
                return -EOPNOTSUPP;
        }
        r = cm_vault_env_owner(h->w.env, owner, sizeof(owner));
        if (r >= 0)
                r = cm_snprintf(file, sizeof(file), "secret/%s", h->w.secret);
        if (r >= 0)
                r = cm_vault_read(w->svc->vault, owner, file, 0, &key, &key_n, NULL);
        if (r == -ENOENT || r == -EINVAL) {
                (void) cm_snprintf(err, err_size,
                                   "the signing secret '%s' does not exist in environment '%s'", h->w.secret,
                                   h->w.env);
                return -ENOKEY;
        }
        if (r < 0) {
                (void) cm_snprintf(err, err_size, "cannot read the signing secret '%s': %s", h->w.secret,
                                   strerror(-r));
                return r;
        }
        r = sign(w->mac, key, key_n, ts, &h->body, sig);
        cm_vault_data_free(key, key_n);
        if (r < 0)
                (void) cm_snprintf(err, err_size, "cannot compute the signature");
        return r;
}

_printf_(2, 3) static int hook_header(struct hook *h, const char *fmt, ...) {
        char line[HEADER_LINE_MAX];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t) n >= sizeof(line))
                return -ENOBUFS;
        return cm_curl_slist_add(&h->headers, line);
}

static bool event_type_ok(const char *t) {
        size_t n = 0;

        for (const char *p = t; p && *p; p++, n++)
                if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
                        return false;
        return n > 0 && n <= EVENT_TYPE_MAX;
}

#define SETOPT(opt, val)                                                                                    \
        do {                                                                                                \
                if (curl_easy_setopt(h->curl, (opt), (val)) != CURLE_OK) {                                  \
                        (void) cm_snprintf(err, err_size, "cannot set libcurl option " #opt);               \
                        return -EIO;                                                                        \
                }                                                                                           \
        } while (0)

/*
 * Everything an attempt needs, up to the transfer added to the multi handle. On failure err says why
 * and *ret_final tells whether trying again cannot help (the event cannot be sent at all).
 */
static int hook_prepare(struct cm_webhooks *w, struct hook *h, const struct cm_event *e, char *err,
                        size_t err_size, bool *ret_final) {
        char ts[24], sig[65];
        int r;

        *ret_final = true;
        if (!event_type_ok(e->type)) {
                (void) cm_snprintf(err, err_size, "the event's type is not a valid header value");
                return -EINVAL;
        }
        strbuf_release(&h->body);
        strbuf_init(&h->body, BODY_MAX);
        r = cm_event_encode(e, &h->body);
        if (r == -ENOBUFS) {
                (void) cm_snprintf(err, err_size, "the event's JSON is larger than %u bytes", BODY_MAX);
                return r;
        }
        *ret_final = false;
        if (r < 0) {
                (void) cm_snprintf(err, err_size, "out of memory");
                return r;
        }
        (void) cm_snprintf(ts, sizeof(ts), "%" PRIu64, h->started_wall / USEC_PER_SEC);
        r = hook_sign(w, h, ts, sig, err, err_size);
        if (r < 0)
                return r;

        cm_curl_slist_free_wiped(h->headers);
        h->headers = NULL;
        if ((r = hook_header(h, "Content-Type: application/json")) < 0 ||
            (r = hook_header(h, "X-CrateKube-Event: %s", e->type)) < 0 ||
            (r = hook_header(h, "X-CrateKube-Delivery: %" PRId64, e->seq)) < 0 ||
            (r = hook_header(h, "X-CrateKube-Timestamp: %s", ts)) < 0 ||
            (r = hook_header(h, "X-CrateKube-Signature: sha256=%s", sig)) < 0 ||
            (r = hook_header(h, "Expect:")) < 0) {
                (void) cm_snprintf(err, err_size, "out of memory");
                return -ENOMEM;
        }

        if (!h->curl) {
                h->curl = curl_easy_init();
                if (!h->curl) {
                        (void) cm_snprintf(err, err_size, "cannot create a libcurl handle");
                        return -ENOMEM;
                }
        } else
                curl_easy_reset(h->curl);
        h->curl_error[0] = 0;
        SETOPT(CURLOPT_URL, h->w.url);
        SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
        SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
        SETOPT(CURLOPT_PROXY, ""); /* the environment's proxy variables do not apply */
        SETOPT(CURLOPT_NOSIGNAL, 1L);
        SETOPT(CURLOPT_USERAGENT, "clustermgmt/" CM_VERSION);
        SETOPT(CURLOPT_CONNECTTIMEOUT_MS, HOOK_CONNECT_TIMEOUT_MS);
        SETOPT(CURLOPT_TIMEOUT_MS, HOOK_TIMEOUT_MS);
        SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
        SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
        SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
        SETOPT(CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_2);
        SETOPT(CURLOPT_POST, 1L);
        SETOPT(CURLOPT_POSTFIELDS, h->body.buf);
        SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) h->body.len);
        SETOPT(CURLOPT_HTTPHEADER, h->headers);
        SETOPT(CURLOPT_WRITEFUNCTION, discard_cb);
        SETOPT(CURLOPT_ERRORBUFFER, h->curl_error);
        SETOPT(CURLOPT_PRIVATE, (void *) h);
        if (curl_multi_add_handle(w->multi, h->curl) != CURLM_OK) {
                (void) cm_snprintf(err, err_size, "cannot start the transfer");
                return -EIO;
        }
        h->in_flight = true;
        return 0;
}

#undef SETOPT

static uint64_t backoff_usec(unsigned attempt) {
        uint64_t d = HOOK_BACKOFF_FIRST_USEC;

        for (unsigned i = 1; i < attempt && d < HOOK_BACKOFF_CAP_USEC; i++)
                d *= 2;
        return MIN(d, HOOK_BACKOFF_CAP_USEC);
}

/* Logs a change of the webhook's health (once per change, never per attempt). */
static void hook_health_set(struct hook *h, enum hook_health health, const struct cm_event *e,
                            const char *error) {
        char name[300];

        if (health == h->health)
                return;
        hook_name(h, name, sizeof(name));
        switch (health) {
        case HOOK_HEALTHY:
                if (h->dropped > 0)
                        log_info("webhook '%s' (%s): deliveries succeed again; %u event(s) were given up "
                                 "meanwhile",
                                 name, h->safe_url, h->dropped);
                else
                        log_info("webhook '%s' (%s): deliveries succeed again", name, h->safe_url);
                h->dropped = 0;
                break;
        case HOOK_FAILING:
                log_warning("webhook '%s' (%s): delivery of event %" PRId64 " failed: %s; retrying", name,
                            h->safe_url, e->seq, error);
                break;
        case HOOK_DROPPING:
                log_warning("webhook '%s' (%s): gave up on event %" PRId64 " (%s) after %u attempt(s): %s; "
                            "events that fail as often are skipped until deliveries succeed again",
                            name, h->safe_url, e->seq, e->type, h->attempt, error);
                break;
        }
        h->health = health;
}

/*
 * Ends the attempt of batch[pos]: records it, then moves on (delivered, given up) or waits for the
 * next attempt. error NULL means delivered; final gives up at once.
 */
static void hook_attempt_end(struct cm_webhooks *w, struct hook *h, int status, const char *error,
                             bool final) {
        const struct cm_event *e = &h->batch[h->pos];
        uint64_t now = cm_mono_usec();
        struct cm_webhook_delivery d = {
                .webhook_id = h->w.id,
                .ts_usec = h->started_wall,
                .event_seq = e->seq,
                .event_type = e->type,
                .attempt = h->attempt,
                .status_code = status,
                .error = CM_UNCONST(char *, error ?: ""),
                .duration_usec = now >= h->started_mono ? now - h->started_mono : 0,
        };
        bool done = !error || final || h->attempt >= HOOK_ATTEMPTS_MAX;
        int64_t cursor;
        char name[300];
        int r;

        hook_transfer_done(w, h);
        if (!error) {
                d.outcome = CM_UNCONST(char *, "delivered");
                atomic_fetch_add(&w->n_delivered, 1);
        } else if (done) {
                d.outcome = CM_UNCONST(char *, "gave-up");
                atomic_fetch_add(&w->n_gave_up, 1);
        } else {
                d.outcome = CM_UNCONST(char *, "failed");
                atomic_fetch_add(&w->n_failed, 1);
        }
        /* A failed attempt still saves the events passed over before it. */
        cursor = done ? e->seq : h->cursor > h->stored ? h->cursor : -1;
        r = STORE_CALL(w->svc->store, webhook_record, h->w.id, cursor, &d);
        if (r == -ENOENT) {
                h->gone = true; /* deleted meanwhile: dropped at the next reload */
                h->busy = false;
                return;
        }
        if (r < 0)
                log_warning_errno(r, "webhook '%s': cannot record the delivery of event %" PRId64 ": %m",
                                  hook_name(h, name, sizeof(name)), e->seq);
        else if (cursor >= 0)
                h->stored = cursor;

        if (!error)
                hook_health_set(h, HOOK_HEALTHY, e, NULL);
        else if (done) {
                hook_health_set(h, HOOK_DROPPING, e, error);
                h->dropped++;
        } else if (h->health == HOOK_HEALTHY)
                hook_health_set(h, HOOK_FAILING, e, error);

        if (done) {
                h->cursor = e->seq;
                h->pos++;
                h->busy = false;
                h->attempt = 0;
                w->again = true; /* the next event goes out at once */
        } else
                h->due_mono = now + backoff_usec(h->attempt);
}

/* Starts the next attempt of batch[pos]. */
static void hook_attempt(struct cm_webhooks *w, struct hook *h) {
        char err[ERROR_MAX] = "";
        bool final = false;
        int r;

        h->attempt++;
        h->started_mono = cm_mono_usec();
        h->started_wall = cm_now_usec();
        r = hook_prepare(w, h, &h->batch[h->pos], err, sizeof(err), &final);
        if (r < 0)
                hook_attempt_end(w, h, 0, err[0] ? err : "cannot start the delivery", final);
}

/* A finished transfer: its outcome, told without the answer's body and without credentials. */
static void hook_transfer_end(struct cm_webhooks *w, struct hook *h, CURLcode cc) {
        char err[ERROR_MAX] = "";
        long status = 0;

        (void) curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
        if (cc != CURLE_OK) {
                (void) cm_strlcpy(err, h->curl_error[0] ? h->curl_error : curl_easy_strerror(cc),
                                  sizeof(err));
                for (size_t i = 0; i < ELEMENTSOF(h->masks); i++)
                        cm_mask_secret(err, h->masks[i]);
                (void) cm_redact(err);
        } else if (status < 200 || status > 299)
                (void) cm_snprintf(err, sizeof(err), "HTTP %ld", status);
        hook_attempt_end(w, h, (int) MAX(0, MIN(status, 999)), err[0] ? err : NULL, false);
}

/* -------------------------------------------------------------------------------------------------
 * The dispatcher's passes
 */

/*
 * Tops the batch up: the events not handled yet move to its front, followed by those after its last
 * one (or after the cursor), up to HOOK_BATCH in all. The event being delivered stays the first.
 */
static int hook_fetch(struct cm_webhooks *w, struct hook *h) {
        size_t keep = h->n_batch - h->pos, n = 0;
        int64_t after = keep > 0 ? h->batch[h->n_batch - 1].seq : h->cursor;
        struct cm_event *a = NULL, *b;
        int r;

        h->fetch = false;
        if (keep >= HOOK_BATCH)
                return 0;
        r = STORE_CALL(w->svc->store, event_list, h->w.env, NULL, after, HOOK_BATCH - keep, &a, &n);
        if (r < 0) {
                char name[300];

                return log_debug_errno(r, "webhook '%s': cannot read events: %m",
                                       hook_name(h, name, sizeof(name)));
        }
        h->more = keep + n >= HOOK_BATCH;
        if (n == 0 && h->pos == 0) {
                cm_event_array_free(a, n);
                return 0;
        }
        b = new0(struct cm_event, keep + n);
        if (!b) {
                cm_event_array_free(a, n);
                return -ENOMEM;
        }
        for (size_t i = 0; i < h->pos; i++)
                cm_event_done(&h->batch[i]);
        if (keep > 0)
                memcpy(b, h->batch + h->pos, keep * sizeof(*b));
        if (n > 0)
                memcpy(b + keep, a, n * sizeof(*b));
        free(a);
        free(h->batch);
        h->batch = b;
        h->n_batch = keep + n;
        h->pos = 0;
        return 0;
}

/* Saves a cursor moved over events of other types (one write for all of them). */
static void hook_save_cursor(struct cm_webhooks *w, struct hook *h) {
        int r;

        if (h->cursor <= h->stored)
                return;
        r = STORE_CALL(w->svc->store, webhook_record, h->w.id, h->cursor, NULL);
        if (r == -ENOENT)
                h->gone = true;
        else if (r >= 0)
                h->stored = h->cursor;
}

/* Finds the next event of the webhook's types (reading more when needed) and starts it when due. */
static void hook_step(struct cm_webhooks *w, struct hook *h, uint64_t now) {
        if (h->gone)
                return;
        if (h->busy) {
                /* Reads ahead for the pending count while the first event waits or is in flight. */
                if (h->fetch)
                        (void) hook_fetch(w, h);
                if (!h->in_flight && now >= h->due_mono)
                        hook_attempt(w, h);
                return;
        }
        for (unsigned round = 0;; round++) {
                while (h->pos < h->n_batch && !hook_wants(h, h->batch[h->pos].type)) {
                        h->cursor = h->batch[h->pos].seq;
                        h->pos++;
                }
                if (h->pos < h->n_batch)
                        break;
                if (!h->fetch && !h->more)
                        break;
                if (round >= HOOK_SKIP_BATCHES) {
                        w->again = true; /* the rest at the next pass, after the other webhooks */
                        break;
                }
                if (hook_fetch(w, h) < 0 || h->n_batch == 0)
                        break;
        }
        if (h->pos >= h->n_batch) {
                hook_save_cursor(w, h);
                return;
        }
        h->busy = true;
        h->attempt = 0;
        hook_attempt(w, h);
}

static struct hook *hook_find(struct cm_webhooks *w, const char *id) {
        for (struct hook *h = w->hooks; h; h = h->next)
                if (streq(h->w.id, id))
                        return h;
        return NULL;
}

/* Re-reads the webhooks: new ones are added at their stored cursor, deleted ones dropped. */
static void reload(struct cm_webhooks *w) {
        struct cm_webhook *list = NULL;
        bool complete = true;
        size_t n = 0;
        int r;

        r = STORE_CALL(w->svc->store, webhook_list, NULL, &list, &n);
        if (r < 0) {
                log_debug_errno(r, "webhooks: cannot read the list: %m");
                return;
        }
        for (struct hook *h = w->hooks; h; h = h->next)
                h->seen = false;
        for (size_t i = 0; i < n; i++) {
                struct hook *h = hook_find(w, list[i].id);
                bool added = false;

                if (!h) {
                        h = new0(struct hook, 1);
                        if (!h) {
                                complete = false; /* the others stay as they are */
                                break;
                        }
                        h->cursor = h->stored = list[i].cursor;
                        h->fetch = true;
                        h->next = w->hooks;
                        w->hooks = h;
                        added = true;
                }
                h->seen = true;
                r = hook_configure(h, &list[i]);
                if (r < 0) {
                        /* Served without a filter or a safe URL would be wrong: tried again next time. */
                        h->seen = false;
                        continue;
                }
                if (added)
                        log_debug("webhook '%s/%s' (%s): delivering events after %" PRId64, h->w.env,
                                  h->w.name, h->safe_url, h->cursor);
        }
        cm_webhook_array_free(list, n);
        for (struct hook **p = &w->hooks; complete && *p;) {
                struct hook *h = *p;

                if (h->seen) {
                        p = &h->next;
                        continue;
                }
                *p = h->next;
                hook_free(w, h);
        }
}

static void prune(struct cm_webhooks *w) {
        uint64_t now = cm_now_usec();
        int r;

        if (now <= EVENT_RETENTION_USEC)
                return;
        r = STORE_CALL(w->svc->store, event_prune, now - EVENT_RETENTION_USEC);
        if (r < 0)
                log_warning_errno(r, "events: cannot delete the events older than 35 days: %m");
}

static void update_pending(struct cm_webhooks *w) {
        uint64_t pending = 0;

        for (struct hook *h = w->hooks; h; h = h->next)
                for (size_t i = h->pos; !h->gone && i < h->n_batch; i++)
                        if (hook_wants(h, h->batch[i].type))
                                pending++;
        atomic_store(&w->n_pending, pending);
}

static void collect_transfers(struct cm_webhooks *w) {
        CURLMsg *m;
        int left = 0;

        while ((m = curl_multi_info_read(w->multi, &left))) {
                char *priv = NULL;

                if (m->msg != CURLMSG_DONE)
                        continue;
                if (curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv) != CURLE_OK || !priv)
                        continue;
                hook_transfer_end(w, (struct hook *) (void *) priv, m->data.result);
        }
}

/* Drains the wake-up counter: true when there was a poke. */
static bool drain_pokes(struct cm_webhooks *w) {
        uint64_t v = 0;

        return read(w->wake_fd, &v, sizeof(v)) == (ssize_t) sizeof(v) && v > 0;
}

static void *dispatcher_main(void *userdata) {
        struct cm_webhooks *w = userdata;
        uint64_t next_tick = 0, next_reload = 0, next_prune = 0, next_poke = 0;
        bool poke_pending = true;

        while (!atomic_load(&w->stop)) {
                struct curl_waitfd wake = { .fd = w->wake_fd, .events = CURL_WAIT_POLLIN };
                uint64_t now = cm_mono_usec(), wait;
                bool poked = poke_pending && now >= next_poke;
                int running = 0;

                if (poked) {
                        poke_pending = false;
                        next_poke = now + POKE_COALESCE_USEC;
                }
                if (poked || now >= next_reload) {
                        reload(w);
                        next_reload = now + RELOAD_USEC;
                }
                if (poked || now >= next_tick) {
                        for (struct hook *h = w->hooks; h; h = h->next)
                                h->fetch = true;
                        next_tick = now + TICK_USEC;
                }
                w->again = false;
                for (struct hook *h = w->hooks; h; h = h->next)
                        hook_step(w, h, now);
                if (now >= next_prune) {
                        prune(w);
                        next_prune = now + PRUNE_EVERY_USEC;
                }

                (void) curl_multi_perform(w->multi, &running);
                collect_transfers(w);
                update_pending(w);

                now = cm_mono_usec();
                wait = next_tick > now ? next_tick - now : 0;
                for (struct hook *h = w->hooks; h; h = h->next)
                        if (h->busy && !h->in_flight && !h->gone)
                                wait = MIN(wait, h->due_mono > now ? h->due_mono - now : 0);
                if (poke_pending)
                        wait = MIN(wait, next_poke > now ? next_poke - now : 0);
                if (w->again)
                        wait = 0;
                (void) curl_multi_poll(w->multi, &wake, 1,
                                       (int) ((wait + USEC_PER_MSEC - 1) / USEC_PER_MSEC), NULL);
                if (drain_pokes(w))
                        poke_pending = true;
        }
        return NULL;
}

/* -------------------------------------------------------------------------------------------------
 * Start, stop
 */

static struct cm_webhooks *webhooks_free(struct cm_webhooks *w) {
        if (!w)
                return NULL;
        while (w->hooks) {
                struct hook *h = w->hooks;

                w->hooks = h->next;
                hook_free(w, h);
        }
        if (w->multi)
                (void) curl_multi_cleanup(w->multi);
        if (w->curl_initialized)
                curl_global_cleanup();
        EVP_MAC_free(w->mac);
        if (w->wake_fd >= 0)
                (void) close(w->wake_fd);
        free(w);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(struct cm_webhooks *, webhooks_free)

int cm_webhooks_start(struct cm_service *svc, struct cm_webhooks **ret) {
        _cleanup_(webhooks_freep) struct cm_webhooks *w = NULL;
        const curl_version_info_data *info;
        int r;

        if (!svc || !svc->store || !ret)
                return -EINVAL;
        w = new0(struct cm_webhooks, 1);
        if (!w)
                return -ENOMEM;
        w->svc = svc;
        w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->wake_fd < 0)
                return log_error_errno(negative_errno(), "webhooks: cannot create an eventfd: %m");
        w->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        if (!w->mac)
                return log_error_errno(EIO, "webhooks: OpenSSL has no HMAC");
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return log_error_errno(EIO, "webhooks: cannot initialize libcurl");
        w->curl_initialized = true;
        w->multi = curl_multi_init();
        if (!w->multi)
                return log_error_errno(ENOMEM, "webhooks: cannot create a libcurl multi handle");
        info = curl_version_info(CURLVERSION_NOW);
        if (info && !(info->features & CURL_VERSION_ASYNCHDNS))
                log_warning("webhooks: libcurl resolves host names synchronously: a webhook whose name "
                            "resolves slowly delays the others");

        r = -pthread_create(&w->thread, NULL, dispatcher_main, w);
        if (r < 0)
                return log_error_errno(r, "webhooks: cannot start the dispatcher thread: %m");
        w->thread_started = true;
        *ret = TAKE_PTR(w);
        return 0;
}

struct cm_webhooks *cm_webhooks_stop(struct cm_webhooks *w) {
        if (!w)
                return NULL;
        if (w->thread_started) {
                atomic_store(&w->stop, true);
                cm_webhooks_poke(w);
                (void) pthread_join(w->thread, NULL);
        }
        return webhooks_free(w);
}

void cm_webhooks_poke(struct cm_webhooks *w) {
        uint64_t one = 1;
        ssize_t k;

        if (!w)
                return;
        /* EAGAIN (the counter is full) is a wake-up that is pending anyway. */
        k = write(w->wake_fd, &one, sizeof(one));
        (void) k;
}

int cm_webhooks_metrics(struct cm_webhooks *w, struct strbuf *out) {
        if (!w)
                return 0;
        return strbuf_addf(
                out,
                "# HELP clustermgmt_webhook_deliveries_total Webhook delivery attempts, by outcome.\n"
                "# TYPE clustermgmt_webhook_deliveries_total counter\n"
                "clustermgmt_webhook_deliveries_total{outcome=\"delivered\"} %" PRIuFAST64 "\n"
                "clustermgmt_webhook_deliveries_total{outcome=\"failed\"} %" PRIuFAST64 "\n"
                "clustermgmt_webhook_deliveries_total{outcome=\"gave-up\"} %" PRIuFAST64 "\n"
                "# HELP clustermgmt_webhook_pending_events Events waiting for delivery to "
                "webhooks.\n"
                "# TYPE clustermgmt_webhook_pending_events gauge\n"
                "clustermgmt_webhook_pending_events %" PRIuFAST64 "\n",
                atomic_load(&w->n_delivered), atomic_load(&w->n_failed), atomic_load(&w->n_gave_up),
                atomic_load(&w->n_pending));
}
