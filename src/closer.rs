//! Connections are closed on a thread of their own: a close that hangs (a bad
//! host-mounted socket) must never stall the writer or `close`.
//!
//! One long-lived thread closes them one after the other, started with the first close
//! and ended when the client is gone. The client dies only of a close that truly hangs:
//! one that has been running for longer than the write timeout. How many closes wait at
//! an instant is no sign of a hang: on a starved machine the closer may simply not have
//! run yet, and a client that gave up then would be lost for good over nothing.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, unbounded};
use parking_lot::Mutex;
use socket2::Socket;

use crate::transport::Connection;

/// A connection to close, with a second handle on the same socket if there is one.
pub(crate) type Closing = (Connection, Option<Socket>);

/// The closer thread, and what it tells about the close it is in.
pub(crate) struct Closer {
    /// Started with the first close; dropping it ends the thread once its closes are done.
    tx: Mutex<Option<Sender<Closing>>>,
    /// Since when the close the thread is in has been running (`None`: none is).
    busy_since: Arc<Mutex<Option<Instant>>>,
    /// How long a close may run before the client counts it as hanging.
    hang_after: Duration,
}

impl Closer {
    pub(crate) fn new(hang_after: Duration) -> Closer {
        Closer {
            tx: Mutex::new(None),
            busy_since: Arc::new(Mutex::new(None)),
            hang_after,
        }
    }

    /// Hands `closing` to the closer thread, starting it if need be. Without a thread
    /// (none could be started), the handles are dropped here.
    pub(crate) fn close(&self, closing: Closing) {
        let mut tx = self.tx.lock();
        if tx.is_none() {
            *tx = self.start();
        }
        if let Some(sender) = tx.as_ref() {
            // The thread only ends when this sender is gone, so a send cannot fail; if it
            // did, the handles would come back in the error and drop here.
            let _ = sender.send(closing);
        }
    }

    /// How long a close may run before the client counts it as hanging.
    pub(crate) fn hang_after(&self) -> Duration {
        self.hang_after
    }

    fn start(&self) -> Option<Sender<Closing>> {
        let (tx, rx) = unbounded::<Closing>();
        let busy_since = Arc::clone(&self.busy_since);
        thread::Builder::new()
            .name("geneva-audit-close".into())
            .spawn(move || {
                for (conn, active) in rx {
                    *busy_since.lock() = Some(Instant::now());
                    drop(conn);
                    drop(active);
                    *busy_since.lock() = None;
                }
            })
            .ok()
            .map(|_| tx)
    }

    /// How long the close in progress has been running, if longer than allowed.
    pub(crate) fn hanging(&self) -> Option<Duration> {
        let since = (*self.busy_since.lock())?;
        let running = since.elapsed();
        (running > self.hang_after).then_some(running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_counts_as_hanging_only_once_it_has_run_longer_than_allowed() {
        let closer = Closer::new(Duration::from_secs(5));
        assert_eq!(closer.hanging(), None);
        *closer.busy_since.lock() = Some(Instant::now());
        assert_eq!(closer.hanging(), None);
        // The monotonic clock has run for longer than 6 s on any machine that runs the
        // tests (it starts at boot).
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(6))
            .expect("an Instant 6 s ago");
        *closer.busy_since.lock() = Some(long_ago);
        assert!(
            closer
                .hanging()
                .is_some_and(|d| d >= Duration::from_secs(6))
        );
    }
}
