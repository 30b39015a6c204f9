//! The frame encoder: `[tag, [[ts, body]], {"TimeFormat":"DateTime"}]`, written byte by
//! byte (the bytes `rmp`'s low-level writers produce, checked by the tests) into a buffer
//! that is reused from frame to frame.
//!
//! One walk over the record serves both encoding and measuring: it is generic over an
//! [`Out`] that either writes bytes (a [`Cursor`] over the frame's room in a
//! [`ByteBuf`]) or only counts them, so [`encoded_len`] can never disagree with what is
//! written. Encoding first bounds the frame's size from its string lengths, zero-fills
//! that much of the buffer once and writes into it with one bounds check per string
//! (key, header and text together); names of enum values, with their keys, are
//! pre-encoded in tables. The record is only read, and nothing is allocated once the
//! buffer has grown to the largest frame.

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

/// Constant bytes (a pre-encoded name, possibly after its key) zero-padded to `W` bytes,
/// of which the first `len` count: writing one is a copy of constant size, which the
/// compiler turns into a few register moves instead of a `memcpy` call.
#[derive(Debug, Clone, Copy)]
struct Padded<const W: usize> {
    bytes: [u8; W],
    len: usize,
}

/// `prefix` (pre-encoded bytes) followed by `name` as a fixstr, padded to `W` bytes.
const fn padded<const W: usize>(prefix: &[u8], name: &str) -> Padded<W> {
    let name = name.as_bytes();
    let len = prefix.len() + 1 + name.len();
    assert!(len <= W && name.len() < 32);
    let mut bytes = [0u8; W];
    let mut i = 0;
    while i < prefix.len() {
        bytes[i] = prefix[i];
        i += 1;
    }
    bytes[i] = 0xa0 | name.len() as u8;
    let mut j = 0;
    while j < name.len() {
        bytes[i + 1 + j] = name[j];
        j += 1;
    }
    Padded { bytes, len }
}

/// The table of `names` pre-encoded after `prefix`, indexed by an enum's value (the
/// wire contract's numbering; index 0, "unknown", is the empty string and never written
/// for a validated record). A unit test checks every entry against `wire_name`.
const fn table<const W: usize, const N: usize>(prefix: &[u8], names: [&str; N]) -> [Padded<W>; N] {
    let mut out = [Padded {
        bytes: [0; W],
        len: 0,
    }; N];
    let mut i = 0;
    while i < N {
        out[i] = padded(prefix, names[i]);
        i += 1;
    }
    out
}

/// `OperationCategories` entries by [`OperationCategory`] value.
const CATEGORY_NAMES: [Padded<24>; 20] = table(
    b"",
    [
        "",
        "OCOther",
        "UserManagement",
        "GroupManagement",
        "Authentication",
        "Authorization",
        "RoleManagement",
        "ApplicationManagement",
        "KeyManagement",
        "DirectoryManagement",
        "ResourceManagement",
        "PolicyManagement",
        "DeviceManagement",
        "EntitlementManagement",
        "PasswordManagement",
        "IdentityProtection",
        "ObjectManagement",
        "ProvisioningManagement",
        "CustomerFacing",
        "EUII",
    ],
);

/// `CallerIdentities` keys by [`CallerIdentityType`] value.
const IDENTITY_TYPE_NAMES: [Padded<16>; 15] = table(
    b"",
    [
        "",
        "CIOther",
        "UPN",
        "PUID",
        "ObjectID",
        "Certificate",
        "Claim",
        "Username",
        "AccessKeyName",
        "SubscriptionID",
        "ApplicationID",
        "TenantID",
        "TokenID",
        "SasURL",
        "System",
    ],
);

/// The `OperationType` key and value by [`OperationType`] value (0: not set).
const OPERATION_TYPE_FIELDS: [Padded<24>; 5] =
    table(&OPERATION_TYPE, ["", "Read", "Update", "Create", "Delete"]);

/// The `OperationResult` key and value by [`OperationResult`] value (0: not set).
const OPERATION_RESULT_FIELDS: [Padded<24>; 3] =
    table(&OPERATION_RESULT, ["", "Success", "Failure"]);

