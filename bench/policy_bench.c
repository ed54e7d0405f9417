/* SPDX-License-Identifier: Apache-2.0 */
/*
 * make bench, policy section: one built-in policy evaluation as a request pays for it, that is the
 * policy input built (cm_policy_input_build) and the built-in rules evaluated over it, for (a) an rke
 * spec of 3 nodes under the default settings and (b) an rke spec of 100 nodes with node-cidrs set
 * (every address checked against the networks) and required labels. The effective settings are
 * computed once beforehand, as the service keeps them per environment; their cost is reported beside.
 * Times are CLOCK_MONOTONIC in ns per evaluation; prints one JSON object with p50/p90/p99/max in µs.
 * With --remote-url, the same 3-node evaluation is also asked of a remote policy service (an OPA
 * server with the shipped bundle, started by bench/run.py) through the service's client: the round
 * trip beside the built-in figure, in the same run.
 *
 *   policy-bench [--iterations N] [--remote-url URL --token-file FILE --ca-file FILE [--remote-iterations N]]
 */
#include "base/common.h"

#include <getopt.h>

#include "base/parse.h"
#include "base/strbuf.h"
#include "policy/policy.h"
#include "policy/remote.h"

static uint64_t mono_nsec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000U + (uint64_t) ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

static double pct(const uint64_t *sorted, size_t n, double p) {
        return (double) sorted[(size_t) ((double) (n - 1) * p)] / 1000.0;
}

/* An rke spec of n nodes, 10.0.x.y; the first three carry controlplane and etcd, the rest are workers. */
static json_t *rke_spec(unsigned n) {
        json_t *nodes = json_array(), *spec;

        for (unsigned i = 0; nodes && i < n; i++) {
                char addr[32];

                json_t *roles = i < 3 ? json_pack("[s, s, s]", "controlplane", "etcd", "worker")
                                      : json_pack("[s]", "worker");

                (void) cm_snprintf(addr, sizeof(addr), "10.0.%u.%u", i / 250, i % 250 + 1);
                if (json_array_append_new(nodes, json_pack("{s:s, s:i, s:s, s:o, s:s}", "address", addr,
                                                           "port", 22, "user", "ubuntu", "roles", roles,
                                                           "sshKey", "ops")) < 0) {
                        json_decref(nodes);
                        return NULL;
                }
        }
        spec = json_pack("{s:s, s:s, s:{s:o, s:{s:b, s:i, s:i}}}", "engine", "rke", "kubernetesVersion",
                         "v1.32.7-rancher1-1", "rke", "nodes", nodes, "etcdSnapshots", "enabled", 1,
                         "intervalHours", 6, "retentionHours", 72);
        return spec;
}

struct bench_case {
        const char *name;
        unsigned nodes;
        const char *settings_doc; /* NULL: the defaults */
};

struct result {
        uint64_t *t;
        size_t deny, warn;
};

/* The remote round trip of the 3-node case: input built, POSTed, decision decoded. */
static int run_remote(struct cm_policy_remote *remote, unsigned iterations, struct result *res) {
        json_t *spec = rke_spec(3), *env_labels = json_pack("{s:s}", "tier", "production"),
               *labels = json_pack("{s:s}", "team", "infra"), *settings = cm_policy_settings_effective(NULL);
        int r = -ENOMEM;

        if (!spec || !env_labels || !labels || !settings)
                goto out;
        for (unsigned i = 0; i < iterations + iterations / 10; i++) {
                struct cm_policy_decision d = {};
                char err[512] = "";
                uint64_t t0 = mono_nsec(), t1;
                json_t *input = cm_policy_input_build("create", "admin", "prod", env_labels, "east", labels,
                                                      spec, "rke", NULL, NULL, settings);

                r = input ? cm_policy_remote_evaluate(remote, input, &d, err, sizeof(err)) : -ENOMEM;
                json_decref(input);
                if (r < 0) {
                        fprintf(stderr, "policy-bench: remote: %s\n", err[0] ? err : strerror(-r));
                        goto out;
                }
                res->deny = json_array_size(d.deny);
                res->warn = json_array_size(d.warn);
                cm_policy_decision_done(&d);
                t1 = mono_nsec();
                if (i >= iterations / 10)
                        res->t[i - iterations / 10] = t1 - t0;
        }
        r = 0;
out:
        json_decref(spec);
        json_decref(env_labels);
        json_decref(labels);
        json_decref(settings);
        return r;
}

