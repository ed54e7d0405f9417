/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SSH keys. OpenSSL reads PEM keys but not the OpenSSH private key container
 * (PROTOCOL.key in OpenSSH), so that container is decoded here; its fields are checked against each
 * other (and, for ed25519, the public key is derived again from the seed with OpenSSL).
 */
#include "base/common.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "base/secret.h"
#include "base/strbuf.h"
#include "vault/sshkey.h"

#define BLOB_MAX 2048U
static const char openssh_begin[] = "-----BEGIN OPENSSH PRIVATE KEY-----";
static const char openssh_end[] = "-----END OPENSSH PRIVATE KEY-----";
static const char openssh_magic[] = "openssh-key-v1"; /* followed by its NUL */

/* ---- SSH wire encoding ---- */

struct rd {
        const uint8_t *p;
        size_t n;
};

static int rd_u32(struct rd *r, uint32_t *ret) {
        if (r->n < 4)
                return -EINVAL;
        *ret = (uint32_t) r->p[0] << 24 | (uint32_t) r->p[1] << 16 | (uint32_t) r->p[2] << 8 | r->p[3];
        r->p += 4;
        r->n -= 4;
        return 0;
}

static int rd_string(struct rd *r, const uint8_t **ret, size_t *ret_n) {
        uint32_t l;

        if (rd_u32(r, &l) < 0 || l > r->n)
                return -EINVAL;
        *ret = r->p;
        *ret_n = l;
        r->p += l;
        r->n -= l;
        return 0;
}

static bool bytes_eq(const uint8_t *a, size_t an, const char *s) {
        return an == strlen(s) && memcmp(a, s, an) == 0;
}

static int put_string(struct strbuf *sb, const void *p, size_t n) {
        uint8_t l[4] = { (uint8_t) (n >> 24), (uint8_t) (n >> 16), (uint8_t) (n >> 8), (uint8_t) n };
        int r;

        if (n > UINT32_MAX)
                return -EINVAL;
        if ((r = strbuf_add(sb, l, 4)) < 0)
                return r;
        return strbuf_add(sb, p, n);
}

/* An SSH mpint (positive): BN_bn2mpi writes exactly that encoding. */
static int put_mpint(struct strbuf *sb, const BIGNUM *bn) {
        uint8_t buf[1100];
        int n = BN_bn2mpi(bn, NULL);

        if (n <= 0 || (size_t) n > sizeof(buf) || BN_is_negative(bn))
                return -EINVAL;
        (void) BN_bn2mpi(bn, buf);
        return strbuf_add(sb, buf, (size_t) n);
}

/* ---- public key text and fingerprint ---- */

static int b64(const uint8_t *p, size_t n, char **ret) {
        char *s = malloc(4 * ((n + 2) / 3) + 1);

        if (!s)
                return -ENOMEM;
        (void) EVP_EncodeBlock((unsigned char *) s, p, (int) n);
        *ret = s;
        return 0;
}

static int finish_public(const char *type, const uint8_t *blob, size_t blob_n, char **ret_public,
                         char fp[static CM_SSHKEY_FP_LEN + 1]) {
        _cleanup_free_ char *enc = NULL;
        uint8_t md[SHA256_DIGEST_LENGTH];
        char fpb[64];
        char *pub;
        int r;

        r = b64(blob, blob_n, &enc);
        if (r < 0)
                return r;
        if (asprintf(&pub, "%s %s", type, enc) < 0)
                return -ENOMEM;
        SHA256(blob, blob_n, md);
        (void) EVP_EncodeBlock((unsigned char *) fpb, md, sizeof(md));
        fpb[43] = 0; /* drop the '=' padding, as OpenSSH prints it */
        (void) cm_snprintf(fp, CM_SSHKEY_FP_LEN + 1, "SHA256:%s", fpb);
        *ret_public = pub;
        return 0;
}

static const char *ecdsa_curve_of_group(const char *group) {
        if (streq(group, "prime256v1") || streq(group, "P-256"))
                return "nistp256";
        if (streq(group, "secp384r1") || streq(group, "P-384"))
                return "nistp384";
        if (streq(group, "secp521r1") || streq(group, "P-521"))
                return "nistp521";
        return NULL;
}

