/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The OIDC token verifier: tokens minted with cjose from keys made for this run (RSA, EC on the three
 * curves) and tokens crafted by hand (alg none, HMAC with the public key, tampered, wrong key ...),
 * each with its exact outcome and a reason that names the failed check and never quotes the token;
 * the JWK set parser, the Authorization header parser, the token cache, and the fetch of discovery
 * and the JWK set from the test OIDC provider (tests/integration/oidc_provider.py, started here with
 * python3 and the openssl CLI; without them the network cases are skipped, except under CI=true where
 * they fail).
 */
#include "base/common.h"

#include <setjmp.h>
#include <cmocka.h>
#include <cjose/cjose.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "auth/oidc.h"
#include "base/fileio.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "support/net.h"

#define ISSUER "https://issuer.example"
#define AUDIENCE "clustermgmt"
#define SUBJECT "sub-7f3a9c51"
#define EMAIL "alice@example.com"
#define NOW_S INT64_C(1900000000)
#define NOW_USEC ((uint64_t) NOW_S * USEC_PER_SEC)
#define PROVIDER CM_TESTDATA_DIR "/../integration/oidc_provider.py"
#define GENEROUS_USEC (10 * USEC_PER_SEC)

/* Keys made for this run. */
static struct {
        cjose_jwk_t *rsa; /* "rsa-1", published */
        cjose_jwk_t *rsa2; /* "rsa-2", published only where a test says so */
        cjose_jwk_t *ec256; /* "ec-256" */
        cjose_jwk_t *ec384; /* "ec-384" */
        cjose_jwk_t *ec521; /* "ec-521" */
        cjose_jwk_t *rsa1024; /* "weak-1": too short to be used */
        char *jwks; /* rsa-1, ec-256, ec-384, ec-521 */
        char *rsa_pem; /* rsa-1's public key, PEM */
} k;

/* ---------------------------------------------------------------------------------------------- */

static char *b64u(const void *data, size_t n) {
        static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        const uint8_t *p = data;
        char *out = malloc(n / 3 * 4 + 5), *o = out;
        size_t i;

        assert_non_null(out);
        for (i = 0; i + 2 < n; i += 3) {
                *o++ = alphabet[p[i] >> 2];
                *o++ = alphabet[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
                *o++ = alphabet[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)];
                *o++ = alphabet[p[i + 2] & 63];
        }
        if (n - i == 1) {
                *o++ = alphabet[p[i] >> 2];
                *o++ = alphabet[(p[i] & 3) << 4];
        } else if (n - i == 2) {
                *o++ = alphabet[p[i] >> 2];
                *o++ = alphabet[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
                *o++ = alphabet[(p[i + 1] & 15) << 2];
        }
        *o = 0;
        return out;
}

static uint8_t *b64u_decode(const char *s, size_t *ret_n) {
        uint8_t *out = malloc(strlen(s) + 1);
        uint32_t acc = 0;
        unsigned bits = 0;
        size_t n = 0;

        assert_non_null(out);
        for (const char *p = s; *p; p++) {
                const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                const char *c = strchr(alphabet, *p);

                assert_non_null(c);
                acc = (acc << 6) | (uint32_t) (c - alphabet);
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[n++] = (uint8_t) (acc >> bits);
                }
        }
        *ret_n = n;
        return out;
}

/* header.payload.signature from the texts and bytes given. */
static char *craft(const char *header, const char *payload, const void *sig, size_t sig_n) {
        _cleanup_free_ char *h = b64u(header, strlen(header));
        _cleanup_free_ char *p = b64u(payload, strlen(payload));
        _cleanup_free_ char *s = b64u(sig, sig_n);
        struct strbuf sb = STRBUF_INIT(64 * 1024);
        char *out;

        assert_int_equal(strbuf_addf(&sb, "%s.%s.%s", h, p, s), 0);
        out = strbuf_detach(&sb, NULL);
        assert_non_null(out);
        return out;
}

/* The public JWK of key as a JSON object, with kid. */
static json_t *jwk_public(cjose_jwk_t *key, const char *kid) {
        cjose_err cerr;
        char *s = cjose_jwk_to_json(key, false, &cerr);
        json_t *j;

        assert_non_null(s);
        j = json_loads(s, 0, NULL);
        cjose_get_dealloc()(s);
        assert_non_null(j);
        assert_int_equal(json_object_set_new(j, "kid", json_string(kid)), 0);
        return j;
}

/* {"keys": [...]} of the JWKs given (references stolen; the list ends with NULL). */
static char *jwks_doc_of(json_t *const *list) {
        json_t *keys = json_array(), *doc;
        char *s;

        assert_non_null(keys);
        for (json_t *const *j = list; *j; j++)
                assert_int_equal(json_array_append_new(keys, *j), 0);
        doc = json_pack("{s:o}", "keys", keys);
        assert_non_null(doc);
        s = json_dumps(doc, JSON_COMPACT);
        assert_non_null(s);
        json_decref(doc);
        return s;
}
#define jwks_doc(...) jwks_doc_of((json_t *const[]){ __VA_ARGS__, NULL })

/* Valid claims for NOW_S; change them with set(). */
static json_t *claims(void) {
        json_t *c = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:[s,s]}", "iss", ISSUER, "aud", AUDIENCE,
                              "sub", SUBJECT, "email", EMAIL, "iat", (json_int_t) NOW_S, "nbf",
                              (json_int_t) NOW_S, "exp", (json_int_t) (NOW_S + 300), "groups", "ops", "dev");

        assert_non_null(c);
        return c;
}

/* The valid claims as JSON text. */
static char *claims_text(void) {
        json_t *c = claims();
        char *s = json_dumps(c, JSON_COMPACT);

        assert_non_null(s);
        json_decref(c);
        return s;
}

/* Sets (v stolen) or, with v NULL, removes a member; returns c. */
static json_t *set(json_t *c, const char *name, json_t *v) {
        if (v)
                assert_int_equal(json_object_set_new(c, name, v), 0);
        else
                (void) json_object_del(c, name);
        return c;
}

/*
 * A JWS of payload bytes signed by key with the header {"alg", "typ": "JWT", "kid"} and the members of
 * extra (stolen; a null member removes one).
 */
static char *mint_raw(cjose_jwk_t *key, const char *alg, const char *kid, const char *payload,
                      json_t *extra) {
        json_t *h = json_pack("{s:s, s:s}", "alg", alg, "typ", "JWT");
        const char *key_name;
        json_t *v;
        cjose_err cerr;
        cjose_jws_t *jws;
        const char *ser = NULL;
        char *out;

        assert_non_null(h);
        if (kid)
                assert_int_equal(json_object_set_new(h, "kid", json_string(kid)), 0);
        if (extra) {
                json_object_foreach(extra, key_name, v) {
                        if (json_is_null(v))
                                (void) json_object_del(h, key_name);
                        else
                                assert_int_equal(json_object_set(h, key_name, v), 0);
                }
                json_decref(extra);
        }
        jws = cjose_jws_sign(key, (cjose_header_t *) h, (const uint8_t *) payload, strlen(payload), &cerr);
        if (!jws)
                fail_msg("cjose_jws_sign %s: %s", alg, cerr.message);
        assert_true(cjose_jws_export(jws, &ser, &cerr));
        out = strdup(ser);
        assert_non_null(out);
        cjose_jws_release(jws);
        json_decref(h);
        return out;
}

/* The same with claims (stolen) as the payload. */
static char *mint(cjose_jwk_t *key, const char *alg, const char *kid, json_t *c, json_t *extra) {
        _cleanup_free_ char *payload = json_dumps(c, JSON_COMPACT);

        assert_non_null(payload);
        json_decref(c);
        return mint_raw(key, alg, kid, payload, extra);
}

static char *rsa_public_pem(cjose_jwk_t *key) {
        json_t *j = jwk_public(key, "x");
        _cleanup_free_ uint8_t *n = NULL, *e = NULL;
        size_t n_len, e_len;
        BIGNUM *bn, *be;
        OSSL_PARAM_BLD *bld;
        OSSL_PARAM *params;
        EVP_PKEY_CTX *ctx;
        EVP_PKEY *pkey = NULL;
        BIO *bio;
        char *data = NULL, *pem;
        long len;

        n = b64u_decode(json_string_value(json_object_get(j, "n")), &n_len);
        e = b64u_decode(json_string_value(json_object_get(j, "e")), &e_len);
        json_decref(j);
        bn = BN_bin2bn(n, (int) n_len, NULL);
        be = BN_bin2bn(e, (int) e_len, NULL);
        bld = OSSL_PARAM_BLD_new();
        assert_true(bn && be && bld);
        assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn), 1);
        assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be), 1);
        params = OSSL_PARAM_BLD_to_param(bld);
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
        assert_true(params && ctx);
        assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
        assert_int_equal(EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params), 1);
        bio = BIO_new(BIO_s_mem());
        assert_non_null(bio);
        assert_int_equal(PEM_write_bio_PUBKEY(bio, pkey), 1);
        len = BIO_get_mem_data(bio, &data);
        pem = malloc((size_t) len + 1);
        assert_non_null(pem);
        memcpy(pem, data, (size_t) len);
        pem[len] = 0;
        BIO_free(bio);
        EVP_PKEY_free(pkey);
        EVP_PKEY_CTX_free(ctx);
        OSSL_PARAM_free(params);
        OSSL_PARAM_BLD_free(bld);
        BN_free(bn);
        BN_free(be);
        return pem;
}

static cjose_jwk_t *rsa_new(size_t bits, const char *kid) {
        static const uint8_t e[] = { 0x01, 0x00, 0x01 };
        cjose_err cerr;
        cjose_jwk_t *key = cjose_jwk_create_RSA_random(bits, e, sizeof(e), &cerr);

        assert_non_null(key);
        assert_true(cjose_jwk_set_kid(key, kid, strlen(kid), &cerr));
        return key;
}

static cjose_jwk_t *ec_new(cjose_jwk_ec_curve crv, const char *kid) {
        cjose_err cerr;
        cjose_jwk_t *key = cjose_jwk_create_EC_random(crv, &cerr);

        assert_non_null(key);
        assert_true(cjose_jwk_set_kid(key, kid, strlen(kid), &cerr));
        return key;
}

static int group_setup(void **state) {
        k.rsa = rsa_new(2048, "rsa-1");
        k.rsa2 = rsa_new(2048, "rsa-2");
        k.rsa1024 = rsa_new(1024, "weak-1");
        k.ec256 = ec_new(CJOSE_JWK_EC_P_256, "ec-256");
        k.ec384 = ec_new(CJOSE_JWK_EC_P_384, "ec-384");
        k.ec521 = ec_new(CJOSE_JWK_EC_P_521, "ec-521");
        k.jwks = jwks_doc(jwk_public(k.rsa, "rsa-1"), jwk_public(k.ec256, "ec-256"),
                          jwk_public(k.ec384, "ec-384"), jwk_public(k.ec521, "ec-521"));
        k.rsa_pem = rsa_public_pem(k.rsa);
        return 0;
}

static int group_teardown(void **state) {
        cjose_jwk_release(k.rsa);
        cjose_jwk_release(k.rsa2);
        cjose_jwk_release(k.rsa1024);
        cjose_jwk_release(k.ec256);
        cjose_jwk_release(k.ec384);
        cjose_jwk_release(k.ec521);
        free(k.jwks);
        free(k.rsa_pem);
        return 0;
}

