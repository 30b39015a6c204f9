//! The reference design's encoding of golden's `bench_record`: a serde struct of the same
//! wire shape, for rmp-serde. Shared by the encode and pipeline benches.

use serde::{Serialize, Serializer};

/// The service tree id of every bench frame.
pub const SID: &str = "e6c9fcb1-7f08-4c1d-9e7a-123456789abc";

/// A slice of pairs written as a map, in order.
struct MapOf<V: 'static>(&'static [(&'static str, V)]);

impl<V: Serialize> Serialize for MapOf<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

#[derive(Serialize)]
struct Identity {
    #[serde(rename = "Identity")]
    identity: &'static str,
    #[serde(rename = "Description")]
    description: &'static str,
}

#[derive(Serialize)]
struct Target {
    #[serde(rename = "Name")]
    name: &'static str,
    #[serde(rename = "Cluster")]
    cluster: &'static str,
    #[serde(rename = "DataCenter")]
    data_center: &'static str,
    #[serde(rename = "Region")]
    region: &'static str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Custom {
    Str(&'static str),
    Int(i64),
    Bool(bool),
}

/// The body's 14 fields in wire order.
#[derive(Serialize)]
struct Body {
    env_ikey: &'static str,
    /// Pre-formatted: this favours rmp-serde, which does not format the address.
    #[serde(rename = "CallerIpAddress")]
    caller_ip_address: &'static str,
    #[serde(rename = "CallerIdentities")]
    caller_identities: MapOf<&'static [Identity]>,
    #[serde(rename = "OperationCategories")]
    operation_categories: &'static [&'static str],
    #[serde(rename = "CustomData")]
    custom_data: MapOf<Custom>,
    #[serde(rename = "TargetResources")]
    target_resources: MapOf<&'static [Target]>,
    #[serde(rename = "CallerAccessLevels")]
    caller_access_levels: &'static [&'static str],
    #[serde(rename = "OperationAccessLevel")]
    operation_access_level: &'static str,
    #[serde(rename = "OperationName")]
    operation_name: &'static str,
    #[serde(rename = "OperationResultDescription")]
    operation_result_description: &'static str,
    #[serde(rename = "CallerAgent")]
    caller_agent: &'static str,
    #[serde(rename = "OperationCategoryDescription")]
    operation_category_description: &'static str,
    #[serde(rename = "OperationType")]
    operation_type: &'static str,
    #[serde(rename = "OperationResult")]
    operation_result: &'static str,
}

#[derive(Serialize)]
struct Options {
    #[serde(rename = "TimeFormat")]
    time_format: &'static str,
}

/// `[tag, [[ts, body]], options]`.
#[derive(Serialize)]
pub struct RefFrame(&'static str, [(i64, &'static Body); 1], Options);

static REF_UPN: [Identity; 2] = [
    Identity {
        identity: "alice@contoso.com",
        description: "primary user",
    },
    Identity {
        identity: "bob@contoso.com",
        description: "delegated user",
    },
];
static REF_OID: [Identity; 1] = [Identity {
    identity: "0b0c2d6a-5a8e-4f4e-9d2b-1f7e8c3a4b5d",
    description: "AAD object id",
}];
static REF_IDENTITIES: [(&str, &[Identity]); 2] = [("UPN", &REF_UPN), ("ObjectID", &REF_OID)];
static REF_CUSTOM: [(&str, Custom); 3] = [
    (
        "requestId",
        Custom::Str("7f0e1c2d-3b4a-5968-7a8b-9c0d1e2f3a4b"),
    ),
    ("retries", Custom::Int(3)),
    ("dryRun", Custom::Bool(false)),
];
static REF_SUB: [Target; 1] = [Target {
    name: "4bb12743-2418-427f-92ae-96a11a4044fe",
    cluster: "cluster-01",
    data_center: "dc-west",
    region: "westus2",
}];
static REF_RG: [Target; 1] = [Target {
    name: "/subscriptions/4bb12743-2418-427f-92ae-96a11a4044fe/resourceGroups/IFxAudit",
    cluster: "",
    data_center: "",
    region: "westus2",
}];
static REF_TARGETS: [(&str, &[Target]); 2] =
    [("SubscriptionId", &REF_SUB), ("ResourceGroup", &REF_RG)];
static REF_BODY: Body = Body {
    env_ikey: SID,
    caller_ip_address: "203.0.113.42",
    caller_identities: MapOf(&REF_IDENTITIES),
    operation_categories: &["UserManagement", "Authentication", "ResourceManagement"],
    custom_data: MapOf(&REF_CUSTOM),
    target_resources: MapOf(&REF_TARGETS),
    caller_access_levels: &["Contributor", "Reader", "UserAccessAdministrator"],
    operation_access_level: "Contributor",
    operation_name: "CreateStorageAccount",
    operation_result_description: "",
    caller_agent: "azure-cli/2.61.0",
    operation_category_description: "",
    operation_type: "Create",
    operation_result: "Success",
};

pub fn ref_frame(ts: i64) -> RefFrame {
    RefFrame(
        "AsmAuditDP",
        [(ts, &REF_BODY)],
        Options {
            time_format: "DateTime",
        },
    )
}
