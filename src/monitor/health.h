/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"

/*
 * The monitor's pure parts: what one probe of a cluster's API server saw (filled by the decoders of
 * the answers), the kubeconfig the probe connects with, and the health conditions computed from a
 * probe. Nothing here does I/O, logs above debug or keeps state: the prober (prober.c) owns all that.
 * Every decoder takes untrusted bytes and has a fuzz target.
 */

/* How a probe ended, before its answers are judged. */
enum cm_probe_outcome {
        CM_PROBE_OK, /* the API server answered every request of the probe */
        CM_PROBE_UNREACHABLE, /* no answer: refused, reset, timed out, name not resolved */
        CM_PROBE_UNAUTHORIZED, /* 401 or 403: the kubeconfig's credentials are refused */
        CM_PROBE_TLS_ERROR, /* the serving certificate did not verify against the kubeconfig's CA */
        CM_PROBE_BAD_KUBECONFIG, /* no usable kubeconfig in the vault */
        CM_PROBE_ERROR, /* an unexpected HTTP status or an answer that could not be decoded */
        _CM_PROBE_OUTCOME_MAX,
};

/*
 * "OK", "Unreachable", "Unauthorized", "TLSError", "BadKubeconfig", "Error" (also condition reasons);
 * NULL for a value out of range (so are the other name functions below).
 */
const char *cm_probe_outcome_name(enum cm_probe_outcome o);

#define CM_PROBE_TEXT_MAX 256

/* What one probe saw. Plain data: no pointers, so it can be copied and compared. */
struct cm_probe_result {
        enum cm_probe_outcome outcome;
        char detail[CM_PROBE_TEXT_MAX]; /* why the outcome is not OK (never holds a secret) */
        int livez_status; /* HTTP status of /livez, 0 when not asked */
        int readyz_status; /* HTTP status of /readyz?verbose */
        char failing_checks[CM_PROBE_TEXT_MAX]; /* "etcd, poststarthook/x" from /readyz?verbose */
        char version[64]; /* gitVersion of /version */
        bool nodes_known;
        unsigned nodes_total;
        unsigned nodes_ready;
        char nodes_not_ready[CM_PROBE_TEXT_MAX]; /* "node-1 (KubeletNotReady), node-2 (...)", capped */
        char nodes_pressure[CM_PROBE_TEXT_MAX]; /* "node-1: MemoryPressure, DiskPressure", capped */
        bool workloads_known;
        unsigned workloads_total; /* kube-system Deployments + DaemonSets + StatefulSets */
        unsigned workloads_unavailable;
        char workloads_not_available[CM_PROBE_TEXT_MAX]; /* "deployment/coredns (0/2 available)", capped */
        int64_t cert_not_after; /* serving certificate's expiry, unix seconds; 0 unknown */
        uint64_t latency_usec; /* the probe's requests, first byte sent to last byte received */
        uint64_t time_usec; /* wall clock when the probe ended */
};

/*
 * Measures the character at s (n > 0 bytes available) into *ret_len: the length of a well-formed UTF-8
 * sequence, 1 for a byte that starts none. Returns whether it is harmless to show in a message: false
 * for invalid UTF-8 and for characters that would disturb a reader (C0 and C1 controls, DEL, line and
 * paragraph separators, bidirectional formatting, the byte order mark).
 */
bool cm_monitor_char_shown(const unsigned char *s, size_t n, size_t *ret_len);

/*
 * Lists that reach CM_PROBE_TEXT_MAX end with ", …" and stay valid UTF-8 (a first entry too long on its
 * own is cut and ends with "…"). Text from the server is copied with control characters, invalid UTF-8
 * and bidirectional formatting replaced by '?'; names are shown up to 128 bytes. The decoders refuse
 * bodies larger than 16 MiB (lists) or 1 MiB (/readyz; /version: 64 KiB) with -EINVAL, unparsed.
 */

/*
 * Decodes the text of /readyz?verbose (lines "[+]name ok" and "[-]name failed: reason") into the
 * comma-separated names of the failed checks. Returns the number of failed checks, -EINVAL when no
 * line looks like a check (ret_failing is written on success only).
 */
