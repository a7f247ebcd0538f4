//! Reading files that a manifest or the command line names (manifests, user data, secrets,
//! inventories, the state): regular files only, and never more than a limit. A FIFO, a device
//! such as `/dev/zero` or a directory is refused before it is opened for reading, so no path can
//! make reimage wait forever or fill its memory.
//!
//! Writing files whole or not at all ([`write_atomically`]): the state, the journal and saved
//! plans, each private to the owner.

use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Manifest files: far above any real fleet (100,000 servers take a few MB).
pub const MANIFEST_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// User data: every provider's own limit is 64 KiB or less; anything bigger is a mistake.
pub const USER_DATA_MAX_BYTES: u64 = 1024 * 1024;
/// A secret (password, key, token) is short.
pub const SECRET_MAX_BYTES: u64 = 64 * 1024;
/// The emulator's inventory.
pub const INVENTORY_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// The state file, which records inputs (user data included) of every server.
pub const STATE_MAX_BYTES: u64 = 1024 * 1024 * 1024;
/// A saved plan (a few KB per server) and its signature.
pub const PLAN_MAX_BYTES: u64 = 1024 * 1024 * 1024;
pub const SIGNATURE_MAX_BYTES: u64 = 64 * 1024;
/// The local journal (compacted after every apply) and history (one line per apply): far above
/// what a fleet writes, and a bound on what a damaged or foreign file can make us hold.
pub const JOURNAL_MAX_BYTES: u64 = 1024 * 1024 * 1024;
/// A lock file's holder description (a line of JSON).
pub const LOCK_HOLDER_MAX_BYTES: u64 = 64 * 1024;
/// The emulator's saved world (every server of the inventory, with its calls).
pub const WORLD_MAX_BYTES: u64 = 1024 * 1024 * 1024;
/// A fault rules file for the emulator.
pub const FAULTS_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Why a named file could not be read. Every message names the file.
#[derive(Debug)]
pub enum ReadFileError {
    /// Not a regular file (a directory, FIFO, device or socket).
    NotRegular { path: String, kind: &'static str },
    /// More than the limit.
    TooLarge { path: String, limit: u64 },
    /// The operating system refused (missing, no permission, …).
    Io { path: String, error: std::io::Error },
}

impl ReadFileError {
    /// Whether the file does not exist (callers treat a missing state file as "no state").
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { error, .. } if error.kind() == std::io::ErrorKind::NotFound)
    }
}

impl ReadFileError {
    /// What is wrong, without the path (for messages that name the file already).
    pub fn reason(&self) -> String {
        match self {
            Self::NotRegular { kind, .. } => format!("it is {kind}, not a regular file"),
            Self::TooLarge { limit, .. } => format!("it is larger than {}", human_bytes(*limit)),
            Self::Io { error, .. } => error.to_string(),
        }
    }
}

impl fmt::Display for ReadFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRegular { path, kind } => {
                write!(f, "`{path}` is {kind}, not a regular file")
            }
            Self::TooLarge { path, limit } => {
                write!(f, "`{path}` is larger than {}", human_bytes(*limit))
            }
            Self::Io { path, error } => write!(f, "`{path}`: {error}"),
        }
    }
}

impl std::error::Error for ReadFileError {}

fn human_bytes(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    const GIB: u64 = 1024 * MIB;
    match bytes {
        b if b >= GIB && b % GIB == 0 => format!("{} GiB", b / GIB),
        b if b >= MIB && b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b >= KIB && b % KIB == 0 => format!("{} KiB", b / KIB),
        b => format!("{b} bytes"),
    }
}

