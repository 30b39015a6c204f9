//! Properties of the encoder over arbitrary valid records: the record validates, and its
//! frame decodes (with rmpv) to exactly the tree the wire contract prescribes for it:
//! categories in numeric order, access levels sorted bytewise without duplicates,
//! identities grouped by type in enum order, resources grouped by type in first-seen
//! order, custom data as written. `encoded_len` is the frame's length, encoding is
//! deterministic, and the record is left unchanged. The JSON form writes every such
//! record as a line that reads back as the same record.

use std::net::IpAddr;

use geneva_audit::{
    CallerIdentityType, Encoder, MessageKind, OperationCategory, OperationResult, OperationType,
    Record, TargetResource, Text, Value,
};
use oracle::same;
use proptest::collection::vec;
use proptest::prelude::*;
use rmpv::Value as Mp;

#[path = "support/oracle.rs"]
mod oracle;

/// Everything a generated record is built from, kept to derive the expected frame.
#[derive(Debug, Clone)]
struct Spec {
    kind: MessageKind,
    ts: i64,
    ip: IpAddr,
    zone: Option<String>,
    identities: Vec<(CallerIdentityType, String, String)>,
    categories: Vec<OperationCategory>,
    resources: Vec<[String; 5]>,
    access_levels: Vec<String>,
    operation_access_level: String,
    operation_name: String,
    result_description: String,
    caller_agent: String,
    category_description: String,
    operation_type: OperationType,
    result: OperationResult,
    /// Keys may repeat: a later value replaces an earlier one in place.
    custom: Vec<(String, Value)>,
}

/// Pads `prefix` with `x` to exactly `len` bytes (when it is shorter).
fn pad((len, prefix): (usize, String)) -> String {
    let mut s = prefix;
    while s.len() < len {
        s.push('x');
    }
    s
}

/// Any text, now and then exactly at or around a msgpack string-length boundary.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        40 => "\\PC{0,12}",
        4 => (prop::sample::select(vec![30usize, 31, 32, 33, 254, 255, 256, 257]), "\\PC{0,3}")
            .prop_map(pad),
        1 => (prop::sample::select(vec![65534usize, 65535, 65536, 65537]), "\\PC{0,3}")
            .prop_map(pad),
    ]
}

/// Text that is neither empty nor white space only.
fn nonblank() -> impl Strategy<Value = String> {
    text().prop_map(|s| {
        if s.trim().is_empty() {
            format!("x{s}")
        } else {
            s
        }
    })
}

/// One of a few common values (so that repeats happen) or anything.
fn pooled(pool: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(pool).prop_map(str::to_owned),
        nonblank()
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(&["id", "n", "ключ", "🔑"][..]).prop_map(str::to_owned),
        text()
    ]
}

fn dedup_keys(entries: Vec<(String, Value)>) -> Vec<(Text, Value)> {
    let mut out: Vec<(Text, Value)> = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        if !out.iter().any(|(k2, _)| *k2 == k) {
            out.push((k.into(), v));
        }
    }
    out
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<u64>().prop_map(Value::UInt),
        any::<f64>().prop_map(Value::Float),
        text().prop_map(Value::from),
        prop_oneof![
            8 => vec(any::<u8>(), 0..40),
            1 => prop::sample::select(vec![255usize, 256, 65535, 65536]).prop_map(|n| vec![7u8; n]),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((key(), inner), 0..6).prop_map(|e| Value::Map(dedup_keys(e))),
        ]
    })
}

fn ip_and_zone() -> impl Strategy<Value = (IpAddr, Option<String>)> {
    (
        any::<IpAddr>().prop_filter("sendable address", |ip| {
            let ip = ip.to_canonical();
            !ip.is_unspecified() && !ip.is_loopback() && !ip.is_multicast()
        }),
        prop::option::of("[a-z0-9]{1,8}|\\PC{1,4}"),
    )
        .prop_map(|(ip, zone)| (ip, zone.filter(|_| ip.is_ipv6())))
}

