//! Notifications: what they carry, how unread ones are discarded and counted, when the
//! stream ends, and how several readers share it.

mod common;
#[path = "support/stream.rs"]
mod stream;

use std::time::Duration;

use common::*;
use geneva_audit::{Event, LossReason, MemorySink, Notifications, RecvTimeoutError, Transport};

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
    // One record first: the failed write carried it alone.
    send_range(&client, 0, 1);
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
            // The one record the writer held waits to be written again.
            assert_eq!(pending_records, 1);
        }
        other => panic!("expected WriteFailed, got {other:?}"),
    }
    let after = std::time::SystemTime::now();
    assert!(before <= failed.at && failed.at <= after, "{:?}", failed.at);
    send_range(&client, 1, 2);
    // Close hands back what never got through, and says so: lost at close.
    let report = client.close(Duration::from_millis(200));
    assert!(handed_back(&report.unsent, 0..3), "{:?}", report.unsent);
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
fn iterating_ends_after_close_while_a_handle_lives() {
    let dir = TempDir::new("notify-end");
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    let still_alive = client.clone();
    let events = client.notifications();
    let reader = std::thread::spawn(move || events.map(|n| n.event).collect::<Vec<_>>());
    send_range(&client, 0, 3);
    wait_until("a failed connect", || client.stats().connect_failures >= 1);
    client.close(Duration::ZERO);
    let (events, _) = within(
        "the reader after close",
        Duration::from_secs(5),
        move || reader.join().unwrap(),
    );
    assert!(
        matches!(events[0], Event::ConnectFailed { .. }),
        "{events:?}"
    );
    // Everything published up to the close was read, its report of the records lost too.
    assert!(
        matches!(
            events.last(),
            Some(Event::RecordsLost {
                count: 3,
                reason: LossReason::Closed
            })
        ),
        "{events:?}"
    );
    drop(still_alive);
}

#[test]
fn iterating_ends_when_the_client_dies() {
    // Writes fail and closes of the broken connections hang, until the client gives up.
    let sink = MemorySink::new();
    let client = builder()
        .transport(Transport::Memory(sink.clone()))
        .write_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let events = client.notifications();
    let reader = std::thread::spawn(move || events.map(|n| n.event).collect::<Vec<_>>());
    sink.fail_writes(std::io::ErrorKind::BrokenPipe);
    sink.hang_closes();
    client.try_send(record(0)).unwrap();
    let (events, _) = within("the reader of a dying client", PATIENCE, move || {
        reader.join().unwrap()
    });
    assert!(
        matches!(events.last(), Some(Event::ClientDead { .. })),
        "{events:?}"
    );
    sink.heal();
    client.close(Duration::ZERO);
}

#[test]
fn recv_timeout_tells_a_quiet_stream_from_an_ended_one() {
    let client = builder().transport(Transport::NoOp).build().unwrap();
    let events = client.notifications();
    match events.recv_timeout(PATIENCE) {
        Ok(n) => assert!(matches!(n.event, Event::Connected { .. }), "{n:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        events.recv_timeout(Duration::from_millis(20)).unwrap_err(),
        RecvTimeoutError::Timeout
    );
    client.close(PATIENCE);
    assert_eq!(
        events.recv_timeout(Duration::from_secs(5)).unwrap_err(),
        RecvTimeoutError::Ended
    );
    assert!(events.try_next().is_none());
}

#[test]
fn every_handle_reads_the_same_single_stream() {
    let dir = TempDir::new("notify-shared");
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    // Two readers of one client: a second call, and a clone of the first.
    let first = client.notifications();
    let second = first.clone();
    let third = client.notifications();
    let failures = |events: Notifications| {
        std::thread::spawn(move || {
            events
                .filter_map(|n| match n.event {
                    Event::ConnectFailed { failures, .. } => Some(failures),
                    _ => None,
                })
                .collect::<Vec<u32>>()
        })
    };
    let readers = [failures(first), failures(second), failures(third)];
    wait_until("twenty failed connects", || {
        client.stats().connect_failures >= 20
    });
    let report = client.close(Duration::ZERO);
    let (mut all, _) = within(
        "the readers after close",
        Duration::from_secs(5),
        move || {
            readers
                .into_iter()
                .flat_map(|r| r.join().unwrap())
                .collect::<Vec<u32>>()
        },
    );
    assert_eq!(report.stats.notifications_dropped, 0);
    // Each event went to exactly one reader: together they read each failure once.
    all.sort_unstable();
    let n = report.stats.connect_failures as u32;
    assert_eq!(all, (1..=n).collect::<Vec<_>>());
}

/// An agent that reads until it has `n` record frames, then closes the connection: the
/// client hears of the agent leaving, never of a failed write, and counts no error.
#[test]
fn an_agent_leaving_after_reading_everything_is_no_write_failure() {
    use std::io::Read;
    use std::os::unix::net::UnixListener;

    const N: u64 = 2_000;
    let dir = TempDir::new("agent-leaves");
    let listener = UnixListener::bind(dir.socket()).unwrap();
    let agent = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        // Split with rmpv, not the crate's splitter.
        let mut splitter = stream::Frames::default();
        let (mut records, mut buf) = (0u64, vec![0u8; 64 * 1024]);
        while records < N {
            let n = socket.read(&mut buf).unwrap();
            assert!(n > 0, "the client closed first, after {records} records");
            for frame in splitter.push(&buf[..n]) {
                records += u64::from(stream::record_seq(&frame).is_some());
            }
        }
        // Everything read; a receiver that is done leaves.
    });
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    let notifications = client.notifications();
    send_range(&client, 0, N);
    agent.join().unwrap();
    // The writer finds the agent gone at its next look at the agent's reads.
    let left = loop {
        let n = notifications.recv_timeout(PATIENCE).expect("AgentLeft");
        match n.event {
            Event::Connected { .. } => continue,
            other => break other,
        }
    };
    assert!(
        matches!(left, Event::AgentLeft { pending_records: 0 }),
        "{left:?}"
    );
    let report = client.close(Duration::ZERO);
    assert_eq!(report.delivered, N);
    assert_eq!(report.stats.write_errors, 0);
    assert!(report.unsent.is_empty());
    assert!(
        !notifications
            .try_iter()
            .any(|n| matches!(n.event, Event::WriteFailed { .. })),
        "a write failure reported after every record was delivered"
    );
}
