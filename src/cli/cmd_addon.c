/* SPDX-License-Identifier: Apache-2.0 */
/* `addon ...` (definitions of the environment) and `cluster addon ...` (installations on a cluster). */
#include "base/common.h"

#include "base/fileio.h"
#include "base/strbuf.h"
#include "cli/internal.h"
#include "kube/manifest.h"

/* ---- definitions ------------------------------------------------------------------------------ */

/*
 * The definition of -f FILE (YAML or JSON), with --manifests FILE read and embedded as its manifests
 * (the text as it is: the server parses it). Prints why it cannot.
 */
static int read_definition(struct cm_cli *cli, const struct cm_cli_noun *noun,
                           const struct cm_cli_verb *verb, const char *file, const char *manifests,
                           json_t **ret) {
        _cleanup_free_ char *text = NULL;
        json_t *doc = NULL, *m;
        size_t len = 0;
        int r;

        if (!file) {
                cm_cli_usage_error(cli, noun, verb,
                                   "give the definition with -f FILE (YAML or JSON; - reads stdin)");
                return -EINVAL;
        }
        if (cm_cli_read_document(cli, "an add-on definition must be a mapping (name, kind, version, ...)",
                                 file, &doc) < 0)
                return -EINVAL;
        if (manifests) {
                if (json_object_get(doc, "manifests")) {
                        json_decref(doc);
                        cm_cli_error(
                                cli,
                                "%s has manifests already: drop them from the file or leave out --manifests",
                                file);
                        return -EINVAL;
                }
                r = cm_read_file(manifests, CM_MANIFEST_MAX, false, &text, &len);
                if (r < 0) {
                        json_decref(doc);
                        cm_cli_error(cli, "cannot read %s: %s", manifests,
                                     r == -EFBIG ? "larger than 8 MiB, the most an add-on may hold"
                                                 : strerror(-r));
                        return r;
                }
                m = json_stringn(text, len);
                if (!m || json_object_set_new(doc, "manifests", m) < 0) {
                        json_decref(doc);
                        cm_cli_error(cli, "%s is not UTF-8 text: manifests are YAML or JSON", manifests);
                        return -EINVAL;
                }
        }
        *ret = doc;
        return 0;
}

static int addon_put(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                     int argc, char **argv, bool create) {
        const char *file = NULL, *manifests = NULL;
        const struct cm_cli_opt opts[] = {
                { "file", 'f', CM_CLI_OPT_STRING, &file },
                { "manifests", 0, CM_CLI_OPT_STRING, &manifests },
        };
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        json_t *doc = NULL, *rec = NULL;
        const char *pos[1], *name;
        size_t n_pos;
        int ret = CM_EXIT_FAILURE;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), pos, 0, 0, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (read_definition(cli, noun, verb, file, manifests, &doc) < 0)
                return file ? CM_EXIT_FAILURE : CM_EXIT_USAGE;
        name = cm_cli_json_str(doc, "name");
        if (!name) {
                json_decref(doc);
                return cm_cli_error(cli, "%s has no name: an add-on definition names itself (name: ...)",
                                    file);
        }
        if (cm_cli_env_path(cli, &path, "addons", create ? NULL : name, NULL) < 0) {
                cm_cli_error(cli, "the name is too long");
                goto out;
        }
        if (cm_cli_call(cli, create ? "POST" : "PUT", path.buf, doc, NULL, &rec, NULL) < 0)
                goto out;
        if (cli->output != CM_OUTPUT_TABLE && rec)
                ret = cm_cli_print(cli, CM_RESOURCE_ADDON, rec);
        else {
                fprintf(cli->out, "add-on %s %s\n", name, create ? "created" : "updated");
                ret = CM_EXIT_OK;
        }
out:
        json_decref(rec);
        json_decref(doc);
        return ret;
}

static int addon_create(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                        int argc, char **argv) {
        return addon_put(cli, noun, verb, argc, argv, true);
}

static int addon_update(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                        int argc, char **argv) {
        return addon_put(cli, noun, verb, argc, argv, false);
}

