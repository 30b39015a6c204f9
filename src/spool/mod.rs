//! The spool: encoded frames kept on disk while the agent is away or behind, and across
//! restarts of the process (see `docs/SPOOL.md`).
//!
//! Only the writer thread touches it. Frames go in at the back a batch at a time
//! (`Spool::append_frames`), come out at the front in order, a write's worth at a time
//! (`Spool::read_frames`), and leave the spool only when the agent has read them
//! (`Spool::ack`); `Spool::replace_lent` puts what the writer held in front of them.
//! The format is in `format`; what opening a directory does with what it finds, in
//! `recover`.

mod batch;
mod files;
mod format;
mod inspect;
mod recover;
mod report;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[allow(unused_imports)] // For the writer, once it appends and reads back in batches.
pub(crate) use batch::{Appended, FrameRead};
use files::Opened;
use format::{
    CURSOR_FILE, CURSOR_TMP, FRAME_OVERHEAD, HEADER_LEN, LOCK_FILE, cursor_bytes, frame_prefix,
    header, segment_name,
};
pub use inspect::{Inspection, inspect};
pub(crate) use report::SpoolFault;
use report::fault;
pub use report::{SpoolError, SpoolNotice, SpoolSync};

/// A frame read back: its bytes, and whether an earlier client left it (the tests read
/// frame by frame; the writer reads a write's worth at a time, `Spool::read_frames`).
#[cfg(test)]
pub(crate) struct SpooledFrame<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) inherited: bool,
}

/// A segment with undelivered frames.
struct Segment {
    id: u64,
    /// Where each undelivered frame starts (its prefix) and ends.
    frames: VecDeque<(u64, u64)>,
}

/// The segment being appended to.
struct Tail {
    id: u64,
    file: File,
    len: u64,
}

/// Ids of a new spool's first segment: room below for the frames `close` puts in front.
const FIRST_ID: u64 = 1 << 32;

/// How often the cursor is written when the policy does not say (Off, Always).
const CURSOR_EVERY: Duration = Duration::from_secs(1);

/// What is read from a segment at a time.
const READ_AHEAD: usize = 256 << 10;

pub(crate) struct Spool {
    dir: PathBuf,
    limit: u64,
    sync: SpoolSync,
    /// Held for the spool's life: one client per directory.
    _lock: File,
    /// Oldest first; the last may be the tail.
    segments: VecDeque<Segment>,
    tail: Option<Tail>,
    /// Segment ids up to this were found at open (their frames are inherited).
    inherited_to: Option<u64>,
    /// Segments put in front by [`Spool::replace_lent`], with where the frames an
    /// earlier client left in them end (they come first).
    front_inherited: Vec<(u64, u64)>,
    /// Where the next frame to read is: a segment id and an index into its frames.
    read: (u64, usize),
    /// Frames read and not yet acknowledged: segment id, start, end.
    unacked: VecDeque<(u64, u64, u64)>,
    /// The segment being read back, kept open: its id and file.
    reader: Option<(u64, File)>,
    /// A read-ahead of the segment being read back, up to [`READ_AHEAD`] bytes.
    buf: Vec<u8>,
    /// Where `buf` starts: segment id, offset in it.
    buf_at: (u64, u64),
    frames: u64,
    unread: u64,
    bytes: u64,
    /// Since when something was written and not synced.
    dirty_since: Option<Instant>,
    /// The cursor changed since it was last written.
    cursor_dirty: bool,
    /// When the cursor was last written.
    cursor_at: Instant,
    /// Where frames are put together with their prefixes, to be written in one call.
    scratch: Vec<u8>,
    segment_max: u64,
}

