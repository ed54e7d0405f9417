/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The helm runner (helm.h): input checks, the child's argv and environment, a child with separate
 * stdout and stderr and two memfds, and the reading of helm's answers.
 *
 * Why not cm_spawn_run(): it gives the child /dev/null as stdin, merges stdout and stderr into lines of
 * at most 4 KiB and passes no descriptor on, while helm's JSON answer is one line of up to megabytes
 * (the release with its chart), must be told apart from its error text, and the values and the
 * kubeconfig reach helm as inherited memfds. The child is set up the same way otherwise: fork + exec
 * with an errno pipe, a process group of its own, PR_SET_PDEATHSIG, default signal dispositions.
 */
#include "base/common.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "addons/helm.h"
#include "base/fileio.h"
#include "base/program.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "monitor/health.h"

#define HELM_BASENAME "helm"
#define BUILD_HINT "build it with `make helm` (scripts/build-helm.sh)"
#define CHILD_PATH "/usr/local/bin:/usr/bin:/bin"
/* Added to helm's own --timeout before the child is stopped: start-up, downloads, API calls. */
#define DEADLINE_MARGIN_USEC (60 * USEC_PER_SEC)
/* SIGTERM to SIGKILL: an interrupted upgrade gets time to roll back (--atomic) instead of hanging. */
#define GRACE_UPGRADE_USEC (30 * USEC_PER_SEC)
#define GRACE_USEC (5 * USEC_PER_SEC)
#define TICK_MSEC 200
#define ARGV_MAX 32
#define ELLIPSIS "..."

enum helm_action {
        HELM_UPGRADE,
        HELM_DRY_RUN, /* upgrade --install --dry-run=server */
        HELM_TEMPLATE, /* offline */
        HELM_UNINSTALL,
        HELM_STATUS,
};

/* The subdirectories of cm_helm.dir; "empty" is the child's working directory (see child_dirs()). */
static const char *const helm_subdirs[] = { "cache", "config", "data", "home", "tmp", "empty" };

/* ---- input checks ----------------------------------------------------------------------------- */

