/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The monitor benchmark's baseline: the requests of the service's health probes and nothing else. One
 * thread, one libcurl multi handle, one easy handle per record with the record's own client
 * certificate and CA, so each record has its own TLS connection, kept alive between probes. A probe is
 * the same sequence of GETs: /livez, /readyz?verbose, /version, /api/v1/nodes?limit=500 and the
 * kube-system deployments, daemonsets and statefulsets. Bodies are counted and dropped (no decoding,
 * no conditions, no store). Records are first due at a random point of the interval and then every
 * interval after a probe ends (interval - 10% + up to 20% jitter, as the monitor), at most
 * --concurrency probes at once.
 *
 * The libcurl options are the monitor's (HTTP/1.1, TLS 1.2 or later, peer and host verified, blobs,
 * no DNS cache, no TLS session cache). Kept-alive connections live in connection caches of at most
 * GROUP records each (a share object per group): libcurl 7.88 walks the whole cache of a transfer
 * whenever the transfer's handle leaves the multi handle, which with one cache of 10,000 connections
 * costs more than the requests. That is the cheapest way to keep every connection, hence the floor.
 *
 *   bare-prober --records FILE [--limit N] [--interval-seconds 30] [--concurrency 256]
 *               [--timeout-ms 10000]
 *
 * FILE holds one JSON object per line with "server" (https://host:port), "ca", "cert" and "key" (PEM).
 * Every second one JSON line goes to stdout: probes finished, records probed at least once, failed
 * probes, the probe duration histogram (same buckets as clustermgmt_probe_duration_seconds) and the
 * bytes received. Runs until SIGTERM or SIGINT.
 */
#include "base/common.h"

#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>

#include "base/parse.h"
#include "base/strbuf.h"
#include "base/util.h"

static const double buckets[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };
static const char *const steps[] = {
        "/livez",
        "/readyz?verbose",
        "/version",
        "/api/v1/nodes?limit=500",
        "/apis/apps/v1/namespaces/kube-system/deployments",
        "/apis/apps/v1/namespaces/kube-system/daemonsets",
        "/apis/apps/v1/namespaces/kube-system/statefulsets",
};

/* Records per connection cache. */
#define GROUP 256

struct record {
        char *server, *ca, *cert, *key;
        CURL *easy;
        unsigned step;
        bool probed;
        uint64_t due, start;
        size_t heap_idx;
};

struct prober {
        struct record *rec;
        size_t n;
        struct record **heap;
        size_t n_heap;
        CURLM *multi;
        CURLSH **shares; /* one per GROUP records */
        struct curl_slist *headers;
        unsigned interval_sec, concurrency, timeout_ms, running;
        uint64_t hist[ELEMENTSOF(buckets) + 1], probes, probed, failed, bytes;
        double sum;
        char last_error[256];
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
        stop_requested = sig;
}

static uint64_t random_below(uint64_t span) {
        uint64_t r = 0;

        if (span == 0 || cm_random_bytes(&r, sizeof(r)) < 0)
                return 0;
        return r % span;
}

static void heap_swap(struct prober *pr, size_t a, size_t b) {
        struct record *t = pr->heap[a];

        pr->heap[a] = pr->heap[b];
        pr->heap[b] = t;
        pr->heap[a]->heap_idx = a;
        pr->heap[b]->heap_idx = b;
}

static void heap_push(struct prober *pr, struct record *r) {
        size_t i = pr->n_heap++;

        pr->heap[i] = r;
        r->heap_idx = i;
        while (i > 0 && pr->heap[i]->due < pr->heap[(i - 1) / 2]->due) {
                heap_swap(pr, i, (i - 1) / 2);
                i = (i - 1) / 2;
        }
}

static struct record *heap_pop(struct prober *pr) {
        struct record *top = pr->heap[0];
        size_t i = 0;

        pr->heap[0] = pr->heap[--pr->n_heap];
        pr->heap[0]->heap_idx = 0;
        for (;;) {
                size_t l = 2 * i + 1, r = l + 1, s = i;

                if (l < pr->n_heap && pr->heap[l]->due < pr->heap[s]->due)
                        s = l;
                if (r < pr->n_heap && pr->heap[r]->due < pr->heap[s]->due)
                        s = r;
                if (s == i)
                        break;
                heap_swap(pr, i, s);
                i = s;
        }
        top->heap_idx = SIZE_MAX;
        return top;
}

static size_t count_body(char *ptr, size_t size, size_t nmemb, void *userdata) {
        struct prober *pr = userdata;

        pr->bytes += size * nmemb;
        return size * nmemb;
}

static int record_handle(struct prober *pr, struct record *r) {
        struct curl_blob ca = { .data = r->ca, .len = strlen(r->ca), .flags = CURL_BLOB_NOCOPY };
        struct curl_blob cert = { .data = r->cert, .len = strlen(r->cert), .flags = CURL_BLOB_NOCOPY };
        struct curl_blob key = { .data = r->key, .len = strlen(r->key), .flags = CURL_BLOB_NOCOPY };
        size_t g = (size_t) (r - pr->rec) / GROUP;
        CURL *e;

        if (!pr->shares[g]) {
                pr->shares[g] = curl_share_init();
                if (!pr->shares[g] ||
                    curl_share_setopt(pr->shares[g], CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK)
                        return -ENOMEM;
        }
        e = curl_easy_init();
        if (!e)
                return -ENOMEM;
        (void) curl_easy_setopt(e, CURLOPT_SHARE, pr->shares[g]);
        (void) curl_easy_setopt(e, CURLOPT_PRIVATE, r);
        (void) curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        (void) curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
        (void) curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
        (void) curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
        (void) curl_easy_setopt(e, CURLOPT_HTTPHEADER, pr->headers);
        (void) curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, count_body);
        (void) curl_easy_setopt(e, CURLOPT_WRITEDATA, pr);
        (void) curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) MIN(pr->timeout_ms, 5000u));
        (void) curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &ca);
        (void) curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
        (void) curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
        (void) curl_easy_setopt(e, CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_2);
        (void) curl_easy_setopt(e, CURLOPT_DNS_CACHE_TIMEOUT, 0L);
        (void) curl_easy_setopt(e, CURLOPT_SSL_SESSIONID_CACHE, 0L);
        (void) curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &cert);
        (void) curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
        (void) curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &key);
        (void) curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
        r->easy = e;
        return 0;
}

