/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The rke engine's pure parts: validation of spec.rke, rendering of cluster.yml, and reading rke's
 * output (redaction, error lines). No I/O here.
 *
 * cluster.yml is written by hand rather than through libyaml's emitter: every scalar is emitted
 * double-quoted with escapes, the structure is fixed, and the validated inputs are plain ASCII, so a
 * few lines of quoting give deterministic output that is easy to read in golden files.
 */
#include "base/common.h"

#include <arpa/inet.h>
#include <strings.h>

#include "api/json.h"
#include "api/problem.h"
#include "base/parse.h"
#include "base/strbuf.h"
#include "engine/rke/rke.h"

static bool ascii_isdigit(char c) {
        return c >= '0' && c <= '9';
}

static bool ascii_islower(char c) {
        return c >= 'a' && c <= 'z';
}

static bool ascii_isalnum(char c) {
        return ascii_isdigit(c) || ascii_islower(c) || (c >= 'A' && c <= 'Z');
}

static const char *const roles_known[] = { "controlplane", "etcd", "worker", NULL };
static const char *const plugins_known[] = { "canal", "calico", "flannel", "weave", "none", NULL };

static bool in_list(const char *s, const char *const *list) {
        for (; *list; list++)
                if (streq(s, *list))
                        return true;
        return false;
}

static bool dns_name_valid(const char *s) {
        size_t n = strlen(s), label = 0;

        if (n == 0 || n > 253)
                return false;
        for (size_t i = 0; i <= n; i++) {
                char c = s[i];

                if (c == '.' || c == 0) {
                        if (label == 0 || label > 63 || s[i - 1] == '-')
                                return false;
                        label = 0;
                        continue;
                }
                if (!(ascii_isalnum(c) || (c == '-' && label > 0)))
                        return false;
                label++;
        }
        return true;
}

static bool address_valid(const char *s) {
        unsigned char buf[sizeof(struct in6_addr)];

        return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1 || dns_name_valid(s);
}

/* A Linux user name as useradd takes it. */
static bool user_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > 32 || !(ascii_islower(s[0]) || s[0] == '_'))
                return false;
        for (size_t i = 1; i < n; i++)
                if (!(ascii_islower(s[i]) || ascii_isdigit(s[i]) || strchr("_.-", s[i])))
                        return false;
        return true;
}

/* A registry host[:port][/path]. */
/* A registry user as rke writes it into Docker's auth config: printable ASCII, no spaces or quotes. */
static bool registry_user_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > 255)
                return false;
        for (; *s; s++)
                if (*s <= ' ' || *s > '~' || *s == '"' || *s == '\\' || *s == '\'')
                        return false;
        return true;
}

static bool registry_url_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > 253 || !ascii_isalnum(s[0]))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!(ascii_isalnum(s[i]) || strchr(".-:/_", s[i])))
                        return false;
        return true;
}

static bool flag_name_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > 63 || !(ascii_islower(s[0]) || ascii_isdigit(s[0])))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!(ascii_islower(s[i]) || ascii_isdigit(s[i]) || s[i] == '-'))
                        return false;
        return true;
}

static bool printable_ascii(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] < 0x20 || (unsigned char) s[i] > 0x7e)
                        return false;
        return true;
}

static bool int_in(const json_t *v, json_int_t lo, json_int_t hi) {
        return json_is_integer(v) && json_integer_value(v) >= lo && json_integer_value(v) <= hi;
}

/* Checks that v is an object; adds an error naming what it should be otherwise. */
static bool want_object(const json_t *v, const char *field, const char *example, struct cm_problem *p) {
        if (json_is_object(v))
                return true;
        cm_problem_add(p, field, "must be an object like %s, not %s", example, cm_json_type_name(v));
        return false;
}

