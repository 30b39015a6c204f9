//! Validation: the reference client's rules, in its order, plus the few this client adds
//! (a custom-data depth limit, unique custom-data keys, only sendable kinds, no unknown
//! operation type or result, a zone only on IPv6).
//!
//! Each rule is its own [`ValidationError`] variant that names the field and the rule.
//! Validation reads the record and never allocates on success.

use std::fmt;
use std::net::IpAddr;

use crate::kinds::{MessageKind, OperationCategory, OperationResult};
use crate::record::{Record, Value};

/// The default limit on how deeply custom-data arrays and maps may nest.
pub const DEFAULT_MAX_CUSTOM_DEPTH: usize = 32;

/// The highest custom-data depth limit there is. A frame holds custom data 5 levels
/// down, so a record this deep makes a frame nest 128 levels, as deep as the test
/// agent's decoder (and the JSON form's parser) reads. Validation, sizing, encoding and
/// dropping recurse once per level; a record this deep leaves most of a thread's default
/// 2 MiB stack free, in a debug build too. A client refuses a higher limit, and
/// [`Record::validate_with_depth`] treats a higher one as this one.
pub const MAX_CUSTOM_DEPTH: usize = 123;

/// Why a record or service tree id was refused. Each variant is one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValidationError {
    /// `env_ikey`: the service tree id is empty or white space.
    MissingServiceTreeId,
    /// `env_ikey`: the service tree id is not a UUID in any of its textual forms.
    ServiceTreeIdNotUuid {
        /// The text given.
        value: String,
        /// Why it is not a UUID.
        reason: String,
    },
    /// `env_ikey`: the service tree id is the nil UUID, which names no service.
    NilServiceTreeId,
    /// Only data-plane and control-plane records can be sent by users.
    NotSendable(MessageKind),
    /// `OperationName` is empty.
    MissingOperationName,
    /// `OperationCategories` is empty.
    MissingOperationCategory,
    /// `OperationCategoryDescription` is empty although the categories include `OCOther`.
    MissingOperationCategoryDescription,
    /// `OperationResultDescription` is empty although the result is `Failure`.
    MissingOperationResultDescription,
    /// `OperationAccessLevel` is empty.
    MissingOperationAccessLevel,
    /// `CallerAgent` is empty.
    MissingCallerAgent,
    /// `CallerIdentities` is empty.
    MissingCallerIdentity,
    /// A caller identity (by position) has an empty `Identity`.
    EmptyCallerIdentity {
        /// Position in [`Record::get_caller_identities`].
        index: usize,
    },
    /// A caller identity (by position) has an empty `Description`.
    EmptyCallerIdentityDescription {
        /// Position in [`Record::get_caller_identities`].
        index: usize,
    },
    /// `CallerIpAddress` is not set.
    MissingCallerIp,
    /// `CallerIpAddress` is `0.0.0.0` or `::`.
    UnspecifiedCallerIp,
    /// `CallerIpAddress` is a loopback address (`127.0.0.0/8`, `::1`, or an IPv4-mapped
    /// `::ffff:127.x.x.x`).
    LoopbackCallerIp,
    /// `CallerIpAddress` is a multicast address (`224.0.0.0/4`, `ff00::/8`, or an
    /// IPv4-mapped `::ffff:224.x.x.x` to `::ffff:239.x.x.x`).
    MulticastCallerIp,
    /// A zone was set on an IPv4 address.
    ZoneOnIpv4,
    /// `CallerAccessLevels` is empty.
    MissingCallerAccessLevel,
    /// A caller access level (by position) is empty or only white space.
    BlankCallerAccessLevel {
        /// Position in [`Record::get_caller_access_levels`].
        index: usize,
    },
    /// `TargetResources` is empty.
    MissingTargetResource,
    /// A target resource (by position) has an empty or white-space resource type.
    BlankTargetResourceType {
        /// Position in [`Record::get_target_resources`].
        index: usize,
    },
    /// A target resource (by position) has an empty `Name`.
    EmptyTargetResourceName {
        /// Position in [`Record::get_target_resources`].
        index: usize,
    },
    /// `OperationType` is not set.
    MissingOperationType,
    /// `OperationResult` is not set.
    MissingOperationResult,
    /// `CustomData` nests arrays and maps deeper than the limit.
    CustomDataTooDeep {
        /// The limit that was passed.
        limit: usize,
    },
    /// A custom-data map (the top level or a nested one) has the same key twice.
    DuplicateCustomDataKey {
        /// The repeated key.
        key: String,
    },
    /// A collection or string is longer than msgpack can express (2^32 - 1).
    TooLong,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ValidationError::*;
        match self {
            MissingServiceTreeId => f.write_str("service tree ID is required"),
            ServiceTreeIdNotUuid { value, reason } => {
                write!(f, "service tree ID {value:?} is not a UUID: {reason}")
            }
            NilServiceTreeId => f.write_str("service tree ID cannot be the nil UUID"),
            NotSendable(kind) => write!(
                f,
                "only DataPlane and ControlPlane records can be sent, not {kind}"
            ),
            MissingOperationName => f.write_str("operation name is required"),
            MissingOperationCategory => f.write_str("at least one operation category is required"),
            MissingOperationCategoryDescription => {
                f.write_str("operation category description is required for category OCOther")
            }
            MissingOperationResultDescription => {
                f.write_str("operation result description is required for failed operations")
            }
            MissingOperationAccessLevel => f.write_str("operation access level is required"),
            MissingCallerAgent => f.write_str("caller agent is required"),
            MissingCallerIdentity => f.write_str("at least one caller identity is required"),
            EmptyCallerIdentity { index } => {
                write!(f, "caller identity #{index}: identity is required")
            }
            EmptyCallerIdentityDescription { index } => {
                write!(f, "caller identity #{index}: description is required")
            }
            MissingCallerIp => f.write_str("caller IP address is required"),
            UnspecifiedCallerIp => f.write_str("caller IP address cannot be unspecified"),
            LoopbackCallerIp => f.write_str("caller IP address cannot be loopback"),
            MulticastCallerIp => f.write_str("caller IP address cannot be multicast"),
            ZoneOnIpv4 => f.write_str("caller IP address zone is only allowed on IPv6"),
            MissingCallerAccessLevel => f.write_str("at least one caller access level is required"),
            BlankCallerAccessLevel { index } => {
                write!(f, "caller access level #{index} cannot be empty")
            }
            MissingTargetResource => f.write_str("at least one target resource is required"),
            BlankTargetResourceType { index } => {
                write!(f, "target resource #{index}: resource type cannot be empty")
            }
            EmptyTargetResourceName { index } => {
                write!(f, "target resource #{index}: name is required")
            }
            MissingOperationType => f.write_str("operation type is required"),
            MissingOperationResult => f.write_str("operation result is required"),
            CustomDataTooDeep { limit } => {
                write!(f, "custom data nests deeper than {limit} levels")
            }
            DuplicateCustomDataKey { key } => write!(f, "custom data key {key:?} appears twice"),
            TooLong => f.write_str("a string or collection is longer than 2^32 - 1"),
        }
    }
}

