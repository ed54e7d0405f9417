/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The helm runner (src/addons/helm.h): input checks, the error and release readers, the child's
 * contract (argv, environment, stdin, the kubeconfig fd) through a stand-in script that records what
 * it gets, and real runs of bin/helm (`make helm`) on the demo chart (tests/testdata/charts/demo)
 * served from a chart repository this test packages and serves itself on 127.0.0.1. No cluster is
 * involved: with a cluster that cannot be reached, helm must say so, and what it names comes from the
 * kubeconfig it read from its fd. Without bin/helm the real runs are skipped, except under CI=true
 * where they fail.
 */
#include "base/common.h"

#include <setjmp.h>
#include <cmocka.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "addons/helm.h"
#include "base/fileio.h"
#include "base/spawn.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "support/net.h"

#define HELM_BIN CM_TESTDATA_DIR "/../../bin/helm"
#define CHART_DIR CM_TESTDATA_DIR "/charts/demo"
#define GENEROUS_USEC (10 * USEC_PER_SEC)

static struct {
        char dir[PATH_MAX]; /* temporary: everything below */
        char helm_dir[PATH_MAX]; /* cm_helm.dir */
        char repo_dir[PATH_MAX]; /* the packaged charts and index.yaml */
        char standin[PATH_MAX]; /* the recording stand-in */
        char record[PATH_MAX]; /* where it records */
        char repo_url[64];
        bool available; /* bin/helm exists */
        pid_t server;
} t;

/* ---- helpers ---------------------------------------------------------------------------------- */

static void path_join(char *buf, size_t size, const char *dir, const char *name) {
        assert_true(cm_snprintf(buf, size, "%s/%s", dir, name) >= 0);
}

