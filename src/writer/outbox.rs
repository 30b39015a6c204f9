//! The writer's records in flight: every record from the moment the writer takes it off
//! the queue until the agent has read it.
//!
//! A record's life here has three states, each a [`Stage`] of its frame: *taken* (off the
//! queue, not yet encoded), *buffered* (encoded into the outgoing buffer, not yet
//! completely handed to the kernel) and *written* (handed to the current connection,
//! waiting for the kernel to show the agent read it). A record leaves the outbox when it
//! is *delivered* ([`Outbox::on_read`]), when it is lost, or when it is handed back at
//! close ([`Outbox::take_unsent`], or the spool: [`Outbox::release_to_spool`]). The frames lie in one deque in that order (written,
//! then buffered, then taken), so no record is ever moved between collections.
//!
//! The outbox only keeps books: it makes no syscalls and touches no counters, so every
//! transition is unit-tested below without sockets or threads.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::encode::{FrameBuf, append_record, append_record_in};
use crate::queue::FlushSignal;
use crate::record::Record;
use lent::Lent;
use marker::{Marker, count_lost};
pub(crate) use report::{Chunk, Failure, Read, Wrote};

/// The most bytes one write hands to the kernel (a frame larger than this goes alone):
/// each write then fits one 64 KiB read of the agent's.
pub(crate) const WRITE_BYTES: usize = 64 * 1024;

/// Where a frame is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Off the queue; the producer measured that its frame fits in `size_bound` bytes.
    Taken { size_bound: usize },
    /// Encoded at `start..end` of the outgoing buffer.
    Buffered { start: usize, end: usize },
    /// Handed whole to the current connection, ending at byte `stream_end` of its stream.
    Written { stream_end: u64 },
}

struct Frame {
    /// The record's place in the order the writer took records off the queue.
    seq: u64,
    ts: i64,
    body: Body,
    stage: Stage,
}

/// What a frame carries.
// Records are the hot path: boxing them to shrink the rare spooled variant would cost
// an allocation per record.
#[allow(clippy::large_enum_variant)]
enum Body {
    /// A record taken off the queue.
    Record(Record),
    /// A frame read back from the spool, kept (at `at..at + len` of the outbox's `lent`
    /// bytes) to be written again after a failure; it leaves the spool once delivered.
    /// `inherited`: it was in the spool when the client opened it (an earlier client's
    /// record, not counted among this one's).
    Spooled {
        at: usize,
        len: usize,
        inherited: bool,
    },
}

impl Body {
    /// Whether the record is this client's own (counted in its `accepted`).
    fn own(&self) -> bool {
        !matches!(
            self,
            Body::Spooled {
                inherited: true,
                ..
            }
        )
    }
}

pub(crate) struct Outbox {
    /// In order: `written` frames in [`Stage::Written`], then `buffered` frames in
    /// [`Stage::Buffered`], then the rest in [`Stage::Taken`].
    frames: VecDeque<Frame>,
    written: usize,
    buffered: usize,
    /// The sum of the taken frames' size bounds.
    taken_bytes: usize,
    /// The buffered frames' bytes; `buf[..sent]` was handed to the kernel already.
    buf: FrameBuf,
    sent: usize,
    /// A heartbeat frame waiting for a frame boundary; `hb_sent` of it was written.
    heartbeat: FrameBuf,
    hb_sent: usize,
    /// Bytes handed to the current connection, heartbeats included.
    stream: u64,
    /// The `seq` of the next record taken.
    next_seq: u64,
    markers: Vec<Marker>,
    /// Where a replay is assembled before it replaces `buf`.
    scratch: FrameBuf,
    /// The spooled frames' bytes, in the order of their frames, read here by the spool.
    lent: Lent,
}

impl Outbox {
    pub(crate) fn new() -> Self {
        Outbox {
            frames: VecDeque::with_capacity(2048),
            written: 0,
            buffered: 0,
            taken_bytes: 0,
            buf: FrameBuf::with_capacity(WRITE_BYTES * 2),
            sent: 0,
            heartbeat: FrameBuf::with_capacity(256),
            hb_sent: 0,
            stream: 0,
            next_seq: 0,
            markers: Vec::new(),
            scratch: FrameBuf::with_capacity(WRITE_BYTES * 2),
            lent: Lent::default(),
        }
    }

