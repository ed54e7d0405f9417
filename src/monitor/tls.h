/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <openssl/ssl.h>

#include "base/common.h"
#include "monitor/health.h"

/*
 * A cluster's TLS material, checked and decoded from PEM once: the trust anchors of its kubeconfig (its
 * CA certificates), the client certificate (with any chain behind it) and the private key. Every probe
 * connection shares one client context (cm_tls_client_ctx_new); the identity is attached to each
 * connection's SSL, and the context's callbacks find it there. Certificates are held as DER and decoded
 * only when a full handshake needs them: the anchors to verify the server's chain, the client
 * certificate when the server asks for one.
 *
 * The key lives in OpenSSL's EVP_PKEY, which clears its private parts when freed.
 *
 * It also keeps the cluster's last TLS session, so that the next connection resumes it (TLS 1.3 PSK with
 * a fresh ECDHE, or a TLS 1.2 ticket or session ID) instead of a full handshake: no certificate is
 * decoded, verified or signed on either side. The server authenticates the client from the session
 * it issued after the full handshake (kube-apiserver keeps the client's certificate in its ticket).
 * The kept session leaves the server's certificate out (a resumed connection neither sends nor checks
 * one); its expiry, read in the full handshake, is kept beside it.
 * Sessions are never shared between identities, so one cluster record never resumes another's. An
 * identity is used by one thread at a time (the prober's).
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
 * The client context every probe connection shares: TLS 1.2 or later; the server's chain verified
 * against the anchors of the identity attached to the connection only (the context's own store stays
 * empty; a connection without an identity trusts nothing); the client certificate and key set from the
 * identity when the server asks; sessions handed to the identity. NULL when out of memory.
 */
SSL_CTX *cm_tls_client_ctx_new(void);

/*
 * Sets a new connection of that context up for the identity: name is the server's host name (sent as
 * SNI, checked against the certificate's DNS names) or its IP address (checked against its IP
 * addresses); the identity's session is offered. kept_idle: the connection is kept idle between uses,
 * so it releases its read and write buffers whenever they are empty. The identity must outlive the
 * SSL. 0, -EINVAL or -EIO.
 */
int cm_tls_identity_attach(struct cm_tls_identity *id, SSL *ssl, const char *name, bool kept_idle);

/* The serving certificate's expiry (unix seconds) seen in the last full handshake; 0 before one. */
int64_t cm_tls_identity_cert_not_after(const struct cm_tls_identity *id);

/* Drops (wipes) the kept session: the next connection makes a full handshake. Accepts NULL. */
void cm_tls_identity_forget_session(struct cm_tls_identity *id);
bool cm_tls_identity_has_session(const struct cm_tls_identity *id);
/*
 * A session is offered for at most this long after the full handshake that began it (default one hour):
 * then a full handshake verifies the server's current certificate (a server that reloads it without
 * restarting would otherwise keep resuming with the old one, whose expiry the probe reports).
 */
void cm_tls_identity_set_session_max_age(struct cm_tls_identity *id, uint64_t usec);

/* The handshakes completed since the last call (full, resumed), then resets both counts. */
void cm_tls_identity_take_handshakes(struct cm_tls_identity *id, unsigned *ret_full, unsigned *ret_resumed);
