//! Golden's `bench_record`, built entry by entry and from static data (building or
//! cloning that one allocates nothing). Shared by the benches, `examples/pipeline_probe.rs`
//! and `tests/encode_alloc.rs`.
#![allow(dead_code)] // Each includer uses part of it.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};

use geneva_audit::{
    CallerIdentity, CallerIdentityType, OperationCategory, OperationResult, OperationType, Record,
    TargetResource, Text, Value,
};

static IDENTITIES: [CallerIdentity; 3] = [
    CallerIdentity::from_static(CallerIdentityType::Upn, "alice@contoso.com", "primary user"),
    CallerIdentity::from_static(CallerIdentityType::Upn, "bob@contoso.com", "delegated user"),
    CallerIdentity::from_static(
        CallerIdentityType::ObjectId,
        "0b0c2d6a-5a8e-4f4e-9d2b-1f7e8c3a4b5d",
        "AAD object id",
    ),
];

static TARGETS: [TargetResource; 2] = [
    TargetResource {
        resource_type: Cow::Borrowed("SubscriptionId"),
        name: Cow::Borrowed("4bb12743-2418-427f-92ae-96a11a4044fe"),
        cluster: Cow::Borrowed("cluster-01"),
        data_center: Cow::Borrowed("dc-west"),
        region: Cow::Borrowed("westus2"),
    },
    TargetResource {
        resource_type: Cow::Borrowed("ResourceGroup"),
        name: Cow::Borrowed(
            "/subscriptions/4bb12743-2418-427f-92ae-96a11a4044fe/resourceGroups/IFxAudit",
        ),
        cluster: Cow::Borrowed(""),
        data_center: Cow::Borrowed(""),
        region: Cow::Borrowed("westus2"),
    },
];

/// Sorted bytewise, as the record keeps them.
static LEVELS: [Text; 3] = [
    Text::Borrowed("Contributor"),
    Text::Borrowed("Reader"),
    Text::Borrowed("UserAccessAdministrator"),
];

static CUSTOM: [(Text, Value); 3] = [
    (
        Text::Borrowed("requestId"),
        Value::Str(Text::Borrowed("7f0e1c2d-3b4a-5968-7a8b-9c0d1e2f3a4b")),
    ),
    (Text::Borrowed("retries"), Value::Int(3)),
    (Text::Borrowed("dryRun"), Value::Bool(false)),
];

/// Golden's `bench_record`, built with the builder from `&'static str`.
pub fn bench_record_built() -> Record {
    Record::data_plane()
        .caller_ip(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 42)))
        .add_caller_identity(CallerIdentityType::Upn, "alice@contoso.com", "primary user")
        .add_caller_identity(CallerIdentityType::Upn, "bob@contoso.com", "delegated user")
        .add_caller_identity(
            CallerIdentityType::ObjectId,
            "0b0c2d6a-5a8e-4f4e-9d2b-1f7e8c3a4b5d",
            "AAD object id",
        )
        .add_operation_category(OperationCategory::UserManagement)
        .add_operation_category(OperationCategory::Authentication)
        .add_operation_category(OperationCategory::ResourceManagement)
        .custom("requestId", "7f0e1c2d-3b4a-5968-7a8b-9c0d1e2f3a4b")
        .custom("retries", 3i64)
        .custom("dryRun", false)
        .add_target(
            TargetResource::new("SubscriptionId", "4bb12743-2418-427f-92ae-96a11a4044fe")
                .cluster("cluster-01")
                .data_center("dc-west")
                .region("westus2"),
        )
        .add_target(
            TargetResource::new(
                "ResourceGroup",
                "/subscriptions/4bb12743-2418-427f-92ae-96a11a4044fe/resourceGroups/IFxAudit",
            )
            .region("westus2"),
        )
        .add_caller_access_level("Contributor")
        .add_caller_access_level("Reader")
        .add_caller_access_level("UserAccessAdministrator")
        .operation_access_level("Contributor")
        .operation_name("CreateStorageAccount")
        .caller_agent("azure-cli/2.61.0")
        .operation_type(OperationType::Create)
        .operation_result(OperationResult::Success)
}

/// Built once; the pipelines send clones. Every collection borrows a static slice, so a
/// clone allocates nothing and costs less than the chained setters, each of which moves
/// the record.
pub fn bench_record() -> Record {
    Record::data_plane()
        .caller_ip(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 42)))
        .caller_identities_from(&IDENTITIES[..])
        .add_operation_category(OperationCategory::UserManagement)
        .add_operation_category(OperationCategory::Authentication)
        .add_operation_category(OperationCategory::ResourceManagement)
        .custom_data_from(&CUSTOM[..])
        .target_resources_from(&TARGETS[..])
        .caller_access_levels_from(&LEVELS[..])
        .operation_access_level("Contributor")
        .operation_name("CreateStorageAccount")
        .caller_agent("azure-cli/2.61.0")
        .operation_type(OperationType::Create)
        .operation_result(OperationResult::Success)
}
