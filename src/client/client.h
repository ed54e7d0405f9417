/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"

#include "base/strbuf.h"

/*
 * The HTTP client of the service's API (docs/api.md), over the libcurl easy interface: one
 * connection at a time, reused between requests. It is what the CLI talks through; nothing else in
 * the CLI knows about HTTP.
 *
 * The bearer token is copied into the client, sent only in the Authorization header, never logged,
 * and wiped when the client is freed. Redirects are not followed (the token must not travel to
 * another host) and only http:// and https:// URLs are accepted.
 *
 * Every function that fails returns a negative errno and, for transport errors, leaves a message for
 * people in cm_client_last_error() ("cannot connect to http://127.0.0.1:8080: Connection refused -
 * is `clustermgmt serve` running?"). An HTTP error status (4xx, 5xx) is not a failure of the call: it
 * is returned in the response, and cm_client_problem_decode() turns its body into a problem.
 */

/* The largest answer body kept in memory unless a request asks for another cap. */
#define CM_CLIENT_BODY_MAX (16U * 1024U * 1024U)
/* Error bodies of streaming requests are kept up to this size. */
#define CM_CLIENT_ERROR_BODY_MAX (64U * 1024U)

struct cm_client;

/*
 * A response. Header values are copies of what the server sent (NULL when absent): etag keeps its
 * quotes, so it can be passed back in If-Match as it is. body is NUL-terminated; for streaming
 * requests it only holds the body of a non-2xx answer.
 */
struct cm_client_response {
        long status;
        char *content_type;
        char *etag;
        char *location;
        bool replayed; /* Idempotent-Replayed: true */
        struct strbuf body;
};

/* Frees what a response holds (wiping the body when it was marked secret); accepts a zeroed response. */
void cm_client_response_done(struct cm_client_response *r);

/*
 * Called with each piece of a streaming 2xx answer as it arrives. Returning a negative errno aborts
 * the transfer and makes cm_client_perform() return that value.
 */
typedef int (*cm_client_chunk_fn)(const char *data, size_t n, void *userdata);

/*
 * Called about once a second while a transfer runs, also while nothing arrives (a stream that waits for
 * events), so that the caller can stop it: on a signal, or when a stream has been silent for too long.
 * Returning a negative errno aborts the transfer and makes cm_client_perform() return that value.
 */
typedef int (*cm_client_tick_fn)(void *userdata);

struct cm_client_request {
        const char *method; /* "GET", "POST", "PUT", "DELETE" */
        const char *path; /* starts with '/', segments already escaped, may carry a query */
        const char *body; /* NULL: no body; never copied by the client, so it may hold secrets */
        size_t body_len;
        const char *content_type; /* of body; default application/json */
        const char *const *headers; /* NULL or NULL-terminated "Name: value" lines */
        size_t max_body; /* 0: CM_CLIENT_BODY_MAX; a larger answer fails with -EFBIG */
        bool secret_body; /* the answer holds secrets (kubeconfig): wiped, never realloc'd */
        long timeout_sec; /* 0: 120 s, negative: none (streams) */
        cm_client_chunk_fn on_chunk; /* non-NULL: 2xx body goes here instead of into the response */
        cm_client_tick_fn on_tick; /* non-NULL: called about once a second until the transfer ends */
        void *userdata; /* of on_chunk and on_tick */
};

/*
 * Creates a client for server_url ("http://127.0.0.1:8080", a trailing slash is ignored). token may be
 * NULL (only unauthenticated routes will work); it must consist of visible ASCII characters.
 * ca_file, when not NULL, is the PEM bundle used to verify the server's certificate. Fails with -EINVAL
 * when the URL is not http:// or https:// or the token holds characters that cannot go into a header,
 * -ENOMEM, or -EIO when libcurl cannot start.
 */
_warn_unused_result_ int cm_client_new(const char *server_url, const char *token, const char *ca_file,
                                       struct cm_client **ret);
