//! Sends golden's `bench_record` N times through a client on the no-op transport, for
//! the writer's instructions per record without a socket:
//! `valgrind --tool=callgrind target/release/examples/writer_probe N` at two values of
//! N; the difference over the difference of N is the instructions per record, the
//! producer's `send_timeout` included.

#[path = "../benches/support/bench_record.rs"]
mod bench_record;

use std::time::Duration;

use geneva_audit::{Client, Transport};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let record = bench_record::bench_record();
    let client = Client::builder("e6c9fcb1-7f08-4c1d-9e7a-123456789abc")
        .transport(Transport::NoOp)
        .build()?;
    for _ in 0..n {
        client.send_timeout(record.clone(), Duration::from_secs(10))?;
    }
    let report = client.close(Duration::from_secs(10));
    if !report.unsent.is_empty() {
        return Err(format!("{} records unsent", report.unsent.len()).into());
    }
    Ok(())
}
