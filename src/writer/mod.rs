//! The writer thread: takes records off the queue into its [`Outbox`], writes their
//! frames to the connection, and asks the kernel what the agent has read.
//!
//! An idle writer writes each record at once; a busy one takes whatever is queued, up to
//! 64 KiB of frames, encodes it and makes one write for all of it. Producers never wake
//! it per record: an idle writer polls the queue, every millisecond at first and less
//! often the longer it stays idle (up to `idle_poll`), and is woken only when the queue
//! passes half full, or by `flush` and `close`.
//!
//! A new connection carries one record frame until the kernel shows the agent read it:
//! every connection the agent reads from moves the stream forward by at least that
//! record, and one it never reads costs no more than that frame. When a connection
//! fails, what the agent was not seen to read is written again first on the next one.

mod connection;
mod outbox;
mod source;

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::config::Config;
use crate::encode::{Heartbeat, append_heartbeat};
use crate::link::{Lifecycle, Link};
use crate::notify::{Event, LossReason};
use crate::queue::Item;
use crate::record::Record;
use crate::spool::Spool;
use crate::stats::Counters;
use crate::time::unix_now;
use crate::transport::{Connection, Transport};
use connection::{AfterWrite, Current, Gone, Seen};
use outbox::{Chunk, Outbox, Read, WRITE_BYTES};
use source::{Source, Turn};

/// How many times an idle writer yields before it parks: records that arrive in a burst
/// are picked up without the producers paying for a wake-up.
const IDLE_YIELDS: u32 = 64;

/// How long a writer that just went idle parks before looking at the queue again.
const FIRST_POLL: Duration = Duration::from_millis(1);

/// While someone waits on the agent's reads (a new connection's first record, `flush`,
/// `close`), the writer looks again after this long at first, doubling up to
/// [`READ_WAIT_MAX`].
const READ_WAIT_MIN: Duration = Duration::from_micros(50);
const READ_WAIT_MAX: Duration = Duration::from_millis(1);

/// What the writer leaves when it stops.
#[derive(Default)]
pub(crate) struct Leftovers {
    /// The accepted records the agent was not seen to read (and the spool, if any, could
    /// not keep), in order.
    pub(crate) records: Vec<Record>,
    /// How many of this client's records among them, or among those the spool kept at
    /// close, were written to the connection and not seen read: an agent still reading
    /// may yet read them.
    pub(crate) written: u64,
}

pub(crate) struct Writer {
    link: Arc<Link>,
    config: Arc<Config>,
    rx: Receiver<Item>,
    outbox: Outbox,
    /// Where the outbox is filled from: the queue, or a spool in front of it.
    source: Source,
    current: Option<Current>,
    heartbeat: Heartbeat,
    next_heartbeat: Option<Instant>,
    /// Whether records came in since the writer last went idle.
    busy: bool,
    /// How long the idle writer parks now: from [`FIRST_POLL`] doubling to `idle_poll`.
    poll: Duration,
    /// How long a writer waiting on the agent's reads parks now.
    read_wait: Duration,
    /// Whether to write again after a failure what the agent was not seen to read.
    replay: bool,
}

impl Writer {
    pub(crate) fn new(
        link: Arc<Link>,
        config: Arc<Config>,
        rx: Receiver<Item>,
        spool: Option<Spool>,
    ) -> Self {
        let heartbeat = Heartbeat::current(
            config.service_tree_id.clone(),
            config.transport.destination(),
        );
        Writer {
            link,
            rx,
            outbox: Outbox::new(),
            current: None,
            heartbeat,
            next_heartbeat: None,
            busy: false,
            poll: FIRST_POLL,
            read_wait: READ_WAIT_MIN,
            // Frames read from the spool leave it only once delivered: with a spool, what
            // the agent did not read is always written again.
            replay: (config.replay_unread || spool.is_some())
                && matches!(
                    config.transport,
                    Transport::Unix(_) | Transport::AgentDir(_) | Transport::Tcp(_)
                ),
            source: Source::new(spool),
            config,
        }
    }

    /// Runs until the client stops; returns the accepted records the agent was not seen
    /// to read, in order.
    pub(crate) fn run(mut self) -> Leftovers {
        loop {
            let lifecycle = self.link.lifecycle();
            if lifecycle.stopping() {
                break;
            }
            let closing = lifecycle == Lifecycle::Draining;
            self.take_ready_connection();
            self.fill(closing);
            self.schedule_heartbeat();
            if self.current.is_none() && (self.outbox.has_output() || self.source.has_backlog()) {
                if (closing && self.all_done()) || !self.wait_for_connection() {
                    break;
                }
                continue;
            }
            if self.write_some() {
                continue;
            }
            // Nothing to write now.
            if closing && self.all_done() {
                break;
            }
            let someone_waits = self.probing() || self.outbox.has_markers() || closing;
            if (someone_waits || self.socket_full()) && self.outbox.unconfirmed() > 0 {
                self.wait_for_reads();
            } else {
                self.idle();
            }
        }
        self.finish()
    }

