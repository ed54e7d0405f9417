/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <jansson.h>

#include "base/common.h"
#include "cli/cli.h"
#include "cli/output.h"
#include "client/client.h"

/*
 * What the subcommands share: the invocation's settings, argument parsing, calls to the API that
 * print errors for people, and waiting for operations. Not used outside src/cli.
 */

#define CM_CLI_DEFAULT_SERVER "http://127.0.0.1:8080"
#define CM_CLI_DEFAULT_ENV "default"
/* Everything printed at once (a list, a document) is built in a buffer of at most this size. */
#define CM_CLI_OUTPUT_MAX (64U * 1024U * 1024U)
/* At most this many items are gathered by following nextPageToken. */
#define CM_CLI_LIST_MAX 100000U
#define CM_CLI_LIST_VALUES_MAX 64U

struct cm_cli {
        FILE *out;
        FILE *err;
        const char *server; /* flag, CLUSTERMGMT_SERVER or the default */
        const char *env; /* flag, CLUSTERMGMT_ENV or "default" */
        const char *ca_file; /* flag or NULL */
        const char *token_flag;
        enum cm_output_format output;
        struct cm_client *client; /* created by cm_cli_client() on first use */
};

struct cm_cli_verb;

struct cm_cli_noun {
        const char *name;
        const char *summary;
        const char *description; /* printed by `clustermgmt NOUN --help` above the verbs */
        const struct cm_cli_verb *verbs;
        size_t n_verbs;
        /* Non-NULL for a noun without verbs (`clustermgmt events -f`): runs with the noun as argv[0]. */
        const struct cm_cli_verb *direct;
};

struct cm_cli_verb {
        const char *name;
        const char *synopsis; /* arguments and flags after the verb */
        const char *summary;
        int (*run)(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                   int argc, char **argv);
};

extern const struct cm_cli_noun cm_cli_noun_env;
extern const struct cm_cli_noun cm_cli_noun_cluster;
extern const struct cm_cli_noun cm_cli_noun_op;
extern const struct cm_cli_noun cm_cli_noun_sshkey;
extern const struct cm_cli_noun cm_cli_noun_secret;
extern const struct cm_cli_noun cm_cli_noun_policy;
extern const struct cm_cli_noun cm_cli_noun_apikey;
extern const struct cm_cli_noun cm_cli_noun_rolebinding;
extern const struct cm_cli_noun cm_cli_noun_audit;
extern const struct cm_cli_noun cm_cli_noun_whoami;
extern const struct cm_cli_noun cm_cli_noun_vault;
extern const struct cm_cli_noun cm_cli_noun_events;
extern const struct cm_cli_noun cm_cli_noun_webhook;
extern const struct cm_cli_noun cm_cli_noun_monitoring;
extern const struct cm_cli_noun cm_cli_noun_customer_access;
extern const struct cm_cli_noun cm_cli_noun_addon;

/* Repeated flag values (--label), in the order given. */
struct cm_cli_list {
        const char *items[CM_CLI_LIST_VALUES_MAX];
        size_t n;
};

enum cm_cli_opt_kind {
        CM_CLI_OPT_FLAG, /* bool * */
        CM_CLI_OPT_STRING, /* const char ** */
        CM_CLI_OPT_LIST, /* struct cm_cli_list * */
};

struct cm_cli_opt {
        const char *name; /* long name without dashes */
        char short_name; /* 0 when none */
        enum cm_cli_opt_kind kind;
        void *target;
};

/*
 * Parses the arguments after the verb (argv[0] is the verb): flags from opts ("--name value",
 * "--name=value", "-x value"), positional arguments into pos (between min_pos and max_pos of them),
 * "--" ends the flags. On a usage error prints it with the verb's synopsis and returns -EINVAL.
 */
_warn_unused_result_ int cm_cli_parse_args(struct cm_cli *cli, const struct cm_cli_noun *noun,
                                           const struct cm_cli_verb *verb, int argc, char **argv,
                                           const struct cm_cli_opt *opts, size_t n_opts, const char **pos,
                                           size_t min_pos, size_t max_pos, size_t *ret_n_pos);

/* Prints "error: ...", the verb's usage line and the help hint; returns CM_EXIT_USAGE. */
_printf_(4, 5) int cm_cli_usage_error(struct cm_cli *cli, const struct cm_cli_noun *noun,
                                      const struct cm_cli_verb *verb, const char *fmt, ...);
