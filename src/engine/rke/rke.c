/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The rke engine's operations: validate a spec (rke.h's pure checks plus the Kubernetes version
 * against rke's list), apply (`rke up`), destroy (`rke remove --force`), snapshot/restore (`rke etcd
 * snapshot-save|snapshot-restore`) and certificate rotation (`rke cert rotate`), each in a private work
 * dir whose files are copied into the state vault while rke runs, after it ends and when it fails.
 */
#include "base/program.h"
#include "base/common.h"

#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include "api/documents.h"
#include "api/problem.h"
#include "base/fileio.h"
#include "base/secret.h"
#include "base/spawn.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "engine/engine.h"
#include "engine/rke/rke.h"
#include "vault/vault.h"

#define RKE_BASENAME "rke"
#define BUILD_HINT "build it with `make rke` (scripts/build-rke.sh), or point --rke-path at it"
#define VERSIONS_MAX 64
#define TICK_USEC (500 * USEC_PER_MSEC)
#define KUBECONFIG_MAX (1024 * 1024)

/* --- The binary and its versions --- */

static pthread_once_t path_once = PTHREAD_ONCE_INIT;
static char rke_path[PATH_MAX];
static bool path_set;

static void path_default(void) {
        if (!path_set)
                cm_program_default_path(RKE_BASENAME, true, rke_path, sizeof(rke_path));
}

int cm_engine_rke_set_path(const char *path) {
        if (isempty(path)) {
                path_set = false;
                path_default();
                return 0;
        }
        if (cm_strlcpy(rke_path, path, sizeof(rke_path)) < 0)
                return -ENAMETOOLONG;
        path_set = true;
        return 0;
}

const char *cm_engine_rke_path(void) {
        (void) pthread_once(&path_once, path_default);
        return rke_path;
}

/* The absolute path of the binary (a bare name is looked up in PATH); -ENOENT when there is none. */
static int rke_resolve(char *buf, size_t size) {
        return cm_program_resolve(cm_engine_rke_path(), buf, size);
}

struct lines_capture {
        char lines[VERSIONS_MAX][64];
        size_t n;
        bool bad;
        uint64_t deadline;
};

static void capture_line(void *userdata, const char *line, size_t n) {
        struct lines_capture *c = userdata;

        if (n == 0)
                return;
        if (c->n >= VERSIONS_MAX || n >= sizeof(c->lines[0]) || line[0] != 'v') {
                c->bad = true;
                return;
        }
        memcpy(c->lines[c->n], line, n);
        c->lines[c->n++][n] = 0;
}

static bool capture_should_stop(void *userdata) {
        const struct lines_capture *c = userdata;

        return cm_mono_usec() > c->deadline;
}

static int run_capture(const char *bin, bool all, struct lines_capture *c) {
        char *argv[] = { CM_UNCONST(char *, bin), CM_UNCONST(char *, "config"),
                         CM_UNCONST(char *, "--list-version"), all ? CM_UNCONST(char *, "--all") : NULL,
                         NULL };
        struct cm_spawn_opts o = {
                .argv = argv,
                .on_line = capture_line,
                .should_stop = capture_should_stop,
                .userdata = c,
                .kill_grace_usec = USEC_PER_SEC,
        };
        int r;

        c->deadline = cm_mono_usec() + 30 * USEC_PER_SEC;
        r = cm_spawn_run(&o);
        if (r < 0)
                return r;
        return r == 0 && !c->bad && c->n > 0 ? 0 : -EIO;
}

static pthread_mutex_t versions_lock = PTHREAD_MUTEX_INITIALIZER;
static char versions_for[PATH_MAX];
static struct lines_capture versions_cached, default_cached;

/* Fills the cache for the binary in use; versions_lock held. */
static int versions_load_locked(void) {
        char bin[PATH_MAX];
        int r;

        r = rke_resolve(bin, sizeof(bin));
        if (r < 0)
                return -ENOENT;
        if (versions_for[0] && streq(versions_for, bin))
                return 0;
        versions_cached = (struct lines_capture){};
        default_cached = (struct lines_capture){};
        r = run_capture(bin, true, &versions_cached);
        if (r >= 0)
                r = run_capture(bin, false, &default_cached);
        if (r == -ENOENT || r == -EACCES)
                return -ENOENT;
        if (r < 0)
                return -EIO;
        (void) cm_strlcpy(versions_for, bin, sizeof(versions_for));
        return 0;
}

int cm_engine_rke_versions(json_t **ret) {
        json_t *o = NULL, *list;
        int r;

        pthread_mutex_lock(&versions_lock);
        r = versions_load_locked();
        if (r >= 0) {
                list = json_array();
                for (size_t i = 0; list && i < versions_cached.n; i++)
                        if (json_array_append_new(list, json_string(versions_cached.lines[i])) < 0)
                                r = -ENOMEM;
                o = list ? json_pack("{s:s, s:o, s:s}", "engine", "rke", "versions", list, "default",
                                     default_cached.lines[0])
                         : NULL;
                if (!o)
                        r = -ENOMEM;
        }
        pthread_mutex_unlock(&versions_lock);
        if (r < 0) {
                json_decref(o);
                return r;
        }
        *ret = o;
        return 0;
}

/* 1 supported, 0 not (the list goes into buf), -ENOENT/-EIO when rke cannot tell. */
static int version_supported(const char *version, char *list, size_t size, char *default_version,
                             size_t dsize) {
        struct strbuf sb = STRBUF_INIT(size > 0 ? size - 1 : 0);
        int r;

        pthread_mutex_lock(&versions_lock);
        r = versions_load_locked();
        if (r >= 0) {
                r = 0;
                for (size_t i = 0; i < versions_cached.n; i++) {
                        if (version && streq(version, versions_cached.lines[i]))
                                r = 1;
                        if ((i > 0 && strbuf_adds(&sb, ", ") < 0) ||
                            strbuf_adds(&sb, versions_cached.lines[i]) < 0)
                                break;
                }
                if (default_version)
                        (void) cm_strlcpy(default_version, default_cached.lines[0], dsize);
        }
        pthread_mutex_unlock(&versions_lock);
        if (list)
                (void) cm_strlcpy(list, sb.buf ?: "", size);
        strbuf_release(&sb);
        return r;
}

static int rke_validate(const json_t *spec, struct cm_problem *p) {
        const char *kv = json_string_value(json_object_get(spec, "kubernetesVersion"));

        cm_rke_validate_spec(spec, p);
        if (!isempty(kv)) {
                char list[2048];
                int r = version_supported(kv, list, sizeof(list), NULL, 0);

                /* Without the binary the version cannot be checked here; apply says what is missing. */
                if (r == 0)
                        cm_problem_add(p, "spec.kubernetesVersion",
                                       "rke does not support '%s'; supported versions: %s (or leave it "
                                       "empty for rke's default)",
                                       strlen(kv) > 64 ? "<long version>" : kv, list);
        }
        return 0;
}

/* --- Work dir --- */

static int wipe_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) ftw;
        if (flag == FTW_DP || flag == FTW_D)
                return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
        if (flag == FTW_F && S_ISREG(st->st_mode) && st->st_size > 0) {
                int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);

                if (fd >= 0) {
                        static const char zeros[4096];
                        off_t left = st->st_size;

                        while (left > 0) {
                                ssize_t w = write(fd, zeros, (size_t) MIN(left, (off_t) sizeof(zeros)));

                                if (w <= 0)
                                        break;
                                left -= w;
                        }
                        (void) fdatasync(fd);
                        close(fd);
                }
        }
        return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

/* Overwrites every file with zeros and removes the tree. */
static int wipe_tree(const char *dir) {
        if (access(dir, F_OK) < 0)
                return errno == ENOENT ? 0 : negative_errno();
        if (nftw(dir, wipe_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
                return negative_errno();
        return 0;
}

static int write_private(const char *path, const void *data, size_t n) {
        const char *p = data;
        int fd, r = 0;

        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
        if (fd < 0)
                return negative_errno();
        while (n > 0) {
                ssize_t w = write(fd, p, n);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0) {
                        r = w < 0 ? negative_errno() : -EIO;
                        break;
                }
                p += w;
                n -= (size_t) w;
        }
        if (close(fd) < 0 && r == 0)
                r = negative_errno();
        return r;
}

static bool id_fits_path(const char *s) {
        if (isempty(s) || strlen(s) > 128 || s[0] == '.')
                return false;
        for (; *s; s++)
                if (!(strchr("-_.", *s) || (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
                      (*s >= 'A' && *s <= 'Z')))
                        return false;
        return true;
}

/* --- One run of rke --- */

/* The files rke writes next to cluster.yml, copied into the vault as they change. */
static const char *const tracked_names[] = { "cluster.rkestate", "kube_config_cluster.yml" };

struct tracked {
        const char *name;
        struct stat stored; /* what was last stored (or materialised) */
        struct stat pending; /* seen once, unchanged since: copied on the next look */
        bool has_stored, has_pending;
        char stored_sha[65];
};

struct run {
        struct cm_engine_ctx *ctx;
        char dir[PATH_MAX];
        struct tracked files[ELEMENTSOF(tracked_names)];
        uint64_t next_tick;
        char error[768];
        bool error_fatal;
        bool saw_connection_failure;
        bool saw_validation_failure;
        /* the first host rke could not set up (a warning before the generic fatal line) */
        char tunnel_host[128];
        char tunnel_reason[512];
        /* time spent copying files back while rke ran (service overhead) */
        uint64_t copy_usec;
        /* registry passwords in cluster.yml: masked should rke ever print one */
        const char *masked[CM_RKE_MAX_REGISTRIES];
        /* a restore began to tear the old cluster down (until then the nodes are as they were) */
        bool saw_cleanup;
};

static bool same_stat(const struct stat *a, const struct stat *b) {
        return a->st_ino == b->st_ino && a->st_size == b->st_size &&
               a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* "SHA256:<hex>" of the kube-ca certificate in an rkestate (public: identifies the CA in logs). */
static int kube_ca_fingerprint(const char *text, size_t n, char *buf, size_t size) {
        json_t *root = json_loadb(text, n, 0, NULL);
        const char *pem = json_string_value(json_object_get(
                json_object_get(json_object_get(json_object_get(root, "desiredState"), "certificatesBundle"),
                                "kube-ca"),
                "certificatePEM"));
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned md_len = 0;
        char hex[2 * EVP_MAX_MD_SIZE + 1];
        X509 *x = NULL;
        BIO *bio;
        int r = -ENOENT;

        if (pem && (bio = BIO_new_mem_buf(pem, -1))) {
                x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
                BIO_free(bio);
        }
        if (x && X509_digest(x, EVP_sha256(), md, &md_len) == 1) {
                cm_hex(md, md_len, hex);
                r = cm_snprintf(buf, size, "SHA256:%s", hex) < 0 ? -ENOBUFS : 0;
        }
        X509_free(x);
        json_decref(root);
        return r;
}

/* Copies one file of the work dir into the vault when it changed; final: rke has ended. */
static void copy_back(struct run *run, struct tracked *t, bool final) {
        char path[PATH_MAX + 64], sha[65];
        _cleanup_erase_free_ char *data = NULL;
        struct stat st;
        size_t n = 0;
        int r;

        if (cm_snprintf(path, sizeof(path), "%s/%s", run->dir, t->name) < 0 || lstat(path, &st) < 0 ||
            !S_ISREG(st.st_mode))
                return;
        if (t->has_stored && same_stat(&st, &t->stored))
                return;
        /* rke rewrites its files in place: a file is copied once it looks the same twice in a row. */
        if (!final && !(t->has_pending && same_stat(&st, &t->pending))) {
                t->pending = st;
                t->has_pending = true;
                return;
        }
        r = cm_read_file(path, CM_VAULT_DATA_MAX, true, &data, &n);
        if (r < 0) {
                cm_engine_ctx_log(run->ctx, "cannot read %s from the work dir: %s", t->name, strerror(-r));
                return;
        }
        if (streq(t->name, "cluster.rkestate")) {
                json_t *j = json_loadb(data, n, 0, NULL);
                bool ok = json_is_object(j);

                json_decref(j);
                if (!ok) {
                        if (final)
                                cm_engine_ctx_log(run->ctx, "not storing %s: rke left it incomplete",
                                                  t->name);
                        return; /* mid-write: the next look sees it whole */
                }
        }
        cm_sha256_hex(data, n, sha);
        if (t->has_stored && streq(sha, t->stored_sha)) {
                t->stored = st;
                return;
        }
        r = cm_engine_ctx_store_file(run->ctx, t->name, data, n);
        if (r < 0) {
                cm_engine_ctx_log(run->ctx, "cannot store %s in the state vault: %s", t->name, strerror(-r));
                return;
        }
        t->stored = st;
        t->has_stored = true;
        memcpy(t->stored_sha, sha, sizeof(sha));
        if (streq(t->name, "cluster.rkestate")) {
                char fp[128];

                if (kube_ca_fingerprint(data, n, fp, sizeof(fp)) >= 0)
                        cm_engine_ctx_log(run->ctx, "stored %s in the state vault (%zu bytes; kube-ca %s)",
                                          t->name, n, fp);
                else
                        cm_engine_ctx_log(run->ctx, "stored %s in the state vault (%zu bytes)", t->name, n);
        } else
                cm_engine_ctx_log(run->ctx, "stored %s in the state vault (%zu bytes)", t->name, n);
}

static void copy_back_all(struct run *run, bool final) {
        uint64_t t0 = cm_mono_usec();

        for (size_t i = 0; i < ELEMENTSOF(run->files); i++)
                copy_back(run, &run->files[i], final);
        run->copy_usec += cm_mono_usec() - t0;
}

static void run_tick(void *userdata) {
        struct run *run = userdata;
        uint64_t now = cm_mono_usec();

        if (now < run->next_tick)
                return;
        run->next_tick = now + TICK_USEC;
        copy_back_all(run, false);
}

static void run_on_line(void *userdata, const char *line, size_t n) {
        struct run *run = userdata;
        char red[4200], level[16], msg[sizeof(run->error)];
        int len = cm_rke_redact_line(line, n, red, sizeof(red));

        if (len < 0) {
                cm_engine_ctx_log(run->ctx, "rke: [a line with key material was dropped]");
                return;
        }
        for (size_t i = 0; i < ELEMENTSOF(run->masked); i++)
                cm_mask_secret(red, run->masked[i]);
        cm_engine_ctx_log(run->ctx, "rke: %s", red);
        if (cm_rke_line_is_connection_failure(red, (size_t) len))
                run->saw_connection_failure = true;
        if (strstr(red, "Cleaning old kubernetes cluster"))
                run->saw_cleanup = true;
        if (cm_rke_parse_line(red, (size_t) len, level, sizeof(level), msg, sizeof(msg))) {
                bool fatal = streq(level, "fatal");

                if (fatal || ((streq(level, "error")) && !run->error_fatal)) {
                        (void) cm_strlcpy(run->error, msg, sizeof(run->error));
                        run->error_fatal = fatal;
                }
                if (fatal && strstr(msg, "Failed to validate"))
                        run->saw_validation_failure = true;
                if (!run->tunnel_host[0])
                        (void) cm_rke_tunnel_failure(msg, run->tunnel_host, sizeof(run->tunnel_host),
                                                     run->tunnel_reason, sizeof(run->tunnel_reason));
        }
}

_printf_(3, 4) static int fail(struct cm_engine_result *ret, bool retryable, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(ret->message, sizeof(ret->message), fmt, ap);
        va_end(ap);
        ret->retryable = retryable;
        return -EIO;
}

/* Writes a vault file of the cluster into the work dir when it exists; records it as stored. */
static int materialise(struct run *run, struct tracked *t, bool *ret_found) {
        _cleanup_free_ char *data = NULL;
        char path[PATH_MAX + 64];
        size_t n = 0;
        int r;

        *ret_found = false;
        r = cm_engine_ctx_load_file(run->ctx, t->name, &data, &n);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (cm_snprintf(path, sizeof(path), "%s/%s", run->dir, t->name) < 0) {
                cm_vault_data_free(TAKE_PTR(data), n);
                return -ENAMETOOLONG;
        }
        r = write_private(path, data, n);
        if (r >= 0) {
                cm_sha256_hex(data, n, t->stored_sha);
                if (lstat(path, &t->stored) == 0)
                        t->has_stored = true;
                *ret_found = true;
                if (streq(t->name, "cluster.rkestate")) {
                        char fp[128];

                        if (kube_ca_fingerprint(data, n, fp, sizeof(fp)) >= 0)
                                cm_engine_ctx_log(run->ctx, "using %s from the state vault (kube-ca %s)",
                                                  t->name, fp);
                        else
                                cm_engine_ctx_log(run->ctx, "using %s from the state vault", t->name);
                } else
                        cm_engine_ctx_log(run->ctx, "using %s from the state vault", t->name);
        }
        cm_vault_data_free(TAKE_PTR(data), n);
        return r;
}

/* Writes the nodes' SSH keys into <dir>/ssh (0600). -ENOENT with the missing key's name in ret_missing. */
static int materialise_keys(struct run *run, const json_t *spec, const char **ret_missing) {
        const char *names[CM_RKE_MAX_NODES];
        size_t n = cm_rke_ssh_keys(spec, names, ELEMENTSOF(names));

        for (size_t i = 0; i < n; i++) {
                char vname[CM_VAULT_NAME_MAX + 1], path[PATH_MAX + 160];
                char *data = NULL;
                size_t dn = 0;
                int r;

                if (cm_snprintf(vname, sizeof(vname), "ssh/%s", names[i]) < 0 ||
                    cm_snprintf(path, sizeof(path), "%s/ssh/%s", run->dir, names[i]) < 0)
                        return -EINVAL;
                r = cm_engine_ctx_load_env_file(run->ctx, vname, &data, &dn);
                if (r == -ENOENT || r == -EINVAL) {
                        *ret_missing = names[i];
                        return -ENOENT;
                }
                if (r < 0)
                        return r;
                r = write_private(path, data, dn);
                cm_vault_data_free(data, dn);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Stores cluster.yml unless the vault already has these bytes. */
static int store_cluster_yml(struct run *run, const char *yml, size_t n) {
        char *cur = NULL;
        size_t cur_n = 0;
        int r;

        r = cm_engine_ctx_load_file(run->ctx, "cluster.yml", &cur, &cur_n);
        if (r >= 0) {
                bool same = cur_n == n && memcmp(cur, yml, n) == 0;

                cm_vault_data_free(cur, cur_n);
                if (same)
                        return 0;
        } else if (r != -ENOENT)
                return r;
        return cm_engine_ctx_store_file(run->ctx, "cluster.yml", yml, n);
}

static void build_status(struct run *run, const json_t *spec, struct cm_engine_result *ret) {
        const char *kv = json_string_value(json_object_get(spec, "kubernetesVersion"));
        char path[PATH_MAX + 64], server[512] = "", def[64] = "";
        _cleanup_erase_free_ char *kc = NULL;
        size_t kn = 0;
        json_t *st;

        if (cm_snprintf(path, sizeof(path), "%s/kube_config_cluster.yml", run->dir) > 0 &&
            cm_read_file(path, KUBECONFIG_MAX, true, &kc, &kn) >= 0)
                (void) cm_rke_kubeconfig_server(kc, kn, server, sizeof(server));
        if (isempty(kv)) {
                (void) version_supported(NULL, NULL, 0, def, sizeof(def));
                kv = def;
        }
        st = json_pack("{s:I}", "nodes",
                       (json_int_t) json_array_size(json_object_get(json_object_get(spec, "rke"), "nodes")));
        if (!st)
                return;
        if (server[0])
                (void) json_object_set_new(st, "endpoint", json_string(server));
        if (!isempty(kv))
                (void) json_object_set_new(st, "kubernetesVersion", json_string(kv));
        ret->status_json = json_dumps(st, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(st);
}

/*
 * Reads the password secrets of spec.rke.privateRegistries (the environment's `secret/<name>`) into
 * passwords[i] by registry index; the caller wipes them. -ENOENT with the name in ret_missing.
 */
static int load_registry_passwords(struct run *run, const json_t *spec, char **passwords, size_t *lens,
                                   const char **ret_missing) {
        const char *names[CM_RKE_MAX_REGISTRIES];
        size_t n = cm_rke_registry_secrets(spec, names, ELEMENTSOF(names));

        for (size_t i = 0; i < n; i++) {
                char vname[CM_VAULT_NAME_MAX + 1];
                int r;

                if (!names[i])
                        continue;
                if (cm_snprintf(vname, sizeof(vname), "secret/%s", names[i]) < 0)
                        return -EINVAL;
                r = cm_engine_ctx_load_env_file(run->ctx, vname, &passwords[i], &lens[i]);
                if (r == -ENOENT || r == -EINVAL) {
                        *ret_missing = names[i];
                        return -ENOENT;
                }
                if (r < 0)
                        return r;
                run->masked[i] = passwords[i];
        }
        return 0;
}

enum rke_action {
        RKE_UP,
        RKE_REMOVE,
        RKE_SNAPSHOT_SAVE,
        RKE_SNAPSHOT_RESTORE,
        RKE_CERT_ROTATE,
};

static const char *const action_verbs[] = {
        [RKE_UP] = "rke up",
        [RKE_REMOVE] = "rke remove",
        [RKE_SNAPSHOT_SAVE] = "rke etcd snapshot-save",
        [RKE_SNAPSHOT_RESTORE] = "rke etcd snapshot-restore",
        [RKE_CERT_ROTATE] = "rke cert rotate",
};

/* 2 + the most services of `cert rotate` (each --service NAME) + flags + NULL. */
#define ARGV_MAX 32

/* rke's command line for an action (bin and config are copied by pointer; params outlive argv). */
static int build_argv(enum rke_action a, char *bin, char *config, const json_t *params, char **argv,
                      struct cm_engine_result *ret) {
        size_t n = 0;

#define ARG(s) (argv[n++] = CM_UNCONST(char *, (s)))
        ARG(bin);
        switch (a) {
        case RKE_UP:
                ARG("up");
                break;
        case RKE_REMOVE:
                ARG("remove");
                ARG("--force");
                break;
        case RKE_SNAPSHOT_SAVE:
        case RKE_SNAPSHOT_RESTORE: {
                const char *name = json_string_value(
                        json_object_get(params, a == RKE_SNAPSHOT_SAVE ? "name" : "snapshot"));

                /* Validated when the request was accepted; checked again: it becomes an argument. */
                if (!name || !cm_snapshot_name_valid(name))
                        return fail(ret, false, "the operation has no valid snapshot name");
                ARG("etcd");
                ARG(a == RKE_SNAPSHOT_SAVE ? "snapshot-save" : "snapshot-restore");
                ARG("--name");
                ARG(name);
                break;
        }
        case RKE_CERT_ROTATE: {
                const json_t *svcs = json_object_get(params, "services"), *v;
                size_t i;

                ARG("cert");
                ARG("rotate");
                if (json_is_true(json_object_get(params, "rotateCA")))
                        ARG("--rotate-ca");
                json_array_foreach(svcs, i, v) {
                        const char *sv = json_string_value(v);

                        if (!sv || n + 4 >= ARGV_MAX || strchr(sv, '-') == sv)
                                return fail(ret, false, "the operation's service list is not valid");
                        ARG("--service");
                        ARG(sv);
                }
                break;
        }
        }
        ARG("--config");
        ARG(config);
        argv[n] = NULL;
#undef ARG
        return 0;
}

static int rke_run(struct cm_engine_ctx *ctx, enum rke_action action, struct cm_engine_result *ret) {
        const struct cm_cluster *c = cm_engine_ctx_cluster(ctx);
        const struct cm_operation *op = cm_engine_ctx_operation(ctx);
        const json_t *spec = cm_engine_ctx_spec(ctx), *params = cm_engine_ctx_params(ctx);
        const char *verb = action_verbs[action];
        bool destroy = action == RKE_REMOVE, on_running = action >= RKE_SNAPSHOT_SAVE;
        char bin[PATH_MAX], base[PATH_MAX], keydir[PATH_MAX + 16], config[PATH_MAX + 32];
        char env_path[PATH_MAX + 8], env_home[PATH_MAX + 8];
        char *argv[ARGV_MAX];
        char *passwords[CM_RKE_MAX_REGISTRIES] = {};
        char *state_before = NULL;
        size_t state_before_n = 0;
        size_t pw_len[CM_RKE_MAX_REGISTRIES] = {};
        _cleanup_erase_free_ char *yml = NULL;
        struct run run = { .ctx = ctx };
        const char *missing = NULL;
        bool had_kubeconfig = false, had_state = false, found;
        uint64_t t_start = cm_mono_usec(), t_spawn = 0, t_exit = 0, t_copied = 0;
        size_t yml_n = 0;
        int r, status;

        for (size_t i = 0; i < ELEMENTSOF(run.files); i++)
                run.files[i].name = tracked_names[i];
        if (rke_resolve(bin, sizeof(bin)) < 0)
                return fail(ret, false, "the rke binary '%s' is missing or not executable; " BUILD_HINT,
                            cm_engine_rke_path());
        if (!destroy) {
                const char *kv = json_string_value(json_object_get(spec, "kubernetesVersion"));
                char list[2048];

                if (!isempty(kv) && version_supported(kv, list, sizeof(list), NULL, 0) == 0)
                        return fail(ret, false, "rke does not support Kubernetes '%s'; supported: %s", kv,
                                    list);
        }
        if (!id_fits_path(op->id))
                return fail(ret, false, "operation id unfit for a path");
        if (cm_snprintf(base, sizeof(base), "%s/rke-runs", cm_engine_ctx_data_dir(ctx)) < 0 ||
            cm_snprintf(run.dir, sizeof(run.dir), "%s/%s", base, op->id) < 0)
                return fail(ret, false, "the data dir's path is too long");
        (void) cm_snprintf(keydir, sizeof(keydir), "%s/ssh", run.dir);
        (void) cm_snprintf(config, sizeof(config), "%s/cluster.yml", run.dir);
        r = build_argv(action, bin, config, params, argv, ret);
        if (r < 0)
                return r;
        r = cm_mkdir_p(base, 0700);
        if (r < 0)
                return fail(ret, true, "create the work dir '%s': %s", base, strerror(-r));
        (void) wipe_tree(run.dir); /* left over by a run that crashed */
        if (mkdir(run.dir, 0700) < 0)
                return fail(ret, true, "create the work dir: %s", strerror(errno));
        if (mkdir(keydir, 0700) < 0) {
                r = fail(ret, true, "create the work dir: %s", strerror(errno));
                goto out;
        }

        for (size_t i = 0; i < ELEMENTSOF(run.files); i++) {
                r = materialise(&run, &run.files[i], &found);
                if (r == -EOPNOTSUPP) {
                        r = fail(ret, false,
                                 "the rke engine needs the state vault, which this service runs "
                                 "without");
                        goto out;
                }
                if (r < 0) {
                        r = fail(ret, true, "read %s from the state vault: %s", run.files[i].name,
                                 strerror(-r));
                        goto out;
                }
                if (found && streq(run.files[i].name, "kube_config_cluster.yml"))
                        had_kubeconfig = true;
                if (found && streq(run.files[i].name, "cluster.rkestate"))
                        had_state = true;
        }
        if (action == RKE_SNAPSHOT_RESTORE && had_state) {
                r = cm_engine_ctx_load_file(ctx, "cluster.rkestate", &state_before, &state_before_n);
                if (r < 0) {
                        r = fail(ret, true, "read cluster.rkestate from the state vault: %s", strerror(-r));
                        goto out;
                }
        }
        if (on_running && !had_state) {
                r = fail(ret, false,
                         "cluster.rkestate is not in the state vault: cluster '%s' was never brought up by "
                         "this service, so %s has nothing to work on",
                         c->name, verb);
                goto out;
        }
        r = materialise_keys(&run, spec, &missing);
        if (r == -ENOENT && destroy && !had_kubeconfig) {
                cm_engine_ctx_log(ctx,
                                  "the SSH key '%s' is gone and the cluster never came up: nothing to "
                                  "remove from the nodes",
                                  missing);
                r = 0;
                goto out;
        }
        if (r == -ENOENT) {
                r = fail(ret, false,
                         "the SSH key '%s' does not exist in environment '%s'; create it with `clustermgmt "
                         "sshkey create %s --generate` (and authorise its public key on the nodes), then "
                         "apply again",
                         missing, c->env, missing);
                goto out;
        }
        if (r < 0) {
                r = fail(ret, r != -EOPNOTSUPP, "read the nodes' SSH keys from the state vault: %s",
                         strerror(-r));
                goto out;
        }

        r = load_registry_passwords(&run, spec, passwords, pw_len, &missing);
        if (r == -ENOENT) {
                r = fail(ret, false,
                         "the secret '%s' (a private registry's password) does not exist in environment "
                         "'%s'; "
                         "create it with `clustermgmt secret create %s --from-file FILE`, then apply again",
                         missing, c->env, missing);
                goto out;
        }
        if (r < 0) {
                r = fail(ret, r != -EOPNOTSUPP, "read the registries' passwords from the state vault: %s",
                         strerror(-r));
                goto out;
        }
        r = cm_rke_render(spec, c->name, keydir, (const char *const *) passwords, &yml, &yml_n);
        if (r == -ENOKEY) {
                r = fail(ret, false,
                         "a private registry's password secret is empty or not printable ASCII; store it "
                         "again with `clustermgmt secret update`");
                goto out;
        }
        if (r < 0) {
                r = fail(ret, false, "render cluster.yml: %s", strerror(-r));
                goto out;
        }
        r = write_private(config, yml, yml_n);
        if (r >= 0)
                r = store_cluster_yml(&run, yml, yml_n);
        if (r < 0) {
                r = fail(ret, true, "write cluster.yml: %s", strerror(-r));
                goto out;
        }

        {
                /* rke gets no variable of ours (tokens, keys): a PATH and a home in the work dir. */
                char *envp[] = { env_path, env_home, NULL };
                struct cm_engine_spawn_hooks hooks = { .on_line = run_on_line,
                                                       .tick = run_tick,
                                                       .userdata = &run };

                (void) cm_snprintf(env_path, sizeof(env_path), "PATH=%s",
                                   getenv("PATH") ?: "/usr/local/bin:/usr/bin:/bin");
                (void) cm_snprintf(env_home, sizeof(env_home), "HOME=%s", run.dir);
                cm_engine_ctx_log(ctx, "running %s for cluster %s (%zu nodes)", verb, c->name,
                                  json_array_size(json_object_get(json_object_get(spec, "rke"), "nodes")));
                run.next_tick = cm_mono_usec() + TICK_USEC;
                t_spawn = cm_mono_usec();
                status = cm_engine_ctx_spawn_hooked(ctx, argv, envp, &hooks);
                t_exit = cm_mono_usec();
        }
        copy_back_all(&run, true);
        t_copied = cm_mono_usec();

        if (status == -ECANCELED) {
                r = -ECANCELED;
                goto out;
        }
        if (status < 0) {
                r = fail(ret, true, "start %s: %s", verb, strerror(-status));
                goto out;
        }
        if (status != 0) {
                if (destroy && !had_kubeconfig && run.saw_connection_failure) {
                        cm_engine_ctx_log(ctx, "the nodes cannot be reached and the cluster never came up: "
                                               "nothing removed from the nodes");
                        r = 0;
                        goto out;
                }
                if (action == RKE_SNAPSHOT_RESTORE && !run.saw_cleanup && state_before) {
                        /*
                         * rke rewrites the state file (current state emptied) before it checks the
                         * snapshot, but touches no node until it cleans the old cluster up: a restore
                         * that failed before that leaves the cluster as it was, so its state is kept.
                         */
                        r = cm_engine_ctx_store_file(ctx, "cluster.rkestate", state_before, state_before_n);
                        if (r >= 0) {
                                cm_engine_ctx_log(ctx, "the restore failed before it changed any node: "
                                                       "cluster.rkestate from before it was stored again");
                                ret->untouched = true;
                        }
                }
                if (run.error[0] && run.tunnel_host[0])
                        /* rke's last line only says a host was dropped; its warning said why. */
                        r = fail(ret, !run.saw_validation_failure, "%s failed: %s; host %s: %s (%s)", verb,
                                 run.error, run.tunnel_host, cm_rke_tunnel_hint(run.tunnel_reason),
                                 run.tunnel_reason);
                else if (run.error[0])
                        r = fail(ret,
                                 !run.saw_validation_failure && (run.saw_connection_failure || status > 128),
                                 "%s failed: %s", verb, run.error);
                else
                        r = fail(ret, run.saw_connection_failure || status > 128,
                                 "%s failed with exit status %d", verb, status);
                goto out;
        }
        if (action == RKE_SNAPSHOT_SAVE) {
                json_t *res =
                        json_pack("{s:s}", "snapshot", json_string_value(json_object_get(params, "name")));

                ret->result_json = res ? json_dumps(res, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
                json_decref(res);
        } else if (!destroy)
                build_status(&run, spec, ret);
        cm_engine_ctx_log(ctx, "%s succeeded", verb);
        r = 0;
out:
        if (wipe_tree(run.dir) < 0)
                cm_engine_ctx_log(ctx, "could not remove the work dir completely");
        for (size_t i = 0; i < ELEMENTSOF(passwords); i++)
                cm_vault_data_free(passwords[i], pw_len[i]);
        cm_vault_data_free(state_before, state_before_n);
        if (t_spawn) {
                /* The service's own time around rke: work dir and files before, copies while and after. */
                uint64_t t_end = cm_mono_usec();

                cm_engine_ctx_log(ctx,
                                  "rke overhead: prepare %" PRIu64 " us, copy back %" PRIu64
                                  " us, clean up %" PRIu64 " us",
                                  t_spawn - t_start, run.copy_usec, t_end - MAX(t_copied, t_exit));
        }
        return r;
}

static int rke_apply(struct cm_engine_ctx *ctx, struct cm_engine_result *ret) {
        return rke_run(ctx, RKE_UP, ret);
}

static int rke_destroy(struct cm_engine_ctx *ctx, struct cm_engine_result *ret) {
        return rke_run(ctx, RKE_REMOVE, ret);
}

static int rke_snapshot(struct cm_engine_ctx *ctx, struct cm_engine_result *ret) {
        return rke_run(ctx, RKE_SNAPSHOT_SAVE, ret);
}

static int rke_restore(struct cm_engine_ctx *ctx, struct cm_engine_result *ret) {
        return rke_run(ctx, RKE_SNAPSHOT_RESTORE, ret);
}

static int rke_rotate_certificates(struct cm_engine_ctx *ctx, struct cm_engine_result *ret) {
        return rke_run(ctx, RKE_CERT_ROTATE, ret);
}

const struct cm_engine_ops cm_engine_rke_ops = {
        .name = "rke",
        .validate = rke_validate,
        .apply = rke_apply,
        .destroy = rke_destroy,
        .snapshot = rke_snapshot,
        .restore = rke_restore,
        .rotate_certificates = rke_rotate_certificates,
        .list_versions = cm_engine_rke_versions,
};
