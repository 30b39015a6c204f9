//! What a spool directory holds when it is opened: every segment read and checked, a
//! torn tail cut, a damaged file set aside (renamed, never deleted) with its good frames
//! kept, strangers' files named and left alone, and anything but a regular file under a
//! segment's or the cursor's name renamed aside unread (a planted symbolic link is never
//! followed).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::files::{self, Opened};
use super::format::{
    ASIDE_MARK, CURSOR_FILE, FOREIGN_MARK, FRAME_OVERHEAD, Found, HEADER_LEN, Header, aside_path,
    frame_at, header, is_ours, read_cursor, read_header, segment_id, segment_name,
};
use super::{SpoolError, SpoolNotice};

/// A segment as found, after repair.
#[derive(Debug, Clone)]
pub(crate) struct SegmentScan {
    pub(crate) id: u64,
    /// The offsets where each undelivered frame's prefix starts and its payload ends.
    pub(crate) frames: Vec<(u64, u64)>,
}

/// What the directory holds.
pub(crate) struct Scan {
    pub(crate) segments: Vec<SegmentScan>,
    pub(crate) notices: Vec<SpoolNotice>,
}

fn io_error<'a>(
    path: &'a Path,
    op: &'static str,
) -> impl FnOnce(std::io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Reads every segment of `dir`. With `repair`, cuts torn tails and sets damaged files
/// aside (the client's open); without, only says what it would do (`inspect`).
/// `payloads` receives each undelivered frame's bytes, in order, when given.
pub(crate) fn scan(
    dir: &Path,
    repair: bool,
    mut payloads: Option<&mut Vec<Vec<u8>>>,
) -> Result<Scan, SpoolError> {
    let mut ids = Vec::new();
    let mut notices = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir, "read the spool directory"))? {
        let entry = entry.map_err(io_error(dir, "read the spool directory"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        match segment_id(&name) {
            Some(id) => {
                // Not even opened unless it is a regular file (a device could answer).
                let kind = entry
                    .file_type()
                    .map_err(io_error(&entry.path(), "look at a spool segment"))?;
                if kind.is_file() {
                    ids.push(id);
                } else {
                    let found = files::describe_kind(kind);
                    set_aside_strange(&entry.path(), found, repair, &mut notices)?;
                }
            }
            None if is_ours(&name) => {}
            None => notices.push(SpoolNotice::Foreign { path: entry.path() }),
        }
    }
    ids.sort_unstable();
    // A cursor that cannot be read is ignored, like one that does not check out: that
    // can only send delivered frames again.
    let mut bytes = Vec::new();
    let cursor = match read_file(&dir.join(CURSOR_FILE), repair, &mut notices, &mut bytes) {
        Ok(true) => read_cursor(&bytes),
        _ => Default::default(),
    };
    let mut segments = Vec::with_capacity(ids.len());
    let last = ids.last().copied();
    for id in ids {
        let path = dir.join(segment_name(id));
        if !read_file(&path, repair, &mut notices, &mut bytes)? {
            continue;
        }
        let Some(mut found) = check(&path, id, &bytes, Some(id) == last, repair, &mut notices)?
        else {
            continue;
        };
        // Frames the cursor says were delivered are not sent again (only in the segments
        // it names, and only at a frame's end: anything else is not this file's cursor).
        for &(_, offset) in cursor.iter().filter(|c| c.0 == id) {
            if found.frames.iter().any(|f| f.1 == offset) {
                found.frames.retain(|f| f.1 > offset);
            }
        }
        if let Some(out) = payloads.as_deref_mut() {
            for &(start, end) in &found.frames {
                let payload = bytes.get((start + FRAME_OVERHEAD) as usize..end as usize);
                out.push(payload.unwrap_or_default().to_vec());
            }
        }
        segments.push(found);
    }
    let (frames, bytes) = segments.iter().fold((0, 0), |(n, b), s| {
        let size: u64 = s.frames.iter().map(|f| f.1 - f.0).sum();
        (n + s.frames.len() as u64, b + size)
    });
    if frames > 0 {
        notices.push(SpoolNotice::Recovered { frames, bytes });
    }
    Ok(Scan { segments, notices })
}

/// Reads a spool file into `bytes` (reused from file to file: a segment is up to 16 MiB,
/// and a new buffer for each would fault in every page of it again), if it is a regular
/// file; returns whether it did. Anything else under its name (a symbolic link, a FIFO)
/// is not read: it is renamed aside (with `repair`) and told. A missing file is not
/// read either.
fn read_file(
    path: &Path,
    repair: bool,
    notices: &mut Vec<SpoolNotice>,
    bytes: &mut Vec<u8>,
) -> Result<bool, SpoolError> {
    let mut file = match files::open_regular(path, false, false) {
        Ok(Opened::File(file)) => file,
        Ok(Opened::NotAFile(found)) => {
            set_aside_strange(path, found, repair, notices)?;
            return Ok(false);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error(path, "open a spool file")(e)),
    };
    bytes.clear();
    file.read_to_end(bytes)
        .map_err(io_error(path, "read a spool file"))?;
    Ok(true)
}

/// Renames aside what is not a regular file under a spool name (the rename moves a
/// symbolic link itself, never what it points to).
fn set_aside_strange(
    path: &Path,
    found: &'static str,
    repair: bool,
    notices: &mut Vec<SpoolNotice>,
) -> Result<(), SpoolError> {
    let moved_to = aside_path(path, FOREIGN_MARK);
    if repair {
        fs::rename(path, &moved_to).map_err(io_error(path, "set aside a foreign file at"))?;
    }
    notices.push(SpoolNotice::NotAFile {
        path: path.to_path_buf(),
        found,
        moved_to,
    });
    Ok(())
}

/// Checks one segment; repairs it when asked. `None`: nothing of it is kept.
fn check(
    path: &Path,
    id: u64,
    bytes: &[u8],
    last: bool,
    repair: bool,
    notices: &mut Vec<SpoolNotice>,
) -> Result<Option<SegmentScan>, SpoolError> {
    match read_header(bytes) {
        Header::Ours => {}
        Header::Newer(found) => {
            return Err(SpoolError::NewerVersion {
                path: path.to_path_buf(),
                found,
                supported: super::format::VERSION,
            });
        }
        Header::Bad => {
            let reason = if bytes.is_empty() {
                "the file is empty".to_owned()
            } else {
                "the file does not start with a spool segment's header".to_owned()
            };
            set_aside(path, &[], repair, reason, notices)?;
            return Ok(None);
        }
    }
    let mut frames = Vec::new();
    let mut at = HEADER_LEN as usize;
    loop {
        match frame_at(bytes, at) {
            Found::Frame { end, .. } => {
                frames.push((at as u64, end as u64));
                at = end;
            }
            Found::End => break,
            // A write that did not finish, at the end of the newest segment: cut it.
            Found::Cut if last => {
                let cut = (bytes.len() - at) as u64;
                if repair {
                    let file = files::options()
                        .write(true)
                        .open(path)
                        .map_err(io_error(path, "open a torn segment"))?;
                    file.set_len(at as u64)
                        .and_then(|()| file.sync_all())
                        .map_err(io_error(path, "cut a torn segment's tail"))?;
                }
                notices.push(SpoolNotice::TornTail {
                    path: path.to_path_buf(),
                    offset: at as u64,
                    bytes_cut: cut,
                });
                break;
            }
            other => {
                let what = match other {
                    Found::Damaged(what) => what,
                    _ => "the file ending inside a frame".to_owned(),
                };
                let reason = format!(
                    "{what} at offset {at}; the {} frames before it are kept",
                    frames.len()
                );
                let good = bytes.get(HEADER_LEN as usize..at).unwrap_or_default();
                set_aside(path, good, repair, reason, notices)?;
                if good.is_empty() {
                    return Ok(None);
                }
                break;
            }
        }
    }
    Ok(Some(SegmentScan { id, frames }))
}

/// Renames a damaged segment aside and, if it had good frames, writes them back under
/// its name.
fn set_aside(
    path: &Path,
    good: &[u8],
    repair: bool,
    reason: String,
    notices: &mut Vec<SpoolNotice>,
) -> Result<(), SpoolError> {
    let moved_to: PathBuf = aside_path(path, ASIDE_MARK);
    if repair {
        fs::rename(path, &moved_to).map_err(io_error(path, "set a damaged segment aside"))?;
        if !good.is_empty() {
            let mut file = files::create_new(path).map_err(io_error(path, "rewrite a segment"))?;
            file.write_all(&header())
                .and_then(|()| file.write_all(good))
                .and_then(|()| file.sync_all())
                .map_err(io_error(path, "rewrite a segment"))?;
        }
    }
    notices.push(SpoolNotice::SetAside {
        path: path.to_path_buf(),
        moved_to,
        reason,
    });
    Ok(())
}
