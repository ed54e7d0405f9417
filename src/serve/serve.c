/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include "addons/reconciler.h"
#include "auth/oidc.h"
#include "base/fileio.h"
#include "base/log.h"
#include "base/parse.h"
#include "base/secret.h"
#include "base/util.h"
#include "engine/engine.h"
#include "engine/local/local.h"
#include "engine/rke/rke.h"
#include "lifecycle/service.h"
#include "monitor/monitor.h"
#include "monitor/webhooks.h"
#include "serve/serve.h"
#include "server/server.h"
#include "policy/remote.h"
#include "store/store.h"
#include "vault/crypto.h"
#include "vault/vault.h"

struct serve_options {
        const char *listen;
        const char *data_dir;
        const char *database;
        unsigned workers;
        unsigned http_threads;
        unsigned lease_seconds;
        unsigned max_attempts;
        unsigned retry_base_ms;
        unsigned retry_max_seconds;
        unsigned shutdown_grace_seconds;
        unsigned poll_ms;
        const char *log_level;
        const char *state_dir;
        const char *vault_key_file;
        unsigned state_retention_days;
        const char *localk8s_path;
        const char *rke_path;
        const char *helm_path;
        const char *policy_url;
        const char *policy_token_file;
        const char *policy_ca_file;
        unsigned policy_timeout_ms;
        const char *policy_failure_mode;
        unsigned policy_recheck_seconds;
        const char *oidc_issuer;
        const char *oidc_audience;
        const char *oidc_ca_file;
        const char *oidc_groups_claim;
        unsigned oidc_max_token_age_seconds;
        unsigned auth_failure_limit;
        const char *tls_cert;
        const char *tls_key;
        bool insecure_allow_plain_http;
        unsigned monitor_interval_seconds;
        unsigned monitor_concurrency;
        unsigned monitor_timeout_ms;
        unsigned monitor_threshold;
        unsigned monitor_keep_alive_max;
        bool no_monitor;
        unsigned max_connections;
        unsigned max_connections_per_ip;
        unsigned idle_timeout_seconds;
        unsigned request_timeout_seconds;
        unsigned max_body_bytes;
        unsigned rate_limit;
        unsigned rate_burst;
};

static void serve_usage(FILE *f) {
        fputs("usage: clustermgmt serve [options]\n"
              "\n"
              "Runs the service: HTTP API, operation workers. Every option has an environment twin.\n"
              "\n"
              "  --listen ADDR:PORT          CLUSTERMGMT_LISTEN       default 127.0.0.1:8080\n"
              "  --data-dir DIR              CLUSTERMGMT_DATA_DIR     default ./data\n"
              "  --database URL              CLUSTERMGMT_DATABASE     default "
              "sqlite:<data-dir>/clustermgmt.db\n"
              "  --workers N                 CLUSTERMGMT_WORKERS      operation worker threads, default 4\n"
              "  --http-threads N            CLUSTERMGMT_HTTP_THREADS default: number of CPUs (2-16)\n"
              "  --lease-seconds N           CLUSTERMGMT_LEASE_SECONDS  operation lease, default 30\n"
              "  --max-attempts N            CLUSTERMGMT_MAX_ATTEMPTS   per operation, default 5\n"
              "  --retry-base-ms N           CLUSTERMGMT_RETRY_BASE_MS  first retry delay, default 2000\n"
              "  --retry-max-seconds N       CLUSTERMGMT_RETRY_MAX_SECONDS  longest retry delay, default "
              "300\n"
              "  --shutdown-grace-seconds N  CLUSTERMGMT_SHUTDOWN_GRACE_SECONDS  default 10\n"
              "  --poll-ms N                 CLUSTERMGMT_POLL_MS      idle workers look for work, default "
              "1000\n"
              "  --state-dir DIR             CLUSTERMGMT_STATE_DIR    state vault, default "
              "<data-dir>/state\n"
              "  --vault-key-file FILE       CLUSTERMGMT_VAULT_KEY_FILE  vault keyring, default "
              "<data-dir>/vault.key\n"
              "                              (generated on first start; keep production keys off the state "
              "volume)\n"
              "  --state-retention-days N    CLUSTERMGMT_STATE_RETENTION_DAYS  archived state of deleted "
              "clusters, default 30\n"
              "  --log-level LEVEL           CLUSTERMGMT_LOG_LEVEL    debug|info|warning|error, default "
              "info\n"
              "  --localk8s-path PATH        CLUSTERMGMT_LOCALK8S_PATH  helper of the local engine,\n"
              "                              default: clustermgmt-localk8s next to this binary,\n"
              "                              else ./bin/clustermgmt-localk8s\n"
              "  --rke-path PATH             CLUSTERMGMT_RKE_PATH     rke binary of the rke engine,\n"
              "                              default: rke next to this binary, else ./bin/rke,\n"
              "                              else rke from PATH\n"
              "  --helm-path PATH            CLUSTERMGMT_HELM_PATH    helm binary of Helm add-ons,\n"
              "                              default: helm next to this binary, else ./bin/helm,\n"
              "                              else helm from PATH\n"
              "  --policy-url URL            CLUSTERMGMT_POLICY_URL   remote Policy Management Service (OPA "
              "REST\n"
              "                              data API: https://HOST:PORT/v1/data/PACKAGE); default: the\n"
              "                              built-in rules\n"
              "  --policy-token-file FILE    CLUSTERMGMT_POLICY_TOKEN_FILE  its bearer token\n"
              "  --policy-ca-file FILE       CLUSTERMGMT_POLICY_CA_FILE  CA that verifies it\n"
              "  --policy-timeout-ms N       CLUSTERMGMT_POLICY_TIMEOUT_MS  per decision, default 2000\n"
              "  --policy-failure-mode MODE  CLUSTERMGMT_POLICY_FAILURE_MODE  closed (refuse changes, 503)\n"
              "                              or open (admit with a warning) when it cannot answer; default "
              "closed\n"
              "  --policy-recheck-seconds N  CLUSTERMGMT_POLICY_RECHECK_SECONDS  re-validate every cluster\n"
              "                              (PolicyCompliant condition), default 300; 0 never\n"
              "\n"
              "OIDC (bearer JWTs of an identity provider, beside API keys; roles from role bindings):\n"
              "  --oidc-issuer URL           CLUSTERMGMT_OIDC_ISSUER  https issuer (discovery and keys)\n"
              "  --oidc-audience AUD         CLUSTERMGMT_OIDC_AUDIENCE  the aud tokens must carry\n"
              "  --oidc-ca-file FILE         CLUSTERMGMT_OIDC_CA_FILE  CA that verifies the issuer\n"
              "  --oidc-groups-claim NAME    CLUSTERMGMT_OIDC_GROUPS_CLAIM  default groups\n"
              "  --oidc-max-token-age-seconds N  CLUSTERMGMT_OIDC_MAX_TOKEN_AGE_SECONDS  refuse tokens\n"
              "                              issued longer ago; 0 (default) only exp counts\n"
              "\n"
              "Health monitoring (conditions, events, webhooks):\n"
              "  --monitor-interval-seconds N  CLUSTERMGMT_MONITOR_INTERVAL_SECONDS  probe interval of\n"
              "                              environments without their own settings, default 30\n"
              "  --monitor-concurrency N     CLUSTERMGMT_MONITOR_CONCURRENCY  probes in flight, default "
              "256\n"
              "  --monitor-timeout-ms N      CLUSTERMGMT_MONITOR_TIMEOUT_MS  one probe, default 10000\n"
              "  --monitor-threshold N       CLUSTERMGMT_MONITOR_THRESHOLD  failed probes in a row before "
              "the\n"
              "                              API server counts as unavailable, default 2\n"
              "  --monitor-keep-alive-max N  CLUSTERMGMT_MONITOR_KEEP_ALIVE_MAX  keep the connections of "
              "up to\n"
              "                              this many clusters between probes (the others resume\n"
              "                              their TLS session), default 1000\n"
              "  --no-monitor                CLUSTERMGMT_NO_MONITOR=1  probe nothing (no health "
              "conditions)\n"
              "\n"
              "Transport and limits:\n"
              "  --auth-failure-limit N      CLUSTERMGMT_AUTH_FAILURE_LIMIT  failed authentications of an\n"
              "                              address before it must wait (1 s, doubling), default 5; 0 off\n"
              "  --tls-cert FILE             CLUSTERMGMT_TLS_CERT     serve HTTPS with this certificate "
              "(PEM,\n"
              "                              chain allowed); TLS 1.2 and 1.3 only\n"
              "  --tls-key FILE              CLUSTERMGMT_TLS_KEY      its private key (PEM, mode 0600 or "
              "0400)\n"
              "  --insecure-allow-plain-http CLUSTERMGMT_INSECURE_ALLOW_PLAIN_HTTP=1  serve plain HTTP on "
              "an\n"
              "                              address that is not loopback (refused without it)\n"
              "  --max-connections N         CLUSTERMGMT_MAX_CONNECTIONS  open connections in all, default "
              "1000\n"
              "  --max-connections-per-ip N  CLUSTERMGMT_MAX_CONNECTIONS_PER_IP  from one address, default "
              "64;\n"
              "                              0 no cap\n"
              "  --idle-timeout-seconds N    CLUSTERMGMT_IDLE_TIMEOUT_SECONDS  close a connection silent "
              "this long,\n"
              "                              default 30\n"
              "  --request-timeout-seconds N CLUSTERMGMT_REQUEST_TIMEOUT_SECONDS  time to send a request's "
              "header\n"
              "                              and body, however slowly, default 60\n"
              "  --max-body-bytes N          CLUSTERMGMT_MAX_BODY_BYTES  request body cap, default 1048576\n"
              "  --rate-limit RPS            CLUSTERMGMT_RATE_LIMIT   requests per second per API key (per "
              "address\n"
              "                              on /healthz, /readyz, /metrics, /openapi.json), default 50; 0 "
              "off\n"
              "  --rate-burst N              CLUSTERMGMT_RATE_BURST   bucket size, default 100\n",
              f);
}

