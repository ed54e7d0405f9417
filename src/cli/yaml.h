/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <jansson.h>

#include "base/common.h"
#include "base/strbuf.h"

/*
 * The documents people hand to the CLI (`-f spec.yaml`) and the YAML it prints (`-o yaml`).
 *
 * YAML is converted to JSON strictly, with the same limits the API applies to request bodies: at most
 * CM_DOCUMENT_MAX bytes, nesting at most CM_DOCUMENT_MAX_DEPTH levels, exactly one document,
 * duplicate keys rejected, anchors and aliases rejected (no "billion laughs"), mapping keys must be
 * scalars. Scalars follow the YAML 1.2 core schema: plain `null`, `~` or nothing is null, plain
 * `true`/`false` (also `True`, `TRUE`...) are booleans, plain integers (decimal, 0x hex, 0o octal) and
 * floats are numbers; quoted and block scalars are always strings. `.inf` and `.nan` cannot be
 * represented in JSON and are rejected, as are integers outside the 64-bit range. Tags other than
 * !!str, !!map, !!seq and the non-specific `!` are rejected.
 */

#define CM_DOCUMENT_MAX (1024U * 1024U)
#define CM_DOCUMENT_MAX_DEPTH 32U

/* Where and why a document was rejected. line and column count from 1; 0 when unknown. */
struct cm_doc_error {
        unsigned line;
        unsigned column;
        char message[256];
};

/*
 * Converts one YAML document into a new JSON value (any type at the top). Returns 0, or -EINVAL
 * (malformed or not allowed; *error says where and why), -EFBIG (larger than CM_DOCUMENT_MAX), -ENOMEM.
 * error may be NULL; it is written on failure only.
 */
_warn_unused_result_ int cm_yaml_to_json(const char *data, size_t len, json_t **ret,
                                         struct cm_doc_error *error);

/*
 * Parses a document that is JSON when its first non-blank character is '{' (decoded by jansson with
 * duplicate keys rejected and the same size and depth limits) and YAML otherwise.
 */
_warn_unused_result_ int cm_document_parse(const char *data, size_t len, json_t **ret,
                                           struct cm_doc_error *error);

/*
 * Called by cm_yaml_stream_to_json() for each document of a stream, in order. index counts the
 * documents from 1 (empty ones too), line is the line (from 1) where the document's content starts, doc
 * is the document as JSON (json null for an empty document or one that is only comments), and the
 * callback owns it from now on. A negative return stops the conversion.
 */
typedef int (*cm_yaml_document_fn)(json_t *doc, unsigned index, unsigned line, void *userdata);

/*
 * Converts a stream of YAML documents ('---' separated), each by the rules of cm_yaml_to_json() (the
 * depth counted per document), and hands each to fn as soon as it is converted. The stream may be up to
 * max bytes (the caller's limit; -EFBIG beyond). For streams of untrusted text that may carry secrets
 * (manifests): error messages never quote the input (no keys, values, tags or anchor names), only say
 * what is wrong and where. Returns 0 after the last document; -EINVAL (malformed or not allowed; *error
 * says where and why: the line counts from the start of the stream); -ENOMEM; or the negative value fn
 * returned, as is (*error is not written then). error may be NULL. A document that fails to convert is
 * freed without being wiped.
 */
_warn_unused_result_ int cm_yaml_stream_to_json(const char *data, size_t len, size_t max,
                                                cm_yaml_document_fn fn, void *userdata,
                                                struct cm_doc_error *error);

/* Formats an error as "LINE:COLUMN: MESSAGE" (or just the message) into buf. */
void cm_doc_error_format(const struct cm_doc_error *e, char *buf, size_t size);

/*
 * Appends v as a YAML document (block style, two-space indent, UTF-8, no document markers) to out.
 * Strings that would read back as something else (`"true"`, `"1.0"`, `"null"`, `"yes"`, `""`...) are
 * quoted, so that converting the output back gives the same JSON. -ENOBUFS when out's cap is reached,
 * -E2BIG when v is nested deeper than 64 levels.
 */
_warn_unused_result_ int cm_json_to_yaml(const json_t *v, struct strbuf *out);
