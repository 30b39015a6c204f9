//! Builds a record from arbitrary bytes, validates it and encodes it. A valid record's
//! frame must decode (with rmpv) to exactly the tree the wire contract prescribes:
//! categories in numeric order, access levels sorted bytewise without duplicates,
//! identities grouped by type in enum order, resources grouped by type in first-seen
//! order, custom data as written. Every record, valid or not, must encode without
//! panicking to a frame that decodes and whose length `encoded_len` predicts; encoding is
//! deterministic and leaves the record unchanged.
#![no_main]

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::{Arbitrary, Unstructured};
use geneva_audit::{
    CallerIdentity, CallerIdentityType, Encoder, MessageKind, OperationCategory, OperationResult,
    OperationType, Record, TargetResource, Text, Value,
};
use libfuzzer_sys::fuzz_target;
use oracle::same;
use rmpv::Value as Mp;

#[path = "../../tests/support/oracle.rs"]
mod oracle;

/// Deeper than validation's default limit (32), shallow enough for any stack.
const MAX_DEPTH: usize = 40;

/// Custom data, generated with bounded nesting (a derived `Arbitrary` would recurse
/// without limit).
#[derive(Debug)]
struct Custom(Vec<(String, Value)>);

fn arbitrary_value(u: &mut Unstructured<'_>, depth: usize) -> arbitrary::Result<Value> {
    let kinds = if depth >= MAX_DEPTH { 7 } else { 9 };
    Ok(match u.int_in_range(0..=kinds - 1)? {
        0 => Value::Nil,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::Int(u.arbitrary()?),
        3 => Value::UInt(u.arbitrary()?),
        4 => Value::Float(u.arbitrary()?),
        5 => Value::Str(Text::Owned(u.arbitrary()?)),
        6 => Value::Bytes(Cow::Owned(u.arbitrary()?)),
        7 => {
            let n = u.int_in_range(0..=4)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(arbitrary_value(u, depth + 1)?);
            }
            Value::Array(items)
        }
        _ => {
            let n = u.int_in_range(0..=4)?;
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                let key: String = u.arbitrary()?;
                entries.push((Text::Owned(key), arbitrary_value(u, depth + 1)?));
            }
            Value::Map(entries)
        }
    })
}

impl<'a> Arbitrary<'a> for Custom {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let n = u.int_in_range(0..=6)?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            entries.push((u.arbitrary()?, arbitrary_value(u, 1)?));
        }
        Ok(Custom(entries))
    }
}

#[derive(Debug, Arbitrary)]
enum Ip {
    None,
    V4([u8; 4]),
    V6([u16; 8]),
}

/// How the collections are put into the record.
#[derive(Debug, Arbitrary, Clone, Copy)]
enum Build {
    /// `add_*` one entry at a time.
    EntryByEntry,
    /// The `*_from` setters with whole (possibly unordered) collections.
    Whole,
}

#[derive(Debug, Arbitrary)]
struct Input {
    control_plane: bool,
    ts: i64,
    ip: Ip,
    zone: Option<String>,
    identities: Vec<(u8, String, String)>,
    categories: Vec<u8>,
    resources: Vec<(String, String, String, String, String)>,
    access_levels: Vec<String>,
    operation_access_level: String,
    operation_name: String,
    result_description: String,
    caller_agent: String,
    category_description: String,
    operation_type: Option<u8>,
    result: Option<u8>,
    custom: Custom,
    build: Build,
    /// Fill in what validation requires, so that most inputs reach the frame check.
    repair: bool,
}

