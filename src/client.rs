//! The client a service links and calls from any thread.

// A refused record travels back to the caller by value inside the error: boxing it
// would allocate on the path that must not.
#![allow(clippy::result_large_err)]

use std::fmt;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, SendTimeoutError, Sender};
use parking_lot::Mutex;

use crate::backoff::Backoff;
use crate::config::{Config, SendBuffer};
use crate::encode::{encoded_len, encoded_len_bound};
use crate::link::{Lifecycle, Link};
use crate::notify::{Event, LossReason, Notifications, Notifier};
use crate::queue::{FlushSignal, Item, Settled};
use crate::record::{Record, Text};
use crate::stats::{Counters, Stats};
use crate::supervisor;
use crate::time;
use crate::time::unix_now;
use crate::transport::Transport;
use crate::validate::{
    DEFAULT_MAX_CUSTOM_DEPTH, MAX_CUSTOM_DEPTH, ValidationError, validate_service_tree_id,
};
use crate::worker::Worker;
use crate::writer::Writer;
use crossbeam_utils::CachePadded;

/// Why `try_send` or `send_timeout` refused a record. Every variant hands the record
/// back: nothing is lost behind the caller's back.
///
/// Its `Debug` names the refusal and the record by its operation, not every field:
/// `QueueFull(Record { operation_name: "ListStorageAccounts", operation_type: Some(Read), .. })`.
#[allow(clippy::large_enum_variant)] // The record comes back by value: no allocation.
#[non_exhaustive]
pub enum SendError {
    /// The queue is full (for `send_timeout`: stayed full for the whole timeout).
    QueueFull(Record),
    /// The record breaks a validation rule.
    Invalid(ValidationError, Record),
    /// The record's frame is larger than the maximum frame size.
    TooLarge {
        /// The frame's size in bytes.
        size: usize,
        /// The configured maximum.
        max: usize,
        /// The record.
        record: Record,
    },
    /// The client is closed.
    Closed(Record),
    /// The client died (closing broken connections hung) and refuses records.
    Dead(Record),
}

impl SendError {
    /// The refused record.
    pub fn record(&self) -> &Record {
        match self {
            SendError::QueueFull(r)
            | SendError::Invalid(_, r)
            | SendError::TooLarge { record: r, .. }
            | SendError::Closed(r)
            | SendError::Dead(r) => r,
        }
    }

    /// Takes the refused record back.
    pub fn into_record(self) -> Record {
        match self {
            SendError::QueueFull(r)
            | SendError::Invalid(_, r)
            | SendError::TooLarge { record: r, .. }
            | SendError::Closed(r)
            | SendError::Dead(r) => r,
        }
    }
}

impl fmt::Debug for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let record = RecordName(self.record());
        match self {
            SendError::QueueFull(_) => f.debug_tuple("QueueFull").field(&record).finish(),
            SendError::Invalid(e, _) => f.debug_tuple("Invalid").field(e).field(&record).finish(),
            SendError::TooLarge { size, max, .. } => f
                .debug_struct("TooLarge")
                .field("size", size)
                .field("max", max)
                .field("record", &record)
                .finish(),
            SendError::Closed(_) => f.debug_tuple("Closed").field(&record).finish(),
            SendError::Dead(_) => f.debug_tuple("Dead").field(&record).finish(),
        }
    }
}

/// A record in an error's `Debug`: what it is about, not its every field (which could
/// fill a log line with caller identities and custom data).
struct RecordName<'a>(&'a Record);

impl fmt::Debug for RecordName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("operation_name", &self.0.get_operation_name())
            .field("operation_type", &self.0.operation_type)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::QueueFull(_) => f.write_str("the queue is full"),
            SendError::Invalid(e, _) => write!(f, "invalid record: {e}"),
            SendError::TooLarge { size, max, .. } => {
                write!(
                    f,
                    "the record's frame is {size} bytes, over the maximum of {max}"
                )
            }
            SendError::Closed(_) => f.write_str("the client is closed"),
            SendError::Dead(_) => f.write_str("the client is dead"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Invalid(e, _) => Some(e),
            _ => None,
        }
    }
}

