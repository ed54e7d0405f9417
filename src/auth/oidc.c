/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <cjose/cjose.h>
#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include "auth/oidc.h"
#include "base/fileio.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "client/curlx.h"

#define OIDC_URL_MAX 2048U
#define OIDC_ISSUER_MAX 1024U
#define OIDC_AUDIENCE_MAX 1024U
#define OIDC_CLAIM_NAME_MAX 128U
#define OIDC_KID_MAX 256U
#define OIDC_CA_FILE_MAX (4U * 1024U * 1024U)
#define OIDC_WELL_KNOWN "/.well-known/openid-configuration"
/* A fetch that failed is not repeated sooner (requests get its error meanwhile). */
#define OIDC_RETRY_USEC (1 * USEC_PER_SEC)
/* Bounds of the documents: a header, the claims, discovery, a JWK set. */
#define OIDC_HEADER_DEPTH 4U
#define OIDC_HEADER_VALUES 256U
#define OIDC_CLAIMS_DEPTH 16U
#define OIDC_CLAIMS_VALUES 4096U
#define OIDC_DOC_DEPTH 16U
#define OIDC_DOC_VALUES 20000U
/* RSA moduli accepted, in bits; public exponents up to 64 bits. */
#define OIDC_RSA_BITS_MIN 2048U
#define OIDC_RSA_BITS_MAX 8192U
#define OIDC_RSA_E_MAX 8U
#define OIDC_AUD_MAX 64U
/* 9999-12-31T23:59:59Z: later NumericDates are not dates. */
#define OIDC_NUMERICDATE_MAX INT64_C(253402300799)

_printf_(3, 4) static void reason_fmt(char *buf, size_t size, const char *fmt, ...) {
        va_list ap;

        if (!buf || size == 0)
                return;
        va_start(ap, fmt);
        (void) vsnprintf(buf, size, fmt, ap);
        va_end(ap);
}

/*
 * Leaves a message for people in buf (when there is room) and evaluates to r; a macro, so that static
 * analyzers see the value returned.
 */
#define reason_set(buf, size, r, ...) (reason_fmt((buf), (size), __VA_ARGS__), (r))

static void reason_clear(char *buf, size_t size) {
        if (buf && size > 0)
                buf[0] = 0;
}

/* -------------------------------------------------------------------------------------------------
 * Base64url (RFC 4648 §5) without padding, canonical: the unused bits of the last character are zero.
 */

/* The value of each base64url character plus one; 0 for every other byte. */
static const uint8_t b64u_table[256] = {
        ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,  ['H'] = 8,
        ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
        ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
        ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
        ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
        ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
        ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
        ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['-'] = 63, ['_'] = 64
};

static int b64u_value(unsigned char c) {
        return (int) b64u_table[c] - 1;
}

static bool b64u_valid(const char *s, size_t n) {
        int last = 0;

        if (n % 4 == 1)
                return false;
        for (size_t i = 0; i < n; i++) {
                last = b64u_value((unsigned char) s[i]);
                if (last < 0)
                        return false;
        }
        if (n % 4 == 2)
                return (last & 0x0F) == 0;
        if (n % 4 == 3)
                return (last & 0x03) == 0;
        return true;
}

static size_t b64u_decoded_len(size_t n) {
        return n / 4 * 3 + (n % 4 > 1 ? n % 4 - 1 : 0);
}

/* Decodes a segment that b64u_valid() accepted into out (b64u_decoded_len(n) bytes). */
static void b64u_decode(const char *s, size_t n, uint8_t *out) {
        uint32_t acc = 0;
        unsigned bits = 0;
        size_t o = 0;

        for (size_t i = 0; i < n; i++) {
                acc = (acc << 6) | (uint32_t) b64u_value((unsigned char) s[i]);
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[o++] = (uint8_t) (acc >> bits);
                }
        }
}

/* A decoded copy of a string member that is canonical base64url, or -EINVAL. */
static int b64u_member(const json_t *obj, const char *name, uint8_t **ret, size_t *ret_n) {
        const json_t *v = json_object_get(obj, name);
        const char *s;
        uint8_t *buf;
        size_t n;

        if (!json_is_string(v))
                return -EINVAL;
        s = json_string_value(v);
        n = json_string_length(v);
        if (n == 0 || !b64u_valid(s, n))
                return -EINVAL;
        buf = malloc(b64u_decoded_len(n) + 1);
        if (!buf)
                return -ENOMEM;
        b64u_decode(s, n, buf);
        *ret = buf;
        *ret_n = b64u_decoded_len(n);
        return 0;
}

/* -------------------------------------------------------------------------------------------------
 * Bounded JSON
 */

/*
 * Parses an untrusted JSON object: nesting and value count bounded before jansson sees the bytes,
 * duplicate members refused. -EBADMSG with *ret_why (a phrase that never quotes the input).
 */
static int json_object_load(const char *buf, size_t n, unsigned max_depth, unsigned max_values, json_t **ret,
                            const char **ret_why) {
        unsigned depth = 0, values = 0;
        bool in_string = false, escape = false;
        json_error_t err;
        json_t *v;

        for (size_t i = 0; i < n; i++) {
                char c = buf[i];

                if (in_string) {
                        if (escape)
                                escape = false;
                        else if (c == '\\')
                                escape = true;
                        else if (c == '"')
                                in_string = false;
                        continue;
                }
                if (c == '"') {
                        in_string = true;
                        values++;
                } else if (c == '[' || c == '{') {
                        if (++depth > max_depth) {
                                *ret_why = "nested too deeply";
                                return -EBADMSG;
                        }
                        values++;
                } else if (c == ']' || c == '}') {
                        if (depth > 0)
                                depth--;
                } else if (c == ',') {
                        values++;
                }
                if (values > max_values) {
                        *ret_why = "has too many values";
                        return -EBADMSG;
                }
        }
        v = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &err);
        if (!v) {
                *ret_why = json_error_code(&err) == json_error_duplicate_key ? "has a member twice"
                                                                             : "is not valid JSON";
                return -EBADMSG;
        }
        if (!json_is_object(v)) {
                json_decref(v);
                *ret_why = "is not a JSON object";
                return -EBADMSG;
        }
        *ret = v;
        return 0;
}

/* 1..max bytes without control characters (jansson checked the UTF-8). */
static bool claim_string_ok(const json_t *v, size_t max) {
        const char *s;
        size_t n;

        if (!json_is_string(v))
                return false;
        s = json_string_value(v);
        n = json_string_length(v);
        if (n == 0 || n > max || strlen(s) != n)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f)
                        return false;
        return true;
}

/* -------------------------------------------------------------------------------------------------
 * Algorithms and keys
 */

enum key_family {
        FAMILY_RSA,
        FAMILY_EC,
};

enum curve {
        CURVE_NONE,
        CURVE_P256,
        CURVE_P384,
        CURVE_P521,
};

static const struct {
        const char *name;
        size_t coordinate; /* bytes */
} curves[] = {
        [CURVE_NONE] = { "", 0 },
        [CURVE_P256] = { "P-256", 32 },
        [CURVE_P384] = { "P-384", 48 },
        [CURVE_P521] = { "P-521", 66 },
};

struct alg {
        const char *name;
        enum key_family family;
        enum curve curve;
};

/* The only algorithms accepted: asymmetric signatures (RFC 7518 §3.1). */
static const struct alg algs[] = {
        { "RS256", FAMILY_RSA, CURVE_NONE }, { "RS384", FAMILY_RSA, CURVE_NONE },
        { "RS512", FAMILY_RSA, CURVE_NONE }, { "PS256", FAMILY_RSA, CURVE_NONE },
        { "PS384", FAMILY_RSA, CURVE_NONE }, { "PS512", FAMILY_RSA, CURVE_NONE },
        { "ES256", FAMILY_EC, CURVE_P256 },  { "ES384", FAMILY_EC, CURVE_P384 },
        { "ES512", FAMILY_EC, CURVE_P521 },
};

static const struct alg *alg_find(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(algs); i++)
                if (streq(algs[i].name, name))
                        return &algs[i];
        return NULL;
}

struct key {
        char *kid;
        cjose_jwk_t *jwk;
        enum key_family family;
        enum curve curve;
        const struct alg *alg; /* the JWK's "alg", or NULL */
        size_t sig_len; /* the exact signature length: RSA modulus bytes, or twice the EC coordinate */
};

/* A parsed JWK set; shared by the requests that verify with it, freed with the last reference. */
struct jwks {
        unsigned refs;
        size_t n_keys;
        size_t n_skipped; /* keys never used: oct, other types, other uses, malformed, weak */
        struct key *keys;
};

