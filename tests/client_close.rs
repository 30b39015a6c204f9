//! Closing: deadlines kept, later records refused, unsent records handed back in order,
//! waiting senders and flushes woken, hanging connection closes survived.

mod common;

use std::time::{Duration, Instant};

use common::*;
use geneva_audit::{Client, Event, FlushError, MemorySink, SendError, Transport};

/// Starts a thread named `name` that sends records numbered from `from` with
/// `send_timeout` until one is refused, and returns once that thread is asleep (waiting
/// for room). The thread returns the refusal, the refused record's number and when.
fn start_waiting_sender(
    client: Client,
    name: &str,
    from: u64,
) -> std::thread::JoinHandle<(SendError, u64, Instant)> {
    let sender = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut n = from;
            loop {
                match client.send_timeout(record(n), PATIENCE) {
                    Ok(()) => n += 1,
                    Err(e) => return (e, n, Instant::now()),
                }
            }
        })
        .unwrap();
    wait_until("the sender to wait for room", || {
        thread_state(name) == Some('S')
    });
    sender
}

#[test]
fn closing_refuses_later_records_and_is_idempotent() {
    let sink = MemorySink::new();
    let client = builder()
        .transport(Transport::Memory(sink.clone()))
        .build()
        .unwrap();
    let other_handle = client.clone();
    send_range(&client, 0, 10);
    let report = client.close(PATIENCE);
    assert_eq!(report.delivered, 10);
    assert!(report.unsent.is_empty());
    let r = record(11);
    match other_handle.try_send(r.clone()) {
        Err(SendError::Closed(back)) => assert_eq!(back, r),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        other_handle.flush(PATIENCE),
        Err(FlushError::Closed)
    ));
    let again = other_handle.close(PATIENCE);
    assert!(again.unsent.is_empty());
    assert_eq!(again.delivered, 10);
    assert!(!sink.bytes().is_empty());
}

#[test]
fn close_keeps_its_deadline_with_the_writer_blocked_and_hands_back_the_rest() {
    let (_dir, _agent, client) = stalled_with("blocked", |b| {
        b.queue_capacity(64).write_timeout(Duration::from_secs(60))
    });
    // Fill the socket buffers and then the queue, until the writer is blocked in a
    // write with the queue full.
    let n = fill_until_blocked(&client, &_dir);
    let started = Instant::now();
    let report = client.close(Duration::from_secs(1));
    let took = started.elapsed();
    println!(
        "close(1 s) took {took:?} and handed back {}",
        report.unsent.len()
    );
    // Its deadline, the quarter second the threads get to stop, and a margin for a
    // loaded machine; the stuck write alone would last the minute of the write timeout.
    assert!(took < Duration::from_secs(3), "close took {took:?}");
    assert!(report.clean);
    // Nothing the agent did not read counts as delivered: only the opening record it
    // read before it stopped. Everything else comes back, written or not, in order.
    let s = report.stats;
    assert_eq!(s.accepted, n + OPENING);
    assert_eq!((s.delivered, report.delivered), (1, 1));
    assert_eq!(s.accepted, s.delivered + s.lost);
    assert_eq!((s.pending, s.in_flight), (0, 0));
    assert_eq!(s.lost, report.unsent.len() as u64);
    assert!(s.written == s.delivered, "{s:?}");
    let names: Vec<String> = report
        .unsent
        .iter()
        .map(|r| r.get_operation_name().to_owned())
        .collect();
    let mut expected = vec!["Opening".to_owned()];
    expected.extend((0..n).map(|i| format!("Operation{i}")));
    assert_eq!(names, expected);
}

#[test]
fn close_cuts_a_long_backoff_short() {
    let dir = TempDir::new("backoff");
    let client = Client::builder(STI)
        .unix_socket(dir.socket())
        .backoff(geneva_audit::Backoff {
            initial: Duration::from_secs(20),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            full_jitter: false,
        })
        .build()
        .unwrap();
    send_range(&client, 0, 5);
    wait_until("a failed attempt", || client.stats().connect_failures >= 1);
    let started = Instant::now();
    let report = client.close(Duration::from_millis(200));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "close took {took:?}");
    assert!(report.clean, "a thread was left behind");
    assert_eq!(report.unsent.len(), 5);
    assert_eq!(report.stats.lost, 5);
}

#[test]
fn closing_after_the_agent_died_hands_back_what_it_never_read() {
    let (_dir, agent, client) = stalled_with("dead-close", |b| b);
    let notifications = client.notifications();
    send_range(&client, 0, 200);
    wait_until("everything written", || {
        client.stats().written == 200 + OPENING
    });
    agent.kill();
    let report = client.close(Duration::from_millis(300));
    // The agent read none of them: every one comes back, in order, after the opening
    // record it had not finished reading.
    assert_eq!(seqs(&agent.frames()), [] as [u64; 0]);
    let names: Vec<String> = report
        .unsent
        .iter()
        .map(|r| r.get_operation_name().to_owned())
        .collect();
    let mut expected = vec!["Opening".to_owned()];
    expected.extend((0..200).map(|i| format!("Operation{i}")));
    assert_eq!(names, expected);
    let s = report.stats;
    assert_eq!(s.accepted, 200 + OPENING);
    assert_eq!((s.delivered, s.lost), (1, 201));
    assert_eq!(s.accepted, s.delivered + s.lost);
    assert!(
        notifications
            .try_iter()
            .any(|n| matches!(n.event, Event::RecordsLost { count: 201, .. }))
    );
}