    /// A record taken off the queue, whose frame fits in `size_bound` bytes.
    pub(crate) fn take(&mut self, ts: i64, size_bound: usize, record: Record) {
        self.frames.push_back(Frame {
            seq: self.next_seq,
            ts,
            body: Body::Record(record),
            stage: Stage::Taken { size_bound },
        });
        self.next_seq += 1;
        self.taken_bytes = self.taken_bytes.saturating_add(size_bound);
    }

    /// Whether every record taken is encoded (so a spooled frame may follow them).
    pub(crate) fn all_encoded(&self) -> bool {
        self.frames.len() == self.written + self.buffered
    }

    /// Where the spool reads frames back to, each appended after the last: their bytes
    /// stay here until the frame leaves the outbox. Then [`Outbox::take_spooled`] takes
    /// each, in order.
    pub(crate) fn lend_buffer(&mut self) -> &mut Vec<u8> {
        let (buffer, moved) = self.lent.buffer();
        if moved > 0 {
            for f in &mut self.frames {
                if let Body::Spooled { at, .. } = &mut f.body {
                    *at -= moved;
                }
            }
        }
        buffer
    }

    /// The next `len` bytes read into the lend buffer are a frame from the spool: it is
    /// buffered as it is. Only when [`Outbox::all_encoded`]: the frames must lie in the
    /// order of their stages.
    pub(crate) fn take_spooled(&mut self, len: usize, inherited: bool) {
        debug_assert!(self.all_encoded());
        let at = self.lent.take(len);
        let start = self.buf.as_slice().len();
        self.buf.extend_from_slice(self.lent.get(at, len));
        self.frames.push_back(Frame {
            seq: self.next_seq,
            ts: 0,
            body: Body::Spooled { at, len, inherited },
            stage: Stage::Buffered {
                start,
                end: self.buf.as_slice().len(),
            },
        });
        self.next_seq += 1;
        self.buffered += 1;
    }

    /// Frames leaving the outbox from its front: the lent bytes up to the last spooled
    /// one among them are no longer needed.
    fn let_go_of(lent: &mut Lent, body: &Body) {
        if let Body::Spooled { at, len, .. } = body {
            lent.let_go_until(at + len);
        }
    }

    /// The unwritten bytes the buffer will hold once the taken records are encoded (at
    /// most).
    pub(crate) fn planned_bytes(&self) -> usize {
        (self.buf.as_slice().len() - self.sent).saturating_add(self.taken_bytes)
    }

    /// Moves the buffer's unwritten bytes (the rest of a batch a write left over, usually
    /// one frame) to its front, so the records taken next join them in one write instead
    /// of the leftover going out in a small write of its own.
    pub(crate) fn compact(&mut self) {
        // From the first frame not completely written: a frame cut by a write keeps its
        // head, which a failure would write again.
        let base = match self.frames.get(self.written).map(|f| f.stage) {
            Some(Stage::Buffered { start, .. }) => start,
            _ => self.sent,
        };
        if base == 0 {
            return;
        }
        self.scratch.clear();
        self.scratch
            .extend_from_slice(self.buf.as_slice().get(base..).unwrap_or_default());
        std::mem::swap(&mut self.buf, &mut self.scratch);
        self.sent -= base;
        for f in self
            .frames
            .range_mut(self.written..self.written + self.buffered)
        {
            if let Stage::Buffered { start, end } = f.stage {
                f.stage = Stage::Buffered {
                    start: start - base,
                    end: end - base,
                };
            }
        }
    }

