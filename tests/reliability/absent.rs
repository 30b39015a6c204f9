//! 2. The agent absent for a long time.

use super::*;

#[test]
fn agent_absent_for_ten_seconds_costs_no_cpu_and_bounded_memory() {
    let _serial = serial();
    const ABSENT: Duration = Duration::from_secs(10);
    let capacity = 10_000usize;
    let dir = TempDir::new("absent-10s");
    let rss_start = vm_rss_kib();
    let client = Client::builder(STI)
        .unix_socket(dir.socket())
        .queue_capacity(capacity)
        .backoff(Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            full_jitter: true,
        })
        .build()
        .unwrap();
    let notifications = client.notifications();
    // Fill the queue (the writer also takes one batch into its buffer, then waits).
    let mut accepted = 0u64;
    loop {
        match client.try_send(record(accepted)) {
            Ok(()) => accepted += 1,
            Err(SendError::QueueFull(_)) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(accepted < 10 * capacity as u64, "the queue never filled");
    }
    let rss_full = vm_rss_kib();
    let cpu_before = threads_cpu("geneva-audit");
    let started = Instant::now();
    // The agent stays away for ABSENT of real time; now and then the service offers
    // records, which must be refused at once.
    let mut full_latencies = Vec::new();
    let mut accepted_while_full = 0u64;
    let mut r = record(accepted);
    while started.elapsed() < ABSENT {
        for _ in 0..1000 {
            let t = Instant::now();
            let result = client.try_send(r);
            full_latencies.push(t.elapsed());
            match result {
                Err(SendError::QueueFull(back)) => r = back,
                Ok(()) => {
                    accepted_while_full += 1;
                    accepted += 1;
                    r = record(accepted);
                }
                Err(e) => panic!("{e}"),
            }
        }
        // The passage of time under test: the agent is absent.
        thread::sleep(Duration::from_millis(100));
    }
    let wall = started.elapsed();
    let cpu = threads_cpu("geneva-audit") - cpu_before;
    let rss_end = vm_rss_kib();
    let stats = client.stats();
    let failures: Vec<(std::io::ErrorKind, u32)> = notifications
        .try_iter()
        .filter_map(|n| match n.event {
            Event::ConnectFailed { kind, failures, .. } => Some((kind, failures)),
            _ => None,
        })
        .collect();
    full_latencies.sort();
    let share = cpu.as_secs_f64() / wall.as_secs_f64();
    println!(
        "[agent absent; {}] {accepted} records queued (capacity {capacity}); over {wall:.1?} \
         the client's threads used {cpu:?} of CPU ({:.3}% of wall time) and made {} \
         connection attempts; RSS {rss_start} KiB at start, {rss_full} KiB with the queue full \
         (+{} KiB, {:.0} B per queued record), {rss_end} KiB after {ABSENT:?} absent; {} \
         try_send calls refused with QueueFull: p50 {:?}, p99 {:?}, max {:?} ({} accepted)",
        build(),
        share * 100.0,
        stats.connect_failures,
        rss_full.saturating_sub(rss_start),
        rss_full.saturating_sub(rss_start) as f64 * 1024.0 / accepted as f64,
        full_latencies.len(),
        percentile(&full_latencies, 50.0),
        percentile(&full_latencies, 99.0),
        full_latencies.last().unwrap(),
        accepted_while_full,
    );
    assert!(
        share < 0.02,
        "the idle client used {:.2}% of a core",
        share * 100.0
    );
    assert!(
        rss_end <= rss_full + 8 * 1024,
        "memory grew while the agent was absent: {rss_full} KiB -> {rss_end} KiB"
    );
    assert!(
        rss_full.saturating_sub(rss_start) < 64 * 1024,
        "the queue of {capacity} took {} KiB",
        rss_full.saturating_sub(rss_start)
    );
    assert_eq!(accepted_while_full, 0, "a full queue accepted records");
    assert!(*full_latencies.last().unwrap() < Duration::from_secs(1));
    assert!(!failures.is_empty());
    assert!(
        failures
            .iter()
            .all(|(kind, _)| *kind == std::io::ErrorKind::NotFound)
    );
    // Backoff, not a busy loop: about one attempt a second at most once it has grown.
    assert!(stats.connect_failures < 60, "{}", stats.connect_failures);

    // The agent appears: the queue drains, in order.
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let appeared = Instant::now();
    client.flush(LONG).unwrap();
    let drained = appeared.elapsed();
    let frames = agent.wait_for_frames(accepted as usize + 1, LONG).unwrap();
    println!("[agent absent] the agent appeared; the queue drained in {drained:?}");
    assert_consecutive(&seqs(&frames), 0, accepted);
    let report = client.close(PATIENCE);
    assert_eq!((report.stats.written, report.stats.lost), (accepted, 0));
}
