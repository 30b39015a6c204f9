//! The client against the test agent: real sockets, real threads, frames decoded by
//! rmpv on the agent's side.

mod common;

use std::time::{Duration, Instant};

use common::*;
use geneva_audit::agent::TestAgent;
use geneva_audit::{
    BuildError, Client, ClientBuilder, Event, FlushError, LossReason, MemorySink, SendError,
    Transport, ValidationError,
};

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
    assert_eq!(report.written, 20);
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
fn a_full_queue_refuses_at_once_and_hands_the_record_back() {
    let (_dir, agent, client) = stalled("full");
    // The socket buffers absorb some frames; then the writer blocks and the queue fills.
    let mut accepted = 0u64;
    loop {
        let r = record(accepted);
        match client.try_send(r.clone()) {
            Ok(()) => accepted += 1,
            result => {
                expect_full(result, &r);
                break;
            }
        }
        assert!(accepted < 1_000_000, "the queue never filled");
    }
    let stats = client.stats();
    assert_eq!(stats.refused_full, 1);
    // (The writer may have taken one more off the queue since.)
    assert!(stats.queue_len >= 15, "{stats:?}");
    // Once the agent reads again, everything accepted arrives, in order.
    agent.resume_reading();
    client.flush(PATIENCE).unwrap();
    let frames = agent
        .wait_for_frames(accepted as usize + 1, PATIENCE)
        .unwrap();
    assert_eq!(seqs(&frames), (0..accepted).collect::<Vec<_>>());
    client.close(PATIENCE);
}

#[test]
fn records_queue_while_the_agent_is_absent_and_arrive_in_order() {
    let dir = TempDir::new("absent");
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    let notifications = client.notifications();
    send_range(&client, 0, 100);
    // The supervisor reports the failures, naming the path and the OS error.
    let n = notifications.recv_timeout(PATIENCE).unwrap();
    match n.event {
        Event::ConnectFailed {
            destination, kind, ..
        } => {
            assert!(destination.contains(dir.socket().to_str().unwrap()));
            assert_eq!(kind, std::io::ErrorKind::NotFound);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        client.flush(Duration::from_millis(50)),
        Err(FlushError::Timeout { pending: 100 })
    ));
    let agent = TestAgent::unix(dir.socket()).unwrap();
    client.flush(PATIENCE).unwrap();
    let frames = agent.wait_for_frames(101, PATIENCE).unwrap();
    assert_eq!(seqs(&frames), (0..100).collect::<Vec<_>>());
    let stats = client.stats();
    assert!(stats.connect_failures >= 1);
    assert_eq!(stats.connects, 1);
    client.close(PATIENCE);
}

#[test]
fn building_can_wait_for_the_agent() {
    let dir = TempDir::new("wait");
    let err = builder()
        .unix_socket(dir.socket())
        .wait_for_connection(true)
        .connect_timeout(Duration::from_millis(200))
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::Connect(_)), "{err}");
    let _agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder()
        .unix_socket(dir.socket())
        .wait_for_connection(true)
        .build()
        .unwrap();
    assert_eq!(client.stats().connects, 1);
}

#[test]
fn agent_restarted_between_bursts_loses_nothing_of_the_next_burst() {
    let dir = TempDir::new("restart");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    let notifications = client.notifications();
    let mut seen = std::collections::HashSet::new();
    for round in 0..3u64 {
        let from = round * 100;
        send_range(&client, from, 100);
        client.flush(PATIENCE).unwrap();
        wait_until("the burst's last record", || {
            seqs(&agent.frames()).contains(&(from + 99))
        });
        let frames = agent.take_frames();
        // The new connection may begin with records of the last burst that the client
        // could not know were read (the unread-tail replay): duplicates, never gaps.
        let (first, dups) = first_arrivals(&seqs(&frames), &mut seen);
        assert_consecutive(&first, from, from + 100);
        assert!(frames.iter().all(|f| f.connection == round));
        println!("round {round}: {dups} duplicates replayed");
        // Between bursts, kill the agent (the socket file goes away) and bring it back.
        // (Not after the last: the client could notice that death at any moment, and
        // the counters below would race with it.)
        if round < 2 {
            agent.kill();
            agent.restart().unwrap();
        }
    }
    let stats = client.stats();
    // Each of the two deaths failed the connection (found by a write, or by the idle
    // writer's look at the socket) and the records went again on a new connection.
    assert!((2..=4).contains(&stats.write_errors), "{stats:?}");
    assert_eq!(stats.connects, 3);
    assert_eq!(stats.written, 300);
    // The first connection is announced as such, the two after it as reconnections.
    let reconnects: Vec<bool> = notifications
        .try_iter()
        .filter_map(|n| match n.event {
            Event::Connected { reconnect, .. } => Some(reconnect),
            _ => None,
        })
        .collect();
    assert_eq!(reconnects, [false, true, true]);
    client.close(PATIENCE);
}

