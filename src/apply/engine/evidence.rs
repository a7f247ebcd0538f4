//! What the provider's view of a server says about a call: whether the server moved since the
//! plan (then it is not touched), and what a read after a call whose answer was lost proves.
//! Pure functions, unit-tested below.

use crate::provider::{Observation, Observed, ServerStatus};
use crate::state::journal::Baseline;

/// Why a server must not be touched: it moved since the plan was made. `None` when it did not.
///
/// A stop that reimage made itself is expected (`after_own_stop`): then only the image and an
/// install under way count, since the power state and provider facts move with the stop.
pub fn moved_since_plan(
    planned: Option<&Observed>,
    now: &Observation,
    desired_image: &str,
    after_own_stop: bool,
) -> Option<String> {
    let now = match now {
        Observation::NotFound => return Some("the server is gone at the provider".to_string()),
        Observation::Found(now) => now,
    };
    if now.status == ServerStatus::Installing {
        return Some(format!(
            "an install is under way (status {})",
            now.raw_status
        ));
    }
    let planned = planned?;
    let power_only =
        |status: ServerStatus| matches!(status, ServerStatus::Running | ServerStatus::Stopped);
    if now.status != planned.status && !(power_only(now.status) && power_only(planned.status)) {
        return Some(format!(
            "its status is {}, the plan saw {}",
            now.raw_status, planned.raw_status
        ));
    }
    if now.image != planned.image {
        let shown = |image: &Option<String>| image.clone().unwrap_or_else(|| "(none)".into());
        return Some(if now.image.as_deref() == Some(desired_image) {
            format!("it is already on the desired image {desired_image}")
        } else {
            format!(
                "it is now on image {}, the plan saw {}",
                shown(&now.image),
                shown(&planned.image)
            )
        });
    }
    if !after_own_stop {
        let changed: Vec<String> = now
            .extra
            .iter()
            .filter(|(key, value)| planned.extra.get(*key) != Some(*value))
            .map(|(key, value)| format!("{key} is now `{value}`"))
            .collect();
        if !changed.is_empty() {
            return Some(changed.join(", "));
        }
    }
    None
}

/// What one read shows about a call whose answer was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// The call acted and its work is complete (stopped; the new image is up).
    Done,
    /// The call acted; its work is under way.
    Underway(String),
    /// The install ran and failed.
    InstallFailed(String),
    /// The server is exactly as it was before the call.
    Unchanged,
    /// The server moved, but not in a way that says whether the call acted.
    Unclear(String),
    Gone,
}

/// The server as read before the call, from the journal; older journals carry only the image
/// seen at plan time.
pub fn baseline_or(baseline: Option<&Baseline>, previous_image: Option<&str>) -> Baseline {
    baseline.cloned().unwrap_or_else(|| Baseline {
        status: ServerStatus::Unknown,
        raw_status: "unknown".to_string(),
        image: previous_image.map(str::to_string),
    })
}

fn unchanged(baseline: &Baseline, now: &Observed) -> bool {
    let status_same = baseline.status == ServerStatus::Unknown && now.status.allows_reinstall()
        || baseline.status == now.status;
    status_same && baseline.image == now.image
}

/// After a stop call whose answer was lost.
pub fn of_stop(baseline: &Baseline, now: &Observation) -> Evidence {
    let now = match now {
        Observation::NotFound => return Evidence::Gone,
        Observation::Found(now) => now,
    };
    match now.status {
        ServerStatus::Stopped => Evidence::Done,
        _ if unchanged(baseline, now) => Evidence::Unchanged,
        ServerStatus::Busy => Evidence::Underway(format!("status {}", now.raw_status)),
        _ => Evidence::Unclear(format!("status {}", now.raw_status)),
    }
}

