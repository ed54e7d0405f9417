/* SPDX-License-Identifier: Apache-2.0 */
/* Audit routes: the records as JSON lines, and the verification of their chain (global admin). */
#include "base/common.h"

#include "base/parse.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "server/handlers.h"
#include "server/server_internal.h"

#define PAGE 1000U
#define PROBLEMS_MAX 100U
#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"

static int encode_record(struct strbuf *out, const struct cm_audit_record *a) {
        char ts[40];
        int r;

        cm_format_rfc3339(a->ts_usec, ts, sizeof(ts));
        if ((r = strbuf_addf(out, "{\"seq\":%" PRIi64 ",\"time\":\"%s\",\"principal\":", a->seq, ts)) < 0 ||
            (r = strbuf_add_json_string(out, a->principal)) < 0 ||
            (r = strbuf_adds(out, ",\"source\":")) < 0 || (r = strbuf_add_json_string(out, a->source)) < 0 ||
            (r = strbuf_adds(out, ",\"requestId\":")) < 0 ||
            (r = strbuf_add_json_string(out, a->request_id)) < 0 ||
            (r = strbuf_adds(out, ",\"action\":")) < 0 || (r = strbuf_add_json_string(out, a->action)) < 0 ||
            (r = strbuf_adds(out, ",\"resource\":")) < 0 ||
            (r = strbuf_add_json_string(out, a->resource)) < 0 ||
            (r = strbuf_adds(out, ",\"outcome\":")) < 0 ||
            (r = strbuf_add_json_string(out, a->outcome)) < 0 ||
            (r = strbuf_addf(out, ",\"status\":%d,\"prevHash\":", a->status)) < 0 ||
            (r = strbuf_add_json_string(out, a->prev_hash)) < 0 ||
            (r = strbuf_adds(out, ",\"hash\":")) < 0 || (r = strbuf_add_json_string(out, a->hash)) < 0)
                return r;
        return strbuf_adds(out, "}\n");
}

/* GET /v1/audit?after=SEQ&limit=N: records after SEQ as JSON lines; X-Next-After for the next page. */
void cm_handle_audit_list(struct cm_req *req) {
        const char *after_s = cm_req_query(req, "after"), *limit_s = cm_req_query(req, "limit");
        struct cm_audit_record *a = NULL;
        uint64_t after = 0;
        unsigned limit = PAGE;
        char next[24];
        size_t n = 0;
        int r;

        if ((after_s && (safe_atou64(after_s, &after) < 0 || after > INT64_MAX)) ||
            (limit_s && (safe_atou(limit_s, &limit) < 0 || limit < 1 || limit > 10000)))
                return cm_reply_problem_simple(req, 400, "malformed", "Malformed request",
                                               "after is a record's seq, limit a number from 1 to 10000");
        r = STORE_CALL(req->svc->store, audit_list, (int64_t) after, limit, &a, &n);
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = encode_record(&req->out, &a[i]);
        (void) cm_snprintf(next, sizeof(next), "%" PRIi64, n ? a[n - 1].seq : (int64_t) after);
        cm_audit_array_free(a, n);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        (void) cm_reply_header(req, "X-Next-After", next);
        req->content_type = "application/x-ndjson";
        cm_reply(req, 200);
}

static int problem(struct strbuf *out, unsigned *count, int64_t seq, const char *what) {
        int r;

        if (++*count > PROBLEMS_MAX)
                return 0;
        r = strbuf_addf(out, "%s{\"seq\":%" PRIi64 ",\"problem\":", *count > 1 ? "," : "", seq);
        if (r >= 0)
                r = strbuf_add_json_string(out, what);
        return r < 0 ? r : strbuf_addch(out, '}');
}

/*
 * GET /v1/audit/verify: walks the chain from the first record. Each record's hash is computed again
 * (a changed field shows), its prev_hash must be the hash of the record before it and its seq the next
 * one (a deleted, inserted or reordered record shows).
 */
void cm_handle_audit_verify(struct cm_req *req) {
        _cleanup_strbuf_ struct strbuf problems = STRBUF_INIT(1024 * 1024);
        char prev[65] = ZERO_HASH, h[65];
        int64_t after = 0, expected = 1;
        unsigned count = 0;
        uint64_t records = 0;
        int r = 0;

        for (;;) {
                struct cm_audit_record *a = NULL;
                size_t n = 0;

                r = STORE_CALL(req->svc->store, audit_list, after, PAGE, &a, &n);
                if (r < 0)
                        break;
                for (size_t i = 0; r >= 0 && i < n; i++) {
                        records++;
                        if (a[i].seq != expected)
                                r = problem(&problems, &count, a[i].seq,
                                            a[i].seq > expected ? "records before this one are missing"
                                                                : "out of order");
                        if (r >= 0 && !streq(a[i].prev_hash ?: "", prev))
                                r = problem(
                                        &problems, &count, a[i].seq,
                                        "does not follow the record before it (one was deleted, inserted or "
                                        "changed before it)");
                        cm_audit_hash(&a[i], a[i].prev_hash ?: "", h);
                        if (r >= 0 && !streq(a[i].hash ?: "", h))
                                r = problem(&problems, &count, a[i].seq,
                                            "altered: its hash does not match its contents");
                        (void) cm_strlcpy(prev, a[i].hash ?: "", sizeof(prev));
                        expected = a[i].seq + 1;
                        after = a[i].seq;
                }
                cm_audit_array_free(a, n);
                if (r < 0 || n < PAGE)
                        break;
        }
        if (r >= 0)
                r = strbuf_addf(&req->out,
                                "{\"ok\":%s,\"records\":%" PRIu64 ",\"lastSeq\":%" PRIi64
                                ",\"lastHash\":\"%s\",\"problemCount\":%u,\"problems\":[",
                                count ? "false" : "true", records, after, prev, count);
        if (r >= 0)
                r = strbuf_add(&req->out, problems.buf ?: "", problems.len);
        if (r >= 0)
                r = strbuf_adds(&req->out, "]}");
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 200);
}
