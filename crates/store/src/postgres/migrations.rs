//! The PostgreSQL schema, versioned per component in `homebase_schema`.
//!
//! * [`MAIN`] mirrors SQLite's [`MIGRATIONS`](crate::sqlite::MIGRATIONS) version by version:
//!   `MAIN.migrations[i]` is SQLite's migration `i + 1` in PostgreSQL's dialect, so the two
//!   schemas always have the same version number. Port a new SQLite migration by appending its
//!   translation here (the test `main_mirrors_sqlite` fails until then). Dialect differences:
//!   `BIGINT` times, `BOOLEAN` flags, `BYTEA` blobs, an identity column `rowid` where SQLite's
//!   implicit rowid orders rows, `COLLATE "C"` for names listed in order (SQLite compares
//!   bytewise), and a unique index on `lower(email)` for SQLite's `COLLATE NOCASE`.
//! * [`CLUSTER`] holds what only several nodes need (the shared server secrets).
//! * [`LOGS`] is the log table (see [`logs`](super::logs)), versioned on its own as SQLite's log
//!   file is.
//!
//! Each component migrates in one transaction under an advisory lock, so nodes that start
//! together migrate once; a database whose version is newer than this Homebase knows is refused
//! with [`StoreError::SchemaTooNew`]. Never edit a released migration; append a new one.

use deadpool_postgres::Object;

use super::{execute, pg, query_opt};
use crate::error::{Result, StoreError};

/// One versioned part of the schema.
pub(crate) struct Component {
    pub(crate) name: &'static str,
    /// `migrations[i]` takes the component from version `i` to `i + 1`.
    pub(crate) migrations: &'static [&'static str],
}

