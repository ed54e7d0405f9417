/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Post-bootstrap configuration, the parts without a cluster: customer access settings (decoding,
 * defaults, spec.customer over them), the objects applied, the status record, the customer kubeconfig
 * built from a token; and the Kubernetes client's error handling.
 */
#include "base/common.h"

#include <setjmp.h>
#include <cmocka.h>
#include <jansson.h>

#include "addons/apply.h"
#include "addons/customer.h"
#include "api/problem.h"
#include "base/strbuf.h"
#include "kube/client.h"
#include "monitor/health.h"

/* base64 of "TEST-CA-PEM\n", "TEST-CLIENT-CERT\n", "TEST-CLIENT-KEY\n" */
#define CA_B64 "VEVTVC1DQS1QRU0K"
#define CERT_B64 "VEVTVC1DTElFTlQtQ0VSVAo="
#define KEY_B64 "VEVTVC1DTElFTlQtS0VZCg=="
#define TOKEN "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6Y3VzdG9tZXI6Y3VzdG9tZXIifQ.c2ln"

static const char admin_kubeconfig[] =
        "apiVersion: v1\nkind: Config\n"
        "clusters:\n- cluster:\n    certificate-authority-data: " CA_B64 "\n"
        "    server: https://127.0.0.1:6443\n  name: local\n"
        "contexts:\n- context:\n    cluster: local\n    user: admin\n  name: local\n"
        "current-context: local\n"
        "users:\n- name: admin\n  user:\n    client-certificate-data: " CERT_B64 "\n"
        "    client-key-data: " KEY_B64 "\n";

/* The field paths of a problem's errors, comma-separated. */
static void problem_fields(const struct cm_problem *p, char *buf, size_t size) {
        const json_t *e;
        size_t i, n = 0;

        buf[0] = 0;
        json_array_foreach(p->errors, i, e) {
                int k = snprintf(buf + n, size - n, "%s%s", n ? "," : "",
                                 json_string_value(json_object_get(e, "field")));

                if (k < 0 || (size_t) k >= size - n)
                        break;
                n += (size_t) k;
        }
}

/* Decodes text over the built-in defaults: the return value; the error fields in fields. */
static int decode(const char *text, struct cm_customer_settings *ret, char *fields, size_t size) {
        struct cm_customer_settings defaults;
        struct cm_problem p;
        json_t *doc = json_loads(text, 0, NULL);
        int r;

        assert_non_null(doc);
        cm_customer_settings_default(&defaults);
        cm_problem_init(&p);
        r = cm_customer_settings_decode(doc, &defaults, ret, &p);
        problem_fields(&p, fields, size);
        cm_problem_done(&p);
        json_decref(doc);
        return r;
}

static void test_settings_defaults(void **state) {
        struct cm_customer_settings s;
        _cleanup_strbuf_ struct strbuf out = STRBUF_INIT(4096);

        cm_customer_settings_default(&s);
        assert_true(s.enabled);
        assert_string_equal(s.namespace, "customer");
        assert_string_equal(s.service_account, "customer");
        assert_string_equal(s.role, "cluster-admin");
        assert_int_equal(s.scope, CM_CUSTOMER_SCOPE_CLUSTER);
        assert_int_equal(s.token_lifetime_sec, 86400);
        assert_int_equal(cm_customer_settings_encode(&s, &out), 0);
        assert_string_equal(out.buf,
                            "{\"enabled\":true,\"namespace\":\"customer\",\"serviceAccount\":\"customer\","
                            "\"role\":\"cluster-admin\",\"roleScope\":\"cluster\","
                            "\"tokenLifetimeSeconds\":86400}");
        assert_string_equal(cm_customer_scope_to_string(CM_CUSTOMER_SCOPE_NAMESPACE), "namespace");
        assert_null(cm_customer_scope_to_string(_CM_CUSTOMER_SCOPE_MAX));
}

