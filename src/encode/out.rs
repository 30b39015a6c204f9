//! Where a frame goes: a [`Cursor`] that writes into the bytes reserved for the frame, or a [`Count`]
//! that only measures; both behind the [`Out`] trait, so one walk serves both.

use std::net::Ipv4Addr;

use super::ipv4::ipv4_fixstr;
use super::wire::Padded;

/// Where a frame goes: a buffer that receives bytes, or a counter that only measures.
pub(super) trait Out {
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
pub(super) fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A header (or a fixed-size value) written by one of `rmp`'s low-level writers into a
/// scratch array, and how many bytes it took. Nine bytes hold any of them, so the write
/// cannot fail; were it to, the header would be empty and the frame short, which the
/// unit tests comparing with `rmp` would catch.
#[inline(always)]
pub(super) fn rmp_bytes<T, E>(
    write: impl FnOnce(&mut &mut [u8]) -> Result<T, E>,
) -> ([u8; 9], usize) {
    let mut bytes = [0u8; 9];
    let mut rest: &mut [u8] = &mut bytes;
    let left = match write(&mut rest) {
        Ok(_) => rest.len(),
        Err(_) => 9,
    };
    (bytes, (9 - left).min(9))
}

/// Writes a frame front to back into a region of the frame buffer (see [`append`](super::frame::append); the
/// region may hold stale bytes, and every write fills each byte it moves past). A write that does not fit, which the size bound rules out, writes
/// nothing and empties the cursor, so that nothing after it is written either.
///
/// The cursor is one slice, passed by value where a call is not inlined (the recursive
/// custom-data writers), so that it lives in registers; anything beside it would make it
/// too large for that (docs/PERFORMANCE.md has the instruction counts).
///
/// The hot forms (fixstr and str8 headers, fixarray, fixmap) are written directly,
/// together with the key before them and the text after them, so that a key and its
/// string cost one bounds check and one copy of the text, where `rmp`'s writers go
/// through `io::Write` a marker and a length at a time (measured in docs/PERFORMANCE.md).
/// The rare forms, and the fixed-size numbers (which compile to the same stores as
/// direct writes), go through `rmp`.
pub(super) struct Cursor<'a> {
    pub(super) rest: &'a mut [u8],
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
/// or 32 bytes, inline, cheaper than a `memcpy` call per string.
#[inline(always)]
pub(super) fn copy_text(dst: &mut [u8], src: &[u8]) {
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
pub(super) fn copy_ends<const K: usize>(dst: &mut [u8], src: &[u8]) {
    if let (Some(d), Some(s)) = (dst.first_chunk_mut::<K>(), src.first_chunk::<K>()) {
        *d = *s;
    }
    if let (Some(d), Some(s)) = (dst.last_chunk_mut::<K>(), src.last_chunk::<K>()) {
        *d = *s;
    }
}

/// [`Cursor::rmp_header`], out of line and by value.
#[inline(never)]
pub(super) fn rmp_header<'a, E>(
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
pub(super) struct Count(pub(super) usize);

pub(super) fn header_len(n: usize, fix_max: usize) -> usize {
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
