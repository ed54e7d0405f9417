/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <jansson.h>

#include "base/common.h"

/*
 * Helm charts as add-ons: a runner of the pinned `helm` CLI (v3, built by scripts/build-helm.sh; Helm
 * only exists in Go). Each call runs one helm command as a child process and waits for it:
 *
 *   upgrade_install  helm upgrade --install --namespace=NS --version=V [--repo=URL] [--values=-]
 *                    --create-namespace --reset-values --atomic --wait --timeout=Ns --history-max=10
 *                    --output=json -- RELEASE CHART
 *   uninstall        helm uninstall --namespace=NS --wait --timeout=Ns -- RELEASE
 *   status           helm status --namespace=NS --output=json -- RELEASE
 *   template         with a kubeconfig: upgrade_install's command with --dry-run=server instead of
 *                    --atomic --wait (what upgrade_install would apply, rendered against the cluster: its
 *                    API versions, lookup() results and the release in place); without one: helm template
 *                    --include-crds (rendered offline for the Kubernetes version helm was built for)
 * (and --kubeconfig=/proc/self/fd/3 whenever there is a kubeconfig).
 *
 * --atomic: a failed install is uninstalled again and a failed upgrade rolled back to the revision
 * before it, so a failure leaves the release as it was and running the step again starts from there.
 * --reset-values: the release gets exactly the given values over the chart's defaults, never values
 * of an earlier revision (helm reuses those when no values are given). --history-max=10 bounds the
 * release Secrets a cluster keeps.
 *
 * Inputs are checked before anything runs (-EINVAL with the reason in ret->message): release names as
 * Helm wants them (DNS-1123 subdomain syntax, at most 53 characters), namespaces (DNS-1123 labels),
 * chart names, exact chart versions and repository URLs (https:// or http:// without credentials,
 * query or fragment), or oci:// chart references instead of name + repository. Flags carry their value
 * in the same argument (--version=V) and the names come after `--`, so no input is read as a flag.
 *
 * The child: helm's argv[0] is an absolute path (no shell); its environment is only PATH
 * (/usr/local/bin:/usr/bin:/bin), HOME, TMPDIR, HELM_CACHE_HOME, HELM_CONFIG_HOME and HELM_DATA_HOME
 * under cm_helm.dir, HELM_DRIVER=secret and HELM_NO_PLUGINS=1: no KUBECONFIG, no proxy and no HELM_*
 * setting of the service's environment reaches it. stdin holds the values (JSON, which is YAML) in a
 * memfd; the kubeconfig is in another memfd that the child sees as fd CM_HELM_KUBECONFIG_FD and helm
 * reads as --kubeconfig=/proc/self/fd/3: it is never written to a file, and every buffer of ours that
 * held it or the values is wiped. Like cm_spawn_run(), the child has a process group of its own, dies
 * with the service (PR_SET_PDEATHSIG) and inherits no other descriptor; its stdout (up to
 * CM_HELM_OUTPUT_MAX) and stderr (the last CM_HELM_STDERR_MAX bytes) are read separately. It is stopped
 * (SIGTERM to the group, SIGKILL after a grace period) when should_stop says so or when it outlives its
 * deadline: helm's own --timeout plus a margin (twice the timeout plus a margin for upgrade_install,
 * whose failure may be followed by a rollback that waits as long again).
 *
 * Every call fills ret (see struct cm_helm_result); on failure ret->message says why for people: helm's
 * error (its "Error: ..." text, control characters replaced, redacted with cm_redact(), cut to fit), or
 * our own reason. Return values: 0 on success, or
 *   -EINVAL     input refused before helm ran (or a values document that is not an object)
 *   -ENOENT     the chart, chart version, chart repository or release does not exist
 *   -ETIMEDOUT  helm's wait timed out, or the child outlived its deadline and was stopped
 *   -EHOSTUNREACH  the cluster or the chart repository could not be reached
 *   -EBUSY      another helm operation on the release is in progress (pending-install/upgrade)
 *   -ECANCELED  should_stop stopped the child
 *   -ENOEXEC    the helm binary is missing or cannot be run
 *   -EFBIG      helm's output is larger than CM_HELM_OUTPUT_MAX
 *   -ENOMEM
 *   -EIO        anything else (helm failed otherwise, or answered something we cannot read)
 *
 * Calls are synchronous and may run in several threads at once (each with its own structs); releases of
 * one cluster are serialised by the caller (Helm refuses concurrent operations on one release: -EBUSY).
 */

