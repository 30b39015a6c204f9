//! Where the writer's outbox is filled from: the queue directly, or a spool that takes
//! the queue's records while the agent is away or behind and gives them back in order.
//!
//! The writer's loop reads the same with either: it asks its [`Source`] to fill the
//! outbox, tells it what the agent read and, at the end, what was left.

mod direct;
mod modes;
mod spooled;

use crossbeam_channel::Receiver;

use super::outbox::{Outbox, Read};
use crate::config::Config;
use crate::link::Link;
use crate::queue::Item;
use crate::record::Record;
use crate::spool::Spool;

/// What a source works with on a turn of the writer's loop.
pub(crate) struct Turn<'a> {
    pub(crate) rx: &'a Receiver<Item>,
    pub(crate) outbox: &'a mut Outbox,
    pub(crate) link: &'a Link,
    pub(crate) config: &'a Config,
    /// The writer has a connection.
    pub(crate) connected: bool,
    /// `close` was called.
    pub(crate) closing: bool,
}

pub(crate) enum Source {
    /// Records go from the queue to the outbox.
    Direct,
    /// Records go through a spool when the agent is away or behind.
    Spooled(Box<spooled::Spooled>),
}

impl Source {
    pub(crate) fn new(spool: Option<Spool>) -> Source {
        match spool {
            Some(spool) => Source::Spooled(Box::new(spooled::Spooled::new(spool))),
            None => Source::Direct,
        }
    }

    /// Fills the outbox for a write, or moves records on towards it; returns whether it
    /// took any records.
    pub(crate) fn fill(&mut self, turn: Turn<'_>) -> bool {
        match self {
            Source::Direct => direct::take_from_queue(
                turn.rx,
                turn.outbox,
                turn.link,
                &turn.config.service_tree_id,
            ),
            Source::Spooled(spooled) => match spooled.fill(turn) {
                Ok(busy) => busy,
                // The spool could not be read: it stays on disk for the next client, and
                // records go straight to the agent from now on.
                Err(spooled::GivenUp) => {
                    *self = Source::Direct;
                    true
                }
            },
        }
    }

    /// Whether the writer should keep working without a connection (records go to disk
    /// meanwhile) rather than wait for one.
    pub(crate) fn works_offline(&self) -> bool {
        matches!(self, Source::Spooled(_))
    }

    /// Whether a write may wait for room in the socket: with a spool it does not, and
    /// records go to disk while the agent catches up.
    pub(crate) fn writes_wait(&self) -> bool {
        matches!(self, Source::Direct)
    }

    /// Whether records wait to be sent before the queue's (in the spool, or in hand).
    pub(crate) fn has_backlog(&self) -> bool {
        match self {
            Source::Direct => false,
            Source::Spooled(spooled) => spooled.ahead(),
        }
    }

    /// Whether records are left to send other than the queue's and the outbox's.
    pub(crate) fn holds_records(&self) -> bool {
        match self {
            Source::Direct => false,
            Source::Spooled(spooled) => spooled.holds_records(),
        }
    }

    /// Whether the queue's records must stay where they are for now.
    pub(crate) fn queue_waits(&self, connected: bool) -> bool {
        match self {
            Source::Direct => false,
            Source::Spooled(spooled) => spooled.queue_waits(connected),
        }
    }

    /// The agent read `read`: frames from the spool leave it.
    pub(crate) fn on_delivered(&mut self, read: Read, link: &Link) {
        if let Source::Spooled(spooled) = self {
            spooled.on_delivered(read, link);
        }
    }

    /// The writer is done: what the agent was not seen to read, and (with a spool) the
    /// queue's records, go where they are kept. Returns the records to hand back.
    pub(crate) fn keep_leftovers(&mut self, turn: Turn<'_>) -> Vec<Record> {
        match self {
            Source::Direct => turn.outbox.take_unsent(),
            Source::Spooled(spooled) => spooled.keep_leftovers(turn),
        }
    }
}