static int addon_list(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                      int argc, char **argv) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        json_t *list = NULL;
        const char *pos[1];
        size_t n_pos;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, NULL, 0, pos, 0, 0, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (cm_cli_env_path(cli, &path, "addons", NULL, NULL) < 0)
                return cm_cli_error(cli, "the environment name is too long");
        if (cm_cli_call(cli, "GET", path.buf, NULL, NULL, &list, NULL) < 0)
                return CM_EXIT_FAILURE;
        if (!json_is_array(json_object_get(list, "items"))) {
                json_decref(list);
                return cm_cli_error(cli, "the answer is not a list of add-ons");
        }
        r = cm_cli_print(cli, CM_RESOURCE_ADDON, json_object_get(list, "items"));
        json_decref(list);
        return r;
}

static int addon_get(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                     int argc, char **argv) {
        return cm_cli_get_command(cli, noun, verb, argc, argv, "addons", CM_RESOURCE_ADDON);
}

static int addon_delete(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                        int argc, char **argv) {
        return cm_cli_delete_command(cli, noun, verb, argc, argv, "addons", "add-on");
}

static const struct cm_cli_verb addon_verbs[] = {
        { "create", "-f FILE [--manifests FILE]",
          "Define an add-on (admin) from a YAML or JSON document (- reads stdin); --manifests embeds\n"
          "      a file of Kubernetes manifests (up to 8 MiB) as its manifests.",
          addon_create },
        { "list", "", "List the environment's add-ons.", addon_list },
        { "get", "NAME", "Show one add-on (-o yaml for the whole definition, manifests included).",
          addon_get },
        { "update", "-f FILE [--manifests FILE]",
          "Replace an add-on's definition (the name comes from the file); every cluster that has it\n"
          "      installed gets the new version.",
          addon_update },
        { "delete", "NAME", "Delete an add-on; refused while a cluster has it installed.", addon_delete },
};

const struct cm_cli_noun cm_cli_noun_addon = {
        .name = "addon",
        .summary =
                "add-ons (manifests or Helm charts) of the environment: create, list, get, update, delete",
        .description =
                "Add-ons are Kubernetes manifests or Helm charts the service installs on clusters of the\n"
                "environment (`clustermgmt cluster addon install CLUSTER ADDON`) and keeps in place. A\n"
                "definition looks like:\n"
                "\n"
                "  name: metrics             # a DNS label of at most 53 characters\n"
                "  kind: helm                # helm | manifest\n"
                "  version: \"1.0\"            # your version of the definition\n"
                "  chart: {repository: https://charts.example.com, name: metrics, version: 4.2.0}\n"
                "  values: {replicas: 2}     # helm only; installations add their own\n"
                "  baseline: false           # true: installed on every new cluster of the environment\n"
                "\n"
                "  name: team-rbac\n"
                "  kind: manifest\n"
                "  version: \"3\"\n"
                "  namespace: team           # for namespaced objects without one (default: default)\n"
                "  manifests: |              # or: --manifests FILE\n"
                "    apiVersion: v1\n"
                "    kind: ConfigMap\n"
                "    ...\n"
                "\n"
                "Optional: description, timeoutSeconds (rollout wait, 10-3600, default 300),\n"
                "driftIntervalSeconds (10-86400, default 300). Changing a definition needs the admin role.",
        .verbs = addon_verbs,
        .n_verbs = ELEMENTSOF(addon_verbs),
};

/* ---- installations: `cluster addon VERB CLUSTER [ADDON]` --------------------------------------- */

static int install_path(struct cm_cli *cli, struct strbuf *sb, const char *cluster, const char *addon,
                        const char *action) {
        int r = cm_cli_env_path(cli, sb, "clusters", cluster, "addons");

        if (r >= 0 && addon &&
            ((r = strbuf_addch(sb, '/')) < 0 || (r = cm_url_escape_segment(sb, addon)) < 0))
                return r;
        if (r >= 0 && action && ((r = strbuf_addch(sb, '/')) < 0 || (r = strbuf_adds(sb, action)) < 0))
                return r;
        if (r < 0)
                cm_cli_error(cli, "the name is too long");
        return r;
}

/*
 * Sends the request to the installations of cluster (addon NULL), or to one (and its action), and prints
 * the installation it answers (for people: the message done, unless -o asks for the document).
 */
static int install_call(struct cm_cli *cli, const char *method, const char *cluster, const char *addon,
                        const char *action, const json_t *body, const char *done) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        json_t *rec = NULL;
        int ret;

        if (install_path(cli, &path, cluster, addon, action) < 0)
                return CM_EXIT_FAILURE;
        if (cm_cli_call(cli, method, path.buf, body, NULL, &rec, NULL) < 0)
                return CM_EXIT_FAILURE;
        if (cli->output != CM_OUTPUT_TABLE && rec)
                ret = cm_cli_print(cli, CM_RESOURCE_ADDON_INSTALL, rec);
        else {
                fprintf(cli->out, "%s\n", done);
                ret = CM_EXIT_OK;
        }
        json_decref(rec);
        return ret;
}

