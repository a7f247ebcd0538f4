//! The journal and the history of one state, as rows.
//!
//! Journal entries are stored as their JSON, with the plan id, server and step beside it as
//! columns (read from that JSON, so the entry type may grow without a migration).

use std::sync::Arc;

use super::Db;
use super::connection::describe;
use crate::state::history::{History, HistoryEntry, HistoryError};
use crate::state::journal::{Journal, JournalEntry, JournalError, fold};

pub(super) struct PostgresJournal {
    db: Arc<Db>,
}

impl PostgresJournal {
    pub(super) fn new(db: Arc<Db>) -> Self {
        PostgresJournal { db }
    }

    fn error(&self, message: impl std::fmt::Display) -> JournalError {
        JournalError {
            path: self.db.location.clone(),
            message: message.to_string(),
        }
    }
}

/// The text of `field` in an entry's JSON (the columns beside it).
fn text_field(entry: &serde_json::Value, field: &str) -> String {
    entry
        .get(field)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Parses rows of (id, entry); an entry this reimage cannot read is an error, never skipped:
/// it may be the intent of an install in flight.
fn parse_entries(rows: Vec<(i64, serde_json::Value)>) -> Result<Vec<(i64, JournalEntry)>, String> {
    rows.into_iter()
        .map(|(id, entry)| {
            serde_json::from_value::<JournalEntry>(entry)
                .map(|entry| (id, entry))
                .map_err(|error| {
                    format!(
                        "journal row {id} cannot be read by this reimage ({error}); it may be \
                         written by another version: run that version to finish its apply"
                    )
                })
        })
        .collect()
}

impl Journal for PostgresJournal {
    /// Inserts the entries in one transaction; returns after it committed.
    fn append(&self, entries: &[JournalEntry]) -> Result<(), JournalError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(entries.len());
        for entry in entries {
            let value = serde_json::to_value(entry).map_err(|error| self.error(error))?;
            let key = (
                text_field(&value, "plan_id"),
                text_field(&value, "server"),
                text_field(&value, "step"),
            );
            rows.push((key, value));
        }
        let name = self.db.name.clone();
        self.db
            .call(move |session| {
                Box::pin(async move {
                    let transaction = session
                        .client
                        .transaction()
                        .await
                        .map_err(|error| describe(&error))?;
                    let insert = transaction
                        .prepare(
                            "INSERT INTO reimage_journal (state_name, plan_id, server, step, entry) \
                             VALUES ($1, $2, $3, $4, $5)",
                        )
                        .await
                        .map_err(|error| describe(&error))?;
                    for ((plan_id, server, step), entry) in &rows {
                        transaction
                            .execute(&insert, &[&name, plan_id, server, step, entry])
                            .await
                            .map_err(|error| describe(&error))?;
                    }
                    transaction
                        .commit()
                        .await
                        .map_err(|error| describe(&error))
                })
            })
            .map_err(|message| self.error(message))
    }

    fn read(&self) -> Result<Vec<JournalEntry>, JournalError> {
        let name = self.db.name.clone();
        let rows = self
            .db
            .call(move |session| {
                Box::pin(async move {
                    let rows = session
                        .client
                        .query(
                            "SELECT id, entry FROM reimage_journal WHERE state_name = $1 \
                             ORDER BY id",
                            &[&name],
                        )
                        .await
                        .map_err(|error| describe(&error))?;
                    Ok(rows
                        .iter()
                        .map(|row| (row.get::<_, i64>(0), row.get::<_, serde_json::Value>(1)))
                        .collect::<Vec<_>>())
                })
            })
            .map_err(|message| self.error(message))?;
        let entries = parse_entries(rows).map_err(|message| self.error(message))?;
        Ok(entries.into_iter().map(|(_, entry)| entry).collect())
    }

    /// Deletes the rows of finished steps, keeping those still in flight, in one transaction.
    fn compact(&self) -> Result<(), JournalError> {
        let name = self.db.name.clone();
        self.db
            .call(move |session| {
                Box::pin(async move {
                    let transaction = session
                        .client
                        .transaction()
                        .await
                        .map_err(|error| describe(&error))?;
                    let rows = transaction
                        .query(
                            "SELECT id, entry FROM reimage_journal WHERE state_name = $1 \
                             ORDER BY id FOR UPDATE",
                            &[&name],
                        )
                        .await
                        .map_err(|error| describe(&error))?;
                    let entries = parse_entries(
                        rows.iter()
                            .map(|row| (row.get::<_, i64>(0), row.get::<_, serde_json::Value>(1)))
                            .collect(),
                    )?;
                    let plain: Vec<JournalEntry> =
                        entries.iter().map(|(_, entry)| entry.clone()).collect();
                    let finished: std::collections::HashSet<_> = fold(&plain)
                        .into_iter()
                        .filter(|step| !step.in_flight())
                        .map(|step| (step.plan_id, step.server, step.step))
                        .collect();
                    let done: Vec<i64> = entries
                        .iter()
                        .filter(|(_, entry)| {
                            finished.contains(&(
                                entry.plan_id.clone(),
                                entry.server.clone(),
                                entry.step,
                            ))
                        })
                        .map(|(id, _)| *id)
                        .collect();
                    if !done.is_empty() {
                        transaction
                            .execute("DELETE FROM reimage_journal WHERE id = ANY($1)", &[&done])
                            .await
                            .map_err(|error| describe(&error))?;
                    }
                    transaction.commit().await.map_err(|error| describe(&error))
                })
            })
            .map_err(|message| self.error(message))
    }
}

