/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "api/documents.h"
#include "api/encode.h"
#include "api/json.h"
#include "base/log.h"
#include "base/parse.h"
#include "base/util.h"
#include "server/handlers.h"
#include "server/pagecache.h"
#include "server/server_internal.h"

extern const char cm_openapi_json[];
extern const size_t cm_openapi_json_len;

#define LIST_DEFAULT 100
#define LIST_MAX 500

/* ?limit= in 1..LIST_MAX; replies 400 and returns -EINVAL when malformed. */
static int parse_limit(struct cm_req *req, unsigned *ret) {
        const char *v = cm_req_query(req, "limit");
        unsigned n;

        if (!v) {
                *ret = LIST_DEFAULT;
                return 0;
        }
        if (safe_atou(v, &n) < 0 || n < 1 || n > LIST_MAX) {
                struct cm_problem p;

                cm_problem_init(&p);
                cm_problem_add(&p, "limit", "must be a whole number from 1 to %d", LIST_MAX);
                cm_problem_set(&p, 400, "malformed", "Malformed request", "invalid query parameter");
                cm_reply_problem(req, &p);
                cm_problem_done(&p);
                return -EINVAL;
        }
        *ret = n;
        return 0;
}

/* A name page token: the last name of the previous page (a DNS label). */
static int parse_name_token(struct cm_req *req, const char **ret) {
        const char *v = cm_req_query(req, "pageToken");

        if (v && !cm_dns_label_valid(v)) {
                struct cm_problem p;

                cm_problem_init(&p);
                cm_problem_add(&p, "pageToken", "not a page token of this list");
                cm_problem_set(&p, 400, "malformed", "Malformed request", "invalid query parameter");
                cm_reply_problem(req, &p);
                cm_problem_done(&p);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

/*
 * The version in an If-Match value: "<n>" with at most max_digits characters between the quotes, or
 * (unless quoted_only) n alone; -1 for none and "*". -EINVAL otherwise.
 */
static int if_match_version(const char *v, bool quoted_only, size_t max_digits, int64_t *ret) {
        char buf[32];
        size_t n;
        uint64_t u;

        if (!v || streq(v, "*")) {
                *ret = -1;
                return 0;
        }
        n = strlen(v);
        if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
                if (n - 2 > max_digits || n - 2 >= sizeof(buf))
                        return -EINVAL;
                memcpy(buf, v + 1, n - 2);
                buf[n - 2] = 0;
        } else if (quoted_only || cm_strlcpy(buf, v, sizeof(buf)) < 0)
                return -EINVAL;
        if (safe_atou64(buf, &u) < 0 || u > INT64_MAX)
                return -EINVAL;
        *ret = (int64_t) u;
        return 0;
}

/* If-Match: "<resourceVersion>" (quotes optional); -1 when absent. Replies 400 when malformed. */
static int parse_if_match(struct cm_req *req, int64_t *ret) {
        if (if_match_version(cm_req_header(req, "If-Match"), false, 31, ret) >= 0)
                return 0;
        cm_reply_problem_simple(req, 400, "malformed", "Malformed request",
                                "If-Match must be the cluster's resourceVersion in quotes, like \"12\"");
        return -EINVAL;
}

/* ---- settings documents of an environment (monitoring, customer access, policies) ---- */

int cm_settings_if_match(struct cm_req *req, int64_t *ret) {
        /* only the quoted version, as GET's ETag has it */
        if (if_match_version(cm_req_header(req, "If-Match"), true, 29, ret) >= 0)
                return 0;
        cm_reply_problem_simple(req, 400, "malformed", "Malformed request",
                                "If-Match must be the quoted version of the settings (the ETag of GET)");
        return -EINVAL;
}

void cm_settings_etag(struct cm_req *req, int64_t version) {
        char etag[32];

        (void) cm_snprintf(etag, sizeof(etag), "\"%" PRIi64 "\"", version);
        (void) cm_reply_header(req, "ETag", etag);
}

int cm_settings_add_document(struct cm_req *req, const struct strbuf *doc, int64_t version) {
        int r;

        if (doc->len < 2 || doc->buf[doc->len - 1] != '}')
                return -EBADMSG;
        r = strbuf_add(&req->out, doc->buf, doc->len - 1);
        if (r >= 0)
                r = strbuf_addf(&req->out, ",\"version\":%" PRIi64 "}", version);
        if (r >= 0)
                cm_settings_etag(req, version);
        return r;
}

int cm_settings_store(struct cm_req *req, const char *kind, const json_t *doc, int64_t expected,
                      int64_t *ret_version) {
        _cleanup_free_ char *stored = cm_json_canonical(doc);

        if (!stored)
                return -ENOMEM;
        return STORE_CALL(req->svc->store, env_settings_put, req->params[0], kind, stored, expected,
                          cm_now_usec(), ret_version);
}

void cm_settings_reply(struct cm_req *req, int r, struct cm_problem *p, const char *what, int64_t expected) {
        const char *env = req->params[0];

        if (r == -ENOENT && !p)
                return cm_reply_not_found(req, "environment", env);
        if (r == -ENOENT)
                cm_problem_not_found(p, "environment", env);
        else if (r == -ESTALE && p)
                cm_problem_set(p, 412, "precondition-failed", "Precondition failed",
                               "the %s settings of environment '%s' changed since version %" PRIi64
                               "; read them again and retry",
                               what, env, expected);
        if (r < 0)
                return cm_reply_error(req, r, p);
        cm_reply(req, 200);
}

void cm_handle_healthz(struct cm_req *req) {
        if (strbuf_adds(&req->out, "{\"status\":\"ok\"}") < 0)
                return cm_reply_error(req, -ENOMEM, NULL);
        cm_reply(req, 200);
}

void cm_handle_readyz(struct cm_req *req) {
        int r = STORE_CALL(req->svc->store, ping);
        bool ok = r >= 0;

        if (strbuf_addf(&req->out, "{\"status\":\"%s\",\"checks\":{\"store\":\"%s\"}}",
                        ok ? "ok" : "unavailable",
                        ok             ? "ok"
                        : r == -EPROTO ? "migrations pending"
                                       : "unreachable") < 0)
                return cm_reply_error(req, -ENOMEM, NULL);
        cm_reply(req, ok ? 200 : 503);
}

void cm_handle_metrics(struct cm_req *req) {
        int r = cm_metrics_render(req->srv, &req->out);

        if (r < 0)
                return cm_reply_error(req, r, NULL);
        req->content_type = "text/plain; version=0.0.4; charset=utf-8";
        cm_reply(req, 200);
}

void cm_handle_openapi(struct cm_req *req) {
        if (strbuf_add(&req->out, cm_openapi_json, cm_openapi_json_len) < 0)
                return cm_reply_error(req, -ENOMEM, NULL);
        cm_reply(req, 200);
}

void cm_handle_env_create(struct cm_req *req) {
        _cleanup_(cm_env_doc_done) struct cm_env_doc doc = {};
        struct cm_environment e = {};
        struct cm_problem p;
        char loc[128];
        int r;

        cm_problem_init(&p);
        r = cm_env_doc_decode(req->body.buf, req->body.len, &doc, &p);
        if (r < 0)
                goto fail;
        e = (struct cm_environment){ .name = doc.name,
                                     .labels_json = doc.labels_json,
                                     .created_usec = cm_now_usec() };
        r = STORE_CALL(req->svc->store, env_create, &e);
        if (r == -EEXIST) {
                cm_problem_set(&p, 409, "conflict", "Conflict", "environment '%s' already exists", doc.name);
                goto fail;
        }
        if (r < 0)
                goto fail;
        r = cm_encode_environment(&req->out, &e);
        if (r < 0)
                goto fail;
        (void) cm_snprintf(loc, sizeof(loc), "/v1/environments/%s", doc.name);
        (void) cm_reply_header(req, "Location", loc);
        cm_reply(req, 201);
        cm_problem_done(&p);
        return;
fail:
        cm_reply_error(req, r, &p);
        cm_problem_done(&p);
}

/* The environments the caller has a role in (all of them for a global admin), by name, paged. */
void cm_handle_env_list(struct cm_req *req) {
        _cleanup_free_ char *cursor = NULL;
        const char *after;
        char last[64] = "";
        unsigned limit, shown = 0;
        bool more = false;
        int r;

        if (parse_limit(req, &limit) < 0 || parse_name_token(req, &after) < 0)
                return;
        if (after && !(cursor = strdup(after)))
                return cm_reply_error(req, -ENOMEM, NULL);
        r = strbuf_adds(&req->out, "{\"items\":[");
        while (r >= 0 && !more) {
                struct cm_environment *items = NULL;
                size_t n = 0;

                r = STORE_CALL(req->svc->store, env_list, cursor, limit + 1, &items, &n);
                for (size_t i = 0; r >= 0 && i < n; i++) {
                        enum cm_role role;

                        r = cm_auth_env_role(req, items[i].name, &role);
                        if (r < 0 || role == CM_ROLE_NONE)
                                continue;
                        if (shown == limit) {
                                more = true;
                                break;
                        }
                        if (shown++ > 0)
                                r = strbuf_addch(&req->out, ',');
                        if (r >= 0)
                                r = cm_encode_environment(&req->out, &items[i]);
                        (void) cm_strlcpy(last, items[i].name, sizeof(last));
                }
                free(cursor);
                cursor = n > 0 ? strdup(items[n - 1].name) : NULL;
                if (n > 0 && !cursor)
                        r = -ENOMEM;
                cm_environment_array_free(items, n);
                if (n <= limit)
                        break;
        }
        if (r >= 0)
                r = cm_encode_list_end(&req->out, more ? last : NULL);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 200);
}

