//! The plan's judgement of a reinstall and the desired OS against the catalogue (pure: no I/O).

use super::validate::ServerOptions;
use super::wire;
use super::{EXTRA_AZ, EXTRA_DATA_RAID, EXTRA_IMAGE_TYPE, EXTRA_SYS_RAID};
use crate::manifest::DesiredServer;
use crate::provider::{FieldIssue, Observed, ReinstallReview, ServerStatus};

impl ServerOptions {
    /// A data RAID change cannot keep data: it is allowed only with `keep_data: false`.
    pub(super) fn keep_data_allowed_with(
        &self,
        desired: Option<&str>,
        observed: Option<&str>,
    ) -> bool {
        !self.keep_data || desired == observed
    }
}

/// The plan's judgement of a reinstall (pure): stop first or block, and what else is wiped.
pub fn review(desired: &DesiredServer, observed: &Observed) -> ReinstallReview {
    let options = ServerOptions::read(&desired.options);
    let mut review = ReinstallReview::default();
    let current = |key: &str| observed.extra.get(key).map(String::as_str);
    match observed.status {
        ServerStatus::Running if options.allow_stop => {
            review.stop_first = true;
            review.notes.push(
                "the server is running: reimage stops it (stopInstance) and waits for `stopped` \
                 before reinstalling, since JD Cloud reinstalls only stopped servers"
                    .to_string(),
            );
        }
        ServerStatus::Running => {
            review.blocked = Some(
                "the server is running and JD Cloud reinstalls only stopped servers; set \
                 `options.allow_stop: true` to let reimage stop it first, or stop it yourself"
                    .to_string(),
            );
        }
        _ => {}
    }
    if !options.keep_data {
        review.extra_wipes.push("DATA DISKS".to_string());
        review.notes.push(
            "KEEP_DATA IS FALSE: ALL DATA DISKS OF THIS SERVER WILL BE WIPED (keepData: no)"
                .to_string(),
        );
    }
    if let Some(desired_raid) = options.sys_raid_type_id.as_deref()
        && current(EXTRA_SYS_RAID) != Some(desired_raid)
    {
        review.extra_wipes.push(format!(
            "system RAID rebuilt ({} -> {desired_raid})",
            current(EXTRA_SYS_RAID).unwrap_or("unknown")
        ));
    }
    if let Some(desired_raid) = options.data_raid_type_id.as_deref()
        && current(EXTRA_DATA_RAID) != Some(desired_raid)
    {
        let before = current(EXTRA_DATA_RAID).unwrap_or("unknown");
        if options.keep_data {
            review.blocked.get_or_insert(format!(
                "the data RAID would change ({before} -> {desired_raid}), which rebuilds the data \
                 disks and cannot keep their data; set `options.keep_data: false` to confirm \
                 they are wiped"
            ));
        } else {
            review
                .extra_wipes
                .push(format!("data RAID rebuilt ({before} -> {desired_raid})"));
        }
    }
    if let Some(az) = options.az.as_deref()
        && current(EXTRA_AZ) != Some(az)
    {
        review.notes.push(format!(
            "availability zone in the request: {az} (JD reports {})",
            current(EXTRA_AZ).unwrap_or("none")
        ));
    }
    if let Some(image_type) = options.image_type.as_deref()
        && current(EXTRA_IMAGE_TYPE)
            .map(str::to_ascii_lowercase)
            .as_deref()
            != Some(image_type)
    {
        review.notes.push(format!(
            "image type: {} -> {image_type}",
            current(EXTRA_IMAGE_TYPE).unwrap_or("unknown")
        ));
    }
    review
}

/// Problems of one server's desired OS against the catalogue of its device type.
pub(super) fn os_issues(
    server: &DesiredServer,
    device_type: Option<&str>,
    region: &str,
    catalogue: &[wire::OsInfo],
) -> Vec<FieldIssue> {
    let device = device_type.unwrap_or("(unknown device type)");
    let same_name = |a: &str, b: &str| a.trim().eq_ignore_ascii_case(b.trim());
    let options = ServerOptions::read(&server.options);
    let Some(entry) = catalogue.iter().find(|os| os.os_type_id == server.image) else {
        let by_name = options.os_name.as_deref().and_then(|name| {
            catalogue.iter().find(|os| {
                os.os_name
                    .as_deref()
                    .is_some_and(|os_name| same_name(os_name, name))
            })
        });
        let help = match by_name {
            Some(os) => format!(
                "`{}` is named `{}`: did you mean `os.image: {}`?",
                os.os_type_id,
                os.os_name.as_deref().unwrap_or_default(),
                os.os_type_id
            ),
            None => format!("offered for {device}: {}", catalogue_list(catalogue)),
        };
        return vec![FieldIssue {
            pointer: "/os/image".to_string(),
            message: format!(
                "unknown OS: osTypeId `{}` is not offered for device type {device} in {region} \
                 (describeOS)",
                server.image
            ),
            help: Some(help),
        }];
    };
    match (options.os_name.as_deref(), entry.os_name.as_deref()) {
        (Some(wanted), Some(actual)) if !same_name(wanted, actual) => vec![FieldIssue {
            pointer: "/options/os_name".to_string(),
            message: format!(
                "`os_name` is `{wanted}`, but osTypeId `{}` is `{actual}`",
                server.image
            ),
            help: Some(
                "fix whichever is wrong: `os.image` is what gets installed, `os_name` only \
                 double-checks it"
                    .to_string(),
            ),
        }],
        (Some(wanted), None) => vec![FieldIssue {
            pointer: "/options/os_name".to_string(),
            message: format!(
                "`os_name` is `{wanted}`, but describeOS gives no name for `{}`",
                server.image
            ),
            help: Some("remove `os_name`, or check the osTypeId".to_string()),
        }],
        _ => Vec::new(),
    }
}

fn catalogue_list(catalogue: &[wire::OsInfo]) -> String {
    if catalogue.is_empty() {
        return "nothing".to_string();
    }
    let mut shown: Vec<String> = catalogue
        .iter()
        .take(10)
        .map(|os| match &os.os_name {
            Some(name) => format!("`{}` ({name})", os.os_type_id),
            None => format!("`{}`", os.os_type_id),
        })
        .collect();
    if catalogue.len() > 10 {
        shown.push(format!("and {} more", catalogue.len() - 10));
    }
    shown.join(", ")
}
