/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "base/strbuf.h"
#include "monitor/tls.h"

struct cm_tls_identity {
        STACK_OF(X509) * anchors; /* the kubeconfig's CA certificates */
        X509 *cert; /* NULL without a client certificate */
        STACK_OF(X509) * chain; /* the certificates after the first in client-certificate-data */
        EVP_PKEY *key;
};

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

struct cm_tls_identity *cm_tls_identity_free(struct cm_tls_identity *id) {
        if (!id)
                return NULL;
        sk_X509_pop_free(id->anchors, X509_free);
        X509_free(id->cert);
        sk_X509_pop_free(id->chain, X509_free);
        EVP_PKEY_free(id->key);
        free(id);
        return NULL;
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
        id->anchors = sk_X509_new_null();
        if (!id->anchors) {
                certs_free(certs, n);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                if (!sk_X509_push(id->anchors, certs[i])) {
                        certs_free(certs + i, n - i);
                        free(certs);
                        return -ENOMEM;
                }
        free(certs);
        return 0;
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
        id->cert = certs[0];
        id->chain = sk_X509_new_null();
        if (!id->chain) {
                certs[0] = NULL;
                certs_free(certs, n);
                return -ENOMEM;
        }
        for (size_t i = 1; i < n; i++) {
                if (!sk_X509_push(id->chain, certs[i])) {
                        certs[0] = NULL;
                        certs_free(certs + i, n - i);
                        free(certs);
                        return -ENOMEM;
                }
        }
        free(certs);

        if (kc->key_len == 0 || kc->key_len > INT_MAX)
                return tls_fail(error, size, "client-key-data is empty or too large");
        bio = BIO_new_mem_buf(kc->key_pem, (int) kc->key_len);
        if (!bio)
                return -ENOMEM;
        id->key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
        if (!id->key)
                return tls_fail(
                        error, size,
                        "client-key-data holds no PEM private key that decodes (an encrypted key is not "
                        "supported)");
        if (X509_check_private_key(id->cert, id->key) != 1)
                return tls_fail(error, size, "client-key-data does not match client-certificate-data");
        ERR_clear_error();
        return 0;
}

int cm_tls_identity_new(const struct cm_kubeconfig *kc, struct cm_tls_identity **ret, char *error,
                        size_t error_size) {
        _cleanup_(cm_tls_identity_freep) struct cm_tls_identity *id = NULL;
        int r;

        id = new0(struct cm_tls_identity, 1);
        if (!id)
                return -ENOMEM;
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
        return id && id->cert;
}

/*
 * Verifies the server's chain against the identity's anchors only. libssl calls this instead of its
 * own X509_verify_cert() on a store context set up with the SSL_CTX's store; the trusted stack replaces
 * that store for the lookups of issuers, so whatever libcurl puts into the context's store (it
 * populates it after CURLOPT_SSL_CTX_FUNCTION ran, and may share one store between connections) is
 * never trusted. The outcome is the verify result libcurl checks.
 */
static int verify_chain(X509_STORE_CTX *x, void *userdata) {
        const struct cm_tls_identity *id = userdata;

        X509_STORE_CTX_set0_trusted_stack(x, id->anchors);
        /* As libcurl sets it: a CA of the bundle is an anchor even when it is an intermediate. */
        X509_STORE_CTX_set_flags(x, X509_V_FLAG_PARTIAL_CHAIN | X509_V_FLAG_TRUSTED_FIRST);
        return X509_verify_cert(x);
}

int cm_tls_identity_install(const struct cm_tls_identity *id, SSL_CTX *ctx) {
        if (!id || !ctx)
                return -EINVAL;
        /* The identity outlives the connection: the target frees it only once no probe runs. */
        SSL_CTX_set_cert_verify_callback(ctx, verify_chain, (void *) (uintptr_t) id);
        if (id->cert) {
                if (SSL_CTX_use_certificate(ctx, id->cert) != 1 || SSL_CTX_use_PrivateKey(ctx, id->key) != 1)
                        goto fail;
                for (int i = 0; i < sk_X509_num(id->chain); i++)
                        if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(id->chain, i)) != 1)
                                goto fail;
        }
        /* A kept connection holds no read or write buffer while it is idle (about 34 KiB). */
        (void) SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
        return 0;
fail:
        ERR_clear_error();
        return -EIO;
}
