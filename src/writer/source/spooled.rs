//! The spooled source: records go to disk instead of filling the queue while the agent
//! is away or behind, and come back, in order, once it is back.
//!
//! The spool stands between the queue and the outbox. Once a record has gone to the
//! spool, every record after it goes there too, and the outbox is fed from the spool
//! until the spool has nothing left to read; only then do records go from the queue to
//! the outbox again. A frame leaves the spool when the agent has read it
//! ([`Spooled::on_delivered`]), so the spool is also what a crash of this process leaves
//! for the next client.
//!
//! A fault of the disk (full, refused, broken) pauses spilling for [`RETRY_AFTER`]: the
//! record that could not be written waits in hand, the queue fills and producers get
//! `QueueFull`, as without a spool. A spool that cannot be read is given up for the rest
//! of the client's life; what it holds stays on disk for the next one.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::super::outbox::{Outbox, Read, WRITE_BYTES};
use crossbeam_channel::Receiver;

use super::Turn;
use super::direct::take_from_queue;
use super::modes::{Facts, Mode, Modes, RETRY_AFTER};
use crate::encode::{FrameBuf, append_record_in};
use crate::link::Link;
use crate::notify::{Event, LossReason};
use crate::queue::{FlushSignal, Item, Queued, take_remaining};
use crate::record::Record;
use crate::spool::{FrameRead, Spool, SpoolFault};
use crate::stats::Counters;

/// Records spilled per turn of the writer's loop, so it still looks at the connection
/// and the agent's reads while a burst goes to disk; they go to the spool in one write.
const SPILL_BATCH: usize = 512;

/// The most frame bytes spilled per turn (a batch of large records stops here).
const SPILL_BYTES: usize = 1 << 20;

/// A flush waiting for spooled records: it moves to the outbox once the spool has handed
/// out the `before` frames that came before it (`lost` of its records were lost).
struct Waiting {
    before: u64,
    lost: u64,
    signal: Arc<FlushSignal>,
}

/// The spool could not be read, and was given up: the records in hand and the flushes
/// waiting on the spool went to the outbox.
pub(crate) struct GivenUp;

pub(crate) struct Spooled {
    spool: Spool,
    modes: Modes,
    /// Records the spool refused, in order; they go first once appending works again.
    held: VecDeque<Queued>,
    /// Flushes waiting for spooled records: each moves to the outbox once the spool has
    /// handed it every frame that came before it.
    waiting: VecDeque<Waiting>,
    /// Frames handed to the spool over its life here, those found at open included.
    enqueued: u64,
    /// Frames read back from it.
    read_back: u64,
    /// This client's records in the spool (not yet delivered).
    own: u64,
    /// Where a batch of frames is put together before it is appended, with where each
    /// ends and whether an earlier client left it, and the records themselves until the
    /// spool has them (reused).
    scratch: FrameBuf,
    ends: Vec<(usize, bool)>,
    batch: Vec<Queued>,
    /// What the spool says of the frames it reads back (reused).
    reads: Vec<FrameRead>,
}

impl Spooled {
    pub(crate) fn new(spool: Spool) -> Spooled {
        Spooled {
            enqueued: spool.frames(),
            spool,
            modes: Modes::new(Instant::now()),
            held: VecDeque::new(),
            waiting: VecDeque::new(),
            read_back: 0,
            own: 0,
            scratch: FrameBuf::with_capacity(WRITE_BYTES),
            ends: Vec::with_capacity(SPILL_BATCH),
            batch: Vec::with_capacity(SPILL_BATCH),
            reads: Vec::with_capacity(256),
        }
    }

    /// Whether records must go before the queue's: the spool holds records not read
    /// yet, or a record waits in hand for it.
    pub(crate) fn ahead(&self) -> bool {
        self.spool.unread() > 0 || !self.held.is_empty()
    }

    /// Whether the spool still has records of its own or an earlier client's to send.
    pub(crate) fn holds_records(&self) -> bool {
        self.spool.frames() > 0 || !self.held.is_empty()
    }

