//! The PostgreSQL state backend through its library API, against a real server on loopback:
//! migrations, compare-and-set writes, the advisory lock and its holder row, force-unlock,
//! the journal's durability and compaction, the append-only history.
#![cfg(feature = "postgres")]

mod common;

use common::postgres::{TestDatabase, database};
use reimage::state::history::{HistoryEntry, ServerOutcome, ServerTimings, WaveRecord};
use reimage::state::journal::{JournalEntry, JournalPhase, StepCall, StepOutcome, fold};
use reimage::state::postgres::PostgresStateStore;
use reimage::state::postgres::schema::MIGRATIONS;
use reimage::state::{State, StateError, StateStore, Unlocked};
use secrecy::SecretString;

fn store(db: &TestDatabase, name: &str) -> PostgresStateStore {
    PostgresStateStore::connect(&SecretString::from(db.url.clone()), name)
        .unwrap_or_else(|error| panic!("connect: {error}"))
}

fn entry(server: &str, phase: JournalPhase) -> JournalEntry {
    JournalEntry {
        plan_id: "plan-1".into(),
        server: server.into(),
        provider: "zl".into(),
        cloud_id: format!("id-{server}"),
        step: StepCall::Reinstall,
        at: "2026-01-01T00:00:00Z".into(),
        phase,
    }
}

fn intent(server: &str) -> JournalEntry {
    entry(
        server,
        JournalPhase::Intent {
            token: format!("t-{server}"),
            image: Some("img-new".into()),
            previous_image: Some("img-old".into()),
            success_record: None,
            baseline: None,
        },
    )
}

fn outcome(server: &str) -> JournalEntry {
    entry(
        server,
        JournalPhase::Outcome {
            outcome: StepOutcome::Succeeded,
            message: None,
            record: None,
        },
    )
}

#[test]
fn migrations_run_once_even_when_two_first_runs_race() {
    let Some(db) = database("migrations_run_once_even_when_two_first_runs_race") else {
        return;
    };
    let url = db.url.clone();
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                PostgresStateStore::connect(&SecretString::from(url), "default").map(|_| ())
            })
        })
        .collect();
    for racer in racers {
        racer.join().unwrap().unwrap();
    }
    // And again, later: a no-op.
    drop(store(&db, "default"));
    let versions = db.query("SELECT version FROM reimage_schema_version ORDER BY version");
    let expected: Vec<Vec<Option<String>>> = MIGRATIONS
        .iter()
        .map(|migration| vec![Some(migration.version.to_string())])
        .collect();
    assert_eq!(versions, expected);
    for table in [
        "reimage_state",
        "reimage_journal",
        "reimage_lock",
        "reimage_history",
    ] {
        assert_eq!(
            db.value(&format!("SELECT to_regclass('{table}') IS NOT NULL")),
            Some("t".into()),
            "{table}"
        );
    }
}

#[test]
fn two_writers_never_lose_an_update() {
    let Some(db) = database("two_writers_never_lose_an_update") else {
        return;
    };
    let first = store(&db, "default");
    let second = store(&db, "default");

    // Two first runs: each would create a state; the second one is a conflict.
    let mut ours = State::new();
    let mut theirs = State::new();
    {
        let lock = first.lock("test").unwrap();
        first.write(lock.as_ref(), &mut ours).unwrap();
    }
    {
        let lock = second.lock("test").unwrap();
        let error = second.write(lock.as_ref(), &mut theirs).unwrap_err();
        assert!(
            matches!(
                error,
                StateError::Conflict {
                    expected: 0,
                    found: 1,
                    ..
                }
            ),
            "{error}"
        );
    }

    // Both read serial 1; the second writes first; the first's write is refused.
    let mut stale = first.read().unwrap().unwrap();
    {
        let lock = second.lock("test").unwrap();
        let mut fresh = second.read().unwrap().unwrap();
        fresh.digest_key = "changed".into();
        second.write(lock.as_ref(), &mut fresh).unwrap();
        assert_eq!(fresh.serial, 2);
    }
    {
        let lock = first.lock("test").unwrap();
        let error = first.write(lock.as_ref(), &mut stale).unwrap_err();
        match error {
            StateError::Conflict {
                expected, found, ..
            } => assert_eq!((expected, found), (1, 2)),
            other => panic!("expected a conflict, got {other}"),
        }
    }
    let now = first.read().unwrap().unwrap();
    assert_eq!((now.serial, now.digest_key.as_str()), (2, "changed"));
    assert_eq!(
        db.value("SELECT serial FROM reimage_state WHERE name = 'default'"),
        Some("2".into())
    );
}

