/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Monitoring routes (docs/api.md, "Health and events"): the health of one cluster and the history of
 * its conditions, the event stream (server-sent events), the webhooks of an environment and its
 * monitoring settings. The monitor (monitor/monitor.h) and the webhook dispatcher (monitor/webhooks.h)
 * do the work; these routes read what they stored and what the monitor sees now.
 */
#include "base/common.h"

#include <jansson.h>

#include "api/json.h"
#include "api/problem.h"
#include "base/log.h"
#include "base/parse.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "lifecycle/service.h"
#include "monitor/monitor.h"
#include "monitor/webhooks.h"
#include "server/handlers.h"
#include "server/server_internal.h"
#include "vault/vault.h"

#define HEALTH_HISTORY 20U /* transitions in the health document */
#define HISTORY_DEFAULT 50U
#define HISTORY_MAX 500U
#define DELIVERIES_DEFAULT 50U
#define DELIVERIES_MAX 500U
#define EVENTS_TAIL 100U /* follow=false without a cursor: the newest events */
#define EVENTS_AFTER_MAX 1000U /* follow=false with a cursor: at most this many after it */
#define EVENTS_PAGE 500U /* events read at once while looking for the newest ones */
#define EVENTS_BATCH 100U /* events read per poll of a followed stream */
#define EVENT_FRAME_MAX (256U * 1024U) /* one encoded event */
#define STREAM_PENDING_MAX (1024U * 1024U) /* what a followed stream holds between two polls */
#define STREAM_LIFETIME_USEC (3600 * USEC_PER_SEC)
#define KEEPALIVE_USEC (15 * USEC_PER_SEC)
#define PENDING_EVENTS_MAX 1000U /* pendingEvents of a webhook counts this many at most */
#define WEBHOOK_URL_MAX 2048U
#define DAY_USEC (24 * 3600 * USEC_PER_SEC)

/* The event types, as the store records them and webhooks subscribe to them. */
static const char *const event_types[] = {
        "ConditionChanged",   "PhaseChanged",        "OperationStarted",
        "OperationSucceeded", "OperationFailed",     "OperationCancelled",
        "AddonPhaseChanged",  "AddonDriftCorrected", "AddonUninstalled",
};

static bool event_type_known(const char *s) {
        for (size_t i = 0; i < ELEMENTSOF(event_types); i++)
                if (streq(event_types[i], s))
                        return true;
        return false;
}

/* A 400 naming the query parameter (or header) that is wrong. */
_printf_(3, 4) static void bad_query(struct cm_req *req, const char *field, const char *fmt, ...) {
        struct cm_problem p;
        char reason[256];
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(reason, sizeof(reason), fmt, ap);
        va_end(ap);
        cm_problem_init(&p);
        cm_problem_add(&p, field, "%s", reason);
        /* query parameters are lowercase; headers are capitalized */
        cm_problem_set(&p, 400, "malformed", "Malformed request", "invalid %s",
                       field[0] >= 'A' && field[0] <= 'Z' ? "header" : "query parameter");
        cm_reply_problem(req, &p);
        cm_problem_done(&p);
}

/* ?name= in min..max (def when absent); replies 400 and returns -EINVAL when it is not. */
static int query_uint(struct cm_req *req, const char *name, unsigned min, unsigned max, unsigned def,
                      unsigned *ret) {
        const char *v = cm_req_query(req, name);
        unsigned n;

        if (!v) {
                *ret = def;
                return 0;
        }
        if (safe_atou(v, &n) < 0 || n < min || n > max) {
                bad_query(req, name, "must be a whole number from %u to %u", min, max);
                return -EINVAL;
        }
        *ret = n;
        return 0;
}

/* An event's sequence number: a whole number 0..INT64_MAX (positive when !zero_ok). */
static int parse_seq(const char *v, bool zero_ok, int64_t *ret) {
        uint64_t u;

        if (safe_atou64(v, &u) < 0 || u > INT64_MAX || (!zero_ok && u == 0))
                return -EINVAL;
        *ret = (int64_t) u;
        return 0;
}

static int add_time_value(struct strbuf *out, uint64_t usec) {
        char ts[40];

        cm_format_rfc3339(usec, ts, sizeof(ts));
        return strbuf_addf(out, "\"%s\"", ts);
}

/* ,"key":"<RFC 3339 time>" */
static int add_time(struct strbuf *out, const char *key, uint64_t usec) {
        int r = strbuf_addf(out, ",\"%s\":", key);

        return r < 0 ? r : add_time_value(out, usec);
}

/* ---- health ---- */

/* The five monitor conditions among the cluster's conditions, in their roll-up order. */
static int add_conditions(struct strbuf *out, const char *conditions_json) {
        json_t *all = conditions_json ? json_loads(conditions_json, 0, NULL) : NULL;
        bool first = true;
        int r = strbuf_addch(out, '[');

        for (int k = 0; r >= 0 && k < _CM_HEALTH_COND_MAX; k++) {
                const char *want = cm_health_cond_type((enum cm_health_cond) k);
                size_t i;
                json_t *c;

                json_array_foreach(all, i, c) {
                        const char *type = json_string_value(json_object_get(c, "type"));
                        _cleanup_free_ char *text = NULL;

                        if (!type || !streq(type, want))
                                continue;
                        text = cm_json_canonical(c);
                        if (!text) {
                                r = -ENOMEM;
                                break;
                        }
                        if (!first)
                                r = strbuf_addch(out, ',');
                        if (r >= 0)
                                r = strbuf_adds(out, text);
                        first = false;
                        break;
                }
        }
        json_decref(all);
        return r < 0 ? r : strbuf_addch(out, ']');
}