/// Where a frame goes: a buffer that receives bytes, or a counter that only measures.
trait Out {
    fn raw(&mut self, bytes: &[u8]);
    fn padded<const W: usize>(&mut self, p: &Padded<W>);
    /// A pre-encoded key (or other constant bytes) followed by a string.
    fn key_str<const N: usize>(&mut self, key: &[u8; N], s: &str);
    #[inline(always)]
    fn str(&mut self, s: &str) {
        self.key_str(&[], s);
    }
    /// The fixstr of an IPv4 address's text.
    fn ipv4(&mut self, ip: Ipv4Addr);
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
/// far below that, and saturating here keeps the writer and the counter in step
/// regardless.
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A header (or a fixed-size value) written by one of `rmp`'s low-level writers into a
/// scratch array, and how many bytes it took. Nine bytes hold any of them, so the write
/// cannot fail; were it to, the header would be empty and the frame short, which the
/// unit tests comparing with `rmp` would catch.
#[inline(always)]
fn rmp_bytes<T, E>(write: impl FnOnce(&mut &mut [u8]) -> Result<T, E>) -> ([u8; 9], usize) {
    let mut bytes = [0u8; 9];
    let mut rest: &mut [u8] = &mut bytes;
    let left = match write(&mut rest) {
        Ok(_) => rest.len(),
        Err(_) => 9,
    };
    (bytes, (9 - left).min(9))
}

/// Writes a frame front to back into a zero-filled region of the frame buffer (see
/// [`append`]). A write that does not fit, which the size bound rules out, writes
/// nothing and empties the cursor, so that nothing after it is written either.
///
/// The cursor is one slice, passed by value where a call is not inlined (the recursive
/// custom-data writers), so that it lives in registers: a `short` flag beside it made it
/// too large for that, and cost about 290 instructions per golden `bench_record` frame
/// (callgrind).
///
/// The hot forms (fixstr and str8 headers, fixarray, fixmap) are written directly,
/// together with the key before them and the text after them, so that a key and its
/// string cost one bounds check and one copy of the text: writing the string headers
/// with `rmp::encode::write_str_len` into the cursor's `&mut [u8]` (through
/// `io::Write`, a marker and then a length) took 4,854 instructions per golden
/// `bench_record` frame against 1,884. The rare forms, and the fixed-size numbers (which
/// compile to the same stores as direct writes), go through `rmp`.
struct Cursor<'a> {
    rest: &'a mut [u8],
}

impl<'a> Cursor<'a> {
    /// The next `n` bytes of the region.
    #[inline(always)]
    fn take(&mut self, n: usize) -> Option<&'a mut [u8]> {
        let (head, rest) = std::mem::take(&mut self.rest).split_at_mut_checked(n)?;
        self.rest = rest;
        Some(head)
    }

    /// A key, a header and a string (of at most 255 bytes) with one bounds check.
    #[inline(always)]
    fn put<const N: usize, const M: usize>(&mut self, key: &[u8; N], hdr: [u8; M], s: &[u8]) {
        let Some(d) = self.take(N + M + s.len()) else {
            return;
        };
        if let Some((k, d)) = d.split_first_chunk_mut::<N>() {
            *k = *key;
            if let Some((h, d)) = d.split_first_chunk_mut::<M>() {
                *h = hdr;
                copy_text(d, s);
            }
        }
    }

    /// A header written by `rmp`, then `body`.
    #[inline(always)]
    fn rmp_header<E>(
        &mut self,
        write: impl FnOnce(&mut &mut [u8]) -> Result<rmp::Marker, E>,
        body: &[u8],
    ) {
        let c = Cursor {
            rest: std::mem::take(&mut self.rest),
        };
        *self = rmp_header(c, write, body);
    }
}

/// Copies `src` into `dst`, which has its length (or does nothing). Up to 64 bytes, the
/// length of most strings in a record, this is two overlapping copies of 1, 2, 4, 8, 16
/// or 32 bytes, inline: a `memcpy` call per string cost about 230 more instructions
/// per golden `bench_record` frame.
#[inline(always)]
fn copy_text(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    if dst.len() != n {
        return;
    }
    if n < 16 {
        if n >= 8 {
            copy_ends::<8>(dst, src);
        } else if n >= 4 {
            copy_ends::<4>(dst, src);
        } else if n >= 2 {
            copy_ends::<2>(dst, src);
        } else if let (Some(d), Some(s)) = (dst.first_mut(), src.first()) {
            *d = *s;
        }
    } else if n <= 32 {
        copy_ends::<16>(dst, src);
    } else if n <= 64 {
        copy_ends::<32>(dst, src);
    } else {
        dst.copy_from_slice(src);
    }
}

