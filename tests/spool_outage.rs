//! The spool through an outage. A process killed during it loses nothing the writer
//! held: once the agent has been away for the offline grace, the records written and
//! not read, and those not yet written, go to the spool in their place in the order
//! (docs/SPOOL.md, What a kill costs). And close without a connection keeps what is
//! left on disk at once.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use geneva_audit::Record;
use geneva_audit::agent::TestAgent;

const N: u64 = 2_000;

fn big(n: u64) -> Record {
    record(n).custom("blob", "x".repeat(700))
}

/// Run by the test below in a child process: sends N records into the agent at
/// `SPOOL_OUTAGE_DIR`, then reports its counts every few milliseconds until killed.
#[test]
#[ignore = "run by a_process_killed_during_an_outage_loses_none_of_what_its_writer_held"]
fn child_sending_through_an_outage_until_killed() {
    let Ok(dir) = std::env::var("SPOOL_OUTAGE_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let client = builder()
        .unix_socket(dir.join("agent.sock"))
        .spool(dir.join("spool"))
        .build()
        .unwrap();
    for n in 0..N {
        client.send_timeout(big(n), PATIENCE).unwrap();
    }
    loop {
        let s = client.stats();
        println!("spooled {} delivered {}", s.spooled, s.delivered);
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_process_killed_during_an_outage_loses_none_of_what_its_writer_held() {
    let dir = TempDir::new("spool-outage-kill");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    // A slow agent: the socket fills, and the writer holds what the kernel holds.
    agent.set_read_rate(Some(100_000));
    let (mut child, lines) = child_test(
        "child_sending_through_an_outage_until_killed",
        "SPOOL_OUTAGE_DIR",
        &dir.0,
    );
    // Its lines: "spooled S delivered D".
    let counts = |line: String| -> Option<(u64, u64)> {
        let mut words = line.split_whitespace().skip(1).step_by(2);
        Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
    };
    // The agent dies with records unread a few hundred records in.
    agent.wait_for_frames(200, PATIENCE).unwrap();
    agent.kill();
    let read_by_first: Vec<u64> = seqs(&agent.frames());
    // Past the grace, every record is delivered or on disk.
    let deadline = Instant::now() + PATIENCE;
    let mut last = (0, 0);
    while last.0 + last.1 < N {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => last = counts(line).unwrap_or(last),
            Err(e) => {
                panic!("the child never had every record delivered or spooled: {last:?} ({e})")
            }
        }
    }
    // SIGKILL: no close, no destructor.
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder()
        .unix_socket(dir.socket())
        .spool(dir.0.join("spool"))
        .build()
        .unwrap();
    let want: HashSet<u64> = (0..N).collect();
    let mut got: HashSet<u64> = read_by_first.iter().copied().collect();
    wait_until("every record read by one agent or the other", || {
        got.extend(seqs(&agent.frames()));
        got.is_superset(&want)
    });
    // In order: what the second agent got starts where the first left off.
    let second = first_arrivals(&seqs(&agent.frames()), &mut HashSet::new()).0;
    let first_missing = (0..N).find(|n| !read_by_first.contains(n)).unwrap_or(N);
    let resumed: Vec<u64> = second.into_iter().filter(|&n| n >= first_missing).collect();
    assert_consecutive(&resumed, first_missing, N);
    client.close(PATIENCE);
}

/// SPOOL.md, Close: without a connection, what close cannot deliver goes to the spool
/// at once, not at the deadline.
#[test]
fn close_without_a_connection_keeps_the_records_on_disk_at_once() {
    let dir = TempDir::new("spool-close-offline");
    let client = builder()
        .unix_socket(dir.socket())
        .spool(dir.0.join("spool"))
        .build()
        .unwrap();
    for n in 0..10 {
        client.try_send(record(n)).unwrap();
    }
    let deadline = Duration::from_secs(60);
    let (report, took) = within("close", PATIENCE, move || client.close(deadline));
    assert!(
        took < deadline / 2,
        "close took {took:?} of its {deadline:?}"
    );
    assert_eq!((report.spooled, report.unsent.len()), (10, 0), "{report:?}");

    let agent = TestAgent::unix(dir.socket()).unwrap();
    let next = builder()
        .unix_socket(dir.socket())
        .spool(dir.0.join("spool"))
        .build()
        .unwrap();
    next.flush(PATIENCE).unwrap();
    let frames = agent.wait_for_frames(11, PATIENCE).unwrap();
    assert_consecutive(&seqs(&frames), 0, 10);
    next.close(PATIENCE);
}
