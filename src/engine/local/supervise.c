/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The local engine's process registry: starting, stopping and adopting helpers, and the supervisor
 * thread that restarts a helper that exits on its own. See local_internal.h for the locking rules.
 */
#include "base/common.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "api/model.h"
#include "base/fileio.h"
#include "base/log.h"
#include "base/parse.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "engine/local/local.h"
#include "engine/local/local_internal.h"
#include "lifecycle/service.h"
#include "lifecycle/worker.h"
#include "store/store.h"

#define SUPERVISE_TICK_USEC (500 * USEC_PER_MSEC)
#define RESTART_BACKOFF_FIRST_USEC (500 * USEC_PER_MSEC)
#define RESTART_BACKOFF_CAP_USEC (60 * USEC_PER_SEC)
/* A helper that ran this long is healthy again: its next failure restarts it without delay. */
#define RESTART_RESET_USEC (60 * USEC_PER_SEC)
#define LOG_ROTATE_SIZE (8 * 1024 * 1024)
#define STOP_KILL_WAIT_USEC (5 * USEC_PER_SEC)

struct cm_local_proc {
        struct cm_local_proc *next;
        pthread_mutex_t lock;
        char id[64];
        char env[64];
        char name[64];
        char dir[PATH_MAX];
        pid_t pid; /* 0: none running as far as we know */
        pid_t spawned_pid; /* the last pid spawned, kept after it is reaped */
        bool child; /* started by this process: reaped with waitpid() */
        bool supervised; /* restarted when it exits */
        unsigned nodes;
        unsigned restarts; /* consecutive restarts, for the backoff */
        uint64_t started_mono;
        uint64_t next_restart_mono;
        int last_status;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cm_local_proc *registry;

static pthread_mutex_t sup_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sup_cond;
static pthread_t sup_thread;
static bool sup_started;
static bool sup_stopping;
static bool curl_inited;

int cm_local_proc_acquire(const char *id, const char *env, const char *name, const char *dir,
                          struct cm_local_proc **ret) {
        struct cm_local_proc *p;