impl Spool {
    /// Opens (creating it if need be) the spool in `dir`, locks it, and recovers what
    /// an earlier client left there.
    pub(crate) fn open(
        dir: &Path,
        limit: u64,
        sync: SpoolSync,
    ) -> Result<(Spool, Vec<SpoolNotice>), SpoolError> {
        let io = |op| {
            move |source| SpoolError::Io {
                path: dir.to_path_buf(),
                op,
                source,
            }
        };
        files::prepare_dir(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = match files::open_regular(&lock_path, true, true) {
            Ok(Opened::File(file)) => file,
            Ok(Opened::NotAFile(found)) => {
                return Err(SpoolError::NotAFile {
                    path: lock_path,
                    found,
                });
            }
            Err(e) => return Err(io("open the lock file of")(e)),
        };
        match try_lock(&lock) {
            Ok(true) => {}
            Ok(false) => {
                return Err(SpoolError::Locked {
                    path: dir.to_path_buf(),
                });
            }
            Err(source) => return Err(io("lock")(source)),
        }
        let scan = recover::scan(dir, true, None)?;
        let mut segments = VecDeque::new();
        let (mut frames, mut bytes) = (0, 0);
        for s in scan.segments {
            frames += s.frames.len() as u64;
            bytes += s.frames.iter().map(|f| f.1 - f.0).sum::<u64>();
            segments.push_back(Segment {
                id: s.id,
                frames: s.frames.into(),
            });
        }
        let inherited_to = segments.back().map(|s: &Segment| s.id);
        let first = segments.front().map_or(FIRST_ID, |s| s.id);
        let spool = Spool {
            dir: dir.to_path_buf(),
            limit,
            sync,
            _lock: lock,
            segments,
            tail: None,
            inherited_to,
            front_inherited: Vec::new(),
            read: (first, 0),
            unacked: VecDeque::new(),
            reader: None,
            buf: Vec::new(),
            buf_at: (0, 0),
            frames,
            unread: frames,
            bytes,
            dirty_since: None,
            cursor_dirty: false,
            cursor_at: Instant::now(),
            scratch: Vec::new(),
            segment_max: (limit / 8).clamp(64 << 10, 16 << 20),
        };
        Ok((spool, scan.notices))
    }

    fn path_of(&self, id: u64) -> PathBuf {
        self.dir.join(segment_name(id))
    }

    /// A new segment file with its header, synced into the directory per the policy.
    fn create_segment(&self, id: u64) -> Result<File, SpoolFault> {
        let path = self.path_of(id);
        let mut file =
            files::create_new(&path).map_err(fault(&path, "create the spool segment"))?;
        if let Err(e) = file.write_all(&header()) {
            let _ = fs::remove_file(&path);
            return Err(fault(&path, "write the header of")(e));
        }
        if self.sync != SpoolSync::Off {
            // The new name must survive a crash too.
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
        }
        Ok(file)
    }

    /// Puts one encoded frame at the back. On an error nothing of it is kept, and the
    /// caller keeps the frame. Not synced here: see [`Spool::commit`].
    pub(crate) fn append(&mut self, frame: &[u8]) -> Result<(), SpoolFault> {
        match self.append_frames([frame]).fault {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Ends a batch of appends: under [`SpoolSync::Always`], syncs them now, so what the
    /// caller counts as spooled after this is on disk. One sync per batch, not per
    /// frame: a sync costs about a millisecond on a disk.
    pub(crate) fn commit(&mut self) -> Result<(), SpoolFault> {
        if self.sync == SpoolSync::Always && self.dirty_since.is_some() {
            self.sync_data()?;
        }
        Ok(())
    }

    /// Stops appending to the tail segment (it is full): syncs it per the policy.
    fn seal_tail(&mut self) -> Result<(), SpoolFault> {
        if self.sync != SpoolSync::Off {
            self.sync_data()?;
        }
        self.tail = None;
        Ok(())
    }

    fn sync_data(&mut self) -> Result<(), SpoolFault> {
        if let Some(tail) = &self.tail {
            let path = self.path_of(tail.id);
            tail.file
                .sync_data()
                .map_err(fault(&path, "sync the spool segment"))?;
        }
        self.dirty_since = None;
        Ok(())
    }

    /// Puts `frames` in a new segment in front of everything in the spool, in place of
    /// the frames read and not yet acknowledged, which `frames` must hold in the order
    /// they were read: the writer's outbox, spooled frames and records alike, each with
    /// whether an earlier client left it (those come first). They are the next frames
    /// read. Synced before it returns; on an error nothing changes. Returns how many
    /// frames it wrote, and a fault in letting the old copies go (which can only send
    /// them twice).
    pub(crate) fn replace_lent(
        &mut self,
        frames: &mut dyn Iterator<Item = (&[u8], bool)>,
    ) -> Result<(u64, Option<SpoolFault>), SpoolFault> {
        let id = self.segments.front().map_or(FIRST_ID, |s| s.id) - 1;
        let lent: u64 = self
            .unacked
            .iter()
            .map(|&(_, start, end)| end - start)
            .sum();
        let room = self.limit.saturating_sub(self.bytes.saturating_sub(lent));
        let mut batch = Vec::new();
        let mut positions = VecDeque::new();
        let mut at = HEADER_LEN;
        let mut inherited_end = HEADER_LEN;
        for (frame, inherited) in frames {
            let size = FRAME_OVERHEAD + frame.len() as u64;
            if inherited {
                inherited_end = at + size;
            }
            if at - HEADER_LEN + size > room {
                return Err(SpoolFault::Full { limit: self.limit });
            }
            batch.extend_from_slice(&frame_prefix(frame));
            batch.extend_from_slice(frame);
            positions.push_back((at, at + size));
            at += size;
        }
        if positions.is_empty() {
            return Ok((0, None));
        }
        let path = self.path_of(id);
        let file = self.create_segment(id)?;
        if let Err(e) = file
            .write_all_at(&batch, HEADER_LEN)
            .and_then(|()| file.sync_data())
        {
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(fault(&path, "write the records the writer held to")(e));
        }
        // The new copies are on disk: the old ones go (a crash before the cursor says so
        // sends them twice, never loses them).
        let released = self.ack(self.unacked.len() as u64).err();
        let n = positions.len() as u64;
        self.segments.push_front(Segment {
            id,
            frames: positions,
        });
        self.front_inherited.push((id, inherited_end));
        self.frames += n;
        self.unread += n;
        self.read = (id, 0);
        self.bytes += at - HEADER_LEN;
        Ok((n, released))
    }

    /// Syncs if the policy says it is time; writes the cursor if it moved (at most as
    /// often as the policy syncs, and once a second).
    pub(crate) fn tick(&mut self, now: Instant) -> Result<(), SpoolFault> {
        let every = match self.sync {
            SpoolSync::Every(every) => every,
            SpoolSync::Off | SpoolSync::Always => CURSOR_EVERY,
        };
        if let (SpoolSync::Every(_), Some(since)) = (self.sync, self.dirty_since) {
            if now.saturating_duration_since(since) >= every {
                self.sync_data()?;
            }
        }
        if self.cursor_dirty && now.saturating_duration_since(self.cursor_at) >= every {
            self.cursor_at = now;
            self.write_cursor(self.sync != SpoolSync::Off)?;
        }
        Ok(())
    }

    /// Puts everything on the disk now (at close).
    pub(crate) fn sync(&mut self) -> Result<(), SpoolFault> {
        self.sync_data()?;
        self.write_cursor(true)
    }

    /// Records how far each segment was delivered (only those with a delivered prefix:
    /// usually the oldest alone, two once `close` has put frames in front of it).
    fn write_cursor(&mut self, durable: bool) -> Result<(), SpoolFault> {
        if !self.cursor_dirty {
            return Ok(());
        }
        let tail = self.tail.as_ref().map(|t| (t.id, t.len));
        let entries: Vec<(u64, u64)> = self
            .segments
            .iter()
            .filter_map(|s| {
                // Everything before the first undelivered frame was delivered (all of
                // it, if none is left: only the tail is kept empty).
                let offset = match s.frames.front() {
                    Some(f) => f.0,
                    None => tail.filter(|t| t.0 == s.id).map_or(HEADER_LEN, |t| t.1),
                };
                (offset > HEADER_LEN).then_some((s.id, offset))
            })
            .collect();
        let path = self.dir.join(CURSOR_FILE);
        if entries.is_empty() {
            // Nothing delivered is still on disk.
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(fault(&path, "remove the spool cursor")(e)),
            }
            self.cursor_dirty = false;
            return Ok(());
        }
        let tmp = self.dir.join(CURSOR_TMP);
        // Whatever has that name goes first (a link planted there is removed, never
        // followed); then the file is made anew, 0600.
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(fault(&tmp, "remove the old spool cursor")(e)),
        }
        let mut file = files::create_new(&tmp).map_err(fault(&tmp, "write the spool cursor"))?;
        file.write_all(&cursor_bytes(&entries))
            .and_then(|()| if durable { file.sync_data() } else { Ok(()) })
            .map_err(fault(&tmp, "write the spool cursor"))?;
        fs::rename(&tmp, path).map_err(fault(&tmp, "replace the spool cursor with"))?;
        self.cursor_dirty = false;
        Ok(())
    }

    /// The next frame not read yet, in order.
    #[cfg(test)]
    pub(crate) fn next_frame(&mut self) -> Result<Option<SpooledFrame<'_>>, SpoolFault> {
        let Some((id, index, (start, end))) = self.next_position() else {
            return Ok(None);
        };
        self.read = (id, index + 1);
        self.unacked.push_back((id, start, end));
        self.unread = self.unread.saturating_sub(1);
        let inherited = self.inherited(id, start);
        let range = self.load(id, start, end)?;
        let bytes = self.buf.get(range).unwrap_or_default();
        Ok(Some(SpooledFrame { bytes, inherited }))
    }