static void validate_node(const json_t *n, const char *field, unsigned *roles_seen, struct cm_problem *p) {
        static const char *const allowed[] = { "address", "port", "user", "roles", "sshKey", NULL };
        char f[128];
        const json_t *v;

        if (!want_object(n, field, "{\"address\": \"10.0.1.10\", \"user\": \"ubuntu\", ...}", p))
                return;
        (void) cm_json_check_fields(n, field, allowed, p);

        cm_json_path(f, sizeof(f), field, "address");
        v = json_object_get(n, "address");
        if (!v)
                cm_problem_add(p, f, "required: the node's IPv4 or IPv6 address or DNS name");
        else if (!json_is_string(v) || !address_valid(json_string_value(v)))
                cm_problem_add(p, f, "must be an IPv4 or IPv6 address or a DNS name");

        cm_json_path(f, sizeof(f), field, "port");
        v = json_object_get(n, "port");
        if (v && !int_in(v, 1, 65535))
                cm_problem_add(p, f, "must be a port number from 1 to 65535 (default 22)");

        cm_json_path(f, sizeof(f), field, "user");
        v = json_object_get(n, "user");
        if (!v)
                cm_problem_add(p, f, "required: the user rke logs in as over SSH");
        else if (!json_is_string(v) || !user_valid(json_string_value(v)))
                cm_problem_add(p, f, "must be a user name like ubuntu (lowercase letters, digits, _ . -)");

        cm_json_path(f, sizeof(f), field, "sshKey");
        v = json_object_get(n, "sshKey");
        if (!v)
                cm_problem_add(p, f,
                               "required: the name of an SSH key of the environment (`sshkey create`)");
        else if (!json_is_string(v) || !cm_dns_label_valid(json_string_value(v)))
                cm_problem_add(p, f, "must be the name of an SSH key of the environment");

        cm_json_path(f, sizeof(f), field, "roles");
        v = json_object_get(n, "roles");
        if (!v)
                cm_problem_add(p, f, "required: a non-empty subset of controlplane, etcd, worker");
        else if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > 3)
                cm_problem_add(p, f, "must be a non-empty list of controlplane, etcd, worker");
        else {
                unsigned mine = 0;
                size_t i;
                json_t *r;

                json_array_foreach(v, i, r) {
                        const char *s = json_string_value(r);
                        unsigned bit = 0;

                        for (size_t k = 0; s && roles_known[k]; k++)
                                if (streq(s, roles_known[k]))
                                        bit = 1U << k;
                        if (!bit || (mine & bit)) {
                                char fi[160];

                                cm_json_path_index(fi, sizeof(fi), f, i);
                                cm_problem_add(p, fi,
                                               bit ? "is given twice"
                                                   : "must be one of controlplane, etcd, worker");
                        }
                        mine |= bit;
                }
                *roles_seen |= mine;
        }
}

static void validate_nodes(const json_t *nodes, struct cm_problem *p) {
        unsigned roles = 0;
        size_t i;
        json_t *n;

        if (!nodes) {
                cm_problem_add(p, "spec.rke.nodes", "required: at least one node");
                return;
        }
        if (!json_is_array(nodes) || json_array_size(nodes) < 1 ||
            json_array_size(nodes) > CM_RKE_MAX_NODES) {
                cm_problem_add(p, "spec.rke.nodes", "must be a list of 1 to %d nodes", CM_RKE_MAX_NODES);
                return;
        }
        json_array_foreach(nodes, i, n) {
                char f[64];

                cm_json_path_index(f, sizeof(f), "spec.rke.nodes", i);
                validate_node(n, f, &roles, p);
                /* rke keys nodes by address: the same address twice is refused, whatever the ports. */
                for (size_t j = 0; j < i && json_is_object(n); j++) {
                        const char *a = json_string_value(json_object_get(n, "address"));
                        const char *b =
                                json_string_value(json_object_get(json_array_get(nodes, j), "address"));

                        if (a && b && strcasecmp(a, b) == 0) {
                                char fa[80];

                                cm_json_path(fa, sizeof(fa), f, "address");
                                cm_problem_add(p, fa,
                                               "%s is also the address of entry %zu; rke takes each address "
                                               "once (one node per machine, whatever its SSH port)",
                                               a, j);
                                break;
                        }
                }
        }
        if (!(roles & 1U))
                cm_problem_add(p, "spec.rke.nodes", "needs at least one node with the role controlplane");
        if (!(roles & 2U))
                cm_problem_add(p, "spec.rke.nodes", "needs at least one node with the role etcd");
}

