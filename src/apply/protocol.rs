//! The journal protocol of one step (a stop, or a reinstall): the only code that writes the
//! journal, so the order of its entries cannot go wrong.
//!
//! ```text
//! open ─ intent (synced) ─▶ send ─┬─▶ accept ─ called ───────────────┬─▶ close ─ outcome
//!                                 └─▶ resend ─ resend (synced) ─▶ send ┘
//! ```
//!
//! A provider call may only be made with a [`SendPermit`], and only [`Protocol::open`] and
//! [`Protocol::resend`] hand one out, after the entry announcing the call is durable. An
//! [`OpenStep`] is made by `open` (or found open in the journal after a crash) and consumed by
//! [`Protocol::close`], so a step never ends twice and never ends without an outcome entry.

use crate::error::{Error, Result};
use crate::provider::Operation;
use crate::state::ServerRecord;
use crate::state::journal::{
    Baseline, Journal, JournalEntry, JournalPhase, StepCall, StepOutcome, StepState,
};

use super::records::now_text;

/// Which step of which server of which plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepKey {
    pub plan_id: String,
    pub server: String,
    pub provider: String,
    pub cloud_id: String,
    pub step: StepCall,
}

/// What the intent entry records before the first call.
#[derive(Debug, Clone)]
pub struct Intent {
    /// Deterministic per (plan, server, step); the idempotency token where the API takes one.
    pub token: String,
    /// The image a reinstall installs.
    pub image: Option<String>,
    /// The image seen at plan time.
    pub previous_image: Option<String>,
    /// What the state records if the step succeeds, prepared now so that a crash after the
    /// install can still be recorded exactly.
    pub success_record: Option<ServerRecord>,
    /// The server as read right before the call.
    pub baseline: Option<Baseline>,
}

/// A journaled step that has not ended. Not `Clone`: one owner, consumed by
/// [`Protocol::close`].
#[derive(Debug)]
pub struct OpenStep {
    key: StepKey,
    token: String,
    sends: u32,
    accepted: Option<Operation>,
}

impl OpenStep {
    /// A step the journal shows open (after a crash or Ctrl-C), taken over as it stands.
    pub fn from_journal(state: &StepState) -> OpenStep {
        OpenStep {
            key: StepKey {
                plan_id: state.plan_id.clone(),
                server: state.server.clone(),
                provider: state.provider.clone(),
                cloud_id: state.cloud_id.clone(),
                step: state.step,
            },
            token: state.token.clone().unwrap_or_default(),
            sends: state.sends.max(1),
            accepted: state.operation.clone(),
        }
    }

    pub fn key(&self) -> &StepKey {
        &self.key
    }

    pub fn step(&self) -> StepCall {
        self.key.step
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Calls made under this step so far (the first one included).
    pub fn sends(&self) -> u32 {
        self.sends
    }

    /// The operation the provider accepted, once it did.
    pub fn accepted(&self) -> Option<&Operation> {
        self.accepted.as_ref()
    }
}

/// Leave to make one provider call for a step: the journal already holds the entry that
/// announces it. Made only here; consumed by the call.
#[derive(Debug)]
#[must_use = "a permit is the leave to make one call: send it, or the step stays unsent"]
pub struct SendPermit {
    server: String,
    attempt: u32,
}

impl SendPermit {
    pub fn server(&self) -> &str {
        &self.server
    }

    /// 1 for the first call of a step, then 2, 3, … for resends.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

/// Writes the journal of an apply in the only order it may have.
pub struct Protocol<'a> {
    journal: &'a dyn Journal,
}

impl<'a> Protocol<'a> {
    pub fn new(journal: &'a dyn Journal) -> Self {
        Protocol { journal }
    }

    fn append(&self, entries: Vec<JournalEntry>) -> Result<()> {
        self.journal
            .append(&entries)
            .map_err(|error| Error::State(error.into()))?;
        crash_point::passed();
        Ok(())
    }

    fn entry(key: &StepKey, phase: JournalPhase) -> JournalEntry {
        JournalEntry {
            plan_id: key.plan_id.clone(),
            server: key.server.clone(),
            provider: key.provider.clone(),
            cloud_id: key.cloud_id.clone(),
            step: key.step,
            at: now_text(),
            phase,
        }
    }

    /// Opens steps: their intents are synced in one write, then each gets the leave for its
    /// first call.
    pub fn open(&self, steps: Vec<(StepKey, Intent)>) -> Result<Vec<(OpenStep, SendPermit)>> {
        if steps.is_empty() {
            return Ok(Vec::new());
        }
        let entries = steps
            .iter()
            .map(|(key, intent)| {
                Self::entry(
                    key,
                    JournalPhase::Intent {
                        token: intent.token.clone(),
                        image: intent.image.clone(),
                        previous_image: intent.previous_image.clone(),
                        success_record: intent.success_record.clone().map(Box::new),
                        baseline: intent.baseline.clone(),
                    },
                )
            })
            .collect();
        self.append(entries)?;
        Ok(steps
            .into_iter()
            .map(|(key, intent)| {
                let permit = SendPermit {
                    server: key.server.clone(),
                    attempt: 1,
                };
                let step = OpenStep {
                    key,
                    token: intent.token,
                    sends: 1,
                    accepted: None,
                };
                (step, permit)
            })
            .collect())
    }

