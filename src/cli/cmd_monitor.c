/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "base/parse.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "cli/internal.h"
#include "cli/sse.h"

/* The health document carries this many history items; more are read from .../health/history. */
#define HEALTH_HISTORY_IN_DOCUMENT 20U
#define HISTORY_MAX 500U
#define LIST_LIMIT_MAX 500U
#define LINE_MAX_BYTES (64U * 1024U)
#define DETAIL_FORMAT "%-21s"

/* Keepalives come every 15 s: a stream silent for longer than this is taken for a dead connection. */
#define EVENTS_IDLE_USEC (45U * USEC_PER_SEC)
#define EVENTS_BACKOFF_MIN_SEC 1U
#define EVENTS_BACKOFF_MAX_SEC 30U
/* An event id longer than this (or with other than visible ASCII) is not sent back in Last-Event-ID. */
#define EVENT_ID_MAX 128U
/* The text of one event's line: its data and a few separators. */
#define EVENT_TEXT_MAX (CM_SSE_EVENT_MAX + 1024U)
/* The TIME, ENV/CLUSTER and TYPE columns grow with their values up to this width. */
#define EVENT_COLUMN_MAX 40U

/* ---- shared helpers ------------------------------------------------------------------------ */

/* "12s ago" or "in 18s" for an RFC 3339 time, or "" when ts is not one. */
static void relative_time(const char *ts, uint64_t now_usec, char *buf, size_t size) {
        char age[32];
        uint64_t usec;

        buf[0] = 0;
        if (!ts || cm_parse_rfc3339(ts, &usec) < 0)
                return;
        if (usec <= now_usec) {
                cm_output_age(usec, now_usec, age, sizeof(age));
                (void) snprintf(buf, size, "%s ago", age);
        } else {
                cm_output_age(now_usec, usec, age, sizeof(age));
                (void) snprintf(buf, size, "in %s", age);
        }
}

/* The age of an RFC 3339 time ("3d4h"), or "-". */
static void age_of(const char *ts, uint64_t now_usec, char *buf, size_t size) {
        uint64_t usec;

        if (!ts || cm_parse_rfc3339(ts, &usec) < 0) {
                (void) snprintf(buf, size, "-");
                return;
        }
        cm_output_age(usec, now_usec, buf, size);
}

/* An integer member as text, or "-". */
static void int_text(const json_t *v, char *buf, size_t size) {
        if (json_is_integer(v))
                (void) snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        else
                (void) snprintf(buf, size, "-");
}

/*
 * A fraction as a percentage with at most three decimals, never rounded up to 100% ("99.93%",
 * "99.995%", "100%"), or "n/a" when v is not a number.
 */
static void percent_text(const json_t *v, char *buf, size_t size) {
        double f = json_number_value(v);
        uint64_t m;

        if (!json_is_number(v) || f < 0 || f > 1) {
                (void) snprintf(buf, size, "n/a");
                return;
        }
        m = (uint64_t) (f * 100000.0 + 0.5); /* thousandths of a percent */
        if (m == 100000 && f < 1.0)
                m = 99999;
        if (m % 1000 == 0)
                (void) snprintf(buf, size, "%" PRIu64 "%%", m / 1000);
        else if (m % 100 == 0)
                (void) snprintf(buf, size, "%" PRIu64 ".%01" PRIu64 "%%", m / 1000, (m % 1000) / 100);
        else if (m % 10 == 0)
                (void) snprintf(buf, size, "%" PRIu64 ".%02" PRIu64 "%%", m / 1000, (m % 1000) / 10);
        else
                (void) snprintf(buf, size, "%" PRIu64 ".%03" PRIu64 "%%", m / 1000, m % 1000);
}

/* Prints "Label:   value" (value cleaned of control characters, cut when huge); nothing for no value. */
static int detail(struct cm_cli *cli, const char *label, const char *value) {
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT(LINE_MAX_BYTES);
        int r;

        if (isempty(value))
                return 0;
        r = strbuf_addf(&sb, DETAIL_FORMAT, label);
        if (r >= 0)
                r = cm_output_add_clean(&sb, value);
        if (r < 0 && (r != -ENOBUFS || !sb.buf))
                return r;
        fprintf(cli->out, "%s\n", sb.buf);
        return 0;
}

/* The condition of the given type in a conditions array, or NULL. */
static const json_t *find_condition(const json_t *conds, const char *type) {
        const json_t *c;
        size_t i;

        json_array_foreach(conds, i, c) {
                const char *t = cm_cli_json_str(c, "type");

                if (t && streq(t, type))
                        return c;
        }
        return NULL;
}

/* Appends "<status> (<reason>)" of a condition. */
static int add_status_reason(struct strbuf *sb, const json_t *cond) {
        const char *reason = cm_cli_json_str(cond, "reason");
        int r;

        r = strbuf_adds(sb, strna(cm_cli_json_str(cond, "status")));
        if (r >= 0 && !isempty(reason))
                r = strbuf_addf(sb, " (%s)", reason);
        return r;
}

