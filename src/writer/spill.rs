//! The writer's side of the spool: records go to disk instead of filling the queue
//! while the agent is away or behind, and come back, in order, once it is back.
//!
//! The spool stands between the queue and the outbox. Once a record has gone to the
//! spool, every record after it goes there too, and the writer feeds the outbox from the
//! spool until the spool has nothing left to read; only then do records go from the
//! queue to the outbox again. A frame leaves the spool when the agent has read it (the
//! outbox tells the writer, which acknowledges it to the spool), so the spool is also
//! what a crash of this process leaves for the next client.
//!
//! A fault of the disk (full, refused, broken) pauses spilling for [`RETRY_AFTER`]: the
//! record that could not be written waits in hand, the queue fills and producers get
//! `QueueFull`, as without a spool. A spool that cannot be read is given up for the rest
//! of the client's life; what it holds stays on disk for the next one.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Writer;
use super::outbox::{Left, Read, Unsent, WRITE_BYTES};
use crate::encode::{Batch, append_record, append_record_in};
use crate::notify::{Event, LossReason};
use crate::queue::{FlushSignal, Item};
use crate::record::Record;
use crate::spool::{Spool, SpoolFault};
use crate::stats::Counters;

/// How long spilling stays paused after a fault of the disk.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How long the writer may be without a connection before records go to disk: the
/// first connect and a quick reconnect leave them in the queue, where they were.
pub(crate) const OFFLINE_GRACE: Duration = Duration::from_secs(1);

/// Records spilled per turn of the writer's loop, so it still looks at the connection
/// and the agent's reads while a burst goes to disk.
const SPILL_BATCH: usize = 512;

/// A record taken off the queue that the spool could not take yet.
type Held = (i64, usize, Record);

pub(crate) struct Spill {
    spool: Spool,
    /// Until when appending is paused after a fault.
    paused_until: Option<Instant>,
    /// A record the spool refused; it goes first once appending works again.
    held: Option<Held>,
    /// Flushes waiting for spooled records: each moves to the outbox once the spool has
    /// handed it every frame that came before it.
    waiting: VecDeque<(u64, Arc<FlushSignal>)>,
    /// Frames handed to the spool over its life here, those found at open included.
    enqueued: u64,
    /// Frames read back from it.
    read_back: u64,
    /// This client's records in the spool (not yet delivered).
    own: u64,
    /// Where a record is encoded before it is appended.
    scratch: Batch,
    /// Since when the writer has had no connection.
    offline_since: Option<Instant>,
}

impl Spill {
    pub(crate) fn new(spool: Spool) -> Spill {
        Spill {
            enqueued: spool.frames(),
            spool,
            paused_until: None,
            held: None,
            waiting: VecDeque::new(),
            read_back: 0,
            own: 0,
            scratch: Batch::with_capacity(WRITE_BYTES),
            offline_since: Some(Instant::now()),
        }
    }

    /// Whether appending works now (not paused after a fault).
    fn can_append(&mut self, now: Instant) -> bool {
        match self.paused_until {
            Some(until) if now < until => false,
            _ => {
                self.paused_until = None;
                true
            }
        }
    }

    /// Whether records must not go from the queue to the outbox: the spool holds records
    /// to read first, or a record waits in hand for it.
    pub(crate) fn ahead(&self) -> bool {
        self.spool.unread() > 0 || self.held.is_some()
    }
}

impl Writer {
    /// Whether records taken off the queue go to the spool now: the spool already holds
    /// records to send first, or there has been no connection for [`OFFLINE_GRACE`] (or
    /// none while closing), or the queue is filling up faster than the agent reads (past
    /// half full); and the spool is not paused after a fault.
    pub(crate) fn spilling(&mut self, closing: bool) -> bool {
        let half = self.config.queue_capacity.div_ceil(2);
        let (connected, queued) = (self.current.is_some(), self.rx.len());
        let Some(spill) = self.spill.as_mut() else {
            return false;
        };
        if !spill.can_append(Instant::now()) {
            // Paused after a fault of the disk: records go the direct way, or wait.
            return false;
        }
        let offline = if connected {
            spill.offline_since = None;
            false
        } else {
            // Closing, there is no time to wait: the records go where close keeps them.
            let since = *spill.offline_since.get_or_insert_with(Instant::now);
            closing || since.elapsed() >= OFFLINE_GRACE
        };
        spill.ahead() || offline || queued >= half
    }

    /// Whether the queue's records stay where they are for now, with a spool: records
    /// are ahead of them in the spool, which cannot take more now; or there is no
    /// connection yet and [`OFFLINE_GRACE`] has not passed (taken into the outbox, they
    /// would stay in memory however long the agent is away).
    pub(crate) fn queue_waits(&mut self) -> bool {
        let now = Instant::now();
        let connected = self.current.is_some();
        self.spill
            .as_mut()
            .is_some_and(|s| !connected || (s.ahead() && !s.can_append(now)))
    }

