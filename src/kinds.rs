//! The closed vocabularies of an audit record: message kinds and the four enums whose
//! names travel on the wire.
//!
//! Every enum carries exactly the names of the wire contract (`OCOther` and `CIOther`
//! included), parses those names back case-insensitively, iterates in numeric order and
//! has no "unknown" variant: a value that the wire must never carry cannot be built.

use strum::{Display, EnumCount, EnumIter, EnumString, FromRepr, IntoStaticStr};

/// The kind of a message, which decides the frame's tag.
///
/// Users send [`MessageKind::DataPlane`] and [`MessageKind::ControlPlane`] records; the
/// client itself sends heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr)]
#[strum(ascii_case_insensitive)]
pub enum MessageKind {
    /// Data-plane operations (reading or changing customer data). Tag `AsmAuditDP`.
    DataPlane,
    /// Control-plane operations (managing resources). Tag `AsmAuditCP`.
    ControlPlane,
    /// The client's own liveness message. Tag `AsmAuditHB`.
    Heartbeat,
    /// A diagnostic message with an empty body. Tag `AsmAuditDG`.
    Diagnostic,
}

impl MessageKind {
    /// The frame tag the agent routes on, e.g. `AsmAuditDP`.
    pub const fn tag(self) -> &'static str {
        match self {
            MessageKind::DataPlane => "AsmAuditDP",
            MessageKind::ControlPlane => "AsmAuditCP",
            MessageKind::Heartbeat => "AsmAuditHB",
            MessageKind::Diagnostic => "AsmAuditDG",
        }
    }
}

/// What the operation did to its target.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Display,
    EnumString,
    IntoStaticStr,
    EnumIter,
    EnumCount,
    FromRepr,
)]
#[strum(ascii_case_insensitive)]
#[repr(u8)]
pub enum OperationType {
    /// Reading data or configuration.
    Read = 1,
    /// Changing something that exists.
    Update = 2,
    /// Creating something new.
    Create = 3,
    /// Deleting something.
    Delete = 4,
}

/// Whether the operation succeeded.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Display,
    EnumString,
    IntoStaticStr,
    EnumIter,
    EnumCount,
    FromRepr,
)]
#[strum(ascii_case_insensitive)]
#[repr(u8)]
pub enum OperationResult {
    /// The operation succeeded.
    Success = 1,
    /// The operation failed; a failed record needs a result description.
    Failure = 2,
}

/// The categories an operation belongs to. A record holds a set of them
/// ([`OperationCategories`](crate::OperationCategories)).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Display,
    EnumString,
    IntoStaticStr,
    EnumIter,
    EnumCount,
    FromRepr,
)]
#[strum(ascii_case_insensitive)]
#[repr(u8)]
pub enum OperationCategory {
    /// None of the others; needs an operation category description. Wire name `OCOther`.
    #[strum(to_string = "OCOther", serialize = "Other")]
    Other = 1,
    /// Managing users.
    UserManagement = 2,
    /// Managing groups.
    GroupManagement = 3,
    /// Authenticating a caller.
    Authentication = 4,
    /// Authorizing a caller.
    Authorization = 5,
    /// Managing roles.
    RoleManagement = 6,
    /// Managing applications.
    ApplicationManagement = 7,
    /// Managing keys.
    KeyManagement = 8,
    /// Managing directories.
    DirectoryManagement = 9,
    /// Managing resources.
    ResourceManagement = 10,
    /// Managing policies.
    PolicyManagement = 11,
    /// Managing devices.
    DeviceManagement = 12,
    /// Managing entitlements.
    EntitlementManagement = 13,
    /// Managing passwords.
    PasswordManagement = 14,
    /// Identity protection.
    IdentityProtection = 15,
    /// Managing objects.
    ObjectManagement = 16,
    /// Provisioning.
    ProvisioningManagement = 17,
    /// Customer-facing operations.
    CustomerFacing = 18,
    /// Operations touching end-user identifiable information.
    #[strum(to_string = "EUII")]
    Euii = 19,
}

/// How a caller identity is expressed.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Display,
    EnumString,
    IntoStaticStr,
    EnumIter,
    EnumCount,
    FromRepr,
)]
#[strum(ascii_case_insensitive)]
#[repr(u8)]
pub enum CallerIdentityType {
    /// None of the others. Wire name `CIOther`.
    #[strum(to_string = "CIOther", serialize = "Other")]
    Other = 1,
    /// User principal name.
    #[strum(to_string = "UPN")]
    Upn = 2,
    /// Passport unique id.
    #[strum(to_string = "PUID")]
    Puid = 3,
    /// Directory object id.
    #[strum(to_string = "ObjectID")]
    ObjectId = 4,
    /// Certificate.
    Certificate = 5,
    /// Claim.
    Claim = 6,
    /// User name.
    Username = 7,
    /// Access key name.
    AccessKeyName = 8,
    /// Subscription id.
    #[strum(to_string = "SubscriptionID")]
    SubscriptionId = 9,
    /// Application id.
    #[strum(to_string = "ApplicationID")]
    ApplicationId = 10,
    /// Tenant id.
    #[strum(to_string = "TenantID")]
    TenantId = 11,
    /// Token id.
    #[strum(to_string = "TokenID")]
    TokenId = 12,
    /// SAS URL.
    #[strum(to_string = "SasURL")]
    SasUrl = 13,
    /// The system itself.
    System = 14,
}

macro_rules! wire_name {
    ($($t:ty),*) => {$(
        impl $t {
            /// The name this value has on the wire.
            pub fn wire_name(self) -> &'static str {
                self.into()
            }
        }
    )*};
}
wire_name!(
    OperationType,
    OperationResult,
    OperationCategory,
    CallerIdentityType
);

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    #[test]
    fn names_and_values_match_the_wire_contract() {
        let cats: Vec<(u8, &str)> = OperationCategory::iter()
            .map(|c| (c as u8, c.wire_name()))
            .collect();
        assert_eq!(cats.len(), 19);
        assert_eq!(cats[0], (1, "OCOther"));
        assert_eq!(cats[18], (19, "EUII"));
        let ids: Vec<&str> = CallerIdentityType::iter().map(|c| c.wire_name()).collect();
        assert_eq!(
            ids,
            [
                "CIOther",
                "UPN",
                "PUID",
                "ObjectID",
                "Certificate",
                "Claim",
                "Username",
                "AccessKeyName",
                "SubscriptionID",
                "ApplicationID",
                "TenantID",
                "TokenID",
                "SasURL",
                "System"
            ]
        );
        assert_eq!(OperationType::Delete as u8, 4);
        assert_eq!(OperationResult::Failure.to_string(), "Failure");
    }

    #[test]
    fn names_parse_back_case_insensitively() {
        assert_eq!(
            "ocother".parse::<OperationCategory>(),
            Ok(OperationCategory::Other)
        );
        assert_eq!(
            "euii".parse::<OperationCategory>(),
            Ok(OperationCategory::Euii)
        );
        assert_eq!(
            "sasurl".parse::<CallerIdentityType>(),
            Ok(CallerIdentityType::SasUrl)
        );
        assert_eq!("READ".parse::<OperationType>(), Ok(OperationType::Read));
        assert!("Unknown".parse::<OperationType>().is_err());
        assert!(OperationCategory::from_repr(0).is_none());
        for c in OperationCategory::iter() {
            assert_eq!(c.wire_name().parse::<OperationCategory>(), Ok(c));
        }
        for c in CallerIdentityType::iter() {
            assert_eq!(c.wire_name().parse::<CallerIdentityType>(), Ok(c));
        }
    }
}
