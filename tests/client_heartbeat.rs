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
    // An absence needs a window to be seen in: 200 heartbeat intervals, connected.
    let frame_came = agent.wait_for("a frame", Duration::from_millis(200), |s| s.frames > 0);
    assert!(frame_came.is_err(), "{:?}", agent.frames());
    assert_eq!(client.stats().heartbeats_sent, 0);
    // The same connection does send them once a record went: the window could see one.
    client.try_send(record(0)).unwrap();
    let frames = agent.wait_for_frames(3, PATIENCE).unwrap();
    assert_eq!(seq(&frames[0]), Some(0));
    assert!(frames[1..].iter().all(|f| f.tag == "AsmAuditHB"));
    client.close(PATIENCE);
}

#[test]
fn a_heartbeat_that_could_not_be_written_does_not_hold_up_flush() {
    use std::io::Read;
    use std::os::unix::net::UnixListener;
    // An agent of our own that reads everything, then shuts down its reading side: the
    // connection still looks alive to the client (nothing to read, nothing unread), but
    // the next write on it, a heartbeat's, fails with EPIPE.
    let dir = TempDir::new("stale-heartbeat");
    let listener = UnixListener::bind(dir.socket()).unwrap();
    let client = builder()
        .unix_socket(dir.socket())
        .replay_unread(false)
        .heartbeat_interval(Duration::from_millis(5))
        .build()
        .unwrap();
    let notifications = client.notifications();
    let (socket, _) = listener.accept().unwrap();
    let reader = {
        let mut socket = socket.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            // Ends when the reading side is shut down (read returns 0).
            while socket.read(&mut buf).is_ok_and(|n| n > 0) {}
        })
    };
    send_range(&client, 0, 1);
    client.flush(PATIENCE).unwrap();
    wait_until("a heartbeat read", || {
        let s = client.stats();
        s.heartbeats_sent >= 1 && s.bytes_written > 0
    });
    socket.shutdown(std::net::Shutdown::Read).unwrap();
    reader.join().unwrap();
    let failure = loop {
        let n = notifications
            .recv_timeout(PATIENCE)
            .expect("the heartbeat's failed write");
        match n.event {
            Event::WriteFailed {
                kind,
                pending_records,
                ..
            } => break (kind, pending_records),
            Event::AgentLeft { .. } => panic!("the agent cannot be seen to leave: {n:?}"),
            _ => {}
        }
    };
    // Nothing but the heartbeat was being written: no record waits for the next
    // connection, and the heartbeat is dropped, not kept.
    assert_eq!(failure, (std::io::ErrorKind::BrokenPipe, 0));
    let started = Instant::now();
    client.flush(PATIENCE).unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let started = Instant::now();
    let report = client.close(PATIENCE);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(report.unsent.is_empty());
    let s = report.stats;
    assert!(s.write_errors >= 1, "{s:?}");
    assert!(s.heartbeats_dropped >= 1, "{s:?}");
    assert_eq!((s.delivered, s.lost), (1, 0), "{s:?}");
    drop(socket);
}
