//! What the agent has read: the kernel's count of unread bytes turned into delivered
//! records, and how a connection's end is told (the agent left, or it failed).

use std::io;
use std::thread;

use super::outbox::{Read, WRITE_BYTES};
use super::{Gone, READ_WAIT_MAX, READ_WAIT_MIN, Writer};
use crate::stats::Counters;
use crate::transport::Peer;

impl Writer {
    /// Asks the kernel what the agent has read and confirms it; a connection found closed
    /// fails, so what it left unread is written again on the next one.
    pub(super) fn check_reads(&mut self) {
        if let Err(gone) = self.learn_reads() {
            self.drop_connection(gone);
        }
    }

    /// Confirms what the kernel says the agent has read; how the connection ended when
    /// it turns out to be closed.
    pub(super) fn learn_reads(&mut self) -> Result<(), Gone> {
        let Some(current) = self.current.as_mut() else {
            return Ok(());
        };
        current.since_check = 0;
        let peer = match current.conn.peer() {
            _ if current.reset => Peer::Reset,
            peer @ Peer::Reading { .. } => {
                current.short_write = false;
                peer
            }
            // After a short write a closed connection may have been reset, the write
            // having taken the reset: the kernel may be emptying the agent's unread
            // bytes as we count them, so no count can be trusted then (not even after
            // our own shutdown at close's deadline: what is not confirmed comes back).
            Peer::Closed { .. } if current.short_write => Peer::Reset,
            peer => peer,
        };
        if peer == Peer::Reset {
            current.reset = true;
        }
        match peer {
            Peer::Reading { unread } => {
                self.confirm(unread);
                Ok(())
            }
            // Everything written was read: the agent left, nothing failed.
            Peer::Closed { unread: 0 } => {
                self.confirm(0);
                Err(Gone::Left)
            }
            Peer::Closed { unread } => {
                self.confirm(unread);
                Err(Gone::Failed(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!("the agent closed the connection with {unread} bytes unread"),
                )))
            }
            Peer::Reset => Err(Gone::Failed(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the agent closed the connection with records unread",
            ))),
            Peer::Unknown => {
                current.confirm_on_write = true;
                self.confirm(0);
                Ok(())
            }
        }
    }

    /// The agent has `unread` bytes of the stream left: what lies before them is
    /// delivered. The first record read proves the connection.
    pub(super) fn confirm(&mut self, unread: usize) {
        let read = self.outbox.on_read(unread);
        if read == Read::default() {
            return;
        }
        Counters::add(&self.counters().delivered, read.records as u64);
        if read.spooled > 0 {
            self.spool_delivered(read);
        }
        self.outbox.settle_markers();
        self.read_wait = READ_WAIT_MIN;
        let Some(current) = self.current.as_mut() else {
            return;
        };
        current.probe_written = None;
        if !current.proven {
            current.proven = true;
            // A failure of this connection is not a crash loop: reconnect at once.
            self.link.lock().healthy = true;
            // The heartbeat is the connection's second frame.
            self.queue_heartbeat();
        }
    }

    /// Waits a little for the agent to read, then looks. A new connection whose first
    /// record goes unread for the write timeout is given up like a write that timed out.
    pub(super) fn wait_for_reads(&mut self) {
        self.link.room.wake_if_waiting();
        // Parks even with records queued when it cannot take them now: a new connection
        // waiting for its first record to be read must not spin on a full outbox.
        if self.rx.is_empty() || self.outbox.planned_bytes() >= WRITE_BYTES || self.socket_full() {
            thread::park_timeout(self.read_wait);
        }
        self.read_wait = (self.read_wait * 2).min(READ_WAIT_MAX);
        self.check_reads();
        let stalled = self
            .current
            .as_ref()
            .and_then(|c| c.probe_written)
            .is_some_and(|at| at.elapsed() >= self.config.write_timeout);
        if stalled {
            self.fail(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the agent read nothing of a new connection for {:?}",
                    self.config.write_timeout
                ),
            ));
        }
    }
}