static int run_case(const struct bench_case *c, unsigned iterations, struct result *res) {
        json_t *spec = rke_spec(c->nodes), *env_labels = json_pack("{s:s}", "tier", "production"),
               *labels = json_pack("{s:s, s:s}", "team", "infra", "cost-center", "42"),
               *versions = json_pack("[s, s, s]", "v1.32.7-rancher1-1", "v1.31.11-rancher1-1",
                                     "v1.30.14-rancher1-1");
        _cleanup_free_ char *stored = NULL;
        json_t *settings = NULL;
        int r = -ENOMEM;

        if (!spec || !env_labels || !labels || !versions)
                goto out;
        if (c->settings_doc) {
                struct cm_problem p;

                cm_problem_init(&p);
                r = cm_policy_settings_decode(c->settings_doc, strlen(c->settings_doc), &stored, &p);
                cm_problem_done(&p);
                if (r < 0)
                        goto out;
        }
        settings = cm_policy_settings_effective(stored);
        if (!settings) {
                r = -ENOMEM;
                goto out;
        }
        for (unsigned i = 0; i < iterations + iterations / 10; i++) {
                struct cm_policy_decision d = {};
                uint64_t t0 = mono_nsec(), t1;
                json_t *input = cm_policy_input_build("create", "admin", "prod", env_labels, "east", labels,
                                                      spec, "rke", versions, "v1.32.7-rancher1-1", settings);

                if (!input || cm_policy_evaluate_builtin(input, &d) < 0) {
                        json_decref(input);
                        r = -ENOMEM;
                        goto out;
                }
                res->deny = json_array_size(d.deny);
                res->warn = json_array_size(d.warn);
                cm_policy_decision_done(&d);
                json_decref(input);
                t1 = mono_nsec();
                /* The first tenth warms caches and the allocator up and is not counted. */
                if (i >= iterations / 10)
                        res->t[i - iterations / 10] = t1 - t0;
        }
        r = 0;
out:
        json_decref(spec);
        json_decref(env_labels);
        json_decref(labels);
        json_decref(versions);
        json_decref(settings);
        return r;
}

