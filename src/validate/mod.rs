//! Validation: the reference client's rules, in its order, plus the few this client adds
//! (a custom-data depth limit, unique custom-data keys, only sendable kinds, no unknown
//! operation type or result, a zone only on IPv6).
//!
//! Each rule is its own [`ValidationError`] variant that names the field and the rule.
//! Validation reads the record and never allocates on success.

use std::net::IpAddr;

use crate::kinds::{MessageKind, OperationCategory, OperationResult};
use crate::record::Record;

mod custom_data;
mod error;
mod service_tree_id;

pub use error::ValidationError;
pub use service_tree_id::validate_service_tree_id;

use custom_data::check_map;

/// The default limit on how deeply custom-data arrays and maps may nest.
pub const DEFAULT_MAX_CUSTOM_DEPTH: usize = 32;

/// The highest custom-data depth limit there is. A frame holds custom data 5 levels
/// down, so a record this deep makes a frame nest 128 levels, as deep as the test
/// agent's decoder (and the JSON form's parser) reads. Validation, sizing, encoding and
/// dropping recurse once per level; a record this deep leaves most of a thread's default
/// 2 MiB stack free, in a debug build too. A client refuses a higher limit, and
/// [`Record::validate_with_depth`] treats a higher one as this one.
pub const MAX_CUSTOM_DEPTH: usize = 123;

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

#[cfg(test)]
mod tests {
    use crate::validate::ValidationError;

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
}