static void validate_extra_args(const json_t *s, const char *field, struct cm_problem *p) {
        static const char *const allowed[] = { "extraArgs", NULL };
        const json_t *args, *v;
        const char *k;
        char f[96];

        if (!want_object(s, field, "{\"extraArgs\": {}}", p))
                return;
        (void) cm_json_check_fields(s, field, allowed, p);
        args = json_object_get(s, "extraArgs");
        if (!args)
                return;
        cm_json_path(f, sizeof(f), field, "extraArgs");
        if (!want_object(args, f, "{\"flag-name\": \"value\"}", p))
                return;
        if (json_object_size(args) > CM_RKE_MAX_EXTRA_ARGS) {
                cm_problem_add(p, f, "has more than %d flags", CM_RKE_MAX_EXTRA_ARGS);
                return;
        }
        json_object_foreach(CM_UNCONST(json_t *, args), k, v) {
                char fk[192];

                if (!flag_name_valid(k)) {
                        cm_problem_add(p, f,
                                       "flag names are 1-63 lowercase letters, digits and '-' (without "
                                       "the leading --)");
                        continue;
                }
                cm_json_path(fk, sizeof(fk), f, k);
                if (!json_is_string(v) || json_string_length(v) > CM_RKE_EXTRA_ARG_VALUE_MAX ||
                    !printable_ascii(json_string_value(v), json_string_length(v)))
                        cm_problem_add(p, fk, "must be a string of at most %d printable ASCII characters",
                                       CM_RKE_EXTRA_ARG_VALUE_MAX);
        }
}

void cm_rke_validate_spec(const json_t *spec, struct cm_problem *p) {
        static const char *const allowed[] = { "nodes",    "network", "etcdSnapshots", "privateRegistries",
                                               "services", NULL };
        const json_t *rke = json_object_get(spec, "rke"), *v;

        if (!rke) {
                cm_problem_add(p, "spec.rke",
                               "required with engine 'rke': the nodes to build the cluster on");
                return;
        }
        if (!want_object(rke, "spec.rke", "{\"nodes\": [...]}", p))
                return;
        (void) cm_json_check_fields(rke, "spec.rke", allowed, p);
        validate_nodes(json_object_get(rke, "nodes"), p);

        v = json_object_get(rke, "network");
        if (v && want_object(v, "spec.rke.network", "{\"plugin\": \"canal\"}", p)) {
                static const char *const net_allowed[] = { "plugin", NULL };
                const json_t *pl = json_object_get(v, "plugin");

                (void) cm_json_check_fields(v, "spec.rke.network", net_allowed, p);
                if (pl && (!json_is_string(pl) || !in_list(json_string_value(pl), plugins_known)))
                        cm_problem_add(p, "spec.rke.network.plugin",
                                       "must be one of canal, calico, flannel, weave, none");
        }

        v = json_object_get(rke, "etcdSnapshots");
        if (v && want_object(v, "spec.rke.etcdSnapshots",
                             "{\"enabled\": true, \"intervalHours\": 6, \"retentionHours\": 24}", p)) {
                static const char *const snap_allowed[] = { "enabled", "intervalHours", "retentionHours",
                                                            NULL };
                const json_t *e = json_object_get(v, "enabled"), *ih = json_object_get(v, "intervalHours"),
                             *rh = json_object_get(v, "retentionHours");

                (void) cm_json_check_fields(v, "spec.rke.etcdSnapshots", snap_allowed, p);
                if (e && !json_is_boolean(e))
                        cm_problem_add(p, "spec.rke.etcdSnapshots.enabled", "must be true or false");
                if (ih && !int_in(ih, 1, 24))
                        cm_problem_add(p, "spec.rke.etcdSnapshots.intervalHours",
                                       "must be a whole number of hours from 1 to 24 (default 12)");
                if (rh && !int_in(rh, 1, 8760))
                        cm_problem_add(p, "spec.rke.etcdSnapshots.retentionHours",
                                       "must be a whole number of hours from 1 to 8760 (default 72)");
                else if (rh && int_in(ih, 1, 24) && json_integer_value(rh) < json_integer_value(ih))
                        cm_problem_add(p, "spec.rke.etcdSnapshots.retentionHours",
                                       "must be at least intervalHours (%lld), or no snapshot is kept",
                                       (long long) json_integer_value(ih));
        }

        v = json_object_get(rke, "privateRegistries");
        if (v && (!json_is_array(v) || json_array_size(v) > CM_RKE_MAX_REGISTRIES))
                cm_problem_add(p, "spec.rke.privateRegistries", "must be a list of at most %d registries",
                               CM_RKE_MAX_REGISTRIES);
        else if (v) {
                static const char *const reg_allowed[] = { "url", "user", "passwordSecret", NULL };
                size_t i;
                json_t *r;

                json_array_foreach(v, i, r) {
                        char f[64], ff[96];
                        const json_t *u;

                        cm_json_path_index(f, sizeof(f), "spec.rke.privateRegistries", i);
                        if (!want_object(r, f, "{\"url\": \"registry.example.com\"}", p))
                                continue;
                        (void) cm_json_check_fields(r, f, reg_allowed, p);
                        cm_json_path(ff, sizeof(ff), f, "url");
                        u = json_object_get(r, "url");
                        if (!u)
                                cm_problem_add(p, ff, "required: the registry's host[:port]");
                        else if (!json_is_string(u) || !registry_url_valid(json_string_value(u)))
                                cm_problem_add(p, ff, "must be a registry like registry.example.com:5000");
                        {
                                const json_t *us = json_object_get(r, "user"),
                                             *ps = json_object_get(r, "passwordSecret");

                                cm_json_path(ff, sizeof(ff), f, "user");
                                if (us &&
                                    (!json_is_string(us) || !registry_user_valid(json_string_value(us))))
                                        cm_problem_add(
                                                p, ff,
                                                "must be 1-255 printable characters without spaces or "
                                                "quotes");
                                else if (!us && ps)
                                        cm_problem_add(p, ff,
                                                       "required with passwordSecret: the registry's user");
                                cm_json_path(ff, sizeof(ff), f, "passwordSecret");
                                if (ps &&
                                    (!json_is_string(ps) || !cm_dns_label_valid(json_string_value(ps))))
                                        cm_problem_add(p, ff,
                                                       "must name a secret of the environment (a DNS label; "
                                                       "`clustermgmt secret create NAME`)");
                                else if (us && !ps)
                                        cm_problem_add(
                                                p, ff,
                                                "required with user: the name of the secret that holds "
                                                "the password (`clustermgmt secret create NAME`)");
                        }
                }
        }

        v = json_object_get(rke, "services");
        if (v && want_object(v, "spec.rke.services", "{\"kubeApi\": {\"extraArgs\": {}}}", p)) {
                static const char *const svc_allowed[] = { "kubeApi", "kubelet", NULL };
                const json_t *s;

                (void) cm_json_check_fields(v, "spec.rke.services", svc_allowed, p);
                if ((s = json_object_get(v, "kubeApi")))
                        validate_extra_args(s, "spec.rke.services.kubeApi", p);
                if ((s = json_object_get(v, "kubelet")))
                        validate_extra_args(s, "spec.rke.services.kubelet", p);
        }
}

