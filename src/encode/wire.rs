//! The wire's constant bytes: keys, the envelope, the options map, and tables of
//! enum names pre-encoded with their keys, all built at compile time.

use crate::kinds::MessageKind;

/// Pre-encodes a short key as a msgpack fixstr at compile time.
pub(super) const fn fixstr<const N: usize>(s: &str) -> [u8; N] {
    let b = s.as_bytes();
    assert!(b.len() + 1 == N && b.len() < 32);
    let mut out = [0u8; N];
    out[0] = 0xa0 | b.len() as u8;
    let mut i = 0;
    while i < b.len() {
        out[i + 1] = b[i];
        i += 1;
    }
    out
}

macro_rules! keys {
    ($($name:ident = $s:literal;)*) => {$(
        pub(super) const $name: [u8; $s.len() + 1] = fixstr($s);
    )*};
}

keys! {
    ENV_IKEY = "env_ikey";
    CALLER_IP_ADDRESS = "CallerIpAddress";
    CALLER_IDENTITIES = "CallerIdentities";
    OPERATION_CATEGORIES = "OperationCategories";
    CUSTOM_DATA = "CustomData";
    TARGET_RESOURCES = "TargetResources";
    CALLER_ACCESS_LEVELS = "CallerAccessLevels";
    OPERATION_ACCESS_LEVEL = "OperationAccessLevel";
    OPERATION_NAME = "OperationName";
    OPERATION_RESULT_DESCRIPTION = "OperationResultDescription";
    CALLER_AGENT = "CallerAgent";
    OPERATION_CATEGORY_DESCRIPTION = "OperationCategoryDescription";
    OPERATION_TYPE = "OperationType";
    OPERATION_RESULT = "OperationResult";
    IDENTITY = "Identity";
    DESCRIPTION = "Description";
    NAME = "Name";
    CLUSTER = "Cluster";
    DATA_CENTER = "DataCenter";
    REGION = "Region";
    ASM_AUDIT_SERVICE_ID = "AsmAuditServiceId";
    AUDIT_VERSION = "AuditVersion";
    OS_VERSION = "OsVersion";
    LANGUAGE = "Language";
    DESTINATION = "Destination";
    TIME_FORMAT = "TimeFormat";
    DATE_TIME = "DateTime";
}

/// `first` followed by `rest`, at compile time.
pub(super) const fn prefixed<const N: usize, const M: usize>(first: u8, rest: [u8; N]) -> [u8; M] {
    assert!(M == N + 1);
    let mut out = [0u8; M];
    out[0] = first;
    let mut i = 0;
    while i < N {
        out[i + 1] = rest[i];
        i += 1;
    }
    out
}

/// A caller identity's map header and its first key.
pub(super) const IDENTITY_ENTRY: [u8; IDENTITY.len() + 1] = prefixed(0x82, IDENTITY);
/// A target resource's map header and its first key.
pub(super) const NAME_ENTRY: [u8; NAME.len() + 1] = prefixed(0x84, NAME);

/// `[` tag `[[` and the int64 marker of the timestamp: 93 aa <tag> 91 92 d3.
pub(super) const fn envelope_head(tag: &str) -> [u8; 15] {
    let t: [u8; 11] = fixstr(tag);
    let mut out = [0u8; 15];
    out[0] = 0x93;
    let mut i = 0;
    while i < 11 {
        out[i + 1] = t[i];
        i += 1;
    }
    out[12] = 0x91;
    out[13] = 0x92;
    out[14] = 0xd3;
    out
}

pub(super) const HEAD_DP: [u8; 15] = envelope_head("AsmAuditDP");
pub(super) const HEAD_CP: [u8; 15] = envelope_head("AsmAuditCP");
pub(super) const HEAD_HB: [u8; 15] = envelope_head("AsmAuditHB");
pub(super) const HEAD_DG: [u8; 15] = envelope_head("AsmAuditDG");

