/* SPDX-License-Identifier: Apache-2.0 */
/* The built-in policy rules, settings documents, the catalogue and the evaluator on hostile input. */
#include "base/common.h"

#include <arpa/inet.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/json.h"
#include "policy/policy.h"
#include "policy/policy_internal.h"

#define N3                                                                                                  \
        "{\"address\":\"10.0.0.1\",\"user\":\"u\",\"roles\":[\"controlplane\",\"etcd\",\"worker\"],"        \
        "\"sshKey\":\"k\"},"                                                                                \
        "{\"address\":\"10.0.0.2\",\"user\":\"u\",\"roles\":[\"controlplane\",\"etcd\",\"worker\"],"        \
        "\"sshKey\":\"k\"},"                                                                                \
        "{\"address\":\"10.0.0.3\",\"user\":\"u\",\"roles\":[\"controlplane\",\"etcd\",\"worker\"],"        \
        "\"sshKey\":\"k\"}"
#define NODE(addr, roles) "{\"address\":\"" addr "\",\"user\":\"u\",\"roles\":[" roles "],\"sshKey\":\"k\"}"
#define ALL "\"controlplane\",\"etcd\",\"worker\""
#define RKE(nodes) "{\"engine\":\"rke\",\"rke\":{\"nodes\":[" nodes "]}}"
#define PROD "{\"tier\":\"production\"}"
#define VERSIONS "[\"v1.32.7-rancher1-1\",\"v1.31.11-rancher1-1\"]"

static json_t *load(const char *text) {
        json_error_t err;
        json_t *v;

        if (!text)
                return NULL;
        v = json_loads(text, JSON_DECODE_ANY, &err);
        if (!v)
                fail_msg("bad JSON in the test: %s: %s", err.text, text);
        return v;
}

/* Effective settings of a settings document (NULL: the defaults); fails the test when refused. */
static json_t *effective(const char *doc) {
        _cleanup_free_ char *canonical = NULL;
        struct cm_problem p;
        json_t *s;

        cm_problem_init(&p);
        if (doc && cm_policy_settings_decode(doc, strlen(doc), &canonical, &p) < 0)
                fail_msg("settings refused: %s: %s", p.detail,
                         p.errors ? json_string_value(json_object_get(json_array_get(p.errors, 0), "reason"))
                                  : "");
        cm_problem_done(&p);
        s = cm_policy_settings_effective(canonical);
        assert_non_null(s);
        return s;
}

struct evalcase {
        const char *name;
        const char *spec;
        const char *env_labels;
        const char *labels;
        const char *settings; /* a settings document, NULL for the defaults */
        const char *versions; /* NULL: null */
        const char *def; /* the engine's default version */
        /* Expected: "deny:<rule>@<field>" and "warn:..." entries, all of them, separated by spaces. */
        const char *expect;
        const char *message_part; /* a part of the first violation's message, or NULL */
};

static json_t *input_of(const struct evalcase *c) {
        json_t *env_labels = load(c->env_labels), *labels = load(c->labels), *spec = load(c->spec),
               *versions = load(c->versions), *settings = effective(c->settings), *in;
        const char *engine = json_string_value(json_object_get(spec, "engine"));

        in = cm_policy_input_build("create", "admin", "env", env_labels, "east", labels, spec, engine,
                                   versions, c->def, settings);
        assert_non_null(in);
        json_decref(env_labels);
        json_decref(labels);
        json_decref(spec);
        json_decref(versions);
        json_decref(settings);
        return in;
}

/* "deny:rule@field warn:rule@field" of a decision, in the evaluator's order. */
static void summary(const struct cm_policy_decision *d, char *buf, size_t size) {
        const json_t *lists[2] = { d->deny, d->warn };
        size_t o = 0;

        buf[0] = 0;
        for (int l = 0; l < 2; l++) {
                size_t i;
                json_t *v;

                json_array_foreach(lists[l], i, v) {
                        int n = snprintf(buf + o, size - o, "%s%s:%s@%s", o ? " " : "", l ? "warn" : "deny",
                                         json_string_value(json_object_get(v, "rule")),
                                         json_string_value(json_object_get(v, "field")));
                        if (n < 0 || (size_t) n >= size - o)
                                fail_msg("summary too long");
                        o += (size_t) n;
                }
        }
}

static const char *first_message(const struct cm_policy_decision *d) {
        const json_t *v = json_array_size(d->deny) ? json_array_get(d->deny, 0) : json_array_get(d->warn, 0);

        return json_string_value(json_object_get(v, "message"));
}

static void run_cases(const struct evalcase *cases, size_t n) {
        for (size_t i = 0; i < n; i++) {
                json_t *in = input_of(&cases[i]);
                struct cm_policy_decision d = {};
                char got[2048];

                assert_int_equal(cm_policy_evaluate_builtin(in, &d), 0);
                summary(&d, got, sizeof(got));
                if (!streq(got, cases[i].expect))
                        fail_msg("case '%s': got '%s', want '%s'", cases[i].name, got, cases[i].expect);
                if (cases[i].message_part && !strstr(first_message(&d) ?: "", cases[i].message_part))
                        fail_msg("case '%s': message '%s' lacks '%s'", cases[i].name, first_message(&d),
                                 cases[i].message_part);
                cm_policy_decision_done(&d);
                json_decref(in);
        }
}

