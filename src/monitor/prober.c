/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The health prober: one thread, one libcurl multi handle, every monitored cluster a target with its
 * credentials held in memory only (checked once: tls.h) and its own connection cache (for up to
 * keep_alive_max targets the connection stays there between probes, so a probe costs no handshake;
 * the others resume their last TLS session). Targets wait in a min-heap by due time; at most
 * cfg.concurrency probes run at once, each on an easy handle borrowed from a pool, driven by epoll and
 * curl_multi_socket_action(). A probe is a sequence of GETs; when it ends, the conditions are computed
 * (health.c) and what changed goes to the writer thread.
 */
#include "base/common.h"

#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "api/model.h"
#include "base/log.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "client/curlx.h"
#include "lifecycle/service.h"
#include "lifecycle/statefiles.h"
#include "monitor/health.h"
#include "monitor/monitor.h"
#include "monitor/tls.h"
#include "monitor/webhooks.h"
#include "store/store.h"
#include "vault/vault.h"

#define KUBECONFIG_FILE "kube_config_cluster.yml"
#define BODY_MAX (1024 * 1024)
#define NODES_BODY_MAX (16 * 1024 * 1024)
#define NODES_PAGE "500"
#define NODES_PAGES_MAX 40
/* status.health is stored when it changes, and at least this often (lastProbeTime). */
#define PERSIST_REFRESH_USEC (300 * USEC_PER_SEC)
/* A full rescan of the cluster list at least this often, even when the store did not change. */
#define RESCAN_MAX_USEC (60 * USEC_PER_SEC)
/* Writes waiting for the writer beyond this are dropped when they only refresh lastProbeTime. */
#define WRITE_QUEUE_SOFT_MAX 4096
#define BACKOFF_MAX_FACTOR 4
/*
 * /version is read by the first probe, by every VERSION_EVERY-th after it and by the first OK one
 * after a failed probe; the others report the version last read (a version changes with an upgrade,
 * which also restarts the API server: its probes fail or the connection is new).
 */
#define VERSION_EVERY 10
/* A handle keeps an answer buffer up to this size for the next probe. */
#define HANDLE_BODY_KEEP (256 * 1024)

static const double duration_buckets[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };

/*
 * A probe's requests, in order. /livez is asked only when /readyz fails (a ready API server is live:
 * /readyz runs every check of /livez and more), to tell "not ready" from "not live". /version only
 * when due (version_every).
 */
enum step {
        STEP_READYZ,
        STEP_LIVEZ,
        STEP_VERSION,
        STEP_NODES,
        STEP_DEPLOYMENTS,
        STEP_DAEMONSETS,
        STEP_STATEFULSETS,
        STEP_DONE,
};

/*
 * An easy handle of the pool: probes borrow one for their requests, with the buffers a probe needs
 * while it runs. Connections live in the target's connection cache (its share object), not in easy
 * handles, so a target finds its connection again with any handle.
 */
struct handle {
        struct handle *next_free;
        CURL *easy;
        struct curl_slist *headers; /* one may carry a token: wiped when the probe ends */
        struct strbuf body; /* the current answer */
        char cont[1024]; /* the node list's continue token */
        char errbuf[CURL_ERROR_SIZE];
};

struct target {
        char id[64];
        char env[64];
        char name[64];
        int64_t rv; /* resource_version when last seen by a rescan */
        int64_t kc_rv; /* resource_version when the kubeconfig's vault version was last checked */
        uint64_t kc_version; /* vault version of the kubeconfig in use; 0: none loaded */
        bool kc_recheck; /* check the vault version before the next probe */
        struct cm_kubeconfig kc; /* server and token; its PEM parts are dropped once decoded into tls */
        struct cm_tls_identity *tls; /* the CA, client certificate and key, decoded once */
        char kc_error[CM_PROBE_TEXT_MAX]; /* why the kubeconfig is not usable ("" when it is) */
        /*
         * The target's own connection cache: libcurl matches a request to an idle connection by host,
         * port and TLS options, and with the credentials installed from CURLOPT_SSL_CTX_FUNCTION nothing
         * would keep it from handing one cluster record's connection to another's request. NULL between
         * probes when connections are not kept.
         */
        CURLSH *share;

        struct handle *h; /* while a probe runs */
        enum step step;
        unsigned pages;
        struct cm_probe_result *cur; /* the probe in progress */
        uint64_t probe_start; /* monotonic */

        /* Read by other threads under m->lock. */
        struct cm_probe_result last;
        struct cm_health health;
        unsigned failures;
        uint64_t next_wall; /* wall clock of the next probe */
        unsigned known_ready, known_total; /* the last nodes seen */
        char known_version[64];
        unsigned version_age; /* probes since /version was read; 0: read it next */
        int64_t known_cert;

        uint64_t due; /* monotonic */
        size_t heap_idx; /* SIZE_MAX: not in the heap (probing) */
        bool busy, removed, seen;
        bool keep; /* its idle connection is kept for the next probe (one of the first keep_alive_max) */
        bool no_kubeconfig; /* the vault holds no kubeconfig: not monitored */
        unsigned interval_sec, threshold, warn_days;
        uint64_t persisted_at; /* monotonic; 0: never */
        char persisted[192]; /* the material part of the health last written */
};

struct write_item {
        struct write_item *next;
        char id[64];
        char *conditions;
        char *health;
        bool transition;
};

struct env_settings {
        char env[64];
        struct cm_monitor_settings s;
};

struct cm_monitor {
        struct cm_service *svc;
        struct cm_monitor_config cfg;
        CURLM *multi;
        /*
         * Event-driven: libcurl tells which sockets to watch (socket_watch) and when to call it back
         * (timer_set); epoll says which socket is ready and only that transfer runs. wake_fd (an
         * eventfd, also in epoll) interrupts the wait for a poke or the stop.
         */
        int epoll_fd, wake_fd;
        bool timer_armed;
        uint64_t timer_due; /* monotonic */
        pthread_t thread, writer;
        bool thread_started, writer_started;
        atomic_bool stopping;
        atomic_bool poked;

        /* Guards targets, n_targets and the fields of targets other threads read; stats. */
        pthread_mutex_t lock;
        struct target **targets; /* sorted by id */
        size_t n_targets, alloc_targets;
        struct target **heap;
        size_t n_heap, alloc_heap;
        unsigned running;
        struct handle *free_handles;
        struct handle **handles; /* every handle made, for the cleanup */
        size_t n_handles;
        uint64_t last_scan_mono, last_counter;
        bool scanned;

        /* Stats (under lock). */
        uint64_t hist[ELEMENTSOF(duration_buckets) + 1];
        double hist_sum;
        uint64_t hist_count;
        uint64_t errors[_CM_PROBE_OUTCOME_MAX];
        uint64_t handshakes_full, handshakes_resumed;
        uint64_t writes_dropped;

        /* The writer's queue. */
        pthread_mutex_t wlock;
        pthread_cond_t wcond;
        struct write_item *whead, **wtail;
        size_t wlen;
};

/* ---- targets: sorted array by id, heap by due ---- */

static int target_cmp(const void *a, const void *b) {
        return strcmp((*(struct target *const *) a)->id, (*(struct target *const *) b)->id);
}

static struct target *target_find(struct cm_monitor *m, const char *id) {
        struct target key = {}, *kp = &key, **hit;

        if (m->n_targets == 0 || cm_strlcpy(key.id, id, sizeof(key.id)) < 0)
                return NULL;
        hit = bsearch(&kp, m->targets, m->n_targets, sizeof(*m->targets), target_cmp);
        return hit ? *hit : NULL;
}

static bool heap_less(struct cm_monitor *m, size_t a, size_t b) {
        return m->heap[a]->due < m->heap[b]->due;
}

static void heap_swap(struct cm_monitor *m, size_t a, size_t b) {
        struct target *t = m->heap[a];

        m->heap[a] = m->heap[b];
        m->heap[b] = t;
        m->heap[a]->heap_idx = a;
        m->heap[b]->heap_idx = b;
}

