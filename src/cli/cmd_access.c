/* SPDX-License-Identifier: Apache-2.0 */
/* apikey, rolebinding, audit and whoami: access to the service (docs/security.md). */
#include "base/common.h"

#include "base/parse.h"
#include "base/strbuf.h"
#include "cli/internal.h"

/* Parses "ENV=ROLE" (ENV may be *) into a {environment, role} object. */
static json_t *grant_parse(const char *arg) {
        const char *eq = strchr(arg, '=');
        char env[128];

        if (!eq || eq == arg || (size_t) (eq - arg) >= sizeof(env) || isempty(eq + 1))
                return NULL;
        memcpy(env, arg, (size_t) (eq - arg));
        env[eq - arg] = 0;
        return json_pack("{s:s,s:s}", "environment", env, "role", eq + 1);
}

static int apikey_create(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                         int argc, char **argv) {
        const char *owner = NULL, *days_s = NULL;
        bool global_admin = false;
        struct cm_cli_list roles = {};
        const struct cm_cli_opt opts[] = {
                { "role", 0, CM_CLI_OPT_LIST, &roles },
                { "global-admin", 0, CM_CLI_OPT_FLAG, &global_admin },
                { "owner", 0, CM_CLI_OPT_STRING, &owner },
                { "expires-in-days", 0, CM_CLI_OPT_STRING, &days_s },
        };
        const char *pos[1];
        json_t *body = NULL, *list = NULL, *key = NULL;
        unsigned days = 0;
        size_t n_pos;
        int r = CM_EXIT_FAILURE;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (days_s && (safe_atou(days_s, &days) < 0 || days < 1 || days > 3650))
                return cm_cli_usage_error(cli, noun, verb, "--expires-in-days takes 1 to 3650, not '%s'",
                                          days_s);
        if (!global_admin && roles.n == 0)
                return cm_cli_usage_error(
                        cli, noun, verb,
                        "give the key roles (--role ENV=ROLE, ENV may be '*') or --global-admin");
        list = json_array();
        body = json_pack("{s:s,s:b}", "name", pos[0], "globalAdmin", global_admin);
        if (!list || !body)
                goto oom;
        for (size_t i = 0; i < roles.n; i++) {
                json_t *g = grant_parse(roles.items[i]);

                if (!g) {
                        r = cm_cli_usage_error(cli, noun, verb,
                                               "--role takes ENV=ROLE (like prod=operator), not '%s'",
                                               roles.items[i]);
                        goto out;
                }
                if (json_array_append_new(list, g) < 0)
                        goto oom;
        }
        if (json_object_set(body, "roles", list) < 0 ||
            (owner && json_object_set_new(body, "owner", json_string(owner)) < 0) ||
            (days && json_object_set_new(body, "expiresInDays", json_integer(days)) < 0))
                goto oom;
        if (cm_cli_call(cli, "POST", "/v1/apikeys", body, NULL, &key, NULL) < 0)
                goto out;
        if (cli->output != CM_OUTPUT_TABLE)
                r = cm_cli_print_document(cli, key);
        else {
                /* The token goes to standard output alone (for a pipe or a file); the rest to stderr. */
                fprintf(cli->err, "API key %s (%s) created; its token is shown this once:\n",
                        strna(cm_cli_json_str(key, "name")), strna(cm_cli_json_str(key, "id")));
                fprintf(cli->out, "%s\n", strna(cm_cli_json_str(key, "token")));
                r = CM_EXIT_OK;
        }
        goto out;
oom:
        r = cm_cli_error(cli, "out of memory");
out:
        json_decref(key);
        json_decref(body);
        json_decref(list);
        return r;
}

static int apikey_list(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                       int argc, char **argv) {
        json_t *doc = NULL;
        size_t n_pos;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, NULL, 0, NULL, 0, 0, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (cm_cli_call(cli, "GET", "/v1/apikeys", NULL, NULL, &doc, NULL) < 0)
                return CM_EXIT_FAILURE;
        r = cm_cli_print(cli, CM_RESOURCE_APIKEY, json_object_get(doc, "items"));
        json_decref(doc);
        return r;
}