static struct jwks *jwks_free(struct jwks *ks) {
        if (!ks)
                return NULL;
        for (size_t i = 0; i < ks->n_keys; i++) {
                free(ks->keys[i].kid);
                cjose_jwk_release(ks->keys[i].jwk);
        }
        free(ks->keys);
        free(ks);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(struct jwks *, jwks_free);

static struct jwks *jwks_ref(struct jwks *ks) {
        __atomic_add_fetch(&ks->refs, 1, __ATOMIC_RELAXED);
        return ks;
}

static void jwks_unref(struct jwks *ks) {
        if (ks && __atomic_sub_fetch(&ks->refs, 1, __ATOMIC_ACQ_REL) == 0)
                jwks_free(ks);
}

static bool string_member_is(const json_t *obj, const char *name, const char *value) {
        const json_t *v = json_object_get(obj, name);

        return json_is_string(v) && streq(json_string_value(v), value);
}

/* Imports {"kty": ..., members...} (public members only) into cjose. */
static int jwk_import(const json_t *src, const char *kty, const char *const *members, cjose_jwk_t **ret) {
        _cleanup_(json_decrefp) json_t *pub = json_object();
        cjose_err cerr = {};
        cjose_jwk_t *jwk;

        if (!pub || json_object_set_new(pub, "kty", json_string(kty)) < 0)
                return -ENOMEM;
        for (const char *const *m = members; *m; m++) {
                json_t *v = json_object_get(src, *m);

                if (!v)
                        return -EINVAL;
                if (json_object_set(pub, *m, v) < 0)
                        return -ENOMEM;
        }
        jwk = cjose_jwk_import_json(pub, &cerr);
        if (!jwk)
                return -EINVAL; /* its codes cannot be told apart: an off-curve point is "no memory" */
        *ret = jwk;
        return 0;
}

/* The bits of a big-endian unsigned number. */
static size_t bignum_bits(const uint8_t *p, size_t n) {
        while (n > 0 && *p == 0) {
                p++;
                n--;
        }
        if (n == 0)
                return 0;
        return (n - 1) * 8 + (size_t) (32 - __builtin_clz((unsigned) *p));
}

static int rsa_key_parse(const json_t *k, struct key *key) {
        static const char *const members[] = { "n", "e", NULL };
        _cleanup_free_ uint8_t *n = NULL, *e = NULL;
        size_t n_len = 0, e_len = 0, bits;
        int r;

        r = b64u_member(k, "n", &n, &n_len);
        if (r < 0)
                return r;
        r = b64u_member(k, "e", &e, &e_len);
        if (r < 0)
                return r;
        bits = bignum_bits(n, n_len);
        if (bits < OIDC_RSA_BITS_MIN || bits > OIDC_RSA_BITS_MAX)
                return -EINVAL; /* weak, or a verification cost nobody needs */
        if (bignum_bits(e, e_len) < 2 || bignum_bits(e, e_len) > OIDC_RSA_E_MAX * 8 || !(e[e_len - 1] & 1))
                return -EINVAL;
        key->family = FAMILY_RSA;
        key->curve = CURVE_NONE;
        key->sig_len = (bits + 7) / 8;
        return jwk_import(k, "RSA", members, &key->jwk);
}

static int ec_key_parse(const json_t *k, struct key *key) {
        static const char *const members[] = { "crv", "x", "y", NULL };
        _cleanup_free_ uint8_t *x = NULL, *y = NULL;
        const json_t *crv = json_object_get(k, "crv");
        size_t x_len = 0, y_len = 0;
        enum curve c = CURVE_NONE;
        int r;

        for (size_t i = CURVE_P256; i < ELEMENTSOF(curves); i++)
                if (json_is_string(crv) && streq(json_string_value(crv), curves[i].name))
                        c = (enum curve) i;
        if (c == CURVE_NONE)
                return -EINVAL;
        r = b64u_member(k, "x", &x, &x_len);
        if (r < 0)
                return r;
        r = b64u_member(k, "y", &y, &y_len);
        if (r < 0)
                return r;
        if (x_len != curves[c].coordinate || y_len != curves[c].coordinate)
                return -EINVAL;
        key->family = FAMILY_EC;
        key->curve = c;
        key->sig_len = 2 * curves[c].coordinate;
        /* cjose (OpenSSL) refuses a point that is not on the curve. */
        return jwk_import(k, "EC", members, &key->jwk);
}

/*
 * One member of "keys": 1 with key filled when it can verify tokens, 0 when it is never to be used
 * (oct and other types, encryption keys, no kid, malformed, weak), -ENOMEM.
 */
static int key_parse(const json_t *k, struct key *key) {
        const json_t *kty, *use, *ops, *alg, *kid, *op;
        bool verify = false;
        size_t i;
        int r;

        if (!json_is_object(k))
                return 0;
        kty = json_object_get(k, "kty");
        use = json_object_get(k, "use");
        ops = json_object_get(k, "key_ops");
        alg = json_object_get(k, "alg");
        kid = json_object_get(k, "kid");
        if (!json_is_string(kty))
                return 0;
        if (use && !string_member_is(k, "use", "sig"))
                return 0;
        if (ops) {
                if (!json_is_array(ops))
                        return 0;
                json_array_foreach(CM_UNCONST(json_t *, ops), i, op) {
                        if (json_is_string(op) && streq(json_string_value(op), "verify"))
                                verify = true;
                }
                if (!verify)
                        return 0;
        }
        if (alg && (!json_is_string(alg) || !alg_find(json_string_value(alg))))
                return 0; /* HS*, none, encryption algorithms, or one not supported */
        if (!claim_string_ok(kid, OIDC_KID_MAX))
                return 0; /* tokens must name their key: a key without a kid is never chosen */

        if (streq(json_string_value(kty), "RSA"))
                r = rsa_key_parse(k, key);
        else if (streq(json_string_value(kty), "EC"))
                r = ec_key_parse(k, key);
        else
                return 0; /* "oct" (a shared secret) is never used; OKP is not supported by cjose 0.6 */
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return 0;
        key->alg = alg ? alg_find(json_string_value(alg)) : NULL;
        if (key->alg && (key->alg->family != key->family || key->alg->curve != key->curve)) {
                cjose_jwk_release(key->jwk);
                key->jwk = NULL;
                return 0;
        }
        key->kid = strdup(json_string_value(kid));
        if (!key->kid) {
                cjose_jwk_release(key->jwk);
                key->jwk = NULL;
                return -ENOMEM;
        }
        return 1;
}

/* Parses a JWK set document: -EPROTO with reason "jwks: ...", -ENOMEM. */
static int jwks_parse(const char *buf, size_t n, struct jwks **ret, char *reason, size_t reason_size) {
        _cleanup_(json_decrefp) json_t *doc = NULL;
        _cleanup_(jwks_freep) struct jwks *ks = NULL;
        const json_t *keys, *k;
        const char *why = NULL;
        size_t i;
        int r;

        if (n > CM_OIDC_JWKS_MAX)
                return reason_set(reason, reason_size, -EPROTO, "jwks: the key set is larger than %u bytes",
                                  CM_OIDC_JWKS_MAX);
        r = json_object_load(buf, n, OIDC_DOC_DEPTH, OIDC_DOC_VALUES, &doc, &why);
        if (r < 0)
                return reason_set(reason, reason_size, -EPROTO, "jwks: the key set %s", why);
        keys = json_object_get(doc, "keys");
        if (!json_is_array(keys))
                return reason_set(reason, reason_size, -EPROTO, "jwks: the key set has no \"keys\" array");
        if (json_array_size(keys) > CM_OIDC_JWKS_KEYS_MAX)
                return reason_set(reason, reason_size, -EPROTO, "jwks: the key set has more than %u keys",
                                  CM_OIDC_JWKS_KEYS_MAX);

        ks = new0(struct jwks, 1);
        if (!ks)
                return -ENOMEM;
        ks->refs = 1;
        ks->keys = new0(struct key, json_array_size(keys));
        if (!ks->keys)
                return -ENOMEM;
        json_array_foreach(CM_UNCONST(json_t *, keys), i, k) {
                r = key_parse(k, &ks->keys[ks->n_keys]);
                if (r < 0)
                        return r;
                if (r > 0)
                        ks->n_keys++;
                else
                        ks->n_skipped++;
        }
        *ret = TAKE_PTR(ks);
        return 0;
}

/* -------------------------------------------------------------------------------------------------
 * Configuration
 */

/* What a token is checked against; the strings belong to the caller (or the verifier). */
struct checks {
        const char *issuer;
        const char *audience;
        const char *groups_claim;
        uint64_t leeway_usec;
        uint64_t max_age_usec;
};

static bool printable_ascii(const char *s, size_t max) {
        size_t n = 0;

        for (const char *p = s; *p; p++, n++)
                if (*p <= 0x20 || *p > 0x7e)
                        return false;
        return n > 0 && n <= max;
}

static bool curl_url_has(CURLU *u, CURLUPart part) {
        char *v = NULL;
        bool has;

        has = curl_url_get(u, part, &v, 0) == CURLUE_OK && !isempty(v);
        curl_free(v);
        return has;
}

/* An https:// URL with a host, without credentials or fragment (and, unless allowed, query). */
static bool https_url_ok(const char *url, size_t max, bool query_allowed) {
        CURLU *u;
        char *scheme = NULL;
        bool ok;

        if (!url || !printable_ascii(url, max) || strncasecmp(url, "https://", 8) != 0)
                return false;
        u = curl_url();
        if (!u)
                return false;
        ok = curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
             curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
             strcasecmp(scheme, "https") == 0 && curl_url_has(u, CURLUPART_HOST) &&
             !curl_url_has(u, CURLUPART_USER) && !curl_url_has(u, CURLUPART_PASSWORD) &&
             !curl_url_has(u, CURLUPART_OPTIONS) && !curl_url_has(u, CURLUPART_FRAGMENT) &&
             (query_allowed || !curl_url_has(u, CURLUPART_QUERY));
        curl_free(scheme);
        curl_url_cleanup(u);
        return ok;
}

/* Fills ck from c (pointers into c); with need_https the issuer must be a URL discovery can use. */
static int config_check(const struct cm_oidc_config *c, bool need_https, struct checks *ck, char *err,
                        size_t err_size) {
        if (!c)
                return reason_set(err, err_size, -EINVAL, "no OIDC configuration");
        if (isempty(c->issuer))
                return reason_set(err, err_size, -EINVAL, "the OIDC issuer is empty");
        if (need_https ? !https_url_ok(c->issuer, OIDC_ISSUER_MAX, false)
                       : !printable_ascii(c->issuer, OIDC_ISSUER_MAX))
                return reason_set(err, err_size, -EINVAL,
                                  need_https ? "the OIDC issuer '%s' is not an https:// URL (without "
                                               "user:password@, query or fragment, at most 1024 bytes)"
                                             : "the OIDC issuer '%s' is not 1-1024 printable characters",
                                  strchr(c->issuer, '@') ? "<not shown>" : c->issuer);
        if (isempty(c->audience) || strlen(c->audience) > OIDC_AUDIENCE_MAX)
                return reason_set(err, err_size, -EINVAL, "the OIDC audience must be 1-%u bytes",
                                  OIDC_AUDIENCE_MAX);
        if (c->groups_claim && !printable_ascii(c->groups_claim, OIDC_CLAIM_NAME_MAX))
                return reason_set(err, err_size, -EINVAL,
                                  "the OIDC groups claim must be 1-%u printable characters",
                                  OIDC_CLAIM_NAME_MAX);
        if (c->leeway_usec > CM_OIDC_LEEWAY_USEC_MAX)
                return reason_set(err, err_size, -EINVAL,
                                  "the OIDC clock leeway may not exceed %" PRIu64 " s",
                                  CM_OIDC_LEEWAY_USEC_MAX / USEC_PER_SEC);
        if (c->max_age_usec > CM_OIDC_MAX_AGE_USEC_MAX)
                return reason_set(err, err_size, -EINVAL,
                                  "the OIDC maximum token age may not exceed %" PRIu64 " s",
                                  CM_OIDC_MAX_AGE_USEC_MAX / USEC_PER_SEC);
        if (c->token_cache_size > CM_OIDC_TOKEN_CACHE_MAX)
                return reason_set(err, err_size, -EINVAL, "the OIDC token cache may not exceed %u entries",
                                  CM_OIDC_TOKEN_CACHE_MAX);
        if (c->timeout_ms > 600000U)
                return reason_set(err, err_size, -EINVAL,
                                  "the OIDC request timeout may not exceed 600000 ms");
        *ck = (struct checks){
                .issuer = c->issuer,
                .audience = c->audience,
                .groups_claim = c->groups_claim ?: "groups",
                .leeway_usec = c->leeway_usec ?: CM_OIDC_LEEWAY_USEC_DEFAULT,
                .max_age_usec = c->max_age_usec,
        };
        return 0;
}

/* -------------------------------------------------------------------------------------------------
 * Principals
 */

void cm_oidc_principal_done(struct cm_oidc_principal *p) {
        if (!p)
                return;
        for (size_t i = 0; i < p->n_groups; i++)
                free(p->groups[i]);
        free(p->groups);
        *p = (struct cm_oidc_principal){};
}

static void principal_donep(struct cm_oidc_principal *p) {
        cm_oidc_principal_done(p);
}

static int principal_copy(const struct cm_oidc_principal *src, struct cm_oidc_principal *ret) {
        _cleanup_(principal_donep) struct cm_oidc_principal p = {};

        memcpy(p.subject, src->subject, sizeof(p.subject));
        memcpy(p.email, src->email, sizeof(p.email));
        p.expires_usec = src->expires_usec;
        if (src->n_groups > 0) {
                p.groups = new0(char *, src->n_groups);
                if (!p.groups)
                        return -ENOMEM;
                for (; p.n_groups < src->n_groups; p.n_groups++) {
                        p.groups[p.n_groups] = strdup(src->groups[p.n_groups]);
                        if (!p.groups[p.n_groups])
                                return -ENOMEM;
                }
        }
        *ret = p;
        p = (struct cm_oidc_principal){};
        return 0;
}

/* -------------------------------------------------------------------------------------------------
 * Tokens
 */

bool cm_oidc_looks_like_jwt(const char *token, size_t n) {
        const char *d1, *d2;

        if (!token || n == 0 || n > CM_OIDC_TOKEN_MAX)
                return false;
        d1 = memchr(token, '.', n);
        if (!d1)
                return false;
        d2 = memchr(d1 + 1, '.', n - (size_t) (d1 + 1 - token));
        if (!d2 || memchr(d2 + 1, '.', n - (size_t) (d2 + 1 - token)))
                return false;
        /* A JSON object's '{' encodes to 'e'; the header and the claims are never empty. */
        return d1 > token && token[0] == 'e' && d2 > d1 + 1 && b64u_valid(token, (size_t) (d1 - token)) &&
               b64u_valid(d1 + 1, (size_t) (d2 - d1 - 1)) &&
               b64u_valid(d2 + 1, n - (size_t) (d2 + 1 - token));
}

int cm_auth_parse_bearer(const char *header, const char **ret_token, size_t *ret_n) {
        const char *t;
        size_t n = 0;

        if (!header || strncasecmp(header, "Bearer ", 7) != 0)
                return -EINVAL;
        t = header + 7;
        /* b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */
        while ((t[n] >= 'A' && t[n] <= 'Z') || (t[n] >= 'a' && t[n] <= 'z') ||
               (t[n] >= '0' && t[n] <= '9') || t[n] == '-' || t[n] == '.' || t[n] == '_' || t[n] == '~' ||
               t[n] == '+' || t[n] == '/') {
                if (++n > CM_OIDC_TOKEN_MAX)
                        return -EINVAL;
        }
        if (n == 0)
                return -EINVAL;
        while (t[n] == '=') {
                if (++n > CM_OIDC_TOKEN_MAX)
                        return -EINVAL;
        }
        if (t[n] != 0)
                return -EINVAL;
        *ret_token = t;
        *ret_n = n;
        return 0;
}

/* A NumericDate (seconds since the epoch, an integer or not) in µs; false for anything else. */
static bool numericdate_usec(const json_t *v, uint64_t *ret) {
        if (json_is_integer(v)) {
                json_int_t s = json_integer_value(v);

                if (s < 0 || s > OIDC_NUMERICDATE_MAX)
                        return false;
                *ret = (uint64_t) s * USEC_PER_SEC;
                return true;
        }
        if (json_is_real(v)) {
                double s = json_real_value(v);

                if (!isfinite(s) || s < 0.0 || s > (double) OIDC_NUMERICDATE_MAX)
                        return false;
                *ret = (uint64_t) (s * 1e6);
                return true;
        }
        return false;
}

static uint64_t sat_sub(uint64_t a, uint64_t b) {
        return a > b ? a - b : 0;
}

static uint64_t usec_to_sec_ceil(uint64_t usec) {
        return (usec + USEC_PER_SEC - 1) / USEC_PER_SEC;
}

static bool typ_ok(const json_t *typ) {
        static const char *const accepted[] = { "JWT", "at+jwt", "application/jwt", "application/at+jwt" };

        if (!json_is_string(typ))
                return false;
        for (size_t i = 0; i < ELEMENTSOF(accepted); i++)
                if (strcasecmp(json_string_value(typ), accepted[i]) == 0)
                        return true;
        return false;
}

static bool key_fits(const struct key *k, const struct alg *a) {
        return k->family == a->family && k->curve == a->curve && (!k->alg || k->alg == a);
}

/* The header's checks; on success *ret_alg and *ret_key are the algorithm and the key to verify with. */
static int header_check(const struct jwks *ks, const char *seg, size_t seg_n, const struct alg **ret_alg,
                        const struct key **ret_key, char *reason, size_t reason_size,
                        bool *ret_unknown_kid) {
        _cleanup_(json_decrefp) json_t *h = NULL;
        _cleanup_free_ char *buf = NULL;
        const json_t *alg, *kid, *typ;
        const struct alg *a;
        const char *why = NULL, *name;
        size_t n = b64u_decoded_len(seg_n);
        bool kid_found = false;
        int r;

        buf = malloc(n + 1);
        if (!buf)
                return -ENOMEM;
        b64u_decode(seg, seg_n, (uint8_t *) buf);
        r = json_object_load(buf, n, OIDC_HEADER_DEPTH, OIDC_HEADER_VALUES, &h, &why);
        if (r < 0)
                return reason_set(reason, reason_size, -EACCES, "header: the token's header %s", why);

        alg = json_object_get(h, "alg");
        if (!json_is_string(alg))
                return reason_set(reason, reason_size, -EACCES,
                                  "alg: the token's header names no algorithm");
        name = json_string_value(alg);
        if (strcasecmp(name, "none") == 0)
                return reason_set(reason, reason_size, -EACCES,
                                  "alg: unsigned tokens (alg none) are refused");
        if (strncasecmp(name, "HS", 2) == 0)
                return reason_set(reason, reason_size, -EACCES,
                                  "alg: tokens signed with a shared secret (HMAC, HS*) are refused");
        a = alg_find(name);
        if (!a)
                return reason_set(reason, reason_size, -EACCES,
                                  "alg: the token's algorithm is not one of RS256 RS384 RS512 PS256 PS384 "
                                  "PS512 ES256 ES384 ES512");
        typ = json_object_get(h, "typ");
        if (typ && !typ_ok(typ))
                return reason_set(reason, reason_size, -EACCES,
                                  "typ: the token's type is not JWT (nor at+jwt): another kind of token");
        if (json_object_get(h, "crit"))
                return reason_set(reason, reason_size, -EACCES,
                                  "crit: tokens with critical header extensions are refused");
        if (json_object_get(h, "cty"))
                return reason_set(reason, reason_size, -EACCES,
                                  "cty: tokens with a content type (nested tokens) are refused");
        kid = json_object_get(h, "kid");
        if (!claim_string_ok(kid, OIDC_KID_MAX))
                return reason_set(reason, reason_size, -EACCES,
                                  "kid: the token's header names no key (kid)");

        for (size_t i = 0; i < ks->n_keys; i++) {
                if (!streq(ks->keys[i].kid, json_string_value(kid)))
                        continue;
                kid_found = true;
                if (key_fits(&ks->keys[i], a)) {
                        *ret_alg = a;
                        *ret_key = &ks->keys[i];
                        return 0;
                }
        }
        if (!kid_found) {
                if (ret_unknown_kid)
                        *ret_unknown_kid = true;
                return reason_set(reason, reason_size, -EACCES,
                                  "kid: the issuer's key set has no usable key with the token's key id");
        }
        return reason_set(reason, reason_size, -EACCES,
                          "key: the issuer's key with the token's key id does not fit %s (which needs %s%s)",
                          a->name, a->family == FAMILY_RSA ? "an RSA key" : "an EC key on ",
                          curves[a->curve].name);
}

/* Verifies the signature with cjose; on success *ret is the decoded claims (wipe and free). */
static int signature_check(const char *token, size_t n, const struct key *k, uint8_t **ret, size_t *ret_n,
                           char *reason, size_t reason_size) {
        cjose_err cerr = {};
        cjose_jws_t *jws;
        uint8_t *pt = NULL, *copy;
        size_t pt_n = 0;
        int r;

        jws = cjose_jws_import(token, n, &cerr);
        if (!jws)
                return cerr.code == CJOSE_ERR_NO_MEMORY
                               ? -ENOMEM
                               : reason_set(reason, reason_size, -EACCES, "format: the token is not a JWS");
        if (!cjose_jws_verify(jws, k->jwk, &cerr)) {
                r = cerr.code == CJOSE_ERR_NO_MEMORY
                            ? -ENOMEM
                            : reason_set(reason, reason_size, -EACCES,
                                         "signature: the signature does not verify with the issuer's key");
                goto out;
        }
        if (!cjose_jws_get_plaintext(jws, &pt, &pt_n, &cerr)) {
                r = reason_set(reason, reason_size, -EACCES, "payload: the token carries no claims");
                goto out;
        }
        copy = malloc(pt_n + 1);
        if (!copy) {
                r = -ENOMEM;
                goto out;
        }
        memcpy(copy, pt, pt_n);
        copy[pt_n] = 0;
        *ret = copy;
        *ret_n = pt_n;
        r = 0;
out:
        if (pt)
                cm_wipe(pt, pt_n);
        cjose_jws_release(jws);
        return r;
}

static int groups_take(const json_t *claims, const char *name, struct cm_oidc_principal *p, char *reason,
                       size_t reason_size) {
        const json_t *g = json_object_get(claims, name), *e;
        size_t i;

        if (!g || json_is_null(g))
                return 0;
        if (json_is_string(g)) {
                if (!claim_string_ok(g, CM_OIDC_CLAIM_STRING_MAX))
                        return reason_set(reason, reason_size, -EACCES,
                                          "groups: a group is empty, longer than %u bytes or holds control "
                                          "characters",
                                          CM_OIDC_CLAIM_STRING_MAX);
                p->groups = new0(char *, 1);
                if (!p->groups)
                        return -ENOMEM;
                p->groups[0] = strdup(json_string_value(g));
                if (!p->groups[0])
                        return -ENOMEM;
                p->n_groups = 1;
                return 0;
        }
        if (!json_is_array(g))
                return reason_set(reason, reason_size, -EACCES,
                                  "groups: the claim '%s' is neither a string nor an array of strings",
                                  name);
        if (json_array_size(g) > CM_OIDC_GROUPS_MAX)
                return reason_set(reason, reason_size, -EACCES, "groups: the token has more than %u groups",
                                  CM_OIDC_GROUPS_MAX);
        json_array_foreach(CM_UNCONST(json_t *, g), i, e) {
                if (!claim_string_ok(e, CM_OIDC_CLAIM_STRING_MAX))
                        return reason_set(reason, reason_size, -EACCES,
                                          "groups: group %zu is not a string of 1-%u bytes without control "
                                          "characters",
                                          i, CM_OIDC_CLAIM_STRING_MAX);
        }
        if (json_array_size(g) == 0)
                return 0;
        p->groups = new0(char *, json_array_size(g));
        if (!p->groups)
                return -ENOMEM;
        json_array_foreach(CM_UNCONST(json_t *, g), i, e) {
                p->groups[i] = strdup(json_string_value(e));
                if (!p->groups[i])
                        return -ENOMEM;
                p->n_groups++;
        }
        return 0;
}

static bool aud_holds(const json_t *aud, const char *audience) {
        const json_t *e;
        size_t i;

        if (json_is_string(aud))
                return streq(json_string_value(aud), audience);
        if (!json_is_array(aud) || json_array_size(aud) > OIDC_AUD_MAX)
                return false;
        json_array_foreach(CM_UNCONST(json_t *, aud), i, e) {
                if (json_is_string(e) && streq(json_string_value(e), audience))
                        return true;
        }
        return false;
}

/*
 * The claims' checks and the principal. *ret_from..*ret_until is the wall-clock window in which the
 * same checks pass again (for the token cache).
 */
static int claims_check(const struct checks *ck, const char *buf, size_t n, uint64_t now,
                        struct cm_oidc_principal *ret, uint64_t *ret_from, uint64_t *ret_until, char *reason,
                        size_t reason_size) {
        _cleanup_(principal_donep) struct cm_oidc_principal p = {};
        _cleanup_(json_decrefp) json_t *c = NULL;
        const json_t *v, *ev;
        const char *why = NULL;
        uint64_t exp = 0, nbf = 0, iat = 0, from = 0, until;
        bool has_nbf, has_iat;
        int r;

        r = json_object_load(buf, n, OIDC_CLAIMS_DEPTH, OIDC_CLAIMS_VALUES, &c, &why);
        if (r < 0)
                return reason_set(reason, reason_size, -EACCES, "payload: the token's claims %s", why);

        v = json_object_get(c, "iss");
        if (!json_is_string(v))
                return reason_set(reason, reason_size, -EACCES, "iss: the token names no issuer (iss)");
        if (!streq(json_string_value(v), ck->issuer))
                return reason_set(reason, reason_size, -EACCES, "iss: the token was not issued by '%s'",
                                  ck->issuer);
        v = json_object_get(c, "aud");
        if (!v)
                return reason_set(reason, reason_size, -EACCES, "aud: the token names no audience (aud)");
        if (!aud_holds(v, ck->audience))
                return reason_set(reason, reason_size, -EACCES, "aud: the token is not meant for '%s'",
                                  ck->audience);

        v = json_object_get(c, "exp");
        if (!v)
                return reason_set(reason, reason_size, -EACCES, "exp: the token has no expiry time (exp)");
        if (!numericdate_usec(v, &exp))
                return reason_set(reason, reason_size, -EACCES, "exp: the expiry time is not a NumericDate");
        if (now > exp + ck->leeway_usec)
                return reason_set(reason, reason_size, -EACCES,
                                  "exp: the token expired %" PRIu64 " s ago (leeway %" PRIu64 " s)",
                                  usec_to_sec_ceil(now - exp), ck->leeway_usec / USEC_PER_SEC);
        v = json_object_get(c, "nbf");
        has_nbf = v != NULL;
        if (has_nbf && !numericdate_usec(v, &nbf))
                return reason_set(reason, reason_size, -EACCES,
                                  "nbf: the not-before time is not a NumericDate");
        if (has_nbf && nbf > now + ck->leeway_usec)
                return reason_set(reason, reason_size, -EACCES,
                                  "nbf: the token is not valid for another %" PRIu64 " s (leeway %" PRIu64
                                  " s)",
                                  usec_to_sec_ceil(nbf - now), ck->leeway_usec / USEC_PER_SEC);
        v = json_object_get(c, "iat");
        has_iat = v != NULL;
        if (has_iat && !numericdate_usec(v, &iat))
                return reason_set(reason, reason_size, -EACCES, "iat: the issue time is not a NumericDate");
        if (has_iat && iat > now + ck->leeway_usec)
                return reason_set(reason, reason_size, -EACCES,
                                  "iat: the token was issued %" PRIu64 " s in the future (leeway %" PRIu64
                                  " s)",
                                  usec_to_sec_ceil(iat - now), ck->leeway_usec / USEC_PER_SEC);
        until = exp + ck->leeway_usec;
        if (ck->max_age_usec > 0) {
                if (!has_iat)
                        return reason_set(
                                reason, reason_size, -EACCES,
                                "iat: the token has no issue time (iat) and a maximum token age is "
                                "configured");
                if (now > iat + ck->max_age_usec + ck->leeway_usec)
                        return reason_set(reason, reason_size, -EACCES,
                                          "iat: the token was issued %" PRIu64
                                          " s ago, more than the maximum token age of %" PRIu64 " s",
                                          (now - iat) / USEC_PER_SEC, ck->max_age_usec / USEC_PER_SEC);
                until = MIN(until, iat + ck->max_age_usec + ck->leeway_usec);
        }
        if (has_nbf)
                from = sat_sub(nbf, ck->leeway_usec);
        if (has_iat)
                from = MAX(from, sat_sub(iat, ck->leeway_usec));

        v = json_object_get(c, "sub");
        if (!v)
                return reason_set(reason, reason_size, -EACCES, "sub: the token names no subject (sub)");
        if (!claim_string_ok(v, CM_OIDC_CLAIM_STRING_MAX))
                return reason_set(
                        reason, reason_size, -EACCES,
                        "sub: the subject is not a string of 1-%u bytes without control characters",
                        CM_OIDC_CLAIM_STRING_MAX);
        memcpy(p.subject, json_string_value(v), json_string_length(v) + 1);

        v = json_object_get(c, "email");
        if (v && !json_is_null(v)) {
                if (!claim_string_ok(v, CM_OIDC_CLAIM_STRING_MAX))
                        return reason_set(reason, reason_size, -EACCES,
                                          "email: the email is not a string of 1-%u bytes without control "
                                          "characters",
                                          CM_OIDC_CLAIM_STRING_MAX);
                /* An address the provider did not verify names nobody (some say so as a string). */
                ev = json_object_get(c, "email_verified");
                if (!json_is_false(ev) &&
                    !(json_is_string(ev) && strcasecmp(json_string_value(ev), "false") == 0))
                        memcpy(p.email, json_string_value(v), json_string_length(v) + 1);
        }

        r = groups_take(c, ck->groups_claim, &p, reason, reason_size);
        if (r < 0)
                return r;
        p.expires_usec = exp;
        *ret = p;
        p = (struct cm_oidc_principal){};
        *ret_from = from;
        *ret_until = until;
        return 0;
}

/* Every check of a token against a key set. */
static int token_check(const struct checks *ck, const struct jwks *ks, const char *token, size_t n,
                       uint64_t now, struct cm_oidc_principal *ret, uint64_t *ret_from, uint64_t *ret_until,
                       char *reason, size_t reason_size, bool *ret_unknown_kid) {
        const struct alg *a = NULL;
        const struct key *k = NULL;
        const char *d1, *d2;
        uint8_t *claims = NULL;
        size_t claims_n = 0;
        int r;

        if (!token || n == 0)
                return reason_set(reason, reason_size, -EACCES, "format: no token");
        if (n > CM_OIDC_TOKEN_MAX)
                return reason_set(reason, reason_size, -EACCES, "size: the token is longer than %u bytes",
                                  CM_OIDC_TOKEN_MAX);
        /* Before cjose sees the bytes: its decoder aborts on some padded input. */
        if (!cm_oidc_looks_like_jwt(token, n))
                return reason_set(reason, reason_size, -EACCES,
                                  "format: the token is not a JWT (three base64url segments)");
        d1 = memchr(token, '.', n);
        d2 = memchr(d1 + 1, '.', n - (size_t) (d1 + 1 - token));

        r = header_check(ks, token, (size_t) (d1 - token), &a, &k, reason, reason_size, ret_unknown_kid);
        if (r < 0)
                return r;
        if (b64u_decoded_len(n - (size_t) (d2 + 1 - token)) != k->sig_len)
                return reason_set(reason, reason_size, -EACCES,
                                  "signature: the signature's length does not fit the issuer's %s key",
                                  a->name);
        r = signature_check(token, n, k, &claims, &claims_n, reason, reason_size);
        if (r < 0)
                return r;
        r = claims_check(ck, (const char *) claims, claims_n, now, ret, ret_from, ret_until, reason,
                         reason_size);
        cm_wipe(claims, claims_n);
        free(claims);
        return r;
}

int cm_oidc_verify_with_jwks(const char *jwks_json, size_t jwks_n, const struct cm_oidc_config *c,
                             const char *token, size_t n, uint64_t now_usec, struct cm_oidc_principal *ret,
                             char *reason, size_t reason_size, bool *ret_unknown_kid) {
        _cleanup_(jwks_freep) struct jwks *ks = NULL;
        struct checks ck;
        uint64_t from, until;
        int r;

        reason_clear(reason, reason_size);
        if (ret_unknown_kid)
                *ret_unknown_kid = false;
        r = config_check(c, false, &ck, reason, reason_size);
        if (r < 0)
                return r;
        if (!jwks_json)
                return reason_set(reason, reason_size, -EPROTO, "jwks: no key set");
        r = jwks_parse(jwks_json, jwks_n, &ks, reason, reason_size);
        if (r < 0)
                return r;
        return token_check(&ck, ks, token, n, now_usec ?: cm_now_usec(), ret, &from, &until, reason,
                           reason_size, ret_unknown_kid);
}

/* -------------------------------------------------------------------------------------------------
 * The verifier: the key set fetched from the issuer, and the token cache
 */

struct cache_slot {
        uint8_t digest[32]; /* SHA-256 of the token */
        uint64_t gen; /* the key set it verified with; 0: empty */
        uint64_t valid_from, valid_until; /* wall clock: the window in which every check passes */
        struct cm_oidc_principal p;
};

struct cm_oidc {
        struct checks ck; /* points at the strings below */
        char *issuer;
        char *audience;
        char *groups_claim;
        char *ca_file;
        char *discovery_url;
        uint64_t refresh_min_usec;
        uint64_t jwks_max_age_usec;
        uint64_t retry_usec;
        long timeout_ms;
        EVP_MD *sha256;

