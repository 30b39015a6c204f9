//! The caller's IP address as text: IPv4 from a table of octets, IPv6 (and zones)
//! through `Display` into a stack buffer.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use super::out::{Out, len32, rmp_bytes};

/// Room for the longest IPv6 text (45 bytes), a `%` and a short zone; a longer zone is
/// written separately.
pub(super) struct IpText {
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
pub(super) const OCTETS: [u64; 256] = {
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
/// 4-byte stores, without branches, far cheaper than the formatting machinery
/// (docs/PERFORMANCE.md).
#[inline(always)]
pub(super) fn ipv4_fixstr(ip: Ipv4Addr, block: &mut [u8; 20]) -> usize {
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
pub(super) fn write_ip<O: Out>(out: &mut O, ip: Option<IpAddr>, zone: &str) {
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
pub(super) fn str_parts<O: Out>(out: &mut O, total: usize, parts: &[&[u8]]) {
    let (hdr, n) = rmp_bytes(|w| rmp::encode::write_str_len(w, len32(total)));
    out.raw(&hdr[..n]);
    for p in parts {
        out.raw(p);
    }
}
