//! How the spool touches the file system: a directory private to the user running the
//! client, files created 0600 whatever the umask, and no symbolic link ever followed.
//!
//! The records hold caller identities, addresses and operations. The directory is
//! created 0700; one that exists is used only if it belongs to the process's user and no
//! other user can write to it (its mode is the operator's to choose otherwise, and is
//! never changed). Inside it, every file is opened with `O_NOFOLLOW` (and `O_NONBLOCK`,
//! so that a FIFO planted under a spool name cannot hang the open), and checked to be
//! a regular file before it is read.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::SpoolError;

/// The mode of a spool directory the client creates.
pub(crate) const DIR_MODE: u32 = 0o700;
/// The mode of every file the spool creates.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Options that never follow a symbolic link, never block on a FIFO, and create 0600.
pub(crate) fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    o
}

/// A new file, which must not exist (`O_EXCL`: a planted link is not followed either).
pub(crate) fn create_new(path: &Path) -> io::Result<File> {
    options().write(true).read(true).create_new(true).open(path)
}

/// What opening an existing spool file found.
pub(crate) enum Opened {
    File(File),
    /// Something else than a regular file under that name: what it is.
    NotAFile(&'static str),
}

/// Opens an existing file of the spool (for writing too if asked), refusing anything
/// but a regular file. With `create`, makes it (0600) if it is missing.
pub(crate) fn open_regular(path: &Path, write: bool, create: bool) -> io::Result<Opened> {
    let file = match options()
        .read(true)
        .write(write || create)
        .create(create)
        .open(path)
    {
        Ok(file) => file,
        // O_NOFOLLOW on a symbolic link.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(Opened::NotAFile("a symbolic link"));
        }
        Err(e) => return Err(e),
    };
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        Ok(Opened::File(file))
    } else {
        Ok(Opened::NotAFile(describe_kind(kind)))
    }
}

/// What a directory entry that is not a regular file is, in words.
pub(crate) fn describe_kind(kind: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Makes sure `dir` is a directory only this process's user can change: creates it
/// (0700, and its missing parents likewise) if it does not exist; refuses one owned by
/// another user or writable by its group or by everyone, without changing it.
pub(crate) fn prepare_dir(dir: &Path) -> Result<(), SpoolError> {
    let io = |op| {
        move |source| SpoolError::Io {
            path: dir.to_path_buf(),
            op,
            source,
        }
    };
    let meta = match fs::metadata(dir) {
        Ok(meta) => meta,
        // Missing, or a parent is missing or not a directory (creating it says which).
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(io("create the spool directory"))?;
            // Whoever made it (this client, or another process meanwhile), it is
            // checked like any other.
            fs::metadata(dir).map_err(io("look at the spool directory"))?
        }
        Err(e) => return Err(io("look at the spool directory")(e)),
    };
    if !meta.is_dir() {
        return Err(SpoolError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let euid = effective_uid();
    let mode = meta.mode() & 0o7777;
    if meta.uid() != euid || mode & 0o022 != 0 {
        return Err(SpoolError::NotPrivate {
            path: dir.to_path_buf(),
            owner: meta.uid(),
            mode,
            euid,
        });
    }
    Ok(())
}

/// The process's effective user id.
#[allow(unsafe_code)]
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
