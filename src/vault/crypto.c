/* SPDX-License-Identifier: Apache-2.0 */
/* The vault's keyring and sealed file format: envelope encryption with AES-256-GCM (OpenSSL 3). */
#include "base/common.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include "base/fileio.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "vault/crypto.h"

#define SEAL_MAGIC "CMVF"
#define SEAL_FORMAT 1
#define NONCE_LEN 12
#define TAG_LEN 16
#define DEK_LEN 32
/* Fixed header: magic 4, format 1, key id length 1, reserved 2, version 8, created 8, length 8. */
#define HDR_FIXED 32
/* Per key id length L: header, L, dek nonce, wrapped dek, dek tag, content nonce; then content, tag. */
#define PRE_CONTENT(L) (HDR_FIXED + (L) + NONCE_LEN + DEK_LEN + TAG_LEN + NONCE_LEN)
#define SEALED_LEN(L, n) (PRE_CONTENT(L) + (n) + TAG_LEN)

static const char aad_content_domain[] = "clustermgmt vault content v1";
static const char aad_dek_domain[] = "clustermgmt vault data key v1";

struct cm_keyring *cm_keyring_free(struct cm_keyring *kr) {
        if (kr) {
                cm_wipe(kr, sizeof(*kr));
                free(kr);
        }
        return NULL;
}

int cm_keyring_dup(const struct cm_keyring *kr, struct cm_keyring **ret) {
        struct cm_keyring *c = new0(struct cm_keyring, 1);

        if (!c)
                return -ENOMEM;
        memcpy(c, kr, sizeof(*c));
        *ret = c;
        return 0;
}

static bool key_id_valid(const char *s, size_t n) {
        if (n < 1 || n > CM_KEK_ID_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-'))
                        return false;
        }
        return true;
}

int cm_keyring_generate(struct cm_keyring **ret) {
        _cleanup_(cm_keyring_freep) struct cm_keyring *kr = new0(struct cm_keyring, 1);
        int r;

        if (!kr)
                return -ENOMEM;
        r = cm_random_id("kek_", kr->keys[0].id, sizeof(kr->keys[0].id));
        if (r < 0)
                return r; /* cppcheck-suppress memleak ; kr is freed by its cleanup attribute */
        r = cm_random_bytes(kr->keys[0].key, CM_KEK_LEN);
        if (r < 0)
                return r; /* cppcheck-suppress memleak */
        kr->n = 1;
        *ret = TAKE_PTR(kr);
        return 0;
}

const struct cm_kek *cm_keyring_find(const struct cm_keyring *kr, const char *id, size_t id_len) {
        for (size_t i = 0; i < kr->n; i++)
                if (strlen(kr->keys[i].id) == id_len && memcmp(kr->keys[i].id, id, id_len) == 0)
                        return &kr->keys[i];
        return NULL;
}

int cm_keyring_push_current(struct cm_keyring *kr, const struct cm_kek *key) {
        if (cm_keyring_find(kr, key->id, strlen(key->id)))
                return -EEXIST;
        if (kr->n >= CM_KEYRING_MAX)
                return -E2BIG;
        memmove(&kr->keys[1], &kr->keys[0], kr->n * sizeof(kr->keys[0]));
        kr->keys[0] = *key;
        kr->n++;
        return 0;
}

/* Decodes exactly want bytes of standard base64 (with padding) from s[0..n). */
static int b64_decode_exact(const char *s, size_t n, uint8_t *out, size_t want) {
        uint8_t buf[64];
        size_t pad = 0;
        int len;

        if (n == 0 || n % 4 != 0 || n / 4 * 3 > sizeof(buf))
                return -EINVAL;
        if (s[n - 1] == '=')
                pad++;
        if (s[n - 2] == '=')
                pad++;
        len = EVP_DecodeBlock(buf, (const unsigned char *) s, (int) n);
        if (len < 0 || (size_t) len < pad || (size_t) len - pad != want) {
                cm_wipe(buf, sizeof(buf));
                return -EINVAL;
        }
        memcpy(out, buf, want);
        cm_wipe(buf, sizeof(buf));
        return 0;
}

