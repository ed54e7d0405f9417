/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "base/fileio.h"
#include "base/parse.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "cli/internal.h"
#include "cli/yaml.h"

#define CLUSTER_DOC_SHAPE "a cluster document is a mapping with name, labels and spec"

/* Members the server sets; a document saved with `cluster get -o yaml` carries them, and they are dropped. */
static const char *const server_owned[] = { "id",     "environment", "generation", "resourceVersion",
                                            "status", "createdAt",   "updatedAt" };

static bool is_server_owned(const char *key) {
        for (size_t i = 0; i < ELEMENTSOF(server_owned); i++)
                if (streq(key, server_owned[i]))
                        return true;
        return false;
}

/* Parses --label flags over base (a copy is made; NULL for none); prints why when one is wrong. */
static int merge_labels(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                        const json_t *base, const struct cm_cli_list *flags, json_t **ret) {
        json_t *flag_labels, *labels;
        int r;

        flag_labels = json_object();
        labels = base ? json_deep_copy(base) : json_object();
        if (!flag_labels || !labels) {
                json_decref(flag_labels);
                json_decref(labels);
                cm_cli_error(cli, "out of memory");
                return -ENOMEM;
        }
        for (size_t i = 0; i < flags->n; i++) {
                const char *reason = NULL;

                r = cm_cli_label_parse(flags->items[i], flag_labels, &reason);
                if (r < 0) {
                        json_decref(flag_labels);
                        json_decref(labels);
                        if (r == -ENOMEM)
                                cm_cli_error(cli, "out of memory");
                        else
                                cm_cli_usage_error(cli, noun, verb, "invalid --label '%s': %s",
                                                   flags->items[i], reason);
                        return -EINVAL;
                }
        }
        r = json_object_update(labels, flag_labels);
        json_decref(flag_labels);
        if (r < 0) {
                json_decref(labels);
                cm_cli_error(cli, "out of memory");
                return -ENOMEM;
        }
        *ret = labels;
        return 0;
}

/*
 * Checks a document against the command line (its name and environment, when it has them) and copies
 * the members to send into body, after the ones body already has. Prints why when it does not fit.
 */
static int document_to_body(struct cm_cli *cli, const char *file, const char *name, const json_t *doc,
                            json_t *body) {
        const json_t *v;
        const char *key;
        json_t *value;

        v = json_object_get(doc, "name");
        if (v && (!json_is_string(v) || !streq(json_string_value(v), name))) {
                cm_cli_error(cli,
                             "%s describes cluster '%s', but the command names '%s'; make them the same",
                             file, json_is_string(v) ? json_string_value(v) : "(not a string)", name);
                return -EINVAL;
        }
        v = json_object_get(doc, "environment");
        if (v && (!json_is_string(v) || !streq(json_string_value(v), cli->env))) {
                cm_cli_error(cli, "%s belongs to environment '%s', but --env is '%s'", file,
                             json_is_string(v) ? json_string_value(v) : "(not a string)", cli->env);
                return -EINVAL;
        }
        v = json_object_get(doc, "labels");
        if (v && !json_is_object(v)) {
                cm_cli_error(cli, "%s: labels must be a mapping of KEY: VALUE", file);
                return -EINVAL;
        }
        json_object_foreach(CM_UNCONST(json_t *, doc), key, value) {
                if (streq(key, "name") || streq(key, "labels") || is_server_owned(key) ||
                    json_object_get(body, key))
                        continue;
                if (json_object_set(body, key, value) < 0) {
                        cm_cli_error(cli, "out of memory");
                        return -ENOMEM;
                }
        }
        return 0;
}

