/* SPDX-License-Identifier: Apache-2.0 */
/* Kubeconfigs from the vault, read by the monitor before it probes a cluster. */
#include "base/common.h"

#include "monitor/conn.h"
#include "monitor/health.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct cm_kubeconfig k = {};
        struct cm_endpoint e;
        char error[256] = "";
        int r;

        r = cm_kubeconfig_parse((const char *) data, size, &k, error, sizeof(error));
        if (r < 0) {
                /* Every refusal says why, and nothing is handed out. */
                if (error[0] == 0 || k.server || k.ca_pem || k.key_pem || k.token)
                        __builtin_trap();
                return 0;
        }
        /* What a probe relies on. */
        if (!k.server || strncasecmp(k.server, "https://", 8) != 0 || endswith(k.server, "/") ||
            strlen(k.server) < 9)
                __builtin_trap();
        if (!k.ca_pem || strlen(k.ca_pem) != k.ca_len || k.ca_len == 0)
                __builtin_trap();
        if (!k.cert_pem == !k.token || !k.cert_pem != !k.key_pem)
                __builtin_trap();
        if (k.cert_pem && (strlen(k.cert_pem) != k.cert_len || strlen(k.key_pem) != k.key_len))
                __builtin_trap();
        if (k.token && (k.token[0] == 0 || strpbrk(k.token, " \r\n\t")))
                __builtin_trap();
        /* The server as the probes' client splits it: every accepted server splits, within bounds. */
        if (cm_endpoint_parse(k.server, &e) < 0)
                __builtin_trap();
        if (e.host[0] == 0 || e.port == 0 || strpbrk(e.authority, " \r\n") || strpbrk(e.prefix, " \r\n?#") ||
            (e.prefix[0] && e.prefix[0] != '/') || endswith(e.prefix, "/"))
                __builtin_trap();
        cm_kubeconfig_done(&k);
        if (k.server || k.ca_pem || k.cert_pem || k.key_pem || k.token || k.tls_server_name)
                __builtin_trap();
        return 0;
}