int cm_probe_decode_readyz(const char *body, size_t len, char *ret_failing, size_t size);

/* Decodes /version ({"gitVersion": "v1.36.3", ...}) into gitVersion (cut to size). 0 or -EINVAL. */
int cm_probe_decode_version(const char *body, size_t len, char *ret_version, size_t size);

/*
 * Adds one page of /api/v1/nodes (a NodeList) to r: nodes_total, nodes_ready (condition Ready is
 * "True"), nodes_not_ready (name and the Ready condition's reason, "Unknown" when absent) and
 * nodes_pressure (MemoryPressure, DiskPressure, PIDPressure that are "True"; nodes separated by "; ");
 * sets nodes_known. Pages add up: call it for each page. ret_continue (size bytes; may be NULL)
 * receives metadata.continue ("" on the last page); a token that does not fit or is not printable
 * ASCII is refused, never cut. 0 or -EINVAL (not a NodeList); r is unchanged on error.
 */
int cm_probe_decode_nodes(const char *body, size_t len, struct cm_probe_result *r, char *ret_continue,
                          size_t size);

enum cm_workload_kind {
        CM_WORKLOAD_DEPLOYMENT,
        CM_WORKLOAD_DAEMONSET,
        CM_WORKLOAD_STATEFULSET,
        _CM_WORKLOAD_KIND_MAX,
};

/* "deployments", "daemonsets", "statefulsets" (the resource in /apis/apps/v1/namespaces/kube-system/). */
const char *cm_workload_resource(enum cm_workload_kind k);

/*
 * Adds one list of kube-system workloads of one kind to r (workloads_total, workloads_unavailable,
 * workloads_not_available; sets workloads_known). Not available means: a Deployment with
 * status.availableReplicas < spec.replicas (spec.replicas defaults to 1) or condition Available
 * "False"; a DaemonSet with numberAvailable < desiredNumberScheduled; a StatefulSet with
 * readyReplicas < spec.replicas (counts that are absent are 0). 0 or -EINVAL (not a list of that kind,
 * or a count that is not an int32 of at least 0); r is unchanged on error.
 */
int cm_probe_decode_workloads(enum cm_workload_kind k, const char *body, size_t len,
                              struct cm_probe_result *r);

/*
 * The parts of a kubeconfig a probe needs, from its current-context (or its only context when
 * current-context is absent). Credentials must be embedded: certificate-authority-data,
 * client-certificate-data + client-key-data, or token (exactly one of the two). File paths, exec and
 * auth-provider plugins, username/password, proxy-url and insecure-skip-tls-verify are refused with a
 * reason, as is a server that is not https:// or carries credentials, a query or a fragment. The PEM
 * buffers are decoded from padded standard base64 without whitespace and NUL-terminated (len excludes
 * the NUL; decoded data holding a NUL byte is refused). The PEM text itself is not checked here.
 */
struct cm_kubeconfig {
        char *server; /* https://host[:port][/path], no trailing slash */
        char *tls_server_name; /* NULL when absent */
        char *ca_pem;
        size_t ca_len;
        char *cert_pem; /* NULL with a token */
        size_t cert_len;
        char *key_pem; /* secret: wiped by cm_kubeconfig_done */
        size_t key_len;
        char *token; /* secret: wiped by cm_kubeconfig_done; NULL with a client certificate */
};

#define CM_KUBECONFIG_MAX (1024 * 1024)

/*
 * Parses a kubeconfig (YAML or JSON, at most CM_KUBECONFIG_MAX bytes). Returns 0; -EINVAL with a
 * reason in error (never quoting the input: no secret can reach it) when it is malformed or not
 * usable; -EFBIG; -ENOMEM. Every copy of a secret made on the way (decoded trees, base64 text) is
 * wiped before returning. ret is written on success only, error on failure only (error may be NULL).
 */
_warn_unused_result_ int cm_kubeconfig_parse(const char *data, size_t len, struct cm_kubeconfig *ret,
                                             char *error, size_t error_size);