    /// Moves records from the queue to the spool, a batch at a time.
    pub(crate) fn spill_queue(&mut self) {
        let now = Instant::now();
        let sti = self.config.service_tree_id.clone();
        let Some(spill) = self.spill.as_mut() else {
            return;
        };
        if !spill.can_append(now) {
            return;
        }
        let (mut lost, mut spooled) = (0, 0);
        let mut fault = None;
        for _ in 0..SPILL_BATCH {
            let (ts, bound, record) = match spill.held.take() {
                Some(held) => held,
                None => match self.rx.try_recv() {
                    Ok(Item::Record(ts, bound, record)) => (ts, bound, record),
                    Ok(Item::Flush(signal)) => {
                        spill.waiting.push_back((spill.enqueued, signal));
                        continue;
                    }
                    Err(_) => break,
                },
            };
            spill.scratch.clear();
            if !append_record_in(&mut spill.scratch, bound, &sti, ts, &record) {
                lost += 1;
                continue;
            }
            match spill.spool.append(spill.scratch.as_slice()) {
                Ok(()) => {
                    spill.enqueued += 1;
                    spill.own += 1;
                    spooled += 1;
                }
                Err(e) => {
                    spill.held = Some((ts, bound, record));
                    spill.paused_until = Some(now + RETRY_AFTER);
                    fault = Some(e);
                    break;
                }
            }
        }
        // Counted once the policy has them on disk: a count read by the caller is a
        // promise that survives a crash.
        let committed = spill.spool.commit();
        Counters::add(&self.link.counters.spooled, spooled);
        self.link.room.taken(|| self.rx.len());
        self.busy = true;
        self.publish_spool_size();
        if let Err(e) = committed {
            self.spool_fault(e, "the records just spooled may not survive a crash");
        }
        if lost > 0 {
            self.lose(lost, LossReason::Unencodable);
        }
        if let Some(e) = fault {
            self.spool_fault(e, "spilling is paused; records wait in memory");
        }
    }

    /// Feeds the outbox from the spool, up to a write's worth, and hands it the flushes
    /// whose records have all come out of the spool.
    pub(crate) fn refill_from_spool(&mut self) {
        let Some(spill) = self.spill.as_mut() else {
            return;
        };
        let mut fault = None;
        while self.outbox.planned_bytes() < WRITE_BYTES
            && spill.spool.unread() > 0
            && self.outbox.all_encoded()
        {
            match spill.spool.next_frame() {
                Ok(Some(frame)) => {
                    self.outbox.take_spooled(frame.bytes, frame.inherited);
                    spill.read_back += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    fault = Some(e);
                    break;
                }
            }
        }
        while let Some((before, _)) = spill.waiting.front() {
            if *before > spill.read_back && spill.spool.unread() > 0 {
                break;
            }
            if let Some((_, signal)) = spill.waiting.pop_front() {
                self.outbox.mark(signal);
            }
        }
        if let Some(e) = fault {
            self.give_up_spool(e);
        }
    }

    /// Frames read from the spool were delivered: the spool lets go of them.
    pub(crate) fn spool_delivered(&mut self, read: Read) {
        Counters::add(&self.link.counters.spool_replayed, read.inherited as u64);
        let Some(spill) = self.spill.as_mut() else {
            return;
        };
        spill.own = spill
            .own
            .saturating_sub((read.spooled - read.inherited) as u64);
        if let Err(e) = spill.spool.ack(read.spooled as u64) {
            self.spool_fault(e, "delivered records may be sent again by the next client");
        }
        self.publish_spool_size();
    }

    /// Whether records wait in the spool (or in hand for it) to be sent before the queue's.
    pub(crate) fn spool_ahead(&self) -> bool {
        self.spill.as_ref().is_some_and(Spill::ahead)
    }

    /// Lets the spool sync when its policy says so.
    pub(crate) fn tick_spool(&mut self) {
        let Some(spill) = self.spill.as_mut() else {
            return;
        };
        if let Err(e) = spill.spool.tick(Instant::now()) {
            self.spool_fault(
                e,
                "the records spooled since the last sync may not survive a crash",
            );
        }
    }

    /// Whether the spool still has records of its own or an earlier client's to send.
    pub(crate) fn spool_holds_records(&self) -> bool {
        self.spill
            .as_ref()
            .is_some_and(|s| s.spool.frames() > 0 || s.held.is_some())
    }

