/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <pthread.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <stdatomic.h>

#include "base/log.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "lifecycle/conditions.h"
#include "store/sqlite_migrations.h"
#include "store/store.h"

/*
 * The SQLite backend. docs/internals/store.md describes the schema, the transactions and the
 * threading; the short version:
 * - one connection per thread (a pthread key on the store), opened lazily, each with its own cache
 *   of prepared statements; close() finalizes every connection still open;
 * - reads run on the calling thread's connection, in autocommit mode;
 * - writes are functions run inside BEGIN IMMEDIATE transactions. Writers of one store object form a
 *   queue and one of them (the leader) runs a batch of queued writes in one transaction, each inside
 *   its own savepoint, and commits once: synchronous=FULL costs one fsync per commit, and group
 *   commit shares it among the writers that arrived meanwhile. A caller returns only after the
 *   commit that carries its write, so every accepted write is durable.
 */

#define SQLITE_BUSY_TIMEOUT_MSEC 5000
/* Whole-transaction attempts when the database stays locked longer than the busy timeout. */
#define SQLITE_TX_ATTEMPTS 3
/* Writes sharing one transaction (and one fsync) at most. */
#define SQLITE_BATCH_MAX 64

#define CLUSTER_COLUMNS                                                                                     \
        "id, env, name, engine, labels, spec, generation, resource_version, phase, conditions, "            \
        "status, observed_generation, created, updated"
#define CLUSTER_READ_COLUMNS CLUSTER_COLUMNS ", health"
#define EVENT_COLUMNS "seq, ts, env, cluster, cluster_id, type, data"
#define WEBHOOK_COLUMNS "id, env, name, url, secret, events, cursor, created"
#define DELIVERY_COLUMNS                                                                                    \
        "seq, webhook_id, ts, event_seq, event_type, attempt, status_code, outcome, error, duration"
#define APIKEY_COLUMNS "id, name, hash, role, created, expires, owner, revoked, last_used"
#define RB_COLUMNS "id, env, subject_kind, subject, role, created, created_by"
#define AUDIT_COLUMNS                                                                                       \
        "seq, ts, principal, source, request_id, action, resource, outcome, status, prev_hash, hash"

#define ADDON_COLUMNS "env, name, kind, version, baseline, doc, resource_version, created, updated"
/* An installation with its cluster's place and its definition (LEFT JOIN: shown even without one). */
#define INSTALL_COLUMNS                                                                                     \
        "i.cluster_id, c.env, c.name, i.addon, i.values_json, i.generation, i.uninstall, i.status, "        \
        "i.inventory, i.applied_key, i.next_check, i.lease_owner, i.lease_until, i.resource_version, "      \
        "i.created, i.updated, a.version, a.doc, a.resource_version"
#define INSTALL_FROM                                                                                        \
        "cluster_addons AS i JOIN clusters AS c ON c.id = i.cluster_id "                                    \
        "LEFT JOIN addons AS a ON a.env = c.env AND a.name = i.addon"
/* The resource version of the definition an installation (the row being updated) installs; 0: none. */
#define INSTALL_ADDON_VERSION                                                                               \
        "coalesce((SELECT a.resource_version FROM clusters AS c JOIN addons AS a ON a.env = c.env AND "     \
        "a.name = cluster_addons.addon WHERE c.id = cluster_addons.cluster_id), 0)"

#define OP_COLUMNS                                                                                          \
        "seq, id, env, cluster_id, cluster_name, type, state, generation, attempts, max_attempts, "         \
        "error, lease_owner, lease_expires, next_run, cancel_requested, requested_by, created, "            \
        "started, finished, params, result, policy"

enum stmt_id {
        STMT_BEGIN,
        STMT_COMMIT,
        STMT_ROLLBACK,
        STMT_SAVEPOINT,
        STMT_ROLLBACK_TO,
        STMT_RELEASE,
        STMT_MIGRATION_GET,
        STMT_MIGRATION_PUT,
        STMT_PING_TABLE,
        STMT_PING_VERSIONS,
        STMT_ENV_INSERT,
        STMT_ENV_GET,
        STMT_ENV_CLUSTERS_VERSION,
        STMT_ENV_LIST,
        STMT_ENV_HAS_CLUSTERS,
        STMT_ENV_DELETE,
        STMT_APIKEY_INSERT,
        STMT_APIKEY_GET_BY_HASH,
        STMT_APIKEY_COUNT,
        STMT_APIKEY_LIST,
        STMT_APIKEY_REVOKE,
        STMT_APIKEY_TOUCH,
        STMT_RB_INSERT,
        STMT_RB_LIST_ALL,
        STMT_RB_LIST_ENV,
        STMT_RB_DELETE,
        STMT_RB_DELETE_ENV,
        STMT_AUDIT_LAST,
        STMT_AUDIT_INSERT,
        STMT_AUDIT_LIST,
        STMT_SETTINGS_GET,
        STMT_SETTINGS_PUT,
        STMT_EVENT_LIST,
        STMT_EVENT_HISTORY,
        STMT_EVENT_LAST,
        STMT_EVENT_PRUNE,
        STMT_WEBHOOK_INSERT,
        STMT_WEBHOOK_GET,
        STMT_WEBHOOK_LIST,
        STMT_WEBHOOK_DELETE,
        STMT_WEBHOOK_EXISTS,
        STMT_WEBHOOK_CURSOR,
        STMT_DELIVERY_INSERT,
        STMT_DELIVERY_TRIM,
        STMT_DELIVERY_LIST,
        STMT_ADDON_GET,
        STMT_ADDON_VERSION,
        STMT_ADDON_LIST,
        STMT_ADDON_INSERT,
        STMT_ADDON_UPDATE,
        STMT_ADDON_DELETE,
        STMT_ADDON_IN_USE,
        STMT_ADDON_MARK_DUE,
        STMT_INSTALL_GET,
        STMT_INSTALL_LIST,
        STMT_INSTALL_LOOKUP,
        STMT_INSTALL_ADDON_EXISTS,
        STMT_INSTALL_INSERT,
        STMT_INSTALL_SET_VALUES,
        STMT_INSTALL_UNINSTALL,
        STMT_INSTALL_EXISTS,
        STMT_INSTALL_DUE,
        STMT_INSTALL_LEASE,
        STMT_INSTALL_FINISH,
        STMT_INSTALL_REMOVE,
        STMT_INSTALL_HOLDER,
        STMT_INSTALL_SCHEDULE,
        STMT_CLUSTER_HEALTH_GET,
        STMT_CLUSTER_HEALTH_SET,
        STMT_CLUSTER_GET,
        STMT_CLUSTER_GET_BY_ID,
        STMT_CLUSTER_LIST,
        STMT_CLUSTER_COUNT,
        STMT_CLUSTER_INSERT,
        STMT_CLUSTER_LOOKUP,
        STMT_CLUSTER_UPDATE_SPEC,
        STMT_CLUSTER_STATUS,
        STMT_CLUSTER_DELETE,
        STMT_OP_INSERT,
        STMT_OP_UNFINISHED,
        STMT_OP_GET,
        STMT_OP_LIST,
        STMT_OP_CLAIM,
        STMT_OP_HEARTBEAT,
        STMT_OP_FINISH,
        STMT_OP_RELEASE,
        STMT_OP_STATE,
        STMT_OP_CANCEL_PENDING,
        STMT_OP_CANCEL_RUNNING,
        STMT_OP_STATS,
        STMT_OP_QUEUE_DEPTH,
        STMT_OP_EXISTS,
        STMT_LOG_APPEND,
        STMT_LOG_READ,
        STMT_POLICY_GET,
        STMT_POLICY_PUT,
        STMT_ENV_EXISTS,
        STMT_IDEM_GET,
        STMT_IDEM_INSERT,
        STMT_IDEM_FINISH,
        STMT_IDEM_ABORT,
        STMT_IDEM_EXPIRE,
        _STMT_MAX,
};