static struct cm_oidc_config config(void) {
        return (struct cm_oidc_config){ .issuer = ISSUER, .audience = AUDIENCE };
}

/* A reason names its check first and never quotes the token, a part of it, or a claim's value. */
static void assert_reason_clean(const char *reason, const char *check, const char *token) {
        size_t n = strlen(check);
        const char *seg = token;

        if (!strneq(reason, check, n) || reason[n] != ':')
                fail_msg("expected the reason to name '%s', got '%s'", check, reason);
        assert_null(strstr(reason, SUBJECT));
        if (token && strlen(token) >= 8)
                assert_null(strstr(reason, token));
        while (token && seg && *seg) {
                const char *dot = strchr(seg, '.');
                size_t len = dot ? (size_t) (dot - seg) : strlen(seg);

                if (len >= 8) {
                        _cleanup_free_ char *part = strndup(seg, len);

                        assert_non_null(part);
                        if (strstr(reason, part))
                                fail_msg("the reason '%s' quotes a part of the token", reason);
                }
                seg = dot ? dot + 1 : NULL;
        }
        for (const char *p = reason; *p; p++)
                assert_true((unsigned char) *p >= 0x20);
}

static void assert_principal(const struct cm_oidc_principal *p, const char *subject, const char *email,
                             size_t n_groups) {
        assert_string_equal(p->subject, subject);
        assert_string_equal(p->email, email);
        assert_int_equal(p->n_groups, n_groups);
}

/*
 * Verifies token against jwks at now three ways (the pure function, a verifier with that fixed set
 * and its token cache, and one without a cache, each twice) and checks that they agree: r, and for a
 * refusal a reason naming check. On success the principal of the first is returned (when ret).
 */
static void verify3(const char *jwks, const struct cm_oidc_config *c, const char *token, uint64_t now,
                    int expected, const char *check, bool unknown_kid, struct cm_oidc_principal *ret) {
        struct cm_oidc_principal p = {}, q = {};
        struct cm_oidc_config cc = *c;
        char reason[512] = "", err[512] = "";
        bool unknown = !unknown_kid;
        size_t n = strlen(token);
        int r;

        r = cm_oidc_verify_with_jwks(jwks, strlen(jwks), c, token, n, now, &p, reason, sizeof(reason),
                                     &unknown);
        if (r != expected)
                fail_msg("expected %d (%s), got %d: %s", expected, strna(check), r, reason);
        if (expected < 0) {
                assert_reason_clean(reason, check, token);
                assert_int_equal(unknown, unknown_kid);
                assert_null(p.groups);
        } else {
                assert_string_equal(reason, "");
        }

        for (int cache = 0; cache < 2; cache++) {
                struct cm_oidc *o = NULL;

                cc.token_cache_disabled = cache == 0;
                if (cm_oidc_new_with_jwks(&cc, jwks, strlen(jwks), &o, err, sizeof(err)) < 0)
                        fail_msg("new_with_jwks: %s", err);
                for (int round = 0; round < 2; round++) {
                        char reason2[512] = "";

                        r = cm_oidc_verify(o, token, n, now, &q, reason2, sizeof(reason2));
                        if (r != expected)
                                fail_msg("verifier (cache %d, round %d): expected %d, got %d: %s", cache,
                                         round, expected, r, reason2);
                        assert_string_equal(reason2, reason);
                        if (r == 0) {
                                assert_string_equal(q.subject, p.subject);
                                assert_string_equal(q.email, p.email);
                                assert_int_equal(q.n_groups, p.n_groups);
                                for (size_t i = 0; i < p.n_groups; i++)
                                        assert_string_equal(q.groups[i], p.groups[i]);
                                assert_int_equal(q.expires_usec, p.expires_usec);
                                cm_oidc_principal_done(&q);
                        }
                }
                cm_oidc_free(o);
        }
        if (ret)
                *ret = p;
        else
                cm_oidc_principal_done(&p);
}

static void expect_ok(const char *jwks, const struct cm_oidc_config *c, const char *token,
                      struct cm_oidc_principal *ret) {
        verify3(jwks, c, token, NOW_USEC, 0, NULL, false, ret);
}

static void expect_refused(const char *jwks, const struct cm_oidc_config *c, const char *token,
                           const char *check) {
        verify3(jwks, c, token, NOW_USEC, -EACCES, check, false, NULL);
}

/* ---------------------------------------------------------------------------------------------- */

static void test_valid_algorithms(void **state) {
        static const struct {
                const char *alg;
                const char *kid;
        } table[] = {
                { "RS256", "rsa-1" },  { "RS384", "rsa-1" },  { "RS512", "rsa-1" },
                { "PS256", "rsa-1" },  { "PS384", "rsa-1" },  { "PS512", "rsa-1" },
                { "ES256", "ec-256" }, { "ES384", "ec-384" }, { "ES512", "ec-521" },
        };
        struct cm_oidc_config c = config();

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                cjose_jwk_t *key = table[i].alg[0] == 'E' ? (streq(table[i].kid, "ec-256")   ? k.ec256
                                                             : streq(table[i].kid, "ec-384") ? k.ec384
                                                                                             : k.ec521)
                                                          : k.rsa;
                _cleanup_free_ char *t = mint(key, table[i].alg, table[i].kid, claims(), NULL);
                struct cm_oidc_principal p = {};

                print_message("%s (%zu bytes)\n", table[i].alg, strlen(t));
                assert_true(cm_oidc_looks_like_jwt(t, strlen(t)));
                expect_ok(k.jwks, &c, t, &p);
                assert_principal(&p, SUBJECT, EMAIL, 2);
                assert_string_equal(p.groups[0], "ops");
                assert_string_equal(p.groups[1], "dev");
                assert_int_equal(p.expires_usec, NOW_USEC + 300 * USEC_PER_SEC);
                cm_oidc_principal_done(&p);
                cm_oidc_principal_done(&p); /* idempotent */
        }
}

static void test_alg_refused(void **state) {
        static const char *const none_algs[] = { "none", "None", "NONE" };
        static const char *const hs_algs[] = { "HS256", "HS384", "HS512" };
        struct cm_oidc_config c = config();
        _cleanup_free_ char *payload = claims_text();
        json_t *jwk = jwk_public(k.rsa, "rsa-1");
        _cleanup_free_ char *jwk_text = json_dumps(jwk, JSON_COMPACT);
        cjose_err cerr;

        json_decref(jwk);

        assert_non_null(payload);
        for (size_t i = 0; i < ELEMENTSOF(none_algs); i++) {
                _cleanup_free_ char *h = NULL, *t1 = NULL, *t2 = NULL;

                assert_true(asprintf(&h, "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"rsa-1\"}",
                                     none_algs[i]) > 0);
                t1 = craft(h, payload, "", 0); /* the classic: no signature at all */
                t2 = craft(h, payload, "garbage-signature", 17);
                assert_true(cm_oidc_looks_like_jwt(t1, strlen(t1)));
                expect_refused(k.jwks, &c, t1, "alg");
                expect_refused(k.jwks, &c, t2, "alg");
        }

        /* Key confusion: HMAC with the RSA public key (as PEM, as JWK, as the modulus) for the secret. */
        for (size_t i = 0; i < ELEMENTSOF(hs_algs); i++) {
                const struct {
                        const void *secret;
                        size_t n;
                } secrets[] = {
                        { k.rsa_pem, strlen(k.rsa_pem) },
                        { jwk_text, strlen(jwk_text) },
                };

                for (size_t j = 0; j < ELEMENTSOF(secrets); j++) {
                        cjose_jwk_t *oct = cjose_jwk_create_oct_spec(secrets[j].secret, secrets[j].n, &cerr);
                        _cleanup_free_ char *t = NULL;
                        cjose_jws_t *jws;

                        assert_non_null(oct);
                        t = mint(oct, hs_algs[i], "rsa-1", claims(), NULL);
                        /* A real HMAC token: cjose itself accepts it with the secret. */
                        jws = cjose_jws_import(t, strlen(t), &cerr);
                        assert_non_null(jws);
                        assert_true(cjose_jws_verify(jws, oct, &cerr));
                        cjose_jws_release(jws);
                        expect_refused(k.jwks, &c, t, "alg");
                        cjose_jwk_release(oct);
                }
        }

        /* Other names: not on the list. */
        {
                static const char *const others[] = { "RS1", "EdDSA", "rs256", "ES256K", "" };

                for (size_t i = 0; i < ELEMENTSOF(others); i++) {
                        _cleanup_free_ char *h = NULL, *t = NULL;

                        assert_true(asprintf(&h, "{\"alg\":\"%s\",\"kid\":\"rsa-1\"}", others[i]) > 0);
                        t = craft(h, payload, "signature", 9);
                        expect_refused(k.jwks, &c, t, "alg");
                }
        }
        /* No alg, or not a string. */
        {
                _cleanup_free_ char *t1 = craft("{\"typ\":\"JWT\",\"kid\":\"rsa-1\"}", payload, "xx", 2);
                _cleanup_free_ char *t2 = craft("{\"alg\":256,\"kid\":\"rsa-1\"}", payload, "xx", 2);

                expect_refused(k.jwks, &c, t1, "alg");
                expect_refused(k.jwks, &c, t2, "alg");
        }
}

static void test_oct_key_never_used(void **state) {
        static const uint8_t secret[32] = "0123456789abcdef0123456789abcdef";
        struct cm_oidc_config c = config();
        cjose_err cerr;
        cjose_jwk_t *oct = cjose_jwk_create_oct_spec(secret, sizeof(secret), &cerr);
        _cleanup_free_ char *jwks = NULL, *t_hs = NULL, *t_rs = NULL, *oct_text = NULL;
        json_t *oct_jwk;

        assert_non_null(oct);
        oct_text = cjose_jwk_to_json(oct, true, &cerr);
        assert_non_null(oct_text);
        oct_jwk = json_loads(oct_text, 0, NULL);
        assert_non_null(oct_jwk);
        set(oct_jwk, "kid", json_string("shared"));
        set(oct_jwk, "alg", json_string("HS256"));
        /* A provider that (wrongly) publishes a shared secret, and an RSA key under the same kid. */
        jwks = jwks_doc(oct_jwk, jwk_public(k.rsa, "rsa-1"));

        t_hs = mint(oct, "HS256", "shared", claims(), NULL);
        expect_refused(jwks, &c, t_hs, "alg");
        /* An RS256 token naming the oct key's kid finds no usable key. */
        t_rs = mint(k.rsa, "RS256", "shared", claims(), NULL);
        verify3(jwks, &c, t_rs, NOW_USEC, -EACCES, "kid", true, NULL);
        cjose_jwk_release(oct);
}