    /// Fills the outbox from the source (or moves records on towards it).
    fn fill(&mut self, closing: bool) {
        let busy = self.source.fill(Turn {
            rx: &self.rx,
            outbox: &mut self.outbox,
            link: &self.link,
            config: &self.config,
            connected: self.current.is_some(),
            closing,
        });
        self.busy |= busy;
    }

    /// Whether a closing writer is done: every record is delivered (or gone), or there
    /// is no connection and the source keeps what is left (the spool, at once).
    fn all_done(&self) -> bool {
        let delivered =
            self.outbox.is_empty() && self.rx.is_empty() && !self.source.holds_records();
        delivered || (self.current.is_none() && self.source.works_offline())
    }

    /// Takes a connection the supervisor made in the background, if there is one.
    fn take_ready_connection(&mut self) {
        if self.current.is_none() {
            let conn = self.link.take_ready();
            if let Some(conn) = conn {
                self.set_connection(conn);
            }
        }
    }

    fn set_connection(&mut self, conn: Connection) {
        self.current = Some(Current::new(conn));
        self.next_heartbeat = None;
    }

    /// No connection, and records to write: waits for the supervisor's next one, or
    /// (when the source keeps records moving meanwhile) asks for it and idles. False
    /// when the client stops first.
    fn wait_for_connection(&mut self) -> bool {
        if self.source.works_offline() {
            self.link.want_connection();
            self.idle();
            return true;
        }
        match self.link.await_connection() {
            Some(conn) => {
                self.set_connection(conn);
                true
            }
            None => false,
        }
    }

