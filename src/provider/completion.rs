//! When is a reinstall without a job id done? Shared by the providers that read completion from
//! the server itself (Zenlayer, JD Cloud, Huawei CloudDC): their APIs return no task to follow,
//! and a server reads "running" both before the install has visibly started and after it ended.
//!
//! A server that reads settled again (running, or whatever the provider's end state is) proves
//! the install done only when one of these holds, strongest first:
//! 1. a poll saw it installing since the reinstall call ([`InstallingSeen`] remembers that);
//! 2. its image moved from the one seen at plan time to the desired one (even if every poll
//!    missed the installing window);
//! 3. the provider's grace after the call is over: an install that has still not shown by then
//!    is taken as one that ran between two polls.
//!
//! Until then the settled server may be its old self, so the install counts as not started.
//! [`judge_settled`] is pure; the providers turn its verdict into their own messages.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::Operation;

/// Per server, whether its current install was seen in progress at least once (in this process).
#[derive(Debug, Default)]
pub struct InstallingSeen {
    cloud_ids: Mutex<HashSet<String>>,
}

impl InstallingSeen {
    /// Forgets earlier sightings: a new install starts, and an "installing" seen for an earlier
    /// one says nothing about it.
    pub fn forget(&self, cloud_id: &str) {
        self.lock().remove(cloud_id);
    }

    /// Records one reading of `cloud_id` (`installing_now`: it reads installing) and returns
    /// whether its current install has been seen installing so far, this reading included.
    pub fn record(&self, cloud_id: &str, installing_now: bool) -> bool {
        let mut seen = self.lock();
        if installing_now {
            seen.insert(cloud_id.to_string());
        }
        seen.contains(cloud_id)
    }

    fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        // The set holds plain ids; a panic elsewhere cannot leave it inconsistent.
        self.cloud_ids
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What proved that the install ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// A poll saw the server installing.
    SeenInstalling,
    /// The image moved from the planned one to the desired one.
    ImageMoved,
    /// Only the grace ran out: nothing was seen, so completion is inferred (worth a note).
    GraceOver,
}

/// The verdict on a server that reads settled again after a reinstall call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettledVerdict {
    /// No proof yet that the install ran: the server may still show its old self.
    NotStarted,
    /// The install ran and ended on the desired image.
    Installed(Proof),
    /// The install ran and ended on another image than the desired one.
    OtherImage,
}