static int cluster_create(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                          int argc, char **argv) {
        const char *file = NULL, *engine = NULL, *nodes_s = NULL, *timeout_s = NULL;
        struct cm_cli_list label_flags = {};
        bool wait = false;
        const struct cm_cli_opt opts[] = {
                { "file", 'f', CM_CLI_OPT_STRING, &file },   { "engine", 0, CM_CLI_OPT_STRING, &engine },
                { "nodes", 0, CM_CLI_OPT_STRING, &nodes_s }, { "label", 0, CM_CLI_OPT_LIST, &label_flags },
                { "wait", 'w', CM_CLI_OPT_FLAG, &wait },     { "timeout", 0, CM_CLI_OPT_STRING, &timeout_s },
        };
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        json_t *doc = NULL, *labels = NULL, *body = NULL, *spec, *op = NULL;
        const char *pos[1];
        unsigned nodes = 0, timeout = 0;
        size_t n_pos;
        int r, ret = CM_EXIT_FAILURE;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (file && engine)
                return cm_cli_usage_error(cli, noun, verb, "use either -f FILE or --engine, not both");
        if (!file && !engine)
                return cm_cli_usage_error(cli, noun, verb, "say what to build: -f FILE, or --engine ENGINE");
        if (nodes_s && !engine)
                return cm_cli_usage_error(
                        cli, noun, verb,
                        "--nodes goes with --engine local; in a file it is spec.local.nodes");
        if (nodes_s && !streq(engine, "local"))
                return cm_cli_usage_error(cli, noun, verb, "--nodes only applies to --engine local");
        if (nodes_s && (safe_atou(nodes_s, &nodes) < 0 || nodes == 0))
                return cm_cli_usage_error(cli, noun, verb, "--nodes takes a positive number, not '%s'",
                                          nodes_s);
        if (timeout_s && cm_cli_parse_timeout(cli, noun, verb, timeout_s, &timeout) < 0)
                return CM_EXIT_USAGE;
        if (timeout_s && !wait)
                return cm_cli_usage_error(cli, noun, verb, "--timeout goes with --wait");

        if (file) {
                if (cm_cli_read_document(cli, CLUSTER_DOC_SHAPE, file, &doc) < 0)
                        return CM_EXIT_FAILURE;
        }
        r = merge_labels(cli, noun, verb, doc ? json_object_get(doc, "labels") : NULL, &label_flags,
                         &labels);
        if (r < 0) {
                ret = r == -EINVAL ? CM_EXIT_USAGE : CM_EXIT_FAILURE;
                goto out;
        }
        body = json_pack("{s:s}", "name", pos[0]);
        if (!body || (json_object_size(labels) > 0 && json_object_set(body, "labels", labels) < 0)) {
                cm_cli_error(cli, "out of memory");
                goto out;
        }
        if (doc) {
                if (document_to_body(cli, file, pos[0], doc, body) < 0)
                        goto out;
                if (!json_object_get(body, "spec")) {
                        cm_cli_error(cli, "%s has no spec; see `clustermgmt cluster --help` for an example",
                                     file);
                        goto out;
                }
        } else {
                spec = nodes_s ? json_pack("{s:s, s:{s:I}}", "engine", engine, "local", "nodes",
                                           (json_int_t) nodes)
                               : json_pack("{s:s}", "engine", engine);
                if (!spec || json_object_set_new(body, "spec", spec) < 0) {
                        cm_cli_error(cli, "out of memory");
                        goto out;
                }
        }
        if (cm_cli_env_path(cli, &path, "clusters", NULL, NULL) < 0) {
                cm_cli_error(cli, "the environment name is too long");
                goto out;
        }
        if (cm_cli_call(cli, "POST", path.buf, body, NULL, &op, NULL) < 0)
                goto out;
        ret = cm_cli_operation_accepted(cli, op, wait, timeout);
out:
        json_decref(op);
        json_decref(body);
        json_decref(labels);
        json_decref(doc);
        return ret;
}

