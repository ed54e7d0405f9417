/* SPDX-License-Identifier: Apache-2.0 */
/* The health conditions of a cluster computed from one probe of its API server. */
#include "base/common.h"

#include <jansson.h>

#include "monitor/health.h"

#define ELLIPSIS "\xe2\x80\xa6"
#define SEC_PER_DAY INT64_C(86400)

/* A text field of struct cm_probe_result for "%.*s": bounded by its array even when not terminated. */
#define FIELD(f) (int) strnlen((f), sizeof(f)), (f)

static const char *const cond_types[_CM_HEALTH_COND_MAX] = {
        [CM_COND_API_SERVER_AVAILABLE] = "APIServerAvailable",
        [CM_COND_NODES_READY] = "NodesReady",
        [CM_COND_SYSTEM_WORKLOADS_HEALTHY] = "SystemWorkloadsHealthy",
        [CM_COND_CERTIFICATES_VALID] = "CertificatesValid",
        [CM_COND_HEALTHY] = "Healthy",
};

const char *cm_health_cond_type(enum cm_health_cond c) {
        if ((unsigned) c >= _CM_HEALTH_COND_MAX)
                return NULL;
        return cond_types[c];
}

/* ---- text ------------------------------------------------------------------------------------ */

/*
 * Copies the text src into dst (size bytes), each invalid or control character replaced by '?'. Text
 * that does not fit is cut at a character and ends with an ellipsis.
 */
static void text_fit(char *dst, size_t size, const char *src) {
        const unsigned char *s = (const unsigned char *) src;
        size_t n = strlen(src), i = 0, o = 0, cut = 0, ell = strlen(ELLIPSIS);

        if (size == 0)
                return;
        while (i < n) {
                size_t k;
                bool shown = cm_monitor_char_shown(s + i, n - i, &k);
                size_t w = shown ? k : 1;

                if (o + w >= size) {
                        /* Back to the last place that leaves room for the ellipsis. */
                        if (size > ell) {
                                memcpy(dst + cut, ELLIPSIS, ell);
                                o = cut + ell;
                        }
                        break;
                }
                if (shown)
                        memcpy(dst + o, s + i, k);
                else
                        dst[o] = '?';
                o += w;
                i += k;
                if (o + ell < size)
                        cut = o;
        }
        dst[o] = 0;
}

_printf_(4, 5) static void value_set(struct cm_health_value *v, const char *status, const char *reason,
                                     const char *fmt, ...) {
        char text[2048];
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        text_fit(v->status, sizeof(v->status), status);
        text_fit(v->reason, sizeof(v->reason), reason);
        text_fit(v->message, sizeof(v->message), text);
}

/* "2027-01-01" for unix seconds (UTC); "@seconds" beyond what struct tm holds. */
static void format_day(int64_t sec, char *buf, size_t size) {
        time_t t = (time_t) sec;
        struct tm tm;

        if ((int64_t) t == sec && gmtime_r(&t, &tm) && strftime(buf, size, "%Y-%m-%d", &tm) > 0)
                return;
        (void) snprintf(buf, size, "@%" PRId64, sec);
}

/* ---- the four checks ---------------------------------------------------------------------------- */

/*
 * A failed probe at the threshold. The prober's details of Unauthorized and BadKubeconfig are
 * sentences of their own; those of the others (the TLS library's, the HTTP client's) need a lead.
 */
static void eval_failed(const struct cm_probe_result *r, unsigned failures, struct cm_health *h) {
        struct cm_health_value *v = &h->cond[CM_COND_API_SERVER_AVAILABLE];
        const char *reason = cm_probe_outcome_name(r->outcome), *sep = r->detail[0] ? ": " : "";
        char count[64] = "";

        if (!reason || r->outcome == CM_PROBE_OK)
                reason = "Error";
        if (failures > 1)
                (void) snprintf(count, sizeof(count), " (%u probes in a row)", failures);

        switch (r->outcome) {
        case CM_PROBE_UNREACHABLE:
                if (failures > 1)
                        value_set(v, "False", reason,
                                  "the API server has not answered %u probes in a row%s%.*s", failures, sep,
                                  FIELD(r->detail));
                else
                        value_set(v, "False", reason, "the API server did not answer%s%.*s", sep,
                                  FIELD(r->detail));
                break;
        case CM_PROBE_TLS_ERROR:
                value_set(v, "False", reason,
                          "the API server's certificate did not verify against the kubeconfig's CA%s%s%.*s",
                          count, sep, FIELD(r->detail));
                break;
        case CM_PROBE_UNAUTHORIZED:
                if (r->detail[0])
                        value_set(v, "False", reason, "%.*s", FIELD(r->detail));
                else
                        value_set(v, "False", reason, "the API server refused the kubeconfig's credentials");
                break;
        case CM_PROBE_BAD_KUBECONFIG:
                if (r->detail[0])
                        value_set(v, "False", reason, "%.*s", FIELD(r->detail));
                else
                        value_set(v, "False", reason, "the cluster has no usable kubeconfig");
                break;
        default:
                if (failures > 1)
                        value_set(v, "False", reason, "the probe failed %u times in a row%s%.*s", failures,
                                  sep, FIELD(r->detail));
                else
                        value_set(v, "False", reason, "the probe failed%s%.*s", sep, FIELD(r->detail));
                break;
        }
        for (int c = CM_COND_NODES_READY; c <= CM_COND_CERTIFICATES_VALID; c++)
                value_set(&h->cond[c], "Unknown", "APIServerUnavailable",
                          "not checked: the API server is not available");
}