/* The public key blob of an OpenSSL key. */
static int blob_of_pkey(EVP_PKEY *pkey, struct strbuf *blob, char type[static 32]) {
        int r;

        if (EVP_PKEY_is_a(pkey, "ED25519")) {
                uint8_t pub[32];
                size_t pl = sizeof(pub);

                if (EVP_PKEY_get_raw_public_key(pkey, pub, &pl) != 1 || pl != 32)
                        return -EINVAL;
                (void) cm_strlcpy(type, "ssh-ed25519", 32);
                if ((r = put_string(blob, type, strlen(type))) < 0 || (r = put_string(blob, pub, 32)) < 0)
                        return r;
                return 0;
        }
        if (EVP_PKEY_is_a(pkey, "RSA")) {
                BIGNUM *n = NULL, *e = NULL;

                if (EVP_PKEY_get_bits(pkey) < 2048)
                        return -EOPNOTSUPP;
                if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &n) != 1 ||
                    EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) != 1) {
                        BN_free(n);
                        return -EINVAL;
                }
                (void) cm_strlcpy(type, "ssh-rsa", 32);
                if ((r = put_string(blob, type, strlen(type))) >= 0 && (r = put_mpint(blob, e)) >= 0)
                        r = put_mpint(blob, n);
                BN_free(n);
                BN_free(e);
                return r;
        }
        if (EVP_PKEY_is_a(pkey, "EC")) {
                char group[64];
                uint8_t point[200];
                size_t gl = 0, ptl = 0;
                const char *curve;

                if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                                   &gl) != 1)
                        return -EINVAL;
                curve = ecdsa_curve_of_group(group);
                if (!curve)
                        return -EOPNOTSUPP;
                if (EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point),
                                                    &ptl) != 1)
                        return -EINVAL;
                (void) cm_snprintf(type, 32, "ecdsa-sha2-%s", curve);
                if ((r = put_string(blob, type, strlen(type))) < 0 ||
                    (r = put_string(blob, curve, strlen(curve))) < 0 ||
                    (r = put_string(blob, point, ptl)) < 0)
                        return r;
                return 0;
        }
        return -EOPNOTSUPP;
}

static int no_passphrase(char *buf, int size, int rwflag, void *u) {
        (void) buf;
        (void) size;
        (void) rwflag;
        (void) u;
        return -1;
}

static int parse_pem(const char *text, size_t n, char **ret_public, char fp[static CM_SSHKEY_FP_LEN + 1]) {
        _cleanup_strbuf_ struct strbuf blob = STRBUF_INIT(BLOB_MAX);
        EVP_PKEY *pkey = NULL;
        char type[32];
        BIO *bio;
        int r;

        if (n > INT_MAX)
                return -EINVAL;
        bio = BIO_new_mem_buf(text, (int) n);
        if (!bio)
                return -ENOMEM;
        pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
        BIO_free(bio);
        if (!pkey) {
                /* "ENCRYPTED PRIVATE KEY" or a Proc-Type: 4,ENCRYPTED header */
                bool enc = memmem(text, n, "ENCRYPTED", 9) != NULL;
                return enc ? -EACCES : -EINVAL;
        }
        r = blob_of_pkey(pkey, &blob, type);
        EVP_PKEY_free(pkey);
        if (r < 0)
                return r;
        return finish_public(type, (const uint8_t *) blob.buf, blob.len, ret_public, fp);
}

/* Compares an SSH string at the reader with bytes taken from the public blob. */
static bool same_field(struct rd *r, const uint8_t *want, size_t want_n) {
        const uint8_t *p;
        size_t n;

        return rd_string(r, &p, &n) >= 0 && n == want_n && memcmp(p, want, n) == 0;
}

