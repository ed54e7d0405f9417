/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <jansson.h>

#include "base/common.h"
#include "base/strbuf.h"
#include "client/client.h"

/*
 * How the CLI shows resources: aligned tables for people (`-o table`, the default), the server's JSON
 * pretty-printed (`-o json`) or YAML (`-o yaml`). Text that came from the server is cleaned of
 * control characters before it reaches a terminal in tables and error messages.
 */

enum cm_output_format {
        CM_OUTPUT_TABLE,
        CM_OUTPUT_JSON,
        CM_OUTPUT_YAML,
};

enum cm_resource {
        CM_RESOURCE_ENVIRONMENT,
        CM_RESOURCE_CLUSTER,
        CM_RESOURCE_OPERATION,
        CM_RESOURCE_SSHKEY,
        CM_RESOURCE_SNAPSHOT,
        CM_RESOURCE_STATEFILE,
        CM_RESOURCE_SECRET,
        CM_RESOURCE_APIKEY,
        CM_RESOURCE_ROLEBINDING,
        CM_RESOURCE_ADDON,
        CM_RESOURCE_ADDON_INSTALL,
};

/* "table", "json", "yaml" → the format; -EINVAL otherwise. */
int cm_output_format_from_string(const char *s, enum cm_output_format *ret);

/*
 * Appends v to out: one resource (an object) or a list (an array of them; JSON and YAML show it as
 * {"items": [...]}). In tables, AGE is computed against now_usec; a single cluster or operation also
 * gets a few detail lines below its row (endpoint, conditions; an operation's error).
 */
_warn_unused_result_ int cm_output_render(struct strbuf *out, enum cm_output_format fmt,
                                          enum cm_resource kind, const json_t *v, uint64_t now_usec);

/* Appends v as JSON or YAML (fmt not TABLE; an array becomes {"items": [...]}). */
_warn_unused_result_ int cm_output_render_document(struct strbuf *out, enum cm_output_format fmt,
                                                   const json_t *v);

/* "45s", "3m12s", "2h5m", "3d4h", "120d": the time from created_usec to now_usec, kubectl-style. */
void cm_output_age(uint64_t created_usec, uint64_t now_usec, char *buf, size_t size);

/* Appends s with control characters (and C1 controls) replaced by '?', so it cannot drive a terminal. */
_warn_unused_result_ int cm_output_add_clean(struct strbuf *out, const char *s);

/*
 * Appends a problem for people: "error: <title>: <detail>" and one "  <field>: <reason>" line per field
 * error, each ending in a newline.
 */
_warn_unused_result_ int cm_output_problem(struct strbuf *out, const struct cm_client_problem *p);

/* Appends "k=v,k2=v2" of a labels object, or "<none>". */
_warn_unused_result_ int cm_output_labels(struct strbuf *out, const json_t *labels);

/*
 * An aligned table for people: the header row, then cells row after row. Cells are cleaned of control
 * characters and cut to CM_OUTPUT_CELL_MAX bytes at a character boundary (NULL and "" show as "-");
 * columns are as wide as their widest cell (in characters, not bytes), three spaces apart, and the last
 * one is not padded. The tables of cm_output_render() and the CLI's own tables share it.
 */
#define CM_OUTPUT_TABLE_COLUMNS_MAX 8U
#define CM_OUTPUT_CELL_MAX 256U

struct cm_output_table {
        size_t n_columns;
        size_t n_cells;
        size_t alloc;
        char **cells;
        size_t widths[CM_OUTPUT_TABLE_COLUMNS_MAX];
};

/* Starts t with its header row; -EINVAL for 0 or more than CM_OUTPUT_TABLE_COLUMNS_MAX columns, -ENOMEM. */
_warn_unused_result_ int cm_output_table_init(struct cm_output_table *t, const char *const *headers,
                                              size_t n);
/* Appends the next cell; -ENOMEM. */
_warn_unused_result_ int cm_output_table_add(struct cm_output_table *t, const char *text);
/* The rows so far, the header row included (the last one may be incomplete). */
size_t cm_output_table_rows(const struct cm_output_table *t);
/* Appends row (0: the header) to out, ending in a newline (an incomplete last row too). */
_warn_unused_result_ int cm_output_table_render_row(const struct cm_output_table *t, size_t row,
                                                    struct strbuf *out);
/* Frees the cells; accepts NULL and a zeroed or half-built table, and leaves it zeroed. */
void cm_output_table_done(struct cm_output_table *t);
