/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <setjmp.h>
#include <sys/wait.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

#include <jansson.h>
#include <sqlite3.h>

#include "base/strbuf.h"
#include "base/util.h"
#include "store/sqlite_migrations.h"
#include "store/store.h"

/*
 * The store conformance suite: the contract of store/store.h, checked against every backend.
 *
 * A backend takes part through a factory that makes a fresh, empty database and gives its URL;
 * every case opens that URL with cm_store_open() (twice when it plays two processes), so the suite
 * only ever sees the public interface. Each case gets its own database. Add a backend by adding a
 * factory to `factories` (a factory whose create() returns -EOPNOTSUPP is skipped, e.g. when no
 * server is configured).
 *
 * Backend-specific checks (URL forms of SQLite) live in their own group at the end.
 */

struct store_factory {
        const char *name;
        /* Makes a new empty database: its URL, and a handle given back to destroy(). */
        int (*create)(char **ret_url, void **ret_handle);
        void (*destroy)(void *handle);
};

/* ---- SQLite: a fresh file in a new temporary directory per case ---- */

struct sqlite_tmp {
        char dir[PATH_MAX];
};

static int sqlite_factory_create(char **ret_url, void **ret_handle) {
        const char *tmp = getenv("TMPDIR");
        struct sqlite_tmp *t;
        char *url;

        t = new0(struct sqlite_tmp, 1);
        if (!t)
                return -ENOMEM;
        if (cm_snprintf(t->dir, sizeof(t->dir), "%s/cm-store-XXXXXX", isempty(tmp) ? "/tmp" : tmp) < 0 ||
            !mkdtemp(t->dir)) {
                free(t);
                return -EIO;
        }
        if (asprintf(&url, "sqlite://%s/store.db", t->dir) < 0) {
                (void) rmdir(t->dir);
                free(t);
                return -ENOMEM;
        }
        *ret_url = url;
        *ret_handle = t;
        return 0;
}

static void sqlite_factory_destroy(void *handle) {
        static const char *const suffixes[] = { "", "-wal", "-shm", "-journal" };
        struct sqlite_tmp *t = handle;
        char p[PATH_MAX + 32];

        if (!t)
                return;
        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++)
                if (cm_snprintf(p, sizeof(p), "%s/store.db%s", t->dir, suffixes[i]) >= 0)
                        (void) unlink(p);
        (void) rmdir(t->dir);
        free(t);
}

static const struct store_factory factories[] = {
        { "sqlite", sqlite_factory_create, sqlite_factory_destroy },
};

static const struct store_factory *current_factory;

/* ---- fixture ---- */

struct fixture {
        char *url;
        void *handle;
        struct cm_store *s;
};

static int fixture_setup_unmigrated(void **state) {
        struct fixture *f = new0(struct fixture, 1);

        assert_non_null(f);
        assert_int_equal(current_factory->create(&f->url, &f->handle), 0);
        assert_int_equal(cm_store_open(f->url, &f->s), 0);
        *state = f;
        return 0;
}

static int fixture_setup(void **state) {
        struct fixture *f;

        fixture_setup_unmigrated(state);
        f = *state;
        assert_true(STORE_CALL(f->s, migrate) >= 0);
        return 0;
}

static int fixture_teardown(void **state) {
        struct fixture *f = *state;

        cm_store_close(f->s);
        current_factory->destroy(f->handle);
        free(f->url);
        free(f);
        return 0;
}

/* ---- helpers ---- */

#define T0 UINT64_C(1700000000000000)
#define SEC USEC_PER_SEC
#define SPEC "{\"engine\":\"local\",\"local\":{\"nodes\":1}}"
#define SPEC2 "{\"engine\":\"local\",\"local\":{\"nodes\":3}}"

static char *xstrdup(const char *s) {
        char *p;

        if (!s)
                return NULL;
        p = strdup(s);
        assert_non_null(p);
        return p;
}

static struct cm_operation mk_op(const char *id, enum cm_op_type type, uint64_t created, uint64_t next_run) {
        return (struct cm_operation){
                .id = xstrdup(id),
                .type = type,
                .state = CM_OP_PENDING,
                .max_attempts = 5,
                .requested_by = xstrdup("tester"),
                .created_usec = created,
                .next_run_usec = next_run,
        };
}

static struct cm_cluster mk_cluster(const char *id, const char *env, const char *name, uint64_t created) {
        return (struct cm_cluster){
                .id = xstrdup(id),
                .env = xstrdup(env),
                .name = xstrdup(name),
                .engine = xstrdup("local"),
                .labels_json = xstrdup("{\"team\":\"a\"}"),
                .spec_json = xstrdup(SPEC),
                .phase = CM_PHASE_PENDING,
                .conditions_json = xstrdup("[]"),
                .status_json = xstrdup("{}"),
                .created_usec = created,
                .updated_usec = created,
        };
}

static int make_env(struct cm_store *s, const char *name) {
        char n[64];
        struct cm_environment e = { .name = n, .labels_json = NULL, .created_usec = T0 };

        assert_int_equal(cm_strlcpy(n, name, sizeof(n)), 0);
        return STORE_CALL(s, env_create, &e);
}

/* Creates env/name (id cl_id) with its create operation op_id, runnable from t. */
static int make_cluster(struct cm_store *s, const char *env, const char *name, const char *cl_id,
                        const char *op_id, uint64_t t) {
        _cleanup_(cm_cluster_done) struct cm_cluster c = mk_cluster(cl_id, env, name, t);
        _cleanup_(cm_operation_done) struct cm_operation op = mk_op(op_id, CM_OP_CREATE, t, t);

        return STORE_CALL(s, cluster_create, &c, &op);
}

/* Queues an operation on env/name: a spec change (spec non-NULL) or a delete (spec NULL). */
static int queue_op(struct cm_store *s, const char *env, const char *name, int64_t rv, const char *spec,
                    enum cm_op_type type, const char *op_id, uint64_t t, struct cm_cluster *ret,
                    char **conflict) {
        _cleanup_(cm_operation_done) struct cm_operation op = mk_op(op_id, type, t, t);

        return STORE_CALL(s, cluster_update, env, name, rv, spec, NULL,
                          spec ? CM_PHASE_UPDATING : CM_PHASE_DELETING, &op, ret, conflict);
}

static const struct cm_op_outcome outcome_ready = {
        .state = CM_OP_SUCCEEDED,
        .phase = CM_PHASE_READY,
        .set_observed_generation = true,
};

static void claim_expect(struct cm_store *s, const char *owner, uint64_t now, const char *expect_id) {
        _cleanup_(cm_operation_done) struct cm_operation op = {};

        assert_int_equal(STORE_CALL(s, op_claim, owner, now, 60 * SEC, &op), 0);
        assert_string_equal(op.id, expect_id);
        assert_int_equal(op.state, CM_OP_RUNNING);
        assert_string_equal(op.lease_owner, owner);
}

static void claim_none(struct cm_store *s, uint64_t now) {
        struct cm_operation op = { .seq = -42 };

        assert_int_equal(STORE_CALL(s, op_claim, "nobody", now, 60 * SEC, &op), -EAGAIN);
        assert_int_equal(op.seq, -42); /* untouched on failure */
}

/* Claims (must get op_id) and finishes it successfully. */
static void run_op(struct cm_store *s, const char *op_id, uint64_t now) {
        claim_expect(s, "worker", now, op_id);
        assert_int_equal(STORE_CALL(s, op_finish, op_id, "worker", now, &outcome_ready), 0);
}

static struct cm_operation get_op(struct cm_store *s, const char *id) {
        struct cm_operation op = {};

        assert_int_equal(STORE_CALL(s, op_get, id, &op), 0);
        return op;
}

static struct cm_cluster get_cluster(struct cm_store *s, const char *env, const char *name) {
        struct cm_cluster c = {};

        assert_int_equal(STORE_CALL(s, cluster_get, env, name, &c), 0);
        return c;
}

/* ---- migrations ---- */

static void test_migrate_ping(void **state) {
        struct fixture *f = *state;
        int applied;

        assert_int_equal(STORE_CALL(f->s, ping), -EPROTO);
        applied = STORE_CALL(f->s, migrate);
        assert_true(applied > 0);
        assert_int_equal(STORE_CALL(f->s, ping), 0);
        /* Idempotent: nothing left to apply. */
        assert_int_equal(STORE_CALL(f->s, migrate), 0);
        assert_int_equal(STORE_CALL(f->s, ping), 0);
}

struct migrate_arg {
        const char *url;
        int result;
};

static void *migrate_thread(void *p) {
        struct migrate_arg *a = p;
        _cleanup_(cm_store_closep) struct cm_store *s = NULL;

        a->result = cm_store_open(a->url, &s);
        if (a->result >= 0)
                a->result = STORE_CALL(s, migrate);
        return NULL;
}

/* Two "processes" (store objects) migrating one fresh database at the same time. */
static void test_migrate_concurrent(void **state) {
        struct fixture *f = *state;
        struct migrate_arg a[4];
        pthread_t t[ELEMENTSOF(a)];
        int total = 0, expected;

        for (size_t i = 0; i < ELEMENTSOF(a); i++) {
                a[i] = (struct migrate_arg){ .url = f->url };
                assert_int_equal(pthread_create(&t[i], NULL, migrate_thread, &a[i]), 0);
        }
        for (size_t i = 0; i < ELEMENTSOF(a); i++) {
                assert_int_equal(pthread_join(t[i], NULL), 0);
                assert_true(a[i].result >= 0);
                total += a[i].result;
        }
        assert_int_equal(STORE_CALL(f->s, ping), 0);

        /* Every migration was applied exactly once among them. */
        {
                struct migrate_arg b = { .url = NULL };
                _cleanup_free_ char *url = NULL;
                void *h = NULL;

                assert_int_equal(current_factory->create(&url, &h), 0);
                b.url = url;
                migrate_thread(&b);
                expected = b.result;
                current_factory->destroy(h);
        }
        assert_int_equal(total, expected);
}

/* ---- environments ---- */

static void test_env_crud(void **state) {
        struct fixture *f = *state;
        struct cm_environment e = { .name = NULL };

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_env(f->s, "dev"), -EEXIST);

        assert_int_equal(STORE_CALL(f->s, env_get, "nope", &e), -ENOENT);
        assert_null(e.name);
        assert_int_equal(STORE_CALL(f->s, env_get, "dev", &e), 0);
        assert_string_equal(e.name, "dev");
        assert_string_equal(e.labels_json, "{}");
        assert_int_equal(e.created_usec, T0);
        cm_environment_done(&e);

        /* Not empty while a cluster remains. */
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        assert_int_equal(STORE_CALL(f->s, env_delete, "dev"), -ENOTEMPTY);
        assert_int_equal(STORE_CALL(f->s, env_get, "dev", &e), 0);
        cm_environment_done(&e);

        assert_int_equal(make_env(f->s, "empty"), 0);
        assert_int_equal(STORE_CALL(f->s, env_delete, "empty"), 0);
        assert_int_equal(STORE_CALL(f->s, env_delete, "empty"), -ENOENT);
        assert_int_equal(STORE_CALL(f->s, env_get, "empty", &e), -ENOENT);
}

static void test_env_list_paging(void **state) {
        static const char *const names[] = { "e4", "e1", "e3", "e0", "e2" };
        static const struct {
                const char *after;
                unsigned limit;
                size_t n;
                const char *first;
                const char *last;
        } pages[] = {
                { NULL, 2, 2, "e0", "e1" }, { "e1", 2, 2, "e2", "e3" },   { "e3", 2, 1, "e4", "e4" },
                { "e4", 2, 0, NULL, NULL }, { NULL, 100, 5, "e0", "e4" }, { "a", 1, 1, "e0", "e0" },
                { NULL, 0, 0, NULL, NULL },
        };
        struct fixture *f = *state;

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                assert_int_equal(make_env(f->s, names[i]), 0);

        for (size_t i = 0; i < ELEMENTSOF(pages); i++) {
                struct cm_environment *a = NULL;
                size_t n = SIZE_MAX;

                assert_int_equal(STORE_CALL(f->s, env_list, pages[i].after, pages[i].limit, &a, &n), 0);
                assert_int_equal(n, pages[i].n);
                if (n > 0) {
                        assert_string_equal(a[0].name, pages[i].first);
                        assert_string_equal(a[n - 1].name, pages[i].last);
                }
                cm_environment_array_free(a, n);
        }
}

/* ---- API keys ---- */

static void test_apikey(void **state) {
        struct fixture *f = *state;
        char id1[] = "ak_1", id2[] = "ak_2", name[] = "bootstrap", role[] = "admin";
        char hash1[65], hash2[65];
        struct cm_apikey k1 = { .id = id1, .name = name, .hash = hash1, .role = role, .created_usec = T0 };
        struct cm_apikey k2 = { .id = id2, .name = name, .hash = hash1, .role = role, .created_usec = T0 };
        struct cm_apikey got = {};
        uint64_t n = 42;

        cm_sha256_hex("token-1", 7, hash1);
        cm_sha256_hex("token-2", 7, hash2);

        assert_int_equal(STORE_CALL(f->s, apikey_count, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(STORE_CALL(f->s, apikey_create, &k1, NULL, 0), 0);
        /* Same hash under another id. */
        assert_int_equal(STORE_CALL(f->s, apikey_create, &k2, NULL, 0), -EEXIST);
        assert_int_equal(STORE_CALL(f->s, apikey_count, &n), 0);
        assert_int_equal(n, 1);
        k2.hash = hash2;
        k2.expires_usec = T0 + 3600 * SEC;
        assert_int_equal(STORE_CALL(f->s, apikey_create, &k2, NULL, 0), 0);
        assert_int_equal(STORE_CALL(f->s, apikey_count, &n), 0);
        assert_int_equal(n, 2);

        assert_int_equal(STORE_CALL(f->s, apikey_get_by_hash, hash2, &got), 0);
        assert_string_equal(got.id, "ak_2");
        assert_string_equal(got.name, "bootstrap");
        assert_string_equal(got.hash, hash2);
        assert_string_equal(got.role, "admin");
        assert_int_equal(got.created_usec, T0);
        assert_int_equal(got.expires_usec, T0 + 3600 * SEC);
        cm_apikey_done(&got);

        assert_int_equal(STORE_CALL(f->s, apikey_get_by_hash, "0000", &got), -ENOENT);
        assert_null(got.id);
}

/* ---- clusters ---- */

static void test_cluster_create(void **state) {
        struct fixture *f = *state;
        struct cm_cluster c = {};
        struct cm_operation op = {};

        assert_int_equal(make_cluster(f->s, "nope", "c1", "cl_1", "op_1", T0), -ENOENT);
        assert_int_equal(STORE_CALL(f->s, op_get, "op_1", &op), -ENOENT);

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_env(f->s, "prod"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        /* Name taken: nothing is written, not even the operation. */
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_2", "op_2", T0), -EEXIST);
        assert_int_equal(STORE_CALL(f->s, op_get, "op_2", &op), -ENOENT);
        /* The same name in another environment is another cluster. */
        assert_int_equal(make_cluster(f->s, "prod", "c1", "cl_3", "op_3", T0), 0);

        assert_int_equal(STORE_CALL(f->s, cluster_get, "dev", "c1", &c), 0);
        assert_string_equal(c.id, "cl_1");
        assert_string_equal(c.env, "dev");
        assert_string_equal(c.name, "c1");
        assert_string_equal(c.engine, "local");
        assert_string_equal(c.labels_json, "{\"team\":\"a\"}");
        assert_string_equal(c.spec_json, SPEC);
        assert_int_equal(c.generation, 1);
        assert_int_equal(c.resource_version, 1);
        assert_int_equal(c.observed_generation, 0);
        assert_int_equal(c.phase, CM_PHASE_PENDING);
        assert_string_equal(c.conditions_json, "[]");
        assert_string_equal(c.status_json, "{}");
        assert_int_equal(c.created_usec, T0);
        assert_int_equal(c.updated_usec, T0);
        cm_cluster_done(&c);

        assert_int_equal(STORE_CALL(f->s, cluster_get_by_id, "cl_3", &c), 0);
        assert_string_equal(c.env, "prod");
        cm_cluster_done(&c);
        assert_int_equal(STORE_CALL(f->s, cluster_get_by_id, "cl_2", &c), -ENOENT);
        assert_int_equal(STORE_CALL(f->s, cluster_get, "dev", "c2", &c), -ENOENT);
        assert_null(c.id);

        op = get_op(f->s, "op_1");
        assert_true(op.seq > 0);
        assert_string_equal(op.env, "dev");
        assert_string_equal(op.cluster_id, "cl_1");
        assert_string_equal(op.cluster_name, "c1");
        assert_int_equal(op.type, CM_OP_CREATE);
        assert_int_equal(op.state, CM_OP_PENDING);
        assert_int_equal(op.generation, 1);
        assert_int_equal(op.attempts, 0);
        assert_int_equal(op.max_attempts, 5);
        assert_null(op.error);
        assert_null(op.lease_owner);
        assert_int_equal(op.next_run_usec, T0);
        assert_false(op.cancel_requested);
        assert_string_equal(op.requested_by, "tester");
        assert_int_equal(op.created_usec, T0);
        assert_int_equal(op.started_usec, 0);
        assert_int_equal(op.finished_usec, 0);
        cm_operation_done(&op);
}

static void test_cluster_list_count(void **state) {
        static const struct {
                const char *after;
                unsigned limit;
                size_t n;
                const char *first;
        } pages[] = {
                { NULL, 3, 3, "c00" }, { "c02", 3, 3, "c03" },  { "c08", 3, 1, "c09" },
                { "c09", 3, 0, NULL }, { NULL, 50, 10, "c00" },
        };
        struct fixture *f = *state;
        uint64_t n = 0;

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_env(f->s, "other"), 0);
        for (unsigned i = 0; i < 10; i++) {
                char name[16], cl[16], op[16];
                unsigned k = (i * 7) % 10; /* out of order */

                assert_true(cm_snprintf(name, sizeof(name), "c%02u", k) > 0);
                assert_true(cm_snprintf(cl, sizeof(cl), "cl_%02u", k) > 0);
                assert_true(cm_snprintf(op, sizeof(op), "op_%02u", k) > 0);
                assert_int_equal(make_cluster(f->s, "dev", name, cl, op, T0), 0);
        }
        assert_int_equal(make_cluster(f->s, "other", "c05", "cl_x", "op_x", T0), 0);

        assert_int_equal(STORE_CALL(f->s, cluster_count, "dev", &n), 0);
        assert_int_equal(n, 10);
        assert_int_equal(STORE_CALL(f->s, cluster_count, "other", &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(STORE_CALL(f->s, cluster_count, "none", &n), 0);
        assert_int_equal(n, 0);

        for (size_t i = 0; i < ELEMENTSOF(pages); i++) {
                struct cm_cluster *a = NULL;
                size_t got = SIZE_MAX;

                assert_int_equal(
                        STORE_CALL(f->s, cluster_list, "dev", pages[i].after, pages[i].limit, &a, &got), 0);
                assert_int_equal(got, pages[i].n);
                for (size_t j = 0; j < got; j++) {
                        assert_string_equal(a[j].env, "dev");
                        if (j > 0)
                                assert_true(strcmp(a[j - 1].name, a[j].name) < 0);
                }
                if (got > 0)
                        assert_string_equal(a[0].name, pages[i].first);
                cm_cluster_array_free(a, got);
        }
}

static void test_cluster_update(void **state) {
        struct fixture *f = *state;
        _cleanup_free_ char *conflict = NULL;
        struct cm_cluster c = {};
        struct cm_operation op = {};

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);

        assert_int_equal(queue_op(f->s, "dev", "nope", -1, SPEC2, CM_OP_UPDATE, "op_u0", T0, NULL, NULL),
                         -ENOENT);
        /* Stale resource version. */
        assert_int_equal(queue_op(f->s, "dev", "c1", 7, SPEC2, CM_OP_UPDATE, "op_u1", T0, &c, &conflict),
                         -ESTALE);
        assert_null(c.id);
        assert_null(conflict);
        /* The create operation is still pending: -EBUSY names it. */
        assert_int_equal(queue_op(f->s, "dev", "c1", 1, SPEC2, CM_OP_UPDATE, "op_u1", T0, &c, &conflict),
                         -EBUSY);
        assert_string_equal(conflict, "op_1");
        assert_null(c.id);
        conflict = mfree(conflict);
        assert_int_equal(STORE_CALL(f->s, op_get, "op_u1", &op), -ENOENT);

        run_op(f->s, "op_1", T0 + SEC);
        c = get_cluster(f->s, "dev", "c1");
        assert_int_equal(c.resource_version, 2); /* op_finish wrote status */
        assert_int_equal(c.observed_generation, 1);
        assert_int_equal(c.phase, CM_PHASE_READY);
        cm_cluster_done(&c);

        assert_int_equal(
                queue_op(f->s, "dev", "c1", 2, SPEC2, CM_OP_UPDATE, "op_u1", T0 + 2 * SEC, &c, &conflict),
                0);
        assert_null(conflict);
        assert_string_equal(c.id, "cl_1");
        assert_int_equal(c.generation, 2);
        assert_int_equal(c.resource_version, 3);
        assert_int_equal(c.observed_generation, 1);
        assert_int_equal(c.phase, CM_PHASE_UPDATING);
        assert_string_equal(c.spec_json, SPEC2);
        assert_string_equal(c.labels_json, "{\"team\":\"a\"}"); /* NULL labels: kept */
        assert_int_equal(c.updated_usec, T0 + 2 * SEC);
        assert_int_equal(c.created_usec, T0);
        cm_cluster_done(&c);

        op = get_op(f->s, "op_u1");
        assert_int_equal(op.type, CM_OP_UPDATE);
        assert_int_equal(op.state, CM_OP_PENDING);
        assert_int_equal(op.generation, 2);
        assert_string_equal(op.cluster_id, "cl_1");
        assert_string_equal(op.cluster_name, "c1");
        assert_string_equal(op.env, "dev");
        cm_operation_done(&op);

        /* A second change while op_u1 is unfinished (pending, then running). */
        assert_int_equal(queue_op(f->s, "dev", "c1", -1, SPEC, CM_OP_UPDATE, "op_u2", T0, NULL, &conflict),
                         -EBUSY);
        assert_string_equal(conflict, "op_u1");
        conflict = mfree(conflict);
        claim_expect(f->s, "worker", T0 + 3 * SEC, "op_u1");
        assert_int_equal(queue_op(f->s, "dev", "c1", -1, SPEC, CM_OP_UPDATE, "op_u2", T0, NULL, &conflict),
                         -EBUSY);
        assert_string_equal(conflict, "op_u1");
        conflict = mfree(conflict);
        assert_int_equal(STORE_CALL(f->s, op_finish, "op_u1", "worker", T0 + 3 * SEC, &outcome_ready), 0);

        /* Labels replaced, generation bumped again. */
        {
                _cleanup_(cm_operation_done) struct cm_operation o3 = mk_op("op_u3", CM_OP_UPDATE, T0, T0);
                assert_int_equal(STORE_CALL(f->s, cluster_update, "dev", "c1", -1, SPEC, "{\"team\":\"b\"}",
                                            CM_PHASE_UPDATING, &o3, NULL, NULL),
                                 0);
        }
        c = get_cluster(f->s, "dev", "c1");
        assert_int_equal(c.generation, 3);
        assert_int_equal(c.resource_version, 5);
        assert_string_equal(c.labels_json, "{\"team\":\"b\"}");
        cm_cluster_done(&c);
        op = get_op(f->s, "op_u3");
        assert_int_equal(op.generation, 3);
        cm_operation_done(&op);
}

/* spec NULL (a delete): no generation bump, the operation converges to the current generation. */
static void test_cluster_update_keep_spec(void **state) {
        struct fixture *f = *state;
        struct cm_cluster c = {};
        struct cm_operation op = {};

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        run_op(f->s, "op_1", T0);

        assert_int_equal(queue_op(f->s, "dev", "c1", 2, NULL, CM_OP_DELETE, "op_d", T0 + SEC, &c, NULL), 0);
        assert_int_equal(c.generation, 1);
        assert_int_equal(c.resource_version, 3);
        assert_int_equal(c.phase, CM_PHASE_DELETING);
        assert_string_equal(c.spec_json, SPEC);
        cm_cluster_done(&c);
        op = get_op(f->s, "op_d");
        assert_int_equal(op.type, CM_OP_DELETE);
        assert_int_equal(op.generation, 1);
        cm_operation_done(&op);
}

static void test_cluster_set_status(void **state) {
        struct fixture *f = *state;
        struct cm_cluster c = {};

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);

        assert_int_equal(STORE_CALL(f->s, cluster_set_status, "cl_1", CM_PHASE_PROVISIONING,
                                    "[{\"type\":\"Ready\",\"status\":\"False\"}]", "{\"nodes\":0}"),
                         0);
        c = get_cluster(f->s, "dev", "c1");
        assert_int_equal(c.phase, CM_PHASE_PROVISIONING);
        assert_int_equal(c.resource_version, 2);
        assert_int_equal(c.generation, 1);
        assert_string_equal(c.conditions_json, "[{\"type\":\"Ready\",\"status\":\"False\"}]");
        assert_string_equal(c.status_json, "{\"nodes\":0}");
        cm_cluster_done(&c);

        /* NULL leaves conditions and status as they are. */
        assert_int_equal(STORE_CALL(f->s, cluster_set_status, "cl_1", CM_PHASE_READY, NULL, NULL), 0);
        c = get_cluster(f->s, "dev", "c1");
        assert_int_equal(c.phase, CM_PHASE_READY);
        assert_int_equal(c.resource_version, 3);
        assert_string_equal(c.status_json, "{\"nodes\":0}");
        cm_cluster_done(&c);

        assert_int_equal(STORE_CALL(f->s, cluster_set_status, "cl_nope", CM_PHASE_READY, NULL, NULL),
                         -ENOENT);
}

/* ---- claims and leases ---- */

static void test_claim_order(void **state) {
        /* next_run decides; ties go to the older operation. */
        static const struct {
                const char *name;
                uint64_t next_run;
        } clusters[] = {
                { "a", T0 + 2 * SEC }, { "b", T0 }, { "c", T0 + SEC }, { "d", T0 }, { "e", T0 + 100 * SEC },
        };
        static const char *const order[] = { "op_b", "op_d", "op_c", "op_a" };
        struct fixture *f = *state;
        struct cm_operation op = {};

        assert_int_equal(make_env(f->s, "dev"), 0);
        claim_none(f->s, T0);
        for (size_t i = 0; i < ELEMENTSOF(clusters); i++) {
                char cl[16], id[16];
                _cleanup_(cm_cluster_done) struct cm_cluster c = {};
                _cleanup_(cm_operation_done) struct cm_operation o = {};

                assert_true(cm_snprintf(cl, sizeof(cl), "cl_%s", clusters[i].name) > 0);
                assert_true(cm_snprintf(id, sizeof(id), "op_%s", clusters[i].name) > 0);
                c = mk_cluster(cl, "dev", clusters[i].name, T0);
                o = mk_op(id, CM_OP_CREATE, T0, clusters[i].next_run);
                assert_int_equal(STORE_CALL(f->s, cluster_create, &c, &o), 0);
        }

        for (size_t i = 0; i < ELEMENTSOF(order); i++) {
                assert_int_equal(STORE_CALL(f->s, op_claim, "w1", T0 + 10 * SEC, 1000 * SEC, &op), 0);
                assert_string_equal(op.id, order[i]);
                assert_int_equal(op.state, CM_OP_RUNNING);
                assert_string_equal(op.lease_owner, "w1");
                assert_int_equal(op.lease_expires_usec, T0 + 1010 * SEC);
                assert_int_equal(op.attempts, 1);
                assert_int_equal(op.started_usec, T0 + 10 * SEC);
                assert_int_equal(op.finished_usec, 0);
                cm_operation_done(&op);
        }
        /* op_e is not due yet. */
        claim_none(f->s, T0 + 10 * SEC);
        claim_expect(f->s, "w1", T0 + 100 * SEC, "op_e");
        claim_none(f->s, T0 + 100 * SEC);
}

static void test_lease_takeover(void **state) {
        struct fixture *f = *state;
        struct cm_operation op = {};
        struct cm_cluster c = {};
        bool cancel = true;

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);

        assert_int_equal(STORE_CALL(f->s, op_claim, "w1", T0, 10 * SEC, &op), 0);
        cm_operation_done(&op);
        /* The lease holds until it expires... */
        claim_none(f->s, T0 + 5 * SEC);
        claim_none(f->s, T0 + 10 * SEC);
        /* ...a heartbeat extends it... */
        assert_int_equal(STORE_CALL(f->s, op_heartbeat, "op_1", "w1", T0 + 20 * SEC, &cancel), 0);
        assert_false(cancel);
        claim_none(f->s, T0 + 15 * SEC);
        /* ...and an expired one is taken over. */
        assert_int_equal(STORE_CALL(f->s, op_claim, "w2", T0 + 21 * SEC, 10 * SEC, &op), 0);
        assert_string_equal(op.id, "op_1");
        assert_string_equal(op.lease_owner, "w2");
        assert_int_equal(op.attempts, 2);
        assert_int_equal(op.started_usec, T0); /* first claim */
        assert_int_equal(op.lease_expires_usec, T0 + 31 * SEC);
        cm_operation_done(&op);

        /* The old owner lost it: nothing it does is written. */
        assert_int_equal(STORE_CALL(f->s, op_heartbeat, "op_1", "w1", T0 + 60 * SEC, &cancel), -ESRCH);
        assert_int_equal(STORE_CALL(f->s, op_finish, "op_1", "w1", T0 + 22 * SEC, &outcome_ready), -ESRCH);
        op = get_op(f->s, "op_1");
        assert_int_equal(op.state, CM_OP_RUNNING);
        assert_string_equal(op.lease_owner, "w2");
        assert_int_equal(op.lease_expires_usec, T0 + 31 * SEC);
        cm_operation_done(&op);
        c = get_cluster(f->s, "dev", "c1");
        assert_int_equal(c.resource_version, 1);
        assert_int_equal(c.phase, CM_PHASE_PENDING);
        cm_cluster_done(&c);

        assert_int_equal(STORE_CALL(f->s, op_finish, "op_1", "w2", T0 + 23 * SEC, &outcome_ready), 0);
}

static int call_heartbeat(struct cm_store *s, const char *id, const char *owner) {
        bool cancel = false;
        return STORE_CALL(s, op_heartbeat, id, owner, T0 + 3600 * SEC, &cancel);
}
static int call_finish(struct cm_store *s, const char *id, const char *owner) {
        static const struct cm_op_outcome o = {
                .state = CM_OP_FAILED,
                .error = "boom",
                .phase = CM_PHASE_FAILED,
                .conditions_json = "[1]",
                .status_json = "{\"x\":1}",
                .set_observed_generation = true,
        };
        return STORE_CALL(s, op_finish, id, owner, T0 + SEC, &o);
}
static int call_finish_delete(struct cm_store *s, const char *id, const char *owner) {
        static const struct cm_op_outcome o = { .state = CM_OP_SUCCEEDED, .delete_cluster = true };
        return STORE_CALL(s, op_finish, id, owner, T0 + SEC, &o);
}
static int call_release(struct cm_store *s, const char *id, const char *owner) {
        return STORE_CALL(s, op_release, id, owner);
}

/* Every lease-holder call with the wrong owner, or on an operation not running: -ESRCH, no write. */
static void test_lease_wrong_owner(void **state) {
        static const struct {
                const char *what;
                int (*call)(struct cm_store *s, const char *id, const char *owner);
        } calls[] = {
                { "heartbeat", call_heartbeat },
                { "finish", call_finish },
                { "finish+delete", call_finish_delete },
                { "release", call_release },
        };
        struct fixture *f = *state;
        struct cm_operation op = {};
        struct cm_cluster c = {};

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);

        for (size_t i = 0; i < ELEMENTSOF(calls); i++) {
                /* Pending: nobody holds it. */
                assert_int_equal(calls[i].call(f->s, "op_1", "w1"), -ESRCH);
                assert_int_equal(calls[i].call(f->s, "op_nope", "w1"), -ESRCH);
        }
        claim_expect(f->s, "w1", T0, "op_1");
        for (size_t i = 0; i < ELEMENTSOF(calls); i++) {
                assert_int_equal(calls[i].call(f->s, "op_1", "w2"), -ESRCH);
                op = get_op(f->s, "op_1");
                assert_int_equal(op.state, CM_OP_RUNNING);
                assert_string_equal(op.lease_owner, "w1");
                assert_int_equal(op.lease_expires_usec, T0 + 60 * SEC);
                assert_int_equal(op.attempts, 1);
                assert_null(op.error);
                cm_operation_done(&op);
                c = get_cluster(f->s, "dev", "c1");
                assert_int_equal(c.resource_version, 1);
                assert_int_equal(c.phase, CM_PHASE_PENDING);
                assert_int_equal(c.observed_generation, 0);
                assert_string_equal(c.status_json, "{}");
                cm_cluster_done(&c);
        }
        /* The holder can; afterwards (terminal) nobody can. */
        assert_int_equal(call_finish(f->s, "op_1", "w1"), 0);
        for (size_t i = 0; i < ELEMENTSOF(calls); i++)
                assert_int_equal(calls[i].call(f->s, "op_1", "w1"), -ESRCH);
}

