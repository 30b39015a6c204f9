//! A record that carries its own event time reaches the agent with that time in its
//! frame; one without is stamped with the time it was sent.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use geneva_audit::agent::TestAgent;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn records_keep_their_own_time_through_both_send_paths() {
    let dir = TempDir::new("event-time");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    // Far from now, negative, and the extremes: the time is carried, not clamped.
    let times = [1_234, -5, 0, i64::MIN, i64::MAX];
    for (i, &t) in times.iter().enumerate() {
        let record = record(i as u64).event_time(t);
        assert_eq!(record.get_event_time(), Some(t));
        if i % 2 == 0 {
            client.try_send(record).unwrap();
        } else {
            client.send_timeout(record, Duration::from_secs(5)).unwrap();
        }
    }
    let before = now();
    client.try_send(record(99)).unwrap();
    client.flush(PATIENCE).unwrap();
    let after = now();
    // Five records, the heartbeat after the first, and the unstamped one.
    let frames = agent.wait_for_frames(7, PATIENCE).unwrap();
    let stamped: Vec<(u64, i64)> = frames
        .iter()
        .filter_map(|f| seq(f).map(|s| (s, f.ts)))
        .collect();
    assert_eq!(
        &stamped[..5],
        &times
            .iter()
            .enumerate()
            .map(|(i, &t)| (i as u64, t))
            .collect::<Vec<_>>()[..]
    );
    let (last_seq, last_ts) = stamped[5];
    assert_eq!(last_seq, 99);
    assert!(
        (before..=after).contains(&last_ts),
        "{last_ts} not in {before}..={after}"
    );
    assert!(client.close(PATIENCE).clean);
}

#[test]
fn a_record_without_event_time_has_none() {
    assert_eq!(record(0).get_event_time(), None);
    assert_eq!(
        record(0).event_time(7).event_time(8).get_event_time(),
        Some(8)
    );
}
