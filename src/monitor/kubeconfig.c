/* SPDX-License-Identifier: Apache-2.0 */
/* The kubeconfig a probe connects with: current context, its cluster and user, embedded credentials. */
#include "base/common.h"

#include <jansson.h>

#include "base/secret.h"
#include "cli/yaml.h"
#include "monitor/conn.h"
#include "monitor/health.h"

/* Where a parse reports why it failed; never fed with a value of the kubeconfig. */
struct kc_error {
        char *buf;
        size_t size;
};

_printf_(2, 3) static int kc_fail(const struct kc_error *e, const char *fmt, ...) {
        va_list ap;

        if (e->buf && e->size > 0) {
                va_start(ap, fmt);
                (void) vsnprintf(e->buf, e->size, fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

static int kc_oom(const struct kc_error *e) {
        (void) kc_fail(e, "out of memory");
        return -ENOMEM;
}

/* ---- base64 (RFC 4648 §4, padded, no whitespace) -------------------------------------------- */

static int b64_digit(unsigned char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

/*
 * Decodes padded standard base64 into a new NUL-terminated buffer of the exact size (allocated once:
 * it may hold a key). -EINVAL for anything else, also for data that decodes to nothing or holds a NUL
 * byte (PEM is text).
 */
static int b64_decode(const char *s, size_t n, char **ret, size_t *ret_len) {
        size_t pad = 0, out_len, o = 0;
        uint32_t acc = 0;
        char *out;

        if (n == 0 || n % 4 != 0)
                return -EINVAL;
        if (s[n - 1] == '=')
                pad = s[n - 2] == '=' ? 2 : 1;
        out_len = n / 4 * 3 - pad;
        if (out_len == 0)
                return -EINVAL;
        for (size_t i = 0; i < n - pad; i++)
                if (b64_digit((unsigned char) s[i]) < 0)
                        return -EINVAL;

        out = malloc(out_len + 1);
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int d = i < n - pad ? b64_digit((unsigned char) s[i]) : 0;

                acc = acc << 6 | (uint32_t) d;
                if (i % 4 == 3) {
                        unsigned char b[3] = { (unsigned char) (acc >> 16), (unsigned char) (acc >> 8),
                                               (unsigned char) acc };

                        for (size_t j = 0; j < 3 && o < out_len; j++)
                                out[o++] = (char) b[j];
                        acc = 0;
                }
        }
        out[out_len] = 0;
        if (memchr(out, 0, out_len)) {
                cm_wipe(out, out_len);
                free(out);
                return -EINVAL;
        }
        *ret = out;
        *ret_len = out_len;
        return 0;
}

/* ---- the kubeconfig's structure -------------------------------------------------------------- */

/* A member that must be a non-empty string when present: 0 and *ret (NULL when absent), or -EINVAL. */
static int kc_string(const struct kc_error *e, const json_t *obj, const char *key, const char *what,
                     const json_t **ret) {
        const json_t *v = json_object_get(obj, key);

        if (!v || json_is_null(v)) {
                *ret = NULL;
                return 0;
        }
        if (!json_is_string(v))
                return kc_fail(e, "%s %s must be a string", what, key);
        *ret = json_string_length(v) > 0 ? v : NULL;
        return 0;
}

/*
 * The entry of the list root[field + "s"] ([{name, <field>: {...}}]) called name: its <field> mapping.
 * by says who names it, in messages ("current-context", "the current context").
 */
static int kc_named(const struct kc_error *e, const json_t *root, const char *field, const char *name,
                    const char *by, const json_t **ret) {
        char list[16];
        const json_t *arr, *entry, *found = NULL;
        size_t i;

        (void) snprintf(list, sizeof(list), "%ss", field);
        arr = json_object_get(root, list);
        if (!json_is_array(arr) || json_array_size(arr) == 0)
                return kc_fail(e, "the kubeconfig has no %s", list);
        json_array_foreach(arr, i, entry) {
                const char *n = json_string_value(json_object_get(entry, "name"));

                if (!json_is_object(entry) || !n)
                        return kc_fail(e, "every entry of %s must be a mapping with a name", list);
                if (!streq(n, name))
                        continue;
                if (found)
                        return kc_fail(e, "the kubeconfig has two %s with the name %s uses", list, by);
                found = entry;
        }
        if (!found)
                return kc_fail(e, "%s names a %s that the kubeconfig does not have", by, field);
        found = json_object_get(found, field);
        if (!json_is_object(found))
                return kc_fail(e, "the %s that %s names has no %s mapping", field, by, field);
        *ret = found;
        return 0;
}

/* The context the probe uses: current-context, or the only context when there is none. */
static int kc_context(const struct kc_error *e, const json_t *root, const json_t **ret) {
        const json_t *cur = json_object_get(root, "current-context"),
                     *ctxs = json_object_get(root, "contexts");
        const json_t *ctx;

        if (cur && !json_is_null(cur) && !json_is_string(cur))
                return kc_fail(e, "current-context must be a string");
        if (json_is_string(cur) && json_string_length(cur) > 0)
                return kc_named(e, root, "context", json_string_value(cur), "current-context", ret);

        if (!json_is_array(ctxs) || json_array_size(ctxs) == 0)
                return kc_fail(e, "the kubeconfig has no contexts");
        if (json_array_size(ctxs) > 1)
                return kc_fail(e, "the kubeconfig has %zu contexts and no current-context to choose one",
                               json_array_size(ctxs));
        ctx = json_object_get(json_array_get(ctxs, 0), "context");
        if (!json_is_object(ctx))
                return kc_fail(e, "the kubeconfig's context has no context mapping");
        *ret = ctx;
        return 0;
}

/* A field that names a file instead of embedding its content. */
static int kc_refuse_file(const struct kc_error *e, const json_t *obj, const char *key,
                          const char *embedded) {
        if (json_object_get(obj, key))
                return kc_fail(e, "the kubeconfig must embed its credentials (%s), not name files (%s)",
                               embedded, key);
        return 0;
}

/* server: https://host[:port][/path] without credentials, query or fragment; a trailing '/' is dropped. */
static int kc_server(const struct kc_error *e, const json_t *cluster, struct cm_kubeconfig *k) {
        struct cm_endpoint ep;
        const json_t *v = NULL;
        const char *s, *host, *p;
        size_t n;
        int r;

        r = kc_string(e, cluster, "server", "the cluster's", &v);
        if (r < 0)
                return r;
        if (!v)
                return kc_fail(e, "the cluster has no server");
        s = json_string_value(v);
        n = json_string_length(v);
        if (n < 8 || strncasecmp(s, "https://", 8) != 0)
                return kc_fail(e, "the cluster's server must be an https:// URL");
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] <= 0x20 || (unsigned char) s[i] >= 0x7f || s[i] == '?' ||
                    s[i] == '#' || s[i] == '\\')
                        return kc_fail(e, "the cluster's server is not a valid URL (spaces, control or "
                                          "non-ASCII characters, a query or a fragment)");
        host = s + 8;
        p = strchr(host, '/');
        if (memchr(host, '@', p ? (size_t) (p - host) : strlen(host)))
                return kc_fail(e, "the cluster's server must not carry credentials (user@host)");
        if (host[0] == 0 || host[0] == '/' || host[0] == ':')
                return kc_fail(e, "the cluster's server names no host");
        while (n > 9 && s[n - 1] == '/')
                n--;
        k->server = strndup(s, n);
        if (!k->server)
                return kc_oom(e);
        if (cm_endpoint_parse(k->server, &ep) < 0)
                return kc_fail(e,
                               "the cluster's server must be https://host[:port][/path]: a host name or an "
                               "IP address ([...] for IPv6), a port from 1 to 65535");
        return 0;
}

static int kc_cluster(const struct kc_error *e, const json_t *cluster, struct cm_kubeconfig *k) {
        const json_t *insecure = json_object_get(cluster, "insecure-skip-tls-verify"), *ca = NULL,
                     *sni = NULL;
        int r;

        if (insecure && !json_is_boolean(insecure) && !json_is_null(insecure))
                return kc_fail(e, "insecure-skip-tls-verify must be true or false");
        if (json_is_true(insecure))
                return kc_fail(e,
                               "the kubeconfig turns TLS verification off (insecure-skip-tls-verify): the "
                               "API server must be verified against certificate-authority-data");
        r = kc_refuse_file(e, cluster, "certificate-authority", "certificate-authority-data");
        if (r < 0)
                return r;
        if (json_object_get(cluster, "proxy-url"))
                return kc_fail(e, "the cluster names a proxy-url, which the monitor does not support");

        r = kc_server(e, cluster, k);
        if (r < 0)
                return r;

        r = kc_string(e, cluster, "certificate-authority-data", "the cluster's", &ca);
        if (r < 0)
                return r;
        if (!ca)
                return kc_fail(e, "the cluster has no certificate-authority-data: the kubeconfig must embed "
                                  "the CA that signed the API server's certificate");
        r = b64_decode(json_string_value(ca), json_string_length(ca), &k->ca_pem, &k->ca_len);
        if (r == -ENOMEM)
                return kc_oom(e);
        if (r < 0)
                return kc_fail(e, "certificate-authority-data is not base64-encoded PEM");

        r = kc_string(e, cluster, "tls-server-name", "the cluster's", &sni);
        if (r < 0)
                return r;
        if (sni) {
                const char *s = json_string_value(sni);

                for (size_t i = 0; i < json_string_length(sni); i++)
                        if (!(s[i] >= 'a' && s[i] <= 'z') && !(s[i] >= 'A' && s[i] <= 'Z') &&
                            !(s[i] >= '0' && s[i] <= '9') && s[i] != '-' && s[i] != '.' && s[i] != '_')
                                return kc_fail(e, "tls-server-name must be a host name");
                k->tls_server_name = strdup(s);
                if (!k->tls_server_name)
                        return kc_oom(e);
        }
        return 0;
}

static int kc_user(const struct kc_error *e, const json_t *user, struct cm_kubeconfig *k) {
        static const char *const plugins[] = { "exec", "auth-provider" };
        const json_t *cert = NULL, *key = NULL, *token = NULL;
        int r;

        for (size_t i = 0; i < ELEMENTSOF(plugins); i++)
                if (json_object_get(user, plugins[i]))
                        return kc_fail(
                                e,
                                "the kubeconfig's user gets its credentials from a plugin (%s), which "
                                "the monitor does not run: embed a client certificate or a token",
                                plugins[i]);
        if (json_object_get(user, "username") || json_object_get(user, "password"))
                return kc_fail(e, "the kubeconfig's user signs in with a username and password, which the "
                                  "monitor does not support: embed a client certificate or a token");
        if ((r = kc_refuse_file(e, user, "client-certificate", "client-certificate-data")) < 0 ||
            (r = kc_refuse_file(e, user, "client-key", "client-key-data")) < 0 ||
            (r = kc_refuse_file(e, user, "tokenFile", "token")) < 0)
                return r;

        if ((r = kc_string(e, user, "client-certificate-data", "the user's", &cert)) < 0 ||
            (r = kc_string(e, user, "client-key-data", "the user's", &key)) < 0 ||
            (r = kc_string(e, user, "token", "the user's", &token)) < 0)
                return r;
        if (cert && !key)
                return kc_fail(e,
                               "the kubeconfig's user has client-certificate-data but no client-key-data");
        if (key && !cert)
                return kc_fail(e,
                               "the kubeconfig's user has client-key-data but no client-certificate-data");
        if (cert && token)
                return kc_fail(e,
                               "the kubeconfig's user has both a client certificate and a token: keep one");
        if (!cert && !token)
                return kc_fail(e,
                               "the kubeconfig's user has no credentials: embed client-certificate-data and "
                               "client-key-data, or a token");

        if (token) {
                const char *s = json_string_value(token);

                for (size_t i = 0; i < json_string_length(token); i++)
                        if ((unsigned char) s[i] <= 0x20 || (unsigned char) s[i] >= 0x7f)
                                return kc_fail(e, "the kubeconfig's token has characters a bearer token "
                                                  "cannot have");
                k->token = strdup(s);
                if (!k->token)
                        return kc_oom(e);
                return 0;
        }

        r = b64_decode(json_string_value(cert), json_string_length(cert), &k->cert_pem, &k->cert_len);
        if (r == -ENOMEM)
                return kc_oom(e);
        if (r < 0)
                return kc_fail(e, "client-certificate-data is not base64-encoded PEM");
        r = b64_decode(json_string_value(key), json_string_length(key), &k->key_pem, &k->key_len);
        if (r == -ENOMEM)
                return kc_oom(e);
        if (r < 0)
                return kc_fail(e, "client-key-data is not base64-encoded PEM");
        return 0;
}

static int kc_build(const struct kc_error *e, const json_t *root, struct cm_kubeconfig *k) {
        const json_t *kind = json_object_get(root, "kind"), *ctx = NULL, *cluster = NULL, *user = NULL,
                     *cname = NULL, *uname = NULL;
        int r;

        if (kind && !json_is_null(kind) &&
            (!json_is_string(kind) || !streq(json_string_value(kind), "Config")))
                return kc_fail(e, "the document is not a kubeconfig (its kind is not Config)");
        r = kc_context(e, root, &ctx);
        if (r < 0)
                return r;
        if ((r = kc_string(e, ctx, "cluster", "the context's", &cname)) < 0 ||
            (r = kc_string(e, ctx, "user", "the context's", &uname)) < 0)
                return r;
        if (!cname)
                return kc_fail(e, "the kubeconfig's context names no cluster");
        if (!uname)
                return kc_fail(e, "the kubeconfig's context names no user");
        r = kc_named(e, root, "cluster", json_string_value(cname), "the current context", &cluster);
        if (r < 0)
                return r;
        r = kc_named(e, root, "user", json_string_value(uname), "the current context", &user);
        if (r < 0)
                return r;
        r = kc_cluster(e, cluster, k);
        if (r < 0)
                return r;
        return kc_user(e, user, k);
}

int cm_kubeconfig_parse(const char *data, size_t len, struct cm_kubeconfig *ret, char *error,
                        size_t error_size) {
        const struct kc_error e = { .buf = error, .size = error_size };
        _cleanup_(cm_json_wipe_and_free) json_t *root = NULL;
        _cleanup_(cm_kubeconfig_done) struct cm_kubeconfig k = {};
        struct cm_doc_error derr = {};
        int r;

        if (!ret)
                return kc_fail(&e, "no place for the kubeconfig");
        if (len > CM_KUBECONFIG_MAX) {
                (void) kc_fail(&e, "the kubeconfig is larger than %u bytes", (unsigned) CM_KUBECONFIG_MAX);
                return -EFBIG;
        }
        if (!data || len == 0)
                return kc_fail(&e, "the kubeconfig is empty");

        r = cm_document_parse(data, len, &root, &derr);
        /* The parser's message may quote the input (a key's bytes): it goes no further than here. */
        cm_wipe(derr.message, sizeof(derr.message));
        if (r == -ENOMEM)
                return kc_oom(&e);
        if (r == -EFBIG) {
                (void) kc_fail(&e, "the kubeconfig is larger than %u bytes", (unsigned) CM_KUBECONFIG_MAX);
                return -EFBIG;
        }
        if (r < 0) {
                if (derr.line > 0)
                        return kc_fail(&e, "the kubeconfig is not valid YAML or JSON (line %u, column %u)",
                                       derr.line, derr.column);
                return kc_fail(&e, "the kubeconfig is not valid YAML or JSON");
        }
        if (!json_is_object(root))
                return kc_fail(&e, "the kubeconfig is not a mapping");

        r = kc_build(&e, root, &k);
        if (r < 0)
                return r;
        *ret = k;
        k = (struct cm_kubeconfig){};
        return 0;
}

void cm_kubeconfig_done(struct cm_kubeconfig *k) {
        if (!k)
                return;
        free(k->server);
        free(k->tls_server_name);
        free(k->ca_pem);
        free(k->cert_pem);
        if (k->key_pem) {
                cm_wipe(k->key_pem, k->key_len);
                free(k->key_pem);
        }
        k->token = cm_erase_and_free(k->token);
        *k = (struct cm_kubeconfig){};
}