int cm_keyring_parse(const char *text, size_t n, struct cm_keyring **ret) {
        _cleanup_(cm_keyring_freep) struct cm_keyring *kr = new0(struct cm_keyring, 1);
        const char *p = text, *end = text + n;

        if (!kr)
                return -ENOMEM;
        while (p < end) {
                const char *eol = memchr(p, '\n', (size_t) (end - p)) ?: end;
                const char *sp, *kb, *ke;
                struct cm_kek *k;

                ke = eol;
                while (ke > p && (ke[-1] == '\r' || ke[-1] == ' ' || ke[-1] == '\t'))
                        ke--;
                while (p < ke && (*p == ' ' || *p == '\t'))
                        p++;
                if (p == ke || *p == '#') {
                        p = eol + (eol < end);
                        continue;
                }
                sp = p;
                while (sp < ke && *sp != ' ' && *sp != '\t')
                        sp++;
                kb = sp;
                while (kb < ke && (*kb == ' ' || *kb == '\t'))
                        kb++;
                if (sp == ke || !key_id_valid(p, (size_t) (sp - p)))
                        return -EINVAL;
                if (cm_keyring_find(kr, p, (size_t) (sp - p)))
                        return -EEXIST;
                if (kr->n >= CM_KEYRING_MAX)
                        return -E2BIG;
                k = &kr->keys[kr->n];
                memcpy(k->id, p, (size_t) (sp - p));
                k->id[sp - p] = 0;
                if (b64_decode_exact(kb, (size_t) (ke - kb), k->key, CM_KEK_LEN) < 0)
                        return -EINVAL;
                kr->n++;
                p = eol + (eol < end);
        }
        if (kr->n == 0)
                return -EINVAL;
        *ret = TAKE_PTR(kr);
        return 0;
}

