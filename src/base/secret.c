/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <jansson.h>
#include <openssl/crypto.h>

#include "base/secret.h"

void cm_wipe(void *p, size_t n) {
        if (p && n > 0)
                OPENSSL_cleanse(p, n);
}

char *cm_erase_and_free(char *s) {
        if (s) {
                cm_wipe(s, strlen(s));
                free(s);
        }
        return NULL;
}

bool cm_memeq_const(const void *a, const void *b, size_t n) {
        return CRYPTO_memcmp(a, b, n) == 0;
}

void cm_mask_secret(char *text, const char *secret) {
        size_t n = secret ? strlen(secret) : 0;

        if (!text || n < 4)
                return;
        for (char *p = strstr(text, secret); p; p = strstr(p + n, secret))
                memset(p, '*', n);
}

static bool is_b64url(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
               c == '_';
}

/* A character that continues a word: what masking writes ('*') counts, so that redacting twice changes nothing. */
static bool is_word(char c) {
        return is_b64url(c) || c == '*';
}

static size_t mask(char *p, size_t n) {
        memset(p, '*', n);
        return 1;
}

/* The length of a run of base64url characters at p (JWT segments, API key bodies). */
static size_t b64url_run(const char *p) {
        size_t n = 0;

        while (is_b64url(p[n]))
                n++;
        return n;
}

size_t cm_redact(char *text) {
        static const char *const keys[] = { "password",   "passwd", "client-key-data", "private_key",
                                            "secret_key", "token",  "secret" };
        size_t count = 0;

        if (!text)
                return 0;
        for (char *p = text; *p; p++) {
                /* PEM private keys: everything from the armour to its end (or the end of the text) */
                if (*p == '-' && strneq(p, "-----BEGIN ", 11)) {
                        const char *eol = strstr(p + 11, "-----");

                        if (eol && strstr(p, "PRIVATE KEY") && strstr(p, "PRIVATE KEY") < eol + 5) {
                                char *end = strstr(eol + 5, "-----END ");
                                char *stop = end ? strstr(end + 9, "-----") : NULL;
                                size_t n = stop ? (size_t) (stop + 5 - p) : strlen(p);

                                count += mask(p, n);
                                p += n - 1;
                                continue;
                        }
                }
                /* API keys of this service */
                if (*p == 'c' && strneq(p, "cmk_", 4) && b64url_run(p + 4) >= 20 &&
                    (p == text || !is_word(p[-1]))) {
                        size_t n = b64url_run(p + 4);

                        count += mask(p + 4, n);
                        p += 3 + n;
                        continue;
                }
                /* JWTs: eyJ... . ... . ... */
                if (*p == 'e' && strneq(p, "eyJ", 3) && (p == text || !is_word(p[-1]))) {
                        size_t a = b64url_run(p), b = p[a] == '.' ? b64url_run(p + a + 1) : 0;

                        if (a >= 10 && b >= 2 && p[a + 1 + b] == '.') {
                                size_t n = a + 1 + b + 1 + b64url_run(p + a + 1 + b + 1);

                                count += mask(p, n);
                                p += n - 1;
                                continue;
                        }
                }
                /* "Bearer <credential>" */
                if ((*p == 'B' || *p == 'b') && strncasecmp(p, "bearer ", 7) == 0) {
                        size_t n = strcspn(p + 7, " \t\r\n\"'");

                        if (n >= 8) {
                                count += mask(p + 7, n);
                                p += 6 + n;
                                continue;
                        }
                }
                /* key: value, key=value, "key": "value" */
                for (size_t k = 0; k < ELEMENTSOF(keys); k++) {
                        size_t kl = strlen(keys[k]), i, n;

                        if (strncasecmp(p, keys[k], kl) != 0 || (p > text && is_word(p[-1])) ||
                            is_b64url(p[kl]))
                                continue;
                        i = kl;
                        if (p[i] == '"')
                                i++;
                        while (p[i] == ' ')
                                i++;
                        if (p[i] != ':' && p[i] != '=')
                                continue;
                        i++;
                        while (p[i] == ' ' || p[i] == '"' || p[i] == '\'')
                                i++;
                        n = strcspn(p + i, " \t\r\n\"',;}");
                        if (n >= 4) {
                                count += mask(p + i, n);
                                p += i + n - 1;
                        }
                        break;
                }
        }
        return count;
}

static void json_wipe(json_t *v) {
        const char *key;
        json_t *child;
        size_t i;

        if (json_is_string(v))
                cm_wipe(CM_UNCONST(char *, json_string_value(v)), json_string_length(v));
        else if (json_is_object(v)) {
                json_object_foreach(v, key, child) {
                        json_wipe(child);
                }
        } else if (json_is_array(v)) {
                json_array_foreach(v, i, child) {
                        json_wipe(child);
                }
        }
}

void cm_json_wipe_and_free(json_t **v) {
        if (*v) {
                json_wipe(*v);
                json_decref(*v);
                *v = NULL;
        }
}
