//! What the outbox tells the writer: what a write completed, what a look at the agent's
//! reads delivered, the next bytes to write, what a failure did, and what is left at
//! the end.

use crate::record::Record;

/// What a write completed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wrote {
    /// Record frames, this client's and those an earlier client left in the spool.
    pub(crate) frames: usize,
    /// This client's own records among them.
    pub(crate) records: usize,
    /// A heartbeat frame.
    pub(crate) heartbeat: bool,
}

/// What a look at the agent's reads delivered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Read {
    /// This client's own records.
    pub(crate) records: usize,
    /// Frames that came from the spool (own or inherited), for the spool to let go of.
    pub(crate) spooled: usize,
    /// Frames an earlier client left in the spool.
    pub(crate) inherited: usize,
}

/// The next bytes to hand to the kernel.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Chunk<'a> {
    /// Record frames (always whole frames, unless a write was cut short).
    Records(&'a [u8]),
    /// A heartbeat frame, between two record frames.
    Heartbeat(&'a [u8]),
}

/// What a failed connection did to the records in flight.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Failure {
    /// Records written on the failed connection and not confirmed read: with the replay
    /// on they are buffered again, in front of the rest.
    pub(crate) unconfirmed: usize,
    /// Whether the failure cut a frame in two (it is written whole again).
    pub(crate) cut_frame: bool,
    /// Whether a heartbeat frame was dropped unwritten (the next connection gets its own).
    pub(crate) heartbeat_dropped: bool,
}

/// What [`Outbox::take_unsent`] hands back.
pub(crate) struct Unsent {
    /// Every frame still in the outbox, in order.
    pub(crate) left: Vec<Left>,
    /// This client's records still in the outbox that had been written (and not
    /// confirmed read), those read from the spool (which keeps them) included.
    pub(crate) written: usize,
}

/// A frame close finds in the outbox.
// Records are most of what close finds: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Left {
    /// A record taken off the queue, stamped with the time it was taken with.
    Record(Record),
    /// A frame read from the spool, which keeps it until it is delivered, and whether
    /// an earlier client left it.
    Spooled(Box<[u8]>, bool),
}

impl Unsent {
    /// The records taken off the queue, in order, to hand back (the spooled frames stay
    /// in the spool).
    pub(crate) fn into_records(self) -> Vec<Record> {
        let records = self.left.into_iter().filter_map(|f| match f {
            Left::Record(record) => Some(record),
            Left::Spooled(..) => None,
        });
        records.collect()
    }
}
