//! Reading a spool without touching it, for the command line's `spool` command.

use std::path::Path;

use super::{SpoolError, SpoolNotice, recover};

/// What a spool directory holds, read without taking its lock or changing anything.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Inspection {
    /// The undelivered frames, oldest first, each exactly as it goes on the wire.
    pub frames: Vec<Vec<u8>>,
    /// What opening it would find: recovered frames, a torn tail it would cut, damaged
    /// files it would set aside, strangers' files.
    pub notices: Vec<SpoolNotice>,
}

/// Reads the spool in `dir` as a client opening it would, but changes nothing: a torn
/// tail is not cut, a damaged file not set aside (the notices say what would be). A
/// client may be using the directory meanwhile; the frames are then a snapshot.
///
/// ```no_run
/// let spool = geneva_audit::spool::inspect(std::path::Path::new("/var/spool/audit"))?;
/// println!("{} frames waiting", spool.frames.len());
/// # Ok::<(), geneva_audit::SpoolError>(())
/// ```
pub fn inspect(dir: &Path) -> Result<Inspection, SpoolError> {
    if !dir.is_dir() {
        if dir.exists() {
            return Err(SpoolError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        return Err(SpoolError::Io {
            path: dir.to_path_buf(),
            op: "read the spool directory",
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let mut frames = Vec::new();
    let scan = recover::scan(dir, false, Some(&mut frames))?;
    Ok(Inspection {
        frames,
        notices: scan.notices,
    })
}