impl std::error::Error for ValidationError {}

/// Checks a service tree id and returns its canonical form, the one the client sends:
/// it must be a UUID other than the nil one, in any of the usual textual forms
/// (hyphenated, simple, braced or `urn:uuid:`, in any case); the result is lowercase
/// and hyphenated.
///
/// ```
/// use geneva_audit::{ValidationError, validate_service_tree_id};
///
/// let canonical = validate_service_tree_id("{E6C9FCB1-7F08-4C1D-9E7A-123456789ABC}");
/// assert_eq!(canonical.as_deref(), Ok("e6c9fcb1-7f08-4c1d-9e7a-123456789abc"));
/// assert_eq!(validate_service_tree_id(" "), Err(ValidationError::MissingServiceTreeId));
/// assert!(matches!(
///     validate_service_tree_id("my-service"),
///     Err(ValidationError::ServiceTreeIdNotUuid { .. })
/// ));
/// ```
pub fn validate_service_tree_id(id: &str) -> Result<String, ValidationError> {
    if id.trim().is_empty() {
        return Err(ValidationError::MissingServiceTreeId);
    }
    let uuid = uuid::Uuid::try_parse(id).map_err(|e| ValidationError::ServiceTreeIdNotUuid {
        value: id.to_owned(),
        reason: e.to_string(),
    })?;
    if uuid.is_nil() {
        return Err(ValidationError::NilServiceTreeId);
    }
    Ok(uuid.hyphenated().to_string())
}