static const char *const stmt_sql[_STMT_MAX] = {
        [STMT_BEGIN] = "BEGIN IMMEDIATE",
        [STMT_COMMIT] = "COMMIT",
        [STMT_ROLLBACK] = "ROLLBACK",
        [STMT_SAVEPOINT] = "SAVEPOINT cm_write",
        [STMT_ROLLBACK_TO] = "ROLLBACK TO cm_write",
        [STMT_RELEASE] = "RELEASE cm_write",

        [STMT_MIGRATION_GET] = "SELECT 1 FROM schema_migrations WHERE version = ?1",
        [STMT_MIGRATION_PUT] = "INSERT INTO schema_migrations (version, applied) VALUES (?1, ?2)",
        [STMT_PING_TABLE] =
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
        [STMT_PING_VERSIONS] = "SELECT count(*) FROM schema_migrations WHERE version BETWEEN 1 AND ?1",

        [STMT_ENV_INSERT] =
                "INSERT INTO environments (name, labels, created) VALUES (?1, coalesce(?2, '{}'), ?3)",
        [STMT_ENV_GET] = "SELECT name, labels, created FROM environments WHERE name = ?1",
        [STMT_ENV_CLUSTERS_VERSION] = "SELECT clusters_version FROM environments WHERE name = ?1",
        [STMT_ENV_LIST] =
                "SELECT name, labels, created FROM environments WHERE name > ?1 ORDER BY name LIMIT ?2",
        [STMT_ENV_HAS_CLUSTERS] = "SELECT 1 FROM clusters WHERE env = ?1 LIMIT 1",
        [STMT_ENV_DELETE] = "DELETE FROM environments WHERE name = ?1",

        [STMT_APIKEY_INSERT] = "INSERT INTO apikeys (id, name, hash, role, created, expires, owner) "
                               "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        [STMT_APIKEY_GET_BY_HASH] = "SELECT " APIKEY_COLUMNS " FROM apikeys WHERE hash = ?1",
        [STMT_APIKEY_COUNT] = "SELECT count(*) FROM apikeys",
        [STMT_APIKEY_LIST] = "SELECT " APIKEY_COLUMNS " FROM apikeys ORDER BY created, id",
        [STMT_APIKEY_REVOKE] = "UPDATE apikeys SET revoked = 1 WHERE id = ?1",
        [STMT_APIKEY_TOUCH] = "UPDATE apikeys SET last_used = ?2 WHERE id = ?1 AND last_used < ?2",
        [STMT_RB_INSERT] =
                "INSERT INTO rolebindings (id, env, subject_kind, subject, role, created, created_by) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        [STMT_RB_LIST_ALL] = "SELECT " RB_COLUMNS " FROM rolebindings ORDER BY env, subject_kind, subject",
        [STMT_RB_LIST_ENV] = "SELECT " RB_COLUMNS " FROM rolebindings WHERE env = ?1 OR env = '*' "
                             "ORDER BY env, subject_kind, subject",
        [STMT_RB_DELETE] = "DELETE FROM rolebindings WHERE id = ?1",
        [STMT_RB_DELETE_ENV] = "DELETE FROM rolebindings WHERE env = ?1",
        [STMT_AUDIT_LAST] = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
        [STMT_AUDIT_INSERT] =
                "INSERT INTO audit (seq, ts, principal, source, request_id, action, resource, "
                "outcome, status, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
                "?10, ?11)",
        [STMT_AUDIT_LIST] = "SELECT " AUDIT_COLUMNS " FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        [STMT_SETTINGS_GET] = "SELECT settings, version FROM env_settings WHERE env = ?1 AND kind = ?2",
        [STMT_SETTINGS_PUT] = "INSERT INTO env_settings (env, kind, settings, version, updated) VALUES (?1, "
                              "?2, ?3, 1, ?4) "
                              "ON CONFLICT(env, kind) DO UPDATE SET settings = excluded.settings, "
                              "version = version + 1, updated = excluded.updated",
        [STMT_EVENT_LIST] =
                "SELECT " EVENT_COLUMNS " FROM events WHERE seq > ?1 AND "
                "(?2 IS NULL OR env = ?2) AND (?3 IS NULL OR cluster = ?3) ORDER BY seq LIMIT ?4",
        [STMT_EVENT_HISTORY] = "SELECT " EVENT_COLUMNS " FROM events WHERE cluster_id = ?1 AND "
                               "type = 'ConditionChanged' AND seq < ?2 AND ts >= ?3 AND "
                               "(?4 IS NULL OR data ->> '$.condition' = ?4) ORDER BY seq DESC LIMIT ?5",
        [STMT_EVENT_LAST] = "SELECT coalesce(max(seq), 0) FROM events",
        [STMT_EVENT_PRUNE] = "DELETE FROM events WHERE ts < ?1",
        [STMT_WEBHOOK_INSERT] = "INSERT INTO webhooks (" WEBHOOK_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, "
                                "?6, (SELECT coalesce(max(seq), 0) FROM events), ?7) RETURNING cursor",
        [STMT_WEBHOOK_GET] = "SELECT " WEBHOOK_COLUMNS " FROM webhooks WHERE env = ?1 AND name = ?2",
        [STMT_WEBHOOK_LIST] =
                "SELECT " WEBHOOK_COLUMNS " FROM webhooks WHERE (?1 IS NULL OR env = ?1) ORDER BY env, name",
        [STMT_WEBHOOK_DELETE] = "DELETE FROM webhooks WHERE env = ?1 AND name = ?2",
        [STMT_WEBHOOK_EXISTS] = "SELECT 1 FROM webhooks WHERE id = ?1",
        [STMT_WEBHOOK_CURSOR] = "UPDATE webhooks SET cursor = ?2 WHERE id = ?1",
        [STMT_DELIVERY_INSERT] = "INSERT INTO webhook_deliveries (webhook_id, ts, event_seq, event_type, "
                                 "attempt, status_code, outcome, error, duration) "
                                 "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        /* The delivery log keeps the newest attempts of each webhook. */
        [STMT_DELIVERY_TRIM] = "DELETE FROM webhook_deliveries WHERE webhook_id = ?1 AND seq <= "
                               "(SELECT seq FROM webhook_deliveries WHERE webhook_id = ?1 "
                               "ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
        [STMT_DELIVERY_LIST] = "SELECT " DELIVERY_COLUMNS " FROM webhook_deliveries WHERE webhook_id = ?1 "
                               "ORDER BY seq DESC LIMIT ?2",
        [STMT_ADDON_GET] = "SELECT " ADDON_COLUMNS " FROM addons WHERE env = ?1 AND name = ?2",
        [STMT_ADDON_VERSION] = "SELECT resource_version FROM addons WHERE env = ?1 AND name = ?2",
        [STMT_ADDON_LIST] =
                "SELECT " ADDON_COLUMNS " FROM addons WHERE env = ?1 AND (?2 = 0 OR baseline = 1) "
                "ORDER BY name",
        [STMT_ADDON_INSERT] =
                "INSERT INTO addons (" ADDON_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?7)",
        [STMT_ADDON_UPDATE] = "UPDATE addons SET kind = ?3, version = ?4, baseline = ?5, doc = ?6, "
                              "resource_version = resource_version + 1, updated = ?7 "
                              "WHERE env = ?1 AND name = ?2 RETURNING resource_version",
        [STMT_ADDON_DELETE] = "DELETE FROM addons WHERE env = ?1 AND name = ?2",
        [STMT_ADDON_IN_USE] = "SELECT 1 FROM cluster_addons AS i JOIN clusters AS c ON c.id = i.cluster_id "
                              "WHERE i.addon = ?2 AND c.env = ?1 LIMIT 1",
        [STMT_ADDON_MARK_DUE] =
                "UPDATE cluster_addons SET next_check = min(next_check, ?3) "
                "WHERE addon = ?2 AND cluster_id IN (SELECT id FROM clusters WHERE env = ?1)",
        [STMT_INSTALL_GET] =
                "SELECT " INSTALL_COLUMNS " FROM " INSTALL_FROM " WHERE i.cluster_id = ?1 AND i.addon = ?2",
        [STMT_INSTALL_LIST] =
                "SELECT " INSTALL_COLUMNS " FROM " INSTALL_FROM " WHERE i.cluster_id = ?1 ORDER BY i.addon",
        [STMT_INSTALL_LOOKUP] = "SELECT values_json, uninstall, resource_version FROM cluster_addons "
                                "WHERE cluster_id = ?1 AND addon = ?2",
        [STMT_INSTALL_ADDON_EXISTS] = "SELECT 1 FROM clusters AS c JOIN addons AS a ON a.env = c.env "
                                      "WHERE c.id = ?1 AND a.name = ?2",
        [STMT_INSTALL_INSERT] = "INSERT INTO cluster_addons (cluster_id, addon, values_json, generation, "
                                "next_check, resource_version, created, updated) "
                                "VALUES (?1, ?2, ?3, 1, ?4, 1, ?4, ?4)",
        [STMT_INSTALL_SET_VALUES] =
                "UPDATE cluster_addons SET values_json = ?3, generation = generation + 1, "
                "next_check = min(next_check, ?4), "
                "resource_version = resource_version + 1, updated = ?4 "
                "WHERE cluster_id = ?1 AND addon = ?2 RETURNING resource_version",
        [STMT_INSTALL_UNINSTALL] = "UPDATE cluster_addons SET uninstall = 1, generation = generation + 1, "
                                   "next_check = min(next_check, ?3), "
                                   "resource_version = resource_version + 1, updated = ?3 "
                                   "WHERE cluster_id = ?1 AND addon = ?2 AND uninstall = 0",
        [STMT_INSTALL_EXISTS] = "SELECT 1 FROM cluster_addons WHERE cluster_id = ?1 AND addon = ?2",
        /* Due and not held, earliest first, through cluster_addons_due. */
        [STMT_INSTALL_DUE] = "SELECT " INSTALL_COLUMNS " FROM " INSTALL_FROM
                             " WHERE i.next_check <= ?1 AND (i.lease_owner IS NULL OR i.lease_until < ?1) "
                             "ORDER BY i.next_check, i.cluster_id, i.addon LIMIT ?2",
        [STMT_INSTALL_LEASE] = "UPDATE cluster_addons SET lease_owner = ?3, lease_until = ?4, "
                               "lease_addon_version = ?5 WHERE cluster_id = ?1 AND addon = ?2",
        /*
         * SET expressions all read the row as it was: the version moves when what a reader sees
         * changes; next_check stays due when the generation or the definition moved during the lease.
         */
        [STMT_INSTALL_FINISH] =
                "UPDATE cluster_addons SET resource_version = resource_version + "
                "(status IS NOT coalesce(?4, status) OR inventory IS NOT coalesce(?5, inventory) OR "
                "applied_key IS NOT coalesce(?6, applied_key)), "
                "status = coalesce(?4, status), inventory = coalesce(?5, inventory), "
                "applied_key = coalesce(?6, applied_key), "
                "next_check = CASE WHEN generation = ?7 AND lease_addon_version = " INSTALL_ADDON_VERSION
                " THEN ?8 ELSE min(next_check, ?9) END, "
                "lease_owner = NULL, lease_until = 0 "
                "WHERE cluster_id = ?1 AND addon = ?2 AND lease_owner = ?3",
        [STMT_INSTALL_REMOVE] =
                "DELETE FROM cluster_addons "
                "WHERE cluster_id = ?1 AND addon = ?2 AND lease_owner = ?3 AND uninstall = 1",
        [STMT_INSTALL_HOLDER] = "SELECT 1 FROM cluster_addons "
                                "WHERE cluster_id = ?1 AND addon = ?2 AND lease_owner = ?3",
        [STMT_INSTALL_SCHEDULE] = "UPDATE cluster_addons SET next_check = min(next_check, ?3) "
                                  "WHERE cluster_id = ?1 AND addon = ?2",
        [STMT_CLUSTER_HEALTH_GET] = "SELECT conditions, health FROM clusters WHERE id = ?1",
        [STMT_CLUSTER_HEALTH_SET] = "UPDATE clusters SET conditions = ?2, health = ?3, "
                                    "resource_version = resource_version + 1 WHERE id = ?1",

        [STMT_CLUSTER_GET] = "SELECT " CLUSTER_READ_COLUMNS " FROM clusters WHERE env = ?1 AND name = ?2",
        [STMT_CLUSTER_GET_BY_ID] = "SELECT " CLUSTER_READ_COLUMNS " FROM clusters WHERE id = ?1",
        [STMT_CLUSTER_LIST] = "SELECT " CLUSTER_READ_COLUMNS " FROM clusters WHERE env = ?1 AND name > ?2 "
                              "ORDER BY name LIMIT ?3",
        [STMT_CLUSTER_COUNT] = "SELECT count(*) FROM clusters WHERE env = ?1",
        [STMT_CLUSTER_INSERT] = "INSERT INTO clusters (" CLUSTER_COLUMNS ") VALUES (?1, ?2, ?3, ?4, "
                                "coalesce(?5, '{}'), ?6, 1, 1, ?7, coalesce(?8, '[]'), coalesce(?9, '{}'), "
                                "0, ?10, ?11)",
        [STMT_CLUSTER_LOOKUP] = "SELECT id, resource_version FROM clusters WHERE env = ?1 AND name = ?2",
        [STMT_CLUSTER_UPDATE_SPEC] =
                "UPDATE clusters SET spec = coalesce(?2, spec), labels = coalesce(?3, labels), "
                "generation = generation + (?2 IS NOT NULL), "
                "resource_version = resource_version + 1, phase = ?4, updated = ?5 "
                "WHERE id = ?1 RETURNING " CLUSTER_COLUMNS,
        [STMT_CLUSTER_STATUS] = "UPDATE clusters SET phase = ?2, conditions = coalesce(?3, conditions), "
                                "status = coalesce(?4, status), observed_generation = "
                                "CASE WHEN ?5 THEN ?6 ELSE observed_generation END, "
                                "resource_version = resource_version + 1 WHERE id = ?1",
        [STMT_CLUSTER_DELETE] = "DELETE FROM clusters WHERE id = ?1",

        [STMT_OP_INSERT] =
                "INSERT INTO operations (id, env, cluster_id, cluster_name, type, state, generation, "
                "attempts, max_attempts, next_run, requested_by, created, params, policy) "
                "VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, 0, ?7, ?8, ?9, ?10, ?11, ?12)",
        [STMT_OP_UNFINISHED] =
                "SELECT id FROM operations WHERE cluster_id = ?1 AND state IN ('pending', 'running')",
        [STMT_OP_GET] = "SELECT " OP_COLUMNS " FROM operations WHERE id = ?1",
        [STMT_OP_LIST] =
                "SELECT " OP_COLUMNS " FROM operations WHERE env = ?1 AND cluster_name = ?2 AND seq < ?3 "
                "ORDER BY seq DESC LIMIT ?4",
        /*
         * The oldest runnable operation: the earliest of the first pending one by next_run and the
         * first expired lease by lease_expires, each found through its partial index (two index
         * seeks, whatever the queue length). Ties go to the older seq.
         */
        [STMT_OP_CLAIM] =
                "UPDATE operations SET state = 'running', lease_owner = ?1, lease_expires = ?3, "
                "attempts = attempts + 1, started = CASE WHEN started = 0 THEN ?2 ELSE started END "
                "WHERE seq = (SELECT seq FROM ("
                "SELECT * FROM (SELECT seq, next_run AS t FROM operations "
                "WHERE state = 'pending' AND next_run <= ?2 ORDER BY next_run, seq LIMIT 1) "
                "UNION ALL "
                "SELECT * FROM (SELECT seq, lease_expires AS t FROM operations "
                "WHERE state = 'running' AND lease_expires < ?2 ORDER BY lease_expires, seq LIMIT 1)"
                ") ORDER BY t, seq LIMIT 1) "
                "RETURNING " OP_COLUMNS,
        [STMT_OP_HEARTBEAT] =
                "UPDATE operations SET lease_expires = ?3 "
                "WHERE id = ?1 AND lease_owner = ?2 AND state = 'running' RETURNING cancel_requested",
        [STMT_OP_FINISH] = "UPDATE operations SET state = ?3, error = ?4, result = coalesce(?7, result), "
                           "next_run = CASE WHEN ?3 = 'pending' THEN ?5 ELSE next_run END, "
                           "finished = CASE WHEN ?3 = 'pending' THEN 0 ELSE ?6 END, "
                           "lease_owner = NULL, lease_expires = 0 "
                           "WHERE id = ?1 AND lease_owner = ?2 AND state = 'running' "
                           "RETURNING cluster_id, generation",
        /* next_run is kept: it was due when the operation was claimed, so it is due now. */
        [STMT_OP_RELEASE] =
                "UPDATE operations SET state = 'pending', lease_owner = NULL, lease_expires = 0, "
                "attempts = max(attempts - 1, 0) "
                "WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
        [STMT_OP_STATE] = "SELECT state FROM operations WHERE id = ?1",
        [STMT_OP_CANCEL_PENDING] = "UPDATE operations SET state = 'cancelled', finished = ?2 "
                                   "WHERE id = ?1 AND state = 'pending'",
        [STMT_OP_CANCEL_RUNNING] =
                "UPDATE operations SET cancel_requested = 1 WHERE id = ?1 AND state = 'running'",
        [STMT_OP_STATS] = "SELECT type, state, count(*) FROM operations GROUP BY type, state",
        [STMT_OP_QUEUE_DEPTH] = "SELECT count(*) FROM operations WHERE state = 'pending' AND next_run <= ?1",
        [STMT_OP_EXISTS] = "SELECT 1 FROM operations WHERE id = ?1",

        [STMT_LOG_APPEND] = "INSERT INTO op_log (op_id, seq, ts, text) "
                            "SELECT ?1, coalesce(max(seq), 0) + 1, ?2, ?3 FROM op_log WHERE op_id = ?1",
        [STMT_LOG_READ] = "SELECT seq, text FROM op_log WHERE op_id = ?1 AND seq > ?2 ORDER BY seq",

        [STMT_ENV_EXISTS] = "SELECT 1 FROM environments WHERE name = ?1",
        [STMT_POLICY_GET] = "SELECT settings, version FROM env_policies WHERE env = ?1",
        [STMT_POLICY_PUT] =
                "INSERT INTO env_policies (env, settings, version, updated) VALUES (?1, ?2, 1, ?3) "
                "ON CONFLICT(env) DO UPDATE SET settings = excluded.settings, "
                "version = version + 1, updated = excluded.updated",

        [STMT_IDEM_GET] =
                "SELECT request_hash, status, body FROM idempotency WHERE principal = ?1 AND key = ?2",
        [STMT_IDEM_INSERT] = "INSERT INTO idempotency (principal, key, request_hash, status, body, created) "
                             "VALUES (?1, ?2, ?3, 0, NULL, ?4)",
        [STMT_IDEM_FINISH] = "UPDATE idempotency SET status = ?3, body = ?4 "
                             "WHERE principal = ?1 AND key = ?2 AND status = 0",
        [STMT_IDEM_ABORT] = "DELETE FROM idempotency WHERE principal = ?1 AND key = ?2 AND status = 0",
        [STMT_IDEM_EXPIRE] = "DELETE FROM idempotency WHERE created < ?1",
};

struct sqlite_store;

/* One thread's connection; used by that thread only (and by close() once no thread uses it). */
struct sqlite_conn {
        struct sqlite_store *store;
        sqlite3 *db;
        struct sqlite_conn *prev, *next;
        sqlite3_stmt *stmts[_STMT_MAX];
};

/* A write queued for group commit; lives on the writer's stack until done is set. */
typedef int (*write_fn)(struct sqlite_conn *c, void *userdata);
struct write_req {
        write_fn fn;
        void *userdata;
        /* The audit record staged by the calling thread: inserted in the same transaction. */
        const struct cm_audit_record *audit;
        int64_t audit_seq;
        char audit_hash[65];
        int result;
        bool done;
        struct write_req *next;
};

/*
 * One per database file open in this process: the file lock that keeps other processes out, and the
 * count of committed writes (the cache version of readers: this process is the only writer).
 */
struct sqlite_file {
        dev_t dev;
        ino_t ino;
        pid_t pid; /* a forked child inherits the list, not the right to share its lock */
        int lock_fd;
        unsigned refs;
        atomic_uint_fast64_t writes;
        struct sqlite_file *next;
};

static pthread_mutex_t files_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sqlite_file *files;

struct sqlite_store {
        struct cm_store base;
        char *path;
        struct sqlite_file *file;
        pthread_key_t key;
        bool key_created;
        bool lock_created;
        bool cond_created;
        /* Guards conns, the write queue and leader. */
        pthread_mutex_t lock;
        pthread_cond_t written;
        struct sqlite_conn *conns;
        struct write_req *queue;
        struct write_req **queue_tail;
        bool leader;
};

static struct sqlite_store *to_sqlite(struct cm_store *s) {
        return (struct sqlite_store *) s;
}

/*
 * The one place SQLite result codes become negative errno. Also logs the SQLite message at debug
 * level (it never contains bound values, so no secrets).
 */
static int sql_errno(sqlite3 *db, int rc, const char *what) {
        int r, e;

        switch (rc & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                r = -ETIMEDOUT; /* locked longer than the busy timeout */
                break;
        case SQLITE_NOMEM:
                r = -ENOMEM;
                break;
        case SQLITE_READONLY:
                r = -EROFS;
                break;
        case SQLITE_FULL:
                r = -ENOSPC;
                break;
        case SQLITE_CANTOPEN:
                e = db ? sqlite3_system_errno(db) : 0;
                r = e > 0 ? -e : -ENOENT;
                break;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
                r = -EBADMSG;
                break;
        case SQLITE_PERM:
        case SQLITE_AUTH:
                r = -EACCES;
                break;
        case SQLITE_TOOBIG:
                r = -E2BIG;
                break;
        case SQLITE_MISMATCH:
        case SQLITE_RANGE:
                r = -EINVAL;
                break;
        case SQLITE_CONSTRAINT:
                if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
                        r = -EEXIST;
                else if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
                        r = -ENOENT;
                else
                        r = -EINVAL; /* NOT NULL, CHECK */
                break;
        case SQLITE_IOERR:
                e = db ? sqlite3_system_errno(db) : 0;
                r = e > 0 ? -e : -EIO;
                break;
        default:
                r = -EIO;
                break;
        }
        return log_debug_errno(r, "sqlite: %s: %s (%d): %m", what,
                               db ? sqlite3_errmsg(db) : sqlite3_errstr(rc), rc);
}

static int conn_fail(struct sqlite_conn *c, int rc, const char *what) {
        return sql_errno(c ? c->db : NULL, rc, what);
}

/* Parameters bound in order (?1, ?2, ...): BT(text or NULL), BN(text, length), BI(integer). */
struct bindv {
        enum { BIND_TEXT, BIND_TEXTN, BIND_INT } type;
        const char *s;
        size_t n;
        int64_t i;
};
#define BT(x) ((struct bindv){ .type = BIND_TEXT, .s = (x) })
#define BN(x, len) ((struct bindv){ .type = BIND_TEXTN, .s = (x), .n = (len) })
#define BI(x) ((struct bindv){ .type = BIND_INT, .i = (int64_t) (x) })
#define BINDS(...) (const struct bindv[]){ __VA_ARGS__ }, ELEMENTSOF(((const struct bindv[]){ __VA_ARGS__ }))

static void stmt_resetp(sqlite3_stmt **st) {
        if (*st) {
                (void) sqlite3_reset(*st);
                (void) sqlite3_clear_bindings(*st);
        }
}
/* Resets the (cached) statement when leaving the scope: ends its read and drops the bindings. */
#define _cleanup_stmt_ _cleanup_(stmt_resetp)

static int conn_stmt(struct sqlite_conn *c, enum stmt_id id, const struct bindv *v, size_t n,
                     sqlite3_stmt **ret) {
        sqlite3_stmt *st = c->stmts[id];
        int rc = SQLITE_OK;

        if (!st) {
                rc = sqlite3_prepare_v3(c->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
                if (rc != SQLITE_OK) {
                        int r = conn_fail(c, rc, "prepare");
                        /* Unknown table or column: the schema is not (fully) migrated. */
                        return rc == SQLITE_ERROR ? -EPROTO : r;
                }
                c->stmts[id] = st;
        }

        for (size_t i = 0; i < n && rc == SQLITE_OK; i++) {
                int idx = (int) i + 1;
                switch (v[i].type) {
                case BIND_TEXT:
                        rc = v[i].s ? sqlite3_bind_text(st, idx, v[i].s, -1, SQLITE_STATIC)
                                    : sqlite3_bind_null(st, idx);
                        break;
                case BIND_TEXTN:
                        rc = sqlite3_bind_text64(st, idx, v[i].s, v[i].n, SQLITE_STATIC, SQLITE_UTF8);
                        break;
                case BIND_INT:
                        rc = sqlite3_bind_int64(st, idx, v[i].i);
                        break;
                }
        }
        if (rc != SQLITE_OK) {
                (void) sqlite3_clear_bindings(st);
                return conn_fail(c, rc, "bind");
        }
        *ret = st;
        return 0;
}

/* One step: 1 for a row, 0 when done, negative errno on failure. */
static int stmt_step(struct sqlite_conn *c, sqlite3_stmt *st) {
        int rc = sqlite3_step(st);

        if (rc == SQLITE_ROW)
                return 1;
        if (rc == SQLITE_DONE)
                return 0;
        return conn_fail(c, rc, sqlite3_sql(st));
}

/* Steps to the end (RETURNING statements finish their work); returns 0 or negative errno. */
static int stmt_drain(struct sqlite_conn *c, sqlite3_stmt *st) {
        int r;

        while ((r = stmt_step(c, st)) > 0)
                ;
        return r;
}

/* Runs a statement that returns no rows; returns the number of rows changed. */
static int conn_run(struct sqlite_conn *c, enum stmt_id id, const struct bindv *v, size_t n) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        r = conn_stmt(c, id, v, n, &st);
        if (r < 0)
                return r;
        r = stmt_drain(c, st);
        if (r < 0)
                return r;
        return sqlite3_changes(c->db);
}