/* Checks the private section of an OpenSSH key against its public blob. */
static int check_openssh_private(struct rd *priv, const uint8_t *blob, size_t blob_n,
                                 const char **ret_type) {
        struct rd pub = { blob, blob_n };
        const uint8_t *type, *ptype, *f1, *f2;
        size_t type_n, ptype_n, f1_n, f2_n;
        uint32_t c1, c2;

        if (rd_u32(priv, &c1) < 0 || rd_u32(priv, &c2) < 0 || c1 != c2)
                return -EINVAL; /* mismatched check words: an encrypted section decoded wrongly */
        if (rd_string(&pub, &type, &type_n) < 0 || rd_string(priv, &ptype, &ptype_n) < 0 ||
            type_n != ptype_n || memcmp(type, ptype, type_n) != 0)
                return -EINVAL;
        if (bytes_eq(type, type_n, "ssh-ed25519")) {
                const uint8_t *pk, *sk;
                size_t pk_n, sk_n;
                EVP_PKEY *k;
                uint8_t derived[32];
                size_t dl = sizeof(derived);
                bool ok;

                if (rd_string(&pub, &f1, &f1_n) < 0 || f1_n != 32 || rd_string(priv, &pk, &pk_n) < 0 ||
                    pk_n != 32 || memcmp(pk, f1, 32) != 0 || rd_string(priv, &sk, &sk_n) < 0 || sk_n != 64 ||
                    memcmp(sk + 32, f1, 32) != 0)
                        return -EINVAL;
                k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, sk, 32);
                if (!k)
                        return -EINVAL;
                ok = EVP_PKEY_get_raw_public_key(k, derived, &dl) == 1 && dl == 32 &&
                     memcmp(derived, f1, 32) == 0;
                EVP_PKEY_free(k);
                if (!ok)
                        return -EINVAL;
                *ret_type = "ssh-ed25519";
                return 0;
        }
        if (bytes_eq(type, type_n, "ssh-rsa")) {
                const uint8_t *d;
                size_t d_n;

                /* blob: e, n; private: n, e, d, iqmp, p, q */
                if (rd_string(&pub, &f1, &f1_n) < 0 || rd_string(&pub, &f2, &f2_n) < 0 ||
                    !same_field(priv, f2, f2_n) || !same_field(priv, f1, f1_n) ||
                    rd_string(priv, &d, &d_n) < 0 || d_n == 0)
                        return -EINVAL;
                /* modulus length without the sign byte */
                if ((f2_n - (f2_n > 0 && f2[0] == 0)) * 8 < 2048)
                        return -EOPNOTSUPP;
                *ret_type = "ssh-rsa";
                return 0;
        }
        if (bytes_eq(type, type_n, "ecdsa-sha2-nistp256") || bytes_eq(type, type_n, "ecdsa-sha2-nistp384") ||
            bytes_eq(type, type_n, "ecdsa-sha2-nistp521")) {
                const uint8_t *d;
                size_t d_n;

                if (rd_string(&pub, &f1, &f1_n) < 0 || rd_string(&pub, &f2, &f2_n) < 0 ||
                    !same_field(priv, f1, f1_n) || !same_field(priv, f2, f2_n) ||
                    rd_string(priv, &d, &d_n) < 0 || d_n == 0)
                        return -EINVAL;
                *ret_type = bytes_eq(type, type_n, "ecdsa-sha2-nistp256")   ? "ecdsa-sha2-nistp256"
                            : bytes_eq(type, type_n, "ecdsa-sha2-nistp384") ? "ecdsa-sha2-nistp384"
                                                                            : "ecdsa-sha2-nistp521";
                return 0;
        }
        return -EOPNOTSUPP;
}

static int parse_openssh(const char *text, size_t n, char **ret_public,
                         char fp[static CM_SSHKEY_FP_LEN + 1]) {
        struct strbuf b64text, raw;
        const char *s, *e;
        const uint8_t *cipher, *kdf, *kdfopt, *blob, *privsec;
        size_t cipher_n, kdf_n, kdfopt_n, blob_n, privsec_n;
        const char *type = NULL;
        struct rd rd, priv;
        uint32_t nkeys;
        int len, r;

        s = memmem(text, n, openssh_begin, sizeof(openssh_begin) - 1);
        if (!s)
                return -EINVAL;
        s += sizeof(openssh_begin) - 1;
        e = memmem(s, n - (size_t) (s - text), openssh_end, sizeof(openssh_end) - 1);
        if (!e)
                return -EINVAL;
        strbuf_init_secret(&b64text, CM_SSHKEY_PRIVATE_MAX);
        strbuf_init_secret(&raw, CM_SSHKEY_PRIVATE_MAX);
        r = strbuf_grow(&b64text, (size_t) (e - s) + 1);
        if (r < 0)
                goto out;
        for (const char *p = s; p < e; p++)
                if (*p != '\n' && *p != '\r' && *p != ' ' && *p != '\t')
                        b64text.buf[b64text.len++] = *p;
        b64text.buf[b64text.len] = 0;
        r = -EINVAL;
        if (b64text.len == 0 || b64text.len % 4 != 0 || b64text.len > INT_MAX)
                goto out;
        if ((r = strbuf_grow(&raw, b64text.len / 4 * 3 + 1)) < 0)
                goto out;
        len = EVP_DecodeBlock((unsigned char *) raw.buf, (const unsigned char *) b64text.buf,
                              (int) b64text.len);
        r = -EINVAL;
        if (len < 0)
                goto out;
        raw.len = (size_t) len;
        for (size_t i = 0; i < 2 && b64text.len > i && b64text.buf[b64text.len - 1 - i] == '='; i++)
                raw.len--;

        rd = (struct rd){ (const uint8_t *) raw.buf, raw.len };
        if (rd.n < sizeof(openssh_magic) || memcmp(rd.p, openssh_magic, sizeof(openssh_magic)) != 0)
                goto out;
        rd.p += sizeof(openssh_magic);
        rd.n -= sizeof(openssh_magic);
        if (rd_string(&rd, &cipher, &cipher_n) < 0 || rd_string(&rd, &kdf, &kdf_n) < 0 ||
            rd_string(&rd, &kdfopt, &kdfopt_n) < 0 || rd_u32(&rd, &nkeys) < 0)
                goto out;
        if (!bytes_eq(cipher, cipher_n, "none") || !bytes_eq(kdf, kdf_n, "none")) {
                r = -EACCES;
                goto out;
        }
        if (nkeys != 1 || rd_string(&rd, &blob, &blob_n) < 0 || blob_n > BLOB_MAX ||
            rd_string(&rd, &privsec, &privsec_n) < 0 || rd.n != 0)
                goto out;
        priv = (struct rd){ privsec, privsec_n };
        r = check_openssh_private(&priv, blob, blob_n, &type);
        if (r < 0)
                goto out;
        r = finish_public(type, blob, blob_n, ret_public, fp);
out:
        strbuf_release(&b64text);
        strbuf_release(&raw);
        return r;
}

