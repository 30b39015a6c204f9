//! The client's everyday path against the test agent: records arrive whole and in
//! order over Unix sockets and TCP, handles are shared, and the client crosses threads.

mod common;

use common::*;
use geneva_audit::agent::TestAgent;
use geneva_audit::{Client, SendError};

fn check_heartbeat(frame: &geneva_audit::agent::ReceivedFrame, destination: &str) {
    assert_eq!(frame.tag, "AsmAuditHB");
    assert_eq!(frame.body_str("AsmAuditServiceId"), Some(STI));
    assert_eq!(frame.body_str("Destination"), Some(destination));
    assert!(frame.body_str("Language").unwrap().starts_with("rust"));
    assert!(frame.body_str("AuditVersion").unwrap().starts_with('v'));
    assert_eq!(
        frame.body_keys(),
        [
            "AsmAuditServiceId",
            "AuditVersion",
            "OsVersion",
            "Language",
            "Destination"
        ]
    );
}

fn happy_path(agent: &TestAgent, client: &Client, destination: &str) {
    send_range(client, 0, 20);
    client.flush(PATIENCE).unwrap();
    let frames = agent.wait_for_frames(21, PATIENCE).unwrap();
    // The heartbeat follows the first record on the connection.
    assert_eq!(seq(&frames[0]), Some(0));
    check_heartbeat(&frames[1], destination);
    assert_eq!(seqs(&frames), (0..20).collect::<Vec<_>>());
    for f in &frames {
        assert_eq!(f.option_str("TimeFormat"), Some("DateTime"));
        assert!(f.connection == 0);
    }
    let f = &frames[2];
    assert_eq!(f.tag, "AsmAuditCP");
    assert_eq!(f.body_str("env_ikey"), Some(STI));
    assert_eq!(f.body_str("OperationName"), Some("Operation1"));
    assert_eq!(f.body_str("CallerIpAddress"), Some("203.0.113.42"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - f.ts).abs() < 300, "timestamp {} is not now", f.ts);
    assert!(agent.errors().is_empty());
    let stats = client.stats();
    assert_eq!((stats.accepted, stats.written, stats.lost), (20, 20, 0));
    assert_eq!(stats.heartbeats_sent, 1);
}

#[test]
fn happy_path_over_unix_socket() {
    let dir = TempDir::new("happy-unix");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    happy_path(&agent, &client, "UnixDomainSocket");
    let report = client.close(PATIENCE);
    assert!(report.clean && report.unsent.is_empty());
    assert_eq!(report.delivered, 20);
}

#[test]
fn happy_path_over_tcp() {
    let agent = TestAgent::tcp("127.0.0.1:0").unwrap();
    let addr = agent.local_addr().unwrap();
    let client = builder().tcp(addr.to_string()).build().unwrap();
    happy_path(&agent, &client, "TCP");
    assert!(client.close(PATIENCE).clean);
}

#[test]
fn dropping_one_handle_keeps_the_client_and_dropping_the_last_drains_it() {
    let dir = TempDir::new("drop");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    let second = client.clone();
    drop(client);
    send_range(&second, 0, 50);
    drop(second);
    let frames = agent.wait_for_frames(51, PATIENCE).unwrap();
    assert_eq!(seqs(&frames), (0..50).collect::<Vec<_>>());
}

#[test]
fn the_client_and_its_errors_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Client>();
    send_sync::<SendError>();
    send_sync::<geneva_audit::Record>();
    send_sync::<geneva_audit::Notification>();
}
