/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"

#include "base/strbuf.h"

/*
 * An incremental parser of a server-sent event stream (text/event-stream, as the HTML standard defines
 * it), for `clustermgmt events`. Bytes are fed as they arrive, split anywhere; each complete event is
 * handed to a callback.
 *
 * Lines end in LF, CRLF or CR. A line starting with ':' is a comment (the server's keepalives). A line
 * "field: value" (one space after the colon is dropped; a line without a colon is a field with an empty
 * value) sets the event's `id`, its type (`event`) or appends to its `data`; several data lines are
 * joined with "\n". An empty line ends the event. An event without data lines is not dispatched, but its
 * id still becomes the last event id. An `id` or `event` field whose value holds a NUL byte is ignored;
 * other fields (`retry`, unknown ones) are ignored too, as is a byte order mark at the start of the
 * stream. At the end of a stream an unfinished event is dropped.
 *
 * The stream is untrusted input: a line longer than CM_SSE_LINE_MAX bytes (without its line end) fails
 * with -EMSGSIZE, an event whose data (lines joined) would grow beyond CM_SSE_EVENT_MAX bytes fails with
 * -EFBIG. Nothing else in the input is an error.
 */

#define CM_SSE_LINE_MAX (64U * 1024U)
#define CM_SSE_EVENT_MAX (64U * 1024U)

struct cm_sse_event {
        const char *type; /* the event field, or "message" when the event had none */
        const char *id; /* the last event id: this event's id field or an earlier one; "" when none */
        const char *data; /* NUL-terminated, but it may contain NUL bytes: data_len counts them */
        size_t data_len;
};

/*
 * Called with each event; the strings are the parser's and valid during the call only. A negative errno
 * stops the parser, and cm_sse_parser_feed() returns it.
 */
typedef int (*cm_sse_event_fn)(const struct cm_sse_event *ev, void *userdata);

struct cm_sse_parser {
        cm_sse_event_fn on_event;
        void *userdata;
        struct strbuf line; /* the line being read */
        struct strbuf data; /* the event's data lines, joined */
        struct strbuf type;
        struct strbuf id; /* the id field of the event not ended yet, when id_pending */
        struct strbuf last_id; /* the id as of the last ended event: what a reconnection sends */
        bool id_pending; /* the event not ended yet has an id field */
        bool has_data; /* the event has a data line (its data may still be "") */
        bool after_cr; /* the last byte was a CR: an LF right after it ends no line */
        bool started; /* the first line of the stream was seen (a byte order mark is only skipped there) */
};

/* Prepares p for a stream; it allocates nothing until bytes arrive. */
void cm_sse_parser_init(struct cm_sse_parser *p, cm_sse_event_fn on_event, void *userdata);

/*
 * Feeds the next n bytes of the stream, calling on_event for each event they end. Returns 0, or
 * -EMSGSIZE (line too long), -EFBIG (event too large), -ENOMEM, or what on_event returned. After an error
 * the stream cannot go on: only cm_sse_parser_reset() and cm_sse_parser_done() may follow.
 */
_warn_unused_result_ int cm_sse_parser_feed(struct cm_sse_parser *p, const void *buf, size_t n);

/* Starts a new stream (after a reconnection): drops a partial line and event, keeps the last event id. */
void cm_sse_parser_reset(struct cm_sse_parser *p);

/* The last event id ("" when there was none), as a reconnection sends it in Last-Event-ID. */
const char *cm_sse_parser_last_id(const struct cm_sse_parser *p);

/* Frees what the parser holds; accepts a parser that was only initialized. */
void cm_sse_parser_done(struct cm_sse_parser *p);