static void probe_end(struct prober *pr, struct record *r, bool ok) {
        uint64_t now = cm_mono_usec(), interval = (uint64_t) pr->interval_sec * USEC_PER_SEC;
        double s = (double) (now - r->start) / 1e6;
        size_t i = 0;

        pr->running--;
        while (i < ELEMENTSOF(buckets) && s > buckets[i])
                i++;
        pr->hist[i]++;
        pr->sum += s;
        pr->probes++;
        if (!r->probed) {
                r->probed = true;
                pr->probed++;
        }
        if (!ok)
                pr->failed++;
        r->due = now + (ok ? interval - interval / 10 + random_below(interval / 5 + 1) : interval);
        heap_push(pr, r);
}

/* Starts the record's current step; false when the request could not be started. */
static bool step_start(struct prober *pr, struct record *r) {
        char url[1024];
        uint64_t now = cm_mono_usec(), deadline = r->start + (uint64_t) pr->timeout_ms * USEC_PER_MSEC;

        if (now >= deadline || cm_snprintf(url, sizeof(url), "%s%s", r->server, steps[r->step]) < 0)
                return false;
        (void) curl_easy_setopt(r->easy, CURLOPT_URL, url);
        (void) curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS,
                                (long) MAX((deadline - now) / USEC_PER_MSEC, 1));
        return curl_multi_add_handle(pr->multi, r->easy) == CURLM_OK;
}