/* Runs a query returning one integer (count(*) and the like). */
static int conn_query_int(struct sqlite_conn *c, enum stmt_id id, const struct bindv *v, size_t n,
                          int64_t *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        r = conn_stmt(c, id, v, n, &st);
        if (r < 0)
                return r;
        r = stmt_step(c, st);
        if (r < 0)
                return r;
        if (r == 0)
                return -ENOENT;
        *ret = sqlite3_column_int64(st, 0);
        return 0;
}

/* Column i as a new string; NULL for SQL NULL. */
static int col_strdup(sqlite3_stmt *st, int i, char **ret) {
        const unsigned char *t;
        char *p;
        int n;

        if (sqlite3_column_type(st, i) == SQLITE_NULL) {
                *ret = NULL;
                return 0;
        }
        t = sqlite3_column_text(st, i);
        if (!t)
                return -ENOMEM;
        n = sqlite3_column_bytes(st, i);
        p = malloc((size_t) n + 1);
        if (!p)
                return -ENOMEM;
        memcpy(p, t, (size_t) n);
        p[n] = 0;
        *ret = p;
        return 0;
}

static int col_strdup_many(sqlite3_stmt *st, const int *cols, char **const *dst, size_t n) {
        for (size_t i = 0; i < n; i++) {
                int r = col_strdup(st, cols[i], dst[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

static uint64_t col_u64(sqlite3_stmt *st, int i) {
        int64_t v = sqlite3_column_int64(st, i);
        return v > 0 ? (uint64_t) v : 0;
}

static int row_env(sqlite3_stmt *st, struct cm_environment *ret) {
        _cleanup_(cm_environment_done) struct cm_environment e = {};
        int r;

        r = col_strdup_many(st, (const int[]){ 0, 1 }, (char **const[]){ &e.name, &e.labels_json }, 2);
        if (r < 0)
                return r;
        e.created_usec = col_u64(st, 2);
        *ret = e;
        e = (struct cm_environment){};
        return 0;
}

static int row_apikey(sqlite3_stmt *st, struct cm_apikey *ret) {
        _cleanup_(cm_apikey_done) struct cm_apikey k = {};
        int r;

        r = col_strdup_many(st, (const int[]){ 0, 1, 2, 3, 6 },
                            (char **const[]){ &k.id, &k.name, &k.hash, &k.role, &k.owner }, 5);
        if (r < 0)
                return r;
        k.created_usec = col_u64(st, 4);
        k.expires_usec = col_u64(st, 5);
        k.revoked = sqlite3_column_int64(st, 7) != 0;
        k.last_used_usec = col_u64(st, 8);
        *ret = k;
        k = (struct cm_apikey){};
        return 0;
}

/* Reads RB_COLUMNS. */
static int row_rolebinding(sqlite3_stmt *st, void *elem) {
        struct cm_rolebinding b = {};
        int r;

        r = col_strdup_many(
                st, (const int[]){ 0, 1, 2, 3, 4, 6 },
                (char **const[]){ &b.id, &b.env, &b.subject_kind, &b.subject, &b.role, &b.created_by }, 6);
        if (r < 0) {
                cm_rolebinding_done(&b);
                return r;
        }
        b.created_usec = col_u64(st, 5);
        *(struct cm_rolebinding *) elem = b;
        return 0;
}

/* Reads AUDIT_COLUMNS. */
static int row_audit(sqlite3_stmt *st, void *elem) {
        struct cm_audit_record a = {};
        int r;

        r = col_strdup_many(st, (const int[]){ 2, 3, 4, 5, 6, 7, 9, 10 },
                            (char **const[]){ &a.principal, &a.source, &a.request_id, &a.action, &a.resource,
                                              &a.outcome, &a.prev_hash, &a.hash },
                            8);
        if (r < 0) {
                cm_audit_record_done(&a);
                return r;
        }
        a.seq = sqlite3_column_int64(st, 0);
        a.ts_usec = col_u64(st, 1);
        a.status = (int) sqlite3_column_int64(st, 8);
        *(struct cm_audit_record *) elem = a;
        return 0;
}

/* Reads CLUSTER_COLUMNS. */
static int row_cluster(sqlite3_stmt *st, struct cm_cluster *ret) {
        _cleanup_(cm_cluster_done) struct cm_cluster c = {};
        int r;

        r = col_strdup_many(st, (const int[]){ 0, 1, 2, 3, 4, 5, 9, 10 },
                            (char **const[]){ &c.id, &c.env, &c.name, &c.engine, &c.labels_json,
                                              &c.spec_json, &c.conditions_json, &c.status_json },
                            8);
        if (r < 0)
                return r;
        c.generation = sqlite3_column_int64(st, 6);
        c.resource_version = sqlite3_column_int64(st, 7);
        if (cm_phase_from_string((const char *) sqlite3_column_text(st, 8), &c.phase) < 0)
                return log_debug_errno(-EBADMSG, "sqlite: cluster '%s' has an unknown phase: %m",
                                       strna(c.id));
        c.observed_generation = sqlite3_column_int64(st, 11);
        c.created_usec = col_u64(st, 12);
        c.updated_usec = col_u64(st, 13);
        r = col_strdup(st, 14, &c.health_json);
        if (r < 0)
                return r;
        *ret = c;
        c = (struct cm_cluster){};
        return 0;
}

/* Reads OP_COLUMNS. */
static int row_op(sqlite3_stmt *st, struct cm_operation *ret) {
        _cleanup_(cm_operation_done) struct cm_operation o = {};
        int r;

        r = col_strdup_many(st, (const int[]){ 1, 2, 3, 4, 10, 11, 15, 19, 20, 21 },
                            (char **const[]){ &o.id, &o.env, &o.cluster_id, &o.cluster_name, &o.error,
                                              &o.lease_owner, &o.requested_by, &o.params_json,
                                              &o.result_json, &o.policy_json },
                            10);
        if (r < 0)
                return r;
        o.seq = sqlite3_column_int64(st, 0);
        if (cm_op_type_from_string((const char *) sqlite3_column_text(st, 5), &o.type) < 0 ||
            cm_op_state_from_string((const char *) sqlite3_column_text(st, 6), &o.state) < 0)
                return log_debug_errno(-EBADMSG, "sqlite: operation '%s' has an unknown type or state: %m",
                                       strna(o.id));
        o.generation = sqlite3_column_int64(st, 7);
        o.attempts = (unsigned) MIN(col_u64(st, 8), (uint64_t) UINT_MAX);
        o.max_attempts = (unsigned) MIN(col_u64(st, 9), (uint64_t) UINT_MAX);
        o.lease_expires_usec = col_u64(st, 12);
        o.next_run_usec = col_u64(st, 13);
        o.cancel_requested = sqlite3_column_int64(st, 14) != 0;
        o.created_usec = col_u64(st, 16);
        o.started_usec = col_u64(st, 17);
        o.finished_usec = col_u64(st, 18);
        *ret = o;
        o = (struct cm_operation){};
        return 0;
}

static int row_env_v(sqlite3_stmt *st, void *elem) {
        return row_env(st, elem);
}
static void env_done_v(void *elem) {
        cm_environment_done(elem);
}
static int row_cluster_v(sqlite3_stmt *st, void *elem) {
        return row_cluster(st, elem);
}
static void cluster_done_v(void *elem) {
        cm_cluster_done(elem);
}
static int row_op_v(sqlite3_stmt *st, void *elem) {
        return row_op(st, elem);
}
static void op_done_v(void *elem) {
        cm_operation_done(elem);
}

/* Reads every row of st into a new array of records of the given size (NULL when there are none). */
static int collect_rows(struct sqlite_conn *c, sqlite3_stmt *st, size_t size,
                        int (*row)(sqlite3_stmt *, void *), void (*done)(void *), void **ret,
                        size_t *ret_n) {
        char *a = NULL;
        size_t n = 0, alloc = 0;
        int r;

        for (;;) {
                r = stmt_step(c, st);
                if (r <= 0)
                        break;
                if (n == alloc) {
                        size_t na = alloc ? alloc * 2 : 16;
                        char *p = reallocarray(a, na, size);
                        if (!p) {
                                r = -ENOMEM;
                                break;
                        }
                        a = p;
                        alloc = na;
                }
                memset(a + n * size, 0, size);
                r = row(st, a + n * size);
                if (r < 0)
                        break;
                n++;
        }
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        done(a + i * size);
                free(a);
                return r;
        }
        *ret = a;
        *ret_n = n;
        return 0;
}

static void conn_free(struct sqlite_conn *c) {
        if (!c)
                return;
        for (size_t i = 0; i < _STMT_MAX; i++)
                (void) sqlite3_finalize(c->stmts[i]);
        (void) sqlite3_close_v2(c->db);
        free(c);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(struct sqlite_conn *, conn_free);

/* Thread exit: the thread's connection goes away with it. */
static void conn_thread_exit(void *p) {
        struct sqlite_conn *c = p;
        struct sqlite_store *s = c->store;

        pthread_mutex_lock(&s->lock);
        if (c->prev)
                c->prev->next = c->next;
        else
                s->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        pthread_mutex_unlock(&s->lock);
        conn_free(c);
}

static int conn_exec(struct sqlite_conn *c, const char *sql, const char *what) {
        int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
        return rc == SQLITE_OK ? 0 : conn_fail(c, rc, what);
}

static int conn_set_wal(struct sqlite_conn *c) {
        sqlite3_stmt *st = NULL;
        const char *mode;
        int rc, r = 0;

        rc = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
        if (rc != SQLITE_OK)
                return conn_fail(c, rc, "journal_mode");
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                r = conn_fail(c, rc, "journal_mode");
        else {
                mode = (const char *) sqlite3_column_text(st, 0);
                if (!mode || strcasecmp(mode, "wal") != 0)
                        r = log_debug_errno(-EOPNOTSUPP, "sqlite: '%s' cannot use WAL mode: %m",
                                            c->store->path);
        }
        (void) sqlite3_finalize(st);
        return r;
}

static int conn_open(struct sqlite_store *s, struct sqlite_conn **ret) {
        _cleanup_(conn_freep) struct sqlite_conn *c = NULL;
        int rc, r;

        c = new0(struct sqlite_conn, 1);
        if (!c)
                return -ENOMEM;
        c->store = s;

        rc = sqlite3_open_v2(s->path, &c->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK) {
                if (!c->db)
                        return -ENOMEM;
                return log_debug_errno(conn_fail(c, rc, "open"), "sqlite: cannot open '%s': %m", s->path);
        }
        (void) sqlite3_extended_result_codes(c->db, 1);
        (void) sqlite3_busy_timeout(c->db, SQLITE_BUSY_TIMEOUT_MSEC);
        (void) sqlite3_db_config(c->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
        /*
         * The schema is trusted: it is this service's own (its file is 0600 under the data directory),
         * no application function with side effects is registered and extensions stay off. The event
         * triggers need it: SQLite 3.40 does not mark its JSON functions innocuous.
         */
        (void) sqlite3_db_config(c->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 1, NULL);

        /* WAL: readers never block the writer; FULL: a commit is on disk before it returns. */
        r = conn_set_wal(c);
        if (r < 0)
                return r;
        r = conn_exec(c, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;", "pragma");
        if (r < 0)
                return r;

        *ret = TAKE_PTR(c);
        return 0;
}

/* The calling thread's connection, opened on first use. */
static int store_conn(struct sqlite_store *s, struct sqlite_conn **ret) {
        struct sqlite_conn *c = NULL;
        int r;

        c = pthread_getspecific(s->key);
        if (_likely_(c)) {
                *ret = c;
                return 0;
        }

        r = conn_open(s, &c);
        if (r < 0)
                return r;
        if (!c)
                return -EIO;
        r = pthread_setspecific(s->key, c);
        if (r != 0) {
                conn_free(c);
                return -r;
        }
        pthread_mutex_lock(&s->lock);
        c->next = s->conns;
        if (s->conns)
                s->conns->prev = c;
        s->conns = c;
        pthread_mutex_unlock(&s->lock);
        *ret = c;
        return 0;
}

static void conn_rollback(struct sqlite_conn *c) {
        if (!sqlite3_get_autocommit(c->db))
                (void) conn_run(c, STMT_ROLLBACK, NULL, 0);
}

/*
 * One attempt at a batch: BEGIN IMMEDIATE, each write in its own savepoint (a failed write is rolled
 * back alone; a single write needs none), COMMIT. Returns 0 when every request's result is final, or
 * a negative errno that applies to the whole batch (nothing was committed).
 */
/* Appends a to the chain on c (inside a transaction): seq and hash follow the last record. */
static int audit_insert(struct sqlite_conn *c, const struct cm_audit_record *a, int64_t *ret_seq,
                        char ret_hash[static 65]) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        struct cm_audit_record rec = *a;
        char prev[65];
        int r;

        (void) cm_strlcpy(prev, "0000000000000000000000000000000000000000000000000000000000000000",
                          sizeof(prev));
        rec.seq = 1;
        r = conn_stmt(c, STMT_AUDIT_LAST, NULL, 0, &st);
        if (r < 0)
                return r;
        r = stmt_step(c, st);
        if (r < 0)
                return r;
        if (r > 0) {
                const char *h = (const char *) sqlite3_column_text(st, 1);

                rec.seq = sqlite3_column_int64(st, 0) + 1;
                if (!h || strlen(h) != 64)
                        return -EBADMSG;
                memcpy(prev, h, 65);
        }
        r = stmt_drain(c, st);
        if (r < 0)
                return r;
        cm_audit_hash(&rec, prev, ret_hash);
        r = conn_run(c, STMT_AUDIT_INSERT,
                     BINDS(BI(rec.seq), BI(rec.ts_usec), BT(rec.principal ?: "anonymous"),
                           BT(rec.source ?: ""), BT(rec.request_id ?: ""), BT(rec.action ?: ""),
                           BT(rec.resource ?: ""), BT(rec.outcome ?: ""), BI(rec.status), BT(prev),
                           BT(ret_hash)));
        if (r < 0)
                return r;
        *ret_seq = rec.seq;
        return 0;
}

static int batch_attempt(struct sqlite_conn *c, struct write_req *head) {
        bool single = !head->next;
        int r;

        r = conn_run(c, STMT_BEGIN, NULL, 0);
        if (r < 0)
                return r;

        for (struct write_req *w = head; w; w = w->next) {
                if (!single) {
                        r = conn_run(c, STMT_SAVEPOINT, NULL, 0);
                        if (r < 0)
                                goto fail;
                }
                w->result = w->fn(c, w->userdata);
                /* The record of the change, in its transaction: both or neither. */
                if (w->result >= 0 && w->audit) {
                        r = audit_insert(c, w->audit, &w->audit_seq, w->audit_hash);
                        if (r < 0)
                                w->result = r;
                }
                if (w->result >= 0) {
                        if (!single) {
                                r = conn_run(c, STMT_RELEASE, NULL, 0);
                                if (r < 0)
                                        goto fail;
                        }
                        continue;
                }
                /* Locked out, or SQLite rolled the whole transaction back (I/O error, disk full). */
                if (w->result == -ETIMEDOUT || sqlite3_get_autocommit(c->db)) {
                        r = w->result;
                        goto fail;
                }
                if (single) {
                        conn_rollback(c);
                        return 0;
                }
                r = conn_run(c, STMT_ROLLBACK_TO, NULL, 0);
                if (r >= 0)
                        r = conn_run(c, STMT_RELEASE, NULL, 0);
                if (r < 0)
                        goto fail;
        }

        r = conn_run(c, STMT_COMMIT, NULL, 0);
        if (r < 0)
                goto fail;
        return 0;

fail:
        conn_rollback(c);
        return r;
}

static void batch_run(struct sqlite_conn *c, struct write_req *head) {
        int r;

        for (unsigned attempt = 1;; attempt++) {
                r = batch_attempt(c, head);
                if (r >= 0)
                        return;
                if (r != -ETIMEDOUT || attempt >= SQLITE_TX_ATTEMPTS)
                        break;
                log_debug("sqlite: database locked, retrying the transaction (attempt %u)", attempt + 1);
        }
        for (struct write_req *w = head; w; w = w->next)
                w->result = r;
}

/*
 * Runs fn(connection, userdata) in a write transaction and returns its result once that transaction
 * is committed (or rolled back: fn's changes are undone when it fails). fn may run more than once
 * (the transaction is retried when the database stays locked), on another thread's connection, so it
 * must reset its outputs first and touch nothing but the database and its userdata.
 */
static int store_write(struct sqlite_store *s, write_fn fn, void *userdata) {
        struct cm_audit_record *staged = cm_store_audit_staged();
        struct write_req req = { .fn = fn, .userdata = userdata, .audit = staged };
        struct sqlite_conn *c = NULL;
        int r;

        r = store_conn(s, &c);
        if (r < 0)
                return r;

        pthread_mutex_lock(&s->lock);
        /* req lives on this stack until it is done: the queue holds it only while this call waits. */
        *s->queue_tail = &req;
        // cppcheck-suppress autoVariables
        s->queue_tail = &req.next;
        while (!req.done) {
                struct write_req *head, *last;
                size_t n = 1;

                if (s->leader) {
                        pthread_cond_wait(&s->written, &s->lock);
                        continue;
                }

                /* Lead: take up to SQLITE_BATCH_MAX queued writes (ours among them or not). */
                s->leader = true;
                head = last = s->queue;
                while (last->next && n < SQLITE_BATCH_MAX) {
                        last = last->next;
                        n++;
                }
                s->queue = last->next;
                if (!s->queue)
                        s->queue_tail = &s->queue;
                last->next = NULL;
                pthread_mutex_unlock(&s->lock);

                batch_run(c, head);

                pthread_mutex_lock(&s->lock);
                for (struct write_req *w = head, *next; w; w = next) {
                        next = w->next;
                        w->done = true;
                }
                s->leader = false;
                pthread_cond_broadcast(&s->written);
        }
        pthread_mutex_unlock(&s->lock);
        if (req.result >= 0)
                atomic_fetch_add(&s->file->writes, 1);
        if (req.result >= 0 && req.audit)
                cm_store_audit_committed(staged, req.audit_seq, req.audit_hash);
        return req.result;
}

struct stmt_write {
        enum stmt_id id;
        const struct bindv *v;
        size_t n;
        int none;
};

static int stmt_write_tx(struct sqlite_conn *c, void *userdata) {
        const struct stmt_write *w = userdata;
        int r = conn_run(c, w->id, w->v, w->n);

        if (r < 0)
                return r;
        return r == 0 ? w->none : 0;
}

/* Runs statement id with v in a write transaction; none (or 0) when it changed no row. */
static int write_stmt(struct cm_store *base, enum stmt_id id, const struct bindv *v, size_t n, int none) {
        struct stmt_write w = { .id = id, .v = v, .n = n, .none = none };

        return store_write(to_sqlite(base), stmt_write_tx, &w);
}

/*
 * Locks the database for this process: `<path>-lock`, flock()ed exclusively. Other store objects of
 * this process on the same file share the lock; another process gets -EBUSY.
 */
static int file_acquire(const char *path, struct sqlite_file **ret) {
        _cleanup_free_ char *lock_path = NULL;
        struct sqlite_file *f;
        struct stat st;
        int fd, r;

        if (asprintf(&lock_path, "%s-lock", path) < 0)
                return -ENOMEM;
        fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &st) < 0) {
                r = negative_errno();
                close(fd);
                return r;
        }
        pthread_mutex_lock(&files_lock);
        for (f = files; f; f = f->next)
                if (f->dev == st.st_dev && f->ino == st.st_ino && f->pid == getpid())
                        break;
        if (f) {
                /* flock() locks per open file: a second lock here would conflict with our own. */
                close(fd);
                f->refs++;
                pthread_mutex_unlock(&files_lock);
                *ret = f;
                return 0;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                r = errno == EWOULDBLOCK ? -EBUSY : negative_errno();
                pthread_mutex_unlock(&files_lock);
                close(fd);
                return log_debug_errno(r, "sqlite: '%s' is locked by another process: %m", lock_path);
        }
        f = new0(struct sqlite_file, 1);
        if (!f) {
                pthread_mutex_unlock(&files_lock);
                close(fd);
                return -ENOMEM;
        }
        f->dev = st.st_dev;
        f->ino = st.st_ino;
        f->pid = getpid();
        f->lock_fd = fd;
        f->refs = 1;
        f->next = files;
        files = f;
        pthread_mutex_unlock(&files_lock);
        *ret = f;
        return 0;
}

static void file_release(struct sqlite_file *f) {
        if (!f)
                return;
        pthread_mutex_lock(&files_lock);
        if (--f->refs == 0) {
                for (struct sqlite_file **p = &files; *p; p = &(*p)->next)
                        if (*p == f) {
                                *p = f->next;
                                break;
                        }
                close(f->lock_fd);
                free(f);
        }
        pthread_mutex_unlock(&files_lock);
}

static void sqlite_store_free(struct sqlite_store *s) {
        struct sqlite_conn *c = NULL;

        if (!s)
                return;
        if (s->key_created)
                (void) pthread_key_delete(s->key);
        if (s->lock_created)
                pthread_mutex_lock(&s->lock);
        c = TAKE_PTR(s->conns);
        if (s->lock_created)
                pthread_mutex_unlock(&s->lock);
        while (c) {
                struct sqlite_conn *next = c->next;
                conn_free(c);
                c = next;
        }
        if (s->cond_created)
                (void) pthread_cond_destroy(&s->written);
        if (s->lock_created)
                (void) pthread_mutex_destroy(&s->lock);
        /* Connections are closed: now another process may open the database. */
        file_release(s->file);
        free(s->path);
        free(s);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(struct sqlite_store *, sqlite_store_free);

/* "sqlite:///abs/path.db" → "/abs/path.db", "sqlite:rel/path.db" → "rel/path.db", else the path. */
static int parse_url(const char *url, char **ret) {
        const char *p = url;
        char *d;

        if (strneq(p, "sqlite:", 7)) {
                p += 7;
                if (strneq(p, "//", 2)) {
                        p += 2;
                        if (p[0] != '/')
                                return -EINVAL; /* sqlite://host/... */
                }
        }
        /* ":memory:" and friends would give every thread its own database. */
        if (isempty(p) || p[0] == ':')
                return -EINVAL;
        d = strdup(p);
        if (!d)
                return -ENOMEM;
        *ret = d;
        return 0;
}

/*
 * Process-wide SQLite settings, once, before any connection: no memory statistics (they take a global
 * mutex on every allocation, which every request thread would contend on).
 */
static void sqlite_global_init(void) {
        (void) sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
        (void) sqlite3_initialize();
}

static int sqlite_open(const char *url, struct cm_store **ret) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        _cleanup_(sqlite_store_freep) struct sqlite_store *s = NULL;
        struct sqlite_conn *c = NULL;
        int r;

        (void) pthread_once(&once, sqlite_global_init);
        if (!url || !ret)
                return -EINVAL;
        if (sqlite3_threadsafe() == 0)
                return log_debug_errno(-EOPNOTSUPP, "sqlite: library built without thread support: %m");

        s = new0(struct sqlite_store, 1);
        if (!s)
                return -ENOMEM;
        s->base.ops = &cm_store_sqlite_ops;
        s->queue_tail = &s->queue;
        r = parse_url(url, &s->path);
        if (r < 0)
                return log_debug_errno(r, "sqlite: invalid database URL: %m");
        r = file_acquire(s->path, &s->file);
        if (r < 0)
                return r;
        r = pthread_mutex_init(&s->lock, NULL);
        if (r != 0)
                return -r;
        s->lock_created = true;
        r = pthread_cond_init(&s->written, NULL);
        if (r != 0)
                return -r;
        s->cond_created = true;
        r = pthread_key_create(&s->key, conn_thread_exit);
        if (r != 0)
                return -r;
        s->key_created = true;

        /* Open the first connection now, so that a bad path fails here and not at first use. */
        r = store_conn(s, &c);
        if (r < 0)
                return r;

        *ret = &TAKE_PTR(s)->base;
        return 0;
}

static void sqlite_close(struct cm_store *base) {
        sqlite_store_free(to_sqlite(base));
}

struct migrate_ctx {
        const struct sqlite_migration *m;
        bool applied;
};

static int migrate_tx(struct sqlite_conn *c, void *userdata) {
        struct migrate_ctx *ctx = userdata;
        int64_t one;
        int r;

        ctx->applied = false;
        r = conn_exec(c,
                      "CREATE TABLE IF NOT EXISTS schema_migrations ("
                      "version INTEGER PRIMARY KEY, applied INTEGER NOT NULL)",
                      "migrate");
        if (r < 0)
                return r;
        r = conn_query_int(c, STMT_MIGRATION_GET, BINDS(BI(ctx->m->version)), &one);
        if (r >= 0)
                return 0; /* already applied (by us or by another process) */
        if (r != -ENOENT)
                return r;
        r = conn_exec(c, ctx->m->sql, "migrate");
        if (r < 0)
                return r;
        r = conn_run(c, STMT_MIGRATION_PUT, BINDS(BI(ctx->m->version), BI(cm_now_usec())));
        if (r < 0)
                return r;
        ctx->applied = true;
        return 0;
}

static int sqlite_migrate(struct cm_store *base) {
        int applied = 0;

        for (size_t i = 0; i < ELEMENTSOF(sqlite_migrations); i++) {
                struct migrate_ctx ctx = { .m = &sqlite_migrations[i] };
                int r = store_write(to_sqlite(base), migrate_tx, &ctx);
                if (r < 0)
                        return log_debug_errno(r, "sqlite: migration %" PRIi64 " failed: %m",
                                               sqlite_migrations[i].version);
                applied += ctx.applied;
        }
        return applied;
}

static int sqlite_ping(struct cm_store *base) {
        struct sqlite_conn *c = NULL;
        int64_t n;
        int r;

        r = store_conn(to_sqlite(base), &c);
        if (r < 0)
                return r;
        r = conn_query_int(c, STMT_PING_TABLE, NULL, 0, &n);
        if (r < 0)
                return r;
        if (n == 0)
                return -EPROTO;
        r = conn_query_int(c, STMT_PING_VERSIONS, BINDS(BI(ELEMENTSOF(sqlite_migrations))), &n);
        if (r < 0)
                return r;
        return n == (int64_t) ELEMENTSOF(sqlite_migrations) ? 0 : -EPROTO;
}

/* A read on the calling thread's connection: prepares, binds and hands the statement over. */
static int store_read(struct cm_store *base, enum stmt_id id, const struct bindv *v, size_t n,
                      struct sqlite_conn **ret_conn, sqlite3_stmt **ret) {
        struct sqlite_conn *c = NULL;
        int r;

        r = store_conn(to_sqlite(base), &c);
        if (r < 0)
                return r;
        r = conn_stmt(c, id, v, n, ret);
        if (r < 0)
                return r;
        *ret_conn = c;
        return 0;
}

static int row_apikey_v(sqlite3_stmt *st, void *elem) {
        return row_apikey(st, elem);
}

static void apikey_done_v(void *elem) {
        cm_apikey_done(elem);
}

/* Reads every row of statement id into a new array of records of the given size (NULL when none). */
static int read_all(struct cm_store *base, enum stmt_id id, const struct bindv *v, size_t n, size_t size,
                    int (*row)(sqlite3_stmt *st, void *elem), void (*done)(void *elem), void **ret,
                    size_t *ret_n) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        struct sqlite_conn *c = NULL;
        int r;

        r = store_read(base, id, v, n, &c, &st);
        if (r < 0)
                return r;
        return collect_rows(c, st, size, row, done, ret, ret_n);
}

/* Reads the one row of statement id into ret through row; -ENOENT when there is none. */
static int read_one(struct cm_store *base, enum stmt_id id, const struct bindv *v, size_t n,
                    int (*row)(sqlite3_stmt *st, void *elem), void *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        struct sqlite_conn *c = NULL;
        int r;

        r = store_read(base, id, v, n, &c, &st);
        if (r < 0)
                return r;
        r = stmt_step(c, st);
        if (r <= 0)
                return r < 0 ? r : -ENOENT;
        return row(st, ret);
}

static int read_int(struct cm_store *base, enum stmt_id id, const struct bindv *v, size_t n, uint64_t *ret) {
        struct sqlite_conn *c = NULL;
        int64_t x;
        int r;

        r = store_conn(to_sqlite(base), &c);
        if (r < 0)
                return r;
        r = conn_query_int(c, id, v, n, &x);
        if (r < 0)
                return r;
        *ret = x > 0 ? (uint64_t) x : 0;
        return 0;
}

/* ---- environments ---- */

struct env_ctx {
        const struct cm_environment *e;
        const char *name;
};

static int env_create_tx(struct sqlite_conn *c, void *userdata) {
        const struct cm_environment *e = ((struct env_ctx *) userdata)->e;
        return conn_run(c, STMT_ENV_INSERT, BINDS(BT(e->name), BT(e->labels_json), BI(e->created_usec)));
}

static int sqlite_env_create(struct cm_store *base, const struct cm_environment *e) {
        struct env_ctx ctx = { .e = e };
        int r;

        if (!e || isempty(e->name))
                return -EINVAL;
        r = store_write(to_sqlite(base), env_create_tx, &ctx);
        return r < 0 ? r : 0;
}

static int sqlite_env_get(struct cm_store *base, const char *name, struct cm_environment *ret) {
        if (!name || !ret)
                return -EINVAL;
        return read_one(base, STMT_ENV_GET, BINDS(BT(name)), row_env_v, ret);
}

static int sqlite_env_list(struct cm_store *base, const char *after, unsigned limit,
                           struct cm_environment **ret, size_t *ret_n) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        struct sqlite_conn *c = NULL;
        void *a;
        int r;

        if (!ret || !ret_n)
                return -EINVAL;
        r = store_read(base, STMT_ENV_LIST, BINDS(BT(after ?: ""), BI(limit)), &c, &st);
        if (r < 0)
                return r;
        r = collect_rows(c, st, sizeof(struct cm_environment), row_env_v, env_done_v, &a, ret_n);
        if (r < 0)
                return r;
        *ret = a;
        return 0;
}

static int env_delete_tx(struct sqlite_conn *c, void *userdata) {
        const char *name = ((struct env_ctx *) userdata)->name;
        int64_t one;
        int r;

        r = conn_query_int(c, STMT_ENV_HAS_CLUSTERS, BINDS(BT(name)), &one);
        if (r >= 0)
                return -ENOTEMPTY;
        if (r != -ENOENT)
                return r;
        r = conn_run(c, STMT_ENV_DELETE, BINDS(BT(name)));
        if (r < 0)
                return r;
        if (r == 0)
                return -ENOENT;
        /* its role bindings go with it: a new environment of the same name starts with none */
        r = conn_run(c, STMT_RB_DELETE_ENV, BINDS(BT(name)));
        return r < 0 ? r : 0;
}

static int sqlite_env_delete(struct cm_store *base, const char *name) {
        struct env_ctx ctx = { .name = name };

        if (!name)
                return -EINVAL;
        return store_write(to_sqlite(base), env_delete_tx, &ctx);
}

/* ---- policy settings of an environment ---- */

struct policy_ctx {
        const char *env;
        const char *kind; /* NULL: the policy settings; else env_settings of this kind */
        const char *settings;
        int64_t expected;
        uint64_t now;
        char *got;
        int64_t version;
};

/* The settings row (got NULL, version 0 when none); -ENOENT when the environment does not exist. */
static int policy_read(struct sqlite_conn *c, struct policy_ctx *ctx) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int64_t one;
        int r;

        r = conn_query_int(c, STMT_ENV_EXISTS, BINDS(BT(ctx->env)), &one);
        if (r < 0)
                return r;
        if (ctx->kind)
                r = conn_stmt(c, STMT_SETTINGS_GET, BINDS(BT(ctx->env), BT(ctx->kind)), &st);
        else
                r = conn_stmt(c, STMT_POLICY_GET, BINDS(BT(ctx->env)), &st);
        if (r < 0)
                return r;
        r = stmt_step(c, st);
        if (r < 0)
                return r;
        ctx->got = NULL;
        ctx->version = 0;
        if (r == 0)
                return 0;
        r = col_strdup(st, 0, &ctx->got);
        if (r < 0)
                return r;
        ctx->version = sqlite3_column_int64(st, 1);
        return stmt_drain(c, st);
}