/* Limits a number flag to lo..hi; prints a usage error and returns -EINVAL otherwise. */
static int parse_number_flag(struct cm_cli *cli, const struct cm_cli_noun *noun,
                             const struct cm_cli_verb *verb, const char *flag, const char *s, unsigned lo,
                             unsigned hi, unsigned *ret) {
        unsigned v;

        if (safe_atou(s, &v) < 0 || v < lo || v > hi) {
                (void) cm_cli_usage_error(cli, noun, verb, "--%s takes a number from %u to %u, not '%s'",
                                          flag, lo, hi, s);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

/* ---- cluster health ------------------------------------------------------------------------ */

void cm_cli_health_cell(const json_t *cluster, char *buf, size_t size) {
        const json_t *cond =
                find_condition(json_object_get(json_object_get(cluster, "status"), "conditions"), "Healthy");
        const char *status = cm_cli_json_str(cond, "status"), *reason = cm_cli_json_str(cond, "reason");

        if (!status)
                (void) snprintf(buf, size, "-");
        else if (streq(status, "True")) {
                /* "Healthy (ExpiringSoon)" keeps the column narrow enough; a longer reason is left out. */
                if (!isempty(reason) && !streq(reason, "Healthy") && strlen(reason) <= 14)
                        (void) snprintf(buf, size, "Healthy (%s)", reason);
                else
                        (void) snprintf(buf, size, "Healthy");
        } else if (streq(status, "False"))
                (void) snprintf(buf, size, "%s", isempty(reason) ? "Unhealthy" : reason);
        else
                (void) snprintf(buf, size, "Unknown");
}

int cm_cli_print_health_summary(struct cm_cli *cli, const json_t *cluster) {
        const json_t *status = json_object_get(cluster, "status"),
                     *health = json_object_get(status, "health");
        const json_t *cond = find_condition(json_object_get(status, "conditions"), "Healthy");
        _cleanup_strbuf_ struct strbuf line = STRBUF_INIT(LINE_MAX_BYTES);
        const char *probe = cm_cli_json_str(health, "lastProbeTime");
        char rel[64];

        if (!cond && !json_is_object(health))
                return detail(cli, "Health:", "not probed yet") < 0 ? cm_cli_error(cli, "out of memory")
                                                                    : CM_EXIT_OK;
        if (cond && add_status_reason(&line, cond) < 0)
                return cm_cli_error(cli, "out of memory");
        if (detail(cli, "Health:", cond ? line.buf : "unknown") < 0)
                return cm_cli_error(cli, "out of memory");
        strbuf_reset(&line);
        if (json_is_integer(json_object_get(health, "nodesReady")) &&
            json_is_integer(json_object_get(health, "nodesTotal")) &&
            strbuf_addf(&line, "%" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT,
                        json_integer_value(json_object_get(health, "nodesReady")),
                        json_integer_value(json_object_get(health, "nodesTotal"))) < 0)
                return cm_cli_error(cli, "out of memory");
        if (detail(cli, "Nodes ready:", line.buf) < 0 ||
            detail(cli, "API server version:", cm_cli_json_str(health, "version")) < 0)
                return cm_cli_error(cli, "out of memory");
        strbuf_reset(&line);
        relative_time(probe, cm_now_usec(), rel, sizeof(rel));
        if (probe && strbuf_addf(&line, "%s%s%s%s", probe, rel[0] ? " (" : "", rel, rel[0] ? ")" : "") < 0)
                return cm_cli_error(cli, "out of memory");
        if (detail(cli, "Last probe:", line.buf) < 0)
                return cm_cli_error(cli, "out of memory");
        return CM_EXIT_OK;
}

/* The conditions: TYPE STATUS REASON SINCE MESSAGE. */
static int print_conditions(struct cm_cli *cli, const json_t *conds, uint64_t now) {
        static const char *const headers[] = { "TYPE", "STATUS", "REASON", "SINCE", "MESSAGE" };
        struct cm_cli_table t = {};
        const json_t *c;
        size_t i;
        int r;

        r = cm_cli_table_init(&t, headers, ELEMENTSOF(headers));
        json_array_foreach(conds, i, c) {
                char since[32];

                if (r < 0)
                        break;
                age_of(cm_cli_json_str(c, "lastTransitionTime"), now, since, sizeof(since));
                if ((r = cm_cli_table_add(&t, cm_cli_json_str(c, "type"))) < 0 ||
                    (r = cm_cli_table_add(&t, cm_cli_json_str(c, "status"))) < 0 ||
                    (r = cm_cli_table_add(&t, cm_cli_json_str(c, "reason"))) < 0 ||
                    (r = cm_cli_table_add(&t, since)) < 0 ||
                    (r = cm_cli_table_add(&t, cm_cli_json_str(c, "message"))) < 0)
                        break;
        }
        if (r >= 0)
                (void) cm_cli_table_print(cli, &t);
        cm_cli_table_done(&t);
        return r;
}

/* Appends ", " (unless sb is empty) and the formatted text. */
_printf_(2, 3) static int add_part(struct strbuf *sb, const char *fmt, ...) {
        va_list ap;
        int r;

        if (sb->len > 0 && (r = strbuf_adds(sb, ", ")) < 0)
                return r;
        va_start(ap, fmt);
        r = strbuf_vaddf(sb, fmt, ap);
        va_end(ap);
        return r;
}

/* "3/3 nodes ready, v1.36.3, 4.2 ms, probed 12s ago (next in 18s), certificate expires in 364d". */
static int health_line(struct strbuf *sb, const json_t *h, uint64_t now) {
        const json_t *ready = json_object_get(h, "nodesReady"), *total = json_object_get(h, "nodesTotal"),
                     *latency = json_object_get(h, "latencyMs");
        const char *version = cm_cli_json_str(h, "version"),
                   *expiry = cm_cli_json_str(h, "certificateExpiry");
        uint64_t usec;
        char last[64], next[64], exp[64];
        int r = 0;

        relative_time(cm_cli_json_str(h, "lastProbeTime"), now, last, sizeof(last));
        relative_time(cm_cli_json_str(h, "nextProbeTime"), now, next, sizeof(next));
        relative_time(expiry, now, exp, sizeof(exp));
        if (json_is_integer(ready) && json_is_integer(total))
                r = add_part(sb, "%" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT " nodes ready",
                             json_integer_value(ready), json_integer_value(total));
        if (r >= 0 && version)
                r = add_part(sb, "%s", version);
        if (r >= 0 && json_is_number(latency))
                r = add_part(sb, "%.1f ms", json_number_value(latency));
        if (r >= 0 && last[0])
                r = add_part(sb, "probed %s", last);
        if (r >= 0 && next[0])
                r = last[0] ? strbuf_addf(sb, " (next %s)", next) : add_part(sb, "next probe %s", next);
        if (r >= 0 && expiry) {
                if (!exp[0])
                        r = add_part(sb, "certificate expiry %s", expiry);
                else if (cm_parse_rfc3339(expiry, &usec) >= 0 && usec > now)
                        r = add_part(sb, "certificate expires %s", exp);
                else
                        r = add_part(sb, "certificate expired %s", exp);
        }
        return r;
}

/* The history items: TIME TYPE STATUS REASON MESSAGE. */
static int print_history(struct cm_cli *cli, const json_t *items) {
        static const char *const headers[] = { "TIME", "TYPE", "STATUS", "REASON", "MESSAGE" };
        struct cm_cli_table t = {};
        const json_t *it;
        size_t i;
        int r;

        r = cm_cli_table_init(&t, headers, ELEMENTSOF(headers));
        json_array_foreach(items, i, it) {
                if (r < 0)
                        break;
                if ((r = cm_cli_table_add(&t, cm_cli_json_str(it, "time"))) < 0 ||
                    (r = cm_cli_table_add(&t, cm_cli_json_str(it, "type"))) < 0 ||
                    (r = cm_cli_table_add(&t, cm_cli_json_str(it, "status"))) < 0 ||
                    (r = cm_cli_table_add(&t, cm_cli_json_str(it, "reason"))) < 0 ||
                    (r = cm_cli_table_add(&t, cm_cli_json_str(it, "message"))) < 0)
                        break;
        }
        if (r >= 0)
                (void) cm_cli_table_print(cli, &t);
        cm_cli_table_done(&t);
        return r;
}

/* The health document for people: conditions, health, availability, history. */
static int print_health(struct cm_cli *cli, const char *name, const json_t *doc) {
        const json_t *conds = json_object_get(doc, "conditions"), *h = json_object_get(doc, "health"),
                     *avail = json_object_get(doc, "availability"),
                     *history = json_object_get(doc, "history");
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT(LINE_MAX_BYTES);
        uint64_t now = cm_now_usec();
        char a24[32], a30[32], fails[32];
        int r = 0;

        if (json_array_size(conds) > 0)
                r = print_conditions(cli, conds, now);
        else
                fprintf(cli->out, "cluster %s has not been probed yet: no health conditions\n", name);
        if (r >= 0)
                fputc('\n', cli->out);
        if (r >= 0 && json_is_false(json_object_get(doc, "monitored")) &&
            (r = strbuf_addf(&sb, "no: the cluster is %s; monitoring resumes when it is Ready or Updating",
                             strna(cm_cli_json_str(doc, "phase")))) >= 0)
                r = detail(cli, "Monitored:", sb.buf);
        strbuf_reset(&sb);
        if (r >= 0 && json_is_object(h) && (r = health_line(&sb, h, now)) >= 0)
                r = detail(cli, "Health:", sb.buf);
        if (r >= 0 && json_integer_value(json_object_get(h, "consecutiveFailures")) > 0) {
                int_text(json_object_get(h, "consecutiveFailures"), fails, sizeof(fails));
                r = detail(cli, "Failed probes:", fails);
        }
        if (r >= 0)
                r = detail(cli, "Failing checks:", cm_cli_json_str(h, "failingChecks"));
        if (r >= 0)
                r = detail(cli, "Nodes not ready:", cm_cli_json_str(h, "nodesNotReady"));
        if (r >= 0)
                r = detail(cli, "Under pressure:", cm_cli_json_str(h, "nodesPressure"));
        if (r >= 0)
                r = detail(cli, "Workloads down:", cm_cli_json_str(h, "workloadsNotAvailable"));
        if (r >= 0 && json_is_object(avail)) {
                percent_text(json_object_get(avail, "last24h"), a24, sizeof(a24));
                percent_text(json_object_get(avail, "last30d"), a30, sizeof(a30));
                strbuf_reset(&sb);
                if (!json_is_number(json_object_get(avail, "last30d")))
                        r = strbuf_adds(&sb, "unknown: not probed in the last 30 days");
                else
                        r = strbuf_addf(&sb, "%s over 24 hours, %s over 30 days", a24, a30);
                if (r >= 0)
                        r = detail(cli, "Availability:", sb.buf);
        }
        if (r >= 0 && history) {
                if (json_array_size(history) > 0) {
                        fputs("\nHistory (newest first):\n", cli->out);
                        r = print_history(cli, history);
                } else
                        fputs("\nHistory: no changes recorded\n", cli->out);
        }
        return r < 0 ? cm_cli_error(cli, "out of memory") : CM_EXIT_OK;
}

int cm_cli_cluster_health(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                          int argc, char **argv) {
        const char *history_s = NULL;
        const struct cm_cli_opt opts[] = {
                { "history", 0, CM_CLI_OPT_STRING, &history_s },
        };
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        json_t *doc = NULL, *page = NULL;
        const char *pos[1];
        unsigned n = 0;
        size_t n_pos;
        int ret = CM_EXIT_FAILURE;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (history_s && parse_number_flag(cli, noun, verb, "history", history_s, 0, HISTORY_MAX, &n) < 0)
                return CM_EXIT_USAGE;
        if (cm_cli_env_path(cli, &path, "clusters", pos[0], "health") < 0)
                return cm_cli_error(cli, "the name is too long");
        if (cm_cli_call(cli, "GET", path.buf, NULL, NULL, &doc, NULL) < 0)
                return CM_EXIT_FAILURE;
        if (!json_is_object(doc)) {
                ret = cm_cli_error(cli, "the answer is not a health document");
                goto out;
        }
        if (history_s && n > HEALTH_HISTORY_IN_DOCUMENT) {
                /* More than the document carries: the newest n from the history route. */
                if (strbuf_addf(&path, "/history?limit=%u", n) < 0) {
                        ret = cm_cli_error(cli, "the name is too long");
                        goto out;
                }
                if (cm_cli_call(cli, "GET", path.buf, NULL, NULL, &page, NULL) < 0)
                        goto out;
                if (!json_is_array(json_object_get(page, "items"))) {
                        ret = cm_cli_error(cli, "the answer to GET %s has no \"items\" list", path.buf);
                        goto out;
                }
                if (json_object_set(doc, "history", json_object_get(page, "items")) < 0) {
                        ret = cm_cli_error(cli, "out of memory");
                        goto out;
                }
        } else if (history_s) {
                json_t *h = json_object_get(doc, "history");

                while (json_array_size(h) > n)
                        (void) json_array_remove(h, json_array_size(h) - 1);
                if (n == 0)
                        (void) json_object_del(doc, "history");
        }
        if (cli->output != CM_OUTPUT_TABLE)
                ret = cm_cli_print_document(cli, doc);
        else
                ret = print_health(cli, pos[0], doc);
out:
        json_decref(page);
        json_decref(doc);
        return ret;
}

/* ---- events -------------------------------------------------------------------------------- */

static volatile sig_atomic_t events_interrupted;

static void events_on_sigint(int sig) {
        events_interrupted = 1;
}

/* Following the event stream: what the callbacks share. */
struct follower {
        struct cm_cli *cli;
        struct cm_sse_parser parser;
        char last_id[EVENT_ID_MAX + 1]; /* sent in Last-Event-ID on the next connection; "" when none */
        uint64_t last_data_usec; /* monotonic */
        unsigned failures; /* connection failures since the last good connection */
        bool got_data; /* this connection delivered bytes (of a 2xx answer) */
        bool idle; /* this connection was given up for its silence */
        bool header_printed;
        size_t n_events;
        int parse_error; /* what the parser failed with, to tell it from transport errors */
        int output_error;
        size_t widths[3]; /* TIME, ENV/CLUSTER, TYPE: they only grow, so columns stay put */
};

static bool event_id_usable(const char *id) {
        size_t n = 0;

        for (const char *p = id; *p; p++, n++)
                if (*p < 0x21 || *p > 0x7e)
                        return false;
        return n > 0 && n <= EVENT_ID_MAX;
}

/* Appends s cleaned, or "-". */
static int add_clean(struct strbuf *sb, const char *s) {
        return cm_output_add_clean(sb, isempty(s) ? "-" : s);
}

/* The details column of an event, by its type. */
static int event_details(struct strbuf *sb, const char *type, const json_t *ev) {
        const char *reason = cm_cli_json_str(ev, "reason"), *message = cm_cli_json_str(ev, "message");
        int r;

        if (streq(type, "ConditionChanged")) {
                r = add_clean(sb, cm_cli_json_str(ev, "condition"));
                if (r >= 0 && (r = strbuf_addch(sb, ' ')) >= 0)
                        r = add_clean(sb, cm_cli_json_str(ev, "status"));
                if (r >= 0 && !isempty(reason) && (r = strbuf_adds(sb, " (")) >= 0 &&
                    (r = cm_output_add_clean(sb, reason)) >= 0)
                        r = strbuf_addch(sb, ')');
        } else if (streq(type, "PhaseChanged")) {
                const char *prev = cm_cli_json_str(ev, "previousPhase");

                r = 0;
                if (!isempty(prev) && (r = cm_output_add_clean(sb, prev)) >= 0)
                        r = strbuf_adds(sb, " \xe2\x86\x92 ");
                if (r >= 0)
                        r = add_clean(sb, cm_cli_json_str(ev, "phase"));
        } else if (streq(type, "AddonPhaseChanged")) {
                const char *prev = cm_cli_json_str(ev, "previousPhase");

                r = add_clean(sb, cm_cli_json_str(ev, "addon"));
                if (r >= 0 && (r = strbuf_addch(sb, ' ')) >= 0 && !isempty(prev) &&
                    (r = cm_output_add_clean(sb, prev)) >= 0)
                        r = strbuf_adds(sb, " \xe2\x86\x92 ");
                if (r >= 0)
                        r = add_clean(sb, cm_cli_json_str(ev, "phase"));
                if (r >= 0 && !isempty(reason) && (r = strbuf_adds(sb, " (")) >= 0 &&
                    (r = cm_output_add_clean(sb, reason)) >= 0)
                        r = strbuf_addch(sb, ')');
        } else if (streq(type, "AddonDriftCorrected")) {
                const json_t *count = json_object_get(ev, "count");

                r = add_clean(sb, cm_cli_json_str(ev, "addon"));
                if (r >= 0)
                        r = strbuf_addf(sb, ": %zu object(s) put back",
                                        json_array_size(json_object_get(ev, "objects")));
                if (r >= 0 && json_is_integer(count))
                        r = strbuf_addf(sb, " (%" JSON_INTEGER_FORMAT " so far)", json_integer_value(count));
        } else if (streq(type, "AddonUninstalled")) {
                r = add_clean(sb, cm_cli_json_str(ev, "addon"));
        } else if (strneq(type, "Operation", 9)) {
                r = add_clean(sb, cm_cli_json_str(ev, "operationType"));
                if (r >= 0 && (r = strbuf_addch(sb, ' ')) >= 0)
                        r = add_clean(sb, cm_cli_json_str(ev, "operation"));
        } else
                r = isempty(message) ? strbuf_addch(sb, '-') : 0;
        if (r >= 0 && !isempty(message)) {
                if (sb->len > 0)
                        r = strbuf_adds(sb, ": ");
                if (r >= 0)
                        r = cm_output_add_clean(sb, message);
        }
        return r;
}

/* One line: TIME  ENV/CLUSTER  TYPE  DETAILS. */
static int print_event_line(struct follower *f, const char *sse_type, const json_t *ev) {
        /* Cleaning never makes text longer, and all of it came in one event: these caps are never hit. */
        _cleanup_strbuf_ struct strbuf time = STRBUF_INIT(EVENT_TEXT_MAX),
                                       where = STRBUF_INIT(EVENT_TEXT_MAX),
                                       type = STRBUF_INIT(EVENT_TEXT_MAX),
                                       details = STRBUF_INIT(EVENT_TEXT_MAX);
        const char *t = cm_cli_json_str(ev, "type") ?: sse_type, *cluster = cm_cli_json_str(ev, "cluster");
        FILE *out = f->cli->out;
        int r;

        if ((r = add_clean(&time, cm_cli_json_str(ev, "time"))) < 0 ||
            (r = add_clean(&where, cm_cli_json_str(ev, "environment"))) < 0 ||
            (!isempty(cluster) &&
             ((r = strbuf_addch(&where, '/')) < 0 || (r = cm_output_add_clean(&where, cluster)) < 0)) ||
            (r = add_clean(&type, t)) < 0 || (r = event_details(&details, t, ev)) < 0)
                return r;
        /* A very long value overflows its column rather than widening it for good. */
        f->widths[0] = MAX(f->widths[0], MIN(time.len, EVENT_COLUMN_MAX));
        f->widths[1] = MAX(f->widths[1], MIN(where.len, EVENT_COLUMN_MAX));
        f->widths[2] = MAX(f->widths[2], MIN(type.len, EVENT_COLUMN_MAX));
        if (!f->header_printed) {
                fprintf(out, "%-*s   %-*s   %-*s   %s\n", (int) f->widths[0], "TIME", (int) f->widths[1],
                        "ENV/CLUSTER", (int) f->widths[2], "TYPE", "DETAILS");
                f->header_printed = true;
        }
        fprintf(out, "%-*s   %-*s   %-*s   %s\n", (int) f->widths[0], time.buf, (int) f->widths[1],
                where.buf, (int) f->widths[2], type.buf, details.buf);
        return 0;
}

static int print_event(struct follower *f, const char *sse_type, const json_t *ev) {
        struct cm_cli *cli = f->cli;
        _cleanup_free_ char *text = NULL;
        int r;

        switch (cli->output) {
        case CM_OUTPUT_TABLE:
                return print_event_line(f, sse_type, ev);
        case CM_OUTPUT_JSON:
                text = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
                if (!text)
                        return -ENOMEM;
                fprintf(cli->out, "%s\n", text);
                return 0;
        case CM_OUTPUT_YAML: {
                _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT(CM_CLI_OUTPUT_MAX);

                r = cm_output_render_document(&sb, CM_OUTPUT_YAML, ev);
                if (r < 0)
                        return r;
                fprintf(cli->out, "---\n%s", sb.buf);
                return 0;
        }
        }
        return -EINVAL;
}

static int on_event(const struct cm_sse_event *sse, void *userdata) {
        struct follower *f = userdata;
        json_t *ev;
        int r;

        ev = json_loadb(sse->data, sse->data_len, 0, NULL);
        if (!json_is_object(ev)) {
                json_decref(ev);
                cm_cli_warning(f->cli, "event %s: its data is not a JSON object; skipped",
                               event_id_usable(sse->id) ? sse->id : "without a usable id");
        } else {
                r = print_event(f, sse->type, ev);
                json_decref(ev);
                if (r < 0)
                        return r;
                if (fflush(f->cli->out) != 0 || ferror(f->cli->out)) {
                        f->output_error = errno > 0 ? -errno : -EIO;
                        return f->output_error;
                }
                f->n_events++;
        }
        /* The stream's id (the data's "id" member is the same number). */
        if (event_id_usable(sse->id))
                (void) cm_strlcpy(f->last_id, sse->id, sizeof(f->last_id));
        return 0;
}

static int on_chunk(const char *data, size_t n, void *userdata) {
        struct follower *f = userdata;
        int r;

        f->last_data_usec = cm_mono_usec();
        if (!f->got_data && f->failures > 0)
                fprintf(f->cli->err, "reconnected to the event stream\n");
        f->got_data = true;
        f->failures = 0;
        r = cm_sse_parser_feed(&f->parser, data, n);
        if (r < 0 && f->output_error == 0)
                f->parse_error = r;
        return r;
}

static int on_tick(void *userdata) {
        struct follower *f = userdata;

        if (events_interrupted)
                return -ECANCELED;
        if (cm_mono_usec() - f->last_data_usec > EVENTS_IDLE_USEC) {
                f->idle = true;
                return -ETIMEDOUT;
        }
        return 0;
}

/* Sleeps, unless Ctrl-C comes first. */
static void pause_sec(unsigned sec) {
        struct timespec ts = { .tv_sec = (time_t) sec };

        while (!events_interrupted && nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static bool status_retryable(long status) {
        return status == 408 || status == 429 || status >= 500;
}

static int events_path(struct cm_cli *cli, struct strbuf *sb, bool all_envs, const char *cluster,
                       bool follow) {
        int r = strbuf_adds(sb, "/v1/events?");

        if (r >= 0 && !all_envs && (r = strbuf_adds(sb, "environment=")) >= 0 &&
            (r = cm_url_escape_segment(sb, cli->env)) >= 0)
                r = strbuf_addch(sb, '&');
        if (r >= 0 && cluster && (r = strbuf_adds(sb, "cluster=")) >= 0 &&
            (r = cm_url_escape_segment(sb, cluster)) >= 0)
                r = strbuf_addch(sb, '&');
        if (r >= 0)
                r = strbuf_adds(sb, follow ? "follow=true" : "follow=false");
        return r;
}

/* Prints why the stream cannot go on (the parser, memory or the output stopped it); CM_EXIT_FAILURE. */
static int stream_error(struct follower *f, int r) {
        struct cm_cli *cli = f->cli;
        char where[EVENT_ID_MAX + 32] = "before the first event";

        if (f->last_id[0])
                (void) snprintf(where, sizeof(where), "after event %s", f->last_id);
        if (f->parse_error == -EMSGSIZE)
                return cm_cli_error(
                        cli, "the server sent a line longer than %u KiB in the event stream; stopped %s",
                        CM_SSE_LINE_MAX / 1024U, where);
        if (f->parse_error == -EFBIG)
                return cm_cli_error(cli, "the server sent an event larger than %u KiB; stopped %s",
                                    CM_SSE_EVENT_MAX / 1024U, where);
        if (f->parse_error < 0 || r == -ENOMEM)
                return cm_cli_error(cli, "out of memory while reading the event stream");
        return cm_cli_error(cli, "cannot write the events: %s", strerror(-(f->output_error ?: r)));
}

static int events_run(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                      int argc, char **argv) {
        bool follow = false, all_envs = false;
        const char *cluster = NULL, *since_s = NULL;
        const struct cm_cli_opt opts[] = {
                { "follow", 'f', CM_CLI_OPT_FLAG, &follow },
                { "cluster", 0, CM_CLI_OPT_STRING, &cluster },
                { "all-environments", 0, CM_CLI_OPT_FLAG, &all_envs },
                { "since-id", 0, CM_CLI_OPT_STRING, &since_s },
        };
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(4096);
        struct follower f = { .cli = cli, .widths = { 20, 11, 16 } };
        struct sigaction sa = { .sa_handler = events_on_sigint }, old_sa;
        char last_id_header[EVENT_ID_MAX + 32];
        unsigned backoff = EVENTS_BACKOFF_MIN_SEC;
        bool connected = false;
        struct cm_client *c;
        uint64_t since = 0;
        size_t n_pos;
        int ret;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), NULL, 0, 0, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (since_s && safe_atou64(since_s, &since) < 0)
                return cm_cli_usage_error(cli, noun, verb,
                                          "--since-id takes an event id (a number), not '%s'", since_s);
        if (cluster && isempty(cluster))
                return cm_cli_usage_error(cli, noun, verb, "--cluster needs a cluster name");
        if (events_path(cli, &path, all_envs, cluster, follow) < 0)
                return cm_cli_error(cli, "the environment or cluster name is too long");
        c = cm_cli_client(cli);
        if (!c)
                return CM_EXIT_FAILURE;
        if (since_s)
                (void) snprintf(f.last_id, sizeof(f.last_id), "%" PRIu64, since);

        cm_sse_parser_init(&f.parser, on_event, &f);
        /* Ctrl-C ends the command normally (exit 0): the transfer and the pauses check for it. */
        events_interrupted = 0;
        sigemptyset(&sa.sa_mask);
        (void) sigaction(SIGINT, &sa, &old_sa);

        for (;;) {
                _cleanup_(cm_client_response_done) struct cm_client_response resp = {};
                const char *headers[3] = { "Accept: text/event-stream" };
                const struct cm_client_request req = {
                        .method = "GET",
                        .path = path.buf,
                        .headers = headers,
                        .timeout_sec = -1,
                        .on_chunk = on_chunk,
                        .on_tick = on_tick,
                        .userdata = &f,
                };
                const char *why = NULL;
                char why_buf[96];
                int r;

                if (f.last_id[0]) {
                        (void) snprintf(last_id_header, sizeof(last_id_header), "Last-Event-ID: %s",
                                        f.last_id);
                        headers[1] = last_id_header;
                }
                cm_sse_parser_reset(&f.parser);
                f.got_data = f.idle = false;
                f.last_data_usec = cm_mono_usec();
                r = cm_client_perform(c, &req, &resp);
                if (f.got_data)
                        connected = true;
                if (events_interrupted) {
                        ret = CM_EXIT_OK;
                        break;
                }
                if (f.parse_error < 0 || f.output_error < 0 || r == -ENOMEM) {
                        ret = stream_error(&f, r);
                        break;
                }
                if (r == 0 && resp.status >= 200 && resp.status < 300) {
                        if (resp.content_type && !strneq(resp.content_type, "text/event-stream", 17)) {
                                _cleanup_strbuf_ struct strbuf type = STRBUF_INIT(1024);
                                bool shown = cm_output_add_clean(&type, resp.content_type) >= 0 && type.buf;

                                ret = cm_cli_error(cli,
                                                   "the server answered with %s, not an event stream; is %s "
                                                   "the cluster management service?",
                                                   shown ? type.buf : "another type", cm_client_server(c));
                                break;
                        }
                        connected = true;
                        if (!follow) {
                                if (f.n_events == 0 && cli->output == CM_OUTPUT_TABLE)
                                        fputs("no events\n", cli->err);
                                ret = CM_EXIT_OK;
                                break;
                        }
                        /* The server ends a stream after an hour: pick it up where it ended. */
                } else if (r == 0 && (!follow || !connected || !status_retryable(resp.status))) {
                        ret = cm_cli_print_problem(cli, &resp);
                        break;
                } else {
                        if (f.idle) {
                                (void) snprintf(why_buf, sizeof(why_buf), "no data from the server for %u s",
                                                (unsigned) (EVENTS_IDLE_USEC / USEC_PER_SEC));
                                why = why_buf;
                        } else
                                why = r < 0 ? cm_client_last_error(c) : cm_http_status_text(resp.status);
                        /* Only a stream that worked once is worth waiting for (not a typo in --server). */
                        if (r < 0 && (!follow || !connected)) {
                                ret = cm_cli_error(cli, "%s", why);
                                break;
                        }
                }

                if (f.got_data)
                        backoff = EVENTS_BACKOFF_MIN_SEC;
                if (why && f.failures++ == 0)
                        cm_cli_warning(cli, "the event stream broke off (%s); reconnecting (Ctrl-C stops)",
                                       why);
                pause_sec(backoff);
                if (events_interrupted) {
                        ret = CM_EXIT_OK;
                        break;
                }
                if (!f.got_data)
                        backoff = MIN(backoff * 2, EVENTS_BACKOFF_MAX_SEC);
        }
        (void) sigaction(SIGINT, &old_sa, NULL);
        cm_sse_parser_done(&f.parser);
        return ret;
}

static const struct cm_cli_verb events_verb = {
        "",
        "[-f|--follow] [--cluster NAME] [--all-environments] [--since-id ID]",
        "Print the environment's events (the last 100, or those after --since-id ID); --follow keeps\n"
        "streaming new ones, reconnecting when the connection drops, until Ctrl-C.",
        events_run,
};

const struct cm_cli_noun cm_cli_noun_events = {
        .name = "events",
        .summary = "health changes, phase changes and operations as they happen (-f follows)",
        .description =
                "Events of the environment chosen with --env (--all-environments: of every\n"
                "environment, which needs a role in all of them), one line each: TIME ENV/CLUSTER TYPE\n"
                "DETAILS; -o json prints each event as one line of JSON. Types: ConditionChanged,\n"
                "PhaseChanged, OperationStarted, OperationSucceeded, OperationFailed, OperationCancelled,\n"
                "AddonPhaseChanged, AddonDriftCorrected, AddonUninstalled.\n"
                "\n"
                "  clustermgmt events -f --cluster demo\n"
                "  clustermgmt events -f -o json --since-id 1234 | jq .",
        .direct = &events_verb,
};

/* ---- webhooks ------------------------------------------------------------------------------ */

/* "ConditionChanged,PhaseChanged" of a webhook's events, or "all". */
static int events_text(struct strbuf *sb, const json_t *events) {
        const json_t *e;
        size_t i;
        int r = 0;

        if (json_array_size(events) == 0)
                return strbuf_adds(sb, "all");
        json_array_foreach(events, i, e) {
                if (r >= 0 && i > 0)
                        r = strbuf_addch(sb, ',');
                if (r >= 0)
                        r = strbuf_adds(sb, json_is_string(e) ? json_string_value(e) : "?");
        }
        return r;
}

/* "delivered (200) 5m ago" of a webhook's last delivery, or "never". */
static int last_delivery_text(struct strbuf *sb, const json_t *last, uint64_t now) {
        const json_t *code = json_object_get(last, "statusCode");
        char rel[64];
        int r;

        if (!json_is_object(last))
                return strbuf_adds(sb, "never");
        r = strbuf_adds(sb, strna(cm_cli_json_str(last, "outcome")));
        if (r >= 0 && json_is_integer(code) && json_integer_value(code) > 0)
                r = strbuf_addf(sb, " (%" JSON_INTEGER_FORMAT ")", json_integer_value(code));
        relative_time(cm_cli_json_str(last, "time"), now, rel, sizeof(rel));
        if (r >= 0 && rel[0])
                r = strbuf_addf(sb, " %s", rel);
        return r;
}

static int print_webhooks(struct cm_cli *cli, const json_t *items) {
        static const char *const headers[] = { "NAME", "URL", "EVENTS", "LAST DELIVERY", "PENDING", "AGE" };
        struct cm_cli_table t = {};
        uint64_t now = cm_now_usec();
        const json_t *w;
        size_t i;
        int r;

        r = cm_cli_table_init(&t, headers, ELEMENTSOF(headers));
        json_array_foreach(items, i, w) {
                _cleanup_strbuf_ struct strbuf events = STRBUF_INIT(CM_CLI_CELL_MAX * 4),
                                               last = STRBUF_INIT(CM_CLI_CELL_MAX);
                char pending[32], age[32];

                if (r < 0)
                        break;
                int_text(json_object_get(w, "pendingEvents"), pending, sizeof(pending));
                age_of(cm_cli_json_str(w, "created"), now, age, sizeof(age));
                if ((r = events_text(&events, json_object_get(w, "events"))) < 0 && r != -ENOBUFS)
                        break;
                if ((r = last_delivery_text(&last, json_object_get(w, "lastDelivery"), now)) < 0 &&
                    r != -ENOBUFS)
                        break;
                if ((r = cm_cli_table_add(&t, cm_cli_json_str(w, "name"))) < 0 ||
                    (r = cm_cli_table_add(&t, cm_cli_json_str(w, "url"))) < 0 ||
                    (r = cm_cli_table_add(&t, events.buf)) < 0 || (r = cm_cli_table_add(&t, last.buf)) < 0 ||
                    (r = cm_cli_table_add(&t, pending)) < 0 || (r = cm_cli_table_add(&t, age)) < 0)
                        break;
        }
        if (r >= 0)
                (void) cm_cli_table_print(cli, &t);
        cm_cli_table_done(&t);
        return r < 0 ? cm_cli_error(cli, "out of memory") : CM_EXIT_OK;
}

/* One webhook as detail lines. */
static int print_webhook(struct cm_cli *cli, const json_t *w) {
        _cleanup_strbuf_ struct strbuf events = STRBUF_INIT(LINE_MAX_BYTES),
                                       last = STRBUF_INIT(LINE_MAX_BYTES);
        const json_t *ld = json_object_get(w, "lastDelivery");
        char pending[32];
        int r;

        if (cli->output != CM_OUTPUT_TABLE)
                return cm_cli_print_document(cli, w);
        int_text(json_object_get(w, "pendingEvents"), pending, sizeof(pending));
        r = events_text(&events, json_object_get(w, "events"));
        if (r >= 0)
                r = last_delivery_text(&last, ld, cm_now_usec());
        if (r >= 0 && json_is_integer(json_object_get(ld, "eventId")))
                r = strbuf_addf(&last, ", event %" JSON_INTEGER_FORMAT,
                                json_integer_value(json_object_get(ld, "eventId")));
        if (r >= 0 && (r = detail(cli, "Name:", cm_cli_json_str(w, "name"))) >= 0 &&
            (r = detail(cli, "URL:", cm_cli_json_str(w, "url"))) >= 0 &&
            (r = detail(cli, "Secret:", cm_cli_json_str(w, "secret"))) >= 0 &&
            (r = detail(cli, "Events:", events.buf)) >= 0 &&
            (r = detail(cli, "Created:", cm_cli_json_str(w, "created"))) >= 0 &&
            (r = detail(cli, "Last delivery:", last.buf)) >= 0)
                r = detail(cli, "Pending events:", pending);
        return r < 0 ? cm_cli_error(cli, "out of memory") : CM_EXIT_OK;
}

static int webhook_create(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                          int argc, char **argv) {
        const char *url = NULL, *secret = NULL, *events = NULL;
        const struct cm_cli_opt opts[] = {
                { "url", 0, CM_CLI_OPT_STRING, &url },
                { "secret", 0, CM_CLI_OPT_STRING, &secret },
                { "events", 0, CM_CLI_OPT_STRING, &events },
        };
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        json_t *body = NULL, *list = NULL, *answer = NULL;
        const char *pos[1];
        size_t n_pos;
        int ret = CM_EXIT_FAILURE;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (!url)
                return cm_cli_usage_error(cli, noun, verb,
                                          "--url URL is required: where the events are POSTed");
        if (!strneq(url, "http://", 7) && !strneq(url, "https://", 8))
                return cm_cli_usage_error(cli, noun, verb,
                                          "--url must start with http:// or https://, not '%s'", url);
        if (!secret)
                return cm_cli_usage_error(
                        cli, noun, verb,
                        "--secret SECRETNAME is required: the environment's secret that holds "
                        "the signing key (`clustermgmt secret create SECRETNAME --from-file "
                        "FILE` stores one)");

        body = json_pack("{s:s, s:s, s:s}", "name", pos[0], "url", url, "secret", secret);
        if (!body)
                return cm_cli_error(cli, "out of memory");
        if (events) {
                const char *p = events;

                list = json_array();
                if (!list || json_object_set(body, "events", list) < 0) {
                        ret = cm_cli_error(cli, "out of memory");
                        goto out;
                }
                for (;;) {
                        size_t n = strcspn(p, ",");

                        if (n == 0) {
                                ret = cm_cli_usage_error(cli, noun, verb,
                                                         "--events takes event types separated by commas "
                                                         "(ConditionChanged,PhaseChanged), not '%s'",
                                                         events);
                                goto out;
                        }
                        if (json_array_append_new(list, json_stringn(p, n)) < 0) {
                                ret = cm_cli_error(cli, "out of memory");
                                goto out;
                        }
                        if (!p[n])
                                break;
                        p += n + 1;
                }
        }
        if (cm_cli_env_path(cli, &path, "webhooks", NULL, NULL) < 0) {
                ret = cm_cli_error(cli, "the environment name is too long");
                goto out;
        }
        if (cm_cli_call(cli, "POST", path.buf, body, NULL, &answer, NULL) < 0)
                goto out;
        if (cli->output != CM_OUTPUT_TABLE && answer)
                ret = cm_cli_print_document(cli, answer);
        else {
                fprintf(cli->out, "webhook %s created\n", pos[0]);
                ret = CM_EXIT_OK;
        }
out:
        json_decref(answer);
        json_decref(list);
        json_decref(body);
        return ret;
}

static int webhook_list(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                        int argc, char **argv) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        json_t *items = NULL;
        size_t n_pos;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, NULL, 0, NULL, 0, 0, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (cm_cli_env_path(cli, &path, "webhooks", NULL, NULL) < 0)
                return cm_cli_error(cli, "the environment name is too long");
        if (cm_cli_list(cli, path.buf, 0, &items) < 0)
                return CM_EXIT_FAILURE;
        r = cli->output == CM_OUTPUT_TABLE ? print_webhooks(cli, items) : cm_cli_print_document(cli, items);
        json_decref(items);
        return r;
}

static int webhook_get(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                       int argc, char **argv) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        const char *pos[1];
        json_t *w = NULL;
        size_t n_pos;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, NULL, 0, pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (cm_cli_env_path(cli, &path, "webhooks", pos[0], NULL) < 0)
                return cm_cli_error(cli, "the name is too long");
        if (cm_cli_call(cli, "GET", path.buf, NULL, NULL, &w, NULL) < 0)
                return CM_EXIT_FAILURE;
        if (!json_is_object(w)) {
                json_decref(w);
                return cm_cli_error(cli, "the answer is not a webhook");
        }
        r = print_webhook(cli, w);
        json_decref(w);
        return r;
}

static int webhook_delete(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                          int argc, char **argv) {
        return cm_cli_delete_command(cli, noun, verb, argc, argv, "webhooks", "webhook");
}

static int print_deliveries(struct cm_cli *cli, const json_t *items) {
        static const char *const headers[] = { "TIME",   "EVENT",   "TYPE", "ATTEMPT",
                                               "STATUS", "OUTCOME", "ERROR" };
        struct cm_cli_table t = {};
        const json_t *d;
        size_t i;
        int r;

        r = cm_cli_table_init(&t, headers, ELEMENTSOF(headers));
        json_array_foreach(items, i, d) {
                const json_t *code = json_object_get(d, "statusCode");
                char event[32], attempt[32], status[32];

                if (r < 0)
                        break;
                int_text(json_object_get(d, "eventId"), event, sizeof(event));
                int_text(json_object_get(d, "attempt"), attempt, sizeof(attempt));
                /* No status when the request got no answer (a refused connection, a timeout). */
                int_text(json_integer_value(code) > 0 ? code : NULL, status, sizeof(status));
                if ((r = cm_cli_table_add(&t, cm_cli_json_str(d, "time"))) < 0 ||
                    (r = cm_cli_table_add(&t, event)) < 0 ||
                    (r = cm_cli_table_add(&t, cm_cli_json_str(d, "eventType"))) < 0 ||
                    (r = cm_cli_table_add(&t, attempt)) < 0 || (r = cm_cli_table_add(&t, status)) < 0 ||
                    (r = cm_cli_table_add(&t, cm_cli_json_str(d, "outcome"))) < 0 ||
                    (r = cm_cli_table_add(&t, cm_cli_json_str(d, "error"))) < 0)
                        break;
        }
        if (r >= 0)
                (void) cm_cli_table_print(cli, &t);
        cm_cli_table_done(&t);
        return r < 0 ? cm_cli_error(cli, "out of memory") : CM_EXIT_OK;
}

static int webhook_deliveries(struct cm_cli *cli, const struct cm_cli_noun *noun,
                              const struct cm_cli_verb *verb, int argc, char **argv) {
        const char *limit_s = NULL;
        const struct cm_cli_opt opts[] = {
                { "limit", 0, CM_CLI_OPT_STRING, &limit_s },
        };
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        const json_t *items;
        const char *pos[1];
        json_t *page = NULL;
        unsigned limit = 0;
        size_t n_pos;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (limit_s && parse_number_flag(cli, noun, verb, "limit", limit_s, 1, LIST_LIMIT_MAX, &limit) < 0)
                return CM_EXIT_USAGE;
        if (cm_cli_env_path(cli, &path, "webhooks", pos[0], "deliveries") < 0 ||
            (limit > 0 && strbuf_addf(&path, "?limit=%u", limit) < 0))
                return cm_cli_error(cli, "the name is too long");
        if (cm_cli_call(cli, "GET", path.buf, NULL, NULL, &page, NULL) < 0)
                return CM_EXIT_FAILURE;
        items = json_object_get(page, "items");
        if (!json_is_array(items))
                r = cm_cli_error(cli, "the answer to GET %s has no \"items\" list", path.buf);
        else if (cli->output != CM_OUTPUT_TABLE)
                r = cm_cli_print_document(cli, page);
        else
                r = print_deliveries(cli, items);
        json_decref(page);
        return r;
}

static const struct cm_cli_verb webhook_verbs[] = {
        { "create", "NAME --url URL --secret SECRETNAME [--events TYPE,TYPE...]",
          "POST the environment's events to URL, signed with the key in the secret SECRETNAME\n"
          "      (all event types unless --events; admin).",
          webhook_create },
        { "list", "", "List the webhooks with their last delivery and the events waiting.", webhook_list },
        { "get", "NAME", "Show one webhook.", webhook_get },
        { "delete", "NAME", "Stop delivering to a webhook and forget it (admin).", webhook_delete },
        { "deliveries", "NAME [--limit N]", "List the webhook's delivery attempts, newest first.",
          webhook_deliveries },
};

const struct cm_cli_noun cm_cli_noun_webhook = {
        .name = "webhook",
        .summary = "POST events to an HTTP endpoint: create, list, get, delete, deliveries",
        .description =
                "Each event of the environment (see `clustermgmt events --help`) is POSTed as JSON to the\n"
                "webhook's URL, in order, with the headers X-CrateKube-Event, X-CrateKube-Delivery,\n"
                "X-CrateKube-Timestamp and X-CrateKube-Signature: sha256=<hex HMAC-SHA256 of\n"
                "\"TIMESTAMP.BODY\">, keyed with an environment secret. A delivery that does not get a\n"
                "2xx is retried with backoff (8 attempts), then given up.\n"
                "\n"
                "  clustermgmt secret create hook-key --from-file key.txt\n"
                "  clustermgmt webhook create ops --url https://hooks.example.com/x --secret hook-key \\\n"
                "      --events ConditionChanged,PhaseChanged",
        .verbs = webhook_verbs,
        .n_verbs = ELEMENTSOF(webhook_verbs),
};

/* ---- monitoring settings ------------------------------------------------------------------- */

static int print_settings(struct cm_cli *cli, const json_t *doc) {
        char buf[96];
        int r;

        if (cli->output != CM_OUTPUT_TABLE)
                return cm_cli_print_document(cli, doc);
        (void) snprintf(buf, sizeof(buf), "every %" JSON_INTEGER_FORMAT " s",
                        json_integer_value(json_object_get(doc, "intervalSeconds")));
        r = detail(cli, "Probe interval:", buf);
        (void) snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT " failed probes in a row",
                        json_integer_value(json_object_get(doc, "failureThreshold")));
        if (r >= 0)
                r = detail(cli, "Failure threshold:", buf);
        (void) snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT " days before a certificate expires",
                        json_integer_value(json_object_get(doc, "certificateWarningDays")));
        if (r >= 0)
                r = detail(cli, "Certificate warning:", buf);
        int_text(json_object_get(doc, "version"), buf, sizeof(buf));
        if (r >= 0)
                r = detail(cli, "Version:", buf);
        return r < 0 ? cm_cli_error(cli, "out of memory") : CM_EXIT_OK;
}

