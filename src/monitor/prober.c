/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The health prober: one thread, one epoll loop, every monitored cluster a target with its credentials
 * held in memory only (checked once: tls.h) and its own connection (conn.h: TLS from one shared client
 * context, HTTP/1.1). For up to keep_alive_max targets the connection stays open between probes, so a
 * probe costs no handshake; the others resume their last TLS session. Targets wait in a min-heap by
 * due time; at most cfg.concurrency probes run at once, each with buffers borrowed from a pool. Host
 * names are resolved off the loop (resolve.h). A probe is a sequence of GETs; when it ends, the
 * conditions are computed (health.c) and what changed goes to the writer thread.
 */
#include "base/common.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "api/model.h"
#include "base/log.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "lifecycle/service.h"
#include "lifecycle/statefiles.h"
#include "monitor/conn.h"
#include "monitor/health.h"
#include "monitor/monitor.h"
#include "monitor/resolve.h"
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
/* Connecting (and resolving) a probe's connection takes at most this long (and the probe's timeout). */
#define CONNECT_TIMEOUT_USEC (5 * USEC_PER_SEC)
/* Threads resolving host names (kubeconfigs mostly name IP addresses: those are not looked up). */
#define RESOLVER_THREADS 2
/* File descriptors the process keeps for everything else (the store, the API, webhooks, logs). */
#define FDS_RESERVED 256

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

/* The buffers a running probe needs, borrowed from a pool (a target holds none between probes). */
struct handle {
        struct handle *next_free;
        struct cm_endpoint ep; /* the kubeconfig's server, split */
        struct strbuf body; /* the current answer */
        struct cm_http1_response resp; /* its parser */
        char cont[1024]; /* the node list's continue token */
        bool resolving; /* the step waits for its host name to resolve */
        uint64_t connect_start; /* monotonic; 0 when the step's connection is up (or reused) */
        unsigned retries; /* requests sent again on a new connection after a stale one (per probe) */
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
         * The target's own connection, made with its own identity (never another record's). NULL
         * between probes when it is not kept.
         */
        struct cm_conn *conn;
        size_t run_idx; /* in m->run while probing */

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
        /*
         * Event-driven: every connection's socket is in epoll (edge-triggered, registered once), and
         * fd_owner says whose it is. wake_fd (an eventfd, also in epoll) interrupts the wait for a poke,
         * the stop or a host name resolved.
         */
        int epoll_fd, wake_fd;
        struct target **fd_owner; /* by file descriptor */
        size_t n_fd_owner;
        SSL_CTX *tls_ctx; /* shared by every connection (tls.h) */
        struct cm_resolver *resolver;
        struct target **run; /* the probes running (at most cfg.concurrency) */
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

/* Takes t out of the running probes (the last one takes its place). */
static void run_remove(struct cm_monitor *m, struct target *t) {
        struct target *last = m->run[--m->running];

        m->run[t->run_idx] = last;
        last->run_idx = t->run_idx;
}

/* Gives the target's handle back to the pool (a target never holds one between probes). */
static void handle_release(struct cm_monitor *m, struct target *t) {
        struct handle *h = t->h;

        if (!h)
                return;
        /* A large node list is not kept for the next probe. */
        if (h->body.alloc > HANDLE_BODY_KEEP)
                strbuf_release(&h->body);
        else
                strbuf_reset(&h->body);
        h->next_free = m->free_handles;
        m->free_handles = h;
        t->h = NULL;
}

/*
 * Closes the target's connection (made with credentials it no longer holds, not kept, or done). Its
 * socket leaves epoll as it is closed; fd_owner forgets it, so an event of it still in the batch being
 * handled finds nobody.
 */
static void conn_drop(struct cm_monitor *m, struct target *t) {
        int fd;

        if (!t->conn)
                return;
        fd = cm_conn_fd(t->conn);
        if (fd >= 0 && (size_t) fd < m->n_fd_owner && m->fd_owner[fd] == t)
                m->fd_owner[fd] = NULL;
        t->conn = cm_conn_close(t->conn);
}

static void target_free(struct cm_monitor *m, struct target *t) {
        if (!t)
                return;
        conn_drop(m, t);
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
        target_free(m, t);
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
        conn_drop(m, t);
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

/* Borrows a handle from the pool (or makes one) for t's probe. */
static int handle_acquire(struct cm_monitor *m, struct target *t) {
        struct handle *h = m->free_handles;

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
                strbuf_init(&h->body, BODY_MAX);
                m->handles[m->n_handles++] = h;
        }
        h->cont[0] = '\0';
        h->resolving = false;
        h->connect_start = 0;
        h->retries = 0;
        t->h = h;
        return 0;
}

