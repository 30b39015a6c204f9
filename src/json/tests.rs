//! Unit tests of the parser.

use super::custom::decode_base64;
use super::*;
use crate::kinds::{CallerIdentityType, OperationCategory, OperationResult, OperationType};
use crate::record::{Text, Value};
use crate::validate::ValidationError;

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
    let e =
        err(r#"{"type":"DataPlane","record":{"env_ikey":"00000000-0000-0000-0000-000000000000"}}"#);
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
    let e =
        err(r#"{"type":"DataPlane","record":{"CustomData":{"m":{"$type":"map","$value":[]}}}}"#);
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
