/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The `local` engine's operations: validate a spec, apply (start or converge a helper and wait for
 * its ready file), destroy (stop it and remove its data). Processes are handled by supervise.c.
 */
#include "base/program.h"
#include "base/common.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "api/json.h"
#include "base/fileio.h"
#include "base/parse.h"
#include "base/secret.h"
#include "base/spawn.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "engine/engine.h"
#include "engine/local/local.h"
#include "engine/local/local_internal.h"

#define HELPER_BASENAME "clustermgmt-localk8s"
#define READY_TIMEOUT_USEC (120 * USEC_PER_SEC)
#define STOP_GRACE_USEC (30 * USEC_PER_SEC)
#define KUBECONFIG_MAX (1024 * 1024)
#define READY_JSON_MAX (64 * 1024)
#define LOG_FORWARD_MAX (64 * 1024)
#define BUILD_HINT "build it with `make localk8s` (or `make tools`), or point --localk8s-path at it"

/* --- Helper path and version --- */

static pthread_once_t helper_once = PTHREAD_ONCE_INIT;
static char helper_path[PATH_MAX];
static bool helper_set;

static void helper_default(void) {
        if (!helper_set)
                cm_program_default_path(HELPER_BASENAME, false, helper_path, sizeof(helper_path));
}

int cm_engine_local_set_helper(const char *path) {
        if (isempty(path)) {
                helper_set = false;
                helper_default();
                return 0;
        }
        if (cm_strlcpy(helper_path, path, sizeof(helper_path)) < 0)
                return -ENAMETOOLONG;
        helper_set = true;
        return 0;
}

const char *cm_engine_local_helper(void) {
        (void) pthread_once(&helper_once, helper_default);
        return helper_path;
}

int cm_local_helper_resolve(char *buf, size_t size) {
        char tmp[PATH_MAX];

        if (!realpath(cm_engine_local_helper(), tmp))
                return negative_errno();
        if (access(tmp, X_OK) < 0)
                return negative_errno();
        return cm_strlcpy(buf, tmp, size) < 0 ? -ENAMETOOLONG : 0;
}

struct version_capture {
        char line[64];
        bool got;
        uint64_t deadline;
};

static void version_on_line(void *userdata, const char *line, size_t n) {
        struct version_capture *v = userdata;

        if (v->got || n == 0 || n >= sizeof(v->line))
                return;
        memcpy(v->line, line, n);
        v->line[n] = 0;
        v->got = true;
}

static bool version_should_stop(void *userdata) {
        const struct version_capture *v = userdata;

        return cm_mono_usec() > v->deadline;
}

/* The Kubernetes version the helper runs (`helper --version`), cached per helper path. */
static int helper_version(char *buf, size_t size) {
        static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
        static char cached_for[PATH_MAX], cached[64];
        char helper[PATH_MAX];
        int r;

        r = cm_local_helper_resolve(helper, sizeof(helper));
        if (r < 0)
                return r;
        pthread_mutex_lock(&lock);
        if (cached[0] && streq(cached_for, helper)) {
                r = cm_strlcpy(buf, cached, size);
                pthread_mutex_unlock(&lock);
                return r < 0 ? r : 0;
        }
        {
                struct version_capture v = { .deadline = cm_mono_usec() + 20 * USEC_PER_SEC };
                char *argv[] = { helper, CM_UNCONST(char *, "--version"), NULL };
                struct cm_spawn_opts o = {
                        .argv = argv,
                        .on_line = version_on_line,
                        .should_stop = version_should_stop,
                        .userdata = &v,
                        .kill_grace_usec = USEC_PER_SEC,
                };

                r = cm_spawn_run(&o);
                if (r == 0 && v.got && v.line[0] == 'v') {
                        (void) cm_strlcpy(cached, v.line, sizeof(cached));
                        (void) cm_strlcpy(cached_for, helper, sizeof(cached_for));
                        r = cm_strlcpy(buf, cached, size) < 0 ? -ENAMETOOLONG : 0;
                } else if (r >= 0)
                        r = -EIO;
        }
        pthread_mutex_unlock(&lock);
        return r;
}

/* --- Pure parts --- */

unsigned cm_local_spec_nodes(const json_t *spec) {
        const json_t *v = json_object_get(json_object_get(spec, "local"), "nodes");

        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > CM_LOCAL_MAX_NODES)
                return 1;
        return (unsigned) json_integer_value(v);
}

