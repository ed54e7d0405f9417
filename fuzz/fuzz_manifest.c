/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Add-on manifests from the HTTP API (src/kube/manifest.c): any text is refused with a reason or
 * decoded into objects that satisfy what apply relies on; sorting is a permutation that puts Namespaces
 * and then CustomResourceDefinitions first; everything is freed.
 */
#include "base/common.h"

#include <jansson.h>

#include "kube/client.h"
#include "kube/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Identities are compared pairwise, and permutations checked, only for manifests this small. */
#define CHECK_PAIRS_MAX 64U

static const char *member(const json_t *obj, const char *key) {
        return json_string_value(json_object_get(obj, key));
}

static void check_object(const struct cm_manifest_object *o) {
        const json_t *metadata = json_object_get(o->object, "metadata");

        if (!json_is_object(o->object) || !json_is_object(metadata))
                __builtin_trap();
        /* The pointers are the object's own members. */
        if (o->api_version != member(o->object, "apiVersion") || o->kind != member(o->object, "kind") ||
            o->name != member(metadata, "name") || o->namespace != member(metadata, "namespace"))
                __builtin_trap();
        if (!o->api_version || !o->kind || !o->name || !cm_kube_name_valid(o->name))
                __builtin_trap();
        if (!streq(o->api_version, "v1") && !strchr(o->api_version, '/'))
                __builtin_trap();
        if (!(o->kind[0] >= 'A' && o->kind[0] <= 'Z') || strlen(o->kind) > 63)
                __builtin_trap();
        if (o->namespace && (o->namespace[0] == 0 || strlen(o->namespace) > 63))
                __builtin_trap();
        if (json_object_get(metadata, "generateName") &&
            !json_is_null(json_object_get(metadata, "generateName")))
                __builtin_trap();
        if (o->doc == 0 || o->line == 0)
                __builtin_trap();
}

static bool same_identity(const struct cm_manifest_object *a, const struct cm_manifest_object *b) {
        const char *sa = strchr(a->api_version, '/'), *sb = strchr(b->api_version, '/');
        size_t ga = sa ? (size_t) (sa - a->api_version) : 0, gb = sb ? (size_t) (sb - b->api_version) : 0;

        return ga == gb && memcmp(a->api_version, b->api_version, ga) == 0 && streq(a->kind, b->kind) &&
               streq(a->name, b->name) && streq(a->namespace ?: "", b->namespace ?: "");
}

static unsigned front_class(const struct cm_manifest_object *o) {
        if (streq(o->kind, "Namespace") && streq(o->api_version, "v1"))
                return 0;
        if (cm_manifest_is_crd(o))
                return 1;
        return 2;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct cm_manifest m = { .objects = (void *) 1 };
        struct cm_manifest_error err = {};
        json_t *before[CHECK_PAIRS_MAX];
        size_t n;
        int r;

        r = cm_manifest_parse((const char *) data, size, &m, &err);
        if (r < 0) {
                /* Every refusal says why in plain ASCII (no bytes of the input leak through), and hands out
                 * nothing. */
                if ((r != -EINVAL && r != -EFBIG && r != -ENOMEM) || err.reason[0] == 0 ||
                    m.objects != (void *) 1)
                        __builtin_trap();
                for (const char *p = err.reason; *p; p++)
                        if (*p < 0x20 || *p > 0x7e)
                                __builtin_trap();
                return 0;
        }

        n = m.n;
        if (n > CM_MANIFEST_OBJECTS_MAX || (n > 0 && !m.objects))
                __builtin_trap();
        for (size_t i = 0; i < n; i++) {
                check_object(&m.objects[i]);
                /* Stream order: by document, then List item. */
                if (i > 0 && (m.objects[i].doc < m.objects[i - 1].doc ||
                              (m.objects[i].doc == m.objects[i - 1].doc &&
                               m.objects[i].item <= m.objects[i - 1].item)))
                        __builtin_trap();
                if (n <= CHECK_PAIRS_MAX) {
                        before[i] = m.objects[i].object;
                        for (size_t j = 0; j < i; j++)
                                if (same_identity(&m.objects[i], &m.objects[j]))
                                        __builtin_trap();
                }
        }

        cm_manifest_sort(&m);
        if (m.n != n)
                __builtin_trap();
        for (size_t i = 0; i < n; i++) {
                if (i > 0 && front_class(&m.objects[i]) < front_class(&m.objects[i - 1]))
                        __builtin_trap();
                if (n <= CHECK_PAIRS_MAX) {
                        bool found = false;

                        for (size_t j = 0; j < n && !found; j++)
                                found = before[j] == m.objects[i].object;
                        if (!found)
                                __builtin_trap();
                }
                if (!m.objects[i].namespace) {
                        if (cm_manifest_object_set_namespace(&m.objects[i], "fuzz") == 0 &&
                            !streq(m.objects[i].namespace, "fuzz"))
                                __builtin_trap();
                        check_object(&m.objects[i]);
                }
        }

        cm_manifest_done(&m);
        if (m.objects || m.n)
                __builtin_trap();
        return 0;
}