#define CM_HELM_RELEASE_MAX 53U
#define CM_HELM_NAMESPACE_MAX 63U
#define CM_HELM_CHART_MAX 253U /* a chart name, or a whole oci:// reference */
#define CM_HELM_VERSION_MAX 64U
#define CM_HELM_REPO_URL_MAX 2048U
#define CM_HELM_MESSAGE_MAX 1024U
/* The values document (compact JSON), helm's stdout and the part of its stderr that is kept. */
#define CM_HELM_VALUES_MAX (1024U * 1024U)
#define CM_HELM_OUTPUT_MAX (32U * 1024U * 1024U)
#define CM_HELM_STDERR_MAX (64U * 1024U)
#define CM_HELM_TIMEOUT_DEFAULT_SEC 300U
#define CM_HELM_TIMEOUT_MAX_SEC 86400U
#define CM_HELM_HISTORY_MAX 10
/* The child's descriptor of the kubeconfig memfd. */
#define CM_HELM_KUBECONFIG_FD 3

/* How to run helm; the caller's, read-only during a call. */
struct cm_helm {
        /* The helm executable; NULL or "": cm_helm_default_binary(). A bare name is looked up in PATH. */
        const char *binary;
        /*
         * The service's helm directory (absolute): helm's cache (downloaded charts and repository
         * indexes), configuration and data live in cache/, config/, data/, home/ and tmp/ under it,
         * created 0700 when missing (with dir itself).
         */
        const char *dir;
        /*
         * The cluster's admin kubeconfig (bytes, at most CM_KUBECONFIG_MAX); needed by everything but
         * an offline template. Never written to disk.
         */
        const char *kubeconfig;
        size_t kubeconfig_len;
        /* helm's --timeout for its waits; 0: CM_HELM_TIMEOUT_DEFAULT_SEC; at most CM_HELM_TIMEOUT_MAX_SEC. */
        unsigned timeout_sec;
        /* Polled a few times a second while helm runs: true stops it (-ECANCELED). May be NULL. */
        bool (*should_stop)(void *userdata);
        void *userdata;
};

/* One release of one chart. */
struct cm_helm_release {
        const char *name; /* the release: [a-z0-9] at both ends, [a-z0-9.-] between, at most 53 */
        const char *namespace; /* a DNS-1123 label */
        /*
         * The chart: its name in repo (letters, digits, '.', '_', '-'; starting with a letter or digit),
         * or, with repo NULL, an OCI reference "oci://host[:port]/path/name" (no tag or digest: the
         * version is given apart).
         */
        const char *chart;
        /*
         * The exact chart version ("1.2.3", "v1.2.3-rc.1+build.5"); required by upgrade_install and
         * template: an add-on is pinned, never "the newest".
         */
        const char *version;
        const char *repo; /* "https://..." or "http://..." chart repository; NULL for an oci:// chart */
};

/*
 * What a call found out. Initialise with {} (or CM_HELM_RESULT_INIT); every call resets it first
 * (freeing a manifest a previous call left) and cm_helm_result_done() releases it.
 */
struct cm_helm_result {
        char release[CM_HELM_RELEASE_MAX + 1];
        char namespace[CM_HELM_NAMESPACE_MAX + 1];
        int64_t revision; /* 0 when unknown */
        char status[32]; /* "deployed", "failed", "pending-upgrade", "uninstalled", ... */
        char chart[CM_HELM_CHART_MAX + 1]; /* the chart's metadata.name */
        char chart_version[CM_HELM_VERSION_MAX + 1];
        char app_version[CM_HELM_VERSION_MAX + 1];
        /* uninstall: there was no such release (still success). */
        bool not_found;
        /*
         * template: the rendered manifest (YAML documents, hooks included, each with its "# Source:"
         * comment), NUL-terminated. It may hold Secrets made from the values: it is wiped when freed.
         */
        char *manifest;
        size_t manifest_len;
        char message[CM_HELM_MESSAGE_MAX];
};
#define CM_HELM_RESULT_INIT ((struct cm_helm_result){})

