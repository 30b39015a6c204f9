//! The spool's files.
//!
//! A spool directory holds segment files named `{id:016x}.seg`, oldest (lowest id)
//! first, and two small files of its own: `lock` (held with `flock` by the one client
//! using the directory) and `cursor` (how far the oldest segment has been delivered).
//!
//! A segment starts with a 16-byte header: the magic `GAUDSPL\0`, the format version
//! (u16 little-endian, now 1) and six reserved zero bytes. Then frames, each
//! `[u32 LE payload length][u32 LE crc32c of the payload][payload]`, the payload being
//! one encoded frame exactly as it goes on the wire. crc32c (Castagnoli) is computed by
//! the CPU's own instruction on x86-64 and aarch64, a few hundred nanoseconds for a
//! kilobyte frame; it finds every burst error of up to 32 bits and all odd bit flips.
//!
//! `cursor` is one or more entries `[u64 LE segment id][u64 LE offset]`, then a `[u32 LE
//! crc32c of every byte before]`: every frame of a named segment ending at or before its
//! offset was delivered. There is an entry for each segment with a delivered prefix
//! (more than one once `close` has put frames in front of a segment being delivered).
//! It is replaced whole (written to `cursor.tmp`, then renamed), so it is either the old
//! one or the new one; a cursor that does not check out is ignored, which can only send
//! delivered frames again, never lose one.

use std::path::Path;

/// The first bytes of every segment.
pub(crate) const MAGIC: &[u8; 8] = b"GAUDSPL\0";
/// The format this code writes; a higher one is refused, a lower one does not exist.
pub(crate) const VERSION: u16 = 1;
/// Bytes of a segment's header.
pub(crate) const HEADER_LEN: u64 = 16;
/// Bytes before each frame's payload: its length and its checksum.
pub(crate) const FRAME_OVERHEAD: u64 = 8;
/// A length larger than this is damage, not a frame (frames are bounded far below).
pub(crate) const MAX_FRAME: u32 = 64 << 20;
/// Bytes of one entry of the cursor file, and of its checksum.
const CURSOR_ENTRY: usize = 16;
const CURSOR_CRC: usize = 4;

pub(crate) const LOCK_FILE: &str = "lock";
pub(crate) const CURSOR_FILE: &str = "cursor";
pub(crate) const CURSOR_TMP: &str = "cursor.tmp";
/// What a damaged file set aside gets after its name, with the time.
pub(crate) const ASIDE_MARK: &str = ".corrupt-";
/// What something that is not a regular file, found under a spool name, gets after it.
pub(crate) const FOREIGN_MARK: &str = ".foreign-";

/// A segment's header.
pub(crate) fn header() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..10].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// What a segment's first bytes say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Header {
    Ours,
    /// Written by a newer version of this crate.
    Newer(u16),
    /// Not a segment header (or too short to be one).
    Bad,
}

pub(crate) fn read_header(bytes: &[u8]) -> Header {
    let (Some(magic), Some(version)) = (bytes.get(..8), bytes.get(8..10)) else {
        return Header::Bad;
    };
    if bytes.len() < HEADER_LEN as usize || magic != MAGIC {
        return Header::Bad;
    }
    match u16::from_le_bytes([version[0], version[1]]) {
        VERSION => Header::Ours,
        v if v > VERSION => Header::Newer(v),
        _ => Header::Bad,
    }
}

/// The 8 bytes before a frame's payload.
pub(crate) fn frame_prefix(payload: &[u8]) -> [u8; FRAME_OVERHEAD as usize] {
    let mut p = [0u8; FRAME_OVERHEAD as usize];
    p[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    p[4..].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    p
}

/// What is found at an offset of a segment's bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// A whole frame whose checksum holds: its payload's range.
    Frame { start: usize, end: usize },
    /// The bytes end at this offset.
    End,
    /// The bytes end inside a frame (a write that did not finish).
    Cut,
    /// A frame whose length or checksum is wrong.
    Damaged(String),
}

/// Reads the frame at `at` in `bytes`.
pub(crate) fn frame_at(bytes: &[u8], at: usize) -> Found {
    if at == bytes.len() {
        return Found::End;
    }
    let Some(prefix) = bytes.get(at..at + FRAME_OVERHEAD as usize) else {
        return Found::Cut;
    };
    let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    let crc = u32::from_le_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
    if len == 0 || len > MAX_FRAME {
        return Found::Damaged(format!("a frame length of {len} bytes"));
    }
    let start = at + FRAME_OVERHEAD as usize;
    let end = start + len as usize;
    let Some(payload) = bytes.get(start..end) else {
        return Found::Cut;
    };
    let computed = crc32c::crc32c(payload);
    if computed != crc {
        return Found::Damaged(format!(
            "a checksum mismatch (stored {crc:08x}, computed {computed:08x})"
        ));
    }
    Found::Frame { start, end }
}

/// The segment id a file name stands for, if it is a segment's name.
pub(crate) fn segment_id(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".seg")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

pub(crate) fn segment_name(id: u64) -> String {
    format!("{id:016x}.seg")
}

/// Whether a file in the directory is the spool's own (not a stranger's).
pub(crate) fn is_ours(name: &str) -> bool {
    name == LOCK_FILE
        || name == CURSOR_FILE
        || name == CURSOR_TMP
        || segment_id(name).is_some()
        || name.contains(".seg.corrupt-")
}

/// The cursor's bytes: an entry per (segment id, offset), then the checksum.
pub(crate) fn cursor_bytes(entries: &[(u64, u64)]) -> Vec<u8> {
    let mut c = Vec::with_capacity(entries.len() * CURSOR_ENTRY + CURSOR_CRC);
    for (segment, offset) in entries {
        c.extend_from_slice(&segment.to_le_bytes());
        c.extend_from_slice(&offset.to_le_bytes());
    }
    let crc = crc32c::crc32c(&c);
    c.extend_from_slice(&crc.to_le_bytes());
    c
}

/// The entries a cursor file holds, if it checks out (none if it does not).
pub(crate) fn read_cursor(bytes: &[u8]) -> Vec<(u64, u64)> {
    let Some(body_len) = bytes.len().checked_sub(CURSOR_CRC) else {
        return Vec::new();
    };
    let (body, crc) = bytes.split_at(body_len);
    let whole = body_len > 0 && body_len % CURSOR_ENTRY == 0;
    let crc = crc.try_into().ok().map(u32::from_le_bytes);
    if !whole || crc != Some(crc32c::crc32c(body)) {
        return Vec::new();
    }
    let word = |b: &[u8]| b.try_into().map(u64::from_le_bytes).unwrap_or_default();
    body.chunks_exact(CURSOR_ENTRY)
        .map(|e| e.split_at(8))
        .map(|(id, offset)| (word(id), word(offset)))
        .collect()
}

/// Where a file set aside is moved: its name with `mark` (`.corrupt-`, `.foreign-`) and
/// the unix seconds, never over another file (nor over a symbolic link).
pub(crate) fn aside_path(path: &Path, mark: &str) -> std::path::PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy().into_owned());
    let mut n = 0;
    loop {
        let suffix = if n == 0 {
            String::new()
        } else {
            format!(".{n}")
        };
        let candidate = path.with_file_name(format!("{name}{mark}{secs}{suffix}"));
        if candidate.symlink_metadata().is_err() {
            return candidate;
        }
        n += 1;
    }
}
