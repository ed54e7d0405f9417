/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Add-on routes: the definitions of an environment (manifests or a Helm chart; admins change them,
 * viewers read them) and their installations on clusters (operators change them). A change is written
 * to the store, which makes the installations concerned due, and the reconciler is poked; it does the
 * work on the cluster and writes the installation's status. The plan of an installation is computed
 * here, synchronously, against the cluster's API server (server-side dry runs; nothing changes).
 *
 * Manifests and values are configuration: they are answered to whoever may read the definition or the
 * installation, like a cluster's spec, but they are never logged nor quoted in an error.
 */
#include "base/common.h"

#include <limits.h>

#include "addons/apply.h"
#include "addons/definition.h"
#include "addons/helm.h"
#include "addons/reconciler.h"
#include "api/json.h"
#include "api/problem.h"
#include "base/parse.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "kube/client.h"
#include "kube/manifest.h"
#include "lifecycle/statefiles.h"
#include "server/handlers.h"
#include "server/server_internal.h"
#include "vault/vault.h"

/* The state file an engine stores the admin kubeconfig in. */
#define ADMIN_KUBECONFIG_FILE "kube_config_cluster.yml"

/* Work may be due now: the reconciler looks at once (it also polls the store). */
static void poke_reconciler(struct cm_service *svc) {
        cm_addons_reconciler_poke(svc);
}

/* ---- helpers ---------------------------------------------------------------------------------- */

static void reply_problem(struct cm_req *req, struct cm_problem *p) {
        cm_reply_problem(req, p);
        cm_problem_done(p);
}

_printf_(5, 6) static void reply_simple(struct cm_req *req, int status, const char *type, const char *title,
                                        const char *fmt, ...) {
        struct cm_problem p;
        char detail[512];
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(detail, sizeof(detail), fmt, ap);
        va_end(ap);
        cm_problem_init(&p);
        (void) cm_problem_set(&p, status, type, title, "%s", detail);
        reply_problem(req, &p);
}

/* If-Match: "<resourceVersion>" (quotes optional), "*" or none: -1. Replies 400 when malformed. */
static int parse_if_match(struct cm_req *req, int64_t *ret) {
        const char *v = cm_req_header(req, "If-Match");
        char buf[24];
        size_t n;
        uint64_t u;

        if (!v || streq(v, "*")) {
                *ret = -1;
                return 0;
        }
        n = strlen(v);
        if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
                v++;
                n -= 2;
        }
        if (n > 0 && n < sizeof(buf)) {
                memcpy(buf, v, n);
                buf[n] = 0;
                if (safe_atou64(buf, &u) >= 0 && u <= INT64_MAX) {
                        *ret = (int64_t) u;
                        return 0;
                }
        }
        cm_reply_problem_simple(
                req, 400, "malformed", "Malformed request",
                "If-Match must be the resourceVersion in quotes, like \"12\" (the ETag of GET)");
        return -EINVAL;
}

static void set_etag(struct cm_req *req, int64_t version) {
        char etag[32];

        (void) cm_snprintf(etag, sizeof(etag), "\"%" PRIi64 "\"", version);
        (void) cm_reply_header(req, "ETag", etag);
}

static int add_time(struct strbuf *out, const char *key, uint64_t usec) {
        char ts[40];

        cm_format_rfc3339(usec, ts, sizeof(ts));
        return strbuf_addf(out, ",\"%s\":\"%s\"", key, ts);
}

/* The stored object's members without its closing brace; -EBADMSG when it is not an object's text. */
static int add_object_open(struct strbuf *out, const char *json) {
        size_t n = json ? strlen(json) : 0;

        if (n < 2 || json[0] != '{' || json[n - 1] != '}')
                return -EBADMSG;
        return strbuf_add(out, json, n - 1);
}