static void test_settings_decode(void **state) {
        struct cm_customer_settings s;
        char fields[256];

        /* Every member. */
        assert_int_equal(decode("{\"enabled\":false,\"namespace\":\"team\",\"serviceAccount\":\"dev\","
                                "\"role\":\"system:aggregate-to-view\",\"roleScope\":\"namespace\","
                                "\"tokenLifetimeSeconds\":600}",
                                &s, fields, sizeof(fields)),
                         0);
        assert_false(s.enabled);
        assert_string_equal(s.namespace, "team");
        assert_string_equal(s.service_account, "dev");
        assert_string_equal(s.role, "system:aggregate-to-view");
        assert_int_equal(s.scope, CM_CUSTOMER_SCOPE_NAMESPACE);
        assert_int_equal(s.token_lifetime_sec, 600);

        /* Members left out keep the defaults; the bounds are inclusive. */
        assert_int_equal(decode("{\"tokenLifetimeSeconds\":31536000}", &s, fields, sizeof(fields)), 0);
        assert_true(s.enabled);
        assert_string_equal(s.namespace, "customer");
        assert_string_equal(s.role, "cluster-admin");
        assert_int_equal(s.token_lifetime_sec, 31536000);
        assert_int_equal(decode("{}", &s, fields, sizeof(fields)), 0);
        assert_int_equal(s.token_lifetime_sec, 86400);
}

static void test_settings_refused(void **state) {
        static const struct {
                const char *doc;
                const char *fields;
        } cases[] = {
                { "{\"tokenLifetimeSeconds\":599}", "tokenLifetimeSeconds" },
                { "{\"tokenLifetimeSeconds\":31536001}", "tokenLifetimeSeconds" },
                { "{\"tokenLifetimeSeconds\":\"600\"}", "tokenLifetimeSeconds" },
                { "{\"tokenLifetimeSeconds\":600.5}", "tokenLifetimeSeconds" },
                { "{\"namespace\":\"Team\"}", "namespace" },
                { "{\"namespace\":\"\"}", "namespace" },
                { "{\"serviceAccount\":\"a-very-long-name-that-is-longer-than-sixty-three-characters-in-"
                  "all\"}",
                  "serviceAccount" },
                { "{\"serviceAccount\":7}", "serviceAccount" },
                { "{\"role\":\"\"}", "role" },
                { "{\"role\":\"a/b\"}", "role" },
                { "{\"role\":\"..\"}", "role" },
                { "{\"role\":\"with space\"}", "role" },
                { "{\"roleScope\":\"global\"}", "roleScope" },
                { "{\"roleScope\":null}", "roleScope" },
                { "{\"enabled\":\"yes\"}", "enabled" },
                { "{\"color\":\"blue\"}", "color" },
                { "{\"namespace\":\"UP\",\"roleScope\":\"x\",\"extra\":1}", "extra,namespace,roleScope" },
        };
        struct cm_customer_settings s = { .token_lifetime_sec = 42 };
        char fields[256];

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                int r = decode(cases[i].doc, &s, fields, sizeof(fields));

                if (r != -EINVAL || !streq(fields, cases[i].fields))
                        fail_msg("%s: %d, fields '%s' (expected '%s')", cases[i].doc, r, fields,
                                 cases[i].fields);
                /* Nothing is written on failure. */
                assert_int_equal(s.token_lifetime_sec, 42);
        }
}

static void test_effective(void **state) {
        struct cm_customer_settings env, s;
        char error[256] = "";
        json_t *spec;

        cm_customer_settings_default(&env);
        (void) cm_strlcpy(env.role, "view", sizeof(env.role));
        env.scope = CM_CUSTOMER_SCOPE_NAMESPACE;

        /* No spec.customer: the environment's settings. */
        spec = json_pack("{s:s}", "engine", "local");
        assert_int_equal(cm_customer_effective(&env, spec, &s, error, sizeof(error)), 0);
        assert_string_equal(s.namespace, "customer");
        assert_string_equal(s.role, "view");
        json_decref(spec);

        /* spec.customer overrides what it names; an empty role keeps the environment's. */
        spec = json_pack("{s:{s:s, s:s}}", "customer", "namespace", "payments", "role", "");
        assert_int_equal(cm_customer_effective(&env, spec, &s, error, sizeof(error)), 0);
        assert_string_equal(s.namespace, "payments");
        assert_string_equal(s.service_account, "customer");
        assert_string_equal(s.role, "view");
        assert_int_equal(s.scope, CM_CUSTOMER_SCOPE_NAMESPACE);
        json_decref(spec);

        spec = json_pack("{s:{s:s, s:s}}", "customer", "serviceAccount", "ci", "role", "edit");
        assert_int_equal(cm_customer_effective(&env, spec, &s, error, sizeof(error)), 0);
        assert_string_equal(s.namespace, "customer");
        assert_string_equal(s.service_account, "ci");
        assert_string_equal(s.role, "edit");
        json_decref(spec);

        /* What the API's validation lets through but RBAC cannot bind. */
        spec = json_pack("{s:{s:s}}", "customer", "role", "team/admin");
        assert_int_equal(cm_customer_effective(&env, spec, &s, error, sizeof(error)), -EINVAL);
        assert_non_null(strstr(error, "spec.customer.role"));
        json_decref(spec);
}

