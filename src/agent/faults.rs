//! Making the agent misbehave on purpose: slow, stuck, picky or dying.

use std::io;
use std::net::Shutdown;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use super::listen::{bind_tcp, bind_unix, remove_if_same, spawn_listener};
use super::server::{Endpoint, TestAgent};
use super::state::{Close, Listener};

impl TestAgent {
    /// Stops reading from every connection, present and future, until
    /// [`resume_reading`](Self::resume_reading). Connections stay open, so a client's
    /// writes fill the socket buffers and then block (or fail with `WouldBlock`).
    ///
    /// Once this returns, the frame list does not grow until reading resumes: bytes a
    /// reader was already receiving are held back, not lost.
    pub fn stop_reading(&self) {
        self.shared.state.lock().paused = true;
        self.shared.changed.notify_all();
    }

    /// Undoes [`stop_reading`](Self::stop_reading).
    pub fn resume_reading(&self) {
        self.shared.state.lock().paused = false;
        self.shared.changed.notify_all();
    }

    /// Caps how fast each connection is read, in bytes per second (`None`: as fast as
    /// possible; `Some(0)`: not at all, like [`stop_reading`](Self::stop_reading)).
    /// Reads are spread out in pieces of about a twentieth of the rate.
    pub fn set_read_rate(&self, bytes_per_second: Option<u64>) {
        self.shared.state.lock().read_rate = bytes_per_second;
        self.shared.changed.notify_all();
    }

    /// Closes each connection once it has delivered `frames` frames (`None`: never).
    /// Whatever the client wrote after that frame is discarded. Connections that already
    /// delivered that many are closed now.
    pub fn set_drop_after(&self, frames: Option<u64>) {
        let mut state = self.shared.state.lock();
        state.drop_after = frames;
        if let Some(limit) = frames {
            for connection in &mut state.connections {
                if connection.open && connection.frames >= limit {
                    connection.close(Close::Orderly);
                }
            }
        }
        drop(state);
        self.shared.changed.notify_all();
    }

    /// While `true`, every new connection is accepted and closed at once, unread (it
    /// counts in [`Status::refused`](super::Status::refused), not as a connection).
    pub fn set_refuse_connections(&self, refuse: bool) {
        self.shared.state.lock().refuse = refuse;
        self.shared.changed.notify_all();
    }

    /// Closes every open connection (an orderly close) but keeps listening, like an agent
    /// that drops its clients. Unread data on them is discarded.
    pub fn disconnect_all(&self) {
        let mut state = self.shared.state.lock();
        for connection in &mut state.connections {
            if connection.open {
                connection.close(Close::Orderly);
            }
        }
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Dies abruptly: closes the listener and resets every connection without reading
    /// what is still in their socket buffers, and removes the socket file. Frames and
    /// errors received so far are kept; nothing more arrives until
    /// [`restart`](Self::restart). Does nothing if the agent is already dead.
    ///
    /// When it returns, all the agent's threads have ended and its sockets are closed.
    pub fn kill(&self) {
        self.kill_locked(&mut self.listener.lock());
    }

    fn kill_locked(&self, listener: &mut Option<Listener>) {
        if let Some(running) = listener.take() {
            running.stop.store(true, Ordering::SeqCst);
            // Wakes a blocked accept() at once on Linux; the accept timeout otherwise.
            let _ = running.socket.shutdown(Shutdown::Both);
            if let Some(thread) = running.thread {
                let _ = thread.join();
            }
            if let (Endpoint::Unix(path), Some(file)) = (&self.endpoint, running.file) {
                remove_if_same(path, file);
            }
        }
        let threads: Vec<JoinHandle<()>> = {
            let mut state = self.shared.state.lock();
            state.running = false;
            state
                .connections
                .iter_mut()
                .filter_map(|connection| {
                    if connection.open {
                        connection.close(Close::Abrupt);
                    }
                    connection.thread.take()
                })
                .collect()
        };
        self.shared.changed.notify_all();
        for thread in threads {
            let _ = thread.join();
        }
    }

    /// Listens again on the same path or port, after [`kill`](Self::kill) (a running agent
    /// is killed first). Frames, errors, settings and connection numbering carry on.
    pub fn restart(&self) -> io::Result<()> {
        let mut listener = self.listener.lock();
        self.kill_locked(&mut listener);
        let running = match &self.endpoint {
            Endpoint::Unix(path) => {
                let (socket, file) = bind_unix(path)?;
                spawn_listener(&self.shared, socket, Some(file)).inspect_err(|_| {
                    remove_if_same(path, file);
                })?
            }
            Endpoint::Tcp(addr) => spawn_listener(&self.shared, bind_tcp(*addr)?, None)?,
        };
        *listener = Some(running);
        self.shared.state.lock().running = true;
        self.shared.changed.notify_all();
        Ok(())
    }
}
