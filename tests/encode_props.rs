//! Properties of the encoder over arbitrary valid records: the record validates, and its
//! frame decodes (with rmpv) to exactly the tree the wire contract prescribes for it:
//! categories in numeric order, access levels sorted bytewise without duplicates,
//! identities grouped by type in enum order, resources grouped by type in first-seen
//! order, custom data as written. `encoded_len` is the frame's length, encoding is
//! deterministic, and the record is left unchanged.

use std::net::IpAddr;

use geneva_audit::{
    CallerIdentityType, Encoder, MessageKind, OperationCategory, OperationResult, OperationType,
    Record, TargetResource, Text, Value,
};
use proptest::collection::vec;
use proptest::prelude::*;
use rmpv::Value as Mp;

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

fn s(text: &str) -> Mp {
    Mp::from(text)
}

fn mp_value(v: &Value) -> Mp {
    match v {
        Value::Nil => Mp::Nil,
        Value::Bool(b) => Mp::Boolean(*b),
        Value::Int(i) => Mp::from(*i),
        Value::UInt(u) => Mp::from(*u),
        Value::Float(f) => Mp::F64(*f),
        Value::Str(t) => s(t),
        Value::Bytes(b) => Mp::Binary(b.to_vec()),
        Value::Array(items) => Mp::Array(items.iter().map(mp_value).collect()),
        Value::Map(entries) => Mp::Map(entries.iter().map(|(k, v)| (s(k), mp_value(v))).collect()),
    }
}

/// The frame the wire contract prescribes for `spec`, as a decoded tree.
fn expected(spec: &Spec, sid: &str) -> Mp {
    let ip = match &spec.zone {
        Some(zone) => format!("{}%{zone}", spec.ip),
        None => spec.ip.to_string(),
    };

    // Identities grouped by type, types in enum order, in insertion order within a type.
    let mut ids = spec.identities.clone();
    ids.sort_by_key(|(kind, ..)| *kind as u8);
    let mut id_groups: Vec<(Mp, Mp)> = Vec::new();
    for group in ids.chunk_by(|a, b| a.0 == b.0) {
        let items = group
            .iter()
            .map(|(_, id, desc)| Mp::Map(vec![(s("Identity"), s(id)), (s("Description"), s(desc))]))
            .collect();
        id_groups.push((s(group[0].0.wire_name()), Mp::Array(items)));
    }

    let mut cats: Vec<u8> = spec.categories.iter().map(|c| *c as u8).collect();
    cats.sort_unstable();
    cats.dedup();
    let cats = cats
        .into_iter()
        .map(|n| s(OperationCategory::from_repr(n).expect("valid").wire_name()))
        .collect();

    // Resource types in first-seen order, resources of a type in insertion order.
    let mut types: Vec<&str> = Vec::new();
    for [t, ..] in &spec.resources {
        if !types.contains(&t.as_str()) {
            types.push(t);
        }
    }
    let targets = types
        .iter()
        .map(|t| {
            let items = spec
                .resources
                .iter()
                .filter(|r| r[0] == *t)
                .map(|[_, n, c, d, reg]| {
                    Mp::Map(vec![
                        (s("Name"), s(n)),
                        (s("Cluster"), s(c)),
                        (s("DataCenter"), s(d)),
                        (s("Region"), s(reg)),
                    ])
                })
                .collect();
            (s(t), Mp::Array(items))
        })
        .collect();

    let mut levels: Vec<&str> = spec.access_levels.iter().map(String::as_str).collect();
    levels.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    levels.dedup();

    // A repeated key keeps its first position and takes its last value.
    let mut custom: Vec<(&str, &Value)> = Vec::new();
    for (k, v) in &spec.custom {
        match custom.iter_mut().find(|(k2, _)| k2 == k) {
            Some(slot) => slot.1 = v,
            None => custom.push((k, v)),
        }
    }

    let mut body = vec![
        (s("env_ikey"), s(sid)),
        (s("CallerIpAddress"), s(&ip)),
        (s("CallerIdentities"), Mp::Map(id_groups)),
        (s("OperationCategories"), Mp::Array(cats)),
    ];
    if !custom.is_empty() {
        let entries = custom.iter().map(|(k, v)| (s(k), mp_value(v))).collect();
        body.push((s("CustomData"), Mp::Map(entries)));
    }
    body.extend([
        (s("TargetResources"), Mp::Map(targets)),
        (
            s("CallerAccessLevels"),
            Mp::Array(levels.into_iter().map(s).collect()),
        ),
        (s("OperationAccessLevel"), s(&spec.operation_access_level)),
        (s("OperationName"), s(&spec.operation_name)),
        (s("OperationResultDescription"), s(&spec.result_description)),
        (s("CallerAgent"), s(&spec.caller_agent)),
        (
            s("OperationCategoryDescription"),
            s(&spec.category_description),
        ),
        (s("OperationType"), s(spec.operation_type.wire_name())),
        (s("OperationResult"), s(spec.result.wire_name())),
    ]);
    Mp::Array(vec![
        s(spec.kind.tag()),
        Mp::Array(vec![Mp::Array(vec![Mp::from(spec.ts), Mp::Map(body)])]),
        Mp::Map(vec![(s("TimeFormat"), s("DateTime"))]),
    ])
}

/// Exact, ordered equality, with floats compared by their bits (so NaN equals itself).
fn same(a: &Mp, b: &Mp) -> bool {
    match (a, b) {
        (Mp::F64(x), Mp::F64(y)) => x.to_bits() == y.to_bits(),
        (Mp::Array(x), Mp::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Mp::Map(x), Mp::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k1, v1), (k2, v2))| same(k1, k2) && same(v1, v2))
        }
        _ => a == b,
    }
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