/* ---- one probe ---- */

/* Appends s percent-encoded as a query value (RFC 3986 unreserved characters stay). */
static int add_query_value(struct strbuf *out, const char *s) {
        static const char hex[] = "0123456789ABCDEF";

        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                int r;

                if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~')
                        r = strbuf_addch(out, (char) *p);
                else {
                        char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };

                        r = strbuf_add(out, e, sizeof(e));
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The current step's path (under the server's prefix). */
static int step_path(const struct target *t, struct strbuf *out) {
        switch (t->step) {
        case STEP_LIVEZ:
                return strbuf_addl(out, "/livez");
        case STEP_READYZ:
                return strbuf_addl(out, "/readyz?verbose");
        case STEP_VERSION:
                return strbuf_addl(out, "/version");
        case STEP_NODES: {
                int r = strbuf_addl(out, "/api/v1/nodes?limit=" NODES_PAGE);

                if (r < 0 || isempty(t->h->cont))
                        return r;
                r = strbuf_addl(out, "&continue=");
                return r < 0 ? r : add_query_value(out, t->h->cont);
        }
        case STEP_DEPLOYMENTS:
        case STEP_DAEMONSETS:
        case STEP_STATEFULSETS:
                return strbuf_addf(
                        out, "/apis/apps/v1/namespaces/kube-system/%s",
                        cm_workload_resource((enum cm_workload_kind)(t->step - STEP_DEPLOYMENTS)));
        default:
                return -EINVAL;
        }
}

/* The step's request, whole: it may carry the token (the buffer is secret: wiped when released). */
static int step_request(const struct target *t, struct strbuf *req) {
        int r;

        if ((r = strbuf_addl(req, "GET ")) < 0 || (r = strbuf_adds(req, t->h->ep.prefix)) < 0 ||
            (r = step_path(t, req)) < 0 || (r = strbuf_addl(req, " HTTP/1.1\r\nHost: ")) < 0 ||
            (r = strbuf_adds(req, t->h->ep.authority)) < 0 ||
            (r = strbuf_addl(req, "\r\nUser-Agent: clustermgmt-monitor/" CM_VERSION
                                  "\r\nAccept: application/json\r\n")) < 0)
                return r;
        if (t->kc.token && ((r = strbuf_addl(req, "Authorization: Bearer ")) < 0 ||
                            (r = strbuf_adds(req, t->kc.token)) < 0 || (r = strbuf_addl(req, "\r\n")) < 0))
                return r;
        return strbuf_addl(req, "\r\n");
}

static void probe_finish(struct cm_monitor *m, struct target *t);
static void step_done(struct cm_monitor *m, struct target *t, int rc);

static void probe_fail(struct cm_monitor *m, struct target *t, enum cm_probe_outcome outcome,
                       const char *detail) {
        t->cur->outcome = outcome;
        (void) cm_strlcpy(t->cur->detail, detail, sizeof(t->cur->detail));
        probe_finish(m, t);
}

/* Runs the target's connection as far as it goes; an answer or a failure moves the probe on. */
static void drive(struct cm_monitor *m, struct target *t) {
        int rc = cm_conn_run(t->conn);

        /* Connected, handshake included: from here only the probe's own deadline counts. */
        if (t->h->connect_start && cm_conn_established(t->conn))
                t->h->connect_start = 0;
        if (rc != 0)
                step_done(m, t, rc);
}

/* A socket for fd_owner: grows the table. 0 or -ENOMEM. */
static int fd_owner_set(struct cm_monitor *m, int fd, struct target *t) {
        if ((size_t) fd >= m->n_fd_owner) {
                size_t n = MAX((size_t) fd + 1, m->n_fd_owner * 2);
                struct target **more = reallocarray(m->fd_owner, n, sizeof(*more));

                if (!more)
                        return -ENOMEM;
                memset(more + m->n_fd_owner, 0, (n - m->n_fd_owner) * sizeof(*more));
                m->fd_owner = more;
                m->n_fd_owner = n;
        }
        m->fd_owner[fd] = t;
        return 0;
}

