//! What the agent's threads share: what it received, each connection, and the faults in
//! force; and the counts a wait looks at.

use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use socket2::Socket;

use super::as_u64;
use super::frame::{FrameError, ReceivedFrame};

/// Counts that describe the agent at one moment, handed to
/// [`TestAgent::wait_for`](super::TestAgent::wait_for) conditions and kept in a
/// [`Timeout`](super::Timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    /// Frames in the list now ([`TestAgent::take_frames`](super::TestAgent::take_frames)
    /// empties it).
    pub frames: usize,
    /// Frames received over the agent's whole life.
    pub total_frames: u64,
    /// Errors in the list now.
    pub errors: usize,
    /// Connections accepted over the agent's whole life (refused ones not included).
    pub connections: u64,
    /// Connections open now.
    pub open_connections: usize,
    /// Connections accepted and closed at once because of
    /// [`TestAgent::set_refuse_connections`](super::TestAgent::set_refuse_connections).
    pub refused: u64,
    /// Whether the agent is listening (not killed).
    pub running: bool,
}

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    /// Notified whenever anything in `state` changes.
    pub(super) changed: Condvar,
    pub(super) max_frame_len: usize,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) frames: Vec<ReceivedFrame>,
    pub(super) errors: Vec<FrameError>,
    pub(super) total_frames: u64,
    /// Every accepted connection, indexed by its number.
    pub(super) connections: Vec<Connection>,
    pub(super) refused: u64,
    pub(super) running: bool,
    pub(super) paused: bool,
    pub(super) read_rate: Option<u64>,
    pub(super) drop_after: Option<u64>,
    pub(super) refuse: bool,
}

pub(super) struct Connection {
    pub(super) open: bool,
    /// Closed by [`TestAgent::kill`](super::TestAgent::kill): what its reader already took from the kernel still
    /// counts as received (a crash loses only what was left in the socket's buffers).
    pub(super) killed: bool,
    pub(super) frames: u64,
    /// Shared with the reader thread; taken when the agent closes the connection.
    pub(super) socket: Option<Arc<Socket>>,
    /// The reader thread, joined by `kill` (or reaped once finished).
    pub(super) thread: Option<JoinHandle<()>>,
}

impl State {
    pub(super) fn status(&self) -> Status {
        Status {
            frames: self.frames.len(),
            total_frames: self.total_frames,
            errors: self.errors.len(),
            connections: as_u64(self.connections.len()),
            open_connections: self.connections.iter().filter(|c| c.open).count(),
            refused: self.refused,
            running: self.running,
        }
    }

    pub(super) fn connection(&mut self, id: u64) -> Option<&mut Connection> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.connections.get_mut(i))
    }

    pub(super) fn is_open(&self, id: u64) -> bool {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.connections.get(i))
            .is_some_and(|c| c.open)
    }

    pub(super) fn reading_paused(&self) -> bool {
        self.paused || self.read_rate == Some(0)
    }
}

/// How the agent closes a connection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Close {
    /// Like a process that dies: no FIN, unread data discarded (TCP sends a reset).
    Abrupt,
    /// An ordinary close.
    Orderly,
}

impl Connection {
    /// Marks it closed and wakes its reader; the socket closes once the reader lets go.
    pub(super) fn close(&mut self, how: Close) {
        self.open = false;
        self.killed = how == Close::Abrupt;
        if let Some(socket) = self.socket.take() {
            if how == Close::Abrupt {
                // Linger 0: close() resets the connection instead of an orderly FIN.
                let _ = socket.set_linger(Some(Duration::ZERO));
                let _ = socket.shutdown(Shutdown::Read);
            } else {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
    }
}

pub(super) struct Listener {
    pub(super) socket: Arc<Socket>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) thread: Option<JoinHandle<()>>,
    /// Device and inode of the socket file this listener created, to remove only that.
    pub(super) file: Option<(u64, u64)>,
}