static void test_finish_writes_status(void **state) {
        struct fixture *f = *state;
        struct cm_operation op = {};
        struct cm_cluster c = {};
        const struct cm_op_outcome ok = {
                .state = CM_OP_SUCCEEDED,
                .phase = CM_PHASE_READY,
                .conditions_json = "[{\"type\":\"Ready\",\"status\":\"True\"}]",
                .status_json = "{\"endpoint\":\"https://x\"}",
                .set_observed_generation = true,
        };
        const struct cm_op_outcome failed = { .state = CM_OP_FAILED,
                                              .error = "rke up failed",
                                              .phase = CM_PHASE_FAILED };

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        claim_expect(f->s, "w1", T0 + SEC, "op_1");
        assert_int_equal(STORE_CALL(f->s, op_finish, "op_1", "w1", T0 + 2 * SEC, &ok), 0);

        op = get_op(f->s, "op_1");
        assert_int_equal(op.state, CM_OP_SUCCEEDED);
        assert_null(op.lease_owner);
        assert_int_equal(op.lease_expires_usec, 0);
        assert_int_equal(op.finished_usec, T0 + 2 * SEC);
        assert_int_equal(op.started_usec, T0 + SEC);
        assert_int_equal(op.attempts, 1);
        assert_null(op.error);
        cm_operation_done(&op);
        c = get_cluster(f->s, "dev", "c1");
        assert_int_equal(c.phase, CM_PHASE_READY);
        assert_int_equal(c.observed_generation, 1);
        assert_int_equal(c.resource_version, 2);
        assert_string_equal(c.conditions_json, "[{\"type\":\"Ready\",\"status\":\"True\"}]");
        assert_string_equal(c.status_json, "{\"endpoint\":\"https://x\"}");
        cm_cluster_done(&c);

        /* A failure: error kept, observed generation and status untouched. */
        assert_int_equal(
                queue_op(f->s, "dev", "c1", -1, SPEC2, CM_OP_UPDATE, "op_2", T0 + 3 * SEC, NULL, NULL), 0);
        claim_expect(f->s, "w1", T0 + 3 * SEC, "op_2");
        assert_int_equal(STORE_CALL(f->s, op_finish, "op_2", "w1", T0 + 4 * SEC, &failed), 0);
        op = get_op(f->s, "op_2");
        assert_int_equal(op.state, CM_OP_FAILED);
        assert_string_equal(op.error, "rke up failed");
        assert_int_equal(op.finished_usec, T0 + 4 * SEC);
        cm_operation_done(&op);
        c = get_cluster(f->s, "dev", "c1");
        assert_int_equal(c.phase, CM_PHASE_FAILED);
        assert_int_equal(c.generation, 2);
        assert_int_equal(c.observed_generation, 1);
        assert_int_equal(c.resource_version, 4);
        assert_string_equal(c.status_json, "{\"endpoint\":\"https://x\"}");
        cm_cluster_done(&c);
}

static void test_retry(void **state) {
        struct fixture *f = *state;
        struct cm_operation op = {};
        const struct cm_op_outcome retry = {
                .state = CM_OP_PENDING,
                .error = "node unreachable",
                .next_run_usec = T0 + 100 * SEC,
                .phase = CM_PHASE_PROVISIONING,
        };

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        claim_expect(f->s, "w1", T0, "op_1");
        assert_int_equal(STORE_CALL(f->s, op_finish, "op_1", "w1", T0 + SEC, &retry), 0);

        op = get_op(f->s, "op_1");
        assert_int_equal(op.state, CM_OP_PENDING);
        assert_int_equal(op.attempts, 1);
        assert_int_equal(op.next_run_usec, T0 + 100 * SEC);
        assert_string_equal(op.error, "node unreachable");
        assert_null(op.lease_owner);
        assert_int_equal(op.finished_usec, 0);
        cm_operation_done(&op);

        /* Still the cluster's unfinished operation. */
        assert_int_equal(queue_op(f->s, "dev", "c1", -1, SPEC2, CM_OP_UPDATE, "op_2", T0, NULL, NULL),
                         -EBUSY);

        claim_none(f->s, T0 + 99 * SEC);
        assert_int_equal(STORE_CALL(f->s, op_claim, "w2", T0 + 100 * SEC, 60 * SEC, &op), 0);
        assert_string_equal(op.id, "op_1");
        assert_int_equal(op.attempts, 2);
        assert_int_equal(op.started_usec, T0);
        cm_operation_done(&op);
}

static void test_release(void **state) {
        struct fixture *f = *state;
        struct cm_operation op = {};

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0 + 5 * SEC), 0);
        claim_expect(f->s, "w1", T0 + 10 * SEC, "op_1");
        assert_int_equal(STORE_CALL(f->s, op_release, "op_1", "w1"), 0);

        op = get_op(f->s, "op_1");
        assert_int_equal(op.state, CM_OP_PENDING);
        assert_int_equal(op.attempts, 0);
        assert_null(op.lease_owner);
        cm_operation_done(&op);
        /* Runnable at once. */
        claim_expect(f->s, "w2", T0 + 10 * SEC, "op_1");
        op = get_op(f->s, "op_1");
        assert_int_equal(op.attempts, 1);
        cm_operation_done(&op);
}

static void test_delete_cluster(void **state) {
        struct fixture *f = *state;
        const struct cm_op_outcome deleted = { .state = CM_OP_SUCCEEDED, .delete_cluster = true };
        struct cm_operation op = {}, *ops = NULL;
        struct cm_cluster c = {};
        size_t n = 0;

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        run_op(f->s, "op_1", T0);
        assert_int_equal(queue_op(f->s, "dev", "c1", -1, NULL, CM_OP_DELETE, "op_d", T0 + SEC, NULL, NULL),
                         0);
        claim_expect(f->s, "w1", T0 + SEC, "op_d");
        assert_int_equal(STORE_CALL(f->s, op_finish, "op_d", "w1", T0 + 2 * SEC, &deleted), 0);

        assert_int_equal(STORE_CALL(f->s, cluster_get, "dev", "c1", &c), -ENOENT);
        assert_int_equal(STORE_CALL(f->s, cluster_get_by_id, "cl_1", &c), -ENOENT);
        /* History stays. */
        op = get_op(f->s, "op_d");
        assert_int_equal(op.state, CM_OP_SUCCEEDED);
        assert_string_equal(op.cluster_id, "cl_1");
        cm_operation_done(&op);
        op = get_op(f->s, "op_1");
        assert_int_equal(op.state, CM_OP_SUCCEEDED);
        cm_operation_done(&op);
        assert_int_equal(STORE_CALL(f->s, op_list, "dev", "c1", 0, 10, &ops, &n), 0);
        assert_int_equal(n, 2);
        cm_operation_array_free(ops, n);

        /* The name is free again; the environment is empty. */
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_2", "op_2", T0 + 3 * SEC), 0);
        c = get_cluster(f->s, "dev", "c1");
        assert_string_equal(c.id, "cl_2");
        assert_int_equal(c.generation, 1);
        cm_cluster_done(&c);
        run_op(f->s, "op_2", T0 + 3 * SEC);
        assert_int_equal(
                queue_op(f->s, "dev", "c1", -1, NULL, CM_OP_DELETE, "op_d2", T0 + 4 * SEC, NULL, NULL), 0);
        claim_expect(f->s, "w1", T0 + 4 * SEC, "op_d2");
        assert_int_equal(STORE_CALL(f->s, op_finish, "op_d2", "w1", T0 + 5 * SEC, &deleted), 0);
        assert_int_equal(STORE_CALL(f->s, env_delete, "dev"), 0);
}

static void test_cancel(void **state) {
        struct fixture *f = *state;
        enum cm_op_state st = _CM_OP_STATE_MAX;
        struct cm_operation op = {};
        struct cm_cluster c = {};
        bool cancel = false;

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c2", "cl_2", "op_2", T0 + 1), 0);

        assert_int_equal(STORE_CALL(f->s, op_cancel, "op_nope", T0, &st), -ENOENT);
        assert_int_equal(st, _CM_OP_STATE_MAX);

        /* Pending: cancelled at once; the cluster is left to the caller. */
        assert_int_equal(STORE_CALL(f->s, op_cancel, "op_1", T0 + SEC, &st), 0);
        assert_int_equal(st, CM_OP_CANCELLED);
        op = get_op(f->s, "op_1");
        assert_int_equal(op.state, CM_OP_CANCELLED);
        assert_int_equal(op.finished_usec, T0 + SEC);
        cm_operation_done(&op);
        c = get_cluster(f->s, "dev", "c1");
        assert_int_equal(c.phase, CM_PHASE_PENDING);
        assert_int_equal(c.resource_version, 1);
        cm_cluster_done(&c);
        /* Nothing unfinished any more: a new operation may be queued. */
        assert_int_equal(queue_op(f->s, "dev", "c1", -1, SPEC2, CM_OP_UPDATE, "op_1b", T0 + SEC, NULL, NULL),
                         0);

        /* Finished: -EALREADY. */
        st = _CM_OP_STATE_MAX;
        assert_int_equal(STORE_CALL(f->s, op_cancel, "op_1", T0 + SEC, &st), -EALREADY);
        assert_int_equal(st, _CM_OP_STATE_MAX);

        /* Running: requested; the holder learns it from its heartbeat. */
        claim_expect(f->s, "w1", T0 + 2 * SEC, "op_2");
        assert_int_equal(STORE_CALL(f->s, op_cancel, "op_2", T0 + 2 * SEC, &st), 0);
        assert_int_equal(st, CM_OP_RUNNING);
        op = get_op(f->s, "op_2");
        assert_int_equal(op.state, CM_OP_RUNNING);
        assert_true(op.cancel_requested);
        cm_operation_done(&op);
        assert_int_equal(STORE_CALL(f->s, op_heartbeat, "op_2", "w1", T0 + 100 * SEC, &cancel), 0);
        assert_true(cancel);
        {
                const struct cm_op_outcome o = { .state = CM_OP_CANCELLED, .phase = CM_PHASE_FAILED };
                assert_int_equal(STORE_CALL(f->s, op_finish, "op_2", "w1", T0 + 3 * SEC, &o), 0);
        }
        assert_int_equal(STORE_CALL(f->s, op_cancel, "op_2", T0 + 3 * SEC, &st), -EALREADY);
}

