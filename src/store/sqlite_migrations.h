/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"

/*
 * The SQLite schema, as migrations compiled into the binary. Included by store/sqlite.c only.
 *
 * Rules: versions are 1, 2, 3... without gaps, in order; a released migration is never edited (add a
 * new one instead); each runs in one transaction together with its schema_migrations row, so a crash
 * leaves it applied or not at all. Enumerations are stored as their string names (api/model.h) so the
 * database stays readable with the sqlite3 shell; times are INTEGER microseconds since the epoch.
 * docs/internals/store.md explains every table and index.
 */

/* The time of the statement in microseconds since the epoch (whole milliseconds), for triggers. */
#define SQL_NOW_USEC "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER) * 1000"

struct sqlite_migration {
        int64_t version;
        const char *sql;
};

static const struct sqlite_migration sqlite_migrations[] = {
        { 1,
          "CREATE TABLE environments (\n"
          "        name TEXT PRIMARY KEY,\n"
          "        labels TEXT NOT NULL,\n"
          "        created INTEGER NOT NULL,\n"
          /* Moves on every write of one of the environment's clusters (triggers below). */
          "        clusters_version INTEGER NOT NULL DEFAULT 0\n"
          ") WITHOUT ROWID;\n"

          "CREATE TABLE apikeys (\n"
          "        id TEXT PRIMARY KEY,\n"
          "        name TEXT NOT NULL,\n"
          "        hash TEXT NOT NULL UNIQUE,\n"
          "        role TEXT NOT NULL,\n"
          "        created INTEGER NOT NULL,\n"
          "        expires INTEGER NOT NULL DEFAULT 0\n"
          ");\n"

          /* Keyed by (env, name): lists and reads by name walk one b-tree, no row lookups. */
          "CREATE TABLE clusters (\n"
          "        id TEXT NOT NULL UNIQUE,\n"
          "        env TEXT NOT NULL REFERENCES environments(name),\n"
          "        name TEXT NOT NULL,\n"
          "        engine TEXT NOT NULL,\n"
          "        labels TEXT NOT NULL,\n"
          "        spec TEXT NOT NULL,\n"
          "        generation INTEGER NOT NULL,\n"
          "        resource_version INTEGER NOT NULL,\n"
          "        phase TEXT NOT NULL,\n"
          "        conditions TEXT NOT NULL,\n"
          "        status TEXT NOT NULL,\n"
          "        observed_generation INTEGER NOT NULL,\n"
          "        created INTEGER NOT NULL,\n"
          "        updated INTEGER NOT NULL,\n"
          "        PRIMARY KEY (env, name)\n"
          ") WITHOUT ROWID;\n"

          /* No foreign key to clusters: operations and their logs outlive a deleted cluster. */
          "CREATE TABLE operations (\n"
          "        seq INTEGER PRIMARY KEY AUTOINCREMENT,\n"
          "        id TEXT NOT NULL UNIQUE,\n"
          "        env TEXT NOT NULL,\n"
          "        cluster_id TEXT NOT NULL,\n"
          "        cluster_name TEXT NOT NULL,\n"
          "        type TEXT NOT NULL CHECK (type IN ('create', 'update', 'delete')),\n"
          "        state TEXT NOT NULL\n"
          "                CHECK (state IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),\n"
          "        generation INTEGER NOT NULL,\n"
          "        attempts INTEGER NOT NULL DEFAULT 0,\n"
          "        max_attempts INTEGER NOT NULL DEFAULT 0,\n"
          "        error TEXT,\n"
          "        lease_owner TEXT,\n"
          "        lease_expires INTEGER NOT NULL DEFAULT 0,\n"
          "        next_run INTEGER NOT NULL DEFAULT 0,\n"
          "        cancel_requested INTEGER NOT NULL DEFAULT 0,\n"
          "        requested_by TEXT,\n"
          "        created INTEGER NOT NULL,\n"
          "        started INTEGER NOT NULL DEFAULT 0,\n"
          "        finished INTEGER NOT NULL DEFAULT 0\n"
          ");\n"
          /* At most one unfinished operation per cluster, enforced by the database. */
          "CREATE UNIQUE INDEX operations_unfinished ON operations(cluster_id)\n"
          "        WHERE state IN ('pending', 'running');\n"
          /* The claim query: runnable pending work by next_run, expired leases by lease_expires. */
          "CREATE INDEX operations_pending ON operations(next_run) WHERE state = 'pending';\n"
          "CREATE INDEX operations_running ON operations(lease_expires) WHERE state = 'running';\n"
          /* History of one cluster, newest first. */
          "CREATE INDEX operations_cluster ON operations(env, cluster_name, seq);\n"
          /* op_stats: a covering index scan instead of a table scan. */
          "CREATE INDEX operations_type_state ON operations(type, state);\n"

          /* The version readers compare to know whether a cached page of clusters is current. */
          "CREATE TRIGGER clusters_version_insert AFTER INSERT ON clusters BEGIN\n"
          "        UPDATE environments SET clusters_version = clusters_version + 1 WHERE name = NEW.env;\n"
          "END;\n"
          "CREATE TRIGGER clusters_version_update AFTER UPDATE ON clusters BEGIN\n"
          "        UPDATE environments SET clusters_version = clusters_version + 1 WHERE name = NEW.env;\n"
          "END;\n"
          "CREATE TRIGGER clusters_version_delete AFTER DELETE ON clusters BEGIN\n"
          "        UPDATE environments SET clusters_version = clusters_version + 1 WHERE name = OLD.env;\n"
          "END;\n"

          "CREATE TABLE op_log (\n"
          "        op_id TEXT NOT NULL REFERENCES operations(id) ON DELETE CASCADE,\n"
          "        seq INTEGER NOT NULL,\n"
          "        ts INTEGER NOT NULL,\n"
          "        text TEXT NOT NULL,\n"
          "        PRIMARY KEY (op_id, seq)\n"
          ") WITHOUT ROWID;\n"

          "CREATE TABLE idempotency (\n"
          "        principal TEXT NOT NULL,\n"
          "        key TEXT NOT NULL,\n"
          "        request_hash TEXT NOT NULL,\n"
          "        status INTEGER NOT NULL DEFAULT 0,\n"
          "        body TEXT,\n"
          "        created INTEGER NOT NULL,\n"
          "        PRIMARY KEY (principal, key)\n"
          ") WITHOUT ROWID;\n"
          "CREATE INDEX idempotency_created ON idempotency(created);\n" },

        /*
         * 2: operations on a running cluster (snapshot, restore, rotate-certs), with the request's
         * parameters and the operation's result. SQLite cannot change a CHECK constraint in place, so
         * the table is rebuilt. Dropping it would cascade into op_log (foreign keys are on and cannot
         * be switched off inside the migration's transaction), so op_log is moved aside first and
         * rebuilt after.
         */
        { 2,
          "CREATE TEMP TABLE op_log_move AS SELECT op_id, seq, ts, text FROM op_log;\n"
          "DROP TABLE op_log;\n"
          "CREATE TABLE operations_v2 (\n"
          "        seq INTEGER PRIMARY KEY AUTOINCREMENT,\n"
          "        id TEXT NOT NULL UNIQUE,\n"
          "        env TEXT NOT NULL,\n"
          "        cluster_id TEXT NOT NULL,\n"
          "        cluster_name TEXT NOT NULL,\n"
          "        type TEXT NOT NULL CHECK (type IN ('create', 'update', 'delete', 'snapshot', 'restore',\n"
          "                                           'rotate-certs')),\n"
          "        state TEXT NOT NULL\n"
          "                CHECK (state IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),\n"
          "        generation INTEGER NOT NULL,\n"
          "        attempts INTEGER NOT NULL DEFAULT 0,\n"
          "        max_attempts INTEGER NOT NULL DEFAULT 0,\n"
          "        error TEXT,\n"
          "        lease_owner TEXT,\n"
          "        lease_expires INTEGER NOT NULL DEFAULT 0,\n"
          "        next_run INTEGER NOT NULL DEFAULT 0,\n"
          "        cancel_requested INTEGER NOT NULL DEFAULT 0,\n"
          "        requested_by TEXT,\n"
          "        created INTEGER NOT NULL,\n"
          "        started INTEGER NOT NULL DEFAULT 0,\n"
          "        finished INTEGER NOT NULL DEFAULT 0,\n"
          "        params TEXT,\n"
          "        result TEXT\n"
          ");\n"
          "INSERT INTO operations_v2 (seq, id, env, cluster_id, cluster_name, type, state, generation,\n"
          "        attempts, max_attempts, error, lease_owner, lease_expires, next_run, cancel_requested,\n"
          "        requested_by, created, started, finished)\n"
          "    SELECT seq, id, env, cluster_id, cluster_name, type, state, generation, attempts,\n"
          "        max_attempts, error, lease_owner, lease_expires, next_run, cancel_requested,\n"
          "        requested_by, created, started, finished FROM operations;\n"
          "DROP TABLE operations;\n"
          "ALTER TABLE operations_v2 RENAME TO operations;\n"
          "CREATE UNIQUE INDEX operations_unfinished ON operations(cluster_id)\n"
          "        WHERE state IN ('pending', 'running');\n"
          "CREATE INDEX operations_pending ON operations(next_run) WHERE state = 'pending';\n"
          "CREATE INDEX operations_running ON operations(lease_expires) WHERE state = 'running';\n"
          "CREATE INDEX operations_cluster ON operations(env, cluster_name, seq);\n"
          "CREATE INDEX operations_type_state ON operations(type, state);\n"
          "CREATE TABLE op_log (\n"
          "        op_id TEXT NOT NULL REFERENCES operations(id) ON DELETE CASCADE,\n"
          "        seq INTEGER NOT NULL,\n"
          "        ts INTEGER NOT NULL,\n"
          "        text TEXT NOT NULL,\n"
          "        PRIMARY KEY (op_id, seq)\n"
          ") WITHOUT ROWID;\n"
          "INSERT INTO op_log (op_id, seq, ts, text) SELECT op_id, seq, ts, text FROM op_log_move;\n"
          "DROP TABLE op_log_move;\n" },

        /*
         * 3: compliance policies. Each environment's policy settings (what differs from the built-in
         * rules' defaults), versioned for If-Match; the decision recorded with each operation.
         */
        { 3, "CREATE TABLE env_policies (\n"
             "        env TEXT PRIMARY KEY REFERENCES environments(name) ON DELETE CASCADE,\n"
             "        settings TEXT NOT NULL,\n"
             "        version INTEGER NOT NULL,\n"
             "        updated INTEGER NOT NULL\n"
             ") WITHOUT ROWID;\n"
             "ALTER TABLE operations ADD COLUMN policy TEXT;\n" },

        /*
         * 4: access and audit. API keys get an owner, revocation and last use; role bindings grant a
         * role in one environment (or "*": all) to an API key, an OIDC user or an OIDC group; the
         * audit log is append-only and hash-chained (seq is never reused: no AUTOINCREMENT gaps are
         * needed, the chain itself shows a deleted record).
         */
        { 4, "ALTER TABLE apikeys ADD COLUMN owner TEXT;\n"
             "ALTER TABLE apikeys ADD COLUMN revoked INTEGER NOT NULL DEFAULT 0;\n"
             "ALTER TABLE apikeys ADD COLUMN last_used INTEGER NOT NULL DEFAULT 0;\n"
             "CREATE TABLE rolebindings (\n"
             "        id TEXT PRIMARY KEY,\n"
             "        env TEXT NOT NULL,\n"
             "        subject_kind TEXT NOT NULL CHECK (subject_kind IN ('apikey', 'user', 'group')),\n"
             "        subject TEXT NOT NULL,\n"
             "        role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),\n"
             "        created INTEGER NOT NULL,\n"
             "        created_by TEXT,\n"
             "        UNIQUE (env, subject_kind, subject)\n"
             ");\n"
             "CREATE TABLE audit (\n"
             "        seq INTEGER PRIMARY KEY,\n"
             "        ts INTEGER NOT NULL,\n"
             "        principal TEXT NOT NULL,\n"
             "        source TEXT NOT NULL,\n"
             "        request_id TEXT NOT NULL,\n"
             "        action TEXT NOT NULL,\n"
             "        resource TEXT NOT NULL,\n"
             "        outcome TEXT NOT NULL,\n"
             "        status INTEGER NOT NULL,\n"
             "        prev_hash TEXT NOT NULL,\n"
             "        hash TEXT NOT NULL\n"
             ");\n" },

        /*
         * 5: health monitoring. The monitor's last health summary of a cluster; events, written by
         * triggers in the transaction of the change they describe, so every phase change, condition
         * transition (status or reason) and operation start or end is recorded exactly once, whoever
         * wrote it; webhooks with their delivery cursor and log; per-environment monitor settings.
         */
        { 5,
          "ALTER TABLE clusters ADD COLUMN health TEXT;\n"
          "CREATE TABLE events (\n"
          "        seq INTEGER PRIMARY KEY AUTOINCREMENT,\n"
          "        ts INTEGER NOT NULL,\n"
          "        env TEXT NOT NULL,\n"
          "        cluster TEXT NOT NULL,\n"
          "        cluster_id TEXT NOT NULL,\n"
          "        type TEXT NOT NULL,\n"
          "        data TEXT NOT NULL\n"
          ");\n"
          "CREATE INDEX events_env ON events(env, seq);\n"
          "CREATE INDEX events_cluster ON events(cluster_id, type, seq);\n"
          "CREATE INDEX events_ts ON events(ts);\n"
          "CREATE TRIGGER events_cluster_insert AFTER INSERT ON clusters BEGIN\n"
          "        INSERT INTO events (ts, env, cluster, cluster_id, type, data) VALUES (" SQL_NOW_USEC
          ", NEW.env, NEW.name, NEW.id, 'PhaseChanged', json_object('phase', NEW.phase, "
          "'previousPhase', ''));\n"
          "END;\n"
          "CREATE TRIGGER events_cluster_delete AFTER DELETE ON clusters BEGIN\n"
          "        INSERT INTO events (ts, env, cluster, cluster_id, type, data) VALUES (" SQL_NOW_USEC
          ", OLD.env, OLD.name, OLD.id, 'PhaseChanged', json_object('phase', 'Deleted', "
          "'previousPhase', OLD.phase));\n"
          "END;\n"
          "CREATE TRIGGER events_cluster_phase AFTER UPDATE OF phase ON clusters\n"
          "        WHEN OLD.phase != NEW.phase BEGIN\n"
          "        INSERT INTO events (ts, env, cluster, cluster_id, type, data) VALUES (" SQL_NOW_USEC
          ", NEW.env, NEW.name, NEW.id, 'PhaseChanged', json_object('phase', NEW.phase, "
          "'previousPhase', OLD.phase));\n"
          "END;\n"
          /* A condition is new, or its status or reason changed (a new message alone is no event); */
          /* only object elements are looked into: ->> on a string element would fail the write. */
          "CREATE TRIGGER events_cluster_conditions AFTER UPDATE OF conditions ON clusters\n"
          "        WHEN OLD.conditions != NEW.conditions BEGIN\n"
          "        INSERT INTO events (ts, env, cluster, cluster_id, type, data)\n"
          "        SELECT " SQL_NOW_USEC ", NEW.env, NEW.name, NEW.id, 'ConditionChanged', json_object(\n"
          "                'condition', n.obj ->> '$.type', 'status', n.obj ->> '$.status',\n"
          "                'reason', coalesce(n.obj ->> '$.reason', ''),\n"
          "                'message', coalesce(n.obj ->> '$.message', ''),\n"
          "                'previousStatus', coalesce(o.obj ->> '$.status', ''),\n"
          "                'previousReason', coalesce(o.obj ->> '$.reason', ''))\n"
          "        FROM (SELECT key, CASE WHEN type = 'object' THEN value END AS obj FROM json_each(\n"
          "                CASE WHEN json_valid(NEW.conditions) THEN NEW.conditions ELSE '[]' END)) AS n\n"
          "        LEFT JOIN (SELECT CASE WHEN type = 'object' THEN value END AS obj FROM json_each(\n"
          "                CASE WHEN json_valid(OLD.conditions) THEN OLD.conditions ELSE '[]' END)) AS o\n"
          "                ON (o.obj ->> '$.type') = (n.obj ->> '$.type')\n"
          "        WHERE (n.obj ->> '$.type') IS NOT NULL AND (o.obj IS NULL OR\n"
          "                (o.obj ->> '$.status') IS NOT (n.obj ->> '$.status') OR\n"
          "                (o.obj ->> '$.reason') IS NOT (n.obj ->> '$.reason'))\n"
          "        ORDER BY n.key;\n"
          "END;\n"
          "CREATE TRIGGER events_operation_state AFTER UPDATE OF state ON operations\n"
          "        WHEN OLD.state != NEW.state AND NEW.state != 'pending' BEGIN\n"
          "        INSERT INTO events (ts, env, cluster, cluster_id, type, data) VALUES (" SQL_NOW_USEC
          ", NEW.env, NEW.cluster_name, NEW.cluster_id, CASE NEW.state WHEN 'running' THEN "
          "'OperationStarted' WHEN 'succeeded' THEN 'OperationSucceeded' WHEN 'failed' THEN "
          "'OperationFailed' ELSE 'OperationCancelled' END, json_object('operation', NEW.id, "
          "'operationType', NEW.type, 'attempt', NEW.attempts, 'message', coalesce(NEW.error, '')));\n"
          "END;\n"
          "CREATE TABLE env_settings (\n"
          "        env TEXT NOT NULL REFERENCES environments(name) ON DELETE CASCADE,\n"
          "        kind TEXT NOT NULL,\n"
          "        settings TEXT NOT NULL,\n"
          "        version INTEGER NOT NULL,\n"
          "        updated INTEGER NOT NULL,\n"
          "        PRIMARY KEY (env, kind)\n"
          ") WITHOUT ROWID;\n"
          "CREATE TABLE webhooks (\n"
          "        id TEXT PRIMARY KEY,\n"
          "        env TEXT NOT NULL REFERENCES environments(name) ON DELETE CASCADE,\n"
          "        name TEXT NOT NULL,\n"
          "        url TEXT NOT NULL,\n"
          "        secret TEXT NOT NULL,\n"
          "        events TEXT NOT NULL,\n"
          "        cursor INTEGER NOT NULL,\n"
          "        created INTEGER NOT NULL,\n"
          "        UNIQUE (env, name)\n"
          ");\n"
          "CREATE TABLE webhook_deliveries (\n"
          "        seq INTEGER PRIMARY KEY AUTOINCREMENT,\n"
          "        webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,\n"
          "        ts INTEGER NOT NULL,\n"
          "        event_seq INTEGER NOT NULL,\n"
          "        event_type TEXT NOT NULL,\n"
          "        attempt INTEGER NOT NULL,\n"
          "        status_code INTEGER NOT NULL,\n"
          "        outcome TEXT NOT NULL,\n"
          "        error TEXT NOT NULL,\n"
          "        duration INTEGER NOT NULL\n"
          ");\n"
          "CREATE INDEX webhook_deliveries_hook ON webhook_deliveries(webhook_id, seq);\n" },

        /*
         * 6: add-ons. Definitions per environment (gone with it, like its settings and webhooks);
         * installations per cluster (gone with it: an installation is the cluster's), which a
         * reconciler claims through a lease when they are due. A definition with installations is not
         * deleted (checked by the store). Events, by triggers as in 5, from the status the reconciler
         * writes (phase, the corrections counter) and from the removal of an uninstalled installation;
         * a cluster's deletion removes its installations without events. JSON columns are checked:
         * the triggers read them, and a bad document is the caller's error (-EINVAL), not the
         * event's. `values` is an SQL keyword, hence values_json.
         */
        { 6, "CREATE TABLE addons (\n"
             "        env TEXT NOT NULL REFERENCES environments(name) ON DELETE CASCADE,\n"
             "        name TEXT NOT NULL,\n"
             "        kind TEXT NOT NULL CHECK (kind IN ('manifest', 'helm')),\n"
             "        version TEXT NOT NULL,\n"
             "        baseline INTEGER NOT NULL CHECK (baseline IN (0, 1)),\n"
             "        doc TEXT NOT NULL CHECK (json_valid(doc)),\n"
             "        resource_version INTEGER NOT NULL,\n"
             "        created INTEGER NOT NULL,\n"
             "        updated INTEGER NOT NULL,\n"
             "        PRIMARY KEY (env, name)\n"
             ") WITHOUT ROWID;\n"
             "CREATE TABLE cluster_addons (\n"
             "        cluster_id TEXT NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,\n"
             "        addon TEXT NOT NULL,\n"
             "        values_json TEXT NOT NULL CHECK (CASE WHEN json_valid(values_json)\n"
             "                THEN json_type(values_json) = 'object' ELSE 0 END),\n"
             "        generation INTEGER NOT NULL,\n"
             "        uninstall INTEGER NOT NULL DEFAULT 0 CHECK (uninstall IN (0, 1)),\n"
             "        status TEXT NOT NULL DEFAULT '{}' CHECK (CASE WHEN json_valid(status)\n"
             "                THEN json_type(status) = 'object' ELSE 0 END),\n"
             "        inventory TEXT NOT NULL DEFAULT '[]' CHECK (CASE WHEN json_valid(inventory)\n"
             "                THEN json_type(inventory) = 'array' ELSE 0 END),\n"
             "        applied_key TEXT,\n"
             "        next_check INTEGER NOT NULL,\n"
             "        lease_owner TEXT,\n"
             "        lease_until INTEGER NOT NULL DEFAULT 0,\n"
             /* The definition's resource version when claimed: a change during the lease keeps it due. */
             "        lease_addon_version INTEGER NOT NULL DEFAULT 0,\n"
             "        resource_version INTEGER NOT NULL,\n"
             "        created INTEGER NOT NULL,\n"
             "        updated INTEGER NOT NULL,\n"
             "        PRIMARY KEY (cluster_id, addon)\n"
             ") WITHOUT ROWID;\n"
             /* The claim: due installations by next_check. */
             "CREATE INDEX cluster_addons_due ON cluster_addons(next_check);\n"
             /* The installations of one definition (in use, due again after a change). */
             "CREATE INDEX cluster_addons_addon ON cluster_addons(addon);\n"
             "CREATE TRIGGER events_addon_phase AFTER UPDATE OF status ON cluster_addons\n"
             "        WHEN (NEW.status ->> '$.phase') IS NOT NULL AND\n"
             "                (NEW.status ->> '$.phase') IS NOT (OLD.status ->> '$.phase') BEGIN\n"
             "        INSERT INTO events (ts, env, cluster, cluster_id, type, data)\n"
             "        SELECT " SQL_NOW_USEC ", c.env, c.name, c.id, 'AddonPhaseChanged', json_object(\n"
             "                'addon', NEW.addon, 'phase', NEW.status ->> '$.phase',\n"
             "                'previousPhase', coalesce(OLD.status ->> '$.phase', ''),\n"
             "                'reason', coalesce(NEW.status ->> '$.reason', ''),\n"
             "                'message', coalesce(NEW.status ->> '$.message', ''))\n"
             "        FROM clusters AS c WHERE c.id = NEW.cluster_id;\n"
             "END;\n"
             /* Only an integer counter counts: "3" or 2.5 would compare as something else. */
             "CREATE TRIGGER events_addon_drift AFTER UPDATE OF status ON cluster_addons\n"
             "        WHEN (CASE WHEN json_type(NEW.status, '$.corrections') = 'integer'\n"
             "                THEN NEW.status ->> '$.corrections' ELSE 0 END) >\n"
             "                (CASE WHEN json_type(OLD.status, '$.corrections') = 'integer'\n"
             "                THEN OLD.status ->> '$.corrections' ELSE 0 END) BEGIN\n"
             "        INSERT INTO events (ts, env, cluster, cluster_id, type, data)\n"
             "        SELECT " SQL_NOW_USEC ", c.env, c.name, c.id, 'AddonDriftCorrected', json_object(\n"
             "                'addon', NEW.addon,\n"
             "                'objects', coalesce(NEW.status -> '$.lastCorrection.objects', json_array()),\n"
             "                'count', NEW.status ->> '$.corrections')\n"
             "        FROM clusters AS c WHERE c.id = NEW.cluster_id;\n"
             "END;\n"
             /* The cluster's own deletion removes its installations after its row: no cluster, no event. */
             "CREATE TRIGGER events_addon_uninstalled AFTER DELETE ON cluster_addons\n"
             "        WHEN OLD.uninstall = 1 BEGIN\n"
             "        INSERT INTO events (ts, env, cluster, cluster_id, type, data)\n"
             "        SELECT " SQL_NOW_USEC ", c.env, c.name, c.id, 'AddonUninstalled',\n"
             "                json_object('addon', OLD.addon)\n"
             "        FROM clusters AS c WHERE c.id = OLD.cluster_id;\n"
             "END;\n" },
};
