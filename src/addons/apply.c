/* SPDX-License-Identifier: Apache-2.0 */
/* Applying, checking and removing an add-on's objects over the Kubernetes API (apply.h). */
#include "base/common.h"

#include <stdarg.h>
#include <unistd.h>

#include "addons/apply.h"
#include "base/parse.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "base/util.h"

#define CRD_API_VERSION "apiextensions.k8s.io/v1"

void cm_apply_report_done(struct cm_apply_report *r) {
        if (!r)
                return;
        json_decref(r->inventory);
        json_decref(r->corrected);
        json_decref(r->pruned);
        *r = (struct cm_apply_report){};
}

_printf_(4, 5) static int report_fail(struct cm_apply_report *ret, int r, const char *reason,
                                      const char *fmt, ...) {
        va_list ap;

        (void) cm_strlcpy(ret->reason, reason, sizeof(ret->reason));
        va_start(ap, fmt);
        (void) vsnprintf(ret->message, sizeof(ret->message), fmt, ap);
        va_end(ap);
        return r;
}

static int report_kube_fail(struct cm_apply_report *ret, int r, const char *reason,
                            const struct cm_kube_error *err) {
        if (r == -ECANCELED)
                return report_fail(ret, r, "Cancelled", "cancelled");
        if (r == -ENOMEM)
                return report_fail(ret, r, reason, "out of memory");
        return report_fail(ret, r, reason, "%s", err->message[0] ? err->message : strerror(-r));
}

static bool cancelled(const struct cm_apply_options *o) {
        return o->cancelled && o->cancelled(o->userdata);
}

static unsigned timeout_sec(const struct cm_apply_options *o) {
        return o->timeout_sec ? o->timeout_sec : 300;
}

static void pause_poll(const struct cm_apply_options *o) {
        (void) usleep((useconds_t) (o->poll_ms ? o->poll_ms : 250) * 1000U);
}

/* ---- identities ---- */

static const char *jstr(const json_t *o, const char *key) {
        return json_string_value(json_object_get(o, key));
}

/* The group of an apiVersion ("" for the core group), as a length into the string. */
static size_t group_len(const char *api_version) {
        const char *slash = strchr(api_version, '/');

        return slash ? (size_t) (slash - api_version) : 0;
}

/* Equal strings, NULL and "" being the same (no namespace). */
static bool same_text(const char *a, const char *b) {
        return streq(a ?: "", b ?: "");
}

/* Same object: group (not version), kind, namespace and name. */
static bool same_object(const char *av1, const char *kind1, const char *ns1, const char *name1,
                        const char *av2, const char *kind2, const char *ns2, const char *name2) {
        size_t g1 = group_len(av1), g2 = group_len(av2);

        return g1 == g2 && strncmp(av1, av2, g1) == 0 && streq(kind1, kind2) && same_text(ns1, ns2) &&
               streq(name1, name2);
}

static bool entry_is(const json_t *e, const char *av, const char *kind, const char *ns, const char *name) {
        const char *eav = jstr(e, "apiVersion"), *ekind = jstr(e, "kind"), *ename = jstr(e, "name");

        return eav && ekind && ename &&
               same_object(eav, ekind, jstr(e, "namespace"), ename, av, kind, ns, name);
}

static const json_t *inventory_find(const json_t *inv, const char *av, const char *kind, const char *ns,
                                    const char *name) {
        const json_t *e;
        size_t i;

        json_array_foreach(inv, i, e) if (entry_is(e, av, kind, ns, name)) return e;
        return NULL;
}

static struct cm_kube_ref entry_ref(const json_t *e) {
        return (struct cm_kube_ref){ .api_version = jstr(e, "apiVersion"),
                                     .kind = jstr(e, "kind"),
                                     .namespace = jstr(e, "namespace"),
                                     .name = jstr(e, "name") };
}

/* {apiVersion, kind, namespace?, name} */
static json_t *ref_json(const char *av, const char *kind, const char *ns, const char *name) {
        return json_pack("{s:s, s:s, s:s*, s:s}", "apiVersion", av, "kind", kind, "namespace",
                         isempty(ns) ? NULL : ns, "name", name);
}

static const char *entry_namespace(const json_t *e) {
        const char *ns = jstr(e, "namespace");

        return isempty(ns) ? NULL : ns;
}

/* "Deployment demo/web" or "Namespace demo" for messages. */
static void object_what(const char *kind, const char *ns, const char *name, char *buf, size_t size) {
        if (isempty(ns))
                (void) cm_snprintf(buf, size, "%s %s", kind, name);
        else
                (void) cm_snprintf(buf, size, "%s %s/%s", kind, ns, name);
}

