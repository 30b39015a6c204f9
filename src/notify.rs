//! Notifications: a bounded channel of timestamped events that the writer and the
//! supervisor never block on. When nobody reads it the oldest events make room for new
//! ones, and every discarded event is counted. The stream ends when the client is closed
//! or dies, so a thread that iterates it finishes once it has read everything.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Select, Sender, TrySendError};
use parking_lot::Mutex;

use crate::spool::SpoolNotice;
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
    /// The agent closed the connection after reading everything written to it (an
    /// agent restarting, or a receiver that was done): nothing failed and nothing is
    /// lost. The client reconnects for the records that come next.
    AgentLeft {
        /// Records waiting for the next connection.
        pending_records: usize,
    },
    /// The spool's disk failed (full, refused, broken): what it means for the records
    /// is in `error`. Spilling pauses and records wait in memory (producers get
    /// `QueueFull` once the queue is full); nothing is lost by it.
    SpoolFailed {
        /// The spool's directory, or the file that failed.
        path: PathBuf,
        /// What failed, and what follows.
        error: String,
    },
    /// What opening the spool found: records left by an earlier client, a torn tail cut,
    /// a damaged file moved aside, a file that is not the spool's.
    Spool(SpoolNotice),
    /// Accepted records were not written.
    RecordsLost {
        /// How many.
        count: u64,
        /// Why.
        reason: LossReason,
    },
    /// The client stopped working; it refuses new records. Two things end a client: a
    /// close of a broken connection that has not returned for longer than the write
    /// timeout (a socket the kernel cannot close: connections would pile up behind it),
    /// or a panic of one of its threads. Agent outages, reconnect churn and a starved
    /// machine never do.
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
            Event::AgentLeft { pending_records } => write!(
                f,
                "the agent closed the connection after reading everything written; \
                 {pending_records} records wait for the next connection"
            ),
            Event::SpoolFailed { path, error } => {
                write!(f, "the spool at {} failed: {error}", path.display())
            }
            Event::Spool(notice) => write!(f, "spool: {notice}"),
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
        Event::Connected { .. } | Event::AgentLeft { .. } | Event::Spool(_) => log::Level::Info,
        Event::SpoolFailed { .. } => log::Level::Warn,
        Event::ConnectFailed { .. } | Event::WriteFailed { .. } => log::Level::Warn,
        Event::RecordsLost { .. } | Event::ClientDead { .. } => log::Level::Error,
    };
    log::log!(target: "geneva_audit", level, "{event}");
}