impl Record {
    /// Checks the record against every rule with the default custom-data depth limit.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.validate_with_depth(DEFAULT_MAX_CUSTOM_DEPTH)
    }

    /// Checks the record against every rule, allowing custom data to nest `max_depth`
    /// levels (a scalar at the top of custom data is level 1), at most
    /// [`MAX_CUSTOM_DEPTH`]: however deep the record, validation stops one level past the
    /// limit, so it cannot run out of stack.
    pub fn validate_with_depth(&self, max_depth: usize) -> Result<(), ValidationError> {
        use ValidationError::*;
        let max_depth = max_depth.min(MAX_CUSTOM_DEPTH);
        if !matches!(
            self.kind,
            MessageKind::DataPlane | MessageKind::ControlPlane
        ) {
            return Err(NotSendable(self.kind));
        }
        if self.operation_name.is_empty() {
            return Err(MissingOperationName);
        }
        if self.categories.is_empty() {
            return Err(MissingOperationCategory);
        }
        if self.categories.contains(OperationCategory::Other)
            && self.operation_category_description.is_empty()
        {
            return Err(MissingOperationCategoryDescription);
        }
        if self.operation_result == Some(OperationResult::Failure)
            && self.operation_result_description.is_empty()
        {
            return Err(MissingOperationResultDescription);
        }
        if self.operation_access_level.is_empty() {
            return Err(MissingOperationAccessLevel);
        }
        if self.caller_agent.is_empty() {
            return Err(MissingCallerAgent);
        }
        if self.caller_identities.is_empty() {
            return Err(MissingCallerIdentity);
        }
        for (index, id) in self.caller_identities.iter().enumerate() {
            if id.identity.is_empty() {
                return Err(EmptyCallerIdentity { index });
            }
            if id.description.is_empty() {
                return Err(EmptyCallerIdentityDescription { index });
            }
        }
        let ip = self.caller_ip.ok_or(MissingCallerIp)?;
        check_caller_ip(ip)?;
        if matches!(ip, IpAddr::V4(_)) && !self.caller_ip_zone.is_empty() {
            return Err(ZoneOnIpv4);
        }
        if self.caller_access_levels.is_empty() {
            return Err(MissingCallerAccessLevel);
        }
        if let Some(index) = self.caller_access_levels.iter().position(|l| is_blank(l)) {
            return Err(BlankCallerAccessLevel { index });
        }
        if self.target_resources.is_empty() {
            return Err(MissingTargetResource);
        }
        for (index, r) in self.target_resources.iter().enumerate() {
            if is_blank(&r.resource_type) {
                return Err(BlankTargetResourceType { index });
            }
            if r.name.is_empty() {
                return Err(EmptyTargetResourceName { index });
            }
        }
        if self.operation_type.is_none() {
            return Err(MissingOperationType);
        }
        if self.operation_result.is_none() {
            return Err(MissingOperationResult);
        }
        check_map(&self.custom_data, 1, max_depth)
    }
}

/// The reference's three address checks, as Go's `netip` makes them: an IPv4-mapped
/// address (`::ffff:127.0.0.1`) is loopback or multicast when its IPv4 address is, but
/// only `0.0.0.0` and `::` themselves are unspecified (`::ffff:0.0.0.0` is not).
fn check_caller_ip(ip: IpAddr) -> Result<(), ValidationError> {
    if ip.is_unspecified() {
        return Err(ValidationError::UnspecifiedCallerIp);
    }
    let unmapped = ip.to_canonical();
    if unmapped.is_loopback() {
        return Err(ValidationError::LoopbackCallerIp);
    }
    if unmapped.is_multicast() {
        return Err(ValidationError::MulticastCallerIp);
    }
    Ok(())
}

/// Whether `s` is empty or only white space (as `str::trim` counts it): settled by the
/// first byte for any text that starts with a visible ASCII character.
#[inline]
fn is_blank(s: &str) -> bool {
    match s.as_bytes().first() {
        None => true,
        Some(b) if b.is_ascii_graphic() => false,
        Some(_) => s.trim().is_empty(),
    }
}

