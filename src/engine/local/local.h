/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <sys/types.h>

#include "base/common.h"
#include "engine/engine.h"

/*
 * The `local` engine: a real Kubernetes control plane on this host with simulated nodes, run by the
 * helper program `clustermgmt-localk8s` (see docs/tools.md and docs/internals/engine-local.md).
 *
 * Each cluster is one long-running helper process with its data under
 * <data-dir>/local/<env>/<cluster id> (0700). The helper outlives the operation that started it: the
 * engine keeps a registry of the helpers it runs and a supervisor thread restarts one that exits on
 * its own (with backoff). On service shutdown the helpers keep running; the next start adopts them
 * (pid file, /proc/PID/cmdline naming the helper and the cluster's data dir, /readyz) or restarts
 * them from their data.
 */

struct cm_service;

/* The engine's vtable; registered by cm_engines_register_builtin(). */
extern const struct cm_engine_ops cm_engine_local_ops;

/* The most simulated nodes a local cluster may have (spec.local.nodes). */
#define CM_LOCAL_MAX_NODES 500

/*
 * Sets the helper's path (copied). NULL picks the default: `clustermgmt-localk8s` next to the running
 * binary when it exists there, else ./bin/clustermgmt-localk8s. Call before any thread uses the
 * engine (at start-up).
 */
int cm_engine_local_set_helper(const char *path);
/* The helper path in use (the default when none was set). */
const char *cm_engine_local_helper(void);

/*
 * Start-up hook of the service: adopts the local clusters of the store that still run (or restarts
 * those that should run and do not) and starts the supervisor thread. cm_engine_local_stop() ends the
 * supervisor; the helpers keep running for the next start to adopt. stop accepts being called
 * without a start.
 */
int cm_engine_local_start(struct cm_service *svc);
void cm_engine_local_stop(void);

/* --- Pure parts, exposed for the unit tests. --- */

/* The content of the helper's ready.json. */
struct cm_local_ready {
        char endpoint[128]; /* https://127.0.0.1:PORT */
        char version[64];
        char name[64];
        pid_t pid;
        unsigned nodes;
};

/*
 * Parses ready.json text. The endpoint must be https on a loopback address (127.0.0.1 or [::1]) with
 * a port; pid and nodes must be present. -EINVAL (nothing written) otherwise.
 */
int cm_local_ready_parse(const char *text, size_t n, struct cm_local_ready *ret);

/* spec.local.nodes, or 1 when spec.local (or its nodes) is absent. */
unsigned cm_local_spec_nodes(const json_t *spec);

/*
 * The helper's --name for a cluster name: at most 40 characters (the helper's limit), no trailing
 * '-'; "localk8s" when nothing is left.
 */
void cm_local_helper_name(const char *cluster_name, char *buf, size_t size);

/*
 * Builds the helper's argv into argv (at least CM_LOCAL_ARGV_MAX slots) with strings in the caller's
 * buffers: helper --data-dir DIR --name NAME --nodes N. nodes_buf holds the number's text.
 */
#define CM_LOCAL_ARGV_MAX 8
void cm_local_build_argv(const char *helper, const char *dir, const char *name, unsigned nodes,
                         char *nodes_buf, size_t nodes_size, char *argv[static CM_LOCAL_ARGV_MAX]);

/*
 * Checks a /proc/PID/cmdline (NUL-separated args, n bytes): argv[0]'s base name is
 * clustermgmt-localk8s (or helper_base), and it runs on data dir dir. On a match *ret_nodes (if not
 * NULL) receives its --nodes (1 when absent). Returns true on a match.
 */
bool cm_local_cmdline_matches(const char *cmdline, size_t n, const char *helper_base, const char *dir,
                              unsigned *ret_nodes);