pub(crate) const MAIN: Component = Component {
    name: "main",
    migrations: &[
        // 1: apps, keys, content-addressed deployments and their activation.
        r#"
        CREATE TABLE apps (
            id          TEXT PRIMARY KEY NOT NULL,
            name        TEXT NOT NULL,
            created_at  BIGINT NOT NULL,
            rowid       BIGINT GENERATED ALWAYS AS IDENTITY
        );

        -- `app_id` NULL: an admin key. Only the SHA-256 of a key is stored.
        CREATE TABLE api_keys (
            id            TEXT PRIMARY KEY NOT NULL,
            app_id        TEXT REFERENCES apps(id) ON DELETE CASCADE,
            name          TEXT NOT NULL,
            prefix        TEXT NOT NULL,
            hash          TEXT NOT NULL UNIQUE,
            created_at    BIGINT NOT NULL,
            last_used_at  BIGINT,
            rowid         BIGINT GENERATED ALWAYS AS IDENTITY
        );
        CREATE INDEX api_keys_app ON api_keys(app_id);

        -- File contents, once per distinct content (key: SHA-256 hex).
        CREATE TABLE blobs (
            hash     TEXT PRIMARY KEY NOT NULL,
            content  TEXT NOT NULL
        );

        -- Immutable; `id` is the content address of (entry, files, automations).
        CREATE TABLE deployments (
            id           TEXT PRIMARY KEY NOT NULL,
            entry        TEXT NOT NULL,
            automations  TEXT NOT NULL,
            created_at   BIGINT NOT NULL
        );

        CREATE TABLE deployment_files (
            deployment_id  TEXT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
            path           TEXT COLLATE "C" NOT NULL,
            blob_hash      TEXT NOT NULL REFERENCES blobs(hash),
            PRIMARY KEY (deployment_id, path)
        );
        CREATE INDEX deployment_files_blob ON deployment_files(blob_hash);

        -- The active deployment of each function.
        CREATE TABLE functions (
            app_id         TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
            name           TEXT COLLATE "C" NOT NULL,
            deployment_id  TEXT NOT NULL REFERENCES deployments(id),
            activated_at   BIGINT NOT NULL,
            PRIMARY KEY (app_id, name)
        );
        CREATE INDEX functions_deployment ON functions(deployment_id);

        -- Every activation (deploy or rollback) of each function; the newest is the active one.
        CREATE TABLE function_history (
            app_id         TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
            name           TEXT COLLATE "C" NOT NULL,
            sequence       BIGINT NOT NULL,
            deployment_id  TEXT NOT NULL REFERENCES deployments(id),
            activated_at   BIGINT NOT NULL,
            PRIMARY KEY (app_id, name, sequence)
        );
        CREATE INDEX function_history_deployment ON function_history(deployment_id);
        "#,
        // 2: app secrets, each value sealed with XChaCha20-Poly1305 under the master key.
        r#"
        CREATE TABLE secrets (
            app_id      TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
            name        TEXT COLLATE "C" NOT NULL,
            nonce       BYTEA NOT NULL,
            ciphertext  BYTEA NOT NULL,
            updated_at  BIGINT NOT NULL,
            PRIMARY KEY (app_id, name)
        );
        "#,
        // 3: app users (Argon2id password hashes), their one-time codes (SHA-256), auth settings.
        r#"
        CREATE TABLE users (
            id             TEXT PRIMARY KEY NOT NULL,
            app_id         TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
            email          TEXT NOT NULL,
            password_hash  TEXT,
            full_name      TEXT,
            role           TEXT NOT NULL CHECK (role IN ('user', 'admin')),
            is_verified    BOOLEAN NOT NULL,
            disabled       BOOLEAN NOT NULL,
            data           TEXT NOT NULL,
            created_at     BIGINT NOT NULL,
            updated_at     BIGINT NOT NULL,
            rowid          BIGINT GENERATED ALWAYS AS IDENTITY
        );
        -- SQLite's UNIQUE (app_id, email COLLATE NOCASE).
        CREATE UNIQUE INDEX users_app_email ON users(app_id, lower(email));

        CREATE TABLE user_codes (
            user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            purpose     TEXT NOT NULL CHECK (purpose IN ('verify', 'reset')),
            code_hash   TEXT NOT NULL,
            expires_at  BIGINT NOT NULL,
            attempts    BIGINT NOT NULL,
            PRIMARY KEY (user_id, purpose)
        );

        CREATE TABLE auth_settings (
            app_id                TEXT PRIMARY KEY NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
            require_verification  BOOLEAN NOT NULL
        );
        "#,
        // 4: what an app's functions may reach on the network besides the public internet
        // (`function-net-allow`): a JSON array of entries, checked by the server before it is stored.
        r#"
        CREATE TABLE app_net_allow (
            app_id      TEXT PRIMARY KEY NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
            entries     TEXT NOT NULL,
            updated_at  BIGINT NOT NULL
        );
        "#,
        // 5: a session epoch per user, part of its password stamp: disabling a user bumps it, so
        // the user's tokens stay void after it is enabled again. 0 keeps the stamps of before.
        r#"
        ALTER TABLE users ADD COLUMN session_epoch BIGINT NOT NULL DEFAULT 0;
        "#,
        // 6: rate-limit counters (login and mail limits), shared by the nodes: the count of the
        // window that ends at `expires_at` (milliseconds). Ended windows are swept.
        r#"
        CREATE TABLE limit_counters (
            key         TEXT PRIMARY KEY NOT NULL,
            count       BIGINT NOT NULL,
            expires_at  BIGINT NOT NULL
        );
        CREATE INDEX limit_counters_expiry ON limit_counters(expires_at);
        "#,
        // 7: app data (entities): schemas, records (declared fields as jsonb), the change outbox.
        // `tx` is the writing transaction's id: a reader takes only rows whose transaction is
        // older than every transaction still running (`pg_snapshot_xmin`), in (tx, seq) order,
        // so it never passes a change that commits later (see store/src/entities.rs).
        r#"
        CREATE TABLE entity_schemas (
            app_id      TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
            entity      TEXT COLLATE "C" NOT NULL,
            name        TEXT COLLATE "C" NOT NULL,
            schema      TEXT NOT NULL,
            updated_at  BIGINT NOT NULL,
            PRIMARY KEY (app_id, entity)
        );

        CREATE TABLE entity_records (
            app_id         TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
            entity         TEXT COLLATE "C" NOT NULL,
            id             TEXT COLLATE "C" NOT NULL,
            created_date   TEXT COLLATE "C" NOT NULL,
            updated_date   TEXT COLLATE "C" NOT NULL,
            created_by     TEXT COLLATE "C",
            created_by_id  TEXT COLLATE "C",
            is_sample      BOOLEAN NOT NULL DEFAULT FALSE,
            data           JSONB NOT NULL,
            PRIMARY KEY (app_id, entity, id)
        );
        CREATE INDEX entity_records_created ON entity_records(app_id, entity, created_date, id);
        CREATE INDEX entity_records_updated ON entity_records(app_id, entity, updated_date, id);
        -- NULLS FIRST: the order sorts use (missing values first, as on SQLite).
        CREATE INDEX entity_records_created_by ON entity_records(app_id, entity, created_by NULLS FIRST, id);
        CREATE INDEX entity_records_created_by_id ON entity_records(app_id, entity, created_by_id NULLS FIRST, id);

        CREATE TABLE entity_changes (
            seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            tx          XID8 NOT NULL DEFAULT pg_current_xact_id(),
            app_id      TEXT NOT NULL,
            entity      TEXT COLLATE "C" NOT NULL,
            record_id   TEXT COLLATE "C" NOT NULL,
            operation   TEXT NOT NULL CHECK (operation IN ('create', 'update', 'delete')),
            after       JSONB,
            before      JSONB,
            created_at  BIGINT NOT NULL
        );
        CREATE INDEX entity_changes_order ON entity_changes(tx, seq);
        CREATE INDEX entity_changes_app ON entity_changes(app_id, seq);
        "#,
    ],
};

