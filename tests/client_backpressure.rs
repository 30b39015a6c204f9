//! Backpressure: a full queue refuses or makes the sender wait (asleep), and a backlog
//! drains in batches once the agent reads again.

mod common;

use std::time::{Duration, Instant};

use common::*;
use geneva_audit::SendError;

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
fn send_timeout_that_finds_no_room_in_time_hands_the_record_back_as_queue_full() {
    let (_dir, _agent, client) = stalled("timeout-full");
    fill_until_blocked(&client, &_dir);
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
fn a_backlog_is_written_a_batch_at_a_time() {
    let (_dir, agent, client) = stalled_with("batches", |b| b);
    // A queue's worth of records (2048) waits behind a writer stuck on a full socket.
    let queued = fill_until_blocked(&client, &_dir);
    let before = client.stats();
    agent.resume_reading();
    client.flush(PATIENCE).unwrap();
    let after = client.stats();
    let records = after.written - before.written;
    let writes = after.writes - before.writes;
    println!("{records} records in {writes} writes");
    assert!(records >= 2048, "{records} records");
    // Up to 64 KiB of frames per write, about 115 of these records; a write the socket
    // takes only in part counts as one too (85 records a write when measured on the
    // project's VM). At least 40 a write on average: batches, not a write per record.
    assert!(
        writes * 40 <= records,
        "{writes} writes for {records} records"
    );
    agent
        .wait_for_frames(queued as usize + 1, PATIENCE)
        .unwrap();
    client.close(PATIENCE);
}
