//! `idle_poll`: the longest a record waits before an idle client writes it.

mod common;

use std::time::{Duration, Instant};

use common::*;
use geneva_audit::agent::TestAgent;

#[test]
fn idle_poll_bounds_how_long_an_idle_writer_takes_to_see_a_record() {
    let idle_poll = Duration::from_millis(500);
    let dir = TempDir::new("idle-poll");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder()
        .unix_socket(dir.socket())
        .idle_poll(idle_poll)
        .build()
        .unwrap();
    client.try_send(record(0)).unwrap();
    client.flush(PATIENCE).unwrap();
    // The record and the connection's heartbeat; then nothing for 4.2 s, long enough for
    // the writer's polls (1 ms, doubling) to have grown to `idle_poll`, and more: an
    // interval that kept doubling would be in a 4 s park now.
    agent.wait_for_frames(2, PATIENCE).unwrap();
    let quiet = agent.wait_for("another frame", Duration::from_millis(4200), |s| {
        s.frames > 2
    });
    assert!(quiet.is_err(), "{:?}", agent.frames());
    let sent = Instant::now();
    client.try_send(record(1)).unwrap();
    let frames = agent.wait_for_frames(3, PATIENCE).unwrap();
    let took = sent.elapsed();
    println!("a record sent to a writer idle for 4.2 s reached the agent in {took:?}");
    assert_eq!(seq(&frames[2]), Some(1));
    // At most `idle_poll`, and a margin for a loaded machine.
    assert!(
        took < idle_poll + Duration::from_secs(1),
        "{took:?} with idle_poll {idle_poll:?}"
    );
    client.close(PATIENCE);
}