static const char *label(const json_t *obj, const char *key) {
        return json_string_value(
                json_object_get(json_object_get(json_object_get(obj, "metadata"), "labels"), key));
}

static const char *meta(const json_t *obj, const char *key) {
        return json_string_value(json_object_get(json_object_get(obj, "metadata"), key));
}

static void test_objects(void **state) {
        struct cm_customer_settings s;
        struct cm_customer_objects o = {};
        const json_t *subject;

        cm_customer_settings_default(&s);
        assert_int_equal(cm_customer_objects_build(&s, &o), 0);

        assert_string_equal(json_string_value(json_object_get(o.namespace, "apiVersion")), "v1");
        assert_string_equal(json_string_value(json_object_get(o.namespace, "kind")), "Namespace");
        assert_string_equal(meta(o.namespace, "name"), "customer");
        assert_null(meta(o.namespace, "namespace"));

        assert_string_equal(json_string_value(json_object_get(o.service_account, "kind")), "ServiceAccount");
        assert_string_equal(meta(o.service_account, "name"), "customer");
        assert_string_equal(meta(o.service_account, "namespace"), "customer");

        assert_string_equal(json_string_value(json_object_get(o.binding, "apiVersion")),
                            "rbac.authorization.k8s.io/v1");
        assert_string_equal(json_string_value(json_object_get(o.binding, "kind")), "ClusterRoleBinding");
        assert_string_equal(meta(o.binding, "name"), "clustermgmt-customer-customer");
        assert_null(meta(o.binding, "namespace"));
        assert_string_equal(
                json_string_value(json_object_get(json_object_get(o.binding, "roleRef"), "kind")),
                "ClusterRole");
        assert_string_equal(
                json_string_value(json_object_get(json_object_get(o.binding, "roleRef"), "name")),
                "cluster-admin");
        assert_string_equal(
                json_string_value(json_object_get(json_object_get(o.binding, "roleRef"), "apiGroup")),
                "rbac.authorization.k8s.io");
        assert_int_equal(json_array_size(json_object_get(o.binding, "subjects")), 1);
        subject = json_array_get(json_object_get(o.binding, "subjects"), 0);
        assert_string_equal(json_string_value(json_object_get(subject, "kind")), "ServiceAccount");
        assert_string_equal(json_string_value(json_object_get(subject, "name")), "customer");
        assert_string_equal(json_string_value(json_object_get(subject, "namespace")), "customer");

        assert_string_equal(label(o.namespace, "app.kubernetes.io/managed-by"), "clustermgmt");
        assert_string_equal(label(o.service_account, "app.kubernetes.io/managed-by"), "clustermgmt");
        assert_string_equal(label(o.binding, "app.kubernetes.io/managed-by"), "clustermgmt");
        cm_customer_objects_done(&o);
        assert_null(o.binding);
        cm_customer_objects_done(&o);

        /* Namespace scope: a RoleBinding in the customer namespace, of the ClusterRole. */
        (void) cm_strlcpy(s.namespace, "team", sizeof(s.namespace));
        (void) cm_strlcpy(s.service_account, "dev", sizeof(s.service_account));
        (void) cm_strlcpy(s.role, "view", sizeof(s.role));
        s.scope = CM_CUSTOMER_SCOPE_NAMESPACE;
        assert_int_equal(cm_customer_objects_build(&s, &o), 0);
        assert_string_equal(json_string_value(json_object_get(o.binding, "kind")), "RoleBinding");
        assert_string_equal(meta(o.binding, "name"), "clustermgmt-customer-dev");
        assert_string_equal(meta(o.binding, "namespace"), "team");
        assert_string_equal(
                json_string_value(json_object_get(json_object_get(o.binding, "roleRef"), "kind")),
                "ClusterRole");
        assert_string_equal(
                json_string_value(json_object_get(json_object_get(o.binding, "roleRef"), "name")), "view");
        subject = json_array_get(json_object_get(o.binding, "subjects"), 0);
        assert_string_equal(json_string_value(json_object_get(subject, "namespace")), "team");
        assert_string_equal(meta(o.service_account, "namespace"), "team");
        cm_customer_objects_done(&o);
}