static void test_signature(void **state) {
        struct cm_oidc_config c = config();
        _cleanup_free_ char *good = mint(k.rsa, "RS256", "rsa-1", claims(), NULL);
        _cleanup_free_ char *other =
                mint(k.rsa, "RS256", "rsa-1", set(claims(), "groups", json_pack("[s]", "admins")), NULL);
        _cleanup_free_ char *es = mint(k.ec256, "ES256", "ec-256", claims(), NULL);
        _cleanup_free_ char *forged = mint(k.rsa2, "RS256", "rsa-1", claims(), NULL);

        /* Tampered: another payload with the good token's header and signature. */
        {
                _cleanup_free_ char *t = NULL;
                const char *d1 = strchr(good, '.'), *d2 = strrchr(good, '.');
                const char *o1 = strchr(other, '.'), *o2 = strrchr(other, '.');

                assert_true(asprintf(&t, "%.*s.%.*s.%s", (int) (d1 - good), good, (int) (o2 - o1 - 1),
                                     o1 + 1, d2 + 1) > 0);
                expect_refused(k.jwks, &c, t, "signature");
        }
        /* A flipped bit in the signature. */
        {
                _cleanup_free_ char *t = strdup(good);
                char *s;

                assert_non_null(t);
                s = strrchr(t, '.') + 10;
                *s = *s == 'A' ? 'B' : 'A';
                expect_refused(k.jwks, &c, t, "signature");
        }
        /* Signed by another key under rsa-1's kid. */
        expect_refused(k.jwks, &c, forged, "signature");
        /* Signatures of the wrong length: cut short, empty, longer (ES256 with a byte too many). */
        {
                _cleanup_free_ char *t1 = NULL, *shorter = NULL;
                _cleanup_free_ char *t2 = strndup(good, (size_t) (strrchr(good, '.') - good + 1));
                _cleanup_free_ char *t3 = NULL;
                _cleanup_free_ uint8_t *sig = NULL, *rsa_sig = NULL;
                _cleanup_free_ char *longer = NULL;
                uint8_t padded[66];
                size_t sig_n, rsa_sig_n;

                rsa_sig = b64u_decode(strrchr(good, '.') + 1, &rsa_sig_n);
                assert_int_equal(rsa_sig_n, 256);
                shorter = b64u(rsa_sig, rsa_sig_n - 1);
                assert_true(asprintf(&t1, "%.*s.%s", (int) (strrchr(good, '.') - good), good, shorter) > 0);
                assert_non_null(t2);
                expect_refused(k.jwks, &c, t1, "signature");
                expect_refused(k.jwks, &c, t2, "signature");
                /* r and s with a leading zero each: cjose would read them as the same numbers. */
                sig = b64u_decode(strrchr(es, '.') + 1, &sig_n);
                assert_int_equal(sig_n, 64);
                padded[0] = 0;
                memcpy(padded + 1, sig, 32);
                padded[33] = 0;
                memcpy(padded + 34, sig + 32, 32);
                longer = b64u(padded, sizeof(padded));
                assert_true(asprintf(&t3, "%.*s.%s", (int) (strrchr(es, '.') - es), es, longer) > 0);
                expect_refused(k.jwks, &c, t3, "signature");
        }
        expect_ok(k.jwks, &c, es, NULL);
}

static void test_kid_and_key(void **state) {
        struct cm_oidc_config c = config();
        _cleanup_free_ char *unknown = mint(k.rsa2, "RS256", "rsa-2", claims(), NULL);
        _cleanup_free_ char *no_kid = mint(k.rsa, "RS256", NULL, claims(), NULL);
        _cleanup_free_ char *kid_number = mint(k.rsa, "RS256", NULL, claims(), json_pack("{s:i}", "kid", 7));
        _cleanup_free_ char *ec_on_rsa = mint(k.ec256, "ES256", "rsa-1", claims(), NULL);
        _cleanup_free_ char *rs_on_ec = mint(k.rsa, "RS256", "ec-256", claims(), NULL);
        _cleanup_free_ char *es256_on_p384 = mint(k.ec384, "ES256", "ec-384", claims(), NULL);
        _cleanup_free_ char *good = mint(k.rsa, "RS256", "rsa-1", claims(), NULL);

        verify3(k.jwks, &c, unknown, NOW_USEC, -EACCES, "kid", true, NULL);
        expect_refused(k.jwks, &c, no_kid, "kid");
        expect_refused(k.jwks, &c, kid_number, "kid");
        expect_refused(k.jwks, &c, ec_on_rsa, "key");
        expect_refused(k.jwks, &c, rs_on_ec, "key");
        expect_refused(k.jwks, &c, es256_on_p384, "key");

        /* The JWK's own alg and use must fit; key_ops must allow verify. */
        {
                _cleanup_free_ char *rs512_only =
                        jwks_doc(set(jwk_public(k.rsa, "rsa-1"), "alg", json_string("RS512")));
                _cleanup_free_ char *rs256_only =
                        jwks_doc(set(jwk_public(k.rsa, "rsa-1"), "alg", json_string("RS256")));
                _cleanup_free_ char *enc =
                        jwks_doc(set(jwk_public(k.rsa, "rsa-1"), "use", json_string("enc")));
                _cleanup_free_ char *sig =
                        jwks_doc(set(jwk_public(k.rsa, "rsa-1"), "use", json_string("sig")));
                _cleanup_free_ char *ops_enc =
                        jwks_doc(set(jwk_public(k.rsa, "rsa-1"), "key_ops", json_pack("[s]", "encrypt")));
                _cleanup_free_ char *ops_verify = jwks_doc(
                        set(jwk_public(k.rsa, "rsa-1"), "key_ops", json_pack("[s,s]", "sign", "verify")));
                _cleanup_free_ char *alg_hs =
                        jwks_doc(set(jwk_public(k.rsa, "rsa-1"), "alg", json_string("HS256")));

                expect_refused(rs512_only, &c, good, "key");
                expect_ok(rs256_only, &c, good, NULL);
                verify3(enc, &c, good, NOW_USEC, -EACCES, "kid", true, NULL);
                expect_ok(sig, &c, good, NULL);
                verify3(ops_enc, &c, good, NOW_USEC, -EACCES, "kid", true, NULL);
                expect_ok(ops_verify, &c, good, NULL);
                verify3(alg_hs, &c, good, NOW_USEC, -EACCES, "kid", true, NULL);
        }
        /* A 1024-bit key is never used. */
        {
                _cleanup_free_ char *weak_jwks = jwks_doc(jwk_public(k.rsa1024, "weak-1"));
                _cleanup_free_ char *weak = mint(k.rsa1024, "RS256", "weak-1", claims(), NULL);

                verify3(weak_jwks, &c, weak, NOW_USEC, -EACCES, "kid", true, NULL);
        }
        /* Private members in the set are not used (nor needed). */
        {
                cjose_err cerr;
                char *priv = cjose_jwk_to_json(k.rsa, true, &cerr);
                json_t *j = json_loads(priv, 0, NULL);
                _cleanup_free_ char *with_d = NULL;

                assert_non_null(j);
                cjose_get_dealloc()(priv);
                assert_non_null(json_object_get(j, "d"));
                with_d = jwks_doc(j);
                expect_ok(with_d, &c, good, NULL);
        }
        /* Keys without a kid are never chosen; a set with an unknown kid only says so. */
        {
                _cleanup_free_ char *no_kid_jwks = jwks_doc(set(jwk_public(k.rsa, "rsa-1"), "kid", NULL));

                verify3(no_kid_jwks, &c, good, NOW_USEC, -EACCES, "kid", true, NULL);
        }
        /* Two keys under one kid: the one that fits the algorithm. */
        {
                _cleanup_free_ char *twins =
                        jwks_doc(jwk_public(k.ec256, "twin"), jwk_public(k.rsa, "twin"));
                _cleanup_free_ char *t1 = mint(k.rsa, "RS256", "twin", claims(), NULL);
                _cleanup_free_ char *t2 = mint(k.ec256, "ES256", "twin", claims(), NULL);

                expect_ok(twins, &c, t1, NULL);
                expect_ok(twins, &c, t2, NULL);
        }
}

static void test_header(void **state) {
        static const char *const typ_ok[] = { "JWT", "jwt", "at+jwt", "application/at+JWT",
                                              "application/jwt" };
        static const char *const typ_bad[] = { "dpop+jwt", "JWS", "logout+jwt", "" };
        struct cm_oidc_config c = config();
        _cleanup_free_ char *payload = claims_text();

        for (size_t i = 0; i < ELEMENTSOF(typ_ok); i++) {
                _cleanup_free_ char *t =
                        mint(k.rsa, "RS256", "rsa-1", claims(), json_pack("{s:s}", "typ", typ_ok[i]));

                expect_ok(k.jwks, &c, t, NULL);
        }
        for (size_t i = 0; i < ELEMENTSOF(typ_bad); i++) {
                _cleanup_free_ char *t =
                        mint(k.rsa, "RS256", "rsa-1", claims(), json_pack("{s:s}", "typ", typ_bad[i]));

                expect_refused(k.jwks, &c, t, "typ");
        }
        {
                _cleanup_free_ char *no_typ =
                        mint(k.rsa, "RS256", "rsa-1", claims(), json_pack("{s:n}", "typ"));
                _cleanup_free_ char *typ_num =
                        mint(k.rsa, "RS256", "rsa-1", claims(), json_pack("{s:i}", "typ", 1));
                _cleanup_free_ char *crit = mint(k.rsa, "RS256", "rsa-1", claims(),
                                                 json_pack("{s:[s], s:b}", "crit", "b64", "b64", 0));
                _cleanup_free_ char *cty =
                        mint(k.rsa, "RS256", "rsa-1", claims(), json_pack("{s:s}", "cty", "JWT"));

                expect_ok(k.jwks, &c, no_typ, NULL);
                expect_refused(k.jwks, &c, typ_num, "typ");
                expect_refused(k.jwks, &c, crit, "crit");
                expect_refused(k.jwks, &c, cty, "cty");
        }
        /* Keys offered by the token itself (jwk, jku, x5u) are ignored: only the set counts. */
        {
                _cleanup_free_ char *t =
                        mint(k.rsa2, "RS256", "rsa-1", claims(),
                             json_pack("{s:o, s:s, s:s}", "jwk", jwk_public(k.rsa2, "rsa-1"), "jku",
                                       "https://evil.example/jwks", "x5u", "https://evil.example/c"));

                expect_refused(k.jwks, &c, t, "signature");
        }
        /* Duplicate members, and headers that are not JSON objects. */
        {
                _cleanup_free_ char *dup =
                        craft("{\"alg\":\"RS256\",\"kid\":\"rsa-1\",\"alg\":\"none\"}", payload, "xx", 2);
                _cleanup_free_ char *broken = craft("{\"alg\":\"RS256\",", payload, "xx", 2);
                _cleanup_free_ char *deep = craft("{\"a\":{\"b\":{\"c\":{\"d\":{}}}}}", payload, "xx", 2);
                _cleanup_free_ char *array = craft("[\"alg\"]", payload, "xx", 2);

                expect_refused(k.jwks, &c, dup, "header");
                expect_refused(k.jwks, &c, broken, "header");
                expect_refused(k.jwks, &c, deep, "header");
                expect_refused(k.jwks, &c, array, "format"); /* '[' does not encode to 'e' */
        }
}