/// Why `flush` returned before every record accepted before it was delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlushError {
    /// The timeout passed; `pending` accepted records were not delivered yet.
    Timeout {
        /// Records accepted and not yet delivered or lost, client-wide.
        pending: u64,
    },
    /// Every record accepted before the flush was dealt with, but `count` of them were
    /// lost instead of delivered (see [`Event::RecordsLost`] for why).
    Lost {
        /// How many.
        count: u64,
    },
    /// The client is closed or dead.
    Closed,
}

impl fmt::Display for FlushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlushError::Timeout { pending } => {
                write!(
                    f,
                    "flush timed out with {pending} records not yet delivered"
                )
            }
            FlushError::Lost { count } => {
                write!(f, "{count} records accepted before the flush were lost")
            }
            FlushError::Closed => f.write_str("the client is closed"),
        }
    }
}

impl std::error::Error for FlushError {}

/// Why a client could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// The service tree id is blank, not a UUID, or the nil UUID.
    ServiceTreeId(ValidationError),
    /// A setting is out of range.
    Config(&'static str),
    /// A thread could not be started.
    Spawn(io::Error),
    /// The builder was asked to wait for a first connection, and none came within the
    /// connect timeout.
    Connect {
        /// Where the client tried to connect, e.g. `unix:/var/run/mdsd/default_fluent.socket`.
        destination: String,
        /// The last attempt's error (`TimedOut` when no attempt had finished).
        source: io::Error,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::ServiceTreeId(e) => write!(f, "{e}"),
            BuildError::Config(what) => write!(f, "invalid setting: {what}"),
            BuildError::Spawn(e) => write!(f, "could not start a thread: {e}"),
            BuildError::Connect {
                destination,
                source,
            } => write!(
                f,
                "could not connect to the agent at {destination}: {source}"
            ),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::ServiceTreeId(e) => Some(e),
            BuildError::Spawn(e) | BuildError::Connect { source: e, .. } => Some(e),
            BuildError::Config(_) => None,
        }
    }
}

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
    /// The counters after closing.
    pub stats: Stats,
    /// Whether the client's threads finished within the deadline (false when one had
    /// to be left behind, still blocked in the OS). The connection itself is closed on
    /// a thread of its own, which a close hanging in the OS leaves behind either way.
    pub clean: bool,
}

/// Builds a [`Client`]; see [`Client::builder`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    config: Config,
}