void cm_local_helper_name(const char *cluster_name, char *buf, size_t size) {
        size_t n = strnlen(cluster_name ?: "", 40);

        while (n > 0 && cluster_name[n - 1] == '-')
                n--;
        if (n == 0 || n >= size) {
                (void) cm_strlcpy(buf, "localk8s", size);
                return;
        }
        memcpy(buf, cluster_name, n);
        buf[n] = 0;
}

void cm_local_build_argv(const char *helper, const char *dir, const char *name, unsigned nodes,
                         char *nodes_buf, size_t nodes_size, char *argv[static CM_LOCAL_ARGV_MAX]) {
        size_t i = 0;

        (void) cm_snprintf(nodes_buf, nodes_size, "%u", nodes);
        argv[i++] = CM_UNCONST(char *, helper);
        argv[i++] = CM_UNCONST(char *, "--data-dir");
        argv[i++] = CM_UNCONST(char *, dir);
        argv[i++] = CM_UNCONST(char *, "--name");
        argv[i++] = CM_UNCONST(char *, name);
        argv[i++] = CM_UNCONST(char *, "--nodes");
        argv[i++] = nodes_buf;
        argv[i] = NULL;
}

bool cm_local_cmdline_matches(const char *cmdline, size_t n, const char *helper_base, const char *dir,
                              unsigned *ret_nodes) {
        const char *args[64], *base;
        size_t nargs = 0, dir_len = strlen(dir);
        bool dir_ok = false;
        unsigned nodes = 1;

        for (size_t i = 0; i < n && nargs < ELEMENTSOF(args);) {
                const char *a = cmdline + i;
                size_t len = strnlen(a, n - i);

                args[nargs++] = a;
                i += len + 1;
                if (len == n - (size_t) (a - cmdline))
                        return false; /* not NUL-terminated: cut off */
        }
        if (nargs == 0)
                return false;
        base = strrchr(args[0], '/');
        base = base ? base + 1 : args[0];
        if (!streq(base, HELPER_BASENAME) && !(helper_base && streq(base, helper_base)))
                return false;
        for (size_t i = 1; i < nargs; i++) {
                const char *val = NULL, *a = args[i];

                if (a[0] == '-' && a[1] == '-')
                        a++; /* Go's flag package takes -flag and --flag */
                if (strneq(a, "-data-dir", 9) && (a[9] == '=' || a[9] == 0)) {
                        val = a[9] == '=' ? a + 10 : (i + 1 < nargs ? args[++i] : NULL);
                        dir_ok = val && strlen(val) == dir_len && streq(val, dir);
                } else if (strneq(a, "-nodes", 6) && (a[6] == '=' || a[6] == 0)) {
                        val = a[6] == '=' ? a + 7 : (i + 1 < nargs ? args[++i] : NULL);
                        if (!val || safe_atou(val, &nodes) < 0)
                                return false;
                }
        }
        if (!dir_ok)
                return false;
        if (ret_nodes)
                *ret_nodes = nodes;
        return true;
}

static bool loopback_endpoint(const char *s) {
        const char *port;
        unsigned p;

        if (strneq(s, "https://127.0.0.1:", 18))
                port = s + 18;
        else if (strneq(s, "https://[::1]:", 14))
                port = s + 14;
        else
                return false;
        return safe_atou(port, &p) >= 0 && p > 0 && p < 65536;
}

int cm_local_ready_parse(const char *text, size_t n, struct cm_local_ready *ret) {
        struct cm_local_ready rd = {};
        json_error_t err;
        json_t *root, *v;
        int r = -EINVAL;

        root = json_loadb(text, n, JSON_REJECT_DUPLICATES, &err);
        if (!json_is_object(root))
                goto out;
        v = json_object_get(root, "endpoint");
        if (!json_is_string(v) || !loopback_endpoint(json_string_value(v)) ||
            cm_strlcpy(rd.endpoint, json_string_value(v), sizeof(rd.endpoint)) < 0)
                goto out;
        v = json_object_get(root, "pid");
        if (!json_is_integer(v) || json_integer_value(v) <= 1 || json_integer_value(v) > INT32_MAX)
                goto out;
        rd.pid = (pid_t) json_integer_value(v);
        v = json_object_get(root, "nodes");
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 100000)
                goto out;
        rd.nodes = (unsigned) json_integer_value(v);
        v = json_object_get(root, "version");
        if (v &&
            (!json_is_string(v) || cm_strlcpy(rd.version, json_string_value(v), sizeof(rd.version)) < 0))
                goto out;
        v = json_object_get(root, "name");
        if (v && (!json_is_string(v) || cm_strlcpy(rd.name, json_string_value(v), sizeof(rd.name)) < 0))
                goto out;
        *ret = rd;
        r = 0;
