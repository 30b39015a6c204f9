//! Heartbeat and diagnostic frames.

use super::frame::{Frame, write_frame};
use super::out::Out;
use super::wire::{ASM_AUDIT_SERVICE_ID, AUDIT_VERSION, DESTINATION, LANGUAGE, OS_VERSION};
use crate::kinds::MessageKind;
use crate::record::Text;

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

pub(super) fn write_heartbeat<O: Out>(mut out: O, hb: &Heartbeat) -> O {
    out.raw(&[0x85]);
    out.key_str(&ASM_AUDIT_SERVICE_ID, &hb.service_id);
    out.key_str(&AUDIT_VERSION, &hb.audit_version);
    out.key_str(&OS_VERSION, &hb.os_version);
    out.key_str(&LANGUAGE, &hb.language);
    out.key_str(&DESTINATION, &hb.destination);
    out
}

/// A heartbeat's frame.
pub(super) struct HeartbeatFrame<'h> {
    pub(super) ts: i64,
    pub(super) heartbeat: &'h Heartbeat,
}

impl Frame for HeartbeatFrame<'_> {
    fn write<O: Out>(&self, out: O) -> O {
        write_frame(out, MessageKind::Heartbeat, self.ts, |o| {
            write_heartbeat(o, self.heartbeat)
        })
    }
}

/// A diagnostic frame: an empty body.
pub(super) struct DiagnosticFrame {
    pub(super) ts: i64,
}

impl Frame for DiagnosticFrame {
    fn write<O: Out>(&self, out: O) -> O {
        write_frame(out, MessageKind::Diagnostic, self.ts, |mut o| {
            o.map_len(0);
            o
        })
    }
}