/// Copies the first and the last `K` bytes of `src` (at least `K`, at most `2 * K`
/// long) into `dst` (as long): constant-size copies covering it all.
#[inline(always)]
fn copy_ends<const K: usize>(dst: &mut [u8], src: &[u8]) {
    if let (Some(d), Some(s)) = (dst.first_chunk_mut::<K>(), src.first_chunk::<K>()) {
        *d = *s;
    }
    if let (Some(d), Some(s)) = (dst.last_chunk_mut::<K>(), src.last_chunk::<K>()) {
        *d = *s;
    }
}

/// [`Cursor::rmp_header`], out of line and by value.
#[inline(never)]
fn rmp_header<'a, E>(
    mut c: Cursor<'a>,
    write: impl FnOnce(&mut &mut [u8]) -> Result<rmp::Marker, E>,
    body: &[u8],
) -> Cursor<'a> {
    let (hdr, n) = rmp_bytes(write);
    c.raw(&hdr[..n]);
    c.raw(body);
    c
}

impl Out for Cursor<'_> {
    #[inline(always)]
    fn raw(&mut self, bytes: &[u8]) {
        if let Some(d) = self.take(bytes.len()) {
            d.copy_from_slice(bytes);
        }
    }
    #[inline(always)]
    fn padded<const W: usize>(&mut self, p: &Padded<W>) {
        let rest = std::mem::take(&mut self.rest);
        match rest.first_chunk_mut::<W>() {
            Some(d) => *d = p.bytes,
            None => return,
        }
        self.rest = rest.get_mut(p.len.min(W)..).unwrap_or_default();
    }
    #[inline(always)]
    fn key_str<const N: usize>(&mut self, key: &[u8; N], s: &str) {
        let s = s.as_bytes();
        let n = s.len();
        if n < 32 {
            self.put(key, [0xa0 | n as u8], s);
        } else if n <= u8::MAX as usize {
            self.put(key, [0xd9, n as u8], s);
        } else {
            self.raw(key);
            self.rmp_header(|w| rmp::encode::write_str_len(w, len32(n)), s);
        }
    }
    #[inline(always)]
    fn ipv4(&mut self, ip: Ipv4Addr) {
        let rest = std::mem::take(&mut self.rest);
        let Some(block) = rest.first_chunk_mut::<20>() else {
            return;
        };
        let n = ipv4_fixstr(ip, block);
        self.rest = rest.get_mut(n.min(20)..).unwrap_or_default();
    }
    #[inline(always)]
    fn array_len(&mut self, n: usize) {
        if n <= 15 {
            self.raw(&[0x90 | n as u8]);
        } else {
            self.rmp_header(|w| rmp::encode::write_array_len(w, len32(n)), &[]);
        }
    }
    #[inline(always)]
    fn map_len(&mut self, n: usize) {
        if n <= 15 {
            self.raw(&[0x80 | n as u8]);
        } else {
            self.rmp_header(|w| rmp::encode::write_map_len(w, len32(n)), &[]);
        }
    }
    fn bin(&mut self, b: &[u8]) {
        self.rmp_header(|w| rmp::encode::write_bin_len(w, len32(b.len())), b);
    }
    fn i64(&mut self, v: i64) {
        let (b, n) = rmp_bytes(|w| rmp::encode::write_i64(w, v));
        self.raw(&b[..n]);
    }
    fn u64(&mut self, v: u64) {
        let (b, n) = rmp_bytes(|w| rmp::encode::write_u64(w, v));
        self.raw(&b[..n]);
    }
    fn f64(&mut self, v: f64) {
        let (b, n) = rmp_bytes(|w| rmp::encode::write_f64(w, v));
        self.raw(&b[..n]);
    }
    fn bool(&mut self, v: bool) {
        self.raw(&[if v { 0xc3 } else { 0xc2 }]);
    }
    fn nil(&mut self) {
        self.raw(&[0xc0]);
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
    fn padded<const W: usize>(&mut self, p: &Padded<W>) {
        self.0 += p.len;
    }
    fn key_str<const N: usize>(&mut self, _: &[u8; N], s: &str) {
        let n = s.len();
        self.0 += N
            + n
            + if n < 32 {
                1
            } else if n <= u8::MAX as usize {
                2
            } else {
                header_len(n, 0)
            };
    }
    fn ipv4(&mut self, ip: Ipv4Addr) {
        self.0 += ipv4_fixstr(ip, &mut [0; 20]);
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

/// Each octet's decimal digits followed by a `.` (little-endian, in the low 32 bits),
/// and how many digits that is less one (0 to 2, from bit 32): `42` is `b"42."` and 1.
const OCTETS: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let o = i as u64;
        let (h, te, u) = (
            b'0' as u64 + o / 100,
            b'0' as u64 + o / 10 % 10,
            b'0' as u64 + o % 10,
        );
        let dot = b'.' as u64;
        t[i] = if o >= 100 {
            h | te << 8 | u << 16 | dot << 24 | 2 << 32
        } else if o >= 10 {
            te | u << 8 | dot << 16 | 1 << 32
        } else {
            u | dot << 8
        };
        i += 1;
    }
    t
};

