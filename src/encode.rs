//! The frame encoder: `[tag, [[ts, body]], {"TimeFormat":"DateTime"}]`, written byte by
//! byte (the bytes `rmp`'s low-level writers produce, checked by the tests) into a buffer
//! that is reused from frame to frame.
//!
//! One walk over the record serves both encoding and measuring: it is generic over an
//! [`Out`] that either writes bytes (into a [`ByteBuf`]) or only counts them, so
//! [`encoded_len`] can never disagree with what is written. The record is only read, and
//! nothing is allocated once the buffer has grown to the largest frame.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use rmp::encode::ByteBuf;

use crate::kinds::MessageKind;
use crate::record::{Record, Text, Value};
use crate::validate::{ValidationError, validate_service_tree_id};

/// Pre-encodes a short key as a msgpack fixstr at compile time.
const fn fixstr<const N: usize>(s: &str) -> [u8; N] {
    let b = s.as_bytes();
    assert!(b.len() + 1 == N && b.len() < 32);
    let mut out = [0u8; N];
    out[0] = 0xa0 | b.len() as u8;
    let mut i = 0;
    while i < b.len() {
        out[i + 1] = b[i];
        i += 1;
    }
    out
}

macro_rules! keys {
    ($($name:ident = $s:literal;)*) => {$(
        const $name: [u8; $s.len() + 1] = fixstr($s);
    )*};
}

keys! {
    ENV_IKEY = "env_ikey";
    CALLER_IP_ADDRESS = "CallerIpAddress";
    CALLER_IDENTITIES = "CallerIdentities";
    OPERATION_CATEGORIES = "OperationCategories";
    CUSTOM_DATA = "CustomData";
    TARGET_RESOURCES = "TargetResources";
    CALLER_ACCESS_LEVELS = "CallerAccessLevels";
    OPERATION_ACCESS_LEVEL = "OperationAccessLevel";
    OPERATION_NAME = "OperationName";
    OPERATION_RESULT_DESCRIPTION = "OperationResultDescription";
    CALLER_AGENT = "CallerAgent";
    OPERATION_CATEGORY_DESCRIPTION = "OperationCategoryDescription";
    OPERATION_TYPE = "OperationType";
    OPERATION_RESULT = "OperationResult";
    IDENTITY = "Identity";
    DESCRIPTION = "Description";
    NAME = "Name";
    CLUSTER = "Cluster";
    DATA_CENTER = "DataCenter";
    REGION = "Region";
    ASM_AUDIT_SERVICE_ID = "AsmAuditServiceId";
    AUDIT_VERSION = "AuditVersion";
    OS_VERSION = "OsVersion";
    LANGUAGE = "Language";
    DESTINATION = "Destination";
    TIME_FORMAT = "TimeFormat";
    DATE_TIME = "DateTime";
}

/// `first` followed by `rest`, at compile time.
const fn prefixed<const N: usize, const M: usize>(first: u8, rest: [u8; N]) -> [u8; M] {
    assert!(M == N + 1);
    let mut out = [0u8; M];
    out[0] = first;
    let mut i = 0;
    while i < N {
        out[i + 1] = rest[i];
        i += 1;
    }
    out
}

/// A caller identity's map header and its first key.
const IDENTITY_ENTRY: [u8; IDENTITY.len() + 1] = prefixed(0x82, IDENTITY);
/// A target resource's map header and its first key.
const NAME_ENTRY: [u8; NAME.len() + 1] = prefixed(0x84, NAME);

/// `[` tag `[[` and the int64 marker of the timestamp: 93 aa <tag> 91 92 d3.
const fn envelope_head(tag: &str) -> [u8; 15] {
    let t: [u8; 11] = fixstr(tag);
    let mut out = [0u8; 15];
    out[0] = 0x93;
    let mut i = 0;
    while i < 11 {
        out[i + 1] = t[i];
        i += 1;
    }
    out[12] = 0x91;
    out[13] = 0x92;
    out[14] = 0xd3;
    out
}

const HEAD_DP: [u8; 15] = envelope_head("AsmAuditDP");
const HEAD_CP: [u8; 15] = envelope_head("AsmAuditCP");
const HEAD_HB: [u8; 15] = envelope_head("AsmAuditHB");
const HEAD_DG: [u8; 15] = envelope_head("AsmAuditDG");