    fn publish_spool_size(&self) {
        if let Some(spill) = &self.spill {
            let counters = &self.link.counters;
            counters
                .spool_bytes
                .store(spill.spool.bytes(), std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// A fault of the disk: counted and told, with what it means for the records.
    fn spool_fault(&self, e: SpoolFault, consequence: &str) {
        let path = self.spill.as_ref().map(|s| s.spool.path().to_path_buf());
        self.link.notifier.publish(Event::SpoolFailed {
            path: path.unwrap_or_default(),
            error: format!("{e}; {consequence}"),
        });
        // Counted once told, so that whoever sees the count can find the event.
        Counters::add(&self.link.counters.spool_errors, 1);
    }

    /// The spool cannot be read: it is left as it is on disk for the next client, and
    /// records go straight to the agent from now on. Records in hand and flushes
    /// waiting on the spool go to the outbox.
    fn give_up_spool(&mut self, e: SpoolFault) {
        self.spool_fault(
            e,
            "the spool is given up; what it holds stays on disk for the next client",
        );
        let Some(mut spill) = self.spill.take() else {
            return;
        };
        if let Some((ts, bound, record)) = spill.held.take() {
            self.outbox.take(ts, bound, record);
            let lost = self.outbox.encode(&self.config.service_tree_id);
            if lost > 0 {
                self.lose(lost, LossReason::Unencodable);
            }
        }
        Counters::add(&self.link.counters.spool_kept, spill.own);
        for (_, signal) in spill.waiting.drain(..) {
            self.outbox.mark(signal);
        }
    }

    /// At close: what the agent was not seen to read goes to the spool instead of back
    /// to the caller. The outbox, spooled frames and records in the order they were
    /// sent, goes in front of everything in the spool; the queue's records after it.
    /// Returns what the spool could not take, in order.
    pub(crate) fn spool_leftovers(&mut self, unsent: Unsent) -> Vec<Record> {
        let Some(spill) = self.spill.as_mut() else {
            return unsent.into_records();
        };
        let sti = self.config.service_tree_id.clone();
        let (mut fault, mut released) = (None, None);
        let mut unsent = match persist_outbox(&mut spill.spool, &sti, unsent) {
            Ok(kept) => {
                spill.own += kept.records;
                Counters::add(&self.link.counters.spooled, kept.records);
                released = kept.released;
                kept.unencodable
            }
            Err((e, records)) => {
                fault = Some(e);
                records
            }
        };
        // Then what is still queued, newest last.
        let queued = spill
            .held
            .take()
            .into_iter()
            .chain(self.rx.try_iter().filter_map(|item| match item {
                Item::Record(ts, bound, record) => Some((ts, bound, record)),
                Item::Flush(signal) => {
                    signal.cancel();
                    None
                }
            }));
        for (ts, bound, record) in queued {
            if fault.is_none() {
                spill.scratch.clear();
                if append_record_in(&mut spill.scratch, bound, &sti, ts, &record) {
                    match spill.spool.append(spill.scratch.as_slice()) {
                        Ok(()) => {
                            spill.own += 1;
                            Counters::add(&self.link.counters.spooled, 1);
                            continue;
                        }
                        Err(e) => fault = Some(e),
                    }
                }
            }
            unsent.push(record.event_time(ts));
        }
        for (_, signal) in spill.waiting.drain(..) {
            signal.cancel();
        }
        if let Err(e) = spill.spool.sync() {
            fault.get_or_insert(e);
        }
        Counters::add(&self.link.counters.spool_kept, spill.own);
        self.publish_spool_size();
        if let Some(e) = released {
            self.spool_fault(e, "delivered records may be sent again by the next client");
        }
        if let Some(e) = fault {
            self.spool_fault(e, "the records it could not take are handed back");
        }
        unsent
    }
}

/// What [`persist_outbox`] kept.
struct Kept {
    /// Records now in the spool.
    records: u64,
    /// Records taken but not yet encoded that did not encode: to hand back.
    unencodable: Vec<Record>,
    /// A fault in letting the old copies of the spooled frames go.
    released: Option<SpoolFault>,
}

/// Writes what close found in the outbox to the front of the spool, in place of the
/// spooled frames in it. On a fault the spool is as it was, and the records come back
/// to be handed to the caller.
fn persist_outbox(
    spool: &mut Spool,
    sti: &str,
    unsent: Unsent,
) -> Result<Kept, (SpoolFault, Vec<Record>)> {
    let mut image = Batch::with_capacity(WRITE_BYTES);
    let mut ends = Vec::with_capacity(unsent.left.len());
    // Every record, in order, and whether it went into the image.
    let mut taken = Vec::with_capacity(unsent.left.len());
    for left in unsent.left {
        match left {
            Left::Record(r) => {
                let ts = r.get_event_time().unwrap_or(0);
                let encoded = append_record(&mut image, sti, ts, &r);
                if encoded {
                    ends.push(image.as_slice().len());
                }
                taken.push((r, encoded));
            }
            Left::Spooled(bytes) => {
                image.extend_from_slice(&bytes);
                ends.push(image.as_slice().len());
            }
        }
    }
    let bytes = image.as_slice();
    let mut start = 0;
    let mut frames = ends.iter().filter_map(|&end| {
        let frame = bytes.get(start..end);
        start = end;
        frame
    });
    match spool.replace_lent(&mut frames) {
        Ok((_, released)) => {
            let records = taken.iter().filter(|t| t.1).count() as u64;
            // A record taken but not yet encoded may not encode: it goes back.
            let back = taken.into_iter().filter(|t| !t.1).map(|t| t.0);
            Ok(Kept {
                records,
                unencodable: back.collect(),
                released,
            })
        }
        Err(e) => Err((e, taken.into_iter().map(|t| t.0).collect())),
    }
}
