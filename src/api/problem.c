/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "api/problem.h"
#include "base/secret.h"

void cm_problem_init(struct cm_problem *p) {
        *p = (struct cm_problem){};
}

void cm_problem_done(struct cm_problem *p) {
        if (!p)
                return;
        json_decref(p->errors);
        p->errors = NULL;
}

int cm_problem_set(struct cm_problem *p, int status, const char *type, const char *title, const char *fmt,
                   ...) {
        va_list ap;

        p->status = status;
        p->type = type;
        p->title = title;
        va_start(ap, fmt);
        (void) vsnprintf(p->detail, sizeof(p->detail), fmt, ap);
        va_end(ap);
        (void) cm_redact(p->detail);
        return -EINVAL;
}

void cm_problem_add(struct cm_problem *p, const char *field, const char *fmt, ...) {
        char reason[512];
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(reason, sizeof(reason), fmt, ap);
        va_end(ap);
        (void) cm_redact(reason);

        if (!p->errors) {
                p->errors = json_array();
                if (!p->errors)
                        return;
        }
        /* Bounded: a hostile body must not make the error list grow without end. */
        if (json_array_size(p->errors) >= 100)
                return;
        (void) json_array_append_new(p->errors, json_pack("{s:s, s:s}", "field", field, "reason", reason));
}

int cm_problem_encode(const struct cm_problem *p, const char *instance, struct strbuf *out) {
        int r;

        r = strbuf_addf(out, "{\"type\":\"" CM_PROBLEM_TYPE_BASE "%s\",\"title\":", p->type ?: "error");
        if (r < 0)
                return r;
        r = strbuf_add_json_string(out, p->title ?: "Error");
        if (r < 0)
                return r;
        r = strbuf_addf(out, ",\"status\":%d,\"detail\":", p->status ?: 500);
        if (r < 0)
                return r;
        r = strbuf_add_json_string(out, p->detail);
        if (r < 0)
                return r;
        if (instance) {
                r = strbuf_adds(out, ",\"instance\":");
                if (r >= 0)
                        r = strbuf_add_json_string(out, instance);
                if (r < 0)
                        return r;
        }
        if (p->operation[0]) {
                r = strbuf_adds(out, ",\"operation\":");
                if (r >= 0)
                        r = strbuf_add_json_string(out, p->operation);
                if (r < 0)
                        return r;
        }
        if (cm_problem_has_errors(p)) {
                size_t i;
                json_t *e;

                r = strbuf_adds(out, ",\"errors\":[");
                if (r < 0)
                        return r;
                json_array_foreach(p->errors, i, e) {
                        r = strbuf_adds(out, i > 0 ? ",{\"field\":" : "{\"field\":");
                        if (r >= 0)
                                r = strbuf_add_json_string(out,
                                                           json_string_value(json_object_get(e, "field")));
                        if (r >= 0)
                                r = strbuf_adds(out, ",\"reason\":");
                        if (r >= 0)
                                r = strbuf_add_json_string(out,
                                                           json_string_value(json_object_get(e, "reason")));
                        if (r >= 0)
                                r = strbuf_addch(out, '}');
                        if (r < 0)
                                return r;
                }
                r = strbuf_addch(out, ']');
                if (r < 0)
                        return r;
        }
        return strbuf_addch(out, '}');
}

int cm_problem_validation(struct cm_problem *p, const char *detail) {
        return cm_problem_set(p, 422, "validation", "Invalid request", "%s", detail);
}

int cm_problem_not_found(struct cm_problem *p, const char *what, const char *name) {
        return cm_problem_set(p, 404, "not-found", "Not found", "%s '%s' not found", what, name);
}