/// The options map closing every frame: `{"TimeFormat": "DateTime"}`.
const OPTIONS: [u8; 21] = {
    let mut out = [0u8; 21];
    out[0] = 0x81;
    let mut i = 0;
    while i < TIME_FORMAT.len() {
        out[1 + i] = TIME_FORMAT[i];
        i += 1;
    }
    let mut j = 0;
    while j < DATE_TIME.len() {
        out[1 + TIME_FORMAT.len() + j] = DATE_TIME[j];
        j += 1;
    }
    out
};

fn head(kind: MessageKind) -> &'static [u8; 15] {
    match kind {
        MessageKind::DataPlane => &HEAD_DP,
        MessageKind::ControlPlane => &HEAD_CP,
        MessageKind::Heartbeat => &HEAD_HB,
        MessageKind::Diagnostic => &HEAD_DG,
    }
}

/// Where a frame goes: a buffer that receives bytes, or a counter that only measures.
trait Out {
    fn raw(&mut self, bytes: &[u8]);
    fn str(&mut self, s: &str);
    /// A pre-encoded key (or other constant bytes) followed by a string.
    #[inline(always)]
    fn key_str<const N: usize>(&mut self, key: &[u8; N], s: &str) {
        self.raw(key);
        self.str(s);
    }
    fn array_len(&mut self, n: usize);
    fn map_len(&mut self, n: usize);
    fn bin(&mut self, b: &[u8]);
    fn i64(&mut self, v: i64);
    fn u64(&mut self, v: u64);
    fn f64(&mut self, v: f64);
    fn bool(&mut self, v: bool);
    fn nil(&mut self);
}

/// msgpack lengths are 32-bit; validation and the frame size limit keep every length
/// far below that, and saturating here keeps the two walks in step regardless.
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Appends a msgpack length header: the fix form (`fix | n`) when `n <= fix_max`, else
/// the marker `m8` with one byte (when there is an 8-bit form), `m16` with two or `m32`
/// with four. Each form is a constant-size write, so none of them calls `memcpy`.
#[inline(always)]
fn put_len(v: &mut Vec<u8>, n: usize, fix: Option<(u8, usize)>, m8: Option<u8>, m16: u8, m32: u8) {
    if let Some((fix, fix_max)) = fix {
        if n <= fix_max {
            v.push(fix | n as u8);
            return;
        }
    }
    if let Some(m8) = m8 {
        if n <= u8::MAX as usize {
            v.extend_from_slice(&[m8, n as u8]);
            return;
        }
    }
    if n <= u16::MAX as usize {
        let [a, b] = (n as u16).to_be_bytes();
        v.extend_from_slice(&[m16, a, b]);
    } else {
        let [a, b, c, d] = len32(n).to_be_bytes();
        v.extend_from_slice(&[m32, a, b, c, d]);
    }
}

/// A marker byte followed by an 8-byte big-endian value.
#[inline(always)]
fn put9(buf: &mut ByteBuf, marker: u8, be: [u8; 8]) {
    let mut b = [marker; 9];
    b[1..].copy_from_slice(&be);
    buf.as_mut_vec().extend_from_slice(&b);
}