void cm_handle_env_get(struct cm_req *req) {
        _cleanup_(cm_environment_done) struct cm_environment e = {};
        int r;

        r = STORE_CALL(req->svc->store, env_get, req->params[0], &e);
        if (r == -ENOENT)
                return cm_reply_not_found(req, "environment", req->params[0]);
        if (r < 0 || (r = cm_encode_environment(&req->out, &e)) < 0)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 200);
}

void cm_handle_env_delete(struct cm_req *req) {
        int r;

        r = STORE_CALL(req->svc->store, env_delete, req->params[0]);
        if (r >= 0 || r == -ENOENT)
                cm_cache_invalidate(&req->srv->env_cache, req->params[0]);
        if (r == -ENOENT)
                return cm_reply_not_found(req, "environment", req->params[0]);
        if (r == -ENOTEMPTY)
                return cm_reply_problem_simple(req, 409, "conflict", "Conflict",
                                               "the environment still has clusters; delete them first");
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 204);
}

static int reply_operation(struct cm_req *req, int status, const struct cm_operation *op) {
        int r;

        r = cm_encode_operation(&req->out, op);
        if (r < 0)
                return r;
        cm_reply(req, status);
        return 0;
}

void cm_handle_cluster_create(struct cm_req *req) {
        _cleanup_(cm_operation_done) struct cm_operation op = {};
        struct cm_problem p;
        char loc[256];
        int r;

        cm_problem_init(&p);
        r = cm_service_create_cluster(req->svc, req->principal.name, req->params[0], req->body.buf ?: "",
                                      req->body.len, &p, &op);
        if (r < 0) {
                cm_reply_error(req, r, &p);
                goto out;
        }
        (void) cm_snprintf(loc, sizeof(loc), "/v1/environments/%s/clusters/%s", op.env, op.cluster_name);
        (void) cm_reply_header(req, "Location", loc);
        r = reply_operation(req, 202, &op);
        if (r < 0)
                cm_reply_error(req, r, NULL);
out:
        cm_problem_done(&p);
}