/* A string of the probe (valid UTF-8 by contract; one that is not is left out rather than failing). */
static int set_text(json_t *obj, const char *key, const char *s, size_t size) {
        json_t *v = json_stringn(s, strnlen(s, size));

        if (!v)
                return 0;
        return json_object_set_new(obj, key, v) < 0 ? -ENOMEM : 0;
}

static int set_time(json_t *obj, const char *key, uint64_t usec) {
        char ts[40];

        cm_format_rfc3339(usec, ts, sizeof(ts));
        return json_object_set_new(obj, key, json_string(ts)) < 0 ? -ENOMEM : 0;
}

/*
 * "health": the stored summary (status.health) with the monitor's live view over it when the
 * cluster is monitored. Appends nothing (returns 0) when there is neither.
 */
static int add_health(struct strbuf *out, const char *stored, const struct cm_monitor_live *live) {
        json_t *h = stored ? json_loads(stored, 0, NULL) : NULL;
        _cleanup_free_ char *text = NULL;
        int r = 0;

        if (!json_is_object(h)) {
                json_decref(h);
                h = live ? json_object() : NULL;
        }
        if (!h)
                return live ? -ENOMEM : 0;
        if (live) {
                const struct cm_probe_result *p = &live->last;

                if (json_object_set_new(h, "consecutiveFailures", json_integer(live->consecutive_failures)) <
                    0)
                        r = -ENOMEM;
                if (r >= 0)
                        r = set_text(h, "failingChecks", p->failing_checks, sizeof(p->failing_checks));
                if (r >= 0)
                        r = set_text(h, "nodesNotReady", p->nodes_not_ready, sizeof(p->nodes_not_ready));
                if (r >= 0)
                        r = set_text(h, "nodesPressure", p->nodes_pressure, sizeof(p->nodes_pressure));
                if (r >= 0)
                        r = set_text(h, "workloadsNotAvailable", p->workloads_not_available,
                                     sizeof(p->workloads_not_available));
                if (r >= 0 && live->next_probe_usec > 0)
                        r = set_time(h, "nextProbeTime", live->next_probe_usec);
                /* time 0: no probe finished yet, the stored values stand */
                if (r >= 0 && p->time_usec > 0) {
                        r = set_time(h, "lastProbeTime", p->time_usec);
                        if (r >= 0 && json_object_set_new(h, "latencyMs",
                                                          json_real((double) p->latency_usec / 1000.0)) < 0)
                                r = -ENOMEM;
                }
        }
        if (r >= 0) {
                text = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
                if (!text)
                        r = -ENOMEM;
        }
        if (r >= 0 && (r = strbuf_addl(out, ",\"health\":")) >= 0)
                r = strbuf_adds(out, text);
        json_decref(h);
        return r;
}

static int add_fraction(struct strbuf *out, const char *key, int avail, double v) {
        if (avail == -ENODATA)
                return strbuf_addf(out, "\"%s\":null", key);
        return strbuf_addf(out, "\"%s\":%.8g", key, MAX(0.0, MIN(1.0, v)));
}

/* One condition transition: {"seq","time","type","status","reason","message"}. */
static int add_transition(struct strbuf *out, const struct cm_event *e) {
        json_t *d = json_loads(e->data_json ?: "{}", 0, NULL);
        const char *type = json_string_value(json_object_get(d, "condition"));
        int r;

        if ((r = strbuf_addf(out, "{\"seq\":%" PRIi64, e->seq)) >= 0 &&
            (r = add_time(out, "time", e->ts_usec)) >= 0 && (r = strbuf_addl(out, ",\"type\":")) >= 0 &&
            (r = strbuf_add_json_string(out, type ?: "")) >= 0 &&
            (r = strbuf_addl(out, ",\"status\":")) >= 0 &&
            (r = strbuf_add_json_string(out, json_string_value(json_object_get(d, "status")) ?: "")) >= 0 &&
            (r = strbuf_addl(out, ",\"reason\":")) >= 0 &&
            (r = strbuf_add_json_string(out, json_string_value(json_object_get(d, "reason")) ?: "")) >= 0 &&
            (r = strbuf_addl(out, ",\"message\":")) >= 0 &&
            (r = strbuf_add_json_string(out, json_string_value(json_object_get(d, "message")) ?: "")) >= 0)
                r = strbuf_addch(out, '}');
        json_decref(d);
        return r;
}

static int add_transitions(struct strbuf *out, const struct cm_event *items, size_t n) {
        int r = strbuf_addch(out, '[');

        for (size_t i = 0; r >= 0 && i < n; i++) {
                if (i > 0)
                        r = strbuf_addch(out, ',');
                if (r >= 0)
                        r = add_transition(out, &items[i]);
        }
        return r < 0 ? r : strbuf_addch(out, ']');
}

/*
 * The transitions of the five monitor conditions of a cluster (not of its other conditions), newest
 * first, with seq < before (0: from the newest), at most limit: the newest of each condition's own
 * list, merged.
 */
static int health_transitions(struct cm_req *req, const char *cluster_id, int64_t before, unsigned limit,
                              struct cm_event **ret, size_t *ret_n) {
        struct cm_event *lists[_CM_HEALTH_COND_MAX] = {}, *out = NULL;
        size_t ns[_CM_HEALTH_COND_MAX] = {}, pos[_CM_HEALTH_COND_MAX] = {}, n = 0;
        int r = 0;

        for (int k = 0; r >= 0 && k < _CM_HEALTH_COND_MAX; k++)
                r = STORE_CALL(req->svc->store, event_history, cluster_id,
                               cm_health_cond_type((enum cm_health_cond) k), before, 0, limit, &lists[k],
                               &ns[k]);
        if (r >= 0 && !(out = new0(struct cm_event, limit)))
                r = -ENOMEM;
        while (r >= 0 && n < limit) {
                int best = -1;

                for (int k = 0; k < _CM_HEALTH_COND_MAX; k++)
                        if (pos[k] < ns[k] &&
                            (best < 0 || lists[k][pos[k]].seq > lists[best][pos[best]].seq))
                                best = k;
                if (best < 0)
                        break;
                out[n++] = lists[best][pos[best]];
                lists[best][pos[best]++] = (struct cm_event){};
        }
        for (int k = 0; k < _CM_HEALTH_COND_MAX; k++)
                cm_event_array_free(lists[k], ns[k]);
        if (r < 0) {
                cm_event_array_free(out, n);
                return r;
        }
        *ret = out;
        *ret_n = n;
        return 0;
}