out:
        json_decref(root);
        return r;
}

/* --- Files and the health check --- */

static bool path_component_ok(const char *s) {
        if (isempty(s) || strlen(s) > 63 || streq(s, ".") || streq(s, ".."))
                return false;
        for (const char *c = s; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                      *c == '-' || *c == '_'))
                        return false;
        return true;
}

int cm_local_cluster_dir(const char *data_dir, const char *env, const char *id, char *buf, size_t size) {
        char base[PATH_MAX];

        if (!path_component_ok(env) || !path_component_ok(id))
                return -EINVAL;
        if (!realpath(data_dir, base))
                return negative_errno();
        return cm_snprintf(buf, size, "%s/local/%s/%s", base, env, id) < 0 ? -ENAMETOOLONG : 0;
}

int cm_local_read_ready(const char *dir, struct cm_local_ready *ret) {
        _cleanup_free_ char *text = NULL;
        char path[PATH_MAX + 32];
        size_t n = 0;
        int r;

        if (cm_snprintf(path, sizeof(path), "%s/ready.json", dir) < 0)
                return -ENAMETOOLONG;
        r = cm_read_file(path, READY_JSON_MAX, false, &text, &n);
        if (r < 0)
                return r;
        return cm_local_ready_parse(text, n, ret);
}

static size_t readyz_body(char *data, size_t size, size_t nmemb, void *userdata) {
        struct strbuf *sb = userdata;

        return strbuf_add(sb, data, size * nmemb) < 0 ? 0 : size * nmemb;
}

int cm_local_readyz(const char *dir, const char *endpoint) {
        _cleanup_strbuf_ struct strbuf body = STRBUF_INIT(256);
        char url[256], ca[PATH_MAX + 32];
        long code = 0;
        CURLcode cc;
        CURL *h;

        if (!loopback_endpoint(endpoint) || cm_snprintf(url, sizeof(url), "%s/readyz", endpoint) < 0 ||
            cm_snprintf(ca, sizeof(ca), "%s/pki/ca.crt", dir) < 0)
                return -EINVAL;
        h = curl_easy_init();
        if (!h)
                return -ENOMEM;
        (void) curl_easy_setopt(h, CURLOPT_URL, url);
        (void) curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
        (void) curl_easy_setopt(h, CURLOPT_CAINFO, ca);
        (void) curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        (void) curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
        (void) curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 3000L);
        (void) curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, readyz_body);
        (void) curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
        cc = curl_easy_perform(h);
        if (cc == CURLE_OK)
                (void) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_cleanup(h);
        if (cc != CURLE_OK)
                return -ECONNREFUSED;
        return code == 200 && body.buf && streq(body.buf, "ok") ? 0 : -EAGAIN;
}

/* Copies the helper's new log lines (from *offset on) into the operation log. */
static void forward_log(struct cm_engine_ctx *ctx, const char *dir, off_t *offset, bool final) {
        char path[PATH_MAX + 32], buf[LOG_FORWARD_MAX + 1];
        ssize_t n;
        size_t start = 0;
        int fd;

        if (cm_snprintf(path, sizeof(path), "%s/localk8s.log", dir) < 0)
                return;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return;
        n = pread(fd, buf, LOG_FORWARD_MAX, *offset);
        close(fd);
        if (n <= 0)
                return;
        buf[n] = 0;
        for (size_t i = 0; i < (size_t) n; i++)
                if (buf[i] == '\n' || buf[i] == 0) {
                        if (i > start)
                                cm_engine_ctx_log(ctx, "localk8s: %.*s", (int) (i - start), buf + start);
                        start = i + 1;
                }
        if (final && start < (size_t) n) {
                cm_engine_ctx_log(ctx, "localk8s: %s", buf + start);
                start = (size_t) n;
        }
        /* A line longer than the window is passed on cut rather than stalling the copy. */
        if (start == 0 && n == LOG_FORWARD_MAX) {
                cm_engine_ctx_log(ctx, "localk8s: %.*s", 4000, buf);
                start = (size_t) n;
        }
        *offset += (off_t) start;
}