int cm_keyring_format(const struct cm_keyring *kr, char **ret, size_t *ret_n) {
        struct strbuf sb;
        char b64[64];
        char *s;
        int r = 0;

        strbuf_init_secret(&sb, CM_KEYRING_FILE_MAX);
        r = strbuf_adds(&sb,
                        "# clustermgmt vault keyring: `<id> <base64 key>` per line, the first is current\n");
        for (size_t i = 0; r >= 0 && i < kr->n; i++) {
                (void) EVP_EncodeBlock((unsigned char *) b64, kr->keys[i].key, CM_KEK_LEN);
                r = strbuf_addf(&sb, "%s %s\n", kr->keys[i].id, b64);
        }
        cm_wipe(b64, sizeof(b64));
        if (r < 0) {
                strbuf_release(&sb);
                return r;
        }
        s = strbuf_detach(&sb, ret_n);
        strbuf_release(&sb);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int cm_keyring_load(const char *path, struct cm_keyring **ret) {
        _cleanup_erase_free_ char *text = NULL;
        size_t n = 0;
        int r;

        r = cm_read_file(path, CM_KEYRING_FILE_MAX, true, &text, &n);
        if (r < 0)
                return r == -EFBIG ? -EINVAL : r;
        return cm_keyring_parse(text, n, ret);
}

int cm_keyring_save(const char *path, const struct cm_keyring *kr) {
        _cleanup_erase_free_ char *text = NULL;
        size_t n = 0;
        int r;

        r = cm_keyring_format(kr, &text, &n);
        if (r < 0)
                return r;
        return cm_write_file_atomic(path, text, n, 0600);
}

int cm_keyring_load_or_create(const char *path, struct cm_keyring **ret, bool *ret_created) {
        _cleanup_(cm_keyring_freep) struct cm_keyring *kr = NULL;
        _cleanup_erase_free_ char *text = NULL;
        size_t n = 0;
        int r;

        r = cm_keyring_load(path, ret);
        if (r != -ENOENT) {
                if (r >= 0 && ret_created)
                        *ret_created = false;
                return r;
        }
        r = cm_keyring_generate(&kr);
        if (r < 0)
                return r;
        r = cm_keyring_format(kr, &text, &n);
        if (r < 0)
                return r;
        /*
         * link() of a complete temp file publishes it only when path does not exist yet, so two
         * starts at once never overwrite each other's key (the loser loads the winner's).
         */
        {
                _cleanup_free_ char *tmp = NULL;
                char suffix[40];

                r = cm_random_id(".tmp-", suffix, sizeof(suffix));
                if (r < 0)
                        return r;
                if (asprintf(&tmp, "%s%s", path, suffix) < 0)
                        return -ENOMEM;
                r = cm_write_file_atomic(tmp, text, n, 0600);
                if (r < 0)
                        return r;
                if (link(tmp, path) < 0) {
                        r = negative_errno();
                        (void) unlink(tmp);
                        if (r == -EEXIST)
                                return cm_keyring_load_or_create(path, ret, ret_created);
                        return r;
                }
                (void) unlink(tmp);
        }
        if (ret_created)
                *ret_created = true;
        *ret = TAKE_PTR(kr);
        return 0;
}

/* ---- the sealed format ---- */

static void put_be64(uint8_t *p, uint64_t v) {
        for (int i = 7; i >= 0; i--) {
                p[i] = (uint8_t) v;
                v >>= 8;
        }
}

static uint64_t get_be64(const uint8_t *p) {
        uint64_t v = 0;

        for (int i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

struct parsed {
        size_t key_id_len;
        const uint8_t *key_id;
        uint64_t version, created, size;
        const uint8_t *dek_nonce, *wrapped_dek, *dek_tag, *nonce, *ct, *tag;
};

/*
 * Parses the part of a sealed file of n bytes before its content, b[0..avail): the header, key id,
 * wrapped data key and content nonce (p.ct and p.tag are left NULL).
 */
static int parse_header(const uint8_t *b, size_t avail, size_t n, struct parsed *ret) {
        struct parsed p = {};
        const uint8_t *q;

        if (avail < HDR_FIXED || n < HDR_FIXED || memcmp(b, SEAL_MAGIC, 4) != 0 || b[4] != SEAL_FORMAT ||
            b[6] != 0 || b[7] != 0)
                return -EBADMSG;
        p.key_id_len = b[5];
        if (!key_id_valid((const char *) b + HDR_FIXED, MIN(p.key_id_len, avail - HDR_FIXED)) ||
            p.key_id_len > avail - HDR_FIXED)
                return -EBADMSG;
        p.version = get_be64(b + 8);
        p.created = get_be64(b + 16);
        p.size = get_be64(b + 24);
        if (p.size > SIZE_MAX / 2 || n != SEALED_LEN(p.key_id_len, (size_t) p.size) ||
            avail < PRE_CONTENT(p.key_id_len))
                return -EBADMSG;
        q = b + HDR_FIXED;
        p.key_id = q;
        q += p.key_id_len;
        p.dek_nonce = q;
        q += NONCE_LEN;
        p.wrapped_dek = q;
        q += DEK_LEN;
        p.dek_tag = q;
        q += TAG_LEN;
        p.nonce = q;
        *ret = p;
        return 0;
}

static int parse_sealed(const uint8_t *b, size_t n, struct parsed *ret) {
        struct parsed p;
        int r;

        r = parse_header(b, n, n, &p);
        if (r < 0)
                return r;
        p.ct = b + PRE_CONTENT(p.key_id_len);
        p.tag = p.ct + p.size;
        *ret = p;
        return 0;
}

static void info_of(const struct parsed *p, struct cm_sealed_info *ret) {
        ret->version = p->version;
        ret->created_usec = p->created;
        ret->size = p->size;
        memcpy(ret->key_id, p->key_id, p->key_id_len);
        ret->key_id[p->key_id_len] = 0;
}

int cm_vault_sealed_info(const uint8_t *blob, size_t blob_n, struct cm_sealed_info *ret) {
        struct parsed p;
        int r;

        r = parse_sealed(blob, blob_n, &p);
        if (r < 0)
                return r;
        info_of(&p, ret);
        return 0;
}

/* AAD of the data key: binds it to the key id, owner, name and version. */
static int dek_aad(struct strbuf *sb, const uint8_t *key_id, size_t key_id_len, const char *owner,
                   const char *name, uint64_t version) {
        uint8_t v[8];
        int r;

        put_be64(v, version);
        if ((r = strbuf_add(sb, aad_dek_domain, sizeof(aad_dek_domain))) < 0 ||
            (r = strbuf_add(sb, SEAL_MAGIC, 4)) < 0 || (r = strbuf_addch(sb, SEAL_FORMAT)) < 0 ||
            (r = strbuf_add(sb, key_id, key_id_len)) < 0 || (r = strbuf_addch(sb, 0)) < 0 ||
            (r = strbuf_add(sb, v, 8)) < 0 || (r = strbuf_add(sb, owner, strlen(owner) + 1)) < 0 ||
            (r = strbuf_add(sb, name, strlen(name) + 1)) < 0)
                return r;
        return 0;
}

/* AAD of the content: the header fields that do not change on re-wrap, owner and name. */
static int content_aad(struct strbuf *sb, const uint8_t *hdr, const char *owner, const char *name) {
        int r;

        if ((r = strbuf_add(sb, aad_content_domain, sizeof(aad_content_domain))) < 0 ||
            (r = strbuf_add(sb, hdr, 5)) < 0 || (r = strbuf_add(sb, hdr + 8, 24)) < 0 ||
            (r = strbuf_add(sb, owner, strlen(owner) + 1)) < 0 ||
            (r = strbuf_add(sb, name, strlen(name) + 1)) < 0)
                return r;
        return 0;
}

static EVP_CIPHER *aes_gcm_fetched;

/* Fetched once: an implicit fetch per call (EVP_aes_256_gcm) takes provider locks every time. */
static void aes_gcm_fetch(void) {
        aes_gcm_fetched = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

static const EVP_CIPHER *aes_gcm(void) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;

        (void) pthread_once(&once, aes_gcm_fetch);
        return aes_gcm_fetched ? aes_gcm_fetched : EVP_aes_256_gcm();
}

/* Starts an AES-256-GCM pass on ctx: key, nonce and the whole AAD. */
static int gcm_begin(EVP_CIPHER_CTX *ctx, bool decrypt, const uint8_t key[static 32],
                     const uint8_t nonce[static NONCE_LEN], const struct strbuf *aad) {
        int len = 0;

        if (EVP_CipherInit_ex(ctx, aes_gcm(), NULL, NULL, NULL, decrypt ? 0 : 1) != 1 ||
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
            EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, -1) != 1 ||
            EVP_CipherUpdate(ctx, NULL, &len, (const unsigned char *) aad->buf, (int) aad->len) != 1)
                return -EIO;
        return 0;
}

/* One AES-256-GCM pass. decrypt: returns -EBADMSG when the tag does not verify (out is wiped). */
static int gcm(bool decrypt, const uint8_t key[static 32], const uint8_t nonce[static NONCE_LEN],
               const struct strbuf *aad, const uint8_t *in, size_t n, uint8_t *out,
               uint8_t tag[static TAG_LEN]) {
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        int len = 0, r = -EIO;
        size_t off = 0;

        if (!ctx)
                return -ENOMEM;
        if (gcm_begin(ctx, decrypt, key, nonce, aad) < 0)
                goto out;
        while (off < n) {
                int chunk = (int) MIN(n - off, (size_t) 1 << 30);
                if (EVP_CipherUpdate(ctx, out + off, &len, in + off, chunk) != 1)
                        goto out;
                off += (size_t) len;
        }
        if (decrypt) {
                if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) != 1)
                        goto out;
                if (EVP_CipherFinal_ex(ctx, out + off, &len) != 1) {
                        cm_wipe(out, n);
                        r = -EBADMSG;
                        goto out;
                }
        } else if (EVP_CipherFinal_ex(ctx, out + off, &len) != 1 ||
                   EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) != 1)
                goto out;
        r = 0;
