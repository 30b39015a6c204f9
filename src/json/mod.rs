//! Records as JSON, in the shape of the golden file (`tests/fixtures/golden.jsonl`).
//!
//! Each line is one object:
//!
//! ```text
//! {"name": "case", "type": "DataPlane", "ts": 1700000000, "record": {<wire field names>}}
//! {"name": "hb", "type": "Heartbeat", "heartbeat": {"AsmAuditServiceId": ..., ...}}
//! {"name": "dg", "type": "Diagnostic"}
//! ```
//!
//! * `type` is a [`MessageKind`] name (`DataPlane`, `ControlPlane`, `Heartbeat`,
//!   `Diagnostic`) or its frame tag (`AsmAuditDP`, ...), in any case. It is required.
//! * `ts` (Unix seconds) and `name` are optional. On a record line, `ts` is the record's
//!   event time ([`Record::get_event_time`]).
//! * `record` holds the wire field names of [`crate::Record`] plus `env_ikey`, the service
//!   tree id, which is returned beside the record in its canonical form (a UUID, see
//!   [`validate_service_tree_id`](crate::validate_service_tree_id); `""` means none). `heartbeat` holds the five heartbeat
//!   strings. A missing body is an empty one.
//! * A missing field, or one that is `null`, is left unset: validation reports it later.
//!   A field this format does not know is an error, so that a misspelt name is not lost.
//! * `CallerIpAddress` is an IP address with an optional IPv6 `%zone`.
//! * Enum values are their wire names, parsed case-insensitively (`OCOther` and `Other`
//!   both work), or their numeric values (`"OperationType": 4`). A name or number that is
//!   not a value of the enum is an error, never a silent "unknown".
//! * `CustomData` is an object (`null` or `{}` means none). JSON integers become
//!   [`Value::Int`](crate::Value::Int) ([`Value::UInt`](crate::Value::UInt) above `i64::MAX`; beyond `u64::MAX` the JSON parser
//!   itself reads them as floats), other numbers [`Value::Float`](crate::Value::Float),
//!   strings [`Value::Str`](crate::Value::Str), `null` [`Value::Nil`](crate::Value::Nil); arrays and objects nest, objects in
//!   the order they are written. An object with a `"$type"` key is a typed value,
//!   `{"$type": T, "$value": V}`, with `T` one of `int`, `int8` .. `int64`, `uint`,
//!   `uint8` .. `uint64` (range-checked, then [`Value::Int`](crate::Value::Int) / [`Value::UInt`](crate::Value::UInt)), `float64`,
//!   `string`, `bool`, `bytes` or `[]byte` (standard base64, into [`Value::Bytes`](crate::Value::Bytes)) and
//!   `[]T` for an array of `T`; `float64` also takes the strings `NaN`, `+Inf` and `-Inf`,
//!   and `map` takes an object read as a plain map (so that a nested map may have a
//!   `$type` key of its own). `float32` and `time` cannot be expressed by the record
//!   model and give [`JsonError::Inexpressible`].
//! * An identity type with no identities (`"PUID": []`) is an error, as the reference
//!   client's validation makes it.
//!
//! [`to_line`] writes a record back as one such line (and [`message_to_line`] a whole
//! message), so that `parse_line(&to_line(&r))` gives back `r`.
//!
//! Every error names the field it is about, as a path such as
//! `record.CallerIdentities.UPN[0].Identity`. No input panics.
//!
//! ```
//! use geneva_audit::json::{JsonBody, parse_line};
//! use geneva_audit::MessageKind;
//!
//! let line = r#"{"type": "ControlPlane", "ts": 1234, "record": {"env_ikey": "E6C9FCB1-7F08-4C1D-9E7A-123456789ABC", "OperationType": "delete"}}"#;
//! let msg = parse_line(line).unwrap();
//! assert_eq!(msg.kind, MessageKind::ControlPlane);
//! assert_eq!(msg.ts, Some(1234));
//! assert_eq!(msg.service_tree_id.as_deref(), Some("e6c9fcb1-7f08-4c1d-9e7a-123456789abc"));
//! assert!(matches!(msg.body, JsonBody::Record(_)));
//!
//! let err = parse_line(r#"{"type": "DataPlane", "record": {"OperationType": 77}}"#).unwrap_err();
//! assert_eq!(err.to_string(), "record.OperationType: unknown value 77");
//! ```

