/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <pthread.h>
#include <time.h>

#include "base/secret.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "monitor/tls.h"

/* A session larger than this (its ticket, the server's certificate) is not kept. */
#define SESSION_MAX (16 * 1024)
/*
 * A resumed session carries the server's certificate of the full handshake that began it (a server
 * that reloads its certificate without a restart keeps resuming), so a full handshake at least this
 * often reads the current one: its expiry is at most this old.
 */
#define SESSION_MAX_AGE_USEC (3600 * USEC_PER_SEC)

/*
 * Certificates are kept as DER, one after another, and decoded only for a full handshake: OpenSSL 3.0's
 * X509 is about 6.5 KiB decoded against well under 1 KiB of DER, and a resumed handshake needs neither
 * the anchors nor the client certificate. The key stays decoded (2.6 KiB; decoding one costs OpenSSL
 * 3.0 about ten times a certificate's time).
 */
struct cm_tls_identity {
        unsigned char *anchors; /* the kubeconfig's CA certificates */
        size_t anchors_len;
        unsigned char *certs; /* the client certificate, then any chain behind it; NULL without one */
        size_t certs_len;
        EVP_PKEY *key;
        /*
         * The last TLS session the server gave (DER, i2d_SSL_SESSION: its resumption secret, ticket
         * and the server's certificate), offered by the next connection. Wiped when dropped.
         */
        unsigned char *session;
        size_t session_len;
        char *name; /* the server name the connections were made for: a session is for that name only */
        uint64_t verified_at; /* monotonic time of the last full handshake */
        int64_t cert_not_after; /* the server certificate's expiry seen in the last full handshake */
        uint64_t session_max_age; /* usec after verified_at the session is no longer offered */
        unsigned handshakes_full, handshakes_resumed;
};

static int ssl_index = -1;
static pthread_once_t ssl_index_once = PTHREAD_ONCE_INIT;

