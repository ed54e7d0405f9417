/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <setjmp.h>
#include <cmocka.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "base/fileio.h"
#include "base/parse.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "base/util.h"

static void test_strbuf_cap(void **state) {
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT(8);

        assert_int_equal(strbuf_adds(&sb, "1234"), 0);
        assert_int_equal(strbuf_adds(&sb, "5678"), 0);
        assert_int_equal(strbuf_addch(&sb, '9'), -ENOBUFS);
        assert_int_equal(sb.len, 8);
        assert_string_equal(sb.buf, "12345678");
        assert_int_equal(strbuf_addf(&sb, "%d", 1), -ENOBUFS);
        assert_string_equal(sb.buf, "12345678");
}

static void test_strbuf_secret_grow(void **state) {
        struct strbuf sb;

        strbuf_init_secret(&sb, 1 << 20);
        for (int i = 0; i < 1000; i++)
                assert_int_equal(strbuf_addf(&sb, "secret-%d;", i), 0);
        assert_true(strstr(sb.buf, "secret-999;") != NULL);
        strbuf_release(&sb);
        assert_null(sb.buf);
}

static void test_json_string_escape(void **state) {
        static const struct {
                const char *in;
                const char *out;
        } cases[] = {
                { "plain", "\"plain\"" },
                { "q\"b\\", "\"q\\\"b\\\\\"" },
                { "nl\n\t\r", "\"nl\\n\\t\\r\"" },
                { "\x01", "\"\\u0001\"" },
                { "caf\xc3\xa9", "\"caf\xc3\xa9\"" },
                { "bad\xff", "\"bad\xEF\xBF\xBD\"" },
                { "over\xc0\xaf", "\"over\xEF\xBF\xBD\xEF\xBF\xBD\"" },
                { "surrogate\xed\xa0\x80", "\"surrogate\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT(1024);
                assert_int_equal(strbuf_add_json_string(&sb, cases[i].in), 0);
                assert_string_equal(sb.buf, cases[i].out);
        }
}

static void test_parse_numbers(void **state) {
        uint64_t u;
        int i;
        unsigned v;

        assert_int_equal(safe_atou64("123", &u), 0);
        assert_int_equal(u, 123);
        assert_int_equal(safe_atou64("-1", &u), -EINVAL);
        assert_int_equal(safe_atou64(" 1", &u), -EINVAL);
        assert_int_equal(safe_atou64("1x", &u), -EINVAL);
        assert_int_equal(safe_atou64("", &u), -EINVAL);
        assert_int_equal(safe_atou64("99999999999999999999999", &u), -ERANGE);
        assert_int_equal(safe_atoi("-42", &i), 0);
        assert_int_equal(i, -42);
        assert_int_equal(safe_atoi("4294967296", &i), -ERANGE);
        assert_int_equal(safe_atou("4294967296", &v), -ERANGE);
}

static void test_dns_label(void **state) {
        assert_true(cm_dns_label_valid("prod-east"));
        assert_true(cm_dns_label_valid("a"));
        assert_true(cm_dns_label_valid("0abc9"));
        assert_false(cm_dns_label_valid(""));
        assert_false(cm_dns_label_valid("-a"));
        assert_false(cm_dns_label_valid("a-"));
        assert_false(cm_dns_label_valid("Upper"));
        assert_false(cm_dns_label_valid("a.b"));
        assert_false(cm_dns_label_valid("a_b"));
        assert_true(cm_dns_label_valid("abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij123"));
        assert_false(cm_dns_label_valid("abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij1234"));
}

static void test_time_roundtrip(void **state) {
        char buf[40];
        uint64_t t;

        cm_format_rfc3339(UINT64_C(1767323045678000), buf, sizeof(buf));
        assert_string_equal(buf, "2026-01-02T03:04:05.678Z");
        assert_int_equal(cm_parse_rfc3339(buf, &t), 0);
        assert_int_equal(t, UINT64_C(1767323045678000));
        assert_int_equal(cm_parse_rfc3339("2026-01-02T03:04:05", &t), -EINVAL);
        /* The hand-rolled formatter agrees with gmtime_r across leap years and centuries. */
        for (uint64_t s = 0; s < UINT64_C(253402300799); s += UINT64_C(86400) * 37 + 3601) {
                char want[40];
                time_t tt = (time_t) s;
                struct tm tm;

                assert_non_null(gmtime_r(&tt, &tm));
                assert_true(strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%S.000Z", &tm) > 0);
                cm_format_rfc3339(s * USEC_PER_SEC, buf, sizeof(buf));
                assert_string_equal(buf, want);
        }
        cm_format_rfc3339(0, buf, sizeof(buf));
        assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
        cm_format_rfc3339(UINT64_C(951782400) * USEC_PER_SEC, buf, sizeof(buf));
        assert_string_equal(buf, "2000-02-29T00:00:00.000Z");
        assert_int_equal(cm_parse_rfc3339("garbage", &t), -EINVAL);
}

static void test_random_ids(void **state) {
        char a[64], b[64];

        assert_int_equal(cm_random_id("op_", a, sizeof(a)), 0);
        assert_int_equal(cm_random_id("op_", b, sizeof(b)), 0);
        assert_int_equal(strlen(a), 29);
        assert_string_not_equal(a, b);
        assert_int_equal(cm_random_id("op_", a, 10), -ENOBUFS);
        assert_int_equal(cm_random_token("cmk_", a, sizeof(a)), 0);
        assert_int_equal(strlen(a), 47);
}

static void test_atomic_write(void **state) {
        char dir[] = "/tmp/cm-test-XXXXXX", path[256];
        _cleanup_free_ char *data = NULL;
        struct stat st;
        size_t n;

        assert_non_null(mkdtemp(dir));
        assert_true(cm_snprintf(path, sizeof(path), "%s/a/b/file", dir) > 0);
        assert_int_equal(cm_snprintf(path, 4, "%s", "toolong"), -ENOBUFS);
        assert_true(cm_snprintf(path, sizeof(path), "%s/a/b", dir) > 0);
        assert_int_equal(cm_mkdir_p(path, 0700), 0);
        assert_true(cm_snprintf(path, sizeof(path), "%s/a/b/file", dir) > 0);
        assert_int_equal(cm_write_file_atomic(path, "hello", 5, 0600), 0);
        assert_int_equal(cm_write_file_atomic(path, "world!", 6, 0600), 0);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(cm_read_file(path, 100, false, &data, &n), 0);
        assert_int_equal(n, 6);
        assert_string_equal(data, "world!");
        free(TAKE_PTR(data));
        assert_int_equal(cm_read_file(path, 3, true, &data, &n), -EFBIG);
        assert_null(data);
        assert_int_equal(cm_read_file("/nonexistent/x", 3, false, &data, &n), -ENOENT);
}

static void test_memeq_const(void **state) {
        assert_true(cm_memeq_const("abc", "abc", 3));
        assert_false(cm_memeq_const("abc", "abd", 3));
}

static void test_mask_secret(void **state) {
        char line[] = "login as puller with hunter22 failed; hunter22 again; hunter2";

        (void) state;
        cm_mask_secret(line, "hunter22");
        assert_string_equal(line, "login as puller with ******** failed; ******** again; hunter2");
        cm_mask_secret(line, "abc"); /* too short to mask */
        cm_mask_secret(line, NULL);
        cm_mask_secret(NULL, "hunter22");
        assert_string_equal(line, "login as puller with ******** failed; ******** again; hunter2");
}

static void test_redact(void **state) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "auth with cmk_abcdefghijklmnopqrstuvwxyz0123456789AB failed",
                  "auth with cmk_************************************** failed" },
                { "Authorization: Bearer abcdefgh.ijk-lmn", "Authorization: Bearer ****************" },
                { "token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln here",
                  "token ***************************************** here" },
                { "password: hunter22 and more", "password: ******** and more" },
                { "{\"password\":\"s3cr3t!\"}", "{\"password\":\"*******\"}" },
                { "client-key-data: LS0tLS1CRUdJTg==", "client-key-data: ****************" },
                /* left alone: fingerprints, words, short values, other PEM blocks */
                { "kube-ca SHA256:0123456789abcdef0123456789abcdef",
                  "kube-ca SHA256:0123456789abcdef0123456789abcdef" },
                { "the token file is missing", "the token file is missing" },
                { "send 'Authorization: Bearer <key>'", "send 'Authorization: Bearer <key>'" },
                { "-----BEGIN CERTIFICATE-----", "-----BEGIN CERTIFICATE-----" },
                { "mycmk_abcdefghijklmnopqrstuvwxyz", "mycmk_abcdefghijklmnopqrstuvwxyz" },
        };
        (void) state;
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char buf[512];

                assert_int_equal(cm_strlcpy(buf, cases[i].in, sizeof(buf)), 0);
                (void) cm_redact(buf);
                if (!streq(buf, cases[i].out))
                        fail_msg("case %zu: got '%s'", i, buf);
        }
        assert_int_equal(cm_redact(NULL), 0);
}