static void test_etcd_snapshots(void **state) {
        static const struct evalcase cases[] = {
                { "default passes", RKE(N3), NULL, NULL, NULL, NULL, NULL, "", NULL },
                { "switched off",
                  "{\"engine\":\"rke\",\"rke\":{\"nodes\":[" N3 "],\"etcdSnapshots\":{\"enabled\":false}}}",
                  NULL, NULL, NULL, NULL, NULL, "deny:etcd-snapshots@spec.rke.etcdSnapshots.enabled",
                  "set spec.rke.etcdSnapshots.enabled to true or leave it out" },
                { "switched on",
                  "{\"engine\":\"rke\",\"rke\":{\"nodes\":[" N3 "],\"etcdSnapshots\":{\"enabled\":true}}}",
                  NULL, NULL, NULL, NULL, NULL, "", NULL },
                { "off, but warn",
                  "{\"engine\":\"rke\",\"rke\":{\"nodes\":[" N3 "],\"etcdSnapshots\":{\"enabled\":false}}}",
                  NULL, NULL, "{\"rules\":{\"etcd-snapshots\":{\"effect\":\"warn\"}}}", NULL, NULL,
                  "warn:etcd-snapshots@spec.rke.etcdSnapshots.enabled", NULL },
                { "off, rule disabled",
                  "{\"engine\":\"rke\",\"rke\":{\"nodes\":[" N3 "],\"etcdSnapshots\":{\"enabled\":false}}}",
                  NULL, NULL, "{\"rules\":{\"etcd-snapshots\":{\"enabled\":false}}}", NULL, NULL, "", NULL },
                { "retention below the minimum",
                  "{\"engine\":\"rke\",\"rke\":{\"nodes\":[" N3
                  "],\"etcdSnapshots\":{\"retentionHours\":24}}}",
                  NULL, NULL, "{\"rules\":{\"etcd-snapshots\":{\"params\":{\"minRetentionHours\":48}}}}",
                  NULL, NULL, "deny:etcd-snapshots@spec.rke.etcdSnapshots.retentionHours",
                  "48 or more (it is 24)" },
                { "retention at the minimum",
                  "{\"engine\":\"rke\",\"rke\":{\"nodes\":[" N3
                  "],\"etcdSnapshots\":{\"retentionHours\":48}}}",
                  NULL, NULL, "{\"rules\":{\"etcd-snapshots\":{\"params\":{\"minRetentionHours\":48}}}}",
                  NULL, NULL, "", NULL },
                { "rke's default retention below the minimum", RKE(N3), NULL, NULL,
                  "{\"rules\":{\"etcd-snapshots\":{\"params\":{\"minRetentionHours\":100}}}}", NULL, NULL,
                  "deny:etcd-snapshots@spec.rke.etcdSnapshots.retentionHours", "(the default is 72)" },
                { "rke's default retention meets the minimum", RKE(N3), NULL, NULL,
                  "{\"rules\":{\"etcd-snapshots\":{\"params\":{\"minRetentionHours\":72}}}}", NULL, NULL, "",
                  NULL },
                { "not about local clusters", "{\"engine\":\"local\"}", NULL, NULL,
                  "{\"rules\":{\"etcd-snapshots\":{\"params\":{\"minRetentionHours\":100}}}}", NULL, NULL,
                  "", NULL },
        };
        run_cases(cases, ELEMENTSOF(cases));
}

static void test_production_quorum(void **state) {
        static const struct evalcase cases[] = {
                { "one etcd node in production", RKE(NODE("10.0.0.1", ALL)), PROD, NULL, NULL, NULL, NULL,
                  "deny:production-etcd-quorum@spec.rke.nodes",
                  "clusters in environments labelled tier=production need at least 3 etcd nodes so "
                  "that etcd keeps its quorum when a node fails; this cluster has 1: give more nodes the "
                  "etcd role" },
                { "one etcd node in development", RKE(NODE("10.0.0.1", ALL)), "{\"tier\":\"dev\"}", NULL,
                  NULL, NULL, NULL, "", NULL },
                { "three etcd nodes in production", RKE(N3), PROD, NULL, NULL, NULL, NULL, "", NULL },
                { "three nodes, one with etcd",
                  RKE(NODE("10.0.0.1", ALL) "," NODE("10.0.0.2", "\"worker\"") "," NODE("10.0.0.3",
                                                                                        "\"worker\"")),
                  "{\"tier\":\"production\",\"region\":\"eu\"}", NULL, NULL, NULL, NULL,
                  "deny:production-etcd-quorum@spec.rke.nodes", "this cluster has 1" },
                { "a local cluster in production", "{\"engine\":\"local\",\"local\":{\"nodes\":3}}", PROD,
                  NULL, NULL, NULL, NULL, "deny:production-etcd-quorum@spec.engine", "must use engine rke" },
                { "labels and minimum changed", RKE(N3), "{\"env\":\"prod\",\"region\":\"eu\"}", NULL,
                  "{\"rules\":{\"production-etcd-quorum\":{\"params\":{\"environmentLabels\":{\"region\":"
                  "\"eu\","
                  "\"env\":\"prod\"},\"minEtcdNodes\":5}}}}",
                  NULL, NULL, "deny:production-etcd-quorum@spec.rke.nodes",
                  "clusters in environments labelled env=prod,region=eu need at least 5" },
                { "the default labels no longer match", RKE(NODE("10.0.0.1", ALL)), PROD, NULL,
                  "{\"rules\":{\"production-etcd-quorum\":{\"params\":{\"environmentLabels\":{\"tier\":"
                  "\"prod\"}}}}}",
                  NULL, NULL, "", NULL },
                { "empty environmentLabels: every environment", RKE(NODE("10.0.0.1", ALL)), NULL, NULL,
                  "{\"rules\":{\"production-etcd-quorum\":{\"params\":{\"environmentLabels\":{}}}}}", NULL,
                  NULL, "deny:production-etcd-quorum@spec.rke.nodes", "clusters in this environment need" },
                { "other engines are not judged", "{\"engine\":\"test\"}", PROD, NULL, NULL, NULL, NULL, "",
                  NULL },
        };
        run_cases(cases, ELEMENTSOF(cases));
}

