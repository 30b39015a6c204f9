//! What docs/SPOOL.md promises of the spool, through the client's public API, against
//! real sockets and real files: a segment that cannot be read back while draining, a
//! close whose outbox the spool cannot take, the replay a spool forces on, and the
//! grace that keeps a quick reconnect off the disk.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use geneva_audit::agent::TestAgent;
use geneva_audit::{Event, Notifications};

/// The spool's segment files in `dir`, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs
}

/// Waits until record `last` reached the agent; returns the first arrivals so far.
fn first_arrivals_through(agent: &TestAgent, last: u64) -> Vec<u64> {
    wait_until("the last record at the agent", || {
        seqs(&agent.frames()).contains(&last)
    });
    first_arrivals(
        &seqs(&agent.frames()),
        &mut std::collections::HashSet::new(),
    )
    .0
}

/// Waits (with a deadline) for a `SpoolFailed` notification; returns its error text.
fn spool_failed(notifications: &Notifications) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = notifications
            .recv_timeout(left)
            .expect("a SpoolFailed notification");
        if let Event::SpoolFailed { error, .. } = n.event {
            return error;
        }
    }
}

/// SPOOL.md, Faults while running: "a segment cannot be read back while draining: the
/// spool is given up for this client's life and left on disk for the next one; records
/// go straight to the agent; told: SpoolFailed, Stats::spool_kept counts what stays".
#[test]
fn a_segment_that_cannot_be_read_back_gives_the_spool_up_and_records_go_straight_to_the_agent() {
    let dir = TempDir::new("spool-unreadable");
    let spool_dir = dir.0.join("spool");
    const N: u64 = 1_000;
    // 1 MiB: segments close at 128 KiB, about 220 records each.
    let client = builder()
        .unix_socket(dir.socket())
        .queue_capacity(100)
        .spool(&spool_dir)
        .spool_limit(1 << 20)
        .build()
        .unwrap();
    let notifications = client.notifications();
    // No agent: everything goes to disk.
    send_range(&client, 0, N);
    wait_until("everything spooled", || client.stats().spooled == N);
    let segs = segments(&spool_dir);
    assert!(segs.len() >= 3, "{segs:?}");
    // The second segment loses its second half on disk (replaced by a truncated copy,
    // as a damaged disk or a careless hand would leave it) before anything reads it.
    let victim = &segs[1];
    let len = std::fs::metadata(victim).unwrap().len();
    let bytes = std::fs::read(victim).unwrap();
    let copy = victim.with_extension("tmp");
    std::fs::write(&copy, &bytes[..(len / 2) as usize]).unwrap();
    std::fs::rename(&copy, victim).unwrap();
    // The agent comes: the first segment drains, the second cannot be read back.
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let error = spool_failed(&notifications);
    assert!(error.contains("given up"), "{error}");
    assert!(error.contains(victim.to_str().unwrap()), "{error}");
    // From now on records go straight to the agent, behind what the spool had sent.
    send_range(&client, N, 100);
    client.flush(PATIENCE).unwrap();
    let first = first_arrivals_through(&agent, N + 99);
    let from_spool = first.iter().take_while(|&&s| s < N).count() as u64;
    println!("{from_spool} spooled records delivered before the spool was given up");
    assert!(from_spool > 0 && from_spool < N, "{from_spool}");
    assert_consecutive(&first[..from_spool as usize], 0, from_spool);
    assert_consecutive(&first[from_spool as usize..], N, N + 100);
    let report = client.close(PATIENCE);
    let s = report.stats;
    // What stays on disk is counted kept, for the next client; nothing is handed back.
    assert!(report.unsent.is_empty());
    println!("{s:?}");
    assert_eq!(s.spool_kept, N - from_spool, "{s:?}");
    assert_eq!(s.accepted, s.delivered + s.lost + s.spool_kept, "{s:?}");
    assert!(s.spool_errors >= 1, "{s:?}");
    // Left on disk for the next one: the damaged segment and those after it.
    let left = segments(&spool_dir);
    assert!(left.contains(victim), "{left:?}");
    assert!(left.contains(segs.last().unwrap()), "{left:?}");
}

