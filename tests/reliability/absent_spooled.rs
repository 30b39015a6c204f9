//! 2b. The agent absent for a long time, with a spool: records go to disk, and the idle
//! client costs what one without a spool does.

use super::*;

#[test]
fn agent_absent_with_a_spool_costs_no_cpu_and_every_record_arrives_in_order() {
    let _serial = serial();
    const ABSENT: Duration = Duration::from_secs(5);
    const RECORDS: u64 = 10;
    let dir = TempDir::new("absent-spooled");
    let client = Client::builder(STI)
        .unix_socket(dir.socket())
        .spool(dir.0.join("spool"))
        .backoff(Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            full_jitter: true,
        })
        .build()
        .unwrap();
    for n in 0..RECORDS {
        client.try_send(record(n)).unwrap();
    }
    // Past the offline grace the records go to disk.
    assert!(
        wait_until_within(LONG, || client.stats().spooled == RECORDS),
        "the records never reached the spool: {:?}",
        client.stats()
    );
    let cpu_before = threads_cpu("geneva-audit");
    let started = Instant::now();
    // The passage of time under test: the agent is absent, records wait on disk.
    thread::sleep(ABSENT);
    let wall = started.elapsed();
    let cpu = threads_cpu("geneva-audit") - cpu_before;
    let share = cpu.as_secs_f64() / wall.as_secs_f64();
    println!(
        "[agent absent, spool; {}] {RECORDS} records on disk; over {wall:.1?} the client's \
         threads used {cpu:?} of CPU ({:.3}% of wall time)",
        build(),
        share * 100.0,
    );
    // The same bound as the scenario without a spool.
    assert!(
        share < 0.02,
        "the idle client with a spool used {:.2}% of a core",
        share * 100.0
    );

    let agent = TestAgent::unix(dir.socket()).unwrap();
    client.flush(LONG).unwrap();
    let frames = agent.wait_for_frames(RECORDS as usize + 1, LONG).unwrap();
    assert_consecutive(&seqs(&frames), 0, RECORDS);
    let report = client.close(PATIENCE);
    assert_eq!((report.stats.delivered, report.stats.lost), (RECORDS, 0));
}
