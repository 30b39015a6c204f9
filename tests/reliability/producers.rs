//! 5. Many producers.

use super::*;

#[test]
fn eight_producers_keep_their_order_and_the_counters_add_up() {
    let _serial = serial();
    const PRODUCERS: u64 = 8;
    let per = if DEBUG { 10_000 } else { 50_000 };
    let total = PRODUCERS * per;
    let dir = TempDir::new("producers");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    let started = Instant::now();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|t| {
            let client = client.clone();
            thread::spawn(move || {
                for i in 0..per {
                    client
                        .send_timeout(record(i).custom("t", t), LONG)
                        .unwrap_or_else(|e| panic!("thread {t} record {i}: {e}"));
                }
            })
        })
        .collect();
    // Check the counters whenever the agent receives something, until everything came
    // (one connection: one heartbeat after the first record).
    let mut samples = 0u64;
    let mut worst: Option<Stats> = None;
    agent
        .wait_for("every record", LONG, |s| {
            let st = client.stats();
            samples += 1;
            // Relaxed counters: a record can be written before its producer counts it
            // accepted, at most one per producer.
            if st.written + st.lost > st.accepted + PRODUCERS {
                worst.get_or_insert(st);
            }
            s.total_frames > total
        })
        .unwrap();
    let took = started.elapsed();
    for p in producers {
        p.join().unwrap();
    }
    let report = client.close(PATIENCE);
    let s = report.stats;
    let frames = agent.frames();
    let mut next: HashMap<u64, u64> = HashMap::new();
    for f in &frames {
        let Some(n) = seq(f) else { continue };
        let t = thread_of(f).expect("a thread number");
        let want = next.entry(t).or_insert(0);
        assert_eq!(
            n, *want,
            "thread {t}: record {n} arrived where {want} was due"
        );
        *want += 1;
    }
    println!(
        "[8 producers; {}] {total} records in {took:.1?} ({:.0} records/s), per-thread order \
         kept; counters checked {samples} times while running; after close: accepted {}, \
         written {}, lost {}, pending {}",
        build(),
        total as f64 / took.as_secs_f64(),
        s.accepted,
        s.written,
        s.lost,
        s.pending
    );
    assert!(worst.is_none(), "counters inconsistent: {worst:?}");
    assert_eq!(next.len() as u64, PRODUCERS);
    assert!(next.values().all(|&n| n == per), "{next:?}");
    assert!(report.clean && report.unsent.is_empty());
    assert_eq!(s.accepted, total);
    assert_eq!(s.accepted, s.written + s.lost);
    assert_eq!((s.lost, s.pending), (0, 0));
    assert!(agent.errors().is_empty(), "{:?}", agent.errors());
}
