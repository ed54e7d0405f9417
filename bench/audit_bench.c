/* SPDX-License-Identifier: Apache-2.0 */
/*
 * make bench, audit section: appends to the hash-chained audit log of a SQLite store (a fresh file in
 * --dir, on the volume under test), from --threads threads at once as request threads do, and reports
 * records per second; then the verification of the whole chain (records per second read, hashed and
 * checked). Each append is its own durable write (group commit batches concurrent ones). Prints one
 * JSON object. Target: at least 10,000 appends per second.
 *
 *   audit-bench --dir DIR [--records N] [--threads T]
 */
#include "base/common.h"

#include <getopt.h>
#include <pthread.h>

#include "base/parse.h"
#include "base/util.h"
#include "store/store.h"

struct worker {
        struct cm_store *store;
        unsigned count, index;
        int result;
};

static void *append_main(void *userdata) {
        struct worker *w = userdata;

        for (unsigned i = 0; i < w->count && w->result >= 0; i++) {
                char rid[32], res[64];
                struct cm_audit_record a = {
                        .ts_usec = cm_now_usec(),
                        .principal = CM_UNCONST(char *, "apikey:key_bench"),
                        .source = CM_UNCONST(char *, "127.0.0.1"),
                        .request_id = rid,
                        .action = CM_UNCONST(char *, "POST /v1/environments/{env}/clusters"),
                        .resource = res,
                        .outcome = CM_UNCONST(char *, "committed"),
                };

                (void) cm_snprintf(rid, sizeof(rid), "req-%u-%u", w->index, i);
                (void) cm_snprintf(res, sizeof(res), "/v1/environments/bench/clusters/c%u", i);
                w->result = STORE_CALL(w->store, audit_append, &a);
                a.request_id = a.resource = a.principal = a.source = a.action = a.outcome = NULL;
                cm_audit_record_done(&a);
        }
        return NULL;
}

int main(int argc, char *argv[]) {
        static const struct option longopts[] = {
                { "dir", required_argument, NULL, 'd' },
                { "records", required_argument, NULL, 'n' },
                { "threads", required_argument, NULL, 't' },
                {},
        };
        const char *dir = NULL;
        unsigned records = 20000, threads = 8;
        struct worker w[64];
        pthread_t th[64];
        struct cm_store *store = NULL;
        char url[PATH_MAX + 32],
                prev[65] = "0000000000000000000000000000000000000000000000000000000000000000", h[65];
        uint64_t t0, t1, checked = 0;
        int64_t after = 0;
        int c, r;

        while ((c = getopt_long(argc, argv, "", longopts, NULL)) >= 0) {
                if (c == 'd')
                        dir = optarg;
                else if ((c == 'n' && safe_atou(optarg, &records) < 0) ||
                         (c == 't' && safe_atou(optarg, &threads) < 0) || (c != 'n' && c != 't'))
                        return 2;
        }
        if (!dir || threads < 1 || threads > ELEMENTSOF(w) || records < threads)
                return 2;
        if (cm_snprintf(url, sizeof(url), "sqlite://%s/audit-bench.db", dir) < 0)
                return 2;
        r = cm_store_open(url, &store);
        if (r >= 0)
                r = STORE_CALL(store, migrate);
        if (r < 0) {
                fprintf(stderr, "audit-bench: open %s: %s\n", url, strerror(-r));
                return 1;
        }
        t0 = cm_mono_usec();
        for (unsigned i = 0; i < threads; i++) {
                w[i] = (struct worker){ .store = store, .count = records / threads, .index = i };
                if (pthread_create(&th[i], NULL, append_main, &w[i]) != 0)
                        return 1;
        }
        for (unsigned i = 0; i < threads; i++) {
                (void) pthread_join(th[i], NULL);
                if (w[i].result < 0) {
                        fprintf(stderr, "audit-bench: append: %s\n", strerror(-w[i].result));
                        return 1;
                }
        }
        t1 = cm_mono_usec();
        printf("{\"records\":%u,\"threads\":%u,\"append_per_sec\":%.0f", records / threads * threads,
               threads, (double) (records / threads * threads) / ((double) (t1 - t0) / 1e6));

        t0 = cm_mono_usec();
        for (;;) {
                struct cm_audit_record *a = NULL;
                size_t n = 0;

                r = STORE_CALL(store, audit_list, after, 1000, &a, &n);
                if (r < 0)
                        return 1;
                for (size_t i = 0; i < n; i++) {
                        cm_audit_hash(&a[i], prev, h);
                        if (!streq(h, a[i].hash) || !streq(prev, a[i].prev_hash)) {
                                fprintf(stderr, "audit-bench: chain broken at %" PRIi64 "\n", a[i].seq);
                                return 1;
                        }
                        memcpy(prev, h, sizeof(prev));
                        after = a[i].seq;
                        checked++;
                }
                cm_audit_array_free(a, n);
                if (n < 1000)
                        break;
        }
        t1 = cm_mono_usec();
        printf(",\"verified\":%" PRIu64 ",\"verify_per_sec\":%.0f,\"target_append_per_sec\":10000}\n",
               checked, (double) checked / ((double) (t1 - t0) / 1e6));
        cm_store_close(store);
        return 0;
}
