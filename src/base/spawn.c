/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "base/spawn.h"
#include "base/util.h"

#define SPAWN_LINE_MAX 4096

struct line_reader {
        char buf[SPAWN_LINE_MAX];
        size_t len;
        bool cutting; /* dropping the rest of an over-long line */
};

static void reader_feed(struct line_reader *lr, const char *data, size_t n, const struct cm_spawn_opts *o) {
        for (size_t i = 0; i < n; i++) {
                char c = data[i];

                if (c == '\n') {
                        if (!lr->cutting && o->on_line)
                                o->on_line(o->userdata, lr->buf, lr->len);
                        lr->len = 0;
                        lr->cutting = false;
                        continue;
                }
                if (lr->cutting)
                        continue;
                if (lr->len >= sizeof(lr->buf) - 1) {
                        lr->buf[lr->len] = 0;
                        if (o->on_line)
                                o->on_line(o->userdata, lr->buf, lr->len);
                        lr->len = 0;
                        lr->cutting = true;
                        continue;
                }
                lr->buf[lr->len++] = c;
                lr->buf[lr->len] = 0;
        }
}

/*
 * fork + exec rather than posix_spawn: the child must die with the service (PR_SET_PDEATHSIG), so that a
 * service killed mid-step never leaves an engine's program running beside the one its successor starts.
 * Between fork and exec only async-signal-safe calls; an exec failure comes back through a pipe.
 */
static int start_child(const struct cm_spawn_opts *o, int out_fd, pid_t *ret_pid) {
        pid_t parent = getpid(), pid;
        int errpipe[2], err = 0;
        ssize_t n;

        if (pipe2(errpipe, O_CLOEXEC) < 0)
                return negative_errno();
        pid = fork();
        if (pid < 0) {
                int r = negative_errno();
                close(errpipe[0]);
                close(errpipe[1]);
                return r;
        }
        if (pid == 0) {
                struct sigaction sa = { .sa_handler = SIG_DFL };
                sigset_t empty;
                int fd;

                (void) setpgid(0, 0);
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(127); /* the service is already gone */
                for (int sig = 1; sig < NSIG; sig++)
                        if (sig != SIGKILL && sig != SIGSTOP)
                                (void) sigaction(sig, &sa, NULL);
                sigemptyset(&empty);
                (void) sigprocmask(SIG_SETMASK, &empty, NULL);
                fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (fd < 0 || dup2(fd, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0 ||
                    dup2(out_fd, STDERR_FILENO) < 0 || (o->cwd && chdir(o->cwd) < 0))
                        goto child_fail;
                execve(o->argv[0], o->argv, o->envp ?: environ);
        child_fail:
                err = errno;
                (void) !write(errpipe[1], &err, sizeof(err));
                _exit(127);
        }
        close(errpipe[1]);
        do
                n = read(errpipe[0], &err, sizeof(err));
        while (n < 0 && errno == EINTR);
        close(errpipe[0]);
        if (n == (ssize_t) sizeof(err)) {
                (void) waitpid(pid, NULL, 0);
                return -(err ?: EIO);
        }
        *ret_pid = pid;
        return 0;
}

int cm_spawn_run(const struct cm_spawn_opts *o) {
        struct line_reader lr = {};
        uint64_t kill_at = 0, grace = o->kill_grace_usec ?: 5 * USEC_PER_SEC;
        bool stopping = false, eof = false;
        int pipefd[2], r, status = 0;
        pid_t pid = 0;

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return negative_errno();

        r = start_child(o, pipefd[1], &pid);
        if (r >= 0 && pid <= 0)
                r = -EIO; /* never signal a group we did not start (kill(0) or kill(1)) */
        if (r < 0) {
                close(pipefd[0]);
                close(pipefd[1]);
                return r;
        }
        close(pipefd[1]);

        while (!eof) {
                struct pollfd pfd = { .fd = pipefd[0], .events = POLLIN };
                char chunk[4096];
                int pr;

                if (!stopping && o->should_stop && o->should_stop(o->userdata)) {
                        stopping = true;
                        (void) kill(-pid, SIGTERM);
                        kill_at = cm_mono_usec() + grace;
                }
                if (stopping && kill_at && cm_mono_usec() >= kill_at) {
                        (void) kill(-pid, SIGKILL);
                        kill_at = 0;
                }
                pr = poll(&pfd, 1, 200);
                if (pr < 0 && errno != EINTR)
                        break;
                if (pr <= 0)
                        continue;
                ssize_t n = read(pipefd[0], chunk, sizeof(chunk));
                if (n < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        break;
                }
                if (n == 0)
                        eof = true;
                else
                        reader_feed(&lr, chunk, (size_t) n, o);
        }
        if (lr.len > 0 && !lr.cutting && o->on_line)
                o->on_line(o->userdata, lr.buf, lr.len);
        close(pipefd[0]);

        /*
         * The output is closed; the child may still run (it closed its stdout), or be exiting right
         * now. Wait, still stoppable: on a pidfd that becomes readable when it exits (no sleep to pay
         * on every run), or with short sleeps growing to 20 ms where pidfds are missing.
         */
        int pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        for (unsigned round = 0;; round++) {
                pid_t w = waitpid(pid, &status, WNOHANG);
                if (w == pid)
                        break;
                if (w < 0 && errno != EINTR) {
                        r = negative_errno();
                        if (pidfd >= 0)
                                close(pidfd);
                        return r;
                }
                if (!stopping && o->should_stop && o->should_stop(o->userdata)) {
                        stopping = true;
                        (void) kill(-pid, SIGTERM);
                        kill_at = cm_mono_usec() + grace;
                }
                if (stopping && kill_at && cm_mono_usec() >= kill_at) {
                        (void) kill(-pid, SIGKILL);
                        kill_at = 0;
                }
                if (pidfd >= 0) {
                        struct pollfd pfd = { .fd = pidfd, .events = POLLIN };
                        (void) poll(&pfd, 1, 200);
                } else
                        usleep(MIN(250U << MIN(round, 7U), 20000U));
        }
        if (pidfd >= 0)
                close(pidfd);
        /* Leave no stragglers of the group behind. */
        (void) kill(-pid, SIGKILL);

        if (stopping)
                return -ECANCELED;
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        if (WIFSIGNALED(status))
                return 128 + WTERMSIG(status);
        return -EIO;
}
