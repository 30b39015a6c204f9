//! Records as JSON lines: the inverse of [`parse_line`](super::parse_line), so that a
//! record (an unsent one from a [`CloseReport`](crate::CloseReport), say) can be saved
//! and sent again later with its own event time.

use serde_json::{Map, Number, Value as Json};

use super::{JsonBody, JsonMessage};
use crate::encode::Heartbeat;
use crate::record::{Record, Value};

/// One JSON line for `record`, in the shape [`parse_line`](super::parse_line) reads:
/// `{"type": ..., "ts": ..., "record": {...}}`, with `ts` only when the record has an
/// event time. `parse_line(&to_line(&r))` gives back `r` for every record that passes
/// validation, so `to_line` of that is the same line again.
///
/// ```
/// use geneva_audit::json::{parse_line, to_line};
/// use geneva_audit::{CallerIdentityType, Record};
///
/// let record = Record::data_plane()
///     .event_time(1_700_000_000)
///     .add_caller_identity(CallerIdentityType::Upn, "alice@contoso.com", "user")
///     .custom("attempt", 2u64);
/// let line = to_line(&record);
/// assert!(line.starts_with(r#"{"type":"DataPlane","ts":1700000000,"record":{"#));
/// assert_eq!(parse_line(&line).unwrap().record(), Some(&record));
/// ```
pub fn to_line(record: &Record) -> String {
    to_value(record).to_string()
}

/// `record` as the JSON value [`to_line`] writes.
pub fn to_value(record: &Record) -> Json {
    let mut top = Map::new();
    top.insert("type".into(), Json::from(record.get_kind().to_string()));
    if let Some(ts) = record.get_event_time() {
        top.insert("ts".into(), Json::from(ts));
    }
    top.insert("record".into(), Json::Object(record_map(record, None)));
    Json::Object(top)
}

/// One JSON line for a whole message, `name` and `env_ikey` included: what
/// [`parse_line`](super::parse_line) read, written back. `ts` is the message's, or for a
/// record without one, the record's event time.
pub fn message_to_line(msg: &JsonMessage) -> String {
    let mut top = Map::new();
    if let Some(name) = &msg.name {
        top.insert("name".into(), Json::from(name.as_str()));
    }
    top.insert("type".into(), Json::from(msg.kind.to_string()));
    let ts = match &msg.body {
        JsonBody::Record(r) => msg.ts.or(r.get_event_time()),
        _ => msg.ts,
    };
    if let Some(ts) = ts {
        top.insert("ts".into(), Json::from(ts));
    }
    match &msg.body {
        JsonBody::Record(r) => {
            let body = record_map(r, msg.service_tree_id.as_deref());
            top.insert("record".into(), Json::Object(body));
        }
        JsonBody::Heartbeat(hb) => {
            top.insert("heartbeat".into(), Json::Object(heartbeat_map(hb)));
        }
        JsonBody::Diagnostic => {}
    }
    Json::Object(top).to_string()
}

/// The record's fields in wire order; unset optional ones (the address, the type and
/// the result) and empty custom data are left out, as the parser reads them.
fn record_map(r: &Record, service_tree_id: Option<&str>) -> Map<String, Json> {
    let mut m = Map::new();
    if let Some(id) = service_tree_id {
        m.insert("env_ikey".into(), Json::from(id));
    }
    if let Some(ip) = r.get_caller_ip() {
        let text = match r.get_caller_ip_zone() {
            "" => ip.to_string(),
            zone => format!("{ip}%{zone}"),
        };
        m.insert("CallerIpAddress".into(), Json::from(text));
    }
    let mut identities = Map::new();
    for id in r.get_caller_identities() {
        let entry = Json::Object(Map::from_iter([
            ("Identity".to_owned(), Json::from(id.get_identity())),
            ("Description".to_owned(), Json::from(id.get_description())),
        ]));
        push_to_group(&mut identities, id.get_kind().wire_name(), entry);
    }
    m.insert("CallerIdentities".into(), Json::Object(identities));
    let categories = r.get_operation_categories().iter();
    let categories = categories.map(|c| Json::from(c.wire_name())).collect();
    m.insert("OperationCategories".into(), Json::Array(categories));
    if !r.get_custom_data().is_empty() {
        m.insert("CustomData".into(), Json::Object(map(r.get_custom_data())));
    }
    let mut targets = Map::new();
    for t in r.get_target_resources() {
        let entry = Json::Object(Map::from_iter([
            ("Name".to_owned(), Json::from(t.get_name())),
            ("Cluster".to_owned(), Json::from(t.get_cluster())),
            ("DataCenter".to_owned(), Json::from(t.get_data_center())),
            ("Region".to_owned(), Json::from(t.get_region())),
        ]));
        push_to_group(&mut targets, t.get_resource_type(), entry);
    }
    m.insert("TargetResources".into(), Json::Object(targets));
    let levels = r.get_caller_access_levels().iter();
    let levels = levels.map(|l| Json::from(&**l)).collect();
    m.insert("CallerAccessLevels".into(), Json::Array(levels));
    for (key, text) in [
        ("OperationAccessLevel", r.get_operation_access_level()),
        ("OperationName", r.get_operation_name()),
        (
            "OperationResultDescription",
            r.get_operation_result_description(),
        ),
        ("CallerAgent", r.get_caller_agent()),
        (
            "OperationCategoryDescription",
            r.get_operation_category_description(),
        ),
    ] {
        m.insert(key.into(), Json::from(text));
    }
    if let Some(t) = r.get_operation_type() {
        m.insert("OperationType".into(), Json::from(t.wire_name()));
    }
    if let Some(result) = r.get_operation_result() {
        m.insert("OperationResult".into(), Json::from(result.wire_name()));
    }
    m
}