/* The cluster table of output.h with a HEALTH column after PHASE. */
static int print_cluster_table(struct cm_cli *cli, const json_t *items) {
        static const char *const headers[] = { "NAME",       "ENGINE", "PHASE", "HEALTH",
                                               "GENERATION", "NODES",  "AGE" };
        struct cm_cli_table t = {};
        uint64_t now = cm_now_usec(), usec;
        const json_t *c;
        size_t i;
        int r;

        r = cm_cli_table_init(&t, headers, ELEMENTSOF(headers));
        json_array_foreach(items, i, c) {
                const json_t *status = json_object_get(c, "status"), *gen = json_object_get(c, "generation"),
                             *nodes = json_object_get(status, "nodes");
                const char *created = cm_cli_json_str(c, "createdAt");
                char health[96], gen_s[32] = "-", nodes_s[32] = "-", age[32] = "-";

                if (r < 0)
                        break;
                cm_cli_health_cell(c, health, sizeof(health));
                if (json_is_integer(gen))
                        (void) snprintf(gen_s, sizeof(gen_s), "%" JSON_INTEGER_FORMAT,
                                        json_integer_value(gen));
                if (json_is_integer(nodes))
                        (void) snprintf(nodes_s, sizeof(nodes_s), "%" JSON_INTEGER_FORMAT,
                                        json_integer_value(nodes));
                if (created && cm_parse_rfc3339(created, &usec) >= 0)
                        cm_output_age(usec, now, age, sizeof(age));
                if ((r = cm_cli_table_add(&t, cm_cli_json_str(c, "name"))) < 0 ||
                    (r = cm_cli_table_add(&t, cm_cli_json_str(json_object_get(c, "spec"), "engine"))) < 0 ||
                    (r = cm_cli_table_add(&t, cm_cli_json_str(status, "phase"))) < 0 ||
                    (r = cm_cli_table_add(&t, health)) < 0 || (r = cm_cli_table_add(&t, gen_s)) < 0 ||
                    (r = cm_cli_table_add(&t, nodes_s)) < 0 || (r = cm_cli_table_add(&t, age)) < 0)
                        break;
        }
        if (r >= 0)
                (void) cm_cli_table_print(cli, &t);
        cm_cli_table_done(&t);
        return r < 0 ? cm_cli_error(cli, "out of memory") : CM_EXIT_OK;
}

static int cluster_list(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                        int argc, char **argv) {
        const char *limit_s = NULL;
        const struct cm_cli_opt opts[] = {
                { "limit", 0, CM_CLI_OPT_STRING, &limit_s },
        };
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        json_t *items = NULL;
        unsigned limit = 0;
        size_t n_pos;
        int r;

        if (cli->output != CM_OUTPUT_TABLE)
                return cm_cli_list_command(cli, noun, verb, argc, argv, "clusters", CM_RESOURCE_CLUSTER);
        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), NULL, 0, 0, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (limit_s && (safe_atou(limit_s, &limit) < 0 || limit < 1 || limit > 500))
                return cm_cli_usage_error(cli, noun, verb, "--limit takes a number from 1 to 500, not '%s'",
                                          limit_s);
        if (cm_cli_env_path(cli, &path, "clusters", NULL, NULL) < 0)
                return cm_cli_error(cli, "the environment name is too long");
        if (cm_cli_list(cli, path.buf, limit, &items) < 0)
                return CM_EXIT_FAILURE;
        r = print_cluster_table(cli, items);
        json_decref(items);
        return r;
}

static int get_cluster(struct cm_cli *cli, const char *name, json_t **ret) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        json_t *c = NULL;

        if (cm_cli_env_path(cli, &path, "clusters", name, NULL) < 0) {
                cm_cli_error(cli, "the name is too long");
                return -ENAMETOOLONG;
        }
        if (cm_cli_call(cli, "GET", path.buf, NULL, NULL, &c, NULL) < 0)
                return -EREMOTEIO;
        if (!json_is_object(c)) {
                json_decref(c);
                cm_cli_error(cli, "the answer is not a cluster");
                return -EBADMSG;
        }
        *ret = c;
        return 0;
}

static int cluster_get(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                       int argc, char **argv) {
        const char *pos[1];
        json_t *c = NULL;
        size_t n_pos;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, NULL, 0, pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (get_cluster(cli, pos[0], &c) < 0)
                return CM_EXIT_FAILURE;
        r = cm_cli_print(cli, CM_RESOURCE_CLUSTER, c);
        if (r == CM_EXIT_OK && cli->output == CM_OUTPUT_TABLE)
                r = cm_cli_print_health_summary(cli, c);
        json_decref(c);
        return r;
}