static void heap_up(struct cm_monitor *m, size_t i) {
        while (i > 0 && heap_less(m, i, (i - 1) / 2)) {
                heap_swap(m, i, (i - 1) / 2);
                i = (i - 1) / 2;
        }
}

static void heap_down(struct cm_monitor *m, size_t i) {
        for (;;) {
                size_t l = 2 * i + 1, r = l + 1, s = i;

                if (l < m->n_heap && heap_less(m, l, s))
                        s = l;
                if (r < m->n_heap && heap_less(m, r, s))
                        s = r;
                if (s == i)
                        return;
                heap_swap(m, i, s);
                i = s;
        }
}

static int heap_push(struct cm_monitor *m, struct target *t) {
        if (m->n_heap == m->alloc_heap) {
                size_t na = m->alloc_heap ? m->alloc_heap * 2 : 64;
                struct target **h = reallocarray(m->heap, na, sizeof(*h));

                if (!h)
                        return -ENOMEM;
                m->heap = h;
                m->alloc_heap = na;
        }
        m->heap[m->n_heap] = t;
        t->heap_idx = m->n_heap++;
        heap_up(m, t->heap_idx);
        return 0;
}

static void heap_remove(struct cm_monitor *m, struct target *t) {
        size_t i = t->heap_idx;

        if (i == SIZE_MAX || i >= m->n_heap)
                return;
        m->n_heap--;
        if (i != m->n_heap) {
                m->heap[i] = m->heap[m->n_heap];
                m->heap[i]->heap_idx = i;
                heap_down(m, i);
                heap_up(m, i);
        }
        t->heap_idx = SIZE_MAX;
}

static uint64_t jitter(uint64_t span) {
        uint64_t r = 0;

        if (span == 0 || cm_random_bytes(&r, sizeof(r)) < 0)
                return 0;
        return r % span;
}

/* Gives the target's handle back to the pool (a target never holds one between probes). */
static void handle_release(struct cm_monitor *m, struct target *t) {
        struct handle *h = t->h;

        if (!h)
                return;
        (void) curl_multi_remove_handle(m->multi, h->easy);
        cm_curl_slist_free_wiped(h->headers);
        h->headers = NULL;
        /* The handle points at t (private data, TLS identity, share): drop that before t goes. */
        (void) curl_easy_setopt(h->easy, CURLOPT_SHARE, NULL);
        curl_easy_reset(h->easy);
        /* A large node list is not kept for the next probe. */
        if (h->body.alloc > HANDLE_BODY_KEEP)
                strbuf_release(&h->body);
        else
                strbuf_reset(&h->body);
        h->next_free = m->free_handles;
        m->free_handles = h;
        t->h = NULL;
}

/* Closes the target's idle connections (they were made with credentials it no longer holds, or are not kept). */
static void target_share_drop(struct target *t) {
        if (t->share && curl_share_cleanup(t->share) == CURLSHE_OK)
                t->share = NULL;
}

static void target_free(struct target *t) {
        if (!t)
                return;
        target_share_drop(t);
        cm_tls_identity_free(t->tls);
        cm_kubeconfig_done(&t->kc);
        free(t->cur);
        free(t);
}

/* Takes t out of the table (under m->lock) and frees it. */
static void target_drop(struct cm_monitor *m, struct target *t) {
        for (size_t i = 0; i < m->n_targets; i++)
                if (m->targets[i] == t) {
                        memmove(m->targets + i, m->targets + i + 1,
                                (m->n_targets - i - 1) * sizeof(*m->targets));
                        m->n_targets--;
                        break;
                }
        target_free(t);
}

/* ---- the writer ---- */

static void write_item_free(struct write_item *w) {
        if (!w)
                return;
        free(w->conditions);
        free(w->health);
        free(w);
}

static void *writer_main(void *userdata) {
        struct cm_monitor *m = userdata;

        (void) pthread_setname_np(pthread_self(), "cm-monitor-wr");
        pthread_mutex_lock(&m->wlock);
        for (;;) {
                struct write_item *w;
                int r;

                while (!m->whead && !atomic_load(&m->stopping))
                        pthread_cond_wait(&m->wcond, &m->wlock);
                w = m->whead;
                if (!w)
                        break;
                m->whead = w->next;
                if (!m->whead)
                        m->wtail = &m->whead;
                m->wlen--;
                pthread_mutex_unlock(&m->wlock);

                r = STORE_CALL(m->svc->store, cluster_set_health, w->id, w->conditions, w->health,
                               cm_now_usec());
                if (r < 0 && r != -ENOENT)
                        log_warning_errno(r, "monitor: store the health of cluster %s: %m", w->id);
                if (r >= 0 && w->transition)
                        cm_webhooks_poke(m->svc->webhooks);
                write_item_free(w);
                pthread_mutex_lock(&m->wlock);
        }
        pthread_mutex_unlock(&m->wlock);
        return NULL;
}

static void enqueue_write(struct cm_monitor *m, const char *id, char *conditions, char *health,
                          bool transition) {
        struct write_item *w = new0(struct write_item, 1);

        if (!w || cm_strlcpy(w->id, id, sizeof(w->id)) < 0) {
                free(w);
                free(conditions);
                free(health);
                return;
        }
        w->conditions = conditions;
        w->health = health;
        w->transition = transition;
        pthread_mutex_lock(&m->wlock);
        if (!transition && m->wlen >= WRITE_QUEUE_SOFT_MAX) {
                pthread_mutex_unlock(&m->wlock);
                write_item_free(w);
                pthread_mutex_lock(&m->lock);
                m->writes_dropped++;
                pthread_mutex_unlock(&m->lock);
                return;
        }
        *m->wtail = w;
        m->wtail = &w->next;
        m->wlen++;
        pthread_cond_signal(&m->wcond);
        pthread_mutex_unlock(&m->wlock);
}

/* ---- documents written to the store ---- */

static char *conditions_patch(const struct cm_health *h) {
        struct strbuf sb = STRBUF_INIT(16 * 1024);
        bool first = true;
        int r = strbuf_addch(&sb, '[');

        for (size_t i = 0; r >= 0 && i < _CM_HEALTH_COND_MAX; i++) {
                const struct cm_health_value *v = &h->cond[i];

                if (isempty(v->status))
                        continue;
                r = strbuf_addf(&sb, "%s{\"type\":\"%s\",\"status\":", first ? "" : ",",
                                cm_health_cond_type(i));
                if (r >= 0)
                        r = strbuf_add_json_string(&sb, v->status);
                if (r >= 0)
                        r = strbuf_addl(&sb, ",\"reason\":");
                if (r >= 0)
                        r = strbuf_add_json_string(&sb, v->reason);
                if (r >= 0)
                        r = strbuf_addl(&sb, ",\"message\":");
                if (r >= 0)
                        r = strbuf_add_json_string(&sb, v->message);
                if (r >= 0)
                        r = strbuf_addch(&sb, '}');
                first = false;
        }
        if (r >= 0)
                r = strbuf_addch(&sb, ']');
        if (r < 0 || first) {
                strbuf_release(&sb);
                return NULL;
        }
        return strbuf_detach(&sb, NULL);
}

/* The part of status.health whose change is worth a write of its own. */
static void health_material(const struct target *t, char *buf, size_t size) {
        (void) cm_snprintf(buf, size, "%u/%u %s %" PRId64, t->known_ready, t->known_total, t->known_version,
                           t->known_cert);
}