    /// Whether the queue's records stay where they are for now: there is no connection
    /// and they do not go to disk yet (within `OFFLINE_GRACE`, taken into the outbox
    /// they would stay in memory however long the agent is away), or they go to disk,
    /// which cannot take more now.
    pub(crate) fn queue_waits(&self, connected: bool) -> bool {
        match self.modes.mode {
            Mode::Passing => !connected,
            Mode::Spilling | Mode::CatchingUp => self.modes.paused(Instant::now()),
        }
    }

    /// One turn: syncs per the policy, moves the queue's records where the mode says,
    /// and feeds the outbox from the spool while connected. Returns whether it took
    /// records.
    pub(crate) fn fill(&mut self, turn: Turn<'_>) -> Result<bool, GivenUp> {
        let now = Instant::now();
        if let Err(e) = self.spool.tick(now) {
            self.fault(
                turn.link,
                e,
                "the records spooled since the last sync may not survive a crash",
            );
        }
        self.modes.decide(Facts {
            connected: turn.connected,
            closing: turn.closing,
            queued: turn.rx.len(),
            half: turn.config.queue_capacity.div_ceil(2),
            ahead: self.ahead(),
            now,
        });
        let paused = self.modes.paused(now);
        if !turn.connected && !paused && self.modes.away(now) && !turn.outbox.is_empty() {
            self.keep_outbox(turn.outbox, turn.link, &turn.config.service_tree_id, now);
        }
        let busy = match self.modes.mode {
            Mode::Passing if turn.connected => take_from_queue(
                turn.rx,
                turn.outbox,
                turn.link,
                &turn.config.service_tree_id,
            ),
            Mode::Passing => false,
            Mode::Spilling | Mode::CatchingUp if !paused => {
                self.spill(turn.rx, turn.link, &turn.config.service_tree_id, now)
            }
            Mode::Spilling | Mode::CatchingUp => false,
        };
        if turn.connected {
            self.refill(turn.outbox, turn.link, &turn.config.service_tree_id)?;
        }
        Ok(busy)
    }

    /// Moves records from the queue to the spool, up to [`SPILL_BATCH`] in one write;
    /// returns whether it took anything off the queue (an idle writer with nothing to
    /// spill parks).
    fn spill(&mut self, rx: &Receiver<Item>, link: &Link, sti: &str, now: Instant) -> bool {
        let took = self.encode_batch(rx, link, sti);
        let appended = self
            .spool
            .append_frames(flagged_slices(&self.scratch, &self.ends).map(|(frame, _)| frame));
        let spooled = appended.frames;
        // What the spool did not take is kept in hand, in order, to go first next time.
        for queued in self.batch.drain(..).skip(spooled) {
            self.held.push_back(queued);
        }
        self.enqueued += spooled as u64;
        self.own += spooled as u64;
        if appended.fault.is_some() {
            self.modes.paused_until = Some(now + RETRY_AFTER);
        }
        // Counted once the policy has them on disk: a count read by the caller is a
        // promise that survives a crash.
        let committed = self.spool.commit();
        Counters::add(&link.counters.spooled, spooled as u64);
        link.room.taken(|| rx.len());
        self.publish_size(link);
        if let Err(e) = committed {
            self.fault(link, e, "the records just spooled may not survive a crash");
        }
        if let Some(e) = appended.fault {
            self.fault(link, e, "spilling is paused; records wait in memory");
        }
        took
    }

    /// Takes up to a batch of records, those in hand first, and encodes them one after
    /// the other into `scratch`; flushes met on the way wait for the records before
    /// them to come out of the spool. Returns whether it took anything.
    fn encode_batch(&mut self, rx: &Receiver<Item>, link: &Link, sti: &str) -> bool {
        self.scratch.clear();
        self.ends.clear();
        let (mut took, mut lost) = (!self.held.is_empty(), 0);
        while self.batch.len() < SPILL_BATCH && self.scratch.as_slice().len() < SPILL_BYTES {
            let queued = match self.held.pop_front() {
                Some(held) => held,
                None => match rx.try_recv() {
                    Ok(Item::Record(queued)) => queued,
                    Ok(Item::Flush(signal)) => {
                        let before = self.enqueued + self.batch.len() as u64;
                        self.waiting.push_back(Waiting {
                            before,
                            lost: 0,
                            signal,
                        });
                        took = true;
                        continue;
                    }
                    Err(_) => break,
                },
            };
            took = true;
            let Queued {
                ts,
                size_bound,
                ref record,
            } = queued;
            if append_record_in(&mut self.scratch, size_bound, sti, ts, record) {
                self.ends.push((self.scratch.as_slice().len(), false));
                self.batch.push(queued);
            } else {
                lost += 1;
            }
        }
        if lost > 0 {
            link.lose(lost, LossReason::Unencodable);
        }
        took
    }

