//! The dotted-decimal text of an IPv4 address as a msgpack fixstr, by table lookups. A
//! leaf: both the cursor's and the counter's `ipv4` and the address writer build on it.

use std::net::Ipv4Addr;

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
