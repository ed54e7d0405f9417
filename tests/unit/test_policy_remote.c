/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The policy service client against a real OPA (bin/opa, `make tools`) that this test starts itself,
 * behind TLS (tests/testdata/opa) with a bearer token, and the strict decision decoder. Without
 * bin/opa the server cases are skipped, except under CI=true where they fail.
 */
#include "base/common.h"

#include <setjmp.h>
#include <cmocka.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "base/fileio.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "policy/policy.h"
#include "policy/remote.h"
#include "support/net.h"

#define OPA_BIN CM_TESTDATA_DIR "/../../bin/opa"
#define OPA_DIR CM_TESTDATA_DIR "/opa"
#define CA_FILE OPA_DIR "/ca.pem"
#define OTHER_CA_FILE OPA_DIR "/other-ca.pem"
#define GENEROUS_USEC (10 * USEC_PER_SEC)

/* The OPA server of this test run. */
static struct {
        bool available; /* bin/opa exists */
        pid_t pid;
        int port;
        char dir[PATH_MAX]; /* temporary: token file, authz policy, log */
        char token[80];
        char token_file[PATH_MAX];
        char authz[PATH_MAX];
        char log[PATH_MAX];
} opa;

static void path_join(char *buf, size_t size, const char *dir, const char *name) {
        assert_true(cm_snprintf(buf, size, "%s/%s", dir, name) >= 0);
}

static void write_file(const char *path, const char *content) {
        assert_int_equal(cm_write_file_atomic(path, content, strlen(content), 0600), 0);
}

static void dump_log(void) {
        _cleanup_free_ char *log = NULL;
        size_t n;

        if (cm_read_file(opa.log, 64 * 1024, false, &log, &n) >= 0)
                print_message("opa log:\n%s\n", log);
}

/* Starts bin/opa on opa.port with the test policy; fails the test when it does not come up. */
static void opa_start(void) {
        char addr[64];
        uint64_t deadline;
        int status;

        assert_true(cm_snprintf(addr, sizeof(addr), "127.0.0.1:%d", opa.port) >= 0);
        char *const argv[] = {
                CM_UNCONST(char *, OPA_BIN),
                CM_UNCONST(char *, "run"),
                CM_UNCONST(char *, "--server"),
                CM_UNCONST(char *, "--addr"),
                addr,
                CM_UNCONST(char *, "--tls-cert-file"),
                CM_UNCONST(char *, OPA_DIR "/server.pem"),
                CM_UNCONST(char *, "--tls-private-key-file"),
                CM_UNCONST(char *, OPA_DIR "/server-key.pem"),
                CM_UNCONST(char *, "--authentication=token"),
                CM_UNCONST(char *, "--authorization=basic"),
                CM_UNCONST(char *, "--skip-version-check"),
                CM_UNCONST(char *, "--log-level=error"),
                CM_UNCONST(char *, OPA_DIR "/policy"),
                opa.authz,
                NULL,
        };

        opa.pid = fork();
        assert_true(opa.pid >= 0);
        if (opa.pid == 0) {
                int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
                int out = open(opa.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

                (void) setpgid(0, 0);
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
                        _exit(126);
                execv(argv[0], argv);
                _exit(127);
        }

        deadline = cm_mono_usec() + 60 * USEC_PER_SEC;
        while (!cm_test_port_accepts(opa.port)) {
                if (waitpid(opa.pid, &status, WNOHANG) == opa.pid) {
                        opa.pid = 0;
                        dump_log();
                        fail_msg("opa exited with status %d before listening on %s", status, addr);
                }
                if (cm_mono_usec() > deadline) {
                        dump_log();
                        fail_msg("opa does not listen on %s after 60 s", addr);
                }
                (void) usleep(20 * 1000);
        }
}

static void opa_stop(void) {
        uint64_t deadline;
        int status;

        if (opa.pid <= 0)
                return;
        (void) kill(opa.pid, SIGTERM);
        deadline = cm_mono_usec() + 10 * USEC_PER_SEC;
        while (waitpid(opa.pid, &status, WNOHANG) == 0) {
                if (cm_mono_usec() > deadline) {
                        (void) kill(opa.pid, SIGKILL);
                        (void) waitpid(opa.pid, &status, 0);
                        break;
                }
                (void) usleep(10 * 1000);
        }
        opa.pid = 0;
}

static void remove_tree(const char *dir) {
        static const char *const names[] = { "token", "authz.rego", "opa.log", "token2",
                                             "empty", "spaced",     "notpem" };
        char path[PATH_MAX];

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                path_join(path, sizeof(path), dir, names[i]);
                (void) unlink(path);
        }
        (void) rmdir(dir);
}

