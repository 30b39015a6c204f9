//! Frames in and out of the spool a batch at a time: an append of many frames is one
//! write per segment it touches, and a read-back fills the caller's buffer with a
//! write's worth of payloads, ready for the socket, without an allocation per frame.

use std::os::unix::fs::FileExt;

use super::format::{FRAME_OVERHEAD, HEADER_LEN, frame_prefix};
use super::report::fault;
use super::{FIRST_ID, Segment, Spool, SpoolFault, Tail};

/// What [`Spool::append_frames`] did: the first `frames` of the batch are in the spool,
/// the rest (if any) are not, for the reason in `fault`.
#[derive(Debug)]
#[must_use = "the frames past `frames` were not appended"]
pub(crate) struct Appended {
    /// How many frames went in, from the first.
    pub(crate) frames: usize,
    /// Why the rest did not: the limit ([`SpoolFault::Full`]) or the disk.
    pub(crate) fault: Option<SpoolFault>,
}

/// One frame read back by [`Spool::read_frames`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameRead {
    /// Its payload's length: the frames lie back to back in the caller's buffer.
    pub(crate) len: usize,
    /// Whether an earlier client left it (the spool held it when opened).
    pub(crate) inherited: bool,
}

impl Spool {
    /// Puts `frames` at the back, in order, each with its 8-byte prefix, as one write
    /// per segment (the prefixes and frames are put together in a buffer the spool
    /// reuses). A batch that reaches a segment's end goes on in a new segment; one that
    /// reaches the limit stops there. A write that fails is cut off its segment
    /// (`ftruncate`), so a segment never holds part of a batch the process knows of.
    /// Returns how many frames, from the first, went in: the caller keeps the rest.
    /// Not synced here: see [`Spool::commit`].
    pub(crate) fn append_frames<'a, I>(&mut self, frames: I) -> Appended
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut frames = frames.into_iter().peekable();
        let mut done = 0;
        while let Some(first) = frames.peek() {
            if self.bytes + FRAME_OVERHEAD + first.len() as u64 > self.limit {
                return Appended {
                    frames: done,
                    fault: Some(SpoolFault::Full { limit: self.limit }),
                };
            }
            if let Err(e) = self.ready_tail() {
                return Appended {
                    frames: done,
                    fault: Some(e),
                };
            }
            match self.write_to_tail(&mut frames) {
                Ok((n, full)) => {
                    done += n;
                    if full {
                        return Appended {
                            frames: done,
                            fault: Some(SpoolFault::Full { limit: self.limit }),
                        };
                    }
                }
                Err(e) => {
                    return Appended {
                        frames: done,
                        fault: Some(e),
                    };
                }
            }
        }
        Appended {
            frames: done,
            fault: None,
        }
    }

    /// Makes sure there is a tail segment with room: seals a full one, begins a new one.
    fn ready_tail(&mut self) -> Result<(), SpoolFault> {
        if self
            .tail
            .as_ref()
            .is_some_and(|t| t.len >= self.segment_max)
        {
            self.seal_tail()?;
        }
        if self.tail.is_none() {
            let id = self.segments.back().map_or(FIRST_ID, |s| s.id + 1);
            let file = self.create_segment(id)?;
            self.tail = Some(Tail {
                id,
                file,
                len: HEADER_LEN,
            });
            self.segments.push_back(Segment {
                id,
                frames: Default::default(),
            });
        }
        Ok(())
    }

    /// Writes as many of `frames` as the tail segment and the limit take, in one write.
    /// Returns how many, and whether the limit stopped them.
    fn write_to_tail<'a, I>(
        &mut self,
        frames: &mut std::iter::Peekable<I>,
    ) -> Result<(usize, bool), SpoolFault>
    where
        I: Iterator<Item = &'a [u8]>,
    {
        let (Some(tail), Some(seg)) = (self.tail.as_mut(), self.segments.back_mut()) else {
            return Ok((0, false));
        };
        let before = seg.frames.len();
        self.scratch.clear();
        let mut full = false;
        let mut bytes = self.bytes;
        while let Some(frame) = frames.peek() {
            let size = FRAME_OVERHEAD + frame.len() as u64;
            if bytes + size > self.limit {
                full = true;
                break;
            }
            // A segment closes once it reaches its size (the frame that crosses it stays).
            if !self.scratch.is_empty() && tail.len + self.scratch.len() as u64 >= self.segment_max
            {
                break;
            }
            let start = tail.len + self.scratch.len() as u64;
            self.scratch.extend_from_slice(&frame_prefix(frame));
            self.scratch.extend_from_slice(frame);
            seg.frames.push_back((start, start + size));
            bytes += size;
            frames.next();
        }
        if let Err(e) = tail.file.write_all_at(&self.scratch, tail.len) {
            // Nothing of the batch stays: the file ends at its last whole frame.
            let _ = tail.file.set_len(tail.len);
            seg.frames.truncate(before);
            let path = self.dir.join(super::format::segment_name(tail.id));
            return Err(fault(&path, "append to the spool segment")(e));
        }
        let n = seg.frames.len() - before;
        tail.len += self.scratch.len() as u64;
        self.frames += n as u64;
        self.unread += n as u64;
        self.bytes = bytes;
        if n > 0 {
            self.dirty_since.get_or_insert_with(std::time::Instant::now);
        }
        Ok((n, full))
    }

    /// Reads frames not read yet, in order, into the caller's reused buffers: their
    /// payloads (without prefixes, each exactly as it goes on the wire) appended back to
    /// back to `payloads`, up to `max_bytes` of them (a frame larger than that comes
    /// alone), and a [`FrameRead`] for each appended to `frames`. Each payload's checksum
    /// is checked. Returns how many frames it read (0: none is left to read).
    ///
    /// The frames read leave the spool when [`Spool::ack`] says they were delivered.
    /// An error (a checksum that does not hold, a file that cannot be read) comes only
    /// when it is met at the first frame: the frames before it are returned first.
    pub(crate) fn read_frames(
        &mut self,
        max_bytes: usize,
        payloads: &mut Vec<u8>,
        frames: &mut Vec<FrameRead>,
    ) -> Result<usize, SpoolFault> {
        let (mut n, mut added) = (0, 0);
        while let Some((id, index, (start, end))) = self.next_position() {
            let len = (end - start - FRAME_OVERHEAD) as usize;
            if n > 0 && added + len > max_bytes {
                break;
            }
            let range = match self.load_checked(id, start, end) {
                Ok(range) => range,
                Err(_) if n > 0 => break,
                Err(e) => return Err(e),
            };
            payloads.extend_from_slice(self.buf.get(range).unwrap_or_default());
            let inherited = self.inherited(id, start);
            frames.push(FrameRead { len, inherited });
            self.read = (id, index + 1);
            self.unacked.push_back((id, start, end));
            self.unread = self.unread.saturating_sub(1);
            (n, added) = (n + 1, added + len);
        }
        Ok(n)
    }

    /// Where in `buf` the payload of the frame at `start..end` of segment `id` lies,
    /// its length and checksum checked against its prefix.
    fn load_checked(
        &mut self,
        id: u64,
        start: u64,
        end: u64,
    ) -> Result<std::ops::Range<usize>, SpoolFault> {
        let range = self.load(id, start, end)?;
        let prefix = range.start.saturating_sub(FRAME_OVERHEAD as usize)..range.start;
        let holds = match (self.buf.get(prefix), self.buf.get(range.clone())) {
            (Some(prefix), Some(payload)) => prefix == frame_prefix(payload),
            _ => false,
        };
        if !holds {
            let what = "a checksum or length that does not match the frame".to_owned();
            return Err(self.damaged(id, start, what));
        }
        Ok(range)
    }

    fn damaged(&self, id: u64, offset: u64, what: String) -> SpoolFault {
        let path = self.path_of(id);
        fault(&path, "read back the spool segment")(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{what} at offset {offset}"),
        ))
    }
}