/// Appends `entry` to the array under `key`, creating it.
fn push_to_group(groups: &mut Map<String, Json>, key: &str, entry: Json) {
    match groups.get_mut(key) {
        Some(Json::Array(list)) => list.push(entry),
        _ => {
            groups.insert(key.to_owned(), Json::Array(vec![entry]));
        }
    }
}

fn heartbeat_map(hb: &Heartbeat) -> Map<String, Json> {
    Map::from_iter(
        [
            ("AsmAuditServiceId", &hb.service_id),
            ("AuditVersion", &hb.audit_version),
            ("OsVersion", &hb.os_version),
            ("Language", &hb.language),
            ("Destination", &hb.destination),
        ]
        .map(|(k, v)| (k.to_owned(), Json::from(&**v))),
    )
}

fn map(entries: &[(crate::Text, Value)]) -> Map<String, Json> {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), value(v)))
        .collect()
}

/// A custom value in the form the parser reads back as the same [`Value`]: plain JSON
/// where that is unambiguous, `{"$type": T, "$value": V}` where it is not.
fn value(v: &Value) -> Json {
    match v {
        Value::Nil => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        // A plain number up to i64::MAX reads back as an Int.
        Value::UInt(u) => typed("uint64", Json::from(*u)),
        Value::Float(f) => match Number::from_f64(*f) {
            Some(n) => Json::Number(n),
            None => typed("float64", Json::from(non_finite_name(*f))),
        },
        Value::Str(s) => Json::from(&**s),
        Value::Bytes(b) => typed("bytes", Json::from(encode_base64(b))),
        Value::Array(items) => Json::Array(items.iter().map(value).collect()),
        // A nested map with a `$type` key would read back as a typed value.
        Value::Map(entries) if entries.iter().any(|(k, _)| k == "$type") => {
            typed("map", Json::Object(map(entries)))
        }
        Value::Map(entries) => Json::Object(map(entries)),
    }
}

fn typed(type_name: &str, value: Json) -> Json {
    Json::Object(Map::from_iter([
        ("$type".to_owned(), Json::from(type_name)),
        ("$value".to_owned(), value),
    ]))
}

/// The names Go's `strconv.FormatFloat` gives the floats JSON has no number for.
fn non_finite_name(f: f64) -> &'static str {
    if f.is_nan() {
        "NaN"
    } else if f > 0.0 {
        "+Inf"
    } else {
        "-Inf"
    }
}

/// Standard base64 with padding, the form the parser's `bytes` type reads.
fn encode_base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::custom::decode_base64;
    use crate::json::parse_line;

    #[test]
    fn base64_encodes_what_the_parser_decodes() {
        assert_eq!(encode_base64(b""), "");
        assert_eq!(encode_base64(b"M"), "TQ==");
        assert_eq!(encode_base64(b"Ma"), "TWE=");
        assert_eq!(encode_base64(b"Man"), "TWFu");
        assert_eq!(encode_base64(&[0, 1, 2, 255]), "AAEC/w==");
        let all: Vec<u8> = (0..=255).collect();
        for n in 0..all.len() {
            assert_eq!(
                decode_base64(&encode_base64(&all[..n])).as_deref(),
                Some(&all[..n])
            );
        }
    }

    #[test]
    fn values_json_cannot_say_plainly_come_back_as_themselves() {
        let record = Record::data_plane().custom(
            "v",
            Value::Array(vec![
                Value::UInt(1),
                Value::UInt(u64::MAX),
                Value::Int(-1),
                Value::Float(2.0),
                Value::Float(f64::INFINITY),
                Value::Float(f64::NEG_INFINITY),
                Value::Float(-0.0),
                Value::Bytes(vec![0, 255].into()),
                Value::Map(vec![
                    ("$type".into(), Value::from("not a type")),
                    ("$value".into(), Value::Nil),
                ]),
                Value::Map(vec![("$value".into(), Value::Nil)]),
            ]),
        );
        let line = to_line(&record);
        let back = parse_line(&line).unwrap();
        assert_eq!(back.record(), Some(&record), "{line}");
        // NaN is not equal to itself; check it by kind.
        let nan = Record::data_plane().custom("nan", f64::NAN);
        let back = parse_line(&to_line(&nan)).unwrap();
        let value = back.record().map(|r| &r.get_custom_data()[0].1);
        assert!(matches!(value, Some(Value::Float(f)) if f.is_nan()));
    }

    #[test]
    fn a_message_is_written_back_with_its_name_and_service_tree_id() {
        for line in [
            r#"{"name":"n","type":"ControlPlane","ts":5,"record":{"env_ikey":"e6c9fcb1-7f08-4c1d-9e7a-123456789abc","CallerIdentities":{},"OperationCategories":[],"TargetResources":{},"CallerAccessLevels":[],"OperationAccessLevel":"","OperationName":"x","OperationResultDescription":"","CallerAgent":"","OperationCategoryDescription":""}}"#,
            r#"{"name":"hb","type":"Heartbeat","ts":7,"heartbeat":{"AsmAuditServiceId":"s","AuditVersion":"v","OsVersion":"o","Language":"l","Destination":"d"}}"#,
            r#"{"type":"Diagnostic"}"#,
        ] {
            let msg = parse_line(line).unwrap();
            assert_eq!(message_to_line(&msg), line);
        }
    }
}
