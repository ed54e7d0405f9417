/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"

/*
 * OpenID Connect bearer tokens: the verifier of the JWTs an OIDC provider (the issuer) signs, and the
 * parser of the Authorization header that carries them.
 *
 * The issuer's keys: the discovery document at <issuer>/.well-known/openid-configuration (its
 * "issuer" must equal the configured issuer byte for byte, its "jwks_uri" must be https://) names the
 * JWK set. Both are fetched with libcurl over TLS 1.2 or newer with the peer's certificate and host
 * name verified (against ca_file, or the system's CAs), https:// only, no redirects, no proxy from the
 * environment, answers bounded (64 KiB, 256 KiB). The set is fetched on first use (or by
 * cm_oidc_refresh()), fetched again when a token names a key id it does not hold (at most once per
 * refresh_min_usec, one fetch for all the threads that wait for it), and refreshed by a background
 * thread when it is older than jwks_max_age_usec while requests go on with the set they have. A
 * refresh that fails keeps the set in use.
 *
 * What a token must be to be accepted (RFC 7519, RFC 8725):
 *   - a JWS in compact form (three unpadded base64url segments), at most CM_OIDC_TOKEN_MAX bytes;
 *   - header: alg one of RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 (never "none", never
 *     HS*; EdDSA is not supported by cjose 0.6); kid present; typ absent or "JWT", "at+jwt",
 *     "application/jwt", "application/at+jwt" (case-insensitive); no crit, no cty; no duplicate
 *     members. Other members (jku, x5u, jwk, x5c ...) are ignored: keys come from the JWK set only;
 *   - the key: the JWK whose kid equals the token's, of the type the alg needs (RSA of 2048-8192
 *     bits; EC on P-256 for ES256, P-384 for ES384, P-521 for ES512), its "alg" (when present) equal
 *     to the token's, its "use" (when present) "sig", its "key_ops" (when present) holding "verify".
 *     Keys of type "oct" (shared secrets) and keys that do not fit are never used;
 *   - the signature verifies (cjose), and has the exact length of the key;
 *   - claims (a JSON object without duplicate members): iss equal to the issuer; aud the audience or
 *     an array holding it; exp present and not past (plus leeway); nbf and iat, when present, not in
 *     the future (minus leeway); with max_age_usec, iat present and not older than that (plus
 *     leeway); sub a string of 1-255 bytes; email (optional) at most 255 bytes, dropped when
 *     email_verified is false; the groups claim (optional) a string or an array of at most
 *     CM_OIDC_GROUPS_MAX strings of 1-255 bytes. Strings hold no control characters.
 *
 * Tokens that verified are remembered (by their SHA-256) until they expire, in a bounded cache
 * emptied whenever the key set changes: a token seen again costs a hash and a lookup instead of a
 * signature verification (an ES256 verification takes about 60 µs).
 *
 * Reasons: a refused token comes with a reason for people, "<check>: <what failed>", where check is
 * one of size, format, header, alg, typ, crit, cty, kid, key, signature, payload, iss, aud, exp, nbf,
 * iat, sub, email, groups (and discovery, jwks for the issuer's documents). A reason never quotes
 * the token or any value taken from it; it may name the configured issuer, audience and URLs.
 *
 * Thread safety: cm_oidc_verify() and cm_oidc_refresh() may be called from any number of threads at
 * once on one object; new and free may not race with anything else on the same object. The pure
 * functions keep no state.
 */

/* Limits of untrusted input, checked before parsing. */
#define CM_OIDC_TOKEN_MAX 8192U
#define CM_OIDC_JWKS_MAX (256U * 1024U)
#define CM_OIDC_JWKS_KEYS_MAX 100U
#define CM_OIDC_DISCOVERY_MAX (64U * 1024U)
#define CM_OIDC_GROUPS_MAX 256U
#define CM_OIDC_CLAIM_STRING_MAX 255U

