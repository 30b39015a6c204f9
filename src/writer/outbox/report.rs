//! What the outbox tells the writer: what a write completed, what a look at the agent's
//! reads delivered, the next bytes to write, and what a failure did.

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