static void test_op_list(void **state) {
        struct fixture *f = *state;
        struct cm_operation *a = NULL;
        size_t n = 0;
        int64_t cursor;

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_0", T0), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c2", "cl_2", "op_x", T0), 0);
        run_op(f->s, "op_0", T0);
        run_op(f->s, "op_x", T0);
        for (unsigned i = 1; i < 5; i++) {
                char id[16];

                assert_true(cm_snprintf(id, sizeof(id), "op_%u", i) > 0);
                assert_int_equal(
                        queue_op(f->s, "dev", "c1", -1, SPEC2, CM_OP_UPDATE, id, T0 + i, NULL, NULL), 0);
                if (i < 4)
                        run_op(f->s, id, T0 + 10 * SEC);
        }

        /* Newest first, paged by seq. */
        assert_int_equal(STORE_CALL(f->s, op_list, "dev", "c1", 0, 2, &a, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(a[0].id, "op_4");
        assert_string_equal(a[1].id, "op_3");
        assert_true(a[0].seq > a[1].seq);
        cursor = a[1].seq;
        cm_operation_array_free(a, n);

        assert_int_equal(STORE_CALL(f->s, op_list, "dev", "c1", cursor, 2, &a, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(a[0].id, "op_2");
        assert_string_equal(a[1].id, "op_1");
        cursor = a[1].seq;
        cm_operation_array_free(a, n);

        assert_int_equal(STORE_CALL(f->s, op_list, "dev", "c1", cursor, 2, &a, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(a[0].id, "op_0");
        cursor = a[0].seq;
        cm_operation_array_free(a, n);

        assert_int_equal(STORE_CALL(f->s, op_list, "dev", "c1", cursor, 2, &a, &n), 0);
        assert_int_equal(n, 0);
        cm_operation_array_free(a, n);

        assert_int_equal(STORE_CALL(f->s, op_list, "dev", "c2", 0, 10, &a, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(a[0].id, "op_x");
        cm_operation_array_free(a, n);

        assert_int_equal(STORE_CALL(f->s, op_list, "prod", "c1", 0, 10, &a, &n), 0);
        assert_int_equal(n, 0);
        cm_operation_array_free(a, n);
}

static void test_op_stats(void **state) {
        struct fixture *f = *state;
        struct cm_op_stats stats = {};
        const struct cm_op_outcome failed = { .state = CM_OP_FAILED,
                                              .error = "x",
                                              .phase = CM_PHASE_FAILED };

        assert_int_equal(STORE_CALL(f->s, op_stats, T0, &stats), 0);
        assert_int_equal(stats.queue_depth, 0);

        assert_int_equal(make_env(f->s, "dev"), 0);
        /* 4 creates due at T0, 1 due later. */
        for (unsigned i = 0; i < 5; i++) {
                char name[16], cl[16], op[16];

                assert_true(cm_snprintf(name, sizeof(name), "c%u", i) > 0);
                assert_true(cm_snprintf(cl, sizeof(cl), "cl_%u", i) > 0);
                assert_true(cm_snprintf(op, sizeof(op), "op_%u", i) > 0);
                assert_int_equal(make_cluster(f->s, "dev", name, cl, op, i < 4 ? T0 : T0 + 100 * SEC), 0);
        }
        run_op(f->s, "op_0", T0); /* create succeeded */
        claim_expect(f->s, "w", T0, "op_1"); /* create running */
        claim_expect(f->s, "w", T0, "op_2");
        assert_int_equal(STORE_CALL(f->s, op_finish, "op_2", "w", T0, &failed), 0); /* create failed */
        assert_int_equal(
                queue_op(f->s, "dev", "c0", -1, SPEC2, CM_OP_UPDATE, "op_u", T0 + 200 * SEC, NULL, NULL), 0);

        assert_int_equal(STORE_CALL(f->s, op_stats, T0, &stats), 0);
        assert_int_equal(stats.count[CM_OP_CREATE][CM_OP_SUCCEEDED], 1);
        assert_int_equal(stats.count[CM_OP_CREATE][CM_OP_RUNNING], 1);
        assert_int_equal(stats.count[CM_OP_CREATE][CM_OP_FAILED], 1);
        assert_int_equal(stats.count[CM_OP_CREATE][CM_OP_PENDING], 2);
        assert_int_equal(stats.count[CM_OP_UPDATE][CM_OP_PENDING], 1);
        assert_int_equal(stats.count[CM_OP_DELETE][CM_OP_PENDING], 0);
        assert_int_equal(stats.queue_depth, 1); /* op_3; op_4 and op_u are not due */

        assert_int_equal(STORE_CALL(f->s, op_stats, T0 + 300 * SEC, &stats), 0);
        assert_int_equal(stats.queue_depth, 3);
}

/* ---- operation logs ---- */

static void test_op_log(void **state) {
        static const char *const chunks[] = { "line one\n", "line two\n", "line three\n" };
        static const struct {
                int64_t after;
                size_t cap;
                int ret;
                const char *text;
                int64_t last;
        } reads[] = {
                { 0, 1024, 3, "line one\nline two\nline three\n", 3 },
                { 2, 1024, 1, "line three\n", 3 },
                { 3, 1024, 0, "", 3 },
                { 0, 18, 2, "line one\nline two\n", 2 }, /* stops before the chunk that does not fit */
                { 0, 20, 2, "line one\nline two\n", 2 },
                { 1, 9, 1, "line two\n", 2 },
                { 0, 5, -ENOBUFS, "", -1 }, /* not even the first fits */
        };
        struct fixture *f = *state;

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c2", "cl_2", "op_2", T0), 0);

        assert_int_equal(STORE_CALL(f->s, op_log_append, "op_nope", T0, "x", 1), -ENOENT);
        for (size_t i = 0; i < ELEMENTSOF(chunks); i++)
                assert_int_equal(
                        STORE_CALL(f->s, op_log_append, "op_1", T0 + i, chunks[i], strlen(chunks[i])), 0);
        /* Only the first n bytes count. */
        assert_int_equal(STORE_CALL(f->s, op_log_append, "op_2", T0, "other-ignored", 5), 0);

        for (size_t i = 0; i < ELEMENTSOF(reads); i++) {
                _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT(reads[i].cap);
                int64_t last = -1;

                assert_int_equal(STORE_CALL(f->s, op_log_read, "op_1", reads[i].after, &sb, &last),
                                 reads[i].ret);
                assert_string_equal(sb.buf ?: "", reads[i].text);
                assert_int_equal(last, reads[i].last);
        }

        {
                _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT(100);
                int64_t last = -1;

                assert_int_equal(STORE_CALL(f->s, op_log_read, "op_2", 0, &sb, &last), 1);
                assert_string_equal(sb.buf, "other");
                assert_int_equal(last, 1);
                /* Appends to what the buffer holds. */
                assert_int_equal(STORE_CALL(f->s, op_log_read, "op_1", 2, &sb, &last), 1);
                assert_string_equal(sb.buf, "otherline three\n");
                assert_int_equal(STORE_CALL(f->s, op_log_read, "op_nope", 0, &sb, &last), -ENOENT);
                assert_int_equal(last, 3);
        }
}

/* ---- idempotency ---- */

static void test_idempotency(void **state) {
        struct fixture *f = *state;
        enum cm_idem_state st;
        int status = -1;
        char *body = NULL;

        assert_int_equal(STORE_CALL(f->s, idem_begin, "alice", "k1", "h1", T0, &st, &status, &body), 0);
        assert_int_equal(st, CM_IDEM_NEW);
        assert_int_equal(status, -1);
        assert_null(body);
        assert_int_equal(STORE_CALL(f->s, idem_begin, "alice", "k1", "h1", T0, &st, &status, &body), 0);
        assert_int_equal(st, CM_IDEM_BUSY);
        assert_int_equal(STORE_CALL(f->s, idem_begin, "alice", "k1", "h2", T0, &st, &status, &body), 0);
        assert_int_equal(st, CM_IDEM_MISMATCH);
        /* Keys are scoped to the principal. */
        assert_int_equal(STORE_CALL(f->s, idem_begin, "bob", "k1", "h2", T0, &st, &status, &body), 0);
        assert_int_equal(st, CM_IDEM_NEW);

        assert_int_equal(STORE_CALL(f->s, idem_finish, "alice", "k1", 202, "{\"id\":\"op_1\"}"), 0);
        assert_int_equal(STORE_CALL(f->s, idem_begin, "alice", "k1", "h1", T0 + SEC, &st, &status, &body),
                         0);
        assert_int_equal(st, CM_IDEM_DONE);
        assert_int_equal(status, 202);
        assert_string_equal(body, "{\"id\":\"op_1\"}");
        body = mfree(body);
        assert_int_equal(STORE_CALL(f->s, idem_begin, "alice", "k1", "h2", T0, &st, &status, &body), 0);
        assert_int_equal(st, CM_IDEM_MISMATCH);
        assert_int_equal(STORE_CALL(f->s, idem_finish, "alice", "nope", 200, "{}"), -ENOENT);

        /* Abort drops a placeholder so that the key can be used again; a stored answer stays. */
        assert_int_equal(STORE_CALL(f->s, idem_abort, "bob", "k1"), 0);
        assert_int_equal(STORE_CALL(f->s, idem_abort, "bob", "k1"), -ENOENT);
        assert_int_equal(STORE_CALL(f->s, idem_abort, "alice", "k1"), -ENOENT);
        assert_int_equal(STORE_CALL(f->s, idem_begin, "bob", "k1", "h3", T0 + 10 * SEC, &st, &status, &body),
                         0);
        assert_int_equal(st, CM_IDEM_NEW);

        /* Expiry removes records created before the cut. */
        assert_int_equal(STORE_CALL(f->s, idem_expire, T0 + 5 * SEC), 1);
        assert_int_equal(
                STORE_CALL(f->s, idem_begin, "alice", "k1", "h9", T0 + 20 * SEC, &st, &status, &body), 0);
        assert_int_equal(st, CM_IDEM_NEW);
        assert_int_equal(STORE_CALL(f->s, idem_begin, "bob", "k1", "h3", T0 + 20 * SEC, &st, &status, &body),
                         0);
        assert_int_equal(st, CM_IDEM_BUSY);
}

/* ---- several store objects and threads ---- */

/* A second store object on the same database behaves like a second process. */
static void test_second_store(void **state) {
        struct fixture *f = *state;
        _cleanup_(cm_store_closep) struct cm_store *b = NULL;
        struct cm_environment e = {};
        struct cm_operation op = {};
        struct cm_cluster c = {};

        assert_int_equal(cm_store_open(f->url, &b), 0);
        assert_int_equal(STORE_CALL(b, ping), 0);
        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(STORE_CALL(b, env_get, "dev", &e), 0);
        cm_environment_done(&e);
        assert_int_equal(make_cluster(b, "dev", "c1", "cl_1", "op_1", T0), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_2", "op_2", T0), -EEXIST);

        /* Claimed through one, invisible to the other's claim, finished through the other. */
        claim_expect(b, "wb", T0, "op_1");
        claim_none(f->s, T0);
        assert_int_equal(STORE_CALL(f->s, op_finish, "op_1", "wa", T0, &outcome_ready), -ESRCH);
        assert_int_equal(STORE_CALL(f->s, op_finish, "op_1", "wb", T0, &outcome_ready), 0);
        c = get_cluster(b, "dev", "c1");
        assert_int_equal(c.phase, CM_PHASE_READY);
        cm_cluster_done(&c);
        op = get_op(b, "op_1");
        assert_int_equal(op.state, CM_OP_SUCCEEDED);
        cm_operation_done(&op);
}

#define RACE_CLUSTERS 50
#define RACE_OPS_PER_CLUSTER 10
#define RACE_THREADS 8

struct race {
        struct cm_store *stores[2];
        atomic_int running[RACE_CLUSTERS];
        atomic_int claimed[RACE_CLUSTERS][RACE_OPS_PER_CLUSTER];
        atomic_int finished;
        atomic_int double_claims;
        atomic_int overlaps;
        atomic_int errors;
};

struct race_worker {
        struct race *race;
        unsigned idx;
};

static void *race_thread(void *p) {
        struct race_worker *w = p;
        struct race *race = w->race;
        struct cm_store *s = race->stores[w->idx % 2];
        const int total = RACE_CLUSTERS * RACE_OPS_PER_CLUSTER;
        char owner[16];

        if (cm_snprintf(owner, sizeof(owner), "w%u", w->idx) < 0) {
                atomic_fetch_add(&race->errors, 1);
                return NULL;
        }
        while (atomic_load(&race->finished) < total) {
                _cleanup_(cm_operation_done) struct cm_operation op = {};
                unsigned ci, k;
                int r;

                r = STORE_CALL(s, op_claim, owner, T0 + 1000 * SEC, 3600 * SEC, &op);
                if (r == -EAGAIN) {
                        usleep(200);
                        continue;
                }
                if (r < 0 || sscanf(op.id, "op_c%u_%u", &ci, &k) != 2 || ci >= RACE_CLUSTERS ||
                    k >= RACE_OPS_PER_CLUSTER) {
                        atomic_fetch_add(&race->errors, 1);
                        break;
                }
                if (atomic_exchange(&race->claimed[ci][k], 1) != 0)
                        atomic_fetch_add(&race->double_claims, 1);
                if (atomic_exchange(&race->running[ci], 1) != 0)
                        atomic_fetch_add(&race->overlaps, 1);

                r = STORE_CALL(s, op_finish, op.id, owner, T0 + 1000 * SEC, &outcome_ready);
                atomic_store(&race->running[ci], 0);
                if (r < 0) {
                        atomic_fetch_add(&race->errors, 1);
                        break;
                }
                /* Queue the cluster's next operation (nobody else can: it had one unfinished). */
                if (k + 1 < RACE_OPS_PER_CLUSTER) {
                        char id[32], name[16];

                        if (cm_snprintf(id, sizeof(id), "op_c%03u_%02u", ci, k + 1) < 0 ||
                            cm_snprintf(name, sizeof(name), "c%03u", ci) < 0 ||
                            queue_op(s, "dev", name, -1, k % 2 ? SPEC : SPEC2, CM_OP_UPDATE, id, T0, NULL,
                                     NULL) < 0) {
                                atomic_fetch_add(&race->errors, 1);
                                break;
                        }
                }
                atomic_fetch_add(&race->finished, 1);
        }
        return NULL;
}

/*
 * Eight workers on two store objects run 500 operations over 50 clusters: each operation is claimed
 * once, no cluster ever has two running, and the final state adds up.
 */
static void test_concurrent_claims(void **state) {
        struct fixture *f = *state;
        _cleanup_(cm_store_closep) struct cm_store *b = NULL;
        _cleanup_free_ struct race *race = NULL;
        struct race_worker workers[RACE_THREADS];
        pthread_t t[RACE_THREADS];
        struct cm_op_stats stats = {};

        race = new0(struct race, 1);
        assert_non_null(race);
        assert_int_equal(cm_store_open(f->url, &b), 0);
        race->stores[0] = f->s;
        race->stores[1] = b;

        assert_int_equal(make_env(f->s, "dev"), 0);
        for (unsigned i = 0; i < RACE_CLUSTERS; i++) {
                char name[16], cl[16], op[32];

                assert_true(cm_snprintf(name, sizeof(name), "c%03u", i) > 0);
                assert_true(cm_snprintf(cl, sizeof(cl), "cl_%03u", i) > 0);
                assert_true(cm_snprintf(op, sizeof(op), "op_c%03u_00", i) > 0);
                assert_int_equal(make_cluster(f->s, "dev", name, cl, op, T0), 0);
        }

        for (unsigned i = 0; i < RACE_THREADS; i++) {
                workers[i] = (struct race_worker){ .race = race, .idx = i };
                assert_int_equal(pthread_create(&t[i], NULL, race_thread, &workers[i]), 0);
        }
        for (unsigned i = 0; i < RACE_THREADS; i++)
                assert_int_equal(pthread_join(t[i], NULL), 0);

        assert_int_equal(atomic_load(&race->errors), 0);
        assert_int_equal(atomic_load(&race->double_claims), 0);
        assert_int_equal(atomic_load(&race->overlaps), 0);
        assert_int_equal(atomic_load(&race->finished), RACE_CLUSTERS * RACE_OPS_PER_CLUSTER);
        for (unsigned i = 0; i < RACE_CLUSTERS; i++)
                for (unsigned k = 0; k < RACE_OPS_PER_CLUSTER; k++)
                        assert_int_equal(atomic_load(&race->claimed[i][k]), 1);

        assert_int_equal(STORE_CALL(b, op_stats, T0 + 1000 * SEC, &stats), 0);
        assert_int_equal(stats.count[CM_OP_CREATE][CM_OP_SUCCEEDED], RACE_CLUSTERS);
        assert_int_equal(stats.count[CM_OP_UPDATE][CM_OP_SUCCEEDED],
                         RACE_CLUSTERS * (RACE_OPS_PER_CLUSTER - 1));
        assert_int_equal(stats.queue_depth, 0);
        for (unsigned i = 0; i < RACE_CLUSTERS; i++) {
                _cleanup_(cm_cluster_done) struct cm_cluster c = {};
                char name[16];

                assert_true(cm_snprintf(name, sizeof(name), "c%03u", i) > 0);
                c = get_cluster(f->s, "dev", name);
                assert_int_equal(c.generation, RACE_OPS_PER_CLUSTER);
                assert_int_equal(c.observed_generation, RACE_OPS_PER_CLUSTER);
                /* create + 9 updates + 10 finishes */
                assert_int_equal(c.resource_version, 2 * RACE_OPS_PER_CLUSTER);
        }
}

#define GRAB_OPS 300

struct grab {
        struct cm_store *stores[2];
        atomic_int claimed[GRAB_OPS];
        atomic_int total;
        atomic_int errors;
};

struct grab_worker {
        struct grab *grab;
        unsigned idx;
};

static void *grab_thread(void *p) {
        struct grab_worker *w = p;
        struct cm_store *s = w->grab->stores[w->idx % 2];

        for (;;) {
                _cleanup_(cm_operation_done) struct cm_operation op = {};
                unsigned i;
                int r;

                r = STORE_CALL(s, op_claim, w->idx % 2 ? "odd" : "even", T0, 3600 * SEC, &op);
                if (r == -EAGAIN)
                        break;
                if (r < 0 || sscanf(op.id, "op_%u", &i) != 1 || i >= GRAB_OPS) {
                        atomic_fetch_add(&w->grab->errors, 1);
                        break;
                }
                atomic_fetch_add(&w->grab->claimed[i], 1);
                atomic_fetch_add(&w->grab->total, 1);
        }
        return NULL;
}

/* Creates and claims all at once from both store objects: every operation claimed exactly once. */
static void *grab_create_thread(void *p) {
        struct grab_worker *w = p;
        struct cm_store *s = w->grab->stores[w->idx % 2];

        for (unsigned i = w->idx; i < GRAB_OPS; i += RACE_THREADS) {
                char name[16], cl[16], op[16];

                if (cm_snprintf(name, sizeof(name), "g%u", i) < 0 ||
                    cm_snprintf(cl, sizeof(cl), "cl_%u", i) < 0 ||
                    cm_snprintf(op, sizeof(op), "op_%u", i) < 0 ||
                    make_cluster(s, "dev", name, cl, op, T0) < 0)
                        atomic_fetch_add(&w->grab->errors, 1);
        }
        return NULL;
}

static void test_concurrent_create_and_grab(void **state) {
        struct fixture *f = *state;
        _cleanup_(cm_store_closep) struct cm_store *b = NULL;
        _cleanup_free_ struct grab *grab = NULL;
        struct grab_worker workers[RACE_THREADS];
        pthread_t t[RACE_THREADS];
        uint64_t n = 0;

        grab = new0(struct grab, 1);
        assert_non_null(grab);
        assert_int_equal(cm_store_open(f->url, &b), 0);
        grab->stores[0] = f->s;
        grab->stores[1] = b;
        assert_int_equal(make_env(f->s, "dev"), 0);

        for (unsigned i = 0; i < RACE_THREADS; i++) {
                workers[i] = (struct grab_worker){ .grab = grab, .idx = i };
                assert_int_equal(pthread_create(&t[i], NULL, grab_create_thread, &workers[i]), 0);
        }
        for (unsigned i = 0; i < RACE_THREADS; i++)
                assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(atomic_load(&grab->errors), 0);
        assert_int_equal(STORE_CALL(b, cluster_count, "dev", &n), 0);
        assert_int_equal(n, GRAB_OPS);

        for (unsigned i = 0; i < RACE_THREADS; i++)
                assert_int_equal(pthread_create(&t[i], NULL, grab_thread, &workers[i]), 0);
        for (unsigned i = 0; i < RACE_THREADS; i++)
                assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(atomic_load(&grab->errors), 0);
        assert_int_equal(atomic_load(&grab->total), GRAB_OPS);
        for (unsigned i = 0; i < GRAB_OPS; i++)
                assert_int_equal(atomic_load(&grab->claimed[i]), 1);
}

/* ---- SQLite only: URL forms ---- */

static void test_sqlite_urls(void **state) {
        struct fixture *f = *state;
        _cleanup_free_ char *dir = NULL, *plain = NULL, *missing = NULL;
        struct cm_store *s = NULL;
        char cwd[PATH_MAX];

        /* The fixture's URL is sqlite:///abs/dir/store.db. */
        assert_true(strneq(f->url, "sqlite:///", 10));
        dir = xstrdup(f->url + strlen("sqlite://"));
        *strrchr(dir, '/') = 0;

        /* A plain path is the same database. */
        assert_int_equal(asprintf(&plain, "%s/store.db", dir) > 0, 1);
        assert_int_equal(cm_store_open(plain, &s), 0);
        assert_int_equal(STORE_CALL(s, ping), 0);
        s = cm_store_close(s);

        /* sqlite:relative/path */
        assert_non_null(getcwd(cwd, sizeof(cwd)));
        assert_int_equal(chdir(dir), 0);
        assert_int_equal(cm_store_open("sqlite:store.db", &s), 0);
        assert_int_equal(STORE_CALL(s, ping), 0);
        s = cm_store_close(s);
        assert_int_equal(chdir(cwd), 0);

        /* The directory is the caller's to create. */
        assert_int_equal(asprintf(&missing, "sqlite://%s/no/such/dir.db", dir) > 0, 1);
        assert_int_equal(cm_store_open(missing, &s), -ENOENT);
        assert_null(s);

        assert_int_equal(cm_store_open("sqlite://host/x.db", &s), -EINVAL);
        assert_int_equal(cm_store_open("sqlite::memory:", &s), -EINVAL);
        assert_int_equal(cm_store_open("sqlite:", &s), -EINVAL);
        assert_int_equal(cm_store_open("nosuch://x/y", &s), -EPROTONOSUPPORT);
        assert_null(s);
}

/* A file that is not a database fails at open with a clear error. */
static void test_sqlite_not_a_database(void **state) {
        struct fixture *f = *state;
        _cleanup_free_ char *path = NULL;
        struct cm_store *s = NULL;
        FILE *fp;

        assert_int_equal(asprintf(&path, "%s.junk", f->url + strlen("sqlite://")) > 0, 1);
        fp = fopen(path, "we");
        assert_non_null(fp);
        for (int i = 0; i < 256; i++)
                fputs("this is not a database file ", fp);
        assert_int_equal(fclose(fp), 0);
        assert_int_equal(cm_store_open(path, &s), -EBADMSG);
        assert_null(s);
        (void) unlink(path);
        for (size_t i = 0; i < 2; i++) {
                _cleanup_free_ char *p = NULL;
                assert_int_equal(asprintf(&p, "%s%s", path, i == 0 ? "-wal" : "-shm") > 0, 1);
                (void) unlink(p);
        }
}

/* The database belongs to one process: another one is refused until the first closes it. */
static int open_in_child(const char *url) {
        int status = 0;
        pid_t pid = fork();

        if (pid == 0) {
                struct cm_store *s = NULL;
                int r = cm_store_open(url, &s);
                cm_store_close(s);
                _exit(r == -EBUSY ? 10 : r == 0 ? 0 : 20);
        }
        assert_true(pid > 0);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        return WEXITSTATUS(status);
}

static void test_sqlite_one_process(void **state) {
        struct fixture *f = *state;
        struct cm_store *second = NULL;

        assert_int_equal(open_in_child(f->url), 10);
        /* Another store object of this process shares the database. */
        assert_int_equal(cm_store_open(f->url, &second), 0);
        assert_int_equal(STORE_CALL(second, ping), 0);
        second = cm_store_close(second);
        assert_int_equal(open_in_child(f->url), 10);
        f->s = cm_store_close(f->s);
        assert_int_equal(open_in_child(f->url), 0);
        assert_int_equal(cm_store_open(f->url, &f->s), 0);
}

/* Optional: the change counter moves with every committed write, and not with reads. */
static void test_change_counter(void **state) {
        struct fixture *f = *state;
        uint64_t a = 0, b = 0, c = 0;
        struct cm_environment e = {};

        if (!f->s->ops->change_counter)
                skip();
        assert_int_equal(STORE_CALL(f->s, change_counter, &a), 0);
        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(STORE_CALL(f->s, change_counter, &b), 0);
        assert_true(b > a);
        assert_int_equal(STORE_CALL(f->s, env_get, "dev", &e), 0);
        cm_environment_done(&e);
        assert_int_equal(STORE_CALL(f->s, change_counter, &c), 0);
        assert_true(c == b);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        assert_int_equal(STORE_CALL(f->s, change_counter, &c), 0);
        assert_true(c > b);
}

#define CASE(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)
#define CASE_UNMIGRATED(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup_unmigrated, fixture_teardown)

/* ---- list views, version of an environment's clusters, logs written with the outcome ---- */

struct each_ctx {
        char names[8][16];
        size_t n;
};

static int each_collect(const struct cm_cluster *c, void *userdata) {
        struct each_ctx *ctx = userdata;

        assert_non_null(c->id);
        assert_non_null(c->spec_json);
        assert_non_null(c->conditions_json);
        assert_string_equal(c->env, "dev");
        if (ctx->n >= ELEMENTSOF(ctx->names))
                return -E2BIG;
        assert_int_equal(cm_strlcpy(ctx->names[ctx->n++], c->name, sizeof(ctx->names[0])), 0);
        return 0;
}

static int each_stop(const struct cm_cluster *c, void *userdata) {
        return -ECANCELED;
}

static void test_cluster_list_each(void **state) {
        struct fixture *f = *state;
        struct each_ctx ctx = {};

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "b", "cl_b", "op_b", T0), 0);
        assert_int_equal(make_cluster(f->s, "dev", "a", "cl_a", "op_a", T0), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c", "cl_c", "op_c", T0), 0);
        assert_int_equal(STORE_CALL(f->s, cluster_list_each, "dev", NULL, 2, each_collect, &ctx), 0);
        assert_int_equal(ctx.n, 2);
        assert_string_equal(ctx.names[0], "a");
        assert_string_equal(ctx.names[1], "b");
        ctx.n = 0;
        assert_int_equal(STORE_CALL(f->s, cluster_list_each, "dev", "b", 10, each_collect, &ctx), 0);
        assert_int_equal(ctx.n, 1);
        assert_string_equal(ctx.names[0], "c");
        assert_int_equal(STORE_CALL(f->s, cluster_list_each, "dev", NULL, 10, each_stop, NULL), -ECANCELED);
        ctx.n = 0;
        assert_int_equal(STORE_CALL(f->s, cluster_list_each, "none", NULL, 10, each_collect, &ctx), 0);
        assert_int_equal(ctx.n, 0);
}

static int64_t version_of(struct cm_store *s, const char *env) {
        int64_t v = -1;

        assert_int_equal(STORE_CALL(s, env_clusters_version, env, &v), 0);
        return v;
}

static void test_env_clusters_version(void **state) {
        struct fixture *f = *state;
        const struct cm_op_outcome gone = { .state = CM_OP_SUCCEEDED, .delete_cluster = true };
        int64_t v0, v1, v2, v3, v4, v5, other;

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_env(f->s, "other"), 0);
        assert_int_equal(STORE_CALL(f->s, env_clusters_version, "none", &v0), -ENOENT);
        v0 = version_of(f->s, "dev");
        other = version_of(f->s, "other");
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        v1 = version_of(f->s, "dev");
        assert_true(v1 != v0);
        run_op(f->s, "op_1", T0 + SEC);
        v2 = version_of(f->s, "dev");
        assert_true(v2 != v1);
        assert_int_equal(STORE_CALL(f->s, cluster_set_status, "cl_1", CM_PHASE_READY, "[]", NULL), 0);
        v3 = version_of(f->s, "dev");
        assert_true(v3 != v2);
        assert_int_equal(
                queue_op(f->s, "dev", "c1", -1, SPEC2, CM_OP_UPDATE, "op_2", T0 + 2 * SEC, NULL, NULL), 0);
        v4 = version_of(f->s, "dev");
        assert_true(v4 != v3);
        run_op(f->s, "op_2", T0 + 3 * SEC);
        assert_int_equal(
                queue_op(f->s, "dev", "c1", -1, NULL, CM_OP_DELETE, "op_3", T0 + 4 * SEC, NULL, NULL), 0);
        claim_expect(f->s, "w", T0 + 5 * SEC, "op_3");
        v5 = version_of(f->s, "dev");
        assert_int_equal(STORE_CALL(f->s, op_finish, "op_3", "w", T0 + 6 * SEC, &gone), 0);
        assert_true(version_of(f->s, "dev") != v5);
        /* Another environment's version did not move. */
        assert_int_equal(version_of(f->s, "other"), other);
}

static void test_finish_appends_log(void **state) {
        struct fixture *f = *state;
        _cleanup_strbuf_ struct strbuf out = STRBUF_INIT(4096);
        struct cm_op_outcome ok = outcome_ready;
        int64_t last = 0;

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        claim_expect(f->s, "w", T0 + SEC, "op_1");
        assert_int_equal(STORE_CALL(f->s, op_log_append, "op_1", T0 + SEC, "first\n", 6), 0);
        ok.log_text = "last\n";
        ok.log_len = 5;
        /* A lost lease writes nothing, not even the log. */
        assert_int_equal(STORE_CALL(f->s, op_finish, "op_1", "someone-else", T0 + 2 * SEC, &ok), -ESRCH);
        assert_int_equal(STORE_CALL(f->s, op_finish, "op_1", "w", T0 + 2 * SEC, &ok), 0);
        assert_true(STORE_CALL(f->s, op_log_read, "op_1", 0, &out, &last) >= 0);
        assert_string_equal(out.buf, "first\nlast\n");
}

/* API keys with bindings, listing, revocation, last use; bindings by environment; gone with it. */
static void test_apikeys_and_rolebindings(void **state) {
        struct fixture *f = *state;
        struct cm_apikey k = { .id = CM_UNCONST(char *, "key_a"),
                               .name = CM_UNCONST(char *, "ci"),
                               .hash = CM_UNCONST(char *, "h1"),
                               .role = CM_UNCONST(char *, ""),
                               .owner = CM_UNCONST(char *, "team-a"),
                               .created_usec = T0 };
        struct cm_rolebinding b[2] = {
                { .id = CM_UNCONST(char *, "rb_1"),
                  .env = CM_UNCONST(char *, "dev"),
                  .subject_kind = CM_UNCONST(char *, "apikey"),
                  .subject = CM_UNCONST(char *, "key_a"),
                  .role = CM_UNCONST(char *, "operator"),
                  .created_usec = T0 },
                { .id = CM_UNCONST(char *, "rb_2"),
                  .env = CM_UNCONST(char *, "*"),
                  .subject_kind = CM_UNCONST(char *, "apikey"),
                  .subject = CM_UNCONST(char *, "key_a"),
                  .role = CM_UNCONST(char *, "viewer"),
                  .created_usec = T0 },
        };
        struct cm_rolebinding dup = b[0];
        struct cm_apikey *keys = NULL;
        struct cm_rolebinding *rbs = NULL;
        size_t n = 0;

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_env(f->s, "prod"), 0);
        assert_int_equal(STORE_CALL(f->s, apikey_create, &k, b, 2), 0);
        /* a taken binding fails the whole create: no key without its bindings */
        k.id = CM_UNCONST(char *, "key_b");
        k.hash = CM_UNCONST(char *, "h2");
        dup.id = CM_UNCONST(char *, "rb_3");
        assert_int_equal(STORE_CALL(f->s, apikey_create, &k, &dup, 1), -EEXIST);
        assert_int_equal(STORE_CALL(f->s, apikey_list, &keys, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(keys[0].owner, "team-a");
        assert_false(keys[0].revoked);
        assert_int_equal(keys[0].last_used_usec, 0);
        cm_apikey_array_free(keys, n);

        assert_int_equal(STORE_CALL(f->s, apikey_touch, "key_a", T0 + SEC), 0);
        assert_int_equal(STORE_CALL(f->s, apikey_touch, "key_a", T0), 0); /* never back */
        assert_int_equal(STORE_CALL(f->s, apikey_revoke, "key_a"), 0);
        assert_int_equal(STORE_CALL(f->s, apikey_revoke, "key_zz"), -ENOENT);
        {
                _cleanup_(cm_apikey_done) struct cm_apikey got = {};
                assert_int_equal(STORE_CALL(f->s, apikey_get_by_hash, "h1", &got), 0);
                assert_true(got.revoked);
                assert_int_equal(got.last_used_usec, T0 + SEC);
        }

        assert_int_equal(STORE_CALL(f->s, rolebinding_list, "dev", &rbs, &n), 0);
        assert_int_equal(n, 2); /* dev's and the global one */
        cm_rolebinding_array_free(rbs, n);
        assert_int_equal(STORE_CALL(f->s, rolebinding_list, "prod", &rbs, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(rbs[0].env, "*");
        cm_rolebinding_array_free(rbs, n);
        dup.id = CM_UNCONST(char *, "rb_4");
        dup.env = CM_UNCONST(char *, "prod");
        assert_int_equal(STORE_CALL(f->s, rolebinding_create, &dup), 0);
        assert_int_equal(STORE_CALL(f->s, rolebinding_create, &dup), -EEXIST);
        assert_int_equal(STORE_CALL(f->s, rolebinding_delete, "rb_4"), 0);
        assert_int_equal(STORE_CALL(f->s, rolebinding_delete, "rb_4"), -ENOENT);
        /* an environment's bindings go with it */
        assert_int_equal(STORE_CALL(f->s, env_delete, "dev"), 0);
        assert_int_equal(STORE_CALL(f->s, rolebinding_list, NULL, &rbs, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(rbs[0].id, "rb_2");
        cm_rolebinding_array_free(rbs, n);
}

static struct cm_audit_record mk_audit(const char *action, int status) {
        return (struct cm_audit_record){
                .ts_usec = T0,
                .principal = xstrdup("apikey:key_a"),
                .source = xstrdup("127.0.0.1"),
                .request_id = xstrdup("req-1"),
                .action = xstrdup(action),
                .resource = xstrdup("/v1/environments/dev"),
                .outcome = xstrdup(status ? "success" : "committed"),
                .status = status,
        };
}

/* The chain: appended records link up; a staged record goes with the write it records, or not at all. */
static void test_audit_chain(void **state) {
        struct fixture *f = *state;
        struct cm_audit_record a = mk_audit("GET /v1/x", 200), staged = mk_audit("POST /v1/environments", 0);
        struct cm_audit_record *list = NULL;
        char prev[65] = "0000000000000000000000000000000000000000000000000000000000000000", h[65];
        size_t n = 0;

        assert_int_equal(STORE_CALL(f->s, audit_append, &a), 0);
        assert_int_equal(a.seq, 1);
        assert_non_null(a.hash);

        /* staged: a failing write does not take it, the next successful one does */
        assert_null(cm_store_audit_stage(&staged));
        assert_ptr_equal(cm_store_audit_staged(), &staged);
        assert_int_equal(make_cluster(f->s, "nope", "c1", "cl_1", "op_1", T0), -ENOENT);
        assert_int_equal(staged.seq, 0);
        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(staged.seq, 2);
        assert_null(cm_store_audit_staged()); /* committed: not again */
        assert_int_equal(make_env(f->s, "prod"), 0);
        assert_ptr_equal(cm_store_audit_stage(NULL), &staged);

        assert_int_equal(STORE_CALL(f->s, audit_list, 0, 100, &list, &n), 0);
        assert_int_equal(n, 2);
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(list[i].seq, (int64_t) i + 1);
                assert_string_equal(list[i].prev_hash, prev);
                cm_audit_hash(&list[i], prev, h);
                assert_string_equal(list[i].hash, h);
                memcpy(prev, h, sizeof(prev));
        }
        assert_string_equal(list[1].action, "POST /v1/environments");
        assert_int_equal(list[1].status, 0);
        /* every field is covered by the hash */
        free(list[1].resource);
        list[1].resource = xstrdup("/v1/environments/devx");
        cm_audit_hash(&list[1], list[0].hash, h);
        assert_string_not_equal(list[1].hash, h);
        cm_audit_array_free(list, n);
        assert_int_equal(STORE_CALL(f->s, audit_list, 1, 100, &list, &n), 0);
        assert_int_equal(n, 1);
        cm_audit_array_free(list, n);
        cm_audit_record_done(&a);
        cm_audit_record_done(&staged);
}

/* Policy settings of an environment: versioned, compare-and-swap, gone with the environment. */
static void test_env_policy(void **state) {
        struct fixture *f = *state;
        char *got = NULL;
        int64_t v = -1;

        assert_int_equal(STORE_CALL(f->s, env_policy_get, "dev", &got, &v), -ENOENT);
        assert_int_equal(STORE_CALL(f->s, env_policy_put, "dev", "{}", -1, T0, &v), -ENOENT);
        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(STORE_CALL(f->s, env_policy_get, "dev", &got, &v), 0);
        assert_null(got);
        assert_int_equal(v, 0);
        assert_int_equal(STORE_CALL(f->s, env_policy_put, "dev", "{\"rules\":{}}", 1, T0, &v), -ESTALE);
        assert_int_equal(STORE_CALL(f->s, env_policy_put, "dev", "{\"rules\":{}}", 0, T0, &v), 0);
        assert_int_equal(v, 1);
        assert_int_equal(STORE_CALL(f->s, env_policy_put, "dev", "{\"rules\":{\"a\":{}}}", 0, T0, &v),
                         -ESTALE);
        assert_int_equal(STORE_CALL(f->s, env_policy_put, "dev", "{\"rules\":{\"a\":{}}}", -1, T0, &v), 0);
        assert_int_equal(v, 2);
        assert_int_equal(STORE_CALL(f->s, env_policy_get, "dev", &got, &v), 0);
        assert_string_equal(got, "{\"rules\":{\"a\":{}}}");
        assert_int_equal(v, 2);
        free(got);
        got = NULL;
        /* an operation carries the decision that admitted it */
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        {
                _cleanup_(cm_operation_done) struct cm_operation op = {};
                assert_int_equal(STORE_CALL(f->s, op_get, "op_1", &op), 0);
                assert_null(op.policy_json);
        }
        run_op(f->s, "op_1", T0);
        {
                _cleanup_(cm_operation_done) struct cm_operation op = mk_op("op_2", CM_OP_UPDATE, T0, T0);
                _cleanup_(cm_operation_done) struct cm_operation back = {};

                op.policy_json = xstrdup("{\"deny\":[],\"mode\":\"builtin\",\"warn\":[]}");
                assert_int_equal(STORE_CALL(f->s, cluster_update, "dev", "c1", -1, SPEC2, NULL,
                                            CM_PHASE_UPDATING, &op, NULL, NULL),
                                 0);
                assert_int_equal(STORE_CALL(f->s, op_get, "op_2", &back), 0);
                assert_string_equal(back.policy_json, op.policy_json);
        }
        /* deleting the environment (no clusters left) deletes its settings */
        assert_int_equal(make_env(f->s, "tmp"), 0);
        assert_int_equal(STORE_CALL(f->s, env_policy_put, "tmp", "{}", -1, T0, &v), 0);
        assert_int_equal(STORE_CALL(f->s, env_delete, "tmp"), 0);
        assert_int_equal(make_env(f->s, "tmp"), 0);
        assert_int_equal(STORE_CALL(f->s, env_policy_get, "tmp", &got, &v), 0);
        assert_null(got);
        assert_int_equal(v, 0);
}

/* An operation on a running cluster keeps its parameters and, once it ends, its result. */
static void test_op_params_result(void **state) {
        struct fixture *f = *state;
        _cleanup_(cm_operation_done) struct cm_operation op =
                mk_op("op_2", CM_OP_SNAPSHOT, T0 + SEC, T0 + SEC);
        _cleanup_(cm_operation_done) struct cm_operation got = {};
        _cleanup_(cm_cluster_done) struct cm_cluster c = {};
        struct cm_op_outcome retry = { .state = CM_OP_PENDING,
                                       .phase = CM_PHASE_READY,
                                       .next_run_usec = T0 };
        struct cm_op_outcome done = { .state = CM_OP_SUCCEEDED,
                                      .phase = CM_PHASE_READY,
                                      .result_json = "{\"snapshot\":\"s1\"}" };

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        run_op(f->s, "op_1", T0);
        op.params_json = xstrdup("{\"name\":\"s1\"}");
        assert_int_equal(
                STORE_CALL(f->s, cluster_update, "dev", "c1", -1, NULL, NULL, CM_PHASE_READY, &op, &c, NULL),
                0);
        assert_int_equal(c.phase, CM_PHASE_READY);
        assert_int_equal(STORE_CALL(f->s, op_get, "op_2", &got), 0);
        assert_int_equal(got.type, CM_OP_SNAPSHOT);
        assert_string_equal(got.params_json, "{\"name\":\"s1\"}");
        assert_null(got.result_json);
        cm_operation_done(&got);
        /* the create has neither */
        assert_int_equal(STORE_CALL(f->s, op_get, "op_1", &got), 0);
        assert_null(got.params_json);
        assert_null(got.result_json);
        cm_operation_done(&got);

        claim_expect(f->s, "w", T0 + 2 * SEC, "op_2");
        assert_int_equal(STORE_CALL(f->s, op_finish, "op_2", "w", T0 + 2 * SEC, &retry), 0);
        claim_expect(f->s, "w", T0 + 3 * SEC, "op_2");
        assert_int_equal(STORE_CALL(f->s, op_finish, "op_2", "w", T0 + 3 * SEC, &done), 0);
        assert_int_equal(STORE_CALL(f->s, op_get, "op_2", &got), 0);
        assert_int_equal(got.state, CM_OP_SUCCEEDED);
        assert_string_equal(got.params_json, "{\"name\":\"s1\"}");
        assert_string_equal(got.result_json, "{\"snapshot\":\"s1\"}");
}

/*
 * Migration 2 rebuilds the operations table (a CHECK cannot change in place): a database made by
 * migration 1 keeps every operation and every log line, and its foreign keys still hold.
 */
static void test_sqlite_migration_2_keeps_history(void **state) {
        struct fixture *f = *state;
        const char *path = f->url + strlen("sqlite://");
        _cleanup_(cm_operation_done) struct cm_operation got = {};
        _cleanup_strbuf_ struct strbuf out = STRBUF_INIT(4096);
        sqlite3 *db = NULL;
        int64_t last = 0;
        char *err = NULL;

        f->s = cm_store_close(f->s);
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db,
                                      "PRAGMA foreign_keys = ON; BEGIN; CREATE TABLE schema_migrations ("
                                      "version INTEGER PRIMARY KEY, applied INTEGER NOT NULL);",
                                      NULL, NULL, &err),
                         SQLITE_OK);
        assert_int_equal(sqlite_migrations[0].version, 1);
        assert_int_equal(sqlite3_exec(db, sqlite_migrations[0].sql, NULL, NULL, &err), SQLITE_OK);
        assert_int_equal(
                sqlite3_exec(
                        db,
                        "INSERT INTO schema_migrations VALUES (1, 0);"
                        "INSERT INTO environments (name, labels, created) VALUES ('dev', '{}', 1);"
                        "INSERT INTO operations (id, env, cluster_id, cluster_name, type, state, "
                        "generation, "
                        "created, finished) VALUES ('op_old', 'dev', 'cl_gone', 'c0', 'delete', "
                        "'succeeded', 1, 5, 6);"
                        "INSERT INTO op_log VALUES ('op_old', 1, 5, 'one\n'), ('op_old', 2, 6, 'two\n');"
                        "COMMIT;",
                        NULL, NULL, &err),
                0);
        sqlite3_free(err);
        assert_int_equal(sqlite3_close(db), SQLITE_OK);

        assert_int_equal(cm_store_open(f->url, &f->s), 0);
        assert_int_equal(STORE_CALL(f->s, ping), -EPROTO);
        assert_int_equal(STORE_CALL(f->s, migrate), (int) ELEMENTSOF(sqlite_migrations) - 1);
        assert_int_equal(STORE_CALL(f->s, ping), 0);
        assert_int_equal(STORE_CALL(f->s, op_get, "op_old", &got), 0);
        assert_int_equal(got.type, CM_OP_DELETE);
        assert_int_equal(got.state, CM_OP_SUCCEEDED);
        assert_true(STORE_CALL(f->s, op_log_read, "op_old", 0, &out, &last) >= 0);
        assert_string_equal(out.buf, "one\ntwo\n");
        assert_int_equal(last, 2);
        /* the new types are accepted, and the log still belongs to its operation (foreign key) */
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        run_op(f->s, "op_1", T0);
        {
                _cleanup_(cm_operation_done) struct cm_operation op =
                        mk_op("op_r", CM_OP_ROTATE_CERTS, T0, T0);
                assert_int_equal(STORE_CALL(f->s, cluster_update, "dev", "c1", -1, NULL, NULL,
                                            CM_PHASE_UPDATING, &op, NULL, NULL),
                                 0);
        }
        assert_int_equal(STORE_CALL(f->s, op_log_append, "op_nope", T0, "x\n", 2), -ENOENT);
}

/* ---- events, written by the store with the change they describe ---- */

static size_t list_events(struct cm_store *s, const char *env, const char *cluster, int64_t after,
                          unsigned limit, struct cm_event **ret) {
        struct cm_event *a = NULL;
        size_t n = SIZE_MAX;

        assert_int_equal(STORE_CALL(s, event_list, env, cluster, after, limit, &a, &n), 0);
        assert_true(n <= limit);
        for (size_t i = 1; i < n; i++)
                assert_true(a[i - 1].seq < a[i].seq);
        *ret = a;
        return n;
}

static int64_t last_event(struct cm_store *s) {
        int64_t v = -1;

        assert_int_equal(STORE_CALL(s, event_last, &v), 0);
        assert_true(v >= 0);
        return v;
}

/* One event: its place, its type and its data (exact text: the store writes compact JSON). */
static void check_event(const struct cm_event *e, const char *env, const char *cluster,
                        const char *cluster_id, const char *type, const char *data) {
        uint64_t now = cm_now_usec();

        assert_true(e->seq > 0);
        assert_string_equal(e->env, env);
        assert_string_equal(e->cluster, cluster);
        assert_string_equal(e->cluster_id, cluster_id);
        assert_string_equal(e->type, type);
        assert_string_equal(e->data_json, data);
        /* stamped with the time of the write */
        assert_true(e->ts_usec + 600 * SEC > now && e->ts_usec < now + 600 * SEC);
}

/* The events written since `after` (by every write in between): exactly n of them. */
static struct cm_event *events_since(struct cm_store *s, int64_t after, size_t n) {
        struct cm_event *a = NULL;

        assert_int_equal(list_events(s, NULL, NULL, after, 1000, &a), n);
        return a;
}

static void test_events_phase(void **state) {
        struct fixture *f = *state;
        const struct cm_op_outcome deleted = { .state = CM_OP_SUCCEEDED, .delete_cluster = true };
        struct cm_event *a;
        int64_t last;

        assert_int_equal(last_event(f->s), 0);
        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(last_event(f->s), 0); /* an environment is no event */
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        a = events_since(f->s, 0, 1);
        check_event(&a[0], "dev", "c1", "cl_1", "PhaseChanged",
                    "{\"phase\":\"Pending\",\"previousPhase\":\"\"}");
        last = a[0].seq;
        assert_int_equal(last_event(f->s), last);
        cm_event_array_free(a, 1);
        /* A failed write leaves no event behind. */
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_x", "op_x", T0), -EEXIST);
        assert_int_equal(make_cluster(f->s, "nope", "c1", "cl_y", "op_y", T0), -ENOENT);
        assert_int_equal(last_event(f->s), last);

        /* A new phase is an event; the same phase again is none. */
        assert_int_equal(STORE_CALL(f->s, cluster_set_status, "cl_1", CM_PHASE_PROVISIONING, NULL, NULL), 0);
        a = events_since(f->s, last, 1);
        check_event(&a[0], "dev", "c1", "cl_1", "PhaseChanged",
                    "{\"phase\":\"Provisioning\",\"previousPhase\":\"Pending\"}");
        last = a[0].seq;
        cm_event_array_free(a, 1);
        assert_int_equal(
                STORE_CALL(f->s, cluster_set_status, "cl_1", CM_PHASE_PROVISIONING, NULL, "{\"nodes\":1}"),
                0);
        assert_int_equal(last_event(f->s), last);

        /* A queued delete sets Deleting; the finished delete removes the cluster: Deleted. */
        assert_int_equal(STORE_CALL(f->s, op_cancel, "op_1", T0, &(enum cm_op_state){ CM_OP_PENDING }), 0);
        assert_int_equal(queue_op(f->s, "dev", "c1", -1, NULL, CM_OP_DELETE, "op_d", T0 + SEC, NULL, NULL),
                         0);
        claim_expect(f->s, "w", T0 + SEC, "op_d");
        assert_int_equal(STORE_CALL(f->s, op_finish, "op_d", "w", T0 + 2 * SEC, &deleted), 0);
        a = events_since(f->s, last, 5);
        assert_string_equal(a[0].type, "OperationCancelled");
        check_event(&a[1], "dev", "c1", "cl_1", "PhaseChanged",
                    "{\"phase\":\"Deleting\",\"previousPhase\":\"Provisioning\"}");
        assert_string_equal(a[2].type, "OperationStarted");
        assert_string_equal(a[3].type, "OperationSucceeded");
        check_event(&a[4], "dev", "c1", "cl_1", "PhaseChanged",
                    "{\"phase\":\"Deleted\",\"previousPhase\":\"Deleting\"}");
        cm_event_array_free(a, 5);
}

static void test_events_conditions(void **state) {
        struct fixture *f = *state;
        struct cm_event *a;
        int64_t last;

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        last = last_event(f->s);

        /* Two new conditions: two events, in the array's order. */
        assert_int_equal(STORE_CALL(f->s, cluster_set_status, "cl_1", CM_PHASE_PENDING,
                                    "[{\"type\":\"Ready\",\"status\":\"False\",\"reason\":\"Creating\","
                                    "\"message\":\"m1\"},{\"type\":\"Healthy\",\"status\":\"Unknown\"}]",
                                    NULL),
                         0);
        a = events_since(f->s, last, 2);
        check_event(
                &a[0], "dev", "c1", "cl_1", "ConditionChanged",
                "{\"condition\":\"Ready\",\"status\":\"False\",\"reason\":\"Creating\",\"message\":\"m1\","
                "\"previousStatus\":\"\",\"previousReason\":\"\"}");
        check_event(&a[1], "dev", "c1", "cl_1", "ConditionChanged",
                    "{\"condition\":\"Healthy\",\"status\":\"Unknown\",\"reason\":\"\",\"message\":\"\","
                    "\"previousStatus\":\"\",\"previousReason\":\"\"}");
        last = a[1].seq;
        cm_event_array_free(a, 2);

        /* A new message alone (and another order) is no transition. */
        assert_int_equal(STORE_CALL(f->s, cluster_set_status, "cl_1", CM_PHASE_PENDING,
                                    "[{\"type\":\"Healthy\",\"status\":\"Unknown\"},{\"type\":\"Ready\","
                                    "\"status\":\"False\",\"reason\":\"Creating\",\"message\":\"m2\"}]",
                                    NULL),
                         0);
        assert_int_equal(last_event(f->s), last);

        /* A new status; then a new reason with the same status. */
        assert_int_equal(STORE_CALL(f->s, cluster_set_status, "cl_1", CM_PHASE_PENDING,
                                    "[{\"type\":\"Healthy\",\"status\":\"Unknown\"},{\"type\":\"Ready\","
                                    "\"status\":\"True\",\"reason\":\"Created\",\"message\":\"m3\"}]",
                                    NULL),
                         0);
        a = events_since(f->s, last, 1);
        check_event(&a[0], "dev", "c1", "cl_1", "ConditionChanged",
                    "{\"condition\":\"Ready\",\"status\":\"True\",\"reason\":\"Created\",\"message\":\"m3\","
                    "\"previousStatus\":\"False\",\"previousReason\":\"Creating\"}");
        last = a[0].seq;
        cm_event_array_free(a, 1);
        assert_int_equal(
                STORE_CALL(f->s, cluster_set_status, "cl_1", CM_PHASE_PENDING,
                           "[{\"type\":\"Healthy\",\"status\":\"Unknown\",\"reason\":\"NotProbed\"},"
                           "{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"Created\",\"message\":"
                           "\"m3\"}]",
                           NULL),
                0);
        a = events_since(f->s, last, 1);
        check_event(&a[0], "dev", "c1", "cl_1", "ConditionChanged",
                    "{\"condition\":\"Healthy\",\"status\":\"Unknown\",\"reason\":\"NotProbed\",\"message\":"
                    "\"\","
                    "\"previousStatus\":\"Unknown\",\"previousReason\":\"\"}");
        last = a[0].seq;
        cm_event_array_free(a, 1);

        /* A condition that disappears is no event; an operation outcome that writes conditions is. */
        assert_int_equal(STORE_CALL(f->s, cluster_set_status, "cl_1", CM_PHASE_PENDING,
                                    "[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"Created\","
                                    "\"message\":\"m3\"}]",
                                    NULL),
                         0);
        assert_int_equal(last_event(f->s), last);
        claim_expect(f->s, "w", T0, "op_1");
        {
                const struct cm_op_outcome o = {
                        .state = CM_OP_SUCCEEDED,
                        .phase = CM_PHASE_PENDING,
                        .conditions_json =
                                "[{\"type\":\"Ready\",\"status\":\"False\",\"reason\":\"Broken\"}]",
                };
                assert_int_equal(STORE_CALL(f->s, op_finish, "op_1", "w", T0, &o), 0);
        }
        a = events_since(f->s, last, 3);
        assert_string_equal(a[0].type, "OperationStarted");
        assert_string_equal(a[1].type, "OperationSucceeded");
        check_event(&a[2], "dev", "c1", "cl_1", "ConditionChanged",
                    "{\"condition\":\"Ready\",\"status\":\"False\",\"reason\":\"Broken\",\"message\":\"\","
                    "\"previousStatus\":\"True\",\"previousReason\":\"Created\"}");
        last = a[2].seq;
        cm_event_array_free(a, 3);

        /* Conditions that are not objects (or not JSON) are no events, and do not stop the write. */
        assert_int_equal(
                STORE_CALL(f->s, cluster_set_status, "cl_1", CM_PHASE_PENDING, "[1,\"x\",null,[2]]", NULL),
                0);
        assert_int_equal(STORE_CALL(f->s, cluster_set_status, "cl_1", CM_PHASE_PENDING, "not json", NULL),
                         0);
        assert_int_equal(
                STORE_CALL(f->s, cluster_set_status, "cl_1", CM_PHASE_PENDING,
                           "[\"x\",{\"type\":\"Ready\",\"status\":\"False\",\"reason\":\"Broken\"}]", NULL),
                0);
        a = events_since(f->s, last, 1);
        assert_string_equal(
                a[0].data_json,
                "{\"condition\":\"Ready\",\"status\":\"False\",\"reason\":\"Broken\",\"message\":\"\","
                "\"previousStatus\":\"\",\"previousReason\":\"\"}");
        cm_event_array_free(a, 1);
}

static void test_events_operations(void **state) {
        struct fixture *f = *state;
        const struct cm_op_outcome retry = { .state = CM_OP_PENDING,
                                             .error = "node unreachable",
                                             .next_run_usec = T0,
                                             .phase = CM_PHASE_PROVISIONING };
        const struct cm_op_outcome failed = { .state = CM_OP_FAILED,
                                              .error = "rke up failed",
                                              .phase = CM_PHASE_FAILED };
        struct cm_operation op = {};
        struct cm_event *a;
        int64_t last;

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        last = last_event(f->s);

        /* Claimed: started; re-queued for a retry: nothing; claimed again: started (attempt 2). */
        claim_expect(f->s, "w", T0, "op_1");
        assert_int_equal(STORE_CALL(f->s, op_finish, "op_1", "w", T0, &retry), 0);
        assert_int_equal(STORE_CALL(f->s, op_claim, "w", T0, 60 * SEC, &op), 0);
        cm_operation_done(&op);
        /* A lease taken over (running stays running) is no new start. */
        assert_int_equal(STORE_CALL(f->s, op_claim, "w2", T0 + 61 * SEC, 60 * SEC, &op), 0);
        cm_operation_done(&op);
        assert_int_equal(STORE_CALL(f->s, op_finish, "op_1", "w2", T0 + 62 * SEC, &failed), 0);
        a = events_since(f->s, last, 5);
        check_event(&a[0], "dev", "c1", "cl_1", "OperationStarted",
                    "{\"operation\":\"op_1\",\"operationType\":\"create\",\"attempt\":1,\"message\":\"\"}");
        check_event(&a[1], "dev", "c1", "cl_1", "PhaseChanged",
                    "{\"phase\":\"Provisioning\",\"previousPhase\":\"Pending\"}");
        check_event(&a[2], "dev", "c1", "cl_1", "OperationStarted",
                    "{\"operation\":\"op_1\",\"operationType\":\"create\",\"attempt\":2,\"message\":"
                    "\"node unreachable\"}");
        check_event(&a[3], "dev", "c1", "cl_1", "OperationFailed",
                    "{\"operation\":\"op_1\",\"operationType\":\"create\",\"attempt\":3,\"message\":"
                    "\"rke up failed\"}");
        check_event(&a[4], "dev", "c1", "cl_1", "PhaseChanged",
                    "{\"phase\":\"Failed\",\"previousPhase\":\"Provisioning\"}");
        last = a[4].seq;
        cm_event_array_free(a, 5);

        /* Succeeded, and cancelled (pending, and running then finished as cancelled). */
        assert_int_equal(queue_op(f->s, "dev", "c1", -1, SPEC2, CM_OP_UPDATE, "op_2", T0, NULL, NULL), 0);
        run_op(f->s, "op_2", T0);
        assert_int_equal(queue_op(f->s, "dev", "c1", -1, SPEC, CM_OP_UPDATE, "op_3", T0, NULL, NULL), 0);
        assert_int_equal(STORE_CALL(f->s, op_cancel, "op_3", T0, &(enum cm_op_state){ CM_OP_PENDING }), 0);
        a = events_since(f->s, last, 6);
        assert_string_equal(a[0].type, "PhaseChanged"); /* Failed -> Updating */
        check_event(&a[1], "dev", "c1", "cl_1", "OperationStarted",
                    "{\"operation\":\"op_2\",\"operationType\":\"update\",\"attempt\":1,\"message\":\"\"}");
        check_event(&a[2], "dev", "c1", "cl_1", "OperationSucceeded",
                    "{\"operation\":\"op_2\",\"operationType\":\"update\",\"attempt\":1,\"message\":\"\"}");
        assert_string_equal(a[3].type, "PhaseChanged"); /* Updating -> Ready */
        assert_string_equal(a[4].type, "PhaseChanged"); /* Ready -> Updating */
        check_event(&a[5], "dev", "c1", "cl_1", "OperationCancelled",
                    "{\"operation\":\"op_3\",\"operationType\":\"update\",\"attempt\":0,\"message\":\"\"}");
        cm_event_array_free(a, 6);
}

static void test_event_list_filters(void **state) {
        struct fixture *f = *state;
        struct cm_event *a = NULL;
        int64_t all[6] = { 0 };
        size_t n;

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_env(f->s, "prod"), 0);
        /* dev/a, prod/a, dev/b, dev/a, prod/a, dev/b */
        assert_int_equal(make_cluster(f->s, "dev", "a", "cl_da", "op_1", T0), 0);
        assert_int_equal(make_cluster(f->s, "prod", "a", "cl_pa", "op_2", T0), 0);
        assert_int_equal(make_cluster(f->s, "dev", "b", "cl_db", "op_3", T0), 0);
        assert_int_equal(STORE_CALL(f->s, cluster_set_status, "cl_da", CM_PHASE_FAILED, NULL, NULL), 0);
        assert_int_equal(STORE_CALL(f->s, cluster_set_status, "cl_pa", CM_PHASE_FAILED, NULL, NULL), 0);
        assert_int_equal(STORE_CALL(f->s, cluster_set_status, "cl_db", CM_PHASE_FAILED, NULL, NULL), 0);

        n = list_events(f->s, NULL, NULL, 0, 100, &a);
        assert_int_equal(n, 6);
        for (size_t i = 0; i < n; i++)
                all[i] = a[i].seq;
        assert_string_equal(a[0].cluster_id, "cl_da");
        assert_string_equal(a[1].cluster_id, "cl_pa");
        assert_string_equal(a[5].cluster_id, "cl_db");
        cm_event_array_free(a, n);

        n = list_events(f->s, "dev", NULL, 0, 100, &a);
        assert_int_equal(n, 4);
        for (size_t i = 0; i < n; i++)
                assert_string_equal(a[i].env, "dev");
        cm_event_array_free(a, n);
        n = list_events(f->s, "prod", "a", 0, 100, &a);
        assert_int_equal(n, 2);
        assert_int_equal(a[0].seq, all[1]);
        assert_int_equal(a[1].seq, all[4]);
        cm_event_array_free(a, n);
        /* the cluster name in every environment */
        n = list_events(f->s, NULL, "a", 0, 100, &a);
        assert_int_equal(n, 4);
        cm_event_array_free(a, n);
        n = list_events(f->s, "dev", "a", all[0], 100, &a);
        assert_int_equal(n, 1);
        assert_int_equal(a[0].seq, all[3]);
        cm_event_array_free(a, n);
        n = list_events(f->s, "none", NULL, 0, 100, &a);
        assert_int_equal(n, 0);
        cm_event_array_free(a, n);
        n = list_events(f->s, "dev", "c", 0, 100, &a);
        assert_int_equal(n, 0);
        cm_event_array_free(a, n);

        /* paging with after and limit */
        n = list_events(f->s, NULL, NULL, 0, 4, &a);
        assert_int_equal(n, 4);
        assert_int_equal(a[3].seq, all[3]);
        cm_event_array_free(a, n);
        n = list_events(f->s, NULL, NULL, all[3], 4, &a);
        assert_int_equal(n, 2);
        assert_int_equal(a[0].seq, all[4]);
        cm_event_array_free(a, n);
        n = list_events(f->s, NULL, NULL, all[5], 4, &a);
        assert_int_equal(n, 0);
        cm_event_array_free(a, n);
        n = list_events(f->s, "dev", NULL, 0, 0, &a);
        assert_int_equal(n, 0);
        cm_event_array_free(a, n);
}

/* Sets one condition of a cluster (the others stay) through cluster_set_status. */
static void set_cond(struct cm_store *s, const char *cluster_id, const char *conditions) {
        assert_int_equal(STORE_CALL(s, cluster_set_status, cluster_id, CM_PHASE_READY, conditions, NULL), 0);
}

static size_t history(struct cm_store *s, const char *cluster_id, const char *condition, int64_t before,
                      uint64_t since, unsigned limit, struct cm_event **ret) {
        struct cm_event *a = NULL;
        size_t n = SIZE_MAX;

        assert_int_equal(STORE_CALL(s, event_history, cluster_id, condition, before, since, limit, &a, &n),
                         0);
        assert_true(n <= limit);
        for (size_t i = 0; i < n; i++) {
                assert_string_equal(a[i].type, "ConditionChanged");
                assert_string_equal(a[i].cluster_id, cluster_id);
                if (i > 0)
                        assert_true(a[i - 1].seq > a[i].seq);
        }
        *ret = a;
        return n;
}

static bool data_has(const struct cm_event *e, const char *member) {
        return strstr(e->data_json, member) != NULL;
}

static void test_event_history(void **state) {
        struct fixture *f = *state;
        struct cm_event *a = NULL;
        size_t n;

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c2", "cl_2", "op_2", T0), 0);
        /* cl_1: Healthy True, Healthy False, Nodes False, Healthy True; cl_2: Healthy False */
        set_cond(f->s, "cl_1", "[{\"type\":\"Healthy\",\"status\":\"True\"}]");
        set_cond(f->s, "cl_2", "[{\"type\":\"Healthy\",\"status\":\"False\"}]");
        set_cond(f->s, "cl_1", "[{\"type\":\"Healthy\",\"status\":\"False\"}]");
        set_cond(f->s, "cl_1",
                 "[{\"type\":\"Healthy\",\"status\":\"False\"},{\"type\":\"Nodes\",\"status\":\"False\"}]");
        set_cond(f->s, "cl_1",
                 "[{\"type\":\"Healthy\",\"status\":\"True\"},{\"type\":\"Nodes\",\"status\":\"False\"}]");

        /* newest first; phase changes and operations are not part of it */
        n = history(f->s, "cl_1", NULL, 0, 0, 100, &a);
        assert_int_equal(n, 4);
        assert_true(data_has(&a[0], "\"condition\":\"Healthy\",\"status\":\"True\""));
        assert_true(data_has(&a[1], "\"condition\":\"Nodes\""));
        assert_true(data_has(&a[2], "\"condition\":\"Healthy\",\"status\":\"False\""));
        assert_true(data_has(&a[3], "\"condition\":\"Healthy\",\"status\":\"True\""));
        {
                int64_t second = a[1].seq, oldest = a[3].seq;

                cm_event_array_free(a, n);
                /* one condition type */
                n = history(f->s, "cl_1", "Healthy", 0, 0, 100, &a);
                assert_int_equal(n, 3);
                for (size_t i = 0; i < n; i++)
                        assert_true(data_has(&a[i], "\"condition\":\"Healthy\""));
                cm_event_array_free(a, n);
                n = history(f->s, "cl_1", "Nope", 0, 0, 100, &a);
                assert_int_equal(n, 0);
                cm_event_array_free(a, n);
                /* paging: before and limit */
                n = history(f->s, "cl_1", NULL, 0, 0, 2, &a);
                assert_int_equal(n, 2);
                assert_int_equal(a[1].seq, second);
                cm_event_array_free(a, n);
                n = history(f->s, "cl_1", NULL, second, 0, 2, &a);
                assert_int_equal(n, 2);
                assert_int_equal(a[1].seq, oldest);
                cm_event_array_free(a, n);
                n = history(f->s, "cl_1", NULL, oldest, 0, 2, &a);
                assert_int_equal(n, 0);
                cm_event_array_free(a, n);
        }
        /* since: every event was written just now */
        n = history(f->s, "cl_1", NULL, 0, cm_now_usec() - 600 * SEC, 100, &a);
        assert_int_equal(n, 4);
        cm_event_array_free(a, n);
        n = history(f->s, "cl_1", NULL, 0, cm_now_usec() + 600 * SEC, 100, &a);
        assert_int_equal(n, 0);
        cm_event_array_free(a, n);
        n = history(f->s, "cl_2", NULL, 0, 0, 100, &a);
        assert_int_equal(n, 1);
        cm_event_array_free(a, n);
        n = history(f->s, "cl_none", NULL, 0, 0, 100, &a);
        assert_int_equal(n, 0);
        cm_event_array_free(a, n);
}

static void test_event_prune(void **state) {
        struct fixture *f = *state;
        struct cm_event *a = NULL;
        int64_t last;

        assert_int_equal(STORE_CALL(f->s, event_prune, cm_now_usec()), 0); /* nothing to prune */
        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c2", "cl_2", "op_2", T0), 0);
        last = last_event(f->s);
        /* Older than a time before they were written: none goes. */
        assert_int_equal(STORE_CALL(f->s, event_prune, cm_now_usec() - 600 * SEC), 0);
        assert_int_equal(list_events(f->s, NULL, NULL, 0, 100, &a), 2);
        cm_event_array_free(a, 2);
        /* Older than a time after: all go; the numbering goes on (an SSE client's id stays valid). */
        assert_int_equal(STORE_CALL(f->s, event_prune, cm_now_usec() + 600 * SEC), 0);
        assert_int_equal(list_events(f->s, NULL, NULL, 0, 100, &a), 0);
        cm_event_array_free(a, 0);
        assert_int_equal(STORE_CALL(f->s, cluster_set_status, "cl_1", CM_PHASE_READY, NULL, NULL), 0);
        assert_int_equal(list_events(f->s, NULL, NULL, 0, 100, &a), 1);
        assert_true(a[0].seq > last);
        assert_int_equal(last_event(f->s), a[0].seq);
        cm_event_array_free(a, 1);
}

/* ---- webhooks ---- */

static struct cm_webhook mk_webhook(const char *id, const char *env, const char *name, const char *events) {
        return (struct cm_webhook){
                .id = CM_UNCONST(char *, id),
                .env = CM_UNCONST(char *, env),
                .name = CM_UNCONST(char *, name),
                .url = CM_UNCONST(char *, "https://hooks.example.com/x?token=abc"),
                .secret = CM_UNCONST(char *, "hook-key"),
                .events_json = CM_UNCONST(char *, events),
                .cursor = 12345, /* not taken: the store sets it */
                .created_usec = T0,
        };
}

static void test_webhook_crud(void **state) {
        struct fixture *f = *state;
        struct cm_webhook w = mk_webhook("wh_1", "dev", "ops", "[\"PhaseChanged\"]"), got = {};
        struct cm_webhook *list = NULL;
        int64_t cursor = -1, last;
        size_t n = 0;

        assert_int_equal(STORE_CALL(f->s, webhook_create, &w, &cursor), -ENOENT);
        assert_int_equal(cursor, -1);
        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_env(f->s, "prod"), 0);
        /* no events yet: the cursor is 0 */
        assert_int_equal(STORE_CALL(f->s, webhook_create, &w, &cursor), 0);
        assert_int_equal(cursor, 0);
        /* name taken in the environment (under another id), and id taken */
        w.id = CM_UNCONST(char *, "wh_2");
        assert_int_equal(STORE_CALL(f->s, webhook_create, &w, &cursor), -EEXIST);
        w.env = CM_UNCONST(char *, "prod");
        w.id = CM_UNCONST(char *, "wh_1");
        assert_int_equal(STORE_CALL(f->s, webhook_create, &w, &cursor), -EEXIST);

        /* A new webhook starts after the newest event (of any environment). */
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        last = last_event(f->s);
        assert_true(last > 0);
        w = mk_webhook("wh_2", "prod", "ops", NULL);
        assert_int_equal(STORE_CALL(f->s, webhook_create, &w, &cursor), 0);
        assert_int_equal(cursor, last);
        w = mk_webhook("wh_3", "dev", "alerts", "[]");
        assert_int_equal(STORE_CALL(f->s, webhook_create, &w, NULL), 0);

        assert_int_equal(STORE_CALL(f->s, webhook_get, "dev", "ops", &got), 0);
        assert_string_equal(got.id, "wh_1");
        assert_string_equal(got.env, "dev");
        assert_string_equal(got.name, "ops");
        assert_string_equal(got.url, "https://hooks.example.com/x?token=abc");
        assert_string_equal(got.secret, "hook-key");
        assert_string_equal(got.events_json, "[\"PhaseChanged\"]");
        assert_int_equal(got.cursor, 0);
        assert_int_equal(got.created_usec, T0);
        cm_webhook_done(&got);
        assert_int_equal(STORE_CALL(f->s, webhook_get, "prod", "ops", &got), 0);
        assert_string_equal(got.events_json, "[]"); /* NULL: every type */
        assert_int_equal(got.cursor, last);
        cm_webhook_done(&got);
        assert_int_equal(STORE_CALL(f->s, webhook_get, "dev", "nope", &got), -ENOENT);
        assert_null(got.id);

        /* by environment and name */
        assert_int_equal(STORE_CALL(f->s, webhook_list, NULL, &list, &n), 0);
        assert_int_equal(n, 3);
        assert_string_equal(list[0].id, "wh_3");
        assert_string_equal(list[1].id, "wh_1");
        assert_string_equal(list[2].id, "wh_2");
        cm_webhook_array_free(list, n);
        assert_int_equal(STORE_CALL(f->s, webhook_list, "prod", &list, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(list[0].id, "wh_2");
        cm_webhook_array_free(list, n);
        assert_int_equal(STORE_CALL(f->s, webhook_list, "none", &list, &n), 0);
        assert_int_equal(n, 0);
        cm_webhook_array_free(list, n);

        assert_int_equal(STORE_CALL(f->s, webhook_delete, "dev", "ops"), 0);
        assert_int_equal(STORE_CALL(f->s, webhook_delete, "dev", "ops"), -ENOENT);
        assert_int_equal(STORE_CALL(f->s, webhook_get, "dev", "ops", &got), -ENOENT);
        /* the name is free again */
        w = mk_webhook("wh_4", "dev", "ops", NULL);
        assert_int_equal(STORE_CALL(f->s, webhook_create, &w, NULL), 0);
        /* deleting the environment deletes its webhooks */
        assert_int_equal(STORE_CALL(f->s, env_delete, "prod"), 0);
        assert_int_equal(STORE_CALL(f->s, webhook_list, NULL, &list, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(list[0].env, "dev");
        assert_string_equal(list[1].env, "dev");
        cm_webhook_array_free(list, n);
}

static struct cm_webhook_delivery mk_delivery(int64_t event_seq, unsigned attempt, const char *outcome) {
        return (struct cm_webhook_delivery){
                .ts_usec = T0 + attempt * SEC,
                .event_seq = event_seq,
                .event_type = CM_UNCONST(char *, "PhaseChanged"),
                .attempt = attempt,
                .status_code = streq(outcome, "delivered") ? 200 : 500,
                .outcome = CM_UNCONST(char *, outcome),
                .error = CM_UNCONST(char *, streq(outcome, "delivered") ? "" : "HTTP 500"),
                .duration_usec = 3100,
        };
}

static int64_t webhook_cursor(struct cm_store *s, const char *env, const char *name) {
        _cleanup_(cm_webhook_done) struct cm_webhook got = {};

        assert_int_equal(STORE_CALL(s, webhook_get, env, name, &got), 0);
        return got.cursor;
}

static void test_webhook_record(void **state) {
        struct fixture *f = *state;
        struct cm_webhook w = mk_webhook("wh_1", "dev", "ops", NULL);
        struct cm_webhook_delivery d1 = mk_delivery(7, 1, "failed"), d2 = mk_delivery(7, 2, "delivered");
        struct cm_webhook_delivery *a = NULL;
        size_t n = 0;

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(STORE_CALL(f->s, webhook_create, &w, NULL), 0);
        w = mk_webhook("wh_2", "dev", "other", NULL);
        assert_int_equal(STORE_CALL(f->s, webhook_create, &w, NULL), 0);

        /* a failed attempt: recorded, the cursor stays (-1) */
        assert_int_equal(STORE_CALL(f->s, webhook_record, "wh_1", -1, &d1), 0);
        assert_int_equal(webhook_cursor(f->s, "dev", "ops"), 0);
        /* delivered: recorded and the cursor moved, together */
        assert_int_equal(STORE_CALL(f->s, webhook_record, "wh_1", 7, &d2), 0);
        assert_int_equal(webhook_cursor(f->s, "dev", "ops"), 7);
        /* no attempt: only the cursor (events of other types passed over) */
        assert_int_equal(STORE_CALL(f->s, webhook_record, "wh_1", 9, NULL), 0);
        assert_int_equal(webhook_cursor(f->s, "dev", "ops"), 9);
        assert_int_equal(webhook_cursor(f->s, "dev", "other"), 0);

        assert_int_equal(STORE_CALL(f->s, webhook_deliveries, "wh_1", 10, &a, &n), 0);
        assert_int_equal(n, 2);
        assert_true(a[0].seq > a[1].seq);
        assert_string_equal(a[0].webhook_id, "wh_1");
        assert_int_equal(a[0].ts_usec, T0 + 2 * SEC);
        assert_int_equal(a[0].event_seq, 7);
        assert_string_equal(a[0].event_type, "PhaseChanged");
        assert_int_equal(a[0].attempt, 2);
        assert_int_equal(a[0].status_code, 200);
        assert_string_equal(a[0].outcome, "delivered");
        assert_string_equal(a[0].error, "");
        assert_int_equal(a[0].duration_usec, 3100);
        assert_int_equal(a[1].attempt, 1);
        assert_int_equal(a[1].status_code, 500);
        assert_string_equal(a[1].outcome, "failed");
        assert_string_equal(a[1].error, "HTTP 500");
        cm_webhook_delivery_array_free(a, n);
        assert_int_equal(STORE_CALL(f->s, webhook_deliveries, "wh_1", 1, &a, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(a[0].attempt, 2);
        cm_webhook_delivery_array_free(a, n);
        assert_int_equal(STORE_CALL(f->s, webhook_deliveries, "wh_2", 10, &a, &n), 0);
        assert_int_equal(n, 0);
        cm_webhook_delivery_array_free(a, n);

        /* Deleted: -ENOENT and nothing written; its deliveries went with it. */
        assert_int_equal(STORE_CALL(f->s, webhook_delete, "dev", "ops"), 0);
        assert_int_equal(STORE_CALL(f->s, webhook_record, "wh_1", 10, &d2), -ENOENT);
        assert_int_equal(STORE_CALL(f->s, webhook_record, "wh_1", -1, NULL), -ENOENT);
        assert_int_equal(STORE_CALL(f->s, webhook_deliveries, "wh_1", 10, &a, &n), 0);
        assert_int_equal(n, 0);
        cm_webhook_delivery_array_free(a, n);
}

/* The delivery log keeps the newest 1000 attempts of each webhook. */
static void test_webhook_deliveries_trimmed(void **state) {
        struct fixture *f = *state;
        struct cm_webhook w = mk_webhook("wh_1", "dev", "ops", NULL);
        struct cm_webhook_delivery *a = NULL;
        size_t n = 0;

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(STORE_CALL(f->s, webhook_create, &w, NULL), 0);
        w = mk_webhook("wh_2", "dev", "other", NULL);
        assert_int_equal(STORE_CALL(f->s, webhook_create, &w, NULL), 0);
        for (unsigned i = 1; i <= 1005; i++) {
                struct cm_webhook_delivery d = mk_delivery(i, 1, "delivered");

                assert_int_equal(STORE_CALL(f->s, webhook_record, "wh_1", i, &d), 0);
        }
        {
                struct cm_webhook_delivery d = mk_delivery(1, 1, "failed");

                assert_int_equal(STORE_CALL(f->s, webhook_record, "wh_2", -1, &d), 0);
        }
        assert_int_equal(STORE_CALL(f->s, webhook_deliveries, "wh_1", 5000, &a, &n), 0);
        assert_int_equal(n, 1000);
        assert_int_equal(a[0].event_seq, 1005);
        assert_int_equal(a[999].event_seq, 6);
        cm_webhook_delivery_array_free(a, n);
        /* another webhook's log is its own */
        assert_int_equal(STORE_CALL(f->s, webhook_deliveries, "wh_2", 5000, &a, &n), 0);
        assert_int_equal(n, 1);
        cm_webhook_delivery_array_free(a, n);
        assert_int_equal(webhook_cursor(f->s, "dev", "ops"), 1005);
}

/* ---- settings of an environment by kind ---- */

static void test_env_settings(void **state) {
        struct fixture *f = *state;
        char *got = NULL;
        int64_t v = -1;

        assert_int_equal(STORE_CALL(f->s, env_settings_get, "dev", "monitoring", &got, &v), -ENOENT);
        assert_int_equal(STORE_CALL(f->s, env_settings_put, "dev", "monitoring", "{}", -1, T0, &v), -ENOENT);
        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(STORE_CALL(f->s, env_settings_get, "dev", "monitoring", &got, &v), 0);
        assert_null(got);
        assert_int_equal(v, 0);

        assert_int_equal(STORE_CALL(f->s, env_settings_put, "dev", "monitoring", "{\"a\":1}", 1, T0, &v),
                         -ESTALE);
        assert_int_equal(STORE_CALL(f->s, env_settings_put, "dev", "monitoring", "{\"a\":1}", 0, T0, &v), 0);
        assert_int_equal(v, 1);
        assert_int_equal(STORE_CALL(f->s, env_settings_put, "dev", "monitoring", "{\"a\":2}", 0, T0, &v),
                         -ESTALE);
        assert_int_equal(STORE_CALL(f->s, env_settings_put, "dev", "monitoring", "{\"a\":2}", 1, T0, &v), 0);
        assert_int_equal(v, 2);
        assert_int_equal(STORE_CALL(f->s, env_settings_put, "dev", "monitoring", "{\"a\":3}", -1, T0, &v),
                         0);
        assert_int_equal(v, 3);
        v = -1;
        assert_int_equal(STORE_CALL(f->s, env_settings_get, "dev", "monitoring", &got, &v), 0);
        assert_string_equal(got, "{\"a\":3}");
        assert_int_equal(v, 3);
        got = mfree(got);

        /* kinds are apart, and apart from the policy settings */
        assert_int_equal(STORE_CALL(f->s, env_settings_get, "dev", "other", &got, &v), 0);
        assert_null(got);
        assert_int_equal(v, 0);
        assert_int_equal(STORE_CALL(f->s, env_policy_get, "dev", &got, &v), 0);
        assert_null(got);
        assert_int_equal(v, 0);
        assert_int_equal(STORE_CALL(f->s, env_policy_put, "dev", "{\"rules\":{}}", 0, T0, &v), 0);
        assert_int_equal(v, 1);
        assert_int_equal(STORE_CALL(f->s, env_settings_get, "dev", "monitoring", &got, &v), 0);
        assert_string_equal(got, "{\"a\":3}");
        assert_int_equal(v, 3);
        got = mfree(got);
        assert_int_equal(STORE_CALL(f->s, env_settings_put, "dev", "other", "{\"b\":1}", 0, T0, &v), 0);
        assert_int_equal(v, 1);

        /* gone with the environment */
        assert_int_equal(STORE_CALL(f->s, env_delete, "dev"), 0);
        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(STORE_CALL(f->s, env_settings_get, "dev", "monitoring", &got, &v), 0);
        assert_null(got);
        assert_int_equal(v, 0);
}

/* ---- health written by the monitor ---- */

/* The condition of that type in a conditions array: status, reason, message, lastTransitionTime. */
static void check_cond(const char *conditions, const char *type, const char *status, const char *reason,
                       const char *message, uint64_t transition) {
        json_t *a = json_loads(conditions, 0, NULL), *e;
        char ts[40];
        bool found = false;
        size_t i;

        assert_true(json_is_array(a));
        cm_format_rfc3339(transition, ts, sizeof(ts));
        json_array_foreach(a, i, e) {
                if (!streq(json_string_value(json_object_get(e, "type")) ?: "", type))
                        continue;
                assert_false(found);
                found = true;
                assert_string_equal(json_string_value(json_object_get(e, "status")), status);
                assert_string_equal(json_string_value(json_object_get(e, "reason")), reason);
                assert_string_equal(json_string_value(json_object_get(e, "message")), message);
                assert_string_equal(json_string_value(json_object_get(e, "lastTransitionTime")), ts);
        }
        json_decref(a);
        assert_true(found);
}

static void test_cluster_set_health(void **state) {
        struct fixture *f = *state;
        struct cm_cluster c = {};
        struct cm_event *a = NULL;
        int64_t last, version;

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        run_op(f->s, "op_1", T0);
        assert_int_equal(STORE_CALL(f->s, cluster_set_status, "cl_1", CM_PHASE_READY,
                                    "[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"Created\"}]",
                                    NULL),
                         0);
        c = get_cluster(f->s, "dev", "c1");
        assert_null(c.health_json); /* never probed */
        assert_int_equal(c.resource_version, 3);
        cm_cluster_done(&c);
        last = last_event(f->s);

        assert_int_equal(STORE_CALL(f->s, cluster_set_health, "cl_nope", "[]", "{}", T0), -ENOENT);

        /* The first probe: two conditions added to the engine's, health set. */
        assert_int_equal(STORE_CALL(f->s, cluster_set_health, "cl_1",
                                    "[{\"type\":\"APIServerAvailable\",\"status\":\"True\",\"reason\":"
                                    "\"Available\",\"message\":\"\"},{\"type\":\"Healthy\",\"status\":"
                                    "\"True\",\"reason\":\"Healthy\",\"message\":\"ok\"}]",
                                    "{\"nodesReady\":3,\"nodesTotal\":3}", T0 + 10 * SEC),
                         0);
        c = get_cluster(f->s, "dev", "c1");
        assert_int_equal(c.resource_version, 4);
        assert_int_equal(c.generation, 1);
        assert_int_equal(c.phase, CM_PHASE_READY);
        assert_string_equal(c.health_json, "{\"nodesReady\":3,\"nodesTotal\":3}");
        check_cond(c.conditions_json, "APIServerAvailable", "True", "Available", "", T0 + 10 * SEC);
        check_cond(c.conditions_json, "Healthy", "True", "Healthy", "ok", T0 + 10 * SEC);
        {
                json_t *conds = json_loads(c.conditions_json, 0, NULL), *ready = json_array_get(conds, 0);
                size_t i;
                json_t *e;

                /* the engine's condition is kept as it was */
                assert_int_equal(json_array_size(conds), 3);
                json_array_foreach(conds, i, e) if (streq(json_string_value(json_object_get(e, "type")),
                                                          "Ready")) ready = e;
                assert_string_equal(json_string_value(json_object_get(ready, "type")), "Ready");
                assert_string_equal(json_string_value(json_object_get(ready, "reason")), "Created");
                json_decref(conds);
        }
        cm_cluster_done(&c);
        assert_int_equal(list_events(f->s, NULL, NULL, last, 100, &a), 2);
        assert_string_equal(a[0].type, "ConditionChanged");
        assert_string_equal(a[1].type, "ConditionChanged");
        last = a[1].seq;
        cm_event_array_free(a, 2);

        /* The same again (later): nothing is written, not even lastTransitionTime. */
        version = version_of(f->s, "dev");
        assert_int_equal(STORE_CALL(f->s, cluster_set_health, "cl_1",
                                    "[{\"type\":\"Healthy\",\"status\":\"True\",\"reason\":\"Healthy\","
                                    "\"message\":\"ok\"}]",
                                    "{\"nodesReady\":3,\"nodesTotal\":3}", T0 + 20 * SEC),
                         0);
        assert_int_equal(STORE_CALL(f->s, cluster_set_health, "cl_1", NULL, NULL, T0 + 20 * SEC), 0);
        assert_int_equal(version_of(f->s, "dev"), version); /* cached pages of clusters stay valid */
        c = get_cluster(f->s, "dev", "c1");
        assert_int_equal(c.resource_version, 4);
        check_cond(c.conditions_json, "Healthy", "True", "Healthy", "ok", T0 + 10 * SEC);
        cm_cluster_done(&c);
        assert_int_equal(last_event(f->s), last);

        /* A new message: written, the transition time kept, no event. */
        assert_int_equal(STORE_CALL(f->s, cluster_set_health, "cl_1",
                                    "[{\"type\":\"Healthy\",\"status\":\"True\",\"reason\":\"Healthy\","
                                    "\"message\":\"still ok\"}]",
                                    NULL, T0 + 30 * SEC),
                         0);
        assert_true(version_of(f->s, "dev") != version);
        c = get_cluster(f->s, "dev", "c1");
        assert_int_equal(c.resource_version, 5);
        check_cond(c.conditions_json, "Healthy", "True", "Healthy", "still ok", T0 + 10 * SEC);
        assert_string_equal(c.health_json, "{\"nodesReady\":3,\"nodesTotal\":3}"); /* NULL keeps it */
        cm_cluster_done(&c);
        assert_int_equal(last_event(f->s), last);

        /* Only the health: written, no event. */
        assert_int_equal(STORE_CALL(f->s, cluster_set_health, "cl_1", NULL,
                                    "{\"nodesReady\":2,\"nodesTotal\":3}", T0 + 40 * SEC),
                         0);
        c = get_cluster(f->s, "dev", "c1");
        assert_int_equal(c.resource_version, 6);
        assert_string_equal(c.health_json, "{\"nodesReady\":2,\"nodesTotal\":3}");
        cm_cluster_done(&c);
        assert_int_equal(last_event(f->s), last);

        /* A new status: a new transition time, and the event with the previous status. */
        assert_int_equal(
                STORE_CALL(f->s, cluster_set_health, "cl_1",
                           "[{\"type\":\"Healthy\",\"status\":\"False\",\"reason\":\"NodesNotReady\","
                           "\"message\":\"1 of 3 nodes not ready\"}]",
                           NULL, T0 + 50 * SEC),
                0);
        c = get_cluster(f->s, "dev", "c1");
        assert_int_equal(c.resource_version, 7);
        check_cond(c.conditions_json, "Healthy", "False", "NodesNotReady", "1 of 3 nodes not ready",
                   T0 + 50 * SEC);
        check_cond(c.conditions_json, "APIServerAvailable", "True", "Available", "", T0 + 10 * SEC);
        cm_cluster_done(&c);
        assert_int_equal(list_events(f->s, NULL, NULL, last, 100, &a), 1);
        check_event(
                &a[0], "dev", "c1", "cl_1", "ConditionChanged",
                "{\"condition\":\"Healthy\",\"status\":\"False\",\"reason\":\"NodesNotReady\",\"message\":"
                "\"1 of 3 nodes not ready\",\"previousStatus\":\"True\",\"previousReason\":\"Healthy\"}");
        cm_event_array_free(a, 1);

        /* the written conditions are what the cluster's readers see (lists too) */
        {
                struct cm_cluster *list = NULL;
                size_t n = 0;

                assert_int_equal(STORE_CALL(f->s, cluster_list, "dev", NULL, 10, &list, &n), 0);
                assert_int_equal(n, 1);
                assert_string_equal(list[0].health_json, "{\"nodesReady\":2,\"nodesTotal\":3}");
                cm_cluster_array_free(list, n);
        }
}

/*
 * Migration 5 on a database of version 4 with clusters: they keep everything, have no health yet,
 * no events are made up for them, and from then on their changes are events.
 */
static void test_sqlite_migration_5(void **state) {
        struct fixture *f = *state;
        const char *path = f->url + strlen("sqlite://");
        struct cm_webhook w = mk_webhook("wh_1", "dev", "ops", NULL);
        _cleanup_(cm_cluster_done) struct cm_cluster c = {};
        struct cm_event *a = NULL;
        sqlite3 *db = NULL;
        char *err = NULL;
        int64_t cursor = -1;

        f->s = cm_store_close(f->s);
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db,
                                      "PRAGMA foreign_keys = ON; CREATE TABLE schema_migrations ("
                                      "version INTEGER PRIMARY KEY, applied INTEGER NOT NULL);",
                                      NULL, NULL, &err),
                         SQLITE_OK);
        for (size_t i = 0; i < 4; i++) {
                char sql[128];

                assert_int_equal(sqlite_migrations[i].version, (int64_t) i + 1);
                assert_int_equal(sqlite3_exec(db, "BEGIN", NULL, NULL, &err), SQLITE_OK);
                assert_int_equal(sqlite3_exec(db, sqlite_migrations[i].sql, NULL, NULL, &err), SQLITE_OK);
                assert_true(cm_snprintf(sql, sizeof(sql),
                                        "INSERT INTO schema_migrations VALUES (%zu, 0); COMMIT", i + 1) > 0);
                assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, &err), SQLITE_OK);
        }
        assert_int_equal(
                sqlite3_exec(db,
                             "INSERT INTO environments (name, labels, created) VALUES ('dev', '{}', 1);"
                             "INSERT INTO clusters (id, env, name, engine, labels, spec, generation, "
                             "resource_version, phase, conditions, status, observed_generation, created, "
                             "updated) "
                             "VALUES ('cl_1', 'dev', 'c1', 'local', '{}', '" SPEC "', 1, 2, 'Ready', "
                             "'[{\"type\":\"Ready\",\"status\":\"True\"}]', '{}', 1, 5, 6),"
                             "('cl_2', 'dev', 'c2', 'local', '{}', '" SPEC
                             "', 1, 1, 'Pending', '[]', '{}', 0, 5, 5);",
                             NULL, NULL, &err),
                SQLITE_OK);
        sqlite3_free(err);
        assert_int_equal(sqlite3_close(db), SQLITE_OK);

        assert_int_equal(cm_store_open(f->url, &f->s), 0);
        assert_int_equal(STORE_CALL(f->s, ping), -EPROTO);
        assert_int_equal(STORE_CALL(f->s, migrate), (int) ELEMENTSOF(sqlite_migrations) - 4);
        assert_int_equal(STORE_CALL(f->s, ping), 0);

        c = get_cluster(f->s, "dev", "c1");
        assert_int_equal(c.resource_version, 2);
        assert_int_equal(c.phase, CM_PHASE_READY);
        assert_string_equal(c.conditions_json, "[{\"type\":\"Ready\",\"status\":\"True\"}]");
        assert_null(c.health_json);
        assert_int_equal(last_event(f->s), 0);

        assert_int_equal(STORE_CALL(f->s, webhook_create, &w, &cursor), 0);
        assert_int_equal(cursor, 0);
        assert_int_equal(STORE_CALL(f->s, cluster_set_health, "cl_1",
                                    "[{\"type\":\"Healthy\",\"status\":\"True\",\"reason\":\"Healthy\"}]",
                                    "{\"nodesReady\":1,\"nodesTotal\":1}", T0),
                         0);
        assert_int_equal(STORE_CALL(f->s, cluster_set_status, "cl_2", CM_PHASE_FAILED, NULL, NULL), 0);
        assert_int_equal(list_events(f->s, "dev", NULL, cursor, 100, &a), 2);
        check_event(&a[0], "dev", "c1", "cl_1", "ConditionChanged",
                    "{\"condition\":\"Healthy\",\"status\":\"True\",\"reason\":\"Healthy\",\"message\":\"\","
                    "\"previousStatus\":\"\",\"previousReason\":\"\"}");
        check_event(&a[1], "dev", "c2", "cl_2", "PhaseChanged",
                    "{\"phase\":\"Failed\",\"previousPhase\":\"Pending\"}");
        cm_event_array_free(a, 2);
        cm_cluster_done(&c);
        c = get_cluster(f->s, "dev", "c1");
        assert_int_equal(c.resource_version, 3);
        assert_string_equal(c.health_json, "{\"nodesReady\":1,\"nodesTotal\":1}");
}

/* ---- add-ons: definitions per environment, installations per cluster ---- */

#define ADDON_DOC "{\"name\":\"metrics\",\"kind\":\"manifest\",\"version\":\"1.0\"}"
#define ADDON_DOC2 "{\"name\":\"metrics\",\"kind\":\"manifest\",\"version\":\"1.1\"}"

static struct cm_addon mk_addon(const char *env, const char *name, enum cm_addon_kind kind,
                                const char *version, bool baseline, const char *doc) {
        return (struct cm_addon){
                .env = CM_UNCONST(char *, env),
                .name = CM_UNCONST(char *, name),
                .kind = kind,
                .version = CM_UNCONST(char *, version),
                .baseline = baseline,
                .doc_json = CM_UNCONST(char *, doc),
                .resource_version = 99, /* not taken: the store sets it */
                .created_usec = 1,
                .updated_usec = 1,
        };
}

/* Puts a manifest add-on (any version) and returns its resource version. */
static int64_t put_addon(struct cm_store *s, const char *env, const char *name, bool baseline,
                         const char *doc, uint64_t now) {
        struct cm_addon a = mk_addon(env, name, CM_ADDON_MANIFEST, "1.0", baseline, doc);
        int64_t v = -1;

        assert_int_equal(STORE_CALL(s, addon_put, &a, -1, now, &v), 0);
        assert_true(v > 0);
        return v;
}

static int64_t put_install(struct cm_store *s, const char *cluster_id, const char *addon, const char *values,
                           uint64_t now) {
        int64_t v = -1;

        assert_int_equal(STORE_CALL(s, install_put, cluster_id, addon, values, -1, now, &v), 0);
        assert_true(v > 0);
        return v;
}

static struct cm_addon_install get_install(struct cm_store *s, const char *cluster_id, const char *addon) {
        struct cm_addon_install i = {};

        assert_int_equal(STORE_CALL(s, install_get, cluster_id, addon, &i), 0);
        return i;
}

/* Claims exactly n installations for owner (lease 60 s); the array is the caller's. */
static struct cm_addon_install *claim_installs(struct cm_store *s, const char *owner, uint64_t now,
                                               unsigned limit, size_t n) {
        struct cm_addon_install *a = NULL;
        size_t got = SIZE_MAX;

        assert_int_equal(STORE_CALL(s, install_claim, owner, now, 60 * SEC, limit, &a, &got), 0);
        assert_int_equal(got, n);
        for (size_t i = 0; i < got; i++) {
                assert_string_equal(a[i].lease_owner, owner);
                assert_int_equal(a[i].lease_until_usec, now + 60 * SEC);
        }
        return a;
}

/* Claims exactly n installations for owner and drops the records (the leases stay). */
static void claim_and_drop(struct cm_store *s, const char *owner, uint64_t now, size_t n) {
        struct cm_addon_install *a = claim_installs(s, owner, now, 10, n);

        cm_addon_install_array_free(a, n);
}

static void claim_installs_none(struct cm_store *s, uint64_t now) {
        struct cm_addon_install *a = (struct cm_addon_install *) 0x1;
        size_t n = 42;

        assert_int_equal(STORE_CALL(s, install_claim, "nobody", now, 60 * SEC, 10, &a, &n), -EAGAIN);
        assert_ptr_equal(a, (struct cm_addon_install *) 0x1); /* untouched on failure */
        assert_int_equal(n, 42);
}

static int finish_install(struct cm_store *s, const char *cluster_id, const char *addon, const char *owner,
                          int64_t generation, const char *status, uint64_t next_check, uint64_t now) {
        const struct cm_install_outcome o = {
                .generation_seen = generation,
                .status_json = status,
                .inventory_json = NULL,
                .applied_key = NULL,
                .next_check_usec = next_check,
        };

        return STORE_CALL(s, install_finish, cluster_id, addon, owner, &o, now);
}

static void test_addon_crud(void **state) {
        struct fixture *f = *state;
        struct cm_addon a = mk_addon("dev", "metrics", CM_ADDON_MANIFEST, "1.0", false, ADDON_DOC), got = {};
        struct cm_addon *list = NULL;
        int64_t v = -1;
        size_t n = 0;

        /* no such environment */
        assert_int_equal(STORE_CALL(f->s, addon_put, &a, -1, T0, &v), -ENOENT);
        assert_int_equal(v, -1);
        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_env(f->s, "prod"), 0);

        /* If-Match on nothing is stale; 0 creates */
        assert_int_equal(STORE_CALL(f->s, addon_put, &a, 1, T0, &v), -ESTALE);
        assert_int_equal(STORE_CALL(f->s, addon_put, &a, 0, T0, &v), 0);
        assert_int_equal(v, 1);
        assert_int_equal(STORE_CALL(f->s, addon_put, &a, 0, T0, &v), -EEXIST);
        assert_int_equal(STORE_CALL(f->s, addon_get, "dev", "metrics", &got), 0);
        assert_string_equal(got.env, "dev");
        assert_string_equal(got.name, "metrics");
        assert_int_equal(got.kind, CM_ADDON_MANIFEST);
        assert_string_equal(got.version, "1.0");
        assert_false(got.baseline);
        assert_string_equal(got.doc_json, ADDON_DOC);
        assert_int_equal(got.resource_version, 1);
        assert_int_equal(got.created_usec, T0);
        assert_int_equal(got.updated_usec, T0);
        cm_addon_done(&got);

        /* the same definition again writes nothing */
        assert_int_equal(STORE_CALL(f->s, addon_put, &a, 1, T0 + SEC, &v), 0);
        assert_int_equal(v, 1);
        assert_int_equal(STORE_CALL(f->s, addon_get, "dev", "metrics", &got), 0);
        assert_int_equal(got.updated_usec, T0);
        cm_addon_done(&got);

        /* a change: If-Match, then any */
        a = mk_addon("dev", "metrics", CM_ADDON_HELM, "2.0", true, ADDON_DOC2);
        assert_int_equal(STORE_CALL(f->s, addon_put, &a, 5, T0 + SEC, &v), -ESTALE);
        assert_int_equal(STORE_CALL(f->s, addon_put, &a, 1, T0 + SEC, &v), 0);
        assert_int_equal(v, 2);
        a.version = CM_UNCONST(char *, "2.1");
        assert_int_equal(STORE_CALL(f->s, addon_put, &a, -1, T0 + 2 * SEC, NULL), 0);
        assert_int_equal(STORE_CALL(f->s, addon_get, "dev", "metrics", &got), 0);
        assert_int_equal(got.kind, CM_ADDON_HELM);
        assert_string_equal(got.version, "2.1");
        assert_true(got.baseline);
        assert_string_equal(got.doc_json, ADDON_DOC2);
        assert_int_equal(got.resource_version, 3);
        assert_int_equal(got.created_usec, T0);
        assert_int_equal(got.updated_usec, T0 + 2 * SEC);
        cm_addon_done(&got);

        /* bad input changes nothing */
        a.doc_json = CM_UNCONST(char *, "{not json");
        assert_int_equal(STORE_CALL(f->s, addon_put, &a, -1, T0, &v), -EINVAL);
        a = mk_addon("dev", "x", _CM_ADDON_KIND_MAX, "1", false, "{}");
        assert_int_equal(STORE_CALL(f->s, addon_put, &a, -1, T0, &v), -EINVAL);
        a = mk_addon("dev", "", CM_ADDON_MANIFEST, "1", false, "{}");
        assert_int_equal(STORE_CALL(f->s, addon_put, &a, -1, T0, &v), -EINVAL);
        assert_int_equal(STORE_CALL(f->s, addon_get, "dev", "metrics", &got), 0);
        assert_int_equal(got.resource_version, 3);
        cm_addon_done(&got);

        /* lists by name, of one environment, baseline ones only on request */
        (void) put_addon(f->s, "dev", "a-logging", false, "{}", T0);
        (void) put_addon(f->s, "dev", "z-policy", true, "{}", T0);
        (void) put_addon(f->s, "prod", "metrics", false, "{}", T0);
        assert_int_equal(STORE_CALL(f->s, addon_list, "dev", false, &list, &n), 0);
        assert_int_equal(n, 3);
        assert_string_equal(list[0].name, "a-logging");
        assert_string_equal(list[1].name, "metrics");
        assert_string_equal(list[2].name, "z-policy");
        cm_addon_array_free(list, n);
        assert_int_equal(STORE_CALL(f->s, addon_list, "dev", true, &list, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(list[0].name, "metrics");
        assert_string_equal(list[1].name, "z-policy");
        cm_addon_array_free(list, n);
        assert_int_equal(STORE_CALL(f->s, addon_list, "prod", true, &list, &n), 0);
        assert_int_equal(n, 0);
        cm_addon_array_free(list, n);
        assert_int_equal(STORE_CALL(f->s, addon_list, "none", false, &list, &n), 0);
        assert_int_equal(n, 0);
        cm_addon_array_free(list, n);

        /* delete: -ENOENT, -ESTALE, then gone (in its environment only) */
        assert_int_equal(STORE_CALL(f->s, addon_delete, "dev", "nope", -1), -ENOENT);
        assert_int_equal(STORE_CALL(f->s, addon_delete, "dev", "metrics", 2), -ESTALE);
        assert_int_equal(STORE_CALL(f->s, addon_delete, "dev", "metrics", 3), 0);
        assert_int_equal(STORE_CALL(f->s, addon_delete, "dev", "metrics", -1), -ENOENT);
        assert_int_equal(STORE_CALL(f->s, addon_get, "dev", "metrics", &got), -ENOENT);
        assert_null(got.name);
        assert_int_equal(STORE_CALL(f->s, addon_get, "prod", "metrics", &got), 0);
        cm_addon_done(&got);
        /* the name is free again: a new definition starts at 1 */
        assert_int_equal(put_addon(f->s, "dev", "metrics", false, "{}", T0), 1);
}

static void test_install_crud(void **state) {
        struct fixture *f = *state;
        _cleanup_(cm_addon_install_done) struct cm_addon_install i = {};
        struct cm_addon_install *list = NULL;
        int64_t v = -1, av;
        size_t n = 0;

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_env(f->s, "prod"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        av = put_addon(f->s, "dev", "metrics", false, ADDON_DOC, T0);
        (void) put_addon(f->s, "dev", "logging", false, "{}", T0);
        (void) put_addon(f->s, "prod", "policy", false, "{}", T0);

        /* no such cluster, no such add-on in the cluster's environment */
        assert_int_equal(STORE_CALL(f->s, install_put, "cl_nope", "metrics", "{}", -1, T0, &v), -ENOENT);
        assert_int_equal(STORE_CALL(f->s, install_put, "cl_1", "policy", "{}", -1, T0, &v), -ENOENT);
        assert_int_equal(STORE_CALL(f->s, install_put, "cl_1", "metrics", "{}", 1, T0, &v), -ESTALE);
        assert_int_equal(v, -1);
        /* values are a JSON object */
        assert_int_equal(STORE_CALL(f->s, install_put, "cl_1", "metrics", "[]", -1, T0, &v), -EINVAL);
        assert_int_equal(STORE_CALL(f->s, install_put, "cl_1", "metrics", "{", -1, T0, &v), -EINVAL);

        assert_int_equal(STORE_CALL(f->s, install_put, "cl_1", "metrics", "{\"replicas\":1}", 0, T0, &v), 0);
        assert_int_equal(v, 1);
        assert_int_equal(STORE_CALL(f->s, install_put, "cl_1", "metrics", "{}", 0, T0, &v), -EEXIST);
        i = get_install(f->s, "cl_1", "metrics");
        assert_string_equal(i.cluster_id, "cl_1");
        assert_string_equal(i.env, "dev");
        assert_string_equal(i.cluster_name, "c1");
        assert_string_equal(i.addon, "metrics");
        assert_string_equal(i.values_json, "{\"replicas\":1}");
        assert_int_equal(i.generation, 1);
        assert_false(i.uninstall);
        assert_string_equal(i.status_json, "{}");
        assert_string_equal(i.inventory_json, "[]");
        assert_null(i.applied_key);
        assert_int_equal(i.next_check_usec, T0); /* due at once */
        assert_null(i.lease_owner);
        assert_int_equal(i.lease_until_usec, 0);
        assert_int_equal(i.resource_version, 1);
        assert_int_equal(i.created_usec, T0);
        assert_int_equal(i.updated_usec, T0);
        assert_string_equal(i.addon_version, "1.0");
        assert_string_equal(i.addon_doc_json, ADDON_DOC);
        assert_int_equal(i.addon_resource_version, av);
        cm_addon_install_done(&i);

        /* the same values: nothing changes; new values: generation+1, due now */
        assert_int_equal(
                STORE_CALL(f->s, install_put, "cl_1", "metrics", "{\"replicas\":1}", 1, T0 + SEC, &v), 0);
        assert_int_equal(v, 1);
        assert_int_equal(STORE_CALL(f->s, install_put, "cl_1", "metrics", "{\"replicas\":2}", 7, T0, &v),
                         -ESTALE);
        assert_int_equal(
                STORE_CALL(f->s, install_put, "cl_1", "metrics", "{\"replicas\":2}", 1, T0 + 2 * SEC, &v),
                0);
        assert_int_equal(v, 2);
        i = get_install(f->s, "cl_1", "metrics");
        assert_string_equal(i.values_json, "{\"replicas\":2}");
        assert_int_equal(i.generation, 2);
        assert_int_equal(i.next_check_usec, T0); /* was due already: stays due from then */
        assert_int_equal(i.updated_usec, T0 + 2 * SEC);
        assert_int_equal(i.created_usec, T0);
        cm_addon_install_done(&i);

        /* by add-on name */
        assert_int_equal(put_install(f->s, "cl_1", "logging", "{}", T0), 1);
        assert_int_equal(STORE_CALL(f->s, install_list, "cl_1", &list, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(list[0].addon, "logging");
        assert_string_equal(list[1].addon, "metrics");
        assert_string_equal(list[1].addon_doc_json, ADDON_DOC);
        cm_addon_install_array_free(list, n);
        assert_int_equal(STORE_CALL(f->s, install_list, "cl_nope", &list, &n), 0);
        assert_int_equal(n, 0);
        cm_addon_install_array_free(list, n);
        assert_int_equal(STORE_CALL(f->s, install_get, "cl_1", "nope", &i), -ENOENT);
        assert_null(i.cluster_id);

        /* uninstall: generation+1, due now; asking again changes nothing; values are frozen */
        assert_int_equal(STORE_CALL(f->s, install_request_uninstall, "cl_1", "nope", T0), -ENOENT);
        assert_int_equal(STORE_CALL(f->s, install_request_uninstall, "cl_1", "metrics", T0 + 3 * SEC), 0);
        assert_int_equal(STORE_CALL(f->s, install_request_uninstall, "cl_1", "metrics", T0 + 4 * SEC), 0);
        i = get_install(f->s, "cl_1", "metrics");
        assert_true(i.uninstall);
        assert_int_equal(i.generation, 3);
        assert_int_equal(i.resource_version, 3);
        assert_int_equal(i.updated_usec, T0 + 3 * SEC);
        cm_addon_install_done(&i);
        assert_int_equal(STORE_CALL(f->s, install_put, "cl_1", "metrics", "{\"replicas\":3}", -1, T0, &v),
                         -EBUSY);
        assert_int_equal(STORE_CALL(f->s, install_put, "cl_1", "metrics", "{\"replicas\":3}", 0, T0, &v),
                         -EEXIST);
}

static void test_addon_in_use(void **state) {
        struct fixture *f = *state;
        struct cm_addon_install *a;

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_env(f->s, "prod"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        assert_int_equal(make_cluster(f->s, "prod", "c1", "cl_2", "op_2", T0), 0);
        (void) put_addon(f->s, "dev", "metrics", false, "{}", T0);
        (void) put_addon(f->s, "prod", "metrics", false, "{}", T0);
        (void) put_install(f->s, "cl_1", "metrics", "{}", T0);

        /* in use in dev; the definition of the same name in prod is not */
        assert_int_equal(STORE_CALL(f->s, addon_delete, "dev", "metrics", -1), -EBUSY);
        assert_int_equal(STORE_CALL(f->s, addon_delete, "dev", "metrics", 9), -ESTALE);
        assert_int_equal(STORE_CALL(f->s, addon_delete, "prod", "metrics", -1), 0);
        /* still in use while it is being uninstalled */
        assert_int_equal(STORE_CALL(f->s, install_request_uninstall, "cl_1", "metrics", T0), 0);
        assert_int_equal(STORE_CALL(f->s, addon_delete, "dev", "metrics", -1), -EBUSY);
        a = claim_installs(f->s, "w1", T0, 10, 1);
        assert_true(a[0].uninstall);
        assert_int_equal(STORE_CALL(f->s, install_remove, "cl_1", "metrics", "w1"), 0);
        cm_addon_install_array_free(a, 1);
        assert_int_equal(STORE_CALL(f->s, addon_delete, "dev", "metrics", -1), 0);
}

static void test_install_claim(void **state) {
        struct fixture *f = *state;
        struct cm_addon_install *a, *b, i = {};
        int64_t av;

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c2", "cl_2", "op_2", T0), 0);
        av = put_addon(f->s, "dev", "metrics", false, ADDON_DOC, T0);
        (void) put_addon(f->s, "dev", "logging", false, "{}", T0);
        claim_installs_none(f->s, T0 + 100 * SEC);

        /* due from their creation, earliest first */
        (void) put_install(f->s, "cl_2", "metrics", "{\"a\":2}", T0 + 2 * SEC);
        (void) put_install(f->s, "cl_1", "metrics", "{\"a\":1}", T0 + 1 * SEC);
        (void) put_install(f->s, "cl_1", "logging", "{}", T0 + 3 * SEC);
        claim_installs_none(f->s, T0);
        {
                struct cm_addon_install *x = NULL;
                size_t n = 0;

                assert_int_equal(STORE_CALL(f->s, install_claim, "w1", T0, 60 * SEC, 0, &x, &n), -EINVAL);
                assert_int_equal(STORE_CALL(f->s, install_claim, "", T0, 60 * SEC, 1, &x, &n), -EINVAL);
        }
        a = claim_installs(f->s, "w1", T0 + 10 * SEC, 2, 2);
        assert_string_equal(a[0].cluster_id, "cl_1");
        assert_string_equal(a[0].addon, "metrics");
        assert_string_equal(a[0].env, "dev");
        assert_string_equal(a[0].cluster_name, "c1");
        assert_string_equal(a[0].values_json, "{\"a\":1}");
        assert_int_equal(a[0].generation, 1);
        assert_string_equal(a[0].addon_doc_json, ADDON_DOC);
        assert_string_equal(a[0].addon_version, "1.0");
        assert_int_equal(a[0].addon_resource_version, av);
        assert_string_equal(a[1].cluster_id, "cl_2");
        /* a second owner gets what is left, then nothing */
        b = claim_installs(f->s, "w2", T0 + 10 * SEC, 10, 1);
        assert_string_equal(b[0].addon, "logging");
        claim_installs_none(f->s, T0 + 20 * SEC);
        /* the lease shows, but is no change of the installation */
        i = get_install(f->s, "cl_1", "metrics");
        assert_string_equal(i.lease_owner, "w1");
        assert_int_equal(i.lease_until_usec, T0 + 70 * SEC);
        assert_int_equal(i.resource_version, 1);
        cm_addon_install_done(&i);

        /* w1 finishes cl_1: written, released, due again at next_check; not before */
        {
                const struct cm_install_outcome o = {
                        .generation_seen = 1,
                        .status_json = "{\"phase\":\"Installed\"}",
                        .inventory_json =
                                "[{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"namespace\":\"m\","
                                "\"name\":\"x\"}]",
                        .applied_key = "k1",
                        .next_check_usec = T0 + 300 * SEC,
                };
                assert_int_equal(
                        STORE_CALL(f->s, install_finish, "cl_1", "metrics", "w2", &o, T0 + 11 * SEC),
                        -ESRCH);
                assert_int_equal(
                        STORE_CALL(f->s, install_finish, "cl_1", "metrics", "w1", &o, T0 + 11 * SEC), 0);
                assert_int_equal(
                        STORE_CALL(f->s, install_finish, "cl_1", "metrics", "w1", &o, T0 + 11 * SEC),
                        -ESRCH);
        }
        i = get_install(f->s, "cl_1", "metrics");
        assert_null(i.lease_owner);
        assert_int_equal(i.lease_until_usec, 0);
        assert_string_equal(i.status_json, "{\"phase\":\"Installed\"}");
        assert_string_equal(
                i.inventory_json,
                "[{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"namespace\":\"m\",\"name\":\"x\"}]");
        assert_string_equal(i.applied_key, "k1");
        assert_int_equal(i.next_check_usec, T0 + 300 * SEC);
        assert_int_equal(i.resource_version, 2);
        assert_int_equal(i.updated_usec, T0 + SEC); /* the desired state did not move */
        cm_addon_install_done(&i);
        cm_addon_install_array_free(a, 2);
        cm_addon_install_array_free(b, 1);
        claim_installs_none(f->s, T0 + 70 * SEC); /* the leases end after T0 + 70 s */

        /* an expired lease is taken over; the old holders can write nothing */
        a = claim_installs(f->s, "w3", T0 + 71 * SEC, 10, 2);
        assert_string_equal(a[0].cluster_id, "cl_2"); /* due since T0 + 2 s */
        assert_string_equal(a[1].addon, "logging"); /* due since T0 + 3 s */
        assert_int_equal(
                finish_install(f->s, "cl_2", "metrics", "w1", 1, "{}", T0 + 900 * SEC, T0 + 72 * SEC),
                -ESRCH);
        assert_int_equal(
                finish_install(f->s, "cl_1", "logging", "w2", 1, "{}", T0 + 900 * SEC, T0 + 72 * SEC),
                -ESRCH);
        assert_int_equal(
                finish_install(f->s, "cl_2", "metrics", "w3", 1, "{}", T0 + 900 * SEC, T0 + 72 * SEC), 0);

        /* new values while w3 holds logging: its finish writes, and keeps it due */
        assert_int_equal(put_install(f->s, "cl_1", "logging", "{\"level\":\"debug\"}", T0 + 73 * SEC), 2);
        claim_installs_none(f->s, T0 + 74 * SEC); /* held */
        assert_int_equal(finish_install(f->s, "cl_1", "logging", "w3", 1, "{\"phase\":\"Installed\"}",
                                        T0 + 900 * SEC, T0 + 75 * SEC),
                         0);
        i = get_install(f->s, "cl_1", "logging");
        assert_int_equal(i.generation, 2);
        assert_int_equal(i.next_check_usec, T0 + 3 * SEC); /* due since then, still */
        assert_string_equal(i.status_json, "{\"phase\":\"Installed\"}");
        assert_null(i.lease_owner);
        cm_addon_install_done(&i);
        cm_addon_install_array_free(a, 2);
        a = claim_installs(f->s, "w3", T0 + 76 * SEC, 10, 1);
        assert_string_equal(a[0].addon, "logging");
        assert_int_equal(a[0].generation, 2);
        assert_string_equal(a[0].values_json, "{\"level\":\"debug\"}");
        assert_int_equal(
                finish_install(f->s, "cl_1", "logging", "w3", 2, NULL, T0 + 900 * SEC, T0 + 77 * SEC), 0);
        cm_addon_install_array_free(a, 1);
        claim_installs_none(f->s, T0 + 78 * SEC);

        /* the same outcome again (a drift pass that found nothing): no new version; NULLs leave */
        a = claim_installs(f->s, "w1", T0 + 300 * SEC, 10, 1);
        assert_string_equal(a[0].cluster_id, "cl_1");
        assert_string_equal(a[0].addon, "metrics");
        assert_string_equal(a[0].applied_key, "k1");
        assert_int_equal(finish_install(f->s, "cl_1", "metrics", "w1", 1, "{\"phase\":\"Installed\"}",
                                        T0 + 600 * SEC, T0 + 301 * SEC),
                         0);
        i = get_install(f->s, "cl_1", "metrics");
        assert_int_equal(i.resource_version, 2);
        assert_string_equal(i.applied_key, "k1");
        assert_int_equal(i.next_check_usec, T0 + 600 * SEC);
        cm_addon_install_done(&i);
        cm_addon_install_array_free(a, 1);
        claim_installs_none(f->s, T0 + 599 * SEC);

        /* a new definition makes its installations due at once (not the others) */
        a = claim_installs(f->s, "w1", T0 + 600 * SEC, 10, 1); /* cl_1/metrics: due at 600 s */
        assert_int_equal(put_addon(f->s, "dev", "metrics", false, ADDON_DOC2, T0 + 601 * SEC), av + 1);
        i = get_install(f->s, "cl_2", "metrics");
        assert_int_equal(i.next_check_usec, T0 + 601 * SEC);
        assert_int_equal(i.generation, 1); /* the installation itself did not change */
        cm_addon_install_done(&i);
        i = get_install(f->s, "cl_1", "logging");
        assert_int_equal(i.next_check_usec, T0 + 900 * SEC);
        cm_addon_install_done(&i);
        /* ... also one that is held: the holder saw the old definition, so it stays due */
        assert_int_equal(
                finish_install(f->s, "cl_1", "metrics", "w1", 1, NULL, T0 + 1200 * SEC, T0 + 602 * SEC), 0);
        i = get_install(f->s, "cl_1", "metrics");
        assert_true(i.next_check_usec <= T0 + 602 * SEC);
        assert_int_equal(i.addon_resource_version, av + 1);
        cm_addon_install_done(&i);
        cm_addon_install_array_free(a, 1);
        a = claim_installs(f->s, "w1", T0 + 603 * SEC, 10, 2);
        assert_string_equal(a[0].addon_doc_json, ADDON_DOC2);
        assert_string_equal(a[1].addon_doc_json, ADDON_DOC2);
        assert_int_equal(finish_install(f->s, a[0].cluster_id, "metrics", "w1", 1, NULL, T0 + 1200 * SEC,
                                        T0 + 604 * SEC),
                         0);
        i = get_install(f->s, a[0].cluster_id, "metrics");
        assert_int_equal(i.next_check_usec, T0 + 1200 * SEC);
        cm_addon_install_done(&i);
        cm_addon_install_array_free(a, 2);
}

#define IRACE_CLUSTERS 20
#define IRACE_ADDONS 3
#define IRACE_THREADS 6

struct install_race {
        struct cm_store *stores[2];
        atomic_int claimed[IRACE_CLUSTERS][IRACE_ADDONS];
        atomic_int finished;
        atomic_int double_claims;
        atomic_int errors;
};

struct install_race_worker {
        struct install_race *race;
        unsigned idx;
};

static void *install_race_thread(void *p) {
        struct install_race_worker *w = p;
        struct install_race *race = w->race;
        struct cm_store *s = race->stores[w->idx % 2];
        char owner[16];

        if (cm_snprintf(owner, sizeof(owner), "w%u", w->idx) < 0) {
                atomic_fetch_add(&race->errors, 1);
                return NULL;
        }
        while (atomic_load(&race->finished) < IRACE_CLUSTERS * IRACE_ADDONS) {
                struct cm_addon_install *a = NULL;
                size_t n = 0;
                int r;

                r = STORE_CALL(s, install_claim, owner, T0 + 100 * SEC, 3600 * SEC, 4, &a, &n);
                if (r == -EAGAIN) {
                        usleep(200);
                        continue;
                }
                if (r < 0) {
                        atomic_fetch_add(&race->errors, 1);
                        break;
                }
                for (size_t i = 0; i < n; i++) {
                        unsigned ci, ai;

                        if (sscanf(a[i].cluster_id, "cl_%u", &ci) != 1 ||
                            sscanf(a[i].addon, "a%u", &ai) != 1 || ci >= IRACE_CLUSTERS ||
                            ai >= IRACE_ADDONS) {
                                atomic_fetch_add(&race->errors, 1);
                                continue;
                        }
                        if (atomic_exchange(&race->claimed[ci][ai], 1) != 0)
                                atomic_fetch_add(&race->double_claims, 1);
                        if (finish_install(s, a[i].cluster_id, a[i].addon, owner, a[i].generation, NULL,
                                           T0 + 10000 * SEC, T0 + 100 * SEC) < 0)
                                atomic_fetch_add(&race->errors, 1);
                        atomic_fetch_add(&race->finished, 1);
                }
                cm_addon_install_array_free(a, n);
        }
        return NULL;
}

/* Six reconcilers on two store objects claim 60 installations in batches: each exactly once. */
static void test_install_concurrent_claims(void **state) {
        struct fixture *f = *state;
        _cleanup_(cm_store_closep) struct cm_store *b = NULL;
        _cleanup_free_ struct install_race *race = NULL;
        struct install_race_worker workers[IRACE_THREADS];
        pthread_t t[IRACE_THREADS];

        race = new0(struct install_race, 1);
        assert_non_null(race);
        assert_int_equal(cm_store_open(f->url, &b), 0);
        race->stores[0] = f->s;
        race->stores[1] = b;

        assert_int_equal(make_env(f->s, "dev"), 0);
        for (unsigned k = 0; k < IRACE_ADDONS; k++) {
                char name[16];

                assert_true(cm_snprintf(name, sizeof(name), "a%u", k) > 0);
                (void) put_addon(f->s, "dev", name, false, "{}", T0);
        }
        for (unsigned i = 0; i < IRACE_CLUSTERS; i++) {
                char name[16], cl[16], op[32];

                assert_true(cm_snprintf(name, sizeof(name), "c%03u", i) > 0);
                assert_true(cm_snprintf(cl, sizeof(cl), "cl_%03u", i) > 0);
                assert_true(cm_snprintf(op, sizeof(op), "op_%03u", i) > 0);
                assert_int_equal(make_cluster(f->s, "dev", name, cl, op, T0), 0);
                for (unsigned k = 0; k < IRACE_ADDONS; k++) {
                        char addon[16];

                        assert_true(cm_snprintf(addon, sizeof(addon), "a%u", k) > 0);
                        (void) put_install(f->s, cl, addon, "{}", T0 + i * SEC);
                }
        }

        for (unsigned i = 0; i < IRACE_THREADS; i++) {
                workers[i] = (struct install_race_worker){ .race = race, .idx = i };
                assert_int_equal(pthread_create(&t[i], NULL, install_race_thread, &workers[i]), 0);
        }
        for (unsigned i = 0; i < IRACE_THREADS; i++)
                assert_int_equal(pthread_join(t[i], NULL), 0);

        assert_int_equal(atomic_load(&race->errors), 0);
        assert_int_equal(atomic_load(&race->double_claims), 0);
        assert_int_equal(atomic_load(&race->finished), IRACE_CLUSTERS * IRACE_ADDONS);
        for (unsigned i = 0; i < IRACE_CLUSTERS; i++)
                for (unsigned k = 0; k < IRACE_ADDONS; k++)
                        assert_int_equal(atomic_load(&race->claimed[i][k]), 1);
        claim_installs_none(b, T0 + 9999 * SEC);
}

/* Runs one claim of cl/addon by owner and removes it (its uninstall was requested). */
static void uninstall_now(struct cm_store *s, const char *cluster_id, const char *addon, uint64_t now) {
        struct cm_addon_install *a = claim_installs(s, "w", now, 1, 1);

        assert_string_equal(a[0].cluster_id, cluster_id);
        assert_string_equal(a[0].addon, addon);
        assert_true(a[0].uninstall);
        assert_int_equal(STORE_CALL(s, install_remove, cluster_id, addon, "w"), 0);
        cm_addon_install_array_free(a, 1);
}

/* install_schedule: due now (never later than it was), nothing a reader sees changes; -ENOENT unknown. */
static void test_install_schedule(void **state) {
        struct fixture *f = *state;
        struct cm_addon_install *a, i = {};

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        (void) put_addon(f->s, "dev", "metrics", false, "{}", T0);
        assert_int_equal(STORE_CALL(f->s, install_schedule, "cl_1", "metrics", T0), -ENOENT);
        assert_int_equal(STORE_CALL(f->s, install_schedule, "cl_nope", "metrics", T0), -ENOENT);
        (void) put_install(f->s, "cl_1", "metrics", "{}", T0);
        a = claim_installs(f->s, "w1", T0 + SEC, 10, 1);
        assert_int_equal(finish_install(f->s, "cl_1", "metrics", "w1", 1, "{\"phase\":\"Applied\"}",
                                        T0 + 300 * SEC, T0 + 2 * SEC),
                         0);
        cm_addon_install_array_free(a, 1);
        claim_installs_none(f->s, T0 + 10 * SEC);
        i = get_install(f->s, "cl_1", "metrics");
        assert_int_equal(i.next_check_usec, T0 + 300 * SEC);
        assert_int_equal(i.resource_version, 2);
        cm_addon_install_done(&i);

        assert_int_equal(STORE_CALL(f->s, install_schedule, "cl_1", "metrics", T0 + 10 * SEC), 0);
        i = get_install(f->s, "cl_1", "metrics");
        assert_int_equal(i.next_check_usec, T0 + 10 * SEC);
        assert_int_equal(i.resource_version, 2);
        assert_int_equal(i.generation, 1);
        cm_addon_install_done(&i);
        /* asked again later: stays due from the earlier time */
        assert_int_equal(STORE_CALL(f->s, install_schedule, "cl_1", "metrics", T0 + 20 * SEC), 0);
        i = get_install(f->s, "cl_1", "metrics");
        assert_int_equal(i.next_check_usec, T0 + 10 * SEC);
        cm_addon_install_done(&i);
        a = claim_installs(f->s, "w1", T0 + 20 * SEC, 10, 1);
        assert_string_equal(a[0].addon, "metrics");
        cm_addon_install_array_free(a, 1);
        /* an installation being uninstalled is still known */
        assert_int_equal(STORE_CALL(f->s, install_request_uninstall, "cl_1", "metrics", T0 + 21 * SEC), 0);
        assert_int_equal(STORE_CALL(f->s, install_schedule, "cl_1", "metrics", T0 + 22 * SEC), 0);
}

static void test_install_remove(void **state) {
        struct fixture *f = *state;
        struct cm_addon_install *a, i = {};

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        (void) put_addon(f->s, "dev", "metrics", false, "{}", T0);
        (void) put_install(f->s, "cl_1", "metrics", "{}", T0);

        /* only the holder, and only after an uninstall request */
        a = claim_installs(f->s, "w1", T0, 1, 1);
        assert_int_equal(STORE_CALL(f->s, install_remove, "cl_1", "metrics", "w2"), -ESRCH);
        assert_int_equal(STORE_CALL(f->s, install_remove, "cl_1", "metrics", "w1"), -EINVAL);
        assert_int_equal(STORE_CALL(f->s, install_request_uninstall, "cl_1", "metrics", T0 + SEC), 0);
        /* the holder saw generation 1: its finish keeps the uninstall due */
        assert_int_equal(finish_install(f->s, "cl_1", "metrics", "w1", 1, "{\"phase\":\"Installed\"}",
                                        T0 + 900 * SEC, T0 + 2 * SEC),
                         0);
        assert_int_equal(STORE_CALL(f->s, install_remove, "cl_1", "metrics", "w1"), -ESRCH);
        cm_addon_install_array_free(a, 1);
        uninstall_now(f->s, "cl_1", "metrics", T0 + 3 * SEC);
        assert_int_equal(STORE_CALL(f->s, install_get, "cl_1", "metrics", &i), -ENOENT);
        assert_int_equal(STORE_CALL(f->s, install_remove, "cl_1", "metrics", "w"), -ESRCH);
        claim_installs_none(f->s, T0 + 4 * SEC);
        /* it can be installed again, from generation 1 */
        assert_int_equal(put_install(f->s, "cl_1", "metrics", "{}", T0 + 5 * SEC), 1);
        i = get_install(f->s, "cl_1", "metrics");
        assert_int_equal(i.generation, 1);
        assert_false(i.uninstall);
        cm_addon_install_done(&i);
}

static void test_install_cascade(void **state) {
        struct fixture *f = *state;
        const struct cm_op_outcome deleted = { .state = CM_OP_SUCCEEDED, .delete_cluster = true };
        struct cm_addon_install *list = NULL;
        struct cm_addon *defs = NULL;
        struct cm_event *ev = NULL;
        int64_t last;
        size_t n = 0;

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c2", "cl_2", "op_2", T0), 0);
        (void) put_addon(f->s, "dev", "metrics", true, "{}", T0);
        (void) put_addon(f->s, "dev", "logging", false, "{}", T0);
        (void) put_install(f->s, "cl_1", "metrics", "{}", T0);
        (void) put_install(f->s, "cl_1", "logging", "{}", T0);
        (void) put_install(f->s, "cl_2", "metrics", "{}", T0);
        assert_int_equal(STORE_CALL(f->s, install_request_uninstall, "cl_1", "logging", T0), 0);

        /* the environment keeps its definitions while it has clusters */
        assert_int_equal(STORE_CALL(f->s, env_delete, "dev"), -ENOTEMPTY);
        run_op(f->s, "op_1", T0);
        run_op(f->s, "op_2", T0);
        assert_int_equal(queue_op(f->s, "dev", "c1", -1, NULL, CM_OP_DELETE, "op_d", T0 + SEC, NULL, NULL),
                         0);
        claim_expect(f->s, "w", T0 + SEC, "op_d");
        last = last_event(f->s);
        assert_int_equal(STORE_CALL(f->s, op_finish, "op_d", "w", T0 + 2 * SEC, &deleted), 0);

        /* the cluster's installations went with it, without AddonUninstalled for the one uninstalling */
        assert_int_equal(STORE_CALL(f->s, install_list, "cl_1", &list, &n), 0);
        assert_int_equal(n, 0);
        cm_addon_install_array_free(list, n);
        ev = events_since(f->s, last, 2);
        assert_string_equal(ev[0].type, "OperationSucceeded");
        check_event(&ev[1], "dev", "c1", "cl_1", "PhaseChanged",
                    "{\"phase\":\"Deleted\",\"previousPhase\":\"Deleting\"}");
        cm_event_array_free(ev, 2);
        /* the other cluster's are there; cl_1's are no longer in use */
        assert_int_equal(STORE_CALL(f->s, install_list, "cl_2", &list, &n), 0);
        assert_int_equal(n, 1);
        cm_addon_install_array_free(list, n);
        assert_int_equal(STORE_CALL(f->s, addon_delete, "dev", "logging", -1), 0);
        assert_int_equal(STORE_CALL(f->s, addon_delete, "dev", "metrics", -1), -EBUSY);
        {
                struct cm_addon_install *a = claim_installs(f->s, "w", T0 + 3 * SEC, 10, 1);
                assert_string_equal(a[0].cluster_id, "cl_2");
                cm_addon_install_array_free(a, 1);
        }

        /* the environment's definitions go with it */
        assert_int_equal(
                queue_op(f->s, "dev", "c2", -1, NULL, CM_OP_DELETE, "op_d2", T0 + 4 * SEC, NULL, NULL), 0);
        claim_expect(f->s, "w", T0 + 4 * SEC, "op_d2");
        assert_int_equal(STORE_CALL(f->s, op_finish, "op_d2", "w", T0 + 5 * SEC, &deleted), 0);
        assert_int_equal(STORE_CALL(f->s, env_delete, "dev"), 0);
        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(STORE_CALL(f->s, addon_list, "dev", false, &defs, &n), 0);
        assert_int_equal(n, 0);
        cm_addon_array_free(defs, n);
        claim_installs_none(f->s, T0 + 100 * SEC);
}

static void test_events_addons(void **state) {
        struct fixture *f = *state;
        struct cm_event *a;
        int64_t last, first;

        assert_int_equal(make_env(f->s, "dev"), 0);
        assert_int_equal(make_env(f->s, "prod"), 0);
        assert_int_equal(make_cluster(f->s, "dev", "c1", "cl_1", "op_1", T0), 0);
        assert_int_equal(make_cluster(f->s, "prod", "c1", "cl_2", "op_2", T0), 0);
        (void) put_addon(f->s, "dev", "metrics", false, "{}", T0);
        (void) put_addon(f->s, "prod", "metrics", false, "{}", T0);
        last = last_event(f->s);

        /* definitions and new installations are no events */
        (void) put_install(f->s, "cl_1", "metrics", "{}", T0);
        (void) put_install(f->s, "cl_2", "metrics", "{}", T0);
        assert_int_equal(last_event(f->s), last);

        /* a phase: from nothing, then a new one; the same phase again (a new message) is none */
        claim_and_drop(f->s, "w", T0, 2);
        assert_int_equal(finish_install(f->s, "cl_2", "metrics", "w", 1, NULL, T0 + 900 * SEC, T0), 0);
        assert_int_equal(
                finish_install(
                        f->s, "cl_1", "metrics", "w", 1,
                        "{\"phase\":\"Installing\",\"reason\":\"Applying\",\"message\":\"3 objects\"}", T0,
                        T0),
                0);
        a = events_since(f->s, last, 1);
        check_event(&a[0], "dev", "c1", "cl_1", "AddonPhaseChanged",
                    "{\"addon\":\"metrics\",\"phase\":\"Installing\",\"previousPhase\":\"\",\"reason\":"
                    "\"Applying\","
                    "\"message\":\"3 objects\"}");
        first = last = a[0].seq;
        cm_event_array_free(a, 1);
        claim_and_drop(f->s, "w", T0, 1);
        assert_int_equal(finish_install(f->s, "cl_1", "metrics", "w", 1,
                                        "{\"phase\":\"Installing\",\"message\":\"2\"}", T0, T0),
                         0);
        assert_int_equal(last_event(f->s), last);
        claim_and_drop(f->s, "w", T0, 1);
        assert_int_equal(
                finish_install(f->s, "cl_1", "metrics", "w", 1, "{\"phase\":\"Installed\"}", T0, T0), 0);
        a = events_since(f->s, last, 1);
        check_event(&a[0], "dev", "c1", "cl_1", "AddonPhaseChanged",
                    "{\"addon\":\"metrics\",\"phase\":\"Installed\",\"previousPhase\":\"Installing\","
                    "\"reason\":\"\","
                    "\"message\":\"\"}");
        last = a[0].seq;
        cm_event_array_free(a, 1);

        /* drift corrected: the counter grows (from nothing, then by one); the same count is none */
        claim_and_drop(f->s, "w", T0, 1);
        assert_int_equal(
                finish_install(f->s, "cl_1", "metrics", "w", 1,
                               "{\"phase\":\"Installed\",\"corrections\":1,\"lastCorrection\":{\"objects\":"
                               "[{\"kind\":\"Deployment\",\"name\":\"m\"}]}}",
                               T0, T0),
                0);
        a = events_since(f->s, last, 1);
        check_event(&a[0], "dev", "c1", "cl_1", "AddonDriftCorrected",
                    "{\"addon\":\"metrics\",\"objects\":[{\"kind\":\"Deployment\",\"name\":\"m\"}],"
                    "\"count\":1}");
        last = a[0].seq;
        cm_event_array_free(a, 1);
        claim_and_drop(f->s, "w", T0, 1);
        assert_int_equal(
                finish_install(f->s, "cl_1", "metrics", "w", 1,
                               "{\"phase\":\"Installed\",\"corrections\":1,\"lastCorrection\":{\"objects\":"
                               "[{\"kind\":\"Deployment\",\"name\":\"m\"}]}}",
                               T0, T0),
                0);
        assert_int_equal(last_event(f->s), last);
        /*
         * A phase change and a correction in one write: both (in either order); then a counter that is
         * not an integer counts as 0.
         */
        claim_and_drop(f->s, "w", T0, 1);
        assert_int_equal(finish_install(f->s, "cl_1", "metrics", "w", 1,
                                        "{\"phase\":\"Degraded\",\"corrections\":2,\"lastCorrection\":{}}",
                                        T0, T0),
                         0);
        a = events_since(f->s, last, 2);
        {
                size_t drift = streq(a[0].type, "AddonDriftCorrected") ? 0 : 1;

                check_event(&a[1 - drift], "dev", "c1", "cl_1", "AddonPhaseChanged",
                            "{\"addon\":\"metrics\",\"phase\":\"Degraded\",\"previousPhase\":\"Installed\","
                            "\"reason\":\"\",\"message\":\"\"}");
                check_event(&a[drift], "dev", "c1", "cl_1", "AddonDriftCorrected",
                            "{\"addon\":\"metrics\",\"objects\":[],\"count\":2}");
        }
        last = a[1].seq;
        cm_event_array_free(a, 2);
        claim_and_drop(f->s, "w", T0, 1);
        assert_int_equal(finish_install(f->s, "cl_1", "metrics", "w", 1,
                                        "{\"phase\":\"Degraded\",\"corrections\":\"9\"}", T0, T0),
                         0);
        assert_int_equal(last_event(f->s), last);
        /* a bad status is refused (-EINVAL) and the lease stays */
        claim_and_drop(f->s, "w", T0, 1);
        assert_int_equal(finish_install(f->s, "cl_1", "metrics", "w", 1, "[]", T0, T0), -EINVAL);
        assert_int_equal(finish_install(f->s, "cl_1", "metrics", "w", 1, "{\"phase\":", T0, T0), -EINVAL);
        assert_int_equal(finish_install(f->s, "cl_1", "metrics", "w", 1, NULL, T0 + 900 * SEC, T0), 0);
        assert_int_equal(last_event(f->s), last);

        /* uninstalled: when the installation is removed */
        assert_int_equal(STORE_CALL(f->s, install_request_uninstall, "cl_2", "metrics", T0 + SEC), 0);
        assert_int_equal(last_event(f->s), last);
        uninstall_now(f->s, "cl_2", "metrics", T0 + 2 * SEC);
        a = events_since(f->s, last, 1);
        check_event(&a[0], "prod", "c1", "cl_2", "AddonUninstalled", "{\"addon\":\"metrics\"}");
        cm_event_array_free(a, 1);

        /* through the filters of event_list like every other event */
        assert_int_equal(list_events(f->s, "prod", NULL, 0, 100, &a), 2);
        assert_string_equal(a[0].type, "PhaseChanged");
        assert_string_equal(a[1].type, "AddonUninstalled");
        cm_event_array_free(a, 2);
        assert_int_equal(list_events(f->s, "dev", "c1", first - 1, 100, &a), 5);
        for (size_t i = 0; i < 5; i++)
                assert_true(strneq(a[i].type, "Addon", 5));
        cm_event_array_free(a, 5);
}

/*
 * Migration 6 on a database of version 5 with clusters and events: they stay as they were, no events
 * are made up, and add-ons work on the old clusters (their events too).
 */
static void test_sqlite_migration_6(void **state) {
        struct fixture *f = *state;
        const char *path = f->url + strlen("sqlite://");
        _cleanup_(cm_cluster_done) struct cm_cluster c = {};
        struct cm_event *a = NULL;
        sqlite3 *db = NULL;
        char *err = NULL;
        int64_t last;

        f->s = cm_store_close(f->s);
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db,
                                      "PRAGMA foreign_keys = ON; CREATE TABLE schema_migrations ("
                                      "version INTEGER PRIMARY KEY, applied INTEGER NOT NULL);",
                                      NULL, NULL, &err),
                         SQLITE_OK);
        for (size_t i = 0; i < 5; i++) {
                char sql[128];

                assert_int_equal(sqlite_migrations[i].version, (int64_t) i + 1);
                assert_int_equal(sqlite3_exec(db, "BEGIN", NULL, NULL, &err), SQLITE_OK);
                assert_int_equal(sqlite3_exec(db, sqlite_migrations[i].sql, NULL, NULL, &err), SQLITE_OK);
                assert_true(cm_snprintf(sql, sizeof(sql),
                                        "INSERT INTO schema_migrations VALUES (%zu, 0); COMMIT", i + 1) > 0);
                assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, &err), SQLITE_OK);
        }
        assert_int_equal(
                sqlite3_exec(db,
                             "INSERT INTO environments (name, labels, created) VALUES ('dev', '{}', 1);"
                             "INSERT INTO clusters (id, env, name, engine, labels, spec, generation, "
                             "resource_version, phase, conditions, status, observed_generation, created, "
                             "updated) "
                             "VALUES ('cl_1', 'dev', 'c1', 'local', '{}', '" SPEC "', 1, 2, 'Ready', '[]', "
                             "'{}', 1, 5, 6);"
                             "INSERT INTO env_settings VALUES ('dev', 'monitoring', '{\"a\":1}', 1, 5);",
                             NULL, NULL, &err),
                SQLITE_OK);
        sqlite3_free(err);
        assert_int_equal(sqlite3_close(db), SQLITE_OK);

        assert_int_equal(cm_store_open(f->url, &f->s), 0);
        assert_int_equal(STORE_CALL(f->s, ping), -EPROTO);
        assert_int_equal(STORE_CALL(f->s, migrate), (int) ELEMENTSOF(sqlite_migrations) - 5);
        assert_int_equal(STORE_CALL(f->s, ping), 0);
        assert_int_equal(STORE_CALL(f->s, migrate), 0);

        /* what was there is untouched */
        c = get_cluster(f->s, "dev", "c1");
        assert_int_equal(c.resource_version, 2);
        assert_int_equal(c.phase, CM_PHASE_READY);
        last = last_event(f->s);
        assert_int_equal(last, 1); /* the insert above, by migration 5's trigger */
        {
                char *got = NULL;
                int64_t v = 0;

                assert_int_equal(STORE_CALL(f->s, env_settings_get, "dev", "monitoring", &got, &v), 0);
                assert_string_equal(got, "{\"a\":1}");
                free(got);
        }

        /* add-ons on the old cluster, with their events */
        (void) put_addon(f->s, "dev", "metrics", true, "{}", T0);
        assert_int_equal(put_install(f->s, "cl_1", "metrics", "{}", T0), 1);
        {
                struct cm_addon_install *x = claim_installs(f->s, "w", T0, 10, 1);
                cm_addon_install_array_free(x, 1);
        }
        assert_int_equal(
                finish_install(f->s, "cl_1", "metrics", "w", 1, "{\"phase\":\"Installed\"}", T0, T0), 0);
        assert_int_equal(list_events(f->s, "dev", "c1", last, 100, &a), 1);
        check_event(&a[0], "dev", "c1", "cl_1", "AddonPhaseChanged",
                    "{\"addon\":\"metrics\",\"phase\":\"Installed\",\"previousPhase\":\"\",\"reason\":\"\","
                    "\"message\":\"\"}");
        cm_event_array_free(a, 1);
        assert_int_equal(STORE_CALL(f->s, addon_delete, "dev", "metrics", -1), -EBUSY);
}

int main(void) {
        const struct CMUnitTest conformance[] = {
                CASE_UNMIGRATED(test_migrate_ping),
                CASE_UNMIGRATED(test_migrate_concurrent),
                CASE(test_env_crud),
                CASE(test_env_list_paging),
                CASE(test_apikey),
                CASE(test_cluster_create),
                CASE(test_cluster_list_count),
                CASE(test_cluster_update),
                CASE(test_cluster_update_keep_spec),
                CASE(test_cluster_set_status),
                CASE(test_claim_order),
                CASE(test_lease_takeover),
                CASE(test_lease_wrong_owner),
                CASE(test_finish_writes_status),
                CASE(test_retry),
                CASE(test_release),
                CASE(test_delete_cluster),
                CASE(test_cluster_list_each),
                CASE(test_env_clusters_version),
                CASE(test_finish_appends_log),
                CASE(test_cancel),
                CASE(test_op_list),
                CASE(test_op_stats),
                CASE(test_op_log),
                CASE(test_idempotency),
                CASE(test_second_store),
                CASE(test_concurrent_claims),
                CASE(test_concurrent_create_and_grab),
                CASE(test_op_params_result),
                CASE(test_env_policy),
                CASE(test_apikeys_and_rolebindings),
                CASE(test_audit_chain),
                CASE(test_events_phase),
                CASE(test_events_conditions),
                CASE(test_events_operations),
                CASE(test_event_list_filters),
                CASE(test_event_history),
                CASE(test_event_prune),
                CASE(test_webhook_crud),
                CASE(test_webhook_record),
                CASE(test_webhook_deliveries_trimmed),
                CASE(test_env_settings),
                CASE(test_cluster_set_health),
                CASE(test_addon_crud),
                CASE(test_install_crud),
                CASE(test_addon_in_use),
                CASE(test_install_claim),
                CASE(test_install_concurrent_claims),
                CASE(test_install_schedule),
                CASE(test_install_remove),
                CASE(test_install_cascade),
                CASE(test_events_addons),
        };
        const struct CMUnitTest sqlite_only[] = {
                CASE(test_sqlite_urls),
                CASE(test_sqlite_not_a_database),
                CASE(test_sqlite_one_process),
                CASE(test_change_counter),
                CASE_UNMIGRATED(test_sqlite_migration_2_keeps_history),
                CASE_UNMIGRATED(test_sqlite_migration_5),
                CASE_UNMIGRATED(test_sqlite_migration_6),
        };
        int failed = 0;

        for (size_t i = 0; i < ELEMENTSOF(factories); i++) {
                char name[64];

                current_factory = &factories[i];
                if (cm_snprintf(name, sizeof(name), "store conformance: %s", factories[i].name) < 0)
                        return 1;
                failed += _cmocka_run_group_tests(name, conformance, ELEMENTSOF(conformance), NULL, NULL);
        }
        current_factory = &factories[0];
        failed += cmocka_run_group_tests_name("store: sqlite specifics", sqlite_only, NULL, NULL);
        return failed ? 1 : 0;
}