/* Defaults for the configuration's zeros. */
#define CM_OIDC_LEEWAY_USEC_DEFAULT (60 * USEC_PER_SEC)
#define CM_OIDC_REFRESH_MIN_USEC_DEFAULT (30 * USEC_PER_SEC)
#define CM_OIDC_JWKS_MAX_AGE_USEC_DEFAULT (3600 * USEC_PER_SEC)
#define CM_OIDC_TIMEOUT_MS_DEFAULT 3000U
#define CM_OIDC_TOKEN_CACHE_DEFAULT 1024U
#define CM_OIDC_TOKEN_CACHE_MAX 65536U
/* Upper bounds of the configuration. */
#define CM_OIDC_LEEWAY_USEC_MAX (600 * USEC_PER_SEC)
#define CM_OIDC_MAX_AGE_USEC_MAX (366 * 24 * 3600 * USEC_PER_SEC)

struct cm_oidc_config {
        /* https URL without user:password@, query or fragment, at most 1024 bytes. */
        const char *issuer;
        /* The "aud" required (a string claim equal to it, or an array claim holding it). */
        const char *audience;
        /* PEM CA bundle that verifies the issuer's and the JWK set's hosts; NULL: the system's. */
        const char *ca_file;
        /* The claim holding the groups (its exact name, dots included); NULL: "groups". */
        const char *groups_claim;
        /* now - iat may not exceed it (plus leeway); 0: no limit. With it, a token without iat is refused. */
        uint64_t max_age_usec;
        /* Clock skew allowed on exp, nbf and iat; 0: CM_OIDC_LEEWAY_USEC_DEFAULT. */
        uint64_t leeway_usec;
        /* An unknown kid fetches the JWK set again at most this often; 0: the default (30 s). */
        uint64_t refresh_min_usec;
        /* A JWK set older than this is refreshed in the background; 0: the default (1 h). */
        uint64_t jwks_max_age_usec;
        /* Each of the discovery and JWK set requests, connect included; 0: the default (3000). */
        unsigned timeout_ms;
        /* Verified tokens remembered; 0: CM_OIDC_TOKEN_CACHE_DEFAULT; rounded up to a power of two. */
        unsigned token_cache_size;
        /* Verify every token, remember none. */
        bool token_cache_disabled;
};

/* Who a verified token speaks for. */
struct cm_oidc_principal {
        char subject[CM_OIDC_CLAIM_STRING_MAX + 1]; /* "sub", never empty */
        char email[CM_OIDC_CLAIM_STRING_MAX + 1]; /* "email", or "" (absent or not verified) */
        char **groups; /* n_groups strings, owned */
        size_t n_groups;
        uint64_t expires_usec; /* "exp" */
};

/* Frees the groups and clears the principal; accepts NULL and a zeroed principal. */
void cm_oidc_principal_done(struct cm_oidc_principal *p);

struct cm_oidc_stats {
        uint64_t jwks_fetches; /* successful fetches of the JWK set (each after a discovery) */
        uint64_t jwks_fetch_failures;
        uint64_t jwks_age_usec; /* since the set in use was fetched; 0 without one */
        unsigned jwks_keys; /* usable keys in the set in use */
        uint64_t token_cache_hits;
        uint64_t token_cache_misses;
};

struct cm_oidc;

/*
 * Checks the configuration (-EINVAL: issuer not https://, empty audience, a limit out of range, an
 * unreadable CA file ...) and creates the verifier; err gets a message for people naming the option.
 * No connection is made here. -ENOMEM, -EIO (libcurl could not start).
 */
_warn_unused_result_ int cm_oidc_new(const struct cm_oidc_config *c, struct cm_oidc **ret, char *err,
                                     size_t err_size);
/*
 * A verifier with a fixed JWK set (the document, as a provider serves it) instead of one fetched from
 * the issuer: nothing is ever fetched, an unknown kid is refused. For air-gapped setups, tests and
 * benchmarks. The issuer is only compared with "iss" (any string of 1-1024 printable bytes). -EPROTO
 * when the document is not a JWK set (err says why).
 */