struct list_page {
        struct strbuf *out;
        unsigned limit;
        unsigned seen;
        char last[64];
};

static int encode_cluster_item(const struct cm_cluster *c, void *userdata) {
        struct list_page *pg = userdata;
        int r;

        /* One more than asked tells whether there is a next page; it is not shown. */
        if (pg->seen++ >= pg->limit)
                return 0;
        if (pg->seen > 1 && (r = strbuf_addch(pg->out, ',')) < 0)
                return r;
        (void) cm_strlcpy(pg->last, c->name, sizeof(pg->last));
        return cm_encode_cluster(pg->out, c);
}

/* Answers with a cached blob, handed to libmicrohttpd without a copy (it drops the reference). */
static void reply_blob(struct cm_req *req, struct cm_blob *b) {
        struct MHD_Response *resp;

        resp = MHD_create_response_from_buffer_with_free_callback_cls(b->len, b->data, cm_blob_unref_cb, b);
        if (!resp) {
                cm_blob_unref(b);
                return cm_reply_error(req, -ENOMEM, NULL);
        }
        if (b->tag[0])
                (void) cm_reply_header(req, "ETag", b->tag);
        cm_reply_stream(req, 200, "application/json", resp);
}

/*
 * The version that tags cached answers about env's clusters: the store's process-wide change counter
 * when it has one (no database read), else the environment's clusters version.
 */