static char *read_text(const char *dir, const char *name) {
        char path[PATH_MAX];
        char *text = NULL;
        size_t n;

        path_join(path, sizeof(path), dir, name);
        if (cm_read_file(path, 1024 * 1024, false, &text, &n) < 0)
                fail_msg("cannot read %s", path);
        return text;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *f) {
        (void) st;
        (void) f;
        return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void remove_tree(const char *dir) {
        if (dir[0])
                (void) nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void print_line(void *userdata, const char *line, size_t n) {
        (void) userdata;
        print_message("  %.*s\n", (int) n, line);
}

/* Runs bin/helm with args (NULL-terminated) to its end; fails the test unless it exits 0. */
static void helm_cli(const char *const *args) {
        char *argv[16], home[PATH_MAX + 8], cache[PATH_MAX + 24], config[PATH_MAX + 24], data[PATH_MAX + 24];
        char *envp[] = { CM_UNCONST(char *, "PATH=/usr/bin:/bin"), home, cache, config, data, NULL };
        size_t n = 0;
        int r;

        assert_true(cm_snprintf(home, sizeof(home), "HOME=%s", t.dir) >= 0);
        assert_true(cm_snprintf(cache, sizeof(cache), "HELM_CACHE_HOME=%s/cli/cache", t.dir) >= 0);
        assert_true(cm_snprintf(config, sizeof(config), "HELM_CONFIG_HOME=%s/cli/config", t.dir) >= 0);
        assert_true(cm_snprintf(data, sizeof(data), "HELM_DATA_HOME=%s/cli/data", t.dir) >= 0);
        argv[n++] = CM_UNCONST(char *, HELM_BIN);
        for (; *args; args++) {
                assert_true(n + 1 < ELEMENTSOF(argv));
                argv[n++] = CM_UNCONST(char *, *args);
        }
        argv[n] = NULL;
        struct cm_spawn_opts o = { .argv = argv, .envp = envp, .on_line = print_line };
        r = cm_spawn_run(&o);
        if (r != 0)
                fail_msg("helm %s exited with %d", argv[1], r);
}

/* Packages the demo chart as 0.1.0 and 0.2.0, indexes them and serves them with Python's http.server. */
static void repo_start(void) {
        static const char chart_dir[] = CHART_DIR;
        char port_s[16];
        uint64_t deadline;
        int port, status;

        helm_cli(
                (const char *const[]){ "package", chart_dir, "--version", "0.1.0", "-d", t.repo_dir, NULL });
        helm_cli(
                (const char *const[]){ "package", chart_dir, "--version", "0.2.0", "-d", t.repo_dir, NULL });
        /* Relative chart URLs: helm resolves them against the repository URL. */
        helm_cli((const char *const[]){ "repo", "index", t.repo_dir, NULL });

        port = cm_test_free_port();
        assert_true(cm_snprintf(port_s, sizeof(port_s), "%d", port) >= 0);
        assert_true(cm_snprintf(t.repo_url, sizeof(t.repo_url), "http://127.0.0.1:%d", port) >= 0);
        char *const argv[] = { CM_UNCONST(char *, "/usr/bin/env"),
                               CM_UNCONST(char *, "python3"),
                               CM_UNCONST(char *, "-m"),
                               CM_UNCONST(char *, "http.server"),
                               CM_UNCONST(char *, "--bind"),
                               CM_UNCONST(char *, "127.0.0.1"),
                               CM_UNCONST(char *, "--directory"),
                               t.repo_dir,
                               port_s,
                               NULL };
        t.server = fork();
        assert_true(t.server >= 0);
        if (t.server == 0) {
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);

                (void) setpgid(0, 0);
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
                        _exit(126);
                execv(argv[0], argv);
                _exit(127);
        }
        deadline = cm_mono_usec() + 30 * USEC_PER_SEC;
        while (!cm_test_port_accepts(port)) {
                if (waitpid(t.server, &status, WNOHANG) == t.server) {
                        t.server = 0;
                        fail_msg("python3 -m http.server exited with status %d", status);
                }
                if (cm_mono_usec() > deadline)
                        fail_msg("the chart repository does not listen on %s after 30 s", t.repo_url);
                (void) usleep(20 * 1000);
        }
}

static void repo_stop(void) {
        int status;

        if (t.server <= 0)
                return;
        (void) kill(t.server, SIGKILL);
        (void) waitpid(t.server, &status, 0);
        t.server = 0;
}

/*
 * The stand-in records its argv, environment, working directory, open descriptors, stdin and fd 3,
 * then answers as
 * STANDIN_MODE says: "release" (a release JSON, exit 0), "notfound" (helm's error, exit 1), "garbage"
 * (exit 0), "sleep" (never answers).
 */
static const char standin_script[] =
        "#!/bin/sh\n"
        "# A stand-in for helm that records what the runner gives it (test_helm.c).\n"
        "rec=\"$(dirname \"$0\")/record\"\n"
        "mkdir -p \"$rec\"\n"
        "for a in \"$@\"; do printf '%s\\n' \"$a\"; done > \"$rec/argv\"\n"
        "tr '\\000' '\\n' < /proc/$$/environ | sort > \"$rec/env\"\n"
        "pwd > \"$rec/cwd\"\n"
        "ls /proc/$$/fd | sort -n > \"$rec/fds\"\n"
        "cat > \"$rec/stdin\"\n"
        "if [ -e /proc/self/fd/3 ]; then cat /proc/self/fd/3 > \"$rec/fd3\"; else : > \"$rec/fd3\"; fi\n"
        "case \"$(cat \"$(dirname \"$0\")/mode\")\" in\n"
        "release) printf '%s\\n' '{\"name\":\"web\",\"namespace\":\"addons\",\"version\":4,"
        "\"info\":{\"status\":\"deployed\"},\"chart\":{\"metadata\":{\"name\":\"demo\",\"version\":\"0.2."
        "0\","
        "\"appVersion\":\"1.0\"}},\"manifest\":\"---\\nkind: ConfigMap\\n\"}' ;;\n"
        "notfound) echo 'Error: uninstall: Release not loaded: web: release: not found' >&2; exit 1 ;;\n"
        "garbage) echo 'Release \"web\" has been upgraded. Happy Helming!' ;;\n"
        "sleep) exec sleep 60 ;;\n"
        "esac\n";

static void standin_mode(const char *mode) {
        char path[PATH_MAX];
        char dir[PATH_MAX];

        assert_true(cm_strlcpy(dir, t.standin, sizeof(dir)) >= 0);
        *strrchr(dir, '/') = 0;
        path_join(path, sizeof(path), dir, "mode");
        assert_int_equal(cm_write_file_atomic(path, mode, strlen(mode), 0600), 0);
        remove_tree(t.record);
}

static int group_setup(void **state) {
        const char *tmp = getenv("TMPDIR");
        char sdir[PATH_MAX];

        (void) state;
        assert_true(cm_snprintf(t.dir, sizeof(t.dir), "%s/cm-helm-test-XXXXXX",
                                isempty(tmp) ? "/tmp" : tmp) >= 0);
        assert_non_null(mkdtemp(t.dir));
        path_join(t.helm_dir, sizeof(t.helm_dir), t.dir, "helm");
        path_join(t.repo_dir, sizeof(t.repo_dir), t.dir, "repo");
        path_join(sdir, sizeof(sdir), t.dir, "standin");
        path_join(t.standin, sizeof(t.standin), sdir, "helm");
        path_join(t.record, sizeof(t.record), sdir, "record");
        assert_int_equal(mkdir(t.repo_dir, 0700), 0);
        assert_int_equal(mkdir(sdir, 0700), 0);
        assert_int_equal(cm_write_file_atomic(t.standin, standin_script, sizeof(standin_script) - 1, 0700),
                         0);

        t.available = access(HELM_BIN, X_OK) == 0;
        if (t.available)
                repo_start();
        return 0;
}

static int group_teardown(void **state) {
        (void) state;
        repo_stop();
        remove_tree(t.dir);
        return 0;
}

/* Skips a case that needs bin/helm when it is missing; fails instead under CI=true. */
static void need_helm(void) {
        const char *ci = getenv("CI");

        if (t.available)
                return;
        if (ci && streq(ci, "true"))
                fail_msg("%s is missing: build it with `make helm` (scripts/build-helm.sh)", HELM_BIN);
        print_message("skipped: %s is missing (build it with `make helm`)\n", HELM_BIN);
        skip();
}

static const char kubeconfig_fmt[] = "apiVersion: v1\n"
                                     "kind: Config\n"
                                     "clusters:\n"
                                     "- name: c\n"
                                     "  cluster:\n"
                                     "    server: https://127.0.0.1:%d\n"
                                     "    insecure-skip-tls-verify: true\n"
                                     "users:\n"
                                     "- name: u\n"
                                     "  user:\n"
                                     "    token: not-a-real-token-but-secret\n"
                                     "contexts:\n"
                                     "- name: c\n"
                                     "  context: {cluster: c, user: u}\n"
                                     "current-context: c\n";

/* ---- input checks ----------------------------------------------------------------------------- */

static void test_release_names(void **state) {
        char long_name[80];
        static const struct {
                const char *s;
                bool ok;
        } cases[] = {
                { "demo", true },  { "a", true },         { "web-1", true },  { "a.b-c.d", true },
                { "0x", true },    { "-demo", false },    { "demo-", false }, { "Demo", false },
                { "a_b", false },  { "a..b", false },     { ".a", false },    { "a.", false },
                { "", false },     { "a b", false },      { "a/b", false },   { "--", false },
                { "a.-b", false }, { "\xc3\xa9", false },
        };

        (void) state;
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                if (cm_helm_release_name_valid(cases[i].s) != cases[i].ok)
                        fail_msg("release name \"%s\": expected %s", cases[i].s,
                                 cases[i].ok ? "valid" : "invalid");
        assert_false(cm_helm_release_name_valid(NULL));
        memset(long_name, 'a', sizeof(long_name));
        long_name[CM_HELM_RELEASE_MAX] = 0;
        assert_true(cm_helm_release_name_valid(long_name));
        long_name[CM_HELM_RELEASE_MAX] = 'a';
        long_name[CM_HELM_RELEASE_MAX + 1] = 0;
        assert_false(cm_helm_release_name_valid(long_name));
}

static void test_namespaces(void **state) {
        char ns[80];

        (void) state;
        assert_true(cm_helm_namespace_valid("default"));
        assert_true(cm_helm_namespace_valid("kube-system"));
        assert_false(cm_helm_namespace_valid("a.b"));
        assert_false(cm_helm_namespace_valid("-n"));
        assert_false(cm_helm_namespace_valid("Ns"));
        assert_false(cm_helm_namespace_valid(""));
        assert_false(cm_helm_namespace_valid(NULL));
        memset(ns, 'n', sizeof(ns));
        ns[63] = 0;
        assert_true(cm_helm_namespace_valid(ns));
        ns[63] = 'n';
        ns[64] = 0;
        assert_false(cm_helm_namespace_valid(ns));
}

static void test_charts(void **state) {
        static const struct {
                const char *s;
                bool ok;
        } names[] = {
                { "demo", true },   { "my_chart.v2", true }, { "Nginx-Ingress", true }, { "-demo", false },
                { "--set", false }, { "../x", false },       { "a/b", false },          { ".x", false },
                { "a..b", false },  { "", false },           { "a b", false },          { "oci://r/x", false },
        }, refs[] = {
                { "oci://registry.example.com/charts/demo", true },
                { "oci://localhost:5000/demo", true },
                { "oci://ghcr.io/org/team/chart-name", true },
                { "oci://r/x:1.0", false },
                { "oci://r/x@sha256:abcd", false },
                { "oci://r", false },
                { "oci://r/", false },
                { "oci:///x", false },
                { "oci://r/X", false },
                { "oci://r/a//b", false },
                { "oci://-r/x", false },
                { "oci://r/../x", false },
                { "oci://r/x?y", false },
                { "https://r/x", false },
                { "demo", false },
        };

        (void) state;
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (cm_helm_chart_name_valid(names[i].s) != names[i].ok)
                        fail_msg("chart name \"%s\": expected %s", names[i].s,
                                 names[i].ok ? "valid" : "invalid");
        for (size_t i = 0; i < ELEMENTSOF(refs); i++)
                if (cm_helm_oci_ref_valid(refs[i].s) != refs[i].ok)
                        fail_msg("oci reference \"%s\": expected %s", refs[i].s,
                                 refs[i].ok ? "valid" : "invalid");
}

static void test_versions(void **state) {
        static const struct {
                const char *s;
                bool ok;
        } cases[] = {
                { "1.2.3", true },         { "v1.2.3", true },       { "0.1.0-rc.1", true },
                { "1.2.3+build.5", true }, { "1.2.3-rc.1+b", true }, { "10.20.30", true },
                { "1.2", false },          { "^1.2.3", false },      { ">=1.0.0", false },
                { "1.2.3 ", false },       { "-1.2.3", false },      { "1.2.3-", false },
                { "1.2.3+", false },       { "latest", false },      { "", false },
                { "1.2.3-a..b", false },   { "1.2.3,<2", false },    { "v", false },
                { "1.x.3", false },        { "1.2.3-rc_1", false },
        };

        (void) state;
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                if (cm_helm_version_valid(cases[i].s) != cases[i].ok)
                        fail_msg("version \"%s\": expected %s", cases[i].s,
                                 cases[i].ok ? "valid" : "invalid");
        assert_false(cm_helm_version_valid(NULL));
}

static void test_repo_urls(void **state) {
        static const struct {
                const char *s;
                bool ok;
        } cases[] = {
                { "https://charts.example.com", true },
                { "https://charts.example.com/stable/", true },
                { "http://127.0.0.1:8879", true },
                { "https://[::1]:8443/charts", true },
                { "https://example.com/a%20b/~x_y.z+1", true },
                { "file:///etc", false },
                { "ftp://charts.example.com", false },
                { "oci://registry.example.com/charts", false },
                { "https://user:pw@charts.example.com/", false },
                { "https://charts.example.com/?q=1", false },
                { "https://charts.example.com/#top", false },
                { "https://", false },
                { "https://host:99999999", false },
                { "https://host:/", false },
                { "https:// host", false },
                { "https://-host", false },
                { "HTTPS://host", false },
                { "https://host/a b", false },
                { "https://host/\"x", false },
                { "-https://host", false },
        };

        (void) state;
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                if (cm_helm_repo_url_valid(cases[i].s) != cases[i].ok)
                        fail_msg("repository URL \"%s\": expected %s", cases[i].s,
                                 cases[i].ok ? "valid" : "invalid");
        assert_false(cm_helm_repo_url_valid(NULL));
}

static void test_release_check(void **state) {
        char err[256];
        struct cm_helm_release ok = {
                .name = "web", .namespace = "addons", .chart = "demo", .version = "0.1.0", .repo = "https://x.example",
        }, rel;

        (void) state;
        assert_int_equal(cm_helm_release_check(&ok, true, err, sizeof(err)), 0);
        rel = ok;
        rel.repo = NULL;
        assert_int_equal(cm_helm_release_check(&rel, true, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "oci://"));
        rel.chart = "oci://registry.example.com/charts/demo";
        assert_int_equal(cm_helm_release_check(&rel, true, err, sizeof(err)), 0);
        rel.repo = "https://x.example";
        assert_int_equal(cm_helm_release_check(&rel, true, err, sizeof(err)), -EINVAL);
        rel = ok;
        rel.version = NULL;
        assert_int_equal(cm_helm_release_check(&rel, true, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "version"));
        /* Without a chart (uninstall, status) only the name and the namespace count. */
        assert_int_equal(cm_helm_release_check(&rel, false, err, sizeof(err)), 0);
        rel.namespace = "Addons";
        assert_int_equal(cm_helm_release_check(&rel, false, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "namespace"));
        assert_int_equal(cm_helm_release_check(NULL, false, NULL, 0), -EINVAL);
}

/* Refused inputs never start helm: the stand-in would record its run. */
static void test_refusals(void **state) {
        char long_name[CM_HELM_RELEASE_MAX + 2], kc[1024];
        struct cm_helm h = { .binary = t.standin, .dir = t.helm_dir }, hk;
        struct cm_helm_result res = {};
        json_t *array = json_array();
        static const struct {
                struct cm_helm_release rel;
                const char *says;
        } cases[] = {
                { { "-demo", "addons", "demo", "0.1.0", "https://x.example" }, "release name" },
                { { "--debug", "addons", "demo", "0.1.0", "https://x.example" }, "release name" },
                { { "web", "-n", "demo", "0.1.0", "https://x.example" }, "namespace" },
                { { "web", "addons", "-demo", "0.1.0", "https://x.example" }, "chart name" },
                { { "web", "addons", "--set=a=b", "0.1.0", "https://x.example" }, "chart name" },
                { { "web", "addons", "demo", "0.1.0", "file:///etc" }, "repository URL" },
                { { "web", "addons", "demo", "0.1.0", "https://u:p@x.example" }, "repository URL" },
                { { "web", "addons", "demo", "--devel", "https://x.example" }, "version" },
                { { "web", "addons", "/etc", "0.1.0", NULL }, "oci://" },
                { { "web", "addons", "demo", NULL, "https://x.example" }, "version" },
        };
        struct cm_helm_release rel;

        (void) state;
        standin_mode("release");
        assert_true(cm_snprintf(kc, sizeof(kc), kubeconfig_fmt, 1) >= 0);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                assert_int_equal(cm_helm_template(&h, &cases[i].rel, NULL, &res), -EINVAL);
                if (!strstr(res.message, cases[i].says))
                        fail_msg("case %zu: \"%s\" does not say %s", i, res.message, cases[i].says);
                assert_int_equal(cm_helm_upgrade_install(&h, &cases[i].rel, NULL, &res), -EINVAL);
        }

        memset(long_name, 'a', sizeof(long_name) - 1);
        long_name[sizeof(long_name) - 1] = 0;
        rel = cases[0].rel;
        rel.name = long_name;
        assert_int_equal(strlen(long_name), 54);
        assert_int_equal(cm_helm_template(&h, &rel, NULL, &res), -EINVAL);
        assert_non_null(strstr(res.message, "release name"));

        rel.name = "web";
        /* Everything but an offline template needs a kubeconfig. */
        assert_int_equal(cm_helm_status(&h, &rel, &res), -EINVAL);
        assert_non_null(strstr(res.message, "kubeconfig"));
        assert_int_equal(cm_helm_uninstall(&h, &rel, &res), -EINVAL);
        assert_int_equal(cm_helm_upgrade_install(&h, &rel, NULL, &res), -EINVAL);
        hk = h;
        hk.kubeconfig = kc;
        hk.kubeconfig_len = strlen(kc);
        /* Values are an object. */
        assert_int_equal(cm_helm_upgrade_install(&hk, &rel, array, &res), -EINVAL);
        assert_non_null(strstr(res.message, "object"));
        /* The helm directory is absolute; timeouts are bounded. */
        hk.dir = "relative/helm";
        assert_int_equal(cm_helm_status(&hk, &rel, &res), -EINVAL);
        hk.dir = t.helm_dir;
        hk.timeout_sec = CM_HELM_TIMEOUT_MAX_SEC + 1;
        assert_int_equal(cm_helm_status(&hk, &rel, &res), -EINVAL);
        assert_int_equal(cm_helm_status(NULL, &rel, &res), -EINVAL);
        assert_int_equal(cm_helm_status(&hk, NULL, &res), -EINVAL);

        assert_int_not_equal(access(t.record, F_OK), 0);
        /* A missing binary is not a missing chart. */
        hk.timeout_sec = 0;
        hk.binary = "/nonexistent/helm";
        assert_int_equal(cm_helm_status(&hk, &rel, &res), -ENOEXEC);
        assert_non_null(strstr(res.message, "make helm"));
        cm_helm_result_done(&res);
        json_decref(array);
}

