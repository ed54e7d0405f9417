/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <jansson.h>

#include "base/common.h"
#include "base/strbuf.h"
#include "monitor/health.h"

/*
 * A small synchronous client of a cluster's Kubernetes API server, for the service's own work on the
 * cluster (customer access, add-ons): raw requests, objects by (apiVersion, kind, namespace, name), and
 * server-side apply. It connects with a kubeconfig given as bytes (the admin kubeconfig from the state
 * vault), parsed by cm_kubeconfig_parse(): its CA, client certificate and key reach libcurl as blobs
 * that point into the parsed kubeconfig (CURL_BLOB_NOCOPY), a token as a header that is wiped when the
 * client goes. Nothing is written to disk.
 *
 * Transport: https only, TLS 1.2 or newer, the server verified against the kubeconfig's CA (and its
 * tls-server-name when it has one), no redirects followed, no proxy from the environment, a connect
 * timeout and a timeout per request. One easy handle per client keeps its connection between requests.
 *
 * A client is used by one thread at a time. Error texts (struct cm_kube_error) name the object and what
 * the API server said (Status.message, cleaned of control characters and redacted), never a credential.
 */

struct cm_kube;

struct cm_kube_options {
        unsigned connect_timeout_ms; /* 0: 5000 */
        unsigned timeout_ms; /* one request, connecting included; 0: 30000 */
        const char *user_agent; /* NULL: "clustermgmt/<version>" */
};

#define CM_KUBE_ERROR_MAX 640

/* Why a call failed, for people and for the caller's decisions. */
struct cm_kube_error {
        long status; /* HTTP status of the API server's answer; 0 when none came */
        char reason[64]; /* Status.reason ("NotFound", "Forbidden", "Invalid") or "" */
        char message[CM_KUBE_ERROR_MAX];
};

/* Answers larger than these are refused (-EFBIG) without being read further. */
#define CM_KUBE_OBJECT_MAX (4U * 1024U * 1024U) /* one object (get, apply) */
#define CM_KUBE_DISCOVERY_MAX (4U * 1024U * 1024U) /* one APIResourceList */

/*
 * Opens a client for the API server of a kubeconfig (YAML or JSON, at most CM_KUBECONFIG_MAX bytes; the
 * rules of cm_kubeconfig_parse() apply). No request is made yet. o may be NULL (the defaults). Returns 0;
 * -EINVAL when the kubeconfig is not usable (err says why); -ENOMEM. err may be NULL; *ret is written
 * on success only.
 */
_warn_unused_result_ int cm_kube_open(const char *kubeconfig, size_t len, const struct cm_kube_options *o,
                                      struct cm_kube **ret, struct cm_kube_error *err);
/* Closes the connection and wipes the credentials; accepts NULL; returns NULL. */
struct cm_kube *cm_kube_close(struct cm_kube *k);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct cm_kube *, cm_kube_close);

/* The parsed kubeconfig the client connects with (server, CA, tls-server-name); owned by the client. */
const struct cm_kubeconfig *cm_kube_kubeconfig(const struct cm_kube *k);

/*
 * One request: method ("GET", "POST", "PUT", "PATCH", "DELETE"), path (starting with '/', with its
 * query; already escaped: printable ASCII without spaces), an optional body of len bytes with its
 * content type (NULL: none). resp is reset and receives the answer's body up to its cap; the caller
 * chooses the cap and whether it is a secret buffer (answers that may carry secrets: tokens, Secret
 * objects).
 *
 * Returns 0 when the API server answered, whatever the status (in *ret_status). A failure to get an
 * answer is a negative errno with err set: -ETIMEDOUT; -EHOSTUNREACH (the name does not resolve, the
 * connection is refused or cannot be made); -EPROTO (TLS failed: the server's certificate does not
 * verify against the kubeconfig's CA); -EFBIG (the answer is larger than resp's cap); -EINVAL (a path
 * or method this function refuses); -ENOMEM; -EIO (anything else).
 */
_warn_unused_result_ int cm_kube_request(struct cm_kube *k, const char *method, const char *path,
                                         const char *content_type, const void *body, size_t len,
                                         long *ret_status, struct strbuf *resp, struct cm_kube_error *err);

/*
 * The negative errno of an error answer: 400 and 422 -EINVAL, 401 -EACCES, 403 -EPERM, 404 and 410
 * -ENOENT, 409 -EBUSY, 415 -EOPNOTSUPP, 429 -EAGAIN, 5xx -EIO, anything else -EPROTO.
 */