/* Prints "error: ..." to err; returns CM_EXIT_FAILURE. */
_printf_(2, 3) int cm_cli_error(struct cm_cli *cli, const char *fmt, ...);
/* Prints "warning: ..." to err. */
_printf_(2, 3) void cm_cli_warning(struct cm_cli *cli, const char *fmt, ...);

/*
 * Parses one --label value "KEY=VALUE" into labels (a JSON object). Keys are an optional DNS
 * subdomain prefix and '/', then 1-63 of [A-Za-z0-9._-] (253 in all); values 0-63 of the same
 * characters. On failure returns -EINVAL (or -EEXIST for a key given twice) and points *reason at a
 * static explanation.
 */
int cm_cli_label_parse(const char *arg, json_t *labels, const char **reason);

/* The client, created on first use (resolving the token); NULL after printing why it cannot be. */
struct cm_client *cm_cli_client(struct cm_cli *cli);

/*
 * Sends a request with a JSON body (or NULL) and decodes a JSON answer. On a 2xx answer returns 0
 * and hands over the decoded body when ret_json is not NULL (NULL for an empty body). On an error
 * answer or a transport error prints it for people and returns a negative errno (-EREMOTEIO for an
 * error answer; its status in *answer_status when not NULL).
 */
_warn_unused_result_ int cm_cli_call(struct cm_cli *cli, const char *method, const char *path,
                                     const json_t *body, const char *const *headers, json_t **ret_json,
                                     long *answer_status);
/*
 * Sends body, which holds a secret (a private key, a password), and releases it (a secret strbuf:
 * wiped) once sent. On a 2xx answer returns CM_EXIT_OK with the answer's JSON object in *ret_json
 * (NULL when it has none); otherwise prints why and returns CM_EXIT_FAILURE.
 */
int cm_cli_send_secret(struct cm_cli *cli, const char *method, const char *path, struct strbuf *body,
                       json_t **ret_json);
/* Prints an error answer (problem+json or not) with hints; returns CM_EXIT_FAILURE. */
int cm_cli_print_problem(struct cm_cli *cli, const struct cm_client_response *resp);

/* GETs path (which has no query) page by page and gathers the items; limit 0 gathers all of them. */
_warn_unused_result_ int cm_cli_list(struct cm_cli *cli, const char *path, unsigned limit,
                                     json_t **ret_items);

/* Prints a resource or a list of them (v an array) in the chosen output format; returns an exit status. */
int cm_cli_print(struct cm_cli *cli, enum cm_resource kind, const json_t *v);
/* Prints a document that has no table of its own as JSON (YAML with -o yaml); returns an exit status. */
int cm_cli_print_document(struct cm_cli *cli, const json_t *v);
/* `<noun> list [--limit N]` of an environment's collection ("clusters", "sshkeys"): every page, printed. */
int cm_cli_list_command(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                        int argc, char **argv, const char *collection, enum cm_resource kind);

/*
 * Reads and parses a YAML or JSON document (path "-": stdin; at most CM_DOCUMENT_MAX bytes) that must
 * be a mapping (what: the message when it is not); prints why when it cannot.
 */
int cm_cli_read_document(struct cm_cli *cli, const char *what, const char *path, json_t **ret);

/* `<noun> get NAME` and `<noun> delete NAME` of an environment's collection ("sshkeys", "secrets"). */
int cm_cli_get_command(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                       int argc, char **argv, const char *collection, enum cm_resource kind);
int cm_cli_delete_command(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                          int argc, char **argv, const char *collection, const char *what);

/* Prints a document for people (or as -o asks); returns an exit status. */
typedef int (*cm_cli_print_fn)(struct cm_cli *cli, const json_t *doc);

/*
 * Settings documents of the environment (what: "monitoring", "policies"), which carry their "version".
 * cm_cli_settings_get() GETs the document into *ret and its path into path; doc_name names it in the
 * error when the answer is not an object ("monitoring settings"; NULL takes any answer). It prints why
 * it fails. cm_cli_settings_get_command() is a `get` verb without arguments that prints the document.
 * cm_cli_settings_put() PUTs the changed doc with If-Match: "<its version>" (the member is taken out),
 * prints the answer, and explains a 412; it returns an exit status.
 */