#[test]
fn agent_killed_mid_burst_loses_nothing() {
    let dir = TempDir::new("mid-burst");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    const N: u64 = 20_000;
    let sender = {
        let client = client.clone();
        std::thread::spawn(move || send_range(&client, 0, N))
    };
    agent
        .wait_for("some frames", PATIENCE, |s| s.total_frames >= 2_000)
        .unwrap();
    agent.kill();
    let old = agent.take_frames();
    agent.restart().unwrap();
    sender.join().unwrap();
    client.flush(PATIENCE).unwrap();
    wait_until("the last record", || {
        seqs(&agent.frames()).last() == Some(&(N - 1))
    });
    let new = agent.frames();
    let mut seen = std::collections::HashSet::new();
    // What the dead agent read is a prefix, in order.
    let (old_first, _) = first_arrivals(&seqs(&old), &mut seen);
    assert_consecutive(&old_first, 0, old_first.len() as u64);
    // The new connection starts with what the dead agent may not have read (the replay)
    // and then every later record: nothing is missing and first arrivals keep order.
    let (new_first, dups) = first_arrivals(&seqs(&new), &mut seen);
    assert_consecutive(&new_first, old_first.len() as u64, N);
    let stats = client.close(PATIENCE).stats;
    println!(
        "killed after {} frames read; {} replayed, {dups} of them already read",
        old_first.len(),
        stats.replayed
    );
    assert_eq!((stats.accepted, stats.written, stats.lost), (N, N, 0));
}

#[test]
fn a_write_to_an_agent_that_never_reads_times_out_and_reconnects() {
    let (_dir, _agent, client) = stalled_with("never-reads", |b| {
        b.queue_capacity(64)
            .write_timeout(Duration::from_millis(100))
    });
    let notifications = client.notifications();
    // Keep offering records until the socket buffers are full, a write times out and
    // the client drops the connection (records refused as QueueFull are not accepted).
    let mut n = 0u64;
    wait_until("a timed-out write", || {
        if client.try_send(record(n)).is_ok() {
            n += 1;
        }
        notifications.try_iter().any(|n| {
            matches!(
                n.event,
                Event::WriteFailed {
                    kind: std::io::ErrorKind::TimedOut,
                    ..
                }
            )
        })
    });
    wait_until("a reconnection", || client.stats().connects >= 2);
    // The agent still reads nothing: close gives up at its deadline.
    let s = client.close(Duration::from_millis(300)).stats;
    assert_eq!(s.accepted, s.written + s.lost);
    assert!(s.write_errors >= 1);
}

#[test]
fn close_keeps_its_deadline_with_the_writer_blocked_and_hands_back_the_rest() {
    let (_dir, _agent, client) = stalled_with("blocked", |b| {
        b.queue_capacity(64).write_timeout(Duration::from_secs(60))
    });
    // Fill the socket buffers and then the queue, until the queue stays full for 50 ms:
    // the writer is blocked in a write.
    let n = fill_until_blocked(&client);
    let started = Instant::now();
    let report = client.close(Duration::from_secs(1));
    let took = started.elapsed();
    println!(
        "close(1 s) took {took:?} and handed back {}",
        report.unsent.len()
    );
    assert!(took < Duration::from_millis(1500), "close took {took:?}");
    assert!(report.clean);
    let s = report.stats;
    assert_eq!(s.accepted, n);
    assert_eq!(s.accepted, s.written + s.lost);
    assert_eq!(s.lost, report.unsent.len() as u64);
    assert!(report.unsent.len() >= 64);
    // Handed back in the order they were accepted, starting after the last written.
    let names: Vec<String> = report
        .unsent
        .iter()
        .map(|r| r.get_operation_name().to_owned())
        .collect();
    let expected: Vec<String> = (s.written..n).map(|i| format!("Operation{i}")).collect();
    assert_eq!(names, expected);
}

#[test]
fn invalid_and_oversized_records_are_refused_and_nothing_is_sent() {
    let dir = TempDir::new("invalid");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder()
        .unix_socket(dir.socket())
        .max_frame_size(700)
        .build()
        .unwrap();
    let bad = record(1).operation_name("");
    match client.try_send(bad.clone()) {
        Err(SendError::Invalid(ValidationError::MissingOperationName, back)) => {
            assert_eq!(back, bad)
        }
        other => panic!("{other:?}"),
    }
    let big = record(2).custom("blob", "x".repeat(1000));
    match client.try_send(big.clone()) {
        Err(SendError::TooLarge {
            size,
            max: 700,
            record,
        }) => {
            assert!(size > 1000);
            assert_eq!(record, big);
        }
        other => panic!("{other:?}"),
    }
    // send_timeout refuses them the same way, at once.
    match client.send_timeout(bad.clone(), PATIENCE) {
        Err(SendError::Invalid(ValidationError::MissingOperationName, back)) => {
            assert_eq!(back, bad)
        }
        other => panic!("{other:?}"),
    }
    match client.send_timeout(big.clone(), PATIENCE) {
        Err(SendError::TooLarge { record, .. }) => assert_eq!(record, big),
        other => panic!("{other:?}"),
    }
    client.flush(PATIENCE).unwrap();
    client.close(PATIENCE);
    assert!(agent.frames().is_empty());
    let s = client.stats();
    assert_eq!(
        (s.refused_invalid, s.refused_too_large, s.accepted),
        (2, 2, 0)
    );
}