out:
        EVP_CIPHER_CTX_free(ctx);
        return r;
}

/* Wraps dek under kek into the sealed bytes at b (key id already placed there). */
static int wrap_dek(const struct cm_kek *kek, const char *owner, const char *name, uint64_t version,
                    const uint8_t dek[static DEK_LEN], uint8_t *b) {
        _cleanup_strbuf_ struct strbuf aad = STRBUF_INIT(1024);
        size_t l = b[5];
        uint8_t *dek_nonce = b + HDR_FIXED + l, *wrapped = dek_nonce + NONCE_LEN, *tag = wrapped + DEK_LEN;
        int r;

        r = cm_random_bytes(dek_nonce, NONCE_LEN);
        if (r < 0)
                return r;
        r = dek_aad(&aad, b + HDR_FIXED, l, owner, name, version);
        if (r < 0)
                return r;
        return gcm(false, kek->key, dek_nonce, &aad, dek, DEK_LEN, wrapped, tag);
}

/* Unwraps the data key of parsed bytes into dek. */
static int unwrap_dek(const struct cm_keyring *kr, const struct parsed *p, const char *owner,
                      const char *name, uint64_t version, uint8_t dek[static DEK_LEN]) {
        _cleanup_strbuf_ struct strbuf aad = STRBUF_INIT(1024);
        const struct cm_kek *kek;
        uint8_t tag[TAG_LEN];
        int r;

        kek = cm_keyring_find(kr, (const char *) p->key_id, p->key_id_len);
        if (!kek)
                return -ENOKEY;
        r = dek_aad(&aad, p->key_id, p->key_id_len, owner, name, version);
        if (r < 0)
                return r;
        memcpy(tag, p->dek_tag, TAG_LEN);
        r = gcm(true, kek->key, p->dek_nonce, &aad, p->wrapped_dek, DEK_LEN, dek, tag);
        return r == -EBADMSG ? -EKEYREJECTED : r;
}