    /// Where the next frame not read yet is: its segment, its index there, and its
    /// bytes' range (prefix included).
    fn next_position(&self) -> Option<(u64, usize, (u64, u64))> {
        let (mut id, mut index) = self.read;
        loop {
            // The segments are in id order: the first at or after the read position.
            let at = self.segments.partition_point(|s| s.id < id);
            let seg = self.segments.get(at)?;
            if seg.id != id {
                (id, index) = (seg.id, 0);
            }
            match seg.frames.get(index) {
                Some(&f) => return Some((id, index, f)),
                None if self.tail.as_ref().is_some_and(|t| t.id == id) => return None,
                None => (id, index) = (id + 1, 0),
            }
        }
    }

    /// Whether the frame at `start` of segment `id` was left by an earlier client.
    fn inherited(&self, id: u64, start: u64) -> bool {
        match self.front_inherited.iter().find(|f| f.0 == id) {
            Some(&(_, end)) => start < end,
            None => self.inherited_to.is_some_and(|to| id <= to),
        }
    }

    /// Makes sure `buf` holds bytes `start..end` of segment `id`; returns where the
    /// payload lies in it.
    fn load(
        &mut self,
        id: u64,
        start: u64,
        end: u64,
    ) -> Result<std::ops::Range<usize>, SpoolFault> {
        let (buf_id, buf_from) = self.buf_at;
        let held = buf_id == id && start >= buf_from && end <= buf_from + self.buf.len() as u64;
        if !held {
            let path = self.path_of(id);
            if self.reader.as_ref().is_none_or(|r| r.0 != id) {
                let file = match files::open_regular(&path, false, false) {
                    Ok(Opened::File(file)) => file,
                    Ok(Opened::NotAFile(found)) => {
                        return Err(fault(&path, "read the spool segment")(io::Error::other(
                            format!("it is now {found}, not a regular file"),
                        )));
                    }
                    Err(e) => return Err(fault(&path, "open the spool segment")(e)),
                };
                self.reader = Some((id, file));
            }
            let Some((_, file)) = &self.reader else {
                return Ok(0..0);
            };
            let want = ((end - start) as usize).max(READ_AHEAD);
            self.buf.resize(want, 0);
            let mut got = 0;
            while got < want {
                match file.read_at(&mut self.buf[got..], start + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(fault(&path, "read the spool segment")(e)),
                }
            }
            self.buf.truncate(got);
            self.buf_at = (id, start);
            if (got as u64) < end - start {
                return Err(SpoolFault::Io {
                    path,
                    op: "read the spool segment",
                    source: io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file is shorter than written",
                    ),
                });
            }
        }
        let from = (start - self.buf_at.1 + FRAME_OVERHEAD) as usize;
        Ok(from..(end - self.buf_at.1) as usize)
    }

    /// The `n` oldest frames read were delivered: they leave the spool, and segments
    /// with nothing left are deleted.
    pub(crate) fn ack(&mut self, n: u64) -> Result<(), SpoolFault> {
        for _ in 0..n {
            let Some((id, start, end)) = self.unacked.pop_front() else {
                break;
            };
            // Segments before this one are done (their frames were all read before it).
            while self.segments.front().is_some_and(|s| s.id < id) {
                self.drop_front()?;
            }
            if let Some(seg) = self.segments.front_mut() {
                if seg.frames.front() == Some(&(start, end)) {
                    seg.frames.pop_front();
                }
            }
            self.frames = self.frames.saturating_sub(1);
            self.bytes = self.bytes.saturating_sub(end - start);
            self.cursor_dirty = true;
            let done = self.segments.front().is_some_and(|s| {
                s.frames.is_empty() && self.tail.as_ref().is_none_or(|t| t.id != s.id)
            });
            if done {
                self.drop_front()?;
            }
            // The read position counts from the front of its segment.
            if self.read.0 == id {
                self.read.1 = self.read.1.saturating_sub(1);
            }
        }
        Ok(())
    }

    /// Deletes the oldest segment.
    fn drop_front(&mut self) -> Result<(), SpoolFault> {
        let Some(seg) = self.segments.pop_front() else {
            return Ok(());
        };
        self.front_inherited.retain(|f| f.0 != seg.id);
        if self.reader.as_ref().is_some_and(|r| r.0 == seg.id) {
            self.reader = None;
        }
        let path = self.path_of(seg.id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(fault(&path, "delete the delivered spool segment")(e)),
        }
    }

    /// Frames in the spool, delivered ones excepted.
    /// Frames read and not yet acknowledged: lent to the writer.
    pub(crate) fn lent(&self) -> u64 {
        self.unacked.len() as u64
    }

    pub(crate) fn frames(&self) -> u64 {
        self.frames
    }

    /// Frames not read yet.
    pub(crate) fn unread(&self) -> u64 {
        self.unread
    }

    /// Bytes on disk of the frames in the spool (what the limit counts).
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }
}

/// Takes the directory's lock without waiting: false if someone else holds it.
#[allow(unsafe_code)]
fn try_lock(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this function borrows, valid for the call; the lock
    // lives as long as the file stays open (the spool keeps it).
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}