fn kind_of(file_type: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if file_type.is_char_device() || file_type.is_block_device() {
            return "a device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    if file_type.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Reads the whole of `path` if it is a regular file of at most `limit` bytes.
///
/// The type is checked before the file is opened (opening a FIFO would wait for a writer), and
/// again on the open handle; the read itself goes through `Read::take(limit + 1)`, so even a
/// file that grows or is swapped meanwhile is never read past the limit.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, ReadFileError> {
    let shown = || path.display().to_string();
    let io = |error| ReadFileError::Io {
        path: shown(),
        error,
    };
    let metadata = std::fs::metadata(path).map_err(io)?;
    if !metadata.is_file() {
        return Err(ReadFileError::NotRegular {
            path: shown(),
            kind: kind_of(metadata.file_type()),
        });
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let opened = file.metadata().map_err(io)?;
    if !opened.is_file() {
        return Err(ReadFileError::NotRegular {
            path: shown(),
            kind: kind_of(opened.file_type()),
        });
    }
    let capacity = usize::try_from(opened.len().min(limit)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadFileError::TooLarge {
            path: shown(),
            limit,
        });
    }
    Ok(bytes)
}

/// The records of a JSON-lines file written by appends (journal, history): none when the file
/// does not exist; a line that does not parse (torn by a crash, damaged) is skipped.
pub fn read_json_lines<T: serde::de::DeserializeOwned>(
    path: &Path,
    limit: u64,
) -> Result<Vec<T>, ReadFileError> {
    let bytes = match read_limited(path, limit) {
        Ok(bytes) => bytes,
        Err(error) if error.is_not_found() => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    Ok(bytes
        .split(|byte| *byte == b'\n')
        .filter_map(|line| serde_json::from_slice(line).ok())
        .collect())
}

/// [`read_limited`] for UTF-8 text.
pub fn read_limited_to_string(path: &Path, limit: u64) -> Result<String, ReadFileError> {
    let bytes = read_limited(path, limit)?;
    String::from_utf8(bytes).map_err(|_| ReadFileError::Io {
        path: path.display().to_string(),
        error: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
    })
}

/// Writes `bytes` to `path` so that a reader sees either the old or the new file, whole, even
/// after a crash: temp file in the same folder, fsync, keep a `.backup` of the previous file,
/// rename over, fsync the folder.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with(path, |file| file.write_all(bytes))
}

/// [`write_atomically`] with the content written by `write` as it is made (a big plan file is
/// never held in memory whole).
pub fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    create_private_dir_all(&folder)?;
    // A temporary file is created 0600 (owner only), and the rename keeps that.
    let mut temp = tempfile::NamedTempFile::new_in(&folder)?;
    write(temp.as_file_mut())?;
    temp.as_file().sync_all()?;
    if path.exists() {
        let mut backup = path.as_os_str().to_os_string();
        backup.push(".backup");
        // The backup is a convenience for humans; a failure to copy must not block the write.
        // A copy takes the mode of its source, which an older reimage may have left readable.
        let backup = PathBuf::from(backup);
        if std::fs::copy(path, &backup).is_ok() {
            let _ = restrict_to_owner(&backup);
        }
    }
    temp.persist(path).map_err(|error| error.error)?;
    File::open(&folder)?.sync_all()?;
    Ok(())
}

/// Creates `folder` and its missing parents readable by the owner only (0700): the state, the
/// journal and the lock name every server and what was installed on it.
pub fn create_private_dir_all(folder: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(folder).map_err(|error| {
        std::io::Error::new(error.kind(), format!("{}: {error}", folder.display()))
    })?;
    // reimage's own folder may exist already (made by the embedded emulator's data dir, or by
    // an older reimage): it is reimage's, so it is tightened too. Other folders are the user's.
    if folder.file_name().is_some_and(|name| name == ".reimage") {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    Ok(())
}

/// Options that create a file readable and writable by the owner only (0600).
pub fn private_open_options() -> std::fs::OpenOptions {
    #[allow(unused_mut)]
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

pub(crate) fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(read_limited(&path, 5).unwrap(), b"12345");
        let error = read_limited(&path, 4).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("`{}` is larger than 4 bytes", path.display())
        );
        assert!(
            read_limited(&dir.path().join("missing"), 5)
                .unwrap_err()
                .is_not_found()
        );
    }

    #[test]
    fn directories_and_devices_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let error = read_limited(dir.path(), 10).unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with("is a directory, not a regular file"),
            "{error}"
        );
        #[cfg(unix)]
        {
            let error = read_limited(Path::new("/dev/zero"), 10).unwrap_err();
            assert_eq!(
                error.to_string(),
                "`/dev/zero` is a device, not a regular file"
            );
        }
    }

    /// A FIFO with no writer would block `open` forever; it is refused without opening it.
    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|status| status.success()), "mkfifo failed");
        let error = read_limited(&fifo, 10).unwrap_err();
        assert!(error.to_string().contains("named pipe (FIFO)"), "{error}");
    }
}
