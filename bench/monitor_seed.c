/* SPDX-License-Identifier: Apache-2.0 */
/*
 * make bench, monitor section: puts cluster records straight into a stopped service's data directory,
 * as if each had been created through the API and its create operation had succeeded: the cluster
 * (engine rke, a minimal valid spec, validated by the service's own decoder) with its create
 * operation, the operation claimed and finished with phase Ready, and the cluster's kubeconfig in the
 * state vault (file kube_config_cluster.yml of the cluster's id), where the health monitor reads it.
 * Records whose name already exists in their environment are left alone, so a second run with more
 * records adds only the new ones. Environments are created when missing.
 *
 *   monitor-seed --data-dir DIR --records FILE [--limit N]
 *
 * FILE holds one JSON object per line: {"env": "...", "name": "...", "server": "https://...",
 * "kubeconfig": "<YAML>"} (other members are ignored). The vault keyring is DIR/vault.key and the
 * vault DIR/state, as `clustermgmt serve` has them by default. Prints one JSON object: records read,
 * created, skipped and the time taken.
 */
#include "base/common.h"

#include <getopt.h>
#include <jansson.h>

#include "api/documents.h"
#include "api/model.h"
#include "api/problem.h"
#include "base/parse.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "engine/engine.h"
#include "lifecycle/conditions.h"
#include "store/store.h"
#include "vault/crypto.h"
#include "vault/vault.h"

#define KUBECONFIG_FILE "kube_config_cluster.yml"
#define OWNER "monitor-seed"
/* One node reachable over SSH: the smallest spec the rke engine accepts. */
#define RKE_SPEC                                                                                            \
        "{\"engine\":\"rke\",\"rke\":{\"nodes\":[{\"address\":\"192.0.2.10\",\"user\":\"ubuntu\","          \
        "\"roles\":[\"controlplane\",\"etcd\",\"worker\"],\"sshKey\":\"ops\"}]}}"
#define RKE_DOC "{\"name\":\"x\",\"spec\":" RKE_SPEC "}"

static int ensure_env(struct cm_store *store, const char *env) {
        struct cm_environment e = {};
        int r = STORE_CALL(store, env_get, env, &e);

        if (r >= 0) {
                cm_environment_done(&e);
                return 0;
        }
        if (r != -ENOENT)
                return r;
        e = (struct cm_environment){ .name = CM_UNCONST(char *, env),
                                     .labels_json = CM_UNCONST(char *, "{}"),
                                     .created_usec = cm_now_usec() };
        r = STORE_CALL(store, env_create, &e);
        return r == -EEXIST ? 0 : r;
}

/* The cluster and its create operation, as the API's create does. */
static int create_record(struct cm_store *store, const char *env, const char *name, const char *spec_json,
                         const char *engine, char *id, size_t id_size, char *op_id, size_t op_size) {
        _cleanup_free_ char *conditions = NULL;
        uint64_t now = cm_now_usec();
        struct cm_cluster c;
        struct cm_operation op;
        int r;

        r = cm_random_id("cl_", id, id_size);
        if (r >= 0)
                r = cm_random_id("op_", op_id, op_size);
        if (r < 0)
                return r;
        conditions = cm_conditions_set(NULL, "Ready", "False", "Pending", "waiting for the create operation",
                                       now);
        if (!conditions)
                return -ENOMEM;
        c = (struct cm_cluster){
                .id = id,
                .env = CM_UNCONST(char *, env),
                .name = CM_UNCONST(char *, name),
                .engine = CM_UNCONST(char *, engine),
                .labels_json = CM_UNCONST(char *, "{}"),
                .spec_json = CM_UNCONST(char *, spec_json),
                .generation = 1,
                .resource_version = 1,
                .phase = CM_PHASE_PENDING,
                .conditions_json = conditions,
                .status_json = CM_UNCONST(char *, "{}"),
                .created_usec = now,
                .updated_usec = now,
        };
        op = (struct cm_operation){
                .id = op_id,
                .env = CM_UNCONST(char *, env),
                .cluster_id = id,
                .cluster_name = CM_UNCONST(char *, name),
                .type = CM_OP_CREATE,
                .state = CM_OP_PENDING,
                .generation = 1,
                .max_attempts = 3,
                .requested_by = CM_UNCONST(char *, OWNER),
                .created_usec = now,
                .next_run_usec = now,
        };
        return STORE_CALL(store, cluster_create, &c, &op);
}