/* ---- readers ---------------------------------------------------------------------------------- */

static void test_error_parse(void **state) {
        char msg[256], big[8192], small[40];
        static const struct {
                const char *stderr_text;
                int r;
                const char *message;
        } cases[] = {
                { "Error: chart \"nope\" version \"0.2.0\" not found in http://127.0.0.1:1 repository\n",
                  -ENOENT, "chart \"nope\" version \"0.2.0\" not found in http://127.0.0.1:1 repository" },
                { "Error: release: not found\n", -ENOENT, "release: not found" },
                { "Error: looks like \"http://h\" is not a valid chart repository or cannot be reached: "
                  "failed to "
                  "fetch http://h/index.yaml : 404 Not Found\n",
                  -ENOENT, NULL },
                { "Error: looks like \"http://127.0.0.1:9\" is not a valid chart repository or cannot be "
                  "reached: "
                  "Get \"http://127.0.0.1:9/index.yaml\": dial tcp 127.0.0.1:9: connect: connection "
                  "refused\n",
                  -EHOSTUNREACH, NULL },
                { "Error: Kubernetes cluster unreachable: Get \"https://10.0.0.1:6443/version\": dial tcp: "
                  "i/o "
                  "timeout\n",
                  -EHOSTUNREACH, NULL },
                { "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress\n",
                  -EBUSY, "UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress" },
                { "Error: UPGRADE FAILED: release web failed, and has been rolled back due to atomic being "
                  "set: "
                  "context deadline exceeded\n",
                  -ETIMEDOUT, NULL },
                { "Error: INSTALLATION FAILED: template: demo/templates/x.yaml:3:4: executing ...\n", -EIO,
                  NULL },
                /* Warnings before the error are not the error; the last "Error: " counts. */
                { "walk.go:74: found symbolic link in path\nWARNING: something\nError: first\nError: second "
                  "line\n  and its continuation\n",
                  -EIO, "second line and its continuation" },
                /* No "Error: " line: the end of the output. */
                { "panic: runtime error\n\tgoroutine 1\n", -EIO, "panic: runtime error goroutine 1" },
                { "Error: bad \x1b[31mred\x1b[0m\n", -EIO, "bad ?[31mred?[0m" },
                { "", -EIO, "helm failed without saying why" },
        };

        (void) state;
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                int r = cm_helm_error_parse(cases[i].stderr_text, msg, sizeof(msg));

                if (r != cases[i].r)
                        fail_msg("case %zu: %d instead of %d (%s)", i, r, cases[i].r, msg);
                if (cases[i].message && !streq(msg, cases[i].message))
                        fail_msg("case %zu: \"%s\" instead of \"%s\"", i, msg, cases[i].message);
        }

        /* Redacted. */
        (void) cm_helm_error_parse("Error: values: password=hunter2hunter2 token: abcdefghijklmnop\n", msg,
                                   sizeof(msg));
        assert_null(strstr(msg, "hunter2hunter2"));
        assert_null(strstr(msg, "abcdefghijklmnop"));
        {
                /* A PEM private key block (tests/testdata/redact/pem) in helm's output. */
                _cleanup_free_ char *pem = NULL;
                char text[512];
                size_t n = 0;

                assert_int_equal(cm_read_file(CM_TESTDATA_DIR "/redact/pem", 4096, false, &pem, &n), 0);
                assert_true(cm_snprintf(text, sizeof(text), "Error: cannot parse:\n%s", pem) >= 0);
                (void) cm_helm_error_parse(text, msg, sizeof(msg));
                assert_non_null(strstr(pem, "\nMIIB\n"));
                assert_null(strstr(msg, "MIIB"));
        }

        /* Cut to fit, at a character, with an ellipsis. */
        memcpy(big, "Error: ", 7);
        for (size_t i = 7; i + 2 < sizeof(big); i += 2)
                memcpy(big + i, "\xc3\xa9", 2);
        big[sizeof(big) - 1] = 0;
        (void) cm_helm_error_parse(big, small, sizeof(small));
        assert_true(strlen(small) < sizeof(small));
        assert_true(endswith(small, "..."));
        assert_int_equal((strlen(small) - 3) % 2, 0);
        (void) cm_helm_error_parse(NULL, small, sizeof(small));
}