int cm_sshkey_parse_private(const char *text, size_t n, char **ret_public,
                            char ret_fingerprint[static CM_SSHKEY_FP_LEN + 1]) {
        if (n == 0 || n > CM_SSHKEY_PRIVATE_MAX)
                return -EINVAL;
        if (memmem(text, n, openssh_begin, sizeof(openssh_begin) - 1))
                return parse_openssh(text, n, ret_public, ret_fingerprint);
        return parse_pem(text, n, ret_public, ret_fingerprint);
}

int cm_sshkey_generate_ed25519(char **ret_private, size_t *ret_private_n, char **ret_public,
                               char ret_fingerprint[static CM_SSHKEY_FP_LEN + 1]) {
        _cleanup_strbuf_ struct strbuf blob = STRBUF_INIT(BLOB_MAX);
        struct strbuf pem;
        EVP_PKEY *pkey;
        BIO *bio = NULL;
        char *mem = NULL, *pub = NULL, type[32];
        long mem_n;
        int r;

        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
        if (!pkey)
                return -EIO;
        strbuf_init_secret(&pem, CM_SSHKEY_PRIVATE_MAX);
        /* A secure-memory BIO: OpenSSL wipes it when it is freed. */
        bio = BIO_new(BIO_s_secmem());
        if (!bio) {
                r = -ENOMEM;
                goto out;
        }
        if (PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) != 1) {
                r = -EIO;
                goto out;
        }
        mem_n = BIO_get_mem_data(bio, &mem);
        if (mem_n <= 0) {
                r = -EIO;
                goto out;
        }
        if ((r = strbuf_add(&pem, mem, (size_t) mem_n)) < 0)
                goto out;
        if ((r = blob_of_pkey(pkey, &blob, type)) < 0)
                goto out;
        if ((r = finish_public(type, (const uint8_t *) blob.buf, blob.len, &pub, ret_fingerprint)) < 0)
                goto out;
        *ret_private = strbuf_detach(&pem, ret_private_n);
        if (!*ret_private) {
                free(pub);
                r = -ENOMEM;
                goto out;
        }
        *ret_public = pub;
        r = 0;
out:
        BIO_free(bio);
        EVP_PKEY_free(pkey);
        strbuf_release(&pem);
        return r;
}

bool cm_sshkey_public_equal(const char *a, const char *b) {
        size_t at, bt, ak, bk;

        if (!a || !b)
                return false;
        a += strspn(a, " \t");
        b += strspn(b, " \t");
        at = strcspn(a, " \t");
        bt = strcspn(b, " \t");
        if (at != bt || memcmp(a, b, at) != 0)
                return false;
        a += at + strspn(a + at, " \t");
        b += bt + strspn(b + bt, " \t");
        ak = strcspn(a, " \t\r\n");
        bk = strcspn(b, " \t\r\n");
        return ak > 0 && ak == bk && memcmp(a, b, ak) == 0;
}
