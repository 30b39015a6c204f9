//! The frame the wire contract prescribes for a valid record, as an rmpv tree, derived
//! from the plain inputs the record was built from, without the crate's encoder. Shared
//! by the proptest round trip (`tests/encode_props.rs`) and the fuzz target
//! (`fuzz/fuzz_targets/encode.rs`), which generate those inputs in their own ways.

use geneva_audit::{
    CallerIdentityType, MessageKind, OperationCategory, OperationResult, OperationType, Value,
};
use rmpv::Value as Mp;

/// What a record was built from, in the order the builder was given it.
pub struct Plain<'a> {
    pub kind: MessageKind,
    pub ts: i64,
    pub service_tree_id: &'a str,
    /// The caller's address as text, with `%zone` where a zone was set.
    pub ip: String,
    pub identities: Vec<(CallerIdentityType, &'a str, &'a str)>,
    pub categories: Vec<OperationCategory>,
    /// Type, name, cluster, data center, region.
    pub resources: Vec<[&'a str; 5]>,
    pub access_levels: Vec<&'a str>,
    /// As set entry by entry: a repeated key keeps its first position and takes its
    /// last value.
    pub custom: Vec<(&'a str, &'a Value)>,
    pub operation_access_level: &'a str,
    pub operation_name: &'a str,
    pub result_description: &'a str,
    pub caller_agent: &'a str,
    pub category_description: &'a str,
    pub operation_type: OperationType,
    pub result: OperationResult,
}

pub fn s(text: &str) -> Mp {
    Mp::from(text)
}

pub fn mp_value(v: &Value) -> Mp {
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

/// The frame the wire contract prescribes for a record built from `p`: categories in
/// numeric order, access levels sorted bytewise without duplicates, identities grouped by
/// type in enum order, resources grouped by type in first-seen order, custom data as
/// written.
pub fn expected(p: &Plain<'_>) -> Mp {
    // Identities grouped by type, types in enum order, in insertion order within a type.
    let mut ids = p.identities.clone();
    ids.sort_by_key(|(kind, ..)| *kind as u8);
    let mut id_groups: Vec<(Mp, Mp)> = Vec::new();
    for group in ids.chunk_by(|a, b| a.0 == b.0) {
        let items = group
            .iter()
            .map(|(_, id, desc)| Mp::Map(vec![(s("Identity"), s(id)), (s("Description"), s(desc))]))
            .collect();
        id_groups.push((s(group[0].0.wire_name()), Mp::Array(items)));
    }

    let mut cats: Vec<u8> = p.categories.iter().map(|c| *c as u8).collect();
    cats.sort_unstable();
    cats.dedup();
    let cats = cats
        .into_iter()
        .map(|n| s(OperationCategory::from_repr(n).expect("valid").wire_name()))
        .collect();

    // Resource types in first-seen order, resources of a type in insertion order.
    let mut types: Vec<&str> = Vec::new();
    for [t, ..] in &p.resources {
        if !types.contains(t) {
            types.push(t);
        }
    }
    let targets = types
        .iter()
        .map(|t| {
            let items = p
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

    let mut levels = p.access_levels.clone();
    levels.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    levels.dedup();

    // A repeated key keeps its first position and takes its last value.
    let mut custom: Vec<(&str, &Value)> = Vec::new();
    for &(k, v) in &p.custom {
        match custom.iter_mut().find(|(k2, _)| *k2 == k) {
            Some(slot) => slot.1 = v,
            None => custom.push((k, v)),
        }
    }

    let mut body = vec![
        (s("env_ikey"), s(p.service_tree_id)),
        (s("CallerIpAddress"), s(&p.ip)),
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
        (s("OperationAccessLevel"), s(p.operation_access_level)),
        (s("OperationName"), s(p.operation_name)),
        (s("OperationResultDescription"), s(p.result_description)),
        (s("CallerAgent"), s(p.caller_agent)),
        (s("OperationCategoryDescription"), s(p.category_description)),
        (s("OperationType"), s(p.operation_type.wire_name())),
        (s("OperationResult"), s(p.result.wire_name())),
    ]);
    Mp::Array(vec![
        s(p.kind.tag()),
        Mp::Array(vec![Mp::Array(vec![Mp::from(p.ts), Mp::Map(body)])]),
        Mp::Map(vec![(s("TimeFormat"), s("DateTime"))]),
    ])
}

/// Exact, ordered equality, with floats compared by their bits (so NaN equals itself).
pub fn same(a: &Mp, b: &Mp) -> bool {
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
