/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "base/fileio.h"
#include "base/parse.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "cli/internal.h"

#define SSHKEY_FILE_MAX (64U * 1024U)

static int sshkey_create(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                         int argc, char **argv) {
        const char *private_file = NULL, *public_file = NULL;
        bool generate = false;
        const struct cm_cli_opt opts[] = {
                { "private-key-file", 0, CM_CLI_OPT_STRING, &private_file },
                { "public-key-file", 0, CM_CLI_OPT_STRING, &public_file },
                { "generate", 0, CM_CLI_OPT_FLAG, &generate },
        };
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        _cleanup_erase_free_ char *private_key = NULL;
        _cleanup_free_ char *public_key = NULL;
        struct strbuf body;
        size_t private_len = 0, public_len = 0, n_pos;
        const char *pos[1];
        json_t *key = NULL;
        int r, ret = CM_EXIT_FAILURE;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (generate && (private_file || public_file))
                return cm_cli_usage_error(cli, noun, verb,
                                          "--generate makes a new key: it takes no --private-key-file or "
                                          "--public-key-file");
        if (!generate && !private_file)
                return cm_cli_usage_error(cli, noun, verb,
                                          "give the key: --private-key-file FILE or --public-key-file FILE "
                                          "with it (checked against it), or --generate");

        if (private_file) {
                /* The secure reader wipes every copy it does not hand over; this one is wiped below. */
                r = cm_read_file(private_file, SSHKEY_FILE_MAX, true, &private_key, &private_len);
                if (r < 0)
                        return cm_cli_error(cli, "cannot read %s: %s", private_file,
                                            r == -EFBIG ? "larger than 64 KiB, not an SSH key"
                                                        : strerror(-r));
        }
        if (public_file) {
                r = cm_read_file(public_file, SSHKEY_FILE_MAX, false, &public_key, &public_len);
                if (r < 0)
                        return cm_cli_error(cli, "cannot read %s: %s", public_file,
                                            r == -EFBIG ? "larger than 64 KiB, not an SSH key"
                                                        : strerror(-r));
                while (public_len > 0 &&
                       (public_key[public_len - 1] == '\n' || public_key[public_len - 1] == '\r'))
                        public_key[--public_len] = 0;
        }

        /* The body carries the private key: built in a secret buffer, never through jansson. */
        strbuf_init_secret(&body, 2 * SSHKEY_FILE_MAX * 6 + 4096);
        if ((r = strbuf_adds(&body, "{\"name\":")) < 0 || (r = strbuf_add_json_string(&body, pos[0])) < 0)
                goto nomem;
        if (public_key && ((r = strbuf_adds(&body, ",\"publicKey\":")) < 0 ||
                           (r = strbuf_add_json_stringn(&body, public_key, public_len)) < 0))
                goto nomem;
        if (private_key && ((r = strbuf_adds(&body, ",\"privateKey\":")) < 0 ||
                            (r = strbuf_add_json_stringn(&body, private_key, private_len)) < 0))
                goto nomem;
        if (generate && (r = strbuf_adds(&body, ",\"generate\":true")) < 0)
                goto nomem;
        if ((r = strbuf_addch(&body, '}')) < 0)
                goto nomem;
        private_key = cm_erase_and_free(private_key);

        if (cm_cli_env_path(cli, &path, "sshkeys", NULL, NULL) < 0)
                goto nomem;
        ret = cm_cli_send_secret(cli, "POST", path.buf, &body, &key);
        if (ret != CM_EXIT_OK)
                goto out;
        if (cli->output != CM_OUTPUT_TABLE && key) {
                ret = cm_cli_print(cli, CM_RESOURCE_SSHKEY, key);
                goto out;
        }
        /* Generated: the public key, to put in the nodes' authorized_keys; the private key never leaves. */
        if (generate && json_is_string(json_object_get(key, "publicKey")))
                fprintf(cli->out, "ssh key %s created; add its public key to the nodes:\n%s\n", pos[0],
                        json_string_value(json_object_get(key, "publicKey")));
        else
                fprintf(cli->out, "ssh key %s created\n", pos[0]);
        goto out;
nomem:
        cm_cli_error(cli, "out of memory");
out:
        strbuf_release(&body);
        json_decref(key);
        return ret;
}

static int sshkey_list(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                       int argc, char **argv) {
        return cm_cli_list_command(cli, noun, verb, argc, argv, "sshkeys", CM_RESOURCE_SSHKEY);
}

static int sshkey_get(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                      int argc, char **argv) {
        return cm_cli_get_command(cli, noun, verb, argc, argv, "sshkeys", CM_RESOURCE_SSHKEY);
}

static int sshkey_delete(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                         int argc, char **argv) {
        return cm_cli_delete_command(cli, noun, verb, argc, argv, "sshkeys", "ssh key");
}

static const struct cm_cli_verb sshkey_verbs[] = {
        { "create", "NAME (--private-key-file FILE [--public-key-file FILE] | --generate)",
          "Store an SSH key for engines that reach nodes over SSH (spec.rke.nodes[].sshKey). The private "
          "key\n"
          "      is write-only: it is stored encrypted and never shown again. --generate makes an ed25519\n"
          "      key pair in the service and prints only its public key.",
          sshkey_create },
        { "list", "[--limit N]", "List the SSH keys (public parts only).", sshkey_list },
        { "get", "NAME", "Show one SSH key (public part only).", sshkey_get },
        { "delete", "NAME", "Delete an SSH key.", sshkey_delete },
};

const struct cm_cli_noun cm_cli_noun_sshkey = {
        .name = "sshkey",
        .summary = "SSH keys for engines that reach nodes over SSH: create, list, get, delete",
        .description = "SSH keys of an environment, named in cluster specs (spec.rke.nodes[].sshKey).",
        .verbs = sshkey_verbs,
        .n_verbs = ELEMENTSOF(sshkey_verbs),
};