_warn_unused_result_ int cm_oidc_new_with_jwks(const struct cm_oidc_config *c, const char *jwks_json,
                                               size_t jwks_n, struct cm_oidc **ret, char *err,
                                               size_t err_size);
/* Waits for a background refresh to end, frees everything. Accepts NULL; returns NULL. */
struct cm_oidc *cm_oidc_free(struct cm_oidc *o);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct cm_oidc *, cm_oidc_free);

/*
 * Verifies a token (its n bytes; not NUL-terminated necessarily) at now_usec (wall clock; 0: now)
 * and fills ret (written only on success; release with cm_oidc_principal_done()).
 *
 *   -EACCES        the token is not valid; reason says which check failed
 *   -EHOSTUNREACH  the issuer or its JWK set cannot be reached (unresolvable, refused, unreachable)
 *   -ETIMEDOUT     it did not answer in time
 *   -EPROTO        TLS failure, an HTTP status other than 200, a document that is not a discovery
 *                  document or a JWK set, an issuer that differs in discovery
 *   -ENOMEM
 * The three middle ones mean "the keys cannot be had now" (answer 503, not 401); reason names the
 * URL. They come from a fetch of this call, or of another within the last second or so (a failed
 * fetch is not repeated at once: requests get its error meanwhile).
 */
_warn_unused_result_ int cm_oidc_verify(struct cm_oidc *o, const char *token, size_t n, uint64_t now_usec,
                                        struct cm_oidc_principal *ret, char *reason, size_t reason_size);

/*
 * Fetches discovery and the JWK set now (single-flight with every other fetch) and waits for the
 * result: for start-up and readiness checks. Errors as the fetch errors of cm_oidc_verify(); 0 and
 * nothing fetched for a verifier with a fixed set.
 */
_warn_unused_result_ int cm_oidc_refresh(struct cm_oidc *o, char *err, size_t err_size);

void cm_oidc_get_stats(struct cm_oidc *o, struct cm_oidc_stats *ret);
/* The configured issuer (for logs and audit records). */
const char *cm_oidc_issuer(const struct cm_oidc *o);

/* ---- Pure parts: no state, no network (tests and fuzzing) ---- */

/*
 * True for the shape of a JWS in compact form: at most CM_OIDC_TOKEN_MAX bytes, three segments of
 * canonical unpadded base64url (the header starting as a JSON object does), the third may be empty.
 * Says nothing about validity: it tells a JWT from an API key.
 */
bool cm_oidc_looks_like_jwt(const char *token, size_t n);

/*
 * cm_oidc_verify() against a JWK set document given here, without a cache. *ret_unknown_kid (may be
 * NULL) is set to whether the token was refused because no key in the set has its kid. Returns 0,
 * -EACCES (reason), -EPROTO (the document is not a JWK set; reason "jwks: ..."), -EINVAL (the
 * configuration is invalid; reason says why), -ENOMEM.
 */
_warn_unused_result_ int cm_oidc_verify_with_jwks(const char *jwks_json, size_t jwks_n,
                                                  const struct cm_oidc_config *c, const char *token,
                                                  size_t n, uint64_t now_usec, struct cm_oidc_principal *ret,
                                                  char *reason, size_t reason_size, bool *ret_unknown_kid);

/*
 * The Authorization header value "Bearer <token>": the scheme case-insensitive, exactly one space,
 * then 1-CM_OIDC_TOKEN_MAX characters of RFC 6750 b64token (A-Z a-z 0-9 - . _ ~ + / then '=' only
 * at the end) and nothing after. On success *ret_token points into header and *ret_n is its length;
 * -EINVAL otherwise (outputs untouched).
 */
_warn_unused_result_ int cm_auth_parse_bearer(const char *header, const char **ret_token, size_t *ret_n);