impl ClientBuilder {
    /// The transport. Default: [`Transport::default_unix`], the agent's socket chosen at
    /// each connection attempt (the ASA socket if it exists, else the usual one).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.config.transport = transport;
        self
    }

    /// The agent's Unix socket at `path`, and no other (never swapped for the ASA
    /// socket; see [`Transport::AgentDir`] for that).
    pub fn unix_socket(self, path: impl Into<std::path::PathBuf>) -> Self {
        self.transport(Transport::Unix(path.into()))
    }

    /// The agent's TCP port, as `host:port`.
    pub fn tcp(self, addr: impl Into<String>) -> Self {
        self.transport(Transport::Tcp(addr.into()))
    }

    /// How many records the queue between the callers and the writer holds. Default 2048.
    ///
    /// The writer holds records of its own besides: those it has taken off the queue and
    /// not yet written (up to 64 KiB of frames), and those written and not yet confirmed
    /// read by the agent (up to what the socket's send buffer holds). So more records than
    /// this are accepted before the first `QueueFull` when the agent is slow:
    /// [`Stats::queue_len`], [`Stats::pending`] and [`Stats::in_flight`] show where they
    /// are.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.config.queue_capacity = capacity;
        self
    }

    /// How long one connection attempt may take. Default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// How long one write may block before the connection is dropped. Default 15 s.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.config.write_timeout = timeout;
        self
    }

    /// The reconnection backoff. Default: see [`Backoff`].
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// How often a connected client sends a heartbeat. Default 30 minutes.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.config.heartbeat_interval = interval;
        self
    }

    /// The largest frame a record may take; larger records are refused. Default 1 MiB.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.max_frame_size = bytes;
        self
    }

    /// How deeply custom data may nest. Default 32, at most [`MAX_CUSTOM_DEPTH`] (123):
    /// `build` refuses more (see there why).
    pub fn max_custom_depth(mut self, depth: usize) -> Self {
        self.config.max_custom_depth = depth;
        self
    }

    /// Whether `build` waits (up to the connect timeout) for a first connection and
    /// fails without one, as the reference client does. Default false: records queue
    /// while the supervisor connects.
    ///
    /// While it waits the supervisor keeps trying, with its backoff: `build` returns as
    /// soon as a connection is made, or at the connect timeout with
    /// [`BuildError::Connect`], which names the destination and holds the last attempt's
    /// error as its source.
    pub fn wait_for_connection(mut self, wait: bool) -> Self {
        self.config.wait_for_connection = wait;
        self
    }

    /// How many notifications are kept for the reader. Default 256.
    pub fn notification_capacity(mut self, capacity: usize) -> Self {
        self.config.notification_capacity = capacity;
        self
    }

    /// The longest a record waits before an idle client writes it. An idle writer looks
    /// at the queue after 1 ms, then less and less often up to this interval, so an idle
    /// client costs almost no CPU and producers never pay for waking it. Default 20 ms.
    pub fn idle_poll(mut self, interval: Duration) -> Self {
        self.config.idle_poll = interval;
        self
    }

    /// How long dropping the last handle waits to write what is queued. Default 5 s.
    pub fn drop_timeout(mut self, timeout: Duration) -> Self {
        self.config.drop_timeout = timeout;
        self
    }

    /// Whether to write again, after a connection fails, the records the agent was not
    /// seen to read. Default true.
    ///
    /// The protocol has no acknowledgements: when the agent dies, what it had not read
    /// from its socket is discarded by the kernel although every write succeeded. The
    /// client asks the kernel (`SIOCOUTQ`) how much of what it wrote the agent has not
    /// read, and keeps every record until it is read ([`Stats::delivered`]). After a
    /// failure it writes the rest again before anything else: at-least-once delivery
    /// across agent crashes, with duplicates limited to what the agent read since the
    /// client last looked (it looks every 256 records written, when idle, and while a
    /// `flush` or `close` waits; at most what the send buffer holds). A new connection
    /// carries one record until the agent has read it, so each connection the agent
    /// reads from moves the stream forward.
    ///
    /// Without the replay those records are counted lost ([`LossReason::NotRead`])
    /// instead. On TCP the kernel knows what the agent's kernel acknowledged, not what
    /// the agent read; where the kernel cannot tell at all (other than Linux), records
    /// count as delivered once written and there is nothing to replay.
    pub fn replay_unread(mut self, replay: bool) -> Self {
        self.config.replay_unread = replay;
        self
    }

    /// The socket send buffer (`SO_SNDBUF`) each connection asks for: `Some(bytes)` on
    /// every transport, or `None` for the kernel's default (and, on TCP, its
    /// autotuning). Default: 1 MiB on Unix sockets, the kernel's choice on TCP.
    ///
    /// Linux caps the request at `net.core.wmem_max` and doubles it for its own
    /// bookkeeping. A larger buffer lets the writer run alongside an agent that reads
    /// in bursts instead of taking turns with it; with the replay on, what the agent has
    /// not read is still written again after a crash.
    pub fn send_buffer_size(mut self, bytes: Option<usize>) -> Self {
        self.config.send_buffer = bytes.map_or(SendBuffer::Kernel, SendBuffer::Bytes);
        self
    }

    /// Starts the writer and supervisor threads.
    pub fn build(self) -> Result<Client, BuildError> {
        let mut config = self.config;
        config.service_tree_id = validate_service_tree_id(&config.service_tree_id)
            .map_err(BuildError::ServiceTreeId)?
            .into();
        if config.queue_capacity == 0 {
            return Err(BuildError::Config("queue capacity must be at least 1"));
        }
        if config.max_custom_depth > MAX_CUSTOM_DEPTH {
            return Err(BuildError::Config("max custom depth must be at most 123"));
        }
        if config.max_frame_size > u32::MAX as usize {
            return Err(BuildError::Config("max frame size must fit in 32 bits"));
        }
        if config.idle_poll.is_zero() {
            return Err(BuildError::Config("idle poll interval must be positive"));
        }
        // A send timeout under a microsecond reaches the kernel as zero: block forever.
        if config.write_timeout < Duration::from_millis(1) {
            return Err(BuildError::Config("write timeout must be at least 1 ms"));
        }
        if config.connect_timeout < Duration::from_millis(1) {
            return Err(BuildError::Config("connect timeout must be at least 1 ms"));
        }
        if config.heartbeat_interval.is_zero() {
            return Err(BuildError::Config("heartbeat interval must be positive"));
        }
        if let SendBuffer::Bytes(n) = config.send_buffer {
            // The kernel takes an int, and doubles it.
            if n == 0 || n > (i32::MAX / 2) as usize {
                return Err(BuildError::Config(
                    "send buffer size must be between 1 and 1,073,741,823 bytes",
                ));
            }
        }
        let config = Arc::new(config);
        let counters = Arc::new(Counters::default());
        let notifier = Notifier::new(config.notification_capacity, Arc::clone(&counters));
        let notifications = notifier.receiver();
        let shared = Arc::new(Link::new(
            Arc::clone(&counters),
            notifier,
            config.queue_capacity,
        ));
        let (tx, rx) = crossbeam_channel::bounded(config.queue_capacity);

        let supervisor = {
            let (shared, config) = (Arc::clone(&shared), Arc::clone(&config));
            Worker::spawn("geneva-audit-supervisor", move || {
                let run = AssertUnwindSafe(|| supervisor::run(Arc::clone(&shared), config));
                if catch_unwind(run).is_err() {
                    shared.die("the supervisor thread panicked".into());
                }
            })
            .map_err(BuildError::Spawn)?
        };
        let writer = {
            let w = Writer::new(Arc::clone(&shared), Arc::clone(&config), rx.clone());
            let shared = Arc::clone(&shared);
            Worker::spawn("geneva-audit-writer", move || {
                catch_unwind(AssertUnwindSafe(|| w.run())).unwrap_or_else(|_| {
                    // No panic is known to reach here; should one, the client says so
                    // and close counts what the writer held as lost.
                    shared.die("the writer thread panicked".into());
                    Vec::new()
                })
            })
        };
        let writer = match writer {
            Ok(w) => w,
            Err(e) => {
                shared.advance(Lifecycle::Stopping);
                let _ = supervisor.wait_until(time::after(Duration::from_secs(1)));
                return Err(BuildError::Spawn(e));
            }
        };
        let inner = Inner {
            writer_thread: writer.thread().clone(),
            tx,
            rx,
            gate: CachePadded::new(AtomicU64::new(0)),
            wake_len: config.queue_capacity.div_ceil(2),
            notifications,
            threads: Mutex::new(Some((writer, supervisor))),
            closing: Mutex::new(()),
            shared,
            counters,
            config,
        };
        let client = Client {
            inner: Arc::new(inner),
        };
        if client.inner.config.wait_for_connection {
            client.await_first_connection()?;
        }
        Ok(client)
    }
}

