//! The caller's IP address as text: IPv4 from a table of octets ([`ipv4_fixstr`]), IPv6
//! (and zones) through `Display` into a stack buffer.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::ipv4::ipv4_fixstr;
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