static void test_time(void **state) {
        struct cm_oidc_config c = config();
        struct {
                json_t *claims;
                const char *check; /* NULL: accepted */
                uint64_t max_age_usec;
                uint64_t leeway_usec;
        } table[] = {
                { set(claims(), "exp", json_integer(NOW_S - 61)), "exp", 0, 0 },
                { set(claims(), "exp", json_integer(NOW_S - 59)), NULL, 0, 0 }, /* within the leeway */
                { set(claims(), "exp", json_integer(NOW_S - 10)), "exp", 0, 5 * USEC_PER_SEC },
                { set(claims(), "exp", NULL), "exp", 0, 0 },
                { set(claims(), "exp", json_string("tomorrow")), "exp", 0, 0 },
                { set(claims(), "exp", json_integer(-5)), "exp", 0, 0 },
                { set(claims(), "exp", json_integer(INT64_C(99999999999999))), "exp", 0, 0 },
                { set(claims(), "exp", json_real((double) NOW_S + 300.5)), NULL, 0, 0 },
                { set(claims(), "exp", json_true()), "exp", 0, 0 },
                { set(claims(), "nbf", json_integer(NOW_S + 61)), "nbf", 0, 0 },
                { set(claims(), "nbf", json_integer(NOW_S + 59)), NULL, 0, 0 },
                { set(claims(), "nbf", json_string("now")), "nbf", 0, 0 },
                { set(claims(), "nbf", NULL), NULL, 0, 0 },
                { set(claims(), "iat", json_integer(NOW_S + 3600)), "iat", 0, 0 },
                { set(claims(), "iat", json_integer(NOW_S - 7200)), "iat", 3600 * USEC_PER_SEC, 0 },
                { set(claims(), "iat", json_integer(NOW_S - 3600)), NULL, 3600 * USEC_PER_SEC, 0 },
                { set(claims(), "iat", NULL), "iat", 3600 * USEC_PER_SEC, 0 },
                { set(claims(), "iat", NULL), NULL, 0, 0 },
                { set(claims(), "iat", json_real(-1.0)), "iat", 0, 0 },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                _cleanup_free_ char *t = mint(k.rsa, "RS256", "rsa-1", table[i].claims, NULL);

                c.max_age_usec = table[i].max_age_usec;
                c.leeway_usec = table[i].leeway_usec;
                print_message("case %zu: %s\n", i, strna(table[i].check));
                if (table[i].check)
                        expect_refused(k.jwks, &c, t, table[i].check);
                else
                        expect_ok(k.jwks, &c, t, NULL);
        }

        /* The same token at different times. */
        {
                _cleanup_free_ char *t = mint(k.rsa, "RS256", "rsa-1", claims(), NULL);

                c = config();
                verify3(k.jwks, &c, t, NOW_USEC - 61 * USEC_PER_SEC, -EACCES, "nbf", false, NULL);
                verify3(k.jwks, &c, t, NOW_USEC - 60 * USEC_PER_SEC, 0, NULL, false, NULL);
                verify3(k.jwks, &c, t, NOW_USEC + 360 * USEC_PER_SEC, 0, NULL, false, NULL);
                verify3(k.jwks, &c, t, NOW_USEC + 361 * USEC_PER_SEC, -EACCES, "exp", false, NULL);
        }
}

static void test_issuer_audience(void **state) {
        struct cm_oidc_config c = config();
        struct {
                json_t *claims;
                const char *check;
        } table[] = {
                { set(claims(), "iss", json_string("https://evil.example")), "iss" },
                { set(claims(), "iss", json_string(ISSUER "/")), "iss" },
                { set(claims(), "iss", json_string("HTTPS://ISSUER.EXAMPLE")), "iss" },
                { set(claims(), "iss", NULL), "iss" },
                { set(claims(), "iss", json_integer(1)), "iss" },
                { set(claims(), "aud", json_string("someone-else")), "aud" },
                { set(claims(), "aud", json_pack("[s,s]", "other", AUDIENCE)), NULL },
                { set(claims(), "aud", json_pack("[s,s]", "other", "more")), "aud" },
                { set(claims(), "aud", json_pack("[]")), "aud" },
                { set(claims(), "aud", json_pack("[i]", 1)), "aud" },
                { set(claims(), "aud", json_pack("{s:s}", "aud", AUDIENCE)), "aud" },
                { set(claims(), "aud", NULL), "aud" },
                { set(claims(), "aud", json_string(AUDIENCE " ")), "aud" },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                _cleanup_free_ char *t = mint(k.ec256, "ES256", "ec-256", table[i].claims, NULL);

                if (table[i].check)
                        expect_refused(k.jwks, &c, t, table[i].check);
                else
                        expect_ok(k.jwks, &c, t, NULL);
        }
}

static void test_claims(void **state) {
        struct cm_oidc_config c = config();
        char long_string[300];
        json_t *many = json_array();

        memset(long_string, 'a', sizeof(long_string) - 1);
        long_string[sizeof(long_string) - 1] = 0;
        assert_non_null(many);
        for (int i = 0; i < 257; i++)
                assert_int_equal(json_array_append_new(many, json_sprintf("g%d", i)), 0);

        {
                struct {
                        json_t *claims;
                        const char *check;
                } table[] = {
                        { set(claims(), "sub", NULL), "sub" },
                        { set(claims(), "sub", json_string("")), "sub" },
                        { set(claims(), "sub", json_string(long_string)), "sub" },
                        { set(claims(), "sub", json_string("a\nb")), "sub" },
                        { set(claims(), "sub", json_integer(12)), "sub" },
                        { set(claims(), "email", json_string(long_string)), "email" },
                        { set(claims(), "email", json_integer(5)), "email" },
                        { set(claims(), "groups", json_pack("[s,i]", "ops", 1)), "groups" },
                        { set(claims(), "groups", json_pack("{s:s}", "a", "b")), "groups" },
                        { set(claims(), "groups", json_pack("[s]", "")), "groups" },
                        { set(claims(), "groups", json_pack("[s]", "a\x01")), "groups" },
                        { set(claims(), "groups", json_incref(many)), "groups" },
                        { set(claims(), "groups", json_integer(3)), "groups" },
                };

                for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                        _cleanup_free_ char *t = mint(k.rsa, "RS256", "rsa-1", table[i].claims, NULL);

                        expect_refused(k.jwks, &c, t, table[i].check);
                }
        }
        json_decref(many);

        /* Groups as a string, none, an empty array, another claim; unverified email. */
        {
                struct cm_oidc_principal p = {};
                _cleanup_free_ char *t1 =
                        mint(k.rsa, "RS256", "rsa-1", set(claims(), "groups", json_string("ops")), NULL);
                _cleanup_free_ char *t2 = mint(k.rsa, "RS256", "rsa-1", set(claims(), "groups", NULL), NULL);
                _cleanup_free_ char *t3 =
                        mint(k.rsa, "RS256", "rsa-1", set(claims(), "groups", json_pack("[]")), NULL);
                _cleanup_free_ char *t4 =
                        mint(k.rsa, "RS256", "rsa-1",
                             set(claims(), "https://example.com/roles", json_pack("[s,s,s]", "a", "b", "c")),
                             NULL);
                _cleanup_free_ char *t5 =
                        mint(k.rsa, "RS256", "rsa-1", set(claims(), "email_verified", json_false()), NULL);
                _cleanup_free_ char *t6 = mint(k.rsa, "RS256", "rsa-1",
                                               set(claims(), "email_verified", json_string("false")), NULL);
                _cleanup_free_ char *t7 =
                        mint(k.rsa, "RS256", "rsa-1", set(claims(), "email_verified", json_true()), NULL);
                _cleanup_free_ char *t8 = mint(k.rsa, "RS256", "rsa-1", set(claims(), "email", NULL), NULL);

                expect_ok(k.jwks, &c, t1, &p);
                assert_principal(&p, SUBJECT, EMAIL, 1);
                assert_string_equal(p.groups[0], "ops");
                cm_oidc_principal_done(&p);
                expect_ok(k.jwks, &c, t2, &p);
                assert_principal(&p, SUBJECT, EMAIL, 0);
                cm_oidc_principal_done(&p);
                expect_ok(k.jwks, &c, t3, &p);
                assert_principal(&p, SUBJECT, EMAIL, 0);
                cm_oidc_principal_done(&p);

                c.groups_claim = "https://example.com/roles";
                expect_ok(k.jwks, &c, t4, &p);
                assert_principal(&p, SUBJECT, EMAIL, 3);
                assert_string_equal(p.groups[2], "c");
                cm_oidc_principal_done(&p);
                c = config();

                expect_ok(k.jwks, &c, t5, &p);
                assert_principal(&p, SUBJECT, "", 2);
                cm_oidc_principal_done(&p);
                expect_ok(k.jwks, &c, t6, &p);
                assert_principal(&p, SUBJECT, "", 2);
                cm_oidc_principal_done(&p);
                expect_ok(k.jwks, &c, t7, &p);
                assert_principal(&p, SUBJECT, EMAIL, 2);
                cm_oidc_principal_done(&p);
                expect_ok(k.jwks, &c, t8, &p);
                assert_principal(&p, SUBJECT, "", 2);
                cm_oidc_principal_done(&p);
        }

        /* Signed payloads that are not a claims object. */
        {
                static const char *const payloads[] = {
                        "{\"iss\":\"" ISSUER "\",\"sub\":\"" SUBJECT "\",\"sub\":\"admin\"}",
                        "[1,2,3]",
                        "{\"iss\":",
                        "{\"a\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]}",
                        "{\"iss\":\"a\\u0000b\"}",
                };

                for (size_t i = 0; i < ELEMENTSOF(payloads); i++) {
                        _cleanup_free_ char *t = mint_raw(k.rsa, "RS256", "rsa-1", payloads[i], NULL);

                        expect_refused(k.jwks, &c, t, "payload");
                }
        }
        /* No payload at all: not even the shape of a JWT. */
        {
                _cleanup_free_ char *t = mint_raw(k.rsa, "RS256", "rsa-1", "", NULL);

                expect_refused(k.jwks, &c, t, "format");
        }
}

static void test_format_and_size(void **state) {
        struct cm_oidc_config c = config();
        _cleanup_free_ char *good = mint(k.rsa, "RS256", "rsa-1", claims(), NULL);
        size_t n = strlen(good);

        /* Padding: cjose 0.6's decoder aborts on some padded input, so it must never see any. */
        {
                static const char *const pads[] = { "=", "==", "A=", "AA=" };

                for (size_t i = 0; i < ELEMENTSOF(pads); i++) {
                        _cleanup_free_ char *t1 = NULL, *t2 = NULL, *t3 = NULL;
                        const char *d1 = strchr(good, '.'), *d2 = strrchr(good, '.');

                        assert_true(asprintf(&t1, "%.*s%s%s", (int) (d1 - good), good, pads[i], d1) > 0);
                        assert_true(asprintf(&t2, "%.*s%s%s", (int) (d2 - good), good, pads[i], d2) > 0);
                        assert_true(asprintf(&t3, "%s%s", good, pads[i]) > 0);
                        expect_refused(k.jwks, &c, t1, "format");
                        expect_refused(k.jwks, &c, t2, "format");
                        expect_refused(k.jwks, &c, t3, "format");
                }
        }
        {
                _cleanup_free_ char *four = NULL, *five = NULL, *space = NULL;
                _cleanup_free_ char *empty_payload = NULL;
                const char *d1 = strchr(good, '.');

                assert_true(asprintf(&four, "%s.AAAA", good) > 0);
                assert_true(asprintf(&five, "%s.AAAA.BBBB", good) > 0);
                assert_true(asprintf(&space, " %s", good) > 0);
                assert_true(asprintf(&empty_payload, "%.*s..AAAA", (int) (d1 - good), good) > 0);
                expect_refused(k.jwks, &c, four, "format");
                expect_refused(k.jwks, &c, five, "format");
                expect_refused(k.jwks, &c, space, "format");
                expect_refused(k.jwks, &c, empty_payload, "format");
                expect_refused(k.jwks, &c, "not-a-token", "format");
                expect_refused(k.jwks, &c, "cmk_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG", "format");
                /* A header whose last character has bits set that base64url leaves unused. */
                {
                        static const char alphabet[] =
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                        const char *h =
                                "{\"alg\":\"RS256\",\"kid\":\"rsa-1\"}"; /* 29 bytes: 39 characters */
                        _cleanup_free_ char *t = craft(h, "{}", "sig", 3);
                        char *last = strchr(t, '.') - 1;

                        assert_int_equal(strchr(t, '.') - t, 39);
                        *last = alphabet[strchr(alphabet, *last) - alphabet + 1];
                        expect_refused(k.jwks, &c, t, "format");
                }
        }
        /* Huge: one byte over the limit, and far over it. */
        {
                _cleanup_free_ char *big = malloc(CM_OIDC_TOKEN_MAX + 2);
                _cleanup_free_ char *huge = malloc(1024 * 1024 + 1);
                struct cm_oidc_principal p = {};
                char reason[256];

                assert_true(big && huge);
                memset(big, 'A', CM_OIDC_TOKEN_MAX + 1);
                memcpy(big, good, n);
                big[CM_OIDC_TOKEN_MAX + 1] = 0;
                memset(huge, 'e', 1024 * 1024);
                huge[1024 * 1024] = 0;
                expect_refused(k.jwks, &c, big, "size");
                expect_refused(k.jwks, &c, huge, "size");
                assert_int_equal(cm_oidc_verify_with_jwks(k.jwks, strlen(k.jwks), &c, good, 0, NOW_USEC, &p,
                                                          reason, sizeof(reason), NULL),
                                 -EACCES);
                assert_reason_clean(reason, "format", NULL);
        }
        /* Big but within the limit: many long groups. */
        {
                json_t *groups = json_array();
                _cleanup_free_ char *t = NULL;
                struct cm_oidc_principal p = {};

                assert_non_null(groups);
                for (int i = 0; i < 60; i++)
                        assert_int_equal(
                                json_array_append_new(groups, json_sprintf("group-%04d-%s", i,
                                                                           "padding-padding-padding-pad")),
                                0);
                t = mint(k.rsa, "RS256", "rsa-1", set(claims(), "groups", groups), NULL);
                print_message("large token: %zu bytes\n", strlen(t));
                assert_true(strlen(t) > 3000 && strlen(t) <= CM_OIDC_TOKEN_MAX);
                expect_ok(k.jwks, &c, t, &p);
                assert_int_equal(p.n_groups, 60);
                cm_oidc_principal_done(&p);
        }
}