void cm_handle_cluster_health(struct cm_req *req) {
        _cleanup_(cm_cluster_done) struct cm_cluster c = {};
        struct cm_monitor_live live = {};
        struct cm_event *hist = NULL;
        size_t n_hist = 0;
        uint64_t now = cm_now_usec();
        double day = 0, month = 0;
        int day_r, month_r, r;
        bool monitored;

        if (cm_req_load_cluster(req, &c) < 0)
                return;
        r = req->svc->monitor ? cm_monitor_live(req->svc->monitor, c.id, &live) : -ENOENT;
        if (r < 0 && r != -ENOENT)
                return cm_reply_error(req, r, NULL);
        monitored = r >= 0 && live.monitored;
        day_r = cm_monitor_availability(req->svc, c.id, DAY_USEC, now, &day);
        month_r = cm_monitor_availability(req->svc, c.id, 30 * DAY_USEC, now, &month);
        if ((day_r < 0 && day_r != -ENODATA) || (month_r < 0 && month_r != -ENODATA))
                return cm_reply_error(req, day_r < 0 && day_r != -ENODATA ? day_r : month_r, NULL);
        r = health_transitions(req, c.id, 0, HEALTH_HISTORY, &hist, &n_hist);
        if (r < 0)
                return cm_reply_error(req, r, NULL);

        if ((r = strbuf_addl(&req->out, "{\"environment\":")) >= 0 &&
            (r = strbuf_add_json_string(&req->out, c.env)) >= 0 &&
            (r = strbuf_addl(&req->out, ",\"cluster\":")) >= 0 &&
            (r = strbuf_add_json_string(&req->out, c.name)) >= 0 &&
            (r = strbuf_addf(&req->out, ",\"phase\":\"%s\",\"monitored\":%s,\"conditions\":",
                             cm_phase_to_string(c.phase), monitored ? "true" : "false")) >= 0 &&
            (r = add_conditions(&req->out, c.conditions_json)) >= 0 &&
            (r = add_health(&req->out, c.health_json, monitored ? &live : NULL)) >= 0 &&
            (r = strbuf_addl(&req->out, ",\"availability\":{")) >= 0 &&
            (r = add_fraction(&req->out, "last24h", day_r, day)) >= 0 &&
            (r = strbuf_addch(&req->out, ',')) >= 0 &&
            (r = add_fraction(&req->out, "last30d", month_r, month)) >= 0 &&
            (r = strbuf_addl(&req->out, "},\"history\":")) >= 0 &&
            (r = add_transitions(&req->out, hist, n_hist)) >= 0)
                r = strbuf_addch(&req->out, '}');
        cm_event_array_free(hist, n_hist);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 200);
}

/* GET .../health/history?limit=N&before=SEQ: transitions of the monitor's conditions, newest first. */
void cm_handle_cluster_health_history(struct cm_req *req) {
        _cleanup_(cm_cluster_done) struct cm_cluster c = {};
        const char *before_s = cm_req_query(req, "before");
        struct cm_event *items = NULL;
        int64_t before = 0;
        unsigned limit;
        size_t n = 0, shown;
        int r;

        if (query_uint(req, "limit", 1, HISTORY_MAX, HISTORY_DEFAULT, &limit) < 0)
                return;
        if (before_s && parse_seq(before_s, false, &before) < 0)
                return bad_query(req, "before",
                                 "must be a positive whole number (the next of the previous page)");
        if (cm_req_load_cluster(req, &c) < 0)
                return;
        r = health_transitions(req, c.id, before, limit + 1, &items, &n);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        shown = MIN(n, (size_t) limit);
        if ((r = strbuf_addl(&req->out, "{\"items\":")) >= 0 &&
            (r = add_transitions(&req->out, items, shown)) >= 0 && n > shown)
                r = strbuf_addf(&req->out, ",\"next\":%" PRIi64, items[shown - 1].seq);
        if (r >= 0)
                r = strbuf_addch(&req->out, '}');
        cm_event_array_free(items, n);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 200);
}

/* ---- events ---- */

/*
 * One event as a server-sent event: "id: N\nevent: TYPE\ndata: JSON\n\n". Appended whole or not at
 * all (-ENOBUFS when out has no room left for it).
 */
static int add_event_frame(struct strbuf *out, const struct cm_event *e) {
        _cleanup_strbuf_ struct strbuf json = STRBUF_INIT(EVENT_FRAME_MAX);
        _cleanup_strbuf_ struct strbuf frame = STRBUF_INIT(EVENT_FRAME_MAX + 256);
        const char *type = e->type ?: "";
        const char *p, *end;
        int r;

        /* the type is a field name of the stream: one line */
        if (strpbrk(type, "\r\n"))
                type = "";
        r = cm_event_encode(e, &json);
        if (r >= 0)
                r = strbuf_addf(&frame, "id: %" PRIi64 "\nevent: %s\n", e->seq, type);
        /* The encoder writes one line; should a line break come, each line is a data: line of its own. */
        for (p = json.buf ?: "", end = p + json.len; r >= 0;) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t len = nl ? (size_t) (nl - p) : (size_t) (end - p);

                if (len > 0 && p[len - 1] == '\r')
                        len--;
                if ((r = strbuf_addl(&frame, "data: ")) >= 0 && (r = strbuf_add(&frame, p, len)) >= 0)
                        r = strbuf_addch(&frame, '\n');
                if (!nl)
                        break;
                p = nl + 1;
        }
        if (r >= 0)
                r = strbuf_addch(&frame, '\n');
        if (r >= 0)
                r = strbuf_add(out, frame.buf, frame.len);
        return r;
}