#[test]
fn flush_hears_about_close() {
    let dir = TempDir::new("flush-close");
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    send_range(&client, 0, 5);
    let flusher = {
        let client = client.clone();
        std::thread::Builder::new()
            .name("close-flusher".into())
            .spawn(move || {
                let started = Instant::now();
                (client.flush(PATIENCE), started.elapsed())
            })
            .unwrap()
    };
    // The flush is waiting (asleep, for the five records nobody can deliver) before
    // close starts.
    wait_until("the flush to wait", || {
        thread_state("close-flusher") == Some('S')
    });
    let report = client.close(Duration::from_millis(100));
    assert_eq!(report.unsent.len(), 5);
    let (result, took) = flusher.join().unwrap();
    assert_eq!(result, Err(FlushError::Closed));
    assert!(took < Duration::from_secs(5), "flush took {took:?}");
}

#[test]
fn close_wakes_a_sender_waiting_for_room_and_hands_its_record_back() {
    // A small send buffer, so the writer is soon stuck in a write.
    let (_dir, _agent, client) = stalled_with("wait-close", |b| {
        b.queue_capacity(16)
            .send_buffer_size(Some(4096))
            .wait_for_connection(true)
    });
    let accepted = fill_queue(&client);
    let waiting = client.clone();
    let closer = client.clone();
    let (result, _) = within("a sender waiting through close", PATIENCE, move || {
        // The writer may still take a record or two off the queue.
        let sender = start_waiting_sender(waiting, "closed-sender", accepted);
        let started = Instant::now();
        // The writer is stuck in a write (the agent reads nothing) until close's
        // deadline, so only close itself can wake the sender sooner than its backstop.
        let report = closer.close(Duration::from_secs(2));
        (sender.join().unwrap(), report, started)
    });
    match result.0 {
        (SendError::Closed(back), n, returned) => {
            assert_eq!(back, record(n));
            // Woken by close, not by its one-second backstop (nor by the writer, stuck
            // for two).
            let after = returned.saturating_duration_since(result.2);
            assert!(
                after < Duration::from_millis(900),
                "returned {after:?} after close"
            );
        }
        other => panic!("expected Closed, got {other:?}"),
    }
    let report = result.1;
    assert_eq!(report.stats.refused_closed, 1);
    assert_eq!(
        report.delivered + report.unsent.len() as u64,
        report.stats.accepted
    );
}

#[test]
fn close_returns_even_when_closing_the_connection_hangs() {
    let sink = MemorySink::new();
    let client = builder()
        .transport(Transport::Memory(sink.clone()))
        .build()
        .unwrap();
    send_range(&client, 0, 10);
    client.flush(PATIENCE).unwrap();
    // A bad host-mounted socket: the writer's last act, closing its connection, hangs.
    sink.hang_closes();
    let (report, _) = within("close", PATIENCE, move || {
        client.close(Duration::from_millis(500))
    });
    assert!(report.unsent.is_empty());
    assert_eq!(report.stats.written, 10);
    sink.heal();
}

#[test]
fn close_right_after_build_never_waits_on_a_hanging_close() {
    // The supervisor may connect just as close begins: that connection is never used,
    // and closing it hangs like any other. Close must not wait for it.
    let sink = MemorySink::new();
    sink.hang_closes();
    for _ in 0..100 {
        let client = builder()
            .transport(Transport::Memory(sink.clone()))
            .build()
            .unwrap();
        let (report, _) = within("close right after build", PATIENCE, move || {
            client.close(Duration::ZERO)
        });
        assert!(report.clean);
    }
    sink.heal();
}

#[test]
fn a_client_whose_closes_hang_dies_wakes_its_waiting_sender_and_still_closes_in_time() {
    // A memory "agent" whose writes fail and whose closes hang: each failure retires a
    // connection whose close never returns, until the client gives up.
    let sink = MemorySink::new();
    let client = builder()
        .transport(Transport::Memory(sink.clone()))
        .queue_capacity(16)
        // A close that has not returned for this long counts as hanging.
        .write_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let notifications = client.notifications();
    client.try_send(record(0)).unwrap();
    client.flush(PATIENCE).unwrap();
    // Writes fail from here on; the writer keeps what it took and reconnects.
    sink.fail_writes(std::io::ErrorKind::BrokenPipe);
    let sender = start_waiting_sender(client.clone(), "dying-sender", 1);
    // Now the closes hang too: the next failures pile them up.
    sink.hang_closes();
    let died = loop {
        let n = notifications.recv_timeout(PATIENCE).expect("ClientDead");
        if let Event::ClientDead { reason } = n.event {
            assert!(reason.contains("hanging"), "{reason}");
            break Instant::now();
        }
    };
    let (error, n, returned) = sender.join().unwrap();
    match error {
        SendError::Dead(back) => assert_eq!(back, record(n)),
        other => panic!("expected Dead, got {other:?}"),
    }
    // Woken by the death, not by the one-second backstop of its wait.
    let after = returned.saturating_duration_since(died);
    assert!(
        after < Duration::from_millis(900),
        "returned {after:?} after"
    );
    match client.try_send(record(n + 1)) {
        Err(SendError::Dead(back)) => assert_eq!(back, record(n + 1)),
        other => panic!("expected Dead, got {other:?}"),
    }
    assert_eq!(client.flush(PATIENCE), Err(FlushError::Closed));
    // Close hands back, in order, every record that never reached the sink.
    let (report, _) = within("close of a dead client", PATIENCE, move || {
        client.close(Duration::from_millis(500))
    });
    assert!(handed_back(&report.unsent, 1..n), "{:?}", report.unsent);
    let s = report.stats;
    assert_eq!((s.accepted, s.written, s.lost), (n, 1, n - 1));
    assert_eq!(s.refused_closed, 2);
    // It died at a failure after the first hanging close had run past the write timeout.
    assert!(s.write_errors >= 2, "{s:?}");
    sink.heal();
}