/* The time of the field manager's Apply entry in metadata.managedFields ("" when there is none). */
static const char *managed_time(const json_t *live) {
        const json_t *mf = json_object_get(json_object_get(live, "metadata"), "managedFields"), *e;
        size_t i;

        json_array_foreach(mf, i, e) {
                if (same_text(jstr(e, "manager"), CM_ADDON_FIELD_MANAGER) &&
                    same_text(jstr(e, "operation"), "Apply"))
                        return jstr(e, "time") ?: "";
        }
        return "";
}

/* ---- one call of the engine ---- */

/* What the steps of one apply, plan, wait or removal share. */
struct run {
        struct cm_kube *k;
        const struct cm_apply_options *o;
        struct cm_apply_report *ret;
        const struct cm_manifest *m; /* apply and plan; NULL otherwise */
        json_t *discovered; /* the group versions used so far (an object used as a set) */
};

static void run_done(struct run *run) {
        json_decref(run->discovered);
        run->discovered = NULL;
}

/*
 * Counts the discovery request that the first use of a group version makes. The client keeps the
 * answer for its life, so with a client that was used before this is an upper bound.
 */
static void count_discovery(struct run *run, const char *api_version) {
        if (!api_version || json_object_get(run->discovered, api_version))
                return;
        if (json_object_set_new(run->discovered, api_version, json_true()) >= 0)
                run->ret->api_calls++;
}

static int report_init(struct cm_apply_report *ret) {
        *ret = (struct cm_apply_report){ .inventory = json_array(),
                                         .corrected = json_array(),
                                         .pruned = json_array() };
        if (!ret->inventory || !ret->corrected || !ret->pruned) {
                cm_apply_report_done(ret);
                return -ENOMEM;
        }
        return 0;
}

/* Starts a call: the report reset (with reset) and the run's state. */
static int run_init(struct run *run, struct cm_kube *k, const struct cm_manifest *m,
                    const struct cm_apply_options *o, struct cm_apply_report *ret, bool reset) {
        *run = (struct run){ .k = k, .o = o, .ret = ret, .m = m, .discovered = json_object() };
        if (reset && report_init(ret) < 0) {
                run_done(run);
                *ret = (struct cm_apply_report){};
                return report_fail(ret, -ENOMEM, "ApplyFailed", "out of memory");
        }
        if (!run->discovered)
                return report_fail(ret, -ENOMEM, "ApplyFailed", "out of memory");
        return 0;
}

/* ---- applying ---- */

/* The CustomResourceDefinition of the manifest that defines obj's kind (group and kind), or NULL. */
static const struct cm_manifest_object *defining_crd(const struct cm_manifest *m,
                                                     const struct cm_manifest_object *obj) {
        size_t glen = group_len(obj->api_version);

        for (size_t i = 0; m && i < m->n; i++) {
                const struct cm_manifest_object *c = &m->objects[i];
                const json_t *spec = json_object_get(c->object, "spec");
                const char *group = jstr(spec, "group"),
                           *kind = jstr(json_object_get(spec, "names"), "kind");

                if (cm_manifest_is_crd(c) && group && kind && glen > 0 && strlen(group) == glen &&
                    strncmp(group, obj->api_version, glen) == 0 && streq(kind, obj->kind))
                        return c;
        }
        return NULL;
}

/*
 * The resource of obj's kind by discovery. A kind that a CustomResourceDefinition of the manifest
 * defines may not be served yet: for an apply (ret_pending NULL) the definition was applied before
 * and discovery may list the kind a little after it is Established, so it is asked for again until the
 * timeout; for a plan (ret_pending set) nothing of the kind exists yet: *ret_pending is set and res
 * says the definition's scope. -ENOENT (with a message naming the document) when it is not served.
 */