/* Wipes the token and frees the client; accepts NULL; returns NULL. */
struct cm_client *cm_client_free(struct cm_client *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct cm_client *, cm_client_free);

/* The server URL the client was created with, without a trailing slash. */
const char *cm_client_server(const struct cm_client *c);

/*
 * Sends one request and waits for the whole answer. On success (any HTTP status) fills *ret, which
 * the caller releases with cm_client_response_done(). On failure *ret is untouched, a message is
 * left in cm_client_last_error() and the result is one of: -ECONNREFUSED (nobody listens),
 * -EHOSTUNREACH (name does not resolve), -ETIMEDOUT, -EPROTO (TLS), -ECONNRESET (connection lost),
 * -EFBIG (answer larger than the cap), -EINVAL (bad URL or request), -ENOMEM, -EIO, or the value an
 * on_chunk or on_tick callback returned. A streaming request may have delivered chunks before it fails.
 */
_warn_unused_result_ int cm_client_perform(struct cm_client *c, const struct cm_client_request *req,
                                           struct cm_client_response *ret);

/* Shorthand for cm_client_perform() with a NUL-terminated JSON body (or NULL) and default limits. */
_warn_unused_result_ int cm_client_request(struct cm_client *c, const char *method, const char *path,
                                           const char *body, const char *const *headers,
                                           struct cm_client_response *ret);

/*
 * GET path and hand the 2xx answer to on_chunk piece by piece as it arrives (no total timeout), for
 * `/v1/operations/{id}/log?follow=true`. A non-2xx answer is collected into ret->body instead (at most
 * CM_CLIENT_ERROR_BODY_MAX bytes) and on_chunk is never called for it.
 */
_warn_unused_result_ int cm_client_stream(struct cm_client *c, const char *path, const char *const *headers,
                                          cm_client_chunk_fn on_chunk, void *userdata,
                                          struct cm_client_response *ret);

/* The message of the last failed call, for people; "" when there is none. Never contains the token. */
const char *cm_client_last_error(const struct cm_client *c);

/* Appends s percent-encoded as one URL path segment (everything but A-Z a-z 0-9 - . _ ~ is escaped). */
_warn_unused_result_ int cm_url_escape_segment(struct strbuf *sb, const char *s);

/* The reason phrase of an HTTP status ("Not Found"), or "HTTP error" for one it does not know. */
const char *cm_http_status_text(long status);

/* One entry of a problem's "errors" member. */
struct cm_client_problem_field {
        char *field; /* "spec.engine" */
        char *reason; /* "unknown engine 'x'; registered engines: local, rke" */
};

/*
 * An RFC 9457 problem as the API sends it. Any member may be NULL. When the answer was not
 * problem+json (a proxy's HTML page, an empty body), title is the status's reason phrase and detail
 * the first line of a text body, if any.
 */
struct cm_client_problem {
        long status;
        char *type;
        char *title;
        char *detail;
        char *instance;
        char *operation; /* set on 409 when an unfinished operation blocks the change */
        struct cm_client_problem_field *errors;
        size_t n_errors;
};

/* At most this many field errors are kept; longer strings are cut to CM_CLIENT_PROBLEM_STRING_MAX bytes. */
#define CM_CLIENT_PROBLEM_ERRORS_MAX 100U
#define CM_CLIENT_PROBLEM_STRING_MAX 1024U

/* Decodes the answer r (any status) into *ret; -ENOMEM is the only failure. */
_warn_unused_result_ int cm_client_problem_decode(const struct cm_client_response *r,
                                                  struct cm_client_problem *ret);
/* Decodes a problem from a raw body (used by cm_client_problem_decode(); exposed for tests). */
_warn_unused_result_ int cm_client_problem_decode_body(long status, const char *content_type,
                                                       const char *body, size_t len,
                                                       struct cm_client_problem *ret);
void cm_client_problem_done(struct cm_client_problem *p);