fn spec() -> impl Strategy<Value = Spec> {
    let identity = (
        (1u8..=14).prop_map(|n| CallerIdentityType::from_repr(n).expect("1..=14")),
        nonblank(),
        nonblank(),
    );
    let resource = (
        pooled(&["SubscriptionId", "ResourceGroup", "Tenant"]),
        nonblank(),
        text(),
        text(),
        text(),
    )
        .prop_map(|(t, n, c, d, r)| [t, n, c, d, r]);
    let who = (
        prop::sample::select(vec![MessageKind::DataPlane, MessageKind::ControlPlane]),
        any::<i64>(),
        ip_and_zone(),
        vec(identity, 1..7),
        vec(
            (1u8..=19).prop_map(|n| OperationCategory::from_repr(n).expect("1..=19")),
            1..8,
        ),
        vec(resource, 1..7),
        vec(pooled(&["Reader", "Contributor", "Owner", "owner"]), 1..7),
    );
    let what = (
        nonblank(),
        nonblank(),
        text(),
        nonblank(),
        text(),
        (1u8..=4).prop_map(|n| OperationType::from_repr(n).expect("1..=4")),
        (1u8..=2).prop_map(|n| OperationResult::from_repr(n).expect("1..=2")),
        vec((key(), value()), 0..6),
    );
    (who, what).prop_map(
        |(
            (kind, ts, (ip, zone), identities, categories, resources, access_levels),
            (oal, name, result_desc, agent, cat_desc, op_type, result, custom),
        )| {
            let mut spec = Spec {
                kind,
                ts,
                ip,
                zone,
                identities,
                categories,
                resources,
                access_levels,
                operation_access_level: oal,
                operation_name: name,
                result_description: result_desc,
                caller_agent: agent,
                category_description: cat_desc,
                operation_type: op_type,
                result,
                custom,
            };
            // The conditional requirements of validation.
            if spec.result == OperationResult::Failure && spec.result_description.is_empty() {
                spec.result_description = "failed".into();
            }
            if spec.categories.contains(&OperationCategory::Other)
                && spec.category_description.is_empty()
            {
                spec.category_description = "other".into();
            }
            spec
        },
    )
}

/// Builds the record with the public builder, mixing owned and static text.
fn build(spec: &Spec) -> Record {
    let mut r = Record::new(spec.kind)
        .caller_ip(spec.ip)
        .operation_access_level(spec.operation_access_level.clone())
        .operation_name(spec.operation_name.clone())
        .operation_result_description(spec.result_description.clone())
        .caller_agent(spec.caller_agent.clone())
        .operation_category_description(spec.category_description.clone())
        .operation_type(spec.operation_type)
        .operation_result(spec.result);
    if let Some(zone) = &spec.zone {
        r = r.caller_ip_zone(zone.clone());
    }
    for (kind, id, desc) in &spec.identities {
        r = r.add_caller_identity(*kind, id.clone(), desc.clone());
    }
    for c in &spec.categories {
        r = r.add_operation_category(*c);
    }
    for [t, n, c, d, reg] in &spec.resources {
        r = r.add_target(
            TargetResource::new(t.clone(), n.clone())
                .cluster(c.clone())
                .data_center(d.clone())
                .region(reg.clone()),
        );
    }
    for l in &spec.access_levels {
        r.push_caller_access_level(l.clone());
    }
    for (k, v) in &spec.custom {
        r.set_custom(k.clone(), v.clone());
    }
    r
}