static int read_version(struct cm_req *req, uint64_t *ret) {
        struct cm_store *store = req->svc->store;
        int64_t v;
        int r;

        if (store->ops->change_counter)
                return STORE_CALL(store, change_counter, ret);
        r = STORE_CALL(store, env_clusters_version, req->params[0], &v);
        if (r < 0)
                return r;
        *ret = (uint64_t) v;
        return 0;
}

void cm_handle_cluster_list(struct cm_req *req) {
        struct list_page pg = { .out = &req->out };
        const char *after;
        char key[CM_PAGE_CACHE_KEY_MAX];
        uint64_t version;
        size_t start;
        int r;

        if (parse_limit(req, &pg.limit) < 0 || parse_name_token(req, &after) < 0)
                return;
        /* The version first: a page built after reading it is at least as new (store.h). */
        r = read_version(req, &version);
        if (r == -ENOENT)
                return cm_reply_not_found(req, "environment", req->params[0]);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        (void) cm_snprintf(key, sizeof(key), "%s/%s/%u", req->params[0], after ?: "", pg.limit);
        {
                struct cm_blob *b = cm_page_cache_get(&req->srv->list_cache, key, version);
                if (b)
                        return reply_blob(req, b);
        }

        /* Room for a typical page up front: no regrowth while encoding. */
        r = strbuf_grow(&req->out, MIN((size_t) pg.limit * 640, (size_t) 1 << 20));
        start = req->out.len;
        if (r >= 0)
                r = strbuf_addl(&req->out, "{\"items\":[");
        if (r >= 0)
                r = STORE_CALL(req->svc->store, cluster_list_each, req->params[0], after, pg.limit + 1,
                               encode_cluster_item, &pg);
        if (r >= 0)
                r = cm_encode_list_end(&req->out, pg.seen > pg.limit ? pg.last : NULL);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        {
                struct cm_blob *b = cm_blob_new(req->out.buf + start, req->out.len - start, NULL);
                cm_page_cache_put(&req->srv->list_cache, key, version, b);
                cm_blob_unref(b);
        }
        cm_reply(req, 200);
}

void cm_handle_cluster_get(struct cm_req *req) {
        _cleanup_(cm_cluster_done) struct cm_cluster c = {};
        char key[CM_PAGE_CACHE_KEY_MAX], etag[32];
        uint64_t version = 0;
        bool cacheable;
        int r;

        /* Only with a change counter: a per-cluster version would cost the database read it saves. */
        cacheable = req->svc->store->ops->change_counter && read_version(req, &version) >= 0 &&
                    cm_snprintf(key, sizeof(key), "%s/%s", req->params[0], req->params[1]) >= 0;
        if (cacheable) {
                struct cm_blob *b = cm_page_cache_get(&req->srv->cluster_cache, key, version);
                if (b)
                        return reply_blob(req, b);
        }

        r = STORE_CALL(req->svc->store, cluster_get, req->params[0], req->params[1], &c);
        if (r == -ENOENT)
                return cm_reply_not_found(req, "cluster", req->params[1]);
        if (r < 0 || (r = cm_encode_cluster(&req->out, &c)) < 0)
                return cm_reply_error(req, r, NULL);
        (void) cm_snprintf(etag, sizeof(etag), "\"%" PRIi64 "\"", c.resource_version);
        if (cacheable) {
                struct cm_blob *b = cm_blob_new(req->out.buf, req->out.len, etag);
                cm_page_cache_put(&req->srv->cluster_cache, key, version, b);
                cm_blob_unref(b);
        }
        (void) cm_reply_header(req, "ETag", etag);
        cm_reply(req, 200);
}

