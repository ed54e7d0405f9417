/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "base/parse.h"
#include "cli/internal.h"

static int env_path(struct cm_cli *cli, struct strbuf *sb, const char *name) {
        int r;

        if ((r = strbuf_adds(sb, "/v1/environments")) < 0)
                return r;
        if (name && ((r = strbuf_addch(sb, '/')) < 0 || (r = cm_url_escape_segment(sb, name)) < 0))
                return r;
        return 0;
}

static int env_create(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                      int argc, char **argv) {
        struct cm_cli_list labels = {};
        const struct cm_cli_opt opts[] = {
                { "label", 0, CM_CLI_OPT_LIST, &labels },
        };
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        json_t *body = NULL, *lobj, *env = NULL;
        const char *pos[1];
        size_t n_pos;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        body = json_pack("{s:s, s:{}}", "name", pos[0], "labels");
        if (!body)
                return cm_cli_error(cli, "out of memory");
        lobj = json_object_get(body, "labels");
        for (size_t i = 0; i < labels.n; i++) {
                const char *reason = NULL;

                r = cm_cli_label_parse(labels.items[i], lobj, &reason);
                if (r == -ENOMEM) {
                        json_decref(body);
                        return cm_cli_error(cli, "out of memory");
                }
                if (r < 0) {
                        json_decref(body);
                        return cm_cli_usage_error(cli, noun, verb, "invalid --label '%s': %s",
                                                  labels.items[i], reason);
                }
        }
        if (env_path(cli, &path, NULL) < 0) {
                json_decref(body);
                return cm_cli_error(cli, "out of memory");
        }
        r = cm_cli_call(cli, "POST", path.buf, body, NULL, &env, NULL);
        json_decref(body);
        if (r < 0)
                return CM_EXIT_FAILURE;
        if (cli->output == CM_OUTPUT_TABLE || !json_is_object(env))
                fprintf(cli->out, "environment %s created\n", pos[0]);
        else
                r = cm_cli_print(cli, CM_RESOURCE_ENVIRONMENT, env);
        json_decref(env);
        return r < 0 ? CM_EXIT_FAILURE : r;
}

static int env_list(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                    int argc, char **argv) {
        const char *limit_s = NULL;
        const struct cm_cli_opt opts[] = {
                { "limit", 0, CM_CLI_OPT_STRING, &limit_s },
        };
        const char *pos[1];
        json_t *items = NULL;
        unsigned limit = 0;
        size_t n_pos;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), pos, 0, 0, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (limit_s && (safe_atou(limit_s, &limit) < 0 || limit < 1 || limit > 500))
                return cm_cli_usage_error(cli, noun, verb, "--limit takes a number from 1 to 500, not '%s'",
                                          limit_s);
        if (cm_cli_list(cli, "/v1/environments", limit, &items) < 0)
                return CM_EXIT_FAILURE;
        r = cm_cli_print(cli, CM_RESOURCE_ENVIRONMENT, items);
        json_decref(items);
        return r;
}

static int env_get(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                   int argc, char **argv) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        const char *pos[1];
        json_t *env = NULL;
        size_t n_pos;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, NULL, 0, pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (env_path(cli, &path, pos[0]) < 0)
                return cm_cli_error(cli, "the name is too long");
        if (cm_cli_call(cli, "GET", path.buf, NULL, NULL, &env, NULL) < 0)
                return CM_EXIT_FAILURE;
        if (!json_is_object(env)) {
                json_decref(env);
                return cm_cli_error(cli, "the answer is not an environment");
        }
        r = cm_cli_print(cli, CM_RESOURCE_ENVIRONMENT, env);
        json_decref(env);
        return r;
}

static int env_delete(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                      int argc, char **argv) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        const char *pos[1];
        size_t n_pos;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, NULL, 0, pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (env_path(cli, &path, pos[0]) < 0)
                return cm_cli_error(cli, "the name is too long");
        if (cm_cli_call(cli, "DELETE", path.buf, NULL, NULL, NULL, NULL) < 0)
                return CM_EXIT_FAILURE;
        if (cli->output == CM_OUTPUT_TABLE)
                fprintf(cli->out, "environment %s deleted\n", pos[0]);
        return CM_EXIT_OK;
}

static const struct cm_cli_verb env_verbs[] = {
        { "create", "NAME [--label KEY=VALUE]...",
          "Create an environment (a tenant that owns clusters and keys).", env_create },
        { "list", "[--limit N]", "List the environments you can see.", env_list },
        { "get", "NAME", "Show one environment.", env_get },
        { "delete", "NAME", "Delete an environment; it must have no clusters left.", env_delete },
};

const struct cm_cli_noun cm_cli_noun_env = {
        .name = "env",
        .summary = "environments (tenants): create, list, get, delete",
        .description =
                "Environments are tenants: every cluster and SSH key belongs to one, and access is granted\n"
                "per environment. Other commands pick theirs with --env (default \"default\").",
        .verbs = env_verbs,
        .n_verbs = ELEMENTSOF(env_verbs),
};
