//! The tables reimage keeps in PostgreSQL, created and migrated by reimage itself.
//!
//! Migrations are ordered SQL in code; `reimage_schema_version` records each one applied. They
//! run in one transaction under a transaction-level advisory lock, so two first runs at once
//! do not race: the second waits, then finds nothing left to do.

use super::connection::{CallResult, Session, describe};

/// One step of the schema, applied once, in order.
pub struct Migration {
    pub version: i32,
    pub description: &'static str,
    pub sql: &'static str,
}

/// Every migration, oldest first. Append only: never edit one that has shipped.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "state, journal, lock holders, history of applies",
    sql: r#"
CREATE TABLE reimage_state (
    name       text PRIMARY KEY,
    lineage    text NOT NULL,
    serial     bigint NOT NULL CHECK (serial >= 0),
    body       jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Apply steps, written before each provider call; one row per journal entry.
CREATE TABLE reimage_journal (
    id         bigserial PRIMARY KEY,
    state_name text NOT NULL,
    plan_id    text NOT NULL,
    server     text NOT NULL,
    step       text NOT NULL,
    entry      jsonb NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reimage_journal_by_state ON reimage_journal (state_name, id);

-- Who holds the advisory lock of a state. The lock itself is the session's; a row whose
-- session is gone is stale (the next holder overwrites it, `force-unlock` removes it).
CREATE TABLE reimage_lock (
    state_name  text PRIMARY KEY,
    id          text NOT NULL,
    backend_pid integer NOT NULL,
    user_name   text NOT NULL,
    host        text NOT NULL,
    pid         bigint NOT NULL,
    command     text NOT NULL,
    ci_job_url  text,
    since       timestamptz NOT NULL DEFAULT now()
);

-- One row per apply, never changed once written.
CREATE TABLE reimage_history (
    id          bigserial PRIMARY KEY,
    state_name  text NOT NULL,
    plan_id     text,
    outcome     text NOT NULL,
    user_name   text NOT NULL,
    host        text NOT NULL,
    git_commit  text,
    ci_job_url  text,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    servers     jsonb NOT NULL,
    entry       jsonb NOT NULL
);
CREATE INDEX reimage_history_by_state ON reimage_history (state_name, id);
CREATE FUNCTION reimage_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'reimage_history is append-only';
END
$$;
CREATE TRIGGER reimage_history_append_only BEFORE UPDATE OR DELETE ON reimage_history
    FOR EACH ROW EXECUTE FUNCTION reimage_history_append_only();
"#,
}];

/// The transaction-level advisory lock key that serializes migrations (any fixed number that
/// no state's key can equal: state keys come from a hash with the top bit set, see
/// `super::lock_key`).
pub const MIGRATION_LOCK_KEY: i64 = 0x7265_696d_6167_6501; // "reimage\x01"

/// The migrations `applied` (the versions in the database) still lacks, in order; an error
/// if the database was migrated by a newer reimage.
pub fn pending(applied: i32) -> Result<Vec<&'static Migration>, String> {
    let known = MIGRATIONS.last().map_or(0, |migration| migration.version);
    if applied > known {
        return Err(format!(
            "the database's reimage tables are at schema version {applied}, made by a newer \
             reimage; this one knows up to version {known}: upgrade reimage"
        ));
    }
    Ok(MIGRATIONS
        .iter()
        .filter(|migration| migration.version > applied)
        .collect())
}

/// Brings the tables up to date; returns the versions it applied (empty when up to date).
pub async fn migrate(session: &mut Session) -> CallResult<Vec<i32>> {
    let transaction = session
        .client
        .transaction()
        .await
        .map_err(|error| describe(&error))?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(|error| describe(&error))?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS reimage_schema_version (
                 version      integer PRIMARY KEY,
                 description  text NOT NULL,
                 tool_version text NOT NULL,
                 applied_at   timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(|error| migration_error(0, &error))?;
    let applied: i32 = transaction
        .query_one(
            "SELECT coalesce(max(version), 0) FROM reimage_schema_version",
            &[],
        )
        .await
        .map_err(|error| describe(&error))?
        .get(0);
    let mut done = Vec::new();
    for migration in pending(applied)? {
        transaction
            .batch_execute(migration.sql)
            .await
            .map_err(|error| migration_error(migration.version, &error))?;
        transaction
            .execute(
                "INSERT INTO reimage_schema_version (version, description, tool_version) \
                 VALUES ($1, $2, $3)",
                &[
                    &migration.version,
                    &migration.description,
                    &env!("CARGO_PKG_VERSION"),
                ],
            )
            .await
            .map_err(|error| describe(&error))?;
        done.push(migration.version);
    }
    transaction
        .commit()
        .await
        .map_err(|error| describe(&error))?;
    Ok(done)
}

fn migration_error(version: i32, error: &tokio_postgres::Error) -> String {
    format!(
        "cannot create reimage's tables (schema version {version}): {}; the role in the URL \
         needs the right to create tables in the database's schema",
        describe(error)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_one_by_one_from_one() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(
                migration.version,
                index as i32 + 1,
                "{}",
                migration.description
            );
            assert!(!migration.sql.trim().is_empty());
        }
    }

    #[test]
    fn pending_migrations_come_in_order_and_a_newer_database_is_refused() {
        let all: Vec<i32> = pending(0).unwrap().iter().map(|m| m.version).collect();
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(all, sorted);
        assert_eq!(all.len(), MIGRATIONS.len());
        let latest = MIGRATIONS.len() as i32;
        assert!(pending(latest).unwrap().is_empty());
        let error = pending(latest + 1).err().unwrap();
        assert!(error.contains("newer reimage"), "{error}");
    }

    #[test]
    fn the_migration_lock_is_not_a_state_lock() {
        const { assert!(MIGRATION_LOCK_KEY > 0, "state keys are negative") };
        assert!(super::super::lock_key("default") < 0);
    }
}
