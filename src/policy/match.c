/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Addresses, networks and versions for the built-in rules. The evaluator's reading of networks
 * follows Go's net package (what OPA's net.cidr_contains uses), so that the built-in rules and the
 * Rego bundle decide alike; settings documents are checked more strictly (cm_policy__cidr_valid).
 */
#include "base/common.h"

#include <arpa/inet.h>

#include "base/strbuf.h"
#include "policy/policy_internal.h"

static bool is_v4_mapped(const uint8_t b[16]) {
        static const uint8_t prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

        return memcmp(b, prefix, sizeof(prefix)) == 0;
}

/*
 * inet_pton(AF_INET) of the first n bytes of s, step by step as glibc's inet_pton4 (and Go's
 * netip.ParseAddr for IPv4): four decimal octets up to 255, no leading zeros, nothing else.
 */
static bool ipv4_parse(const char *s, size_t n, uint8_t b[4]) {
        unsigned octets = 0, cur = 0;
        bool digit = false;

        for (size_t i = 0; i < n; i++) {
                char c = s[i];

                if (c >= '0' && c <= '9') {
                        if (digit && cur == 0)
                                return false;
                        cur = cur * 10 + (unsigned) (c - '0');
                        if (cur > 255)
                                return false;
                        if (!digit) {
                                if (++octets > 4)
                                        return false;
                                digit = true;
                        }
                } else if (c == '.' && digit) {
                        if (octets == 4)
                                return false;
                        b[octets - 1] = (uint8_t) cur;
                        cur = 0;
                        digit = false;
                } else
                        return false;
        }
        if (octets < 4 || !digit)
                return false;
        b[3] = (uint8_t) cur;
        return true;
}

/* Parses an address of at most INET6_ADDRSTRLEN characters; *ret_bits is 32 or 128 (as written). */
static bool addr_parse(const char *s, size_t n, uint8_t b[16], unsigned *ret_bits) {
        char buf[INET6_ADDRSTRLEN + 1];

        if (n == 0 || n >= sizeof(buf))
                return false;
        memset(b, 0, 16);
        if (ipv4_parse(s, n, b)) {
                *ret_bits = 32;
                return true;
        }
        if (!memchr(s, ':', n))
                return false;
        memcpy(buf, s, n);
        buf[n] = 0;
        if (inet_pton(AF_INET6, buf, b) == 1) {
                *ret_bits = 128;
                return true;
        }
        return false;
}

static void mask_bytes(uint8_t *b, size_t len, unsigned prefix) {
        for (size_t i = 0; i < len; i++) {
                unsigned keep = prefix >= 8 * (i + 1) ? 8 : prefix > 8 * i ? prefix - 8 * (unsigned) i : 0;

                b[i] &= (uint8_t) (0xff00U >> keep);
        }
}

bool cm_policy__ip_parse(const char *s, struct cm_policy__ip *ret) {
        uint8_t b[16];
        unsigned bits;

        if (!s || !addr_parse(s, strlen(s), b, &bits))
                return false;
        if (bits == 128 && !is_v4_mapped(b)) {
                memcpy(ret->b, b, 16);
                ret->len = 16;
        } else {
                memcpy(ret->b, bits == 32 ? b : b + 12, 4);
                ret->len = 4;
        }
        return true;
}

bool cm_policy__net_parse(const char *s, struct cm_policy__net *ret) {
        const char *slash = s ? strchr(s, '/') : NULL, *q;
        unsigned bits, prefix = 0;
        uint8_t b[16];

        if (!slash || !addr_parse(s, (size_t) (slash - s), b, &bits))
                return false;
        /* Go's dtoi: decimal digits only, leading zeros allowed, at least one. */
        for (q = slash + 1; *q >= '0' && *q <= '9'; q++) {
                prefix = prefix * 10 + (unsigned) (*q - '0');
                if (prefix > 128)
                        return false;
        }
        if (q == slash + 1 || *q || prefix > bits)
                return false;
        mask_bytes(b, bits / 8, prefix);
        /* A network that is IPv4-mapped after masking contains IPv4 addresses (as IPNet.Contains). */
        if (bits == 128 && is_v4_mapped(b)) {
                memcpy(ret->b, b + 12, 4);
                ret->len = 4;
                ret->prefix = (uint8_t) (prefix - 96);
        } else {
                memcpy(ret->b, b, 16);
                ret->len = (uint8_t) (bits / 8);
                ret->prefix = (uint8_t) prefix;
        }
        memset(ret->mask, 0xff, sizeof(ret->mask));
        mask_bytes(ret->mask, ret->len, ret->prefix);
        return true;
}

