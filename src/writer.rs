//! The writer thread: takes records off the queue, encodes them back to back into one
//! reused buffer, and writes that buffer to the socket.
//!
//! An idle writer writes each record at once; a busy one takes whatever is queued, up to
//! [`BATCH_BYTES`] of frames, encodes it into the buffer and makes one syscall for all of
//! it. Producers never wake it per record: an idle writer polls the queue, every
//! millisecond at first and less often the longer it stays idle (up to `idle_poll`), and
//! is woken only when the queue passes half full, or by `flush` and `close`.
//!
//! When a write fails, the frames not yet completely written stay in the buffer, in
//! order; the writer hands the broken connection to the supervisor's closer, waits for a
//! new connection, and writes them first. Nothing is re-queued, reordered or dropped.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crossbeam_channel::Receiver;

use crate::config::Config;
use crate::encode::{Batch, Heartbeat, append_heartbeat, append_record, append_record_in};
use crate::link::Link;
use crate::notify::{Event, LossReason};
use crate::queue::{FlushSignal, Item};
use crate::record::Record;
use crate::stats::Counters;
use crate::time::unix_now;
use crate::transport::{Connection, Transport, Unread};

/// The buffer size past which the writer stops taking records and writes.
pub(crate) const BATCH_BYTES: usize = 64 * 1024;

/// How many times an idle writer yields before it parks: records that arrive in a burst
/// are picked up without the producers paying for a wake-up.
const IDLE_YIELDS: u32 = 64;

/// How long a writer that just went idle parks before looking at the queue again.
const FIRST_POLL: std::time::Duration = std::time::Duration::from_millis(1);

/// A record on its way to the agent: first a frame in the buffer not yet completely
/// written; then, with the replay on, part of the unread tail until the agent has read it.
struct Frame {
    /// Where the frame lies in `buf` (stale once written; a replay encodes it anew).
    start: usize,
    end: usize,
    /// Where the frame ends in the connection's byte stream, once written.
    stream_end: u64,
    ts: i64,
    record: Record,
}

/// How many records the unread tail may gather before the writer asks the kernel how much
/// the agent has read (one `ioctl` and one `recv` per check: checking every 64 records
/// cost about a tenth of the pipeline's throughput on this project's VM).
const UNREAD_CHECK_EVERY: usize = 512;

pub(crate) struct Writer {
    shared: Arc<Link>,
    config: Arc<Config>,
    rx: Receiver<Item>,
    buf: Batch,
    /// Bytes of `buf` already handed to the socket.
    sent: usize,
    /// The records in flight, in order: first the unread tail (`tail` records written on
    /// this connection that the agent may not have read), then the frames in `buf` not
    /// yet completely written. One deque, so a record is never moved between the two.
    frames: VecDeque<Frame>,
    tail: usize,
    /// The tail's length at the last check of what the agent has read.
    checked_at: usize,
    /// Flush signals and the buffer offset they wait for.
    flushes: Vec<(usize, Arc<FlushSignal>)>,
    conn: Option<Connection>,
    /// Whether a record has been written on this connection (the first one is followed
    /// by a heartbeat).
    conn_has_record: bool,
    heartbeat: Heartbeat,
    /// A heartbeat frame waiting to be written between two record frames.
    hb_buf: Batch,
    hb_sent: usize,
    next_heartbeat: Option<Instant>,
    /// Whether records came in since the writer last went idle.
    busy: bool,
    /// How long the idle writer parks now: from [`FIRST_POLL`] doubling to `idle_poll`.
    poll: std::time::Duration,
    /// Whether to keep the unread tail and replay it after a failure.
    replay: bool,
    /// Bytes handed to this connection so far.
    conn_written: u64,
    /// Whether the kernel has shown the agent reading from this connection.
    agent_reads: bool,
    /// Where a replay is assembled before it replaces `buf`.
    scratch: Batch,
    /// A record taken off the queue that could have taken the buffer past
    /// [`BATCH_BYTES`]: it starts the next batch, so each write fits one 64 KiB read of
    /// the agent's. (Writes just past 64 KiB cost a reader with a 64 KiB buffer a second,
    /// small read each: 1.55 reads per write against 1.0, counted with strace.)
    carry: Option<Frame>,
}