/* DELETE of /v1/<what>/<id>, escaped. */
static int delete_by_id(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                        int argc, char **argv, const char *what, const char *done) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        const char *pos[1];
        size_t n_pos;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, NULL, 0, pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (strbuf_addf(&path, "/v1/%s/", what) < 0 || cm_url_escape_segment(&path, pos[0]) < 0)
                return cm_cli_error(cli, "the id is too long");
        if (cm_cli_call(cli, "DELETE", path.buf, NULL, NULL, NULL, NULL) < 0)
                return CM_EXIT_FAILURE;
        if (cli->output == CM_OUTPUT_TABLE)
                fprintf(cli->out, "%s %s\n", pos[0], done);
        return CM_EXIT_OK;
}

static int apikey_revoke(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                         int argc, char **argv) {
        return delete_by_id(cli, noun, verb, argc, argv, "apikeys", "revoked");
}

static const struct cm_cli_verb apikey_verbs[] = {
        { "create", "NAME (--role ENV=ROLE... | --global-admin) [--owner WHO] [--expires-in-days N]",
          "Make an API key; prints its token once (stored only as a hash). ROLE: viewer, operator, admin;\n"
          "      ENV '*' grants the role in every environment. Global admin only.",
          apikey_create },
        { "list", "", "List the API keys (never their tokens): roles, expiry, last use, revoked.",
          apikey_list },
        { "revoke", "ID", "Revoke a key at once (the last global admin key cannot be revoked).",
          apikey_revoke },
};

const struct cm_cli_noun cm_cli_noun_apikey = {
        .name = "apikey",
        .summary = "API keys of machines and people: create, list, revoke",
        .description =
                "API keys authenticate callers (Authorization: Bearer <token>); their roles come from\n"
                "role bindings (see rolebinding).",
        .verbs = apikey_verbs,
        .n_verbs = ELEMENTSOF(apikey_verbs),
};

static int rolebinding_create(struct cm_cli *cli, const struct cm_cli_noun *noun,
                              const struct cm_cli_verb *verb, int argc, char **argv) {
        const char *env = NULL, *role = NULL, *apikey = NULL, *user = NULL, *group = NULL;
        const struct cm_cli_opt opts[] = {
                { "environment", 0, CM_CLI_OPT_STRING, &env }, { "role", 0, CM_CLI_OPT_STRING, &role },
                { "apikey", 0, CM_CLI_OPT_STRING, &apikey },   { "user", 0, CM_CLI_OPT_STRING, &user },
                { "group", 0, CM_CLI_OPT_STRING, &group },
        };
        const char *kind, *name;
        json_t *body, *b = NULL;
        size_t n_pos;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), NULL, 0, 0, &n_pos) < 0)
                return CM_EXIT_USAGE;
        kind = apikey ? "apikey" : user ? "user" : "group";
        name = apikey ?: user ?: group;
        if (!env || !role || !name || (!!apikey + !!user + !!group) != 1)
                return cm_cli_usage_error(
                        cli, noun, verb,
                        "give --environment ENV (or '*'), --role ROLE and one of --apikey ID, "
                        "--user SUBJECT, --group GROUP");
        body = json_pack("{s:s,s:{s:s,s:s},s:s}", "environment", env, "subject", "kind", kind, "name", name,
                         "role", role);
        if (!body)
                return cm_cli_error(cli, "out of memory");
        r = cm_cli_call(cli, "POST", "/v1/rolebindings", body, NULL, &b, NULL) < 0
                    ? CM_EXIT_FAILURE
                    : cm_cli_print(cli, CM_RESOURCE_ROLEBINDING, b);
        json_decref(body);
        json_decref(b);
        return r;
}

