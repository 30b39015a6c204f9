//! The frame encoder: `[tag, [[ts, body]], {"TimeFormat":"DateTime"}]`, written byte by
//! byte (the bytes `rmp`'s low-level writers produce, checked by the tests) into a buffer
//! that is reused from frame to frame.
//!
//! One walk over the record serves both encoding and measuring: it is generic over an
//! [`Out`] that either writes bytes (a [`Cursor`] over the frame's room in a [`Batch`])
//! or only counts them, so [`encoded_len`] can never disagree with what is written.
//! Encoding first bounds the frame's size from its string lengths, takes that much of
//! the batch's initialized spare bytes and writes into it with one bounds check per string
//! (key, header and text together); names of enum values, with their keys, are
//! pre-encoded in tables. The record is only read, and nothing is allocated once the
//! buffer has grown to the largest frame.

mod batch;
mod encoder;
mod frame;
mod heartbeat;
mod ip;
mod out;
mod room;
#[cfg(test)]
mod tests;
mod value;
mod wire;

pub(crate) use batch::Batch;

use crate::kinds::MessageKind;
use crate::record::{Record, Text, Value};
use crate::validate::ValidationError;

pub use encoder::Encoder;
pub use heartbeat::Heartbeat;
pub use room::{encoded_len, encoded_len_bound};

use frame::*;
use heartbeat::*;
use ip::*;
use out::*;
use room::*;
use value::*;
use wire::*;

/// Appends a record's frame to `buf`. The caller has validated the record.
///
/// Returns false, having appended nothing, if the frame could not be written (the
/// cursor and the counter disagreed: a bug the unit tests and the fuzzer look for); the
/// caller must account for the record rather than lose it silently.
#[must_use]
pub(crate) fn append_record(
    buf: &mut Batch,
    service_tree_id: &str,
    ts: i64,
    record: &Record,
) -> bool {
    append_record_in(
        buf,
        record_room(service_tree_id, record),
        service_tree_id,
        ts,
        record,
    )
}

/// [`append_record`] with the room already known: [`encoded_len_bound`] or the exact
/// size, as the client's `try_send` measured it on the caller's thread.
#[must_use]
pub(crate) fn append_record_in(
    buf: &mut Batch,
    room: usize,
    service_tree_id: &str,
    ts: i64,
    record: &Record,
) -> bool {
    let frame = RecordFrame {
        service_tree_id,
        ts,
        record,
    };
    append(buf, room, &frame)
}

/// Appends a heartbeat frame to `buf`. Heartbeats are rare: their room is their
/// counted size.
#[must_use]
pub(crate) fn append_heartbeat(buf: &mut Batch, ts: i64, hb: &Heartbeat) -> bool {
    let frame = HeartbeatFrame { ts, heartbeat: hb };
    let room = frame.write(Count(0)).0.saturating_add(SLACK);
    append(buf, room, &frame)
}