#[test]
fn send_timeout_that_finds_no_room_in_time_hands_the_record_back_as_queue_full() {
    let (_dir, _agent, client) = stalled("timeout-full");
    fill_until_blocked(&client);
    let before = client.stats().refused_full;
    let r = record(1_000_000);
    let started = Instant::now();
    match client.send_timeout(r.clone(), Duration::from_millis(200)) {
        Err(SendError::QueueFull(back)) => assert_eq!(back, r),
        other => panic!("expected QueueFull, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(client.stats().refused_full, before + 1);
    client.close(Duration::ZERO);
}

#[test]
fn defaults_hold_2048_records_and_frames_of_one_mebibyte() {
    // The agent is absent: the writer takes what fits one batch and waits for a
    // connection, so the queue itself fills.
    let dir = TempDir::new("defaults");
    let client = Client::builder(STI)
        .unix_socket(dir.socket())
        .build()
        .unwrap();
    let mut n = 0;
    while client.try_send(record(n)).is_ok() {
        n += 1;
        assert!(n < 100_000, "the queue never filled");
    }
    assert_eq!(client.stats().queue_len, 2048);
    let big = record(0).custom("blob", "x".repeat(1024 * 1024));
    match client.try_send(big) {
        Err(SendError::TooLarge { max, .. }) => assert_eq!(max, 1024 * 1024),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let config = format!("{:?}", Client::builder(STI));
    for default in [
        "connect_timeout: 10s",
        "write_timeout: 15s",
        "heartbeat_interval: 1800s",
        "drop_timeout: 5s",
    ] {
        assert!(config.contains(default), "{default} not in {config}");
    }
    client.close(Duration::ZERO);
}

#[test]
fn notifications_carry_what_failed_and_when() {
    let sink = MemorySink::new();
    let client = builder()
        .transport(Transport::Memory(sink.clone()))
        .build()
        .unwrap();
    let notifications = client.notifications();
    sink.fail_writes(std::io::ErrorKind::BrokenPipe);
    let before = std::time::SystemTime::now();
    send_range(&client, 0, 3);
    let failed = loop {
        let n = notifications.recv_timeout(PATIENCE).expect("WriteFailed");
        if !matches!(n.event, Event::Connected { .. }) {
            break n;
        }
    };
    match failed.event {
        Event::WriteFailed {
            kind,
            pending_records,
            ..
        } => {
            assert_eq!(kind, std::io::ErrorKind::BrokenPipe);
            // The first write carried the first frame only; all three were pending.
            assert!((1..=3).contains(&pending_records), "{pending_records}");
        }
        other => panic!("expected WriteFailed, got {other:?}"),
    }
    let after = std::time::SystemTime::now();
    assert!(before <= failed.at && failed.at <= after, "{:?}", failed.at);
    // Close hands back what never got through, and says so: lost at close.
    let report = client.close(Duration::from_millis(200));
    assert_eq!(report.unsent, (0..3).map(record).collect::<Vec<_>>());
    assert!(notifications.try_iter().any(|n| matches!(
        n.event,
        Event::RecordsLost {
            count: 3,
            reason: LossReason::Closed
        }
    )));
    sink.heal();
}

#[test]
fn closing_refuses_later_records_and_is_idempotent() {
    let sink = MemorySink::new();
    let client = builder()
        .transport(Transport::Memory(sink.clone()))
        .build()
        .unwrap();
    let other_handle = client.clone();
    send_range(&client, 0, 10);
    let report = client.close(PATIENCE);
    assert_eq!(report.written, 10);
    assert!(report.unsent.is_empty());
    let r = record(11);
    match other_handle.try_send(r.clone()) {
        Err(SendError::Closed(back)) => assert_eq!(back, r),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        other_handle.flush(PATIENCE),
        Err(FlushError::Closed)
    ));
    let again = other_handle.close(PATIENCE);
    assert!(again.unsent.is_empty());
    assert_eq!(again.written, 10);
    assert!(!sink.bytes().is_empty());
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
fn unread_notifications_are_discarded_oldest_first_and_counted() {
    let dir = TempDir::new("notify");
    let client = builder()
        .unix_socket(dir.socket())
        .notification_capacity(2)
        .build()
        .unwrap();
    wait_until("discarded notifications", || {
        client.stats().notifications_dropped >= 4
    });
    // The ones kept are the latest: consecutive failures, not the first ones. (The
    // supervisor keeps failing while we read, so one more may slip in.)
    let kept: Vec<u32> = client
        .notifications()
        .try_iter()
        .filter_map(|n| match n.event {
            Event::ConnectFailed { failures, .. } => Some(failures),
            _ => None,
        })
        .collect();
    assert!(kept.len() >= 2, "{kept:?}");
    assert!(kept[0] >= 5, "{kept:?}");
    assert!(kept.windows(2).all(|w| w[1] == w[0] + 1), "{kept:?}");
    client.close(Duration::ZERO);
}

#[test]
fn a_service_tree_id_is_required() {
    let err = Client::builder(" ").build().unwrap_err();
    assert!(matches!(
        err,
        BuildError::ServiceTreeId(ValidationError::MissingServiceTreeId)
    ));
}

/// Sends 200 records to an agent that reads none of them, kills it (the kernel discards
/// what it had not read), restarts it and sends one more: returns the records the new
/// agent received, and the stats.
fn crash_with_unread_data(replay: bool) -> (Vec<u64>, geneva_audit::Stats) {
    // Reading stops before the client connects: a reader already waiting in `read`
    // would take (and hold back) up to 64 KiB, which the kernel then counts as read and
    // the killed agent keeps (seen once in four runs at 8 test threads).
    let (_dir, agent, client) = stalled_with("unread", |b| b.replay_unread(replay));
    send_range(&client, 0, 200);
    client.flush(PATIENCE).unwrap();
    assert_eq!(client.stats().written, 200);
    agent.kill();
    agent.take_frames();
    agent.resume_reading();
    agent.restart().unwrap();
    send_range(&client, 200, 1);
    client.flush(PATIENCE).unwrap();
    let want = if replay { 201 } else { 1 };
    agent
        .wait_for("the records after the crash", PATIENCE, |s| s.frames > want)
        .unwrap();
    let stats = client.close(PATIENCE).stats;
    (seqs(&agent.frames()), stats)
}

#[test]
fn records_the_crashed_agent_never_read_are_written_again() {
    let (received, stats) = crash_with_unread_data(true);
    assert_consecutive(&received, 0, 201);
    assert_eq!(stats.replayed, 200);
    // Counted once each: the replay is not a second write in the counters.
    assert_eq!((stats.accepted, stats.written, stats.lost), (201, 201, 0));
}

#[test]
fn without_the_replay_a_crash_loses_what_the_agent_had_not_read() {
    let (received, stats) = crash_with_unread_data(false);
    assert_eq!(received, [200]);
    assert_eq!(stats.replayed, 0);
}

#[test]
fn close_cuts_a_long_backoff_short() {
    let dir = TempDir::new("backoff");
    let client = Client::builder(STI)
        .unix_socket(dir.socket())
        .backoff(geneva_audit::Backoff {
            initial: Duration::from_secs(20),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            full_jitter: false,
        })
        .build()
        .unwrap();
    send_range(&client, 0, 5);
    wait_until("a failed attempt", || client.stats().connect_failures >= 1);
    let started = Instant::now();
    let report = client.close(Duration::from_millis(200));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "close took {took:?}");
    assert!(report.clean, "a thread was left behind");
    assert_eq!(report.unsent.len(), 5);
    assert_eq!(report.stats.lost, 5);
}

#[test]
fn the_client_and_its_errors_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Client>();
    send_sync::<SendError>();
    send_sync::<geneva_audit::Record>();
    send_sync::<geneva_audit::Notification>();
}

#[test]
fn an_agent_dying_while_the_client_is_idle_gets_its_unread_records_again() {
    let dir = TempDir::new("idle-death");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    agent.stop_reading();
    // More than one 64 KiB read of the agent's: a reader already waiting in `read` when
    // reading stopped takes up to that much from the kernel (100 records could all go
    // that way, leaving nothing to replay: 1 run in 8 here).
    send_range(&client, 0, 300);
    client.flush(PATIENCE).unwrap();
    agent.kill();
    agent.resume_reading();
    agent.restart().unwrap();
    // No further record: the idle writer finds the peer gone on its own. (The frames the
    // agent's reader took before it was paused stay with the killed agent, and come
    // again with the replay.)
    wait_until("the unread records, replayed", || {
        seqs(&agent.frames()).last() == Some(&299)
    });
    let mut seen = std::collections::HashSet::new();
    let (first, _) = first_arrivals(&seqs(&agent.frames()), &mut seen);
    assert_consecutive(&first, 0, 300);
    let s = client.close(PATIENCE).stats;
    assert_eq!((s.accepted, s.written, s.lost), (300, 300, 0));
    assert!(s.replayed > 0);
}

#[test]
fn closing_after_the_agent_died_hands_back_what_it_never_read() {
    let dir = TempDir::new("dead-close");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    let notifications = client.notifications();
    agent.stop_reading();
    // More than one 64 KiB read of the agent's: a reader already waiting in `read` when
    // reading stopped takes at most that much from the kernel; the rest stays there.
    send_range(&client, 0, 200);
    client.flush(PATIENCE).unwrap();
    agent.kill();
    let report = client.close(Duration::from_millis(300));
    // What the agent's reader had taken from the kernel before it was paused counts as
    // received (the killed agent keeps it); everything else comes back, in order.
    let received = seqs(&agent.frames());
    assert_consecutive(&received, 0, received.len() as u64);
    let unsent: Vec<u64> = report
        .unsent
        .iter()
        .map(|r| r.get_operation_name()["Operation".len()..].parse().unwrap())
        .collect();
    // Those the agent read after the client's last look come back too (at least once).
    let first = *unsent.first().expect("something comes back");
    assert!(first <= received.len() as u64, "a gap before {first}");
    assert_consecutive(&unsent, first, 200);
    assert!(
        !unsent.is_empty(),
        "the agent read everything before it was paused"
    );
    let s = report.stats;
    assert_eq!(s.accepted, 200);
    assert_eq!(s.lost, unsent.len() as u64);
    assert_eq!(s.written + s.lost, 200);
    let lost = s.lost;
    assert!(notifications.try_iter().any(|n| matches!(
        n.event,
        Event::RecordsLost { count, .. } if count == lost
    )));
}

#[test]
fn huge_timeouts_and_intervals_mean_no_limit_not_a_panic() {
    let dir = TempDir::new("huge");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder()
        .unix_socket(dir.socket())
        .heartbeat_interval(Duration::MAX)
        .drop_timeout(Duration::MAX)
        .build()
        .unwrap();
    client.send_timeout(record(0), Duration::MAX).unwrap();
    client.flush(Duration::MAX).unwrap();
    agent.wait_for_frames(2, PATIENCE).unwrap();
    let report = client.close(Duration::MAX);
    assert!(report.clean);
    assert_eq!(report.written, 1);
}

#[test]
fn timeouts_the_kernel_would_read_as_forever_are_refused() {
    let err = Client::builder(STI)
        .write_timeout(Duration::from_nanos(500))
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::Config(_)), "{err}");
}