static int settings_get(struct cm_store *base, const char *env, const char *kind, char **ret_settings,
                        int64_t *ret_version) {
        struct policy_ctx ctx = { .env = env, .kind = kind };
        struct sqlite_conn *c = NULL;
        int r;

        if (!env || !ret_settings)
                return -EINVAL;
        r = store_conn(to_sqlite(base), &c);
        if (r < 0)
                return r;
        r = policy_read(c, &ctx);
        if (r < 0)
                return r;
        *ret_settings = ctx.got;
        if (ret_version)
                *ret_version = ctx.version;
        return 0;
}

static int sqlite_env_policy_get(struct cm_store *base, const char *env, char **ret_settings,
                                 int64_t *ret_version) {
        return settings_get(base, env, NULL, ret_settings, ret_version);
}

static int sqlite_env_settings_get(struct cm_store *base, const char *env, const char *kind,
                                   char **ret_settings, int64_t *ret_version) {
        if (!kind)
                return -EINVAL;
        return settings_get(base, env, kind, ret_settings, ret_version);
}

static int policy_put_tx(struct sqlite_conn *c, void *userdata) {
        struct policy_ctx *ctx = userdata;
        int64_t expected = ctx->expected;
        int r;

        r = policy_read(c, ctx);
        free(ctx->got);
        ctx->got = NULL;
        if (r < 0)
                return r;
        if (expected >= 0 && expected != ctx->version)
                return -ESTALE;
        if (ctx->kind)
                r = conn_run(c, STMT_SETTINGS_PUT,
                             BINDS(BT(ctx->env), BT(ctx->kind), BT(ctx->settings), BI(ctx->now)));
        else
                r = conn_run(c, STMT_POLICY_PUT, BINDS(BT(ctx->env), BT(ctx->settings), BI(ctx->now)));
        if (r < 0)
                return r;
        ctx->version++;
        return 0;
}

