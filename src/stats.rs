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
        /// Every accepted record is in exactly one of four states:
        ///
        /// `accepted == delivered + in_flight + pending + lost + spool_kept`
        ///
        /// While the client runs this holds up to the records moving between the counters
        /// as the snapshot is taken; after [`Client::close`](crate::Client::close) it holds
        /// exactly, with `in_flight == 0` and `pending == 0`: every accepted record was
        /// delivered, lost (and the lost ones that `close` could hand back are in
        /// [`CloseReport::unsent`](crate::CloseReport::unsent)), or kept in the spool for
        /// the next client. `written` is `delivered + in_flight`. Records in the spool
        /// while the client runs are pending.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct Stats {
            $($(#[doc = $doc])* pub $name: u64,)*
            /// Records accepted and neither written nor lost yet (nor kept in the spool at
            /// close): queued, spooled, or taken by the writer and not completely written.
            pub pending: u64,
            /// Records written and not yet confirmed read by the agent.
            pub in_flight: u64,
            /// Records in the queue at the time of the snapshot.
            pub queue_len: u64,
        }

        impl Counters {
            pub(crate) fn snapshot(&self, queue_len: usize) -> Stats {
                let mut s = Stats {
                    $($name: self.$name.load(Relaxed),)*
                    pending: 0,
                    in_flight: 0,
                    queue_len: queue_len as u64,
                };
                s.pending = s.accepted.saturating_sub(s.written + s.lost + s.spool_kept);
                s.in_flight = s.written.saturating_sub(s.delivered);
                s
            }
        }
    };
}

counters! {
    /// Records accepted by `try_send` or `send_timeout`.
    accepted,
    /// Records whose frames were completely handed to the socket (the kernel), the
    /// delivered ones included. When a connection fails under records the agent was not
    /// seen to read, they go back to pending (this count drops by that many) until they
    /// are written again; records `close` hands back leave it too.
    written,
    /// Records the agent has read: on a Unix socket (Linux) the kernel's count of unread
    /// bytes (`SIOCOUTQ`) showed their bytes gone from the agent's socket; on TCP the
    /// agent's kernel acknowledged them. On the memory and no-op transports, and where
    /// the kernel cannot tell, records count as delivered once written.
    delivered,
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
    /// Records written again after a connection failed because the agent was not seen
    /// to read them (the replay; some of them may reach the agent twice).
    replayed,
    /// Accepted records the agent was not seen to read and that will not be written
    /// again: left when the client closed (and handed back by `close`), or when it died
    /// or was dropped.
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
    /// Records this client wrote to its spool ([`ClientBuilder::spool`](crate::ClientBuilder::spool)),
    /// while the agent was away or behind and at close.
    spooled,
    /// Bytes the spool's files hold now (a gauge).
    spool_bytes,
    /// Records an earlier client left in the spool that this one delivered. They are not
    /// among this client's `accepted` and `delivered`.
    spool_replayed,
    /// This client's records the spool keeps for the next client on its directory: set
    /// when the client closes (or gives the spool up), 0 before.
    spool_kept,
    /// Spool files found damaged at open: a torn tail cut, or a corrupt file moved aside.
    spool_corrupt,
    /// Faults of the spool's disk (full, refused, broken); each is also a notification.
    spool_errors,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// Takes `n` off, never below zero: a writer left behind by an unclean close may
    /// still give back records close already counted.
    pub(crate) fn sub(counter: &AtomicU64, n: u64) {
        let _ = counter.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(n)));
    }
}