#[test]
fn an_agent_that_drops_every_connection_is_not_reconnected_to_in_a_hot_loop() {
    let dir = TempDir::new("crash-loop");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    agent.set_refuse_connections(true);
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    send_range(&client, 0, 20);
    // The passage of time is what is measured here: a second of a crash-looping agent.
    std::thread::sleep(Duration::from_secs(1));
    let s = client.stats();
    // Backoff from 5 ms to 50 ms allows about 25 attempts a second; a hot loop made
    // thousands.
    assert!(s.connects <= 60, "{} connections in a second", s.connects);
    assert!(s.connects >= 3, "the client stopped trying: {s:?}");
    drop(agent);
    client.close(Duration::ZERO);
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
    send_range(&client, 0, 1);
    client.flush(PATIENCE).unwrap();
    agent.wait_for_frames(2, PATIENCE).unwrap();
    agent.kill();
    // A heartbeat comes due, its write fails, the client is left with nothing to write.
    wait_until("a failed write", || client.stats().write_errors >= 1);
    let started = Instant::now();
    client.flush(PATIENCE).unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let started = Instant::now();
    let report = client.close(PATIENCE);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(report.unsent.is_empty());
    // The failed write was a heartbeat's (nothing else was written): counted dropped.
    assert!(report.stats.heartbeats_dropped >= 1, "{:?}", report.stats);
}