static const char release_json[] =
        "{\"name\":\"web\",\"namespace\":\"addons\",\"version\":3,"
        "\"info\":{\"status\":\"deployed\",\"notes\":\"\"},"
        "\"chart\":{\"metadata\":{\"name\":\"demo\",\"version\":\"0.2.0\",\"appVersion\":\"1.0\"},"
        "\"templates\":[{\"name\":\"templates/x.yaml\",\"data\":\"YQ==\"}]},"
        "\"config\":{\"message\":\"hi\"},"
        "\"manifest\":\"---\\n# Source: demo/templates/configmap.yaml\\nkind: ConfigMap\\n\","
        "\"hooks\":[{\"name\":\"h\",\"kind\":\"Job\",\"path\":\"demo/templates/hook.yaml\","
        "\"manifest\":\"kind: Job\\n\"}]}\n";

static void test_release_parse(void **state) {
        struct cm_helm_result r = {};
        static const char *const bad[] = {
                "",
                "not json",
                "[]",
                "{\"name\":\"web\",\"version\":1}",
                "{\"name\":\"web\",\"version\":\"1\",\"info\":{\"status\":\"deployed\"}}",
                "{\"name\":\"web\",\"version\":-1,\"info\":{\"status\":\"deployed\"}}",
                "{\"name\":7,\"version\":1,\"info\":{\"status\":\"deployed\"}}",
                "{\"version\":1,\"info\":{\"status\":\"deployed\"}}",
                "{\"name\":\"web\",\"version\":1,\"info\":{}}",
                "{\"name\":\"web\",\"name\":\"x\",\"version\":1,\"info\":{\"status\":\"deployed\"}}",
                "{\"name\":\"web\",\"version\":1,\"info\":{\"status\":\"x\"},\"chart\":{\"metadata\":[]}}",
        };

        (void) state;
        assert_int_equal(cm_helm_release_parse(release_json, strlen(release_json), false, &r), 0);
        assert_string_equal(r.release, "web");
        assert_string_equal(r.namespace, "addons");
        assert_int_equal(r.revision, 3);
        assert_string_equal(r.status, "deployed");
        assert_string_equal(r.chart, "demo");
        assert_string_equal(r.chart_version, "0.2.0");
        assert_string_equal(r.app_version, "1.0");
        assert_null(r.manifest);

        cm_helm_result_done(&r);
        assert_int_equal(cm_helm_release_parse(release_json, strlen(release_json), true, &r), 0);
        assert_string_equal(r.manifest, "---\n# Source: demo/templates/configmap.yaml\nkind: ConfigMap\n"
                                        "---\n# Source: demo/templates/hook.yaml\nkind: Job\n");
        assert_int_equal(r.manifest_len, strlen(r.manifest));
        cm_helm_result_done(&r);

        /* Written on success only. */
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                r = (struct cm_helm_result){ .revision = 42 };
                if (cm_helm_release_parse(bad[i], strlen(bad[i]), true, &r) != -EINVAL)
                        fail_msg("accepted: %s", bad[i]);
                assert_int_equal(r.revision, 42);
                assert_string_equal(r.release, "");
        }
        assert_int_equal(cm_helm_release_parse(NULL, 0, false, &r), -EINVAL);
}