static char *health_json(const struct target *t) {
        struct strbuf sb = STRBUF_INIT(4096);
        char ts[40];
        int r = strbuf_addch(&sb, '{');

        if (r >= 0 && t->known_total > 0)
                r = strbuf_addf(&sb, "\"nodesReady\":%u,\"nodesTotal\":%u,", t->known_ready, t->known_total);
        if (r >= 0 && !isempty(t->known_version)) {
                r = strbuf_addl(&sb, "\"version\":");
                if (r >= 0)
                        r = strbuf_add_json_string(&sb, t->known_version);
                if (r >= 0)
                        r = strbuf_addch(&sb, ',');
        }
        if (r >= 0 && t->known_cert > 0) {
                cm_format_rfc3339((uint64_t) t->known_cert * USEC_PER_SEC, ts, sizeof(ts));
                r = strbuf_addf(&sb, "\"certificateExpiry\":\"%s\",", ts);
        }
        cm_format_rfc3339(t->last.time_usec, ts, sizeof(ts));
        if (r >= 0)
                r = strbuf_addf(&sb, "\"lastProbeTime\":\"%s\",\"latencyMs\":%.1f}", ts,
                                (double) t->last.latency_usec / 1000.0);
        if (r < 0) {
                strbuf_release(&sb);
                return NULL;
        }
        return strbuf_detach(&sb, NULL);
}

/* ---- the kubeconfig and the handle ---- */

/* Loads (or reloads) the kubeconfig when its vault version changed. -ENOENT: no kubeconfig. */
static int target_load_kubeconfig(struct cm_monitor *m, struct target *t) {
        struct cm_vault *v = m->svc->vault;
        char *data = NULL;
        size_t n = 0;
        uint64_t version = 0;
        struct cm_kubeconfig kc = {};
        struct cm_tls_identity *tls = NULL;
        char err[CM_PROBE_TEXT_MAX] = "";
        int r;

        if (!v)
                return -ENOENT;
        if (t->kc_version && !t->kc_recheck)
                return 0;
        if (t->kc_version) {
                struct cm_vault_version *vs = NULL;
                size_t nv = 0;

                r = cm_vault_list_versions(v, t->id, KUBECONFIG_FILE, &vs, &nv);
                if (r >= 0 && nv > 0 && vs[0].version == t->kc_version) {
                        free(vs);
                        t->kc_recheck = false;
                        return 0;
                }
                free(vs);
        }
        r = cm_vault_read(v, t->id, KUBECONFIG_FILE, 0, &data, &n, &version);
        if (r < 0)
                return r;
        r = cm_kubeconfig_parse(data, n, &kc, err, sizeof(err));
        cm_vault_data_free(data, n);
        if (r >= 0) {
                r = cm_tls_identity_new(&kc, &tls, err, sizeof(err));
                if (r == -ENOMEM) {
                        cm_kubeconfig_done(&kc);
                        return r;
                }
        }
        /* New credentials: connections made with the old ones are closed. */
        target_share_drop(t);
        cm_tls_identity_free(t->tls);
        t->tls = NULL;
        cm_kubeconfig_done(&t->kc);
        t->kc_version = version;
        t->kc_recheck = false;
        t->version_age = 0;
        if (r < 0) {
                cm_kubeconfig_done(&kc);
                (void) cm_snprintf(t->kc_error, sizeof(t->kc_error),
                                   "the kubeconfig in the state vault is not "
                                   "usable: %s",
                                   err[0] ? err : "malformed");
                return 0;
        }
        /* The PEM text is not needed any more: only the decoded identity is kept. */
        free(kc.ca_pem);
        free(kc.cert_pem);
        cm_wipe(kc.key_pem, kc.key_len);
        free(kc.key_pem);
        kc.ca_pem = kc.cert_pem = kc.key_pem = NULL;
        kc.ca_len = kc.cert_len = kc.key_len = 0;
        t->kc = kc;
        t->tls = tls;
        t->kc_error[0] = '\0';
        return 0;
}

static size_t body_write(char *ptr, size_t size, size_t nmemb, void *userdata);

/* libcurl's hook into each new connection's TLS context (userdata: the target). */
static CURLcode ssl_ctx_install(CURL *easy, void *ssl_ctx, void *userdata) {
        struct target *t = userdata;
        (void) easy;
        return cm_tls_identity_install(t->tls, ssl_ctx, t->keep) < 0 ? CURLE_SSL_CERTPROBLEM : CURLE_OK;
}

/* Borrows a handle from the pool (or makes one) and sets it up for t's cluster. */
static int handle_acquire(struct cm_monitor *m, struct target *t) {
        struct handle *h = m->free_handles;
        CURL *e;
        int r;

        if (!t->share) {
                t->share = curl_share_init();
                if (!t->share)
                        return -ENOMEM;
                if (curl_share_setopt(t->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK) {
                        target_share_drop(t);
                        return -ENOMEM;
                }
        }
        if (h)
                m->free_handles = h->next_free;
        else {
                struct handle **all = reallocarray(m->handles, m->n_handles + 1, sizeof(*all));

                if (!all)
                        return -ENOMEM;
                m->handles = all;
                h = new0(struct handle, 1);
                if (!h)
                        return -ENOMEM;
                h->easy = curl_easy_init();
                if (!h->easy) {
                        free(h);
                        return -ENOMEM;
                }
                strbuf_init(&h->body, BODY_MAX);
                m->handles[m->n_handles++] = h;
        }
        e = h->easy;
        r = cm_curl_slist_add(&h->headers, "Accept: application/json");
        if (r >= 0)
                r = cm_curl_slist_add(&h->headers, "User-Agent: clustermgmt-monitor/" CM_VERSION);
        if (r >= 0 && t->kc.token) {
                _cleanup_free_ char *auth = NULL;
                size_t n = strlen(t->kc.token) + sizeof("Authorization: Bearer ");

                auth = malloc(n);
                if (!auth)
                        r = -ENOMEM;
                else {
                        (void) cm_snprintf(auth, n, "Authorization: Bearer %s", t->kc.token);
                        r = cm_curl_slist_add(&h->headers, auth);
                        cm_wipe(auth, n);
                }
        }
        t->h = h;
        if (r < 0) {
                handle_release(m, t);
                return r;
        }
        h->cont[0] = '\0';
        (void) curl_easy_setopt(e, CURLOPT_PRIVATE, t);
        (void) curl_easy_setopt(e, CURLOPT_SHARE, t->share);
        (void) curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        (void) curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
        (void) curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
        (void) curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
        (void) curl_easy_setopt(e, CURLOPT_HTTPHEADER, h->headers);
        (void) curl_easy_setopt(e, CURLOPT_ERRORBUFFER, h->errbuf);
        (void) curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, body_write);
        (void) curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
        (void) curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) MIN(m->cfg.timeout_ms, 5000u));
        /*
         * The kubeconfig's CA is the only trust anchor: no CA file or directory for libcurl to load (a
         * public CA could otherwise vouch for a cluster), and ssl_ctx_install() makes the connection
         * verify the server's chain against the anchors decoded with the kubeconfig, not the context's
         * store, and sets the client certificate and key. Should that callback not run, nothing is
         * trusted and the probe fails closed.
         */
        (void) curl_easy_setopt(e, CURLOPT_CAINFO, NULL);
        (void) curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
        /* No X509 store shared between connections: each is checked against its own cluster's CA. */
        (void) curl_easy_setopt(e, CURLOPT_CA_CACHE_TIMEOUT, 0L);
        (void) curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, ssl_ctx_install);
        (void) curl_easy_setopt(e, CURLOPT_SSL_CTX_DATA, t);
        (void) curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
        (void) curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
        (void) curl_easy_setopt(e, CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_2);
        /*
         * No DNS cache: libcurl prunes its cache by walking every entry whenever it resolves, and with
         * thousands of clusters (each its own host and port) that walk was 40% of the monitor's CPU.
         * Addresses in kubeconfigs are mostly literal IPs, which are not resolved at all.
         */
        (void) curl_easy_setopt(e, CURLOPT_DNS_CACHE_TIMEOUT, 0L);
        /*
         * Not libcurl's TLS session cache, which matches by host and port and holds decoded sessions:
         * the target's identity keeps its own session, serialized, and offers it (tls.h).
         */
        (void) curl_easy_setopt(e, CURLOPT_SSL_SESSIONID_CACHE, 0L);
        return 0;
}

/* ---- one probe ---- */