static void test_looks_like_jwt(void **state) {
        static const struct {
                const char *s;
                bool jwt;
        } table[] = {
                { "eyJh.eyJi.c2ln", true },
                { "eyJh.eyJi.", true }, /* unsigned: still a JWT (refused later, with reason alg) */
                { "eyJh.eyJi", false },
                { "eyJh..c2ln", false },
                { ".eyJi.c2ln", false },
                { "eyJh.eyJi.c2ln.", false },
                { "eyJh.eyJi.c2ln.eHh4.eXl5", false },
                { "eyJh=.eyJi.c2ln", false },
                { "eyJh.eyJi.c2l+", false },
                { "eyJh.eyJi.c2l/", false },
                { "eyI.eyJi.c2ln", true },
                { "eyJ.eyJi.c2ln", false }, /* 'J' has unused bits set */
                { "eyJhb.eyJi.c2ln", false }, /* length 5: not base64 */
                { "eyJhf.eyJi.c2ln", false },
                { "eyK.eyJi.c2ln", false }, /* 'K' has unused bits set */
                { "WyJh.eyJi.c2ln", false }, /* not an object */
                { "cmk_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", false },
                { "", false },
                { "eyJh.eyJi.c2ln\n", false },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (cm_oidc_looks_like_jwt(table[i].s, strlen(table[i].s)) != table[i].jwt)
                        fail_msg("looks_like_jwt('%s') != %d", table[i].s, table[i].jwt);
        assert_false(cm_oidc_looks_like_jwt(NULL, 0));
        /* n counts: a NUL inside is not base64url. */
        assert_false(cm_oidc_looks_like_jwt("eyJh.eyJi.c2ln\0xx", 17));
        assert_true(cm_oidc_looks_like_jwt("eyJh.eyJi.c2lnXX", 14));
}

static void test_parse_bearer(void **state) {
        static const struct {
                const char *h;
                const char *token; /* NULL: -EINVAL */
        } table[] = {
                { "Bearer abc", "abc" },
                { "bearer abc", "abc" },
                { "BEARER abc", "abc" },
                { "Bearer eyJh.eyJi.c2ln", "eyJh.eyJi.c2ln" },
                { "Bearer a-._~+/b==", "a-._~+/b==" },
                { "Bearer abc=", "abc=" },
                { "Bearer =abc", NULL },
                { "Bearer ab=c", NULL },
                { "Bearer  abc", NULL },
                { "Bearer\tabc", NULL },
                { "Bearer abc ", NULL },
                { "Bearer abc\r\n", NULL },
                { "Bearer ", NULL },
                { "Bearer", NULL },
                { "Basic YWxhZGRpbjpvcGVuc2VzYW1l", NULL },
                { "Bearerabc", NULL },
                { "Bearer a,b", NULL },
                { "Bearer a\"b", NULL },
                { "Bearer \xc3\xa9", NULL },
                { "", NULL },
                { " Bearer abc", NULL },
        };
        const char *t = NULL;
        size_t n = 0;

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                int r = cm_auth_parse_bearer(table[i].h, &t, &n);

                if (!table[i].token) {
                        if (r != -EINVAL)
                                fail_msg("'%s' was accepted", table[i].h);
                        continue;
                }
                if (r != 0)
                        fail_msg("'%s' was refused: %d", table[i].h, r);
                assert_int_equal(n, strlen(table[i].token));
                assert_memory_equal(t, table[i].token, n);
                assert_ptr_equal(t, table[i].h + 7);
        }
        assert_int_equal(cm_auth_parse_bearer(NULL, &t, &n), -EINVAL);

        /* The limit: exactly CM_OIDC_TOKEN_MAX characters, and one more. */
        {
                _cleanup_free_ char *h = malloc(7 + CM_OIDC_TOKEN_MAX + 2);

                assert_non_null(h);
                memcpy(h, "Bearer ", 7);
                memset(h + 7, 'a', CM_OIDC_TOKEN_MAX);
                h[7 + CM_OIDC_TOKEN_MAX] = 0;
                assert_int_equal(cm_auth_parse_bearer(h, &t, &n), 0);
                assert_int_equal(n, CM_OIDC_TOKEN_MAX);
                h[7 + CM_OIDC_TOKEN_MAX] = 'a';
                h[7 + CM_OIDC_TOKEN_MAX + 1] = 0;
                assert_int_equal(cm_auth_parse_bearer(h, &t, &n), -EINVAL);
                h[7 + CM_OIDC_TOKEN_MAX] = '=';
                assert_int_equal(cm_auth_parse_bearer(h, &t, &n), -EINVAL);
        }
}

static void expect_jwks_refused(const char *jwks, size_t n, const char *what) {
        struct cm_oidc_config c = config();
        _cleanup_free_ char *t = mint(k.rsa, "RS256", "rsa-1", claims(), NULL);
        struct cm_oidc_principal p = {};
        struct cm_oidc *o = NULL;
        char reason[512] = "";
        int r;

        r = cm_oidc_verify_with_jwks(jwks, n, &c, t, strlen(t), NOW_USEC, &p, reason, sizeof(reason), NULL);
        if (r != -EPROTO)
                fail_msg("%s: expected -EPROTO, got %d: %s", what, r, reason);
        assert_reason_clean(reason, "jwks", t);
        r = cm_oidc_new_with_jwks(&c, jwks, n, &o, reason, sizeof(reason));
        assert_int_equal(r, -EPROTO);
        assert_null(o);
        assert_reason_clean(reason, "jwks", t);
        print_message("%s: %s\n", what, reason);
}

static void test_jwks_documents(void **state) {
        struct cm_oidc_config c = config();
        _cleanup_free_ char *t = mint(k.rsa, "RS256", "rsa-1", claims(), NULL);

        expect_jwks_refused("", 0, "empty");
        expect_jwks_refused("not json", 8, "not JSON");
        expect_jwks_refused("[]", 2, "an array");
        expect_jwks_refused("{}", 2, "no keys");
        expect_jwks_refused("{\"keys\":{}}", 11, "keys an object");
        expect_jwks_refused("{\"keys\":[],\"keys\":[]}", 21, "keys twice");
        {
                json_t *jwk = jwk_public(k.rsa, "rsa-1");
                _cleanup_free_ char *pub = json_dumps(jwk, JSON_COMPACT);

                json_decref(jwk);
                assert_non_null(pub);
                /* 101 keys: too many. 100: fine. */
                for (int keys = 101; keys >= 100; keys--) {
                        struct strbuf sb = STRBUF_INIT(1024 * 1024);
                        _cleanup_free_ char *doc = NULL;

                        assert_int_equal(strbuf_addl(&sb, "{\"keys\":["), 0);
                        for (int i = 0; i < keys; i++)
                                assert_int_equal(strbuf_addf(&sb, "%s%s", i ? "," : "", pub), 0);
                        assert_int_equal(strbuf_addl(&sb, "]}"), 0);
                        doc = strbuf_detach(&sb, NULL);
                        assert_non_null(doc);
                        if (keys > 100)
                                expect_jwks_refused(doc, strlen(doc), "101 keys");
                        else
                                expect_ok(doc, &c, t, NULL);
                }
        }
        {
                size_t big = CM_OIDC_JWKS_MAX + 16;
                _cleanup_free_ char *doc = malloc(big + 1);

                assert_non_null(doc);
                memset(doc, ' ', big);
                memcpy(doc, "{\"keys\":[]}", 11);
                doc[big] = 0;
                expect_jwks_refused(doc, big, "too large");
        }
        {
                struct strbuf sb = STRBUF_INIT(64 * 1024);
                _cleanup_free_ char *doc = NULL;

                assert_int_equal(strbuf_addl(&sb, "{\"keys\":["), 0);
                for (int i = 0; i < 40; i++)
                        assert_int_equal(strbuf_addch(&sb, '['), 0);
                for (int i = 0; i < 40; i++)
                        assert_int_equal(strbuf_addch(&sb, ']'), 0);
                assert_int_equal(strbuf_addl(&sb, "]}"), 0);
                doc = strbuf_detach(&sb, NULL);
                expect_jwks_refused(doc, strlen(doc), "nested too deeply");
        }

        /* Junk members of keys are skipped, not fatal: the usable key still works. */
        {
                json_t *padded = jwk_public(k.rsa, "padded");
                json_t *bad_curve = set(jwk_public(k.ec256, "bad-curve"), "crv", json_string("P-999"));
                json_t *off_curve = jwk_public(k.ec256, "off-curve");
                json_t *short_x = set(jwk_public(k.ec256, "short-x"), "x", json_string("AAAA"));
                json_t *okp = json_pack("{s:s, s:s, s:s, s:s}", "kty", "OKP", "crv", "Ed25519", "x",
                                        "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid", "ed-1");
                json_t *even_e = set(jwk_public(k.rsa, "even-e"), "e", json_string("AQAA"));
                _cleanup_free_ char *padded_n = NULL;
                _cleanup_free_ char *doc = NULL;
                char *x;

                padded_n = strdup(json_string_value(json_object_get(padded, "n")));
                assert_non_null(padded_n);
                set(padded, "n", json_sprintf("%s=", padded_n)); /* would make cjose abort */
                x = strdup(json_string_value(json_object_get(off_curve, "x")));
                assert_non_null(x);
                x[5] = x[5] == 'A' ? 'B' : 'A';
                set(off_curve, "x", json_string(x));
                free(x);
                doc = jwks_doc(json_string("a string"), json_integer(7), json_pack("{}"), padded, bad_curve,
                               off_curve, short_x, okp, even_e, jwk_public(k.rsa, "rsa-1"));
                expect_ok(doc, &c, t, NULL);
                {
                        static const char *const kids[] = { "padded", "bad-curve", "off-curve", "short-x",
                                                            "even-e" };

                        for (size_t i = 0; i < ELEMENTSOF(kids); i++) {
                                _cleanup_free_ char *tk = mint(
                                        strneq(kids[i], "even", 4) || streq(kids[i], "padded") ? k.rsa
                                                                                               : k.ec256,
                                        strneq(kids[i], "even", 4) || streq(kids[i], "padded") ? "RS256"
                                                                                               : "ES256",
                                        kids[i], claims(), NULL);

                                verify3(doc, &c, tk, NOW_USEC, -EACCES, "kid", true, NULL);
                        }
                }
        }
        /* An empty set is a set: every token names an unknown key. */
        verify3("{\"keys\":[]}", &c, t, NOW_USEC, -EACCES, "kid", true, NULL);
}