        pthread_mutex_t lock; /* guards everything down to the cache */
        pthread_cond_t cond; /* signalled when a fetch ends */
        pthread_t refresher;
        struct jwks *jwks; /* NULL until the first fetch */
        uint64_t gen; /* counts the key sets; 0 before the first */
        uint64_t fetched_mono; /* when the set in use was fetched */
        uint64_t attempt_mono; /* when the last fetch started; 0: never */
        uint64_t n_fetches;
        uint64_t n_fetch_failures;
        int fetch_error; /* of the last fetch; 0 after a success */
        bool fetching;
        bool refresher_started; /* a background refresh thread to join */
        bool refresher_done;
        char fetch_reason[512];

        pthread_mutex_t cache_lock; /* guards slots and the counters */
        struct cache_slot *slots;
        size_t n_slots; /* a power of two; 0: no cache */
        uint64_t hits;
        uint64_t misses;

        bool fixed; /* the key set was given: never fetched */
        bool curl_initialized;
        bool lock_initialized;
        bool cond_initialized;
        bool cache_lock_initialized;
};

/* The body being received. */
struct answer {
        struct strbuf body;
        int error;
};

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userdata) {
        struct answer *a = userdata;
        size_t n = size * nmemb;
        int r;

        r = strbuf_add(&a->body, data, n);
        if (r < 0) {
                a->error = r == -ENOBUFS ? -EFBIG : r;
                return 0;
        }
        return n;
}