#[test]
fn flush_hears_about_close() {
    let dir = TempDir::new("flush-close");
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    send_range(&client, 0, 5);
    let flusher = {
        let client = client.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            (client.flush(PATIENCE), started.elapsed())
        })
    };
    let report = client.close(Duration::from_millis(100));
    assert_eq!(report.unsent.len(), 5);
    let (result, took) = flusher.join().unwrap();
    assert_eq!(result, Err(FlushError::Closed));
    assert!(took < Duration::from_secs(5), "flush took {took:?}");
}

/// The scheduler state (`S` asleep, `R` running) of this process's thread `name`.
fn thread_state(name: &str) -> Option<char> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            return stat.rsplit_once(") ")?.1.chars().next();
        }
    }
    None
}

/// Starts a thread named `name` that sends records numbered from `from` with
/// `send_timeout` until one is refused, and returns once that thread is asleep (waiting
/// for room). The thread returns the refusal, the refused record's number and when.
fn start_waiting_sender(
    client: Client,
    name: &str,
    from: u64,
) -> std::thread::JoinHandle<(SendError, u64, Instant)> {
    let sender = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut n = from;
            loop {
                match client.send_timeout(record(n), PATIENCE) {
                    Ok(()) => n += 1,
                    Err(e) => return (e, n, Instant::now()),
                }
            }
        })
        .unwrap();
    wait_until("the sender to wait for room", || {
        thread_state(name) == Some('S')
    });
    sender
}

/// An agent that reads nothing, and a client with a 16-record queue sending to it.
fn stalled(name: &str) -> (TempDir, TestAgent, Client) {
    stalled_with(name, |b| b.queue_capacity(16))
}