/* --- Rendering --- */

/* A YAML double-quoted scalar; bytes outside printable ASCII are escaped. */
static int add_quoted(struct strbuf *sb, const char *s) {
        int r = strbuf_addch(sb, '"');

        for (; r >= 0 && *s; s++) {
                unsigned char c = (unsigned char) *s;

                if (c == '"' || c == '\\')
                        r = strbuf_addf(sb, "\\%c", c);
                else if (c < 0x20 || c > 0x7e)
                        r = strbuf_addf(sb, "\\x%02x", c);
                else
                        r = strbuf_addch(sb, (char) c);
        }
        return r < 0 ? r : strbuf_addch(sb, '"');
}

static int add_kv(struct strbuf *sb, const char *indent, const char *key, const char *value) {
        int r = strbuf_addf(sb, "%s%s: ", indent, key);

        if (r >= 0)
                r = add_quoted(sb, value);
        return r < 0 ? r : strbuf_addch(sb, '\n');
}

static int cmp_keys(const void *a, const void *b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* extra_args of one service, keys sorted so that the output does not depend on the input's order. */
static int add_extra_args(struct strbuf *sb, const char *rke_name, const json_t *svc) {
        const json_t *args = json_object_get(svc, "extraArgs"), *v;
        const char *keys[CM_RKE_MAX_EXTRA_ARGS], *k;
        size_t n = 0;
        int r;

        if (!json_is_object(args) || json_object_size(args) == 0)
                return 0;
        json_object_foreach(CM_UNCONST(json_t *, args), k, v) {
                if (n >= ELEMENTSOF(keys) || !json_is_string(v))
                        return -EINVAL;
                keys[n++] = k;
        }
        qsort(keys, n, sizeof(keys[0]), cmp_keys);
        r = strbuf_addf(sb, "  %s:\n    extra_args:\n", rke_name);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                r = strbuf_adds(sb, "      ");
                if (r >= 0)
                        r = add_quoted(sb, keys[i]);
                if (r >= 0)
                        r = strbuf_adds(sb, ": ");
                if (r >= 0)
                        r = add_quoted(sb, json_string_value(json_object_get(args, keys[i])));
                if (r >= 0)
                        r = strbuf_addch(sb, '\n');
        }
        return r;
}

