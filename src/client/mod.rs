//! The client a service links and calls from any thread.

// A refused record travels back to the caller by value inside the error: boxing it
// would allocate on the path that must not.
#![allow(clippy::result_large_err)]

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, SendTimeoutError, Sender};
use parking_lot::Mutex;

use crate::backoff::Backoff;
use crate::config::Config;
use crate::encode::{encoded_len, encoded_len_bound};
use crate::link::Link;
use crate::notify::{LossReason, Notifications};
use crate::queue::{FlushSignal, Item, Queued, Settled};
use crate::record::{Record, Text};
use crate::send_buffer::SendBuffer;
use crate::stats::{Counters, Stats};
use crate::time;
use crate::time::unix_now;
use crate::transport::Transport;
use crate::validate::{DEFAULT_MAX_CUSTOM_DEPTH, ValidationError};
use crate::worker::Worker;
use crate::writer::Leftovers;
use crossbeam_utils::CachePadded;

mod builder;
mod close;
mod error;

pub use builder::ClientBuilder;
pub use close::CloseReport;
pub use error::{BuildError, FlushError, SendError};

/// The `closed` bit of the send gate; the bits below count senders in flight.
const CLOSED: u64 = 1 << 63;

/// The slice `flush` waits in before looking at the gate again, so a concurrent `close`
/// never waits on it for long.
const WAIT_SLICE: Duration = Duration::from_millis(10);

/// The longest a producer sleeps for room before looking at the queue again by itself.
const ROOM_BACKSTOP: Duration = Duration::from_secs(1);

/// The writer (which returns the records it could not deliver) and the supervisor.
type Threads = (Worker<Leftovers>, Worker<()>);

struct Inner {
    config: Arc<Config>,
    tx: Sender<Item>,
    /// Kept so `close` can take back what the writer did not reach.
    rx: Receiver<Item>,
    /// `CLOSED` plus the number of senders between their check and their push. On a
    /// line of its own: every send writes it, and the fields around it are read-only.
    gate: CachePadded<AtomicU64>,
    wake_len: usize,
    link: Arc<Link>,
    counters: Arc<Counters>,
    notifications: Notifications,
    threads: Mutex<Option<Threads>>,
    /// Held for the whole of a close.
    closing: Mutex<()>,
}

