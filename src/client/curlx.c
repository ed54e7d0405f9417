/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "base/secret.h"
#include "client/curlx.h"

int cm_curl_slist_add(struct curl_slist **list, const char *line) {
        struct curl_slist *l = curl_slist_append(*list, line);

        if (!l)
                return -ENOMEM;
        *list = l;
        return 0;
}

void cm_curl_slist_free_wiped(struct curl_slist *list) {
        for (struct curl_slist *l = list; l; l = l->next)
                if (l->data)
                        cm_wipe(l->data, strlen(l->data));
        curl_slist_free_all(list);
}

bool cm_curl_code_is_tls(CURLcode cc) {
        switch (cc) {
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_ENGINE_NOTFOUND:
        case CURLE_SSL_ENGINE_SETFAILED:
        case CURLE_SSL_ENGINE_INITFAILED:
        case CURLE_USE_SSL_FAILED:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_CRL_BADFILE:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
        case CURLE_SSL_SHUTDOWN_FAILED:
                return true;
        default:
                return false;
        }
}
