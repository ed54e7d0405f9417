/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "base/fileio.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "cli/internal.h"

#define SECRET_FILE_MAX (64U * 1024U)

/*
 * `secret create NAME --from-file FILE` and `secret update NAME --from-file FILE` ("-": stdin). One
 * trailing newline is dropped (what `echo` and editors add to a password). The value goes into a
 * secret buffer, never through jansson, and is wiped once sent.
 */
static int secret_put(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                      int argc, char **argv, bool create) {
        const char *file = NULL;
        const struct cm_cli_opt opts[] = {
                { "from-file", 0, CM_CLI_OPT_STRING, &file },
        };
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        _cleanup_erase_free_ char *value = NULL;
        struct strbuf body;
        const char *pos[1];
        size_t n = 0, n_pos;
        json_t *rec = NULL;
        int r, ret = CM_EXIT_FAILURE;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (!file)
                return cm_cli_usage_error(cli, noun, verb,
                                          "give the value with --from-file FILE (- reads stdin), never on "
                                          "the command line");
        r = cm_read_file(streq(file, "-") ? "/dev/stdin" : file, SECRET_FILE_MAX, true, &value, &n);
        if (r < 0)
                return cm_cli_error(cli, "cannot read %s: %s", streq(file, "-") ? "stdin" : file,
                                    r == -EFBIG ? "larger than 64 KiB" : strerror(-r));
        if (n > 0 && value[n - 1] == '\n')
                value[--n] = 0;
        if (n > 0 && value[n - 1] == '\r')
                value[--n] = 0;
        if (n == 0)
                return cm_cli_error(cli, "%s is empty: a secret needs a value",
                                    streq(file, "-") ? "stdin" : file);

        strbuf_init_secret(&body, SECRET_FILE_MAX * 6 + 1024);
        if ((create &&
             ((r = strbuf_adds(&body, "{\"name\":")) < 0 ||
              (r = strbuf_add_json_string(&body, pos[0])) < 0 || (r = strbuf_addch(&body, ',')) < 0)) ||
            (!create && (r = strbuf_addch(&body, '{')) < 0) || (r = strbuf_adds(&body, "\"value\":")) < 0 ||
            (r = strbuf_add_json_stringn(&body, value, n)) < 0 || (r = strbuf_addch(&body, '}')) < 0) {
                cm_cli_error(cli, "out of memory");
                goto out;
        }
        value = cm_erase_and_free(value);
        if (cm_cli_env_path(cli, &path, "secrets", create ? NULL : pos[0], NULL) < 0) {
                cm_cli_error(cli, "the name is too long");
                goto out;
        }
        ret = cm_cli_send_secret(cli, create ? "POST" : "PUT", path.buf, &body, &rec);
        if (ret != CM_EXIT_OK)
                goto out;
        if (cli->output != CM_OUTPUT_TABLE && rec) {
                ret = cm_cli_print(cli, CM_RESOURCE_SECRET, rec);
                goto out;
        }
        fprintf(cli->out, "secret %s %s\n", pos[0], create ? "created" : "updated");
        ret = CM_EXIT_OK;
out:
        strbuf_release(&body);
        json_decref(rec);
        return ret;
}

static int secret_create(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                         int argc, char **argv) {
        return secret_put(cli, noun, verb, argc, argv, true);
}

static int secret_update(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                         int argc, char **argv) {
        return secret_put(cli, noun, verb, argc, argv, false);
}

static int secret_list(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                       int argc, char **argv) {
        return cm_cli_list_command(cli, noun, verb, argc, argv, "secrets", CM_RESOURCE_SECRET);
}

static int secret_get(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                      int argc, char **argv) {
        return cm_cli_get_command(cli, noun, verb, argc, argv, "secrets", CM_RESOURCE_SECRET);
}

static int secret_delete(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                         int argc, char **argv) {
        return cm_cli_delete_command(cli, noun, verb, argc, argv, "secrets", "secret");
}

static const struct cm_cli_verb secret_verbs[] = {
        { "create", "NAME --from-file FILE",
          "Store a secret (FILE - reads stdin; one trailing newline is dropped). It is write-only: kept\n"
          "      encrypted, used by engines, never shown again.",
          secret_create },
        { "update", "NAME --from-file FILE",
          "Replace a secret's value; clusters use it from their next operation.", secret_update },
        { "list", "[--limit N]", "List the secrets (names and sizes, never values).", secret_list },
        { "get", "NAME", "Show one secret's record (never its value).", secret_get },
        { "delete", "NAME", "Delete a secret.", secret_delete },
};

const struct cm_cli_noun cm_cli_noun_secret = {
        .name = "secret",
        .summary = "write-only secrets engines use (registry passwords): create, update, list, get, delete",
        .description = "Secrets of an environment, named in cluster specs: a private registry's password\n"
                       "(spec.rke.privateRegistries[].passwordSecret).",
        .verbs = secret_verbs,
        .n_verbs = ELEMENTSOF(secret_verbs),
};