static bool resource_version_valid(const char *s) {
        if (isempty(s) || strlen(s) > 64)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '-' || *p == '.' || *p == '_'))
                        return false;
        return true;
}

static int cluster_update(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                          int argc, char **argv) {
        const char *file = NULL, *timeout_s = NULL;
        struct cm_cli_list label_flags = {};
        bool wait = false, force = false;
        const struct cm_cli_opt opts[] = {
                { "file", 'f', CM_CLI_OPT_STRING, &file },
                { "label", 0, CM_CLI_OPT_LIST, &label_flags },
                { "wait", 'w', CM_CLI_OPT_FLAG, &wait },
                { "force", 0, CM_CLI_OPT_FLAG, &force },
                { "timeout", 0, CM_CLI_OPT_STRING, &timeout_s },
        };
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024), if_match = STRBUF_INIT(128);
        json_t *doc = NULL, *cur = NULL, *labels = NULL, *body = NULL, *op = NULL, *base_labels;
        const char *headers[2] = {};
        const char *pos[1];
        unsigned timeout = 0;
        long status = 0;
        size_t n_pos;
        int r, ret = CM_EXIT_FAILURE;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (!file)
                return cm_cli_usage_error(cli, noun, verb,
                                          "-f FILE is required: the cluster document to apply");
        if (timeout_s && cm_cli_parse_timeout(cli, noun, verb, timeout_s, &timeout) < 0)
                return CM_EXIT_USAGE;
        if (timeout_s && !wait)
                return cm_cli_usage_error(cli, noun, verb, "--timeout goes with --wait");
        if (cm_cli_read_document(cli, CLUSTER_DOC_SHAPE, file, &doc) < 0)
                return CM_EXIT_FAILURE;

        body = json_object();
        if (!body) {
                cm_cli_error(cli, "out of memory");
                goto out;
        }
        /* Check the document before anything is sent. */
        if (document_to_body(cli, file, pos[0], doc, body) < 0)
                goto out;
        if (!json_object_get(body, "spec")) {
                cm_cli_error(cli, "%s has no spec", file);
                goto out;
        }
        if (get_cluster(cli, pos[0], &cur) < 0)
                goto out;

        /* Labels: the file's when it has them, else the current ones when flags change some; flags win. */
        base_labels = json_object_get(doc, "labels");
        if (!base_labels && label_flags.n > 0)
                base_labels = json_object_get(cur, "labels");
        if (base_labels || label_flags.n > 0) {
                r = merge_labels(cli, noun, verb, json_is_object(base_labels) ? base_labels : NULL,
                                 &label_flags, &labels);
                if (r < 0) {
                        ret = r == -EINVAL ? CM_EXIT_USAGE : CM_EXIT_FAILURE;
                        goto out;
                }
                if (json_object_set(body, "labels", labels) < 0) {
                        cm_cli_error(cli, "out of memory");
                        goto out;
                }
        }

        if (!force) {
                /* The version the document was based on when it says, else the one just read. */
                const char *rv =
                        cm_cli_json_str(doc, "resourceVersion") ?: cm_cli_json_str(cur, "resourceVersion");
                if (!resource_version_valid(rv)) {
                        cm_cli_error(
                                cli,
                                "cluster %s has no usable resourceVersion; pass --force to update it anyway",
                                pos[0]);
                        goto out;
                }
                if (strbuf_addf(&if_match, "If-Match: \"%s\"", rv) < 0) {
                        cm_cli_error(cli, "out of memory");
                        goto out;
                }
                headers[0] = if_match.buf;
        }

        if (cm_cli_env_path(cli, &path, "clusters", pos[0], NULL) < 0) {
                cm_cli_error(cli, "the name is too long");
                goto out;
        }
        r = cm_cli_call(cli, "PUT", path.buf, body, headers, &op, &status);
        if (r < 0) {
                if (status == 412)
                        fprintf(cli->err,
                                "hint: `clustermgmt cluster get %s` shows the current version; apply your "
                                "change to "
                                "it again, or pass --force to overwrite\n",
                                pos[0]);
                goto out;
        }
        ret = cm_cli_operation_accepted(cli, op, wait, timeout);
