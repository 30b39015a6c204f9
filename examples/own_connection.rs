//! For users of go-otel-audit's `base` client, which sends only on a connection the
//! caller holds: the public `Encoder` writes each frame, and the caller writes it to a
//! socket of its own. Nothing reconnects, queues or resends: that is the `Client`'s job.
//!
//! Here the socket is a local test agent's; a service would connect to the agent's own
//! socket (`geneva_audit::DEFAULT_SOCKET_PATH`).
//!
//! ```sh
//! cargo run --example own_connection
//! ```

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use geneva_audit::agent::TestAgent;
use geneva_audit::{
    CallerIdentityType, Encoder, OperationCategory, OperationResult, OperationType, Record,
    validate_service_tree_id,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("geneva-audit-own-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("agent.sock");
    let agent = TestAgent::unix(&socket)?;

    // The connection the caller holds, as with `base`.
    let mut conn = UnixStream::connect(&socket)?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;

    // The encoder writes the id as given; the client would send it in canonical form.
    let service_tree_id = validate_service_tree_id("E6C9FCB1-7F08-4C1D-9E7A-123456789ABC")?;
    let mut encoder = Encoder::new(service_tree_id)?;

    let record = Record::data_plane()
        .caller_ip("203.0.113.42".parse()?)
        .add_caller_identity(
            CallerIdentityType::Upn,
            "alice@contoso.com",
            "signed-in user",
        )
        .add_operation_category(OperationCategory::ResourceManagement)
        .add_target_resource("SubscriptionId", "4bb12743-2418-427f-92ae-96a11a4044fe")
        .add_caller_access_level("Contributor")
        .operation_access_level("Contributor")
        .operation_name("ListStorageAccounts")
        .caller_agent("azure-cli/2.61.0")
        .operation_type(OperationType::Read)
        .operation_result(OperationResult::Success);

    // The encoder does not validate: the client would refuse an invalid record here.
    record.validate()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let ts = i64::try_from(now)?;
    // A failed write is the caller's to retry on a new connection, as with `base`.
    conn.write_all(encoder.encode(ts, &record))?;

    let frames = agent.wait_for_frames(1, Duration::from_secs(10))?;
    println!(
        "the agent read {} frame(s): {:?}",
        frames.len(),
        frames.first().and_then(|f| f.body_str("OperationName"))
    );

    drop(conn);
    drop(agent);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
