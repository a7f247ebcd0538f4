//! Interactive confirmation before anything destructive. Never hangs: without a terminal on
//! stdin the caller must have `--auto-approve`, or the apply is refused.

use std::io::{BufRead, IsTerminal, Write};

/// Whether a human can be asked.
pub fn can_ask() -> bool {
    std::io::stdin().is_terminal()
}

/// The question, naming what will happen.
pub fn prompt(reinstalls: usize, adopts: usize) -> String {
    let mut parts = Vec::new();
    if reinstalls > 0 {
        parts.push(format!(
            "reinstall {reinstalls} server{} (their system disks are wiped)",
            if reinstalls == 1 { "" } else { "s" }
        ));
    }
    if adopts > 0 {
        parts.push(format!(
            "record {adopts} adopted server{}",
            if adopts == 1 { "" } else { "s" }
        ));
    }
    format!(
        "Do you want to perform these actions?\n  reimage will {}.\n  Only 'yes' will be accepted to approve.\n\nType 'yes' to {}: ",
        parts.join(" and "),
        if reinstalls > 0 {
            format!(
                "reinstall {reinstalls} server{}",
                if reinstalls == 1 { "" } else { "s" }
            )
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
        assert!(prompt(3, 0).contains("Type 'yes' to reinstall 3 servers"));
        assert!(prompt(1, 2).contains("Type 'yes' to reinstall 1 server:"));
        assert!(prompt(0, 2).contains("record 2 adopted servers"));
    }
}
