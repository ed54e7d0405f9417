/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Golden-file tests of the rke engine's rendering (spec → cluster.yml) and table tests of its
 * validation and of how it reads rke's output. Golden files live in golden/rke/ next to this file:
 * NAME.json (a spec) and NAME.yml (the exact cluster.yml). CM_UPDATE_GOLDEN=1 rewrites the .yml files.
 */
#include "base/common.h"

#include <libgen.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "api/problem.h"
#include "base/fileio.h"
#include "engine/rke/rke.h"

#define KEY_DIR "/var/lib/clustermgmt/rke-runs/op-1/ssh"

/* Registry passwords by registry index, as the engine reads them from the secrets. */
static const char *const passwords[] = { "pw-0", "p\"w 1\\", "pw-2", NULL };

static void golden_path(const char *name, const char *ext, char *buf, size_t size) {
        char src[PATH_MAX];

        assert_true(cm_strlcpy(src, __FILE__, sizeof(src)) >= 0);
        assert_true(cm_snprintf(buf, size, "%s/golden/rke/%s.%s", dirname(src), name, ext) > 0);
}

static json_t *load_spec(const char *name) {
        char path[PATH_MAX];
        json_error_t err;
        json_t *spec;

        golden_path(name, "json", path, sizeof(path));
        spec = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
        if (!spec)
                fail_msg("%s: %s", path, err.text);
        return spec;
}

static void check_golden(const char *name) {
        struct cm_problem p = {};
        _cleanup_free_ char *yml = NULL, *want = NULL, *again = NULL;
        size_t n = 0, want_n = 0, again_n = 0;
        char path[PATH_MAX];
        json_t *spec = load_spec(name);

        cm_problem_init(&p);
        cm_rke_validate_spec(spec, &p);
        if (cm_problem_has_errors(&p)) {
                char *e = json_dumps(p.errors, 0);
                fail_msg("%s does not validate: %s", name, e);
        }
        assert_int_equal(cm_rke_render(spec, "prod-east", KEY_DIR, passwords, &yml, &n), 0);
        /* Deterministic. */
        assert_int_equal(cm_rke_render(spec, "prod-east", KEY_DIR, passwords, &again, &again_n), 0);
        assert_int_equal(n, again_n);
        assert_memory_equal(yml, again, n);
        golden_path(name, "yml", path, sizeof(path));
        if (getenv("CM_UPDATE_GOLDEN"))
                assert_int_equal(cm_write_file_atomic(path, yml, n, 0644), 0);
        assert_int_equal(cm_read_file(path, 1024 * 1024, false, &want, &want_n), 0);
        if (n != want_n || memcmp(yml, want, n) != 0)
                fail_msg("%s: rendered cluster.yml differs from %s:\n%s", name, path, yml);
        cm_problem_done(&p);
        json_decref(spec);
}

static void test_golden_minimal(void **state) {
        (void) state;
        check_golden("minimal");
}

static void test_golden_full(void **state) {
        (void) state;
        check_golden("full");
}

static void test_golden_snapshots_off(void **state) {
        (void) state;
        check_golden("snapshots-off");
}