/* follow=false without a cursor: the newest EVENTS_TAIL events of the filter, oldest first. */
static int events_tail(struct cm_req *req, const char *env, const char *cluster) {
        struct cm_event ring[EVENTS_TAIL] = {};
        size_t head = 0, count = 0; /* ring[head] is the oldest kept */
        int64_t newest = 0, span = 4 * EVENTS_TAIL;
        int r;

        r = STORE_CALL(req->svc->store, event_last, &newest);
        /* Look back over a growing range of sequence numbers until it holds enough or all events. */
        while (r >= 0) {
                int64_t from = newest > span ? newest - span : 0, after = from;

                for (;;) {
                        struct cm_event *items = NULL;
                        size_t n = 0;

                        r = STORE_CALL(req->svc->store, event_list, env, cluster, after, EVENTS_PAGE, &items,
                                       &n);
                        if (r < 0)
                                break;
                        for (size_t i = 0; i < n; i++) {
                                size_t slot = (head + count) % EVENTS_TAIL;

                                after = items[i].seq;
                                if (count == EVENTS_TAIL) {
                                        cm_event_done(&ring[head]);
                                        slot = head;
                                        head = (head + 1) % EVENTS_TAIL;
                                } else
                                        count++;
                                ring[slot] = items[i];
                                items[i] = (struct cm_event){};
                        }
                        cm_event_array_free(items, n); /* what was moved out is zeroed */
                        if (n < EVENTS_PAGE)
                                break;
                }
                if (r < 0 || count == EVENTS_TAIL || from == 0)
                        break;
                for (size_t i = 0; i < count; i++)
                        cm_event_done(&ring[(head + i) % EVENTS_TAIL]);
                head = count = 0;
                span = span > INT64_MAX / 4 ? INT64_MAX : span * 4;
        }
        for (size_t i = 0; i < count; i++) {
                if (r >= 0)
                        r = add_event_frame(&req->out, &ring[(head + i) % EVENTS_TAIL]);
                cm_event_done(&ring[(head + i) % EVENTS_TAIL]);
        }
        return r;
}

/* A followed event stream: the store is polled each time libmicrohttpd resumes the connection. */
struct event_stream {
        struct cm_server *srv;
        struct cm_service *svc;
        struct MHD_Connection *conn;
        char env[64]; /* "" for every environment */
        char cluster[64]; /* "" for every cluster */
        int64_t last; /* the newest event looked at */
        struct strbuf pending;
        size_t pending_off;
        uint64_t deadline; /* a stream ends after this long; clients reconnect with Last-Event-ID */
        uint64_t keepalive; /* a comment line is sent when nothing was sent until then */
};

static void event_stream_free(void *cls) {
        struct event_stream *es = cls;

        atomic_fetch_sub(&es->srv->active_streams, 1);
        strbuf_release(&es->pending);
        free(es);
}

/* Reads the events after es->last into pending (as many as fit). */
static int event_stream_poll(struct event_stream *es) {
        struct cm_event *items = NULL;
        int64_t newest = 0;
        size_t n = 0, i;
        int r;

        /* Every event up to the newest one is committed: a filter that matched none of them skips them. */
        r = STORE_CALL(es->svc->store, event_last, &newest);
        if (r < 0)
                return r;
        if (newest <= es->last)
                return 0;
        r = STORE_CALL(es->svc->store, event_list, es->env[0] ? es->env : NULL,
                       es->cluster[0] ? es->cluster : NULL, es->last, EVENTS_BATCH, &items, &n);
        if (r < 0)
                return r;
        for (i = 0; i < n; i++) {
                r = add_event_frame(&es->pending, &items[i]);
                if (r == -ENOBUFS && es->pending.len > 0) {
                        r = 0; /* the rest at the next read */
                        break;
                }
                if (r < 0)
                        break;
                es->last = items[i].seq;
        }
        if (r >= 0 && i == n && n < EVENTS_BATCH)
                es->last = MAX(es->last, newest);
        cm_event_array_free(items, n);
        return r;
}

static ssize_t event_stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
        struct event_stream *es = cls;
        size_t n;
        int r;

        (void) pos;
        if (es->pending_off >= es->pending.len) {
                uint64_t now = cm_mono_usec();

                strbuf_reset(&es->pending);
                es->pending_off = 0;
                if (atomic_load(&es->srv->stopping) || now > es->deadline)
                        return MHD_CONTENT_READER_END_OF_STREAM;
                r = event_stream_poll(es);
                if (r < 0) {
                        log_warning_errno(r, "event stream: read events after %" PRIi64 ": %m", es->last);
                        return MHD_CONTENT_READER_END_WITH_ERROR;
                }
                if (es->pending.len == 0) {
                        if (now < es->keepalive) {
                                cm_server_follow_suspend(es->srv, es->conn);
                                return 0;
                        }
                        if (strbuf_addl(&es->pending, ": keepalive\n\n") < 0)
                                return MHD_CONTENT_READER_END_WITH_ERROR;
                }
                es->keepalive = now + KEEPALIVE_USEC;
        }
        n = MIN(max, es->pending.len - es->pending_off);
        memcpy(buf, es->pending.buf + es->pending_off, n);
        es->pending_off += n;
        return (ssize_t) n;
}