static void step_done(struct prober *pr, struct record *r, CURLcode cc) {
        long status = 0;

        (void) curl_multi_remove_handle(pr->multi, r->easy);
        if (cc == CURLE_OK)
                (void) curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        if (cc != CURLE_OK || status != 200) {
                (void) cm_snprintf(pr->last_error, sizeof(pr->last_error), "%s%s: %s (HTTP %ld)", r->server,
                                   steps[r->step], curl_easy_strerror(cc), status);
                probe_end(pr, r, false);
                return;
        }
        if (++r->step == ELEMENTSOF(steps)) {
                probe_end(pr, r, true);
                return;
        }
        if (!step_start(pr, r))
                probe_end(pr, r, false);
}

static void report(const struct prober *pr) {
        printf("{\"records\":%zu,\"probes\":%" PRIu64 ",\"probed\":%" PRIu64 ",\"failed\":%" PRIu64
               ",\"running\":%u,\"bytes\":%" PRIu64 ",\"sum\":%.6f,\"buckets\":[",
               pr->n, pr->probes, pr->probed, pr->failed, pr->running, pr->bytes, pr->sum);
        for (size_t i = 0; i <= ELEMENTSOF(buckets); i++)
                printf("%s%" PRIu64, i ? "," : "", pr->hist[i]);
        printf("],\"lastError\":");
        {
                json_t *s = json_string(pr->last_error);
                char *text = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;

                printf("%s}\n", text ?: "\"\"");
                free(text);
                json_decref(s);
        }
        fflush(stdout);
}

static char *member(const json_t *o, const char *name) {
        const char *s = json_string_value(json_object_get(o, name));

        return s ? strdup(s) : NULL;
}

static int load_records(struct prober *pr, const char *path, unsigned limit) {
        _cleanup_free_ char *line = NULL;
        size_t size = 0, alloc = 0;
        FILE *f = fopen(path, "re");

        if (!f)
                return -errno;
        while (pr->n < limit && getline(&line, &size, f) > 0) {
                json_t *o = json_loads(line, 0, NULL);
                struct record *r;

                if (pr->n == alloc) {
                        size_t na = alloc ? alloc * 2 : 1024;
                        struct record *p = reallocarray(pr->rec, na, sizeof(*p));

                        if (!p) {
                                json_decref(o);
                                fclose(f);
                                return -ENOMEM;
                        }
                        pr->rec = p;
                        alloc = na;
                }
                r = &pr->rec[pr->n];
                *r = (struct record){ .server = member(o, "server"),
                                      .ca = member(o, "ca"),
                                      .cert = member(o, "cert"),
                                      .key = member(o, "key"),
                                      .heap_idx = SIZE_MAX };
                json_decref(o);
                if (!r->server || !r->ca || !r->cert || !r->key) {
                        fprintf(stderr, "bare-prober: record %zu: server, ca, cert and key are needed\n",
                                pr->n + 1);
                        fclose(f);
                        return -EINVAL;
                }
                pr->n++;
        }
        fclose(f);
        return pr->n > 0 ? 0 : -ENODATA;
}