static int rolebinding_list(struct cm_cli *cli, const struct cm_cli_noun *noun,
                            const struct cm_cli_verb *verb, int argc, char **argv) {
        json_t *doc = NULL;
        size_t n_pos;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, NULL, 0, NULL, 0, 0, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (cm_cli_call(cli, "GET", "/v1/rolebindings", NULL, NULL, &doc, NULL) < 0)
                return CM_EXIT_FAILURE;
        r = cm_cli_print(cli, CM_RESOURCE_ROLEBINDING, json_object_get(doc, "items"));
        json_decref(doc);
        return r;
}

static int rolebinding_delete(struct cm_cli *cli, const struct cm_cli_noun *noun,
                              const struct cm_cli_verb *verb, int argc, char **argv) {
        return delete_by_id(cli, noun, verb, argc, argv, "rolebindings", "deleted");
}

static const struct cm_cli_verb rolebinding_verbs[] = {
        { "create", "--environment ENV --role ROLE (--apikey ID | --user SUBJECT | --group GROUP)",
          "Grant ROLE (viewer, operator, admin) in ENV ('*': every environment). Global admin only.",
          rolebinding_create },
        { "list", "", "List the role bindings.", rolebinding_list },
        { "delete", "ID", "Delete a role binding (takes effect at once).", rolebinding_delete },
};

const struct cm_cli_noun cm_cli_noun_rolebinding = {
        .name = "rolebinding",
        .summary = "who has which role where: create, list, delete",
        .description = "Roles per environment, granted to API keys, OIDC users and OIDC groups.",
        .verbs = rolebinding_verbs,
        .n_verbs = ELEMENTSOF(rolebinding_verbs),
};

/* `audit export [--after SEQ]`: every record after SEQ as JSON lines on standard output. */
static int audit_export(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                        int argc, char **argv) {
        const char *after_s = NULL;
        const struct cm_cli_opt opts[] = {
                { "after", 0, CM_CLI_OPT_STRING, &after_s },
        };
        uint64_t after = 0;
        struct cm_client *c;
        size_t n_pos;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), NULL, 0, 0, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (after_s && safe_atou64(after_s, &after) < 0)
                return cm_cli_usage_error(cli, noun, verb, "--after takes a record's seq, not '%s'",
                                          after_s);
        c = cm_cli_client(cli);
        if (!c)
                return CM_EXIT_FAILURE;
        for (;;) {
                _cleanup_(cm_client_response_done) struct cm_client_response resp = {};
                char path[96];
                struct cm_client_request req = { .method = "GET",
                                                 .path = path,
                                                 .max_body = 64U * 1024U * 1024U };
                uint64_t next = 0;
                int r;

                (void) cm_snprintf(path, sizeof(path), "/v1/audit?after=%" PRIu64 "&limit=1000", after);
                r = cm_client_perform(c, &req, &resp);
                if (r < 0)
                        return cm_cli_error(cli, "%s", cm_client_last_error(c));
                if (resp.status != 200)
                        return cm_cli_print_problem(cli, &resp);
                if (resp.body.len == 0)
                        break;
                if (fwrite(resp.body.buf, 1, resp.body.len, cli->out) != resp.body.len)
                        return cm_cli_error(cli, "cannot write the records: %s", strerror(errno));
                /* the seq of the last line is where the next page starts */
                {
                        const char *end = resp.body.buf + resp.body.len - 1, *last = end;
                        json_t *rec;
                        json_int_t seq;

                        while (last > resp.body.buf && last[-1] != '\n')
                                last--;
                        rec = json_loadb(last, (size_t) (end - last), 0, NULL);
                        seq = json_integer_value(json_object_get(rec, "seq"));
                        json_decref(rec);
                        if (*end != '\n' || seq <= 0 || (uint64_t) seq <= after)
                                return cm_cli_error(cli,
                                                    "the server's answer is not a page of audit records");
                        next = (uint64_t) seq;
                }
                after = next;
        }
        return fflush(cli->out) == 0 ? CM_EXIT_OK
                                     : cm_cli_error(cli, "cannot write the records: %s", strerror(errno));
}