static int add_addon_tail(struct strbuf *out, const struct cm_addon *a, bool empty) {
        int r;

        if ((r = strbuf_adds(out, empty ? "\"environment\":" : ",\"environment\":")) < 0 ||
            (r = strbuf_add_json_string(out, a->env)) < 0 ||
            (r = strbuf_addf(out, ",\"resourceVersion\":\"%" PRIi64 "\"", a->resource_version)) < 0 ||
            (r = add_time(out, "createdAt", a->created_usec)) < 0 ||
            (r = add_time(out, "updatedAt", a->updated_usec)) < 0)
                return r;
        return strbuf_addch(out, '}');
}

/* A definition: its document with environment, resourceVersion and times. */
static int encode_addon(struct strbuf *out, const struct cm_addon *a) {
        int r = add_object_open(out, a->doc_json);

        if (r < 0)
                return r;
        return add_addon_tail(out, a, streq(a->doc_json, "{}"));
}

/* A list item: the same without manifests, which can be megabytes (GET the definition for them). */
static int encode_addon_summary(struct strbuf *out, const struct cm_addon *a) {
        _cleanup_(cm_json_wipe_and_free) json_t *doc = json_loads(a->doc_json ?: "", 0, NULL);
        _cleanup_free_ char *text = NULL;

        if (!json_is_object(doc))
                return -EBADMSG;
        (void) json_object_del(doc, "manifests");
        text = cm_json_canonical(doc);
        if (!text)
                return -ENOMEM;
        {
                const struct cm_addon b = { .env = a->env,
                                            .doc_json = text,
                                            .resource_version = a->resource_version,
                                            .created_usec = a->created_usec,
                                            .updated_usec = a->updated_usec };
                return encode_addon(out, &b);
        }
}

/* An installation as the API shows it. */
/*
 * The inventory as clients see it: which objects (apiVersion, kind, namespace, name). The uid, managed
 * time and digest the reconciler keeps for drift detection stay inside (a digest of a Secret is not
 * for readers).
 */
static int add_inventory(struct strbuf *out, const char *inventory_json) {
        json_t *inv = json_loads(inventory_json ?: "[]", 0, NULL), *e;
        size_t i;
        int r = strbuf_addch(out, '[');

        json_array_foreach(inv, i, e) {
                static const char *const keys[] = { "apiVersion", "kind", "namespace", "name" };
                bool first = true;

                if (r >= 0 && i > 0)
                        r = strbuf_addch(out, ',');
                if (r >= 0)
                        r = strbuf_addch(out, '{');
                for (size_t k = 0; r >= 0 && k < ELEMENTSOF(keys); k++) {
                        const char *v = json_string_value(json_object_get(e, keys[k]));

                        if (!v)
                                continue;
                        r = strbuf_addf(out, "%s\"%s\":", first ? "" : ",", keys[k]);
                        if (r >= 0)
                                r = strbuf_add_json_string(out, v);
                        first = false;
                }
                if (r >= 0)
                        r = strbuf_addch(out, '}');
        }
        json_decref(inv);
        return r < 0 ? r : strbuf_addch(out, ']');
}

static int encode_install(struct strbuf *out, const struct cm_addon_install *i) {
        const char *status = i->status_json;
        int r;

        if (isempty(status) || streq(status, "{}"))
                status = "{\"phase\":\"Pending\"}";
        if ((r = strbuf_adds(out, "{\"addon\":")) < 0 || (r = strbuf_add_json_string(out, i->addon)) < 0 ||
            (r = strbuf_adds(out, ",\"environment\":")) < 0 ||
            (r = strbuf_add_json_string(out, i->env)) < 0 || (r = strbuf_adds(out, ",\"cluster\":")) < 0 ||
            (r = strbuf_add_json_string(out, i->cluster_name)) < 0)
                return r;
        if (i->addon_version && ((r = strbuf_adds(out, ",\"addonVersion\":")) < 0 ||
                                 (r = strbuf_add_json_string(out, i->addon_version)) < 0))
                return r;
        if ((r = strbuf_adds(out, ",\"values\":")) < 0 ||
            (r = strbuf_adds(out, isempty(i->values_json) ? "{}" : i->values_json)) < 0 ||
            (r = strbuf_addf(out, ",\"generation\":%" PRIi64 ",\"uninstall\":%s,\"status\":", i->generation,
                             i->uninstall ? "true" : "false")) < 0 ||
            (r = strbuf_adds(out, status)) < 0 || (r = strbuf_adds(out, ",\"inventory\":")) < 0 ||
            (r = add_inventory(out, i->inventory_json)) < 0 ||
            (r = strbuf_addf(out, ",\"resourceVersion\":\"%" PRIi64 "\"", i->resource_version)) < 0 ||
            (r = add_time(out, "createdAt", i->created_usec)) < 0 ||
            (r = add_time(out, "updatedAt", i->updated_usec)) < 0)
                return r;
        return strbuf_addch(out, '}');
}