int main(int argc, char *argv[]) {
        static const struct option longopts[] = {
                { "iterations", required_argument, NULL, 'n' },
                { "remote-url", required_argument, NULL, 'u' },
                { "token-file", required_argument, NULL, 't' },
                { "ca-file", required_argument, NULL, 'c' },
                { "remote-iterations", required_argument, NULL, 'r' },
                {},
        };
        static const struct bench_case cases[] = {
                { "rke-3-nodes", 3, NULL },
                { "rke-100-nodes-cidrs", 100,
                  "{\"rules\":{\"node-cidrs\":{\"params\":{\"cidrs\":[\"192.168.0.0/16\",\"172.16.0.0/12\","
                  "\"fd00::/8\",\"10.0.0.0/8\"]}},\"required-labels\":{\"params\":{\"keys\":[\"team\","
                  "\"cost-center\"]}},\"supported-version\":{\"params\":{\"minimum\":\"v1.30.0\"}}}}" },
        };
        _cleanup_strbuf_ struct strbuf out = STRBUF_INIT(1 << 16);
        struct cm_policy_remote_config rc = {};
        unsigned iterations = 100000, remote_iterations = 2000;
        uint64_t *effective_t;
        int c, r = 0;

        while ((c = getopt_long(argc, argv, "", longopts, NULL)) >= 0) {
                switch (c) {
                case 'n':
                        if (safe_atou(optarg, &iterations) < 0 || iterations < 10)
                                return 2;
                        break;
                case 'r':
                        if (safe_atou(optarg, &remote_iterations) < 0 || remote_iterations < 10)
                                return 2;
                        break;
                case 'u':
                        rc.url = optarg;
                        break;
                case 't':
                        rc.token_file = optarg;
                        break;
                case 'c':
                        rc.ca_file = optarg;
                        break;
                default:
                        return 2;
                }
        }
        effective_t = new0(uint64_t, iterations);
        if (!effective_t)
                return 1;
        r = strbuf_addf(&out, "{\"iterations\":%u,\"target_p99_us\":20,\"cases\":[", iterations);
        for (size_t k = 0; r >= 0 && k < ELEMENTSOF(cases); k++) {
                struct result res = { .t = new0(uint64_t, iterations) };

                if (!res.t || run_case(&cases[k], iterations, &res) < 0) {
                        fprintf(stderr, "policy-bench: case %s failed\n", cases[k].name);
                        free(res.t);
                        return 1;
                }
                qsort(res.t, iterations, sizeof(res.t[0]), cmp_u64);
                r = strbuf_addf(&out,
                                "%s{\"name\":\"%s\",\"nodes\":%u,\"deny\":%zu,\"warn\":%zu,\"p50_us\":%.2f,"
                                "\"p90_us\":%.2f,\"p99_us\":%.2f,\"max_us\":%.2f}",
                                k ? "," : "", cases[k].name, cases[k].nodes, res.deny, res.warn,
                                pct(res.t, iterations, 0.50), pct(res.t, iterations, 0.90),
                                pct(res.t, iterations, 0.99), pct(res.t, iterations, 1.0));
                free(res.t);
        }
        /* For context: the effective settings of an environment, merged from its stored document. */
        for (unsigned i = 0; r >= 0 && i < iterations; i++) {
                uint64_t t0 = mono_nsec();
                json_t *s = cm_policy_settings_effective(cases[1].settings_doc);

                if (!s) {
                        r = -ENOMEM;
                        break;
                }
                json_decref(s);
                effective_t[i] = mono_nsec() - t0;
        }
        if (r >= 0) {
                qsort(effective_t, iterations, sizeof(effective_t[0]), cmp_u64);
                r = strbuf_addf(&out, "],\"settings_effective\":{\"p50_us\":%.2f,\"p99_us\":%.2f}",
                                pct(effective_t, iterations, 0.50), pct(effective_t, iterations, 0.99));
        }
        free(effective_t);
        if (r >= 0 && rc.url) {
                _cleanup_(cm_policy_remote_closep) struct cm_policy_remote *remote = NULL;
                struct result res = { .t = new0(uint64_t, remote_iterations) };
                char err[512] = "";

                if (!res.t)
                        return 1;
                if (cm_policy_remote_open(&rc, &remote, err, sizeof(err)) < 0 ||
                    run_remote(remote, remote_iterations, &res) < 0) {
                        fprintf(stderr, "policy-bench: remote: %s\n", err);
                        free(res.t);
                        return 1;
                }
                qsort(res.t, remote_iterations, sizeof(res.t[0]), cmp_u64);
                r = strbuf_addf(&out,
                                ",\"remote\":{\"iterations\":%u,\"deny\":%zu,\"warn\":%zu,\"p50_us\":%.2f,"
                                "\"p90_us\":%.2f,\"p99_us\":%.2f}",
                                remote_iterations, res.deny, res.warn, pct(res.t, remote_iterations, 0.50),
                                pct(res.t, remote_iterations, 0.90), pct(res.t, remote_iterations, 0.99));
                free(res.t);
        }
        if (r >= 0)
                r = strbuf_adds(&out, "}\n");
        if (r < 0) {
                fprintf(stderr, "policy-bench: %s\n", strerror(-r));
                return 1;
        }
        fputs(out.buf, stdout);
        return 0;
}