/// The `closed` bit of the send gate; the bits below count senders in flight.
const CLOSED: u64 = 1 << 63;

/// The slice `flush` waits in before looking at the gate again, so a concurrent `close`
/// never waits on it for long.
const WAIT_SLICE: Duration = Duration::from_millis(10);

/// The longest a producer sleeps for room before looking at the queue again by itself.
const ROOM_BACKSTOP: Duration = Duration::from_secs(1);

/// The writer (which returns the records it could not deliver) and the supervisor.
type Threads = (Worker<Vec<Record>>, Worker<()>);

struct Inner {
    config: Arc<Config>,
    tx: Sender<Item>,
    /// Kept so `close` can take back what the writer did not reach.
    rx: Receiver<Item>,
    /// `CLOSED` plus the number of senders between their check and their push. On a
    /// line of its own: every send writes it, and the fields around it are read-only.
    gate: CachePadded<AtomicU64>,
    wake_len: usize,
    shared: Arc<Link>,
    counters: Arc<Counters>,
    notifications: Notifications,
    writer_thread: Thread,
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
    /// form; it is sent lowercase and hyphenated (see [`validate_service_tree_id`]).
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
            },
        }
    }

    /// Validates `record` and queues it, without blocking and without allocating. Every
    /// refusal hands the record back.
    pub fn try_send(&self, record: Record) -> Result<(), SendError> {
        let ts = record.get_event_time().unwrap_or_else(unix_now);
        // The record is checked where it lies and moved once, into the queue: each move
        // of a record is a 280-byte copy.
        let room = match self
            .check(&record)
            .and_then(|room| self.enter_gate().map(|()| room))
        {
            Ok(room) => room,
            Err(refusal) => return Err(refusal.with(record)),
        };
        let result = self.inner.tx.try_send(Item::Record(ts, room, record));
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
        let room = match self.check(&record) {
            Ok(room) => room,
            Err(refusal) => return Err(refusal.with(record)),
        };
        let inner = &*self.inner;
        let mut item = Item::Record(ts, room, record);
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
            inner.shared.room.wait(
                deadline.min(time::after(ROOM_BACKSTOP)),
                || inner.tx.len(),
                || {
                    inner.gate.load(Ordering::Relaxed) & CLOSED != 0
                        || inner.shared.dead.load(Ordering::Relaxed)
                },
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
        if inner.shared.dead.load(Ordering::Relaxed) {
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
            && inner.shared.writer_parked.load(Ordering::Relaxed)
            && inner.tx.len() >= inner.wake_len
            && inner.shared.writer_parked.swap(false, Ordering::SeqCst)
        {
            inner.writer_thread.unpark();
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
        if inner.shared.dead.load(Ordering::Relaxed) {
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
        inner.writer_thread.unpark();
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
        let shared = &self.inner.shared;
        let deadline = time::after(self.inner.config.connect_timeout);
        let mut st = shared.lock();
        loop {
            if st.ready.is_some() || self.inner.counters.connects.load(Ordering::Relaxed) > 0 {
                return Ok(());
            }
            if shared.dead.load(Ordering::Relaxed)
                || shared.cond.wait_until(&mut st, deadline).timed_out()
            {
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

fn item_record(item: Item) -> Record {
    match item {
        Item::Record(_, _, record) => record,
        // Only records are pushed by the send paths.
        Item::Flush(_) => Record::data_plane(),
    }
}

impl Inner {
    fn close(&self, timeout: Duration, reason: LossReason) -> CloseReport {
        let deadline = time::after(timeout);
        // 1. Refuse new records, and wait for pushes already past the gate.
        self.gate.fetch_or(CLOSED, Ordering::SeqCst);
        self.shared.room.wake_all();
        while self.gate.load(Ordering::SeqCst) & !CLOSED != 0 {
            thread::yield_now();
        }
        // A second close waits for the first to finish, then finds nothing left to do.
        let _closing = self.closing.lock();
        let Some((writer, supervisor)) = self.threads.lock().take() else {
            return self.report(Vec::new(), true);
        };
        // 2. The writer writes what is queued and waits for the agent to read it, until
        // the deadline.
        self.shared.advance(Lifecycle::Draining);
        self.writer_thread.unpark();
        let mut writer_ended = writer.wait_until(deadline);
        // 3. Stop at once: a write stuck in the kernel is cut off.
        self.shared.advance(Lifecycle::Stopping);
        self.writer_thread.unpark();
        let grace = || Instant::now() + STOP_GRACE;
        if !writer_ended {
            writer_ended = writer.wait_until(grace());
        }
        let mut unsent = Vec::new();
        if writer_ended {
            unsent = writer.join().unwrap_or_default();
        }
        let supervisor_ended = supervisor.wait_until(grace());
        // 4. What the writer never took is still queued.
        unsent.extend(self.rx.try_iter().filter_map(|item| match item {
            // With the time it was stamped with, to be sent again as it was.
            Item::Record(ts, _, record) => Some(record.event_time(ts)),
            Item::Flush(signal) => {
                signal.cancel();
                None
            }
        }));
        let lost = unsent.len() as u64;
        if lost > 0 {
            Counters::add(&self.counters.lost, lost);
            self.shared.notifier.publish(Event::RecordsLost {
                count: lost,
                reason,
            });
        }
        // Whatever is still pending or in flight now cannot be handed back: the writer is
        // stuck in the OS (or died) with it.
        let left = self.counters.snapshot(0);
        let abandoned = left.pending + left.in_flight;
        if abandoned > 0 {
            self.counters
                .written
                .fetch_sub(left.in_flight, Ordering::Relaxed);
            Counters::add(&self.counters.lost, abandoned);
            self.shared.notifier.publish(Event::RecordsLost {
                count: abandoned,
                reason: LossReason::Abandoned,
            });
        }
        self.shared.notifier.end();
        self.report(unsent, writer_ended && supervisor_ended)
    }

    fn report(&self, unsent: Vec<Record>, clean: bool) -> CloseReport {
        CloseReport {
            delivered: self.counters.delivered.load(Ordering::Relaxed),
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
