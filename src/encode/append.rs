//! The crate's way into the encoder: a record's or a heartbeat's frame appended to a
//! [`FrameBuf`], each written into the bytes its size bound reserves.

use super::frame::{Frame, RecordFrame, append};
use super::frame_buf::FrameBuf;
use super::heartbeat::{Heartbeat, HeartbeatFrame};
use super::out::Count;
use super::size_bound::{SLACK, record_bound};
use crate::record::Record;

/// Appends a record's frame to `buf`. The caller has validated the record.
///
/// Returns false, having appended nothing, if the frame could not be written (the
/// cursor and the counter disagreed: a bug the unit tests and the fuzzer look for); the
/// caller must account for the record rather than lose it silently.
#[must_use]
pub(crate) fn append_record(
    buf: &mut FrameBuf,
    service_tree_id: &str,
    ts: i64,
    record: &Record,
) -> bool {
    append_record_in(
        buf,
        record_bound(service_tree_id, record),
        service_tree_id,
        ts,
        record,
    )
}

/// [`append_record`] with the frame's size bound already known:
/// [`encoded_len_bound`](crate::encoded_len_bound) or the exact size, as the client's
/// `try_send` measured it on the caller's thread.
#[must_use]
pub(crate) fn append_record_in(
    buf: &mut FrameBuf,
    bound: usize,
    service_tree_id: &str,
    ts: i64,
    record: &Record,
) -> bool {
    let frame = RecordFrame {
        service_tree_id,
        ts,
        record,
    };
    append(buf, bound, &frame)
}

/// Appends a heartbeat frame to `buf`. Heartbeats are rare: their bound is their
/// counted size.
#[must_use]
pub(crate) fn append_heartbeat(buf: &mut FrameBuf, ts: i64, hb: &Heartbeat) -> bool {
    let frame = HeartbeatFrame { ts, heartbeat: hb };
    let bound = frame.write(Count(0)).0.saturating_add(SLACK);
    append(buf, bound, &frame)
}
