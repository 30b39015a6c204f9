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

mod outbox;
mod reads;
mod spill;

use std::io;
use std::sync::Arc;
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
use crate::transport::{Connection, Peer, Transport};
use outbox::{Chunk, Outbox, WRITE_BYTES};
use spill::Spill;

/// How many times an idle writer yields before it parks: records that arrive in a burst
/// are picked up without the producers paying for a wake-up.
const IDLE_YIELDS: u32 = 64;

/// How long a writer that just went idle parks before looking at the queue again.
const FIRST_POLL: Duration = Duration::from_millis(1);

/// How often, in records written, a busy writer asks the kernel what the agent has read:
/// each check is two syscalls, so the stream's unconfirmed tail is trimmed in batches.
const READ_CHECK_EVERY: usize = 512;

/// While someone waits on the agent's reads (a new connection's first record, `flush`,
/// `close`), the writer looks again after this long at first, doubling up to
/// [`READ_WAIT_MAX`].
const READ_WAIT_MIN: Duration = Duration::from_micros(50);
const READ_WAIT_MAX: Duration = Duration::from_millis(1);

/// How a connection ended.
enum Gone {
    /// The agent closed it after reading everything written to it.
    Left,
    /// A write or the kernel said it failed.
    Failed(io::Error),
}

/// The connection in use, and what the writer knows of it.
struct Current {
    conn: Connection,
    /// The agent was seen reading a record from it.
    proven: bool,
    /// The kernel cannot say what the agent read: records count as read once written.
    confirm_on_write: bool,
    /// When its first record frame was completely written, while that is unconfirmed.
    probe_written: Option<Instant>,
    /// Records written since the last look at the agent's reads.
    since_check: usize,
    /// A write returned short since the agent was last seen alive: a blocked write that
    /// the agent's leaving woke takes (and clears) the reset it left.
    short_write: bool,
    /// The agent was seen to leave with bytes unread: nothing more is confirmed on this
    /// connection, however clean it looks afterwards.
    reset: bool,
    /// With a spool, writes do not wait for room in the socket (records go to disk
    /// meanwhile): since when the socket has been full.
    full_since: Option<Instant>,
}