/// The options map closing every frame: `{"TimeFormat": "DateTime"}`.
pub(super) const OPTIONS: [u8; 21] = {
    let mut out = [0u8; 21];
    out[0] = 0x81;
    let mut i = 0;
    while i < TIME_FORMAT.len() {
        out[1 + i] = TIME_FORMAT[i];
        i += 1;
    }
    let mut j = 0;
    while j < DATE_TIME.len() {
        out[1 + TIME_FORMAT.len() + j] = DATE_TIME[j];
        j += 1;
    }
    out
};

pub(super) fn head(kind: MessageKind) -> &'static [u8; 15] {
    match kind {
        MessageKind::DataPlane => &HEAD_DP,
        MessageKind::ControlPlane => &HEAD_CP,
        MessageKind::Heartbeat => &HEAD_HB,
        MessageKind::Diagnostic => &HEAD_DG,
    }
}

/// Constant bytes (a pre-encoded name, possibly after its key) zero-padded to `W` bytes,
/// of which the first `len` count: writing one is a copy of constant size, which the
/// compiler turns into a few register moves instead of a `memcpy` call.
#[derive(Debug, Clone, Copy)]
pub(super) struct Padded<const W: usize> {
    pub(super) bytes: [u8; W],
    pub(super) len: usize,
}

/// `prefix` (pre-encoded bytes) followed by `name` as a fixstr, padded to `W` bytes.
pub(super) const fn padded<const W: usize>(prefix: &[u8], name: &str) -> Padded<W> {
    let name = name.as_bytes();
    let len = prefix.len() + 1 + name.len();
    assert!(len <= W && name.len() < 32);
    let mut bytes = [0u8; W];
    let mut i = 0;
    while i < prefix.len() {
        bytes[i] = prefix[i];
        i += 1;
    }
    bytes[i] = 0xa0 | name.len() as u8;
    let mut j = 0;
    while j < name.len() {
        bytes[i + 1 + j] = name[j];
        j += 1;
    }
    Padded { bytes, len }
}

/// The table of `names` pre-encoded after `prefix`, indexed by an enum's value (the
/// wire contract's numbering; index 0, "unknown", is the empty string and never written
/// for a validated record). A unit test checks every entry against `wire_name`.
pub(super) const fn table<const W: usize, const N: usize>(
    prefix: &[u8],
    names: [&str; N],
) -> [Padded<W>; N] {
    let mut out = [Padded {
        bytes: [0; W],
        len: 0,
    }; N];
    let mut i = 0;
    while i < N {
        out[i] = padded(prefix, names[i]);
        i += 1;
    }
    out
}

/// `OperationCategories` entries by [`OperationCategory`] value.
pub(super) const CATEGORY_NAMES: [Padded<24>; 20] = table(
    b"",
    [
        "",
        "OCOther",
        "UserManagement",
        "GroupManagement",
        "Authentication",
        "Authorization",
        "RoleManagement",
        "ApplicationManagement",
        "KeyManagement",
        "DirectoryManagement",
        "ResourceManagement",
        "PolicyManagement",
        "DeviceManagement",
        "EntitlementManagement",
        "PasswordManagement",
        "IdentityProtection",
        "ObjectManagement",
        "ProvisioningManagement",
        "CustomerFacing",
        "EUII",
    ],
);

/// `CallerIdentities` keys by [`CallerIdentityType`] value.
pub(super) const IDENTITY_TYPE_NAMES: [Padded<16>; 15] = table(
    b"",
    [
        "",
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
        "System",
    ],
);

/// The `OperationType` key and value by [`OperationType`] value (0: not set).
pub(super) const OPERATION_TYPE_FIELDS: [Padded<24>; 5] =
    table(&OPERATION_TYPE, ["", "Read", "Update", "Create", "Delete"]);

/// The `OperationResult` key and value by [`OperationResult`] value (0: not set).
pub(super) const OPERATION_RESULT_FIELDS: [Padded<24>; 3] =
    table(&OPERATION_RESULT, ["", "Success", "Failure"]);