static void test_supported_version(void **state) {
        static const struct evalcase cases[] = {
                { "listed",
                  "{\"engine\":\"rke\",\"kubernetesVersion\":\"v1.31.11-rancher1-1\",\"rke\":{\"nodes\":[" N3
                  "]}}",
                  NULL, NULL, NULL, VERSIONS, NULL, "", NULL },
                { "not listed",
                  "{\"engine\":\"rke\",\"kubernetesVersion\":\"v1.20.0-rancher1-1\",\"rke\":{\"nodes\":[" N3
                  "]}}",
                  NULL, NULL, NULL, VERSIONS, NULL, "deny:supported-version@spec.kubernetesVersion",
                  "Kubernetes version v1.20.0-rancher1-1 is not supported by engine rke; use one of "
                  "v1.32.7-rancher1-1, v1.31.11-rancher1-1, or leave" },
                { "no list: anything goes",
                  "{\"engine\":\"rke\",\"kubernetesVersion\":\"v9.9.9\",\"rke\":{\"nodes\":[" N3 "]}}", NULL,
                  NULL, NULL, NULL, NULL, "", NULL },
                { "an empty list",
                  "{\"engine\":\"rke\",\"kubernetesVersion\":\"v1.32.7\",\"rke\":{\"nodes\":[" N3 "]}}",
                  NULL, NULL, NULL, "[]", NULL, "deny:supported-version@spec.kubernetesVersion",
                  "which lists no versions" },
                { "older than the minimum",
                  "{\"engine\":\"rke\",\"kubernetesVersion\":\"v1.31.11-rancher1-1\",\"rke\":{\"nodes\":[" N3
                  "]}}",
                  NULL, NULL, "{\"rules\":{\"supported-version\":{\"params\":{\"minimum\":\"v1.32.0\"}}}}",
                  VERSIONS, NULL, "deny:supported-version@spec.kubernetesVersion",
                  "Kubernetes version v1.31.11-rancher1-1 is older than v1.32.0" },
                { "numbers, not text: 1.31.11 is newer than 1.31.9",
                  "{\"engine\":\"rke\",\"kubernetesVersion\":\"v1.31.11-rancher1-1\",\"rke\":{\"nodes\":[" N3
                  "]}}",
                  NULL, NULL, "{\"rules\":{\"supported-version\":{\"params\":{\"minimum\":\"v1.31.9\"}}}}",
                  VERSIONS, NULL, "", NULL },
                { "the engine's default is older", RKE(N3), NULL, NULL,
                  "{\"rules\":{\"supported-version\":{\"params\":{\"minimum\":\"v1.33.0\"}}}}", VERSIONS,
                  "v1.32.7-rancher1-1", "deny:supported-version@spec.kubernetesVersion",
                  "the default Kubernetes version of engine rke (v1.32.7-rancher1-1) is older than "
                  "v1.33.0" },
                { "the engine's default is new enough", RKE(N3), NULL, NULL,
                  "{\"rules\":{\"supported-version\":{\"params\":{\"minimum\":\"v1.32.7\"}}}}", VERSIONS,
                  "v1.32.7-rancher1-1", "", NULL },
                { "the default unknown", RKE(N3), NULL, NULL,
                  "{\"rules\":{\"supported-version\":{\"params\":{\"minimum\":\"v1.33.0\"}}}}", NULL, NULL,
                  "", NULL },
                { "not a version",
                  "{\"engine\":\"rke\",\"kubernetesVersion\":\"1.30\",\"rke\":{\"nodes\":[" N3 "]}}", NULL,
                  NULL, "{\"rules\":{\"supported-version\":{\"params\":{\"minimum\":\"v1.30.0\"}}}}", NULL,
                  NULL, "deny:supported-version@spec.kubernetesVersion", "cannot be compared" },
        };
        run_cases(cases, ELEMENTSOF(cases));
}

#define CIDRS(list) "{\"rules\":{\"node-cidrs\":{\"params\":{\"cidrs\":[" list "]}}}}"

static void test_node_cidrs(void **state) {
        static const struct evalcase cases[] = {
                { "no networks: anything goes", RKE(NODE("h.example.com", ALL)), NULL, NULL, NULL, NULL,
                  NULL, "", NULL },
                { "inside", RKE(N3), NULL, NULL, CIDRS("\"10.0.0.0/8\""), NULL, NULL, "", NULL },
                { "one outside",
                  RKE(NODE("10.0.0.1", ALL) "," NODE("192.168.1.7", ALL) "," NODE("10.0.0.3", ALL)), NULL,
                  NULL, CIDRS("\"10.0.0.0/8\",\"172.16.0.0/12\""), NULL, NULL,
                  "deny:node-cidrs@spec.rke.nodes[1].address",
                  "node address 192.168.1.7 must be an IP address within 10.0.0.0/8, 172.16.0.0/12, "
                  "the networks this environment allows" },
                { "a host name",
                  RKE(NODE("10.0.0.1", ALL) "," NODE("n2.example.com", ALL) "," NODE("10.0.0.3", ALL)), NULL,
                  NULL, CIDRS("\"10.0.0.0/8\""), NULL, NULL, "deny:node-cidrs@spec.rke.nodes[1].address",
                  "must be an IP address within" },
                { "IPv6 and IPv4-mapped",
                  RKE(NODE("fd00::1", ALL) "," NODE("FD12:3456::9", ALL) "," NODE("::ffff:10.9.9.9", ALL)),
                  NULL, NULL, CIDRS("\"fd00::/8\",\"10.0.0.0/8\""), NULL, NULL, "", NULL },
                { "/0 of one family holds nothing of the other",
                  RKE(NODE("10.0.0.1", ALL) "," NODE("2001:db8::1", ALL) "," NODE("10.0.0.3", ALL)), NULL,
                  NULL, CIDRS("\"0.0.0.0/0\""), NULL, NULL, "deny:node-cidrs@spec.rke.nodes[1].address",
                  NULL },
                { "/32 and /128",
                  RKE(NODE("10.0.0.5", ALL) "," NODE("2001:db8::1", ALL) "," NODE("10.0.0.6", ALL)), NULL,
                  NULL, CIDRS("\"10.0.0.5/32\",\"2001:db8::1/128\""), NULL, NULL,
                  "deny:node-cidrs@spec.rke.nodes[2].address", NULL },
                { "::/0 holds IPv6", RKE(NODE("2001:db8::1", ALL)), NULL, NULL, CIDRS("\"::/0\""), NULL,
                  NULL, "", NULL },
        };
        run_cases(cases, ELEMENTSOF(cases));
}

static void test_unique_and_odd(void **state) {
        static const struct evalcase cases[] = {
                { "the same address, letter case aside",
                  RKE(NODE("n1.example.com", ALL) "," NODE("N1.Example.COM", ALL) "," NODE(
                          "n3.example.com", ALL) "," NODE("n1.EXAMPLE.com", "\"worker\"")),
                  NULL, NULL, NULL, NULL, NULL,
                  "deny:unique-node-addresses@spec.rke.nodes[1].address "
                  "deny:unique-node-addresses@spec.rke.nodes[3].address",
                  "node address N1.Example.COM is also the address of spec.rke.nodes[0]" },
                { "distinct addresses", RKE(N3), NULL, NULL, NULL, NULL, NULL, "", NULL },
                { "two etcd nodes", RKE(NODE("10.0.0.1", ALL) "," NODE("10.0.0.2", ALL)), NULL, NULL, NULL,
                  NULL, NULL, "warn:odd-etcd-count@spec.rke.nodes",
                  "2 etcd nodes tolerate no more failures than 1 would: use an odd number of etcd "
                  "nodes, like 3 or 5" },
                { "four etcd nodes, effect deny", RKE(N3 "," NODE("10.0.0.4", "\"etcd\"")), NULL, NULL,
                  "{\"rules\":{\"odd-etcd-count\":{\"effect\":\"deny\"}}}", NULL, NULL,
                  "deny:odd-etcd-count@spec.rke.nodes", "4 etcd nodes" },
                { "two etcd nodes, disabled", RKE(NODE("10.0.0.1", ALL) "," NODE("10.0.0.2", ALL)), NULL,
                  NULL, "{\"rules\":{\"odd-etcd-count\":{\"enabled\":false}}}", NULL, NULL, "", NULL },
                { "one etcd node", RKE(NODE("10.0.0.1", ALL)), NULL, NULL, NULL, NULL, NULL, "", NULL },
                { "a role twice counts once", RKE(NODE("10.0.0.1", "\"etcd\",\"etcd\"")), NULL, NULL, NULL,
                  NULL, NULL, "", NULL },
        };
        run_cases(cases, ELEMENTSOF(cases));
}

