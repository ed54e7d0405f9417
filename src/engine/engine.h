/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <jansson.h>
#include <stdatomic.h>

#include "api/model.h"
#include "api/problem.h"
#include "base/common.h"

/*
 * Engines build, change and tear down clusters. An engine is a const vtable registered by name at
 * start-up (before any thread runs); the worker calls it with a context for one operation.
 *
 * Contract of apply/destroy:
 * - They are idempotent: running a step twice (after a crash or a lease takeover) is safe.
 * - They return 0 on success, or a negative errno with ret->message set for people (no secrets) and
 *   ret->retryable when trying again later may succeed.
 * - They check cm_engine_ctx_cancelled() at safe points and return -ECANCELED when it is set; child
 *   processes started through cm_engine_ctx_spawn() are stopped by the context (process group).
 * - They write their output through cm_engine_ctx_log() (it lands in the operation log).
 * - On success ret->status_json may carry observed facts as a JSON object (endpoint,
 *   kubernetesVersion, nodes), merged into the cluster's status.
 */

struct cm_engine_ctx;

struct cm_engine_result {
        char message[1024];
        bool retryable;
        char *status_json; /* malloc'd JSON object or NULL */
        char *result_json; /* malloc'd JSON object: what the operation produced (a snapshot's name) */
        /* On failure: nothing in the cluster was changed (it stays Ready or Failed as it was). */
        bool untouched;
};

struct cm_engine_ops {
        const char *name;
        /* Validates the engine's part of a cluster spec (the whole spec is given); adds field errors. */
        int (*validate)(const json_t *spec, struct cm_problem *p);
        /* Creates or converges the cluster to ctx's spec. */
        int (*apply)(struct cm_engine_ctx *ctx, struct cm_engine_result *ret);
        /* Tears the cluster down. */
        int (*destroy)(struct cm_engine_ctx *ctx, struct cm_engine_result *ret);
        /*
         * Optional (NULL when unsupported), for a running cluster, with the operation's parameters
         * in cm_engine_ctx_params(): snapshot {"name"} (sets ret->result_json {"snapshot": name}),
         * restore {"snapshot"}, rotate_certificates {"rotateCA", "services"}.
         */
        int (*snapshot)(struct cm_engine_ctx *ctx, struct cm_engine_result *ret);
        int (*restore)(struct cm_engine_ctx *ctx, struct cm_engine_result *ret);
        int (*rotate_certificates)(struct cm_engine_ctx *ctx, struct cm_engine_result *ret);
        int (*list_versions)(json_t **ret);
};

/* The engine's step for an operation type (create and update: apply); NULL when it has none. */
typedef int (*cm_engine_step_fn)(struct cm_engine_ctx *ctx, struct cm_engine_result *ret);
cm_engine_step_fn cm_engine_step(const struct cm_engine_ops *e, enum cm_op_type t);

/* Registers an engine; -EEXIST for a name taken, -E2BIG when the registry is full. */
int cm_engine_register(const struct cm_engine_ops *ops);
const struct cm_engine_ops *cm_engine_find(const char *name);
/* Comma-separated names of the registered engines ("" when none). */
void cm_engine_names(char *buf, size_t size);
size_t cm_engine_count(void);
/* Registers the engines built into the product. */
void cm_engines_register_builtin(void);

/* What the worker gives an engine for one operation. */
const struct cm_cluster *cm_engine_ctx_cluster(struct cm_engine_ctx *ctx);
const struct cm_operation *cm_engine_ctx_operation(struct cm_engine_ctx *ctx);
const json_t *cm_engine_ctx_spec(struct cm_engine_ctx *ctx);
/* The operation's parameters (a JSON object, {} when none): see cm_cluster_action_decode(). */
const json_t *cm_engine_ctx_params(struct cm_engine_ctx *ctx);
const char *cm_engine_ctx_data_dir(struct cm_engine_ctx *ctx);
bool cm_engine_ctx_cancelled(struct cm_engine_ctx *ctx);
_printf_(2, 3) void cm_engine_ctx_log(struct cm_engine_ctx *ctx, const char *fmt, ...);
/*
 * The cluster's state files (kubeconfig, cluster.yml, cluster.rkestate, SSH keys...), kept encrypted
 * and versioned in the state vault. Write engines' files as soon as they appear, also when a step
 * fails. load returns a copy the caller must wipe (cm_erase_and_free / cm_wipe) and free; -ENOENT when
 * the file does not exist.
 */
int cm_engine_ctx_store_file(struct cm_engine_ctx *ctx, const char *name, const void *data, size_t n);
int cm_engine_ctx_load_file(struct cm_engine_ctx *ctx, const char *name, char **ret, size_t *ret_n);
/*
 * Runs argv (argv[0] a path; no shell) in its own process group with stdin from /dev/null, its
 * stdout and stderr line by line into the operation log, until it exits. When the context is
 * cancelled, the group gets SIGTERM, then SIGKILL after a grace period, and -ECANCELED is returned.
 * Returns the exit status (>= 0) otherwise.
 */
int cm_engine_ctx_spawn(struct cm_engine_ctx *ctx, char *const argv[], char *const envp[]);

/*
 * cm_engine_ctx_spawn() with hooks (each may be NULL): on_line receives the child's lines INSTEAD of
 * the operation log (the engine redacts and logs them itself through cm_engine_ctx_log); tick is
 * called a few times a second while the child runs (to copy files the child writes). Both run on
 * the calling thread.
 */
struct cm_engine_spawn_hooks {
        void (*on_line)(void *userdata, const char *line, size_t n);
        void (*tick)(void *userdata);
        void *userdata;
};
int cm_engine_ctx_spawn_hooked(struct cm_engine_ctx *ctx, char *const argv[], char *const envp[],
                               const struct cm_engine_spawn_hooks *hooks);

/*
 * A file of the cluster's environment in the state vault (owner `env:<env>`; SSH keys are
 * `ssh/<name>`). Same contract as cm_engine_ctx_load_file.
 */
int cm_engine_ctx_load_env_file(struct cm_engine_ctx *ctx, const char *name, char **ret, size_t *ret_n);
