/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <setjmp.h>
#include <cmocka.h>
#include <ctype.h>
#include <jansson.h>

#include "base/strbuf.h"
#include "server/router.h"

extern const char cm_openapi_json[];
extern const size_t cm_openapi_json_len;

static void lower(char *s) {
        for (; *s; s++)
                *s = (char) tolower((unsigned char) *s);
}

/* Every route of the router table is in the document, and every operation of the document is a route. */
static void test_routes_match_document(void **state) {
        json_error_t err;
        json_t *doc = json_loadb(cm_openapi_json, cm_openapi_json_len, JSON_REJECT_DUPLICATES, &err);
        json_t *paths, *item, *op;
        const char *path, *method;
        size_t in_doc = 0;

        assert_non_null(doc);
        assert_string_equal(json_string_value(json_object_get(doc, "openapi")), "3.1.0");
        paths = json_object_get(doc, "paths");
        assert_true(json_is_object(paths));

        for (size_t i = 0; i < cm_routes_count; i++) {
                char m[16];

                assert_true(cm_strlcpy(m, cm_routes[i].method, sizeof(m)) == 0);
                lower(m);
                item = json_object_get(paths, cm_routes[i].pattern);
                if (!item || !json_object_get(item, m))
                        fail_msg("route %s %s is missing from openapi.json", cm_routes[i].method,
                                 cm_routes[i].pattern);
                /* Unauthenticated routes say so in the document. */
                if (cm_routes[i].role == CM_ROLE_NONE) {
                        json_t *security = json_object_get(json_object_get(item, m), "security");
                        assert_true(json_is_array(security) && json_array_size(security) == 0);
                }
        }
        json_object_foreach(paths, path, item) {
                json_object_foreach(item, method, op) {
                        bool found = false;

                        if (streq(method, "parameters"))
                                continue;
                        in_doc++;
                        for (size_t i = 0; i < cm_routes_count; i++)
                                if (streq(cm_routes[i].pattern, path) &&
                                    strcasecmp(cm_routes[i].method, method) == 0)
                                        found = true;
                        if (!found)
                                fail_msg("openapi.json has %s %s, which no route serves", method, path);
                        assert_non_null(json_object_get(op, "operationId"));
                        assert_non_null(json_object_get(op, "responses"));
                }
        }
        assert_int_equal(in_doc, cm_routes_count);
        json_decref(doc);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_routes_match_document),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
