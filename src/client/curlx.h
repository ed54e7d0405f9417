/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <curl/curl.h>

#include "base/common.h"

/* What the libcurl users of the service (the CLI's client, the policy service, OIDC) share. */

/* Appends a copy of line to *list; on failure the list is left as it was. -ENOMEM. */
int cm_curl_slist_add(struct curl_slist **list, const char *line);
/* Wipes every line (one may carry a token) before freeing the list; accepts NULL. */
void cm_curl_slist_free_wiped(struct curl_slist *list);
/* True for the failures of TLS: the handshake, the peer's certificate, the CA file. */
bool cm_curl_code_is_tls(CURLcode cc);
