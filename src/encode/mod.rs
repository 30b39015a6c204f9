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
mod ip;
mod out;
mod wire;

pub(crate) use batch::Batch;

use crate::kinds::MessageKind;
use crate::record::{Record, Text, Value};
use crate::validate::ValidationError;

use ip::*;
use out::*;
use wire::*;

// The writers below are in line in optimised builds and out of line in debug builds,
// where every inlined local keeps its own stack slot: in line, they made each level of
// the recursive custom-data writers several kilobytes deep in a debug build (see
// `tests/deep_custom_data.rs`).

/// Writes a value that is not an array or a map; false for one that is.
#[cfg_attr(not(debug_assertions), inline(always))]
fn write_scalar<O: Out>(out: &mut O, value: &Value) -> bool {
    match value {
        Value::Nil => out.nil(),
        Value::Bool(b) => out.bool(*b),
        Value::Int(i) => out.i64(*i),
        Value::UInt(u) => out.u64(*u),
        Value::Float(f) => out.f64(*f),
        Value::Str(s) => out.str(s),
        Value::Bytes(b) => out.bin(b),
        Value::Array(_) | Value::Map(_) => return false,
    }
    true
}

// The recursive writers take and return the writer by value, so that the cursor stays
// in registers in their callers, and write scalars inline rather than a call per
// custom-data value.
#[cfg_attr(not(debug_assertions), inline(always))]
fn write_key<O: Out>(out: &mut O, key: &str) {
    out.str(key);
}

#[cfg_attr(not(debug_assertions), inline(always))]
fn write_array_len<O: Out>(out: &mut O, n: usize) {
    out.array_len(n);
}

#[cfg_attr(not(debug_assertions), inline(always))]
fn write_map_len<O: Out>(out: &mut O, n: usize) {
    out.map_len(n);
}

fn write_value<O: Out>(mut out: O, value: &Value) -> O {
    match value {
        Value::Array(items) => {
            write_array_len(&mut out, items.len());
            for item in items {
                if !write_scalar(&mut out, item) {
                    out = write_value(out, item);
                }
            }
        }
        Value::Map(entries) => return write_map(out, entries),
        scalar => {
            write_scalar(&mut out, scalar);
        }
    }
    out
}

fn write_map<O: Out>(mut out: O, entries: &[(Text, Value)]) -> O {
    write_map_len(&mut out, entries.len());
    for (k, v) in entries {
        write_key(&mut out, k);
        if !write_scalar(&mut out, v) {
            out = write_value(out, v);
        }
    }
    out
}

