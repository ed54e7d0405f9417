/* SPDX-License-Identifier: Apache-2.0 */
/* Per-environment monitoring settings and the availability computed from stored transitions. */
#include "base/common.h"

#include <jansson.h>

#include "base/log.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "lifecycle/service.h"
#include "monitor/monitor.h"
#include "store/store.h"

#define SETTINGS_MAX 4096

struct settings_field {
        const char *name;
        size_t offset;
        unsigned min, max;
};

static const struct settings_field settings_fields[] = {
        { "intervalSeconds", offsetof(struct cm_monitor_settings, interval_sec), 1, 3600 },
        { "failureThreshold", offsetof(struct cm_monitor_settings, threshold), 1, 10 },
        { "certificateWarningDays", offsetof(struct cm_monitor_settings, cert_warning_days), 0, 365 },
};

void cm_monitor_config_default(struct cm_monitor_config *cfg) {
        *cfg = (struct cm_monitor_config){
                .interval_sec = 30,
                .concurrency = 256,
                .timeout_ms = 10000,
                .threshold = 2,
                .cert_warning_days = 30,
                .rescan_ms = 5000,
                .keep_alive_max = 1000,
        };
}

static void set_error(char *field, size_t field_size, const char *f, char *reason, size_t reason_size,
                      const char *why) {
        if (field && field_size)
                (void) cm_strlcpy(field, f, field_size);
        if (reason && reason_size)
                (void) cm_strlcpy(reason, why, reason_size);
}

int cm_monitor_settings_decode(const char *json, size_t len, const struct cm_monitor_settings *defaults,
                               struct cm_monitor_settings *ret, char *ret_field, size_t field_size,
                               char *ret_reason, size_t reason_size) {
        struct cm_monitor_settings s = *defaults;
        json_t *doc, *v;
        const char *key;

        if (!json || len > SETTINGS_MAX) {
                set_error(ret_field, field_size, "", ret_reason, reason_size, "the document is too large");
                return -EINVAL;
        }
        doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(doc)) {
                json_decref(doc);
                set_error(ret_field, field_size, "", ret_reason, reason_size,
                          "the settings must be a JSON object");
                return -EINVAL;
        }
        json_object_foreach(doc, key, v) {
                const struct settings_field *f = NULL;
                json_int_t i;

                for (size_t k = 0; k < ELEMENTSOF(settings_fields); k++)
                        if (streq(settings_fields[k].name, key))
                                f = &settings_fields[k];
                if (!f) {
                        set_error(ret_field, field_size, key, ret_reason, reason_size,
                                  "unknown setting (known: intervalSeconds, failureThreshold, "
                                  "certificateWarningDays)");
                        json_decref(doc);
                        return -EINVAL;
                }
                i = json_is_integer(v) ? json_integer_value(v) : -1;
                if (!json_is_integer(v) || i < (json_int_t) f->min || i > (json_int_t) f->max) {
                        char why[96];

                        (void) cm_snprintf(why, sizeof(why), "must be an integer from %u to %u", f->min,
                                           f->max);
                        set_error(ret_field, field_size, f->name, ret_reason, reason_size, why);
                        json_decref(doc);
                        return -EINVAL;
                }
                *(unsigned *) ((char *) &s + f->offset) = (unsigned) i;
        }
        json_decref(doc);
        *ret = s;
        return 0;
}

int cm_monitor_settings_encode(const struct cm_monitor_settings *s, struct strbuf *out) {
        return strbuf_addf(out,
                           "{\"intervalSeconds\":%u,\"failureThreshold\":%u,\"certificateWarningDays\":%u}",
                           s->interval_sec, s->threshold, s->cert_warning_days);
}

int cm_monitor_settings_get(struct cm_service *svc, const char *env, struct cm_monitor_settings *ret,
                            int64_t *ret_version) {
        struct cm_monitor_settings defaults = {
                .interval_sec = svc->monitor_interval_sec ?: 30,
                .threshold = svc->monitor_threshold ?: 2,
                .cert_warning_days = svc->monitor_cert_warning_days ?: 30,
        };
        _cleanup_free_ char *stored = NULL;
        int64_t version = 0;
        int r;

        r = STORE_CALL(svc->store, env_settings_get, env, CM_MONITOR_SETTINGS_KIND, &stored, &version);
        if (r < 0)
                return r;
        if (stored) {
                /* Stored settings were validated when written; defaults fill what they leave out. */
                r = cm_monitor_settings_decode(stored, strlen(stored), &defaults, ret, NULL, 0, NULL, 0);
                if (r < 0) {
                        log_warning("monitor: the stored settings of environment '%s' do not decode; "
                                    "using the defaults",
                                    env);
                        *ret = defaults;
                }
        } else
                *ret = defaults;
        if (ret_version)
                *ret_version = version;
        return 0;
}

int cm_monitor_availability(struct cm_service *svc, const char *cluster_id, uint64_t window_usec,
                            uint64_t now_usec, double *ret) {
        struct cm_event *ev = NULL;
        size_t n = 0;
        uint64_t start = now_usec > window_usec ? now_usec - window_usec : 0, up = 0, known = 0;
        uint64_t t_end = now_usec;
        int r;

        /* Newest first: walk back from now, each transition covering [its time, the next one's). */
        r = STORE_CALL(svc->store, event_history, cluster_id, "Healthy", 0, start, 100000, &ev, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                json_t *d = json_loads(ev[i].data_json, 0, NULL);
                const char *st = json_string_value(json_object_get(d, "status"));
                const char *prev = json_string_value(json_object_get(d, "previousStatus"));
                uint64_t t = MAX(ev[i].ts_usec, start);

                if (t_end > t) {
                        if (st && !streq(st, "Unknown")) {
                                known += t_end - t;
                                if (streq(st, "True"))
                                        up += t_end - t;
                        }
                        t_end = t;
                }
                /* The oldest transition in the window: before it, the status was its previous one. */
                if (i + 1 == n && prev && !isempty(prev) && !streq(prev, "Unknown") && t_end > start) {
                        known += t_end - start;
                        if (streq(prev, "True"))
                                up += t_end - start;
                }
                json_decref(d);
        }
        cm_event_array_free(ev, n);
        if (n == 0) {
                /* No transition in the window: the current status held all along (if known). */
                struct cm_event *last = NULL;
                size_t m = 0;

                r = STORE_CALL(svc->store, event_history, cluster_id, "Healthy", 0, 0, 1, &last, &m);
                if (r < 0)
                        return r;
                if (m == 1) {
                        json_t *d = json_loads(last[0].data_json, 0, NULL);
                        const char *st = json_string_value(json_object_get(d, "status"));

                        if (st && !streq(st, "Unknown")) {
                                known = now_usec - start;
                                up = streq(st, "True") ? known : 0;
                        }
                        json_decref(d);
                }
                cm_event_array_free(last, m);
        }
        if (known == 0)
                return -ENODATA;
        *ret = (double) up / (double) known;
        return 0;
}