/*
 * Who may watch: with ?environment=, a role in it (none, or no such environment: 404); without, a
 * role in every environment ("*"), else 403.
 */
static int events_authorize(struct cm_req *req, const char *env) {
        enum cm_role role = CM_ROLE_NONE;
        int r;

        if (env) {
                struct cm_environment e = {};

                r = STORE_CALL(req->svc->store, env_get, env, &e);
                cm_environment_done(&e);
                if (r >= 0)
                        r = cm_auth_env_role(req, env, &role);
                if (r == -ENOENT || (r >= 0 && role == CM_ROLE_NONE)) {
                        cm_reply_not_found(req, "environment", env);
                        return -ENOENT;
                }
        } else {
                r = cm_auth_env_role(req, NULL, &role);
                if (r >= 0 && role < CM_ROLE_VIEWER) {
                        cm_reply_problem_simple(req, 403, "forbidden", "Forbidden",
                                                "the events of every environment need a role in every "
                                                "environment ('*'); name one with ?environment=");
                        return -EPERM;
                }
        }
        if (r < 0) {
                cm_reply_error(req, r, NULL);
                return r;
        }
        return 0;
}

/* GET /v1/events?environment=&cluster=&follow=&after= (and Last-Event-ID): text/event-stream. */
void cm_handle_events(struct cm_req *req) {
        const char *env = cm_req_query(req, "environment"), *cluster = cm_req_query(req, "cluster");
        const char *follow_s = cm_req_query(req, "follow"), *after_s = cm_req_query(req, "after");
        const char *last_id = cm_req_header(req, "Last-Event-ID");
        struct MHD_Response *resp;
        struct event_stream *es;
        int64_t after = -1;
        bool follow = true;
        int r;

        if (env && !cm_dns_label_valid(env))
                return bad_query(req, "environment", "must be an environment name (a DNS label)");
        if (cluster && !cm_dns_label_valid(cluster))
                return bad_query(req, "cluster", "must be a cluster name (a DNS label)");
        if (follow_s) {
                if (streq(follow_s, "false") || streq(follow_s, "0"))
                        follow = false;
                else if (!streq(follow_s, "true") && !streq(follow_s, "1"))
                        return bad_query(req, "follow", "must be true or false");
        }
        if (after_s && parse_seq(after_s, true, &after) < 0)
                return bad_query(req, "after", "must be an event id (a whole number)");
        /* a reconnecting client's Last-Event-ID is newer than the ?after= of its first request */
        if (last_id && parse_seq(last_id, true, &after) < 0)
                return bad_query(req, "Last-Event-ID", "must be an event id (a whole number)");
        if (events_authorize(req, env) < 0)
                return;

        (void) cm_reply_header(req, "Cache-Control", "no-cache");
        (void) cm_reply_header(req, "X-Accel-Buffering", "no");
        if (!follow) {
                struct cm_event *items = NULL;
                size_t n = 0;

                if (after >= 0) {
                        r = STORE_CALL(req->svc->store, event_list, env, cluster, after, EVENTS_AFTER_MAX,
                                       &items, &n);
                        for (size_t i = 0; r >= 0 && i < n; i++)
                                r = add_event_frame(&req->out, &items[i]);
                        cm_event_array_free(items, n);
                } else
                        r = events_tail(req, env, cluster);
                if (r < 0)
                        return cm_reply_error(req, r, NULL);
                req->content_type = "text/event-stream";
                return cm_reply(req, 200);
        }

        es = new0(struct event_stream, 1);
        if (!es)
                return cm_reply_error(req, -ENOMEM, NULL);
        *es = (struct event_stream){
                .srv = req->srv,
                .svc = req->svc,
                .conn = req->conn,
                .last = after,
                .deadline = cm_mono_usec() + STREAM_LIFETIME_USEC,
                .keepalive = cm_mono_usec() + KEEPALIVE_USEC,
        };
        (void) cm_strlcpy(es->env, env ?: "", sizeof(es->env));
        (void) cm_strlcpy(es->cluster, cluster ?: "", sizeof(es->cluster));
        strbuf_init(&es->pending, STREAM_PENDING_MAX);
        atomic_fetch_add(&req->srv->active_streams, 1);
        /* Without a cursor, what happens from now on: no backlog. */
        if (after < 0 && (r = STORE_CALL(req->svc->store, event_last, &es->last)) < 0) {
                event_stream_free(es);
                return cm_reply_error(req, r, NULL);
        }
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, event_stream_read, es,
                                                 event_stream_free);
        if (!resp) {
                event_stream_free(es);
                return cm_reply_error(req, -ENOMEM, NULL);
        }
        cm_reply_stream(req, 200, "text/event-stream", resp);
}

/* ---- webhooks ---- */

/*
 * http:// or https://, a host (a name, an IPv4 address or a bracketed IPv6 address) and an optional
 * port, no user or password; printable ASCII without spaces, at most WEBHOOK_URL_MAX bytes.
 */
