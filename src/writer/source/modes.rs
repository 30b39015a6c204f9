//! The spooled source's mode: where the queue's records go on a turn of the writer's
//! loop, decided in one place from what the writer knows (docs/SPOOL.md, States).

use std::time::{Duration, Instant};

/// How long spilling stays paused after a fault of the disk.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How long the writer may be without a connection before records go to disk: the
/// first connect and a quick reconnect leave them in the queue, where they were.
pub(crate) const OFFLINE_GRACE: Duration = Duration::from_secs(1);

/// Where the queue's records go (docs/SPOOL.md, States).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Nothing on disk goes first: records pass from the queue to the outbox, as
    /// without a spool (and wait in the queue while there is no connection).
    Passing,
    /// Records go from the queue to disk: there has been no connection for
    /// [`OFFLINE_GRACE`] (or none while closing), the queue is past half full, or there
    /// is no connection and records on disk go first.
    Spilling,
    /// Connected with records on disk: the outbox is fed from the spool, and the queue's
    /// records go to disk behind them.
    CatchingUp,
}

/// What the mode is decided from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts {
    pub(crate) connected: bool,
    pub(crate) closing: bool,
    /// Records in the queue, and half its capacity.
    pub(crate) queued: usize,
    pub(crate) half: usize,
    /// Records wait on disk (or in hand for it) to go first.
    pub(crate) ahead: bool,
    pub(crate) now: Instant,
}

/// The spooled source's mode, and the times it is decided with.
#[derive(Debug)]
pub(crate) struct Modes {
    pub(super) mode: Mode,
    /// Until when appending is paused after a fault.
    pub(super) paused_until: Option<Instant>,
    /// Since when the writer has had no connection.
    offline_since: Option<Instant>,
}

impl Modes {
    pub(super) fn new(now: Instant) -> Modes {
        Modes {
            mode: Mode::Passing,
            paused_until: None,
            offline_since: Some(now),
        }
    }

    /// Whether the writer has been without a connection for [`OFFLINE_GRACE`].
    pub(super) fn away(&self, now: Instant) -> bool {
        self.offline_since
            .is_some_and(|since| now.saturating_duration_since(since) >= OFFLINE_GRACE)
    }

    /// Whether appending is paused after a fault at `now`.
    pub(super) fn paused(&self, now: Instant) -> bool {
        self.paused_until.is_some_and(|until| now < until)
    }

    /// Decides where the queue's records go on this turn; returns the mode it left, if
    /// it changed.
    pub(crate) fn decide(&mut self, f: Facts) -> Option<Mode> {
        let offline = if f.connected {
            self.offline_since = None;
            false
        } else {
            // Closing, there is no time to wait: the records go where close keeps them.
            let since = *self.offline_since.get_or_insert(f.now);
            f.closing || f.now.saturating_duration_since(since) >= OFFLINE_GRACE
        };
        let mode = match () {
            _ if f.ahead && f.connected => Mode::CatchingUp,
            _ if f.ahead => Mode::Spilling,
            // Paused after a fault, records go the direct way (or wait for a connection).
            _ if !self.paused(f.now) && (offline || f.queued >= f.half) => Mode::Spilling,
            _ => Mode::Passing,
        };
        let before = std::mem::replace(&mut self.mode, mode);
        (before != mode).then_some(before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(now: Instant) -> Facts {
        Facts {
            connected: false,
            closing: false,
            queued: 0,
            half: 8,
            ahead: false,
            now,
        }
    }

    #[test]
    fn records_wait_in_the_queue_for_the_grace_then_spill() {
        let t0 = Instant::now();
        let mut m = Modes::new(t0);
        assert_eq!(m.decide(facts(t0)), None);
        assert_eq!(m.mode, Mode::Passing);
        let later = t0 + OFFLINE_GRACE;
        assert_eq!(m.decide(facts(later)), Some(Mode::Passing));
        assert_eq!(m.mode, Mode::Spilling);
    }

    #[test]
    fn a_closing_writer_without_a_connection_spills_at_once() {
        let t0 = Instant::now();
        let mut m = Modes::new(t0);
        m.decide(Facts {
            closing: true,
            ..facts(t0)
        });
        assert_eq!(m.mode, Mode::Spilling);
    }

    #[test]
    fn a_queue_past_half_spills_even_while_connected() {
        let t0 = Instant::now();
        let mut m = Modes::new(t0);
        let f = Facts {
            connected: true,
            queued: 8,
            ..facts(t0)
        };
        m.decide(f);
        assert_eq!(m.mode, Mode::Spilling);
        m.decide(Facts { queued: 7, ..f });
        assert_eq!(m.mode, Mode::Passing);
    }

    #[test]
    fn records_on_disk_go_first_and_are_caught_up_with_once_connected() {
        let t0 = Instant::now();
        let mut m = Modes::new(t0);
        let f = Facts {
            ahead: true,
            ..facts(t0)
        };
        m.decide(f);
        assert_eq!(m.mode, Mode::Spilling);
        assert_eq!(
            m.decide(Facts {
                connected: true,
                ..f
            }),
            Some(Mode::Spilling)
        );
        assert_eq!(m.mode, Mode::CatchingUp);
        m.decide(Facts {
            connected: true,
            ahead: false,
            ..f
        });
        assert_eq!(m.mode, Mode::Passing);
    }

    #[test]
    fn a_pause_after_a_fault_sends_records_the_direct_way_until_it_ends() {
        let t0 = Instant::now();
        let mut m = Modes::new(t0);
        m.paused_until = Some(t0 + RETRY_AFTER);
        let f = Facts {
            connected: true,
            queued: 8,
            ..facts(t0)
        };
        m.decide(f);
        assert_eq!(m.mode, Mode::Passing);
        assert!(m.paused(t0));
        m.decide(Facts {
            now: t0 + RETRY_AFTER,
            ..f
        });
        assert_eq!(m.mode, Mode::Spilling);
    }
}
