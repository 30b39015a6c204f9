//! Closing: drain, wait for the agent to read, stop the threads, hand back the rest.

use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use super::{CLOSED, Inner};
use crate::link::Lifecycle;
use crate::notify::LossReason;
use crate::queue::{Queued, take_remaining};
use crate::record::Record;
use crate::stats::{Counters, Stats};
use crate::time;
use crate::writer::Leftovers;

/// What `close` did.
#[derive(Debug)]
pub struct CloseReport {
    /// Records delivered (read by the agent) over the client's life.
    pub delivered: u64,
    /// Accepted records the agent was not confirmed to have read, in the order they were
    /// accepted: never written, or written and not seen read by the deadline. Keep them
    /// or send them again (a record written but not seen read may have reached the agent
    /// after all, so resending may duplicate it; it is never lost silently). They are
    /// counted as lost. Each carries the time it was stamped with as its event time
    /// ([`Record::get_event_time`]), so sending it again later keeps that time.
    pub unsent: Vec<Record>,
    /// Of the records in `unsent`, and those the spool keeps (`spooled`), how many were
    /// written to the agent's socket and not seen read by the deadline. An agent that
    /// is alive may still read them (one that reads slowly usually does): these are the
    /// records that may arrive twice if sent again. The others were never written, or
    /// were written to a connection that failed before the agent read them.
    pub written_unconfirmed: u64,
    /// This client's records that the spool keeps for the next client on its directory
    /// ([`ClientBuilder::spool`](crate::ClientBuilder::spool)): not delivered by the
    /// deadline, and written to disk instead of handed back. 0 without a spool.
    pub spooled: u64,
    /// The counters after closing.
    pub stats: Stats,
    /// Whether the client's threads finished within the deadline (false when one had
    /// to be left behind, still blocked in the OS). The connection itself is closed on
    /// a thread of its own, which a close hanging in the OS leaves behind either way.
    pub clean: bool,
}

impl Inner {
    pub(super) fn close(&self, timeout: Duration, reason: LossReason) -> CloseReport {
        let deadline = time::after(timeout);
        // 1. Refuse new records, and wait for pushes already past the gate.
        self.gate.fetch_or(CLOSED, Ordering::SeqCst);
        self.link.room.wake_all();
        while self.gate.load(Ordering::SeqCst) & !CLOSED != 0 {
            thread::yield_now();
        }
        // A second close waits for the first to finish, then finds nothing left to do.
        let _closing = self.closing.lock();
        let Some((writer, supervisor)) = self.threads.lock().take() else {
            return self.report(Vec::new(), 0, true);
        };
        // 2. The writer writes what is queued and waits for the agent to read it, until
        // the deadline.
        self.link.advance(Lifecycle::Draining);
        let mut writer_ended = writer.wait_until(deadline);
        // 3. Stop at once: a write stuck in the kernel is cut off.
        self.link.advance(Lifecycle::Stopping);
        let grace = || Instant::now() + STOP_GRACE;
        if !writer_ended {
            writer_ended = writer.wait_until(grace());
        }
        let mut leftovers = Leftovers::default();
        if writer_ended {
            leftovers = writer.join().unwrap_or_default();
        }
        let mut unsent = leftovers.records;
        let supervisor_ended = supervisor.wait_until(grace());
        // 4. What the writer never took is still queued.
        // With the time each was stamped with, to be sent again as it was.
        unsent.extend(take_remaining(&self.rx).map(Queued::into_record));
        let lost = unsent.len() as u64;
        if lost > 0 {
            self.link.lose(lost, reason);
        }
        // Whatever is still pending or in flight now cannot be handed back: the writer is
        // stuck in the OS (or died) with it.
        let left = self.counters.snapshot(0);
        let abandoned = left.pending + left.in_flight;
        if abandoned > 0 {
            Counters::sub(&self.counters.written, left.in_flight);
            self.link.lose(abandoned, LossReason::Abandoned);
        }
        self.link.notifier.end();
        self.report(unsent, leftovers.written, writer_ended && supervisor_ended)
    }

    fn report(&self, unsent: Vec<Record>, written_unconfirmed: u64, clean: bool) -> CloseReport {
        CloseReport {
            written_unconfirmed,
            delivered: self.counters.delivered.load(Ordering::Relaxed),
            spooled: self.counters.spool_kept.load(Ordering::Relaxed),
            unsent,
            stats: self.counters.snapshot(self.tx.len()),
            clean,
        }
    }
}

/// How long `close` waits past its deadline for threads to stop once told to.
const STOP_GRACE: Duration = Duration::from_millis(250);

impl Drop for Inner {
    fn drop(&mut self) {
        let report = self.close(self.config.drop_timeout, LossReason::Abandoned);
        drop(report);
    }
}
