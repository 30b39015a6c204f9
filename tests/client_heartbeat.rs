//! Heartbeats: when they are sent, how often, and that a failed one holds nothing up.

mod common;

use std::time::{Duration, Instant};

use common::*;
use geneva_audit::Event;
use geneva_audit::agent::TestAgent;

#[test]
fn heartbeats_repeat_while_connected() {
    let dir = TempDir::new("heartbeat");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder()
        .unix_socket(dir.socket())
        .heartbeat_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    client.try_send(record(0)).unwrap();
    agent
        .wait_for("four heartbeats", PATIENCE, |s| s.frames >= 5)
        .unwrap();
    let frames = agent.frames();
    assert_eq!(seq(&frames[0]), Some(0));
    assert!(frames[1..].iter().all(|f| f.tag == "AsmAuditHB"));
    client.close(PATIENCE);
}

#[test]
fn no_heartbeat_before_the_first_record() {
    let dir = TempDir::new("no-heartbeat");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder()
        .unix_socket(dir.socket())
        .heartbeat_interval(Duration::from_millis(1))
        .wait_for_connection(true)
        .build()
        .unwrap();
    agent.wait_for_connections(1, PATIENCE).unwrap();
    client.flush(PATIENCE).unwrap();
    assert!(agent.frames().is_empty());
    client.close(PATIENCE);
}

#[test]
fn a_heartbeat_that_could_not_be_written_does_not_hold_up_flush() {
    let dir = TempDir::new("stale-heartbeat");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder()
        .unix_socket(dir.socket())
        .replay_unread(false)
        .heartbeat_interval(Duration::from_millis(5))
        .build()
        .unwrap();
    let notifications = client.notifications();
    send_range(&client, 0, 1);
    client.flush(PATIENCE).unwrap();
    agent.wait_for_frames(2, PATIENCE).unwrap();
    agent.kill();
    // A heartbeat comes due and its write fails, or the writer finds the agent gone
    // first: either way the client is left with nothing to write.
    loop {
        let n = notifications
            .recv_timeout(PATIENCE)
            .expect("the agent's end noticed");
        if matches!(n.event, Event::WriteFailed { .. } | Event::AgentLeft { .. }) {
            break;
        }
    }
    let started = Instant::now();
    client.flush(PATIENCE).unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let started = Instant::now();
    let report = client.close(PATIENCE);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(report.unsent.is_empty());
    // A failed write was a heartbeat's (nothing else was written): counted dropped.
    let s = report.stats;
    assert!(s.write_errors == 0 || s.heartbeats_dropped >= 1, "{s:?}");
}
