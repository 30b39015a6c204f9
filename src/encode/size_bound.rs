//! Bounds on a frame's size, from its string lengths, taken before it is written (its
//! exact size is measured by the walk that writes it: [`encoded_len`](crate::encoded_len)).

use super::wire::{
    CALLER_ACCESS_LEVELS, CALLER_AGENT, CALLER_IDENTITIES, CALLER_IP_ADDRESS, CLUSTER, CUSTOM_DATA,
    DATA_CENTER, DESCRIPTION, ENV_IKEY, IDENTITY_ENTRY, NAME_ENTRY, OPERATION_ACCESS_LEVEL,
    OPERATION_CATEGORIES, OPERATION_CATEGORY_DESCRIPTION, OPERATION_NAME,
    OPERATION_RESULT_DESCRIPTION, OPTIONS, REGION, TARGET_RESOURCES,
};
use crate::record::{Record, Text, Value};

/// The longest header of a string, bin, array or map.
pub(super) const H: usize = 5;

/// The most any padded write (a [`Padded`](super::wire::Padded) entry or the address
/// block) copies beyond the bytes that count.
pub(super) const SLACK: usize = 32;

/// The bytes of everything in a record's frame but its collections and strings: the
/// envelope and options, the body's map header, every top-level key with the header of
/// its value, the longest address text with the `%` of a zone, the enum fields, and the
/// slack of the padded writes.
pub(super) const RECORD_BOUND: usize = 23
    + OPTIONS.len()
    + 1
    + ENV_IKEY.len()
    + CALLER_IP_ADDRESS.len()
    + CALLER_IDENTITIES.len()
    + OPERATION_CATEGORIES.len()
    + CUSTOM_DATA.len()
    + TARGET_RESOURCES.len()
    + CALLER_ACCESS_LEVELS.len()
    + OPERATION_ACCESS_LEVEL.len()
    + OPERATION_NAME.len()
    + OPERATION_RESULT_DESCRIPTION.len()
    + CALLER_AGENT.len()
    + OPERATION_CATEGORY_DESCRIPTION.len()
    + 12 * H
    + 48
    + 24
    + 24
    + SLACK;

/// The bytes per caller identity besides its two strings: its type's name and array header
/// (as if each opened a group) and its map with both keys and headers.
pub(super) const IDENTITY_BOUND: usize = 16 + H + IDENTITY_ENTRY.len() + H + DESCRIPTION.len() + H;

/// The bytes per target resource besides its five strings.
pub(super) const TARGET_BOUND: usize =
    H + H + NAME_ENTRY.len() + H + CLUSTER.len() + H + DATA_CENTER.len() + H + REGION.len() + H;

/// The bound of a value: scalars inline, arrays and maps by recursion.
#[inline(always)]
pub(super) fn value_bound(v: &Value) -> usize {
    match v {
        Value::Nil | Value::Bool(_) => 1,
        Value::Int(_) | Value::UInt(_) | Value::Float(_) => 9,
        Value::Str(s) => H + s.len(),
        Value::Bytes(b) => H + b.len(),
        Value::Array(items) => H + items_bound(items),
        Value::Map(entries) => H + map_bound(entries),
    }
}

pub(super) fn items_bound(items: &[Value]) -> usize {
    items.iter().map(value_bound).sum()
}

pub(super) fn map_bound(entries: &[(Text, Value)]) -> usize {
    entries
        .iter()
        .map(|(k, v)| H + k.len() + value_bound(v))
        .sum()
}

/// An upper bound of the size of a record's frame, from the lengths of its strings:
/// every header counted at its longest, every padded write at its full width.
#[inline(always)]
pub(super) fn record_bound(service_tree_id: &str, r: &Record) -> usize {
    let mut n = RECORD_BOUND
        + service_tree_id.len()
        + r.caller_ip_zone.len()
        + r.operation_access_level.len()
        + r.operation_name.len()
        + r.operation_result_description.len()
        + r.caller_agent.len()
        + r.operation_category_description.len()
        + r.categories.len() * 24;
    for id in r.caller_identities.iter() {
        n += IDENTITY_BOUND + id.identity.len() + id.description.len();
    }
    for t in r.target_resources.iter() {
        n += TARGET_BOUND
            + t.resource_type.len()
            + t.name.len()
            + t.cluster.len()
            + t.data_center.len()
            + t.region.len();
    }
    for l in r.caller_access_levels.iter() {
        n += H + l.len();
    }
    if !r.custom_data.is_empty() {
        n += map_bound(&r.custom_data);
    }
    n
}

/// An upper bound of the size of `record`'s frame, from the lengths of its strings:
/// cheaper than [`encoded_len`](crate::encoded_len) (no IP formatting, no grouping), and never below it.
pub fn encoded_len_bound(service_tree_id: &str, record: &Record) -> usize {
    record_bound(service_tree_id, record)
}