/* A PEM private key block (kept in tests/testdata) is masked whole, the text around it left alone. */
static void test_redact_pem(void **state) {
        _cleanup_free_ char *pem = NULL, *masked = NULL;
        char buf[512];
        size_t n = 0;

        (void) state;
        assert_int_equal(cm_read_file(CM_TESTDATA_DIR "/redact/pem", 4096, false, &pem, &n), 0);
        while (n > 0 && pem[n - 1] == '\n')
                pem[--n] = '\0';
        assert_true(cm_snprintf(buf, sizeof(buf), "x %s y", pem) >= 0);
        masked = malloc(n + 1);
        assert_non_null(masked);
        memset(masked, '*', n);
        masked[n] = '\0';
        (void) cm_redact(buf);
        assert_true(strncmp(buf, "x ", 2) == 0);
        assert_string_equal(buf + 2 + n, " y");
        assert_true(strncmp(buf + 2, masked, n) == 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_strbuf_cap),
                cmocka_unit_test(test_strbuf_secret_grow),
                cmocka_unit_test(test_json_string_escape),
                cmocka_unit_test(test_parse_numbers),
                cmocka_unit_test(test_dns_label),
                cmocka_unit_test(test_time_roundtrip),
                cmocka_unit_test(test_random_ids),
                cmocka_unit_test(test_atomic_write),
                cmocka_unit_test(test_memeq_const),
                cmocka_unit_test(test_mask_secret),
                cmocka_unit_test(test_redact),
                cmocka_unit_test(test_redact_pem),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
