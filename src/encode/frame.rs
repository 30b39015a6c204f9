//! The frame around a record (`[tag, [[ts, body]], options]`) and its body, and how a
//! frame is put into a buffer: measured, written into the bytes its bound reserves, or
//! written again once the buffer has grown.

use super::frame_buf::FrameBuf;
use super::ip::write_ip;
use super::out::{Count, Cursor, Out};
use super::size_bound::SLACK;
use super::value::write_map;
use super::wire::{
    CALLER_ACCESS_LEVELS, CALLER_AGENT, CALLER_IDENTITIES, CALLER_IP_ADDRESS, CATEGORY_NAMES,
    CLUSTER, CUSTOM_DATA, DATA_CENTER, DESCRIPTION, ENV_IKEY, IDENTITY_ENTRY, IDENTITY_TYPE_NAMES,
    NAME_ENTRY, OPERATION_ACCESS_LEVEL, OPERATION_CATEGORIES, OPERATION_CATEGORY_DESCRIPTION,
    OPERATION_NAME, OPERATION_RESULT_DESCRIPTION, OPERATION_RESULT_FIELDS, OPERATION_TYPE_FIELDS,
    OPTIONS, REGION, TARGET_RESOURCES, head,
};
use crate::kinds::MessageKind;
use crate::record::Record;

#[inline(always)]
pub(super) fn write_body<O: Out>(mut out: O, service_tree_id: &str, r: &Record) -> O {
    let has_custom = !r.custom_data.is_empty();
    out.raw(&[if has_custom { 0x8e } else { 0x8d }]);

    out.key_str(&ENV_IKEY, service_tree_id);

    out.raw(&CALLER_IP_ADDRESS);
    write_ip(&mut out, r.caller_ip, &r.caller_ip_zone);

    out.raw(&CALLER_IDENTITIES);
    let ids = &r.caller_identities;
    out.map_len(ids.chunk_by(|a, b| a.kind == b.kind).count());
    for group in ids.chunk_by(|a, b| a.kind == b.kind) {
        if let Some(first) = group.first() {
            out.padded(&IDENTITY_TYPE_NAMES[first.kind as usize]);
        }
        out.array_len(group.len());
        for id in group {
            out.key_str(&IDENTITY_ENTRY, &id.identity);
            out.key_str(&DESCRIPTION, &id.description);
        }
    }

    out.raw(&OPERATION_CATEGORIES);
    out.array_len(r.categories.len());
    for c in r.categories.iter() {
        out.padded(&CATEGORY_NAMES[c as usize]);
    }

    if has_custom {
        out.raw(&CUSTOM_DATA);
        out = write_map(out, &r.custom_data);
    }

    out.raw(&TARGET_RESOURCES);
    let targets = &r.target_resources;
    out.map_len(
        targets
            .chunk_by(|a, b| a.resource_type == b.resource_type)
            .count(),
    );
    for group in targets.chunk_by(|a, b| a.resource_type == b.resource_type) {
        if let Some(first) = group.first() {
            out.str(&first.resource_type);
        }
        out.array_len(group.len());
        for t in group {
            out.key_str(&NAME_ENTRY, &t.name);
            out.key_str(&CLUSTER, &t.cluster);
            out.key_str(&DATA_CENTER, &t.data_center);
            out.key_str(&REGION, &t.region);
        }
    }

    out.raw(&CALLER_ACCESS_LEVELS);
    out.array_len(r.caller_access_levels.len());
    for l in r.caller_access_levels.iter() {
        out.str(l);
    }

    out.key_str(&OPERATION_ACCESS_LEVEL, &r.operation_access_level);
    out.key_str(&OPERATION_NAME, &r.operation_name);
    out.key_str(
        &OPERATION_RESULT_DESCRIPTION,
        &r.operation_result_description,
    );
    out.key_str(&CALLER_AGENT, &r.caller_agent);
    out.key_str(
        &OPERATION_CATEGORY_DESCRIPTION,
        &r.operation_category_description,
    );
    out.padded(&OPERATION_TYPE_FIELDS[r.operation_type.map_or(0, |t| t as usize)]);
    out.padded(&OPERATION_RESULT_FIELDS[r.operation_result.map_or(0, |t| t as usize)]);
    out
}