static void test_config(void **state) {
        static const struct {
                const char *issuer;
                const char *audience;
                bool ok;
        } table[] = {
                { "https://issuer.example", "a", true },
                { "https://issuer.example/", "a", true },
                { "https://issuer.example:8443/realms/x", "a", true },
                { "http://issuer.example", "a", false },
                { "https://user:secret@issuer.example", "a", false },
                { "https://issuer.example?x=1", "a", false },
                { "https://issuer.example#x", "a", false },
                { "https://", "a", false },
                { "https://issuer .example", "a", false },
                { "", "a", false },
                { NULL, "a", false },
                { "https://issuer.example", "", false },
                { "https://issuer.example", NULL, false },
        };
        char err[512];

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                struct cm_oidc_config c = { .issuer = table[i].issuer, .audience = table[i].audience };
                struct cm_oidc *o = NULL;
                int r = cm_oidc_new(&c, &o, err, sizeof(err));

                if (table[i].ok != (r == 0))
                        fail_msg("issuer '%s' audience '%s': %d %s", strna(table[i].issuer),
                                 strna(table[i].audience), r, err);
                if (r < 0) {
                        assert_int_equal(r, -EINVAL);
                        assert_null(strstr(err, "secret"));
                } else {
                        assert_string_equal(cm_oidc_issuer(o), table[i].issuer);
                }
                cm_oidc_free(o);
        }
        {
                struct cm_oidc_config c = config();
                struct cm_oidc *o = NULL;

                c.leeway_usec = CM_OIDC_LEEWAY_USEC_MAX + 1;
                assert_int_equal(cm_oidc_new(&c, &o, err, sizeof(err)), -EINVAL);
                c = config();
                c.max_age_usec = CM_OIDC_MAX_AGE_USEC_MAX + 1;
                assert_int_equal(cm_oidc_new(&c, &o, err, sizeof(err)), -EINVAL);
                c = config();
                c.groups_claim = "has space";
                assert_int_equal(cm_oidc_new(&c, &o, err, sizeof(err)), -EINVAL);
                c = config();
                c.token_cache_size = CM_OIDC_TOKEN_CACHE_MAX + 1;
                assert_int_equal(cm_oidc_new(&c, &o, err, sizeof(err)), -EINVAL);
                c = config();
                c.ca_file = "/nonexistent/ca.pem";
                assert_int_equal(cm_oidc_new(&c, &o, err, sizeof(err)), -ENOENT);
                assert_non_null(strstr(err, "/nonexistent/ca.pem"));
                c.ca_file = CM_TESTDATA_DIR;
                assert_int_equal(cm_oidc_new(&c, &o, err, sizeof(err)), -EINVAL);
                assert_null(o);
                assert_int_equal(cm_oidc_new(NULL, &o, err, sizeof(err)), -EINVAL);
                /* The pure function checks the configuration too. */
                {
                        struct cm_oidc_principal p = {};
                        char reason[256];

                        c = config();
                        c.audience = NULL;
                        assert_int_equal(cm_oidc_verify_with_jwks(k.jwks, strlen(k.jwks), &c, "x.y.z", 5,
                                                                  NOW_USEC, &p, reason, sizeof(reason),
                                                                  NULL),
                                         -EINVAL);
                }
        }
}

static void test_token_cache(void **state) {
        struct cm_oidc_config c = config();
        _cleanup_(cm_oidc_freep) struct cm_oidc *o = NULL;
        _cleanup_free_ char *t = mint(k.ec256, "ES256", "ec-256", claims(), NULL);
        _cleanup_free_ char *t2 =
                mint(k.ec256, "ES256", "ec-256", set(claims(), "sub", json_string("bob")), NULL);
        _cleanup_free_ char *tampered = NULL;
        struct cm_oidc_principal p = {};
        struct cm_oidc_stats st;
        char reason[512], err[512];

        c.token_cache_size = 3; /* rounded up to 4 */
        if (cm_oidc_new_with_jwks(&c, k.jwks, strlen(k.jwks), &o, err, sizeof(err)) < 0)
                fail_msg("%s", err);
        for (int i = 0; i < 3; i++) {
                assert_int_equal(cm_oidc_verify(o, t, strlen(t), NOW_USEC, &p, reason, sizeof(reason)), 0);
                assert_principal(&p, SUBJECT, EMAIL, 2);
                cm_oidc_principal_done(&p);
        }
        cm_oidc_get_stats(o, &st);
        assert_int_equal(st.token_cache_hits, 2);
        assert_int_equal(st.token_cache_misses, 1);
        assert_int_equal(st.jwks_keys, 4);
        assert_int_equal(st.jwks_fetches, 0);

        /* A cached token is checked against the clock as if it were new. */
        assert_int_equal(
                cm_oidc_verify(o, t, strlen(t), NOW_USEC + 361 * USEC_PER_SEC, &p, reason, sizeof(reason)),
                -EACCES);
        assert_reason_clean(reason, "exp", t);
        assert_int_equal(
                cm_oidc_verify(o, t, strlen(t), NOW_USEC - 61 * USEC_PER_SEC, &p, reason, sizeof(reason)),
                -EACCES);
        assert_reason_clean(reason, "nbf", t);
        /* Another token in the same cache, and the first one again. */
        assert_int_equal(cm_oidc_verify(o, t2, strlen(t2), NOW_USEC, &p, reason, sizeof(reason)), 0);
        assert_string_equal(p.subject, "bob");
        cm_oidc_principal_done(&p);
        assert_int_equal(cm_oidc_verify(o, t, strlen(t), NOW_USEC, &p, reason, sizeof(reason)), 0);
        assert_string_equal(p.subject, SUBJECT);
        cm_oidc_principal_done(&p);
        /* A changed token is a different token. */
        tampered = strdup(t);
        assert_non_null(tampered);
        tampered[strlen(tampered) - 3] = tampered[strlen(tampered) - 3] == 'A' ? 'B' : 'A';
        assert_int_equal(cm_oidc_verify(o, tampered, strlen(tampered), NOW_USEC, &p, reason, sizeof(reason)),
                         -EACCES);
        assert_reason_clean(reason, "signature", tampered);
        /* An unknown kid with a fixed set: refused, nothing fetched. */
        {
                _cleanup_free_ char *u = mint(k.rsa2, "RS256", "rsa-2", claims(), NULL);

                assert_int_equal(cm_oidc_verify(o, u, strlen(u), NOW_USEC, &p, reason, sizeof(reason)),
                                 -EACCES);
                assert_reason_clean(reason, "kid", u);
                assert_int_equal(cm_oidc_refresh(o, err, sizeof(err)), 0);
        }
        /* The maximum age bounds a cached token too. */
        {
                _cleanup_(cm_oidc_freep) struct cm_oidc *o2 = NULL;

                c.max_age_usec = 100 * USEC_PER_SEC;
                assert_int_equal(cm_oidc_new_with_jwks(&c, k.jwks, strlen(k.jwks), &o2, err, sizeof(err)),
                                 0);
                assert_int_equal(cm_oidc_verify(o2, t, strlen(t), NOW_USEC, &p, reason, sizeof(reason)), 0);
                cm_oidc_principal_done(&p);
                assert_int_equal(cm_oidc_verify(o2, t, strlen(t), NOW_USEC + 150 * USEC_PER_SEC, &p, reason,
                                                sizeof(reason)),
                                 0);
                cm_oidc_principal_done(&p);
                assert_int_equal(cm_oidc_verify(o2, t, strlen(t), NOW_USEC + 161 * USEC_PER_SEC, &p, reason,
                                                sizeof(reason)),
                                 -EACCES);
                assert_reason_clean(reason, "iat", t);
        }
}

struct worker {
        struct cm_oidc *o;
        char *tokens[3];
        int failures;
        char reason[512];
};

static void *worker_run(void *arg) {
        struct worker *w = arg;

        for (int i = 0; i < 300; i++) {
                struct cm_oidc_principal p = {};
                const char *t = w->tokens[i % 3];
                int r = cm_oidc_verify(w->o, t, strlen(t), 0, &p, w->reason, sizeof(w->reason));

                if (r != 0 || !streq(p.subject, SUBJECT))
                        w->failures++;
                cm_oidc_principal_done(&p);
        }
        return NULL;
}

static void run_workers(struct cm_oidc *o, int64_t now_s) {
        struct worker workers[8] = {};
        pthread_t threads[ELEMENTSOF(workers)];

        for (size_t i = 0; i < ELEMENTSOF(workers); i++) {
                workers[i].o = o;
                for (int j = 0; j < 3; j++) {
                        json_t *c = set(
                                set(set(claims(), "iat", json_integer(now_s)), "nbf", json_integer(now_s)),
                                "exp", json_integer(now_s + 600));

                        set(c, "jti", json_sprintf("w%zu-%d", i, j));
                        workers[i].tokens[j] =
                                j == 1 ? mint(k.ec256, "ES256", "ec-256", c, NULL)
                                       : mint(k.rsa, j == 0 ? "RS256" : "PS256", "rsa-1", c, NULL);
                }
        }
        for (size_t i = 0; i < ELEMENTSOF(workers); i++)
                assert_int_equal(pthread_create(&threads[i], NULL, worker_run, &workers[i]), 0);
        for (size_t i = 0; i < ELEMENTSOF(workers); i++) {
                assert_int_equal(pthread_join(threads[i], NULL), 0);
                if (workers[i].failures > 0)
                        fail_msg("thread %zu: %d failures, last: %s", i, workers[i].failures,
                                 workers[i].reason);
                for (int j = 0; j < 3; j++)
                        free(workers[i].tokens[j]);
        }
}

static void test_threads_fixed(void **state) {
        struct cm_oidc_config c = config();
        _cleanup_(cm_oidc_freep) struct cm_oidc *o = NULL;
        char err[512];

        c.token_cache_size = 8; /* collisions and replacements under contention */
        assert_int_equal(cm_oidc_new_with_jwks(&c, k.jwks, strlen(k.jwks), &o, err, sizeof(err)), 0);
        run_workers(o, (int64_t) (cm_now_usec() / USEC_PER_SEC));
}

/* ---------------------------------------------------------------------------------------------- */
/* The network: the test provider serves discovery, and the JWK set from a file this test writes. */