static void reply_addon(struct cm_req *req, int status, const struct cm_addon *a) {
        int r = encode_addon(&req->out, a);

        if (r < 0)
                return cm_reply_error(req, r, NULL);
        set_etag(req, a->resource_version);
        cm_reply(req, status);
}

static void reply_install(struct cm_req *req, int status, const struct cm_addon_install *i) {
        int r = encode_install(&req->out, i);

        if (r < 0)
                return cm_reply_error(req, r, NULL);
        set_etag(req, i->resource_version);
        cm_reply(req, status);
}

/* The {addon} of the path: a name that cannot be an add-on's is a 404 like an unknown one. */
static int check_path_addon(struct cm_req *req, const char *what) {
        const char *name = req->params[req->n_params - 1];

        if (cm_addon_name_valid(name))
                return 0;
        cm_wipe(req->body.buf, req->body.len);
        cm_reply_not_found(req, what, name);
        return -ENOENT;
}

/* ---- definitions -------------------------------------------------------------------------------- */

static void addon_put(struct cm_req *req, bool create) {
        _cleanup_(cm_addon_doc_done) struct cm_addon_doc doc = {};
        _cleanup_(cm_addon_done) struct cm_addon got = {};
        const char *env = req->params[0];
        struct cm_problem p;
        int64_t expected = create ? 0 : -1, version = 0;
        char loc[256];
        int r;

        if (!create && (check_path_addon(req, "add-on") < 0 || parse_if_match(req, &expected) < 0))
                return;
        cm_problem_init(&p);
        r = cm_addon_doc_decode(req->body.buf ?: "", req->body.len,
                                create ? CM_ADDON_DOC_CREATE : CM_ADDON_DOC_REPLACE,
                                create ? NULL : req->params[1], &doc, &p);
        /* The decoded copy is all that is needed from here on. */
        cm_wipe(req->body.buf, req->body.len);
        if (r < 0)
                goto fail;
        if (!create) {
                /* A replace of what exists: PUT does not create. */
                r = STORE_CALL(req->svc->store, addon_get, env, doc.name, &got);
                if (r == -ENOENT) {
                        cm_problem_not_found(&p, "add-on", doc.name);
                        goto fail;
                }
                if (r < 0)
                        goto fail;
                cm_addon_done(&got);
        }
        {
                const struct cm_addon a = { .env = CM_UNCONST(char *, env),
                                            .name = doc.name,
                                            .kind = doc.kind,
                                            .version = doc.version,
                                            .baseline = doc.baseline,
                                            .doc_json = doc.doc_json };

                r = STORE_CALL(req->svc->store, addon_put, &a, expected, cm_now_usec(), &version);
        }
        if (r == -EEXIST) {
                cm_problem_set(&p, 409, "conflict", "Conflict",
                               "add-on '%s' already exists in environment '%s'", doc.name, env);
                goto fail;
        }
        if (r == -ESTALE && !create) {
                cm_problem_set(&p, 412, "precondition-failed", "Precondition failed",
                               "add-on '%s' is no longer at resourceVersion %" PRIi64
                               "; read it again and retry",
                               doc.name, expected);
                goto fail;
        }
        if (r == -ENOENT) {
                cm_problem_not_found(&p, create ? "environment" : "add-on", create ? env : doc.name);
                goto fail;
        }
        if (r < 0)
                goto fail;
        poke_reconciler(req->svc);
        r = STORE_CALL(req->svc->store, addon_get, env, doc.name, &got);
        if (r < 0)
                goto fail;
        if (create) {
                (void) cm_snprintf(loc, sizeof(loc), "/v1/environments/%s/addons/%s", env, doc.name);
                (void) cm_reply_header(req, "Location", loc);
        }
        cm_problem_done(&p);
        return reply_addon(req, create ? 201 : 200, &got);
fail:
        cm_reply_error(req, r, &p);
        cm_problem_done(&p);
}