out:
        json_decref(op);
        json_decref(body);
        json_decref(labels);
        json_decref(cur);
        json_decref(doc);
        return ret;
}

static int cluster_delete(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                          int argc, char **argv) {
        const char *timeout_s = NULL;
        bool wait = false;
        const struct cm_cli_opt opts[] = {
                { "wait", 'w', CM_CLI_OPT_FLAG, &wait },
                { "timeout", 0, CM_CLI_OPT_STRING, &timeout_s },
        };
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        const char *pos[1];
        json_t *op = NULL;
        unsigned timeout = 0;
        size_t n_pos;
        int ret;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (timeout_s && cm_cli_parse_timeout(cli, noun, verb, timeout_s, &timeout) < 0)
                return CM_EXIT_USAGE;
        if (timeout_s && !wait)
                return cm_cli_usage_error(cli, noun, verb, "--timeout goes with --wait");
        if (cm_cli_env_path(cli, &path, "clusters", pos[0], NULL) < 0)
                return cm_cli_error(cli, "the name is too long");
        if (cm_cli_call(cli, "DELETE", path.buf, NULL, NULL, &op, NULL) < 0)
                return CM_EXIT_FAILURE;
        ret = cm_cli_operation_accepted(cli, op, wait, timeout);
        json_decref(op);
        return ret;
}

/* GETs a secret document (a kubeconfig, a state file) and writes its bytes to standard output as they are. */
static int print_secret(struct cm_cli *cli, const char *path, const char *what) {
        _cleanup_(cm_client_response_done) struct cm_client_response resp = {};
        struct cm_client_request req = {
                .method = "GET",
                .path = path,
                .secret_body = true, /* keys: wiped, never realloc'd */
                .max_body = 64U * 1024U * 1024U,
        };
        struct cm_client *c = cm_cli_client(cli);
        int r;

        if (!c)
                return CM_EXIT_FAILURE;
        r = cm_client_perform(c, &req, &resp);
        if (r < 0)
                return cm_cli_error(cli, "%s", cm_client_last_error(c));
        if (resp.status < 200 || resp.status >= 300)
                return cm_cli_print_problem(cli, &resp);
        if (fwrite(resp.body.buf ?: "", 1, resp.body.len, cli->out) != resp.body.len ||
            fflush(cli->out) != 0)
                return cm_cli_error(cli, "cannot write %s: %s", what, strerror(errno));
        return CM_EXIT_OK;
}

static int cluster_kubeconfig(struct cm_cli *cli, const struct cm_cli_noun *noun,
                              const struct cm_cli_verb *verb, int argc, char **argv) {
        bool customer = false;
        const char *lifetime_s = NULL;
        const struct cm_cli_opt opts[] = {
                { "customer", 0, CM_CLI_OPT_FLAG, &customer },
                { "lifetime", 0, CM_CLI_OPT_STRING, &lifetime_s },
        };
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        const char *pos[1];
        unsigned lifetime = 0;
        size_t n_pos;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (lifetime_s && !customer)
                return cm_cli_usage_error(cli, noun, verb,
                                          "--lifetime is the customer token's: use it with --customer");
        /* The bounds of a TokenRequest: 10 minutes to a year. */
        if (lifetime_s && (safe_atou(lifetime_s, &lifetime) < 0 || lifetime < 600 || lifetime > 31536000))
                return cm_cli_usage_error(
                        cli, noun, verb,
                        "--lifetime takes seconds from 600 (10 minutes) to 31536000 (a year), "
                        "not '%s'",
                        lifetime_s);
        if (cm_cli_env_path(cli, &path, "clusters", pos[0],
                            customer ? "kubeconfig/customer" : "kubeconfig") < 0 ||
            (lifetime_s && strbuf_addf(&path, "?lifetimeSeconds=%u", lifetime) < 0))
                return cm_cli_error(cli, "the name is too long");
        return print_secret(cli, path.buf, "the kubeconfig");
}