#[inline(always)]
fn write_body<O: Out>(mut out: O, service_tree_id: &str, r: &Record) -> O {
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
fn write_frame<O: Out>(mut out: O, kind: MessageKind, ts: i64, body: impl FnOnce(O) -> O) -> O {
    let mut start = [0u8; 23];
    start[..15].copy_from_slice(head(kind));
    start[15..].copy_from_slice(&ts.to_be_bytes());
    out.raw(&start);
    out = body(out);
    out.raw(&OPTIONS);
    out
}

/// The longest header of a string, bin, array or map.
const H: usize = 5;

/// The most any padded write (a [`Padded`] entry or the address block) copies beyond
/// the bytes that count.
const SLACK: usize = 32;

/// Room for everything in a record's frame but its collections and strings: the
/// envelope and options, the body's map header, every top-level key with the header of
/// its value, the longest address text with the `%` of a zone, the enum fields, and the
/// slack of the padded writes.
const RECORD_ROOM: usize = 23
    + OPTIONS.len()
    + 1
    + ENV_IKEY.len()
    + CALLER_IP_ADDRESS.len()
    + CALLER_IDENTITIES.len()
    + OPERATION_CATEGORIES.len()
    + CUSTOM_DATA.len()
    + TARGET_RESOURCES.len()
    + CALLER_ACCESS_LEVELS.len()
    + OPERATION_ACCESS_LEVEL.len()
    + OPERATION_NAME.len()
    + OPERATION_RESULT_DESCRIPTION.len()
    + CALLER_AGENT.len()
    + OPERATION_CATEGORY_DESCRIPTION.len()
    + 12 * H
    + 48
    + 24
    + 24
    + SLACK;

/// Room per caller identity besides its two strings: its type's name and array header
/// (as if each opened a group) and its map with both keys and headers.
const IDENTITY_ROOM: usize = 16 + H + IDENTITY_ENTRY.len() + H + DESCRIPTION.len() + H;

/// Room per target resource besides its five strings.
const TARGET_ROOM: usize =
    H + H + NAME_ENTRY.len() + H + CLUSTER.len() + H + DATA_CENTER.len() + H + REGION.len() + H;

/// Room for a value: scalars inline, arrays and maps by recursion.
#[inline(always)]
fn value_room(v: &Value) -> usize {
    match v {
        Value::Nil | Value::Bool(_) => 1,
        Value::Int(_) | Value::UInt(_) | Value::Float(_) => 9,
        Value::Str(s) => H + s.len(),
        Value::Bytes(b) => H + b.len(),
        Value::Array(items) => H + items_room(items),
        Value::Map(entries) => H + map_room(entries),
    }
}

fn items_room(items: &[Value]) -> usize {
    items.iter().map(value_room).sum()
}

fn map_room(entries: &[(Text, Value)]) -> usize {
    entries
        .iter()
        .map(|(k, v)| H + k.len() + value_room(v))
        .sum()
}

/// An upper bound of the size of a record's frame, from the lengths of its strings:
/// every header counted at its longest, every padded write at its full width.
#[inline(always)]
fn record_room(service_tree_id: &str, r: &Record) -> usize {
    let mut n = RECORD_ROOM
        + service_tree_id.len()
        + r.caller_ip_zone.len()
        + r.operation_access_level.len()
        + r.operation_name.len()
        + r.operation_result_description.len()
        + r.caller_agent.len()
        + r.operation_category_description.len()
        + r.categories.len() * 24;
    for id in r.caller_identities.iter() {
        n += IDENTITY_ROOM + id.identity.len() + id.description.len();
    }
    for t in r.target_resources.iter() {
        n += TARGET_ROOM
            + t.resource_type.len()
            + t.name.len()
            + t.cluster.len()
            + t.data_center.len()
            + t.region.len();
    }
    for l in r.caller_access_levels.iter() {
        n += H + l.len();
    }
    if !r.custom_data.is_empty() {
        n += map_room(&r.custom_data);
    }
    n
}

/// A frame, written through any [`Out`].
trait Frame {
    fn write<O: Out>(&self, out: O) -> O;
}

/// A record's frame.
struct RecordFrame<'r> {
    service_tree_id: &'r str,
    ts: i64,
    record: &'r Record,
}

impl Frame for RecordFrame<'_> {
    #[inline(always)]
    fn write<O: Out>(&self, out: O) -> O {
        write_frame(out, self.record.kind, self.ts, |o| {
            write_body(o, self.service_tree_id, self.record)
        })
    }
}

/// Writes `frame` into the `room` bytes after the end of `b` and keeps what it used;
/// false (with `b` as it was) when the frame did not fit.
///
/// The cursor gets one byte more than the room. A frame that fits leaves at least that
/// byte unused, so an empty cursor always means the frame did not fit, whatever its
/// bytes (a frame that did not fit stops at its first write that does not fit). Telling
/// the two apart by how the room ends would not do: custom data may hold the very bytes
/// a frame ends with.
#[inline(always)]
fn fill<F: Frame>(b: &mut Batch, room: usize, frame: &F) -> bool {
    let start = b.len;
    let (given, left) = {
        let rest = b.room(room.saturating_add(1));
        let given = rest.len();
        (given, frame.write(Cursor { rest }).rest.len())
    };
    if left == 0 {
        return false;
    }
    b.len = start.saturating_add(given - left);
    true
}