static void ssl_index_init(void) {
        ssl_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static struct cm_tls_identity *identity_of_ssl(const SSL *ssl) {
        return ssl && ssl_index >= 0 ? SSL_get_ex_data(ssl, ssl_index) : NULL;
}

static void bio_freep(BIO **b) {
        BIO_free(*b);
}

static void certs_free(X509 **certs, size_t n) {
        for (size_t i = 0; i < n; i++)
                X509_free(certs[i]);
        free(certs);
}

static int tls_fail(char *error, size_t size, const char *why) {
        ERR_clear_error(); /* nothing of OpenSSL's error queue may reach the next user of this thread */
        if (error && size > 0)
                (void) cm_strlcpy(error, why, size);
        return -EINVAL;
}

/* Never prompts for a passphrase: an encrypted key does not decode. */
static int no_passphrase(char *buf, int size, int rwflag, void *userdata) {
        (void) buf;
        (void) size;
        (void) rwflag;
        (void) userdata;
        return -1;
}

/* Decodes every PEM certificate of a bundle: 0 (at least one), -EINVAL, -ENOMEM. */
static int read_certs(const char *pem, size_t len, X509 ***ret, size_t *ret_n) {
        _cleanup_(bio_freep) BIO *bio = NULL;
        X509 **certs = NULL;
        size_t n = 0;

        if (len == 0 || len > INT_MAX)
                return -EINVAL;
        bio = BIO_new_mem_buf(pem, (int) len);
        if (!bio)
                return -ENOMEM;
        for (;;) {
                X509 *x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
                X509 **more;

                if (!x) {
                        unsigned long e = ERR_peek_last_error();

                        /* The end of the bundle is the absence of a further BEGIN line. */
                        if (n > 0 && ERR_GET_LIB(e) == ERR_LIB_PEM &&
                            ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
                                break;
                        certs_free(certs, n);
                        return -EINVAL;
                }
                more = reallocarray(certs, n + 1, sizeof(*certs));
                if (!more) {
                        X509_free(x);
                        certs_free(certs, n);
                        return -ENOMEM;
                }
                certs = more;
                certs[n++] = x;
        }
        ERR_clear_error();
        *ret = certs;
        *ret_n = n;
        return 0;
}

/* Encodes certificates as DER one after another. 0 or -ENOMEM (or -EINVAL: one does not encode). */
static int certs_der(X509 *const *certs, size_t n, unsigned char **ret, size_t *ret_len) {
        unsigned char *der, *p;
        size_t len = 0;

        for (size_t i = 0; i < n; i++) {
                int k = i2d_X509(certs[i], NULL);

                if (k <= 0)
                        return -EINVAL;
                len += (size_t) k;
        }
        der = malloc(MAX(len, 1u));
        if (!der)
                return -ENOMEM;
        p = der;
        for (size_t i = 0; i < n; i++)
                if (i2d_X509(certs[i], &p) <= 0) {
                        free(der);
                        return -EINVAL;
                }
        *ret = der;
        *ret_len = len;
        return 0;
}

/* Decodes DER certificates kept by certs_der() into a new stack; NULL when out of memory. */
static STACK_OF(X509) * certs_decode(const unsigned char *der, size_t len) {
        STACK_OF(X509) *sk = sk_X509_new_null();
        const unsigned char *p = der, *end = der + len;

        while (sk && p < end) {
                X509 *x = d2i_X509(NULL, &p, end - p);

                if (!x || !sk_X509_push(sk, x)) {
                        X509_free(x);
                        sk_X509_pop_free(sk, X509_free);
                        sk = NULL;
                }
        }
        ERR_clear_error();
        return sk;
}

struct cm_tls_identity *cm_tls_identity_free(struct cm_tls_identity *id) {
        if (!id)
                return NULL;
        free(id->anchors);
        free(id->certs);
        EVP_PKEY_free(id->key);
        cm_tls_identity_forget_session(id);
        free(id->name);
        free(id);
        return NULL;
}

void cm_tls_identity_forget_session(struct cm_tls_identity *id) {
        if (!id || !id->session)
                return;
        cm_wipe(id->session, id->session_len);
        free(id->session);
        id->session = NULL;
        id->session_len = 0;
}

void cm_tls_identity_set_session_max_age(struct cm_tls_identity *id, uint64_t usec) {
        id->session_max_age = usec;
}

bool cm_tls_identity_has_session(const struct cm_tls_identity *id) {
        return id && id->session;
}

void cm_tls_identity_take_handshakes(struct cm_tls_identity *id, unsigned *ret_full, unsigned *ret_resumed) {
        *ret_full = id ? id->handshakes_full : 0;
        *ret_resumed = id ? id->handshakes_resumed : 0;
        if (id)
                id->handshakes_full = id->handshakes_resumed = 0;
}

static int identity_trust(struct cm_tls_identity *id, const struct cm_kubeconfig *kc, char *error,
                          size_t size) {
        X509 **certs = NULL;
        size_t n = 0;
        int r;

        r = read_certs(kc->ca_pem, kc->ca_len, &certs, &n);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return tls_fail(error, size,
                                "certificate-authority-data holds no PEM certificate that decodes");
        r = certs_der(certs, n, &id->anchors, &id->anchors_len);
        certs_free(certs, n);
        if (r == -EINVAL)
                return tls_fail(error, size,
                                "certificate-authority-data holds a certificate that does not encode");
        return r;
}

static int identity_client(struct cm_tls_identity *id, const struct cm_kubeconfig *kc, char *error,
                           size_t size) {
        _cleanup_(bio_freep) BIO *bio = NULL;
        X509 **certs = NULL;
        size_t n = 0;
        int r;

        r = read_certs(kc->cert_pem, kc->cert_len, &certs, &n);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return tls_fail(error, size,
                                "client-certificate-data holds no PEM certificate that decodes");
        if (kc->key_len == 0 || kc->key_len > INT_MAX) {
                certs_free(certs, n);
                return tls_fail(error, size, "client-key-data is empty or too large");
        }
        bio = BIO_new_mem_buf(kc->key_pem, (int) kc->key_len);
        if (!bio) {
                certs_free(certs, n);
                return -ENOMEM;
        }
        id->key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
        if (!id->key) {
                certs_free(certs, n);
                return tls_fail(
                        error, size,
                        "client-key-data holds no PEM private key that decodes (an encrypted key is not "
                        "supported)");
        }
        if (X509_check_private_key(certs[0], id->key) != 1) {
                certs_free(certs, n);
                return tls_fail(error, size, "client-key-data does not match client-certificate-data");
        }
        r = certs_der(certs, n, &id->certs, &id->certs_len);
        certs_free(certs, n);
        if (r == -EINVAL)
                return tls_fail(error, size,
                                "client-certificate-data holds a certificate that does not encode");
        ERR_clear_error();
        return r;
}

int cm_tls_identity_new(const struct cm_kubeconfig *kc, struct cm_tls_identity **ret, char *error,
                        size_t error_size) {
        _cleanup_(cm_tls_identity_freep) struct cm_tls_identity *id = NULL;
        int r;

        id = new0(struct cm_tls_identity, 1);
        if (!id)
                return -ENOMEM;
        id->session_max_age = SESSION_MAX_AGE_USEC;
        r = identity_trust(id, kc, error, error_size);
        if (r < 0)
                return r;
        if (kc->cert_pem) {
                r = identity_client(id, kc, error, error_size);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(id);
        return 0;
}

bool cm_tls_identity_has_client_cert(const struct cm_tls_identity *id) {
        return id && id->certs;
}

/*
 * Verifies the server's chain against the identity's anchors only. libssl calls this instead of its
 * own X509_verify_cert() on a store context set up with the connection's verify parameters (the host
 * name or address attach() set) and the shared context's store, which is empty: the trusted stack
 * replaces that store for the lookups of issuers. The outcome decides the handshake (SSL_VERIFY_PEER).
 */
static int verify_chain(X509_STORE_CTX *x, void *userdata) {
        const SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
        const struct cm_tls_identity *id = identity_of_ssl(ssl);
        STACK_OF(X509) * anchors;
        int r;
        (void) userdata;

        if (!id) {
                /* A connection without an identity trusts nothing. */
                X509_STORE_CTX_set_error(x, X509_V_ERR_UNSPECIFIED);
                return 0;
        }
        anchors = certs_decode(id->anchors, id->anchors_len);
        if (!anchors) {
                X509_STORE_CTX_set_error(x, X509_V_ERR_OUT_OF_MEM);
                return 0;
        }
        X509_STORE_CTX_set0_trusted_stack(x, anchors);
        /* A CA of the bundle is an anchor even when it is an intermediate (as kubectl and libcurl do). */
        X509_STORE_CTX_set_flags(x, X509_V_FLAG_PARTIAL_CHAIN | X509_V_FLAG_TRUSTED_FIRST);
        r = X509_verify_cert(x);
        /* The verified chain libssl keeps holds its own references to the certificates. */
        X509_STORE_CTX_set0_trusted_stack(x, NULL);
        sk_X509_pop_free(anchors, X509_free);
        return r;
}

/*
 * The client certificate, when the server asks for one (a full handshake; a resumed one is
 * authenticated by the session): decoded onto the connection's SSL, with the key. 1, or 0 to abort.
 */
static int client_cert(SSL *ssl, void *userdata) {
        const struct cm_tls_identity *id = identity_of_ssl(ssl);
        STACK_OF(X509) * certs;
        bool ok;
        (void) userdata;

        if (!id)
                return 0;
        if (!id->certs)
                return 1; /* a token kubeconfig: no certificate to offer */
        certs = certs_decode(id->certs, id->certs_len);
        ok = certs && sk_X509_num(certs) > 0 && SSL_use_certificate(ssl, sk_X509_value(certs, 0)) == 1 &&
             SSL_use_PrivateKey(ssl, id->key) == 1;
        for (int i = 1; ok && i < sk_X509_num(certs); i++)
                ok = SSL_add1_chain_cert(ssl, sk_X509_value(certs, i)) == 1;
        sk_X509_pop_free(certs, X509_free);
        ERR_clear_error();
        return ok ? 1 : 0;
}

/* Reads a DER length at *p (at most 4 bytes of long form); false when malformed or past end. */
static bool der_length(const unsigned char **p, const unsigned char *end, size_t *ret) {
        size_t n = 0, k;

        if (*p >= end)
                return false;
        if (**p < 0x80) {
                *ret = *(*p)++;
                return true;
        }
        k = *(*p)++ & 0x7fU;
        if (k == 0 || k > 4 || (size_t) (end - *p) < k)
                return false;
        while (k-- > 0)
                n = n << 8 | *(*p)++;
        *ret = n;
        return true;
}

/*
 * Drops the server's certificate ([3] peer, OPTIONAL in OpenSSL's SSL_SESSION encoding) from a
 * serialized session: decoding it back for every resumed connection was a certificate decode each
 * time (about 0.14 ms and 6.5 KiB held while the connection lives), for a certificate a resumed
 * connection neither checks nor sends. The session's secret and ticket stay; its expiry is kept by
 * the identity from the full handshake. Returns the new length (the DER is rewritten in place), or 0
 * when the encoding is not the one expected (the DER may then be half rewritten: the caller keeps no
 * session, and the next connection makes a full handshake).
 */
static size_t session_strip_peer(unsigned char *der, size_t len) {
        const unsigned char *p = der, *end = der + len, *body;
        unsigned char *out;
        size_t n, hdr, kept = 0;

        if (len < 2 || *p++ != 0x30 || !der_length(&p, end, &n) || n != (size_t) (end - p))
                return 0;
        body = p;
        hdr = (size_t) (body - der);
        out = der + hdr;
        while (p < end) {
                const unsigned char *el = p;
                unsigned char tag = *p++;
                size_t el_len;

                if ((tag & 0x1fU) == 0x1fU || !der_length(&p, end, &el_len) || el_len > (size_t) (end - p))
                        return 0;
                p += el_len;
                if (tag == 0xa3)
                        continue; /* [3] EXPLICIT peer */
                memmove(out + kept, el, (size_t) (p - el));
                kept += (size_t) (p - el);
        }
        if (kept == n)
                return len;
        /* The new body is shorter: a header of the same form or a shorter one, then the body. */
        {
                unsigned char h[6];
                size_t hl = 0;

                h[hl++] = 0x30;
                if (kept < 0x80)
                        h[hl++] = (unsigned char) kept;
                else if (kept < 0x100) {
                        h[hl++] = 0x81;
                        h[hl++] = (unsigned char) kept;
                } else if (kept < 0x10000) {
                        h[hl++] = 0x82;
                        h[hl++] = (unsigned char) (kept >> 8);
                        h[hl++] = (unsigned char) kept;
                } else
                        return 0;
                if (hl > hdr)
                        return 0;
                memmove(der + hl, der + hdr, kept);
                memcpy(der, h, hl);
                return hl + kept;
        }
}

/*
 * A session the server gave (with TLS 1.3 after the handshake, while the answer is read): kept
 * serialized without the server's certificate, replacing the previous one. Returns 0: OpenSSL keeps no
 * reference for us.
 */
static int session_new(SSL *ssl, SSL_SESSION *sess) {
        struct cm_tls_identity *id = identity_of_ssl(ssl);
        unsigned char *der, *p;
        const unsigned char *q;
        SSL_SESSION *check;
        size_t len;
        int n;

        if (!id || !SSL_SESSION_is_resumable(sess))
                return 0;
        n = i2d_SSL_SESSION(sess, NULL);
        if (n <= 0 || n > SESSION_MAX) {
                ERR_clear_error();
                return 0;
        }
        der = malloc((size_t) n);
        if (!der)
                return 0;
        p = der;
        if (i2d_SSL_SESSION(sess, &p) != n) {
                cm_wipe(der, (size_t) n);
                free(der);
                ERR_clear_error();
                return 0;
        }
        len = session_strip_peer(der, (size_t) n);
        /* What is kept must decode: a session that does not is never offered. */
        q = der;
        check = len > 0 ? d2i_SSL_SESSION(NULL, &q, (long) len) : NULL;
        if (!check || q != der + len) {
                SSL_SESSION_free(check);
                cm_wipe(der, (size_t) n);
                free(der);
                ERR_clear_error();
                return 0;
        }
        SSL_SESSION_free(check);
        cm_tls_identity_forget_session(id);
        id->session = der;
        id->session_len = len;
        return 0;
}

/* Counts each finished handshake; a full one also records when and the server certificate's expiry. */
static void handshake_info(const SSL *ssl, int where, int ret) {
        struct cm_tls_identity *id;
        (void) ret;

        if (SSL_is_server(ssl) || !(where & SSL_CB_HANDSHAKE_DONE))
                return;
        id = identity_of_ssl(ssl);
        if (!id)
                return;
        if (SSL_session_reused(ssl)) {
                id->handshakes_resumed++;
                return;
        }
        id->handshakes_full++;
        id->verified_at = cm_mono_usec();
        {
                X509 *peer = SSL_get0_peer_certificate(ssl);
                struct tm tm = {};

                if (peer && ASN1_TIME_to_tm(X509_get0_notAfter(peer), &tm) == 1)
                        id->cert_not_after = (int64_t) timegm(&tm);
        }
}

SSL_CTX *cm_tls_client_ctx_new(void) {
        SSL_CTX *ctx;

        if (pthread_once(&ssl_index_once, ssl_index_init) != 0 || ssl_index < 0)
                return NULL;
        ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx)
                goto fail;
        if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
                goto fail;
        /* Every chain is checked by verify_chain() against its connection's identity: no default store. */
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_cert_verify_callback(ctx, verify_chain, NULL);
        SSL_CTX_set_cert_cb(ctx, client_cert, NULL);
        /* A request is written again from wherever its buffer is after a partial write. */
        (void) SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        /* Sessions go to the identity only (no cache inside OpenSSL). */
        (void) SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
        SSL_CTX_sess_set_new_cb(ctx, session_new);
        SSL_CTX_set_info_callback(ctx, handshake_info);
        return ctx;
fail:
        SSL_CTX_free(ctx);
        ERR_clear_error();
        return NULL;
}

int cm_tls_identity_attach(struct cm_tls_identity *id, SSL *ssl, const char *name, bool kept_idle) {
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        unsigned char ip[16];
        bool literal;

        if (!id || !ssl || isempty(name) || ssl_index < 0)
                return -EINVAL;
        literal = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
        if (SSL_set_ex_data(ssl, ssl_index, id) != 1)
                goto fail;
        /* The server's certificate must name the address (an IP SAN) or the host (SNI and a DNS SAN). */
        if (literal) {
                if (X509_VERIFY_PARAM_set1_ip_asc(param, name) != 1)
                        goto fail;
        } else if (SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                            (void *) (uintptr_t) name) !=
                           1 || /* SSL_set_tlsext_host_name, without its cast */
                   SSL_set1_host(ssl, name) != 1)
                goto fail;
        /* As Kubernetes' own clients: a name is matched against the DNS names only, never the CN. */
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT | X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        /*
         * A connection kept idle between probes holds no read or write buffer meanwhile (about 34 KiB).
         * One that lives for one probe keeps them: releasing and allocating them around every record
         * costs malloc time for nothing.
         */
        if (kept_idle)
                (void) SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
        if (!id->name || !streq(id->name, name)) {
                char *copy = strdup(name);

                if (!copy)
                        goto fail;
                free(id->name);
                id->name = copy;
                cm_tls_identity_forget_session(id);
        }
        if (id->session && cm_mono_usec() - id->verified_at >= id->session_max_age)
                cm_tls_identity_forget_session(id);
        if (id->session) {
                const unsigned char *p = id->session;
                SSL_SESSION *sess = d2i_SSL_SESSION(NULL, &p, (long) id->session_len);

                /* A server that no longer knows it answers with a full handshake (verified as always). */
                if (!sess || SSL_set_session(ssl, sess) != 1)
                        cm_tls_identity_forget_session(id);
                SSL_SESSION_free(sess);
        }
        ERR_clear_error();
        return 0;
fail:
        ERR_clear_error();
        return -EIO;
}

int64_t cm_tls_identity_cert_not_after(const struct cm_tls_identity *id) {
        return id ? id->cert_not_after : 0;
}
