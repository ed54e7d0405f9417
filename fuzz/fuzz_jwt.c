/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OIDC bearer tokens and JWK sets, both untrusted: the first byte chooses the mode.
 *   even: the rest is a token, verified against a fixed JWK set (an RSA and an EC P-256 key);
 *   odd:  the rest is a JWK set, against which a fixed RS256 token (valid for the fixed set) is
 *         verified.
 * Whatever comes in, the outcome is one of the documented errors with a reason that names a check
 * and never quotes the token, or a principal within the limits.
 */
#include "base/common.h"

#include "auth/oidc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fixed_jwks[] =
        "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"fuzz-rsa\",\"e\":\"AQAB\",\"n\":\"jCjRUk1BEt67tn0vvcySzLjd"
        "ueNLPll1Z7aad-rXWgM4niK3c4RFjiRBcgpC-QkMkO-U7lVZyYJhlQO8wr_BUICKbI651o3Mt4NPwrP4tzY4psOBjtc6myJi"
        "chB_IDdZXUXEX-9D2w4WZugQ-smKM8qbInFp65CmQeQ49lrlc9rRhdJ1iPV3PvtbqRzr9Q130-U-ii_9q7nXdMO5ba2tVovr"
        "54m2fVHyJmUvFpeOEdboaYwUqXThw-dp3YRyLMhQbUy8qVZKDXYoLZgqNmRbq0oV35fHt5bKdsz-FSHUpxviqhuglqm2jVRP"
        "b2HjWN-LgrJbgjewW8nZorj4cd-R4w\",\"use\":\"sig\",\"alg\":\"RS256\"},{\"kty\":\"EC\",\"kid\":\"fu"
        "zz-ec\",\"crv\":\"P-256\",\"x\":\"vJUPrvOFs7k92xGZdAUz0_niGYIrEPQotjw53HgVOxQ\",\"y\":\"UwJu2qIe"
        "E0razvGv9xM24q-mnlPymz_ZDhmDSZJZr_U\",\"use\":\"sig\"}]}";

/* RS256 under fuzz-rsa, valid at NOW until 2100. */
static const char fixed_token[] =
        "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImZ1enotcnNhIn0.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFt"
        "cGxlIiwiYXVkIjpbImNsdXN0ZXJtZ210Iiwib3RoZXIiXSwic3ViIjoiZnV6ei11c2VyIiwiZW1haWwiOiJmdXp6QGV4YW1w"
        "bGUuY29tIiwiZW1haWxfdmVyaWZpZWQiOnRydWUsImdyb3VwcyI6WyJvcHMiLCJkZXYiXSwiaWF0IjoxOTAwMDAwMDAwLCJu"
        "YmYiOjE5MDAwMDAwMDAsImV4cCI6NDEwMjQ0NDgwMH0.c_1XxSL_zJGOiixe8BX5_6u4jfll1hV7rIxrNIZNT78Bpxh2J6DJ"
        "Frf-StAZR0gP_-iJw7J_p0lv_49vgjBAJvdl2ExNwGNsbDNEM12Vty4IBQaUwemhaXbltZGqlZAP_M95lybe_5CpMGXlBYRL"
        "VFJrFvFp_0N4Sg14E-fYjnAmHVPuaI8cJsS0blwy09EclsHzxN1S1gHqRFT2NGqwHb92fEolHKZbHMyDacRBiR8P7lh_PCTp"
        "iY8iQ1WDwg6WfG5pxZbq97qILbsOkaxZylcdFUIx-xS5jyPhQ0RcDve_vI8zirjsk0Cb8uJEhVxijls28a50Pn6Bdqc34p8M"
        "hw";

#define NOW_USEC (UINT64_C(1900000100) * USEC_PER_SEC)

static const char *const checks[] = {
        "size:",    "format:", "header:", "alg:", "typ:", "crit:", "cty:", "kid:",   "key:",    "signature:",
        "payload:", "iss:",    "aud:",    "exp:", "nbf:", "iat:",  "sub:", "email:", "groups:", "jwks:"
};

static void check_reason(const char *reason, const char *token, size_t n) {
        bool named = false;

        for (size_t i = 0; i < ELEMENTSOF(checks); i++)
                if (strneq(reason, checks[i], strlen(checks[i])))
                        named = true;
        if (!named)
                __builtin_trap();
        /* Never the token: reasons are fixed phrases, so a token-like run of 24 characters is a leak. */
        if (n < 24)
                return;
        for (size_t i = 0; i < 24; i++)
                if (!((token[i] >= 'A' && token[i] <= 'Z') || (token[i] >= 'a' && token[i] <= 'z') ||
                      (token[i] >= '0' && token[i] <= '9') || token[i] == '-' || token[i] == '_' ||
                      token[i] == '.'))
                        return;
        if (memmem(reason, strlen(reason), token, 24))
                __builtin_trap();
}

static void check_principal(const struct cm_oidc_principal *p) {
        size_t s = strnlen(p->subject, sizeof(p->subject)), e = strnlen(p->email, sizeof(p->email));

        if (s == 0 || s >= sizeof(p->subject) || e >= sizeof(p->email) || p->n_groups > CM_OIDC_GROUPS_MAX ||
            (p->n_groups > 0 && !p->groups))
                __builtin_trap();
        for (size_t i = 0; i < p->n_groups; i++)
                if (!p->groups[i] || strlen(p->groups[i]) == 0 ||
                    strlen(p->groups[i]) > CM_OIDC_CLAIM_STRING_MAX)
                        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct cm_oidc_config c = { .issuer = "https://issuer.example", .audience = "clustermgmt" };
        struct cm_oidc_principal p = {};
        char reason[512] = "";
        const char *in = (const char *) data + 1;
        size_t n = size - 1;
        bool unknown = false;
        int r;

        if (size < 1)
                return 0;
        if ((data[0] & 1) == 0) {
                r = cm_oidc_verify_with_jwks(fixed_jwks, sizeof(fixed_jwks) - 1, &c, in, n, NOW_USEC, &p,
                                             reason, sizeof(reason), &unknown);
                if (r < 0)
                        check_reason(reason, in, n);
                if (r < 0 && r != -EACCES && r != -ENOMEM)
                        __builtin_trap();
                /* Anything that verified has the shape of a JWT. */
                if (r == 0 && !cm_oidc_looks_like_jwt(in, n))
                        __builtin_trap();
        } else {
                r = cm_oidc_verify_with_jwks(in, n, &c, fixed_token, sizeof(fixed_token) - 1, NOW_USEC, &p,
                                             reason, sizeof(reason), &unknown);
                if (r < 0)
                        check_reason(reason, fixed_token, sizeof(fixed_token) - 1);
                if (r < 0 && r != -EACCES && r != -EPROTO && r != -ENOMEM)
                        __builtin_trap();
        }
        if (r < 0 && (p.groups || p.n_groups || p.subject[0]))
                __builtin_trap(); /* written only on success */
        if (unknown && r != -EACCES)
                __builtin_trap();
        if (r == 0) {
                check_principal(&p);
                cm_oidc_principal_done(&p);
        }
        return 0;
}