impl Writer {
    pub(crate) fn new(shared: Arc<Link>, config: Arc<Config>, rx: Receiver<Item>) -> Self {
        let heartbeat = Heartbeat::current(
            config.service_tree_id.clone(),
            config.transport.destination(),
        );
        Writer {
            shared,
            rx,
            buf: Batch::with_capacity(BATCH_BYTES * 2),
            sent: 0,
            frames: VecDeque::with_capacity(2048),
            tail: 0,
            checked_at: 0,
            flushes: Vec::new(),
            conn: None,
            conn_has_record: false,
            heartbeat,
            hb_buf: Batch::with_capacity(256),
            hb_sent: 0,
            next_heartbeat: None,
            busy: false,
            poll: FIRST_POLL,
            // SIOCOUTQ on sockets is Linux's.
            replay: cfg!(target_os = "linux")
                && config.replay_unread
                && matches!(config.transport, Transport::Unix(_) | Transport::Tcp(_)),
            conn_written: 0,
            agent_reads: false,
            scratch: Batch::with_capacity(BATCH_BYTES * 2),
            carry: None,
            config,
        }
    }

    /// Runs until the client stops; returns the accepted records it could not write.
    pub(crate) fn run(mut self) -> Vec<Record> {
        loop {
            let (draining, stop) = {
                let st = self.shared.lock();
                (st.draining, st.stop)
            };
            if stop {
                break;
            }
            self.fill();
            self.take_ready_connection();
            self.schedule_heartbeat();
            if !self.has_output() {
                self.finish_flushes();
                if draining {
                    if self.rx.is_empty() {
                        break;
                    }
                    continue;
                }
                self.idle();
                continue;
            }
            if self.conn.is_none() && !self.await_connection() {
                break;
            }
            self.write_some();
        }
        self.finish()
    }

