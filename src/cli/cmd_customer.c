/* SPDX-License-Identifier: Apache-2.0 */
/* `customer-access get|set`: the customer access defaults of an environment. */
#include "base/common.h"

#include "base/parse.h"
#include "base/strbuf.h"
#include "cli/internal.h"

#define LINE_MAX_BYTES 4096U
#define DETAIL_FORMAT "%-21s"
#define TOKEN_LIFETIME_MIN 600U
#define TOKEN_LIFETIME_MAX 31536000U

/* "Label:               value", the value cleaned of control characters. */
static int detail(struct cm_cli *cli, const char *label, const char *value) {
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT(LINE_MAX_BYTES);
        int r;

        r = strbuf_addf(&sb, DETAIL_FORMAT, label);
        if (r >= 0)
                r = cm_output_add_clean(&sb, isempty(value) ? "-" : value);
        if (r < 0 && (r != -ENOBUFS || !sb.buf))
                return r;
        fprintf(cli->out, "%s\n", sb.buf);
        return 0;
}

/* "1 day", "10 minutes", "90061 seconds": a lifetime for people. */
static void lifetime_text(const json_t *v, char *buf, size_t size) {
        json_int_t s = json_is_integer(v) ? json_integer_value(v) : -1;

        if (s < 0)
                (void) snprintf(buf, size, "-");
        else if (s % 86400 == 0)
                (void) snprintf(buf, size, "%" JSON_INTEGER_FORMAT " day%s", s / 86400,
                                s == 86400 ? "" : "s");
        else if (s % 3600 == 0)
                (void) snprintf(buf, size, "%" JSON_INTEGER_FORMAT " hour%s", s / 3600,
                                s == 3600 ? "" : "s");
        else if (s % 60 == 0)
                (void) snprintf(buf, size, "%" JSON_INTEGER_FORMAT " minutes", s / 60);
        else
                (void) snprintf(buf, size, "%" JSON_INTEGER_FORMAT " seconds", s);
}

static int print_settings(struct cm_cli *cli, const json_t *doc) {
        const char *scope = cm_cli_json_str(doc, "roleScope");
        char buf[160];
        int r;

        if (cli->output != CM_OUTPUT_TABLE)
                return cm_cli_print_document(cli, doc);
        r = detail(cli, "Enabled:", json_is_false(json_object_get(doc, "enabled")) ? "no" : "yes");
        if (r >= 0)
                r = detail(cli, "Namespace:", cm_cli_json_str(doc, "namespace"));
        if (r >= 0)
                r = detail(cli, "Service account:", cm_cli_json_str(doc, "serviceAccount"));
        if (r >= 0)
                r = detail(cli, "Role:", cm_cli_json_str(doc, "role"));
        (void) snprintf(buf, sizeof(buf), "%s",
                        !scope                      ? "-"
                        : streq(scope, "cluster")   ? "cluster (a ClusterRoleBinding)"
                        : streq(scope, "namespace") ? "namespace (a RoleBinding in the customer namespace)"
                                                    : scope);
        if (r >= 0)
                r = detail(cli, "Role scope:", buf);
        lifetime_text(json_object_get(doc, "tokenLifetimeSeconds"), buf, sizeof(buf));
        if (r >= 0)
                r = detail(cli, "Token lifetime:", buf);
        if (json_is_integer(json_object_get(doc, "version")))
                (void) snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT,
                                json_integer_value(json_object_get(doc, "version")));
        else
                (void) snprintf(buf, sizeof(buf), "-");
        if (r >= 0)
                r = detail(cli, "Version:", buf);
        return r < 0 ? cm_cli_error(cli, "out of memory") : CM_EXIT_OK;
}

static int customer_get(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                        int argc, char **argv) {
        return cm_cli_settings_get_command(cli, noun, verb, argc, argv, "customer-access",
                                           "customer access settings", print_settings);
}