static void eval_api(const struct cm_probe_result *r, struct cm_health_value *v) {
        bool live = r->livez_status == 0 || r->livez_status == 200, ready = r->readyz_status == 200;
        char livez[64] = "", readyz[CM_PROBE_TEXT_MAX + 96] = "";

        if (live && ready) {
                if (r->version[0])
                        value_set(v, "True", "Available", "the API server (%.*s) answered in %" PRIu64 " ms",
                                  FIELD(r->version), r->latency_usec / USEC_PER_MSEC);
                else
                        value_set(v, "True", "Available", "the API server answered in %" PRIu64 " ms",
                                  r->latency_usec / USEC_PER_MSEC);
                return;
        }
        if (!live)
                (void) snprintf(livez, sizeof(livez), "/livez answered %d", r->livez_status);
        if (!ready) {
                if (r->readyz_status == 0)
                        (void) snprintf(readyz, sizeof(readyz), "/readyz did not answer");
                else
                        (void) snprintf(readyz, sizeof(readyz), "/readyz answered %d", r->readyz_status);
                if (r->failing_checks[0]) {
                        size_t n = strlen(readyz);

                        (void) snprintf(readyz + n, sizeof(readyz) - n, ", failing checks: %.*s",
                                        FIELD(r->failing_checks));
                }
        }
        value_set(v, "False", "NotReady", "the API server is not ready: %s%s%s", livez,
                  livez[0] && readyz[0] ? "; " : "", readyz);
}

static void eval_nodes(const struct cm_probe_result *r, struct cm_health_value *v) {
        char pressure[CM_PROBE_TEXT_MAX + 16] = "";
        unsigned down;

        if (!r->nodes_known) {
                value_set(v, "Unknown", "NotChecked", "the nodes were not listed");
                return;
        }
        if (r->nodes_total == 0) {
                value_set(v, "False", "NoNodes", "the cluster has no nodes");
                return;
        }
        if (r->nodes_pressure[0])
                (void) snprintf(pressure, sizeof(pressure), "; pressure: %.*s", FIELD(r->nodes_pressure));
        down = r->nodes_ready < r->nodes_total ? r->nodes_total - r->nodes_ready : 0;
        if (down == 0) {
                if (r->nodes_total == 1)
                        value_set(v, "True", "AllNodesReady", "the node is ready%s", pressure);
                else
                        value_set(v, "True", "AllNodesReady", "all %u nodes are ready%s", r->nodes_total,
                                  pressure);
                return;
        }
        value_set(v, "False", "NodesNotReady", "%u of %u %s not ready%s%.*s%s", down, r->nodes_total,
                  r->nodes_total == 1 ? "node" : "nodes", r->nodes_not_ready[0] ? ": " : "",
                  FIELD(r->nodes_not_ready), pressure);
}

static void eval_workloads(const struct cm_probe_result *r, struct cm_health_value *v) {
        if (!r->workloads_known) {
                value_set(v, "Unknown", "NotChecked", "the kube-system workloads were not listed");
                return;
        }
        if (r->workloads_total == 0) {
                value_set(v, "True", "AllAvailable",
                          "kube-system has no Deployments, DaemonSets or StatefulSets");
                return;
        }
        if (r->workloads_unavailable == 0) {
                value_set(v, "True", "AllAvailable", "all %u kube-system %s available", r->workloads_total,
                          r->workloads_total == 1 ? "workload is" : "workloads are");
                return;
        }
        value_set(v, "False", "WorkloadsUnavailable", "%u of %u kube-system %s not available%s%.*s",
                  r->workloads_unavailable, MAX(r->workloads_total, r->workloads_unavailable),
                  r->workloads_total == 1 ? "workload" : "workloads",
                  r->workloads_not_available[0] ? ": " : "", FIELD(r->workloads_not_available));
}

static void eval_cert(const struct cm_probe_result *r, const struct cm_health_settings *s, int64_t now,
                      struct cm_health_value *v) {
        int64_t left, window = (int64_t) s->cert_warning_days * SEC_PER_DAY;
        char day[32];

        if (r->cert_not_after == 0) {
                value_set(v, "Unknown", "NotChecked", "the serving certificate's expiry is not known");
                return;
        }
        format_day(r->cert_not_after, day, sizeof(day));
        if (r->cert_not_after <= now) {
                value_set(v, "False", "Expired", "the serving certificate expired on %s", day);
                return;
        }
        if (__builtin_sub_overflow(r->cert_not_after, now, &left))
                left = INT64_MAX;
        if (left <= window) {
                int64_t days = left / SEC_PER_DAY;

                if (days == 0)
                        value_set(v, "True", "ExpiringSoon",
                                  "the serving certificate expires on %s (in less than a day)", day);
                else
                        value_set(v, "True", "ExpiringSoon",
                                  "the serving certificate expires on %s (in %" PRId64 " %s)", day, days,
                                  days == 1 ? "day" : "days");
                return;
        }
        value_set(v, "True", "Valid", "the serving certificate is valid until %s", day);
}