static int group_setup(void **state) {
        char authz[512];
        const char *tmp = getenv("TMPDIR");

        assert_true(cm_snprintf(opa.dir, sizeof(opa.dir), "%s/cm-policy-remote-XXXXXX",
                                isempty(tmp) ? "/tmp" : tmp) >= 0);
        assert_non_null(mkdtemp(opa.dir));
        path_join(opa.token_file, sizeof(opa.token_file), opa.dir, "token");
        path_join(opa.authz, sizeof(opa.authz), opa.dir, "authz.rego");
        path_join(opa.log, sizeof(opa.log), opa.dir, "opa.log");

        assert_int_equal(cm_random_token("cmt_", opa.token, sizeof(opa.token)), 0);
        {
                char line[sizeof(opa.token) + 2];

                assert_true(cm_snprintf(line, sizeof(line), "%s\n", opa.token) >= 0);
                write_file(opa.token_file, line);
        }
        /* OPA's token authentication puts the bearer token into input.identity. */
        assert_true(cm_snprintf(authz, sizeof(authz),
                                "package system.authz\n\n"
                                "default allow := false\n\n"
                                "allow if input.identity == \"%s\"\n",
                                opa.token) >= 0);
        write_file(opa.authz, authz);

        opa.available = access(OPA_BIN, X_OK) == 0;
        if (!opa.available)
                return 0;
        opa.port = cm_test_free_port();
        opa_start();
        return 0;
}

static int group_teardown(void **state) {
        opa_stop();
        remove_tree(opa.dir);
        return 0;
}

/* Skips a case that needs the server when bin/opa is missing; fails instead under CI=true. */
static void need_opa(void) {
        const char *ci = getenv("CI");

        if (opa.available)
                return;
        if (ci && streq(ci, "true"))
                fail_msg("%s is missing: build it with `make tools` (scripts/build-opa.sh)", OPA_BIN);
        print_message("skipped: %s is missing (make tools)\n", OPA_BIN);
        skip();
}

static void url_for(char *buf, size_t size, int port, const char *package_path) {
        assert_true(cm_snprintf(buf, size, "https://127.0.0.1:%d/v1/data/%s", port, package_path) >= 0);
}

static struct cm_policy_remote *remote_open(const char *package_path, const char *token_file,
                                            const char *ca_file, unsigned timeout_ms) {
        struct cm_policy_remote *r = NULL;
        char url[256], err[512];
        struct cm_policy_remote_config c = {
                .url = url, .token_file = token_file, .ca_file = ca_file, .timeout_ms = timeout_ms
        };
        int k;

        url_for(url, sizeof(url), opa.port, package_path);
        k = cm_policy_remote_open(&c, &r, err, sizeof(err));
        if (k < 0)
                fail_msg("open %s: %s", url, err);
        return r;
}

/* {"cluster": {"name": name, "spec": {"nodes": [{"port": p}...]}, "labels"?: {...}}} */
static json_t *input_new(const char *name, const int *ports, size_t n_ports, bool labels) {
        json_t *nodes = json_array(), *in;

        assert_non_null(nodes);
        for (size_t i = 0; i < n_ports; i++)
                assert_int_equal(json_array_append_new(nodes, json_pack("{s:i}", "port", ports[i])), 0);
        in = json_pack("{s:s, s:s, s:{s:s, s:{s:o}}}", "operation", "create", "principal", "admin",
                       "cluster", "name", name, "spec", "nodes", nodes);
        assert_non_null(in);
        if (labels)
                assert_int_equal(json_object_set_new(json_object_get(in, "cluster"), "labels",
                                                     json_pack("{s:s}", "team", "ops")),
                                 0);
        return in;
}

static void assert_no_token(const char *err) {
        assert_null(strstr(err, opa.token));
}

