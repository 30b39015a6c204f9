//! The library at work, with nothing to set up: a local test agent on a temporary Unix
//! socket, a client pointed at it, a few realistic records (one of them invalid), and
//! what the agent received, decoded by an independent msgpack decoder.
//!
//! Run it with `cargo run --example quickstart`.

use std::time::Duration;

use geneva_audit::agent::TestAgent;
use geneva_audit::{
    CallerIdentityType, Client, OperationCategory, OperationResult, OperationType, Record,
    SendError, TargetResource,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("geneva-audit-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("default_fluent.socket");
    let agent = TestAgent::unix(&socket)?;
    println!("test agent listening on {}", socket.display());

    let client = Client::builder("e6c9fcb1-7f08-4c1d-9e7a-123456789abc")
        .unix_socket(&socket)
        .build()?;

    // A per-request template: cloning it is cheap.
    let template = Record::data_plane()
        .caller_ip("203.0.113.42".parse()?)
        .add_caller_identity(
            CallerIdentityType::Upn,
            "alice@contoso.com",
            "signed-in user",
        )
        .add_caller_access_level("Contributor")
        .operation_access_level("Contributor")
        .caller_agent("azure-cli/2.61.0");

    let records = [
        template
            .clone()
            .add_operation_category(OperationCategory::ResourceManagement)
            .add_target_resource("SubscriptionId", "4bb12743-2418-427f-92ae-96a11a4044fe")
            .operation_name("ListStorageAccounts")
            .operation_type(OperationType::Read)
            .operation_result(OperationResult::Success)
            .custom("requestId", "7f0e1c2d-3b4a-5968-7a8b-9c0d1e2f3a4b"),
        Record::control_plane()
            .caller_ip("2001:db8::1".parse()?)
            .add_caller_identity(
                CallerIdentityType::ObjectId,
                "0b0c2d6a-5a8e-4f4e-9d2b-1f7e8c3a4b5d",
                "AAD object id",
            )
            .add_caller_access_level("Owner")
            .operation_access_level("Owner")
            .caller_agent("portal")
            .add_operation_category(OperationCategory::KeyManagement)
            .add_target(
                TargetResource::new("Vault", "contoso-kv")
                    .region("westus2")
                    .cluster("kv-01"),
            )
            .operation_name("RotateKey")
            .operation_type(OperationType::Update)
            .operation_result(OperationResult::Failure)
            .operation_result_description("Forbidden: key is locked"),
        // Invalid: a failed operation needs a result description.
        template
            .clone()
            .add_operation_category(OperationCategory::ResourceManagement)
            .add_target_resource("SubscriptionId", "4bb12743-2418-427f-92ae-96a11a4044fe")
            .operation_name("DeleteStorageAccount")
            .operation_type(OperationType::Delete)
            .operation_result(OperationResult::Failure),
    ];

    for record in records {
        let name = record.get_operation_name().to_owned();
        match client.try_send(record) {
            Ok(()) => println!("sent {name}"),
            Err(SendError::Invalid(rule, _record)) => {
                println!("refused {name}: {rule} (the record is handed back)")
            }
            Err(other) => println!("refused: {other}"),
        }
    }

    client.flush(Duration::from_secs(5))?;
    let report = client.close(Duration::from_secs(5));

    // Two records and the heartbeat that follows the first record on a connection.
    let frames = agent.wait_for_frames(3, Duration::from_secs(5))?;
    println!("\nthe agent received {} frames:", frames.len());
    for frame in &frames {
        println!("  {} ts={}", frame.tag, frame.ts);
        for (key, value) in frame.body_entries() {
            println!("      {key}: {value}");
        }
    }
    println!("\nstats: {:#?}", report.stats);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