static void test_record(void **state) {
        struct cm_customer_settings s;
        struct cm_customer_record rec, back;
        json_t *status;
        char *text;

        cm_customer_settings_default(&s);
        s.scope = CM_CUSTOMER_SCOPE_NAMESPACE;
        cm_customer_record_from_settings(&s, &rec);
        assert_string_equal(rec.binding_kind, "RoleBinding");
        assert_string_equal(rec.binding_namespace, "customer");
        assert_string_equal(rec.binding_name, "clustermgmt-customer-customer");

        /* It round-trips through a cluster's status, next to the engine's facts. */
        status = json_pack("{s:s, s:i, s:o}", "endpoint", "https://127.0.0.1:6443", "nodes", 1,
                           "customerAccess", cm_customer_record_to_json(&rec));
        assert_non_null(status);
        text = json_dumps(status, JSON_COMPACT | JSON_SORT_KEYS);
        assert_non_null(strstr(
                text, "\"binding\":{\"kind\":\"RoleBinding\",\"name\":\"clustermgmt-customer-customer\","
                      "\"namespace\":\"customer\"}"));
        assert_int_equal(cm_customer_record_from_status(text, &back), 0);
        assert_string_equal(back.namespace, "customer");
        assert_string_equal(back.service_account, "customer");
        assert_string_equal(back.role, "cluster-admin");
        assert_int_equal(back.scope, CM_CUSTOMER_SCOPE_NAMESPACE);
        assert_string_equal(back.binding_kind, "RoleBinding");
        assert_string_equal(back.binding_namespace, "customer");
        assert_string_equal(back.binding_name, "clustermgmt-customer-customer");
        free(text);
        json_decref(status);

        /* A ClusterRoleBinding has no namespace. */
        s.scope = CM_CUSTOMER_SCOPE_CLUSTER;
        cm_customer_record_from_settings(&s, &rec);
        status = cm_customer_record_to_json(&rec);
        assert_null(json_object_get(json_object_get(status, "binding"), "namespace"));
        json_decref(status);

        assert_int_equal(cm_customer_record_from_status(NULL, &back), -ENOENT);
        assert_int_equal(cm_customer_record_from_status("{\"endpoint\":\"x\"}", &back), -ENOENT);
        assert_int_equal(cm_customer_record_from_status("{\"customerAccess\":{\"namespace\":\"x\"}}", &back),
                         -EINVAL);
        assert_int_equal(cm_customer_record_from_status(
                                 "{\"customerAccess\":{\"namespace\":\"Bad!\",\"serviceAccount\":"
                                 "\"a\",\"role\":\"r\",\"roleScope\":\"cluster\",\"binding\":"
                                 "{\"kind\":\"ClusterRoleBinding\",\"name\":\"n\"}}}",
                                 &back),
                         -EINVAL);
}