static int resolve_kind(struct run *run, const struct cm_manifest_object *obj, bool *ret_pending,
                        struct cm_kube_resource *res) {
        uint64_t deadline = cm_mono_usec() + (uint64_t) timeout_sec(run->o) * USEC_PER_SEC;
        const struct cm_manifest_object *crd = defining_crd(run->m, obj);
        const char *reason = ret_pending ? "PlanFailed" : "ApplyFailed";

        for (;;) {
                struct cm_kube_error err = {};
                char what[400];
                int r;

                count_discovery(run, obj->api_version);
                r = cm_kube_resolve(run->k, obj->api_version, obj->kind, res, &err);
                if (r != -ENOENT) {
                        if (r < 0)
                                return report_kube_fail(run->ret, r, reason, &err);
                        if (ret_pending)
                                *ret_pending = false;
                        return 0;
                }
                if (crd && ret_pending) {
                        const char *scope = jstr(json_object_get(crd->object, "spec"), "scope");

                        *res = (struct cm_kube_resource){ .namespaced = same_text(scope, "Namespaced") };
                        *ret_pending = true;
                        return 0;
                }
                if (!crd || cm_mono_usec() >= deadline) {
                        object_what(obj->kind, obj->namespace, obj->name, what, sizeof(what));
                        return report_fail(run->ret, -ENOENT, reason,
                                           "%s (document %u): the API server does not serve kind %s in %s",
                                           what, obj->doc, obj->kind, obj->api_version);
                }
                if (cancelled(run->o))
                        return report_fail(run->ret, -ECANCELED, "Cancelled", "cancelled");
                pause_poll(run->o);
                run->ret->api_calls++; /* the next look asks discovery again */
        }
}

/*
 * The object as it is sent: a copy with the namespace settled (the default for namespaced kinds
 * without one; none for cluster-scoped kinds) and the add-on's label.
 */
static int prepare(struct run *run, const struct cm_manifest_object *obj, bool namespaced,
                   const char *reason, json_t **ret) {
        json_t *copy, *meta, *labels;
        int r = 0;

        copy = json_deep_copy(obj->object);
        meta = json_object_get(copy, "metadata");
        if (!copy || !json_is_object(meta)) {
                cm_json_wipe_and_free(&copy);
                return report_fail(run->ret, -ENOMEM, reason, "out of memory");
        }
        if (namespaced && isempty(obj->namespace))
                r = json_object_set_new(
                        meta, "namespace",
                        json_string(run->o->default_namespace ? run->o->default_namespace : "default"));
        else if (!namespaced)
                (void) json_object_del(meta, "namespace"); /* as kubectl: ignored for cluster-scoped kinds */
        labels = json_object_get(meta, "labels");
        if (r >= 0 && !json_is_object(labels)) {
                labels = json_object();
                r = json_object_set_new(meta, "labels", labels);
        }
        if (r >= 0 && run->o->addon)
                r = json_object_set_new(labels, CM_ADDON_LABEL, json_string(run->o->addon));
        if (r < 0) {
                cm_json_wipe_and_free(&copy);
                return report_fail(run->ret, -ENOMEM, reason, "out of memory");
        }
        *ret = copy;
        return 0;
}

/* The digest of the object as sent (hex SHA-256 of its JSON with sorted keys). */
static int object_digest(const json_t *send, char out[static 65]) {
        _cleanup_erase_free_ char *text = json_dumps(send, JSON_COMPACT | JSON_SORT_KEYS);

        if (!text)
                return -ENOMEM;
        cm_sha256_hex(text, strlen(text), out);
        return 0;
}

/* A CustomResourceDefinition's state: 1 Established, 0 not yet, -EINVAL its names are not accepted. */
static int crd_state(const json_t *live) {
        const json_t *c;
        size_t i;

        json_array_foreach(json_object_get(json_object_get(live, "status"), "conditions"), i, c) {
                const char *type = jstr(c, "type"), *status = jstr(c, "status");

                if (same_text(type, "Established") && same_text(status, "True"))
                        return 1;
                if (same_text(type, "NamesAccepted") && same_text(status, "False"))
                        return -EINVAL;
        }
        return 0;
}

/*
 * Waits until a CustomResourceDefinition is Established (its kinds served); applied is the apply's
 * answer, looked at first (a definition applied before is Established already).
 */
static int wait_established(struct run *run, const char *name, const json_t *applied) {
        const struct cm_kube_ref ref = { .api_version = CRD_API_VERSION,
                                         .kind = "CustomResourceDefinition",
                                         .name = name };
        uint64_t deadline = cm_mono_usec() + (uint64_t) timeout_sec(run->o) * USEC_PER_SEC;
        int state = crd_state(applied);

        while (state == 0) {
                struct cm_kube_error err = {};
                json_t *live = NULL;
                int r;

                if (cm_mono_usec() >= deadline)
                        return report_fail(run->ret, -ETIMEDOUT, "CRDNotEstablished",
                                           "CustomResourceDefinition %s is not established after %u s", name,
                                           timeout_sec(run->o));
                if (cancelled(run->o))
                        return report_fail(run->ret, -ECANCELED, "Cancelled", "cancelled");
                pause_poll(run->o);
                r = cm_kube_get(run->k, &ref, &live, &err);
                run->ret->api_calls++;
                if (r < 0 && r != -ENOENT)
                        return report_kube_fail(run->ret, r, "CRDNotEstablished", &err);
                state = crd_state(live);
                json_decref(live);
        }
        if (state < 0)
                return report_fail(run->ret, -EINVAL, "CRDNotEstablished",
                                   "CustomResourceDefinition %s: its names are not accepted "
                                   "(another definition uses them)",
                                   name);
        return 0;
}