static size_t body_write(char *ptr, size_t size, size_t nmemb, void *userdata) {
        struct target *t = userdata;
        size_t n = size * nmemb;

        /* The serving certificate, read while the connection is attached (also when it is reused). */
        if (t->cur && t->cur->cert_not_after == 0) {
                const struct curl_tlssessioninfo *info = NULL;

                if (curl_easy_getinfo(t->h->easy, CURLINFO_TLS_SSL_PTR, &info) == CURLE_OK && info &&
                    info->backend == CURLSSLBACKEND_OPENSSL && info->internals) {
                        X509 *peer = SSL_get0_peer_certificate((SSL *) info->internals);
                        struct tm tm = {};

                        if (peer && ASN1_TIME_to_tm(X509_get0_notAfter(peer), &tm) == 1)
                                t->cur->cert_not_after = (int64_t) timegm(&tm);
                }
        }
        if (strbuf_add(&t->h->body, ptr, n) < 0)
                return 0; /* over the cap: the transfer fails with CURLE_WRITE_ERROR */
        return n;
}

static const char *step_path(const struct target *t, char *buf, size_t size) {
        switch (t->step) {
        case STEP_LIVEZ:
                return "/livez";
        case STEP_READYZ:
                return "/readyz?verbose";
        case STEP_VERSION:
                return "/version";
        case STEP_NODES: {
                _cleanup_free_ char *esc = NULL;

                if (isempty(t->h->cont))
                        return "/api/v1/nodes?limit=" NODES_PAGE;
                esc = curl_easy_escape(NULL, t->h->cont, 0);
                if (!esc ||
                    cm_snprintf(buf, size, "/api/v1/nodes?limit=" NODES_PAGE "&continue=%s", esc) < 0)
                        return NULL;
                return buf;
        }
        case STEP_DEPLOYMENTS:
        case STEP_DAEMONSETS:
        case STEP_STATEFULSETS:
                if (cm_snprintf(buf, size, "/apis/apps/v1/namespaces/kube-system/%s",
                                cm_workload_resource((enum cm_workload_kind)(t->step - STEP_DEPLOYMENTS))) <
                    0)
                        return NULL;
                return buf;
        default:
                return NULL;
        }
}

static void probe_finish(struct cm_monitor *m, struct target *t);

/* Starts the current step's request; on failure ends the probe with an error outcome. */
static void step_start(struct cm_monitor *m, struct target *t) {
        char pathbuf[1400], url[2048];
        const char *path = step_path(t, pathbuf, sizeof(pathbuf));
        uint64_t now = cm_mono_usec(),
                 deadline = t->probe_start + (uint64_t) m->cfg.timeout_ms * USEC_PER_MSEC;

        if (!path || cm_snprintf(url, sizeof(url), "%s%s", t->kc.server, path) < 0) {
                t->cur->outcome = CM_PROBE_ERROR;
                (void) cm_strlcpy(t->cur->detail, "the API server's address is too long",
                                  sizeof(t->cur->detail));
                probe_finish(m, t);
                return;
        }
        if (now >= deadline) {
                t->cur->outcome = CM_PROBE_UNREACHABLE;
                (void) cm_snprintf(t->cur->detail, sizeof(t->cur->detail),
                                   "the probe took longer than %u ms", m->cfg.timeout_ms);
                probe_finish(m, t);
                return;
        }
        strbuf_reset(&t->h->body);
        t->h->body.cap = t->step == STEP_NODES ? NODES_BODY_MAX : BODY_MAX;
        t->h->errbuf[0] = '\0';
        (void) curl_easy_setopt(t->h->easy, CURLOPT_URL, url);
        /*
         * Without keep-alive the probe's last request closes its connection: idle connections left in
         * libcurl's cache would only be walked (and evicted) at every new connection.
         */
        (void) curl_easy_setopt(t->h->easy, CURLOPT_FORBID_REUSE,
                                (long) (!t->keep && t->step == STEP_STATEFULSETS));
        (void) curl_easy_setopt(t->h->easy, CURLOPT_TIMEOUT_MS,
                                (long) MAX((deadline - now) / USEC_PER_MSEC, 1));
        if (curl_multi_add_handle(m->multi, t->h->easy) != CURLM_OK) {
                t->cur->outcome = CM_PROBE_ERROR;
                (void) cm_strlcpy(t->cur->detail, "could not start a request", sizeof(t->cur->detail));
                probe_finish(m, t);
        }
}

static void probe_start(struct cm_monitor *m, struct target *t) {
        int r;

        t->busy = true;
        t->cur = new0(struct cm_probe_result, 1);
        t->probe_start = cm_mono_usec();
        if (!t->cur) {
                t->busy = false;
                t->due = t->probe_start + USEC_PER_SEC;
                (void) heap_push(m, t);
                return;
        }
        m->running++;
        t->step = STEP_READYZ;
        t->pages = 0;
        r = target_load_kubeconfig(m, t);
        t->no_kubeconfig = r == -ENOENT;
        if (r == -ENOENT) {
                /*
                 * No kubeconfig (yet): nothing to probe and nothing to judge. Looked for again at the
                 * next interval, or as soon as the cluster record changes.
                 */
                free(t->cur);
                t->cur = NULL;
                m->running--;
                t->busy = false;
                t->kc_recheck = true;
                t->kc_version = 0;
                pthread_mutex_lock(&m->lock);
                t->due = t->probe_start + (uint64_t) t->interval_sec * USEC_PER_SEC;
                if (t->removed) {
                        target_drop(m, t);
                        pthread_mutex_unlock(&m->lock);
                        return;
                }
                (void) heap_push(m, t);
                pthread_mutex_unlock(&m->lock);
                return;
        }
        if (r < 0 || !isempty(t->kc_error)) {
                t->cur->outcome = CM_PROBE_BAD_KUBECONFIG;
                if (r < 0)
                        (void) cm_snprintf(t->cur->detail, sizeof(t->cur->detail),
                                           "the kubeconfig could not be read from the state vault: %s",
                                           strerror(-r));
                else
                        (void) cm_strlcpy(t->cur->detail, t->kc_error, sizeof(t->cur->detail));
                probe_finish(m, t);
                return;
        }
        r = handle_acquire(m, t);
        if (r < 0) {
                t->cur->outcome = CM_PROBE_ERROR;
                (void) cm_strlcpy(t->cur->detail, "out of memory", sizeof(t->cur->detail));
                probe_finish(m, t);
                return;
        }
        step_start(m, t);
}