static int install_install(struct cm_cli *cli, const struct cm_cli_noun *noun,
                           const struct cm_cli_verb *verb, int argc, char **argv) {
        const char *values_file = NULL;
        const struct cm_cli_opt opts[] = {
                { "values", 0, CM_CLI_OPT_STRING, &values_file },
        };
        json_t *body, *values = NULL;
        const char *pos[2];
        char done[512];
        size_t n_pos;
        int ret;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), pos, 2, 2, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (values_file && cm_cli_read_document(cli, "values must be a mapping", values_file, &values) < 0)
                return CM_EXIT_FAILURE;
        body = json_pack("{s:s}", "addon", pos[1]);
        if (!body || (values && json_object_set_new(body, "values", values) < 0)) {
                json_decref(body);
                return cm_cli_error(cli, "out of memory");
        }
        (void) snprintf(done, sizeof(done),
                        "add-on %s installed on cluster %s; `clustermgmt cluster addon get %s %s` shows its "
                        "progress",
                        pos[1], pos[0], pos[0], pos[1]);
        ret = install_call(cli, "POST", pos[0], NULL, NULL, body, done);
        json_decref(body);
        return ret;
}

static int install_list(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                        int argc, char **argv) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        json_t *list = NULL;
        const char *pos[1];
        size_t n_pos;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, NULL, 0, pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (install_path(cli, &path, pos[0], NULL, NULL) < 0)
                return CM_EXIT_FAILURE;
        if (cm_cli_call(cli, "GET", path.buf, NULL, NULL, &list, NULL) < 0)
                return CM_EXIT_FAILURE;
        if (!json_is_array(json_object_get(list, "items"))) {
                json_decref(list);
                return cm_cli_error(cli, "the answer is not a list of installations");
        }
        r = cm_cli_print(cli, CM_RESOURCE_ADDON_INSTALL, json_object_get(list, "items"));
        json_decref(list);
        return r;
}

static int install_get(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                       int argc, char **argv) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        json_t *rec = NULL;
        const char *pos[2];
        size_t n_pos;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, NULL, 0, pos, 2, 2, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (install_path(cli, &path, pos[0], pos[1], NULL) < 0)
                return CM_EXIT_FAILURE;
        if (cm_cli_call(cli, "GET", path.buf, NULL, NULL, &rec, NULL) < 0)
                return CM_EXIT_FAILURE;
        if (!json_is_object(rec)) {
                json_decref(rec);
                return cm_cli_error(cli, "the answer is not an installation");
        }
        r = cm_cli_print(cli, CM_RESOURCE_ADDON_INSTALL, rec);
        json_decref(rec);
        return r;
}

/* The plan as a table: ACTION KIND NAMESPACE NAME FIELDS. */
static int print_plan(struct cm_cli *cli, const json_t *plan) {
        static const char *const headers[] = { "ACTION", "KIND", "NAMESPACE", "NAME", "FIELDS" };
        struct cm_cli_table t = {};
        const json_t *item, *f;
        size_t i, j;
        int r, ret;

        if (json_array_size(plan) == 0) {
                fprintf(cli->out, "nothing to apply: the add-on has no objects\n");
                return CM_EXIT_OK;
        }
        r = cm_cli_table_init(&t, headers, ELEMENTSOF(headers));
        json_array_foreach(plan, i, item) {
                _cleanup_strbuf_ struct strbuf fields = STRBUF_INIT(CM_CLI_CELL_MAX * 4);

                json_array_foreach(json_object_get(item, "fields"), j, f) {
                        if (r >= 0 && fields.len > 0)
                                r = strbuf_addch(&fields, ',');
                        if (r >= 0 && json_is_string(f))
                                r = strbuf_adds(&fields, json_string_value(f));
                }
                if (r == -ENOBUFS) /* a long list is cut in the cell anyway */
                        r = 0;
                if (r >= 0)
                        r = cm_cli_table_add(&t, cm_cli_json_str(item, "action"));
                if (r >= 0)
                        r = cm_cli_table_add(&t, cm_cli_json_str(item, "kind"));
                if (r >= 0)
                        r = cm_cli_table_add(&t, cm_cli_json_str(item, "namespace"));
                if (r >= 0)
                        r = cm_cli_table_add(&t, cm_cli_json_str(item, "name"));
                if (r >= 0)
                        r = cm_cli_table_add(&t, fields.len ? fields.buf : NULL);
        }
        ret = r < 0 ? cm_cli_error(cli, "out of memory") : cm_cli_table_print(cli, &t);
        cm_cli_table_done(&t);
        return ret;
}