int main(int argc, char *argv[]) {
        static const struct option longopts[] = {
                { "records", required_argument, NULL, 'r' },
                { "limit", required_argument, NULL, 'n' },
                { "interval-seconds", required_argument, NULL, 'i' },
                { "concurrency", required_argument, NULL, 'c' },
                { "timeout-ms", required_argument, NULL, 't' },
                {},
        };
        struct prober pr = { .interval_sec = 30, .concurrency = 256, .timeout_ms = 10000 };
        const char *records = NULL;
        unsigned limit = UINT_MAX;
        uint64_t next_report;
        int c, r;

        while ((c = getopt_long(argc, argv, "", longopts, NULL)) >= 0) {
                unsigned *dst = c == 'n'   ? &limit
                                : c == 'i' ? &pr.interval_sec
                                : c == 'c' ? &pr.concurrency
                                           : &pr.timeout_ms;

                if (c == 'r') {
                        records = optarg;
                        continue;
                }
                if ((c != 'n' && c != 'i' && c != 'c' && c != 't') || safe_atou(optarg, dst) < 0 ||
                    *dst == 0)
                        return 2;
        }
        if (!records) {
                fprintf(stderr, "usage: bare-prober --records FILE [--limit N] [--interval-seconds S] "
                                "[--concurrency N] [--timeout-ms MS]\n");
                return 2;
        }
        r = load_records(&pr, records, limit);
        if (r >= 0 && pr.n == 0)
                r = -ENODATA;
        if (r < 0) {
                fprintf(stderr, "bare-prober: %s: %s\n", records, strerror(-r));
                return 1;
        }
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return 1;
        pr.multi = curl_multi_init();
        pr.heap = new0(struct record *, pr.n);
        pr.shares = new0(CURLSH *, pr.n / GROUP + 1);
        if (!pr.multi || !pr.heap || !pr.shares)
                return 1;
        pr.headers = curl_slist_append(NULL, "Accept: application/json");
        pr.headers = curl_slist_append(pr.headers, "User-Agent: bare-prober");
        if (!pr.headers)
                return 1;
        /* Every record keeps its connection between probes. */
        (void) curl_multi_setopt(pr.multi, CURLMOPT_MAXCONNECTS, (long) (pr.n + pr.concurrency + 16));
        {
                uint64_t now = cm_mono_usec();

                for (size_t i = 0; i < pr.n; i++) {
                        if (record_handle(&pr, &pr.rec[i]) < 0)
                                return 1;
                        pr.rec[i].due = now + random_below((uint64_t) pr.interval_sec * USEC_PER_SEC);
                        heap_push(&pr, &pr.rec[i]);
                }
        }
        signal(SIGPIPE, SIG_IGN);
        signal(SIGTERM, on_signal);
        signal(SIGINT, on_signal);
        next_report = cm_mono_usec() + USEC_PER_SEC;
        while (!stop_requested) {
                uint64_t now = cm_mono_usec();
                int still = 0, left, timeout_ms = 1000;
                CURLMsg *msg;

                while (pr.n_heap > 0 && pr.running < pr.concurrency) {
                        struct record *rec = pr.heap[0];

                        if (!rec || rec->due > now)
                                break;
                        (void) heap_pop(&pr);
                        pr.running++;
                        rec->step = 0;
                        rec->start = now;
                        if (!step_start(&pr, rec))
                                probe_end(&pr, rec, false);
                }
                if (pr.n_heap > 0 && pr.running < pr.concurrency)
                        timeout_ms = (int) MIN(
                                (pr.heap[0]->due > now ? pr.heap[0]->due - now : 0) / USEC_PER_MSEC + 1,
                                1000);
                (void) curl_multi_perform(pr.multi, &still);
                while ((msg = curl_multi_info_read(pr.multi, &left))) {
                        struct record *rec = NULL;

                        if (msg->msg != CURLMSG_DONE)
                                continue;
                        (void) curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &rec);
                        if (rec)
                                step_done(&pr, rec, msg->data.result);
                }
                if (now >= next_report) {
                        report(&pr);
                        next_report = now + USEC_PER_SEC;
                }
                (void) curl_multi_poll(pr.multi, NULL, 0, MIN(timeout_ms, 1000), NULL);
        }
        report(&pr);
        for (size_t i = 0; i < pr.n; i++) {
                if (pr.rec[i].heap_idx == SIZE_MAX && pr.rec[i].easy)
                        (void) curl_multi_remove_handle(pr.multi, pr.rec[i].easy);
                curl_easy_cleanup(pr.rec[i].easy);
                free(pr.rec[i].server);
                free(pr.rec[i].ca);
                free(pr.rec[i].cert);
                free(pr.rec[i].key);
        }
        curl_multi_cleanup(pr.multi);
        for (size_t g = 0; g <= pr.n / GROUP; g++)
                if (pr.shares[g])
                        (void) curl_share_cleanup(pr.shares[g]);
        free(pr.shares);
        curl_slist_free_all(pr.headers);
        free(pr.rec);
        free(pr.heap);
        curl_global_cleanup();
        return 0;
}