static const json_t *violation_of(const json_t *list, const char *rule, const char *field) {
        const json_t *v;
        size_t i;

        json_array_foreach(CM_UNCONST(json_t *, list), i, v) {
                const json_t *f = json_object_get(v, "field");

                if (streq(json_string_value(json_object_get(v, "rule")), rule) &&
                    (!field ? !f : (f && streq(json_string_value(f), field))))
                        return v;
        }
        return NULL;
}

/* ---------------------------------------------------------------------------------------------- */

static void test_decode_table(void **state) {
        static const struct {
                const char *body;
                int r;
                size_t n_deny, n_warn;
        } cases[] = {
                { "{}", 0, 0, 0 },
                { "{\"result\": {}}", 0, 0, 0 },
                { "{\"decision_id\": \"x\", \"result\": {\"deny\": [], \"warn\": [], \"helper\": 3}}", 0, 0,
                  0 },
                { "{\"result\": {\"deny\": [\"no\"]}}", 0, 1, 0 },
                { "{\"result\": {\"warn\": [{\"msg\": \"m\", \"rule\": \"r-1\", \"field\": \"spec.x\"}]}}",
                  0, 0, 1 },
                { "{\"result\": {\"deny\": [{\"message\": \"m\"}, \"x\"], \"warn\": [\"y\"]}}", 0, 2, 1 },
                { "", -EBADMSG, 0, 0 },
                { "[]", -EBADMSG, 0, 0 },
                { "{\"result\": 42}", -EBADMSG, 0, 0 },
                { "{\"result\": null}", -EBADMSG, 0, 0 },
                { "{\"result\": {\"deny\": 42}}", -EBADMSG, 0, 0 },
                { "{\"result\": {\"deny\": {\"a\": 1}}}", -EBADMSG, 0, 0 },
                { "{\"result\": {\"warn\": [42]}}", -EBADMSG, 0, 0 },
                { "{\"result\": {\"deny\": [\"\"]}}", -EBADMSG, 0, 0 },
                { "{\"result\": {\"deny\": [\"a\\u001bb\"]}}", -EBADMSG, 0, 0 },
                { "{\"result\": {\"deny\": [{}]}}", -EBADMSG, 0, 0 },
                { "{\"result\": {\"deny\": [{\"msg\": \"a\", \"message\": \"b\"}]}}", -EBADMSG, 0, 0 },
                { "{\"result\": {\"deny\": [{\"msg\": \"a\", \"severity\": \"high\"}]}}", -EBADMSG, 0, 0 },
                { "{\"result\": {\"deny\": [{\"msg\": 1}]}}", -EBADMSG, 0, 0 },
                { "{\"result\": {\"deny\": [{\"msg\": \"a\", \"rule\": \"has space\"}]}}", -EBADMSG, 0, 0 },
                { "{\"result\": {\"deny\": [{\"msg\": \"a\", \"rule\": 7}]}}", -EBADMSG, 0, 0 },
                { "{\"result\": {\"deny\": [{\"msg\": \"a\", \"field\": \"\"}]}}", -EBADMSG, 0, 0 },
                { "{\"result\": {\"deny\": [{\"msg\": \"a\", \"field\": null}]}}", -EBADMSG, 0, 0 },
                { "{\"result\": {}, \"result\": {}}", -EBADMSG, 0, 0 },
                { "{\"result\": {}} trailing", -EBADMSG, 0, 0 },
                { "{\"result\": {\"deny\": [\"a\"]}", -EBADMSG, 0, 0 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct cm_policy_decision d = {};
                int r;

                r = cm_policy_decision_decode(cases[i].body, strlen(cases[i].body), &d);
                if (r != cases[i].r)
                        fail_msg("case %zu (%s): %d, expected %d", i, cases[i].body, r, cases[i].r);
                if (r < 0) {
                        assert_null(d.deny);
                        assert_null(d.warn);
                        continue;
                }
                assert_true(json_is_array(d.deny));
                assert_true(json_is_array(d.warn));
                assert_int_equal(json_array_size(d.deny), cases[i].n_deny);
                assert_int_equal(json_array_size(d.warn), cases[i].n_warn);
                cm_policy_decision_done(&d);
                assert_null(d.deny);
        }
}

static void test_decode_shapes(void **state) {
        static const char body[] =
                "{\"result\": {\"deny\": [\"bare\", {\"message\": \"long form\", \"rule\": "
                "\"a.b:c/d_e-f\", \"field\": \"spec.rke.nodes[2].address\"}], "
                "\"warn\": [{\"msg\": \"short form\"}]}}";
        struct cm_policy_decision d = {};
        const json_t *v;

        assert_int_equal(cm_policy_decision_decode(body, strlen(body), &d), 0);
        v = json_array_get(d.deny, 0);
        assert_string_equal(json_string_value(json_object_get(v, "rule")), CM_POLICY_RULE_UNNAMED);
        assert_string_equal(json_string_value(json_object_get(v, "message")), "bare");
        assert_null(json_object_get(v, "field"));
        assert_int_equal(json_object_size(v), 2);
        v = json_array_get(d.deny, 1);
        assert_string_equal(json_string_value(json_object_get(v, "rule")), "a.b:c/d_e-f");
        assert_string_equal(json_string_value(json_object_get(v, "message")), "long form");
        assert_string_equal(json_string_value(json_object_get(v, "field")), "spec.rke.nodes[2].address");
        assert_int_equal(json_object_size(v), 3);
        v = json_array_get(d.warn, 0);
        assert_string_equal(json_string_value(json_object_get(v, "message")), "short form");
        assert_string_equal(json_string_value(json_object_get(v, "rule")), CM_POLICY_RULE_UNNAMED);
        cm_policy_decision_done(&d);
        cm_policy_decision_done(&d); /* twice is harmless */
        cm_policy_decision_done(NULL);
}

static void test_decode_limits(void **state) {
        struct strbuf sb = STRBUF_INIT(1 << 20);
        struct cm_policy_decision d = {};
        char *big;

        /* 1000 violations are fine, 1001 are not a decision. */
        for (int n = 1000; n <= 1001; n++) {
                strbuf_reset(&sb);
                assert_int_equal(strbuf_adds(&sb, "{\"result\": {\"deny\": ["), 0);
                for (int i = 0; i < n; i++)
                        assert_int_equal(strbuf_addf(&sb, "%s\"v%d\"", i ? "," : "", i), 0);
                assert_int_equal(strbuf_adds(&sb, "]}}"), 0);
                assert_int_equal(cm_policy_decision_decode(sb.buf, sb.len, &d), n == 1000 ? 0 : -EBADMSG);
                cm_policy_decision_done(&d);
        }
        /* A message of 2049 bytes. */
        big = malloc(2049 + 1);
        assert_non_null(big);
        memset(big, 'm', 2049);
        big[2049] = 0;
        strbuf_reset(&sb);
        assert_int_equal(strbuf_addf(&sb, "{\"result\": {\"warn\": [\"%s\"]}}", big), 0);
        assert_int_equal(cm_policy_decision_decode(sb.buf, sb.len, &d), -EBADMSG);
        free(big);
        /* Nesting deeper than the JSON limits. */
        strbuf_reset(&sb);
        for (int i = 0; i < 100; i++)
                assert_int_equal(strbuf_adds(&sb, "{\"a\":"), 0);
        assert_int_equal(strbuf_adds(&sb, "1"), 0);
        for (int i = 0; i < 100; i++)
                assert_int_equal(strbuf_addch(&sb, '}'), 0);
        assert_int_equal(cm_policy_decision_decode(sb.buf, sb.len, &d), -EBADMSG);
        strbuf_release(&sb);
}

static void expect_open_error(const struct cm_policy_remote_config *c, int expected, const char *needle) {
        struct cm_policy_remote *r = NULL;
        char err[512] = "";
        int k;

        k = cm_policy_remote_open(c, &r, err, sizeof(err));
        if (k != expected)
                fail_msg("open %s: %d (%s), expected %d", strna(c->url), k, err, expected);
        assert_null(r);
        if (!strstr(err, needle))
                fail_msg("open %s: '%s' does not say '%s'", strna(c->url), err, needle);
}

static void test_open_validation(void **state) {
        char empty[PATH_MAX], spaced[PATH_MAX], notpem[PATH_MAX], missing[PATH_MAX];
        struct cm_policy_remote *r = NULL;
        char err[512];

        path_join(empty, sizeof(empty), opa.dir, "empty");
        path_join(spaced, sizeof(spaced), opa.dir, "spaced");
        path_join(notpem, sizeof(notpem), opa.dir, "notpem");
        path_join(missing, sizeof(missing), opa.dir, "missing");
        write_file(empty, "\n");
        write_file(spaced, "two words\n");
        write_file(notpem, "not a certificate\n");

        expect_open_error(&(struct cm_policy_remote_config){ .url = "http://opa.example:8181/v1/data/x" },
                          -EINVAL, "loopback");
        expect_open_error(&(struct cm_policy_remote_config){ .url = "http://10.0.0.1/v1/data/x" }, -EINVAL,
                          "https://");
        expect_open_error(&(struct cm_policy_remote_config){ .url = "ftp://127.0.0.1/v1/data/x" }, -EINVAL,
                          "https://");
        expect_open_error(&(struct cm_policy_remote_config){ .url = "https://opa.example:8181" }, -EINVAL,
                          "no path");
        expect_open_error(&(struct cm_policy_remote_config){ .url = "https://opa.example/v1/data/x#f" },
                          -EINVAL, "fragment");
        expect_open_error(
                &(struct cm_policy_remote_config){ .url = "https://u:hunter22@opa.example/v1/data/x" },
                -EINVAL, "credentials");
        expect_open_error(&(struct cm_policy_remote_config){ .url = "https://opa example/v1/data/x" },
                          -EINVAL, "blanks");
        expect_open_error(&(struct cm_policy_remote_config){ .url = "" }, -EINVAL, "empty");
        expect_open_error(&(struct cm_policy_remote_config){ .url = "not a url" }, -EINVAL, "policy URL");
        expect_open_error(&(struct cm_policy_remote_config){ .url = "https://[::1/v1/data/x" }, -EINVAL,
                          "invalid policy URL");
        expect_open_error(&(struct cm_policy_remote_config){ .url = "https://127.0.0.1/v1/data/x",
                                                             .token_file = missing },
                          -ENOENT, missing);
        expect_open_error(&(struct cm_policy_remote_config){ .url = "https://127.0.0.1/v1/data/x",
                                                             .token_file = empty },
                          -EINVAL, empty);
        expect_open_error(&(struct cm_policy_remote_config){ .url = "https://127.0.0.1/v1/data/x",
                                                             .token_file = spaced },
                          -EINVAL, spaced);
        expect_open_error(&(struct cm_policy_remote_config){ .url = "https://127.0.0.1/v1/data/x",
                                                             .token_file = opa.dir },
                          -EINVAL, "not a regular file");
        expect_open_error(&(struct cm_policy_remote_config){ .url = "https://127.0.0.1/v1/data/x",
                                                             .ca_file = missing },
                          -ENOENT, missing);
        expect_open_error(
                &(struct cm_policy_remote_config){ .url = "https://127.0.0.1/v1/data/x", .ca_file = notpem },
                -EINVAL, notpem);
        expect_open_error(
                &(struct cm_policy_remote_config){ .url = "https://127.0.0.1/v1/data/x", .ca_file = empty },
                -EINVAL, "PEM");

        /* Accepted: plain http to loopback, https anywhere; no connection is made at open. */
        static const char *const good[] = {
                "http://127.0.0.1:8181/v1/data/cratekube/cluster",
                "http://127.3.4.5/v1/data/x",
                "http://[::1]:8181/v1/data/x",
                "http://localhost:8181/v1/data/x",
                "HTTPS://opa.example:8181/v1/data/cratekube/cluster?strict-builtin-errors",
        };
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                struct cm_policy_remote_config c = { .url = good[i],
                                                     .token_file = opa.token_file,
                                                     .ca_file = CA_FILE };

                if (cm_policy_remote_open(&c, &r, err, sizeof(err)) < 0)
                        fail_msg("open %s: %s", good[i], err);
                assert_string_equal(cm_policy_remote_url(r), good[i]);
                r = cm_policy_remote_close(r);
                assert_null(r);
        }
        assert_null(cm_policy_remote_close(NULL));
}

