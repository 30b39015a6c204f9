//! How long `close` takes to confirm a full socket send buffer against an agent that
//! reads: the agent stops reading, the client fills the buffer (1 MiB asked for, which
//! Linux doubles), the agent reads again and `close` waits until everything is read.
//!
//! ```sh
//! cargo run --release --example close_probe -- [rounds]
//! ```

use std::time::{Duration, Instant};

use geneva_audit::agent::TestAgent;
use geneva_audit::{
    CallerIdentityType, Client, OperationCategory, OperationResult, OperationType, Record,
};

fn record(n: u64) -> Record {
    Record::data_plane()
        .caller_ip("203.0.113.42".parse().expect("an address"))
        .add_caller_identity(CallerIdentityType::Upn, "alice@contoso.com", "user")
        .add_operation_category(OperationCategory::ResourceManagement)
        .add_target_resource("SubscriptionId", "4bb12743-2418-427f-92ae-96a11a4044fe")
        .add_caller_access_level("Contributor")
        .operation_access_level("Contributor")
        .caller_agent("close-probe")
        .operation_name(format!("Operation{n}"))
        .operation_type(OperationType::Read)
        .operation_result(OperationResult::Success)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: u32 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(5);
    let dir = std::env::temp_dir().join(format!("ga-close-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("agent.sock");
    for round in 0..rounds {
        let agent = TestAgent::unix(&path)?;
        let client = Client::builder("e6c9fcb1-7f08-4c1d-9e7a-123456789abc")
            .unix_socket(&path)
            .wait_for_connection(true)
            .build()?;
        client.try_send(record(0)).map_err(|e| e.to_string())?;
        client.flush(Duration::from_secs(10))?;
        agent.stop_reading();
        // Fill the buffer: send until the writer has not written anything for 100 ms.
        let mut n = 1;
        let mut last = (0, Instant::now());
        while last.1.elapsed() < Duration::from_millis(100) {
            if client.try_send(record(n)).is_ok() {
                n += 1;
            }
            let written = client.stats().written;
            if written != last.0 {
                last = (written, Instant::now());
            }
        }
        let s = client.stats();
        let unread = s.bytes_written as f64 * s.in_flight as f64 / s.written.max(1) as f64;
        agent.resume_reading();
        let started = Instant::now();
        let report = client.close(Duration::from_secs(30));
        let took = started.elapsed();
        println!(
            "round {round}: close confirmed {} records in flight (about {:.2} MiB unread) and \
             {} queued in {took:?}; delivered {}, handed back {}",
            s.in_flight,
            unread / (1024.0 * 1024.0),
            s.pending,
            report.delivered,
            report.unsent.len()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
