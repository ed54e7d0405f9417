/* SPDX-License-Identifier: Apache-2.0 */
/*
 * make bench, authentication section: the OIDC bearer step of a request with the issuer's JWK set
 * already held (a verifier made with cm_oidc_new_with_jwks(), so that nothing is fetched): the
 * Authorization header parsed, the token told from an API key, and cm_oidc_verify() with its
 * principal released. For an RS256 (RSA 2048) and an ES256 (P-256) token, each timed twice: every
 * call a full verification (token cache off: a token seen for the first time), and with the token
 * cache (the same token again, as a client sends it with every request). The keys are made for the
 * run with cjose. Times are CLOCK_MONOTONIC in ns; prints one JSON object with p50/p90/p99 in µs.
 *
 *   auth-bench [--iterations N]
 */
#include "base/common.h"

#include <cjose/cjose.h>
#include <getopt.h>
#include <jansson.h>

#include "auth/oidc.h"
#include "base/parse.h"
#include "base/util.h"

#define ISSUER "https://issuer.example"
#define AUDIENCE "clustermgmt"

static uint64_t mono_nsec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000U + (uint64_t) ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

static double pct(uint64_t *v, size_t n, double p) {
        qsort(v, n, sizeof(*v), cmp_u64);
        return (double) v[(size_t) ((double) (n - 1) * p)] / 1000.0;
}

/* "Bearer " + a token of claims typical for an access token, signed by key. */
static char *header_new(cjose_jwk_t *key, const char *alg, const char *kid) {
        int64_t now = (int64_t) (cm_now_usec() / USEC_PER_SEC);
        json_t *claims =
                json_pack("{s:s, s:[s,s], s:s, s:s, s:b, s:[s,s,s], s:I, s:I, s:I, s:s}", "iss", ISSUER,
                          "aud", AUDIENCE, "account", "sub", "f1c2a9d4-7b3e-4c55-9a0e-3d2b1e6f8a70", "email",
                          "alice@example.com", "email_verified", 1, "groups", "platform-admins", "ops",
                          "dev", "iat", (json_int_t) now, "nbf", (json_int_t) now, "exp",
                          (json_int_t) (now + 3600), "scope", "openid email profile");
        json_t *h = json_pack("{s:s, s:s, s:s}", "alg", alg, "typ", "JWT", "kid", kid);
        char *payload = claims ? json_dumps(claims, JSON_COMPACT) : NULL;
        const char *ser = NULL;
        cjose_jws_t *jws = NULL;
        cjose_err cerr;
        char *out = NULL;

        if (payload && h)
                jws = cjose_jws_sign(key, (cjose_header_t *) h, (const uint8_t *) payload, strlen(payload),
                                     &cerr);
        if (jws && cjose_jws_export(jws, &ser, &cerr) && asprintf(&out, "Bearer %s", ser) < 0)
                out = NULL;
        cjose_jws_release(jws);
        free(payload);
        json_decref(claims);
        json_decref(h);
        return out;
}

static char *jwks_new(cjose_jwk_t *rsa, cjose_jwk_t *ec) {
        cjose_err cerr;
        char *r = cjose_jwk_to_json(rsa, false, &cerr), *e = cjose_jwk_to_json(ec, false, &cerr),
             *out = NULL;

        if (r && e && asprintf(&out, "{\"keys\":[%s,%s]}", r, e) < 0)
                out = NULL;
        cjose_get_dealloc()(r);
        cjose_get_dealloc()(e);
        return out;
}

/* The timed step; -1 when it did not authenticate. */
static int64_t auth_step(struct cm_oidc *o, const char *header) {
        struct cm_oidc_principal p = {};
        const char *token;
        char reason[256] = "not a bearer JWT";
        uint64_t t0 = mono_nsec(), t1;
        size_t n;
        int r;

        r = cm_auth_parse_bearer(header, &token, &n);
        if (r >= 0 && !cm_oidc_looks_like_jwt(token, n))
                r = -EINVAL;
        if (r >= 0)
                r = cm_oidc_verify(o, token, n, 0, &p, reason, sizeof(reason));
        cm_oidc_principal_done(&p);
        t1 = mono_nsec();
        if (r < 0) {
                fprintf(stderr, "auth-bench: refused: %s\n", reason);
                return -1;
        }
        return (int64_t) (t1 - t0);
}

static int run(struct cm_oidc *o, const char *header, uint64_t *t, unsigned iterations) {
        /* Warm-up: the key's Montgomery context, the allocator, the cache slot. */
        for (unsigned i = 0; i < 200; i++)
                if (auth_step(o, header) < 0)
                        return -1;
        for (unsigned i = 0; i < iterations; i++) {
                int64_t d = auth_step(o, header);

                if (d < 0)
                        return -1;
                t[i] = (uint64_t) d;
        }
        return 0;
}