/* ---- the child's contract (stand-in) ---------------------------------------------------------- */

static void test_child_contract(void **state) {
        char kc[1024], path[PATH_MAX], dir[PATH_MAX];
        struct cm_helm h = { .binary = t.standin, .dir = t.helm_dir, .kubeconfig = kc, .timeout_sec = 42 };
        struct cm_helm_release rel = {
                .name = "web",
                .namespace = "addons",
                .chart = "demo",
                .version = "0.2.0",
                .repo = "http://x.example/c",
        };
        struct cm_helm_result res = {};
        json_t *values = json_pack("{s:s, s:i}", "message", "from the test", "replicas", 2);
        char *text, leak_line[32];
        int null_fd, leak;

        (void) state;
        assert_true(cm_snprintf(kc, sizeof(kc), kubeconfig_fmt, 1) >= 0);
        h.kubeconfig_len = strlen(kc);
        /* Nothing of the service's environment reaches helm. */
        assert_int_equal(setenv("KUBECONFIG", "/home/ops/.kube/config", 1), 0);
        assert_int_equal(setenv("HTTPS_PROXY", "http://proxy.example:3128", 1), 0);
        assert_int_equal(setenv("HELM_DEBUG", "true", 1), 0);

        /* A descriptor without close-on-exec (as one the service inherited) does not reach helm. */
        null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        assert_true(null_fd >= 0);
        leak = fcntl(null_fd, F_DUPFD, 4);
        assert_true(leak >= 4);
        assert_true(cm_snprintf(leak_line, sizeof(leak_line), "\n%d\n", leak) >= 0);

        standin_mode("release");
        assert_int_equal(cm_helm_upgrade_install(&h, &rel, values, &res), 0);
        text = read_text(t.record, "fds");
        assert_true(strneq(text, "0\n1\n2\n3\n", 8));
        if (strstr(text, leak_line))
                fail_msg("fd %d reached the child: %s", leak, text);
        free(text);
        close(leak);
        close(null_fd);
        assert_string_equal(res.release, "web");
        assert_int_equal(res.revision, 4);
        assert_string_equal(res.status, "deployed");
        assert_string_equal(res.chart_version, "0.2.0");
        /* What the release applied: the reconciler's inventory of it. */
        assert_non_null(res.manifest);
        assert_int_equal(strlen(res.manifest), res.manifest_len);
        cm_helm_result_done(&res);

        text = read_text(t.record, "argv");
        assert_string_equal(text,
                            "upgrade\n--install\n--kubeconfig=/proc/self/fd/3\n--namespace=addons\n"
                            "--version=0.2.0\n--repo=http://x.example/c\n--values=-\n--create-namespace\n"
                            "--reset-values\n--atomic\n--wait\n--timeout=42s\n--history-max=10\n"
                            "--output=json\n--\nweb\ndemo\n");
        free(text);
        text = read_text(t.record, "stdin");
        assert_string_equal(text, "{\"message\":\"from the test\",\"replicas\":2}");
        free(text);
        text = read_text(t.record, "fd3");
        assert_string_equal(text, kc);
        free(text);
        text = read_text(t.record, "cwd");
        assert_true(cm_snprintf(path, sizeof(path), "%s/empty\n", t.helm_dir) >= 0);
        assert_string_equal(text, path);
        free(text);
        text = read_text(t.record, "env");
        {
                char want[4096];

                assert_true(cm_snprintf(want, sizeof(want),
                                        "HELM_CACHE_HOME=%1$s/cache\nHELM_CONFIG_HOME=%1$s/config\n"
                                        "HELM_DATA_HOME=%1$s/data\nHELM_DRIVER=secret\nHELM_NO_PLUGINS=1\n"
                                        "HOME=%1$s/home\nPATH=/usr/local/bin:/usr/bin:/bin\n"
                                        "TMPDIR=%1$s/tmp\n",
                                        t.helm_dir) >= 0);
                assert_string_equal(text, want);
        }
        free(text);
        /* The directories helm works in are private. */
        {
                struct stat st;

                path_join(dir, sizeof(dir), t.helm_dir, "cache");
                assert_int_equal(stat(dir, &st), 0);
                assert_int_equal(st.st_mode & 07777, 0700);
        }

        /* The offline template: no kubeconfig, no values: stdin empty, no fd 3. */
        h.kubeconfig = NULL;
        h.kubeconfig_len = 0;
        assert_int_equal(cm_helm_template(&h, &rel, NULL, &res), 0);
        text = read_text(t.record, "argv");
        assert_string_equal(text,
                            "template\n--namespace=addons\n--version=0.2.0\n--repo=http://x.example/c\n"
                            "--include-crds\n--\nweb\ndemo\n");
        free(text);
        text = read_text(t.record, "fd3");
        assert_string_equal(text, "");
        free(text);
        assert_non_null(res.manifest);
        assert_non_null(strstr(res.manifest, "\"name\":\"web\""));

        /* With a kubeconfig the template is the server's dry run, and its manifest comes from the release. */
        h.kubeconfig = kc;
        h.kubeconfig_len = strlen(kc);
        rel.chart = "oci://registry.example.com/charts/demo";
        rel.repo = NULL;
        assert_int_equal(cm_helm_template(&h, &rel, values, &res), 0);
        assert_string_equal(res.manifest, "---\nkind: ConfigMap\n");
        assert_int_equal(res.revision, 4);
        text = read_text(t.record, "argv");
        assert_string_equal(text, "upgrade\n--install\n--kubeconfig=/proc/self/fd/3\n--namespace=addons\n"
                                  "--version=0.2.0\n--values=-\n--create-namespace\n--reset-values\n"
                                  "--dry-run=server\n--timeout=42s\n--output=json\n--\nweb\n"
                                  "oci://registry.example.com/charts/demo\n");
        free(text);

        /* Uninstall and status. */
        assert_int_equal(cm_helm_uninstall(&h, &rel, &res), 0);
        assert_string_equal(res.status, "uninstalled");
        assert_false(res.not_found);
        text = read_text(t.record, "argv");
        assert_string_equal(text, "uninstall\n--kubeconfig=/proc/self/fd/3\n--namespace=addons\n--wait\n"
                                  "--timeout=42s\n--\nweb\n");
        free(text);
        assert_int_equal(cm_helm_status(&h, &rel, &res), 0);
        text = read_text(t.record, "argv");
        assert_string_equal(text, "status\n--kubeconfig=/proc/self/fd/3\n--namespace=addons\n--output=json\n"
                                  "--\nweb\n");
        free(text);

        /* A release that is not there: uninstall is done, status says -ENOENT. */
        standin_mode("notfound");
        assert_int_equal(cm_helm_uninstall(&h, &rel, &res), 0);
        assert_true(res.not_found);
        assert_int_equal(cm_helm_status(&h, &rel, &res), -ENOENT);
        assert_non_null(strstr(res.message, "release: not found"));
        assert_non_null(strstr(res.message, "helm status of release \"web\" in namespace \"addons\""));

        /* An answer that is not a release. */
        standin_mode("garbage");
        assert_int_equal(cm_helm_status(&h, &rel, &res), -EIO);
        assert_non_null(strstr(res.message, "other than a release"));

        cm_helm_result_done(&res);
        json_decref(values);
        (void) unsetenv("KUBECONFIG");
        (void) unsetenv("HTTPS_PROXY");
        (void) unsetenv("HELM_DEBUG");
}

