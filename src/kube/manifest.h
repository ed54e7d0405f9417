/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <jansson.h>

#include "base/common.h"

/*
 * Add-on manifests: the Kubernetes objects users hand to the service (through its HTTP API) to be
 * applied to a cluster with server-side apply. This module turns the untrusted text into validated
 * objects and puts them into apply order; it talks to no cluster.
 *
 * The text is a stream of YAML documents separated by '---', or one JSON object (when the first
 * character that is not blank is '{'). Each document converts by the rules of src/cli/yaml.h (YAML 1.2
 * core schema, duplicate keys, anchors, aliases and unknown tags refused, nesting at most
 * CM_DOCUMENT_MAX_DEPTH levels per document). Empty documents (nothing, comments only, or null) are
 * skipped; a manifest without any object is not an error here (n is 0). A document whose kind is "List", or ends in "List" and that has an "items" member, stands for
 * its items (a List inside a List is refused; the List's own metadata is ignored).
 *
 * Every object must be a mapping with:
 *   apiVersion          "v1" or "<group>/<version>": the group a DNS subdomain, the version a DNS-1035
 *                       label ("v1", "v1beta2");
 *   kind                letters and digits, starting with an uppercase letter, at most 63;
 *   metadata.name       a name cm_kube_name_valid() accepts (metadata.generateName is refused, present
 *                       or not with a name: server-side apply needs the name);
 *   metadata.namespace  optional (absent or null: none); a DNS-1123 label. Nothing is defaulted here: the
 *                       caller fills in the namespace of namespaced kinds (cm_manifest_object_set_namespace).
 * Two objects with the same identity (the group of apiVersion, kind, namespace, name) are refused: the
 * second would silently replace the first. Objects without a namespace are compared as they are; one
 * that will get the caller's namespace may still collide with one that names it.
 *
 * Limits: at most CM_MANIFEST_MAX bytes of text and CM_MANIFEST_OBJECTS_MAX objects (after Lists are
 * expanded). Error reasons name the document, the line and the field ("metadata.name") but never quote
 * a value, a key or any other text from the input: a manifest may carry secrets.
 */

#define CM_MANIFEST_MAX (8U * 1024U * 1024U)
#define CM_MANIFEST_OBJECTS_MAX 5000U

/*
 * One object of a manifest. object is owned (one reference); api_version, kind, namespace and name point
 * into it and stay valid as long as those members of object are not replaced: change the namespace
 * only through cm_manifest_object_set_namespace(), which keeps namespace pointing at the new value.
 */
struct cm_manifest_object {
        json_t *object;
        const char *api_version;
        const char *kind;
        const char *namespace; /* NULL when the document names none */
        const char *name;
        unsigned doc; /* 1-based index of the document in the stream (empty documents counted) */
        unsigned item; /* 1-based index in the document's List; 0 when the document is the object */
        unsigned line; /* line (1-based) where the document's content starts */
};

struct cm_manifest {
        struct cm_manifest_object *objects;
        size_t n;
};

/* Where and why a manifest was refused. doc, item, line and column are 0 when they do not apply. */
struct cm_manifest_error {
        unsigned doc;
        unsigned item;
        unsigned line;
        unsigned column;
        char reason[256]; /* never quotes the input */
};

/*
 * Decodes and validates a manifest (the rules above) into *ret, the objects in stream order. Returns 0;
 * -EINVAL when the text is malformed or an object is not acceptable; -EFBIG when the text is larger than
 * CM_MANIFEST_MAX or holds more than CM_MANIFEST_OBJECTS_MAX objects; -ENOMEM. On failure *err (may be
 * NULL) says where and why and *ret is not written; on success *err is not written.
 */
_warn_unused_result_ int cm_manifest_parse(const char *data, size_t len, struct cm_manifest *ret,
                                           struct cm_manifest_error *err);

/*
 * Frees every object and leaves *m empty (ready for reuse); accepts NULL and an empty manifest. The
 * strings of Secret objects (kind Secret) are wiped first, also when the caller still holds another
 * reference to such an object: take a copy (json_deep_copy) to keep one.
 */
void cm_manifest_done(struct cm_manifest *m);

/*
 * Sorts the objects into apply order; prune and delete go in the reverse order. By class, and within a
 * class in stream order (document, item):
 *   1. Namespace, then CustomResourceDefinition;
 *   2. prerequisites: PriorityClass, RuntimeClass, NetworkPolicy, ResourceQuota, LimitRange,
 *      PodSecurityPolicy, PodDisruptionBudget, ServiceAccount, Secret, ConfigMap, StorageClass,
 *      PersistentVolume, PersistentVolumeClaim, ClusterRole, ClusterRoleBinding, Role, RoleBinding, Service;
 *   3. workloads: DaemonSet, Pod, ReplicationController, ReplicaSet, Deployment, HorizontalPodAutoscaler,
 *      StatefulSet, Job, CronJob; then IngressClass, Ingress, APIService, MutatingWebhookConfiguration,
 *      ValidatingWebhookConfiguration;
 *   4. every other kind of a built-in API group;
 *   5. custom resources (any group Kubernetes itself does not serve), last.
 * Kinds are matched with their group: a "Service" of serving.knative.dev is a custom resource. The order
 * follows Helm's install order (pkg/release/util/kind_sorter.go), with Namespaces and
 * CustomResourceDefinitions moved to the front.
 */
void cm_manifest_sort(struct cm_manifest *m);

/* True for a CustomResourceDefinition (kind CustomResourceDefinition of apiextensions.k8s.io). */
bool cm_manifest_is_crd(const struct cm_manifest_object *o);

/*
 * Sets metadata.namespace to namespace (a DNS-1123 label; -EINVAL otherwise), replacing what the
 * document had, and points o->namespace at it. 0 or -ENOMEM.
 */
_warn_unused_result_ int cm_manifest_object_set_namespace(struct cm_manifest_object *o,
                                                          const char *namespace);

/* Formats an error for people: "document 3, item 2 (line 40): metadata.name is missing". */
void cm_manifest_error_format(const struct cm_manifest_error *e, char *buf, size_t size);