static int settings_put(struct cm_store *base, const char *env, const char *kind, const char *settings,
                        int64_t expected_version, uint64_t now, int64_t *ret_version) {
        struct policy_ctx ctx = {
                .env = env, .kind = kind, .settings = settings, .expected = expected_version, .now = now
        };
        int r;

        if (!env || !settings)
                return -EINVAL;
        r = store_write(to_sqlite(base), policy_put_tx, &ctx);
        if (r < 0)
                return r;
        if (ret_version)
                *ret_version = ctx.version;
        return 0;
}

static int sqlite_env_policy_put(struct cm_store *base, const char *env, const char *settings,
                                 int64_t expected_version, uint64_t now, int64_t *ret_version) {
        return settings_put(base, env, NULL, settings, expected_version, now, ret_version);
}

static int sqlite_env_settings_put(struct cm_store *base, const char *env, const char *kind,
                                   const char *settings, int64_t expected_version, uint64_t now,
                                   int64_t *ret_version) {
        if (!kind)
                return -EINVAL;
        return settings_put(base, env, kind, settings, expected_version, now, ret_version);
}

/* ---- events and webhooks ---- */

static int row_event(sqlite3_stmt *st, void *elem) {
        _cleanup_(cm_event_done) struct cm_event e = {};
        int r;

        r = col_strdup_many(st, (const int[]){ 2, 3, 4, 5, 6 },
                            (char **const[]){ &e.env, &e.cluster, &e.cluster_id, &e.type, &e.data_json }, 5);
        if (r < 0)
                return r;
        e.seq = sqlite3_column_int64(st, 0);
        e.ts_usec = col_u64(st, 1);
        *(struct cm_event *) elem = e;
        e = (struct cm_event){};
        return 0;
}
static void event_done_v(void *elem) {
        cm_event_done(elem);
}

static int row_webhook(sqlite3_stmt *st, void *elem) {
        _cleanup_(cm_webhook_done) struct cm_webhook w = {};
        int r;

        r = col_strdup_many(st, (const int[]){ 0, 1, 2, 3, 4, 5 },
                            (char **const[]){ &w.id, &w.env, &w.name, &w.url, &w.secret, &w.events_json },
                            6);
        if (r < 0)
                return r;
        w.cursor = sqlite3_column_int64(st, 6);
        w.created_usec = col_u64(st, 7);
        *(struct cm_webhook *) elem = w;
        w = (struct cm_webhook){};
        return 0;
}
static void webhook_done_v(void *elem) {
        cm_webhook_done(elem);
}

static int row_delivery(sqlite3_stmt *st, void *elem) {
        _cleanup_(cm_webhook_delivery_done) struct cm_webhook_delivery d = {};
        int r;

        r = col_strdup_many(st, (const int[]){ 1, 4, 7, 8 },
                            (char **const[]){ &d.webhook_id, &d.event_type, &d.outcome, &d.error }, 4);
        if (r < 0)
                return r;
        d.seq = sqlite3_column_int64(st, 0);
        d.ts_usec = col_u64(st, 2);
        d.event_seq = sqlite3_column_int64(st, 3);
        d.attempt = (unsigned) sqlite3_column_int64(st, 5);
        d.status_code = sqlite3_column_int(st, 6);
        d.duration_usec = col_u64(st, 9);
        *(struct cm_webhook_delivery *) elem = d;
        d = (struct cm_webhook_delivery){};
        return 0;
}
static void delivery_done_v(void *elem) {
        cm_webhook_delivery_done(elem);
}

static int sqlite_event_list(struct cm_store *base, const char *env, const char *cluster, int64_t after,
                             unsigned limit, struct cm_event **ret, size_t *ret_n) {
        if (!ret || !ret_n)
                return -EINVAL;
        return read_all(base, STMT_EVENT_LIST, BINDS(BI(after), BT(env), BT(cluster), BI(limit)),
                        sizeof(struct cm_event), row_event, event_done_v, (void **) ret, ret_n);
}

static int sqlite_event_history(struct cm_store *base, const char *cluster_id, const char *condition,
                                int64_t before, uint64_t since_usec, unsigned limit, struct cm_event **ret,
                                size_t *ret_n) {
        if (!cluster_id || !ret || !ret_n)
                return -EINVAL;
        return read_all(base, STMT_EVENT_HISTORY,
                        BINDS(BT(cluster_id), BI(before > 0 ? before : INT64_MAX),
                              BI(MIN(since_usec, INT64_MAX)), BT(condition), BI(limit)),
                        sizeof(struct cm_event), row_event, event_done_v, (void **) ret, ret_n);
}

static int sqlite_event_last(struct cm_store *base, int64_t *ret) {
        uint64_t v;
        int r;

        if (!ret)
                return -EINVAL;
        r = read_int(base, STMT_EVENT_LAST, NULL, 0, &v);
        if (r < 0)
                return r;
        *ret = (int64_t) v;
        return 0;
}

static int sqlite_event_prune(struct cm_store *base, uint64_t before_usec) {
        return write_stmt(base, STMT_EVENT_PRUNE, BINDS(BI(MIN(before_usec, INT64_MAX))), 0);
}

struct webhook_create_ctx {
        const struct cm_webhook *w;
        int64_t cursor;
};

static int webhook_create_tx(struct sqlite_conn *c, void *userdata) {
        struct webhook_create_ctx *ctx = userdata;
        const struct cm_webhook *w = ctx->w;
        int64_t one;
        int r;

        r = conn_query_int(c, STMT_ENV_EXISTS, BINDS(BT(w->env)), &one);
        if (r < 0)
                return r;
        return conn_query_int(c, STMT_WEBHOOK_INSERT,
                              BINDS(BT(w->id), BT(w->env), BT(w->name), BT(w->url), BT(w->secret),
                                    BT(w->events_json ?: "[]"), BI(w->created_usec)),
                              &ctx->cursor);
}

static int sqlite_webhook_create(struct cm_store *base, const struct cm_webhook *w, int64_t *ret_cursor) {
        struct webhook_create_ctx ctx = { .w = w };
        int r;

        if (!w || !w->id || !w->env || !w->name || !w->url || !w->secret)
                return -EINVAL;
        r = store_write(to_sqlite(base), webhook_create_tx, &ctx);
        if (r < 0)
                return r;
        if (ret_cursor)
                *ret_cursor = ctx.cursor;
        return 0;
}

static int sqlite_webhook_get(struct cm_store *base, const char *env, const char *name,
                              struct cm_webhook *ret) {
        if (!env || !name || !ret)
                return -EINVAL;
        return read_one(base, STMT_WEBHOOK_GET, BINDS(BT(env), BT(name)), row_webhook, ret);
}

static int sqlite_webhook_list(struct cm_store *base, const char *env, struct cm_webhook **ret,
                               size_t *ret_n) {
        if (!ret || !ret_n)
                return -EINVAL;
        return read_all(base, STMT_WEBHOOK_LIST, BINDS(BT(env)), sizeof(struct cm_webhook), row_webhook,
                        webhook_done_v, (void **) ret, ret_n);
}

static int sqlite_webhook_delete(struct cm_store *base, const char *env, const char *name) {
        if (!env || !name)
                return -EINVAL;
        return write_stmt(base, STMT_WEBHOOK_DELETE, BINDS(BT(env), BT(name)), -ENOENT);
}

/* Attempts kept per webhook in the delivery log. */
#define DELIVERIES_KEPT 1000

struct webhook_record_ctx {
        const char *id;
        int64_t cursor;
        const struct cm_webhook_delivery *d;
};

static int webhook_record_tx(struct sqlite_conn *c, void *userdata) {
        struct webhook_record_ctx *ctx = userdata;
        const struct cm_webhook_delivery *d = ctx->d;
        int64_t one;
        int r;

        r = conn_query_int(c, STMT_WEBHOOK_EXISTS, BINDS(BT(ctx->id)), &one);
        if (r < 0)
                return r;
        if (d) {
                r = conn_run(c, STMT_DELIVERY_INSERT,
                             BINDS(BT(ctx->id), BI(d->ts_usec), BI(d->event_seq), BT(d->event_type ?: ""),
                                   BI(d->attempt), BI(d->status_code), BT(d->outcome ?: ""),
                                   BT(d->error ?: ""), BI(d->duration_usec)));
                if (r < 0)
                        return r;
                r = conn_run(c, STMT_DELIVERY_TRIM, BINDS(BT(ctx->id), BI(DELIVERIES_KEPT)));
                if (r < 0)
                        return r;
        }
        if (ctx->cursor >= 0) {
                r = conn_run(c, STMT_WEBHOOK_CURSOR, BINDS(BT(ctx->id), BI(ctx->cursor)));
                if (r < 0)
                        return r;
        }
        return 0;
}

static int sqlite_webhook_record(struct cm_store *base, const char *webhook_id, int64_t cursor,
                                 const struct cm_webhook_delivery *d) {
        struct webhook_record_ctx ctx = { .id = webhook_id, .cursor = cursor, .d = d };

        if (!webhook_id)
                return -EINVAL;
        return store_write(to_sqlite(base), webhook_record_tx, &ctx);
}

static int sqlite_webhook_deliveries(struct cm_store *base, const char *webhook_id, unsigned limit,
                                     struct cm_webhook_delivery **ret, size_t *ret_n) {
        if (!webhook_id || !ret || !ret_n)
                return -EINVAL;
        return read_all(base, STMT_DELIVERY_LIST, BINDS(BT(webhook_id), BI(limit)),
                        sizeof(struct cm_webhook_delivery), row_delivery, delivery_done_v, (void **) ret,
                        ret_n);
}

/* ---- add-ons ---- */

static bool same_text(const char *a, const char *b) {
        return a == b || (a && b && streq(a, b));
}

/* Reads ADDON_COLUMNS. */
static int row_addon(sqlite3_stmt *st, void *elem) {
        _cleanup_(cm_addon_done) struct cm_addon a = {};
        int r;

        r = col_strdup_many(st, (const int[]){ 0, 1, 3, 5 },
                            (char **const[]){ &a.env, &a.name, &a.version, &a.doc_json }, 4);
        if (r < 0)
                return r;
        if (cm_addon_kind_from_string((const char *) sqlite3_column_text(st, 2), &a.kind) < 0)
                return log_debug_errno(-EBADMSG, "sqlite: add-on '%s' has an unknown kind: %m",
                                       strna(a.name));
        a.baseline = sqlite3_column_int64(st, 4) != 0;
        a.resource_version = sqlite3_column_int64(st, 6);
        a.created_usec = col_u64(st, 7);
        a.updated_usec = col_u64(st, 8);
        *(struct cm_addon *) elem = a;
        a = (struct cm_addon){};
        return 0;
}
static void addon_done_v(void *elem) {
        cm_addon_done(elem);
}

/* Reads INSTALL_COLUMNS. */
static int row_install(sqlite3_stmt *st, void *elem) {
        _cleanup_(cm_addon_install_done) struct cm_addon_install i = {};
        int r;

        r = col_strdup_many(st, (const int[]){ 0, 1, 2, 3, 4, 7, 8, 9, 11, 16, 17 },
                            (char **const[]){ &i.cluster_id, &i.env, &i.cluster_name, &i.addon,
                                              &i.values_json, &i.status_json, &i.inventory_json,
                                              &i.applied_key, &i.lease_owner, &i.addon_version,
                                              &i.addon_doc_json },
                            11);
        if (r < 0)
                return r;
        i.generation = sqlite3_column_int64(st, 5);
        i.uninstall = sqlite3_column_int64(st, 6) != 0;
        i.next_check_usec = col_u64(st, 10);
        i.lease_until_usec = col_u64(st, 12);
        i.resource_version = sqlite3_column_int64(st, 13);
        i.created_usec = col_u64(st, 14);
        i.updated_usec = col_u64(st, 15);
        i.addon_resource_version = sqlite3_column_int64(st, 18);
        *(struct cm_addon_install *) elem = i;
        i = (struct cm_addon_install){};
        return 0;
}
static void install_done_v(void *elem) {
        cm_addon_install_done(elem);
}

struct addon_put_ctx {
        const struct cm_addon *a;
        const char *kind;
        int64_t expected;
        uint64_t now;
        int64_t version; /* out */
};

static int addon_put_tx(struct sqlite_conn *c, void *userdata) {
        struct addon_put_ctx *ctx = userdata;
        const struct cm_addon *a = ctx->a;
        _cleanup_(cm_addon_done) struct cm_addon old = {};
        bool found;
        int64_t one;
        int r;

        r = conn_query_int(c, STMT_ENV_EXISTS, BINDS(BT(a->env)), &one);
        if (r < 0)
                return r;
        {
                _cleanup_stmt_ sqlite3_stmt *st = NULL;

                r = conn_stmt(c, STMT_ADDON_GET, BINDS(BT(a->env), BT(a->name)), &st);
                if (r < 0)
                        return r;
                r = stmt_step(c, st);
                if (r < 0)
                        return r;
                found = r > 0;
                if (found) {
                        r = row_addon(st, &old);
                        if (r < 0)
                                return r;
                }
        }

        if (!found) {
                if (ctx->expected > 0)
                        return -ESTALE;
                r = conn_run(c, STMT_ADDON_INSERT,
                             BINDS(BT(a->env), BT(a->name), BT(ctx->kind), BT(a->version), BI(a->baseline),
                                   BT(a->doc_json), BI(ctx->now)));
                if (r < 0)
                        return r;
                ctx->version = 1;
                return 0;
        }
        if (ctx->expected == 0)
                return -EEXIST;
        if (ctx->expected > 0 && ctx->expected != old.resource_version)
                return -ESTALE;
        /* The same definition again: nothing to write, nothing to apply again. */
        if (old.kind == a->kind && old.baseline == a->baseline && same_text(old.version, a->version) &&
            same_text(old.doc_json, a->doc_json)) {
                ctx->version = old.resource_version;
                return 0;
        }
        r = conn_query_int(c, STMT_ADDON_UPDATE,
                           BINDS(BT(a->env), BT(a->name), BT(ctx->kind), BT(a->version), BI(a->baseline),
                                 BT(a->doc_json), BI(ctx->now)),
                           &ctx->version);
        if (r < 0)
                return r;
        /* Every installation of it is due now: the reconciler applies the new definition. */
        r = conn_run(c, STMT_ADDON_MARK_DUE, BINDS(BT(a->env), BT(a->name), BI(ctx->now)));
        return r < 0 ? r : 0;
}

static int sqlite_addon_put(struct cm_store *base, const struct cm_addon *a, int64_t expected_version,
                            uint64_t now, int64_t *ret_version) {
        struct addon_put_ctx ctx = { .a = a, .expected = expected_version, .now = now };
        int r;

        if (!a || isempty(a->env) || isempty(a->name) || !a->version || !a->doc_json || now > INT64_MAX)
                return -EINVAL;
        ctx.kind = cm_addon_kind_to_string(a->kind);
        if (!ctx.kind)
                return -EINVAL;
        r = store_write(to_sqlite(base), addon_put_tx, &ctx);
        if (r < 0)
                return r;
        if (ret_version)
                *ret_version = ctx.version;
        return 0;
}

static int sqlite_addon_get(struct cm_store *base, const char *env, const char *name, struct cm_addon *ret) {
        if (!env || !name || !ret)
                return -EINVAL;
        return read_one(base, STMT_ADDON_GET, BINDS(BT(env), BT(name)), row_addon, ret);
}