void cm_handle_addon_create(struct cm_req *req) {
        addon_put(req, true);
}

void cm_handle_addon_update(struct cm_req *req) {
        addon_put(req, false);
}

void cm_handle_addon_list(struct cm_req *req) {
        struct cm_addon *items = NULL;
        size_t n = 0;
        int r;

        r = STORE_CALL(req->svc->store, addon_list, req->params[0], false, &items, &n);
        if (r >= 0)
                r = strbuf_adds(&req->out, "{\"items\":[");
        for (size_t i = 0; r >= 0 && i < n; i++) {
                if (i > 0)
                        r = strbuf_addch(&req->out, ',');
                if (r >= 0)
                        r = encode_addon_summary(&req->out, &items[i]);
        }
        if (r >= 0)
                r = strbuf_adds(&req->out, "]}");
        cm_addon_array_free(items, n);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 200);
}

void cm_handle_addon_get(struct cm_req *req) {
        _cleanup_(cm_addon_done) struct cm_addon a = {};
        int r;

        if (check_path_addon(req, "add-on") < 0)
                return;
        r = STORE_CALL(req->svc->store, addon_get, req->params[0], req->params[1], &a);
        if (r == -ENOENT)
                return cm_reply_not_found(req, "add-on", req->params[1]);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        reply_addon(req, 200, &a);
}

void cm_handle_addon_delete(struct cm_req *req) {
        const char *env = req->params[0], *name = req->params[1];
        int64_t expected;
        int r;

        if (check_path_addon(req, "add-on") < 0 || parse_if_match(req, &expected) < 0)
                return;
        r = STORE_CALL(req->svc->store, addon_delete, env, name, expected);
        if (r == -ENOENT)
                return cm_reply_not_found(req, "add-on", name);
        if (r == -ESTALE)
                return reply_simple(req, 412, "precondition-failed", "Precondition failed",
                                    "add-on '%s' is no longer at resourceVersion %" PRIi64
                                    "; read it again and retry",
                                    name, expected);
        if (r == -EBUSY)
                return reply_simple(req, 409, "conflict", "Conflict",
                                    "add-on '%s' is installed on clusters of environment '%s' (or is being "
                                    "uninstalled from them); uninstall it everywhere first",
                                    name, env);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        poke_reconciler(req->svc);
        cm_reply(req, 204);
}

/* ---- installations ------------------------------------------------------------------------------ */

/* The cluster of the path and the installation named by {addon}; replies and returns < 0 on failure. */
static int load_install(struct cm_req *req, struct cm_cluster *c, struct cm_addon_install *ret) {
        int r;

        if (check_path_addon(req, "add-on installation") < 0)
                return -ENOENT;
        r = cm_req_load_cluster(req, c);
        if (r < 0)
                return r;
        r = STORE_CALL(req->svc->store, install_get, c->id, req->params[2], ret);
        if (r == -ENOENT)
                reply_simple(req, 404, "not-found", "Not found",
                             "add-on '%s' is not installed on cluster '%s'", req->params[2], c->name);
        else if (r < 0)
                cm_reply_error(req, r, NULL);
        return r;
}

/* After a change: the installation as it is now, answered with status (202: the reconciler acts). */
static void reply_install_now(struct cm_req *req, const struct cm_cluster *c, const char *addon,
                              int status) {
        _cleanup_(cm_addon_install_done) struct cm_addon_install i = {};
        int r;

        r = STORE_CALL(req->svc->store, install_get, c->id, addon, &i);
        if (r == -ENOENT) /* removed by the reconciler already (an uninstall) */
                return reply_simple(req, 404, "not-found", "Not found",
                                    "add-on '%s' is no longer installed on cluster '%s'", addon, c->name);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        reply_install(req, status, &i);
}