/* Healthy from the four before it. */
static void eval_rollup(struct cm_health *h) {
        const struct cm_health_value *first = NULL;
        char joined[_CM_HEALTH_COND_MAX * 520] = "";
        size_t o = 0;

        for (int c = 0; c < CM_COND_HEALTHY; c++) {
                const struct cm_health_value *v = &h->cond[c];
                bool seen = false;

                if (streq(v->status, "True"))
                        continue;
                if (!first)
                        first = v;
                for (int d = 0; d < c; d++)
                        if (!streq(h->cond[d].status, "True") && streq(h->cond[d].message, v->message))
                                seen = true;
                if (seen || !v->message[0])
                        continue;
                o += (size_t) snprintf(joined + o, sizeof(joined) - o, "%s%s", o ? "; " : "", v->message);
                o = MIN(o, sizeof(joined) - 1);
        }
        if (!first) {
                const struct cm_health_value *cert = &h->cond[CM_COND_CERTIFICATES_VALID];

                if (streq(cert->reason, "ExpiringSoon"))
                        value_set(&h->cond[CM_COND_HEALTHY], "True", "ExpiringSoon", "%s", cert->message);
                else
                        value_set(&h->cond[CM_COND_HEALTHY], "True", "Healthy", "all checks pass");
                return;
        }
        value_set(&h->cond[CM_COND_HEALTHY], streq(first->status, "Unknown") ? "Unknown" : "False",
                  first->reason[0] ? first->reason : "NotChecked", "%s", joined);
}

void cm_health_evaluate(const struct cm_health *prev, const struct cm_probe_result *r, unsigned failures,
                        const struct cm_health_settings *s, int64_t now_sec, struct cm_health *ret) {
        static const struct cm_health_settings defaults = { .failure_threshold = 1 };
        struct cm_health h = {};

        if (!s)
                s = &defaults;
        if (r->outcome != CM_PROBE_OK) {
                if (MAX(failures, 1U) < MAX(s->failure_threshold, 1U)) {
                        if (!prev)
                                *ret = (struct cm_health){};
                        else if (ret != prev)
                                *ret = *prev;
                        return;
                }
                eval_failed(r, MAX(failures, 1U), &h);
        } else {
                eval_api(r, &h.cond[CM_COND_API_SERVER_AVAILABLE]);
                eval_nodes(r, &h.cond[CM_COND_NODES_READY]);
                eval_workloads(r, &h.cond[CM_COND_SYSTEM_WORKLOADS_HEALTHY]);
                eval_cert(r, s, now_sec, &h.cond[CM_COND_CERTIFICATES_VALID]);
        }
        eval_rollup(&h);
        *ret = h;
}

/* ---- stored conditions -------------------------------------------------------------------------- */

static void value_load(const json_t *c, struct cm_health_value *v) {
        const char *status = json_string_value(json_object_get(c, "status")),
                   *reason = json_string_value(json_object_get(c, "reason")),
                   *message = json_string_value(json_object_get(c, "message"));

        *v = (struct cm_health_value){};
        if (!status || (!streq(status, "True") && !streq(status, "False") && !streq(status, "Unknown")))
                return;
        text_fit(v->status, sizeof(v->status), status);
        text_fit(v->reason, sizeof(v->reason), reason ?: "");
        text_fit(v->message, sizeof(v->message), message ?: "");
}

void cm_health_from_conditions(const char *conditions_json, struct cm_health *ret) {
        json_t *arr = conditions_json ? json_loads(conditions_json, 0, NULL) : NULL, *c;
        struct cm_health h = {};
        size_t i;

        json_array_foreach(arr, i, c) {
                const char *type = json_string_value(json_object_get(c, "type"));

                if (!type)
                        continue;
                for (int k = 0; k < _CM_HEALTH_COND_MAX; k++)
                        if (streq(type, cond_types[k]))
                                value_load(c, &h.cond[k]);
        }
        json_decref(arr);
        *ret = h;
}

bool cm_health_changed(const struct cm_health *a, const struct cm_health *b) {
        for (int c = 0; c < _CM_HEALTH_COND_MAX; c++) {
                if (strncmp(a->cond[c].status, b->cond[c].status, sizeof(a->cond[c].status)) != 0 ||
                    strncmp(a->cond[c].reason, b->cond[c].reason, sizeof(a->cond[c].reason)) != 0)
                        return true;
        }
        return false;
}
