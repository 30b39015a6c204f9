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
//!   [`validate_service_tree_id`]; `""` means none). `heartbeat` holds the five heartbeat
//!   strings. A missing body is an empty one.
//! * A missing field, or one that is `null`, is left unset: validation reports it later.
//!   A field this format does not know is an error, so that a misspelt name is not lost.
//! * `CallerIpAddress` is an IP address with an optional IPv6 `%zone`.
//! * Enum values are their wire names, parsed case-insensitively (`OCOther` and `Other`
//!   both work), or their numeric values (`"OperationType": 4`). A name or number that is
//!   not a value of the enum is an error, never a silent "unknown".
//! * `CustomData` is an object (`null` or `{}` means none). JSON integers become
//!   [`Value::Int`] ([`Value::UInt`] above `i64::MAX`; beyond `u64::MAX` the JSON parser
//!   itself reads them as floats), other numbers [`Value::Float`],
//!   strings [`Value::Str`], `null` [`Value::Nil`]; arrays and objects nest, objects in
//!   the order they are written. An object with a `"$type"` key is a typed value,
//!   `{"$type": T, "$value": V}`, with `T` one of `int`, `int8` .. `int64`, `uint`,
//!   `uint8` .. `uint64` (range-checked, then [`Value::Int`] / [`Value::UInt`]), `float64`,
//!   `string`, `bool`, `bytes` or `[]byte` (standard base64, into [`Value::Bytes`]) and
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

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde_json::{Map, Number, Value as Json};

use crate::encode::Heartbeat;
use crate::kinds::{
    CallerIdentityType, MessageKind, OperationCategory, OperationResult, OperationType,
};
use crate::record::{CallerIdentity, Record, TargetResource, Text, Value};
use crate::validate::{ValidationError, validate_service_tree_id};

mod write;

pub use write::{message_to_line, to_line, to_value};

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

/// Why a line could not be turned into a [`JsonMessage`]. Every variant about a field
/// names it as a path (`record.CustomData.map[2]`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonError {
    /// The line is not valid JSON.
    Syntax {
        /// The JSON parser's message, with line and column.
        message: String,
    },
    /// The line is JSON but not an object.
    NotAnObject {
        /// The JSON type it has instead.
        found: &'static str,
    },
    /// A required field is missing (only `type` is required).
    MissingField {
        /// The missing field.
        field: String,
    },
    /// A field this format does not know.
    UnknownField {
        /// The field.
        field: String,
    },
    /// A body that does not belong to the message's kind (a `heartbeat` on a record).
    UnexpectedField {
        /// The field.
        field: String,
        /// The message's kind.
        kind: MessageKind,
    },
    /// A field holds the wrong JSON type.
    WrongType {
        /// The field.
        field: String,
        /// What it should hold.
        expected: &'static str,
        /// The JSON type it holds.
        found: &'static str,
    },
    /// An enum field holds a name or number that is not one of its values.
    UnknownEnum {
        /// The field.
        field: String,
        /// The value, as JSON text (`"Frobnicate"`, `77`).
        value: String,
    },
    /// `CallerIpAddress` is not an IP address (with an optional non-empty `%zone`).
    InvalidIp {
        /// The field.
        field: String,
        /// The text that did not parse.
        value: String,
    },
    /// A number that is not in the range the field takes (`ts` must be an integer that
    /// fits in an `i64`).
    InvalidNumber {
        /// The field.
        field: String,
        /// The number, as JSON text.
        value: String,
        /// What the field takes.
        expected: &'static str,
    },
    /// A typed custom value's `$type` is not one this format knows.
    UnknownValueType {
        /// The field.
        field: String,
        /// The `$type`.
        type_name: String,
    },
    /// A typed custom value of a kind the record model cannot express (`float32`,
    /// `time`): there is no [`Value`] that the encoder would write the way the
    /// reference writes it.
    Inexpressible {
        /// The field.
        field: String,
        /// The `$type`.
        type_name: String,
    },
    /// `env_ikey` is not a service tree id the client would send.
    ServiceTreeId {
        /// The field.
        field: String,
        /// What is wrong with it.
        error: ValidationError,
    },
    /// A caller identity type holds no identities (`"PUID": []`), which the reference
    /// client refuses.
    NoIdentities {
        /// The field.
        field: String,
        /// The identity type's wire name.
        identity_type: &'static str,
    },
    /// A typed custom value whose `$value` does not fit its `$type`.
    InvalidTypedValue {
        /// The field.
        field: String,
        /// The `$type`.
        type_name: String,
        /// What is wrong.
        reason: &'static str,
    },
}