/* Turns a failed transfer into a negative errno and a message for people; the one place that does. */
static int fetch_map_error(const struct cm_oidc *o, const char *what, const char *url, CURL *curl,
                           CURLcode cc, const struct answer *a, size_t max, const char *curl_error,
                           char *why, size_t why_size) {
        const char *detail = curl_error[0] ? curl_error : curl_easy_strerror(cc);
        long os_errno = 0;

        if (a->error == -EFBIG || cc == CURLE_FILESIZE_EXCEEDED)
                return reason_set(why, why_size, -EPROTO, "%s: the answer of %s is larger than %zu bytes",
                                  what, url, max);
        if (a->error == -ENOMEM || cc == CURLE_OUT_OF_MEMORY)
                return reason_set(why, why_size, -ENOMEM, "%s: out of memory while fetching %s", what, url);
        (void) curl_easy_getinfo(curl, CURLINFO_OS_ERRNO, &os_errno);
        switch (cc) {
        case CURLE_COULDNT_CONNECT:
                return reason_set(why, why_size, -EHOSTUNREACH, "%s: cannot connect to %s: %s", what, url,
                                  strerror(os_errno > 0 ? (int) os_errno : ECONNREFUSED));
        case CURLE_COULDNT_RESOLVE_HOST:
                return reason_set(why, why_size, -EHOSTUNREACH, "%s: cannot resolve the host of %s: %s",
                                  what, url, detail);
        case CURLE_OPERATION_TIMEDOUT:
                return reason_set(why, why_size, -ETIMEDOUT, "%s: %s did not answer within %ld ms", what,
                                  url, o->timeout_ms);
        case CURLE_GOT_NOTHING:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_PARTIAL_FILE:
                return reason_set(why, why_size, -EPROTO,
                                  "%s: the connection to %s was closed before the answer was complete: %s",
                                  what, url, detail);
        default:
                break;
        }
        if (cm_curl_code_is_tls(cc))
                return reason_set(why, why_size, -EPROTO, "%s: TLS connection to %s failed: %s (%s)", what,
                                  url, detail,
                                  o->ca_file ? "does the CA file hold the CA that signed its certificate?"
                                             : "give the CA that signed its certificate as the CA file");
        return reason_set(why, why_size, -EPROTO, "%s: fetching %s failed: %s", what, url, detail);
}