/* Claims the operation just queued and finishes it: phase Ready, as a successful create ends. */
static int finish_record(struct cm_store *store, const char *op_id, const char *server) {
        _cleanup_free_ char *c1 = NULL, *c2 = NULL, *status = NULL;
        _cleanup_(cm_operation_done) struct cm_operation op = {};
        _cleanup_(cm_cluster_done) struct cm_cluster c = {};
        static const char log_line[] = "create attempt 1 of 3 started by " OWNER "\ncreate succeeded\n";
        struct cm_op_outcome o;
        uint64_t now = cm_now_usec();
        json_t *st;
        int r;

        r = STORE_CALL(store, op_claim, OWNER, now, 60 * USEC_PER_SEC, &op);
        if (r < 0)
                return r;
        if (!streq(op.id, op_id)) {
                /* Not ours: another pending operation is queued in this data directory. */
                (void) STORE_CALL(store, op_release, op.id, OWNER);
                return -EBUSY;
        }
        r = STORE_CALL(store, cluster_get_by_id, op.cluster_id, &c);
        if (r < 0)
                return r;
        c1 = cm_conditions_set(c.conditions_json, "Ready", "True", "Created", "the cluster matches its spec",
                               now);
        if (c1)
                c2 = cm_conditions_set(c1, "Reconciling", "False", "Created", "the cluster matches its spec",
                                       now);
        st = json_pack("{s:s,s:i}", "endpoint", server, "nodes", 1);
        if (st)
                status = json_dumps(st, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(st);
        if (!c2 || !status)
                return -ENOMEM;
        o = (struct cm_op_outcome){
                .state = CM_OP_SUCCEEDED,
                .phase = CM_PHASE_READY,
                .conditions_json = c2,
                .status_json = status,
                .set_observed_generation = true,
                .log_text = log_line,
                .log_len = sizeof(log_line) - 1,
        };
        return STORE_CALL(store, op_finish, op.id, OWNER, cm_now_usec(), &o);
}

int main(int argc, char *argv[]) {
        static const struct option longopts[] = {
                { "data-dir", required_argument, NULL, 'd' },
                { "records", required_argument, NULL, 'r' },
                { "limit", required_argument, NULL, 'n' },
                {},
        };
        const char *data_dir = NULL, *records = NULL;
        unsigned limit = UINT_MAX, read_n = 0, created = 0, skipped = 0;
        _cleanup_free_ char *db = NULL, *key_file = NULL, *state = NULL, *line = NULL;
        _cleanup_(cm_cluster_doc_done) struct cm_cluster_doc doc = {};
        _cleanup_(cm_store_closep) struct cm_store *store = NULL;
        _cleanup_(cm_vault_closep) struct cm_vault *vault = NULL;
        _cleanup_(cm_keyring_freep) struct cm_keyring *kr = NULL;
        struct cm_problem p;
        size_t line_size = 0;
        uint64_t t0 = cm_mono_usec();
        FILE *f;
        int c, r;

        while ((c = getopt_long(argc, argv, "", longopts, NULL)) >= 0) {
                switch (c) {
                case 'd':
                        data_dir = optarg;
                        break;
                case 'r':
                        records = optarg;
                        break;
                case 'n':
                        if (safe_atou(optarg, &limit) < 0)
                                return 2;
                        break;
                default:
                        return 2;
                }
        }
        if (!data_dir || !records) {
                fprintf(stderr, "usage: monitor-seed --data-dir DIR --records FILE [--limit N]\n");
                return 2;
        }
        if (asprintf(&db, "sqlite:%s/clustermgmt.db", data_dir) < 0 ||
            asprintf(&key_file, "%s/vault.key", data_dir) < 0 || asprintf(&state, "%s/state", data_dir) < 0)
                return 1;
        r = cm_store_open(db, &store);
        if (r >= 0)
                r = STORE_CALL(store, migrate);
        if (r < 0) {
                fprintf(stderr, "monitor-seed: open the database %s: %s\n", db, strerror(-r));
                return 1;
        }
        r = cm_keyring_load(key_file, &kr);
        if (r >= 0)
                r = cm_vault_open(state, kr, CM_VAULT_KEEP_DEFAULT, &vault);
        if (r < 0) {
                fprintf(stderr, "monitor-seed: open the state vault %s: %s\n", state, strerror(-r));
                return 1;
        }
        /* The spec goes through the service's own validation (the rke engine's validate()). */
        cm_engines_register_builtin();
        cm_problem_init(&p);
        r = cm_cluster_doc_decode(RKE_DOC, sizeof(RKE_DOC) - 1, CM_CLUSTER_DOC_CREATE, &doc, &p);
        if (r < 0) {
                char *errs = p.errors ? json_dumps(p.errors, JSON_COMPACT) : NULL;

                fprintf(stderr, "monitor-seed: the rke spec is refused: %s %s\n", p.detail, errs ?: "");
                free(errs);
                cm_problem_done(&p);
                return 1;
        }
        cm_problem_done(&p);

        f = fopen(records, "re");
        if (!f) {
                fprintf(stderr, "monitor-seed: %s: %s\n", records, strerror(errno));
                return 1;
        }
        while (read_n < limit && getline(&line, &line_size, f) > 0) {
                json_t *rec = json_loads(line, 0, NULL);
                const char *env = json_string_value(json_object_get(rec, "env")),
                           *name = json_string_value(json_object_get(rec, "name")),
                           *server = json_string_value(json_object_get(rec, "server")),
                           *kc = json_string_value(json_object_get(rec, "kubeconfig"));
                struct cm_cluster existing = {};
                char id[40], op_id[40];

                if (!env || !name || !server || !kc) {
                        fprintf(stderr,
                                "monitor-seed: record %u: env, name, server and kubeconfig are needed\n",
                                read_n + 1);
                        json_decref(rec);
                        r = -EINVAL;
                        break;
                }
                read_n++;
                r = STORE_CALL(store, cluster_get, env, name, &existing);
                if (r >= 0) {
                        cm_cluster_done(&existing);
                        skipped++;
                        json_decref(rec);
                        continue;
                }
                if (r == -ENOENT)
                        r = ensure_env(store, env);
                if (r >= 0)
                        r = create_record(store, env, name, doc.spec_json, doc.engine, id, sizeof(id), op_id,
                                          sizeof(op_id));
                /* The kubeconfig before the outcome: a Ready cluster always has one. */
                if (r >= 0)
                        r = cm_vault_write(vault, id, KUBECONFIG_FILE, kc, strlen(kc), -1, NULL);
                if (r >= 0)
                        r = finish_record(store, op_id, server);
                if (r < 0)
                        fprintf(stderr, "monitor-seed: record %s/%s: %s\n", env, name, strerror(-r));
                json_decref(rec);
                if (r < 0)
                        break;
                created++;
        }
        fclose(f);
        printf("{\"read\":%u,\"created\":%u,\"skipped\":%u,\"seconds\":%.2f}\n", read_n, created, skipped,
               (double) (cm_mono_usec() - t0) / 1e6);
        return r < 0 ? 1 : 0;
}
