//! The `flush` markers the outbox keeps: each waits for the records taken before it,
//! and counts those of them that were lost.

use std::sync::Arc;

use crate::queue::FlushSignal;

/// A `flush` waiting for every record taken before it to be delivered.
pub(super) struct Marker {
    /// Records with a smaller `seq` came before the flush.
    pub(super) seq: u64,
    /// How many of them were lost instead of delivered.
    pub(super) lost: u64,
    pub(super) signal: Arc<FlushSignal>,
}

/// The record `seq` was lost: every flush waiting for it hears so.
pub(super) fn count_lost(markers: &mut [Marker], seq: u64) {
    for m in markers.iter_mut().filter(|m| seq < m.seq) {
        m.lost += 1;
    }
}