/// After a reinstall call whose answer was lost (or an install taken over from the journal).
/// Any change of status from the baseline is a sign that the call acted (an install, or the
/// stop a provider makes first): from then on the call is never sent again.
pub fn of_reinstall(baseline: &Baseline, desired_image: &str, now: &Observation) -> Evidence {
    let now = match now {
        Observation::NotFound => return Evidence::Gone,
        Observation::Found(now) => now,
    };
    let on_desired = now.image.as_deref() == Some(desired_image);
    let status_known = baseline.status != ServerStatus::Unknown;
    match now.status {
        ServerStatus::Installing => Evidence::Underway(format!("status {}", now.raw_status)),
        // A server that failed before the call (an operator's `--replace`) proves nothing.
        ServerStatus::InstallFailed if baseline.status != ServerStatus::InstallFailed => {
            Evidence::InstallFailed(format!("the install failed (status {})", now.raw_status))
        }
        _ if unchanged(baseline, now) => Evidence::Unchanged,
        ServerStatus::Running | ServerStatus::Stopped if on_desired => Evidence::Done,
        status if status_known && status != baseline.status => {
            Evidence::Underway(format!("status {}", now.raw_status))
        }
        _ => Evidence::Unclear(format!(
            "status {}, image {}",
            now.raw_status,
            now.image.as_deref().unwrap_or("unknown")
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn server(status: ServerStatus, image: &str) -> Observed {
        Observed {
            cloud_id: "i".into(),
            status,
            raw_status: format!("{status:?}").to_uppercase(),
            image: Some(image.into()),
            image_name: None,
            hostname: None,
            address: None,
            extra: BTreeMap::new(),
        }
    }

    fn found(status: ServerStatus, image: &str) -> Observation {
        Observation::Found(server(status, image))
    }

    fn baseline(status: ServerStatus, image: &str) -> Baseline {
        Baseline {
            status,
            raw_status: format!("{status:?}"),
            image: Some(image.into()),
        }
    }

    #[test]
    fn a_server_that_moved_since_the_plan_is_named_with_the_reason() {
        let planned = server(ServerStatus::Running, "old");
        let check = |now: Observation| moved_since_plan(Some(&planned), &now, "new", false);
        assert_eq!(check(found(ServerStatus::Running, "old")), None);
        assert_eq!(check(found(ServerStatus::Stopped, "old")), None);
        assert!(check(Observation::NotFound).unwrap().contains("gone"));
        assert!(
            check(found(ServerStatus::Installing, "old"))
                .unwrap()
                .contains("install")
        );
        assert!(
            check(found(ServerStatus::Running, "new"))
                .unwrap()
                .contains("already")
        );
        assert!(
            check(found(ServerStatus::Running, "x"))
                .unwrap()
                .contains("image x")
        );
        assert!(
            check(found(ServerStatus::Busy, "old"))
                .unwrap()
                .contains("status")
        );
        let mut locked = server(ServerStatus::Running, "old");
        locked.extra.insert("locked".into(), "true".into());
        let now = Observation::Found(locked);
        assert!(check(now.clone()).unwrap().contains("locked"));
        assert_eq!(moved_since_plan(Some(&planned), &now, "new", true), None);
    }

    #[test]
    fn a_lost_reinstall_is_judged_by_what_moved() {
        let before = baseline(ServerStatus::Running, "old");
        let judge = |now| of_reinstall(&before, "new", &now);
        assert_eq!(
            judge(found(ServerStatus::Running, "old")),
            Evidence::Unchanged
        );
        assert_eq!(judge(found(ServerStatus::Running, "new")), Evidence::Done);
        assert!(matches!(
            judge(found(ServerStatus::Installing, "old")),
            Evidence::Underway(_)
        ));
        assert!(matches!(
            judge(found(ServerStatus::InstallFailed, "old")),
            Evidence::InstallFailed(_)
        ));
        // A stop the provider makes before the install is a sign too.
        assert!(matches!(
            judge(found(ServerStatus::Stopped, "old")),
            Evidence::Underway(_)
        ));
        assert!(matches!(
            judge(found(ServerStatus::Running, "x")),
            Evidence::Unclear(_)
        ));
        assert_eq!(judge(Observation::NotFound), Evidence::Gone);
    }

    #[test]
    fn a_same_image_reinstall_is_done_only_when_something_moved() {
        let before = baseline(ServerStatus::Stopped, "img");
        assert_eq!(
            of_reinstall(&before, "img", &found(ServerStatus::Stopped, "img")),
            Evidence::Unchanged
        );
        // JD: stopped before, running on the image after: the install ran.
        assert_eq!(
            of_reinstall(&before, "img", &found(ServerStatus::Running, "img")),
            Evidence::Done
        );
    }

    #[test]
    fn a_provider_without_images_shows_an_install_only_by_its_power() {
        // EDIS: no image; the VPS is off while it installs.
        let before = Baseline {
            status: ServerStatus::Running,
            raw_status: "on".into(),
            image: None,
        };
        let vps = |status| {
            Observation::Found(Observed {
                image: None,
                ..server(status, "x")
            })
        };
        assert_eq!(
            of_reinstall(&before, "debian", &vps(ServerStatus::Running)),
            Evidence::Unchanged
        );
        assert!(matches!(
            of_reinstall(&before, "debian", &vps(ServerStatus::Stopped)),
            Evidence::Underway(_)
        ));
    }

    #[test]
    fn a_lost_stop_is_judged_by_the_power_state() {
        let before = baseline(ServerStatus::Running, "old");
        assert_eq!(
            of_stop(&before, &found(ServerStatus::Stopped, "old")),
            Evidence::Done
        );
        assert_eq!(
            of_stop(&before, &found(ServerStatus::Running, "old")),
            Evidence::Unchanged
        );
        assert!(matches!(
            of_stop(&before, &found(ServerStatus::Busy, "old")),
            Evidence::Underway(_)
        ));
    }

    #[test]
    fn without_a_baseline_the_plan_time_image_stands_in() {
        let before = baseline_or(None, Some("old"));
        assert_eq!(
            of_reinstall(&before, "new", &found(ServerStatus::Running, "old")),
            Evidence::Unchanged
        );
        assert_eq!(
            of_reinstall(&before, "new", &found(ServerStatus::Stopped, "new")),
            Evidence::Done
        );
    }
}
