//! Custom-data values: scalars, arrays and maps, written recursively.

use super::out::Out;
use crate::record::{Text, Value};

// The writers below are in line in optimised builds and out of line in debug builds,
// where every inlined local keeps its own stack slot: in line, they made each level of
// the recursive custom-data writers several kilobytes deep in a debug build (see
// `tests/deep_custom_data.rs`).

/// Writes a value that is not an array or a map; false for one that is.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(super) fn write_scalar<O: Out>(out: &mut O, value: &Value) -> bool {
    match value {
        Value::Nil => out.nil(),
        Value::Bool(b) => out.bool(*b),
        Value::Int(i) => out.i64(*i),
        Value::UInt(u) => out.u64(*u),
        Value::Float(f) => out.f64(*f),
        Value::Str(s) => out.str(s),
        Value::Bytes(b) => out.bin(b),
        Value::Array(_) | Value::Map(_) => return false,
    }
    true
}

// The recursive writers take and return the writer by value, so that the cursor stays
// in registers in their callers, and write scalars inline rather than a call per
// custom-data value.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(super) fn write_key<O: Out>(out: &mut O, key: &str) {
    out.str(key);
}

#[cfg_attr(not(debug_assertions), inline(always))]
pub(super) fn write_array_len<O: Out>(out: &mut O, n: usize) {
    out.array_len(n);
}

#[cfg_attr(not(debug_assertions), inline(always))]
pub(super) fn write_map_len<O: Out>(out: &mut O, n: usize) {
    out.map_len(n);
}

pub(super) fn write_value<O: Out>(mut out: O, value: &Value) -> O {
    match value {
        Value::Array(items) => {
            write_array_len(&mut out, items.len());
            for item in items {
                if !write_scalar(&mut out, item) {
                    out = write_value(out, item);
                }
            }
        }
        Value::Map(entries) => return write_map(out, entries),
        scalar => {
            write_scalar(&mut out, scalar);
        }
    }
    out
}

pub(super) fn write_map<O: Out>(mut out: O, entries: &[(Text, Value)]) -> O {
    write_map_len(&mut out, entries.len());
    for (k, v) in entries {
        write_key(&mut out, k);
        if !write_scalar(&mut out, v) {
            out = write_value(out, v);
        }
    }
    out
}
