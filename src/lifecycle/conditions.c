/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <jansson.h>

#include "api/json.h"
#include "base/util.h"
#include "lifecycle/conditions.h"

char *cm_conditions_set(const char *conditions_json, const char *type, const char *status,
                        const char *reason, const char *message, uint64_t now_usec) {
        json_t *arr = NULL, *cond = NULL, *e;
        char ts[40], *out = NULL;
        size_t i;

        if (conditions_json)
                arr = json_loads(conditions_json, 0, NULL);
        if (!json_is_array(arr)) {
                json_decref(arr);
                arr = json_array();
                if (!arr)
                        return NULL;
        }
        json_array_foreach(arr, i, e) {
                if (json_is_object(e) && json_is_string(json_object_get(e, "type")) &&
                    streq(json_string_value(json_object_get(e, "type")), type)) {
                        cond = e;
                        break;
                }
        }
        cm_format_rfc3339(now_usec, ts, sizeof(ts));
        if (!cond) {
                cond = json_object();
                if (!cond || json_array_append_new(arr, cond) < 0)
                        goto out;
                if (json_object_set_new(cond, "type", json_string(type)) < 0)
                        goto out;
        }
        if (!json_is_string(json_object_get(cond, "status")) ||
            !streq(json_string_value(json_object_get(cond, "status")), status) ||
            !json_is_string(json_object_get(cond, "lastTransitionTime"))) {
                if (json_object_set_new(cond, "lastTransitionTime", json_string(ts)) < 0)
                        goto out;
        }
        if (json_object_set_new(cond, "status", json_string(status)) < 0 ||
            json_object_set_new(cond, "reason", json_string(reason ?: "")) < 0 ||
            json_object_set_new(cond, "message",
                                json_string(message ?: "") ?: json_string("(not valid UTF-8)")) < 0)
                goto out;
        out = cm_json_canonical(arr);
out:
        json_decref(arr);
        return out;
}

bool cm_conditions_is_true(const char *conditions_json, const char *type) {
        json_t *arr = conditions_json ? json_loads(conditions_json, 0, NULL) : NULL, *e;
        bool found = false;
        size_t i;

        json_array_foreach(arr, i, e) {
                const char *t = json_string_value(json_object_get(e, "type")),
                           *st = json_string_value(json_object_get(e, "status"));

                if (t && st && streq(t, type)) {
                        found = streq(st, "True");
                        break;
                }
        }
        json_decref(arr);
        return found;
}

char *cm_conditions_merge(const char *conditions_json, const char *patch_json, uint64_t now_usec) {
        json_t *patch = patch_json ? json_loads(patch_json, 0, NULL) : NULL, *e;
        char *cur = strdup(conditions_json ?: "[]");
        size_t i;

        if (!cur || !json_is_array(patch)) {
                json_decref(patch);
                return cur;
        }
        json_array_foreach(patch, i, e) {
                const char *type = json_string_value(json_object_get(e, "type")),
                           *status = json_string_value(json_object_get(e, "status"));
                char *next;

                if (!type || !status)
                        continue;
                next = cm_conditions_set(cur, type, status, json_string_value(json_object_get(e, "reason")),
                                         json_string_value(json_object_get(e, "message")), now_usec);
                free(cur);
                cur = next;
                if (!cur)
                        break;
        }
        json_decref(patch);
        return cur;
}