static void test_labels_nodes_engines(void **state) {
        static const struct evalcase cases[] = {
                { "required labels missing", RKE(N3), NULL, "{\"team\":\"infra\"}",
                  "{\"rules\":{\"required-labels\":{\"params\":{\"keys\":[\"team\",\"cost-center\","
                  "\"example.com/"
                  "owner\"]}}}}",
                  NULL, NULL,
                  "deny:required-labels@labels.cost-center deny:required-labels@labels.example.com/owner",
                  "this environment requires the label cost-center on every cluster" },
                { "required labels present, even empty", RKE(N3), NULL,
                  "{\"team\":\"infra\",\"cost-center\":\"\"}",
                  "{\"rules\":{\"required-labels\":{\"params\":{\"keys\":[\"team\",\"cost-center\"]}}}}",
                  NULL, NULL, "", NULL },
                { "max nodes lowered", RKE(N3), NULL, NULL,
                  "{\"rules\":{\"max-nodes\":{\"params\":{\"max\":2}}}}", NULL, NULL,
                  "deny:max-nodes@spec.rke.nodes",
                  "this cluster has 3 nodes; this environment allows at most 2" },
                { "a local cluster over the maximum", "{\"engine\":\"local\",\"local\":{\"nodes\":150}}",
                  NULL, NULL, NULL, NULL, NULL, "deny:max-nodes@spec.local.nodes", "has 150 nodes" },
                { "a local cluster without a count is 1 node", "{\"engine\":\"local\"}", NULL, NULL,
                  "{\"rules\":{\"max-nodes\":{\"params\":{\"max\":1}}}}", NULL, NULL, "", NULL },
                { "engine not allowed", "{\"engine\":\"local\"}", NULL, NULL,
                  "{\"rules\":{\"allowed-engines\":{\"params\":{\"engines\":[\"rke\"]}}}}", NULL, NULL,
                  "deny:allowed-engines@spec.engine",
                  "engine local is not allowed in this environment; the allowed engines are rke" },
                { "engine allowed", RKE(N3), NULL, NULL,
                  "{\"rules\":{\"allowed-engines\":{\"params\":{\"engines\":[\"local\",\"rke\"]}}}}", NULL,
                  NULL, "", NULL },
        };
        run_cases(cases, ELEMENTSOF(cases));
}

/* The same request against two settings of an environment: only the parameter differs. */
static void test_parameter_change_takes_effect(void **state) {
        static const char *const docs[] = {
                "{\"rules\":{}}",
                "{\"rules\":{\"max-nodes\":{\"params\":{\"max\":2}}}}",
                "{\"rules\":{\"max-nodes\":{\"params\":{\"max\":2},\"effect\":\"warn\"}}}",
                "{\"rules\":{\"max-nodes\":{\"params\":{\"max\":2},\"enabled\":false}}}",
                "{\"rules\":{\"max-nodes\":{\"params\":{\"max\":3}}}}",
        };
        static const char *const want[] = {
                "", "deny:max-nodes@spec.rke.nodes", "warn:max-nodes@spec.rke.nodes", "", "",
        };

        for (size_t i = 0; i < ELEMENTSOF(docs); i++) {
                struct evalcase c = {
                        .name = docs[i], .spec = RKE(N3), .settings = docs[i], .expect = want[i]
                };

                run_cases(&c, 1);
        }
}

/* An rke cluster with 100 nodes, one of each problem, to see that each comes once. */
static void test_large_cluster(void **state) {
        json_t *spec = load(RKE(N3)), *nodes = json_object_get(json_object_get(spec, "rke"), "nodes");
        json_t *settings = effective(CIDRS("\"10.0.0.0/16\",\"fd00::/8\""));
        struct cm_policy_decision d = {};
        char got[1024];
        json_t *in;

        json_array_clear(nodes);
        for (int i = 0; i < 101; i++) {
                char addr[32];

                (void) cm_snprintf(addr, sizeof(addr), "10.0.%d.%d", i / 200, i % 200 + 1);
                if (i == 50)
                        (void) cm_snprintf(addr, sizeof(addr), "10.1.0.1");
                if (i == 70)
                        (void) cm_snprintf(addr, sizeof(addr), "10.0.0.3");
                assert_int_equal(json_array_append_new(nodes, json_pack("{s:s, s:[s]}", "address", addr,
                                                                        "roles", i < 3 ? "etcd" : "worker")),
                                 0);
        }
        in = cm_policy_input_build("create", "admin", "env", NULL, "big", NULL, spec, "rke", NULL, NULL,
                                   settings);
        assert_non_null(in);
        assert_int_equal(cm_policy_evaluate_builtin(in, &d), 0);
        summary(&d, got, sizeof(got));
        assert_string_equal(got, "deny:node-cidrs@spec.rke.nodes[50].address "
                                 "deny:unique-node-addresses@spec.rke.nodes[70].address "
                                 "deny:max-nodes@spec.rke.nodes");
        cm_policy_decision_done(&d);
        json_decref(in);
        json_decref(spec);
        json_decref(settings);
}

static bool has_error(const struct cm_problem *p, const char *field, const char *part) {
        size_t i;
        json_t *e;

        json_array_foreach(p->errors, i, e) {
                if (streq(json_string_value(json_object_get(e, "field")), field) &&
                    (!part || strstr(json_string_value(json_object_get(e, "reason")), part)))
                        return true;
        }
        return false;
}