/*
 * Values are for Helm add-ons: a manifest add-on's installation takes none ({}). -ENOENT with a 404
 * naming the field when the environment has no such add-on; -EINVAL with a 422.
 */
static int check_values_kind(struct cm_req *req, const struct cm_cluster *c, const char *addon,
                             const char *values, struct cm_problem *p) {
        _cleanup_(cm_addon_done) struct cm_addon a = {};
        int r;

        r = STORE_CALL(req->svc->store, addon_get, c->env, addon, &a);
        if (r == -ENOENT) {
                cm_problem_add(p, "addon", "no add-on of this name in environment '%s'", c->env);
                cm_problem_set(p, 404, "not-found", "Not found", "add-on '%s' not found in environment '%s'",
                               addon, c->env);
                return -ENOENT;
        }
        if (r < 0)
                return r;
        if (a.kind == CM_ADDON_MANIFEST && !streq(values, "{}")) {
                cm_problem_add(p, "values",
                               "only for Helm add-ons: '%s' is a manifest add-on, which takes none", addon);
                cm_problem_validation(p, "the request body is not valid; see errors");
                return -EINVAL;
        }
        return 0;
}

void cm_handle_install_create(struct cm_req *req) {
        _cleanup_(cm_cluster_done) struct cm_cluster c = {};
        _cleanup_(cm_addon_done) struct cm_addon a = {};
        _cleanup_free_ char *addon = NULL;
        _cleanup_erase_free_ char *values = NULL;
        struct cm_problem p;
        char loc[320];
        int r;

        cm_problem_init(&p);
        r = cm_addon_install_doc_decode(req->body.buf ?: "", req->body.len, NULL, &addon, &values, &p);
        cm_wipe(req->body.buf, req->body.len);
        if (r < 0)
                goto fail;
        r = cm_req_load_cluster(req, &c);
        if (r < 0) {
                cm_problem_done(&p);
                return;
        }
        if (c.phase == CM_PHASE_DELETING) {
                cm_problem_set(&p, 409, "conflict", "Conflict", "cluster '%s' is being deleted", c.name);
                r = -EBUSY;
                goto fail;
        }
        r = check_values_kind(req, &c, addon, values, &p);
        if (r < 0)
                goto fail;
        r = STORE_CALL(req->svc->store, install_put, c.id, addon, values, 0, cm_now_usec(), NULL);
        if (r == -ENOENT) {
                /* the cluster exists (read above): the add-on does not, in its environment */
                r = STORE_CALL(req->svc->store, addon_get, c.env, addon, &a);
                if (r == -ENOENT) {
                        cm_problem_add(&p, "addon", "no add-on of this name in environment '%s'", c.env);
                        cm_problem_set(&p, 404, "not-found", "Not found",
                                       "add-on '%s' not found in environment '%s'", addon, c.env);
                } else if (r >= 0) { /* so the cluster went meanwhile */
                        cm_problem_not_found(&p, "cluster", c.name);
                        r = -ENOENT;
                }
                goto fail;
        }
        if (r == -EEXIST) {
                cm_problem_set(&p, 409, "conflict", "Conflict",
                               "add-on '%s' is already installed on cluster '%s' (or is being uninstalled); "
                               "change its values with PUT",
                               addon, c.name);
                goto fail;
        }
        if (r < 0)
                goto fail;
        poke_reconciler(req->svc);
        (void) cm_snprintf(loc, sizeof(loc), "/v1/environments/%s/clusters/%s/addons/%s", c.env, c.name,
                           addon);
        (void) cm_reply_header(req, "Location", loc);
        cm_problem_done(&p);
        return reply_install_now(req, &c, addon, 202);
fail:
        cm_reply_error(req, r, &p);
        cm_problem_done(&p);
}