bool cm_policy__net_contains(const struct cm_policy__net *n, const struct cm_policy__ip *ip) {
        if (n->len != ip->len)
                return false;
        for (unsigned i = 0; i < n->len; i++)
                if ((ip->b[i] & n->mask[i]) != n->b[i])
                        return false;
        return true;
}

bool cm_policy__cidr_valid(const char *s, char *why, size_t size) {
        const char *slash = strchr(s, '/'), *q;
        char text[INET6_ADDRSTRLEN];
        unsigned bits, prefix = 0;
        uint8_t b[16], masked[16];

        if (!slash || !addr_parse(s, (size_t) (slash - s), b, &bits)) {
                (void) cm_snprintf(why, size,
                                   "must be a network in CIDR notation like 10.0.0.0/8 or fd00::/8");
                return false;
        }
        if (bits == 128 && is_v4_mapped(b)) {
                (void) cm_snprintf(why, size, "write IPv4 networks as a.b.c.d/n, not as IPv4-mapped IPv6");
                return false;
        }
        for (q = slash + 1; *q >= '0' && *q <= '9' && prefix <= bits; q++)
                prefix = prefix * 10 + (unsigned) (*q - '0');
        if (q == slash + 1 || *q || prefix > bits || (slash[1] == '0' && q - slash > 2)) {
                (void) cm_snprintf(why, size, "the prefix length after '/' must be a number from 0 to %u",
                                   bits);
                return false;
        }
        memcpy(masked, b, sizeof(masked));
        mask_bytes(masked, bits / 8, prefix);
        if (memcmp(masked, b, bits / 8) != 0) {
                if (!inet_ntop(bits == 32 ? AF_INET : AF_INET6, masked, text, sizeof(text)))
                        text[0] = 0;
                (void) cm_snprintf(why, size, "has address bits set after the /%u prefix: write %s/%u",
                                   prefix, text, prefix);
                return false;
        }
        return true;
}

bool cm_policy__version_parse(const char *s, uint32_t ret[3]) {
        uint32_t v[3] = {};
        const char *q = s;

        if (!q || *q++ != 'v')
                return false;
        for (int part = 0; part < 3; part++) {
                int digits = 0;

                while (*q >= '0' && *q <= '9') {
                        if (++digits > 9)
                                return false;
                        v[part] = v[part] * 10 + (uint32_t) (*q++ - '0');
                }
                if (digits == 0 || (part < 2 && *q++ != '.'))
                        return false;
        }
        if (*q != 0 && *q != '-' && *q != '+')
                return false;
        memcpy(ret, v, sizeof(v));
        return true;
}

int cm_policy__version_cmp(const uint32_t a[3], const uint32_t b[3]) {
        for (int i = 0; i < 3; i++)
                if (a[i] != b[i])
                        return a[i] < b[i] ? -1 : 1;
        return 0;
}

static bool label_chars_ok(const char *s, bool allow_slash) {
        for (; *s; s++) {
                char c = *s;

                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-' || (allow_slash && c == '/'))
                        continue;
                return false;
        }
        return true;
}

bool cm_policy__label_key_valid(const char *s) {
        const char *slash = strchr(s, '/');
        size_t name_len = slash ? strlen(slash + 1) : strlen(s);

        return strlen(s) <= 253 && name_len > 0 && name_len <= 63 && label_chars_ok(s, true) &&
               !(slash && strchr(slash + 1, '/'));
}