impl JsonError {
    /// The field the error is about, if it is about one.
    pub fn field(&self) -> Option<&str> {
        use JsonError::*;
        match self {
            Syntax { .. } | NotAnObject { .. } => None,
            MissingField { field }
            | UnknownField { field }
            | UnexpectedField { field, .. }
            | WrongType { field, .. }
            | UnknownEnum { field, .. }
            | InvalidIp { field, .. }
            | InvalidNumber { field, .. }
            | UnknownValueType { field, .. }
            | Inexpressible { field, .. }
            | NoIdentities { field, .. }
            | ServiceTreeId { field, .. }
            | InvalidTypedValue { field, .. } => Some(field),
        }
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use JsonError::*;
        match self {
            Syntax { message } => write!(f, "not valid JSON: {message}"),
            NotAnObject { found } => write!(f, "expected a JSON object, found {found}"),
            MissingField { field } => write!(f, "{field}: missing"),
            UnknownField { field } => write!(f, "{field}: unknown field"),
            UnexpectedField { field, kind } => write!(f, "{field}: not allowed for {kind}"),
            WrongType {
                field,
                expected,
                found,
            } => write!(f, "{field}: expected {expected}, found {found}"),
            UnknownEnum { field, value } => write!(f, "{field}: unknown value {value}"),
            InvalidIp { field, value } => write!(f, "{field}: {value:?} is not an IP address"),
            InvalidNumber {
                field,
                value,
                expected,
            } => write!(f, "{field}: {value} is not {expected}"),
            UnknownValueType { field, type_name } => {
                write!(f, "{field}: unknown $type {type_name:?}")
            }
            Inexpressible { field, type_name } => write!(
                f,
                "{field}: $type {type_name:?} cannot be expressed by the record model"
            ),
            ServiceTreeId { field, error } => write!(f, "{field}: {error}"),
            NoIdentities {
                field,
                identity_type,
            } => write!(
                f,
                "{field}: at least one identity is required for identity type {identity_type}"
            ),
            InvalidTypedValue {
                field,
                type_name,
                reason,
            } => write!(
                f,
                "{field}: invalid $value for $type {type_name:?}: {reason}"
            ),
        }
    }
}

impl std::error::Error for JsonError {}

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

/// A field's position, kept on the stack and only rendered into a string for an error.
#[derive(Clone, Copy)]
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    seg: Seg<'a>,
}

#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

impl<'a> Path<'a> {
    fn root(key: &'a str) -> Self {
        Path {
            parent: None,
            seg: Seg::Key(key),
        }
    }

    fn key<'b>(&'b self, key: &'b str) -> Path<'b> {
        Path {
            parent: Some(self),
            seg: Seg::Key(key),
        }
    }

    fn index(&self, i: usize) -> Path<'_> {
        Path {
            parent: Some(self),
            seg: Seg::Index(i),
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }

    fn render_into(&self, out: &mut String) {
        if let Some(parent) = self.parent {
            parent.render_into(out);
        }
        match self.seg {
            Seg::Key(k) => {
                if self.parent.is_some() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
}

fn json_type(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn unknown_field(path: &Path<'_>) -> JsonError {
    JsonError::UnknownField {
        field: path.render(),
    }
}

fn wrong_type(path: &Path<'_>, expected: &'static str, found: &Json) -> JsonError {
    JsonError::WrongType {
        field: path.render(),
        expected,
        found: json_type(found),
    }
}

fn opt_string(v: Json, path: &Path<'_>) -> Result<Option<String>, JsonError> {
    match v {
        Json::Null => Ok(None),
        Json::String(s) => Ok(Some(s)),
        other => Err(wrong_type(path, "a string", &other)),
    }
}

fn opt_text(v: Json, path: &Path<'_>) -> Result<Text, JsonError> {
    Ok(opt_string(v, path)?.map_or(Text::Borrowed(""), Text::Owned))
}

fn opt_object(v: Json, path: &Path<'_>) -> Result<Option<Map<String, Json>>, JsonError> {
    match v {
        Json::Null => Ok(None),
        Json::Object(m) => Ok(Some(m)),
        other => Err(wrong_type(path, "an object", &other)),
    }
}

fn opt_array(v: Json, path: &Path<'_>) -> Result<Vec<Json>, JsonError> {
    match v {
        Json::Null => Ok(Vec::new()),
        Json::Array(a) => Ok(a),
        other => Err(wrong_type(path, "an array", &other)),
    }
}

fn opt_ts(v: Json, path: &Path<'_>) -> Result<Option<i64>, JsonError> {
    match v {
        Json::Null => Ok(None),
        Json::Number(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| JsonError::InvalidNumber {
                field: path.render(),
                value: n.to_string(),
                expected: "an integer number of seconds within i64",
            }),
        other => Err(wrong_type(path, "a number", &other)),
    }
}

fn parse_kind(s: String, path: &Path<'_>) -> Result<MessageKind, JsonError> {
    if let Ok(kind) = s.parse::<MessageKind>() {
        return Ok(kind);
    }
    [
        MessageKind::DataPlane,
        MessageKind::ControlPlane,
        MessageKind::Heartbeat,
        MessageKind::Diagnostic,
    ]
    .into_iter()
    .find(|k| k.tag().eq_ignore_ascii_case(&s))
    .ok_or_else(|| JsonError::UnknownEnum {
        field: path.render(),
        value: Json::String(s).to_string(),
    })
}

/// An enum value from its name (case-insensitively) or its number.
fn parse_enum<T: FromStr>(
    v: &Json,
    path: &Path<'_>,
    from_repr: fn(u8) -> Option<T>,
) -> Result<T, JsonError> {
    let found = match v {
        Json::String(s) => s.parse::<T>().ok(),
        Json::Number(n) => n
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .and_then(from_repr),
        other => return Err(wrong_type(path, "a name or a number", other)),
    };
    found.ok_or_else(|| JsonError::UnknownEnum {
        field: path.render(),
        value: v.to_string(),
    })
}

/// `addr` or `addr%zone`.
fn parse_ip(s: &str, path: &Path<'_>) -> Result<(IpAddr, Option<String>), JsonError> {
    let invalid = || JsonError::InvalidIp {
        field: path.render(),
        value: s.to_owned(),
    };
    let (addr, zone) = match s.split_once('%') {
        Some((_, "")) => return Err(invalid()),
        Some((addr, zone)) => (addr, Some(zone.to_owned())),
        None => (s, None),
    };
    let ip = addr.parse::<IpAddr>().map_err(|_| invalid())?;
    Ok((ip, zone))
}

fn parse_record(
    kind: MessageKind,
    map: Map<String, Json>,
) -> Result<(Record, Option<String>), JsonError> {
    let root = Path::root("record");
    let mut r = Record::new(kind);
    let mut service_tree_id = None;
    for (key, v) in map {
        let path = root.key(&key);
        let path = &path;
        match key.as_str() {
            "env_ikey" => {
                service_tree_id = match opt_string(v, path)? {
                    Some(id) if !id.is_empty() => {
                        let canonical = validate_service_tree_id(&id).map_err(|error| {
                            JsonError::ServiceTreeId {
                                field: path.render(),
                                error,
                            }
                        })?;
                        Some(canonical)
                    }
                    _ => None,
                }
            }
            "CallerIpAddress" => {
                if let Some(s) = opt_string(v, path)? {
                    // An empty address is an unset one.
                    if !s.is_empty() {
                        let (ip, zone) = parse_ip(&s, path)?;
                        r.caller_ip = Some(ip);
                        r.caller_ip_zone = zone.map_or(Text::Borrowed(""), Text::Owned);
                    }
                }
            }
            "CallerIdentities" => {
                for (type_name, list) in opt_object(v, path)?.unwrap_or_default() {
                    let tpath = path.key(&type_name);
                    let kind = parse_enum(
                        &Json::String(type_name.clone()),
                        &tpath,
                        CallerIdentityType::from_repr,
                    )
                    .or_else(|e| match type_name.parse::<u8>() {
                        // Keys are always strings; allow the number in one too.
                        Ok(n) => CallerIdentityType::from_repr(n).ok_or(e),
                        Err(_) => Err(e),
                    })?;
                    let entries = opt_array(list, &tpath)?;
                    if entries.is_empty() {
                        return Err(JsonError::NoIdentities {
                            field: tpath.render(),
                            identity_type: kind.wire_name(),
                        });
                    }
                    for (i, entry) in entries.into_iter().enumerate() {
                        let epath = tpath.index(i);
                        r.push_caller_identity(parse_identity(kind, entry, &epath)?);
                    }
                }
            }
            "OperationCategories" => {
                for (i, c) in opt_array(v, path)?.iter().enumerate() {
                    let cpath = path.index(i);
                    r.categories
                        .insert(parse_enum(c, &cpath, OperationCategory::from_repr)?);
                }
            }
            "CustomData" => {
                r.custom_data = match opt_object(v, path)? {
                    Some(m) => custom_map(m, path)?.into(),
                    None => Vec::new().into(),
                };
            }
            "TargetResources" => {
                for (resource_type, list) in opt_object(v, path)?.unwrap_or_default() {
                    let tpath = path.key(&resource_type);
                    let items = opt_array(list, &tpath)?;
                    let resource_type = Text::Owned(resource_type.clone());
                    for (i, entry) in items.into_iter().enumerate() {
                        let epath = tpath.index(i);
                        r.push_target_resource(parse_target(resource_type.clone(), entry, &epath)?);
                    }
                }
            }
            "CallerAccessLevels" => {
                for (i, level) in opt_array(v, path)?.into_iter().enumerate() {
                    let lpath = path.index(i);
                    match level {
                        Json::String(s) => r.push_caller_access_level(s),
                        other => return Err(wrong_type(&lpath, "a string", &other)),
                    }
                }
            }
            "OperationAccessLevel" => r.operation_access_level = opt_text(v, path)?,
            "OperationName" => r.operation_name = opt_text(v, path)?,
            "OperationResultDescription" => r.operation_result_description = opt_text(v, path)?,
            "CallerAgent" => r.caller_agent = opt_text(v, path)?,
            "OperationCategoryDescription" => r.operation_category_description = opt_text(v, path)?,
            "OperationType" => {
                if !v.is_null() {
                    r.operation_type = Some(parse_enum(&v, path, OperationType::from_repr)?);
                }
            }
            "OperationResult" => {
                if !v.is_null() {
                    r.operation_result = Some(parse_enum(&v, path, OperationResult::from_repr)?);
                }
            }
            _ => return Err(unknown_field(path)),
        }
    }
    Ok((r, service_tree_id))
}

fn parse_identity(
    kind: CallerIdentityType,
    entry: Json,
    path: &Path<'_>,
) -> Result<CallerIdentity, JsonError> {
    let Json::Object(m) = entry else {
        return Err(wrong_type(path, "an object", &entry));
    };
    let mut id = CallerIdentity {
        kind,
        identity: Text::Borrowed(""),
        description: Text::Borrowed(""),
    };
    for (key, v) in m {
        let fpath = path.key(&key);
        match key.as_str() {
            "Identity" => id.identity = opt_text(v, &fpath)?,
            "Description" => id.description = opt_text(v, &fpath)?,
            _ => return Err(unknown_field(&fpath)),
        }
    }
    Ok(id)
}

fn parse_target(
    resource_type: Text,
    entry: Json,
    path: &Path<'_>,
) -> Result<TargetResource, JsonError> {
    let Json::Object(m) = entry else {
        return Err(wrong_type(path, "an object", &entry));
    };
    let mut t = TargetResource::new(resource_type, "");
    for (key, v) in m {
        let fpath = path.key(&key);
        match key.as_str() {
            "Name" => t.name = opt_text(v, &fpath)?,
            "Cluster" => t.cluster = opt_text(v, &fpath)?,
            "DataCenter" => t.data_center = opt_text(v, &fpath)?,
            "Region" => t.region = opt_text(v, &fpath)?,
            _ => return Err(unknown_field(&fpath)),
        }
    }
    Ok(t)
}

fn parse_heartbeat(map: Map<String, Json>) -> Result<Heartbeat, JsonError> {
    let root = Path::root("heartbeat");
    let mut hb = Heartbeat {
        service_id: Text::Borrowed(""),
        audit_version: Text::Borrowed(""),
        os_version: Text::Borrowed(""),
        language: Text::Borrowed(""),
        destination: Text::Borrowed(""),
    };
    for (key, v) in map {
        let path = root.key(&key);
        let slot = match key.as_str() {
            "AsmAuditServiceId" => &mut hb.service_id,
            "AuditVersion" => &mut hb.audit_version,
            "OsVersion" => &mut hb.os_version,
            "Language" => &mut hb.language,
            "Destination" => &mut hb.destination,
            _ => return Err(unknown_field(&path)),
        };
        *slot = opt_text(v, &path)?;
    }
    Ok(hb)
}

fn custom_map(map: Map<String, Json>, path: &Path<'_>) -> Result<Vec<(Text, Value)>, JsonError> {
    let mut out = Vec::with_capacity(map.len());
    for (key, v) in map {
        let value = custom_value(v, &path.key(&key))?;
        out.push((Text::Owned(key), value));
    }
    Ok(out)
}

fn custom_value(v: Json, path: &Path<'_>) -> Result<Value, JsonError> {
    Ok(match v {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(b),
        Json::Number(n) => number(&n, path)?,
        Json::String(s) => Value::Str(Text::Owned(s)),
        Json::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| custom_value(item, &path.index(i)))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(m) if m.contains_key("$type") => typed(m, path)?,
        Json::Object(m) => Value::Map(custom_map(m, path)?),
    })
}

fn number(n: &Number, path: &Path<'_>) -> Result<Value, JsonError> {
    if let Some(i) = n.as_i64() {
        Ok(Value::Int(i))
    } else if let Some(u) = n.as_u64() {
        Ok(Value::UInt(u))
    } else {
        n.as_f64()
            .map(Value::Float)
            .ok_or_else(|| JsonError::InvalidNumber {
                field: path.render(),
                value: n.to_string(),
                expected: "a 64-bit number",
            })
    }
}

/// `{"$type": T, "$value": V}`.
fn typed(m: Map<String, Json>, path: &Path<'_>) -> Result<Value, JsonError> {
    let mut type_name = None;
    let mut value = None;
    for (key, v) in m {
        match key.as_str() {
            "$type" => match v {
                Json::String(s) => type_name = Some(s),
                other => return Err(wrong_type(&path.key("$type"), "a string", &other)),
            },
            "$value" => value = Some(v),
            _ => return Err(unknown_field(&path.key(&key))),
        }
    }
    // `typed` is only called when `$type` is present.
    let type_name = type_name.unwrap_or_default();
    let Some(value) = value else {
        return Err(JsonError::InvalidTypedValue {
            field: path.render(),
            type_name,
            reason: "$value is missing",
        });
    };
    typed_value(&type_name, value, path)
}

fn typed_value(type_name: &str, v: Json, path: &Path<'_>) -> Result<Value, JsonError> {
    let invalid = |reason: &'static str| JsonError::InvalidTypedValue {
        field: path.render(),
        type_name: type_name.to_owned(),
        reason,
    };
    let signed = |min: i64, max: i64| match &v {
        Json::Number(n) => match n.as_i64() {
            Some(i) if (min..=max).contains(&i) => Ok(Value::Int(i)),
            Some(_) => Err(invalid("out of range")),
            None if n.is_u64() => Err(invalid("out of range")),
            None => Err(invalid("expected an integer")),
        },
        _ => Err(invalid("expected an integer")),
    };
    let unsigned = |max: u64| match &v {
        Json::Number(n) => match n.as_u64() {
            Some(u) if u <= max => Ok(Value::UInt(u)),
            Some(_) => Err(invalid("out of range")),
            None if n.is_i64() => Err(invalid("out of range")),
            None => Err(invalid("expected an integer")),
        },
        _ => Err(invalid("expected an integer")),
    };
    match type_name {
        "int" | "int64" => signed(i64::MIN, i64::MAX),
        "int8" => signed(i8::MIN.into(), i8::MAX.into()),
        "int16" => signed(i16::MIN.into(), i16::MAX.into()),
        "int32" => signed(i32::MIN.into(), i32::MAX.into()),
        "uint" | "uint64" => unsigned(u64::MAX),
        "uint8" => unsigned(u8::MAX.into()),
        "uint16" => unsigned(u16::MAX.into()),
        "uint32" => unsigned(u32::MAX.into()),
        "float64" => match &v {
            Json::Number(n) => n
                .as_f64()
                .map(Value::Float)
                .ok_or_else(|| invalid("expected a number")),
            // What Go's strconv.FormatFloat writes for the floats JSON has no number for.
            Json::String(s) => match s.as_str() {
                "NaN" => Ok(Value::Float(f64::NAN)),
                "+Inf" | "Inf" => Ok(Value::Float(f64::INFINITY)),
                "-Inf" => Ok(Value::Float(f64::NEG_INFINITY)),
                _ => Err(invalid("expected a number, NaN, +Inf or -Inf")),
            },
            _ => Err(invalid("expected a number")),
        },
        "map" => match v {
            Json::Object(m) => Ok(Value::Map(custom_map(m, path)?)),
            _ => Err(invalid("expected an object")),
        },
        "string" => match v {
            Json::String(s) => Ok(Value::Str(Text::Owned(s))),
            _ => Err(invalid("expected a string")),
        },
        "bool" => match v {
            Json::Bool(b) => Ok(Value::Bool(b)),
            _ => Err(invalid("expected a boolean")),
        },
        "bytes" | "[]byte" => match &v {
            Json::String(s) => decode_base64(s)
                .map(|b| Value::Bytes(b.into()))
                .ok_or_else(|| invalid("not standard base64")),
            _ => Err(invalid("expected a base64 string")),
        },
        "float32" | "time" => Err(JsonError::Inexpressible {
            field: path.render(),
            type_name: type_name.to_owned(),
        }),
        _ => match type_name.strip_prefix("[]") {
            Some(element) => match v {
                Json::Array(items) => Ok(Value::Array(
                    items
                        .into_iter()
                        .enumerate()
                        .map(|(i, item)| typed_value(element, item, &path.index(i)))
                        .collect::<Result<_, _>>()?,
                )),
                _ => Err(invalid("expected an array")),
            },
            None => Err(JsonError::UnknownValueType {
                field: path.render(),
                type_name: type_name.to_owned(),
            }),
        },
    }
}

/// Decodes standard base64 (`A-Z a-z 0-9 + /`), padded or not; `None` for anything
/// else, including non-zero bits after the last byte.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let mut body = s.as_bytes();
    if body.len() % 4 == 0 {
        for _ in 0..2 {
            if let [rest @ .., b'='] = body {
                body = rest;
            }
        }
    }
    if body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &c in body {
        let sextet = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (acc == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(line: &str) -> JsonError {
        match parse_line(line) {
            Ok(m) => panic!("{line} parsed as {m:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn base64_round_trips_and_refuses_junk() {
        assert_eq!(
            decode_base64("AAEC/w==").as_deref(),
            Some(&[0, 1, 2, 255][..])
        );
        assert_eq!(
            decode_base64("AAEC/w").as_deref(),
            Some(&[0, 1, 2, 255][..])
        );
        assert_eq!(decode_base64("").as_deref(), Some(&[][..]));
        assert_eq!(decode_base64("TWFu").as_deref(), Some(&b"Man"[..]));
        assert_eq!(decode_base64("TWE=").as_deref(), Some(&b"Ma"[..]));
        assert_eq!(decode_base64("TQ==").as_deref(), Some(&b"M"[..]));
        for bad in [
            "T", "TQ=", "TR==", "T===", "TW-u", "TW u", "TQ==TQ==", "====",
        ] {
            assert_eq!(decode_base64(bad), None, "{bad}");
        }
    }

    #[test]
    fn fields_map_onto_the_record() {
        let m = parse_line(
            r#"{"name":"n","type":"asmauditcp","ts":-5,"record":{
                "env_ikey":"{E6C9FCB1-7F08-4C1D-9E7A-123456789ABC}","CallerIpAddress":"fe80::1%eth0",
                "CallerIdentities":{"upn":[{"Identity":"a","Description":"b"}],"1":[{"Identity":"c"}]},
                "OperationCategories":["euii",1,"Other"],
                "TargetResources":{"T":[{"Name":"n","Region":"r"}]},
                "CallerAccessLevels":["b","a","b"],
                "OperationType":"DELETE","OperationResult":2,
                "OperationResultDescription":"why",
                "CustomData":{"z":1,"a":{"$type":"[]uint8","$value":[1,255]},"big":18446744073709551615,"f":1.5}}}"#,
        )
        .unwrap();
        assert_eq!(m.name.as_deref(), Some("n"));
        assert_eq!(m.kind, MessageKind::ControlPlane);
        assert_eq!(m.ts, Some(-5));
        assert_eq!(
            m.service_tree_id.as_deref(),
            Some("e6c9fcb1-7f08-4c1d-9e7a-123456789abc")
        );
        let r = m.record().unwrap();
        assert_eq!(r.caller_ip, Some("fe80::1".parse().unwrap()));
        assert_eq!(r.caller_ip_zone, "eth0");
        let ids: Vec<_> = r
            .get_caller_identities()
            .iter()
            .map(|i| (i.kind, &*i.identity, &*i.description))
            .collect();
        assert_eq!(
            ids,
            [
                (CallerIdentityType::Other, "c", ""),
                (CallerIdentityType::Upn, "a", "b")
            ]
        );
        let cats: Vec<_> = r.get_operation_categories().iter().collect();
        assert_eq!(cats, [OperationCategory::Other, OperationCategory::Euii]);
        assert_eq!(r.get_target_resources()[0].region, "r");
        assert_eq!(r.get_caller_access_levels(), ["a", "b"]);
        assert_eq!(r.operation_type, Some(OperationType::Delete));
        assert_eq!(r.operation_result, Some(OperationResult::Failure));
        assert_eq!(
            r.get_custom_data(),
            [
                (Text::from("z"), Value::Int(1)),
                (
                    Text::from("a"),
                    Value::Array(vec![Value::UInt(1), Value::UInt(255)])
                ),
                (Text::from("big"), Value::UInt(u64::MAX)),
                (Text::from("f"), Value::Float(1.5)),
            ]
        );
    }

    #[test]
    fn nulls_and_missing_fields_are_unset() {
        let m = parse_line(
            r#"{"type":"DataPlane","ts":null,"record":{"CustomData":null,"OperationType":null,"CallerIpAddress":""}}"#,
        )
        .unwrap();
        assert_eq!(m.ts, None);
        assert_eq!(m.record(), Some(&Record::data_plane()));
        let m = parse_line(r#"{"type":"Heartbeat"}"#).unwrap();
        assert_eq!(m.heartbeat().map(|h| &*h.language), Some(""));
        let m = parse_line(r#"{"type":"diagnostic"}"#).unwrap();
        assert_eq!(m.body, JsonBody::Diagnostic);
    }

    #[test]
    fn errors_name_the_field_and_value() {
        let e = err(r#"{"type":"DataPlane","record":{"OperationType":77}}"#);
        assert_eq!(
            e,
            JsonError::UnknownEnum {
                field: "record.OperationType".into(),
                value: "77".into()
            }
        );
        let e = err(r#"{"type":"DataPlane","record":{"OperationCategories":["KeyManagement",0]}}"#);
        assert_eq!(e.field(), Some("record.OperationCategories[1]"));
        let e = err(r#"{"type":"DataPlane","record":{"CallerIdentities":{"99":[]}}}"#);
        assert_eq!(
            e.to_string(),
            r#"record.CallerIdentities.99: unknown value "99""#
        );
        let e = err(r#"{"type":"DataPlane","record":{"CallerIpAddress":"10.0.0.300"}}"#);
        assert_eq!(e.field(), Some("record.CallerIpAddress"));
        let e = err(r#"{"type":"DataPlane","record":{"CallerIpAddress":"fe80::1%"}}"#);
        assert!(matches!(e, JsonError::InvalidIp { .. }), "{e}");
        let e = err(r#"{"type":"DataPlane","record":{"OperationNmae":"x"}}"#);
        assert_eq!(e.to_string(), "record.OperationNmae: unknown field");
        let e = err(
            r#"{"type":"DataPlane","record":{"CustomData":{"m":{"x":[1,{"$type":"float32","$value":0.5}]}}}}"#,
        );
        assert_eq!(
            e,
            JsonError::Inexpressible {
                field: "record.CustomData.m.x[1]".into(),
                type_name: "float32".into()
            }
        );
        for line in [
            r#"{"type":"DataPlane","record":{"CustomData":{"i":{"$type":"int8","$value":128}}}}"#,
            r#"{"type":"DataPlane","record":{"CustomData":{"i":{"$type":"uint8","$value":-1}}}}"#,
        ] {
            let e = err(line);
            let out_of_range = matches!(
                e,
                JsonError::InvalidTypedValue {
                    reason: "out of range",
                    ..
                }
            );
            assert!(out_of_range, "{line}: {e}");
        }
        let e = err(
            r#"{"type":"DataPlane","record":{"CustomData":{"i":{"$type":"complex128","$value":1}}}}"#,
        );
        assert!(matches!(e, JsonError::UnknownValueType { .. }), "{e}");
        let e = err(r#"{"type":"DataPlane","record":{"CustomData":{"i":{"$type":"int"}}}}"#);
        assert!(matches!(e, JsonError::InvalidTypedValue { .. }), "{e}");
        let e = err(r#"{"type":"Frame","record":{}}"#);
        assert_eq!(e.field(), Some("type"));
        assert_eq!(
            err(r#"{"record":{}}"#),
            JsonError::MissingField {
                field: "type".into()
            }
        );
        let e = err(r#"{"type":"DataPlane","heartbeat":{}}"#);
        assert!(matches!(e, JsonError::UnexpectedField { .. }), "{e}");
        let e = err(r#"{"type":"DataPlane","ts":1.5}"#);
        assert!(matches!(e, JsonError::InvalidNumber { .. }), "{e}");
        let e = err(r#"{"type":"DataPlane","ts":18446744073709551615}"#);
        assert!(matches!(e, JsonError::InvalidNumber { .. }), "{e}");
        assert!(matches!(err("[1]"), JsonError::NotAnObject { .. }));
        assert!(matches!(err("{"), JsonError::Syntax { .. }));
        let e = err(r#"{"type":"DataPlane","record":{"CallerAccessLevels":["a",1]}}"#);
        assert_eq!(
            e.to_string(),
            "record.CallerAccessLevels[1]: expected a string, found a number"
        );
    }

    #[test]
    fn env_ikey_must_be_a_uuid_and_empty_means_none() {
        let m = parse_line(r#"{"type":"DataPlane","record":{"env_ikey":""}}"#).unwrap();
        assert_eq!(m.service_tree_id, None);
        let e = err(r#"{"type":"DataPlane","record":{"env_ikey":"svc"}}"#);
        assert!(
            matches!(&e, JsonError::ServiceTreeId { field, error: ValidationError::ServiceTreeIdNotUuid { .. } } if field == "record.env_ikey"),
            "{e:?}"
        );
        let e = err(
            r#"{"type":"DataPlane","record":{"env_ikey":"00000000-0000-0000-0000-000000000000"}}"#,
        );
        assert_eq!(
            e.to_string(),
            "record.env_ikey: service tree ID cannot be the nil UUID"
        );
    }

    #[test]
    fn ts_is_the_records_event_time() {
        let m = parse_line(r#"{"type":"DataPlane","ts":-7,"record":{}}"#).unwrap();
        assert_eq!(m.record().and_then(Record::get_event_time), Some(-7));
        let m = parse_line(r#"{"type":"DataPlane","record":{}}"#).unwrap();
        assert_eq!(m.record().and_then(Record::get_event_time), None);
    }

    #[test]
    fn an_identity_type_without_identities_is_refused_by_name() {
        for list in ["[]", "null"] {
            let line = format!(
                r#"{{"type":"DataPlane","record":{{"CallerIdentities":{{"UPN":[{{"Identity":"a","Description":"b"}}],"puid":{list}}}}}}}"#
            );
            let e = err(&line);
            assert_eq!(
                e.to_string(),
                "record.CallerIdentities.puid: at least one identity is required for identity type PUID"
            );
            assert_eq!(e.field(), Some("record.CallerIdentities.puid"));
        }
    }

    #[test]
    fn non_finite_floats_and_maps_with_a_type_key_have_typed_forms() {
        let m = parse_line(
            r#"{"type":"DataPlane","record":{"CustomData":{"f":[{"$type":"float64","$value":"+Inf"},{"$type":"float64","$value":"-Inf"},{"$type":"float64","$value":"NaN"}],"m":{"$type":"map","$value":{"$type":"x"}}}}}"#,
        )
        .unwrap();
        let data = m.record().unwrap().get_custom_data();
        let Value::Array(f) = &data[0].1 else {
            panic!("{data:?}")
        };
        assert_eq!(
            f[..2],
            [Value::Float(f64::INFINITY), Value::Float(f64::NEG_INFINITY)]
        );
        assert!(matches!(f[2], Value::Float(x) if x.is_nan()));
        assert_eq!(
            data[1].1,
            Value::Map(vec![("$type".into(), Value::from("x"))])
        );
        let e = err(
            r#"{"type":"DataPlane","record":{"CustomData":{"f":{"$type":"float64","$value":"inf"}}}}"#,
        );
        assert!(matches!(e, JsonError::InvalidTypedValue { .. }), "{e}");
        let e = err(
            r#"{"type":"DataPlane","record":{"CustomData":{"m":{"$type":"map","$value":[]}}}}"#,
        );
        assert!(matches!(e, JsonError::InvalidTypedValue { .. }), "{e}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let line = format!(
            r#"{{"type":"DataPlane","record":{{"CustomData":{{"a":{}{}}}}}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(matches!(err(&line), JsonError::Syntax { .. }));
    }
}