void cm_handle_install_list(struct cm_req *req) {
        _cleanup_(cm_cluster_done) struct cm_cluster c = {};
        struct cm_addon_install *items = NULL;
        size_t n = 0;
        int r;

        if (cm_req_load_cluster(req, &c) < 0)
                return;
        r = STORE_CALL(req->svc->store, install_list, c.id, &items, &n);
        if (r >= 0)
                r = strbuf_adds(&req->out, "{\"items\":[");
        for (size_t i = 0; r >= 0 && i < n; i++) {
                if (i > 0)
                        r = strbuf_addch(&req->out, ',');
                if (r >= 0)
                        r = encode_install(&req->out, &items[i]);
        }
        if (r >= 0)
                r = strbuf_adds(&req->out, "]}");
        cm_addon_install_array_free(items, n);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        cm_reply(req, 200);
}

void cm_handle_install_get(struct cm_req *req) {
        _cleanup_(cm_cluster_done) struct cm_cluster c = {};
        _cleanup_(cm_addon_install_done) struct cm_addon_install i = {};

        if (load_install(req, &c, &i) < 0)
                return;
        reply_install(req, 200, &i);
}

void cm_handle_install_update(struct cm_req *req) {
        _cleanup_(cm_cluster_done) struct cm_cluster c = {};
        _cleanup_(cm_addon_install_done) struct cm_addon_install i = {};
        _cleanup_erase_free_ char *values = NULL;
        const char *addon = req->params[2];
        struct cm_problem p;
        int64_t expected;
        int r;

        if (check_path_addon(req, "add-on installation") < 0 || parse_if_match(req, &expected) < 0)
                return;
        cm_problem_init(&p);
        r = cm_addon_install_doc_decode(req->body.buf ?: "", req->body.len, addon, NULL, &values, &p);
        cm_wipe(req->body.buf, req->body.len);
        if (r < 0)
                goto fail;
        if (load_install(req, &c, &i) < 0) {
                cm_problem_done(&p);
                return;
        }
        r = check_values_kind(req, &c, addon, values, &p);
        if (r < 0)
                goto fail;
        r = STORE_CALL(req->svc->store, install_put, c.id, addon, values, expected, cm_now_usec(), NULL);
        if (r == -ESTALE) {
                cm_problem_set(
                        &p, 412, "precondition-failed", "Precondition failed",
                        "the installation of add-on '%s' on cluster '%s' is no longer at resourceVersion "
                        "%" PRIi64 "; read it again and retry",
                        addon, c.name, expected);
                goto fail;
        }
        if (r == -EBUSY) {
                cm_problem_set(&p, 409, "conflict", "Conflict",
                               "add-on '%s' is being uninstalled from cluster '%s'; install it again once "
                               "it is gone",
                               addon, c.name);
                goto fail;
        }
        if (r == -ENOENT) {
                cm_problem_set(&p, 404, "not-found", "Not found",
                               "add-on '%s' is not installed on cluster '%s'", addon, c.name);
                goto fail;
        }
        if (r < 0)
                goto fail;
        poke_reconciler(req->svc);
        cm_problem_done(&p);
        return reply_install_now(req, &c, addon, 202);
fail:
        cm_reply_error(req, r, &p);
        cm_problem_done(&p);
}

void cm_handle_install_delete(struct cm_req *req) {
        _cleanup_(cm_cluster_done) struct cm_cluster c = {};
        _cleanup_(cm_addon_install_done) struct cm_addon_install i = {};
        int r;

        if (load_install(req, &c, &i) < 0)
                return;
        r = STORE_CALL(req->svc->store, install_request_uninstall, c.id, i.addon, cm_now_usec());
        if (r == -ENOENT)
                return reply_simple(req, 404, "not-found", "Not found",
                                    "add-on '%s' is no longer installed on cluster '%s'", i.addon, c.name);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        poke_reconciler(req->svc);
        reply_install_now(req, &c, i.addon, 202);
}