static bool lower_alnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool ascii_alnum(char c) {
        return lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool ascii_digit(char c) {
        return c >= '0' && c <= '9';
}

/* A DNS-1123 label of n bytes: [a-z0-9] at both ends, [a-z0-9-] between. */
static bool dns_label(const char *s, size_t n) {
        if (n == 0 || !lower_alnum(s[0]) || !lower_alnum(s[n - 1]))
                return false;
        for (size_t i = 1; i + 1 < n; i++)
                if (!lower_alnum(s[i]) && s[i] != '-')
                        return false;
        return true;
}

bool cm_helm_release_name_valid(const char *s) {
        size_t n;

        if (!s)
                return false;
        n = strlen(s);
        if (n == 0 || n > CM_HELM_RELEASE_MAX)
                return false;
        /* Helm's own rule: DNS-1123 labels joined by '.'. */
        for (const char *p = s;;) {
                const char *e = strchrnul(p, '.');

                if (!dns_label(p, (size_t) (e - p)))
                        return false;
                if (!*e)
                        return true;
                p = e + 1;
        }
}

bool cm_helm_namespace_valid(const char *s) {
        return s && strlen(s) <= CM_HELM_NAMESPACE_MAX && dns_label(s, strlen(s));
}

bool cm_helm_chart_name_valid(const char *s) {
        size_t n;

        if (!s)
                return false;
        n = strlen(s);
        /* A leading letter or digit: never a flag, never a path helm would look for first ("." or "/"). */
        if (n == 0 || n > CM_HELM_CHART_MAX || !ascii_alnum(s[0]))
                return false;
        for (size_t i = 1; i < n; i++)
                if (!ascii_alnum(s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
                        return false;
        return !strstr(s, "..");
}

bool cm_helm_oci_ref_valid(const char *s) {
        const char *p, *slash;
        size_t n;

        if (!s || !strneq(s, "oci://", 6))
                return false;
        n = strlen(s);
        if (n > CM_HELM_CHART_MAX)
                return false;
        p = s + 6;
        slash = strchr(p, '/');
        if (!slash || slash == p || !ascii_alnum(p[0]))
                return false;
        /* The registry: a host name or address and an optional port. */
        for (const char *q = p; q < slash; q++)
                if (!ascii_alnum(*q) && *q != '.' && *q != '-' && *q != ':')
                        return false;
        /* The repository path: lowercase components joined by '/'; no tag or digest (':' or '@'). */
        for (const char *q = slash + 1;; q++) {
                const char *e = strchrnul(q, '/');

                if (e == q || !lower_alnum(q[0]) || !lower_alnum(e[-1]))
                        return false;
                for (const char *c = q; c < e; c++)
                        if (!lower_alnum(*c) && *c != '.' && *c != '_' && *c != '-')
                                return false;
                if (!*e)
                        break;
                q = e;
        }
        return !strstr(p, "..");
}

/* 1+ characters of [0-9A-Za-z-] separated by '.', up to the end or the byte in stop. */
static const char *semver_idents(const char *p, char stop) {
        for (;;) {
                const char *start = p;

                while (ascii_alnum(*p) || *p == '-')
                        p++;
                if (p == start)
                        return NULL;
                if (*p != '.')
                        return *p == stop || !*p ? p : NULL;
                p++;
        }
}

bool cm_helm_version_valid(const char *s) {
        const char *p;

        if (!s || strlen(s) > CM_HELM_VERSION_MAX)
                return false;
        p = s + (s[0] == 'v');
        /* MAJOR.MINOR.PATCH, each a number. */
        for (int part = 0; part < 3; part++) {
                const char *start = p;

                while (ascii_digit(*p))
                        p++;
                if (p == start || p - start > 10)
                        return false;
                if (part < 2 && *p++ != '.')
                        return false;
        }
        if (*p == '-' && !(p = semver_idents(p + 1, '+')))
                return false;
        if (*p == '+' && !(p = semver_idents(p + 1, 0)))
                return false;
        return !*p;
}

/* host, IPv4 or [IPv6], then an optional :port. */
static bool url_authority_valid(const char *p, size_t n) {
        size_t i = 0, port_start;

        if (n == 0)
                return false;
        if (p[0] == '[') {
                for (i = 1; i < n && p[i] != ']'; i++)
                        if (!ascii_alnum(p[i]) && p[i] != ':' && p[i] != '.')
                                return false;
                if (i >= n || i == 1)
                        return false;
                i++;
        } else {
                if (!ascii_alnum(p[0]))
                        return false;
                while (i < n && (ascii_alnum(p[i]) || p[i] == '.' || p[i] == '-'))
                        i++;
        }
        if (i == n)
                return true;
        if (p[i] != ':')
                return false;
        port_start = ++i;
        while (i < n && ascii_digit(p[i]))
                i++;
        return i == n && i > port_start && i - port_start <= 5;
}

bool cm_helm_repo_url_valid(const char *s) {
        const char *p, *e;

        if (!s || strlen(s) > CM_HELM_REPO_URL_MAX)
                return false;
        if (strneq(s, "https://", 8))
                p = s + 8;
        else if (strneq(s, "http://", 7))
                p = s + 7;
        else
                return false;
        e = strchrnul(p, '/');
        /* No user:password@ (it would stand in argv and in messages), no query, no fragment. */
        if (!url_authority_valid(p, (size_t) (e - p)))
                return false;
        for (; *e; e++)
                if (!ascii_alnum(*e) && !strchr("/._~%+-", *e))
                        return false;
        return true;
}

_printf_(3, 4) static int check_fail(char *error, size_t size, const char *fmt, ...) {
        va_list ap;

        if (error && size > 0) {
                va_start(ap, fmt);
                (void) vsnprintf(error, size, fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

int cm_helm_release_check(const struct cm_helm_release *rel, bool with_chart, char *error,
                          size_t error_size) {
        if (!rel)
                return check_fail(error, error_size, "no release given");
        if (!cm_helm_release_name_valid(rel->name))
                return check_fail(
                        error, error_size,
                        "invalid release name: 1-%u lowercase letters, digits, '-' and '.', starting "
                        "and ending with a letter or digit",
                        CM_HELM_RELEASE_MAX);
        if (!cm_helm_namespace_valid(rel->namespace))
                return check_fail(error, error_size,
                                  "invalid namespace: a DNS label (1-%u lowercase letters, digits and '-', "
                                  "starting and ending with a letter or digit)",
                                  CM_HELM_NAMESPACE_MAX);
        if (!with_chart)
                return 0;
        if (isempty(rel->chart))
                return check_fail(error, error_size, "no chart given");
        if (rel->repo) {
                if (strneq(rel->chart, "oci://", 6))
                        return check_fail(error, error_size, "an oci:// chart takes no repository URL");
                if (!cm_helm_repo_url_valid(rel->repo))
                        return check_fail(error, error_size,
                                          "invalid chart repository URL: an https:// or http:// URL without "
                                          "credentials, query or fragment (or an oci:// chart instead)");
                if (!cm_helm_chart_name_valid(rel->chart))
                        return check_fail(error, error_size,
                                          "invalid chart name: letters, digits, '.', '_' and '-', starting "
                                          "with a letter or digit");
        } else if (!cm_helm_oci_ref_valid(rel->chart))
                return check_fail(error, error_size,
                                  "invalid chart: without a repository URL the chart must be an "
                                  "oci://registry/path/name reference (no tag or digest)");
        if (!cm_helm_version_valid(rel->version))
                return check_fail(error, error_size,
                                  "invalid chart version: an exact version such as 1.2.3 is needed");
        return 0;
}

/* ---- results and messages ------------------------------------------------------------------- */

void cm_helm_result_done(struct cm_helm_result *r) {
        if (!r)
                return;
        if (r->manifest) {
                cm_wipe(r->manifest, r->manifest_len);
                free(r->manifest);
        }
        *r = (struct cm_helm_result){};
}

_printf_(3, 4) static int helm_fail(struct cm_helm_result *ret, int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(ret->message, sizeof(ret->message), fmt, ap);
        va_end(ap);
        (void) cm_redact(ret->message);
        return r;
}

/* Case-insensitive search for any of the NULL-terminated needles. */
static bool has_any(const char *text, const char *const *needles) {
        for (; *needles; needles++)
                if (strcasestr(text, *needles))
                        return true;
        return false;
}

static int error_errno(const char *t) {
        static const char *const busy[] = { "another operation (install/upgrade/rollback) is in progress",
                                            NULL };
        static const char *const cluster_unreachable[] = { "kubernetes cluster unreachable", NULL };
        static const char *const repo_unreachable[] = {
                "is not a valid chart repository or cannot be reached", NULL
        };
        static const char *const http_404[] = { "404 not found", "404 file not found", "status code 404",
                                                "404: not found", NULL };
        static const char *const not_found[] = { "release: not found", "no chart version found",
                                                 "no chart name found", "manifest unknown", NULL };
        static const char *const timeout[] = { "timed out waiting for the condition",
                                               "context deadline exceeded", NULL };
        static const char *const unreachable[] = { "connection refused", "no such host",
                                                   "i/o timeout",        "network is unreachable",
                                                   "no route to host",   NULL };

        if (has_any(t, busy))
                return -EBUSY;
        if (has_any(t, cluster_unreachable))
                return -EHOSTUNREACH;
        if (has_any(t, http_404) || has_any(t, not_found))
                return -ENOENT;
        /* chart "x" version "y" not found in https://... repository */
        if (strcasestr(t, "\" not found in ") && strcasestr(t, " repository"))
                return -ENOENT;
        if (has_any(t, repo_unreachable))
                return -EHOSTUNREACH;
        if (has_any(t, timeout))
                return -ETIMEDOUT;
        if (has_any(t, unreachable))
                return -EHOSTUNREACH;
        return -EIO;
}

/*
 * Copies src (n bytes) to dst (size bytes; may be src: it never writes ahead of what it read): whitespace
 * runs become one ' ', control characters '?'.
 */
static size_t clean_text(char *dst, size_t size, const char *src, size_t n) {
        size_t o = 0;
        bool space = true; /* drops leading blanks */

        for (size_t i = 0; i < n && o + 1 < size; i++) {
                unsigned char c = (unsigned char) src[i];

                if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
                        if (!space)
                                dst[o++] = ' ';
                        space = true;
                        continue;
                }
                dst[o++] = c < 0x20 || c == 0x7f ? '?' : (char) c;
                space = false;
        }
        while (o > 0 && dst[o - 1] == ' ')
                o--;
        dst[o] = 0;
        return o;
}

/* Cuts text to fit in size bytes at a UTF-8 character boundary, ending it with an ellipsis. */
static void fit_text(char *dst, size_t size, const char *src) {
        size_t n = strlen(src), ell = strlen(ELLIPSIS);

        if (size == 0)
                return;
        if (n < size) {
                memcpy(dst, src, n + 1);
                return;
        }
        if (size <= ell) {
                dst[0] = 0;
                return;
        }
        n = size - 1 - ell;
        while (n > 0 && ((unsigned char) src[n] & 0xC0) == 0x80)
                n--;
        memcpy(dst, src, n);
        memcpy(dst + n, ELLIPSIS, ell + 1);
}

int cm_helm_error_parse(const char *text, char *message, size_t size) {
        const char *start = NULL, *p;
        _cleanup_free_ char *tmp = NULL;
        size_t n, keep;
        int r;

        if (!text)
                text = "";
        /* helm ends with "Error: <what went wrong>", which may take several lines. */
        for (p = text; (p = strstr(p, "Error: ")); p++)
                if (p == text || p[-1] == '\n')
                        start = p + strlen("Error: ");
        n = strlen(start ?: text);
        /* Without one, the end of the output says most. */
        keep = MIN(n, (size_t) CM_HELM_MESSAGE_MAX * 4);
        p = start ? start : text + n - keep;
        n = start ? MIN(n, keep) : keep;

        tmp = malloc(n + 1);
        if (!tmp) {
                fit_text(message, size, "helm failed (out of memory reading its error)");
                return -EIO;
        }
        memcpy(tmp, p, n);
        tmp[n] = 0;
        /* Redacted before cleaning: a PEM block is recognised by its lines. */
        (void) cm_redact(tmp);
        (void) clean_text(tmp, n + 1, tmp, n);
        r = error_errno(tmp);
        fit_text(message, size, tmp[0] ? tmp : "helm failed without saying why");
        cm_wipe(tmp, n);
        return r;
}

/* ---- reading releases -------------------------------------------------------------------------- */

/* Copies the string member key of o (absent or null: "") into buf; -EINVAL for another type. */
static int copy_member(const json_t *o, const char *key, bool required, char *buf, size_t size) {
        const json_t *v = json_object_get(o, key);

        if (!v || json_is_null(v)) {
                buf[0] = 0;
                return required ? -EINVAL : 0;
        }
        if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
                return -EINVAL;
        /* Names and versions: shown in statuses and logs, so no control characters. */
        for (const char *c = json_string_value(v); *c; c++)
                if ((unsigned char) *c < 0x20 || *c == 0x7f)
                        return -EINVAL;
        return cm_strlcpy(buf, json_string_value(v), size) < 0 ? -ENOBUFS : 0;
}

static int manifest_build(const json_t *doc, char **ret, size_t *ret_len) {
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT(0);
        const json_t *m = json_object_get(doc, "manifest"), *hooks = json_object_get(doc, "hooks"), *hook;
        size_t i;
        int r;

        strbuf_init_secret(&sb, CM_HELM_OUTPUT_MAX);
        if ((m && !json_is_string(m)) || (hooks && !json_is_null(hooks) && !json_is_array(hooks)))
                return -EINVAL;
        if (m && (r = strbuf_add(&sb, json_string_value(m), json_string_length(m))) < 0)
                return r;
        json_array_foreach(hooks, i, hook) {
                const json_t *path = json_object_get(hook, "path"), *hm = json_object_get(hook, "manifest");

                if (!json_is_string(path) || !json_is_string(hm))
                        return -EINVAL;
                if (sb.len > 0 && sb.buf[sb.len - 1] != '\n' && (r = strbuf_addch(&sb, '\n')) < 0)
                        return r;
                if ((r = strbuf_addl(&sb, "---\n# Source: ")) < 0 ||
                    (r = strbuf_add(&sb, json_string_value(path), json_string_length(path))) < 0 ||
                    (r = strbuf_addch(&sb, '\n')) < 0 ||
                    (r = strbuf_add(&sb, json_string_value(hm), json_string_length(hm))) < 0)
                        return r;
        }
        *ret = strbuf_detach(&sb, ret_len);
        return *ret ? 0 : -ENOMEM;
}

int cm_helm_release_parse(const char *text, size_t len, bool with_manifest, struct cm_helm_result *ret) {
        struct cm_helm_result *r = NULL;
        json_t *doc = NULL;
        const json_t *info, *meta, *version;
        int k;

        if (!text || len > CM_HELM_OUTPUT_MAX)
                return -EINVAL;
        r = new0(struct cm_helm_result, 1);
        if (!r)
                return -ENOMEM;
        doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
        info = json_object_get(doc, "info");
        meta = json_object_get(json_object_get(doc, "chart"), "metadata");
        version = json_object_get(doc, "version");
        if (!json_is_object(doc) || !json_is_object(info) || (meta && !json_is_object(meta)) ||
            !json_is_integer(version) || json_integer_value(version) < 0) {
                k = -EINVAL;
                goto out;
        }
        r->revision = json_integer_value(version);
        if ((k = copy_member(doc, "name", true, r->release, sizeof(r->release))) < 0 ||
            (k = copy_member(doc, "namespace", false, r->namespace, sizeof(r->namespace))) < 0 ||
            (k = copy_member(info, "status", true, r->status, sizeof(r->status))) < 0 ||
            (k = copy_member(meta, "name", false, r->chart, sizeof(r->chart))) < 0 ||
            (k = copy_member(meta, "version", false, r->chart_version, sizeof(r->chart_version))) < 0 ||
            (k = copy_member(meta, "appVersion", false, r->app_version, sizeof(r->app_version))) < 0)
                goto out;
        if (with_manifest && (k = manifest_build(doc, &r->manifest, &r->manifest_len)) < 0)
                goto out;

        memcpy(ret->release, r->release, sizeof(r->release));
        memcpy(ret->namespace, r->namespace, sizeof(r->namespace));
        ret->revision = r->revision;
        memcpy(ret->status, r->status, sizeof(r->status));
        memcpy(ret->chart, r->chart, sizeof(r->chart));
        memcpy(ret->chart_version, r->chart_version, sizeof(r->chart_version));
        memcpy(ret->app_version, r->app_version, sizeof(r->app_version));
        if (with_manifest) {
                ret->manifest = TAKE_PTR(r->manifest);
                ret->manifest_len = r->manifest_len;
        }
        k = 0;
out:
        cm_json_wipe_and_free(&doc);
        cm_helm_result_done(r);
        free(r);
        return k;
}

/* ---- the binary ------------------------------------------------------------------------------- */

static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static char default_binary[PATH_MAX];

static void default_binary_init(void) {
        cm_program_default_path(HELM_BASENAME, true, default_binary, sizeof(default_binary));
}

const char *cm_helm_default_binary(void) {
        (void) pthread_once(&default_once, default_binary_init);
        return default_binary;
}

/* ---- argv and environment ---------------------------------------------------------------------- */

struct strv {
        char *v[ARGV_MAX + 1]; /* NULL-terminated */
        size_t n;
        int error;
};

_printf_(2, 3) static void strv_addf(struct strv *s, const char *fmt, ...) {
        va_list ap;
        char *p = NULL;
        int k;

        if (s->error)
                return;
        if (s->n >= ARGV_MAX) {
                s->error = -E2BIG;
                return;
        }
        va_start(ap, fmt);
        k = vasprintf(&p, fmt, ap);
        va_end(ap);
        if (k < 0) {
                s->error = -ENOMEM;
                return;
        }
        s->v[s->n++] = p;
}

static void strv_done(struct strv *s) {
        for (size_t i = 0; i < s->n; i++)
                free(s->v[i]);
        *s = (struct strv){};
}

static const char *action_verb(enum helm_action a) {
        switch (a) {
        case HELM_UPGRADE:
                return "upgrade --install";
        case HELM_DRY_RUN:
                return "upgrade --install --dry-run";
        case HELM_TEMPLATE:
                return "template";
        case HELM_UNINSTALL:
                return "uninstall";
        case HELM_STATUS:
                return "status";
        }
        return "?";
}

static void argv_build(struct strv *s, enum helm_action a, const char *bin,
                       const struct cm_helm_release *rel, unsigned timeout_sec, bool with_values,
                       bool with_kubeconfig) {
        bool chart = a == HELM_UPGRADE || a == HELM_DRY_RUN || a == HELM_TEMPLATE;

        strv_addf(s, "%s", bin);
        switch (a) {
        case HELM_UPGRADE:
        case HELM_DRY_RUN:
                strv_addf(s, "upgrade");
                strv_addf(s, "--install");
                break;
        case HELM_TEMPLATE:
                strv_addf(s, "template");
                break;
        case HELM_UNINSTALL:
                strv_addf(s, "uninstall");
                break;
        case HELM_STATUS:
                strv_addf(s, "status");
                break;
        }
        if (with_kubeconfig)
                strv_addf(s, "--kubeconfig=/proc/self/fd/%d", CM_HELM_KUBECONFIG_FD);
        strv_addf(s, "--namespace=%s", rel->namespace);
        if (chart) {
                strv_addf(s, "--version=%s", rel->version);
                if (rel->repo)
                        strv_addf(s, "--repo=%s", rel->repo);
                /* Exactly the given values over the chart's defaults, never the previous release's. */
                if (with_values)
                        strv_addf(s, "--values=-");
        }
        switch (a) {
        case HELM_UPGRADE:
                strv_addf(s, "--create-namespace");
                strv_addf(s, "--reset-values");
                strv_addf(s, "--atomic");
                strv_addf(s, "--wait");
                strv_addf(s, "--timeout=%us", timeout_sec);
                strv_addf(s, "--history-max=%d", CM_HELM_HISTORY_MAX);
                strv_addf(s, "--output=json");
                break;
        case HELM_DRY_RUN:
                strv_addf(s, "--create-namespace");
                strv_addf(s, "--reset-values");
                strv_addf(s, "--dry-run=server");
                strv_addf(s, "--timeout=%us", timeout_sec);
                strv_addf(s, "--output=json");
                break;
        case HELM_TEMPLATE:
                /* install applies the chart's crds/ too */
                strv_addf(s, "--include-crds");
                break;
        case HELM_UNINSTALL:
                strv_addf(s, "--wait");
                strv_addf(s, "--timeout=%us", timeout_sec);
                break;
        case HELM_STATUS:
                strv_addf(s, "--output=json");
                break;
        }
        /* Everything after this is a name, whatever it starts with. */
        strv_addf(s, "--");
        strv_addf(s, "%s", rel->name);
        if (chart)
                strv_addf(s, "%s", rel->chart);
}

static void env_build(struct strv *s, const char *dir) {
        strv_addf(s, "PATH=%s", CHILD_PATH);
        strv_addf(s, "HOME=%s/home", dir);
        strv_addf(s, "TMPDIR=%s/tmp", dir);
        strv_addf(s, "HELM_CACHE_HOME=%s/cache", dir);
        strv_addf(s, "HELM_CONFIG_HOME=%s/config", dir);
        strv_addf(s, "HELM_DATA_HOME=%s/data", dir);
        strv_addf(s, "HELM_DRIVER=secret");
        strv_addf(s, "HELM_NO_PLUGINS=1");
}

/* An absolute path of printable ASCII that leaves room for the subdirectories. */
static bool dir_valid(const char *d) {
        if (!d || d[0] != '/' || strlen(d) > PATH_MAX - 32)
                return false;
        for (const char *p = d; *p; p++)
                if ((unsigned char) *p < 0x20 || (unsigned char) *p >= 0x7f)
                        return false;
        return true;
}

/*
 * Creates the helm directory and its subdirectories (0700). The child works in the empty one: helm
 * looks for a chart name as a path in its working directory before it asks the repository.
 */
static int child_dirs(const char *dir) {
        char path[PATH_MAX];
        int r;

        if ((r = cm_mkdir_p(dir, 0700)) < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(helm_subdirs); i++) {
                if ((r = cm_snprintf(path, sizeof(path), "%s/%s", dir, helm_subdirs[i])) < 0)
                        return r;
                if (mkdir(path, 0700) < 0 && errno != EEXIST)
                        return negative_errno();
        }
        return 0;
}

/* ---- the child -------------------------------------------------------------------------------- */

/* A memfd holding n bytes of data, at offset 0, 0600. */
static int memfd_with(const char *name, const void *data, size_t n, int *ret) {
        const char *p = data;
        int fd, r;

        fd = memfd_create(name, MFD_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        if (fchmod(fd, 0600) < 0)
                goto fail;
        while (n > 0) {
                ssize_t k = write(fd, p, n);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        goto fail;
                p += k;
                n -= (size_t) k;
        }
        if (lseek(fd, 0, SEEK_SET) < 0)
                goto fail;
        *ret = fd;
        return 0;
fail:
        r = negative_errno();
        close(fd);
        return r;
}

/* Empties a memfd (its pages go at once, whoever else still holds it) and closes it. */
static void memfd_drop(int *fd) {
        if (*fd < 0)
                return;
        (void) !ftruncate(*fd, 0);
        close(*fd);
        *fd = -1;
}

struct child {
        char *const *argv;
        char *const *envp;
        const char *cwd;
        int stdin_fd; /* -1: /dev/null */
        int kube_fd; /* -1: none; becomes CM_HELM_KUBECONFIG_FD */
        uint64_t deadline; /* monotonic */
        uint64_t grace;
        bool (*should_stop)(void *userdata);
        void *userdata;

        /* What came back. */
        struct strbuf out; /* secret: the values and what the chart made of them */
        char *err; /* the last CM_HELM_STDERR_MAX bytes of stderr, NUL-terminated */
        size_t err_len;
        int exec_errno;
        int status; /* exit code, 128+N for signal N */
        bool out_overflow, out_nomem, cancelled, timed_out;
};

/* Marks every descriptor from first on close-on-exec: only 0..first-1 reach the program. */
static void child_cloexec_from(int first) {
        if (close_range((unsigned) first, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
                return;
        /* Kernels before 5.11: the descriptors a process of ours may hold. */
        for (int fd = first; fd < 65536; fd++)
                (void) fcntl(fd, F_SETFD, FD_CLOEXEC);
}

static _noreturn_ void child_exec(const struct child *c, int in_fd, int out_fd, int err_fd, int errpipe,
                                  pid_t parent) {
        struct sigaction sa = { .sa_handler = SIG_DFL };
        int fds[4] = { in_fd, out_fd, err_fd, c->kube_fd }, n = c->kube_fd >= 0 ? 4 : 3, err;
        sigset_t empty;

        (void) setpgid(0, 0);
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
                _exit(127); /* the service is already gone */
        for (int sig = 1; sig < NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        (void) sigaction(sig, &sa, NULL);
        sigemptyset(&empty);
        (void) sigprocmask(SIG_SETMASK, &empty, NULL);
        /*
         * Everything out of the way of 0..3 first (close-on-exec; the errno pipe too, which may sit
         * there), then onto them (dup2 clears close-on-exec). Descriptors the service inherited without
         * close-on-exec (an fd 3 of whoever started it) stay behind.
         */
        if ((errpipe = fcntl(errpipe, F_DUPFD_CLOEXEC, 10)) < 0)
                _exit(127);
        for (int i = 0; i < n; i++)
                if ((fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 10)) < 0)
                        goto fail;
        for (int i = 0; i < n; i++)
                if (dup2(fds[i], i) < 0)
                        goto fail;
        child_cloexec_from(n);
        if (c->cwd && chdir(c->cwd) < 0)
                goto fail;
        execve(c->argv[0], c->argv, c->envp);
fail:
        err = errno;
        (void) !write(errpipe, &err, sizeof(err));
        _exit(127);
}

static void err_append(struct child *c, const char *data, size_t n) {
        if (n >= CM_HELM_STDERR_MAX) {
                data += n - CM_HELM_STDERR_MAX;
                n = CM_HELM_STDERR_MAX;
        }
        if (c->err_len + n > CM_HELM_STDERR_MAX) {
                size_t keep = CM_HELM_STDERR_MAX - n;

                memmove(c->err, c->err + c->err_len - keep, keep);
                c->err_len = keep;
        }
        memcpy(c->err + c->err_len, data, n);
        c->err_len += n;
        c->err[c->err_len] = 0;
}

/* Stops the child when asked or past its deadline: SIGTERM to its group, SIGKILL after the grace. */
static void child_check(struct child *c, pid_t pid, uint64_t *kill_at) {
        uint64_t now = cm_mono_usec();

        if (!c->cancelled && !c->timed_out) {
                if (c->should_stop && c->should_stop(c->userdata))
                        c->cancelled = true;
                else if (now >= c->deadline)
                        c->timed_out = true;
                if (c->cancelled || c->timed_out) {
                        (void) kill(-pid, SIGTERM);
                        *kill_at = now + c->grace;
                }
        } else if (*kill_at && now >= *kill_at) {
                (void) kill(-pid, SIGKILL);
                *kill_at = 0;
        }
}

/* Reads the child's stdout and stderr to their ends, stoppable. */
static void child_read(struct child *c, pid_t pid, int out_fd, int err_fd, uint64_t *kill_at) {
        int fds[2] = { out_fd, err_fd };

        while (fds[0] >= 0 || fds[1] >= 0) {
                struct pollfd pfd[2] = { { .fd = fds[0], .events = POLLIN },
                                         { .fd = fds[1], .events = POLLIN } };
                char chunk[16384];
                int pr;

                child_check(c, pid, kill_at);
                pr = poll(pfd, 2, TICK_MSEC);
                if (pr < 0 && errno != EINTR)
                        return;
                if (pr <= 0)
                        continue;
                for (int i = 0; i < 2; i++) {
                        ssize_t n;

                        if (fds[i] < 0 || !pfd[i].revents)
                                continue;
                        n = read(fds[i], chunk, sizeof(chunk));
                        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                                continue;
                        if (n <= 0) {
                                fds[i] = -1; /* the caller closes it */
                                continue;
                        }
                        if (i == 1)
                                err_append(c, chunk, (size_t) n);
                        else if (!c->out_overflow && !c->out_nomem) {
                                int r = strbuf_add(&c->out, chunk, (size_t) n);

                                c->out_overflow = r == -ENOBUFS;
                                c->out_nomem = r == -ENOMEM;
                        }
                }
                cm_wipe(chunk, sizeof(chunk));
        }
}

/* Waits for the child's end, stoppable; then no straggler of its group is left. */
static int child_wait(struct child *c, pid_t pid, uint64_t *kill_at) {
        int pidfd = (int) syscall(SYS_pidfd_open, pid, 0), status = 0, r = 0;

        for (;;) {
                pid_t w = waitpid(pid, &status, WNOHANG);

                if (w == pid)
                        break;
                if (w < 0 && errno != EINTR) {
                        r = negative_errno();
                        break;
                }
                child_check(c, pid, kill_at);
                if (pidfd >= 0) {
                        struct pollfd pfd = { .fd = pidfd, .events = POLLIN };
                        (void) poll(&pfd, 1, TICK_MSEC);
                } else
                        usleep(20000);
        }
        if (pidfd >= 0)
                close(pidfd);
        (void) kill(-pid, SIGKILL);
        if (r < 0)
                return r;
        if (WIFEXITED(status))
                c->status = WEXITSTATUS(status);
        else if (WIFSIGNALED(status))
                c->status = 128 + WTERMSIG(status);
        else
                return -EIO;
        return 0;
}

/*
 * Runs the child to its end. 0 when it ran (c->status, cancelled, timed_out tell how it ended); a
 * negative errno when it could not be started (c->exec_errno set when execve failed) or waited for.
 */
static int child_run(struct child *c) {
        int outp[2] = { -1, -1 }, errp[2] = { -1, -1 }, ep[2] = { -1, -1 }, null_fd = -1, err = 0, r;
        uint64_t kill_at = 0;
        pid_t parent = getpid(), pid;
        ssize_t n;

        if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 || pipe2(ep, O_CLOEXEC) < 0) {
                r = negative_errno();
                goto out;
        }
        if (c->stdin_fd < 0 && (null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
                r = negative_errno();
                goto out;
        }
        pid = fork();
        if (pid < 0) {
                r = negative_errno();
                goto out;
        }
        if (pid == 0)
                child_exec(c, c->stdin_fd >= 0 ? c->stdin_fd : null_fd, outp[1], errp[1], ep[1], parent);

        close(outp[1]);
        close(errp[1]);
        close(ep[1]);
        outp[1] = errp[1] = ep[1] = -1;
        do
                n = read(ep[0], &err, sizeof(err));
        while (n < 0 && errno == EINTR);
        if (n == (ssize_t) sizeof(err)) {
                (void) waitpid(pid, NULL, 0);
                c->exec_errno = err ?: EIO;
                r = -c->exec_errno;
                goto out;
        }
        child_read(c, pid, outp[0], errp[0], &kill_at);
        r = child_wait(c, pid, &kill_at);
out:
        for (size_t i = 0; i < 2; i++) {
                if (outp[i] >= 0)
                        close(outp[i]);
                if (errp[i] >= 0)
                        close(errp[i]);
                if (ep[i] >= 0)
                        close(ep[i]);
        }
        if (null_fd >= 0)
                close(null_fd);
        return r;
}

/* ---- running helm ---------------------------------------------------------------------------- */

/* The values as compact JSON in a memfd; -EINVAL (with a message) when too large. */
static int values_memfd(const json_t *values, int *ret) {
        size_t n = json_dumpb(values, NULL, 0, JSON_COMPACT);
        char *buf;
        int r;

        if (n == 0)
                return -ENOMEM;
        if (n > CM_HELM_VALUES_MAX)
                return -EFBIG;
        /* json_dumpb() writes straight into buf: no copy of the values is left in freed memory. */
        buf = malloc(n);
        if (!buf)
                return -ENOMEM;
        if (json_dumpb(values, buf, n, JSON_COMPACT) != n)
                r = -EIO;
        else
                r = memfd_with("helm-values", buf, n, ret);
        cm_wipe(buf, n);
        free(buf);
        return r;
}

static int helm_run(const struct cm_helm *h, enum helm_action a, const struct cm_helm_release *rel,
                    const json_t *values, struct cm_helm_result *ret) {
        struct strv args = {}, env = {};
        struct child c = { .stdin_fd = -1, .kube_fd = -1 };
        char bin[PATH_MAX], what[256], cwd[PATH_MAX], error[256];
        bool chart;
        unsigned timeout;
        uint64_t budget;
        int r;

        cm_helm_result_done(ret);
        if (!h)
                return helm_fail(ret, -EINVAL, "helm: no settings given");
        if (a == HELM_TEMPLATE && h->kubeconfig)
                a = HELM_DRY_RUN;
        chart = a == HELM_UPGRADE || a == HELM_DRY_RUN || a == HELM_TEMPLATE;
        if (cm_helm_release_check(rel, chart, error, sizeof(error)) < 0)
                return helm_fail(ret, -EINVAL, "helm %s: %s", action_verb(a), error);
        /* Name and namespace are checked: they are safe to show. */
        (void) cm_snprintf(what, sizeof(what), "helm %s of release \"%s\" in namespace \"%s\"",
                           action_verb(a), rel->name, rel->namespace);
        if (!dir_valid(h->dir))
                return helm_fail(ret, -EINVAL, "%s: the helm directory must be an absolute path", what);
        timeout = h->timeout_sec ?: CM_HELM_TIMEOUT_DEFAULT_SEC;
        if (timeout > CM_HELM_TIMEOUT_MAX_SEC)
                return helm_fail(ret, -EINVAL, "%s: the timeout is longer than %u s", what,
                                 CM_HELM_TIMEOUT_MAX_SEC);
        if (a != HELM_TEMPLATE && (!h->kubeconfig || h->kubeconfig_len == 0))
                return helm_fail(ret, -EINVAL, "%s: no kubeconfig given", what);
        if (h->kubeconfig && h->kubeconfig_len > CM_KUBECONFIG_MAX)
                return helm_fail(ret, -EINVAL, "%s: the kubeconfig is larger than %u bytes", what,
                                 (unsigned) CM_KUBECONFIG_MAX);
        if (values && !json_is_object(values))
                return helm_fail(ret, -EINVAL, "%s: the values must be a JSON object", what);

        r = cm_program_resolve(isempty(h->binary) ? cm_helm_default_binary() : h->binary, bin, sizeof(bin));
        if (r < 0)
                return helm_fail(ret, -ENOEXEC, "%s: no helm binary at %s (%s): %s", what,
                                 isempty(h->binary) ? cm_helm_default_binary() : h->binary, strerror(-r),
                                 BUILD_HINT);
        r = child_dirs(h->dir);
        if (r < 0)
                return helm_fail(ret, r, "%s: cannot create the helm directory %s: %s", what, h->dir,
                                 strerror(-r));
        (void) cm_snprintf(cwd, sizeof(cwd), "%s/empty", h->dir);

        argv_build(&args, a, bin, rel, timeout, chart && values, !!h->kubeconfig);
        env_build(&env, h->dir);
        if (args.error || env.error) {
                r = helm_fail(ret, args.error ?: env.error, "%s: cannot build its command line", what);
                goto out;
        }
        c.err = malloc(CM_HELM_STDERR_MAX + 1);
        if (!c.err) {
                r = helm_fail(ret, -ENOMEM, "%s: out of memory", what);
                goto out;
        }
        c.err[0] = 0;
        strbuf_init_secret(&c.out, CM_HELM_OUTPUT_MAX);
        if (chart && values && (r = values_memfd(values, &c.stdin_fd)) < 0) {
                r = r == -EFBIG ? helm_fail(ret, -EINVAL, "%s: the values are larger than %u bytes", what,
                                            CM_HELM_VALUES_MAX)
                                : helm_fail(ret, r, "%s: cannot pass the values: %s", what, strerror(-r));
                goto out;
        }
        if (h->kubeconfig &&
            (r = memfd_with("helm-kubeconfig", h->kubeconfig, h->kubeconfig_len, &c.kube_fd)) < 0) {
                r = helm_fail(ret, r, "%s: cannot pass the kubeconfig: %s", what, strerror(-r));
                goto out;
        }

        c.argv = args.v;
        c.envp = env.v;
        c.cwd = cwd;
        c.should_stop = h->should_stop;
        c.userdata = h->userdata;
        /* An upgrade that fails waits once more while --atomic rolls it back. */
        budget = (a == HELM_UPGRADE ? 2 : 1) * (uint64_t) timeout * USEC_PER_SEC + DEADLINE_MARGIN_USEC;
        c.deadline = cm_mono_usec() + budget;
        c.grace = a == HELM_UPGRADE ? GRACE_UPGRADE_USEC : GRACE_USEC;

        r = child_run(&c);
        if (r < 0) {
                if (c.exec_errno)
                        r = helm_fail(ret, -ENOEXEC, "%s: cannot run %s: %s: %s", what, bin,
                                      strerror(c.exec_errno), BUILD_HINT);
                else
                        r = helm_fail(ret, r, "%s: cannot run helm: %s", what, strerror(-r));
                goto out;
        }
        if (c.cancelled) {
                r = helm_fail(ret, -ECANCELED, "%s: cancelled", what);
                goto out;
        }
        if (c.timed_out) {
                r = helm_fail(ret, -ETIMEDOUT,
                              "%s: helm did not finish within %" PRIu64 " s and was stopped", what,
                              budget / USEC_PER_SEC);
                goto out;
        }
        if (c.status != 0 && c.err_len == 0) {
                r = helm_fail(ret, -EIO, "%s: helm exited with status %d without saying why", what,
                              c.status);
                goto out;
        }
        if (c.status != 0) {
                char msg[CM_HELM_MESSAGE_MAX - 256];

                r = cm_helm_error_parse(c.err, msg, sizeof(msg));
                if (a == HELM_UNINSTALL && strstr(c.err, "release: not found")) {
                        (void) cm_strlcpy(ret->release, rel->name, sizeof(ret->release));
                        (void) cm_strlcpy(ret->namespace, rel->namespace, sizeof(ret->namespace));
                        ret->not_found = true;
                        r = 0;
                        goto out;
                }
                r = helm_fail(ret, r, "%s: %s", what, msg);
                goto out;
        }
        if (c.out_overflow) {
                r = helm_fail(ret, -EFBIG, "%s: helm's output is larger than %u bytes", what,
                              CM_HELM_OUTPUT_MAX);
                goto out;
        }
        if (c.out_nomem) {
                r = helm_fail(ret, -ENOMEM, "%s: out of memory reading helm's output", what);
                goto out;
        }

        switch (a) {
        case HELM_UPGRADE:
        case HELM_DRY_RUN:
        case HELM_STATUS:
                r = cm_helm_release_parse(c.out.buf ?: "", c.out.len, a != HELM_STATUS, ret);
                if (r == -ENOMEM)
                        r = helm_fail(ret, r, "%s: out of memory reading helm's answer", what);
                else if (r < 0)
                        r = helm_fail(ret, -EIO, "%s: helm answered something other than a release", what);
                break;
        case HELM_TEMPLATE:
                ret->manifest = strbuf_detach(&c.out, &ret->manifest_len);
                r = ret->manifest ? 0 : helm_fail(ret, -ENOMEM, "%s: out of memory", what);
                break;
        case HELM_UNINSTALL:
                (void) cm_strlcpy(ret->release, rel->name, sizeof(ret->release));
                (void) cm_strlcpy(ret->namespace, rel->namespace, sizeof(ret->namespace));
                (void) cm_strlcpy(ret->status, "uninstalled", sizeof(ret->status));
                r = 0;
                break;
        }
out:
        memfd_drop(&c.stdin_fd);
        memfd_drop(&c.kube_fd);
        strbuf_release(&c.out);
        if (c.err) {
                cm_wipe(c.err, c.err_len);
                free(c.err);
        }
        strv_done(&args);
        strv_done(&env);
        return r;
}

int cm_helm_upgrade_install(const struct cm_helm *h, const struct cm_helm_release *rel, const json_t *values,
                            struct cm_helm_result *ret) {
        return helm_run(h, HELM_UPGRADE, rel, values, ret);
}

int cm_helm_uninstall(const struct cm_helm *h, const struct cm_helm_release *rel,
                      struct cm_helm_result *ret) {
        return helm_run(h, HELM_UNINSTALL, rel, NULL, ret);
}

int cm_helm_status(const struct cm_helm *h, const struct cm_helm_release *rel, struct cm_helm_result *ret) {
        return helm_run(h, HELM_STATUS, rel, NULL, ret);
}

int cm_helm_template(const struct cm_helm *h, const struct cm_helm_release *rel, const json_t *values,
                     struct cm_helm_result *ret) {
        return helm_run(h, HELM_TEMPLATE, rel, values, ret);
}
