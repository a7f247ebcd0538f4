//! The git commit of the repository a manifest lives in, so that a saved plan names the commit
//! a reviewer approved (`apply --require-commit` checks it).
//!
//! `git rev-parse HEAD` in the manifest's folder where git is installed; otherwise, or when git
//! refuses (a repository owned by another user, as in some CI containers), `.git/HEAD` and the
//! ref it names are read directly (loose refs, then `packed-refs`; worktrees through `gitdir:`
//! and `commondir`). No commit (not a repository, or no commit yet) is `None`, never an error:
//! plans are also made outside git.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The full hex id of `HEAD` in the repository holding `manifest_file`, if any.
pub fn head_commit(manifest_file: &Path) -> Option<String> {
    let folder = match manifest_file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    from_git_command(&folder).or_else(|| from_git_files(&folder))
}

fn is_object_id(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

fn object_id(text: &str) -> Option<String> {
    let text = text.trim();
    is_object_id(text).then(|| text.to_ascii_lowercase())
}

fn from_git_command(folder: &Path) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(folder)
        .args(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    object_id(&String::from_utf8(output.stdout).ok()?)
}

/// `HEAD` read from the repository's files, for when git cannot be run.
fn from_git_files(folder: &Path) -> Option<String> {
    let start = folder.canonicalize().ok()?;
    let git_dir = start.ancestors().find_map(git_dir_at)?;
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    match head.trim().strip_prefix("ref:") {
        Some(reference) => resolve_ref(&git_dir, reference.trim()),
        None => object_id(&head),
    }
}

/// The repository folder of `dir`, if `dir` holds a `.git` folder or a `.git` file (a worktree
/// or submodule: `gitdir: PATH`).
fn git_dir_at(dir: &Path) -> Option<PathBuf> {
    let dot_git = dir.join(".git");
    if dot_git.is_dir() {
        return Some(dot_git);
    }
    let text = std::fs::read_to_string(&dot_git).ok()?;
    let target = Path::new(text.trim().strip_prefix("gitdir:")?.trim());
    Some(if target.is_absolute() {
        target.to_path_buf()
    } else {
        dir.join(target)
    })
}

fn resolve_ref(git_dir: &Path, name: &str) -> Option<String> {
    // A worktree keeps its own HEAD; branches live in the common folder named by `commondir`.
    let common = std::fs::read_to_string(git_dir.join("commondir"))
        .ok()
        .map(|text| {
            let path = Path::new(text.trim());
            if path.is_absolute() {
                path.to_path_buf()
            } else {
                git_dir.join(path)
            }
        })
        .unwrap_or_else(|| git_dir.to_path_buf());
    for base in [git_dir, common.as_path()] {
        if let Some(id) = std::fs::read_to_string(base.join(name))
            .ok()
            .and_then(|text| object_id(&text))
        {
            return Some(id);
        }
    }
    let packed = std::fs::read_to_string(common.join("packed-refs")).ok()?;
    packed
        .lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with('^'))
        .find_map(|line| {
            let (id, reference) = line.split_once(' ')?;
            if reference.trim() == name {
                object_id(id)
            } else {
                None
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let output = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@example.invalid",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .output()
            .expect("git runs");
        assert!(output.status.success(), "git {args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    fn repository() -> (tempfile::TempDir, PathBuf, String) {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "-b", "main"]);
        let nested = dir.path().join("infra");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(nested.join("reimage.yaml"), "version: 1\n").unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "first"]);
        let head = git(dir.path(), &["rev-parse", "HEAD"]);
        (dir, nested.join("reimage.yaml"), head)
    }

    #[test]
    fn the_commit_of_the_manifests_repository_is_found_both_ways() {
        let (dir, manifest, head) = repository();
        assert_eq!(head_commit(&manifest).as_deref(), Some(head.as_str()));
        assert_eq!(
            from_git_files(manifest.parent().unwrap()).as_deref(),
            Some(head.as_str())
        );
        // Packed refs (after `git gc`/`pack-refs`) and a detached HEAD read the same.
        git(dir.path(), &["pack-refs", "--all"]);
        assert!(!dir.path().join(".git/refs/heads/main").exists());
        assert_eq!(from_git_files(dir.path()).as_deref(), Some(head.as_str()));
        git(dir.path(), &["checkout", "-q", "--detach"]);
        assert_eq!(from_git_files(dir.path()).as_deref(), Some(head.as_str()));
    }

    #[test]
    fn a_worktree_reads_its_own_head() {
        let (dir, _, head) = repository();
        std::fs::write(dir.path().join("second.txt"), "x").unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "second"]);
        let worktree = dir.path().join("wt");
        git(
            dir.path(),
            &[
                "worktree",
                "add",
                "-q",
                "-b",
                "old",
                worktree.to_str().unwrap(),
                &head,
            ],
        );
        assert_eq!(
            from_git_files(&worktree.join("infra")).as_deref(),
            Some(head.as_str())
        );
        assert_eq!(
            head_commit(&worktree.join("infra/reimage.yaml")).as_deref(),
            Some(head.as_str())
        );
    }

    #[test]
    fn no_repository_or_no_commit_is_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("reimage.yaml"), "").unwrap();
        assert_eq!(head_commit(&dir.path().join("reimage.yaml")), None);
        git(dir.path(), &["init", "-q"]);
        assert_eq!(head_commit(&dir.path().join("reimage.yaml")), None);
        assert_eq!(from_git_files(dir.path()), None);
    }
}