/// Makes the input pass the record rules (custom data may still fail them: repeated
/// keys in nested maps, nesting deeper than the limit).
fn repair(input: &mut Input) {
    fn fill(s: &mut String, with: &str) {
        if s.trim().is_empty() {
            s.insert_str(0, with);
        }
    }
    fill(&mut input.operation_access_level, "Contributor");
    fill(&mut input.operation_name, "Op");
    fill(&mut input.caller_agent, "agent");
    for (_, id, d) in &mut input.identities {
        fill(id, "id");
        fill(d, "desc");
    }
    if input.identities.is_empty() {
        input.identities.push((1, "id".into(), "desc".into()));
    }
    if input.categories.is_empty() {
        input.categories.push(9);
    }
    for (t, n, ..) in &mut input.resources {
        fill(t, "Type");
        fill(n, "name");
    }
    if input.resources.is_empty() {
        input.resources.push((
            "T".into(),
            "n".into(),
            String::new(),
            String::new(),
            String::new(),
        ));
    }
    for l in &mut input.access_levels {
        fill(l, "Level");
    }
    if input.access_levels.is_empty() {
        input.access_levels.push("Reader".into());
    }
    // Validation judges an IPv4-mapped address by its IPv4 address, as Go's netip does.
    let sendable = ip(input)
        .map(|ip| (ip, ip.to_canonical()))
        .is_some_and(|(ip, v4)| !ip.is_unspecified() && !v4.is_loopback() && !v4.is_multicast());
    if !sendable {
        input.ip = Ip::V4([203, 0, 113, 1]);
    }
    if matches!(input.ip, Ip::V4(_)) {
        input.zone = None;
    }
    input.operation_type.get_or_insert(0);
    let result = *input.result.get_or_insert(0);
    if operation_result(result) == OperationResult::Failure {
        fill(&mut input.result_description, "failed");
    }
    if input
        .categories
        .iter()
        .any(|c| category(*c) == OperationCategory::Other)
    {
        fill(&mut input.category_description, "other");
    }
}

fn identity_type(n: u8) -> CallerIdentityType {
    CallerIdentityType::from_repr(n % 14 + 1).expect("1..=14")
}

fn category(n: u8) -> OperationCategory {
    OperationCategory::from_repr(n % 19 + 1).expect("1..=19")
}

fn operation_type(n: u8) -> OperationType {
    OperationType::from_repr(n % 4 + 1).expect("1..=4")
}

fn operation_result(n: u8) -> OperationResult {
    OperationResult::from_repr(n % 2 + 1).expect("1..=2")
}

fn ip(input: &Input) -> Option<IpAddr> {
    match input.ip {
        Ip::None => None,
        Ip::V4(o) => Some(IpAddr::V4(Ipv4Addr::from(o))),
        Ip::V6(s) => Some(IpAddr::V6(Ipv6Addr::from(s))),
    }
}

fn kind(input: &Input) -> MessageKind {
    if input.control_plane {
        MessageKind::ControlPlane
    } else {
        MessageKind::DataPlane
    }
}

fn build(input: &Input) -> Record {
    let mut r = Record::new(kind(input))
        .operation_access_level(input.operation_access_level.clone())
        .operation_name(input.operation_name.clone())
        .operation_result_description(input.result_description.clone())
        .caller_agent(input.caller_agent.clone())
        .operation_category_description(input.category_description.clone());
    if let Some(ip) = ip(input) {
        r = r.caller_ip(ip);
    }
    if let Some(zone) = &input.zone {
        r = r.caller_ip_zone(zone.clone());
    }
    if let Some(t) = input.operation_type {
        r = r.operation_type(operation_type(t));
    }
    if let Some(t) = input.result {
        r = r.operation_result(operation_result(t));
    }
    for c in &input.categories {
        r = r.add_operation_category(category(*c));
    }
    let identities = input.identities.iter().map(|(k, id, d)| CallerIdentity {
        kind: identity_type(*k),
        identity: id.clone().into(),
        description: d.clone().into(),
    });
    let resources = input.resources.iter().map(|(t, n, c, d, reg)| {
        TargetResource::new(t.clone(), n.clone())
            .cluster(c.clone())
            .data_center(d.clone())
            .region(reg.clone())
    });
    let levels = input.access_levels.iter().map(|l| Text::Owned(l.clone()));
    match input.build {
        Build::EntryByEntry => {
            for id in identities {
                r.push_caller_identity(id);
            }
            for t in resources {
                r.push_target_resource(t);
            }
            for l in levels {
                r.push_caller_access_level(l);
            }
            for (k, v) in &input.custom.0 {
                r.set_custom(k.clone(), v.clone());
            }
        }
        Build::Whole => {
            // Custom data set whole keeps repeated keys (validation refuses them), so
            // apply the builder's replacement rule first.
            r = r
                .caller_identities_from(identities.collect::<Vec<_>>())
                .target_resources_from(resources.collect::<Vec<_>>())
                .caller_access_levels_from(levels.collect::<Vec<_>>())
                .custom_data_from(merged_custom(&input.custom.0));
        }
    }
    r
}

