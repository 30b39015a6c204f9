//! 7. Close races.

use super::*;

#[test]
fn close_while_producers_send_refuses_and_hands_back_without_hanging() {
    let _serial = serial();
    const PRODUCERS: u64 = 4;
    let dir = TempDir::new("close-race");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder()
        .unix_socket(dir.socket())
        .queue_capacity(256)
        .build()
        .unwrap();
    let go = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    for t in 0..PRODUCERS {
        let (client, go, done_tx) = (client.clone(), Arc::clone(&go), done_tx.clone());
        thread::spawn(move || {
            let mut pause = Pause::new();
            while !go.load(Ordering::Acquire) {
                pause.next();
            }
            let mut slowest = Duration::ZERO;
            let mut i = 0u64;
            loop {
                let r = record(i).custom("t", t);
                let started = Instant::now();
                let result = if i % 2 == 0 {
                    client.try_send(r.clone())
                } else {
                    client.send_timeout(r.clone(), Duration::from_millis(50))
                };
                slowest = slowest.max(started.elapsed());
                match result {
                    Ok(()) => i += 1,
                    Err(SendError::QueueFull(back)) => assert_eq!(back, r),
                    Err(SendError::Closed(back)) => {
                        assert_eq!(back, r, "the refused record was not handed back");
                        break;
                    }
                    Err(e) => panic!("thread {t}: {e}"),
                }
            }
            let _ = done_tx.send((t, i, slowest));
        });
    }
    drop(done_tx);
    go.store(true, Ordering::Release);
    agent
        .wait_for("some frames", PATIENCE, |s| s.total_frames >= 2_000)
        .unwrap();
    // Two closes at once, while the producers send.
    let second = {
        let client = client.clone();
        thread::spawn(move || {
            within("a concurrent close", PATIENCE, move || {
                client.close(PATIENCE)
            })
        })
    };
    let closing = client.clone();
    let (first, took) = within("close", PATIENCE, move || closing.close(PATIENCE));
    let (second, took2) = second.join().unwrap();
    let mut accepted_by = HashMap::new();
    let mut slowest = Duration::ZERO;
    for _ in 0..PRODUCERS {
        let (t, n, slow) = done_rx
            .recv_timeout(PATIENCE)
            .expect("a producer hung after close");
        accepted_by.insert(t, n);
        slowest = slowest.max(slow);
    }
    let unsent: Vec<&Record> = first.unsent.iter().chain(&second.unsent).collect();
    let s = client.stats();
    // Close twice more, and send after close: refused at once, the record handed back.
    let (third, took3) = {
        let c = client.clone();
        within("a third close", PATIENCE, move || c.close(PATIENCE))
    };
    let r = record(99);
    let (after, _) = {
        let (c, r) = (client.clone(), r.clone());
        within("send after close", PATIENCE, move || {
            (
                c.try_send(r.clone()),
                c.send_timeout(r, PATIENCE),
                c.flush(PATIENCE),
            )
        })
    };
    println!(
        "[close races] two concurrent closes took {took:?} and {took2:?} (clean {} and {}), a \
         third {took3:?}; accepted {} ({:?} per producer), written {}, handed back {}; slowest \
         send call {slowest:?}",
        first.clean,
        second.clean,
        s.accepted,
        accepted_by,
        s.written,
        unsent.len(),
    );
    assert!(first.clean && second.clean && third.clean);
    assert!(third.unsent.is_empty());
    assert!(took3 < Duration::from_secs(1), "{took3:?}");
    assert!(slowest < Duration::from_secs(5), "{slowest:?}");
    assert_eq!(s.accepted, accepted_by.values().sum::<u64>());
    assert_eq!(s.accepted, s.written + s.lost, "{s:?}");
    assert_eq!(s.lost, unsent.len() as u64);
    match after {
        (Err(SendError::Closed(a)), Err(SendError::Closed(b)), Err(FlushError::Closed)) => {
            assert_eq!((&a, &b), (&r, &r));
        }
        other => panic!("after close: {other:?}"),
    }
    // Per producer: what the agent got, then what was handed back, is 0..accepted.
    let frames = collect_seqs(&agent, PATIENCE, Vec::new(), |f| {
        f.iter().filter(|f| seq(f).is_some()).count() as u64 >= s.written
    });
    let mut per: HashMap<u64, Vec<u64>> = HashMap::new();
    for f in &frames {
        if let (Some(n), Some(t)) = (seq(f), thread_of(f)) {
            per.entry(t).or_default().push(n);
        }
    }
    for r in &unsent {
        per.entry(record_thread(r).expect("a thread"))
            .or_default()
            .push(record_seq(r));
    }
    for (t, n) in &accepted_by {
        assert_consecutive(per.get(t).map_or(&[][..], |v| &v[..]), 0, *n);
    }
}

#[test]
fn dropping_a_stuck_client_without_close_keeps_its_deadline_and_reports_the_loss() {
    let _serial = serial();
    let drop_timeout = Duration::from_millis(500);
    let (_dir, _agent, client) = stalled_with("drop-stuck", |b| {
        b.queue_capacity(64)
            .write_timeout(Duration::from_secs(60))
            .drop_timeout(drop_timeout)
    });
    let notifications = client.notifications();
    let n = fill_until_blocked(&client, &_dir) + OPENING;
    let written = client.stats().written;
    let delivered = client.stats().delivered;
    let ((), took) = within("dropping the last handle", PATIENCE, move || drop(client));
    let lost: u64 = notifications
        .try_iter()
        .filter_map(|n| match n.event {
            Event::RecordsLost {
                count,
                reason: LossReason::Abandoned,
            } => Some(count),
            _ => None,
        })
        .sum();
    println!(
        "[drop without close] drop with a writer stuck in a write took {took:?} (drop timeout \
         {drop_timeout:?}); {n} accepted, {written} written, {lost} notified lost"
    );
    assert!(took < drop_timeout + Duration::from_secs(1), "{took:?}");
    // Every record the agent was not seen to read is notified lost, written or not, and
    // nothing else is: the agent reads nothing more, so what was delivered before the
    // drop is all that is ever delivered.
    assert_eq!(
        lost,
        n - delivered,
        "every undelivered record is notified as lost: {lost} of {n} accepted, {delivered} \
         delivered"
    );
}