/* The answer of the current step; moves on or ends the probe. */
static void step_done(struct cm_monitor *m, struct target *t, CURLcode cc) {
        struct cm_probe_result *res = t->cur;
        long status = 0;
        const char *what;
        int r = 0;

        (void) curl_multi_remove_handle(m->multi, t->h->easy);
        what = t->step == STEP_LIVEZ     ? "/livez"
               : t->step == STEP_READYZ  ? "/readyz"
               : t->step == STEP_VERSION ? "/version"
               : t->step == STEP_NODES   ? "the node list"
                                         : "the kube-system workloads";
        if (cc != CURLE_OK) {
                if (cm_curl_code_is_tls(cc) && cc != CURLE_SSL_CERTPROBLEM)
                        res->outcome = CM_PROBE_TLS_ERROR;
                else if (cc == CURLE_WRITE_ERROR) {
                        res->outcome = CM_PROBE_ERROR;
                        (void) cm_snprintf(res->detail, sizeof(res->detail),
                                           "the answer for %s is too large", what);
                        probe_finish(m, t);
                        return;
                } else
                        res->outcome =
                                cc == CURLE_SSL_CERTPROBLEM ? CM_PROBE_BAD_KUBECONFIG : CM_PROBE_UNREACHABLE;
                (void) cm_snprintf(res->detail, sizeof(res->detail), "%s",
                                   isempty(t->h->errbuf) ? curl_easy_strerror(cc) : t->h->errbuf);
                probe_finish(m, t);
                return;
        }
        (void) curl_easy_getinfo(t->h->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status == 401 || status == 403) {
                res->outcome = CM_PROBE_UNAUTHORIZED;
                (void) cm_snprintf(res->detail, sizeof(res->detail),
                                   "the API server refused the kubeconfig's credentials (HTTP %ld for %s)",
                                   status, what);
                probe_finish(m, t);
                return;
        }
        switch (t->step) {
        case STEP_LIVEZ:
                res->livez_status = (int) status;
                break;
        case STEP_READYZ:
                res->readyz_status = (int) status;
                if (status != 200)
                        (void) cm_probe_decode_readyz(t->h->body.buf, t->h->body.len, res->failing_checks,
                                                      sizeof(res->failing_checks));
                break;
        case STEP_VERSION:
                if (status == 200)
                        r = cm_probe_decode_version(t->h->body.buf, t->h->body.len, res->version,
                                                    sizeof(res->version));
                break;
        case STEP_NODES:
                if (status == 200) {
                        r = cm_probe_decode_nodes(t->h->body.buf, t->h->body.len, res, t->h->cont,
                                                  sizeof(t->h->cont));
                        if (r >= 0 && !isempty(t->h->cont) && ++t->pages < NODES_PAGES_MAX) {
                                step_start(m, t); /* the next page */
                                return;
                        }
                }
                break;
        case STEP_DEPLOYMENTS:
        case STEP_DAEMONSETS:
        case STEP_STATEFULSETS:
                if (status == 200)
                        r = cm_probe_decode_workloads((enum cm_workload_kind)(t->step - STEP_DEPLOYMENTS),
                                                      t->h->body.buf, t->h->body.len, res);
                break;
        default:
                break;
        }
        /* /livez and /readyz answer 500 when unhealthy: a state, not an error. Others must be 200. */
        if ((t->step > STEP_LIVEZ && status != 200) || r < 0 ||
            (t->step <= STEP_LIVEZ && status != 200 && status != 500)) {
                res->outcome = CM_PROBE_ERROR;
                if (r < 0)
                        (void) cm_snprintf(res->detail, sizeof(res->detail),
                                           "the answer for %s could not be decoded", what);
                else
                        (void) cm_snprintf(res->detail, sizeof(res->detail), "HTTP %ld for %s", status,
                                           what);
                probe_finish(m, t);
                return;
        }
        /* An API server that is not ready answers nothing more worth reading than /livez. */
        if (t->step == STEP_READYZ)
                t->step = res->readyz_status == 200 ? STEP_VERSION : STEP_LIVEZ;
        else if (t->step == STEP_LIVEZ)
                t->step = STEP_DONE;
        else
                t->step++;
        if (t->step == STEP_VERSION && t->version_age > 0 && !isempty(t->known_version)) {
                (void) cm_strlcpy(res->version, t->known_version, sizeof(res->version));
                t->step++;
        }
        if (t->step == STEP_NODES)
                t->h->cont[0] = '\0';
        if (t->step >= STEP_DONE) {
                res->outcome = CM_PROBE_OK;
                probe_finish(m, t);
                return;
        }
        step_start(m, t);
}

static void observe(struct cm_monitor *m, const struct cm_probe_result *res) {
        double s = (double) res->latency_usec / 1e6;
        size_t i = 0;

        while (i < ELEMENTSOF(duration_buckets) && s > duration_buckets[i])
                i++;
        m->hist[i]++;
        m->hist_sum += s;
        m->hist_count++;
        if (res->outcome != CM_PROBE_OK && res->outcome < _CM_PROBE_OUTCOME_MAX)
                m->errors[res->outcome]++;
}

static void log_change(const struct target *t, const struct cm_health *before,
                       const struct cm_health *after) {
        const struct cm_health_value *a = &before->cond[CM_COND_API_SERVER_AVAILABLE],
                                     *b = &after->cond[CM_COND_API_SERVER_AVAILABLE],
                                     *h = &after->cond[CM_COND_HEALTHY];

        if (streq(a->status, b->status) && streq(a->reason, b->reason) &&
            streq(before->cond[CM_COND_HEALTHY].status, h->status) &&
            streq(before->cond[CM_COND_HEALTHY].reason, h->reason))
                return;
        if (streq(b->status, "False") && !(streq(a->status, "False") && streq(a->reason, b->reason)))
                log_warning("monitor: cluster %s/%s: API server unavailable (%s): %s", t->env, t->name,
                            b->reason, b->message);
        else if (streq(h->status, "True"))
                log_info("monitor: cluster %s/%s is healthy", t->env, t->name);
        else if (!isempty(h->status))
                log_info("monitor: cluster %s/%s: Healthy=%s (%s): %s", t->env, t->name, h->status,
                         h->reason, h->message);
}

static void probe_finish(struct cm_monitor *m, struct target *t) {
        _cleanup_free_ struct cm_probe_result *res = TAKE_PTR(t->cur);
        struct cm_health_settings hs = { .failure_threshold = t->threshold,
                                         .cert_warning_days = t->warn_days };
        struct cm_health next;
        uint64_t now = cm_mono_usec(), interval = (uint64_t) t->interval_sec * USEC_PER_SEC, delay;
        unsigned failures;
        bool changed, removed;
        char material[sizeof(t->persisted)];
        unsigned hs_full, hs_resumed;

        handle_release(m, t);
        if (!t->keep)
                target_share_drop(t);
        cm_tls_identity_take_handshakes(t->tls, &hs_full, &hs_resumed);
        m->running--;
        t->busy = false;
        res->time_usec = cm_now_usec();
        res->latency_usec = now - t->probe_start;
        /* A certificate seen on an earlier request of the connection still counts. */
        if (res->outcome == CM_PROBE_OK && res->cert_not_after == 0)
                res->cert_not_after = t->known_cert;
        failures = res->outcome == CM_PROBE_OK ? 0 : t->failures + 1;
        cm_health_evaluate(&t->health, res, failures, &hs, (int64_t) (res->time_usec / USEC_PER_SEC), &next);
        changed = cm_health_changed(&t->health, &next);
        if (res->outcome == CM_PROBE_UNAUTHORIZED || res->outcome == CM_PROBE_TLS_ERROR ||
            res->outcome == CM_PROBE_BAD_KUBECONFIG) {
                t->kc_recheck = true; /* the credentials may have been rotated */
                /* The next connection proves the credentials again with a full handshake. */
                cm_tls_identity_forget_session(t->tls);
        }
        /* After a failure the next OK probe reads /version again (the API server may have been upgraded). */
        if (res->outcome != CM_PROBE_OK)
                t->version_age = 0;
        else if (!isempty(res->version))
                t->version_age = (t->version_age + 1) % VERSION_EVERY;
        if (changed)
                log_change(t, &t->health, &next);

        if (res->outcome == CM_PROBE_OK)
                delay = interval - MIN(interval / 10, interval) + jitter(interval / 5 + 1);
        else if (failures < t->threshold)
                delay = MAX(interval / 4, USEC_PER_SEC);
        else
                delay = interval *
                        MIN(1u << MIN(failures - t->threshold, 4u), (unsigned) BACKOFF_MAX_FACTOR);

        pthread_mutex_lock(&m->lock);
        t->last = *res;
        t->health = next;
        t->failures = failures;
        if (res->outcome == CM_PROBE_OK) {
                if (res->nodes_known) {
                        t->known_ready = res->nodes_ready;
                        t->known_total = res->nodes_total;
                }
                if (!isempty(res->version))
                        (void) cm_strlcpy(t->known_version, res->version, sizeof(t->known_version));
                if (res->cert_not_after)
                        t->known_cert = res->cert_not_after;
        }
        t->due = now + delay;
        t->next_wall = res->time_usec + delay;
        observe(m, res);
        m->handshakes_full += hs_full;
        m->handshakes_resumed += hs_resumed;
        removed = t->removed;
        if (removed)
                target_drop(m, t);
        pthread_mutex_unlock(&m->lock);
        if (removed)
                return;
        health_material(t, material, sizeof(material));
        if (changed || !streq(material, t->persisted) || t->persisted_at == 0 ||
            now - t->persisted_at >= PERSIST_REFRESH_USEC) {
                char *conds = changed ? conditions_patch(&next) : NULL;

                enqueue_write(m, t->id, conds, health_json(t), changed);
                (void) cm_strlcpy(t->persisted, material, sizeof(t->persisted));
                t->persisted_at = now;
        }
        pthread_mutex_lock(&m->lock);
        if (heap_push(m, t) < 0)
                log_warning("monitor: out of memory; cluster %s/%s is no longer probed", t->env, t->name);
        pthread_mutex_unlock(&m->lock);
}