    /// Moves queued records into the buffer until the next one could take it past
    /// [`BATCH_BYTES`] (that one is kept in `carry` and starts the next batch) or the
    /// queue is empty.
    ///
    /// Records are taken off the queue first, a batch at a time, and encoded after: each
    /// arrives from the producers' cores in cache lines the writer must fetch, and in a
    /// tight loop of takes those fetches overlap instead of waiting on encoding.
    fn fill(&mut self) {
        loop {
            let first = self.frames.len();
            let mut planned = self.buf.as_slice().len();
            let mut flush = None;
            // Until encoded, a frame's `end` holds the room the producer measured.
            let fits = |planned: usize, room: usize| {
                planned == 0 || planned.saturating_add(room) <= BATCH_BYTES
            };
            if let Some(carried) = self.carry.take() {
                if fits(planned, carried.end) {
                    planned = planned.saturating_add(carried.end);
                    self.frames.push_back(carried);
                } else {
                    self.carry = Some(carried);
                }
            }
            // Each record goes from the queue straight into `frames`: a `Frame` built
            // first and pushed after was one more copy of the record (callgrind).
            while self.carry.is_none() {
                match self.rx.try_recv() {
                    Ok(Item::Record(ts, room, record)) => {
                        let frame = Frame {
                            start: 0,
                            end: room,
                            stream_end: 0,
                            ts,
                            record,
                        };
                        if fits(planned, room) {
                            planned = planned.saturating_add(room);
                            self.frames.push_back(frame);
                        } else {
                            self.carry = Some(frame);
                        }
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
            self.shared.room.taken(|| self.rx.len());
            let took = self.frames.len() > first;
            self.encode_from(first);
            if let Some(signal) = flush {
                let at = self.buf.as_slice().len();
                self.flushes.push((at, signal));
            } else if !took || self.carry.is_none() {
                // The queue is empty, or the carried record does not fit even by the
                // batch's actual length.
                return;
            }
        }
    }

    /// Encodes the frames from `first` on, just taken off the queue, at the end of the
    /// buffer.
    fn encode_from(&mut self, first: usize) {
        let mut i = first;
        while let Some(f) = self.frames.get_mut(i) {
            self.busy = true;
            let start = self.buf.as_slice().len();
            let sti = &self.config.service_tree_id;
            if append_record_in(&mut self.buf, f.end, sti, f.ts, &f.record) {
                f.start = start;
                f.end = self.buf.as_slice().len();
                i += 1;
            } else {
                drop(self.frames.remove(i));
                Counters::add(&self.shared.counters.lost, 1);
                self.shared.notifier.publish(Event::RecordsLost {
                    count: 1,
                    reason: LossReason::Unencodable,
                });
            }
        }
    }

    fn has_output(&self) -> bool {
        self.sent < self.buf.as_slice().len() || self.hb_sent < self.hb_buf.as_slice().len()
    }

    /// Takes a connection the supervisor made in the background, if there is one.
    fn take_ready_connection(&mut self) {
        if self.conn.is_none() {
            let mut st = self.shared.lock();
            if let Some(conn) = st.ready.take() {
                st.want = false;
                st.active = conn.shutdown_handle();
                drop(st);
                self.set_connection(conn);
            }
        }
    }

    fn set_connection(&mut self, conn: Connection) {
        self.conn = Some(conn);
        self.conn_written = 0;
        self.agent_reads = false;
        self.conn_has_record = false;
        self.next_heartbeat = None;
    }

    /// Waits for the supervisor's next connection; false when the client stops first.
    fn await_connection(&mut self) -> bool {
        let mut st = self.shared.lock();
        st.want = true;
        self.shared.cond.notify_all();
        loop {
            if st.stop {
                return false;
            }
            if let Some(conn) = st.ready.take() {
                st.want = false;
                st.active = conn.shutdown_handle();
                drop(st);
                self.set_connection(conn);
                return true;
            }
            self.shared.cond.wait(&mut st);
        }
    }

    /// Queues the periodic heartbeat when it is due and the connection is up.
    fn schedule_heartbeat(&mut self) {
        if let (Some(due), Some(_)) = (self.next_heartbeat, &self.conn) {
            if Instant::now() >= due && self.hb_buf.as_slice().is_empty() {
                self.queue_heartbeat();
            }
        }
    }

    fn queue_heartbeat(&mut self) {
        self.hb_buf.clear();
        self.hb_sent = 0;
        if !append_heartbeat(&mut self.hb_buf, unix_now(), &self.heartbeat) {
            Counters::add(&self.shared.counters.heartbeats_dropped, 1);
        }
        self.next_heartbeat = Some(crate::time::after(self.config.heartbeat_interval));
    }

    /// Whether the socket stands between two record frames, where a heartbeat may go.
    fn at_frame_boundary(&self) -> bool {
        self.pending_front().is_none_or(|f| f.start == self.sent)
    }

    fn write_some(&mut self) {
        let hb_pending = self.hb_sent < self.hb_buf.as_slice().len();
        let write_heartbeat = hb_pending && (self.hb_sent > 0 || self.at_frame_boundary());
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let result = if write_heartbeat {
            conn.write(&self.hb_buf.as_slice()[self.hb_sent..])
                .map(|n| (n, true))
        } else {
            // Until a record has gone through on this connection, write only the first
            // frame, so the heartbeat that follows it is the connection's second frame.
            let end = match self.frames.get(self.tail) {
                Some(f) if !self.conn_has_record => f.end,
                _ => self.buf.as_slice().len(),
            };
            conn.write(&self.buf.as_slice()[self.sent..end])
                .map(|n| (n, false))
        };
        match result {
            Ok((0, _)) => self.fail(io::Error::new(
                io::ErrorKind::WriteZero,
                "the socket accepted no bytes",
            )),
            Ok((n, heartbeat)) => {
                Counters::add(&self.shared.counters.bytes_written, n as u64);
                Counters::add(&self.shared.counters.writes, 1);
                self.conn_written += n as u64;
                if heartbeat {
                    self.hb_sent += n;
                    if self.hb_sent == self.hb_buf.as_slice().len() {
                        Counters::add(&self.shared.counters.heartbeats_sent, 1);
                        self.hb_buf.clear();
                        self.hb_sent = 0;
                    }
                } else {
                    self.sent += n;
                    self.complete_frames();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => self.fail(e),
        }
    }

    /// The first frame not yet completely written.
    fn pending_front(&self) -> Option<&Frame> {
        self.frames.get(self.tail)
    }

    /// Retires the frames the socket now has completely: into the unread tail with the
    /// replay on, dropped without it.
    fn complete_frames(&mut self) {
        let (sent, conn_written) = (self.sent, self.conn_written);
        let mut done = 0usize;
        for f in self.frames.range_mut(self.tail..) {
            if f.end > sent {
                break;
            }
            // `sent` is where the connection's stream stands now.
            f.stream_end = conn_written - (sent - f.end) as u64;
            done += 1;
        }
        if self.replay {
            self.tail += done;
        } else {
            // Dropped in place: no record is moved out just to be dropped.
            self.frames.drain(..done);
        }
        if done > 0 {
            Counters::add(&self.shared.counters.written, done as u64);
            if !self.conn_has_record {
                self.conn_has_record = true;
                self.queue_heartbeat();
            }
        }
        if self.sent == self.buf.as_slice().len() {
            self.buf.clear();
            self.sent = 0;
            self.finish_flushes();
        } else {
            let sent = self.sent;
            self.flushes.retain(|(at, signal)| {
                let reached = *at <= sent;
                if reached {
                    signal.set();
                }
                !reached
            });
        }
        // Last: a closed peer found here fails the connection and replays the tail.
        if self.tail >= self.checked_at + UNREAD_CHECK_EVERY {
            self.forget_read();
        }
    }

    /// Drops from the unread tail what the agent has read: everything but the last
    /// `SIOCOUTQ` bytes written on this connection.
    ///
    /// A peer found closed fails the connection at once, so the tail is replayed on the
    /// next one even when no write is coming to discover the failure. Where the kernel
    /// cannot tell, the tail cannot be protected: it is let go and the replay is off.
    fn forget_read(&mut self) {
        let Some(unread) = self.conn.as_ref().map(Connection::unread) else {
            return;
        };
        match unread {
            Unread::Bytes(unread) => self.trim_read(unread),
            Unread::PeerClosed => self.fail(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the agent closed the connection",
            )),
            Unread::Unknown => {
                self.frames.drain(..self.tail);
                self.tail = 0;
                self.replay = false;
            }
        }
        self.checked_at = self.tail;
    }

    /// Drops the tail's records that lie before the last `unread` bytes of the stream.
    fn trim_read(&mut self, unread: usize) {
        let read = self.conn_written.saturating_sub(unread as u64);
        if read > 0 && !self.agent_reads {
            // The agent reads this connection: a later failure is not a crash loop.
            self.agent_reads = true;
            self.shared.lock().healthy = true;
        }
        let known_read = self
            .frames
            .range(..self.tail)
            .take_while(|f| f.stream_end <= read)
            .count();
        self.frames.drain(..known_read);
        self.tail -= known_read;
    }

    /// After a failure: the unread tail is encoded again in front of the pending frames,
    /// to be written first on the next connection.
    fn replay_unread(&mut self) {
        let n = self.tail;
        if n == 0 {
            return;
        }
        self.scratch.clear();
        for f in self.frames.iter_mut().take(n) {
            f.start = self.scratch.as_slice().len();
            // Encoding is deterministic, and each of these records was encoded before.
            let _written = append_record(
                &mut self.scratch,
                &self.config.service_tree_id,
                f.ts,
                &f.record,
            );
            f.end = self.scratch.as_slice().len();
        }
        // The pending frames follow, shifted to their new place.
        let replay_len = self.scratch.as_slice().len();
        let sent = self.sent;
        self.scratch
            .extend_from_slice(self.buf.as_slice().get(sent..).unwrap_or_default());
        let shift = |at: usize| at.max(sent) - sent + replay_len;
        for f in self.frames.iter_mut().skip(n) {
            f.start = shift(f.start);
            f.end = shift(f.end);
        }
        for (at, _) in &mut self.flushes {
            *at = shift(*at);
        }
        std::mem::swap(&mut self.buf, &mut self.scratch);
        self.sent = 0;
        Counters::add(&self.shared.counters.replayed, n as u64);
        self.tail_back_to_pending();
    }

    /// The unread tail becomes pending again: `written` counts its records once more
    /// only when they are written again (or never, when they are handed back).
    fn tail_back_to_pending(&mut self) {
        self.shared
            .counters
            .written
            .fetch_sub(self.tail as u64, std::sync::atomic::Ordering::Relaxed);
        self.tail = 0;
        self.checked_at = 0;
    }

    /// Signals every flush whose records are all written.
    fn finish_flushes(&mut self) {
        if !self.has_record_output() {
            for (_, signal) in self.flushes.drain(..) {
                signal.set();
            }
        }
    }

    fn has_record_output(&self) -> bool {
        self.sent < self.buf.as_slice().len()
    }

    /// A write failed: keep the unwritten frames for the next connection, starting at
    /// the first frame not completely written, and let the supervisor reconnect.
    fn fail(&mut self, e: io::Error) {
        let (kind, error) = if e.kind() == io::ErrorKind::WouldBlock {
            (
                io::ErrorKind::TimedOut,
                format!("write timed out after {:?}", self.config.write_timeout),
            )
        } else {
            (e.kind(), e.to_string())
        };
        Counters::add(&self.shared.counters.write_errors, 1);
        if let Some(front) = self.pending_front() {
            if self.sent > front.start {
                Counters::add(&self.shared.counters.retried, 1);
            }
            self.sent = front.start;
        }
        if !self.hb_buf.as_slice().is_empty() {
            // Not resent: the next connection gets its own after its first record.
            Counters::add(&self.shared.counters.heartbeats_dropped, 1);
            self.hb_buf.clear();
            self.hb_sent = 0;
        }
        // A failure of our own making (close shutting the socket at its deadline) leaves
        // the unread tail where it is: the agent is alive and may still read it.
        if !self.shared.lock().stop {
            self.replay_unread();
        }
        self.shared.notifier.publish(Event::WriteFailed {
            kind,
            error,
            pending_records: self.frames.len() - self.tail + usize::from(self.carry.is_some()),
        });
        if let Some(conn) = self.conn.take() {
            self.shared.retire(conn);
        }
        let mut st = self.shared.lock();
        st.want = true;
        self.shared.cond.notify_all();
    }

    /// Nothing to write: wait a little for more, without asking producers to wake us.
    fn idle(&mut self) {
        // Right after work, records often come in bursts: look again a few times before
        // parking. A writer that has been idle for a while just parks.
        if std::mem::take(&mut self.busy) {
            self.poll = FIRST_POLL.min(self.config.idle_poll);
            for _ in 0..IDLE_YIELDS {
                if !self.rx.is_empty() {
                    return;
                }
                thread::yield_now();
            }
        } else {
            // The longer the quiet, the rarer the look: idle CPU stays near zero, and a
            // record waits at most `idle_poll`.
            self.poll = (self.poll * 2).min(self.config.idle_poll);
        }
        if self.tail > 0 {
            self.forget_read();
        }
        self.shared.room.wake_if_waiting();
        let mut timeout = self.poll;
        if let (Some(due), Some(_)) = (self.next_heartbeat, &self.conn) {
            timeout = timeout.min(due.saturating_duration_since(Instant::now()));
        }
        self.shared
            .writer_parked
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if self.rx.is_empty() {
            thread::park_timeout(timeout);
        }
        self.shared
            .writer_parked
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Leaves the loop: gives the connection back and returns the unwritten records.
    fn finish(mut self) -> Vec<Record> {
        if !self.hb_buf.as_slice().is_empty() {
            Counters::add(&self.shared.counters.heartbeats_dropped, 1);
        }
        // The unread tail was written and a live agent may still read it after we close.
        // A dead one will not: then it is handed back with the rest. (When close shut the
        // socket itself at its deadline, the kernel reports our own shutdown as the
        // peer's closing; a dead peer still shows by the reset it left.)
        let stopped = self.shared.lock().stop;
        if self.tail > 0 {
            let dead = match self.conn.as_ref() {
                Some(conn) if stopped => conn.take_error(),
                Some(conn) => match conn.unread() {
                    Unread::Bytes(unread) => {
                        self.trim_read(unread);
                        false
                    }
                    Unread::PeerClosed | Unread::Unknown => true,
                },
                None => false,
            };
            if dead {
                self.tail_back_to_pending();
            }
        }
        for (_, signal) in self.flushes.drain(..) {
            signal.cancel();
        }
        // Closed off this thread, like broken connections: a close that hangs (a bad
        // host-mounted socket) must not hold up `close`, which joins this thread. No new
        // connection is asked for; one the supervisor made and nobody took, it lets go
        // of itself as it stops.
        let active = {
            let mut st = self.shared.lock();
            st.want = false;
            st.active.take()
        };
        if let Some(conn) = self.conn.take() {
            self.shared.let_go(conn, active);
        }
        {
            let mut st = self.shared.lock();
            st.writer_done = true;
            self.shared.cond.notify_all();
        }
        self.shared.room.wake_all();
        // The unread tail was written: the agent may still read it. The rest is handed
        // back.
        self.frames
            .drain(..)
            .skip(self.tail)
            .map(|f| f.record)
            .chain(self.carry.take().map(|f| f.record))
            .collect()
    }
}