    /// Encodes the taken records into the buffer; returns how many the encoder refused
    /// (they are dropped: lost).
    pub(crate) fn encode(&mut self, service_tree_id: &str) -> u64 {
        let mut lost = 0;
        let mut i = self.written + self.buffered;
        while let Some(f) = self.frames.get_mut(i) {
            let (Stage::Taken { size_bound }, Body::Record(record)) = (f.stage, &f.body) else {
                break;
            };
            let start = self.buf.as_slice().len();
            if append_record_in(&mut self.buf, size_bound, service_tree_id, f.ts, record) {
                f.stage = Stage::Buffered {
                    start,
                    end: self.buf.as_slice().len(),
                };
                self.buffered += 1;
                i += 1;
            } else if let Some(f) = self.frames.remove(i) {
                count_lost(&mut self.markers, f.seq);
                lost += 1;
            }
        }
        self.taken_bytes = 0;
        lost
    }

    /// A `flush` that waits for every record taken so far.
    pub(crate) fn mark(&mut self, signal: Arc<FlushSignal>) {
        self.mark_after_losses(signal, 0);
    }

    /// A `flush` that waits for every record taken so far, `lost` of those before it
    /// having been lost already.
    pub(crate) fn mark_after_losses(&mut self, signal: Arc<FlushSignal>, lost: u64) {
        self.markers.push(Marker {
            seq: self.next_seq,
            lost,
            signal,
        });
        self.settle_markers();
    }

    /// Writes every frame, in order, into `image` (records encoded again, spooled frames
    /// as they were read), with where each ends and whether an earlier client left it,
    /// for the spool to keep. A record that does not encode (encoding is deterministic,
    /// and each was encoded before) is left out; returns how many were.
    pub(crate) fn image(
        &self,
        service_tree_id: &str,
        image: &mut FrameBuf,
        ends: &mut Vec<(usize, bool)>,
    ) -> u64 {
        image.clear();
        ends.clear();
        let mut left_out = 0;
        for f in &self.frames {
            let inherited = match &f.body {
                Body::Record(record) => {
                    if !append_record(image, service_tree_id, f.ts, record) {
                        left_out += 1;
                        continue;
                    }
                    false
                }
                Body::Spooled { at, len, inherited } => {
                    image.extend_from_slice(self.lent.get(*at, *len));
                    *inherited
                }
            };
            ends.push((image.as_slice().len(), inherited));
        }
        left_out
    }

    /// The outbox's frames went to the spool (see [`Outbox::image`]): it lets go of them,
    /// and hands over the flushes that waited on them, each with how many of the frames
    /// came before it and how many records before it were lost.
    pub(crate) fn release_to_spool(&mut self) -> Vec<(u64, u64, Arc<FlushSignal>)> {
        let frames = &self.frames;
        let markers = self.markers.drain(..).map(|m| {
            let before = frames.iter().take_while(|f| f.seq < m.seq).count() as u64;
            (before, m.lost, m.signal)
        });
        let markers = markers.collect();
        self.frames.clear();
        (self.written, self.buffered, self.taken_bytes) = (0, 0, 0);
        self.buf.clear();
        self.sent = 0;
        self.lent.clear();
        markers
    }

    /// Whether a `flush` is waiting.
    pub(crate) fn has_markers(&self) -> bool {
        !self.markers.is_empty()
    }

    /// This client's own frames read from the spool that are still in the outbox.
    pub(crate) fn own_spooled(&self) -> u64 {
        let own = self.frames.iter().filter(|f| {
            matches!(
                f.body,
                Body::Spooled {
                    inherited: false,
                    ..
                }
            )
        });
        own.count() as u64
    }

    /// Whether bytes wait to be written.
    pub(crate) fn has_output(&self) -> bool {
        self.sent < self.buf.as_slice().len() || self.hb_sent < self.heartbeat.as_slice().len()
    }

    /// Records written on this connection and not yet confirmed read.
    pub(crate) fn unconfirmed(&self) -> usize {
        self.written
    }

    /// Records not yet written (buffered or taken).
    pub(crate) fn unwritten(&self) -> usize {
        self.frames.len() - self.written
    }

    /// Whether no record is in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Bytes handed to the current connection.
    #[cfg(test)]
    pub(crate) fn stream_len(&self) -> u64 {
        self.stream
    }