/// The client's notifications, from [`Client::notifications`](crate::Client::notifications).
///
/// Iterating blocks for the next event and **ends** once the client is closed (by
/// [`Client::close`](crate::Client::close) or by dropping its last handle) or has died,
/// and every event published until then has been read; a reader thread therefore
/// finishes with the client:
///
/// ```
/// use geneva_audit::{Client, Event, Transport};
///
/// let client = Client::builder("e6c9fcb1-7f08-4c1d-9e7a-123456789abc")
///     .transport(Transport::NoOp)
///     .build()?;
/// let events = client.notifications();
/// let reader = std::thread::spawn(move || {
///     for n in events {
///         if let Event::RecordsLost { count, reason } = n.event {
///             eprintln!("audit: {count} records lost ({reason:?})");
///         }
///     }
/// });
/// client.close(std::time::Duration::from_secs(5));
/// reader.join().unwrap(); // The iteration ended with the close.
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A client has **one** stream of notifications, kept from the moment it is built (up to
/// [`ClientBuilder::notification_capacity`](crate::ClientBuilder::notification_capacity)
/// unread events, the oldest discarded first). Every call to `notifications()`, and
/// every clone of a `Notifications`, reads that same stream: each event goes to exactly
/// one of the readers, whichever takes it first. Read it in one place, and hand events on
/// from there if several parts of a service need them.
///
/// A dead client's stream ends with [`Event::ClientDead`]; should its handles then be
/// closed, the records lost are in the [`CloseReport`](crate::CloseReport) (and the
/// event saying so can still be taken with [`Notifications::try_next`]).
#[derive(Clone)]
pub struct Notifications {
    events: Receiver<Notification>,
    /// Never carries a message: it disconnects when the stream ends.
    ended: Receiver<()>,
}

impl Notifications {
    /// The next event if one is waiting, without blocking.
    pub fn try_next(&self) -> Option<Notification> {
        self.events.try_recv().ok()
    }

    /// The events waiting now, without blocking.
    pub fn try_iter(&self) -> impl Iterator<Item = Notification> + '_ {
        std::iter::from_fn(|| self.try_next())
    }

    /// Waits up to `timeout` for the next event. Fails with
    /// [`RecvTimeoutError::Ended`] once the stream has ended and every event was read.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Notification, RecvTimeoutError> {
        self.recv_until(Some(crate::time::after(timeout)))
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<Notification, RecvTimeoutError> {
        let mut select = Select::new();
        let events = select.recv(&self.events);
        select.recv(&self.ended);
        let op = match deadline {
            Some(deadline) => select
                .select_deadline(deadline)
                .map_err(|_| RecvTimeoutError::Timeout)?,
            None => select.select(),
        };
        if op.index() == events {
            // Disconnected: the client is gone, and so is every publisher.
            return op.recv(&self.events).map_err(|_| RecvTimeoutError::Ended);
        }
        let _ended = op.recv(&self.ended);
        self.events.try_recv().map_err(|_| RecvTimeoutError::Ended)
    }
}

impl Iterator for Notifications {
    type Item = Notification;

    /// Blocks for the next event; `None` once the stream has ended and is empty.
    fn next(&mut self) -> Option<Notification> {
        self.recv_until(None).ok()
    }
}

impl fmt::Debug for Notifications {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifications")
            .field("waiting", &self.events.len())
            .finish()
    }
}

/// Why [`Notifications::recv_timeout`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// Nothing arrived within the timeout.
    Timeout,
    /// The client was closed or died, and every event has been read.
    Ended,
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecvTimeoutError::Timeout => "no notification within the timeout",
            RecvTimeoutError::Ended => "the client is closed and every notification was read",
        })
    }
}

impl std::error::Error for RecvTimeoutError {}

pub(crate) struct Notifier {
    tx: Sender<Notification>,
    rx: Receiver<Notification>,
    /// Dropped when the stream ends, which wakes every reader waiting on `ended`.
    end: Mutex<Option<Sender<()>>>,
    ended: Receiver<()>,
    counters: Arc<Counters>,
}

impl Notifier {
    pub(crate) fn new(capacity: usize, counters: Arc<Counters>) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        let (end, ended) = crossbeam_channel::bounded(0);
        Notifier {
            tx,
            rx,
            end: Mutex::new(Some(end)),
            ended,
            counters,
        }
    }

    pub(crate) fn receiver(&self) -> Notifications {
        Notifications {
            events: self.rx.clone(),
            ended: self.ended.clone(),
        }
    }

    /// Ends the stream: readers get what is left, then their iteration ends. Called when
    /// the client has closed or died; events published later can still be taken with
    /// `try_next`.
    pub(crate) fn end(&self) {
        drop(self.end.lock().take());
    }

    /// Publishes an event without ever blocking: when the channel is full the oldest
    /// event is discarded (and counted) to make room. The client's death is its last
    /// event: it ends the stream.
    pub(crate) fn publish(&self, event: Event) {
        #[cfg(feature = "log")]
        log_event(&event);
        let dead = matches!(event, Event::ClientDead { .. });
        let mut n = Notification {
            at: SystemTime::now(),
            event,
        };
        loop {
            match self.tx.try_send(n) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) => {
                    n = back;
                    if self.rx.try_recv().is_ok() {
                        Counters::add(&self.counters.notifications_dropped, 1);
                    }
                }
                Err(TrySendError::Disconnected(_)) => break,
            }
        }
        if dead {
            self.end();
        }
    }
}