/* Each bad spec gives an error on the field named. */
static void test_validation_errors(void **state) {
        static const struct {
                const char *spec, *field;
        } cases[] = {
                { "{}", "spec.rke" },
                { "{\"rke\": []}", "spec.rke" },
                { "{\"rke\": {\"nodes\": []}}", "spec.rke.nodes" },
                { "{\"rke\": {\"nodes\": "
                  "[{\"address\":\"a..b\",\"user\":\"u\",\"roles\":[\"etcd\",\"controlplane\"],\"sshKey\":"
                  "\"k\"}]}}",
                  "spec.rke.nodes[0].address" },
                { "{\"rke\": {\"nodes\": "
                  "[{\"address\":\"h\",\"port\":0,\"user\":\"u\",\"roles\":[\"etcd\",\"controlplane\"],"
                  "\"sshKey\":\"k\"}]}}",
                  "spec.rke.nodes[0].port" },
                { "{\"rke\": {\"nodes\": "
                  "[{\"address\":\"h\",\"user\":\"Root\",\"roles\":[\"etcd\",\"controlplane\"],\"sshKey\":"
                  "\"k\"}]}}",
                  "spec.rke.nodes[0].user" },
                { "{\"rke\": {\"nodes\": "
                  "[{\"address\":\"h\",\"user\":\"u\",\"roles\":[\"etcd\",\"master\"],\"sshKey\":\"k\"}]}}",
                  "spec.rke.nodes[0].roles[1]" },
                { "{\"rke\": {\"nodes\": "
                  "[{\"address\":\"h\",\"user\":\"u\",\"roles\":[\"worker\"],\"sshKey\":\"k\"}]}}",
                  "spec.rke.nodes" },
                { "{\"rke\": {\"nodes\": "
                  "[{\"address\":\"h\",\"user\":\"u\",\"roles\":[\"etcd\",\"controlplane\"],\"sshKey\":\"../"
                  "k\"}]}}",
                  "spec.rke.nodes[0].sshKey" },
                { "{\"rke\": {\"nodes\": "
                  "[{\"address\":\"h\",\"user\":\"u\",\"roles\":[\"etcd\",\"controlplane\"],\"sshKey\":"
                  "\"k\",\"x\":1}]}}",
                  "spec.rke.nodes[0].x" },
                { "{\"rke\": {\"nodes\": "
                  "[{\"address\":\"10.0.0.1\",\"user\":\"u\",\"roles\":[\"etcd\",\"controlplane\"],"
                  "\"sshKey\":\"k\"},{\"address\":\"10.0.0.1\",\"port\":2222,\"user\":\"u\",\"roles\":"
                  "[\"worker\"],\"sshKey\":\"k\"}]}}",
                  "spec.rke.nodes[1].address" },
                { "{\"rke\": {\"network\": {\"plugin\": \"cilium\"}}}", "spec.rke.network.plugin" },
                { "{\"rke\": {\"etcdSnapshots\": {\"intervalHours\": 25}}}",
                  "spec.rke.etcdSnapshots.intervalHours" },
                { "{\"rke\": {\"etcdSnapshots\": {\"intervalHours\": 6, \"retentionHours\": 3}}}",
                  "spec.rke.etcdSnapshots.retentionHours" },
                { "{\"rke\": {\"privateRegistries\": [{\"url\": \"r.example.com\", \"passwordSecret\": "
                  "\"s\"}]}}",
                  "spec.rke.privateRegistries[0].user" },
                { "{\"rke\": {\"privateRegistries\": [{\"url\": \"r.example.com\", \"user\": \"u\"}]}}",
                  "spec.rke.privateRegistries[0].passwordSecret" },
                { "{\"rke\": {\"privateRegistries\": [{\"url\": \"r.example.com\", \"user\": \"u\", "
                  "\"passwordSecret\": \"../s\"}]}}",
                  "spec.rke.privateRegistries[0].passwordSecret" },
                { "{\"rke\": {\"privateRegistries\": [{\"url\": \"r.example.com\", \"user\": \"a b\", "
                  "\"passwordSecret\": \"s\"}]}}",
                  "spec.rke.privateRegistries[0].user" },
                { "{\"rke\": {\"services\": {\"kubelet\": {\"extraArgs\": {\"max-pods\": 5}}}}}",
                  "spec.rke.services.kubelet.extraArgs.max-pods" },
                { "{\"rke\": {\"services\": {\"kubelet\": {\"extraArgs\": {\"x\": \"a\\nb\"}}}}}",
                  "spec.rke.services.kubelet.extraArgs.x" },
                { "{\"rke\": {\"services\": {\"scheduler\": {}}}}", "spec.rke.services.scheduler" },
        };
        (void) state;
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                json_t *spec = json_loads(cases[i].spec, 0, NULL), *e;
                struct cm_problem p = {};
                bool found = false;
                size_t k;

                assert_non_null(spec);
                cm_problem_init(&p);
                cm_rke_validate_spec(spec, &p);
                json_array_foreach(p.errors, k, e) {
                        found = found ||
                                streq(json_string_value(json_object_get(e, "field")) ?: "", cases[i].field);
                }
                if (!found) {
                        char *errs = p.errors ? json_dumps(p.errors, 0) : NULL;
                        fail_msg("case %zu: no error on %s: %s", i, cases[i].field, errs ?: "none");
                }
                cm_problem_done(&p);
                json_decref(spec);
        }
}

static void test_redact(void **state) {
        static const char b64[] = "key: MIIEowIBAAKCAQEAxyzxyzxyzxyzxyzxyzxyzxyzxyzxyzxyz== end";
        char out[256];
        int n;

        (void) state;
        assert_int_equal(cm_rke_redact_line("-----BEGIN RSA PRIVATE KEY-----", 31, out, sizeof(out)), -1);
        assert_int_equal(cm_rke_redact_line("x PRIVATE KEY y", 15, out, sizeof(out)), -1);
        n = cm_rke_redact_line(b64, strlen(b64), out, sizeof(out));
        assert_true(n > 0);
        assert_string_equal(out, "key: [redacted] end");
        n = cm_rke_redact_line("level=info msg=\"[dialer] Setup tunnel\"", 38, out, sizeof(out));
        assert_string_equal(out, "level=info msg=\"[dialer] Setup tunnel\"");
        assert_int_equal(n, 38);
}