fn check_map(
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
    fn caller_ip_classes_are_judged_as_gos_netip_judges_them() {
        use ValidationError::*;
        // (address, verdict); every IPv4 class also as its IPv4-mapped IPv6 form.
        let cases: &[(&str, Result<(), ValidationError>)] = &[
            ("0.0.0.0", Err(UnspecifiedCallerIp)),
            ("::", Err(UnspecifiedCallerIp)),
            // netip's IsUnspecified compares with 0.0.0.0 and :: only; it does not unmap.
            ("::ffff:0.0.0.0", Ok(())),
            ("127.0.0.1", Err(LoopbackCallerIp)),
            ("127.255.255.254", Err(LoopbackCallerIp)),
            ("::1", Err(LoopbackCallerIp)),
            ("::ffff:127.0.0.1", Err(LoopbackCallerIp)),
            ("::ffff:127.1.2.3", Err(LoopbackCallerIp)),
            // IPv4-compatible (not mapped): netip's Is4In6 is false, so not loopback.
            ("::127.0.0.1", Ok(())),
            ("224.0.0.1", Err(MulticastCallerIp)),
            ("239.255.255.255", Err(MulticastCallerIp)),
            ("ff02::1", Err(MulticastCallerIp)),
            ("ff0e::1", Err(MulticastCallerIp)),
            ("::ffff:224.0.0.1", Err(MulticastCallerIp)),
            ("::ffff:239.1.2.3", Err(MulticastCallerIp)),
            // Classes the reference does not check are sent.
            ("169.254.1.1", Ok(())),
            ("::ffff:169.254.1.1", Ok(())),
            ("fe80::1", Ok(())),
            ("10.0.0.1", Ok(())),
            ("::ffff:10.0.0.1", Ok(())),
            ("fc00::1", Ok(())),
            ("255.255.255.255", Ok(())),
            ("::ffff:255.255.255.255", Ok(())),
            ("240.0.0.1", Ok(())),
            ("203.0.113.42", Ok(())),
            ("::ffff:203.0.113.42", Ok(())),
            ("2001:db8::1", Ok(())),
        ];
        for (text, verdict) in cases {
            let ip: std::net::IpAddr = text.parse().unwrap();
            assert_eq!(&super::check_caller_ip(ip), verdict, "{text}");
        }
    }

    #[test]
    fn service_tree_ids_are_uuids_in_any_textual_form() {
        use super::validate_service_tree_id as check;
        const CANONICAL: &str = "e6c9fcb1-7f08-4c1d-9e7a-123456789abc";
        for form in [
            CANONICAL,
            "E6C9FCB1-7F08-4C1D-9E7A-123456789ABC",
            "e6c9fcb17f084c1d9e7a123456789abc",
            "E6C9FCB17F084C1D9E7A123456789abc",
            "{e6c9fcb1-7f08-4c1d-9e7a-123456789abc}",
            "{E6C9FCB1-7F08-4C1D-9E7A-123456789ABC}",
            "urn:uuid:e6c9fcb1-7f08-4c1d-9e7a-123456789abc",
            "urn:uuid:E6C9FCB1-7F08-4C1D-9E7A-123456789ABC",
        ] {
            assert_eq!(check(form).as_deref(), Ok(CANONICAL), "{form}");
        }
        assert_eq!(
            check("ffffffff-ffff-ffff-ffff-ffffffffffff").as_deref(),
            Ok("ffffffff-ffff-ffff-ffff-ffffffffffff")
        );
        for blank in ["", " ", "\t\n"] {
            assert_eq!(check(blank), Err(ValidationError::MissingServiceTreeId));
        }
        for nil in [
            "00000000-0000-0000-0000-000000000000",
            "00000000000000000000000000000000",
            "{00000000-0000-0000-0000-000000000000}",
        ] {
            assert_eq!(check(nil), Err(ValidationError::NilServiceTreeId), "{nil}");
        }
        for bad in [
            "svc",
            " e6c9fcb1-7f08-4c1d-9e7a-123456789abc",
            "e6c9fcb1-7f08-4c1d-9e7a-123456789abc ",
            "e6c9fcb1-7f08-4c1d-9e7a-123456789abg",
            "e6c9fcb1-7f08-4c1d-9e7a-123456789ab",
            "e6c9fcb1-7f08-4c1d-9e7a-123456789abcd",
            "e6c9fcb1-7f084c1d-9e7a-123456789abc",
            "{e6c9fcb1-7f08-4c1d-9e7a-123456789abc",
        ] {
            match check(bad) {
                Err(ValidationError::ServiceTreeIdNotUuid { value, reason }) => {
                    assert_eq!(value, bad);
                    assert!(!reason.is_empty());
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let e = check("svc").unwrap_err().to_string();
        assert!(
            e.starts_with(r#"service tree ID "svc" is not a UUID: "#),
            "{e}"
        );
    }

    #[test]
    fn blank_means_what_trim_says() {
        for s in [
            "",
            " ",
            "\t\n",
            "\u{3000}",
            " a",
            "a",
            "\u{3000}x",
            "é",
            "\u{85}",
        ] {
            assert_eq!(super::is_blank(s), s.trim().is_empty(), "{s:?}");
        }
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