#[test]
fn the_lock_names_its_holder_and_goes_with_its_session() {
    let Some(db) = database("the_lock_names_its_holder_and_goes_with_its_session") else {
        return;
    };
    let holder = store(&db, "fleet");
    let waiter = store(&db, "fleet");
    let other_state = store(&db, "another-fleet");
    let lock = holder.lock("reimage apply").unwrap();
    let id = lock.info().id.clone();

    // Not re-entrant, even within one session.
    assert!(matches!(
        holder.lock("again"),
        Err(StateError::Locked { .. })
    ));
    let error = match waiter.lock("reimage plan") {
        Err(error) => error,
        Ok(_) => panic!("the lock is held"),
    };
    let message = error.to_string();
    assert!(message.contains("reimage apply"), "{message}");
    assert!(message.contains(&id), "{message}");
    assert!(
        message.contains(&std::process::id().to_string()),
        "{message}"
    );
    assert!(!message.contains(&db.password), "{message}");
    // Another state in the same database is not affected.
    drop(other_state.lock("reimage apply").unwrap());

    // The holder row says who holds it.
    let row = db.query("SELECT id, command, pid FROM reimage_lock WHERE state_name = 'fleet'");
    assert_eq!(
        row,
        [[
            Some(id.clone()),
            Some("reimage apply".into()),
            Some(std::process::id().to_string())
        ]]
    );

    // A live holder cannot be force-unlocked.
    let refused = waiter.force_unlock(&id).unwrap_err().to_string();
    assert!(refused.contains("live PostgreSQL session"), "{refused}");

    // The holder's session dies (as with kill -9): the lock goes with it, the row stays.
    std::mem::forget(lock);
    assert_eq!(db.end_lock_holders(), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let stale_id = loop {
        match waiter.force_unlock("not-the-id") {
            Err(error) if error.to_string().contains("does not match") => break id.clone(),
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            other => panic!("the stale row should remain: {other:?}"),
        }
    };
    let removed = waiter.force_unlock(&stale_id).unwrap();
    assert!(matches!(removed, Unlocked::Removed(ref holder) if holder.id == id));
    assert_eq!(waiter.force_unlock(&stale_id).unwrap(), Unlocked::NotLocked);
    let taken = waiter.lock("reimage plan").unwrap();
    assert_eq!(taken.info().command, "reimage plan");
    // The old holder's session is gone; it cannot write.
    assert!(holder.read().is_err());
}

#[test]
fn a_stale_holder_row_is_overwritten_by_the_next_holder() {
    let Some(db) = database("a_stale_holder_row_is_overwritten_by_the_next_holder") else {
        return;
    };
    let first = store(&db, "default");
    std::mem::forget(first.lock("reimage apply").unwrap());
    drop(first);
    assert_eq!(db.end_lock_holders(), 1);
    let second = store(&db, "default");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let lock = loop {
        match second.lock("reimage plan") {
            Ok(lock) => break lock,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            Err(error) => panic!("{error}"),
        }
    };
    assert_eq!(
        db.value("SELECT command FROM reimage_lock"),
        Some("reimage plan".into())
    );
    drop(lock);
    assert_eq!(
        db.value("SELECT count(*) FROM reimage_lock"),
        Some("0".into())
    );
}

#[test]
fn journal_entries_are_durable_on_return_and_compaction_keeps_steps_in_flight() {
    let Some(db) = database("journal_entries_are_durable_on_return") else {
        return;
    };
    let writer = store(&db, "default");
    let reader = store(&db, "default");
    let other = store(&db, "other");
    writer
        .journal()
        .append(&[intent("web-1"), intent("web-2")])
        .unwrap();
    // Committed: another session sees them at once.
    assert_eq!(reader.journal().read().unwrap().len(), 2);
    assert!(other.journal().read().unwrap().is_empty());
    writer.journal().append(&[outcome("web-1")]).unwrap();
    let columns = db.query("SELECT plan_id, server, step FROM reimage_journal ORDER BY id LIMIT 1");
    assert_eq!(
        columns,
        [[
            Some("plan-1".to_string()),
            Some("web-1".to_string()),
            Some("reinstall".to_string())
        ]]
    );
    writer.journal().compact().unwrap();
    let left = reader.journal().read().unwrap();
    assert_eq!(left, [intent("web-2")]);
    assert!(fold(&left)[0].in_flight());

    // An entry this reimage cannot read is an error, never skipped.
    db.execute(
        "INSERT INTO reimage_journal (state_name, plan_id, server, step, entry) \
         VALUES ('default', 'p', 's', 'reinstall', '{\"unknown\": true}')",
    )
    .unwrap();
    let error = reader.journal().read().unwrap_err();
    assert!(error.to_string().contains("cannot be read"), "{error}");
}

#[test]
fn history_is_append_only_and_lists_newest_last() {
    let Some(db) = database("history_is_append_only") else {
        return;
    };
    let store = store(&db, "default");
    let entry = |plan: &str| HistoryEntry {
        plan_id: Some(plan.into()),
        outcome: "succeeded".into(),
        message: None,
        user: "ci".into(),
        host: "runner-1".into(),
        pid: 42,
        command: "reimage apply".into(),
        ci_job_url: Some("https://ci.example/job/1".into()),
        git_commit: Some("abc".into()),
        started_at: "2026-01-01T00:00:00Z".into(),
        finished_at: "2026-01-01T00:01:00Z".into(),
        serial: 4,
        servers: [(
            "web-1".to_string(),
            ServerOutcome {
                outcome: "reinstalled".into(),
                message: None,
                request_id: Some("req-1".into()),
                // Timings and waves are new optional fields of the JSON entry: they round-trip
                // through the table without a migration.
                timings: Some(ServerTimings {
                    wave: Some(1),
                    queued_at: Some("2026-01-01T00:00:00Z".into()),
                    install_started_at: Some("2026-01-01T00:00:05Z".into()),
                    gate_ended_at: Some("2026-01-01T00:00:50Z".into()),
                    ..ServerTimings::default()
                }),
            },
        )]
        .into(),
        apply_id: Some(format!("apply-{plan}")),
        waves: vec![WaveRecord {
            index: 1,
            canary: true,
            group: None,
            servers: vec!["web-1".into()],
            started_at: "2026-01-01T00:00:00Z".into(),
            finished_at: "2026-01-01T00:00:55Z".into(),
        }],
    };
    for plan in ["p1", "p2", "p3"] {
        store.history().append(&entry(plan)).unwrap();
    }
    let all = store.history().list(None).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[2], entry("p3"));
    assert_eq!(
        store.history().list(Some(2)).unwrap()[0].plan_id.as_deref(),
        Some("p2")
    );
    assert_eq!(
        store.history().last().unwrap().unwrap().plan_id.as_deref(),
        Some("p3")
    );
    assert_eq!(
        db.value("SELECT servers->'web-1'->>'outcome' FROM reimage_history WHERE plan_id = 'p1'"),
        Some("reinstalled".into())
    );
    let refused = db.execute("DELETE FROM reimage_history").unwrap_err();
    assert!(refused.contains("append-only"), "{refused}");
    let refused = db
        .execute("UPDATE reimage_history SET outcome = 'x'")
        .unwrap_err();
    assert!(refused.contains("append-only"), "{refused}");
    assert_eq!(
        db.value("SELECT count(*) FROM reimage_history"),
        Some("3".into())
    );
}

#[test]
fn errors_and_locations_never_show_the_password() {
    let Some(db) = database("errors_and_locations_never_show_the_password") else {
        return;
    };
    let store = store(&db, "default");
    assert!(!store.location().contains(&db.password));
    assert!(store.location().contains(&db.name), "{}", store.location());
    let wrong = db.url.replace(&db.password, "not-the-password");
    let error = match PostgresStateStore::connect(&SecretString::from(wrong), "default") {
        Err(error) => error.to_string(),
        Ok(_) => panic!("a wrong password must not connect"),
    };
    assert!(error.contains("password authentication failed"), "{error}");
    assert!(!error.contains("not-the-password"), "{error}");
    assert!(!error.contains(&db.password), "{error}");
}
