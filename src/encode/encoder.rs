//! The public [`Encoder`]: frames one at a time, for tools and tests.

use super::append::{append_heartbeat, append_record};
use super::frame::{Frame, append, encoded_len};
use super::frame_buf::FrameBuf;
use super::heartbeat::{DiagnosticFrame, Heartbeat};
use super::out::Count;
use super::size_bound::SLACK;
use crate::record::{Record, Text};
use crate::validate::ValidationError;

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
    buf: FrameBuf,
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
            buf: FrameBuf::with_capacity(4096),
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
        let bound = frame.write(Count(0)).0 + SLACK;
        let _written = append(&mut self.buf, bound, &frame);
        self.buf.as_slice()
    }

    /// The size of `record`'s frame, without encoding it.
    pub fn encoded_len(&self, record: &Record) -> usize {
        encoded_len(&self.service_tree_id, record)
    }
}