void cm_handle_install_sync(struct cm_req *req) {
        _cleanup_(cm_cluster_done) struct cm_cluster c = {};
        _cleanup_(cm_addon_install_done) struct cm_addon_install i = {};
        int r;

        if (load_install(req, &c, &i) < 0)
                return;
        r = STORE_CALL(req->svc->store, install_schedule, c.id, i.addon, cm_now_usec());
        if (r == -ENOENT)
                return reply_simple(req, 404, "not-found", "Not found",
                                    "add-on '%s' is no longer installed on cluster '%s'", i.addon, c.name);
        if (r < 0)
                return cm_reply_error(req, r, NULL);
        poke_reconciler(req->svc);
        reply_install(req, 202, &i);
}

/* ---- plan ------------------------------------------------------------------------------------- */

/* What a failed plan step answers: 502 when the cluster (or a chart repository) is not reached. */
static void reply_plan_failure(struct cm_req *req, int r, const struct cm_cluster *c, const char *reason,
                               const char *message) {
        const char *why = isempty(message) ? strerror(-r) : message;

        switch (r) {
        case -ENOMEM:
                return cm_reply_error(req, r, NULL);
        case -ETIMEDOUT:
        case -EHOSTUNREACH:
        case -ECONNREFUSED:
        case -EPROTO:
        case -EREMOTEIO:
        case -EIO:
        case -EFBIG:
                return reply_simple(req, 502, "cluster-api-error", "Bad gateway", "cluster '%s': %s",
                                    c->name, why);
        case -ENOEXEC:
                return reply_simple(req, 503, "helm-unavailable", "Service unavailable",
                                    "the helm binary cannot be run on this service: %s", why);
        default:
                return reply_simple(req, 422, "plan-failed", "Plan failed", "cluster '%s': %s%s%s", c->name,
                                    isempty(reason) ? "" : reason, isempty(reason) ? "" : ": ", why);
        }
}

/* Renders a Helm add-on against the cluster (helm upgrade --install --dry-run=server). */
static int helm_render(struct cm_req *req, const json_t *def, const char *name, const char *namespace,
                       unsigned timeout, const char *values_json, const char *kubeconfig,
                       size_t kubeconfig_len, struct cm_helm_result *res) {
        _cleanup_(cm_json_wipe_and_free) json_t *values = NULL;
        const json_t *chart = json_object_get(def, "chart");
        char dir[PATH_MAX];
        struct cm_helm h = {
                .binary = cm_addons_helm_path(),
                .dir = dir,
                .kubeconfig = kubeconfig,
                .kubeconfig_len = kubeconfig_len,
                .timeout_sec = timeout,
        };
        const char *oci = json_string_value(json_object_get(chart, "oci"));
        const struct cm_helm_release rel = {
                .name = name,
                .namespace = namespace,
                .chart = oci ?: json_string_value(json_object_get(chart, "name")),
                .version = json_string_value(json_object_get(chart, "version")),
                .repo = oci ? NULL : json_string_value(json_object_get(chart, "repository")),
        };
        int r;

        r = cm_addons_helm_dir(req->svc, dir, sizeof(dir));
        if (r < 0)
                return r;
        /* The values the reconciler installs with, so that the plan shows what an apply would do. */
        r = cm_addons_helm_values(def, values_json, &values);
        if (r < 0)
                return r;
        return cm_helm_template(&h, &rel, values, res);
}

