/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "base/secret.h"
#include "base/strbuf.h"
#include "base/util.h"

uint64_t cm_now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

uint64_t cm_mono_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

void cm_format_rfc3339(uint64_t usec, char *buf, size_t size) {
        time_t sec = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;

        if (!gmtime_r(&sec, &tm) ||
            cm_snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
                        tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                        (unsigned) ((usec % USEC_PER_SEC) / 1000)) < 0)
                (void) cm_strlcpy(buf, "1970-01-01T00:00:00.000Z", size);
}

int cm_parse_rfc3339(const char *s, uint64_t *ret_usec) {
        struct tm tm = {};
        unsigned frac = 0, digits = 0;
        const char *p;
        time_t t;

        p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!p)
                return -EINVAL;
        if (*p == '.') {
                p++;
                while (*p >= '0' && *p <= '9') {
                        if (digits < 6) {
                                frac = frac * 10 + (unsigned) (*p - '0');
                                digits++;
                        }
                        p++;
                }
                while (digits < 6) {
                        frac *= 10;
                        digits++;
                }
        }
        if (!streq(p, "Z"))
                return -EINVAL;
        t = timegm(&tm);
        if (t < 0)
                return -EINVAL;
        *ret_usec = (uint64_t) t * USEC_PER_SEC + frac;
        return 0;
}

int cm_random_bytes(void *buf, size_t n) {
        if (n > INT_MAX || RAND_bytes(buf, (int) n) != 1)
                return -EIO;
        return 0;
}

int cm_random_id(const char *prefix, char *out, size_t size) {
        static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
        uint8_t rnd[26];
        size_t pl = strlen(prefix);
        int r;

        if (size < pl + 27)
                return -ENOBUFS;
        r = cm_random_bytes(rnd, sizeof(rnd));
        if (r < 0)
                return r;
        memcpy(out, prefix, pl);
        for (size_t i = 0; i < sizeof(rnd); i++)
                out[pl + i] = alphabet[rnd[i] & 31];
        out[pl + 26] = 0;
        return 0;
}

int cm_random_token(const char *prefix, char *out, size_t size) {
        static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        uint8_t rnd[43];
        size_t pl = strlen(prefix);
        int r;

        if (size < pl + 44)
                return -ENOBUFS;
        r = cm_random_bytes(rnd, sizeof(rnd));
        if (r < 0)
                return r;
        memcpy(out, prefix, pl);
        for (size_t i = 0; i < sizeof(rnd); i++)
                out[pl + i] = alphabet[rnd[i] & 63];
        out[pl + 43] = 0;
        cm_wipe(rnd, sizeof(rnd));
        return 0;
}

void cm_hex(const void *data, size_t n, char *out) {
        static const char hexdig[] = "0123456789abcdef";
        const uint8_t *p = data;

        for (size_t i = 0; i < n; i++) {
                out[2 * i] = hexdig[p[i] >> 4];
                out[2 * i + 1] = hexdig[p[i] & 15];
        }
        out[2 * n] = 0;
}

void cm_sha256_hex(const void *data, size_t n, char out[static 65]) {
        uint8_t md[SHA256_DIGEST_LENGTH];
        unsigned mdlen = 0;

        if (EVP_Digest(data, n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != sizeof(md)) {
                /* Cannot happen with a working libcrypto; never return a guessable digest. */
                memset(md, 0xff, sizeof(md));
        }
        cm_hex(md, sizeof(md), out);
}