static void test_settings_decode(void **state) {
        static const struct {
                const char *doc;
                int status; /* 0: accepted */
                const char *field;
                const char *reason_part;
        } cases[] = {
                { "{}", 0, NULL, NULL },
                { "{\"rules\":{}}", 0, NULL, NULL },
                { "{\"rules\":{\"odd-etcd-count\":{\"effect\":\"deny\"},\"etcd-snapshots\":{\"enabled\":"
                  "false}}}",
                  0, NULL, NULL },
                { CIDRS("\"10.0.0.0/8\",\"fd00::/8\",\"0.0.0.0/0\",\"::/0\",\"10.1.2.3/32\",\"2001:db8::1/"
                        "128\""),
                  0, NULL, NULL },
                { "{\"rules\":{\"production-etcd-quorum\":{\"params\":{\"environmentLabels\":{},"
                  "\"minEtcdNodes\":5}}}}",
                  0, NULL, NULL },
                { "{\"rules\":{\"supported-version\":{\"params\":{\"minimum\":\"v1.30.0-rancher1-1\"}}}}", 0,
                  NULL, NULL },
                { "{\"rules\":{\"required-labels\":{\"params\":{\"keys\":[\"team\",\"example.com/"
                  "owner\"]}}}}",
                  0, NULL, NULL },
                { "{\"rules\":{\"allowed-engines\":{\"params\":{\"engines\":[\"rke\"]}}}}", 0, NULL, NULL },
                { "{\"rules\":{\"nope\":{}}}", 422, "rules.nope",
                  "unknown rule; the built-in rules are etcd-snapshots" },
                { "{\"rules\":[]}", 422, "rules", "must be an object" },
                { "{\"rules\":{},\"x\":1}", 422, "x", "unknown field" },
                { "{\"rules\":{\"max-nodes\":5}}", 422, "rules.max-nodes", "must be an object" },
                { "{\"rules\":{\"max-nodes\":{\"enabled\":\"yes\"}}}", 422, "rules.max-nodes.enabled",
                  "true or false" },
                { "{\"rules\":{\"max-nodes\":{\"effect\":\"block\"}}}", 422, "rules.max-nodes.effect",
                  "\"deny\"" },
                { "{\"rules\":{\"max-nodes\":{\"when\":1}}}", 422, "rules.max-nodes.when", "unknown field" },
                { "{\"rules\":{\"max-nodes\":{\"params\":[]}}}", 422, "rules.max-nodes.params",
                  "must be an object" },
                { "{\"rules\":{\"max-nodes\":{\"params\":{\"max\":0}}}}", 422, "rules.max-nodes.params.max",
                  "from 1 to 100000" },
                { "{\"rules\":{\"max-nodes\":{\"params\":{\"max\":2.5}}}}", 422,
                  "rules.max-nodes.params.max", NULL },
                { "{\"rules\":{\"max-nodes\":{\"params\":{\"min\":2}}}}", 422, "rules.max-nodes.params.min",
                  "unknown field" },
                { "{\"rules\":{\"odd-etcd-count\":{\"params\":{\"x\":1}}}}", 422,
                  "rules.odd-etcd-count.params", "has no parameters" },
                { "{\"rules\":{\"odd-etcd-count\":{\"params\":{}}}}", 0, NULL, NULL },
                { CIDRS("\"10.0.0.0/8\",\"10.0.0.1/8\""), 422, "rules.node-cidrs.params.cidrs[1]",
                  "write 10.0.0.0/8" },
                { CIDRS("\"fd00::1/8\""), 422, "rules.node-cidrs.params.cidrs[0]", "write fd00::/8" },
                { CIDRS("\"10.0.0.0\""), 422, "rules.node-cidrs.params.cidrs[0]", "CIDR notation" },
                { CIDRS("\"10.0.0.0/33\""), 422, "rules.node-cidrs.params.cidrs[0]", "from 0 to 32" },
                { CIDRS("\"fd00::/129\""), 422, "rules.node-cidrs.params.cidrs[0]", "from 0 to 128" },
                { CIDRS("\"10.0.0.0/08\""), 422, "rules.node-cidrs.params.cidrs[0]", "prefix length" },
                { CIDRS("\"10.0.0.0/\""), 422, "rules.node-cidrs.params.cidrs[0]", "prefix length" },
                { CIDRS("\"host.example.com/24\""), 422, "rules.node-cidrs.params.cidrs[0]",
                  "CIDR notation" },
                { CIDRS("\"::ffff:10.0.0.0/104\""), 422, "rules.node-cidrs.params.cidrs[0]", "IPv4-mapped" },
                { CIDRS("\"fe80::/10%eth0\""), 422, "rules.node-cidrs.params.cidrs[0]", NULL },
                { CIDRS("5"), 422, "rules.node-cidrs.params.cidrs[0]", "must be a string" },
                { CIDRS("\"10.0.0.0/8\",\"10.0.0.0/8\""), 422, "rules.node-cidrs.params.cidrs[1]", "twice" },
                { "{\"rules\":{\"node-cidrs\":{\"params\":{\"cidrs\":\"10.0.0.0/8\"}}}}", 422,
                  "rules.node-cidrs.params.cidrs", "must be a list" },
                { "{\"rules\":{\"supported-version\":{\"params\":{\"minimum\":\"1.30\"}}}}", 422,
                  "rules.supported-version.params.minimum", "like v1.30.0" },
                { "{\"rules\":{\"supported-version\":{\"params\":{\"minimum\":\"v1.30\"}}}}", 422,
                  "rules.supported-version.params.minimum", NULL },
                { "{\"rules\":{\"production-etcd-quorum\":{\"params\":{\"environmentLabels\":{\"tier\":5}}}}"
                  "}",
                  422, "rules.production-etcd-quorum.params.environmentLabels.tier", "strings" },
                { "{\"rules\":{\"production-etcd-quorum\":{\"params\":{\"minEtcdNodes\":0}}}}", 422,
                  "rules.production-etcd-quorum.params.minEtcdNodes", "from 1 to 99" },
                { "{\"rules\":{\"etcd-snapshots\":{\"params\":{\"minRetentionHours\":-1}}}}", 422,
                  "rules.etcd-snapshots.params.minRetentionHours", "from 0 to 8760" },
                { "{\"rules\":{\"required-labels\":{\"params\":{\"keys\":[\"a b\"]}}}}", 422,
                  "rules.required-labels.params.keys[0]", "label keys" },
                { "{\"rules\":{\"allowed-engines\":{\"params\":{\"engines\":[\"RKE\"]}}}}", 422,
                  "rules.allowed-engines.params.engines[0]", "engine name" },
                { "{\"rules\":{}", 400, NULL, NULL },
                { "[]", 400, NULL, NULL },
                { "{\"rules\":{},\"rules\":{}}", 400, NULL, NULL },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *out = NULL;
                struct cm_problem p;
                int r;

                cm_problem_init(&p);
                r = cm_policy_settings_decode(cases[i].doc, strlen(cases[i].doc), &out, &p);
                if (cases[i].status == 0) {
                        if (r != 0)
                                fail_msg("case %zu refused: %s", i, p.detail);
                        assert_non_null(out);
                } else {
                        assert_true(r < 0);
                        assert_null(out);
                        if (p.status != cases[i].status)
                                fail_msg("case %zu: status %d, want %d", i, p.status, cases[i].status);
                        if (cases[i].field && !has_error(&p, cases[i].field, cases[i].reason_part)) {
                                char *errors = p.errors ? cm_json_canonical(p.errors) : NULL;

                                fail_msg("case %zu: no error '%s' with '%s' in %s", i, cases[i].field,
                                         cases[i].reason_part ?: "", errors ?: "[]");
                        }
                }
                cm_problem_done(&p);
        }
}