static void test_parse_line(void **state) {
        static const char line[] =
                "time=\"2026-01-01T00:00:00Z\" level=fatal msg=\"Failed to validate cluster: "
                "weave \\\"CNI\\\" removed\"";
        char level[16], msg[128];

        (void) state;
        assert_true(cm_rke_parse_line(line, strlen(line), level, sizeof(level), msg, sizeof(msg)));
        assert_string_equal(level, "fatal");
        assert_string_equal(msg, "Failed to validate cluster: weave \"CNI\" removed");
        assert_false(cm_rke_parse_line("plain", 5, level, sizeof(level), msg, sizeof(msg)));
        assert_true(cm_rke_line_is_connection_failure(
                "msg=\"Failed to set up SSH tunneling for host [1.2.3.4]: x\"", 55));
        assert_false(cm_rke_line_is_connection_failure("Failed to validate cluster", 26));
}

static void test_kubeconfig_server(void **state) {
        static const char kc[] = "apiVersion: v1\nclusters:\n- cluster:\n    api-version: v1\n"
                                 "    server: \"https://10.0.1.10:6443\"\n  name: \"x\"\n";
        char buf[128];

        (void) state;
        assert_int_equal(cm_rke_kubeconfig_server(kc, strlen(kc), buf, sizeof(buf)), 0);
        assert_string_equal(buf, "https://10.0.1.10:6443");
        assert_int_equal(cm_rke_kubeconfig_server("a: b\n", 5, buf, sizeof(buf)), -ENOENT);
}

/* A registry with a user needs its password: none, or one YAML cannot carry verbatim, is refused. */
static void test_registry_password_required(void **state) {
        static const char *const bad[] = { "tab\there", NULL };
        json_t *spec = load_spec("full");
        char *yml = NULL;
        size_t n = 0;

        (void) state;
        assert_int_equal(cm_rke_render(spec, "prod-east", KEY_DIR, NULL, &yml, &n), -ENOKEY);
        assert_int_equal(
                cm_rke_render(spec, "prod-east", KEY_DIR, (const char *const[]){ "a", NULL }, &yml, &n),
                -ENOKEY);
        assert_int_equal(
                cm_rke_render(spec, "prod-east", KEY_DIR, (const char *const[]){ "a", bad[0] }, &yml, &n),
                -ENOKEY);
        assert_null(yml);
        json_decref(spec);
}

/* rke's per-host warning is found and explained: login refused, port closed, Docker unreachable. */
static void test_tunnel_failure(void **state) {
        char host[64], reason[256];

        assert_true(
                cm_rke_tunnel_failure("Failed to set up SSH tunneling for host [10.0.1.10]: Can't retrieve "
                                      "Docker Info: error during connect",
                                      host, sizeof(host), reason, sizeof(reason)));
        assert_string_equal(host, "10.0.1.10");
        assert_string_equal(reason, "Can't retrieve Docker Info: error during connect");
        assert_non_null(strstr(cm_rke_tunnel_hint(reason), "SSH login worked, but Docker"));
        assert_non_null(strstr(cm_rke_tunnel_hint("Failed to dial ssh using address [10.0.1.10:22]: ssh: "
                                                  "handshake failed: ssh: unable to authenticate"),
                               "refused the SSH login"));
        assert_non_null(strstr(cm_rke_tunnel_hint("Failed to dial ssh using address [1.2.3.4:22]: dial tcp "
                                                  "1.2.3.4:22: connect: connection refused"),
                               "cannot be reached"));
        assert_non_null(cm_rke_tunnel_hint("something else"));
        assert_false(cm_rke_tunnel_failure("Cluster must have at least one etcd plane host", host,
                                           sizeof(host), reason, sizeof(reason)));
        assert_false(cm_rke_tunnel_failure("Failed to set up SSH tunneling for host []: x", host,
                                           sizeof(host), reason, sizeof(reason)));
        assert_false(cm_rke_tunnel_failure("Failed to set up SSH tunneling for host [h", host, sizeof(host),
                                           reason, sizeof(reason)));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_golden_minimal),
                cmocka_unit_test(test_golden_full),
                cmocka_unit_test(test_golden_snapshots_off),
                cmocka_unit_test(test_validation_errors),
                cmocka_unit_test(test_redact),
                cmocka_unit_test(test_parse_line),
                cmocka_unit_test(test_kubeconfig_server),
                cmocka_unit_test(test_tunnel_failure),
                cmocka_unit_test(test_registry_password_required),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