static struct {
        bool available;
        pid_t pid;
        char dir[PATH_MAX];
        char jwks_file[PATH_MAX];
        char control_file[PATH_MAX];
        char ready_file[PATH_MAX];
        char log[PATH_MAX];
        char issuer[128];
        char ca_file[PATH_MAX];
        int port;
} idp;

static void path_join(char *buf, size_t size, const char *dir, const char *name) {
        assert_true(cm_snprintf(buf, size, "%s/%s", dir, name) >= 0);
}

static void write_file(const char *path, const char *content) {
        assert_int_equal(cm_write_file_atomic(path, content, strlen(content), 0600), 0);
}

static void dump_log(void) {
        _cleanup_free_ char *log = NULL;
        size_t n;

        if (cm_read_file(idp.log, 64 * 1024, false, &log, &n) >= 0)
                print_message("provider log:\n%s\n", log);
}

/* Starts the provider (on idp.port when set) and waits for its ready file. */
static void idp_start(void) {
        char port[16];
        uint64_t deadline;
        int status;

        (void) unlink(idp.ready_file);
        assert_true(cm_snprintf(port, sizeof(port), "%d", idp.port) >= 0);
        char *const argv[] = {
                CM_UNCONST(char *, "python3"),
                CM_UNCONST(char *, PROVIDER),
                CM_UNCONST(char *, "serve"),
                CM_UNCONST(char *, "--dir"),
                idp.dir,
                CM_UNCONST(char *, "--jwks-file"),
                idp.jwks_file,
                CM_UNCONST(char *, "--port"),
                port,
                NULL,
        };

        idp.pid = fork();
        assert_true(idp.pid >= 0);
        if (idp.pid == 0) {
                int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
                int out = open(idp.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

                (void) setpgid(0, 0);
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
                        _exit(126);
                execvp(argv[0], argv);
                _exit(127);
        }

        deadline = cm_mono_usec() + 60 * USEC_PER_SEC;
        while (access(idp.ready_file, R_OK) != 0) {
                if (waitpid(idp.pid, &status, WNOHANG) == idp.pid) {
                        idp.pid = 0;
                        dump_log();
                        fail_msg("the OIDC provider exited with status %d before it was ready", status);
                }
                if (cm_mono_usec() > deadline) {
                        dump_log();
                        fail_msg("the OIDC provider is not ready after 60 s");
                }
                (void) usleep(20 * 1000);
        }
        {
                _cleanup_free_ char *ready = NULL;
                json_t *j;
                size_t n;

                assert_int_equal(cm_read_file(idp.ready_file, 4096, false, &ready, &n), 0);
                j = json_loads(ready, 0, NULL);
                assert_non_null(j);
                assert_int_equal(cm_strlcpy(idp.issuer, json_string_value(json_object_get(j, "issuer")),
                                            sizeof(idp.issuer)),
                                 0);
                assert_int_equal(cm_strlcpy(idp.ca_file, json_string_value(json_object_get(j, "ca_file")),
                                            sizeof(idp.ca_file)),
                                 0);
                idp.port = (int) json_integer_value(json_object_get(j, "port"));
                json_decref(j);
        }
}

static void idp_stop(void) {
        uint64_t deadline;
        int status;

        if (idp.pid <= 0)
                return;
        (void) kill(idp.pid, SIGTERM);
        deadline = cm_mono_usec() + 10 * USEC_PER_SEC;
        while (waitpid(idp.pid, &status, WNOHANG) == 0) {
                if (cm_mono_usec() > deadline) {
                        (void) kill(idp.pid, SIGKILL);
                        (void) waitpid(idp.pid, &status, 0);
                        break;
                }
                (void) usleep(10 * 1000);
        }
        idp.pid = 0;
}

static bool have_program(const char *name) {
        const char *path = getenv("PATH");
        _cleanup_free_ char *copy = strdup(isempty(path) ? "/usr/bin:/bin" : path);
        char *save = NULL;

        assert_non_null(copy);
        for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
                char p[PATH_MAX];

                if (cm_snprintf(p, sizeof(p), "%s/%s", d, name) >= 0 && access(p, X_OK) == 0)
                        return true;
        }
        return false;
}

static void remove_tree(const char *dir) {
        static const char *const names[] = { "jwks.json",      "control.json",   "ready.json",
                                             "provider.log",   "tls/ca.pem",     "tls/ca.key",
                                             "tls/server.pem", "tls/server.key", "tls/server.csr",
                                             "tls/server.ext", "tls/ca.srl" };
        _cleanup_free_ char *keys = NULL;
        char path[PATH_MAX];

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                path_join(path, sizeof(path), dir, names[i]);
                (void) unlink(path);
        }
        /* keys/: the provider's own keys (unused here). */
        path_join(path, sizeof(path), dir, "keys");
        {
                DIR *d = opendir(path);
                struct dirent *de;

                while (d && (de = readdir(d))) {
                        char p[PATH_MAX * 2];

                        if (de->d_name[0] == '.')
                                continue;
                        if (cm_snprintf(p, sizeof(p), "%s/%s", path, de->d_name) >= 0)
                                (void) unlink(p);
                }
                if (d)
                        closedir(d);
        }
        (void) rmdir(path);
        path_join(path, sizeof(path), dir, "tls");
        (void) rmdir(path);
        (void) rmdir(dir);
}

static int net_setup(void **state) {
        const char *tmp = getenv("TMPDIR");

        assert_true(cm_snprintf(idp.dir, sizeof(idp.dir), "%s/cm-oidc-XXXXXX",
                                isempty(tmp) ? "/tmp" : tmp) >= 0);
        assert_non_null(mkdtemp(idp.dir));
        path_join(idp.jwks_file, sizeof(idp.jwks_file), idp.dir, "jwks.json");
        path_join(idp.control_file, sizeof(idp.control_file), idp.dir, "control.json");
        path_join(idp.ready_file, sizeof(idp.ready_file), idp.dir, "ready.json");
        path_join(idp.log, sizeof(idp.log), idp.dir, "provider.log");
        write_file(idp.jwks_file, k.jwks);
        idp.available = have_program("python3") && have_program("openssl") && access(PROVIDER, R_OK) == 0;
        if (!idp.available)
                return 0;
        idp_start();
        return 0;
}

static int net_teardown(void **state) {
        idp_stop();
        remove_tree(idp.dir);
        return 0;
}

static void need_idp(void) {
        const char *ci = getenv("CI");

        if (idp.available && idp.pid > 0)
                return;
        if (ci && streq(ci, "true"))
                fail_msg("python3 and openssl are needed to run %s", PROVIDER);
        print_message("skipped: python3 or openssl is missing\n");
        skip();
}

static struct cm_oidc *idp_verifier(uint64_t refresh_min_usec, uint64_t max_age_usec, unsigned timeout_ms) {
        struct cm_oidc_config c = { .issuer = idp.issuer,
                                    .audience = AUDIENCE,
                                    .ca_file = idp.ca_file,
                                    .refresh_min_usec = refresh_min_usec,
                                    .jwks_max_age_usec = max_age_usec,
                                    .timeout_ms = timeout_ms };
        struct cm_oidc *o = NULL;
        char err[512];

        if (cm_oidc_new(&c, &o, err, sizeof(err)) < 0)
                fail_msg("cm_oidc_new: %s", err);
        return o;
}

/* A token of idp's issuer signed by key under kid, valid now. */
static char *idp_token(cjose_jwk_t *key, const char *alg, const char *kid) {
        int64_t now = (int64_t) (cm_now_usec() / USEC_PER_SEC);
        json_t *c = set(set(set(set(claims(), "iss", json_string(idp.issuer)), "iat", json_integer(now)),
                            "nbf", json_integer(now)),
                        "exp", json_integer(now + 600));

        return mint(key, alg, kid, c, NULL);
}

static int verify_now(struct cm_oidc *o, const char *t, char *reason, size_t size) {
        struct cm_oidc_principal p = {};
        int r = cm_oidc_verify(o, t, strlen(t), 0, &p, reason, size);

        if (r == 0)
                assert_string_equal(p.subject, SUBJECT);
        cm_oidc_principal_done(&p);
        return r;
}

static uint64_t fetches(struct cm_oidc *o) {
        struct cm_oidc_stats st;

        cm_oidc_get_stats(o, &st);
        return st.jwks_fetches;
}

static void test_fetch_and_rotate(void **state) {
        _cleanup_(cm_oidc_freep) struct cm_oidc *o = NULL;
        _cleanup_free_ char *t1 = NULL, *t2 = NULL, *t3 = NULL, *set12 = NULL, *set2 = NULL;
        char reason[512];
        cjose_jwk_t *rsa3;

        need_idp();
        write_file(idp.control_file, "{}");
        set12 = jwks_doc(jwk_public(k.rsa, "rsa-1"), jwk_public(k.rsa2, "rsa-2"));
        set2 = jwks_doc(jwk_public(k.rsa2, "rsa-2"));
        write_file(idp.jwks_file, k.jwks);
        o = idp_verifier(2 * USEC_PER_SEC, 0, 5000);
        t1 = idp_token(k.rsa, "RS256", "rsa-1");
        t2 = idp_token(k.rsa2, "RS256", "rsa-2");

        /* First use: discovery and the set. */
        if (verify_now(o, t1, reason, sizeof(reason)) != 0)
                fail_msg("%s", reason);
        assert_int_equal(fetches(o), 1);
        assert_int_equal(verify_now(o, t1, reason, sizeof(reason)), 0);
        assert_int_equal(fetches(o), 1);

        /* A new key: the set is fetched again, but not sooner than refresh_min after the last fetch. */
        write_file(idp.jwks_file, set12);
        assert_int_equal(verify_now(o, t2, reason, sizeof(reason)), -EACCES);
        assert_reason_clean(reason, "kid", t2);
        assert_int_equal(fetches(o), 1);
        (void) usleep(2100 * 1000);
        if (verify_now(o, t2, reason, sizeof(reason)) != 0)
                fail_msg("after the refresh: %s", reason);
        assert_int_equal(fetches(o), 2);

        /* Rotation: rsa-1 removed. The set in use still has it until the next fetch. */
        write_file(idp.jwks_file, set2);
        assert_int_equal(verify_now(o, t1, reason, sizeof(reason)), 0);
        rsa3 = rsa_new(2048, "rsa-3");
        t3 = idp_token(rsa3, "RS256", "rsa-3");
        (void) usleep(2100 * 1000);
        assert_int_equal(verify_now(o, t3, reason, sizeof(reason)), -EACCES); /* fetched: not there either */
        assert_reason_clean(reason, "kid", t3);
        assert_int_equal(fetches(o), 3);
        assert_int_equal(verify_now(o, t1, reason, sizeof(reason)), -EACCES); /* gone, and cached no more */
        assert_reason_clean(reason, "kid", t1);
        assert_int_equal(verify_now(o, t2, reason, sizeof(reason)), 0);
        assert_int_equal(fetches(o), 3);
        cjose_jwk_release(rsa3);
        write_file(idp.jwks_file, k.jwks);
}

static void expect_fetch_error(struct cm_oidc *o, const char *t, int expected, const char *check,
                               const char *needle) {
        char reason[512] = "";
        int r = verify_now(o, t, reason, sizeof(reason));

        print_message("%s: %s\n", check, reason);
        if (r != expected)
                fail_msg("expected %d, got %d: %s", expected, r, reason);
        assert_reason_clean(reason, check, t);
        if (needle && !strstr(reason, needle))
                fail_msg("'%s' is not in '%s'", needle, reason);
}