static int customer_set(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                        int argc, char **argv) {
        const char *ns = NULL, *sa = NULL, *role = NULL, *scope = NULL, *lifetime_s = NULL;
        bool enable = false, disable = false;
        const struct cm_cli_opt opts[] = {
                { "namespace", 0, CM_CLI_OPT_STRING, &ns },
                { "service-account", 0, CM_CLI_OPT_STRING, &sa },
                { "role", 0, CM_CLI_OPT_STRING, &role },
                { "role-scope", 0, CM_CLI_OPT_STRING, &scope },
                { "token-lifetime", 0, CM_CLI_OPT_STRING, &lifetime_s },
                { "enable", 0, CM_CLI_OPT_FLAG, &enable },
                { "disable", 0, CM_CLI_OPT_FLAG, &disable },
        };
        const struct {
                const char *key;
                const char *const *value;
        } strings[] = {
                { "namespace", &ns },
                { "serviceAccount", &sa },
                { "role", &role },
                { "roleScope", &scope },
        };
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        json_t *doc = NULL;
        unsigned lifetime = 0;
        size_t n_pos;
        int ret;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), NULL, 0, 0, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (!ns && !sa && !role && !scope && !lifetime_s && !enable && !disable)
                return cm_cli_usage_error(cli, noun, verb,
                                          "say what to change: --namespace, --service-account, --role, "
                                          "--role-scope, --token-lifetime, --enable or --disable");
        if (enable && disable)
                return cm_cli_usage_error(cli, noun, verb, "--enable and --disable contradict each other");
        if (scope && !streq(scope, "cluster") && !streq(scope, "namespace"))
                return cm_cli_usage_error(cli, noun, verb,
                                          "--role-scope takes cluster or namespace, not '%s'", scope);
        if (ns && !cm_dns_label_valid(ns))
                return cm_cli_usage_error(
                        cli, noun, verb,
                        "--namespace takes a DNS label (a-z, 0-9 and '-', at most 63), not "
                        "'%s'",
                        ns);
        if (sa && !cm_dns_label_valid(sa))
                return cm_cli_usage_error(
                        cli, noun, verb,
                        "--service-account takes a DNS label (a-z, 0-9 and '-', at most 63), "
                        "not '%s'",
                        sa);
        if (lifetime_s && (safe_atou(lifetime_s, &lifetime) < 0 || lifetime < TOKEN_LIFETIME_MIN ||
                           lifetime > TOKEN_LIFETIME_MAX))
                return cm_cli_usage_error(
                        cli, noun, verb,
                        "--token-lifetime takes seconds from %u (10 minutes) to %u (a year), "
                        "not '%s'",
                        TOKEN_LIFETIME_MIN, TOKEN_LIFETIME_MAX, lifetime_s);

        /* Read, change what was asked, write back only if nobody changed the settings in between. */
        if (cm_cli_settings_get(cli, "customer-access", "customer access settings", &path, &doc) < 0)
                return CM_EXIT_FAILURE;
        for (size_t i = 0; i < ELEMENTSOF(strings); i++)
                if (*strings[i].value &&
                    json_object_set_new(doc, strings[i].key, json_string(*strings[i].value)) < 0)
                        goto oom;
        if (lifetime_s &&
            json_object_set_new(doc, "tokenLifetimeSeconds", json_integer((json_int_t) lifetime)) < 0)
                goto oom;
        if ((enable || disable) && json_object_set_new(doc, "enabled", json_boolean(enable)) < 0)
                goto oom;
        ret = cm_cli_settings_put(cli, path.buf, doc, print_settings);
        json_decref(doc);
        return ret;
oom:
        json_decref(doc);
        return cm_cli_error(cli, "out of memory");
}

static const struct cm_cli_verb customer_verbs[] = {
        { "get", "", "Show the customer access every cluster of the environment gets.", customer_get },
        { "set",
          "[--namespace N] [--service-account S] [--role R] [--role-scope cluster|namespace]\n"
          "      [--token-lifetime SECONDS] [--enable | --disable]",
          "Change the given settings, keeping the others (admin). The token lifetime is 600 s (10\n"
          "      minutes) to 31536000 s (a year). Clusters get the change with their next create or update.",
          customer_set },
};

const struct cm_cli_noun cm_cli_noun_customer_access = {
        .name = "customer-access",
        .summary = "the customer namespace, service account and role of clusters: get, set",
        .description =
                "After every successful create and update, the service gives a cluster's customer a "
                "namespace and\n"
                "a service account bound to a ClusterRole (cluster-wide, or in the namespace only). A "
                "cluster's\n"
                "spec.customer {namespace, serviceAccount, role} overrides these defaults of its "
                "environment.\n"
                "`clustermgmt cluster kubeconfig NAME --customer` hands out a kubeconfig with a "
                "short-lived\n"
                "token of that service account.\n"
                "\n"
                "  clustermgmt customer-access set --role view --role-scope namespace --token-lifetime 3600",
        .verbs = customer_verbs,
        .n_verbs = ELEMENTSOF(customer_verbs),
};
