/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"

struct cm_req;

enum cm_role {
        CM_ROLE_NONE, /* no authentication (health, metrics, openapi) */
        CM_ROLE_VIEWER,
        CM_ROLE_OPERATOR,
        CM_ROLE_ADMIN,
};

/*
 * Where the route's role is checked: in the environment of the path ({env}, the first parameter),
 * in the environment of the operation named by the path ({id}), in every environment (the
 * principal's global role: environments, API keys, role bindings, audit), or anywhere (any
 * authenticated principal: lists the handler narrows to the caller's environments). A caller without
 * any role in the environment gets 404, as if it did not exist.
 */
enum cm_scope {
        CM_SCOPE_GLOBAL,
        CM_SCOPE_ENV,
        CM_SCOPE_OPERATION,
        CM_SCOPE_ANY,
};

typedef void (*cm_handler)(struct cm_req *req);

/*
 * One row per route: the table is the single place that says which routes exist, which role each
 * needs, and what the metrics call it. tests/unit/test_openapi.c checks that it and openapi.json
 * describe the same routes.
 */
struct cm_route {
        const char *method;
        const char *pattern; /* "/v1/environments/{env}/clusters/{name}" */
        cm_handler handler;
        enum cm_role role;
        enum cm_scope scope;
        bool streams; /* may answer with a stream (not counted in the duration histogram) */
        bool secret; /* answers a secret (kubeconfig, state file): every read is audited */
        size_t max_body; /* the request body cap when larger than the server's; 0: the server's */
};

#define CM_ROUTE_MAX_PARAMS 4

extern const struct cm_route cm_routes[];
extern const size_t cm_routes_count;

/*
 * Finds the route for method and path; fills params (pointers into the caller's copy of path, which
 * this function splits in place). Returns the route, or NULL with *ret_path_matched telling whether
 * some route has this path with another method (405 rather than 404).
 */
const struct cm_route *cm_route_match(const char *method, char *path, char *params[CM_ROUTE_MAX_PARAMS],
                                      size_t *ret_n_params, bool *ret_path_matched);
size_t cm_route_index(const struct cm_route *r);
