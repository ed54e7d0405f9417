/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <jansson.h>

#include "base/common.h"
#include "policy/policy.h"

/*
 * The client of a remote Policy Management Service that speaks OPA's REST data API
 * (docs/policy.md, "Remote mode"): POST <url> {"input": <policy input>} over HTTPS with a bearer
 * token, answered by {"result": {"deny": [...], "warn": [...]}} (decoded by
 * cm_policy_decision_decode()).
 *
 * Transport: TLS 1.2 or newer with the peer's certificate and host name verified (against ca_file,
 * or the system's CAs); plain http:// only to a loopback host. Redirects are not followed (the
 * token must not travel to another host) and proxy environment variables are ignored. Connections
 * are kept open and reused between evaluations (a pool of libcurl handles, one per concurrent
 * evaluation, sharing TLS sessions).
 *
 * The token: the first line of token_file (a trailing "\r\n" or "\n" dropped), 1-4096 printable
 * ASCII characters without blanks. It is read at open, and read again before an evaluation when the
 * file's identity, size or modification time changed, so that it can be rotated (preferably by
 * renaming a new file over the old one) without a restart; when the new content cannot be read or is
 * not a token, the previous token stays in use and the file is read again at the next evaluation.
 * It is held in memory only, sent only in the Authorization header, never put into a message, and
 * wiped when it is replaced and at close.
 *
 * Thread safety: cm_policy_remote_evaluate() may be called from any number of threads at once on one
 * object; open and close may not race with anything else on the same object.
 */

/* The whole request, connect included, when the configuration says 0. */
#define CM_POLICY_REMOTE_TIMEOUT_MS_DEFAULT 2000U
/* Larger answers are not decisions (-EBADMSG). */
#define CM_POLICY_REMOTE_ANSWER_MAX (1024U * 1024U)
/* The rule id given to a violation the service reported as a bare message string. */
#define CM_POLICY_RULE_UNNAMED "policy"

struct cm_policy_remote_config {
        const char *url; /* full URL: https://opa.example:8181/v1/data/cratekube/cluster */
        const char *token_file; /* bearer token file (first line; trailing newline dropped), or NULL */
        const char *ca_file; /* CA bundle that verifies the server, or NULL for the system's */
        unsigned timeout_ms; /* whole request incl. connect; 0 = CM_POLICY_REMOTE_TIMEOUT_MS_DEFAULT */
};

struct cm_policy_remote;

/*
 * Checks the configuration and reads the token. Fails with -EINVAL for a URL that is not
 * https:// (or http:// to 127.0.0.0/8, ::1 or localhost), carries user:password@, a fragment, or no
 * path; with the errno of the failed open/read (-ENOENT, -EACCES ...) or -EINVAL (empty, not a
 * token, not a file) for the token file and the CA file; -ENOMEM, -EIO (libcurl could not start).
 * On failure a message for people naming the option's value (the URL, the file's path) is left in
 * err (when err_size > 0); it never holds the token. No connection is made here.
 */
_warn_unused_result_ int cm_policy_remote_open(const struct cm_policy_remote_config *c,
                                               struct cm_policy_remote **ret, char *err, size_t err_size);

/* Closes the connections and wipes the token. Accepts NULL; returns NULL. */
struct cm_policy_remote *cm_policy_remote_close(struct cm_policy_remote *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct cm_policy_remote *, cm_policy_remote_close);

/*
 * POSTs {"input": input} to the URL and decodes the decision into ret (written only on success; the
 * caller releases it with cm_policy_decision_done()). Unlike cm_policy_decision_decode(), an answer
 * without "result" is not a decision here: that is what OPA answers for a package path that holds
 * no rules, and taking it for "no violations" would let every change through.
 *
 * Errors (negative errno), each with a message for people in err (when err_size > 0) that names the
 * URL and never holds the token:
 *   -ETIMEDOUT     no complete answer within the timeout (connect included)
 *   -ECONNREFUSED  nothing listens there (the service is down)
 *   -EHOSTUNREACH  the host name does not resolve, or the host or network is unreachable
 *   -EACCES        HTTP 401 or 403: the token is missing, wrong or not allowed
 *   -EPROTO        TLS failure (unverifiable certificate, wrong host name, unusable CA file), any
 *                  other non-2xx status, a connection closed before the answer was complete
 *   -EBADMSG       the answer is not a decision (not JSON, wrong shape, no result, too large)
 *   -ENOMEM, -EINVAL (input cannot be encoded as JSON), -EIO (other libcurl failures)
 */
_warn_unused_result_ int cm_policy_remote_evaluate(struct cm_policy_remote *r, const json_t *input,
                                                   struct cm_policy_decision *ret, char *err,
                                                   size_t err_size);

/* The URL it posts to (for logs and status pages; it carries no credentials). */
const char *cm_policy_remote_url(const struct cm_policy_remote *r);