struct stopper {
        uint64_t at;
};

static bool stop_later(void *userdata) {
        const struct stopper *s = userdata;

        return cm_mono_usec() >= s->at;
}

/* should_stop ends the child (and its group) at once, whatever it waits for. */
static void test_cancel(void **state) {
        struct stopper s = { .at = cm_mono_usec() + 300 * USEC_PER_MSEC };
        struct cm_helm h = {
                .binary = t.standin, .dir = t.helm_dir, .should_stop = stop_later, .userdata = &s
        };
        struct cm_helm_release rel = { "web", "addons", "demo", "0.1.0", "http://x.example" };
        struct cm_helm_result res = {};
        uint64_t start = cm_mono_usec();

        (void) state;
        standin_mode("sleep");
        assert_int_equal(cm_helm_template(&h, &rel, NULL, &res), -ECANCELED);
        assert_true(cm_mono_usec() - start < GENEROUS_USEC);
        assert_non_null(strstr(res.message, "cancelled"));
        cm_helm_result_done(&res);
}

/* ---- real helm -------------------------------------------------------------------------------- */

static void test_template(void **state) {
        struct cm_helm h = { .dir = t.helm_dir };
        struct cm_helm_release rel = {
                .name = "web",
                .namespace = "addons",
                .chart = "demo",
                .version = "0.1.0",
                .repo = t.repo_url,
        };
        struct cm_helm_result res = {};
        json_t *values = json_pack("{s:s, s:i}", "message", "from-the-test", "replicas", 3);

        (void) state;
        need_helm();
        h.binary = HELM_BIN;
        if (cm_helm_template(&h, &rel, values, &res) < 0)
                fail_msg("template: %s", res.message);
        assert_non_null(strstr(res.manifest, "kind: ConfigMap"));
        assert_non_null(strstr(res.manifest, "name: web-demo"));
        assert_non_null(strstr(res.manifest, "namespace: addons"));
        assert_non_null(strstr(res.manifest, "message: \"from-the-test\""));
        assert_non_null(strstr(res.manifest, "chartVersion: \"0.1.0\""));
        assert_non_null(strstr(res.manifest, "kind: Deployment"));
        assert_non_null(strstr(res.manifest, "replicas: 3"));
        assert_non_null(strstr(res.manifest, "image: \"registry.k8s.io/pause:3.10\""));
        assert_int_equal(res.manifest_len, strlen(res.manifest));

        /* The other version, the chart's own values. */
        rel.version = "0.2.0";
        if (cm_helm_template(&h, &rel, NULL, &res) < 0)
                fail_msg("template 0.2.0: %s", res.message);
        assert_non_null(strstr(res.manifest, "message: \"hello\""));
        assert_non_null(strstr(res.manifest, "chartVersion: \"0.2.0\""));
        assert_non_null(strstr(res.manifest, "replicas: 1"));
        cm_helm_result_done(&res);
        json_decref(values);
}