    /// Feeds the outbox from the spool, up to a write's worth read at once into the
    /// outbox's reused lend buffer, and hands it the flushes whose records have all
    /// come out of the spool.
    fn refill(&mut self, outbox: &mut Outbox, link: &Link, sti: &str) -> Result<(), GivenUp> {
        // The frames written are let go of first, or the buffer grows by every frame read.
        outbox.compact();
        let mut fault = None;
        while outbox.planned_bytes() < WRITE_BYTES
            && self.spool.unread() > 0
            && outbox.all_encoded()
        {
            let want = WRITE_BYTES - outbox.planned_bytes();
            self.reads.clear();
            match self
                .spool
                .read_frames(want, outbox.lend_buffer(), &mut self.reads)
            {
                Ok(0) => break,
                Ok(_) => {
                    for frame in &self.reads {
                        outbox.take_spooled(frame.len, frame.inherited);
                    }
                    self.read_back += self.reads.len() as u64;
                }
                Err(e) => {
                    fault = Some(e);
                    break;
                }
            }
        }
        while let Some(w) = self.waiting.front() {
            if w.before > self.read_back && self.spool.unread() > 0 {
                break;
            }
            if let Some(w) = self.waiting.pop_front() {
                outbox.mark_after_losses(w.signal, w.lost);
            }
        }
        match fault {
            Some(e) => {
                self.give_up(e, outbox, link, sti);
                Err(GivenUp)
            }
            None => Ok(()),
        }
    }

    /// The agent is away: what the writer holds (records written and not seen read,
    /// records not yet written, frames read from the spool) goes to the front of the
    /// spool, in its order, so that a kill of the process during the outage loses none
    /// of it. The outbox's flushes wait on the spool instead. On a fault it all stays
    /// in memory, and spilling pauses.
    fn keep_outbox(&mut self, outbox: &mut Outbox, link: &Link, sti: &str, now: Instant) {
        match self.put_in_front(outbox, link, sti) {
            Ok(markers) => {
                for (before, lost, signal) in markers.into_iter().rev() {
                    self.waiting.push_front(Waiting {
                        before: self.read_back + before,
                        lost,
                        signal,
                    });
                }
            }
            Err(e) => {
                self.modes.paused_until = Some(now + RETRY_AFTER);
                self.fault(link, e, "the records the writer holds stay in memory");
            }
        }
    }

    /// Writes the outbox, in its order, as a segment in front of the spool, in place of
    /// the frames lent from it, and empties it. Returns the flushes that waited on it,
    /// each with how many of its frames came before it; on a fault nothing changed.
    fn put_in_front(
        &mut self,
        outbox: &mut Outbox,
        link: &Link,
        sti: &str,
    ) -> Result<Vec<(u64, u64, Arc<FlushSignal>)>, SpoolFault> {
        let left_out = outbox.image(sti, &mut self.scratch, &mut self.ends);
        let lent = self.spool.lent();
        let (n, released) = self
            .spool
            .replace_lent(&mut flagged_slices(&self.scratch, &self.ends))?;
        let markers = outbox.release_to_spool();
        if left_out > 0 {
            link.lose(left_out, LossReason::Unencodable);
        }
        // The frames lent out come back to be read again; the records are new to it.
        let added = n.saturating_sub(lent);
        self.read_back = self.read_back.saturating_sub(lent);
        self.enqueued += added;
        self.own += added;
        for w in &mut self.waiting {
            w.before += added;
        }
        Counters::add(&link.counters.spooled, added);
        self.publish_size(link);
        if let Some(e) = released {
            self.fault(
                link,
                e,
                "delivered records may be sent again by the next client",
            );
        }
        Ok(markers)
    }