/// The builder's rule: a repeated key keeps its first position and takes its last value.
fn merged_custom(entries: &[(String, Value)]) -> Vec<(Text, Value)> {
    let mut out: Vec<(Text, Value)> = Vec::new();
    for (k, v) in entries {
        match out.iter_mut().find(|(k2, _)| k2 == k) {
            Some(slot) => slot.1 = v.clone(),
            None => out.push((Text::Owned(k.clone()), v.clone())),
        }
    }
    out
}

/// The frame the wire contract prescribes for a valid record built from `input`.
fn expected(input: &Input, sid: &str) -> Mp {
    oracle::expected(&oracle::Plain {
        kind: kind(input),
        ts: input.ts,
        service_tree_id: sid,
        ip: match (&input.zone, ip(input)) {
            (Some(zone), Some(ip)) if !zone.is_empty() => format!("{ip}%{zone}"),
            (_, Some(ip)) => ip.to_string(),
            (_, None) => unreachable!("validation requires an address"),
        },
        identities: (input.identities.iter())
            .map(|(k, id, d)| (identity_type(*k), id.as_str(), d.as_str()))
            .collect(),
        categories: input.categories.iter().map(|c| category(*c)).collect(),
        resources: (input.resources.iter())
            .map(|(t, n, c, d, reg)| [t.as_str(), n, c, d, reg])
            .collect(),
        access_levels: input.access_levels.iter().map(String::as_str).collect(),
        custom: input
            .custom
            .0
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .collect(),
        operation_access_level: &input.operation_access_level,
        operation_name: &input.operation_name,
        result_description: &input.result_description,
        caller_agent: &input.caller_agent,
        category_description: &input.category_description,
        // Validation requires both to be set.
        operation_type: operation_type(input.operation_type.expect("set")),
        result: operation_result(input.result.expect("set")),
    })
}

const SID: &str = "e6c9fcb1-7f08-4c1d-9e7a-123456789abc";

fuzz_target!(|input: Input| {
    let mut input = input;
    if input.repair {
        repair(&mut input);
    }
    let record = build(&input);
    let before = format!("{record:?}");
    let valid = record.validate().is_ok();

    // Every record, valid or not, encodes without panicking, to a frame that decodes
    // and whose length encoded_len predicts.
    let mut encoder = Encoder::new(SID).expect("valid id");
    let frame = encoder.encode(input.ts, &record).to_vec();
    assert_eq!(encoder.encoded_len(&record), frame.len(), "encoded_len");
    let mut rd = &frame[..];
    let decoded = rmpv::decode::read_value(&mut rd).expect("the frame decodes");
    assert!(rd.is_empty(), "trailing bytes");
    assert!(
        encoder.encode(input.ts, &record) == &frame[..],
        "deterministic"
    );
    assert_eq!(format!("{record:?}"), before, "encoding changed the record");

    if valid {
        let want = expected(&input, SID);
        assert!(same(&decoded, &want), "frame {decoded}\nexpected {want}");
    }
});
