//! Custom data: unique keys in every map, nesting within the limit, lengths msgpack can
//! express. Each level is checked in line and recursed into once.

use super::ValidationError;
use crate::record::Value;

pub(super) fn check_map(
    entries: &[(crate::Text, Value)],
    depth: usize,
    limit: usize,
) -> Result<(), ValidationError> {
    if entries.len() > u32::MAX as usize {
        return Err(ValidationError::TooLong);
    }
    if let Some(key) = duplicate_key(entries) {
        return Err(ValidationError::DuplicateCustomDataKey {
            key: key.to_string(),
        });
    }
    check_values(entries.iter().map(|(_, value)| value), depth, limit)
}

/// The first key found twice. Small maps (all real ones) are scanned in place without
/// allocating; a large one is checked through a sorted list of its keys, so a map of
/// 60,000 keys costs milliseconds rather than seconds.
fn duplicate_key(entries: &[(crate::Text, Value)]) -> Option<&str> {
    const SCAN_UP_TO: usize = 32;
    if entries.len() <= SCAN_UP_TO {
        return entries.iter().enumerate().find_map(|(i, (key, _))| {
            entries[..i].iter().any(|(k, _)| k == key).then_some(&**key)
        });
    }
    let mut keys: Vec<&str> = entries.iter().map(|(k, _)| &**k).collect();
    keys.sort_unstable();
    keys.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

/// Checks the values of one array or map, all at `depth`: scalars here, in line (the
/// custom data of real records is mostly scalars), and nested collections one level
/// down.
#[inline]
fn check_values<'a>(
    values: impl ExactSizeIterator<Item = &'a Value>,
    depth: usize,
    limit: usize,
) -> Result<(), ValidationError> {
    if values.len() > 0 && depth > limit {
        return Err(ValidationError::CustomDataTooDeep { limit });
    }
    for value in values {
        match value {
            Value::Array(items) => {
                if items.len() > u32::MAX as usize {
                    return Err(ValidationError::TooLong);
                }
                check_items(items, depth + 1, limit)?;
            }
            Value::Map(entries) => check_map(entries, depth + 1, limit)?,
            Value::Str(s) if s.len() > u32::MAX as usize => return Err(ValidationError::TooLong),
            Value::Bytes(b) if b.len() > u32::MAX as usize => {
                return Err(ValidationError::TooLong);
            }
            _ => {}
        }
    }
    Ok(())
}

/// [`check_values`] out of line, so the recursion through arrays has a function to call.
fn check_items(items: &[Value], depth: usize, limit: usize) -> Result<(), ValidationError> {
    check_values(items.iter(), depth, limit)
}

#[cfg(test)]
mod tests {
    use crate::record::{Record, Value};
    use crate::validate::ValidationError;

    fn keys(n: usize, dup: Option<usize>) -> Record {
        let mut r = Record::data_plane();
        let mut data: Vec<(crate::Text, Value)> = (0..n)
            .map(|i| (format!("k{i}").into(), Value::Int(i as i64)))
            .collect();
        if let Some(d) = dup {
            data.push((format!("k{d}").into(), Value::Nil));
        }
        r = r.custom_data_from(data);
        r
    }

    #[test]
    fn duplicate_custom_keys_are_found_in_small_and_large_maps() {
        for n in [2, 31, 32, 33, 60_000] {
            let err = super::check_map(&keys(n, Some(1)).custom_data, 1, 32);
            assert_eq!(
                err,
                Err(ValidationError::DuplicateCustomDataKey { key: "k1".into() }),
                "{n} keys"
            );
            assert_eq!(super::check_map(&keys(n, None).custom_data, 1, 32), Ok(()));
        }
    }

    #[test]
    fn custom_data_nests_up_to_the_limit_by_maps_and_by_arrays() {
        // A scalar at the top of custom data is level 1; each map or array adds one.
        let nest = |levels: usize, wrap: &dyn Fn(Value) -> Value| {
            let mut v = Value::Int(1);
            for _ in 1..levels {
                v = wrap(v);
            }
            vec![(crate::Text::from("k"), v)]
        };
        let in_map = |v| Value::Map(vec![("k".into(), v)]);
        let in_array = |v| Value::Array(vec![Value::Nil, v]);
        for wrap in [&in_map as &dyn Fn(Value) -> Value, &in_array] {
            for limit in [1, 2, 5] {
                assert_eq!(super::check_map(&nest(limit, wrap), 1, limit), Ok(()));
                assert_eq!(
                    super::check_map(&nest(limit + 1, wrap), 1, limit),
                    Err(ValidationError::CustomDataTooDeep { limit }),
                    "limit {limit}"
                );
            }
        }
        // Empty collections hold nothing at the level below them.
        let empty = vec![(
            crate::Text::from("k"),
            Value::Map(vec![("e".into(), Value::Array(Vec::new()))]),
        )];
        assert_eq!(super::check_map(&empty, 1, 2), Ok(()));
    }
}
