//! The spool's figures, each against the direct path in the same run (docs/SPOOL.md):
//!
//! * direct: records/s into a test agent, without a spool and with one that stays idle;
//!   `try_send`'s latency both ways;
//! * spill: records/s into the spool while no agent is there;
//! * drain: records/s out of the spool once the agent is back;
//! * bytes on disk per record, against the frame's size.
//!
//! `cargo run --release --example spool_probe -- 200000`

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use geneva_audit::agent::TestAgent;
use geneva_audit::{
    CallerIdentityType, Client, OperationCategory, OperationResult, OperationType, Record,
    SendError,
};

const ID: &str = "e6c9fcb1-7f08-4c1d-9e7a-123456789abc";

fn record(n: u64) -> Record {
    Record::data_plane()
        .caller_ip(std::net::Ipv4Addr::new(203, 0, 113, 42).into())
        .add_caller_identity(
            CallerIdentityType::Upn,
            "alice@contoso.com",
            "signed-in user",
        )
        .add_caller_access_level("Contributor")
        .operation_access_level("Contributor")
        .caller_agent("azure-cli/2.61.0")
        .add_operation_category(OperationCategory::ResourceManagement)
        .add_target_resource("SubscriptionId", "4bb12743-2418-427f-92ae-96a11a4044fe")
        .operation_name(format!("Operation{n}"))
        .operation_type(OperationType::Read)
        .operation_result(OperationResult::Success)
}

fn client(socket: &Path, spool: Option<&Path>, queue: usize) -> Result<Client, Box<dyn Error>> {
    let mut b = Client::builder(ID)
        .unix_socket(socket)
        .queue_capacity(queue);
    if let Some(dir) = spool {
        b = b.spool(dir);
    }
    Ok(b.build()?)
}

/// Sends `n` records, waiting for room when the queue is full; returns the `try_send`
/// latencies of the calls that were accepted at once.
fn send(client: &Client, n: u64, records: &[Record]) -> Result<Vec<Duration>, Box<dyn Error>> {
    let mut lat = Vec::with_capacity(n as usize);
    for i in 0..n {
        let r = records[(i as usize) % records.len()].clone();
        let t = Instant::now();
        match client.try_send(r) {
            Ok(()) => lat.push(t.elapsed()),
            Err(SendError::QueueFull(back)) => {
                client.send_timeout(back, Duration::from_secs(60))?
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(lat)
}

fn pct(lat: &mut [Duration], p: f64) -> Duration {
    lat.sort_unstable();
    lat.get(((lat.len().saturating_sub(1)) as f64 * p) as usize)
        .copied()
        .unwrap_or_default()
}

fn wait(what: &str, mut cond: impl FnMut() -> bool) -> Result<(), Box<dyn Error>> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !cond() {
        if Instant::now() > deadline {
            return Err(format!("{what}: timed out").into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let dir: PathBuf = std::env::temp_dir().join(format!("ga-spool-probe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("agent.sock");
    let records: Vec<Record> = (0..1000).map(record).collect();

    // The direct path, without a spool and with an idle one, three times each, interleaved.
    for round in 0..3 {
        for with_spool in [false, true] {
            let agent = TestAgent::unix(&socket)?;
            let spool = dir.join(format!("idle-{round}"));
            // A queue that never gets half full, even if all `n` are queued before the
            // first connect: the spool stays idle (the writer spills only past half a
            // queue, or after a second without a connection).
            let c = client(
                &socket,
                with_spool.then_some(spool.as_path()),
                4 * n as usize,
            )?;
            let t = Instant::now();
            let mut lat = send(&c, n, &records)?;
            c.flush(Duration::from_secs(300))?;
            let took = t.elapsed();
            let s = c.close(Duration::from_secs(10)).stats;
            println!(
                "direct, {}: {:.0} records/s; try_send p50 {:?} p99 {:?}; {} of {n} went through the spool ({} connects, {} failed, {} write errors)",
                if with_spool { "idle spool" } else { "no spool" },
                n as f64 / took.as_secs_f64(),
                pct(&mut lat, 0.5),
                pct(&mut lat, 0.99),
                s.spooled,
                s.connects,
                s.connect_failures,
                s.write_errors,
            );
            drop(agent);
        }
    }

    // Spill with no agent, then drain to one.
    let spool = dir.join("spill");
    let c = client(&socket, Some(&spool), 16_384)?;
    // The writer keeps what it took in its first second without an agent in memory
    // (`OFFLINE_GRACE`): send until spilling has begun, then time `n` more.
    let mut warm = 0u64;
    while c.stats().spooled == 0 {
        let r = records[(warm as usize) % records.len()].clone();
        if c.send_timeout(r, Duration::from_secs(60)).is_ok() {
            warm += 1;
        }
        std::thread::yield_now();
    }
    wait("spill warm-up", || c.stats().queue_len == 0)?;
    let base = c.stats().spooled;
    let t = Instant::now();
    for i in 0..n {
        let r = records[(i as usize) % records.len()].clone();
        if let Err(SendError::QueueFull(back)) = c.try_send(r) {
            c.send_timeout(back, Duration::from_secs(60))?;
        }
    }
    wait("spill", || c.stats().spooled >= base + n)?;
    let spill = t.elapsed();
    let on_disk = c.stats().spool_bytes;
    let agent = TestAgent::unix(&socket)?;
    let t = Instant::now();
    let total = n + warm;
    wait("drain", || c.stats().delivered >= total)?;
    let drain = t.elapsed();
    let s = c.close(Duration::from_secs(10)).stats;
    println!(
        "spill (no agent): {:.0} records/s",
        n as f64 / spill.as_secs_f64()
    );
    println!(
        "drain (agent back): {:.0} records/s",
        total as f64 / drain.as_secs_f64()
    );
    println!(
        "on disk: {:.1} bytes per record, frames {:.1} bytes on the wire ({} frames read by the agent)",
        on_disk as f64 / (base + n) as f64,
        s.bytes_written as f64 / s.written.max(1) as f64,
        agent.frames().len()
    );
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