/* ---- the cluster list ---- */

struct scan_entry {
        char id[64];
        char name[64];
        int64_t rv;
        char *conditions;
};

struct scan {
        struct scan_entry *e;
        size_t n, alloc;
        size_t page; /* clusters of the page, whatever their phase */
        char last[64]; /* the page's last name */
};

static int scan_cluster(const struct cm_cluster *c, void *userdata) {
        struct scan *s = userdata;
        struct scan_entry *e;

        s->page++;
        (void) cm_strlcpy(s->last, c->name, sizeof(s->last));
        if (c->phase != CM_PHASE_READY && c->phase != CM_PHASE_UPDATING)
                return 0;
        if (s->n == s->alloc) {
                size_t na = s->alloc ? s->alloc * 2 : 256;
                struct scan_entry *p = reallocarray(s->e, na, sizeof(*p));

                if (!p)
                        return -ENOMEM;
                s->e = p;
                s->alloc = na;
        }
        e = &s->e[s->n];
        *e = (struct scan_entry){ .rv = c->resource_version };
        if (cm_strlcpy(e->id, c->id, sizeof(e->id)) < 0 || cm_strlcpy(e->name, c->name, sizeof(e->name)) < 0)
                return 0;
        e->conditions = strdup(c->conditions_json ?: "[]");
        if (!e->conditions)
                return -ENOMEM;
        s->n++;
        return 0;
}

static void scan_release(struct scan *s) {
        for (size_t i = 0; i < s->n; i++)
                free(s->e[i].conditions);
        free(s->e);
        *s = (struct scan){};
}

static int insert_target(struct cm_monitor *m, struct target *t) {
        size_t lo = 0, hi = m->n_targets;

        if (m->n_targets == m->alloc_targets) {
                size_t na = m->alloc_targets ? m->alloc_targets * 2 : 64;
                struct target **p = reallocarray(m->targets, na, sizeof(*p));

                if (!p)
                        return -ENOMEM;
                m->targets = p;
                m->alloc_targets = na;
        }
        while (lo < hi) {
                size_t mid = (lo + hi) / 2;

                if (strcmp(m->targets[mid]->id, t->id) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        memmove(m->targets + lo + 1, m->targets + lo, (m->n_targets - lo) * sizeof(*m->targets));
        m->targets[lo] = t;
        m->n_targets++;
        return 0;
}

/* One environment's clusters into targets (new ones are due at a random point of the interval). */
static int scan_env(struct cm_monitor *m, const char *env) {
        struct cm_monitor_settings st;
        struct scan s = {};
        char after[64] = "";
        uint64_t now = cm_mono_usec();
        int r;

        r = cm_monitor_settings_get(m->svc, env, &st, NULL);
        if (r < 0)
                return r;
        for (;;) {
                s.page = 0;
                r = STORE_CALL(m->svc->store, cluster_list_each, env, after, 500, scan_cluster, &s);
                if (r < 0 || s.page < 500)
                        break;
                (void) cm_strlcpy(after, s.last, sizeof(after));
        }
        if (r < 0) {
                scan_release(&s);
                return r;
        }

        pthread_mutex_lock(&m->lock);
        for (size_t i = 0; i < s.n; i++) {
                struct scan_entry *e = &s.e[i];
                struct target *t = target_find(m, e->id);

                if (!t) {
                        t = new0(struct target, 1);
                        if (!t) {
                                r = -ENOMEM;
                                break;
                        }
                        (void) cm_strlcpy(t->id, e->id, sizeof(t->id));
                        (void) cm_strlcpy(t->name, e->name, sizeof(t->name));
                        (void) cm_strlcpy(t->env, env, sizeof(t->env));
                        t->heap_idx = SIZE_MAX;
                        t->rv = t->kc_rv = e->rv;
                        cm_health_from_conditions(e->conditions, &t->health);
                        t->interval_sec = st.interval_sec;
                        /*
                         * At start, spread the first probes over an interval; a cluster that becomes
                         * Ready later is probed at once.
                         */
                        t->due = now + (m->scanned ? 0 : jitter((uint64_t) st.interval_sec * USEC_PER_SEC));
                        t->next_wall = cm_now_usec() + (t->due - now);
                        if (insert_target(m, t) < 0 || heap_push(m, t) < 0) {
                                target_free(t);
                                r = -ENOMEM;
                                break;
                        }
                }
                if (e->rv != t->kc_rv) {
                        t->kc_recheck = true;
                        t->kc_rv = e->rv;
                }
                t->rv = e->rv;
                t->seen = true;
                t->removed = false; /* back before its last probe ended */
                if (t->interval_sec != st.interval_sec && !t->busy) {
                        /* A shorter interval takes effect now, a longer one at the next probe. */
                        uint64_t due = now + (uint64_t) st.interval_sec * USEC_PER_SEC;

                        if (due < t->due) {
                                t->due = due;
                                heap_remove(m, t);
                                (void) heap_push(m, t);
                        }
                }
                t->interval_sec = st.interval_sec;
                t->threshold = st.threshold;
                t->warn_days = st.cert_warning_days;
        }
        pthread_mutex_unlock(&m->lock);
        scan_release(&s);
        return r;
}

static void rescan(struct cm_monitor *m) {
        uint64_t now = cm_mono_usec(), counter = 0;
        char after[64] = "";
        bool failed = false;
        size_t kept = 0;

        bool poked = atomic_exchange(&m->poked, false);

        if (!poked && m->scanned && now - m->last_scan_mono < (uint64_t) m->cfg.rescan_ms * USEC_PER_MSEC)
                return;
        /* The store's write counter: an unchanged store needs no rescan (but one a minute anyway). */
        if (STORE_CALL(m->svc->store, change_counter, &counter) >= 0 && !poked && m->scanned &&
            counter == m->last_counter && now - m->last_scan_mono < RESCAN_MAX_USEC)
                return;
        m->last_scan_mono = now;
        m->last_counter = counter;

        pthread_mutex_lock(&m->lock);
        for (size_t i = 0; i < m->n_targets; i++)
                m->targets[i]->seen = false;
        pthread_mutex_unlock(&m->lock);

        for (;;) {
                struct cm_environment *envs = NULL;
                size_t n = 0;
                int r = STORE_CALL(m->svc->store, env_list, after[0] ? after : NULL, 100, &envs, &n);

                if (r < 0) {
                        log_warning_errno(r, "monitor: list environments: %m");
                        failed = true;
                        break;
                }
                for (size_t i = 0; i < n; i++) {
                        r = scan_env(m, envs[i].name);
                        if (r < 0) {
                                log_warning_errno(r, "monitor: list the clusters of environment '%s': %m",
                                                  envs[i].name);
                                failed = true;
                        }
                }
                if (n > 0)
                        (void) cm_strlcpy(after, envs[n - 1].name, sizeof(after));
                cm_environment_array_free(envs, n);
                if (n < 100)
                        break;
        }
        m->scanned = true;
        if (failed)
                return; /* never drop targets on a partial view */

        /* Targets no longer Ready/Updating (or deleted) stop being probed. */
        pthread_mutex_lock(&m->lock);
        for (size_t i = 0; i < m->n_targets; i++) {
                struct target *t = m->targets[i];

                if (t->seen) {
                        m->targets[kept++] = t;
                        continue;
                }
                heap_remove(m, t);
                if (t->busy) {
                        /* Freed (and unlinked) when its probe ends. */
                        t->removed = true;
                        m->targets[kept++] = t;
                } else
                        target_free(t);
        }
        m->n_targets = kept;
        /*
         * Idle connections are kept for the next probe of the first keep_alive_max targets (by id): each
         * costs tens of KB in libcurl and OpenSSL. The others' probes open a connection (resuming the
         * cluster's TLS session), their requests share it, the last request closes it, and the target's
         * connection cache goes when the probe ends.
         */
        for (size_t i = 0; i < m->n_targets; i++) {
                struct target *t = m->targets[i];

                /* One that stops being kept lets go of its connection when its next probe ends. */
                t->keep = i < m->cfg.keep_alive_max;
        }
        (void) curl_multi_setopt(
                m->multi, CURLMOPT_MAXCONNECTS,
                (long) (MIN(m->n_targets, m->cfg.keep_alive_max) + m->cfg.concurrency + 16));
        pthread_mutex_unlock(&m->lock);
}

/* ---- the loop ---- */

/*
 * Registers fd for ev's events: changed when registered, else (also when libcurl closed the socket and
 * its number came back) added. 0 or -errno.
 */
static int watch_set(int epoll_fd, int fd, struct epoll_event *ev, bool registered) {
        if (registered) {
                if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, ev) == 0)
                        return 0;
                if (errno != ENOENT)
                        return -errno;
        }
        if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, ev) == 0)
                return 0;
        if (errno == EEXIST && epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, ev) == 0)
                return 0;
        return -errno;
}

