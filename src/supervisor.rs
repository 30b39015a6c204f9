//! The supervisor thread and the link it shares with the writer.
//!
//! The supervisor owns connecting: when the writer has no connection it says so, the
//! supervisor connects (retrying with jittered exponential backoff) and hands the
//! connection over. Broken connections are closed off the writer's thread; if those
//! closes hang and pile up, the client declares itself dead. Every wait here gives way
//! to shutdown.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use parking_lot::{Condvar, Mutex, MutexGuard};
use socket2::Socket;

use crate::backoff::BackoffState;
use crate::cache_line::OwnLine;
use crate::config::Config;
use crate::notify::{Event, Notifier};
use crate::room::Room;
use crate::stats::Counters;
use crate::transport::Connection;

/// A connection that lasted this long (or on which the agent was seen reading) was a
/// good one: the next reconnection comes without backoff.
const HEALTHY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Closes of broken connections allowed to hang at once before the client gives up.
pub(crate) const MAX_PENDING_CLOSES: usize = 4;

/// What the writer and the supervisor (and `close`) share.
pub(crate) struct Shared {
    pub(crate) state: Mutex<LinkState>,
    pub(crate) cond: Condvar,
    pub(crate) counters: Arc<Counters>,
    pub(crate) notifier: Notifier,
    /// Set when the client gives up: new records are refused. Read by every send, so
    /// on a line of its own: the writer locks `state` once per loop.
    pub(crate) dead: OwnLine<AtomicBool>,
    /// Set while the writer is parked idle, so producers can wake it when the queue
    /// fills up. The writer sets and clears it around each park.
    pub(crate) writer_parked: OwnLine<AtomicBool>,
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

impl Shared {
    pub(crate) fn new(counters: Arc<Counters>, notifier: Notifier, queue_capacity: usize) -> Self {
        Shared {
            state: Mutex::new(LinkState {
                want: true,
                ..LinkState::default()
            }),
            cond: Condvar::new(),
            counters,
            notifier,
            dead: OwnLine(AtomicBool::new(false)),
            writer_parked: OwnLine(AtomicBool::new(false)),
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

    /// The writer's connection broke: it is closed on a thread of its own, so a close
    /// that hangs (a bad host-mounted socket) never stalls the writer. Too many hanging
    /// closes kill the client.
    pub(crate) fn retire(self: &Arc<Self>, conn: Connection) {
        let active = self.lock().active.take();
        let pending = self.close_in_background(conn, active);
        if pending > MAX_PENDING_CLOSES {
            self.die(format!(
                "{pending} closes of broken connections are hanging; giving up"
            ));
        }
    }

    /// A connection the client is done with as it stops: closed on a thread of its own
    /// too, so a close that hangs cannot hold up `close` (which waits for the writer and
    /// the supervisor), and never counted against the client's life.
    pub(crate) fn let_go(self: &Arc<Self>, conn: Connection, active: Option<Socket>) {
        self.close_in_background(conn, active);
    }

    /// Closes `conn`, and `active` (a second handle on the same socket), on a thread of
    /// its own; returns how many such closes are now unfinished.
    fn close_in_background(self: &Arc<Self>, conn: Connection, active: Option<Socket>) -> usize {
        self.lock().pending_closes += 1;
        let shared = Arc::clone(self);
        let closer = thread::Builder::new()
            .name("geneva-audit-close".into())
            .spawn(move || {
                drop(conn);
                drop(active);
                shared.lock().pending_closes -= 1;
            });
        if closer.is_err() {
            // No thread to close on: the handles moved into the failed closure were
            // dropped with it, so the close already happened here.
            self.lock().pending_closes -= 1;
        }
        self.lock().pending_closes
    }

    pub(crate) fn die(&self, reason: String) {
        if !self.dead.swap(true, Ordering::SeqCst) {
            self.notifier.publish(Event::ClientDead { reason });
        }
        self.stop_now();
        self.room.wake_all();
    }
}

/// The supervisor's loop: connect when the writer wants a connection, back off after
/// failures, stop when told.
pub(crate) fn run(shared: Arc<Shared>, config: Arc<Config>) {
    let mut backoff = BackoffState::new(config.backoff);
    let destination = config.transport.to_string();
    let mut connected_before = false;
    let mut handed_over: Option<std::time::Instant> = None;
    loop {
        {
            let mut st = shared.lock();
            let needed = |st: &LinkState| st.want && st.ready.is_none();
            while !st.stop && !needed(&st) {
                shared.cond.wait(&mut st);
            }
            if st.stop {
                break;
            }
            // Asked again after handing a connection over: it has failed.
            if let Some(at) = handed_over.take() {
                let lasted = at.elapsed() >= HEALTHY_AFTER;
                if std::mem::take(&mut st.healthy) || lasted {
                    backoff.reset();
                } else {
                    // It carried nothing before it failed: back off as after a failed
                    // connect.
                    let until = crate::deadline::after(backoff.next_delay());
                    while !st.stop {
                        if shared.cond.wait_until(&mut st, until).timed_out() {
                            break;
                        }
                    }
                    if st.stop {
                        break;
                    }
                }
            }
        }
        match config.transport.connect(
            config.connect_timeout,
            config.write_timeout,
            config.send_buffer,
        ) {
            Ok(conn) => {
                Counters::add(&shared.counters.connects, 1);
                {
                    let mut st = shared.lock();
                    if st.stop {
                        drop(st);
                        shared.let_go(conn, None);
                        break;
                    }
                    st.ready = Some(conn);
                    st.last_error = None;
                    shared.cond.notify_all();
                }
                shared.notifier.publish(Event::Connected {
                    destination: destination.clone(),
                    reconnect: connected_before,
                });
                connected_before = true;
                handed_over = Some(std::time::Instant::now());
            }
            Err(e) => {
                Counters::add(&shared.counters.connect_failures, 1);
                let retry_in = backoff.next_delay();
                shared.notifier.publish(Event::ConnectFailed {
                    destination: destination.clone(),
                    kind: e.kind(),
                    error: e.to_string(),
                    failures: backoff.failures(),
                    retry_in,
                });
                let until = crate::deadline::after(retry_in);
                let mut st = shared.lock();
                st.last_error = Some((e.kind(), e.to_string()));
                shared.cond.notify_all();
                while !st.stop {
                    if shared.cond.wait_until(&mut st, until).timed_out() {
                        break;
                    }
                }
            }
        }
    }
    let ready = shared.lock().ready.take();
    if let Some(conn) = ready {
        shared.let_go(conn, None);
    }
    let mut st = shared.lock();
    st.supervisor_done = true;
    shared.cond.notify_all();
}