/* Opens the step's connection. 1: open; 0: waits for the host name; <0: the probe ended. */
static int conn_start(struct cm_monitor *m, struct target *t) {
        struct sockaddr_storage addr;
        socklen_t addr_len = 0;
        char err[CM_PROBE_TEXT_MAX] = "", detail[CM_PROBE_TEXT_MAX];
        const char *name = t->kc.tls_server_name ? t->kc.tls_server_name : t->h->ep.host;
        int r, fd;

        if (t->h->connect_start == 0)
                t->h->connect_start = cm_mono_usec();
        r = cm_resolver_lookup(m->resolver, t->h->ep.host, t->h->ep.port, &addr, &addr_len, err,
                               sizeof(err));
        t->h->resolving = r == -EAGAIN;
        if (r == -EAGAIN)
                return 0;
        if (r < 0) {
                if (err[0] == '\0')
                        (void) cm_snprintf(detail, sizeof(detail), "could not resolve %s: %s", t->h->ep.host,
                                           strerror(-r));
                else
                        (void) cm_snprintf(detail, sizeof(detail), "could not resolve %s", err);
                probe_fail(m, t, r == -ENOMEM ? CM_PROBE_ERROR : CM_PROBE_UNREACHABLE, detail);
                return -EIO;
        }
        r = cm_conn_open(m->tls_ctx, t->tls, name, (const struct sockaddr *) &addr, addr_len, t->keep,
                         &t->conn);
        if (r < 0) {
                (void) cm_snprintf(detail, sizeof(detail), "could not connect to %s: %s", t->h->ep.authority,
                                   strerror(-r));
                probe_fail(m, t, r == -ENOMEM ? CM_PROBE_ERROR : CM_PROBE_UNREACHABLE, detail);
                return -EIO;
        }
        fd = cm_conn_fd(t->conn);
        if (fd_owner_set(m, fd, t) < 0 ||
            epoll_ctl(m->epoll_fd, EPOLL_CTL_ADD, fd,
                      &(struct epoll_event){ .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                             .data.fd = fd }) < 0) {
                conn_drop(m, t);
                probe_fail(m, t, CM_PROBE_ERROR, "could not watch a connection");
                return -EIO;
        }
        return 1;
}

/* Starts the current step's request; on failure ends the probe with an error outcome. */
static void step_start(struct cm_monitor *m, struct target *t) {
        _cleanup_strbuf_ struct strbuf req = { .cap = 64 * 1024, .secret = true }; /* may hold the token */
        uint64_t now = cm_mono_usec(),
                 deadline = t->probe_start + (uint64_t) m->cfg.timeout_ms * USEC_PER_MSEC;
        int r;

        if (now >= deadline) {
                char detail[CM_PROBE_TEXT_MAX];

                (void) cm_snprintf(detail, sizeof(detail), "the probe took longer than %u ms",
                                   m->cfg.timeout_ms);
                probe_fail(m, t, CM_PROBE_UNREACHABLE, detail);
                return;
        }
        /* One that cannot carry another request (the server closes it, or it failed) is not used. */
        if (t->conn && !cm_conn_reusable(t->conn))
                conn_drop(m, t);
        if (!t->conn) {
                r = conn_start(m, t);
                if (r <= 0)
                        return;
        }
        t->h->body.cap = t->step == STEP_NODES ? NODES_BODY_MAX : BODY_MAX;
        r = step_request(t, &req);
        if (r >= 0)
                r = cm_conn_send(t->conn, req.buf, req.len, &t->h->body, &t->h->resp);
        if (r < 0) {
                probe_fail(m, t, CM_PROBE_ERROR,
                           r == -ENOMEM ? "out of memory" : "the API server's address is too long");
                return;
        }
        drive(m, t);
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
        t->run_idx = m->running;
        m->run[m->running++] = t;
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
                run_remove(m, t);
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
                probe_fail(m, t, CM_PROBE_ERROR, "out of memory");
                return;
        }
        if (cm_endpoint_parse(t->kc.server, &t->h->ep) < 0) {
                probe_fail(m, t, CM_PROBE_BAD_KUBECONFIG,
                           "the kubeconfig's server is not an https://host[:port][/path] URL the monitor "
                           "can use");
                return;
        }
        /* A kept connection waited since the last probe: what the server sent meanwhile is read first. */
        if (t->conn && !cm_conn_alive(t->conn))
                conn_drop(m, t);
        step_start(m, t);
}