/// Writes the fixstr of the dotted-decimal text of `ip` (as `Display` writes it) at the
/// start of `block` and returns its length, 8 to 16 bytes: four table lookups and
/// 4-byte stores, without branches. (The formatting machinery cost about a fifth of
/// the encoding time, a digit-by-digit formatter about a hundred instructions, a
/// formatter shifting a `u128` about seventy.)
#[inline(always)]
fn ipv4_fixstr(ip: Ipv4Addr, block: &mut [u8; 20]) -> usize {
    let mut at = 1;
    for o in ip.octets() {
        let entry = OCTETS[usize::from(o)];
        if let Some(slot) = block.get_mut(at..at + 4) {
            slot.copy_from_slice(&(entry as u32).to_le_bytes());
        }
        // The digits and the dot, 2 to 4 bytes (which keeps `at + 4` within the block).
        at += 2 + (entry >> 32) as usize % 4;
    }
    // Less the last octet's dot; with the header.
    let len = at - 1;
    block[0] = 0xa0 | (len - 1) as u8;
    len
}

#[inline(always)]
fn write_ip<O: Out>(out: &mut O, ip: Option<IpAddr>, zone: &str) {
    if let (Some(IpAddr::V4(v4)), true) = (ip, zone.is_empty()) {
        out.ipv4(v4);
        return;
    }
    let mut text = IpText {
        buf: [0; 48],
        len: 0,
    };
    // Validation refuses a record without an address; an unvalidated one is written as
    // the empty string rather than inventing a value.
    match ip {
        Some(IpAddr::V4(v4)) => {
            // The fixstr's text, without its header.
            let mut block = [0; 20];
            let n = ipv4_fixstr(v4, &mut block);
            text.buf[..19].copy_from_slice(&block[1..]);
            text.len = n.saturating_sub(1);
        }
        Some(v6) => {
            let formatted = write!(text, "{v6}").is_ok();
            text.len = if formatted { text.len } else { 0 };
        }
        None => {}
    }
    let addr = &text.buf[..text.len.min(48)];
    if zone.is_empty() {
        str_parts(out, addr.len(), &[addr]);
    } else {
        // `addr%zone`, written as one string without joining them in memory.
        let total = addr.len() + 1 + zone.len();
        str_parts(out, total, &[addr, b"%", zone.as_bytes()]);
    }
}

/// Writes one string given in parts (the header for their total length, then each part).
fn str_parts<O: Out>(out: &mut O, total: usize, parts: &[&[u8]]) {
    let (hdr, n) = rmp_bytes(|w| rmp::encode::write_str_len(w, len32(total)));
    out.raw(&hdr[..n]);
    for p in parts {
        out.raw(p);
    }
}