static void test_decision(void **state) {
        _cleanup_(cm_policy_remote_closep) struct cm_policy_remote *r = NULL;
        static const int ports[] = { 22, 2222, 80 };
        struct cm_policy_decision d = {};
        const json_t *v;
        json_t *in;
        char err[512] = "";

        need_opa();
        r = remote_open("cmtest", opa.token_file, CA_FILE, 5000);

        in = input_new("forbidden", ports, ELEMENTSOF(ports), false);
        if (cm_policy_remote_evaluate(r, in, &d, err, sizeof(err)) < 0)
                fail_msg("evaluate: %s", err);
        json_decref(in);
        assert_int_equal(json_array_size(d.deny), 3);
        v = violation_of(d.deny, "name-forbidden", "cluster.name");
        assert_non_null(v);
        assert_string_equal(json_string_value(json_object_get(v, "message")),
                            "the cluster name \"forbidden\" is forbidden");
        v = violation_of(d.deny, "node-port", "spec.nodes[0].port");
        assert_non_null(v);
        assert_string_equal(json_string_value(json_object_get(v, "message")),
                            "node 0: port 22 is not allowed");
        assert_non_null(violation_of(d.deny, "node-port", "spec.nodes[2].port"));
        assert_int_equal(json_array_size(d.warn), 1);
        v = violation_of(d.warn, CM_POLICY_RULE_UNNAMED, NULL);
        assert_non_null(v);
        assert_string_equal(json_string_value(json_object_get(v, "message")), "the cluster has no labels");
        cm_policy_decision_done(&d);

        /* A compliant cluster: empty lists, not missing ones. */
        in = input_new("east", ports + 1, 1, true);
        if (cm_policy_remote_evaluate(r, in, &d, err, sizeof(err)) < 0)
                fail_msg("evaluate: %s", err);
        json_decref(in);
        assert_true(json_is_array(d.deny));
        assert_true(json_is_array(d.warn));
        assert_int_equal(json_array_size(d.deny), 0);
        assert_int_equal(json_array_size(d.warn), 0);
        cm_policy_decision_done(&d);

        /* Not an object: refused before anything is sent. */
        in = json_array();
        assert_int_equal(cm_policy_remote_evaluate(r, in, &d, err, sizeof(err)), -EINVAL);
        json_decref(in);
}