/// An agent that reads nothing, and a client sending to it, built from [`builder`] with
/// `settings` on top.
fn stalled_with(
    name: &str,
    settings: impl FnOnce(ClientBuilder) -> ClientBuilder,
) -> (TempDir, TestAgent, Client) {
    let dir = TempDir::new(name);
    let agent = TestAgent::unix(dir.socket()).unwrap();
    agent.stop_reading();
    let client = settings(builder().unix_socket(dir.socket()))
        .build()
        .unwrap();
    (dir, agent, client)
}

/// Fills a 16-record queue behind an agent that does not read; returns how many the
/// client accepted.
fn fill_queue(client: &Client) -> u64 {
    let mut accepted = 0u64;
    while client.try_send(record(accepted)).is_ok() {
        accepted += 1;
        assert!(accepted < 1_000_000, "the queue never filled");
    }
    accepted
}

#[test]
fn a_sender_waiting_for_room_sleeps_and_everything_arrives_in_order() {
    // More than the socket buffers can absorb, so the sender has to wait.
    const EXTRA: u64 = 5_000;
    let (_dir, agent, client) = stalled("wait-room");
    let accepted = fill_queue(&client);
    let sender = {
        let client = client.clone();
        std::thread::Builder::new()
            .name("waiting-sender".into())
            .spawn(move || send_range(&client, accepted, EXTRA))
            .unwrap()
    };
    // While the agent reads nothing the sender waits; it must sleep, not spin. (A
    // spinning sender would burn most of this window.)
    wait_until("the sender to wait", || {
        thread_state("waiting-sender") == Some('S')
    });
    let window = Instant::now();
    let cpu_before = threads_cpu("waiting-sender");
    while window.elapsed() < Duration::from_millis(300) {
        std::thread::park_timeout(Duration::from_millis(300).saturating_sub(window.elapsed()));
    }
    let cpu = threads_cpu("waiting-sender").saturating_sub(cpu_before);
    assert!(
        thread_state("waiting-sender").is_some(),
        "the sender finished without waiting"
    );
    assert!(
        cpu < Duration::from_millis(60),
        "the waiting sender used {cpu:?}"
    );
    // Once the agent reads, the writer wakes the sender each time it has drained half
    // the queue. (Were those wake-ups missing, each of the sender's hundreds of waits
    // would last its one-second backstop, far beyond this deadline.)
    agent.resume_reading();
    wait_until("the sender to finish", || sender.is_finished());
    sender.join().unwrap();
    client.flush(PATIENCE).unwrap();
    let total = accepted + EXTRA;
    let frames = agent.wait_for_frames(total as usize + 1, PATIENCE).unwrap();
    assert_consecutive(&seqs(&frames), 0, total);
    client.close(PATIENCE);
}

#[test]
fn close_wakes_a_sender_waiting_for_room_and_hands_its_record_back() {
    // A small send buffer, so the writer is soon stuck in a write.
    let (_dir, _agent, client) = stalled_with("wait-close", |b| {
        b.queue_capacity(16)
            .send_buffer_size(Some(4096))
            .wait_for_connection(true)
    });
    let accepted = fill_queue(&client);
    let waiting = client.clone();
    let closer = client.clone();
    let (result, _) = within("a sender waiting through close", PATIENCE, move || {
        // The writer may still take a record or two off the queue.
        let sender = start_waiting_sender(waiting, "closed-sender", accepted);
        let started = Instant::now();
        // The writer is stuck in a write (the agent reads nothing) until close's
        // deadline, so only close itself can wake the sender sooner than its backstop.
        let report = closer.close(Duration::from_secs(2));
        (sender.join().unwrap(), report, started)
    });
    match result.0 {
        (SendError::Closed(back), n, returned) => {
            assert_eq!(back, record(n));
            // Woken by close, not by its one-second backstop (nor by the writer, stuck
            // for two).
            let after = returned.saturating_duration_since(result.2);
            assert!(
                after < Duration::from_millis(900),
                "returned {after:?} after close"
            );
        }
        other => panic!("expected Closed, got {other:?}"),
    }
    let report = result.1;
    assert_eq!(report.stats.refused_closed, 1);
    assert_eq!(
        report.written + report.unsent.len() as u64,
        report.stats.accepted
    );
}

#[test]
fn a_record_over_the_cheap_bound_but_within_the_limit_is_sent_whole() {
    // The size check's cheap bound over-counts; a record between its exact size and
    // the bound is measured exactly, accepted, and written in exactly its size.
    let dir = TempDir::new("exact");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let r = record(7);
    let exact = geneva_audit::encoded_len(STI, &r);
    let bound = geneva_audit::encoded_len_bound(STI, &r);
    assert!(bound > exact, "bound {bound} exact {exact}");
    let client = builder()
        .unix_socket(dir.socket())
        .max_frame_size(exact)
        .build()
        .unwrap();
    client.try_send(r).unwrap();
    client.flush(PATIENCE).unwrap();
    let frames = agent.wait_for_frames(2, PATIENCE).unwrap();
    assert_eq!(seqs(&frames), vec![7]);
    let report = client.close(PATIENCE);
    assert_eq!(report.written, 1);
}