static void test_fetch_errors(void **state) {
        _cleanup_free_ char *t = NULL;
        struct cm_oidc_stats st;

        need_idp();
        write_file(idp.jwks_file, k.jwks);
        t = idp_token(k.rsa, "RS256", "rsa-1");

        /* The discovery document names another issuer. */
        write_file(idp.control_file, "{\"discovery\": {\"issuer\": \"https://elsewhere.example\"}}");
        {
                _cleanup_(cm_oidc_freep) struct cm_oidc *o = idp_verifier(0, 0, 5000);

                expect_fetch_error(o, t, -EPROTO, "discovery", "issuer");
                /* Requests right after a failure get its error without a fetch of their own. */
                expect_fetch_error(o, t, -EPROTO, "discovery", "issuer");
                cm_oidc_get_stats(o, &st);
                assert_int_equal(st.jwks_fetch_failures, 1);
                /* A second later it is tried again, and works once the provider is fixed. */
                write_file(idp.control_file, "{}");
                (void) usleep(1100 * 1000);
                assert_int_equal(verify_now(o, t, NULL, 0), 0);
                cm_oidc_get_stats(o, &st);
                assert_int_equal(st.jwks_fetches, 1);
                assert_int_equal(st.jwks_fetch_failures, 1);
        }
        /* jwks_uri is not https. */
        write_file(idp.control_file, "{\"discovery\": {\"jwks_uri\": \"http://127.0.0.1:1/jwks.json\"}}");
        {
                _cleanup_(cm_oidc_freep) struct cm_oidc *o = idp_verifier(0, 0, 5000);

                expect_fetch_error(o, t, -EPROTO, "discovery", "jwks_uri");
        }
        /* The set answers 500. */
        write_file(idp.control_file, "{\"jwks_status\": 500}");
        {
                _cleanup_(cm_oidc_freep) struct cm_oidc *o = idp_verifier(0, 0, 5000);

                expect_fetch_error(o, t, -EPROTO, "jwks", "HTTP 500");
        }
        write_file(idp.control_file, "{}");
        /* The set is not a set. */
        write_file(idp.jwks_file, "{\"keys\": 5}");
        {
                _cleanup_(cm_oidc_freep) struct cm_oidc *o = idp_verifier(0, 0, 5000);

                expect_fetch_error(o, t, -EPROTO, "jwks", "/jwks.json");
        }
        write_file(idp.jwks_file, k.jwks);
        /* Without the CA: the certificate does not verify. */
        {
                /* (the system's CA bundle is slow to load under the sanitizers) */
                struct cm_oidc_config c = { .issuer = idp.issuer,
                                            .audience = AUDIENCE,
                                            .timeout_ms = 30000 };
                _cleanup_(cm_oidc_freep) struct cm_oidc *o = NULL;
                char err[256];

                assert_int_equal(cm_oidc_new(&c, &o, err, sizeof(err)), 0);
                expect_fetch_error(o, t, -EPROTO, "discovery", "TLS");
        }
        /* Slower than the timeout. */
        write_file(idp.control_file, "{\"delay\": 1.5}");
        {
                _cleanup_(cm_oidc_freep) struct cm_oidc *o = idp_verifier(0, 0, 300);
                uint64_t start = cm_mono_usec();

                expect_fetch_error(o, t, -ETIMEDOUT, "discovery", "300 ms");
                assert_true(cm_mono_usec() - start < GENEROUS_USEC);
        }
        write_file(idp.control_file, "{}");
}

static void test_unreachable(void **state) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        _cleanup_free_ char *t = mint(k.rsa, "RS256", "rsa-1", claims(), NULL);
        char issuer[64], err[256];
        uint64_t start;
        int fd;

        /* Nothing listens. */
        assert_true(cm_snprintf(issuer, sizeof(issuer), "https://127.0.0.1:%d", cm_test_free_port()) >= 0);
        {
                struct cm_oidc_config c = { .issuer = issuer, .audience = AUDIENCE, .timeout_ms = 30000 };
                _cleanup_(cm_oidc_freep) struct cm_oidc *o = NULL;

                struct cm_oidc_stats st;

                assert_int_equal(cm_oidc_new(&c, &o, err, sizeof(err)), 0);
                /* Garbage is refused without a fetch. */
                expect_fetch_error(o, "cmk_notajwt", -EACCES, "format", NULL);
                cm_oidc_get_stats(o, &st);
                assert_int_equal(st.jwks_fetches + st.jwks_fetch_failures, 0);
                start = cm_mono_usec();
                expect_fetch_error(o, t, -EHOSTUNREACH, "discovery", issuer);
                assert_true(cm_mono_usec() - start < GENEROUS_USEC);
                assert_int_equal(cm_oidc_refresh(o, err, sizeof(err)), -EHOSTUNREACH);
        }
        /* Listens, never answers. */
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &a, sizeof(a)), 0);
        assert_int_equal(listen(fd, 16), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &a, &len), 0);
        assert_true(cm_snprintf(issuer, sizeof(issuer), "https://127.0.0.1:%d", ntohs(a.sin_port)) >= 0);
        {
                struct cm_oidc_config c = { .issuer = issuer, .audience = AUDIENCE, .timeout_ms = 300 };
                _cleanup_(cm_oidc_freep) struct cm_oidc *o = NULL;

                assert_int_equal(cm_oidc_new(&c, &o, err, sizeof(err)), 0);
                start = cm_mono_usec();
                expect_fetch_error(o, t, -ETIMEDOUT, "discovery", "300 ms");
                assert_true(cm_mono_usec() - start < GENEROUS_USEC);
        }
        close(fd);
}

static void test_background_refresh(void **state) {
        _cleanup_(cm_oidc_freep) struct cm_oidc *o = NULL;
        _cleanup_free_ char *t = NULL;
        uint64_t deadline, start;

        need_idp();
        write_file(idp.control_file, "{}");
        write_file(idp.jwks_file, k.jwks);
        o = idp_verifier(0, 300 * USEC_PER_MSEC, 5000);
        t = idp_token(k.ec256, "ES256", "ec-256");
        assert_int_equal(verify_now(o, t, NULL, 0), 0);
        assert_int_equal(fetches(o), 1);
        (void) usleep(400 * 1000);
        /* The set is old: this request goes on with it (not waiting for the slow provider). */
        write_file(idp.control_file, "{\"delay\": 0.5}");
        start = cm_mono_usec();
        assert_int_equal(verify_now(o, t, NULL, 0), 0);
        assert_true(cm_mono_usec() - start < 400 * USEC_PER_MSEC);
        deadline = cm_mono_usec() + GENEROUS_USEC;
        while (fetches(o) < 2 && cm_mono_usec() < deadline)
                (void) usleep(20 * 1000);
        assert_int_equal(fetches(o), 2);
        write_file(idp.control_file, "{}");
        /* Freed while a refresh may be running: it is waited for. */
        (void) usleep(400 * 1000);
        assert_int_equal(verify_now(o, t, NULL, 0), 0);
}

static void test_single_flight(void **state) {
        _cleanup_(cm_oidc_freep) struct cm_oidc *o = NULL;
        _cleanup_free_ char *t = NULL;
        struct worker workers[8] = {};
        pthread_t threads[ELEMENTSOF(workers)];
        struct cm_oidc_stats st;

        need_idp();
        write_file(idp.jwks_file, k.jwks);
        /* A slow provider: every thread arrives while the first fetch is in flight. */
        write_file(idp.control_file, "{\"delay\": 0.3}");
        o = idp_verifier(0, 0, 5000);
        t = idp_token(k.rsa, "RS256", "rsa-1");
        for (size_t i = 0; i < ELEMENTSOF(workers); i++) {
                workers[i].o = o;
                for (int j = 0; j < 3; j++)
                        workers[i].tokens[j] = t;
        }
        for (size_t i = 0; i < ELEMENTSOF(workers); i++)
                assert_int_equal(pthread_create(&threads[i], NULL, worker_run, &workers[i]), 0);
        for (size_t i = 0; i < ELEMENTSOF(workers); i++) {
                assert_int_equal(pthread_join(threads[i], NULL), 0);
                if (workers[i].failures > 0)
                        fail_msg("thread %zu: %d failures, last: %s", i, workers[i].failures,
                                 workers[i].reason);
        }
        cm_oidc_get_stats(o, &st);
        assert_int_equal(st.jwks_fetches, 1);
        assert_int_equal(st.jwks_fetch_failures, 0);
        assert_true(st.token_cache_hits >= 8 * 300 - 8);
        write_file(idp.control_file, "{}");
}

static void test_provider_down(void **state) {
        _cleanup_(cm_oidc_freep) struct cm_oidc *o = NULL;
        _cleanup_free_ char *t = NULL, *u = NULL;
        char reason[512], err[512];

        need_idp();
        write_file(idp.control_file, "{}");
        write_file(idp.jwks_file, k.jwks);
        o = idp_verifier(200 * USEC_PER_MSEC, 0, 5000);
        assert_int_equal(cm_oidc_refresh(o, err, sizeof(err)), 0);
        assert_int_equal(fetches(o), 1);
        t = idp_token(k.rsa, "RS256", "rsa-1");
        u = idp_token(k.rsa2, "RS256", "rsa-2");

        idp_stop();
        /* The set in use goes on working without the provider. */
        assert_int_equal(verify_now(o, t, reason, sizeof(reason)), 0);
        /* An unknown kid cannot be looked up now: that is not the token's fault. */
        (void) usleep(250 * 1000);
        expect_fetch_error(o, u, -EHOSTUNREACH, "discovery", "127.0.0.1");
        assert_int_equal(cm_oidc_refresh(o, err, sizeof(err)), -EHOSTUNREACH);
        assert_int_equal(verify_now(o, t, reason, sizeof(reason)), 0);

        /* Back on the same port. */
        idp_start();
        assert_int_equal(cm_oidc_refresh(o, err, sizeof(err)), 0);
        assert_int_equal(fetches(o), 2);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_valid_algorithms),
                cmocka_unit_test(test_alg_refused),
                cmocka_unit_test(test_oct_key_never_used),
                cmocka_unit_test(test_signature),
                cmocka_unit_test(test_kid_and_key),
                cmocka_unit_test(test_header),
                cmocka_unit_test(test_time),
                cmocka_unit_test(test_issuer_audience),
                cmocka_unit_test(test_claims),
                cmocka_unit_test(test_format_and_size),
                cmocka_unit_test(test_looks_like_jwt),
                cmocka_unit_test(test_parse_bearer),
                cmocka_unit_test(test_jwks_documents),
                cmocka_unit_test(test_config),
                cmocka_unit_test(test_token_cache),
                cmocka_unit_test(test_threads_fixed),
        };
        const struct CMUnitTest net[] = {
                cmocka_unit_test(test_fetch_and_rotate), cmocka_unit_test(test_fetch_errors),
                cmocka_unit_test(test_unreachable),      cmocka_unit_test(test_background_refresh),
                cmocka_unit_test(test_single_flight),    cmocka_unit_test(test_provider_down),
        };
        int failed;

        if (group_setup(NULL) != 0)
                return 1;
        failed = cmocka_run_group_tests_name("oidc", tests, NULL, NULL);
        failed += cmocka_run_group_tests_name("oidc-network", net, net_setup, net_teardown);
        group_teardown(NULL);
        return failed;
}
