//! Why a record or a service tree id was refused.

use std::fmt;

use crate::kinds::MessageKind;
#[cfg(doc)]
use crate::record::Record;

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
