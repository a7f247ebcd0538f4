//! Reading files that a manifest or the command line names (manifests, user data, secrets,
//! inventories, the state): regular files only, and never more than a limit. A FIFO, a device
//! such as `/dev/zero` or a directory is refused before it is opened for reading, so no path can
//! make reimage wait forever or fill its memory.

use std::fmt;
use std::io::Read;
use std::path::Path;

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

/// [`read_limited`] for UTF-8 text.
pub fn read_limited_to_string(path: &Path, limit: u64) -> Result<String, ReadFileError> {
    let bytes = read_limited(path, limit)?;
    String::from_utf8(bytes).map_err(|_| ReadFileError::Io {
        path: path.display().to_string(),
        error: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
    })
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