static int audit_verify(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                        int argc, char **argv) {
        const json_t *problems, *p;
        json_t *doc = NULL;
        size_t n_pos, i;
        int r = CM_EXIT_OK;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, NULL, 0, NULL, 0, 0, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (cm_cli_call(cli, "GET", "/v1/audit/verify", NULL, NULL, &doc, NULL) < 0)
                return CM_EXIT_FAILURE;
        problems = json_object_get(doc, "problems");
        if (cli->output != CM_OUTPUT_TABLE)
                r = cm_cli_print_document(cli, doc);
        else if (json_is_true(json_object_get(doc, "ok")))
                fprintf(cli->out, "audit chain intact: %" JSON_INTEGER_FORMAT " records, last %s\n",
                        json_integer_value(json_object_get(doc, "records")),
                        strna(cm_cli_json_str(doc, "lastHash")));
        else {
                json_array_foreach(problems, i, p) {
                        fprintf(cli->out, "record %" JSON_INTEGER_FORMAT ": %s\n",
                                json_integer_value(json_object_get(p, "seq")),
                                strna(cm_cli_json_str(p, "problem")));
                }
                fprintf(cli->out,
                        "audit chain BROKEN: %" JSON_INTEGER_FORMAT " problems in %" JSON_INTEGER_FORMAT
                        " records\n",
                        json_integer_value(json_object_get(doc, "problemCount")),
                        json_integer_value(json_object_get(doc, "records")));
        }
        if (r == CM_EXIT_OK && !json_is_true(json_object_get(doc, "ok")))
                r = CM_EXIT_FAILURE;
        json_decref(doc);
        return r;
}

static const struct cm_cli_verb audit_verbs[] = {
        { "export", "[--after SEQ]", "Write the audit records (after SEQ) as JSON lines to standard output.",
          audit_export },
        { "verify", "", "Check the audit chain; exits 1 naming each changed, missing or reordered record.",
          audit_verify },
};

const struct cm_cli_noun cm_cli_noun_audit = {
        .name = "audit",
        .summary = "the tamper-evident audit log: export, verify",
        .description = "Every change, every read of a secret and every failed authentication is recorded.",
        .verbs = audit_verbs,
        .n_verbs = ELEMENTSOF(audit_verbs),
};

static int whoami_show(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                       int argc, char **argv) {
        const json_t *envs, *e;
        json_t *doc = NULL;
        size_t n_pos, i;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, NULL, 0, NULL, 0, 0, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (cm_cli_call(cli, "GET", "/v1/whoami", NULL, NULL, &doc, NULL) < 0)
                return CM_EXIT_FAILURE;
        if (cli->output != CM_OUTPUT_TABLE) {
                int r = cm_cli_print_document(cli, doc);
                json_decref(doc);
                return r;
        }
        fprintf(cli->out, "%s %s (%s), global role %s\n", strna(cm_cli_json_str(doc, "kind")),
                strna(cm_cli_json_str(doc, "id")), strna(cm_cli_json_str(doc, "name")),
                strna(cm_cli_json_str(doc, "globalRole")));
        envs = json_object_get(doc, "environments");
        json_array_foreach(envs, i, e) {
                fprintf(cli->out, "  %s: %s\n", strna(cm_cli_json_str(e, "name")),
                        strna(cm_cli_json_str(e, "role")));
        }
        json_decref(doc);
        return CM_EXIT_OK;
}

static const struct cm_cli_verb whoami_verbs[] = {
        { "show", "", "Who the server takes you for, and your role in each environment you reach.",
          whoami_show },
};

const struct cm_cli_noun cm_cli_noun_whoami = {
        .name = "whoami",
        .summary = "who you are to the service: show",
        .description = "The principal of your credentials and its roles.",
        .verbs = whoami_verbs,
        .n_verbs = ELEMENTSOF(whoami_verbs),
};