int main(int argc, char **argv) {
        static const struct option longopts[] = {
                { "iterations", required_argument, NULL, 'n' },
                {},
        };
        static const uint8_t e65537[] = { 0x01, 0x00, 0x01 };
        struct cm_oidc_config c = { .issuer = ISSUER, .audience = AUDIENCE };
        struct cm_oidc *full = NULL, *cached = NULL;
        char *jwks = NULL, *rs = NULL, *es = NULL;
        cjose_jwk_t *rsa = NULL, *ec = NULL;
        uint64_t *t[4] = {};
        unsigned iterations = 100000;
        char err[512];
        cjose_err cerr;
        int ch, ret = 1;

        while ((ch = getopt_long(argc, argv, "", longopts, NULL)) >= 0) {
                switch (ch) {
                case 'n':
                        if (safe_atou(optarg, &iterations) < 0 || iterations < 100) {
                                fprintf(stderr, "auth-bench: --iterations wants a number of at least 100\n");
                                return 2;
                        }
                        break;
                default:
                        return 2;
                }
        }

        rsa = cjose_jwk_create_RSA_random(2048, e65537, sizeof(e65537), &cerr);
        ec = cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_256, &cerr);
        if (!rsa || !ec || !cjose_jwk_set_kid(rsa, "bench-rsa", 9, &cerr) ||
            !cjose_jwk_set_kid(ec, "bench-ec", 8, &cerr)) {
                fprintf(stderr, "auth-bench: cannot make keys\n");
                goto out;
        }
        jwks = jwks_new(rsa, ec);
        rs = header_new(rsa, "RS256", "bench-rsa");
        es = header_new(ec, "ES256", "bench-ec");
        for (size_t i = 0; i < ELEMENTSOF(t); i++)
                t[i] = new0(uint64_t, iterations);
        if (!jwks || !rs || !es || !t[0] || !t[1] || !t[2] || !t[3]) {
                fprintf(stderr, "auth-bench: setup failed\n");
                goto out;
        }
        c.token_cache_disabled = true;
        if (cm_oidc_new_with_jwks(&c, jwks, strlen(jwks), &full, err, sizeof(err)) < 0) {
                fprintf(stderr, "auth-bench: %s\n", err);
                goto out;
        }
        c.token_cache_disabled = false;
        if (cm_oidc_new_with_jwks(&c, jwks, strlen(jwks), &cached, err, sizeof(err)) < 0) {
                fprintf(stderr, "auth-bench: %s\n", err);
                goto out;
        }
        if (run(full, rs, t[0], iterations) < 0 || run(full, es, t[1], iterations) < 0 ||
            run(cached, rs, t[2], iterations) < 0 || run(cached, es, t[3], iterations) < 0)
                goto out;

        printf("{\"iterations\":%u,\"rs256_token_bytes\":%zu,\"es256_token_bytes\":%zu,"
               "\"rs256_verify_p50_us\":%.2f,\"rs256_verify_p90_us\":%.2f,\"rs256_verify_p99_us\":%.2f,"
               "\"es256_verify_p50_us\":%.2f,\"es256_verify_p90_us\":%.2f,\"es256_verify_p99_us\":%.2f,"
               "\"rs256_cached_p50_us\":%.2f,\"rs256_cached_p90_us\":%.2f,\"rs256_cached_p99_us\":%.2f,"
               "\"es256_cached_p50_us\":%.2f,\"es256_cached_p90_us\":%.2f,\"es256_cached_p99_us\":%.2f}\n",
               iterations, strlen(rs) - 7, strlen(es) - 7, pct(t[0], iterations, 0.5),
               pct(t[0], iterations, 0.9), pct(t[0], iterations, 0.99), pct(t[1], iterations, 0.5),
               pct(t[1], iterations, 0.9), pct(t[1], iterations, 0.99), pct(t[2], iterations, 0.5),
               pct(t[2], iterations, 0.9), pct(t[2], iterations, 0.99), pct(t[3], iterations, 0.5),
               pct(t[3], iterations, 0.9), pct(t[3], iterations, 0.99));
        ret = 0;
out:
        cm_oidc_free(full);
        cm_oidc_free(cached);
        for (size_t i = 0; i < ELEMENTSOF(t); i++)
                free(t[i]);
        free(jwks);
        free(rs);
        free(es);
        cjose_jwk_release(rsa);
        cjose_jwk_release(ec);
        return ret;
}