void cm_handle_cluster_update(struct cm_req *req) {
        _cleanup_(cm_operation_done) struct cm_operation op = {};
        struct cm_problem p;
        int64_t rv;
        int r;

        if (parse_if_match(req, &rv) < 0)
                return;
        cm_problem_init(&p);
        r = cm_service_update_cluster(req->svc, req->principal.name, req->params[0], req->params[1], rv,
                                      req->body.buf ?: "", req->body.len, &p, &op);
        if (r < 0 || (r = reply_operation(req, 202, &op)) < 0)
                cm_reply_error(req, r, &p);
        cm_problem_done(&p);
}

void cm_handle_cluster_delete(struct cm_req *req) {
        _cleanup_(cm_operation_done) struct cm_operation op = {};
        struct cm_problem p;
        int64_t rv;
        int r;

        if (parse_if_match(req, &rv) < 0)
                return;
        cm_problem_init(&p);
        r = cm_service_delete_cluster(req->svc, req->principal.name, req->params[0], req->params[1], rv, &p,
                                      &op);
        if (r < 0 || (r = reply_operation(req, 202, &op)) < 0)
                cm_reply_error(req, r, &p);
        cm_problem_done(&p);
}

/* POST .../snapshots, .../restore, .../rotate-certs: an operation on a running cluster. */
static void cluster_action(struct cm_req *req, enum cm_op_type type) {
        _cleanup_(cm_operation_done) struct cm_operation op = {};
        struct cm_problem p;
        char loc[160];
        int r;

        cm_problem_init(&p);
        r = cm_service_cluster_action(req->svc, req->principal.name, req->params[0], req->params[1], type,
                                      req->body.buf ?: "", req->body.len, &p, &op);
        if (r >= 0) {
                (void) cm_snprintf(loc, sizeof(loc), "/v1/operations/%s", op.id);
                (void) cm_reply_header(req, "Location", loc);
                r = reply_operation(req, 202, &op);
        }
        if (r < 0)
                cm_reply_error(req, r, &p);
        cm_problem_done(&p);
}

void cm_handle_cluster_snapshot(struct cm_req *req) {
        cluster_action(req, CM_OP_SNAPSHOT);
}

void cm_handle_cluster_restore(struct cm_req *req) {
        cluster_action(req, CM_OP_RESTORE);
}

void cm_handle_cluster_rotate_certs(struct cm_req *req) {
        cluster_action(req, CM_OP_ROTATE_CERTS);
}

/* One snapshot taken through the service: its name from the result (the parameters before). */
static int add_snapshot(struct strbuf *out, const struct cm_operation *o, bool first) {
        const char *src = o->result_json ?: o->params_json;
        json_t *doc = src ? json_loads(src, 0, NULL) : NULL;
        const char *name = json_string_value(json_object_get(doc, o->result_json ? "snapshot" : "name"));
        char ts[40];
        int r;

        if (!name) {
                json_decref(doc);
                return 0;
        }
        cm_format_rfc3339(o->finished_usec, ts, sizeof(ts));
        if ((r = strbuf_adds(out, first ? "{\"name\":" : ",{\"name\":")) < 0 ||
            (r = strbuf_add_json_string(out, name)) < 0 ||
            (r = strbuf_addf(out, ",\"createdAt\":\"%s\",\"operation\":", ts)) < 0 ||
            (r = strbuf_add_json_string(out, o->id)) < 0 || (r = strbuf_addch(out, '}')) < 0) {
                json_decref(doc);
                return r;
        }
        json_decref(doc);
        return 1;
}