/// Judges a server that reads settled, `now_ms` (Unix ms), with `current_image` as read now,
/// `installing_seen` from [`InstallingSeen::record`] and the provider's `grace` after the call.
pub fn judge_settled(
    operation: &Operation,
    current_image: Option<&str>,
    installing_seen: bool,
    now_ms: i64,
    grace: Duration,
) -> SettledVerdict {
    let on_desired = current_image == Some(operation.image.as_str());
    let image_moved = on_desired
        && operation
            .previous_image
            .as_deref()
            .is_some_and(|previous| previous != operation.image);
    let elapsed_ms = now_ms.saturating_sub(operation.started_at_ms);
    let grace_over = i128::from(elapsed_ms) > grace.as_millis() as i128;
    let proof = if installing_seen {
        Proof::SeenInstalling
    } else if image_moved {
        Proof::ImageMoved
    } else if grace_over {
        Proof::GraceOver
    } else {
        return SettledVerdict::NotStarted;
    };
    if on_desired {
        SettledVerdict::Installed(proof)
    } else {
        SettledVerdict::OtherImage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(120);
    const STARTED_MS: i64 = 1_000_000;

    fn operation(previous_image: Option<&str>) -> Operation {
        Operation {
            server: "web-1".to_string(),
            cloud_id: "i-1".to_string(),
            image: "new".to_string(),
            job_id: None,
            request_id: None,
            started_at_ms: STARTED_MS,
            previous_image: previous_image.map(str::to_string),
        }
    }

    fn within_grace() -> i64 {
        STARTED_MS + 1_000
    }

    fn after_grace() -> i64 {
        STARTED_MS + GRACE.as_millis() as i64 + 1
    }

    #[test]
    fn an_unchanged_server_within_the_grace_has_not_started() {
        let verdict = judge_settled(
            &operation(Some("old")),
            Some("old"),
            false,
            within_grace(),
            GRACE,
        );
        assert_eq!(verdict, SettledVerdict::NotStarted);
    }

    #[test]
    fn the_grace_ends_exactly_after_its_length() {
        let at_the_edge = STARTED_MS + GRACE.as_millis() as i64;
        let verdict = judge_settled(
            &operation(Some("new")),
            Some("new"),
            false,
            at_the_edge,
            GRACE,
        );
        assert_eq!(verdict, SettledVerdict::NotStarted);
        let verdict = judge_settled(
            &operation(Some("new")),
            Some("new"),
            false,
            at_the_edge + 1,
            GRACE,
        );
        assert_eq!(verdict, SettledVerdict::Installed(Proof::GraceOver));
    }

    #[test]
    fn seen_installing_proves_the_install_even_within_the_grace() {
        let verdict = judge_settled(
            &operation(Some("old")),
            Some("new"),
            true,
            within_grace(),
            GRACE,
        );
        assert_eq!(verdict, SettledVerdict::Installed(Proof::SeenInstalling));
    }

    #[test]
    fn a_moved_image_proves_the_install_even_if_every_poll_missed_it() {
        let verdict = judge_settled(
            &operation(Some("old")),
            Some("new"),
            false,
            within_grace(),
            GRACE,
        );
        assert_eq!(verdict, SettledVerdict::Installed(Proof::ImageMoved));
    }

    #[test]
    fn the_same_image_reinstalled_is_no_move() {
        // Reinstalling the image already there: reading it proves nothing before the grace.
        let verdict = judge_settled(
            &operation(Some("new")),
            Some("new"),
            false,
            within_grace(),
            GRACE,
        );
        assert_eq!(verdict, SettledVerdict::NotStarted);
        let verdict = judge_settled(&operation(None), Some("new"), false, within_grace(), GRACE);
        assert_eq!(verdict, SettledVerdict::NotStarted);
    }

    #[test]
    fn an_install_that_ran_and_ended_elsewhere_is_another_image() {
        let verdict = judge_settled(
            &operation(Some("old")),
            Some("other"),
            true,
            within_grace(),
            GRACE,
        );
        assert_eq!(verdict, SettledVerdict::OtherImage);
        let verdict = judge_settled(
            &operation(Some("old")),
            Some("old"),
            false,
            after_grace(),
            GRACE,
        );
        assert_eq!(verdict, SettledVerdict::OtherImage);
        let verdict = judge_settled(&operation(Some("old")), None, false, after_grace(), GRACE);
        assert_eq!(verdict, SettledVerdict::OtherImage);
    }

    #[test]
    fn the_strongest_proof_is_named() {
        let verdict = judge_settled(
            &operation(Some("old")),
            Some("new"),
            true,
            after_grace(),
            GRACE,
        );
        assert_eq!(verdict, SettledVerdict::Installed(Proof::SeenInstalling));
        let verdict = judge_settled(
            &operation(Some("old")),
            Some("new"),
            false,
            after_grace(),
            GRACE,
        );
        assert_eq!(verdict, SettledVerdict::Installed(Proof::ImageMoved));
    }

    #[test]
    fn a_clock_before_the_call_is_within_the_grace() {
        let verdict = judge_settled(&operation(Some("new")), Some("new"), false, 0, GRACE);
        assert_eq!(verdict, SettledVerdict::NotStarted);
    }

    #[test]
    fn installing_is_remembered_until_a_new_install_starts() {
        let seen = InstallingSeen::default();
        assert!(!seen.record("i-1", false));
        assert!(seen.record("i-1", true));
        assert!(
            seen.record("i-1", false),
            "a later running reading keeps the sighting"
        );
        assert!(!seen.record("i-2", false), "sightings are per server");
        seen.forget("i-1");
        assert!(!seen.record("i-1", false));
    }
}
