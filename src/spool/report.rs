//! What the spool says: its sync policy, why it could not be opened, what opening it
//! found, and its faults after that.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// When the spool asks the kernel to put what it wrote on the disk (`fdatasync`).
///
/// A crash of the process loses nothing the spool took under any policy (the kernel
/// holds it); a crash of the machine loses what was written since the last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolSync {
    /// Never: the kernel writes back in its own time (typically within 30 s).
    Off,
    /// At most this long after a frame was spooled.
    Every(Duration),
    /// Before a frame counts as spooled: the writer syncs each batch it takes off the
    /// queue (up to 512 frames) before counting it (slowest, loses nothing).
    Always,
}

impl Default for SpoolSync {
    /// Every second.
    fn default() -> Self {
        SpoolSync::Every(Duration::from_secs(1))
    }
}

/// Why a spool directory could not be opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum SpoolError {
    /// Another client (in this process or another) holds the directory's lock.
    Locked {
        /// The spool directory.
        path: PathBuf,
    },
    /// The path exists and is not a directory.
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// The directory is not private to the user running the client: owned by another
    /// user, or writable by its group or by every user. Its records could be read,
    /// planted, replaced or deleted by others; it was used for nothing and not changed.
    NotPrivate {
        /// The spool directory.
        path: PathBuf,
        /// Its owner's user id.
        owner: u32,
        /// Its permission bits (`0o777`, say).
        mode: u32,
        /// The user id the process runs as.
        euid: u32,
    },
    /// One of the spool's own files (its lock) is not a regular file: a symbolic link, say.
    /// It was neither followed nor changed.
    NotAFile {
        /// The file.
        path: PathBuf,
        /// What it is instead ("a symbolic link").
        found: &'static str,
    },
    /// A segment was written by a newer version of this crate; nothing was changed.
    NewerVersion {
        /// The segment.
        path: PathBuf,
        /// Its format version.
        found: u16,
        /// The newest this version reads.
        supported: u16,
    },
    /// The file system refused an operation.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
}

impl std::fmt::Display for SpoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpoolError::Locked { path } => write!(
                f,
                "the spool {} is in use by another client (its lock is held)",
                path.display()
            ),
            SpoolError::NotADirectory { path } => {
                write!(f, "the spool {} is not a directory", path.display())
            }
            SpoolError::NotPrivate {
                path,
                owner,
                mode,
                euid,
            } => {
                let mut why = Vec::new();
                if owner != euid {
                    why.push(format!(
                        "is owned by uid {owner}, not uid {euid} that the client runs as"
                    ));
                }
                if mode & 0o002 != 0 {
                    why.push("can be written by every user".to_owned());
                } else if mode & 0o020 != 0 {
                    why.push("can be written by its group".to_owned());
                }
                write!(
                    f,
                    "the spool directory {} (owner uid {owner}, mode {mode:04o}) {}: other \
                     users could read, plant or delete audit records in it, so it is not \
                     used and left as it is; give the spool a directory owned by uid {euid} \
                     that only it can write to (chown {euid} {dir}; chmod 0700 {dir}), or a \
                     path that does not exist yet, which the client creates with mode 0700",
                    path.display(),
                    why.join(" and "),
                    dir = path.display(),
                )
            }
            SpoolError::NotAFile { path, found } => write!(
                f,
                "the spool file {} is {found}, not a regular file; it was not followed \
                 and is left as it is: remove it to use the spool",
                path.display()
            ),
            SpoolError::NewerVersion {
                path,
                found,
                supported,
            } => write!(
                f,
                "the spool segment {} has format version {found}; this version reads up \
                 to {supported} (the file is left as it is)",
                path.display()
            ),
            SpoolError::Io { path, op, source } => {
                write!(f, "cannot {op} {}: {}", path.display(), describe(source))
            }
        }
    }
}

impl std::error::Error for SpoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpoolError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// An error's text, saying plainly when the disk is full.
pub(super) fn describe(e: &io::Error) -> String {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        format!("the disk is full ({e})")
    } else {
        e.to_string()
    }
}

/// What opening a spool found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpoolNotice {
    /// Frames an earlier client left, to be sent before anything new.
    Recovered {
        /// How many.
        frames: u64,
        /// Their bytes on disk.
        bytes: u64,
    },
    /// The newest segment ended inside a frame (a write cut off by a crash): it was cut
    /// back to its last whole frame.
    TornTail {
        /// The segment.
        path: PathBuf,
        /// Where it now ends.
        offset: u64,
        /// How many bytes were cut.
        bytes_cut: u64,
    },
    /// A damaged file was renamed aside (never deleted); the good frames before the
    /// damage are kept.
    SetAside {
        /// The file.
        path: PathBuf,
        /// Its new name.
        moved_to: PathBuf,
        /// What was wrong, and where.
        reason: String,
    },
    /// A file that is not the spool's: left alone.
    Foreign {
        /// The file.
        path: PathBuf,
    },
    /// Something that is not a regular file (a symbolic link, say) under the name of a
    /// segment or of the cursor: renamed aside as a foreign file, never followed nor read.
    NotAFile {
        /// Its name in the spool.
        path: PathBuf,
        /// What it is ("a symbolic link").
        found: &'static str,
        /// Its new name.
        moved_to: PathBuf,
    },
}

impl std::fmt::Display for SpoolNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpoolNotice::Recovered { frames, bytes } => write!(
                f,
                "the spool holds {frames} records ({bytes} bytes) of an earlier client; \
                 they go first"
            ),
            SpoolNotice::TornTail {
                path,
                offset,
                bytes_cut,
            } => write!(
                f,
                "the spool segment {} ended inside a record; cut {bytes_cut} bytes at \
                 offset {offset}",
                path.display()
            ),
            SpoolNotice::SetAside {
                path,
                moved_to,
                reason,
            } => write!(
                f,
                "the spool file {} is damaged ({reason}); moved to {}",
                path.display(),
                moved_to.display()
            ),
            SpoolNotice::Foreign { path } => {
                write!(f, "{} is not a spool file; left alone", path.display())
            }
            SpoolNotice::NotAFile {
                path,
                found,
                moved_to,
            } => write!(
                f,
                "the spool file {} is {found}, not a regular file: not followed, and \
                 moved to {}",
                path.display(),
                moved_to.display()
            ),
        }
    }
}

/// A fault of the disk after the spool was opened.
#[derive(Debug)]
pub(crate) enum SpoolFault {
    /// The spool is at its size limit.
    Full { limit: u64 },
    /// The file system refused an operation.
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
}

impl std::fmt::Display for SpoolFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpoolFault::Full { limit } => write!(f, "the spool is at its limit of {limit} bytes"),
            SpoolFault::Io { path, op, source } => {
                write!(f, "cannot {op} {}: {}", path.display(), describe(source))
            }
        }
    }
}

pub(super) fn fault<'a>(
    path: &'a Path,
    op: &'static str,
) -> impl FnOnce(io::Error) -> SpoolFault + 'a {
    move |source| SpoolFault::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}
