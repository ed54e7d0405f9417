/* SPDX-License-Identifier: Apache-2.0 */
/* SSH key material: private keys read (OpenSSH and PEM), public keys and fingerprints derived as OpenSSH does. */
#include "base/common.h"

#include <setjmp.h>
#include <cmocka.h>

#include "base/fileio.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "vault/sshkey.h"

/*
 * Test-only keys generated for these tests (ssh-keygen / openssl), kept in tests/testdata/sshkeys;
 * they protect nothing.
 */
static char *load_key(const char *file, size_t *ret_n) {
        char path[PATH_MAX];
        char *data = NULL;
        size_t n = 0;

        assert_true(cm_snprintf(path, sizeof(path), "%s/sshkeys/%s", CM_TESTDATA_DIR, file) > 0);
        if (cm_read_file(path, 64 * 1024, true, &data, &n) < 0)
                fail_msg("cannot read test key %s", path);
        *ret_n = n;
        return data;
}

static const struct key_fixture {
        const char *name;
        const char *key_file; /* under tests/testdata/sshkeys */
        const char *public_key;
        const char *fingerprint;
} key_fixtures[] = {
        { "ossh_ed25519", "ossh_ed25519",
          "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZej8en8l7M2DR8QaGL1JgqjfuzisBlgw2yT9MGtla3",
          "SHA256:OOFCLk/BNOhiM24TwSg/K92B7OQQa6gTw3K5tSelorY" },
        { "ossh_rsa", "ossh_rsa",
          "ssh-rsa "
          "AAAAB3NzaC1yc2EAAAADAQABAAABAQCvlmocPhTpTZNqgLmz6n/zDSPYnFe2o+fAeCoqTeLWGcG2RX9IsO/"
          "4pr1OyxeBWNJW0Dg/GwDZzve+32AGw/aKjap/"
          "9lhF6rug9BZj6Ul9P3CeCA8ZDqC4mAGeTI8ZtRf2MRaV5KCTVRqgJgy91jnC4aBKlH8HoUfOyE+mvDyD9HR+"
          "VC1pzKQgTc9H8SSn6e5/q1vBg6UXCQqKe3TeXcp8nWTvi+Nt8Ig04/iYIfbU+YtU3FEXHwzg/"
          "D+7SlCc6wRXCqiXkjy5U1z7ihoPW9yZ7a4m14pQXYQ1PGTCc34wDvamVpN1NPtmrkqMzC2DvDkH9g+PcJDFPNKi2EVmWfoR",
          "SHA256:0OM2Y+MQCuEEvAHPsS3OMMilUF1TPEB9Wu3DoaQk0P0" },
        { "ossh_ecdsa", "ossh_ecdsa",
          "ecdsa-sha2-nistp384 "
          "AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBNBFrUimsKhFzY5I6MUrQGwrDl82bCl0oAc4mJBLTPhqV"
          "mDmGwZxPAiw0n3cLJBrzFkjk93lTyOnVkEEZmjWWDZpEdUoNWEZYrEhhL638onZNWyWspw14ief8bDy2k48Xg==",
          "SHA256:f5qXNwFYNtWzLaSHC1TAuKWA3klltixDtqPuk9XnwJ8" },
        { "pem_ed25519", "pem_ed25519",
          "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINmKhrKsfyjJcnT3FXyU3YsEyIspxk702UH3CpG/jZEp",
          "SHA256:P3TNa7LLI+7jrQQ9l7j9LCcoeFEUnz/64PvZcPvmdMw" },
        { "pem_rsa", "pem_rsa",
          "ssh-rsa "
          "AAAAB3NzaC1yc2EAAAADAQABAAABAQDnL/"
          "wdNb9aJPIylIki76u6kXhjs7lytN4Z8iK2lMWiUbYist0tULlNJq0xXD9vxuDdzcwmZ4M9yPNGiJvwUgggKNjCON6kgoYw+"
          "ENZqV9o++2iQFAKWfQWvEBuxb8DV+t8CyHsh+"
          "csl6BQXvYRftj8snHG0DpxmI6VlLgpCm6D8OqrscgJ3mPWs9BPmQZSvdm208Nki8nDTs4ttM8/nsS/L9mw/"
          "yYSr9VIIvr70xevbsKsnFf8z4YVpPosubswTRdcGDL3bP7GYBt9dJ+ArPEOn9FGMkM8z+"
          "nBNu8e8bd7yJ90oy2EyXUo8BM46kZD5Vr+NYuWZjUf/Y6HK3AfFNIj",
          "SHA256:h2xv/A7J1vRjGRU1IswbegAGLAIbmIfrwmxgbYyXP/0" },
        { "pem_ec", "pem_ec",
          "ecdsa-sha2-nistp256 "
          "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPeBGtohBqrSmhDDwbqG+"
          "4bn1SsqstoGcgALkbuIPDJDsrOHoQD0Mf7q15UeMU4np9S3t5+/uv7yoc3+sjHV1cw=",
          "SHA256:2C3i5iX9ridF1gJtxlKSlnvS7ww74X++3saqcx+WKPg" },
};