// The same bytes `rmp::encode::write_str_len`, `write_array_len`, `write_map_len`,
// `write_bin_len`, `write_i64`, `write_u64` and `write_f64` produce (the unit tests
// check), written directly: going through `rmp`'s writer one marker and one length at a
// time, and copying headers of variable length, cost about a quarter of the encoding
// time.
impl Out for ByteBuf {
    #[inline(always)]
    fn raw(&mut self, bytes: &[u8]) {
        self.as_mut_vec().extend_from_slice(bytes);
    }
    #[inline(always)]
    fn str(&mut self, s: &str) {
        let v = self.as_mut_vec();
        put_len(v, s.len(), Some((0xa0, 31)), Some(0xd9), 0xda, 0xdb);
        v.extend_from_slice(s.as_bytes());
    }
    /// The key and a fixstr header in one constant-size write: every write through the
    /// vector costs a capacity check and a length update.
    #[inline(always)]
    fn key_str<const N: usize>(&mut self, key: &[u8; N], s: &str) {
        if N < 32 && s.len() < 32 {
            let mut head = [0u8; 32];
            head[..N].copy_from_slice(key);
            head[N] = 0xa0 | s.len() as u8;
            let v = self.as_mut_vec();
            v.extend_from_slice(&head[..N + 1]);
            v.extend_from_slice(s.as_bytes());
        } else {
            self.raw(key);
            self.str(s);
        }
    }
    #[inline(always)]
    fn array_len(&mut self, n: usize) {
        put_len(self.as_mut_vec(), n, Some((0x90, 15)), None, 0xdc, 0xdd);
    }
    #[inline(always)]
    fn map_len(&mut self, n: usize) {
        put_len(self.as_mut_vec(), n, Some((0x80, 15)), None, 0xde, 0xdf);
    }
    #[inline]
    fn bin(&mut self, b: &[u8]) {
        let v = self.as_mut_vec();
        v.reserve(b.len() + 5);
        put_len(v, b.len(), None, Some(0xc4), 0xc5, 0xc6);
        v.extend_from_slice(b);
    }
    #[inline]
    fn i64(&mut self, v: i64) {
        put9(self, 0xd3, v.to_be_bytes());
    }
    #[inline]
    fn u64(&mut self, v: u64) {
        put9(self, 0xcf, v.to_be_bytes());
    }
    #[inline]
    fn f64(&mut self, v: f64) {
        put9(self, 0xcb, v.to_bits().to_be_bytes());
    }
    #[inline]
    fn bool(&mut self, v: bool) {
        self.as_mut_vec().push(if v { 0xc3 } else { 0xc2 });
    }
    #[inline]
    fn nil(&mut self) {
        self.as_mut_vec().push(0xc0);
    }
}

/// Counts the bytes a frame would take.
struct Count(usize);

fn header_len(n: usize, fix_max: usize) -> usize {
    if n <= fix_max {
        1
    } else if n <= u16::MAX as usize {
        3
    } else {
        5
    }
}

impl Out for Count {
    fn raw(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
    fn str(&mut self, s: &str) {
        let n = s.len();
        self.0 += n + if n < 32 {
            1
        } else if n <= u8::MAX as usize {
            2
        } else {
            header_len(n, 0)
        };
    }
    fn array_len(&mut self, n: usize) {
        self.0 += header_len(n, 15);
    }
    fn map_len(&mut self, n: usize) {
        self.0 += header_len(n, 15);
    }
    fn bin(&mut self, b: &[u8]) {
        let n = b.len();
        self.0 += n + if n <= u8::MAX as usize {
            2
        } else {
            header_len(n, 0)
        };
    }
    fn i64(&mut self, _: i64) {
        self.0 += 9;
    }
    fn u64(&mut self, _: u64) {
        self.0 += 9;
    }
    fn f64(&mut self, _: f64) {
        self.0 += 9;
    }
    fn bool(&mut self, _: bool) {
        self.0 += 1;
    }
    fn nil(&mut self) {
        self.0 += 1;
    }
}

/// Room for the longest IPv6 text (45 bytes), a `%` and a short zone; a longer zone is
/// written separately.
struct IpText {
    buf: [u8; 48],
    len: usize,
}

impl std::fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let slot = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Dotted-decimal text of an IPv4 address, as `Display` writes it, without going through
/// the formatting machinery (which cost about a fifth of the encoding time).
fn ipv4_text(ip: Ipv4Addr, buf: &mut [u8; 48]) -> usize {
    let mut n = 0;
    for (i, o) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if o >= 100 {
            buf[n] = b'0' + o / 100;
            n += 1;
        }
        if o >= 10 {
            buf[n] = b'0' + o / 10 % 10;
            n += 1;
        }
        buf[n] = b'0' + o % 10;
        n += 1;
    }
    n
}