/* GET .../snapshots: the snapshots taken through the service (succeeded snapshot operations), newest first. */
void cm_handle_cluster_snapshots(struct cm_req *req) {
        _cleanup_(cm_cluster_done) struct cm_cluster c = {};
        int64_t before = 0;
        bool first = true;
        int r;

        if (cm_req_load_cluster(req, &c) < 0)
                return;
        r = strbuf_adds(&req->out, "{\"items\":[");
        for (;;) {
                struct cm_operation *items = NULL;
                size_t n = 0;

                if (r < 0)
                        break;
                r = STORE_CALL(req->svc->store, op_list, req->params[0], req->params[1], before, LIST_MAX,
                               &items, &n);
                if (r < 0)
                        break;
                for (size_t i = 0; i < n && r >= 0; i++) {
                        /* operations of an earlier cluster of the same name are not this one's */
                        if (items[i].type != CM_OP_SNAPSHOT || items[i].state != CM_OP_SUCCEEDED ||
                            !streq(items[i].cluster_id, c.id))
                                continue;
                        r = add_snapshot(&req->out, &items[i], first);
                        if (r > 0)
                                first = false;
                }
                before = n > 0 ? items[n - 1].seq : 0;
                cm_operation_array_free(items, n);
                if (n < LIST_MAX || r < 0)
                        break;
        }
        if (r >= 0)
                r = strbuf_adds(&req->out, "]}");
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 200);
}

void cm_handle_cluster_operations(struct cm_req *req) {
        _cleanup_(cm_cluster_done) struct cm_cluster c = {};
        struct cm_operation *items = NULL;
        const char *tok = cm_req_query(req, "pageToken");
        uint64_t before = 0;
        unsigned limit;
        size_t n = 0, shown;
        int r;

        if (parse_limit(req, &limit) < 0)
                return;
        if (tok && (safe_atou64(tok, &before) < 0 || before > INT64_MAX))
                return cm_reply_problem_simple(req, 400, "malformed", "Malformed request",
                                               "pageToken is not a page token");
        if (cm_req_load_cluster(req, &c) < 0)
                return;
        r = STORE_CALL(req->svc->store, op_list, req->params[0], req->params[1], (int64_t) before, limit + 1,
                       &items, &n);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        shown = MIN(n, (size_t) limit);
        r = strbuf_adds(&req->out, "{\"items\":[");
        for (size_t i = 0; r >= 0 && i < shown; i++) {
                if (i > 0)
                        r = strbuf_addch(&req->out, ',');
                if (r >= 0)
                        r = cm_encode_operation(&req->out, &items[i]);
        }
        if (r >= 0) {
                char next[24];
                if (n > limit)
                        (void) cm_snprintf(next, sizeof(next), "%" PRIi64, items[shown - 1].seq);
                r = cm_encode_list_end(&req->out, n > limit ? next : NULL);
        }
        cm_operation_array_free(items, n);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 200);
}

/* Operations are reached through their environment: one the caller cannot reach is 404. */
static int load_operation(struct cm_req *req, struct cm_operation *ret) {
        int r;

        r = STORE_CALL(req->svc->store, op_get, req->params[0], ret);
        if (r == -ENOENT) {
                cm_reply_not_found(req, "operation", req->params[0]);
                return r;
        }
        if (r < 0) {
                cm_reply_error(req, r, NULL);
                return r;
        }
        return 0;
}

void cm_handle_op_get(struct cm_req *req) {
        _cleanup_(cm_operation_done) struct cm_operation op = {};
        int r;

        if (load_operation(req, &op) < 0)
                return;
        r = reply_operation(req, 200, &op);
        if (r < 0)
                cm_reply_error(req, r, NULL);
}

void cm_handle_op_cancel(struct cm_req *req) {
        _cleanup_(cm_operation_done) struct cm_operation op = {};
        struct cm_problem p;
        int r;

        cm_problem_init(&p);
        r = cm_service_cancel_operation(req->svc, req->params[0], &p, &op);
        if (r < 0 || (r = reply_operation(req, 202, &op)) < 0)
                cm_reply_error(req, r, &p);
        cm_problem_done(&p);
}

