//! The link between the client's threads: the connection hand-off between the
//! supervisor and the writer, and the client's [`Lifecycle`], which every thread reads
//! and only [`Link::advance`] changes.
//!
//! Shutdown is one path: `close` (or the client's death) calls `advance`, which stores
//! the new lifecycle and wakes each kind of wait the threads can be in, each with the
//! one signal that wait needs:
//!
//! - the writer parked idle or waiting on the agent's reads: `unpark`;
//! - the writer or the supervisor waiting on the hand-off (`cond`): `notify_all`;
//! - the writer blocked in a write to a stuck agent, once stopping: the socket's
//!   `shutdown`, the only thing that ends a write in the kernel;
//! - producers asleep for room in the queue: [`Room::wake_all`].
//!
//! Two more belong to `close` alone: the send gate's closed bit, which refuses new
//! records without a lock on the send path, and ending the notifications once the
//! threads are done, so a reader's loop ends.

use std::io;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::thread::Thread;

use parking_lot::{Condvar, Mutex, MutexGuard};
use socket2::Socket;

use crate::closer::Closer;
use crate::notify::{Event, LossReason, Notifier};
use crate::room::Room;
use crate::stats::Counters;
use crate::transport::Connection;
use crossbeam_utils::CachePadded;

/// What the writer and the supervisor (and `close`) share.
pub(crate) struct Link {
    pub(crate) state: Mutex<LinkState>,
    pub(crate) cond: Condvar,
    pub(crate) counters: Arc<Counters>,
    pub(crate) notifier: Notifier,
    /// The [`Lifecycle`], read by every thread without the lock (on a line of its own:
    /// the send paths read it for every record). Only [`Link::advance`] stores it,
    /// holding the lock, so a wait on `cond` that looks at it cannot miss a change.
    lifecycle: CachePadded<AtomicU8>,
    /// The writer thread, woken by [`Link::advance`] and by producers.
    writer: OnceLock<Thread>,
    /// Set while the writer is parked idle, so producers can wake it when the queue
    /// fills up. The writer sets and clears it around each park.
    pub(crate) writer_parked: CachePadded<AtomicBool>,
    /// Where producers wait for room in a full queue.
    pub(crate) room: Room,
    /// Closes connections on a thread of its own.
    pub(crate) closer: Closer,
}

/// Where the client is in its life. It only moves forward, in this order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Lifecycle {
    /// Accepting and writing records.
    #[default]
    Running,
    /// `close` was called: write what is queued, wait until the agent has read it, then
    /// stop.
    Draining,
    /// Stop at once (the close deadline passed): a write stuck in the kernel is cut off,
    /// and what is not confirmed read is handed back.
    Stopping,
    /// The client gave up (closes of broken connections hung): it refuses records and
    /// stops at once.
    Dead,
}

impl Lifecycle {
    fn from_u8(n: u8) -> Lifecycle {
        match n {
            0 => Lifecycle::Running,
            1 => Lifecycle::Draining,
            2 => Lifecycle::Stopping,
            _ => Lifecycle::Dead,
        }
    }

    /// Whether the threads should stop now.
    pub(crate) fn stopping(self) -> bool {
        self >= Lifecycle::Stopping
    }
}

#[derive(Default)]
pub(crate) struct LinkState {
    /// The writer has no connection and wants one.
    pub(crate) want: bool,
    /// A connection made by the supervisor, waiting for the writer.
    pub(crate) ready: Option<Connection>,
    /// A second handle on the writer's socket, to unblock a stuck write at shutdown.
    pub(crate) active: Option<Socket>,
    /// The agent was seen reading the current connection: the next reconnection may come
    /// without backoff. (One that fails young without that backs off like a failed
    /// connect, or a crash-looping agent would be reconnected to in a hot loop.)
    pub(crate) healthy: bool,
    /// The last connection error, for a builder waiting for the first connection.
    pub(crate) last_error: Option<(io::ErrorKind, String)>,
}

impl LinkState {
    /// The writer takes the connection the supervisor made: it wants none any more, and
    /// a second handle on it is kept to unblock a write stuck on it at shutdown.
    fn take_ready(&mut self) -> Option<Connection> {
        let conn = self.ready.take()?;
        self.want = false;
        self.active = conn.shutdown_handle();
        Some(conn)
    }
}