static void test_fixtures_parse(void **state) {
        (void) state;
        for (size_t i = 0; i < ELEMENTSOF(key_fixtures); i++) {
                const struct key_fixture *f = &key_fixtures[i];
                char fp[CM_SSHKEY_FP_LEN + 1];
                char *pub = NULL, *key;
                size_t n;
                int r;

                key = load_key(f->key_file, &n);
                r = cm_sshkey_parse_private(key, n, &pub, fp);
                cm_erase_and_free(key);
                if (r < 0)
                        fail_msg("%s: %s", f->name, strerror(-r));
                assert_string_equal(pub, f->public_key);
                assert_string_equal(fp, f->fingerprint);
                assert_true(cm_sshkey_public_equal(pub, f->public_key));
                free(pub);
        }
}

static void test_rejected(void **state) {
        char fp[CM_SSHKEY_FP_LEN + 1];
        char *pub = NULL, *broken, *ed, *other;
        size_t n, other_n;

        (void) state;
        ed = load_key(key_fixtures[0].key_file, &n);
        other = load_key("ossh_ed25519_encrypted", &other_n);
        assert_int_equal(cm_sshkey_parse_private(other, other_n, &pub, fp), -EACCES);
        cm_erase_and_free(other);
        other = load_key("pem_rsa1024", &other_n);
        assert_int_equal(cm_sshkey_parse_private(other, other_n, &pub, fp), -EOPNOTSUPP);
        cm_erase_and_free(other);
        assert_int_equal(cm_sshkey_parse_private("hello", 5, &pub, fp), -EINVAL);
        assert_int_equal(cm_sshkey_parse_private("", 0, &pub, fp), -EINVAL);
        assert_int_equal(cm_sshkey_parse_private("-----BEGIN canary-key", 21, &pub, fp), -EINVAL);
        /* every truncation of an OpenSSH key (short of its final newline) is refused */
        for (size_t k = 0; k + 1 < n; k++) {
                int r = cm_sshkey_parse_private(ed, k, &pub, fp);
                assert_true(r < 0);
        }
        /* a flipped base64 character inside the private section breaks the key's consistency */
        broken = strdup(ed);
        assert_non_null(broken);
        for (size_t k = 40; k < n - 40; k++) {
                char c = broken[k];
                int r;

                if (c == '\n' || c == '-' || c == '=')
                        continue;
                broken[k] = c == 'A' ? 'B' : 'A';
                r = cm_sshkey_parse_private(broken, n, &pub, fp);
                if (r >= 0) {
                        /* only bytes that do not make the key (comment, padding) may change unnoticed:
                         * an accepted key is still the same key */
                        if (!streq(pub, key_fixtures[0].public_key))
                                fail_msg("a flip at byte %zu gave another key: %s", k, pub);
                        free(pub);
                        pub = NULL;
                }
                broken[k] = c;
        }
        cm_erase_and_free(broken);
        cm_erase_and_free(ed);
}

static void test_generate(void **state) {
        char fp[CM_SSHKEY_FP_LEN + 1], fp2[CM_SSHKEY_FP_LEN + 1];
        char *priv = NULL, *pub = NULL, *pub2 = NULL;
        size_t n = 0;

        (void) state;
        assert_int_equal(cm_sshkey_generate_ed25519(&priv, &n, &pub, fp), 0);
        assert_int_equal(strlen(priv), n);
        assert_non_null(strstr(priv, "-----BEGIN PRIVATE KEY-----"));
        assert_true(strneq(pub, "ssh-ed25519 AAAA", 16));
        assert_true(strneq(fp, "SHA256:", 7));
        assert_int_equal(strlen(fp), CM_SSHKEY_FP_LEN);
        /* the stored private key reads back to the same public key */
        assert_int_equal(cm_sshkey_parse_private(priv, n, &pub2, fp2), 0);
        assert_string_equal(pub, pub2);
        assert_string_equal(fp, fp2);
        cm_erase_and_free(priv);
        free(pub);
        free(pub2);
}

static void test_public_equal(void **state) {
        (void) state;
        assert_true(cm_sshkey_public_equal("ssh-ed25519 AAAA x", "ssh-ed25519 AAAA"));
        assert_true(cm_sshkey_public_equal("ssh-ed25519 AAAA\n", "ssh-ed25519  AAAA comment"));
        assert_false(cm_sshkey_public_equal("ssh-ed25519 AAAA", "ssh-rsa AAAA"));
        assert_false(cm_sshkey_public_equal("ssh-ed25519 AAAA", "ssh-ed25519 AAAB"));
        assert_false(cm_sshkey_public_equal("ssh-ed25519", "ssh-ed25519"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fixtures_parse),
                cmocka_unit_test(test_rejected),
                cmocka_unit_test(test_generate),
                cmocka_unit_test(test_public_equal),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