static int parse_uint_opt(const char *name, const char *v, unsigned min, unsigned max, unsigned *ret) {
        unsigned n;

        if (safe_atou(v, &n) < 0 || n < min || n > max) {
                fprintf(stderr, "clustermgmt serve: %s must be a whole number from %u to %u, not '%s'\n",
                        name, min, max, v);
                return -EINVAL;
        }
        *ret = n;
        return 0;
}

static int parse_options(int argc, char *argv[], struct serve_options *o) {
        enum {
                OPT_LISTEN = 256,
                OPT_DATA_DIR,
                OPT_DATABASE,
                OPT_WORKERS,
                OPT_HTTP_THREADS,
                OPT_LEASE,
                OPT_MAX_ATTEMPTS,
                OPT_RETRY_BASE,
                OPT_RETRY_MAX,
                OPT_GRACE,
                OPT_POLL,
                OPT_LOG_LEVEL,
                OPT_STATE_DIR,
                OPT_VAULT_KEY_FILE,
                OPT_STATE_RETENTION,
                OPT_LOCALK8S_PATH,
                OPT_RKE_PATH,
                OPT_HELM_PATH,
                OPT_POLICY_URL,
                OPT_POLICY_TOKEN_FILE,
                OPT_POLICY_CA_FILE,
                OPT_POLICY_TIMEOUT,
                OPT_POLICY_FAILURE_MODE,
                OPT_POLICY_RECHECK,
                OPT_OIDC_ISSUER,
                OPT_OIDC_AUDIENCE,
                OPT_OIDC_CA_FILE,
                OPT_OIDC_GROUPS_CLAIM,
                OPT_OIDC_MAX_AGE,
                OPT_AUTH_FAILURE_LIMIT,
                OPT_TLS_CERT,
                OPT_TLS_KEY,
                OPT_INSECURE_PLAIN,
                OPT_MONITOR_INTERVAL,
                OPT_MONITOR_CONCURRENCY,
                OPT_MONITOR_TIMEOUT,
                OPT_MONITOR_THRESHOLD,
                OPT_MONITOR_KEEP_ALIVE_MAX,
                OPT_NO_MONITOR,
                OPT_MAX_CONNECTIONS,
                OPT_MAX_CONNECTIONS_PER_IP,
                OPT_IDLE_TIMEOUT,
                OPT_REQUEST_TIMEOUT,
                OPT_MAX_BODY,
                OPT_RATE_LIMIT,
                OPT_RATE_BURST,
        };
        static const struct option longopts[] = {
                { "listen", required_argument, NULL, OPT_LISTEN },
                { "data-dir", required_argument, NULL, OPT_DATA_DIR },
                { "database", required_argument, NULL, OPT_DATABASE },
                { "workers", required_argument, NULL, OPT_WORKERS },
                { "http-threads", required_argument, NULL, OPT_HTTP_THREADS },
                { "lease-seconds", required_argument, NULL, OPT_LEASE },
                { "max-attempts", required_argument, NULL, OPT_MAX_ATTEMPTS },
                { "retry-base-ms", required_argument, NULL, OPT_RETRY_BASE },
                { "retry-max-seconds", required_argument, NULL, OPT_RETRY_MAX },
                { "shutdown-grace-seconds", required_argument, NULL, OPT_GRACE },
                { "poll-ms", required_argument, NULL, OPT_POLL },
                { "log-level", required_argument, NULL, OPT_LOG_LEVEL },
                { "state-dir", required_argument, NULL, OPT_STATE_DIR },
                { "vault-key-file", required_argument, NULL, OPT_VAULT_KEY_FILE },
                { "state-retention-days", required_argument, NULL, OPT_STATE_RETENTION },
                { "localk8s-path", required_argument, NULL, OPT_LOCALK8S_PATH },
                { "rke-path", required_argument, NULL, OPT_RKE_PATH },
                { "helm-path", required_argument, NULL, OPT_HELM_PATH },
                { "policy-url", required_argument, NULL, OPT_POLICY_URL },
                { "policy-token-file", required_argument, NULL, OPT_POLICY_TOKEN_FILE },
                { "policy-ca-file", required_argument, NULL, OPT_POLICY_CA_FILE },
                { "policy-timeout-ms", required_argument, NULL, OPT_POLICY_TIMEOUT },
                { "policy-failure-mode", required_argument, NULL, OPT_POLICY_FAILURE_MODE },
                { "policy-recheck-seconds", required_argument, NULL, OPT_POLICY_RECHECK },
                { "oidc-issuer", required_argument, NULL, OPT_OIDC_ISSUER },
                { "oidc-audience", required_argument, NULL, OPT_OIDC_AUDIENCE },
                { "oidc-ca-file", required_argument, NULL, OPT_OIDC_CA_FILE },
                { "oidc-groups-claim", required_argument, NULL, OPT_OIDC_GROUPS_CLAIM },
                { "oidc-max-token-age-seconds", required_argument, NULL, OPT_OIDC_MAX_AGE },
                { "auth-failure-limit", required_argument, NULL, OPT_AUTH_FAILURE_LIMIT },
                { "tls-cert", required_argument, NULL, OPT_TLS_CERT },
                { "tls-key", required_argument, NULL, OPT_TLS_KEY },
                { "insecure-allow-plain-http", no_argument, NULL, OPT_INSECURE_PLAIN },
                { "monitor-interval-seconds", required_argument, NULL, OPT_MONITOR_INTERVAL },
                { "monitor-concurrency", required_argument, NULL, OPT_MONITOR_CONCURRENCY },
                { "monitor-timeout-ms", required_argument, NULL, OPT_MONITOR_TIMEOUT },
                { "monitor-threshold", required_argument, NULL, OPT_MONITOR_THRESHOLD },
                { "monitor-keep-alive-max", required_argument, NULL, OPT_MONITOR_KEEP_ALIVE_MAX },
                { "no-monitor", no_argument, NULL, OPT_NO_MONITOR },
                { "max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS },
                { "max-connections-per-ip", required_argument, NULL, OPT_MAX_CONNECTIONS_PER_IP },
                { "idle-timeout-seconds", required_argument, NULL, OPT_IDLE_TIMEOUT },
                { "request-timeout-seconds", required_argument, NULL, OPT_REQUEST_TIMEOUT },
                { "max-body-bytes", required_argument, NULL, OPT_MAX_BODY },
                { "rate-limit", required_argument, NULL, OPT_RATE_LIMIT },
                { "rate-burst", required_argument, NULL, OPT_RATE_BURST },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        /* Environment twins first; flags override them. */
        static const struct {
                const char *env;
                int opt;
        } twins[] = {
                { "CLUSTERMGMT_LISTEN", OPT_LISTEN },
                { "CLUSTERMGMT_DATA_DIR", OPT_DATA_DIR },
                { "CLUSTERMGMT_DATABASE", OPT_DATABASE },
                { "CLUSTERMGMT_WORKERS", OPT_WORKERS },
                { "CLUSTERMGMT_HTTP_THREADS", OPT_HTTP_THREADS },
                { "CLUSTERMGMT_LEASE_SECONDS", OPT_LEASE },
                { "CLUSTERMGMT_MAX_ATTEMPTS", OPT_MAX_ATTEMPTS },
                { "CLUSTERMGMT_RETRY_BASE_MS", OPT_RETRY_BASE },
                { "CLUSTERMGMT_RETRY_MAX_SECONDS", OPT_RETRY_MAX },
                { "CLUSTERMGMT_SHUTDOWN_GRACE_SECONDS", OPT_GRACE },
                { "CLUSTERMGMT_POLL_MS", OPT_POLL },
                { "CLUSTERMGMT_LOG_LEVEL", OPT_LOG_LEVEL },
                { "CLUSTERMGMT_STATE_DIR", OPT_STATE_DIR },
                { "CLUSTERMGMT_VAULT_KEY_FILE", OPT_VAULT_KEY_FILE },
                { "CLUSTERMGMT_STATE_RETENTION_DAYS", OPT_STATE_RETENTION },
                { "CLUSTERMGMT_LOCALK8S_PATH", OPT_LOCALK8S_PATH },
                { "CLUSTERMGMT_RKE_PATH", OPT_RKE_PATH },
                { "CLUSTERMGMT_HELM_PATH", OPT_HELM_PATH },
                { "CLUSTERMGMT_POLICY_URL", OPT_POLICY_URL },
                { "CLUSTERMGMT_POLICY_TOKEN_FILE", OPT_POLICY_TOKEN_FILE },
                { "CLUSTERMGMT_POLICY_CA_FILE", OPT_POLICY_CA_FILE },
                { "CLUSTERMGMT_POLICY_TIMEOUT_MS", OPT_POLICY_TIMEOUT },
                { "CLUSTERMGMT_POLICY_FAILURE_MODE", OPT_POLICY_FAILURE_MODE },
                { "CLUSTERMGMT_POLICY_RECHECK_SECONDS", OPT_POLICY_RECHECK },
                { "CLUSTERMGMT_OIDC_ISSUER", OPT_OIDC_ISSUER },
                { "CLUSTERMGMT_OIDC_AUDIENCE", OPT_OIDC_AUDIENCE },
                { "CLUSTERMGMT_OIDC_CA_FILE", OPT_OIDC_CA_FILE },
                { "CLUSTERMGMT_OIDC_GROUPS_CLAIM", OPT_OIDC_GROUPS_CLAIM },
                { "CLUSTERMGMT_OIDC_MAX_TOKEN_AGE_SECONDS", OPT_OIDC_MAX_AGE },
                { "CLUSTERMGMT_AUTH_FAILURE_LIMIT", OPT_AUTH_FAILURE_LIMIT },
                { "CLUSTERMGMT_TLS_CERT", OPT_TLS_CERT },
                { "CLUSTERMGMT_TLS_KEY", OPT_TLS_KEY },
                { "CLUSTERMGMT_INSECURE_ALLOW_PLAIN_HTTP", OPT_INSECURE_PLAIN },
                { "CLUSTERMGMT_MONITOR_INTERVAL_SECONDS", OPT_MONITOR_INTERVAL },
                { "CLUSTERMGMT_MONITOR_CONCURRENCY", OPT_MONITOR_CONCURRENCY },
                { "CLUSTERMGMT_MONITOR_TIMEOUT_MS", OPT_MONITOR_TIMEOUT },
                { "CLUSTERMGMT_MONITOR_THRESHOLD", OPT_MONITOR_THRESHOLD },
                { "CLUSTERMGMT_MONITOR_KEEP_ALIVE_MAX", OPT_MONITOR_KEEP_ALIVE_MAX },
                { "CLUSTERMGMT_NO_MONITOR", OPT_NO_MONITOR },
                { "CLUSTERMGMT_MAX_CONNECTIONS", OPT_MAX_CONNECTIONS },
                { "CLUSTERMGMT_MAX_CONNECTIONS_PER_IP", OPT_MAX_CONNECTIONS_PER_IP },
                { "CLUSTERMGMT_IDLE_TIMEOUT_SECONDS", OPT_IDLE_TIMEOUT },
                { "CLUSTERMGMT_REQUEST_TIMEOUT_SECONDS", OPT_REQUEST_TIMEOUT },
                { "CLUSTERMGMT_MAX_BODY_BYTES", OPT_MAX_BODY },
                { "CLUSTERMGMT_RATE_LIMIT", OPT_RATE_LIMIT },
                { "CLUSTERMGMT_RATE_BURST", OPT_RATE_BURST },
        };
        int c;

        for (size_t pass = 0; pass < 2; pass++) {
                size_t ti = 0;

                optind = 1;
                for (;;) {
                        const char *arg;
                        const char *name;

                        if (pass == 0) {
                                if (ti >= ELEMENTSOF(twins))
                                        break;
                                arg = getenv(twins[ti].env);
                                c = twins[ti].opt;
                                name = twins[ti].env;
                                ti++;
                                if (isempty(arg))
                                        continue;
                        } else {
                                c = getopt_long(argc, argv, "h", longopts, NULL);
                                if (c < 0)
                                        break;
                                arg = optarg;
                                name = argv[optind - 1];
                        }
                        switch (c) {
                        case 'h':
                                serve_usage(stdout);
                                exit(0);
                        case OPT_LISTEN:
                                o->listen = arg;
                                break;
                        case OPT_DATA_DIR:
                                o->data_dir = arg;
                                break;
                        case OPT_DATABASE:
                                o->database = arg;
                                break;
                        case OPT_WORKERS:
                                if (parse_uint_opt(name, arg, 0, 256, &o->workers) < 0)
                                        return -EINVAL;
                                break;
                        case OPT_HTTP_THREADS:
                                if (parse_uint_opt(name, arg, 1, 256, &o->http_threads) < 0)
                                        return -EINVAL;
                                break;
                        case OPT_LEASE:
                                if (parse_uint_opt(name, arg, 1, 3600, &o->lease_seconds) < 0)
                                        return -EINVAL;
                                break;
                        case OPT_MAX_ATTEMPTS:
                                if (parse_uint_opt(name, arg, 1, 100, &o->max_attempts) < 0)
                                        return -EINVAL;
                                break;
                        case OPT_RETRY_BASE:
                                if (parse_uint_opt(name, arg, 1, 3600000, &o->retry_base_ms) < 0)
                                        return -EINVAL;
                                break;
                        case OPT_RETRY_MAX:
                                if (parse_uint_opt(name, arg, 1, 86400, &o->retry_max_seconds) < 0)
                                        return -EINVAL;
                                break;
                        case OPT_GRACE:
                                if (parse_uint_opt(name, arg, 0, 3600, &o->shutdown_grace_seconds) < 0)
                                        return -EINVAL;
                                break;
                        case OPT_POLL:
                                if (parse_uint_opt(name, arg, 10, 60000, &o->poll_ms) < 0)
                                        return -EINVAL;
                                break;
                        case OPT_LOG_LEVEL:
                                o->log_level = arg;
                                break;
                        case OPT_STATE_DIR:
                                o->state_dir = arg;
                                break;
                        case OPT_VAULT_KEY_FILE:
                                o->vault_key_file = arg;
                                break;
                        case OPT_STATE_RETENTION:
                                if (parse_uint_opt(name, arg, 1, 36500, &o->state_retention_days) < 0)
                                        return -EINVAL;
                                break;
                        case OPT_LOCALK8S_PATH:
                                o->localk8s_path = arg;
                                break;
                        case OPT_RKE_PATH:
                                o->rke_path = arg;
                                break;
                        case OPT_HELM_PATH:
                                o->helm_path = arg;
                                break;
                        case OPT_POLICY_URL:
                                o->policy_url = arg;
                                break;
                        case OPT_POLICY_TOKEN_FILE:
                                o->policy_token_file = arg;
                                break;
                        case OPT_POLICY_CA_FILE:
                                o->policy_ca_file = arg;
                                break;
                        case OPT_POLICY_TIMEOUT:
                                if (parse_uint_opt(name, arg, 10, 600000, &o->policy_timeout_ms) < 0)
                                        return -EINVAL;
                                break;
                        case OPT_POLICY_FAILURE_MODE:
                                if (!streq(arg, "closed") && !streq(arg, "open")) {
                                        fprintf(stderr,
                                                "clustermgmt serve: %s must be closed or open, not '%s'\n",
                                                name, arg);
                                        return -EINVAL;
                                }
                                o->policy_failure_mode = arg;
                                break;
                        case OPT_POLICY_RECHECK:
                                if (parse_uint_opt(name, arg, 0, 86400 * 7, &o->policy_recheck_seconds) < 0)
                                        return -EINVAL;
                                break;
                        case OPT_OIDC_ISSUER:
                                o->oidc_issuer = arg;
                                break;
                        case OPT_OIDC_AUDIENCE:
                                o->oidc_audience = arg;
                                break;
                        case OPT_OIDC_CA_FILE:
                                o->oidc_ca_file = arg;
                                break;
                        case OPT_OIDC_GROUPS_CLAIM:
                                o->oidc_groups_claim = arg;
                                break;
                        case OPT_AUTH_FAILURE_LIMIT:
                                if (parse_uint_opt(name, arg, 0, 1000000, &o->auth_failure_limit) < 0)
                                        return -EINVAL;
                                break;
                        case OPT_OIDC_MAX_AGE:
                                if (parse_uint_opt(name, arg, 0, 366 * 86400,
                                                   &o->oidc_max_token_age_seconds) < 0)
                                        return -EINVAL;
                                break;
                        case OPT_TLS_CERT:
                                o->tls_cert = arg;
                                break;
                        case OPT_TLS_KEY:
                                o->tls_key = arg;
                                break;
                        case OPT_INSECURE_PLAIN:
                                /* The flag takes no value; its environment twin is 1 or 0. */
                                if (pass == 0 && !streq(arg, "1") && !streq(arg, "0")) {
                                        fprintf(stderr, "clustermgmt serve: %s must be 1 or 0, not '%s'\n",
                                                name, arg);
                                        return -EINVAL;
                                }
                                o->insecure_allow_plain_http = pass != 0 || streq(arg, "1");
                                break;
                        case OPT_NO_MONITOR:
                                if (pass == 0 && !streq(arg, "1") && !streq(arg, "0")) {
                                        fprintf(stderr, "clustermgmt serve: %s must be 1 or 0, not '%s'\n",
                                                name, arg);
                                        return -EINVAL;
                                }
                                o->no_monitor = pass != 0 || streq(arg, "1");
                                break;
                        case OPT_MONITOR_INTERVAL:
                                if (parse_uint_opt(name, arg, 1, 3600, &o->monitor_interval_seconds) < 0)
                                        return -EINVAL;
                                break;
                        case OPT_MONITOR_CONCURRENCY:
                                if (parse_uint_opt(name, arg, 1, 65536, &o->monitor_concurrency) < 0)
                                        return -EINVAL;
                                break;
                        case OPT_MONITOR_TIMEOUT:
                                if (parse_uint_opt(name, arg, 100, 600000, &o->monitor_timeout_ms) < 0)
                                        return -EINVAL;
                                break;
                        case OPT_MONITOR_KEEP_ALIVE_MAX:
                                if (parse_uint_opt(name, arg, 0, 1000000, &o->monitor_keep_alive_max) < 0)
                                        return -EINVAL;
                                break;
                        case OPT_MONITOR_THRESHOLD:
                                if (parse_uint_opt(name, arg, 1, 10, &o->monitor_threshold) < 0)
                                        return -EINVAL;
                                break;
                        case OPT_MAX_CONNECTIONS:
                                if (parse_uint_opt(name, arg, 1, 1000000, &o->max_connections) < 0)
                                        return -EINVAL;
                                break;
                        case OPT_MAX_CONNECTIONS_PER_IP:
                                if (parse_uint_opt(name, arg, 0, 1000000, &o->max_connections_per_ip) < 0)
                                        return -EINVAL;
                                break;
                        case OPT_IDLE_TIMEOUT:
                                if (parse_uint_opt(name, arg, 1, 3600, &o->idle_timeout_seconds) < 0)
                                        return -EINVAL;
                                break;
                        case OPT_REQUEST_TIMEOUT:
                                if (parse_uint_opt(name, arg, 1, 3600, &o->request_timeout_seconds) < 0)
                                        return -EINVAL;
                                break;
                        case OPT_MAX_BODY:
                                if (parse_uint_opt(name, arg, 1024, 64 * 1024 * 1024, &o->max_body_bytes) <
                                    0)
                                        return -EINVAL;
                                break;
                        case OPT_RATE_LIMIT:
                                if (parse_uint_opt(name, arg, 0, 1000000, &o->rate_limit) < 0)
                                        return -EINVAL;
                                break;
                        case OPT_RATE_BURST:
                                if (parse_uint_opt(name, arg, 1, 1000000, &o->rate_burst) < 0)
                                        return -EINVAL;
                                break;
                        default:
                                fputs("Try 'clustermgmt serve --help'.\n", stderr);
                                return -EINVAL;
                        }
                }
        }
        if (optind < argc) {
                fprintf(stderr,
                        "clustermgmt serve: unexpected argument '%s'\nTry 'clustermgmt serve --help'.\n",
                        argv[optind]);
                return -EINVAL;
        }
        if (!!o->oidc_issuer != !!o->oidc_audience ||
            (!o->oidc_issuer &&
             (o->oidc_ca_file || o->oidc_groups_claim || o->oidc_max_token_age_seconds))) {
                fputs("clustermgmt serve: OIDC needs --oidc-issuer and --oidc-audience together; the other "
                      "--oidc-* options go with them\n",
                      stderr);
                return -EINVAL;
        }
        if (!o->policy_url &&
            (o->policy_token_file || o->policy_ca_file || o->policy_timeout_ms || o->policy_failure_mode)) {
                fputs("clustermgmt serve: the --policy-* options go with --policy-url (without it, the "
                      "built-in "
                      "rules decide)\n",
                      stderr);
                return -EINVAL;
        }
        if (!o->tls_cert != !o->tls_key) {
                fputs("clustermgmt serve: --tls-cert and --tls-key go together (CLUSTERMGMT_TLS_CERT and "
                      "CLUSTERMGMT_TLS_KEY)\n",
                      stderr);
                return -EINVAL;
        }
        return 0;
}

/*
 * Plain HTTP only where nobody else can listen in: a loopback address. Elsewhere TLS, or the operator's
 * explicit acceptance of the risk (a proxy in front that terminates TLS, say).
 */
static int check_transport(const struct serve_options *o) {
        int loopback = cm_server_listen_is_loopback(o->listen);

        if (loopback < 0) {
                fprintf(stderr,
                        "clustermgmt serve: --listen must be ADDRESS:PORT with a numeric IPv4 address or an "
                        "IPv6 address in brackets ([::1]:8080), not '%s'\n",
                        o->listen);
                return -EINVAL;
        }
        if (loopback || o->tls_cert)
                return 0;
        if (!o->insecure_allow_plain_http) {
                fprintf(stderr,
                        "clustermgmt serve: refusing to serve plain HTTP on %s, which is not a loopback "
                        "address: API keys would cross the network in clear text. Give a certificate with "
                        "--tls-cert/--tls-key, or accept the risk with --insecure-allow-plain-http (behind "
                        "a proxy that terminates TLS)\n",
                        o->listen);
                return -EINVAL;
        }
        log_warning(
                "serving plain HTTP on %s, which is not a loopback address "
                "(--insecure-allow-plain-http): API keys cross the network in clear text unless a proxy in "
                "front terminates TLS",
                o->listen);
        return 0;
}

/* Certificate and key, checked before anything else starts; what is served is logged, never the key. */
static int load_tls(const struct serve_options *o, struct cm_server_tls **ret) {
        char err[512] = "", when[64];
        uint64_t not_after, now = cm_now_usec();
        int r;

        *ret = NULL;
        if (!o->tls_cert)
                return 0;
        r = cm_server_tls_load(o->tls_cert, o->tls_key, ret, err, sizeof(err));
        if (r < 0)
                return log_error_errno(r, "TLS: %s", err[0] ? err : "cannot load the certificate and key");
        not_after = cm_server_tls_not_after(*ret);
        cm_format_rfc3339(not_after, when, sizeof(when));
        log_info("TLS on (1.2 and 1.3): certificate '%s' from '%s', valid until %s",
                 cm_server_tls_subject(*ret), o->tls_cert, not_after ? when : "(unknown)");
        if (not_after && not_after < now)
                log_warning("the TLS certificate in '%s' expired on %s: clients will refuse it", o->tls_cert,
                            when);
        else if (not_after && not_after < now + 30 * 86400 * USEC_PER_SEC)
                log_warning("the TLS certificate in '%s' expires on %s: renew it", o->tls_cert, when);
        return 0;
}

/* First start: an admin API key, shown only through a 0600 file whose path is logged. */
static int bootstrap_admin_key(struct cm_store *store, const char *data_dir) {
        _cleanup_free_ char *path = NULL;
        char token[64], hash[65], id[40];
        struct cm_apikey key;
        uint64_t count = 0;
        int r;

        r = STORE_CALL(store, apikey_count, &count);
        if (r < 0)
                return log_error_errno(r, "count API keys: %m");
        if (count > 0)
                return 0;
        if (asprintf(&path, "%s/admin.token", data_dir) < 0)
                return -ENOMEM;
        r = cm_random_token("cmk_", token, sizeof(token));
        if (r < 0)
                return r;
        r = cm_random_id("key_", id, sizeof(id));
        if (r < 0)
                goto out;
        cm_sha256_hex(token, strlen(token), hash);
        key = (struct cm_apikey){ .id = id,
                                  .name = CM_UNCONST(char *, "admin"),
                                  .hash = hash,
                                  .role = CM_UNCONST(char *, "admin"),
                                  .created_usec = cm_now_usec() };
        /* The file first: a key nobody can read would lock everyone out. */
        r = cm_write_file_atomic(path, token, strlen(token), 0600);
        if (r < 0) {
                log_error_errno(r, "write the admin API key to '%s': %m", path);
                goto out;
        }
        r = STORE_CALL(store, apikey_create, &key, NULL, 0);
        if (r < 0) {
                log_error_errno(r, "store the admin API key: %m");
                goto out;
        }
        log_info("created the admin API key; it is in '%s' (readable by this user only)", path);
out:
        cm_wipe(token, sizeof(token));
        return r;
}

/*
 * The state vault: the keyring (generated 0600 on first start) and the directory. Archived state of
 * clusters deleted more than the retention period ago is purged here.
 */
static int open_vault(const struct serve_options *o, struct cm_vault **ret) {
        _cleanup_free_ char *dir = NULL, *key_file = NULL;
        _cleanup_(cm_keyring_freep) struct cm_keyring *kr = NULL;
        bool created = false;
        uint64_t keep_usec, now = cm_now_usec();
        int r;

        if (o->state_dir)
                dir = strdup(o->state_dir);
        else if (asprintf(&dir, "%s/state", o->data_dir) < 0)
                dir = NULL;
        if (o->vault_key_file)
                key_file = strdup(o->vault_key_file);
        else if (asprintf(&key_file, "%s/vault.key", o->data_dir) < 0)
                key_file = NULL;
        if (!dir || !key_file)
                return -ENOMEM;

        r = cm_keyring_load_or_create(key_file, &kr, &created);
        if (r < 0)
                return log_error_errno(r, "load the vault key file '%s': %m", key_file);
        if (created)
                log_warning("generated a vault key in '%s' (mode 0600); production keys belong outside the "
                            "state volume: give one with --vault-key-file",
                            key_file);
        r = cm_vault_open(dir, kr, CM_VAULT_KEEP_DEFAULT, ret);
        if (r < 0)
                return log_error_errno(r, "open the state vault '%s': %m", dir);
        keep_usec = (uint64_t) o->state_retention_days * 86400 * USEC_PER_SEC;
        r = cm_vault_purge(*ret, now > keep_usec ? now - keep_usec : 0);
        if (r < 0)
                log_warning_errno(r, "purge archived state older than %u days: %m", o->state_retention_days);
        else if (r > 0)
                log_info("purged the archived state of %d deleted clusters", r);
        return 0;
}

int cm_serve_main(int argc, char *argv[]) {
        struct serve_options o = { .listen = "127.0.0.1:8080",
                                   .data_dir = "./data",
                                   .state_retention_days = 30,
                                   .policy_recheck_seconds = 300,
                                   .monitor_interval_seconds = 30,
                                   .monitor_concurrency = 256,
                                   .monitor_timeout_ms = 10000,
                                   .monitor_threshold = 2,
                                   .monitor_keep_alive_max = 1000 };
        struct cm_vault *vault = NULL;
        struct cm_oidc *oidc = NULL;
        struct cm_service_config scfg;
        struct cm_server_config hcfg;
        _cleanup_free_ char *db = NULL;
        _cleanup_(cm_store_closep) struct cm_store *store = NULL;
        struct cm_service *svc = NULL;
        struct cm_server *srv = NULL;
        /* Freed (the key wiped) after the server has stopped: libmicrohttpd holds on to it. */
        _cleanup_(cm_server_tls_freep) struct cm_server_tls *tls = NULL;
        sigset_t mask;
        int r, sig = 0;

        cm_service_config_defaults(&scfg);
        cm_server_config_defaults(&hcfg);
        o.workers = scfg.workers;
        o.http_threads = hcfg.threads;
        o.lease_seconds = (unsigned) (scfg.lease_usec / USEC_PER_SEC);
        o.max_attempts = scfg.max_attempts;
        o.retry_base_ms = (unsigned) (scfg.backoff_base_usec / USEC_PER_MSEC);
        o.retry_max_seconds = (unsigned) (scfg.backoff_cap_usec / USEC_PER_SEC);
        o.shutdown_grace_seconds = (unsigned) (scfg.shutdown_grace_usec / USEC_PER_SEC);
        o.poll_ms = (unsigned) (scfg.poll_usec / USEC_PER_MSEC);
        o.max_connections = hcfg.max_connections;
        o.max_connections_per_ip = hcfg.max_connections_per_ip;
        o.idle_timeout_seconds = hcfg.idle_timeout_sec;
        o.request_timeout_seconds = hcfg.request_timeout_sec;
        o.max_body_bytes = (unsigned) hcfg.max_body;
        o.rate_limit = hcfg.rate_limit;
        o.rate_burst = hcfg.rate_burst;
        o.auth_failure_limit = hcfg.auth_fail_max;

        if (parse_options(argc, argv, &o) < 0)
                return 2;
        if (o.log_level) {
                enum log_level lvl;
                if (log_level_from_string(o.log_level, &lvl) < 0) {
                        fprintf(stderr,
                                "clustermgmt serve: log level must be debug, info, warning or error\n");
                        return 2;
                }
                log_set_level(lvl);
        }
        if (check_transport(&o) < 0)
                return 2;
        if (load_tls(&o, &tls) < 0)
                return 1;

        if (cm_engine_local_set_helper(o.localk8s_path) < 0) {
                fprintf(stderr, "clustermgmt serve: --localk8s-path is too long\n");
                return 2;
        }
        if (cm_engine_rke_set_path(o.rke_path) < 0) {
                fprintf(stderr, "clustermgmt serve: --rke-path is too long\n");
                return 2;
        }
        if (cm_addons_set_helm_path(o.helm_path) < 0) {
                fprintf(stderr, "clustermgmt serve: --helm-path is too long\n");
                return 2;
        }

        /* The process holds keys and tokens: no core dumps, no ptrace by other users' processes. */
        (void) prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        (void) umask(0077);
        signal(SIGPIPE, SIG_IGN);
        /* Threads inherit this mask; the main thread waits for the signals below. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &mask, NULL);

        r = cm_mkdir_p(o.data_dir, 0700);
        if (r < 0) {
                log_error_errno(r, "create data directory '%s': %m", o.data_dir);
                return 1;
        }
        if (o.database)
                db = strdup(o.database);
        else if (asprintf(&db, "sqlite:%s/clustermgmt.db", o.data_dir) < 0)
                db = NULL;
        if (!db)
                return 1;

        r = cm_store_open(db, &store);
        if (r < 0) {
                log_error_errno(r, "open the database: %m");
                return 1;
        }
        r = STORE_CALL(store, migrate);
        if (r < 0) {
                log_error_errno(r, "apply database migrations: %m");
                return 1;
        }

        scfg.data_dir = o.data_dir;
        scfg.workers = o.workers;
        scfg.lease_usec = (uint64_t) o.lease_seconds * USEC_PER_SEC;
        scfg.max_attempts = o.max_attempts;
        scfg.backoff_base_usec = (uint64_t) o.retry_base_ms * USEC_PER_MSEC;
        scfg.backoff_cap_usec = (uint64_t) o.retry_max_seconds * USEC_PER_SEC;
        scfg.shutdown_grace_usec = (uint64_t) o.shutdown_grace_seconds * USEC_PER_SEC;
        scfg.state_retention_usec = (uint64_t) o.state_retention_days * 86400 * USEC_PER_SEC;
        scfg.poll_usec = (uint64_t) o.poll_ms * USEC_PER_MSEC;
        r = open_vault(&o, &vault);
        if (r < 0)
                return 1;
        r = cm_service_new(store, &scfg, &svc);
        if (r < 0) {
                vault = cm_vault_close(vault);
                return 1;
        }
        svc->vault = vault;
        if (o.policy_url) {
                struct cm_policy_remote_config pc = {
                        .url = o.policy_url,
                        .token_file = o.policy_token_file,
                        .ca_file = o.policy_ca_file,
                        .timeout_ms = o.policy_timeout_ms,
                };

                char err[512] = "";

                r = cm_policy_remote_open(&pc, &svc->policy, err, sizeof(err));
                if (r < 0) {
                        log_error_errno(r, "policy service: %s", err[0] ? err : "cannot be set up");
                        goto out;
                }
                svc->policy_url = o.policy_url;
                svc->policy_fail_open = o.policy_failure_mode && streq(o.policy_failure_mode, "open");
                log_info("compliance decided by the policy service %s (failure mode %s)", o.policy_url,
                         svc->policy_fail_open ? "open" : "closed");
        }
        r = cm_service_bootstrap(svc);
        if (r < 0) {
                log_error_errno(r, "bootstrap: %m");
                goto out;
        }
        r = bootstrap_admin_key(store, o.data_dir);
        if (r < 0)
                goto out;

        if (o.oidc_issuer) {
                struct cm_oidc_config oc = {
                        .issuer = o.oidc_issuer,
                        .audience = o.oidc_audience,
                        .ca_file = o.oidc_ca_file,
                        .groups_claim = o.oidc_groups_claim,
                        .max_age_usec = (uint64_t) o.oidc_max_token_age_seconds * USEC_PER_SEC,
                };
                char err[512] = "";

                r = cm_oidc_new(&oc, &oidc, err, sizeof(err));
                if (r < 0) {
                        log_error_errno(r, "OIDC: %s", err[0] ? err : "cannot be set up");
                        goto out;
                }
                /* Not fatal: the provider may come up later; tokens are verified once it answers. */
                if (cm_oidc_refresh(oidc, err, sizeof(err)) < 0)
                        log_warning("OIDC issuer %s cannot be reached yet: %s", o.oidc_issuer, err);
                log_info("OIDC bearer tokens of %s (audience %s) are accepted", o.oidc_issuer,
                         o.oidc_audience);
        }
        /* Before the HTTP threads and the workers, which use them (set before any thread reads them). */
        r = cm_webhooks_start(svc, &svc->webhooks);
        if (r < 0) {
                log_error_errno(r, "start the webhook delivery: %m");
                goto out;
        }
        if (!o.no_monitor) {
                struct cm_monitor_config mcfg;

                cm_monitor_config_default(&mcfg);
                mcfg.interval_sec = o.monitor_interval_seconds;
                mcfg.concurrency = o.monitor_concurrency;
                mcfg.timeout_ms = o.monitor_timeout_ms;
                mcfg.threshold = o.monitor_threshold;
                mcfg.keep_alive_max = o.monitor_keep_alive_max;
                r = cm_monitor_start(svc, &mcfg, &svc->monitor);
                if (r < 0) {
                        log_error_errno(r, "start the health monitor: %m");
                        goto out;
                }
        }
        hcfg.oidc = oidc;
        hcfg.listen = o.listen;
        hcfg.threads = o.http_threads;
        hcfg.tls = tls;
        hcfg.max_connections = o.max_connections;
        hcfg.max_connections_per_ip = o.max_connections_per_ip;
        hcfg.idle_timeout_sec = o.idle_timeout_seconds;
        hcfg.request_timeout_sec = o.request_timeout_seconds;
        hcfg.max_body = o.max_body_bytes;
        hcfg.rate_limit = o.rate_limit;
        hcfg.rate_burst = o.rate_burst;
        hcfg.auth_fail_max = o.auth_failure_limit;
        r = cm_server_start(&hcfg, svc, &srv);
        if (r < 0) {
                log_error_errno(r, "listen on %s: %m", o.listen);
                goto out;
        }
        r = cm_service_start(svc);
        if (r < 0) {
                log_error_errno(r, "start workers: %m");
                goto out;
        }
        r = cm_compliance_start(svc, (uint64_t) o.policy_recheck_seconds * USEC_PER_SEC);
        if (r < 0) {
                log_error_errno(r, "start the policy re-validation: %m");
                goto out;
        }
        if (o.workers > 0) {
                /* Add-ons are applied where operations run: replicas that serve the API only do neither. */
                r = cm_addons_reconciler_start(svc, NULL);
                if (r < 0) {
                        log_error_errno(r, "start the add-on reconciler: %m");
                        goto out;
                }
        }
        /* Adopts the local clusters still running from the last start; supervises them from now on. */
        r = cm_engine_local_start(svc);
        if (r < 0)
                goto out;
        {
                char names[256], fields[512];

                cm_engine_names(names, sizeof(names));
                (void) cm_snprintf(
                        fields, sizeof(fields),
                        "\"listen\":\"%s\",\"port\":%u,\"version\":\"%s\",\"workers\":%u,\"engines\":\"%s\","
                        "\"tls\":%s",
                        o.listen, cm_server_port(srv), CM_VERSION, o.workers, names, tls ? "true" : "false");
                log_full(LOG_LEVEL_INFO, 0, fields, "serving %s on %s", tls ? "HTTPS" : "HTTP", o.listen);
        }

        for (;;) {
                if (sigwait(&mask, &sig) != 0)
                        continue;
                if (sig == SIGHUP)
                        continue;
                break;
        }
        log_info("received %s; stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        r = 0;
out:
        /* Stop taking requests first, then let running steps finish or give their leases back. */
        srv = cm_server_stop(srv);
        if (svc) {
                /* Workers first: they poke the monitor, whose writer pokes the webhooks. */
                cm_service_stop(svc);
                cm_addons_reconciler_stop(svc);
                svc->monitor = cm_monitor_stop(svc->monitor);
                svc->webhooks = cm_webhooks_stop(svc->webhooks);
        }
        {
                /* After the service: its re-validation thread asks the policy service too. */
                struct cm_policy_remote *policy = svc ? svc->policy : NULL;

                svc = cm_service_free(svc);
                (void) cm_policy_remote_close(policy);
        }
        vault = cm_vault_close(vault);
        oidc = cm_oidc_free(oidc);
        cm_engine_local_stop();
        log_info("stopped");
        return r < 0 ? 1 : 0;
}