pub(crate) const CLUSTER: Component = Component {
    name: "cluster",
    migrations: &[
        // 1: secrets the nodes share (the token signing key), created once by whichever node
        // asks first.
        r#"
        CREATE TABLE server_secrets (
            name        TEXT PRIMARY KEY NOT NULL,
            value       BYTEA NOT NULL,
            created_at  BIGINT NOT NULL
        );
        "#,
    ],
};

pub(crate) const LOGS: Component = Component {
    name: "logs",
    migrations: &[
        // 1: log lines, as SQLite's log database version 1, plus `seq`: the order lines were
        // committed in (inserts take a lock and number their lines from it), for following
        // the lines every node writes.
        r#"
        CREATE TABLE logs (
            id          BIGINT PRIMARY KEY,     -- assigned by the caller, grows with time
            time        BIGINT NOT NULL,        -- microseconds since the Unix epoch
            app_id      TEXT NOT NULL,
            function    TEXT NOT NULL,
            version     TEXT NOT NULL,          -- the deployment the worker ran
            level       SMALLINT NOT NULL,      -- 0 debug, 1 info, 2 warning, 3 error
            request_id  TEXT,
            system      BOOLEAN NOT NULL,       -- a line Homebase wrote about the worker
            message     TEXT NOT NULL,
            seq         BIGINT NOT NULL UNIQUE
        );
        CREATE INDEX logs_function_time ON logs(app_id, function, time);
        CREATE INDEX logs_app_time ON logs(app_id, time);
        CREATE SEQUENCE logs_seq AS BIGINT;
        "#,
        // 2: ids are the database's: every line's id is its `seq`, so the lines of several
        // nodes never collide and ids follow commit order. Earlier lines are renumbered so
        // (through negative numbers: no two rows share an id at any point).
        r#"
        UPDATE logs SET id = -seq;
        UPDATE logs SET id = -id;
        "#,
    ],
};

/// Brings `component` to its newest version in one transaction, or refuses a newer one.
pub(crate) async fn migrate(client: &Object, location: &str, schema: &str, component: Component) -> Result<()> {
    let supported = component.migrations.len() as i64;
    // A plain BEGIN keeps the shared reference (the connection is ours until it goes back to
    // the pool).
    client.batch_execute("BEGIN").await.map_err(pg)?;
    let result = async {
        super::lock(client, schema, &["migrate"]).await?;
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS homebase_schema (component TEXT PRIMARY KEY, version BIGINT NOT NULL)",
            )
            .await
            .map_err(pg)?;
        let found: i64 =
            query_opt(client, "SELECT version FROM homebase_schema WHERE component = $1", &[&component.name])
                .await?
                .map_or(0, |r| r.get(0));
        if found > supported {
            return Err(StoreError::SchemaTooNew {
                location: format!("{location} (schema {schema}, {} tables)", component.name),
                found,
                supported,
            });
        }
        if found == supported {
            return Ok(());
        }
        for (index, sql) in component.migrations.iter().enumerate().skip(found.max(0) as usize) {
            client.batch_execute(sql).await.map_err(|e| {
                StoreError::Database(format!(
                    "Migration of the {} tables to schema version {} failed: {}",
                    component.name,
                    index + 1,
                    pg(e)
                ))
            })?;
        }
        execute(
            client,
            "INSERT INTO homebase_schema (component, version) VALUES ($1, $2)
             ON CONFLICT (component) DO UPDATE SET version = excluded.version",
            &[&component.name, &supported],
        )
        .await?;
        Ok(())
    }
    .await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    client.batch_execute(end).await.map_err(pg)?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn main_mirrors_sqlite() {
        assert_eq!(
            MAIN.migrations.len(),
            crate::sqlite::MIGRATIONS.len(),
            "every SQLite migration needs its PostgreSQL translation in postgres/migrations.rs (MAIN)"
        );
    }
}