int cm_vault_seal_to(const struct cm_keyring *kr, const char *owner, const char *name, uint64_t version,
                     uint64_t created_usec, const void *data, size_t n, cm_vault_sink_fn sink,
                     void *userdata, size_t *ret_n) {
        _cleanup_strbuf_ struct strbuf aad = STRBUF_INIT(1024);
        const struct cm_kek *kek = &kr->keys[0];
        const uint8_t *in = data;
        EVP_CIPHER_CTX *ctx = NULL;
        uint8_t dek[DEK_LEN], *buf = NULL;
        size_t l = strlen(kek->id), pre, fill, off = 0;
        int r;

        if (kr->n == 0 || n > SIZE_MAX / 2 - CM_SEALED_OVERHEAD_MAX)
                return -EINVAL;
        pre = PRE_CONTENT(l);
        /*
         * One buffer for a piece of the file: the header with the first chunk of ciphertext, then
         * further chunks, the tag with the last. Small enough to stay in cache and to be reused by
         * malloc without faulting in fresh pages, unlike a buffer for the whole file.
         */
        buf = malloc(pre + MIN(n, (size_t) CM_SEAL_CHUNK) + TAG_LEN);
        if (!buf)
                return -ENOMEM;
        memcpy(buf, SEAL_MAGIC, 4);
        buf[4] = SEAL_FORMAT;
        buf[5] = (uint8_t) l;
        buf[6] = buf[7] = 0;
        put_be64(buf + 8, version);
        put_be64(buf + 16, created_usec);
        put_be64(buf + 24, n);
        memcpy(buf + HDR_FIXED, kek->id, l);

        r = cm_random_bytes(dek, sizeof(dek));
        if (r < 0)
                goto out;
        r = cm_random_bytes(buf + pre - NONCE_LEN, NONCE_LEN);
        if (r < 0)
                goto out;
        r = wrap_dek(kek, owner, name, version, dek, buf);
        if (r < 0)
                goto out;
        r = content_aad(&aad, buf, owner, name);
        if (r < 0)
                goto out;
        ctx = EVP_CIPHER_CTX_new();
        if (!ctx) {
                r = -ENOMEM;
                goto out;
        }
        r = gcm_begin(ctx, false, dek, buf + pre - NONCE_LEN, &aad);
        cm_wipe(dek, sizeof(dek)); /* the context holds the key schedule from here on */
        if (r < 0)
                goto out;
        for (fill = pre;; fill = 0) {
                size_t c = MIN(n - off, (size_t) CM_SEAL_CHUNK);
                int len = 0;

                if (c > 0) {
                        if (EVP_CipherUpdate(ctx, buf + fill, &len, in + off, (int) c) != 1 ||
                            (size_t) len != c) {
                                r = -EIO;
                                goto out;
                        }
                        fill += c;
                        off += c;
                }
                if (off == n) {
                        if (EVP_CipherFinal_ex(ctx, buf + fill, &len) != 1 || len != 0 ||
                            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, buf + fill) != 1) {
                                r = -EIO;
                                goto out;
                        }
                        fill += TAG_LEN;
                }
                r = sink(userdata, buf, fill);
                if (r < 0)
                        goto out;
                if (off == n)
                        break;
        }
        if (ret_n)
                *ret_n = SEALED_LEN(l, n);
        r = 0;