    /// Announces that the step's call is sent again (it was shown not to have acted, or its
    /// idempotency token makes a repeat harmless) and gives the leave for it.
    pub fn resend(&self, step: &mut OpenStep, reason: &str) -> Result<SendPermit> {
        let attempt = step.sends + 1;
        self.append(vec![Self::entry(
            &step.key,
            JournalPhase::Resend {
                attempt,
                reason: reason.to_string(),
            },
        )])?;
        step.sends = attempt;
        Ok(SendPermit {
            server: step.key.server.clone(),
            attempt,
        })
    }

    /// Records that the provider took the call (or that the server shows it did).
    pub fn accept(&self, step: &mut OpenStep, operation: &Operation) -> Result<()> {
        self.append(vec![Self::entry(
            &step.key,
            JournalPhase::Called {
                operation: operation.clone(),
            },
        )])?;
        step.accepted = Some(operation.clone());
        Ok(())
    }

    /// Ends the step with its outcome and the record the state gets for it.
    pub fn close(
        &self,
        step: OpenStep,
        outcome: StepOutcome,
        message: Option<String>,
        record: Option<ServerRecord>,
    ) -> Result<()> {
        self.append(vec![Self::entry(
            &step.key,
            JournalPhase::Outcome {
                outcome,
                message,
                record: record.map(Box::new),
            },
        )])
    }
}

/// Crash injection for the crash tests: with `REIMAGE_TEST_CRASH_AFTER_JOURNAL_WRITE=N`, the
/// process aborts (no destructors, no flush: as `kill -9` would) right after the Nth journal
/// write of this process, so a test can stop an apply between any two journal writes.
mod crash_point {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    const VARIABLE: &str = "REIMAGE_TEST_CRASH_AFTER_JOURNAL_WRITE";

    static WRITES: AtomicU64 = AtomicU64::new(0);

    fn limit() -> Option<u64> {
        static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
        *LIMIT.get_or_init(|| {
            std::env::var(VARIABLE)
                .ok()
                .and_then(|text| text.trim().parse().ok())
        })
    }

    pub fn passed() {
        let Some(limit) = limit() else { return };
        if WRITES.fetch_add(1, Ordering::SeqCst) + 1 == limit {
            eprintln!("{VARIABLE}={limit}: aborting after journal write {limit}");
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::journal::{LocalJournal, fold};

    fn key(server: &str) -> StepKey {
        StepKey {
            plan_id: "p".into(),
            server: server.into(),
            provider: "zl".into(),
            cloud_id: format!("id-{server}"),
            step: StepCall::Reinstall,
        }
    }

    fn intent() -> Intent {
        Intent {
            token: "t".into(),
            image: Some("img".into()),
            previous_image: None,
            success_record: None,
            baseline: None,
        }
    }

    #[test]
    fn each_call_is_announced_before_its_permit_and_the_outcome_closes_the_step() {
        let dir = tempfile::tempdir().unwrap();
        let journal = LocalJournal::new(dir.path().join("j"));
        let protocol = Protocol::new(&journal);
        let mut opened = protocol.open(vec![(key("a"), intent())]).unwrap();
        let (mut step, permit) = opened.remove(0);
        assert_eq!(permit.attempt(), 1);
        // The intent is durable before the permit exists.
        let steps = fold(&journal.read().unwrap());
        assert_eq!(steps[0].sends, 1);
        assert!(steps[0].in_flight());

        let again = protocol.resend(&mut step, "not acted").unwrap();
        assert_eq!(again.attempt(), 2);
        assert_eq!(fold(&journal.read().unwrap())[0].sends, 2);

        protocol
            .close(step, StepOutcome::Refused, Some("no".into()), None)
            .unwrap();
        let steps = fold(&journal.read().unwrap());
        assert!(!steps[0].in_flight());
        assert_eq!(
            steps[0].outcome,
            Some((StepOutcome::Refused, Some("no".into())))
        );
    }

    #[test]
    fn a_step_found_open_keeps_its_sends_and_operation() {
        let dir = tempfile::tempdir().unwrap();
        let journal = LocalJournal::new(dir.path().join("j"));
        let protocol = Protocol::new(&journal);
        let (mut step, _permit) = protocol.open(vec![(key("a"), intent())]).unwrap().remove(0);
        let _ = protocol.resend(&mut step, "x").unwrap();
        let operation = Operation {
            server: "a".into(),
            cloud_id: "id-a".into(),
            image: "img".into(),
            job_id: Some("job".into()),
            request_id: None,
            started_at_ms: 0,
            previous_image: None,
        };
        protocol.accept(&mut step, &operation).unwrap();
        let found = OpenStep::from_journal(&fold(&journal.read().unwrap())[0]);
        assert_eq!(found.sends(), 2);
        assert_eq!(found.accepted(), Some(&operation));
        assert_eq!(found.token(), "t");
    }
}