static void test_kubeconfig_build(void **state) {
        struct cm_kubeconfig admin = {}, parsed = {};
        struct cm_customer_settings s;
        struct cm_customer_record rec;
        _cleanup_strbuf_ struct strbuf out = {};
        char err[256] = "";

        assert_int_equal(
                cm_kubeconfig_parse(admin_kubeconfig, strlen(admin_kubeconfig), &admin, err, sizeof(err)),
                0);
        cm_customer_settings_default(&s);
        (void) cm_strlcpy(s.namespace, "team", sizeof(s.namespace));
        cm_customer_record_from_settings(&s, &rec);
        strbuf_init_secret(&out, 64 * 1024);
        assert_int_equal(cm_customer_kubeconfig_build(&admin, "prod-east", &rec, TOKEN,
                                                      1764000000ULL * USEC_PER_SEC, &out),
                         0);

        /* What a client reads back: the admin kubeconfig's server and CA, the token, nothing else of admin. */
        assert_int_equal(cm_kubeconfig_parse(out.buf, out.len, &parsed, err, sizeof(err)), 0);
        assert_string_equal(parsed.server, "https://127.0.0.1:6443");
        assert_string_equal(parsed.ca_pem, "TEST-CA-PEM\n");
        assert_string_equal(parsed.token, TOKEN);
        assert_null(parsed.cert_pem);
        assert_null(parsed.key_pem);
        assert_null(strstr(out.buf, CERT_B64));
        assert_null(strstr(out.buf, KEY_B64));
        assert_null(strstr(out.buf, "client-"));
        assert_non_null(strstr(out.buf, "2025-11-24T16:00:00"));
        cm_kubeconfig_done(&parsed);

        /* The one context: the cluster, the customer's user, the customer namespace. */
        assert_non_null(strstr(out.buf,
                               "contexts:\n- name: \"prod-east\"\n  context:\n    cluster: \"prod-east\"\n"
                               "    user: \"customer@prod-east\"\n    namespace: \"team\"\n"));
        assert_non_null(strstr(out.buf, "current-context: \"prod-east\"\n"));

        /* A token that is no bearer token, or a cluster name that is not a label, is refused. */
        strbuf_reset(&out);
        assert_int_equal(cm_customer_kubeconfig_build(&admin, "prod-east", &rec, "two words", 0, &out),
                         -EINVAL);
        assert_int_equal(cm_customer_kubeconfig_build(&admin, "prod-east", &rec, "", 0, &out), -EINVAL);
        assert_int_equal(cm_customer_kubeconfig_build(&admin, "Prod\"", &rec, TOKEN, 0, &out), -EINVAL);
        cm_kubeconfig_done(&admin);
}

static void test_kube_errors(void **state) {
        static const char status_body[] =
                "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
                "\"message\":\"serviceaccounts \\\"dev\\\" not found\\n\\u001b[31m"
                " token: abcdefghijkl\",\"reason\":\"NotFound\",\"code\":404}";
        struct cm_kube_error err = {};

        assert_int_equal(cm_kube_status_errno(400), -EINVAL);
        assert_int_equal(cm_kube_status_errno(401), -EACCES);
        assert_int_equal(cm_kube_status_errno(403), -EPERM);
        assert_int_equal(cm_kube_status_errno(404), -ENOENT);
        assert_int_equal(cm_kube_status_errno(409), -EBUSY);
        assert_int_equal(cm_kube_status_errno(415), -EOPNOTSUPP);
        assert_int_equal(cm_kube_status_errno(422), -EINVAL);
        assert_int_equal(cm_kube_status_errno(429), -EAGAIN);
        assert_int_equal(cm_kube_status_errno(503), -EIO);
        assert_int_equal(cm_kube_status_errno(302), -EPROTO);

        /* The API server's Status: reason and message, control characters replaced, secrets masked. */
        assert_int_equal(cm_kube_error_from_answer(&err, "get ServiceAccount team/dev", 404, status_body,
                                                   strlen(status_body)),
                         -ENOENT);
        assert_int_equal(err.status, 404);
        assert_string_equal(err.reason, "NotFound");
        assert_non_null(strstr(err.message,
                               "get ServiceAccount team/dev: the API server answered 404 NotFound: "
                               "serviceaccounts \"dev\" not found??[31m"));
        assert_null(strstr(err.message, "abcdefghijkl"));
        for (const char *p = err.message; *p; p++)
                assert_true((unsigned char) *p >= 0x20);

        /* An answer that is not a Status still names the object and the status. */
        assert_int_equal(cm_kube_error_from_answer(&err, "apply Namespace x", 500, "<html>", 6), -EIO);
        assert_string_equal(err.message, "apply Namespace x: the API server answered 500");
        assert_string_equal(err.reason, "");
}

