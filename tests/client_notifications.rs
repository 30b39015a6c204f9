//! Notifications: what they carry, and how unread ones are discarded and counted.

mod common;

use std::time::Duration;

use common::*;
use geneva_audit::{Event, LossReason, MemorySink, Transport};

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
