/* SPDX-License-Identifier: Apache-2.0 */
/* SSH key material: private keys read (OpenSSH and PEM), public keys and fingerprints derived as OpenSSH does. */
#include "base/common.h"

#include <setjmp.h>
#include <cmocka.h>

#include "base/secret.h"
#include "vault/sshkey.h"

/* Test-only keys generated for these tests (ssh-keygen / openssl); they protect nothing. */

static const struct key_fixture {
        const char *name;
        const char *private_key;
        const char *public_key;
        const char *fingerprint;
} key_fixtures[] = {
        { "ossh_ed25519",
          "-----BEGIN OPENSSH PRIVATE KEY-----\n"
          "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
          "QyNTUxOQAAACDmXo/Hp/JezNg0fEGhi9SYKo37s4rAZYMNsk/TBrZWtwAAAIgKudy3Crnc\n"
          "twAAAAtzc2gtZWQyNTUxOQAAACDmXo/Hp/JezNg0fEGhi9SYKo37s4rAZYMNsk/TBrZWtw\n"
          "AAAEDjB5oth5e1DaRD3O/htDuCO0mC1kXZVD2/2ThX833yeuZej8en8l7M2DR8QaGL1Jgq\n"
          "jfuzisBlgw2yT9MGtla3AAAAAXgBAgME\n"
          "-----END OPENSSH PRIVATE KEY-----\n",
          "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZej8en8l7M2DR8QaGL1JgqjfuzisBlgw2yT9MGtla3",
          "SHA256:OOFCLk/BNOhiM24TwSg/K92B7OQQa6gTw3K5tSelorY" },
        { "ossh_rsa",
          "-----BEGIN OPENSSH PRIVATE KEY-----\n"
          "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAABFwAAAAdzc2gtcn\n"
          "NhAAAAAwEAAQAAAQEAr5ZqHD4U6U2TaoC5s+p/8w0j2JxXtqPnwHgqKk3i1hnBtkV/SLDv\n"
          "+Ka9TssXgVjSVtA4PxsA2c73vt9gBsP2io2qf/ZYReq7oPQWY+lJfT9wnggPGQ6guJgBnk\n"
          "yPGbUX9jEWleSgk1UaoCYMvdY5wuGgSpR/B6FHzshPprw8g/R0flQtacykIE3PR/Ekp+nu\n"
          "f6tbwYOlFwkKint03l3KfJ1k74vjbfCINOP4mCH21PmLVNxRFx8M4Pw/u0pQnOsEVwqol5\n"
          "I8uVNc+4oaD1vcme2uJteKUF2ENTxkwnN+MA72plaTdTT7Zq5KjMwtg7w5B/YPj3CQxTzS\n"
          "othFZln6EQAAA7hvHCgLbxwoCwAAAAdzc2gtcnNhAAABAQCvlmocPhTpTZNqgLmz6n/zDS\n"
          "PYnFe2o+fAeCoqTeLWGcG2RX9IsO/4pr1OyxeBWNJW0Dg/GwDZzve+32AGw/aKjap/9lhF\n"
          "6rug9BZj6Ul9P3CeCA8ZDqC4mAGeTI8ZtRf2MRaV5KCTVRqgJgy91jnC4aBKlH8HoUfOyE\n"
          "+mvDyD9HR+VC1pzKQgTc9H8SSn6e5/q1vBg6UXCQqKe3TeXcp8nWTvi+Nt8Ig04/iYIfbU\n"
          "+YtU3FEXHwzg/D+7SlCc6wRXCqiXkjy5U1z7ihoPW9yZ7a4m14pQXYQ1PGTCc34wDvamVp\n"
          "N1NPtmrkqMzC2DvDkH9g+PcJDFPNKi2EVmWfoRAAAAAwEAAQAAAQAU2WuRXbJKNyTOYElc\n"
          "spc9jyV+4KaeKGV6AlLAafXpxg5tRCCOazsdZ4AiUWWBvYAhYJFTNfPCiSu8CYZbm0yErH\n"
          "huwBvAdpRPsvgPJknsgjpPO4X+a9EcBimoCC90Rh95o1/LDeYexHvYQRhheMTsTfIEdRBF\n"
          "4cnW5QxnMCIP6WYkZED9HcpuVl3XXIwMxbCm1S3WsDhL5k9eSLge7na6mNpJ4gvdkKDk1E\n"
          "csOOiyWT0jryqbKEFR3ecL0lWaHomy8M8arezoKiFnPh5OHC9TsohcsYyhyhu2GB2twkvy\n"
          "IvCqJMTy4a0Js2z5PFvRyhzH/DgEt+93Jed8Ltm0pWFZAAAAgQCXSSOWy4Q04/lzsOga4J\n"
          "WtM5h0RRNIyR3cV/EIulNogvbRvjqTaqL4T21NgLMFBBaxJK0Ojxs3CtbukjQCGULYEptF\n"
          "AGwDQ0MZK1Xw/iY+DnOhmPw7WjoDcKEcCSmuAnU0j9zNvPUfSEz3djv6Z3ngm6VqVSDorH\n"
          "wjTY5T3ZpnTgAAAIEA5TZji3TMqTNaKLeHuzUO+pMt5i4YN8Zb2pEQdQOcXAIBw53ij5VA\n"
          "KWbnQr9Vd5S6fluqwFbhf/Imfp6jtAXl8HaYHybC/OV3q/SPjFcyRyhr4DvtyyVOwSSVwK\n"
          "pkAZgSXC85JbjVxwckvZOGvBeljfVQrqk//05hX5lH4atu3RkAAACBAMQbqw88nIwtigy1\n"
          "upNiyRNp5QzehHEIXZFlQWNOJrY+6emHPVOtpLrzTZdwD3lM7AX04M9wEi04J6y7rK34IZ\n"
          "OVXB7H6EscxNixXRpjMayjvb+3FB+vWElheemnlBEolsxG2Vyf28R3Rg6MrPr0lZlNGH45\n"
          "ii+RhCpNrbAfASu5AAAAAXgB\n"
          "-----END OPENSSH PRIVATE KEY-----\n",
          "ssh-rsa "
          "AAAAB3NzaC1yc2EAAAADAQABAAABAQCvlmocPhTpTZNqgLmz6n/zDSPYnFe2o+fAeCoqTeLWGcG2RX9IsO/"
          "4pr1OyxeBWNJW0Dg/GwDZzve+32AGw/aKjap/"
          "9lhF6rug9BZj6Ul9P3CeCA8ZDqC4mAGeTI8ZtRf2MRaV5KCTVRqgJgy91jnC4aBKlH8HoUfOyE+mvDyD9HR+"
          "VC1pzKQgTc9H8SSn6e5/q1vBg6UXCQqKe3TeXcp8nWTvi+Nt8Ig04/iYIfbU+YtU3FEXHwzg/"
          "D+7SlCc6wRXCqiXkjy5U1z7ihoPW9yZ7a4m14pQXYQ1PGTCc34wDvamVpN1NPtmrkqMzC2DvDkH9g+PcJDFPNKi2EVmWfoR",
          "SHA256:0OM2Y+MQCuEEvAHPsS3OMMilUF1TPEB9Wu3DoaQk0P0" },
        { "ossh_ecdsa",
          "-----BEGIN OPENSSH PRIVATE KEY-----\n"
          "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAiAAAABNlY2RzYS\n"
          "1zaGEyLW5pc3RwMzg0AAAACG5pc3RwMzg0AAAAYQTQRa1IprCoRc2OSOjFK0BsKw5fNmwp\n"
          "dKAHOJiQS0z4alZg5hsGcTwIsNJ93CyQa8xZI5Pd5U8jp1ZBBGZo1lg2aRHVKDVhGWKxIY\n"
          "S+t/KJ2TVslrKcNeInn/Gw8tpOPF4AAADQzmMIhM5jCIQAAAATZWNkc2Etc2hhMi1uaXN0\n"
          "cDM4NAAAAAhuaXN0cDM4NAAAAGEE0EWtSKawqEXNjkjoxStAbCsOXzZsKXSgBziYkEtM+G\n"
          "pWYOYbBnE8CLDSfdwskGvMWSOT3eVPI6dWQQRmaNZYNmkR1Sg1YRlisSGEvrfyidk1bJay\n"
          "nDXiJ5/xsPLaTjxeAAAAMQD371scgIzGfJ7hlMoCXe1HzHHfnMk67ICKgOfN/z+WYWLIJl\n"
          "JuxhYFmqLSTRBR858AAAABeAECAwQFBg==\n"
          "-----END OPENSSH PRIVATE KEY-----\n",
          "ecdsa-sha2-nistp384 "
          "AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBNBFrUimsKhFzY5I6MUrQGwrDl82bCl0oAc4mJBLTPhqV"
          "mDmGwZxPAiw0n3cLJBrzFkjk93lTyOnVkEEZmjWWDZpEdUoNWEZYrEhhL638onZNWyWspw14ief8bDy2k48Xg==",
          "SHA256:f5qXNwFYNtWzLaSHC1TAuKWA3klltixDtqPuk9XnwJ8" },
        { "pem_ed25519",
          "-----BEGIN PRIVATE KEY-----\n"
          "MC4CAQAwBQYDK2VwBCIEIGjBx6JxmmJIBx1YUverF5HT4Zlz3RAf3kJiFLV5zvMS\n"
          "-----END PRIVATE KEY-----\n",
          "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINmKhrKsfyjJcnT3FXyU3YsEyIspxk702UH3CpG/jZEp",
          "SHA256:P3TNa7LLI+7jrQQ9l7j9LCcoeFEUnz/64PvZcPvmdMw" },
        { "pem_rsa",
          "-----BEGIN RSA PRIVATE KEY-----\n"
          "MIIEpAIBAAKCAQEA5y/8HTW/WiTyMpSJIu+rupF4Y7O5crTeGfIitpTFolG2IrLd\n"
          "LVC5TSatMVw/b8bg3c3MJmeDPcjzRoib8FIIICjYwjjepIKGMPhDWalfaPvtokBQ\n"
          "Cln0FrxAbsW/A1frfAsh7IfnLJegUF72EX7Y/LJxxtA6cZiOlZS4KQpug/Dqq7HI\n"
          "Cd5j1rPQT5kGUr3ZttPDZIvJw07OLbTPP57Evy/ZsP8mEq/VSCL6+9MXr27CrJxX\n"
          "/M+GFaT6LLm7ME0XXBgy92z+xmAbfXSfgKzxDp/RRjJDPM/pwTbvHvG3e8ifdKMt\n"
          "hMl1KPATOOpGQ+Va/jWLlmY1H/2OhytwHxTSIwIDAQABAoIBACLsxFTzVCt9jlsm\n"
          "xkrRUyuVo07IjVjvSug3hJf5hJu/ZVj7lV8tpTirAZoF2g18SWcomlEo7RIt49aB\n"
          "d7FH6zNUiF5a8gN/Nl96ec43QJMfD+ild5IAwdeXa9JwLCmIpCnykpbldv5tD4pk\n"
          "th6xf305RefneBTGG7AsLeABU+25c3BrBhvrul5PWZ9jqvXPXni4PoqMtXPHt0z2\n"
          "uxLnEizJB83//nQKwnv5gk0uOTAopGUhrlDQHpFJF0yw5lMgxBejxSP7KAzxxMrY\n"
          "+IpkZ+guSmAD1YjFAWenQOI34ffrQT8Hfl1xl5KyjKR8ZrJGeXencBpTaa/SJfaI\n"
          "2UUomWUCgYEA9YWW7DXJjuF7CMy9kwBMqlksiYBr3xIhwwubTdgsQ5sv4qjkHQ7c\n"
          "Ddn0lDmx2bkM0k0XduiVC7/l5Xa75oG7IouZc7Oi8gHG0l8MTnej7BpKLibTSv0Z\n"
          "Ga0ZLIeAV1zb2lnaECT+evMS656Hb46jGI7dR9Tm1MzUllDwbGqaLd8CgYEA8Q3J\n"
          "f4GnD2uT7ZEfeNE5i7nKQYmKR9fd9PgHbiZfqlkRDebRzwDSgucNIP2P6iLcijQ0\n"
          "xlRvCS+aUpSATmQzx0TvGkny03Pj03cUBlMAWXQq9VPu9GgJmnJMG7w7G/C2T2u5\n"
          "whzPim9QyudgAKt6+J88I2N+Nl2Id1JNsEAcnD0CgYBRRb1lx5BG6cDOcue2B31Z\n"
          "Tld91LLgjqH6bJcmN46/ellpkDqim86gDyv0/PwwdB8YZkiEJg1gbE9vm9QrQ3ps\n"
          "vwU21Zn0vj3QWYI7X0M13qX7jQKYahuq8i/JG7mSMbzdFK0odvZ+QIRc1odCmFbI\n"
          "xFHfe0xF2N/uOjC70rXixQKBgQC0ohY6fBeKEJ07SqKA0JgEwmZzkfOTPonOxgYb\n"
          "XpoVdsS23B6gtgcJnMZT0G6FjzYgQlrBvAewpIFKHInBNIkwa9GYq41RMuioT/Ur\n"
          "gAsk/U4rpIfNkiCQIdIyfmz01P5oqVr7wMcs/5lVUui318hAgmJ4SlgLuS9H6t7Y\n"
          "klJeKQKBgQCHP/XZSexGZynRhKls3GZFSK4Otox6zY2p76QUZuhSPYVFKiOl+nxe\n"
          "Im2cknAA50J1ucOS0uf+fEQcRKMmHZT4b2sy4VnChqY/9qAgbDaktB7LSrPo9NJV\n"
          "MlVrM0JkKXEj3RU2HYXiFKcLUwFVXb79tJxYThcJRX+cRX/ocZrriQ==\n"
          "-----END RSA PRIVATE KEY-----\n",
          "ssh-rsa "
          "AAAAB3NzaC1yc2EAAAADAQABAAABAQDnL/"
          "wdNb9aJPIylIki76u6kXhjs7lytN4Z8iK2lMWiUbYist0tULlNJq0xXD9vxuDdzcwmZ4M9yPNGiJvwUgggKNjCON6kgoYw+"
          "ENZqV9o++2iQFAKWfQWvEBuxb8DV+t8CyHsh+"
          "csl6BQXvYRftj8snHG0DpxmI6VlLgpCm6D8OqrscgJ3mPWs9BPmQZSvdm208Nki8nDTs4ttM8/nsS/L9mw/"
          "yYSr9VIIvr70xevbsKsnFf8z4YVpPosubswTRdcGDL3bP7GYBt9dJ+ArPEOn9FGMkM8z+"
          "nBNu8e8bd7yJ90oy2EyXUo8BM46kZD5Vr+NYuWZjUf/Y6HK3AfFNIj",
          "SHA256:h2xv/A7J1vRjGRU1IswbegAGLAIbmIfrwmxgbYyXP/0" },
        { "pem_ec",
          "-----BEGIN EC PRIVATE KEY-----\n"
          "MHcCAQEEIDkVK2zvHFSJNgi0d7byve50waO2NfoXIFsO2VVp02UdoAoGCCqGSM49\n"
          "AwEHoUQDQgAE94Ea2iEGqtKaEMPBuob7hufVKyqy2gZyAAuRu4g8MkOys4ehAPQx\n"
          "/urXlR4xTien1Le3n7+6/vKhzf6yMdXVzA==\n"
          "-----END EC PRIVATE KEY-----\n",
          "ecdsa-sha2-nistp256 "
          "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPeBGtohBqrSmhDDwbqG+"
          "4bn1SsqstoGcgALkbuIPDJDsrOHoQD0Mf7q15UeMU4np9S3t5+/uv7yoc3+sjHV1cw=",
          "SHA256:2C3i5iX9ridF1gJtxlKSlnvS7ww74X++3saqcx+WKPg" },
};
static const char encrypted_key[] =
        "-----BEGIN OPENSSH PRIVATE KEY-----\n"
        "b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABCEc2TJ++\n"
        "OoC6syt2D6uqReAAAAEAAAAAEAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIE1FmHkpZc/SpzLS\n"
        "wGFtGG4DUjnbqqrTHWBIZgUXwo7wAAAAkJ1ouBt1WE2UId7zrR0a8IuPGsVkiaM8FbSb0l\n"
        "+qedObGtjjXMiNx1Nhh61Fey/CkWOmPAt+EoKFeTPlYvxKrX9EYry1Clv7XqQP3z9G7bwV\n"
        "K7utHH6egV8tdmOnG6v+4s4gBAc7PA78WFVwo0XVejEJWwEQvj8Fyh0A2avpt6hTJqCcC5\n"
        "Xh/yFMKzUqy00GVg==\n"
        "-----END OPENSSH PRIVATE KEY-----\n";