static int sqlite_addon_list(struct cm_store *base, const char *env, bool baseline_only,
                             struct cm_addon **ret, size_t *ret_n) {
        if (!env || !ret || !ret_n)
                return -EINVAL;
        return read_all(base, STMT_ADDON_LIST, BINDS(BT(env), BI(baseline_only)), sizeof(struct cm_addon),
                        row_addon, addon_done_v, (void **) ret, ret_n);
}

struct addon_delete_ctx {
        const char *env;
        const char *name;
        int64_t expected;
};

static int addon_delete_tx(struct sqlite_conn *c, void *userdata) {
        struct addon_delete_ctx *ctx = userdata;
        int64_t rv, one;
        int r;

        r = conn_query_int(c, STMT_ADDON_VERSION, BINDS(BT(ctx->env), BT(ctx->name)), &rv);
        if (r < 0)
                return r;
        if (ctx->expected >= 0 && ctx->expected != rv)
                return -ESTALE;
        r = conn_query_int(c, STMT_ADDON_IN_USE, BINDS(BT(ctx->env), BT(ctx->name)), &one);
        if (r >= 0)
                return -EBUSY;
        if (r != -ENOENT)
                return r;
        r = conn_run(c, STMT_ADDON_DELETE, BINDS(BT(ctx->env), BT(ctx->name)));
        return r < 0 ? r : 0;
}

static int sqlite_addon_delete(struct cm_store *base, const char *env, const char *name,
                               int64_t expected_version) {
        struct addon_delete_ctx ctx = { .env = env, .name = name, .expected = expected_version };

        if (!env || !name)
                return -EINVAL;
        return store_write(to_sqlite(base), addon_delete_tx, &ctx);
}

struct install_put_ctx {
        const char *cluster_id;
        const char *addon;
        const char *values_json;
        int64_t expected;
        uint64_t now;
        int64_t version; /* out */
};

static int install_put_tx(struct sqlite_conn *c, void *userdata) {
        struct install_put_ctx *ctx = userdata;
        bool found, same = false, uninstall = false;
        int64_t rv = 0, one;
        int r;

        {
                _cleanup_stmt_ sqlite3_stmt *st = NULL;

                r = conn_stmt(c, STMT_INSTALL_LOOKUP, BINDS(BT(ctx->cluster_id), BT(ctx->addon)), &st);
                if (r < 0)
                        return r;
                r = stmt_step(c, st);
                if (r < 0)
                        return r;
                found = r > 0;
                if (found) {
                        const char *v = (const char *) sqlite3_column_text(st, 0);

                        if (!v)
                                return -ENOMEM;
                        same = streq(v, ctx->values_json);
                        uninstall = sqlite3_column_int64(st, 1) != 0;
                        rv = sqlite3_column_int64(st, 2);
                }
        }

        if (!found) {
                /* The cluster exists and its environment has the add-on. */
                r = conn_query_int(c, STMT_INSTALL_ADDON_EXISTS, BINDS(BT(ctx->cluster_id), BT(ctx->addon)),
                                   &one);
                if (r < 0)
                        return r;
                if (ctx->expected > 0)
                        return -ESTALE;
                r = conn_run(c, STMT_INSTALL_INSERT,
                             BINDS(BT(ctx->cluster_id), BT(ctx->addon), BT(ctx->values_json), BI(ctx->now)));
                if (r < 0)
                        return r;
                ctx->version = 1;
                return 0;
        }
        if (ctx->expected == 0)
                return -EEXIST;
        if (ctx->expected > 0 && ctx->expected != rv)
                return -ESTALE;
        if (uninstall)
                return -EBUSY;
        if (same) {
                ctx->version = rv;
                return 0;
        }
        return conn_query_int(c, STMT_INSTALL_SET_VALUES,
                              BINDS(BT(ctx->cluster_id), BT(ctx->addon), BT(ctx->values_json), BI(ctx->now)),
                              &ctx->version);
}

static int sqlite_install_put(struct cm_store *base, const char *cluster_id, const char *addon,
                              const char *values_json, int64_t expected_version, uint64_t now,
                              int64_t *ret_version) {
        struct install_put_ctx ctx = {
                .cluster_id = cluster_id,
                .addon = addon,
                .values_json = values_json,
                .expected = expected_version,
                .now = now,
        };
        int r;

        if (!cluster_id || !addon || !values_json || now > INT64_MAX)
                return -EINVAL;
        r = store_write(to_sqlite(base), install_put_tx, &ctx);
        if (r < 0)
                return r;
        if (ret_version)
                *ret_version = ctx.version;
        return 0;
}

static int sqlite_install_get(struct cm_store *base, const char *cluster_id, const char *addon,
                              struct cm_addon_install *ret) {
        if (!cluster_id || !addon || !ret)
                return -EINVAL;
        return read_one(base, STMT_INSTALL_GET, BINDS(BT(cluster_id), BT(addon)), row_install, ret);
}

static int sqlite_install_list(struct cm_store *base, const char *cluster_id, struct cm_addon_install **ret,
                               size_t *ret_n) {
        if (!cluster_id || !ret || !ret_n)
                return -EINVAL;
        return read_all(base, STMT_INSTALL_LIST, BINDS(BT(cluster_id)), sizeof(struct cm_addon_install),
                        row_install, install_done_v, (void **) ret, ret_n);
}

struct install_key_ctx {
        const char *cluster_id;
        const char *addon;
        const char *owner;
        uint64_t now;
        const struct cm_install_outcome *o;
};

static int install_uninstall_tx(struct sqlite_conn *c, void *userdata) {
        struct install_key_ctx *ctx = userdata;
        int64_t one;
        int r;

        r = conn_run(c, STMT_INSTALL_UNINSTALL, BINDS(BT(ctx->cluster_id), BT(ctx->addon), BI(ctx->now)));
        if (r != 0)
                return r < 0 ? r : 0;
        /* Nothing changed: requested before, or no such installation. */
        r = conn_query_int(c, STMT_INSTALL_EXISTS, BINDS(BT(ctx->cluster_id), BT(ctx->addon)), &one);
        return r < 0 ? r : 0;
}

static int sqlite_install_request_uninstall(struct cm_store *base, const char *cluster_id, const char *addon,
                                            uint64_t now) {
        struct install_key_ctx ctx = { .cluster_id = cluster_id, .addon = addon, .now = now };

        if (!cluster_id || !addon || now > INT64_MAX)
                return -EINVAL;
        return store_write(to_sqlite(base), install_uninstall_tx, &ctx);
}

struct install_claim_ctx {
        const char *owner;
        uint64_t now;
        uint64_t lease_until;
        unsigned limit;
        struct cm_addon_install *a; /* out */
        size_t n; /* out */
};

static int install_claim_tx(struct sqlite_conn *c, void *userdata) {
        struct install_claim_ctx *ctx = userdata;
        void *a = NULL;
        size_t n = 0;
        int r;

        cm_addon_install_array_free(ctx->a, ctx->n);
        ctx->a = NULL;
        ctx->n = 0;
        {
                _cleanup_stmt_ sqlite3_stmt *st = NULL;

                r = conn_stmt(c, STMT_INSTALL_DUE, BINDS(BI(ctx->now), BI(ctx->limit)), &st);
                if (r < 0)
                        return r;
                r = collect_rows(c, st, sizeof(struct cm_addon_install), row_install, install_done_v, &a,
                                 &n);
                if (r < 0)
                        return r;
        }
        ctx->a = a;
        ctx->n = n;
        if (n == 0)
                return -EAGAIN;
        for (size_t i = 0; i < n; i++) {
                struct cm_addon_install *x = &ctx->a[i];

                r = conn_run(c, STMT_INSTALL_LEASE,
                             BINDS(BT(x->cluster_id), BT(x->addon), BT(ctx->owner), BI(ctx->lease_until),
                                   BI(x->addon_resource_version)));
                if (r < 0)
                        return r;
                free(x->lease_owner);
                x->lease_owner = strdup(ctx->owner);
                if (!x->lease_owner)
                        return -ENOMEM;
                x->lease_until_usec = ctx->lease_until;
        }
        return 0;
}

static int sqlite_install_claim(struct cm_store *base, const char *owner, uint64_t now, uint64_t lease_usec,
                                unsigned limit, struct cm_addon_install **ret, size_t *ret_n) {
        struct install_claim_ctx ctx = { .owner = owner, .now = now, .limit = limit };
        int r;

        if (isempty(owner) || limit == 0 || !ret || !ret_n || now > INT64_MAX ||
            lease_usec > INT64_MAX - now)
                return -EINVAL;
        ctx.lease_until = now + lease_usec;
        r = store_write(to_sqlite(base), install_claim_tx, &ctx);
        if (r < 0) {
                cm_addon_install_array_free(ctx.a, ctx.n);
                return r;
        }
        *ret = ctx.a;
        *ret_n = ctx.n;
        return 0;
}

static int install_finish_tx(struct sqlite_conn *c, void *userdata) {
        struct install_key_ctx *ctx = userdata;
        const struct cm_install_outcome *o = ctx->o;
        int r;

        r = conn_run(c, STMT_INSTALL_FINISH,
                     BINDS(BT(ctx->cluster_id), BT(ctx->addon), BT(ctx->owner), BT(o->status_json),
                           BT(o->inventory_json), BT(o->applied_key), BI(o->generation_seen),
                           BI(o->next_check_usec), BI(ctx->now)));
        if (r < 0)
                return r;
        return r == 0 ? -ESRCH : 0;
}

static int sqlite_install_finish(struct cm_store *base, const char *cluster_id, const char *addon,
                                 const char *owner, const struct cm_install_outcome *o, uint64_t now) {
        struct install_key_ctx ctx = {
                .cluster_id = cluster_id, .addon = addon, .owner = owner, .now = now, .o = o
        };

        if (!cluster_id || !addon || isempty(owner) || !o || now > INT64_MAX ||
            o->next_check_usec > INT64_MAX)
                return -EINVAL;
        return store_write(to_sqlite(base), install_finish_tx, &ctx);
}

static int install_remove_tx(struct sqlite_conn *c, void *userdata) {
        struct install_key_ctx *ctx = userdata;
        int64_t one;
        int r;

        r = conn_run(c, STMT_INSTALL_REMOVE, BINDS(BT(ctx->cluster_id), BT(ctx->addon), BT(ctx->owner)));
        if (r != 0)
                return r < 0 ? r : 0;
        /* Held by owner, so no uninstall was requested; else the lease is lost (or the row gone). */
        r = conn_query_int(c, STMT_INSTALL_HOLDER,
                           BINDS(BT(ctx->cluster_id), BT(ctx->addon), BT(ctx->owner)), &one);
        if (r >= 0)
                return -EINVAL;
        return r == -ENOENT ? -ESRCH : r;
}

static int sqlite_install_remove(struct cm_store *base, const char *cluster_id, const char *addon,
                                 const char *owner) {
        struct install_key_ctx ctx = { .cluster_id = cluster_id, .addon = addon, .owner = owner };

        if (!cluster_id || !addon || isempty(owner))
                return -EINVAL;
        return store_write(to_sqlite(base), install_remove_tx, &ctx);
}

static int install_schedule_tx(struct sqlite_conn *c, void *userdata) {
        struct install_key_ctx *ctx = userdata;
        int r;

        r = conn_run(c, STMT_INSTALL_SCHEDULE, BINDS(BT(ctx->cluster_id), BT(ctx->addon), BI(ctx->now)));
        if (r < 0)
                return r;
        return r == 0 ? -ENOENT : 0;
}

static int sqlite_install_schedule(struct cm_store *base, const char *cluster_id, const char *addon,
                                   uint64_t now) {
        struct install_key_ctx ctx = { .cluster_id = cluster_id, .addon = addon, .now = now };

        if (!cluster_id || !addon || now > INT64_MAX)
                return -EINVAL;
        return store_write(to_sqlite(base), install_schedule_tx, &ctx);
}

/* ---- health written by the monitor ---- */

struct cluster_health_ctx {
        const char *id;
        const char *conditions_json;
        const char *health_json;
        uint64_t now;
        bool changed;
};

static int cluster_health_tx(struct sqlite_conn *c, void *userdata) {
        struct cluster_health_ctx *ctx = userdata;
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        _cleanup_free_ char *conds = NULL, *merged = NULL;
        const char *health;
        int r;

        ctx->changed = false;
        r = conn_stmt(c, STMT_CLUSTER_HEALTH_GET, BINDS(BT(ctx->id)), &st);
        if (r < 0)
                return r;
        r = stmt_step(c, st);
        if (r < 0)
                return r;
        if (r == 0)
                return -ENOENT;
        r = col_strdup(st, 0, &conds);
        if (r < 0)
                return r;
        merged = cm_conditions_merge(conds, ctx->conditions_json, ctx->now);
        if (!merged)
                return -ENOMEM;
        health = ctx->health_json ?: (const char *) sqlite3_column_text(st, 1);
        if (same_text(merged, conds) && same_text(health, (const char *) sqlite3_column_text(st, 1)))
                return stmt_drain(c, st);
        r = conn_run(c, STMT_CLUSTER_HEALTH_SET, BINDS(BT(ctx->id), BT(merged), BT(health)));
        if (r < 0)
                return r;
        ctx->changed = true;
        return 0;
}

static int sqlite_cluster_set_health(struct cm_store *base, const char *cluster_id,
                                     const char *conditions_json, const char *health_json, uint64_t now) {
        struct cluster_health_ctx ctx = {
                .id = cluster_id, .conditions_json = conditions_json, .health_json = health_json, .now = now
        };

        if (!cluster_id)
                return -EINVAL;
        return store_write(to_sqlite(base), cluster_health_tx, &ctx);
}

/* ---- API keys ---- */

struct apikey_ctx {
        const struct cm_apikey *k;
        const struct cm_rolebinding *b;
        size_t nb;
};

static int rolebinding_insert(struct sqlite_conn *c, const struct cm_rolebinding *b) {
        int r = conn_run(c, STMT_RB_INSERT,
                         BINDS(BT(b->id), BT(b->env), BT(b->subject_kind), BT(b->subject), BT(b->role),
                               BI(b->created_usec), BT(b->created_by)));
        return r < 0 ? r : 0;
}

static int apikey_create_tx(struct sqlite_conn *c, void *userdata) {
        struct apikey_ctx *ctx = userdata;
        const struct cm_apikey *k = ctx->k;
        int r;

        r = conn_run(c, STMT_APIKEY_INSERT,
                     BINDS(BT(k->id), BT(k->name), BT(k->hash), BT(k->role ?: ""), BI(k->created_usec),
                           BI(k->expires_usec), BT(k->owner)));
        for (size_t i = 0; r >= 0 && i < ctx->nb; i++)
                r = rolebinding_insert(c, &ctx->b[i]);
        return r < 0 ? r : 0;
}

static int sqlite_apikey_create(struct cm_store *base, const struct cm_apikey *k,
                                const struct cm_rolebinding *b, size_t nb) {
        struct apikey_ctx ctx = { .k = k, .b = b, .nb = nb };
        int r;

        if (!k || !k->id || !k->hash || (nb && !b))
                return -EINVAL;
        r = store_write(to_sqlite(base), apikey_create_tx, &ctx);
        return r < 0 ? r : 0;
}

static int sqlite_apikey_list(struct cm_store *base, struct cm_apikey **ret, size_t *ret_n) {
        return read_all(base, STMT_APIKEY_LIST, NULL, 0, sizeof(struct cm_apikey), row_apikey_v,
                        apikey_done_v, (void **) ret, ret_n);
}

static int sqlite_apikey_revoke(struct cm_store *base, const char *id) {
        if (!id)
                return -EINVAL;
        return write_stmt(base, STMT_APIKEY_REVOKE, BINDS(BT(id)), -ENOENT);
}

static int sqlite_apikey_touch(struct cm_store *base, const char *id, uint64_t now) {
        if (!id)
                return -EINVAL;
        return write_stmt(base, STMT_APIKEY_TOUCH, BINDS(BT(id), BI(now)), 0);
}

/* ---- role bindings ---- */

static int rb_create_tx(struct sqlite_conn *c, void *userdata) {
        return rolebinding_insert(c, userdata);
}

static int sqlite_rolebinding_create(struct cm_store *base, const struct cm_rolebinding *b) {
        if (!b || !b->id || !b->env || !b->subject_kind || !b->subject || !b->role)
                return -EINVAL;
        return store_write(to_sqlite(base), rb_create_tx, CM_UNCONST(void *, b));
}

static void rb_done_v(void *elem) {
        cm_rolebinding_done(elem);
}

