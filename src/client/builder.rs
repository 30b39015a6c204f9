//! The client's settings and their defaults, and starting its threads.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

use super::{BuildError, Client, Inner, Threads};
use crate::backoff::Backoff;
use crate::config::{Config, DEFAULT_SPOOL_LIMIT, SpoolConfig};
use crate::link::{Lifecycle, Link};
use crate::notify::{Event, Notifier};
use crate::queue::Item;
use crate::send_buffer::SendBuffer;
use crate::spool::{Spool, SpoolError, SpoolNotice, SpoolSync};
use crate::stats::Counters;
use crate::supervisor;
use crate::time;
use crate::transport::Transport;
use crate::validate::{MAX_CUSTOM_DEPTH, validate_service_tree_id};
use crate::worker::Worker;
use crate::writer::Writer;

/// Builds a [`Client`]; see [`Client::builder`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    pub(super) config: Config,
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
    /// [`Stats::queue_len`](crate::Stats::queue_len), [`Stats::pending`](crate::Stats::pending) and [`Stats::in_flight`](crate::Stats::in_flight) show where they
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
    /// read, and keeps every record until it is read ([`Stats::delivered`](crate::Stats::delivered)). After a
    /// failure it writes the rest again before anything else: at-least-once delivery
    /// across agent crashes, with duplicates limited to what the agent read since the
    /// client last looked (it looks every 512 records written, when idle, and while a
    /// `flush` or `close` waits; at most what the send buffer holds). A new connection
    /// carries one record until the agent has read it, so each connection the agent
    /// reads from moves the stream forward.
    ///
    /// Without the replay those records are counted lost ([`LossReason::NotRead`](crate::LossReason::NotRead))
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

    /// Keeps records on disk, in `dir`, while the agent is away or reads more slowly
    /// than records come, and across restarts of the process. Off by default.
    ///
    /// With a spool, the writer moves records from the queue to files in `dir` instead
    /// of letting the queue fill while there has been no connection for a second (or
    /// none at `close`) or the queue is more than half full; producers keep getting `Ok` until the spool reaches
    /// [`spool_limit`](Self::spool_limit). Once records are spooled, new ones go behind
    /// them: the spool is sent first, in order, when the agent is back. A spooled record
    /// leaves the spool only once the agent has read it. [`Client::close`] writes what it
    /// could not deliver in time to the spool instead of handing it back
    /// ([`CloseReport::spooled`](crate::CloseReport::spooled)), and the next client on
    /// `dir` sends it first, with its original time. The caller's thread never touches
    /// the disk.
    ///
    /// The directory is created `0700` and its files `0600`, whatever the umask; a
    /// directory that exists must belong to the user the client runs as and be writable
    /// by no one else (its mode is never changed; `0750` is fine).
    ///
    /// One client per directory: a second one on the same `dir` fails to build with
    /// [`BuildError::SpoolLocked`]. A directory that cannot be used (it cannot be made or
    /// read, is a file, is not private, holds a spool of a newer format) fails the build
    /// with [`BuildError::SpoolUnusable`]. Faults after that (a full disk, an I/O error)
    /// are an [`Event::SpoolFailed`](crate::Event::SpoolFailed) notification and a count
    /// in [`Stats::spool_errors`](crate::Stats::spool_errors), and the client goes on
    /// with memory alone where the spool cannot serve. With a spool, what the agent did not read is always written again
    /// after a failure (as with [`replay_unread`](Self::replay_unread) on). The format
    /// and what a crash can cost are in `docs/SPOOL.md`.
    pub fn spool(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        let spool = self.config.spool.get_or_insert_with(|| SpoolConfig {
            dir: std::path::PathBuf::new(),
            limit: DEFAULT_SPOOL_LIMIT,
            sync: SpoolSync::default(),
        });
        spool.dir = dir.into();
        self
    }

    /// The most bytes the spool's files may hold (default 1 GiB); past it, records wait
    /// in memory and a full queue refuses them, as without a spool. Only with
    /// [`spool`](Self::spool).
    pub fn spool_limit(mut self, bytes: u64) -> Self {
        if let Some(spool) = self.config.spool.as_mut() {
            spool.limit = bytes;
        }
        self
    }

    /// When the spool's writes are made durable (`fsync`); default every second. Only
    /// with [`spool`](Self::spool).
    pub fn spool_sync(mut self, sync: SpoolSync) -> Self {
        if let Some(spool) = self.config.spool.as_mut() {
            spool.sync = sync;
        }
        self
    }

    /// Starts the writer and supervisor threads.
    pub fn build(self) -> Result<Client, BuildError> {
        let config = Arc::new(checked(self.config)?);
        let counters = Arc::new(Counters::default());
        let notifier = Notifier::new(config.notification_capacity, Arc::clone(&counters));
        let notifications = notifier.receiver();
        let spool = match &config.spool {
            Some(settings) => open_spool(settings, &counters, &notifier)?,
            None => None,
        };
        let link = Arc::new(Link::new(
            Arc::clone(&counters),
            notifier,
            config.queue_capacity,
            config.write_timeout,
        ));
        let (tx, rx) = crossbeam_channel::bounded(config.queue_capacity);
        let (writer, supervisor) = start_threads(&link, &config, rx.clone(), spool)?;
        link.set_writer(writer.thread().clone());
        let inner = Inner {
            tx,
            rx,
            gate: CachePadded::new(AtomicU64::new(0)),
            wake_len: config.queue_capacity.div_ceil(2),
            notifications,
            threads: Mutex::new(Some((writer, supervisor))),
            closing: Mutex::new(()),
            link,
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

/// The settings, checked: each within the range the threads and the kernel take.
fn checked(mut config: Config) -> Result<Config, BuildError> {
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
    check_timeouts(&config)?;
    if let SendBuffer::Bytes(n) = config.send_buffer {
        // The kernel takes an int, and doubles it.
        if n == 0 || n > (i32::MAX / 2) as usize {
            return Err(BuildError::Config(
                "send buffer size must be between 1 and 1,073,741,823 bytes",
            ));
        }
    }
    Ok(config)
}

fn check_timeouts(config: &Config) -> Result<(), BuildError> {
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
    Ok(())
}

/// Starts the supervisor, then the writer; if the writer cannot start, stops the
/// supervisor again.
fn start_threads(
    link: &Arc<Link>,
    config: &Arc<Config>,
    rx: crossbeam_channel::Receiver<Item>,
    spool: Option<Spool>,
) -> Result<Threads, BuildError> {
    let supervisor = {
        let (link, config) = (Arc::clone(link), Arc::clone(config));
        Worker::spawn("geneva-audit-supervisor", move || {
            let run = AssertUnwindSafe(|| supervisor::run(Arc::clone(&link), config));
            if catch_unwind(run).is_err() {
                link.die("the supervisor thread panicked".into());
            }
        })
        .map_err(BuildError::Spawn)?
    };
    let writer = {
        let w = Writer::new(Arc::clone(link), Arc::clone(config), rx, spool);
        let link = Arc::clone(link);
        Worker::spawn("geneva-audit-writer", move || {
            catch_unwind(AssertUnwindSafe(|| w.run())).unwrap_or_else(|_| {
                // No panic is known to reach here; should one, the client says so
                // and close counts what the writer held as lost.
                link.die("the writer thread panicked".into());
                Default::default()
            })
        })
    };
    match writer {
        Ok(w) => Ok((w, supervisor)),
        Err(e) => {
            link.advance(Lifecycle::Stopping);
            let _ = supervisor.wait_until(time::after(Duration::from_secs(1)));
            Err(BuildError::Spawn(e))
        }
    }
}

/// Opens the spool; a directory that cannot be used (held by another client, not
/// private, a file, a newer format, any error of the file system) fails the build.
/// What the spool found at open is told.
fn open_spool(
    settings: &SpoolConfig,
    counters: &Counters,
    notifier: &Notifier,
) -> Result<Option<Spool>, BuildError> {
    let (spool, notices) = match Spool::open(&settings.dir, settings.limit, settings.sync) {
        Ok(opened) => opened,
        Err(e @ SpoolError::Locked { .. }) => return Err(BuildError::SpoolLocked(e)),
        Err(error) => {
            return Err(BuildError::SpoolUnusable {
                path: settings.dir.clone(),
                error,
            });
        }
    };
    for notice in notices {
        if matches!(
            notice,
            SpoolNotice::TornTail { .. } | SpoolNotice::SetAside { .. }
        ) {
            Counters::add(&counters.spool_corrupt, 1);
        }
        notifier.publish(Event::Spool(notice));
    }
    counters
        .spool_bytes
        .store(spool.bytes(), std::sync::atomic::Ordering::Relaxed);
    Ok(Some(spool))
}
