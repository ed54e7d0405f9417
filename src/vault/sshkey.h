/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"

/*
 * SSH key material for the keys the vault stores (engines log in to nodes with them): reading a
 * private key to check it and derive its public key, and generating ed25519 keys. Private keys are
 * untrusted input here; every buffer that held key material is wiped.
 *
 * Accepted private keys: OpenSSH format ("-----BEGIN OPENSSH PRIVATE KEY-----", unencrypted) and PEM
 * (PKCS#8 "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY") of type ed25519, RSA (2048 bits or
 * more) or ECDSA P-256/P-384/P-521.
 */

#define CM_SSHKEY_PRIVATE_MAX (16U * 1024U)
/* "SHA256:" + 43 characters of unpadded base64. */
#define CM_SSHKEY_FP_LEN 50

/*
 * Checks a private key and derives its public key in OpenSSH form ("ssh-ed25519 AAAA...", no
 * comment; malloc'd) and its fingerprint ("SHA256:..." as `ssh-keygen -l` prints it).
 * -EINVAL not a readable private key, -EACCES protected by a passphrase, -EOPNOTSUPP a key type or
 * size not accepted. Error paths never quote the key.
 */
_warn_unused_result_ int cm_sshkey_parse_private(const char *text, size_t n, char **ret_public,
                                                 char ret_fingerprint[static CM_SSHKEY_FP_LEN + 1]);

/*
 * Generates an ed25519 key pair: the private key as PEM (PKCS#8; a secret buffer: wipe and free
 * with cm_erase_and_free), the public key and fingerprint as above.
 */
_warn_unused_result_ int cm_sshkey_generate_ed25519(char **ret_private, size_t *ret_private_n,
                                                    char **ret_public,
                                                    char ret_fingerprint[static CM_SSHKEY_FP_LEN + 1]);

/* True when two OpenSSH public keys have the same type and key (comments ignored). */
bool cm_sshkey_public_equal(const char *a, const char *b);
