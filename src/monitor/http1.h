/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"
#include "base/strbuf.h"

/*
 * An incremental HTTP/1.1 response parser for the monitor's own client, below its TLS connections. It
 * reads the answers of remote API servers, untrusted bytes, so it is strict and bounded: it owns no
 * memory besides what it appends to the caller's body buffer (whose cap bounds the body), keeps one
 * line at a time in a fixed buffer inside the struct, and never relies on NUL-terminated input.
 *
 * The client only sends GET requests, so the body framing is RFC 9112 section 6.3 for a response to a
 * GET: 204 and 304 have none; otherwise "Transfer-Encoding: chunked" (the only transfer coding
 * accepted), else Content-Length, else the body runs until the server closes the connection.
 *
 * What it accepts, where the RFCs leave a choice:
 *   - line ends are CRLF or a bare LF; a CR anywhere else, and any other control character but HTAB
 *     in a status, header, chunk-size or trailer line, is malformed;
 *   - the status line is "HTTP/1.0" or "HTTP/1.1", one SP, three digits (100..599), then the end of
 *     the line or one SP and a reason phrase (which may be empty);
 *   - a header line starting with SP or HTAB (obs-fold), without a colon, or whose name is not a token
 *     (whitespace before the colon) is malformed;
 *   - every 1xx response but 101 is interim: its headers are checked for syntax, then discarded, and
 *     parsing starts again with the next status line; 101 is malformed (the client never asks to
 *     switch protocols);
 *   - Transfer-Encoding must appear once, with the value "chunked" (any case, with whitespace around);
 *     anything else, or Transfer-Encoding in an HTTP/1.0 response, is malformed. With it, Content-Length
 *     is ignored, but the connection is not kept (the pair is what response splitting looks like);
 *   - Content-Length is decimal digits only (leading zeros allowed) up to CM_HTTP1_LENGTH_MAX; repeated
 *     headers must carry the same value; a comma-separated list, even of identical values, is
 *     malformed (as Go's net/http, the API server's, refuses it);
 *   - a chunk size is hexadecimal (leading zeros allowed) up to CM_HTTP1_LENGTH_MAX; its extensions are
 *     ignored; the chunk's data must be followed by CRLF or LF;
 *   - trailers are checked like headers and discarded.
 *
 * Bounds: a line, without its line end, of at most CM_HTTP1_LINE_MAX bytes; at most CM_HTTP1_HEAD_MAX
 * bytes (line ends included) for all the status and header lines before the body, interim responses
 * counted too, so a server cannot send them forever; at most CM_HTTP1_HEAD_MAX bytes of trailer lines.
 * The line buffer makes the struct a little over 8 KiB: one per response in flight, not per idle
 * connection.
 */

#define CM_HTTP1_LINE_MAX (8U * 1024U)
#define CM_HTTP1_HEAD_MAX (64U * 1024U)
#define CM_HTTP1_LENGTH_MAX (UINT64_C(1) << 40)

/* Private: where the parser is. */
enum cm_http1__state {
        CM_HTTP1__STATUS_LINE,
        CM_HTTP1__HEADERS,
        CM_HTTP1__BODY_LENGTH,
        CM_HTTP1__BODY_CLOSE,
        CM_HTTP1__CHUNK_SIZE,
        CM_HTTP1__CHUNK_DATA,
        CM_HTTP1__CHUNK_CR,
        CM_HTTP1__CHUNK_LF,
        CM_HTTP1__TRAILERS,
        CM_HTTP1__DONE,
        CM_HTTP1__FAILED,
};

struct cm_http1_response {
        int status; /* 100..599 once the status line is read (0 again after an interim response) */
        bool keep_alive; /* valid when complete: the connection can carry the next request */

        /* Private parse state. */
        enum cm_http1__state state;
        int error; /* the error that failed the parse, returned again by every later call */
        struct strbuf *body;
        uint64_t remaining; /* of the Content-Length body or of the current chunk */
        uint64_t content_length;
        size_t head_bytes; /* of the head (or of the trailers) so far, line ends included */
        unsigned minor; /* HTTP/1.<minor> */
        unsigned te_count; /* Transfer-Encoding headers seen */
        bool started; /* some byte was received */
        bool te_chunked; /* the (last) Transfer-Encoding was "chunked" */
        bool cl_seen, cl_bad; /* a Content-Length was seen; one was malformed or disagreed */
        bool conn_close, conn_keep_alive; /* Connection tokens seen */
        size_t line_len;
        char line[CM_HTTP1_LINE_MAX + 1]; /* room for the CR of a line of CM_HTTP1_LINE_MAX bytes */
};

/* Prepares r for one response; the body is appended to body (whose cap bounds it: over it, -EFBIG). */
void cm_http1_response_init(struct cm_http1_response *r, struct strbuf *body);

/*
 * Feeds received bytes (data may be NULL when len is 0). Returns 1 when the response is complete
 * (*consumed says how many bytes it used; bytes after a complete response are the caller's business),
 * 0 when it needs more (all consumed), -EBADMSG when malformed, -EFBIG when the body exceeds body's cap
 * (a Content-Length or chunk size over what the cap leaves fails as soon as it is read), -ENOMEM;
 * -EINVAL when data is NULL and len is not 0 (the parser is left as it was).
 * *consumed is written on success only. Once complete, every call returns 1 with *consumed = 0; once
 * failed, every call returns the same error (the body then holds an unspecified prefix of the body).
 */
_warn_unused_result_ int cm_http1_response_feed(struct cm_http1_response *r, const char *data, size_t len,
                                                size_t *consumed);

/*
 * The peer closed the connection: 1 when that completes the response (a body delimited by the close, or
 * a response already complete), else -EBADMSG (truncated), or the error that failed the parse before.
 */
_warn_unused_result_ int cm_http1_response_eof(struct cm_http1_response *r);

/*
 * Whether any byte of the response was received: a kept connection the server closed before answering
 * (eof without a byte) is worth one retry on a new connection, a truncated answer is not.
 */
bool cm_http1_response_started(const struct cm_http1_response *r);
