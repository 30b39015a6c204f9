//! A receiving side independent of the crate: splits a byte stream into frames with
//! `rmpv` (one MessagePack value at a time, the unfinished remainder kept for the next
//! read), and reads a record's `seq` from the frame's tree by the wire contract
//! (`tests/fixtures/WIRE.md`: `[tag, [[ts, body]], options]`, the record tags
//! `AsmAuditDP` and `AsmAuditCP`, custom data under `CustomData`).

use rmpv::Value;

/// Bytes in, whole frames out.
#[derive(Default)]
pub struct Frames {
    pending: Vec<u8>,
}

impl Frames {
    /// Takes the next bytes of the stream; returns the frames they complete, in order.
    /// Bytes that are not MessagePack fail the test.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Value> {
        self.pending.extend_from_slice(bytes);
        let mut frames = Vec::new();
        let mut used = 0;
        loop {
            let mut rest = &self.pending[used..];
            let before = rest.len();
            if before == 0 {
                break;
            }
            match rmpv::decode::read_value(&mut rest) {
                Ok(frame) => {
                    used += before - rest.len();
                    frames.push(frame);
                }
                // The frame goes on in bytes not read yet.
                Err(
                    rmpv::decode::Error::InvalidMarkerRead(e)
                    | rmpv::decode::Error::InvalidDataRead(e),
                ) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => panic!("not a MessagePack stream at byte {used}: {e}"),
            }
        }
        self.pending.drain(..used);
        frames
    }
}

/// The `seq` custom value of a record frame; `None` for any other frame.
pub fn record_seq(frame: &Value) -> Option<u64> {
    let parts = frame.as_array()?;
    let tag = parts.first()?.as_str()?;
    if tag != "AsmAuditDP" && tag != "AsmAuditCP" {
        return None;
    }
    let body = parts
        .get(1)?
        .as_array()?
        .first()?
        .as_array()?
        .get(1)?
        .as_map()?;
    let custom = body
        .iter()
        .find(|(k, _)| k.as_str() == Some("CustomData"))?
        .1
        .as_map()?;
    custom
        .iter()
        .find(|(k, _)| k.as_str() == Some("seq"))?
        .1
        .as_u64()
}