static void test_settings_all_errors_and_canonical(void **state) {
        static const char doc[] =
                "{\"rules\":{\"max-nodes\":{\"params\":{\"max\":0}},\"bogus\":{},"
                "\"node-cidrs\":{\"params\":{\"cidrs\":[\"10.0.0.0/8\",\"x\",\"10.0.0.1/8\"]}}}}";
        static const char good[] =
                "{ \"rules\" : { \"node-cidrs\" : { \"params\" : { \"cidrs\" : [\"fd00::/8\"] } },"
                " \"max-nodes\": {\"enabled\": false} } }";
        _cleanup_free_ char *out = NULL;
        struct cm_problem p;

        cm_problem_init(&p);
        assert_true(cm_policy_settings_decode(doc, strlen(doc), &out, &p) < 0);
        assert_int_equal(p.status, 422);
        assert_int_equal(json_array_size(p.errors), 4);
        assert_true(has_error(&p, "rules.max-nodes.params.max", NULL));
        assert_true(has_error(&p, "rules.bogus", NULL));
        assert_true(has_error(&p, "rules.node-cidrs.params.cidrs[1]", NULL));
        assert_true(has_error(&p, "rules.node-cidrs.params.cidrs[2]", NULL));
        cm_problem_done(&p);

        cm_problem_init(&p);
        assert_int_equal(cm_policy_settings_decode(good, strlen(good), &out, &p), 0);
        assert_string_equal(
                out, "{\"rules\":{\"max-nodes\":{\"enabled\":false},\"node-cidrs\":{\"params\":{\"cidrs\":"
                     "[\"fd00::/8\"]}}}}");
        cm_problem_done(&p);
        free(out);
        out = NULL;

        cm_problem_init(&p);
        assert_int_equal(cm_policy_settings_decode("{}", 2, &out, &p), 0);
        assert_string_equal(out, "{\"rules\":{}}");
        cm_problem_done(&p);
}

static void test_settings_effective(void **state) {
        json_t *defaults = cm_policy_settings_effective(NULL), *merged, *garbage;
        json_t *rules = json_object_get(defaults, "rules");
        _cleanup_free_ char *text = NULL;

        assert_non_null(defaults);
        assert_int_equal(json_object_size(rules), 9);
        text = cm_json_canonical(json_object_get(rules, "production-etcd-quorum"));
        assert_string_equal(
                text, "{\"effect\":\"deny\",\"enabled\":true,\"params\":{\"environmentLabels\":{\"tier\":"
                      "\"production\"},\"minEtcdNodes\":3}}");
        assert_string_equal(
                json_string_value(json_object_get(json_object_get(rules, "odd-etcd-count"), "effect")),
                "warn");

        /* Only what is given changes; the rest of the rule keeps its defaults. */
        merged = cm_policy_settings_effective(
                "{\"rules\":{\"production-etcd-quorum\":{\"params\":{\"minEtcdNodes\":5}},\"odd-etcd-"
                "count\":{"
                "\"effect\":\"deny\",\"enabled\":false},\"gone\":{\"enabled\":false}}}");
        assert_non_null(merged);
        rules = json_object_get(merged, "rules");
        assert_int_equal(json_object_size(rules), 9);
        free(text);
        text = cm_json_canonical(json_object_get(rules, "production-etcd-quorum"));
        assert_string_equal(
                text, "{\"effect\":\"deny\",\"enabled\":true,\"params\":{\"environmentLabels\":{\"tier\":"
                      "\"production\"},\"minEtcdNodes\":5}}");
        free(text);
        text = cm_json_canonical(json_object_get(rules, "odd-etcd-count"));
        assert_string_equal(text, "{\"effect\":\"deny\",\"enabled\":false,\"params\":{}}");

        /* Stored text that is not settings counts as none. */
        garbage = cm_policy_settings_effective(
                "{\"rules\":{\"max-nodes\":{\"params\":{\"max\":\"x\"},\"effect\":5}}");
        assert_true(json_equal(garbage, defaults));
        json_decref(garbage);
        garbage = cm_policy_settings_effective(
                "{\"rules\":{\"max-nodes\":{\"params\":{\"max\":\"x\"},\"effect\":5}}}");
        assert_true(json_equal(garbage, defaults));
        json_decref(garbage);
        garbage = cm_policy_settings_effective("[]");
        assert_true(json_equal(garbage, defaults));
        json_decref(garbage);

        json_decref(defaults);
        json_decref(merged);
}

static void test_catalogue(void **state) {
        json_t *cat = cm_policy_catalogue(), *defaults = cm_policy_settings_effective(NULL), *row;
        static const char *const ids[] = { "etcd-snapshots",        "production-etcd-quorum",
                                           "supported-version",     "node-cidrs",
                                           "unique-node-addresses", "odd-etcd-count",
                                           "required-labels",       "max-nodes",
                                           "allowed-engines" };
        size_t i;

        assert_non_null(cat);
        assert_int_equal(json_array_size(cat), ELEMENTSOF(ids));
        json_array_foreach(cat, i, row) {
                const json_t *d = json_object_get(json_object_get(defaults, "rules"), ids[i]);

                assert_int_equal(json_object_size(row), 5);
                assert_string_equal(json_string_value(json_object_get(row, "id")), ids[i]);
                assert_true(json_is_string(json_object_get(row, "description")));
                assert_true(json_string_length(json_object_get(row, "description")) > 20);
                assert_true(json_is_boolean(json_object_get(row, "enabled")));
                assert_true(json_is_object(json_object_get(row, "params")));
                assert_true(json_equal(json_object_get(row, "params"), json_object_get(d, "params")));
                assert_true(json_equal(json_object_get(row, "effect"), json_object_get(d, "effect")));
                assert_true(json_equal(json_object_get(row, "enabled"), json_object_get(d, "enabled")));
        }
        assert_string_equal(json_string_value(json_object_get(json_array_get(cat, 5), "effect")), "warn");
        assert_int_equal(json_integer_value(
                                 json_object_get(json_object_get(json_array_get(cat, 7), "params"), "max")),
                         100);
        json_decref(cat);
        json_decref(defaults);
}