/// SPOOL.md, Close: "Should the new segment not fit or fail to be written, the spool is
/// left as it was and the records are handed back."
#[test]
fn close_hands_back_what_the_spool_cannot_take() {
    // A spool too small for what the writer holds at close: a stalled agent holds 300
    // records and a 100 KB opening record unread, over 64 KiB.
    let dir = TempDir::new("spool-cannot-take");
    let spool_dir = dir.0.join("spool");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder()
        .unix_socket(dir.socket())
        .queue_capacity(10_000)
        .spool(&spool_dir)
        .spool_limit(64 * 1024)
        .build()
        .unwrap();
    let notifications = client.notifications();
    client.send_timeout(opening(0), PATIENCE).unwrap();
    client.flush(PATIENCE).unwrap();
    agent.stop_reading();
    client.send_timeout(opening(100_000), PATIENCE).unwrap();
    send_range(&client, 0, 300);
    wait_until("everything written", || {
        client.stats().written == 300 + OPENING
    });
    assert_eq!(client.stats().spooled, 0);
    let report = client.close(Duration::from_millis(200));
    // Nothing kept, everything the agent did not read handed back, in order.
    assert_eq!(report.spooled, 0);
    let names: Vec<String> = report
        .unsent
        .iter()
        .map(|r| r.get_operation_name().to_owned())
        .collect();
    let mut expected = vec!["Opening".to_owned()];
    expected.extend((0..300).map(|i| format!("Operation{i}")));
    assert_eq!(names, expected);
    let s = report.stats;
    assert_eq!((s.delivered, s.lost, s.spool_kept), (1, 301, 0), "{s:?}");
    let error = spool_failed(&notifications);
    assert!(error.contains("handed back"), "{error}");
    // And the spool was left as it was: a next client finds nothing in it.
    drop(agent);
    let agent2 = TestAgent::unix(dir.socket()).unwrap();
    let next = builder()
        .unix_socket(dir.socket())
        .spool(&spool_dir)
        .wait_for_connection(true)
        .build()
        .unwrap();
    send_range(&next, 1_000, 1);
    next.flush(PATIENCE).unwrap();
    assert_eq!(seqs(&agent2.wait_for_frames(1, PATIENCE).unwrap()), [1_000]);
    assert_eq!(next.close(PATIENCE).stats.spool_replayed, 0);
}

/// SPOOL.md, Delivered means read: "with a spool the replay is always on", whatever
/// `replay_unread` says (ClientBuilder::spool says the same).
#[test]
fn a_spool_writes_unread_records_again_even_with_the_replay_off() {
    let spool = TempDir::new("spool-replay-dir");
    let (_dir, agent, client) = stalled_with("spool-replay", |b| {
        b.replay_unread(false).spool(spool.0.join("spool"))
    });
    let notifications = client.notifications();
    send_range(&client, 0, 200);
    wait_until("everything written", || {
        client.stats().written == 200 + OPENING
    });
    // The agent dies with all 200 unread, and comes back reading.
    agent.kill();
    assert_eq!(seqs(&agent.take_frames()), [] as [u64; 0]);
    agent.resume_reading();
    agent.restart().unwrap();
    client.flush(PATIENCE).unwrap();
    assert_consecutive(&first_arrivals_through(&agent, 199), 0, 200);
    let s = client.close(PATIENCE).stats;
    // The 200 and the opening record the agent had not finished reading.
    assert!(s.replayed >= 201, "{s:?}");
    let n = 200 + OPENING;
    assert_eq!((s.accepted, s.delivered, s.lost), (n, n, 0), "{s:?}");
    assert!(
        !notifications
            .try_iter()
            .any(|n| matches!(n.event, Event::RecordsLost { .. })),
        "records lost"
    );
}

/// Waits (with a deadline) for a notification for which `want` holds.
fn wait_event(notifications: &Notifications, what: &str, want: impl Fn(&Event) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match notifications.recv_timeout(left) {
            Ok(n) if want(&n.event) => return,
            Ok(_) => {}
            Err(e) => panic!("no {what}: {e:?}"),
        }
    }
}

fn connect_failed(e: &Event) -> bool {
    matches!(e, Event::ConnectFailed { .. })
}

/// SPOOL.md, States: "The grace of a second keeps the first connect and a quick
/// reconnect off the disk: the records wait in the queue, where they were." And it is a
/// second: records that wait through a longer outage go to disk once it has passed.
#[test]
fn the_grace_of_a_second_keeps_the_first_connect_and_a_quick_reconnect_off_the_disk() {
    let dir = TempDir::new("spool-grace");
    let client = builder()
        .unix_socket(dir.socket())
        .spool(dir.0.join("spool"))
        .build()
        .unwrap();
    let notifications = client.notifications();
    // The first connect: no agent yet when the records come (a failed attempt says the
    // client knows it has no connection), then the agent starts.
    wait_event(&notifications, "failed first connect", connect_failed);
    send_range(&client, 0, 10);
    let agent = TestAgent::unix(dir.socket()).unwrap();
    client.flush(PATIENCE).unwrap();
    assert_eq!(client.stats().spooled, 0, "{:?}", client.stats());
    // A quick reconnect: the agent dies, the client finds it gone and fails to connect,
    // records come, and the agent is back.
    agent.kill();
    wait_event(&notifications, "failed reconnect", connect_failed);
    send_range(&client, 10, 10);
    agent.restart().unwrap();
    client.flush(PATIENCE).unwrap();
    let s = client.stats();
    assert_eq!(s.connects, 2, "{s:?}");
    assert_eq!(
        s.spooled, 0,
        "records went to disk for a quick reconnect: {s:?}"
    );
    assert_consecutive(&first_arrivals_through(&agent, 19), 0, 20);
    // A longer outage: the agent stays away; after the grace the records go to disk.
    let gone = Instant::now();
    agent.kill();
    wait_event(&notifications, "failed connect", connect_failed);
    send_range(&client, 20, 10);
    wait_until("the records spooled", || client.stats().spooled == 10);
    let after = gone.elapsed();
    println!("spooled {after:?} after the agent went away");
    assert!(
        after >= Duration::from_secs(1),
        "spooled within the grace: {after:?}"
    );
    // Closed without an agent, the spool keeps them for the next client.
    let report = client.close(Duration::from_millis(500));
    assert_eq!((report.spooled, report.unsent.len()), (10, 0));
}