/* Wipes and frees the manifest and zeroes the result; accepts a zeroed one. */
void cm_helm_result_done(struct cm_helm_result *r);

/*
 * The default helm binary: `helm` next to the running binary when it exists there, else ./bin/helm
 * when it exists, else `helm` from PATH (cm_program_default_path()); computed once.
 */
const char *cm_helm_default_binary(void);

/*
 * Installs the release, or upgrades it when it exists, with values (a JSON object, may be NULL: the
 * chart's defaults). On success ret has the release's name, namespace, new revision, status
 * ("deployed"), chart name, chart version and app version, and its manifest (what it applied: the
 * reconciler's inventory of the release).
 */
int cm_helm_upgrade_install(const struct cm_helm *h, const struct cm_helm_release *rel, const json_t *values,
                            struct cm_helm_result *ret);

/*
 * Uninstalls the release (only rel->name and rel->namespace are used) and waits until its objects are
 * gone. A release that does not exist is success with ret->not_found set.
 */
int cm_helm_uninstall(const struct cm_helm *h, const struct cm_helm_release *rel,
                      struct cm_helm_result *ret);

/*
 * The release's current revision (only rel->name and rel->namespace are used): ret has its revision,
 * status and chart. -ENOENT when there is no such release.
 */
int cm_helm_status(const struct cm_helm *h, const struct cm_helm_release *rel, struct cm_helm_result *ret);

/*
 * The manifest upgrade_install would apply, in ret->manifest, without changing anything: rendered by
 * the cluster's API server (dry run) when h has a kubeconfig, else offline (see above). With a
 * kubeconfig ret also has the revision and chart the upgrade would make.
 */
int cm_helm_template(const struct cm_helm *h, const struct cm_helm_release *rel, const json_t *values,
                     struct cm_helm_result *ret);

/* --- Pure parts, exposed for the unit tests and the fuzz target. --- */

/* Input checks: true when helm may be given the string (see above and struct cm_helm_release). */
bool cm_helm_release_name_valid(const char *s);
bool cm_helm_namespace_valid(const char *s);
bool cm_helm_chart_name_valid(const char *s);
bool cm_helm_oci_ref_valid(const char *s);
bool cm_helm_version_valid(const char *s);
bool cm_helm_repo_url_valid(const char *s);

/*
 * Checks a release for an action: name and namespace always; chart, version and repo (or an oci://
 * chart without repo) when with_chart. -EINVAL with the reason in error (may be NULL).
 */
int cm_helm_release_check(const struct cm_helm_release *rel, bool with_chart, char *error,
                          size_t error_size);

/*
 * Reads a release as `helm ... --output json` prints it (untrusted: at most CM_HELM_OUTPUT_MAX bytes)
 * into ret's release, namespace, revision, status, chart, chart_version and app_version. When
 * with_manifest, ret->manifest receives its manifest followed by its hooks' manifests ("---\n#
 * Source: <path>\n<manifest>"). -EINVAL when it is not such a document; -ENOMEM; -ENOBUFS when a name
 * does not fit. ret is written on success only (reset it before).
 */
int cm_helm_release_parse(const char *text, size_t len, bool with_manifest, struct cm_helm_result *ret);

/*
 * Turns helm's stderr into a message for people (its last "Error: " text, or the last part of the
 * output when there is none; control characters replaced, redacted, cut to fit in message) and returns
 * the negative errno it means (see above: -ENOENT, -ETIMEDOUT, -EHOSTUNREACH, -EBUSY, else -EIO).
 */
int cm_helm_error_parse(const char *text, char *message, size_t size);