fn write_ip<O: Out>(out: &mut O, ip: Option<IpAddr>, zone: &str) {
    let mut text = IpText {
        buf: [0; 48],
        len: 0,
    };
    // Validation refuses a record without an address; an unvalidated one is written as
    // the empty string rather than inventing a value.
    match ip {
        Some(IpAddr::V4(v4)) => text.len = ipv4_text(v4, &mut text.buf),
        Some(v6) => {
            let formatted = write!(text, "{v6}").is_ok();
            text.len = if formatted { text.len } else { 0 };
        }
        None => {}
    }
    let addr = &text.buf[..text.len];
    if zone.is_empty() {
        out_str_parts(out, addr.len(), &[addr]);
    } else {
        // `addr%zone`, written as one string without joining them in memory.
        let total = addr.len() + 1 + zone.len();
        out_str_parts(out, total, &[addr, b"%", zone.as_bytes()]);
    }
}

/// Writes one string given in parts (the header for their total length, then each part).
fn out_str_parts<O: Out>(out: &mut O, total: usize, parts: &[&[u8]]) {
    let mut hdr = [0u8; 5];
    let hlen = str_header(total, &mut hdr);
    out.raw(&hdr[..hlen]);
    for p in parts {
        out.raw(p);
    }
}

/// The msgpack str header for a string of `n` bytes; returns its length.
fn str_header(n: usize, hdr: &mut [u8; 5]) -> usize {
    if n < 32 {
        hdr[0] = 0xa0 | n as u8;
        1
    } else if n <= u8::MAX as usize {
        hdr[0] = 0xd9;
        hdr[1] = n as u8;
        2
    } else if n <= u16::MAX as usize {
        hdr[0] = 0xda;
        hdr[1..3].copy_from_slice(&(n as u16).to_be_bytes());
        3
    } else {
        hdr[0] = 0xdb;
        hdr[1..5].copy_from_slice(&len32(n).to_be_bytes());
        5
    }
}

fn write_value<O: Out>(out: &mut O, value: &Value) {
    match value {
        Value::Nil => out.nil(),
        Value::Bool(b) => out.bool(*b),
        Value::Int(i) => out.i64(*i),
        Value::UInt(u) => out.u64(*u),
        Value::Float(f) => out.f64(*f),
        Value::Str(s) => out.str(s),
        Value::Bytes(b) => out.bin(b),
        Value::Array(items) => {
            out.array_len(items.len());
            for item in items {
                write_value(out, item);
            }
        }
        Value::Map(entries) => write_map(out, entries),
    }
}

fn write_map<O: Out>(out: &mut O, entries: &[(Text, Value)]) {
    out.map_len(entries.len());
    for (k, v) in entries {
        out.str(k);
        write_value(out, v);
    }
}