static const char *webhook_url_problem(const char *url) {
        const char *p, *host, *end;
        size_t n = strlen(url);

        if (n == 0 || n > WEBHOOK_URL_MAX)
                return "required: an http:// or https:// URL of at most 2048 characters";
        for (p = url; *p; p++)
                if ((unsigned char) *p <= 0x20 || (unsigned char) *p >= 0x7f)
                        return "must be printable ASCII without spaces (percent-encode the rest)";
        if (strncasecmp(url, "https://", 8) == 0)
                host = url + 8;
        else if (strncasecmp(url, "http://", 7) == 0)
                host = url + 7;
        else
                return "must be an http:// or https:// URL";
        end = host + strcspn(host, "/?#");
        if (memchr(host, '@', (size_t) (end - host)))
                return "must not carry a user or password; the webhook's secret signs its requests";
        if (*host == '[') {
                const char *close = memchr(host, ']', (size_t) (end - host));

                if (!close || close == host + 1)
                        return "must name a host";
                for (p = host + 1; p < close; p++)
                        if (!strchr("0123456789abcdefABCDEF:.", *p))
                                return "must name a host (an IPv6 address in brackets)";
                p = close + 1;
        } else {
                for (p = host; p < end && *p != ':'; p++)
                        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_", *p))
                                return "must name a host (letters, digits, '.', '-')";
                if (p == host)
                        return "must name a host";
        }
        if (p < end) {
                unsigned port = 0;

                if (*p != ':' || p + 1 == end || end - p > 6)
                        return "must have a port from 1 to 65535, if any";
                for (p++; p < end; p++) {
                        if (*p < '0' || *p > '9')
                                return "must have a port from 1 to 65535, if any";
                        port = port * 10 + (unsigned) (*p - '0');
                }
                if (port < 1 || port > 65535)
                        return "must have a port from 1 to 65535, if any";
        }
        return NULL;
}

/*
 * Whether the environment secret exists: its value and its public record, as the secret routes store
 * them (the record is written last and removed first). 1, 0, or a negative errno.
 */
static int env_secret_exists(struct cm_req *req, const char *name) {
        char owner[CM_VAULT_OWNER_MAX + 1], file[CM_VAULT_NAME_MAX + 1];
        const char *const suffixes[] = { "", ".meta" };

        if (!req->svc->vault)
                return 0;
        if (cm_vault_env_owner(req->params[0], owner, sizeof(owner)) < 0)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                struct cm_vault_version *vs = NULL;
                size_t nv = 0;
                int r;

                if (cm_snprintf(file, sizeof(file), "secret/%s%s", name, suffixes[i]) < 0)
                        return 0;
                r = cm_vault_list_versions(req->svc->vault, owner, file, &vs, &nv);
                free(vs);
                if (r == -ENOENT || (r >= 0 && nv == 0))
                        return 0;
                if (r < 0)
                        return r;
        }
        return 1;
}

/* {"name","url","secret","events"?}, strictly; on a bad body sets a 400/422 problem and returns < 0. */
static int webhook_decode(struct cm_req *req, json_t **ret_doc, struct cm_webhook *ret,
                          struct cm_problem *p) {
        static const char *const fields[] = { "name", "url", "secret", "events", NULL };
        _cleanup_free_ char *events_json = NULL;
        const char *name, *url, *secret, *why;
        json_t *doc = NULL, *events;
        int r;

        r = cm_json_parse_strict(req->body.buf ?: "", req->body.len, &doc, p);
        if (r < 0)
                return r;
        (void) cm_json_check_fields(doc, "", fields, p);
        name = json_string_value(json_object_get(doc, "name"));
        if (!name || !cm_dns_label_valid(name))
                cm_problem_add(p, "name", "required: a DNS label (1-63 of a-z, 0-9, '-')");
        url = json_string_value(json_object_get(doc, "url"));
        why = url ? webhook_url_problem(url) : "required: an http:// or https:// URL";
        if (why)
                cm_problem_add(p, "url", "%s", why);
        secret = json_string_value(json_object_get(doc, "secret"));
        if (!secret || !cm_dns_label_valid(secret))
                cm_problem_add(p, "secret",
                               "required: the name of an environment secret holding the signing key");
        else {
                r = env_secret_exists(req, secret);
                if (r < 0) {
                        json_decref(doc);
                        return r;
                }
                if (r == 0)
                        cm_problem_add(p, "secret",
                                       "no secret '%s' in environment '%s'; create it first "
                                       "(POST /v1/environments/%s/secrets)",
                                       secret, req->params[0], req->params[0]);
        }
        events = json_object_get(doc, "events");
        if (events && !json_is_array(events))
                cm_problem_add(p, "events", "must be an array of event types");
        else if (events) {
                size_t i, j;
                json_t *v;

                json_array_foreach(events, i, v) {
                        const char *t = json_string_value(v);
                        char path[32];

                        cm_json_path_index(path, sizeof(path), "events", i);
                        if (!t || !event_type_known(t)) {
                                cm_problem_add(p, path,
                                               "unknown event type (known: ConditionChanged, PhaseChanged, "
                                               "OperationStarted, OperationSucceeded, OperationFailed, "
                                               "OperationCancelled, AddonPhaseChanged, AddonDriftCorrected, "
                                               "AddonUninstalled)");
                                continue;
                        }
                        for (j = 0; j < i; j++)
                                if (json_equal(json_array_get(events, j), v)) {
                                        cm_problem_add(p, path, "'%s' is listed twice", t);
                                        break;
                                }
                }
        }
        if (cm_problem_has_errors(p)) {
                cm_problem_validation(p, "the webhook document is not valid");
                json_decref(doc);
                return -EINVAL;
        }
        events_json = events ? cm_json_canonical(events) : strdup("[]");
        if (!events_json) {
                json_decref(doc);
                return -ENOMEM;
        }
        *ret = (struct cm_webhook){
                .env = req->params[0],
                .name = CM_UNCONST(char *, name),
                .url = CM_UNCONST(char *, url),
                .secret = CM_UNCONST(char *, secret),
                .events_json = TAKE_PTR(events_json),
        };
        *ret_doc = doc;
        return 0;
}

/* The events of the environment after the webhook's cursor that it subscribed to (at most a cap). */
static int webhook_pending(struct cm_req *req, const struct cm_webhook *w, json_t *types, unsigned *ret) {
        struct cm_event *items = NULL;
        unsigned count = 0;
        size_t n = 0;
        int r;

        r = STORE_CALL(req->svc->store, event_list, w->env, NULL, w->cursor, PENDING_EVENTS_MAX, &items, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                bool match = json_array_size(types) == 0;
                size_t k;
                json_t *t;

                json_array_foreach(types, k, t) {
                        if (items[i].type && streq(json_string_value(t) ?: "", items[i].type))
                                match = true;
                }
                count += match;
        }
        cm_event_array_free(items, n);
        *ret = count;
        return 0;
}