_warn_unused_result_ int cm_cli_settings_get(struct cm_cli *cli, const char *what, const char *doc_name,
                                             struct strbuf *path, json_t **ret);
int cm_cli_settings_get_command(struct cm_cli *cli, const struct cm_cli_noun *noun,
                                const struct cm_cli_verb *verb, int argc, char **argv, const char *what,
                                const char *doc_name, cm_cli_print_fn print);
int cm_cli_settings_put(struct cm_cli *cli, const char *path, json_t *doc, cm_cli_print_fn print);

/* Builds "/v1/environments/<env>[/<what>[/<name>[/<rest>]]]" with the segments escaped. */
_warn_unused_result_ int cm_cli_env_path(struct cm_cli *cli, struct strbuf *sb, const char *what,
                                         const char *name, const char *rest);

/*
 * Polls the operation until it ends or timeout_sec passes (0: no timeout), printing progress and new
 * log lines to err. Prints the outcome and returns CM_EXIT_OK when it succeeded, CM_EXIT_FAILURE when
 * it failed or was cancelled (or cannot be read), CM_EXIT_TIMEOUT on timeout.
 */
int cm_cli_wait_operation(struct cm_cli *cli, const char *id, unsigned timeout_sec);

/* Parses --timeout SECONDS (a positive integer); prints a usage error and returns -EINVAL otherwise. */
_warn_unused_result_ int cm_cli_parse_timeout(struct cm_cli *cli, const struct cm_cli_noun *noun,
                                              const struct cm_cli_verb *verb, const char *s, unsigned *ret);

/* Prints the accepted operation (or, with wait, waits for it); returns an exit status. */
int cm_cli_operation_accepted(struct cm_cli *cli, json_t *op, bool wait, unsigned timeout_sec);

/* String member of a JSON object, or NULL. */
const char *cm_cli_json_str(const json_t *obj, const char *key);

/*
 * A table for people of something that is not one of output.h's resources (health conditions, webhook
 * deliveries): output.h's table (struct cm_output_table, the same layout as its resource tables),
 * printed to cli->out.
 */
#define CM_CLI_TABLE_COLUMNS_MAX CM_OUTPUT_TABLE_COLUMNS_MAX
#define CM_CLI_CELL_MAX CM_OUTPUT_CELL_MAX

struct cm_cli_table {
        struct cm_output_table table;
};

/* Starts t with its header row; -EINVAL for 0 or more than CM_CLI_TABLE_COLUMNS_MAX columns, -ENOMEM. */
_warn_unused_result_ static inline int cm_cli_table_init(struct cm_cli_table *t, const char *const *headers,
                                                         size_t n) {
        return cm_output_table_init(&t->table, headers, n);
}
/* Appends the next cell; -ENOMEM. */
_warn_unused_result_ static inline int cm_cli_table_add(struct cm_cli_table *t, const char *text) {
        return cm_output_table_add(&t->table, text);
}
/* Prints the table to cli->out; returns an exit status. */
int cm_cli_table_print(struct cm_cli *cli, const struct cm_cli_table *t);
/* Frees the cells; accepts NULL and a zeroed or half-built table, and leaves it zeroed. */
static inline void cm_cli_table_done(struct cm_cli_table *t) {
        cm_output_table_done(t ? &t->table : NULL);
}

/* Monitoring (cmd_monitor.c): the parts `cluster` shows. */

/*
 * The HEALTH cell of a cluster, from its Healthy condition: "Healthy" (with a short reason other than
 * Healthy: "Healthy (ExpiringSoon)"), the reason when it is False ("Unreachable"), "Unknown", or "-"
 * before the first probe. Server text: clean it before it reaches a terminal.
 */
void cm_cli_health_cell(const json_t *cluster, char *buf, size_t size);
/* Prints the health lines of `cluster get` (status, nodes, version, last probe); returns an exit status. */
int cm_cli_print_health_summary(struct cm_cli *cli, const json_t *cluster);
/* `cluster health NAME [--history N]`. */
int cm_cli_cluster_health(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                          int argc, char **argv);

/* Add-ons (cmd_addon.c): `cluster addon VERB CLUSTER [ADDON] ...`, the installations on a cluster. */
int cm_cli_cluster_addon(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                         int argc, char **argv);
