/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <openssl/ssl.h>

#include "base/common.h"
#include "monitor/health.h"

/*
 * A cluster's TLS material, decoded once: the trust anchors of its kubeconfig (its CA certificates), the
 * client certificate (with any chain behind it) and the private key. The prober installs it into
 * every new connection's SSL_CTX from libcurl's CURLOPT_SSL_CTX_FUNCTION (taking references, no
 * copies), instead of handing libcurl PEM blobs that OpenSSL 3.0 would decode again for every
 * connection (its decoder framework made that most of the monitor's CPU).
 *
 * The key lives in OpenSSL's EVP_PKEY, which clears its private parts when freed.
 */
struct cm_tls_identity;

/*
 * Decodes kc's CA bundle (at least one certificate; each one a trust anchor), and its client
 * certificate and key when it has them (the key must match the certificate; encrypted keys are refused).
 * Returns 0; -EINVAL with a reason in error (never quoting the input) when something does not decode;
 * -ENOMEM. error may be NULL; *ret is written on success only.
 */
_warn_unused_result_ int cm_tls_identity_new(const struct cm_kubeconfig *kc, struct cm_tls_identity **ret,
                                             char *error, size_t error_size);
/* Accepts NULL; returns NULL. */
struct cm_tls_identity *cm_tls_identity_free(struct cm_tls_identity *id);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct cm_tls_identity *, cm_tls_identity_free);

/* Whether the identity carries a client certificate. */
bool cm_tls_identity_has_client_cert(const struct cm_tls_identity *id);

/*
 * Installs the identity into a connection's TLS context: the server's chain is verified against the
 * identity's anchors only (a verify callback that ignores the context's X509_STORE, whatever libcurl
 * loads into it), the client certificate, chain and key are set, and idle connections release their
 * read and write buffers. The identity must outlive the context. 0 or -EIO.
 */
int cm_tls_identity_install(const struct cm_tls_identity *id, SSL_CTX *ctx);