pub(super) struct PostgresHistory {
    db: Arc<Db>,
}

impl PostgresHistory {
    pub(super) fn new(db: Arc<Db>) -> Self {
        PostgresHistory { db }
    }

    fn error(&self, message: impl std::fmt::Display) -> HistoryError {
        HistoryError {
            location: self.db.location.clone(),
            message: message.to_string(),
        }
    }
}

impl History for PostgresHistory {
    fn append(&self, entry: &HistoryEntry) -> Result<(), HistoryError> {
        let value = serde_json::to_value(entry).map_err(|error| self.error(error))?;
        let servers = serde_json::to_value(&entry.servers).map_err(|error| self.error(error))?;
        let entry = entry.clone();
        let name = self.db.name.clone();
        self.db
            .call(move |session| {
                Box::pin(async move {
                    session
                        .client
                        .execute(
                            "INSERT INTO reimage_history (state_name, plan_id, outcome, user_name, \
                             host, git_commit, ci_job_url, started_at, finished_at, servers, entry) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::timestamptz, \
                             $9::text::timestamptz, $10, $11)",
                            &[
                                &name,
                                &entry.plan_id,
                                &entry.outcome,
                                &entry.user,
                                &entry.host,
                                &entry.git_commit,
                                &entry.ci_job_url,
                                &entry.started_at,
                                &entry.finished_at,
                                &servers,
                                &value,
                            ],
                        )
                        .await
                        .map(|_| ())
                        .map_err(|error| describe(&error))
                })
            })
            .map_err(|message| self.error(message))
    }

    fn list(&self, limit: Option<usize>) -> Result<Vec<HistoryEntry>, HistoryError> {
        let name = self.db.name.clone();
        let limit = limit.map(|limit| i64::try_from(limit).unwrap_or(i64::MAX));
        let values = self
            .db
            .call(move |session| {
                Box::pin(async move {
                    let rows = session
                        .client
                        .query(
                            "SELECT entry FROM reimage_history WHERE state_name = $1 \
                             ORDER BY id DESC LIMIT $2",
                            &[&name, &limit],
                        )
                        .await
                        .map_err(|error| describe(&error))?;
                    Ok(rows
                        .iter()
                        .map(|row| row.get::<_, serde_json::Value>(0))
                        .collect::<Vec<_>>())
                })
            })
            .map_err(|message| self.error(message))?;
        let mut entries = values
            .into_iter()
            .map(serde_json::from_value::<HistoryEntry>)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| self.error(format!("a history row cannot be read: {error}")))?;
        entries.reverse();
        Ok(entries)
    }
}