static int install_plan(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                        int argc, char **argv) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        json_t *doc = NULL;
        const char *pos[2];
        size_t n_pos;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, NULL, 0, pos, 2, 2, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (install_path(cli, &path, pos[0], pos[1], "plan") < 0)
                return CM_EXIT_FAILURE;
        if (cm_cli_call(cli, "POST", path.buf, NULL, NULL, &doc, NULL) < 0)
                return CM_EXIT_FAILURE;
        if (!json_is_array(json_object_get(doc, "plan"))) {
                json_decref(doc);
                return cm_cli_error(cli, "the answer is not a plan");
        }
        r = cli->output == CM_OUTPUT_TABLE ? print_plan(cli, json_object_get(doc, "plan"))
                                           : cm_cli_print_document(cli, doc);
        json_decref(doc);
        return r;
}

static int install_simple(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                          int argc, char **argv, const char *method, const char *action, const char *what) {
        const char *pos[2];
        char done[512];
        size_t n_pos;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, NULL, 0, pos, 2, 2, &n_pos) < 0)
                return CM_EXIT_USAGE;
        (void) snprintf(done, sizeof(done), "%s of add-on %s on cluster %s requested", what, pos[1], pos[0]);
        return install_call(cli, method, pos[0], pos[1], action, NULL, done);
}

static int install_sync(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                        int argc, char **argv) {
        return install_simple(cli, noun, verb, argc, argv, "POST", "sync", "a drift check");
}

static int install_uninstall(struct cm_cli *cli, const struct cm_cli_noun *noun,
                             const struct cm_cli_verb *verb, int argc, char **argv) {
        return install_simple(cli, noun, verb, argc, argv, "DELETE", NULL, "uninstall");
}

static const struct cm_cli_verb install_verbs[] = {
        { "install", "CLUSTER ADDON [--values FILE]",
          "Install an add-on of the environment on a cluster, with values (YAML or JSON) over the\n"
          "      definition's.",
          install_install },
        { "list", "CLUSTER", "List the cluster's add-ons with their phase.", install_list },
        { "get", "CLUSTER ADDON", "Show one installation: phase, conditions, last apply and drift check.",
          install_get },
        { "plan", "CLUSTER ADDON",
          "Show what applying the add-on now would change on the cluster (nothing changes).", install_plan },
        { "sync", "CLUSTER ADDON", "Check the add-on for drift now.", install_sync },
        { "uninstall", "CLUSTER ADDON",
          "Remove the add-on's objects from the cluster, then the installation.", install_uninstall },
};

/* `cluster addon ...`: usage lines read "clustermgmt cluster addon VERB ...". */
static const struct cm_cli_noun cluster_addon_noun = {
        .name = "cluster addon",
        .summary = "add-ons installed on a cluster",
        .description = "Add-ons installed on a cluster of the environment (see `clustermgmt addon --help`).",
        .verbs = install_verbs,
        .n_verbs = ELEMENTSOF(install_verbs),
};

int cm_cli_cluster_addon(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                         int argc, char **argv) {
        if (argc < 2) {
                fprintf(cli->err,
                        "error: missing verb: clustermgmt cluster addon <verb>, with <verb> one of:");
                for (size_t i = 0; i < ELEMENTSOF(install_verbs); i++)
                        fprintf(cli->err, " %s", install_verbs[i].name);
                fprintf(cli->err, "\nrun `clustermgmt cluster --help` for help\n");
                return CM_EXIT_USAGE;
        }
        for (size_t i = 0; i < ELEMENTSOF(install_verbs); i++)
                if (streq(install_verbs[i].name, argv[1]))
                        return install_verbs[i].run(cli, &cluster_addon_noun, &install_verbs[i], argc - 1,
                                                    argv + 1);
        return cm_cli_usage_error(
                cli, noun, verb,
                "unknown add-on command '%s': use install, list, get, plan, sync or uninstall", argv[1]);
}