static void test_token_refused(void **state) {
        char wrong[PATH_MAX], err[512] = "";
        struct cm_policy_decision d = {};
        struct cm_policy_remote *r;
        json_t *in;

        need_opa();
        in = input_new("east", NULL, 0, true);

        /* No token at all. */
        r = remote_open("cmtest", NULL, CA_FILE, 5000);
        assert_int_equal(cm_policy_remote_evaluate(r, in, &d, err, sizeof(err)), -EACCES);
        print_message("no token: %s\n", err);
        assert_non_null(strstr(err, "401"));
        assert_non_null(strstr(err, "no token file"));
        assert_no_token(err);
        r = cm_policy_remote_close(r);

        /* A wrong one: its value is not in the message either. */
        path_join(wrong, sizeof(wrong), opa.dir, "token2");
        write_file(wrong, "cmt_wrong-token-value\n");
        r = remote_open("cmtest", wrong, CA_FILE, 5000);
        assert_int_equal(cm_policy_remote_evaluate(r, in, &d, err, sizeof(err)), -EACCES);
        print_message("wrong token: %s\n", err);
        assert_null(strstr(err, "cmt_wrong-token-value"));
        assert_no_token(err);

        /* Rotation without restart: the right token renamed over the file is used from then on. */
        {
                _cleanup_free_ char *right = NULL;
                size_t n;

                assert_int_equal(cm_read_file(opa.token_file, 4096, true, &right, &n), 0);
                write_file(wrong, right);
                cm_wipe(right, n);
        }
        if (cm_policy_remote_evaluate(r, in, &d, err, sizeof(err)) < 0)
                fail_msg("evaluate after rotation: %s", err);
        cm_policy_decision_done(&d);

        /* A broken rewrite keeps the token in use. */
        write_file(wrong, "\n");
        if (cm_policy_remote_evaluate(r, in, &d, err, sizeof(err)) < 0)
                fail_msg("evaluate after an empty rewrite: %s", err);
        cm_policy_decision_done(&d);
        r = cm_policy_remote_close(r);
        json_decref(in);
}

