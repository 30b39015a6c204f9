//! The connection in use and what the writer knows of it: one [`State`], changed only
//! by the methods of [`Current`], each for one thing the writer saw happen.
//!
//! Everything here is bookkeeping over what the kernel reports ([`Peer`]), so every
//! transition is unit-tested below without sockets.

use std::io;
use std::time::{Duration, Instant};

use crate::transport::{Connection, Peer};

/// How often, in records written, a busy writer asks the kernel what the agent has read:
/// each check is two syscalls, so the stream's unconfirmed tail is trimmed in batches.
pub(super) const READ_CHECK_EVERY: usize = 512;

/// How often, at least, a writer that writes asks the kernel what the agent has read,
/// however few records went out: against a slow agent, writes block in the kernel and
/// [`READ_CHECK_EVERY`] records can take seconds, while the delivered count (and the
/// records written again after a crash) should trail the agent by a fraction of a second.
pub(super) const READ_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// What the writer knows of the agent's reading of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// No record has been seen read yet; `written_at` is when the first record frame was
    /// completely written. Only that one frame goes out until it is read.
    Probing { written_at: Option<Instant> },
    /// The agent was seen reading a record from it.
    Proven,
    /// The kernel cannot say what the agent read: records count as read once written.
    /// `proven`: the first such confirmation has happened.
    ConfirmOnWrite { proven: bool },
    /// The agent was seen to leave with bytes unread: nothing more is confirmed on this
    /// connection, however clean it looks afterwards.
    Reset,
}

/// How a connection ended.
pub(super) enum Gone {
    /// The agent closed it after reading everything written to it.
    Left,
    /// A write or the kernel said it failed.
    Failed(io::Error),
}

/// What a look at the kernel's count says, once the connection's history is weighed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    /// The agent has `unread` bytes of the stream left: what lies before them is read.
    Unread(usize),
    /// The agent left after reading everything (`Ok` to confirm it all), or with
    /// `unread` bytes left.
    Closed { unread: usize },
    /// The agent left with bytes unread, and which of them it read is unknown.
    Reset,
}

/// What a completed write asks of the writer next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterWrite {
    Nothing,
    /// Confirm what was written now: the kernel cannot count.
    ConfirmAll,
    /// Enough records went out to look at the agent's reads.
    CheckReads,
}

/// The connection in use.
pub(super) struct Current {
    pub(super) conn: Connection,
    state: State,
    /// Records written since the last look at the agent's reads.
    since_check: usize,
    /// When the agent's reads were last looked at.
    checked_at: Instant,
    /// A write returned short since the agent was last seen alive: a blocked write that
    /// the agent's leaving woke takes (and clears) the reset it left.
    short_write: bool,
    /// Since when the socket has been full, for writes that do not wait for room.
    full_since: Option<Instant>,
}

impl Current {
    pub(super) fn new(conn: Connection) -> Current {
        let state = match conn.peer() {
            Peer::Unknown => State::ConfirmOnWrite { proven: false },
            _ => State::Probing { written_at: None },
        };
        Current::with_state(conn, state)
    }

    fn with_state(conn: Connection, state: State) -> Current {
        Current {
            conn,
            state,
            since_check: 0,
            checked_at: Instant::now(),
            short_write: false,
            full_since: None,
        }
    }

    #[cfg(test)]
    pub(super) fn state(&self) -> State {
        self.state
    }

    /// Whether the agent has yet to be seen reading a record from it.
    pub(super) fn probing(&self) -> bool {
        matches!(
            self.state,
            State::Probing { .. } | State::ConfirmOnWrite { proven: false }
        )
    }

    /// When the probe frame was written, while it waits to be read.
    pub(super) fn probe_written(&self) -> Option<Instant> {
        match self.state {
            State::Probing { written_at } => written_at,
            _ => None,
        }
    }

    /// Whether the last write that did not wait found no room in the socket.
    pub(super) fn full_since(&self) -> Option<Instant> {
        self.full_since
    }

    /// A write that did not wait found the socket full (`full`), or wrote something.
    /// Returns since when it has been full.
    pub(super) fn on_room(&mut self, full: bool, now: Instant) -> Option<Instant> {
        if full {
            Some(*self.full_since.get_or_insert(now))
        } else {
            self.full_since = None;
            None
        }
    }

    /// A write that waits for room: the socket is not full, whatever an earlier write
    /// that did not wait found.
    pub(super) fn room_found(&mut self) {
        self.full_since = None;
    }

    /// `records` whole record frames went out in a write that took `n` of `len` bytes.
    pub(super) fn on_written(&mut self, records: usize, n: usize, len: usize) -> AfterWrite {
        if n < len {
            self.short_write = true;
        }
        match &mut self.state {
            State::ConfirmOnWrite { .. } => return AfterWrite::ConfirmAll,
            _ if records == 0 => return AfterWrite::Nothing,
            State::Probing { written_at } => *written_at = Some(Instant::now()),
            _ => {}
        }
        self.since_check += records;
        if self.since_check >= READ_CHECK_EVERY || self.checked_at.elapsed() >= READ_CHECK_INTERVAL
        {
            AfterWrite::CheckReads
        } else {
            AfterWrite::Nothing
        }
    }

    /// A write failed with a reset: the agent left with bytes unread.
    pub(super) fn on_reset(&mut self) {
        self.state = State::Reset;
    }

