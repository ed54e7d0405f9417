/* SPDX-License-Identifier: Apache-2.0 */
/*
 * addon-apply: the add-on apply engine (src/addons/apply.h) on the command line, for the tests against
 * a real API server (tests/integration/test_addon_apply.py). Not part of the product.
 *
 *   addon-apply apply|plan|wait|remove --kubeconfig FILE [--manifest FILE] [--inventory FILE]
 *               [--addon NAME] [--namespace NS] [--timeout SEC]
 *
 * apply and plan read the manifest (cm_manifest_parse, cm_manifest_sort) and the previous inventory
 * (a JSON array; none: a first apply); wait and remove work on the inventory (the manifest is not
 * needed). stdout: one JSON object
 *   {"result": 0 or -errno, "reason", "message", "inventory": [...], "corrected": [...],
 *    "pruned": [...], "plan": [...], "apiCalls": N}
 * A manifest the parser refuses is a result too (reason InvalidManifest).
 *
 * Exit status: 0 whatever the result; 2 for a usage error or a file that cannot be read.
 */
#include "base/common.h"

#include <getopt.h>

#include "addons/apply.h"
#include "base/fileio.h"
#include "base/parse.h"
#include "base/secret.h"
#include "kube/client.h"
#include "kube/manifest.h"
#include "monitor/health.h"

#define INVENTORY_MAX (16U * 1024U * 1024U)

struct args {
        const char *command;
        const char *kubeconfig;
        const char *manifest;
        const char *inventory;
        const char *addon;
        const char *namespace;
        unsigned timeout_sec;
};

static int usage(void) {
        fprintf(stderr, "usage: addon-apply apply|plan|wait|remove --kubeconfig FILE [--manifest FILE]\n"
                        "                   [--inventory FILE] [--addon NAME] [--namespace NS] "
                        "[--timeout SEC]\n");
        return 2;
}

static int parse_args(int argc, char *argv[], struct args *ret) {
        static const struct option options[] = {
                { "kubeconfig", required_argument, NULL, 'k' },
                { "manifest", required_argument, NULL, 'm' },
                { "inventory", required_argument, NULL, 'i' },
                { "addon", required_argument, NULL, 'a' },
                { "namespace", required_argument, NULL, 'n' },
                { "timeout", required_argument, NULL, 't' },
                {},
        };
        struct args a = { .addon = "demo" };
        int c;

        if (argc < 2)
                return -EINVAL;
        a.command = argv[1];
        if (!streq(a.command, "apply") && !streq(a.command, "plan") && !streq(a.command, "wait") &&
            !streq(a.command, "remove"))
                return -EINVAL;
        optind = 2;
        while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
                switch (c) {
                case 'k':
                        a.kubeconfig = optarg;
                        break;
                case 'm':
                        a.manifest = optarg;
                        break;
                case 'i':
                        a.inventory = optarg;
                        break;
                case 'a':
                        a.addon = optarg;
                        break;
                case 'n':
                        a.namespace = optarg;
                        break;
                case 't':
                        if (safe_atou(optarg, &a.timeout_sec) < 0)
                                return -EINVAL;
                        break;
                default:
                        return -EINVAL;
                }
        }
        if (optind != argc || !a.kubeconfig)
                return -EINVAL;
        if ((streq(a.command, "apply") || streq(a.command, "plan")) && !a.manifest)
                return -EINVAL;
        if ((streq(a.command, "wait") || streq(a.command, "remove")) && !a.inventory)
                return -EINVAL;
        *ret = a;
        return 0;
}