/* A followed log: chunks are read from the store as they appear until the operation has ended. */
struct log_stream {
        struct cm_server *srv;
        struct cm_service *svc;
        struct MHD_Connection *conn;
        char op_id[48];
        int64_t last;
        struct strbuf pending;
        size_t pending_off;
        bool ended;
        uint64_t deadline; /* a stream ends after this long; clients reconnect */
};

static void log_stream_free(void *cls) {
        struct log_stream *ls = cls;

        atomic_fetch_sub(&ls->srv->active_streams, 1);
        strbuf_release(&ls->pending);
        free(ls);
}

static ssize_t log_stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
        struct log_stream *ls = cls;
        size_t n;
        int r;

        if (ls->pending_off >= ls->pending.len) {
                _cleanup_(cm_operation_done) struct cm_operation op = {};
                bool terminal;

                strbuf_reset(&ls->pending);
                ls->pending_off = 0;
                if (ls->ended || atomic_load(&ls->srv->stopping) || cm_mono_usec() > ls->deadline)
                        return MHD_CONTENT_READER_END_OF_STREAM;
                /* Read the state first: output written before it ended is then read below. */
                r = STORE_CALL(ls->svc->store, op_get, ls->op_id, &op);
                if (r < 0)
                        return MHD_CONTENT_READER_END_WITH_ERROR;
                terminal = cm_op_state_terminal(op.state);
                r = STORE_CALL(ls->svc->store, op_log_read, ls->op_id, ls->last, &ls->pending, &ls->last);
                if (r < 0)
                        return MHD_CONTENT_READER_END_WITH_ERROR;
                if (ls->pending.len == 0) {
                        if (terminal)
                                return MHD_CONTENT_READER_END_OF_STREAM;
                        cm_server_follow_suspend(ls->srv, ls->conn);
                        return 0;
                }
        }
        n = MIN(max, ls->pending.len - ls->pending_off);
        memcpy(buf, ls->pending.buf + ls->pending_off, n);
        ls->pending_off += n;
        return (ssize_t) n;
}

void cm_handle_op_log(struct cm_req *req) {
        _cleanup_(cm_operation_done) struct cm_operation op = {};
        const char *follow = cm_req_query(req, "follow");
        struct MHD_Response *resp;
        struct log_stream *ls;
        int64_t last = 0;
        int r;

        if (load_operation(req, &op) < 0)
                return;
        if (!follow || streq(follow, "false") || streq(follow, "0")) {
                /* The whole log, up to the buffer's cap. */
                for (;;) {
                        int64_t prev = last;
                        r = STORE_CALL(req->svc->store, op_log_read, op.id, last, &req->out, &last);
                        if (r == -ENOBUFS)
                                break;
                        if (r < 0)
                                return cm_reply_error(req, r, NULL);
                        if (last == prev)
                                break;
                }
                req->content_type = "text/plain; charset=utf-8";
                cm_reply(req, 200);
                return;
        }
        if (!streq(follow, "true") && !streq(follow, "1"))
                return cm_reply_problem_simple(req, 400, "malformed", "Malformed request",
                                               "follow must be true or false");

        ls = new0(struct log_stream, 1);
        if (!ls)
                return cm_reply_error(req, -ENOMEM, NULL);
        ls->srv = req->srv;
        ls->svc = req->svc;
        ls->conn = req->conn;
        ls->deadline = cm_mono_usec() + 3600 * USEC_PER_SEC;
        (void) cm_strlcpy(ls->op_id, op.id, sizeof(ls->op_id));
        strbuf_init(&ls->pending, 256 * 1024);
        atomic_fetch_add(&req->srv->active_streams, 1);
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, log_stream_read, ls,
                                                 log_stream_free);
        if (!resp) {
                log_stream_free(ls);
                return cm_reply_error(req, -ENOMEM, NULL);
        }
        cm_reply_stream(req, 200, "text/plain; charset=utf-8", resp);
}
