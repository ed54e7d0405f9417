/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <jansson.h>

#include "base/common.h"
#include "base/strbuf.h"

/*
 * An RFC 9457 problem being built while a request is handled: the status, a type slug, a title, a
 * detail for people, and field-level errors ({field, reason}). Text put here goes to the client: it
 * never carries secrets or request bodies.
 */
struct cm_problem {
        int status; /* 0 while no problem was set */
        const char *type; /* slug appended to https://cratekube.io/problems/ */
        const char *title;
        char detail[512];
        json_t *errors; /* array of {field, reason}, or NULL */
        char operation[64]; /* the conflicting operation for 409, or "" */
};

#define CM_PROBLEM_TYPE_BASE "https://cratekube.io/problems/"

void cm_problem_init(struct cm_problem *p);
void cm_problem_done(struct cm_problem *p);
/* Sets status, type, title and detail; keeps field errors already added. Returns -EINVAL. */
_printf_(5, 6) int cm_problem_set(struct cm_problem *p, int status, const char *type, const char *title,
                                  const char *fmt, ...);
/* Adds a field error; field is a dotted path ("spec.rke.nodes[0].address"). */
_printf_(3, 4) void cm_problem_add(struct cm_problem *p, const char *field, const char *fmt, ...);
static inline bool cm_problem_has_errors(const struct cm_problem *p) {
        return p->errors && json_array_size(p->errors) > 0;
}
/* Encodes the problem (application/problem+json) into out. */
int cm_problem_encode(const struct cm_problem *p, const char *instance, struct strbuf *out);

/* The usual problems. */
int cm_problem_validation(struct cm_problem *p, const char *detail);
int cm_problem_not_found(struct cm_problem *p, const char *what, const char *name);