static int cluster_operations(struct cm_cli *cli, const struct cm_cli_noun *noun,
                              const struct cm_cli_verb *verb, int argc, char **argv) {
        const char *limit_s = NULL;
        const struct cm_cli_opt opts[] = {
                { "limit", 0, CM_CLI_OPT_STRING, &limit_s },
        };
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        const char *pos[1];
        json_t *items = NULL;
        unsigned limit = 0;
        size_t n_pos;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (limit_s && (safe_atou(limit_s, &limit) < 0 || limit < 1 || limit > 500))
                return cm_cli_usage_error(cli, noun, verb, "--limit takes a number from 1 to 500, not '%s'",
                                          limit_s);
        if (cm_cli_env_path(cli, &path, "clusters", pos[0], "operations") < 0)
                return cm_cli_error(cli, "the name is too long");
        if (cm_cli_list(cli, path.buf, limit, &items) < 0)
                return CM_EXIT_FAILURE;
        r = cm_cli_print(cli, CM_RESOURCE_OPERATION, items);
        json_decref(items);
        return r;
}

/* POSTs body to the cluster's `rest` route and prints (or, with --wait, follows) the operation. */
static int post_action(struct cm_cli *cli, const char *name, const char *rest, const json_t *body, bool wait,
                       unsigned timeout) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        json_t *op = NULL;
        int ret;

        if (cm_cli_env_path(cli, &path, "clusters", name, rest) < 0)
                return cm_cli_error(cli, "the name is too long");
        if (cm_cli_call(cli, "POST", path.buf, body, NULL, &op, NULL) < 0)
                return CM_EXIT_FAILURE;
        ret = cm_cli_operation_accepted(cli, op, wait, timeout);
        json_decref(op);
        return ret;
}

/* --wait and --timeout as every operation-starting verb takes them. */
static int wait_flags(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                      bool wait, const char *timeout_s, unsigned *ret) {
        *ret = 0;
        if (timeout_s && cm_cli_parse_timeout(cli, noun, verb, timeout_s, ret) < 0)
                return -EINVAL;
        if (timeout_s && !wait) {
                (void) cm_cli_usage_error(cli, noun, verb, "--timeout goes with --wait");
                return -EINVAL;
        }
        return 0;
}

/*
 * `cluster snapshot NAME [--name S]` and `cluster restore NAME --snapshot S`: one snapshot name in the
 * body (key), given with --flag; required for a restore, chosen by the service for a snapshot.
 */
static int snapshot_action(struct cm_cli *cli, const struct cm_cli_noun *noun,
                           const struct cm_cli_verb *verb, int argc, char **argv, bool restore) {
        const char *flag = restore ? "snapshot" : "name", *timeout_s = NULL, *snap = NULL;
        bool wait = false;
        const struct cm_cli_opt opts[] = {
                { flag, 0, CM_CLI_OPT_STRING, &snap },
                { "wait", 'w', CM_CLI_OPT_FLAG, &wait },
                { "timeout", 0, CM_CLI_OPT_STRING, &timeout_s },
        };
        const char *pos[1];
        unsigned timeout;
        size_t n_pos;
        json_t *body;
        int ret;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), pos, 1, 1, &n_pos) < 0 ||
            wait_flags(cli, noun, verb, wait, timeout_s, &timeout) < 0)
                return CM_EXIT_USAGE;
        if (restore && !snap)
                return cm_cli_usage_error(cli, noun, verb,
                                          "--snapshot NAME is required (`clustermgmt cluster snapshots %s` "
                                          "lists the ones taken through the service)",
                                          pos[0]);
        body = snap ? json_pack("{s:s}", flag, snap) : json_object();
        if (!body)
                return cm_cli_error(cli, "out of memory");
        ret = post_action(cli, pos[0], restore ? "restore" : "snapshots", body, wait, timeout);
        json_decref(body);
        return ret;
}

static int cluster_snapshot(struct cm_cli *cli, const struct cm_cli_noun *noun,
                            const struct cm_cli_verb *verb, int argc, char **argv) {
        return snapshot_action(cli, noun, verb, argc, argv, false);
}

static int cluster_restore(struct cm_cli *cli, const struct cm_cli_noun *noun,
                           const struct cm_cli_verb *verb, int argc, char **argv) {
        return snapshot_action(cli, noun, verb, argc, argv, true);
}

