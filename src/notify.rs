//! Notifications: a bounded channel of timestamped events that the writer and the
//! supervisor never block on. When nobody reads it the oldest events make room for new
//! ones, and every discarded event is counted.

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::stats::Counters;

/// Something that happened to the client.
#[derive(Debug, Clone)]
pub struct Notification {
    /// When it happened.
    pub at: SystemTime,
    /// What happened.
    pub event: Event,
}

/// Why accepted records were lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LossReason {
    /// The client was closed before the agent was seen to read them; `close` handed
    /// them back.
    Closed,
    /// The client was dropped or died before the agent was seen to read them.
    Abandoned,
    /// The agent went away without being seen to read them, and the replay is off
    /// ([`ClientBuilder::replay_unread`](crate::ClientBuilder::replay_unread)).
    NotRead,
    /// The encoder could not write the record's frame (its measuring and writing
    /// disagreed: a bug, which the tests and the fuzzer look for).
    Unencodable,
}

/// The events the client reports.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// An attempt to connect failed; the supervisor retries after `retry_in`.
    ConnectFailed {
        /// The destination, e.g. `unix:/var/run/mdsd/default_fluent.socket`.
        destination: String,
        /// The OS error.
        kind: io::ErrorKind,
        /// The OS error as text.
        error: String,
        /// Failures in a row, this one included.
        failures: u32,
        /// How long until the next attempt.
        retry_in: Duration,
    },
    /// A connection was made.
    Connected {
        /// The destination.
        destination: String,
        /// Whether an earlier connection existed (this is a reconnection).
        reconnect: bool,
    },
    /// A write failed; the connection is dropped and the unwritten frames are kept for
    /// the next connection.
    WriteFailed {
        /// The OS error.
        kind: io::ErrorKind,
        /// The OS error as text.
        error: String,
        /// Records waiting to be written again.
        pending_records: usize,
    },
    /// Accepted records were not written.
    RecordsLost {
        /// How many.
        count: u64,
        /// Why.
        reason: LossReason,
    },
    /// The client stopped working (closing broken connections hung); it refuses new
    /// records.
    ClientDead {
        /// Why.
        reason: String,
    },
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::ConnectFailed {
                destination,
                error,
                failures,
                retry_in,
                ..
            } => write!(
                f,
                "connecting to {destination} failed ({failures} in a row): {error}; retrying in {retry_in:?}"
            ),
            Event::Connected {
                destination,
                reconnect,
            } => {
                let again = if *reconnect {
                    "reconnected"
                } else {
                    "connected"
                };
                write!(f, "{again} to {destination}")
            }
            Event::WriteFailed {
                error,
                pending_records,
                ..
            } => write!(
                f,
                "write failed: {error}; {pending_records} records wait for the next connection"
            ),
            Event::RecordsLost { count, reason } => match reason {
                LossReason::Closed => write!(
                    f,
                    "{count} accepted records were not confirmed read by the agent before close (handed back)"
                ),
                LossReason::Abandoned => write!(
                    f,
                    "{count} accepted records were lost: the client was dropped or died first"
                ),
                LossReason::NotRead => write!(
                    f,
                    "{count} written records may not have reached the agent: it went away \
                     before reading them, and the replay is off"
                ),
                LossReason::Unencodable => write!(
                    f,
                    "{count} accepted records were lost: the encoder could not write them (a bug)"
                ),
            },
            Event::ClientDead { reason } => write!(f, "the client is dead: {reason}"),
        }
    }
}

#[cfg(feature = "log")]
fn log_event(event: &Event) {
    let level = match event {
        Event::Connected { .. } => log::Level::Info,
        Event::ConnectFailed { .. } | Event::WriteFailed { .. } => log::Level::Warn,
        Event::RecordsLost { .. } | Event::ClientDead { .. } => log::Level::Error,
    };
    log::log!(target: "geneva_audit", level, "{event}");
}

pub(crate) struct Notifier {
    tx: Sender<Notification>,
    rx: Receiver<Notification>,
    counters: Arc<Counters>,
}

impl Notifier {
    pub(crate) fn new(capacity: usize, counters: Arc<Counters>) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        Notifier { tx, rx, counters }
    }

    pub(crate) fn receiver(&self) -> Receiver<Notification> {
        self.rx.clone()
    }

    /// Publishes an event without ever blocking: when the channel is full the oldest
    /// event is discarded (and counted) to make room.
    pub(crate) fn publish(&self, event: Event) {
        #[cfg(feature = "log")]
        log_event(&event);
        let mut n = Notification {
            at: SystemTime::now(),
            event,
        };
        loop {
            match self.tx.try_send(n) {
                Ok(()) => return,
                Err(TrySendError::Full(back)) => {
                    n = back;
                    if self.rx.try_recv().is_ok() {
                        Counters::add(&self.counters.notifications_dropped, 1);
                    }
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }
}