/* The last line of the helper's log that says "error" (else the last line), for a failure message. */
static void last_error_line(const char *dir, char *out, size_t size) {
        char path[PATH_MAX + 32], buf[8192];
        struct stat st;
        const char *best = NULL, *last = NULL;
        ssize_t n;
        int fd;

        out[0] = 0;
        if (cm_snprintf(path, sizeof(path), "%s/localk8s.log", dir) < 0)
                return;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return;
        if (fstat(fd, &st) < 0) {
                close(fd);
                return;
        }
        n = pread(fd, buf, sizeof(buf) - 1,
                  st.st_size > (off_t) sizeof(buf) - 1 ? st.st_size - (off_t) sizeof(buf) + 1 : 0);
        close(fd);
        if (n <= 0)
                return;
        buf[n] = 0;
        for (char *line = buf, *nl; line && *line; line = nl ? nl + 1 : NULL) {
                nl = strchr(line, '\n');
                if (nl)
                        *nl = 0;
                if (!*line)
                        continue;
                last = line;
                if (strstr(line, "error") || strstr(line, "Error"))
                        best = line;
        }
        (void) cm_strlcpy(out, best ?: last ?: "", size);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st;
        (void) ftw;
        if (flag == FTW_DP || flag == FTW_D)
                return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
        return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

static int remove_tree(const char *dir) {
        if (access(dir, F_OK) < 0)
                return errno == ENOENT ? 0 : negative_errno();
        if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
                return negative_errno();
        return 0;
}

/* True unless a helper holds the data dir's lock file. */
static bool data_dir_unlocked(const char *dir) {
        char path[PATH_MAX + 32];
        bool free_ = true;
        int fd;

        if (cm_snprintf(path, sizeof(path), "%s/localk8s.lock", dir) < 0)
                return false;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return true;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                free_ = errno != EWOULDBLOCK;
        close(fd);
        return free_;
}

/* --- The engine --- */

_printf_(3, 4) static int fail(struct cm_engine_result *ret, bool retryable, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(ret->message, sizeof(ret->message), fmt, ap);
        va_end(ap);
        ret->retryable = retryable;
        return -EIO;
}

static int local_validate(const json_t *spec, struct cm_problem *p) {
        static const char *const allowed[] = { "nodes", NULL };
        const json_t *l = json_object_get(spec, "local"), *v;
        const char *kv;

        if (l && !json_is_object(l))
                cm_problem_add(p, "spec.local", "must be an object like {\"nodes\": 3}, not %s",
                               cm_json_type_name(l));
        else if (l) {
                (void) cm_json_check_fields(l, "spec.local", allowed, p);
                v = json_object_get(l, "nodes");
                if (v && (!json_is_integer(v) || json_integer_value(v) < 1 ||
                          json_integer_value(v) > CM_LOCAL_MAX_NODES))
                        cm_problem_add(p, "spec.local.nodes", "must be a whole number from 1 to %d",
                                       CM_LOCAL_MAX_NODES);
        }

        kv = json_string_value(json_object_get(spec, "kubernetesVersion"));
        if (!isempty(kv)) {
                char version[64];
                int r = helper_version(version, sizeof(version));

                if (r < 0)
                        cm_problem_add(
                                p, "spec.kubernetesVersion",
                                "cannot be checked: the local engine's helper is not available; leave "
                                "it empty for the helper's version");
                else if (!streq(kv, version))
                        cm_problem_add(p, "spec.kubernetesVersion",
                                       "the local engine runs Kubernetes %s only; use %s or leave it empty",
                                       version, version);
        }
        return 0;
}

static int helper_missing(struct cm_engine_result *ret) {
        return fail(ret, false, "the local engine's helper '%s' is missing or not executable; " BUILD_HINT,
                    cm_engine_local_helper());
}

/* Waits for ready.json of the helper pid (and its /readyz), copying its log into the operation log. */
static int wait_ready(struct cm_engine_ctx *ctx, struct cm_local_proc *p, const char *dir, pid_t pid,
                      off_t *log_offset, struct cm_local_ready *rd, struct cm_engine_result *ret) {
        uint64_t start = cm_mono_usec(), deadline = start + READY_TIMEOUT_USEC;

        for (;;) {
                forward_log(ctx, dir, log_offset, false);
                if (cm_engine_ctx_cancelled(ctx))
                        return -ECANCELED;
                if (cm_local_proc_running(p, NULL) != pid) {
                        int st = cm_local_proc_last_status(p);
                        char line[600];

                        forward_log(ctx, dir, log_offset, true);
                        last_error_line(dir, line, sizeof(line));
                        /* Exit status 2 is a usage error: trying again cannot help. */
                        return fail(ret, !(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 2),
                                    "the local cluster's helper stopped before the cluster was ready (%s "
                                    "%d)%s%s",
                                    st >= 0 && WIFSIGNALED(st) ? "signal" : "exit status",
                                    st < 0            ? -1
                                    : WIFSIGNALED(st) ? WTERMSIG(st)
                                                      : WEXITSTATUS(st),
                                    line[0] ? ": " : "", line);
                }
                if (cm_local_read_ready(dir, rd) == 0 && rd->pid == pid &&
                    cm_local_readyz(dir, rd->endpoint) == 0) {
                        cm_engine_ctx_log(ctx,
                                          "local cluster ready after %.1f s: %s (Kubernetes %s, %u nodes)",
                                          (double) (cm_mono_usec() - start) / (double) USEC_PER_SEC,
                                          rd->endpoint, rd->version, rd->nodes);
                        return 0;
                }
                if (cm_mono_usec() > deadline)
                        return fail(ret, true, "the local cluster was not ready within %" PRIu64 " s",
                                    READY_TIMEOUT_USEC / USEC_PER_SEC);
                usleep(200000);
        }
}

static int local_apply(struct cm_engine_ctx *ctx, struct cm_engine_result *ret) {
        const struct cm_cluster *c = cm_engine_ctx_cluster(ctx);
        unsigned nodes = cm_local_spec_nodes(cm_engine_ctx_spec(ctx)), running_nodes = 0;
        struct cm_local_proc *p = NULL;
        struct cm_local_ready rd = {};
        char dir[PATH_MAX], helper[PATH_MAX];
        _cleanup_free_ char *kubeconfig = NULL;
        size_t kubeconfig_len = 0;
        bool started = false;
        off_t log_offset = 0;
        json_t *status;
        pid_t pid;
        int r;

        if (cm_local_helper_resolve(helper, sizeof(helper)) < 0)
                return helper_missing(ret);
        r = cm_local_cluster_dir(cm_engine_ctx_data_dir(ctx), c->env, c->id, dir, sizeof(dir));
        if (r < 0)
                return fail(ret, false, "no usable data dir for the local cluster: %s", strerror(-r));
        r = cm_local_proc_acquire(c->id, c->env, c->name, dir, &p);
        if (r < 0)
                return fail(ret, true, "register the local cluster: %s", strerror(-r));

        pid = cm_local_proc_running(p, &running_nodes);
        if (pid > 0 && running_nodes != nodes) {
                cm_engine_ctx_log(ctx, "node count changes from %u to %u: restarting the helper (pid %d)",
                                  running_nodes, nodes, (int) pid);
                cm_local_proc_supervise(p, false);
                r = cm_local_proc_stop(p, STOP_GRACE_USEC);
                if (r < 0) {
                        r = fail(ret, true, "the helper (pid %d) did not stop", (int) pid);
                        goto out;
                }
                pid = 0;
        }
        if (pid > 0) {
                struct stat st;
                char log_path[PATH_MAX + 32];

                cm_engine_ctx_log(ctx, "the local cluster's helper runs (pid %d, %u nodes)", (int) pid,
                                  running_nodes);
                if (cm_snprintf(log_path, sizeof(log_path), "%s/localk8s.log", dir) > 0 &&
                    stat(log_path, &st) == 0)
                        log_offset = st.st_size;
        } else {
                cm_engine_ctx_log(ctx, "starting a local cluster with %u nodes: %s (data in %s)", nodes,
                                  helper, dir);
                r = cm_local_proc_spawn(p, nodes, &log_offset);
                if (r == -ENOENT || r == -EACCES) {
                        r = helper_missing(ret);
                        goto out;
                }
                if (r < 0) {
                        r = fail(ret, true, "start the local cluster's helper: %s", strerror(-r));
                        goto out;
                }
                started = true;
                /* Not cm_local_proc_running(): a helper that already ended would read as 0 ("none"),
                 * and waiting for pid 0 would never notice that it ended. */
                pid = cm_local_proc_spawned_pid(p);
        }

        r = wait_ready(ctx, p, dir, pid, &log_offset, &rd, ret);
        if (r < 0) {
                /* A helper this step started and that did not come up is not left behind. */
                if (started || r != -ECANCELED) {
                        cm_local_proc_supervise(p, false);
                        if (cm_local_proc_running(p, NULL) > 0) {
                                cm_engine_ctx_log(ctx, "stopping the helper that did not become ready");
                                (void) cm_local_proc_stop(p, 5 * USEC_PER_SEC);
                        }
                }
                goto out;
        }
        cm_local_proc_supervise(p, true);
        cm_local_proc_release(TAKE_PTR(p));

        /* The admin kubeconfig goes into the state vault like any engine's files. */
        {
                char path[PATH_MAX + 32];

                (void) cm_snprintf(path, sizeof(path), "%s/admin.kubeconfig", dir);
                r = cm_read_file(path, KUBECONFIG_MAX, true, &kubeconfig, &kubeconfig_len);
                if (r < 0)
                        return fail(ret, true, "read the local cluster's admin kubeconfig: %s",
                                    strerror(-r));
                r = cm_engine_ctx_store_file(ctx, "kube_config_cluster.yml", kubeconfig, kubeconfig_len);
                cm_wipe(kubeconfig, kubeconfig_len);
                if (r == -EOPNOTSUPP)
                        return fail(ret, false,
                                    "the local cluster runs at %s, but its admin kubeconfig could not be "
                                    "stored: this service has no state vault",
                                    rd.endpoint);
                if (r < 0)
                        return fail(ret, true, "store the admin kubeconfig in the state vault: %s",
                                    strerror(-r));
                cm_engine_ctx_log(ctx, "stored the admin kubeconfig (kube_config_cluster.yml)");
        }

        status = json_pack("{s:s, s:s, s:I}", "endpoint", rd.endpoint, "kubernetesVersion", rd.version,
                           "nodes", (json_int_t) rd.nodes);
        if (status) {
                ret->status_json = json_dumps(status, JSON_COMPACT | JSON_SORT_KEYS);
                json_decref(status);
        }
        return 0;
out:
        cm_local_proc_release(p);
        return r;
}

static int local_destroy(struct cm_engine_ctx *ctx, struct cm_engine_result *ret) {
        const struct cm_cluster *c = cm_engine_ctx_cluster(ctx);
        struct cm_local_proc *p = NULL;
        char dir[PATH_MAX];
        pid_t pid;
        int r;

        r = cm_local_cluster_dir(cm_engine_ctx_data_dir(ctx), c->env, c->id, dir, sizeof(dir));
        if (r < 0)
                return fail(ret, false, "no usable data dir for the local cluster: %s", strerror(-r));
        r = cm_local_proc_acquire(c->id, c->env, c->name, dir, &p);
        if (r < 0)
                return fail(ret, true, "register the local cluster: %s", strerror(-r));
        cm_local_proc_supervise(p, false);
        pid = cm_local_proc_running(p, NULL);
        if (pid > 0) {
                cm_engine_ctx_log(ctx, "stopping the local cluster's helper (pid %d)", (int) pid);
                r = cm_local_proc_stop(p, STOP_GRACE_USEC);
                if (r < 0) {
                        r = fail(ret, true, "the helper (pid %d) did not stop", (int) pid);
                        goto out;
                }
        }
        if (!data_dir_unlocked(dir)) {
                r = fail(ret, true, "another helper still holds the local cluster's data dir");
                goto out;
        }
        r = remove_tree(dir);
        if (r < 0) {
                r = fail(ret, true, "remove the local cluster's data: %s", strerror(-r));
                goto out;
        }
        {
                /* The environment's folder goes with its last cluster. */
                char env_dir[PATH_MAX];
                char *slash;

                (void) cm_strlcpy(env_dir, dir, sizeof(env_dir));
                slash = strrchr(env_dir, '/');
                if (slash) {
                        *slash = 0;
                        (void) rmdir(env_dir);
                }
        }
        cm_engine_ctx_log(ctx, "stopped the local cluster and removed its data");
        r = 0;
out:
        cm_local_proc_release(p);
        return r;
}

const struct cm_engine_ops cm_engine_local_ops = {
        .name = "local",
        .validate = local_validate,
        .apply = local_apply,
        .destroy = local_destroy,
};