/* The answer of the current step (rc: cm_conn_run's); moves on or ends the probe. */
static void step_done(struct cm_monitor *m, struct target *t, int rc) {
        struct cm_probe_result *res = t->cur;
        long status = 0;
        const char *what;
        int r = 0;

        what = t->step == STEP_LIVEZ     ? "/livez"
               : t->step == STEP_READYZ  ? "/readyz"
               : t->step == STEP_VERSION ? "/version"
               : t->step == STEP_NODES   ? "the node list"
                                         : "the kube-system workloads";
        if (rc < 0) {
                enum cm_conn_failure f = cm_conn_failure(t->conn);

                /* The server closed the idle connection as the request went out: once more, on a new one. */
                if (cm_conn_stale(t->conn) && t->h->retries == 0) {
                        t->h->retries++;
                        conn_drop(m, t);
                        step_start(m, t);
                        return;
                }
                res->outcome = f == CM_CONN_TLS           ? CM_PROBE_TLS_ERROR
                               : f == CM_CONN_UNREACHABLE ? CM_PROBE_UNREACHABLE
                                                          : CM_PROBE_ERROR;
                if (f == CM_CONN_TOO_LARGE)
                        (void) cm_snprintf(res->detail, sizeof(res->detail),
                                           "the answer for %s is too large", what);
                else if (f == CM_CONN_PROTOCOL)
                        (void) cm_snprintf(res->detail, sizeof(res->detail),
                                           "the answer for %s is not valid HTTP/1.1", what);
                else
                        (void) cm_snprintf(res->detail, sizeof(res->detail), "%s: %s", t->h->ep.authority,
                                           cm_conn_error(t->conn));
                probe_finish(m, t);
                return;
        }
        status = cm_conn_status(t->conn);
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
        /* Kept for the next probe only when it is one of the kept and can carry more requests. */
        if (t->conn && !(t->keep && cm_conn_reusable(t->conn)))
                conn_drop(m, t);
        cm_tls_identity_take_handshakes(t->tls, &hs_full, &hs_resumed);
        run_remove(m, t);
        t->busy = false;
        res->time_usec = cm_now_usec();
        res->latency_usec = now - t->probe_start;
        /* The serving certificate's expiry, from the last full handshake (resumed ones carry none). */
        if (res->outcome == CM_PROBE_OK)
                res->cert_not_after = cm_tls_identity_cert_not_after(t->tls);
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
                                target_free(m, t);
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
                        target_free(m, t);
        }
        m->n_targets = kept;
        /*
         * Idle connections are kept for the next probe of the first keep_alive_max targets (by id): each
         * costs a socket and some KB of OpenSSL's. The others' probes open a connection (resuming the
         * cluster's TLS session), their requests share it, and it is closed when the probe ends.
         */
        for (size_t i = 0; i < m->n_targets; i++) {
                struct target *t = m->targets[i];

                /* One that stops being kept lets go of its connection when its next probe ends. */
                t->keep = i < m->cfg.keep_alive_max;
        }
        pthread_mutex_unlock(&m->lock);
}

/* ---- the loop ---- */

/*
 * What is due among the running probes: those past their deadline (or still connecting past the
 * connect timeout) fail, those waiting for a host name try again when resolved is set. Returns how
 * long until the next deadline (at most max_wait).
 */
static uint64_t check_running(struct cm_monitor *m, bool resolved, uint64_t max_wait) {
        uint64_t wait = max_wait, now = cm_mono_usec(),
                 timeout = (uint64_t) m->cfg.timeout_ms * USEC_PER_MSEC,
                 connect_timeout = MIN(timeout, CONNECT_TIMEOUT_USEC);

        /* Downwards: a probe that ends takes the last one's place, which was checked already. */
        for (size_t i = m->running; i-- > 0;) {
                struct target *t = m->run[i];
                uint64_t deadline = t->probe_start + timeout;
                char detail[CM_PROBE_TEXT_MAX];

                if (!t->h)
                        continue;
                if (t->h->connect_start)
                        deadline = MIN(deadline, t->h->connect_start + connect_timeout);
                if (now >= deadline) {
                        if (t->h->connect_start && now - t->h->connect_start >= connect_timeout)
                                (void) cm_snprintf(
                                        detail, sizeof(detail), "could not connect to %s within %u ms%s",
                                        t->h->ep.authority, (unsigned) (connect_timeout / USEC_PER_MSEC),
                                        t->h->resolving ? " (its name did not resolve in time)" : "");
                        else
                                (void) cm_snprintf(detail, sizeof(detail),
                                                   "the probe took longer than %u ms", m->cfg.timeout_ms);
                        conn_drop(m, t);
                        probe_fail(m, t, CM_PROBE_UNREACHABLE, detail);
                        continue;
                }
                if (resolved && t->h->resolving) {
                        step_start(m, t);
                        if (t->busy && t->h && t->h->resolving)
                                wait = MIN(wait, deadline - now);
                        continue;
                }
                wait = MIN(wait, deadline - now);
        }
        return wait;
}

