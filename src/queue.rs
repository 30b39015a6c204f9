//! What travels on the queue from the callers to the writer: records, and the markers
//! `flush` waits on.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::record::Record;

/// What travels on the queue. (Records travel unboxed: the queue's slots are allocated
/// once, and a box per record would be an allocation per record.)
#[allow(clippy::large_enum_variant)]
pub(crate) enum Item {
    /// A validated record, its timestamp (Unix seconds), and the room its frame needs
    /// (as measured by the producer, so the writer does not measure again).
    Record(i64, usize, Record),
    /// Signalled once everything queued before it has been written.
    Flush(Arc<FlushSignal>),
}

/// A one-shot signal for `flush`: set once everything before it is written, or
/// cancelled when the client stops first.
#[derive(Default)]
pub(crate) struct FlushSignal {
    state: Mutex<Option<bool>>,
    cond: Condvar,
}

impl FlushSignal {
    pub(crate) fn set(&self) {
        self.settle(true);
    }

    /// The client stopped before the flush's records were written.
    pub(crate) fn cancel(&self) {
        self.settle(false);
    }

    fn settle(&self, done: bool) {
        self.state.lock().get_or_insert(done);
        self.cond.notify_all();
    }

    /// Waits until settled or `deadline`: `Some(true)` written, `Some(false)` cancelled,
    /// `None` timed out.
    pub(crate) fn wait_until(&self, deadline: Instant) -> Option<bool> {
        let mut state = self.state.lock();
        while state.is_none() {
            if self.cond.wait_until(&mut state, deadline).timed_out() {
                break;
            }
        }
        *state
    }
}