pub(crate) struct Writer {
    link: Arc<Link>,
    config: Arc<Config>,
    rx: Receiver<Item>,
    outbox: Outbox,
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
    /// The spool, when the client has one (and it has not been given up).
    spill: Option<Spill>,
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
            spill: spool.map(Spill::new),
            config,
        }
    }

    fn counters(&self) -> &Counters {
        &self.link.counters
    }

    /// Runs until the client stops; returns the accepted records the agent was not seen
    /// to read, in order.
    pub(crate) fn run(mut self) -> Vec<Record> {
        loop {
            let lifecycle = self.link.lifecycle();
            if lifecycle.stopping() {
                break;
            }
            self.take_ready_connection();
            if self.spill.is_some() {
                self.tick_spool();
                if self.spilling(lifecycle == Lifecycle::Draining) {
                    self.spill_queue();
                } else if !self.queue_waits() {
                    self.take_from_queue();
                }
                if self.current.is_some() {
                    self.refill_from_spool();
                }
            } else {
                self.take_from_queue();
            }
            self.schedule_heartbeat();
            if self.current.is_none() && (self.outbox.has_output() || self.spool_ahead()) {
                if self.spill.is_some() {
                    // Spilling goes on while the supervisor connects.
                    self.want_connection();
                    self.idle();
                } else if !self.await_connection() {
                    break;
                }
                continue;
            }
            if self.write_some() {
                continue;
            }
            // Nothing to write now.
            let draining = lifecycle == Lifecycle::Draining;
            if draining
                && self.outbox.is_empty()
                && self.rx.is_empty()
                && !self.spool_holds_records()
            {
                break;
            }
            let someone_waits =
                self.probing() || self.outbox.has_markers() || draining || self.socket_full();
            if someone_waits && self.outbox.unconfirmed() > 0 {
                self.wait_for_reads();
            } else {
                self.idle();
            }
        }
        self.finish()
    }

    /// Takes queued records into the outbox until it holds a write's worth, and encodes
    /// them. Records are taken first, a batch at a time, and encoded after: each arrives
    /// from the producers' cores in cache lines the writer must fetch, and in a tight
    /// loop of takes those fetches overlap instead of waiting on encoding.
    fn take_from_queue(&mut self) {
        self.outbox.compact();
        loop {
            let mut flush = None;
            let mut took = false;
            while self.outbox.planned_bytes() < WRITE_BYTES {
                match self.rx.try_recv() {
                    Ok(Item::Record(ts, size_bound, record)) => {
                        self.outbox.take(ts, size_bound, record);
                        took = true;
                    }
                    Ok(Item::Flush(signal)) => {
                        flush = Some(signal);
                        break;
                    }
                    Err(_) => break,
                }
            }
            // Producers waiting for room are woken once the queue is down to half: looked
            // at once per batch taken.
            self.link.room.taken(|| self.rx.len());
            if took {
                self.busy = true;
                let lost = self.outbox.encode(&self.config.service_tree_id);
                if lost > 0 {
                    self.lose(lost, LossReason::Unencodable);
                    self.outbox.settle_markers();
                }
            }
            match flush {
                Some(signal) => self.outbox.mark(signal),
                None => return,
            }
        }
    }

    fn lose(&self, count: u64, reason: LossReason) {
        Counters::add(&self.counters().lost, count);
        self.link
            .notifier
            .publish(Event::RecordsLost { count, reason });
    }

    /// Takes a connection the supervisor made in the background, if there is one.
    fn take_ready_connection(&mut self) {
        if self.current.is_none() {
            let mut st = self.link.lock();
            if let Some(conn) = st.ready.take() {
                st.want = false;
                st.active = conn.shutdown_handle();
                drop(st);
                self.set_connection(conn);
            }
        }
    }

    fn set_connection(&mut self, conn: Connection) {
        self.current = Some(Current {
            confirm_on_write: matches!(conn.peer(), Peer::Unknown),
            conn,
            proven: false,
            probe_written: None,
            since_check: 0,
            short_write: false,
            reset: false,
            full_since: None,
        });
        self.next_heartbeat = None;
    }

    /// Asks the supervisor for a connection, without waiting for it.
    fn want_connection(&self) {
        let mut st = self.link.lock();
        if !st.want && st.ready.is_none() {
            st.want = true;
            self.link.cond.notify_all();
        }
    }

    /// Waits for the supervisor's next connection; false when the client stops first.
    fn await_connection(&mut self) -> bool {
        let mut st = self.link.lock();
        st.want = true;
        self.link.cond.notify_all();
        loop {
            if st.lifecycle.stopping() {
                return false;
            }
            if let Some(conn) = st.ready.take() {
                st.want = false;
                st.active = conn.shutdown_handle();
                drop(st);
                self.set_connection(conn);
                return true;
            }
            self.link.cond.wait(&mut st);
        }
    }

    /// Whether the socket had no room for the last write (only with a spool).
    fn socket_full(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|c| c.full_since.is_some())
    }

    /// Whether the connection has yet to show the agent reading a record from it.
    fn probing(&self) -> bool {
        self.current.as_ref().is_some_and(|c| !c.proven)
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
            Counters::add(&self.counters().heartbeats_dropped, 1);
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
        // With a spool, the writer spills while the agent catches up instead of waiting
        // in the kernel; a socket full for the write timeout fails as a blocked write
        // would.
        let nowait = self.spill.is_some();
        let result = if nowait {
            current.conn.write_nowait(bytes)
        } else {
            current.conn.write(bytes)
        };
        if matches!(result, Ok(n) if n < bytes.len()) {
            current.short_write = true;
        }
        match &result {
            Err(e) if nowait && e.kind() == io::ErrorKind::WouldBlock => {
                let since = *current.full_since.get_or_insert_with(Instant::now);
                if since.elapsed() < self.config.write_timeout {
                    return false;
                }
            }
            _ => current.full_since = None,
        }
        match result {
            Ok(0) => self.fail(io::Error::new(
                io::ErrorKind::WriteZero,
                "the socket accepted no bytes",
            )),
            Ok(n) => self.on_written(heartbeat, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // First learn what the agent read, so only the rest is written again
                // (unless the error itself says the agent left with bytes unread).
                // A write refused after the agent left having read everything is the
                // agent's leaving, not a failure.
                let gone = if e.kind() == io::ErrorKind::ConnectionReset {
                    if let Some(current) = self.current.as_mut() {
                        current.reset = true;
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
        }
        true
    }

    fn on_written(&mut self, heartbeat: bool, n: usize) {
        let counters = &self.link.counters;
        Counters::add(&counters.bytes_written, n as u64);
        Counters::add(&counters.writes, 1);
        let (records, heartbeat_done) = self.outbox.on_written(heartbeat, n);
        if heartbeat_done {
            Counters::add(&counters.heartbeats_sent, 1);
        }
        Counters::add(&counters.written, records as u64);
        self.read_wait = READ_WAIT_MIN;
        let Some(current) = self.current.as_mut() else {
            return;
        };
        if current.confirm_on_write {
            self.confirm(0);
        } else if records > 0 {
            if !current.proven {
                current.probe_written = Some(Instant::now());
            }
            current.since_check += records;
            if current.since_check >= READ_CHECK_EVERY {
                self.check_reads();
            }
        }
    }

    /// The connection failed: what the agent was not seen to read goes back to be
    /// written first on the next connection, which the supervisor is asked for.
    fn fail(&mut self, e: io::Error) {
        self.drop_connection(Gone::Failed(e));
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
            Counters::add(&self.counters().write_errors, 1);
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
            self.lose(unconfirmed, LossReason::NotRead);
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
            self.link.retire(current.conn);
        }
        let mut st = self.link.lock();
        st.want = true;
        self.link.cond.notify_all();
    }

    /// Nothing to write: wait a little for more, without asking producers to wake us.
    fn idle(&mut self) {
        // Right after work, records often come in bursts: look again a few times before
        // parking. A writer that has been idle for a while just parks.
        // Records that must wait (behind the spool, or for a connection) are no reason
        // to stay awake.
        let blocked = self.queue_waits();
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
        self.link
            .writer_parked
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if self.rx.is_empty() || blocked {
            thread::park_timeout(timeout);
        }
        self.link
            .writer_parked
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Leaves the loop: looks one last time at what the agent read, lets the connection
    /// go, and returns every record not confirmed read.
    fn finish(mut self) -> Vec<Record> {
        if self.current.is_some() {
            let _closed = self.learn_reads();
        }
        if self.outbox.has_heartbeat() {
            Counters::add(&self.counters().heartbeats_dropped, 1);
        }
        // Closed off this thread, like broken connections: a close that hangs (a bad
        // host-mounted socket) must not hold up `close`, which joins this thread. No new
        // connection is asked for; one the supervisor made and nobody took, it lets go
        // of itself as it stops.
        let active = {
            let mut st = self.link.lock();
            st.want = false;
            st.active.take()
        };
        if let Some(current) = self.current.take() {
            self.link.let_go(current.conn, active);
        }
        self.link.room.wake_all();
        let unsent = self.outbox.take_unsent();
        // Handed back or kept in the spool, so written no more.
        Counters::sub(&self.link.counters.written, unsent.written as u64);
        self.spool_leftovers(unsent)
    }
}