void cm_handle_install_plan(struct cm_req *req) {
        _cleanup_(cm_cluster_done) struct cm_cluster c = {};
        _cleanup_(cm_addon_install_done) struct cm_addon_install i = {};
        _cleanup_(cm_json_wipe_and_free) json_t *def = NULL;
        _cleanup_(cm_kube_closep) struct cm_kube *k = NULL;
        struct cm_helm_result hres = CM_HELM_RESULT_INIT;
        struct cm_apply_report report = {};
        struct cm_manifest m = {};
        struct cm_manifest_error merr = {};
        struct cm_kube_error kerr = {};
        json_t *inventory = NULL, *plan = NULL;
        const char *namespace, *text;
        char *kubeconfig = NULL, reason[320];
        size_t kubeconfig_len = 0, text_len;
        enum cm_addon_kind kind;
        json_int_t timeout;
        int r;

        if (load_install(req, &c, &i) < 0)
                return;
        if (c.phase != CM_PHASE_READY)
                return reply_simple(req, 409, "conflict", "Conflict",
                                    "cluster '%s' is %s: a plan needs a Ready cluster", c.name,
                                    cm_phase_to_string(c.phase) ?: "not ready");
        if (i.uninstall)
                return reply_simple(req, 409, "conflict", "Conflict",
                                    "add-on '%s' is being uninstalled from cluster '%s'", i.addon, c.name);
        def = json_loads(i.addon_doc_json ?: "", 0, NULL);
        if (!json_is_object(def) ||
            cm_addon_kind_from_string(json_string_value(json_object_get(def, "kind")), &kind) < 0)
                return cm_reply_error(req, -EBADMSG, NULL);
        namespace = json_string_value(json_object_get(def, "namespace")) ?: CM_ADDON_NAMESPACE_DEFAULT;
        timeout = json_integer_value(json_object_get(def, "timeoutSeconds"));
        if (timeout < CM_ADDON_TIMEOUT_MIN || timeout > CM_ADDON_TIMEOUT_MAX)
                timeout = CM_ADDON_TIMEOUT_DEFAULT;

        r = cm_state_file_read(req->svc, &c, ADMIN_KUBECONFIG_FILE, &kubeconfig, &kubeconfig_len);
        if (r == -ENOENT || r == -EOPNOTSUPP)
                return reply_simple(
                        req, 409, "conflict", "Conflict",
                        "no admin kubeconfig is stored for cluster '%s'%s: the service cannot reach "
                        "its API server",
                        c.name, r == -EOPNOTSUPP ? " (this service has no state vault)" : "");
        if (r < 0)
                return cm_reply_error(req, r, NULL);

        if (kind == CM_ADDON_HELM) {
                r = helm_render(req, def, i.addon, namespace, (unsigned) timeout, i.values_json, kubeconfig,
                                kubeconfig_len, &hres);
                if (r < 0) {
                        reply_plan_failure(req, r, &c, "helm", hres.message);
                        goto out;
                }
                text = hres.manifest ?: "";
                text_len = hres.manifest_len;
        } else {
                text = json_string_value(json_object_get(def, "manifests")) ?: "";
                text_len = strlen(text);
        }
        r = cm_manifest_parse(text, text_len, &m, &merr);
        if (r < 0) {
                cm_manifest_error_format(&merr, reason, sizeof(reason));
                reply_plan_failure(req, r == -ENOMEM ? r : -EINVAL, &c, "the rendered manifest", reason);
                goto out;
        }
        cm_manifest_sort(&m);

        r = cm_kube_open(kubeconfig, kubeconfig_len,
                         &(struct cm_kube_options){ .connect_timeout_ms = 5000, .timeout_ms = 15000 }, &k,
                         &kerr);
        if (r < 0) {
                reply_plan_failure(req, r == -ENOMEM ? r : -EREMOTEIO, &c, NULL, kerr.message);
                goto out;
        }
        inventory = json_loads(i.inventory_json ?: "[]", 0, NULL);
        {
                const struct cm_apply_options o = {
                        .addon = i.addon,
                        .default_namespace = namespace,
                        .timeout_sec = (unsigned) timeout,
                };

                r = cm_addon_plan(k, &m, json_is_array(inventory) ? inventory : NULL, &o, &plan, &report);
        }
        if (r < 0) {
                reply_plan_failure(req, r, &c, report.reason, report.message);
                goto out;
        }
        r = strbuf_adds(&req->out, "{\"plan\":");
        if (r >= 0) {
                _cleanup_free_ char *s = cm_json_canonical(plan);

                r = s ? strbuf_adds(&req->out, s) : -ENOMEM;
        }
        if (r >= 0)
                r = strbuf_addch(&req->out, '}');
        if (r < 0)
                cm_reply_error(req, r, NULL);
        else
                cm_reply(req, 200);
out:
        json_decref(plan);
        json_decref(inventory);
        cm_apply_report_done(&report);
        cm_manifest_done(&m);
        cm_helm_result_done(&hres);
        cm_vault_data_free(kubeconfig, kubeconfig_len);
}
