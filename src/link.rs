//! The link between the client's threads: the connection hand-off between the
//! supervisor and the writer, and the shutdown state every thread reads.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Condvar, Mutex, MutexGuard};
use socket2::Socket;

use crate::notify::{Event, Notifier};
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
    /// Set when the client gives up: new records are refused. Read by every send, so
    /// on a line of its own: the writer locks `state` once per loop.
    pub(crate) dead: CachePadded<AtomicBool>,
    /// Set while the writer is parked idle, so producers can wake it when the queue
    /// fills up. The writer sets and clears it around each park.
    pub(crate) writer_parked: CachePadded<AtomicBool>,
    /// Where producers wait for room in a full queue.
    pub(crate) room: Room,
}

#[derive(Default)]
pub(crate) struct LinkState {
    /// The writer has no connection and wants one.
    pub(crate) want: bool,
    /// A connection made by the supervisor, waiting for the writer.
    pub(crate) ready: Option<Connection>,
    /// A second handle on the writer's socket, to unblock a stuck write at shutdown.
    pub(crate) active: Option<Socket>,
    /// `close` was called: drain what is queued, then stop.
    pub(crate) draining: bool,
    /// Stop now: the close deadline passed, or the client died.
    pub(crate) stop: bool,
    pub(crate) writer_done: bool,
    pub(crate) supervisor_done: bool,
    /// Closes of broken connections still running.
    pub(crate) pending_closes: usize,
    /// The agent was seen reading the current connection: the next reconnection may come
    /// without backoff. (One that fails young without that backs off like a failed
    /// connect, or a crash-looping agent would be reconnected to in a hot loop.)
    pub(crate) healthy: bool,
    /// The last connection error, for a builder waiting for the first connection.
    pub(crate) last_error: Option<(io::ErrorKind, String)>,
}

impl Link {
    pub(crate) fn new(counters: Arc<Counters>, notifier: Notifier, queue_capacity: usize) -> Self {
        Link {
            state: Mutex::new(LinkState {
                want: true,
                ..LinkState::default()
            }),
            cond: Condvar::new(),
            counters,
            notifier,
            dead: CachePadded::new(AtomicBool::new(false)),
            writer_parked: CachePadded::new(AtomicBool::new(false)),
            room: Room::new(queue_capacity),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, LinkState> {
        self.state.lock()
    }

    /// Asks to stop at once: unblocks a write stuck on the socket and every wait.
    pub(crate) fn stop_now(&self) {
        let mut st = self.lock();
        st.stop = true;
        if let Some(active) = &st.active {
            let _ = active.shutdown(std::net::Shutdown::Both);
        }
        self.cond.notify_all();
    }

    pub(crate) fn die(&self, reason: String) {
        if !self.dead.swap(true, Ordering::SeqCst) {
            self.notifier.publish(Event::ClientDead { reason });
        }
        self.stop_now();
        self.room.wake_all();
    }
}