/// The frame the wire contract prescribes for `spec`, as a decoded tree.
fn expected(spec: &Spec, sid: &str) -> Mp {
    oracle::expected(&oracle::Plain {
        kind: spec.kind,
        ts: spec.ts,
        service_tree_id: sid,
        ip: match &spec.zone {
            Some(zone) => format!("{}%{zone}", spec.ip),
            None => spec.ip.to_string(),
        },
        identities: (spec.identities.iter())
            .map(|(kind, id, desc)| (*kind, id.as_str(), desc.as_str()))
            .collect(),
        categories: spec.categories.clone(),
        resources: (spec.resources.iter())
            .map(|r| r.each_ref().map(String::as_str))
            .collect(),
        access_levels: spec.access_levels.iter().map(String::as_str).collect(),
        custom: spec.custom.iter().map(|(k, v)| (k.as_str(), v)).collect(),
        operation_access_level: &spec.operation_access_level,
        operation_name: &spec.operation_name,
        result_description: &spec.result_description,
        caller_agent: &spec.caller_agent,
        category_description: &spec.category_description,
        operation_type: spec.operation_type,
        result: spec.result,
    })
}

/// The first place two trees differ, for the failure message.
fn diff(a: &Mp, b: &Mp, at: &str) -> String {
    match (a, b) {
        (Mp::Array(x), Mp::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find(|(_, (a, b))| !same(a, b))
            .map_or_else(String::new, |(i, (a, b))| diff(a, b, &format!("{at}[{i}]"))),
        (Mp::Map(x), Mp::Map(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .find(|((k1, v1), (k2, v2))| !same(k1, k2) || !same(v1, v2))
            .map_or_else(String::new, |((k1, v1), (k2, v2))| {
                if same(k1, k2) {
                    diff(v1, v2, &format!("{at}.{k1}"))
                } else {
                    format!("{at}: key {k1} vs {k2}")
                }
            }),
        _ => {
            let short = |v: &Mp| {
                let t = format!("{v:?}");
                t.chars().take(300).collect::<String>()
            };
            format!("{at}: {} vs {}", short(a), short(b))
        }
    }
}

const SID: &str = "e6c9fcb1-7f08-4c1d-9e7a-123456789abc";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn frames_carry_every_field_in_wire_order(spec in spec()) {
        let record = build(&spec);
        prop_assert_eq!(record.validate(), Ok(()));
        let before = record.clone();

        let mut encoder = Encoder::new(SID).expect("valid id");
        let frame = encoder.encode(spec.ts, &record).to_vec();
        prop_assert_eq!(encoder.encoded_len(&record), frame.len());
        prop_assert_eq!(geneva_audit::encoded_len(SID, &record), frame.len());
        prop_assert!(geneva_audit::encoded_len_bound(SID, &record) >= frame.len());

        let mut rd = &frame[..];
        let decoded = rmpv::decode::read_value(&mut rd).expect("frame decodes");
        prop_assert!(rd.is_empty(), "{} trailing bytes", rd.len());
        let want = expected(&spec, SID);
        prop_assert!(same(&decoded, &want), "{}", diff(&decoded, &want, "frame"));

        // Deterministic, and through a fresh encoder too.
        prop_assert!(encoder.encode(spec.ts, &record) == &frame[..]);
        let mut other = Encoder::new(SID).expect("valid id");
        prop_assert!(other.encode(spec.ts, &record) == &frame[..]);

        // The record is not modified (Debug text, so that a NaN compares equal to itself).
        let unchanged = record == before || format!("{:?}", record) == format!("{:?}", before);
        prop_assert!(unchanged, "encoding changed the record");
    }
}

/// `v` with every NaN made the one NaN the JSON form reads back (`"NaN"` has no sign or
/// payload).
fn canonical_nan(v: &Value) -> Value {
    match v {
        Value::Float(f) if f.is_nan() => Value::Float(f64::NAN),
        Value::Array(items) => Value::Array(items.iter().map(canonical_nan).collect()),
        Value::Map(entries) => Value::Map(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), canonical_nan(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn has_nan(v: &Value) -> bool {
    match v {
        Value::Float(f) => f.is_nan(),
        Value::Array(items) => items.iter().any(has_nan),
        Value::Map(entries) => entries.iter().any(|(_, v)| has_nan(v)),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn json_lines_read_back_as_the_record_they_were_written_from(
        spec in spec(),
        event_time in prop::option::of(any::<i64>()),
    ) {
        let mut record = build(&spec);
        if let Some(t) = event_time {
            record = record.event_time(t);
        }
        let line = geneva_audit::json::to_line(&record);
        let msg = geneva_audit::json::parse_line(&line)
            .map_err(|e| TestCaseError::fail(format!("{e}: {line}")))?;
        prop_assert_eq!(msg.ts, event_time);
        let back = msg.record().expect("a record line");
        prop_assert_eq!(back.get_event_time(), event_time);
        let nan = record.get_custom_data().iter().any(|(_, v)| has_nan(v));
        if nan {
            // NaN is not equal to itself: compare the frames of the NaN-normalised record.
            let data: Vec<(Text, Value)> = record
                .get_custom_data()
                .iter()
                .map(|(k, v)| (k.clone(), canonical_nan(v)))
                .collect();
            let canonical = record.clone().custom_data_from(data);
            let mut encoder = Encoder::new(SID).expect("valid id");
            let want = encoder.encode(0, &canonical).to_vec();
            prop_assert!(encoder.encode(0, back) == &want[..]);
        } else {
            prop_assert_eq!(back, &record);
        }
        // Writing what was read gives the same line.
        prop_assert_eq!(geneva_audit::json::to_line(back), line);
    }
}

#[test]
fn the_expected_tree_is_not_vacuous() {
    // A record whose frame is known: the builder's reordering must show in the tree.
    let spec = Spec {
        kind: MessageKind::ControlPlane,
        ts: 7,
        ip: "2001:db8::1".parse().expect("ip"),
        zone: Some("eth0".into()),
        identities: vec![
            (CallerIdentityType::ObjectId, "o".into(), "d".into()),
            (CallerIdentityType::Upn, "u".into(), "d".into()),
        ],
        categories: vec![OperationCategory::Euii, OperationCategory::Other],
        resources: vec![
            [
                "B".into(),
                "b1".into(),
                String::new(),
                String::new(),
                String::new(),
            ],
            [
                "A".into(),
                "a1".into(),
                String::new(),
                String::new(),
                String::new(),
            ],
            [
                "B".into(),
                "b2".into(),
                String::new(),
                String::new(),
                String::new(),
            ],
        ],
        access_levels: vec!["b".into(), "B".into(), "b".into()],
        operation_access_level: "o".into(),
        operation_name: "n".into(),
        result_description: String::new(),
        caller_agent: "a".into(),
        category_description: "c".into(),
        operation_type: OperationType::Read,
        result: OperationResult::Success,
        custom: vec![
            ("k".into(), Value::Int(1)),
            ("k".into(), Value::Float(f64::NAN)),
        ],
    };
    let record = build(&spec);
    let mut encoder = Encoder::new(SID).expect("valid id");
    let mut rd = encoder.encode(7, &record);
    let decoded = rmpv::decode::read_value(&mut rd).expect("decodes");
    let want = expected(&spec, SID);
    assert!(same(&decoded, &want), "{}", diff(&decoded, &want, "frame"));
    let text = want.to_string();
    for part in [
        r#""CallerIpAddress": "2001:db8::1%eth0""#,
        r#""CallerIdentities": {"UPN": [{"Identity": "u""#,
        r#""OperationCategories": ["OCOther", "EUII"]"#,
        r#""TargetResources": {"B": [{"Name": "b1""#,
        r#"{"Name": "b2", "Cluster": "", "DataCenter": "", "Region": ""}], "A""#,
        r#""CallerAccessLevels": ["B", "b"]"#,
        r#""CustomData": {"k": NaN}"#,
    ] {
        assert!(text.contains(part), "{part} not in {text}");
    }
    // A different tree is told apart.
    let mut changed = spec.clone();
    changed.access_levels.push("a".into());
    assert!(!same(&decoded, &expected(&changed, SID)));
}