static const char rsa1024_key[] = "-----BEGIN RSA PRIVATE KEY-----\n"
                                  "MIICXQIBAAKBgQC49rsonFM7lJ92juOKWqS0gXPapRrsJL+66YSZgnRihBzt8RmW\n"
                                  "4atb0Awb8FU18mC/a2YukxE5EqRtHo7mr0tHVeQwhc54WEDn7RKB0s3Q1L52qFPs\n"
                                  "seoBn8lH6LP1ENPzIt78IQhilN1nvxYD6Hx2ULsR8/gETkG8ING2JF4lmwIDAQAB\n"
                                  "AoGBAIkKnd7X/D8/veqMsgA3aqMm6tzLyae/DqOBEzLd2jeH5RtSsH//EgSDoAUv\n"
                                  "SyMeQxpwi5PkeTVNH7CNnJlEtcORYjzzEg95l0NX815q4GsHQ6eaeakDe0jyO7pg\n"
                                  "hVJmfq8qJhvGbx+63kLKgZCGjs3kpjvQ0VM0XuZdfbiEC96JAkEA3AAoq8Y3JDmG\n"
                                  "T7DjoQKT0UShc5eP4hycN+EX51IJIGuCN+w7teHsA5l5iPs1Svby2GygLafsjYOl\n"
                                  "E2hOj5gwNwJBANc64Ip2/6q7ltNT2FsJ8MkBDcJ8n/kTkk5cHnVXAOAzb8ek+4Q8\n"
                                  "ViIYxOkXrN4b5ORGMkLAMyNY2wQsqgGZW70CQQDLzbnfp3hdroymNpApEGIvcwy+\n"
                                  "MKGyLh7qBTRHrs+VoQK5G7cU/33Mt9jG9TChibPemoKoyO9zCYlbOT3N+IZxAkA8\n"
                                  "4JlscNZGC4NQyPF0Zq5lnFexACEbiY6jfWjcFbzYrZPba2387DgMsubXa2vo8wje\n"
                                  "DIDg4o5UXCiu2JdJloAdAkBd0rjOtPjegonmR1V/Pvad528Y8hpRFkZ86moRpiVe\n"
                                  "+Ed4DcZ35GJgqvOypfIfd0ABMUsU/U2X19GFNxp7uYJD\n"
                                  "-----END RSA PRIVATE KEY-----\n";

static void test_fixtures_parse(void **state) {
        (void) state;
        for (size_t i = 0; i < ELEMENTSOF(key_fixtures); i++) {
                const struct key_fixture *f = &key_fixtures[i];
                char fp[CM_SSHKEY_FP_LEN + 1];
                char *pub = NULL;
                int r;

                r = cm_sshkey_parse_private(f->private_key, strlen(f->private_key), &pub, fp);
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
        char *pub = NULL, *broken;
        const char *ed = key_fixtures[0].private_key;
        size_t n = strlen(ed);

        (void) state;
        assert_int_equal(cm_sshkey_parse_private(encrypted_key, strlen(encrypted_key), &pub, fp), -EACCES);
        assert_int_equal(cm_sshkey_parse_private(rsa1024_key, strlen(rsa1024_key), &pub, fp), -EOPNOTSUPP);
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
                        /* only the trailing comment/padding may change without notice */
                        free(pub);
                        pub = NULL;
                }
                broken[k] = c;
        }
        free(broken);
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