static void test_template_not_found(void **state) {
        struct cm_helm h = { .binary = HELM_BIN, .dir = t.helm_dir };
        struct cm_helm_release rel = {
                .name = "web",
                .namespace = "addons",
                .chart = "nope",
                .version = "0.1.0",
                .repo = t.repo_url,
        };
        struct cm_helm_result res = {};
        char closed[64];

        (void) state;
        need_helm();
        assert_int_equal(cm_helm_template(&h, &rel, NULL, &res), -ENOENT);
        print_message("unknown chart: %s\n", res.message);
        assert_non_null(strstr(res.message, "chart \"nope\""));
        assert_non_null(strstr(res.message, "not found"));
        assert_null(res.manifest);

        rel.chart = "demo";
        rel.version = "9.9.9";
        assert_int_equal(cm_helm_template(&h, &rel, NULL, &res), -ENOENT);
        assert_non_null(strstr(res.message, "9.9.9"));

        /* A repository that is not there, and one that cannot be reached. */
        rel.version = "0.1.0";
        assert_true(cm_snprintf(closed, sizeof(closed), "%s/no/such/repo", t.repo_url) >= 0);
        rel.repo = closed;
        assert_int_equal(cm_helm_template(&h, &rel, NULL, &res), -ENOENT);
        assert_true(cm_snprintf(closed, sizeof(closed), "http://127.0.0.1:%d", cm_test_free_port()) >= 0);
        assert_int_equal(cm_helm_template(&h, &rel, NULL, &res), -EHOSTUNREACH);
        print_message("unreachable repository: %s\n", res.message);
        cm_helm_result_done(&res);
}

