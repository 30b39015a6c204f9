//! For users of go-otel-audit's hook that sees or changes every record before it is sent:
//! a wrapper of the `Client` whose send calls the hook first. The hook runs on the
//! caller's thread, before validation, so a record it makes invalid is refused at once.
//!
//! ```sh
//! cargo run --example record_hook
//! ```

// The wrapper returns the client's own errors, which hand a refused record back by value
// (boxing it would allocate on the path that must not).
#![allow(clippy::result_large_err)]

use std::time::Duration;

use geneva_audit::agent::TestAgent;
use geneva_audit::{
    CallerIdentityType, Client, OperationCategory, OperationResult, OperationType, Record,
    SendError,
};

/// A client that passes every record through `hook` before queueing it.
struct HookedClient<F> {
    client: Client,
    hook: F,
}

impl<F: Fn(Record) -> Record> HookedClient<F> {
    fn new(client: Client, hook: F) -> Self {
        HookedClient { client, hook }
    }

    fn try_send(&self, record: Record) -> Result<(), SendError> {
        self.client.try_send((self.hook)(record))
    }

    fn send_timeout(&self, record: Record, timeout: Duration) -> Result<(), SendError> {
        self.client.send_timeout((self.hook)(record), timeout)
    }

    /// The client itself, for `close`, `flush`, `stats` and `notifications`.
    fn client(&self) -> &Client {
        &self.client
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("geneva-audit-hook-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("agent.sock");
    let agent = TestAgent::unix(&socket)?;

    let client = Client::builder("e6c9fcb1-7f08-4c1d-9e7a-123456789abc")
        .unix_socket(&socket)
        .build()?;
    // The hook sees every record and may change it: here it names the deployment.
    let audit = HookedClient::new(client, |record: Record| {
        println!("sending {}", record.get_operation_name());
        record.custom("Deployment", "westeurope-2")
    });

    // A per-request template: cloning it is cheap.
    let template = Record::data_plane()
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
        .caller_agent("azure-cli/2.61.0")
        .operation_result(OperationResult::Success);

    let listed = template
        .clone()
        .operation_name("ListStorageAccounts")
        .operation_type(OperationType::Read);
    match audit.try_send(listed) {
        Ok(()) => {}
        // The hook has run once already; the record handed back carries its change.
        Err(SendError::QueueFull(record)) => audit
            .client()
            .send_timeout(record, Duration::from_millis(100))?,
        Err(e) => return Err(e.into()),
    }
    // Through the wrapper, with its own deadline.
    let read = template
        .operation_name("GetStorageAccount")
        .operation_type(OperationType::Read);
    audit.send_timeout(read, Duration::from_millis(100))?;

    let report = audit.client().close(Duration::from_secs(5));
    // Two records and the heartbeat that follows the first record on a connection.
    let frames = agent.wait_for_frames(3, Duration::from_secs(10))?;
    for frame in &frames {
        if let Some(name) = frame.body_str("OperationName") {
            let deployment = frame.custom("Deployment");
            println!("the agent read {name} with Deployment {deployment:?}");
        }
    }
    println!("unsent: {}", report.unsent.len());

    drop(agent);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