out:
        cm_wipe(dek, sizeof(dek));
        EVP_CIPHER_CTX_free(ctx);
        free(buf);
        return r;
}

struct mem_sink {
        uint8_t *p;
        size_t len, size;
};

static int mem_sink_put(void *userdata, const void *buf, size_t n) {
        struct mem_sink *m = userdata;

        if (n > m->size - m->len)
                return -EIO;
        memcpy(m->p + m->len, buf, n);
        m->len += n;
        return 0;
}

int cm_vault_seal(const struct cm_keyring *kr, const char *owner, const char *name, uint64_t version,
                  uint64_t created_usec, const void *data, size_t n, uint8_t **ret, size_t *ret_n) {
        struct mem_sink m = {};
        int r;

        if (kr->n == 0 || n > SIZE_MAX / 2 - CM_SEALED_OVERHEAD_MAX)
                return -EINVAL;
        m.size = SEALED_LEN(strlen(kr->keys[0].id), n);
        m.p = malloc(m.size);
        if (!m.p)
                return -ENOMEM;
        r = cm_vault_seal_to(kr, owner, name, version, created_usec, data, n, mem_sink_put, &m, NULL);
        if (r >= 0 && m.len != m.size)
                r = -EIO;
        if (r < 0) {
                free(m.p);
                return r;
        }
        *ret = m.p;
        *ret_n = m.size;
        return 0;
}

/* Reads the part of a sealed file of blob_n bytes before its content into hdr and parses it. */
static int read_header(size_t blob_n, cm_vault_source_fn source, void *userdata,
                       uint8_t hdr[static PRE_CONTENT(CM_KEK_ID_MAX)], struct parsed *ret) {
        int r;

        if (blob_n < HDR_FIXED)
                return -EBADMSG;
        r = source(userdata, hdr, HDR_FIXED);
        if (r < 0)
                return r;
        /* a key id longer than the largest valid one, or no room for it: malformed (parse_header says so) */
        if (hdr[5] > CM_KEK_ID_MAX || blob_n < (size_t) PRE_CONTENT(hdr[5]))
                return parse_header(hdr, HDR_FIXED, blob_n, ret);
        r = source(userdata, hdr + HDR_FIXED, PRE_CONTENT(hdr[5]) - HDR_FIXED);
        if (r < 0)
                return r;
        return parse_header(hdr, PRE_CONTENT(hdr[5]), blob_n, ret);
}

int cm_vault_sealed_info_from(size_t blob_n, cm_vault_source_fn source, void *userdata,
                              struct cm_sealed_info *ret) {
        uint8_t hdr[PRE_CONTENT(CM_KEK_ID_MAX)];
        struct parsed p;
        int r;

        r = read_header(blob_n, source, userdata, hdr, &p);
        if (r < 0)
                return r;
        info_of(&p, ret);
        return 0;
}