/// Writes a value that is not an array or a map; false for one that is.
#[inline(always)]
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
// in registers in their callers, and write scalars inline: a call per custom-data value
// cost about 40 instructions per golden `bench_record` frame (three values).
fn write_value<O: Out>(mut out: O, value: &Value) -> O {
    match value {
        Value::Array(items) => {
            out.array_len(items.len());
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
    out.map_len(entries.len());
    for (k, v) in entries {
        out.str(k);
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

/// Zero-fills `room` bytes after the end of `v`, writes `frame` into them and cuts off
/// what it did not use; false (with `v` as it was) when the frame did not fit.
#[inline(always)]
fn fill<F: Frame>(v: &mut Vec<u8>, room: usize, frame: &F) -> bool {
    let start = v.len();
    v.resize(start.saturating_add(room), 0);
    let rest = v.get_mut(start..).unwrap_or_default();
    let left = frame.write(Cursor { rest }).rest.len();
    // A frame that did not fit leaves the cursor empty, but so does one that fills its
    // room exactly. Every frame ends with the options map, which a frame that did not fit
    // cannot have written at the end of its room: its last write wrote nothing.
    if left == 0 && !v.get(start..).unwrap_or_default().ends_with(&OPTIONS) {
        v.truncate(start);
        return false;
    }
    v.truncate(v.len() - left);
    true
}

/// Appends `frame` to `buf`, writing it into `room` zero-filled bytes (an upper bound
/// of its size) through a [`Cursor`]. Safe code cannot write into a vector's spare
/// capacity, and filling the room once costs less than growing the vector write by
/// write: each `extend_from_slice` checks the capacity and stores the length in memory,
/// which cost about 500 instructions per golden `bench_record` frame.
///
/// A bound beyond the buffer's spare capacity (or too small, which cannot happen) is not
/// used: see [`refill`].
#[inline(always)]
#[must_use]
fn append<F: Frame>(buf: &mut ByteBuf, room: usize, frame: &F) -> bool {
    let v = buf.as_mut_vec();
    let spare = v.capacity() - v.len();
    if room > spare || !fill(v, room, frame) {
        return refill(v, spare, frame);
    }
    true
}

/// Writes `frame` into its exact size as [`Count`] measures it, plus [`SLACK`] as far as
/// the spare capacity allows: a buffer that has held the largest frame never grows
/// again. (A frame fits in its exact size: each padded write is followed by at least as
/// many bytes of the frame as it copies beyond its own.) Were that too small (the unit
/// tests show that the cursor and the counter agree), it is written into its size plus
/// the slack, and were that too small as well, nothing is appended.
#[cold]
#[inline(never)]
#[must_use]
fn refill<F: Frame>(v: &mut Vec<u8>, spare: usize, frame: &F) -> bool {
    let exact = frame.write(Count(0)).0;
    let room = exact.saturating_add(SLACK);
    if exact <= spare && fill(v, room.min(spare), frame) {
        return true;
    }
    fill(v, room, frame)
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
    buf: &mut ByteBuf,
    service_tree_id: &str,
    ts: i64,
    record: &Record,
) -> bool {
    let frame = RecordFrame {
        service_tree_id,
        ts,
        record,
    };
    append(buf, record_room(service_tree_id, record), &frame)
}

/// Appends a heartbeat frame to `buf`. Heartbeats are rare: their room is their
/// counted size.
#[must_use]
pub(crate) fn append_heartbeat(buf: &mut ByteBuf, ts: i64, hb: &Heartbeat) -> bool {
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
    /// record is not validated here: call [`Record::validate`] first. (Were the encoder's
    /// measuring and writing ever to disagree, the frame would be empty, never cut.)
    pub fn encode(&mut self, ts: i64, record: &Record) -> &[u8] {
        self.buf.as_mut_vec().clear();
        let _written = append_record(&mut self.buf, &self.service_tree_id, ts, record);
        self.buf.as_slice()
    }

    /// Encodes a heartbeat frame.
    pub fn encode_heartbeat(&mut self, ts: i64, heartbeat: &Heartbeat) -> &[u8] {
        self.buf.as_mut_vec().clear();
        let _written = append_heartbeat(&mut self.buf, ts, heartbeat);
        self.buf.as_slice()
    }

    /// Encodes a diagnostic frame, whose body is an empty map.
    pub fn encode_diagnostic(&mut self, ts: i64) -> &[u8] {
        self.buf.as_mut_vec().clear();
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
    fn appends_after_earlier_frames_and_survives_a_short_room() {
        let r = sample_record();
        let mut buf = ByteBuf::new();
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
            let mut short = ByteBuf::new();
            short.as_mut_vec().extend_from_slice(b"xy");
            assert!(append(&mut short, room, &frame));
            assert_eq!(
                short.as_slice(),
                [&b"xy"[..], &one[..]].concat(),
                "room {room}"
            );
        }

        // Exactly the frame's size, or one byte less.
        let mut v = b"xy".to_vec();
        assert!(fill(&mut v, one.len(), &frame));
        assert_eq!(v, [&b"xy"[..], &one[..]].concat());
        for room in [0, 20, 21, one.len() - 1] {
            let mut v = b"xy".to_vec();
            assert!(!fill(&mut v, room, &frame), "room {room}");
            assert_eq!(v, b"xy");
        }

        // A buffer whose spare capacity is exactly the frame does not grow.
        let mut exact = ByteBuf::with_capacity(2 + one.len());
        exact.as_mut_vec().extend_from_slice(b"xy");
        let capacity = exact.as_mut_vec().capacity();
        assert!(append_record(&mut exact, "sid", 7, &r));
        assert_eq!(exact.as_slice(), [&b"xy"[..], &one[..]].concat());
        assert_eq!(exact.as_mut_vec().capacity(), capacity);
    }
}
