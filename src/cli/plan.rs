//! `reimage plan`: show what would change, optionally save it for `apply`. The arguments become
//! a [`PlanRequest`]; the plan (or drift report) is printed here.

use std::process::ExitCode;

use super::PlanArgs;
use crate::error::Result;
use crate::manifest::SecretCheck;
use crate::ops::plan_command::{self, PlanRequest};
use crate::ops::session::ManifestSource;
use crate::output::Printer;
use crate::plan::signature::{PLAN_KEY_ENV, PlanKey};
use crate::plan::{Plan, render};

fn request(args: &PlanArgs) -> Result<PlanRequest> {
    Ok(PlanRequest {
        manifest: ManifestSource {
            paths: args.manifest.paths()?,
            secrets: SecretCheck::Required,
            provider_setup: true,
        },
        state: args.state.clone(),
        lock_timeout: args.lock.lock_timeout,
        targets: args.target.clone(),
        replace: args.replace.clone(),
        rollout: args.rollout.spec(),
        ttl: args.plan_ttl,
    })
}

pub async fn run(args: PlanArgs, printer: &Printer) -> Result<ExitCode> {
    if args.drift {
        return drift(args, printer).await;
    }
    // A bad signing key is refused before anything is planned.
    let key = match &args.out {
        Some(_) => PlanKey::from_env()?,
        None => None,
    };
    let plan = plan_command::make(&request(&args)?, printer).await?;
    print_plan(&plan, args.json, args.markdown, printer);
    append_step_summary(&plan, printer);
    let signature = plan_command::finish(&plan, args.out.as_deref(), key.as_ref(), printer)?;
    if let Some(path) = &args.out
        && !args.json
    {
        let signed = match &signature {
            Some(signature) => format!(
                "\nSigned it (HMAC-SHA256 with `{PLAN_KEY_ENV}`): {}",
                signature.display()
            ),
            None => String::new(),
        };
        // As Terraform: an empty plan is saved, but there is nothing to run it for.
        let next = if plan.has_changes() {
            format!(
                "To perform exactly these actions, run:\n  reimage apply {}",
                path.display()
            )
        } else {
            "It holds no changes: applying it would do nothing.".to_string()
        };
        printer.status(&format!(
            "\nSaved the plan to: {}{signed}\nPlan {}{}, valid until {}.\n\n{next}",
            path.display(),
            plan.plan_id,
            match &plan.commit {
                Some(commit) => format!(" made at commit {commit}"),
                None => String::new(),
            },
            plan.expires_at,
        ));
    }
    if args.detailed_exitcode && plan.has_changes() {
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the plan as JSON, markdown or text, a piece at a time (a plan of many servers is never
/// held as one string).
pub(crate) fn print_plan(plan: &Plan, json: bool, markdown: bool, printer: &Printer) {
    if json {
        use std::io::Write;
        let mut out = printer.out_writer();
        // A closed pipe is not an error worth reporting (as with `Printer::out`).
        let _ = render::json_to(plan, &mut out).and_then(|()| out.write_all(b"\n"));
        let _ = out.flush();
    } else if markdown {
        render::markdown_to(plan, &mut |chunk| printer.out(chunk));
    } else {
        render::text_to(plan, &mut |chunk| printer.out(chunk));
    }
}

/// `plan --drift`: reads the fleet once and compares it with the state (read without the lock;
/// nothing is written). Exit 2 on drift.
async fn drift(args: PlanArgs, printer: &Printer) -> Result<ExitCode> {
    let report = plan_command::drift(&request(&args)?, printer).await?;
    let rendered = if args.json {
        format!("{}\n", crate::ops::drift::render::json(&report))
    } else if args.markdown {
        crate::ops::drift::render::markdown(&report)
    } else {
        crate::ops::drift::render::text(&report)
    };
    printer.out(&rendered);
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|path| !path.is_empty()) {
        let written = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut summary| {
                use std::io::Write;
                summary.write_all(crate::ops::drift::render::markdown(&report).as_bytes())
            });
        if let Err(error) = written {
            printer.status(&format!(
                "warning: could not append the drift report to `$GITHUB_STEP_SUMMARY`: {error}"
            ));
        }
    }
    Ok(if report.has_drift() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// In GitHub Actions, the markdown plan also goes to the job's summary page. A failure to write
/// it is a warning: the plan itself is complete.
fn append_step_summary(plan: &Plan, printer: &Printer) {
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|path| !path.is_empty()) else {
        return;
    };
    let written = fs_err::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut summary| {
            use std::io::Write;
            summary.write_all(format!("{}\n", render::markdown(plan)).as_bytes())
        });
    if let Err(error) = written {
        printer.status(&format!(
            "warning: could not append the plan to `$GITHUB_STEP_SUMMARY`: {error}"
        ));
    }
}