#define SETOPT(opt, val)                                                                                    \
        do {                                                                                                \
                if (curl_easy_setopt(curl, (opt), (val)) != CURLE_OK) {                                     \
                        r = reason_set(why, why_size, -EIO, "%s: cannot set libcurl option " #opt, what);   \
                        goto out;                                                                           \
                }                                                                                           \
        } while (0)

/* GET url into out (capped at max): 0 on HTTP 200. */
static int http_get(const struct cm_oidc *o, const char *what, const char *url, size_t max,
                    struct strbuf *out, char *why, size_t why_size) {
        struct answer a = { .body = STRBUF_INIT(max) };
        struct curl_slist *headers = NULL, *l;
        char curl_error[CURL_ERROR_SIZE] = "";
        long status = 0;
        CURLcode cc;
        CURL *curl;
        int r;

        curl = curl_easy_init();
        if (!curl)
                return reason_set(why, why_size, -EIO, "%s: cannot create a libcurl handle", what);
        l = curl_slist_append(NULL, "Accept: application/json");
        if (!l) {
                r = reason_set(why, why_size, -ENOMEM, "%s: out of memory", what);
                goto out;
        }
        headers = l;
        SETOPT(CURLOPT_URL, url);
        SETOPT(CURLOPT_PROTOCOLS_STR, "https");
        SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
        SETOPT(CURLOPT_PROXY, ""); /* the environment's proxy variables do not apply */
        SETOPT(CURLOPT_NOSIGNAL, 1L);
        SETOPT(CURLOPT_USERAGENT, "clustermgmt/" CM_VERSION);
        SETOPT(CURLOPT_TIMEOUT_MS, o->timeout_ms);
        SETOPT(CURLOPT_CONNECTTIMEOUT_MS, o->timeout_ms);
        SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
        SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
        SETOPT(CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_2);
        if (o->ca_file)
                SETOPT(CURLOPT_CAINFO, o->ca_file);
        SETOPT(CURLOPT_HTTPGET, 1L);
        SETOPT(CURLOPT_HTTPHEADER, headers);
        SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) max);
        SETOPT(CURLOPT_WRITEFUNCTION, write_cb);
        SETOPT(CURLOPT_WRITEDATA, &a);
        SETOPT(CURLOPT_ERRORBUFFER, curl_error);

        cc = curl_easy_perform(curl);
        if (cc != CURLE_OK || a.error < 0) {
                r = fetch_map_error(o, what, url, curl, cc, &a, max, curl_error, why, why_size);
                goto out;
        }
        (void) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        if (status != 200) {
                r = reason_set(why, why_size, -EPROTO, "%s: %s answered HTTP %ld", what, url, status);
                goto out;
        }
        strbuf_release(out);
        *out = a.body;
        a.body = (struct strbuf){};
        r = 0;
