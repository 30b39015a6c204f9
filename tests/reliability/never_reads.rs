//! 3. An agent that accepts but never reads.

use super::*;

#[test]
fn agent_that_never_reads_never_blocks_try_send_and_close_hands_back_the_rest() {
    let _serial = serial();
    let dir = TempDir::new("never-reads");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    agent.stop_reading();
    let write_timeout = Duration::from_secs(1);
    let client = builder()
        .unix_socket(dir.socket())
        .queue_capacity(1024)
        .write_timeout(write_timeout)
        .build()
        .unwrap();
    let notifications = client.notifications();
    let calls = if DEBUG { 200_000 } else { 2_000_000 };
    let mut latencies = Vec::with_capacity(calls);
    let mut accepted = 0u64;
    let mut r = record(0);
    let started = Instant::now();
    for _ in 0..calls {
        let t = Instant::now();
        let result = client.try_send(r);
        latencies.push(t.elapsed());
        match result {
            Ok(()) => {
                accepted += 1;
                r = record(accepted);
            }
            Err(SendError::QueueFull(back)) => r = back,
            Err(e) => panic!("{e}"),
        }
    }
    let offered_for = started.elapsed();
    // The writer is stuck on a full socket: its write times out, and it reconnects.
    let deadline = Instant::now() + PATIENCE;
    let timed_out = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match notifications.recv_timeout(left) {
            Ok(n) => {
                if let Event::WriteFailed {
                    kind: std::io::ErrorKind::TimedOut,
                    error,
                    pending_records,
                } = n.event
                {
                    break (error, pending_records);
                }
            }
            Err(_) => panic!("no timed-out write within {PATIENCE:?}"),
        }
    };
    agent.wait_for_connections(2, PATIENCE).unwrap();
    wait_until("the client's reconnection", || client.stats().connects >= 2);
    latencies.sort();
    println!(
        "[never reads; {}] {calls} try_send calls in {offered_for:.1?}, {accepted} accepted: \
         p50 {:?}, p99 {:?}, p99.9 {:?}, max {:?}; write timeout {write_timeout:?}: {:?} with \
         {} records pending; reconnected",
        build(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 99.9),
        latencies.last().unwrap(),
        timed_out.0,
        timed_out.1,
    );
    // Never blocks: no call waits for the write the writer is stuck in (it lasts the
    // write timeout); a preempted call on a loaded machine takes milliseconds, not that.
    assert!(percentile(&latencies, 99.9) < Duration::from_millis(20));
    assert!(*latencies.last().unwrap() < write_timeout);

    let closing = client.clone();
    let (report, took) = within("close(1 s)", PATIENCE, move || {
        closing.close(Duration::from_secs(1))
    });
    let s = report.stats;
    let unsent: Vec<u64> = report.unsent.iter().map(record_seq).collect();
    println!(
        "[never reads] close(1 s) took {took:?} and handed back {} records ({:?}..={:?}); \
         accepted {}, written {}, lost {}, replayed {}, write errors {}",
        unsent.len(),
        unsent.first(),
        unsent.last(),
        s.accepted,
        s.written,
        s.lost,
        s.replayed,
        s.write_errors
    );
    // Its deadline, the quarter second the threads get to stop, and a margin for a
    // loaded machine: far below the write timeout plus a reconnection it would take to
    // wait for the stuck write.
    assert!(took < CLOSE_1S_BOUND, "close took {took:?}");
    assert!(report.clean);
    assert_eq!(s.accepted, accepted);
    assert_eq!(s.accepted, s.written + s.lost, "{s:?}");
    assert_eq!(s.lost, unsent.len() as u64);
    assert!(!unsent.is_empty());
    assert!(
        unsent.windows(2).all(|w| w[1] == w[0] + 1),
        "handed back out of order"
    );
    assert_eq!(unsent.last(), Some(&(accepted - 1)));
    assert_eq!(
        unsent[0], s.written,
        "handed back from the first record not written"
    );
}