/// Appends `frame` to `buf`, writing it into `room` bytes (an upper bound of its size)
/// through a [`Cursor`]. Writing into a room taken at once costs less than growing a
/// vector write by write: each `extend_from_slice` checks the capacity and stores the
/// length in memory (docs/PERFORMANCE.md has the count).
///
/// A bound beyond the buffer's spare capacity (or too small, which cannot happen) is not
/// used: see [`refill`].
#[inline(always)]
#[must_use]
fn append<F: Frame>(buf: &mut Batch, room: usize, frame: &F) -> bool {
    let spare = buf.spare();
    if room >= spare || !fill(buf, room, frame) {
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
fn refill<F: Frame>(b: &mut Batch, spare: usize, frame: &F) -> bool {
    let exact = frame.write(Count(0)).0;
    let room = exact.saturating_add(SLACK);
    // `fill` takes one byte more than the room.
    if exact < spare && fill(b, room.min(spare - 1), frame) {
        return true;
    }
    fill(b, room, frame)
}

/// The body of a heartbeat frame: five strings describing the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// `AsmAuditServiceId`: the service tree id.
    pub service_id: Text,
    /// `AuditVersion`: the library's version.
    pub audit_version: Text,
    /// `OsVersion`: the kernel release, as `uname -r` prints it.
    pub os_version: Text,
    /// `Language`: the language and toolchain the client was built with.
    pub language: Text,
    /// `Destination`: `UnixDomainSocket`, `TCP` or `NoOP`.
    pub destination: Text,
}

impl Heartbeat {
    /// The heartbeat this library sends: its own version, this machine's kernel release
    /// and the Rust toolchain it was built with.
    pub fn current(service_id: impl Into<Text>, destination: impl Into<Text>) -> Self {
        let os = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        Heartbeat {
            service_id: service_id.into(),
            audit_version: Text::Borrowed(concat!("v", env!("CARGO_PKG_VERSION"))),
            os_version: Text::Owned(os.trim().to_owned()),
            language: Text::Borrowed(env!("GENEVA_AUDIT_RUSTC")),
            destination: destination.into(),
        }
    }
}

fn write_heartbeat<O: Out>(mut out: O, hb: &Heartbeat) -> O {
    out.raw(&[0x85]);
    out.key_str(&ASM_AUDIT_SERVICE_ID, &hb.service_id);
    out.key_str(&AUDIT_VERSION, &hb.audit_version);
    out.key_str(&OS_VERSION, &hb.os_version);
    out.key_str(&LANGUAGE, &hb.language);
    out.key_str(&DESTINATION, &hb.destination);
    out
}

/// A heartbeat's frame.
struct HeartbeatFrame<'h> {
    ts: i64,
    heartbeat: &'h Heartbeat,
}

impl Frame for HeartbeatFrame<'_> {
    fn write<O: Out>(&self, out: O) -> O {
        write_frame(out, MessageKind::Heartbeat, self.ts, |o| {
            write_heartbeat(o, self.heartbeat)
        })
    }
}

/// A diagnostic frame: an empty body.
struct DiagnosticFrame {
    ts: i64,
}

impl Frame for DiagnosticFrame {
    fn write<O: Out>(&self, out: O) -> O {
        write_frame(out, MessageKind::Diagnostic, self.ts, |mut o| {
            o.map_len(0);
            o
        })
    }
}

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

