/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "api/encode.h"
#include "base/util.h"

/* Appends ,"key":"<time>" (or null); key is a literal without characters to escape. */
static int add_time(struct strbuf *out, const char *key, uint64_t usec) {
        char ts[40];
        int r;

        if ((r = strbuf_addl(out, ",\"")) < 0 || (r = strbuf_adds(out, key)) < 0)
                return r;
        if (usec == 0)
                return strbuf_addl(out, "\":null");
        cm_format_rfc3339(usec, ts, sizeof(ts));
        if ((r = strbuf_addl(out, "\":\"")) < 0 || (r = strbuf_adds(out, ts)) < 0)
                return r;
        return strbuf_addch(out, '"');
}

static int add_raw(struct strbuf *out, const char *json, const char *fallback) {
        return strbuf_adds(out, isempty(json) ? fallback : json);
}

int cm_encode_environment(struct strbuf *out, const struct cm_environment *e) {
        int r;

        if ((r = strbuf_addl(out, "{\"name\":")) < 0 || (r = strbuf_add_json_string(out, e->name)) < 0 ||
            (r = strbuf_addl(out, ",\"labels\":")) < 0 || (r = add_raw(out, e->labels_json, "{}")) < 0 ||
            (r = add_time(out, "createdAt", e->created_usec)) < 0)
                return r;
        return strbuf_addch(out, '}');
}

int cm_encode_cluster(struct strbuf *out, const struct cm_cluster *c) {
        int r;

        if ((r = strbuf_addl(out, "{\"id\":")) < 0 || (r = strbuf_add_json_string(out, c->id)) < 0 ||
            (r = strbuf_addl(out, ",\"name\":")) < 0 || (r = strbuf_add_json_string(out, c->name)) < 0 ||
            (r = strbuf_addl(out, ",\"environment\":")) < 0 ||
            (r = strbuf_add_json_string(out, c->env)) < 0 || (r = strbuf_addl(out, ",\"labels\":")) < 0 ||
            (r = add_raw(out, c->labels_json, "{}")) < 0 || (r = strbuf_addl(out, ",\"spec\":")) < 0 ||
            (r = add_raw(out, c->spec_json, "{}")) < 0 || (r = strbuf_addl(out, ",\"generation\":")) < 0 ||
            (r = strbuf_add_i64(out, c->generation)) < 0 ||
            (r = strbuf_addl(out, ",\"resourceVersion\":\"")) < 0 ||
            (r = strbuf_add_i64(out, c->resource_version)) < 0 ||
            (r = strbuf_addl(out, "\",\"status\":{\"phase\":\"")) < 0 ||
            (r = strbuf_adds(out, cm_phase_to_string(c->phase) ?: "Pending")) < 0 ||
            (r = strbuf_addl(out, "\",\"observedGeneration\":")) < 0 ||
            (r = strbuf_add_i64(out, c->observed_generation)) < 0 ||
            (r = strbuf_addl(out, ",\"conditions\":")) < 0 ||
            (r = add_raw(out, c->conditions_json, "[]")) < 0)
                return r;
        /* Engine-reported facts are members of status: splice the object's inside. */
        if (!isempty(c->status_json) && c->status_json[0] == '{') {
                size_t n = strlen(c->status_json);
                if (n > 2 && c->status_json[n - 1] == '}' &&
                    ((r = strbuf_addch(out, ',')) < 0 ||
                     (r = strbuf_add(out, c->status_json + 1, n - 2)) < 0))
                        return r;
        }
        /* The monitor's summary, written apart from the engine's facts. */
        if (!isempty(c->health_json) && c->health_json[0] == '{' &&
            ((r = strbuf_addl(out, ",\"health\":")) < 0 || (r = strbuf_adds(out, c->health_json)) < 0))
                return r;
        if ((r = strbuf_addch(out, '}')) < 0 || (r = add_time(out, "createdAt", c->created_usec)) < 0 ||
            (r = add_time(out, "updatedAt", c->updated_usec)) < 0)
                return r;
        return strbuf_addch(out, '}');
}

int cm_encode_operation(struct strbuf *out, const struct cm_operation *o) {
        int r;

        if ((r = strbuf_addl(out, "{\"id\":")) < 0 || (r = strbuf_add_json_string(out, o->id)) < 0 ||
            (r = strbuf_addf(out, ",\"type\":\"%s\",\"state\":\"%s\"",
                             cm_op_type_to_string(o->type) ?: "unknown",
                             cm_op_state_to_string(o->state) ?: "unknown")) < 0 ||
            (r = strbuf_addl(out, ",\"environment\":")) < 0 ||
            (r = strbuf_add_json_string(out, o->env)) < 0 || (r = strbuf_addl(out, ",\"cluster\":")) < 0 ||
            (r = strbuf_add_json_string(out, o->cluster_name)) < 0 ||
            (r = strbuf_addf(out,
                             ",\"generation\":%" PRIi64 ",\"attempts\":%u,\"maxAttempts\":%u,\"error\":",
                             o->generation, o->attempts, o->max_attempts)) < 0 ||
            (r = strbuf_add_json_string(out, o->error)) < 0 ||
            (r = strbuf_addf(out, ",\"cancelRequested\":%s,\"requestedBy\":",
                             o->cancel_requested ? "true" : "false")) < 0 ||
            (r = strbuf_add_json_string(out, o->requested_by)) < 0 ||
            (r = add_time(out, "createdAt", o->created_usec)) < 0 ||
            (r = add_time(out, "startedAt", o->started_usec)) < 0 ||
            (r = add_time(out, "finishedAt", o->finished_usec)) < 0 ||
            (r = add_time(out, "nextRunAt", o->state == CM_OP_PENDING ? o->next_run_usec : 0)) < 0)
                return r;
        /* Both are canonical JSON objects written by the service itself. */
        if (o->params_json && ((r = strbuf_addl(out, ",\"params\":")) < 0 ||
                               (r = strbuf_add(out, o->params_json, strlen(o->params_json))) < 0))
                return r;
        if (o->result_json && ((r = strbuf_addl(out, ",\"result\":")) < 0 ||
                               (r = strbuf_add(out, o->result_json, strlen(o->result_json))) < 0))
                return r;
        if (o->policy_json && ((r = strbuf_addl(out, ",\"policy\":")) < 0 ||
                               (r = strbuf_add(out, o->policy_json, strlen(o->policy_json))) < 0))
                return r;
        return strbuf_addch(out, '}');
}

int cm_encode_list_end(struct strbuf *out, const char *next_token) {
        int r;

        r = strbuf_addch(out, ']');
        if (r < 0)
                return r;
        if (next_token) {
                r = strbuf_addl(out, ",\"nextPageToken\":");
                if (r >= 0)
                        r = strbuf_add_json_string(out, next_token);
                if (r < 0)
                        return r;
        }
        return strbuf_addch(out, '}');
}
