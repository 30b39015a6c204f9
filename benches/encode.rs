//! Encoding golden's `bench_record` (a typical ~1 KB frame): our encoder against
//! rmp-serde on a serde struct of the same wire shape, plus `encoded_len` and `validate`.
//!
//! `CARGO_TARGET_DIR=/work/target-a cargo bench --bench encode -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use geneva_audit::{
    CallerIdentityType, Encoder, OperationCategory, OperationResult, OperationType, Record,
    TargetResource, encoded_len,
};
use serde::{Serialize, Serializer};

const SID: &str = "e6c9fcb1-7f08-4c1d-9e7a-123456789abc";
const TS: i64 = 1_700_000_000;

/// Golden's `bench_record`, built with the builder from `&'static str`.
fn bench_record() -> Record {
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

/// A slice of pairs written as a map, in order.
struct MapOf<'a, V>(&'a [(&'a str, V)]);

impl<V: Serialize> Serialize for MapOf<'_, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

#[derive(Serialize)]
struct Identity<'a> {
    #[serde(rename = "Identity")]
    identity: &'a str,
    #[serde(rename = "Description")]
    description: &'a str,
}

#[derive(Serialize)]
struct Target<'a> {
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "Cluster")]
    cluster: &'a str,
    #[serde(rename = "DataCenter")]
    data_center: &'a str,
    #[serde(rename = "Region")]
    region: &'a str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Custom<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
}

#[derive(Serialize)]
struct Body<'a> {
    env_ikey: &'a str,
    /// Pre-formatted: this favours rmp-serde, which does not format the address.
    #[serde(rename = "CallerIpAddress")]
    caller_ip_address: &'a str,
    #[serde(rename = "CallerIdentities")]
    caller_identities: MapOf<'a, Vec<Identity<'a>>>,
    #[serde(rename = "OperationCategories")]
    operation_categories: Vec<&'a str>,
    #[serde(rename = "CustomData")]
    custom_data: MapOf<'a, Custom<'a>>,
    #[serde(rename = "TargetResources")]
    target_resources: MapOf<'a, Vec<Target<'a>>>,
    #[serde(rename = "CallerAccessLevels")]
    caller_access_levels: Vec<&'a str>,
    #[serde(rename = "OperationAccessLevel")]
    operation_access_level: &'a str,
    #[serde(rename = "OperationName")]
    operation_name: &'a str,
    #[serde(rename = "OperationResultDescription")]
    operation_result_description: &'a str,
    #[serde(rename = "CallerAgent")]
    caller_agent: &'a str,
    #[serde(rename = "OperationCategoryDescription")]
    operation_category_description: &'a str,
    #[serde(rename = "OperationType")]
    operation_type: &'a str,
    #[serde(rename = "OperationResult")]
    operation_result: &'a str,
}

#[derive(Serialize)]
struct Options {
    #[serde(rename = "TimeFormat")]
    time_format: &'static str,
}

/// `[tag, [[ts, body]], options]`.
#[derive(Serialize)]
struct Frame<'a>(&'static str, [(i64, &'a Body<'a>); 1], Options);

fn main_bench(c: &mut Criterion) {
    let record = bench_record();
    record.validate().expect("bench_record is valid");
    let mut encoder = Encoder::new(SID).expect("valid id");
    let ours = encoder.encode(TS, &record).to_vec();

    let ids_upn = [
        Identity {
            identity: "alice@contoso.com",
            description: "primary user",
        },
        Identity {
            identity: "bob@contoso.com",
            description: "delegated user",
        },
    ];
    let ids_oid = [Identity {
        identity: "0b0c2d6a-5a8e-4f4e-9d2b-1f7e8c3a4b5d",
        description: "AAD object id",
    }];
    let identities = [("UPN", ids_upn.into()), ("ObjectID", ids_oid.into())];
    let custom = [
        (
            "requestId",
            Custom::Str("7f0e1c2d-3b4a-5968-7a8b-9c0d1e2f3a4b"),
        ),
        ("retries", Custom::Int(3)),
        ("dryRun", Custom::Bool(false)),
    ];
    let targets = [
        (
            "SubscriptionId",
            vec![Target {
                name: "4bb12743-2418-427f-92ae-96a11a4044fe",
                cluster: "cluster-01",
                data_center: "dc-west",
                region: "westus2",
            }],
        ),
        (
            "ResourceGroup",
            vec![Target {
                name: "/subscriptions/4bb12743-2418-427f-92ae-96a11a4044fe/resourceGroups/IFxAudit",
                cluster: "",
                data_center: "",
                region: "westus2",
            }],
        ),
    ];
    let body = Body {
        env_ikey: SID,
        caller_ip_address: "203.0.113.42",
        caller_identities: MapOf(&identities),
        operation_categories: vec!["UserManagement", "Authentication", "ResourceManagement"],
        custom_data: MapOf(&custom),
        target_resources: MapOf(&targets),
        caller_access_levels: vec!["Contributor", "Reader", "UserAccessAdministrator"],
        operation_access_level: "Contributor",
        operation_name: "CreateStorageAccount",
        operation_result_description: "",
        caller_agent: "azure-cli/2.61.0",
        operation_category_description: "",
        operation_type: "Create",
        operation_result: "Success",
    };
    let frame = Frame(
        "AsmAuditDP",
        [(TS, &body)],
        Options {
            time_format: "DateTime",
        },
    );

    // Both sides write the same tree (rmp-serde with compact integers).
    let theirs = rmp_serde::to_vec_named(&frame).expect("serializes");
    let tree = |b: &[u8]| rmpv::decode::read_value(&mut &b[..]).expect("decodes");
    assert_eq!(
        tree(&ours),
        tree(&theirs),
        "rmp-serde mirror has the wire shape"
    );
    eprintln!(
        "frame sizes: ours {} bytes, rmp-serde {} bytes",
        ours.len(),
        theirs.len()
    );

    let mut g = c.benchmark_group("encode_bench_record");
    g.throughput(Throughput::Bytes(ours.len() as u64));
    g.bench_function("geneva_audit_encoder", |b| {
        b.iter(|| black_box(encoder.encode(black_box(TS), black_box(&record)).len()))
    });
    g.bench_function("rmp_serde_to_vec_named", |b| {
        b.iter(|| black_box(rmp_serde::to_vec_named(black_box(&frame)).map(|v| v.len())))
    });
    let mut buf = Vec::with_capacity(4096);
    g.bench_function("rmp_serde_reused_buffer", |b| {
        b.iter(|| {
            buf.clear();
            let mut ser = rmp_serde::Serializer::new(&mut buf).with_struct_map();
            black_box(black_box(&frame).serialize(&mut ser)).ok();
            black_box(buf.len())
        })
    });
    g.finish();

    c.bench_function("encoded_len_bench_record", |b| {
        b.iter(|| encoded_len(black_box(SID), black_box(&record)))
    });
    c.bench_function("validate_bench_record", |b| {
        b.iter(|| black_box(&record).validate())
    });
}

criterion_group!(benches, main_bench);
criterion_main!(benches);