        pthread_mutex_lock(&registry_lock);
        for (p = registry; p; p = p->next)
                if (streq(p->id, id))
                        break;
        if (!p) {
                p = new0(struct cm_local_proc, 1);
                if (!p) {
                        pthread_mutex_unlock(&registry_lock);
                        return -ENOMEM;
                }
                if (cm_strlcpy(p->id, id, sizeof(p->id)) < 0 ||
                    cm_strlcpy(p->env, env, sizeof(p->env)) < 0 ||
                    cm_strlcpy(p->name, name, sizeof(p->name)) < 0 ||
                    cm_strlcpy(p->dir, dir, sizeof(p->dir)) < 0) {
                        pthread_mutex_unlock(&registry_lock);
                        free(p);
                        return -ENAMETOOLONG;
                }
                pthread_mutex_init(&p->lock, NULL);
                p->last_status = -1;
                p->next = registry;
                registry = p;
        }
        pthread_mutex_unlock(&registry_lock);
        /* Entries are freed only by cm_engine_local_stop(), after every user is gone. */
        pthread_mutex_lock(&p->lock);
        *ret = p;
        return 0;
}

void cm_local_proc_release(struct cm_local_proc *p) {
        if (p)
                pthread_mutex_unlock(&p->lock);
}

/* Reads a small file (procfs included) into buf; returns its length or -errno. */
static ssize_t read_small(const char *path, char *buf, size_t size) {
        size_t len = 0;
        int fd;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        while (len < size - 1) {
                ssize_t n = read(fd, buf + len, size - 1 - len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int r = negative_errno();
                        close(fd);
                        return r;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        close(fd);
        buf[len] = 0;
        return (ssize_t) len;
}

/* True when pid is a live (not zombie) helper running on dir. */
static bool pid_runs_helper(pid_t pid, const char *dir, unsigned *ret_nodes) {
        char path[64], helper[PATH_MAX], buf[8192];
        const char *base = "clustermgmt-localk8s", *s;
        ssize_t n;

        if (pid <= 1)
                return false;
        (void) cm_snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        n = read_small(path, buf, sizeof(buf));
        if (n < 0)
                return false;
        s = strrchr(buf, ')');
        if (!s || s[1] != ' ' || s[2] == 'Z' || s[2] == 'X' || s[2] == 0)
                return false;
        (void) cm_snprintf(path, sizeof(path), "/proc/%d/cmdline", (int) pid);
        n = read_small(path, buf, sizeof(buf));
        if (n <= 0)
                return false;
        if (cm_local_helper_resolve(helper, sizeof(helper)) >= 0) {
                const char *slash = strrchr(helper, '/');
                base = slash ? slash + 1 : helper;
        }
        return cm_local_cmdline_matches(buf, (size_t) n, base, dir, ret_nodes);
}

/* Whether the entry's helper still runs; reaps it when it was our child and ended. */
static bool proc_alive(struct cm_local_proc *p) {
        if (p->pid <= 0)
                return false;
        if (p->child) {
                int st = 0;
                pid_t w;

                do
                        w = waitpid(p->pid, &st, WNOHANG);
                while (w < 0 && errno == EINTR);
                if (w == 0)
                        return true;
                if (w == p->pid) {
                        p->last_status = st;
                        p->pid = 0;
                        p->child = false;
                        return false;
                }
                /* ECHILD: not ours after all; check it like an adopted one. */
                p->child = false;
        }
        if (!pid_runs_helper(p->pid, p->dir, NULL)) {
                p->pid = 0;
                return false;
        }
        return true;
}

/* Adopts a helper left running by an earlier run of the service (pid file + cmdline). */
static bool proc_adopt(struct cm_local_proc *p) {
        char path[PATH_MAX + 32], buf[64];
        unsigned nodes = 1;
        int pid = 0;
        ssize_t n;

        if (cm_snprintf(path, sizeof(path), "%s/localk8s.pid", p->dir) < 0)
                return false;
        n = read_small(path, buf, sizeof(buf));
        if (n <= 0)
                return false;
        buf[strcspn(buf, "\n")] = 0;
        if (safe_atoi(buf, &pid) < 0 || pid <= 1)
                return false;
        if (!pid_runs_helper(pid, p->dir, &nodes))
                return false;
        p->pid = pid;
        p->nodes = nodes;
        /* Ours when waitpid knows it (a child of this process whose entry was lost); else adopted. */
        p->child = waitpid(pid, NULL, WNOHANG) == 0;
        p->started_mono = cm_mono_usec();
        return true;
}

pid_t cm_local_proc_running(struct cm_local_proc *p, unsigned *ret_nodes) {
        if (!proc_alive(p) && !proc_adopt(p))
                return 0;
        if (ret_nodes)
                *ret_nodes = p->nodes;
        return p->pid;
}

pid_t cm_local_proc_spawned_pid(struct cm_local_proc *p) {
        return p->spawned_pid;
}

int cm_local_proc_last_status(struct cm_local_proc *p) {
        return p->last_status;
}

void cm_local_proc_supervise(struct cm_local_proc *p, bool on) {
        p->supervised = on;
        if (on) {
                p->restarts = 0;
                p->next_restart_mono = 0;
        }
}

/* Keeps one older log: localk8s.log → localk8s.log.1 once it passes LOG_ROTATE_SIZE. */
static void rotate_log(const char *path) {
        char old[PATH_MAX + 8];
        struct stat st;

        if (stat(path, &st) < 0 || st.st_size < LOG_ROTATE_SIZE)
                return;
        if (cm_snprintf(old, sizeof(old), "%s.1", path) < 0)
                return;
        (void) rename(path, old);
}

int cm_local_proc_spawn(struct cm_local_proc *p, unsigned nodes, off_t *ret_log_offset) {
        char helper[PATH_MAX], log_path[PATH_MAX + 32], name[48], nodes_buf[16];
        char *argv[CM_LOCAL_ARGV_MAX];
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t empty, all;
        struct stat st;
        pid_t pid;
        int fd, r;

        r = cm_local_helper_resolve(helper, sizeof(helper));
        if (r < 0)
                return r;
        r = cm_mkdir_p(p->dir, 0700);
        if (r < 0)
                return r;
        if (chmod(p->dir, 0700) < 0)
                return negative_errno();
        if (cm_snprintf(log_path, sizeof(log_path), "%s/localk8s.log", p->dir) < 0)
                return -ENAMETOOLONG;
        rotate_log(log_path);
        fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0600);
        if (fd < 0)
                return negative_errno();
        if (ret_log_offset)
                *ret_log_offset = fstat(fd, &st) == 0 ? st.st_size : 0;

        cm_local_helper_name(p->name, name, sizeof(name));
        cm_local_build_argv(helper, p->dir, name, nodes, nodes_buf, sizeof(nodes_buf), argv);

        r = posix_spawn_file_actions_init(&fa);
        if (r != 0) {
                close(fd);
                return -r;
        }
        r = posix_spawnattr_init(&attr);
        if (r != 0) {
                posix_spawn_file_actions_destroy(&fa);
                close(fd);
                return -r;
        }
        sigemptyset(&empty);
        sigfillset(&all);
        sigdelset(&all, SIGKILL);
        sigdelset(&all, SIGSTOP);
        /* dup2 clears O_CLOEXEC on the child's copies; every other descriptor of ours is O_CLOEXEC. */
        if ((r = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0)) != 0 ||
            (r = posix_spawn_file_actions_adddup2(&fa, fd, STDOUT_FILENO)) != 0 ||
            (r = posix_spawn_file_actions_adddup2(&fa, fd, STDERR_FILENO)) != 0 ||
            (r = posix_spawn_file_actions_addchdir_np(&fa, p->dir)) != 0 ||
            (r = posix_spawnattr_setpgroup(&attr, 0)) != 0 ||
            (r = posix_spawnattr_setsigmask(&attr, &empty)) != 0 ||
            (r = posix_spawnattr_setsigdefault(&attr, &all)) != 0 ||
            (r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                                         POSIX_SPAWN_SETSIGDEF)) == 0)
                r = posix_spawn(&pid, helper, &fa, &attr, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        close(fd);
        if (r != 0)
                return -r;

        p->pid = pid;
        p->spawned_pid = pid;
        p->child = true;
        p->nodes = nodes;
        p->started_mono = cm_mono_usec();
        p->last_status = -1;
        log_info("local cluster %s/%s: started %s (pid %d, %u nodes, data dir %s)", p->env, p->name, helper,
                 (int) pid, nodes, p->dir);
        return 0;
}

/* The helper runs in a process group of its own (pgid = pid) when we started it. */
static void signal_helper(pid_t pid, int sig) {
        if (getpgid(pid) == pid)
                (void) kill(-pid, sig);
        else
                (void) kill(pid, sig);
}

static bool wait_gone(struct cm_local_proc *p, uint64_t usec) {
        uint64_t deadline = cm_mono_usec() + usec;

        while (proc_alive(p)) {
                if (cm_mono_usec() >= deadline)
                        return false;
                usleep(50000);
        }
        return true;
}

int cm_local_proc_stop(struct cm_local_proc *p, uint64_t grace_usec) {
        pid_t pid;

        if (!proc_alive(p))
                return 0;
        pid = p->pid;
        signal_helper(pid, SIGTERM);
        if (wait_gone(p, grace_usec))
                return 0;
        log_warning("local cluster %s/%s: helper (pid %d) did not stop within %" PRIu64 " s; killing it",
                    p->env, p->name, (int) pid, grace_usec / USEC_PER_SEC);
        signal_helper(pid, SIGKILL);
        return wait_gone(p, STOP_KILL_WAIT_USEC) ? 0 : -ETIMEDOUT;
}

static void describe_status(int st, char *buf, size_t size) {
        if (st < 0)
                (void) cm_snprintf(buf, size, "ended");
        else if (WIFEXITED(st))
                (void) cm_snprintf(buf, size, "exited with status %d", WEXITSTATUS(st));
        else if (WIFSIGNALED(st))
                (void) cm_snprintf(buf, size, "was killed by signal %d", WTERMSIG(st));
        else
                (void) cm_snprintf(buf, size, "ended");
}

/* One supervisor pass over an entry (its lock held). */
static void supervise_one(struct cm_local_proc *p) {
        uint64_t now = cm_mono_usec();
        int r;

        if (p->pid > 0) {
                if (proc_alive(p)) {
                        if (p->restarts > 0 && now - p->started_mono >= RESTART_RESET_USEC)
                                p->restarts = 0;
                        return;
                }
                if (p->supervised) {
                        char what[64];
                        uint64_t delay = cm_backoff_usec(RESTART_BACKOFF_FIRST_USEC,
                                                         RESTART_BACKOFF_CAP_USEC, p->restarts + 1);

                        describe_status(p->last_status, what, sizeof(what));
                        log_warning("local cluster %s/%s: helper %s unexpectedly; restarting it in %" PRIu64
                                    " ms",
                                    p->env, p->name, what, delay / USEC_PER_MSEC);
                        p->next_restart_mono = now + delay;
                }
                return;
        }
        if (!p->supervised || now < p->next_restart_mono)
                return;
        /* Another start of the service (or a person) may have started it meanwhile. */
        if (proc_adopt(p))
                return;
        r = cm_local_proc_spawn(p, p->nodes ?: 1, NULL);
        p->restarts++;
        if (r < 0) {
                uint64_t delay = cm_backoff_usec(RESTART_BACKOFF_FIRST_USEC, RESTART_BACKOFF_CAP_USEC,
                                                 p->restarts + 1);

                log_warning_errno(
                        r, "local cluster %s/%s: restart the helper: %m; trying again in %" PRIu64 " s",
                        p->env, p->name, delay / USEC_PER_SEC);
                p->next_restart_mono = now + delay;
        }
}

static void *supervisor_main(void *userdata) {
        (void) userdata;
        for (;;) {
                struct timespec ts;

                pthread_mutex_lock(&sup_lock);
                if (!sup_stopping) {
                        clock_gettime(CLOCK_MONOTONIC, &ts);
                        ts.tv_nsec += (long) (SUPERVISE_TICK_USEC * 1000);
                        while (ts.tv_nsec >= 1000000000L) {
                                ts.tv_sec++;
                                ts.tv_nsec -= 1000000000L;
                        }
                        (void) pthread_cond_timedwait(&sup_cond, &sup_lock, &ts);
                }
                if (sup_stopping) {
                        pthread_mutex_unlock(&sup_lock);
                        break;
                }
                pthread_mutex_unlock(&sup_lock);

                pthread_mutex_lock(&registry_lock);
                for (struct cm_local_proc *p = registry; p; p = p->next) {
                        /* An operation holds it: the operation decides. */
                        if (pthread_mutex_trylock(&p->lock) != 0)
                                continue;
                        supervise_one(p);
                        pthread_mutex_unlock(&p->lock);
                }
                pthread_mutex_unlock(&registry_lock);
        }
        return NULL;
}

/* At start-up: adopts a cluster's running helper, or restarts it when it should run and does not. */
static void adopt_at_start(const char *data_dir, const struct cm_cluster *c) {
        bool should_run = c->phase == CM_PHASE_READY || c->phase == CM_PHASE_UPDATING;
        struct cm_local_proc *p = NULL;
        char dir[PATH_MAX];
        unsigned nodes = 0;
        pid_t pid;
        int r;

        r = cm_local_cluster_dir(data_dir, c->env, c->id, dir, sizeof(dir));
        if (r < 0) {
                log_warning_errno(r, "local cluster %s/%s: no usable data dir: %m", c->env, c->name);
                return;
        }
        if (!should_run && access(dir, F_OK) < 0)
                return;
        r = cm_local_proc_acquire(c->id, c->env, c->name, dir, &p);
        if (r < 0) {
                log_warning_errno(r, "local cluster %s/%s: register: %m", c->env, c->name);
                return;
        }
        pid = cm_local_proc_running(p, &nodes);
        if (pid > 0) {
                struct cm_local_ready rd;
                bool healthy = cm_local_read_ready(dir, &rd) == 0 && rd.pid == pid &&
                               cm_local_readyz(dir, rd.endpoint) == 0;

                log_info("local cluster %s/%s: adopted its running helper (pid %d, %u nodes, %s)", c->env,
                         c->name, (int) pid, nodes, healthy ? "/readyz ok" : "not ready yet");
                /* A Provisioning/Deleting cluster's operation resumes and decides; Failed stays as is. */
                cm_local_proc_supervise(p, should_run);
        } else if (should_run) {
                json_t *spec = json_loads(c->spec_json, 0, NULL);

                nodes = cm_local_spec_nodes(spec);
                json_decref(spec);
                log_info("local cluster %s/%s: not running; restarting it from its data", c->env, c->name);
                cm_local_proc_supervise(p, true);
                p->nodes = nodes;
                r = cm_local_proc_spawn(p, nodes, NULL);
                if (r < 0) {
                        log_warning_errno(r, "local cluster %s/%s: restart: %m; the supervisor tries again",
                                          c->env, c->name);
                        p->restarts = 1;
                        p->next_restart_mono = cm_mono_usec() + RESTART_BACKOFF_FIRST_USEC;
                }
        }
        cm_local_proc_release(p);
}

static int adopt_all(struct cm_service *svc) {
        _cleanup_free_ char *after_env = NULL;
        unsigned found = 0;
        int r;

        for (;;) {
                struct cm_environment *envs = NULL;
                size_t n_envs = 0;

                r = STORE_CALL(svc->store, env_list, after_env, 100, &envs, &n_envs);
                if (r < 0)
                        return log_error_errno(r, "local engine: list environments: %m");
                for (size_t i = 0; i < n_envs; i++) {
                        _cleanup_free_ char *after = NULL;

                        for (;;) {
                                struct cm_cluster *cs = NULL;
                                size_t n = 0;

                                r = STORE_CALL(svc->store, cluster_list, envs[i].name, after, 100, &cs, &n);
                                if (r < 0) {
                                        log_error_errno(r, "local engine: list clusters of '%s': %m",
                                                        envs[i].name);
                                        break;
                                }
                                for (size_t j = 0; j < n; j++)
                                        if (cs[j].engine && streq(cs[j].engine, "local")) {
                                                adopt_at_start(svc->cfg.data_dir, &cs[j]);
                                                found++;
                                        }
                                free(after);
                                after = n > 0 ? strdup(cs[n - 1].name) : NULL;
                                cm_cluster_array_free(cs, n);
                                if (n < 100 || !after)
                                        break;
                        }
                }
                free(after_env);
                after_env = n_envs > 0 ? strdup(envs[n_envs - 1].name) : NULL;
                cm_environment_array_free(envs, n_envs);
                if (n_envs < 100 || !after_env)
                        break;
        }
        if (found > 0)
                log_info("local engine: %u local cluster(s) checked at start", found);
        return 0;
}

int cm_engine_local_start(struct cm_service *svc) {
        pthread_condattr_t ca;
        int r;

        if (sup_started)
                return -EALREADY;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return -ENOMEM;
        curl_inited = true;
        (void) adopt_all(svc);

        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&sup_cond, &ca);
        pthread_condattr_destroy(&ca);
        sup_stopping = false;
        r = -pthread_create(&sup_thread, NULL, supervisor_main, NULL);
        if (r < 0) {
                pthread_cond_destroy(&sup_cond);
                return log_error_errno(r, "local engine: start the supervisor: %m");
        }
        sup_started = true;
        return 0;
}

void cm_engine_local_stop(void) {
        struct cm_local_proc *p;
        unsigned running = 0;

        if (sup_started) {
                pthread_mutex_lock(&sup_lock);
                sup_stopping = true;
                pthread_cond_broadcast(&sup_cond);
                pthread_mutex_unlock(&sup_lock);
                pthread_join(sup_thread, NULL);
                pthread_cond_destroy(&sup_cond);
                sup_started = false;
        }
        /* The helpers keep running: the next start adopts them. */
        pthread_mutex_lock(&registry_lock);
        while ((p = registry)) {
                registry = p->next;
                if (p->pid > 0)
                        running++;
                pthread_mutex_destroy(&p->lock);
                free(p);
        }
        pthread_mutex_unlock(&registry_lock);
        if (running > 0)
                log_info("local engine: %u local cluster(s) keep running; the next start adopts them",
                         running);
        if (curl_inited) {
                curl_global_cleanup();
                curl_inited = false;
        }
}