static void test_kube_open(void **state) {
        static const char unreachable[] =
                "apiVersion: v1\nkind: Config\n"
                "clusters:\n- cluster:\n    certificate-authority-data: " CA_B64 "\n"
                "    server: https://127.0.0.1:1\n  name: c\n"
                "contexts:\n- context:\n    cluster: c\n    user: u\n  name: c\n"
                "users:\n- name: u\n  user:\n    token: " TOKEN "\n";
        _cleanup_(cm_kube_closep) struct cm_kube *k = NULL;
        _cleanup_strbuf_ struct strbuf resp = STRBUF_INIT(1024);
        struct cm_kube_error err = {};
        struct cm_kube_resource res;
        long status = 0;

        /* A kubeconfig the client cannot use is refused with the parser's reason. */
        assert_int_equal(cm_kube_open("kind: Config\n", 13, NULL, &k, &err), -EINVAL);
        assert_null(k);
        assert_non_null(strstr(err.message, "the kubeconfig is not usable"));

        assert_int_equal(cm_kube_open(admin_kubeconfig, strlen(admin_kubeconfig), NULL, &k, &err), 0);
        assert_string_equal(cm_kube_kubeconfig(k)->server, "https://127.0.0.1:6443");
        /* Requests and names it refuses before sending anything. */
        assert_int_equal(cm_kube_request(k, "TRACE", "/api", NULL, NULL, 0, &status, &resp, &err), -EINVAL);
        assert_int_equal(cm_kube_request(k, "GET", "api", NULL, NULL, 0, &status, &resp, &err), -EINVAL);
        assert_int_equal(cm_kube_request(k, "GET", "/api v1", NULL, NULL, 0, &status, &resp, &err), -EINVAL);
        assert_int_equal(cm_kube_resolve(k, "Apps/v1", "Deployment", &res, &err), -EINVAL);
        assert_int_equal(cm_kube_resolve(k, "apps/v1", "Deploy-ment", &res, &err), -EINVAL);
        assert_int_equal(cm_kube_resolve(k, "/v1", "Deployment", &res, &err), -EINVAL);
        k = cm_kube_close(k);

        /* A server nobody listens on: no answer, an error that names the server and never the token. */
        assert_int_equal(cm_kube_open(unreachable, strlen(unreachable), NULL, &k, &err), 0);
        assert_int_equal(cm_kube_request(k, "GET", "/api/v1", NULL, NULL, 0, &status, &resp, &err),
                         -EHOSTUNREACH);
        assert_non_null(strstr(err.message, "https://127.0.0.1:1"));
        assert_null(strstr(err.message, "eyJ"));
        assert_int_equal(err.status, 0);
}

/* ---- rollout decisions (addons/apply.h) ---- */

struct ready_case {
        const char *live;
        int expect;
        const char *why; /* a part of the reason; NULL: none expected */
};