static void test_input_build(void **state) {
        json_t *spec = load(RKE(N3)), *in;
        _cleanup_free_ char *text = NULL;

        in = cm_policy_input_build("update", NULL, "dev", NULL, "east", NULL, spec, "rke", NULL, NULL, NULL);
        assert_non_null(in);
        assert_string_equal(json_string_value(json_object_get(in, "operation")), "update");
        assert_true(json_is_null(json_object_get(in, "principal")));
        assert_true(json_is_object(json_object_get(json_object_get(in, "environment"), "labels")));
        assert_true(json_is_object(json_object_get(json_object_get(in, "cluster"), "labels")));
        assert_ptr_equal(json_object_get(json_object_get(in, "cluster"), "spec"), spec);
        assert_true(json_is_null(json_object_get(json_object_get(in, "engine"), "versions")));
        assert_true(json_is_null(json_object_get(json_object_get(in, "engine"), "default")));
        assert_int_equal(json_object_size(json_object_get(json_object_get(in, "settings"), "rules")), 9);
        json_decref(in);
        /* The input held a reference only. */
        assert_int_equal(spec->refcount, 1);
        json_decref(spec);
}

/* --- match.c --- */

static void test_networks(void **state) {
        static const struct {
                const char *net, *ip;
                bool inside;
        } cases[] = {
                { "10.0.0.0/8", "10.255.1.2", true },
                { "10.0.0.0/8", "11.0.0.1", false },
                { "0.0.0.0/0", "1.2.3.4", true },
                { "0.0.0.0/0", "::1", false },
                { "::/0", "::1", true },
                { "::/0", "1.2.3.4", false },
                { "::/0", "::ffff:1.2.3.4", false },
                { "10.0.0.0/8", "::ffff:10.1.1.1", true },
                { "10.1.2.3/32", "10.1.2.3", true },
                { "10.1.2.3/32", "10.1.2.4", false },
                { "fd00::/8", "FD12::1", true },
                { "fd00::/8", "fe00::1", false },
                { "2001:db8::1/128", "2001:db8::1", true },
                { "2001:db8::1/128", "2001:db8::2", false },
                { "10.0.0.1/8", "10.9.9.9", true }, /* Go masks host bits */
                { "10.0.0.0/08", "10.9.9.9", true }, /* Go allows leading zeros */
                { "::ffff:10.0.0.0/104", "10.1.1.1", true }, /* IPv4-mapped networks hold IPv4 */
                { "10.0.0.0/8", "10.0.0.01", false },
                { "10.0.0.0/8", "host", false },
                { "10.0.0.0/8", "10.0.0.0/8", false },
                { "fe80::/10", "fe80::1%eth0", false },
                { "10.0.0.0/7", "11.0.0.1", true },
                { "10.0.0.0/7", "12.0.0.1", false },
                { "bad", "10.0.0.1", false },
                { "10.0.0.0/33", "10.0.0.1", false },
                { "10.0.0.0/", "10.0.0.1", false },
                { "/8", "10.0.0.1", false },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct cm_policy__net n;
                struct cm_policy__ip ip;
                bool inside = cm_policy__net_parse(cases[i].net, &n) &&
                              cm_policy__ip_parse(cases[i].ip, &ip) && cm_policy__net_contains(&n, &ip);

                if (inside != cases[i].inside)
                        fail_msg("%s in %s: %d, want %d", cases[i].ip, cases[i].net, inside,
                                 cases[i].inside);
        }
}

/* The evaluator's own IPv4 parser against inet_pton on strings of digits and dots (a fixed sequence). */
static void test_ipv4_parser_is_inet_pton(void **state) {
        static const char alphabet[] = "0123456789..1.";
        uint64_t seed = 42;

        for (int round = 0; round < 200000; round++) {
                char s[20];
                size_t n;
                struct cm_policy__ip ip;
                uint8_t want[4];
                bool ours, theirs;

                seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                n = (seed >> 33) % 16 + 1;
                for (size_t i = 0; i < n; i++) {
                        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                        s[i] = alphabet[(seed >> 33) % (sizeof(alphabet) - 1)];
                }
                s[n] = 0;
                ours = cm_policy__ip_parse(s, &ip);
                theirs = inet_pton(AF_INET, s, want) == 1;
                if (ours != theirs || (ours && (ip.len != 4 || memcmp(ip.b, want, 4) != 0)))
                        fail_msg("'%s': ours %d, inet_pton %d", s, ours, theirs);
        }
}

static void test_versions(void **state) {
        uint32_t a[3], b[3];

        assert_true(cm_policy__version_parse("v1.32.7-rancher1-1", a));
        assert_int_equal(a[0], 1);
        assert_int_equal(a[1], 32);
        assert_int_equal(a[2], 7);
        assert_true(cm_policy__version_parse("v1.32.10+k3s1", b));
        assert_true(cm_policy__version_cmp(a, b) < 0);
        assert_true(cm_policy__version_parse("v1.32.7", b));
        assert_int_equal(cm_policy__version_cmp(a, b), 0);
        assert_true(cm_policy__version_parse("v999999999.0.0", b));
        assert_true(cm_policy__version_parse("v1.2.3-", b));
        assert_false(cm_policy__version_parse("v1000000000.0.0", b));
        assert_false(cm_policy__version_parse("1.32.7", b));
        assert_false(cm_policy__version_parse("v1.32", b));
        assert_false(cm_policy__version_parse("v1.32.7x", b));
        assert_false(cm_policy__version_parse("v1..7", b));
        assert_false(cm_policy__version_parse("", b));
        assert_false(cm_policy__version_parse(NULL, b));
}

/* --- Hostile input --- */

static void evaluate_text(const char *text) {
        struct cm_policy_decision d = {};
        json_t *in = load(text);

        assert_int_equal(cm_policy_evaluate_builtin(in, &d), 0);
        assert_true(json_is_array(d.deny));
        assert_true(json_is_array(d.warn));
        cm_policy_decision_done(&d);
        json_decref(in);
}