int cm_kube_status_errno(long status);

/*
 * Fills err from an error answer: its status, Status.reason and a message "<what>: the API server
 * answered <status> <reason>: <Status.message>" (the message cut to fit, control characters replaced by
 * '?', secrets redacted). what names the request for people ("apply ClusterRoleBinding/x"). Returns
 * cm_kube_status_errno(status).
 */
int cm_kube_error_from_answer(struct cm_kube_error *err, const char *what, long status, const char *body,
                              size_t len);

/* An object's identity. namespace is NULL (or "") for cluster-scoped kinds. */
struct cm_kube_ref {
        const char *api_version; /* "v1", "rbac.authorization.k8s.io/v1" */
        const char *kind; /* "ServiceAccount" */
        const char *namespace;
        const char *name;
};

/* A kind as the API server serves it. */
struct cm_kube_resource {
        char name[64]; /* the resource in paths: "serviceaccounts" */
        bool namespaced;
};

/*
 * Decodes an APIResourceList (the answer of /api/v1 or /apis/<group>/<version>, untrusted) and finds
 * kind in it (subresources and malformed entries are skipped). 0; -ENOENT when the list has no such
 * kind; -EINVAL when it is not an APIResourceList; -ENOMEM. The decoder discovery uses; fuzzed.
 */
int cm_kube_resource_list_find(const char *body, size_t len, const char *kind, struct cm_kube_resource *ret);

/*
 * Finds the resource of (apiVersion, kind) by API discovery: GET /api/v1 for "v1",
 * /apis/<group>/<version> otherwise (the APIResourceList; subresources are ignored). The answer is
 * cached per group version for the life of the client; when the kind is not in the cached list, the
 * list is read again once (a CustomResourceDefinition may have just been created). -ENOENT when the API
 * server does not serve the group version or has no such kind there; -EINVAL for a malformed apiVersion
 * or kind; the errors of cm_kube_request() otherwise.
 */
_warn_unused_result_ int cm_kube_resolve(struct cm_kube *k, const char *api_version, const char *kind,
                                         struct cm_kube_resource *ret, struct cm_kube_error *err);

/*
 * An object name or namespace as it may stand in a path segment: 1 to CM_KUBE_NAME_MAX bytes of
 * printable ASCII without ' ', '/' or '%', and not "." or "..".
 */
#define CM_KUBE_NAME_MAX 253U
bool cm_kube_name_valid(const char *s);

/*
 * The object's path ("/api/v1/namespaces/x/serviceaccounts/y"; without the name when ref->name is NULL)
 * appended to out. A namespaced kind needs a namespace; a cluster-scoped kind must have none (-EINVAL).
 * Names and namespaces are checked (1-253 printable characters, no '/', not "." or "..") and escaped.
 */
_warn_unused_result_ int cm_kube_object_path(struct cm_kube *k, const struct cm_kube_ref *ref,
                                             struct strbuf *out, struct cm_kube_error *err);

/*
 * Reads an object. Returns 0 with the object in *ret (the caller's; it may hold secrets when the kind
 * is a Secret), -ENOENT when it does not exist (nor its kind), or the errors above.
 */
_warn_unused_result_ int cm_kube_get(struct cm_kube *k, const struct cm_kube_ref *ref, json_t **ret,
                                     struct cm_kube_error *err);

/*
 * Deletes an object (dependents in the background). Returns 1 when the API server accepted the
 * deletion, 0 when there was nothing to delete (the object or its kind does not exist), or a negative
 * errno.
 */
_warn_unused_result_ int cm_kube_delete(struct cm_kube *k, const struct cm_kube_ref *ref,
                                        struct cm_kube_error *err);

/*
 * Server-side apply of one object (apiVersion, kind, metadata.name and, for namespaced kinds,
 * metadata.namespace must be set): PATCH of the object's path with Content-Type
 * application/apply-patch+yaml (the object as JSON, which is YAML) and
 * ?fieldManager=<field_manager>[&force=true][&dryRun=All]&fieldValidation=Strict (a field the
 * object's schema does not know fails the apply with 422). force takes over fields another manager
 * owns instead of failing with a conflict (409); dry_run asks the API server what the object would
 * become without changing it. On success *ret_live (may be NULL) receives the object as the API
 * server answered it. The request body is wiped after use (an object may be a Secret).
 */
_warn_unused_result_ int cm_kube_apply(struct cm_kube *k, const json_t *object, const char *field_manager,
                                       bool dry_run, bool force, json_t **ret_live,
                                       struct cm_kube_error *err);