static int sqlite_rolebinding_list(struct cm_store *base, const char *env, struct cm_rolebinding **ret,
                                   size_t *ret_n) {
        if (env)
                return read_all(base, STMT_RB_LIST_ENV, BINDS(BT(env)), sizeof(struct cm_rolebinding),
                                row_rolebinding, rb_done_v, (void **) ret, ret_n);
        return read_all(base, STMT_RB_LIST_ALL, NULL, 0, sizeof(struct cm_rolebinding), row_rolebinding,
                        rb_done_v, (void **) ret, ret_n);
}

static int sqlite_rolebinding_delete(struct cm_store *base, const char *id) {
        if (!id)
                return -EINVAL;
        return write_stmt(base, STMT_RB_DELETE, BINDS(BT(id)), -ENOENT);
}

/* ---- audit ---- */

struct audit_ctx {
        const struct cm_audit_record *a;
        int64_t seq;
        char hash[65];
};

static int audit_append_tx(struct sqlite_conn *c, void *userdata) {
        struct audit_ctx *ctx = userdata;
        return audit_insert(c, ctx->a, &ctx->seq, ctx->hash);
}

static int sqlite_audit_append(struct cm_store *base, struct cm_audit_record *a) {
        struct audit_ctx ctx = { .a = a };
        struct cm_audit_record *staged;
        int r;

        if (!a)
                return -EINVAL;
        /* This is the record: it is not staged again on the way. */
        staged = cm_store_audit_stage(NULL);
        r = store_write(to_sqlite(base), audit_append_tx, &ctx);
        (void) cm_store_audit_stage(staged);
        if (r < 0)
                return r;
        cm_store_audit_committed(a, ctx.seq, ctx.hash);
        return 0;
}

static void audit_done_v(void *elem) {
        cm_audit_record_done(elem);
}

static int sqlite_audit_list(struct cm_store *base, int64_t after, unsigned limit,
                             struct cm_audit_record **ret, size_t *ret_n) {
        return read_all(base, STMT_AUDIT_LIST, BINDS(BI(after), BI(limit)), sizeof(struct cm_audit_record),
                        row_audit, audit_done_v, (void **) ret, ret_n);
}

static int sqlite_apikey_get_by_hash(struct cm_store *base, const char *hash, struct cm_apikey *ret) {
        if (!hash || !ret)
                return -EINVAL;
        return read_one(base, STMT_APIKEY_GET_BY_HASH, BINDS(BT(hash)), row_apikey_v, ret);
}

static int sqlite_apikey_count(struct cm_store *base, uint64_t *ret) {
        if (!ret)
                return -EINVAL;
        return read_int(base, STMT_APIKEY_COUNT, NULL, 0, ret);
}

/* ---- clusters ---- */

static int sqlite_cluster_get(struct cm_store *base, const char *env, const char *name,
                              struct cm_cluster *ret) {
        if (!env || !name || !ret)
                return -EINVAL;
        return read_one(base, STMT_CLUSTER_GET, BINDS(BT(env), BT(name)), row_cluster_v, ret);
}

static int sqlite_cluster_get_by_id(struct cm_store *base, const char *id, struct cm_cluster *ret) {
        if (!id || !ret)
                return -EINVAL;
        return read_one(base, STMT_CLUSTER_GET_BY_ID, BINDS(BT(id)), row_cluster_v, ret);
}

static int sqlite_cluster_list(struct cm_store *base, const char *env, const char *after, unsigned limit,
                               struct cm_cluster **ret, size_t *ret_n) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        struct sqlite_conn *c = NULL;
        void *a;
        int r;

        if (!env || !ret || !ret_n)
                return -EINVAL;
        r = store_read(base, STMT_CLUSTER_LIST, BINDS(BT(env), BT(after ?: ""), BI(limit)), &c, &st);
        if (r < 0)
                return r;
        r = collect_rows(c, st, sizeof(struct cm_cluster), row_cluster_v, cluster_done_v, &a, ret_n);
        if (r < 0)
                return r;
        *ret = a;
        return 0;
}

static const char *col_text(sqlite3_stmt *st, int i) {
        return (const char *) sqlite3_column_text(st, i);
}

static int sqlite_cluster_list_each(struct cm_store *base, const char *env, const char *after,
                                    unsigned limit, int (*fn)(const struct cm_cluster *c, void *userdata),
                                    void *userdata) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        struct sqlite_conn *c = NULL;
        int r;

        if (!env || !fn)
                return -EINVAL;
        r = store_read(base, STMT_CLUSTER_LIST, BINDS(BT(env), BT(after ?: ""), BI(limit)), &c, &st);
        if (r < 0)
                return r;
        while ((r = stmt_step(c, st)) > 0) {
                /* A view into the row: no copies (the list route's hot path). */
                struct cm_cluster v = {
                        .id = CM_UNCONST(char *, col_text(st, 0)),
                        .env = CM_UNCONST(char *, col_text(st, 1)),
                        .name = CM_UNCONST(char *, col_text(st, 2)),
                        .engine = CM_UNCONST(char *, col_text(st, 3)),
                        .labels_json = CM_UNCONST(char *, col_text(st, 4)),
                        .spec_json = CM_UNCONST(char *, col_text(st, 5)),
                        .generation = sqlite3_column_int64(st, 6),
                        .resource_version = sqlite3_column_int64(st, 7),
                        .conditions_json = CM_UNCONST(char *, col_text(st, 9)),
                        .status_json = CM_UNCONST(char *, col_text(st, 10)),
                        .observed_generation = sqlite3_column_int64(st, 11),
                        .created_usec = col_u64(st, 12),
                        .updated_usec = col_u64(st, 13),
                };

                if (!v.id || !v.env || !v.name || !v.engine || !v.labels_json || !v.spec_json ||
                    !v.conditions_json || !v.status_json)
                        return -ENOMEM;
                if (cm_phase_from_string(col_text(st, 8), &v.phase) < 0)
                        return log_debug_errno(-EBADMSG, "sqlite: cluster '%s' has an unknown phase: %m",
                                               v.id);
                r = fn(&v, userdata);
                if (r < 0)
                        return r;
        }
        return r < 0 ? r : 0;
}

static int sqlite_env_clusters_version(struct cm_store *base, const char *env, int64_t *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        struct sqlite_conn *c = NULL;
        int r;

        if (!env || !ret)
                return -EINVAL;
        r = store_read(base, STMT_ENV_CLUSTERS_VERSION, BINDS(BT(env)), &c, &st);
        if (r < 0)
                return r;
        r = stmt_step(c, st);
        if (r < 0)
                return r;
        if (r == 0)
                return -ENOENT;
        *ret = sqlite3_column_int64(st, 0);
        return 0;
}

static int sqlite_change_counter(struct cm_store *base, uint64_t *ret) {
        *ret = atomic_load(&to_sqlite(base)->file->writes);
        return 0;
}

static int sqlite_cluster_count(struct cm_store *base, const char *env, uint64_t *ret) {
        if (!env || !ret)
                return -EINVAL;
        return read_int(base, STMT_CLUSTER_COUNT, BINDS(BT(env)), ret);
}

/*
 * Inserts a new operation: always pending, unclaimed, no attempts yet. env, cluster id and name come
 * from the cluster, the rest from op.
 */
static int op_insert(struct sqlite_conn *c, const struct cm_operation *op, const char *env,
                     const char *cluster_id, const char *cluster_name, int64_t generation) {
        int r;

        r = conn_run(c, STMT_OP_INSERT,
                     BINDS(BT(op->id), BT(env), BT(cluster_id), BT(cluster_name),
                           BT(cm_op_type_to_string(op->type)), BI(generation), BI(op->max_attempts),
                           BI(op->next_run_usec), BT(op->requested_by), BI(op->created_usec),
                           BT(op->params_json), BT(op->policy_json)));
        /* The partial unique index: another operation of the cluster is unfinished. */
        if (r == -EEXIST && strstr(sqlite3_errmsg(c->db), "operations.cluster_id"))
                return -EBUSY;
        return r < 0 ? r : 0;
}

static int op_valid_new(const struct cm_operation *op) {
        if (!op || isempty(op->id) || op->state != CM_OP_PENDING || !cm_op_type_to_string(op->type))
                return -EINVAL;
        return 0;
}

struct cluster_create_ctx {
        const struct cm_cluster *c;
        const struct cm_operation *op;
};

static int cluster_create_tx(struct sqlite_conn *c, void *userdata) {
        struct cluster_create_ctx *ctx = userdata;
        const struct cm_cluster *cl = ctx->c;
        int r;

        r = conn_run(c, STMT_CLUSTER_INSERT,
                     BINDS(BT(cl->id), BT(cl->env), BT(cl->name), BT(cl->engine), BT(cl->labels_json),
                           BT(cl->spec_json), BT(cm_phase_to_string(cl->phase)), BT(cl->conditions_json),
                           BT(cl->status_json), BI(cl->created_usec), BI(cl->updated_usec)));
        if (r < 0)
                return r; /* -EEXIST: name (or id) taken; -ENOENT: no such environment */
        return op_insert(c, ctx->op, cl->env, cl->id, cl->name, 1);
}

static int sqlite_cluster_create(struct cm_store *base, const struct cm_cluster *c,
                                 const struct cm_operation *op) {
        struct cluster_create_ctx ctx = { .c = c, .op = op };

        if (!c || isempty(c->id) || !c->env || !c->name || !c->engine || !c->spec_json ||
            !cm_phase_to_string(c->phase) || op_valid_new(op) < 0)
                return -EINVAL;
        return store_write(to_sqlite(base), cluster_create_tx, &ctx);
}

struct cluster_update_ctx {
        const char *env;
        const char *name;
        int64_t expected_rv;
        const char *spec_json;
        const char *labels_json;
        enum cm_phase phase;
        const struct cm_operation *op;
        struct cm_cluster cluster; /* out */
        char *conflict; /* out, on -EBUSY */
};

/* The id and resource version of env/name. */
static int cluster_lookup(struct sqlite_conn *c, const char *env, const char *name, char **ret_id,
                          int64_t *ret_rv) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        r = conn_stmt(c, STMT_CLUSTER_LOOKUP, BINDS(BT(env), BT(name)), &st);
        if (r < 0)
                return r;
        r = stmt_step(c, st);
        if (r <= 0)
                return r < 0 ? r : -ENOENT;
        r = col_strdup(st, 0, ret_id);
        if (r < 0)
                return r;
        *ret_rv = sqlite3_column_int64(st, 1);
        return 0;
}

/* 0 when the cluster has no unfinished operation; -EBUSY and its id otherwise. */
static int cluster_unfinished_op(struct sqlite_conn *c, const char *cluster_id, char **ret_id) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        r = conn_stmt(c, STMT_OP_UNFINISHED, BINDS(BT(cluster_id)), &st);
        if (r < 0)
                return r;
        r = stmt_step(c, st);
        if (r <= 0)
                return r;
        r = col_strdup(st, 0, ret_id);
        return r < 0 ? r : -EBUSY;
}

static int cluster_update_tx(struct sqlite_conn *c, void *userdata) {
        struct cluster_update_ctx *ctx = userdata;
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        _cleanup_free_ char *id = NULL;
        int64_t rv;
        int r;

        cm_cluster_done(&ctx->cluster);
        ctx->conflict = mfree(ctx->conflict);

        r = cluster_lookup(c, ctx->env, ctx->name, &id, &rv);
        if (r < 0)
                return r;
        if (ctx->expected_rv >= 0 && rv != ctx->expected_rv)
                return -ESTALE;
        r = cluster_unfinished_op(c, id, &ctx->conflict);
        if (r < 0)
                return r;

        r = conn_stmt(c, STMT_CLUSTER_UPDATE_SPEC,
                      BINDS(BT(id), BT(ctx->spec_json), BT(ctx->labels_json),
                            BT(cm_phase_to_string(ctx->phase)), BI(ctx->op->created_usec)),
                      &st);
        if (r < 0)
                return r;
        r = stmt_step(c, st);
        if (r <= 0)
                return r < 0 ? r : -ENOENT;
        r = row_cluster(st, &ctx->cluster);
        if (r < 0)
                return r;
        r = stmt_drain(c, st);
        if (r < 0)
                return r;

        return op_insert(c, ctx->op, ctx->cluster.env, ctx->cluster.id, ctx->cluster.name,
                         ctx->cluster.generation);
}

static int sqlite_cluster_update(struct cm_store *base, const char *env, const char *name,
                                 int64_t expected_rv, const char *spec_json, const char *labels_json,
                                 enum cm_phase phase, const struct cm_operation *op, struct cm_cluster *ret,
                                 char **ret_conflict_op) {
        struct cluster_update_ctx ctx = {
                .env = env,
                .name = name,
                .expected_rv = expected_rv,
                .spec_json = spec_json,
                .labels_json = labels_json,
                .phase = phase,
                .op = op,
        };
        int r;

        if (!env || !name || !cm_phase_to_string(phase) || op_valid_new(op) < 0)
                return -EINVAL;
        r = store_write(to_sqlite(base), cluster_update_tx, &ctx);
        if (r == -EBUSY && ret_conflict_op && ctx.conflict)
                *ret_conflict_op = TAKE_PTR(ctx.conflict);
        free(ctx.conflict);
        if (r >= 0 && ret)
                *ret = ctx.cluster;
        else
                cm_cluster_done(&ctx.cluster);
        return r < 0 ? r : 0;
}

struct cluster_status_ctx {
        const char *id;
        const char *phase;
        const char *conditions_json;
        const char *status_json;
};

static int cluster_set_status_tx(struct sqlite_conn *c, void *userdata) {
        struct cluster_status_ctx *ctx = userdata;
        int r;

        r = conn_run(c, STMT_CLUSTER_STATUS,
                     BINDS(BT(ctx->id), BT(ctx->phase), BT(ctx->conditions_json), BT(ctx->status_json),
                           BI(0), BI(0)));
        if (r < 0)
                return r;
        return r == 0 ? -ENOENT : 0;
}

static int sqlite_cluster_set_status(struct cm_store *base, const char *cluster_id, enum cm_phase phase,
                                     const char *conditions_json, const char *status_json) {
        struct cluster_status_ctx ctx = {
                .id = cluster_id,
                .phase = cm_phase_to_string(phase),
                .conditions_json = conditions_json,
                .status_json = status_json,
        };

        if (!cluster_id || !ctx.phase)
                return -EINVAL;
        return store_write(to_sqlite(base), cluster_set_status_tx, &ctx);
}

/* ---- operations ---- */

static int sqlite_op_get(struct cm_store *base, const char *id, struct cm_operation *ret) {
        if (!id || !ret)
                return -EINVAL;
        return read_one(base, STMT_OP_GET, BINDS(BT(id)), row_op_v, ret);
}

static int sqlite_op_list(struct cm_store *base, const char *env, const char *cluster_name, int64_t before,
                          unsigned limit, struct cm_operation **ret, size_t *ret_n) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        struct sqlite_conn *c = NULL;
        void *a;
        int r;

        if (!env || !cluster_name || !ret || !ret_n)
                return -EINVAL;
        r = store_read(base, STMT_OP_LIST,
                       BINDS(BT(env), BT(cluster_name), BI(before > 0 ? before : INT64_MAX), BI(limit)), &c,
                       &st);
        if (r < 0)
                return r;
        r = collect_rows(c, st, sizeof(struct cm_operation), row_op_v, op_done_v, &a, ret_n);
        if (r < 0)
                return r;
        *ret = a;
        return 0;
}

struct op_claim_ctx {
        const char *owner;
        uint64_t now;
        uint64_t lease_until;
        struct cm_operation op; /* out */
};

static int op_claim_tx(struct sqlite_conn *c, void *userdata) {
        struct op_claim_ctx *ctx = userdata;
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        cm_operation_done(&ctx->op);
        r = conn_stmt(c, STMT_OP_CLAIM, BINDS(BT(ctx->owner), BI(ctx->now), BI(ctx->lease_until)), &st);
        if (r < 0)
                return r;
        r = stmt_step(c, st);
        if (r <= 0)
                return r < 0 ? r : -EAGAIN;
        r = row_op(st, &ctx->op);
        if (r < 0)
                return r;
        return stmt_drain(c, st);
}

static int sqlite_op_claim(struct cm_store *base, const char *owner, uint64_t now, uint64_t lease_usec,
                           struct cm_operation *ret) {
        struct op_claim_ctx ctx = { .owner = owner, .now = now };
        int r;

        if (isempty(owner) || !ret || now > INT64_MAX || lease_usec > INT64_MAX - now)
                return -EINVAL;
        ctx.lease_until = now + lease_usec;
        r = store_write(to_sqlite(base), op_claim_tx, &ctx);
        if (r < 0) {
                cm_operation_done(&ctx.op);
                return r;
        }
        *ret = ctx.op;
        return 0;
}

struct op_lease_ctx {
        const char *id;
        const char *owner;
        uint64_t lease_until;
        bool cancel_requested; /* out */
};