static bool token_found;

static int find_token(const char *path, const struct stat *st, int flag, struct FTW *f) {
        _cleanup_free_ char *text = NULL;
        size_t n;

        (void) f;
        if (flag != FTW_F || !S_ISREG(st->st_mode))
                return 0;
        if (cm_read_file(path, 64 * 1024 * 1024, false, &text, &n) < 0)
                return 0;
        if (memmem(text, n, "not-a-real-token", 16)) {
                print_message("the kubeconfig's token is in %s\n", path);
                token_found = true;
        }
        return 0;
}

/* helm reads the kubeconfig from its fd: the cluster it cannot reach is the one the kubeconfig names. */
static void test_cluster_unreachable(void **state) {
        char kc[1024], addr[32];
        int port = cm_test_free_port();
        struct cm_helm h = { .binary = HELM_BIN, .dir = t.helm_dir, .kubeconfig = kc, .timeout_sec = 20 };
        struct cm_helm_release rel = {
                .name = "web",
                .namespace = "addons",
                .chart = "demo",
                .version = "0.1.0",
                .repo = t.repo_url,
        };
        struct cm_helm_result res = {};
        uint64_t start = cm_mono_usec();

        (void) state;
        need_helm();
        assert_true(cm_snprintf(kc, sizeof(kc), kubeconfig_fmt, port) >= 0);
        assert_true(cm_snprintf(addr, sizeof(addr), "127.0.0.1:%d", port) >= 0);
        h.kubeconfig_len = strlen(kc);

        assert_int_equal(cm_helm_status(&h, &rel, &res), -EHOSTUNREACH);
        print_message("status: %s\n", res.message);
        assert_non_null(strstr(res.message, "Kubernetes cluster unreachable"));
        assert_non_null(strstr(res.message, addr));
        assert_null(strstr(res.message, "not-a-real-token"));

        assert_int_equal(cm_helm_uninstall(&h, &rel, &res), -EHOSTUNREACH);
        assert_non_null(strstr(res.message, addr));
        assert_int_equal(cm_helm_upgrade_install(&h, &rel, NULL, &res), -EHOSTUNREACH);
        assert_non_null(strstr(res.message, addr));
        assert_int_equal(cm_helm_template(&h, &rel, NULL, &res), -EHOSTUNREACH);
        assert_non_null(strstr(res.message, addr));
        assert_true(cm_mono_usec() - start < 4 * GENEROUS_USEC);

        /* Nothing of the kubeconfig was left in helm's directories. */
        token_found = false;
        assert_int_equal(nftw(t.helm_dir, find_token, 16, FTW_PHYS), 0);
        assert_false(token_found);
        cm_helm_result_done(&res);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_release_names),
                cmocka_unit_test(test_namespaces),
                cmocka_unit_test(test_charts),
                cmocka_unit_test(test_versions),
                cmocka_unit_test(test_repo_urls),
                cmocka_unit_test(test_release_check),
                cmocka_unit_test(test_refusals),
                cmocka_unit_test(test_error_parse),
                cmocka_unit_test(test_release_parse),
                cmocka_unit_test(test_child_contract),
                cmocka_unit_test(test_cancel),
                cmocka_unit_test(test_template),
                cmocka_unit_test(test_template_not_found),
                cmocka_unit_test(test_cluster_unreachable),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