fn write_body<O: Out>(out: &mut O, service_tree_id: &str, r: &Record) {
    let has_custom = !r.custom_data.is_empty();
    out.raw(&[if has_custom { 0x8e } else { 0x8d }]);

    out.key_str(&ENV_IKEY, service_tree_id);

    out.raw(&CALLER_IP_ADDRESS);
    write_ip(out, r.caller_ip, &r.caller_ip_zone);

    out.raw(&CALLER_IDENTITIES);
    let ids = &r.caller_identities;
    out.map_len(ids.chunk_by(|a, b| a.kind == b.kind).count());
    for group in ids.chunk_by(|a, b| a.kind == b.kind) {
        out.str(group[0].kind.wire_name());
        out.array_len(group.len());
        for id in group {
            out.key_str(&IDENTITY_ENTRY, &id.identity);
            out.key_str(&DESCRIPTION, &id.description);
        }
    }

    out.raw(&OPERATION_CATEGORIES);
    out.array_len(r.categories.len());
    for c in r.categories.iter() {
        out.str(c.wire_name());
    }

    if has_custom {
        out.raw(&CUSTOM_DATA);
        write_map(out, &r.custom_data);
    }

    out.raw(&TARGET_RESOURCES);
    let targets = &r.target_resources;
    out.map_len(
        targets
            .chunk_by(|a, b| a.resource_type == b.resource_type)
            .count(),
    );
    for group in targets.chunk_by(|a, b| a.resource_type == b.resource_type) {
        out.str(&group[0].resource_type);
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
    out.key_str(
        &OPERATION_TYPE,
        r.operation_type.map_or("", |t| t.wire_name()),
    );
    out.key_str(
        &OPERATION_RESULT,
        r.operation_result.map_or("", |t| t.wire_name()),
    );
}

fn write_frame<O: Out>(out: &mut O, kind: MessageKind, ts: i64, body: impl FnOnce(&mut O)) {
    let mut start = [0u8; 23];
    start[..15].copy_from_slice(head(kind));
    start[15..].copy_from_slice(&ts.to_be_bytes());
    out.raw(&start);
    body(out);
    out.raw(&OPTIONS);
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

fn write_heartbeat<O: Out>(out: &mut O, hb: &Heartbeat) {
    out.raw(&[0x85]);
    out.key_str(&ASM_AUDIT_SERVICE_ID, &hb.service_id);
    out.key_str(&AUDIT_VERSION, &hb.audit_version);
    out.key_str(&OS_VERSION, &hb.os_version);
    out.key_str(&LANGUAGE, &hb.language);
    out.key_str(&DESTINATION, &hb.destination);
}

/// Appends a record's frame to `buf`. The caller has validated the record.
pub(crate) fn append_record(buf: &mut ByteBuf, service_tree_id: &str, ts: i64, record: &Record) {
    write_frame(buf, record.kind, ts, |o| {
        write_body(o, service_tree_id, record)
    });
}

/// Appends a heartbeat frame to `buf`.
pub(crate) fn append_heartbeat(buf: &mut ByteBuf, ts: i64, hb: &Heartbeat) {
    write_frame(buf, MessageKind::Heartbeat, ts, |o| write_heartbeat(o, hb));
}

/// The exact size in bytes of the frame of `record` under `service_tree_id`, computed
/// without encoding or allocating.
pub fn encoded_len(service_tree_id: &str, record: &Record) -> usize {
    let mut count = Count(0);
    write_frame(&mut count, record.kind, 0, |o| {
        write_body(o, service_tree_id, record)
    });
    count.0
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
    buf: ByteBuf,
    service_tree_id: Text,
}

impl Encoder {
    /// An encoder that writes `service_tree_id` as every record's `env_ikey`.
    pub fn new(service_tree_id: impl Into<Text>) -> Result<Self, ValidationError> {
        let service_tree_id = service_tree_id.into();
        validate_service_tree_id(&service_tree_id)?;
        Ok(Encoder {
            buf: ByteBuf::with_capacity(4096),
            service_tree_id,
        })
    }

    /// The service tree id this encoder writes.
    pub fn service_tree_id(&self) -> &str {
        &self.service_tree_id
    }

    /// Encodes `record` with timestamp `ts` (Unix seconds) and returns the frame. The
    /// record is not validated here: call [`Record::validate`] first.
    pub fn encode(&mut self, ts: i64, record: &Record) -> &[u8] {
        self.buf.as_mut_vec().clear();
        append_record(&mut self.buf, &self.service_tree_id, ts, record);
        self.buf.as_slice()
    }

    /// Encodes a heartbeat frame.
    pub fn encode_heartbeat(&mut self, ts: i64, heartbeat: &Heartbeat) -> &[u8] {
        self.buf.as_mut_vec().clear();
        append_heartbeat(&mut self.buf, ts, heartbeat);
        self.buf.as_slice()
    }

    /// Encodes a diagnostic frame, whose body is an empty map.
    pub fn encode_diagnostic(&mut self, ts: i64) -> &[u8] {
        self.buf.as_mut_vec().clear();
        write_frame(&mut self.buf, MessageKind::Diagnostic, ts, |o| o.map_len(0));
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

    #[test]
    fn constants_are_msgpack_strings() {
        let mut b = ByteBuf::new();
        b.str("OperationCategoryDescription");
        assert_eq!(b.as_slice(), &OPERATION_CATEGORY_DESCRIPTION);
        assert_eq!(&HEAD_DP[..12], b"\x93\xaaAsmAuditDP");
        assert_eq!(&OPTIONS, b"\x81\xaaTimeFormat\xa8DateTime");
    }

    #[test]
    fn counted_sizes_match_written_sizes_at_every_boundary() {
        for n in [0usize, 1, 31, 32, 255, 256, 65535, 65536, 70000] {
            let s = "x".repeat(n);
            let mut b = ByteBuf::new();
            let mut c = Count(0);
            b.str(&s);
            c.str(&s);
            assert_eq!(b.as_slice().len(), c.0, "str {n}");
            let mut b = ByteBuf::new();
            let mut c = Count(0);
            b.bin(s.as_bytes());
            c.bin(s.as_bytes());
            assert_eq!(b.as_slice().len(), c.0, "bin {n}");
            let mut b = ByteBuf::new();
            let mut c = Count(0);
            b.array_len(n);
            c.array_len(n);
            b.map_len(n);
            c.map_len(n);
            assert_eq!(b.as_slice().len(), c.0, "headers {n}");
            let mut hdr = [0u8; 5];
            let mut b = ByteBuf::new();
            b.str(&s);
            let h = str_header(n, &mut hdr);
            assert_eq!(&b.as_slice()[..h], &hdr[..h], "header {n}");
        }
    }

    #[test]
    fn direct_writes_match_rmp_at_every_boundary() {
        use rmp::encode as rmpe;
        for n in [0usize, 1, 15, 16, 31, 32, 255, 256, 65535, 65536, 70000] {
            let s = "y".repeat(n);
            let mut ours = ByteBuf::new();
            let mut theirs = Vec::new();
            ours.str(&s);
            rmpe::write_str(&mut theirs, &s).unwrap();
            ours.bin(s.as_bytes());
            rmpe::write_bin(&mut theirs, s.as_bytes()).unwrap();
            ours.array_len(n);
            rmpe::write_array_len(&mut theirs, n as u32).unwrap();
            ours.map_len(n);
            rmpe::write_map_len(&mut theirs, n as u32).unwrap();
            assert_eq!(ours.as_slice(), &theirs[..], "length {n}");
        }
        for v in [0i64, 1, -1, 127, -33, i64::MIN, i64::MAX] {
            let mut ours = ByteBuf::new();
            let mut theirs = Vec::new();
            ours.i64(v);
            rmpe::write_i64(&mut theirs, v).unwrap();
            ours.u64(v as u64);
            rmpe::write_u64(&mut theirs, v as u64).unwrap();
            ours.f64(v as f64 / 3.0);
            rmpe::write_f64(&mut theirs, v as f64 / 3.0).unwrap();
            assert_eq!(ours.as_slice(), &theirs[..], "number {v}");
        }
        for key in [&IDENTITY_ENTRY[..], &OPERATION_CATEGORY_DESCRIPTION[..]] {
            for n in [0usize, 1, 31, 32, 300] {
                let s = "z".repeat(n);
                let mut merged = ByteBuf::new();
                let mut apart = ByteBuf::new();
                match key.len() {
                    10 => merged.key_str(&IDENTITY_ENTRY, &s),
                    _ => merged.key_str(&OPERATION_CATEGORY_DESCRIPTION, &s),
                }
                apart.raw(key);
                apart.str(&s);
                assert_eq!(merged.as_slice(), apart.as_slice(), "key_str {n}");
                let mut c = Count(0);
                c.key_str(&IDENTITY_ENTRY, &s);
                assert_eq!(
                    c.0,
                    IDENTITY_ENTRY.len() + apart.as_slice().len() - key.len()
                );
            }
        }
        assert_eq!(&IDENTITY_ENTRY, b"\x82\xa8Identity");
        assert_eq!(&NAME_ENTRY, b"\x84\xa4Name");
        let mut ours = ByteBuf::new();
        let mut theirs = Vec::new();
        ours.bool(true);
        ours.bool(false);
        ours.nil();
        rmpe::write_bool(&mut theirs, true).unwrap();
        rmpe::write_bool(&mut theirs, false).unwrap();
        rmpe::write_nil(&mut theirs).unwrap();
        assert_eq!(ours.as_slice(), &theirs[..]);
    }

    #[test]
    fn ipv4_text_matches_display() {
        let mut buf = [0u8; 48];
        for o in 0..=255u8 {
            for ip in [
                Ipv4Addr::new(o, 0, 9, 10),
                Ipv4Addr::new(99, o, 100, 255),
                Ipv4Addr::new(203, 0, 113, o),
            ] {
                let n = ipv4_text(ip, &mut buf);
                assert_eq!(&buf[..n], ip.to_string().as_bytes());
            }
        }
    }
}