static int cluster_snapshots(struct cm_cli *cli, const struct cm_cli_noun *noun,
                             const struct cm_cli_verb *verb, int argc, char **argv) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        const char *pos[1];
        json_t *list = NULL;
        size_t n_pos;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, NULL, 0, pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (cm_cli_env_path(cli, &path, "clusters", pos[0], "snapshots") < 0)
                return cm_cli_error(cli, "the name is too long");
        if (cm_cli_call(cli, "GET", path.buf, NULL, NULL, &list, NULL) < 0)
                return CM_EXIT_FAILURE;
        r = cm_cli_print(cli, CM_RESOURCE_SNAPSHOT, json_object_get(list, "items"));
        json_decref(list);
        return r;
}

static int cluster_rotate_certs(struct cm_cli *cli, const struct cm_cli_noun *noun,
                                const struct cm_cli_verb *verb, int argc, char **argv) {
        const char *timeout_s = NULL;
        bool wait = false, rotate_ca = false;
        struct cm_cli_list services = {};
        const struct cm_cli_opt opts[] = {
                { "rotate-ca", 0, CM_CLI_OPT_FLAG, &rotate_ca },
                { "service", 0, CM_CLI_OPT_LIST, &services },
                { "wait", 'w', CM_CLI_OPT_FLAG, &wait },
                { "timeout", 0, CM_CLI_OPT_STRING, &timeout_s },
        };
        const char *pos[1];
        unsigned timeout;
        size_t n_pos;
        json_t *body, *list;
        int ret;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), pos, 1, 1, &n_pos) < 0 ||
            wait_flags(cli, noun, verb, wait, timeout_s, &timeout) < 0)
                return CM_EXIT_USAGE;
        list = json_array();
        body = json_object();
        if (!list || !body || json_object_set_new(body, "rotateCA", json_boolean(rotate_ca)) < 0) {
                json_decref(list);
                json_decref(body);
                return cm_cli_error(cli, "out of memory");
        }
        for (size_t i = 0; i < services.n; i++)
                (void) json_array_append_new(list, json_string(services.items[i]));
        (void) json_object_set_new(body, "services", list);
        ret = post_action(cli, pos[0], "rotate-certs", body, wait, timeout);
        json_decref(body);
        return ret;
}

/* `cluster state list NAME` / `cluster state get NAME FILE [--version N]` (admin only). */
static int cluster_state(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                         int argc, char **argv) {
        const char *version_s = NULL;
        const struct cm_cli_opt opts[] = {
                { "version", 0, CM_CLI_OPT_STRING, &version_s },
        };
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        const char *pos[3];
        unsigned version = 0;
        size_t n_pos;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), pos, 2, 3, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (streq(pos[0], "list")) {
                json_t *list = NULL;

                if (n_pos != 2 || version_s)
                        return cm_cli_usage_error(cli, noun, verb,
                                                  "state list takes only the cluster's NAME");
                if (cm_cli_env_path(cli, &path, "clusters", pos[1], "state") < 0)
                        return cm_cli_error(cli, "the name is too long");
                if (cm_cli_call(cli, "GET", path.buf, NULL, NULL, &list, NULL) < 0)
                        return CM_EXIT_FAILURE;
                r = cm_cli_print(cli, CM_RESOURCE_STATEFILE, json_object_get(list, "items"));
                json_decref(list);
                return r;
        }
        if (!streq(pos[0], "get"))
                return cm_cli_usage_error(cli, noun, verb, "unknown state command '%s': use list or get",
                                          pos[0]);
        if (n_pos != 3)
                return cm_cli_usage_error(cli, noun, verb, "state get needs the cluster's NAME and a FILE");
        if (version_s && (safe_atou(version_s, &version) < 0 || version < 1))
                return cm_cli_usage_error(cli, noun, verb, "--version takes a positive number, not '%s'",
                                          version_s);
        if (isempty(pos[2]) || strchr(pos[2], '/') ||
            cm_cli_env_path(cli, &path, "clusters", pos[1], "state") < 0 || strbuf_addch(&path, '/') < 0 ||
            cm_url_escape_segment(&path, pos[2]) < 0)
                return cm_cli_error(cli, "'%s' is not a state file name (see `cluster state list %s`)",
                                    pos[2], pos[1]);
        if (version > 0 && strbuf_addf(&path, "?version=%u", version) < 0)
                return cm_cli_error(cli, "the name is too long");
        return print_secret(cli, path.buf, "the state file");
}

