//! Counters the client keeps, and the snapshot [`Stats`] it hands out.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// The live counters, updated with relaxed atomics. Each has a cache line of its
        /// own: producers bump `accepted` while the writer bumps `written`, and sharing
        /// a line would bounce it between their cores on every record.
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: CachePadded<AtomicU64>,)*
        }

        /// A snapshot of the client's counters.
        ///
        /// While the client runs, `accepted == written + pending + lost` up to the
        /// records in flight between the counters; after [`Client::close`](crate::Client::close)
        /// it holds exactly, with `pending == 0`.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct Stats {
            $($(#[doc = $doc])* pub $name: u64,)*
            /// Records accepted and neither written nor lost yet (queued or being written).
            pub pending: u64,
            /// Records in the queue at the time of the snapshot.
            pub queue_len: u64,
        }

        impl Counters {
            pub(crate) fn snapshot(&self, queue_len: usize) -> Stats {
                let mut s = Stats {
                    $($name: self.$name.load(Relaxed),)*
                    pending: 0,
                    queue_len: queue_len as u64,
                };
                s.pending = s.accepted.saturating_sub(s.written + s.lost);
                s
            }
        }
    };
}

counters! {
    /// Records accepted by `try_send` or `send_timeout`.
    accepted,
    /// Records whose frames were completely handed to the socket. When the agent dies
    /// with records unread and the replay sends them again, they go back to pending
    /// (this count drops by that many) until they are written again.
    written,
    /// Bytes handed to the socket (record and heartbeat frames, resends included).
    bytes_written,
    /// Writes that handed bytes to the socket. Frames are written a batch at a time, so
    /// a busy client makes far fewer writes than it writes records.
    writes,
    /// Records refused because the queue was full.
    refused_full,
    /// Records refused by validation.
    refused_invalid,
    /// Records refused because their frame was over the maximum frame size.
    refused_too_large,
    /// Records refused because the client was closed or dead.
    refused_closed,
    /// Record frames written again after a connection failed under them.
    retried,
    /// Records written again after a failure because the agent had not read them (the
    /// unread-tail replay; they may reach the agent twice).
    replayed,
    /// Accepted records that were not written: left when the client closed (and
    /// handed back by `close`), or when it died.
    lost,
    /// Writes that failed (and so connections that were dropped).
    write_errors,
    /// Successful connections.
    connects,
    /// Failed connection attempts.
    connect_failures,
    /// Heartbeat frames written.
    heartbeats_sent,
    /// Heartbeat frames discarded unwritten: cut by a failed write (the next
    /// connection gets its own), or left at close.
    heartbeats_dropped,
    /// Notifications discarded because nobody read them.
    notifications_dropped,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}