static int render_nodes(struct strbuf *sb, const json_t *nodes, const char *key_dir) {
        size_t i;
        json_t *n;
        int r = strbuf_adds(sb, "nodes:\n");

        json_array_foreach(nodes, i, n) {
                const char *address = json_string_value(json_object_get(n, "address"));
                const char *user = json_string_value(json_object_get(n, "user"));
                const char *key = json_string_value(json_object_get(n, "sshKey"));
                const json_t *port = json_object_get(n, "port"), *roles = json_object_get(n, "roles");
                char portbuf[16], keypath[PATH_MAX];
                size_t k;
                json_t *role;

                if (!address || !user || !key || !json_is_array(roles) || (port && !json_is_integer(port)))
                        return -EINVAL;
                if (cm_snprintf(portbuf, sizeof(portbuf), "%lld",
                                port ? (long long) json_integer_value(port) : 22LL) < 0 ||
                    cm_snprintf(keypath, sizeof(keypath), "%s/%s", key_dir, key) < 0)
                        return -EINVAL;
                if (r >= 0)
                        r = add_kv(sb, "  - ", "address", address);
                if (r >= 0)
                        r = add_kv(sb, "    ", "port", portbuf);
                if (r >= 0)
                        r = add_kv(sb, "    ", "user", user);
                if (r >= 0)
                        r = strbuf_adds(sb, "    role: [");
                json_array_foreach(roles, k, role) {
                        if (!json_is_string(role))
                                return -EINVAL;
                        if (r >= 0 && k > 0)
                                r = strbuf_adds(sb, ", ");
                        if (r >= 0)
                                r = add_quoted(sb, json_string_value(role));
                }
                if (r >= 0)
                        r = strbuf_adds(sb, "]\n");
                if (r >= 0)
                        r = add_kv(sb, "    ", "ssh_key_path", keypath);
                if (r < 0)
                        return r;
        }
        return r;
}

