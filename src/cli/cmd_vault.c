/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `clustermgmt vault`: administration of the state vault, run on the host that holds the state
 * directory (not over HTTP). Key rotation is offline: stop the service first.
 */
#include "base/common.h"

#include "cli/internal.h"
#include "vault/crypto.h"
#include "vault/vault.h"

static int vault_rotate_key(struct cm_cli *cli, const struct cm_cli_noun *noun,
                            const struct cm_cli_verb *verb, int argc, char **argv) {
        const char *state_dir = NULL, *key_file = NULL, *new_key_file = NULL;
        bool keep_old = false;
        const struct cm_cli_opt opts[] = {
                { "state-dir", 0, CM_CLI_OPT_STRING, &state_dir },
                { "vault-key-file", 0, CM_CLI_OPT_STRING, &key_file },
                { "new-key-file", 0, CM_CLI_OPT_STRING, &new_key_file },
                { "keep-old", 0, CM_CLI_OPT_FLAG, &keep_old },
        };
        char key_id[CM_KEK_ID_MAX + 1] = "";
        const char *pos[1];
        size_t n_pos, rewrapped = 0;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), pos, 0, 0, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (!state_dir)
                state_dir = getenv("CLUSTERMGMT_STATE_DIR");
        if (!key_file)
                key_file = getenv("CLUSTERMGMT_VAULT_KEY_FILE");
        if (isempty(state_dir) || isempty(key_file))
                return cm_cli_usage_error(cli, noun, verb,
                                          "give the vault: --state-dir DIR and --vault-key-file FILE (the "
                                          "values `clustermgmt serve` runs with)");
        r = cm_vault_rotate_key(state_dir, key_file, new_key_file, keep_old, &rewrapped, key_id);
        if (r < 0) {
                const char *why = r == -ENOKEY ? "a file is sealed under a key the key file does not have"
                                  : r == -EKEYREJECTED
                                          ? "a file's data key does not open with the key file's key"
                                  : r == -EBADMSG ? "a stored file is damaged"
                                  : r == -EINVAL  ? "a key file is not a vault keyring"
                                  : r == -EEXIST  ? "the new key's id is already in the key file"
                                                  : strerror(-r);
                return cm_cli_error(cli,
                                    "key rotation stopped: %s. Every file is still readable with '%s'; run "
                                    "the rotation again once the cause is fixed",
                                    why, key_file);
        }
        if (cli->output == CM_OUTPUT_JSON)
                fprintf(cli->out, "{\"keyId\":\"%s\",\"rewrapped\":%zu,\"oldKeysKept\":%s}\n", key_id,
                        rewrapped, keep_old ? "true" : "false");
        else
                fprintf(cli->out, "vault key rotated: current key %s, %zu files re-wrapped%s\n", key_id,
                        rewrapped, keep_old ? ", old keys kept" : ", old keys removed");
        return CM_EXIT_OK;
}

static const struct cm_cli_verb vault_verbs[] = {
        { "rotate-key", "--state-dir DIR --vault-key-file FILE [--new-key-file FILE] [--keep-old]",
          "Put a new key-encryption key in front of the key file (generated, or the first key of\n"
          "      --new-key-file), re-wrap every file's data key under it without decrypting content, then\n"
          "      drop the old keys (unless --keep-old). Offline: stop the service first. Safe to interrupt\n"
          "      and run again.",
          vault_rotate_key },
};

const struct cm_cli_noun cm_cli_noun_vault = {
        .name = "vault",
        .summary = "the state vault on this host (offline administration): rotate-key",
        .description =
                "Administration of the encrypted state vault, run where the state directory is mounted.",
        .verbs = vault_verbs,
        .n_verbs = ELEMENTSOF(vault_verbs),
};