/// A client of the Geneva agent: validates records on the caller's thread, queues them,
/// and writes them from its own thread.
///
/// Cheap to clone and share (`Send + Sync`); all clones are one client, which stops when
/// [`Client::close`] is called or the last clone is dropped.
///
/// ```
/// use std::time::Duration;
/// use geneva_audit::{CallerIdentityType, Client, MemorySink, OperationCategory, OperationResult, OperationType, Record, SendError, Transport};
///
/// let sink = MemorySink::new();
/// let client = Client::builder("e6c9fcb1-7f08-4c1d-9e7a-123456789abc")
///     .transport(Transport::Memory(sink.clone()))
///     .build()?;
/// let record = Record::data_plane()
///     .caller_ip("203.0.113.42".parse()?)
///     .add_caller_identity(CallerIdentityType::Upn, "alice@contoso.com", "signed-in user")
///     .add_operation_category(OperationCategory::ResourceManagement)
///     .add_target_resource("SubscriptionId", "4bb12743-2418-427f-92ae-96a11a4044fe")
///     .add_caller_access_level("Contributor")
///     .operation_access_level("Contributor")
///     .operation_name("ListStorageAccounts")
///     .caller_agent("azure-cli/2.61.0")
///     .operation_type(OperationType::Read)
///     .operation_result(OperationResult::Success);
/// match client.try_send(record) {
///     Ok(()) => {}
///     Err(SendError::QueueFull(record)) => { /* keep it, retry later */ drop(record) }
///     Err(other) => eprintln!("audit record refused: {other}"),
/// }
/// client.flush(Duration::from_secs(5))?;
/// let report = client.close(Duration::from_secs(5));
/// assert_eq!(report.delivered, 1);
/// assert!(!sink.bytes().is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("transport", &self.inner.config.transport)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Client {
    /// A builder for a client that sends as `service_tree_id`, a UUID in any textual
    /// form; it is sent lowercase and hyphenated (see [`validate_service_tree_id`](crate::validate_service_tree_id)).
    pub fn builder(service_tree_id: impl Into<Text>) -> ClientBuilder {
        ClientBuilder {
            config: Config {
                service_tree_id: service_tree_id.into(),
                transport: Transport::default_unix(),
                queue_capacity: 2048,
                connect_timeout: Duration::from_secs(10),
                write_timeout: Duration::from_secs(15),
                backoff: Backoff::default(),
                heartbeat_interval: Duration::from_secs(30 * 60),
                max_frame_size: 1024 * 1024,
                max_custom_depth: DEFAULT_MAX_CUSTOM_DEPTH,
                wait_for_connection: false,
                notification_capacity: 256,
                idle_poll: Duration::from_millis(20),
                drop_timeout: Duration::from_secs(5),
                replay_unread: true,
                send_buffer: SendBuffer::Default,
                spool: None,
            },
        }
    }

    /// Validates `record` and queues it, without blocking and without allocating. Every
    /// refusal hands the record back.
    pub fn try_send(&self, record: Record) -> Result<(), SendError> {
        let ts = record.get_event_time().unwrap_or_else(unix_now);
        // The record is checked where it lies and moved once, into the queue: each move
        // of a record is a 280-byte copy.
        let size_bound = match self
            .check(&record)
            .and_then(|size_bound| self.enter_gate().map(|()| size_bound))
        {
            Ok(size_bound) => size_bound,
            Err(refusal) => return Err(refusal.with(record)),
        };
        let result = self.inner.tx.try_send(Item::Record(Queued {
            ts,
            size_bound,
            record,
        }));
        self.leave_gate(result.is_ok());
        result.map_err(|e| {
            Counters::add(&self.inner.counters.refused_full, 1);
            SendError::QueueFull(item_record(e.into_inner()))
        })
    }

    /// Like [`Client::try_send`], but waits up to `timeout` for room in the queue.
    ///
    /// A full queue puts the caller to sleep until the writer has drained it to half
    /// full: it neither spins nor is woken once per freed slot, so a producer that
    /// outpaces the agent leaves the CPU to the writer.
    pub fn send_timeout(&self, record: Record, timeout: Duration) -> Result<(), SendError> {
        let ts = record.get_event_time().unwrap_or_else(unix_now);
        let deadline = time::after(timeout);
        let size_bound = match self.check(&record) {
            Ok(size_bound) => size_bound,
            Err(refusal) => return Err(refusal.with(record)),
        };
        let inner = &*self.inner;
        let mut item = Item::Record(Queued {
            ts,
            size_bound,
            record,
        });
        loop {
            if let Err(refusal) = self.enter_gate() {
                return Err(refusal.with(item_record(item)));
            }
            let result = inner.tx.try_send(item);
            self.leave_gate(result.is_ok());
            item = match result {
                Ok(()) => return Ok(()),
                Err(e) => e.into_inner(),
            };
            if Instant::now() >= deadline {
                Counters::add(&inner.counters.refused_full, 1);
                return Err(SendError::QueueFull(item_record(item)));
            }
            // The writer, `close` and the client's death wake sleepers; the backstop only
            // bounds what a wake-up missed by mistake would cost.
            inner.link.room.wait(
                deadline.min(time::after(ROOM_BACKSTOP)),
                || inner.tx.len(),
                || inner.gate.load(Ordering::Relaxed) & CLOSED != 0 || inner.link.dead(),
            );
        }
    }

    /// Validation and the size check, on the caller's thread; returns the room the
    /// record's frame needs (an upper bound, or the exact size for a large record).
    #[inline]
    fn check(&self, record: &Record) -> Result<usize, Refusal> {
        let counters = &self.inner.counters;
        if let Err(e) = record.validate_with_depth(self.inner.config.max_custom_depth) {
            Counters::add(&counters.refused_invalid, 1);
            return Err(Refusal::Invalid(e));
        }
        let sti = &self.inner.config.service_tree_id;
        let max = self.inner.config.max_frame_size;
        // The cheap bound settles almost every record; the exact walk only the large.
        let bound = encoded_len_bound(sti, record);
        if bound <= max {
            return Ok(bound);
        }
        let size = encoded_len(sti, record);
        if size > max {
            Counters::add(&counters.refused_too_large, 1);
            return Err(Refusal::TooLarge { size, max });
        }
        Ok(size)
    }

    /// Takes a place in the send gate, so `close` can wait for every push that started
    /// before it. Every `Ok` must be followed by [`Client::leave_gate`].
    #[inline]
    fn enter_gate(&self) -> Result<(), Refusal> {
        let inner = &*self.inner;
        if inner.link.dead() {
            Counters::add(&inner.counters.refused_closed, 1);
            return Err(Refusal::Dead);
        }
        if inner.gate.fetch_add(1, Ordering::SeqCst) & CLOSED != 0 {
            inner.gate.fetch_sub(1, Ordering::SeqCst);
            Counters::add(&inner.counters.refused_closed, 1);
            return Err(Refusal::Closed);
        }
        Ok(())
    }

    /// Leaves the send gate after a push; counts the record when it was accepted, and
    /// wakes a parked writer once the queue is half full.
    #[inline]
    fn leave_gate(&self, accepted: bool) {
        let inner = &*self.inner;
        if accepted {
            Counters::add(&inner.counters.accepted, 1);
        }
        inner.gate.fetch_sub(1, Ordering::SeqCst);
        // `writer_parked` is read first: it rarely changes, while the queue's length lives
        // on a cache line the writer writes for every record.
        if accepted
            && inner.link.writer_parked.load(Ordering::Relaxed)
            && inner.tx.len() >= inner.wake_len
            && inner.link.writer_parked.swap(false, Ordering::SeqCst)
        {
            inner.link.wake_writer();
        }
    }

    /// Waits until every record accepted before this call has been delivered (the agent
    /// has read it, as far as the transport can tell: see [`Stats::delivered`]), or
    /// `timeout` passes.
    ///
    /// When the agent dies meanwhile, the records it had not read are written again on
    /// the next connection and the wait goes on until they are read or the deadline
    /// passes.
    pub fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        let deadline = time::after(timeout);
        let signal = Arc::new(FlushSignal::default());
        let inner = &*self.inner;
        let mut item = Item::Flush(Arc::clone(&signal));
        if inner.link.dead() {
            return Err(FlushError::Closed);
        }
        loop {
            if inner.gate.fetch_add(1, Ordering::SeqCst) & CLOSED != 0 {
                inner.gate.fetch_sub(1, Ordering::SeqCst);
                return Err(FlushError::Closed);
            }
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .min(WAIT_SLICE);
            let pushed = inner.tx.send_timeout(item, slice);
            inner.gate.fetch_sub(1, Ordering::SeqCst);
            match pushed {
                Ok(()) => break,
                Err(SendTimeoutError::Timeout(back)) if Instant::now() < deadline => item = back,
                Err(_) => return Err(self.flush_timeout()),
            }
        }
        inner.link.wake_writer();
        match signal.wait_until(deadline) {
            Some(Settled::Delivered) => Ok(()),
            Some(Settled::Lost(count)) => Err(FlushError::Lost { count }),
            Some(Settled::Cancelled) => Err(FlushError::Closed),
            None => Err(self.flush_timeout()),
        }
    }

    fn flush_timeout(&self) -> FlushError {
        let s = self.stats();
        FlushError::Timeout {
            pending: s.pending + s.in_flight,
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot(self.inner.tx.len())
    }

    /// The client's notifications: connect failures, write failures, reconnections, lost
    /// records, death. Read them from any thread; unread events are discarded oldest
    /// first and counted in [`Stats::notifications_dropped`]. Iterating ends once the
    /// client is closed or dead and every event was read.
    ///
    /// Every call returns the same stream (each event is read once, by one reader); see
    /// [`Notifications`].
    pub fn notifications(&self) -> Notifications {
        self.inner.notifications.clone()
    }

    /// Stops accepting records, writes what is queued and waits, within `timeout`, until
    /// the agent has read everything; then stops the threads, closes the connection (on a
    /// thread of its own, so a close that hangs in the OS cannot hold this up), and hands
    /// back in [`CloseReport::unsent`] every record not confirmed read, in order. A second
    /// call waits for the first, then returns with nothing more to hand back.
    ///
    /// At the deadline it looks one last time at what the agent has read, and cuts off a
    /// write stuck in the kernel; the threads get up to a quarter of a second more to
    /// stop, and a thread still stuck in the OS after that is left behind
    /// ([`CloseReport::clean`] is false) and what it held is counted as lost.
    /// Dropping the last handle closes with [`ClientBuilder::drop_timeout`]: on an async
    /// executor's thread, close explicitly (or keep that timeout short) rather than
    /// blocking the executor in `Drop`.
    pub fn close(&self, timeout: Duration) -> CloseReport {
        self.inner.close(timeout, LossReason::Closed)
    }

    /// Waits up to the connect timeout for the supervisor's first connection, through
    /// its failed attempts and backoff; without one, stops the client and returns the
    /// last attempt's error.
    fn await_first_connection(&self) -> Result<(), BuildError> {
        let link = &self.inner.link;
        let deadline = time::after(self.inner.config.connect_timeout);
        let mut st = link.lock();
        loop {
            if st.ready.is_some() || self.inner.counters.connects.load(Ordering::Relaxed) > 0 {
                return Ok(());
            }
            if link.dead() || link.cond.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        if st.ready.is_some() || self.inner.counters.connects.load(Ordering::Relaxed) > 0 {
            return Ok(());
        }
        let source = match st.last_error.take() {
            Some((kind, error)) => io::Error::new(kind, error),
            None => io::Error::new(
                io::ErrorKind::TimedOut,
                "no connection within the connect timeout",
            ),
        };
        drop(st);
        self.inner.close(Duration::ZERO, LossReason::Abandoned);
        Err(BuildError::Connect {
            destination: self.inner.config.transport.resolve().to_string(),
            source,
        })
    }
}

/// Why a record is refused before it reaches the queue; the record is attached only on
/// the way out, so the send paths never move it just to check it.
enum Refusal {
    Invalid(ValidationError),
    TooLarge { size: usize, max: usize },
    Closed,
    Dead,
}

impl Refusal {
    #[cold]
    fn with(self, record: Record) -> SendError {
        match self {
            Refusal::Invalid(e) => SendError::Invalid(e, record),
            Refusal::TooLarge { size, max } => SendError::TooLarge { size, max, record },
            Refusal::Closed => SendError::Closed(record),
            Refusal::Dead => SendError::Dead(record),
        }
    }
}

/// The record of an item the send paths pushed (only records: a flush is pushed by
/// `flush`, which never hands an item back to a caller).
fn item_record(item: Item) -> Record {
    match item {
        Item::Record(queued) => queued.record,
        Item::Flush(_) => Record::data_plane(),
    }
}