    /// What the kernel said of the agent's end (`peer`), weighed with what the writer saw
    /// before: `None` when it cannot count, and records count as read once written.
    pub(super) fn on_peer(&mut self, peer: Peer) -> Option<Seen> {
        self.since_check = 0;
        self.checked_at = Instant::now();
        let seen = match peer {
            _ if self.state == State::Reset => Seen::Reset,
            Peer::Reading { unread } => {
                self.short_write = false;
                Seen::Unread(unread)
            }
            // After a short write a closed connection may have been reset, the write
            // having taken the reset: the kernel may be emptying the agent's unread
            // bytes as we count them, so no count can be trusted then (not even after
            // our own shutdown at close's deadline: what is not confirmed comes back).
            Peer::Closed { .. } if self.short_write => Seen::Reset,
            Peer::Closed { unread } => Seen::Closed { unread },
            Peer::Reset => Seen::Reset,
            Peer::Unknown => {
                let proven = matches!(
                    self.state,
                    State::Proven | State::ConfirmOnWrite { proven: true }
                );
                self.state = State::ConfirmOnWrite { proven };
                return None;
            }
        };
        if seen == Seen::Reset {
            self.state = State::Reset;
        }
        Some(seen)
    }

    /// The agent was seen reading records. Returns whether that proved the connection.
    pub(super) fn on_read(&mut self) -> bool {
        match self.state {
            State::Probing { .. } => {
                self.state = State::Proven;
                true
            }
            State::ConfirmOnWrite { proven: false } => {
                self.state = State::ConfirmOnWrite { proven: true };
                true
            }
            State::Proven | State::ConfirmOnWrite { proven: true } | State::Reset => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probing() -> Current {
        Current::with_state(Connection::NoOp, State::Probing { written_at: None })
    }

    #[test]
    fn a_probe_is_timed_from_its_write_and_proven_by_the_first_read() {
        let mut c = probing();
        assert!(c.probing() && c.probe_written().is_none());
        assert_eq!(c.on_written(0, 10, 10), AfterWrite::Nothing);
        assert!(c.probe_written().is_none(), "a heartbeat is no probe");
        c.on_written(1, 100, 100);
        assert!(c.probe_written().is_some());
        assert!(c.on_read());
        assert_eq!(c.state(), State::Proven);
        assert!(!c.probing() && c.probe_written().is_none());
        assert!(!c.on_read(), "proven once");
    }

    #[test]
    fn reads_are_checked_every_so_many_records_written() {
        let mut c = probing();
        c.on_read();
        assert_eq!(
            c.on_written(READ_CHECK_EVERY - 1, 1, 1),
            AfterWrite::Nothing
        );
        assert_eq!(c.on_written(1, 1, 1), AfterWrite::CheckReads);
        assert_eq!(
            c.on_peer(Peer::Reading { unread: 0 }),
            Some(Seen::Unread(0))
        );
        assert_eq!(c.on_written(1, 1, 1), AfterWrite::Nothing);
    }

    #[test]
    fn reads_are_checked_after_a_write_once_the_interval_has_passed() {
        let mut c = probing();
        c.on_read();
        assert_eq!(c.on_written(1, 1, 1), AfterWrite::Nothing);
        c.checked_at = Instant::now() - READ_CHECK_INTERVAL;
        assert_eq!(c.on_written(1, 1, 1), AfterWrite::CheckReads);
        c.on_peer(Peer::Reading { unread: 0 });
        assert_eq!(c.on_written(1, 1, 1), AfterWrite::Nothing);
    }

    #[test]
    fn a_closed_connection_after_a_short_write_counts_as_reset() {
        let mut c = probing();
        c.on_written(1, 5, 10);
        assert_eq!(c.on_peer(Peer::Closed { unread: 0 }), Some(Seen::Reset));
        assert_eq!(c.state(), State::Reset);
    }

    #[test]
    fn the_agent_seen_alive_clears_a_short_write() {
        let mut c = probing();
        c.on_written(1, 5, 10);
        assert_eq!(
            c.on_peer(Peer::Reading { unread: 5 }),
            Some(Seen::Unread(5))
        );
        assert_eq!(
            c.on_peer(Peer::Closed { unread: 0 }),
            Some(Seen::Closed { unread: 0 })
        );
    }

    #[test]
    fn nothing_is_confirmed_after_a_reset_however_clean_it_looks() {
        let mut c = probing();
        c.on_reset();
        assert_eq!(c.on_peer(Peer::Reading { unread: 0 }), Some(Seen::Reset));
        assert!(!c.on_read());
    }

    #[test]
    fn a_kernel_that_cannot_count_confirms_on_write_and_keeps_the_proof() {
        let mut c = probing();
        c.on_read();
        assert_eq!(c.on_peer(Peer::Unknown), None);
        assert_eq!(c.state(), State::ConfirmOnWrite { proven: true });
        // Looked at again (an idle writer does), it stays proven: a connection taken
        // back to probing would write nothing more.
        assert_eq!(c.on_peer(Peer::Unknown), None);
        assert_eq!(c.state(), State::ConfirmOnWrite { proven: true });
        assert!(!c.probing());
        assert_eq!(c.on_written(0, 1, 1), AfterWrite::ConfirmAll);

        let mut blind = Current::new(Connection::NoOp);
        assert_eq!(blind.state(), State::ConfirmOnWrite { proven: false });
        assert!(blind.probing());
        assert!(blind.on_read());
        assert!(!blind.probing());
    }

    #[test]
    fn a_full_socket_is_timed_from_the_first_write_that_found_it_full() {
        let mut c = probing();
        let t0 = Instant::now();
        assert_eq!(c.on_room(true, t0), Some(t0));
        assert_eq!(c.on_room(true, Instant::now()), Some(t0));
        assert_eq!(c.on_room(false, Instant::now()), None);
        assert_eq!(c.full_since(), None);
        c.on_room(true, t0);
        c.room_found();
        assert_eq!(c.full_since(), None);
    }
}