#[inline(always)]
pub(super) fn write_frame<O: Out>(
    mut out: O,
    kind: MessageKind,
    ts: i64,
    body: impl FnOnce(O) -> O,
) -> O {
    let mut start = [0u8; 23];
    start[..15].copy_from_slice(head(kind));
    start[15..].copy_from_slice(&ts.to_be_bytes());
    out.raw(&start);
    out = body(out);
    out.raw(&OPTIONS);
    out
}

/// A frame, written through any [`Out`].
pub(super) trait Frame {
    fn write<O: Out>(&self, out: O) -> O;
}

/// A record's frame.
pub(super) struct RecordFrame<'r> {
    pub(super) service_tree_id: &'r str,
    pub(super) ts: i64,
    pub(super) record: &'r Record,
}

impl Frame for RecordFrame<'_> {
    #[inline(always)]
    fn write<O: Out>(&self, out: O) -> O {
        write_frame(out, self.record.kind, self.ts, |o| {
            write_body(o, self.service_tree_id, self.record)
        })
    }
}

/// The exact size in bytes of the frame of `record` under `service_tree_id`, computed
/// without encoding or allocating.
pub fn encoded_len(service_tree_id: &str, record: &Record) -> usize {
    let frame = RecordFrame {
        service_tree_id,
        ts: 0,
        record,
    };
    frame.write(Count(0)).0
}

/// Writes `frame` into the `bound` bytes after the end of `b` and keeps what it used;
/// false (with `b` as it was) when the frame did not fit.
///
/// The cursor gets one byte more than the bound. A frame that fits leaves at least that
/// byte unused, so an empty cursor always means the frame did not fit, whatever its
/// bytes (a frame that did not fit stops at its first write that does not fit). Telling
/// the two apart by how the reserved bytes end would not do: custom data may hold the very bytes
/// a frame ends with.
#[inline(always)]
pub(super) fn fill<F: Frame>(b: &mut FrameBuf, bound: usize, frame: &F) -> bool {
    let start = b.len;
    let (given, left) = {
        let rest = b.tail(bound.saturating_add(1));
        let given = rest.len();
        (given, frame.write(Cursor { rest }).rest.len())
    };
    if left == 0 {
        return false;
    }
    b.len = start.saturating_add(given - left);
    true
}

/// Appends `frame` to `buf`, writing it into `bound` bytes (an upper bound of its size)
/// through a [`Cursor`]. Writing into bytes reserved at once costs less than growing a
/// vector write by write: each `extend_from_slice` checks the capacity and stores the
/// length in memory (docs/PERFORMANCE.md has the count).
///
/// A bound beyond the buffer's spare capacity (or too small, which cannot happen) is not
/// used: see [`refill`].
#[inline(always)]
#[must_use]
pub(super) fn append<F: Frame>(buf: &mut FrameBuf, bound: usize, frame: &F) -> bool {
    let spare = buf.spare();
    if bound >= spare || !fill(buf, bound, frame) {
        return refill(buf, spare, frame);
    }
    true
}

/// Writes `frame` into its exact size as [`Count`] measures it, plus [`SLACK`] as far as
/// the spare capacity allows: a buffer that has held the largest frame (and the one
/// byte more that `fill` asks for) never grows again. (A frame fits in its exact size: each padded write is followed by at least as
/// many bytes of the frame as it copies beyond its own.) Were that too small (the unit
/// tests show that the cursor and the counter agree), it is written into its size plus
/// the slack, and were that too small as well, nothing is appended.
#[cold]
#[inline(never)]
#[must_use]
pub(super) fn refill<F: Frame>(b: &mut FrameBuf, spare: usize, frame: &F) -> bool {
    let exact = frame.write(Count(0)).0;
    let bound = exact.saturating_add(SLACK);
    // `fill` takes one byte more than the bound.
    if exact < spare && fill(b, bound.min(spare - 1), frame) {
        return true;
    }
    fill(b, bound, frame)
}
