//! Connections are closed on threads of their own: a close that hangs (a bad
//! host-mounted socket) must never stall the writer or `close`. If the closes of broken
//! connections hang and pile up, the client declares itself dead.

use std::sync::Arc;
use std::thread;

use socket2::Socket;

use crate::link::Link;
use crate::transport::Connection;

/// Closes of broken connections allowed to hang at once before the client gives up.
pub(crate) const MAX_PENDING_CLOSES: usize = 4;

impl Link {
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
}