out:
        curl_easy_cleanup(curl);
        curl_slist_free_all(headers);
        strbuf_release(&a.body);
        return r;
}

/* The jwks_uri of a discovery document whose issuer is ours. */
static int discovery_parse(const struct cm_oidc *o, const char *buf, size_t n, char **ret, char *why,
                           size_t why_size) {
        _cleanup_(json_decrefp) json_t *doc = NULL;
        const json_t *iss, *uri;
        const char *what = NULL;
        char *s;

        if (json_object_load(buf, n, OIDC_DOC_DEPTH, OIDC_DOC_VALUES, &doc, &what) < 0)
                return reason_set(why, why_size, -EPROTO, "discovery: the document at %s %s",
                                  o->discovery_url, what);
        iss = json_object_get(doc, "issuer");
        if (!json_is_string(iss) || !streq(json_string_value(iss), o->issuer))
                return reason_set(why, why_size, -EPROTO,
                                  "discovery: the document at %s does not name '%s' as its issuer",
                                  o->discovery_url, o->issuer);
        uri = json_object_get(doc, "jwks_uri");
        if (!json_is_string(uri) || !https_url_ok(json_string_value(uri), OIDC_URL_MAX, true))
                return reason_set(why, why_size, -EPROTO,
                                  "discovery: the document at %s has no jwks_uri that is an https:// URL",
                                  o->discovery_url);
        s = strdup(json_string_value(uri));
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* Discovery, then the key set. Called without the lock. */
static int jwks_fetch(const struct cm_oidc *o, struct jwks **ret, char *why, size_t why_size) {
        _cleanup_strbuf_ struct strbuf doc = STRBUF_INIT(CM_OIDC_DISCOVERY_MAX);
        _cleanup_strbuf_ struct strbuf set = STRBUF_INIT(CM_OIDC_JWKS_MAX);
        _cleanup_free_ char *uri = NULL;
        char parse_why[256] = "";
        int r;

        r = http_get(o, "discovery", o->discovery_url, CM_OIDC_DISCOVERY_MAX, &doc, why, why_size);
        if (r < 0)
                return r;
        r = discovery_parse(o, doc.buf, doc.len, &uri, why, why_size);
        if (r < 0)
                return r;
        r = http_get(o, "jwks", uri, CM_OIDC_JWKS_MAX, &set, why, why_size);
        if (r < 0)
                return r;
        r = jwks_parse(set.buf, set.len, ret, parse_why, sizeof(parse_why));
        if (r == -EPROTO)
                return reason_set(why, why_size, r, "%s (at %s)", parse_why, uri);
        return r;
}

/*
 * The single flight: fetches the key set unless another thread replaced it since the caller saw
 * generation gen_seen (then 0 at once), or a fetch started less than min_interval ago (then that
 * fetch's error, or -EAGAIN when it succeeded). A fetch in flight is waited for, never doubled.
 * Called with o->lock held; returns with it held.
 */
static int jwks_update_locked(struct cm_oidc *o, uint64_t gen_seen, uint64_t min_interval, char *reason,
                              size_t reason_size) {
        struct jwks *ks = NULL, *old = NULL;
        char why[sizeof(o->fetch_reason)] = "";
        uint64_t now;
        int r;

        while (o->fetching)
                (void) pthread_cond_wait(&o->cond, &o->lock);
        if (o->gen != gen_seen)
                return 0;
        now = cm_mono_usec();
        if (o->attempt_mono != 0 && now - o->attempt_mono < min_interval) {
                if (o->fetch_error < 0)
                        return reason_set(reason, reason_size, o->fetch_error, "%s", o->fetch_reason);
                return -EAGAIN;
        }
        o->fetching = true;
        o->attempt_mono = now;
        (void) pthread_mutex_unlock(&o->lock);

        r = jwks_fetch(o, &ks, why, sizeof(why));

        (void) pthread_mutex_lock(&o->lock);
        o->fetching = false;
        if (r >= 0) {
                old = o->jwks;
                o->jwks = ks;
                o->gen++;
                o->fetched_mono = cm_mono_usec();
                o->fetch_error = 0;
                o->fetch_reason[0] = 0;
                o->n_fetches++;
        } else {
                o->fetch_error = r;
                (void) cm_strlcpy(o->fetch_reason, why, sizeof(o->fetch_reason));
                o->n_fetch_failures++;
                (void) reason_set(reason, reason_size, r, "%s", why);
        }
        (void) pthread_cond_broadcast(&o->cond);
        jwks_unref(old);
        return r < 0 ? r : 0;
}

static void *refresher_run(void *userdata) {
        struct cm_oidc *o = userdata;

        (void) pthread_mutex_lock(&o->lock);
        (void) jwks_update_locked(o, o->gen, 0, NULL, 0); /* the starter checked the back-off */
        o->refresher_done = true;
        (void) pthread_mutex_unlock(&o->lock);
        return NULL;
}

/* Starts a background refresh of a set that is too old, unless one runs or one failed a moment ago. */
static void refresher_maybe_start_locked(struct cm_oidc *o) {
        uint64_t now = cm_mono_usec();

        if (o->fixed || o->fetching || now - o->fetched_mono < o->jwks_max_age_usec ||
            (o->fetch_error < 0 && now - o->attempt_mono < o->retry_usec))
                return;
        if (o->refresher_started) {
                if (!o->refresher_done)
                        return;
                (void) pthread_join(o->refresher, NULL); /* it ended: the lock was its last use */
                o->refresher_started = false;
        }
        o->refresher_done = false;
        if (pthread_create(&o->refresher, NULL, refresher_run, o) == 0)
                o->refresher_started = true;
}

/* A reference to the key set in use (fetched first when there is none) and its generation. */
static int jwks_get(struct cm_oidc *o, struct jwks **ret, uint64_t *ret_gen, char *reason,
                    size_t reason_size) {
        int r;

        (void) pthread_mutex_lock(&o->lock);
        if (!o->jwks) {
                r = jwks_update_locked(o, o->gen, o->retry_usec, reason, reason_size);
                if (r < 0 || !o->jwks) {
                        (void) pthread_mutex_unlock(&o->lock);
                        return r < 0 && r != -EAGAIN ? r
                                                     : reason_set(reason, reason_size, -EPROTO,
                                                                  "jwks: the issuer's key set is not "
                                                                  "available yet");
                }
        }
        refresher_maybe_start_locked(o);
        *ret = jwks_ref(o->jwks);
        *ret_gen = o->gen;
        (void) pthread_mutex_unlock(&o->lock);
        return 0;
}

static size_t cache_index(const struct cm_oidc *o, const uint8_t digest[static 32]) {
        uint64_t h;

        memcpy(&h, digest, sizeof(h));
        return (size_t) (h & (o->n_slots - 1));
}

/* 1 and *ret filled when the token verified with key set gen and passes at now; 0 otherwise. */
static int cache_get(struct cm_oidc *o, const uint8_t digest[static 32], uint64_t gen, uint64_t now,
                     struct cm_oidc_principal *ret) {
        struct cache_slot *s = &o->slots[cache_index(o, digest)];
        int r = 0;

        (void) pthread_mutex_lock(&o->cache_lock);
        if (s->gen == gen && cm_memeq_const(s->digest, digest, 32) && now >= s->valid_from &&
            now <= s->valid_until) {
                r = principal_copy(&s->p, ret);
                if (r >= 0)
                        r = 1;
        }
        if (r > 0)
                o->hits++;
        else
                o->misses++;
        (void) pthread_mutex_unlock(&o->cache_lock);
        return r;
}

static void cache_put(struct cm_oidc *o, const uint8_t digest[static 32], uint64_t gen, uint64_t from,
                      uint64_t until, const struct cm_oidc_principal *p) {
        struct cm_oidc_principal copy = {}, old;
        struct cache_slot *s = &o->slots[cache_index(o, digest)];

        if (principal_copy(p, &copy) < 0)
                return; /* remembered next time */
        (void) pthread_mutex_lock(&o->cache_lock);
        old = s->p;
        memcpy(s->digest, digest, 32);
        s->gen = gen;
        s->valid_from = from;
        s->valid_until = until;
        s->p = copy;
        (void) pthread_mutex_unlock(&o->cache_lock);
        cm_oidc_principal_done(&old);
}

int cm_oidc_verify(struct cm_oidc *o, const char *token, size_t n, uint64_t now_usec,
                   struct cm_oidc_principal *ret, char *reason, size_t reason_size) {
        struct cm_oidc_principal p = {};
        struct jwks *ks = NULL, *newer = NULL;
        uint8_t digest[32];
        uint64_t gen = 0, from = 0, until = 0;
        bool unknown_kid = false, cached = false;
        char why[sizeof(o->fetch_reason)] = "";
        int r, k;

        reason_clear(reason, reason_size);
        if (!token || n == 0)
                return reason_set(reason, reason_size, -EACCES, "format: no token");
        if (n > CM_OIDC_TOKEN_MAX)
                return reason_set(reason, reason_size, -EACCES, "size: the token is longer than %u bytes",
                                  CM_OIDC_TOKEN_MAX);
        /* Garbage never makes the verifier fetch anything. */
        if (!cm_oidc_looks_like_jwt(token, n))
                return reason_set(reason, reason_size, -EACCES,
                                  "format: the token is not a JWT (three base64url segments)");
        if (now_usec == 0)
                now_usec = cm_now_usec();

        r = jwks_get(o, &ks, &gen, reason, reason_size);
        if (r < 0)
                return r;
        if (o->n_slots > 0) {
                cached = EVP_Digest(token, n, digest, NULL, o->sha256, NULL) == 1;
                if (cached) {
                        r = cache_get(o, digest, gen, now_usec, ret);
                        if (r != 0) {
                                jwks_unref(ks);
                                return r < 0 ? r : 0;
                        }
                }
        }

        r = token_check(&o->ck, ks, token, n, now_usec, &p, &from, &until, reason, reason_size,
                        &unknown_kid);
        if (r == -EACCES && unknown_kid && !o->fixed) {
                /* Perhaps a key the issuer rotated in: fetch the set again, but not too often. */
                (void) pthread_mutex_lock(&o->lock);
                k = jwks_update_locked(o, gen, o->refresh_min_usec, why, sizeof(why));
                if (k == 0 && o->jwks) {
                        newer = jwks_ref(o->jwks);
                        gen = o->gen;
                }
                (void) pthread_mutex_unlock(&o->lock);
                if (newer) {
                        jwks_unref(ks);
                        ks = newer;
                        reason_clear(reason, reason_size);
                        r = token_check(&o->ck, ks, token, n, now_usec, &p, &from, &until, reason,
                                        reason_size, NULL);
                } else if (k != -EAGAIN && k < 0) {
                        r = reason_set(reason, reason_size, k, "%s", why);
                }
        }
        jwks_unref(ks);
        if (r < 0)
                return r;
        if (cached)
                cache_put(o, digest, gen, from, until, &p);
        *ret = p;
        return 0;
}

int cm_oidc_refresh(struct cm_oidc *o, char *err, size_t err_size) {
        int r;

        reason_clear(err, err_size);
        if (o->fixed)
                return 0;
        (void) pthread_mutex_lock(&o->lock);
        r = jwks_update_locked(o, o->gen, 0, err, err_size);
        (void) pthread_mutex_unlock(&o->lock);
        return r == -EAGAIN ? 0 : r;
}

void cm_oidc_get_stats(struct cm_oidc *o, struct cm_oidc_stats *ret) {
        struct cm_oidc_stats s = {};

        (void) pthread_mutex_lock(&o->lock);
        s.jwks_fetches = o->n_fetches;
        s.jwks_fetch_failures = o->n_fetch_failures;
        if (o->jwks) {
                s.jwks_age_usec = sat_sub(cm_mono_usec(), o->fetched_mono);
                s.jwks_keys = (unsigned) o->jwks->n_keys;
        }
        (void) pthread_mutex_unlock(&o->lock);
        if (o->n_slots > 0) {
                (void) pthread_mutex_lock(&o->cache_lock);
                s.token_cache_hits = o->hits;
                s.token_cache_misses = o->misses;
                (void) pthread_mutex_unlock(&o->cache_lock);
        }
        *ret = s;
}

const char *cm_oidc_issuer(const struct cm_oidc *o) {
        return o->issuer;
}

static int ca_file_check(const char *path, char *err, size_t err_size) {
        _cleanup_free_ char *content = NULL;
        struct stat st;
        size_t len = 0;
        int r;

        if (stat(path, &st) < 0) {
                r = negative_errno();
                return reason_set(err, err_size, r, "cannot read the OIDC CA file '%s': %s", path,
                                  strerror(-r));
        }
        if (!S_ISREG(st.st_mode))
                return reason_set(err, err_size, -EINVAL, "the OIDC CA file '%s' is not a regular file",
                                  path);
        r = cm_read_file(path, OIDC_CA_FILE_MAX, false, &content, &len);
        if (r == -EFBIG)
                return reason_set(err, err_size, -EINVAL, "the OIDC CA file '%s' is larger than %u bytes",
                                  path, OIDC_CA_FILE_MAX);
        if (r < 0)
                return reason_set(err, err_size, r, "cannot read the OIDC CA file '%s': %s", path,
                                  strerror(-r));
        if (!memmem(content, len, "-----BEGIN CERTIFICATE-----", 27))
                return reason_set(err, err_size, -EINVAL, "the OIDC CA file '%s' holds no PEM certificate",
                                  path);
        return 0;
}

static int strdup_to(const char *s, char **ret) {
        if (!s)
                return 0;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

static unsigned round_up_pow2(unsigned v) {
        unsigned p = 1;

        while (p < v)
                p <<= 1;
        return p;
}

/* Everything but the key set; with need_https, for a verifier that fetches it. */
static int oidc_alloc(const struct cm_oidc_config *c, bool need_https, struct cm_oidc **ret, char *err,
                      size_t err_size) {
        _cleanup_(cm_oidc_freep) struct cm_oidc *o = NULL;
        _cleanup_strbuf_ struct strbuf url = STRBUF_INIT(OIDC_URL_MAX);
        struct checks ck;
        size_t n;
        int r;

        reason_clear(err, err_size);
        r = config_check(c, need_https, &ck, err, err_size);
        if (r < 0)
                return r;
        if (c->ca_file) {
                r = ca_file_check(c->ca_file, err, err_size);
                if (r < 0)
                        return r;
        }
        o = new0(struct cm_oidc, 1);
        if (!o)
                return reason_set(err, err_size, -ENOMEM, "out of memory");
        if (strdup_to(c->issuer, &o->issuer) < 0 || strdup_to(c->audience, &o->audience) < 0 ||
            strdup_to(ck.groups_claim, &o->groups_claim) < 0 || strdup_to(c->ca_file, &o->ca_file) < 0)
                return reason_set(err, err_size, -ENOMEM, "out of memory");
        o->ck = ck;
        o->ck.issuer = o->issuer;
        o->ck.audience = o->audience;
        o->ck.groups_claim = o->groups_claim;

        /* OpenID Connect Discovery 1.0 §4: the issuer without its trailing slash, then the well-known path. */
        n = strlen(o->issuer);
        while (n > 0 && o->issuer[n - 1] == '/')
                n--;
        if (strbuf_add(&url, o->issuer, n) < 0 || strbuf_addl(&url, OIDC_WELL_KNOWN) < 0)
                return reason_set(err, err_size, -ENOMEM, "out of memory");
        o->discovery_url = strbuf_detach(&url, NULL);
        if (!o->discovery_url)
                return reason_set(err, err_size, -ENOMEM, "out of memory");

        o->refresh_min_usec = c->refresh_min_usec ?: CM_OIDC_REFRESH_MIN_USEC_DEFAULT;
        o->jwks_max_age_usec = c->jwks_max_age_usec ?: CM_OIDC_JWKS_MAX_AGE_USEC_DEFAULT;
        o->retry_usec = MIN(o->refresh_min_usec, OIDC_RETRY_USEC);
        o->timeout_ms = (long) (c->timeout_ms ?: CM_OIDC_TIMEOUT_MS_DEFAULT);

        o->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
        if (!o->sha256)
                return reason_set(err, err_size, -EIO, "cannot load SHA-256 from OpenSSL");
        if (pthread_mutex_init(&o->lock, NULL) != 0)
                return reason_set(err, err_size, -ENOMEM, "cannot create a lock");
        o->lock_initialized = true;
        if (pthread_cond_init(&o->cond, NULL) != 0)
                return reason_set(err, err_size, -ENOMEM, "cannot create a condition variable");
        o->cond_initialized = true;
        if (pthread_mutex_init(&o->cache_lock, NULL) != 0)
                return reason_set(err, err_size, -ENOMEM, "cannot create a lock");
        o->cache_lock_initialized = true;
        if (!c->token_cache_disabled) {
                o->n_slots = round_up_pow2(c->token_cache_size ?: CM_OIDC_TOKEN_CACHE_DEFAULT);
                o->slots = new0(struct cache_slot, o->n_slots);
                if (!o->slots)
                        return reason_set(err, err_size, -ENOMEM, "out of memory");
        }
        *ret = TAKE_PTR(o);
        return 0;
}

int cm_oidc_new(const struct cm_oidc_config *c, struct cm_oidc **ret, char *err, size_t err_size) {
        _cleanup_(cm_oidc_freep) struct cm_oidc *o = NULL;
        int r;

        r = oidc_alloc(c, true, &o, err, err_size);
        if (r < 0)
                return r;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return reason_set(err, err_size, -EIO, "cannot initialize libcurl");
        o->curl_initialized = true;
        *ret = TAKE_PTR(o);
        return 0;
}

int cm_oidc_new_with_jwks(const struct cm_oidc_config *c, const char *jwks_json, size_t jwks_n,
                          struct cm_oidc **ret, char *err, size_t err_size) {
        _cleanup_(cm_oidc_freep) struct cm_oidc *o = NULL;
        int r;

        r = oidc_alloc(c, false, &o, err, err_size);
        if (r < 0)
                return r;
        if (!jwks_json)
                return reason_set(err, err_size, -EPROTO, "jwks: no key set");
        r = jwks_parse(jwks_json, jwks_n, &o->jwks, err, err_size);
        if (r < 0)
                return r == -ENOMEM ? reason_set(err, err_size, r, "out of memory") : r;
        o->fixed = true;
        o->gen = 1;
        o->fetched_mono = cm_mono_usec();
        *ret = TAKE_PTR(o);
        return 0;
}

struct cm_oidc *cm_oidc_free(struct cm_oidc *o) {
        if (!o)
                return NULL;
        if (o->refresher_started)
                (void) pthread_join(o->refresher, NULL);
        jwks_unref(o->jwks);
        for (size_t i = 0; i < o->n_slots; i++)
                cm_oidc_principal_done(&o->slots[i].p);
        free(o->slots);
        if (o->cache_lock_initialized)
                (void) pthread_mutex_destroy(&o->cache_lock);
        if (o->cond_initialized)
                (void) pthread_cond_destroy(&o->cond);
        if (o->lock_initialized)
                (void) pthread_mutex_destroy(&o->lock);
        EVP_MD_free(o->sha256);
        if (o->curl_initialized)
                curl_global_cleanup(); /* pairs with the curl_global_init() of cm_oidc_new() */
        free(o->issuer);
        free(o->audience);
        free(o->groups_claim);
        free(o->ca_file);
        free(o->discovery_url);
        free(o);
        return NULL;
}