static int add_status_code(struct strbuf *out, int code) {
        if (code <= 0)
                return strbuf_addl(out, ",\"statusCode\":null");
        return strbuf_addf(out, ",\"statusCode\":%d", code);
}

/* {"name","url","secret","events","created","lastDelivery","pendingEvents"} */
static int webhook_encode(struct cm_req *req, const struct cm_webhook *w, struct strbuf *out) {
        struct cm_webhook_delivery *d = NULL;
        json_t *types = json_loads(w->events_json ?: "[]", 0, NULL);
        _cleanup_free_ char *events = NULL;
        unsigned pending = 0;
        size_t nd = 0;
        int r = 0;

        if (!json_is_array(types)) {
                json_decref(types);
                types = json_array(); /* not a list this service wrote: every type */
                if (!types)
                        return -ENOMEM;
        }
        events = cm_json_canonical(types);
        if (!events)
                r = -ENOMEM;
        if (r >= 0)
                r = webhook_pending(req, w, types, &pending);
        if (r >= 0)
                r = STORE_CALL(req->svc->store, webhook_deliveries, w->id, 1, &d, &nd);
        if (r >= 0 && (r = strbuf_addl(out, "{\"name\":")) >= 0 &&
            (r = strbuf_add_json_string(out, w->name)) >= 0 && (r = strbuf_addl(out, ",\"url\":")) >= 0 &&
            (r = strbuf_add_json_string(out, w->url)) >= 0 && (r = strbuf_addl(out, ",\"secret\":")) >= 0 &&
            (r = strbuf_add_json_string(out, w->secret)) >= 0 &&
            (r = strbuf_addl(out, ",\"events\":")) >= 0 && (r = strbuf_adds(out, events)) >= 0 &&
            (r = add_time(out, "created", w->created_usec)) >= 0 &&
            (r = strbuf_addl(out, ",\"lastDelivery\":")) >= 0) {
                if (nd == 0)
                        r = strbuf_addl(out, "null");
                else if ((r = strbuf_addl(out, "{\"time\":")) >= 0 &&
                         (r = add_time_value(out, d[0].ts_usec)) >= 0 &&
                         (r = strbuf_addf(out, ",\"eventId\":%" PRIi64, d[0].event_seq)) >= 0 &&
                         (r = add_status_code(out, d[0].status_code)) >= 0 &&
                         (r = strbuf_addl(out, ",\"outcome\":")) >= 0 &&
                         (r = strbuf_add_json_string(out, d[0].outcome ?: "")) >= 0)
                        r = strbuf_addch(out, '}');
                if (r >= 0)
                        r = strbuf_addf(out, ",\"pendingEvents\":%u}", pending);
        }
        json_decref(types);
        cm_webhook_delivery_array_free(d, nd);
        return r;
}

void cm_handle_webhook_create(struct cm_req *req) {
        _cleanup_free_ char *events_json = NULL;
        json_t *doc = NULL;
        struct cm_webhook w = {};
        struct cm_problem p;
        char id[48], loc[192];
        int r;

        cm_problem_init(&p);
        r = webhook_decode(req, &doc, &w, &p);
        events_json = w.events_json;
        if (r < 0)
                goto fail;
        r = cm_random_id("wh_", id, sizeof(id));
        if (r < 0)
                goto fail;
        w.id = id;
        w.created_usec = cm_now_usec();
        r = STORE_CALL(req->svc->store, webhook_create, &w, &w.cursor);
        if (r == -EEXIST) {
                cm_problem_set(&p, 409, "conflict", "Conflict", "webhook '%s' already exists", w.name);
                goto fail;
        }
        if (r == -ENOENT) {
                cm_problem_not_found(&p, "environment", req->params[0]);
                goto fail;
        }
        if (r < 0)
                goto fail;
        cm_webhooks_poke(req->svc->webhooks);
        r = webhook_encode(req, &w, &req->out);
        if (r < 0)
                goto fail;
        (void) cm_snprintf(loc, sizeof(loc), "/v1/environments/%s/webhooks/%s", req->params[0], w.name);
        (void) cm_reply_header(req, "Location", loc);
        cm_reply(req, 201);
        json_decref(doc);
        cm_problem_done(&p);
        return;
fail:
        cm_reply_error(req, r, &p);
        json_decref(doc);
        cm_problem_done(&p);
}

void cm_handle_webhook_list(struct cm_req *req) {
        struct cm_webhook *items = NULL;
        size_t n = 0;
        int r;

        r = STORE_CALL(req->svc->store, webhook_list, req->params[0], &items, &n);
        if (r >= 0)
                r = strbuf_addl(&req->out, "{\"items\":[");
        for (size_t i = 0; r >= 0 && i < n; i++) {
                if (i > 0)
                        r = strbuf_addch(&req->out, ',');
                if (r >= 0)
                        r = webhook_encode(req, &items[i], &req->out);
        }
        if (r >= 0)
                r = strbuf_addl(&req->out, "]}");
        cm_webhook_array_free(items, n);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 200);
}

/* The webhook named by the path; replies 404 (or 500) and returns < 0 when there is none. */
static int load_webhook(struct cm_req *req, struct cm_webhook *ret) {
        int r;

        if (!cm_dns_label_valid(req->params[1])) {
                cm_reply_not_found(req, "webhook", req->params[1]);
                return -ENOENT;
        }
        r = STORE_CALL(req->svc->store, webhook_get, req->params[0], req->params[1], ret);
        if (r == -ENOENT)
                cm_reply_not_found(req, "webhook", req->params[1]);
        else if (r < 0)
                cm_reply_error(req, r, NULL);
        return r;
}