static void test_wrong_ca(void **state) {
        struct cm_policy_decision d = {};
        struct cm_policy_remote *r;
        char err[512] = "";
        json_t *in;

        need_opa();
        in = input_new("east", NULL, 0, true);

        r = remote_open("cmtest", opa.token_file, OTHER_CA_FILE, 5000);
        assert_int_equal(cm_policy_remote_evaluate(r, in, &d, err, sizeof(err)), -EPROTO);
        print_message("wrong CA: %s\n", err);
        assert_non_null(strstr(err, "TLS"));
        assert_non_null(strstr(err, "certificate"));
        assert_non_null(strstr(err, "CA file"));
        assert_no_token(err);
        r = cm_policy_remote_close(r);

        /* The system's CAs do not know the test CA either. */
        r = remote_open("cmtest", opa.token_file, NULL, 5000);
        assert_int_equal(cm_policy_remote_evaluate(r, in, &d, err, sizeof(err)), -EPROTO);
        assert_no_token(err);
        r = cm_policy_remote_close(r);

        /* Plain http to a TLS port is no decision either. */
        {
                struct cm_policy_remote_config c = { .token_file = opa.token_file, .timeout_ms = 5000 };
                char url[128];

                assert_true(cm_snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/data/cmtest", opa.port) >=
                            0);
                c.url = url;
                assert_int_equal(cm_policy_remote_open(&c, &r, err, sizeof(err)), 0);
                assert_int_equal(cm_policy_remote_evaluate(r, in, &d, err, sizeof(err)), -EPROTO);
                print_message("http to https: %s\n", err);
                assert_no_token(err);
                r = cm_policy_remote_close(r);
        }
        json_decref(in);
}