/*
 * CURLMOPT_SOCKETFUNCTION: what libcurl wants to know about a transfer's socket. The socket's pointer
 * (curl_multi_assign) holds the events it is registered for, plus one: no epoll_ctl() when they did
 * not change.
 */
static int socket_watch(CURL *easy, curl_socket_t fd, int what, void *userdata, void *socketp) {
        struct cm_monitor *m = userdata;
        struct epoll_event ev = { .data.fd = fd };
        uintptr_t registered = (uintptr_t) socketp;
        int r;
        (void) easy;

        if (what == CURL_POLL_REMOVE) {
                /* libcurl may have closed the socket already, which took it out of the epoll set. */
                (void) epoll_ctl(m->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
                return 0;
        }
        ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
        if (registered == (uintptr_t) ev.events + 1)
                return 0;
        r = watch_set(m->epoll_fd, fd, &ev, registered != 0);
        if (r < 0) {
                log_warning_errno(r, "monitor: watch a socket: %m");
                return -1; /* libcurl fails the transfer */
        }
        (void) curl_multi_assign(m->multi, fd, (void *) ((uintptr_t) ev.events + 1));
        return 0;
}

/* CURLMOPT_TIMERFUNCTION: when libcurl wants curl_multi_socket_action(CURL_SOCKET_TIMEOUT). */
static int timer_set(CURLM *multi, long timeout_ms, void *userdata) {
        struct cm_monitor *m = userdata;
        (void) multi;

        m->timer_armed = timeout_ms >= 0;
        if (m->timer_armed)
                m->timer_due = cm_mono_usec() + (uint64_t) timeout_ms * USEC_PER_MSEC;
        return 0;
}

/* The answers of the requests that ended: each moves its probe on (which may start the next request). */
static void collect(struct cm_monitor *m) {
        CURLMsg *msg;
        int left;

        while ((msg = curl_multi_info_read(m->multi, &left))) {
                struct target *t = NULL;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                (void) curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
                if (t && t->busy && t->cur)
                        step_done(m, t, msg->data.result);
        }
}

static void wake(struct cm_monitor *m) {
        uint64_t one = 1;

        if (m->wake_fd >= 0 && write(m->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
                log_debug_errno(-errno, "monitor: wake the prober: %m");
}

static void *monitor_main(void *userdata) {
        struct cm_monitor *m = userdata;
        struct epoll_event evs[64];

        (void) pthread_setname_np(pthread_self(), "cm-monitor");
        while (!atomic_load(&m->stopping)) {
                uint64_t now, wait = 1000 * USEC_PER_MSEC;
                int n, still = 0;

                rescan(m);

                /* Start what is due, within the concurrency bound. */
                now = cm_mono_usec();
                pthread_mutex_lock(&m->lock);
                while (m->n_heap > 0 && m->running < m->cfg.concurrency && m->heap[0]->due <= now) {
                        struct target *t = m->heap[0];

                        heap_remove(m, t);
                        pthread_mutex_unlock(&m->lock);
                        probe_start(m, t);
                        pthread_mutex_lock(&m->lock);
                }
                if (m->n_heap > 0 && m->running < m->cfg.concurrency)
                        wait = MIN(wait, m->heap[0]->due > now ? m->heap[0]->due - now : 0);
                pthread_mutex_unlock(&m->lock);
                collect(m); /* requests that could not start ended at once */
                if (m->timer_armed)
                        wait = MIN(wait, m->timer_due > now ? m->timer_due - now : 0);

                /* Round up: waking a little early would only loop. */
                n = epoll_wait(m->epoll_fd, evs, (int) ELEMENTSOF(evs),
                               (int) ((wait + USEC_PER_MSEC - 1) / USEC_PER_MSEC));
                if (n < 0 && errno != EINTR) {
                        log_warning_errno(-errno, "monitor: wait for sockets: %m");
                        n = 0;
                }
                for (int i = 0; i < n; i++) {
                        int fd = evs[i].data.fd, flags = 0;

                        if (fd == m->wake_fd) {
                                uint64_t v;

                                /* Resets the eventfd; nothing to do when another wake-up got there first. */
                                if (read(m->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                                        log_debug_errno(-errno, "monitor: read the wake-up: %m");
                                continue;
                        }
                        if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
                                flags |= CURL_CSELECT_IN;
                        if (evs[i].events & EPOLLOUT)
                                flags |= CURL_CSELECT_OUT;
                        if (evs[i].events & EPOLLERR)
                                flags |= CURL_CSELECT_ERR;
                        (void) curl_multi_socket_action(m->multi, fd, flags, &still);
                }
                if (m->timer_armed && cm_mono_usec() >= m->timer_due) {
                        m->timer_armed = false;
                        (void) curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &still);
                }
                collect(m);
        }
        return NULL;
}

int cm_monitor_start(struct cm_service *svc, const struct cm_monitor_config *cfg, struct cm_monitor **ret) {
        struct cm_monitor *m;
        int r;

        m = new0(struct cm_monitor, 1);
        if (!m)
                return -ENOMEM;
        m->svc = svc;
        m->cfg = *cfg;
        if (m->cfg.concurrency == 0)
                m->cfg.concurrency = 1;
        if (m->cfg.timeout_ms == 0)
                m->cfg.timeout_ms = 10000;
        svc->monitor_interval_sec = cfg->interval_sec;
        svc->monitor_threshold = cfg->threshold;
        svc->monitor_cert_warning_days = cfg->cert_warning_days;
        pthread_mutex_init(&m->lock, NULL);
        pthread_mutex_init(&m->wlock, NULL);
        pthread_cond_init(&m->wcond, NULL);
        m->wtail = &m->whead;
        m->epoll_fd = m->wake_fd = -1;
        m->multi = curl_multi_init();
        if (!m->multi) {
                cm_monitor_stop(m);
                return -ENOMEM;
        }
        m->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        m->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (m->epoll_fd < 0 || m->wake_fd < 0 ||
            epoll_ctl(m->epoll_fd, EPOLL_CTL_ADD, m->wake_fd,
                      &(struct epoll_event){ .events = EPOLLIN, .data.fd = m->wake_fd }) < 0) {
                r = -errno;
                cm_monitor_stop(m);
                return r;
        }
        (void) curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, socket_watch);
        (void) curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
        (void) curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, timer_set);
        (void) curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
        (void) curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, (long) (m->cfg.concurrency + 16));
        r = -pthread_create(&m->writer, NULL, writer_main, m);
        if (r < 0) {
                cm_monitor_stop(m);
                return r;
        }
        m->writer_started = true;
        r = -pthread_create(&m->thread, NULL, monitor_main, m);
        if (r < 0) {
                cm_monitor_stop(m);
                return r;
        }
        m->thread_started = true;
        *ret = m;
        return 0;
}

struct cm_monitor *cm_monitor_stop(struct cm_monitor *m) {
        if (!m)
                return NULL;
        atomic_store(&m->stopping, true);
        wake(m);
        if (m->thread_started)
                pthread_join(m->thread, NULL);
        pthread_mutex_lock(&m->wlock);
        pthread_cond_broadcast(&m->wcond);
        pthread_mutex_unlock(&m->wlock);
        if (m->writer_started)
                pthread_join(m->writer, NULL);
        for (struct write_item *w = m->whead, *next; w; w = next) {
                next = w->next;
                write_item_free(w);
        }
        for (size_t i = 0; i < m->n_targets; i++) {
                struct target *t = m->targets[i];

                handle_release(m, t);
                target_free(t);
        }
        free(m->targets);
        free(m->heap);
        for (size_t i = 0; i < m->n_handles; i++) {
                cm_curl_slist_free_wiped(m->handles[i]->headers);
                strbuf_release(&m->handles[i]->body);
                curl_easy_cleanup(m->handles[i]->easy);
                free(m->handles[i]);
        }
        free(m->handles);
        if (m->multi)
                curl_multi_cleanup(m->multi);
        /* After libcurl: it tells socket_watch() about the sockets it closes. */
        if (m->epoll_fd >= 0)
                (void) close(m->epoll_fd);
        if (m->wake_fd >= 0)
                (void) close(m->wake_fd);
        pthread_cond_destroy(&m->wcond);
        pthread_mutex_destroy(&m->wlock);
        pthread_mutex_destroy(&m->lock);
        free(m);
        return NULL;
}

void cm_monitor_poke(struct cm_monitor *m) {
        if (!m)
                return;
        atomic_store(&m->poked, true);
        wake(m);
}

int cm_monitor_live(struct cm_monitor *m, const char *cluster_id, struct cm_monitor_live *ret) {
        struct target *t;

        if (!m || !cluster_id)
                return -ENOENT;
        pthread_mutex_lock(&m->lock);
        t = target_find(m, cluster_id);
        if (!t || t->removed || t->no_kubeconfig) {
                pthread_mutex_unlock(&m->lock);
                return -ENOENT;
        }
        *ret = (struct cm_monitor_live){
                .monitored = true,
                .last = t->last,
                .health = t->health,
                .consecutive_failures = t->failures,
                .next_probe_usec = t->next_wall,
        };
        pthread_mutex_unlock(&m->lock);
        return 0;
}

static int add_label_value(struct strbuf *out, const char *s) {
        /* Prometheus label values: backslash, double quote and newline escaped. */
        for (; *s; s++) {
                int r;

                if (*s == '\\' || *s == '"')
                        r = strbuf_addch(out, '\\') < 0 ? -ENOBUFS : strbuf_addch(out, *s);
                else if (*s == '\n')
                        r = strbuf_addl(out, "\\n");
                else
                        r = strbuf_addch(out, *s);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int add_gauge(struct strbuf *out, const char *metric, const struct target *t, double v) {
        int r = strbuf_addf(out, "%s{environment=\"", metric);

        if (r >= 0)
                r = add_label_value(out, t->env);
        if (r >= 0)
                r = strbuf_addl(out, "\",cluster=\"");
        if (r >= 0)
                r = add_label_value(out, t->name);
        if (r >= 0)
                r = strbuf_addf(out, "\"} %.17g\n", v);
        return r;
}

int cm_monitor_metrics(struct cm_monitor *m, struct strbuf *out) {
        static const char *const gauges[][2] = {
                { "clustermgmt_cluster_healthy", "1 when Healthy is True, 0 when False, -1 when unknown" },
                { "clustermgmt_cluster_nodes_ready", "nodes Ready in the last probe" },
                { "clustermgmt_cluster_nodes_total", "nodes in the last probe" },
                { "clustermgmt_cluster_certificate_expiry_seconds", "seconds until the API server's serving "
                                                                    "certificate expires" },
        };
        int64_t now = (int64_t) (cm_now_usec() / USEC_PER_SEC);
        uint64_t cum = 0;
        int r = 0;

        if (!m)
                return 0;
        size_t monitored = 0;

        pthread_mutex_lock(&m->lock);
        for (size_t i = 0; i < m->n_targets; i++)
                monitored += !m->targets[i]->no_kubeconfig;
        r = strbuf_addf(out,
                        "# HELP clustermgmt_monitored_clusters clusters the monitor probes\n"
                        "# TYPE clustermgmt_monitored_clusters gauge\nclustermgmt_monitored_clusters %zu\n",
                        monitored);
        for (size_t g = 0; r >= 0 && g < ELEMENTSOF(gauges); g++) {
                r = strbuf_addf(out, "# HELP %s %s\n# TYPE %s gauge\n", gauges[g][0], gauges[g][1],
                                gauges[g][0]);
                for (size_t i = 0; r >= 0 && i < m->n_targets; i++) {
                        const struct target *t = m->targets[i];
                        const char *h = t->health.cond[CM_COND_HEALTHY].status;

                        if (t->no_kubeconfig)
                                continue;

                        switch (g) {
                        case 0:
                                r = add_gauge(out, gauges[g][0], t,
                                              streq(h, "True")    ? 1
                                              : streq(h, "False") ? 0
                                                                  : -1);
                                break;
                        case 1:
                                if (t->known_total)
                                        r = add_gauge(out, gauges[g][0], t, t->known_ready);
                                break;
                        case 2:
                                if (t->known_total)
                                        r = add_gauge(out, gauges[g][0], t, t->known_total);
                                break;
                        default:
                                if (t->known_cert)
                                        r = add_gauge(out, gauges[g][0], t, (double) (t->known_cert - now));
                                break;
                        }
                }
        }
        if (r >= 0)
                r = strbuf_addl(out, "# HELP clustermgmt_probe_duration_seconds time one health probe took\n"
                                     "# TYPE clustermgmt_probe_duration_seconds histogram\n");
        for (size_t i = 0; r >= 0 && i <= ELEMENTSOF(duration_buckets); i++) {
                cum += m->hist[i];
                if (i < ELEMENTSOF(duration_buckets))
                        r = strbuf_addf(out,
                                        "clustermgmt_probe_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                                        duration_buckets[i], cum);
                else
                        r = strbuf_addf(out,
                                        "clustermgmt_probe_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64
                                        "\n"
                                        "clustermgmt_probe_duration_seconds_sum %.6f\n"
                                        "clustermgmt_probe_duration_seconds_count %" PRIu64 "\n",
                                        cum, m->hist_sum, m->hist_count);
        }
        if (r >= 0)
                r = strbuf_addl(out, "# HELP clustermgmt_probe_errors_total failed health probes by reason\n"
                                     "# TYPE clustermgmt_probe_errors_total counter\n");
        for (int o = 1; r >= 0 && o < _CM_PROBE_OUTCOME_MAX; o++)
                r = strbuf_addf(out, "clustermgmt_probe_errors_total{reason=\"%s\"} %" PRIu64 "\n",
                                cm_probe_outcome_name(o), m->errors[o]);
        if (r >= 0)
                r = strbuf_addf(
                        out,
                        "# HELP clustermgmt_probe_tls_handshakes_total TLS handshakes of health probes, "
                        "by whether they resumed the cluster's last session\n"
                        "# TYPE clustermgmt_probe_tls_handshakes_total counter\n"
                        "clustermgmt_probe_tls_handshakes_total{resumed=\"false\"} %" PRIu64 "\n"
                        "clustermgmt_probe_tls_handshakes_total{resumed=\"true\"} %" PRIu64 "\n",
                        m->handshakes_full, m->handshakes_resumed);
        pthread_mutex_unlock(&m->lock);
        return r < 0 ? r : 0;
}
