//! `reimage version [--json]`, as `terraform version` prints it.

use std::process::ExitCode;

use super::VersionArgs;
use crate::error::Result;
use crate::output::Printer;

/// The build's platform as Terraform names it (`linux_amd64`, `darwin_arm64`).
fn platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    format!("{}_{arch}", std::env::consts::OS)
}

pub fn run(args: &VersionArgs, printer: &Printer) -> Result<ExitCode> {
    let version = env!("CARGO_PKG_VERSION");
    if args.json {
        let document = serde_json::json!({
            "format_version": 1,
            "reimage_version": version,
            "platform": platform(),
            "provider_types": ["edis-kvm", "huaweicloud-clouddc", "huaweicloud-ecs", "jdcloud-cps", "zenlayer-bmc"],
        });
        printer.out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&document).unwrap_or_default()
        ));
    } else {
        printer.out(&format!("reimage v{version}\non {}\n", platform()));
    }
    Ok(ExitCode::SUCCESS)
}
