/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <sys/types.h>

#include "base/common.h"
#include "engine/local/local.h"

/*
 * Between the engine's operations (local.c) and the process registry with its supervisor
 * (supervise.c). Not for other modules.
 *
 * The registry holds one entry per local cluster this process knows about, keyed by cluster id.
 * Entries live until cm_engine_local_stop(). Each entry has a lock: an operation holds it from
 * acquire to release; the supervisor only acts on entries whose lock it gets without waiting. All
 * functions taking a struct cm_local_proc require that lock held.
 */

struct cm_local_proc;

/* Finds or adds the entry of cluster id (data dir dir) and locks it. */
int cm_local_proc_acquire(const char *id, const char *env, const char *name, const char *dir,
                          struct cm_local_proc **ret);
void cm_local_proc_release(struct cm_local_proc *p);

/*
 * The pid of the helper running on the entry's data dir, or 0 when none runs. A helper started by an
 * earlier run of the service is adopted through its pid file when its /proc/PID/cmdline names the
 * helper and this data dir. ret_nodes (if not NULL) receives its --nodes.
 */
pid_t cm_local_proc_running(struct cm_local_proc *p, unsigned *ret_nodes);
/* The wait status of the helper's last exit seen by this process, or -1 when unknown. */
int cm_local_proc_last_status(struct cm_local_proc *p);
/*
 * Starts the helper with nodes simulated nodes: own process group, stdin /dev/null, stdout and stderr
 * appended to <dir>/localk8s.log, empty signal mask, no shell. ret_log_offset (if not NULL) receives
 * the log's size before the start. -ENOENT when the helper is missing.
 */
int cm_local_proc_spawn(struct cm_local_proc *p, unsigned nodes, off_t *ret_log_offset);
/* The pid cm_local_proc_spawn started (still valid after the helper ended and was reaped). */
pid_t cm_local_proc_spawned_pid(struct cm_local_proc *p);
/* SIGTERM, then SIGKILL after grace_usec; -ETIMEDOUT when it still runs 5 s after that. */
int cm_local_proc_stop(struct cm_local_proc *p, uint64_t grace_usec);
/* Whether the supervisor restarts the helper when it exits. */
void cm_local_proc_supervise(struct cm_local_proc *p, bool on);

/* The absolute helper path (realpath of the configured one); -errno when it cannot be resolved. */
int cm_local_helper_resolve(char *buf, size_t size);

/* <realpath(data_dir)>/local/<env>/<id>; -EINVAL for an env or id unfit for a path. */
int cm_local_cluster_dir(const char *data_dir, const char *env, const char *id, char *buf, size_t size);
/* Reads and parses <dir>/ready.json. */
int cm_local_read_ready(const char *dir, struct cm_local_ready *ret);
/* 0 when GET endpoint/readyz (verified against <dir>/pki/ca.crt) answers 200 "ok"; < 0 otherwise. */
int cm_local_readyz(const char *dir, const char *endpoint);
