//! What travels on the queue from the callers to the writer: records, and the markers
//! `flush` waits on.

use std::sync::Arc;

use crossbeam_channel::Receiver;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::record::Record;

/// What travels on the queue. (Records travel unboxed: the queue's slots are allocated
/// once, and a box per record would be an allocation per record.)
#[allow(clippy::large_enum_variant)]
pub(crate) enum Item {
    /// A validated record.
    Record(Queued),
    /// Settled once every record queued before it is delivered.
    Flush(Arc<FlushSignal>),
}

/// A validated record on its way to the writer.
pub(crate) struct Queued {
    /// Its timestamp (Unix seconds), taken when it was accepted.
    pub(crate) ts: i64,
    /// The bytes its frame fits in, as measured by the producer (so the writer does not
    /// measure again).
    pub(crate) size_bound: usize,
    pub(crate) record: Record,
}

impl Queued {
    /// The record, stamped with the time it was accepted with (to be handed back).
    pub(crate) fn into_record(self) -> Record {
        self.record.event_time(self.ts)
    }
}

/// How a `flush` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Every record before it was delivered.
    Delivered,
    /// Every record before it is gone from the writer, and this many were lost.
    Lost(u64),
    /// The client stopped before its records were delivered.
    Cancelled,
}

/// A one-shot signal for `flush`, settled by the writer once every record queued before
/// it has left the writer's outbox, or when the client stops first.
#[derive(Default)]
pub(crate) struct FlushSignal {
    state: Mutex<Option<Settled>>,
    cond: Condvar,
}

impl FlushSignal {
    /// Every record before the flush left the outbox; `lost` of them were lost.
    pub(crate) fn settle(&self, lost: u64) {
        self.finish(if lost == 0 {
            Settled::Delivered
        } else {
            Settled::Lost(lost)
        });
    }

    /// The client stopped before the flush's records were delivered.
    pub(crate) fn cancel(&self) {
        self.finish(Settled::Cancelled);
    }

    fn finish(&self, how: Settled) {
        self.state.lock().get_or_insert(how);
        self.cond.notify_all();
    }

    /// How it ended, if it has.
    #[cfg(test)]
    pub(crate) fn state(&self) -> Option<Settled> {
        *self.state.lock()
    }

    /// Waits until settled or `deadline` (`None`: timed out).
    pub(crate) fn wait_until(&self, deadline: Instant) -> Option<Settled> {
        let mut state = self.state.lock();
        while state.is_none() {
            if self.cond.wait_until(&mut state, deadline).timed_out() {
                break;
            }
        }
        *state
    }
}

/// What is left in the queue when the client stops: its records, in order; each flush
/// among them is told the client stopped first.
pub(crate) fn take_remaining(rx: &Receiver<Item>) -> impl Iterator<Item = Queued> + '_ {
    rx.try_iter().filter_map(|item| match item {
        Item::Record(queued) => Some(queued),
        Item::Flush(signal) => {
            signal.cancel();
            None
        }
    })
}