static void test_object_ready(void **state) {
        static const struct ready_case cases[] = {
                /* Kinds without a rollout are ready as soon as they exist. */
                { "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\"}", 1, NULL },
                { "{}", 1, NULL },
                /* Deployments */
                { "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"generation\":2},"
                  "\"spec\":{\"replicas\":2},\"status\":{\"observedGeneration\":1,\"replicas\":2,"
                  "\"updatedReplicas\":2,\"availableReplicas\":2}}",
                  0, "generation 2" },
                { "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"generation\":2},"
                  "\"spec\":{\"replicas\":2},\"status\":{\"observedGeneration\":2,\"replicas\":3,"
                  "\"updatedReplicas\":1,\"availableReplicas\":2}}",
                  0, "1/2 replicas updated" },
                { "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"generation\":2},"
                  "\"spec\":{\"replicas\":2},\"status\":{\"observedGeneration\":2,\"replicas\":3,"
                  "\"updatedReplicas\":2,\"availableReplicas\":2}}",
                  0, "1 old replicas" },
                { "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"generation\":2},"
                  "\"spec\":{\"replicas\":2},\"status\":{\"observedGeneration\":2,\"replicas\":2,"
                  "\"updatedReplicas\":2,\"availableReplicas\":1}}",
                  0, "1/2 replicas available" },
                { "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"generation\":2},"
                  "\"spec\":{\"replicas\":2},\"status\":{\"observedGeneration\":2,\"replicas\":2,"
                  "\"updatedReplicas\":2,\"availableReplicas\":2}}",
                  1, NULL },
                /* replicas defaults to 1 */
                { "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"generation\":1},"
                  "\"spec\":{},\"status\":{\"observedGeneration\":1}}",
                  0, "0/1 replicas updated" },
                { "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"generation\":1},"
                  "\"spec\":{\"replicas\":0},\"status\":{\"observedGeneration\":1}}",
                  1, NULL },
                { "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"generation\":1},"
                  "\"spec\":{\"replicas\":1},\"status\":{\"observedGeneration\":1,\"conditions\":[{\"type\":"
                  "\"Progressing\",\"status\":\"False\",\"reason\":\"ProgressDeadlineExceeded\"}]}}",
                  -1, "progress deadline" },
                /* StatefulSets */
                { "{\"apiVersion\":\"apps/v1\",\"kind\":\"StatefulSet\",\"metadata\":{\"generation\":1},"
                  "\"spec\":{\"replicas\":3},\"status\":{\"observedGeneration\":1,\"readyReplicas\":2}}",
                  0, "2/3 replicas ready" },
                { "{\"apiVersion\":\"apps/v1\",\"kind\":\"StatefulSet\",\"metadata\":{\"generation\":1},"
                  "\"spec\":{\"replicas\":3},\"status\":{\"observedGeneration\":1,\"readyReplicas\":3,"
                  "\"currentRevision\":\"a\",\"updateRevision\":\"b\",\"updatedReplicas\":1}}",
                  0, "1/3 replicas updated" },
                { "{\"apiVersion\":\"apps/v1\",\"kind\":\"StatefulSet\",\"metadata\":{\"generation\":1},"
                  "\"spec\":{\"replicas\":3},\"status\":{\"observedGeneration\":1,\"readyReplicas\":3,"
                  "\"currentRevision\":\"b\",\"updateRevision\":\"b\"}}",
                  1, NULL },
                /* DaemonSets */
                { "{\"apiVersion\":\"apps/v1\",\"kind\":\"DaemonSet\",\"metadata\":{\"generation\":1},"
                  "\"status\":{\"observedGeneration\":1,\"desiredNumberScheduled\":3,"
                  "\"updatedNumberScheduled\":3,\"numberAvailable\":2}}",
                  0, "2/3 pods available" },
                { "{\"apiVersion\":\"apps/v1\",\"kind\":\"DaemonSet\",\"metadata\":{\"generation\":1},"
                  "\"status\":{\"observedGeneration\":1,\"desiredNumberScheduled\":3,"
                  "\"updatedNumberScheduled\":3,\"numberAvailable\":3}}",
                  1, NULL },
                /* Jobs */
                { "{\"apiVersion\":\"batch/v1\",\"kind\":\"Job\",\"status\":{}}", 0, "not complete" },
                { "{\"apiVersion\":\"batch/v1\",\"kind\":\"Job\",\"status\":{\"conditions\":[{\"type\":"
                  "\"Complete\",\"status\":\"True\"}]}}",
                  1, NULL },
                { "{\"apiVersion\":\"batch/v1\",\"kind\":\"Job\",\"status\":{\"conditions\":[{\"type\":"
                  "\"Failed\",\"status\":\"True\",\"reason\":\"BackoffLimitExceeded\"}]}}",
                  -1, "BackoffLimitExceeded" },
                /* A reason with control characters is not shown. */
                { "{\"apiVersion\":\"batch/v1\",\"kind\":\"Job\",\"status\":{\"conditions\":[{\"type\":"
                  "\"Failed\",\"status\":\"True\",\"reason\":\"x\\u001b[31m\"}]}}",
                  -1, "no reason given" },
                /* Odd types do not confuse it. */
                { "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"generation\":\"2\"},"
                  "\"spec\":{\"replicas\":\"x\"},\"status\":[]}",
                  0, "has not seen" },
        };
        (void) state;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                json_t *live = json_loads(cases[i].live, 0, NULL);
                char why[160] = "unset";
                int r;

                assert_non_null(live);
                r = cm_addon_object_ready(live, why, sizeof(why));
                print_message("case %zu: %d %s\n", i, r, why);
                assert_int_equal(r, cases[i].expect);
                if (cases[i].why)
                        assert_non_null(strstr(why, cases[i].why));
                else
                        assert_string_equal(why, "");
                json_decref(live);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_settings_defaults), cmocka_unit_test(test_settings_decode),
                cmocka_unit_test(test_settings_refused),  cmocka_unit_test(test_effective),
                cmocka_unit_test(test_objects),           cmocka_unit_test(test_record),
                cmocka_unit_test(test_kubeconfig_build),  cmocka_unit_test(test_kube_errors),
                cmocka_unit_test(test_kube_open),         cmocka_unit_test(test_object_ready),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