int cm_rke_render(const json_t *spec, const char *cluster_name, const char *key_dir,
                  const char *const *passwords, char **ret, size_t *ret_n) {
        _cleanup_(strbuf_releasep) struct strbuf sb;
        const json_t *rke = json_object_get(spec, "rke"), *nodes = json_object_get(rke, "nodes");
        const json_t *snap = json_object_get(rke, "etcdSnapshots"),
                     *regs = json_object_get(rke, "privateRegistries");
        const json_t *services = json_object_get(rke, "services");
        const char *version = json_string_value(json_object_get(spec, "kubernetesVersion"));
        const char *plugin = json_string_value(json_object_get(json_object_get(rke, "network"), "plugin"));
        char *text;
        int r;

        /* It may carry registry passwords: growing copies and wipes, release wipes. */
        strbuf_init_secret(&sb, CM_RKE_CLUSTER_YML_MAX);
        if (!json_is_object(rke) || !json_is_array(nodes) || isempty(cluster_name) || isempty(key_dir))
                return -EINVAL;
        r = strbuf_adds(&sb, "# Rendered by clustermgmt from the cluster's spec; edits are overwritten.\n");
        if (r >= 0)
                r = add_kv(&sb, "", "cluster_name", cluster_name);
        if (r >= 0 && !isempty(version))
                r = add_kv(&sb, "", "kubernetes_version", version);
        if (r >= 0)
                r = render_nodes(&sb, nodes, key_dir);
        if (r >= 0)
                r = strbuf_adds(&sb, "network:\n");
        if (r >= 0)
                r = add_kv(&sb, "  ", "plugin", plugin ?: "canal");

        if (r >= 0 && (json_is_object(snap) || json_is_object(services)))
                r = strbuf_adds(&sb, "services:\n");
        if (r >= 0 && json_is_object(snap)) {
                const json_t *e = json_object_get(snap, "enabled"),
                             *ih = json_object_get(snap, "intervalHours"),
                             *rh = json_object_get(snap, "retentionHours");
                long long interval = json_is_integer(ih) ? json_integer_value(ih) : 12;
                long long hours = json_is_integer(rh) ? json_integer_value(rh) : 72;

                if (interval < 1 || interval > 24 || hours < 1)
                        return -EINVAL;
                /* rke keeps a number of snapshots: as many as the retention period holds. */
                r = strbuf_addf(
                        &sb,
                        "  etcd:\n    backup_config:\n      enabled: %s\n      interval_hours: %lld\n"
                        "      retention: %lld\n",
                        json_is_false(e) ? "false" : "true", interval,
                        MAX((hours + interval - 1) / interval, 1LL));
        }
        if (r >= 0 && json_is_object(services)) {
                const json_t *s = json_object_get(services, "kubeApi");

                if (s)
                        r = add_extra_args(&sb, "kube-api", s);
                s = json_object_get(services, "kubelet");
                if (r >= 0 && s)
                        r = add_extra_args(&sb, "kubelet", s);
        }
        if (r >= 0 && json_is_array(regs) && json_array_size(regs) > 0) {
                size_t i;
                json_t *reg;

                r = strbuf_adds(&sb, "private_registries:\n");
                json_array_foreach(regs, i, reg) {
                        const char *url = json_string_value(json_object_get(reg, "url")),
                                   *user = json_string_value(json_object_get(reg, "user"));

                        if (!url)
                                return -EINVAL;
                        if (r >= 0)
                                r = add_kv(&sb, "  - ", "url", url);
                        if (r >= 0 && user) {
                                const char *pw = passwords ? passwords[i] : NULL;

                                /* printable ASCII only: YAML's escapes would change other bytes */
                                for (const char *c = pw; c && *c; c++)
                                        if (*c < ' ' || *c > '~')
                                                pw = NULL;
                                if (isempty(pw))
                                        return -ENOKEY;
                                r = add_kv(&sb, "    ", "user", user);
                                if (r >= 0)
                                        r = add_kv(&sb, "    ", "password", pw);
                        }
                }
        }
        if (r < 0)
                return r;
        text = strbuf_detach(&sb, ret_n);
        if (!text)
                return -ENOMEM;
        *ret = text;
        return 0;
}

size_t cm_rke_ssh_keys(const json_t *spec, const char **names, size_t max) {
        const json_t *nodes = json_object_get(json_object_get(spec, "rke"), "nodes");
        size_t i, n = 0;
        json_t *node;

        json_array_foreach(nodes, i, node) {
                const char *k = json_string_value(json_object_get(node, "sshKey"));
                bool seen = false;

                if (!k)
                        continue;
                for (size_t j = 0; j < n; j++)
                        seen = seen || streq(names[j], k);
                if (!seen && n < max)
                        names[n++] = k;
        }
        return n;
}

/* --- rke's output --- */

static bool is_base64_char(char c) {
        return ascii_isalnum(c) || c == '+' || c == '/' || c == '=';
}

static bool contains(const char *s, size_t n, const char *needle) {
        return memmem(s, n, needle, strlen(needle)) != NULL;
}

int cm_rke_redact_line(const char *line, size_t n, char *out, size_t size) {
        size_t o = 0;

        if (size == 0 || contains(line, n, "PRIVATE KEY") || contains(line, n, "-----BEGIN") ||
            contains(line, n, "-----END"))
                return -1;
        for (size_t i = 0; i < n;) {
                size_t run = 0;

                while (i + run < n && is_base64_char(line[i + run]))
                        run++;
                if (run >= 40) {
                        static const char mark[] = "[redacted]";

                        if (o + sizeof(mark) - 1 >= size)
                                break;
                        memcpy(out + o, mark, sizeof(mark) - 1);
                        o += sizeof(mark) - 1;
                        i += run;
                        continue;
                }
                if (run == 0)
                        run = 1;
                if (o + run >= size)
                        break;
                memcpy(out + o, line + i, run);
                o += run;
                i += run;
        }
        out[o] = 0;
        return (int) MIN(o, (size_t) INT_MAX);
}