#[test]
fn unix_sockets_get_a_one_mebibyte_send_buffer() {
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if wmem_max < 1 << 20 {
        eprintln!("skipped: net.core.wmem_max is {wmem_max}, below the 1 MiB default");
        return;
    }
    // An agent that reads nothing: everything the client gets written sits in the
    // socket. The kernel's usual buffer (208 KiB) would stop the writer far short of
    // 700 KB; the 1 MiB default (doubled by Linux for its bookkeeping) takes more.
    let (_dir, _agent, client) = stalled_with("sndbuf", |b| b.wait_for_connection(true));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let (client, stop) = (client.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if client
                    .send_timeout(record(n), Duration::from_millis(20))
                    .is_ok()
                {
                    n += 1;
                }
            }
        })
    };
    wait_until("700 KB in the socket", || {
        client.stats().bytes_written >= 700_000
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.join().unwrap();
    client.close(Duration::from_millis(100));
}

#[test]
fn a_send_buffer_the_kernel_cannot_take_is_refused() {
    for bytes in [0, 1 << 30] {
        let err = Client::builder(STI)
            .send_buffer_size(Some(bytes))
            .build()
            .unwrap_err();
        assert!(matches!(err, BuildError::Config(_)), "{bytes}: {err}");
    }
    // The largest the kernel can take (doubled, it still fits its int) is accepted.
    let client = Client::builder(STI)
        .transport(Transport::NoOp)
        .send_buffer_size(Some((1 << 30) - 1))
        .build()
        .unwrap();
    client.close(PATIENCE);
}

#[test]
fn a_client_whose_closes_hang_dies_wakes_its_waiting_sender_and_still_closes_in_time() {
    // A memory "agent" whose writes fail and whose closes hang: each failure retires a
    // connection whose close never returns, until the client gives up.
    let sink = MemorySink::new();
    let client = builder()
        .transport(Transport::Memory(sink.clone()))
        .queue_capacity(16)
        .build()
        .unwrap();
    let notifications = client.notifications();
    client.try_send(record(0)).unwrap();
    client.flush(PATIENCE).unwrap();
    // Writes fail from here on; the writer keeps what it took and reconnects.
    sink.fail_writes(std::io::ErrorKind::BrokenPipe);
    let sender = start_waiting_sender(client.clone(), "dying-sender", 1);
    // Now the closes hang too: the next failures pile them up.
    sink.hang_closes();
    let died = loop {
        let n = notifications.recv_timeout(PATIENCE).expect("ClientDead");
        if let Event::ClientDead { reason } = n.event {
            assert!(reason.contains("hanging"), "{reason}");
            break Instant::now();
        }
    };
    let (error, n, returned) = sender.join().unwrap();
    match error {
        SendError::Dead(back) => assert_eq!(back, record(n)),
        other => panic!("expected Dead, got {other:?}"),
    }
    // Woken by the death, not by the one-second backstop of its wait.
    let after = returned.saturating_duration_since(died);
    assert!(
        after < Duration::from_millis(900),
        "returned {after:?} after"
    );
    match client.try_send(record(n + 1)) {
        Err(SendError::Dead(back)) => assert_eq!(back, record(n + 1)),
        other => panic!("expected Dead, got {other:?}"),
    }
    assert_eq!(client.flush(PATIENCE), Err(FlushError::Closed));
    // Close hands back, in order, every record that never reached the sink.
    let (report, _) = within("close of a dead client", PATIENCE, move || {
        client.close(Duration::from_millis(500))
    });
    assert_eq!(report.unsent, (1..n).map(record).collect::<Vec<_>>());
    let s = report.stats;
    assert_eq!((s.accepted, s.written, s.lost), (n, 1, n - 1));
    assert_eq!(s.refused_closed, 2);
    // It bears four hanging closes and dies at the fifth.
    assert!(s.write_errors >= 5, "{s:?}");
    sink.heal();
}

#[test]
fn close_returns_even_when_closing_the_connection_hangs() {
    let sink = MemorySink::new();
    let client = builder()
        .transport(Transport::Memory(sink.clone()))
        .build()
        .unwrap();
    send_range(&client, 0, 10);
    client.flush(PATIENCE).unwrap();
    // A bad host-mounted socket: the writer's last act, closing its connection, hangs.
    sink.hang_closes();
    let (report, _) = within("close", PATIENCE, move || {
        client.close(Duration::from_millis(500))
    });
    assert!(report.unsent.is_empty());
    assert_eq!(report.stats.written, 10);
    sink.heal();
}

#[test]
fn close_right_after_build_never_waits_on_a_hanging_close() {
    // The supervisor may connect just as close begins: that connection is never used,
    // and closing it hangs like any other. Close must not wait for it.
    let sink = MemorySink::new();
    sink.hang_closes();
    for _ in 0..100 {
        let client = builder()
            .transport(Transport::Memory(sink.clone()))
            .build()
            .unwrap();
        let (report, _) = within("close right after build", PATIENCE, move || {
            client.close(Duration::ZERO)
        });
        assert!(report.clean);
    }
    sink.heal();
}

#[test]
fn a_connect_that_hangs_fails_at_the_connect_timeout() {
    // A listener that never accepts, its backlog full: the kernel drops further SYNs, so
    // a connect to it hangs until the caller gives up.
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut queued = Vec::new();
    while let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
        queued.push(s);
        assert!(queued.len() < 100, "the backlog never filled");
    }
    let client = builder()
        .tcp(addr.to_string())
        .connect_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let notifications = client.notifications();
    let started = Instant::now();
    match notifications.recv_timeout(PATIENCE).unwrap().event {
        Event::ConnectFailed { kind, .. } => assert_eq!(kind, std::io::ErrorKind::TimedOut),
        other => panic!("expected ConnectFailed, got {other:?}"),
    }
    // Without the timeout the kernel would retry its SYN for minutes.
    assert!(started.elapsed() < Duration::from_secs(10));
    client.close(Duration::ZERO);
}