    /// Whether the socket had no room for the last write that did not wait.
    fn socket_full(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|c| c.full_since().is_some())
    }

    /// Whether the connection has yet to show the agent reading a record from it.
    fn probing(&self) -> bool {
        self.current.as_ref().is_some_and(Current::probing)
    }

    /// Queues the periodic heartbeat when it is due on a proven connection.
    fn schedule_heartbeat(&mut self) {
        if let Some(due) = self.next_heartbeat {
            if Instant::now() >= due {
                self.queue_heartbeat();
            }
        }
    }

    fn queue_heartbeat(&mut self) {
        let hb = &self.heartbeat;
        if !self.outbox.has_heartbeat()
            && !self
                .outbox
                .queue_heartbeat(|buf| append_heartbeat(buf, unix_now(), hb))
        {
            Counters::add(&self.link.counters.heartbeats_dropped, 1);
        }
        self.next_heartbeat = Some(crate::time::after(self.config.heartbeat_interval));
    }

    /// Writes the next chunk, if there is one to write now; false when there is not.
    fn write_some(&mut self) -> bool {
        let probing = self.probing();
        let Some(current) = self.current.as_mut() else {
            return false;
        };
        let Some(chunk) = self.outbox.next_chunk(probing) else {
            return false;
        };
        let (heartbeat, bytes) = match chunk {
            Chunk::Records(bytes) => (false, bytes),
            Chunk::Heartbeat(bytes) => (true, bytes),
        };
        let len = bytes.len();
        let result = if self.source.writes_wait() {
            // A spool given up mid-connection leaves no full socket behind it.
            current.room_found();
            current.conn.write(bytes)
        } else {
            // A full socket is no failure while the source keeps records moving: the
            // writer waits on the agent's reads instead, for up to the write timeout.
            let result = current.conn.write_nowait(bytes);
            let full = matches!(&result, Err(e) if e.kind() == io::ErrorKind::WouldBlock);
            match current.on_room(full, Instant::now()) {
                Some(since) if since.elapsed() < self.config.write_timeout => return false,
                Some(_) => {
                    let timeout = self.config.write_timeout;
                    self.fail_write(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("write timed out after {timeout:?}"),
                    ));
                    return true;
                }
                None => result,
            }
        };
        match result {
            Ok(0) => self.drop_connection(Gone::Failed(io::Error::new(
                io::ErrorKind::WriteZero,
                "the socket accepted no bytes",
            ))),
            Ok(n) => self.on_written(heartbeat, n, len),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => self.fail_write(e),
        }
        true
    }

    /// A write failed. First learns what the agent read, so only the rest is written
    /// again (unless the error itself says the agent left with bytes unread); a write
    /// refused after the agent left having read everything is the agent's leaving, not a
    /// failure.
    fn fail_write(&mut self, e: io::Error) {
        let gone = if e.kind() == io::ErrorKind::ConnectionReset {
            if let Some(current) = self.current.as_mut() {
                current.on_reset();
            }
            Gone::Failed(e)
        } else {
            match self.learn_reads() {
                Err(Gone::Left) => Gone::Left,
                _ => Gone::Failed(e),
            }
        };
        self.drop_connection(gone);
    }

    /// `n` of the `len` bytes of a chunk were handed to the kernel.
    fn on_written(&mut self, heartbeat: bool, n: usize, len: usize) {
        let counters = &self.link.counters;
        let wrote = self.outbox.on_written(heartbeat, n);
        Counters::add(&counters.bytes_written, n as u64);
        Counters::add(&counters.writes, 1);
        if wrote.heartbeat {
            Counters::add(&counters.heartbeats_sent, 1);
        }
        Counters::add(&counters.written, wrote.records as u64);
        self.read_wait = READ_WAIT_MIN;
        let Some(current) = self.current.as_mut() else {
            return;
        };
        // Every record frame counts towards the next look at the agent's reads, an
        // earlier client's spooled ones too: the outbox keeps them until they are read.
        match current.on_written(wrote.frames, n, len) {
            AfterWrite::Nothing => {}
            AfterWrite::ConfirmAll => self.confirm(0),
            AfterWrite::CheckReads => self.check_reads(),
        }
    }

    /// Asks the kernel what the agent has read and confirms it; a connection found closed
    /// is dropped, so what it left unread is written again on the next one.
    fn check_reads(&mut self) {
        if let Err(gone) = self.learn_reads() {
            self.drop_connection(gone);
        }
    }

    /// Confirms what the kernel says the agent has read; how the connection ended when
    /// it turns out to be closed.
    fn learn_reads(&mut self) -> Result<(), Gone> {
        let Some(current) = self.current.as_mut() else {
            return Ok(());
        };
        let peer = current.conn.peer();
        match current.on_peer(peer) {
            None => {
                self.confirm(0);
                Ok(())
            }
            Some(Seen::Unread(unread)) => {
                self.confirm(unread);
                Ok(())
            }
            // Everything written was read: the agent left, nothing failed.
            Some(Seen::Closed { unread: 0 }) => {
                self.confirm(0);
                Err(Gone::Left)
            }
            Some(Seen::Closed { unread }) => {
                self.confirm(unread);
                Err(Gone::Failed(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!("the agent closed the connection with {unread} bytes unread"),
                )))
            }
            Some(Seen::Reset) => Err(Gone::Failed(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the agent closed the connection with records unread",
            ))),
        }
    }

    /// The agent has `unread` bytes of the stream left: what lies before them is
    /// delivered. The first record read proves the connection.
    fn confirm(&mut self, unread: usize) {
        let read = self.outbox.on_read(unread);
        if read == Read::default() {
            return;
        }
        Counters::add(&self.link.counters.delivered, read.records as u64);
        Counters::add(&self.link.counters.spool_replayed, read.inherited as u64);
        self.source.on_delivered(read, &self.link);
        self.outbox.settle_markers();
        self.read_wait = READ_WAIT_MIN;
        let proved = self.current.as_mut().is_some_and(Current::on_read);
        if proved {
            // A failure of this connection is not a crash loop: reconnect at once.
            self.link.mark_healthy();
            // The heartbeat is the connection's second frame.
            self.queue_heartbeat();
        }
    }

    /// Waits a little for the agent to read, then looks. A new connection whose first
    /// record goes unread for the write timeout is given up like a write that timed out.
    fn wait_for_reads(&mut self) {
        self.link.room.wake_if_waiting();
        // Parks even with records queued when it cannot take them now: a new connection
        // waiting for its first record to be read must not spin on a full outbox.
        if self.socket_full() {
            // The agent's next read makes room: wake for it, not after a fixed slice.
            if let Some(current) = &self.current {
                current.conn.wait_writable(self.read_wait);
            }
        } else if self.rx.is_empty() || self.outbox.planned_bytes() >= WRITE_BYTES {
            thread::park_timeout(self.read_wait);
        }
        self.read_wait = (self.read_wait * 2).min(READ_WAIT_MAX);
        self.check_reads();
        let stalled = self
            .current
            .as_ref()
            .and_then(Current::probe_written)
            .is_some_and(|at| at.elapsed() >= self.config.write_timeout);
        if stalled {
            self.drop_connection(Gone::Failed(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the agent read nothing of a new connection for {:?}",
                    self.config.write_timeout
                ),
            )));
        }
    }

    /// The connection is over, failed or left by the agent: what the agent was not seen
    /// to read goes back to be written first on the next connection, which the
    /// supervisor is asked for.
    fn drop_connection(&mut self, gone: Gone) {
        let failed = match gone {
            Gone::Failed(e) if e.kind() == io::ErrorKind::WouldBlock => Some((
                io::ErrorKind::TimedOut,
                format!("write timed out after {:?}", self.config.write_timeout),
            )),
            Gone::Failed(e) => Some((e.kind(), e.to_string())),
            Gone::Left => None,
        };
        if failed.is_some() {
            Counters::add(&self.link.counters.write_errors, 1);
        }
        // A failure of our own making (close cutting the socket off at its deadline)
        // leaves the records where they are: `finish` hands back what was not read.
        if self.link.lifecycle().stopping() {
            return;
        }
        let failure = self
            .outbox
            .on_failure(self.replay, &self.config.service_tree_id);
        let counters = &self.link.counters;
        if failure.cut_frame {
            Counters::add(&counters.retried, 1);
        }
        if failure.heartbeat_dropped {
            Counters::add(&counters.heartbeats_dropped, 1);
        }
        let unconfirmed = failure.unconfirmed as u64;
        // Written no more: back to pending, or lost without the replay.
        Counters::sub(&counters.written, unconfirmed);
        if self.replay {
            Counters::add(&counters.replayed, unconfirmed);
        } else if unconfirmed > 0 {
            self.link.lose(unconfirmed, LossReason::NotRead);
            self.outbox.settle_markers();
        }
        let pending_records = self.outbox.unwritten();
        self.link.notifier.publish(match failed {
            Some((kind, error)) => Event::WriteFailed {
                kind,
                error,
                pending_records,
            },
            None => Event::AgentLeft { pending_records },
        });
        self.next_heartbeat = None;
        if let Some(current) = self.current.take() {
            self.link.close_broken(current.conn);
        }
        self.link.want_connection();
    }

    /// Nothing to write: wait a little for more, without asking producers to wake us.
    fn idle(&mut self) {
        // Right after work, records often come in bursts: look again a few times before
        // parking. A writer that has been idle for a while just parks.
        // Records that must wait (behind the spool, or for a connection) are no reason
        // to stay awake.
        let blocked = self.source.queue_waits(self.current.is_some());
        if std::mem::take(&mut self.busy) {
            self.poll = FIRST_POLL.min(self.config.idle_poll);
            for _ in 0..IDLE_YIELDS {
                if !self.rx.is_empty() && !blocked {
                    return;
                }
                thread::yield_now();
            }
        } else {
            // The longer the quiet, the rarer the look: idle CPU stays near zero, and a
            // record waits at most `idle_poll`.
            self.poll = (self.poll * 2).min(self.config.idle_poll);
        }
        if self.current.is_some() {
            // Also finds an agent that went away while nothing was being written, so its
            // leaving is told as it happens and the next record finds a new connection.
            self.check_reads();
        }
        self.link.room.wake_if_waiting();
        let mut timeout = self.poll;
        if let Some(due) = self.next_heartbeat {
            timeout = timeout.min(due.saturating_duration_since(Instant::now()));
        }
        self.link.writer_parked.store(true, Ordering::SeqCst);
        if self.rx.is_empty() || blocked {
            thread::park_timeout(timeout);
        }
        self.link.writer_parked.store(false, Ordering::SeqCst);
    }

    /// Leaves the loop: looks one last time at what the agent read, lets the connection
    /// go, and returns every record not confirmed read.
    fn finish(mut self) -> Leftovers {
        if self.current.is_some() {
            let _closed = self.learn_reads();
        }
        if self.outbox.has_heartbeat() {
            Counters::add(&self.link.counters.heartbeats_dropped, 1);
        }
        // Closed off this thread, like broken connections: a close that hangs (a bad
        // host-mounted socket) must not hold up `close`, which joins this thread. No new
        // connection is asked for; one the supervisor made and nobody took, it lets go
        // of itself as it stops.
        let active = self.link.stop_wanting();
        if let Some(current) = self.current.take() {
            self.link.close_in_background(current.conn, active);
        }
        self.link.room.wake_all();
        let written = self.outbox.written_own() as u64;
        // Handed back or kept in the spool, so written no more.
        Counters::sub(&self.link.counters.written, written);
        let records = self.source.keep_leftovers(Turn {
            rx: &self.rx,
            outbox: &mut self.outbox,
            link: &self.link,
            config: &self.config,
            connected: false,
            closing: true,
        });
        Leftovers { records, written }
    }
}