bool cm_rke_parse_line(const char *line, size_t n, char *level, size_t level_size, char *msg,
                       size_t msg_size) {
        const char *lv = memmem(line, n, " level=", 7), *m = memmem(line, n, " msg=\"", 6), *end = line + n;
        size_t o = 0, ln = 0;

        if (!lv || !m || level_size == 0 || msg_size == 0)
                return false;
        lv += 7;
        while (lv + ln < end && lv[ln] != ' ' && ln + 1 < level_size)
                ln++;
        memcpy(level, lv, ln);
        level[ln] = 0;
        for (const char *s = m + 6; s < end && *s != '"' && o + 1 < msg_size; s++) {
                if (*s == '\\' && s + 1 < end) {
                        s++;
                        msg[o++] = *s == 'n' ? ' ' : *s == 't' ? ' ' : *s;
                } else
                        msg[o++] = *s;
        }
        msg[o] = 0;
        return true;
}

bool cm_rke_line_is_connection_failure(const char *line, size_t n) {
        static const char *const markers[] = {
                "Failed to set up SSH tunneling",
                "connection refused",
                "i/o timeout",
                "no route to host",
                "connection timed out",
                "connection reset",
                "handshake failed",
                "Unable to access node",
                "failed to connect to the following",
                NULL,
        };

        for (const char *const *m = markers; *m; m++)
                if (contains(line, n, *m))
                        return true;
        return false;
}

int cm_rke_kubeconfig_server(const char *text, size_t n, char *buf, size_t size) {
        const char *end = text + n;

        for (const char *l = text; l < end;) {
                const char *nl = memchr(l, '\n', (size_t) (end - l)) ?: end, *s = l;

                while (s < nl && (*s == ' ' || *s == '\t' || *s == '-'))
                        s++;
                if ((size_t) (nl - s) > 7 && strneq(s, "server:", 7)) {
                        const char *v = s + 7, *ve = nl;

                        while (v < ve && (*v == ' ' || *v == '"' || *v == '\''))
                                v++;
                        while (ve > v &&
                               (ve[-1] == ' ' || ve[-1] == '"' || ve[-1] == '\'' || ve[-1] == '\r'))
                                ve--;
                        if (ve == v || (size_t) (ve - v) >= size)
                                return -ENOENT;
                        memcpy(buf, v, (size_t) (ve - v));
                        buf[ve - v] = 0;
                        return 0;
                }
                l = nl + 1;
        }
        return -ENOENT;
}

bool cm_rke_tunnel_failure(const char *msg, char *host, size_t host_size, char *reason, size_t reason_size) {
        static const char prefix[] = "Failed to set up SSH tunneling for host [";
        const char *h = strstr(msg, prefix), *end;

        if (!h)
                return false;
        h += sizeof(prefix) - 1;
        end = strstr(h, "]: ");
        if (!end || (size_t) (end - h) >= host_size || end == h)
                return false;
        memcpy(host, h, (size_t) (end - h));
        host[end - h] = 0;
        (void) cm_strlcpy(reason, end + 3, reason_size);
        return true;
}

const char *cm_rke_tunnel_hint(const char *reason) {
        /* Login problems first: a Docker error message never carries these. */
        if (strstr(reason, "unable to authenticate") || strstr(reason, "handshake failed") ||
            strstr(reason, "no supported methods remain"))
                return "the node refused the SSH login: authorise the key's public half for the node's user "
                       "(~/.ssh/authorized_keys), or fix the node's user or sshKey in the spec";
        if (strstr(reason, "connection refused") || strstr(reason, "i/o timeout") ||
            strstr(reason, "no route to host") || strstr(reason, "connection timed out") ||
            strstr(reason, "network is unreachable"))
                return "the node's SSH port cannot be reached: check its address, port and firewall";
        if (strstr(reason, "Docker") || strstr(reason, "docker.sock"))
                return "SSH login worked, but Docker on the node cannot be reached: install and start "
                       "Docker, let the SSH user use /var/run/docker.sock (the docker group), and allow "
                       "stream-local forwarding in the node's sshd (AllowStreamLocalForwarding yes)";
        return "rke could not use the node over SSH";
}

size_t cm_rke_registry_secrets(const json_t *spec, const char **names, size_t max) {
        const json_t *regs = json_object_get(json_object_get(spec, "rke"), "privateRegistries");
        size_t i, n = 0;
        json_t *reg;

        json_array_foreach(regs, i, reg) {
                if (n >= max)
                        break;
                names[n++] = json_string_value(json_object_get(reg, "passwordSecret"));
        }
        return n;
}