static void test_not_a_decision(void **state) {
        struct cm_policy_decision d = {};
        struct cm_policy_remote *r;
        char err[512] = "";
        json_t *in;

        need_opa();
        in = input_new("east", NULL, 0, true);

        r = remote_open("cmtest/notadecision", opa.token_file, CA_FILE, 5000);
        assert_int_equal(cm_policy_remote_evaluate(r, in, &d, err, sizeof(err)), -EBADMSG);
        print_message("not a decision: %s\n", err);
        assert_non_null(strstr(err, "result.deny"));
        r = cm_policy_remote_close(r);

        /* A package path without rules: OPA answers {} and that must not pass for "no violations". */
        r = remote_open("cmtest/nosuchpackage", opa.token_file, CA_FILE, 5000);
        assert_int_equal(cm_policy_remote_evaluate(r, in, &d, err, sizeof(err)), -EBADMSG);
        print_message("no such package: %s\n", err);
        assert_non_null(strstr(err, "package path"));
        r = cm_policy_remote_close(r);

        /* A rule's value rather than a package: the result is a number. */
        r = remote_open("cmtest/node_count", opa.token_file, CA_FILE, 5000);
        assert_int_equal(cm_policy_remote_evaluate(r, in, &d, err, sizeof(err)), -EBADMSG);
        assert_no_token(err);
        r = cm_policy_remote_close(r);

        /* Another endpoint than the data API: not a decision, or an error status. */
        {
                struct cm_policy_remote_config c = { .token_file = opa.token_file, .ca_file = CA_FILE };
                char url[128];
                int k;

                assert_true(cm_snprintf(url, sizeof(url), "https://127.0.0.1:%d/v1/nothing", opa.port) >= 0);
                c.url = url;
                assert_int_equal(cm_policy_remote_open(&c, &r, err, sizeof(err)), 0);
                k = cm_policy_remote_evaluate(r, in, &d, err, sizeof(err));
                print_message("other endpoint: %s\n", err);
                assert_true(k == -EPROTO || k == -EBADMSG);
                assert_no_token(err);
                r = cm_policy_remote_close(r);
        }
        json_decref(in);
}

static void test_timeout(void **state) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        struct cm_policy_remote_config c = { .token_file = opa.token_file,
                                             .ca_file = CA_FILE,
                                             .timeout_ms = 500 };
        struct cm_policy_decision d = {};
        struct cm_policy_remote *r = NULL;
        socklen_t len = sizeof(a);
        char url[128], err[512] = "";
        uint64_t start;
        json_t *in;
        int fd;

        /* A socket that listens but never accepts: the kernel completes the handshake, nobody answers. */
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &a, sizeof(a)), 0);
        assert_int_equal(listen(fd, 16), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &a, &len), 0);
        url_for(url, sizeof(url), ntohs(a.sin_port), "cmtest");
        c.url = url;

        assert_int_equal(cm_policy_remote_open(&c, &r, err, sizeof(err)), 0);
        in = input_new("east", NULL, 0, true);
        start = cm_mono_usec();
        assert_int_equal(cm_policy_remote_evaluate(r, in, &d, err, sizeof(err)), -ETIMEDOUT);
        assert_true(cm_mono_usec() - start < GENEROUS_USEC);
        print_message("timeout: %s\n", err);
        assert_non_null(strstr(err, "500 ms"));
        assert_no_token(err);
        json_decref(in);
        cm_policy_remote_close(r);
        close(fd);
}

