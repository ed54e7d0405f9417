/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"

/*
 * The one way to start a child process that a step waits for. argv and envp are string vectors (no
 * shell); argv[0] is an executable path. The child runs in a process group of its own with default
 * signal dispositions and an empty signal mask, stdin from /dev/null, and stdout+stderr into one pipe
 * that the caller reads line by line through on_line. It dies with the service (PR_SET_PDEATHSIG), so a
 * killed service never leaves one running beside the one the next attempt starts. No other descriptor
 * of ours leaks into it: the service opens every fd with O_CLOEXEC. (Programs that must outlive the
 * service, like local clusters, are started by their engine instead.)
 */
struct cm_spawn_opts {
        char *const *argv;
        char *const *envp; /* NULL: the service's environment */
        const char *cwd; /* NULL: ours */
        /* Called for each output line (without its newline; lines over 4 KiB are cut). */
        void (*on_line)(void *userdata, const char *line, size_t n);
        /* Polled a few times a second: true stops the child (SIGTERM to the group, SIGKILL later). */
        bool (*should_stop)(void *userdata);
        void *userdata;
        uint64_t kill_grace_usec; /* 0: 5 s */
};

/*
 * Runs the child to its end. Returns -ECANCELED when should_stop ended it, a negative errno when it
 * could not be started or waited for, and otherwise its exit code (>= 0; 128+N when killed by
 * signal N).
 */
int cm_spawn_run(const struct cm_spawn_opts *o);