static int op_heartbeat_tx(struct sqlite_conn *c, void *userdata) {
        struct op_lease_ctx *ctx = userdata;
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        r = conn_stmt(c, STMT_OP_HEARTBEAT, BINDS(BT(ctx->id), BT(ctx->owner), BI(ctx->lease_until)), &st);
        if (r < 0)
                return r;
        r = stmt_step(c, st);
        if (r <= 0)
                return r < 0 ? r : -ESRCH;
        ctx->cancel_requested = sqlite3_column_int64(st, 0) != 0;
        return stmt_drain(c, st);
}

static int sqlite_op_heartbeat(struct cm_store *base, const char *id, const char *owner,
                               uint64_t lease_until, bool *ret_cancel_requested) {
        struct op_lease_ctx ctx = { .id = id, .owner = owner, .lease_until = lease_until };
        int r;

        if (!id || !owner || lease_until > INT64_MAX)
                return -EINVAL;
        r = store_write(to_sqlite(base), op_heartbeat_tx, &ctx);
        if (r < 0)
                return r;
        if (ret_cancel_requested)
                *ret_cancel_requested = ctx.cancel_requested;
        return 0;
}

static int sqlite_op_release(struct cm_store *base, const char *id, const char *owner) {
        if (!id || !owner)
                return -EINVAL;
        return write_stmt(base, STMT_OP_RELEASE, BINDS(BT(id), BT(owner)), -ESRCH);
}

struct op_finish_ctx {
        const char *id;
        const char *owner;
        uint64_t now;
        const struct cm_op_outcome *o;
};

static int op_finish_tx(struct sqlite_conn *c, void *userdata) {
        struct op_finish_ctx *ctx = userdata;
        const struct cm_op_outcome *o = ctx->o;
        _cleanup_free_ char *cluster_id = NULL;
        int64_t generation;
        int r;

        {
                _cleanup_stmt_ sqlite3_stmt *st = NULL;

                r = conn_stmt(c, STMT_OP_FINISH,
                              BINDS(BT(ctx->id), BT(ctx->owner), BT(cm_op_state_to_string(o->state)),
                                    BT(o->error), BI(o->next_run_usec), BI(ctx->now), BT(o->result_json)),
                              &st);
                if (r < 0)
                        return r;
                r = stmt_step(c, st);
                if (r <= 0)
                        return r < 0 ? r : -ESRCH;
                r = col_strdup(st, 0, &cluster_id);
                if (r < 0)
                        return r;
                generation = sqlite3_column_int64(st, 1);
                r = stmt_drain(c, st);
                if (r < 0)
                        return r;
        }

        if (o->log_len > 0) {
                r = conn_run(c, STMT_LOG_APPEND,
                             BINDS(BT(ctx->id), BI(ctx->now), BN(o->log_text, o->log_len)));
                if (r < 0)
                        return r;
        }
        if (o->delete_cluster)
                r = conn_run(c, STMT_CLUSTER_DELETE, BINDS(BT(cluster_id)));
        else
                r = conn_run(c, STMT_CLUSTER_STATUS,
                             BINDS(BT(cluster_id), BT(cm_phase_to_string(o->phase)), BT(o->conditions_json),
                                   BT(o->status_json), BI(o->set_observed_generation), BI(generation)));
        return r < 0 ? r : 0;
}

static int sqlite_op_finish(struct cm_store *base, const char *id, const char *owner, uint64_t now,
                            const struct cm_op_outcome *o) {
        struct op_finish_ctx ctx = { .id = id, .owner = owner, .now = now, .o = o };

        if (!id || !owner || !o || now > INT64_MAX || o->next_run_usec > INT64_MAX ||
            !cm_phase_to_string(o->phase) || !cm_op_state_to_string(o->state) || o->state == CM_OP_RUNNING ||
            (o->log_len > 0 && !o->log_text) || o->log_len > INT_MAX)
                return -EINVAL;
        return store_write(to_sqlite(base), op_finish_tx, &ctx);
}

struct op_cancel_ctx {
        const char *id;
        uint64_t now;
        enum cm_op_state state; /* out */
};

static int op_state(struct sqlite_conn *c, const char *id, enum cm_op_state *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        r = conn_stmt(c, STMT_OP_STATE, BINDS(BT(id)), &st);
        if (r < 0)
                return r;
        r = stmt_step(c, st);
        if (r <= 0)
                return r < 0 ? r : -ENOENT;
        if (cm_op_state_from_string((const char *) sqlite3_column_text(st, 0), ret) < 0)
                return -EBADMSG;
        return 0;
}

static int op_cancel_tx(struct sqlite_conn *c, void *userdata) {
        struct op_cancel_ctx *ctx = userdata;
        enum cm_op_state state;
        int r;

        r = op_state(c, ctx->id, &state);
        if (r < 0)
                return r;
        if (cm_op_state_terminal(state))
                return -EALREADY;
        if (state == CM_OP_PENDING) {
                r = conn_run(c, STMT_OP_CANCEL_PENDING, BINDS(BT(ctx->id), BI(ctx->now)));
                ctx->state = CM_OP_CANCELLED;
        } else {
                r = conn_run(c, STMT_OP_CANCEL_RUNNING, BINDS(BT(ctx->id)));
                ctx->state = CM_OP_RUNNING;
        }
        return r < 0 ? r : 0;
}

static int sqlite_op_cancel(struct cm_store *base, const char *id, uint64_t now,
                            enum cm_op_state *ret_state) {
        struct op_cancel_ctx ctx = { .id = id, .now = now };
        int r;

        if (!id || now > INT64_MAX)
                return -EINVAL;
        r = store_write(to_sqlite(base), op_cancel_tx, &ctx);
        if (r < 0)
                return r;
        if (ret_state)
                *ret_state = ctx.state;
        return 0;
}

static int sqlite_op_stats(struct cm_store *base, uint64_t now, struct cm_op_stats *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        struct cm_op_stats stats = {};
        struct sqlite_conn *c = NULL;
        int r;

        if (!ret || now > INT64_MAX)
                return -EINVAL;
        r = store_read(base, STMT_OP_STATS, NULL, 0, &c, &st);
        if (r < 0)
                return r;
        while ((r = stmt_step(c, st)) > 0) {
                enum cm_op_type type;
                enum cm_op_state state;

                if (cm_op_type_from_string((const char *) sqlite3_column_text(st, 0), &type) < 0 ||
                    cm_op_state_from_string((const char *) sqlite3_column_text(st, 1), &state) < 0)
                        return -EBADMSG;
                stats.count[type][state] = col_u64(st, 2);
        }
        if (r < 0)
                return r;
        r = read_int(base, STMT_OP_QUEUE_DEPTH, BINDS(BI(now)), &stats.queue_depth);
        if (r < 0)
                return r;
        *ret = stats;
        return 0;
}

/* ---- operation logs ---- */

struct log_ctx {
        const char *op_id;
        uint64_t now;
        const char *text;
        size_t n;
};

static int op_log_append_tx(struct sqlite_conn *c, void *userdata) {
        struct log_ctx *ctx = userdata;
        int r;

        /* The foreign key rejects an unknown operation (-ENOENT). */
        r = conn_run(c, STMT_LOG_APPEND, BINDS(BT(ctx->op_id), BI(ctx->now), BN(ctx->text, ctx->n)));
        return r < 0 ? r : 0;
}

static int sqlite_op_log_append(struct cm_store *base, const char *op_id, uint64_t now, const char *text,
                                size_t n) {
        struct log_ctx ctx = { .op_id = op_id, .now = now, .text = text, .n = n };

        if (!op_id || (!text && n > 0) || now > INT64_MAX)
                return -EINVAL;
        if (!text)
                ctx.text = "";
        return store_write(to_sqlite(base), op_log_append_tx, &ctx);
}

static int sqlite_op_log_read(struct cm_store *base, const char *op_id, int64_t after, struct strbuf *out,
                              int64_t *ret_last) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        struct sqlite_conn *c = NULL;
        size_t start;
        int64_t last = after;
        int r, n = 0;

        if (!op_id || !out)
                return -EINVAL;
        start = out->len;
        r = store_read(base, STMT_LOG_READ, BINDS(BT(op_id), BI(after)), &c, &st);
        if (r < 0)
                return r;
        while ((r = stmt_step(c, st)) > 0) {
                const char *t = (const char *) sqlite3_column_blob(st, 1);
                int len = sqlite3_column_bytes(st, 1);

                if (!t && len > 0) {
                        r = -ENOMEM;
                        break;
                }
                r = strbuf_add(out, t ?: "", (size_t) len);
                if (r == -ENOBUFS) {
                        /* Stop before a chunk that does not fit; fail when not even the first does. */
                        if (n == 0)
                                return -ENOBUFS;
                        r = 0;
                        break;
                }
                if (r < 0)
                        break;
                last = sqlite3_column_int64(st, 0);
                n++;
        }
        if (r < 0) {
                if (out->buf) {
                        out->len = start;
                        out->buf[start] = 0;
                }
                return r;
        }
        if (n == 0) {
                int64_t one;

                stmt_resetp(&st);
                r = conn_query_int(c, STMT_OP_EXISTS, BINDS(BT(op_id)), &one);
                if (r < 0)
                        return r;
        }
        if (ret_last)
                *ret_last = last;
        return n;
}

/* ---- idempotency ---- */

struct idem_ctx {
        const char *principal;
        const char *key;
        const char *request_hash;
        uint64_t now;
        int status;
        const char *body;
        enum cm_idem_state state; /* out */
        int ret_status; /* out */
        char *ret_body; /* out */
};

static int idem_begin_tx(struct sqlite_conn *c, void *userdata) {
        struct idem_ctx *ctx = userdata;
        int r;

        ctx->ret_body = mfree(ctx->ret_body);
        {
                _cleanup_stmt_ sqlite3_stmt *st = NULL;
                const char *hash;

                r = conn_stmt(c, STMT_IDEM_GET, BINDS(BT(ctx->principal), BT(ctx->key)), &st);
                if (r < 0)
                        return r;
                r = stmt_step(c, st);
                if (r < 0)
                        return r;
                if (r > 0) {
                        hash = (const char *) sqlite3_column_text(st, 0);
                        if (!hash || !streq(hash, ctx->request_hash))
                                ctx->state = CM_IDEM_MISMATCH;
                        else if (sqlite3_column_int64(st, 1) == 0)
                                ctx->state = CM_IDEM_BUSY;
                        else {
                                ctx->state = CM_IDEM_DONE;
                                ctx->ret_status = sqlite3_column_int(st, 1);
                                r = col_strdup(st, 2, &ctx->ret_body);
                                if (r < 0)
                                        return r;
                        }
                        return 0;
                }
        }
        r = conn_run(c, STMT_IDEM_INSERT,
                     BINDS(BT(ctx->principal), BT(ctx->key), BT(ctx->request_hash), BI(ctx->now)));
        if (r < 0)
                return r;
        ctx->state = CM_IDEM_NEW;
        return 0;
}

static int sqlite_idem_begin(struct cm_store *base, const char *principal, const char *key,
                             const char *request_hash, uint64_t now, enum cm_idem_state *ret_state,
                             int *ret_status, char **ret_body) {
        struct idem_ctx ctx = {
                .principal = principal, .key = key, .request_hash = request_hash, .now = now
        };
        int r;

        if (!principal || !key || !request_hash || !ret_state || now > INT64_MAX)
                return -EINVAL;
        r = store_write(to_sqlite(base), idem_begin_tx, &ctx);
        if (r < 0) {
                free(ctx.ret_body);
                return r;
        }
        *ret_state = ctx.state;
        if (ctx.state == CM_IDEM_DONE) {
                if (ret_status)
                        *ret_status = ctx.ret_status;
                if (ret_body)
                        *ret_body = TAKE_PTR(ctx.ret_body);
        }
        free(ctx.ret_body);
        return 0;
}

static int idem_finish_tx(struct sqlite_conn *c, void *userdata) {
        struct idem_ctx *ctx = userdata;
        int r;

        r = conn_run(c, STMT_IDEM_FINISH,
                     BINDS(BT(ctx->principal), BT(ctx->key), BI(ctx->status), BT(ctx->body)));
        if (r < 0)
                return r;
        return r == 0 ? -ENOENT : 0;
}

static int sqlite_idem_finish(struct cm_store *base, const char *principal, const char *key, int status,
                              const char *body) {
        struct idem_ctx ctx = { .principal = principal, .key = key, .status = status, .body = body };

        if (!principal || !key || status <= 0)
                return -EINVAL;
        return store_write(to_sqlite(base), idem_finish_tx, &ctx);
}

static int sqlite_idem_abort(struct cm_store *base, const char *principal, const char *key) {
        if (!principal || !key)
                return -EINVAL;
        return write_stmt(base, STMT_IDEM_ABORT, BINDS(BT(principal), BT(key)), -ENOENT);
}

static int idem_expire_tx(struct sqlite_conn *c, void *userdata) {
        struct idem_ctx *ctx = userdata;
        return conn_run(c, STMT_IDEM_EXPIRE, BINDS(BI(ctx->now)));
}

static int sqlite_idem_expire(struct cm_store *base, uint64_t before) {
        struct idem_ctx ctx = { .now = before };

        if (before > INT64_MAX)
                return -EINVAL;
        return store_write(to_sqlite(base), idem_expire_tx, &ctx);
}

const struct cm_store_ops cm_store_sqlite_ops = {
        .name = "sqlite",
        .scheme = "sqlite",
        .open = sqlite_open,
        .close = sqlite_close,
        .migrate = sqlite_migrate,
        .ping = sqlite_ping,
        .env_create = sqlite_env_create,
        .env_get = sqlite_env_get,
        .env_list = sqlite_env_list,
        .env_delete = sqlite_env_delete,
        .env_policy_get = sqlite_env_policy_get,
        .env_policy_put = sqlite_env_policy_put,
        .env_settings_get = sqlite_env_settings_get,
        .env_settings_put = sqlite_env_settings_put,
        .event_list = sqlite_event_list,
        .event_history = sqlite_event_history,
        .event_last = sqlite_event_last,
        .event_prune = sqlite_event_prune,
        .webhook_create = sqlite_webhook_create,
        .webhook_get = sqlite_webhook_get,
        .webhook_list = sqlite_webhook_list,
        .webhook_delete = sqlite_webhook_delete,
        .webhook_record = sqlite_webhook_record,
        .webhook_deliveries = sqlite_webhook_deliveries,
        .addon_put = sqlite_addon_put,
        .addon_get = sqlite_addon_get,
        .addon_list = sqlite_addon_list,
        .addon_delete = sqlite_addon_delete,
        .install_put = sqlite_install_put,
        .install_get = sqlite_install_get,
        .install_list = sqlite_install_list,
        .install_request_uninstall = sqlite_install_request_uninstall,
        .install_claim = sqlite_install_claim,
        .install_finish = sqlite_install_finish,
        .install_remove = sqlite_install_remove,
        .install_schedule = sqlite_install_schedule,
        .cluster_set_health = sqlite_cluster_set_health,
        .apikey_create = sqlite_apikey_create,
        .apikey_list = sqlite_apikey_list,
        .apikey_revoke = sqlite_apikey_revoke,
        .apikey_touch = sqlite_apikey_touch,
        .rolebinding_create = sqlite_rolebinding_create,
        .rolebinding_list = sqlite_rolebinding_list,
        .rolebinding_delete = sqlite_rolebinding_delete,
        .audit_append = sqlite_audit_append,
        .audit_list = sqlite_audit_list,
        .apikey_get_by_hash = sqlite_apikey_get_by_hash,
        .apikey_count = sqlite_apikey_count,
        .cluster_get = sqlite_cluster_get,
        .cluster_get_by_id = sqlite_cluster_get_by_id,
        .cluster_list = sqlite_cluster_list,
        .cluster_list_each = sqlite_cluster_list_each,
        .env_clusters_version = sqlite_env_clusters_version,
        .change_counter = sqlite_change_counter,
        .cluster_count = sqlite_cluster_count,
        .cluster_create = sqlite_cluster_create,
        .cluster_update = sqlite_cluster_update,
        .cluster_set_status = sqlite_cluster_set_status,
        .op_get = sqlite_op_get,
        .op_list = sqlite_op_list,
        .op_claim = sqlite_op_claim,
        .op_heartbeat = sqlite_op_heartbeat,
        .op_finish = sqlite_op_finish,
        .op_release = sqlite_op_release,
        .op_cancel = sqlite_op_cancel,
        .op_stats = sqlite_op_stats,
        .op_log_append = sqlite_op_log_append,
        .op_log_read = sqlite_op_log_read,
        .idem_begin = sqlite_idem_begin,
        .idem_finish = sqlite_idem_finish,
        .idem_abort = sqlite_idem_abort,
        .idem_expire = sqlite_idem_expire,
};
