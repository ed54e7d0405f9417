/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"
#include "engine/engine.h"

/*
 * The `rke` engine: renders cluster.yml from spec.rke and runs the pinned `rke` binary (v1.8.x) on it
 * in a private work dir, keeping every file rke writes in the state vault (see
 * docs/internals/engine-rke.md).
 */

/* The engine's vtable; registered by cm_engines_register_builtin(). */
extern const struct cm_engine_ops cm_engine_rke_ops;

/*
 * Sets the rke binary's path (copied). NULL or "" picks the default: `rke` next to the running binary
 * when it exists there, else ./bin/rke when it exists, else `rke` from PATH. Call at start-up, before
 * any thread uses the engine.
 */
int cm_engine_rke_set_path(const char *path);
/* The configured path (the default when none was set); may be a bare name looked up in PATH. */
const char *cm_engine_rke_path(void);

/*
 * The Kubernetes versions rke supports (`rke config --list-version --all`, run once and cached) as
 * {"engine":"rke","versions":[...],"default":"..."}. -ENOENT when the binary is missing, -EIO when it
 * does not answer as expected.
 */
int cm_engine_rke_versions(json_t **ret);

/* --- Pure parts (render.c), exposed for the unit tests and the fuzz target. --- */

#define CM_RKE_MAX_NODES 100
#define CM_RKE_MAX_REGISTRIES 16
#define CM_RKE_MAX_EXTRA_ARGS 32
#define CM_RKE_EXTRA_ARG_VALUE_MAX 1024
/* The largest cluster.yml rendered (100 nodes with every option fit easily). */
#define CM_RKE_CLUSTER_YML_MAX (256U * 1024U)

/* Checks spec.rke (all but the Kubernetes version against rke's list); adds field errors to p. */
void cm_rke_validate_spec(const json_t *spec, struct cm_problem *p);

/*
 * Renders cluster.yml for a spec that passed cm_rke_validate_spec: cluster_name, nodes (ssh_key_path
 * is <key_dir>/<sshKey>), kubernetes_version (when set), network, services, private registries with
 * passwords[i] for registry i that has a user (passwords may be NULL when none has). Deterministic:
 * the same input gives the same bytes. The text is malloc'd into *ret (length in ret_n; wipe it: it
 * may hold passwords). -EINVAL for a spec it cannot render, -ENOKEY when a registry's password is
 * missing or not printable ASCII, -ENOBUFS past CM_RKE_CLUSTER_YML_MAX.
 */
_warn_unused_result_ int cm_rke_render(const json_t *spec, const char *cluster_name, const char *key_dir,
                                       const char *const *passwords, char **ret, size_t *ret_n);

/*
 * The passwordSecret names of spec.rke.privateRegistries, by registry index (NULL for a registry
 * without one); returns the number of registries (<= max).
 */
size_t cm_rke_registry_secrets(const json_t *spec, const char **names, size_t max);

/* The distinct sshKey names of spec.rke.nodes, in order of first use; returns how many (<= max). */
size_t cm_rke_ssh_keys(const json_t *spec, const char **names, size_t max);

/*
 * Redacts one line of rke's output for the operation log: returns -1 when the line must be dropped
 * (PEM armour, "PRIVATE KEY"), else the length of the line written to out (NUL-terminated) with every
 * run of 40 or more base64 characters replaced by "[redacted]".
 */
int cm_rke_redact_line(const char *line, size_t n, char *out, size_t size);

/*
 * Parses a logrus line of rke (`time="..." level=fatal msg="..."`): the level into level and the
 * unescaped message into msg. Returns false when the line is not in that form.
 */
bool cm_rke_parse_line(const char *line, size_t n, char *level, size_t level_size, char *msg,
                       size_t msg_size);

/* True when a line of rke's output tells of a node that could not be reached (SSH, TCP). */
bool cm_rke_line_is_connection_failure(const char *line, size_t n);

/*
 * rke's per-host warning "Failed to set up SSH tunneling for host [H]: REASON" (the message part of a
 * line): the host and the reason. False for any other message.
 */
bool cm_rke_tunnel_failure(const char *msg, char *host, size_t host_size, char *reason, size_t reason_size);
/* What a tunnel failure's reason means for the person fixing it: login refused, port unreachable, Docker. */
const char *cm_rke_tunnel_hint(const char *reason);

/* The `server:` URL of a kubeconfig into buf; -ENOENT when there is none. */
int cm_rke_kubeconfig_server(const char *text, size_t n, char *buf, size_t size);