/* Frees and wipes; accepts a zeroed or half-built struct; leaves it zeroed. */
void cm_kubeconfig_done(struct cm_kubeconfig *k);

/* The health conditions, in the order they are rolled up. */
enum cm_health_cond {
        CM_COND_API_SERVER_AVAILABLE,
        CM_COND_NODES_READY,
        CM_COND_SYSTEM_WORKLOADS_HEALTHY,
        CM_COND_CERTIFICATES_VALID,
        CM_COND_HEALTHY,
        _CM_HEALTH_COND_MAX,
};

/* "APIServerAvailable", "NodesReady", "SystemWorkloadsHealthy", "CertificatesValid", "Healthy". */
const char *cm_health_cond_type(enum cm_health_cond c);

struct cm_health_value {
        char status[8]; /* "True", "False", "Unknown"; "" means: not yet known (never probed) */
        char reason[64]; /* CamelCase */
        char message[512];
};

struct cm_health {
        struct cm_health_value cond[_CM_HEALTH_COND_MAX];
};

struct cm_health_settings {
        unsigned failure_threshold; /* consecutive failed probes before the API server counts as down */
        unsigned cert_warning_days; /* CertificatesValid warns (reason ExpiringSoon) this long before */
};

/*
 * The conditions after a probe. prev holds the conditions before it (all "" when never probed);
 * failures is the number of consecutive probes that were not CM_PROBE_OK, this one included.
 *
 * - A failed probe below the threshold changes nothing: ret = prev (a single lost probe is no outage).
 * - A failed probe at or over the threshold: APIServerAvailable False with the outcome's name as
 *   reason (Unreachable, Unauthorized, TLSError, BadKubeconfig, Error) and its detail as message (the
 *   details of Unauthorized and BadKubeconfig as they are; those of Unreachable, TLSError and Error
 *   after a lead that says what failed and how many probes in a row, "the API server has not
 *   answered 3 probes in a row: <detail>"); the other three Unknown with reason APIServerUnavailable.
 *   A threshold of 0 counts as 1; s NULL means threshold 1 and no certificate warning.
 * - An OK probe: APIServerAvailable False/NotReady when /livez or /readyz is not 200 (message names the
 *   failing checks), else True/Available. NodesReady True/AllNodesReady when every node is Ready,
 *   False/NodesNotReady when some are not (message "N of M nodes not ready: ..."), False/NoNodes for an
 *   empty list; pressure is named in the message ("...; pressure: node-1: MemoryPressure").
 *   SystemWorkloadsHealthy True/AllAvailable or False/WorkloadsUnavailable. NodesReady and
 *   SystemWorkloadsHealthy are Unknown/NotChecked when nodes_known or workloads_known is false (the
 *   prober stops after a failing /readyz). CertificatesValid False/Expired when cert_not_after <= now,
 *   True/ExpiringSoon within cert_warning_days (message says when), True/Valid otherwise,
 *   Unknown/NotChecked when 0.
 * - Healthy is True/Healthy when the four are True (reason ExpiringSoon with its message when the
 *   certificate warns); otherwise False (Unknown when the first not-True one is Unknown) with the reason
 *   of the first not-True condition in the order above and a message joining the not-True messages
 *   ("; ", each distinct message once). Messages that do not fit end with "…". prev may be NULL (never
 *   probed); ret may be prev.
 */
void cm_health_evaluate(const struct cm_health *prev, const struct cm_probe_result *r, unsigned failures,
                        const struct cm_health_settings *s, int64_t now_sec, struct cm_health *ret);

/*
 * Loads the five conditions from a cluster's conditions JSON array (other types are ignored; missing
 * ones stay ""); a missing or unparsable input gives all "". Never fails.
 */
void cm_health_from_conditions(const char *conditions_json, struct cm_health *ret);

/* True when a and b differ in a status or reason of any condition (messages alone do not count). */
bool cm_health_changed(const struct cm_health *a, const struct cm_health *b);
