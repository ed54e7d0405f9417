/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "base/util.h"
#include "monitor/monitor.h"
#include "monitor/webhooks.h"
#include "server/server_internal.h"

const int cm_metric_codes[CM_METRIC_CODES] = { 200, 201, 202, 204, 304, 400, 401, 403, 404, 405,
                                               409, 412, 413, 415, 422, 429, 500, 501, 503, 0 };
const double cm_metric_bounds[CM_METRIC_BUCKETS] = { 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                     0.025,  0.05,  0.1,    0.5,   1.0 };

void cm_metrics_observe(struct cm_server *s, const struct cm_route *route, int status, uint64_t usec,
                        bool count_duration) {
        struct cm_route_metrics *m = &s->route_metrics[route ? cm_route_index(route) : cm_routes_count];
        size_t ci = CM_METRIC_CODES - 1;

        for (size_t i = 0; i < CM_METRIC_CODES - 1; i++)
                if (cm_metric_codes[i] == status) {
                        ci = i;
                        break;
                }
        atomic_fetch_add_explicit(&m->count[ci], 1, memory_order_relaxed);
        if (!count_duration)
                return;
        for (size_t b = 0; b < CM_METRIC_BUCKETS; b++)
                if ((double) usec / 1e6 <= cm_metric_bounds[b]) {
                        atomic_fetch_add_explicit(&m->buckets[b], 1, memory_order_relaxed);
                        break;
                }
        atomic_fetch_add_explicit(&m->duration_usec_sum, usec, memory_order_relaxed);
        atomic_fetch_add_explicit(&m->duration_count, 1, memory_order_relaxed);
}

static int render_http(struct cm_server *s, struct strbuf *out) {
        int r;

        r = strbuf_adds(out,
                        "# HELP clustermgmt_http_requests_total HTTP requests answered, by route, method "
                        "and status code.\n# TYPE clustermgmt_http_requests_total counter\n");
        if (r < 0)
                return r;
        for (size_t i = 0; i <= cm_routes_count; i++) {
                const char *pattern = i < cm_routes_count ? cm_routes[i].pattern : "unmatched";
                const char *method = i < cm_routes_count ? cm_routes[i].method : "any";

                for (size_t c = 0; c < CM_METRIC_CODES; c++) {
                        uint64_t v =
                                atomic_load_explicit(&s->route_metrics[i].count[c], memory_order_relaxed);
                        char code[8];

                        if (v == 0)
                                continue;
                        if (cm_metric_codes[c])
                                (void) cm_snprintf(code, sizeof(code), "%d", cm_metric_codes[c]);
                        else
                                (void) cm_strlcpy(code, "other", sizeof(code));
                        r = strbuf_addf(
                                out,
                                "clustermgmt_http_requests_total{route=\"%s\",method=\"%s\",code=\"%s\"} "
                                "%" PRIu64 "\n",
                                pattern, method, code, v);
                        if (r < 0)
                                return r;
                }
        }
        r = strbuf_adds(out, "# HELP clustermgmt_http_request_duration_seconds Time to answer, by route.\n"
                             "# TYPE clustermgmt_http_request_duration_seconds histogram\n");
        if (r < 0)
                return r;
        for (size_t i = 0; i < cm_routes_count; i++) {
                struct cm_route_metrics *m = &s->route_metrics[i];
                uint64_t cum = 0, count = atomic_load(&m->duration_count);

                if (count == 0)
                        continue;
                for (size_t b = 0; b < CM_METRIC_BUCKETS; b++) {
                        cum += atomic_load(&m->buckets[b]);
                        r = strbuf_addf(out,
                                        "clustermgmt_http_request_duration_seconds_bucket{route=\"%s\","
                                        "method=\"%s\","
                                        "le=\"%g\"} %" PRIu64 "\n",
                                        cm_routes[i].pattern, cm_routes[i].method, cm_metric_bounds[b], cum);
                        if (r < 0)
                                return r;
                }
                r = strbuf_addf(
                        out,
                        "clustermgmt_http_request_duration_seconds_bucket{route=\"%s\",method=\"%s\",le=\"+"
                        "Inf\"} "
                        "%" PRIu64 "\n"
                        "clustermgmt_http_request_duration_seconds_sum{route=\"%s\",method=\"%s\"} %.6f\n"
                        "clustermgmt_http_request_duration_seconds_count{route=\"%s\",method=\"%s\"} "
                        "%" PRIu64 "\n",
                        cm_routes[i].pattern, cm_routes[i].method, count, cm_routes[i].pattern,
                        cm_routes[i].method, (double) atomic_load(&m->duration_usec_sum) / 1e6,
                        cm_routes[i].pattern, cm_routes[i].method, count);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Requests and connections refused by a limit, by reason (every reason, zeros too). */
static int render_limits(struct cm_server *s, struct strbuf *out) {
        int r;

        r = strbuf_adds(out, "# HELP clustermgmt_http_limited_total Requests and connections refused by a "
                             "limit, by reason.\n# TYPE clustermgmt_http_limited_total counter\n");
        for (int i = 0; r >= 0 && i < _CM_LIMIT_REASON_MAX; i++)
                r = strbuf_addf(out, "clustermgmt_http_limited_total{reason=\"%s\"} %" PRIu64 "\n",
                                cm_limit_reason_to_string((enum cm_limit_reason) i),
                                cm_limits_count(s->limits, (enum cm_limit_reason) i));
        return r;
}

int cm_metrics_render(struct cm_server *s, struct strbuf *out) {
        struct cm_op_stats st = {};
        int r;

        r = strbuf_addf(out,
                        "# HELP clustermgmt_build_info Version and commit of the running binary.\n"
                        "# TYPE clustermgmt_build_info gauge\n"
                        "clustermgmt_build_info{version=\"%s\",commit=\"%s\"} 1\n",
                        CM_VERSION, CM_COMMIT);
        if (r < 0)
                return r;
        r = render_http(s, out);
        if (r < 0)
                return r;
        r = render_limits(s, out);
        if (r < 0)
                return r;
        r = STORE_CALL(s->svc->store, op_stats, cm_now_usec(), &st);
        if (r < 0)
                return r;
        r = strbuf_adds(out, "# HELP clustermgmt_operations Operations in the store, by type and state.\n"
                             "# TYPE clustermgmt_operations gauge\n");
        if (r < 0)
                return r;
        for (int t = 0; t < _CM_OP_TYPE_MAX; t++)
                for (int k = 0; k < _CM_OP_STATE_MAX; k++) {
                        r = strbuf_addf(out,
                                        "clustermgmt_operations{type=\"%s\",state=\"%s\"} %" PRIu64 "\n",
                                        cm_op_type_to_string((enum cm_op_type) t),
                                        cm_op_state_to_string((enum cm_op_state) k), st.count[t][k]);
                        if (r < 0)
                                return r;
                }
        r = strbuf_addf(out,
                        "# HELP clustermgmt_operation_queue_depth Pending operations due to run now.\n"
                        "# TYPE clustermgmt_operation_queue_depth gauge\n"
                        "clustermgmt_operation_queue_depth %" PRIu64 "\n",
                        st.queue_depth);
        if (r < 0)
                return r;
        /* Health monitoring and webhook delivery (each appends nothing when it is off). */
        r = cm_monitor_metrics(s->svc->monitor, out);
        if (r < 0)
                return r;
        return cm_webhooks_metrics(s->svc->webhooks, out);
}