    /// Queues a heartbeat frame, encoded by `encode`; it goes out at the next frame
    /// boundary. False (and nothing queued) when one is queued already or `encode` fails.
    pub(crate) fn queue_heartbeat(&mut self, encode: impl FnOnce(&mut FrameBuf) -> bool) -> bool {
        if !self.heartbeat.as_slice().is_empty() {
            return false;
        }
        self.hb_sent = 0;
        if encode(&mut self.heartbeat) {
            true
        } else {
            self.heartbeat.clear();
            false
        }
    }

    /// Whether a heartbeat is queued or partly written.
    pub(crate) fn has_heartbeat(&self) -> bool {
        !self.heartbeat.as_slice().is_empty()
    }

    /// The next bytes to write: a heartbeat once the stream stands between two record
    /// frames, else whole record frames up to [`WRITE_BYTES`]. With `first_frame_only`,
    /// no record frame after the first one of the connection.
    pub(crate) fn next_chunk(&self, first_frame_only: bool) -> Option<Chunk<'_>> {
        let hb = self.heartbeat.as_slice();
        let front = self.frames.get(self.written).map(|f| f.stage);
        let at_boundary = match front {
            Some(Stage::Buffered { start, .. }) => start == self.sent,
            _ => true,
        };
        if self.hb_sent < hb.len() && (self.hb_sent > 0 || at_boundary) {
            return hb.get(self.hb_sent..).map(Chunk::Heartbeat);
        }
        let Some(Stage::Buffered { end: first_end, .. }) = front else {
            return None;
        };
        if first_frame_only && (self.written > 0 || self.stream > 0 && at_boundary) {
            return None;
        }
        let mut cut = first_end;
        if !first_frame_only {
            let limit = self.sent.saturating_add(WRITE_BYTES);
            for f in self
                .frames
                .range(self.written + 1..self.written + self.buffered)
            {
                match f.stage {
                    Stage::Buffered { end, .. } if end <= limit => cut = end,
                    _ => break,
                }
            }
        }
        self.buf.as_slice().get(self.sent..cut).map(Chunk::Records)
    }

    /// `n` bytes of `chunk`'s kind were handed to the kernel. Returns what that completed.
    pub(crate) fn on_written(&mut self, heartbeat: bool, n: usize) -> Wrote {
        self.stream += n as u64;
        let mut wrote = Wrote::default();
        if heartbeat {
            self.hb_sent += n;
            if self.hb_sent >= self.heartbeat.as_slice().len() {
                self.heartbeat.clear();
                self.hb_sent = 0;
                wrote.heartbeat = true;
            }
            return wrote;
        }
        self.sent += n;
        while self.buffered > 0 {
            let Some(f) = self.frames.get_mut(self.written) else {
                break;
            };
            let Stage::Buffered { end, .. } = f.stage else {
                break;
            };
            if end > self.sent {
                break;
            }
            // `sent` is where the stream stands now; the frame ended `sent - end` before.
            f.stage = Stage::Written {
                stream_end: self.stream - (self.sent - end) as u64,
            };
            self.written += 1;
            self.buffered -= 1;
            wrote.frames += 1;
            wrote.records += usize::from(f.body.own());
        }
        if self.buffered == 0 && self.sent == self.buf.as_slice().len() {
            self.buf.clear();
            self.sent = 0;
        }
        wrote
    }

    /// The kernel says the agent has `unread` of the stream's bytes left to read: every
    /// written record that ends before them is delivered. Returns what was.
    pub(crate) fn on_read(&mut self, unread: usize) -> Read {
        let read = self.stream.saturating_sub(unread as u64);
        let delivered = self
            .frames
            .range(..self.written)
            .take_while(|f| matches!(f.stage, Stage::Written { stream_end } if stream_end <= read))
            .count();
        let mut tally = Read::default();
        for f in self.frames.drain(..delivered) {
            Outbox::let_go_of(&mut self.lent, &f.body);
            match f.body {
                Body::Record(_) => tally.records += 1,
                Body::Spooled { inherited, .. } => {
                    tally.spooled += 1;
                    tally.inherited += usize::from(inherited);
                    tally.records += usize::from(!inherited);
                }
            }
        }
        self.written -= delivered;
        tally
    }

    /// The connection failed. The written records not confirmed read are buffered again
    /// in front of the rest when `replay` is set (and dropped as lost otherwise); a frame
    /// cut by the failure is written whole again; the stream starts over.
    pub(crate) fn on_failure(&mut self, replay: bool, service_tree_id: &str) -> Failure {
        let mut failure = Failure {
            unconfirmed: self.written_own(),
            heartbeat_dropped: self.has_heartbeat(),
            ..Failure::default()
        };
        self.heartbeat.clear();
        self.hb_sent = 0;
        // Resume at the first frame not completely written.
        let resume = match self.frames.get(self.written).map(|f| f.stage) {
            Some(Stage::Buffered { start, .. }) => start,
            _ => self.buf.as_slice().len(),
        };
        failure.cut_frame = self.sent > resume;
        self.sent = resume;
        if replay {
            self.rebuffer_written(service_tree_id);
        } else {
            for f in self.frames.drain(..self.written) {
                Outbox::let_go_of(&mut self.lent, &f.body);
                count_lost(&mut self.markers, f.seq);
            }
            self.written = 0;
        }
        self.stream = 0;
        failure
    }

    /// This client's own records among the written ones.
    pub(crate) fn written_own(&self) -> usize {
        let frames = self.frames.range(..self.written);
        frames.filter(|f| f.body.own()).count()
    }

    /// Encodes the written records again at the front of the buffer, followed by the
    /// unwritten bytes.
    fn rebuffer_written(&mut self, service_tree_id: &str) {
        self.scratch.clear();
        for f in self.frames.range_mut(..self.written) {
            let start = self.scratch.as_slice().len();
            match &f.body {
                // Encoding is deterministic, and each of these records was encoded before.
                Body::Record(record) => {
                    let _encoded = append_record(&mut self.scratch, service_tree_id, f.ts, record);
                }
                Body::Spooled { at, len, .. } => {
                    self.scratch.extend_from_slice(self.lent.get(*at, *len))
                }
            }
            f.stage = Stage::Buffered {
                start,
                end: self.scratch.as_slice().len(),
            };
        }
        let replay_len = self.scratch.as_slice().len();
        let sent = self.sent;
        self.scratch
            .extend_from_slice(self.buf.as_slice().get(sent..).unwrap_or_default());
        for f in self
            .frames
            .range_mut(self.written..self.written + self.buffered)
        {
            if let Stage::Buffered { start, end } = f.stage {
                f.stage = Stage::Buffered {
                    start: start - sent + replay_len,
                    end: end - sent + replay_len,
                };
            }
        }
        std::mem::swap(&mut self.buf, &mut self.scratch);
        self.sent = 0;
        self.buffered += self.written;
        self.written = 0;
    }

    /// Settles the markers none of whose records are left. (Called by the writer once it
    /// has counted what happened, so a `flush` that returns finds the counters current.)
    pub(crate) fn settle_markers(&mut self) {
        let front = self.frames.front().map_or(self.next_seq, |f| f.seq);
        self.markers.retain(|m| {
            if m.seq > front {
                return true;
            }
            m.signal.settle(m.lost);
            false
        });
    }

    /// The records left, in order, for `close` to hand back, each with the time it was
    /// stamped with (so it can be sent again as it was); the frames read from the spool
    /// stay there. Waiting flushes are told the client stopped first.
    pub(crate) fn take_unsent(&mut self) -> Vec<Record> {
        for m in self.markers.drain(..) {
            m.signal.cancel();
        }
        (self.written, self.buffered, self.taken_bytes) = (0, 0, 0);
        self.lent.clear();
        let records = self.frames.drain(..).filter_map(|f| match f.body {
            Body::Record(record) => Some(record.event_time(f.ts)),
            Body::Spooled { .. } => None,
        });
        records.collect()
    }
}

mod lent;
mod marker;
mod report;
#[cfg(test)]
mod tests;