#[test]
fn a_backlog_is_written_a_batch_at_a_time() {
    let (_dir, agent, client) = stalled_with("batches", |b| b);
    // A queue's worth of records (2048) waits behind a writer stuck on a full socket.
    let queued = fill_until_blocked(&client);
    let before = client.stats();
    agent.resume_reading();
    client.flush(PATIENCE).unwrap();
    let after = client.stats();
    let records = after.written - before.written;
    let writes = after.writes - before.writes;
    assert!(records >= 2048, "{records} records");
    // About 64 KiB of frames per write: a hundred or so of these records each.
    assert!(
        writes * 10 <= records,
        "{writes} writes for {records} records"
    );
    agent
        .wait_for_frames(queued as usize + 1, PATIENCE)
        .unwrap();
    client.close(PATIENCE);
}

#[test]
fn a_frame_cut_by_a_failure_is_written_whole_on_the_next_connection() {
    // A small send buffer, a short write timeout and a 200 KB record: the socket takes
    // part of the frame, and the write times out waiting for the agent to read the rest.
    let (_dir, agent, client) = stalled_with("cut-frame", |b| {
        b.send_buffer_size(Some(4096))
            .write_timeout(Duration::from_millis(200))
            .wait_for_connection(true)
    });
    let big = record(7).custom("blob", "x".repeat(200_000));
    client.try_send(big).unwrap();
    wait_until("a frame cut by the timeout", || client.stats().retried >= 1);
    // The agent dies with the cut frames unread, and comes back reading.
    agent.kill();
    agent.resume_reading();
    agent.restart().unwrap();
    client.flush(PATIENCE).unwrap();
    // The frame arrives whole, and once: it decodes, and nothing else came.
    let frames = agent.wait_for_frames(1, PATIENCE).unwrap();
    assert_eq!(seqs(&frames), [7]);
    // Nothing cut reached the agent: every connection carried whole frames only.
    assert_eq!(agent.errors(), []);
    let s = client.close(PATIENCE).stats;
    assert!(s.retried >= 1 && s.write_errors >= 1, "{s:?}");
    assert_eq!((s.written, s.lost), (1, 0));
    assert!(agent.frames().iter().filter(|f| seq(f).is_some()).count() == 1);
}

#[test]
fn a_connection_that_worked_starts_the_backoff_over() {
    let dir = TempDir::new("backoff-reset");
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    let notifications = client.notifications();
    let failures = |n: geneva_audit::Notification| match n.event {
        Event::ConnectFailed { failures, .. } => Some(failures),
        _ => None,
    };
    // The agent is absent: failures pile up and the backoff grows.
    while failures(notifications.recv_timeout(PATIENCE).unwrap()).unwrap_or(0) < 3 {}
    let agent = TestAgent::unix(dir.socket()).unwrap();
    send_range(&client, 0, 1);
    client.flush(PATIENCE).unwrap();
    agent.wait_for_frames(2, PATIENCE).unwrap();
    // A connection counts as good once the agent read from it or it lasted a second:
    // past that second, both hold.
    let handed_over = Instant::now();
    wait_until("the connection to last a second", || {
        handed_over.elapsed() > Duration::from_millis(1100)
    });
    let _earlier: Vec<_> = notifications.try_iter().collect();
    agent.kill();
    // The idle writer learns of the death from its next write.
    send_range(&client, 1, 1);
    // The next failure is the first of a new run, not the fourth of the old one.
    let next = loop {
        if let Some(n) = failures(notifications.recv_timeout(PATIENCE).unwrap()) {
            break n;
        }
    };
    assert_eq!(next, 1);
    client.close(Duration::ZERO);
}