static int monitoring_get(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                          int argc, char **argv) {
        return cm_cli_settings_get_command(cli, noun, verb, argc, argv, "monitoring", "monitoring settings",
                                           print_settings);
}

static int monitoring_set(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                          int argc, char **argv) {
        const char *interval_s = NULL, *threshold_s = NULL, *days_s = NULL;
        const struct cm_cli_opt opts[] = {
                { "interval", 0, CM_CLI_OPT_STRING, &interval_s },
                { "failure-threshold", 0, CM_CLI_OPT_STRING, &threshold_s },
                { "cert-warning-days", 0, CM_CLI_OPT_STRING, &days_s },
        };
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        const struct {
                const char *flag;
                const char *key;
                const char *const *value; /* the flag's value once parsed */
                unsigned lo, hi;
        } fields[] = {
                { "interval", "intervalSeconds", &interval_s, 1, 3600 },
                { "failure-threshold", "failureThreshold", &threshold_s, 1, 10 },
                { "cert-warning-days", "certificateWarningDays", &days_s, 0, 365 },
        };
        unsigned values[ELEMENTSOF(fields)] = {};
        json_t *doc = NULL;
        size_t n_pos;
        int ret;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), NULL, 0, 0, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (!interval_s && !threshold_s && !days_s)
                return cm_cli_usage_error(cli, noun, verb,
                                          "say what to change: --interval SECONDS, --failure-threshold N or "
                                          "--cert-warning-days D");
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                if (*fields[i].value && parse_number_flag(cli, noun, verb, fields[i].flag, *fields[i].value,
                                                          fields[i].lo, fields[i].hi, &values[i]) < 0)
                        return CM_EXIT_USAGE;

        /* Read, change what was asked, write back only if nobody changed the settings in between. */
        if (cm_cli_settings_get(cli, "monitoring", "monitoring settings", &path, &doc) < 0)
                return CM_EXIT_FAILURE;
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                if (*fields[i].value &&
                    json_object_set_new(doc, fields[i].key, json_integer((json_int_t) values[i])) < 0) {
                        json_decref(doc);
                        return cm_cli_error(cli, "out of memory");
                }
        ret = cm_cli_settings_put(cli, path.buf, doc, print_settings);
        json_decref(doc);
        return ret;
}

static const struct cm_cli_verb monitoring_verbs[] = {
        { "get", "", "Show how the environment's clusters are probed.", monitoring_get },
        { "set", "[--interval SECONDS] [--failure-threshold N] [--cert-warning-days D]",
          "Change the given settings, keeping the others (admin). Bounds: interval 1-3600 s,\n"
          "      threshold 1-10 failed probes in a row, warning 0-365 days before a certificate expires.",
          monitoring_set },
};

const struct cm_cli_noun cm_cli_noun_monitoring = {
        .name = "monitoring",
        .summary = "how clusters are probed for health: get, set",
        .description = "The service probes every Ready or Updating cluster of the environment at an "
                       "interval and sets\n"
                       "its health conditions (`clustermgmt cluster health NAME`); the API server counts as "
                       "down after\n"
                       "the failure threshold of failed probes in a row.\n"
                       "\n"
                       "  clustermgmt monitoring set --interval 60 --failure-threshold 3",
        .verbs = monitoring_verbs,
        .n_verbs = ELEMENTSOF(monitoring_verbs),
};
