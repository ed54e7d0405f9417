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

static void put_digits(char *p, unsigned v, int width) {
        for (int i = width - 1; i >= 0; i--) {
                p[i] = (char) ('0' + v % 10);
                v /= 10;
        }
}

/* Proleptic Gregorian date of a day count since 1970-01-01 (eras of 400 years; no tables, no locks). */
static void civil_from_days(int64_t z, int64_t *ret_y, unsigned *ret_m, unsigned *ret_d) {
        int64_t era, y;
        unsigned doe, yoe, doy, mp;

        z += 719468;
        era = (z >= 0 ? z : z - 146096) / 146097;
        doe = (unsigned) (z - era * 146097);
        yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        y = (int64_t) yoe + era * 400;
        doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        mp = (5 * doy + 2) / 153;
        *ret_d = doy - (153 * mp + 2) / 5 + 1;
        *ret_m = mp < 10 ? mp + 3 : mp - 9;
        *ret_y = y + (*ret_m <= 2);
}

void cm_format_rfc3339(uint64_t usec, char *buf, size_t size) {
        uint64_t sec = usec / USEC_PER_SEC, sod = sec % 86400;
        unsigned month, day;
        int64_t year;

        /* Hand-rolled: this runs for every timestamp of every response, and gmtime_r takes a lock. */
        civil_from_days((int64_t) (sec / 86400), &year, &month, &day);
        if (size < 25 || year > 9999) {
                (void) cm_strlcpy(buf, "1970-01-01T00:00:00.000Z", size);
                return;
        }
        put_digits(buf, (unsigned) year, 4);
        buf[4] = '-';
        put_digits(buf + 5, month, 2);
        buf[7] = '-';
        put_digits(buf + 8, day, 2);
        buf[10] = 'T';
        put_digits(buf + 11, (unsigned) (sod / 3600), 2);
        buf[13] = ':';
        put_digits(buf + 14, (unsigned) (sod / 60 % 60), 2);
        buf[16] = ':';
        put_digits(buf + 17, (unsigned) (sod % 60), 2);
        buf[19] = '.';
        put_digits(buf + 20, (unsigned) ((usec % USEC_PER_SEC) / 1000), 3);
        buf[23] = 'Z';
        buf[24] = 0;
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

static EVP_MD *sha256_md;

/* Fetched once: an implicit fetch per digest takes provider locks on every call. */
static void sha256_fetch(void) {
        sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void cm_sha256_hex(const void *data, size_t n, char out[static 65]) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        uint8_t md[SHA256_DIGEST_LENGTH];
        unsigned mdlen = 0;

        (void) pthread_once(&once, sha256_fetch);
        if (EVP_Digest(data, n, md, &mdlen, sha256_md ? sha256_md : EVP_sha256(), NULL) != 1 ||
            mdlen != sizeof(md)) {
                /* Cannot happen with a working libcrypto; never return a guessable digest. */
                memset(md, 0xff, sizeof(md));
        }
        cm_hex(md, sizeof(md), out);
}
