//! Interactive confirmation before anything destructive. Never hangs: without a terminal on
//! stdin the caller must have `--auto-approve`, or the apply is refused.

use std::io::{BufRead, IsTerminal, Write};

use crate::plan::Summary;

/// Whether a human can be asked.
pub fn can_ask() -> bool {
    std::io::stdin().is_terminal()
}

/// The question, naming what will happen.
pub fn prompt(summary: &Summary) -> String {
    let plural = |count: usize| if count == 1 { "" } else { "s" };
    let reinstalls = summary.reinstall;
    let mut parts = Vec::new();
    if reinstalls > 0 {
        parts.push(format!(
            "reinstall {reinstalls} server{} (their system disks are wiped)",
            plural(reinstalls)
        ));
    }
    if summary.adopt > 0 {
        parts.push(format!(
            "record {} adopted server{}",
            summary.adopt,
            plural(summary.adopt)
        ));
    }
    if summary.update_record > 0 {
        parts.push(format!(
            "update {} record{} (protect)",
            summary.update_record,
            plural(summary.update_record)
        ));
    }
    if summary.forget > 0 {
        parts.push(format!(
            "forget {} server{} no longer in the manifest (the machines are not touched)",
            summary.forget,
            plural(summary.forget)
        ));
    }
    format!(
        "Do you want to perform these actions?\n  reimage will {}.\n  Only 'yes' will be accepted to approve.\n\nType 'yes' to {}: ",
        parts.join(" and "),
        if reinstalls > 0 {
            format!("reinstall {reinstalls} server{}", plural(reinstalls))
        } else {
            "continue".to_string()
        }
    )
}

/// Asks on stderr, reads one line from stdin; only `yes` approves.
pub fn ask(question: &str) -> std::io::Result<bool> {
    let mut stderr = std::io::stderr();
    stderr.write_all(question.as_bytes())?;
    stderr.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_names_the_count() {
        let summary = |reinstall, adopt, forget| Summary {
            reinstall,
            adopt,
            forget,
            ..Summary::default()
        };
        assert!(prompt(&summary(3, 0, 0)).contains("Type 'yes' to reinstall 3 servers"));
        assert!(prompt(&summary(1, 2, 0)).contains("Type 'yes' to reinstall 1 server:"));
        assert!(prompt(&summary(0, 2, 0)).contains("record 2 adopted servers"));
        let forgetting = prompt(&summary(0, 0, 1));
        assert!(
            forgetting.contains("forget 1 server no longer in the manifest"),
            "{forgetting}"
        );
        assert!(
            forgetting.contains("Type 'yes' to continue"),
            "{forgetting}"
        );
    }
}
