/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
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

int cm_spawn_run(const struct cm_spawn_opts *o) {
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        struct line_reader lr = {};
        sigset_t empty, all;
        uint64_t kill_at = 0, grace = o->kill_grace_usec ?: 5 * USEC_PER_SEC;
        bool stopping = false, eof = false;
        int pipefd[2], r, status = 0;
        pid_t pid;

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return negative_errno();

        r = posix_spawn_file_actions_init(&fa);
        if (r != 0) {
                close(pipefd[0]);
                close(pipefd[1]);
                return -r;
        }
        r = posix_spawnattr_init(&attr);
        if (r != 0) {
                posix_spawn_file_actions_destroy(&fa);
                close(pipefd[0]);
                close(pipefd[1]);
                return -r;
        }
        sigemptyset(&empty);
        sigfillset(&all);
        sigdelset(&all, SIGKILL);
        sigdelset(&all, SIGSTOP);
        if ((r = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0)) != 0 ||
            (r = posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO)) != 0 ||
            (r = posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDERR_FILENO)) != 0 ||
            (o->cwd && (r = posix_spawn_file_actions_addchdir_np(&fa, o->cwd)) != 0) ||
            (r = posix_spawnattr_setpgroup(&attr, 0)) != 0 ||
            (r = posix_spawnattr_setsigmask(&attr, &empty)) != 0 ||
            (r = posix_spawnattr_setsigdefault(&attr, &all)) != 0 ||
            (r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                                         POSIX_SPAWN_SETSIGDEF)) != 0)
                goto fail;

        r = posix_spawn(&pid, o->argv[0], &fa, &attr, o->argv, o->envp ?: environ);
        if (r != 0)
                goto fail;
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
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

        /* The output is closed; the child may still run (it closed its stdout). Wait, still stoppable. */
        for (;;) {
                pid_t w = waitpid(pid, &status, WNOHANG);
                if (w == pid)
                        break;
                if (w < 0 && errno != EINTR)
                        return negative_errno();
                if (!stopping && o->should_stop && o->should_stop(o->userdata)) {
                        stopping = true;
                        (void) kill(-pid, SIGTERM);
                        kill_at = cm_mono_usec() + grace;
                }
                if (stopping && kill_at && cm_mono_usec() >= kill_at) {
                        (void) kill(-pid, SIGKILL);
                        kill_at = 0;
                }
                usleep(20000);
        }
        /* Leave no stragglers of the group behind. */
        (void) kill(-pid, SIGKILL);

        if (stopping)
                return -ECANCELED;
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        if (WIFSIGNALED(status))
                return 128 + WTERMSIG(status);
        return -EIO;
fail:
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        close(pipefd[0]);
        close(pipefd[1]);
        return -r;
}