int cm_vault_unseal_from(const struct cm_keyring *kr, const char *owner, const char *name, uint64_t version,
                         size_t blob_n, cm_vault_source_fn source, void *userdata, char **ret,
                         size_t *ret_n) {
        _cleanup_strbuf_ struct strbuf aad = STRBUF_INIT(1024);
        uint8_t hdr[PRE_CONTENT(CM_KEK_ID_MAX)], dek[DEK_LEN], tag[TAG_LEN];
        struct parsed p;
        char *out = NULL;
        int r;

        r = read_header(blob_n, source, userdata, hdr, &p);
        if (r < 0)
                return r;
        if (p.version != version)
                return -EBADMSG;
        r = unwrap_dek(kr, &p, owner, name, version, dek);
        if (r < 0)
                return r;
        r = content_aad(&aad, hdr, owner, name);
        if (r < 0)
                goto out;
        out = malloc((size_t) p.size + 1);
        if (!out) {
                r = -ENOMEM;
                goto out;
        }
        /* the ciphertext is read into the buffer handed over and decrypted in place */
        r = source(userdata, out, (size_t) p.size);
        if (r >= 0)
                r = source(userdata, tag, TAG_LEN);
        if (r >= 0)
                r = gcm(true, dek, p.nonce, &aad, (const uint8_t *) out, (size_t) p.size, (uint8_t *) out,
                        tag);
        if (r < 0) {
                cm_wipe(out, (size_t) p.size);
                free(out);
                goto out;
        }
        out[p.size] = 0;
        *ret = out;
        *ret_n = (size_t) p.size;
out:
        cm_wipe(dek, sizeof(dek));
        return r;
}

struct mem_source {
        const uint8_t *p;
        size_t left;
};

static int mem_source_get(void *userdata, void *buf, size_t n) {
        struct mem_source *m = userdata;

        if (n > m->left)
                return -EBADMSG;
        memcpy(buf, m->p, n);
        m->p += n;
        m->left -= n;
        return 0;
}

int cm_vault_unseal(const struct cm_keyring *kr, const char *owner, const char *name, uint64_t version,
                    const uint8_t *blob, size_t blob_n, char **ret, size_t *ret_n,
                    struct cm_sealed_info *ret_info) {
        struct mem_source m = { blob, blob_n };
        int r;

        r = cm_vault_unseal_from(kr, owner, name, version, blob_n, mem_source_get, &m, ret, ret_n);
        if (r >= 0 && ret_info && cm_vault_sealed_info(blob, blob_n, ret_info) < 0)
                memset(ret_info, 0, sizeof(*ret_info)); /* cannot happen: parsed already */
        return r;
}

int cm_vault_rewrap_sealed(const struct cm_keyring *kr, const char *owner, const char *name,
                           uint64_t version, const uint8_t *blob, size_t blob_n, uint8_t **ret,
                           size_t *ret_n) {
        const struct cm_kek *kek = &kr->keys[0];
        size_t l = strlen(kek->id), total;
        struct parsed p;
        uint8_t dek[DEK_LEN], *b;
        int r;

        r = parse_sealed(blob, blob_n, &p);
        if (r < 0)
                return r;
        if (p.version != version)
                return -EBADMSG;
        if (p.key_id_len == l && memcmp(p.key_id, kek->id, l) == 0)
                return 1;
        r = unwrap_dek(kr, &p, owner, name, version, dek);
        if (r < 0)
                return r;
        total = SEALED_LEN(l, (size_t) p.size);
        b = malloc(total);
        if (!b) {
                r = -ENOMEM;
                goto out;
        }
        memcpy(b, blob, HDR_FIXED);
        b[5] = (uint8_t) l;
        memcpy(b + HDR_FIXED, kek->id, l);
        r = wrap_dek(kek, owner, name, version, dek, b);
        if (r < 0) {
                free(b);
                goto out;
        }
        /* content nonce, ciphertext and tag unchanged: the content is never decrypted here */
        memcpy(b + PRE_CONTENT(l) - NONCE_LEN, p.nonce, NONCE_LEN + (size_t) p.size + TAG_LEN);
        *ret = b;
        *ret_n = total;
out:
        cm_wipe(dek, sizeof(dek));
        return r;
}