/* Adds the entries of previous that are not in inv (objects still there and still ours). */
static int inventory_merge_previous(json_t *inv, const json_t *previous) {
        const json_t *e;
        size_t i;

        json_array_foreach(previous, i, e) {
                struct cm_kube_ref ref = entry_ref(e);

                if (!ref.api_version || !ref.kind || !ref.name ||
                    inventory_find(inv, ref.api_version, ref.kind, entry_namespace(e), ref.name))
                        continue;
                if (json_array_append_new(inv, json_deep_copy(e)) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/*
 * The drift an apply corrected, from the object's entry of the previous inventory (NULL: not applied
 * before) and what the apply found: "recreated" (another uid: it was deleted and is created again),
 * "reverted" (another field manager held fields the service sets, or the apply wrote although the
 * object sent is the one sent last time: someone removed fields the service set), or NULL.
 */
static const char *drift(const json_t *before, const char *uid, const char *mtime, const char *digest,
                         bool conflict) {
        const char *prev_digest;

        if (!before || isempty(jstr(before, "uid")))
                return NULL;
        if (!same_text(jstr(before, "uid"), uid))
                return "recreated";
        if (conflict)
                return "reverted";
        prev_digest = jstr(before, "digest");
        if (!isempty(prev_digest) && streq(prev_digest, digest) &&
            !same_text(jstr(before, "managedTime"), mtime))
                return "reverted";
        return NULL;
}

static int apply_one(struct run *run, const struct cm_manifest_object *obj, const json_t *previous) {
        _cleanup_(cm_json_wipe_and_free) json_t *send = NULL, *live = NULL;
        struct cm_apply_report *ret = run->ret;
        struct cm_kube_resource res = {};
        struct cm_kube_error err = {};
        char ns[CM_KUBE_NAME_MAX + 1] = "", digest[65];
        const char *nsp, *uid, *mtime, *change;
        bool conflict = false;
        json_t *entry;
        int r;

        r = resolve_kind(run, obj, NULL, &res);
        if (r < 0)
                return r;
        r = prepare(run, obj, res.namespaced, "ApplyFailed", &send);
        if (r < 0)
                return r;
        /* A copy: send is wiped as soon as it is sent. */
        (void) cm_strlcpy(ns, jstr(json_object_get(send, "metadata"), "namespace") ?: "", sizeof(ns));
        if (object_digest(send, digest) < 0)
                return report_fail(ret, -ENOMEM, "ApplyFailed", "out of memory");

        /*
         * Without force first: a conflict (409) says that another field manager holds fields the service
         * sets to other values, which is drift; then with force, since the service's fields are the
         * service's. An unchanged object costs one request.
         */
        r = cm_kube_apply(run->k, send, CM_ADDON_FIELD_MANAGER, false, false, &live, &err);
        ret->api_calls++;
        if (r == -EBUSY) {
                conflict = true;
                err = (struct cm_kube_error){};
                r = cm_kube_apply(run->k, send, CM_ADDON_FIELD_MANAGER, false, true, &live, &err);
                ret->api_calls++;
        }
        cm_json_wipe_and_free(&send);
        if (r < 0) {
                (void) report_kube_fail(ret, r, "ApplyFailed", &err);
                /* The client's message names the object; add the document for the author. */
                if (r != -ECANCELED && r != -ENOMEM) {
                        char msg[sizeof(ret->message)];

                        (void) cm_strlcpy(msg, ret->message, sizeof(msg));
                        (void) cm_snprintf(ret->message, sizeof(ret->message), "document %u: %s", obj->doc,
                                           msg);
                }
                return r;
        }
        nsp = ns[0] ? ns : NULL;
        uid = jstr(json_object_get(live, "metadata"), "uid") ?: "";
        mtime = managed_time(live);
        change = drift(inventory_find(previous, obj->api_version, obj->kind, ns, obj->name), uid, mtime,
                       digest, conflict);

        entry = json_pack("{s:s, s:s, s:s*, s:s, s:s, s:s, s:s}", "apiVersion", obj->api_version, "kind",
                          obj->kind, "namespace", nsp, "name", obj->name, "uid", uid, "managedTime", mtime,
                          "digest", digest);
        if (!entry || json_array_append_new(ret->inventory, entry) < 0)
                return report_fail(ret, -ENOMEM, "ApplyFailed", "out of memory");
        if (change) {
                json_t *c = json_pack("{s:s, s:s, s:s*, s:s, s:s}", "apiVersion", obj->api_version, "kind",
                                      obj->kind, "namespace", nsp, "name", obj->name, "change", change);

                if (!c || json_array_append_new(ret->corrected, c) < 0)
                        return report_fail(ret, -ENOMEM, "ApplyFailed", "out of memory");
        }
        if (cm_manifest_is_crd(obj))
                return wait_established(run, obj->name, live);
        return 0;
}

/*
 * Deletes the entries of list (reverse order) that are not in keep_if_in. What is not deleted (a
 * failure, or not tried after a cancellation) goes to inv, to be tried again next time.
 */
static int delete_entries(struct run *run, const json_t *list, const json_t *keep_if_in, json_t *inv,
                          bool count_pruned) {
        struct cm_apply_report *ret = run->ret;
        const char *reason = count_pruned ? "PruneFailed" : "DeleteFailed";
        int first_error = 0;

        for (size_t i = json_array_size(list); i-- > 0;) {
                const json_t *e = json_array_get(list, i);
                struct cm_kube_ref ref = entry_ref(e);
                struct cm_kube_error err = {};
                int r;

                if (!ref.api_version || !ref.kind || !ref.name)
                        continue;
                ref.namespace = entry_namespace(e);
                if (keep_if_in &&
                    inventory_find(keep_if_in, ref.api_version, ref.kind, ref.namespace, ref.name))
                        continue;
                if (first_error != -ECANCELED && cancelled(run->o)) {
                        first_error = -ECANCELED;
                        (void) report_fail(ret, -ECANCELED, "Cancelled", "cancelled");
                }
                if (first_error == -ECANCELED)
                        r = -ECANCELED;
                else {
                        count_discovery(run, ref.api_version);
                        r = cm_kube_delete(run->k, &ref, &err);
                        ret->api_calls++;
                }
                if (r < 0) {
                        /* Still there and still ours: kept in the inventory for the next attempt. */
                        if (inv && json_array_append_new(inv, json_deep_copy(e)) < 0)
                                return report_fail(ret, -ENOMEM, reason, "out of memory");
                        if (first_error == 0) {
                                first_error = r;
                                (void) report_kube_fail(ret, r, reason, &err);
                        }
                        continue;
                }
                if (count_pruned) {
                        json_t *p = ref_json(ref.api_version, ref.kind, ref.namespace, ref.name);

                        if (!p || json_array_append_new(ret->pruned, p) < 0)
                                return report_fail(ret, -ENOMEM, reason, "out of memory");
                }
        }
        return first_error;
}

int cm_addon_apply(struct cm_kube *k, const struct cm_manifest *m, const json_t *previous,
                   const struct cm_apply_options *o, struct cm_apply_report *ret) {
        struct run run;
        int r;

        r = run_init(&run, k, m, o, ret, true);
        for (size_t i = 0; r >= 0 && i < m->n; i++) {
                if (cancelled(o))
                        r = report_fail(ret, -ECANCELED, "Cancelled", "cancelled");
                else
                        r = apply_one(&run, &m->objects[i], previous);
        }
        if (r < 0) {
                /* What was not reached is still there from the last apply: it stays recorded. */
                if (ret->inventory && inventory_merge_previous(ret->inventory, previous) < 0)
                        r = report_fail(ret, -ENOMEM, "ApplyFailed", "out of memory");
        } else
                /* Prune what the add-on no longer has; a failure leaves the object in the inventory. */
                r = delete_entries(&run, previous, ret->inventory, ret->inventory, true);
        run_done(&run);
        return r;
}

int cm_addon_remove(struct cm_kube *k, const json_t *inventory, const struct cm_apply_options *o,
                    struct cm_apply_report *ret) {
        struct run run;
        int r;

        r = run_init(&run, k, NULL, o, ret, true);
        if (r >= 0)
                r = delete_entries(&run, inventory, NULL, ret->inventory, false);
        run_done(&run);
        return r;
}

/* ---- health ---- */

static long jint(const json_t *o, const char *key, long dflt) {
        const json_t *v = json_object_get(o, key);

        return json_is_integer(v) ? (long) json_integer_value(v) : dflt;
}

static const json_t *condition(const json_t *live, const char *type) {
        const json_t *c;
        size_t i;

        json_array_foreach(json_object_get(json_object_get(live, "status"), "conditions"), i,
                           c) if (same_text(jstr(c, "type"), type)) return c;
        return NULL;
}

static int say(char *why, size_t size, int r, const char *fmt, ...) _printf_(4, 5);
static int say(char *why, size_t size, int r, const char *fmt, ...) {
        va_list ap;

        if (why && size > 0) {
                va_start(ap, fmt);
                (void) vsnprintf(why, size, fmt, ap);
                va_end(ap);
        }
        return r;
}

int cm_addon_object_ready(const json_t *live, char *why, size_t size) {
        const json_t *meta = json_object_get(live, "metadata"), *spec = json_object_get(live, "spec"),
                     *status = json_object_get(live, "status");
        const char *av = jstr(live, "apiVersion"), *kind = jstr(live, "kind");
        long generation = jint(meta, "generation", 0), observed = jint(status, "observedGeneration", -1);

        if (why && size > 0)
                why[0] = '\0';
        if (!av || !kind)
                return 1;
        if (streq(av, "apps/v1") &&
            (streq(kind, "Deployment") || streq(kind, "StatefulSet") || streq(kind, "DaemonSet")) &&
            observed < generation)
                return say(why, size, 0, "the controller has not seen generation %ld yet", generation);
        if (streq(av, "apps/v1") && streq(kind, "Deployment")) {
                long want = jint(spec, "replicas", 1), updated = jint(status, "updatedReplicas", 0),
                     available = jint(status, "availableReplicas", 0), total = jint(status, "replicas", 0);
                const json_t *progressing = condition(live, "Progressing");

                if (progressing && same_text(jstr(progressing, "reason"), "ProgressDeadlineExceeded"))
                        return say(why, size, -1, "its rollout exceeded its progress deadline");
                if (updated < want)
                        return say(why, size, 0, "%ld/%ld replicas updated", updated, want);
                if (total > updated)
                        return say(why, size, 0, "%ld old replicas still running", total - updated);
                if (available < want)
                        return say(why, size, 0, "%ld/%ld replicas available", available, want);
                return 1;
        }
        if (streq(av, "apps/v1") && streq(kind, "StatefulSet")) {
                long want = jint(spec, "replicas", 1), ready = jint(status, "readyReplicas", 0),
                     updated = jint(status, "updatedReplicas", 0);
                const char *cur = jstr(status, "currentRevision"), *next = jstr(status, "updateRevision");
                const char *strategy = jstr(json_object_get(spec, "updateStrategy"), "type");

                if (ready < want)
                        return say(why, size, 0, "%ld/%ld replicas ready", ready, want);
                if (!same_text(strategy, "OnDelete") && next && !same_text(cur, next) && updated < want)
                        return say(why, size, 0, "%ld/%ld replicas updated", updated, want);
                return 1;
        }
        if (streq(av, "apps/v1") && streq(kind, "DaemonSet")) {
                long want = jint(status, "desiredNumberScheduled", 0),
                     updated = jint(status, "updatedNumberScheduled", 0),
                     available = jint(status, "numberAvailable", 0);
                const char *strategy = jstr(json_object_get(spec, "updateStrategy"), "type");

                if (!same_text(strategy, "OnDelete") && updated < want)
                        return say(why, size, 0, "%ld/%ld pods updated", updated, want);
                if (available < want)
                        return say(why, size, 0, "%ld/%ld pods available", available, want);
                return 1;
        }
        if (streq(av, "batch/v1") && streq(kind, "Job")) {
                const json_t *complete = condition(live, "Complete"), *failed = condition(live, "Failed");

                if (failed && same_text(jstr(failed, "status"), "True"))
                        return say(why, size, -1, "it failed (%s)",
                                   cm_ascii_text_valid(jstr(failed, "reason"), 64, true)
                                           ? jstr(failed, "reason")
                                           : "no reason given");
                if (complete && same_text(jstr(complete, "status"), "True"))
                        return 1;
                return say(why, size, 0, "not complete yet");
        }
        return 1;
}

static bool has_rollout(const json_t *e) {
        const char *av = jstr(e, "apiVersion"), *kind = jstr(e, "kind");

        return (same_text(av, "apps/v1") &&
                (same_text(kind, "Deployment") || same_text(kind, "StatefulSet") ||
                 same_text(kind, "DaemonSet"))) ||
               (same_text(av, "batch/v1") && same_text(kind, "Job"));
}

int cm_addon_wait_healthy(struct cm_kube *k, const json_t *inventory, const struct cm_apply_options *o,
                          struct cm_apply_report *ret) {
        uint64_t deadline = cm_mono_usec() + (uint64_t) timeout_sec(o) * USEC_PER_SEC;
        size_t n = json_array_size(inventory);
        _cleanup_free_ bool *done = new0(bool, n + 1);
        struct run run;
        int r;

        if (!done)
                return report_fail(ret, -ENOMEM, "NotHealthy", "out of memory");
        r = run_init(&run, k, NULL, o, ret, false);
        while (r >= 0) {
                char waiting[CM_KUBE_ERROR_MAX / 2] = "";
                size_t pending = 0;

                for (size_t i = 0; r >= 0 && i < n; i++) {
                        const json_t *e = json_array_get(inventory, i);
                        struct cm_kube_ref ref = entry_ref(e);
                        struct cm_kube_error err = {};
                        json_t *live = NULL;
                        char why[160], what[400];

                        if (done[i] || !has_rollout(e) || !ref.name)
                                continue;
                        if (cancelled(o)) {
                                r = report_fail(ret, -ECANCELED, "Cancelled", "cancelled");
                                break;
                        }
                        ref.namespace = entry_namespace(e);
                        object_what(ref.kind, ref.namespace, ref.name, what, sizeof(what));
                        count_discovery(&run, ref.api_version);
                        r = cm_kube_get(k, &ref, &live, &err);
                        ret->api_calls++;
                        if (r == -ENOENT)
                                r = report_fail(ret, -ENOENT, "NotHealthy", "%s is gone", what);
                        else if (r < 0)
                                r = report_kube_fail(ret, r, "NotHealthy", &err);
                        if (r < 0)
                                break;
                        r = cm_addon_object_ready(live, why, sizeof(why));
                        json_decref(live);
                        if (r < 0) {
                                r = report_fail(ret, -EIO, "NotHealthy", "%s: %s", what, why);
                                break;
                        }
                        if (r > 0) {
                                done[i] = true;
                                continue;
                        }
                        if (pending++ == 0)
                                (void) cm_snprintf(waiting, sizeof(waiting), "%s: %s", what, why);
                }
                if (r < 0 || pending == 0)
                        break;
                if (cm_mono_usec() >= deadline) {
                        r = report_fail(ret, -ETIMEDOUT, "Timeout", "not rolled out after %u s: %s%s",
                                        timeout_sec(o), waiting, pending > 1 ? " (and more)" : "");
                        break;
                }
                pause_poll(o);
        }
        run_done(&run);
        return r < 0 ? r : 0;
}

/* ---- plans ---- */

/* The fields of an object that a plan compares: without what the server maintains. */
static json_t *comparable(const json_t *obj) {
        json_t *c = json_deep_copy(obj), *meta;

        if (!c)
                return NULL;
        (void) json_object_del(c, "status");
        meta = json_object_get(c, "metadata");
        if (json_is_object(meta)) {
                static const char *const server_fields[] = { "resourceVersion",   "managedFields",
                                                             "generation",        "uid",
                                                             "creationTimestamp", "selfLink" };

                for (size_t i = 0; i < ELEMENTSOF(server_fields); i++)
                        (void) json_object_del(meta, server_fields[i]);
        }
        return c;
}

/* Appends to out the keys of a whose values differ in b, and the keys of b missing from a (prefixed). */
static int differing_keys(json_t *a, json_t *b, const char *prefix, json_t *out) {
        const char *key;
        json_t *v;
        char name[160];

        json_object_foreach(a, key, v) {
                json_t *w = json_object_get(b, key);

                if (!prefix && streq(key, "metadata") && json_is_object(v) && json_is_object(w)) {
                        if (differing_keys(v, w, "metadata.", out) < 0)
                                return -ENOMEM;
                        continue;
                }
                if (json_equal(v, w))
                        continue;
                (void) cm_snprintf(name, sizeof(name), "%s%s", prefix ?: "", key);
                if (json_array_append_new(out, json_string(name)) < 0)
                        return -ENOMEM;
        }
        json_object_foreach(b, key, v) {
                if (json_object_get(a, key))
                        continue;
                (void) cm_snprintf(name, sizeof(name), "%s%s", prefix ?: "", key);
                if (json_array_append_new(out, json_string(name)) < 0)
                        return -ENOMEM;
        }
        return 0;
}

static int plan_action(struct cm_apply_report *ret, json_t *step, const char *action) {
        if (json_object_set_new(step, "action", json_string(action)) < 0)
                return report_fail(ret, -ENOMEM, "PlanFailed", "out of memory");
        return 0;
}

static int plan_one(struct run *run, const struct cm_manifest_object *obj, json_t *plan) {
        _cleanup_(cm_json_wipe_and_free) json_t *send = NULL, *live = NULL, *dry = NULL, *a = NULL,
                                                *b = NULL;
        struct cm_apply_report *ret = run->ret;
        struct cm_kube_resource res = {};
        struct cm_kube_error err = {};
        struct cm_kube_ref ref = {};
        bool pending = false;
        json_t *step, *fields;
        int r;

        r = resolve_kind(run, obj, &pending, &res);
        if (r < 0)
                return r;
        r = prepare(run, obj, res.namespaced, "PlanFailed", &send);
        if (r < 0)
                return r;
        ref = (struct cm_kube_ref){ .api_version = obj->api_version,
                                    .kind = obj->kind,
                                    .namespace = jstr(json_object_get(send, "metadata"), "namespace"),
                                    .name = obj->name };
        step = ref_json(obj->api_version, obj->kind, ref.namespace, obj->name);
        if (!step || json_array_append_new(plan, step) < 0)
                return report_fail(ret, -ENOMEM, "PlanFailed", "out of memory");
        fields = json_array();
        if (!fields || json_object_set_new(step, "fields", fields) < 0)
                return report_fail(ret, -ENOMEM, "PlanFailed", "out of memory");
        if (pending) /* its kind comes with a definition of this manifest: nothing of it exists yet */
                return plan_action(ret, step, "create");
        r = cm_kube_get(run->k, &ref, &live, &err);
        ret->api_calls++;
        if (r == -ENOENT)
                return plan_action(ret, step, "create");
        if (r < 0)
                return report_kube_fail(ret, r, "PlanFailed", &err);
        r = cm_kube_apply(run->k, send, CM_ADDON_FIELD_MANAGER, true, true, &dry, &err);
        ret->api_calls++;
        if (r < 0) {
                (void) report_kube_fail(ret, r, "PlanFailed", &err);
                if (r != -ECANCELED && r != -ENOMEM) {
                        char msg[sizeof(ret->message)];

                        (void) cm_strlcpy(msg, ret->message, sizeof(msg));
                        (void) cm_snprintf(ret->message, sizeof(ret->message), "document %u: %s", obj->doc,
                                           msg);
                }
                return r;
        }
        a = comparable(live);
        b = comparable(dry);
        if (!a || !b || differing_keys(a, b, NULL, fields) < 0)
                return report_fail(ret, -ENOMEM, "PlanFailed", "out of memory");
        return plan_action(ret, step, json_array_size(fields) ? "update" : "unchanged");
}

int cm_addon_plan(struct cm_kube *k, const struct cm_manifest *m, const json_t *previous,
                  const struct cm_apply_options *o, json_t **ret_plan, struct cm_apply_report *ret) {
        _cleanup_(json_decrefp) json_t *plan = NULL;
        struct run run;
        const json_t *e;
        size_t i;
        int r;

        r = run_init(&run, k, m, o, ret, true);
        if (r < 0)
                goto out;
        plan = json_array();
        if (!plan) {
                r = report_fail(ret, -ENOMEM, "PlanFailed", "out of memory");
                goto out;
        }
        for (i = 0; i < m->n; i++) {
                if (cancelled(o)) {
                        r = report_fail(ret, -ECANCELED, "Cancelled", "cancelled");
                        goto out;
                }
                r = plan_one(&run, &m->objects[i], plan);
                if (r < 0)
                        goto out;
        }
        /* Objects of the previous apply that the add-on no longer has would be pruned. */
        json_array_foreach(previous, i, e) {
                struct cm_kube_ref ref = entry_ref(e);
                bool kept = false;
                json_t *step;

                if (!ref.api_version || !ref.kind || !ref.name)
                        continue;
                for (size_t j = 0; j < json_array_size(plan) && !kept; j++)
                        kept = entry_is(json_array_get(plan, j), ref.api_version, ref.kind,
                                        entry_namespace(e), ref.name);
                if (kept)
                        continue;
                step = json_pack("{s:s, s:s, s:s*, s:s, s:s, s:[]}", "apiVersion", ref.api_version, "kind",
                                 ref.kind, "namespace", entry_namespace(e), "name", ref.name, "action",
                                 "prune", "fields");
                if (!step || json_array_append_new(plan, step) < 0) {
                        r = report_fail(ret, -ENOMEM, "PlanFailed", "out of memory");
                        goto out;
                }
        }
        *ret_plan = TAKE_PTR(plan);
        r = 0;
out:
        run_done(&run);
        return r;
}