/// An upper bound of the size of `record`'s frame, from the lengths of its strings:
/// cheaper than [`encoded_len`] (no IP formatting, no grouping), and never below it.
pub fn encoded_len_bound(service_tree_id: &str, record: &Record) -> usize {
    record_room(service_tree_id, record)
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

/// Encodes frames into a buffer it owns and reuses: after the buffer has grown to the
/// largest frame, encoding allocates nothing.
///
/// ```
/// use geneva_audit::{CallerIdentityType, Encoder, OperationCategory, OperationResult, OperationType, Record};
///
/// let mut encoder = Encoder::new("e6c9fcb1-7f08-4c1d-9e7a-123456789abc").unwrap();
/// let record = Record::control_plane()
///     .caller_ip("203.0.113.42".parse().unwrap())
///     .add_caller_identity(CallerIdentityType::Upn, "alice@contoso.com", "signed-in user")
///     .add_operation_category(OperationCategory::ResourceManagement)
///     .add_target_resource("SubscriptionId", "4bb12743-2418-427f-92ae-96a11a4044fe")
///     .add_caller_access_level("Owner")
///     .operation_access_level("Owner")
///     .operation_name("DeleteStorageAccount")
///     .caller_agent("azure-cli/2.61.0")
///     .operation_type(OperationType::Delete)
///     .operation_result(OperationResult::Success);
/// let len = encoder.encoded_len(&record);
/// let frame = encoder.encode(1_700_000_000, &record);
/// assert_eq!(frame.len(), len);
/// assert_eq!(&frame[..12], b"\x93\xaaAsmAuditCP");
/// ```
#[derive(Debug)]
pub struct Encoder {
    buf: Batch,
    service_tree_id: Text,
}

impl Encoder {
    /// An encoder that writes `service_tree_id` as every record's `env_ikey`, as given.
    ///
    /// Unlike the [`Client`](crate::Client), which sends only UUIDs (in their canonical
    /// form, see [`validate_service_tree_id`](crate::validate_service_tree_id)), the
    /// encoder takes any id that is not blank, so that it can reproduce any frame.
    pub fn new(service_tree_id: impl Into<Text>) -> Result<Self, ValidationError> {
        let service_tree_id = service_tree_id.into();
        if service_tree_id.trim().is_empty() {
            return Err(ValidationError::MissingServiceTreeId);
        }
        Ok(Encoder {
            buf: Batch::with_capacity(4096),
            service_tree_id,
        })
    }

    /// The service tree id this encoder writes.
    pub fn service_tree_id(&self) -> &str {
        &self.service_tree_id
    }

    /// Encodes `record` with timestamp `ts` (Unix seconds) and returns the frame. The
    /// record is not validated here: call [`Record::validate`] first (which also keeps
    /// custom data within [`MAX_CUSTOM_DEPTH`](crate::MAX_CUSTOM_DEPTH) levels, which
    /// encoding recurses through). (Were the encoder's
    /// measuring and writing ever to disagree, the frame would be empty, never cut.)
    pub fn encode(&mut self, ts: i64, record: &Record) -> &[u8] {
        self.buf.clear();
        let _written = append_record(&mut self.buf, &self.service_tree_id, ts, record);
        self.buf.as_slice()
    }

    /// Encodes a heartbeat frame.
    pub fn encode_heartbeat(&mut self, ts: i64, heartbeat: &Heartbeat) -> &[u8] {
        self.buf.clear();
        let _written = append_heartbeat(&mut self.buf, ts, heartbeat);
        self.buf.as_slice()
    }

    /// Encodes a diagnostic frame, whose body is an empty map.
    pub fn encode_diagnostic(&mut self, ts: i64) -> &[u8] {
        self.buf.clear();
        let frame = DiagnosticFrame { ts };
        let room = frame.write(Count(0)).0 + SLACK;
        let _written = append(&mut self.buf, room, &frame);
        self.buf.as_slice()
    }

    /// The size of `record`'s frame, without encoding it.
    pub fn encoded_len(&self, record: &Record) -> usize {
        encoded_len(&self.service_tree_id, record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::{CallerIdentityType, OperationCategory, OperationResult, OperationType};
    use std::net::{IpAddr, Ipv4Addr};
    use strum::IntoEnumIterator;

    /// The bytes `f` writes through a cursor.
    fn written(f: impl FnOnce(&mut Cursor<'_>)) -> Vec<u8> {
        let mut v = vec![0u8; 1 << 19];
        let total = v.len();
        let mut c = Cursor { rest: &mut v[..] };
        f(&mut c);
        let left = c.rest.len();
        assert!(left > 0, "the cursor ran out of room");
        v.truncate(total - left);
        v
    }

    fn counted(f: impl FnOnce(&mut Count)) -> usize {
        let mut c = Count(0);
        f(&mut c);
        c.0
    }

    #[test]
    fn constants_are_msgpack_strings() {
        let b = written(|c| c.str("OperationCategoryDescription"));
        assert_eq!(b, OPERATION_CATEGORY_DESCRIPTION);
        assert_eq!(&HEAD_DP[..12], b"\x93\xaaAsmAuditDP");
        assert_eq!(&OPTIONS, b"\x81\xaaTimeFormat\xa8DateTime");
        assert_eq!(&IDENTITY_ENTRY, b"\x82\xa8Identity");
        assert_eq!(&NAME_ENTRY, b"\x84\xa4Name");
    }

    #[test]
    fn tables_hold_the_wire_names() {
        fn check<const W: usize>(p: &Padded<W>, prefix: &[u8], name: &str) {
            let mut expected = prefix.to_vec();
            rmp::encode::write_str(&mut expected, name).unwrap();
            assert_eq!(&p.bytes[..p.len], &expected[..], "{name}");
            assert!(p.bytes[p.len..].iter().all(|&b| b == 0));
        }
        for c in OperationCategory::iter() {
            check(&CATEGORY_NAMES[c as usize], b"", c.wire_name());
        }
        for t in CallerIdentityType::iter() {
            check(&IDENTITY_TYPE_NAMES[t as usize], b"", t.wire_name());
        }
        for t in OperationType::iter() {
            check(
                &OPERATION_TYPE_FIELDS[t as usize],
                &OPERATION_TYPE,
                t.wire_name(),
            );
        }
        for r in OperationResult::iter() {
            check(
                &OPERATION_RESULT_FIELDS[r as usize],
                &OPERATION_RESULT,
                r.wire_name(),
            );
        }
        check(&OPERATION_TYPE_FIELDS[0], &OPERATION_TYPE, "");
        check(&OPERATION_RESULT_FIELDS[0], &OPERATION_RESULT, "");
    }

    #[test]
    fn counted_sizes_match_written_sizes_at_every_boundary() {
        for n in [0usize, 1, 15, 16, 31, 32, 255, 256, 65535, 65536, 70000] {
            let s = "x".repeat(n);
            assert_eq!(
                written(|c| c.str(&s)).len(),
                counted(|c| c.str(&s)),
                "str {n}"
            );
            assert_eq!(
                written(|c| c.key_str(&DESCRIPTION, &s)).len(),
                counted(|c| c.key_str(&DESCRIPTION, &s)),
                "key_str {n}"
            );
            assert_eq!(
                written(|c| c.bin(s.as_bytes())).len(),
                counted(|c| c.bin(s.as_bytes())),
                "bin {n}"
            );
            let w = written(|c| {
                c.array_len(n);
                c.map_len(n);
            });
            let cnt = counted(|c| {
                c.array_len(n);
                c.map_len(n);
            });
            assert_eq!(w.len(), cnt, "headers {n}");
        }
    }

    #[test]
    fn direct_writes_match_rmp_at_every_boundary() {
        use rmp::encode as rmpe;
        for n in [0usize, 1, 15, 16, 31, 32, 255, 256, 65535, 65536, 70000] {
            let s = "y".repeat(n);
            let ours = written(|c| {
                c.str(&s);
                c.bin(s.as_bytes());
                c.array_len(n);
                c.map_len(n);
            });
            let mut theirs = Vec::new();
            rmpe::write_str(&mut theirs, &s).unwrap();
            rmpe::write_bin(&mut theirs, s.as_bytes()).unwrap();
            rmpe::write_array_len(&mut theirs, n as u32).unwrap();
            rmpe::write_map_len(&mut theirs, n as u32).unwrap();
            assert_eq!(ours, theirs, "length {n}");
            for (merged, key) in [
                (
                    written(|c| c.key_str(&IDENTITY_ENTRY, &s)),
                    &IDENTITY_ENTRY[..],
                ),
                (
                    written(|c| c.key_str(&OPERATION_CATEGORY_DESCRIPTION, &s)),
                    &OPERATION_CATEGORY_DESCRIPTION[..],
                ),
            ] {
                let mut apart = key.to_vec();
                rmpe::write_str(&mut apart, &s).unwrap();
                assert_eq!(merged, apart, "key_str {n}");
            }
        }
        for v in [0i64, 1, -1, 127, -33, i64::MIN, i64::MAX] {
            let ours = written(|c| {
                c.i64(v);
                c.u64(v as u64);
                c.f64(v as f64 / 3.0);
            });
            let mut theirs = Vec::new();
            rmpe::write_i64(&mut theirs, v).unwrap();
            rmpe::write_u64(&mut theirs, v as u64).unwrap();
            rmpe::write_f64(&mut theirs, v as f64 / 3.0).unwrap();
            assert_eq!(ours, theirs, "number {v}");
        }
        let ours = written(|c| {
            c.bool(true);
            c.bool(false);
            c.nil();
        });
        let mut theirs = Vec::new();
        rmpe::write_bool(&mut theirs, true).unwrap();
        rmpe::write_bool(&mut theirs, false).unwrap();
        rmpe::write_nil(&mut theirs).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn text_is_copied_at_every_length() {
        let src: Vec<u8> = (0..=200u8).collect();
        for n in 0..=200 {
            let mut dst = vec![0xffu8; n];
            copy_text(&mut dst, &src[..n]);
            assert_eq!(dst, &src[..n], "length {n}");
        }
        // Lengths that differ copy nothing.
        let mut dst = [0xffu8; 3];
        copy_text(&mut dst, &src[..4]);
        assert_eq!(dst, [0xff; 3]);
    }

    #[test]
    fn ipv4_fixstr_matches_display() {
        for o in 0..=255u8 {
            for ip in [
                Ipv4Addr::new(o, 0, 9, 10),
                Ipv4Addr::new(99, o, 100, 255),
                Ipv4Addr::new(203, 0, 113, o),
                Ipv4Addr::new(o, o, o, o),
            ] {
                let mut expected = Vec::new();
                rmp::encode::write_str(&mut expected, &ip.to_string()).unwrap();
                assert_eq!(written(|c| c.ipv4(ip)), expected, "{ip}");
                assert_eq!(counted(|c| c.ipv4(ip)), expected.len(), "{ip}");
            }
        }
    }

    #[test]
    fn addresses_with_zones_are_one_string() {
        let v4 = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        let v6 = Some("fe80::1".parse().unwrap());
        for (ip, zone, text) in [
            (v4, "eth0", "192.0.2.1%eth0".to_owned()),
            (v6, "eth0", "fe80::1%eth0".to_owned()),
            (v6, "", "fe80::1".to_owned()),
            (None, "", String::new()),
            (
                v4,
                &"z".repeat(40)[..],
                format!("192.0.2.1%{}", "z".repeat(40)),
            ),
        ] {
            let mut expected = Vec::new();
            rmp::encode::write_str(&mut expected, &text).unwrap();
            assert_eq!(written(|c| write_ip(c, ip, zone)), expected, "{text}");
            assert_eq!(counted(|c| write_ip(c, ip, zone)), expected.len(), "{text}");
        }
    }

    fn sample_record() -> Record {
        Record::control_plane()
            .caller_ip(IpAddr::V4(Ipv4Addr::new(10, 1, 200, 3)))
            .add_caller_identity(CallerIdentityType::Upn, "alice@contoso.com", "user")
            .add_caller_identity(CallerIdentityType::System, "x".repeat(300), "d")
            .add_operation_category(OperationCategory::Euii)
            .add_operation_category(OperationCategory::ProvisioningManagement)
            .custom(
                "nested",
                vec![Value::from(1i64), Value::from(vec![Value::Nil])],
            )
            .custom("map", vec![(Text::from("k"), Value::from(&b"bytes"[..]))])
            .custom("f", 1.5f64)
            .add_target_resource("T", "n")
            .add_caller_access_level("Owner")
            .operation_access_level("Owner")
            .operation_name("Op")
            .caller_agent("agent")
            .operation_type(OperationType::Delete)
            .operation_result(OperationResult::Failure)
            .operation_result_description("y".repeat(70000))
    }

    #[test]
    fn room_bounds_the_frame_with_its_slack() {
        let records = [
            sample_record(),
            Record::data_plane(),
            sample_record()
                .caller_ip("fe80::1".parse().unwrap())
                .caller_ip_zone("eth0"),
            sample_record().caller_ip_zone("z".repeat(100)),
        ];
        for r in &records {
            let exact = encoded_len("sid", r);
            assert!(record_room("sid", r) >= exact + SLACK);
        }
    }

    #[test]
    fn a_cut_frame_is_never_taken_for_whole_whatever_its_bytes() {
        // Custom data holding the options map: the frame has the bytes it ends with in
        // its middle. No room short of the frame may pass for it.
        let r = Record::data_plane().custom("TimeFormat", "DateTime");
        let frame = RecordFrame {
            service_tree_id: "sid",
            ts: 7,
            record: &r,
        };
        let whole = encoded_len("sid", &r);
        let mut full = Batch::default();
        assert!(fill(&mut full, whole, &frame));
        let bytes = full.as_slice().to_vec();
        let inner = bytes
            .windows(OPTIONS.len())
            .position(|w| w == OPTIONS)
            .map(|at| at + OPTIONS.len());
        assert!(
            inner.is_some_and(|at| at < whole),
            "the map is inside the frame"
        );
        for room in 0..whole {
            let mut b = Batch::default();
            assert!(!fill(&mut b, room, &frame), "room {room} of {whole}");
            assert!(b.as_slice().is_empty());
        }
    }

    #[test]
    fn appends_after_earlier_frames_and_survives_a_short_room() {
        let r = sample_record();
        let mut buf = Batch::default();
        assert!(append_record(&mut buf, "sid", 7, &r));
        let one = buf.as_slice().to_vec();
        assert_eq!(one.len(), encoded_len("sid", &r));
        assert!(append_record(&mut buf, "sid", 7, &r));
        assert_eq!(buf.as_slice(), [&one[..], &one[..]].concat());

        // Too little room: the frame is written again into its counted size.
        let frame = RecordFrame {
            service_tree_id: "sid",
            ts: 7,
            record: &r,
        };
        for room in [0, 1, 20, 21, 100, one.len() - 1, one.len(), one.len() + 1] {
            let mut short = Batch::default();
            short.extend_from_slice(b"xy");
            assert!(append(&mut short, room, &frame));
            assert_eq!(
                short.as_slice(),
                [&b"xy"[..], &one[..]].concat(),
                "room {room}"
            );
        }

        // Exactly the frame's size, or one byte less.
        let mut v = Batch::default();
        v.extend_from_slice(b"xy");
        assert!(fill(&mut v, one.len(), &frame));
        assert_eq!(v.as_slice(), [&b"xy"[..], &one[..]].concat());
        for room in [0, 20, 21, one.len() - 1] {
            let mut v = Batch::default();
            v.extend_from_slice(b"xy");
            assert!(!fill(&mut v, room, &frame), "room {room}");
            assert_eq!(v.as_slice(), b"xy");
        }
        // The same, over stale bytes that end like a frame: a buffer that held two
        // frames, cut back to "xy".
        for room in [0, 20, 21, one.len() - 1] {
            let mut v = Batch::default();
            v.extend_from_slice(b"xy");
            assert!(fill(&mut v, one.len(), &frame));
            assert!(fill(&mut v, one.len(), &frame));
            v.len = 2;
            assert!(!fill(&mut v, room, &frame), "stale, room {room}");
            assert_eq!(v.as_slice(), b"xy");
            assert!(fill(&mut v, one.len() + 5, &frame), "stale, room {room}");
            assert_eq!(v.as_slice(), [&b"xy"[..], &one[..]].concat());
        }

        // A buffer whose spare capacity is the frame and one byte does not grow.
        let mut exact = Batch::with_capacity(2 + one.len() + 1);
        exact.extend_from_slice(b"xy");
        let capacity = exact.bytes.capacity();
        assert!(append_record(&mut exact, "sid", 7, &r));
        assert_eq!(exact.as_slice(), [&b"xy"[..], &one[..]].concat());
        assert_eq!(exact.bytes.capacity(), capacity);
    }
}
