//! The client's threads, each with a way to wait for its end with a deadline.

use std::io;
use std::thread::{self, JoinHandle, Thread};
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError};

/// A thread of the client's. It holds the sending end of `ended` until it ends, however
/// it ends (a panic unwinds through it too), so waiting on `ended` needs no flag.
pub(crate) struct Worker<T> {
    handle: JoinHandle<T>,
    ended: Receiver<()>,
}

impl<T: Send + 'static> Worker<T> {
    pub(crate) fn spawn(name: &str, run: impl FnOnce() -> T + Send + 'static) -> io::Result<Self> {
        let (alive, ended) = crossbeam_channel::bounded::<()>(0);
        let handle = thread::Builder::new().name(name.into()).spawn(move || {
            let _alive = alive;
            run()
        })?;
        Ok(Worker { handle, ended })
    }

    pub(crate) fn thread(&self) -> &Thread {
        self.handle.thread()
    }

    /// Waits until the thread has ended or `deadline` passes; returns whether it ended.
    pub(crate) fn wait_until(&self, deadline: Instant) -> bool {
        matches!(
            self.ended.recv_deadline(deadline),
            Err(RecvTimeoutError::Disconnected)
        )
    }

    /// The thread's result, once [`Worker::wait_until`] said it ended (`None` if it
    /// panicked).
    pub(crate) fn join(self) -> Option<T> {
        self.handle.join().ok()
    }
}
