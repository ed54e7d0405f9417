/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <jansson.h>

#include "api/problem.h"
#include "base/common.h"

/* Limits for untrusted JSON, checked before jansson sees the bytes. */
#define CM_JSON_MAX_DEPTH 32
#define CM_JSON_MAX_VALUES 20000
#define CM_JSON_MAX_STRING 65536

/*
 * Strict decoding of an untrusted body: depth, value count and string length bounded, duplicate keys
 * rejected, the top level must be an object, trailing garbage rejected. On failure sets a 400/422
 * problem (never quoting the input) and returns -EINVAL.
 */
int cm_json_parse_strict(const char *buf, size_t n, json_t **ret, struct cm_problem *p);
/*
 * The same with another cap on the length of a string (in bytes of the encoded text), for the few
 * documents that carry one long text (an add-on's manifests); the body cap of their route bounds it.
 */
int cm_json_parse_strict_max(const char *buf, size_t n, size_t max_string, json_t **ret,
                             struct cm_problem *p);

/*
 * Checks that obj only has members named in allowed (NULL-terminated); each unknown member is a field
 * error "<path>.<key>: unknown field". Returns false when one was found.
 */
bool cm_json_check_fields(const json_t *obj, const char *path, const char *const *allowed,
                          struct cm_problem *p);

/* Compact JSON text with sorted keys (malloc'd), NULL on allocation failure. */
char *cm_json_canonical(const json_t *v);

/* Helpers for field paths: "spec" + "engine" → "spec.engine"; index → "nodes[3]". */
void cm_json_path(char *buf, size_t size, const char *base, const char *key);
void cm_json_path_index(char *buf, size_t size, const char *base, size_t index);

/* The JSON type name for error messages ("object", "string", ...). */
const char *cm_json_type_name(const json_t *v);

/*
 * Checks that v is a string and a DNS label of at most max (1..63) characters; otherwise adds a field
 * error at field ("must be a string, not ..." or "must be a DNS label: 1-<max> characters of ...").
 */
bool cm_json_check_dns_label(const json_t *v, const char *field, size_t max, struct cm_problem *p);

/*
 * Validates a labels object at path: at most 64 entries; keys 1-63 (an optional DNS-subdomain prefix
 * and '/' allowed, 253 max in all) of [A-Za-z0-9._-]; values 0-63 of the same characters, strings.
 */
bool cm_labels_validate(const json_t *labels, const char *path, struct cm_problem *p);
