//! The frame the wire contract prescribes for a valid record, as an rmpv tree, derived
//! from the plain inputs the record was built from, without the crate's encoder. Shared
//! by the proptest round trip (`tests/encode_props.rs`) and the fuzz target
//! (`fuzz/fuzz_targets/encode.rs`), which generate those inputs in their own ways.
//!
//! The judge is not the crate: tags, wire names and the numeric order of the enums come
//! from the wire contract, `tests/fixtures/WIRE.md` (its "Envelope" and "Names on the
//! wire"), written out below, not from the crate's `tag()`, `wire_name()` or
//! discriminants. The matches are exhaustive, so a new variant fails to build here
//! until the contract says how it goes on the wire.

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

/// WIRE.md, Envelope: "Tags: DataPlane `AsmAuditDP`, ControlPlane `AsmAuditCP`,
/// Heartbeat `AsmAuditHB`, Diagnostic `AsmAuditDG`".
pub fn tag(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::DataPlane => "AsmAuditDP",
        MessageKind::ControlPlane => "AsmAuditCP",
        MessageKind::Heartbeat => "AsmAuditHB",
        MessageKind::Diagnostic => "AsmAuditDG",
    }
}

/// WIRE.md, Names on the wire: "OperationType: 1 `Read`, 2 `Update`, 3 `Create`,
/// 4 `Delete`".
pub fn operation_type(t: OperationType) -> &'static str {
    match t {
        OperationType::Read => "Read",
        OperationType::Update => "Update",
        OperationType::Create => "Create",
        OperationType::Delete => "Delete",
    }
}

/// WIRE.md, Names on the wire: "OperationResult: 1 `Success`, 2 `Failure`".
pub fn operation_result(r: OperationResult) -> &'static str {
    match r {
        OperationResult::Success => "Success",
        OperationResult::Failure => "Failure",
    }
}

/// WIRE.md, Names on the wire: each category's number (its sort order) and name.
pub fn category(c: OperationCategory) -> (u8, &'static str) {
    use OperationCategory as C;
    match c {
        C::Other => (1, "OCOther"),
        C::UserManagement => (2, "UserManagement"),
        C::GroupManagement => (3, "GroupManagement"),
        C::Authentication => (4, "Authentication"),
        C::Authorization => (5, "Authorization"),
        C::RoleManagement => (6, "RoleManagement"),
        C::ApplicationManagement => (7, "ApplicationManagement"),
        C::KeyManagement => (8, "KeyManagement"),
        C::DirectoryManagement => (9, "DirectoryManagement"),
        C::ResourceManagement => (10, "ResourceManagement"),
        C::PolicyManagement => (11, "PolicyManagement"),
        C::DeviceManagement => (12, "DeviceManagement"),
        C::EntitlementManagement => (13, "EntitlementManagement"),
        C::PasswordManagement => (14, "PasswordManagement"),
        C::IdentityProtection => (15, "IdentityProtection"),
        C::ObjectManagement => (16, "ObjectManagement"),
        C::ProvisioningManagement => (17, "ProvisioningManagement"),
        C::CustomerFacing => (18, "CustomerFacing"),
        C::Euii => (19, "EUII"),
    }
}

/// WIRE.md, Names on the wire: each caller identity type's number (its order in the
/// identities map) and name.
pub fn identity_type(t: CallerIdentityType) -> (u8, &'static str) {
    use CallerIdentityType as T;
    match t {
        T::Other => (1, "CIOther"),
        T::Upn => (2, "UPN"),
        T::Puid => (3, "PUID"),
        T::ObjectId => (4, "ObjectID"),
        T::Certificate => (5, "Certificate"),
        T::Claim => (6, "Claim"),
        T::Username => (7, "Username"),
        T::AccessKeyName => (8, "AccessKeyName"),
        T::SubscriptionId => (9, "SubscriptionID"),
        T::ApplicationId => (10, "ApplicationID"),
        T::TenantId => (11, "TenantID"),
        T::TokenId => (12, "TokenID"),
        T::SasUrl => (13, "SasURL"),
        T::System => (14, "System"),
    }
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
    // Identities grouped by type, types in the contract's numeric order, in insertion
    // order within a type.
    let mut ids = p.identities.clone();
    ids.sort_by_key(|(kind, ..)| identity_type(*kind).0);
    let mut id_groups: Vec<(Mp, Mp)> = Vec::new();
    for group in ids.chunk_by(|a, b| a.0 == b.0) {
        let items = group
            .iter()
            .map(|(_, id, desc)| Mp::Map(vec![(s("Identity"), s(id)), (s("Description"), s(desc))]))
            .collect();
        id_groups.push((s(identity_type(group[0].0).1), Mp::Array(items)));
    }

    let mut cats: Vec<(u8, &str)> = p.categories.iter().map(|c| category(*c)).collect();
    cats.sort_unstable();
    cats.dedup();
    let cats = cats.into_iter().map(|(_, name)| s(name)).collect();

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
        (s("OperationType"), s(operation_type(p.operation_type))),
        (s("OperationResult"), s(operation_result(p.result))),
    ]);
    Mp::Array(vec![
        s(tag(p.kind)),
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