/* The previous inventory: a JSON array, or NULL when no file was named. */
static int load_inventory(const char *path, json_t **ret) {
        _cleanup_free_ char *data = NULL;
        json_error_t jerr;
        size_t n = 0;
        json_t *v;
        int r;

        if (!path) {
                *ret = NULL;
                return 0;
        }
        r = cm_read_file(path, INVENTORY_MAX, false, &data, &n);
        if (r < 0) {
                fprintf(stderr, "addon-apply: read inventory '%s': %s\n", path, strerror(-r));
                return r;
        }
        v = json_loadb(data, n, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_array(v)) {
                fprintf(stderr, "addon-apply: inventory '%s' is not a JSON array (line %d)\n", path,
                        jerr.line);
                json_decref(v);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

/* Prints the result object: the report's lists and the plan (each may be NULL: printed as []). */
static int print_result(int result, const struct cm_apply_report *rep, const json_t *plan) {
        _cleanup_free_ char *text = NULL;
        json_t *out;

        out = json_pack("{s:i, s:s, s:s, s:O?, s:O?, s:O?, s:O?, s:I}", "result", result, "reason",
                        rep->reason, "message", rep->message, "inventory", rep->inventory, "corrected",
                        rep->corrected, "pruned", rep->pruned, "plan", plan, "apiCalls",
                        (json_int_t) rep->api_calls);
        if (!out)
                return -ENOMEM;
        /* Absent parts are printed as empty lists: the test reads one shape. */
        static const char *const lists[] = { "inventory", "corrected", "pruned", "plan" };
        for (size_t i = 0; i < ELEMENTSOF(lists); i++)
                if (json_is_null(json_object_get(out, lists[i])) &&
                    json_object_set_new(out, lists[i], json_array()) < 0) {
                        json_decref(out);
                        return -ENOMEM;
                }
        text = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(out);
        if (!text)
                return -ENOMEM;
        printf("%s\n", text);
        return fflush(stdout) == 0 ? 0 : -EIO;
}

int main(int argc, char *argv[]) {
        _cleanup_(cm_kube_closep) struct cm_kube *k = NULL;
        _cleanup_(json_decrefp) json_t *previous = NULL, *plan = NULL;
        _cleanup_erase_free_ char *kubeconfig = NULL;
        struct cm_manifest m = {};
        struct cm_apply_report rep = {};
        struct cm_kube_error kerr = {};
        struct cm_apply_options o = {};
        struct args a = {};
        size_t kc_len = 0;
        int r, result;

        if (parse_args(argc, argv, &a) < 0)
                return usage();
        r = cm_read_file(a.kubeconfig, CM_KUBECONFIG_MAX, true, &kubeconfig, &kc_len);
        if (r < 0) {
                fprintf(stderr, "addon-apply: read kubeconfig '%s': %s\n", a.kubeconfig, strerror(-r));
                return 2;
        }
        if (load_inventory(a.inventory, &previous) < 0)
                return 2;
        if (a.manifest) {
                _cleanup_erase_free_ char *text = NULL; /* may hold Secrets */
                struct cm_manifest_error merr = {};
                size_t n = 0;

                r = cm_read_file(a.manifest, CM_MANIFEST_MAX, true, &text, &n);
                if (r < 0) {
                        fprintf(stderr, "addon-apply: read manifest '%s': %s\n", a.manifest, strerror(-r));
                        return 2;
                }
                r = cm_manifest_parse(text, n, &m, &merr);
                if (r < 0) {
                        (void) cm_strlcpy(rep.reason, "InvalidManifest", sizeof(rep.reason));
                        cm_manifest_error_format(&merr, rep.message, sizeof(rep.message));
                        return print_result(r, &rep, NULL) < 0 ? 1 : 0;
                }
                cm_manifest_sort(&m);
        }

        o = (struct cm_apply_options){ .addon = a.addon,
                                       .default_namespace = a.namespace,
                                       .timeout_sec = a.timeout_sec,
                                       .poll_ms = 200 };
        r = cm_kube_open(kubeconfig, kc_len, NULL, &k, &kerr);
        if (r < 0) {
                (void) cm_strlcpy(rep.reason, "KubeconfigInvalid", sizeof(rep.reason));
                (void) cm_strlcpy(rep.message, kerr.message, sizeof(rep.message));
                result = r;
        } else if (streq(a.command, "apply"))
                result = cm_addon_apply(k, &m, previous, &o, &rep);
        else if (streq(a.command, "plan"))
                result = cm_addon_plan(k, &m, previous, &o, &plan, &rep);
        else if (streq(a.command, "wait"))
                result = cm_addon_wait_healthy(k, previous, &o, &rep); /* leaves the lists NULL */
        else
                result = cm_addon_remove(k, previous, &o, &rep);

        r = print_result(result, &rep, plan);
        cm_apply_report_done(&rep);
        cm_manifest_done(&m);
        if (r < 0) {
                fprintf(stderr, "addon-apply: cannot print the result: %s\n", strerror(-r));
                return 1;
        }
        return 0;
}