static const struct cm_cli_verb cluster_verbs[] = {
        { "create",
          "NAME (-f FILE | --engine ENGINE [--nodes N]) [--label KEY=VALUE]... [--wait [--timeout SECONDS]]",
          "Create a cluster from a document (YAML or JSON; - reads stdin) or from flags.", cluster_create },
        { "list", "[--limit N]", "List the clusters of the environment (all pages unless --limit).",
          cluster_list },
        { "get", "NAME", "Show one cluster: spec, phase, conditions, health.", cluster_get },
        { "health", "NAME [--history N]",
          "Show the cluster's health: conditions, nodes, version, probes, availability and the latest\n"
          "      changes (N of them, up to 500).",
          cm_cli_cluster_health },
        { "update", "NAME -f FILE [--label KEY=VALUE]... [--force] [--wait [--timeout SECONDS]]",
          "Change a cluster's spec (and labels); refused when it changed since you read it, unless --force.",
          cluster_update },
        { "delete", "NAME [--wait [--timeout SECONDS]]", "Tear a cluster down.", cluster_delete },
        { "kubeconfig", "NAME [--customer [--lifetime SECONDS]]",
          "Print the cluster's admin kubeconfig to stdout, or with --customer the customer's: a token of\n"
          "      the customer service account minted now, valid for the environment's token lifetime or\n"
          "      --lifetime (600 s to a year).",
          cluster_kubeconfig },
        { "operations", "NAME [--limit N]", "List the cluster's operations, newest first.",
          cluster_operations },
        { "snapshot", "NAME [--name SNAPSHOT] [--wait [--timeout SECONDS]]",
          "Take an etcd snapshot of a Ready cluster (default name: NAME-<date>-<time>, UTC).",
          cluster_snapshot },
        { "snapshots", "NAME", "List the snapshots taken through the service, newest first.",
          cluster_snapshots },
        { "restore", "NAME --snapshot SNAPSHOT [--wait [--timeout SECONDS]]",
          "Restore the cluster's etcd from a snapshot.", cluster_restore },
        { "rotate-certs", "NAME [--rotate-ca] [--service SERVICE]... [--wait [--timeout SECONDS]]",
          "Renew the cluster's certificates (all services unless --service; --rotate-ca also the CAs).",
          cluster_rotate_certs },
        { "addon", "(install|list|get|plan|sync|uninstall) CLUSTER [ADDON] [--values FILE]",
          "Add-ons on the cluster: install CLUSTER ADDON [--values FILE], list CLUSTER, get/plan/sync/\n"
          "      uninstall CLUSTER ADDON (see `clustermgmt addon --help` for the definitions).",
          cm_cli_cluster_addon },
        { "state", "(list NAME | get NAME FILE [--version N])",
          "List the cluster's state files and kept versions, or print one (admin only: it holds keys).",
          cluster_state },
};

const struct cm_cli_noun cm_cli_noun_cluster = {
        .name = "cluster",
        .summary = "clusters: create, list, get, health, update, delete, kubeconfig, operations, snapshot, "
                   "restore, rotate-certs, state, addon",
        .description =
                "Kubernetes clusters in the environment chosen with --env. A cluster document looks like:\n"
                "\n"
                "  name: demo                # optional; must equal NAME\n"
                "  labels: {team: payments}\n"
                "  spec:\n"
                "    engine: local           # rke | local\n"
                "    local: {nodes: 3}\n"
                "\n"
                "Changes run as operations; --wait follows one until it ends and exits 1 when it failed.",
        .verbs = cluster_verbs,
        .n_verbs = ELEMENTSOF(cluster_verbs),
};