static void test_garbage_inputs(void **state) {
        static const char *const inputs[] = {
                "null",
                "5",
                "[]",
                "\"x\"",
                "{}",
                "{\"cluster\":5,\"settings\":[],\"engine\":\"x\",\"environment\":null}",
                "{\"cluster\":{\"spec\":{\"engine\":\"rke\",\"rke\":{\"nodes\":{\"a\":1}}}}}",
                "{\"cluster\":{\"spec\":{\"engine\":\"rke\",\"rke\":{\"nodes\":[5,null,[],{\"address\":7,"
                "\"roles\":{"
                "\"etcd\":1}},{\"roles\":\"etcd\"},{\"address\":\"\"},{\"address\":\"\"}]}}}}",
                "{\"cluster\":{\"spec\":{\"engine\":\"rke\",\"kubernetesVersion\":[],\"rke\":{"
                "\"etcdSnapshots\":{"
                "\"enabled\":\"false\",\"retentionHours\":1e300}}}},\"settings\":{\"rules\":{\"etcd-"
                "snapshots\":{"
                "\"params\":{\"minRetentionHours\":1e300}}}}}",
                "{\"cluster\":{\"spec\":{\"engine\":\"local\",\"local\":{\"nodes\":-1.5}}},\"settings\":{"
                "\"rules\":{"
                "\"max-nodes\":{\"params\":{\"max\":-5}},\"production-etcd-quorum\":{\"params\":{"
                "\"environmentLabels\":[]}}}}}",
                "{\"cluster\":{\"labels\":5,\"spec\":{\"engine\":\"rke\"}},\"settings\":{\"rules\":{"
                "\"required-labels\":"
                "{\"params\":{\"keys\":[\"a\",\"a\",5]}},\"node-cidrs\":{\"params\":{\"cidrs\":[\"x\",\"/"
                "\",\"::/\","
                "\"1.2.3.4/999999999999\",\"10.0.0.0/"
                "8\"]}},\"allowed-engines\":{\"params\":{\"engines\":[]}},"
                "\"supported-version\":{\"params\":{\"minimum\":\"v1.2.3\"}}}},\"engine\":{\"versions\":[1,["
                "],{}],"
                "\"default\":\"v0.0.1\"}}",
        };

        for (size_t i = 0; i < ELEMENTSOF(inputs); i++)
                evaluate_text(inputs[i]);
}

/* Replaces members of a real input with values of every type, many times over (a fixed sequence). */
static void test_mutated_inputs(void **state) {
        static const char *const values[] = {
                "null",       "5",
                "-1",         "2.5",
                "1e300",      "\"\"",
                "\"x\"",      "[]",
                "{}",         "[5,\"etcd\",null]",
                "{\"a\":[]}", "\"10.0.0.1\"",
                "true",       "false",
                "\"v1.2.3\"", "[\"10.0.0.0/8\"]",
        };
        json_t *spec = load("{\"engine\":\"rke\",\"kubernetesVersion\":\"v1.31.0\",\"rke\":{\"nodes\":[" N3
                            "],\"etcdSnapshots\":{\"enabled\":true,\"retentionHours\":24}}}");
        json_t *settings = effective(CIDRS("\"10.0.0.0/8\"")), *labels = load(PROD), *base;
        uint64_t seed = 0x9e3779b97f4a7c15ULL;

        base = cm_policy_input_build("create", "admin", "env", labels, "east", labels, spec, "rke", NULL,
                                     "v1.30.0", settings);
        assert_non_null(base);
        for (int round = 0; round < 3000; round++) {
                json_t *in = json_deep_copy(base), *target = in;

                assert_non_null(in);
                /* Walk down a few levels at random, then replace a member or an element. */
                for (int depth = 0; depth < 6; depth++) {
                        size_t n =
                                json_is_object(target) ? json_object_size(target) : json_array_size(target);
                        void *it;
                        json_t *next;

                        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                        if (n == 0)
                                break;
                        if (json_is_object(target)) {
                                size_t k = (seed >> 33) % n;

                                it = json_object_iter(target);
                                while (k-- > 0)
                                        it = json_object_iter_next(target, it);
                                next = json_object_iter_value(it);
                                if ((seed >> 20) % 3 == 0 ||
                                    (!json_is_object(next) && !json_is_array(next))) {
                                        json_t *v = load(values[(seed >> 40) % ELEMENTSOF(values)]);

                                        assert_int_equal(json_object_iter_set_new(target, it, v), 0);
                                        break;
                                }
                        } else {
                                size_t k = (seed >> 33) % n;

                                next = json_array_get(target, k);
                                if ((seed >> 20) % 3 == 0 ||
                                    (!json_is_object(next) && !json_is_array(next))) {
                                        assert_int_equal(
                                                json_array_set_new(
                                                        target, k,
                                                        load(values[(seed >> 40) % ELEMENTSOF(values)])),
                                                0);
                                        break;
                                }
                        }
                        target = next;
                }
                {
                        struct cm_policy_decision d = {};

                        assert_int_equal(cm_policy_evaluate_builtin(in, &d), 0);
                        cm_policy_decision_done(&d);
                }
                json_decref(in);
        }
        json_decref(base);
        json_decref(spec);
        json_decref(settings);
        json_decref(labels);
}

static void test_decision_done(void **state) {
        struct cm_policy_decision d = { .deny = json_array(), .warn = NULL };

        cm_policy_decision_done(NULL);
        cm_policy_decision_done(&d);
        assert_null(d.deny);
        cm_policy_decision_done(&d);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_etcd_snapshots),
                cmocka_unit_test(test_production_quorum),
                cmocka_unit_test(test_supported_version),
                cmocka_unit_test(test_node_cidrs),
                cmocka_unit_test(test_unique_and_odd),
                cmocka_unit_test(test_labels_nodes_engines),
                cmocka_unit_test(test_parameter_change_takes_effect),
                cmocka_unit_test(test_large_cluster),
                cmocka_unit_test(test_settings_decode),
                cmocka_unit_test(test_settings_all_errors_and_canonical),
                cmocka_unit_test(test_settings_effective),
                cmocka_unit_test(test_catalogue),
                cmocka_unit_test(test_input_build),
                cmocka_unit_test(test_networks),
                cmocka_unit_test(test_ipv4_parser_is_inet_pton),
                cmocka_unit_test(test_versions),
                cmocka_unit_test(test_garbage_inputs),
                cmocka_unit_test(test_mutated_inputs),
                cmocka_unit_test(test_decision_done),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