struct worker {
        struct cm_policy_remote *remote;
        int id;
        int failures;
        int wrong;
        char err[512];
};

static void *worker_run(void *arg) {
        struct worker *w = arg;
        static const int ports[] = { 80, 8080 };

        for (int i = 0; i < 50; i++) {
                struct cm_policy_decision d = {};
                bool forbidden = (w->id + i) % 2 == 0;
                json_t *in = input_new(forbidden ? "forbidden" : "east", ports, ELEMENTSOF(ports), true);
                int r;

                r = cm_policy_remote_evaluate(w->remote, in, &d, w->err, sizeof(w->err));
                json_decref(in);
                if (r < 0) {
                        w->failures++;
                        continue;
                }
                if (json_array_size(d.deny) != (forbidden ? 2U : 1U) || json_array_size(d.warn) != 0)
                        w->wrong++;
                cm_policy_decision_done(&d);
        }
        return NULL;
}

static void test_threads(void **state) {
        _cleanup_(cm_policy_remote_closep) struct cm_policy_remote *r = NULL;
        struct worker workers[8] = {};
        pthread_t threads[ELEMENTSOF(workers)];

        need_opa();
        r = remote_open("cmtest", opa.token_file, CA_FILE, 20000);
        for (size_t i = 0; i < ELEMENTSOF(workers); i++) {
                workers[i] = (struct worker){ .remote = r, .id = (int) i };
                assert_int_equal(pthread_create(&threads[i], NULL, worker_run, &workers[i]), 0);
        }
        for (size_t i = 0; i < ELEMENTSOF(workers); i++) {
                assert_int_equal(pthread_join(threads[i], NULL), 0);
                if (workers[i].failures > 0 || workers[i].wrong > 0)
                        fail_msg("thread %zu: %d failed, %d wrong decisions; last error: %s", i,
                                 workers[i].failures, workers[i].wrong, workers[i].err);
        }
}

static void test_server_stopped(void **state) {
        _cleanup_(cm_policy_remote_closep) struct cm_policy_remote *r = NULL;
        struct cm_policy_decision d = {};
        char err[512] = "";
        uint64_t start;
        json_t *in;
        int k;

        need_opa();
        in = input_new("east", NULL, 0, true);
        /* A long timeout: being refused must not wait for it. */
        r = remote_open("cmtest", opa.token_file, CA_FILE, 30000);
        if (cm_policy_remote_evaluate(r, in, &d, err, sizeof(err)) < 0)
                fail_msg("evaluate: %s", err);
        cm_policy_decision_done(&d);

        opa_stop();
        start = cm_mono_usec();
        k = cm_policy_remote_evaluate(r, in, &d, err, sizeof(err));
        print_message("stopped: %s\n", err);
        assert_int_equal(k, -ECONNREFUSED);
        assert_true(cm_mono_usec() - start < GENEROUS_USEC);
        assert_non_null(strstr(err, "127.0.0.1"));
        assert_no_token(err);

        /* Back on the same port: the same object connects again. */
        opa_start();
        if (cm_policy_remote_evaluate(r, in, &d, err, sizeof(err)) < 0)
                fail_msg("evaluate after the restart: %s", err);
        cm_policy_decision_done(&d);
        json_decref(in);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_decode_table),   cmocka_unit_test(test_decode_shapes),
                cmocka_unit_test(test_decode_limits),  cmocka_unit_test(test_open_validation),
                cmocka_unit_test(test_decision),       cmocka_unit_test(test_token_refused),
                cmocka_unit_test(test_wrong_ca),       cmocka_unit_test(test_not_a_decision),
                cmocka_unit_test(test_timeout),        cmocka_unit_test(test_threads),
                cmocka_unit_test(test_server_stopped),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