void cm_handle_webhook_get(struct cm_req *req) {
        _cleanup_(cm_webhook_done) struct cm_webhook w = {};
        int r;

        if (load_webhook(req, &w) < 0)
                return;
        r = webhook_encode(req, &w, &req->out);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 200);
}

void cm_handle_webhook_delete(struct cm_req *req) {
        int r;

        if (!cm_dns_label_valid(req->params[1]))
                return cm_reply_not_found(req, "webhook", req->params[1]);
        r = STORE_CALL(req->svc->store, webhook_delete, req->params[0], req->params[1]);
        if (r == -ENOENT)
                return cm_reply_not_found(req, "webhook", req->params[1]);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_webhooks_poke(req->svc->webhooks);
        cm_reply(req, 204);
}

/* {"id","time","eventId","eventType","attempt","statusCode","outcome","error","durationMs"} */
static int delivery_encode(struct strbuf *out, const struct cm_webhook_delivery *d) {
        int r;

        if ((r = strbuf_addf(out, "{\"id\":%" PRIi64, d->seq)) >= 0 &&
            (r = add_time(out, "time", d->ts_usec)) >= 0 &&
            (r = strbuf_addf(out, ",\"eventId\":%" PRIi64 ",\"eventType\":", d->event_seq)) >= 0 &&
            (r = strbuf_add_json_string(out, d->event_type ?: "")) >= 0 &&
            (r = strbuf_addf(out, ",\"attempt\":%u", d->attempt)) >= 0 &&
            (r = add_status_code(out, d->status_code)) >= 0 &&
            (r = strbuf_addl(out, ",\"outcome\":")) >= 0 &&
            (r = strbuf_add_json_string(out, d->outcome ?: "")) >= 0 &&
            (r = strbuf_addl(out, ",\"error\":")) >= 0 &&
            (r = strbuf_add_json_string(out, d->error ?: "")) >= 0)
                r = strbuf_addf(out, ",\"durationMs\":%.1f}", (double) d->duration_usec / 1000.0);
        return r;
}

void cm_handle_webhook_deliveries(struct cm_req *req) {
        _cleanup_(cm_webhook_done) struct cm_webhook w = {};
        struct cm_webhook_delivery *items = NULL;
        unsigned limit;
        size_t n = 0;
        int r;

        if (query_uint(req, "limit", 1, DELIVERIES_MAX, DELIVERIES_DEFAULT, &limit) < 0 ||
            load_webhook(req, &w) < 0)
                return;
        r = STORE_CALL(req->svc->store, webhook_deliveries, w.id, limit, &items, &n);
        if (r >= 0)
                r = strbuf_addl(&req->out, "{\"items\":[");
        for (size_t i = 0; r >= 0 && i < n; i++) {
                if (i > 0)
                        r = strbuf_addch(&req->out, ',');
                if (r >= 0)
                        r = delivery_encode(&req->out, &items[i]);
        }
        if (r >= 0)
                r = strbuf_addl(&req->out, "]}");
        cm_webhook_delivery_array_free(items, n);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 200);
}

/* ---- monitoring settings ---- */

/* The effective settings with their version, and ETag: "<version>". */
static int settings_document(struct cm_req *req, const struct cm_monitor_settings *s, int64_t version) {
        _cleanup_strbuf_ struct strbuf doc = STRBUF_INIT(1024);
        int r;

        r = cm_monitor_settings_encode(s, &doc);
        return r < 0 ? r : cm_settings_add_document(req, &doc, version);
}

void cm_handle_monitoring_get(struct cm_req *req) {
        struct cm_monitor_settings s = {};
        int64_t version = 0;
        int r;

        r = cm_monitor_settings_get(req->svc, req->params[0], &s, &version);
        if (r >= 0)
                r = settings_document(req, &s, version);
        cm_settings_reply(req, r, NULL, NULL, -1);
}

/*
 * PUT: what the document names is stored (members left out follow the service's defaults); the
 * answer is the effective settings, as GET answers them.
 */
void cm_handle_monitoring_put(struct cm_req *req) {
        struct cm_monitor_settings defaults = {}, s = {};
        char field[64] = "", reason[160] = "";
        struct cm_problem p;
        int64_t expected, version = 0;
        json_t *doc = NULL;
        int r;

        if (cm_settings_if_match(req, &expected) < 0)
                return;
        cm_problem_init(&p);
        r = cm_json_parse_strict(req->body.buf ?: "", req->body.len, &doc, &p);
        if (r >= 0)
                /* the service's defaults, whatever is stored now */
                defaults = (struct cm_monitor_settings){
                        .interval_sec = req->svc->monitor_interval_sec ?: 30,
                        .threshold = req->svc->monitor_threshold ?: 2,
                        .cert_warning_days = req->svc->monitor_cert_warning_days ?: 30,
                };
        if (r >= 0 && cm_monitor_settings_decode(req->body.buf, req->body.len, &defaults, &s, field,
                                                 sizeof(field), reason, sizeof(reason)) < 0) {
                if (field[0])
                        cm_problem_add(&p, field, "%s", reason);
                r = cm_problem_validation(&p, field[0] ? "the monitoring settings are not valid" : reason);
        }
        if (r >= 0)
                r = cm_settings_store(req, CM_MONITOR_SETTINGS_KIND, doc, expected, &version);
        if (r >= 0) {
                if (req->svc->monitor)
                        cm_monitor_poke(req->svc->monitor);
                r = settings_document(req, &s, version);
        }
        cm_settings_reply(req, r, &p, "monitoring", expected);
        json_decref(doc);
        cm_problem_done(&p);
}