static void wake(struct cm_monitor *m) {
        uint64_t one = 1;

        if (m->wake_fd >= 0 && write(m->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
                log_debug_errno(-errno, "monitor: wake the prober: %m");
}

/* An event of a socket: the running probe whose it is goes on; an idle one the server closed goes. */
static void socket_event(struct cm_monitor *m, int fd, uint32_t events) {
        struct target *t = (size_t) fd < m->n_fd_owner ? m->fd_owner[fd] : NULL;

        if (!t || !t->conn || cm_conn_fd(t->conn) != fd)
                return;
        if (t->busy && t->h && !t->h->resolving) {
                drive(m, t);
                return;
        }
        /* Idle and kept: anything but a session ticket means it is over. */
        if ((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) || !cm_conn_alive(t->conn))
                conn_drop(m, t);
}

static void *monitor_main(void *userdata) {
        struct cm_monitor *m = userdata;
        struct epoll_event evs[64];

        (void) pthread_setname_np(pthread_self(), "cm-monitor");
        while (!atomic_load(&m->stopping)) {
                uint64_t now, wait = 1000 * USEC_PER_MSEC;
                bool woken = false;
                int n;

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
                wait = check_running(m, false, wait);

                /* Round up: waking a little early would only loop. */
                n = epoll_wait(m->epoll_fd, evs, (int) ELEMENTSOF(evs),
                               (int) ((wait + USEC_PER_MSEC - 1) / USEC_PER_MSEC));
                if (n < 0 && errno != EINTR) {
                        log_warning_errno(-errno, "monitor: wait for sockets: %m");
                        n = 0;
                }
                for (int i = 0; i < n; i++) {
                        int fd = evs[i].data.fd;

                        if (fd == m->wake_fd) {
                                uint64_t v;

                                /* Resets the eventfd; nothing to do when another wake-up got there first. */
                                if (read(m->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                                        log_debug_errno(-errno, "monitor: read the wake-up: %m");
                                woken = true;
                                continue;
                        }
                        socket_event(m, fd, evs[i].events);
                }
                /* A wake-up may be a host name resolved: the probes waiting for one go on. */
                if (woken)
                        (void) check_running(m, true, 0);
        }
        return NULL;
}

/*
 * Every kept connection and every running probe holds a socket: the soft limit of open files is raised
 * towards the hard one for them, and the connections kept are bounded by what it allows.
 */
static unsigned fds_for_connections(unsigned want) {
        struct rlimit rl;
        rlim_t need = (rlim_t) want + FDS_RESERVED;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return want;
        if (rl.rlim_cur < need && rl.rlim_cur != RLIM_INFINITY) {
                struct rlimit more = { .rlim_cur = MIN(need, rl.rlim_max), .rlim_max = rl.rlim_max };

                if (setrlimit(RLIMIT_NOFILE, &more) == 0)
                        rl.rlim_cur = more.rlim_cur;
        }
        if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
                return want;
        return rl.rlim_cur > FDS_RESERVED ? (unsigned) (rl.rlim_cur - FDS_RESERVED) : 0;
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
        {
                unsigned allowed = fds_for_connections(m->cfg.keep_alive_max + m->cfg.concurrency);

                if (allowed < m->cfg.keep_alive_max + m->cfg.concurrency) {
                        unsigned keep = allowed > m->cfg.concurrency ? allowed - m->cfg.concurrency : 0;

                        log_warning("monitor: the limit of open files allows %u kept connections, not %u "
                                    "(raise the hard limit, RLIMIT_NOFILE, to keep more)",
                                    keep, m->cfg.keep_alive_max);
                        m->cfg.keep_alive_max = keep;
                }
        }
        m->run = new0(struct target *, m->cfg.concurrency);
        m->tls_ctx = cm_tls_client_ctx_new();
        if (!m->run || !m->tls_ctx) {
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
        r = cm_resolver_new(RESOLVER_THREADS, m->wake_fd, &m->resolver);
        if (r < 0) {
                cm_monitor_stop(m);
                return r;
        }
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
        /* Before the targets: no lookup finishes (and writes wake_fd) any more. */
        cm_resolver_free(m->resolver);
        for (size_t i = 0; i < m->n_targets; i++) {
                struct target *t = m->targets[i];

                handle_release(m, t);
                target_free(m, t);
        }
        free(m->targets);
        free(m->heap);
        free(m->run);
        free(m->fd_owner);
        for (size_t i = 0; i < m->n_handles; i++) {
                strbuf_release(&m->handles[i]->body);
                free(m->handles[i]);
        }
        free(m->handles);
        SSL_CTX_free(m->tls_ctx);
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