impl Link {
    /// A close running for longer than `hang_after` kills the client (see [`Closer`]).
    pub(crate) fn new(
        counters: Arc<Counters>,
        notifier: Notifier,
        queue_capacity: usize,
        hang_after: std::time::Duration,
    ) -> Self {
        Link {
            state: Mutex::new(LinkState {
                want: true,
                ..LinkState::default()
            }),
            cond: Condvar::new(),
            counters,
            notifier,
            lifecycle: CachePadded::new(AtomicU8::new(Lifecycle::Running as u8)),
            writer: OnceLock::new(),
            writer_parked: CachePadded::new(AtomicBool::new(false)),
            room: Room::new(queue_capacity),
            closer: Closer::new(hang_after),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, LinkState> {
        self.state.lock()
    }

    pub(crate) fn lifecycle(&self) -> Lifecycle {
        Lifecycle::from_u8(self.lifecycle.load(Ordering::SeqCst))
    }

    /// Whether the client gave up (see [`Lifecycle::Dead`]).
    pub(crate) fn dead(&self) -> bool {
        self.lifecycle() == Lifecycle::Dead
    }

    /// The writer thread, once it runs: [`Link::advance`] and producers wake it.
    pub(crate) fn set_writer(&self, thread: Thread) {
        let _ = self.writer.set(thread);
    }

    /// Wakes the writer if it is parked.
    pub(crate) fn wake_writer(&self) {
        if let Some(writer) = self.writer.get() {
            writer.unpark();
        }
    }

    /// Moves the lifecycle forward to `to` (never back), and wakes every thread that
    /// waits on it; stopping also cuts off a write stuck in the kernel. Returns whether
    /// it moved.
    pub(crate) fn advance(&self, to: Lifecycle) -> bool {
        let st = self.lock();
        if to <= self.lifecycle() {
            return false;
        }
        self.lifecycle.store(to as u8, Ordering::SeqCst);
        if to.stopping() {
            if let Some(active) = &st.active {
                let _ = active.shutdown(std::net::Shutdown::Both);
            }
        }
        self.cond.notify_all();
        drop(st);
        self.room.wake_all();
        self.wake_writer();
        true
    }

    /// Takes a connection the supervisor made in the background, if there is one.
    pub(crate) fn take_ready(&self) -> Option<Connection> {
        self.lock().take_ready()
    }

    /// Asks the supervisor for a connection, without waiting for it.
    pub(crate) fn want_connection(&self) {
        let mut st = self.lock();
        if !st.want && st.ready.is_none() {
            st.want = true;
            self.cond.notify_all();
        }
    }

    /// Asks the supervisor for a connection and waits for it; `None` when the client
    /// stops first.
    pub(crate) fn await_connection(&self) -> Option<Connection> {
        let mut st = self.lock();
        st.want = true;
        self.cond.notify_all();
        loop {
            if self.lifecycle().stopping() {
                return None;
            }
            if let Some(conn) = st.take_ready() {
                return Some(conn);
            }
            self.cond.wait(&mut st);
        }
    }

    /// The writer is done with connections: none is asked for any more. Returns the
    /// second handle on the writer's socket, to close with it.
    pub(crate) fn stop_wanting(&self) -> Option<Socket> {
        let mut st = self.lock();
        st.want = false;
        st.active.take()
    }

    /// The agent was seen reading the current connection: a failure of it is no crash
    /// loop, and the next connection comes without backoff.
    pub(crate) fn mark_healthy(&self) {
        self.lock().healthy = true;
    }

    /// `count` records were lost: told first and counted after, so whoever sees the count
    /// can find the event.
    pub(crate) fn lose(&self, count: u64, reason: LossReason) {
        self.notifier.publish(Event::RecordsLost { count, reason });
        Counters::add(&self.counters.lost, count);
    }

    /// The writer's connection broke: it is closed on the closer thread, so a close that
    /// hangs (a bad host-mounted socket) never stalls the writer. A close that has hung
    /// for longer than the write timeout kills the client: connections would pile up
    /// behind it.
    pub(crate) fn close_broken(&self, conn: Connection) {
        let active = self.lock().active.take();
        self.closer.close((conn, active));
        if let Some(running) = self.closer.hanging() {
            self.die(format!(
                "closing a broken connection has been hanging for {:.1} s (the write \
                 timeout is {:.1} s); giving up",
                running.as_secs_f64(),
                self.closer.hang_after().as_secs_f64()
            ));
        }
    }

    /// A connection the client is done with as it stops: closed on the closer thread
    /// too, so a close that hangs cannot hold up `close` (which waits for the writer and
    /// the supervisor).
    pub(crate) fn close_in_background(&self, conn: Connection, active: Option<Socket>) {
        self.closer.close((conn, active));
    }

    /// The client gives up: it says why once, refuses records and stops.
    pub(crate) fn die(&self, reason: String) {
        if self.advance(Lifecycle::Dead) {
            self.notifier.publish(Event::ClientDead { reason });
        }
    }
}
