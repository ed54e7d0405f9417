/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"
#include "base/strbuf.h"
#include "monitor/health.h"

struct cm_service;
struct cm_monitor;
struct cm_webhooks;

/*
 * The health monitor: one thread probing every Ready or Updating cluster's API server from one epoll
 * loop (no thread per cluster; its own TLS and HTTP/1.1 client: conn.h), with the kubeconfig from the
 * state vault. After each
 * probe it computes the health conditions (health.h) and hands what changed to a writer thread that
 * stores it (store.h cluster_set_health; the store records the transitions as events). See
 * docs/internals/monitor.md.
 */
struct cm_monitor_config {
        unsigned interval_sec; /* probe interval of environments without their own settings */
        unsigned concurrency; /* probes in flight at most */
        unsigned timeout_ms; /* one request of a probe */
        unsigned threshold; /* consecutive failures before the API server counts as unavailable */
        unsigned cert_warning_days;
        unsigned rescan_ms; /* how often the cluster list is re-read (at most) */
        unsigned keep_alive_max; /* clusters up to which idle connections are kept between probes */
};

/* The defaults: 30 s, 256, 10000 ms, 2, 30 days, 5000 ms, 1000 clusters. */
void cm_monitor_config_default(struct cm_monitor_config *cfg);

/* Starts the monitor thread and its writer. Returns 0 or a negative errno; ret is set on success. */
_warn_unused_result_ int cm_monitor_start(struct cm_service *svc, const struct cm_monitor_config *cfg,
                                          struct cm_monitor **ret);
/* Stops and frees (in-flight probes are abandoned, queued writes are written). Accepts NULL. */
struct cm_monitor *cm_monitor_stop(struct cm_monitor *m);

/* The monitor's live view of one cluster (what the last probe saw). */
struct cm_monitor_live {
        bool monitored; /* the cluster is being probed */
        struct cm_probe_result last; /* the last finished probe (outcome OK with time 0: none yet) */
        struct cm_health health;
        unsigned consecutive_failures;
        uint64_t next_probe_usec; /* wall clock */
};

/* -ENOENT when the cluster is not monitored (not Ready/Updating, or not seen yet). Thread-safe. */
int cm_monitor_live(struct cm_monitor *m, const char *cluster_id, struct cm_monitor_live *ret);

/*
 * Appends the monitor's Prometheus metrics (per-cluster gauges, probe duration histogram, probe errors
 * by reason, monitored clusters) to out. Thread-safe; accepts NULL (appends nothing).
 */
int cm_monitor_metrics(struct cm_monitor *m, struct strbuf *out);

/* Asks for a rescan of the cluster list and settings now (after a settings change). Thread-safe. */
void cm_monitor_poke(struct cm_monitor *m);

/* Environment monitoring settings (store kind "monitoring"). */
struct cm_monitor_settings {
        unsigned interval_sec; /* 1..3600 */
        unsigned threshold; /* 1..10 */
        unsigned cert_warning_days; /* 0..365 */
};
#define CM_MONITOR_SETTINGS_KIND "monitoring"

/*
 * Decodes a settings document ({"intervalSeconds","failureThreshold","certificateWarningDays"}, every
 * member optional; a missing one takes its value from defaults) strictly: unknown members, wrong types
 * and out-of-range values are -EINVAL with the member's name in ret_field (size bytes) and a reason in
 * ret_reason.
 */
int cm_monitor_settings_decode(const char *json, size_t len, const struct cm_monitor_settings *defaults,
                               struct cm_monitor_settings *ret, char *ret_field, size_t field_size,
                               char *ret_reason, size_t reason_size);
/* {"intervalSeconds":..,"failureThreshold":..,"certificateWarningDays":..} into out. */
int cm_monitor_settings_encode(const struct cm_monitor_settings *s, struct strbuf *out);
/* The effective settings of an environment (stored ones, else the monitor's defaults). */
int cm_monitor_settings_get(struct cm_service *svc, const char *env, struct cm_monitor_settings *ret,
                            int64_t *ret_version);

/*
 * Availability of a cluster: the fraction of [now - window, now] in which its Healthy condition was
 * True, from the stored transitions. -ENODATA when Healthy was never known in the window.
 */
int cm_monitor_availability(struct cm_service *svc, const char *cluster_id, uint64_t window_usec,
                            uint64_t now_usec, double *ret);