    /// Frames read from the spool were delivered: the spool lets go of them.
    pub(crate) fn on_delivered(&mut self, read: Read, link: &Link) {
        if read.spooled == 0 {
            return;
        }
        self.own = self
            .own
            .saturating_sub((read.spooled - read.inherited) as u64);
        if let Err(e) = self.spool.ack(read.spooled as u64) {
            self.fault(
                link,
                e,
                "delivered records may be sent again by the next client",
            );
        }
        self.publish_size(link);
    }

    fn publish_size(&self, link: &Link) {
        link.counters
            .spool_bytes
            .store(self.spool.bytes(), Ordering::Relaxed);
    }

    /// A fault of the disk: told, then counted, with what it means for the records.
    fn fault(&self, link: &Link, e: SpoolFault, consequence: &str) {
        link.notifier.publish(Event::SpoolFailed {
            path: self.spool.path().to_path_buf(),
            error: format!("{e}; {consequence}"),
        });
        Counters::add(&link.counters.spool_errors, 1);
    }

    /// The spool cannot be read: it is left as it is on disk for the next client. The
    /// record in hand and the flushes waiting on the spool go to the outbox.
    fn give_up(&mut self, e: SpoolFault, outbox: &mut Outbox, link: &Link, sti: &str) {
        self.fault(
            link,
            e,
            "the spool is given up; what it holds stays on disk for the next client",
        );
        if !self.held.is_empty() {
            for held in self.held.drain(..) {
                outbox.take(held.ts, held.size_bound, held.record);
            }
            let lost = outbox.encode(sti);
            if lost > 0 {
                link.lose(lost, LossReason::Unencodable);
            }
        }
        // What the outbox holds of them is still sent by this client, and counted
        // delivered (or handed back) as it goes.
        let kept = self.own.saturating_sub(outbox.own_spooled());
        Counters::add(&link.counters.spool_kept, kept);
        for w in self.waiting.drain(..) {
            outbox.mark_after_losses(w.signal, w.lost);
        }
    }

    /// At close: what the agent was not seen to read goes to the spool instead of back
    /// to the caller. The outbox, spooled frames and records in the order they were
    /// sent, goes in front of everything in the spool; the queue's records after it.
    /// Returns what the spool could not take, in order.
    pub(crate) fn keep_leftovers(&mut self, turn: Turn<'_>) -> Vec<Record> {
        let (link, sti) = (turn.link, &*turn.config.service_tree_id);
        let mut fault = None;
        let mut unsent = match self.put_in_front(turn.outbox, link, sti) {
            Ok(markers) => {
                for (_, _, signal) in markers {
                    signal.cancel();
                }
                Vec::new()
            }
            Err(e) => {
                fault = Some(e);
                turn.outbox.take_unsent()
            }
        };
        // Then what is still queued, newest last.
        let held = std::mem::take(&mut self.held);
        let queued = held.into_iter().chain(take_remaining(turn.rx));
        for queued in queued {
            if fault.is_none() {
                self.scratch.clear();
                let Queued {
                    ts,
                    size_bound,
                    ref record,
                } = queued;
                if append_record_in(&mut self.scratch, size_bound, sti, ts, record) {
                    match self.spool.append(self.scratch.as_slice()) {
                        Ok(()) => {
                            self.own += 1;
                            Counters::add(&link.counters.spooled, 1);
                            continue;
                        }
                        Err(e) => fault = Some(e),
                    }
                }
            }
            unsent.push(queued.into_record());
        }
        for w in self.waiting.drain(..) {
            w.signal.cancel();
        }
        if let Err(e) = self.spool.sync() {
            fault.get_or_insert(e);
        }
        Counters::add(&link.counters.spool_kept, self.own);
        self.publish_size(link);
        if let Some(e) = fault {
            self.fault(link, e, "the records it could not take are handed back");
        }
        unsent
    }
}

/// The frames encoded back to back into `buf`, ending at `ends`, each with its flag.
fn flagged_slices<'a>(
    buf: &'a FrameBuf,
    ends: &'a [(usize, bool)],
) -> impl Iterator<Item = (&'a [u8], bool)> {
    let bytes = buf.as_slice();
    let starts = std::iter::once(0).chain(ends.iter().map(|e| e.0));
    starts
        .zip(ends.iter().copied())
        .map(move |(start, (end, flag))| (bytes.get(start..end).unwrap_or_default(), flag))
}