use serde_json::Value as Json;

use crate::encode::Heartbeat;
use crate::kinds::MessageKind;
use crate::record::Record;

mod body;
mod custom;
mod error;
mod path;
#[cfg(test)]
mod tests;
mod write;

pub use error::JsonError;
pub use write::{message_to_line, to_line, to_value};

use body::{parse_heartbeat, parse_kind, parse_record};
use path::{Path, json_type, opt_object, opt_string, opt_ts, unknown_field};

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonMessage {
    /// The line's `name`, if it has one.
    pub name: Option<String>,
    /// The message kind, from `type`.
    pub kind: MessageKind,
    /// The timestamp in Unix seconds, from `ts`, if given; for a record line it is also
    /// the record's event time.
    pub ts: Option<i64>,
    /// The service tree id, from `record.env_ikey`, if given.
    pub service_tree_id: Option<String>,
    /// The message itself.
    pub body: JsonBody,
}

impl JsonMessage {
    /// The record, for a data-plane or control-plane line.
    pub fn record(&self) -> Option<&Record> {
        match &self.body {
            JsonBody::Record(r) => Some(r),
            _ => None,
        }
    }

    /// The heartbeat, for a heartbeat line.
    pub fn heartbeat(&self) -> Option<&Heartbeat> {
        match &self.body {
            JsonBody::Heartbeat(h) => Some(h),
            _ => None,
        }
    }
}

/// The body of a [`JsonMessage`], decided by its kind.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonBody {
    /// A data-plane or control-plane record (its kind is the message's kind).
    Record(Record),
    /// A heartbeat; missing strings are empty.
    Heartbeat(Heartbeat),
    /// A diagnostic message, which has no body.
    Diagnostic,
}

/// Parses one line of the golden-file shape.
pub fn parse_line(line: &str) -> Result<JsonMessage, JsonError> {
    let value: Json = serde_json::from_str(line).map_err(|e| JsonError::Syntax {
        message: e.to_string(),
    })?;
    parse_value(value)
}

/// Converts an already parsed JSON value of the golden-file shape.
pub fn parse_value(value: Json) -> Result<JsonMessage, JsonError> {
    let Json::Object(top) = value else {
        return Err(JsonError::NotAnObject {
            found: json_type(&value),
        });
    };
    let mut name = None;
    let mut kind = None;
    let mut ts = None;
    let mut record = None;
    let mut heartbeat = None;
    for (key, v) in top {
        let path = Path::root(&key);
        match key.as_str() {
            "name" => name = opt_string(v, &path)?,
            "type" => {
                kind = opt_string(v, &path)?
                    .map(|s| parse_kind(s, &path))
                    .transpose()?
            }
            "ts" => ts = opt_ts(v, &path)?,
            "record" => record = opt_object(v, &path)?,
            "heartbeat" => heartbeat = opt_object(v, &path)?,
            _ => return Err(unknown_field(&path)),
        }
    }
    let kind = kind.ok_or_else(|| JsonError::MissingField {
        field: "type".to_owned(),
    })?;
    let unexpected = |field: &str| JsonError::UnexpectedField {
        field: field.to_owned(),
        kind,
    };
    let mut service_tree_id = None;
    let body = match kind {
        MessageKind::DataPlane | MessageKind::ControlPlane => {
            if heartbeat.is_some() {
                return Err(unexpected("heartbeat"));
            }
            let (mut r, sid) = parse_record(kind, record.unwrap_or_default())?;
            r.event_time = ts;
            service_tree_id = sid;
            JsonBody::Record(r)
        }
        MessageKind::Heartbeat => {
            if record.is_some() {
                return Err(unexpected("record"));
            }
            JsonBody::Heartbeat(parse_heartbeat(heartbeat.unwrap_or_default())?)
        }
        MessageKind::Diagnostic => {
            if record.is_some() {
                return Err(unexpected("record"));
            }
            if heartbeat.is_some() {
                return Err(unexpected("heartbeat"));
            }
            JsonBody::Diagnostic
        }
    };
    Ok(JsonMessage {
        name,
        kind,
        ts,
        service_tree_id,
        body,
    })
}
