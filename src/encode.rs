//! The frame encoder: `[tag, [[ts, body]], {"TimeFormat":"DateTime"}]`, written with
//! low-level `rmp` calls into a buffer that is reused from frame to frame.
//!
//! One walk over the record serves both encoding and measuring: it is generic over an
//! [`Out`] that either writes bytes (`rmp` into a [`ByteBuf`]) or only counts them, so
//! [`encoded_len`] can never disagree with what is written. The record is only read, and
//! nothing is allocated once the buffer has grown to the largest frame.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::IpAddr;

use rmp::encode::{self as rmpe, ByteBuf, ValueWriteError};

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
    fn array_len(&mut self, n: usize);
    fn map_len(&mut self, n: usize);
    fn bin(&mut self, b: &[u8]);
    fn i64(&mut self, v: i64);
    fn u64(&mut self, v: u64);
    fn f64(&mut self, v: f64);
    fn bool(&mut self, v: bool);
    fn nil(&mut self);
}

/// Unwraps an `rmp` result whose writer cannot fail.
fn done<T>(r: Result<T, ValueWriteError<Infallible>>) -> T {
    match r {
        Ok(v) => v,
        Err(ValueWriteError::InvalidMarkerWrite(e) | ValueWriteError::InvalidDataWrite(e)) => {
            match e {}
        }
    }
}

/// msgpack lengths are 32-bit; validation and the frame size limit keep every length
/// far below that, and saturating here keeps the two walks in step regardless.
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Out for ByteBuf {
    fn raw(&mut self, bytes: &[u8]) {
        self.as_mut_vec().extend_from_slice(bytes);
    }
    fn str(&mut self, s: &str) {
        done(rmpe::write_str_len(self, len32(s.len())));
        self.as_mut_vec().extend_from_slice(s.as_bytes());
    }
    fn array_len(&mut self, n: usize) {
        done(rmpe::write_array_len(self, len32(n)));
    }
    fn map_len(&mut self, n: usize) {
        done(rmpe::write_map_len(self, len32(n)));
    }
    fn bin(&mut self, b: &[u8]) {
        done(rmpe::write_bin_len(self, len32(b.len())));
        self.as_mut_vec().extend_from_slice(b);
    }
    fn i64(&mut self, v: i64) {
        done(rmpe::write_i64(self, v));
    }
    fn u64(&mut self, v: u64) {
        done(rmpe::write_u64(self, v));
    }
    fn f64(&mut self, v: f64) {
        done(rmpe::write_f64(self, v));
    }
    fn bool(&mut self, v: bool) {
        match rmpe::write_bool(self, v) {
            Ok(()) => {}
            Err(e) => match e {},
        }
    }
    fn nil(&mut self) {
        match rmpe::write_nil(self) {
            Ok(()) => {}
            Err(e) => match e {},
        }
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

fn write_ip<O: Out>(out: &mut O, ip: Option<IpAddr>, zone: &str) {
    let mut text = IpText {
        buf: [0; 48],
        len: 0,
    };
    // Validation refuses a record without an address; an unvalidated one is written as
    // the empty string rather than inventing a value.
    let formatted = match ip {
        Some(ip) => write!(text, "{ip}").is_ok(),
        None => true,
    };
    let addr = if formatted {
        std::str::from_utf8(&text.buf[..text.len]).unwrap_or("")
    } else {
        ""
    };
    if zone.is_empty() {
        out.str(addr);
    } else {
        // `addr%zone`, written as one string without joining them in memory.
        let total = addr.len() + 1 + zone.len();
        out_str_parts(out, total, &[addr.as_bytes(), b"%", zone.as_bytes()]);
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

    out.raw(&ENV_IKEY);
    out.str(service_tree_id);

    out.raw(&CALLER_IP_ADDRESS);
    write_ip(out, r.caller_ip, &r.caller_ip_zone);

    out.raw(&CALLER_IDENTITIES);
    let ids = &r.caller_identities;
    out.map_len(ids.chunk_by(|a, b| a.kind == b.kind).count());
    for group in ids.chunk_by(|a, b| a.kind == b.kind) {
        out.str(group[0].kind.wire_name());
        out.array_len(group.len());
        for id in group {
            out.raw(&[0x82]);
            out.raw(&IDENTITY);
            out.str(&id.identity);
            out.raw(&DESCRIPTION);
            out.str(&id.description);
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
            out.raw(&[0x84]);
            out.raw(&NAME);
            out.str(&t.name);
            out.raw(&CLUSTER);
            out.str(&t.cluster);
            out.raw(&DATA_CENTER);
            out.str(&t.data_center);
            out.raw(&REGION);
            out.str(&t.region);
        }
    }

    out.raw(&CALLER_ACCESS_LEVELS);
    out.array_len(r.caller_access_levels.len());
    for l in r.caller_access_levels.iter() {
        out.str(l);
    }

    out.raw(&OPERATION_ACCESS_LEVEL);
    out.str(&r.operation_access_level);
    out.raw(&OPERATION_NAME);
    out.str(&r.operation_name);
    out.raw(&OPERATION_RESULT_DESCRIPTION);
    out.str(&r.operation_result_description);
    out.raw(&CALLER_AGENT);
    out.str(&r.caller_agent);
    out.raw(&OPERATION_CATEGORY_DESCRIPTION);
    out.str(&r.operation_category_description);
    out.raw(&OPERATION_TYPE);
    out.str(r.operation_type.map_or("", |t| t.wire_name()));
    out.raw(&OPERATION_RESULT);
    out.str(r.operation_result.map_or("", |t| t.wire_name()));
}

fn write_frame<O: Out>(out: &mut O, kind: MessageKind, ts: i64, body: impl FnOnce(&mut O)) {
    out.raw(head(kind));
    out.raw(&ts.to_be_bytes());
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
    out.raw(&ASM_AUDIT_SERVICE_ID);
    out.str(&hb.service_id);
    out.raw(&AUDIT_VERSION);
    out.str(&hb.audit_version);
    out.raw(&OS_VERSION);
    out.str(&hb.os_version);
    out.raw(&LANGUAGE);
    out.str(&hb.language);
    out.raw(&DESTINATION);
    out.str(&hb.destination);
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
}
